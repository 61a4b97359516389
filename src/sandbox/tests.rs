//! Tests of the sandbox, with the real bubblewrap.
//!
//! Bubblewrap tests need `bwrap`: when it is missing or unusable they fail under `CI=true` and
//! are skipped (with a message on stderr) otherwise. They run as root in CI.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::workdir::{fs_magic, tmpfs_magic, WorkDir};
use super::*;

/// Set in the environment of the child test process spawned by the clean-environment test.
const CHILD_MARKER: &str = "VARS_SANDBOX_TEST_CHILD";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Builds a bubblewrap sandbox, or returns `None` (outside CI only) when bwrap is missing or
/// cannot run here.
fn try_bwrap(builder: SandboxBuilder) -> Option<Sandbox> {
    match builder.build() {
        Ok(sandbox) => Some(sandbox),
        Err(e @ (SandboxError::BwrapMissing | SandboxError::BwrapUnusable { .. })) => {
            assert!(!in_ci(), "CI=true but bubblewrap cannot be used: {e}");
            eprintln!("skipping bubblewrap test: {e}");
            None
        }
        Err(e) => panic!("creating the sandbox: {e}"),
    }
}

fn bwrap() -> Option<Sandbox> {
    try_bwrap(Sandbox::builder(Isolation::Bubblewrap))
}

fn no_sandbox() -> Sandbox {
    match Sandbox::new(Isolation::None) {
        Ok(sandbox) => sandbox,
        Err(e) => panic!("creating the no-sandbox sandbox: {e}"),
    }
}

/// Every sandbox flavour available here: shared netns, per-script netns, and no sandbox.
fn all_sandboxes() -> Vec<(&'static str, Sandbox)> {
    let mut all = Vec::new();
    if let Some(s) = bwrap() {
        all.push(("bwrap", s));
    }
    let per_script = Sandbox::builder(Isolation::Bubblewrap).share_network_namespace(false);
    if let Some(s) = try_bwrap(per_script) {
        all.push(("bwrap-own-netns", s));
    }
    all.push(("none", no_sandbox()));
    all
}

fn job<'a>(name: &'a str, script: &'a str) -> Job<'a> {
    Job {
        name,
        script,
        inputs: &[],
        prompts: &[],
        runtime_inputs: &[],
        timeout: Duration::from_secs(60),
    }
}

fn run_ok(sandbox: &Sandbox, job: &Job) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
    match sandbox.run(job) {
        Ok(out) => out,
        Err(e) => panic!("{:?} run of {}: {e}", sandbox.isolation(), job.name),
    }
}

fn text(out: &BTreeMap<String, Zeroizing<Vec<u8>>>, key: &str) -> String {
    match out.get(key) {
        Some(bytes) => String::from_utf8_lossy(bytes).trim_end().to_owned(),
        None => panic!(
            "no output {key:?}; got {:?}",
            out.keys().collect::<Vec<_>>()
        ),
    }
}

/// Pids of processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"])
        .flatten()
        .copied()
        .collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Waits up to `limit` for no process with command line `args` to remain.
fn gone_within(args: &[&str], limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if processes_running(args).is_empty() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn outputs_come_back() {
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(
            &sandbox,
            &job(
                "test/outputs",
                "printf 'private' > \"$out/key\"\nprintf 'public\\n' > \"$out/key.pub\"\n\
                 echo 'diagnostics on stderr' >&2",
            ),
        );
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(names, ["key", "key.pub"], "{label}");
        assert_eq!(out["key"].as_slice(), b"private", "{label}");
        assert_eq!(out["key.pub"].as_slice(), b"public\n", "{label}");
    }
}

#[test]
fn empty_out_gives_no_outputs() {
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(&sandbox, &job("test/empty", "true"));
        assert!(out.is_empty(), "{label}");
    }
}

#[test]
fn inputs_and_prompts_are_visible_with_right_contents_and_modes() {
    let inputs = vec![
        (
            String::from("ca"),
            String::from("key"),
            Zeroizing::new(b"ca-secret\n".to_vec()),
        ),
        (
            String::from("ca"),
            String::from("key.pub"),
            Zeroizing::new(b"ca-public".to_vec()),
        ),
        (
            String::from("other"),
            String::from("x"),
            Zeroizing::new(vec![0, 1, 2, 255]),
        ),
    ];
    let prompts = vec![(String::from("token"), Zeroizing::new(b"hunter2".to_vec()))];
    let script = r#"
        cat "$in/ca/key" > "$out/ca-key"
        cat "$in/ca/key.pub" > "$out/ca-pub"
        cat "$in/other/x" > "$out/other"
        cat "$prompts/token" > "$out/token"
        ls "$in" | tr '\n' ' ' > "$out/deps"
        stat -c '%a' "$in/ca/key" "$in/ca" "$prompts/token" "$out" | tr '\n' ' ' > "$out/modes"
    "#;
    for (label, sandbox) in all_sandboxes() {
        let job = Job {
            inputs: &inputs,
            prompts: &prompts,
            ..job("test/inputs", script)
        };
        let out = run_ok(&sandbox, &job);
        assert_eq!(out["ca-key"].as_slice(), b"ca-secret\n", "{label}");
        assert_eq!(out["ca-pub"].as_slice(), b"ca-public", "{label}");
        assert_eq!(out["other"].as_slice(), &[0, 1, 2, 255], "{label}");
        assert_eq!(out["token"].as_slice(), b"hunter2", "{label}");
        assert_eq!(text(&out, "deps"), "ca other", "{label}");
        assert_eq!(text(&out, "modes"), "600 700 600 700", "{label}");
    }
}

#[test]
fn inputs_and_prompts_are_read_only_under_bwrap() {
    let Some(sandbox) = bwrap() else { return };
    let inputs = vec![(
        String::from("ca"),
        String::from("key"),
        Zeroizing::new(b"k".to_vec()),
    )];
    let prompts = vec![(String::from("p"), Zeroizing::new(b"v".to_vec()))];
    let script = r#"
        for target in "$in/ca/key" "$in/new" "$prompts/p" "$prompts/new"; do
            if (echo x >> "$target") 2>/dev/null; then echo "wrote $target"; fi
        done > "$out/result"
    "#;
    let job = Job {
        inputs: &inputs,
        prompts: &prompts,
        ..job("test/ro", script)
    };
    let out = run_ok(&sandbox, &job);
    assert_eq!(text(&out, "result"), "");
}

#[test]
fn environment_is_clean_even_with_secrets_in_the_parent() {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("current_exe: {e}"),
    };
    let output = Command::new(exe)
        .args([
            "--exact",
            "sandbox::tests::environment_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOPS_AGE_KEY", "AGE-SECRET-KEY-1FAKEFAKEFAKE")
        .env("SOPS_AGE_KEY_FILE", "/root/.config/sops/age/keys.txt")
        .env("VARS_INHERITED_PROBE", "inherited")
        .env(CHILD_MARKER, "1")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!("running the child test: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

/// Runs only inside the child process started by the test above, whose environment holds
/// `SOPS_AGE_KEY` and other variables that must not reach scripts.
#[test]
fn environment_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    assert!(std::env::var_os("SOPS_AGE_KEY").is_some());
    let runtime_inputs = vec![
        String::from("/nix/store/aaaa-openssh-9.9"),
        String::from("/nix/store/bbbb-coreutils/"),
    ];
    for (label, sandbox) in all_sandboxes() {
        let job = Job {
            runtime_inputs: &runtime_inputs,
            ..job("test/env", "env -0 > \"$out/env\"")
        };
        let out = run_ok(&sandbox, &job);
        let env: BTreeMap<String, String> = out["env"]
            .split(|b| *b == 0)
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        // What the shell itself adds.
        let shell_own = ["PWD", "OLDPWD", "SHLVL", "_"];
        let keys: Vec<&str> = env
            .keys()
            .map(String::as_str)
            .filter(|k| !shell_own.contains(k))
            .collect();
        assert_eq!(
            keys,
            ["HOME", "PATH", "TMPDIR", "in", "out", "prompts"],
            "{label}: {env:?}"
        );
        let mut path = String::from(
            "/nix/store/aaaa-openssh-9.9/bin:/nix/store/bbbb-coreutils/bin:/usr/bin:/bin",
        );
        if Path::new("/run/current-system/sw/bin").is_dir() {
            path.push_str(":/run/current-system/sw/bin");
        }
        assert_eq!(env["PATH"], path, "{label}");
        let base = sandbox.work_base().to_owned();
        for key in ["HOME", "TMPDIR", "in", "out", "prompts"] {
            assert!(
                Path::new(&env[key]).starts_with(&base),
                "{label}: {key}={}",
                env[key]
            );
        }
        assert!(env["HOME"].ends_with("/home"), "{label}");
        assert!(env["TMPDIR"].ends_with("/tmp"), "{label}");
    }
}

#[test]
fn home_and_tmpdir_are_empty_and_writable() {
    let script = r#"
        ls -A "$HOME" > "$out/home"
        ls -A "$TMPDIR" > "$out/tmp"
        touch "$HOME/.scratch" "$TMPDIR/scratch"
        pwd > "$out/pwd"
    "#;
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(&sandbox, &job("test/home", script));
        assert_eq!(text(&out, "home"), "", "{label}");
        assert_eq!(text(&out, "tmp"), "", "{label}");
        assert!(text(&out, "pwd").ends_with("/tmp"), "{label}");
    }
}

#[test]
fn cannot_read_keys_home_root_or_repo() {
    let Some(sandbox) = bwrap() else { return };
    // A fake admin key in a temporary directory, and one under the parent's $HOME.
    let outside = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let tmp_key = outside.path().join("keys.txt");
    fs::write(&tmp_key, "AGE-SECRET-KEY-1FAKE\n").unwrap_or_else(|e| panic!("{e}"));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let home_dir = home.as_deref().and_then(|h| {
        tempfile::Builder::new()
            .prefix(".vars-sandbox-test-")
            .tempdir_in(h)
            .ok()
    });
    let mut targets = vec![tmp_key.clone()];
    if let Some(dir) = &home_dir {
        let key = dir.path().join("admin-key.txt");
        fs::write(&key, "AGE-SECRET-KEY-1FAKEHOME\n").unwrap_or_else(|e| panic!("{e}"));
        targets.push(key);
    }
    targets.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    targets.push(PathBuf::from("/etc/shadow"));
    let mut dirs = vec![
        outside.path().to_owned(),
        PathBuf::from("/root"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from("/etc/ssh"),
        PathBuf::from("/var"),
        PathBuf::from("/run/user"),
        PathBuf::from("/home"),
    ];
    if let Some(h) = &home {
        dirs.push(h.clone());
    }
    let mut script = String::new();
    for file in &targets {
        script.push_str(&format!(
            "if cat '{0}' >/dev/null 2>&1; then echo 'read {0}'; fi\n",
            file.display()
        ));
    }
    for dir in &dirs {
        // An empty listing (for example the mount point of a masked directory) is no view.
        script.push_str(&format!(
            "if [ -n \"$(ls -A '{0}' 2>/dev/null)\" ]; then echo 'listed {0}'; fi\n",
            dir.display()
        ));
    }
    let script = format!("{{\n{script}}} > \"$out/result\"\n");
    let out = run_ok(&sandbox, &job("test/read", &script));
    assert_eq!(text(&out, "result"), "", "the sandbox could read outside");
    // The same script without a sandbox does read the key: the test is not vacuous.
    let out = run_ok(&no_sandbox(), &job("test/read", &script));
    assert!(text(&out, "result").contains(&format!("read {}", tmp_key.display())));
}

#[test]
fn cannot_write_outside_out() {
    let Some(sandbox) = bwrap() else { return };
    let outside = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let mut targets = vec![
        outside.path().join("written"),
        PathBuf::from("/usr/vars-sandbox-probe"),
        PathBuf::from("/etc/vars-sandbox-probe"),
        PathBuf::from("/vars-sandbox-probe"),
        PathBuf::from("/root/vars-sandbox-probe"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vars-sandbox-probe"),
    ];
    if Path::new("/nix/store").is_dir() {
        targets.push(PathBuf::from("/nix/store/vars-sandbox-probe"));
    }
    let mut script = String::new();
    for target in &targets {
        script.push_str(&format!(
            "if (echo x > '{0}') 2>/dev/null; then echo 'wrote {0}'; fi\n",
            target.display()
        ));
        // The sandbox's /tmp is its own empty tmpfs, so creating directories there works and
        // is invisible outside (checked below); everywhere else it must fail.
        if !target.starts_with("/tmp") {
            script.push_str(&format!(
                "if mkdir -p '{0}.d' 2>/dev/null; then echo 'made {0}.d'; fi\n",
                target.display()
            ));
        }
    }
    let script = format!("{{\n{script}}} > \"$out/result\"\n");
    let out = run_ok(&sandbox, &job("test/write", &script));
    assert_eq!(text(&out, "result"), "");
    for target in &targets {
        assert!(!target.exists(), "{} exists", target.display());
        let dir = PathBuf::from(format!("{}.d", target.display()));
        assert!(!dir.exists(), "{} exists", dir.display());
    }
}

#[test]
fn scripts_have_no_capabilities_and_their_own_namespaces() {
    let script = r#"
        grep '^CapEff:' /proc/self/status | tr -d ' \t' > "$out/caps"
        readlink /proc/self/ns/net > "$out/net"
        readlink /proc/self/ns/pid > "$out/pid"
        readlink /proc/self/ns/mnt > "$out/mnt"
        tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > "$out/interfaces"
    "#;
    let ours = |ns: &str| match fs::read_link(format!("/proc/self/ns/{ns}")) {
        Ok(link) => link.to_string_lossy().into_owned(),
        Err(e) => panic!("readlink: {e}"),
    };
    for (label, sandbox) in all_sandboxes() {
        if sandbox.isolation() == Isolation::None {
            continue;
        }
        let out = run_ok(&sandbox, &job("test/ns", script));
        assert_eq!(text(&out, "caps"), "CapEff:0000000000000000", "{label}");
        for ns in ["net", "pid", "mnt"] {
            assert_ne!(text(&out, ns), ours(ns), "{label}: same {ns} namespace");
        }
        assert_eq!(text(&out, "interfaces"), "lo", "{label}");
    }
}

#[test]
fn cannot_connect_to_a_loopback_listener() {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    // bash's /dev/tcp, so no client program is needed.
    let script = format!(
        "if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo connected; else echo \
         blocked; fi > \"$out/result\"\n"
    );
    for (label, sandbox) in all_sandboxes() {
        if !sandbox.shell.program.ends_with("bash") {
            eprintln!("skipping the connection test: no bash");
            return;
        }
        let out = run_ok(&sandbox, &job("test/net", &script));
        let expected = match sandbox.isolation() {
            Isolation::Bubblewrap => "blocked",
            // Without a sandbox the connection works: the check itself is sound.
            Isolation::None => "connected",
        };
        assert_eq!(text(&out, "result"), expected, "{label}");
        let accepted = listener.accept();
        match sandbox.isolation() {
            Isolation::Bubblewrap => match accepted {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("{label}: the listener saw {other:?}"),
            },
            Isolation::None => assert!(accepted.is_ok(), "{label}"),
        }
    }
}

#[test]
fn shared_network_namespace_is_used_as_root() {
    let Some(sandbox) = bwrap() else { return };
    if nix::unistd::geteuid().is_root() {
        assert!(sandbox.shares_network_namespace());
    }
    // Two runs share the namespace; it is not the host's.
    let a = run_ok(
        &sandbox,
        &job("test/ns1", "readlink /proc/self/ns/net > \"$out/n\""),
    );
    let b = run_ok(
        &sandbox,
        &job("test/ns2", "readlink /proc/self/ns/net > \"$out/n\""),
    );
    if sandbox.shares_network_namespace() {
        assert_eq!(text(&a, "n"), text(&b, "n"));
    }
    let own = Sandbox::builder(Isolation::Bubblewrap).share_network_namespace(false);
    let Some(own) = try_bwrap(own) else { return };
    assert!(!own.shares_network_namespace());
    let c = run_ok(
        &own,
        &job("test/ns3", "readlink /proc/self/ns/net > \"$out/n\""),
    );
    assert_ne!(text(&a, "n"), text(&c, "n"));
}

/// Runs `script` (which must start `sleep <marker>` in the background) with a 1 s timeout,
/// checking the background process existed, was killed, and the call returned in time.
fn check_timeout(sandbox: &Sandbox, label: &str, marker: &str) {
    let script = format!("sleep {marker} &\nsleep {marker}\n");
    let seen = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done, marker) = (seen.clone(), done.clone(), marker.to_owned());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if !processes_running(&["sleep", &marker]).is_empty() {
                    seen.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let job = Job {
        timeout: Duration::from_secs(1),
        ..job("cinnabar/openssh", &script)
    };
    let start = Instant::now();
    let result = sandbox.run(&job);
    let elapsed = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    match result {
        Err(e @ SandboxError::Timeout { .. }) => {
            assert_eq!(
                e.to_string(),
                "generator cinnabar/openssh timed out after 1 s"
            );
        }
        other => panic!(
            "{label}: expected a timeout, got {:?}",
            other.map(|o| o.len())
        ),
    }
    assert!(
        elapsed < Duration::from_secs(2),
        "{label}: took {elapsed:?}"
    );
    assert!(
        seen.load(Ordering::SeqCst),
        "{label}: the background sleep never ran"
    );
    assert!(
        gone_within(&["sleep", marker], Duration::from_secs(1)),
        "{label}: the background child outlived the timeout"
    );
}

#[test]
fn timeout_kills_background_children_under_bwrap() {
    let Some(sandbox) = bwrap() else { return };
    check_timeout(&sandbox, "bwrap", "7301");
}

#[test]
fn timeout_kills_background_children_without_sandbox() {
    check_timeout(&no_sandbox(), "none", "7302");
}

#[test]
fn background_child_neither_survives_nor_holds_up_a_successful_run() {
    let markers = ["7303", "7304", "7305"];
    for ((label, sandbox), marker) in all_sandboxes().into_iter().zip(markers) {
        let script = format!("sleep {marker} &\necho done > \"$out/ok\"\n");
        let start = Instant::now();
        let out = run_ok(&sandbox, &job("test/background", &script));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{label}: {:?}",
            start.elapsed()
        );
        assert_eq!(text(&out, "ok"), "done");
        assert!(
            gone_within(&["sleep", marker], Duration::from_secs(1)),
            "{label}: the background child survived"
        );
    }
}

#[test]
fn escaped_session_does_not_hang_a_run_without_sandbox() {
    // Without namespaces, a `setsid` child escapes the group kill (documented); it holds the
    // output pipe open but must not keep the run waiting.
    if !Path::new("/usr/bin/setsid").exists() && !Path::new("/bin/setsid").exists() {
        eprintln!("skipping: no setsid");
        return;
    }
    let sandbox = no_sandbox();
    let start = Instant::now();
    let out = run_ok(
        &sandbox,
        &job("test/setsid", "setsid sleep 7306 &\necho ok > \"$out/ok\""),
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(text(&out, "ok"), "ok");
    // Clean up the escaped process (started by this test).
    for pid in processes_running(&["sleep", "7306"]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn script_failure_reports_the_tail_of_stderr() {
    let script = "for i in $(seq 1 30); do echo \"line $i\" >&2; done\nexit 3\n";
    for (label, sandbox) in all_sandboxes() {
        match sandbox.run(&job("cinnabar/openssh", script)) {
            Err(SandboxError::ScriptFailed {
                name,
                status,
                stderr_tail,
            }) => {
                assert_eq!(name, "cinnabar/openssh");
                assert_eq!(status.code(), Some(3), "{label}");
                let expected: Vec<String> = (11..=30).map(|i| format!("line {i}")).collect();
                assert_eq!(stderr_tail, expected.join("\n"), "{label}");
            }
            other => panic!(
                "{label}: expected a failure, got {:?}",
                other.map(|o| o.len())
            ),
        }
    }
}

#[test]
fn failure_message_names_generator_status_and_tail() {
    let sandbox = no_sandbox();
    let err = match sandbox.run(&job("m/g", "echo 'ssh-keygen: bad option' >&2\nfalse")) {
        Err(e) => e,
        Ok(_) => panic!("expected a failure"),
    };
    assert_eq!(
        err.to_string(),
        "generator m/g failed (exit status: 1); last lines of its output:\n  ssh-keygen: bad option"
    );
    let err = match sandbox.run(&job("m/g", "exit 4")) {
        Err(e) => e,
        Ok(_) => panic!("expected a failure"),
    };
    assert_eq!(
        err.to_string(),
        "generator m/g failed (exit status: 4); it printed nothing"
    );
}

#[test]
fn unset_variables_and_failed_pipes_fail_the_script() {
    for (label, sandbox) in all_sandboxes() {
        if !sandbox.shell.program.ends_with("bash") {
            continue;
        }
        assert!(
            sandbox.run(&job("t/u", "echo \"$undefined\"")).is_err(),
            "{label}"
        );
        assert!(sandbox.run(&job("t/p", "false | true")).is_err(), "{label}");
        assert!(
            sandbox.run(&job("t/e", "false\necho unreachable")).is_err(),
            "{label}"
        );
    }
}

#[test]
fn non_regular_files_in_out_are_errors() {
    let cases = [
        ("ln -s /etc/passwd \"$out/link\"", "link"),
        ("mkdir \"$out/sub\" && echo x > \"$out/sub/f\"", "sub"),
        ("mkfifo \"$out/fifo\"", "fifo"),
        ("ln -s missing \"$out/dangling\"", "dangling"),
    ];
    for (label, sandbox) in all_sandboxes() {
        for (script, file) in cases {
            let script = format!("echo ok > \"$out/fine\"\n{script}");
            match sandbox.run(&job("m/g", &script)) {
                Err(e @ SandboxError::NotRegularFile { .. }) => assert_eq!(
                    e.to_string(),
                    format!(
                        "generator m/g produced \"{file}\" in $out, which is not a regular file"
                    ),
                    "{label}"
                ),
                other => panic!("{label}: {file}: got {:?}", other.map(|o| o.len())),
            }
        }
    }
}

#[test]
fn invalid_names_and_runtime_inputs_are_rejected() {
    let sandbox = no_sandbox();
    let bytes = || Zeroizing::new(b"x".to_vec());
    let bad_inputs = [
        (String::from(".."), String::from("f")),
        (String::from("a/b"), String::from("f")),
        (String::from("dep"), String::from("")),
        (String::from("dep"), String::from(".")),
        (String::from("dep"), String::from("x\0y")),
    ];
    for (dep, file) in bad_inputs {
        let inputs = vec![(dep.clone(), file.clone(), bytes())];
        let job = Job {
            inputs: &inputs,
            ..job("m/g", "true")
        };
        assert!(
            matches!(sandbox.run(&job), Err(SandboxError::InvalidName { .. })),
            "{dep:?}/{file:?}"
        );
    }
    let prompts = vec![(String::from("../escape"), bytes())];
    let job_p = Job {
        prompts: &prompts,
        ..job("m/g", "true")
    };
    assert!(matches!(
        sandbox.run(&job_p),
        Err(SandboxError::InvalidName { what: "prompt", .. })
    ));
    let dup = vec![
        (String::from("d"), String::from("f"), bytes()),
        (String::from("d"), String::from("f"), bytes()),
    ];
    let job_d = Job {
        inputs: &dup,
        ..job("m/g", "true")
    };
    match sandbox.run(&job_d) {
        Err(e @ SandboxError::DuplicateInput { .. }) => {
            assert_eq!(e.to_string(), "generator m/g: $in/d/f is given twice");
        }
        other => panic!("got {:?}", other.map(|o| o.len())),
    }
    for bad in ["relative/path", "/nix/store/a:b", ""] {
        let runtime = vec![String::from(bad)];
        let job_r = Job {
            runtime_inputs: &runtime,
            ..job("m/g", "true")
        };
        assert!(
            matches!(
                sandbox.run(&job_r),
                Err(SandboxError::InvalidRuntimeInput { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn work_dir_is_on_tmpfs_and_removed_afterwards() {
    let script = "stat -f -c %T \"$out\" > \"$out/fstype\"\necho \"$out\" > \"$out/where\"";
    for (label, sandbox) in all_sandboxes() {
        assert_eq!(
            fs_magic(sandbox.work_base()).ok(),
            Some(tmpfs_magic()),
            "{label}"
        );
        let out = run_ok(&sandbox, &job("test/tmpfs", script));
        assert_eq!(text(&out, "fstype"), "tmpfs", "{label}");
        let out_dir = PathBuf::from(text(&out, "where"));
        let root = out_dir.parent().map(Path::to_owned).unwrap_or_default();
        assert!(
            root.starts_with(sandbox.work_base()),
            "{label}: {}",
            root.display()
        );
        assert!(!root.exists(), "{label}: {} left behind", root.display());

        // Also after a failure and after a timeout.
        let failing = "echo \"$out\" >&2\nexit 1";
        match sandbox.run(&job("test/tmpfs-fail", failing)) {
            Err(SandboxError::ScriptFailed { stderr_tail, .. }) => {
                let dir = PathBuf::from(stderr_tail.trim());
                assert!(dir.starts_with(sandbox.work_base()), "{label}");
                assert!(!dir.exists(), "{label}: {} left behind", dir.display());
            }
            other => panic!("{label}: got {:?}", other.map(|o| o.len())),
        }
    }
}

#[test]
fn work_dir_is_removed_on_timeout() {
    let sandbox = no_sandbox();
    let marker = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let note = marker.path().join("where");
    let script = format!("echo \"$out\" > '{}'\nsleep 30", note.display());
    let job = Job {
        timeout: Duration::from_millis(500),
        ..job("test/timeout-dir", &script)
    };
    assert!(matches!(
        sandbox.run(&job),
        Err(SandboxError::Timeout { secs: 1, .. })
    ));
    let out_dir = PathBuf::from(fs::read_to_string(&note).unwrap_or_default().trim());
    assert!(out_dir.starts_with(sandbox.work_base()));
    assert!(!out_dir.exists());
}

#[test]
fn work_dir_layout_modes_and_removal_on_panic() {
    let sandbox = no_sandbox();
    let seen = std::panic::catch_unwind(|| {
        let work = match WorkDir::create(sandbox.work_base()) {
            Ok(work) => work,
            Err(e) => panic!("create: {e}"),
        };
        let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777).ok();
        assert_eq!(mode(work.root()), Some(0o700));
        for dir in [
            work.inputs(),
            work.out(),
            work.prompts(),
            work.tmp(),
            work.home(),
        ] {
            assert_eq!(mode(&dir), Some(0o700), "{}", dir.display());
            assert_eq!(fs::read_dir(&dir).map(|d| d.count()).ok(), Some(0));
        }
        std::panic::panic_any(work.root().to_owned());
    });
    let root = match seen {
        Err(payload) => match payload.downcast::<PathBuf>() {
            Ok(root) => *root,
            Err(_) => panic!("an assertion failed inside"),
        },
        Ok(()) => panic!("no panic"),
    };
    assert!(root.starts_with(sandbox.work_base()));
    assert!(!root.exists(), "{} survived the panic", root.display());
}

#[test]
fn unremovable_leftovers_are_still_removed() {
    // A script that strips permissions from what it leaves behind.
    let script = "mkdir -p \"$TMPDIR/a/b\" && touch \"$TMPDIR/a/b/f\" && chmod 000 \"$TMPDIR/a/b\" \"$TMPDIR/a\"\n\
                  echo \"$TMPDIR\" > \"$out/where\"";
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(&sandbox, &job("test/chmod", script));
        let tmp = PathBuf::from(text(&out, "where"));
        assert!(!tmp.exists(), "{label}: {} left behind", tmp.display());
    }
}

#[test]
fn private_tmpfs_is_mounted_when_no_candidate_is_a_tmpfs() {
    let not_tmpfs = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if fs_magic(&not_tmpfs).ok() == Some(tmpfs_magic()) {
        eprintln!("skipping: the crate directory is itself on a tmpfs");
        return;
    }
    let built = Sandbox::builder(Isolation::None)
        .work_dir_candidates(vec![
            not_tmpfs.clone(),
            PathBuf::from("/nonexistent-vars-dir"),
        ])
        .build();
    if !nix::unistd::geteuid().is_root() {
        match built {
            Err(e @ SandboxError::NoTmpfs { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("not a tmpfs"), "{msg}");
                assert!(msg.contains("needs root"), "{msg}");
            }
            other => panic!("expected NoTmpfs, got {other:?}"),
        }
        return;
    }
    let sandbox = match built {
        Ok(sandbox) => sandbox,
        Err(e) => panic!("{e}"),
    };
    assert!(sandbox.mounted_private_tmpfs());
    let base = sandbox.work_base().to_owned();
    assert_eq!(fs_magic(&base).ok(), Some(tmpfs_magic()));
    let mode = fs::metadata(&base)
        .map(|m| m.permissions().mode() & 0o777)
        .ok();
    assert_eq!(mode, Some(0o700));
    let out = run_ok(
        &sandbox,
        &job("test/mounted", "stat -f -c %T \"$out\" > \"$out/t\""),
    );
    assert_eq!(text(&out, "t"), "tmpfs");
    drop(sandbox);
    assert!(
        !base.exists(),
        "the private tmpfs mount point was left behind"
    );
}

#[test]
fn bwrap_works_on_a_private_tmpfs_under_tmp() {
    let not_tmpfs = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmpfs_already = fs_magic(&not_tmpfs).ok() == Some(tmpfs_magic());
    if !nix::unistd::geteuid().is_root() || tmpfs_already {
        eprintln!("skipping: needs root and a crate directory not on tmpfs");
        return;
    }
    let builder = Sandbox::builder(Isolation::Bubblewrap).work_dir_candidates(vec![not_tmpfs]);
    let Some(sandbox) = try_bwrap(builder) else {
        return;
    };
    assert!(sandbox.mounted_private_tmpfs());
    let script = "echo scratch > /tmp/x\nstat -f -c %T \"$out\" > \"$out/t\"\nls -A /tmp | wc -l > \"$out/n\"";
    let out = run_ok(&sandbox, &job("test/mounted-bwrap", script));
    assert_eq!(text(&out, "t"), "tmpfs");
    // /tmp holds the scratch file and the directory leading to the working directory only.
    assert_eq!(text(&out, "n"), "2");
}

#[test]
fn bwrap_missing_error_says_how_to_fix() {
    assert_eq!(bwrap::find_bwrap_in(Some("".as_ref()), &[]), None);
    assert_eq!(
        bwrap::find_bwrap_in(Some("/nonexistent:relative".as_ref()), &[]),
        None
    );
    let msg = SandboxError::BwrapMissing.to_string();
    assert!(msg.contains("apt-get install bubblewrap"), "{msg}");
    assert!(
        msg.contains("nix profile install nixpkgs#bubblewrap"),
        "{msg}"
    );
    assert!(msg.contains("--no-sandbox"), "{msg}");
}

#[test]
fn bwrap_is_found_when_installed() {
    let found = bwrap::find_bwrap(std::env::var_os("PATH").as_deref());
    if found.is_none() {
        assert!(!in_ci(), "CI=true but bwrap is not installed");
        eprintln!("skipping: bwrap not installed");
    }
}

#[test]
fn bwrap_arguments_hide_host_secrets() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let etc = bwrap::PrivateEtc::create(base.path()).unwrap_or_else(|e| panic!("{e}"));
    let strings = |args: bwrap::Args| -> Vec<String> {
        args.into_vec()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let args = strings(bwrap::system_args(true, &etc, true));
    for required in [
        "--unshare-all",
        "--share-net",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ] {
        assert!(
            args.iter().any(|a| a == required),
            "{required} missing: {args:?}"
        );
    }
    let sources: Vec<&String> = args
        .windows(2)
        .filter(|w| matches!(w[0].as_str(), "--ro-bind" | "--bind" | "--dev-bind"))
        .map(|w| &w[1])
        .collect();
    for forbidden in [
        "/etc",
        "/etc/ssh",
        "/etc/shadow",
        "/etc/nix",
        "/root",
        "/home",
        "/var",
        "/",
        "/run",
        "/tmp",
    ] {
        assert!(
            !sources.iter().any(|s| *s == forbidden),
            "{forbidden} is bound: {args:?}"
        );
    }
    let own = strings(bwrap::system_args(false, &etc, true));
    assert!(!own.iter().any(|a| a == "--share-net"));
}

#[test]
fn private_etc_holds_only_the_listed_entries() {
    let host = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let h = host.path();
    let write = |p: &Path, s: &str| fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
    write(&h.join("passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&h.join("shadow"), "root:$6$secret\n");
    fs::create_dir_all(h.join("ssh")).unwrap_or_else(|e| panic!("{e}"));
    write(&h.join("ssh/ssh_host_ed25519_key"), "PRIVATE");
    let mkdir = |p: &Path| fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
    let chmod = |p: &Path, mode: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"))
    };
    mkdir(&h.join("ssl/private"));
    write(&h.join("ssl/private/server.key"), "PRIVATE");
    mkdir(&h.join("ssl/certs"));
    write(&h.join("ssl/certs/ca.pem"), "CERT");
    write(&h.join("ssl/openssl.cnf"), "# config");
    write(&h.join("ssl/stray.key"), "PRIVATE");
    chmod(&h.join("ssl/stray.key"), 0o600);
    mkdir(&h.join("ssl/closed"));
    write(&h.join("ssl/closed/x"), "PRIVATE");
    chmod(&h.join("ssl/closed"), 0o700);
    std::os::unix::fs::symlink("/usr/share/ca/x.crt", h.join("ssl/certs/x.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/etc/static/nsswitch.conf", h.join("nsswitch.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let etc = bwrap::PrivateEtc::create_from(base.path(), h).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = fs::read_dir(etc.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["nsswitch.conf", "passwd", "ssl"]);
    assert_eq!(
        fs::read_link(etc.path().join("nsswitch.conf")).ok(),
        Some(PathBuf::from("/etc/static/nsswitch.conf"))
    );
    // Directory trees are copied, minus what not everyone may read and private-key
    // directories.
    let mut found = Vec::new();
    let mut stack = vec![etc.path().join("ssl")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
        {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            let rel = path
                .strip_prefix(etc.path())
                .map(Path::to_owned)
                .unwrap_or_default();
            found.push(rel.to_string_lossy().into_owned());
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            "ssl/certs",
            "ssl/certs/ca.pem",
            "ssl/certs/x.pem",
            "ssl/openssl.cnf"
        ]
    );
    assert_eq!(
        fs::read_link(etc.path().join("ssl/certs/x.pem")).ok(),
        Some(PathBuf::from("/usr/share/ca/x.crt"))
    );
    let root = etc.path().to_owned();
    drop(etc);
    assert!(!root.exists());
}

#[test]
fn concurrent_runs_share_one_sandbox() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
    for (label, sandbox) in all_sandboxes() {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let sandbox = &sandbox;
                    scope.spawn(move || {
                        let script = format!("echo {i} > \"$out/n\"");
                        let out = run_ok(sandbox, &job("test/parallel", &script));
                        text(&out, "n")
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                match h.join() {
                    Ok(n) => assert_eq!(n, i.to_string(), "{label}"),
                    Err(_) => panic!("{label}: a run panicked"),
                }
            }
        });
    }
}

#[test]
fn ssh_keygen_works_inside_the_sandbox() {
    if !Path::new("/usr/bin/ssh-keygen").exists() {
        assert!(!in_ci(), "CI=true but ssh-keygen is not installed");
        eprintln!("skipping: no ssh-keygen");
        return;
    }
    let script = "ssh-keygen -q -t ed25519 -N '' -C test -f \"$out/ssh_host_ed25519_key\"";
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(&sandbox, &job("cinnabar/openssh", script));
        assert!(
            text(&out, "ssh_host_ed25519_key").contains("OPENSSH PRIVATE KEY"),
            "{label}"
        );
        assert!(
            text(&out, "ssh_host_ed25519_key.pub").starts_with("ssh-ed25519 "),
            "{label}"
        );
    }
}

#[test]
fn helpers() {
    assert_eq!(ceil_secs(Duration::from_secs(300)), 300);
    assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
    assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
    assert_eq!(last_lines(b"a\nb\nc\n", 2), "b\nc");
    assert_eq!(last_lines(b"a\nb", 5), "a\nb");
    assert_eq!(last_lines(b"", 5), "");
    assert!(workdir::is_valid_component("ssh_host_ed25519_key.pub"));
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        assert!(!workdir::is_valid_component(bad), "{bad:?}");
    }
    let job = job("m/g", "secret script");
    let shown = format!("{job:?}");
    assert!(!shown.contains("secret script"), "{shown}");
}

#[test]
fn inherited_descriptors_do_not_reach_the_script() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("leaky-admin-key");
    fs::write(&key, "AGE-SECRET-KEY-1LEAK\n").unwrap_or_else(|e| panic!("{e}"));
    let file = fs::File::open(&key).unwrap_or_else(|e| panic!("{e}"));
    // Simulate code elsewhere in the process opening a file without close-on-exec.
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap_or_else(|e| panic!("{e}"));
    let script = "for f in /proc/$$/fd/*; do readlink \"$f\" || true; done > \"$out/fds\"";
    for (label, sandbox) in all_sandboxes() {
        let out = run_ok(&sandbox, &job("test/fds", script));
        let fds = text(&out, "fds");
        assert!(!fds.contains("leaky-admin-key"), "{label}: {fds}");
    }
    drop(file);
}

#[test]
fn an_unrepresentably_long_timeout_means_none() {
    let sandbox = no_sandbox();
    let job = Job {
        timeout: Duration::MAX,
        ..job("test/forever", "echo ok > \"$out/ok\"")
    };
    assert_eq!(text(&run_ok(&sandbox, &job), "ok"), "ok");
}

/// Prints the mean wall time and CPU time (this process and its children) of a trivial run
/// in each mode, and of the bare interpreter
/// (`cargo test --lib sandbox::tests::per_run_cost -- --ignored --nocapture`).
#[test]
#[ignore = "timing report, not a check"]
fn per_run_cost() {
    const N: u32 = 100;
    fn cpu() -> Duration {
        let usage = |who| {
            // SAFETY: an all-zero rusage is valid, and getrusage fills it in.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `u` is a valid, exclusively borrowed rusage.
            if unsafe { libc::getrusage(who, &mut u) } != 0 {
                return Duration::ZERO;
            }
            let tv = |t: libc::timeval| {
                Duration::from_micros(
                    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000
                        + u64::try_from(t.tv_usec).unwrap_or(0),
                )
            };
            tv(u.ru_utime) + tv(u.ru_stime)
        };
        usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
    }
    let script = "echo x > \"$out/x\"";
    let mean = |f: &dyn Fn()| {
        f();
        let (start, start_cpu) = (Instant::now(), cpu());
        for _ in 0..N {
            f();
        }
        (start.elapsed() / N, (cpu() - start_cpu) / N)
    };
    let program = no_sandbox().shell.program.clone();
    let bare = mean(&|| {
        let status = Command::new(&program)
            .args(["-c", "echo x > /dev/null"])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
    });
    eprintln!("bare interpreter: {:?} wall, {:?} cpu", bare.0, bare.1);
    for (label, sandbox) in all_sandboxes() {
        let (wall, cpu) = mean(&|| {
            run_ok(&sandbox, &job("bench/x", script));
        });
        eprintln!("{label}: {wall:?} wall, {cpu:?} cpu per run");
    }
}
