//! The workspace's content-addressed blob store: `.tandem/blobs/`, an iroh-blobs
//! `FsStore` (BLAKE3 hashes, redb metadata, small blobs inline, large ones as files
//! with a bao outboard).
//!
//! Every committed change and every compacted snapshot of every document is a blob
//! here, named by a tag (`<doc id>/c/<blob>` for a change, `<doc id>/s/<blob>` for a
//! snapshot). A document's `index.json` says which of them make its history (see
//! [`crate::stored`]); [`BlobStore::gc`] drops blobs that no tag names any more.
//!
//! The store has its own tokio runtime (iroh-blobs starts it), so these calls are
//! plain blocking functions: they hand the work to that runtime and wait on a std
//! channel, which is safe from any thread, including another runtime's worker.
//!
//! Reads are never trusted: [`BlobStore::get`] re-hashes what it read and reports a
//! blob whose bytes don't match its hash as corrupt, by name.
//!
//! Nor is the database: every open checks it page by page (redb's integrity check,
//! a few milliseconds), and a damaged one is moved aside (`blobs.db.damaged`) for a
//! new, empty one. Nothing is lost with it: every document keeps a second copy of
//! the blobs its history names (see `stored::copies`), which puts them back with
//! their tags when the document is next opened or verified.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use iroh_blobs::api::blobs::BlobStatus;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::fs::options::Options;
use iroh_blobs::store::{GcConfig, ProtectOutcome};
use iroh_blobs::{BlobFormat, Hash, HashAndFormat};

use crate::error::{Result, StoreError};

/// A blob's BLAKE3 hash (the same as its iroh-blobs hash).
pub type BlobHash = Hash;

/// The hash of `bytes`, computed here (no store needed).
pub fn blob_hash(bytes: &[u8]) -> BlobHash {
    Hash::new(bytes)
}

/// What reading a blob found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFault {
    /// The store has no (complete) copy.
    Missing,
    /// The stored bytes hash to something else.
    Corrupt,
}

impl std::fmt::Display for BlobFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobFault::Missing => "missing",
            BlobFault::Corrupt => "corrupt (its bytes do not match its BLAKE3 hash)",
        })
    }
}

/// Why a blob from a peer was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The bytes are not the blob asked for (wrong, cut short, padded): the
    /// sender's fault.
    #[error("{0}")]
    Invalid(String),
    /// This store failed (I/O, tags, collection): not the sender's fault.
    #[error("storing it failed here: {0}")]
    Local(String),
}

pub struct BlobStore {
    dir: PathBuf,
    store: FsStore,
    /// GC runs asked for by [`BlobStore::gc`] and not yet started by the store.
    gc_wanted: Arc<AtomicUsize>,
    gc_done: Arc<(Mutex<usize>, std::sync::Condvar)>,
    /// A collection is under way: closing the store waits for it (shut down under
    /// it, iroh-blobs logs `error during gc run: Error::Io` and stops collecting).
    gc_running: Arc<AtomicBool>,
    /// Held (shared) by every store operation; [`Self::remove_stale_temp`] takes it
    /// alone, so no temp file it removes is being written.
    ops: std::sync::RwLock<()>,
    /// A small runtime of our own to drive the store's client futures.
    rt: Option<tokio::runtime::Runtime>,
    /// What opening found wrong with the database, when it had to start a new one.
    rebuilt: Option<String>,
}

/// A [`BlobStore::put_later`] under way.
pub struct PutUnderWay(std::sync::mpsc::Receiver<std::result::Result<BlobHash, String>>);

/// Stores already open in this process, by directory (redb allows one opener).
fn open_stores() -> &'static Mutex<HashMap<PathBuf, Weak<BlobStore>>> {
    static OPEN: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<BlobStore>>>> = std::sync::OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// How often the store asks whether a collection is wanted.
const GC_POLL: Duration = Duration::from_millis(500);

impl BlobStore {
    /// The store in `dir`, created when missing; shared with any other user of the
    /// same directory in this process.
    pub fn open(dir: &Path) -> Result<Arc<BlobStore>> {
        let mut open = open_stores().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = open.get(dir).and_then(Weak::upgrade) {
            return Ok(store);
        }
        std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tandem-blobs")
            .enable_all()
            .build()
            .map_err(StoreError::io(dir))?;
        let gc_wanted = Arc::new(AtomicUsize::new(0));
        let gc_done = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
        let mut options = Options::new(dir);
        // GC only runs when asked: the callback lets a run through while
        // `gc_wanted` is set and counts the runs that finished.
        let gc_running = Arc::new(AtomicBool::new(false));
        let (wanted, done, running) = (gc_wanted.clone(), gc_done.clone(), gc_running.clone());
        options.gc = Some(GcConfig {
            // The store wakes this often to ask; each wake is CPU of an idle
            // process (at 50 ms, a measurable 0.3% of a core), each `gc` waits two.
            interval: GC_POLL,
            add_protected: Some(Arc::new(move |_live| {
                let (wanted, done, running) = (wanted.clone(), done.clone(), running.clone());
                Box::pin(async move {
                    // The previous run (if any) has finished by the time this is called.
                    let (count, cvar) = &*done;
                    let mut count = count.lock().unwrap_or_else(|e| e.into_inner());
                    *count += 1;
                    let go = wanted.load(Ordering::SeqCst) > 0;
                    if go {
                        wanted.fetch_sub(1, Ordering::SeqCst);
                    }
                    running.store(go, Ordering::SeqCst);
                    drop(count);
                    cvar.notify_all();
                    if go { ProtectOutcome::Continue } else { ProtectOutcome::Abort }
                })
            })),
        });
        let db = dir.join("blobs.db");
        // Only damage redb itself reports counts: a database another process has
        // open, say, is no reason to start a new one.
        let checking = std::time::Instant::now();
        let checked = check_db(&db);
        tracing::debug!(elapsed = ?checking.elapsed(), "checked every page of {}", db.display());
        let rebuilt = match checked.err().map(|why| set_aside(&db, &why)).transpose() {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                // Dropping a runtime inside async code panics; this may be such code.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let store = match load(&rt, &db, options) {
            Ok(store) => store,
            Err(e) => {
                rt.shutdown_background();
                return Err(StoreError::corrupt(&db, format!("the blob store cannot be opened: {e}")));
            }
        };
        if let Some(why) = &rebuilt {
            tracing::warn!("{why}");
        }
        let store = Arc::new(BlobStore {
            dir: dir.to_owned(),
            store,
            gc_wanted,
            gc_done,
            gc_running,
            ops: Default::default(),
            rt: Some(rt),
            rebuilt,
        });
        store.remove_stale_temp();
        open.insert(dir.to_owned(), Arc::downgrade(&store));
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When opening found the database damaged and started a new one: what it said.
    pub fn rebuilt(&self) -> Option<&str> {
        self.rebuilt.as_deref()
    }

    /// Remove the temp files of writes that failed (iroh-blobs leaves them behind
    /// when a disk fills up under a large blob): on opening, and after a failed write
    /// went back. Waits for store operations under way, and blocks new ones meanwhile.
    pub fn remove_stale_temp(&self) {
        let _alone = self.ops.write().unwrap_or_else(|e| e.into_inner());
        let Ok(entries) = std::fs::read_dir(self.dir.join("temp")) else { return };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "temp")
                && let Err(err) = std::fs::remove_file(e.path())
            {
                tracing::warn!("{}: {err}", e.path().display());
            }
        }
    }

    /// Run `fut` on the store's runtime and wait for it (on a std channel, so this
    /// may be called from any thread, another runtime's worker included).
    fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let _op = self.ops.read().unwrap_or_else(|e| e.into_inner());
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("the blob store's runtime answers")
    }

    /// A failed store operation. iroh-blobs reports a full disk as a bare
    /// `Error::Io`: the file system is asked, so the message can say so.
    fn failed(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        if disk_full(&self.dir) {
            return StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("{what}: no space left on device"),
                ),
            };
        }
        StoreError::Io { path: self.dir.clone(), source: std::io::Error::other(format!("{what}: {e}")) }
    }

    /// Store `bytes` under the tag `tag` (replacing what that tag named). Returns
    /// the blob's hash. Not durable until [`Self::flush`]; callers keep their own
    /// write-ahead record until then.
    pub fn put(&self, tag: String, bytes: Vec<u8>) -> Result<BlobHash> {
        let store = self.store.clone();
        self.block(async move { store.blobs().add_bytes(bytes).with_named_tag(tag).await })
            .map(|hf| hf.hash)
            .map_err(|e| self.failed("storing a blob", e))
    }

    /// [`Self::put`] without waiting for it: the put goes on the store's thread while
    /// the caller goes on; [`Self::finish`] waits for it. For blobs the store keeps
    /// inline in its database (at most 16 KiB): larger ones go through a temp file,
    /// which [`Self::remove_stale_temp`] must not find under way.
    pub fn put_later(&self, tag: String, bytes: Vec<u8>) -> PutUnderWay {
        let store = self.store.clone();
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let put = store.blobs().add_bytes(bytes).with_named_tag(tag).await;
            let _ = tx.send(put.map(|hf| hf.hash).map_err(|e| e.to_string()));
        });
        PutUnderWay(rx)
    }

    /// Wait for a [`Self::put_later`].
    pub fn finish(&self, put: PutUnderWay) -> Result<BlobHash> {
        match put.0.recv() {
            Ok(Ok(hash)) => Ok(hash),
            Ok(Err(e)) => Err(self.failed("storing a blob", e)),
            Err(_) => Err(self.failed("storing a blob", "the blob store's thread stopped")),
        }
    }

    /// Store several blobs, each under its tag, in one trip to the store's thread
    /// (their puts overlap there): the checkpoint's batch of change blobs. Stops at
    /// the first failure; those stored before it stay stored.
    pub fn put_all(&self, blobs: Vec<(String, Vec<u8>)>) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        self.block(async move {
            let puts = blobs.into_iter().map(|(tag, bytes)| {
                let store = store.clone();
                async move { store.blobs().add_bytes(bytes).with_named_tag(tag).await.map(|_| ()) }
            });
            n0_future::join_all(puts).await.into_iter().collect::<std::result::Result<Vec<()>, _>>()
        })
        .map(|_| ())
        .map_err(|e| self.failed("storing a blob", e))
    }

    /// Point `tag` at `hash` (which must be stored).
    pub fn tag(&self, tag: String, hash: BlobHash) -> Result<()> {
        let store = self.store.clone();
        self.block(
            async move { store.tags().set(tag, HashAndFormat { hash, format: BlobFormat::Raw }).await },
        )
        .map_err(|e| self.failed("setting a tag", e))
    }

    /// Drop every tag whose name starts with `prefix`, except those naming a hash in
    /// `keep`. Their blobs go at the next [`Self::gc`] unless named elsewhere.
    pub fn untag_except(&self, prefix: String, keep: HashSet<BlobHash>) -> Result<u64> {
        let store = self.store.clone();
        self.block(async move {
            use n0_future::StreamExt;
            let mut tags = store.tags().list_prefix(prefix.as_bytes()).await?;
            let mut dropped = Vec::new();
            while let Some(tag) = tags.next().await {
                let tag = tag?;
                if !keep.contains(&tag.hash) {
                    dropped.push(tag.name);
                }
            }
            let n = dropped.len() as u64;
            for name in dropped {
                store.tags().delete(name).await?;
            }
            Ok::<_, iroh_blobs::api::Error>(n)
        })
        .map_err(|e| self.failed("dropping tags", e))
    }

    /// The blob `hash`, re-hashed: a blob that is missing or whose bytes are not
    /// what the hash names is an error, never returned.
    pub fn get(&self, hash: BlobHash) -> Result<Vec<u8>, BlobFault> {
        let store = self.store.clone();
        // A large blob is a file of its own: the store's database may still list it
        // when the file is gone.
        let file = iroh_blobs::store::fs::options::PathOptions::new(&self.dir).data_path(&hash);
        let read = self.block(async move {
            match store.blobs().status(hash).await {
                Ok(BlobStatus::Complete { .. }) => {}
                _ => return Err(BlobFault::Missing),
            }
            store.blobs().get_bytes(hash).await.map_err(|_| BlobFault::Corrupt)
        });
        let read = match read {
            // Unreadable with no file to read: gone, rather than damaged.
            Err(BlobFault::Corrupt) if !file.exists() => {
                return Err(BlobFault::Missing);
            }
            other => other?,
        };
        if blob_hash(&read) != hash {
            return Err(BlobFault::Corrupt);
        }
        Ok(read.to_vec())
    }

    /// True when the store holds all of `hash` (not checked against its bytes).
    pub fn has(&self, hash: BlobHash) -> bool {
        let store = self.store.clone();
        self.block(async move { matches!(store.blobs().status(hash).await, Ok(BlobStatus::Complete { .. })) })
    }

    /// The blob in bao form (8-byte size, then the BLAKE3 tree interleaved with the
    /// data), which a receiver checks piece by piece as it reads. The bytes are
    /// re-hashed first, so a corrupt blob is never served.
    pub fn export_bao(&self, hash: BlobHash) -> Result<Vec<u8>, BlobFault> {
        self.get(hash)?;
        let store = self.store.clone();
        self.block(
            async move { store.blobs().export_bao(hash, bao_tree::ChunkRanges::all()).bao_to_vec().await },
        )
        .map_err(|_| BlobFault::Corrupt)
    }

    /// Store a blob received in bao form, verified against `hash` as it is read:
    /// wrong, truncated or padded data is refused and nothing is stored. The blob is
    /// tagged `tag`. A damaged copy already here (missing bytes, or bytes that do
    /// not match) is dropped first, so this is also how a blob is repaired.
    pub fn import_bao(&self, hash: BlobHash, tag: String, bao: Vec<u8>) -> Result<(), ImportError> {
        use ImportError::{Invalid, Local};
        let size_ok = bao.len() >= 8 && {
            let size = u64::from_le_bytes(bao[..8].try_into().expect("8 bytes"));
            bao_size(size) == Some(bao.len() as u64)
        };
        if !size_ok {
            return Err(Invalid(
                "the blob's length does not match its encoding (truncated or padded)".into(),
            ));
        }
        let named = self.drop_damaged(hash).map_err(Local)?;
        let store = self.store.clone();
        self.block(async move {
            let set = |tag: String| {
                let store = store.clone();
                async move {
                    store
                        .tags()
                        .set(tag, HashAndFormat { hash, format: BlobFormat::Raw })
                        .await
                        .map_err(|e| Local(format!("tagging it failed: {e}")))
                }
            };
            // Tagged before it is imported (a tag may name what is not stored yet), so
            // a collection running meanwhile cannot take it; a damaged copy's tags go
            // back whatever happens: the history still names the blob.
            set(tag.clone()).await?;
            let was_named = named.contains(&tag);
            for t in named {
                set(t).await?;
            }
            let imported = store
                .blobs()
                .import_bao_bytes(hash, bao_tree::ChunkRanges::all(), bao)
                .await
                .map_err(|e| Invalid(format!("it does not match its hash: {e}")));
            let complete = matches!(store.blobs().status(hash).await, Ok(BlobStatus::Complete { .. }));
            if (imported.is_err() || !complete) && !was_named {
                let _ = store.tags().delete(tag).await;
            }
            imported?;
            if complete { Ok(()) } else { Err(Invalid("it ended before the whole blob arrived".to_owned())) }
        })?;
        // The store verified the tree; check the whole once more before use.
        self.get(hash).map(|_| ()).map_err(|f| Local(format!("the stored copy is {f}")))
    }

    /// When the store holds a damaged copy of `hash` (it believes it has the blob, so
    /// it would keep the bad bytes): drop every tag naming it and collect it, so it
    /// can be stored afresh. Returns the tags that named it, to be set again.
    fn drop_damaged(&self, hash: BlobHash) -> std::result::Result<Vec<String>, String> {
        if !self.has(hash) || self.get(hash).is_ok() {
            return Ok(Vec::new());
        }
        let mut named = self.tags().map_err(|e| e.to_string())?;
        named.retain(|(_, h)| *h == hash);
        let dropped = named.iter().try_for_each(|(t, _)| {
            let (store, t) = (self.store.clone(), t.clone());
            self.block(async move { store.tags().delete(t).await }).map(|_| ())
        });
        let collected =
            dropped.map_err(|e| e.to_string()).and_then(|()| self.gc().map_err(|e| e.to_string()));
        if let Err(e) = collected {
            // Put the tags back: the history still names the blob.
            for (t, _) in named {
                let _ = self.tag(t, hash);
            }
            return Err(e);
        }
        Ok(named.into_iter().map(|(t, _)| t).collect())
    }

    /// Store `bytes`, which must hash to `hash`, under `tag`, in place of a copy that
    /// is missing or damaged (the tags that named a damaged one name the new one).
    pub fn restore(&self, hash: BlobHash, tag: String, bytes: Vec<u8>) -> Result<()> {
        if blob_hash(&bytes) != hash {
            return Err(
                self.failed("restoring a blob", format!("the bytes given for {hash} are another blob"))
            );
        }
        let named = self.drop_damaged(hash).map_err(|e| self.failed("dropping a damaged blob", e))?;
        self.put(tag, bytes)?;
        for t in named {
            self.tag(t, hash)?;
        }
        self.flush()?;
        self.sync_files(hash)?;
        self.get(hash)
            .map(drop)
            .map_err(|f| self.failed("restoring a blob", format!("the stored copy is {f}")))
    }

    /// Write everything stored so far to disk.
    pub fn flush(&self) -> Result<()> {
        let store = self.store.clone();
        self.block(async move { store.sync_db().await })
            .map_err(|e| self.failed("flushing the blob store", e))
    }

    /// Make the files of blob `hash` durable (fsync), when it is a file of its own:
    /// iroh-blobs writes and renames them without, and a flush only makes its
    /// database durable. Small blobs live in the database and need nothing more.
    pub fn sync_files(&self, hash: BlobHash) -> Result<()> {
        let paths = iroh_blobs::store::fs::options::PathOptions::new(&self.dir);
        let mut synced = false;
        for path in [paths.data_path(&hash), paths.outboard_path(&hash)] {
            match std::fs::File::open(&path) {
                Ok(f) => {
                    f.sync_all().map_err(StoreError::io(&path))?;
                    synced = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
        }
        if synced {
            let dir = paths.data_path;
            std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(StoreError::io(&dir))?;
        }
        Ok(())
    }

    /// Every blob hash the store holds.
    pub fn list(&self) -> Result<Vec<BlobHash>> {
        let store = self.store.clone();
        self.block(async move { store.blobs().list().hashes().await })
            .map_err(|e| self.failed("listing blobs", e))
    }

    /// Every tag: name and the hash it names.
    pub fn tags(&self) -> Result<Vec<(String, BlobHash)>> {
        let store = self.store.clone();
        self.block(async move {
            use n0_future::StreamExt;
            let mut tags = store.tags().list().await?;
            let mut out = Vec::new();
            while let Some(tag) = tags.next().await {
                let tag = tag?;
                out.push((String::from_utf8_lossy(tag.name.as_ref()).into_owned(), tag.hash));
            }
            Ok::<_, iroh_blobs::api::Error>(out)
        })
        .map_err(|e| self.failed("listing tags", e))
    }

    /// Delete every blob no tag names (iroh-blobs' mark and sweep). Returns how many
    /// blobs went.
    pub fn gc(&self) -> Result<usize> {
        // Best effort first: on a full disk (a write that failed and is being undone)
        // the collection is what frees the space the flush after it needs.
        if let Err(e) = self.flush() {
            tracing::debug!("flush before a collection failed: {e}");
        }
        let before = self.list()?.len();
        let (count, cvar) = &*self.gc_done;
        let mut runs = count.lock().unwrap_or_else(|e| e.into_inner());
        // The run we let through starts at the next callback; it has finished when
        // the callback is called once more after that.
        let target = *runs + 2;
        self.gc_wanted.fetch_add(1, Ordering::SeqCst);
        while *runs < target {
            let (guard, timeout) =
                cvar.wait_timeout(runs, Duration::from_secs(60)).unwrap_or_else(|e| e.into_inner());
            runs = guard;
            if timeout.timed_out() {
                return Err(self.failed(
                    "garbage collection",
                    "did not finish within 60 s (it stops after a store error; restart tandem to resume it)",
                ));
            }
        }
        drop(runs);
        self.flush()?;
        Ok(before.saturating_sub(self.list()?.len()))
    }

    /// Start a garbage collection in the background (see [`Self::gc`]) without
    /// waiting for it. Safe beside writes: iroh-blobs protects blobs added while a
    /// collection runs.
    pub fn gc_soon(&self) {
        if self.gc_wanted.load(Ordering::SeqCst) == 0 {
            self.gc_wanted.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Shrink the database file of the store in `dir` to what it holds: redb keeps
    /// pages freed by deleted blobs for reuse and never gives them back by itself
    /// (after a long history and a gc the file was ~270 KB for ~30 KB of entries).
    /// Only possible while no one has the store open; false when it is open or
    /// there was nothing to do.
    pub fn compact_db(dir: &Path) -> Result<bool> {
        if open_stores().lock().unwrap_or_else(|e| e.into_inner()).get(dir).and_then(Weak::upgrade).is_some()
        {
            return Ok(false);
        }
        let path = dir.join("blobs.db");
        if !path.exists() {
            return Ok(false);
        }
        let mut db = redb::Database::open(&path)
            .map_err(|e| StoreError::corrupt(&path, format!("the blob store cannot be opened: {e}")))?;
        db.compact().map_err(|e| StoreError::Io { path: path.clone(), source: std::io::Error::other(e) })
    }

    /// Bytes the store takes on disk (its database and blob files).
    pub fn disk_bytes(&self) -> u64 {
        crate::fsutil::dir_bytes(&self.dir)
    }
}

/// Open the store's database on the store's runtime and wait for it.
fn load(rt: &tokio::runtime::Runtime, db: &Path, options: Options) -> std::result::Result<FsStore, String> {
    // Not `block_on`: this may run on another runtime's thread.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let load = FsStore::load_with_opts(db.to_owned(), options);
    rt.spawn(async move {
        let _ = tx.send(load.await.map_err(|e| e.to_string()));
    });
    rx.recv().expect("the blob store's runtime answers")
}

/// Check every page of the database at `db` (a missing one is fine: it is created).
/// redb reports a file changed behind its back as corrupt rather than panicking
/// when asked to check on open; a panic is caught all the same.
fn check_db(db: &Path) -> std::result::Result<(), String> {
    use redb::{DatabaseError, StorageError};
    if !db.exists() {
        return Ok(());
    }
    let open = std::panic::catch_unwind(|| redb::Builder::new().set_check_integrity_on_open(true).open(db));
    match open {
        Ok(Ok(db)) => {
            drop(db);
            Ok(())
        }
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(why)))) => Err(why),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) =>
        {
            Err(e.to_string())
        }
        // Not damage (open elsewhere, unreadable for now): opening the store says so.
        Ok(Err(_)) => Ok(()),
        Err(_) => Err("reading it failed".to_owned()),
    }
}

/// Move a damaged database aside (one such copy is kept, the latest), so a new one
/// can be made. Returns what to tell the user.
fn set_aside(db: &Path, why: &str) -> Result<String> {
    let aside = db.with_extension("db.damaged");
    std::fs::rename(db, &aside).map_err(StoreError::io(db))?;
    Ok(format!(
        "the blob store's database {} was damaged ({why}); started a new one (the damaged file is {}); each document puts its blobs back from its own copies when it is opened, or all at once with `tandem verify --all`",
        db.display(),
        aside.display()
    ))
}

/// Length of the bao encoding (with its 8-byte size prefix) of a blob of `size`
/// bytes, in iroh's 16 KiB chunk groups.
fn bao_size(size: u64) -> Option<u64> {
    // `size` comes from a peer: no overflow on absurd values.
    let outboard = bao_tree::BaoTree::new(size, iroh_blobs::store::IROH_BLOCK_SIZE).outboard_size();
    size.checked_add(outboard)?.checked_add(8)
}

impl Drop for BlobStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "blob store not flushed on close");
        }
        // No new collection, and the one under way (a background one a checkpoint
        // asked for, on a short command's first write) finishes first.
        self.gc_wanted.store(0, Ordering::SeqCst);
        let (count, cvar) = &*self.gc_done;
        let mut runs = count.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.gc_running.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            runs = cvar.wait_timeout(runs, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(runs);
        let store = self.store.clone();
        let _ = self.block(async move { store.shutdown().await });
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// True when the file system holding `dir` has (almost) no space left for us.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn disk_full(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(path.as_ptr(), &mut st) == 0 && (st.f_bavail as u64) * (st.f_frsize as u64) < 256 * 1024
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn disk_full(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_tag_gc_and_verified_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("blobs")).unwrap();
        let small = store.put("d/c/1".into(), b"hello".to_vec()).unwrap();
        assert_eq!(small, blob_hash(b"hello"));
        assert_eq!(store.get(small).unwrap(), b"hello");
        // Large enough to be a file with an outboard (more than one 16 KiB group).
        let big: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let big_hash = store.put("d/s/1".into(), big.clone()).unwrap();
        assert_eq!(store.get(big_hash).unwrap(), big);
        let t = std::time::Instant::now();
        for i in 0..200u32 {
            store.put(format!("d/c/x{i}"), i.to_le_bytes().repeat(50)).unwrap();
        }
        eprintln!("put: {:?} each", t.elapsed() / 200);

        // bao round trip into a second store; a bad or cut encoding is refused.
        let other = BlobStore::open(&dir.path().join("other")).unwrap();
        let bao = store.export_bao(big_hash).unwrap();
        let mut cut = bao.clone();
        cut.truncate(bao.len() - 100);
        assert!(other.import_bao(big_hash, "t".into(), cut).is_err());
        let mut flipped = bao.clone();
        flipped[bao.len() / 2] ^= 1;
        assert!(other.import_bao(big_hash, "t".into(), flipped).is_err());
        assert!(!other.has(big_hash));
        // Right bytes under the wrong name.
        assert!(other.import_bao(small, "t".into(), bao.clone()).is_err());
        other.import_bao(big_hash, "t".into(), bao).unwrap();
        assert_eq!(other.get(big_hash).unwrap(), big);

        // Untagged blobs go at gc; tagged ones stay.
        let removed = store.untag_except("d/c/".into(), [small].into()).unwrap();
        assert_eq!(removed, 200);
        assert_eq!(store.gc().unwrap(), 200);
        assert_eq!(store.get(small).unwrap(), b"hello");
        assert_eq!(store.get(big_hash).unwrap(), big);
        assert_eq!(store.get(blob_hash(b"nope")), Err(BlobFault::Missing));
    }
}
