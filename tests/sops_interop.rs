//! Interoperability with the real tools: what `vars sops encrypt` writes, the
//! real `sops --decrypt` opens, and what the real `sops --encrypt` writes (one
//! or two recipients, ssh keys, Shamir key groups), `vars sops decrypt` opens.
//! The real `age -d` opens the data-key stanza vars writes.
//!
//! Needs `sops` (3.11) and `age` on PATH: skipped without them, failing under CI=true.

mod common;

use std::path::{Path, PathBuf};

use common::{json, require, tool, tool_output, yaml, Test};
use rand::RngCore;
use tempfile::TempDir;

/// A working directory shared by the commands of one test.
struct Dir(TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::Builder::new()
            .prefix("vars-interop-")
            .tempdir()
            .unwrap())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.path(rel), bytes).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }

    /// A new age key file `rel`; returns its recipient.
    fn age_key(&self, rel: &str) -> String {
        let (id, text) = vars::keys::generate_identity();
        self.write(rel, format!("{}\n", text.as_str()));
        id.to_public().to_string()
    }

    /// A new OpenSSH key pair `rel`, `rel.pub` made by ssh-keygen; returns the public key line.
    fn ssh_key(&self, rel: &str, kind: &str) -> String {
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "tester@host", "-f", rel];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        tool("ssh-keygen", &args, self.0.path(), &[], b"");
        String::from_utf8(self.read(&format!("{rel}.pub")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `vars ARGS`, which must succeed silently; returns stdout.
    fn vars(&self, args: &[&str]) -> Vec<u8> {
        Test::in_dir(self.0.path())
            .args(args)
            .stdout_any()
            .run()
            .stdout
    }

    /// `vars ARGS > out`.
    fn vars_to(&self, out: &str, args: &[&str]) {
        let bytes = self.vars(args);
        self.write(out, bytes);
    }

    /// `sops ARGS` with the environment `env` (paths relative to the directory).
    fn sops(&self, args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
        let env: Vec<(&str, PathBuf)> = env.iter().map(|(k, v)| (*k, self.path(v))).collect();
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        tool("sops", args, self.0.path(), &env, b"")
    }

    /// `sops ARGS > out`.
    fn sops_to(&self, out: &str, args: &[&str], env: &[(&str, &str)]) {
        let bytes = self.sops(args, env);
        self.write(out, bytes);
    }
}

/// Random bytes with NULs in them, not valid UTF-8.
fn binary_plaintext() -> Vec<u8> {
    let mut bytes = vec![0u8; 4096];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.splice(0..0, *b"\0\xff\xfe not utf-8 \0");
    bytes.extend_from_slice(b"\0\n\0");
    bytes
}

/// A nested YAML document: comments, lists, maps in lists, ints, floats, bools,
/// nulls, timestamps, an empty string, unicode, a multi-line string, an
/// `_unencrypted` key.
const YAML_DOC: &str = r#"# top comment
name: vars
count: 42
negative: -7
ratio: 0.25
big: 12345678901234
enabled: true
disabled: false
nothing: null
empty: ""
when: 2024-01-02T03:04:05Z
also_when: 2021-09-30T19:49:41.5+02:00
quoted: "a: b # not a comment"
number_string: "42"
unicode: "héllo ✓ 日本"
multi: |
  line one
  line two
list:
  - one   # inline comment
  - 2
  - 3.5
  - true
  - nested: map
    other: [x, y]
nested:
  # nested comment
  deeper:
    key: value
    list_of_lists:
      - [1, 2]
      - []
    empty_map: {}
plain_unencrypted: visible
"#;

/// A JSON document: every JSON type, nested, with characters Go escapes.
const JSON_DOC: &str = r#"{
  "name": "vars",
  "count": 42,
  "big": 12345678901234,
  "ratio": 0.25,
  "huge": 1e+21,
  "tiny": 1e-7,
  "small": 1.5e-10,
  "negative": -7,
  "yes": true,
  "no": false,
  "nothing": null,
  "empty": "",
  "list": [1, "two", 3.5, false, null, {"k": "v"}, [1, 2], []],
  "nested": {"deeper": {"key": "value", "escaped": "héllo ✓ \"q\" <&> \\ \n\t"}},
  "empty_map": {},
  "plain_unencrypted": "visible"
}
"#;

/// The comments of YAML_DOC, as sops prints them (each on a line of its own).
const YAML_DOC_COMMENTS: [&str; 3] = ["# inline comment", "# nested comment", "# top comment"];

fn comment_lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

// ------------------------------------------------------------ vars writes, sops reads

#[test]
fn sops_decrypts_a_binary_file_vars_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    let plain = binary_plaintext();
    dir.write("plain.bin", &plain);
    dir.vars_to(
        "secret",
        &[
            "sops",
            "encrypt",
            "--age",
            &r,
            "--input-type",
            "binary",
            "plain.bin",
        ],
    );
    let out = dir.sops(
        &[
            "--decrypt",
            "--input-type",
            "binary",
            "--output-type",
            "binary",
            "secret",
        ],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(out, plain);
}

#[test]
fn sops_decrypts_an_empty_binary_file_vars_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("empty", b"");
    dir.vars_to("secret", &["sops", "encrypt", "--age", &r, "empty"]);
    let out = dir.sops(
        &["--decrypt", "secret"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(out, b"");
}

#[test]
fn sops_decrypts_a_yaml_file_vars_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.yaml", YAML_DOC);
    dir.vars_to("enc.yaml", &["sops", "encrypt", "--age", &r, "plain.yaml"]);
    let out = dir.sops(
        &["--decrypt", "enc.yaml"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(yaml(&out), yaml(YAML_DOC.as_bytes()));
    assert_eq!(comment_lines(&out), YAML_DOC_COMMENTS);
}

#[test]
fn sops_decrypts_a_yaml_file_vars_wrote_with_keys_that_need_escapes() {
    // Keys stay in clear: U+2028 is a line break to YAML readers, DEL and U+FEFF
    // are refused unescaped.
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    let doc = "\"line\\u2028sep\": 1\n\"del\\x7f\": 2\n\"bom\\ufeff\": 3\n\"nel\\x85\": {\"tab\\tkey\": 4}\n";
    dir.write("plain.yaml", doc);
    dir.vars_to("enc.yaml", &["sops", "encrypt", "--age", &r, "plain.yaml"]);
    let out = dir.sops(
        &["--decrypt", "enc.yaml"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(yaml(&out), yaml(doc.as_bytes()));
    let keys: Vec<String> = yaml(&out)
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["line\u{2028}sep", "del\u{7f}", "bom\u{feff}", "nel\u{85}"]
    );
}

/// Quoted keys and values holding ` #`, with escaped quotes: not comments.
const QUOTED_HASHES: &str = r#""quote\" #key": "value \" # not a comment"
'it'' #s': 'single '' # quoted'
plain: x # a real comment
"#;

#[test]
fn sops_decrypts_quoted_text_with_hashes_vars_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.yaml", QUOTED_HASHES);
    dir.vars_to("enc.yaml", &["sops", "encrypt", "--age", &r, "plain.yaml"]);
    let out = dir.sops(
        &["--decrypt", "enc.yaml"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(yaml(&out), yaml(QUOTED_HASHES.as_bytes()));
    assert_eq!(comment_lines(&out), ["# a real comment"]);
}

#[test]
fn vars_decrypts_quoted_text_with_hashes_sops_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.yaml", QUOTED_HASHES);
    dir.sops_to("enc.yaml", &["--encrypt", "--age", &r, "plain.yaml"], &[]);
    let out = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "enc.yaml"]);
    assert_eq!(yaml(&out), yaml(QUOTED_HASHES.as_bytes()));
    assert_eq!(comment_lines(&out), ["# a real comment"]);
}

#[test]
fn sops_decrypts_a_json_file_vars_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.json", JSON_DOC);
    dir.vars_to("enc.json", &["sops", "encrypt", "--age", &r, "plain.json"]);
    let out = dir.sops(
        &["--decrypt", "enc.json"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(json(&out), json(JSON_DOC.as_bytes()));
}

#[test]
fn sops_decrypts_a_file_vars_wrote_for_two_recipients_with_either_key() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r1 = dir.age_key("one.txt");
    let r2 = dir.age_key("two.txt");
    dir.write("plain.json", JSON_DOC);
    dir.vars_to(
        "enc.json",
        &[
            "sops",
            "encrypt",
            "--age",
            &format!("{r1},{r2}"),
            "plain.json",
        ],
    );
    for key in ["one.txt", "two.txt"] {
        let out = dir.sops(&["--decrypt", "enc.json"], &[("SOPS_AGE_KEY_FILE", key)]);
        assert_eq!(json(&out), json(JSON_DOC.as_bytes()), "{key}");
    }
}

#[test]
fn sops_decrypts_a_file_vars_wrote_for_an_ssh_ed25519_recipient() {
    if !require("sops") || !require("ssh-keygen") {
        return;
    }
    let dir = Dir::new();
    let r = dir.ssh_key("id_ed25519", "ed25519");
    let plain = binary_plaintext();
    dir.write("plain.bin", &plain);
    dir.vars_to("secret", &["sops", "encrypt", "--age", &r, "plain.bin"]);
    let out = dir.sops(
        &["--decrypt", "secret"],
        &[("SOPS_AGE_SSH_PRIVATE_KEY_FILE", "id_ed25519")],
    );
    assert_eq!(out, plain);
}

#[test]
fn sops_decrypts_a_file_vars_wrote_for_an_ssh_rsa_recipient() {
    if !require("sops") || !require("ssh-keygen") {
        return;
    }
    let dir = Dir::new();
    let r = dir.ssh_key("id_rsa", "rsa");
    dir.write("plain.yaml", YAML_DOC);
    dir.vars_to("enc.yaml", &["sops", "encrypt", "--age", &r, "plain.yaml"]);
    let out = dir.sops(
        &["--decrypt", "enc.yaml"],
        &[("SOPS_AGE_SSH_PRIVATE_KEY_FILE", "id_rsa")],
    );
    assert_eq!(yaml(&out), yaml(YAML_DOC.as_bytes()));
}

// ------------------------------------------------------------ same layout as sops

/// The file with what is random masked: encrypted values, age stanzas, the time.
fn mask(text: &[u8]) -> String {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let enc = regex::Regex::new(r"ENC\[AES256_GCM,[^\]]*\]").unwrap();
    let json_stanza = regex::Regex::new(
        r"-----BEGIN AGE ENCRYPTED FILE-----[^\x22]*-----END AGE ENCRYPTED FILE-----\\n",
    )
    .unwrap();
    let yaml_stanza = regex::Regex::new(
        r"(?m)-----BEGIN AGE ENCRYPTED FILE-----\n(\s+[A-Za-z0-9+/=]+\n)+\s+-----END AGE ENCRYPTED FILE-----",
    )
    .unwrap();
    let time = regex::Regex::new(r"lastmodified\x22?: \x22?[0-9TZ:-]+\x22?").unwrap();
    let text = enc.replace_all(&text, "ENC[…]");
    let text = json_stanza.replace_all(&text, "AGE…");
    let text = yaml_stanza.replace_all(&text, "AGE…");
    time.replace_all(&text, "lastmodified…").into_owned()
}

/// `vars sops encrypt` and `sops --encrypt` of `plain` give the same file, but for
/// what is random.
fn same_layout(name: &str, plain: &[u8], sops_args: &[&str]) {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write(name, plain);
    let ours = dir.vars(&["sops", "encrypt", "--age", &r, name]);
    let mut args = vec!["--encrypt", "--age", &r];
    args.extend(sops_args);
    args.push(name);
    let theirs = dir.sops(&args, &[]);
    assert_eq!(mask(&ours), mask(&theirs));
    assert!(mask(&ours).contains("AGE…"), "{}", mask(&ours));
}

#[test]
fn vars_writes_the_binary_store_as_sops_does() {
    same_layout("secret", b"a\0b\n", &[]);
}

#[test]
fn vars_writes_the_json_store_as_sops_does() {
    same_layout("doc.json", JSON_DOC.as_bytes(), &[]);
}

#[test]
fn vars_writes_the_yaml_store_as_sops_does() {
    // Without strings sops would single-quote: go-yaml's choice of quotes is not copied.
    let doc = YAML_DOC.replace("quoted: \"a: b # not a comment\"\n", "");
    same_layout("doc.yaml", doc.as_bytes(), &[]);
}

// ------------------------------------------------------------ sops writes, vars reads

#[test]
fn vars_decrypts_a_binary_file_sops_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    let plain = binary_plaintext();
    dir.write("plain.bin", &plain);
    dir.sops_to(
        "secret",
        &[
            "--encrypt",
            "--age",
            &r,
            "--input-type",
            "binary",
            "--output-type",
            "binary",
            "plain.bin",
        ],
        &[],
    );
    let out = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "secret"]);
    assert_eq!(out, plain);
}

#[test]
fn vars_decrypts_a_yaml_file_sops_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.yaml", YAML_DOC);
    dir.sops_to("enc.yaml", &["--encrypt", "--age", &r, "plain.yaml"], &[]);
    let out = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "enc.yaml"]);
    assert_eq!(yaml(&out), yaml(YAML_DOC.as_bytes()));
    assert_eq!(comment_lines(&out), YAML_DOC_COMMENTS);
}

#[test]
fn vars_prints_the_yaml_sops_prints() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    let doc = YAML_DOC.replace("quoted: \"a: b # not a comment\"\n", "");
    dir.write("plain.yaml", &doc);
    dir.sops_to("enc.yaml", &["--encrypt", "--age", &r, "plain.yaml"], &[]);
    let ours = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "enc.yaml"]);
    let theirs = dir.sops(
        &["--decrypt", "enc.yaml"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(theirs).unwrap()
    );
}

#[test]
fn vars_decrypts_a_json_file_sops_wrote() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.json", JSON_DOC);
    dir.sops_to("enc.json", &["--encrypt", "--age", &r, "plain.json"], &[]);
    let ours = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "enc.json"]);
    assert_eq!(json(&ours), json(JSON_DOC.as_bytes()));
    // Byte for byte what sops prints (tabs, Go's HTML escapes).
    let theirs = dir.sops(
        &["--decrypt", "enc.json"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(theirs).unwrap()
    );
}

#[test]
fn vars_decrypts_a_json_file_sops_wrote_with_unencrypted_floats() {
    // The MAC covers the unencrypted floats' digits as sops formats them.
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    let doc = r#"{"secret": "x", "tiny_unencrypted": -2.1196398570727137e-300, "big_unencrypted": 1.4680037318543993e+212}"#;
    dir.write("plain.json", doc);
    dir.sops_to("enc.json", &["--encrypt", "--age", &r, "plain.json"], &[]);
    let ours = dir.vars(&["sops", "decrypt", "--identity", "key.txt", "enc.json"]);
    let theirs = dir.sops(
        &["--decrypt", "enc.json"],
        &[("SOPS_AGE_KEY_FILE", "key.txt")],
    );
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(theirs).unwrap()
    );
}

#[test]
fn vars_decrypts_a_file_sops_wrote_for_an_ssh_ed25519_recipient() {
    if !require("sops") || !require("ssh-keygen") {
        return;
    }
    let dir = Dir::new();
    let r = dir.ssh_key("id_ed25519", "ed25519");
    dir.write("plain.yaml", YAML_DOC);
    dir.sops_to("enc.yaml", &["--encrypt", "--age", &r, "plain.yaml"], &[]);
    let out = dir.vars(&["sops", "decrypt", "--identity", "id_ed25519", "enc.yaml"]);
    assert_eq!(yaml(&out), yaml(YAML_DOC.as_bytes()));
}

#[test]
fn vars_decrypts_a_file_sops_wrote_for_an_ssh_rsa_recipient() {
    if !require("sops") || !require("ssh-keygen") {
        return;
    }
    let dir = Dir::new();
    let r = dir.ssh_key("id_rsa", "rsa");
    dir.write("plain.json", JSON_DOC);
    dir.sops_to("enc.json", &["--encrypt", "--age", &r, "plain.json"], &[]);
    let out = dir.vars(&["sops", "decrypt", "--identity", "id_rsa", "enc.json"]);
    assert_eq!(json(&out), json(JSON_DOC.as_bytes()));
}

#[test]
fn vars_decrypts_a_file_sops_wrote_for_two_recipients_with_either_key() {
    if !require("sops") {
        return;
    }
    let dir = Dir::new();
    let r1 = dir.age_key("one.txt");
    let r2 = dir.age_key("two.txt");
    let plain = binary_plaintext();
    dir.write("plain.bin", &plain);
    dir.sops_to(
        "secret",
        &["--encrypt", "--age", &format!("{r1},{r2}"), "plain.bin"],
        &[],
    );
    for key in ["one.txt", "two.txt"] {
        let out = dir.vars(&["sops", "decrypt", "--identity", key, "secret"]);
        assert_eq!(out, plain, "{key}");
    }
}

// ------------------------------------------------------------ Shamir key groups

/// A file sops wrote with `shamir_threshold: 2` and one age key per group
/// (`g1.txt`, `g2.txt`, …); returns the directory, the recipients and the plaintext.
fn shamir_file(groups: usize) -> Option<(Dir, Vec<String>, Vec<u8>)> {
    if !require("sops") {
        return None;
    }
    let dir = Dir::new();
    let mut config = String::from("creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n");
    let mut recipients = Vec::new();
    for g in 1..=groups {
        let r = dir.age_key(&format!("g{g}.txt"));
        config.push_str(&format!("      - age:\n          - {r}\n"));
        recipients.push(r);
    }
    dir.write(".sops.yaml", config);
    let plain = binary_plaintext();
    dir.write("plain.bin", &plain);
    dir.sops_to(
        "secret",
        &["--config", ".sops.yaml", "--encrypt", "plain.bin"],
        &[],
    );
    let doc = json(&dir.read("secret"));
    assert_eq!(doc["sops"]["shamir_threshold"], 2);
    assert_eq!(doc["sops"]["key_groups"].as_array().unwrap().len(), groups);
    Some((dir, recipients, plain))
}

fn decrypt_with(dir: &Dir, keys: &[&str]) -> Vec<u8> {
    let mut args = vec!["sops", "decrypt"];
    for k in keys {
        args.extend(["--identity", k]);
    }
    args.push("secret");
    dir.vars(&args)
}

/// Decrypting with the key of one group only is refused.
fn one_group_is_not_enough(dir: &Dir, recipients: &[String], key: &str) {
    Test::in_dir(dir.path("").as_path())
        .args(["sops", "decrypt", "--identity", key, "secret"])
        .status(1)
        .stderr(format!(
            "error: secret: the data key is split into {} key groups, 2 of which are needed \
             (shamir_threshold), but the identities opened only 1: it is encrypted to {}; \
             identities tried: --identity {key}, SOPS_AGE_KEY (unset), \
             {}/home/.config/sops/age/keys.txt (not found)\n",
            recipients.len(),
            recipients.join(", "),
            dir.path("").display().to_string().trim_end_matches('/'),
        ))
        .run();
}

#[test]
fn shamir_two_of_two() {
    let Some((dir, recipients, plain)) = shamir_file(2) else {
        return;
    };
    assert_eq!(decrypt_with(&dir, &["g1.txt", "g2.txt"]), plain);
    for one in ["g1.txt", "g2.txt"] {
        one_group_is_not_enough(&dir, &recipients, one);
    }
}

#[test]
fn shamir_two_of_three() {
    let Some((dir, recipients, plain)) = shamir_file(3) else {
        return;
    };
    assert_eq!(decrypt_with(&dir, &["g1.txt", "g2.txt", "g3.txt"]), plain);
    for pair in [
        ["g1.txt", "g2.txt"],
        ["g1.txt", "g3.txt"],
        ["g2.txt", "g3.txt"],
    ] {
        assert_eq!(decrypt_with(&dir, &pair), plain, "{pair:?}");
    }
    for one in ["g1.txt", "g2.txt", "g3.txt"] {
        one_group_is_not_enough(&dir, &recipients, one);
    }
}

// ------------------------------------------------------------ the real age

#[test]
fn age_opens_the_data_key_stanza_vars_wrote() {
    if !require("age") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.write("plain.bin", b"the secret");
    dir.vars_to("secret", &["sops", "encrypt", "--age", &r, "plain.bin"]);
    let doc = json(&dir.read("secret"));
    assert_eq!(doc["sops"]["age"][0]["recipient"], r.as_str());
    let stanza = doc["sops"]["age"][0]["enc"].as_str().unwrap();
    assert!(stanza.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
    dir.write("stanza.age", stanza);
    let key = tool(
        "age",
        &["--decrypt", "-i", "key.txt", "stanza.age"],
        dir.path("").as_path(),
        &[],
        b"",
    );
    assert_eq!(key.len(), 32);
    // And those 32 bytes are the key the value is sealed with.
    let key: vars::sops::cipher::DataKey = zeroize::Zeroizing::new(key.try_into().unwrap());
    let (plain, _) =
        vars::sops::cipher::decrypt(&key, doc["data"].as_str().unwrap(), "data:", "data").unwrap();
    assert_eq!(plain.as_slice(), b"the secret");
}

#[test]
fn age_does_not_open_the_stanza_with_another_key() {
    if !require("age") {
        return;
    }
    let dir = Dir::new();
    let r = dir.age_key("key.txt");
    dir.age_key("other.txt");
    dir.write("plain.bin", b"the secret");
    dir.vars_to("secret", &["sops", "encrypt", "--age", &r, "plain.bin"]);
    let doc = json(&dir.read("secret"));
    dir.write("stanza.age", doc["sops"]["age"][0]["enc"].as_str().unwrap());
    let out = tool_output(
        "age",
        &["--decrypt", "-i", "other.txt", "stanza.age"],
        dir.path("").as_path(),
        &[],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
