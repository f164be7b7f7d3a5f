//! Reaching peers behind NATs, with standard libp2p protocols only, so any circuit
//! relay v2 serves tandem:
//!
//! - a peer that names relays (`--relay`, `[network] relays` in `config.toml`)
//!   connects to them, learns from identify the address its NAT shows the world,
//!   and takes a reservation at each: its `/p2p-circuit` addresses go in its ticket,
//!   so a joiner behind any NAT reaches it through the relay;
//! - over a relayed connection both peers run DCUtR at once (libp2p's `dcutr`: each
//!   tells the other its observed addresses and they dial each other at the same
//!   moment). When the direct connection comes up, the relayed one is closed a
//!   moment later ([`crate::links::Links::superseded`]), and sync and presence carry
//!   on over the direct one with no restart;
//! - where the NATs allow no hole (symmetric on both sides, or symmetric against
//!   port-restricted), the session stays on the relay: `tandem relay` runs one with
//!   limits sized for editing sessions ([`crate::public`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify};

use crate::transport::{Behaviour, BehaviourEvent};

/// How long a node waits for its relays (connection, identify, reservation) before
/// it prints a ticket without the ones that did not answer. On a lossy link QUIC's
/// handshake retransmits after 1, 2, 4, 8 s: 8 s in all was too short at 20% loss
/// (the NAT-matrix test failed 1 run in 2 with a ticket of private addresses only).
pub const RELAY_WAIT: Duration = Duration::from_secs(20);

/// How many times a relay is dialed within [`RELAY_WAIT`] when a dial fails for want
/// of an answer: at 20% loss both ways a QUIC handshake (5 s to time out) can be lost
/// whole, and a ticket printed without circuits strands every joiner behind a NAT.
const RELAY_DIALS: u32 = 3;

/// A relay's address as a user gives it: a multiaddr that ends in the relay's peer id
/// (`/ip4/198.51.100.10/udp/4001/quic-v1/p2p/12D3KooW...`). The error names the
/// address and says what is wrong with it.
pub fn relay_addr(s: &str) -> Result<(PeerId, Multiaddr), String> {
    peer_addr("relay", s)
}

/// The address of a node to dial by its peer id (a `what`: "relay", "bootstrap"),
/// as a user gives it: a multiaddr of the node itself that ends in `/p2p/PEER`.
pub fn peer_addr(what: &str, s: &str) -> Result<(PeerId, Multiaddr), String> {
    let addr: Multiaddr =
        s.trim().parse().map_err(|e| format!("{what} address {s:?} is not a multiaddr ({e})"))?;
    if is_circuit(&addr) {
        return Err(format!("{what} address {s}: name the node itself, not a circuit through a relay"));
    }
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) if addr.iter().any(|p| !matches!(p, Protocol::P2p(_))) => Ok((peer, addr)),
        Some(Protocol::P2p(_)) => {
            Err(format!("{what} address {s}: it has a peer id but no address to reach it at"))
        }
        _ => Err(format!(
            "{what} address {s}: it must end in the node's peer id (/p2p/12D3KooW...), as `tandem relay` prints it"
        )),
    }
}

/// The circuit address through the relay at `relay` (which ends in `/p2p/RELAY`).
pub fn circuit_through(relay: &Multiaddr) -> Multiaddr {
    relay.clone().with(Protocol::P2pCircuit)
}

/// True for an address through a relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The relay part of a circuit address (`RELAY-ADDR/p2p/RELAY`), if it is one.
pub fn relay_of(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut relay = Multiaddr::empty();
    let mut peer = None;
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return Some((peer?, relay)),
            Protocol::P2p(id) => {
                peer = Some(id);
                relay.push(p);
            }
            p => relay.push(p),
        }
    }
    None
}

/// Why the relay at `addr` could not be reached, in a sentence.
fn relay_unreachable(addr: &Multiaddr, error: &libp2p::swarm::DialError) -> String {
    use libp2p::swarm::DialError;
    match error {
        DialError::WrongPeerId { obtained, .. } => {
            format!(
                "relay {addr} answers as another peer ({obtained}): its address or peer id is out of date"
            )
        }
        DialError::LocalPeerId { .. } => format!("relay {addr} is this device itself"),
        _ => format!("relay {addr} is not reachable (is `tandem relay` running there, and its port open?)"),
    }
}

/// What meeting the relays came to.
#[derive(Default, Debug)]
pub struct Reached {
    /// This node's circuit addresses, one per relay that granted a reservation.
    pub circuits: Vec<Multiaddr>,
    /// The circuit listeners, by relay (a node listens again when one closes).
    pub listeners: HashMap<PeerId, ListenerId>,
    /// One sentence per relay that could not be used, naming it.
    pub failed: Vec<String>,
}

/// Connect to `relays` and wait (at most [`RELAY_WAIT`]) until identify has told us
/// how each sees us: DCUtR punches holes with those observed addresses, so they must
/// be known before a relayed connection opens. With `reserve`, also take a
/// reservation at each and listen on the circuit through it.
pub async fn meet_relays(
    swarm: &mut Swarm<Behaviour>,
    relays: &[(PeerId, Multiaddr)],
    reserve: bool,
) -> Reached {
    let mut reached = Reached::default();
    if relays.is_empty() {
        return reached;
    }
    let mut identified: HashSet<PeerId> = HashSet::new();
    let mut pending: HashMap<PeerId, Multiaddr> = HashMap::new();
    for (peer, addr) in relays {
        if *peer == *swarm.local_peer_id() {
            continue;
        }
        pending.insert(*peer, addr.clone());
        if let Err(e) = crate::join::dial_unless_connected(swarm, *peer, vec![addr.clone()]) {
            reached.failed.push(format!("relay {addr} cannot be dialed: {e}"));
            pending.remove(peer);
        }
    }
    let give_up = tokio::time::sleep(RELAY_WAIT);
    tokio::pin!(give_up);
    // Relays identified but whose reservation has not come back yet.
    let mut reserving: HashMap<ListenerId, (PeerId, Multiaddr)> = HashMap::new();
    // A dial that failed for want of an answer is tried again, a second later, while
    // the wait lasts: one lost handshake must not leave the ticket without circuits.
    let mut redial: Vec<PeerId> = Vec::new();
    let mut dials: HashMap<PeerId, u32> = pending.keys().map(|p| (*p, 1)).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !pending.is_empty() || !reserving.is_empty() {
        let ev = tokio::select! {
            ev = swarm.select_next_some() => ev,
            _ = tick.tick() => {
                for peer in std::mem::take(&mut redial) {
                    if let Some(addr) = pending.get(&peer).cloned() {
                        *dials.entry(peer).or_default() += 1;
                        tracing::info!(relay = %addr, "dialing the relay again");
                        let _ = crate::join::dial_unless_connected(swarm, peer, vec![addr]);
                    }
                }
                continue;
            }
            _ = &mut give_up => break,
        };
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id, ..
            })) if pending.contains_key(&peer_id) && identified.insert(peer_id) => {
                let addr = pending.remove(&peer_id).expect("pending");
                if !reserve {
                    continue;
                }
                match swarm.listen_on(circuit_through(&addr)) {
                    Ok(id) => {
                        reserving.insert(id, (peer_id, addr));
                    }
                    Err(e) => reached.failed.push(format!("relay {addr}: {e}")),
                }
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                // One address per address the relay is reached at.
                if let Some((peer, _)) = reserving.remove(&listener_id) {
                    reached.listeners.insert(peer, listener_id);
                }
                if reached.listeners.values().any(|id| *id == listener_id) {
                    reached.circuits.push(address);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some((_, addr)) = reserving.remove(&listener_id) {
                    let why =
                        reason.err().map_or_else(|| "the connection closed".to_owned(), |e| e.to_string());
                    reached.failed.push(format!("relay {addr} gave no reservation: {why}"));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                let hopeless = matches!(
                    error,
                    libp2p::swarm::DialError::LocalPeerId { .. }
                        | libp2p::swarm::DialError::WrongPeerId { .. }
                );
                let again = dials.get(&peer).is_some_and(|n| *n < RELAY_DIALS);
                if !hopeless && again && pending.contains_key(&peer) && !swarm.is_connected(&peer) {
                    tracing::info!(relay = %peer, "dialing the relay failed: {error}");
                    redial.push(peer);
                } else if let Some(addr) = pending.remove(&peer) {
                    reached.failed.push(relay_unreachable(&addr, &error));
                }
            }
            _ => {}
        }
    }
    // A reservation's addresses come together: take the rest of them.
    let settle = tokio::time::sleep(Duration::from_millis(200));
    tokio::pin!(settle);
    while !reached.listeners.is_empty() {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::NewListenAddr { listener_id, address } = ev
                    && reached.listeners.values().any(|id| *id == listener_id)
                {
                    reached.circuits.push(address);
                }
            }
            _ = &mut settle => break,
        }
    }
    for addr in pending.into_values() {
        reached.failed.push(format!("relay {addr} did not answer within {} s", RELAY_WAIT.as_secs()));
    }
    for (id, (peer, addr)) in reserving {
        // Still asking: keep the listener, it may come through yet.
        reached.listeners.insert(peer, id);
        reached.failed.push(format!("relay {addr} has not granted a reservation yet"));
    }
    reached
}

/// Hole punching with an observer that speaks only TCP (js-libp2p relays in Node,
/// most of the IPFS network): identify then reports only a TCP address, and DCUtR,
/// which punches with the addresses it is given, would try TCP alone, which few
/// NATs let through. Most NATs keep a socket's port (the lab's do, and home routers
/// mostly do), so the QUIC socket is likely seen at the same public IP and its own
/// port: that guess is offered too, as a candidate only (never advertised as
/// confirmed), next to what identify saw.
#[derive(Default)]
pub struct Candidates {
    /// This node's QUIC and TCP listen ports.
    quic: std::collections::BTreeSet<u16>,
    tcp: std::collections::BTreeSet<u16>,
    offered: HashSet<Multiaddr>,
    queue: std::collections::VecDeque<Multiaddr>,
}

impl Candidates {
    /// The same IP with our ports of the other transport.
    fn guesses(&self, observed: &Multiaddr) -> Vec<Multiaddr> {
        let mut ip = None;
        let mut is_tcp = false;
        let mut is_quic = false;
        for p in observed.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(Protocol::Ip4(a)),
                Protocol::Ip6(a) => ip = Some(Protocol::Ip6(a)),
                Protocol::Tcp(_) => is_tcp = true,
                Protocol::QuicV1 => is_quic = true,
                Protocol::P2pCircuit => return Vec::new(),
                _ => {}
            }
        }
        let Some(ip) = ip else { return Vec::new() };
        let base = Multiaddr::empty().with(ip);
        if is_tcp {
            self.quic
                .iter()
                .map(|port| base.clone().with(Protocol::Udp(*port)).with(Protocol::QuicV1))
                .collect()
        } else if is_quic {
            self.tcp.iter().map(|port| base.clone().with(Protocol::Tcp(*port))).collect()
        } else {
            Vec::new()
        }
    }
}

impl libp2p::swarm::NetworkBehaviour for Candidates {
    type ConnectionHandler = libp2p::swarm::dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(libp2p::swarm::dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(libp2p::swarm::dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: libp2p::swarm::FromSwarm) {
        use libp2p::swarm::FromSwarm;
        match event {
            FromSwarm::NewListenAddr(l) if !is_circuit(l.addr) => {
                let mut udp = None;
                for p in l.addr.iter() {
                    match p {
                        Protocol::Tcp(port) => {
                            self.tcp.insert(port);
                        }
                        Protocol::Udp(port) => udp = Some(port),
                        Protocol::QuicV1 => {
                            self.quic.extend(udp);
                        }
                        _ => {}
                    }
                }
            }
            FromSwarm::NewExternalAddrCandidate(c) => {
                for guess in self.guesses(c.addr) {
                    if self.offered.insert(guess.clone()) {
                        self.queue.push_back(guess);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: libp2p::swarm::ConnectionId,
        event: libp2p::swarm::THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::swarm::ToSwarm<Self::ToSwarm, libp2p::swarm::THandlerInEvent<Self>>> {
        match self.queue.pop_front() {
            Some(addr) => std::task::Poll::Ready(libp2p::swarm::ToSwarm::NewExternalAddrCandidate(addr)),
            None => std::task::Poll::Pending,
        }
    }
}
