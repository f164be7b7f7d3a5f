//! A second copy of the blobs a document's history names, in the document's own
//! directory, so that neither a damaged blob nor a damaged blob database costs any
//! history (the blob store holds the one other copy of them; peers may hold none):
//!
//! - `snapshot.copy`: the sealed snapshot the index names, byte for byte;
//! - `changes.copy`: the sealed changes the index names after it, in index order, as
//!   checksummed records (the [`ChangeLog`] format).
//!
//! The copies follow the index: each new index has its blobs copied before it is
//! written, so the copies always hold at least what the index on disk names (a crash
//! in between leaves them a step ahead, which the next open puts right). Repair
//! ([`super::repair`]) puts a damaged or missing blob back from them, and rewrites a
//! damaged copy from the blob store. The price is the history's bytes twice on disk.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::Index;
use crate::blobs::{BlobHash, blob_hash};
use crate::changelog::ChangeLog;
use crate::error::{Result, StoreError};
use crate::fsutil::write_atomic;

pub(super) const SNAPSHOT_COPY: &str = "snapshot.copy";
pub(super) const CHANGES_COPY: &str = "changes.copy";

/// The copies of one history, as they are on disk.
pub(super) struct Copies {
    dir: PathBuf,
    /// The snapshot `snapshot.copy` holds (checked against its hash when read).
    snapshot: Option<BlobHash>,
    /// The changes `changes.copy` holds, in order; `None` when the file is damaged
    /// and must be written whole.
    changes: Option<Vec<BlobHash>>,
    /// Appends to `changes.copy`, after its last record.
    log: ChangeLog,
}

/// The bytes the copies hold, by hash: each checked against its hash.
#[derive(Default)]
pub(super) struct Held {
    bytes: HashMap<BlobHash, Vec<u8>>,
    /// The copy files that failed their checks, by name.
    pub damaged: Vec<&'static str>,
}

impl Held {
    pub fn get(&self, hash: &BlobHash) -> Option<&Vec<u8>> {
        self.bytes.get(hash)
    }

    /// Which copy file holds `hash` (for messages).
    pub fn source(&self, is_snapshot: bool) -> &'static str {
        if is_snapshot { SNAPSHOT_COPY } else { CHANGES_COPY }
    }
}

impl Copies {
    /// The copies in `dir`, and the bytes they hold. Nothing is written; a damaged
    /// file is named in [`Held::damaged`] and holds what of it is intact.
    pub fn read(dir: &Path) -> Result<(Copies, Held)> {
        let mut held = Held::default();
        let snapshot_path = dir.join(SNAPSHOT_COPY);
        let snapshot = match fs::read(&snapshot_path) {
            Ok(bytes) => {
                let hash = blob_hash(&bytes);
                held.bytes.insert(hash, bytes);
                Some(hash)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io { path: snapshot_path, source: e }),
        };
        let changes_path = dir.join(CHANGES_COPY);
        let (log, changes) = match ChangeLog::read(&changes_path) {
            Ok((log, contents)) if contents.torn_tail == 0 => {
                let hashes = contents.records.iter().map(|r| blob_hash(r)).collect();
                held.bytes.extend(contents.records.into_iter().map(|r| (blob_hash(&r), r)));
                (log, Some(hashes))
            }
            _ => {
                held.damaged.push(CHANGES_COPY);
                held.bytes
                    .extend(ChangeLog::read_intact(&changes_path)?.into_iter().map(|r| (blob_hash(&r), r)));
                (ChangeLog::empty(&changes_path), None)
            }
        };
        Ok((Copies { dir: dir.to_owned(), snapshot, changes, log }, held))
    }

    /// The snapshot `snapshot.copy` holds, if any.
    pub fn snapshot(&self) -> Option<BlobHash> {
        self.snapshot
    }

    /// True when the copies hold exactly the blobs `index` names.
    pub fn match_index(&self, index: &Index) -> bool {
        let (snapshot, changes) = named(index);
        self.snapshot == snapshot && self.changes.as_ref() == Some(&changes)
    }

    /// Make the copies hold the blobs `index` names, with the bytes `bytes_of` gives
    /// (a blob it has no bytes for is left out, and copied once it has them). Only
    /// what changed is written: new changes are appended.
    pub fn follow(&mut self, index: &Index, bytes_of: impl Fn(&BlobHash) -> Option<Vec<u8>>) -> Result<()> {
        let (snapshot, changes) = named(index);
        if self.snapshot != snapshot {
            let path = self.dir.join(SNAPSHOT_COPY);
            match snapshot {
                Some(hash) => {
                    if let Some(bytes) = bytes_of(&hash) {
                        write_atomic(&path, &bytes)?;
                        self.snapshot = Some(hash);
                    }
                }
                None => {
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::Io { path, source: e }),
                    }
                    self.snapshot = None;
                }
            }
        }
        if self.changes.as_ref() == Some(&changes) {
            return Ok(());
        }
        let path = self.dir.join(CHANGES_COPY);
        match &self.changes {
            Some(held) if changes.starts_with(held) => {
                let mut now = held.clone();
                for hash in &changes[held.len()..] {
                    if let Some(bytes) = bytes_of(hash) {
                        self.log.append(&bytes)?;
                        now.push(*hash);
                    }
                }
                self.log.sync_now()?;
                self.changes = Some(now);
            }
            _ => {
                let mut now = Vec::new();
                let mut records = Vec::new();
                for hash in &changes {
                    if let Some(bytes) = bytes_of(hash) {
                        records.push(bytes);
                        now.push(*hash);
                    }
                }
                if records.is_empty() {
                    self.log.clear()?;
                } else {
                    ChangeLog::replace(&path, &records)?;
                    self.log = ChangeLog::read(&path)?.0;
                }
                self.changes = Some(now);
            }
        }
        Ok(())
    }
}

/// The snapshot and the changes `index` names (an entry that is not a hash is left
/// out: the index itself is then damaged, which repair sees to).
fn named(index: &Index) -> (Option<BlobHash>, Vec<BlobHash>) {
    (
        index.snapshot.as_ref().and_then(|e| e.blob.parse().ok()),
        index.changes.iter().filter_map(|e| e.blob.parse().ok()).collect(),
    )
}
