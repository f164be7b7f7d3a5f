//! Cursors and selections, ours and remote peers', mapped through every edit.
//!
//! Stickiness (what happens when text is inserted exactly at a position):
//! - the caret of the author of an edit moves behind the text it inserted (typing);
//! - any other caret stays in front of it: a remote insert at my caret never pushes
//!   me, an insert before my caret moves me right by exactly its length;
//! - a selection never grows because of someone else's insert at one of its ends.

use crate::changeset::{Assoc, ChangeSet};

/// A selection: `anchor` is where it started, `head` is where the caret is. A caret
/// with nothing selected has `anchor == head`. Positions are char indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    /// A caret at `pos` with nothing selected.
    pub fn caret(pos: usize) -> Self {
        Self { anchor: pos, head: pos }
    }

    /// The first selected char index.
    pub fn start(&self) -> usize {
        self.anchor.min(self.head)
    }

    /// One past the last selected char index.
    pub fn end(&self) -> usize {
        self.anchor.max(self.head)
    }

    /// True when nothing is selected.
    pub fn is_caret(&self) -> bool {
        self.anchor == self.head
    }

    /// This selection after `edit`; `own` is true when the selection's owner made the edit.
    pub fn map(&self, edit: &ChangeSet, own: bool) -> Selection {
        if self.is_caret() {
            let assoc = if own { Assoc::After } else { Assoc::Before };
            return Selection::caret(edit.map_pos(self.head, assoc));
        }
        let map_end = |pos: usize| {
            let assoc = if pos == self.start() { Assoc::After } else { Assoc::Before };
            edit.map_pos(pos, assoc)
        };
        Selection { anchor: map_end(self.anchor), head: map_end(self.head) }
    }

    /// Clamp into a document of `len` chars.
    pub fn clamp(&self, len: usize) -> Selection {
        Selection { anchor: self.anchor.min(len), head: self.head.min(len) }
    }
}

/// Names a cursor registered with a [`crate::Document`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CursorId(pub(crate) u32);

impl CursorId {
    /// The local user's own cursor; it always exists.
    pub const LOCAL: CursorId = CursorId(0);
}

/// The cursors of one document: slot 0 is the local user's.
#[derive(Clone, Debug)]
pub(crate) struct Cursors {
    slots: Vec<Option<Selection>>,
}

impl Default for Cursors {
    fn default() -> Self {
        Self { slots: vec![Some(Selection::default())] }
    }
}

impl Cursors {
    pub fn add(&mut self, sel: Selection) -> CursorId {
        if let Some(free) = self.slots.iter().skip(1).position(Option::is_none) {
            self.slots[free + 1] = Some(sel);
            return CursorId(free as u32 + 1);
        }
        self.slots.push(Some(sel));
        CursorId(self.slots.len() as u32 - 1)
    }

    pub fn get(&self, id: CursorId) -> Option<Selection> {
        self.slots.get(id.0 as usize).copied().flatten()
    }

    pub fn set(&mut self, id: CursorId, sel: Selection) -> bool {
        match self.slots.get_mut(id.0 as usize) {
            Some(slot @ Some(_)) => {
                *slot = Some(sel);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, id: CursorId) {
        if id != CursorId::LOCAL
            && let Some(slot) = self.slots.get_mut(id.0 as usize)
        {
            *slot = None;
        }
    }

    /// Map every cursor through `edit`; `local_edit` says whether the local user made it.
    pub fn map(&mut self, edit: &ChangeSet, local_edit: bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(sel) = slot {
                *sel = sel.map(edit, local_edit && i == 0);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (CursorId, Selection)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.map(|s| (CursorId(i as u32), s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_insert_before_cursor_moves_cursor_right() {
        let edit = ChangeSet::splice(10, 2, 0, "abc").unwrap();
        assert_eq!(Selection::caret(5).map(&edit, false), Selection::caret(8));
    }

    #[test]
    fn remote_insert_at_cursor_does_not_push_it() {
        let edit = ChangeSet::splice(10, 5, 0, "abc").unwrap();
        assert_eq!(Selection::caret(5).map(&edit, false), Selection::caret(5));
        assert_eq!(Selection::caret(5).map(&edit, true), Selection::caret(8));
    }

    #[test]
    fn selection_does_not_grow_from_inserts_at_its_ends() {
        let sel = Selection { anchor: 2, head: 5 };
        let at_start = ChangeSet::splice(10, 2, 0, "xx").unwrap();
        assert_eq!(sel.map(&at_start, false), Selection { anchor: 4, head: 7 });
        let at_end = ChangeSet::splice(10, 5, 0, "xx").unwrap();
        assert_eq!(sel.map(&at_end, false), Selection { anchor: 2, head: 5 });
    }
}
