//! `/tandem/sync/1`: the messages peers exchange about one document, and their wire
//! format.
//!
//! Frame: `len: u32 BE | version: u8 | kind: u8 | body`, where `len` counts everything
//! after itself. The length is checked against the limit of the frame's kind before a
//! byte of the body is read, so a peer cannot make us buffer more than that.
//!
//! Changes travel as envelopes (`tandem_auth::envelope`: encrypted with the group's
//! epoch key, signed by their author), checked by the store before they touch a
//! document. The membership log travels as `Group` (signed ops), and a device with an
//! invite asks to be enrolled with `Join`. Flow: Join (first time only) -> Group;
//! Hello -> Need -> Changes, then pushes as changes are committed.

use std::fmt;

use tandem_doc::{ActorId, ElemId, LiveEdit, LiveOp, MAX_LIVE_CHARS};

/// The protocol name negotiated on every stream.
pub const PROTOCOL: &str = "/tandem/sync/1";
/// The version byte of every frame (2: envelopes are encrypted and signed, and a
/// peer speaking 1 sends bare changes and is refused; 3: a refusal carries a
/// [`Code`]).
pub const VERSION: u8 = 3;

/// Largest frame of any kind (a fresh join of a big document).
pub const MAX_FRAME: usize = 64 << 20;
/// Largest frame of the small kinds (heads lists, acks, errors).
pub const MAX_SMALL: usize = 256 << 10;
/// Most heads one message may list.
pub const MAX_HEADS: usize = 1024;
/// Most envelopes one message may carry.
pub const MAX_ENVELOPES: usize = 1 << 20;

pub type DocId = [u8; 16];
pub type Hash = [u8; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// "I have this document at these heads."
    Hello { doc: DocId, heads: Vec<Hash> },
    /// "Send me what I lack; I have these heads."
    Need { doc: DocId, have: Vec<Hash> },
    /// Changes, oldest first (the answer to Need, or a live push).
    Changes { doc: DocId, envelopes: Vec<Vec<u8>> },
    /// "Applied; my heads are now these."
    Ack { heads: Vec<Hash> },
    /// The request was refused.
    Error(Refusal),
    /// A keystroke ahead of its change: an envelope holding a [`tandem_doc::LiveEdit`]
    /// and its author (see [`encode_live`]).
    Live { doc: DocId, envelope: Vec<u8> },
    /// The blobs that make the document's history, snapshot first: the answer to a
    /// `Need` with no heads (a fresh join). The joiner fetches each over
    /// `/tandem/blobs/1` and checks it against its BLAKE3 hash (see [`crate::blobs`]).
    History { doc: DocId, blobs: Vec<BlobRef> },
    /// Membership ops of the document's group (all of them, parents first, when a
    /// peer is admitted or enrolled; new ones as they are made).
    Group { doc: DocId, ops: Vec<Vec<u8>> },
    /// "Enrol me with this invite; my age recipient is this." Answered with `Group`.
    Join { doc: DocId, invite: [u8; 16], secret: [u8; 16], recipient: String },
    /// "Send me your own live edits direct (I pass none on: unsigned, ~150 bytes
    /// less each) or signed (I pass them on to peers you may not reach)." A peer
    /// that never says gets them signed.
    LiveForm { doc: DocId, direct: bool },
    /// "These are the members I am connected to now" (their device keys): a peer
    /// passes on to this one only what it cannot have had from its author directly,
    /// and in a full mesh nobody passes anything on (each keystroke and change is
    /// sent once to each peer, by its author).
    Links { doc: DocId, peers: Vec<[u8; 32]> },
}

/// Why a peer refused a request: a [`Code`] for programs (and tests) to match, and
/// words for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    /// Its wire form: the code (u16 BE), then the words (UTF-8).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.code as u16).to_be_bytes());
        out.extend_from_slice(self.message.as_bytes());
    }

    pub fn decode(body: &[u8]) -> Result<Refusal, WireError> {
        if body.len() < 2 {
            return Err(WireError::Truncated);
        }
        let code = Code::from_u16(u16::from_be_bytes([body[0], body[1]]));
        let message = std::str::from_utf8(&body[2..]).map_err(|_| WireError::Malformed("error text"))?;
        Ok(Refusal { code, message: message.to_owned() })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code.name())
    }
}

/// What kind of refusal a [`Refusal`] is. The numbers are the wire form: new codes
/// are added at the end, and a code this version does not know reads as
/// [`Code::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Code {
    /// A code from a newer peer.
    Other = 0,
    /// The peer does not share that document.
    NotShared = 1,
    /// The asking device is not a member of the document's group.
    NotAMember = 2,
    /// A response sent as a request.
    NotARequest = 3,
    /// Refused by the group: a reader's change, a bad signature, a stale epoch.
    Denied = 4,
    /// The envelope cites membership ops the peer has not seen yet (ask it for the
    /// group's log, then send again).
    GroupBehind = 5,
    /// The request is damaged: not an envelope, not a live edit, a bad recipient.
    Malformed = 6,
    /// The invite is unknown there (revoked, or made by another device).
    InviteUnknown = 7,
    /// The invite's secret is wrong (a damaged ticket).
    InviteWrongSecret = 8,
    InviteExpired = 9,
    InviteUsedUp = 10,
    /// The peer cannot do that (a blind relay enrols no one and holds no history).
    Unsupported = 11,
    /// The peer failed on its side (its disk, its store).
    Internal = 12,
    /// The peer does not have that blob (not in its history, or damaged there).
    NoSuchBlob = 13,
}

impl Code {
    const ALL: [Code; 14] = [
        Code::Other,
        Code::NotShared,
        Code::NotAMember,
        Code::NotARequest,
        Code::Denied,
        Code::GroupBehind,
        Code::Malformed,
        Code::InviteUnknown,
        Code::InviteWrongSecret,
        Code::InviteExpired,
        Code::InviteUsedUp,
        Code::Unsupported,
        Code::Internal,
        Code::NoSuchBlob,
    ];

    pub fn from_u16(n: u16) -> Code {
        Code::ALL.get(n as usize).copied().unwrap_or(Code::Other)
    }

    /// Its name, as errors show it (`[not_a_member]`) and scripts match it.
    pub fn name(self) -> &'static str {
        match self {
            Code::Other => "other",
            Code::NotShared => "not_shared",
            Code::NotAMember => "not_a_member",
            Code::NotARequest => "not_a_request",
            Code::Denied => "denied",
            Code::GroupBehind => "group_behind",
            Code::Malformed => "malformed",
            Code::InviteUnknown => "invite_unknown",
            Code::InviteWrongSecret => "invite_wrong_secret",
            Code::InviteExpired => "invite_expired",
            Code::InviteUsedUp => "invite_used_up",
            Code::Unsupported => "unsupported",
            Code::Internal => "internal",
            Code::NoSuchBlob => "no_such_blob",
        }
    }

    /// The code for a refusal by the store.
    pub fn of_store(e: &tandem_store::StoreError) -> Code {
        use tandem_store::{InviteError, StoreError};
        match e {
            StoreError::Denied(_) => Code::Denied,
            StoreError::GroupBehind(_) => Code::GroupBehind,
            StoreError::Malformed(_)
            | StoreError::BadRequest(_)
            | StoreError::Binary { .. }
            | StoreError::InvalidUtf8 { .. }
            | StoreError::Doc { .. } => Code::Malformed,
            StoreError::Invite(InviteError::Unknown) => Code::InviteUnknown,
            StoreError::Invite(InviteError::WrongSecret) => Code::InviteWrongSecret,
            StoreError::Invite(InviteError::Expired) => Code::InviteExpired,
            StoreError::Invite(InviteError::UsedUp) => Code::InviteUsedUp,
            _ => Code::Internal,
        }
    }
}

/// A blob of a document's history as a peer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// BLAKE3 of the blob.
    pub hash: Hash,
    pub size: u64,
    /// True for a snapshot (Automerge's compact form of everything before it), false
    /// for one change.
    pub snapshot: bool,
}

/// Most blobs one `History` may name (a sharer compacts long before that).
pub const MAX_BLOBS: usize = 4096;

const HELLO: u8 = 1;
const NEED: u8 = 2;
const CHANGES: u8 = 3;
const ACK: u8 = 4;
const ERROR: u8 = 5;
const LIVE: u8 = 6;
const HISTORY: u8 = 7;
const GROUP: u8 = 8;
const JOIN: u8 = 9;
const LIVE_FORM: u8 = 10;
const LINKS: u8 = 11;
/// Most members one `Links` may name.
pub const MAX_LINKS: usize = 4096;
/// Longest age recipient a `Join` may carry.
const MAX_RECIPIENT: usize = 128;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    TooLarge { kind: u8, len: usize, limit: usize },
    Truncated,
    WrongVersion(u8),
    UnknownKind(u8),
    Malformed(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLarge { kind, len, limit } => {
                write!(f, "frame of kind {kind} is {len} bytes, over its limit of {limit}")
            }
            WireError::Truncated => write!(f, "truncated frame"),
            WireError::WrongVersion(v) => write!(f, "protocol version {v}, this peer speaks {VERSION}"),
            WireError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            WireError::Malformed(what) => write!(f, "malformed message: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The limit for a frame of `kind` (unknown kinds get the small limit; they are
/// refused after the header anyway).
pub fn limit(kind: u8) -> usize {
    if kind == CHANGES || kind == GROUP { MAX_FRAME } else { MAX_SMALL }
}

/// Check a frame header (`len` and the first two body bytes) before reading the rest.
pub fn check_header(len: usize, version: u8, kind: u8) -> Result<(), WireError> {
    if version != VERSION {
        return Err(WireError::WrongVersion(version));
    }
    if !(HELLO..=LINKS).contains(&kind) {
        return Err(WireError::UnknownKind(kind));
    }
    let limit = limit(kind);
    if len > limit {
        return Err(WireError::TooLarge { kind, len, limit });
    }
    if len < 2 {
        return Err(WireError::Truncated);
    }
    Ok(())
}

/// The frame for `msg` (length prefix included).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match msg {
        Message::Hello { doc, heads } => {
            body.extend_from_slice(doc);
            put_hashes(&mut body, heads);
            HELLO
        }
        Message::Need { doc, have } => {
            body.extend_from_slice(doc);
            put_hashes(&mut body, have);
            NEED
        }
        Message::Changes { doc, envelopes } => {
            body.extend_from_slice(doc);
            put_list(&mut body, envelopes);
            CHANGES
        }
        Message::Group { doc, ops } => {
            body.extend_from_slice(doc);
            put_list(&mut body, ops);
            GROUP
        }
        Message::Join { doc, invite, secret, recipient } => {
            body.extend_from_slice(doc);
            body.extend_from_slice(invite);
            body.extend_from_slice(secret);
            body.extend_from_slice(recipient.as_bytes());
            JOIN
        }
        Message::LiveForm { doc, direct } => {
            body.extend_from_slice(doc);
            body.push(u8::from(*direct));
            LIVE_FORM
        }
        Message::Links { doc, peers } => {
            body.extend_from_slice(doc);
            body.extend_from_slice(&(peers.len() as u16).to_be_bytes());
            for key in peers {
                body.extend_from_slice(key);
            }
            LINKS
        }
        Message::Ack { heads } => {
            put_hashes(&mut body, heads);
            ACK
        }
        Message::Error(refusal) => {
            refusal.encode(&mut body);
            ERROR
        }
        Message::Live { doc, envelope } => {
            body.extend_from_slice(doc);
            body.extend_from_slice(envelope);
            LIVE
        }
        Message::History { doc, blobs } => {
            body.extend_from_slice(doc);
            body.extend_from_slice(&(blobs.len() as u16).to_be_bytes());
            for b in blobs {
                body.extend_from_slice(&b.hash);
                body.extend_from_slice(&b.size.to_be_bytes());
                body.push(b.snapshot as u8);
            }
            HISTORY
        }
    };
    let mut frame = Vec::with_capacity(6 + body.len());
    frame.extend_from_slice(&((body.len() + 2) as u32).to_be_bytes());
    frame.push(VERSION);
    frame.push(kind);
    frame.extend_from_slice(&body);
    frame
}

fn put_list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for e in items {
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
}

fn put_hashes(out: &mut Vec<u8>, hashes: &[Hash]) {
    out.extend_from_slice(&(hashes.len() as u16).to_be_bytes());
    for h in hashes {
        out.extend_from_slice(h);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<usize, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }

    fn u32(&mut self) -> Result<usize, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn doc(&mut self) -> Result<DocId, WireError> {
        Ok(self.take(16)?.try_into().expect("16 bytes"))
    }

    fn hashes(&mut self) -> Result<Vec<Hash>, WireError> {
        let n = self.u16()?;
        if n > MAX_HEADS {
            return Err(WireError::Malformed("too many heads"));
        }
        (0..n).map(|_| Ok(self.take(32)?.try_into().expect("32 bytes"))).collect()
    }

    fn list(&mut self) -> Result<Vec<Vec<u8>>, WireError> {
        let n = self.u32()?;
        if n > MAX_ENVELOPES {
            return Err(WireError::Malformed("too many envelopes"));
        }
        let mut items = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = self.u32()?;
            items.push(self.take(len)?.to_vec());
        }
        Ok(items)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn end(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() { Ok(()) } else { Err(WireError::Malformed("trailing bytes")) }
    }
}

/// Decode one whole frame (length prefix included).
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    if frame.len() < 6 {
        return Err(WireError::Truncated);
    }
    let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    check_header(len, frame[4], frame[5])?;
    if frame.len() - 4 != len {
        return Err(if frame.len() - 4 < len {
            WireError::Truncated
        } else {
            WireError::Malformed("trailing bytes")
        });
    }
    decode_body(frame[5], &frame[6..])
}

/// Decode a frame's body, the header having been checked.
pub fn decode_body(kind: u8, body: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { bytes: body };
    let msg = match kind {
        HELLO => Message::Hello { doc: r.doc()?, heads: r.hashes()? },
        NEED => Message::Need { doc: r.doc()?, have: r.hashes()? },
        CHANGES => Message::Changes { doc: r.doc()?, envelopes: r.list()? },
        GROUP => Message::Group { doc: r.doc()?, ops: r.list()? },
        JOIN => {
            let doc = r.doc()?;
            let invite = r.take(16)?.try_into().expect("16 bytes");
            let secret = r.take(16)?.try_into().expect("16 bytes");
            let rest = r.rest();
            if rest.len() > MAX_RECIPIENT {
                return Err(WireError::Malformed("recipient too long"));
            }
            let recipient =
                std::str::from_utf8(rest).map_err(|_| WireError::Malformed("recipient"))?.to_owned();
            Message::Join { doc, invite, secret, recipient }
        }
        LIVE_FORM => {
            let doc = r.doc()?;
            let direct = match r.take(1)?[0] {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("live form")),
            };
            Message::LiveForm { doc, direct }
        }
        LINKS => {
            let doc = r.doc()?;
            let n = r.u16()?;
            if n > MAX_LINKS {
                return Err(WireError::Malformed("too many links"));
            }
            let peers =
                (0..n).map(|_| Ok(r.take(32)?.try_into().expect("32 bytes"))).collect::<Result<_, _>>()?;
            Message::Links { doc, peers }
        }
        ACK => Message::Ack { heads: r.hashes()? },
        ERROR => Message::Error(Refusal::decode(r.rest())?),
        LIVE => Message::Live { doc: r.doc()?, envelope: r.rest().to_vec() },
        HISTORY => {
            let doc = r.doc()?;
            let n = r.u16()?;
            if n > MAX_BLOBS {
                return Err(WireError::Malformed("too many blobs"));
            }
            let mut blobs = Vec::with_capacity(n);
            for _ in 0..n {
                let hash = r.take(32)?.try_into().expect("32 bytes");
                let size = u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
                let snapshot = match r.take(1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("blob kind")),
                };
                blobs.push(BlobRef { hash, size, snapshot });
            }
            Message::History { doc, blobs }
        }
        k => return Err(WireError::UnknownKind(k)),
    };
    r.end()?;
    Ok(msg)
}

/// Most steps one live edit may hold.
const MAX_LIVE_OPS: usize = 1 << 12;
const STEP_INSERT: u8 = 1;
const STEP_DELETE: u8 = 2;
const ID_START: u8 = 0;
const ID_OWN: u8 = 1;
const ID_OTHER: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A char's id: `1 counter` when the sender's own, `2 actor_len actor counter`
/// otherwise (`0` for the start of the text, where an insert may go).
fn put_id(out: &mut Vec<u8>, own: &ActorId, id: Option<&ElemId>) {
    match id {
        None => out.push(ID_START),
        Some(id) if id.actor == *own => {
            out.push(ID_OWN);
            put_varint(out, id.counter);
        }
        Some(id) => {
            out.push(ID_OTHER);
            let actor = id.actor.to_bytes();
            out.push(actor.len() as u8);
            out.extend_from_slice(actor);
            put_varint(out, id.counter);
        }
    }
}

/// A live edit's plaintext: `seq | step_count | steps`, numbers as LEB128 varints.
/// An insert step is `1 after first len utf8` (`after` an id, see [`put_id`]; `first`
/// the counter of its first char); a delete step `2 count ids`. The typist is not in
/// it: it is the envelope's signer (or, direct, the connected peer), and only its own
/// chars can be named short. A keystroke after one's own char takes 12 bytes.
pub fn encode_live(actor: &ActorId, live: &LiveEdit) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, u64::from(live.seq));
    put_varint(&mut out, live.ops.len() as u64);
    for op in &live.ops {
        match op {
            LiveOp::Insert { after, first, text } => {
                out.push(STEP_INSERT);
                put_id(&mut out, actor, after.as_ref());
                put_varint(&mut out, *first);
                put_varint(&mut out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            LiveOp::Delete(ids) => {
                out.push(STEP_DELETE);
                put_varint(&mut out, ids.len() as u64);
                for id in ids {
                    put_id(&mut out, actor, Some(id));
                }
            }
        }
    }
    out
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(WireError::Malformed("number too long"))
    }

    fn actor(&mut self) -> Result<ActorId, WireError> {
        let len = self.take(1)?[0] as usize;
        if len == 0 || len > 64 {
            return Err(WireError::Malformed("actor id length"));
        }
        Ok(ActorId::from(self.take(len)?))
    }

    fn counter(&mut self) -> Result<u64, WireError> {
        match self.varint()? {
            // Automerge counts ops from 1.
            0 => Err(WireError::Malformed("char id")),
            n => Ok(n),
        }
    }

    fn id(&mut self, own: &ActorId) -> Result<Option<ElemId>, WireError> {
        match self.take(1)?[0] {
            ID_START => Ok(None),
            ID_OWN => Ok(Some(ElemId { counter: self.counter()?, actor: own.clone() })),
            ID_OTHER => {
                let actor = self.actor()?;
                Ok(Some(ElemId { counter: self.counter()?, actor }))
            }
            _ => Err(WireError::Malformed("char id")),
        }
    }
}

/// Read a live edit typed by `actor` (see [`encode_live`]).
pub fn decode_live(bytes: &[u8], actor: &ActorId) -> Result<LiveEdit, WireError> {
    let mut r = Reader { bytes };
    let seq = u32::try_from(r.varint()?).map_err(|_| WireError::Malformed("live edit number"))?;
    let n = r.varint()?;
    if n > MAX_LIVE_OPS as u64 {
        return Err(WireError::Malformed("too many steps in a live edit"));
    }
    let mut ops = Vec::new();
    let mut chars = 0usize;
    for _ in 0..n {
        match r.take(1)?[0] {
            STEP_INSERT => {
                let after = r.id(actor)?;
                let first = r.counter()?;
                let len = usize::try_from(r.varint()?).map_err(|_| WireError::Malformed("insert text"))?;
                let text =
                    std::str::from_utf8(r.take(len)?).map_err(|_| WireError::Malformed("insert text"))?;
                let count = text.chars().count();
                if first.checked_add(count as u64).is_none() {
                    return Err(WireError::Malformed("char id"));
                }
                chars += count;
                ops.push(LiveOp::Insert { after, first, text: text.to_string() });
            }
            STEP_DELETE => {
                let count = r.varint()?;
                if count > MAX_LIVE_CHARS as u64 {
                    return Err(WireError::Malformed("too many chars in a live edit"));
                }
                let mut ids = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    ids.push(r.id(actor)?.ok_or(WireError::Malformed("char id"))?);
                }
                chars += ids.len();
                ops.push(LiveOp::Delete(ids));
            }
            _ => return Err(WireError::Malformed("live edit step")),
        }
        if chars > MAX_LIVE_CHARS {
            return Err(WireError::Malformed("too many chars in a live edit"));
        }
    }
    r.end()?;
    Ok(LiveEdit { seq, ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello { doc: [1; 16], heads: vec![[2; 32], [3; 32]] },
            Message::Need { doc: [1; 16], have: vec![] },
            Message::Changes { doc: [4; 16], envelopes: vec![vec![1, 2, 3], vec![], vec![9; 1000]] },
            Message::Ack { heads: vec![[5; 32]] },
            Message::Error(Refusal::new(Code::NotShared, "no such document")),
            Message::Error(Refusal::new(Code::InviteUsedUp, "")),
            Message::Live { doc: [6; 16], envelope: vec![7; 40] },
            Message::LiveForm { doc: [6; 16], direct: true },
            Message::LiveForm { doc: [6; 16], direct: false },
            Message::Links { doc: [6; 16], peers: vec![] },
            Message::Links { doc: [6; 16], peers: vec![[1; 32], [2; 32]] },
            Message::History {
                doc: [8; 16],
                blobs: vec![
                    BlobRef { hash: [9; 32], size: 129_168, snapshot: true },
                    BlobRef { hash: [10; 32], size: 80, snapshot: false },
                ],
            },
        ]
    }

    fn sample_live() -> (ActorId, LiveEdit) {
        let me = ActorId::from(vec![3u8; 16]);
        let other = ActorId::from(vec![4u8; 16]);
        let live = LiveEdit {
            seq: 7,
            ops: vec![
                LiveOp::Delete(vec![
                    ElemId { counter: 300, actor: me.clone() },
                    ElemId { counter: 5, actor: other.clone() },
                ]),
                LiveOp::Insert {
                    after: Some(ElemId { counter: 2, actor: other }),
                    first: 301,
                    text: "héllo 🎉".into(),
                },
                LiveOp::Insert { after: None, first: 320, text: "x".into() },
            ],
        };
        (me, live)
    }

    #[test]
    fn live_edits_round_trip_and_refuse_damage() {
        let (actor, live) = sample_live();
        let bytes = encode_live(&actor, &live);
        assert_eq!(decode_live(&bytes, &actor).unwrap(), live);
        for cut in 0..bytes.len() {
            assert!(decode_live(&bytes[..cut], &actor).is_err(), "cut at {cut} was accepted");
        }
        let mut bad_step = bytes.clone();
        // After the seq and the step count (one byte each here).
        let step_at = 2;
        bad_step[step_at] = 9;
        assert_eq!(decode_live(&bad_step, &actor), Err(WireError::Malformed("live edit step")));
        let mut bad_utf8 = bytes.clone();
        let text_at = bytes.iter().position(|b| *b == 0xf0).unwrap();
        bad_utf8[text_at] = 0xff;
        assert_eq!(decode_live(&bad_utf8, &actor), Err(WireError::Malformed("insert text")));
        // A keystroke typed after one's own char: small.
        let key = LiveEdit {
            seq: 3,
            ops: vec![LiveOp::Insert {
                after: Some(ElemId { counter: 40_000, actor: actor.clone() }),
                first: 40_001,
                text: "k".into(),
            }],
        };
        assert!(encode_live(&actor, &key).len() <= 12, "{}", encode_live(&actor, &key).len());
        // Counter zero names no char; a number that never ends is refused.
        let zero = LiveEdit { seq: 0, ops: vec![LiveOp::Insert { after: None, first: 0, text: "k".into() }] };
        assert!(decode_live(&encode_live(&actor, &zero), &actor).is_err());
        let mut endless = encode_live(&actor, &key);
        endless.truncate(0);
        endless.extend([0xff; 12]);
        assert!(decode_live(&endless, &actor).is_err());
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(decode(&encode(&m)).unwrap(), m);
        }
    }

    #[test]
    fn truncated_frames_are_refused() {
        for m in samples() {
            let f = encode(&m);
            for cut in 0..f.len() {
                assert!(decode(&f[..cut]).is_err(), "{m:?} cut at {cut} was accepted");
            }
        }
    }

    #[test]
    fn oversized_wrong_version_and_unknown_kinds_are_refused_from_the_header() {
        assert_eq!(
            check_header(MAX_SMALL + 1, VERSION, HELLO),
            Err(WireError::TooLarge { kind: HELLO, len: MAX_SMALL + 1, limit: MAX_SMALL })
        );
        assert!(check_header(MAX_FRAME, VERSION, CHANGES).is_ok());
        assert!(matches!(check_header(MAX_FRAME + 1, VERSION, CHANGES), Err(WireError::TooLarge { .. })));
        // The protocol before signed envelopes (1), before coded refusals (2), and
        // one from the future.
        assert_eq!(check_header(10, 1, HELLO), Err(WireError::WrongVersion(1)));
        assert_eq!(check_header(10, 2, HELLO), Err(WireError::WrongVersion(2)));
        assert_eq!(check_header(10, VERSION + 1, HELLO), Err(WireError::WrongVersion(VERSION + 1)));
        assert_eq!(check_header(10, VERSION, 77), Err(WireError::UnknownKind(77)));
        let mut f = encode(&samples()[0]);
        f[4] = 0;
        assert_eq!(decode(&f), Err(WireError::WrongVersion(0)));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 80) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            if bytes.len() >= 6 {
                // Make some frames look plausible so the body decoders are exercised.
                let body = (bytes.len() - 4) as u32;
                bytes[..4].copy_from_slice(&body.to_be_bytes());
                bytes[4] = VERSION;
                bytes[5] = 1 + (seed % 7) as u8;
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn lying_counts_do_not_allocate_or_panic() {
        // A Changes frame that claims a million envelopes but carries none.
        let mut body = vec![0u8; 16];
        body.extend_from_slice(&(MAX_ENVELOPES as u32).to_be_bytes());
        assert_eq!(decode_body(CHANGES, &body), Err(WireError::Truncated));
        let mut body = vec![0u8; 16];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_body(CHANGES, &body), Err(WireError::Malformed("too many envelopes")));
    }

    /// Every code keeps its number and name on the wire; a newer peer's code reads
    /// as `Other` with its words intact; a refusal cut before its code is refused.
    #[test]
    fn refusal_codes_round_trip_and_unknown_ones_read_as_other() {
        for (n, code) in Code::ALL.iter().enumerate() {
            assert_eq!(*code as u16 as usize, n, "{code:?} is listed at its number");
            assert_eq!(Code::from_u16(n as u16), *code);
            let frame = encode(&Message::Error(Refusal::new(*code, "why")));
            assert_eq!(decode(&frame), Ok(Message::Error(Refusal::new(*code, "why"))));
        }
        let names: std::collections::HashSet<&str> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len(), "names are distinct");
        let mut body = 999u16.to_be_bytes().to_vec();
        body.extend_from_slice("from the future".as_bytes());
        assert_eq!(
            decode_body(ERROR, &body),
            Ok(Message::Error(Refusal::new(Code::Other, "from the future")))
        );
        assert_eq!(decode_body(ERROR, &[0]), Err(WireError::Truncated));
        let shown = Refusal::new(Code::InviteUsedUp, "the invite has been used up").to_string();
        assert!(shown.ends_with("[invite_used_up]"), "{shown}");
    }
}
