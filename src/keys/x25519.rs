//! An age X25519 identity that keeps its public key.
//!
//! Unwrapping an X25519 stanza needs the identity's public key (it is half of the HKDF
//! salt), and age's own identity derives it again, with a base-point multiplication, for
//! every stanza it tries: one per sealed file, a tenth of what `vars activate` spends on
//! 1000 secrets (measured with `perf`, issue 6). [`X25519Key`] derives it once and
//! otherwise unwraps exactly as the age specification says (c2sp.org/age, "X25519
//! recipient stanza"), with age-core's own primitives:
//!
//! * the stanza is `X25519 <ephemeral share>` with the share in canonical unpadded
//!   base64 of 32 bytes, and a body of 32 bytes; anything else is an invalid header;
//! * an all-zero shared secret (a low-order share) is an invalid header;
//! * the wrap key is HKDF-SHA-256 with salt `share ‖ public key`, the shared secret as
//!   input and the label `age-encryption.org/v1/X25519`;
//! * the body is the file key under ChaCha20-Poly1305 with a zero nonce; when it does
//!   not open, the stanza is someone else's (`None`), as in age.

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::primitives::{aead_decrypt, hkdf};
use base64::Engine;
use bech32::FromBase32;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const TAG: &str = "X25519";
const LABEL: &[u8] = b"age-encryption.org/v1/X25519";
/// ChaCha20-Poly1305's tag.
const TAG_BYTES: usize = 16;

/// An X25519 identity with its public key derived once.
#[derive(Clone)]
pub struct X25519Key {
    secret: StaticSecret,
    public: PublicKey,
}

impl X25519Key {
    /// The same key as age's identity; `None` only if its text form does not decode,
    /// which age's own parser already excludes.
    pub fn new(identity: &age::x25519::Identity) -> Option<X25519Key> {
        let text = identity.to_string();
        let (_, data, _) = bech32::decode(text.expose_secret()).ok()?;
        let bytes = Zeroizing::new(Vec::<u8>::from_base32(&data).ok()?);
        let scalar: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.as_slice().try_into().ok()?);
        let secret = StaticSecret::from(*scalar);
        let public = PublicKey::from(&secret);
        Some(X25519Key { secret, public })
    }
}

/// The ephemeral share: exactly one argument, canonical unpadded base64 of 32 bytes.
fn ephemeral_share(args: &[String]) -> Option<PublicKey> {
    let [arg] = args else { return None };
    // STANDARD_NO_PAD rejects padding and non-zero trailing bits: only the canonical
    // encoding decodes.
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(arg)
        .ok()?;
    let share: [u8; 32] = bytes.try_into().ok()?;
    Some(PublicKey::from(share))
}

impl age::Identity for X25519Key {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        let Some(share) = ephemeral_share(&stanza.args) else {
            return Some(Err(age::DecryptError::InvalidHeader));
        };
        if stanza.body.len() != FILE_KEY_BYTES + TAG_BYTES {
            return Some(Err(age::DecryptError::InvalidHeader));
        }
        let shared = self.secret.diffie_hellman(&share);
        if !shared.was_contributory() {
            return Some(Err(age::DecryptError::InvalidHeader));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(share.as_bytes());
        salt[32..].copy_from_slice(self.public.as_bytes());
        let wrap_key = Zeroizing::new(hkdf(&salt, LABEL, shared.as_bytes()));
        let file_key = Zeroizing::new(aead_decrypt(&wrap_key, FILE_KEY_BYTES, &stanza.body).ok()?);
        Some(Ok(FileKey::init_with_mut(|k| k.copy_from_slice(&file_key))))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use age::Identity as _;

    use super::*;

    fn seal(recipient: &age::x25519::Recipient, data: &[u8]) -> Vec<u8> {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .unwrap();
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap();
        out
    }

    fn open(sealed: &[u8], id: &dyn age::Identity) -> Result<Vec<u8>, age::DecryptError> {
        let d = age::Decryptor::new_buffered(sealed)?;
        let mut r = d.decrypt(std::iter::once(id))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        Ok(out)
    }

    /// The stanza of a file age sealed to `recipient`.
    fn stanza_of(sealed: &[u8]) -> Stanza {
        let text = String::from_utf8_lossy(sealed);
        let line = text.lines().nth(1).unwrap();
        let body = text.lines().nth(2).unwrap();
        let args: Vec<String> = line
            .strip_prefix("-> X25519 ")
            .unwrap()
            .split(' ')
            .map(str::to_string)
            .collect();
        Stanza {
            tag: TAG.into(),
            args,
            body: base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(body)
                .unwrap(),
        }
    }

    fn copy(s: &Stanza) -> Stanza {
        Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        }
    }

    #[test]
    fn opens_what_age_seals_and_only_its_own() {
        let ours = age::x25519::Identity::generate();
        let theirs = age::x25519::Identity::generate();
        let key = X25519Key::new(&ours).unwrap();
        assert_eq!(key.public.as_bytes().len(), 32);
        let sealed = seal(&ours.to_public(), b"the data key");
        assert_eq!(open(&sealed, &key).unwrap(), b"the data key");
        assert_eq!(open(&sealed, &ours).unwrap(), b"the data key");
        let other = seal(&theirs.to_public(), b"not ours");
        assert!(matches!(
            open(&other, &key),
            Err(age::DecryptError::NoMatchingKeys)
        ));
    }

    #[test]
    fn same_file_key_as_age() {
        let ours = age::x25519::Identity::generate();
        let key = X25519Key::new(&ours).unwrap();
        let stanza = stanza_of(&seal(&ours.to_public(), b"x"));
        let a = key.unwrap_stanza(&stanza).unwrap().unwrap();
        let b = age::Identity::unwrap_stanza(&ours, &stanza)
            .unwrap()
            .unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn malformed_stanzas_are_invalid_headers_as_in_age() {
        let ours = age::x25519::Identity::generate();
        let key = X25519Key::new(&ours).unwrap();
        let good = stanza_of(&seal(&ours.to_public(), b"x"));
        let invalid = |s: &Stanza| {
            let mine = key.unwrap_stanza(s);
            let ages = age::Identity::unwrap_stanza(&ours, s);
            assert!(
                matches!(mine, Some(Err(age::DecryptError::InvalidHeader))),
                "{:?}",
                s.args
            );
            assert!(matches!(ages, Some(Err(age::DecryptError::InvalidHeader))));
        };
        let mut padded = copy(&good);
        padded.args[0].push('=');
        invalid(&padded);
        let mut two_args = copy(&good);
        two_args.args.push("x".into());
        invalid(&two_args);
        let mut short_body = copy(&good);
        short_body.body.pop();
        invalid(&short_body);
        // A non-canonical share: the last character carries non-zero unused bits.
        let mut noncanonical = copy(&good);
        let last = noncanonical.args[0].pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let i = alphabet.find(last).unwrap();
        noncanonical.args[0].push(alphabet.as_bytes()[i ^ 1] as char);
        invalid(&noncanonical);
        // A low-order share (all zeros): the shared secret is zero.
        let mut low_order = copy(&good);
        low_order.args[0] = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0u8; 32]);
        invalid(&low_order);
    }

    #[test]
    fn other_tags_and_tampered_bodies_are_not_ours() {
        let ours = age::x25519::Identity::generate();
        let key = X25519Key::new(&ours).unwrap();
        let good = stanza_of(&seal(&ours.to_public(), b"x"));
        let mut other_tag = copy(&good);
        other_tag.tag = "ssh-ed25519".into();
        assert!(key.unwrap_stanza(&other_tag).is_none());
        let mut tampered = copy(&good);
        tampered.body[0] ^= 1;
        assert!(key.unwrap_stanza(&tampered).is_none());
        assert!(age::Identity::unwrap_stanza(&ours, &tampered).is_none());
    }
}
