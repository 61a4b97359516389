//! Bad input: each case exits non-zero, prints nothing on stdout and one exact
//! message on stderr.

mod common;

use common::{read_vector, vector, Test};

const KEY: &str = "sops-3.11/key.txt";
const RECIPIENT: &str = "age1zz43mkmhvn4gl2f44usralgyg5x5drukmr7sfzsce50gtp5m8ywq8lg2yd";

/// `vars ARGS` fails with exit status 1 and exactly `stderr`.
fn fails(test: Test, stderr: &str) {
    test.status(1).stdout("").stderr(stderr).run();
}

fn decrypt(file: &str) -> Test {
    Test::new()
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg(file)
}

// ------------------------------------------------------------ not a sops file

#[test]
fn plain_json_is_not_a_sops_file() {
    fails(
        decrypt("file.json").write("file.json", r#"{"a": 1}"#),
        "error: not a sops file: file.json: it has no sops metadata section\n",
    );
}

#[test]
fn plain_yaml_is_not_a_sops_file() {
    fails(
        decrypt("file.yaml").write("file.yaml", "a: 1\nb: [2]\n"),
        "error: not a sops file: file.yaml: it has no sops metadata section\n",
    );
}

#[test]
fn random_bytes_are_not_a_sops_file() {
    fails(
        decrypt("secret").write("secret", b"\x00\xffgarbage\n"),
        "error: not a sops file: secret: not a sops binary file (JSON envelope): expected value at line 1 column 1\n",
    );
}

#[test]
fn a_json_file_is_not_a_binary_sops_file() {
    // A sops JSON document read as binary: more than "data" beside "sops".
    fails(
        decrypt("secret")
            .vector("sops-3.11/enc.json", "secret")
            .args(["--input-type", "binary"]),
        "error: not a sops file: secret: a binary sops file holds exactly one key, \"data\", beside \"sops\"\n",
    );
}

#[test]
fn a_sops_section_without_a_mac() {
    let text = String::from_utf8(read_vector("sops-3.11/enc.bin.json")).unwrap();
    let mac = text.lines().find(|l| l.contains("\"mac\":")).unwrap();
    fails(
        decrypt("secret").write("secret", text.replace(&format!("{mac}\n"), "")),
        "error: not a sops file: secret: sops.mac is missing\n",
    );
}

#[test]
fn a_sops_file_without_age_recipients() {
    // sops-nix's file with its two age recipients removed: PGP only.
    let text = String::from_utf8(read_vector("sops-nix/secrets.yaml")).unwrap();
    let start = text.find("    age:\n").unwrap();
    let end = text.find("    lastmodified:").unwrap();
    let pgp_only = format!("{}{}", &text[..start], &text[end..]);
    fails(
        decrypt("secrets.yaml").write("secrets.yaml", pgp_only),
        "error: not a sops file: secrets.yaml: no age recipients: the data key is only wrapped for \
         pgp 7FB89715AADA920D65D25E63F9BA9DEBD03F57C0, pgp 2504791468B153B8A3963CC97BA53D1919C5DFD4 \
         (vars supports age)\n",
    );
}

#[test]
fn a_missing_file() {
    fails(
        decrypt("missing.yaml"),
        "error: missing.yaml: No such file or directory (os error 2)\n",
    );
}

#[test]
fn invalid_yaml() {
    fails(
        decrypt("bad.yaml").write("bad.yaml", "a: [\n"),
        "error: bad.yaml: invalid yaml: while parsing a node, did not find expected node content at byte 5 line 2 column 1\n",
    );
}

// ------------------------------------------------------------ no matching identity

#[test]
fn no_identity_at_all() {
    let test = Test::new()
        .vector(
            "clan-core/service-dummy-test-peer1-a-secret.binary.json",
            "secret",
        )
        .args(["sops", "decrypt", "secret"]);
    let stderr = format!(
        "error: no identity matches secret: it is encrypted to \
         age12w2ld4vxfyf3hdq2d8la4cu0tye4pq97egvv3me4wary7xkdnq2snh0zx2, \
         age1qm0p4vf9jvcnn43s6l4prk8zn6cx0ep9gzvevxecv729xz540v8qa742eg; \
         identities tried: SOPS_AGE_KEY (unset), {}/home/.config/sops/age/keys.txt (not found). \
         Pass --identity FILE or set SOPS_AGE_KEY_FILE\n",
        test.dir().display()
    );
    fails(test, &stderr);
}

#[test]
fn no_identity_matches_lists_every_source_tried() {
    let test = Test::new()
        .vector("sops-3.11/enc.bin.json", "secret")
        .vector(
            "rops/rops-mock-age-key.txt",
            "home/.config/sops/age/keys.txt",
        )
        .vector("sops-nix/ssh-ed25519-key", "home/.ssh/id_ed25519")
        .env(
            "SOPS_AGE_KEY",
            String::from_utf8(read_vector("getsops-sops/mockIdentity.txt")).unwrap(),
        )
        .env("SOPS_AGE_KEY_FILE", vector("sops-nix/age-keys.txt"))
        .env(
            "SOPS_AGE_KEY_CMD",
            "echo AGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7",
        )
        .args(["sops", "decrypt", "--identity"])
        .arg(vector("getsops-sops/mockSshIdentity"))
        .arg("secret");
    let stderr = format!(
        "error: no identity matches secret: it is encrypted to {RECIPIENT}; identities tried: \
         --identity {}, SOPS_AGE_KEY, SOPS_AGE_KEY_FILE={}, \
         SOPS_AGE_KEY_CMD=echo AGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7, \
         {home}/.config/sops/age/keys.txt, {home}/.ssh/id_ed25519. \
         Pass --identity FILE or set SOPS_AGE_KEY_FILE\n",
        vector("getsops-sops/mockSshIdentity").display(),
        vector("sops-nix/age-keys.txt").display(),
        home = test.home().display(),
    );
    fails(test, &stderr);
}

#[test]
fn no_identity_matches_with_the_ssh_key_file_variable() {
    let test = Test::new()
        .vector("sops-3.11/enc.bin.json", "secret")
        .env(
            "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
            vector("sops-nix/ssh-ed25519-key"),
        )
        .args(["sops", "decrypt", "secret"]);
    let stderr = format!(
        "error: no identity matches secret: it is encrypted to {RECIPIENT}; identities tried: \
         SOPS_AGE_KEY (unset), {}/.config/sops/age/keys.txt (not found), \
         SOPS_AGE_SSH_PRIVATE_KEY_FILE={}. Pass --identity FILE or set SOPS_AGE_KEY_FILE\n",
        test.home().display(),
        vector("sops-nix/ssh-ed25519-key").display(),
    );
    fails(test, &stderr);
}

#[test]
fn an_identity_file_that_does_not_exist() {
    fails(
        Test::new()
            .vector("sops-3.11/enc.bin.json", "secret")
            .args(["sops", "decrypt", "--identity", "nokey.txt", "secret"]),
        "error: nokey.txt: No such file or directory (os error 2)\n",
    );
}

// ------------------------------------------------------------ store types

#[test]
fn unknown_store_type_to_decrypt() {
    fails(
        decrypt("secret")
            .vector("sops-3.11/enc.bin.json", "secret")
            .args(["--input-type", "toml"]),
        "error: unknown store type \"toml\": expected binary, yaml, json, dotenv or ini\n",
    );
}

#[test]
fn unknown_store_type_to_encrypt() {
    fails(
        Test::new()
            .write("plain.toml", "a = 1\n")
            .args([
                "sops",
                "encrypt",
                "--age",
                RECIPIENT,
                "--input-type",
                "toml",
            ])
            .arg("plain.toml"),
        "error: unknown store type \"toml\": expected binary, yaml, json, dotenv or ini\n",
    );
}

#[test]
fn dotenv_is_read_but_not_written() {
    fails(
        Test::new()
            .vector("sops-3.11/plain.env", "plain.env")
            .args(["sops", "encrypt", "--age", RECIPIENT, "plain.env"]),
        "error: plain.env: vars reads dotenv files but does not write them; use yaml or json\n",
    );
}

#[test]
fn ini_is_read_but_not_written() {
    fails(
        Test::new()
            .vector("sops-3.11/plain.ini", "plain.ini")
            .args(["sops", "encrypt", "--age", RECIPIENT, "plain.ini"]),
        "error: plain.ini: vars reads ini files but does not write them; use yaml or json\n",
    );
}

// ------------------------------------------------------------ encrypt

#[test]
fn encrypting_an_encrypted_file() {
    fails(
        Test::new()
            .vector("sops-3.11/enc.yaml", "enc.yaml")
            .args(["sops", "encrypt", "--age", RECIPIENT, "enc.yaml"]),
        "error: enc.yaml is already encrypted with sops\n",
    );
}

#[test]
fn encrypting_to_an_invalid_recipient() {
    fails(
        Test::new()
            .write("plain.yaml", "a: 1\n")
            .args(["sops", "encrypt", "--age", "age1nope", "plain.yaml"]),
        "error: invalid recipient \"age1nope\": expected an age1… key, an ssh-ed25519/ssh-rsa public key or an age plugin recipient\n",
    );
}

#[test]
fn encrypting_a_list() {
    fails(
        Test::new().write("list.json", "[1, 2]\n").args([
            "sops",
            "encrypt",
            "--age",
            RECIPIENT,
            "list.json",
        ]),
        "error: list.json: invalid json: the top level must be a mapping\n",
    );
}

// ------------------------------------------------------------ --extract

#[test]
fn extract_of_a_missing_key() {
    fails(
        decrypt("enc.yaml")
            .vector("sops-3.11/enc.yaml", "enc.yaml")
            .args(["--extract", r#"["nested"]["nope"]"#]),
        "error: enc.yaml: --extract [\"nested\"][\"nope\"]: no such key\n",
    );
}

#[test]
fn extract_past_the_end_of_a_list() {
    fails(
        decrypt("enc.yaml")
            .vector("sops-3.11/enc.yaml", "enc.yaml")
            .args(["--extract", r#"["list"][2]"#]),
        "error: enc.yaml: --extract [\"list\"][2]: no such key\n",
    );
}

#[test]
fn extract_of_a_subtree_prints_it_in_the_file_format() {
    decrypt("enc.yaml")
        .vector("sops-3.11/enc.yaml", "enc.yaml")
        .args(["--extract", r#"["nested"]"#])
        .stdout("# nested comment\ninner: x\ndeeper:\n    k: v\n")
        .run();
}

// ------------------------------------------------------------ key.json

/// `read_key_json` of `text` saved as `sops/users/alice/key.json` fails with `message`
/// (the file's path, a colon, then `message`).
fn bad_key_json(text: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sops/users/alice/key.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    let err = vars::keys::read_key_json(&path).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: {message}", path.display()));
}

#[test]
fn key_json_that_is_not_json() {
    bad_key_json(
        "{publickey: age1}",
        "invalid JSON: key must be a string at line 1 column 2",
    );
}

#[test]
fn key_json_without_publickey() {
    bad_key_json(r#"{"type": "age"}"#, "publickey: missing field");
}

#[test]
fn key_json_with_a_bad_publickey() {
    bad_key_json(
        r#"{"publickey": "age1nope", "type": "age"}"#,
        "publickey: not a valid age public key: \"age1nope\"",
    );
}

#[test]
fn key_json_with_an_ssh_key_typed_age() {
    bad_key_json(
        &format!(
            r#"{{"publickey": "{}", "type": "age"}}"#,
            String::from_utf8(read_vector("sops-nix/ssh-ed25519-key.pub"))
                .unwrap()
                .trim()
        ),
        &format!(
            "publickey: not a valid age public key: {:?}",
            String::from_utf8(read_vector("sops-nix/ssh-ed25519-key.pub"))
                .unwrap()
                .trim()
        ),
    );
}

#[test]
fn key_json_with_an_unknown_type() {
    bad_key_json(
        &format!(r#"{{"publickey": "{RECIPIENT}", "type": "pgp"}}"#),
        "type: expected \"age\" or \"ssh\", got \"pgp\"",
    );
}

#[test]
fn key_json_with_an_unknown_field() {
    bad_key_json(
        &format!(r#"{{"publickey": "{RECIPIENT}", "type": "age", "name": "alice"}}"#),
        "name: unknown field, expected \"publickey\" and \"type\"",
    );
}

#[test]
fn key_json_list_names_the_entry() {
    bad_key_json(
        &format!(r#"[{{"publickey": "{RECIPIENT}", "type": "age"}}, {{"publickey": 7}}]"#),
        "[1].publickey: expected a string",
    );
}

#[test]
fn key_json_empty_list() {
    bad_key_json("[]", "the list of keys is empty");
}

#[test]
fn key_json_that_is_a_string() {
    bad_key_json(
        &format!("\"{RECIPIENT}\""),
        "expected an object {\"publickey\": ..., \"type\": \"age\"} or a list of them",
    );
}

#[test]
fn key_json_good_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    let ssh = String::from_utf8(read_vector("sops-nix/ssh-ed25519-key.pub")).unwrap();
    let ssh = ssh.trim();
    std::fs::write(
        &path,
        format!(
            r#"[{{"publickey": "{RECIPIENT}", "type": "age"}}, {{"publickey": "{ssh}", "type": "ssh"}}]"#
        ),
    )
    .unwrap();
    let keys: Vec<String> = vars::keys::read_key_json(&path)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let ssh_no_comment: Vec<&str> = ssh.split_whitespace().take(2).collect();
    assert_eq!(keys, [RECIPIENT.to_string(), ssh_no_comment.join(" ")]);
    // `type` defaults to age.
    std::fs::write(&path, format!(r#"{{"publickey": "{RECIPIENT}"}}"#)).unwrap();
    assert_eq!(vars::keys::read_key_json(&path).unwrap().len(), 1);
}

#[test]
fn key_json_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    let err = vars::keys::read_key_json(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: No such file or directory (os error 2)", path.display())
    );
}
