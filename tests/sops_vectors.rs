//! Every file in ../shared/vectors (written by the real sops) decrypts to its
//! plaintext: exact bytes for the binary store, the same document for yaml and
//! json (compared with serde_yaml / serde_json, not with vars' own parsers), the
//! same lines for dotenv and ini. The MAC is verified: edits are refused.

mod common;

use common::{json, line_set, read_vector, vector, yaml, Test};

/// `vars sops decrypt --identity KEY [ARGS] FILE`, with FILE a copy of `vector_rel`
/// named `name`; returns stdout.
fn decrypt(vector_rel: &str, name: &str, key: &str, extra: &[&str]) -> Vec<u8> {
    Test::new()
        .vector(vector_rel, name)
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(key))
        .args(extra)
        .arg(name)
        .stdout_any()
        .run()
        .stdout
}

fn binary_vector(vector_rel: &str, key: &str, plain: &[u8]) {
    let out = decrypt(vector_rel, "secret", key, &["--input-type", "binary"]);
    assert_eq!(out, plain, "{vector_rel}");
}

// ------------------------------------------------------------ clan-core

const CLAN_KEY: &str = "clan-core/checks-assets-test-age-key.txt";
const CLAN_SECRETS_KEY: &str = "clan-core/checks-secrets-key.age.txt";

#[test]
fn clan_core_admin_age_key() {
    binary_vector(
        "clan-core/service-dummy-test-admin1-age.key.binary.json",
        CLAN_KEY,
        &read_vector("expected/clan-core_service-dummy-test-admin1-age.key.binary.json.plain"),
    );
}

#[test]
fn clan_core_two_recipients() {
    binary_vector(
        "clan-core/service-dummy-test-peer1-a-secret.binary.json",
        CLAN_KEY,
        &read_vector("expected/clan-core_service-dummy-test-peer1-a-secret.binary.json.plain"),
    );
}

#[test]
fn clan_core_sops_3_7_3_secret() {
    binary_vector(
        "clan-core/checks-secrets-secret.binary.json",
        CLAN_SECRETS_KEY,
        &read_vector("expected/clan-core_checks-secrets-secret.binary.json.plain"),
    );
}

#[test]
fn clan_core_sops_3_7_3_group_secret() {
    binary_vector(
        "clan-core/checks-secrets-group-secret.binary.json",
        CLAN_SECRETS_KEY,
        &read_vector("expected/clan-core_checks-secrets-group-secret.binary.json.plain"),
    );
}

#[test]
fn clan_core_sops_3_11_zerotier_identity() {
    binary_vector(
        "clan-core/yggdrasil-zerotier-identity-secret.binary.json",
        CLAN_KEY,
        &read_vector("expected/clan-core_yggdrasil-zerotier-identity-secret.binary.json.plain"),
    );
}

#[test]
fn clan_core_binary_store_is_chosen_for_a_file_without_extension() {
    // sops picks the store from the extension: none means binary.
    let out = decrypt(
        "clan-core/checks-secrets-secret.binary.json",
        "secret",
        CLAN_SECRETS_KEY,
        &[],
    );
    assert_eq!(out, b"foo");
}

#[test]
fn clan_core_yaml_with_two_space_indent() {
    let out = decrypt(
        "clan-core/clan-cli-tests-data-secrets.yaml",
        "secrets.yaml",
        "clan-core/clan-cli-age_keys-KEYS1.txt",
        &[],
    );
    assert_eq!(
        yaml(&out),
        yaml(&read_vector(
            "expected/clan-core_clan-cli-tests-data-secrets.yaml.plain"
        ))
    );
}

// ------------------------------------------------------------ sops-nix

#[test]
fn sops_nix_secrets_yaml_with_age_keys() {
    let out = decrypt(
        "sops-nix/secrets.yaml",
        "secrets.yaml",
        "sops-nix/age-keys.txt",
        &[],
    );
    assert_eq!(
        yaml(&out),
        yaml(&read_vector("expected/sops-nix_secrets.yaml.plain"))
    );
}

#[test]
fn sops_nix_secrets_yaml_with_the_openssh_key_alone() {
    // The second age recipient is ssh-to-age of this key: vars derives it.
    let out = decrypt(
        "sops-nix/secrets.yaml",
        "secrets.yaml",
        "sops-nix/ssh-ed25519-key",
        &[],
    );
    assert_eq!(
        yaml(&out),
        yaml(&read_vector("expected/sops-nix_secrets.yaml.plain"))
    );
}

#[test]
fn sops_nix_secrets_yaml_with_the_ssh_to_age_identity() {
    let out = decrypt(
        "sops-nix/secrets.yaml",
        "secrets.yaml",
        "sops-nix/ssh-ed25519-key.ssh-to-age.txt",
        &[],
    );
    assert_eq!(
        yaml(&out),
        yaml(&read_vector("expected/sops-nix_secrets.yaml.plain"))
    );
}

// ------------------------------------------------------------ rops (no version field)

const ROPS_KEY: &str = "rops/rops-mock-age-key.txt";

fn rops(name: &str) {
    let enc = format!("rops/age_{name}.yaml");
    let out = decrypt(&enc, "file.yaml", ROPS_KEY, &[]);
    assert_eq!(
        yaml(&out),
        yaml(&read_vector(&format!("rops/age_{name}_plaintext.yaml"))),
        "{enc}"
    );
}

#[test]
fn rops_example() {
    rops("example");
}

#[test]
fn rops_empty_value() {
    rops("empty_value");
}

#[test]
fn rops_encrypted_regex() {
    rops("encrypted_regex");
}

#[test]
fn rops_encrypted_suffix() {
    rops("encrypted_suffix");
}

#[test]
fn rops_unencrypted_regex() {
    rops("unencrypted_regex");
}

#[test]
fn rops_unencrypted_suffix() {
    rops("unencrypted_suffix");
}

#[test]
fn rops_mac_only_encrypted() {
    rops("mac_only_encrypted");
}

#[test]
fn rops_vectors_really_have_no_version() {
    for name in [
        "example",
        "empty_value",
        "encrypted_regex",
        "encrypted_suffix",
        "unencrypted_regex",
        "unencrypted_suffix",
        "mac_only_encrypted",
    ] {
        let doc = yaml(&read_vector(&format!("rops/age_{name}.yaml")));
        assert!(doc["sops"].get("version").is_none(), "{name}");
    }
}

// ------------------------------------------------------------ sops 3.11, every store

const SOPS_311_KEY: &str = "sops-3.11/key.txt";

#[test]
fn sops_3_11_binary_exact_bytes() {
    let out = decrypt(
        "sops-3.11/enc.bin.json",
        "enc.bin.json",
        SOPS_311_KEY,
        &["--input-type", "binary"],
    );
    assert_eq!(out, read_vector("sops-3.11/plain.bin"));
    assert!(out.contains(&0), "the plaintext holds a NUL byte");
}

#[test]
fn sops_3_11_yaml() {
    let out = decrypt("sops-3.11/enc.yaml", "enc.yaml", SOPS_311_KEY, &[]);
    assert_eq!(yaml(&out), yaml(&read_vector("sops-3.11/plain.yaml")));
}

#[test]
fn sops_3_11_yaml_comments_are_decrypted() {
    let out = decrypt("sops-3.11/enc.yaml", "enc.yaml", SOPS_311_KEY, &[]);
    let comments: Vec<&str> = std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('#'))
        .collect();
    assert_eq!(
        comments,
        ["# top comment", "# inline", "# nested comment"],
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn sops_3_11_yaml_prints_what_sops_prints() {
    // Byte for byte what `sops -d enc.yaml` prints (sops moves the inline list
    // comment above its item and indents with 4 spaces).
    Test::new()
        .vector("sops-3.11/enc.yaml", "enc.yaml")
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(SOPS_311_KEY))
        .arg("enc.yaml")
        .stdout(
            "# top comment
str: hello
int: 42
float: 1.5
bool: true
empty: \"\"
nullv: null
list:
    # inline
    - a
    - 7
nested:
    # nested comment
    inner: x
    deeper:
        k: v
plain_unencrypted: visible
date: 2024-01-02T03:04:05Z
",
        )
        .run();
}

#[test]
fn sops_3_11_json() {
    let out = decrypt("sops-3.11/enc.json", "enc.json", SOPS_311_KEY, &[]);
    assert_eq!(json(&out), json(&read_vector("sops-3.11/plain.json")));
}

#[test]
fn sops_3_11_dotenv() {
    let out = decrypt("sops-3.11/enc.env", "enc.env", SOPS_311_KEY, &[]);
    assert_eq!(
        line_set(&out),
        line_set(&read_vector("sops-3.11/plain.env"))
    );
}

#[test]
fn sops_3_11_ini() {
    let out = decrypt("sops-3.11/enc.ini", "enc.ini", SOPS_311_KEY, &[]);
    assert_eq!(
        line_set(&out),
        line_set(&read_vector("sops-3.11/plain.ini"))
    );
}

#[test]
fn sops_3_11_store_given_by_input_type() {
    // Named without an extension, the store comes from --input-type.
    let out = decrypt(
        "sops-3.11/enc.env",
        "secrets",
        SOPS_311_KEY,
        &["--input-type", "dotenv"],
    );
    assert_eq!(
        line_set(&out),
        line_set(&read_vector("sops-3.11/plain.env"))
    );
}

#[test]
fn sops_3_11_ssh_ed25519_recipient() {
    let out = decrypt(
        "sops-3.11/enc.ssh-ed25519-recipient.yaml",
        "enc.yaml",
        "sops-3.11/mockSshIdentity",
        &[],
    );
    assert_eq!(yaml(&out), yaml(&read_vector("sops-3.11/plain-ssh.yaml")));
}

#[test]
fn sops_3_11_extract_a_value() {
    Test::new()
        .vector("sops-3.11/enc.yaml", "enc.yaml")
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(SOPS_311_KEY))
        .args(["--extract", r#"["nested"]["deeper"]["k"]"#, "enc.yaml"])
        .stdout("v")
        .run();
}

#[test]
fn sops_3_11_extract_a_list_item() {
    Test::new()
        .vector("sops-3.11/enc.json", "enc.json")
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(SOPS_311_KEY))
        .args(["--extract", r#"["l"][2]["k"]"#, "enc.json"])
        .stdout("v")
        .run();
}

// ------------------------------------------------------------ the MAC is verified

/// Decrypting `contents` (an edited copy of a vector) as `name` fails with `stderr`.
fn refused(name: &str, contents: impl AsRef<[u8]>, key: &str, stderr: &str) {
    Test::new()
        .write(name, contents)
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(key))
        .arg(name)
        .status(1)
        .stderr(stderr)
        .run();
}

fn edited(vector_rel: &str, from: &str, to: &str) -> String {
    let text = String::from_utf8(read_vector(vector_rel)).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {vector_rel}");
    text.replace(from, to)
}

/// The vector with the lines starting with `prefix` removed.
fn without_lines(vector_rel: &str, prefix: &str) -> String {
    let text = String::from_utf8(read_vector(vector_rel)).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        kept.lines().count() + 1,
        text.lines().count(),
        "one {prefix:?} line"
    );
    kept
}

#[test]
fn a_vector_with_one_byte_of_its_mac_changed_is_refused() {
    let text = String::from_utf8(read_vector("sops-3.11/enc.bin.json")).unwrap();
    // The first base64 character of the stored MAC, changed to another one.
    let at = text.find("\"mac\": \"ENC[AES256_GCM,data:").unwrap() + 28;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    refused(
        "enc.bin.json",
        bytes,
        SOPS_311_KEY,
        "error: MAC mismatch in enc.bin.json: sops.mac failed authentication (mac or lastmodified changed); the file was edited or corrupted\n",
    );
}

#[test]
fn a_removed_value_is_caught_by_the_mac() {
    // Every remaining value still decrypts: only the MAC notices.
    refused(
        "enc.yaml",
        without_lines("sops-3.11/enc.yaml", "str: "),
        SOPS_311_KEY,
        "error: MAC mismatch in enc.yaml: the stored MAC does not match the content; the file was edited or corrupted\n",
    );
}

#[test]
fn an_edited_unencrypted_value_is_caught_by_the_mac() {
    refused(
        "enc.yaml",
        edited(
            "sops-3.11/enc.yaml",
            "plain_unencrypted: visible",
            "plain_unencrypted: Visible",
        ),
        SOPS_311_KEY,
        "error: MAC mismatch in enc.yaml: the stored MAC does not match the content; the file was edited or corrupted\n",
    );
}

#[test]
fn with_mac_only_encrypted_an_unencrypted_value_may_change() {
    let out = Test::new()
        .write(
            "file.yaml",
            edited(
                "rops/age_mac_only_encrypted.yaml",
                "d_unencrypted: aaa",
                "d_unencrypted: bbb",
            ),
        )
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(ROPS_KEY))
        .arg("file.yaml")
        .stdout_any()
        .run();
    assert_eq!(yaml(&out.stdout)["d_unencrypted"], yaml(b"bbb"));
}

#[test]
fn with_mac_only_encrypted_an_encrypted_value_may_not_go() {
    refused(
        "file.yaml",
        without_lines("rops/age_mac_only_encrypted.yaml", "a_encrypted:"),
        ROPS_KEY,
        "error: MAC mismatch in file.yaml: the stored MAC does not match the content; the file was edited or corrupted\n",
    );
}

#[test]
fn a_reordered_list_is_caught_by_the_mac() {
    // Items of a list carry the same AAD, so only the MAC sees a swap.
    let text = String::from_utf8(read_vector("sops-nix/secrets.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("a_list:")).unwrap() + 1;
    let mut swapped = lines.clone();
    swapped.swap(first, first + 1);
    refused(
        "secrets.yaml",
        swapped.join("\n") + "\n",
        "sops-nix/age-keys.txt",
        "error: MAC mismatch in secrets.yaml: the stored MAC does not match the content; the file was edited or corrupted\n",
    );
}
