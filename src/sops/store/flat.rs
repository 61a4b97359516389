//! The dotenv and INI stores (read only): flat `key=value` documents whose
//! `sops` metadata is flattened into keys like `age__list_0__map_enc`.

use zeroize::Zeroizing;

use crate::sops::tree::{Entry, Node, Scalar};

/// `\n` in a flat value is a newline; `\\` a backslash.
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn str_node(v: &str) -> Node {
    Node::Scalar(Scalar::Str(Zeroizing::new(v.as_bytes().to_vec())))
}

/// Rebuilds the `sops` section from flattened `(key, value)` pairs.
fn unflatten(pairs: &[(String, String)]) -> Result<Node, String> {
    let mut root = Node::Map(Vec::new());
    for (key, value) in pairs {
        // "age__list_0__map_enc" -> ["age", list 0, "enc"]
        let mut node = &mut root;
        let mut rest = key.as_str();
        let first_end = rest.find("__").unwrap_or(rest.len());
        let mut segment = Seg::Key(rest[..first_end].to_string());
        rest = &rest[first_end..];
        loop {
            let next = if let Some(r) = rest.strip_prefix("__list_") {
                let end = r.find("__").unwrap_or(r.len());
                let idx: usize = r[..end]
                    .parse()
                    .map_err(|_| format!("bad flattened metadata key {key:?}"))?;
                rest = &r[end..];
                Some(Seg::Index(idx))
            } else if let Some(r) = rest.strip_prefix("__map_") {
                let end = r.find("__").unwrap_or(r.len());
                let k = r[..end].to_string();
                rest = &r[end..];
                Some(Seg::Key(k))
            } else if rest.is_empty() {
                None
            } else {
                return Err(format!("bad flattened metadata key {key:?}"));
            };
            let Some(next) = next else {
                node = child(node, &segment, None)?;
                *node = str_node(&unescape(value));
                break;
            };
            node = child(node, &segment, Some(&next))?;
            segment = next;
        }
    }
    Ok(root)
}

enum Seg {
    Key(String),
    Index(usize),
}

/// The child of `node` at `seg`, created (as a map or list, per `next`) when missing.
fn child<'a>(node: &'a mut Node, seg: &Seg, next: Option<&Seg>) -> Result<&'a mut Node, String> {
    let fresh = || match next {
        Some(Seg::Index(_)) => Node::List(Vec::new()),
        Some(Seg::Key(_)) => Node::Map(Vec::new()),
        None => Node::Null,
    };
    match (node, seg) {
        (Node::Map(entries), Seg::Key(k)) => {
            let pos = entries
                .iter()
                .position(|e| matches!(e, Entry::Pair(name, _) if name == k));
            let pos = match pos {
                Some(p) => p,
                None => {
                    entries.push(Entry::Pair(k.clone(), fresh()));
                    entries.len() - 1
                }
            };
            match &mut entries[pos] {
                Entry::Pair(_, v) => Ok(v),
                Entry::Comment(_) => Err("bad flattened metadata".into()),
            }
        }
        (Node::List(items), Seg::Index(i)) => {
            if *i > items.len() {
                return Err("flattened metadata list indexes are not contiguous".into());
            }
            if *i == items.len() {
                items.push(fresh());
            }
            Ok(&mut items[*i])
        }
        _ => Err("flattened metadata mixes lists and maps".into()),
    }
}

/// Parses a dotenv file into (document, flattened sops section).
pub fn parse_dotenv(text: &[u8]) -> Result<(Node, Option<Node>), String> {
    let src = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let mut entries = Vec::new();
    let mut meta = Vec::new();
    for (n, line) in src.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            entries.push(Entry::Comment(Zeroizing::new(comment.as_bytes().to_vec())));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE", n + 1))?;
        if let Some(k) = key.strip_prefix("sops_") {
            meta.push((k.to_string(), value.to_string()));
        } else {
            if entries
                .iter()
                .any(|e| matches!(e, Entry::Pair(existing, _) if existing == key))
            {
                return Err(format!("duplicate key {key:?}"));
            }
            entries.push(Entry::Pair(key.to_string(), str_node(&unescape(value))));
        }
    }
    let sops = if meta.is_empty() {
        None
    } else {
        Some(unflatten(&meta)?)
    };
    Ok((Node::Map(entries), sops))
}

/// Writes a plain document as dotenv.
pub fn emit_dotenv(node: &Node) -> Result<Vec<u8>, String> {
    let Node::Map(entries) = node else {
        return Err("a dotenv document is a flat mapping".into());
    };
    let mut out = String::new();
    for e in entries {
        match e {
            Entry::Comment(c) => {
                out.push('#');
                out.push_str(&String::from_utf8_lossy(c));
            }
            Entry::Pair(k, Node::Scalar(s)) => {
                out.push_str(k);
                out.push('=');
                out.push_str(&escape(&String::from_utf8_lossy(&s.to_bytes())));
            }
            Entry::Pair(k, _) => return Err(format!("dotenv value {k:?} is not a scalar")),
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Parses an INI file into (sections document, sops section).
pub fn parse_ini(text: &[u8]) -> Result<(Node, Option<Node>), String> {
    let src = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let mut sections: Vec<(String, Vec<Entry>)> = Vec::new();
    for (n, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if sections.iter().any(|(s, _)| s == name) {
                return Err(format!("duplicate section [{name}]"));
            }
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let Some((_, entries)) = sections.last_mut() else {
            return Err(format!("line {}: a key before any [section]", n + 1));
        };
        if let Some(comment) = line.strip_prefix(';').or_else(|| line.strip_prefix('#')) {
            entries.push(Entry::Comment(Zeroizing::new(comment.as_bytes().to_vec())));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
        let key = key.trim().to_string();
        if entries
            .iter()
            .any(|e| matches!(e, Entry::Pair(existing, _) if *existing == key))
        {
            return Err(format!("duplicate key {key:?}"));
        }
        entries.push(Entry::Pair(key, str_node(&unescape(value.trim()))));
    }
    let mut doc = Vec::new();
    let mut sops = None;
    for (name, entries) in sections {
        if name == "sops" {
            let pairs: Vec<(String, String)> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, Node::Scalar(Scalar::Str(v))) => {
                        Some((k.clone(), escape(&String::from_utf8_lossy(v))))
                    }
                    _ => None,
                })
                .collect();
            sops = Some(unflatten(&pairs)?);
        } else {
            doc.push(Entry::Pair(name, Node::Map(entries)));
        }
    }
    Ok((Node::Map(doc), sops))
}

/// Writes a plain document as INI.
pub fn emit_ini(node: &Node) -> Result<Vec<u8>, String> {
    let Node::Map(sections) = node else {
        return Err("an INI document is a mapping of sections".into());
    };
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        let Entry::Pair(name, Node::Map(entries)) = section else {
            return Err("an INI document is a mapping of sections".into());
        };
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("[{name}]\n"));
        for e in entries {
            match e {
                Entry::Comment(c) => out.push_str(&format!(";{}\n", String::from_utf8_lossy(c))),
                Entry::Pair(k, Node::Scalar(s)) => out.push_str(&format!(
                    "{k} = {}\n",
                    escape(&String::from_utf8_lossy(&s.to_bytes()))
                )),
                Entry::Pair(k, _) => return Err(format!("INI value {k:?} is not a scalar")),
            }
        }
    }
    Ok(out.into_bytes())
}
