//! Secret hygiene (issue 7):
//!
//! * a generator's working directory (cwd, `$out`, `$in`, `$prompts`,
//!   `$TMPDIR`, `$HOME`) is on a tmpfs, its files 0600 and directories 0700,
//!   under bubblewrap and without it;
//! * plaintext never reaches persistent disk (the repository, `$HOME`, `/tmp`
//!   and `/var/tmp` are searched for known secrets after runs, and after
//!   SIGKILLs in the middle of commits, before any recovery), never appears in
//!   any process's argv or environment during a run (`/proc/*/cmdline` and
//!   `/proc/*/environ` are polled), and is never printed by generate, check,
//!   list, rekey, prune, graph or a dry run;
//! * a failing script that prints its inputs, prompt answers or outputs has
//!   them redacted from vars' error message;
//! * files are created 0600 (sealed files, metadata, key.json, age-key,
//!   keys.txt, the lock), even under `umask 000`;
//! * key material in memory is held in zeroizing types (checked at compile time
//!   on the public API's signatures).

mod hardening;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hardening::{is_tmpfs, Repo};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Whether to run scripts under bubblewrap here: yes when it is installed
/// (required under CI=true).
fn bwrap() -> bool {
    hardening::require("bwrap")
}

fn sandbox_flag(bwrap: bool) -> Vec<&'static str> {
    if bwrap {
        vec![]
    } else {
        vec!["--no-sandbox"]
    }
}

/// `src` stores a prompt answer; `rand` makes a random secret whose marker is
/// split in the script text (so the manifest never holds it); `copy` derives a
/// secret from both; `fs` reports its working directory's file systems and modes.
fn fleet() -> Value {
    json!({"machines": {"m1": {"class": "nixos", "generators": {
        "src": {"prompts": {"p": {"type": "hidden"}}, "files": {"s": {}},
                "script": "cat $prompts/p > $out/s\nsleep 0.3"},
        "rand": {"files": {"r": {}},
                 "script": "m=HYG\nprintf '%sIENE-%08x%08x\\n' \"$m\" \"$SRANDOM\" \"$SRANDOM\" > $out/r\nsleep 0.3"},
        "copy": {"dependencies": ["src", "rand"], "files": {"c": {}},
                 "script": "{ printf 'derived '; cat $in/src/s $in/rand/r; } > $out/c\nsleep 0.3"},
        "fs": {"dependencies": ["src"], "files": {"types": {"secret": false}},
               "script": "t() { stat -f -c %T \"$1\"; }\n\
                          printf 'cwd=%s out=%s in=%s prompts=%s tmp=%s home=%s\\n' \"$(t .)\" \"$(t $out)\" \"$(t $in)\" \"$(t $prompts)\" \"$(t $TMPDIR)\" \"$(t $HOME)\" > $out/types\n\
                          printf 'modes in=%s dep=%s input=%s prompts=%s prompt=%s out=%s\\n' \"$(stat -c %a $in)\" \"$(stat -c %a $in/src)\" \"$(stat -c %a $in/src/s)\" \"$(stat -c %a $prompts)\" \"$(stat -c %a $prompts/q)\" \"$(stat -c %a $out)\" >> $out/types",
               "prompts": {"q": {}}},
    }}}})
}

/// A prompt answer file on a tmpfs (it holds a secret: never on disk).
fn prompt_file(repo: &Repo, marker: &str) -> PathBuf {
    let dir = repo.run_dir.clone().expect("a tmpfs for the prompt file");
    let path = dir.join("prompts.json");
    std::fs::write(
        &path,
        json!({"src.p": marker, "fs.q": "not secret"}).to_string(),
    )
    .unwrap();
    path
}

fn marker(label: &str) -> String {
    let (_, key) = vars::keys::generate_identity();
    // 16 random characters of a fresh age key.
    format!("{label}-{}", &key[20..36])
}

#[test]
fn working_directories_are_on_tmpfs_and_private() {
    let mut modes = vec![false];
    if bwrap() {
        modes.push(true);
    }
    for bwrap in modes {
        let repo = Repo::new(&fleet());
        let prompts = prompt_file(&repo, &marker("PROMPT"));
        let mut args = vec!["generate", "--prompt-file", prompts.to_str().unwrap()];
        args.extend(sandbox_flag(bwrap));
        repo.ok(&args);
        let types = repo.ok(&["get", "m1", "fs/types"]);
        assert_eq!(
            types,
            "cwd=tmpfs out=tmpfs in=tmpfs prompts=tmpfs tmp=tmpfs home=tmpfs\n\
             modes in=700 dep=700 input=600 prompts=700 prompt=600 out=700\n",
            "bwrap: {bwrap}"
        );
        assert_eq!(
            repo.run_dir_entries()
                .iter()
                .filter(|e| e.starts_with("vars-"))
                .count(),
            0,
            "working directories left behind"
        );
    }
}

/// Polls every process's argv and environment for the markers until stopped.
struct ProcWatch {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    sweeps: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcWatch {
    fn start(markers: Vec<String>) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let sweeps = Arc::new(Mutex::new(0));
        let (s, h, n) = (stop.clone(), hits.clone(), sweeps.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(procs) = std::fs::read_dir("/proc") else {
                    return;
                };
                for p in procs.flatten() {
                    let name = p.file_name();
                    if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    for what in ["cmdline", "environ"] {
                        let Ok(bytes) = std::fs::read(p.path().join(what)) else {
                            continue;
                        };
                        for m in &markers {
                            if contains(&bytes, m.as_bytes()) {
                                let cmd =
                                    std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                                h.lock().unwrap().push(format!(
                                    "{what} of pid {} ({}) holds {m}",
                                    name.to_string_lossy(),
                                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                                ));
                            }
                        }
                    }
                }
                *n.lock().unwrap() += 1;
            }
        });
        ProcWatch {
            stop,
            hits,
            sweeps,
            thread: Some(thread),
        }
    }

    /// Stops; returns (hits, sweeps).
    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let hits = self.hits.lock().unwrap().clone();
        let sweeps = *self.sweeps.lock().unwrap();
        (hits, sweeps)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `roots` (symlinks not followed, files over 64 MiB
/// skipped) that holds one of `markers`.
fn files_holding(roots: &[PathBuf], markers: &[String]) -> (Vec<String>, usize) {
    let pattern = markers
        .iter()
        .map(|m| regex::escape(m))
        .collect::<Vec<_>>()
        .join("|");
    let re = regex::bytes::Regex::new(&pattern).unwrap();
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                if entry.metadata().map_or(true, |m| m.len() > 64 << 20) {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                scanned += 1;
                if let Some(m) = re.find(&bytes) {
                    found.push(format!(
                        "{}: {}",
                        path.display(),
                        String::from_utf8_lossy(m.as_bytes())
                    ));
                }
            }
        }
    }
    (found, scanned)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn plaintext_stays_off_disk_out_of_argv_and_out_of_logs() {
    let started = Instant::now();
    let bwrap = bwrap();
    let repo = Repo::new(&fleet());
    assert!(!is_tmpfs(&repo.dir) || is_tmpfs(&std::env::temp_dir()));
    let prompt = marker("PROMPT");
    let prompts = prompt_file(&repo, &prompt);
    let prompts = prompts.to_str().unwrap();
    let mut generate = vec!["generate", "--prompt-file", prompts];
    generate.extend(sandbox_flag(bwrap));
    let mut regenerate = generate.clone();
    regenerate.push("--regenerate");

    // The watchers see what they look for: a process with a canary in its
    // argv, another in its environment, a file holding one.
    let canary = marker("CANARY");
    let watch = ProcWatch::start(vec![canary.clone()]);
    for (arg, env) in [(canary.as_str(), "x"), ("x", canary.as_str())] {
        std::process::Command::new("sh")
            .args(["-c", "sleep 0.3", arg])
            .env("CANARY", env)
            .status()
            .unwrap();
    }
    let (hits, _) = watch.finish();
    assert!(
        hits.len() >= 2,
        "the /proc watcher missed the canaries: {hits:?}"
    );
    std::fs::write(repo.dir.join("canary"), &canary).unwrap();
    assert_eq!(
        files_holding(
            std::slice::from_ref(&repo.dir),
            std::slice::from_ref(&canary)
        )
        .0
        .len(),
        1
    );
    std::fs::remove_file(repo.dir.join("canary")).unwrap();

    // Runs, with every process's argv and environment watched.
    let watch = ProcWatch::start(vec![prompt.clone()]);
    let mut logs: Vec<(String, String)> = Vec::new();
    let mut log = |args: &[&str], out: std::process::Output| {
        logs.push((args.join(" "), text(&out)));
        out
    };
    let out = log(&generate, repo.run(&generate));
    assert!(out.status.success(), "{}", text(&out));
    let mut secrets = vec![prompt.clone()];
    secrets.push(repo.ok(&["get", "m1", "rand/r"]).trim().to_string());
    let out = log(&regenerate, repo.run(&regenerate));
    assert!(out.status.success(), "{}", text(&out));
    secrets.push(repo.ok(&["get", "m1", "rand/r"]).trim().to_string());
    assert!(secrets[1].starts_with("HYGIENE-") && secrets[2].starts_with("HYGIENE-"));
    assert_ne!(secrets[1], secrets[2]);
    assert!(repo.ok(&["get", "m1", "copy/c"]).contains(&prompt));
    // A second admin, so that rekey decrypts and re-seals everything.
    let (_, bob) = vars::keys::generate_identity();
    let bob_file = repo.run_dir.clone().unwrap().join("bob.txt");
    std::fs::write(&bob_file, format!("{}\n", bob.as_str())).unwrap();
    repo.ok(&[
        "keygen",
        "--user",
        "bob",
        "--identity",
        bob_file.to_str().unwrap(),
    ]);
    for args in [
        vec!["rekey"],
        vec!["check"],
        vec!["check", "--json"],
        vec!["list"],
        vec!["list", "--json"],
        vec!["prune"],
        vec!["graph"],
        vec!["generate", "--dry-run", "--regenerate"],
    ] {
        let out = log(&args, repo.run(&args));
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    repo.check_clean();
    let (hits, sweeps) = watch.finish();
    assert!(
        sweeps > 10,
        "the /proc watcher hardly ran ({sweeps} sweeps)"
    );
    assert!(
        hits.is_empty(),
        "a secret was in a process's argv or environment:\n{}",
        hits.join("\n")
    );
    for (args, printed) in &logs {
        for s in &secrets {
            assert!(
                !printed.contains(s.as_str()),
                "`vars {args}` printed a secret:\n{printed}"
            );
        }
    }

    // Kills in the middle of runs (and commits: the repository is on disk):
    // what is left, staged or not, holds no plaintext.
    let t0 = Instant::now();
    repo.ok(&regenerate);
    let full = t0.elapsed();
    let home = repo.home.clone();
    let disk_roots = vec![
        repo.dir.clone(),
        home,
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
    ];
    let mut staged_seen = 0;
    for i in 0..8 {
        let mut child = repo
            .cmd(&regenerate)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64((i as f64 + 0.5) / 8.0));
        let _ = child.kill();
        child.wait().unwrap();
        if std::fs::read_dir(repo.sops().join(".tx")).is_ok_and(|mut e| e.next().is_some()) {
            staged_seen += 1;
        }
        let (found, _) = files_holding(
            std::slice::from_ref(&repo.dir),
            std::slice::from_ref(&prompt),
        );
        assert!(
            found.is_empty(),
            "plaintext on disk after a kill: {found:?}"
        );
        repo.ok(&generate);
    }
    secrets.push(repo.ok(&["get", "m1", "rand/r"]).trim().to_string());
    let (found, scanned) = files_holding(&disk_roots, &secrets);
    assert!(found.is_empty(), "plaintext on persistent disk: {found:?}");
    eprintln!(
        "hygiene: {} /proc sweeps, {} commands' output, {scanned} files on disk searched for {} \
         secrets, 8 kills ({staged_seen} left a commit staged), bubblewrap: {bwrap}, {:.1?}",
        sweeps,
        logs.len(),
        secrets.len(),
        started.elapsed()
    );
}

#[test]
fn failed_scripts_have_known_values_redacted() {
    let repo = Repo::new(
        &json!({"machines": {"m1": {"class": "nixos", "generators": {
            "src": {"prompts": {"p": {}}, "files": {"s": {}}, "script": "cat $prompts/p > $out/s"},
            "leak": {"dependencies": ["src"], "prompts": {"q": {}}, "files": {"k": {}},
                     "script": "printf 'made-%08x%08x\\nsecond line of it\\n' $SRANDOM $SRANDOM > $out/k\n\
                                echo \"input: $(cat $in/src/s)\"; echo \"prompt: $(cat $prompts/q)\"; cat $out/k; echo short; exit 3"},
        }}}}),
    );
    let p = marker("INPUT");
    let q = marker("ANSWER");
    let prompts = repo.run_dir.clone().unwrap().join("p.json");
    std::fs::write(&prompts, json!({"src.p": p, "leak.q": q}).to_string()).unwrap();
    let out = repo.run(&[
        "generate",
        "--no-sandbox",
        "--prompt-file",
        prompts.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "generator  result\n\
         m1/src     generated (never generated)\n\
         m1/leak    failed: generator m1/leak failed (exit status: 3); last lines of its output:\n  \
         input: [redacted]\n  prompt: [redacted]\n  [redacted]\n  short\n"
    );
    assert!(!text(&out).contains(&p) && !text(&out).contains(&q));
}

#[test]
fn files_are_created_private_even_under_umask_000() {
    let repo = Repo::new(&fleet());
    let prompts = prompt_file(&repo, &marker("PROMPT"));
    let sh = |cmd: &str| {
        let out = repo
            .shell(&format!("umask 000; {cmd}"))
            .env("PROMPTS", &prompts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", text(&out));
    };
    std::fs::remove_file(repo.admin_key()).unwrap();
    std::fs::remove_dir_all(repo.sops()).unwrap();
    sh("\"$VARS\" keygen --user alice");
    sh("\"$VARS\" generate --no-sandbox --prompt-file \"$PROMPTS\"");
    sh("printf x | \"$VARS\" set m1 rand/r");
    let (_, bob) = vars::keys::generate_identity();
    let bob_file = repo.run_dir.clone().unwrap().join("bob.txt");
    std::fs::write(&bob_file, format!("{}\n", bob.as_str())).unwrap();
    sh(&format!(
        "\"$VARS\" keygen --user bob --identity {}",
        bob_file.display()
    ));
    sh("\"$VARS\" rekey");
    let mut modes = BTreeMap::new();
    let mut stack = vec![repo.sops()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(&repo.dir)
                    .unwrap()
                    .display()
                    .to_string();
                modes.insert(rel, meta.permissions().mode() & 0o777);
            }
        }
    }
    modes.insert(
        "keys.txt".into(),
        std::fs::metadata(repo.admin_key())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
    );
    for must in [
        "sops/.lock",
        "sops/users/alice/key.json",
        "sops/machines/m1/key.json",
        "sops/machines/m1/age-key",
        "sops/machines/m1/secrets/rand/r",
        "sops/machines/m1/meta/rand.json",
        "sops/machines/m1/public/fs/types",
        "keys.txt",
    ] {
        assert!(modes.contains_key(must), "{must} missing: {modes:?}");
    }
    let open: Vec<_> = modes.iter().filter(|(_, m)| **m & 0o077 != 0).collect();
    assert!(open.is_empty(), "files readable by others: {open:?}");
}

/// Plaintext bytes that wipe themselves when dropped.
type Wiped = Zeroizing<Vec<u8>>;
type ReadOutput = fn(
    &vars::store::Store,
    &vars::keys::Identities,
    &vars::graph::NodeId,
    &str,
    bool,
) -> Result<Option<Wiped>, String>;
type RunScript = for<'a> fn(
    &vars::sandbox::Sandbox,
    &vars::sandbox::Job<'a>,
) -> Result<BTreeMap<String, Wiped>, vars::sandbox::SandboxError>;
type Inputs<'a> = &'a [(String, String, Wiped)];
type Prompts<'a> = &'a [(String, Wiped)];

/// Key material is held in types that wipe it when dropped: the signatures of
/// the public API are checked here at compile time.
#[test]
fn key_material_is_held_in_zeroizing_types() {
    use vars::keys::Identities;
    use vars::sandbox::{Job, Sandbox};
    use vars::sops::{cipher::DataKey, SopsError, SopsFile};
    fn wipes<T: zeroize::ZeroizeOnDrop>() {}
    // Decrypted values, data keys, generated identities' text.
    wipes::<vars::sops::Secret>();
    wipes::<DataKey>();
    let _: fn(&SopsFile, &Identities) -> Result<vars::sops::Secret, SopsError> =
        SopsFile::decrypt_binary;
    let _: fn() -> (age::x25519::Identity, Zeroizing<String>) = vars::keys::generate_identity;
    let _: ReadOutput = vars::generate::read_output;
    // A script's outputs, inputs and prompt answers.
    let _: RunScript = Sandbox::run;
    fn job_parts<'a>(job: &Job<'a>) -> (Inputs<'a>, Prompts<'a>) {
        (job.inputs, job.prompts)
    }
    let _ = job_parts;
    // A sealed value's plaintext inside a parsed document.
    let _ = |s: vars::sops::Scalar| {
        if let vars::sops::Scalar::Str(bytes) = s {
            let _: Wiped = bytes;
        }
    };
}

/// Every sealed file of the store: generator secrets and machines' age-keys.
fn sealed_files(repo: &Repo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo.sops()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "age-key")
                || path.components().any(|c| c.as_os_str() == "secrets")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn identity(text: &str) -> vars::keys::Identities {
    let mut ids = vars::keys::Identities::default();
    ids.add_text("key", text.as_bytes()).unwrap();
    ids
}

fn opens(ids: &vars::keys::Identities, path: &std::path::Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    vars::sops::SopsFile::parse(&bytes, vars::sops::Format::Binary, "f")
        .unwrap()
        .decrypt_binary(ids)
        .is_ok()
}

/// SECURITY.md's rotation procedures, as written there: an admin added, then
/// removed (after `vars rekey` their key opens nothing in the store, machine
/// keys included); a machine's key replaced (its key.json and age-key deleted,
/// `vars rekey --machine M`): the old key opens nothing of the machine's, the
/// new one opens all of it, other machines' files stay byte-identical.
#[test]
fn admin_and_machine_keys_rotate_with_rekey() {
    let ca = json!({"share": true, "files": {"k": {}}, "script": "echo ca-$SRANDOM > $out/k"});
    let own = json!({"files": {"s": {}}, "script": "echo own-$SRANDOM > $out/s"});
    let repo = Repo::new(&json!({"machines": {
        "m1": {"class": "nixos", "generators": {"ca": ca, "own": own}},
        "m2": {"class": "nixos", "generators": {"ca": ca, "own": own}},
    }}));
    repo.ok(&["generate", "--no-sandbox"]);
    let alice = repo.ids();

    // An admin joins.
    let (_, bob) = vars::keys::generate_identity();
    let bob_file = repo.dir.join("bob.txt");
    std::fs::write(&bob_file, format!("{}\n", bob.as_str())).unwrap();
    repo.ok(&[
        "keygen",
        "--user",
        "bob",
        "--identity",
        bob_file.to_str().unwrap(),
    ]);
    assert_eq!(repo.run(&["check"]).status.code(), Some(1));
    repo.ok(&["rekey"]);
    repo.check_clean();
    let bob = identity(&bob);
    let files = sealed_files(&repo);
    assert_eq!(files.len(), 2 + 2 + 1, "{files:?}");
    for f in &files {
        assert!(opens(&bob, f), "the new admin cannot open {}", f.display());
    }
    // The admin leaves.
    std::fs::remove_dir_all(repo.sops().join("users/bob")).unwrap();
    let check = repo.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("m1/age-key: recipients: still sealed to ")
    );
    repo.ok(&["rekey"]);
    repo.check_clean();
    for f in &files {
        assert!(
            !opens(&bob, f),
            "the removed admin still opens {}",
            f.display()
        );
        assert!(opens(&alice, f), "the admin cannot open {}", f.display());
    }

    // A machine's key is replaced.
    let m1 = repo.sops().join("machines/m1");
    let old_key = repo.ok(&["sops", "decrypt", m1.join("age-key").to_str().unwrap()]);
    let old_public = std::fs::read_to_string(m1.join("key.json")).unwrap();
    let m2_before = hardening::snapshot(&repo.sops().join("machines/m2"), &[]);
    std::fs::remove_file(m1.join("key.json")).unwrap();
    std::fs::remove_file(m1.join("age-key")).unwrap();
    let out = repo.ok(&["rekey", "--machine", "m1"]);
    assert_eq!(out, "re-sealed shared/ca/k\nre-sealed m1/own/s\n");
    repo.check_clean();
    assert_ne!(
        std::fs::read_to_string(m1.join("key.json")).unwrap(),
        old_public
    );
    let new_key = repo.ok(&["sops", "decrypt", m1.join("age-key").to_str().unwrap()]);
    let (old, new) = (identity(&old_key), identity(&new_key));
    for f in [
        m1.join("secrets/own/s"),
        repo.sops().join("shared/secrets/ca/k"),
    ] {
        assert!(
            !opens(&old, &f),
            "the old machine key still opens {}",
            f.display()
        );
        assert!(
            opens(&new, &f),
            "the new machine key cannot open {}",
            f.display()
        );
    }
    assert_eq!(
        hardening::snapshot(&repo.sops().join("machines/m2"), &[]),
        m2_before
    );
}
