//! Prompts asked on a terminal (a pseudo-terminal made by util-linux `script`):
//! a line prompt echoes, a hidden prompt does not and is asked twice.

mod engine;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{json, one_machine, require, Fleet};

fn fleet() -> Fleet {
    Fleet::new(one_machine(
        "m",
        json!({ "pw": {
            "prompts": { "secret": { "description": "The password", "type": "hidden" }, "name": {} },
            "files": { "out": { "secret": true } },
            "script": "cat \"$prompts/secret\" \"$prompts/name\" > \"$out/out\""
        }}),
    ))
}

/// Runs `vars generate --no-sandbox` on a terminal; each answer is typed once
/// its question has appeared the given number of times.
fn on_terminal(fleet: &Fleet, script: &[(&str, usize, &str)]) -> String {
    let vars = env!("CARGO_BIN_EXE_vars");
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{vars} generate --no-sandbox --jobs 1"),
        "/dev/null",
    ]);
    engine::hermetic(&mut cmd, &fleet.root().join("home"));
    let mut child = cmd
        .current_dir(fleet.root().join("repo"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    for (question, times, answer) in script {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = seen.lock().unwrap().replace('\r', "");
            if text.matches(question).count() >= *times {
                break;
            }
            assert!(Instant::now() < deadline, "no {question:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        writeln!(stdin, "{answer}").unwrap();
    }
    drop(stdin);
    child.wait().unwrap();
    reader.join().unwrap();
    let text = seen.lock().unwrap().replace('\r', "");
    text
}

#[test]
fn hidden_prompts_are_not_echoed_and_are_asked_twice() {
    if !require("script") {
        return;
    }
    let fleet = fleet();
    let transcript = on_terminal(
        &fleet,
        &[
            ("m/pw.name: ", 1, "alice"),
            ("(m/pw.secret): ", 1, "hunter2"),
            ("(m/pw.secret), again: ", 1, "hunter2"),
        ],
    );
    assert!(transcript.contains("m/pw.name: alice\n"), "{transcript}");
    assert!(
        transcript.contains("The password (m/pw.secret): \n"),
        "{transcript}"
    );
    assert!(
        transcript.contains("The password (m/pw.secret), again: \n"),
        "{transcript}"
    );
    assert!(
        !transcript.contains("hunter2"),
        "a hidden answer was echoed:\n{transcript}"
    );
    assert!(
        transcript.contains("m/pw       generated (never generated)"),
        "{transcript}"
    );
    assert_eq!(
        fleet.run(&["get", "m", "pw/out"]).ok().stdout,
        "hunter2alice"
    );
}

#[test]
fn differing_hidden_answers_are_asked_again() {
    if !require("script") {
        return;
    }
    let fleet = fleet();
    let transcript = on_terminal(
        &fleet,
        &[
            ("m/pw.name: ", 1, "bob"),
            ("(m/pw.secret): ", 1, "one"),
            ("(m/pw.secret), again: ", 1, "two"),
            ("(m/pw.secret): ", 2, "three"),
            ("(m/pw.secret), again: ", 2, "three"),
        ],
    );
    assert!(
        transcript.contains("the two answers differ; try again"),
        "{transcript}"
    );
    assert_eq!(fleet.run(&["get", "m", "pw/out"]).ok().stdout, "threebob");
}
