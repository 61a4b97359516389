//! Script failures: each is named in the summary with its cause; independent
//! generators still run, dependents are skipped, and nothing is half-written.

mod engine;

use engine::*;

fn manifest() -> Value {
    one_machine(
        "m",
        json!({
            "bad": { "files": { "f": {} },
                     "script": "for i in $(seq 1 30); do echo \"noise $i\" >&2; done\necho 'boom: disk on fire' >&2\nexit 3" },
            "dep": { "dependencies": ["bad"], "files": { "f": {} }, "script": "cat $in/bad/f > $out/f" },
            "dep2": { "dependencies": ["dep"], "files": { "f": {} }, "script": "cat $in/dep/f > $out/f" },
            "extra": { "files": { "f": {} }, "script": "echo x > $out/f; echo y > $out/zz" },
            "nofile": { "files": { "f": {}, "g": { "secret": false } },
                        "script": "echo x > $out/f; echo y > $out/h" },
            "ok": public_gen(&["f"], "hello"),
            "okdep": { "dependencies": ["ok"], "files": { "f": { "secret": false } },
                       "script": "cat $in/ok/f > $out/f" },
        }),
    )
}

#[test]
fn failures_are_reported_dependents_skipped_independents_run() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    let out = fleet.generate(&[]).code(1);
    // The tail of the output (the last 20 lines), not all of it.
    let mut tail = String::new();
    for i in 12..=30 {
        tail.push_str(&format!("  noise {i}\n"));
    }
    assert_eq!(
        out.stdout,
        format!(
            "generator  result\n\
             m/bad      failed: generator m/bad failed (exit status: 3); last lines of its output:\n\
             {tail}  boom: disk on fire\n\
             m/dep      skipped: dependency m/bad did not generate\n\
             m/dep2     skipped: dependency m/dep did not generate\n\
             m/extra    failed: undeclared file in $out: \"zz\" (declare it in files, or do not write it)\n\
             m/nofile   failed: declared file \"g\" not produced (the script produced: \"f\", \"h\")\n\
             m/ok       generated (never generated)\n\
             m/okdep    generated (never generated)\n"
        )
    );
    assert_eq!(
        out.stderr,
        "[1/7] m/bad FAILED\n\
         [2/7] m/dep skipped\n\
         [3/7] m/dep2 skipped\n\
         [4/7] m/extra FAILED\n\
         [5/7] m/nofile FAILED\n\
         [6/7] m/ok generated\n\
         [7/7] m/okdep generated\n\
         error: 3 generators failed\n"
    );
    // Only the generators that succeeded are in the store.
    let files: Vec<String> = fleet
        .tree()
        .into_keys()
        .filter(|p| {
            p.starts_with("machines/m/") && !p.ends_with("key.json") && !p.ends_with("age-key")
        })
        .collect();
    assert_eq!(
        files,
        [
            "machines/m/meta/ok.json",
            "machines/m/meta/okdep.json",
            "machines/m/public/ok/f",
            "machines/m/public/okdep/f",
        ]
    );
    assert_eq!(
        fleet.read_string("sops/machines/m/public/okdep/f"),
        "hello\n"
    );
    assert!(
        std::fs::read_dir(fleet.repo.join("sops/.tx")).map_or(true, |mut d| d.next().is_none()),
        "a transaction was left behind"
    );
}

#[test]
fn a_failed_regeneration_keeps_the_complete_old_set() {
    if !require("bwrap") {
        return;
    }
    let two = |script: &str| {
        one_machine(
            "m",
            json!({ "g": { "files": { "a": {}, "b": { "secret": false } }, "script": script } }),
        )
    };
    let fleet = Fleet::new(two("echo 1 > $out/a; echo 1 > $out/b"));
    fleet.generate(&[]).ok();
    let before = fleet.tree();
    // The new script writes one file, then fails.
    fleet.configure(&two("echo 2 > $out/a; echo 'no b today' >&2; exit 1"));
    let out = fleet.generate(&[]).code(1);
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/g        failed: generator m/g failed (exit status: 1); last lines of its output:\n  no b today\n"
    );
    assert_same_tree(&before, &fleet.tree());
    // Writes everything but one declared file.
    fleet.configure(&two("echo 2 > $out/a"));
    let out = fleet.generate(&[]).code(1);
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/g        failed: declared file \"b\" not produced (the script produced: \"a\")\n"
    );
    assert_same_tree(&before, &fleet.tree());
    // Still outdated, so the next run tries again.
    let out = fleet.check(1);
    assert_eq!(
        out.stdout,
        "m/g: outdated: its definition changed (fix: vars generate --machine m --generator g)\n"
    );
}

#[test]
fn a_script_producing_nothing_says_so() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(one_machine(
        "m",
        json!({ "g": { "files": { "a": {}, "b": {} }, "script": "true" } }),
    ));
    let out = fleet.generate(&[]).code(1);
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/g        failed: declared files \"a\", \"b\" not produced (the script produced: nothing)\n"
    );
}

#[test]
fn a_directory_in_out_fails() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(one_machine(
        "m",
        json!({ "g": { "files": { "a": {} }, "script": "echo a > $out/a; mkdir $out/d" } }),
    ));
    let out = fleet.generate(&[]).code(1);
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/g        failed: generator m/g produced \"d\" in $out, which is not a regular file\n"
    );
    assert!(!fleet.exists("sops/machines/m/secrets/g"));
}

#[test]
fn killing_vars_midway_leaves_complete_sets_and_no_script_behind() {
    if !require("bwrap") {
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let manifest = |script: &str| {
        one_machine(
            "m",
            json!({
                "a": { "files": { "s": {}, "v": { "secret": false } },
                       "script": "echo a > $out/s; echo a > $out/v" },
                "b": { "dependencies": ["a"], "files": { "s": {}, "v": { "secret": false } },
                       "script": script },
            }),
        )
    };
    let fleet = Fleet::new(manifest(
        "echo b > $out/v; echo b > $out/s; sleep 27.1828; echo late > $out/v",
    ));
    let mut cmd = fleet.command(&["generate", "--jobs", "1"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line, "[1/2] m/a generated\n");
    // b's script is now running (or about to): kill vars outright.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    let files: Vec<String> = fleet
        .tree()
        .into_keys()
        .filter(|p| {
            p.starts_with("machines/m/") && !p.ends_with("key.json") && !p.ends_with("age-key")
        })
        .collect();
    assert_eq!(
        files,
        [
            "machines/m/meta/a.json",
            "machines/m/public/a/v",
            "machines/m/secrets/a/s"
        ]
    );
    // The sandboxed script died with vars.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("27.1828"))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the script outlived vars"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The next run picks up where it stopped.
    fleet.configure(&manifest("echo b > $out/v; echo b > $out/s"));
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\nm/b        generated (never generated)\n"
    );
    fleet.check(0);
    assert!(
        std::fs::read_dir(fleet.repo.join("sops/.tx")).map_or(true, |mut d| d.next().is_none()),
        "a transaction was left behind"
    );
}
