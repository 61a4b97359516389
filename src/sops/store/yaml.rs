//! The YAML store: parsed from yaml-rust2's events (which keep scalar styles
//! and line marks) with comments placed back by line, and written in the style
//! sops 3.11 writes (4-space indentation, comments as `#…` lines).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use zeroize::Zeroizing;

use crate::sops::tree::{format_float, Entry, Node, Scalar};

/// Deepest nesting accepted, so that walking a hostile document cannot
/// exhaust the stack.
pub const MAX_DEPTH: usize = 100;
/// Most nodes an anchor/alias expansion may produce (no "billion laughs").
const MAX_NODES: usize = 1_000_000;

// ------------------------------------------------------------------ comments

/// A comment found in the source: its 1-based line, whether it follows content
/// on that line, and the text after `#`.
struct Comment {
    line: usize,
    inline: bool,
    text: String,
}

/// Finds comments line by line, skipping block scalar bodies and quoted text.
fn scan_comments(src: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut block_indent: Option<usize> = None;
    for (i, line) in src.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some(parent) = block_indent {
            if trimmed.is_empty() || indent > parent {
                continue;
            }
            block_indent = None;
        }
        if trimmed.is_empty() {
            continue;
        }
        let (content, comment) = split_comment(line);
        if let Some(text) = comment {
            out.push(Comment {
                line: i + 1,
                inline: !content.trim().is_empty(),
                text: text.to_string(),
            });
        }
        let content = content.trim_end();
        let opens_block = content.rsplit([' ', ':', '-']).next().is_some_and(|last| {
            let mut chars = last.chars();
            matches!(chars.next(), Some('|') | Some('>'))
                && chars.all(|c| c == '-' || c == '+' || c.is_ascii_digit())
        });
        if opens_block {
            block_indent = Some(indent);
        }
    }
    out
}

/// Splits a line at its comment: a `#` at the start or after whitespace, outside quotes.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            // `\"` inside double quotes and `''` inside single quotes do not close them.
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some('\'') if c == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && (prev.is_whitespace() || ":-[{,".contains(prev)) => {
                quote = Some(c)
            }
            None if c == '#' && prev.is_whitespace() => return (&line[..i], Some(&line[i + 1..])),
            None => {}
        }
        prev = c;
    }
    (line, None)
}

// ------------------------------------------------------------------ parsing

enum Frame {
    Map {
        entries: Vec<Entry>,
        key: Option<String>,
        anchor: usize,
    },
    List {
        items: Vec<Node>,
        anchor: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    comments: std::iter::Peekable<std::vec::IntoIter<Comment>>,
    nodes: usize,
    error: Option<String>,
    documents: usize,
    /// Comments that fell between a key and its value, for the next container.
    pending: Vec<crate::sops::tree::Secret>,
}

impl Builder {
    /// Moves comments that come before `line` into the current container.
    fn flush_comments(&mut self, line: usize) {
        loop {
            let due = matches!(self.comments.peek(), Some(c) if c.line < line || (c.inline && c.line == line));
            if !due {
                break;
            }
            let Some(c) = self.comments.next() else { break };
            let text = Zeroizing::new(c.text.into_bytes());
            match self.stack.last_mut() {
                Some(Frame::Map {
                    entries, key: None, ..
                }) => entries.push(Entry::Comment(text)),
                Some(Frame::List { items, .. }) => items.push(Node::Comment(text)),
                // Between a key and its value: keep it for the next container.
                Some(Frame::Map { key: Some(_), .. }) | None => {
                    self.pending.push(text);
                }
            }
        }
    }

    fn attach_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        match self.stack.last_mut() {
            Some(Frame::Map {
                entries, key: None, ..
            }) => entries.extend(pending.into_iter().map(Entry::Comment)),
            Some(Frame::List { items, .. }) => items.extend(pending.into_iter().map(Node::Comment)),
            _ => self.pending = pending,
        }
    }

    fn push_value(&mut self, node: Node) {
        self.nodes += 1;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => {
                    if entries
                        .iter()
                        .any(|e| matches!(e, Entry::Pair(existing, _) if *existing == k))
                    {
                        self.error.get_or_insert(format!("duplicate key {k:?}"));
                    }
                    entries.push(Entry::Pair(k, node));
                }
                None => match node {
                    Node::Scalar(Scalar::Str(s)) => {
                        *key = Some(String::from_utf8_lossy(&s).into_owned());
                    }
                    Node::Scalar(other) => {
                        *key = Some(String::from_utf8_lossy(&other.to_bytes()).to_lowercase());
                    }
                    Node::Null => *key = Some(String::new()),
                    _ => {
                        self.error
                            .get_or_insert("only scalar mapping keys are supported".into());
                    }
                },
            },
        }
    }
}

// The builder carries comments that fell between a key and its value.
impl Builder {
    fn new(comments: Vec<Comment>) -> Builder {
        Builder {
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            comments: comments.into_iter().peekable(),
            nodes: 0,
            error: None,
            documents: 0,
            pending: Vec::new(),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
        let starts_node = matches!(
            &ev,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(_)
        );
        if starts_node && (is_key || matches!(self.stack.last(), Some(Frame::List { .. }))) {
            self.flush_comments(mark.line());
            self.attach_pending();
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error = Some("multiple YAML documents are not supported".into());
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let node = resolve(value, style, tag.as_ref().map(|t| t.suffix.as_str()));
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some(format!("nested deeper than {MAX_DEPTH} levels"));
                    return;
                }
                self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::List {
                        items: Vec::new(),
                        anchor,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        anchor,
                    }
                });
                self.flush_comments(mark.line());
                self.attach_pending();
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::List { items, anchor }) => (Node::List(items), anchor),
                    Some(Frame::Map {
                        entries, anchor, ..
                    }) => (Node::Map(entries), anchor),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => {
                    self.nodes += count(&node);
                    if self.nodes > MAX_NODES {
                        self.error = Some("alias expansion is too large".into());
                        return;
                    }
                    self.push_value(node);
                }
                None => self.error = Some("alias to an unknown anchor".into()),
            },
            _ => {}
        }
    }
}

fn count(node: &Node) -> usize {
    let mut n = 0;
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        n += 1;
        match node {
            Node::Map(entries) => stack.extend(entries.iter().filter_map(|e| match e {
                Entry::Pair(_, v) => Some(v),
                Entry::Comment(_) => None,
            })),
            Node::List(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    n
}

/// Parses YAML text into a tree, comments included.
pub fn parse(text: &[u8]) -> Result<Node, String> {
    let src = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let mut builder = Builder::new(scan_comments(src));
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, true).map_err(|e| e.to_string())?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    let rest: Vec<Comment> = builder.comments.collect();
    let mut root = builder.root.unwrap_or(Node::Map(Vec::new()));
    if let Node::Map(entries) = &mut root {
        for text in builder.pending.drain(..) {
            entries.push(Entry::Comment(text));
        }
        for c in rest {
            entries.push(Entry::Comment(Zeroizing::new(c.text.into_bytes())));
        }
    }
    Ok(root)
}

/// The type yaml.v3 gives a scalar: plain scalars are resolved, quoted and
/// block scalars are strings, and an explicit tag wins.
fn resolve(value: String, style: TScalarStyle, tag: Option<&str>) -> Node {
    let plain = matches!(style, TScalarStyle::Plain);
    match tag {
        Some("str") => return Node::Scalar(Scalar::Str(Zeroizing::new(value.into_bytes()))),
        Some("null") => return Node::Null,
        _ => {}
    }
    if plain {
        if let Some(node) = resolve_plain(&value) {
            return node;
        }
    }
    Node::Scalar(Scalar::Str(Zeroizing::new(value.into_bytes())))
}

/// Resolves a plain scalar that is not a string; `None` for strings.
pub fn resolve_plain(v: &str) -> Option<Node> {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Node::Null),
        "true" | "True" | "TRUE" => return Some(Node::Scalar(Scalar::Bool(true))),
        "false" | "False" | "FALSE" => return Some(Node::Scalar(Scalar::Bool(false))),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Node::Scalar(Scalar::Float(f64::INFINITY)))
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Node::Scalar(Scalar::Float(f64::NEG_INFINITY))),
        ".nan" | ".NaN" | ".NAN" => return Some(Node::Scalar(Scalar::Float(f64::NAN))),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let negative = v.starts_with('-');
    let radix_int = |prefix: &str, radix: u32| {
        digits
            .strip_prefix(prefix)
            .filter(|d| !d.is_empty())
            .and_then(|d| i64::from_str_radix(d, radix).ok())
            .map(|i| Node::Scalar(Scalar::Int(if negative { -i } else { i })))
    };
    if let Some(n) = radix_int("0x", 16)
        .or_else(|| radix_int("0o", 8))
        .or_else(|| radix_int("0b", 2))
    {
        return Some(n);
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(match v.parse::<i64>() {
            Ok(i) => Node::Scalar(Scalar::Int(i)),
            Err(_) => Node::Scalar(Scalar::Float(v.parse().ok()?)),
        });
    }
    if is_float(digits) {
        return v.parse().ok().map(|f| Node::Scalar(Scalar::Float(f)));
    }
    parse_timestamp(v).map(|t| Node::Scalar(Scalar::Time(t)))
}

fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exp_ok && (frac.is_some() || exp.is_some())
}

/// A YAML timestamp, as Go's `time.Time.MarshalText` writes it.
pub fn parse_timestamp(v: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    use time::{Date, OffsetDateTime, PrimitiveDateTime};
    let b = v.as_bytes();
    if b.len() < 10 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    if b.len() == 10 {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let date = Date::parse(v, &fmt).ok()?;
        return Some(format_go_time(
            PrimitiveDateTime::new(date, time::Time::MIDNIGHT).assume_utc(),
        ));
    }
    let normalized = v.replacen(' ', "T", 1).replacen('t', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&normalized, &Rfc3339) {
        return Some(format_go_time(t));
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(&normalized, &fmt)
        .ok()
        .map(|t| format_go_time(t.assume_utc()))
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed, `Z` for UTC (Go's RFC3339Nano).
pub fn format_go_time(t: time::OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let frac = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset();
    if off.is_utc() {
        s.push('Z');
    } else {
        let (h, m, _) = off.as_hms();
        let sign = if off.is_negative() { '-' } else { '+' };
        s.push_str(&format!(
            "{sign}{:02}:{:02}",
            h.unsigned_abs(),
            m.unsigned_abs()
        ));
    }
    s
}

// ------------------------------------------------------------------ writing

const INDENT: usize = 4;

/// Writes a tree as YAML the way sops 3.11 lays it out.
pub fn emit(node: &Node) -> Result<Vec<u8>, String> {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() => write_map(entries, 0, &mut out)?,
        Node::List(items) if !items.is_empty() => write_list(items, 0, &mut out)?,
        other => {
            out.push_str(&inline(other)?.unwrap_or_default());
            out.push('\n');
        }
    }
    Ok(out.into_bytes())
}

/// The indentation of a block nested under a line indented by `indent`: the next
/// multiple of `INDENT`, as go-yaml v3 aligns it (so a block under a key of a map
/// that is a list item, indented by 2 more, lands on the 4-column grid).
fn nested_indent(indent: usize) -> usize {
    (indent / INDENT + 1) * INDENT
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// The one-line form of a scalar, null or empty container; `None` for a block.
fn inline(node: &Node) -> Result<Option<String>, String> {
    Ok(Some(match node {
        Node::Null => "null".into(),
        Node::Map(e) if e.iter().all(|e| matches!(e, Entry::Comment(_))) => "{}".into(),
        Node::List(i) if i.is_empty() => "[]".into(),
        Node::Scalar(s) => scalar(s)?,
        _ => return Ok(None),
    }))
}

fn scalar(s: &Scalar) -> Result<String, String> {
    Ok(match s {
        Scalar::Str(b) => {
            let text = std::str::from_utf8(b).map_err(|_| "a value is not UTF-8".to_string())?;
            quote_if_needed(text)
        }
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) if f.is_nan() => ".nan".into(),
        Scalar::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Scalar::Float(f) => {
            let t = format_float(*f);
            if t.contains('.') {
                t
            } else {
                format!("{t}.0")
            }
        }
        Scalar::Bool(b) => b.to_string(),
        Scalar::Time(t) => t.clone(),
    })
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted.
pub fn quote_if_needed(s: &str) -> String {
    let first = s.chars().next();
    let plain_ok = !s.is_empty()
        && !first.is_some_and(|c| "-?:,[]{}#&*!|>'\"%@` \t".contains(c))
        && !s.ends_with([' ', '\t', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control() || needs_escape(c))
        && resolve_plain(s).is_none()
        && !matches!(
            s,
            "y" | "Y"
                | "yes"
                | "Yes"
                | "YES"
                | "n"
                | "N"
                | "no"
                | "No"
                | "NO"
                | "on"
                | "On"
                | "ON"
                | "off"
                | "Off"
                | "OFF"
                | "<<"
                | "="
        );
    if plain_ok {
        s.to_string()
    } else {
        double_quote(s)
    }
}

/// Characters a YAML reader takes as line breaks (U+0085, U+2028, U+2029) or
/// refuses outright (DEL, C1 controls, U+FEFF, U+FFFE, U+FFFF): escaped in quotes.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
}

/// A double-quoted YAML scalar. JSON's escapes are YAML's, but JSON leaves the
/// characters of `needs_escape` raw.
fn double_quote(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_default();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// True for text that reads well and round-trips as a literal block (`|`).
fn literal_block_ok(s: &str) -> bool {
    s.ends_with('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with([' ', '\t', '\n'])
        && s.lines().all(|l| {
            !l.ends_with([' ', '\t']) && !l.chars().any(|c| c.is_control() || needs_escape(c))
        })
}

fn write_value(node: &Node, indent: usize, out: &mut String) -> Result<(), String> {
    // After "key:" — either " value\n" or "\n" and a nested block.
    if let Node::Scalar(Scalar::Str(b)) = node {
        if let Ok(text) = std::str::from_utf8(b) {
            if text.contains('\n') && literal_block_ok(text) {
                out.push_str(" |\n");
                for line in text.lines() {
                    if !line.is_empty() {
                        pad(out, nested_indent(indent));
                        out.push_str(line);
                    }
                    out.push('\n');
                }
                return Ok(());
            }
        }
    }
    match inline(node)? {
        Some(text) => {
            out.push(' ');
            out.push_str(&text);
            out.push('\n');
        }
        None => {
            out.push('\n');
            match node {
                Node::Map(entries) => write_map(entries, nested_indent(indent), out)?,
                Node::List(items) => write_list(items, nested_indent(indent), out)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn write_map(entries: &[Entry], indent: usize, out: &mut String) -> Result<(), String> {
    for entry in entries {
        match entry {
            Entry::Comment(c) => {
                pad(out, indent);
                out.push('#');
                out.push_str(&String::from_utf8_lossy(c));
                out.push('\n');
            }
            Entry::Pair(k, v) => {
                pad(out, indent);
                out.push_str(&quote_if_needed(k));
                out.push(':');
                write_value(v, indent, out)?;
            }
        }
    }
    Ok(())
}

fn write_list(items: &[Node], indent: usize, out: &mut String) -> Result<(), String> {
    for item in items {
        pad(out, indent);
        match item {
            Node::Comment(c) => {
                // sops writes list comments as items; in clear they are comment lines.
                let text = String::from_utf8_lossy(c);
                if text.starts_with("ENC[") {
                    out.push_str("- ");
                    out.push_str(&text);
                } else {
                    out.push('#');
                    out.push_str(&text);
                }
                out.push('\n');
            }
            Node::Map(entries) if inline(item)?.is_none() => {
                out.push_str("- ");
                let mut nested = String::new();
                write_map(entries, indent + 2, &mut nested)?;
                out.push_str(nested.trim_start_matches(' '));
            }
            // A list in a list starts on the dash's line, as go-yaml writes it: `- - a`.
            Node::List(inner) if !inner.is_empty() && !matches!(inner[0], Node::Comment(_)) => {
                out.push_str("- ");
                let mut nested = String::new();
                write_list(inner, indent + 2, &mut nested)?;
                out.push_str(nested.trim_start_matches(' '));
            }
            Node::List(items) if !items.is_empty() => {
                out.push_str("-\n");
                write_list(items, indent + INDENT, out)?;
            }
            other => {
                out.push('-');
                write_value(other, indent, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_resolve_like_yaml_v3() {
        let doc = parse(
            b"a: 1\nb: 1.5\nc: true\nd: '1'\ne: ~\nf: 2024-01-02T03:04:05Z\ng: 0x1f\nh: hello\n",
        )
        .unwrap();
        assert_eq!(doc.get("a"), Some(&Node::Scalar(Scalar::Int(1))));
        assert_eq!(doc.get("b"), Some(&Node::Scalar(Scalar::Float(1.5))));
        assert_eq!(doc.get("c"), Some(&Node::Scalar(Scalar::Bool(true))));
        assert_eq!(doc.get("d"), Some(&Node::Scalar(Scalar::str("1"))));
        assert_eq!(doc.get("e"), Some(&Node::Null));
        assert_eq!(
            doc.get("f"),
            Some(&Node::Scalar(Scalar::Time("2024-01-02T03:04:05Z".into())))
        );
        assert_eq!(doc.get("g"), Some(&Node::Scalar(Scalar::Int(31))));
        assert_eq!(doc.get("h"), Some(&Node::Scalar(Scalar::str("hello"))));
    }

    #[test]
    fn comments_are_kept_in_place() {
        let doc = parse(b"# top\na: 1 # inline\nb:\n  # inner\n  c: x\nl:\n  - p  # item\n  - q\n")
            .unwrap();
        let Node::Map(entries) = &doc else { panic!() };
        assert!(matches!(&entries[0], Entry::Comment(c) if c.as_slice() == b" top"));
        assert!(matches!(&entries[1], Entry::Comment(c) if c.as_slice() == b" inline"));
        let Some(Node::Map(inner)) = doc.get("b") else {
            panic!()
        };
        assert!(matches!(&inner[0], Entry::Comment(c) if c.as_slice() == b" inner"));
        let Some(Node::List(items)) = doc.get("l") else {
            panic!()
        };
        assert!(matches!(&items[0], Node::Comment(c) if c.as_slice() == b" item"));
    }

    #[test]
    fn escaped_quotes_do_not_end_quoted_text() {
        assert_eq!(
            split_comment(r#""a\" #b": c # d"#),
            (r#""a\" #b": c "#, Some(" d"))
        );
        assert_eq!(
            split_comment("'it'' #s': c # d"),
            ("'it'' #s': c ", Some(" d"))
        );
        assert_eq!(split_comment(r#"k: "\\" # d"#), (r#"k: "\\" "#, Some(" d")));
    }

    #[test]
    fn block_scalars_are_not_comments() {
        let doc = parse(b"k: |\n  # not a comment\n  x\n").unwrap();
        assert_eq!(
            doc.get("k"),
            Some(&Node::Scalar(Scalar::str("# not a comment\nx\n")))
        );
    }

    #[test]
    fn emit_round_trips() {
        let src = b"# c\na: 1\nb:\n    c: \"true\"\n    d:\n        - x\n        - k: v\n          m: 2\ne: \"\"\nf: |\n    line1\n    line2\n";
        let doc = parse(src).unwrap();
        let text = emit(&doc).unwrap();
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            String::from_utf8(src.to_vec()).unwrap()
        );
        assert_eq!(parse(&text).unwrap(), doc);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
