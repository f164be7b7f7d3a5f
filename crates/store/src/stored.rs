//! A document with its history on disk. The history itself is blobs in the
//! workspace's [`BlobStore`] (`.tandem/blobs/`); the document's own directory,
//! `.tandem/docs/<key>/`, holds:
//!
//! - `index.json`: which blobs make the history: the newest snapshot (Automerge's
//!   compact form of everything up to it) and every change committed since, each
//!   as (change hash, blob hash, size), plus the heads they add up to;
//! - `changes.log`: the write-ahead log: changes committed since the index was last
//!   written, one checksummed record each (see [`crate::changelog`]). Each is also
//!   put in the blob store at once, but the store makes writes durable in batches,
//!   so the log is what survives a crash until the next checkpoint moves its
//!   changes into the index;
//! - `state.json`: document id, the file's path, and what was last saved to the
//!   plain file (its BLAKE3 hash and the heads it showed);
//! - `text.cache`: the text at the latest index+log state, so the first screen can
//!   be drawn before Automerge has loaded.
//!
//! Checkpoint order: blobs put, blob store flushed, index replaced atomically, log
//! emptied. Compaction: snapshot blob put and flushed, index replaced, log emptied,
//! then the tags of what the snapshot replaced are dropped (`tandem gc` deletes
//! those blobs). A crash between any two steps leaves a history that loads whole.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_doc::{Author, Change, ChangeHash, ChangeSet, DocConfig, Document};

use crate::blobs::{BlobHash, BlobStore, PutUnderWay, blob_hash};
use crate::changelog::ChangeLog;
use crate::error::{Result, StoreError};
use crate::fsutil::{read_text, write_atomic};
use crate::secure::{Keys, Plain, Secure};
use crate::workspace::Workspace;
use serde_json::Value;

mod copies;
mod repair;

use copies::Copies;

/// Where histories were kept before the blob store (read once, then moved in).
const LEGACY_SNAPSHOT: &str = "snapshot.am";
const INDEX: &str = "index.json";
const LOG: &str = "changes.log";
const STATE: &str = "state.json";
const CACHE: &str = "text.cache";
/// Fold the changes into a new snapshot once this many follow the snapshot...
const COMPACT_RECORDS: usize = 64;
/// ...or they take this many bytes and more than half the snapshot's size. Each
/// change blob costs ~700 bytes of store metadata besides its own bytes, so a long
/// tail of them, not the snapshot, is what makes a store big (measured on the
/// automerge-paper history: 512 changes per snapshot kept the store at 3.3x
/// Automerge's `save()`).
const COMPACT_BYTES: u64 = 64 << 10;
/// Blobs larger than this are files of their own in the store (iroh-blobs' default
/// inline limit), which [`BlobStore::sync_files`] makes durable.
const INLINE_MAX: u64 = 16 << 10;
/// A fresh peer is sent at most this many change blobs after the snapshot.
const SHARE_CHANGES_MAX: usize = 32;
/// Most remote changes held while the changes they depend on have not arrived
/// (more are dropped, oldest first: a peer sends them again when asked).
const MAX_PARKED: usize = 4096;
/// ...and most bytes of them.
const MAX_PARKED_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    doc_id: String,
    path: String,
    /// BLAKE3 of the plain file as tandem last wrote (or read) it.
    saved_hash: String,
    /// Heads of the document whose text that was.
    saved_heads: Vec<String>,
    /// The history as it was when the file was saved: while it is still so, the
    /// plain file itself is the first screen.
    #[serde(default)]
    saved_key: Option<CacheKey>,
}

/// Names one state of the history on disk without loading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    /// BLAKE3 of `index.json`.
    index: String,
    log_len: u64,
}

/// The first line of an answer cache (`info.cache`, `log.cache`): the history state
/// and the file it describes, and the hash of the answer that follows.
#[derive(Serialize, Deserialize)]
struct AnswerHeader {
    key: CacheKey,
    /// BLAKE3 of the plain file it was true of.
    file: String,
    body: String,
}

impl CacheKey {
    /// The state of the history in `dir` as it is on disk now.
    fn on_disk(dir: &Path) -> Option<CacheKey> {
        let index = fs::read(dir.join(INDEX)).ok()?;
        Some(CacheKey {
            index: hash_hex(&index),
            log_len: fs::metadata(dir.join(LOG)).map_or(0, |m| m.len()),
        })
    }
}

/// For answering about `file` without loading its history: its path, its history's
/// directory and the state on disk, when the store is in our format and this device
/// may read the document (others are told why not by a full open).
fn unloaded(ws: &Workspace, file: &Path, keys: &Keys) -> Option<(String, PathBuf, CacheKey)> {
    if !ws.format_is_current() {
        return None;
    }
    let rel = ws.relative(file).ok()?;
    let dir = ws.doc_dir(&rel);
    if !Secure::may_read(&dir, keys) {
        return None;
    }
    let current = CacheKey::on_disk(&dir)?;
    Some((rel, dir, current))
}

/// The answer `kind` kept by [`StoredDoc::keep_answer`] for `file`, when the history
/// and the file are still as they were then and this device may read them.
pub fn cached_answer(ws: &Workspace, file: &Path, kind: &str, keys: &Keys) -> Option<Value> {
    let (rel, dir, current) = unloaded(ws, file, keys)?;
    let cache = fs::read(dir.join(format!("{kind}.cache"))).ok()?;
    let nl = cache.iter().position(|&b| b == b'\n')?;
    let header: AnswerHeader = serde_json::from_slice(&cache[..nl]).ok()?;
    let body = &cache[nl + 1..];
    let file_now = hash_hex(&fs::read(ws.root().join(&rel)).ok()?);
    // The state must agree (a damaged one is for a full open to rebuild).
    let state: State = serde_json::from_slice(&fs::read(dir.join(STATE)).ok()?).ok()?;
    if header.key != current
        || header.file != file_now
        || state.saved_hash != file_now
        || hash_hex(body) != header.body
    {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The first line of `text.cache`: the history state it shows, and its text's hash.
#[derive(Serialize, Deserialize)]
struct CacheHeader {
    #[serde(flatten)]
    key: CacheKey,
    /// BLAKE3 of the text that follows.
    text: String,
}

/// One blob of a document's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The Automerge change hash (absent for a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// BLAKE3 of the blob, hex.
    pub blob: String,
    pub bytes: u64,
}

impl IndexEntry {
    fn blob_hash(&self, index: &Path) -> Result<BlobHash> {
        self.blob.parse().map_err(|_| StoreError::corrupt(index, format!("bad blob hash {:?}", self.blob)))
    }
}

/// `index.json`: the blobs that make a document's history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    pub snapshot: Option<IndexEntry>,
    /// Changes after the snapshot, in commit order.
    pub changes: Vec<IndexEntry>,
    pub heads: Vec<String>,
    /// The group epoch whose key sealed the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl Index {
    fn read(dir: &Path) -> Result<Option<(Index, Vec<u8>)>> {
        let path = dir.join(INDEX);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(&path, format!("unreadable index: {e}")))?;
        Ok(Some((index, bytes)))
    }

    /// Every blob the index names, snapshot first.
    pub fn entries(&self) -> impl Iterator<Item = &IndexEntry> {
        self.snapshot.iter().chain(&self.changes)
    }
}

/// Tag names: what keeps a document's blobs from garbage collection.
fn snapshot_tag(doc_id: &str, blob: &BlobHash) -> String {
    format!("{doc_id}/s/{blob}")
}

fn change_tag(doc_id: &str, blob: &BlobHash) -> String {
    format!("{doc_id}/c/{blob}")
}

/// Most change blobs put without a wait and not yet stored (see `persist`): beyond
/// it a commit waits for the oldest, so a store slower than the typing holds
/// memory for at most this many changes.
const PUTS_UNDER_WAY: usize = 64;

/// A change in the write-ahead log, not yet in the index.
struct Pending {
    entry: IndexEntry,
    /// The change's envelope, as logged (for peers and for the copies, without a
    /// trip to the blob store).
    bytes: Vec<u8>,
    /// Whether the blob store has it yet (not after a failed put, nor when read back
    /// from the log after a restart).
    stored: bool,
    /// Its put, still under way on the blob store's thread.
    put: Option<PutUnderWay>,
}

/// How a document was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// History was created from the file just now.
    Created,
    /// History existed and the file matched it.
    Loaded,
    /// The file had been changed outside tandem; the difference was merged in as a
    /// local edit (this one).
    MergedExternal(ChangeSet),
}

/// Envelopes opened: changes with their envelopes, and changes vouched for by a
/// snapshot (see [`StoredDoc::open_envelopes`]).
pub type OpenedEnvelopes = (Vec<(Change, Vec<u8>)>, Vec<Change>);

/// Remote changes being applied with Automerge out of the document (see
/// [`StoredDoc::begin_remote`]).
pub struct RemoteApply {
    detached: tandem_doc::Detached,
    fresh: Vec<(Change, Vec<u8>)>,
}

impl RemoteApply {
    /// The Automerge work, done without the document (no lock needed).
    pub fn run(self) -> RemoteApply {
        RemoteApply { detached: self.detached.apply(), fresh: self.fresh }
    }
}

/// A shared document as a peer sends it for a fresh join.
pub enum Shared {
    /// Every change, oldest first.
    Changes(Vec<Change>),
    /// The document in Automerge's compact form (smaller: one column-encoded blob).
    Snapshot(Vec<u8>),
    /// The peer's history blobs, snapshot first, already fetched into this
    /// workspace's blob store and verified against their hashes (tagged
    /// [`INCOMING_TAG`] until the history that uses them is written).
    Blobs(Vec<BlobHash>),
}

/// Tag prefix of blobs fetched from a peer and not yet part of a history.
pub const INCOMING_TAG: &str = "incoming/";

/// The history `blobs` make (snapshot first, if any): the document's bytes and
/// changes, and the index that names them.
fn read_shared(
    store: &BlobStore,
    secure: &Secure,
    blobs: &[BlobHash],
    path: &Path,
) -> Result<(Vec<u8>, Vec<Change>, Index)> {
    let mut index = Index { version: 1, ..Index::default() };
    let mut snapshot = Vec::new();
    let mut changes = Vec::new();
    for (i, hash) in blobs.iter().enumerate() {
        let bytes = store
            .get(*hash)
            .map_err(|fault| StoreError::corrupt(path, format!("fetched blob {hash} is {fault}")))?;
        let len = bytes.len() as u64;
        let refused = |e: String| crate::secure::denied(format!("fetched blob {hash} refused: {e}"));
        match secure.open_remote(&bytes).map_err(|e| refused(e.to_string()))? {
            Plain::Change(change) => {
                let change = *change;
                index.changes.push(IndexEntry {
                    change: Some(change.hash().to_string()),
                    blob: hash.to_string(),
                    bytes: len,
                });
                changes.push(change);
            }
            Plain::Snapshot(bytes) if i == 0 => {
                index.snapshot = Some(IndexEntry { change: None, blob: hash.to_string(), bytes: len });
                snapshot = bytes;
            }
            Plain::Snapshot(_) => return Err(refused("a snapshot after the first blob".into())),
        }
    }
    Ok((snapshot, changes, index))
}

/// A document plus its on-disk history. Only the workspace owner may hold one.
pub struct StoredDoc {
    pub doc: Document,
    file: PathBuf,
    rel: String,
    dir: PathBuf,
    log: ChangeLog,
    state: State,
    blobs: std::sync::Arc<BlobStore>,
    index: Index,
    /// BLAKE3 of `index.json` as written (names the history for the text cache).
    index_hash: String,
    /// The document's own copy of the blobs the index names.
    copies: Copies,
    /// Changes in the log, not yet in the index.
    pending: Vec<Pending>,
    /// Indices in `pending` of the changes whose put is under way, oldest first.
    puts: std::collections::VecDeque<usize>,
    /// Envelopes of local changes stored but not yet handed to the network
    /// ([`Self::take_outbox`]).
    outbox: Vec<Vec<u8>>,
    /// The group, keys, sealing and opening (see [`crate::secure`]).
    secure: Secure,
    /// Remote changes waiting for the changes they depend on, with their envelopes.
    parked: Vec<(Change, Vec<u8>)>,
    /// Remote changes arrived since the file was last written (see [`Self::save_if_stale`]).
    file_stale: bool,
    last_save_ms: u64,
}

impl Drop for StoredDoc {
    /// The change blobs still being put are the second copy of the log: the next
    /// opener may need them to rebuild a damaged log.
    fn drop(&mut self) {
        self.finish_puts();
    }
}

/// What [`StoredDoc::rewind`] goes back to.
pub struct RestorePoint {
    /// Each file with its bytes then (`None`: it did not exist).
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

/// Remote changes are written to the file at most this often (each write is an
/// atomic replace with three fsyncs, under the document's lock, so a keystroke
/// arriving meanwhile waits: 16 peers typing at once made ~80 a second at first, and
/// 200 ms still made each of 16 typists save 5 times a second).
const REMOTE_SAVE_MS: u64 = 1000;

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn parse_heads(path: &Path, heads: &[String]) -> Result<Vec<ChangeHash>> {
    heads
        .iter()
        .map(|h| h.parse().map_err(|_| StoreError::corrupt(path, format!("bad change hash {h:?}"))))
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether `dir` holds a document's history. A history whose state.json is gone
/// still has its group log or index: loading rebuilds the state.
fn history_in(dir: &Path) -> bool {
    [STATE, INDEX, "group.log", "group.copy"].iter().any(|f| dir.join(f).exists())
}

/// Whether `file` has a history in its workspace (its file may be gone: a deleted
/// note's history stays, and `tandem log`, `cat`, `restore` read it).
pub fn has_history(file: &Path) -> bool {
    let Ok(ws) = Workspace::discover(file) else { return false };
    ws.relative(file).is_ok_and(|rel| history_in(&ws.doc_dir(&rel)))
}

impl StoredDoc {
    /// Open `file` (which must exist and be UTF-8 text, unless `create`), creating its
    /// history on first use and merging in changes made to it outside tandem. The
    /// caller must own the workspace (hold its [`crate::Lock`]).
    pub fn open(
        ws: &Workspace,
        file: &Path,
        author: Author,
        config: DocConfig,
        create: bool,
        keys: &Keys,
    ) -> Result<(StoredDoc, Opened)> {
        // Changes are signed with the device key: they must carry it as their actor.
        let author = Author::new(author.name, tandem_doc::ActorId::from(keys.public().to_vec()));
        let rel = ws.relative(file)?;
        let file = ws.root().join(&rel);
        let dir = ws.doc_dir(&rel);
        // A new history would overwrite the group's keys of one whose state is lost.
        let has_history = history_in(&dir);
        let text = match read_text(&file) {
            // A deleted file's history stays (`tandem log`, `restore` work on it); the
            // file comes back when the document is next written.
            Err(StoreError::NotFound(_)) if create || has_history => None,
            other => Some(other?),
        };
        ws.ensure()?;
        let now = now_ms();
        if !has_history {
            let content = text.unwrap_or_default();
            let doc = Document::with_text(author, config, &content, now);
            let doc_id =
                hash_hex(format!("{rel}\0{now}\0{:?}", doc.author().actor).as_bytes())[..32].to_owned();
            let secure = Secure::create(&dir, &doc_id, keys)?;
            let stored = Self::create(ws, file, rel, dir, doc, doc_id, &content, None, secure)?;
            return Ok((stored, Opened::Created));
        }
        let mut stored = Self::load(ws, &dir, file, rel, author, config, keys)?;
        let opened = match text {
            Some(text) => stored.merge_file(&text, now)?,
            None => Opened::Loaded,
        };
        Ok((stored, opened))
    }

    /// Write the history of a new document whose file holds `saved` (snapshot first,
    /// then the state that makes it count). With `adopt` (blobs already in the store
    /// that make `doc`'s history, as a fresh join fetched them), that is the index
    /// instead of a new snapshot.
    #[allow(clippy::too_many_arguments)]
    fn create(
        ws: &Workspace,
        file: PathBuf,
        rel: String,
        dir: PathBuf,
        doc: Document,
        doc_id: String,
        saved: &str,
        adopt: Option<Index>,
        secure: Secure,
    ) -> Result<StoredDoc> {
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let (log, _) = ChangeLog::read(&dir.join(LOG))?;
        let blobs = BlobStore::open(&ws.blob_dir())?;
        let state = State {
            version: 1,
            doc_id,
            path: rel.clone(),
            saved_hash: hash_hex(saved.as_bytes()),
            saved_heads: doc.heads().iter().map(|h| h.to_string()).collect(),
            saved_key: None,
        };
        let copies = Copies::read(&dir)?.0;
        let mut stored = StoredDoc {
            doc,
            file,
            rel,
            dir,
            log,
            state,
            blobs,
            index: Index::default(),
            index_hash: String::new(),
            copies,
            pending: Vec::new(),
            puts: Default::default(),
            outbox: Vec::new(),
            secure,
            parked: Vec::new(),
            file_stale: false,
            last_save_ms: 0,
        };
        stored.secure.write()?;
        stored.log.clear()?;
        match adopt {
            Some(index) => stored.adopt(index)?,
            None => stored.compact()?,
        }
        stored.write_state()?;
        Ok(stored)
    }

    /// Open `file` as a copy of the shared document `doc_id` as a peer sent it for a
    /// fresh join. When the workspace already holds that document, the peer's
    /// changes are merged into it; a different document there is an error. The file
    /// is written. The caller must own the workspace.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        ws: &Workspace,
        file: &Path,
        doc_id: &str,
        shared: Shared,
        author: Author,
        config: DocConfig,
        keys: &Keys,
        group: &[Vec<u8>],
    ) -> Result<StoredDoc> {
        let author = Author::new(author.name, tandem_doc::ActorId::from(keys.public().to_vec()));
        let rel = ws.relative(file)?;
        let file = ws.root().join(&rel);
        ws.ensure()?;
        let dir = ws.doc_dir(&rel);
        let now = now_ms();
        let mut stored = if dir.join(STATE).exists() {
            let load =
                || Self::load(ws, &dir, file.clone(), rel.clone(), author.clone(), config.clone(), keys);
            let mut stored = match load() {
                Ok(stored) => stored,
                // The membership log and its copy both damaged: the peer's log (every
                // op checked) takes their place, and the history opens again.
                Err(e) if Secure::document_of(&dir).is_none() => {
                    Secure::restore(&dir, doc_id, group).map_err(|_| e)?;
                    tracing::warn!("{rel}: group.log was damaged with its copy; rebuilt from the peer's");
                    load()?
                }
                Err(e) => return Err(e),
            };
            // Before the group: another document's log is not this one's.
            if stored.doc_id() != doc_id {
                return Err(StoreError::BadRequest(format!(
                    "{}: this file already has the history of another document ({}); join into another directory (`tandem join TICKET DIR`)",
                    file.display(),
                    stored.doc_id()
                )));
            }
            stored.secure.add_ops(group)?;
            let changes = match shared {
                Shared::Changes(changes) => changes,
                Shared::Snapshot(bytes) => { Document::load(&bytes, vec![], author, config) }
                    .map_err(|e| StoreError::Doc { path: file.clone(), source: e })?
                    .changes_since(&[]),
                Shared::Blobs(blobs) => {
                    let (snapshot, changes, _) = read_shared(&stored.blobs, &stored.secure, &blobs, &file)?;
                    { Document::load(&snapshot, changes, author, config) }
                        .map_err(|e| StoreError::Doc { path: file.clone(), source: e })?
                        .changes_since(&[])
                }
            };
            stored.apply_vouched(changes, now)?;
            stored.blobs.untag_except(INCOMING_TAG.into(), Default::default())?;
            stored
        } else {
            if file.exists() {
                return Err(StoreError::BadRequest(format!(
                    "{}: a file of that name exists and is not this shared document; join into another directory",
                    file.display()
                )));
            }
            // One document, one history per workspace: its blobs' tags are named by
            // the document id, so a second history of it would collect the first's.
            if let Some(other) = document_with_id(ws, doc_id)? {
                return Err(StoreError::BadRequest(format!(
                    "{}: this workspace already has that shared document, as {other}; open that file instead",
                    file.display()
                )));
            }
            let doc_err = |e| StoreError::Doc { path: file.clone(), source: e };
            let secure = Secure::join(&dir, doc_id, keys, group)?;
            let (doc, adopt) = match shared {
                Shared::Changes(changes) => {
                    (Document::from_changes(changes, author, config).map_err(doc_err)?, None)
                }
                Shared::Snapshot(bytes) => {
                    (Document::load(&bytes, vec![], author, config).map_err(doc_err)?, None)
                }
                // The peer's blobs become this history as they are: nothing re-encoded.
                Shared::Blobs(blobs) => {
                    let store = BlobStore::open(&ws.blob_dir())?;
                    let (snapshot, changes, index) = read_shared(&store, &secure, &blobs, &file)?;
                    (Document::load(&snapshot, changes, author, config).map_err(doc_err)?, Some(index))
                }
            };
            let stored = Self::create(ws, file, rel, dir, doc, doc_id.to_owned(), "", adopt, secure)?;
            stored.blobs.untag_except(INCOMING_TAG.into(), Default::default())?;
            stored
        };
        stored.save(now)?;
        Ok(stored)
    }

    /// The whole document in Automerge's compact form (what a fresh peer is sent).
    pub fn snapshot(&mut self, now: u64) -> Vec<u8> {
        self.doc.save(now)
    }

    /// Apply envelopes from a peer (each checked: see [`Secure::open_remote`]) with
    /// one Automerge call, store the new changes, and write the file. Returns how
    /// many were new.
    pub fn apply_remote(&mut self, envelopes: Vec<Vec<u8>>, now: u64) -> Result<usize> {
        let (changes, vouched) = self.open_envelopes(envelopes)?;
        let mut n = self.apply_vouched(vouched, now)?;
        if let Some(job) = self.begin_remote(changes, now) {
            n += self.finish_remote(job.run(), now)?;
        }
        Ok(n)
    }

    /// Check and open envelopes from a peer: the changes with their envelopes, and
    /// the changes of any snapshot among them (vouched for by the writer that sealed
    /// it, with no envelope of their own). The first refused envelope refuses all.
    pub fn open_envelopes(&mut self, envelopes: Vec<Vec<u8>>) -> Result<OpenedEnvelopes> {
        let mut changes = Vec::with_capacity(envelopes.len());
        let mut vouched = Vec::new();
        for (i, env) in envelopes.into_iter().enumerate() {
            match self.secure.open_remote(&env) {
                Ok(Plain::Change(c)) => changes.push((*c, env)),
                Ok(Plain::Snapshot(bytes)) => {
                    let mut doc =
                        Document::load(&bytes, vec![], self.doc.author().clone(), Default::default())
                            .map_err(|e| {
                                crate::secure::denied(format!("a peer's snapshot does not load: {e}"))
                            })?;
                    vouched.extend(doc.changes_since(&[]));
                }
                Err(e) => return Err(crate::secure::refused(&format!("envelope {i}"), e)),
            }
        }
        Ok((changes, vouched))
    }

    /// Apply changes that came without envelopes of their own (from a snapshot a
    /// writer sealed), then fold them into a snapshot of this device's: nothing on
    /// disk is ever unsealed.
    pub fn apply_remote_vouched(&mut self, changes: Vec<Change>, now: u64) -> Result<usize> {
        self.apply_vouched(changes, now)
    }

    fn apply_vouched(&mut self, changes: Vec<Change>, now: u64) -> Result<usize> {
        let hashes: Vec<_> = changes.iter().map(|c| c.hash()).collect();
        let missing: std::collections::HashSet<ChangeHash> = self.doc.missing(&hashes).into_iter().collect();
        let fresh: Vec<Change> = changes.into_iter().filter(|c| missing.contains(&c.hash())).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let n = fresh.len();
        let job = RemoteApply { detached: self.doc.detach(fresh, now), fresh: Vec::new() };
        self.finish_remote(job.run(), now)?;
        self.compact()?;
        Ok(n)
    }

    /// The first step of [`Self::apply_remote`] for callers that let the document be
    /// edited meanwhile: pick the changes this document lacks and take Automerge out
    /// to apply them ([`RemoteApply::run`], on any thread); `None` when all are known.
    ///
    /// Changes whose dependencies are neither in the document nor among the others
    /// wait (bounded: [`MAX_PARKED`]) until those arrive; Automerge would queue them
    /// without bound.
    pub fn begin_remote(&mut self, changes: Vec<(Change, Vec<u8>)>, now: u64) -> Option<RemoteApply> {
        let mut all = std::mem::take(&mut self.parked);
        all.extend(changes);
        let hashes: Vec<_> = all.iter().map(|(c, _)| c.hash()).collect();
        let missing: std::collections::HashSet<ChangeHash> = self.doc.missing(&hashes).into_iter().collect();
        let mut fresh: Vec<(Change, Vec<u8>)> =
            all.into_iter().filter(|(c, _)| missing.contains(&c.hash())).collect();
        // Ready: every dependency known, or itself ready (a fixpoint over the batch).
        let mut ready: std::collections::HashSet<ChangeHash> = std::collections::HashSet::new();
        loop {
            let before = ready.len();
            for (c, _) in &fresh {
                if !ready.contains(&c.hash())
                    && c.deps().iter().all(|d| {
                        ready.contains(d) || !missing.contains(d) && self.doc.missing(&[*d]).is_empty()
                    })
                {
                    ready.insert(c.hash());
                }
            }
            if ready.len() == before {
                break;
            }
        }
        let (go, mut wait): (Vec<_>, Vec<_>) = fresh.drain(..).partition(|(c, _)| ready.contains(&c.hash()));
        let mut bytes: usize = wait.iter().map(|(_, e)| e.len()).sum();
        while wait.len() > MAX_PARKED || bytes > MAX_PARKED_BYTES {
            let (c, e) = wait.remove(0);
            bytes -= e.len();
            tracing::warn!(file = %self.rel, change = %c.hash(), "dropping a change whose dependencies never came");
        }
        self.parked = wait;
        if go.is_empty() {
            return None;
        }
        let changes: Vec<Change> = go.iter().map(|(c, _)| c.clone()).collect();
        let detached = self.doc.detach(changes, now);
        Some(RemoteApply { detached, fresh: go })
    }

    /// Remote changes waiting for their dependencies.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The last step: put Automerge back, store the new changes, write the file.
    /// Returns how many changes were new.
    pub fn finish_remote(&mut self, job: RemoteApply, now: u64) -> Result<usize> {
        let RemoteApply { detached, fresh } = job;
        self.doc
            .reattach(detached, now)
            .map_err(|e| StoreError::Doc { path: self.file.clone(), source: e })?;
        // Local edits committed to make room for the remote ones go out too.
        let local = self.doc.take_local_changes();
        self.persist_local(&local)?;
        self.persist(fresh.iter().map(|(c, e)| (c, e.clone())))?;
        let n = fresh.len();
        self.file_stale = true;
        if now.saturating_sub(self.last_save_ms) >= REMOTE_SAVE_MS {
            self.save_if_stale(now)?;
        }
        Ok(n)
    }

    /// Write the file if remote changes arrived since it was last written and no local
    /// edit is pending (those are saved when the user saves). True when it wrote.
    pub fn save_if_stale(&mut self, now: u64) -> Result<bool> {
        if !self.file_stale || self.doc.has_pending() {
            return Ok(false);
        }
        self.save(now)?;
        Ok(true)
    }

    /// Local changes stored since the last call, for sending to peers.
    pub fn take_outbox(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
    }

    fn load(
        ws: &Workspace,
        dir: &Path,
        file: PathBuf,
        rel: String,
        author: Author,
        config: DocConfig,
        keys: &Keys,
    ) -> Result<StoredDoc> {
        let blobs = BlobStore::open(&ws.blob_dir())?;
        let (rebuilt, copies) = repair::repair(dir, &rel, &blobs, keys)?;
        for rebuilt in rebuilt {
            tracing::warn!("{rel}: {rebuilt}");
        }
        let state_path = dir.join(STATE);
        let state_bytes = fs::read(&state_path).map_err(StoreError::io(&state_path))?;
        let state: State = serde_json::from_slice(&state_bytes)
            .map_err(|e| StoreError::corrupt(&state_path, format!("unreadable state: {e}")))?;
        let secure = Secure::load(dir, &state.doc_id, keys)?;
        let copies = match copies {
            Some(copies) => copies,
            None => Copies::read(dir)?.0,
        };
        let index_path = dir.join(INDEX);
        let (index, index_bytes) = match Index::read(dir)? {
            Some(found) => found,
            None => migrate_legacy(dir, &state.doc_id, &blobs)?,
        };
        let read_blob = |entry: &IndexEntry, what: &str| -> Result<Vec<u8>> {
            let hash = entry.blob_hash(&index_path)?;
            blobs.get(hash).map_err(|fault| {
                StoreError::corrupt(
                    &index_path,
                    format!(
                        "{what} blob {hash} is {fault}; run `tandem verify {rel}` with a peer connected to repair it"
                    ),
                )
            })
        };
        let unreadable = |what: &str, e: tandem_auth::envelope::EnvelopeError| match e {
            tandem_auth::envelope::EnvelopeError::NoKey(epoch) => secure.no_key(&file, epoch),
            e => StoreError::corrupt(&index_path, format!("{what} does not open: {e}")),
        };
        let not = |what: &str, detail: &str| StoreError::corrupt(&index_path, format!("{what}: {detail}"));
        let snapshot = match &index.snapshot {
            Some(entry) => match secure.open_stored(read_blob(entry, "the snapshot")?) {
                Ok(Plain::Snapshot(bytes)) => bytes,
                Ok(Plain::Change(_)) => return Err(not("the snapshot", "it is a change")),
                Err(e) => return Err(unreadable("the snapshot", e)),
            },
            None => Vec::new(),
        };
        let mut changes = Vec::with_capacity(index.changes.len());
        for entry in &index.changes {
            let what = format!("change blob {}", entry.blob);
            match secure.open_stored(read_blob(entry, "change")?) {
                Ok(Plain::Change(c)) => changes.push(*c),
                Ok(Plain::Snapshot(_)) => return Err(not(&what, "it is not an Automerge change")),
                Err(e) => return Err(unreadable(&what, e)),
            }
        }
        let log_path = dir.join(LOG);
        let (log, contents) = ChangeLog::read(&log_path)?;
        if contents.torn_tail > 0 {
            tracing::warn!(path = %log_path.display(), bytes = contents.torn_tail, "cutting off a torn record left by a crash");
            log.truncate_torn()?;
        }
        let mut pending = Vec::with_capacity(contents.records.len());
        for (i, bytes) in contents.records.into_iter().enumerate() {
            let change = match secure.open_stored(bytes.clone()) {
                Ok(Plain::Change(c)) => *c,
                Ok(Plain::Snapshot(_)) => {
                    return Err(StoreError::corrupt(
                        &log_path,
                        format!("record {i} is not an Automerge change"),
                    ));
                }
                Err(tandem_auth::envelope::EnvelopeError::NoKey(epoch)) => {
                    return Err(secure.no_key(&file, epoch));
                }
                Err(e) => {
                    return Err(StoreError::corrupt(&log_path, format!("record {i} does not open: {e}")));
                }
            };
            pending.push(Pending {
                entry: IndexEntry {
                    change: Some(change.hash().to_string()),
                    blob: blob_hash(&bytes).to_string(),
                    bytes: bytes.len() as u64,
                },
                bytes,
                stored: false,
                put: None,
            });
            changes.push(change);
        }
        let doc = Document::load(&snapshot, changes, author, config)
            .map_err(|e| StoreError::corrupt(&index_path, e.to_string()))?;
        drop(snapshot);
        release_freed_memory();
        Ok(StoredDoc {
            doc,
            file,
            rel,
            dir: dir.to_owned(),
            log,
            state,
            blobs,
            index,
            index_hash: hash_hex(&index_bytes),
            copies,
            pending,
            puts: Default::default(),
            outbox: Vec::new(),
            secure,
            parked: Vec::new(),
            file_stale: false,
            last_save_ms: 0,
        })
    }

    /// Merge the file's current content if it changed since tandem last saved it: the
    /// outside edit (last saved text -> file) is rebased over what the document did
    /// since (last saved text -> document) and applied as a local edit.
    pub fn merge_file(&mut self, file_text: &str, now: u64) -> Result<Opened> {
        if hash_hex(file_text.as_bytes()) == self.state.saved_hash {
            return Ok(Opened::Loaded);
        }
        self.doc.settle();
        let current = self.doc.rope().to_string();
        if current == file_text {
            self.state.saved_hash = hash_hex(file_text.as_bytes());
            self.state.saved_heads = self.doc.heads().iter().map(|h| h.to_string()).collect();
            self.write_state()?;
            return Ok(Opened::Loaded);
        }
        let state_path = self.dir.join(STATE);
        // A rebuilt state does not know what was last saved: the history's text now
        // is the base, so the file's difference from it is the outside edit.
        let base = if self.state.saved_heads.is_empty() && self.state.saved_hash.is_empty() {
            current.clone()
        } else {
            let saved_heads = parse_heads(&state_path, &self.state.saved_heads)?;
            self.doc.text_at(&saved_heads).map_err(|e| StoreError::corrupt(&state_path, e.to_string()))?
        };
        let theirs = tandem_doc::diff(&base, file_text);
        let ours = tandem_doc::diff(&base, &current);
        let edit = theirs.rebase(&ours);
        self.doc.edit(&edit, now).map_err(|e| StoreError::Doc { path: self.file.clone(), source: e })?;
        self.commit(now)?;
        tracing::info!(file = %self.rel, "merged changes made outside tandem");
        Ok(Opened::MergedExternal(edit))
    }

    /// The file's path relative to the workspace root.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The document id (stable for the life of the history).
    pub fn doc_id(&self) -> &str {
        &self.state.doc_id
    }

    /// Heads of the version last written to the plain file.
    pub fn saved_heads(&self) -> &[String] {
        &self.state.saved_heads
    }

    /// True when the document differs from what was last written to the file.
    pub fn is_dirty(&self) -> bool {
        self.doc.has_pending()
            || self.doc.heads().iter().map(|h| h.to_string()).ne(self.state.saved_heads.iter().cloned())
    }

    /// Commit pending edits and append the new local changes to the log, durably.
    pub fn commit(&mut self, now: u64) -> Result<Vec<Change>> {
        let changes = self.doc.commit(now);
        self.persist_local(&changes)?;
        Ok(changes)
    }

    /// Commit if the document's idle window or maximum delay has passed (see
    /// [`tandem_doc::Document::poll_commit`]), appending the change to the log.
    pub fn poll_commit(&mut self, now: u64) -> Result<Vec<Change>> {
        let changes = self.doc.poll_commit(now);
        self.persist_local(&changes)?;
        Ok(changes)
    }

    /// Seal this device's own new changes, store them and queue them for peers.
    fn persist_local(&mut self, changes: &[Change]) -> Result<()> {
        let mut sealed = Vec::with_capacity(changes.len());
        for c in changes {
            sealed.push((c, self.secure.seal_change(c.raw_bytes())?));
        }
        self.outbox.extend(sealed.iter().map(|(_, e)| e.clone()));
        self.persist(sealed)
    }

    /// Append changes, as envelopes, to the log and the blob store (this device's
    /// own, or a peer's that are already in the document).
    fn persist<'c>(&mut self, changes: impl IntoIterator<Item = (&'c Change, Vec<u8>)>) -> Result<()> {
        for (c, envelope) in changes {
            let bytes = &envelope[..];
            self.log.append(bytes)?;
            let hash = blob_hash(bytes);
            // Logged is committed. The blob is a second copy, made now: a damaged
            // log is rebuilt from it (`repair`). (Put at the checkpoint instead, a
            // log damaged before the checkpoint lost its changes.) A keystroke's
            // change goes on the store's thread without a wait, which `finish_puts`
            // collects at the checkpoint (waiting for each, the store's round trip
            // was a fifth of the editor's time replaying seph-blog1). A failed put
            // only means the checkpoint retries it.
            let tag = change_tag(&self.state.doc_id, &hash);
            let (stored, put) = if bytes.len() as u64 <= INLINE_MAX {
                // A bounded queue: the oldest put is waited for first.
                if self.puts.len() >= PUTS_UNDER_WAY {
                    self.finish_oldest_put();
                }
                self.puts.push_back(self.pending.len());
                (false, Some(self.blobs.put_later(tag, bytes.to_vec())))
            } else {
                match self.blobs.put(tag, bytes.to_vec()) {
                    Ok(_) => (true, None),
                    Err(e) => {
                        tracing::warn!(file = %self.rel, "change kept in the log only for now: {e}");
                        (false, None)
                    }
                }
            };
            self.pending.push(Pending {
                entry: IndexEntry {
                    change: Some(c.hash().to_string()),
                    blob: hash.to_string(),
                    bytes: bytes.len() as u64,
                },
                bytes: envelope,
                stored,
                put,
            });
        }
        Ok(())
    }

    /// Make every change written so far durable; call when idle.
    pub fn sync(&mut self) -> Result<()> {
        self.log.sync()?;
        self.checkpoint()?;
        self.compact_if_due()
    }

    /// Move the log's changes into the index: their blobs made durable, the index
    /// rewritten, the log emptied.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.finish_puts();
        // Those not stored yet, in one trip; marked only once all are stored, so a
        // failure leaves them for the next try.
        let unstored: Vec<(String, Vec<u8>)> = self
            .pending
            .iter()
            .filter(|p| !p.stored)
            .map(|p| (change_tag(&self.state.doc_id, &blob_hash(&p.bytes)), p.bytes.clone()))
            .collect();
        self.blobs.put_all(unstored)?;
        for p in &mut self.pending {
            p.stored = true;
        }
        // The copies take the bytes in hand (read back from the store, each was a
        // trip to its thread).
        let fresh: HashMap<BlobHash, Vec<u8>> =
            self.pending.iter().map(|p| (blob_hash(&p.bytes), p.bytes.clone())).collect();
        self.blobs.flush()?;
        for p in self.pending.iter().filter(|p| p.entry.bytes > INLINE_MAX) {
            self.blobs.sync_files(p.entry.blob_hash(&self.dir.join(INDEX))?)?;
        }
        let mut index = self.index.clone();
        index.changes.extend(self.pending.iter().map(|p| p.entry.clone()));
        self.write_index(index, &fresh)?;
        self.pending.clear();
        self.log.clear()
    }

    /// Wait for the change blobs still being put (see `persist`); those that failed
    /// are put again by the checkpoint.
    fn finish_puts(&mut self) {
        while self.finish_oldest_put() {}
    }

    /// Wait for the oldest put under way, if any (false when none is).
    fn finish_oldest_put(&mut self) -> bool {
        let Some(i) = self.puts.pop_front() else { return false };
        let p = &mut self.pending[i];
        let Some(put) = p.put.take() else { return true };
        p.stored = match self.blobs.finish(put) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(file = %self.rel, "change kept in the log only for now: {e}");
                false
            }
        };
        true
    }

    /// Make `index` (whose blobs are in the store) this document's history.
    fn adopt(&mut self, index: Index) -> Result<()> {
        let index_path = self.dir.join(INDEX);
        for entry in index.entries() {
            let hash = entry.blob_hash(&index_path)?;
            let tag = match entry.change {
                None => snapshot_tag(&self.state.doc_id, &hash),
                Some(_) => change_tag(&self.state.doc_id, &hash),
            };
            self.blobs.tag(tag, hash)?;
        }
        self.blobs.flush()?;
        self.write_index(index, &HashMap::new())?;
        self.write_text_cache_now()
    }

    /// The blobs a fresh peer needs, snapshot first: the log is checkpointed first,
    /// and a long tail of changes folded into a new snapshot, so a join is a few
    /// blobs rather than hundreds.
    pub fn history_blobs(&mut self) -> Result<Vec<(BlobHash, u64, bool)>> {
        self.commit(now_ms())?;
        self.checkpoint()?;
        if self.index.changes.len() > SHARE_CHANGES_MAX || self.index.snapshot.is_none() {
            self.compact()?;
        }
        let index_path = self.dir.join(INDEX);
        self.index.entries().map(|e| Ok((e.blob_hash(&index_path)?, e.bytes, e.change.is_none()))).collect()
    }

    /// The blob `hash` in bao form for a peer, if it is part of this history.
    pub fn export_blob(&mut self, hash: BlobHash) -> std::result::Result<Vec<u8>, String> {
        self.finish_puts();
        let hex = hash.to_string();
        let known =
            self.index.entries().any(|e| e.blob == hex) || self.pending.iter().any(|p| p.entry.blob == hex);
        if !known {
            return Err(format!("blob {hex} is not part of this document's history"));
        }
        self.blobs.export_bao(hash).map_err(|fault| format!("blob {hex} is {fault} here"))
    }

    /// `fresh`: blobs just stored, by hash, so the copies need not read them back.
    fn write_index(&mut self, mut index: Index, fresh: &HashMap<BlobHash, Vec<u8>>) -> Result<()> {
        // Its blobs copied first: the copies hold at least what the index names.
        let blobs = &self.blobs;
        self.copies.follow(&index, |h| fresh.get(h).cloned().or_else(|| blobs.get(*h).ok()))?;
        index.version = 1;
        index.heads = self.doc.heads().iter().map(|h| h.to_string()).collect();
        let bytes = serde_json::to_vec_pretty(&index).expect("index serializes");
        write_atomic(&self.dir.join(INDEX), &bytes)?;
        self.index = index;
        self.index_hash = hash_hex(&bytes);
        Ok(())
    }

    /// The blobs that make this document's history (as of the last checkpoint).
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn blob_store(&self) -> &std::sync::Arc<BlobStore> {
        &self.blobs
    }

    /// Commit, then write the plain file atomically and record what it holds.
    pub fn save(&mut self, now: u64) -> Result<()> {
        self.save_text(now)?;
        self.compact_if_due()
    }

    /// Where the history stands on disk now, to go back to if a write fails half
    /// way (see [`Self::rewind`]).
    pub fn restore_point(&mut self) -> Result<RestorePoint> {
        self.log.sync_now()?;
        let files = [self.dir.join(LOG), self.dir.join(INDEX), self.dir.join(STATE), self.file.clone()]
            .into_iter()
            .map(|path| {
                let bytes = fs::read(&path).ok();
                (path, bytes)
            })
            .collect();
        Ok(RestorePoint { files })
    }

    /// Put the history and the file on disk back where `point` found them: the log,
    /// the index, the state and the plain file as they were (a checkpoint may have
    /// emptied the log into a new index, the file may have been replaced). The
    /// caller then opens the document again (what is in memory is ahead of the disk).
    pub fn rewind(&mut self, point: RestorePoint) -> Result<()> {
        self.log.sync().ok();
        for (path, old) in point.files {
            let now = fs::read(&path).ok();
            match old {
                Some(old) if now.as_ref() != Some(&old) => {
                    // Shortening in place needs no space; replacing might.
                    if now.as_ref().is_some_and(|n| n.starts_with(&old)) {
                        let f =
                            fs::OpenOptions::new().write(true).open(&path).map_err(StoreError::io(&path))?;
                        f.set_len(old.len() as u64)
                            .and_then(|()| f.sync_all())
                            .map_err(StoreError::io(&path))?;
                    } else {
                        write_atomic(&path, &old)?;
                    }
                }
                None if now.is_some() => fs::remove_file(&path).map_err(StoreError::io(&path))?,
                _ => {}
            }
        }
        self.forget_unlisted()
    }

    /// After a [`Self::rewind`]: let go of the blobs of changes that are no longer in
    /// the history on disk (put before the write failed; opening would otherwise
    /// take them for lost records and bring them back), and collect them: a full
    /// disk gets its space back at once.
    fn forget_unlisted(&self) -> Result<()> {
        let mut keep: std::collections::HashSet<BlobHash> =
            ChangeLog::read_intact(&self.dir.join(LOG))?.iter().map(|r| blob_hash(r)).collect();
        if let Ok(Some((index, _))) = Index::read(&self.dir) {
            keep.extend(index.changes.iter().filter_map(|e| e.blob.parse::<BlobHash>().ok()));
        }
        self.blobs.untag_except(format!("{}/c/", self.state.doc_id), keep)?;
        self.blobs.remove_stale_temp();
        self.blobs.gc().map(drop)
    }

    /// [`Self::save`] without the compaction after it: the text is in history and
    /// in the file when this returns.
    pub fn save_text(&mut self, now: u64) -> Result<()> {
        self.file_stale = false;
        self.last_save_ms = now;
        self.commit(now)?;
        self.log.sync()?;
        self.checkpoint()?;
        // A peer's keystrokes shown ahead of their change are not history yet: the
        // file gets Automerge's text, and the screen keeps showing them. (Taking them
        // off to save dropped every typist's unconfirmed keys at each save after a
        // remote change: their later keys, which name the dropped ones, then waited
        // for the change, up to 2 s.)
        let text = self.doc.committed_text();
        write_atomic(&self.file, text.as_bytes())?;
        self.state.saved_hash = hash_hex(text.as_bytes());
        self.state.saved_heads = self.doc.heads().iter().map(|h| h.to_string()).collect();
        self.state.saved_key = Some(self.key());
        self.write_state()
    }

    /// Compact when enough changes follow the snapshot (see [`COMPACT_RECORDS`]).
    fn compact_if_due(&mut self) -> Result<()> {
        let since_snapshot: u64 = self.index.changes.iter().map(|e| e.bytes).sum();
        let snapshot_len = self.index.snapshot.as_ref().map_or(0, |e| e.bytes);
        if self.index.changes.len() >= COMPACT_RECORDS
            || (since_snapshot >= COMPACT_BYTES && since_snapshot > snapshot_len / 2)
        {
            self.compact()?;
        }
        Ok(())
    }

    fn write_state(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        write_atomic(&self.dir.join(STATE), &bytes)
    }

    /// Fold the history into a new snapshot blob: the blob is put and flushed, the
    /// index replaced (snapshot, no changes), the log emptied; then the tags of the
    /// old snapshot and the folded changes are dropped. A crash before the index is
    /// replaced leaves the old history, whole; one after it, the new.
    pub fn compact(&mut self) -> Result<()> {
        // A put finishing after the tags are dropped below would tag its blob again.
        self.finish_puts();
        // Nothing new since the snapshot, sealed with the current key: a new one
        // would differ only in its nonce, and leave the old one to collect.
        let epoch = self.secure.members().epoch;
        let heads: Vec<String> = self.doc.heads().iter().map(|h| h.to_string()).collect();
        if self.index.snapshot.is_some()
            && self.index.changes.is_empty()
            && self.pending.is_empty()
            && self.index.heads == heads
            && self.index.epoch == Some(epoch)
        {
            return Ok(());
        }
        let bytes = self.secure.seal_snapshot(&self.doc.save(now_ms()))?;
        let doc_id = self.state.doc_id.clone();
        let len = bytes.len() as u64;
        let blob = self.blobs.put(snapshot_tag(&doc_id, &blob_hash(&bytes)), bytes.clone())?;
        let fresh = HashMap::from([(blob, bytes)]);
        self.blobs.flush()?;
        // Durable before the index names it and the old snapshot is let go.
        self.blobs.sync_files(blob)?;
        let index = Index {
            version: 1,
            snapshot: Some(IndexEntry { change: None, blob: blob.to_string(), bytes: len }),
            changes: Vec::new(),
            heads: Vec::new(),
            epoch: Some(epoch),
        };
        self.write_index(index, &fresh)?;
        self.pending.clear();
        self.log.clear()?;
        self.blobs.untag_except(format!("{doc_id}/s/"), [blob].into())?;
        self.blobs.untag_except(format!("{doc_id}/c/"), Default::default())?;
        // What the snapshot replaced goes now, so the store stays near one snapshot plus
        // the changes since (the database file keeps its largest size otherwise).
        self.blobs.gc_soon();
        if self.state.saved_key.is_some() && !self.is_dirty() {
            // The file still shows this history: it is the first screen, and a text
            // cache would only repeat it (the document's size again, on disk).
            self.state.saved_key = Some(self.key());
            self.write_state()?;
            return match fs::remove_file(self.dir.join(CACHE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StoreError::Io { path: self.dir.join(CACHE), source: e })
                }
                _ => Ok(()),
            };
        }
        self.write_text_cache_now()
    }

    fn key(&self) -> CacheKey {
        CacheKey { index: self.index_hash.clone(), log_len: self.log.len_bytes() }
    }

    /// Keep `answer` (what `tandem info` or `log` printed, `kind`) for the next time
    /// the same is asked of the same history and file: a long history takes seconds
    /// and gigabytes to load. Kept only while the file is as saved at this state.
    pub fn keep_answer(&self, kind: &str, answer: &Value) -> Result<()> {
        // The file must hold this state's text (what was saved, nothing typed since).
        if self.is_dirty() || self.state.saved_hash.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(answer).expect("answers serialize");
        let header =
            AnswerHeader { key: self.key(), file: self.state.saved_hash.clone(), body: hash_hex(&body) };
        let mut out = serde_json::to_vec(&header).expect("header serializes");
        out.push(b'\n');
        out.extend_from_slice(&body);
        write_atomic(&self.dir.join(format!("{kind}.cache")), &out)
    }

    fn write_text_cache_now(&self) -> Result<()> {
        let text = self.doc.committed_text();
        let header = CacheHeader { key: self.key(), text: hash_hex(text.as_bytes()) };
        let mut out = serde_json::to_vec(&header).expect("header serializes");
        out.push(b'\n');
        out.extend_from_slice(text.as_bytes());
        write_atomic(&self.dir.join(CACHE), &out)
    }

    /// Remember the current text for the next [`first_screen`] (call when closing
    /// with unsaved changes; a saved document's file already serves).
    pub fn write_text_cache(&mut self, now: u64) -> Result<()> {
        self.doc.settle();
        self.commit(now)?;
        self.write_text_cache_now()
    }

    /// The group and keys of this document.
    pub fn secure(&self) -> &Secure {
        &self.secure
    }

    pub fn secure_mut(&mut self) -> &mut Secure {
        &mut self.secure
    }

    /// The envelopes a peer that has `known` lacks, oldest first: each change's own
    /// envelope while the change still has one (it follows the snapshot); once any
    /// of them was folded into a snapshot, a fresh snapshot of this device's instead,
    /// which a peer takes only from a writer.
    pub fn envelopes_since(&mut self, known: &[ChangeHash]) -> Result<Vec<Vec<u8>>> {
        let needed = self.doc.changes_since(known);
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        let index_path = self.dir.join(INDEX);
        let mut by_change: std::collections::HashMap<String, (&IndexEntry, Option<&Vec<u8>>)> = self
            .index
            .changes
            .iter()
            .map(|e| (e, None))
            .chain(self.pending.iter().map(|p| (&p.entry, Some(&p.bytes))))
            .filter_map(|(e, bytes)| Some((e.change.clone()?, (e, bytes))))
            .collect();
        let mut out = Vec::with_capacity(needed.len());
        for c in &needed {
            let Some((entry, in_hand)) = by_change.remove(&c.hash().to_string()) else {
                out.clear();
                break;
            };
            match in_hand {
                Some(bytes) => out.push(bytes.clone()),
                None => {
                    let hash = entry.blob_hash(&index_path)?;
                    out.push(self.blobs.get(hash).map_err(|fault| {
                        StoreError::corrupt(&index_path, format!("change blob {hash} is {fault}"))
                    })?);
                }
            }
        }
        if out.len() == needed.len() {
            return Ok(out);
        }
        // Folded already: send the whole document, sealed by this device.
        self.secure.seal_snapshot(&self.doc.save(now_ms())).map(|s| vec![s])
    }

    /// Bytes of history: the blobs the index names, plus the log.
    pub fn stored_bytes(&self) -> u64 {
        self.index.entries().map(|e| e.bytes).sum::<u64>() + self.log.len_bytes()
    }

    /// Re-hash every blob of this document's history (index and log). Returns the
    /// blobs that are missing or corrupt; an empty list means the history is whole.
    pub fn verify(&self) -> Result<Vec<BadBlob>> {
        verify_index(&self.dir, &self.blobs, &self.index)
    }
}

/// Give memory freed by a document load back to the OS. Loading a long history
/// allocates many times the document's live size (74 MB of RSS for the
/// automerge-paper document, 6 MB once returned); glibc would otherwise keep it
/// for the life of the editor.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it has no
    // preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The text of `file` as its history last recorded it, read without loading
/// Automerge, for drawing the first screen at once: the plain file when it still
/// shows the history's latest state, else the text cache if that is current. `None`
/// when neither is (then the caller loads the document normally).
pub fn first_screen(ws: &Workspace, file: &Path) -> Result<Option<String>> {
    let rel = ws.relative(file)?;
    let dir = ws.doc_dir(&rel);
    let Some(current) = CacheKey::on_disk(&dir) else { return Ok(None) };
    let state: Option<State> = fs::read(dir.join(STATE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(state) = state.filter(|s| s.saved_key.as_ref() == Some(&current))
        && let Ok(bytes) = fs::read(ws.root().join(&rel))
        && hash_hex(&bytes) == state.saved_hash
    {
        return Ok(String::from_utf8(bytes).ok());
    }
    Ok(read_cache(&dir, &current))
}

/// The text cache of the history in `dir` when it shows the state `current` and its
/// text is intact (a damaged cache is only not used).
fn read_cache(dir: &Path, current: &CacheKey) -> Option<String> {
    let cache = fs::read(dir.join(CACHE)).ok()?;
    let nl = cache.iter().position(|&b| b == b'\n')?;
    let header: CacheHeader = serde_json::from_slice(&cache[..nl]).ok()?;
    let text = &cache[nl + 1..];
    (header.key == *current && hash_hex(text) == header.text)
        .then(|| String::from_utf8(text.to_vec()).ok())?
}

/// The text of `file`'s history when it can be known without loading the history:
/// the file is as tandem last wrote it (no outside edit to merge) and either it or
/// the text cache shows the history's latest state. `None` otherwise (then load).
/// `tandem cat` of a 20 MB document answers from here in milliseconds, for a
/// device that may read it.
pub fn current_text(ws: &Workspace, file: &Path, keys: &Keys) -> Option<String> {
    let (rel, dir, current) = unloaded(ws, file, keys)?;
    let state: State = serde_json::from_slice(&fs::read(dir.join(STATE)).ok()?).ok()?;
    let bytes = fs::read(ws.root().join(&rel)).ok()?;
    if hash_hex(&bytes) != state.saved_hash {
        return None;
    }
    if state.saved_key.as_ref() == Some(&current) {
        return String::from_utf8(bytes).ok();
    }
    read_cache(&dir, &current)
}

/// A blob of a history that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadBlob {
    pub blob: String,
    /// "snapshot" or the change hash.
    pub what: String,
    pub fault: String,
}

/// The blobs of the history in `dir` that are missing or corrupt, read from disk
/// (no Automerge load, so a history that no longer loads can still be checked).
/// Also returns how many blobs were checked, and the tag each bad one belongs under.
/// Check every file of the history of `rel` in `dir` and rebuild what is damaged
/// from what is intact (see the `repair` module): a sentence for each rebuilt file.
pub(crate) fn repair_dir(dir: &Path, rel: &str, blobs: &BlobStore, keys: &Keys) -> Result<Vec<String>> {
    repair::repair(dir, rel, blobs, keys).map(|(rebuilt, _)| rebuilt)
}

pub(crate) fn verify_dir(dir: &Path, blobs: &BlobStore) -> Result<(usize, Vec<(BadBlob, String)>)> {
    let index_path = dir.join(INDEX);
    let Some((index, _)) = Index::read(dir)? else {
        if dir.join(LEGACY_SNAPSHOT).exists() {
            // From before the blob store: moved in when the document is next opened.
            return Ok((0, Vec::new()));
        }
        return Err(StoreError::corrupt(&index_path, "the index is missing"));
    };
    let state_path = dir.join(STATE);
    let state_bytes = fs::read(&state_path).map_err(StoreError::io(&state_path))?;
    let state: State = serde_json::from_slice(&state_bytes)
        .map_err(|e| StoreError::corrupt(&state_path, format!("unreadable state: {e}")))?;
    // The log is checked too: its records carry their own checksums.
    ChangeLog::read(&dir.join(LOG))?;
    let bad = verify_index(dir, blobs, &index)?
        .into_iter()
        .map(|b| {
            let hash: BlobHash = b.blob.parse().expect("checked by verify_index");
            let tag = if b.what == "snapshot" {
                snapshot_tag(&state.doc_id, &hash)
            } else {
                change_tag(&state.doc_id, &hash)
            };
            (b, tag)
        })
        .collect();
    Ok((index.entries().count(), bad))
}

/// The workspace-relative path of the document of `ws` whose id is `doc_id`.
/// The document id of `file`'s history in `ws`, read without loading it; `None`
/// when the file has no history (or it cannot be read).
pub fn doc_id_of(ws: &Workspace, file: &Path) -> Option<String> {
    let rel = ws.relative(file).ok()?;
    let bytes = fs::read(ws.doc_dir(&rel).join(STATE)).ok()?;
    serde_json::from_slice::<State>(&bytes).ok().map(|s| s.doc_id)
}

/// What a closed history says of its file without loading it: the document id, the
/// BLAKE3 (hex) of the text tandem last wrote or read there, and the heads then.
pub(crate) fn saved_state(ws: &Workspace, rel: &str) -> Option<(String, String, Vec<String>)> {
    let bytes = fs::read(ws.doc_dir(rel).join(STATE)).ok()?;
    let state = serde_json::from_slice::<State>(&bytes).ok()?;
    Some((state.doc_id, state.saved_hash, state.saved_heads))
}

/// Where the histories of deleted documents go when their path is taken by another
/// document (outside `docs/`, which holds only the histories of live paths).
pub(crate) const SET_ASIDE: &str = "deleted";

/// Move the closed history of `from` to `to`: the file was renamed, and the document
/// keeps its identity and history. A history already at `to` (a deleted document's)
/// is set aside in `.tandem/deleted/` first, never overwritten. The directory moves
/// before its state names the new path: a crash between the two leaves a directory
/// named after the new path, which [`documents`] resolves by the file found there.
pub(crate) fn relocate(ws: &Workspace, from: &str, to: &str) -> Result<()> {
    let (old, new) = (ws.doc_dir(from), ws.doc_dir(to));
    if old == new || !old.exists() {
        return Ok(());
    }
    if new.exists() {
        let aside = ws.store_dir().join(SET_ASIDE);
        fs::create_dir_all(&aside).map_err(StoreError::io(&aside))?;
        let name = new.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = aside.join(format!("{name}-{}", now_ms()));
        fs::rename(&new, &target).map_err(StoreError::io(&new))?;
    }
    // Answers cached for the old path would name it.
    for kind in ["info", "log"] {
        let _ = fs::remove_file(old.join(format!("{kind}.cache")));
    }
    fs::rename(&old, &new).map_err(StoreError::io(&old))?;
    crate::fsutil::sync_dir(new.parent().unwrap_or(&new))?;
    let state_path = new.join(STATE);
    let bytes = fs::read(&state_path).map_err(StoreError::io(&state_path))?;
    let mut state: State = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::corrupt(&state_path, format!("unreadable state: {e}")))?;
    state.path = to.to_owned();
    write_atomic(&state_path, &serde_json::to_vec_pretty(&state).expect("state serializes"))
}

fn document_with_id(ws: &Workspace, doc_id: &str) -> Result<Option<String>> {
    let Ok(entries) = fs::read_dir(ws.store_dir().join("docs")) else { return Ok(None) };
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join(STATE)) else { continue };
        if let Ok(state) = serde_json::from_slice::<State>(&bytes)
            && state.doc_id == doc_id
        {
            return Ok(Some(state.path));
        }
    }
    Ok(None)
}

/// The workspace-relative paths of every document with a history in `ws`.
pub(crate) fn documents(ws: &Workspace) -> Result<Vec<String>> {
    let docs = ws.store_dir().join("docs");
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&docs) else { return Ok(out) };
    for entry in entries.flatten() {
        let state_path = entry.path().join(STATE);
        let state = fs::read(&state_path).ok().and_then(|b| serde_json::from_slice::<State>(&b).ok());
        match state {
            Some(state) if ws.doc_dir(&state.path) == entry.path() => out.push(state.path),
            // A damaged state.json: the directory is named after the file's path.
            _ => match path_of_dir(ws, &entry.path()) {
                Some(rel) => out.push(rel),
                None if entry.path().join(INDEX).exists() || state_path.exists() => {
                    return Err(StoreError::corrupt(
                        &state_path,
                        "damaged, and no file of this workspace has this history: was it moved? Open it by its path",
                    ));
                }
                None => {}
            },
        }
    }
    out.sort();
    Ok(out)
}

/// The workspace path whose history lives in `dir` (directories are named after
/// the BLAKE3 of the path), found by looking at the workspace's files.
fn path_of_dir(ws: &Workspace, dir: &Path) -> Option<String> {
    let want = dir.file_name()?.to_string_lossy().into_owned();
    let mut stack = vec![ws.root().to_owned()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            seen += 1;
            if seen > 100_000 {
                return None;
            }
            let p = e.path();
            if p.file_name().is_some_and(|n| n == crate::STORE_DIR) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = ws.relative(&p)
                && ws.doc_dir(&rel).file_name().is_some_and(|n| n.to_string_lossy() == want)
            {
                return Some(rel);
            }
        }
    }
    None
}

fn verify_index(dir: &Path, blobs: &BlobStore, index: &Index) -> Result<Vec<BadBlob>> {
    let index_path = dir.join(INDEX);
    let mut bad = Vec::new();
    for entry in index.entries() {
        let hash = entry.blob_hash(&index_path)?;
        if let Err(fault) = blobs.get(hash) {
            bad.push(BadBlob {
                blob: entry.blob.clone(),
                what: entry.change.clone().unwrap_or_else(|| "snapshot".into()),
                fault: fault.to_string(),
            });
        }
    }
    Ok(bad)
}

/// Move a history from before the blob store (`snapshot.am`) into it.
fn migrate_legacy(dir: &Path, doc_id: &str, blobs: &BlobStore) -> Result<(Index, Vec<u8>)> {
    let legacy = dir.join(LEGACY_SNAPSHOT);
    let bytes = fs::read(&legacy).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::corrupt(&dir.join(INDEX), "the index is missing"),
        _ => StoreError::Io { path: legacy.clone(), source: e },
    })?;
    let len = bytes.len() as u64;
    let blob = blobs.put(snapshot_tag(doc_id, &blob_hash(&bytes)), bytes)?;
    blobs.flush()?;
    let index = Index {
        version: 1,
        snapshot: Some(IndexEntry { change: None, blob: blob.to_string(), bytes: len }),
        changes: Vec::new(),
        heads: Vec::new(),
        // Unsealed (from before envelopes): the next compaction seals it.
        epoch: None,
    };
    let index_bytes = serde_json::to_vec_pretty(&index).expect("index serializes");
    write_atomic(&dir.join(INDEX), &index_bytes)?;
    fs::remove_file(&legacy).map_err(StoreError::io(&legacy))?;
    tracing::info!(dir = %dir.display(), "moved the history into the blob store");
    Ok((index, index_bytes))
}
