//! Identities (what decrypts) and recipients (what we encrypt to), found the way
//! sops finds them, and the clan-compatible `key.json` files.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use bech32::ToBase32;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

mod x25519;
pub use x25519::X25519Key;

/// Errors about keys and key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid recipient {}: expected an age1… key, an ssh-ed25519/ssh-rsa public key or an age plugin recipient", shown(.0))]
    BadRecipient(String),
    #[error("{path}: {reason}")]
    BadIdentityFile { path: String, reason: String },
    #[error("{path}: {reason}")]
    BadKeyJson { path: String, reason: String },
    #[error("SOPS_AGE_KEY_CMD failed: {0}")]
    KeyCmd(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A value for a message: quoted, and cut after 80 characters, so that a hostile key file
/// cannot flood the terminal.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

// ---------------------------------------------------------------- recipients

/// A public key to encrypt to, as written in sops metadata and key.json.
#[derive(Clone)]
pub struct Recipient {
    text: String,
    kind: RecipientKind,
}

#[derive(Clone)]
enum RecipientKind {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
    Plugin(age::plugin::Recipient),
}

impl Recipient {
    /// The canonical text: `age1…`, `ssh-ed25519 AAAA…` (without comment) or `age1plugin…`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The plugin name for plugin recipients.
    pub fn plugin(&self) -> Option<&str> {
        match &self.kind {
            RecipientKind::Plugin(p) => Some(p.plugin()),
            _ => None,
        }
    }

    /// age's recipient for non-plugin keys (plugins are grouped by the sealer).
    pub fn native(&self) -> Option<Box<dyn age::Recipient + Send>> {
        match &self.kind {
            RecipientKind::X25519(r) => Some(Box::new(r.clone())),
            RecipientKind::Ssh(r) => Some(Box::new(r.clone())),
            RecipientKind::Plugin(_) => None,
        }
    }

    pub(crate) fn plugin_recipient(&self) -> Option<&age::plugin::Recipient> {
        match &self.kind {
            RecipientKind::Plugin(p) => Some(p),
            _ => None,
        }
    }
}

impl FromStr for Recipient {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.starts_with("ssh-") {
            // Drop the comment: the recipient is the key type and blob.
            let text = s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            let r = text
                .parse::<age::ssh::Recipient>()
                .map_err(|_| KeyError::BadRecipient(s.to_string()))?;
            return Ok(Recipient {
                text,
                kind: RecipientKind::Ssh(r),
            });
        }
        if s.starts_with("age1") && !s.contains(char::is_whitespace) {
            if let Ok(r) = s.parse::<age::x25519::Recipient>() {
                return Ok(Recipient {
                    text: r.to_string(),
                    kind: RecipientKind::X25519(r),
                });
            }
            if let Ok(p) = s.parse::<age::plugin::Recipient>() {
                return Ok(Recipient {
                    text: s.to_string(),
                    kind: RecipientKind::Plugin(p),
                });
            }
        }
        Err(KeyError::BadRecipient(s.to_string()))
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.text)
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Recipient {}
impl PartialOrd for Recipient {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Recipient {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

// ---------------------------------------------------------------- identities

/// One private key.
#[derive(Clone)]
pub enum Identity {
    X25519(age::x25519::Identity),
    Ssh(age::ssh::Identity),
    Plugin(age::plugin::Identity),
}

impl Identity {
    /// The matching recipient, when it can be computed without a plugin.
    pub fn to_recipient(&self) -> Option<Recipient> {
        match self {
            Identity::X25519(i) => i.to_public().to_string().parse().ok(),
            Identity::Ssh(i) => age::ssh::Recipient::try_from(i.clone())
                .ok()
                .and_then(|r| r.to_string().parse().ok()),
            Identity::Plugin(_) => None,
        }
    }
}

/// Where an identity came from, for messages ("which identity sources were tried").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source(pub String);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every identity found, with the sources that were looked at.
#[derive(Clone, Default)]
pub struct Identities {
    pub keys: Vec<(Source, Identity)>,
    /// Every source looked at, including those that held nothing.
    pub tried: Vec<String>,
    /// The recipients of `keys` that can be computed without a plugin, kept as they are
    /// added: deriving one costs a scalar multiplication, too much to repeat per file.
    recipients: Vec<String>,
    /// The X25519 identities of `keys`, each with its public key derived once.
    x25519: Vec<X25519Key>,
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The recipients (`age1…`, `ssh-…`) of the identities that can name theirs without a
    /// plugin, in the order the identities were added.
    pub fn own_recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The X25519 identities, ready to unwrap stanzas (see [`X25519Key`]).
    pub fn x25519_keys(&self) -> &[X25519Key] {
        &self.x25519
    }

    fn push(&mut self, source: &Source, id: Identity) {
        if let Some(r) = id.to_recipient() {
            self.recipients.push(r.to_string());
        }
        if let Identity::X25519(x) = &id {
            self.x25519.extend(X25519Key::new(x));
        }
        self.keys.push((source.clone(), id));
    }

    /// Adds every identity in `text` (an age key file, or an OpenSSH private key).
    pub fn add_text(&mut self, source: &str, text: &[u8]) -> Result<usize, KeyError> {
        let before = self.keys.len();
        let src = Source(source.to_string());
        if is_openssh_private_key(text) {
            for id in ssh_identities(source, text)? {
                self.push(&src, id);
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = Zeroizing::new(line.map_err(|_| KeyError::BadIdentityFile {
                    path: source.to_string(),
                    reason: "not UTF-8 text".into(),
                })?);
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let id = if let Ok(x) = line.parse::<age::x25519::Identity>() {
                    Identity::X25519(x)
                } else if let Ok(p) = line.parse::<age::plugin::Identity>() {
                    Identity::Plugin(p)
                } else {
                    return Err(KeyError::BadIdentityFile {
                        path: source.to_string(),
                        reason: format!(
                            "line {}: not an age identity (AGE-SECRET-KEY-1… or AGE-PLUGIN-…) or an OpenSSH private key",
                            n + 1
                        ),
                    });
                };
                self.push(&src, id);
            }
        }
        Ok(self.keys.len() - before)
    }

    /// Reads an identity file (`--identity FILE`, `SOPS_AGE_KEY_FILE`, keys.txt, an ssh key).
    pub fn add_file(&mut self, label: &str, path: &Path) -> Result<usize, KeyError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(io_err(path))?);
        self.add_text(label, &bytes)
    }

    /// Finds identities as sops does, after the explicit `--identity` files:
    /// `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`,
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt` (default `~/.config/sops/age/keys.txt`),
    /// and `SOPS_AGE_SSH_PRIVATE_KEY_FILE` (default `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`).
    pub fn discover(explicit: &[PathBuf]) -> Result<Identities, KeyError> {
        let mut ids = Identities::default();
        for path in explicit {
            let label = format!("--identity {}", path.display());
            ids.tried.push(label.clone());
            ids.add_file(&label, path)?;
        }
        if let Some(text) = std::env::var_os("SOPS_AGE_KEY") {
            ids.tried.push("SOPS_AGE_KEY".into());
            let text = Zeroizing::new(text.into_encoded_bytes());
            ids.add_text("SOPS_AGE_KEY", &text)?;
        } else {
            ids.tried.push("SOPS_AGE_KEY (unset)".into());
        }
        if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE") {
            let path = PathBuf::from(path);
            let label = format!("SOPS_AGE_KEY_FILE={}", path.display());
            ids.tried.push(label.clone());
            ids.add_file(&label, &path)?;
        }
        if let Some(cmd) = std::env::var_os("SOPS_AGE_KEY_CMD") {
            let cmd = cmd.to_string_lossy().into_owned();
            ids.tried.push(format!("SOPS_AGE_KEY_CMD={cmd}"));
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| KeyError::KeyCmd(e.to_string()))?;
            let stdout = Zeroizing::new(out.stdout);
            if !out.status.success() {
                return Err(KeyError::KeyCmd(format!(
                    "{cmd:?} exited with {}",
                    out.status
                )));
            }
            ids.add_text("SOPS_AGE_KEY_CMD", &stdout)?;
        }
        let keys_txt = default_keys_txt();
        if let Some(path) = keys_txt {
            if path.exists() {
                let label = path.display().to_string();
                ids.tried.push(label.clone());
                ids.add_file(&label, &path)?;
            } else {
                ids.tried.push(format!("{} (not found)", path.display()));
            }
        }
        match std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE") {
            Some(path) => {
                let path = PathBuf::from(path);
                let label = format!("SOPS_AGE_SSH_PRIVATE_KEY_FILE={}", path.display());
                ids.tried.push(label.clone());
                ids.add_file(&label, &path)?;
            }
            None => {
                if let Some(home) = std::env::var_os("HOME") {
                    for name in ["id_ed25519", "id_rsa"] {
                        let path = Path::new(&home).join(".ssh").join(name);
                        if path.exists() {
                            let label = path.display().to_string();
                            ids.tried.push(label.clone());
                            // An unreadable or passphrase-protected default key is skipped, as sops does.
                            let _ = ids.add_file(&label, &path);
                        }
                    }
                }
            }
        }
        Ok(ids)
    }
}

/// `$XDG_CONFIG_HOME/sops/age/keys.txt`, else `~/.config/sops/age/keys.txt`.
pub fn default_keys_txt() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("sops/age/keys.txt"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/sops/age/keys.txt"))
}

fn is_openssh_private_key(text: &[u8]) -> bool {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    text[start..].starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        || text[start..].starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
}

/// An OpenSSH private key as identities: the ssh identity itself and, for
/// ed25519, the X25519 identity ssh-to-age derives from it.
fn ssh_identities(source: &str, text: &[u8]) -> Result<Vec<Identity>, KeyError> {
    let bad = |reason: &str| KeyError::BadIdentityFile {
        path: source.to_string(),
        reason: reason.to_string(),
    };
    let id = age::ssh::Identity::from_buffer(text, Some(source.to_string()))
        .map_err(|e| bad(&format!("not a usable OpenSSH private key: {e}")))?;
    let mut out = Vec::new();
    match &id {
        age::ssh::Identity::Unencrypted(_) => {
            if let Some(seed) = openssh_ed25519_seed(text) {
                out.push(Identity::X25519(ssh_to_age(seed.as_ref())?));
            }
        }
        age::ssh::Identity::Encrypted(_) => {
            return Err(bad(
                "the OpenSSH key is passphrase-protected; vars cannot prompt for it",
            ))
        }
        age::ssh::Identity::Unsupported(_) => return Err(bad("unsupported OpenSSH key type")),
    }
    out.push(Identity::Ssh(id));
    Ok(out)
}

/// The 32-byte seed of an unencrypted OpenSSH ed25519 private key
/// (`openssh-key-v1`: cipher "none", one key; the private field is seed ‖ public).
/// age parses the key for ssh-ed25519 stanzas but does not expose the seed.
fn openssh_ed25519_seed(text: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    use base64::Engine;
    let text = std::str::from_utf8(text).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let blob = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?,
    );
    let mut rest: &[u8] = blob.strip_prefix(b"openssh-key-v1\0")?;
    fn string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + len)?;
        *rest = &rest[4 + len..];
        Some(s)
    }
    if string(&mut rest)? != b"none" {
        return None;
    }
    string(&mut rest)?; // kdf name
    string(&mut rest)?; // kdf options
    rest = rest.get(4..)?; // number of keys
    string(&mut rest)?; // public key
    let mut private = string(&mut rest)?;
    private = private.get(8..)?; // two check integers
    if string(&mut private)? != b"ssh-ed25519" {
        return None;
    }
    string(&mut private)?; // public key
    let pair = string(&mut private)?;
    let seed: [u8; 32] = pair.get(..32)?.try_into().ok()?;
    Some(Zeroizing::new(seed))
}

/// ssh-to-age: the X25519 scalar is the first 32 bytes of SHA-512 of the ed25519 seed.
pub fn ssh_to_age(seed: &[u8]) -> Result<age::x25519::Identity, KeyError> {
    let digest: Zeroizing<[u8; 64]> = Zeroizing::new(Sha512::digest(seed).into());
    let data = (&digest[..32]).to_base32();
    let encoded = Zeroizing::new(
        bech32::encode("age-secret-key-", data, bech32::Variant::Bech32)
            .map_err(|e| KeyError::BadRecipient(e.to_string()))?
            .to_uppercase(),
    );
    encoded
        .parse()
        .map_err(|e: &str| KeyError::BadRecipient(e.to_string()))
}

/// A fresh X25519 identity and its text form (`AGE-SECRET-KEY-1…`).
pub fn generate_identity() -> (age::x25519::Identity, Zeroizing<String>) {
    let id = age::x25519::Identity::generate();
    let text = Zeroizing::new(id.to_string().expose_secret().to_string());
    (id, text)
}

// ---------------------------------------------------------------- key.json

/// Reads a clan `key.json`: `{"publickey": "...", "type": "age"|"ssh"}` or a list of those.
pub fn read_key_json(path: &Path) -> Result<Vec<Recipient>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_key_json(&text, &path.display().to_string())
}

/// Parses key.json text; `name` is used in messages.
pub fn parse_key_json(text: &str, name: &str) -> Result<Vec<Recipient>, KeyError> {
    let bad = |reason: String| KeyError::BadKeyJson {
        path: name.to_string(),
        reason,
    };
    // serde_json keeps the last of two equal keys: refuse them, or a reviewer could read one
    // key where vars uses another.
    no_duplicate_keys(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let entries: Vec<(String, &serde_json::Value)> = match &value {
        serde_json::Value::Object(_) => vec![(String::new(), &value)],
        serde_json::Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("[{i}]."), v))
            .collect(),
        serde_json::Value::Array(_) => return Err(bad("the list of keys is empty".into())),
        _ => {
            return Err(bad(
                "expected an object {\"publickey\": ..., \"type\": \"age\"} or a list of them"
                    .into(),
            ))
        }
    };
    let mut out = Vec::new();
    for (prefix, entry) in entries {
        let obj = entry
            .as_object()
            .ok_or_else(|| bad(format!("{prefix}: expected an object")))?;
        if let Some(unknown) = obj.keys().find(|k| *k != "publickey" && *k != "type") {
            return Err(bad(format!(
                "{prefix}{unknown}: unknown field, expected \"publickey\" and \"type\""
            )));
        }
        let key = match obj.get("publickey") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(bad(format!("{prefix}publickey: expected a string"))),
            None => return Err(bad(format!("{prefix}publickey: missing field"))),
        };
        let kind = match obj.get("type") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            None => "age",
            Some(_) => return Err(bad(format!("{prefix}type: expected \"age\" or \"ssh\""))),
        };
        let recipient = match kind {
            "age" if key.starts_with("age1") => key.parse::<Recipient>(),
            "ssh" if key.starts_with("ssh-") => key.parse::<Recipient>(),
            "age" | "ssh" => Err(KeyError::BadRecipient(key.clone())),
            other => {
                return Err(bad(format!(
                    "{prefix}type: expected \"age\" or \"ssh\", got {other:?}"
                )))
            }
        }
        .map_err(|_| {
            bad(format!(
                "{prefix}publickey: not a valid {kind} public key: {}",
                shown(key)
            ))
        })?;
        out.push(recipient);
    }
    Ok(out)
}

/// Fails on the first object that repeats a key.
fn no_duplicate_keys(text: &str) -> Result<(), serde_json::Error> {
    use serde::de::{Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Strict;
    impl<'de> serde::Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
            d.deserialize_any(Strict)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = Strict;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_unit<E>(self) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
            while seq.next_element::<Strict>()?.is_some() {}
            Ok(Strict)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                map.next_value::<Strict>()?;
            }
            Ok(Strict)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserialize::deserialize(&mut de).map(|_: Strict| ())?;
    de.end()
}

/// The key.json text for these recipients (one object, or a list when several).
pub fn key_json_text(recipients: &[Recipient]) -> String {
    let entry = |r: &Recipient| {
        serde_json::json!({
            "publickey": r.as_str(),
            "type": if r.as_str().starts_with("ssh-") { "ssh" } else { "age" },
        })
    };
    let value = match recipients {
        [one] => entry(one),
        many => serde_json::Value::Array(many.iter().map(entry).collect()),
    };
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOPS_NIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/sops-nix/");

    #[test]
    fn ssh_to_age_matches_the_reference_conversion() {
        let Ok(key) = std::fs::read(format!("{SOPS_NIX}ssh-ed25519-key")) else {
            return;
        };
        let expected =
            std::fs::read_to_string(format!("{SOPS_NIX}ssh-ed25519-key.ssh-to-age.txt")).unwrap();
        let mut ids = Identities::default();
        assert_eq!(ids.add_text("k", &key).unwrap(), 2);
        let Identity::X25519(x) = &ids.keys[0].1 else {
            panic!("first identity is the derived X25519 one")
        };
        assert_eq!(
            x.to_string().expose_secret(),
            expected
                .lines()
                .find(|l| l.starts_with("AGE-"))
                .unwrap()
                .trim()
        );
    }

    #[test]
    fn key_json_forms_and_errors() {
        let one = r#"{"publickey": "age1qm0p4vf9jvcnn43s6l4prk8zn6cx0ep9gzvevxecv729xz540v8qa742eg", "type": "age"}"#;
        assert_eq!(parse_key_json(one, "k.json").unwrap().len(), 1);
        let text = key_json_text(&parse_key_json(one, "k.json").unwrap());
        assert_eq!(parse_key_json(&text, "k.json").unwrap().len(), 1);
        let err = parse_key_json(r#"{"publickey": "nope", "type": "age"}"#, "k.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.json: publickey: not a valid age public key: \"nope\""
        );
        let err = parse_key_json(r#"[{"publickey": 1}]"#, "k.json").unwrap_err();
        assert_eq!(err.to_string(), "k.json: [0].publickey: expected a string");
        let err = parse_key_json(r#"{"publickey": "age1x", "type": "gpg"}"#, "k.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.json: type: expected \"age\" or \"ssh\", got \"gpg\""
        );
    }
}
