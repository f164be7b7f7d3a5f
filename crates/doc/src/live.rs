//! Live edits: keystrokes shown on other peers before the change carrying them exists.
//!
//! Local edits are committed to Automerge in coalesced changes (hundreds of ms apart),
//! and applying one remote change costs ~25 ms on a long history. So beside the
//! change, every local edit also travels at once in rope form as a [`LiveEdit`]: the
//! edit (char positions), the heads its transaction started from (the deps of the
//! change that will carry it), and its place in that transaction.
//!
//! A receiver whose heads equal that base, and which has no edits of its own in
//! flight, has exactly the sender's text before the edit, so the edit is exact and
//! goes straight onto its rope. Those speculative edits form an *overlay* over the
//! Automerge text, with exact maps both ways, until the change arrives: then the
//! overlay is taken back off the rope and the change's patches applied, in one step
//! under the document's lock, so the screen ends as it was in the common case and
//! Automerge is the truth again (a local edit that raced a live one at the very same
//! place may move to where Automerge puts it). Anything that breaks the
//! preconditions only means waiting for the change, never a wrong merge.

use automerge::{ActorId, ChangeHash};
use ropey::Rope;

use crate::changeset::{Assoc, ChangeSet};

/// Live edits bigger than this (chars inserted + deleted) are not sent: they wait
/// for their change (a big paste is not a keystroke, and may be cut into several
/// changes).
pub const MAX_LIVE_CHARS: usize = 4096;

/// One local edit, as typed, for peers to show before its change arrives.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveEdit {
    /// The heads the sender's open transaction started from: the deps of the change
    /// that will carry this edit.
    pub base: Vec<ChangeHash>,
    /// Its place among the live edits of that transaction: 0, 1, 2, ...
    pub seq: u32,
    /// The edit, on the sender's text after the live edits before it.
    pub edit: ChangeSet,
}

/// The sender's side: live edits of the open transaction, waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) queue: Vec<LiveEdit>,
    /// Live edits made in the open transaction (the next one's `seq`).
    pub(crate) seq: u32,
    /// An edit of this transaction was not sent (too big): peers wait for its change.
    pub(crate) broken: bool,
}

impl Outbox {
    /// Record `edit` made on the text at `base` plus this transaction's earlier edits.
    pub(crate) fn record(&mut self, base: &[ChangeHash], edit: &ChangeSet) {
        let (inserted, deleted) = edit.stats();
        if self.broken || inserted + deleted > MAX_LIVE_CHARS {
            self.broken = true;
            return;
        }
        self.queue.push(LiveEdit { base: base.to_vec(), seq: self.seq, edit: edit.clone() });
        self.seq += 1;
    }

    /// The transaction was committed: the next edit starts a new one.
    pub(crate) fn committed(&mut self) {
        self.seq = 0;
        self.broken = false;
    }
}

/// The receiver's side: one peer's live edits shown ahead of Automerge.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// Whose transaction, and the heads it started from.
    pub(crate) actor: ActorId,
    pub(crate) base: Vec<ChangeHash>,
    /// The `seq` of the next live edit that fits.
    pub(crate) next: u32,
    /// Automerge's text -> the rope.
    pub(crate) forward: ChangeSet,
    /// The rope -> Automerge's text.
    pub(crate) back: ChangeSet,
    /// No local edit was made since it started: further live edits are still exact.
    pub(crate) exact: bool,
}

/// Same heads, in any order.
pub(crate) fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    a.len() == b.len() && a.iter().all(|h| b.contains(h))
}

impl Overlay {
    /// Start an overlay over a rope of `len` chars that equals Automerge's text.
    pub(crate) fn new(actor: ActorId, base: Vec<ChangeHash>, len: usize) -> Overlay {
        Overlay {
            actor,
            base,
            next: 0,
            forward: ChangeSet::identity(len),
            back: ChangeSet::identity(len),
            exact: true,
        }
    }

    /// True when `live` from `actor` is the next edit of this overlay's transaction.
    pub(crate) fn fits(&self, actor: &ActorId, live: &LiveEdit) -> bool {
        self.exact && *actor == self.actor && live.seq == self.next && same_heads(&live.base, &self.base)
    }

    /// Add a live edit about to be applied to `rope`.
    pub(crate) fn push(&mut self, edit: &ChangeSet, rope: &Rope) {
        self.back = edit.invert(rope).compose(&self.back);
        self.forward = self.forward.compose(edit);
        self.next += 1;
    }

    /// A local edit of the rope: returns it as it applies to Automerge's text, and
    /// keeps the maps in step. Its order against speculative text at the very same
    /// position, or its deletion of speculative text, is settled when the change
    /// arrives (the rope then follows Automerge).
    pub(crate) fn local(&mut self, edit: &ChangeSet) -> ChangeSet {
        // Ties ordered the same way on both sides, so rope + back' = Automerge + edit'.
        let on_automerge = edit.rebase(&self.back);
        self.back = self.back.rebase_mine_first(edit);
        self.forward = self.forward.rebase(&on_automerge);
        self.exact = false;
        on_automerge
    }

    /// Where a position of Automerge's text is on the rope.
    pub(crate) fn to_rope(&self, pos: usize) -> usize {
        self.forward.map_pos(pos.min(self.forward.len()), Assoc::After)
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
    fn local_edit_over_a_live_delete_maps_back() {
        let rope = Rope::from_str("\r\n");
        let mut o = Overlay::new(ActorId::from(vec![1; 16]), vec![], 2);
        let live = ChangeSet::splice(2, 1, 1, "").unwrap();
        o.push(&live, &rope);
        let mut shown = rope.clone();
        live.apply(&mut shown);
        let local = ChangeSet::splice(1, 0, 1, " ").unwrap();
        let on_am = o.local(&local);
        let mut am = rope.clone();
        on_am.apply(&mut am);
        local.apply(&mut shown);
        let mut back = shown.clone();
        o.back.apply(&mut back);
        // The rope maps back onto exactly what Automerge got.
        assert_eq!(back, am, "{on_am:?} {:?}", o.back);
        assert_eq!(am.len_chars(), 2);
    }
}
