//! Round trips through the library, on generated input: arbitrary bytes through
//! the binary store, arbitrary nested documents through the yaml and json
//! stores (encrypt → write → parse → decrypt gives the document back), and the
//! plaintext vars prints read back by independent parsers as the same document.

use std::sync::OnceLock;

use proptest::prelude::*;
use vars::keys::{Identities, Recipient};
use vars::sops::{self, Entry, Format, Node, Scalar, SopsFile};
use zeroize::Zeroizing;

/// One key pair for the whole run.
fn keys() -> &'static (Identities, Vec<Recipient>) {
    static KEYS: OnceLock<(Identities, Vec<Recipient>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (id, text) = vars::keys::generate_identity();
        let mut ids = Identities::default();
        ids.add_text("generated", text.as_bytes()).unwrap();
        let recipient = id.to_public().to_string().parse().unwrap();
        (ids, vec![recipient])
    })
}

/// 64 cases per property, or `PROPTEST_CASES` for a longer hunt.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------ generators

/// Strings that stress YAML and JSON writers: any printable text, and text built
/// from the characters that need quoting or escaping.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[-#:'\"\\\\ \n\t{}\\[\\],&*!|>%@`?a0.]{0,12}",
        Just(String::new()),
        prop::sample::select(vec![
            "true",
            "false",
            "null",
            "~",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "1",
            "-1",
            "0x1F",
            "1e3",
            ".inf",
            "-.nan",
            "1.5",
            "2024-01-02T03:04:05Z",
            "2024-01-02",
            "<<",
            "=",
            "- a",
            "a: b",
            "a #b",
            "#a",
            "'",
            "\"",
            " lead",
            "trail ",
            "line\n",
            "two\nlines\n",
            "\n",
            "ENC[AES256_GCM,data:x]",
            "sops",
            // What YAML readers take as line breaks or refuse unescaped.
            "\u{7f}",
            "a\u{85}b",
            "\u{2028}",
            "x\u{2029}\n",
            "\u{feff}",
            "\u{fffe}",
        ])
        .prop_map(str::to_string),
    ]
}

/// Mapping keys: printable, never "sops" at the top (that is the metadata).
fn key() -> impl Strategy<Value = String> {
    text().prop_map(|k| k.replace(['\n', '\t'], " "))
}

fn scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        text().prop_map(|s| Node::Scalar(Scalar::str(&s))),
        any::<i64>().prop_map(|i| Node::Scalar(Scalar::Int(i))),
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            prop::sample::select(vec![0.0, -0.0, 1.0, 0.5, 1e21, 1e-7, 123456.789]),
        ]
        .prop_map(|f| Node::Scalar(Scalar::Float(f))),
        any::<bool>().prop_map(|b| Node::Scalar(Scalar::Bool(b))),
        Just(Node::Null),
    ]
}

/// A map with distinct keys (document order kept).
fn map_of(values: impl Strategy<Value = Node>) -> impl Strategy<Value = Node> {
    prop::collection::vec((key(), values), 0..6).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        Node::Map(
            pairs
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .map(|(k, v)| Entry::Pair(k, v))
                .collect(),
        )
    })
}

fn node() -> impl Strategy<Value = Node> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::List),
            map_of(inner),
        ]
    })
}

/// A document: a top-level mapping without a "sops" key.
fn document() -> impl Strategy<Value = Node> {
    map_of(node()).prop_map(|doc| match doc {
        Node::Map(entries) => Node::Map(
            entries
                .into_iter()
                .filter(|e| !matches!(e, Entry::Pair(k, _) if k == "sops"))
                .collect(),
        ),
        other => other,
    })
}

// ------------------------------------------------------------ encrypted round trips

fn round_trip(doc: &Node, format: Format) -> Result<Node, TestCaseError> {
    let (ids, recipients) = keys();
    let sealed = sops::encrypt_tree(doc, format, recipients, "doc")
        .map_err(|e| TestCaseError::fail(format!("encrypt: {e}")))?;
    let text = String::from_utf8_lossy(&sealed).into_owned();
    let file = SopsFile::parse(&sealed, format, "doc")
        .map_err(|e| TestCaseError::fail(format!("parse: {e}\n{text}")))?;
    file.decrypt(ids)
        .map_err(|e| TestCaseError::fail(format!("decrypt: {e}\n{text}")))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn binary_round_trip(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (ids, recipients) = keys();
        let sealed = sops::encrypt_binary(&data, recipients).unwrap();
        // The envelope is JSON holding "data" and "sops" only.
        let envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let fields: Vec<&String> = envelope.as_object().unwrap().keys().collect();
        prop_assert_eq!(fields, ["data", "sops"]);
        let file = SopsFile::parse(&sealed, Format::Binary, "secret").unwrap();
        let plain = file.decrypt_binary(ids).unwrap();
        prop_assert_eq!(plain.as_slice(), data.as_slice());
    }

    #[test]
    fn yaml_round_trip(doc in document()) {
        prop_assert_eq!(round_trip(&doc, Format::Yaml)?, doc);
    }

    #[test]
    fn json_round_trip(doc in document()) {
        prop_assert_eq!(round_trip(&doc, Format::Json)?, doc);
    }

    #[test]
    fn plaintext_yaml_is_the_document(doc in document()) {
        let text = sops::emit_plain(&doc, Format::Yaml, "doc").unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_slice(&text).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text)))
        })?;
        prop_assert_eq!(&parsed, &to_yaml(&doc), "{}", String::from_utf8_lossy(&text));
        // And vars reads its own output back as the same document.
        prop_assert_eq!(sops::parse_plain(&text, Format::Yaml, "doc").unwrap(), doc);
    }

    #[test]
    fn plaintext_json_is_the_document(doc in document()) {
        let text = sops::emit_plain(&doc, Format::Json, "doc").unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text)))
        })?;
        prop_assert!(
            same_json(&parsed, &to_json(&doc)),
            "{}\n{:?}", String::from_utf8_lossy(&text), doc
        );
    }
}

/// Floats as Go's encoding/json writes them, which the JSON store must read back
/// exactly: a sops JSON file with an unencrypted float hashes that float's
/// digits into its MAC, and `vars sops encrypt` must not change a number.
fn go_json_number(f: f64) -> String {
    let text = sops::emit_plain(
        &Node::Map(vec![Entry::Pair(
            "a".into(),
            Node::Scalar(Scalar::Float(f)),
        )]),
        Format::Json,
        "doc",
    )
    .unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    text.trim_start_matches("{\n\t\"a\": ")
        .trim_end_matches("\n}\n")
        .to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_store_reads_floats_exactly(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let number = go_json_number(f);
        prop_assert_eq!(number.parse::<f64>().unwrap(), f, "{}", number);
        let doc = sops::parse_plain(format!("{{\"a\": {number}}}").as_bytes(), Format::Json, "doc").unwrap();
        prop_assert_eq!(doc.get("a"), Some(&Node::Scalar(Scalar::Float(f))), "{}", number);
    }
}

#[test]
fn json_store_reads_these_floats_exactly() {
    for f in [
        0.1,
        1.5,
        -2.25,
        1e21,
        1e-7,
        123456.789,
        f64::MAX,
        f64::MIN_POSITIVE,
    ] {
        let number = go_json_number(f);
        let doc = sops::parse_plain(
            format!("{{\"a\": {number}}}").as_bytes(),
            Format::Json,
            "doc",
        )
        .unwrap();
        assert_eq!(
            doc.get("a"),
            Some(&Node::Scalar(Scalar::Float(f))),
            "{number}"
        );
    }
}

/// Equal within a few units in the last place.
fn nearly_equal(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 8.0 * f64::EPSILON * a.abs().max(b.abs()),
        _ => false,
    }
}

// ------------------------------------------------------------ independent models

fn to_yaml(node: &Node) -> serde_yaml::Value {
    use serde_yaml::Value;
    match node {
        Node::Map(entries) => Value::Mapping(
            entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((Value::String(k.clone()), to_yaml(v))),
                    Entry::Comment(_) => None,
                })
                .collect(),
        ),
        Node::List(items) => Value::Sequence(items.iter().map(to_yaml).collect()),
        Node::Scalar(Scalar::Str(b)) => Value::String(String::from_utf8(b.to_vec()).unwrap()),
        Node::Scalar(Scalar::Int(i)) => Value::Number((*i).into()),
        Node::Scalar(Scalar::Float(f)) => Value::Number((*f).into()),
        Node::Scalar(Scalar::Bool(b)) => Value::Bool(*b),
        Node::Scalar(Scalar::Time(t)) => Value::String(t.clone()),
        Node::Null | Node::Comment(_) => Value::Null,
    }
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((k.clone(), to_json(v))),
                    Entry::Comment(_) => None,
                })
                .collect(),
        ),
        Node::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Scalar(Scalar::Str(b)) => Value::String(String::from_utf8(b.to_vec()).unwrap()),
        Node::Scalar(Scalar::Int(i)) => Value::from(*i),
        Node::Scalar(Scalar::Float(f)) => Value::from(*f),
        Node::Scalar(Scalar::Bool(b)) => Value::Bool(*b),
        Node::Scalar(Scalar::Time(t)) => Value::String(t.clone()),
        Node::Null | Node::Comment(_) => Value::Null,
    }
}

/// JSON equality where a float and an integer of the same value are the same
/// number (Go writes 2.0 as `2`), keys compared in order. Floats may differ by
/// a few ULPs: serde_json without its `float_roundtrip` feature reads some numbers
/// to a neighbouring float (`json_store_reads_floats_exactly` covers exactness).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.is_f64() || y.is_f64()) && nearly_equal(x.as_f64(), y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

#[test]
fn zeroizing_secret_type_is_what_the_api_returns() {
    // Compile-time check that decrypt_binary hands back zeroized memory.
    let (ids, recipients) = keys();
    let sealed = sops::encrypt_binary(b"x", recipients).unwrap();
    let plain: Zeroizing<Vec<u8>> = SopsFile::parse(&sealed, Format::Binary, "s")
        .unwrap()
        .decrypt_binary(ids)
        .unwrap();
    assert_eq!(plain.as_slice(), b"x");
}
