//! Prompts without a terminal: answers from `--prompt` and `--prompt-file`,
//! one error listing every unanswered prompt before anything runs, and
//! persisted answers reused until `--regenerate`.

mod engine;

use engine::*;

fn manifest() -> Value {
    json!({ "machines": {
        "cinnabar": machine(json!({
            "wifi": {
                "prompts": {
                    "psk": { "description": "Wi-Fi key", "type": "hidden", "persist": true },
                    "ssid": { "description": "network name" },
                },
                "files": { "psk": {}, "conf": { "secret": false } },
                "script": "{ printf 'ssid=%s\\n' \"$(cat $prompts/ssid)\"; printf 'psk-hash=%s\\n' \"$(sha256sum < $prompts/psk | cut -c1-8)\"; } > $out/conf",
            },
            "plain": public_gen(&["v"], "plain"),
        })),
        "zinc": machine(json!({
            "user": {
                "prompts": { "name": {} },
                "files": { "name": { "secret": false } },
                "script": "cp $prompts/name $out/name",
            },
        })),
    }})
}

#[test]
fn unanswered_prompts_are_listed_in_one_error_before_anything_runs() {
    let fleet = Fleet::new(manifest());
    let before = fleet.tree();
    let out = fleet.generate(&["--prompt", "wifi.ssid=home"]).code(2);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "error: no terminal to ask on, and these prompts have no answer: cinnabar/wifi.psk, zinc/user.name; \
         pass --prompt GEN.PROMPT=VALUE or --prompt-file FILE.json\n"
    );
    // Not even the generator without prompts ran, and no machine key was made.
    assert_same_tree(&before, &fleet.tree());
}

#[test]
fn answers_from_flags_and_from_a_file() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    let answers = fleet.root().join("answers.json");
    std::fs::write(
        &answers,
        r#"{"wifi.psk": "hunter2", "zinc/user.name": "from file"}"#,
    )
    .unwrap();
    let out = fleet
        .generate(&[
            "--prompt-file",
            answers.to_str().unwrap(),
            "--prompt",
            "wifi.ssid=home net",
            // A flag wins over the file.
            "--prompt",
            "zinc/user.name=alice",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        "generator       result\n\
         cinnabar/plain  generated (never generated)\n\
         cinnabar/wifi   generated (never generated)\n\
         zinc/user       generated (never generated)\n"
    );
    // Answers reach the script byte for byte (no newline added).
    assert_eq!(
        fleet.read_string("sops/machines/zinc/public/user/name"),
        "alice"
    );
    let hash = {
        use std::process::Command;
        let out = Command::new("bash")
            .args(["-c", "printf hunter2 | sha256sum | cut -c1-8"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        fleet.read_string("sops/machines/cinnabar/public/wifi/conf"),
        format!("ssid=home net\npsk-hash={hash}")
    );
}

#[test]
fn a_persisted_answer_is_stored_as_a_secret_and_reused_until_regenerate() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    fleet
        .generate(&[
            "--prompt",
            "wifi.psk=hunter2",
            "--prompt",
            "wifi.ssid=home",
            "--prompt",
            "user.name=alice",
        ])
        .ok();
    // Stored as the generator's secret file of the same name, sealed.
    let sealed = fleet.read_string("sops/machines/cinnabar/secrets/wifi/psk");
    assert!(!sealed.contains("hunter2"));
    assert_eq!(
        fleet.run(&["get", "cinnabar", "wifi/psk"]).ok().stdout,
        "hunter2"
    );
    let conf = fleet.read_string("sops/machines/cinnabar/public/wifi/conf");

    // Forced again, only the prompt that is not persisted needs an answer.
    let out = fleet.generate(&["--generator", "wifi"]).code(2);
    assert_eq!(
        out.stderr,
        "error: no terminal to ask on, and these prompts have no answer: cinnabar/wifi.ssid; \
         pass --prompt GEN.PROMPT=VALUE or --prompt-file FILE.json\n"
    );
    let out = fleet
        .generate(&["--generator", "wifi", "--prompt", "wifi.ssid=home"])
        .ok();
    assert_eq!(
        out.stdout,
        "generator      result\ncinnabar/wifi  generated (--generator)\n"
    );
    assert_eq!(
        fleet.read_string("sops/machines/cinnabar/public/wifi/conf"),
        conf
    );
    assert_eq!(
        fleet.run(&["get", "cinnabar", "wifi/psk"]).ok().stdout,
        "hunter2"
    );

    // --regenerate asks again, before anything runs.
    let before = fleet.tree();
    let out = fleet
        .generate(&[
            "--regenerate",
            "--machine",
            "cinnabar",
            "--prompt",
            "wifi.ssid=home",
        ])
        .code(2);
    assert_eq!(
        out.stderr,
        "error: no terminal to ask on, and these prompts have no answer: cinnabar/wifi.psk; \
         pass --prompt GEN.PROMPT=VALUE or --prompt-file FILE.json\n"
    );
    assert_same_tree(&before, &fleet.tree());
    fleet
        .generate(&[
            "--regenerate",
            "--machine",
            "cinnabar",
            "--prompt",
            "wifi.ssid=home",
            "--prompt",
            "wifi.psk=correct horse",
        ])
        .ok();
    assert_eq!(
        fleet.run(&["get", "cinnabar", "wifi/psk"]).ok().stdout,
        "correct horse"
    );
    assert_ne!(
        fleet.read_string("sops/machines/cinnabar/public/wifi/conf"),
        conf
    );
}

#[test]
fn malformed_answers_are_usage_errors() {
    let fleet = Fleet::new(manifest());
    let out = fleet.generate(&["--prompt", "wifi.ssid"]).code(2);
    assert_eq!(
        out.stderr,
        "error: --prompt \"wifi.ssid\": expected GEN.PROMPT=VALUE\n"
    );
    let answers = fleet.root().join("answers.json");
    std::fs::write(&answers, r#"{"wifi.psk": 7}"#).unwrap();
    let out = fleet
        .generate(&["--prompt-file", answers.to_str().unwrap()])
        .code(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: {}: wifi.psk: expected a string\n",
            answers.display()
        )
    );
}
