//! A bit flipped anywhere that matters (a value's data, iv or tag, the MAC,
//! lastmodified, the age stanza wrapping the data key) and a truncated file are
//! each refused: non-zero exit, nothing on stdout, one exact message.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{read_vector, vector, Test};

const BINARY: &str = "sops-3.11/enc.bin.json";
const YAML: &str = "sops-3.11/enc.yaml";
const KEY: &str = "sops-3.11/key.txt";
const RECIPIENT: &str = "age1zz43mkmhvn4gl2f44usralgyg5x5drukmr7sfzsce50gtp5m8ywq8lg2yd";

fn text(vector_rel: &str) -> String {
    String::from_utf8(read_vector(vector_rel)).unwrap()
}

/// Base64 `b64` with the lowest bit of byte `at` flipped (still canonical base64).
fn flip_b64(b64: &str, at: usize) -> String {
    let mut bytes = B64.decode(b64).unwrap();
    bytes[at] ^= 1;
    B64.encode(bytes)
}

/// An `ENC[...]` value with one bit flipped in its `field` (data, iv or tag).
fn flip_enc(value: &str, field: &str) -> String {
    assert!(value.starts_with("ENC[AES256_GCM,"), "{value}");
    let tag = format!("{field}:");
    let start = value.find(&tag).unwrap() + tag.len();
    let end = start + value[start..].find([',', ']']).unwrap();
    let flipped = flip_b64(&value[start..end], 0);
    format!("{}{}{}", &value[..start], flipped, &value[end..])
}

/// `text` with one bit flipped in `field` of the ENC value that follows the only
/// occurrence of `anchor`.
fn flip_enc_field(text: &str, anchor: &str, field: &str) -> String {
    assert_eq!(text.matches(anchor).count(), 1, "{anchor:?}");
    let start = text.find(anchor).unwrap() + anchor.len();
    let end = start + text[start..].find(']').unwrap() + 1;
    format!(
        "{}{}{}",
        &text[..start],
        flip_enc(&text[start..end], field),
        &text[end..]
    )
}

/// Decrypting `contents`, saved as `name`, fails with exactly `stderr`.
fn refused(name: &str, contents: impl AsRef<[u8]>, stderr: &str) {
    Test::new()
        .write(name, contents)
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg(name)
        .status(1)
        .stdout("")
        .stderr(stderr)
        .run();
}

#[test]
fn the_untouched_vectors_decrypt() {
    // So that every refusal below is due to the one change it makes.
    Test::new()
        .vector(BINARY, "secret")
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg("secret")
        .stdout(read_vector("sops-3.11/plain.bin"))
        .run();
    Test::new()
        .vector(YAML, "enc.yaml")
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg("enc.yaml")
        .stdout_any()
        .run();
}

// ------------------------------------------------------------ the value

const DATA_FAILED: &str = "error: MAC mismatch in secret: the value at data failed authentication; the file was edited or corrupted\n";

#[test]
fn flipped_bit_in_data() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"data\": \"", "data"),
        DATA_FAILED,
    );
}

#[test]
fn flipped_bit_in_iv() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"data\": \"", "iv"),
        DATA_FAILED,
    );
}

#[test]
fn flipped_bit_in_tag() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"data\": \"", "tag"),
        DATA_FAILED,
    );
}

#[test]
fn flipped_bit_in_a_nested_yaml_value() {
    refused(
        "enc.yaml",
        flip_enc_field(&text(YAML), "        k: ", "data"),
        "error: MAC mismatch in enc.yaml: the value at nested.deeper.k failed authentication; the file was edited or corrupted\n",
    );
}

#[test]
fn flipped_bit_in_a_yaml_list_item() {
    // List items are sealed with their list's path.
    let text = text(YAML);
    let item = text.lines().find(|l| l.starts_with("    - ENC[")).unwrap();
    assert_eq!(text.matches(item).count(), 1);
    let value = item.trim_start_matches([' ', '-']);
    refused(
        "enc.yaml",
        text.replace(item, &item.replace(value, &flip_enc(value, "tag"))),
        "error: MAC mismatch in enc.yaml: the value at list failed authentication; the file was edited or corrupted\n",
    );
}

#[test]
fn a_value_moved_to_another_key_is_refused() {
    // The AAD binds each value to its path: swap two values of the same type.
    let text = text(YAML);
    let value_of = |key: &str| {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line[key.len()..].to_string()
    };
    let (str_value, inner_value) = (value_of("str: "), value_of("    inner: "));
    let swapped = text
        .replace(&str_value, "SWAP")
        .replace(&inner_value, &str_value)
        .replace("SWAP", &inner_value);
    refused(
        "enc.yaml",
        swapped,
        "error: MAC mismatch in enc.yaml: the value at str failed authentication; the file was edited or corrupted\n",
    );
}

// ------------------------------------------------------------ the MAC and its AAD

const MAC_FAILED: &str = "error: MAC mismatch in secret: sops.mac failed authentication (mac or lastmodified changed); the file was edited or corrupted\n";

#[test]
fn flipped_bit_in_mac_data() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"mac\": \"", "data"),
        MAC_FAILED,
    );
}

#[test]
fn flipped_bit_in_mac_iv() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"mac\": \"", "iv"),
        MAC_FAILED,
    );
}

#[test]
fn flipped_bit_in_mac_tag() {
    refused(
        "secret",
        flip_enc_field(&text(BINARY), "\"mac\": \"", "tag"),
        MAC_FAILED,
    );
}

#[test]
fn flipped_bit_in_lastmodified() {
    // '3' (0x33) → '2' (0x32): one second earlier.
    let text = text(BINARY);
    let from = "\"lastmodified\": \"2026-11-25T18:44:23Z\"";
    assert!(text.contains(from));
    refused(
        "secret",
        text.replace(from, "\"lastmodified\": \"2026-11-25T18:44:22Z\""),
        MAC_FAILED,
    );
}

#[test]
fn lastmodified_that_is_not_a_time() {
    refused(
        "secret",
        text(BINARY).replace("2026-11-25T18:44:23Z", "2026-11-25 18:44:23"),
        "error: not a sops file: secret: sops.lastmodified \"2026-11-25 18:44:23\" is not an RFC 3339 time\n",
    );
}

// ------------------------------------------------------------ the age stanza (enc)

/// The binary vector with its one age stanza passed through `edit` (on the
/// de-armored age file).
fn with_stanza(edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(&text(BINARY)).unwrap();
    let enc = doc["sops"]["age"][0]["enc"].as_str().unwrap();
    let body: String = enc.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut age_file = B64.decode(body).unwrap();
    edit(&mut age_file);
    let b64 = B64.encode(&age_file);
    let mut armored = String::from("-----BEGIN AGE ENCRYPTED FILE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        armored.push_str(std::str::from_utf8(chunk).unwrap());
        armored.push('\n');
    }
    armored.push_str("-----END AGE ENCRYPTED FILE-----\n");
    doc["sops"]["age"][0]["enc"] = armored.into();
    serde_json::to_string_pretty(&doc).unwrap()
}

/// Offset of the payload in an age file: after the header's `--- MAC` line.
fn payload_start(age_file: &[u8]) -> usize {
    let mac_line = age_file.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
    mac_line
        + age_file[mac_line..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 1
}

#[test]
fn the_stanza_reencoded_unchanged_still_decrypts() {
    // The re-armoring below is faithful: only the flipped bit makes a difference.
    Test::new()
        .write("secret", with_stanza(|_| {}))
        .args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg("secret")
        .stdout(read_vector("sops-3.11/plain.bin"))
        .run();
}

#[test]
fn flipped_bit_in_enc_payload() {
    refused(
        "secret",
        with_stanza(|f| {
            let last = f.len() - 1;
            f[last] ^= 1;
        }),
        &format!("error: secret: the data key could not be unwrapped: the data key for {RECIPIENT}: decryption error\n"),
    );
}

#[test]
fn flipped_bit_in_enc_payload_nonce() {
    refused(
        "secret",
        with_stanza(|f| {
            let at = payload_start(f);
            f[at] ^= 1;
        }),
        &format!("error: secret: the data key could not be unwrapped: the data key for {RECIPIENT}: decryption error\n"),
    );
}

#[test]
fn flipped_bit_in_enc_header_mac() {
    refused(
        "secret",
        with_stanza(|f| {
            // The last base64 character of the header MAC, before its newline.
            let at = payload_start(f) - 2;
            f[at] = if f[at] == b'A' { b'B' } else { b'A' };
        }),
        &format!("error: secret: the data key could not be unwrapped: the data key for {RECIPIENT}: Header MAC is invalid\n"),
    );
}

#[test]
fn flipped_bit_in_enc_wrapped_file_key() {
    // The stanza body (second header line) holds the wrapped file key. An X25519
    // stanza that does not unwrap is, to age, a stanza for someone else.
    let test = Test::new().write(
        "secret",
        with_stanza(|f| {
            let line2 = f.iter().position(|&b| b == b'\n').unwrap() + 1;
            let body = line2 + f[line2..].iter().position(|&b| b == b'\n').unwrap() + 1;
            f[body] = if f[body] == b'A' { b'B' } else { b'A' };
        }),
    );
    let stderr = format!(
        "error: no identity matches secret: it is encrypted to {RECIPIENT}; identities tried: \
         --identity {}, SOPS_AGE_KEY (unset), {}/home/.config/sops/age/keys.txt (not found). \
         Pass --identity FILE or set SOPS_AGE_KEY_FILE\n",
        vector(KEY).display(),
        test.dir().display()
    );
    test.args(["sops", "decrypt", "--identity"])
        .arg(vector(KEY))
        .arg("secret")
        .status(1)
        .stderr(stderr)
        .run();
}

// ------------------------------------------------------------ truncation

#[test]
fn truncated_binary_file() {
    let text = text(BINARY);
    refused(
        "secret",
        &text[..text.len() / 2],
        "error: not a sops file: secret: not a sops binary file (JSON envelope): EOF while parsing a string at line 7 column 260\n",
    );
}

#[test]
fn truncated_yaml_file_without_its_sops_section() {
    let text = text(YAML);
    let cut = text.find("sops:").unwrap();
    refused(
        "enc.yaml",
        &text[..cut],
        "error: not a sops file: enc.yaml: it has no sops metadata section\n",
    );
}

#[test]
fn truncated_yaml_file_in_its_age_stanza() {
    let text = text(YAML);
    let cut = text.find("-----END AGE ENCRYPTED FILE-----").unwrap();
    refused(
        "enc.yaml",
        &text[..cut],
        "error: not a sops file: enc.yaml: sops.mac is missing\n",
    );
}

#[test]
fn empty_file() {
    refused(
        "secret",
        "",
        "error: not a sops file: secret: not a sops binary file (JSON envelope): EOF while parsing a value at line 1 column 0\n",
    );
}

/// Every strict prefix of the binary vector (but the one missing only the final
/// newline) is refused; checked through the library for speed.
#[test]
fn every_truncation_of_the_binary_file_is_refused() {
    use vars::keys::Identities;
    use vars::sops::{Format, SopsFile};
    let bytes = read_vector(BINARY);
    let mut ids = Identities::default();
    ids.add_file("key", &vector(KEY)).unwrap();
    let full = SopsFile::parse(&bytes, Format::Binary, "secret")
        .unwrap()
        .decrypt_binary(&ids)
        .unwrap();
    assert_eq!(full.as_slice(), read_vector("sops-3.11/plain.bin"));
    let trimmed = bytes.trim_ascii_end().len();
    for len in 0..trimmed {
        let result = SopsFile::parse(&bytes[..len], Format::Binary, "secret")
            .and_then(|f| f.decrypt_binary(&ids));
        assert!(result.is_err(), "a prefix of {len} bytes decrypted");
    }
}
