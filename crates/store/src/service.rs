//! The verbs scripts use on documents, served by whichever process owns the
//! workspace, and the control socket that lets other processes reach it.
//!
//! Protocol on `.tandem/control.sock`: the client sends one JSON [`Request`] per
//! line; the owner answers each with one line, `{"ok": VALUE}` or
//! `{"error": {"kind": KIND, "message": TEXT}}`. After a `watch` request the owner
//! keeps the connection and writes one event per line (see [`Service::subscribe`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tandem_doc::export::{ExportMeta, Format, export, line_ending};
use tandem_doc::{Author, ChangeSet, DocConfig, LiveEdit};

use crate::blobs::{BlobHash, BlobStore, ImportError};
use crate::error::{Result, StoreError};
use crate::fsutil::{read_text, write_atomic};
use crate::secure::Keys;
use crate::stored::{self, Opened, Shared, StoredDoc, now_ms};
use crate::workspace::{Lock, Workspace};

/// Largest request line accepted on the control socket.
pub const MAX_REQUEST: usize = 64 << 20;

/// A request to the workspace owner. `file` is an absolute path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Cat {
        file: PathBuf,
        /// A version (see `Document::resolve_version`); the current text when absent.
        #[serde(default)]
        at: Option<String>,
    },
    Edit {
        file: PathBuf,
        at: usize,
        delete: usize,
        insert: String,
    },
    Write {
        file: PathBuf,
        text: String,
    },
    Info {
        file: PathBuf,
    },
    Log {
        file: PathBuf,
    },
    Export {
        file: PathBuf,
        format: String,
        #[serde(default)]
        at: Option<String>,
    },
    Watch {
        file: PathBuf,
    },
    /// Unified diff from version `from` (default: what the file last saved) to `to`
    /// (default: the current text).
    Diff {
        file: PathBuf,
        from: Option<String>,
        to: Option<String>,
    },
    /// A new change that brings back the text of `version` (history is kept).
    Restore {
        file: PathBuf,
        version: String,
    },
    /// Who last wrote into each line, and when.
    Blame {
        file: PathBuf,
    },
    /// Re-hash every blob of `file`'s history (of every document in its workspace
    /// when `all`), repairing bad ones from a connected peer.
    Verify {
        file: PathBuf,
        #[serde(default)]
        all: bool,
    },
    /// Delete blobs no history uses any more (in `file`'s workspace).
    Gc {
        file: PathBuf,
    },
    /// Write `file`'s history blobs as a CARv1 file at `out` (see [`crate::car`]).
    ExportCar {
        file: PathBuf,
        out: PathBuf,
    },
    /// The document's group: members, roles, epoch.
    Group {
        file: PathBuf,
    },
    /// Change the group: `op` is add, remove, role or rotate; `member` a peer id.
    GroupChange {
        file: PathBuf,
        op: String,
        #[serde(default)]
        member: Option<String>,
        #[serde(default)]
        role: Option<String>,
        /// The member's age recipient (`age1...`), for add.
        #[serde(default)]
        recipient: Option<String>,
    },
    /// Who this process's node for `file` is connected to (see
    /// [`Service::set_network`]).
    Peers {
        file: PathBuf,
    },
    /// A new invite (see `tandem share --role --expires --uses`).
    Invite {
        file: PathBuf,
        role: String,
        #[serde(default)]
        expires_ms: Option<u64>,
        #[serde(default)]
        uses: Option<u32>,
    },
}

/// A request to the network for one blob of a document's history (see
/// [`Service::subscribe_blob_fetch`]): fetch it from a peer, import it with
/// [`Service::import_blob`] under `tag`, and answer on `reply`.
pub struct BlobFetch {
    pub hash: BlobHash,
    pub tag: String,
    pub reply: Sender<std::result::Result<String, String>>,
}

/// How long `verify` waits for the network to fetch one blob.
const REPAIR_WAIT: Duration = Duration::from_secs(20);

impl Request {
    pub fn file(&self) -> &Path {
        match self {
            Request::Cat { file, .. }
            | Request::Edit { file, .. }
            | Request::Write { file, .. }
            | Request::Info { file }
            | Request::Log { file }
            | Request::Export { file, .. }
            | Request::Diff { file, .. }
            | Request::Restore { file, .. }
            | Request::Blame { file }
            | Request::Verify { file, .. }
            | Request::Gc { file }
            | Request::ExportCar { file, .. }
            | Request::Group { file }
            | Request::GroupChange { file, .. }
            | Request::Invite { file, .. }
            | Request::Peers { file }
            | Request::Watch { file } => file,
        }
    }
}

/// The text of `s` at version `at` (the current text when `None`).
fn text_at(s: &mut StoredDoc, at: Option<&str>) -> Result<String> {
    let Some(at) = at else { return Ok(s.doc.rope().to_string()) };
    let path = s.file().display().to_string();
    let bad = |e: tandem_doc::DocError| StoreError::BadRequest(format!("{path}: {e}"));
    let hash = s.doc.resolve_version(at).map_err(bad)?;
    s.doc.text_at(&[hash]).map_err(bad)
}

/// `tandem export --car`: every blob of `s`'s history (the log checkpointed into it
/// first), re-hashed as it is read, written as a CARv1 file beside `out` and renamed
/// over it, so a damaged blob never makes a CAR and a failure leaves `out` as it was.
/// Every blob is a root: raw blocks have no links between them.
fn export_car(s: &mut StoredDoc, out: &Path) -> Result<Value> {
    s.sync()?;
    let blobs = s.blob_store().clone();
    let index_path = s.file().to_owned();
    let mut hashes = Vec::new();
    for e in s.index().entries() {
        hashes.push(e.blob.parse::<BlobHash>().map_err(|_| {
            StoreError::corrupt(&index_path, format!("bad blob hash {:?} in the index", e.blob))
        })?);
    }
    let mut blocks = Vec::with_capacity(hashes.len());
    for h in &hashes {
        let bytes = blobs.get(*h).map_err(|fault| {
            StoreError::corrupt(&index_path, format!("blob {h} is {fault}; run `tandem verify` to repair it"))
        })?;
        blocks.push((*h, bytes));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.tandem-tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let n = crate::car::write_car(&mut f, &hashes, blocks)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok::<u64, std::io::Error>(n)
    })();
    let bytes = written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::Io { path: out.to_owned(), source: e }
    })?;
    Ok(json!({
        "file": s.rel(),
        "car": out.display().to_string(),
        "blocks": hashes.len(),
        "bytes": bytes,
        "roots": hashes.iter().map(crate::car::cid_string).collect::<Vec<_>>(),
    }))
}

/// Batches of envelopes (or of membership ops), as [`Service::subscribe_changes`]
/// and [`Service::subscribe_group`] hand them out.
type ChangeFeed = Sender<Vec<Vec<u8>>>;

/// The owner of a workspace: its open documents, and who watches them.
pub struct Service {
    ws: Workspace,
    _lock: Lock,
    author: Author,
    config: DocConfig,
    keys: Keys,
    docs: Mutex<HashMap<String, StoredDoc>>,
    watchers: Mutex<Vec<(String, Sender<Value>)>>,
    /// Who gets every local change's envelope (the network).
    change_feeds: Mutex<Vec<(String, ChangeFeed)>>,
    /// Who gets every membership op made here (the network).
    group_feeds: Mutex<Vec<(String, ChangeFeed)>>,
    /// Who gets every local edit at once, ahead of its change (the network).
    live_feeds: Mutex<Vec<(String, Sender<LiveEdit>)>>,
    /// Who fetches blobs from peers for a document (its network node).
    blob_fetchers: Mutex<Vec<(String, Sender<BlobFetch>)>>,
    /// What each document's network node last said about its peers and relays.
    network: Mutex<HashMap<String, Value>>,
    /// Signalled when a document's Automerge comes back from applying remote changes
    /// (see [`Service::apply_remote`]).
    reattached: Condvar,
}

/// Where a document's members were last reachable (see [`Service::remember_peer`]).
const PEERS: &str = "peers.json";
/// Most members whose addresses are remembered per document.
pub const MAX_KNOWN_PEERS: usize = 32;

/// `peers.json`, read leniently: it is a hint, rebuilt as peers are met, so a damaged
/// one counts as empty.
fn read_known_peers(path: &Path) -> Vec<(String, Vec<String>, u64)> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else { return Vec::new() };
    let mut out = Vec::new();
    for p in v["peers"].as_array().into_iter().flatten() {
        let Some(id) = p["peer_id"].as_str() else { continue };
        let addrs = p["addrs"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned));
        out.push((id.to_owned(), addrs.collect(), p["seen_ms"].as_u64().unwrap_or(0)));
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves data that is still consistent on disk;
    // keep serving rather than poisoning every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn edits_json(edit: &ChangeSet) -> Vec<Value> {
    edit.splices().iter().map(|s| json!({"pos": s.pos, "delete": s.delete, "insert": s.insert})).collect()
}

impl Service {
    /// Become the owner of `ws`; `None` when another process owns it.
    /// Changes are signed with `keys`' device key, whose public half becomes the
    /// author's actor id whatever `author` said.
    pub fn own(ws: Workspace, author: Author, config: DocConfig, keys: Keys) -> Result<Option<Service>> {
        let Some(lock) = ws.try_lock()? else { return Ok(None) };
        let author = Author::new(author.name, tandem_doc::ActorId::from(keys.public().to_vec()));
        Ok(Some(Service {
            ws,
            _lock: lock,
            author,
            config,
            keys,
            docs: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
            change_feeds: Mutex::new(Vec::new()),
            group_feeds: Mutex::new(Vec::new()),
            live_feeds: Mutex::new(Vec::new()),
            blob_fetchers: Mutex::new(Vec::new()),
            network: Mutex::new(HashMap::new()),
            reattached: Condvar::new(),
        }))
    }

    /// This device's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// The name this device's changes carry.
    pub fn author_name(&self) -> String {
        self.author.name.clone()
    }

    /// This device's Automerge actor id.
    pub fn actor(&self) -> tandem_doc::ActorId {
        self.author.actor.clone()
    }

    /// Run `f` on the open document for `file`, opening it (and merging outside
    /// changes to the file) first.
    pub fn with_doc<T>(&self, file: &Path, f: impl FnOnce(&mut StoredDoc) -> Result<T>) -> Result<T> {
        let rel = self.ws.relative(file)?;
        let mut docs = self.attached(&rel);
        let stored = match docs.entry(rel.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let stored = e.into_mut();
                self.refresh(stored)?;
                stored
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let (stored, opened) = StoredDoc::open(
                    &self.ws,
                    file,
                    self.author.clone(),
                    self.config.clone(),
                    false,
                    &self.keys,
                )?;
                let stored = v.insert(stored);
                if let Opened::MergedExternal(_) = opened {
                    stored.save(now_ms())?;
                    self.publish(stored);
                }
                stored
            }
        };
        let out = f(stored);
        self.send_live(stored);
        out
    }

    /// Open `file` (creating an empty document when it does not exist and `create`
    /// is set) and keep it open. Returns how it was opened.
    pub fn open(&self, file: &Path, create: bool) -> Result<Opened> {
        let rel = self.ws.relative(file)?;
        let mut docs = lock(&self.docs);
        if docs.contains_key(&rel) {
            return Ok(Opened::Loaded);
        }
        let (mut stored, opened) =
            StoredDoc::open(&self.ws, file, self.author.clone(), self.config.clone(), create, &self.keys)?;
        if let Opened::MergedExternal(_) = &opened {
            stored.save(now_ms())?;
            self.publish(&mut stored);
        }
        docs.insert(rel, stored);
        Ok(opened)
    }

    /// Close `file`'s document if it is open (its history is on disk; what is not yet
    /// committed is committed first).
    pub fn close(&self, file: &Path) -> Result<()> {
        let rel = self.ws.relative(file)?;
        let mut docs = self.attached(&rel);
        if let Some(mut stored) = docs.remove(&rel)
            && stored.is_dirty()
        {
            stored.save(now_ms())?;
            self.publish(&mut stored);
        }
        Ok(())
    }

    /// The file `from` was renamed to `to` (outside tandem): its document keeps its
    /// identity and history under the new path (see [`crate::stored::relocate`]).
    pub fn renamed(&self, from: &Path, to: &Path) -> Result<()> {
        self.close(from)?;
        self.close(to)?;
        let (from, to) = (self.ws.relative(from)?, self.ws.relative(to)?);
        crate::stored::relocate(&self.ws, &from, &to)
    }

    /// Make `file` the shared document `doc_id` from a peer's `changes` (see
    /// [`StoredDoc::join`]) and keep it open.
    /// `group` is the document's membership log as the peer sent it.
    pub fn join(&self, file: &Path, doc_id: &str, shared: Shared, group: &[Vec<u8>]) -> Result<()> {
        let rel = self.ws.relative(file)?;
        let stored = StoredDoc::join(
            &self.ws,
            file,
            doc_id,
            shared,
            self.author.clone(),
            self.config.clone(),
            &self.keys,
            group,
        )?;
        lock(&self.docs).insert(rel, stored);
        Ok(())
    }

    /// Remember where member `peer` (a PeerId) of `file`'s document was last
    /// reachable, so that reopening the document finds the members again with no
    /// ticket (`peers.json` in the document's history directory; at most
    /// [`MAX_KNOWN_PEERS`] peers, the most recently seen kept).
    pub fn remember_peer(&self, file: &Path, peer: &str, addrs: Vec<String>) -> Result<()> {
        let rel = self.ws.relative(file)?;
        let dir = self.ws.doc_dir(&rel);
        if !dir.exists() {
            return Ok(());
        }
        let path = dir.join(PEERS);
        let mut known = read_known_peers(&path);
        let addrs: Vec<String> = addrs.into_iter().take(16).collect();
        if known.iter().any(|(p, a, _)| p == peer && *a == addrs) {
            return Ok(());
        }
        known.retain(|(p, _, _)| p != peer);
        known.insert(0, (peer.to_owned(), addrs, now_ms()));
        known.truncate(MAX_KNOWN_PEERS);
        let list: Vec<Value> = known
            .into_iter()
            .map(|(p, a, seen)| json!({"peer_id": p, "addrs": a, "seen_ms": seen}))
            .collect();
        write_atomic(&path, &serde_json::to_vec_pretty(&json!({"peers": list})).expect("json serializes"))
    }

    /// The members of `file`'s document this device has met, with where each was
    /// last reachable, most recently seen first (see [`Self::remember_peer`]).
    pub fn known_peers(&self, file: &Path) -> Vec<(String, Vec<String>)> {
        let Ok(rel) = self.ws.relative(file) else { return Vec::new() };
        read_known_peers(&self.ws.doc_dir(&rel).join(PEERS)).into_iter().map(|(p, a, _)| (p, a)).collect()
    }

    /// The network node of `file` says who it is connected to (`tandem peers`): a
    /// JSON object the store keeps as given and answers [`Request::Peers`] with.
    pub fn set_network(&self, file: &Path, state: Value) {
        if let Ok(rel) = self.ws.relative(file) {
            lock(&self.network).insert(rel, state);
        }
    }

    /// Run `f` on a document opened with [`Service::open`], without looking at the
    /// file first (the editor calls this every frame).
    pub fn with_open<T>(&self, file: &Path, f: impl FnOnce(&mut StoredDoc) -> Result<T>) -> Result<T> {
        let rel = self.ws.relative(file)?;
        let docs = self.attached(&rel);
        self.with_locked(docs, &rel, file, f)
    }

    /// [`Self::with_open`] without waiting for remote changes being applied: the
    /// document's rope, cursors and undo work meanwhile, its history does not (see
    /// [`tandem_doc::Document::detach`]). For the editor, which must never wait.
    pub fn with_open_live<T>(&self, file: &Path, f: impl FnOnce(&mut StoredDoc) -> Result<T>) -> Result<T> {
        let rel = self.ws.relative(file)?;
        self.with_locked(lock(&self.docs), &rel, file, f)
    }

    /// The documents, once `rel` (if open) has Automerge back.
    fn attached(&self, rel: &str) -> MutexGuard<'_, HashMap<String, StoredDoc>> {
        let mut docs = lock(&self.docs);
        while docs.get(rel).is_some_and(|s| s.doc.is_detached()) {
            docs = self.reattached.wait(docs).unwrap_or_else(|e| e.into_inner());
        }
        docs
    }

    fn with_locked<T>(
        &self,
        mut docs: MutexGuard<'_, HashMap<String, StoredDoc>>,
        rel: &str,
        file: &Path,
        f: impl FnOnce(&mut StoredDoc) -> Result<T>,
    ) -> Result<T> {
        let stored = docs
            .get_mut(rel)
            .ok_or_else(|| StoreError::BadRequest(format!("{} is not open", file.display())))?;
        let out = f(stored);
        self.send_live(stored);
        out
    }

    /// Hand the local edits made since the last call to the live feeds.
    fn send_live(&self, stored: &mut StoredDoc) {
        let live = stored.doc.take_live();
        if live.is_empty() {
            return;
        }
        let mut feeds = lock(&self.live_feeds);
        for edit in live {
            feeds.retain(|(rel, tx)| rel != stored.rel() || tx.send(edit.clone()).is_ok());
        }
    }

    /// Every local edit of the open `file` from now on, as soon as it is made (see
    /// [`tandem_doc::LiveEdit`]).
    pub fn subscribe_live(&self, file: &Path) -> Result<Receiver<LiveEdit>> {
        let rel = self.ws.relative(file)?;
        let (tx, rx) = channel();
        lock(&self.live_feeds).push((rel, tx));
        self.with_open(file, |s| {
            s.doc.record_live(true);
            Ok(())
        })?;
        Ok(rx)
    }

    /// Show a peer's live edit on the open `file` if it is exact here (see
    /// [`tandem_doc::Document::apply_live`]); true when it was shown.
    /// The peer whose device is `actor` went away: its live edits that no change
    /// confirmed come off the screen (see [`tandem_doc::Document::drop_live_of`]).
    pub fn drop_live_of(&self, file: &Path, actor: &tandem_doc::ActorId) -> Result<()> {
        self.with_open(file, |s| {
            s.doc.drop_live_of(actor);
            Ok(())
        })
    }

    /// A peer's live edit onto the open `file`'s rope. Never waits for remote changes
    /// being applied: the edit is then held, and placed when Automerge comes back.
    pub fn apply_live(&self, file: &Path, actor: &tandem_doc::ActorId, live: &LiveEdit) -> Result<bool> {
        self.with_open_live(file, |s| Ok(s.doc.apply_live(actor, live, now_ms()).is_some()))
    }

    /// The open `file` in Automerge's compact form, for a fresh peer.
    pub fn snapshot(&self, file: &Path) -> Result<Vec<u8>> {
        self.with_open(file, |s| Ok(s.snapshot(now_ms())))
    }

    /// The workspace's blob store.
    pub fn blob_store(&self) -> Result<std::sync::Arc<BlobStore>> {
        BlobStore::open(&self.ws.blob_dir())
    }

    /// The blobs a fresh peer needs for the open `file`: (hash, size, is snapshot),
    /// snapshot first (see [`StoredDoc::history_blobs`]).
    pub fn history_blobs(&self, file: &Path) -> Result<Vec<(BlobHash, u64, bool)>> {
        self.with_open(file, |s| s.history_blobs())
    }

    /// One blob of the open `file`'s history in bao form, for a peer; refused (with
    /// the reason) when it is not part of that history or is damaged here.
    pub fn export_blob(&self, file: &Path, hash: BlobHash) -> std::result::Result<Vec<u8>, String> {
        self.with_open(file, |s| Ok(s.export_blob(hash))).map_err(|e| e.to_string())?
    }

    /// Store a blob a peer sent in bao form, verified against `hash` first (see
    /// [`BlobStore::import_bao`]).
    pub fn import_blob(
        &self,
        hash: BlobHash,
        tag: String,
        bao: Vec<u8>,
    ) -> std::result::Result<(), ImportError> {
        self.blob_store().map_err(|e| ImportError::Local(e.to_string()))?.import_bao(hash, tag, bao)
    }

    /// Requests for blobs of `file`'s history that `verify` wants from peers (the
    /// network node takes them).
    pub fn subscribe_blob_fetch(&self, file: &Path) -> Result<Receiver<BlobFetch>> {
        let rel = self.ws.relative(file)?;
        let (tx, rx) = channel();
        lock(&self.blob_fetchers).push((rel, tx));
        Ok(rx)
    }

    /// Ask the network to fetch `hash` for the document `rel`; `Err` says why not.
    fn fetch_blob(&self, rel: &str, hash: BlobHash, tag: String) -> std::result::Result<String, String> {
        let (reply, answer) = channel();
        let sent = {
            let mut fetchers = lock(&self.blob_fetchers);
            // A fetcher whose node has gone has a closed channel: drop it, try the next.
            let mut sent = false;
            fetchers.retain(|(r, tx)| {
                if sent || r != rel {
                    return true;
                }
                sent = tx.send(BlobFetch { hash, tag: tag.clone(), reply: reply.clone() }).is_ok();
                sent
            });
            sent
        };
        if !sent {
            return Err("no peer connected (share or join the document to repair it from a peer)".into());
        }
        answer.recv_timeout(REPAIR_WAIT).unwrap_or_else(|_| Err("no peer sent it in time".into()))
    }

    /// `tandem verify`: every blob of the named histories re-hashed; bad ones fetched
    /// again from a peer when the document is shared. JSON: `{"ok", "files": [{"file",
    /// "blobs", "bad": [{"blob", "what", "fault", "repaired", "from"|"error"}]}],
    /// "store"}` where `store` says what was wrong with the blob database, when
    /// opening it found it damaged and started a new one (else null).
    pub fn verify(&self, file: &Path, all: bool) -> Result<Value> {
        let blobs = self.blob_store()?;
        let rels = if all { stored::documents(&self.ws)? } else { vec![self.ws.relative(file)?] };
        let mut ok = true;
        let mut files = Vec::new();
        for rel in rels {
            let dir = self.ws.doc_dir(&rel);
            if !dir.exists() {
                // A file tandem never opened has no history to check.
                files.push(json!({"file": rel, "blobs": 0, "bad": [], "rebuilt": []}));
                continue;
            }
            // Every file of the history, rebuilt from what is intact when damaged.
            let rebuilt = match stored::repair_dir(&dir, &rel, &blobs, &self.keys) {
                Ok(rebuilt) => rebuilt,
                Err(e) => {
                    ok = false;
                    files.push(
                        json!({"file": rel, "blobs": 0, "bad": [], "rebuilt": [], "error": e.to_string()}),
                    );
                    continue;
                }
            };
            let (count, bad) = match stored::verify_dir(&dir, &blobs) {
                Ok(found) => found,
                Err(e) => {
                    ok = false;
                    files.push(json!({"file": rel, "blobs": 0, "bad": [], "rebuilt": rebuilt, "error": e.to_string()}));
                    continue;
                }
            };
            let mut report = Vec::new();
            for (b, tag) in bad {
                let hash: BlobHash = b.blob.parse().expect("verified hex");
                tracing::warn!(file = %rel, blob = %b.blob, what = %b.what, "blob is {}", b.fault);
                let repair = self.fetch_blob(&rel, hash, tag);
                let repaired = repair.is_ok() && blobs.get(hash).is_ok();
                ok &= repaired;
                let mut entry =
                    json!({"blob": b.blob, "what": b.what, "fault": b.fault, "repaired": repaired});
                match repair {
                    Ok(from) => entry["from"] = json!(from),
                    Err(e) => entry["error"] = json!(e),
                }
                report.push(entry);
            }
            files.push(json!({"file": rel, "blobs": count, "bad": report, "rebuilt": rebuilt}));
        }
        // A damaged blob database was set aside when the store opened: each history
        // above has put its blobs back from its copies.
        Ok(json!({"ok": ok, "files": files, "store": blobs.rebuilt()}))
    }

    /// Merge changes made to the open `file` on disk by other tools (later, if remote
    /// changes are being applied right now).
    pub fn refresh_file(&self, file: &Path) -> Result<()> {
        self.with_open_live(file, |s| if s.doc.is_detached() { Ok(()) } else { self.refresh(s) })
    }

    /// Merge what changed in the file on disk since it was last read or written.
    fn refresh(&self, stored: &mut StoredDoc) -> Result<()> {
        let text = match read_text(stored.file()) {
            Ok(text) => text,
            // Deleted while open: the document lives on and the next save recreates it.
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Opened::MergedExternal(_) = stored.merge_file(&text, now_ms())? {
            stored.save(now_ms())?;
            self.publish(stored);
        }
        Ok(())
    }

    /// Tell watchers about every local edit committed since the last call, and hand
    /// the new local changes to the change feeds.
    fn publish(&self, stored: &mut StoredDoc) {
        let outbox = stored.take_outbox();
        if !outbox.is_empty() {
            let bytes = outbox;
            lock(&self.change_feeds)
                .retain(|(rel, tx)| rel != stored.rel() || tx.send(bytes.clone()).is_ok());
        }
        let mut watchers = lock(&self.watchers);
        if !watchers.iter().any(|(rel, _)| rel == stored.rel()) {
            stored.doc.discard_local_edits();
            return;
        }
        let edits = stored.doc.take_local_edits();
        if edits.is_empty() {
            return;
        }
        let info = stored.doc.change_log().pop();
        for edit in edits {
            let event = json!({
                "file": stored.rel(),
                "change": info.as_ref().map(|c| c.hash.to_string()),
                "author": info.as_ref().and_then(|c| c.author.clone()),
                "actor": info.as_ref().map(|c| c.actor.to_hex_string()),
                "time_ms": info.as_ref().map(|c| c.time_ms),
                "edits": edits_json(&edit),
                "heads": stored.doc.heads().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            });
            watchers.retain(|(rel, tx)| rel != stored.rel() || tx.send(event.clone()).is_ok());
        }
    }

    /// Every membership op made here for `file` from now on (encoded), batch by batch.
    pub fn subscribe_group(&self, file: &Path) -> Result<Receiver<Vec<Vec<u8>>>> {
        let rel = self.ws.relative(file)?;
        let (tx, rx) = channel();
        lock(&self.group_feeds).push((rel, tx));
        Ok(rx)
    }

    fn publish_ops(&self, rel: &str, ops: Vec<Vec<u8>>) {
        if !ops.is_empty() {
            lock(&self.group_feeds).retain(|(r, tx)| r != rel || tx.send(ops.clone()).is_ok());
        }
    }

    /// The membership log of the open `file`, parents first.
    pub fn group_ops(&self, file: &Path) -> Result<Vec<Vec<u8>>> {
        self.with_open(file, |s| Ok(s.secure().ops()))
    }

    /// Add membership ops a peer sent to the open `file`'s group; returns how many
    /// were new. When they leave the epoch key to be replaced and this device is an
    /// admin, it rotates (and that op goes to the peers too).
    pub fn add_group_ops(&self, file: &Path, ops: &[Vec<u8>]) -> Result<usize> {
        self.with_open(file, |s| {
            let n = s.secure_mut().add_ops(ops)?;
            if n > 0
                && let Some(op) = s.secure_mut().heal()?
            {
                tracing::info!(file = %s.rel(), "rotated the epoch key (a member lacked it, or a removed one had it)");
                self.publish_ops(s.rel(), vec![op.encode()]);
            }
            Ok(n)
        })
    }

    /// A live edit (encoded) of the open `file`, sealed for peers.
    pub fn seal_live(&self, file: &Path, live: &[u8]) -> Result<Vec<u8>> {
        self.with_open_live(file, |s| s.secure().seal_live(live))
    }

    /// A live edit (encoded) of the open `file`, for a peer connected to this device
    /// that does not pass live edits on (no signature: see
    /// [`tandem_auth::envelope::seal_direct`]).
    pub fn seal_live_direct(&self, file: &Path, live: &[u8]) -> Result<Vec<u8>> {
        self.with_open_live(file, |s| s.secure().seal_live_direct(live))
    }

    /// A peer's live edit of the open `file`, checked and opened: its signer and the
    /// encoded edit.
    pub fn open_live(
        &self,
        file: &Path,
        envelope: &[u8],
        sender: Option<&[u8; 32]>,
    ) -> Result<([u8; 32], Vec<u8>)> {
        self.with_open_live(file, |s| {
            s.secure().open_live(envelope, sender).map_err(|e| crate::secure::refused("a live edit", e))
        })
    }

    /// The open `file`'s rendezvous secret (see [`crate::secure::Secure::rendezvous`]).
    pub fn rendezvous(&self, file: &Path) -> Result<Option<[u8; 32]>> {
        self.with_open(file, |s| Ok(s.secure().rendezvous()))
    }

    /// The role of device `peer` (its public key) in the open `file`'s group.
    pub fn role_of(&self, file: &Path, peer: &[u8; 32]) -> Result<Option<tandem_auth::group::Role>> {
        self.with_open(file, |s| Ok(s.secure().role(peer)))
    }

    /// Redeem an invite for `peer` (see [`crate::secure::Secure::redeem`]); returns the
    /// group's ops for the joiner. The new op also goes to the other peers.
    pub fn redeem_invite(
        &self,
        file: &Path,
        token: crate::secure::InviteToken,
        peer: [u8; 32],
        recipient: &str,
    ) -> Result<Vec<Vec<u8>>> {
        self.with_open(file, |s| {
            if let Some(op) = s.secure_mut().redeem(token, peer, recipient)? {
                self.publish_ops(s.rel(), vec![op.encode()]);
            }
            Ok(s.secure().ops())
        })
    }

    /// Every local change to `file` from now on, as envelopes, batch by batch.
    pub fn subscribe_changes(&self, file: &Path) -> Result<Receiver<Vec<Vec<u8>>>> {
        let rel = self.ws.relative(file)?;
        let (tx, rx) = channel();
        lock(&self.change_feeds).push((rel, tx));
        Ok(rx)
    }

    /// Changes of the open `file` that a peer with heads `have` lacks (all of them
    /// when it has none). Heads this document does not know (changes still on their
    /// way here) are left out, and `synced` (heads the peer is known to have had) is
    /// added: everything before any of them is the peer's already. Sending the whole
    /// history whenever a head was unknown cost 22 KB per keystroke with 16 typists.
    pub fn changes_since(
        &self,
        file: &Path,
        have: &[tandem_doc::ChangeHash],
        synced: &[tandem_doc::ChangeHash],
    ) -> Result<Vec<Vec<u8>>> {
        self.with_open(file, |s| {
            let unknown = s.doc.missing(have);
            let mut known: Vec<_> = have.iter().filter(|h| !unknown.contains(h)).copied().collect();
            if !have.is_empty() {
                let unknown = s.doc.missing(synced);
                let extra: Vec<_> =
                    synced.iter().filter(|h| !unknown.contains(h) && !known.contains(h)).copied().collect();
                known.extend(extra);
            }
            s.envelopes_since(&known)
        })
    }

    /// Write the open `file` if remote changes are not in it yet (see
    /// [`StoredDoc::save_if_stale`]); watchers hear of what that committed.
    pub fn save_if_stale(&self, file: &Path) -> Result<()> {
        self.with_open(file, |s| {
            s.doc.expire_live(now_ms(), LIVE_UNCONFIRMED_MS);
            if s.save_if_stale(now_ms())? {
                self.publish(s);
            }
            Ok(())
        })
    }

    /// Apply envelopes from a peer to the open `file` (each checked first: see
    /// [`crate::secure::Secure::open_remote`]; one refused refuses the batch);
    /// returns how many changes were new and the heads after.
    ///
    /// Automerge's part (~25 ms on a long history) runs without the lock, Automerge
    /// taken out of the document meanwhile: the editor keeps typing into the rope and
    /// never waits; other callers that need history wait for it to come back.
    pub fn apply_remote(
        &self,
        file: &Path,
        envelopes: Vec<Vec<u8>>,
    ) -> Result<(usize, Vec<tandem_doc::ChangeHash>)> {
        // Checking signatures and decrypting (~40 us an envelope) happens under the
        // lock; Automerge's part does not.
        let job = self.with_open(file, |s| {
            let (changes, vouched) = s.open_envelopes(envelopes)?;
            if !vouched.is_empty() {
                s.apply_remote_vouched(vouched, now_ms())?;
                self.publish(s);
            }
            Ok(s.begin_remote(changes, now_ms()))
        })?;
        let Some(job) = job else {
            return self.with_open(file, |s| Ok((0, s.doc.heads().to_vec())));
        };
        let job = job.run();
        let done = self.with_open_live(file, |s| {
            let n = s.finish_remote(job, now_ms());
            self.publish(s);
            Ok((n?, s.doc.heads().to_vec()))
        });
        self.reattached.notify_all();
        done
    }

    /// Heads of the open `file`, and which of `theirs` it lacks.
    pub fn heads_and_missing(
        &self,
        file: &Path,
        theirs: &[tandem_doc::ChangeHash],
    ) -> Result<(Vec<tandem_doc::ChangeHash>, Vec<tandem_doc::ChangeHash>)> {
        self.with_open(file, |s| {
            let missing = s.doc.missing(theirs);
            Ok((s.doc.heads().to_vec(), missing))
        })
    }

    /// Commit the open `file` if its idle window has passed, and tell watchers.
    pub fn poll_commit(&self, file: &Path, now: u64) -> Result<()> {
        // Live: the editor calls this every tick (a detached document just waits).
        self.with_open_live(file, |s| {
            s.poll_commit(now)?;
            self.publish(s);
            Ok(())
        })
    }

    /// Commit what is pending in the open `file` now, and hand it to watchers and
    /// the network (what quitting does before the node leaves).
    pub fn commit_now(&self, file: &Path, now: u64) -> Result<()> {
        self.with_open(file, |s| {
            s.commit(now)?;
            self.publish(s);
            Ok(())
        })
    }

    /// Quit without saving: what was typed becomes history, then the text goes back
    /// to the file's (empty when it was never saved) as a change of its own, so the
    /// next open shows the file and `tandem log` / `restore` keep what was discarded.
    pub fn discard_unsaved(&self, file: &Path, now: u64) -> Result<()> {
        self.with_open(file, |s| {
            s.commit(now)?;
            // Going back to the file would take peers' edits since then out too.
            let saved_heads: Vec<tandem_doc::ChangeHash> =
                s.saved_heads().iter().filter_map(|h| h.parse().ok()).collect();
            let me = s.doc.author().actor.clone();
            if s.doc.changes_since(&saved_heads).iter().any(|c| *c.actor_id() != me) {
                return Err(StoreError::BadRequest(
                    "others' edits arrived since the last save, and discarding would take them out too: save (y) to keep everyone's, or take back your own with Ctrl-Z".into(),
                ));
            }
            let saved = match read_text(s.file()) {
                Ok(text) => text,
                Err(StoreError::NotFound(_)) => String::new(),
                Err(e) => return Err(e),
            };
            let edit = tandem_doc::diff(&s.doc.rope().to_string(), &saved);
            if !edit.is_identity() {
                s.doc
                    .edit(&edit, now)
                    .map_err(|e| StoreError::Doc { path: s.file().to_owned(), source: e })?;
                s.commit(now)?;
            }
            s.write_text_cache(now)?;
            self.publish(s);
            Ok(())
        })
    }

    /// Save the open `file` and tell watchers about what that committed.
    pub fn save(&self, file: &Path, now: u64) -> Result<()> {
        self.with_open(file, |s| {
            s.save(now)?;
            self.publish(s);
            Ok(())
        })
    }

    /// Events for every change made to `file` from now on: one JSON object each, with
    /// `file`, `change` (hash), `author`, `actor`, `time_ms`, `edits`
    /// (`[{pos, delete, insert}]`, applied in order) and `heads`.
    pub fn subscribe(&self, file: &Path) -> Result<Receiver<Value>> {
        self.with_doc(file, |s| {
            s.doc.keep_local_edits(true);
            Ok(())
        })?;
        let rel = self.ws.relative(file)?;
        let (tx, rx) = channel();
        lock(&self.watchers).push((rel, tx));
        Ok(rx)
    }

    /// Carry out one request (everything but `watch`, which needs a stream).
    pub fn handle(&self, req: &Request) -> Result<Value> {
        let now = now_ms();
        match req {
            Request::Cat { file, at } => {
                self.with_doc(file, |s| Ok(json!({"text": text_at(s, at.as_deref())?})))
            }
            Request::Edit { file, at, delete, insert } => self.with_doc(file, |s| {
                let len = s.doc.len_chars();
                let edit = ChangeSet::splice(len, *at, *delete, insert).ok_or_else(|| {
                    StoreError::BadRequest(format!(
                        "{}: --at {at} --delete {delete} reaches past the end of the document ({len} chars); positions are char indices 0..={len}",
                        file.display()
                    ))
                })?;
                self.apply(s, &edit, now)
            }),
            Request::Write { file, text } => self.with_doc(file, |s| {
                let edit = tandem_doc::diff(&s.doc.rope().to_string(), text);
                self.apply(s, &edit, now)
            }),
            Request::Info { file } => self.with_doc(file, |s| {
                let v = info(s);
                if let Err(e) = s.keep_answer("info", &v) {
                    tracing::info!("{}: {e}", s.rel());
                }
                Ok(v)
            }),
            Request::Log { file } => self.with_doc(file, |s| {
                let changes: Vec<Value> = s
                    .doc
                    .change_log()
                    .into_iter()
                    .map(|c| {
                        json!({
                            "version": c.hash.to_string()[..12],
                            "change": c.hash.to_string(),
                            "author": c.author,
                            "actor": c.actor.to_hex_string(),
                            "seq": c.seq,
                            "time_ms": c.time_ms,
                            "deps": c.deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                            "ops": c.ops,
                        })
                    })
                    .collect();
                let v = json!({"file": s.rel(), "changes": changes});
                if let Err(e) = s.keep_answer("log", &v) {
                    tracing::info!("{}: {e}", s.rel());
                }
                Ok(v)
            }),
            Request::Export { file, format, at } => {
                let format: Format = format.parse().map_err(StoreError::BadRequest)?;
                self.with_doc(file, |s| {
                    let name = s.file().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    // The version's own heads and changes beside its text.
                    let meta = match at.as_deref() {
                        Some(at) => {
                            let path = s.file().display().to_string();
                            let hash = s.doc.resolve_version(at).map_err(|e| StoreError::BadRequest(format!("{path}: {e}")))?;
                            ExportMeta::at(&mut s.doc, &name, &[hash])
                        }
                        None => ExportMeta::of(&mut s.doc, &name),
                    };
                    Ok(json!({"output": export(&text_at(s, at.as_deref())?, format, &meta)}))
                })
            }
            Request::Diff { file, from, to } => self.with_doc(file, |s| {
                let rel = s.rel().to_owned();
                let old = match from {
                    Some(v) => text_at(s, Some(v))?,
                    None => read_text(s.file()).or_else(|_| text_at(s, None))?,
                };
                let new = text_at(s, to.as_deref())?;
                let label = |v: &Option<String>, default: &str| match v {
                    Some(v) => format!("{rel}@{v}"),
                    None => format!("{rel} ({default})"),
                };
                let diff = tandem_doc::unified(&old, &new, &label(from, "file"), &label(to, "now"));
                Ok(json!({"diff": diff}))
            }),
            Request::Blame { file } => self.with_doc(file, |s| {
                // Blame is of history: peers' keystrokes not yet in a change are not.
                let text = s.doc.committed_text();
                let blame = s.doc.blame();
                let lines: Vec<Value> = text
                    .split_inclusive('\n')
                    .zip(blame)
                    .enumerate()
                    .map(|(i, (line, c))| {
                        json!({
                            "line": i + 1,
                            "text": line.strip_suffix('\n').unwrap_or(line),
                            "version": c.as_ref().map(|c| c.hash.to_string()[..12].to_owned()),
                            "author": c.as_ref().and_then(|c| c.author.clone()),
                            "time_ms": c.as_ref().map(|c| c.time_ms),
                        })
                    })
                    .collect();
                Ok(json!({"lines": lines}))
            }),
            Request::Restore { file, version } => self.with_doc(file, |s| {
                let old = text_at(s, Some(version))?;
                let edit = tandem_doc::diff(&s.doc.rope().to_string(), &old);
                let done = self.apply(s, &edit, now)?;
                // A deleted file comes back even when the version is the last one.
                if !s.file().exists() {
                    s.save_text(now)?;
                }
                Ok(done)
            }),
            Request::Verify { file, all } => self.verify(file, *all),
            Request::Group { file } => self.with_doc(file, |s| Ok(group_json(s))),
            Request::GroupChange { file, op, member, role, recipient } => self.with_doc(file, |s| {
                let member = || -> Result<[u8; 32]> {
                    let m = member.as_deref().ok_or_else(|| StoreError::BadRequest(format!("group {op} needs a member (a peer id)")))?;
                    tandem_auth::device::parse_member(m).map_err(StoreError::BadRequest)
                };
                let role = || -> Result<tandem_auth::group::Role> {
                    let r = role.as_deref().ok_or_else(|| StoreError::BadRequest(format!("group {op} needs a role")))?;
                    r.parse().map_err(StoreError::BadRequest)
                };
                use tandem_auth::group::Action;
                let (action, recipient) = match op.as_str() {
                    "add" => {
                        let (member, role) = (member()?, role()?);
                        if role >= tandem_auth::group::Role::Reader && recipient.is_none() {
                            return Err(StoreError::BadRequest(
                                "group add needs the member's age recipient (--age age1..., `tandem id` on its device prints it)".into(),
                            ));
                        }
                        if let Some(r) = recipient {
                            tandem_auth::agekey::check_recipient(r).map_err(StoreError::BadRequest)?;
                        }
                        (Action::SetRole { member, role }, recipient.as_deref())
                    }
                    "role" => (Action::SetRole { member: member()?, role: role()? }, None),
                    "remove" => (Action::Remove { member: member()? }, None),
                    "rotate" => (Action::Rotate, None),
                    other => {
                        return Err(StoreError::BadRequest(format!(
                            "unknown group change {other:?}: use add, remove, role or rotate"
                        )));
                    }
                };
                refuse_losing_the_last_owner(s.secure().group().members(), self.keys.public(), &action, s.rel())?;
                let op = s.secure_mut().act(action, recipient)?;
                self.publish_ops(s.rel(), vec![op.encode()]);
                // A new epoch: what is stored from now on is sealed with its key;
                // the snapshot is sealed again so the old key opens nothing newer.
                s.compact()?;
                Ok(group_json(s))
            }),
            Request::Peers { file } => {
                let rel = self.ws.relative(file)?;
                Ok(lock(&self.network).get(&rel).cloned().unwrap_or_else(|| {
                    json!({"file": rel, "shared": false, "peers": [], "relays": []})
                }))
            }
            Request::Invite { file, role, expires_ms, uses } => self.with_doc(file, |s| {
                let role: tandem_auth::group::Role = role.parse().map_err(StoreError::BadRequest)?;
                let (id, secret) = s.secure().invite(role, *expires_ms, *uses)?;
                Ok(json!({
                    "invite": tandem_auth::device::hex(&id),
                    "secret": tandem_auth::device::hex(&secret),
                    "role": role.name(),
                    "expires_ms": expires_ms,
                    "uses": uses,
                }))
            }),
            Request::ExportCar { file, out } => self.with_doc(file, |s| export_car(s, out)),
            Request::Gc { .. } => {
                let dir = self.ws.blob_dir();
                let blobs = self.blob_store()?;
                let before = blobs.disk_bytes();
                // Every history folded into one snapshot first, so what is left to
                // keep is one blob per document.
                let mut compacted_docs = 0;
                let was_open: std::collections::HashSet<String> = lock(&self.docs).keys().cloned().collect();
                for rel in stored::documents(&self.ws)? {
                    let file = self.ws.root().join(&rel);
                    if !file.exists() {
                        continue;
                    }
                    self.with_doc(&file, |s| s.compact())?;
                    compacted_docs += 1;
                }
                // Documents opened only for this are closed again (so is the store,
                // below, if nothing else here holds it).
                lock(&self.docs).retain(|rel, _| was_open.contains(rel));
                let removed = blobs.gc()?;
                drop(blobs);
                // Shrinking the database file needs the store closed: it is unless a
                // document is open here (an editor or a sharing peer owns it).
                let compacted = BlobStore::compact_db(&dir)?;
                let after = crate::fsutil::dir_bytes(&dir);
                Ok(json!({
                    "compacted_documents": compacted_docs,
                    "removed_blobs": removed,
                    "bytes_before": before,
                    "bytes_after": after,
                    "db_compacted": compacted,
                }))
            }
            Request::Watch { .. } => Err(StoreError::BadRequest("watch needs a stream; use subscribe".into())),
        }
    }

    fn apply(&self, s: &mut StoredDoc, edit: &ChangeSet, now: u64) -> Result<Value> {
        let changed = !edit.is_identity();
        if changed {
            // Refused before it touches the document: it could not be stored or sent.
            s.secure().check_writer()?;
            // All or nothing: a write that fails half way (a full disk) leaves the
            // history and the file as they were, not a part of the new text. What
            // was typed before it is history first, so going back keeps it.
            s.commit(now)?;
            let point = s.restore_point()?;
            s.doc.edit(edit, now).map_err(|e| StoreError::Doc { path: s.file().to_owned(), source: e })?;
            if let Err(e) = s.save_text(now) {
                s.rewind(point)?;
                let file = s.file().to_owned();
                *s = StoredDoc::open(
                    &self.ws,
                    &file,
                    self.author.clone(),
                    self.config.clone(),
                    false,
                    &self.keys,
                )?
                .0;
                return Err(match e {
                    StoreError::Io { path, source } => StoreError::Io {
                        path,
                        source: std::io::Error::new(
                            source.kind(),
                            format!("{source} (the write was undone: it changes nothing)"),
                        ),
                    },
                    e => e,
                });
            }
            self.publish(s);
            if let Err(e) = s.save(now) {
                // The edit is in history and in the file; only the folding after it failed.
                tracing::warn!("{}: {e}", s.rel());
            }
        }
        let (inserted, deleted) = edit.stats();
        Ok(json!({
            "file": s.rel(),
            "changed": changed,
            "inserted": inserted,
            "deleted": deleted,
            "chars": s.doc.len_chars(),
            "heads": s.doc.heads().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        }))
    }

    /// Answer requests on the control socket from a background thread, for as long as
    /// the process lives.
    pub fn serve(self: &Arc<Self>) -> Result<()> {
        let path = self.ws.socket_path();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(StoreError::io(&path))?;
        let svc = Arc::clone(self);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        let svc = Arc::clone(&svc);
                        std::thread::spawn(move || {
                            if let Err(e) = svc.connection(stream) {
                                tracing::debug!("control connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => tracing::warn!("control socket accept failed: {e}"),
                }
            }
        });
        Ok(())
    }

    fn connection(&self, stream: UnixStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut out = stream;
        loop {
            let line = match read_line_limited(&mut reader, MAX_REQUEST)? {
                Some(line) => line,
                None => return Ok(()),
            };
            let req: Request = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("malformed control request: {e}");
                    let err = StoreError::Protocol(format!("malformed request: {e}"));
                    write_line(&mut out, &error_json(&err))?;
                    continue;
                }
            };
            if let Request::Watch { file } = &req {
                match self.subscribe(file) {
                    Ok(rx) => {
                        write_line(&mut out, &json!({"ok": {"watching": file}}))?;
                        for event in rx {
                            write_line(&mut out, &event)?;
                        }
                        return Ok(());
                    }
                    Err(e) => {
                        write_line(&mut out, &error_json(&e))?;
                        continue;
                    }
                }
            }
            let reply = match self.handle(&req) {
                Ok(v) => json!({"ok": v}),
                Err(e) => error_json(&e),
            };
            write_line(&mut out, &reply)?;
        }
    }
}

fn info(s: &mut StoredDoc) -> Value {
    let text = s.doc.rope().to_string();
    let log = s.doc.change_log();
    let mut authors: Vec<String> = log.iter().filter_map(|c| c.author.clone()).collect();
    authors.sort();
    authors.dedup();
    json!({
        "file": s.rel(),
        "doc_id": s.doc_id(),
        "chars": s.doc.len_chars(),
        "bytes": text.len(),
        "lines": s.doc.rope().len_lines() - usize::from(text.ends_with('\n') || text.is_empty()),
        "line_ending": line_ending(&text),
        "heads": s.doc.heads().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "changes": log.len(),
        "authors": authors,
        "saved": !s.is_dirty(),
        "stored_bytes": s.stored_bytes(),
    })
}

/// `tandem group FILE --json`: the members, their roles, the epoch.
fn group_json(s: &StoredDoc) -> Value {
    let m = s.secure().members();
    let members: Vec<Value> = m
        .roles
        .iter()
        .map(|(key, role)| {
            json!({
                "peer_id": tandem_auth::device::peer_id(key).map(|p| p.to_string()),
                "role": role.name(),
                "age_recipient": m.recipients.get(key),
                "has_key": m.holders.contains(key),
            })
        })
        .collect();
    json!({
        "file": s.rel(),
        "epoch": m.epoch,
        "members": members,
        "ops": s.secure().group().len(),
        "needs_rotation": m.needs_rotation(),
    })
}

fn error_json(e: &StoreError) -> Value {
    json!({"error": {"kind": e.kind(), "message": e.to_string()}})
}

fn write_line(out: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).expect("json values serialize");
    line.push(b'\n');
    out.write_all(&line)
}

/// Read one `\n`-terminated line of at most `limit` bytes; `None` at end of stream.
fn read_line_limited(reader: &mut impl BufRead, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > limit {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request line too long"));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(line));
        }
    }
}

/// A connection to the process that owns a workspace.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the owner of `ws`, if one is running.
    pub fn connect(ws: &Workspace) -> Option<Client> {
        let stream = UnixStream::connect(ws.socket_path()).ok()?;
        let writer = stream.try_clone().ok()?;
        Some(Client { reader: BufReader::new(stream), writer })
    }

    /// Send a request and wait for its answer.
    pub fn call(&mut self, req: &Request) -> Result<Value> {
        write_line(&mut self.writer, &serde_json::to_value(req).expect("requests serialize"))
            .map_err(|e| StoreError::Protocol(format!("sending: {e}")))?;
        let reply = self.next_line()?;
        if let Some(ok) = reply.get("ok") {
            return Ok(ok.clone());
        }
        let message = reply["error"]["message"].as_str().unwrap_or("unknown error").to_owned();
        Err(match reply["error"]["kind"].as_str() {
            Some("bad_request") => StoreError::BadRequest(message),
            _ => StoreError::Protocol(message),
        })
    }

    /// The next line the owner sent (a watch event, after a `watch` request).
    pub fn next_line(&mut self) -> Result<Value> {
        let line = read_line_limited(&mut self.reader, MAX_REQUEST)
            .map_err(|e| StoreError::Protocol(format!("receiving: {e}")))?
            .ok_or_else(|| StoreError::Protocol("the owning process closed the connection".into()))?;
        serde_json::from_slice(&line).map_err(|e| StoreError::Protocol(format!("malformed reply: {e}")))
    }
}

/// How a command reaches a workspace: through its owner, or by owning it.
pub enum Access {
    Remote(Client),
    Local(Box<Service>),
}

/// Reach the workspace of `file`: connect to the owning process if one runs, else
/// become the owner. Retries briefly while another process is starting up.
pub fn access(ws: Workspace, author: &Author, config: &DocConfig, keys: &Keys) -> Result<Access> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(client) = Client::connect(&ws) {
            return Ok(Access::Remote(client));
        }
        if let Some(svc) = Service::own(ws.clone(), author.clone(), config.clone(), keys.clone())? {
            return Ok(Access::Local(Box::new(svc)));
        }
        if Instant::now() > deadline {
            return Err(StoreError::Busy(ws.root().to_owned()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long live edits may stay on the screen with no change confirming them (a
/// typist's change follows its keys within `[commit] max_ms`, 2 s by default).
pub const LIVE_UNCONFIRMED_MS: u64 = 10_000;

/// A group change that would leave the document with no owner (removing or demoting
/// the only one) is refused before anything is written: nobody could manage the
/// group again, and a removed sole owner cannot even read what comes next.
fn refuse_losing_the_last_owner(
    members: tandem_auth::group::Members,
    me: [u8; 32],
    action: &tandem_auth::group::Action,
    file: &str,
) -> Result<()> {
    use tandem_auth::group::{Action, Role};
    // Only an owner can remove or demote an owner; anyone else is refused by the
    // group itself, with the reason.
    if members.role(&me) != Some(Role::Owner) {
        return Ok(());
    }
    let member = match action {
        Action::Remove { member } => member,
        Action::SetRole { member, role } if *role != Role::Owner => member,
        _ => return Ok(()),
    };
    let owners = members.roles.values().filter(|r| **r == Role::Owner).count();
    if members.role(member) == Some(Role::Owner) && owners == 1 {
        return Err(StoreError::BadRequest(format!(
            "{} is the only owner of {file}: make another member an owner first (`tandem group {file} role PEER_ID owner`)",
            tandem_auth::device::peer_id(member).map_or_else(|| "that member".to_owned(), |p| p.to_string())
        )));
    }
    Ok(())
}
