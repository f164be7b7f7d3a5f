//! A damaged history rebuilt from what is intact. One flipped byte in any one file of
//! a document's directory must lose no history, because each file can be rebuilt
//! from the others and from the blob store:
//!
//! - `group.log` from `group.copy` (every op is signed, so a damaged one shows);
//! - `state.json` from the group log (its genesis op names the document) and the
//!   workspace path; what it remembers of the last save is only an optimisation;
//! - `index.json` from the blob store's tags (`<doc>/s/<blob>` for the snapshot,
//!   `<doc>/c/<blob>` for each change), every blob re-hashed and opened;
//! - `changes.log` from its records that still check and, for the others, the blobs
//!   every logged change is also stored as;
//! - `text.cache` is only used when its checksum holds, and written again;
//! - a blob the index names that the blob store lost or holds damaged (a flipped
//!   byte in its file, a database started anew) from `snapshot.copy` and
//!   `changes.copy`, the document's own copies of them; and those copies from the
//!   blob store (see [`super::copies`]).
//!
//! It runs when a history is opened and on `tandem verify`, and says what it did.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use tandem_doc::{Change, DocConfig, Document};

use super::copies::{Copies, SNAPSHOT_COPY};
use super::{INDEX, Index, IndexEntry, LOG, STATE, State, change_tag, snapshot_tag};
use crate::blobs::{BlobHash, BlobStore, blob_hash};
use crate::changelog::ChangeLog;
use crate::error::{Result, StoreError};
use crate::fsutil::write_atomic;
use crate::secure::{Keys, Plain, Secure};

/// Check the files of the history of `rel` in `dir` and rebuild the damaged ones.
/// Returns a sentence for each file rebuilt, and the document's copies (see
/// [`super::copies`]) once they hold what the index names; an error when something
/// cannot be rebuilt.
pub(crate) fn repair(
    dir: &Path,
    rel: &str,
    blobs: &BlobStore,
    keys: &Keys,
) -> Result<(Vec<String>, Option<Copies>)> {
    let mut done = Vec::new();
    if !dir.join("group.log").exists() && !dir.join("group.copy").exists() {
        // Nothing here yet (a new document), or one from before membership logs:
        // opening it gives it a group.
        return Ok((done, None));
    }
    // The membership log first: it names the document, and holds the keys.
    let Some(doc) = Secure::document_of(dir) else {
        return Err(StoreError::corrupt(
            &dir.join("group.log"),
            "the membership log and its copy are both damaged or missing; a member can share the document again (`tandem join TICKET` on this device)",
        ));
    };
    let doc_id: String = doc.iter().map(|b| format!("{b:02x}")).collect();
    let group_before = fs::read(dir.join("group.log")).ok();
    let state_path = dir.join(STATE);
    let state: std::result::Result<State, String> = fs::read(&state_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
    match state {
        Ok(s) if s.doc_id == doc_id && s.path == rel => {}
        damaged => {
            let why = match damaged {
                Ok(_) => "it names another document or path".to_owned(),
                Err(e) => e,
            };
            // What the last save was is forgotten: the file is compared with the
            // history on the next open (and merged if it differs).
            let state = State {
                version: 1,
                doc_id: doc_id.clone(),
                path: rel.to_owned(),
                saved_hash: String::new(),
                saved_heads: Vec::new(),
                saved_key: None,
            };
            write_atomic(&state_path, &serde_json::to_vec_pretty(&state).expect("state serializes"))?;
            done.push(format!("state.json was damaged ({why}); rebuilt from the membership log"));
        }
    }
    let secure = Secure::load(dir, &doc_id, keys)?;
    if group_before.is_some_and(|b| fs::read(dir.join("group.log")).ok() != Some(b)) {
        done.push("group.log was damaged; rebuilt from its copy, group.copy".to_owned());
    }
    let tags = blobs.tags()?;
    let tagged = |kind: &str| -> Vec<BlobHash> {
        let prefix = format!("{doc_id}/{kind}/");
        tags.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(_, h)| *h).collect()
    };
    let (changes_tagged, snapshots_tagged) = (tagged("c"), tagged("s"));

    let log_path = dir.join(LOG);
    let log_damaged = ChangeLog::read(&log_path).is_err();
    let records =
        if log_damaged { ChangeLog::read_intact(&log_path)? } else { ChangeLog::read(&log_path)?.1.records };
    let in_log: HashSet<BlobHash> = records.iter().map(|r| blob_hash(r)).collect();

    let index = match Index::read(dir) {
        Ok(Some((index, _))) if index_holds(&index, blobs, &changes_tagged, &snapshots_tagged, &in_log) => {
            Some(index)
        }
        Ok(None) if dir.join(super::LEGACY_SNAPSHOT).exists() => return Ok((done, None)),
        found => {
            let why = match found {
                Ok(Some(_)) => "it names blobs the store does not have, and not those it has".to_owned(),
                Ok(None) => "it is missing".to_owned(),
                Err(e) => e.to_string(),
            };
            let index = rebuild_index(&secure, blobs, &snapshots_tagged, &changes_tagged, &in_log)?;
            if index.snapshot.is_none() && !snapshots_tagged.is_empty() {
                // Never trade a snapshot the index names for none: leave it to
                // `tandem verify` to fetch the blob from a peer.
                return Err(StoreError::corrupt(
                    &dir.join(INDEX),
                    format!(
                        "{why}, and no snapshot in the blob store opens; `tandem verify` with a peer connected can fetch it"
                    ),
                ));
            }
            write_atomic(&dir.join(INDEX), &serde_json::to_vec_pretty(&index).expect("index serializes"))?;
            done.push(format!(
                "index.json was damaged ({why}); rebuilt from the blob store: {} and {} changes",
                if index.snapshot.is_some() { "a snapshot" } else { "no snapshot" },
                index.changes.len()
            ));
            Some(index)
        }
    };

    let copies = index
        .as_ref()
        .map(|index| restore_blobs(dir, &doc_id, index, blobs, &tags, &mut done))
        .transpose()?;

    // Every logged change is also a tagged blob: one that is in neither the index
    // nor the log lost its record (a damaged log, or a damaged last record that
    // looked like a crash's torn tail and was cut off).
    let indexed: HashSet<String> = index.iter().flat_map(|i| i.entries().map(|e| e.blob.clone())).collect();
    let mut recovered = Vec::new();
    for hash in &changes_tagged {
        if indexed.contains(&hash.to_string()) || in_log.contains(hash) {
            continue;
        }
        if let Ok(bytes) = blobs.get(*hash)
            && matches!(secure.open_stored(bytes.clone()), Ok(Plain::Change(_)))
        {
            recovered.push(bytes);
        }
    }
    if log_damaged || !recovered.is_empty() {
        let found = recovered.len();
        let mut rebuilt = records.clone();
        rebuilt.extend(recovered);
        ChangeLog::replace(&log_path, &rebuilt)?;
        done.push(if log_damaged {
            format!(
                "changes.log was damaged; rebuilt from its {} intact records and {found} changes from the blob store",
                records.len()
            )
        } else {
            format!("changes.log had lost {found} changes; recovered from the blob store")
        });
    }
    Ok((done, copies))
}

/// Every blob `index` names good and tagged in the blob store: a damaged or missing
/// one is put back from the document's copies (a blob database started anew has
/// none), a lost tag is set again, and copies that do not hold what the index names
/// (damaged, from before copies were kept, a step ahead after a crash) are written.
fn restore_blobs(
    dir: &Path,
    doc_id: &str,
    index: &Index,
    blobs: &BlobStore,
    tags: &[(String, BlobHash)],
    done: &mut Vec<String>,
) -> Result<Copies> {
    let (mut copies, held) = Copies::read(dir)?;
    // Tags first: putting a damaged blob back collects garbage, which would take
    // a good blob whose tag was lost.
    let mut retagged = 0;
    let mut bad = Vec::new();
    for entry in index.entries() {
        let Ok(hash) = entry.blob.parse::<BlobHash>() else { continue };
        let is_snapshot = entry.change.is_none();
        let tag = if is_snapshot { snapshot_tag(doc_id, &hash) } else { change_tag(doc_id, &hash) };
        match blobs.get(hash) {
            Ok(_) if tags.iter().any(|(t, h)| *t == tag && *h == hash) => {}
            Ok(_) => {
                blobs.tag(tag, hash)?;
                retagged += 1;
            }
            Err(fault) => bad.push((hash, is_snapshot, tag, fault)),
        }
    }
    if retagged > 0 {
        blobs.flush()?;
        done.push(format!(
            "the blob store had lost {retagged} of this history's tags; set again from index.json"
        ));
    }
    for (hash, is_snapshot, tag, fault) in bad {
        // Without a copy only a peer has it: `tandem verify` fetches it.
        if let Some(bytes) = held.get(&hash) {
            blobs.restore(hash, tag, bytes.clone())?;
            let what = if is_snapshot { "snapshot" } else { "change" };
            done.push(format!(
                "the {what} blob {hash} was {fault} in the blob store; put back from {}",
                held.source(is_snapshot)
            ));
        }
    }
    for name in &held.damaged {
        done.push(format!("{name} was damaged; written again from the blob store"));
    }
    let snapshot = index.snapshot.as_ref().and_then(|e| e.blob.parse::<BlobHash>().ok());
    if copies.snapshot().is_some_and(|h| Some(h) != snapshot) {
        done.push(format!("{SNAPSHOT_COPY} did not hold the snapshot index.json names; written again"));
    }
    if !copies.match_index(index) {
        copies.follow(index, |h| blobs.get(*h).ok().or_else(|| held.get(h).cloned()))?;
    }
    Ok(copies)
}

/// True when `index` names blobs the store has, or when the store has no other blob
/// of this document that it could name instead (a missing blob is then for
/// `tandem verify` to fetch from a peer, not an index to rebuild).
fn index_holds(
    index: &Index,
    blobs: &BlobStore,
    changes: &[BlobHash],
    snapshots: &[BlobHash],
    in_log: &HashSet<BlobHash>,
) -> bool {
    let named: HashSet<String> = index.entries().map(|e| e.blob.clone()).collect();
    // A size the index has wrong would make peers refuse the blob: that is damage too.
    let wrong_size = index.entries().any(|e| {
        e.blob.parse::<BlobHash>().is_ok_and(|h| blobs.get(h).is_ok_and(|b| b.len() as u64 != e.bytes))
    });
    if wrong_size {
        return false;
    }
    let missing = index.entries().any(|e| e.blob.parse::<BlobHash>().map_or(true, |h| !blobs.has(h)));
    // The log's changes are tagged and not in the index by design.
    let unnamed = changes
        .iter()
        .chain(snapshots)
        .any(|h| !named.contains(&h.to_string()) && !in_log.contains(h) && blobs.has(*h));
    !(missing && unnamed)
}

/// An index made from the document's tagged blobs: the snapshot that holds the most
/// history, and every change not in the log.
fn rebuild_index(
    secure: &Secure,
    blobs: &BlobStore,
    snapshots: &[BlobHash],
    changes: &[BlobHash],
    in_log: &HashSet<BlobHash>,
) -> Result<Index> {
    let mut best: Option<(usize, IndexEntry)> = None;
    for hash in snapshots {
        let Ok(bytes) = blobs.get(*hash) else { continue };
        let len = bytes.len() as u64;
        if let Ok(Plain::Snapshot(plain)) = secure.open_stored(bytes)
            && let Ok(mut doc) = Document::load(&plain, vec![], anonymous(), DocConfig::default())
        {
            let count = doc.change_count();
            if best.as_ref().is_none_or(|(n, _)| count > *n) {
                best = Some((count, IndexEntry { change: None, blob: hash.to_string(), bytes: len }));
            }
        }
    }
    let mut found: Vec<(Change, IndexEntry)> = Vec::new();
    for hash in changes.iter().filter(|h| !in_log.contains(*h)) {
        let Ok(bytes) = blobs.get(*hash) else { continue };
        let len = bytes.len() as u64;
        if let Ok(Plain::Change(c)) = secure.open_stored(bytes) {
            let entry = IndexEntry { change: Some(c.hash().to_string()), blob: hash.to_string(), bytes: len };
            found.push((*c, entry));
        }
    }
    // Commit order: each author's changes by sequence, authors in turn (Automerge
    // takes them in any order; the order only keeps the index readable).
    found.sort_by(|(a, _), (b, _)| (a.seq(), a.actor_id()).cmp(&(b.seq(), b.actor_id())));
    Ok(Index {
        version: 1,
        snapshot: best.map(|(_, e)| e),
        changes: found.into_iter().map(|(_, e)| e).collect(),
        heads: Vec::new(),
        epoch: None,
    })
}

fn anonymous() -> tandem_doc::Author {
    tandem_doc::Author::new("", tandem_doc::ActorId::from(vec![0u8; 16]))
}
