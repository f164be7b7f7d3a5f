//! How each connected peer is reached (`quic`, `webrtc`, `tcp`), kept by the swarm
//! itself: a behaviour that only watches connections come and go. Whoever polls the
//! swarm (the join, `listen_addrs`, the node) cannot lose a connection event for it,
//! so a peer connected before a [`crate::Node`] exists still shows how it is reached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::node::Transport;

#[derive(Default)]
pub struct Links {
    open: HashMap<PeerId, HashMap<ConnectionId, &'static str>>,
}

impl Links {
    /// How `peer` is reached: its one transport, or the first of several (QUIC,
    /// then WebRTC, then TCP) when it has more than one connection.
    pub fn of(&self, peer: &PeerId) -> Option<&'static str> {
        let conns = self.open.get(peer)?;
        ["quic", "webrtc", "tcp"].into_iter().find(|t| conns.values().any(|v| v == t))
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
                let link = Transport::of(c.endpoint.get_remote_address()).name();
                self.open.entry(c.peer_id).or_default().insert(c.connection_id, link);
            }
            FromSwarm::ConnectionClosed(c) => {
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
