//! Signed change envelopes: how a change travels between peers.
//!
//! Wire format, version 1:
//!
//! ```text
//! version: u8 = 1 | doc: 16 bytes | signer: 32 bytes (Ed25519) | signature: 64 bytes | change
//! ```
//!
//! The signature covers a domain tag, the version, the document id and the change's
//! bytes, so an envelope cannot be replayed into another document or re-labelled as
//! another version. [`open`] checks, before the change can touch a document: the
//! size limits, the version (no downgrade: unknown or older versions are refused),
//! the document, the signature, that the bytes are one Automerge change, and that
//! the change's actor id is the signer (a device can only write as itself).
//!
//! Whether the signer may write (its role at the membership heads the envelope
//! cites) is the group's decision, layered on top of this check.

use crate::device::{DeviceKey, PublicKey, verify};

pub const VERSION: u8 = 1;
/// Bytes before the change.
pub const HEADER: usize = 1 + 16 + 32 + 64;
/// Largest change an envelope may carry (the sync frame limit).
pub const MAX_CHANGE: usize = 64 << 20;
const DOMAIN: &[u8] = b"tandem change envelope\0";

pub type DocId = [u8; 16];

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("envelope carries a change of {0} bytes, over the limit of {MAX_CHANGE}")]
    TooLarge(usize),
    #[error("envelope version {0}; this peer accepts version {VERSION} only")]
    Version(u8),
    #[error("envelope is for another document")]
    WrongDocument,
    #[error("envelope signature does not verify")]
    BadSignature,
    #[error("envelope does not hold an Automerge change: {0}")]
    NotAChange(String),
    #[error("the change's actor id is not its signer (a device may only write as itself)")]
    ActorMismatch,
}

/// What signing covers.
fn signed_bytes(doc: &DocId, change: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + 1 + 16 + change.len());
    msg.extend_from_slice(DOMAIN);
    msg.push(VERSION);
    msg.extend_from_slice(doc);
    msg.extend_from_slice(change);
    msg
}

/// `change` (an Automerge change's bytes, whose actor id is `key`'s public key) in
/// an envelope for `doc`, signed by `key`.
pub fn seal(key: &DeviceKey, doc: &DocId, change: &[u8]) -> Vec<u8> {
    let sig = key.sign(&signed_bytes(doc, change));
    let mut out = Vec::with_capacity(HEADER + change.len());
    out.push(VERSION);
    out.extend_from_slice(doc);
    out.extend_from_slice(&key.public());
    out.extend_from_slice(&sig);
    out.extend_from_slice(change);
    out
}

/// An envelope that passed every check of [`open`].
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub signer: PublicKey,
    pub change: automerge::Change,
}

/// Check `envelope` for `doc` (see the module doc) and return its change.
pub fn open(envelope: &[u8], doc: &DocId) -> Result<Opened, EnvelopeError> {
    if envelope.len() <= HEADER {
        return Err(EnvelopeError::Truncated(envelope.len()));
    }
    if envelope.len() - HEADER > MAX_CHANGE {
        return Err(EnvelopeError::TooLarge(envelope.len() - HEADER));
    }
    if envelope[0] != VERSION {
        return Err(EnvelopeError::Version(envelope[0]));
    }
    if envelope[1..17] != doc[..] {
        return Err(EnvelopeError::WrongDocument);
    }
    let signer: PublicKey = envelope[17..49].try_into().expect("32 bytes");
    let sig = &envelope[49..113];
    let change = &envelope[HEADER..];
    if !verify(&signer, &signed_bytes(doc, change), sig) {
        return Err(EnvelopeError::BadSignature);
    }
    let change = automerge::Change::from_bytes(change.to_vec())
        .map_err(|e| EnvelopeError::NotAChange(e.to_string()))?;
    if change.actor_id().to_bytes() != signer {
        return Err(EnvelopeError::ActorMismatch);
    }
    Ok(Opened { signer, change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ObjType, ROOT};

    /// A real change by `actor`.
    fn change_by(actor: &[u8], text: &str) -> Vec<u8> {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(actor));
        let t = doc.put_object(ROOT, "text", ObjType::Text).unwrap();
        doc.splice_text(&t, 0, 0, text).unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    const DOC: DocId = [7; 16];

    #[test]
    fn a_sealed_change_opens_for_its_document() {
        let key = DeviceKey::generate();
        let change = change_by(&key.public(), "hello");
        let opened = open(&seal(&key, &DOC, &change), &DOC).unwrap();
        assert_eq!(opened.signer, key.public());
        assert_eq!(opened.change.raw_bytes(), &change[..]);
    }

    #[test]
    fn forged_tampered_replayed_spoofed_and_downgraded_envelopes_are_refused() {
        let key = DeviceKey::generate();
        let change = change_by(&key.public(), "hello");
        let good = seal(&key, &DOC, &change);

        // Forged: another key's signature under this signer's name.
        let other = DeviceKey::generate();
        let mut forged = seal(&other, &DOC, &change);
        forged[17..49].copy_from_slice(&key.public());
        assert_eq!(open(&forged, &DOC), Err(EnvelopeError::BadSignature));
        // Tampered change bytes, signature or signer.
        for at in [HEADER + 3, 60, 20] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert_eq!(open(&bad, &DOC), Err(EnvelopeError::BadSignature), "byte {at}");
        }
        // Replayed into another document (as is, or relabelled).
        assert_eq!(open(&good, &[8; 16]), Err(EnvelopeError::WrongDocument));
        let mut relabelled = good.clone();
        relabelled[1..17].copy_from_slice(&[8; 16]);
        assert_eq!(open(&relabelled, &[8; 16]), Err(EnvelopeError::BadSignature));
        // Downgrade to another version, or to a bare unsigned change.
        let mut old = good.clone();
        old[0] = 0;
        assert_eq!(open(&old, &DOC), Err(EnvelopeError::Version(0)));
        assert!(open(&change, &DOC).is_err());
        // Actor spoofing: a correctly signed change whose actor is someone else.
        let spoofed = seal(&key, &DOC, &change_by(&other.public(), "as other"));
        assert_eq!(open(&spoofed, &DOC), Err(EnvelopeError::ActorMismatch));
        // Signed garbage is not a change.
        assert!(matches!(open(&seal(&key, &DOC, b"garbage"), &DOC), Err(EnvelopeError::NotAChange(_))));
        // Weak or malformed keys: all-zero and small-order points never verify.
        let mut weak = good.clone();
        weak[17..49].copy_from_slice(&[0; 32]);
        assert_eq!(open(&weak, &DOC), Err(EnvelopeError::BadSignature));
        let mut small_order = good.clone();
        small_order[17..49].copy_from_slice(&{
            let mut p = [0u8; 32];
            p[0] = 1; // the identity point
            p
        });
        assert_eq!(open(&small_order, &DOC), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn truncated_and_oversized_envelopes_are_refused_without_panicking() {
        let key = DeviceKey::generate();
        let good = seal(&key, &DOC, &change_by(&key.public(), "hello"));
        for cut in 0..good.len() {
            assert!(open(&good[..cut], &DOC).is_err(), "cut at {cut}");
        }
        let huge = vec![VERSION; HEADER + MAX_CHANGE + 1];
        assert_eq!(open(&huge, &DOC), Err(EnvelopeError::TooLarge(MAX_CHANGE + 1)));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes: Vec<u8> = (0..(seed % 300) as usize).map(|i| (seed >> (i % 56)) as u8).collect();
            if bytes.len() > 17 {
                bytes[0] = VERSION;
                bytes[1..17].copy_from_slice(&DOC);
            }
            assert!(open(&bytes, &DOC).is_err());
        }
    }
}
