//! Per-user undo and redo.
//!
//! Every edit applied to the document, whoever made it, is appended to a log. An
//! undo step keeps the inverse of the local user's own edits, valid right after its
//! last edit; undoing rebases that inverse over everything logged since (so it lands
//! where the text is now, and never deletes text someone else inserted) and applies it.

use std::collections::VecDeque;

use crate::changeset::ChangeSet;
use crate::cursor::Selection;

/// What kind of local edit a step is made of; only like edits are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Insert,
    Delete,
    Other,
}

#[derive(Clone, Debug)]
struct Step {
    /// Undoes the step; applies to the document as it was right after log entry `at`.
    inverse: ChangeSet,
    at: u64,
    /// The local selection before the step, restored by undo.
    selection: Selection,
}

#[derive(Clone, Debug)]
struct OpenGroup {
    kind: Kind,
    /// Where the next typed char (or backspace) must happen to join this group.
    next_pos: usize,
    last_ms: u64,
    last_char_was_space: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct History {
    undo: VecDeque<Step>,
    redo: Vec<Step>,
    log: VecDeque<(u64, ChangeSet)>,
    next_seq: u64,
    open: Option<OpenGroup>,
    group_ms: u64,
    depth: usize,
}

/// A single-splice view of an edit: `(pos, deleted, inserted text)`.
fn single_splice(edit: &ChangeSet) -> Option<(usize, usize, &str)> {
    let splices = edit.splices();
    match splices.as_slice() {
        [s] => Some((s.pos, s.delete, s.insert)),
        _ => None,
    }
}

impl History {
    pub fn new(group_ms: u64, depth: usize) -> Self {
        Self {
            undo: VecDeque::new(),
            redo: Vec::new(),
            log: VecDeque::new(),
            next_seq: 0,
            open: None,
            group_ms,
            depth: depth.max(1),
        }
    }

    fn push_log(&mut self, edit: &ChangeSet) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.undo.is_empty() || !self.redo.is_empty() {
            self.log.push_back((seq, edit.clone()));
        }
        seq
    }

    /// Forget log entries no step can need any more.
    fn trim(&mut self) {
        while self.undo.len() > self.depth {
            self.undo.pop_front();
        }
        // Steps are pushed in log order, so each stack's oldest step is at its bottom.
        let oldest = self.undo.front().into_iter().chain(self.redo.first()).map(|s| s.at).min();
        match oldest {
            None => self.log.clear(),
            Some(at) => {
                while self.log.front().is_some_and(|(seq, _)| *seq <= at) {
                    self.log.pop_front();
                }
            }
        }
    }

    /// Close the open group: the next local edit starts a new undo step.
    pub fn break_group(&mut self) {
        self.open = None;
    }

    /// Record an edit made by someone else (or by the document itself).
    pub fn record_foreign(&mut self, edit: &ChangeSet) {
        self.open = None;
        self.push_log(edit);
    }

    /// Record a local edit and its inverse; `selection` is the local selection before it.
    pub fn record_local(&mut self, edit: &ChangeSet, inverse: ChangeSet, selection: Selection, now_ms: u64) {
        let seq = self.push_log(edit);
        self.redo.clear();

        let splice = single_splice(edit);
        let kind = match splice {
            Some((_, 0, ins)) if !ins.is_empty() => Kind::Insert,
            Some((_, del, "")) if del > 0 => Kind::Delete,
            _ => Kind::Other,
        };
        let joins = match (&self.open, splice) {
            (Some(open), Some((pos, del, ins))) => {
                let in_time = now_ms.saturating_sub(open.last_ms) <= self.group_ms;
                let adjacent = match kind {
                    Kind::Insert => pos == open.next_pos,
                    // Backspace (ends where the last one started) or forward delete.
                    Kind::Delete => pos + del == open.next_pos || pos == open.next_pos,
                    Kind::Other => false,
                };
                let starts_word = kind == Kind::Insert
                    && open.last_char_was_space
                    && !ins.chars().next().is_some_and(char::is_whitespace);
                open.kind == kind && kind != Kind::Other && in_time && adjacent && !starts_word
            }
            _ => false,
        };
        if joins {
            let step = self.undo.back_mut().expect("an open group has a step");
            step.inverse = inverse.compose(&step.inverse);
            step.at = seq;
        } else {
            self.undo.push_back(Step { inverse, at: seq, selection });
        }
        // Pastes and multi-char inserts are steps of their own.
        let single_char = splice.is_some_and(|(_, _, ins)| ins.chars().count() <= 1);
        self.open = match (kind, splice) {
            (Kind::Insert, Some((pos, _, ins))) if single_char => Some(OpenGroup {
                kind,
                next_pos: pos + 1,
                last_ms: now_ms,
                last_char_was_space: ins.chars().all(char::is_whitespace),
            }),
            (Kind::Delete, Some((pos, _, _))) => {
                Some(OpenGroup { kind, next_pos: pos, last_ms: now_ms, last_char_was_space: false })
            }
            _ => None,
        };
        self.trim();
    }

    fn rebased(&self, step: &Step) -> ChangeSet {
        self.log
            .iter()
            .filter(|(seq, _)| *seq > step.at)
            .fold(step.inverse.clone(), |inv, (_, edit)| inv.rebase(edit))
    }

    /// The edit that undoes the newest step, and the selection to restore. The caller
    /// applies it and then calls [`History::applied_undo`].
    pub fn undo_edit(&mut self) -> Option<(ChangeSet, Selection)> {
        self.open = None;
        let step = self.undo.back()?;
        Some((self.rebased(step), step.selection))
    }

    /// The edit that redoes the newest undone step.
    pub fn redo_edit(&mut self) -> Option<(ChangeSet, Selection)> {
        self.open = None;
        let step = self.redo.last()?;
        Some((self.rebased(step), step.selection))
    }

    /// Record that the undo edit (whose inverse is `inverse`) was applied.
    pub fn applied_undo(&mut self, edit: &ChangeSet, inverse: ChangeSet, selection: Selection) {
        self.undo.pop_back();
        let seq = self.push_log(edit);
        self.redo.push(Step { inverse, at: seq, selection });
        self.trim();
    }

    /// Record that the redo edit (whose inverse is `inverse`) was applied.
    pub fn applied_redo(&mut self, edit: &ChangeSet, inverse: ChangeSet, selection: Selection) {
        self.redo.pop();
        let seq = self.push_log(edit);
        self.undo.push_back(Step { inverse, at: seq, selection });
        self.trim();
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }
}
