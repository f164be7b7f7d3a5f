//! Who this device is: its Automerge actor id and the user's display name.
//!
//! Kept in the tandem home directory: `$TANDEM_HOME`, else `$XDG_CONFIG_HOME/tandem`,
//! else `~/.config/tandem`. The file `actor` holds the actor id as hex (created on
//! first use); the name comes from `$TANDEM_NAME`, else the file `name`, else `$USER`.

use std::fs;
use std::path::{Path, PathBuf};

use tandem_doc::{ActorId, Author};

use crate::error::{Result, StoreError};
use crate::fsutil::write_atomic;

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

/// Load this device's author identity from `home`, creating the actor id on first use.
pub fn load_author(home: &Path) -> Result<Author> {
    let actor_path = home.join("actor");
    let actor = match fs::read_to_string(&actor_path) {
        Ok(hex) => ActorId::try_from(hex.trim()).map_err(|e| {
            StoreError::corrupt(&actor_path, format!("not a hex actor id ({e}); delete it to make a new one"))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(home).map_err(StoreError::io(home))?;
            let actor = ActorId::random();
            write_atomic(&actor_path, format!("{}\n", actor.to_hex_string()).as_bytes())?;
            actor
        }
        Err(e) => return Err(StoreError::Io { path: actor_path, source: e }),
    };
    let name = std::env::var("TANDEM_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| fs::read_to_string(home.join("name")).ok().map(|n| n.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "anonymous".to_owned());
    Ok(Author::new(name, actor))
}
