//! `/tandem/presence/1`: who is here and where their cursor is. Ephemeral (never
//! stored), rate-limited by the sender, and dropped when the peer disconnects.
//!
//! Peers forward the presence they receive (it names its origin), so everyone in a
//! session sees everyone; an entry not refreshed for [`EXPIRE`] is dropped, and
//! senders repeat their presence every [`HEARTBEAT`].
//!
//! Positions travel twice: as a char index, and as an Automerge cursor (stable
//! across concurrent edits) that the receiver prefers when it can resolve it.
//!
//! Frame: `len: u32 BE | body | signature (64)`, the body being `version: u8 | flags:
//! u8 | sent_ms: u64 BE | origin_len: u8 | origin | name_len: u8 | name | 3 x
//! position`, where a position is `index: u64 BE | stable_len: u8 | stable`. The
//! three positions are the selection's anchor and head and the first char of the
//! viewport; flag 1 says the origin is leaving. The signature is the origin's device
//! key over the document id and the body, so a forwarded presence is the origin's
//! own (nobody shows a cursor under another member's name) and for this document;
//! each origin's `sent_ms` only goes up, so an old frame replayed (a departure, a
//! cursor) changes nothing.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use tandem_auth::device::DeviceKey;

pub const PROTOCOL: &str = "/tandem/presence/1";
const VERSION: u8 = 2;
/// Largest presence frame.
pub const MAX_PRESENCE: usize = 2048;
/// Longest name sent, in bytes (cut at a character boundary).
pub const MAX_NAME: usize = 64;
/// How often an unchanged presence is sent again.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a presence lives without being refreshed.
pub const EXPIRE: std::time::Duration = std::time::Duration::from_secs(20);
const LEAVING: u8 = 1;

/// One position in the document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub index: u64,
    /// An Automerge cursor's bytes (empty when the sender had none).
    pub stable: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Whose presence this is (PeerId bytes): peers forward each other's.
    pub origin: Vec<u8>,
    pub name: String,
    pub anchor: Pos,
    pub head: Pos,
    pub top: Pos,
    /// The origin is going away (its last presence).
    pub leaving: bool,
    /// When the origin sent it (its clock, ms since the Unix epoch): newer wins.
    pub sent_ms: u64,
    /// The origin's signature over the body (empty until [`sign`]ed).
    pub signature: Vec<u8>,
}

impl Presence {
    /// Shows the same thing as `other` (only the time and signature differ).
    fn same_place(&self, other: &Presence) -> bool {
        (&self.origin, &self.name, &self.anchor, &self.head, &self.top, self.leaving)
            == (&other.origin, &other.name, &other.anchor, &other.head, &other.top, other.leaving)
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The signed part of a frame.
fn body(p: &Presence) -> Vec<u8> {
    let mut body = vec![VERSION, if p.leaving { LEAVING } else { 0 }];
    body.extend_from_slice(&p.sent_ms.to_be_bytes());
    let origin = &p.origin[..p.origin.len().min(64)];
    body.push(origin.len() as u8);
    body.extend_from_slice(origin);
    let name = cut(&p.name, MAX_NAME);
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    for pos in [&p.anchor, &p.head, &p.top] {
        body.extend_from_slice(&pos.index.to_be_bytes());
        let stable = &pos.stable[..pos.stable.len().min(255)];
        body.push(stable.len() as u8);
        body.extend_from_slice(stable);
    }
    body
}

/// What is signed: the document, then the body.
fn signed(doc: &[u8; 16], p: &Presence) -> Vec<u8> {
    let mut msg = doc.to_vec();
    msg.extend_from_slice(&body(p));
    msg
}

/// Make `p` this device's own presence in document `doc`: its origin, the time, and
/// its signature.
pub fn sign(mut p: Presence, key: &DeviceKey, doc: &[u8; 16]) -> Presence {
    p.origin = key.keypair().public().to_peer_id().to_bytes();
    p.name = cut(&p.name, MAX_NAME).to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    p.sent_ms = now as u64;
    p.signature = key.sign(&signed(doc, &p)).to_vec();
    p
}

/// The origin of `p` when its signature is the origin's, for document `doc`.
pub fn verified_origin(p: &Presence, doc: &[u8; 16]) -> Option<PeerId> {
    let origin = PeerId::from_bytes(&p.origin).ok()?;
    let public = tandem_auth::device::public_of(&origin)?;
    tandem_auth::device::verify(&public, &signed(doc, p), &p.signature).then_some(origin)
}

pub fn encode(p: &Presence) -> Vec<u8> {
    let mut body = body(p);
    body.extend_from_slice(&p.signature);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Decode a frame body (after the length prefix). The signature is read, not
/// checked: see [`verified_origin`].
pub fn decode(body: &[u8]) -> Result<Presence, &'static str> {
    let mut r = body;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        if r.len() < n {
            return Err("truncated presence");
        }
        let (h, t) = r.split_at(n);
        r = t;
        Ok(h)
    };
    if take(1)?[0] != VERSION {
        return Err("unknown presence version");
    }
    let flags = take(1)?[0];
    if flags & !LEAVING != 0 {
        return Err("unknown presence flags");
    }
    let sent_ms = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
    let n = take(1)?[0] as usize;
    let origin = take(n)?.to_vec();
    let n = take(1)?[0] as usize;
    let name = std::str::from_utf8(take(n)?).map_err(|_| "name is not UTF-8")?.to_owned();
    let mut pos = || -> Result<Pos, &'static str> {
        let index = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
        let n = take(1)?[0] as usize;
        Ok(Pos { index, stable: take(n)?.to_vec() })
    };
    let (anchor, head, top) = (pos()?, pos()?, pos()?);
    let signature = take(64)?.to_vec();
    if !take(0)?.is_empty() || !r.is_empty() {
        return Err("trailing bytes in presence");
    }
    Ok(Presence { origin, name, anchor, head, top, leaving: flags & LEAVING != 0, sent_ms, signature })
}

/// The codec: a presence frame out, nothing back.
#[derive(Clone, Default)]
pub struct PresenceCodec;

impl libp2p::request_response::Codec for PresenceCodec {
    type Protocol = StreamProtocol;
    type Request = Presence;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Presence>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_PRESENCE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("presence of {len} bytes is over the limit"),
            ));
        }
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await?;
        decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The answer is the receiver closing the stream once it has the frame: waited
    /// for, so a sender that leaves right after (its goodbye) knows it arrived.
    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut byte = [0u8; 1];
        match io.read(&mut byte).await? {
            0 => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "a presence answer carries nothing")),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, p: Presence) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&p)).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.close().await
    }
}

/// Presence shared between the node (network side) and the editor.
#[derive(Default)]
pub struct Board {
    local: Option<Presence>,
    local_version: u64,
    sent_version: u64,
    /// Remote peers by origin: their presence, when it last changed, when last heard.
    remote: HashMap<PeerId, (Presence, Instant, Instant)>,
    /// The newest `sent_ms` taken from each origin (kept after it leaves): an older
    /// frame is a replay.
    latest: HashMap<PeerId, u64>,
    last_sent: Option<Instant>,
    /// Peers this device is connected to, and by which transport.
    pub links: HashMap<PeerId, &'static str>,
    /// The network's state when it needs saying (offline, waiting for peers).
    pub network: Option<String>,
    /// A node is running with this board.
    pub running: bool,
    /// Set by the editor when it quits: the node leaves the session...
    pub quitting: bool,
    /// ...and sets this when it has.
    pub left: bool,
}

pub type SharedBoard = Arc<Mutex<Board>>;

impl Board {
    /// Set what this device shows; only a change is sent.
    pub fn set_local(&mut self, p: Presence) {
        if self.local.as_ref() != Some(&p) {
            self.local = Some(p);
            self.local_version += 1;
        }
    }

    /// The local presence when it changed since last taken, or is due again.
    pub fn take_unsent(&mut self) -> Option<Presence> {
        let due = self.last_sent.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if self.sent_version == self.local_version && !due {
            return None;
        }
        self.local.as_ref()?;
        self.sent_version = self.local_version;
        self.last_sent = Some(Instant::now());
        self.local.clone()
    }

    pub fn local(&self) -> Option<Presence> {
        self.local.clone()
    }

    /// Take `p` from `origin` if it is newer than anything taken from it yet.
    fn newer(&mut self, origin: PeerId, p: &Presence) -> bool {
        let latest = self.latest.entry(origin).or_insert(0);
        if p.sent_ms <= *latest {
            return false;
        }
        *latest = p.sent_ms;
        true
    }

    /// Record a presence from `origin`; true when it changed (and is worth
    /// forwarding). An older one than already taken (a replay) changes nothing.
    pub fn update(&mut self, origin: PeerId, p: Presence) -> bool {
        if !self.newer(origin, &p) {
            return false;
        }
        let now = Instant::now();
        match self.remote.get_mut(&origin) {
            Some((old, _, heard)) if old.same_place(&p) => {
                // Unchanged: still worth passing on now and then, or peers that hear
                // of it only through us would let it expire.
                let due = heard.elapsed() >= HEARTBEAT / 2;
                *heard = now;
                due
            }
            _ => {
                self.remote.insert(origin, (p, now, now));
                true
            }
        }
    }

    /// Forget `peer`'s presence; true when there was one.
    pub fn remove(&mut self, peer: &PeerId) -> bool {
        self.remote.remove(peer).is_some()
    }

    /// `origin` says it leaves (`p`, signed): forgotten, unless `p` is older than
    /// what was taken from it (a replayed departure). True when it was here.
    pub fn leave(&mut self, origin: PeerId, p: &Presence) -> bool {
        self.newer(origin, p) && self.remove(&origin)
    }

    /// Every remote peer heard from lately: id, presence, how long since it changed,
    /// and how it is reached (a transport, or "relayed" through another peer).
    pub fn peers(&mut self) -> Vec<(String, Presence, std::time::Duration, &'static str)> {
        self.remote.retain(|_, (_, _, heard)| heard.elapsed() < EXPIRE);
        let mut v: Vec<_> = self
            .remote
            .iter()
            .map(|(id, (p, changed, _))| {
                (
                    id.to_string(),
                    p.clone(),
                    changed.elapsed(),
                    self.links.get(id).copied().unwrap_or("relayed"),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: [u8; 16] = [7; 16];

    /// A signed frame replayed later (a departure, an old cursor) changes nothing:
    /// each origin's frames only go forward in time.
    #[test]
    fn replayed_presence_changes_nothing() {
        let key = DeviceKey::generate();
        let origin = key.keypair().public().to_peer_id();
        let mut board = Board::default();
        let old_cursor = sign(ada(), &key, &DOC);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bye = sign(Presence { leaving: true, ..ada() }, &key, &DOC);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let now = sign(Presence { head: Pos { index: 50, stable: vec![] }, ..ada() }, &key, &DOC);
        assert!(board.update(origin, now.clone()));
        assert!(!board.leave(origin, &bye), "a replayed departure");
        assert!(!board.update(origin, old_cursor), "a replayed cursor");
        assert_eq!(board.peers()[0].1.head.index, 50);
    }

    fn ada() -> Presence {
        Presence {
            name: "ada".into(),
            anchor: Pos { index: 3, stable: vec![1, 2, 3] },
            head: Pos { index: 9, stable: vec![] },
            top: Pos { index: 0, stable: vec![7; 40] },
            ..Presence::default()
        }
    }

    #[test]
    fn presence_round_trips_and_bad_frames_are_refused() {
        let key = DeviceKey::generate();
        let p = sign(ada(), &key, &DOC);
        let frame = encode(&p);
        assert_eq!(decode(&frame[4..]), Ok(p.clone()));
        assert_eq!(verified_origin(&p, &DOC), Some(key.keypair().public().to_peer_id()));
        assert_eq!(verified_origin(&p, &[9; 16]), None, "signed for another document");
        for cut in 4..frame.len() {
            assert!(decode(&frame[4..cut]).is_err());
        }
        let mut bad = frame[4..].to_vec();
        bad[0] = 1;
        assert_eq!(decode(&bad), Err("unknown presence version"));
    }

    /// A member cannot show a cursor under another member's id: a presence whose
    /// origin was changed, or whose fields were, no longer verifies.
    #[test]
    fn a_presence_is_attributable_to_its_origin_only() {
        let (ada_key, eve_key) = (DeviceKey::generate(), DeviceKey::generate());
        let mut forged = sign(ada(), &eve_key, &DOC);
        forged.origin = ada_key.keypair().public().to_peer_id().to_bytes();
        assert_eq!(verified_origin(&forged, &DOC), None, "eve's signature under ada's id");
        let mut moved = sign(ada(), &ada_key, &DOC);
        moved.head.index = 1000;
        assert_eq!(verified_origin(&moved, &DOC), None, "a cursor moved by a forwarder");
        let unsigned = Presence { origin: ada_key.keypair().public().to_peer_id().to_bytes(), ..ada() };
        assert_eq!(verified_origin(&unsigned, &DOC), None);
    }

    /// Names are cut at a character boundary, so a long name in any script still
    /// decodes (a cut inside a character made the frame fail and the peer vanish).
    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let key = DeviceKey::generate();
        for name in ["é".repeat(40), "日本語".repeat(10), "👩‍💻".repeat(9), "a".repeat(63) + "é"]
        {
            let p = sign(Presence { name: name.clone(), ..ada() }, &key, &DOC);
            let back = decode(&encode(&p)[4..]).unwrap();
            assert!(back.name.len() <= MAX_NAME && name.starts_with(&back.name), "{name}");
            assert!(!back.name.is_empty());
            assert!(verified_origin(&back, &DOC).is_some());
        }
    }

    #[test]
    fn only_changes_are_sent() {
        let mut b = Board::default();
        assert_eq!(b.take_unsent(), None);
        let p = Presence { name: "x".into(), ..Presence::default() };
        b.set_local(p.clone());
        assert_eq!(b.take_unsent(), Some(p.clone()));
        b.set_local(p);
        assert_eq!(b.take_unsent(), None, "unchanged and not yet due");
    }
}
