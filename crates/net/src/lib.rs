//! tandem's network: a libp2p node per shared document, tickets, and the
//! `/tandem/sync/1` protocol.
//!
//! - [`protocol`]: message types, framing and size limits (checked before decoding);
//! - [`ticket`]: the copy-pasteable string a sharer gives a joiner (checksummed);
//! - [`presence`]: `/tandem/presence/1`, who is here and where their cursor is, signed
//!   by its origin;
//! - [`links`]: how each connected peer is reached, kept by the swarm itself;
//! - [`identity`]: the device's Ed25519 key, whose public half is its PeerId;
//! - [`relay`]: a keyless member that keeps and forwards ciphertext;
//! - [`reach`]: peers behind NATs: reservations at circuit relays, hole punching;
//! - [`public`]: `tandem relay`, a public circuit relay with limits for editing, an
//!   AutoNAT server and a DHT server;
//! - [`discovery`]: finding members beyond the ticket through the Kademlia DHT, by a
//!   key derived from the group's epoch key;
//! - [`transport`]: the swarm (QUIC, WebRTC, TCP + Noise + Yamux, mDNS for members,
//!   and the behaviours above) and its listeners;
//! - [`codec`]: the framing of `/tandem/sync/1` and the piecewise writes every
//!   protocol uses;
//! - [`node`]: the sync logic (hello, membership gate, fan-out, redial), driving a
//!   `tandem_store::Service` that owns the document on disk;
//! - [`join`]: a fresh join (enrolment, the verified fetch of the history), and dial
//!   failures said for people.
//!
//! The network never touches a document directly: changes go in and out through the
//! store's service, which also serves scripts and the editor.

pub mod blobs;
pub mod codec;
pub mod discovery;
pub mod error;
pub mod identity;
pub mod join;
pub mod links;
pub mod live;
pub mod node;
pub mod presence;
pub mod protocol;
pub mod public;
pub mod reach;
pub mod relay;
pub mod ticket;
pub mod transport;

pub use error::NetError;
pub use identity::device_key;
/// The libp2p this crate is built on (addresses and peer ids in its API).
pub use libp2p;
pub use node::Node;
pub use ticket::{Role, Ticket, TicketError};
pub use transport::Transport;
