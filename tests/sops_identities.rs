//! Identities are found as sops finds them: SOPS_AGE_KEY, SOPS_AGE_KEY_FILE,
//! SOPS_AGE_KEY_CMD, $XDG_CONFIG_HOME/sops/age/keys.txt (default
//! ~/.config/sops/age/keys.txt), SOPS_AGE_SSH_PRIVATE_KEY_FILE (default
//! ~/.ssh/id_ed25519), plus --identity; and key files parse as age does.

mod common;

use std::io::Read;

use common::{read_vector, vector, yaml, Test};
use vars::keys::{Identities, Identity};

/// The sops-3.11 binary vector and what it holds.
const FILE: &str = "sops-3.11/enc.bin.json";
const KEY: &str = "sops-3.11/key.txt";

fn plain() -> Vec<u8> {
    read_vector("sops-3.11/plain.bin")
}

/// `vars sops decrypt --input-type binary secret` with a copy of FILE.
fn decrypt() -> Test {
    Test::new()
        .vector(FILE, "secret")
        .args(["sops", "decrypt", "--input-type", "binary", "secret"])
}

#[test]
fn identity_flag() {
    Test::new()
        .vector(FILE, "secret")
        .args(["sops", "decrypt", "--input-type", "binary", "--identity"])
        .arg(vector(KEY))
        .arg("secret")
        .stdout(plain())
        .run();
}

#[test]
fn identity_flag_repeated_uses_any_of_them() {
    Test::new()
        .vector(FILE, "secret")
        .args(["sops", "decrypt", "--input-type", "binary"])
        .arg("--identity")
        .arg(vector("rops/rops-mock-age-key.txt"))
        .arg("--identity")
        .arg(vector(KEY))
        .arg("secret")
        .stdout(plain())
        .run();
}

#[test]
fn sops_age_key_file() {
    decrypt()
        .env("SOPS_AGE_KEY_FILE", vector(KEY))
        .stdout(plain())
        .run();
}

#[test]
fn sops_age_key() {
    let key = String::from_utf8(read_vector(KEY)).unwrap();
    decrypt().env("SOPS_AGE_KEY", key).stdout(plain()).run();
}

#[test]
fn sops_age_key_cmd() {
    decrypt()
        .env(
            "SOPS_AGE_KEY_CMD",
            format!("cat '{}'", vector(KEY).display()),
        )
        .stdout(plain())
        .run();
}

#[test]
fn sops_age_key_cmd_that_fails() {
    decrypt()
        .env("SOPS_AGE_KEY_CMD", "exit 3")
        .status(1)
        .stderr("error: SOPS_AGE_KEY_CMD failed: \"exit 3\" exited with exit status: 3\n")
        .run();
}

#[test]
fn keys_txt_under_home() {
    decrypt()
        .vector(KEY, "home/.config/sops/age/keys.txt")
        .stdout(plain())
        .run();
}

#[test]
fn keys_txt_under_xdg_config_home() {
    let test = decrypt().vector(KEY, "xdg/sops/age/keys.txt");
    let xdg = test.dir().join("xdg");
    test.env("XDG_CONFIG_HOME", xdg).stdout(plain()).run();
}

#[test]
fn sops_age_ssh_private_key_file() {
    Test::new()
        .vector("sops-3.11/enc.ssh-ed25519-recipient.yaml", "enc.yaml")
        .env(
            "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
            vector("sops-3.11/mockSshIdentity"),
        )
        .args(["sops", "decrypt", "enc.yaml"])
        .stdout("ssh_secret: hunter2\n")
        .run();
}

#[test]
fn default_ssh_key_in_home() {
    Test::new()
        .vector("sops-3.11/enc.ssh-ed25519-recipient.yaml", "enc.yaml")
        .vector("sops-3.11/mockSshIdentity", "home/.ssh/id_ed25519")
        .args(["sops", "decrypt", "enc.yaml"])
        .stdout("ssh_secret: hunter2\n")
        .run();
}

#[test]
fn host_key_opens_a_file_for_its_ssh_to_age_recipient() {
    // As a host does with /etc/ssh/ssh_host_ed25519_key.
    let out = Test::new()
        .vector("sops-nix/secrets.yaml", "secrets.yaml")
        .env(
            "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
            vector("sops-nix/ssh-ed25519-key"),
        )
        .args(["sops", "decrypt", "secrets.yaml"])
        .stdout_any()
        .run();
    assert_eq!(
        yaml(&out.stdout),
        yaml(&read_vector("expected/sops-nix_secrets.yaml.plain"))
    );
}

#[test]
fn a_bad_identity_file_names_the_file_and_line() {
    decrypt()
        .write("bad.txt", "# comment\nAGE-SECRET-KEY-1NOTAKEY\n")
        .args(["--identity", "bad.txt"])
        .status(1)
        .stderr("error: --identity bad.txt: line 2: not an age identity (AGE-SECRET-KEY-1… or AGE-PLUGIN-…) or an OpenSSH private key\n")
        .run();
}

// ------------------------------------------------------------ the library

fn identities(rel: &str) -> Identities {
    let mut ids = Identities::default();
    ids.add_file(rel, &vector(rel)).unwrap();
    ids
}

fn public_keys(ids: &Identities) -> Vec<String> {
    ids.keys
        .iter()
        .map(|(_, id)| id.to_recipient().unwrap().to_string())
        .collect()
}

#[test]
fn a_key_file_with_two_identities() {
    // getsops/sops v3.7.3 age/keys.txt: comments, two keys, no final newline.
    let ids = identities("getsops-sops/age-keys.v3.7.3.txt");
    assert_eq!(
        public_keys(&ids),
        [
            "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw",
            "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep",
        ]
    );
}

#[test]
fn an_openssh_ed25519_key_is_two_identities() {
    // The ssh-ed25519 identity itself, and the X25519 one ssh-to-age derives.
    let ids = identities("sops-nix/ssh-ed25519-key");
    let derived = identities("sops-nix/ssh-ed25519-key.ssh-to-age.txt");
    let ssh_pub = String::from_utf8(read_vector("sops-nix/ssh-ed25519-key.pub")).unwrap();
    let ssh_pub: Vec<&str> = ssh_pub.split_whitespace().take(2).collect();
    assert_eq!(
        public_keys(&ids),
        [public_keys(&derived)[0].clone(), ssh_pub.join(" ")]
    );
}

/// Opens an armored age file with vars' identities, through the age crate.
fn age_decrypt(file: &str, ids: &Identities) -> Vec<u8> {
    let armored = read_vector(file);
    let reader = age::armor::ArmoredReader::new(armored.as_slice());
    let decryptor = age::Decryptor::new(reader).unwrap();
    let dyn_ids = ids.keys.iter().map(|(_, id)| match id {
        Identity::X25519(x) => x as &dyn age::Identity,
        Identity::Ssh(s) => s as &dyn age::Identity,
        Identity::Plugin(_) => unreachable!(),
    });
    let mut out = Vec::new();
    decryptor
        .decrypt(dyn_ids)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn getsops_mock_x25519_file() {
    let ids = identities("getsops-sops/mockIdentity.txt");
    assert_eq!(
        age_decrypt("getsops-sops/mockEncryptedKey.age", &ids),
        b"data"
    );
}

#[test]
fn getsops_mock_ssh_file() {
    let ids = identities("getsops-sops/mockSshIdentity");
    assert_eq!(
        age_decrypt("getsops-sops/mockEncryptedSshKey.age", &ids),
        b"data"
    );
}

#[test]
fn the_real_age_opens_the_getsops_mock_files_too() {
    if !common::require("age") {
        return;
    }
    for (file, key) in [
        ("mockEncryptedKey.age", "mockIdentity.txt"),
        ("mockEncryptedSshKey.age", "mockSshIdentity"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = vector(&format!("getsops-sops/{key}"));
        let file = vector(&format!("getsops-sops/{file}"));
        let out = common::tool(
            "age",
            &["-d", "-i", key.to_str().unwrap(), file.to_str().unwrap()],
            dir.path(),
            &[],
            b"",
        );
        assert_eq!(out, b"data");
    }
}
