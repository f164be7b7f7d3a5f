//! A libp2p node that keeps one document in sync with its peers over
//! `/tandem/sync/1` (request-response streams on QUIC or TCP + Noise + Yamux).
//!
//! Flow: on connecting, each side says `Hello` with its heads; a side that sees heads
//! it lacks asks with `Need` and gets `Changes`; every local commit is pushed as
//! `Changes` to every peer, and changes received from one peer are forwarded to the
//! others, so a chain A-B-C converges. A `Hello` every few seconds catches anything a
//! push missed.
//!
//! Every local edit also goes out at once as `Live` (rope form, ahead of its change;
//! see `tandem_doc::LiveEdit`), forwarded like changes. Changes that arrive together
//! (all the events ready at one wake-up) are applied in one batch. A fresh peer is
//! sent the list of its history's blobs (a snapshot and the changes after it) and
//! fetches them over `/tandem/blobs/1`, each checked against its BLAKE3 hash.
//!
//! Only members of the document's group are synced with: a peer's PeerId is its
//! device key, and its `Hello` (or `Need`, or blob request) is refused unless that key
//! is a member now. Admitting a peer sends it the membership log (`Group`); ops made
//! or received later are passed on, and a peer the log no longer names is dropped.
//! Every envelope a peer sends is checked by the store (signature, writer at the
//! cited membership heads, epoch, actor) before it can touch the document.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, kad, mdns, ping, relay};
use tandem_doc::{ActorId, ChangeHash, LiveEdit};
use tandem_store::{BlobFetch, BlobHash, ImportError, Service, StoreError};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::blobs::{BlobRequest, BlobResponse};
use crate::error::NetError;
use crate::join::{dial_unless_connected, unreachable};
use crate::presence::{self, SharedBoard};
use crate::protocol::{self, BlobRef, Code, DocId, Hash, Message, PROTOCOL, Refusal};
use crate::transport::{Behaviour, BehaviourEvent, Transport};

/// The last characters of a peer id, as the status line names a peer.
fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_string();
    s[s.len().saturating_sub(6)..].to_owned()
}

fn hashes(h: &[ChangeHash]) -> Vec<Hash> {
    h.iter().map(|h| h.0).collect()
}

fn change_hashes(h: &[Hash]) -> Vec<ChangeHash> {
    h.iter().map(|h| ChangeHash(*h)).collect()
}

/// One document's sync with its peers.
pub struct Node {
    pub swarm: Swarm<Behaviour>,
    service: Arc<Service>,
    file: PathBuf,
    doc: DocId,
    peers: HashSet<PeerId>,
    transport: Transport,
    /// The peers to stay connected to (the ticket's, the members met before),
    /// redialed with backoff while disconnected: attempts so far and when next.
    bootstrap: Vec<(PeerId, Vec<Multiaddr>)>,
    redial: HashMap<PeerId, (u32, tokio::time::Instant)>,
    /// Presence shared with the editor, when there is one.
    board: SharedBoard,
    /// This device's actor id, carried by its live edits.
    actor: ActorId,
    /// Changes received since the last batch was applied, with who sent them.
    inbox: Vec<(PeerId, Vec<Vec<u8>>)>,
    /// Live edits already seen (by a hash of their envelope), so forwarding stops.
    seen_live: HashSet<u64>,
    /// Peers that asked for this device's own live edits direct (unsigned: they pass
    /// none on; see [`Message::LiveForm`]). The others get them signed.
    live_direct: HashSet<PeerId>,
    /// What this node last told each peer about its own forwarding (`true`: direct).
    live_form_told: HashMap<PeerId, bool>,
    /// Those words still on their way (a request that fails is said again).
    live_form_requests: HashMap<OutboundRequestId, PeerId>,
    /// The members each peer said it is connected to ([`Message::Links`]): what it
    /// gets from its authors directly is not passed on to it.
    links_of: HashMap<PeerId, HashSet<tandem_auth::device::PublicKey>>,
    /// What this node last told each peer of its own links, and those words on
    /// their way.
    links_told: HashMap<PeerId, Vec<[u8; 32]>>,
    links_requests: HashMap<OutboundRequestId, PeerId>,
    /// The live-edit stream to and from each peer (see [`crate::live`]).
    live: crate::live::LiveStreams,
    /// Live edits going to peers as requests (those with no live-edit stream).
    live_requests: crate::live::RequestWindow<OutboundRequestId>,
    /// Each typist's live edits of its open transaction (its own included), as
    /// sealed, oldest first, and when the last came: a peer admitted mid-transaction
    /// gets them (see [`Node::replay_live`]), or it would see none of that typing
    /// until the change came.
    typing: HashMap<Vec<u8>, (tokio::time::Instant, Vec<Vec<u8>>)>,
    /// Peers admitted while they fetched the history (to let them fetch): they
    /// could take no requests then, so their first hello is welcomed again.
    fetching_history: HashSet<PeerId>,
    /// Addresses of peers found on the LAN by mDNS.
    found: HashMap<PeerId, Vec<Multiaddr>>,
    /// Heads each peer last told us that we knew too: what it surely has.
    synced: HashMap<PeerId, Vec<Hash>>,
    /// Hellos waiting for their answer (only those make us ask for what we lack).
    hellos: HashSet<OutboundRequestId>,
    /// Peers whose first hello was answered since they connected: from then on,
    /// heads this node lacks are asked for only when still missing a while later
    /// (see [`NEED_GRACE`]).
    greeted: HashSet<PeerId>,
    /// Heads peers named that this node lacked, and since when.
    missing_since: HashMap<Hash, tokio::time::Instant>,
    /// When the next batch of remote changes may be applied (see `apply_inbox`).
    apply_at: tokio::time::Instant,
    /// Blobs being fetched for the store (repairs), with the peers not yet asked.
    fetching: HashMap<OutboundRequestId, (BlobFetch, Vec<PeerId>)>,
    /// Some peer was synced with since this node started.
    had_peers: bool,
    /// Circuit relays this node keeps a reservation at (see [`crate::reach`]).
    relays: Vec<(PeerId, Multiaddr)>,
    /// The circuit listener at each relay, while there is one.
    circuits: HashMap<PeerId, ListenerId>,
    /// The relays that granted the reservation now in force.
    reserved: HashSet<PeerId>,
    /// When the relays without a reservation are asked again.
    relay_retry: tokio::time::Instant,
    /// The last round trip measured to each connected peer (libp2p ping).
    rtts: HashMap<PeerId, Duration>,
    /// DHT nodes this node bootstraps from (see [`crate::discovery`]).
    dht_nodes: Vec<(PeerId, Multiaddr)>,
    /// Providing the group's rendezvous key and looking the others up by it, once
    /// there are DHT nodes and this device holds the current epoch's key.
    rendezvous: Option<crate::discovery::Rendezvous>,
    /// When the rendezvous secret is read again (it changes when the epoch does).
    rendezvous_checked: tokio::time::Instant,
    /// What AutoNAT last said of this node's reachability.
    nat: autonat::NatStatus,
    /// When each peer was last asked for the group's log because its envelopes cite
    /// membership ops this node lacks (see [`Node::ask_group`]).
    group_asked: HashMap<PeerId, tokio::time::Instant>,
    /// Peers reached only through a relay whose hole punch failed: the tries made,
    /// and when the next one is due (`None` while a try is under way; see
    /// [`Node::retry_punches`]).
    punch_retry: HashMap<PeerId, (u32, Option<tokio::time::Instant>)>,
}

/// Hole punches tried again after the first fails (2, 4, 8 s apart): one can fail
/// on a lossy link (a lost packet ends its stream) where the next succeeds, and
/// libp2p's DCUtR does not try again itself after a failed exchange.
const PUNCH_RETRIES: u32 = 3;

/// How often a relay without a reservation is asked again.
const RELAY_RETRY: Duration = Duration::from_secs(5);

/// Why a request about another document is refused.
const NOT_SHARED: &str = "this peer does not share that document";
/// Why a peer is not synced with.
const NOT_A_MEMBER: &str =
    "not a member of this document's group (ask an admin for an invite: `tandem share FILE --role writer`)";

/// Most live edits remembered for de-duplication before the memory is cleared.
const SEEN_LIVE_MAX: usize = 100_000;

/// How long heads a peer names may stay missing here before this node asks for them
/// (after the first hello of a connection, which asks at once): a change pushed to
/// this node is usually on its way already.
const NEED_GRACE: Duration = Duration::from_millis(1500);

/// Remote changes are applied at most a quarter of the time: after a batch that
/// took `t`, the next waits `3 t` (at most a second).
const APPLY_PACE: u32 = 3;
/// Most live edits of one transaction kept for peers that come later.
const TYPING_MAX: usize = 4096;
/// Most swarm events handled at one wake-up before a batch of changes is applied.
const EVENTS_PER_BATCH: usize = 256;

impl Node {
    pub fn new(
        swarm: Swarm<Behaviour>,
        service: Arc<Service>,
        file: PathBuf,
        doc: DocId,
        transport: Transport,
    ) -> Node {
        let actor = service.actor();
        let live = crate::live::LiveStreams::new(swarm.behaviour().stream.new_control(), doc);
        let mut node = Node {
            live,
            live_requests: Default::default(),
            swarm,
            service,
            file,
            doc,
            peers: HashSet::new(),
            transport,
            bootstrap: Vec::new(),
            redial: HashMap::new(),
            board: SharedBoard::default(),
            actor,
            inbox: Vec::new(),
            seen_live: HashSet::new(),
            live_direct: HashSet::new(),
            live_form_told: HashMap::new(),
            live_form_requests: HashMap::new(),
            links_of: HashMap::new(),
            links_told: HashMap::new(),
            links_requests: HashMap::new(),
            typing: HashMap::new(),
            fetching_history: HashSet::new(),
            found: HashMap::new(),
            synced: HashMap::new(),
            hellos: HashSet::new(),
            greeted: HashSet::new(),
            missing_since: HashMap::new(),
            apply_at: tokio::time::Instant::now(),
            fetching: HashMap::new(),
            had_peers: false,
            relays: Vec::new(),
            circuits: HashMap::new(),
            reserved: HashSet::new(),
            relay_retry: tokio::time::Instant::now(),
            rtts: HashMap::new(),
            dht_nodes: Vec::new(),
            rendezvous: None,
            rendezvous_checked: tokio::time::Instant::now(),
            nat: autonat::NatStatus::Unknown,
            group_asked: HashMap::new(),
            punch_retry: HashMap::new(),
        };
        node.sync_links();
        node
    }

    /// Stay connected to the members this device met before (see
    /// `Service::remember_peer`), and to the relays their addresses go through:
    /// reopening a shared document reconnects with no ticket.
    pub fn keep_known_peers(&mut self) -> Vec<(PeerId, Multiaddr)> {
        let mut relays = Vec::new();
        for (peer, addrs) in self.service.known_peers(&self.file) {
            let Ok(peer) = peer.parse::<PeerId>() else { continue };
            let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
            for relay in addrs.iter().filter_map(crate::reach::relay_of) {
                if !relays.contains(&relay) {
                    relays.push(relay);
                }
            }
            let connected = self.swarm.is_connected(&peer);
            self.keep_connected(peer, addrs, connected);
        }
        relays
    }

    /// Keep reservations at `relays`, listening through each again whenever its
    /// circuit closes (the relay restarted, the connection dropped); `reached` is
    /// what [`crate::reach::meet_relays`] already set up.
    pub fn use_relays(&mut self, relays: Vec<(PeerId, Multiaddr)>, reached: &crate::reach::Reached) {
        self.circuits.extend(reached.listeners.iter().map(|(p, l)| (*p, *l)));
        for addr in &reached.circuits {
            if let Some((relay, _)) = crate::reach::relay_of(addr) {
                self.reserved.insert(relay);
            }
        }
        for (peer, addr) in relays {
            // Met before this node ran, so identify's answer came before it too: a
            // relay that is connected is asked as an AutoNAT server now (one that
            // does not speak AutoNAT fails that probe, and another is asked).
            if self.swarm.is_connected(&peer) {
                self.swarm.behaviour_mut().autonat.add_server(peer, Some(addr.clone()));
            }
            if !self.relays.iter().any(|(p, _)| *p == peer) {
                self.relays.push((peer, addr));
            }
        }
        self.relay_retry = tokio::time::Instant::now() + RELAY_RETRY;
    }

    fn is_relay(&self, peer: &PeerId) -> bool {
        self.relays.iter().any(|(p, _)| p == peer)
    }

    /// Find the members through the DHT of `nodes` (see [`crate::discovery`]); the
    /// relays count as DHT nodes too (a `tandem relay` is one). With none at all, the
    /// DHT is left alone.
    pub fn use_dht(&mut self, nodes: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in nodes.into_iter().chain(self.relays.clone()) {
            if !self.dht_nodes.iter().any(|(p, a)| *p == peer && *a == addr) {
                self.dht_nodes.push((peer, addr));
            }
        }
        let behaviour = self.swarm.behaviour_mut();
        for (peer, addr) in &self.dht_nodes {
            behaviour.kad.add_address(peer, addr.clone());
        }
        if !self.dht_nodes.is_empty()
            && let Err(e) = behaviour.kad.bootstrap()
        {
            tracing::debug!("DHT bootstrap: {e}");
        }
    }

    /// Provide the group's rendezvous key when due, and look the other members up by
    /// it while none is connected.
    fn discover(&mut self) {
        if self.dht_nodes.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        if self.rendezvous.is_none() || now >= self.rendezvous_checked {
            self.rendezvous_checked = now + Duration::from_secs(10);
            let secret = self.service.rendezvous(&self.file).ok().flatten();
            let current = self.rendezvous.as_ref().map(|r| r.key().clone());
            match secret {
                Some(secret) if current.as_ref() != Some(&crate::discovery::rendezvous_key(&secret)) => {
                    if let Some(old) = current {
                        self.swarm.behaviour_mut().kad.stop_providing(&old);
                    }
                    self.rendezvous = Some(crate::discovery::Rendezvous::new(&secret, now));
                }
                Some(_) => {}
                None => {
                    if let Some(old) = current {
                        self.swarm.behaviour_mut().kad.stop_providing(&old);
                    }
                    self.rendezvous = None;
                }
            }
        }
        let connected = !self.peers.is_empty();
        let Some(r) = self.rendezvous.as_mut() else { return };
        let kad = &mut self.swarm.behaviour_mut().kad;
        if r.provide_due(now) {
            match kad.start_providing(r.key().clone()) {
                Ok(_) => tracing::debug!("providing the group's rendezvous key in the DHT"),
                Err(e) => tracing::warn!("cannot provide the rendezvous key: {e}"),
            }
        }
        if r.lookup_due(connected, now) {
            tracing::debug!("looking the other members up in the DHT");
            r.lookup = Some(kad.get_providers(r.key().clone()));
        }
    }

    /// A lookup found providers of the rendezvous key: dial the members among them
    /// (kad supplies the addresses their records carry while the query runs).
    fn found_providers(&mut self, providers: impl IntoIterator<Item = PeerId>) {
        let me = *self.swarm.local_peer_id();
        for peer in providers {
            if peer == me || !self.is_member(&peer) || self.swarm.is_connected(&peer) {
                continue;
            }
            tracing::info!(peer = %peer, "found a member through the DHT");
            if let Err(e) = dial_unless_connected(&mut self.swarm, peer, Vec::new()) {
                tracing::info!(peer = %peer, "dialing a member found through the DHT: {e}");
            }
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        use kad::{Event, GetProvidersOk, QueryResult};
        let Event::OutboundQueryProgressed { id, result, step, .. } = ev else { return };
        let ours = self.rendezvous.as_ref().is_some_and(|r| r.lookup == Some(id));
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) if ours => {
                self.found_providers(providers)
            }
            QueryResult::GetProviders(Err(e)) if ours => tracing::debug!("DHT lookup: {e}"),
            QueryResult::StartProviding(Ok(_)) => tracing::debug!("the rendezvous key is provided"),
            QueryResult::StartProviding(Err(e)) => tracing::debug!("providing the rendezvous key: {e}"),
            QueryResult::Bootstrap(Err(e)) => tracing::debug!("DHT bootstrap: {e}"),
            _ => {}
        }
        if ours
            && step.last
            && let Some(r) = self.rendezvous.as_mut()
        {
            r.lookup = None;
        }
    }

    /// AutoNAT changed its mind: serve the DHT only when publicly reachable.
    fn on_autonat(&mut self, ev: autonat::Event) {
        let autonat::Event::StatusChanged { new, .. } = ev else { return };
        let mode = match &new {
            autonat::NatStatus::Public(addr) => {
                tracing::info!(addr = %addr, "publicly reachable: serving the DHT too");
                kad::Mode::Server
            }
            autonat::NatStatus::Private => {
                tracing::info!("behind a NAT (AutoNAT): reached through relays and hole punching");
                kad::Mode::Client
            }
            autonat::NatStatus::Unknown => kad::Mode::Client,
        };
        self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        self.nat = new;
    }

    /// Listen again through every relay that has no circuit listener, at most every
    /// [`RELAY_RETRY`].
    fn keep_reservations(&mut self) {
        let now = tokio::time::Instant::now();
        if now < self.relay_retry {
            return;
        }
        self.relay_retry = now + RELAY_RETRY;
        for (peer, addr) in self.relays.clone() {
            if self.circuits.contains_key(&peer) {
                continue;
            }
            match self.swarm.listen_on(crate::reach::circuit_through(&addr)) {
                Ok(id) => {
                    self.circuits.insert(peer, id);
                }
                Err(e) => tracing::warn!("relay {addr}: {e}"),
            }
        }
    }

    /// Tell the store who this node is connected to, for `tandem peers`: each member
    /// peer with its name, role, how it is reached (transport, or the relay it goes
    /// through), the last round trip, and whether its heads are ours; and each relay
    /// with whether it holds a reservation for us.
    fn publish_peers(&mut self) {
        let ours: Option<Vec<Hash>> =
            self.service.heads_and_missing(&self.file, &[]).ok().map(|(heads, _)| hashes(&heads));
        let names: HashMap<String, String> =
            self.board().peers().into_iter().map(|(id, p, _, _)| (id, p.name.clone())).collect();
        let links = &self.swarm.behaviour().links;
        let mut peers = Vec::new();
        let mut ids: Vec<PeerId> = self.peers.iter().copied().collect();
        ids.sort();
        for peer in ids {
            let role = tandem_auth::device::public_of(&peer)
                .and_then(|key| self.service.role_of(&self.file, &key).ok().flatten())
                .map(|r| r.name());
            let in_sync = match (&ours, self.synced.get(&peer)) {
                (Some(ours), Some(theirs)) => {
                    let (mut a, mut b) = (ours.clone(), theirs.clone());
                    a.sort();
                    b.sort();
                    a == b
                }
                _ => false,
            };
            let link = links.of(&peer).unwrap_or("relayed");
            peers.push(serde_json::json!({
                "peer_id": peer.to_string(),
                "name": names.get(&peer.to_string()),
                "role": role,
                "link": link,
                "direct": link != "relayed",
                "via": links.via(&peer).map(|r| r.to_string()),
                "rtt_ms": self.rtts.get(&peer).map(|d| d.as_secs_f64() * 1000.0),
                "in_sync": in_sync,
            }));
        }
        let relays: Vec<serde_json::Value> = self
            .relays
            .iter()
            .map(|(p, a)| {
                serde_json::json!({
                    "peer_id": p.to_string(),
                    "addr": a.to_string(),
                    "reserved": self.reserved.contains(p),
                    "connected": self.swarm.is_connected(p),
                })
            })
            .collect();
        let file = self.file.display().to_string();
        let reachable = match &self.nat {
            autonat::NatStatus::Public(addr) => serde_json::json!({"public": true, "addr": addr.to_string()}),
            autonat::NatStatus::Private => serde_json::json!({"public": false}),
            autonat::NatStatus::Unknown => serde_json::Value::Null,
        };
        // The DHT: its nodes, how many answer, and whether this device can be found.
        let kad = &mut self.swarm.behaviour_mut().kad;
        let routing: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        let dht = serde_json::json!({
            "nodes": self.dht_nodes.len(),
            "routing_table": routing,
            "providing": self.rendezvous.is_some(),
            "mode": if matches!(self.nat, autonat::NatStatus::Public(_)) { "server" } else { "client" },
        });
        let state = serde_json::json!({
            "file": file, "shared": true, "peers": peers, "relays": relays,
            "reachable": reachable, "dht": dht,
        });
        self.service.set_network(&self.file, state);
    }

    /// Try a failed hole punch again when its time has come: a new connection through
    /// the relay starts a new DCUtR exchange (its other end begins it). The relayed
    /// connection in use stays until a direct one replaces it.
    fn retry_punches(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<PeerId> = self
            .punch_retry
            .iter()
            .filter(|(_, (_, at))| at.is_some_and(|at| at <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let via = self.swarm.behaviour().links.via(&peer);
            let relay = via.and_then(|r| self.relays.iter().find(|(id, _)| *id == r).cloned());
            let Some((relay, addr)) = relay else {
                // Direct by now, gone, or through a relay this node does not know.
                self.punch_retry.remove(&peer);
                continue;
            };
            // Not due again until its DCUtR exchange reports.
            if let Some((_, at)) = self.punch_retry.get_mut(&peer) {
                *at = None;
            }
            let circuit = crate::reach::circuit_through(&addr).with(libp2p::multiaddr::Protocol::P2p(peer));
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![circuit])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => tracing::info!(peer = %peer, relay = %relay, "trying the hole punch again"),
                Err(e) => tracing::info!(peer = %peer, "no new try at a hole punch: {e}"),
            }
        }
    }

    /// Close relayed connections a direct one has replaced (a hole punched).
    fn close_superseded(&mut self) {
        for (peer, id) in self.swarm.behaviour().links.superseded() {
            tracing::info!(peer = %peer, "a direct connection replaced the relayed one");
            self.swarm.close_connection(id);
        }
    }

    /// Send live edits as `wire` says (a stream per peer unless told otherwise).
    pub fn with_live_wire(mut self, wire: crate::live::Wire) -> Node {
        self.live.set_wire(wire);
        self
    }

    /// Share presence through `board` (the editor writes ours and reads the others').
    pub fn with_presence(mut self, board: SharedBoard) -> Node {
        self.board = board;
        self.sync_links();
        self
    }

    /// Show on the board how each connected peer is reached (connections made before
    /// this node existed, by the join, included).
    fn sync_links(&mut self) {
        let links = self.swarm.behaviour().links.all().collect();
        self.board().links = links;
    }

    fn board(&self) -> std::sync::MutexGuard<'_, presence::Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep a connection to `peer` (reconnecting with backoff); `connected` when the
    /// swarm already has one.
    pub fn keep_connected(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, connected: bool) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let addrs_text = addrs.iter().map(|a| a.to_string()).collect();
        if let Err(e) = self.service.remember_peer(&self.file, &peer.to_string(), addrs_text) {
            tracing::debug!("remembering {peer}: {e}");
        }
        match self.bootstrap.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, known)) => *known = addrs,
            None => self.bootstrap.push((peer, addrs)),
        }
        if connected {
            self.peers.insert(peer);
            self.hello(&peer);
        }
    }

    /// Tell the editor how the network is when that needs saying.
    fn report_network(&mut self) {
        let state = if !self.peers.is_empty() {
            None
        } else if !self.bootstrap.is_empty() {
            let now = tokio::time::Instant::now();
            let next = self.redial.values().map(|(_, at)| at.saturating_duration_since(now)).min();
            Some(format!("offline, retrying in {} s", next.unwrap_or_default().as_secs().max(1)))
        } else if self.had_peers {
            Some("sharing, no peers connected".to_owned())
        } else {
            Some("sharing, no peers yet".to_owned())
        };
        // A relay that does not answer: said, while sharing goes on over the rest.
        let missing: Vec<String> = self
            .relays
            .iter()
            .filter(|(p, _)| !self.reserved.contains(p))
            .map(|(p, _)| short_peer(p))
            .collect();
        let state = match (state, missing.is_empty()) {
            (state, true) => state,
            (Some(s), false) => Some(format!("{s}; relay {} unreachable", missing.join(", "))),
            (None, false) => Some(format!("relay {} unreachable", missing.join(", "))),
        };
        self.board().network = state;
    }

    /// True when `peer`'s device key is a member of the document's group now.
    fn is_member(&self, peer: &PeerId) -> bool {
        let Some(key) = tandem_auth::device::public_of(peer) else { return false };
        matches!(self.service.role_of(&self.file, &key), Ok(Some(_)))
    }

    /// Drop peers the membership log no longer names (removed, or left).
    fn drop_non_members(&mut self) {
        let gone: Vec<PeerId> = self.peers.iter().filter(|p| !self.is_member(p)).copied().collect();
        for p in gone {
            tracing::info!(peer = %p, "no longer a member: dropping it");
            self.peers.remove(&p);
            self.synced.remove(&p);
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    /// Send membership ops to every peer but `except`.
    fn send_group(&mut self, ops: Vec<Vec<u8>>, except: Option<PeerId>) {
        let peers: Vec<PeerId> = self.peers.iter().filter(|p| Some(**p) != except).copied().collect();
        for p in peers {
            self.send(&p, Message::Group { doc: self.doc, ops: ops.clone() });
        }
    }

    /// Ops a peer sent: added to the group, passed on when new, and peers no longer
    /// members dropped.
    fn receive_group(&mut self, from: PeerId, ops: Vec<Vec<u8>>) -> Result<(), Refusal> {
        let n = self.service.add_group_ops(&self.file, &ops).map_err(|e| refusal(&e))?;
        if n > 0 {
            tracing::info!(peer = %from, new = n, "membership changed");
            self.send_group(ops, Some(from));
            self.drop_non_members();
        }
        Ok(())
    }

    /// Sync with `peer` if it is a member (it may send before its hello's answer
    /// arrives here, as a relay does).
    fn admit_if_member(&mut self, peer: &PeerId) -> Result<(), Refusal> {
        if !self.peers.contains(peer) {
            if !self.is_member(peer) {
                return Err(Refusal::new(Code::NotAMember, NOT_A_MEMBER));
            }
            self.admit(*peer);
        }
        Ok(())
    }

    /// A peer that said hello for this document (and is a member): sync with it
    /// from now on, starting with the membership log.
    fn admit(&mut self, peer: PeerId) {
        if self.peers.insert(peer) {
            self.had_peers = true;
            tracing::info!(peer = %peer, "syncing with peer");
            self.welcome(peer);
            self.tell_live_form();
            self.report_network();
        }
    }

    /// What a peer that starts syncing gets first: the membership log, our
    /// presence, and the live edits still being typed.
    fn welcome(&mut self, peer: PeerId) {
        match self.service.group_ops(&self.file) {
            Ok(ops) => {
                self.send(&peer, Message::Group { doc: self.doc, ops });
            }
            Err(e) => tracing::error!("{e}"),
        }
        let mine = self.board().local();
        if let Some(p) = mine {
            let p = presence::sign(p, &self.service.keys().device, &self.doc);
            self.swarm.behaviour_mut().presence.send_request(&peer, p);
        }
        self.replay_live(peer);
    }

    fn redial_if_due(&mut self) {
        for (peer, addrs) in self.bootstrap.clone() {
            let now = tokio::time::Instant::now();
            if self.swarm.is_connected(&peer) {
                self.redial.insert(peer, (0, now));
                continue;
            }
            let (attempts, at) = self.redial.get(&peer).copied().unwrap_or((0, now));
            if now < at {
                continue;
            }
            let backoff = Duration::from_secs((1u64 << attempts.min(5)).min(30));
            self.redial.insert(peer, (attempts + 1, now + backoff));
            let mut addrs = addrs;
            addrs.extend(self.found.get(&peer).into_iter().flatten().cloned());
            if let Err(e) = self.dial(peer, &addrs) {
                tracing::info!("redialing {peer}: {e}");
            }
        }
    }

    /// Dial `peer` at `addrs` (those the transport allows).
    pub fn dial(&mut self, peer: PeerId, addrs: &[Multiaddr]) -> Result<(), NetError> {
        let addrs: Vec<Multiaddr> = addrs.iter().filter(|a| self.transport.allows(a)).cloned().collect();
        if addrs.is_empty() && !self.swarm.behaviour().mdns.is_enabled() {
            return Err(NetError::NoAddress(self.transport.name()));
        }
        // With no address, mDNS supplies what it found on the LAN.
        dial_unless_connected(&mut self.swarm, peer, addrs.clone())
            .map_err(|e| unreachable(&peer, &addrs, &e))
    }

    fn send(&mut self, peer: &PeerId, msg: Message) -> OutboundRequestId {
        self.swarm.behaviour_mut().sync.send_request(peer, msg)
    }

    fn hello(&mut self, peer: &PeerId) {
        match self.service.heads_and_missing(&self.file, &[]) {
            Ok((heads, _)) => {
                let msg = Message::Hello { doc: self.doc, heads: hashes(&heads) };
                let id = self.send(peer, msg);
                self.hellos.insert(id);
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// The heads of `theirs` we know: the peer has everything before them.
    fn remember_synced(&mut self, peer: &PeerId, theirs: &[Hash], missing: &[ChangeHash]) {
        let known: Vec<Hash> =
            theirs.iter().filter(|h| !missing.contains(&ChangeHash(**h))).copied().collect();
        if !known.is_empty() {
            self.synced.insert(*peer, known);
        }
    }

    /// Ask `peer` for what we lack when it names heads we do not have: at once after
    /// connecting, later only for heads still missing [`NEED_GRACE`] after a peer
    /// first named them (a change in flight comes by itself; asking at every hello
    /// had each peer send its whole recent history to the others every second with
    /// 16 typists in a mesh: 21 KB of changes a keystroke, `tandem-bench central`).
    fn need_if_missing(&mut self, peer: &PeerId, theirs: &[Hash]) {
        let result = self.service.heads_and_missing(&self.file, &change_hashes(theirs));
        if let Ok((_, missing)) = &result {
            self.remember_synced(peer, theirs, missing);
        }
        match result {
            Ok((ours, missing)) if !missing.is_empty() => {
                let now = tokio::time::Instant::now();
                let first = self.greeted.insert(*peer);
                let mut due = first;
                for h in &missing {
                    let since = *self.missing_since.entry(h.0).or_insert(now);
                    due |= now.duration_since(since) >= NEED_GRACE;
                }
                if self.missing_since.len() > 4096 {
                    self.missing_since.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
                }
                if due {
                    let msg = Message::Need { doc: self.doc, have: hashes(&ours) };
                    self.send(peer, msg);
                }
            }
            Ok(_) => {
                self.greeted.insert(*peer);
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Queue envelopes from a member for the next batch (the store checks each).
    fn receive(&mut self, from: PeerId, envelopes: Vec<Vec<u8>>) -> Result<(), Refusal> {
        self.admit_if_member(&from)?;
        if let Some(bad) = envelopes.iter().position(|e| !tandem_auth::envelope::is_envelope(e)) {
            return Err(Refusal::new(
                Code::Malformed,
                format!("item {bad} is not a signed envelope (an old tandem, or a forged message)"),
            ));
        }
        self.inbox.push((from, envelopes));
        Ok(())
    }

    /// Apply every queued change with one Automerge call, then forward each sender's
    /// changes to the other peers. A batch Automerge refuses is retried sender by
    /// sender, so one bad peer cannot hold the others' changes back.
    ///
    /// Paced: the next batch waits [`APPLY_PACE`] times as long as this one took.
    /// Applying runs on this node's task, and on a long document it costs tens of
    /// milliseconds however few changes come (Automerge walks its op set), so
    /// applying each change as it came kept the node from the live edits that
    /// show the same keys at once; batched, the cost is shared (8 typists on a 50,000
    /// character document: `tandem-bench central --initial-chars 50000`).
    fn apply_inbox(&mut self) {
        if self.inbox.is_empty() || tokio::time::Instant::now() < self.apply_at {
            return;
        }
        let inbox = std::mem::take(&mut self.inbox);
        let all: Vec<Vec<u8>> = inbox.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
        let started = tokio::time::Instant::now();
        let applied = self.service.apply_remote(&self.file, all);
        let took = started.elapsed();
        self.apply_at = tokio::time::Instant::now() + (took * APPLY_PACE).min(Duration::from_secs(1));
        let forward = match applied {
            Ok((fresh, _)) => {
                tracing::debug!(fresh, senders = inbox.len(), "applied a batch of remote changes");
                inbox.into_iter().filter(|_| fresh > 0).collect()
            }
            Err(_) => {
                let mut behind = Vec::new();
                let forward = inbox
                    .into_iter()
                    .filter(|(from, envelopes)| {
                        match self.service.apply_remote(&self.file, envelopes.clone()) {
                            Ok((fresh, _)) => fresh > 0,
                            Err(e @ StoreError::GroupBehind(_)) => {
                                tracing::info!(peer = %from, "{e}: asking it for the group's log");
                                behind.push(*from);
                                false
                            }
                            Err(e) => {
                                tracing::warn!(peer = %from, "refused changes: {e}");
                                false
                            }
                        }
                    })
                    .collect::<Vec<_>>();
                for from in behind {
                    self.ask_group(from);
                }
                forward
            }
        };
        for (from, envelopes) in forward {
            // Each peer gets the changes whose authors it is not connected to.
            let authors: Vec<Option<tandem_auth::device::PublicKey>> =
                envelopes.iter().map(|e| tandem_auth::envelope::signer_of(e)).collect();
            for p in self.pass_on_to(&from, None) {
                let batch: Vec<Vec<u8>> = envelopes
                    .iter()
                    .zip(&authors)
                    .filter(|(_, a)| !a.as_ref().is_some_and(|a| self.linked(&p, a)))
                    .map(|(e, _)| e.clone())
                    .collect();
                if !batch.is_empty() {
                    self.send(&p, Message::Changes { doc: self.doc, envelopes: batch });
                }
            }
        }
    }

    /// A live edit from `from`: show it if it fits, and pass it on once.
    fn receive_live(&mut self, from: PeerId, envelope: Vec<u8>) -> Result<(), Refusal> {
        self.admit_if_member(&from)?;
        if !self.seen_live.insert(envelope_id(&envelope)) {
            return Ok(());
        }
        // The connection proves who `from` is: its own keystrokes need no signature
        // check here (those it forwards do).
        let sender = tandem_auth::device::public_of(&from);
        let (signer, plain) = match self.service.open_live(&self.file, &envelope, sender.as_ref()) {
            Ok(opened) => opened,
            Err(e) => {
                if matches!(e, StoreError::GroupBehind(_)) {
                    self.ask_group(from);
                }
                return Err(refusal(&e));
            }
        };
        // Its typist is its signer: a device types only as itself.
        let actor = ActorId::from(signer.to_vec());
        let live = protocol::decode_live(&plain, &actor)
            .map_err(|e| Refusal::new(Code::Malformed, e.to_string()))?;
        if self.seen_live.len() > SEEN_LIVE_MAX {
            self.seen_live.clear();
        }
        let shown = self.service.apply_live(&self.file, &actor, &live).map_err(|e| refusal(&e))?;
        tracing::trace!(peer = %from, seq = live.seq, shown, "live edit");
        if tandem_auth::envelope::is_direct(&envelope) {
            // Its sender's word, with no signature: nobody else could check it.
            return Ok(());
        }
        self.remember_typing(actor.to_bytes().to_vec(), live.seq, &envelope);
        for p in self.pass_on_to(&from, Some(&signer)) {
            self.send_live_to(p, envelope.clone());
        }
        Ok(())
    }

    /// Ask `peer` for the group's whole membership log (a member's `Join` without an
    /// invite), at most every two seconds: its envelopes cite ops this node has not
    /// seen, which happens when a push of them was lost (a peer admitted while it was
    /// still fetching the history cannot take requests yet). Its answer
    /// ([`Message::Group`]) catches the log up, and the envelopes its sender pushes
    /// again are taken.
    fn ask_group(&mut self, peer: PeerId) {
        let now = tokio::time::Instant::now();
        if self.group_asked.get(&peer).is_some_and(|t| now < *t + Duration::from_secs(2)) {
            return;
        }
        self.group_asked.insert(peer, now);
        let ask = Message::Join { doc: self.doc, invite: [0; 16], secret: [0; 16], recipient: String::new() };
        self.send(&peer, ask);
    }

    /// Keep a live edit for peers admitted later in its transaction (`seq` 0 starts
    /// a new one).
    fn remember_typing(&mut self, actor: Vec<u8>, seq: u32, envelope: &[u8]) {
        let now = tokio::time::Instant::now();
        let (at, edits) = self.typing.entry(actor).or_insert_with(|| (now, Vec::new()));
        if seq == 0 {
            edits.clear();
        }
        // A transaction this long is committed long before (`[commit] max_ms`); past
        // it the replay would not fit anyway.
        if edits.len() as u32 == seq && edits.len() < TYPING_MAX {
            edits.push(envelope.to_vec());
        }
        *at = now;
    }

    /// Send a newly admitted `peer` the live edits of every transaction still being
    /// typed (its last key within [`tandem_store::LIVE_UNCONFIRMED_MS`]), in order:
    /// it shows them as if it had been there. Stale ones (a change has confirmed them
    /// since) do not fit its document and are ignored there.
    fn replay_live(&mut self, peer: PeerId) {
        let fresh = Duration::from_millis(tandem_store::LIVE_UNCONFIRMED_MS);
        let now = tokio::time::Instant::now();
        self.typing.retain(|_, (at, _)| now < *at + fresh);
        let envelopes: Vec<Vec<u8>> = self.typing.values().flat_map(|(_, e)| e.iter().cloned()).collect();
        for envelope in envelopes {
            self.send_live_to(peer, envelope);
        }
    }

    /// Send `envelope` (a sealed live edit) to `peer`: on its live-edit stream, or as a
    /// request to a peer that has none.
    fn send_live_to(&mut self, peer: PeerId, envelope: Vec<u8>) {
        if let Some(envelope) = self.live.send(peer, envelope) {
            self.send_live_request(peer, envelope);
        }
    }

    /// Send `envelope` to `peer` as a request, or queue it behind those outstanding
    /// (see [`crate::live::RequestWindow`]).
    fn send_live_request(&mut self, peer: PeerId, envelope: Vec<u8>) {
        if let Some(envelope) = self.live_requests.offer(peer, envelope) {
            let id = self.send(&peer, Message::Live { doc: self.doc, envelope });
            self.live_requests.sent(id, peer);
        }
    }

    /// Request `id` was answered or failed: a live edit waiting for its slot goes.
    fn live_request_done(&mut self, id: &OutboundRequestId) {
        if let Some((peer, envelope)) = self.live_requests.done(id) {
            let id = self.send(&peer, Message::Live { doc: self.doc, envelope });
            self.live_requests.sent(id, peer);
        }
    }

    /// What a live-edit stream task reports: a frame read, or envelopes that must go as
    /// requests instead.
    fn on_live(&mut self, event: crate::live::Event) {
        use crate::live::Event;
        match event {
            Event::Received(peer, Message::Live { doc, envelope }) if doc == self.doc => {
                if let Err(e) = self.receive_live(peer, envelope) {
                    tracing::warn!(peer = %peer, "refused a live edit: {e}");
                }
            }
            Event::Received(peer, other) => {
                tracing::warn!(peer = %peer, "ignored a frame on its live-edit stream that is not a live edit of this document: {:?}", std::mem::discriminant(&other));
            }
            Event::Unsent { peer, .. } if !self.peers.contains(&peer) => self.live.forget(&peer),
            Event::Unsent { peer, envelopes, unsupported } => {
                self.live.failed(peer, unsupported);
                for envelope in envelopes {
                    self.send_live_request(peer, envelope);
                }
            }
        }
    }

    /// Send a local live edit to every peer: direct to those that pass none on,
    /// signed to the others (sealed once for each form that is needed).
    fn send_live(&mut self, live: &LiveEdit) {
        let encoded = protocol::encode_live(&self.actor, live);
        let (direct, signed): (Vec<PeerId>, Vec<PeerId>) =
            self.peers.iter().partition(|p| self.live_direct.contains(p));
        let sealed = |direct_form: bool, needed: bool| -> Option<Vec<u8>> {
            if !needed {
                return None;
            }
            let envelope = if direct_form {
                self.service.seal_live_direct(&self.file, &encoded)
            } else {
                self.service.seal_live(&self.file, &encoded)
            };
            envelope.map_err(|e| tracing::debug!("live edit not sent: {e}")).ok()
        };
        let direct_envelope = sealed(true, !direct.is_empty());
        // With no peer at all it is still made, for peers that come while it is typed.
        let signed_envelope = sealed(false, !signed.is_empty() || direct.is_empty());
        for (envelope, peers) in [(direct_envelope.as_ref(), &direct), (signed_envelope.as_ref(), &signed)] {
            let Some(envelope) = envelope else { continue };
            self.seen_live.insert(envelope_id(envelope));
            for p in peers {
                self.send_live_to(*p, envelope.clone());
            }
        }
        // Kept for peers admitted later in this transaction: signed when it was made.
        if let Some(envelope) = signed_envelope.or(direct_envelope) {
            self.remember_typing(self.actor.to_bytes().to_vec(), live.seq, &envelope);
        }
    }

    /// Tell each peer whether to send this node its own live edits direct: yes when
    /// this node has no other peer to pass them on to (two people editing together
    /// save ~150 bytes a keystroke), no as soon as it has.
    fn tell_live_form(&mut self) {
        let peers: Vec<PeerId> = self.peers.iter().copied().collect();
        let mut links: Vec<[u8; 32]> = peers.iter().filter_map(tandem_auth::device::public_of).collect();
        links.sort_unstable();
        for p in peers {
            if self.links_told.get(&p) != Some(&links) {
                self.links_told.insert(p, links.clone());
                let id = self.send(&p, Message::Links { doc: self.doc, peers: links.clone() });
                self.links_requests.insert(id, p);
            }
            // Direct when every other peer of this node hears from `p` itself.
            let key = tandem_auth::device::public_of(&p);
            let direct = self.peers.iter().all(|q| *q == p || key.is_some_and(|k| self.linked(q, &k)));
            if self.live_form_told.get(&p) != Some(&direct) {
                self.live_form_told.insert(p, direct);
                let id = self.send(&p, Message::LiveForm { doc: self.doc, direct });
                self.live_form_requests.insert(id, p);
            }
        }
    }

    /// True when `peer` is the device `author` or said it is connected to it: it
    /// has what `author` sends. (By key: a PeerId made from a key decodes the point,
    /// ~10 us, and this is asked for every keystroke passed on.)
    fn linked(&self, peer: &PeerId, author: &tandem_auth::device::PublicKey) -> bool {
        tandem_auth::device::public_of(peer).as_ref() == Some(author)
            || self.links_of.get(peer).is_some_and(|l| l.contains(author))
    }

    /// The peers to pass on to what `from` sent and `author` made: all but those
    /// that have it from either.
    fn pass_on_to(&self, from: &PeerId, author: Option<&tandem_auth::device::PublicKey>) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|p| *p != from && !author.is_some_and(|a| self.linked(p, a)))
            .copied()
            .collect()
    }

    /// Run until the process ends, fed by the service's own feeds of local changes
    /// and live edits for `self.file` (what `tandem share`/`join` do).
    pub async fn serve(self) -> Result<(), String> {
        self.serve_until(stop_signal()).await
    }

    /// [`Self::serve`], leaving the session cleanly when `stop` resolves.
    pub async fn serve_until(self, stop: Stop) -> Result<(), String> {
        let local = bridge(self.service.subscribe_changes(&self.file).map_err(|e| e.to_string())?);
        let live = bridge(self.service.subscribe_live(&self.file).map_err(|e| e.to_string())?);
        let fetches = bridge(self.service.subscribe_blob_fetch(&self.file).map_err(|e| e.to_string())?);
        let group = bridge(self.service.subscribe_group(&self.file).map_err(|e| e.to_string())?);
        // Ctrl-C or a SIGTERM: leave the session cleanly (see `leave`), then return.
        let board = Arc::clone(&self.board);
        tokio::spawn(async move {
            stop.await;
            board.lock().unwrap_or_else(|e| e.into_inner()).quitting = true;
        });
        self.run_with(local, live, Some(fetches), Some(group)).await;
        Ok(())
    }

    /// Leave the session: every peer hears that this device goes (and passes it on,
    /// so peers not connected to it hear it too), then the connections are closed, so
    /// the others see it leave at once instead of when the connection times out.
    pub async fn leave(&mut self, last: Vec<Vec<Vec<u8>>>) {
        let name = self.board().local().map(|p| p.name).unwrap_or_default();
        let bye = presence::sign(
            presence::Presence { name, leaving: true, ..presence::Presence::default() },
            &self.service.keys().device,
            &self.doc,
        );
        let peers: Vec<PeerId> = self.peers.iter().copied().collect();
        // Each protocol numbers its own requests: one set each.
        let mut changes: HashSet<OutboundRequestId> = HashSet::new();
        for batch in last {
            for p in &peers {
                changes.insert(self.send(p, Message::Changes { doc: self.doc, envelopes: batch.clone() }));
            }
        }
        let mut byes: HashSet<OutboundRequestId> =
            peers.iter().map(|p| self.swarm.behaviour_mut().presence.send_request(p, bye.clone())).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while !(changes.is_empty() && byes.is_empty()) {
            let Ok(ev) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await else {
                break;
            };
            match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Presence(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, .. },
                    ..
                }))
                | SwarmEvent::Behaviour(BehaviourEvent::Presence(
                    request_response::Event::OutboundFailure { request_id, .. },
                )) => {
                    byes.remove(&request_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, .. },
                    ..
                }))
                | SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                    request_id,
                    ..
                })) => {
                    changes.remove(&request_id);
                }
                _ => {}
            }
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in connected {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while self.swarm.connected_peers().next().is_some() {
            if tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await.is_err() {
                break;
            }
        }
        tracing::info!("left the session");
    }

    /// Ask the first of `peers` for the blob `fetch` wants (see [`Self::on_blob_response`]).
    fn fetch_blob(&mut self, fetch: BlobFetch, mut peers: Vec<PeerId>) {
        let Some(peer) = peers.pop() else {
            let _ = fetch.reply.send(Err("no connected peer has it".into()));
            return;
        };
        let req = BlobRequest { doc: self.doc, hash: *fetch.hash.as_bytes() };
        let id = self.swarm.behaviour_mut().blobs.send_request(&peer, req);
        self.fetching.insert(id, (fetch, peers));
    }

    /// A peer's answer to a blob we asked for: verified on import; a peer that sends
    /// bytes that are not the blob is dropped, and the next peer asked.
    fn on_blob_response(&mut self, peer: PeerId, id: OutboundRequestId, response: Option<BlobResponse>) {
        let Some((fetch, rest)) = self.fetching.remove(&id) else { return };
        match response {
            Some(BlobResponse::Found(bao)) => {
                match self.service.import_blob(fetch.hash, fetch.tag.clone(), bao) {
                    Ok(()) => {
                        tracing::info!(peer = %peer, blob = %fetch.hash, "fetched a blob");
                        let _ = fetch.reply.send(Ok(peer.to_string()));
                        return;
                    }
                    // Our own store failed: asking another peer would not help.
                    Err(e @ ImportError::Local(_)) => {
                        let _ = fetch.reply.send(Err(e.to_string()));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer, blob = %fetch.hash, "peer sent a bad blob ({e}); dropping it");
                        self.peers.remove(&peer);
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                }
            }
            Some(BlobResponse::Refused(why)) => {
                tracing::info!(peer = %peer, "peer has no blob {}: {why}", fetch.hash)
            }
            None => {}
        }
        self.fetch_blob(fetch, rest);
    }

    /// Run until the process ends: sync with peers, push `local` changes and `live`
    /// edits as they come.
    pub async fn run(self, local: UnboundedReceiver<Vec<Vec<u8>>>, live: UnboundedReceiver<LiveEdit>) {
        self.run_with(local, live, None, None).await
    }

    /// [`Self::run`], also fetching blobs the store asks for (`fetches`).
    async fn run_with(
        mut self,
        mut local: UnboundedReceiver<Vec<Vec<u8>>>,
        mut live: UnboundedReceiver<LiveEdit>,
        mut fetches: Option<UnboundedReceiver<BlobFetch>>,
        mut group: Option<UnboundedReceiver<Vec<Vec<u8>>>>,
    ) {
        self.board().running = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Presence goes out at most 20 times a second, and only when it changed.
        let mut presence_tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = presence_tick.tick() => {
                    // A batch held back by the pacing goes now if its time came.
                    self.apply_inbox();
                    if let Err(e) = self.service.save_if_stale(&self.file) {
                        tracing::error!("writing {}: {e}", self.file.display());
                    }
                    if self.board().quitting {
                        // The last changes (a discard, the final commit) go first.
                        let mut last = Vec::new();
                        while let Ok(batch) = local.try_recv() {
                            last.push(batch);
                        }
                        self.leave(last).await;
                        self.board().left = true;
                        return;
                    }
                    let unsent = self.board().take_unsent();
                    if let Some(p) = unsent {
                        let p = presence::sign(p, &self.service.keys().device, &self.doc);
                        let peers: Vec<PeerId> = self.peers.iter().copied().collect();
                        for peer in peers {
                            self.swarm.behaviour_mut().presence.send_request(&peer, p.clone());
                        }
                    }
                }
                ev = self.swarm.select_next_some() => {
                    self.on_event(ev);
                    // Everything else that has already arrived joins this batch.
                    for _ in 0..EVENTS_PER_BATCH {
                        match self.swarm.next().now_or_never() {
                            Some(Some(ev)) => self.on_event(ev),
                            _ => break,
                        }
                    }
                    self.apply_inbox();
                }
                Some(edit) = live.recv() => self.send_live(&edit),
                event = self.live.next() => self.on_live(event),
                Some(fetch) = async {
                    match fetches.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let peers = self.peers.iter().copied().collect();
                    self.fetch_blob(fetch, peers);
                }
                Some(ops) = async {
                    match group.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // Made here (a group command, an invite redeemed, a rotation).
                    self.send_group(ops, None);
                    self.drop_non_members();
                }
                Some(batch) = local.recv() => {
                    let peers: Vec<PeerId> = self.peers.iter().copied().collect();
                    for p in peers {
                        self.send(&p, Message::Changes { doc: self.doc, envelopes: batch.clone() });
                    }
                }
                _ = tick.tick() => {
                    self.redial_if_due();
                    self.keep_reservations();
                    self.discover();
                    self.close_superseded();
                    self.retry_punches();
                    self.sync_links();
                    self.report_network();
                    self.publish_peers();
                    self.tell_live_form();
                    let peers: Vec<PeerId> = self.peers.iter().copied().collect();
                    for p in peers {
                        self.hello(&p);
                    }
                }
            }
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::info!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.sync_links();
                // It becomes a peer once it says hello for this document. A member
                // is greeted at once; any other peer (a joiner, a relay, a DHT node)
                // only once identify says it speaks tandem's protocol.
                if !self.peers.contains(&peer_id) && self.is_member(&peer_id) && !self.is_relay(&peer_id) {
                    self.hello(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal, .. },
            )) => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "reservation at the relay accepted");
                }
                self.reserved.insert(relay_peer_id);
                self.report_network();
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                let relay = self.circuits.iter().find(|(_, l)| **l == listener_id).map(|(p, _)| *p);
                if let Some(relay) = relay {
                    self.circuits.remove(&relay);
                    self.reserved.remove(&relay);
                    match reason {
                        Err(e) => {
                            tracing::warn!(relay = %relay, "no reservation at the relay: {e}; asking again")
                        }
                        Ok(()) => tracing::info!(relay = %relay, "the relay's circuit closed; asking again"),
                    }
                    self.report_network();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if self.is_member(&peer_id) => {
                // Where it listens now (its circuits through relays too): how this
                // device finds it again when the document is next opened.
                // Circuits first (they outlast restarts and new ports), loopback last.
                let mut listen = info.listen_addrs.clone();
                let loopback = |a: &Multiaddr| {
                    a.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_loopback()))
                };
                listen.sort_by_key(|a| (!crate::reach::is_circuit(a), loopback(a)));
                let addrs = listen.iter().map(|a| a.to_string()).collect();
                if let Err(e) = self.service.remember_peer(&self.file, &peer_id.to_string(), addrs) {
                    tracing::debug!("remembering {peer_id}: {e}");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(ev)) => self.on_autonat(ev),
            SwarmEvent::NewListenAddr { .. }
            | SwarmEvent::ExpiredListenAddr { .. }
            | SwarmEvent::ExternalAddrConfirmed { .. }
            | SwarmEvent::ExternalAddrExpired { .. } => {
                // Providers' records carry their addresses: new ones go out again.
                if let Some(r) = self.rendezvous.as_mut() {
                    r.addresses_changed(tokio::time::Instant::now());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // An AutoNAT server among the relays and DHT nodes is asked while it is
                // connected (asking one that is gone would fail the probe).
                let ours = self.is_relay(&peer_id) || self.dht_nodes.iter().any(|(p, _)| *p == peer_id);
                if ours && info.protocols.contains(&autonat::DEFAULT_PROTOCOL_NAME) {
                    self.swarm.behaviour_mut().autonat.add_server(peer_id, None);
                }
                if info.protocols.iter().any(|p| p.as_ref() == kad::PROTOCOL_NAME.as_ref()) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                let tandem = info.protocols.iter().any(|p| p.as_ref() == PROTOCOL);
                if tandem && !self.peers.contains(&peer_id) && !self.is_relay(&peer_id) {
                    self.hello(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. })) => {
                crate::transport::record_ping(peer, rtt);
                self.rtts.insert(peer, rtt);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) => {
                match result {
                    Ok(_) => {
                        self.punch_retry.remove(&remote_peer_id);
                        tracing::info!(peer = %remote_peer_id, "hole punched: a direct connection");
                    }
                    Err(e) => {
                        let tries = self.punch_retry.get(&remote_peer_id).map_or(0, |(n, _)| *n);
                        if tries < PUNCH_RETRIES
                            && self.swarm.behaviour().links.via(&remote_peer_id).is_some()
                        {
                            let wait = Duration::from_secs(2 << tries);
                            let at = tokio::time::Instant::now() + wait;
                            self.punch_retry.insert(remote_peer_id, (tries + 1, Some(at)));
                            tracing::info!(peer = %remote_peer_id, "no hole punched ({e}); trying again in {} s", wait.as_secs());
                        } else {
                            tracing::info!(peer = %remote_peer_id, "no hole punched, staying relayed: {e}");
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.swarm.behaviour_mut().autonat.remove_server(&peer_id);
                tracing::info!(peer = %peer_id, "disconnected");
                self.peers.remove(&peer_id);
                self.punch_retry.remove(&peer_id);
                self.synced.remove(&peer_id);
                self.fetching_history.remove(&peer_id);
                self.group_asked.remove(&peer_id);
                self.live.forget(&peer_id);
                self.live_direct.remove(&peer_id);
                self.live_form_told.remove(&peer_id);
                self.links_of.remove(&peer_id);
                self.links_told.remove(&peer_id);
                self.greeted.remove(&peer_id);
                self.tell_live_form();
                self.live_requests.forget(&peer_id);
                self.sync_links();
                self.board().remove(&peer_id);
                // Its keystrokes that no change confirmed leave the screen with it.
                if let Some(key) = tandem_auth::device::public_of(&peer_id)
                    && let Err(e) = self.service.drop_live_of(&self.file, &ActorId::from(key.to_vec()))
                {
                    tracing::warn!("{e}");
                }
                self.report_network();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let me = *self.swarm.local_peer_id();
                for (peer, addr) in found {
                    if peer == me || !self.transport.allows(&addr) {
                        continue;
                    }
                    let known = self.found.entry(peer).or_default();
                    if !known.contains(&addr) {
                        known.push(addr.clone());
                    }
                    // Only members are worth a connection: every other tandem (or
                    // libp2p program) on the LAN answers mDNS too, and a joiner dials
                    // its sharer itself.
                    let ours = self.is_member(&peer) || self.bootstrap.iter().any(|(p, _)| *p == peer);
                    if ours && !self.swarm.is_connected(&peer) {
                        tracing::info!(peer = %peer, addr = %addr, "found on the LAN");
                        let _ = dial_unless_connected(&mut self.swarm, peer, vec![addr]);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, addr) in gone {
                    if let Some(known) = self.found.get_mut(&peer) {
                        known.retain(|a| *a != addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Presence(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => {
                let _ = self.swarm.behaviour_mut().presence.send_response(channel, ());
                if !self.peers.contains(&peer) {
                    return;
                }
                // Only the origin's own signature makes a presence its: a member
                // cannot show a cursor (or a departure) under another's id.
                let Some(origin) = presence::verified_origin(&request, &self.doc) else {
                    tracing::debug!(peer = %peer, "a presence not signed by its origin; ignored");
                    return;
                };
                if origin == *self.swarm.local_peer_id() || !self.is_member(&origin) {
                    return;
                }
                let changed = if request.leaving {
                    self.board().leave(origin, &request)
                } else {
                    self.board().update(origin, request.clone())
                };
                if changed {
                    // Forward, so peers who are not connected to each other still meet.
                    let others: Vec<PeerId> =
                        self.peers.iter().filter(|p| **p != peer && **p != origin).copied().collect();
                    for p in others {
                        self.swarm.behaviour_mut().presence.send_request(&p, request.clone());
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let reply = self.on_request(peer, request);
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, reply);
                }
                request_response::Message::Response { request_id, response } => {
                    self.live_request_done(&request_id);
                    if let (Some(p), Message::Error(_)) =
                        (self.live_form_requests.remove(&request_id), &response)
                    {
                        // Refused (a peer not ready for it yet): said again at the next tick.
                        self.live_form_told.remove(&p);
                    }
                    if let (Some(p), Message::Error(_)) = (self.links_requests.remove(&request_id), &response)
                    {
                        self.links_told.remove(&p);
                    }
                    let to_hello = self.hellos.remove(&request_id);
                    self.on_response(peer, response, to_hello)
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let reply = self.serve_blob(peer, request);
                    let _ = self.swarm.behaviour_mut().blobs.send_response(channel, reply);
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_blob_response(peer, request_id, Some(response))
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            })) => {
                tracing::warn!(peer = %peer, "blob request failed: {error}");
                self.on_blob_response(peer, request_id, None);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer,
                error,
                ..
            })) => {
                tracing::warn!(peer = %peer, "rejected a request: {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            })) => {
                self.hellos.remove(&request_id);
                self.live_request_done(&request_id);
                if let Some(p) = self.live_form_requests.remove(&request_id) {
                    // Said again at the next tick.
                    self.live_form_told.remove(&p);
                }
                if let Some(p) = self.links_requests.remove(&request_id) {
                    self.links_told.remove(&p);
                }
                // A peer still joining, or going away, drops requests: the next
                // hello catches up; nothing for the user to act on.
                tracing::info!(peer = %peer, "request failed: {error}");
            }
            _ => {}
        }
    }

    /// A peer asks for a blob: only blobs of this document's history are served, and
    /// only to peers that said hello for it.
    fn serve_blob(&mut self, peer: PeerId, request: BlobRequest) -> BlobResponse {
        if request.doc != self.doc {
            return BlobResponse::Refused(Refusal::new(Code::NotShared, NOT_SHARED));
        }
        if !self.peers.contains(&peer) || !self.is_member(&peer) {
            return BlobResponse::Refused(Refusal::new(Code::NotAMember, NOT_A_MEMBER));
        }
        match self.service.export_blob(&self.file, BlobHash::from_bytes(request.hash)) {
            Ok(bao) => BlobResponse::Found(bao),
            Err(why) => {
                tracing::warn!(peer = %peer, "not serving a blob: {why}");
                BlobResponse::Refused(Refusal::new(Code::NoSuchBlob, why))
            }
        }
    }

    fn on_request(&mut self, peer: PeerId, request: Message) -> Message {
        let wrong_doc = |doc: &DocId, ours: &DocId| doc != ours;
        match request {
            Message::Hello { doc, heads } | Message::Need { doc, have: heads }
                if wrong_doc(&doc, &self.doc) =>
            {
                let _ = heads;
                Message::Error(Refusal::new(Code::NotShared, NOT_SHARED))
            }
            Message::Hello { .. } | Message::Need { .. } if !self.is_member(&peer) => {
                tracing::info!(peer = %peer, "refused a peer that is not a member");
                Message::Error(Refusal::new(Code::NotAMember, NOT_A_MEMBER))
            }
            Message::Hello { heads, .. } => {
                if self.fetching_history.remove(&peer) && self.peers.contains(&peer) {
                    tracing::debug!(peer = %peer, "fetched the history: welcoming it again");
                    self.welcome(peer);
                }
                self.admit(peer);
                self.need_if_missing(&peer, &heads);
                match self.service.heads_and_missing(&self.file, &[]) {
                    Ok((ours, _)) => Message::Ack { heads: hashes(&ours) },
                    Err(e) => Message::Error(refusal(&e)),
                }
            }
            // A fresh peer: the history's blobs (a snapshot, a fraction of its changes'
            // size, and a few changes after it), fetched and verified one by one.
            Message::Need { have, .. } if have.is_empty() => match self.service.history_blobs(&self.file) {
                Ok(blobs) => {
                    // It may fetch them before its hello arrives.
                    self.admit(peer);
                    self.fetching_history.insert(peer);
                    let blobs = blobs
                        .into_iter()
                        .map(|(hash, size, snapshot)| BlobRef { hash: *hash.as_bytes(), size, snapshot })
                        .collect();
                    Message::History { doc: self.doc, blobs }
                }
                Err(e) => Message::Error(refusal(&e)),
            },
            Message::Need { have, .. } => match self.service.changes_since(
                &self.file,
                &change_hashes(&have),
                &change_hashes(self.synced.get(&peer).map_or(&[][..], Vec::as_slice)),
            ) {
                Ok(envelopes) => Message::Changes { doc: self.doc, envelopes },
                Err(e) => Message::Error(refusal(&e)),
            },
            Message::Changes { doc, .. }
            | Message::Live { doc, .. }
            | Message::Group { doc, .. }
            | Message::Join { doc, .. }
                if doc != self.doc =>
            {
                Message::Error(Refusal::new(Code::NotShared, NOT_SHARED))
            }
            Message::Changes { envelopes, .. } => match self.receive(peer, envelopes) {
                // A bare ack: heads here would only make the sender ask for changes
                // already on their way to it (hellos catch whatever a push missed).
                Ok(()) => Message::Ack { heads: vec![] },
                Err(e) => {
                    tracing::warn!(peer = %peer, "refused changes: {e}");
                    Message::Error(e)
                }
            },
            Message::LiveForm { doc, .. } | Message::Links { doc, .. } if doc != self.doc => {
                Message::Error(Refusal::new(Code::NotShared, NOT_SHARED))
            }
            Message::Links { peers, .. } => {
                if let Err(e) = self.admit_if_member(&peer) {
                    return Message::Error(e);
                }
                self.links_of.insert(peer, peers.into_iter().collect());
                Message::Ack { heads: vec![] }
            }
            Message::LiveForm { direct, .. } => {
                if let Err(e) = self.admit_if_member(&peer) {
                    return Message::Error(e);
                }
                if direct {
                    self.live_direct.insert(peer);
                } else {
                    self.live_direct.remove(&peer);
                }
                Message::Ack { heads: vec![] }
            }
            Message::Live { envelope, .. } => match self.receive_live(peer, envelope) {
                Ok(()) => Message::Ack { heads: vec![] },
                Err(e) => {
                    tracing::warn!(peer = %peer, "refused a live edit: {e}");
                    Message::Error(e)
                }
            },
            Message::Group { ops, .. } => {
                if let Err(e) = self.admit_if_member(&peer) {
                    return Message::Error(e);
                }
                match self.receive_group(peer, ops) {
                    Ok(()) => Message::Ack { heads: vec![] },
                    Err(e) => {
                        tracing::warn!(peer = %peer, "refused membership ops: {e}");
                        Message::Error(e)
                    }
                }
            }
            Message::Join { invite, .. } if invite == [0; 16] => {
                if !self.is_member(&peer) {
                    return Message::Error(Refusal::new(Code::NotAMember, NOT_A_MEMBER));
                }
                match self.service.group_ops(&self.file) {
                    Ok(ops) => Message::Group { doc: self.doc, ops },
                    Err(e) => Message::Error(refusal(&e)),
                }
            }
            Message::Join { invite, secret, recipient, .. } => {
                let Some(key) = tandem_auth::device::public_of(&peer) else {
                    return Message::Error(Refusal::new(
                        Code::Malformed,
                        "a peer id without an Ed25519 key cannot be a member",
                    ));
                };
                match self.service.redeem_invite(&self.file, (invite, secret), key, &recipient) {
                    Ok(ops) => {
                        tracing::info!(peer = %peer, "enrolled with an invite");
                        Message::Group { doc: self.doc, ops }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer, "refused an invite: {e}");
                        Message::Error(refusal(&e))
                    }
                }
            }
            Message::Ack { .. } | Message::Error(_) | Message::History { .. } => {
                Message::Error(Refusal::new(Code::NotARequest, "not a request"))
            }
        }
    }

    /// `to_hello`: the answer to our hello. Only then do its heads make us ask for what
    /// we lack: the answer to a push names heads whose changes are usually on their
    /// way here already (asking anyway sent each change ~15 times over with 16 typists).
    fn on_response(&mut self, peer: PeerId, response: Message, to_hello: bool) {
        match response {
            // The answer to a push or a live edit.
            // (A relay answers a hello with no heads: it has no document.)
            Message::Ack { heads } if heads.is_empty() && !to_hello => {}
            Message::Ack { heads } => {
                if self.admit_if_member(&peer).is_err() {
                    tracing::info!(peer = %peer, "not syncing with a peer that is not a member");
                    return;
                }
                if to_hello {
                    self.need_if_missing(&peer, &heads);
                }
            }
            Message::Changes { doc, envelopes } if doc == self.doc => {
                if let Err(e) = self.receive(peer, envelopes) {
                    tracing::warn!(peer = %peer, "refused changes: {e}");
                }
            }
            // The log asked for by [`Node::ask_group`]; then what we lack of the
            // document, whose changes may have been refused meanwhile.
            Message::Group { doc, ops } if doc == self.doc => match self.receive_group(peer, ops) {
                Ok(()) => self.hello(&peer),
                Err(e) => tracing::warn!(peer = %peer, "refused membership ops: {e}"),
            },
            Message::Error(refusal) => tracing::warn!(peer = %peer, "peer says: {refusal}"),
            other => tracing::warn!(peer = %peer, "unexpected response {:?}", std::mem::discriminant(&other)),
        }
    }
}

/// Move what a service channel yields onto an async channel for the node.
/// Ctrl-C or SIGTERM, as a future that resolves when one comes.
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Listen for Ctrl-C and SIGTERM from now on (call it inside the runtime). The
/// handlers are installed here, not when the future is first polled: a signal that
/// comes while the peer is still starting (joining, listening) is kept for the
/// loop that leaves cleanly, instead of killing the process with its connections
/// open, which the other side would only notice when they time out.
pub fn stop_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        {
            return Box::pin(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn bridge<T: Send + 'static>(rx: std::sync::mpsc::Receiver<T>) -> tokio::sync::mpsc::UnboundedReceiver<T> {
    let (tx, out) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for item in rx {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    out
}

/// A store's refusal as a peer is told it.
fn refusal(e: &StoreError) -> Refusal {
    Refusal::new(Code::of_store(e), e.to_string())
}

/// A stable id for a live edit's envelope (for de-duplication only).
fn envelope_id(envelope: &[u8]) -> u64 {
    use std::hash::{Hash as _, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    envelope.hash(&mut h);
    h.finish()
}
