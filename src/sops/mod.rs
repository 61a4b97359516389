//! SOPS files sealed with age: read and written exactly as the reference `sops`
//! 3.11 does, so that `sops` and sops-nix open what vars writes and vars opens
//! what they write. Knows nothing of generators.
//!
//! Layers, bottom up: `cipher` (one `ENC[…]` value) → `tree` (the document, its
//! walk and MAC) → `metadata` (the `sops` section) → `keysource` (the data key
//! and age) → `store` (text formats) → this module's file-level API.

pub mod cipher;
pub mod keysource;
pub mod metadata;
pub mod shamir;
pub mod store;
pub mod tree;

use zeroize::Zeroizing;

pub use metadata::{Metadata, SOPS_VERSION};
pub use store::Format;
pub use tree::{Entry, Node, Scalar, Secret};

use crate::keys::{Identities, Recipient};
use keysource::UnwrapError;

/// Everything that can go wrong reading or writing a SOPS file.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("not a sops file: {file}: {reason}")]
    NotSops { file: String, reason: String },
    #[error("{file}: invalid {format}: {reason}")]
    Parse {
        file: String,
        format: &'static str,
        reason: String,
    },
    #[error("malformed value at {path}: {reason}")]
    BadValue { path: String, reason: String },
    #[error("MAC mismatch: the value at {path} failed authentication")]
    Tampered { path: String },
    #[error("MAC mismatch in {file}: {reason}; the file was edited or corrupted")]
    MacMismatch { file: String, reason: String },
    #[error("{file}: {source}")]
    InFile {
        file: String,
        #[source]
        source: Box<SopsError>,
    },
    #[error(
        "no identity matches {file}: it is encrypted to {}; identities tried: {}. Pass --identity FILE or set SOPS_AGE_KEY_FILE",
        recipients.join(", "),
        if tried.is_empty() { "none".to_string() } else { tried.join(", ") }
    )]
    NoMatchingIdentity {
        file: String,
        recipients: Vec<String>,
        tried: Vec<String>,
    },
    #[error(
        "{file}: the data key is split into {groups} key groups, {needed} of which are needed (shamir_threshold), but the identities opened only {opened}: it is encrypted to {}; identities tried: {}",
        recipients.join(", "),
        if tried.is_empty() { "none".to_string() } else { tried.join(", ") }
    )]
    TooFewKeyGroups {
        file: String,
        groups: usize,
        needed: usize,
        opened: usize,
        recipients: Vec<String>,
        tried: Vec<String>,
    },
    #[error("{file}: the data key could not be unwrapped: {reason}")]
    BadDataKey { file: String, reason: String },
    #[error("unknown store type {0:?}: expected binary, yaml, json, dotenv or ini")]
    UnknownFormat(String),
    #[error("{file}: vars reads {format} files but does not write them; use yaml or json")]
    ReadOnlyFormat { file: String, format: &'static str },
    #[error("{file} is already encrypted with sops")]
    AlreadyEncrypted { file: String },
    #[error("cannot encrypt: {0}")]
    Seal(String),
    #[error("no recipients: a file must be encrypted to at least one key")]
    NoRecipients,
}

impl SopsError {
    fn in_file(self, file: &str) -> SopsError {
        match self {
            SopsError::BadValue { .. } | SopsError::Tampered { .. } => SopsError::InFile {
                file: file.to_string(),
                source: Box::new(self),
            },
            other => other,
        }
    }
}

/// A parsed, still encrypted SOPS file.
#[derive(Clone, Debug)]
pub struct SopsFile {
    pub format: Format,
    pub name: String,
    /// The document without its `sops` section.
    pub tree: Node,
    pub metadata: Metadata,
}

/// Splits the `sops` key off a parsed document.
fn split_sops(node: Node) -> (Node, Option<Node>) {
    match node {
        Node::Map(entries) => {
            let mut sops = None;
            let rest = entries
                .into_iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) if k == "sops" => {
                        sops = Some(v);
                        None
                    }
                    other => Some(other),
                })
                .collect();
            (Node::Map(rest), sops)
        }
        other => (other, None),
    }
}

/// Parses plain or encrypted text of a structured format into (document, sops section).
fn parse_text(bytes: &[u8], format: Format, name: &str) -> Result<(Node, Option<Node>), SopsError> {
    let parse_err = |reason: String| SopsError::Parse {
        file: name.to_string(),
        format: format.name(),
        reason,
    };
    match format {
        Format::Yaml => store::yaml::parse(bytes).map(split_sops).map_err(parse_err),
        Format::Json | Format::Binary => {
            store::json::parse(bytes).map(split_sops).map_err(parse_err)
        }
        Format::Dotenv => store::flat::parse_dotenv(bytes).map_err(parse_err),
        Format::Ini => store::flat::parse_ini(bytes).map_err(parse_err),
    }
}

impl SopsFile {
    /// Parses an encrypted file. Nothing is decrypted.
    pub fn parse(bytes: &[u8], format: Format, name: &str) -> Result<SopsFile, SopsError> {
        let not_sops = |reason: String| SopsError::NotSops {
            file: name.to_string(),
            reason,
        };
        let (tree, sops) = match parse_text(bytes, format, name) {
            Ok(parsed) => parsed,
            Err(SopsError::Parse { reason, .. }) if format == Format::Binary => {
                return Err(not_sops(format!(
                    "not a sops binary file (JSON envelope): {reason}"
                )))
            }
            Err(e) => return Err(e),
        };
        let sops = sops.ok_or_else(|| not_sops("it has no sops metadata section".into()))?;
        let metadata = Metadata::from_node(&sops).map_err(not_sops)?;
        if format == Format::Binary {
            let data_only =
                matches!(&tree, Node::Map(e) if e.len() == 1 && tree.get("data").is_some());
            if !data_only {
                return Err(not_sops(
                    "a binary sops file holds exactly one key, \"data\", beside \"sops\"".into(),
                ));
            }
            if !matches!(tree.get("data"), Some(Node::Scalar(Scalar::Str(_)))) {
                return Err(not_sops("\"data\" is not a string".into()));
            }
        }
        Ok(SopsFile {
            format,
            name: name.to_string(),
            tree,
            metadata,
        })
    }

    /// The recipients the data key is wrapped for.
    pub fn recipients(&self) -> Vec<String> {
        self.metadata.recipients()
    }

    /// Decrypts with `ids`, verifying the MAC. A MAC mismatch is always an error.
    pub fn decrypt(&self, ids: &Identities) -> Result<Node, SopsError> {
        let key = keysource::unwrap(&self.metadata, ids).map_err(|e| match e {
            UnwrapError::NoMatch => SopsError::NoMatchingIdentity {
                file: self.name.clone(),
                recipients: self.recipients(),
                tried: ids.tried.clone(),
            },
            UnwrapError::TooFewGroups { opened, needed } => SopsError::TooFewKeyGroups {
                file: self.name.clone(),
                groups: self.metadata.groups.len(),
                needed,
                opened,
                recipients: self.recipients(),
                tried: ids.tried.clone(),
            },
            UnwrapError::Corrupt(reason) => SopsError::BadDataKey {
                file: self.name.clone(),
                reason,
            },
        })?;
        let rules = self.metadata.rules().map_err(|reason| SopsError::NotSops {
            file: self.name.clone(),
            reason,
        })?;
        let (plain, computed) = match tree::decrypt(&self.tree, &key, &rules) {
            Ok(done) => done,
            Err(SopsError::Tampered { path }) => {
                return Err(SopsError::MacMismatch {
                    file: self.name.clone(),
                    reason: format!("the value at {path} failed authentication"),
                })
            }
            Err(e) => return Err(e.in_file(&self.name)),
        };
        let aad = mac_aad(&self.metadata.lastmodified).ok_or_else(|| SopsError::NotSops {
            file: self.name.clone(),
            reason: format!(
                "sops.lastmodified {:?} is not an RFC 3339 time",
                self.metadata.lastmodified
            ),
        })?;
        let stored = cipher::decrypt(&key, &self.metadata.mac, &aad, "sops.mac").map_err(|e| {
            SopsError::MacMismatch {
                file: self.name.clone(),
                reason: match e {
                    SopsError::Tampered { .. } => {
                        "sops.mac failed authentication (mac or lastmodified changed)".into()
                    }
                    other => other.to_string(),
                },
            }
        })?;
        if stored.0.as_slice() != computed.as_bytes() {
            return Err(SopsError::MacMismatch {
                file: self.name.clone(),
                reason: "the stored MAC does not match the content".into(),
            });
        }
        Ok(plain)
    }

    /// Decrypts a binary-store file to its raw bytes.
    pub fn decrypt_binary(&self, ids: &Identities) -> Result<Secret, SopsError> {
        match self.decrypt(ids)?.get("data") {
            Some(Node::Scalar(Scalar::Str(bytes))) => Ok(bytes.clone()),
            _ => Err(SopsError::NotSops {
                file: self.name.clone(),
                reason: "\"data\" is not a string".into(),
            }),
        }
    }
}

/// The additional data of the MAC: `lastmodified` as Go formats RFC 3339
/// (whole seconds, `Z` for UTC).
fn mac_aad(lastmodified: &str) -> Option<String> {
    let t =
        time::OffsetDateTime::parse(lastmodified, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(store::yaml::format_go_time(t.replace_nanosecond(0).ok()?))
}

/// Now, as sops writes `lastmodified`.
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    store::yaml::format_go_time(now.replace_nanosecond(0).unwrap_or(now))
}

/// Encrypts a plain document for `recipients` and writes it in `format`.
pub fn encrypt_tree(
    tree: &Node,
    format: Format,
    recipients: &[Recipient],
    name: &str,
) -> Result<Vec<u8>, SopsError> {
    if recipients.is_empty() {
        return Err(SopsError::NoRecipients);
    }
    if matches!(format, Format::Dotenv | Format::Ini) {
        return Err(SopsError::ReadOnlyFormat {
            file: name.to_string(),
            format: format.name(),
        });
    }
    let key = cipher::new_data_key();
    let stanzas = keysource::wrap(&key, recipients).map_err(SopsError::Seal)?;
    let structured = format != Format::Binary;
    let mut metadata = Metadata::new(stanzas, now_rfc3339(), String::new(), structured);
    let rules = metadata.rules().map_err(SopsError::Seal)?;
    let (encrypted, mac) = tree::encrypt(tree, &key, &rules)?;
    metadata.mac = cipher::encrypt(
        &key,
        mac.as_bytes(),
        cipher::ValueType::Str,
        &metadata.lastmodified,
    );
    let mut doc = match encrypted {
        Node::Map(entries) => entries,
        _ => {
            return Err(SopsError::Parse {
                file: name.to_string(),
                format: format.name(),
                reason: "the top level must be a mapping".into(),
            })
        }
    };
    doc.push(Entry::Pair("sops".into(), metadata.to_node()));
    let doc = Node::Map(doc);
    let out = match format {
        Format::Yaml => store::yaml::emit(&doc),
        _ => store::json::emit(&doc),
    };
    out.map_err(|reason| SopsError::Parse {
        file: name.to_string(),
        format: format.name(),
        reason,
    })
}

/// Seals raw bytes in the binary store: the engine's format for every secret file.
pub fn encrypt_binary(data: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, SopsError> {
    let tree = Node::Map(vec![Entry::Pair(
        "data".into(),
        Node::Scalar(Scalar::Str(Zeroizing::new(data.to_vec()))),
    )]);
    encrypt_tree(&tree, Format::Binary, recipients, "(binary)")
}

/// Parses plaintext input for `vars sops encrypt`.
pub fn parse_plain(bytes: &[u8], format: Format, name: &str) -> Result<Node, SopsError> {
    if format == Format::Binary {
        return Ok(Node::Map(vec![Entry::Pair(
            "data".into(),
            Node::Scalar(Scalar::Str(Zeroizing::new(bytes.to_vec()))),
        )]));
    }
    let (tree, sops) = parse_text(bytes, format, name)?;
    if sops.is_some() {
        return Err(SopsError::AlreadyEncrypted {
            file: name.to_string(),
        });
    }
    if !matches!(tree, Node::Map(_)) {
        return Err(SopsError::Parse {
            file: name.to_string(),
            format: format.name(),
            reason: "the top level must be a mapping".into(),
        });
    }
    Ok(tree)
}

/// Writes a decrypted document in its own format (binary: the raw bytes).
pub fn emit_plain(tree: &Node, format: Format, name: &str) -> Result<Secret, SopsError> {
    let out = match format {
        Format::Binary => match tree.get("data") {
            Some(Node::Scalar(Scalar::Str(b))) => return Ok(b.clone()),
            _ => Err("\"data\" is missing".to_string()),
        },
        Format::Yaml => store::yaml::emit(tree),
        Format::Json => store::json::emit(tree),
        Format::Dotenv => store::flat::emit_dotenv(tree),
        Format::Ini => store::flat::emit_ini(tree),
    };
    out.map(Zeroizing::new).map_err(|reason| SopsError::Parse {
        file: name.to_string(),
        format: format.name(),
        reason,
    })
}

/// Selects a value with a sops `--extract` path like `["a"]["b"][0]`.
pub fn extract<'a>(tree: &'a Node, path: &str) -> Option<&'a Node> {
    let mut node = tree;
    let mut rest = path.trim();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let token = inner[..end].trim();
        rest = &inner[end + 1..];
        node = if let Some(key) = token
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .or_else(|| token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        {
            node.get(key)?
        } else {
            let idx: usize = token.parse().ok()?;
            match node {
                Node::List(items) => items
                    .iter()
                    .filter(|i| !matches!(i, Node::Comment(_)))
                    .nth(idx)?,
                _ => return None,
            }
        };
    }
    Some(node)
}
