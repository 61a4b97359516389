//! End-to-end tests of `Manifest::from_json`: defaults, every error message, determinism and
//! hostile sizes.

use super::*;
use serde_json::{json, Value};

const SOURCE: &str = "vars.json";

/// A small valid fleet: one NixOS machine with an ssh host key generator.
fn base() -> Value {
    json!({"machines": {"cinnabar": {
        "class": "nixos",
        "tags": ["vps"],
        "generators": {"openssh": {
            "files": {"key": {}, "key.pub": {"secret": false}},
            "script": "ssh-keygen -f $out/key"
        }}
    }}})
}

fn parse(value: &Value) -> Result<Manifest, ManifestError> {
    Manifest::from_json(&value.to_string(), SOURCE)
}

fn error(value: &Value) -> String {
    match parse(value) {
        Ok(manifest) => panic!("expected an error, got {manifest:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
    }
}

/// `base()` with the JSON pointer `pointer` set to `value`.
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = base();
    set(&mut doc, pointer, value);
    doc
}

fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    parent.insert(key.replace("~1", "/").replace("~0", "~"), value);
}

const GEN: &str = "/machines/cinnabar/generators/openssh";
const KEY: &str = "/machines/cinnabar/generators/openssh/files/key";

#[test]
fn base_parses_with_clan_defaults() {
    let manifest = parse(&base()).unwrap();
    let machine = &manifest.machines["cinnabar"];
    assert_eq!(machine.class, Class::Nixos);
    assert_eq!(machine.tags, ["vps"]);
    let generator = &machine.generators["openssh"];
    assert!(!generator.share);
    assert!(generator.dependencies.is_empty());
    assert!(generator.prompts.is_empty());
    assert!(generator.runtime_inputs.is_empty());
    assert_eq!(generator.validation, None);
    assert_eq!(
        generator.files["key"],
        FileDecl {
            secret: true,
            deploy: true,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o400,
            needed_for: NeededFor::Services,
            restart_units: vec![],
            path: None,
        }
    );
    assert!(!generator.files["key.pub"].secret);
    assert_eq!(generator.files["key"], FileDecl::default());
}

#[test]
fn empty_declarations_equal_the_defaults() {
    let doc = json!({"machines": {"m": {"class": "nixos", "generators": {"g": {
        "files": {"f": {}}, "prompts": {"p": {}}
    }}}}});
    let manifest = parse(&doc).unwrap();
    let generator = &manifest.machines["m"].generators["g"];
    assert_eq!(generator.files["f"], FileDecl::default());
    assert_eq!(generator.prompts["p"], Prompt::default());
    let bare = json!({"machines": {"m": {"class": "nixos", "generators": {"g": {}}}}});
    assert_eq!(
        parse(&bare).unwrap().machines["m"].generators["g"],
        Generator::default()
    );
}

#[test]
fn null_means_default_everywhere_it_is_optional() {
    let doc = json!({"machines": {"m": {
        "class": "nixos", "tags": null, "generators": {"g": {
            "share": null, "dependencies": null, "files": {"f": {
                "secret": null, "deploy": null, "owner": null, "group": null, "mode": null,
                "neededFor": null, "restartUnits": null, "path": null
            }},
            "prompts": {"p": {"description": null, "type": null, "persist": null}},
            "runtimeInputs": null, "script": null, "validation": null
        }}
    }, "n": {"class": "darwin", "generators": null}}});
    let manifest = parse(&doc).unwrap();
    let generator = &manifest.machines["m"].generators["g"];
    assert_eq!(generator.script, "");
    assert_eq!(generator.validation, None);
    assert_eq!(generator.files["f"].group, "root");
    assert_eq!(generator.files["f"].mode, 0o400);
    assert_eq!(
        generator.prompts["p"],
        Prompt {
            description: String::new(),
            kind: PromptType::Line,
            persist: false
        }
    );
    assert!(manifest.machines["n"].generators.is_empty());
}

#[test]
fn every_field_is_read() {
    let doc = json!({"machines": {"mac": {
        "class": "darwin", "tags": ["laptop", "darwin"], "generators": {
            "ca": {"share": true, "files": {"ca": {}}},
            "host": {
                "share": false, "dependencies": ["ca"],
                "files": {"key": {
                    "secret": true, "deploy": false, "owner": "sshd", "group": "staff",
                    "mode": "0640", "neededFor": "activation",
                    "restartUnits": ["sshd.service"], "path": "/etc/ssh/key"
                }, "other": {"neededFor": "partitioning"}},
                "prompts": {"token": {"description": "API token", "type": "multiline-hidden", "persist": true}},
                "runtimeInputs": ["/nix/store/a-openssh"],
                "script": "echo hi",
                "validation": {"v": [1, 2]}
            }
        }
    }}});
    let manifest = parse(&doc).unwrap();
    let machine = &manifest.machines["mac"];
    assert_eq!(machine.class, Class::Darwin);
    assert_eq!(machine.tags, ["laptop", "darwin"]);
    assert!(machine.generators["ca"].share);
    assert_eq!(machine.generators["ca"].files["ca"].group, "wheel");
    let host = &machine.generators["host"];
    assert_eq!(host.dependencies, ["ca"]);
    assert_eq!(
        host.files["key"],
        FileDecl {
            secret: true,
            deploy: false,
            owner: "sshd".into(),
            group: "staff".into(),
            mode: 0o640,
            needed_for: NeededFor::Activation,
            restart_units: vec!["sshd.service".into()],
            path: Some("/etc/ssh/key".into()),
        }
    );
    assert_eq!(host.files["other"].needed_for, NeededFor::Partitioning);
    assert_eq!(
        host.prompts["token"],
        Prompt {
            description: "API token".into(),
            kind: PromptType::MultilineHidden,
            persist: true
        }
    );
    assert_eq!(host.runtime_inputs, ["/nix/store/a-openssh"]);
    assert_eq!(host.script, "echo hi");
    assert_eq!(host.validation, Some(json!({"v": [1, 2]})));
}

#[test]
fn enums_accept_every_spelling() {
    for (spelling, expected) in [
        ("partitioning", NeededFor::Partitioning),
        ("activation", NeededFor::Activation),
        ("users", NeededFor::Users),
        ("services", NeededFor::Services),
    ] {
        let manifest = parse(&with(&format!("{KEY}/neededFor"), json!(spelling))).unwrap();
        assert_eq!(
            manifest.machines["cinnabar"].generators["openssh"].files["key"].needed_for,
            expected
        );
        assert_eq!(expected.to_string(), spelling);
    }
    for (spelling, expected) in [
        ("line", PromptType::Line),
        ("hidden", PromptType::Hidden),
        ("multiline", PromptType::Multiline),
        ("multiline-hidden", PromptType::MultilineHidden),
    ] {
        let doc = with(&format!("{GEN}/prompts"), json!({"p": {"type": spelling}}));
        let manifest = parse(&doc).unwrap();
        assert_eq!(
            manifest.machines["cinnabar"].generators["openssh"].prompts["p"].kind,
            expected
        );
        assert_eq!(expected.to_string(), spelling);
    }
    assert!(PromptType::MultilineHidden.is_hidden() && PromptType::MultilineHidden.is_multiline());
    assert!(!PromptType::Line.is_hidden() && !PromptType::Hidden.is_multiline());
    assert_eq!(Class::Darwin.to_string(), "darwin");
}

#[test]
fn modes_are_four_octal_digits() {
    for (text, mode) in [
        ("0400", 0o400),
        ("0644", 0o644),
        ("4755", 0o4755),
        ("0000", 0),
    ] {
        let manifest = parse(&with(&format!("{KEY}/mode"), json!(text))).unwrap();
        assert_eq!(
            manifest.machines["cinnabar"].generators["openssh"].files["key"].mode,
            mode
        );
    }
}

#[test]
fn shape_errors_name_their_path() {
    let m = "machines.cinnabar";
    let g = "machines.cinnabar.generators.openssh";
    let k = "machines.cinnabar.generators.openssh.files.key";
    let cases: Vec<(Value, String)> = vec![
        (
            json!([]),
            "vars.json: expected the top level to be an object, got an array".into(),
        ),
        (json!({}), "vars.json: missing field \"machines\"".into()),
        (
            json!({"machines": {}, "version": 1}),
            "vars.json: unknown field \"version\", expected one of \"machines\"".into(),
        ),
        (
            json!({"machines": []}),
            "machines: expected an object, got an array".into(),
        ),
        (
            json!({"machines": null}),
            "machines: expected an object, got null".into(),
        ),
        (
            json!({"machines": {"m": 1}}),
            "machines.m: expected an object, got a number".into(),
        ),
        (
            json!({"machines": {"m": {}}}),
            "machines.m: missing field \"class\"".into(),
        ),
        (
            with("/machines/cinnabar/class", json!("linux")),
            format!("{m}.class: expected one of \"nixos\", \"darwin\", got \"linux\""),
        ),
        (
            with("/machines/cinnabar/class", json!(null)),
            format!("{m}.class: expected one of \"nixos\", \"darwin\", got null"),
        ),
        (
            with("/machines/cinnabar/foo", json!(1)),
            format!(
                "{m}: unknown field \"foo\", expected one of \"class\", \"generators\", \"tags\""
            ),
        ),
        (
            with("/machines/cinnabar/tags", json!(["a", 1])),
            format!("{m}.tags[1]: expected a string, got a number"),
        ),
        (
            with("/machines/cinnabar/tags", json!("vps")),
            format!("{m}.tags: expected an array, got a string"),
        ),
        (
            with("/machines/cinnabar/generators", json!([])),
            format!("{m}.generators: expected an object, got an array"),
        ),
        (
            with(&format!("{GEN}/dependecies"), json!([])),
            format!(
                "{g}: unknown field \"dependecies\", expected one of \"dependencies\", \"files\", \
                 \"prompts\", \"runtimeInputs\", \"script\", \"share\", \"validation\""
            ),
        ),
        (
            with(&format!("{GEN}/share"), json!("yes")),
            format!("{g}.share: expected a boolean, got a string"),
        ),
        (
            with(&format!("{GEN}/dependencies"), json!("ca")),
            format!("{g}.dependencies: expected an array, got a string"),
        ),
        (
            with(&format!("{GEN}/dependencies"), json!([""])),
            format!("{g}.dependencies[0]: must not be empty"),
        ),
        (
            with(&format!("{GEN}/runtimeInputs"), json!([{}])),
            format!("{g}.runtimeInputs[0]: expected a string, got an object"),
        ),
        (
            with(&format!("{GEN}/script"), json!(["echo"])),
            format!("{g}.script: expected a string, got an array"),
        ),
        (
            with(&format!("{GEN}/script"), json!("echo \u{0}")),
            format!("{g}.script: must not contain a NUL byte"),
        ),
        (
            with(&format!("{GEN}/files"), json!(true)),
            format!("{g}.files: expected an object, got a boolean"),
        ),
        (
            with(&format!("{KEY}/mode"), json!("rw")),
            format!("{k}.mode: expected four octal digits like \"0400\", got \"rw\""),
        ),
        (
            with(&format!("{KEY}/mode"), json!(400)),
            format!("{k}.mode: expected four octal digits like \"0400\", got 400"),
        ),
        (
            with(&format!("{KEY}/mode"), json!("400")),
            format!("{k}.mode: expected four octal digits like \"0400\", got \"400\""),
        ),
        (
            with(&format!("{KEY}/mode"), json!("0800")),
            format!("{k}.mode: expected four octal digits like \"0400\", got \"0800\""),
        ),
        (
            with(&format!("{KEY}/mode"), json!("+400")),
            format!("{k}.mode: expected four octal digits like \"0400\", got \"+400\""),
        ),
        (
            with(&format!("{KEY}/secret"), json!(1)),
            format!("{k}.secret: expected a boolean, got a number"),
        ),
        (
            with(&format!("{KEY}/deploy"), json!("true")),
            format!("{k}.deploy: expected a boolean, got a string"),
        ),
        (
            with(&format!("{KEY}/owner"), json!("")),
            format!("{k}.owner: must not be empty"),
        ),
        (
            with(&format!("{KEY}/group"), json!(0)),
            format!("{k}.group: expected a string, got a number"),
        ),
        (
            with(&format!("{KEY}/neededFor"), json!("boot")),
            format!(
                "{k}.neededFor: expected one of \"partitioning\", \"activation\", \"users\", \
                 \"services\", got \"boot\""
            ),
        ),
        (
            with(&format!("{KEY}/restartUnits"), json!([null])),
            format!("{k}.restartUnits[0]: expected a string, got null"),
        ),
        (
            with(&format!("{KEY}/owners"), json!("root")),
            format!(
                "{k}: unknown field \"owners\", expected one of \"deploy\", \"group\", \"mode\", \
                 \"neededFor\", \"owner\", \"path\", \"restartUnits\", \"secret\""
            ),
        ),
        (
            with(&format!("{GEN}/prompts"), json!({"p": {"type": "secret"}})),
            format!(
                "{g}.prompts.p.type: expected one of \"line\", \"hidden\", \"multiline\", \
                 \"multiline-hidden\", got \"secret\""
            ),
        ),
        (
            with(&format!("{GEN}/prompts"), json!({"p": {"kind": "line"}})),
            format!(
                "{g}.prompts.p: unknown field \"kind\", expected one of \"description\", \
                 \"persist\", \"type\""
            ),
        ),
        (
            with(&format!("{GEN}/prompts"), json!({"p": {"persist": "no"}})),
            format!("{g}.prompts.p.persist: expected a boolean, got a string"),
        ),
        (
            with(&format!("{GEN}/prompts"), json!({"p": {"description": 1}})),
            format!("{g}.prompts.p.description: expected a string, got a number"),
        ),
    ];
    for (doc, expected) in cases {
        assert_eq!(error(&doc), expected, "for {doc}");
    }
}

#[test]
fn invalid_json_reports_its_position() {
    let err = Manifest::from_json("{\"machines\": {\n  \"m\": {,}}}", SOURCE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "vars.json: invalid JSON at line 2 column 9: key must be a string"
    );
    assert_eq!(err.exit_code(), 2);
    let err = Manifest::from_json_bytes(b"{\"machines\": \"\xc3\"}", SOURCE).unwrap_err();
    assert!(matches!(err, ManifestError::Json { line: 1, .. }), "{err}");
}

#[test]
fn bad_names_are_refused_wherever_they_appear() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "",
            "machines.\"\"",
            "invalid machine name: must not be empty",
        ),
        (
            ".",
            "machines.\".\"",
            "invalid machine name: must not be \".\" or \"..\"",
        ),
        (
            "..",
            "machines.\"..\"",
            "invalid machine name: must not be \".\" or \"..\"",
        ),
        (
            "../x",
            "machines.\"../x\"",
            "invalid machine name: must not contain \"/\"",
        ),
        (
            "a/b",
            "machines.\"a/b\"",
            "invalid machine name: must not contain \"/\"",
        ),
        (
            "a\0b",
            "machines.\"a\\u0000b\"",
            "invalid machine name: must not contain a NUL byte",
        ),
        (
            "a\nb",
            "machines.\"a\\nb\"",
            "invalid machine name: must not contain control characters",
        ),
    ];
    for (name, path, message) in cases {
        let doc = json!({"machines": {name: {"class": "nixos"}}});
        assert_eq!(error(&doc), format!("{path}: {message}"));
    }

    let g = "machines.cinnabar.generators";
    let doc = with("/machines/cinnabar/generators/..", json!({}));
    assert_eq!(
        error(&doc),
        format!("{g}.\"..\": invalid generator name: must not be \".\" or \"..\"")
    );
    let doc = with(&format!("{GEN}/files"), json!({"../etc/shadow": {}}));
    assert_eq!(
        error(&doc),
        format!("{g}.openssh.files.\"../etc/shadow\": invalid file name: must not contain \"/\"")
    );
    let doc = with(&format!("{GEN}/prompts"), json!({"": {}}));
    assert_eq!(
        error(&doc),
        format!("{g}.openssh.prompts.\"\": invalid prompt name: must not be empty")
    );
    // Dots and other printable characters are fine.
    let doc = with(
        &format!("{GEN}/files"),
        json!({".hidden": {}, "a b.pub": {}, "é": {}}),
    );
    assert!(parse(&doc).is_ok());
}

#[test]
fn deploy_paths_must_be_absolute_and_normalized() {
    let k = "machines.cinnabar.generators.openssh.files.key.path";
    let normalized = "expected a normalized path (no empty, \".\" or \"..\" components, no \
                      trailing \"/\")";
    let cases = [
        (
            "etc/key",
            format!("{k}: expected an absolute path like \"/etc/ssh/key\", got \"etc/key\""),
        ),
        (
            "",
            format!("{k}: expected an absolute path like \"/etc/ssh/key\", got \"\""),
        ),
        ("/", format!("{k}: {normalized}, got \"/\"")),
        ("/etc//key", format!("{k}: {normalized}, got \"/etc//key\"")),
        (
            "/etc/./key",
            format!("{k}: {normalized}, got \"/etc/./key\""),
        ),
        (
            "/etc/../key",
            format!("{k}: {normalized}, got \"/etc/../key\""),
        ),
        ("/etc/key/", format!("{k}: {normalized}, got \"/etc/key/\"")),
        ("/etc/\0", format!("{k}: must not contain a NUL byte")),
    ];
    for (path, expected) in cases {
        assert_eq!(error(&with(&format!("{KEY}/path"), json!(path))), expected);
    }
    for path in ["/etc/ssh/ssh_host_ed25519_key", "/a", "/a/.b/c..d"] {
        assert!(
            parse(&with(&format!("{KEY}/path"), json!(path))).is_ok(),
            "{path}"
        );
    }
}

#[test]
fn first_error_is_the_first_in_sorted_order() {
    // Document order puts "zeta" first; sorted order reports "alpha".
    let text = r#"{"machines": {
        "zeta": {"class": "bsd"},
        "alpha": {"class": "nixos", "generators": {"z": {"share": 1}, "a": {"script": 2}}}
    }}"#;
    let err = Manifest::from_json(text, SOURCE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "machines.alpha.generators.a.script: expected a string, got a number"
    );
    // Unknown fields come before the fields of the same record.
    let doc = with(&format!("{GEN}/zzz"), json!(1));
    let mut doc = doc;
    set(&mut doc, &format!("{GEN}/share"), json!("no"));
    assert!(error(&doc).contains("unknown field \"zzz\""));
}

#[test]
fn dependencies_must_exist_on_the_same_machine() {
    let doc = json!({"machines": {
        "a": {"class": "nixos", "generators": {"ca": {"share": true}, "host": {"dependencies": ["ca"]}}},
        "b": {"class": "nixos", "generators": {"host": {"dependencies": ["ca"]}}}
    }});
    assert_eq!(
        error(&doc),
        "machines.b.generators.host.dependencies[0]: unknown generator \"ca\": the machine \
         declares no generator of that name"
    );
}

#[test]
fn dependencies_are_listed_once() {
    let doc = json!({"machines": {"a": {"class": "nixos", "generators": {
        "x": {}, "y": {"dependencies": ["x", "x"]}
    }}}});
    assert_eq!(
        error(&doc),
        "machines.a.generators.y.dependencies[1]: duplicate dependency \"x\""
    );
}

#[test]
fn shared_generators_depend_on_shared_ones_only() {
    let doc = json!({"machines": {"a": {"class": "nixos", "generators": {
        "host": {}, "ca": {"share": true, "dependencies": ["host"]}
    }}}});
    assert_eq!(
        error(&doc),
        "machines.a.generators.ca.dependencies[0]: a shared generator cannot depend on the \
         per-machine generator \"host\""
    );
    let doc = json!({"machines": {"a": {"class": "nixos", "generators": {
        "root": {"share": true}, "ca": {"share": true, "dependencies": ["root"]},
        "host": {"dependencies": ["ca", "root"]}
    }}}});
    assert!(parse(&doc).is_ok());
}

/// Two machines declaring the shared generator `ca`, the second one changed by `change`.
fn shared_pair(change: impl FnOnce(&mut Value)) -> Value {
    let ca = json!({
        "share": true, "dependencies": ["root"],
        "files": {"ca": {}, "ca.pub": {"secret": false}},
        "prompts": {"cn": {"description": "common name"}},
        "runtimeInputs": ["/nix/store/a-openssh"], "script": "ssh-keygen", "validation": {"v": 1}
    });
    let root = json!({"share": true});
    let mut other = ca.clone();
    change(&mut other);
    json!({"machines": {
        "alpha": {"class": "nixos", "generators": {"ca": ca, "root": root.clone()}},
        "beta": {"class": "darwin", "generators": {"ca": other, "root": root.clone()}},
        "gamma": {"class": "nixos", "generators": {"root": root}}
    }})
}

#[test]
fn shared_generators_must_agree_between_machines() {
    let prefix = "generators.ca: shared generator defined differently on machines alpha and beta";
    type Change = fn(&mut Value);
    let cases: Vec<(Change, &str)> = vec![
        (
            |g| g["script"] = json!("ssh-keygen -t rsa"),
            "script: \"ssh-keygen\" vs \"ssh-keygen -t rsa\"",
        ),
        (
            |g| g["dependencies"] = json!([]),
            "dependencies: [\"root\"] vs []",
        ),
        (
            |g| g["files"]["extra"] = json!({}),
            "files: [\"ca\",\"ca.pub\"] vs [\"ca\",\"ca.pub\",\"extra\"]",
        ),
        (
            |g| g["files"]["ca.pub"]["secret"] = json!(true),
            "files.\"ca.pub\".secret: false vs true",
        ),
        (|g| g["prompts"] = json!({}), "prompts: [\"cn\"] vs []"),
        (
            |g| g["prompts"]["cn"]["type"] = json!("hidden"),
            "prompts.cn.type: \"line\" vs \"hidden\"",
        ),
        (
            |g| g["prompts"]["cn"]["persist"] = json!(true),
            "prompts.cn.persist: false vs true",
        ),
        (
            |g| g["prompts"]["cn"]["description"] = json!("CN"),
            "prompts.cn.description: \"common name\" vs \"CN\"",
        ),
        (
            |g| g["runtimeInputs"] = json!([]),
            "runtimeInputs: [\"/nix/store/a-openssh\"] vs []",
        ),
        (
            |g| g["validation"] = json!(null),
            "validation: {\"v\":1} vs null",
        ),
    ];
    for (change, difference) in cases {
        assert_eq!(
            error(&shared_pair(change)),
            format!("{prefix}: {difference}")
        );
    }
}

#[test]
fn shared_generators_may_deploy_differently_per_machine() {
    // Group defaults differ (root vs wheel); owner, mode, deploy and path are per machine.
    let doc = shared_pair(|g| {
        g["files"]["ca"] =
            json!({"owner": "sshd", "mode": "0440", "deploy": false, "path": "/etc/ca"});
    });
    let manifest = parse(&doc).unwrap();
    assert_eq!(
        manifest.machines["alpha"].generators["ca"].files["ca"].group,
        "root"
    );
    assert_eq!(
        manifest.machines["beta"].generators["ca"].files["ca"].group,
        "wheel"
    );
}

#[test]
fn shared_differences_in_long_scripts_stay_visible() {
    let mut doc = shared_pair(|g| g["script"] = json!(format!("{}!", "x".repeat(200))));
    doc["machines"]["alpha"]["generators"]["ca"]["script"] = json!("x".repeat(200));
    assert_eq!(
        error(&doc),
        format!(
            "generators.ca: shared generator defined differently on machines alpha and beta: \
             script: ...{}\" vs ...{}!\"",
            "x".repeat(59),
            "x".repeat(58)
        )
    );
}

#[test]
fn deployed_files_must_not_share_a_path() {
    let doc = json!({"machines": {"m": {"class": "nixos", "generators": {
        "a": {"files": {"key": {"path": "/etc/key"}}},
        "b": {"files": {"key.pub": {"path": "/etc/key"}}}
    }}}});
    assert_eq!(
        error(&doc),
        "machines.m.generators.b.files.\"key.pub\".path: \"/etc/key\" is also the path of \
         machines.m.generators.a.files.key"
    );
    // Not deployed, or on different machines: no conflict.
    let doc = json!({"machines": {
        "m": {"class": "nixos", "generators": {
            "a": {"files": {"key": {"path": "/etc/key"}}},
            "b": {"files": {"key": {"path": "/etc/key", "deploy": false}}}
        }},
        "n": {"class": "nixos", "generators": {"a": {"files": {"key": {"path": "/etc/key"}}}}}
    }});
    assert!(parse(&doc).is_ok());
}

#[test]
fn load_reads_json_files_and_names_them_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vars.json");
    std::fs::write(&file, base().to_string()).unwrap();
    let config = file.to_str().unwrap();
    let manifest = Manifest::load(config).unwrap();
    assert_eq!(manifest, parse(&base()).unwrap());

    std::fs::write(&file, "[]").unwrap();
    assert_eq!(
        Manifest::load(config).unwrap_err().to_string(),
        format!("{config}: expected the top level to be an object, got an array")
    );
    assert!(matches!(
        Manifest::load("fleet.yaml"),
        Err(ManifestError::Unsupported { .. })
    ));
}

/// Whether `program` can be run (the Nix tests skip without Nix).
fn available(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn load_evaluates_nix_files() {
    if !available("nix-instantiate") {
        eprintln!("skipped: nix-instantiate is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.nix");
    std::fs::write(
        &file,
        r#"{ machines.cinnabar = { class = "nixos"; tags = [ "vps" ];
             generators.openssh = { files.key = { }; files."key.pub".secret = false;
                                    script = "ssh-keygen -f $out/key"; }; }; }"#,
    )
    .unwrap();
    let config = file.to_str().unwrap();
    assert_eq!(Manifest::load(config).unwrap(), parse(&base()).unwrap());

    std::fs::write(&file, r#"{ machines.a = { class = "linux"; }; }"#).unwrap();
    assert_eq!(
        Manifest::load(config).unwrap_err().to_string(),
        "machines.a.class: expected one of \"nixos\", \"darwin\", got \"linux\""
    );

    std::fs::write(&file, "{ machines = undefined; }").unwrap();
    assert_eq!(
        Manifest::load(config).unwrap_err().to_string(),
        format!(
            "{config}: nix-instantiate failed (exit status: 1): error: undefined variable \
             'undefined' (at {config}:1:14)"
        )
    );
}

#[test]
#[ignore = "needs nix with flakes and a writable store"]
fn load_evaluates_flake_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = r#"{ machines.cinnabar = { class = "nixos"; tags = [ "vps" ];
             generators.openssh = { files.key = { }; files."key.pub".secret = false;
                                    script = "ssh-keygen -f $out/key"; }; }; }"#;
    std::fs::write(
        dir.path().join("flake.nix"),
        format!("{{ outputs = {{ self }}: {{ vars = {fleet}; }}; }}"),
    )
    .unwrap();
    let config = format!("path:{}#vars", dir.path().display());
    assert_eq!(Manifest::load(&config).unwrap(), parse(&base()).unwrap());
}

/// Runs `f` on a thread with a small stack: recursion proportional to the input would
/// overflow it.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_chain_of_ten_thousand_dependencies_validates() {
    on_small_stack(chain_of_ten_thousand);
}

fn chain_of_ten_thousand() {
    let mut generators = serde_json::Map::new();
    generators.insert("g0".into(), json!({}));
    for i in 1..10_000 {
        generators.insert(
            format!("g{i}"),
            json!({"dependencies": [format!("g{}", i - 1)]}),
        );
    }
    let doc = json!({"machines": {"m": {"class": "nixos", "generators": generators}}});
    let manifest = parse(&doc).unwrap();
    assert_eq!(manifest.machines["m"].generators.len(), 10_000);
    assert_eq!(
        manifest.machines["m"].generators["g9999"].dependencies,
        ["g9998"]
    );
}

#[test]
fn a_hundred_thousand_generators_validate() {
    on_small_stack(hundred_thousand_generators);
}

fn hundred_thousand_generators() {
    let mut text = String::from("{\"machines\":{");
    for m in 0..100 {
        if m > 0 {
            text.push(',');
        }
        text.push_str(&format!("\"m{m}\":{{\"class\":\"nixos\",\"generators\":{{"));
        for g in 0..1000 {
            if g > 0 {
                text.push(',');
            }
            let deps = if g > 0 {
                format!("[\"g{}\"]", g - 1)
            } else {
                "[]".into()
            };
            text.push_str(&format!(
                "\"g{g}\":{{\"dependencies\":{deps},\"files\":{{\"f\":{{}}}},\"script\":\"s\"}}"
            ));
        }
        text.push_str("}}");
    }
    text.push_str(",\"shared\":{\"class\":\"nixos\",\"generators\":{\"ca\":{\"share\":true}}}}}");
    let manifest = Manifest::from_json(&text, SOURCE).unwrap();
    let total: usize = manifest.machines.values().map(|m| m.generators.len()).sum();
    assert_eq!(total, 100_001);
}
