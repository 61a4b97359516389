//! Generator scripts under the real bubblewrap cannot reach the network, the
//! admin's key, vars' own environment or anything outside `$out`. Each probe
//! also runs with `--no-sandbox`, where it does get through, which shows that
//! the probe itself works.

mod engine;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use engine::*;

/// A fleet whose one generator `probe` runs `script`, which must write
/// `$out/result`.
fn probe(script: &str) -> Fleet {
    Fleet::new(one_machine(
        "m",
        json!({ "probe": { "files": { "result": { "secret": false } }, "script": script } }),
    ))
}

/// Runs the probe sandboxed and unsandboxed; returns both results.
fn both(fleet: &Fleet, env: &[(&str, &str)]) -> (String, String) {
    let mut results = Vec::new();
    for extra in [&[][..], &["--no-sandbox"]] {
        let mut args = vec!["generate", "--jobs", "1", "--regenerate"];
        args.extend_from_slice(extra);
        let mut cmd = fleet.command(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(cmd, b"");
        assert_eq!(out.code, 0, "{out}");
        results.push(fleet.read_string("sops/machines/m/public/probe/result"));
    }
    let unsandboxed = results.pop().unwrap();
    (results.pop().unwrap(), unsandboxed)
}

#[test]
fn no_connection_to_a_loopback_listener() {
    if !require("bwrap") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let fleet = probe(&format!(
        "if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo connected; else echo refused; fi > $out/result"
    ));
    fleet.generate(&[]).ok();
    assert_eq!(
        fleet.read_string("sops/machines/m/public/probe/result"),
        "refused\n"
    );
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the sandboxed script reached the listener"
    );
    let (_, unsandboxed) = both(&fleet, &[]);
    assert_eq!(unsandboxed, "connected\n");
}

#[test]
fn cannot_read_the_admin_key_file() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(json!({ "machines": {} }));
    let keys = fleet.keys_txt();
    let script = format!(
        "if cat '{0}' > /dev/null 2>&1 || ls '{1}' > /dev/null 2>&1; then echo read; else echo denied; fi > $out/result",
        keys.display(),
        fleet.home.display()
    );
    fleet.configure(&one_machine(
        "m",
        json!({ "probe": { "files": { "result": { "secret": false } }, "script": script } }),
    ));
    let (sandboxed, unsandboxed) = both(&fleet, &[]);
    assert_eq!(sandboxed, "denied\n");
    assert_eq!(unsandboxed, "read\n");
}

#[test]
fn cannot_see_sops_age_key_or_anything_else_of_vars_environment() {
    if !require("bwrap") {
        return;
    }
    let fleet = probe(
        "{ echo \"SOPS_AGE_KEY=${SOPS_AGE_KEY:-unset}\"; env | cut -d= -f1 | sort | tr '\\n' ' '; } > $out/result",
    );
    let keys = std::fs::read_to_string(fleet.keys_txt()).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let env = [("SOPS_AGE_KEY", secret), ("SECRET_TOKEN", "leak-me")];
    let (sandboxed, unsandboxed) = both(&fleet, &env);
    // The clean environment applies with and without the sandbox.
    let want = "SOPS_AGE_KEY=unset\nHOME PATH PWD SHLVL TMPDIR _ in out prompts ";
    assert_eq!(sandboxed, want);
    assert_eq!(unsandboxed, want);
}

#[test]
fn cannot_write_outside_out() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(json!({ "machines": {} }));
    let target = fleet.repo.join("escaped");
    let host_tmp = std::env::temp_dir().join(format!(
        "vars-escape-{}",
        fleet.root().file_name().unwrap().to_string_lossy()
    ));
    let script = format!(
        "wrote=''\n\
         echo x > '{0}' 2>/dev/null && wrote=\"$wrote repo\"\n\
         echo x > '{1}' 2>/dev/null && wrote=\"$wrote tmp\"\n\
         echo x > '{2}/sops/injected' 2>/dev/null && wrote=\"$wrote store\"\n\
         echo \"wrote:$wrote\" > $out/result",
        target.display(),
        host_tmp.display(),
        fleet.repo.display(),
    );
    fleet.configure(&one_machine(
        "m",
        json!({ "probe": { "files": { "result": { "secret": false } }, "script": script } }),
    ));
    fleet.generate(&[]).ok();
    // /tmp inside the sandbox is a private tmpfs: a write there may succeed but never lands on the host.
    let result = fleet.read_string("sops/machines/m/public/probe/result");
    assert!(result == "wrote:\n" || result == "wrote: tmp\n", "{result}");
    assert!(!target.exists());
    assert!(!host_tmp.exists());
    assert!(!fleet.exists("sops/injected"));

    let (_, unsandboxed) = both(&fleet, &[]);
    let _ = std::fs::remove_file(&host_tmp);
    assert_eq!(unsandboxed, "wrote: repo tmp store\n");
    assert!(target.exists());
}

#[test]
fn no_sandbox_warns() {
    let fleet = probe("echo ok > $out/result");
    let out = fleet.generate(&["--no-sandbox"]).ok();
    assert_eq!(
        out.stderr,
        "warning: --no-sandbox: scripts run without namespaces (a private tmpfs dir and a clean environment only)\n\
         [1/1] m/probe generated\n"
    );
}

#[test]
fn timeout_kills_the_script_and_its_children_quickly() {
    if !require("bwrap") {
        return;
    }
    // A distinctive duration, to find leftover processes by their command line.
    let fleet = probe("sleep 31.4159 &\nsleep 31.4159\necho late > $out/result");
    let start = Instant::now();
    let out = fleet.generate(&["--timeout", "1"]).code(1);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        out.stdout,
        "generator  result\nm/probe    failed: generator m/probe timed out after 1 s\n"
    );
    assert!(!fleet.exists("sops/machines/m/public/probe"));
    // The background sleep is gone too (give the kernel a moment to reap it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftover("31.4159");
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of processes whose command line contains `needle`.
fn leftover(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Zombies have an empty command line and are already dead.
            if text.starts_with("sleep ") && text.contains(needle) {
                found.push(format!("{name}: {text}"));
            }
        }
    }
    found
}
