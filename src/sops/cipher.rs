//! One SOPS value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
//!
//! AES-256-GCM with a 32-byte IV and a 16-byte tag; the additional data is the
//! value's key path joined with `:` plus a trailing `:`. Empty plaintexts are not
//! encrypted at all (they stay the empty string), exactly as sops does.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use super::SopsError;

/// AES-256-GCM with sops' 32-byte nonce.
type Aes256Gcm32 = AesGcm<Aes256, aes_gcm::aead::consts::U32>;

const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// The 32-byte data key of one SOPS file. Zeroized when dropped.
pub type DataKey = Zeroizing<[u8; 32]>;

/// The `type:` of an encrypted value: how its plaintext bytes are read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    Time,
    Bytes,
    Comment,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Time => "time",
            ValueType::Bytes => "bytes",
            ValueType::Comment => "comment",
        }
    }

    fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "time" => ValueType::Time,
            "bytes" => ValueType::Bytes,
            "comment" => ValueType::Comment,
            _ => return None,
        })
    }
}

/// A freshly generated random data key.
pub fn new_data_key() -> DataKey {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

/// Encrypts `plaintext` under `key` with additional data `aad`.
/// An empty plaintext gives the empty string, as in sops.
pub fn encrypt(key: &DataKey, plaintext: &[u8], ty: ValueType, aad: &str) -> String {
    if plaintext.is_empty() {
        return String::new();
    }
    let mut iv = [0u8; IV_LEN];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm32::new(key.as_ref().into());
    // Encryption with a valid key and nonce length cannot fail.
    let sealed = cipher
        .encrypt(
            (&iv).into(),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    let (data, tag) = sealed.split_at(sealed.len().saturating_sub(TAG_LEN));
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        B64.encode(data),
        B64.encode(iv),
        B64.encode(tag),
        ty.as_str()
    )
}

/// True when `s` has the shape of an encrypted value (used to tell encrypted
/// documents from plain ones).
pub fn looks_encrypted(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,data:")
}

/// The parts of an `ENC[...]` string.
struct Parsed {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    ty: ValueType,
}

fn parse(value: &str) -> Result<Parsed, String> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,data:")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| "not an ENC[AES256_GCM,...] value".to_string())?;
    let (data, rest) = inner
        .split_once(",iv:")
        .ok_or_else(|| "missing iv".to_string())?;
    let (iv, rest) = rest
        .split_once(",tag:")
        .ok_or_else(|| "missing tag".to_string())?;
    let (tag, ty) = rest
        .split_once(",type:")
        .ok_or_else(|| "missing type".to_string())?;
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|e| format!("{what} is not valid base64: {e}"))
    };
    let parsed = Parsed {
        data: decode("data", data)?,
        iv: decode("iv", iv)?,
        tag: decode("tag", tag)?,
        ty: ValueType::parse(ty).ok_or_else(|| format!("unknown type {ty:?}"))?,
    };
    if parsed.iv.len() != IV_LEN {
        return Err(format!(
            "iv is {} bytes, expected {IV_LEN}",
            parsed.iv.len()
        ));
    }
    if parsed.tag.len() != TAG_LEN {
        return Err(format!(
            "tag is {} bytes, expected {TAG_LEN}",
            parsed.tag.len()
        ));
    }
    Ok(parsed)
}

/// Decrypts one value. The empty string decrypts to an empty `str`.
/// `path` names the value in error messages.
pub fn decrypt(
    key: &DataKey,
    value: &str,
    aad: &str,
    path: &str,
) -> Result<(Zeroizing<Vec<u8>>, ValueType), SopsError> {
    if value.is_empty() {
        return Ok((Zeroizing::new(Vec::new()), ValueType::Str));
    }
    let parsed = parse(value).map_err(|reason| SopsError::BadValue {
        path: path.to_string(),
        reason,
    })?;
    let cipher = Aes256Gcm32::new(key.as_ref().into());
    let mut sealed = parsed.data;
    sealed.extend_from_slice(&parsed.tag);
    let plain = cipher
        .decrypt(
            parsed.iv.as_slice().into(),
            Payload {
                msg: &sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SopsError::Tampered {
            path: path.to_string(),
        })?;
    Ok((Zeroizing::new(plain), parsed.ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let key = new_data_key();
        let enc = encrypt(&key, b"hello", ValueType::Str, "a:b:");
        let (plain, ty) = decrypt(&key, &enc, "a:b:", "a.b").unwrap();
        assert_eq!(plain.as_slice(), b"hello");
        assert_eq!(ty, ValueType::Str);
        assert!(matches!(
            decrypt(&key, &enc, "a:c:", "a.c"),
            Err(SopsError::Tampered { .. })
        ));
    }

    #[test]
    fn empty_plaintext_is_not_encrypted() {
        let key = new_data_key();
        assert_eq!(encrypt(&key, b"", ValueType::Str, "x:"), "");
        let (plain, ty) = decrypt(&key, "", "x:", "x").unwrap();
        assert!(plain.is_empty());
        assert_eq!(ty, ValueType::Str);
    }

    #[test]
    fn malformed_values_name_the_problem() {
        let key = new_data_key();
        let err = decrypt(
            &key,
            "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]",
            "x:",
            "x",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed value at x: iv is 1 bytes, expected 32"
        );
    }
}
