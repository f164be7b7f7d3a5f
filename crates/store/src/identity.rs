//! Who this device is: its Automerge actor id and the user's display name.
//!
//! Kept in the tandem home directory: `$TANDEM_HOME`, else `$XDG_CONFIG_HOME/tandem`,
//! else `~/.config/tandem`. The actor id is the public half of the device key
//! (`device.key`, created on first use); the name comes from `$TANDEM_NAME`, else the
//! file `name`, else `$USER`.

use std::fs;
use std::path::{Path, PathBuf};

use tandem_doc::{ActorId, Author};

use crate::error::{Result, StoreError};

/// The tandem home directory (not created here).
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("TANDEM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("tandem");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("tandem")
}

/// Load this device's author identity from `home`. The actor id is the device key's
/// public half (created on first use), so every change names the key that can sign
/// it and peers can check that it does (see `tandem_auth::envelope`).
pub fn load_author(home: &Path) -> Result<Author> {
    let key = tandem_auth::device::DeviceKey::load_or_create(home).map_err(|e| match e {
        tandem_auth::device::KeyError::Bad { path, detail } => StoreError::corrupt(&path, detail),
        tandem_auth::device::KeyError::Io { path, source } => StoreError::Io { path, source },
    })?;
    let actor = ActorId::from(key.public().to_vec());
    let name = std::env::var("TANDEM_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| fs::read_to_string(home.join("name")).ok().map(|n| n.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "anonymous".to_owned());
    Ok(Author::new(name, actor))
}
