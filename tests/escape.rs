//! Sandbox escapes (issue 7), with the real bubblewrap: a generator script
//! tries, one after the other,
//!
//! * to reach loopback listeners the test opened (TCP on 127.0.0.1 and ::1,
//!   an abstract unix socket),
//! * to read the admin key file, the invoking user's `$HOME`, `/root`, the
//!   repository, `/etc/shadow`,
//! * to see `SOPS_AGE_KEY` or any other inherited variable, in its own
//!   environment or another process's, or to signal the test process,
//! * to write outside `$out` (the repository, the invoking `$HOME`, `/usr`,
//!   `/etc`, `/`, `$in`, a directory of the host's `/tmp`),
//! * to hand back a symlink to a secret, or a FIFO, as an output,
//! * to outlive its timeout, or its own exit, through background children
//!   (`&`, `setsid`, `nohup`, double forks),
//!
//! and each attempt must fail. Every probe also runs with `--no-sandbox`,
//! where the ones that only bubblewrap stops get through: that shows each
//! probe works. Without bwrap the tests skip, and fail under CI=true.

mod hardening;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::Path;
use std::time::{Duration, Instant};

use hardening::Repo;
use serde_json::json;

struct Targets {
    port4: u16,
    port6: Option<u16>,
    abstract_name: String,
    admin_key: String,
    home: String,
    repo: String,
    host_tmp: String,
    test_pid: u32,
    canary: String,
    /// Whether to try writing into the host's `/usr`, `/etc` and `/` (never
    /// without the sandbox: as root, that would succeed).
    system_writes: bool,
}

/// The host paths the system-write probes aim at.
fn system_targets() -> [String; 3] {
    let id = std::process::id();
    [
        format!("/usr/vars-escape-{id}"),
        format!("/etc/vars-escape-{id}"),
        format!("/vars-escape-{id}"),
    ]
}

/// The probe script: one `name=blocked|ESCAPED` line per attempt in `$out/report`.
fn probe_script(t: &Targets) -> String {
    let mut s = String::from(
        "r() { printf '%s=%s\\n' \"$1\" \"$2\" >> $out/report; }\n\
         try() { n=$1; shift; if (\"$@\") >/dev/null 2>&1; then r $n ESCAPED; else r $n blocked; fi; }\n\
         nonempty() { [ -n \"$(ls -A \"$1\" 2>/dev/null)\" ]; }\n",
    );
    let lines = [
        format!("try tcp-127.0.0.1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}'", t.port4),
        match t.port6 {
            Some(p) => format!("try tcp-::1 bash -c 'exec 3<>/dev/tcp/::1/{p}'"),
            None => "r tcp-::1 blocked".into(),
        },
        format!(
            "if command -v python3 >/dev/null; then try abstract-unix python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0{}')\"; else r abstract-unix blocked; fi",
            t.abstract_name
        ),
        format!("try read-admin-key cat '{}'", t.admin_key),
        format!("try read-home nonempty '{}'", t.home),
        "try read-root nonempty /root".into(),
        format!("try read-repo cat '{}/vars.json'", t.repo),
        "try read-shadow cat /etc/shadow".into(),
        format!("try signal-test-process kill -0 {}", t.test_pid),
        format!("try env-canary sh -c 'env | grep -q {}'", t.canary),
        "try env-sops sh -c 'env | grep -q SOPS_'".into(),
        format!(
            "try proc-environ sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr \"\\0\" \"\\n\" | grep -q -e SOPS_AGE_KEY -e {}'",
            t.canary
        ),
        format!("try write-repo touch '{}/pwned'", t.repo),
        format!("try write-home touch '{}/pwned'", t.home),
        "try write-in touch $in/pwned".into(),
        format!("try write-host-tmp sh -c 'touch {}/pwned'", t.host_tmp),
        "env | LC_ALL=C sort > $out/env".into(),
    ];
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    if t.system_writes {
        for (name, path) in ["write-usr", "write-etc", "write-root-dir"]
            .iter()
            .zip(system_targets())
        {
            s.push_str(&format!("try {name} touch {path}\n"));
        }
    }
    s
}

fn fleet(t: &Targets) -> serde_json::Value {
    let leave = |tag: &str| {
        format!(
            "sleep {tag} &\nsetsid sleep {tag} &\nnohup sleep {tag} >/dev/null 2>&1 &\n( ( sleep {tag} & ) & )\ndisown -a\n"
        )
    };
    json!({"machines": {"m1": {"class": "nixos", "generators": {
        "probe": {"files": {"report": {"secret": false}, "env": {"secret": false}},
                  "script": probe_script(t)},
        "linger": {"files": {"f": {"secret": false}},
                   "script": format!("{}echo done > $out/f", leave(&tags()[0]))},
        "overstay": {"files": {"f": {"secret": false}},
                     "script": format!("{}sleep 60\necho done > $out/f", leave(&tags()[1]))},
        "symlink": {"files": {"f": {}},
                    "script": format!("ln -s '{}' $out/f", t.admin_key)},
        "fifo": {"files": {"f": {}}, "script": "mkfifo $out/f"},
    }}}})
}

/// The durations the background children sleep, unique to this test process
/// (so that concurrent runs of the suite never see each other's children).
fn tags() -> [String; 2] {
    let id = std::process::id();
    [format!("27.1{id}"), format!("31.4{id}")]
}

/// Processes whose argv holds `tag`.
fn processes_with(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(tag) {
                found.push(format!("{}: {cmd}", p.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn report(repo: &Repo) -> BTreeMap<String, String> {
    repo.ok(&["get", "m1", "probe/report"])
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What only bubblewrap stops; the rest is stopped in both modes (clean
/// environment, read-only `$in`, files that do not exist).
const SANDBOX_ONLY: &[&str] = &[
    "tcp-127.0.0.1",
    "tcp-::1",
    "read-shadow",
    "proc-environ",
    "write-in",
    "abstract-unix",
    "read-admin-key",
    "read-home",
    "read-root",
    "read-repo",
    "signal-test-process",
    "write-repo",
    "write-home",
    "write-host-tmp",
];

#[test]
fn scripts_cannot_escape_bubblewrap() {
    if !hardening::require("bwrap") {
        return;
    }
    let started = Instant::now();
    let listener4 = TcpListener::bind("127.0.0.1:0").unwrap();
    listener4.set_nonblocking(true).unwrap();
    let listener6 = TcpListener::bind("[::1]:0").ok();
    if let Some(l) = &listener6 {
        l.set_nonblocking(true).unwrap();
    }
    let abstract_name = format!("vars-escape-{}", std::process::id());
    let unix =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap()).unwrap();
    unix.set_nonblocking(true).unwrap();
    let host_tmp = tempfile::Builder::new()
        .prefix("vars-escape-")
        .tempdir()
        .unwrap();

    let repo = Repo::new(&json!({"machines": {}}));
    let (_, key_text) = vars::keys::generate_identity();
    let canary = format!("CANARY{}", &key_text[20..32]);
    let t = Targets {
        port4: listener4.local_addr().unwrap().port(),
        port6: listener6.as_ref().map(|l| l.local_addr().unwrap().port()),
        abstract_name,
        admin_key: repo.admin_key().display().to_string(),
        home: repo.home.display().to_string(),
        repo: repo.dir.display().to_string(),
        host_tmp: host_tmp.path().display().to_string(),
        test_pid: std::process::id(),
        canary: canary.clone(),
        system_writes: true,
    };
    repo.write_manifest(&fleet(&t));
    let admin_key = std::fs::read_to_string(repo.admin_key()).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--regenerate", "--timeout", "4", "--jobs", "5"];
        args.extend_from_slice(extra);
        let out = repo
            .cmd(&args)
            .env("SOPS_AGE_KEY", &admin_key)
            .env("HARDENING_CANARY", &canary)
            .output()
            .unwrap();
        hardening::assert_sane(&args, &out);
        out
    };

    // Under bubblewrap.
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let rows: BTreeMap<&str, &str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once("  "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    assert_eq!(rows["m1/probe"], "generated (--regenerate)");
    assert_eq!(rows["m1/linger"], "generated (--regenerate)");
    assert_eq!(
        rows["m1/overstay"],
        "failed: generator m1/overstay timed out after 4 s"
    );
    assert_eq!(
        rows["m1/symlink"],
        "failed: generator m1/symlink produced \"f\" in $out, which is not a regular file"
    );
    assert_eq!(
        rows["m1/fifo"],
        "failed: generator m1/fifo produced \"f\" in $out, which is not a regular file"
    );
    let sandboxed = report(&repo);
    let escaped: Vec<&String> = sandboxed
        .iter()
        .filter(|(_, v)| *v != "blocked")
        .map(|(k, _)| k)
        .collect();
    assert!(
        escaped.is_empty(),
        "attempts that got out of bubblewrap: {escaped:?}\n{sandboxed:?}"
    );
    assert_eq!(sandboxed.len(), 19, "{sandboxed:?}");
    // Exactly the documented environment (and what the shell adds).
    let env = repo.ok(&["get", "m1", "probe/env"]);
    let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    let allowed = [
        "HOME", "OLDPWD", "PATH", "PWD", "SHLVL", "TMPDIR", "_", "in", "out", "prompts",
    ];
    for name in &names {
        assert!(
            allowed.contains(name),
            "inherited variable {name} in the sandbox:\n{env}"
        );
    }
    for must in ["HOME", "PATH", "TMPDIR", "in", "out", "prompts"] {
        assert!(names.contains(&must), "{must} missing:\n{env}");
    }
    assert!(!env.contains(&canary) && !env.contains("AGE-SECRET-KEY"));
    // The host side: no connection, no file, no process left.
    assert_eq!(
        listener4.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    if let Some(l) = &listener6 {
        assert_eq!(
            l.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
    assert_eq!(
        unix.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let mut written: Vec<std::path::PathBuf> = vec![
        repo.dir.join("pwned"),
        repo.home.join("pwned"),
        host_tmp.path().join("pwned"),
    ];
    written.extend(system_targets().iter().map(|p| Path::new(p).to_path_buf()));
    for p in &written {
        if p.exists() {
            let _ = std::fs::remove_file(p);
            panic!("the script wrote {}", p.display());
        }
    }
    let secret_stored = repo.sops().join("machines/m1/secrets/symlink/f");
    assert!(
        !secret_stored.exists(),
        "a symlink to the admin key was stored"
    );
    std::thread::sleep(Duration::from_millis(300));
    for tag in tags() {
        let alive = processes_with(&tag);
        assert!(
            alive.is_empty(),
            "background children outlived their script: {alive:?}"
        );
    }

    // The same probes without the sandbox get through (the probes work);
    // only the clean environment still holds.
    repo.write_manifest(&fleet(&Targets {
        system_writes: false,
        ..t
    }));
    let out = run(&["--no-sandbox"]);
    assert_eq!(out.status.code(), Some(1));
    let plain = report(&repo);
    for name in SANDBOX_ONLY {
        if *name == "tcp-::1" && listener6.is_none() {
            continue;
        }
        assert_eq!(
            plain[*name], "ESCAPED",
            "the probe {name} does not work: {plain:?}"
        );
    }
    for (name, result) in &plain {
        if !SANDBOX_ONLY.contains(&name.as_str()) && name != "tcp-::1" {
            assert_eq!(result, "blocked", "{name} without the sandbox: {plain:?}");
        }
    }
    // Clean up what the unsandboxed probes did, and their stray processes.
    let _ = std::fs::remove_file(repo.dir.join("pwned"));
    let _ = std::fs::remove_file(repo.home.join("pwned"));
    let _ = listener4.accept();
    for tag in tags() {
        for line in processes_with(&tag) {
            if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    eprintln!(
        "escape: {} attempts, all blocked under bubblewrap ({} of them get through without it), {:.1?}",
        sandboxed.len() + 4,
        SANDBOX_ONLY.len(),
        started.elapsed()
    );
}
