//! [`Document`]: a rope and an Automerge text kept equal.

use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, PatchAction, ROOT, ReadDoc,
    transaction::{CommitOptions, Transactable},
};
use ropey::Rope;

use crate::changeset::ChangeSet;
use crate::cursor::{CursorId, Cursors, Selection};
use crate::live::{self, Ids, LiveEdit, LiveOp, Outbox, Placed, Shown};
use crate::undo::History;

/// The map key of the document's text object.
const TEXT_KEY: &str = "text";
/// Most Automerge operations one local change may hold. An open transaction costs
/// about 250 bytes per operation: a 5M-char paste in one transaction peaks at 1.6 GB
/// and takes 5.4 s; committed every 64K chars it peaks at 64 MB and takes 1.3 s.
const MAX_CHANGE_OPS: usize = 1 << 16;
/// Actor of the genesis change: fixed, so every document starts from the same first
/// change and independently created copies share one text object.
const GENESIS_ACTOR: [u8; 16] = [0; 16];

/// How long after a peer's last live edit it counts as typing at the same time.
pub const CONCURRENT_MS: u64 = 2_000;

/// Who makes the local edits of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    /// A human-readable name, recorded in every change (Automerge's author field).
    pub name: String,
    /// The device's Automerge actor id.
    pub actor: ActorId,
}

impl Author {
    pub fn new(name: impl Into<String>, actor: ActorId) -> Self {
        Self { name: name.into(), actor }
    }
}

/// Tunables of a document. The defaults are justified by the replay benchmark
/// (see BENCHMARKS.md).
#[derive(Clone, Debug)]
pub struct DocConfig {
    /// Commit pending local edits once no edit has been made for this long.
    pub commit_idle_ms: u64,
    /// ... or once the oldest pending edit is this old, even while typing goes on.
    pub commit_max_ms: u64,
    /// While a peer is typing too (its live edits arrived within the last
    /// [`CONCURRENT_MS`]), commit once no edit has been made for this long instead
    /// of [`Self::commit_idle_ms`]: every typist's keys are shown at once as live
    /// edits, so steady typing still coalesces (up to [`Self::commit_max_ms`]), and
    /// when everyone stops, every peer's Automerge agrees sooner. (A short maximum
    /// instead, 200 ms, cost a change per two keystrokes at 10 keys/s: 174 bytes a
    /// keystroke on the wire for changes alone, `tandem-bench load --peers 2`; and
    /// 150 ms here committed every key at 6 keys/s, 418 bytes a keystroke,
    /// `tandem-bench central --peers 2`: keys 167 ms apart must not look idle.)
    pub concurrent_idle_ms: u64,
    /// Typing pauses longer than this start a new undo step.
    pub undo_group_ms: u64,
    /// Undo steps kept.
    pub undo_depth: usize,
}

impl Default for DocConfig {
    fn default() -> Self {
        Self {
            commit_idle_ms: 300,
            commit_max_ms: 2_000,
            concurrent_idle_ms: 250,
            undo_group_ms: 1_000,
            undo_depth: 1_000,
        }
    }
}

/// Errors of the document core. Every one names what was wrong.
#[derive(Debug)]
pub enum DocError {
    /// An edit that does not fit the document (wrong length, range outside it).
    BadEdit(String),
    /// Bytes that are not an Automerge document or change.
    Corrupt(String),
    /// A well-formed Automerge document that is not a tandem text document.
    NotText(String),
    /// A version id that names no version (malformed, unknown or ambiguous).
    BadVersion(String),
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocError::BadEdit(m) => write!(f, "invalid edit: {m}"),
            DocError::Corrupt(m) => write!(f, "corrupt document data: {m}"),
            DocError::NotText(m) => write!(f, "not a tandem text document: {m}"),
            DocError::BadVersion(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DocError {}

/// One committed change, as history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeInfo {
    pub hash: ChangeHash,
    pub actor: ActorId,
    /// The author name recorded in the change, if any.
    pub author: Option<String>,
    pub seq: u64,
    /// Milliseconds since the Unix epoch, as the author's clock said.
    pub time_ms: i64,
    pub deps: Vec<ChangeHash>,
    /// Automerge operations in the change.
    pub ops: u64,
    /// Counter of its first operation (its operations are `start_op..start_op + ops`).
    pub start_op: u64,
}

/// Where an edit applied to the document came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Local,
    Remote,
    Undo,
    Redo,
}

/// A rope and an Automerge text document kept equal, with cursors, per-user undo and
/// coalesced commits. See the crate documentation for the flow.
pub struct Document {
    am: AutoCommit,
    text: ObjId,
    rope: Rope,
    heads: Vec<ChangeHash>,
    author: Author,
    config: DocConfig,
    /// Time of the first and the last uncommitted local edit.
    pending: Option<(u64, u64)>,
    /// Operations in the open transaction.
    pending_ops: usize,
    /// Local changes committed but not yet handed out by [`Document::take_local_changes`].
    unsent: Vec<ChangeHash>,
    /// The local edits of the open transaction, in order, as Automerge got them.
    /// They are composed only when asked for ([`Document::take_local_edits`]):
    /// composing each keystroke into one edit costs a walk of everything the
    /// transaction touched, which made a long transaction quadratic.
    pending_edits: Vec<ChangeSet>,
    /// The local edits of each committed change, for [`Document::take_local_edits`].
    committed_edits: Vec<Vec<ChangeSet>>,
    /// Keep local edits for [`Document::take_local_edits`] (someone watches them).
    keep_edits: bool,
    cursors: Cursors,
    history: History,
    /// Local edits waiting to go out as live edits, when recording them.
    live_out: Option<Outbox>,
    /// Peers' live edits on the rope ahead of Automerge (see the `live` module).
    shown: Option<Shown>,
    /// When a peer's live edit last arrived.
    peer_typed_at: Option<u64>,
    /// Counts every change to the rope (see [`Document::revision`]).
    revision: u64,
    /// While Automerge is out applying remote changes (see [`Document::detach`]): the
    /// local edits made meanwhile, composed, as they apply to Automerge's text.
    held: Option<ChangeSet>,
    /// Small local edits not yet spliced into Automerge's open transaction, composed
    /// (as they apply to Automerge's text). Only while nobody needs Automerge's names
    /// for each keystroke (not sharing, no peer's live edits shown): typing a word is
    /// then one Automerge splice at the commit instead of one per key, and a splice
    /// costs about the same for one char as for ten. Empty whenever no edit is
    /// pending; applied before anything reads Automerge ([`Self::apply_unapplied`]).
    unapplied: Option<ChangeSet>,
    /// Chars inserted plus deleted by the edits in [`Self::unapplied`].
    unapplied_chars: usize,
}

/// Most chars (inserted plus deleted, summed over its edits) and runs that
/// [`Document::unapplied`] may hold. Composing a keystroke costs a walk of the
/// runs and a split of the inserted text it lands in: kept small, so typing for
/// a long time in one transaction, or at many places, does not make each keystroke
/// slower (unbounded, the automerge-paper trace in one transaction spent 60% of its
/// time splitting one ever longer insert).
const UNAPPLIED_CHARS: usize = 128;
const UNAPPLIED_RUNS: usize = 16;

/// A text patch as an edit of a text of `len` chars; `None` for anything else or a
/// patch that does not fit.
fn text_edit(action: &PatchAction, len: usize) -> Option<ChangeSet> {
    match action {
        PatchAction::SpliceText { index, value, .. } => {
            ChangeSet::splice(len, *index, 0, &value.make_string())
        }
        PatchAction::DeleteSeq { index, length } => ChangeSet::splice(len, *index, *length, ""),
        _ => None,
    }
}

/// Automerge taken out of a [`Document`] to apply remote changes on another thread
/// while the rope stays editable (see [`Document::detach`]).
pub struct Detached {
    am: AutoCommit,
    changes: Vec<Change>,
    patches: Vec<automerge::Patch>,
    result: Result<(), String>,
}

impl Detached {
    /// Apply the changes (the ~25 ms of a long history), collecting the patches.
    pub fn apply(mut self) -> Detached {
        let changes = std::mem::take(&mut self.changes);
        self.am.update_diff_cursor();
        self.result = self.am.apply_changes(changes).map_err(|e| e.to_string());
        self.patches = self.am.diff_incremental();
        self.am.reset_diff_cursor();
        self
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("len_chars", &self.rope.len_chars())
            .field("heads", &self.heads)
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// An empty document.
    pub fn new(author: Author, config: DocConfig) -> Self {
        let mut am = AutoCommit::new().with_actor(ActorId::from(&GENESIS_ACTOR[..]));
        let text = am
            .put_object(ROOT, TEXT_KEY, ObjType::Text)
            .expect("putting an object on an empty document's root cannot fail");
        am.commit_with(CommitOptions::default().with_time(0));
        Self::wrap(am, text, author, config)
    }

    /// A stand-in that shows `rope` and takes edits at once, while the real document
    /// (the same text, with its history) loads: Automerge is left out (the document
    /// is detached from the start), so making one costs nothing however long the text
    /// is. Its edits are for display only; history reads must wait for the real one.
    pub fn preview(rope: Rope, author: Author, config: DocConfig) -> Self {
        let mut doc = Self::new(author, config);
        doc.rope = rope;
        doc.held = Some(ChangeSet::identity(doc.rope.len_chars()));
        doc
    }

    /// A document holding `text`, committed by `author` at `now_ms` (as one change, or
    /// several for a text of more than 64K chars).
    pub fn with_text(author: Author, config: DocConfig, text: &str, now_ms: u64) -> Self {
        let mut doc = Self::new(author, config);
        if !text.is_empty() {
            let edit = ChangeSet::splice(0, 0, 0, text).expect("insert into an empty document");
            doc.apply_edit(&edit, Origin::Local, now_ms);
            doc.history = History::new(doc.config.undo_group_ms, doc.config.undo_depth);
            doc.flush_pending();
            doc.unsent.clear();
            doc.committed_edits.clear();
        }
        doc
    }

    /// Load a document saved with [`Document::save`], then apply `changes` after it.
    pub fn load(
        saved: &[u8],
        changes: Vec<Change>,
        author: Author,
        config: DocConfig,
    ) -> Result<Self, DocError> {
        let mut am = AutoCommit::load(saved).map_err(|e| DocError::Corrupt(e.to_string()))?;
        if !changes.is_empty() {
            am.apply_changes(changes).map_err(|e| DocError::Corrupt(e.to_string()))?;
        }
        let text = match am.get(ROOT, TEXT_KEY) {
            Ok(Some((automerge::Value::Object(ObjType::Text), id))) => id,
            Ok(_) => {
                return Err(DocError::NotText(format!("no text object at key {TEXT_KEY:?}")));
            }
            Err(e) => return Err(DocError::Corrupt(e.to_string())),
        };
        Ok(Self::wrap(am, text, author, config))
    }

    /// Build a document from changes alone (the genesis change is implied).
    pub fn from_changes(changes: Vec<Change>, author: Author, config: DocConfig) -> Result<Self, DocError> {
        let mut doc = Self::new(author, config);
        doc.apply_remote(changes, 0)?;
        doc.unsent.clear();
        doc.history = History::new(doc.config.undo_group_ms, doc.config.undo_depth);
        Ok(doc)
    }

    fn wrap(mut am: AutoCommit, text: ObjId, author: Author, config: DocConfig) -> Self {
        am.set_author(Some(automerge::Author::from(author.name.as_bytes().to_vec())));
        am.set_actor(author.actor.clone());
        let rope = Rope::from_str(&am.text(&text).unwrap_or_default());
        let heads = am.get_heads();
        let history = History::new(config.undo_group_ms, config.undo_depth);
        Self {
            am,
            text,
            rope,
            heads,
            author,
            config,
            pending: None,
            pending_ops: 0,
            unsent: Vec::new(),
            pending_edits: Vec::new(),
            committed_edits: Vec::new(),
            keep_edits: false,
            cursors: Cursors::default(),
            history,
            live_out: None,
            shown: None,
            peer_typed_at: None,
            revision: 0,
            held: None,
            unapplied: None,
            unapplied_chars: 0,
        }
    }

    /// The text as shown: the Automerge text (pending edits included), plus a peer's
    /// live edits whose change has not arrived yet (see [`Self::apply_live`]).
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Automerge's text: the rope without the peers' live edits shown ahead of their
    /// changes (what history holds, and what a save writes). The rope stays as it
    /// is: a save must not take the peers' keystrokes off the screen.
    pub fn committed_text(&self) -> String {
        match &self.shown {
            Some(shown) if !shown.is_off() => {
                let mut rope = self.rope.clone();
                shown.back.apply(&mut rope);
                rope.to_string()
            }
            _ => self.rope.to_string(),
        }
    }

    /// A number that changes whenever the rope does (so a screen can tell it must
    /// redraw without comparing text).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Length in chars.
    pub fn len_chars(&self) -> usize {
        self.rope.len_chars()
    }

    pub fn author(&self) -> &Author {
        &self.author
    }

    pub fn config(&self) -> &DocConfig {
        &self.config
    }

    /// Heads as of the last commit (pending edits are not part of any change yet).
    pub fn heads(&self) -> &[ChangeHash] {
        &self.heads
    }

    /// True when local edits wait to be committed.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Apply a local edit: rope and Automerge in one call, cursors mapped, undo recorded.
    pub fn edit(&mut self, edit: &ChangeSet, now_ms: u64) -> Result<(), DocError> {
        if edit.len() != self.rope.len_chars() {
            return Err(DocError::BadEdit(format!(
                "edit is for a document of {} chars, this one has {}",
                edit.len(),
                self.rope.len_chars()
            )));
        }
        if edit.is_identity() {
            return Ok(());
        }
        // Invert before applying: cloning the rope instead would make the edit copy
        // the tree path it touches.
        let inverse = edit.invert(&self.rope);
        let selection = self.cursor(CursorId::LOCAL).unwrap_or_default();
        self.apply_edit(edit, Origin::Local, now_ms);
        self.history.record_local(edit, inverse, selection, now_ms);
        Ok(())
    }

    /// Replace `delete` chars at `pos` with `insert` (a local edit).
    pub fn splice(&mut self, pos: usize, delete: usize, insert: &str, now_ms: u64) -> Result<(), DocError> {
        let len = self.rope.len_chars();
        let edit = ChangeSet::splice(len, pos, delete, insert).ok_or_else(|| {
            DocError::BadEdit(format!(
                "range {pos}..{} is outside the document (0..{len})",
                pos.saturating_add(delete)
            ))
        })?;
        self.edit(&edit, now_ms)
    }

    /// Replace the whole text by `new` as a minimal edit (so history shows the real change).
    pub fn replace_text(&mut self, new: &str, now_ms: u64) -> Result<ChangeSet, DocError> {
        let edit = crate::diff::diff(&self.rope.to_string(), new);
        self.edit(&edit, now_ms)?;
        Ok(edit)
    }

    fn apply_edit(&mut self, edit: &ChangeSet, origin: Origin, now_ms: u64) {
        if origin != Origin::Remote {
            // Under a peer's live edits the rope runs ahead of Automerge: Automerge
            // gets the edit as it applies to its own text.
            let on_automerge = match &mut self.shown {
                Some(shown) => shown.local(edit),
                None => edit.clone(),
            };
            let first = self.pending.map_or(now_ms, |(first, _)| first);
            self.pending = Some((first, now_ms));
            if let Some(held) = &mut self.held {
                // Automerge is out applying remote changes: it gets this on return,
                // and peers get it then as a live edit (see `reattach`).
                *held = held.compose(&on_automerge);
            } else {
                // Not sharing, a keystroke waits for the commit (see `unapplied`).
                let kept = self.keep_unapplied(&on_automerge, now_ms);
                if !kept {
                    self.splice_and_name(&on_automerge, now_ms);
                }
                if self.keep_edits {
                    self.pending_edits.push(on_automerge);
                }
            }
        }
        edit.apply(&mut self.rope);
        self.revision += 1;
        self.cursors.map(edit, origin != Origin::Remote);
    }

    /// Make a local edit (as it applies to Automerge's text) in Automerge's open
    /// transaction, and, while sharing and when it is small enough to be a
    /// keystroke, name it for peers as Automerge names it (a [`LiveEdit`]).
    fn splice_and_name(&mut self, on_automerge: &ChangeSet, now_ms: u64) {
        let (inserted, deleted) = on_automerge.stats();
        let mut live = (self.live_out.is_some() && inserted + deleted <= live::MAX_LIVE_CHARS).then(Vec::new);
        for s in on_automerge.splices() {
            let named = live
                .as_ref()
                .and_then(|_| live::before_splice(&Ids { am: &self.am, text: &self.text }, s.pos, s.delete));
            self.splice_automerge(s.pos, s.delete, s.insert, now_ms);
            if let Some(ops) = &mut live {
                let ids = Ids { am: &self.am, text: &self.text };
                let step = named.and_then(|(gone, after)| {
                    if !gone.is_empty() {
                        ops.push(LiveOp::Delete(gone));
                    }
                    if s.insert.is_empty() {
                        Some(())
                    } else {
                        live::inserted(&ids, after, s.pos, s.insert).map(|op| ops.push(op))
                    }
                });
                if step.is_none() {
                    live = None;
                }
            }
        }
        if let Some(out) = &mut self.live_out {
            out.record(live);
        }
    }

    /// Keep a local edit in [`Self::unapplied`] when it may wait for the commit (true),
    /// applying what is kept there first when the edit must go to Automerge now or
    /// would make it too big (false: the caller splices the edit).
    fn keep_unapplied(&mut self, edit: &ChangeSet, now_ms: u64) -> bool {
        let (inserted, deleted) = edit.stats();
        let size = inserted + deleted;
        if self.live_out.is_some() || self.shown.is_some() || size > UNAPPLIED_CHARS {
            self.apply_unapplied(now_ms);
            return false;
        }
        if self.unapplied_chars + size > UNAPPLIED_CHARS {
            self.apply_unapplied(now_ms);
        }
        self.unapplied_chars += size;
        let composed = match self.unapplied.take() {
            Some(before) => before.compose(edit),
            None => edit.clone(),
        };
        let runs = composed.ops().len();
        self.unapplied = Some(composed);
        if runs > UNAPPLIED_RUNS {
            self.apply_unapplied(now_ms);
        }
        true
    }

    /// Splice the edits kept in [`Self::unapplied`] into the open transaction.
    fn apply_unapplied(&mut self, now_ms: u64) {
        self.unapplied_chars = 0;
        if let Some(edit) = self.unapplied.take() {
            for s in edit.splices() {
                self.splice_automerge(s.pos, s.delete, s.insert, now_ms);
            }
        }
    }

    /// [`Self::apply_unapplied`] for readers without a clock: stamped like the last
    /// pending edit (an edit kept there is always pending).
    fn apply_unapplied_now(&mut self) {
        if let Some((_, last)) = self.pending {
            self.apply_unapplied(last);
        }
    }

    /// One splice into the open transaction, cut so no change exceeds
    /// [`MAX_CHANGE_OPS`] operations.
    fn splice_automerge(&mut self, pos: usize, delete: usize, insert: &str, now_ms: u64) {
        const FITS: &str = "a splice validated against the rope fits the Automerge text";
        let mut delete = delete;
        while delete > 0 {
            let n = delete.min(MAX_CHANGE_OPS - self.pending_ops);
            self.am.splice_text(&self.text, pos, n as isize, "").expect(FITS);
            delete -= n;
            self.count_ops(n, now_ms);
        }
        let mut pos = pos;
        let mut rest = insert;
        while !rest.is_empty() {
            let room = MAX_CHANGE_OPS - self.pending_ops;
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let (piece, tail) = rest.split_at(cut);
            self.am.splice_text(&self.text, pos, 0, piece).expect(FITS);
            let n = if tail.is_empty() { piece.chars().count() } else { room };
            pos += n;
            rest = tail;
            self.count_ops(n, now_ms);
        }
    }

    fn count_ops(&mut self, n: usize, now_ms: u64) {
        self.pending_ops += n;
        if self.pending_ops >= MAX_CHANGE_OPS {
            self.commit_transaction(now_ms);
        }
    }

    fn commit_transaction(&mut self, now_ms: u64) {
        self.apply_unapplied(now_ms);
        self.pending_ops = 0;
        if let Some(out) = &mut self.live_out {
            out.committed();
        }
        if !self.pending_edits.is_empty() {
            self.committed_edits.push(std::mem::take(&mut self.pending_edits));
        }
        // The author's name goes in every change's message: Automerge keeps one
        // author per actor (the name of its first change), and a device's actor is
        // its key, so a renamed device (TANDEM_NAME) would stay under its old name.
        let options =
            CommitOptions::default().with_time(now_ms as i64).with_message(self.author.name.clone());
        if let Some(hash) = self.am.commit_with(options) {
            self.unsent.push(hash);
        }
        self.heads = self.am.get_heads();
    }

    /// Commit pending local edits if the idle window or the maximum delay has passed.
    /// Returns the local changes made since the last call (see [`Self::commit`]).
    pub fn poll_commit(&mut self, now_ms: u64) -> Vec<Change> {
        if self.held.is_some() {
            return Vec::new();
        }
        if let Some((first, last)) = self.pending {
            let idle = now_ms.saturating_sub(last) >= self.idle_window(now_ms);
            let overdue = now_ms.saturating_sub(first) >= self.config.commit_max_ms;
            if idle || overdue {
                return self.commit(now_ms);
            }
        }
        self.take_local_changes()
    }

    /// How long without typing commits now: shorter while a peer types too.
    fn idle_window(&self, now_ms: u64) -> u64 {
        match self.peer_typed_at {
            Some(at) if now_ms.saturating_sub(at) < CONCURRENT_MS => {
                self.config.commit_idle_ms.min(self.config.concurrent_idle_ms)
            }
            _ => self.config.commit_idle_ms,
        }
    }

    /// When [`Self::poll_commit`] will next commit, if edits are pending.
    pub fn commit_deadline(&self) -> Option<u64> {
        self.pending
            .map(|(first, last)| (last + self.idle_window(last)).min(first + self.config.commit_max_ms))
    }

    /// Commit pending local edits now (flush). Returns every local change committed
    /// since the last call: usually one, more when a large edit was cut into several
    /// changes or a read or a remote apply had to commit first. The caller stores and
    /// sends them.
    pub fn commit(&mut self, now_ms: u64) -> Vec<Change> {
        self.attached();
        if self.pending.take().is_some() {
            self.commit_transaction(now_ms);
        }
        self.take_local_changes()
    }

    /// Keep the local edits of every commit from now on, for [`Self::take_local_edits`]
    /// (off by default: nobody may ever ask).
    pub fn keep_local_edits(&mut self, on: bool) {
        // The open transaction's earlier edits were not kept: commit it, so the
        // first edit handed out is a whole commit's.
        if on
            && !self.keep_edits
            && self.held.is_none()
            && let Some((_, last)) = self.pending.take()
        {
            self.commit_transaction(last);
        }
        self.keep_edits = on;
        if !on {
            self.pending_edits.clear();
            self.committed_edits.clear();
        }
    }

    /// The local edits committed since the last call, one composed edit per commit
    /// (oldest first; each applies to the text the previous one left). For change
    /// feeds such as `tandem watch`.
    pub fn take_local_edits(&mut self) -> Vec<ChangeSet> {
        let committed = std::mem::take(&mut self.committed_edits);
        committed.into_iter().filter_map(ChangeSet::compose_all).collect()
    }

    /// Forget the local edits committed since the last call (nobody watches them).
    pub fn discard_local_edits(&mut self) {
        self.committed_edits.clear();
    }

    /// Local changes committed since the last call, oldest first.
    pub fn take_local_changes(&mut self) -> Vec<Change> {
        self.attached();
        let hashes = std::mem::take(&mut self.unsent);
        hashes.iter().filter_map(|h| self.am.get_change_by_hash(h)).collect()
    }

    /// Apply a batch of changes from elsewhere with one Automerge call and turn the
    /// resulting patches into rope edits. Pending local edits are committed first.
    /// Returns the rope edits made, in order (empty when the changes were known).
    pub fn apply_remote(&mut self, changes: Vec<Change>, now_ms: u64) -> Result<Vec<ChangeSet>, DocError> {
        debug_assert!(self.held.is_none(), "apply_remote while detached");
        if self.pending.take().is_some() {
            self.commit_transaction(now_ms);
        }
        let mut edits = Vec::new();
        self.unshow_live(&mut edits, now_ms);
        // The patch log is on only around remote applies: logging every local
        // keystroke's ops costs more than the local edit itself.
        self.am.update_diff_cursor();
        let applied = self.am.apply_changes(changes);
        let patches = self.am.diff_incremental();
        self.am.reset_diff_cursor();
        applied.map_err(|e| DocError::Corrupt(format!("change rejected by Automerge: {e}")))?;
        self.heads = self.am.get_heads();
        let mut resync = false;
        for patch in patches {
            if patch.obj != self.text {
                resync |= patch.obj == ROOT;
                continue;
            }
            let edit = text_edit(&patch.action, self.rope.len_chars());
            match edit {
                Some(edit) => {
                    self.apply_edit(&edit, Origin::Remote, now_ms);
                    self.history.record_foreign(&edit);
                    edits.push(edit);
                }
                None => resync = true,
            }
        }
        if resync {
            edits.extend(self.resync());
        }
        self.reshow_live(&mut edits, now_ms);
        Ok(edits)
    }

    /// Take Automerge out to apply `changes` on another thread ([`Detached::apply`])
    /// while this document stays editable: local edits go on the rope at once and
    /// reach Automerge in [`Self::reattach`]. Pending local edits are committed first.
    /// Only the rope, cursors, undo and live edits work meanwhile: history reads,
    /// commits and positions wait for (or fall back until) the reattach.
    pub fn detach(&mut self, changes: Vec<Change>, now_ms: u64) -> Detached {
        debug_assert!(self.held.is_none(), "detached twice");
        if self.pending.take().is_some() {
            self.commit_transaction(now_ms);
        }
        self.held = Some(ChangeSet::identity(self.am_len()));
        let am = std::mem::replace(&mut self.am, AutoCommit::new());
        Detached { am, changes, patches: Vec::new(), result: Ok(()) }
    }

    /// True between [`Self::detach`] and [`Self::reattach`].
    pub fn is_detached(&self) -> bool {
        self.held.is_some()
    }

    /// Put Automerge back after [`Detached::apply`]: the remote edits go onto the rope
    /// (rebased over the local edits made meanwhile, which keep their place), and those
    /// local edits into Automerge's open transaction. Returns the rope edits made.
    pub fn reattach(&mut self, detached: Detached, now_ms: u64) -> Result<Vec<ChangeSet>, DocError> {
        let Detached { am, patches, result, .. } = detached;
        self.am = am;
        let held = self.held.take().unwrap_or_else(|| ChangeSet::identity(self.am_len()));
        self.heads = self.am.get_heads();
        // The remote edits as one change set on the text Automerge had when it left.
        let mut remote = ChangeSet::identity(held.len());
        let mut resync = false;
        for patch in patches {
            if patch.obj != self.text {
                resync |= patch.obj == ROOT;
                continue;
            }
            let step = text_edit(&patch.action, remote.len_after());
            match step {
                Some(step) => remote = remote.compose(&step),
                None => resync = true,
            }
        }
        // Ties ordered alike on both sides: rope + remote' = Automerge + held'.
        let on_rope = remote.rebase(&held);
        let held_after = held.rebase_mine_first(&remote);
        if !held_after.is_identity() {
            // Typed while Automerge was out: named for peers now, a few ms late. (Left
            // for its change, one unshown key made every later key of the typist
            // counted one behind on the other screens until the commit: keys 100 ms
            // late for up to 2 s, `tandem-bench load --peers 4`.)
            self.splice_and_name(&held_after, now_ms);
            if self.keep_edits {
                self.pending_edits.push(held_after);
            }
        }
        let mut edits = Vec::new();
        self.unshow_live(&mut edits, now_ms);
        if !on_rope.is_identity() {
            self.apply_edit(&on_rope, Origin::Remote, now_ms);
            self.history.record_foreign(&on_rope);
            edits.push(on_rope);
        }
        if resync {
            edits.extend(self.resync());
        }
        self.reshow_live(&mut edits, now_ms);
        result.map_err(|e| DocError::Corrupt(format!("change rejected by Automerge: {e}")))?;
        Ok(edits)
    }

    /// Take peers' live edits back off the rope before the changes carrying them are
    /// applied: the overlay's map makes the rope exactly Automerge's text, so the
    /// patches then name the same chars Automerge does (a text diff could not tell
    /// two equal neighbours apart, and undo would take the wrong one). The live edits
    /// not confirmed by then go back on ([`Self::reshow_live`]), so the screen ends
    /// as it was.
    fn unshow_live(&mut self, edits: &mut Vec<ChangeSet>, now_ms: u64) {
        let Some(shown) = &mut self.shown else { return };
        let back = shown.take_off();
        if !back.is_identity() {
            self.apply_edit(&back, Origin::Remote, now_ms);
            self.history.record_foreign(&back);
            edits.push(back);
        }
    }

    /// After [`Self::unshow_live`] and the changes: what Automerge now has is dropped
    /// from the live edits, shown chars the local user deleted are deleted for real
    /// if it has them, and the rest goes back on the rope.
    fn reshow_live(&mut self, edits: &mut Vec<ChangeSet>, now_ms: u64) {
        let Some(shown) = &mut self.shown else { return };
        shown.reset(self.rope.len_chars());
        let ids = Ids { am: &self.am, text: &self.text };
        shown.confirm(&ids);
        let mut doomed = Vec::new();
        shown.doomed.retain(|id| match ids.find(id) {
            Some((index, true)) => {
                doomed.push(index);
                false
            }
            Some((_, false)) => false,
            None => true,
        });
        if !doomed.is_empty() {
            doomed.sort_unstable();
            doomed.dedup();
            let mut edit = ChangeSet::new();
            let mut done = 0;
            for index in doomed {
                edit.retain(index - done);
                edit.delete(1);
                done = index + 1;
            }
            edit.retain(self.rope.len_chars() - done);
            // The rope is Automerge's text here: a local edit like any other.
            let shown = self.shown.take();
            self.apply_edit(&edit, Origin::Local, now_ms);
            self.history.record_foreign(&edit);
            edits.push(edit);
            self.shown = shown;
            if let Some(shown) = &mut self.shown {
                shown.reset(self.rope.len_chars());
            }
        }
        self.place_held(edits);
    }

    /// Put the held live edits that can go on the rope now on it, each retried until
    /// none more fits (one may name a char another brings).
    fn place_held(&mut self, edits: &mut Vec<ChangeSet>) {
        let Some(mut shown) = self.shown.take() else { return };
        loop {
            let mut progress = false;
            for i in shown.unplaced() {
                let placed = shown.place(i, &Ids { am: &self.am, text: &self.text }, &self.rope);
                if let Placed::Edit(edit) = placed {
                    // `self.shown` is out: a remote edit of the rope only.
                    self.apply_edit(&edit, Origin::Remote, 0);
                    self.history.record_foreign(&edit);
                    edits.push(edit);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        if !(shown.is_empty() && shown.is_off()) {
            self.shown = Some(shown);
        }
    }

    /// Reads of history need Automerge home (see [`Self::detach`]); callers wait.
    fn attached(&self) {
        debug_assert!(self.held.is_none(), "Automerge is detached: wait for the reattach");
    }

    /// Length of Automerge's text (the rope's unless live edits are shown).
    fn am_len(&self) -> usize {
        self.shown.as_ref().map_or(self.rope.len_chars(), |o| o.back.len_after())
    }

    /// Make the rope equal to Automerge's text again (after a root-level conflict or an
    /// unexpected patch). Returns the correcting edit, if one was needed.
    pub fn resync(&mut self) -> Option<ChangeSet> {
        self.attached();
        self.apply_unapplied_now();
        if let Ok(Some((automerge::Value::Object(ObjType::Text), id))) = self.am.get(ROOT, TEXT_KEY) {
            self.text = id;
        }
        let truth = self.am.text(&self.text).unwrap_or_default();
        let current = self.rope.to_string();
        if truth == current {
            return None;
        }
        let edit = crate::diff::diff(&current, &truth);
        self.apply_edit(&edit, Origin::Remote, 0);
        self.history.record_foreign(&edit);
        Some(edit)
    }

    /// The actor that inserted each char of `range` (char indices of Automerge's text,
    /// which is the rope's unless live edits are shown).
    pub fn char_actors(&mut self, range: std::ops::Range<usize>) -> Vec<ActorId> {
        self.apply_unapplied_now();
        self.am
            .list_range(&self.text, range)
            .filter_map(|item| match item.id() {
                ObjId::Id(_, actor, _) => Some(actor),
                ObjId::Root => None,
            })
            .collect()
    }

    /// For every line of the text, the change that last wrote into it (the newest
    /// change among the changes that inserted its chars); `None` for an empty line.
    pub fn blame(&mut self) -> Vec<Option<ChangeInfo>> {
        self.attached();
        let log = self.change_log();
        // Per actor, its changes by first operation.
        let mut by_actor: std::collections::HashMap<ActorId, Vec<&ChangeInfo>> = Default::default();
        for c in &log {
            by_actor.entry(c.actor.clone()).or_default().push(c);
        }
        for changes in by_actor.values_mut() {
            changes.sort_by_key(|c| c.start_op);
        }
        let change_of = |counter: u64, actor: &ActorId| -> Option<&ChangeInfo> {
            let changes = by_actor.get(actor)?;
            let i = changes.partition_point(|c| c.start_op <= counter).checked_sub(1)?;
            Some(changes[i]).filter(|c| counter < c.start_op + c.ops)
        };
        let text = self.am.text(&self.text).unwrap_or_default();
        let mut lines: Vec<Option<ChangeInfo>> = Vec::new();
        let mut newest: Option<&ChangeInfo> = None;
        let chars = text.chars();
        for (ch, item) in chars.zip(self.am.list_range(&self.text, ..)) {
            if let ObjId::Id(counter, actor, _) = item.id()
                && let Some(c) = change_of(counter, &actor)
                && newest.is_none_or(|n| (c.time_ms, c.start_op) > (n.time_ms, n.start_op))
            {
                newest = Some(c);
            }
            if ch == '\n' {
                lines.push(newest.take().cloned());
            }
        }
        if !text.is_empty() && !text.ends_with('\n') {
            lines.push(newest.cloned());
        }
        lines
    }

    /// True when the rope equals Automerge's text (an O(n) check for tests and verify).
    pub fn is_consistent(&self) -> bool {
        self.attached();
        let mut rope = self.rope.clone();
        if let Some(shown) = &self.shown {
            shown.back.apply(&mut rope);
        }
        let Ok(truth) = self.am.text(&self.text) else { return false };
        let mut truth = Rope::from_str(&truth);
        if let Some(edit) = &self.unapplied {
            if edit.len() != truth.len_chars() {
                return false;
            }
            edit.apply(&mut truth);
        }
        rope == truth
    }

    /// Record local edits as [`LiveEdit`]s for [`Self::take_live`] (while sharing).
    pub fn record_live(&mut self, on: bool) {
        self.apply_unapplied_now();
        self.live_out = on.then(Outbox::default);
    }

    /// Live edits made since the last call, oldest first.
    pub fn take_live(&mut self) -> Vec<LiveEdit> {
        self.live_out.as_mut().map(|out| std::mem::take(&mut out.queue)).unwrap_or_default()
    }

    /// Show a peer's live edit at once, where Automerge will put it. Returns the rope
    /// edit made; `None` when nothing could be shown yet (it names chars this
    /// document does not know: it waits for them, or for its change), or when it was
    /// shown already.
    pub fn apply_live(&mut self, actor: &ActorId, live: &LiveEdit, now_ms: u64) -> Option<ChangeSet> {
        if *actor == self.author.actor {
            return None;
        }
        self.peer_typed_at = Some(now_ms);
        // It is placed by Automerge's names: Automerge must have every local edit.
        self.apply_unapplied(now_ms);
        let len = self.rope.len_chars();
        let shown = self.shown.get_or_insert_with(|| Shown::new(len));
        let mut new = false;
        for op in &live.ops {
            new |= shown.hold(actor, op.clone());
        }
        if self.held.is_some() {
            // Automerge is out applying changes (it names the chars): held until the
            // reattach places it. Dropped here, it waited for its change instead
            // (about 100 ms at p99 with four typists, `tandem-bench load`).
            return None;
        }
        let mut edits = Vec::new();
        if new {
            self.place_held(&mut edits);
        } else if shown.is_empty() && shown.is_off() {
            self.shown = None;
        }
        ChangeSet::compose_all(edits)
    }

    /// True while peers' live edits are shown (or wait) ahead of their changes.
    pub fn has_overlay(&self) -> bool {
        self.shown.is_some()
    }

    /// Take `actor`'s live edits back off the rope: its peer went away before the
    /// changes carrying them came, so they may never come (the screen would show
    /// text no history has). Returns the edit; `None` when none of them is shown.
    pub fn drop_live_of(&mut self, actor: &ActorId) -> Option<ChangeSet> {
        if self.held.is_some() || !self.shown.as_mut()?.forget(actor) {
            return None;
        }
        let mut edits = Vec::new();
        self.unshow_live(&mut edits, 0);
        self.reshow_live(&mut edits, 0);
        ChangeSet::compose_all(edits)
    }

    /// Take live edits back off the rope when no change has confirmed them within
    /// `max_ms` of the last one (the peer that typed them went quiet: it crashed, or
    /// its connection broke where we cannot see it). Returns the edit.
    pub fn expire_live(&mut self, now_ms: u64, max_ms: u64) -> Option<ChangeSet> {
        let at = self.peer_typed_at?;
        if self.held.is_some() || self.shown.is_none() || now_ms.saturating_sub(at) < max_ms {
            return None;
        }
        self.settle()
    }

    /// Drop live edits shown ahead of their change, making the rope equal to
    /// Automerge's text (before writing the text anywhere durable). Returns the edit.
    pub fn settle(&mut self) -> Option<ChangeSet> {
        if self.held.is_some() {
            return None;
        }
        let mut edits = Vec::new();
        self.unshow_live(&mut edits, 0);
        self.shown = None;
        ChangeSet::compose_all(edits)
    }

    /// Undo the local user's newest undo step. Returns the edit it made, or `None`
    /// when there is nothing to undo.
    pub fn undo(&mut self, now_ms: u64) -> Option<ChangeSet> {
        let (edit, selection) = self.history.undo_edit()?;
        let inverse = edit.invert(&self.rope);
        let after_sel = self.cursor(CursorId::LOCAL).unwrap_or_default();
        self.apply_edit(&edit, Origin::Undo, now_ms);
        self.history.applied_undo(&edit, inverse, after_sel);
        self.set_cursor(CursorId::LOCAL, selection);
        Some(edit)
    }

    /// Redo the newest undone step. Returns the edit it made, or `None` when there is
    /// nothing to redo.
    pub fn redo(&mut self, now_ms: u64) -> Option<ChangeSet> {
        let (edit, selection) = self.history.redo_edit()?;
        let inverse = edit.invert(&self.rope);
        let after_sel = self.cursor(CursorId::LOCAL).unwrap_or_default();
        self.apply_edit(&edit, Origin::Redo, now_ms);
        self.history.applied_redo(&edit, inverse, after_sel);
        // After the redone text, as it was when it was typed (the selection saved
        // with the step is where the cursor was when it was undone).
        let cursor = edit.end_of_last_change().map_or(selection, Selection::caret);
        self.set_cursor(CursorId::LOCAL, cursor);
        Some(edit)
    }

    /// End the current undo group (call on cursor movement, focus change and the like).
    pub fn break_undo_group(&mut self) {
        self.history.break_group();
    }

    pub fn can_undo(&self) -> bool {
        self.history.can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.history.can_redo()
    }

    /// Register a cursor (a remote peer's) at `sel`.
    pub fn add_cursor(&mut self, sel: Selection) -> CursorId {
        self.cursors.add(sel.clamp(self.len_chars()))
    }

    pub fn cursor(&self, id: CursorId) -> Option<Selection> {
        self.cursors.get(id)
    }

    /// Move a cursor; positions past the end are clamped. False for an unknown id.
    pub fn set_cursor(&mut self, id: CursorId, sel: Selection) -> bool {
        self.cursors.set(id, sel.clamp(self.len_chars()))
    }

    pub fn remove_cursor(&mut self, id: CursorId) {
        self.cursors.remove(id)
    }

    pub fn cursors(&self) -> impl Iterator<Item = (CursorId, Selection)> + '_ {
        self.cursors.iter()
    }

    /// The whole document in Automerge's compact format (pending edits are committed first).
    pub fn save(&mut self, now_ms: u64) -> Vec<u8> {
        self.attached();
        if self.pending.take().is_some() {
            self.commit_transaction(now_ms);
        }
        self.am.save()
    }

    /// Changes the given heads do not have (all of them for `&[]`).
    pub fn changes_since(&mut self, have: &[ChangeHash]) -> Vec<Change> {
        self.attached();
        self.flush_pending();
        self.am.get_changes(have)
    }

    /// Commit pending edits stamped with the time of the last of them: for reads that
    /// need a closed transaction but have no clock.
    /// The changes stay queued for [`Self::take_local_changes`].
    fn flush_pending(&mut self) {
        if let Some((_, last)) = self.pending.take() {
            self.commit_transaction(last);
        }
    }

    /// Every change (pending edits are committed first), in causal order.
    pub fn change_log(&mut self) -> Vec<ChangeInfo> {
        self.attached();
        self.flush_pending();
        self.am
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| ChangeInfo {
                hash: m.hash,
                actor: m.actor.into_owned(),
                author: m
                    .message
                    .map(|n| n.into_owned())
                    .or_else(|| m.author.map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())),
                seq: m.seq,
                time_ms: m.timestamp,
                deps: m.deps,
                ops: (m.max_op + 1).saturating_sub(m.start_op),
                start_op: m.start_op,
            })
            .collect()
    }

    /// Number of changes (pending edits are committed first; the genesis change counts).
    pub fn change_count(&mut self) -> usize {
        self.attached();
        self.flush_pending();
        self.am.document().get_changes_meta(&[]).len()
    }

    /// A position that survives concurrent edits (an Automerge cursor's bytes): it
    /// names the char at `pos`, or the end of the text.
    pub fn stable_position(&self, pos: usize) -> Vec<u8> {
        if self.held.is_some() || self.unapplied.is_some() {
            // Automerge is out applying remote changes, or lacks the last keys (not
            // shared yet): peers fall back to the index.
            return Vec::new();
        }
        // Under live edits, the char is named in Automerge's text.
        let (pos, len) = match &self.shown {
            Some(o) => (o.to_automerge(pos), o.back.len_after()),
            None => (pos, self.len_chars()),
        };
        let at =
            if pos >= len { automerge::CursorPosition::End } else { automerge::CursorPosition::Index(pos) };
        self.am.get_cursor(&self.text, at, None).map(|c| c.to_bytes()).unwrap_or_default()
    }

    /// Where a [`Self::stable_position`] is now; `None` when the bytes are not a
    /// cursor or name a char this document does not know (yet).
    pub fn resolve_position(&self, stable: &[u8]) -> Option<usize> {
        if self.held.is_some() || self.unapplied.is_some() {
            return None;
        }
        let cursor = automerge::Cursor::try_from(stable).ok()?;
        let pos = self.am.get_cursor_position(&self.text, &cursor, None).ok()?;
        let pos = self.shown.as_ref().map_or(pos, |o| o.to_rope(pos, &self.rope));
        Some(pos.min(self.len_chars()))
    }

    /// Which of `hashes` this document does not have. Hashes that are current heads
    /// are answered at once; looking up others commits pending edits first (Automerge
    /// closes the open transaction to read its history).
    pub fn missing(&mut self, hashes: &[ChangeHash]) -> Vec<ChangeHash> {
        let unknown: Vec<ChangeHash> = hashes.iter().filter(|h| !self.heads.contains(h)).copied().collect();
        if unknown.is_empty() {
            return unknown;
        }
        self.attached();
        self.flush_pending();
        unknown.into_iter().filter(|h| self.am.get_change_meta_by_hash(h).is_none()).collect()
    }

    /// The change a version id names: a change hash or a unique prefix of one (at
    /// least 6 hex digits; `tandem log` prints 12).
    pub fn resolve_version(&mut self, id: &str) -> Result<ChangeHash, DocError> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 6 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DocError::BadVersion(format!(
                "version {id:?}: a version is 6 to 64 hex digits, as `tandem log` prints them"
            )));
        }
        let found: Vec<ChangeHash> = self
            .change_log()
            .into_iter()
            .map(|c| c.hash)
            .filter(|h| h.to_string().starts_with(&id))
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(DocError::BadVersion(format!(
                "no version {id} in this document; `tandem log` lists them"
            ))),
            _ => Err(DocError::BadVersion(format!(
                "version {id} is ambiguous ({} match); give more digits",
                found.len()
            ))),
        }
    }

    /// Text as it was at `heads`.
    pub fn text_at(&self, heads: &[ChangeHash]) -> Result<String, DocError> {
        self.attached();
        self.am.text_at(&self.text, heads).map_err(|e| DocError::BadEdit(format!("unknown version: {e}")))
    }
}
