//! `vars keygen`: records the admin's public key in sops/users/NAME/key.json,
//! creating an age key in ~/.config/sops/age/keys.txt (0600, never overwritten)
//! when no identity exists.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{age_public_key, json, read_vector, vector, Test};

/// key.json as the JSON value vars must write for `recipient`.
fn key_json(recipient: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({"publickey": recipient, "type": kind})
}

fn read_json(path: &Path) -> serde_json::Value {
    json(&std::fs::read(path).unwrap())
}

#[test]
fn creates_a_key_when_none_exists() {
    let test = Test::new();
    let keys_txt = test.home().join(".config/sops/age/keys.txt");
    let out = test
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr_regex(&format!(
            "^created a new age key in {}\nrepo/sops/users/alice/key.json: age1[02-9ac-hj-np-z]{{58}}\n$",
            regex::escape(&keys_txt.display().to_string())
        ))
        .run();
    let mode = std::fs::metadata(&keys_txt).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "keys.txt mode {mode:o}");
    let recipient = age_public_key(&keys_txt);
    assert_eq!(
        String::from_utf8(out.stderr.clone()).unwrap(),
        format!(
            "created a new age key in {}\nrepo/sops/users/alice/key.json: {recipient}\n",
            keys_txt.display()
        )
    );
    assert_eq!(
        read_json(&out.dir().join("repo/sops/users/alice/key.json")),
        key_json(&recipient, "age")
    );
}

#[test]
fn the_created_key_is_a_usable_age_key_file() {
    // It opens what is sealed to the recorded key, through sops' default location.
    let out = Test::new()
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr_any()
        .run();
    let recipient = read_json(&out.dir().join("repo/sops/users/alice/key.json"))["publickey"]
        .as_str()
        .unwrap()
        .to_string();
    let out = Test::in_dir(out.dir())
        .write("plain.bin", b"for alice")
        .args(["sops", "encrypt", "--age", &recipient, "plain.bin"])
        .stdout_any()
        .run();
    Test::in_dir(out.dir())
        .write("secret", &out.stdout)
        .args(["sops", "decrypt", "secret"])
        .stdout("for alice")
        .run();
}

#[test]
fn a_second_run_reuses_the_key() {
    let first = Test::new()
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr_any()
        .run();
    let keys_txt = first.dir().join("home/.config/sops/age/keys.txt");
    let before = std::fs::read(&keys_txt).unwrap();
    let recipient = age_public_key(&keys_txt);
    Test::in_dir(first.dir())
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr(format!("repo/sops/users/alice/key.json: {recipient}\n"))
        .run();
    assert_eq!(std::fs::read(&keys_txt).unwrap(), before);
    assert_eq!(
        read_json(&first.dir().join("repo/sops/users/alice/key.json")),
        key_json(&recipient, "age")
    );
}

#[test]
fn an_existing_keys_txt_is_used() {
    let test = Test::new().vector("sops-3.11/key.txt", "home/.config/sops/age/keys.txt");
    let recipient = age_public_key(&vector("sops-3.11/key.txt"));
    let out = test
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr(format!("repo/sops/users/alice/key.json: {recipient}\n"))
        .run();
    assert_eq!(
        std::fs::read(out.dir().join("home/.config/sops/age/keys.txt")).unwrap(),
        read_vector("sops-3.11/key.txt")
    );
}

#[test]
fn sops_age_key_file_is_used_and_nothing_is_created() {
    let recipient = age_public_key(&vector("sops-3.11/key.txt"));
    let out = Test::new()
        .env("SOPS_AGE_KEY_FILE", vector("sops-3.11/key.txt"))
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .stderr(format!("repo/sops/users/alice/key.json: {recipient}\n"))
        .run();
    assert!(!out.dir().join("home/.config").exists());
}

#[test]
fn an_empty_keys_txt_is_never_overwritten() {
    let test = Test::new().write("home/.config/sops/age/keys.txt", "");
    let keys_txt = test.home().join(".config/sops/age/keys.txt");
    let out = test
        .args(["keygen", "--user", "alice", "--repo", "repo"])
        .status(1)
        .stderr(format!(
            "error: {} already exists; not overwriting it\n",
            keys_txt.display()
        ))
        .run();
    assert_eq!(std::fs::read(&keys_txt).unwrap(), b"");
    assert!(!out.dir().join("repo/sops/users/alice/key.json").exists());
}

#[test]
fn with_an_ssh_ed25519_identity_the_key_comes_from_it() {
    // The recorded key is the X25519 key ssh-to-age derives from the ssh key, so
    // sops-nix and vars open files sealed to it with the ssh key alone.
    let derived = age_public_key(&vector("sops-nix/ssh-ed25519-key.ssh-to-age.txt"));
    let out = Test::new()
        .args(["keygen", "--user", "carol", "--repo", "repo", "--identity"])
        .arg(vector("sops-nix/ssh-ed25519-key"))
        .stderr(format!("repo/sops/users/carol/key.json: {derived}\n"))
        .run();
    assert_eq!(
        read_json(&out.dir().join("repo/sops/users/carol/key.json")),
        key_json(&derived, "age")
    );
    assert!(!out.dir().join("home/.config").exists());
}

#[test]
fn user_defaults_to_dollar_user() {
    let recipient = age_public_key(&vector("sops-3.11/key.txt"));
    Test::new()
        .env("USER", "dave")
        .args(["keygen", "--repo", "repo", "--identity"])
        .arg(vector("sops-3.11/key.txt"))
        .stderr(format!("repo/sops/users/dave/key.json: {recipient}\n"))
        .run();
}

#[test]
fn repo_defaults_to_the_current_directory() {
    let recipient = age_public_key(&vector("sops-3.11/key.txt"));
    let out = Test::new()
        .args(["keygen", "--user", "alice", "--identity"])
        .arg(vector("sops-3.11/key.txt"))
        .stderr(format!("./sops/users/alice/key.json: {recipient}\n"))
        .run();
    assert!(out.dir().join("sops/users/alice/key.json").exists());
}

#[test]
fn an_invalid_user_name() {
    Test::new()
        .args(["keygen", "--user", "a/b", "--repo", "repo"])
        .status(2)
        .stderr("error: invalid user name \"a/b\"\n")
        .run();
}

#[test]
fn the_written_key_json_reads_back() {
    let out = Test::new()
        .args(["keygen", "--user", "alice", "--repo", "repo", "--identity"])
        .arg(vector("sops-3.11/key.txt"))
        .stderr_any()
        .run();
    let keys =
        vars::keys::read_key_json(&out.dir().join("repo/sops/users/alice/key.json")).unwrap();
    assert_eq!(
        keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [age_public_key(&vector("sops-3.11/key.txt"))]
    );
}
