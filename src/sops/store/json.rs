//! The JSON store (and the binary store's JSON envelope): parsed with
//! duplicate-key detection and key order kept; written as sops writes it
//! (tab indentation, `<`, `>` and `&` escaped like Go's encoder).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::sops::tree::{format_float, Entry, Node, Scalar};

/// Parses JSON text into a tree; numbers become floats, as sops 3.11 reads them.
pub fn parse(text: &[u8]) -> Result<Node, String> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let node = NodeSeed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(node)
}

struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::Float(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::str(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Scalar::Str(Zeroizing::new(v.into_bytes()))))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NodeSeed)? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(NodeSeed)?;
            entries.push(Entry::Pair(key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Writes a tree as JSON, tab-indented, with a final newline.
pub fn emit(node: &Node) -> Result<Vec<u8>, String> {
    let mut out = String::new();
    write(node, 0, &mut out)?;
    out.push('\n');
    Ok(out.into_bytes())
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

/// A JSON string literal escaped the way Go's encoding/json escapes it.
pub fn quote(bytes: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| "a value is not UTF-8".to_string())?;
    let quoted = serde_json::to_string(s).map_err(|e| e.to_string())?;
    Ok(quoted
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// A number as Go's encoding/json writes a float64: shortest digits, in exponent
/// form below 1e-6 and from 1e21 (`1e+21`, `1e-7`). Written in full, such numbers
/// are long integers that JSON parsers (serde_json's default one among them) may
/// round to a neighbouring float when the file is read back.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format_float(f);
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    // Go pads the exponent to two digits, then trims `e-0N` back to `e-N`.
    if exp < 0 && exp > -10 {
        format!("{mantissa}e-{}", -exp)
    } else {
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn write(node: &Node, depth: usize, out: &mut String) -> Result<(), String> {
    match node {
        Node::Null => out.push_str("null"),
        Node::Comment(_) => return Err("comments cannot be written as JSON".into()),
        Node::Scalar(s) => match s {
            Scalar::Str(b) => out.push_str(&quote(b)?),
            Scalar::Int(i) => out.push_str(&i.to_string()),
            Scalar::Float(f) if f.is_finite() => out.push_str(&go_json_float(*f)),
            Scalar::Float(_) => return Err("JSON cannot hold NaN or infinity".into()),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Scalar::Time(t) => out.push_str(&quote(t.as_bytes())?),
        },
        Node::List(items) => {
            let items: Vec<&Node> = items
                .iter()
                .filter(|i| !matches!(i, Node::Comment(_)))
                .collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write(item, depth + 1, out)?;
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        Node::Map(entries) => {
            let pairs: Vec<(&String, &Node)> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((k, v)),
                    Entry::Comment(_) => None,
                })
                .collect();
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push_str("{\n");
            for (i, (k, v)) in pairs.iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&quote(k.as_bytes())?);
                out.push_str(": ");
                write(v, depth + 1, out)?;
                out.push_str(if i + 1 < pairs.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse(br#"{"a": 1, "a": 2}"#)
            .unwrap_err()
            .contains("duplicate key \"a\""));
    }

    #[test]
    fn floats_as_go_writes_them() {
        let cases = [
            (2.0, "2"),
            (0.5, "0.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.9098224346523472e57, "-1.9098224346523472e+57"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (f, text) in cases {
            assert_eq!(go_json_float(f), text, "{f:e}");
        }
    }

    #[test]
    fn go_style_output() {
        let node = parse(br#"{"a": "<&>", "n": [1, 2.5], "e": {}}"#).unwrap();
        assert_eq!(
            String::from_utf8(emit(&node).unwrap()).unwrap(),
            "{\n\t\"a\": \"\\u003c\\u0026\\u003e\",\n\t\"n\": [\n\t\t1,\n\t\t2.5\n\t],\n\t\"e\": {}\n}\n"
        );
    }
}
