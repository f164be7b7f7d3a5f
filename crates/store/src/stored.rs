//! A document with its history on disk: `.tandem/docs/<key>/`.
//!
//! - `snapshot.am`: the whole Automerge document as of the last compaction;
//! - `changes.log`: every change committed since, one checksummed record each
//!   (see [`crate::changelog`]), appended and fsynced at commit;
//! - `state.json`: document id, the file's path, and what was last saved to the
//!   plain file (its BLAKE3 hash and the heads it showed);
//! - `text.cache`: the text at the latest snapshot+log state, so the first screen
//!   can be drawn before Automerge has loaded.
//!
//! Every file but the log is replaced atomically, and the log only grows by whole
//! records, so a crash at any moment loses at most the uncommitted edits.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_doc::{Author, Change, ChangeHash, ChangeSet, DocConfig, Document};

use crate::changelog::ChangeLog;
use crate::error::{Result, StoreError};
use crate::fsutil::{read_text, write_atomic};
use crate::workspace::Workspace;

const SNAPSHOT: &str = "snapshot.am";
const LOG: &str = "changes.log";
const STATE: &str = "state.json";
const CACHE: &str = "text.cache";
/// Compact once this many changes sit in the log...
const COMPACT_RECORDS: usize = 512;
/// ...or the log has grown past this many bytes and past the snapshot's size.
const COMPACT_BYTES: u64 = 256 << 10;

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
    snapshot: String,
    log_len: u64,
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

/// Remote changes being applied with Automerge out of the document (see
/// [`StoredDoc::begin_remote`]).
pub struct RemoteApply {
    detached: tandem_doc::Detached,
    fresh: Vec<Change>,
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
}

/// A document plus its on-disk history. Only the workspace owner may hold one.
pub struct StoredDoc {
    pub doc: Document,
    file: PathBuf,
    rel: String,
    dir: PathBuf,
    log: ChangeLog,
    state: State,
    snapshot_len: u64,
    snapshot_hash: String,
    /// Local changes stored but not yet handed to the network ([`Self::take_outbox`]).
    outbox: Vec<Change>,
    /// Remote changes arrived since the file was last written (see [`Self::save_if_stale`]).
    file_stale: bool,
    last_save_ms: u64,
}

/// Remote changes are written to the file at most this often (each write is an
/// atomic replace with three fsyncs; 16 peers typing at once made ~80 a second).
const REMOTE_SAVE_MS: u64 = 200;

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
    ) -> Result<(StoredDoc, Opened)> {
        let rel = ws.relative(file)?;
        let file = ws.root().join(&rel);
        let text = match read_text(&file) {
            Err(StoreError::NotFound(_)) if create => None,
            other => Some(other?),
        };
        ws.ensure()?;
        let dir = ws.doc_dir(&rel);
        let now = now_ms();
        if !dir.join(STATE).exists() {
            let content = text.unwrap_or_default();
            let doc = Document::with_text(author, config, &content, now);
            let doc_id =
                hash_hex(format!("{rel}\0{now}\0{:?}", doc.author().actor).as_bytes())[..32].to_owned();
            let stored = Self::create(file, rel, dir, doc, doc_id, &content)?;
            return Ok((stored, Opened::Created));
        }
        let mut stored = Self::load(&dir, file, rel, author, config)?;
        let opened = match text {
            Some(text) => stored.merge_file(&text, now)?,
            None => Opened::Loaded,
        };
        Ok((stored, opened))
    }

    /// Write the history of a new document whose file holds `saved` (snapshot first,
    /// then the state that makes it count).
    fn create(
        file: PathBuf,
        rel: String,
        dir: PathBuf,
        doc: Document,
        doc_id: String,
        saved: &str,
    ) -> Result<StoredDoc> {
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let (log, _) = ChangeLog::read(&dir.join(LOG))?;
        let state = State {
            version: 1,
            doc_id,
            path: rel.clone(),
            saved_hash: hash_hex(saved.as_bytes()),
            saved_heads: doc.heads().iter().map(|h| h.to_string()).collect(),
            saved_key: None,
        };
        let mut stored = StoredDoc {
            doc,
            file,
            rel,
            dir,
            log,
            state,
            snapshot_len: 0,
            snapshot_hash: String::new(),
            outbox: Vec::new(),
            file_stale: false,
            last_save_ms: 0,
        };
        stored.log.clear()?;
        stored.compact()?;
        stored.write_state()?;
        Ok(stored)
    }

    /// Open `file` as a copy of the shared document `doc_id` as a peer sent it for a
    /// fresh join. When the workspace already holds that document, the peer's
    /// changes are merged into it; a different document there is an error. The file
    /// is written. The caller must own the workspace.
    pub fn join(
        ws: &Workspace,
        file: &Path,
        doc_id: &str,
        shared: Shared,
        author: Author,
        config: DocConfig,
    ) -> Result<StoredDoc> {
        let rel = ws.relative(file)?;
        let file = ws.root().join(&rel);
        ws.ensure()?;
        let dir = ws.doc_dir(&rel);
        let now = now_ms();
        let mut stored = if dir.join(STATE).exists() {
            let mut stored = Self::load(&dir, file.clone(), rel, author.clone(), config.clone())?;
            if stored.doc_id() != doc_id {
                return Err(StoreError::BadRequest(format!(
                    "{}: this file already has the history of another document ({}); join into another directory",
                    file.display(),
                    stored.doc_id()
                )));
            }
            let changes = match shared {
                Shared::Changes(changes) => changes,
                Shared::Snapshot(bytes) => { Document::load(&bytes, vec![], author, config) }
                    .map_err(|e| StoreError::Doc { path: file.clone(), source: e })?
                    .changes_since(&[]),
            };
            stored.apply_remote(changes, now)?;
            stored
        } else {
            if file.exists() {
                return Err(StoreError::BadRequest(format!(
                    "{}: a file of that name exists and is not this shared document; join into another directory",
                    file.display()
                )));
            }
            let doc = match shared {
                Shared::Changes(changes) => Document::from_changes(changes, author, config),
                Shared::Snapshot(bytes) => Document::load(&bytes, vec![], author, config),
            }
            .map_err(|e| StoreError::Doc { path: file.clone(), source: e })?;
            Self::create(file, rel, dir, doc, doc_id.to_owned(), "")?
        };
        stored.save(now)?;
        Ok(stored)
    }

    /// The whole document in Automerge's compact form (what a fresh peer is sent).
    pub fn snapshot(&mut self, now: u64) -> Vec<u8> {
        self.doc.save(now)
    }

    /// Apply changes from a peer with one Automerge call, store the new ones, and
    /// write the file. Returns how many were new.
    pub fn apply_remote(&mut self, changes: Vec<Change>, now: u64) -> Result<usize> {
        match self.begin_remote(changes, now) {
            Some(job) => self.finish_remote(job.run(), now),
            None => Ok(0),
        }
    }

    /// The first step of [`Self::apply_remote`] for callers that let the document be
    /// edited meanwhile: pick the changes this document lacks and take Automerge out
    /// to apply them ([`RemoteApply::run`], on any thread); `None` when all are known.
    pub fn begin_remote(&mut self, changes: Vec<Change>, now: u64) -> Option<RemoteApply> {
        let fresh: Vec<Change> = {
            let hashes: Vec<_> = changes.iter().map(|c| c.hash()).collect();
            let missing = self.doc.missing(&hashes);
            changes.into_iter().filter(|c| missing.contains(&c.hash())).collect()
        };
        if fresh.is_empty() {
            return None;
        }
        let detached = self.doc.detach(fresh.clone(), now);
        Some(RemoteApply { detached, fresh })
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
        self.persist(&local)?;
        self.outbox.extend(local);
        self.persist(&fresh)?;
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
    pub fn take_outbox(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.outbox)
    }

    fn load(dir: &Path, file: PathBuf, rel: String, author: Author, config: DocConfig) -> Result<StoredDoc> {
        let state_path = dir.join(STATE);
        let state_bytes = fs::read(&state_path).map_err(StoreError::io(&state_path))?;
        let state: State = serde_json::from_slice(&state_bytes)
            .map_err(|e| StoreError::corrupt(&state_path, format!("unreadable state: {e}")))?;
        let snap_path = dir.join(SNAPSHOT);
        let snapshot = fs::read(&snap_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::corrupt(&snap_path, "the snapshot is missing"),
            _ => StoreError::Io { path: snap_path.clone(), source: e },
        })?;
        let log_path = dir.join(LOG);
        let (log, contents) = ChangeLog::read(&log_path)?;
        if contents.torn_tail > 0 {
            tracing::warn!(path = %log_path.display(), bytes = contents.torn_tail, "cutting off a torn record left by a crash");
            log.truncate_torn()?;
        }
        let changes = contents
            .records
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| {
                Change::from_bytes(bytes).map_err(|e| {
                    StoreError::corrupt(&log_path, format!("record {i} is not an Automerge change: {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let doc = Document::load(&snapshot, changes, author, config)
            .map_err(|e| StoreError::corrupt(&snap_path, e.to_string()))?;
        release_freed_memory();
        Ok(StoredDoc {
            doc,
            file,
            rel,
            dir: dir.to_owned(),
            log,
            state,
            snapshot_len: snapshot.len() as u64,
            snapshot_hash: hash_hex(&snapshot),
            outbox: Vec::new(),
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
        let saved_heads = parse_heads(&state_path, &self.state.saved_heads)?;
        let base =
            self.doc.text_at(&saved_heads).map_err(|e| StoreError::corrupt(&state_path, e.to_string()))?;
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
        self.persist(&changes)?;
        self.outbox.extend(changes.iter().cloned());
        Ok(changes)
    }

    /// Commit if the document's idle window or maximum delay has passed (see
    /// [`tandem_doc::Document::poll_commit`]), appending the change to the log.
    pub fn poll_commit(&mut self, now: u64) -> Result<Vec<Change>> {
        let changes = self.doc.poll_commit(now);
        self.persist(&changes)?;
        self.outbox.extend(changes.iter().cloned());
        Ok(changes)
    }

    /// Append changes to the log (local ones from [`Self::commit`], or changes that
    /// arrived from elsewhere and are already in the document).
    pub fn persist(&mut self, changes: &[Change]) -> Result<()> {
        for c in changes {
            self.log.append(c.raw_bytes())?;
        }
        Ok(())
    }

    /// Make every change written so far durable (fsync); call when idle.
    pub fn sync(&mut self) -> Result<()> {
        self.log.sync()
    }

    /// Commit, then write the plain file atomically and record what it holds.
    pub fn save(&mut self, now: u64) -> Result<()> {
        self.file_stale = false;
        self.last_save_ms = now;
        // A peer's keystrokes shown ahead of their change are not history yet.
        self.doc.settle();
        self.commit(now)?;
        self.log.sync()?;
        let text = self.doc.rope().to_string();
        write_atomic(&self.file, text.as_bytes())?;
        self.state.saved_hash = hash_hex(text.as_bytes());
        self.state.saved_heads = self.doc.heads().iter().map(|h| h.to_string()).collect();
        self.state.saved_key = Some(self.key());
        self.write_state()?;
        if self.log.records() >= COMPACT_RECORDS
            || (self.log.len_bytes() >= COMPACT_BYTES && self.log.len_bytes() > self.snapshot_len)
        {
            self.compact()?;
        }
        Ok(())
    }

    fn write_state(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        write_atomic(&self.dir.join(STATE), &bytes)
    }

    /// Fold the log into a new snapshot: snapshot first (atomically), then the log is
    /// emptied. A crash in between only means the log's changes are applied twice on
    /// the next load, which Automerge ignores.
    pub fn compact(&mut self) -> Result<()> {
        let bytes = self.doc.save(now_ms());
        write_atomic(&self.dir.join(SNAPSHOT), &bytes)?;
        self.log.clear()?;
        self.snapshot_len = bytes.len() as u64;
        self.snapshot_hash = hash_hex(&bytes);
        if self.state.saved_key.is_some() && !self.is_dirty() {
            // The file still shows this history: keep it usable as the first screen.
            self.state.saved_key = Some(self.key());
            self.write_state()?;
        }
        self.write_text_cache_now()
    }

    fn key(&self) -> CacheKey {
        CacheKey { snapshot: self.snapshot_hash.clone(), log_len: self.log.len_bytes() }
    }

    fn write_text_cache_now(&self) -> Result<()> {
        let mut out = serde_json::to_vec(&self.key()).expect("key serializes");
        out.push(b'\n');
        out.extend_from_slice(self.doc.rope().to_string().as_bytes());
        write_atomic(&self.dir.join(CACHE), &out)
    }

    /// Remember the current text for the next [`first_screen`] (call when closing
    /// with unsaved changes; a saved document's file already serves).
    pub fn write_text_cache(&mut self, now: u64) -> Result<()> {
        self.doc.settle();
        self.commit(now)?;
        self.write_text_cache_now()
    }

    /// Bytes of history on disk (snapshot + log).
    pub fn stored_bytes(&self) -> u64 {
        self.snapshot_len + self.log.len_bytes()
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
    let Ok(snapshot) = fs::read(dir.join(SNAPSHOT)) else { return Ok(None) };
    let current = CacheKey {
        snapshot: hash_hex(&snapshot),
        log_len: fs::metadata(dir.join(LOG)).map_or(0, |m| m.len()),
    };
    let state: Option<State> = fs::read(dir.join(STATE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(state) = state.filter(|s| s.saved_key.as_ref() == Some(&current))
        && let Ok(bytes) = fs::read(ws.root().join(&rel))
        && hash_hex(&bytes) == state.saved_hash
    {
        return Ok(String::from_utf8(bytes).ok());
    }
    let Ok(cache) = fs::read(dir.join(CACHE)) else { return Ok(None) };
    let Some(nl) = cache.iter().position(|&b| b == b'\n') else { return Ok(None) };
    match serde_json::from_slice::<CacheKey>(&cache[..nl]) {
        Ok(key) if key == current => Ok(String::from_utf8(cache[nl + 1..].to_vec()).ok()),
        _ => Ok(None),
    }
}
