//! Signed, encrypted envelopes: the form every change and snapshot of a shared
//! document takes on disk (as a blob) and on the wire.
//!
//! Format, version 2:
//!
//! ```text
//! version: u8 = 2 | kind: u8 (0 change, 1 snapshot, 2 live edit) | doc: 16 bytes
//! | signer: 32 bytes (Ed25519) | epoch: u64 BE | heads: u8 count, 32 bytes each
//! | body: nonce 24 | ciphertext | tag 16       (XChaCha20-Poly1305, the epoch key)
//! | signature: 64 bytes
//! ```
//!
//! The body is the change (or the document in Automerge's compact form) encrypted
//! with the key of `epoch`, authenticated together with the header before it. The
//! signature is the signer's, over a domain tag and everything before it, so
//! whoever holds no key (a relay) can still check who sent an envelope, for which
//! document, epoch and membership heads, and that nothing was changed.
//!
//! Checks, in order, each before anything is parsed further ([`check`], then
//! [`Checked::open_change`]): size limits, version (an older or unknown one is
//! refused: no downgrade), document (no replay into another), signature, then with
//! the epoch key the ciphertext, that the plaintext is one Automerge change, and
//! that its actor id is the signer (a device writes only as itself). Whether the
//! signer may write at the membership heads it cites is the group's decision
//! ([`authorize`]).

use crate::device::{DeviceKey, PublicKey, verify};
use crate::epoch::{EpochKey, OVERHEAD};
#[cfg(test)]
use crate::group::Op;
use crate::group::{Group, OpHash};

pub const VERSION: u8 = 2;
/// Most membership heads an envelope may cite.
pub const MAX_HEADS: usize = 64;
/// Largest body (a snapshot of a big document; the sync frame bounds changes lower).
pub const MAX_BODY: usize = 256 << 20;
const FIXED: usize = 1 + 1 + 16 + 32 + 8 + 1;
const SIGNATURE: usize = 64;
const DOMAIN: &[u8] = b"tandem envelope\0";

pub type DocId = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One Automerge change, by the signer.
    Change,
    /// The whole document in Automerge's compact form, vouched for by the signer.
    Snapshot,
    /// A keystroke ahead of its change (a `LiveEdit`): shown, never stored.
    Live,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("envelope body of {0} bytes is over the limit of {MAX_BODY}")]
    TooLarge(usize),
    #[error("envelope version {0}; this peer accepts version {VERSION} only")]
    Version(u8),
    #[error("envelope of unknown kind {0}")]
    UnknownKind(u8),
    #[error("envelope cites {0} membership heads, over the limit of {MAX_HEADS}")]
    TooManyHeads(usize),
    #[error("envelope is for another document")]
    WrongDocument,
    #[error("envelope signature does not verify")]
    BadSignature,
    #[error("no key for epoch {0}: this device cannot read it")]
    NoKey(u64),
    #[error("envelope does not decrypt with the key of its epoch (tampered, or sealed with another key)")]
    Undecryptable,
    #[error("envelope does not hold an Automerge change: {0}")]
    NotAChange(String),
    #[error("the change's actor id is not its signer (a device may only write as itself)")]
    ActorMismatch,
    #[error("envelope cites membership ops this peer has not seen")]
    UnknownHeads,
    #[error("the signer was not a writer at the membership heads the envelope cites")]
    NotWriter,
    #[error("the signer is no longer a writer of this document (revoked)")]
    Revoked,
    #[error("envelope says epoch {said}; at the membership heads it cites the epoch is {actual}")]
    EpochMismatch { said: u64, actual: u64 },
    #[error("envelope is a {0:?} where a {1:?} was expected")]
    WrongKind(Kind, Kind),
}

/// The header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub signer: PublicKey,
    pub epoch: u64,
    pub heads: Vec<OpHash>,
}

fn header_bytes(doc: &DocId, h: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + 32 * h.heads.len());
    out.push(VERSION);
    out.push(match h.kind {
        Kind::Change => 0,
        Kind::Snapshot => 1,
        Kind::Live => 2,
    });
    out.extend_from_slice(doc);
    out.extend_from_slice(&h.signer);
    out.extend_from_slice(&h.epoch.to_be_bytes());
    out.push(h.heads.len() as u8);
    for head in &h.heads {
        out.extend_from_slice(head);
    }
    out
}

fn signed(bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + bytes.len());
    msg.extend_from_slice(DOMAIN);
    msg.extend_from_slice(bytes);
    msg
}

/// `plaintext` (a change whose actor is `key`'s public key, or a snapshot) sealed for
/// `doc`: encrypted with `epoch_key`, the key of `epoch`, citing the membership
/// `heads` it was written at, and signed by `key`.
pub fn seal(
    key: &DeviceKey,
    doc: &DocId,
    kind: Kind,
    epoch: u64,
    heads: &[OpHash],
    epoch_key: &EpochKey,
    plaintext: &[u8],
) -> Vec<u8> {
    let heads = &heads[..heads.len().min(MAX_HEADS)];
    let header = Header { kind, signer: key.public(), epoch, heads: heads.to_vec() };
    let mut out = header_bytes(doc, &header);
    let body = epoch_key.seal(plaintext, &out);
    out.extend_from_slice(&body);
    let sig = key.sign(&signed(&out));
    out.extend_from_slice(&sig);
    out
}

/// First byte of a *direct* live edit: one that goes only from its typist to a peer
/// connected to it, never passed on. Never [`VERSION`], so the two forms cannot be
/// mistaken for each other.
pub const DIRECT: u8 = 0xd1;
const DIRECT_DOMAIN: &[u8] = b"tandem direct live\0";
/// Most bytes a direct live edit's body may hold.
const DIRECT_MAX: usize = 64 << 10;

/// Whether `bytes` are a direct live edit (see [`seal_direct`]).
pub fn is_direct(bytes: &[u8]) -> bool {
    bytes.first() == Some(&DIRECT)
}

/// What a direct live edit is authenticated with besides its body: the document,
/// the typist and the epoch, none of which travels.
fn direct_aad(doc: &DocId, signer: &PublicKey, epoch: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DIRECT_DOMAIN.len() + 16 + 32 + 8);
    aad.extend_from_slice(DIRECT_DOMAIN);
    aad.extend_from_slice(doc);
    aad.extend_from_slice(signer);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

/// A live edit for a peer connected to its typist: `DIRECT | epoch (LEB128) | nonce
/// | ciphertext | tag`, encrypted with the epoch key like every envelope, with no
/// signer, heads or signature (about 150 bytes less than [`seal`]). The connection
/// says who sent it: libp2p's handshake proved the peer holds the device key, which
/// is all a signature would prove to this receiver. So it must never be passed on
/// (a third peer could not tell who typed it): a peer that forwards live edits asks
/// for signed envelopes instead.
pub fn seal_direct(
    doc: &DocId,
    signer: &PublicKey,
    epoch: u64,
    epoch_key: &EpochKey,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = vec![DIRECT];
    let mut e = epoch;
    loop {
        let byte = (e & 0x7f) as u8;
        e >>= 7;
        if e == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&epoch_key.seal(plaintext, &direct_aad(doc, signer, epoch)));
    out
}

/// The epoch a direct live edit says it was sealed in, and its sealed body.
pub fn direct_epoch(bytes: &[u8]) -> Result<(u64, &[u8]), EnvelopeError> {
    if !is_direct(bytes) {
        return Err(EnvelopeError::Version(bytes.first().copied().unwrap_or(0)));
    }
    if bytes.len() > DIRECT_MAX {
        return Err(EnvelopeError::TooLarge(bytes.len()));
    }
    let mut epoch = 0u64;
    for (i, b) in bytes[1..].iter().enumerate().take(10) {
        epoch |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let body = &bytes[2 + i..];
            if body.len() < OVERHEAD {
                return Err(EnvelopeError::Truncated(bytes.len()));
            }
            return Ok((epoch, body));
        }
    }
    Err(EnvelopeError::Truncated(bytes.len()))
}

/// Open a direct live edit that `sender` (the connected peer) sent: whether it may
/// write is the caller's check, against the group as it is now.
pub fn open_direct<'k>(
    bytes: &[u8],
    doc: &DocId,
    sender: &PublicKey,
    key_of: impl Fn(u64) -> Option<&'k EpochKey>,
) -> Result<(u64, Vec<u8>), EnvelopeError> {
    let (epoch, body) = direct_epoch(bytes)?;
    let key = key_of(epoch).ok_or(EnvelopeError::NoKey(epoch))?;
    let plain = key.open(body, &direct_aad(doc, sender, epoch)).ok_or(EnvelopeError::Undecryptable)?;
    Ok((epoch, plain))
}

/// An envelope whose form, document and signature have been checked; its body is
/// still ciphertext.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    pub header: Header,
    aad: &'a [u8],
    body: &'a [u8],
}

/// The key a signed envelope names as its signer, unchecked (for routing only:
/// whoever relies on the signer checks the envelope first).
pub fn signer_of(bytes: &[u8]) -> Option<PublicKey> {
    if !is_envelope(bytes) {
        return None;
    }
    bytes.get(18..50)?.try_into().ok()
}

/// True when `bytes` look like an envelope rather than a bare Automerge chunk (which
/// starts with Automerge's magic bytes, never with [`VERSION`]).
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.first() == Some(&VERSION)
}

/// Check `envelope` for `doc` without any key: size, version, kind, document and
/// signature (what a relay can check).
pub fn check<'a>(envelope: &'a [u8], doc: &DocId) -> Result<Checked<'a>, EnvelopeError> {
    parse(envelope, doc, None)
}

/// [`check`], except that the signature is not verified when the signer is `sender`:
/// the peer on the other end of an authenticated connection (Noise proves its key),
/// for what is neither stored nor trusted beyond that hop (live keystrokes; whoever
/// they are forwarded to checks the signature). Saves the ~30 us a verification costs
/// on every keystroke.
pub fn check_from<'a>(
    envelope: &'a [u8],
    doc: &DocId,
    sender: &PublicKey,
) -> Result<Checked<'a>, EnvelopeError> {
    parse(envelope, doc, Some(sender))
}

fn parse<'a>(
    envelope: &'a [u8],
    doc: &DocId,
    trusted: Option<&PublicKey>,
) -> Result<Checked<'a>, EnvelopeError> {
    let len = envelope.len();
    if len < FIXED + OVERHEAD + SIGNATURE {
        return Err(EnvelopeError::Truncated(len));
    }
    if envelope[0] != VERSION {
        return Err(EnvelopeError::Version(envelope[0]));
    }
    let kind = match envelope[1] {
        0 => Kind::Change,
        1 => Kind::Snapshot,
        2 => Kind::Live,
        k => return Err(EnvelopeError::UnknownKind(k)),
    };
    if envelope[2..18] != doc[..] {
        return Err(EnvelopeError::WrongDocument);
    }
    let signer: PublicKey = envelope[18..50].try_into().expect("32 bytes");
    let epoch = u64::from_be_bytes(envelope[50..58].try_into().expect("8 bytes"));
    let n = envelope[58] as usize;
    if n > MAX_HEADS {
        return Err(EnvelopeError::TooManyHeads(n));
    }
    let header_len = FIXED + 32 * n;
    if len < header_len + OVERHEAD + SIGNATURE {
        return Err(EnvelopeError::Truncated(len));
    }
    let body_len = len - header_len - SIGNATURE;
    if body_len - OVERHEAD > MAX_BODY {
        return Err(EnvelopeError::TooLarge(body_len - OVERHEAD));
    }
    let (unsigned, sig) = envelope.split_at(len - SIGNATURE);
    if trusted != Some(&signer) && !verify(&signer, &signed(unsigned), sig) {
        return Err(EnvelopeError::BadSignature);
    }
    let heads =
        envelope[FIXED..header_len].chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    Ok(Checked {
        header: Header { kind, signer, epoch, heads },
        aad: &envelope[..header_len],
        body: &unsigned[header_len..],
    })
}

impl Checked<'_> {
    /// The plaintext, with the key of the envelope's epoch.
    pub fn decrypt(&self, key: &EpochKey) -> Result<Vec<u8>, EnvelopeError> {
        key.open(self.body, self.aad).ok_or(EnvelopeError::Undecryptable)
    }

    /// The change inside a change envelope: decrypted, parsed, and checked to be the
    /// signer's own.
    pub fn open_change(&self, key: &EpochKey) -> Result<automerge::Change, EnvelopeError> {
        if self.header.kind != Kind::Change {
            return Err(EnvelopeError::WrongKind(self.header.kind, Kind::Change));
        }
        let change = automerge::Change::from_bytes(self.decrypt(key)?)
            .map_err(|e| EnvelopeError::NotAChange(e.to_string()))?;
        if change.actor_id().to_bytes() != self.header.signer {
            return Err(EnvelopeError::ActorMismatch);
        }
        Ok(change)
    }
}

/// Whether `group` lets `header`'s signer write: it was a writer at the membership
/// heads it cites (all known here), the epoch it claims is the epoch at those heads,
/// and it is a writer still (a removed member's changes are refused, even those
/// dated before its removal: their dates are the member's own word).
pub fn authorize(group: &Group, header: &Header) -> Result<(), EnvelopeError> {
    if header.heads.is_empty() || !header.heads.iter().all(|h| group.contains(h)) {
        return Err(EnvelopeError::UnknownHeads);
    }
    let then = group.members_at(&header.heads);
    if !then.can_write(&header.signer) {
        return Err(EnvelopeError::NotWriter);
    }
    if then.epoch != header.epoch {
        return Err(EnvelopeError::EpochMismatch { said: header.epoch, actual: then.epoch });
    }
    if !group.members().can_write(&header.signer) {
        return Err(EnvelopeError::Revoked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Action, Role};
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
    const HEADS: [OpHash; 1] = [[3; 32]];

    fn sealed(key: &DeviceKey, epoch_key: &EpochKey, plaintext: &[u8]) -> Vec<u8> {
        seal(key, &DOC, Kind::Change, 0, &HEADS, epoch_key, plaintext)
    }

    fn open(envelope: &[u8], doc: &DocId, key: &EpochKey) -> Result<automerge::Change, EnvelopeError> {
        check(envelope, doc)?.open_change(key)
    }

    #[test]
    fn the_signer_is_read_without_a_key_and_anything_else_has_none() {
        let key = DeviceKey::generate();
        let env = sealed(&key, &EpochKey::generate(), b"change");
        assert_eq!(signer_of(&env), Some(key.public()));
        assert_eq!(signer_of(&check(&env, &DOC).unwrap().header.signer), None);
        let direct = seal_direct(&DOC, &key.public(), 1, &EpochKey::generate(), b"k");
        assert_eq!(signer_of(&direct), None, "a direct live edit names no signer");
        for cut in 0..50 {
            assert_eq!(signer_of(&env[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_direct_live_edit_opens_only_from_its_typist_for_its_document_and_epoch() {
        let typist = DeviceKey::generate().public();
        let other = DeviceKey::generate().public();
        let ek = EpochKey::generate();
        let keys = |e: u64| (e == 300).then_some(&ek);
        let direct = seal_direct(&DOC, &typist, 300, &ek, b"keystroke");
        assert!(is_direct(&direct) && !is_direct(&sealed(&DeviceKey::generate(), &ek, b"x")));
        assert_eq!(open_direct(&direct, &DOC, &typist, keys), Ok((300, b"keystroke".to_vec())));
        // Passed on by another peer, or replayed into another document: refused.
        assert_eq!(open_direct(&direct, &DOC, &other, keys), Err(EnvelopeError::Undecryptable));
        assert_eq!(open_direct(&direct, &[8; 16], &typist, keys), Err(EnvelopeError::Undecryptable));
        // An epoch this device has no key for, and one it says falsely.
        assert_eq!(open_direct(&direct, &DOC, &typist, |_| None), Err(EnvelopeError::NoKey(300)));
        let mut lying = direct.clone();
        lying[1] ^= 1;
        assert!(open_direct(&lying, &DOC, &typist, |_| Some(&ek)).is_err());
        // Every cut and every flipped byte is an error, never a panic.
        for cut in 0..direct.len() {
            assert!(open_direct(&direct[..cut], &DOC, &typist, keys).is_err(), "cut at {cut}");
        }
        for at in 1..direct.len() {
            let mut bad = direct.clone();
            bad[at] ^= 0x40;
            assert!(open_direct(&bad, &DOC, &typist, keys).is_err(), "flip at {at}");
        }
        assert!(open_direct(&[DIRECT, 0xff, 0xff], &DOC, &typist, keys).is_err());
    }

    #[test]
    fn a_sealed_change_opens_for_its_document_with_its_key() {
        let key = DeviceKey::generate();
        let ek = EpochKey::generate();
        let change = change_by(&key.public(), "hello");
        let env = sealed(&key, &ek, &change);
        let checked = check(&env, &DOC).unwrap();
        assert_eq!(
            checked.header,
            Header { kind: Kind::Change, signer: key.public(), epoch: 0, heads: HEADS.to_vec() }
        );
        assert_eq!(checked.open_change(&ek).unwrap().raw_bytes(), &change[..]);
        // The change's bytes are nowhere in the clear.
        assert!(!env.windows(change.len()).any(|w| w == change), "the change is encrypted");
        // Another epoch's key (an old one, or a removed member's) opens nothing.
        assert_eq!(checked.open_change(&EpochKey::generate()), Err(EnvelopeError::Undecryptable));
    }

    #[test]
    fn forged_tampered_replayed_spoofed_and_downgraded_envelopes_are_refused() {
        let key = DeviceKey::generate();
        let ek = EpochKey::generate();
        let change = change_by(&key.public(), "hello");
        let good = sealed(&key, &ek, &change);

        // Forged: another key's envelope relabelled with this signer.
        let other = DeviceKey::generate();
        let mut forged = sealed(&other, &ek, &change);
        forged[18..50].copy_from_slice(&key.public());
        assert_eq!(open(&forged, &DOC, &ek), Err(EnvelopeError::BadSignature));
        // Tampered anywhere: epoch, heads, body, signature.
        for at in [55, 60, FIXED + 32 + 3, good.len() - 70, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert_eq!(open(&bad, &DOC, &ek), Err(EnvelopeError::BadSignature), "byte {at}");
        }
        // Replayed into another document (as is, or relabelled).
        assert_eq!(open(&good, &[8; 16], &ek).unwrap_err(), EnvelopeError::WrongDocument);
        let mut relabelled = good.clone();
        relabelled[2..18].copy_from_slice(&[8; 16]);
        assert_eq!(open(&relabelled, &[8; 16], &ek).unwrap_err(), EnvelopeError::BadSignature);
        // Downgrade: an older envelope version, or a bare (unsigned, unencrypted) change.
        let mut old = good.clone();
        old[0] = 1;
        assert_eq!(open(&old, &DOC, &ek).unwrap_err(), EnvelopeError::Version(1));
        assert!(open(&change, &DOC, &ek).is_err());
        assert!(!is_envelope(&change), "a bare change is told apart from an envelope");
        // Actor spoofing: a correctly signed change whose actor is someone else.
        let spoofed = sealed(&key, &ek, &change_by(&other.public(), "as other"));
        assert_eq!(open(&spoofed, &DOC, &ek).unwrap_err(), EnvelopeError::ActorMismatch);
        // Signed garbage is not a change; a snapshot is not a change.
        assert!(matches!(open(&sealed(&key, &ek, b"garbage"), &DOC, &ek), Err(EnvelopeError::NotAChange(_))));
        let snap = seal(&key, &DOC, Kind::Snapshot, 0, &HEADS, &ek, &change);
        assert_eq!(
            open(&snap, &DOC, &ek).unwrap_err(),
            EnvelopeError::WrongKind(Kind::Snapshot, Kind::Change)
        );
        // Weak or malformed keys: all-zero and small-order points never verify.
        for weak in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1; // the identity point
            p
        }] {
            let mut bad = good.clone();
            bad[18..50].copy_from_slice(&weak);
            assert_eq!(open(&bad, &DOC, &ek).unwrap_err(), EnvelopeError::BadSignature);
        }
    }

    #[test]
    fn truncated_and_oversized_envelopes_are_refused_without_panicking() {
        let key = DeviceKey::generate();
        let ek = EpochKey::generate();
        let good = sealed(&key, &ek, &change_by(&key.public(), "hello"));
        for cut in 0..good.len() {
            assert!(open(&good[..cut], &DOC, &ek).is_err(), "cut at {cut}");
        }
        let mut huge = good[..FIXED + 32].to_vec();
        huge.resize(FIXED + 32 + OVERHEAD + MAX_BODY + 1 + SIGNATURE, 0);
        assert_eq!(check(&huge, &DOC).unwrap_err(), EnvelopeError::TooLarge(MAX_BODY + 1));
        let mut many_heads = good.clone();
        many_heads[58] = (MAX_HEADS + 1) as u8;
        assert_eq!(check(&many_heads, &DOC).unwrap_err(), EnvelopeError::TooManyHeads(MAX_HEADS + 1));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes: Vec<u8> = (0..(seed % 400) as usize).map(|i| (seed >> (i % 56)) as u8).collect();
            if bytes.len() > 18 {
                bytes[0] = VERSION;
                bytes[1] = 0;
                bytes[2..18].copy_from_slice(&DOC);
            }
            assert!(open(&bytes, &DOC, &ek).is_err());
        }
    }

    #[test]
    fn only_writers_at_the_cited_heads_and_still_writers_now_are_authorized() {
        let [owner, writer, reader] = [DeviceKey::generate(), DeviceKey::generate(), DeviceKey::generate()];
        let (mut g, _) = Group::create(&owner, DOC);
        for (k, role) in [(&writer, Role::Writer), (&reader, Role::Reader)] {
            g.add(Op::sign(&owner, g.heads(), Action::SetRole { member: k.public(), role })).unwrap();
        }
        let at = g.heads();
        let header = |k: &DeviceKey, epoch, heads: &[OpHash]| Header {
            kind: Kind::Change,
            signer: k.public(),
            epoch,
            heads: heads.to_vec(),
        };
        assert_eq!(authorize(&g, &header(&writer, 0, &at)), Ok(()));
        assert_eq!(authorize(&g, &header(&owner, 0, &at)), Ok(()));
        // A reader writing.
        assert_eq!(authorize(&g, &header(&reader, 0, &at)), Err(EnvelopeError::NotWriter));
        // Heads this peer never saw, or none.
        assert_eq!(authorize(&g, &header(&writer, 0, &[[1; 32]])), Err(EnvelopeError::UnknownHeads));
        assert_eq!(authorize(&g, &header(&writer, 0, &[])), Err(EnvelopeError::UnknownHeads));
        // The writer is removed: its changes are refused, also those citing the heads
        // from before the removal (backdated).
        g.add(Op::sign(&owner, g.heads(), Action::Remove { member: writer.public() })).unwrap();
        let now = g.heads();
        assert_eq!(authorize(&g, &header(&writer, 0, &at)), Err(EnvelopeError::Revoked));
        assert_eq!(authorize(&g, &header(&writer, 1, &now)), Err(EnvelopeError::NotWriter));
        // Downgrade to an old epoch: the epoch must be the one at the cited heads.
        assert_eq!(
            authorize(&g, &header(&owner, 0, &now)),
            Err(EnvelopeError::EpochMismatch { said: 0, actual: 1 })
        );
        assert_eq!(authorize(&g, &header(&owner, 1, &now)), Ok(()));
    }

    /// A live keystroke from the signer itself (an authenticated connection) skips
    /// the signature check; from anyone else, or with any other change, it does not.
    #[test]
    fn the_signature_is_skipped_only_for_the_signer_itself() {
        let key = DeviceKey::generate();
        let other = DeviceKey::generate();
        let ek = EpochKey::generate();
        let mut env = seal(&key, &DOC, Kind::Live, 0, &HEADS, &ek, b"live");
        let n = env.len();
        env[n - 1] ^= 1; // a broken signature
        assert!(check_from(&env, &DOC, &key.public()).is_ok());
        assert_eq!(check_from(&env, &DOC, &other.public()).unwrap_err(), EnvelopeError::BadSignature);
        assert_eq!(check(&env, &DOC).unwrap_err(), EnvelopeError::BadSignature);
        // Everything else is still checked, and the body is still authenticated.
        let mut body = seal(&key, &DOC, Kind::Live, 0, &HEADS, &ek, b"live");
        body[FIXED + 32 + 30] ^= 1;
        assert_eq!(
            check_from(&body, &DOC, &key.public()).unwrap().decrypt(&ek),
            Err(EnvelopeError::Undecryptable)
        );
        assert_eq!(check_from(&env, &[1; 16], &key.public()).unwrap_err(), EnvelopeError::WrongDocument);
    }
}
