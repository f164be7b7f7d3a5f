//! Finding the other members of a document beyond its ticket, with the standard
//! Kademlia DHT (`/ipfs/kad/1.0.0`), so any Kademlia node serves tandem: the public
//! IPFS network by default, a `tandem relay`, a js-libp2p node.
//!
//! - Every member that can read the document provides one key in the DHT, derived
//!   with BLAKE3 from the group's rendezvous secret, which is derived from the current
//!   epoch key ([`tandem_store::Service::rendezvous`]). The DHT sees a key like any
//!   IPFS content id: nothing of the document, its id or its name.
//! - A member with no member connected looks the key up; the providers' records
//!   carry their current addresses (circuits through relays included), and only
//!   providers whose peer id is a member's are dialed (anyone who learns the key can
//!   provide it; the hello's membership check decides, as for every connection).
//! - Provider records, not value records: every Kademlia implementation stores
//!   them (go-libp2p's refuses values outside `/pk` and `/ipns`).
//! - The mode is set, never left to libp2p: a relayed address counts as confirmed
//!   there, which would make a laptop behind a NAT a DHT server. A peer serves the
//!   DHT only once AutoNAT says it is publicly reachable.

use std::time::Duration;

use libp2p::kad::{self, RecordKey, store::MemoryStore};
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

/// The public IPFS network's bootstrap peers (as published by the IPFS projects):
/// what a peer uses when `config.toml` names no `[network] bootstrap`.
pub const IPFS_BOOTSTRAP: [&str; 5] = [
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
];

/// How often the key is provided again while nothing changed (records live 48 h
/// on most nodes; addresses change more often than that).
const PROVIDE_EVERY: Duration = Duration::from_secs(20 * 60);
/// After the addresses change, wait this long for more to settle before providing.
const PROVIDE_SETTLE: Duration = Duration::from_secs(2);
/// The first lookups come quickly, then back off to [`LOOKUP_MAX`].
const LOOKUP_FIRST: Duration = Duration::from_secs(3);
const LOOKUP_MAX: Duration = Duration::from_secs(60);

/// A bootstrap node's address as a user gives it: a multiaddr that ends in its peer
/// id. The error names the address and what is wrong with it.
pub fn bootstrap_addr(s: &str) -> Result<(PeerId, Multiaddr), String> {
    crate::reach::peer_addr("bootstrap", s)
}

/// The default bootstrap nodes, parsed.
pub fn ipfs_bootstrap() -> Vec<(PeerId, Multiaddr)> {
    IPFS_BOOTSTRAP
        .iter()
        .map(|s| bootstrap_addr(s).expect("the built-in bootstrap addresses parse"))
        .collect()
}

/// The DHT key for a group's rendezvous secret: 32 bytes derived from it (BLAKE3),
/// framed as a sha2-256 multihash (`0x12 0x20`), i.e. shaped like any IPFS content
/// id (CIDv0). Not a content hash, but no node checks: they cannot, having no
/// content. The framing matters: js-libp2p refuses a provider key that does not
/// decode as a CID, and a BLAKE3 multihash (`0x1e`) does not decode as CIDv0.
pub fn rendezvous_key(secret: &[u8; 32]) -> RecordKey {
    let digest = blake3::derive_key("tandem 2026-12 rendezvous key v1", secret);
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&digest);
    RecordKey::new(&bytes)
}

/// A Kademlia behaviour speaking the standard protocol, in `mode`.
pub fn kademlia(peer: PeerId, mode: kad::Mode) -> kad::Behaviour<MemoryStore> {
    let mut config = kad::Config::new(kad::PROTOCOL_NAME);
    config.set_query_timeout(Duration::from_secs(30));
    // Bootstrapped when its nodes are added ([`crate::Node::use_dht`]), not on a
    // timer of its own that fires before there are any.
    config.set_periodic_bootstrap_interval(None);
    let mut kad = kad::Behaviour::with_config(peer, MemoryStore::new(peer), config);
    kad.set_mode(Some(mode));
    kad
}

/// AutoNAT (v1) for a peer: it asks only the servers it is given (its relays and
/// bootstrap nodes that speak AutoNAT, while connected), soon after starting; addresses that are not global count,
/// since a LAN, a lab or a carrier-grade NAT has those too.
pub fn autonat_config() -> libp2p::autonat::Config {
    libp2p::autonat::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(10),
        refresh_interval: Duration::from_secs(5 * 60),
        use_connected: false,
        only_global_ips: false,
        confidence_max: 1,
        ..libp2p::autonat::Config::default()
    }
}

/// AutoNAT for a public server (`tandem relay`): it dials clients back, and never
/// asks anyone itself.
pub fn autonat_server_config() -> libp2p::autonat::Config {
    libp2p::autonat::Config {
        use_connected: false,
        only_global_ips: false,
        boot_delay: Duration::from_secs(24 * 3600),
        ..libp2p::autonat::Config::default()
    }
}

/// When a node provides its key and looks the others up.
pub struct Rendezvous {
    key: RecordKey,
    /// When the key is next provided (`None`: not due until something changes).
    provide_at: Option<Instant>,
    lookup_at: Instant,
    lookup_every: Duration,
    /// The lookup in flight, if any.
    pub lookup: Option<kad::QueryId>,
}

impl Rendezvous {
    pub fn new(secret: &[u8; 32], now: Instant) -> Rendezvous {
        Rendezvous {
            key: rendezvous_key(secret),
            provide_at: Some(now + PROVIDE_SETTLE),
            lookup_at: now,
            lookup_every: LOOKUP_FIRST,
            lookup: None,
        }
    }

    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    /// This node's addresses changed: provide again once they settle.
    pub fn addresses_changed(&mut self, now: Instant) {
        let soon = now + PROVIDE_SETTLE;
        if self.provide_at.is_none_or(|at| at > soon) {
            self.provide_at = Some(soon);
        }
    }

    /// True when the key is due to be provided (and counts it as done).
    pub fn provide_due(&mut self, now: Instant) -> bool {
        match self.provide_at {
            Some(at) if at <= now => {
                self.provide_at = Some(now + PROVIDE_EVERY);
                true
            }
            _ => false,
        }
    }

    /// True when a lookup is due: no member is connected, none is in flight, and the
    /// backoff has passed (it doubles after each lookup, up to a minute).
    pub fn lookup_due(&mut self, members_connected: bool, now: Instant) -> bool {
        if members_connected {
            // Lose them later, and the first lookup comes at once.
            self.lookup_every = LOOKUP_FIRST;
            self.lookup_at = now;
            return false;
        }
        if self.lookup.is_some() || now < self.lookup_at {
            return false;
        }
        self.lookup_at = now + self.lookup_every;
        self.lookup_every = (self.lookup_every * 2).min(LOOKUP_MAX);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_shaped_like_a_content_id_and_hides_the_secret() {
        let secret = [7u8; 32];
        let key = rendezvous_key(&secret);
        let bytes = key.to_vec();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0x12, 0x20]);
        assert!(!bytes.windows(32).any(|w| w == secret), "the secret itself is not in the key");
        assert_eq!(rendezvous_key(&secret), key, "members compute the same key");
        assert_ne!(rendezvous_key(&[8u8; 32]), key);
    }

    #[test]
    fn bootstrap_addresses_are_checked() {
        assert_eq!(ipfs_bootstrap().len(), IPFS_BOOTSTRAP.len());
        for bad in [
            "nonsense",
            "/ip4/1.2.3.4/tcp/4001",
            "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
        ] {
            let e = bootstrap_addr(bad).unwrap_err();
            assert!(e.contains("bootstrap address"), "{e}");
        }
    }

    #[test]
    fn lookups_back_off_while_alone_and_start_again_when_members_leave() {
        let mut now = Instant::now();
        let mut r = Rendezvous::new(&[1u8; 32], now);
        assert!(!r.provide_due(now), "addresses settle first");
        assert!(r.provide_due(now + PROVIDE_SETTLE));
        assert!(!r.provide_due(now + PROVIDE_SETTLE), "then not again until something changes");
        assert!(r.lookup_due(false, now), "the first lookup is at once");
        assert!(!r.lookup_due(false, now));
        now += LOOKUP_FIRST;
        assert!(r.lookup_due(false, now));
        now += LOOKUP_FIRST;
        assert!(!r.lookup_due(false, now), "the second wait is twice as long");
        now += LOOKUP_FIRST;
        assert!(r.lookup_due(false, now));
        assert!(!r.lookup_due(true, now), "no lookup while a member is connected");
        assert!(r.lookup_due(false, now), "a member left: look again at once");
        r.addresses_changed(now);
        assert!(!r.provide_due(now));
        now += PROVIDE_SETTLE;
        assert!(r.provide_due(now), "new addresses are provided again");
    }
}
