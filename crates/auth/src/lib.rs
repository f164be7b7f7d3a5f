//! tandem's identities and authorization (ARCHITECTURE: security model).
//!
//! - [`device`]: the device's Ed25519 key (`device.key`): its public half is the
//!   libp2p PeerId and the Automerge actor id, and it signs change envelopes;
//! - [`agekey`]: the device's age X25519 identity (`age.key`, the format of the
//!   `age` command-line tool) and age encryption of exports;
//! - [`envelope`]: signed change envelopes and their verification, the gate every
//!   change from the network passes before it can touch a document;
//! - [`epoch`]: a group epoch's symmetric read key and its wrapping to age keys;
//! - [`group`]: a document's members and roles, as a signed, hash-linked log of
//!   membership ops that converges on every peer.

pub mod agekey;
pub mod device;
pub mod envelope;
pub mod epoch;
pub mod group;
