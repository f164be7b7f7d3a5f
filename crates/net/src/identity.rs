//! The device's network identity: an Ed25519 key pair whose public half is the
//! libp2p PeerId. Stored in `$TANDEM_HOME/device.key` (libp2p's protobuf key
//! encoding, mode 0600; see keys/README.md), created on first use.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libp2p::identity::Keypair;

/// Load the device key from `home`, creating it on first use.
pub fn device_key(home: &Path) -> Result<Keypair, String> {
    let path = home.join("device.key");
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            format!("{}: not a device key ({e}); move it aside to make a new identity", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(home).map_err(|e| format!("{}: {e}", home.display()))?;
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| e.to_string())?;
            let tmp = home.join(".device.key.tmp");
            let mut f = fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
            fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_persists_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::device_key(dir.path()).unwrap();
        let b = super::device_key(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(dir.path().join("device.key"), b"junk").unwrap();
        assert!(super::device_key(dir.path()).unwrap_err().contains("not a device key"));
    }
}
