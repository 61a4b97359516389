//! The Nix front end (issue 5): the pure inventory in `nix/inventory.nix`, the
//! service modules in `generators/`, and the seed's fleet in `fleet.nix`,
//! evaluated by the real `nix-instantiate`.
//!
//! Without `nix-instantiate` these tests skip (saying so) unless `CI=true`,
//! where they fail: `.ci/run` installs Nix. The generator scripts are run in a
//! plain `bash` with a temporary `$out`, `$in` and `$prompts` (no engine), to
//! prove that they work with the real tools and produce exactly their declared
//! files.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn under_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Whether `nix-instantiate` can run. Outside CI a missing Nix skips the test
/// (with a message); under `CI=true` it fails it.
fn have_nix(test: &str) -> bool {
    match Command::new("nix-instantiate").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(
                !under_ci(),
                "{test}: nix-instantiate not found, and CI=true: .ci/run must install nix-bin"
            );
            eprintln!("{test}: SKIPPED: nix-instantiate not found (install Debian's nix-bin)");
            false
        }
    }
}

fn tool_exists(tool: &str) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `nix-instantiate --eval --strict --json <args>` in `dir`.
fn nix_eval_in(dir: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("nix-instantiate")
        .current_dir(dir)
        .args(["--eval", "--strict", "--json"])
        .args(args)
        .output()
        .expect("run nix-instantiate");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn nix_eval(args: &[&str]) -> Result<Value, String> {
    nix_eval_in(&repo(), args)
}

fn fleet() -> Value {
    nix_eval(&["fleet.nix"]).unwrap_or_else(|e| panic!("fleet.nix does not evaluate:\n{e}"))
}

fn names(v: &Value) -> Vec<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- fleet.nix --

const DARWIN: [&str; 4] = ["argentum", "blackphos", "rosegold", "stibnite"];

const EVERY_MACHINE: [&str; 6] = [
    "openssh",
    "openssh-ca",
    "openssh-known-hosts",
    "user-password-crs58",
    "zerotier",
    "zerotier-ip",
];

#[test]
fn fleet_pins_machines_classes_tags_and_generators() {
    if !have_nix("fleet_pins_machines_classes_tags_and_generators") {
        return;
    }
    let m = fleet();
    assert_eq!(names(&m), vec!["machines"], "the manifest has one key");
    let machines = &m["machines"];
    assert_eq!(
        names(machines),
        vec!["argentum", "blackphos", "cinnabar", "rosegold", "stibnite"]
    );

    let cinnabar = &machines["cinnabar"];
    assert_eq!(cinnabar["class"], "nixos");
    assert_eq!(strs(&cinnabar["tags"]), vec!["nixos", "vps", "cloud"]);
    let mut want: BTreeSet<String> = set(&EVERY_MACHINE);
    want.extend(set(&[
        "hcloud-token",
        "luks",
        "wireguard-wg0",
        "zerotier-controller",
    ]));
    assert_eq!(
        names(&cinnabar["generators"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        want
    );

    for d in DARWIN {
        let mach = &machines[d];
        assert_eq!(mach["class"], "darwin", "{d}");
        assert_eq!(strs(&mach["tags"]), vec!["darwin", "workstation"], "{d}");
        assert_eq!(
            names(&mach["generators"])
                .into_iter()
                .collect::<BTreeSet<_>>(),
            set(&EVERY_MACHINE),
            "{d}"
        );
    }
}

const GENERATOR_FIELDS: [&str; 7] = [
    "dependencies",
    "files",
    "prompts",
    "runtimeInputs",
    "script",
    "share",
    "validation",
];
const FILE_FIELDS: [&str; 8] = [
    "deploy",
    "group",
    "mode",
    "neededFor",
    "owner",
    "path",
    "restartUnits",
    "secret",
];
const PROMPT_FIELDS: [&str; 3] = ["description", "persist", "type"];

#[test]
fn fleet_emits_only_manifest_fields_and_the_seed_definitions() {
    if !have_nix("fleet_emits_only_manifest_fields_and_the_seed_definitions") {
        return;
    }
    let m = fleet();
    let machines = m["machines"].as_object().unwrap();
    for (mname, mach) in machines {
        assert_eq!(
            names(mach).into_iter().collect::<BTreeSet<_>>(),
            set(&["class", "generators", "tags"])
        );
        for (gname, g) in mach["generators"].as_object().unwrap() {
            let keys: BTreeSet<String> = names(g).into_iter().collect();
            assert_eq!(keys, set(&GENERATOR_FIELDS), "{mname}/{gname}");
            for dep in strs(&g["dependencies"]) {
                assert!(
                    mach["generators"].get(&dep).is_some(),
                    "{mname}/{gname}: dependency {dep} is not declared on the machine"
                );
            }
            for (fname, f) in g["files"].as_object().unwrap() {
                for k in names(f) {
                    assert!(
                        FILE_FIELDS.contains(&k.as_str()),
                        "{mname}/{gname}/{fname}: {k}"
                    );
                }
            }
            for (pname, p) in g["prompts"].as_object().unwrap() {
                for k in names(p) {
                    assert!(
                        PROMPT_FIELDS.contains(&k.as_str()),
                        "{mname}/{gname}/{pname}: {k}"
                    );
                }
            }
        }
    }

    // the shared CA: one definition on every machine, its private key never deployed
    let ca = &machines["cinnabar"]["generators"]["openssh-ca"];
    assert_eq!(ca["share"], true);
    assert_eq!(ca["files"]["id_ed25519"]["secret"], true);
    assert_eq!(ca["files"]["id_ed25519"]["deploy"], false);
    assert_eq!(ca["files"]["id_ed25519.pub"]["secret"], false);
    for d in DARWIN {
        assert_eq!(&machines[d]["generators"]["openssh-ca"], ca, "{d}");
    }

    let c = &machines["cinnabar"]["generators"];
    let ssh = &c["openssh"];
    assert_eq!(strs(&ssh["dependencies"]), vec!["openssh-ca"]);
    assert_eq!(ssh["share"], false);
    assert_eq!(ssh["files"]["ssh_host_ed25519_key"]["secret"], true);
    assert_eq!(
        strs(&ssh["files"]["ssh_host_ed25519_key"]["restartUnits"]),
        vec!["sshd.service"]
    );
    assert_eq!(ssh["files"]["ssh_host_ed25519_key.pub"]["secret"], false);
    assert_eq!(
        ssh["files"]["ssh_host_ed25519_key-cert.pub"]["secret"],
        false
    );
    assert_eq!(
        strs(
            &machines["blackphos"]["generators"]["openssh"]["files"]["ssh_host_ed25519_key"]
                ["restartUnits"]
        ),
        vec!["com.openssh.sshd"]
    );
    assert_eq!(
        strs(&c["openssh-known-hosts"]["dependencies"]),
        vec!["openssh-ca"]
    );
    assert_eq!(
        c["openssh-known-hosts"]["files"]["ssh_known_hosts"]["secret"],
        false
    );

    let pw = &c["user-password-crs58"];
    assert_eq!(pw["files"]["password"]["secret"], true);
    assert_eq!(pw["files"]["password"]["deploy"], false);
    assert_eq!(pw["files"]["password-hash"]["secret"], true);
    assert_eq!(pw["files"]["password-hash"]["neededFor"], "users");
    assert_eq!(
        pw["prompts"],
        serde_json::json!({}),
        "fleet: prompt = false"
    );

    assert_eq!(
        c["luks"]["files"]["passphrase"]["neededFor"],
        "partitioning"
    );

    let h = &c["hcloud-token"];
    assert_eq!(h["prompts"]["hcloud-token"]["type"], "hidden");
    assert_eq!(h["prompts"]["hcloud-token"]["persist"], true);
    assert_eq!(h["files"]["hcloud-token"]["secret"], true);
    assert_eq!(h["files"]["hcloud-token"]["deploy"], false);

    let wg = &c["wireguard-wg0"];
    assert_eq!(wg["files"]["private-key"]["secret"], true);
    assert_eq!(wg["files"]["public-key"]["secret"], false);

    let ztc = &c["zerotier-controller"];
    assert_eq!(ztc["files"]["identity-secret"]["secret"], true);
    assert_eq!(ztc["files"]["network-id"]["secret"], false);
    // on the controller the peer reuses the controller identity
    assert_eq!(
        strs(&c["zerotier"]["dependencies"]),
        vec!["zerotier-controller"]
    );
    assert_eq!(
        strs(&machines["blackphos"]["generators"]["zerotier"]["dependencies"]),
        Vec::<String>::new()
    );
}

// ------------------------------------------- tags, roles, settings precedence --

fn precedence() -> Value {
    nix_eval(&["tests/fixtures/nix/precedence.nix"])
        .unwrap_or_else(|e| panic!("precedence fixture does not evaluate:\n{e}"))
}

/// The JSON the probe module put into `validation`.
fn probe_report(m: &Value, machine: &str, generator: &str) -> Value {
    let v = m["machines"][machine]["generators"][generator]["validation"]
        .as_str()
        .unwrap_or_else(|| panic!("{machine} has no {generator}"));
    serde_json::from_str(v).unwrap()
}

fn machines_with(m: &Value, generator: &str) -> Vec<String> {
    m["machines"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, mach)| mach["generators"].get(generator).is_some())
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn tag_expansion_including_all_and_role_assignment() {
    if !have_nix("tag_expansion_including_all_and_role_assignment") {
        return;
    }
    let m = precedence();
    // p: m1 by name, tag b = m1 + m2 (m1 once)
    assert_eq!(machines_with(&m, "probe-p"), vec!["m1", "m2"]);
    // q: tag all = every machine, also m4 which has no tags at all
    assert_eq!(machines_with(&m, "probe-q"), vec!["m1", "m2", "m3", "m4"]);
    // r: alpha on tag c, beta on m1 by name
    assert_eq!(machines_with(&m, "probe-r"), vec!["m3"]);
    assert_eq!(machines_with(&m, "shared"), vec!["m1"]);
    // s: a tag no machine has
    assert!(machines_with(&m, "probe-s").is_empty());

    // class and tags of machines; machineClass defaults to nixos
    assert_eq!(m["machines"]["m2"]["class"], "darwin");
    assert_eq!(m["machines"]["m4"]["class"], "nixos");
    assert_eq!(m["machines"]["m4"]["tags"], serde_json::json!([]));

    // what a role function is given
    let r = probe_report(&m, "m2", "probe-p");
    assert_eq!(r["role"], "alpha");
    assert_eq!(
        r["machine"],
        serde_json::json!({ "name": "m2", "class": "darwin", "tags": ["b"] })
    );
    assert_eq!(
        r["roles"],
        serde_json::json!({ "alpha": ["m1", "m2"], "beta": [] })
    );
    let r = probe_report(&m, "m3", "probe-r");
    assert_eq!(
        r["roles"],
        serde_json::json!({ "alpha": ["m3"], "beta": ["m1"] })
    );
}

#[test]
fn settings_merge_instance_then_role_then_machine() {
    if !have_nix("settings_merge_instance_then_role_then_machine") {
        return;
    }
    let m = precedence();
    // m1 is named in the role with machine settings: all three levels
    assert_eq!(
        probe_report(&m, "m1", "probe-p")["settings"],
        serde_json::json!({
            "level": "machine",
            "onlyInstance": 1,
            "onlyRole": 2,
            "onlyMachine": 3,
            "nested": { "i": "instance", "r": "role", "m": "machine" }
        })
    );
    // m2 is in the role by tag only: instance, then role
    assert_eq!(
        probe_report(&m, "m2", "probe-p")["settings"],
        serde_json::json!({
            "level": "role",
            "onlyInstance": 1,
            "onlyRole": 2,
            "nested": { "i": "instance", "r": "role", "m": "role" }
        })
    );
    // an instance without settings
    assert_eq!(
        probe_report(&m, "m1", "probe-q")["settings"],
        serde_json::json!({})
    );
}

// --------------------------------------------------------------- mistakes --

fn error_of(case: &str) -> String {
    let expr = format!("(import ./tests/fixtures/nix/errors.nix).{case}");
    match nix_eval(&["-E", &expr]) {
        Ok(v) => panic!("{case}: evaluated without error: {v}"),
        Err(e) => e,
    }
}

#[test]
fn inventory_mistakes_give_their_messages() {
    if !have_nix("inventory_mistakes_give_their_messages") {
        return;
    }
    let cases = [
        (
            "unknownMachine",
            r#"inventory: instance "sshd-clan", role "server": machine "nope" does not exist (machines: argentum, blackphos, cinnabar, rosegold, stibnite)"#,
        ),
        (
            "unknownModule",
            r#"inventory: instance "vpn": module "nope" does not exist (modules: hcloud-token, luks, sshd, user-password, wireguard, zerotier)"#,
        ),
        (
            "unknownRole",
            r#"inventory: instance "sshd-clan", role "peer": module "sshd" has no role "peer" (roles: client, server)"#,
        ),
        (
            "badMachineClass",
            r#"inventory: machine "cinnabar": machineClass must be "nixos" or "darwin", got "windows""#,
        ),
        (
            "conflict",
            r#"inventory: machine "m1": generator "shared": field "script" is defined differently by instance "one", role "beta" ("echo one") and instance "two", role "beta" ("echo two")"#,
        ),
        (
            "unknownField",
            r#"inventory: instance "x", role "beta", machine "m1": generator "shared": unknown field "bogus" (known: dependencies, files, prompts, runtimeInputs, script, share, validation)"#,
        ),
        (
            "badMode",
            r#"inventory: instance "x", role "beta", machine "m1": generator "shared": files.out.mode: expected four octal digits like "0400", got "rw""#,
        ),
        (
            "badNeededFor",
            r#"inventory: instance "x", role "beta", machine "m1": generator "shared": files.out.neededFor: expected one of partitioning, activation, users, services, got "boot""#,
        ),
        (
            "unknownInstanceAttribute",
            r#"inventory: instance "x": unknown attribute "role" (known: module, roles, settings, description)"#,
        ),
    ];
    for (case, msg) in cases {
        let err = error_of(case);
        assert!(
            err.contains(&format!("error: {msg}")),
            "{case}: expected\n  error: {msg}\ngot\n{err}"
        );
    }

    // the same generator contributed twice, identically: merged, no error
    let m = nix_eval(&["-E", "(import ./tests/fixtures/nix/errors.nix).sameTwice"])
        .expect("identical contributions merge");
    assert_eq!(names(&m["machines"]["m1"]["generators"]), vec!["shared"]);
}

#[test]
fn a_role_naming_a_missing_machine_fails_even_without_generators() {
    if !have_nix("a_role_naming_a_missing_machine_fails_even_without_generators") {
        return;
    }
    let err = nix_eval(&[
        "-E",
        r#"import ./nix/inventory.nix {
             modulesDir = ./tests/fixtures/nix/modules;
             machines = { };
             instances.x = { module.name = "probe"; roles.alpha.machines.ghost = { }; };
           }"#,
    ])
    .unwrap_err();
    assert!(
        err.contains(r#"error: inventory: instance "x", role "alpha": machine "ghost" does not exist (machines: )"#),
        "{err}"
    );
}

// ----------------------------------------------------------- every .nix file --

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            if name == "target" || name == ".git" {
                continue;
            }
            nix_files(&path, out);
        } else if ty.is_file() && path.extension().is_some_and(|e| e == "nix") {
            out.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    if !have_nix("every_nix_file_parses") {
        return;
    }
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    files.sort();
    for want in [
        "fleet.nix",
        "flake.nix",
        "nix/inventory.nix",
        "nix/lib.nix",
        "nix/modules/nixos.nix",
        "nix/modules/darwin.nix",
        "nix/modules/options.nix",
        "generators/sshd.nix",
    ] {
        assert!(files.contains(&repo().join(want)), "{want} is missing");
    }
    let mut bad = Vec::new();
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        if !out.status.success() {
            bad.push(format!(
                "{}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "files that do not parse:\n{}",
        bad.join("\n")
    );
}

// --------------------------------------------------------- generator scripts --

/// One run of a machine's generators in plain bash, in dependency order.
struct Run {
    root: tempfile::TempDir,
    /// generator -> (exit ok, stderr)
    results: BTreeMap<String, (bool, String)>,
}

impl Run {
    fn out(&self, generator: &str) -> PathBuf {
        self.root.path().join("out").join(generator)
    }
    fn read(&self, generator: &str, file: &str) -> String {
        fs::read_to_string(self.out(generator).join(file))
            .unwrap_or_else(|e| panic!("{generator}/{file}: {e}"))
    }
    fn ok(&self, generator: &str) -> bool {
        self.results.get(generator).is_some_and(|r| r.0)
    }
    fn stderr(&self, generator: &str) -> &str {
        &self.results[generator].1
    }
}

fn topological(gens: &serde_json::Map<String, Value>) -> Vec<String> {
    fn visit(
        g: &str,
        gens: &serde_json::Map<String, Value>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(g.to_string()) {
            return;
        }
        for d in strs(&gens[g]["dependencies"]) {
            visit(&d, gens, seen, order);
        }
        order.push(g.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for g in gens.keys() {
        visit(g, gens, &mut seen, &mut order);
    }
    order
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs every generator of `machine` with `path` as PATH, dependencies first;
/// a generator whose dependency failed is not run.
fn run_generators(
    manifest: &Value,
    machine: &str,
    path: &str,
    prompts: &[(&str, &str, &str)],
) -> Run {
    let gens = manifest["machines"][machine]["generators"]
        .as_object()
        .unwrap_or_else(|| panic!("no machine {machine}"));
    let root = tempfile::tempdir().unwrap();
    let mut results = BTreeMap::new();
    for g in topological(gens) {
        let def = &gens[&g];
        let deps = strs(&def["dependencies"]);
        if let Some(d) = deps
            .iter()
            .find(|d| !results.get(*d).is_some_and(|r: &(bool, String)| r.0))
        {
            results.insert(g.clone(), (false, format!("dependency {d} failed")));
            continue;
        }
        let out = root.path().join("out").join(&g);
        let input = root.path().join("in").join(&g);
        let prompt_dir = root.path().join("prompts").join(&g);
        let tmp = root.path().join("tmp").join(&g);
        for d in [&out, &input, &prompt_dir, &tmp] {
            fs::create_dir_all(d).unwrap();
        }
        for d in &deps {
            copy_dir(&root.path().join("out").join(d), &input.join(d));
        }
        for (pg, name, value) in prompts {
            if *pg == g {
                fs::write(prompt_dir.join(name), value).unwrap();
            }
        }
        let o: Output = Command::new("/bin/bash")
            .arg("-c")
            .arg(def["script"].as_str().unwrap())
            .env_clear()
            .env("PATH", path)
            .env("out", &out)
            .env("in", &input)
            .env("prompts", &prompt_dir)
            .env("TMPDIR", &tmp)
            .env("HOME", &tmp)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let ok = o.status.success();
        if ok {
            let produced: BTreeSet<String> = fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let declared: BTreeSet<String> = names(&def["files"]).into_iter().collect();
            assert_eq!(
                produced, declared,
                "{machine}/{g}: produced files differ from the declared ones"
            );
            for f in &produced {
                assert!(out.join(f).is_file(), "{machine}/{g}/{f} is not a file");
            }
        }
        results.insert(g, (ok, stderr));
    }
    Run { root, results }
}

const HOST_PATH: &str = "/usr/bin:/bin";

/// A PATH directory holding every command of /usr/bin and /bin except `hide`.
fn path_without(hide: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for src in ["/usr/bin", "/bin"] {
        let Ok(entries) = fs::read_dir(src) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name();
            let n = name.to_string_lossy();
            if hide.contains(&n.as_ref()) || dir.path().join(&name).exists() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), dir.path().join(&name)).unwrap();
        }
    }
    dir
}

fn sh(cmd: &str) -> Output {
    Command::new("/bin/bash")
        .arg("-c")
        .arg(cmd)
        .env("PATH", HOST_PATH)
        .output()
        .unwrap()
}

/// The tools .ci/run installs; under CI they must be there.
const CI_TOOLS: [&str; 4] = ["ssh-keygen", "openssl", "mkpasswd", "wg"];

fn missing_tools(test: &str) -> Vec<&'static str> {
    let missing: Vec<&str> = CI_TOOLS
        .iter()
        .copied()
        .filter(|t| !tool_exists(t))
        .collect();
    assert!(
        missing.is_empty() || !under_ci(),
        "{test}: CI=true but {missing:?} not installed: .ci/run installs them"
    );
    missing
}

#[test]
fn cinnabar_generator_scripts_run_with_the_real_tools() {
    let test = "cinnabar_generator_scripts_run_with_the_real_tools";
    if !have_nix(test) {
        return;
    }
    let missing = missing_tools(test);
    let m = fleet();
    let run = run_generators(
        &m,
        "cinnabar",
        HOST_PATH,
        &[("hcloud-token", "hcloud-token", "demo-hcloud-token")],
    );
    for (g, (ok, stderr)) in &run.results {
        if !ok {
            let tool = missing
                .iter()
                .find(|t| stderr.contains(&format!("{t} not found")));
            match tool {
                Some(t) => eprintln!(
                    "{test}: SKIPPED {g}: {t} is not installed ({})",
                    stderr.trim()
                ),
                None if stderr.starts_with("dependency ") => {
                    eprintln!("{test}: SKIPPED {g}: {stderr}")
                }
                None => panic!("cinnabar/{g} failed:\n{stderr}"),
            }
        }
    }
    assert_eq!(
        run.results.len(),
        m["machines"]["cinnabar"]["generators"]
            .as_object()
            .unwrap()
            .len()
    );

    // certificate-based SSH
    if run.ok("openssh") {
        let ca_pub = run.read("openssh-ca", "id_ed25519.pub");
        assert!(ca_pub.starts_with("ssh-ed25519 "), "{ca_pub}");
        assert!(run
            .read("openssh-ca", "id_ed25519")
            .contains("BEGIN OPENSSH PRIVATE KEY"));
        let cert = run.out("openssh").join("ssh_host_ed25519_key-cert.pub");
        let o = sh(&format!("ssh-keygen -L -f '{}'", cert.display()));
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "ssh-keygen -L failed");
        assert!(listing.contains("host certificate"), "{listing}");
        assert!(listing.contains("cinnabar"), "{listing}");
        let fp = sh(&format!(
            "ssh-keygen -l -f '{}'",
            run.out("openssh-ca").join("id_ed25519.pub").display()
        ));
        let fp = String::from_utf8_lossy(&fp.stdout);
        let fp = fp.split_whitespace().nth(1).unwrap();
        assert!(
            listing.contains(&format!("Signing CA: ED25519 {fp}")),
            "certificate not signed by openssh-ca ({fp}):\n{listing}"
        );
        assert_eq!(
            run.read("openssh-known-hosts", "ssh_known_hosts"),
            format!("@cert-authority * {}", ca_pub)
        );
    }

    // user password: random, SHA-512 crypt of exactly the password file
    if run.ok("user-password-crs58") {
        let pw = run.read("user-password-crs58", "password");
        let hash = run.read("user-password-crs58", "password-hash");
        assert!(pw.len() >= 16 && !pw.contains('\n'), "{pw:?}");
        assert!(hash.starts_with("$6$") && !hash.contains('\n'), "{hash}");
        check_sha512_crypt(&pw, &hash);
    }

    if run.ok("luks") {
        let p = run.read("luks", "passphrase");
        assert!(p.len() >= 32 && !p.ends_with('\n'), "{p:?}");
    }
    assert_eq!(
        run.read("hcloud-token", "hcloud-token"),
        "demo-hcloud-token"
    );

    if run.ok("wireguard-wg0") {
        check_wireguard_pair(&run, "wireguard-wg0");
    }

    // zerotier: controller identity, network id, the controller's own peer
    let node = run.read("zerotier-controller", "node-id");
    let nwid = run.read("zerotier-controller", "network-id");
    assert!(is_hex(&node, 10), "{node}");
    assert!(is_hex(&nwid, 16) && nwid.starts_with(&node), "{nwid}");
    assert!(run
        .read("zerotier-controller", "identity-secret")
        .starts_with(&format!("{node}:0:")));
    assert_eq!(
        run.read("zerotier", "identity-secret"),
        run.read("zerotier-controller", "identity-secret")
    );
    assert_eq!(run.read("zerotier", "node-id"), node);
    assert_eq!(run.read("zerotier-ip", "ip").trim(), rfc4193(&nwid, &node));
    if !tool_exists("zerotier-idtool") {
        assert!(
            run.stderr("zerotier-controller").contains(
                "zerotier-idtool not found: writing a random identity-shaped placeholder"
            ),
            "{}",
            run.stderr("zerotier-controller")
        );
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn rfc4193(nwid: &str, node: &str) -> String {
    let hex = format!("fd{nwid}9993{node}");
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn check_sha512_crypt(password: &str, hash: &str) {
    if !tool_exists("openssl") {
        eprintln!("SKIPPED the hash re-computation: openssl is not installed");
        return;
    }
    let salt = hash.split('$').nth(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    fs::write(&f, password).unwrap();
    let o = sh(&format!(
        "openssl passwd -6 -salt '{salt}' -stdin < '{}'",
        f.display()
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), hash);
}

fn check_wireguard_pair(run: &Run, g: &str) {
    let private = run.read(g, "private-key");
    let public = run.read(g, "public-key");
    assert_eq!(private.trim().len(), 44, "{private:?}");
    assert_eq!(public.trim().len(), 44, "{public:?}");
    if tool_exists("wg") {
        let o = sh(&format!(
            "wg pubkey < '{}'",
            run.out(g).join("private-key").display()
        ));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), public.trim());
    }
}

#[test]
fn documented_fallbacks_without_wg_mkpasswd_and_zerotier_idtool() {
    let test = "documented_fallbacks_without_wg_mkpasswd_and_zerotier_idtool";
    if !have_nix(test) {
        return;
    }
    if !tool_exists("openssl") {
        assert!(!under_ci(), "{test}: openssl not installed");
        eprintln!("{test}: SKIPPED: the fallbacks need openssl, not installed");
        return;
    }
    let m = fleet();
    let path = path_without(&["wg", "mkpasswd", "zerotier-idtool"]);
    let run = run_generators(
        &m,
        "cinnabar",
        path.path().to_str().unwrap(),
        &[("hcloud-token", "hcloud-token", "t")],
    );
    for g in [
        "wireguard-wg0",
        "user-password-crs58",
        "zerotier-controller",
    ] {
        assert!(run.ok(g), "{g}: {}", run.stderr(g));
    }
    assert!(run
        .stderr("wireguard-wg0")
        .contains("wireguard-wg0: wg not found: using the openssl X25519 fallback"));
    check_wireguard_pair(&run, "wireguard-wg0");
    check_sha512_crypt(
        &run.read("user-password-crs58", "password"),
        &run.read("user-password-crs58", "password-hash"),
    );
    assert!(run
        .stderr("zerotier-controller")
        .contains("zerotier-idtool not found"));
}

#[test]
fn a_missing_tool_is_named() {
    let test = "a_missing_tool_is_named";
    if !have_nix(test) {
        return;
    }
    let m = fleet();
    let path = path_without(&["ssh-keygen", "wg", "openssl", "mkpasswd", "zerotier-idtool"]);
    let run = run_generators(
        &m,
        "cinnabar",
        path.path().to_str().unwrap(),
        &[("hcloud-token", "hcloud-token", "t")],
    );
    let expect = [
        (
            "openssh-ca",
            "openssh-ca: ssh-keygen not found: install openssh-client (openssh)",
        ),
        (
            "wireguard-wg0",
            "wireguard-wg0: wg not found: install wireguard-tools (or openssl for the fallback)",
        ),
        (
            "user-password-crs58",
            "user-password-crs58: mkpasswd not found: install whois (mkpasswd) or openssl",
        ),
        (
            "zerotier-controller",
            "zerotier-controller: zerotier-idtool not found: install zerotier-one (fallback needs openssl, not found either)",
        ),
    ];
    for (g, msg) in expect {
        assert!(!run.ok(g), "{g} succeeded without its tools");
        assert!(run.stderr(g).contains(msg), "{g}: {}", run.stderr(g));
    }
    // generators with coreutils-only fallbacks still work
    assert!(run.ok("luks"), "{}", run.stderr("luks"));
    assert!(run.ok("hcloud-token"));
}

// ----------------------------------------------- public values from the store --

/// A copy of the repo's Nix side, with a store holding `network_id` as
/// cinnabar's zerotier network id when given.
fn fleet_copy(network_id: Option<&str>) -> tempfile::TempDir {
    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_tree(&e.path(), &to.join(e.file_name()));
            } else {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    fs::copy(repo().join("fleet.nix"), dir.path().join("fleet.nix")).unwrap();
    copy_tree(&repo().join("nix"), &dir.path().join("nix"));
    copy_tree(&repo().join("generators"), &dir.path().join("generators"));
    if let Some(id) = network_id {
        let p = dir
            .path()
            .join("sops/machines/cinnabar/public/zerotier-controller");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("network-id"), format!("{id}\n")).unwrap();
    }
    dir
}

#[test]
fn peers_read_the_network_id_from_the_store_at_evaluation_time() {
    let test = "peers_read_the_network_id_from_the_store_at_evaluation_time";
    if !have_nix(test) {
        return;
    }
    if !tool_exists("openssl") && !tool_exists("zerotier-idtool") {
        assert!(!under_ci(), "{test}: openssl not installed");
        eprintln!("{test}: SKIPPED: zerotier identities need zerotier-idtool or openssl");
        return;
    }

    // not generated yet: evaluation works, the peer's address cannot be made
    let fresh = fleet_copy(None);
    let m = nix_eval_in(fresh.path(), &["fleet.nix"]).unwrap();
    let ip = &m["machines"]["blackphos"]["generators"]["zerotier-ip"];
    assert_eq!(ip["validation"], r#"{"networkId":null}"#);
    let run = run_generators(&m, "blackphos", HOST_PATH, &[]);
    assert!(run.ok("zerotier"), "{}", run.stderr("zerotier"));
    assert!(!run.ok("zerotier-ip"));
    assert!(
        run.stderr("zerotier-ip").contains(
            "zerotier-ip: the network id of controller cinnabar was not in the store when the configuration was evaluated (sops/machines/cinnabar/public/zerotier-controller/network-id): generate the controller first (vars generate --machine cinnabar), then run vars generate again"
        ),
        "{}",
        run.stderr("zerotier-ip")
    );

    // generated: every peer computes its address in that network
    let nwid = "8056c2e21c000001";
    let stored = fleet_copy(Some(nwid));
    let m = nix_eval_in(stored.path(), &["fleet.nix"]).unwrap();
    for d in DARWIN {
        let ip = &m["machines"][d]["generators"]["zerotier-ip"];
        assert_eq!(
            ip["validation"].as_str().unwrap(),
            format!(r#"{{"networkId":"{nwid}"}}"#),
            "{d}"
        );
    }
    // the controller itself never depends on the store
    assert_eq!(
        m["machines"]["cinnabar"]["generators"],
        fleet()["machines"]["cinnabar"]["generators"]
    );
    let run = run_generators(&m, "rosegold", HOST_PATH, &[]);
    assert!(run.ok("zerotier-ip"), "{}", run.stderr("zerotier-ip"));
    let node = run.read("zerotier", "node-id");
    assert!(is_hex(&node, 10), "{node:?}");
    assert_eq!(run.read("zerotier-ip", "ip").trim(), rfc4193(nwid, &node));
}

// ------------------------------------------------- NixOS and darwin modules --

/// The modules need nixpkgs' lib (the module system), which is not installed
/// here: with NIXPKGS_LIB=/path/to/nixpkgs/lib this test evaluates them
/// against stand-ins for the platform options; without it, it skips.
#[test]
fn nixos_and_darwin_modules_evaluate_with_the_module_system() {
    let test = "nixos_and_darwin_modules_evaluate_with_the_module_system";
    if !have_nix(test) {
        return;
    }
    let Ok(lib) = std::env::var("NIXPKGS_LIB") else {
        eprintln!("{test}: SKIPPED: set NIXPKGS_LIB to a nixpkgs lib/ directory to run it");
        return;
    };
    let arg = format!("import {lib}");
    let r = nix_eval(&["tests/fixtures/nix/modules-eval.nix", "--arg", "lib", &arg])
        .unwrap_or_else(|e| panic!("the modules do not evaluate:\n{e}"));
    let fleet = fleet();
    for (host, class, group) in [
        ("cinnabar", "nixos", "root"),
        ("blackphos", "darwin", "wheel"),
    ] {
        let s = &r[host];
        assert_eq!(s["failedAssertions"], serde_json::json!([]), "{host}");
        let mine = &s["manifest"]["machines"][host];
        let want = &fleet["machines"][host];
        assert_eq!(mine["class"], class);
        assert_eq!(mine["tags"], want["tags"]);
        assert_eq!(names(&mine["generators"]), names(&want["generators"]));
        // the module's manifest is the fleet's with the defaults filled in
        for (g, def) in want["generators"].as_object().unwrap() {
            let got = &mine["generators"][g];
            for k in GENERATOR_FIELDS {
                if k != "files" && k != "prompts" {
                    assert_eq!(got[k], def[k], "{host}/{g}.{k}");
                }
            }
            for (f, fdef) in def["files"].as_object().unwrap() {
                let gotf = &got["files"][f];
                assert_eq!(
                    names(gotf).into_iter().collect::<BTreeSet<_>>(),
                    set(&FILE_FIELDS),
                    "{host}/{g}/{f}"
                );
                for (k, v) in fdef.as_object().unwrap() {
                    if !(host == "cinnabar" && g == "openssh" && k == "path") {
                        assert_eq!(&gotf[k], v, "{host}/{g}/{f}.{k}");
                    }
                }
                assert_eq!(gotf["group"], group, "{host}/{g}/{f}");
            }
            for (p, pdef) in def["prompts"].as_object().unwrap() {
                for (k, v) in pdef.as_object().unwrap() {
                    assert_eq!(&got["prompts"][p][k], v, "{host}/{g}/{p}.{k}");
                }
            }
        }
        assert!(s["knownHosts"]
            .as_str()
            .unwrap()
            .starts_with("@cert-authority * ssh-ed25519 "));
    }

    let c = &r["cinnabar"];
    // a definition next to the fleet's merges into the same generator
    assert_eq!(
        c["manifest"]["machines"]["cinnabar"]["generators"]["openssh"]["files"]
            ["ssh_host_ed25519_key"]["path"],
        "/etc/ssh/ssh_host_ed25519_key"
    );
    assert_eq!(
        c["installedPath"],
        "/run/secrets-for-users/user-password-crs58.password-hash"
    );
    let scripts = &c["activationScripts"];
    assert_eq!(scripts["users"]["deps"], serde_json::json!(["vars-users"]));
    assert_eq!(
        scripts["vars-users"]["deps"],
        serde_json::json!(["specialfs"])
    );
    assert_eq!(
        scripts["vars"]["deps"],
        serde_json::json!(["specialfs", "users"])
    );
    let users = scripts["vars-users"]["text"].as_str().unwrap();
    assert!(users.contains("activate --machine cinnabar"), "{users}");
    assert!(
        users.contains("--phase users --secrets-dir /run/secrets-for-users"),
        "{users}"
    );
    let services = scripts["vars"]["text"].as_str().unwrap();
    assert!(
        services.contains("--phase services --secrets-dir /run/secrets --json"),
        "{services}"
    );
    assert!(
        services.contains("/run/nixos/activation-restart-list"),
        "{services}"
    );

    let b = &r["blackphos"];
    assert_eq!(
        b["installedPath"],
        "/var/run/vars/secrets-for-users/user-password-crs58.password-hash"
    );
    assert!(b["activationScripts"]["postActivation"]["text"]
        .as_str()
        .unwrap()
        .contains("vars-activate"));
    assert_eq!(
        b["launchd"]["vars-activate"]["serviceConfig"]["RunAtLoad"],
        true
    );
}
