//! `vars check`: each problem class on its own line with the command that
//! fixes it; exit 1 with problems, 0 once fixed, 2 on a configuration error.

mod engine;

use engine::*;

/// cinnabar: `a` (a secret and a public file), `b` depending on `a`, and the
/// shared `ca`; zinc: `ca` and `z`; lead: `z` only.
fn manifest() -> Value {
    let ca = json!({ "share": true, "files": { "k": {} },
                     "script": "head -c 16 /dev/urandom > $out/k" });
    json!({ "machines": {
        "cinnabar": machine(json!({
            "a": { "files": { "s": {}, "v": { "secret": false } },
                   "script": "head -c 16 /dev/urandom > $out/s; echo v > $out/v",
                   "validation": { "version": 1 } },
            "b": { "dependencies": ["a"], "files": { "s": {} },
                   "script": "cat $in/a/s $in/a/v > $out/s" },
            "ca": ca.clone(),
        })),
        "zinc": machine(json!({ "ca": ca, "z": public_gen(&["v"], "z") })),
        "lead": machine(json!({ "z": public_gen(&["v"], "z") })),
    }})
}

fn generated() -> Fleet {
    let fleet = Fleet::new(manifest());
    fleet.generate(&[]).ok();
    fleet
}

/// `check` with problems: exit 1, every line naming its fix, and the count on stderr.
#[track_caller]
fn problems(fleet: &Fleet) -> String {
    let out = fleet.check(1);
    let n = out.stdout.lines().count();
    assert!(
        out.stdout.lines().all(|l| l.contains(" (fix: vars ")),
        "{}",
        out.stdout
    );
    let plural = if n == 1 { "" } else { "s" };
    assert_eq!(out.stderr, format!("{n} problem{plural}\n"));
    out.stdout
}

fn edit(fleet: &Fleet, f: impl FnOnce(&mut Value)) {
    let mut m = manifest();
    f(&mut m);
    fleet.configure(&m);
}

#[test]
fn clean_after_generate() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let out = fleet.check(0);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "ok: the store matches the configuration\n");
    let out = fleet.run(&["check", "--json"]).ok();
    assert_eq!(out.stdout, "[]\n");
}

#[test]
fn missing_before_generate() {
    let fleet = Fleet::new(manifest());
    assert_eq!(
        problems(&fleet),
        "shared/ca: missing: never generated (fix: vars generate --machine cinnabar --generator ca)\n\
         cinnabar/a: missing: never generated (fix: vars generate --machine cinnabar --generator a)\n\
         cinnabar/b: missing: never generated (fix: vars generate --machine cinnabar --generator b)\n\
         lead/z: missing: never generated (fix: vars generate --machine lead --generator z)\n\
         zinc/z: missing: never generated (fix: vars generate --machine zinc --generator z)\n"
    );
    // Limited to one machine.
    let out = fleet.run(&["check", "--machine", "lead"]).code(1);
    assert_eq!(
        out.stdout,
        "lead/z: missing: never generated (fix: vars generate --machine lead --generator z)\n"
    );
}

#[test]
fn missing_file() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    std::fs::remove_file(fleet.repo.join("sops/machines/cinnabar/secrets/a/s")).unwrap();
    assert_eq!(
        problems(&fleet),
        "cinnabar/a: missing: absent: s (fix: vars generate --machine cinnabar --generator a)\n"
    );
    fleet.generate(&[]).ok();
    fleet.check(0);
}

#[test]
fn outdated_when_the_script_changes() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["cinnabar"]["generators"]["a"]["script"] =
            json!("head -c 16 /dev/urandom > $out/s; echo v2 > $out/v");
    });
    assert_eq!(
        problems(&fleet),
        "cinnabar/a: outdated: its definition changed (fix: vars generate --machine cinnabar --generator a)\n"
    );
    fleet.generate(&[]).ok();
    fleet.check(0);
}

#[test]
fn outdated_when_the_validation_changes() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["cinnabar"]["generators"]["a"]["validation"] = json!({ "version": 2 });
    });
    assert_eq!(
        problems(&fleet),
        "cinnabar/a: outdated: its definition changed (fix: vars generate --machine cinnabar --generator a)\n"
    );
    fleet.generate(&[]).ok();
    fleet.check(0);
}

#[test]
fn outdated_when_a_dependency_is_set() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    fleet.run_stdin(&["set", "cinnabar", "a/v"], b"new\n").ok();
    assert_eq!(
        problems(&fleet),
        "cinnabar/b: outdated: its dependency cinnabar/a was regenerated (fix: vars generate --machine cinnabar --generator b)\n"
    );
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator   result\n\
         cinnabar/b  generated (outdated: its dependency cinnabar/a was regenerated)\n"
    );
    fleet.check(0);
}

#[test]
fn recipients_when_an_admin_is_added_then_rekey() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let second = fleet.add_admin("second");
    assert_eq!(
        problems(&fleet),
        format!(
            "shared/ca/k: recipients: not sealed to {second} (fix: vars rekey)\n\
             cinnabar/a/s: recipients: not sealed to {second} (fix: vars rekey --machine cinnabar)\n\
             cinnabar/b/s: recipients: not sealed to {second} (fix: vars rekey --machine cinnabar)\n"
        )
    );
    let before = fleet.tree();
    let out = fleet.run(&["rekey"]).ok();
    assert_eq!(
        out.stdout,
        "re-sealed shared/ca/k\nre-sealed cinnabar/a/s\nre-sealed cinnabar/b/s\n"
    );
    assert_eq!(
        changed(&before, &fleet.tree()),
        [
            "machines/cinnabar/secrets/a/s",
            "machines/cinnabar/secrets/b/s",
            "shared/secrets/ca/k"
        ]
    );
    fleet.check(0);
    assert!(fleet
        .recipients("sops/shared/secrets/ca/k")
        .contains(&second));
}

#[test]
fn recipients_when_an_admin_is_removed() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    let second = fleet.add_admin("second");
    fleet.generate(&[]).ok();
    fleet.check(0);
    std::fs::remove_dir_all(fleet.repo.join("sops/users/second")).unwrap();
    let out = problems(&fleet);
    assert_eq!(
        out,
        format!(
            "shared/ca/k: recipients: still sealed to {second} (fix: vars rekey)\n\
             cinnabar/a/s: recipients: still sealed to {second} (fix: vars rekey --machine cinnabar)\n\
             cinnabar/b/s: recipients: still sealed to {second} (fix: vars rekey --machine cinnabar)\n"
        )
    );
    fleet.run(&["rekey"]).ok();
    fleet.check(0);
    assert!(!fleet
        .recipients("sops/shared/secrets/ca/k")
        .contains(&second));
}

#[test]
fn recipients_when_a_machine_key_changes_and_rekey_touches_nothing_else() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let old = fleet.machine_key("zinc");
    let (_, new) = age_keypair();
    std::fs::write(
        fleet.repo.join("sops/machines/zinc/key.json"),
        format!("{{\n  \"publickey\": \"{new}\",\n  \"type\": \"age\"\n}}\n"),
    )
    .unwrap();
    assert_eq!(
        problems(&fleet),
        format!("shared/ca/k: recipients: not sealed to {new}; still sealed to {old} (fix: vars rekey)\n")
    );
    let before = fleet.tree();
    let out = fleet.run(&["rekey"]).ok();
    assert_eq!(out.stdout, "re-sealed shared/ca/k\n");
    assert_eq!(changed(&before, &fleet.tree()), ["shared/secrets/ca/k"]);
    fleet.check(0);
    // A rekey with nothing to do changes nothing.
    let before = fleet.tree();
    let out = fleet.run(&["rekey"]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "every secret already has the wanted recipients\n"
    );
    assert_same_tree(&before, &fleet.tree());
}

#[test]
fn recipients_when_a_machine_starts_declaring_a_shared_generator() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["lead"]["generators"]["ca"] =
            m["machines"]["zinc"]["generators"]["ca"].clone();
    });
    let lead = fleet.machine_key("lead");
    assert_eq!(
        problems(&fleet),
        format!("shared/ca/k: recipients: not sealed to {lead} (fix: vars rekey)\n")
    );
    fleet.run(&["rekey"]).ok();
    fleet.check(0);
}

#[test]
fn recipients_when_a_new_machine_without_a_key_declares_a_shared_generator() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["newbie"] =
            machine(json!({ "ca": m["machines"]["zinc"]["generators"]["ca"].clone() }));
    });
    assert_eq!(
        problems(&fleet),
        "shared/ca/k: recipients: not sealed to machine newbie, which has no key yet (fix: vars rekey)\n"
    );
    let out = fleet.run(&["rekey"]).ok();
    assert_eq!(out.stdout, "re-sealed shared/ca/k\n");
    assert!(fleet
        .recipients("sops/shared/secrets/ca/k")
        .contains(&fleet.machine_key("newbie")));
    fleet.check(0);
}

#[test]
fn recipients_when_a_machine_stops_declaring_a_shared_generator() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let zinc = fleet.machine_key("zinc");
    edit(&fleet, |m| {
        m["machines"]["zinc"]["generators"]
            .as_object_mut()
            .unwrap()
            .remove("ca");
    });
    assert_eq!(
        problems(&fleet),
        format!("shared/ca/k: recipients: still sealed to {zinc} (fix: vars rekey)\n")
    );
    fleet.run(&["rekey"]).ok();
    fleet.check(0);
    assert!(!fleet.recipients("sops/shared/secrets/ca/k").contains(&zinc));
}

#[test]
fn orphan_generator_then_prune() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["cinnabar"]["generators"]
            .as_object_mut()
            .unwrap()
            .remove("b");
    });
    assert_eq!(
        problems(&fleet),
        "cinnabar/b: orphan: stored but no longer declared (fix: vars prune --machine cinnabar)\n"
    );
    let before = fleet.tree();
    let out = fleet.run(&["prune"]).ok();
    assert_eq!(out.stdout, "removed cinnabar/b\n");
    assert_eq!(
        changed(&before, &fleet.tree()),
        [
            "machines/cinnabar/meta/b.json",
            "machines/cinnabar/secrets/b/s"
        ]
    );
    fleet.check(0);
}

#[test]
fn orphan_file_when_a_declaration_is_removed() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        let a = &mut m["machines"]["cinnabar"]["generators"]["a"];
        a["files"].as_object_mut().unwrap().remove("v");
        a["script"] = json!("head -c 16 /dev/urandom > $out/s");
        m["machines"]["cinnabar"]["generators"]["b"]["script"] = json!("cat $in/a/s > $out/s");
    });
    assert_eq!(
        problems(&fleet),
        "cinnabar/a: outdated: its definition changed (fix: vars generate --machine cinnabar --generator a)\n\
         cinnabar/b: outdated: its definition changed (fix: vars generate --machine cinnabar --generator b)\n\
         cinnabar/a/v: orphan: stored under public but not declared (fix: vars prune --machine cinnabar)\n"
    );
    fleet.generate(&[]).ok();
    fleet.check(0);
    assert!(!fleet.exists("sops/machines/cinnabar/public/a/v"));
}

#[test]
fn orphan_machine_then_prune() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"].as_object_mut().unwrap().remove("lead");
    });
    assert_eq!(
        problems(&fleet),
        "lead/z: orphan: stored but no longer declared (fix: vars prune --machine lead)\n"
    );
    let out = fleet.run(&["prune"]).ok();
    assert_eq!(out.stdout, "removed lead/z\n");
    fleet.check(0);
}

#[test]
fn secret_public_mismatch() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    edit(&fleet, |m| {
        m["machines"]["cinnabar"]["generators"]["a"]["files"]["v"] = json!({ "secret": true });
    });
    assert_eq!(
        problems(&fleet),
        "cinnabar/a: kind: v is stored with the wrong secret/public kind (fix: vars generate --machine cinnabar --generator a)\n"
    );
    fleet.generate(&[]).ok();
    fleet.check(0);
    assert!(fleet.exists("sops/machines/cinnabar/secrets/a/v"));
    assert!(!fleet.exists("sops/machines/cinnabar/public/a/v"));
}

#[test]
fn json_output() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    std::fs::remove_file(fleet.repo.join("sops/machines/zinc/public/z/v")).unwrap();
    let out = fleet.run(&["check", "--json"]).code(1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!([{
            "subject": "zinc/z",
            "kind": "missing",
            "detail": "absent: v",
            "fix": "vars generate --machine zinc --generator z",
        }])
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn check_needs_no_key() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    std::fs::remove_file(fleet.keys_txt()).unwrap();
    fleet.check(0);
    fleet.add_admin("second");
    problems(&fleet);
}

#[test]
fn config_error_exits_2() {
    let fleet = Fleet::new(manifest());
    edit(&fleet, |m| {
        m["machines"]["zinc"]["class"] = json!("windows")
    });
    let out = fleet.run(&["check"]).code(2);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "error: machines.zinc.class: expected one of \"nixos\", \"darwin\", got \"windows\"\n"
    );
    std::fs::remove_file(fleet.repo.join("vars.json")).unwrap();
    let out = fleet.run(&["check"]).code(2);
    assert_eq!(
        out.stderr,
        "error: no configuration: neither ./fleet.nix nor ./vars.json exists; pass --config FILE\n"
    );
}
