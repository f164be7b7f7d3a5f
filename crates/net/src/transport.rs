//! The swarm every tandem node runs: its transports (QUIC, WebRTC, TCP + Noise +
//! Yamux), its behaviours (sync, presence and blobs; identify, ping, mDNS; the circuit
//! relay client, DCUtR, Kademlia, AutoNAT) and its listeners.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, autonat, dcutr, identify, kad, mdns, noise, ping, relay, tcp, yamux,
};

use crate::blobs::BlobCodec;
use crate::codec::SyncCodec;
use crate::presence::{self, PresenceCodec};
use crate::protocol::PROTOCOL;

/// Which transports a node listens and dials on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// QUIC, WebRTC and TCP, in that order.
    Any,
    Quic,
    Webrtc,
    Tcp,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "any" => Ok(Transport::Any),
            "quic" => Ok(Transport::Quic),
            "webrtc" => Ok(Transport::Webrtc),
            "tcp" => Ok(Transport::Tcp),
            other => Err(format!("--transport {other}: use quic, webrtc or tcp")),
        }
    }
}

impl Transport {
    pub(crate) fn of(addr: &Multiaddr) -> Transport {
        use libp2p::multiaddr::Protocol;
        if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
            Transport::Quic
        } else if addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect)) {
            Transport::Webrtc
        } else {
            Transport::Tcp
        }
    }

    pub(crate) fn allows(self, addr: &Multiaddr) -> bool {
        self == Transport::Any || self == Transport::of(addr)
    }

    /// Its name, as the status line shows it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Any => "any",
            Transport::Quic => "quic",
            Transport::Webrtc => "webrtc",
            Transport::Tcp => "tcp",
        }
    }
}

/// The swarm every tandem node runs.
pub type NodeSwarm = Swarm<Behaviour>;

/// How often libp2p ping measures each connection's round trip, in ms (libp2p's
/// default; a benchmark sets it shorter before building its swarms).
pub static PING_INTERVAL_MS: AtomicU64 = AtomicU64::new(15_000);
/// Whether nodes keep every ping round trip in [`PING_RTTS_US`] (off: nothing kept).
pub static RECORD_PINGS: AtomicBool = AtomicBool::new(false);
/// Round trips measured by ping while [`RECORD_PINGS`] is on: the peer pinged and
/// the microseconds. The transport's own floor, which `tandem-bench live` sets
/// keystroke latency against.
pub static PING_RTTS_US: Mutex<Vec<(libp2p::PeerId, u64)>> = Mutex::new(Vec::new());

/// Note a ping round trip to `peer` (when [`RECORD_PINGS`] is on).
pub(crate) fn record_ping(peer: libp2p::PeerId, rtt: Duration) {
    if RECORD_PINGS.load(Ordering::Relaxed) {
        PING_RTTS_US.lock().unwrap_or_else(|e| e.into_inner()).push((peer, rtt.as_micros() as u64));
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    pub(crate) presence: request_response::Behaviour<PresenceCodec>,
    pub(crate) blobs: request_response::Behaviour<BlobCodec>,
    /// Long-lived streams: live edits, one stream per peer (see [`crate::live`]).
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    /// Peers on the same LAN, found with no address given (off when listening on
    /// loopback only).
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    /// How each connected peer is reached.
    pub(crate) links: crate::links::Links,
    /// Reservations at circuit relays, and dials through them (see [`crate::reach`]).
    pub(crate) relay_client: relay::client::Behaviour,
    /// Hole punching over a relayed connection.
    pub(crate) dcutr: dcutr::Behaviour,
    /// Candidate addresses for it that identify alone does not give.
    pub(crate) candidates: crate::reach::Candidates,
    /// Finding members beyond the ticket (see [`crate::discovery`]).
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Whether this node is publicly reachable, asked of its relays and bootstrap
    /// nodes only (never of members: their dial-backs would be connections of their own).
    pub(crate) autonat: autonat::Behaviour,
}

impl Behaviour {
    /// The sync protocol, for sending requests outside a [`Node`] (joins, tests).
    pub fn sync_mut(&mut self) -> &mut request_response::Behaviour<SyncCodec> {
        &mut self.sync
    }

    /// The blob protocol, likewise.
    pub fn blobs_mut(&mut self) -> &mut request_response::Behaviour<BlobCodec> {
        &mut self.blobs
    }

    /// How each connected peer is reached (`quic`, `webrtc`, `tcp`).
    pub fn links(&self) -> &crate::links::Links {
        &self.links
    }

    /// The presence protocol, likewise.
    pub fn presence_mut(&mut self) -> &mut request_response::Behaviour<PresenceCodec> {
        &mut self.presence
    }
}

/// The WebRTC certificate in `home` (its hash is part of this device's WebRTC
/// addresses, so it is kept), created on first use.
pub fn webrtc_certificate(home: &std::path::Path) -> Result<libp2p_webrtc::tokio::Certificate, String> {
    use libp2p_webrtc::tokio::Certificate;
    let path = home.join("webrtc.pem");
    match std::fs::read_to_string(&path) {
        Ok(pem) => Certificate::from_pem(&pem)
            .map_err(|e| format!("{}: not a certificate ({e}); move it aside", path.display())),
        Err(_) => {
            let cert = Certificate::generate(&mut rand::rng()).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(home).map_err(|e| format!("{}: {e}", home.display()))?;
            std::fs::write(&path, cert.serialize_pem()).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(cert)
        }
    }
}

/// Build a swarm for `key` listening on `ip` (all interfaces for 0.0.0.0; the port is
/// chosen by the OS). `cert` is the WebRTC certificate.
pub fn swarm(
    key: Keypair,
    cert: libp2p_webrtc::tokio::Certificate,
    transport: Transport,
    ip: std::net::Ipv4Addr,
) -> Result<(Swarm<Behaviour>, Vec<ListenerId>), String> {
    use libp2p::core::Transport as _;
    use libp2p::core::muxing::StreamMuxerBox;
    // Two TLS back ends end up in the build (ring through QUIC, aws-lc through the
    // WebRTC stack), so rustls cannot pick one by itself: pick ring, once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // libp2p says nothing useful about an address this host lacks: ask the OS first.
    if let Err(e) = std::net::UdpSocket::bind((ip, 0)) {
        return Err(cannot_listen(ip, &e.to_string()));
    }
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_quic()
        .with_other_transport(|key| {
            Ok(libp2p_webrtc::tokio::Transport::new(key.clone(), cert)
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn))))
        })
        .map_err(|e| e.to_string())?
        // `/dnsaddr` bootstrap addresses (the public IPFS network's) need DNS.
        .with_dns()
        .map_err(|e| format!("reading the system's DNS configuration: {e}"))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|key, relay_client| Behaviour {
            stream: libp2p_stream::Behaviour::new(),
            sync: request_response::Behaviour::new(
                [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
            ),
            presence: request_response::Behaviour::new(
                [(StreamProtocol::new(presence::PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            ),
            blobs: request_response::Behaviour::new(
                [(StreamProtocol::new(crate::blobs::PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
            ),
            // New addresses (a circuit through a relay) reach connected peers at once.
            identify: identify::Behaviour::new(
                identify::Config::new("/tandem/1".into(), key.public()).with_push_listen_addr_updates(true),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(Duration::from_millis(PING_INTERVAL_MS.load(Ordering::Relaxed))),
            ),
            mdns: Toggle::from(if ip.is_loopback() {
                None
            } else {
                let config =
                    mdns::Config { query_interval: Duration::from_secs(20), ..mdns::Config::default() };
                mdns::tokio::Behaviour::new(config, key.public().to_peer_id())
                    .map_err(|e| tracing::warn!("no LAN discovery (mDNS): {e}"))
                    .ok()
            }),
            links: crate::links::Links::default(),
            relay_client,
            dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
            candidates: crate::reach::Candidates::default(),
            kad: crate::discovery::kademlia(key.public().to_peer_id(), kad::Mode::Client),
            autonat: autonat::Behaviour::new(key.public().to_peer_id(), crate::discovery::autonat_config()),
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut listeners = Vec::new();
    for a in [
        format!("/ip4/{ip}/udp/0/quic-v1"),
        format!("/ip4/{ip}/udp/0/webrtc-direct"),
        format!("/ip4/{ip}/tcp/0"),
    ] {
        let addr: Multiaddr = a.parse().expect("valid listen address");
        if transport.allows(&addr) {
            listeners.push(swarm.listen_on(addr).map_err(|e| cannot_listen(ip, &e.to_string()))?);
        }
    }
    Ok((swarm, listeners))
}

/// Why `--listen IP` failed, with what to do about it.
fn cannot_listen(ip: std::net::Ipv4Addr, why: &str) -> String {
    let why = if why.trim().is_empty() { "refused".to_owned() } else { why.to_owned() };
    format!(
        "cannot listen on {ip}: {why}; is it an address of this host? (`ip addr` lists them; leave --listen out to listen on all)"
    )
}

/// Wait until the swarm reports its listen addresses (one per listener), QUIC first.
/// Loopback addresses are left out when there are others (a joiner on this machine
/// reaches those too, and a ticket stays short enough for a QR code). A listener that
/// fails (an address this host does not have) is an error that says so.
pub async fn listen_addrs<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    listeners: usize,
) -> Result<Vec<Multiaddr>, String> {
    let mut addrs = Vec::new();
    let mut seen = HashSet::new();
    let deadline = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(deadline);
    let give_up = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    seen.insert(listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerClosed { addresses, reason: Err(e), .. } => {
                    let at: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                    return Err(format!("cannot listen on {}: {e}", at.join(", ")));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(format!("cannot listen: {error}"));
                }
                _ => {}
            },
            _ = &mut deadline, if seen.len() >= listeners => break,
            _ = &mut give_up => {
                return Err("the network did not come up within 10 s (no listen address)".into());
            }
        }
    }
    let is_loopback = |a: &Multiaddr| {
        a.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_loopback()))
    };
    if addrs.iter().any(|a| !is_loopback(a)) {
        addrs.retain(|a| !is_loopback(a));
    }
    addrs.sort_by_key(|a| match Transport::of(a) {
        Transport::Quic => 0,
        Transport::Webrtc => 1,
        _ => 2,
    });
    Ok(addrs)
}
