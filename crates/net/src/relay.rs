//! A relay: a member of a document's group with the relay role, which holds no key.
//! It keeps the envelopes members push to it (ciphertext: it never reads them) and
//! forwards them to the other members connected to it; a member that connects gets
//! everything it keeps. So two members who are never online together still sync,
//! through a machine that cannot read what it carries.
//!
//! It checks what it can without a key, before keeping or forwarding anything: the
//! envelope's form, document and signature, that its signer was a writer at the
//! membership heads it cites and still is, and that the epoch is the one at those
//! heads ([`tandem_auth::envelope::authorize`]). It syncs only with members, follows
//! the membership log like any peer, and serves no history blobs.
//!
//! State, in `dir`: `group.log` (the membership log, as the store keeps it) and
//! `envelopes.log` (`u32 BE length | envelope` records), at most [`MAX_KEPT`] bytes:
//! beyond that the oldest are dropped (a member that needs them gets them from a
//! peer that holds the history).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tandem_auth::device::{PublicKey, public_of};
use tandem_auth::envelope::{self, Kind};
use tandem_auth::group::{Group, Op, Role};

use crate::blobs::BlobResponse;
use crate::error::NetError;
use crate::join;
use crate::protocol::{Code, DocId, Message, Refusal};
use crate::transport::{Behaviour, BehaviourEvent};

/// Most bytes of envelopes a relay keeps for one document.
pub const MAX_KEPT: usize = 256 << 20;
/// Most bytes of envelopes sent in one `Changes` message.
const BATCH_BYTES: usize = 16 << 20;

pub struct Relay {
    pub swarm: Swarm<Behaviour>,
    doc: DocId,
    me: PublicKey,
    group: Group,
    dir: PathBuf,
    kept: Vec<Vec<u8>>,
    seen: HashSet<[u8; 32]>,
    kept_bytes: usize,
    peers: HashSet<PeerId>,
    /// The peer to stay connected to (where the relay was enrolled).
    bootstrap: Option<(PeerId, Vec<Multiaddr>)>,
    hellos: HashSet<OutboundRequestId>,
    /// Live edits in and out on one stream per member (`/tandem/live/1`), as
    /// members send them; a request each for a member that does not speak it. (A
    /// request per keystroke and member made the star stall at 16 typists: 1,440
    /// new streams a second out of the relay, `tandem-bench central`.)
    live: crate::live::LiveStreams,
}

fn read_records(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    let mut r = &bytes[..];
    while r.len() >= 4 {
        let len = u32::from_be_bytes(r[..4].try_into().expect("4 bytes")) as usize;
        let Some(rec) = r.get(4..4 + len) else { break }; // a torn tail: cut
        out.push(rec.to_vec());
        r = &r[4 + len..];
    }
    Ok(out)
}

fn record(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

impl Relay {
    /// A relay for `doc` whose membership log is `ops` (as a member sent it), keeping
    /// its state in `dir`. This device (`me`) must be a relay of the group.
    pub fn new(swarm: Swarm<Behaviour>, doc: DocId, ops: &[Vec<u8>], dir: &Path) -> Result<Relay, String> {
        let me = public_of(swarm.local_peer_id()).ok_or("this device's key is not Ed25519")?;
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut group = Group::empty(doc);
        for op in read_records(&dir.join("group.log"))?.iter().chain(ops) {
            group.add(Op::decode(op).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        if group.members().role(&me) != Some(Role::Relay) {
            return Err("this device is not a relay of the document's group; an admin can make it one: \
                        `tandem group FILE add PEER_ID relay`"
                .into());
        }
        let live = crate::live::LiveStreams::new(swarm.behaviour().stream.new_control(), doc);
        let mut relay = Relay {
            live,
            swarm,
            doc,
            me,
            group,
            dir: dir.to_owned(),
            kept: Vec::new(),
            seen: HashSet::new(),
            kept_bytes: 0,
            peers: HashSet::new(),
            bootstrap: None,
            hellos: HashSet::new(),
        };
        relay.write_group()?;
        for env in read_records(&dir.join("envelopes.log"))? {
            relay.keep_in_memory(env);
        }
        Ok(relay)
    }

    /// Keep connecting to `peer` (where the relay was enrolled).
    pub fn keep_connected(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.bootstrap = Some((peer, addrs));
    }

    /// How many envelopes the relay keeps.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn write_group(&self) -> Result<(), String> {
        let bytes: Vec<u8> =
            self.group.ops_in_order().into_iter().flat_map(|op| record(&op.encode())).collect();
        let path = self.dir.join("group.log");
        let tmp = self.dir.join(".group.log.tmp");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn keep_in_memory(&mut self, env: Vec<u8>) -> bool {
        if !self.seen.insert(*blake3::hash(&env).as_bytes()) {
            return false;
        }
        self.kept_bytes += env.len();
        self.kept.push(env);
        while self.kept_bytes > MAX_KEPT && !self.kept.is_empty() {
            let old = self.kept.remove(0);
            self.kept_bytes -= old.len();
        }
        true
    }

    /// Keep `env` (new ones are appended to `envelopes.log`); false when known.
    fn keep(&mut self, env: &[u8]) -> bool {
        if !self.keep_in_memory(env.to_vec()) {
            return false;
        }
        let path = self.dir.join("envelopes.log");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&record(env)));
        if let Err(e) = written {
            tracing::warn!("{}: {e}; the envelope is kept in memory only", path.display());
        }
        true
    }

    fn is_member(&self, peer: &PeerId) -> bool {
        public_of(peer).is_some_and(|k| k != self.me && self.group.members().role(&k).is_some())
    }

    /// What a relay checks of an envelope without a key.
    fn check(&self, env: &[u8]) -> Result<Kind, Refusal> {
        let refused = |e: envelope::EnvelopeError| {
            let code = match e {
                envelope::EnvelopeError::UnknownHeads => Code::GroupBehind,
                envelope::EnvelopeError::BadSignature
                | envelope::EnvelopeError::NotWriter
                | envelope::EnvelopeError::Revoked
                | envelope::EnvelopeError::EpochMismatch { .. } => Code::Denied,
                _ => Code::Malformed,
            };
            Refusal::new(code, e.to_string())
        };
        let checked = envelope::check(env, &self.doc).map_err(refused)?;
        envelope::authorize(&self.group, &checked.header).map_err(refused)?;
        Ok(checked.header.kind)
    }

    fn send(&mut self, peer: &PeerId, msg: Message) -> OutboundRequestId {
        self.swarm.behaviour_mut().sync_mut().send_request(peer, msg)
    }

    fn admit(&mut self, peer: PeerId) {
        if !self.peers.insert(peer) {
            return;
        }
        tracing::info!(peer = %peer, kept = self.kept.len(), "relaying for a member");
        let ops = self.group.ops_in_order().into_iter().map(Op::encode).collect();
        self.send(&peer, Message::Group { doc: self.doc, ops });
        // Everything kept, in batches.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for env in self.kept.clone() {
            bytes += env.len();
            batch.push(env);
            if bytes >= BATCH_BYTES {
                self.send(&peer, Message::Changes { doc: self.doc, envelopes: std::mem::take(&mut batch) });
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.send(&peer, Message::Changes { doc: self.doc, envelopes: batch });
        }
    }

    fn forward(&mut self, from: PeerId, msg: Message) {
        let others: Vec<PeerId> = self.peers.iter().filter(|p| **p != from).copied().collect();
        for p in others {
            match &msg {
                Message::Live { envelope, .. } => {
                    if let Some(envelope) = self.live.send(p, envelope.clone()) {
                        self.send(&p, Message::Live { doc: self.doc, envelope });
                    }
                }
                _ => {
                    self.send(&p, msg.clone());
                }
            }
        }
    }

    /// A live edit from a member's stream, or envelopes a stream did not take.
    fn on_live(&mut self, event: crate::live::Event) {
        use crate::live::Event;
        match event {
            Event::Received(peer, Message::Live { doc, envelope })
                if doc == self.doc && self.is_member(&peer) =>
            {
                match self.check(&envelope) {
                    Ok(Kind::Live) => self.forward(peer, Message::Live { doc, envelope }),
                    Ok(_) => {
                        tracing::warn!(peer = %peer, "ignored a live-edit frame that is not a live edit")
                    }
                    Err(e) => tracing::warn!(peer = %peer, "refused a live edit: {e}"),
                }
            }
            Event::Received(peer, _) => {
                tracing::warn!(peer = %peer, "ignored a frame on its live-edit stream")
            }
            Event::Unsent { peer, .. } if !self.peers.contains(&peer) => self.live.forget(&peer),
            Event::Unsent { peer, envelopes, unsupported } => {
                self.live.failed(peer, unsupported);
                for envelope in envelopes {
                    self.send(&peer, Message::Live { doc: self.doc, envelope });
                }
            }
        }
    }

    fn on_request(&mut self, peer: PeerId, request: Message) -> Message {
        let doc = match &request {
            Message::Hello { doc, .. }
            | Message::Need { doc, .. }
            | Message::Changes { doc, .. }
            | Message::Live { doc, .. }
            | Message::Group { doc, .. }
            | Message::Join { doc, .. }
            | Message::History { doc, .. }
            | Message::LiveForm { doc, .. }
            | Message::Links { doc, .. } => *doc,
            _ => return Message::Error(Refusal::new(Code::NotARequest, "not a request")),
        };
        if doc != self.doc {
            return Message::Error(Refusal::new(Code::NotShared, "this peer does not share that document"));
        }
        if !self.is_member(&peer) {
            return Message::Error(Refusal::new(Code::NotAMember, "not a member of this document's group"));
        }
        self.admit(peer);
        match request {
            Message::Hello { .. } => Message::Ack { heads: vec![] },
            // A relay types nothing: how its live edits should come is moot.
            // It passes everything on to everyone: what members say of their own
            // forwarding and links does not change that.
            Message::LiveForm { .. } | Message::Links { .. } => Message::Ack { heads: vec![] },
            Message::Join { invite, .. } if invite == [0; 16] => {
                Message::Group { doc, ops: self.group.ops_in_order().into_iter().map(Op::encode).collect() }
            }
            Message::Join { .. } => {
                Message::Error(Refusal::new(Code::Unsupported, "a relay cannot enrol anyone; ask an admin"))
            }
            Message::Need { .. } => Message::Error(Refusal::new(
                Code::Unsupported,
                "a relay holds no history to send; it pushes what it keeps",
            )),
            Message::Changes { envelopes, .. } => {
                let mut fresh = Vec::new();
                for (i, env) in envelopes.iter().enumerate() {
                    match self.check(env) {
                        Ok(Kind::Change | Kind::Snapshot) => {
                            if self.keep(env) {
                                fresh.push(env.clone());
                            }
                        }
                        Ok(Kind::Live) => {
                            return Message::Error(Refusal::new(
                                Code::Malformed,
                                format!("envelope {i} is a live edit"),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(peer = %peer, "refused an envelope: {e}");
                            return Message::Error(Refusal::new(
                                e.code,
                                format!("envelope {i} refused: {}", e.message),
                            ));
                        }
                    }
                }
                if !fresh.is_empty() {
                    self.forward(peer, Message::Changes { doc, envelopes: fresh });
                }
                Message::Ack { heads: vec![] }
            }
            Message::Live { envelope, .. } => match self.check(&envelope) {
                Ok(Kind::Live) => {
                    self.forward(peer, Message::Live { doc, envelope });
                    Message::Ack { heads: vec![] }
                }
                Ok(_) => Message::Error(Refusal::new(Code::Malformed, "not a live edit")),
                Err(e) => Message::Error(e),
            },
            Message::Group { ops, .. } => match self.add_ops(&ops) {
                Ok(0) => Message::Ack { heads: vec![] },
                Ok(_) => {
                    self.forward(peer, Message::Group { doc, ops });
                    Message::Ack { heads: vec![] }
                }
                Err(e) => Message::Error(Refusal::new(Code::Denied, e)),
            },
            _ => Message::Error(Refusal::new(Code::NotARequest, "not a request")),
        }
    }

    fn add_ops(&mut self, ops: &[Vec<u8>]) -> Result<usize, String> {
        let before = self.group.len();
        for op in ops {
            self.group.add(Op::decode(op).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let added = self.group.len() - before;
        if added > 0 {
            self.write_group()?;
            let gone: Vec<PeerId> = self.peers.iter().filter(|p| !self.is_member(p)).copied().collect();
            for p in gone {
                self.peers.remove(&p);
                let _ = self.swarm.disconnect_peer_id(p);
            }
        }
        Ok(added)
    }

    fn hello(&mut self, peer: PeerId) {
        let id = self.send(&peer, Message::Hello { doc: self.doc, heads: vec![] });
        self.hellos.insert(id);
    }

    /// Run until the process ends.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some((peer, addrs)) = self.bootstrap.clone() {
                        if !self.swarm.is_connected(&peer) {
                            let _ = join::dial_unless_connected(&mut self.swarm, peer, addrs);
                        } else if !self.peers.contains(&peer) {
                            // Connected while enrolling, before this loop ran.
                            self.hello(peer);
                        }
                    }
                }
                ev = self.swarm.select_next_some() => self.on_event(ev),
                event = self.live.next() => self.on_live(event),
            }
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.is_member(&peer_id) => {
                self.hello(peer_id)
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.peers.remove(&peer_id);
                self.live.forget(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let reply = self.on_request(peer, request);
                    let _ = self.swarm.behaviour_mut().sync_mut().send_response(channel, reply);
                }
                request_response::Message::Response { request_id, response } => {
                    if self.hellos.remove(&request_id) && matches!(response, Message::Ack { .. }) {
                        self.admit(peer);
                    } else if let Message::Error(refusal) = response {
                        tracing::warn!(peer = %peer, "peer says: {refusal}");
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            })) => {
                tracing::warn!(peer = %peer, "a push to a member failed: {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                let no =
                    BlobResponse::Refused(Refusal::new(Code::Unsupported, "a relay serves no history blobs"));
                let _ = self.swarm.behaviour_mut().blobs_mut().send_response(channel, no);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Presence(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                let _ = self.swarm.behaviour_mut().presence_mut().send_response(channel, ());
            }
            _ => {}
        }
    }
}

/// Enrol as the relay of the document `doc` at `peer`: ask for the membership log
/// (this device must have been made a relay: `tandem group FILE add PEER_ID relay`).
pub async fn enrol(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
    doc: DocId,
) -> Result<Vec<Vec<u8>>, NetError> {
    // The peer may have connected to us first (it found this relay on the LAN).
    join::dial_unless_connected(swarm, peer, addrs.to_vec())
        .map_err(|e| join::unreachable(&peer, addrs, &e))?;
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut asked = None;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let join = Message::Join { doc, invite: [0; 16], secret: [0; 16], recipient: String::new() };
    loop {
        tokio::select! {
            _ = check.tick(), if asked.is_none() && swarm.is_connected(&peer) => {
                asked = Some(swarm.behaviour_mut().sync_mut().send_request(&peer, join.clone()));
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer && asked.is_none() => {
                    asked = Some(swarm.behaviour_mut().sync_mut().send_request(&peer, join.clone()));
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(p), error, .. } if p == peer => {
                    tracing::info!(peer = %peer, "dialing failed: {error}");
                    if !swarm.is_connected(&peer) {
                        return Err(join::unreachable(&peer, addrs, &error));
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response }, ..
                })) if Some(request_id) == asked => {
                    return match response {
                        Message::Group { doc: d, ops } if d == doc => Ok(ops),
                        Message::Error(refusal) => Err(NetError::Refused { who: "peer", refusal }),
                        _ => Err(NetError::Unexpected { who: "peer", what: "not its group's log".into() }),
                    };
                }
                _ => {}
            },
            _ = &mut deadline => return Err(NetError::NoAnswer { peer, wait_s: 60 }),
        }
    }
}
