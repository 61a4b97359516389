//! `vars rekey` re-seals exactly the secrets whose recipients differ from the
//! wanted set; `vars prune` removes what is no longer declared. Everything
//! else stays byte-identical.

mod engine;

use engine::*;

fn manifest() -> Value {
    let ca = json!({ "share": true, "files": { "k": {}, "p": { "secret": false } },
                     "script": "echo ca-secret > $out/k; echo ca-public > $out/p" });
    json!({ "machines": {
        "cinnabar": machine(json!({
            "a": { "files": { "s": {} }, "script": "echo cinnabar-a > $out/s" },
            "ca": ca.clone(),
        })),
        "zinc": machine(json!({
            "a": { "files": { "s": {} }, "script": "echo zinc-a > $out/s" },
            "ca": ca,
        })),
    }})
}

fn generated() -> Fleet {
    let fleet = Fleet::new(manifest());
    fleet.generate(&[]).ok();
    fleet
}

#[test]
fn rekey_for_a_new_admin_keeps_the_plaintexts_and_lets_the_new_admin_read() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let second = fleet.add_admin("second");
    let second_keys = fleet.root().join("keys-second/keys.txt");
    let as_second = |m: &str, spec: &str| {
        // The first admin's key out of the way, so only the second's is tried.
        let hidden = fleet.root().join("first-keys.txt");
        std::fs::rename(fleet.keys_txt(), &hidden).unwrap();
        let out = fleet.run(&["get", m, spec, "--identity", second_keys.to_str().unwrap()]);
        std::fs::rename(&hidden, fleet.keys_txt()).unwrap();
        out
    };
    let out = as_second("zinc", "a/s").code(1);
    assert!(
        out.stderr.starts_with("error: no identity matches"),
        "{out}"
    );

    let before = fleet.tree();
    let out = fleet.run(&["rekey"]).ok();
    assert_eq!(
        out.stdout,
        "re-sealed shared/ca/k\nre-sealed cinnabar/a/s\nre-sealed zinc/a/s\n"
    );
    assert_eq!(out.stderr, "");
    // Public files, metadata and keys are untouched.
    assert_eq!(
        changed(&before, &fleet.tree()),
        [
            "machines/cinnabar/secrets/a/s",
            "machines/zinc/secrets/a/s",
            "shared/secrets/ca/k"
        ]
    );
    for (m, spec, want) in [
        ("cinnabar", "a/s", "cinnabar-a\n"),
        ("zinc", "a/s", "zinc-a\n"),
        ("zinc", "ca/k", "ca-secret\n"),
    ] {
        assert_eq!(fleet.run(&["get", m, spec]).ok().stdout, want);
        assert_eq!(as_second(m, spec).ok().stdout, want);
    }
    assert!(fleet
        .recipients("sops/machines/zinc/secrets/a/s")
        .contains(&second));
    fleet.check(0);
}

#[test]
fn rekey_limited_to_a_machine() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    fleet.add_admin("second");
    let before = fleet.tree();
    let out = fleet.run(&["rekey", "--machine", "zinc"]).ok();
    // zinc's own secret and the shared one it declares; not cinnabar's.
    assert_eq!(out.stdout, "re-sealed shared/ca/k\nre-sealed zinc/a/s\n");
    assert_eq!(
        changed(&before, &fleet.tree()),
        ["machines/zinc/secrets/a/s", "shared/secrets/ca/k"]
    );
    let out = fleet.check(1);
    assert!(
        out.stdout
            .starts_with("cinnabar/a/s: recipients: not sealed to "),
        "{out}"
    );
    assert_eq!(out.stdout.lines().count(), 1);
}

#[test]
fn rekey_without_the_admin_key_fails_and_changes_nothing() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    fleet.add_admin("second");
    std::fs::remove_file(fleet.keys_txt()).unwrap();
    let before = fleet.tree();
    let out = fleet.run(&["rekey"]).code(1);
    assert!(
        out.stderr
            .starts_with("error: no identity matches ./sops/shared/secrets/ca/k"),
        "{out}"
    );
    assert_same_tree(&before, &fleet.tree());
}

#[test]
fn generate_also_reseals_what_its_machines_need() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let second = fleet.add_admin("second");
    let before = fleet.tree();
    let out = fleet.generate(&["--machine", "zinc", "--dry-run"]).ok();
    assert_eq!(
        out.stdout,
        "shared/ca/k: re-seal: its recipients changed\nzinc/a/s: re-seal: its recipients changed\n"
    );
    assert_same_tree(&before, &fleet.tree());
    let out = fleet.generate(&["--machine", "zinc"]).ok();
    assert_eq!(out.stdout, "re-sealed shared/ca/k\nre-sealed zinc/a/s\n");
    assert_eq!(out.stderr, "");
    assert!(fleet
        .recipients("sops/shared/secrets/ca/k")
        .contains(&second));
    assert_eq!(
        changed(&before, &fleet.tree()),
        ["machines/zinc/secrets/a/s", "shared/secrets/ca/k"]
    );
}

#[test]
fn prune_removes_only_what_is_no_longer_declared() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    // Nothing to prune: nothing printed, nothing changed.
    let before = fleet.tree();
    let out = fleet.run(&["prune"]).ok();
    assert_eq!(out.stdout, "");
    assert_same_tree(&before, &fleet.tree());

    // zinc drops `a`, and a stray file appears in cinnabar's public values.
    let mut m = manifest();
    m["machines"]["zinc"]["generators"]
        .as_object_mut()
        .unwrap()
        .remove("a");
    fleet.configure(&m);
    std::fs::create_dir_all(fleet.repo.join("sops/machines/cinnabar/public/a")).unwrap();
    std::fs::write(
        fleet.repo.join("sops/machines/cinnabar/public/a/stray"),
        "x",
    )
    .unwrap();
    let before = fleet.tree();
    let out = fleet.run(&["prune", "--machine", "cinnabar"]).ok();
    assert_eq!(out.stdout, "removed cinnabar/a/stray\n");
    assert_eq!(
        changed(&before, &fleet.tree()),
        ["machines/cinnabar/public/a/stray"]
    );

    let out = fleet.run(&["prune"]).ok();
    assert_eq!(out.stdout, "removed zinc/a\n");
    assert!(!fleet.exists("sops/machines/zinc/secrets/a"));
    assert!(!fleet.exists("sops/machines/zinc/meta/a.json"));
    // The shared CA no longer needs re-sealing for zinc: zinc still declares it.
    fleet.check(0);
}
