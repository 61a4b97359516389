//! How names and JSON values appear inside error messages: always on one line, escaped, and
//! short enough to read.

use serde_json::Value;

/// Longest excerpt of a value shown in a message, in characters.
const EXCERPT_CHARS: usize = 60;

/// `s` as a double-quoted string with JSON escapes, so control characters and NUL stay visible.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON type of `value` with its article, as in "expected a boolean, got a string".
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as compact JSON, cut to a readable length.
pub(crate) fn excerpt(value: &Value) -> String {
    clip(&value.to_string(), 0)
}

/// Two different renderings shown side by side: when they are long, both are cut around the
/// first character where they differ, so the difference stays visible.
pub(crate) fn excerpt_pair(a: &str, b: &str) -> (String, String) {
    let first_difference = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map(|((i, _), _)| a[..i].chars().count())
        .unwrap_or_else(|| a.chars().count().min(b.chars().count()));
    let start = first_difference.saturating_sub(EXCERPT_CHARS / 3);
    (clip(a, start), clip(b, start))
}

/// At most [`EXCERPT_CHARS`] characters of `s` starting at character `start`, with `...`
/// marking what was cut on either side.
fn clip(s: &str, start: usize) -> String {
    let total = s.chars().count();
    if total <= EXCERPT_CHARS {
        return s.to_string();
    }
    let start = start.min(total.saturating_sub(EXCERPT_CHARS));
    let middle: String = s.chars().skip(start).take(EXCERPT_CHARS).collect();
    let prefix = if start > 0 { "..." } else { "" };
    let suffix = if start + EXCERPT_CHARS < total {
        "..."
    } else {
        ""
    };
    format!("{prefix}{middle}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quote_escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("a\0b\nc\u{7f}"), "\"a\\u0000b\\nc\\u007f\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn kind_names_every_json_type() {
        assert_eq!(kind(&json!(null)), "null");
        assert_eq!(kind(&json!(true)), "a boolean");
        assert_eq!(kind(&json!(1.5)), "a number");
        assert_eq!(kind(&json!("x")), "a string");
        assert_eq!(kind(&json!([])), "an array");
        assert_eq!(kind(&json!({})), "an object");
    }

    #[test]
    fn excerpt_keeps_short_values_and_clips_long_ones() {
        assert_eq!(excerpt(&json!("rw")), "\"rw\"");
        assert_eq!(excerpt(&json!([1, 2])), "[1,2]");
        let long = excerpt(&json!("x".repeat(100)));
        assert_eq!(long, format!("\"{}...", "x".repeat(59)));
    }

    #[test]
    fn excerpt_pair_shows_where_long_values_differ() {
        let a = format!("{}A{}", "x".repeat(100), "y".repeat(100));
        let b = format!("{}B{}", "x".repeat(100), "y".repeat(100));
        let (ea, eb) = excerpt_pair(&a, &b);
        assert_eq!(ea, format!("...{}A{}...", "x".repeat(20), "y".repeat(39)));
        assert_eq!(eb, format!("...{}B{}...", "x".repeat(20), "y".repeat(39)));
    }

    #[test]
    fn excerpt_pair_handles_prefixes_and_multibyte_characters() {
        assert_eq!(
            excerpt_pair("\"é\"", "\"éa\""),
            ("\"é\"".to_string(), "\"éa\"".to_string())
        );
        let a = "é".repeat(200);
        let b = format!("{}z", "é".repeat(200));
        let (ea, eb) = excerpt_pair(&a, &b);
        assert_eq!(ea, format!("...{}", "é".repeat(60)));
        assert_eq!(eb, format!("...{}z", "é".repeat(59)));
    }
}
