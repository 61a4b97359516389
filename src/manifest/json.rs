//! Reading JSON text into a [`serde_json::Value`], strictly: a key repeated within one object
//! is an error (serde_json alone would silently keep the last one).
//!
//! Nesting depth stays bounded by serde_json's recursion limit (128), which is far deeper
//! than a manifest needs.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::ManifestError;
use super::text::quote;

/// Parse `bytes` as one JSON document read from `file`.
pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<Value, ManifestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer).map_err(|e| json_error(file, &e))?;
    deserializer.end().map_err(|e| json_error(file, &e))?;
    Ok(value.0)
}

/// A serde_json error as a [`ManifestError::Json`], its position split out of the message.
fn json_error(file: &str, error: &serde_json::Error) -> ManifestError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    ManifestError::Json {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// A JSON value whose objects never repeat a key.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(StrictValue(Value::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(text: &str) -> String {
        match parse(text.as_bytes(), "vars.json") {
            Ok(value) => panic!("expected an error, parsed {value}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_json_type_keeping_key_order() {
        let value = parse(br#"{"b": [1, -2, 1.5, "s", null, true], "a": {}}"#, "f").unwrap();
        assert_eq!(value, json!({"b": [1, -2, 1.5, "s", null, true], "a": {}}));
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        assert_eq!(
            message("{\n  \"machines\": {,}\n}"),
            "vars.json: invalid JSON at line 2 column 16: key must be a string"
        );
        assert_eq!(
            message(""),
            "vars.json: invalid JSON at line 1 column 0: EOF while parsing a value"
        );
        assert_eq!(
            message("{} x"),
            "vars.json: invalid JSON at line 1 column 4: trailing characters"
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_with_their_position() {
        assert_eq!(
            message("{\"a\": 1,\n \"a\": 2}"),
            "vars.json: invalid JSON at line 2 column 4: duplicate key \"a\""
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let err = parse(b"{\"a\": \"\xff\"}", "vars.json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("vars.json: invalid JSON at line 1 column"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_hits_the_recursion_limit_without_overflowing() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(text.as_bytes(), "vars.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "vars.json: invalid JSON at line 1 column 128: recursion limit exceeded"
        );
        let text = format!("{}{}", "{\"a\":".repeat(1000), "}".repeat(1000));
        assert!(parse(text.as_bytes(), "vars.json").is_err());
    }
}
