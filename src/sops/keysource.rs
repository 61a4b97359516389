//! The data key, wrapped once per age recipient as an armored age file, and
//! unwrapped with whatever identities the caller found.

use std::io::{Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

use super::cipher::DataKey;
use super::metadata::{AgeStanza, Metadata};
use super::shamir;
use crate::keys::{Identities, Identity, Recipient};

/// Callbacks for age plugins: messages go to stderr, nothing is asked interactively.
#[derive(Clone, Copy)]
pub struct PluginUi;

impl age::Callbacks for PluginUi {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, _: &str) -> Option<age::secrecy::SecretString> {
        None
    }
}

/// Wraps the data key for each recipient. Errors are age's, as text.
pub fn wrap(key: &DataKey, recipients: &[Recipient]) -> Result<Vec<AgeStanza>, String> {
    recipients
        .iter()
        .map(|r| {
            let boxed: Box<dyn age::Recipient + Send> = match r.native() {
                Some(native) => native,
                None => {
                    let plugin = r.plugin().unwrap_or_default();
                    let p = r
                        .plugin_recipient()
                        .cloned()
                        .into_iter()
                        .collect::<Vec<_>>();
                    Box::new(
                        age::plugin::RecipientPluginV1::new(plugin, &p, &[], PluginUi)
                            .map_err(|e| format!("{r}: {e}"))?,
                    )
                }
            };
            let encryptor = age::Encryptor::with_recipients(std::iter::once(&*boxed as _))
                .map_err(|e| format!("{r}: {e}"))?;
            let mut out = Vec::with_capacity(400);
            let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)
                .map_err(|e| e.to_string())?;
            let mut writer = encryptor.wrap_output(armored).map_err(|e| e.to_string())?;
            writer.write_all(key.as_ref()).map_err(|e| e.to_string())?;
            writer
                .finish()
                .and_then(|armor| armor.finish())
                .map_err(|e| e.to_string())?;
            Ok(AgeStanza {
                recipient: r.to_string(),
                enc: String::from_utf8(out).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// Why the data key could not be unwrapped.
pub enum UnwrapError {
    /// No identity matched any stanza.
    NoMatch,
    /// Shamir key groups: fewer groups than the threshold could be opened.
    TooFewGroups { opened: usize, needed: usize },
    /// A stanza matched but is broken (edited `enc`, wrong length, …).
    Corrupt(String),
}

/// Opens one armored stanza with the identities; `Ok(None)` when none matches.
fn open(stanza: &AgeStanza, ids: &Identities) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    // Buffered: age then parses the header once, not again after every byte it reads.
    let reader = ArmoredReader::new(stanza.enc.as_bytes());
    let decryptor = age::Decryptor::new_buffered(reader).map_err(|e| one_line(&e))?;
    let plugins: Vec<Box<dyn age::Identity>> = plugin_identities(ids);
    let iter = ids
        .x25519_keys()
        .iter()
        .map(|x| x as &dyn age::Identity)
        .chain(ids.keys.iter().filter_map(|(_, id)| match id {
            Identity::Ssh(s) => Some(s as &dyn age::Identity),
            Identity::X25519(_) | Identity::Plugin(_) => None,
        }))
        .chain(plugins.iter().map(|b| b.as_ref()));
    match decryptor.decrypt(iter) {
        Ok(mut reader) => {
            let mut out = Zeroizing::new(Vec::with_capacity(33));
            reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
            Ok(Some(out))
        }
        Err(age::DecryptError::NoMatchingKeys) => Ok(None),
        Err(e) => Err(one_line(&e)),
    }
}

/// age's message without the advice it appends on further lines ("Have you tried upgrading
/// to the latest version?" for a corrupted header), so an error stays one line.
fn one_line(e: &age::DecryptError) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

fn plugin_identities(ids: &Identities) -> Vec<Box<dyn age::Identity>> {
    let plugin_ids: Vec<age::plugin::Identity> = ids
        .keys
        .iter()
        .filter_map(|(_, id)| match id {
            Identity::Plugin(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let mut names: Vec<&str> = plugin_ids.iter().map(|p| p.plugin()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            age::plugin::IdentityPluginV1::new(name, &plugin_ids, PluginUi)
                .ok()
                .map(|p| Box::new(p) as Box<dyn age::Identity>)
        })
        .collect()
}

/// Recovers the data key: from any stanza of a single group, or by combining
/// one share from each of `shamir_threshold` groups.
pub fn unwrap(meta: &Metadata, ids: &Identities) -> Result<DataKey, UnwrapError> {
    let mut parts = Vec::new();
    let mut corrupt = None;
    let needed = if meta.groups.len() > 1 {
        meta.shamir_threshold.unwrap_or(meta.groups.len()).max(1)
    } else {
        1
    };
    // Try first the stanzas wrapped for one of our own keys: opening a stanza costs
    // an X25519 exchange per identity, matched or not, and a file holds one stanza per
    // recipient (an admin's, a machine's, …). The others are still tried after them.
    let own = ids.own_recipients();
    for group in &meta.groups {
        let mut ordered: Vec<&AgeStanza> = group.iter().collect();
        ordered.sort_by_key(|s| !own.contains(&s.recipient));
        for stanza in ordered {
            match open(stanza, ids) {
                Ok(Some(part)) => {
                    parts.push(part);
                    break;
                }
                Ok(None) => {}
                Err(e) => corrupt = Some(format!("the data key for {}: {e}", stanza.recipient)),
            }
        }
        if parts.len() == needed {
            break;
        }
    }
    if parts.len() < needed {
        return Err(match corrupt {
            Some(reason) => UnwrapError::Corrupt(reason),
            None if parts.is_empty() => UnwrapError::NoMatch,
            None => UnwrapError::TooFewGroups {
                opened: parts.len(),
                needed,
            },
        });
    }
    let key = if needed == 1 && meta.groups.len() == 1 {
        parts.swap_remove(0)
    } else {
        let shares: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let combined = shamir::combine(&shares).map_err(UnwrapError::Corrupt);
        Zeroizing::new(combined?)
    };
    let bytes: [u8; 32] = key.as_slice().try_into().map_err(|_| {
        UnwrapError::Corrupt(format!("the data key is {} bytes, expected 32", key.len()))
    })?;
    Ok(Zeroizing::new(bytes))
}
