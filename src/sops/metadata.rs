//! The `sops` section of a file: who can open the data key, the MAC, the
//! encryption rules and the version.

use regex::Regex;

use super::tree::{Entry, Node, Rules, Scalar};

/// The `version` vars writes: the sops release whose output it matches.
pub const SOPS_VERSION: &str = "3.11.0";

/// The data key wrapped for one age recipient: an armored age file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeStanza {
    pub recipient: String,
    pub enc: String,
}

/// The `sops` section.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// Key groups of age stanzas. A plain file has one group (`sops.age`);
    /// `sops.key_groups` gives several, combined with Shamir.
    pub groups: Vec<Vec<AgeStanza>>,
    pub shamir_threshold: Option<usize>,
    /// Other master keys (pgp, kms, …) vars cannot use, by identifier, for messages.
    pub foreign_keys: Vec<String>,
    pub lastmodified: String,
    pub mac: String,
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<String>,
    pub encrypted_regex: Option<String>,
    pub unencrypted_comment_regex: Option<String>,
    pub encrypted_comment_regex: Option<String>,
    pub mac_only_encrypted: bool,
    pub version: Option<String>,
}

const FOREIGN: [&str; 5] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"];

fn text(node: &Node) -> Option<String> {
    match node {
        Node::Scalar(Scalar::Str(b)) => String::from_utf8(b.to_vec()).ok(),
        Node::Scalar(Scalar::Time(t)) => Some(t.clone()),
        Node::Scalar(Scalar::Int(i)) => Some(i.to_string()),
        Node::Scalar(Scalar::Float(f)) => Some(super::tree::format_float(*f)),
        Node::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

impl Metadata {
    /// Reads the `sops` section; `Err` carries the reason for "not a sops file".
    pub fn from_node(node: &Node) -> Result<Metadata, String> {
        let Node::Map(entries) = node else {
            return Err("the sops section is not a mapping".into());
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut m = Metadata::default();
        let mut age = Vec::new();
        let mut mac = None;
        let mut lastmodified = None;
        for entry in entries {
            let Entry::Pair(key, value) = entry else {
                continue;
            };
            if !seen.insert(key.as_str()) {
                return Err(format!("sops.{key} appears twice"));
            }
            let string = || text(value).ok_or_else(|| format!("sops.{key} must be a string"));
            match key.as_str() {
                "age" => age = stanzas(value, "sops.age")?,
                "key_groups" => {
                    let Node::List(groups) = value else {
                        return Err("sops.key_groups must be a list".into());
                    };
                    for (i, group) in groups.iter().enumerate() {
                        let mut stanzas_of_group = Vec::new();
                        if let Node::Map(items) = group {
                            for item in items {
                                match item {
                                    Entry::Pair(k, v) if k == "age" => stanzas_of_group
                                        .extend(stanzas(v, &format!("sops.key_groups[{i}].age"))?),
                                    Entry::Pair(k, v) if FOREIGN.contains(&k.as_str()) => {
                                        m.foreign_keys.extend(foreign(k, v))
                                    }
                                    _ => {}
                                }
                            }
                        }
                        m.groups.push(stanzas_of_group);
                    }
                }
                "shamir_threshold" => {
                    let n = string()?;
                    m.shamir_threshold = Some(
                        n.parse()
                            .map_err(|_| "sops.shamir_threshold must be a number".to_string())?,
                    );
                }
                "lastmodified" => lastmodified = Some(string()?),
                "mac" => mac = Some(string()?),
                "unencrypted_suffix" => m.unencrypted_suffix = Some(string()?),
                "encrypted_suffix" => m.encrypted_suffix = Some(string()?),
                "unencrypted_regex" => m.unencrypted_regex = Some(string()?),
                "encrypted_regex" => m.encrypted_regex = Some(string()?),
                "unencrypted_comment_regex" => m.unencrypted_comment_regex = Some(string()?),
                "encrypted_comment_regex" => m.encrypted_comment_regex = Some(string()?),
                "mac_only_encrypted" => {
                    m.mac_only_encrypted = match value {
                        Node::Scalar(Scalar::Bool(b)) => *b,
                        other => text(other).as_deref() == Some("true"),
                    }
                }
                "version" => m.version = Some(string()?),
                k if FOREIGN.contains(&k) => m.foreign_keys.extend(foreign(k, value)),
                _ => {}
            }
        }
        if !age.is_empty() {
            m.groups.insert(0, age);
        }
        m.mac = mac.ok_or("sops.mac is missing")?;
        m.lastmodified = lastmodified.ok_or("sops.lastmodified is missing")?;
        if m.groups.iter().all(Vec::is_empty) {
            return Err(if m.foreign_keys.is_empty() {
                "sops.age lists no recipients".to_string()
            } else {
                format!(
                    "no age recipients: the data key is only wrapped for {} (vars supports age)",
                    m.foreign_keys.join(", ")
                )
            });
        }
        Ok(m)
    }

    /// The metadata for a new file sealed to `stanzas`, as sops 3.11 writes it.
    /// `unencrypted_suffix` is written for structured stores, not for binary.
    pub fn new(
        stanzas: Vec<AgeStanza>,
        lastmodified: String,
        mac: String,
        structured: bool,
    ) -> Metadata {
        Metadata {
            groups: vec![stanzas],
            lastmodified,
            mac,
            unencrypted_suffix: structured.then(|| "_unencrypted".to_string()),
            version: Some(SOPS_VERSION.to_string()),
            ..Metadata::default()
        }
    }

    /// The section as a tree, fields in the order sops 3.11 writes them.
    pub fn to_node(&self) -> Node {
        let s = |v: &str| Node::Scalar(Scalar::str(v));
        let mut out = Vec::new();
        let age: Vec<Node> = self
            .groups
            .iter()
            .flatten()
            .map(|st| {
                Node::Map(vec![
                    Entry::Pair("recipient".into(), s(&st.recipient)),
                    Entry::Pair("enc".into(), s(&st.enc)),
                ])
            })
            .collect();
        out.push(Entry::Pair("age".into(), Node::List(age)));
        out.push(Entry::Pair("lastmodified".into(), s(&self.lastmodified)));
        out.push(Entry::Pair("mac".into(), s(&self.mac)));
        let optional = [
            ("unencrypted_suffix", &self.unencrypted_suffix),
            ("encrypted_suffix", &self.encrypted_suffix),
            ("unencrypted_regex", &self.unencrypted_regex),
            ("encrypted_regex", &self.encrypted_regex),
            ("unencrypted_comment_regex", &self.unencrypted_comment_regex),
            ("encrypted_comment_regex", &self.encrypted_comment_regex),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                out.push(Entry::Pair(name.into(), s(v)));
            }
        }
        if self.mac_only_encrypted {
            out.push(Entry::Pair(
                "mac_only_encrypted".into(),
                Node::Scalar(Scalar::Bool(true)),
            ));
        }
        if let Some(v) = &self.version {
            out.push(Entry::Pair("version".into(), s(v)));
        }
        Node::Map(out)
    }

    /// The encryption rules; a bad regex is reported as the field's problem.
    pub fn rules(&self) -> Result<Rules, String> {
        let re = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|r| {
                    Regex::new(r).map_err(|e| format!("sops.{name} is not a valid regex: {e}"))
                })
                .transpose()
        };
        Ok(Rules {
            unencrypted_suffix: self.unencrypted_suffix.clone().filter(|s| !s.is_empty()),
            encrypted_suffix: self.encrypted_suffix.clone().filter(|s| !s.is_empty()),
            unencrypted_regex: re("unencrypted_regex", &self.unencrypted_regex)?,
            encrypted_regex: re("encrypted_regex", &self.encrypted_regex)?,
            unencrypted_comment_regex: re(
                "unencrypted_comment_regex",
                &self.unencrypted_comment_regex,
            )?,
            encrypted_comment_regex: re("encrypted_comment_regex", &self.encrypted_comment_regex)?,
            mac_only_encrypted: self.mac_only_encrypted,
        })
    }

    /// Every age recipient the data key is wrapped for, in file order.
    pub fn recipients(&self) -> Vec<String> {
        self.groups
            .iter()
            .flatten()
            .map(|s| s.recipient.clone())
            .collect()
    }
}

fn stanzas(node: &Node, what: &str) -> Result<Vec<AgeStanza>, String> {
    let Node::List(items) = node else {
        return Err(format!("{what} must be a list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(text)
                    .ok_or_else(|| format!("{what}[{i}].{name} is missing"))
            };
            Ok(AgeStanza {
                recipient: field("recipient")?,
                enc: field("enc")?,
            })
        })
        .collect()
}

fn foreign(kind: &str, node: &Node) -> Vec<String> {
    let Node::List(items) = node else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let id = ["fp", "arn", "resource_id", "vault_address", "vaultUrl"]
                .iter()
                .find_map(|f| item.get(f).and_then(text))
                .unwrap_or_default();
            format!("{kind} {id}").trim_end().to_string()
        })
        .collect()
}
