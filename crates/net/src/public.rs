//! `tandem relay`: a public circuit relay v2 server anyone can run on a machine with a
//! public address (a VPS, a home server with a port forward). Peers behind NATs take
//! reservations at it and meet through it; where the NATs allow, they punch a hole
//! (DCUtR) and move off it. It holds no document and no key: what crosses it is
//! Noise-encrypted end to end between the two peers, and sealed by the document's
//! epoch key inside that.
//!
//! libp2p's default limits are for coordinating a hole punch only: a circuit ends
//! after 2 minutes or 128 KiB, which would end an editing session that cannot punch
//! (symmetric NATs). Here a circuit may last [`CIRCUIT_DURATION`] and carry
//! [`CIRCUIT_BYTES`] (a zero duration would end every circuit at once in libp2p, it
//! does not mean unlimited), while reservations and circuits are counted and rate
//! limited per peer and per IP against abuse.
//!
//! It is also a Kademlia DHT server (members meet there by their group's
//! rendezvous key, see [`crate::discovery`]) and an AutoNAT server (it dials a peer
//! back to tell it whether it is publicly reachable).

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, autonat, identify, kad, noise, ping, relay, tcp, yamux};

/// How long one relayed session may last before the peers must reconnect (they do
/// by themselves).
pub const CIRCUIT_DURATION: Duration = Duration::from_secs(12 * 3600);
/// How many bytes one relayed session may carry (a day of typing is a few MB).
pub const CIRCUIT_BYTES: u64 = 1 << 30;

/// The default listen addresses: every interface, TCP and QUIC, port 4001.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"];

#[derive(NetworkBehaviour)]
pub struct RelayBehaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    /// A DHT server: members provide their rendezvous key here and look it up.
    kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Tells peers whether they are publicly reachable, by dialing them back.
    autonat: autonat::Behaviour,
}

/// The relay's limits: sized for editing sessions, bounded against abuse.
pub fn config() -> relay::Config {
    let per_minute = |n: u32| (NonZeroU32::new(n).expect("non-zero"), Duration::from_secs(60));
    let (peer_res, per) = per_minute(30);
    let (ip_res, per_ip) = per_minute(120);
    let (peer_circ, per_c) = per_minute(60);
    let (ip_circ, per_ip_c) = per_minute(240);
    relay::Config {
        max_reservations: 1024,
        max_reservations_per_peer: 8,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 1024,
        max_circuits_per_peer: 32,
        max_circuit_duration: CIRCUIT_DURATION,
        max_circuit_bytes: CIRCUIT_BYTES,
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
    }
    .reservation_rate_per_peer(peer_res, per)
    .reservation_rate_per_ip(ip_res, per_ip)
    .circuit_src_per_peer(peer_circ, per_c)
    .circuit_src_per_ip(ip_circ, per_ip_c)
}

/// A relay server listening on `listen` (multiaddrs; see [`DEFAULT_LISTEN`]).
pub fn swarm(key: Keypair, listen: &[Multiaddr]) -> Result<Swarm<RelayBehaviour>, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let peer = key.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_quic()
        .with_behaviour(|key| RelayBehaviour {
            relay: relay::Behaviour::new(peer, config()),
            identify: identify::Behaviour::new(identify::Config::new("/tandem/1".into(), key.public())),
            ping: ping::Behaviour::default(),
            kad: crate::discovery::kademlia(peer, kad::Mode::Server),
            autonat: autonat::Behaviour::new(peer, crate::discovery::autonat_server_config()),
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    for addr in listen {
        swarm.listen_on(addr.clone()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    Ok(swarm)
}

/// Wait for the listeners' addresses and make them the relay's external addresses
/// (a relay v2 server grants reservations only with one, and puts them in each
/// reservation). Loopback addresses are kept only when there is nothing else.
/// Returns them with `/p2p/PEER`, as peers name the relay.
pub async fn start(swarm: &mut Swarm<RelayBehaviour>, listeners: usize) -> Result<Vec<Multiaddr>, String> {
    let addrs = crate::transport::listen_addrs(swarm, listeners).await?;
    for a in &addrs {
        swarm.add_external_address(a.clone());
    }
    let me = *swarm.local_peer_id();
    Ok(addrs.into_iter().map(|a| a.with(Protocol::P2p(me))).collect())
}

/// Serve until the process is stopped, logging sessions at info level.
pub async fn run(mut swarm: Swarm<RelayBehaviour>) {
    let mut stop = crate::node::stop_signal();
    loop {
        let ev = tokio::select! {
            ev = swarm.select_next_some() => ev,
            _ = &mut stop => return,
        };
        match ev {
            SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(ev)) => log(ev),
            SwarmEvent::Behaviour(RelayBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(peer = %peer_id, observed = %info.observed_addr, "identified");
                // Other DHT servers join the routing table; clients (peers behind
                // NATs) do not list the protocol and stay out of it.
                if info.protocols.iter().any(|p| p.as_ref() == kad::PROTOCOL_NAME.as_ref()) {
                    for addr in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            _ => {}
        }
    }
}

fn log(ev: relay::Event) {
    use relay::Event::*;
    match ev {
        ReservationReqAccepted { src_peer_id, renewed } => {
            tracing::info!(peer = %src_peer_id, renewed, "reservation accepted");
        }
        ReservationReqDenied { src_peer_id, status } => {
            tracing::warn!(peer = %src_peer_id, ?status, "reservation denied");
        }
        CircuitReqAccepted { src_peer_id, dst_peer_id } => {
            tracing::info!(from = %src_peer_id, to = %dst_peer_id, "circuit opened");
        }
        CircuitReqDenied { src_peer_id, dst_peer_id, status } => {
            tracing::warn!(from = %src_peer_id, to = %dst_peer_id, ?status, "circuit denied");
        }
        CircuitClosed { src_peer_id, dst_peer_id, error } => {
            tracing::info!(from = %src_peer_id, to = %dst_peer_id, error = ?error, "circuit closed");
        }
        _ => {}
    }
}
