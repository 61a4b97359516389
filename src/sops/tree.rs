//! The document model shared by every store, and the walk that encrypts,
//! decrypts and computes the MAC exactly as sops does.
//!
//! sops walks a document in order with the path of mapping keys leading to
//! each leaf. Every non-comment leaf's plaintext goes into a SHA-512 (bools as
//! `True`/`False`), every encrypted leaf is sealed with AAD `path:…:`, comments
//! are sealed with their parent's path, and nulls are left alone.

use regex::Regex;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::cipher::{self, DataKey, ValueType};
use super::SopsError;

/// Plaintext bytes, zeroized when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// A document node.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Map(Vec<Entry>),
    /// List items; a `Node::Comment` item is a comment inside the list.
    List(Vec<Node>),
    Scalar(Scalar),
    Comment(Secret),
    Null,
}

/// One item of a mapping: a key with its value, or a comment line.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Pair(String, Node),
    Comment(Secret),
}

/// A leaf value. `Str` holds raw bytes: the binary store's one value need not be UTF-8.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(Secret),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A timestamp, kept as Go's `time.Time.MarshalText` writes it (RFC 3339, nanoseconds trimmed).
    Time(String),
}

impl Scalar {
    pub fn str(s: &str) -> Scalar {
        Scalar::Str(Zeroizing::new(s.as_bytes().to_vec()))
    }

    /// The bytes sops feeds into the MAC and into the cipher.
    pub fn to_bytes(&self) -> Secret {
        Zeroizing::new(match self {
            Scalar::Str(b) => b.to_vec(),
            Scalar::Int(i) => i.to_string().into_bytes(),
            Scalar::Float(f) => format_float(*f).into_bytes(),
            Scalar::Bool(true) => b"True".to_vec(),
            Scalar::Bool(false) => b"False".to_vec(),
            Scalar::Time(t) => t.as_bytes().to_vec(),
        })
    }

    fn value_type(&self) -> ValueType {
        match self {
            Scalar::Str(_) => ValueType::Str,
            Scalar::Int(_) => ValueType::Int,
            Scalar::Float(_) => ValueType::Float,
            Scalar::Bool(_) => ValueType::Bool,
            Scalar::Time(_) => ValueType::Time,
        }
    }

    /// Reads back a decrypted value of type `ty`, as Go's strconv would.
    fn from_plain(bytes: Secret, ty: ValueType, path: &str) -> Result<Scalar, SopsError> {
        let text = || {
            std::str::from_utf8(&bytes).map_err(|_| SopsError::BadValue {
                path: path.to_string(),
                reason: format!("{} value is not UTF-8", ty.as_str()),
            })
        };
        let bad = |what: &str| SopsError::BadValue {
            path: path.to_string(),
            reason: format!("decrypted value is not a valid {what}"),
        };
        Ok(match ty {
            ValueType::Str | ValueType::Bytes | ValueType::Comment => Scalar::Str(bytes),
            ValueType::Int => Scalar::Int(text()?.parse().map_err(|_| bad("int"))?),
            ValueType::Float => Scalar::Float(parse_go_float(text()?).ok_or_else(|| bad("float"))?),
            ValueType::Bool => Scalar::Bool(parse_go_bool(text()?).ok_or_else(|| bad("bool"))?),
            ValueType::Time => Scalar::Time(text()?.to_string()),
        })
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, no exponent.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Which values get encrypted, from the file's metadata.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<Regex>,
    pub encrypted_regex: Option<Regex>,
    pub unencrypted_comment_regex: Option<Regex>,
    pub encrypted_comment_regex: Option<Regex>,
    pub mac_only_encrypted: bool,
}

/// sops seeds the hash with these bytes when `mac_only_encrypted` is set, so the
/// two MAC modes never agree by accident.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

impl Rules {
    fn should_encrypt(&self, path: &[String], comments: &[Vec<String>], is_comment: bool) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix {
            if path.iter().any(|k| k.ends_with(suffix.as_str())) {
                encrypted = false;
            }
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex {
            if path.iter().any(|k| re.is_match(k)) {
                encrypted = false;
            }
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        if let Some(re) = &self.unencrypted_comment_regex {
            if comments.iter().flatten().any(|c| re.is_match(c)) {
                encrypted = false;
            }
        }
        if let Some(re) = &self.encrypted_comment_regex {
            // The comment line that matches is itself left in clear: skip the
            // newest comment when judging a comment.
            let last = comments.len().saturating_sub(1);
            let last_len = comments.last().map_or(0, Vec::len);
            encrypted = comments.iter().enumerate().any(|(i, cs)| {
                cs.iter()
                    .enumerate()
                    .any(|(j, c)| !(is_comment && i == last && j + 1 == last_len) && re.is_match(c))
            });
        }
        encrypted
    }

    fn new_hash(&self) -> Sha512 {
        let mut hash = Sha512::new();
        if self.mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        hash
    }
}

/// The uppercase hex of a finished MAC hash.
fn finish(hash: Sha512) -> String {
    hash.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

enum Mode<'a> {
    Encrypt(&'a DataKey),
    Decrypt(&'a DataKey),
}

struct Walk<'a> {
    mode: Mode<'a>,
    rules: &'a Rules,
    hash: Sha512,
    path: Vec<String>,
    comments: Vec<Vec<String>>,
}

/// Encrypts every value the rules select; returns the new tree and the MAC (hex).
pub fn encrypt(root: &Node, key: &DataKey, rules: &Rules) -> Result<(Node, String), SopsError> {
    run(root, Mode::Encrypt(key), rules)
}

/// Decrypts every value the rules select; returns the plain tree and the MAC (hex)
/// computed over the plaintext, for the caller to compare.
pub fn decrypt(root: &Node, key: &DataKey, rules: &Rules) -> Result<(Node, String), SopsError> {
    run(root, Mode::Decrypt(key), rules)
}

fn run(root: &Node, mode: Mode<'_>, rules: &Rules) -> Result<(Node, String), SopsError> {
    let mut walk = Walk {
        mode,
        rules,
        hash: rules.new_hash(),
        path: Vec::new(),
        comments: Vec::new(),
    };
    let out = walk.node(root)?;
    Ok((out, finish(walk.hash)))
}

impl Walk<'_> {
    fn path_display(&self) -> String {
        if self.path.is_empty() {
            "(top level)".into()
        } else {
            self.path.join(".")
        }
    }

    fn aad(&self) -> String {
        let mut aad = self.path.join(":");
        aad.push(':');
        aad
    }

    fn node(&mut self, node: &Node) -> Result<Node, SopsError> {
        match node {
            Node::Map(entries) => {
                self.comments.push(Vec::new());
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    out.push(match entry {
                        Entry::Comment(c) => {
                            self.push_comment(c);
                            Entry::Comment(self.comment(c)?)
                        }
                        Entry::Pair(k, v) => {
                            self.path.push(k.clone());
                            let v = self.node(v);
                            self.path.pop();
                            if let Some(top) = self.comments.last_mut() {
                                top.clear();
                            }
                            Entry::Pair(k.clone(), v?)
                        }
                    });
                }
                self.comments.pop();
                Ok(Node::Map(out))
            }
            Node::List(items) => {
                self.comments.push(Vec::new());
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Node::Comment(c) = item {
                        self.push_comment(c);
                        out.push(Node::Comment(self.comment(c)?));
                    } else {
                        let node = match item {
                            Node::Scalar(sc) => match self.scalar(sc)? {
                                // sops writes list comments as encrypted items of type comment.
                                (Scalar::Str(text), ValueType::Comment) => Node::Comment(text),
                                (other, _) => Node::Scalar(other),
                            },
                            other => self.node(other)?,
                        };
                        out.push(node);
                        if let Some(top) = self.comments.last_mut() {
                            top.clear();
                        }
                    }
                }
                self.comments.pop();
                Ok(Node::List(out))
            }
            Node::Comment(c) => Ok(Node::Comment(self.comment(c)?)),
            Node::Null => Ok(Node::Null),
            Node::Scalar(s) => Ok(Node::Scalar(self.scalar(s)?.0)),
        }
    }

    fn push_comment(&mut self, c: &Secret) {
        let text = String::from_utf8_lossy(c).into_owned();
        if let Some(top) = self.comments.last_mut() {
            top.push(text);
        }
    }

    fn comment(&mut self, c: &Secret) -> Result<Secret, SopsError> {
        if !self.rules.should_encrypt(&self.path, &self.comments, true) {
            return Ok(c.clone());
        }
        let aad = self.aad();
        match self.mode {
            Mode::Encrypt(key) => Ok(Zeroizing::new(
                cipher::encrypt(key, c, ValueType::Comment, &aad).into_bytes(),
            )),
            Mode::Decrypt(key) => {
                let text = String::from_utf8_lossy(c);
                // sops accepts comments that were never encrypted (older files).
                match cipher::decrypt(key, &text, &aad, &self.path_display()) {
                    Ok((plain, _)) => Ok(plain),
                    Err(_) => Ok(c.clone()),
                }
            }
        }
    }

    /// Encrypts or decrypts one leaf; also returns the type it was sealed with.
    fn scalar(&mut self, s: &Scalar) -> Result<(Scalar, ValueType), SopsError> {
        let encrypted = self.rules.should_encrypt(&self.path, &self.comments, false);
        let in_mac = !self.rules.mac_only_encrypted || encrypted;
        match self.mode {
            Mode::Encrypt(key) => {
                let bytes = s.to_bytes();
                if in_mac {
                    self.hash.update(bytes.as_slice());
                }
                if !encrypted {
                    return Ok((s.clone(), s.value_type()));
                }
                let enc = cipher::encrypt(key, &bytes, s.value_type(), &self.aad());
                Ok((
                    Scalar::Str(Zeroizing::new(enc.into_bytes())),
                    s.value_type(),
                ))
            }
            Mode::Decrypt(key) => {
                let (plain, ty) = if encrypted {
                    let Scalar::Str(enc) = s else {
                        return Err(SopsError::BadValue {
                            path: self.path_display(),
                            reason: "expected an encrypted string value".into(),
                        });
                    };
                    let enc = std::str::from_utf8(enc).map_err(|_| SopsError::BadValue {
                        path: self.path_display(),
                        reason: "encrypted value is not UTF-8".into(),
                    })?;
                    let path = self.path_display();
                    let (bytes, ty) = cipher::decrypt(key, enc, &self.aad(), &path)?;
                    (Scalar::from_plain(bytes, ty, &path)?, ty)
                } else {
                    (s.clone(), s.value_type())
                };
                // Comments, including list comments sealed as items, stay out of the MAC.
                if in_mac && ty != ValueType::Comment {
                    self.hash.update(plain.to_bytes().as_slice());
                }
                Ok((plain, ty))
            }
        }
    }
}

impl Node {
    /// Looks up a mapping key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|e| match e {
                Entry::Pair(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The nesting depth (1 for a scalar), computed without recursion.
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((node, d)) = stack.pop() {
            max = max.max(d);
            match node {
                Node::Map(entries) => stack.extend(entries.iter().filter_map(|e| match e {
                    Entry::Pair(_, v) => Some((v, d + 1)),
                    Entry::Comment(_) => None,
                })),
                Node::List(items) => stack.extend(items.iter().map(|v| (v, d + 1))),
                _ => {}
            }
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Node {
        Node::Map(vec![
            Entry::Comment(Zeroizing::new(b" top".to_vec())),
            Entry::Pair("a".into(), Node::Scalar(Scalar::str("x"))),
            Entry::Pair("b_unencrypted".into(), Node::Scalar(Scalar::Bool(true))),
            Entry::Pair(
                "l".into(),
                Node::List(vec![Node::Scalar(Scalar::Int(7)), Node::Null]),
            ),
        ])
    }

    #[test]
    fn mac_is_the_same_from_both_sides_and_skips_comments_and_nulls() {
        let key = cipher::new_data_key();
        let rules = Rules {
            unencrypted_suffix: Some("_unencrypted".into()),
            ..Rules::default()
        };
        let (enc, mac1) = encrypt(&doc(), &key, &rules).unwrap();
        let (plain, mac2) = decrypt(&enc, &key, &rules).unwrap();
        assert_eq!(mac1, mac2);
        assert_eq!(plain, doc());
        let mut h = Sha512::new();
        h.update(b"xTrue7");
        assert_eq!(mac1, finish(h));
        // the unencrypted value stays in clear
        assert_eq!(
            enc.get("b_unencrypted"),
            Some(&Node::Scalar(Scalar::Bool(true)))
        );
    }

    #[test]
    fn go_float_format() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(2.0), "2");
        assert_eq!(format_float(12345678901234.0), "12345678901234");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
