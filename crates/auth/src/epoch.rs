//! Epoch keys: the read key of one epoch of a group.
//!
//! An epoch key is 32 random bytes for XChaCha20-Poly1305 (random 24-byte nonces,
//! so no counter has to be kept across devices). It is never stored or sent in the
//! clear: the op that starts an epoch carries it wrapped (age-encrypted) to each
//! member's device age key, and a member added later gets it wrapped the same way.
//!
//! Why a symmetric key and not an age key per epoch: age costs 93 us and 295 bytes
//! per encrypted change, against ~1 us and 40 bytes here (`tandem-bench security`,
//! benchmarks/security.jsonl). Age still does what it is good at: getting the key to
//! each member.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::agekey::{self, AgeIdentity};

/// Bytes a sealed message adds: the nonce and the tag.
pub const OVERHEAD: usize = NONCE + 16;
const NONCE: usize = 24;

#[derive(Clone, PartialEq, Eq)]
pub struct EpochKey([u8; 32]);

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.write_str("EpochKey(..)")
    }
}

/// `n` bytes from the operating system's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).expect("the operating system's random source works");
    out
}

impl EpochKey {
    pub fn generate() -> EpochKey {
        EpochKey(random())
    }

    /// A 32-byte secret for `context`, derived from this key (BLAKE3's key derivation):
    /// what only the epoch's members can compute, and that says nothing of the key.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// `plaintext` encrypted and authenticated, bound to `aad` (the envelope header):
    /// `nonce | ciphertext | tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = random();
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("XChaCha20-Poly1305 encrypts any length we send");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of [`Self::seal`]'s output, or `None` when it was not sealed with
    /// this key and `aad` (wrong key, tampered or cut short).
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }

    /// This key, and the op that starts its epoch, age-encrypted to `recipient`.
    pub fn wrap(&self, epoch_start: &[u8; 32], recipient: &str) -> Result<Vec<u8>, String> {
        let mut plain = Vec::with_capacity(64);
        plain.extend_from_slice(epoch_start);
        plain.extend_from_slice(&self.0);
        agekey::encrypt(&plain, &[recipient.to_owned()], false)
    }

    /// The key and epoch start of a [`Self::wrap`] addressed to `identity`.
    pub fn unwrap(identity: &AgeIdentity, wrapped: &[u8]) -> Result<([u8; 32], EpochKey), String> {
        let plain = identity.decrypt(wrapped)?;
        if plain.len() != 64 {
            return Err(format!("a wrapped epoch key is 64 bytes, this one {}", plain.len()));
        }
        let start = plain[..32].try_into().expect("32 bytes");
        let key = EpochKey(plain[32..].try_into().expect("32 bytes"));
        Ok((start, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_header() {
        let key = EpochKey::generate();
        let sealed = key.seal(b"hello", b"header");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(key.open(&sealed, b"header").as_deref(), Some(&b"hello"[..]));
        assert_eq!(key.open(&sealed, b"other header"), None);
        assert_eq!(EpochKey::generate().open(&sealed, b"header"), None);
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            assert_eq!(key.open(&bad, b"header"), None, "flipped byte {at}");
        }
        for cut in 0..sealed.len() {
            assert_eq!(key.open(&sealed[..cut], b"header"), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_wrapped_key_opens_only_for_its_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let alice = AgeIdentity::load_or_create(&a).unwrap();
        let bob = AgeIdentity::load_or_create(&b).unwrap();
        let key = EpochKey::generate();
        let wrapped = key.wrap(&[9; 32], &alice.recipient()).unwrap();
        let (start, got) = EpochKey::unwrap(&alice, &wrapped).unwrap();
        assert_eq!((start, got), ([9; 32], key));
        assert!(EpochKey::unwrap(&bob, &wrapped).is_err());
        let mut bad = wrapped.clone();
        let n = bad.len() - 3;
        bad[n] ^= 1;
        assert!(EpochKey::unwrap(&alice, &bad).is_err(), "a bad MAC is refused");
    }
}
