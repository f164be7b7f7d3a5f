//! Live edits: keystrokes shown on other peers before the change carrying them exists.
//!
//! Local edits are committed to Automerge in coalesced changes (hundreds of ms apart),
//! and applying one remote change costs ~25 ms on a long history. So beside the
//! change, every local edit also travels at once as a [`LiveEdit`], named the way
//! Automerge names it: an insert says which char it goes after and the op ids its own
//! chars get; a delete says which chars it removes. Those names mean the same on
//! every peer whatever it has or has not received, so every typist's live edits can
//! be shown at once, in any order they arrive, over any local edits in flight.
//!
//! A receiver places a live insert as Automerge will (see [`Shown`]): right after the
//! char it names, past the following chars with greater ids (concurrent inserts at
//! the same place; Automerge puts the greatest id first). When the change arrives the
//! text is then already right, and the screen does not move. The chars shown ahead of
//! Automerge (and the chars hidden by live deletes) form an overlay over Automerge's
//! text with exact maps both ways. Before a change is applied the overlay comes off
//! (the rope is then exactly Automerge's text, so patches name the right chars), and
//! after it the live edits not yet confirmed go back on. Whatever a live edit names
//! that this peer does not know yet (a live edit lost or overtaken), it waits for:
//! never a wrong merge, at worst the wait for the change.
//!
//! One approximation: deleted chars (tombstones) are not seen by the receiver, so an
//! insert next to a deleted char that a concurrent insert at the same place went
//! after may be shown one place off until its change lands, which corrects it.

use std::cmp::Ordering;
use std::collections::HashSet;

use automerge::{ActorId, AutoCommit, Cursor, CursorPosition, ObjId, ReadDoc};
use ropey::Rope;

use crate::changeset::{Assoc, ChangeSet};

/// Live edits bigger than this (chars inserted + deleted) are not sent: they wait
/// for their change (a big paste is not a keystroke, and may be cut into several
/// changes).
pub const MAX_LIVE_CHARS: usize = 4096;

/// Most live operations a receiver keeps unconfirmed: beyond it, the oldest wait for
/// their changes (a peer flooding live edits cannot grow this without bound).
const MAX_HELD_OPS: usize = 4096;

/// A char of Automerge's text, named by the op that inserted it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ElemId {
    pub counter: u64,
    pub actor: ActorId,
}

impl ElemId {
    /// Automerge's order of ops: by counter, then by actor. Of concurrent inserts at
    /// one place, the greatest goes first.
    pub fn lamport_cmp(&self, other: &ElemId) -> Ordering {
        self.counter.cmp(&other.counter).then_with(|| self.actor.to_bytes().cmp(other.actor.to_bytes()))
    }

    fn cursor(&self) -> Option<Cursor> {
        Cursor::try_from(format!("{}@{}", self.counter, self.actor).as_str()).ok()
    }

    fn of_cursor(cursor: &Cursor) -> Option<ElemId> {
        let s = cursor.to_string();
        let (counter, actor) = s.split_once('@')?;
        Some(ElemId { counter: counter.parse().ok()?, actor: ActorId::try_from(actor).ok()? })
    }
}

/// One step of a live edit, in Automerge's names.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveOp {
    /// `text` inserted right after the char `after` (`None`: at the start); its chars
    /// are the sender's ops `first`, `first + 1`, ...
    Insert { after: Option<ElemId>, first: u64, text: String },
    /// These chars deleted.
    Delete(Vec<ElemId>),
}

/// One local edit, as typed, for peers to show before its change arrives.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveEdit {
    /// Its place among the live edits of the sender's open transaction: 0, 1, 2, ...
    /// (a relay replays a transaction's edits to a peer that comes late).
    pub seq: u32,
    /// Its steps, in the order they were made.
    pub ops: Vec<LiveOp>,
}

impl LiveEdit {
    /// Chars inserted and deleted.
    pub fn size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                LiveOp::Insert { text, .. } => text.chars().count(),
                LiveOp::Delete(ids) => ids.len(),
            })
            .sum()
    }
}

/// The sender's side: live edits of the open transaction, waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) queue: Vec<LiveEdit>,
    /// Live edits made in the open transaction (the next one's `seq`).
    pub(crate) seq: u32,
}

impl Outbox {
    /// Record the steps of one local edit (nothing when too big, or when a step could
    /// not be named: peers then wait for its change).
    pub(crate) fn record(&mut self, ops: Option<Vec<LiveOp>>) {
        let Some(ops) = ops.filter(|ops| !ops.is_empty()) else { return };
        let live = LiveEdit { seq: self.seq, ops };
        if live.size() > MAX_LIVE_CHARS {
            return;
        }
        self.queue.push(live);
        self.seq += 1;
    }

    /// The transaction was committed: the next edit starts a new one.
    pub(crate) fn committed(&mut self) {
        self.seq = 0;
    }
}

/// Automerge's text, asked about its chars by id.
pub(crate) struct Ids<'a> {
    pub(crate) am: &'a AutoCommit,
    pub(crate) text: &'a ObjId,
}

impl Ids<'_> {
    /// The id of the char at `index`.
    pub(crate) fn at(&self, index: usize) -> Option<ElemId> {
        let cursor = self.am.get_cursor(self.text, CursorPosition::Index(index), None).ok()?;
        ElemId::of_cursor(&cursor)
    }

    /// Where the char `id` is: its index (or, deleted, the index of the next visible
    /// char) and whether it is visible; `None` when Automerge has no such char.
    pub(crate) fn find(&self, id: &ElemId) -> Option<(usize, bool)> {
        // Automerge asserts that a cursor's op is in the object asked about; an id
        // named by a peer could be any op (its text object's own, a root key's), and
        // input must never panic, so those are ruled out first.
        if !self.may_be_a_char(id) {
            return None;
        }
        let cursor = id.cursor()?;
        let index = self.am.get_cursor_position(self.text, &cursor, None).ok()?;
        let visible = self.at(index).is_some_and(|at| at == *id);
        Some((index, visible))
    }

    /// False for the ops that make the document's objects and root keys, the only
    /// ops outside the text in a tandem document.
    fn may_be_a_char(&self, id: &ElemId) -> bool {
        let is =
            |obj: &ObjId| matches!(obj, ObjId::Id(ctr, actor, _) if *ctr == id.counter && *actor == id.actor);
        if is(self.text) {
            return false;
        }
        !self.am.keys(automerge::ROOT).any(|key| {
            self.am.get_all(automerge::ROOT, key.as_str()).is_ok_and(|all| all.iter().any(|(_, obj)| is(obj)))
        })
    }
}

/// The steps of a splice about to be made into Automerge at `pos` (deleting
/// `delete` chars): the ids of the chars it deletes and of the char its insert goes
/// after. The insert's own ids are known only once made (see [`inserted`]).
pub(crate) fn before_splice(ids: &Ids, pos: usize, delete: usize) -> Option<(Vec<ElemId>, Option<ElemId>)> {
    let deleted = (pos..pos + delete).map(|i| ids.at(i)).collect::<Option<Vec<_>>>()?;
    let after = if pos == 0 { None } else { Some(ids.at(pos - 1)?) };
    Some((deleted, after))
}

/// The insert step of a splice just made: `n` chars from `pos`, which must be one
/// run of the local actor's ops.
pub(crate) fn inserted(ids: &Ids, after: Option<ElemId>, pos: usize, text: &str) -> Option<LiveOp> {
    let n = text.chars().count();
    let first = ids.at(pos)?;
    let last = ids.at(pos + n - 1)?;
    (last.actor == first.actor && last.counter == first.counter + n as u64 - 1).then(|| LiveOp::Insert {
        after,
        first: first.counter,
        text: text.to_string(),
    })
}

/// A char shown ahead of Automerge (or deleted again before its change came).
#[derive(Debug, Clone)]
struct Pending {
    id: ElemId,
    /// Its place on the rope; when not shown, where it was.
    pos: usize,
    shown: bool,
}

/// A live step not yet confirmed by a change, with who sent it.
#[derive(Debug, Clone)]
struct Held {
    actor: ActorId,
    op: LiveOp,
    /// On the rope; false while it waits for a char it names.
    placed: bool,
}

/// What placing a live step did.
pub(crate) enum Placed {
    /// The rope edit that shows it (to apply now).
    Edit(ChangeSet),
    /// Nothing to show: a duplicate, or already in Automerge's text.
    Nothing,
    /// It names a char not known here yet.
    Wait,
}

/// The receiver's side: every peer's live edits shown ahead of Automerge.
#[derive(Debug)]
pub(crate) struct Shown {
    /// The rope -> Automerge's text (the other way is its inverse on the rope: see
    /// [`Self::forward`]; kept as one map, a local edit cannot leave two out of step).
    pub(crate) back: ChangeSet,
    /// Chars on the rope that Automerge does not have yet.
    pending: Vec<Pending>,
    /// Automerge's chars taken off the rope by a live delete.
    hidden: HashSet<ElemId>,
    /// Shown chars the local user deleted: deleted in Automerge once it has them.
    pub(crate) doomed: HashSet<ElemId>,
    /// The live steps not yet confirmed, in the order they came.
    held: Vec<Held>,
}

impl Shown {
    /// Nothing shown over a text of `len` chars.
    pub(crate) fn new(len: usize) -> Shown {
        Shown {
            back: ChangeSet::identity(len),
            pending: Vec::new(),
            hidden: HashSet::new(),
            doomed: HashSet::new(),
            held: Vec::new(),
        }
    }

    /// True when no live step waits for its change.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.doomed.is_empty()
    }

    /// True when the rope is Automerge's text.
    pub(crate) fn is_off(&self) -> bool {
        self.pending.is_empty() && self.hidden.is_empty()
    }

    /// Keep `op` from `actor` (unless it is held already); false for a duplicate.
    pub(crate) fn hold(&mut self, actor: &ActorId, op: LiveOp) -> bool {
        if self.held.iter().any(|h| h.actor == *actor && h.op == op) {
            return false;
        }
        if self.held.len() >= MAX_HELD_OPS {
            // The oldest is most likely confirmed soon; if it is not shown, it is
            // simply not shown.
            if let Some(i) = self.held.iter().position(|h| !h.placed) {
                self.held.remove(i);
            } else {
                return false;
            }
        }
        self.held.push(Held { actor: actor.clone(), op, placed: false });
        true
    }

    /// The held steps not on the rope, oldest first (to place).
    pub(crate) fn unplaced(&self) -> Vec<usize> {
        (0..self.held.len()).filter(|i| !self.held[*i].placed).collect()
    }

    /// Place held step `i` on `rope` (see [`Placed`]); the maps follow the edit, which
    /// the caller applies to the rope next.
    pub(crate) fn place(&mut self, i: usize, ids: &Ids, rope: &Rope) -> Placed {
        let Held { actor, op, .. } = self.held[i].clone();
        let placed = match &op {
            LiveOp::Insert { after, first, text } => {
                self.place_insert(ids, rope, &actor, after.as_ref(), *first, text)
            }
            LiveOp::Delete(targets) => self.place_delete(ids, rope, targets),
        };
        match placed {
            Placed::Wait => {}
            _ => self.held[i].placed = true,
        }
        placed
    }

    fn find_pending(&self, id: &ElemId) -> Option<&Pending> {
        self.pending.iter().find(|p| p.id == *id)
    }

    /// The id of the char at `pos` of the rope.
    fn id_at(&self, ids: &Ids, pos: usize) -> Option<ElemId> {
        if let Some(p) = self.pending.iter().find(|p| p.shown && p.pos == pos) {
            return Some(p.id.clone());
        }
        // An Automerge char: past any hidden chars mapped to this point.
        ids.at(self.back.map_pos(pos, Assoc::After))
    }

    /// The deleted chars this peer knows of at point `pos` of the rope: Automerge's
    /// chars a live delete hid there, and pending chars deleted there.
    fn tombstones_at<'s>(&'s self, ids: &'s Ids, pos: usize) -> impl Iterator<Item = ElemId> + 's {
        let (lo, hi) = if self.hidden.is_empty() {
            (0, 0)
        } else {
            (self.back.map_pos(pos, Assoc::Before), self.back.map_pos(pos, Assoc::After))
        };
        let hidden = (lo..hi).filter_map(|a| ids.at(a)).filter(|id| self.hidden.contains(id));
        let gone = self.pending.iter().filter(move |p| !p.shown && p.pos == pos).map(|p| p.id.clone());
        hidden.chain(gone)
    }

    fn place_insert(
        &mut self,
        ids: &Ids,
        rope: &Rope,
        actor: &ActorId,
        after: Option<&ElemId>,
        first: u64,
        text: &str,
    ) -> Placed {
        let n = text.chars().count();
        let forward = self.forward(rope);
        let me = ElemId { counter: first, actor: actor.clone() };
        if n == 0 || self.find_pending(&me).is_some() || ids.find(&me).is_some() {
            return Placed::Nothing;
        }
        // Right after the char named...
        let mut pos = match after {
            None => 0,
            Some(r) => match self.find_pending(r) {
                Some(p) => p.pos + usize::from(p.shown),
                None => match ids.find(r) {
                    Some((index, visible)) => forward.map_pos(index + usize::from(visible), Assoc::Before),
                    None => return Placed::Wait,
                },
            },
        };
        // ... past the chars inserted there concurrently with greater ids (and
        // theirs): Automerge's order.
        let len = rope.len_chars();
        while pos < len {
            // Deleted chars known here come first at this point (those hidden by
            // live deletes, and shown ones deleted again): a smaller one stops it.
            if self.tombstones_at(ids, pos).any(|t| t.lamport_cmp(&me) == Ordering::Less) {
                break;
            }
            match self.id_at(ids, pos) {
                Some(next) if next.lamport_cmp(&me) == Ordering::Greater => pos += 1,
                _ => break,
            }
        }
        let Some(edit) = ChangeSet::splice(len, pos, 0, text) else { return Placed::Wait };
        self.push(&edit, rope);
        for p in &mut self.pending {
            if p.pos >= pos {
                p.pos += n;
            }
        }
        for k in 0..n {
            let id = ElemId { counter: first + k as u64, actor: actor.clone() };
            self.pending.push(Pending { id, pos: pos + k, shown: true });
        }
        Placed::Edit(edit)
    }

    fn place_delete(&mut self, ids: &Ids, rope: &Rope, targets: &[ElemId]) -> Placed {
        // Where each target is on the rope: known everywhere, or the step waits.
        let forward = self.forward(rope);
        let mut at = Vec::new();
        let mut hide = Vec::new();
        for t in targets {
            if let Some(p) = self.find_pending(t) {
                if p.shown {
                    at.push(p.pos);
                }
            } else if self.hidden.contains(t) {
            } else {
                match ids.find(t) {
                    Some((index, true)) => {
                        at.push(forward.map_pos(index, Assoc::After));
                        hide.push(t.clone());
                    }
                    Some((_, false)) => {}
                    None => return Placed::Wait,
                }
            }
        }
        at.sort_unstable();
        at.dedup();
        if at.is_empty() {
            return Placed::Nothing;
        }
        let len = rope.len_chars();
        let mut edit = ChangeSet::new();
        let mut done = 0;
        for &p in &at {
            if p >= len {
                return Placed::Wait;
            }
            edit.retain(p - done);
            edit.delete(1);
            done = p + 1;
        }
        edit.retain(len - done);
        self.push(&edit, rope);
        self.hidden.extend(hide);
        for p in &mut self.pending {
            let before = at.partition_point(|x| *x < p.pos);
            if p.shown && at.get(before) == Some(&p.pos) {
                p.shown = false;
            }
            p.pos -= before;
        }
        Placed::Edit(edit)
    }

    /// Add an edit of shown text about to be applied to `rope`.
    fn push(&mut self, edit: &ChangeSet, rope: &Rope) {
        self.back = edit.invert(rope).compose(&self.back);
    }

    /// Automerge's text -> the rope (`rope` is the rope now).
    fn forward(&self, rope: &Rope) -> ChangeSet {
        self.back.invert(rope)
    }

    /// A local edit of the rope: returns it as it applies to Automerge's text, and
    /// keeps the maps in step. Its order against shown text at the very same
    /// position is settled when the change arrives (the rope then follows
    /// Automerge); shown chars it deletes are deleted in Automerge once it has them.
    pub(crate) fn local(&mut self, edit: &ChangeSet) -> ChangeSet {
        // Ties ordered the same way on both sides, so rope + back' = Automerge + edit'.
        let on_automerge = edit.rebase(&self.back);
        self.back = self.back.rebase_mine_first(edit);
        for p in &mut self.pending {
            if p.shown && edit.deletes(p.pos) {
                p.shown = false;
                self.doomed.insert(p.id.clone());
                p.pos = edit.map_pos(p.pos, Assoc::Before);
            } else {
                p.pos = edit.map_pos(p.pos, Assoc::After);
            }
        }
        on_automerge
    }

    /// Take everything shown off the rope's account: the caller makes the rope
    /// Automerge's text with `back`, returned here. The held steps stay, to be placed
    /// again ([`Self::confirm`] first).
    pub(crate) fn take_off(&mut self) -> ChangeSet {
        let back = std::mem::replace(&mut self.back, ChangeSet::identity(0));
        self.back = ChangeSet::identity(back.len_after());
        self.pending.clear();
        self.hidden.clear();
        for h in &mut self.held {
            h.placed = false;
        }
        back
    }

    /// The rope is Automerge's text again, of `len` chars: nothing shown.
    pub(crate) fn reset(&mut self, len: usize) {
        self.back = ChangeSet::identity(len);
        self.pending.clear();
        self.hidden.clear();
    }

    /// With everything taken off and changes applied: drop the held steps Automerge
    /// now has (their inserts made, their deletes done).
    pub(crate) fn confirm(&mut self, ids: &Ids) {
        self.held.retain_mut(|h| match &mut h.op {
            LiveOp::Insert { first, .. } => {
                ids.find(&ElemId { counter: *first, actor: h.actor.clone() }).is_none()
            }
            LiveOp::Delete(targets) => {
                targets.retain(|t| !matches!(ids.find(t), Some((_, false))));
                !targets.is_empty()
            }
        });
    }

    /// Drop every held step of `actor`; true when there were some.
    pub(crate) fn forget(&mut self, actor: &ActorId) -> bool {
        let before = self.held.len();
        self.held.retain(|h| h.actor != *actor);
        self.held.len() != before
    }

    /// Where a position of Automerge's text is on the rope.
    pub(crate) fn to_rope(&self, pos: usize, rope: &Rope) -> usize {
        self.forward(rope).map_pos(pos.min(self.back.len_after()), Assoc::After)
    }

    /// Where a position of the rope is in Automerge's text.
    pub(crate) fn to_automerge(&self, pos: usize) -> usize {
        self.back.map_pos(pos.min(self.back.len()), Assoc::Before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_name_automerge_chars() {
        let mut am = AutoCommit::new().with_actor(ActorId::from(vec![7; 16]));
        let text = automerge::transaction::Transactable::put_object(
            &mut am,
            automerge::ROOT,
            "text",
            automerge::ObjType::Text,
        )
        .unwrap();
        automerge::transaction::Transactable::splice_text(&mut am, &text, 0, 0, "abc").unwrap();
        let ids = Ids { am: &am, text: &text };
        let a = ids.at(0).unwrap();
        let c = ids.at(2).unwrap();
        assert_eq!(c.counter, a.counter + 2);
        assert_eq!(ids.find(&c), Some((2, true)));
        // The text object's own op is no char (and asking must not panic).
        let ObjId::Id(ctr, actor, _) = text.clone() else { panic!() };
        assert_eq!(ids.find(&ElemId { counter: ctr, actor }), None);
        assert_eq!(ids.find(&ElemId { counter: 99, actor: ActorId::from(vec![7; 16]) }), None);
        assert_eq!(ids.find(&ElemId { counter: 2, actor: ActorId::from(vec![8; 16]) }), None);
        automerge::transaction::Transactable::splice_text(&mut am, &text, 1, 1, "").unwrap();
        let ids = Ids { am: &am, text: &text };
        // Deleted: where the next visible char is, not visible.
        assert_eq!(ids.find(&ElemId { counter: a.counter + 1, actor: a.actor.clone() }), Some((1, false)));
    }
}
