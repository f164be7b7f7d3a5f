//! Joining a shared document: the enrolment with an invite, the list of history
//! blobs and their verified fetch; and dialing, with failures said for people.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{DialError, SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, mdns};
use tandem_store::{BlobHash, BlobStore, ImportError, Shared};

use crate::blobs::{BlobRequest, BlobResponse};
use crate::error::NetError;
use crate::protocol::{BlobRef, DocId, Message};
use crate::transport::{Behaviour, BehaviourEvent, Transport};

/// Blob requests a fresh join keeps in flight at once.
const BLOBS_IN_FLIGHT: usize = 4;
/// Largest history a fresh join takes from a peer (all its blobs together).
const MAX_HISTORY_BYTES: u64 = 1 << 30;

/// What a device sends to be enrolled: an invite (id, secret) from a ticket, or
/// none for a device that is a member already.
pub type Invite = Option<([u8; 16], [u8; 16])>;

/// How many times a fresh join dials the sharer's addresses before it says the sharer
/// cannot be reached.
const DIALS: u32 = 3;

/// Fetch a whole document from `peer` (a fresh join): enrolment with `invite` (the
/// answer is the membership log), then its list of history blobs, then each blob,
/// verified into `store` (see [`fetch_blobs`]). Returns the history and the log.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
    doc: DocId,
    transport: Transport,
    store: &BlobStore,
    invite: Invite,
    recipient: String,
) -> Result<(Shared, Vec<Vec<u8>>), NetError> {
    let (invite, secret) = invite.unwrap_or(([0; 16], [0; 16]));
    let join = Message::Join { doc, invite, secret, recipient };
    let mut group: Option<Vec<Vec<u8>>> = None;
    let addrs: Vec<Multiaddr> = addrs.iter().filter(|a| transport.allows(a)).cloned().collect();
    // With mDNS on, a sharer on this LAN is found even when the ticket's addresses
    // are missing or stale; then a failed dial is not the end.
    let lan = swarm.behaviour().mdns.is_enabled();
    if addrs.is_empty() && !lan {
        return Err(NetError::NoAddress(transport.name()));
    }
    // The sharer may be connected already (it found us on the LAN first, or a dial is
    // under way): that is a success, not a dial error.
    if !addrs.is_empty() {
        dial_unless_connected(swarm, peer, addrs.clone()).map_err(|e| unreachable(&peer, &addrs, &e))?;
    }
    let wait = if lan { 30 } else { 60 };
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut asked = None;
    let mut last_error = None;
    // mDNS may have found the sharer already (while the listeners came up): a dial
    // with no address uses what it found.
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    // A dial that fails for want of an answer is tried again a few times: a handshake
    // can stall once (WebRTC's data channel sometimes takes more than its 10 s to open
    // on a loaded machine) and the next one goes through.
    // Not past 20 s, so a sharer that is gone is still reported soon.
    let started = tokio::time::Instant::now();
    let mut dials = 1;
    let mut redial = false;
    loop {
        tokio::select! {
            _ = retry.tick(), if asked.is_none() => {
                if swarm.is_connected(&peer) {
                    asked = Some(swarm.behaviour_mut().sync.send_request(&peer, join.clone()));
                    continue;
                }
                if std::mem::take(&mut redial) {
                    dials += 1;
                    tracing::info!(peer = %peer, "dialing the sharer again (attempt {dials} of {DIALS})");
                    dial_unless_connected(swarm, peer, addrs.clone()).map_err(|e| unreachable(&peer, &addrs, &e))?;
                    continue;
                }
                let known = swarm.behaviour().mdns.as_ref().is_some_and(|m| m.discovered_nodes().any(|p| *p == peer));
                if known {
                    let _ = dial_unless_connected(swarm, peer, vec![]);
                }
            }
            ev = swarm.select_next_some() => {
                match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer && asked.is_none() => {
                    asked = Some(swarm.behaviour_mut().sync.send_request(&peer, join.clone()));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) if asked.is_none() => {
                    let addrs: Vec<Multiaddr> =
                        found.into_iter().filter(|(p, a)| *p == peer && transport.allows(a)).map(|(_, a)| a).collect();
                    if !addrs.is_empty() {
                        tracing::info!(peer = %peer, "found the sharer on the LAN");
                        let _ = dial_unless_connected(swarm, peer, addrs);
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(p), error, .. } if p == peer => {
                    tracing::info!(peer = %peer, "dialing the sharer failed: {error}");
                    // Another connection (the sharer's own dial, or mDNS's) may be up.
                    if swarm.is_connected(&peer) {
                        continue;
                    }
                    if !lan {
                        let retryable = !matches!(
                            error,
                            DialError::LocalPeerId { .. } | DialError::WrongPeerId { .. } | DialError::NoAddresses
                        );
                        if retryable && dials < DIALS && !addrs.is_empty() && started.elapsed() < Duration::from_secs(20) {
                            redial = true;
                            continue;
                        }
                        return Err(unreachable(&peer, &addrs, &error));
                    }
                    // mDNS answers within a second or two on a LAN: a little longer
                    // for it, not the whole wait.
                    last_error = Some(unreachable(&peer, &addrs, &error));
                    deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(5));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response }, ..
                })) if Some(request_id) == asked => {
                    match response {
                        Message::Group { doc: d, ops } if d == doc && group.is_none() => {
                            group = Some(ops);
                            asked = Some(swarm.behaviour_mut().sync.send_request(&peer, Message::Need { doc, have: vec![] }));
                            continue;
                        }
                        _ => {}
                    }
                    return match (response, group.take()) {
                        (Message::History { doc: d, blobs }, Some(ops)) if d == doc => {
                            fetch_blobs(swarm, peer, doc, &blobs, store).await.map(|b| (Shared::Blobs(b), ops))
                        }
                        (Message::Error(refusal), _) => Err(NetError::Refused { who: "sharer", refusal }),
                        (other, _) => Err(NetError::Unexpected { who: "sharer", what: format!("{:?}", std::mem::discriminant(&other)) }),
                    };
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                    request_id, error, ..
                })) if Some(request_id) == asked => {
                    tracing::info!(peer = %peer, "the join request failed: {error}");
                    return Err(match error {
                        request_response::OutboundFailure::UnsupportedProtocols => NetError::NotTandem(peer),
                        request_response::OutboundFailure::Timeout => NetError::Timeout,
                        _ => NetError::Broken(peer),
                    });
                }
                _ => {}
            }},
            _ = tokio::time::sleep_until(deadline), if asked.is_none() => {
                return Err(match last_error {
                    Some(e) => NetError::NotOnLan(Box::new(e)),
                    None if lan => NetError::NotFoundOnLan { peer, wait_s: wait },
                    None => NetError::NoAnswer { peer, wait_s: wait },
                });
            }
        }
    }
}

/// Dial `peer` (at `addrs`, or where mDNS found it) unless a connection is up or
/// being dialed; that is not an error.
pub fn dial_unless_connected(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
) -> Result<(), DialError> {
    if swarm.is_connected(&peer) {
        return Ok(());
    }
    // Addresses mDNS found are added to those given (`addresses()` alone turns that off).
    let opts = DialOpts::peer_id(peer).addresses(addrs).extend_addresses_through_behaviour().build();
    match swarm.dial(opts) {
        Err(DialError::DialPeerConditionFalse(_)) => Ok(()),
        other => other,
    }
}

/// A failed dial of `peer` at `addrs`, said for people: who could not be reached and
/// what to check (libp2p's own account, every address with every transport's error,
/// goes to the log).
pub fn unreachable(peer: &PeerId, addrs: &[Multiaddr], error: &DialError) -> NetError {
    match error {
        DialError::LocalPeerId { .. } => NetError::SelfDial,
        DialError::WrongPeerId { obtained, .. } => {
            NetError::StaleTicket { peer: *peer, obtained: Box::new(*obtained) }
        }
        DialError::NoAddresses => NetError::NoAddresses(*peer),
        _ => NetError::Unreachable { peer: *peer, tried: addrs.to_vec() },
    }
}

/// Fetch `blobs` from `peer` (all asked at once) into `store`, each verified against
/// its hash as it is imported; tagged [`tandem_store::INCOMING_TAG`] until a history
/// adopts them. A blob that does not verify drops the peer and fails the fetch,
/// naming the blob. Returns the hashes in the order given.
pub async fn fetch_blobs(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    doc: DocId,
    blobs: &[BlobRef],
    store: &BlobStore,
) -> Result<Vec<BlobHash>, NetError> {
    // A peer names the sizes: refuse absurd ones before asking for anything, and keep
    // a few requests in flight (each answer is held whole until verified).
    let total: u64 = blobs.iter().map(|b| b.size).fold(0, u64::saturating_add);
    if blobs.iter().any(|b| b.size > crate::blobs::MAX_BLOB) || total > MAX_HISTORY_BYTES {
        return Err(NetError::HistoryTooLarge { total, blobs: blobs.len() });
    }
    let mut todo: Vec<(BlobHash, u64)> = blobs
        .iter()
        .map(|b| (BlobHash::from_bytes(b.hash), b.size))
        .filter(|(hash, _)| !(store.has(*hash) && store.get(*hash).is_ok()))
        .rev()
        .collect();
    let mut asked: HashMap<OutboundRequestId, (BlobHash, u64)> = HashMap::new();
    while !todo.is_empty() || !asked.is_empty() {
        while asked.len() < BLOBS_IN_FLIGHT
            && let Some((hash, size)) = todo.pop()
        {
            let req = BlobRequest { doc, hash: *hash.as_bytes() };
            let id = swarm.behaviour_mut().blobs.send_request(&peer, req);
            asked.insert(id, (hash, size));
        }
        let ev = swarm.select_next_some().await;
        let (id, response) = match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            })) => (request_id, Ok(response)),
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            })) => (request_id, Err(error.to_string())),
            _ => continue,
        };
        let Some((hash, size)) = asked.remove(&id) else { continue };
        let bad = match response {
            Ok(BlobResponse::Found(bao)) if bao.len() < 8 || bao[..8] != size.to_le_bytes() => {
                let _ = swarm.disconnect_peer_id(peer);
                NetError::BadBlob { hash, why: "another size than it listed".into() }
            }
            Ok(BlobResponse::Found(bao)) => {
                match store.import_bao(hash, format!("{}{hash}", tandem_store::INCOMING_TAG), bao) {
                    Ok(()) => continue,
                    Err(e @ ImportError::Local(_)) => NetError::Local(format!("blob {hash}: {e}")),
                    Err(e) => {
                        let _ = swarm.disconnect_peer_id(peer);
                        NetError::BadBlob { hash, why: e.to_string() }
                    }
                }
            }
            Ok(BlobResponse::Refused(refusal)) => NetError::BlobRefused { hash, refusal },
            Err(why) => NetError::BlobFailed { hash, why },
        };
        return Err(bad);
    }
    Ok(blobs.iter().map(|b| BlobHash::from_bytes(b.hash)).collect())
}
