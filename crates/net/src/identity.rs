//! The device's network identity: its Ed25519 device key (see
//! `tandem_auth::device`), whose public half is the libp2p PeerId.

use std::path::Path;

use libp2p::identity::Keypair;

/// Load the device key from `home`, creating it on first use.
pub fn device_key(home: &Path) -> Result<Keypair, String> {
    tandem_auth::device::DeviceKey::load_or_create(home)
        .map(|k| k.keypair().clone())
        .map_err(|e| e.to_string())
}
