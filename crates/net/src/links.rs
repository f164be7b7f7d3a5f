//! How each connected peer is reached (`quic`, `webrtc`, `tcp`, or `relayed` through
//! a circuit relay), kept by the swarm itself: a behaviour that only watches
//! connections come and go. Whoever polls the swarm (the join, `listen_addrs`, the
//! node) cannot lose a connection event for it, so a peer connected before a
//! [`crate::Node`] exists still shows how it is reached.
//!
//! It also says when a relayed connection is no longer needed: once a direct one to
//! the same peer (a hole punched by DCUtR, or a dial that got through) has lasted a
//! moment, so requests already on the relayed one could finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::transport::Transport;

/// A relayed connection is closed this long after a direct one to its peer opened.
pub const RELAYED_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Links {
    open: HashMap<PeerId, HashMap<ConnectionId, (&'static str, Instant)>>,
    /// The relay each relayed connection goes through.
    via: HashMap<ConnectionId, PeerId>,
}

impl Links {
    /// How `peer` is reached: its one transport, or the first of several (QUIC,
    /// then WebRTC, then TCP, then a relay) when it has more than one connection.
    pub fn of(&self, peer: &PeerId) -> Option<&'static str> {
        let conns = self.open.get(peer)?;
        ["quic", "webrtc", "tcp", "relayed"].into_iter().find(|t| conns.values().any(|(v, _)| v == t))
    }

    /// Relayed connections whose peer has had a direct one for [`RELAYED_GRACE`]:
    /// to be closed (requests are spread over every connection to a peer, and the
    /// relay's limits would end the session sooner or later).
    pub fn superseded(&self) -> Vec<(PeerId, ConnectionId)> {
        let mut out = Vec::new();
        for (peer, conns) in &self.open {
            let direct = conns.values().any(|(t, since)| *t != "relayed" && since.elapsed() >= RELAYED_GRACE);
            if direct {
                out.extend(conns.iter().filter(|(_, (t, _))| *t == "relayed").map(|(id, _)| (*peer, *id)));
            }
        }
        out
    }

    /// The relay `peer` is reached through, when its only connections are relayed.
    pub fn via(&self, peer: &PeerId) -> Option<PeerId> {
        let conns = self.open.get(peer)?;
        if conns.values().any(|(t, _)| *t != "relayed") {
            return None;
        }
        conns.keys().find_map(|id| self.via.get(id).copied())
    }

    /// Every connected peer with how it is reached.
    pub fn all(&self) -> impl Iterator<Item = (PeerId, &'static str)> + '_ {
        self.open.keys().filter_map(|p| Some((*p, self.of(p)?)))
    }
}

impl NetworkBehaviour for Links {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(c) => {
                let link = if c.endpoint.is_relayed() {
                    use libp2p::core::ConnectedPoint;
                    let through = match c.endpoint {
                        ConnectedPoint::Dialer { address, .. } => address,
                        ConnectedPoint::Listener { local_addr, .. } => local_addr,
                    };
                    if let Some((relay, _)) = crate::reach::relay_of(through) {
                        self.via.insert(c.connection_id, relay);
                    }
                    "relayed"
                } else {
                    Transport::of(c.endpoint.get_remote_address()).name()
                };
                self.open.entry(c.peer_id).or_default().insert(c.connection_id, (link, Instant::now()));
            }
            FromSwarm::ConnectionClosed(c) => {
                self.via.remove(&c.connection_id);
                if let Some(conns) = self.open.get_mut(&c.peer_id) {
                    conns.remove(&c.connection_id);
                    if conns.is_empty() {
                        self.open.remove(&c.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
