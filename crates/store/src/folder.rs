//! A folder: a directory whose text files are all documents of its workspace, kept
//! so by `tandem sync DIR` whatever program edits them.
//!
//! The folder's tree is itself a document, the manifest ([`MANIFEST`]): an
//! append-only list of records, one a line, that say which document is at which
//! path. `add` and `move` put a document at a path (a rename moves the document: it
//! keeps its identity and history); `del` is a tombstone, with the heads the document
//! had when it was deleted; `keep` undoes a delete (the file came back, or was edited
//! where the delete did not see it). Records are only ever appended, never edited, so
//! the appends of two devices merge as whole lines (Automerge keeps one typist's run
//! of inserts together) and every device folds the same lines, in the same order, to
//! the same tree ([`Tree::parse`]). A tombstone is a line like any other: it lasts as
//! long as the folder, so a device that comes back after a year does not bring back
//! what was deleted meanwhile.
//!
//! [`Folder::reconcile`] compares the files on disk with the tree and records the
//! difference: new files become documents, edits are merged into their documents
//! character by character (three-way, from what tandem last saw there), a file gone
//! from one path whose text is at a new one is a rename, a file gone for good is
//! deleted (its history stays). Files that cannot be documents (binary, not UTF-8,
//! too large, unreadable, symbolic links, which are never followed) are skipped and
//! listed with the reason, never silently. `.tandemignore` (gitignore syntax, read
//! with the `ignore` crate's matcher) is a file of the folder like any other.
//! [`Folder::watch`] runs a reconcile whenever the file watcher (`notify`) reports a
//! change, with the renames it saw as hints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::error::{Result, StoreError};
use crate::{STORE_DIR, Service};

/// The manifest's path, relative to the folder (inside `.tandem/`, which is never
/// scanned as part of the folder).
pub const MANIFEST: &str = ".tandem/folder.tsv";
/// The ignore file of a folder (gitignore syntax), synced like any of its files.
pub const IGNORE_FILE: &str = ".tandemignore";
/// A git repository's own directory: syncing it between devices would corrupt the
/// repository (git has its own sync), so it is skipped, and listed as skipped.
const GIT_DIR: &str = ".git";
/// Files larger than this are skipped (a document is its whole text in memory).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// How often what failed (a full disk, a file being written) is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// One record of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Add { doc: String, path: String },
    Move { doc: String, path: String },
    Del { doc: String, heads: Vec<String> },
    Keep { doc: String },
}

impl Record {
    fn doc(&self) -> &str {
        match self {
            Record::Add { doc, .. }
            | Record::Move { doc, .. }
            | Record::Del { doc, .. }
            | Record::Keep { doc } => doc,
        }
    }

    /// The record as a manifest line by `device` at `ms`: five tab-separated fields.
    pub fn line(&self, device: &str, ms: u64) -> String {
        let (kind, arg) = match self {
            Record::Add { path, .. } => ("add", escape(path)),
            Record::Move { path, .. } => ("move", escape(path)),
            Record::Del { heads, .. } => ("del", heads.join(",")),
            Record::Keep { .. } => ("keep", "-".to_owned()),
        };
        format!("{kind}\t{}\t{arg}\t{}\t{ms}\n", self.doc(), escape(device))
    }

    fn parse(line: &str) -> Option<(Record, String)> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [kind, doc, arg, device, ms] = fields[..] else { return None };
        ms.parse::<u64>().ok()?;
        let valid_id = doc.len() == 32 && doc.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_id {
            return None;
        }
        let doc = doc.to_owned();
        let path = || unescape(arg).filter(|p| valid_path(p));
        let record = match kind {
            "add" => Record::Add { doc, path: path()? },
            "move" => Record::Move { doc, path: path()? },
            "del" => Record::Del {
                doc,
                heads: arg.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect(),
            },
            "keep" => Record::Keep { doc },
            _ => return None,
        };
        Some((record, unescape(device).unwrap_or_default()))
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            _ => return None,
        }
    }
    Some(out)
}

/// A path a record may name: relative, `/`-separated, no empty, `.` or `..` part,
/// and not inside `.tandem/`. A peer's manifest is input like any other.
pub fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 4096
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p.split('/').next() != Some(STORE_DIR)
}

/// One document of the folder, as the manifest has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub doc: String,
    /// The path its last `add` or `move` gave it.
    pub path: String,
    /// The heads it had when deleted, while it is deleted.
    pub deleted: Option<Vec<String>>,
    /// The device that added it (names a copy when two documents want one path).
    pub device: String,
    /// The line of its first record: the older of two documents keeps a path.
    first: usize,
}

/// The folder's tree: the manifest folded.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
    /// Lines that do not parse (a newer tandem's records, or damage): ignored.
    pub unreadable: usize,
}

impl Tree {
    pub fn parse(text: &str) -> Tree {
        let mut tree = Tree::default();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((record, device)) = Record::parse(line) else {
                tree.unreadable += 1;
                continue;
            };
            match record {
                Record::Add { doc, path } | Record::Move { doc, path } => {
                    let e = tree.entries.entry(doc.clone()).or_insert_with(|| Entry {
                        doc,
                        path: String::new(),
                        deleted: None,
                        device,
                        first: n,
                    });
                    e.path = path;
                }
                Record::Del { doc, heads } => {
                    if let Some(e) = tree.entries.get_mut(&doc) {
                        e.deleted = Some(heads);
                    }
                }
                Record::Keep { doc } => {
                    if let Some(e) = tree.entries.get_mut(&doc) {
                        e.deleted = None;
                    }
                }
            }
        }
        tree
    }

    pub fn entry(&self, doc: &str) -> Option<&Entry> {
        self.entries.get(doc)
    }

    /// Every document not deleted, by the path it has on disk. Two documents that
    /// want one path (created there on two devices at once) are both kept: the one
    /// added first keeps the path, the other is named after its device
    /// (`notes (from laptop).md`), the same on every device.
    pub fn live(&self) -> BTreeMap<String, &Entry> {
        let mut order: Vec<&Entry> = self.entries.values().filter(|e| e.deleted.is_none()).collect();
        order.sort_by_key(|e| e.first);
        let mut out = BTreeMap::new();
        for e in order {
            let mut path = e.path.clone();
            let mut n = 1;
            while out.contains_key(&path) {
                let who = if n == 1 { e.device.clone() } else { format!("{} {n}", e.device) };
                path = copy_name(&e.path, &who);
                n += 1;
            }
            out.insert(path, e);
        }
        out
    }

    /// The deleted document last at `path`, if any.
    pub fn deleted_at(&self, path: &str) -> Option<&Entry> {
        self.entries.values().filter(|e| e.deleted.is_some() && e.path == path).max_by_key(|e| e.first)
    }

    pub fn deleted(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.deleted.is_some())
    }
}

/// `dir/name.ext` as `dir/name (from WHO).ext`.
fn copy_name(path: &str, who: &str) -> String {
    let who: String =
        who.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let name = format!("{stem} (from {who}){ext}");
    if dir.is_empty() { name } else { format!("{dir}/{name}") }
}

/// What a scan found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// A text file, with the BLAKE3 (hex) of its bytes.
    Text(String),
    /// Not a document, and why.
    Skipped(String),
}

/// A file as last scanned: its length and mtime, and what it was then.
struct Seen {
    len: u64,
    mtime: SystemTime,
    found: Found,
}

/// What one reconcile recorded.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub added: Vec<String>,
    pub merged: Vec<String>,
    pub moved: Vec<(String, String)>,
    pub deleted: Vec<String>,
    /// Deleted documents brought back (the file is there again).
    pub kept: Vec<String>,
    /// Files that are not documents, with why (every scan lists them all).
    pub skipped: Vec<(String, String)>,
    /// Files that failed, with the error; the others went on.
    pub failed: Vec<(String, String)>,
}

impl Report {
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.merged.is_empty()
            && self.moved.is_empty()
            && self.deleted.is_empty()
            && self.kept.is_empty())
    }

    /// One line per thing recorded (for the terminal), paths relative to the folder;
    /// `dir` is the folder as the user named it, for the commands the lines suggest.
    pub fn lines(&self, dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.added.iter().map(|p| format!("added    {p}")));
        out.extend(self.merged.iter().map(|p| format!("merged   {p}")));
        out.extend(self.moved.iter().map(|(a, b)| format!("renamed  {a} -> {b}")));
        out.extend(
            self.deleted.iter().map(|p| format!("deleted  {p} (its history is kept: `tandem log {dir}{p}`)")),
        );
        out.extend(self.kept.iter().map(|p| format!("restored {p}")));
        out.extend(self.failed.iter().map(|(p, e)| format!("failed   {p}: {e}")));
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "added": self.added,
            "merged": self.merged,
            "moved": self.moved.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>(),
            "deleted": self.deleted,
            "restored": self.kept,
            "skipped": skipped_json(&self.skipped),
            "failed": self.failed.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        })
    }
}

fn skipped_json(skipped: &[(String, String)]) -> Vec<Value> {
    skipped.iter().map(|(p, why)| json!({"path": p, "why": why})).collect()
}

/// A folder kept by this process (which owns its workspace).
pub struct Folder {
    service: Arc<Service>,
    root: PathBuf,
    manifest: PathBuf,
    /// Names this device in the records it writes (and in copies' names).
    device: String,
    seen: HashMap<String, Seen>,
    /// The text (hash) each path's history was last seen to hold: a file still
    /// holding it needs no look at its history.
    recorded: HashMap<String, String>,
}

impl Folder {
    /// The folder at the root of `service`'s workspace; creates its manifest on
    /// first use. `device` names this device in what it records.
    pub fn open(service: Arc<Service>, device: &str) -> Result<Folder> {
        let root = service.workspace().root().to_owned();
        let manifest = root.join(MANIFEST);
        service.open(&manifest, true)?;
        let device: String = device.chars().filter(|c| !c.is_control()).take(32).collect();
        let device = if device.is_empty() { "device".to_owned() } else { device };
        Ok(Folder { service, root, manifest, device, seen: HashMap::new(), recorded: HashMap::new() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tree as the manifest says now.
    pub fn tree(&self) -> Result<Tree> {
        self.service.with_open(&self.manifest, |s| Ok(Tree::parse(&s.doc.rope().to_string())))
    }

    /// Append `records` to the manifest, as any edit: checked (this device must be a
    /// writer), stored, and handed to the network.
    fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = crate::now_ms();
        let insert: String = records.iter().map(|r| r.line(&self.device, now)).collect();
        let at = self.service.with_open(&self.manifest, |s| Ok(s.doc.len_chars()))?;
        self.service.handle(&crate::Request::Edit { file: self.manifest.clone(), at, delete: 0, insert })?;
        Ok(())
    }

    /// Walk the folder: every file not ignored, as text (with its hash) or skipped
    /// (with why). Files whose length and mtime did not change since the last scan
    /// are not read again.
    fn scan(&mut self) -> BTreeMap<String, Found> {
        scan(&self.root, &mut self.seen)
    }

    fn rel(&self, path: &Path) -> Option<String> {
        rel_of(&self.root, path)
    }

    /// Record what changed on disk since the last reconcile. `renames` are (from, to)
    /// pairs the watcher saw (files or directories, absolute); a rename it did not
    /// see is found by content.
    pub fn reconcile(&mut self, renames: &[(PathBuf, PathBuf)]) -> Result<Report> {
        let found = self.scan();
        let tree = self.tree()?;
        let mut report = Report::default();
        let mut records = Vec::new();
        // Where each live document is now, and where its file is, as this pass goes.
        let mut live: BTreeMap<String, String> =
            tree.live().into_iter().map(|(p, e)| (p, e.doc.clone())).collect();
        let texts: BTreeMap<&str, &str> = found
            .iter()
            .filter_map(|(p, f)| match f {
                Found::Text(h) => Some((p.as_str(), h.as_str())),
                Found::Skipped(_) => None,
            })
            .collect();

        // Renames the watcher saw, a directory's moving everything under it.
        for (from, to) in renames {
            let (Some(from), Some(to)) = (self.rel(from), self.rel(to)) else { continue };
            let moving: Vec<(String, String)> = live
                .keys()
                .filter_map(|p| {
                    let rest = if *p == from { Some("") } else { p.strip_prefix(&format!("{from}/")) }?;
                    let dest = if rest.is_empty() { to.clone() } else { format!("{to}/{rest}") };
                    Some((p.clone(), dest))
                })
                .collect();
            for (old, new) in moving {
                if texts.contains_key(new.as_str())
                    && !live.contains_key(&new)
                    && !texts.contains_key(old.as_str())
                {
                    self.move_doc(&mut live, &mut records, &mut report, &old, &new);
                }
            }
        }

        // Gone from their path: renamed (the same text is at a new path), or deleted.
        // A path still on disk but ignored or skipped now is neither: its document
        // stays as it was.
        let missing: Vec<String> = live
            .keys()
            .filter(|p| !found.contains_key(*p) && fs::symlink_metadata(self.root.join(p)).is_err())
            .cloned()
            .collect();
        let mut new_by_hash: HashMap<&str, Vec<&str>> = HashMap::new();
        for (p, h) in &texts {
            if !live.contains_key(*p) {
                new_by_hash.entry(h).or_default().push(p);
            }
        }
        for old in missing {
            let saved = crate::stored::saved_state(self.service.workspace(), &old);
            let target = saved.as_ref().and_then(|(_, hash, _)| {
                let candidates = new_by_hash.get_mut(hash.as_str())?;
                (!candidates.is_empty()).then(|| candidates.remove(0).to_owned())
            });
            match target {
                Some(new) => self.move_doc(&mut live, &mut records, &mut report, &old, &new),
                None => {
                    let doc = live.remove(&old).expect("missing paths are live");
                    let heads = saved.map(|(_, _, heads)| heads).unwrap_or_default();
                    records.push(Record::Del { doc, heads });
                    self.recorded.remove(&old);
                    report.deleted.push(old);
                }
            }
        }

        for (path, f) in &found {
            match f {
                Found::Skipped(why) => report.skipped.push((path.clone(), why.clone())),
                Found::Text(hash) => {
                    let file = self.root.join(path);
                    if live.contains_key(path) {
                        if self.recorded.get(path) == Some(hash) {
                            continue;
                        }
                        let saved = crate::stored::saved_state(self.service.workspace(), path);
                        if saved.is_some_and(|(_, h, _)| h == *hash) {
                            self.recorded.insert(path.clone(), hash.clone());
                            continue;
                        }
                        match self.merge(&file) {
                            Ok(()) => {
                                self.recorded.insert(path.clone(), hash.clone());
                                report.merged.push(path.clone());
                            }
                            Err(e) => report.failed.push((path.clone(), e.to_string())),
                        }
                        continue;
                    }
                    // A new file, or a deleted one back at its path (its history
                    // is still there): the document comes back, with what the file
                    // holds now merged in.
                    let back = tree.deleted_at(path).filter(|e| {
                        crate::stored::saved_state(self.service.workspace(), path)
                            .is_some_and(|(doc, _, _)| doc == e.doc)
                    });
                    match self.merge(&file) {
                        Ok(()) => {}
                        Err(e) => {
                            report.failed.push((path.clone(), e.to_string()));
                            continue;
                        }
                    }
                    if let Some(e) = back {
                        records.push(Record::Keep { doc: e.doc.clone() });
                        live.insert(path.clone(), e.doc.clone());
                        report.kept.push(path.clone());
                        continue;
                    }
                    match crate::stored::saved_state(self.service.workspace(), path) {
                        Some((doc, _, _)) => {
                            records.push(Record::Add { doc: doc.clone(), path: path.clone() });
                            live.insert(path.clone(), doc);
                            report.added.push(path.clone());
                        }
                        None => report.failed.push((path.clone(), "its history was not written".into())),
                    }
                }
            }
        }
        self.append(&records)?;
        Ok(report)
    }

    /// [`Folder::reconcile`], its failure (the manifest could not be read or
    /// written) reported like any file's: the next pass records it all again.
    fn reconcile_or_report(&mut self, renames: &[(PathBuf, PathBuf)]) -> Report {
        self.reconcile(renames).unwrap_or_else(|e| Report {
            failed: vec![(MANIFEST.to_owned(), e.to_string())],
            ..Report::default()
        })
    }

    /// Rename `old` to `new` in `live`, the records and the history on disk.
    fn move_doc(
        &mut self,
        live: &mut BTreeMap<String, String>,
        records: &mut Vec<Record>,
        report: &mut Report,
        old: &str,
        new: &str,
    ) {
        let Some(doc) = live.remove(old) else { return };
        self.recorded.remove(old);
        self.recorded.remove(new);
        match self.service.renamed(&self.root.join(old), &self.root.join(new)) {
            Ok(()) => {
                records.push(Record::Move { doc: doc.clone(), path: new.to_owned() });
                live.insert(new.to_owned(), doc);
                report.moved.push((old.to_owned(), new.to_owned()));
            }
            Err(e) => {
                live.insert(old.to_owned(), doc);
                report.failed.push((old.to_owned(), format!("renaming its history to {new}: {e}")));
            }
        }
    }

    /// Open `file`'s document (creating its history, or merging what changed in the
    /// file since tandem last saw it), then close it again: a folder of a thousand
    /// notes keeps none of them in memory.
    fn merge(&self, file: &Path) -> Result<()> {
        let result = self.service.open(file, false).map(|_| ());
        self.service.close(file)?;
        result
    }

    /// Reconcile now, then again whenever the watcher reports a change under the
    /// folder (after it has been quiet for `quiet`), handing each report to `sink`,
    /// until `sink` returns false or the watcher stops.
    pub fn watch(&mut self, quiet: Duration, mut sink: impl FnMut(&Report) -> bool) -> Result<()> {
        use notify::{EventKind, RecursiveMode, Watcher, event::ModifyKind, event::RenameMode};
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx)
            .map_err(|e| StoreError::BadRequest(format!("watching {}: {e}", self.root.display())))?;
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .map_err(|e| StoreError::BadRequest(format!("watching {}: {e}", self.root.display())))?;
        let mut report = self.reconcile_or_report(&[]);
        if !sink(&report) {
            return Ok(());
        }
        let store = self.root.join(STORE_DIR);
        // tandem's home may be in the folder; its log is written all the time.
        let home = crate::absolute(&crate::home_dir()).unwrap_or_else(|_| store.clone());
        let mut renames = Vec::new();
        let mut pending = false;
        loop {
            use std::sync::mpsc::RecvTimeoutError;
            // Quiet for a moment after a change; with failures to retry (a full
            // disk, say), every RETRY; otherwise asleep until the watcher wakes it.
            let wait = if pending { Some(quiet) } else { (!report.failed.is_empty()).then_some(RETRY) };
            let event = match wait {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return Ok(()),
                },
            };
            match event {
                Some(Ok(ev)) => {
                    // Reading is no change (and this loop's own scan reads the
                    // folder: counting it would wake the loop forever).
                    if matches!(ev.kind, EventKind::Access(_))
                        || ev.paths.iter().all(|p| p.starts_with(&store) || p.starts_with(&home))
                    {
                        continue;
                    }
                    if let EventKind::Modify(ModifyKind::Name(RenameMode::Both)) = ev.kind
                        && let [from, to] = &ev.paths[..]
                    {
                        renames.push((from.clone(), to.clone()));
                    }
                    pending = true;
                }
                Some(Err(e)) => {
                    // Overflowed or lost events: a full scan finds what they said.
                    tracing::warn!("file watcher: {e}; scanning the whole folder");
                    pending = true;
                }
                None => {
                    pending = false;
                    report = self.reconcile_or_report(&std::mem::take(&mut renames));
                    if !sink(&report) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `tandem sync DIR --status`: the folder's documents, the deleted ones, the
/// skipped files and what is on disk but not yet recorded. Reads only (the
/// manifest's plain file and the histories' states), so it answers while another
/// process keeps the folder.
pub fn status(ws: &crate::Workspace) -> Result<Value> {
    let root = ws.root();
    let found = scan(root, &mut HashMap::new());
    let tree = tree_on_disk(root);
    let live = tree.live();
    let mut files = Vec::new();
    let mut unrecorded = Vec::new();
    for (path, e) in &live {
        let saved = crate::stored::saved_state(ws, path);
        let state = match (found.get(path), saved) {
            (Some(Found::Text(h)), Some((_, saved, _))) if *h == saved => "recorded",
            (Some(Found::Text(_)), _) => "changed",
            (Some(Found::Skipped(_)), _) => "skipped",
            // Ignored from now on: the document stays as it was, not deleted.
            (None, _) if fs::symlink_metadata(root.join(path)).is_ok() => "ignored",
            (None, _) => "missing",
        };
        if !matches!(state, "recorded" | "ignored") {
            unrecorded.push(json!({"path": path, "state": state}));
        }
        files.push(json!({"path": path, "doc_id": e.doc, "state": state}));
    }
    for (path, f) in &found {
        if matches!(f, Found::Text(_)) && !live.contains_key(path) {
            unrecorded.push(json!({"path": path, "state": "new"}));
        }
    }
    let skipped: Vec<(String, String)> = found
        .iter()
        .filter_map(|(p, f)| match f {
            Found::Skipped(why) => Some((p.clone(), why.clone())),
            Found::Text(_) => None,
        })
        .collect();
    let deleted: Vec<Value> =
        tree.deleted().map(|e| json!({"path": e.path, "doc_id": e.doc, "heads": e.deleted})).collect();
    Ok(json!({
        "folder": root.display().to_string(),
        "synced": root.join(MANIFEST).exists(),
        "files": files,
        "deleted": deleted,
        "skipped": skipped_json(&skipped),
        "unrecorded": unrecorded,
        "unreadable_records": tree.unreadable,
    }))
}

/// Walk the folder at `root`: every file not ignored, as text (with its hash) or
/// skipped (with why). Files whose length and mtime are as in `cache` are not read
/// again; `cache` is left holding what this walk found.
fn scan(root: &Path, cache: &mut HashMap<String, Seen>) -> BTreeMap<String, Found> {
    let mut out = BTreeMap::new();
    // Directories never walked, with why: git's own data, and tandem's home (this
    // device's secret keys) when the folder holds it.
    let excluded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let home = crate::absolute(&crate::home_dir()).ok();
    let walk = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry({
            let excluded = excluded.clone();
            move |e| {
                let name = e.file_name();
                let dir = e.file_type().is_some_and(|t| t.is_dir());
                let why = if dir && name == GIT_DIR {
                    "a git repository's own data (never synced)"
                } else if dir && home.as_deref() == Some(e.path()) {
                    "tandem's own settings and this device's keys (never synced)"
                } else {
                    return name != STORE_DIR;
                };
                excluded.lock().expect("not poisoned").push((e.path().to_owned(), why));
                false
            }
        })
        .build();
    let mut seen = HashMap::new();
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = error_path(&e).and_then(|p| rel_of(root, p)).unwrap_or_default();
                let why = e.io_error().map_or_else(|| format!("cannot be read: {e}"), unreadable);
                out.insert(path, Found::Skipped(why));
                continue;
            }
        };
        let Some(rel) = rel_of(root, entry.path()) else { continue };
        if rel.is_empty() {
            continue;
        }
        let Some(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            continue;
        }
        if kind.is_symlink() {
            out.insert(rel, Found::Skipped("a symbolic link (never followed)".into()));
            continue;
        }
        if !kind.is_file() {
            out.insert(rel, Found::Skipped("not a regular file".into()));
            continue;
        }
        let found = match entry.metadata() {
            Err(e) => Found::Skipped(e.io_error().map_or_else(|| format!("cannot be read: {e}"), unreadable)),
            Ok(meta) => {
                let (len, mtime) = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                match cache.remove(&rel) {
                    Some(s) if s.len == len && s.mtime == mtime => {
                        seen.insert(rel.clone(), s);
                    }
                    _ => {
                        let found = classify(entry.path(), len);
                        seen.insert(rel.clone(), Seen { len, mtime, found });
                    }
                }
                seen[&rel].found.clone()
            }
        };
        out.insert(rel, found);
    }
    for (dir, why) in excluded.lock().expect("not poisoned").iter() {
        if let Some(rel) = rel_of(root, dir) {
            out.insert(rel + "/", Found::Skipped((*why).into()));
        }
    }
    *cache = seen;
    out
}

/// `path` relative to `root`, `/`-separated; `None` outside it or when not UTF-8.
fn rel_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// What `path` (of `len` bytes) is to a folder.
fn classify(path: &Path, len: u64) -> Found {
    if len > MAX_FILE_BYTES {
        return Found::Skipped(format!("larger than {} MiB", MAX_FILE_BYTES >> 20));
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return Found::Skipped(unreadable(&e)),
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    match crate::text_from_bytes(path, bytes) {
        Ok(_) => Found::Text(hash),
        Err(StoreError::Binary { offset, .. }) => {
            Found::Skipped(format!("binary (a NUL byte at offset {offset})"))
        }
        Err(StoreError::InvalidUtf8 { offset, .. }) => {
            Found::Skipped(format!("not UTF-8 text (invalid at byte {offset})"))
        }
        Err(e) => Found::Skipped(e.to_string()),
    }
}

/// Why a file that cannot be read is skipped, and what to do about it.
fn unreadable(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => "cannot be read: permission denied (check its permissions)".into(),
        ErrorKind::InvalidFilename => {
            "its path is too long to open (over 4096 bytes); shorten a folder's name".into()
        }
        _ => format!("cannot be read: {e}"),
    }
}

fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error_path(err),
        _ => None,
    }
}

/// The manifest's tree of the folder at `root`, read from its plain file without
/// owning the workspace (for `--status` while another process syncs).
pub fn tree_on_disk(root: &Path) -> Tree {
    Tree::parse(&fs::read_to_string(root.join(MANIFEST)).unwrap_or_default())
}

/// Paths of a tree's live documents.
pub fn live_paths(tree: &Tree) -> BTreeSet<String> {
    tree.live().into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    fn lines(records: &[(Record, &str)]) -> String {
        records.iter().map(|(r, d)| r.line(d, 1)).collect()
    }

    #[test]
    fn records_round_trip_with_awkward_paths() {
        for path in ["a.md", "dir/with\ttab.md", "back\\slash/x", "new\nline.txt", "ünï/cødé.md"] {
            let r = Record::Move { doc: A.into(), path: path.into() };
            let line = r.line("lap\ttop", 7);
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            let (back, device) = Record::parse(line.trim_end_matches('\n')).unwrap();
            assert_eq!(back, r);
            assert_eq!(device, "lap\ttop");
        }
    }

    #[test]
    fn a_rename_keeps_the_document_and_a_delete_is_a_tombstone_until_kept() {
        let text = lines(&[
            (Record::Add { doc: A.into(), path: "a.md".into() }, "lap"),
            (Record::Add { doc: B.into(), path: "b.md".into() }, "lap"),
            (Record::Move { doc: A.into(), path: "notes/a.md".into() }, "desk"),
            (Record::Del { doc: B.into(), heads: vec!["h1".into()] }, "desk"),
        ]);
        let tree = Tree::parse(&text);
        assert_eq!(live_paths(&tree).into_iter().collect::<Vec<_>>(), ["notes/a.md"]);
        assert_eq!(tree.deleted_at("b.md").unwrap().doc, B);
        let tree = Tree::parse(&(text + &Record::Keep { doc: B.into() }.line("lap", 2)));
        assert_eq!(live_paths(&tree).into_iter().collect::<Vec<_>>(), ["b.md", "notes/a.md"]);
    }

    #[test]
    fn two_documents_at_one_path_are_both_kept_and_named_the_same_everywhere() {
        let text = lines(&[
            (Record::Add { doc: B.into(), path: "todo.md".into() }, "desk top"),
            (Record::Add { doc: A.into(), path: "todo.md".into() }, "lap"),
        ]);
        let live = Tree::parse(&text).live().into_iter().map(|(p, e)| (p, e.doc.clone())).collect::<Vec<_>>();
        assert_eq!(
            live,
            [("todo (from lap).md".to_owned(), A.to_owned()), ("todo.md".to_owned(), B.to_owned())]
        );
    }

    #[test]
    fn hostile_records_are_ignored_not_obeyed() {
        let text = [
            format!("add\t{A}\t../../etc/passwd\tx\t1"),
            format!("add\t{A}\t.tandem/keys\tx\t1"),
            format!("add\t{A}\t/abs\tx\t1"),
            "add\tnot-an-id\ta.md\tx\t1".to_owned(),
            format!("frobnicate\t{A}\ta.md\tx\t1"),
            format!("add\t{A}\tbad\\qescape\tx\t1"),
            "\u{0}\t\t".to_owned(),
        ]
        .join("\n");
        let tree = Tree::parse(&text);
        assert!(tree.live().is_empty());
        assert_eq!(tree.unreadable, 7);
    }

    #[test]
    fn copy_names_keep_the_extension_and_directory() {
        assert_eq!(copy_name("notes/todo.md", "lap"), "notes/todo (from lap).md");
        assert_eq!(copy_name("Makefile", "my/desk"), "Makefile (from my-desk)");
        assert_eq!(copy_name(".hidden", "lap"), ".hidden (from lap)");
    }
}
