//! Parallel generation (`--jobs 2`) gives the same store and the same report
//! as `--jobs 1`, on a DAG with diamonds and shared nodes; a failure skips
//! exactly its transitive dependents, whatever the interleaving.

mod engine;

use std::collections::{BTreeMap, BTreeSet};

use engine::*;

/// 20 generators: shared `root`, `s2` (on root) and `s3` (on root and s2);
/// on m1, m2, m3: `a` and `b` on root, `c` on a and b (a diamond), `d` on c
/// and s2, `e` alone; on m4: `x` on s2, `y` on x and root.
/// Each writes a public `v` derived from its name and its dependencies' `v`,
/// and a secret `s`; the generators named in `failing` exit 1 instead.
fn fleet_manifest(failing: &[&str]) -> Value {
    let node = |id: &str, share: bool, deps: &[&str]| -> Value {
        let mut script = String::from("sleep 0.0$((RANDOM % 4))\n");
        if failing.contains(&id) {
            script.push_str(&format!("echo '{id} fails on purpose' >&2\nexit 1\n"));
        }
        script.push_str(&format!("{{ echo '{id}';"));
        for d in deps {
            script.push_str(&format!(" cat $in/{d}/v;"));
        }
        script.push_str(" } | sha256sum | cut -c1-16 > $out/v\n");
        script.push_str(&format!("echo 'secret of {id}' > $out/s\n"));
        json!({
            "share": share,
            "dependencies": deps,
            "files": { "v": { "secret": false }, "s": {} },
            "script": script,
        })
    };
    let shared = |g: &mut serde_json::Map<String, Value>| {
        g.insert("root".into(), node("shared/root", true, &[]));
        g.insert("s2".into(), node("shared/s2", true, &["root"]));
        g.insert("s3".into(), node("shared/s3", true, &["root", "s2"]));
    };
    let mut machines = serde_json::Map::new();
    for m in ["m1", "m2", "m3"] {
        let mut g = serde_json::Map::new();
        shared(&mut g);
        let id = |n: &str| format!("{m}/{n}");
        g.insert("a".into(), node(&id("a"), false, &["root"]));
        g.insert("b".into(), node(&id("b"), false, &["root"]));
        g.insert("c".into(), node(&id("c"), false, &["a", "b"]));
        g.insert("d".into(), node(&id("d"), false, &["c", "s2"]));
        g.insert("e".into(), node(&id("e"), false, &[]));
        machines.insert(m.into(), machine(Value::Object(g)));
    }
    let mut g = serde_json::Map::new();
    shared(&mut g);
    g.insert("x".into(), node("m4/x", false, &["s2"]));
    g.insert("y".into(), node("m4/y", false, &["x", "root"]));
    machines.insert("m4".into(), machine(Value::Object(g)));
    json!({ "machines": machines })
}

/// Every generator's id, in the summary's order.
const ALL: [&str; 20] = [
    "shared/root",
    "shared/s2",
    "shared/s3",
    "m1/a",
    "m1/b",
    "m1/c",
    "m1/d",
    "m1/e",
    "m2/a",
    "m2/b",
    "m2/c",
    "m2/d",
    "m2/e",
    "m3/a",
    "m3/b",
    "m3/c",
    "m3/d",
    "m3/e",
    "m4/x",
    "m4/y",
];

/// The summary rows as generator → result text.
fn rows(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("  "))
        .map(|l| {
            let (node, result) = l.split_once(' ').unwrap();
            (node.to_string(), result.trim_start().to_string())
        })
        .collect()
}

/// Progress lines without their `[n/total]` counter, sorted.
fn progress(stderr: &str) -> Vec<String> {
    let mut lines: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest.to_string()))
        .collect();
    lines.sort();
    lines
}

fn generate(failing: &[&str], jobs: &str) -> (Fleet, Output) {
    let fleet = Fleet::new(fleet_manifest(failing));
    let out = fleet.run(&["generate", "--jobs", jobs]);
    (fleet, out)
}

#[test]
fn jobs_2_gives_the_same_store_and_report_as_jobs_1() {
    if !require("bwrap") {
        return;
    }
    let (serial, one) = generate(&[], "1");
    let (parallel, two) = generate(&[], "2");
    assert_eq!(one.code, 0, "{one}");
    assert_eq!(two.code, 0, "{two}");
    // The same report, byte for byte, in the DAG's order.
    assert_eq!(one.stdout, two.stdout);
    let order: Vec<String> = rows(&one.stdout).into_keys().collect();
    assert_eq!(order.len(), 20);
    let listed: Vec<&str> = one
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(listed, ALL);
    assert_eq!(progress(&one.stderr), progress(&two.stderr));

    // The same files, the same public contents, the same secrets.
    let (a, b) = (serial.tree(), parallel.tree());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let publics: Vec<&String> = a.keys().filter(|k| k.contains("/public/")).collect();
    assert_eq!(publics.len(), 20);
    for k in publics {
        assert_eq!(a[k], b[k], "{k}");
    }
    for id in ALL {
        let (owner, gen) = id.split_once('/').unwrap();
        let m = if owner == "shared" { "m4" } else { owner };
        let spec = format!("{gen}/s");
        let want = format!("secret of {id}\n");
        assert_eq!(serial.run(&["get", m, &spec]).ok().stdout, want);
        assert_eq!(parallel.run(&["get", m, &spec]).ok().stdout, want);
    }
    serial.check(0);
    parallel.check(0);
    // Dependencies' outputs were read: m4/y depends on m4/x and shared/root.
    assert_ne!(
        serial.read("sops/machines/m4/public/y/v"),
        serial.read("sops/machines/m4/public/x/v")
    );
}

/// Runs with `failing` under `--jobs 2` and checks that exactly `skipped`
/// were skipped and every other generator (but the failing ones) generated.
fn failure_skips_exactly(failing: &[&str], skipped: &[&str]) {
    let (fleet, out) = generate(failing, "2");
    assert_eq!(out.code, 1, "{out}");
    let rows = rows(&out.stdout);
    let mut got_failed = BTreeSet::new();
    let mut got_skipped = BTreeSet::new();
    for (node, result) in &rows {
        if result.starts_with("failed: ") {
            got_failed.insert(node.as_str());
        } else if result.starts_with("skipped: ") {
            got_skipped.insert(node.as_str());
        } else {
            assert_eq!(result, "generated (never generated)", "{node}");
        }
    }
    assert_eq!(rows.len(), 20, "{out}");
    assert_eq!(got_failed, failing.iter().copied().collect());
    assert_eq!(got_skipped, skipped.iter().copied().collect(), "{out}");
    // Skipped and failed generators left nothing in the store.
    let tree = fleet.tree();
    for id in failing.iter().chain(skipped) {
        let (owner, gen) = id.split_once('/').unwrap();
        let dir = if owner == "shared" {
            format!("shared/public/{gen}/")
        } else {
            format!("machines/{owner}/public/{gen}/")
        };
        assert!(
            !tree.keys().any(|k| k.starts_with(&dir)),
            "{id} was written"
        );
    }
    // The same report as with --jobs 1.
    let (_, serial) = generate(failing, "1");
    assert_eq!(serial.stdout, out.stdout);
    assert_eq!(
        out.stderr.lines().last(),
        Some(if failing.len() == 1 {
            "error: 1 generator failed"
        } else {
            "error: 2 generators failed"
        })
    );
}

#[test]
fn a_failure_in_one_machine_branch_skips_exactly_its_dependents() {
    if !require("bwrap") {
        return;
    }
    failure_skips_exactly(&["m2/a"], &["m2/c", "m2/d"]);
}

#[test]
fn a_failing_shared_node_skips_its_dependents_on_every_machine() {
    if !require("bwrap") {
        return;
    }
    failure_skips_exactly(
        &["shared/s2"],
        &["shared/s3", "m1/d", "m2/d", "m3/d", "m4/x", "m4/y"],
    );
}

#[test]
fn two_failures_in_different_branches() {
    if !require("bwrap") {
        return;
    }
    failure_skips_exactly(&["m1/b", "m4/x"], &["m1/c", "m1/d", "m4/y"]);
}

#[test]
fn skip_reasons_name_the_dependency() {
    if !require("bwrap") {
        return;
    }
    let (_, out) = generate(&["m2/a"], "2");
    let rows = rows(&out.stdout);
    assert_eq!(rows["m2/c"], "skipped: dependency m2/a did not generate");
    assert_eq!(rows["m2/d"], "skipped: dependency m2/c did not generate");
    assert_eq!(
        rows["m2/a"],
        "failed: generator m2/a failed (exit status: 1); last lines of its output:"
    );
    assert!(out.stdout.contains("\n  m2/a fails on purpose\n"), "{out}");
}
