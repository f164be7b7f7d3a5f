//! tandem's on-disk state: workspaces, document history, crash-safe writes, and the
//! control socket through which other processes reach a workspace's owner.
//!
//! A document is a normal file the user can edit with any tool; its history lives in
//! the nearest ancestor `.tandem/` directory (created beside the file on first use).
//! One process owns a workspace at a time (a lock on `.tandem/lock`); it serves the
//! others on `.tandem/control.sock`. [`access`] picks the right path for a command.
//!
//! History is content-addressed: every change and snapshot is a sealed envelope
//! (encrypted with the group's epoch key, signed by its author's device) stored as a
//! BLAKE3 blob in `.tandem/blobs/` (iroh-blobs), named by each document's
//! `index.json` and kept by tags; `changes.log` is the write-ahead log in front of it.
//! [`secure`] holds the group (membership log) and the sealing; a damaged file of a
//! history is rebuilt from what is intact when it is opened (`stored::repair`).
//!
//! ```no_run
//! use tandem_store::{Request, Workspace, access, Access};
//! # fn main() -> Result<(), tandem_store::StoreError> {
//! let file = std::path::Path::new("notes.md");
//! let author = tandem_store::load_author(&tandem_store::home_dir())?;
//! let keys = tandem_store::Keys::load(&tandem_store::home_dir())?;
//! let ws = Workspace::discover(file)?;
//! let req = Request::Cat { file: file.to_owned(), at: None };
//! let text = match access(ws, &author, &Default::default(), &keys)? {
//!     Access::Remote(mut client) => client.call(&req)?,
//!     Access::Local(service) => service.handle(&req)?,
//! };
//! # let _ = text; Ok(()) }
//! ```

mod blobs;
pub mod car;
mod changelog;
mod error;
pub mod folder;
mod fsutil;
mod identity;
pub mod secure;
mod service;
mod stored;
mod workspace;

pub use blobs::{BlobFault, BlobHash, BlobStore, ImportError, blob_hash};
pub use error::{InviteError, Result, StoreError};
pub use fsutil::{dir_bytes, read_text, text_from_bytes, write_atomic, write_private};
pub use identity::{home_dir, load_author};
pub use secure::Keys;
pub use service::{Access, BlobFetch, Client, LIVE_UNCONFIRMED_MS, Request, Service, access};
pub use stored::{
    BadBlob, INCOMING_TAG, Index, IndexEntry, Opened, Shared, StoredDoc, cached_answer, current_text,
    doc_id_of, first_screen, has_history, now_ms,
};
pub use workspace::{Lock, STORE_DIR, Workspace, absolute, format_marker};
