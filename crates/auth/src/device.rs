//! The device key: Ed25519, kept in `$TANDEM_HOME/device.key` (libp2p's protobuf
//! key encoding, mode 0600; see keys/README.md), created on first use. Its public
//! half is the libp2p PeerId, the Automerge actor id of every change this device
//! makes, and the key that signs its change envelopes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libp2p_identity::Keypair;

/// An Ed25519 public key: 32 bytes.
pub type PublicKey = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: not a device key ({detail}); move it aside to make a new identity", path = .path.display())]
    Bad { path: PathBuf, detail: String },
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Clone)]
pub struct DeviceKey {
    keypair: Keypair,
    public: PublicKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        f.debug_struct("DeviceKey").field("public", &hex(&self.public)).finish()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DeviceKey {
    /// The file the device key of `home` lives in.
    pub fn path(home: &Path) -> PathBuf {
        home.join("device.key")
    }

    /// Load the device key of `home`, creating it on first use.
    pub fn load_or_create(home: &Path) -> Result<DeviceKey, KeyError> {
        let path = Self::path(home);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { path, source }
        };
        match fs::read(&path) {
            Ok(bytes) => {
                Self::from_protobuf(&bytes).map_err(|detail| KeyError::Bad { path: path.clone(), detail })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(home).map_err(io(home))?;
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair
                    .to_protobuf_encoding()
                    .map_err(|e| KeyError::Bad { path: path.clone(), detail: e.to_string() })?;
                // A name of its own, then linked into place only if no other process
                // (or thread) made a key first: two first uses never end up with two
                // keys, one of them lost.
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = home.join(format!(".device.key.tmp-{}-{n}", std::process::id()));
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io(&tmp))?;
                let written = f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(io(&tmp));
                let linked = written.and_then(|()| match fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    // A file system without hard links: a plain rename is still atomic.
                    Err(_) => fs::rename(&tmp, &path).map(|()| true).map_err(io(&path)),
                });
                let _ = fs::remove_file(&tmp);
                if !linked? {
                    return Self::load_or_create(home);
                }
                Self::from_protobuf(&bytes).map_err(|detail| KeyError::Bad { path, detail })
            }
            Err(e) => Err(KeyError::Io { path, source: e }),
        }
    }

    fn from_protobuf(bytes: &[u8]) -> Result<DeviceKey, String> {
        let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| e.to_string())?;
        let public = keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| "not an Ed25519 key".to_owned())?
            .public()
            .to_bytes();
        Ok(DeviceKey { keypair, public })
    }

    /// A fresh key that is never stored (tests, benchmarks).
    pub fn generate() -> DeviceKey {
        Self::from_protobuf(&Keypair::generate_ed25519().to_protobuf_encoding().expect("ed25519 encodes"))
            .expect("a fresh Ed25519 key")
    }

    /// The libp2p key pair (the node's identity).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Sign `msg` (64 bytes).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let sig = self.keypair.sign(msg).expect("Ed25519 signing cannot fail");
        sig.try_into().expect("Ed25519 signatures are 64 bytes")
    }
}

/// The libp2p PeerId (`12D3KooW...`) of the device whose key is `public`.
pub fn peer_id(public: &PublicKey) -> Option<libp2p_identity::PeerId> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(public).ok()?;
    Some(libp2p_identity::PublicKey::from(key).to_peer_id())
}

/// The device key behind a PeerId (only Ed25519 PeerIds carry their key).
pub fn public_of(peer: &libp2p_identity::PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None; // a hashed (non-identity) PeerId: the key is not in it
    }
    // An Ed25519 key's protobuf form is fixed (type 1, 32 bytes): read it without
    // decoding the point, which costs ~10 us and is asked for on every keystroke
    // received. A key that is not a valid point is simply never a member.
    match mh.digest() {
        [0x08, 0x01, 0x12, 0x20, key @ ..] if key.len() == 32 => key.try_into().ok(),
        _ => None,
    }
}

/// A member as a user names it: a PeerId (as `tandem id` prints it) or 64 hex digits.
pub fn parse_member(s: &str) -> Result<PublicKey, String> {
    let s = s.trim();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    let peer: libp2p_identity::PeerId = s
        .parse()
        .map_err(|_| format!("{s:?} is not a peer id; give the peer_id `tandem id` prints on that device"))?;
    public_of(&peer)
        .ok_or_else(|| format!("{s:?} is not the peer id of a tandem device (not an Ed25519 key)"))
}

/// True when `sig` is `public`'s signature of `msg`. A malformed key or signature is
/// simply not valid.
pub fn verify(public: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    match libp2p_identity::ed25519::PublicKey::try_from_bytes(public) {
        Ok(key) => key.verify(msg, sig),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_keys_round_trip() {
        let key = DeviceKey::generate();
        let peer = peer_id(&key.public()).unwrap();
        assert_eq!(peer, key.keypair().public().to_peer_id());
        assert_eq!(public_of(&peer), Some(key.public()));
        assert_eq!(parse_member(&peer.to_string()), Ok(key.public()));
        assert_eq!(parse_member(&hex(&key.public())), Ok(key.public()));
        assert!(parse_member("bob").is_err());
    }

    #[test]
    fn the_key_persists_signs_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = DeviceKey::load_or_create(dir.path()).unwrap();
        let b = DeviceKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let sig = a.sign(b"hello");
        assert!(verify(&b.public(), b"hello", &sig));
        assert!(!verify(&b.public(), b"hellO", &sig));
        assert!(!verify(&DeviceKey::generate().public(), b"hello", &sig));
        assert!(!verify(&[0u8; 32], b"hello", &sig));
        assert!(!verify(&a.public(), b"hello", &sig[..63]));
        std::fs::write(DeviceKey::path(dir.path()), b"junk").unwrap();
        let err = DeviceKey::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a device key"), "{err}");
    }
}
