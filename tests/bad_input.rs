//! Each invalid configuration is refused with its exact message (exit 2) by
//! `generate` and `check`, and nothing under `sops/` changes.

mod engine;

use engine::*;

fn valid() -> Value {
    json!({ "machines": {
        "cinnabar": machine(json!({
            "a": public_gen(&["v"], "a"),
            "ca": { "share": true, "files": { "k": {} }, "script": "echo k > $out/k" },
        })),
        "zinc": machine(json!({
            "ca": { "share": true, "files": { "k": {} }, "script": "echo k > $out/k" },
        })),
    }})
}

/// Generates `valid()`, then applies `edit`: generate and check must both fail
/// with exactly `message` and leave the store byte-identical.
#[track_caller]
fn rejected(edit: impl FnOnce(&mut Value), message: &str) {
    let fleet = Fleet::new(valid());
    fleet.generate(&["--no-sandbox"]).ok();
    let before = fleet.tree();
    let mut bad = valid();
    edit(&mut bad);
    fleet.configure(&bad);
    let want = format!("error: {message}\n");
    for args in [&["generate"][..], &["generate", "--regenerate"], &["check"]] {
        let out = fleet.run(args).code(2);
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(out.stderr, want, "{args:?}");
    }
    assert_same_tree(&before, &fleet.tree());
}

fn gens(m: &mut Value) -> &mut serde_json::Map<String, Value> {
    m["machines"]["cinnabar"]["generators"]
        .as_object_mut()
        .unwrap()
}

#[test]
fn unknown_field() {
    rejected(
        |m| gens(m)["a"]["scirpt"] = json!("x"),
        "machines.cinnabar.generators.a: unknown field \"scirpt\", expected one of \"dependencies\", \"files\", \"prompts\", \"runtimeInputs\", \"script\", \"share\", \"validation\"",
    );
}

#[test]
fn bad_enum() {
    rejected(
        |m| gens(m)["a"]["files"]["v"]["neededFor"] = json!("boot"),
        "machines.cinnabar.generators.a.files.v.neededFor: expected one of \"partitioning\", \"activation\", \"users\", \"services\", got \"boot\"",
    );
}

#[test]
fn bad_prompt_type() {
    rejected(
        |m| gens(m)["a"]["prompts"] = json!({ "p": { "type": "password" } }),
        "machines.cinnabar.generators.a.prompts.p.type: expected one of \"line\", \"hidden\", \"multiline\", \"multiline-hidden\", got \"password\"",
    );
}

#[test]
fn bad_mode() {
    rejected(
        |m| gens(m)["a"]["files"]["v"]["mode"] = json!("rw"),
        "machines.cinnabar.generators.a.files.v.mode: expected four octal digits like \"0400\", got \"rw\"",
    );
}

#[test]
fn name_dot_dot_slash() {
    rejected(
        |m| {
            gens(m).insert("../x".into(), public_gen(&["v"], "x"));
        },
        "machines.cinnabar.generators.\"../x\": invalid generator name: must not contain \"/\"",
    );
}

#[test]
fn name_dot_dot() {
    rejected(
        |m| {
            gens(m).insert("..".into(), public_gen(&["v"], "x"));
        },
        "machines.cinnabar.generators.\"..\": invalid generator name: must not be \".\" or \"..\"",
    );
}

#[test]
fn file_name_with_slash() {
    rejected(
        |m| gens(m)["a"]["files"]["etc/passwd"] = json!({}),
        "machines.cinnabar.generators.a.files.\"etc/passwd\": invalid file name: must not contain \"/\"",
    );
}

#[test]
fn empty_machine_name() {
    rejected(
        |m| m["machines"][""] = machine(json!({})),
        "machines.\"\": invalid machine name: must not be empty",
    );
}

#[test]
fn missing_dependency() {
    rejected(
        |m| gens(m)["a"]["dependencies"] = json!(["nope"]),
        "machines.cinnabar.generators.a.dependencies[0]: unknown generator \"nope\": the machine declares no generator of that name",
    );
}

#[test]
fn cycle() {
    rejected(
        |m| {
            gens(m)["a"]["dependencies"] = json!(["b"]);
            gens(m).insert("b".into(), json!({ "dependencies": ["a"] }));
        },
        "dependency cycle: cinnabar/a -> cinnabar/b -> cinnabar/a",
    );
}

#[test]
fn longer_cycle() {
    rejected(
        |m| {
            gens(m)["a"]["dependencies"] = json!(["c"]);
            gens(m).insert("b".into(), json!({ "dependencies": ["a"] }));
            gens(m).insert("c".into(), json!({ "dependencies": ["b"] }));
        },
        "dependency cycle: cinnabar/a -> cinnabar/c -> cinnabar/b -> cinnabar/a",
    );
}

#[test]
fn shared_generator_defined_differently() {
    rejected(
        |m| m["machines"]["zinc"]["generators"]["ca"]["script"] = json!("echo other > $out/k"),
        "generators.ca: shared generator defined differently on machines cinnabar and zinc: script: \"echo k > $out/k\" vs \"echo other > $out/k\"",
    );
}

#[test]
fn shared_depending_on_per_machine() {
    rejected(
        |m| {
            gens(m)["ca"]["dependencies"] = json!(["a"]);
            m["machines"]["zinc"]["generators"]["ca"]["dependencies"] = json!(["a"]);
            m["machines"]["zinc"]["generators"]["a"] = public_gen(&["v"], "a");
        },
        "machines.cinnabar.generators.ca.dependencies[0]: a shared generator cannot depend on the per-machine generator \"a\"",
    );
}

#[test]
fn two_deployed_files_on_the_same_path() {
    rejected(
        |m| {
            gens(m)["a"]["files"]["v"]["path"] = json!("/etc/secret");
            gens(m)["ca"]["files"]["k"]["path"] = json!("/etc/secret");
            m["machines"]["zinc"]["generators"]["ca"]["files"]["k"]["path"] = json!("/etc/secret");
        },
        "machines.cinnabar.generators.ca.files.k.path: \"/etc/secret\" is also the path of machines.cinnabar.generators.a.files.v",
    );
}

#[test]
fn relative_deploy_path() {
    rejected(
        |m| gens(m)["a"]["files"]["v"]["path"] = json!("etc/secret"),
        "machines.cinnabar.generators.a.files.v.path: expected an absolute path like \"/etc/ssh/key\", got \"etc/secret\"",
    );
}

#[test]
fn invalid_json() {
    let fleet = Fleet::new(valid());
    fleet.generate(&["--no-sandbox"]).ok();
    let before = fleet.tree();
    std::fs::write(fleet.repo.join("vars.json"), "{\"machines\": {,}}").unwrap();
    let out = fleet.run(&["generate"]).code(2);
    assert_eq!(
        out.stderr,
        "error: ./vars.json: invalid JSON at line 1 column 15: key must be a string\n"
    );
    assert_same_tree(&before, &fleet.tree());
}
