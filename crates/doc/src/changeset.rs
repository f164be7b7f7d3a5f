//! The one edit value of tandem: a [`ChangeSet`].
//!
//! A change set walks a whole document from start to end as a list of
//! `Retain(n)`, `Delete(n)` and `Insert(text)` operations, counted in chars
//! (Unicode scalar values, which are both ropey's char indices and Automerge's
//! default text indices). The same value is applied to the rope, turned into
//! Automerge splices, inverted for undo, composed, rebased over a concurrent
//! edit, and used to move every cursor.

use ropey::Rope;

/// One step of a [`ChangeSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Keep the next `n` chars.
    Retain(usize),
    /// Remove the next `n` chars.
    Delete(usize),
    /// Insert this text here.
    Insert(String),
}

/// Which side of an insertion made exactly at a position that position ends up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assoc {
    /// Stay in front of text inserted at this position.
    Before,
    /// Move behind text inserted at this position.
    After,
}

/// An edit of a whole document: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeSet {
    ops: Vec<Op>,
    len: usize,
    len_after: usize,
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn split_at_char(s: &str, n: usize) -> (&str, &str) {
    let byte = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    s.split_at(byte)
}

impl ChangeSet {
    /// An empty change set for a document of `len` chars (call the builder methods next).
    pub fn new() -> Self {
        Self::default()
    }

    /// The change set that leaves a document of `len` chars as it is.
    pub fn identity(len: usize) -> Self {
        let mut cs = Self::new();
        cs.retain(len);
        cs
    }

    /// Replace `delete` chars at `pos` with `insert`, in a document of `doc_len` chars.
    ///
    /// Returns `None` when the range does not lie inside the document.
    pub fn splice(doc_len: usize, pos: usize, delete: usize, insert: &str) -> Option<Self> {
        let end = pos.checked_add(delete)?;
        if end > doc_len {
            return None;
        }
        let mut cs = Self::new();
        cs.retain(pos);
        cs.delete(delete);
        cs.insert(insert);
        cs.retain(doc_len - end);
        Some(cs)
    }

    /// Length of the document this change set applies to, in chars.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for the change set of an empty document.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.len_after == 0
    }

    /// Length of the document after applying it, in chars.
    pub fn len_after(&self) -> usize {
        self.len_after
    }

    /// The operations, start to end.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// True when applying it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.ops.iter().all(|op| matches!(op, Op::Retain(_)))
    }

    /// Keep the next `n` chars (builder).
    pub fn retain(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.len += n;
        self.len_after += n;
        if let Some(Op::Retain(last)) = self.ops.last_mut() {
            *last += n;
        } else {
            self.ops.push(Op::Retain(n));
        }
    }

    /// Remove the next `n` chars (builder).
    pub fn delete(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.len += n;
        // Keep the canonical order Delete-then-Insert at one position so that equal
        // edits compare equal.
        match self.ops.as_mut_slice() {
            [.., Op::Delete(last)] => *last += n,
            [.., Op::Delete(d), Op::Insert(_)] => *d += n,
            [.., Op::Insert(_)] => {
                let ins = self.ops.pop().expect("matched a last op");
                self.ops.push(Op::Delete(n));
                self.ops.push(ins);
            }
            _ => self.ops.push(Op::Delete(n)),
        }
    }

    /// Insert `text` here (builder).
    pub fn insert(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.len_after += char_len(text);
        if let Some(Op::Insert(last)) = self.ops.last_mut() {
            last.push_str(text);
        } else {
            self.ops.push(Op::Insert(text.to_owned()));
        }
    }

    /// Apply to a rope whose length is [`Self::len`].
    pub fn apply(&self, rope: &mut Rope) {
        debug_assert_eq!(rope.len_chars(), self.len, "change set applied to a rope of another length");
        let mut pos = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => pos += n,
                Op::Delete(n) => rope.remove(pos..pos + n),
                Op::Insert(s) => {
                    rope.insert(pos, s);
                    pos += char_len(s);
                }
            }
        }
    }

    /// The edit as a list of sequential splices `(pos, delete, insert)`: each position is
    /// in the document as it is after the splices before it, which is how Automerge's
    /// `splice_text` wants them.
    pub fn splices(&self) -> Vec<Splice<'_>> {
        let mut out: Vec<Splice<'_>> = Vec::new();
        let mut pos = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => pos += n,
                Op::Delete(n) => out.push(Splice { pos, delete: *n, insert: "" }),
                Op::Insert(s) => {
                    match out.last_mut() {
                        Some(last) if last.pos == pos && last.insert.is_empty() => last.insert = s,
                        _ => out.push(Splice { pos, delete: 0, insert: s }),
                    }
                    pos += char_len(s);
                }
            }
        }
        out
    }

    /// Where the last thing this edit changes ends, in the new document: after its
    /// last insertion, or where its last deletion was. `None` for an identity.
    pub fn end_of_last_change(&self) -> Option<usize> {
        let (mut new, mut last) = (0usize, None);
        for op in &self.ops {
            match op {
                Op::Retain(n) => new += n,
                Op::Delete(_) => last = Some(new),
                Op::Insert(s) => {
                    new += char_len(s);
                    last = Some(new);
                }
            }
        }
        last
    }

    /// True when this edit deletes the char at `pos` of the old document.
    pub fn deletes(&self, pos: usize) -> bool {
        let mut old = 0usize;
        for op in &self.ops {
            match op {
                Op::Retain(n) | Op::Delete(n) if pos < old + n => return matches!(op, Op::Delete(_)),
                Op::Retain(n) | Op::Delete(n) => old += n,
                Op::Insert(_) => {}
            }
        }
        false
    }

    /// Where a position of the old document is in the new one.
    pub fn map_pos(&self, pos: usize, assoc: Assoc) -> usize {
        let (mut old, mut new) = (0usize, 0usize);
        for op in &self.ops {
            match op {
                Op::Retain(n) => {
                    if pos < old + n {
                        return new + (pos - old);
                    }
                    old += n;
                    new += n;
                }
                Op::Delete(n) => {
                    if pos < old + n {
                        return new;
                    }
                    old += n;
                }
                Op::Insert(s) => {
                    if pos == old && assoc == Assoc::Before {
                        return new;
                    }
                    new += char_len(s);
                }
            }
        }
        new + pos.saturating_sub(old)
    }

    /// The change set that undoes this one; `original` is the document before it.
    pub fn invert(&self, original: &Rope) -> ChangeSet {
        let mut inv = ChangeSet::new();
        let mut pos = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => {
                    inv.retain(*n);
                    pos += n;
                }
                Op::Delete(n) => {
                    inv.insert(&original.slice(pos..pos + n).to_string());
                    pos += n;
                }
                Op::Insert(s) => inv.delete(char_len(s)),
            }
        }
        inv
    }

    /// `self` followed by `next` as one change set (`next.len()` must be `self.len_after()`).
    pub fn compose(&self, next: &ChangeSet) -> ChangeSet {
        debug_assert_eq!(self.len_after, next.len, "composing change sets of mismatched lengths");
        let mut out = ChangeSet::new();
        let mut a = self.ops.iter().cloned();
        let mut b = next.ops.iter().cloned();
        let (mut ha, mut hb) = (a.next(), b.next());
        loop {
            match (ha.take(), hb.take()) {
                (None, None) => break,
                (Some(Op::Delete(n)), h) => {
                    out.delete(n);
                    ha = a.next();
                    hb = h;
                }
                (h, Some(Op::Insert(s))) => {
                    out.insert(&s);
                    hb = b.next();
                    ha = h;
                }
                (Some(Op::Retain(i)), Some(Op::Retain(j))) => {
                    out.retain(i.min(j));
                    ha = if i > j { Some(Op::Retain(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Retain(j - i)) } else { b.next() };
                }
                (Some(Op::Retain(i)), Some(Op::Delete(j))) => {
                    out.delete(i.min(j));
                    ha = if i > j { Some(Op::Retain(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Delete(j - i)) } else { b.next() };
                }
                (Some(Op::Insert(s)), Some(Op::Retain(j))) => {
                    let n = char_len(&s);
                    if n <= j {
                        out.insert(&s);
                        ha = a.next();
                        hb = if j > n { Some(Op::Retain(j - n)) } else { b.next() };
                    } else {
                        let (head, tail) = split_at_char(&s, j);
                        out.insert(head);
                        ha = Some(Op::Insert(tail.to_owned()));
                        hb = b.next();
                    }
                }
                (Some(Op::Insert(s)), Some(Op::Delete(j))) => {
                    let n = char_len(&s);
                    if n <= j {
                        ha = a.next();
                        hb = if j > n { Some(Op::Delete(j - n)) } else { b.next() };
                    } else {
                        ha = Some(Op::Insert(split_at_char(&s, j).1.to_owned()));
                        hb = b.next();
                    }
                }
                // Lengths disagree: the caller broke the contract; stop rather than loop.
                (Some(_), None) | (None, Some(_)) => break,
            }
        }
        out
    }

    /// `edits` applied one after the other, as one change set; `None` when there are
    /// none. Composed in pairs, then pairs of pairs: each round walks every op once,
    /// so n edits cost O(n log n) where folding them left to right costs O(n^2).
    pub fn compose_all(edits: Vec<ChangeSet>) -> Option<ChangeSet> {
        let mut round = edits;
        while round.len() > 1 {
            let mut next = Vec::with_capacity(round.len().div_ceil(2));
            let mut it = round.into_iter();
            while let Some(first) = it.next() {
                next.push(match it.next() {
                    Some(second) => first.compose(&second),
                    None => first,
                });
            }
            round = next;
        }
        round.pop()
    }

    /// Rebase this change set over `other`, a change set made to the same document:
    /// the result applies after `other` and does what `self` meant. Text `other`
    /// inserted is never deleted by the result; at one position `other`'s insert
    /// comes first.
    pub fn rebase(&self, other: &ChangeSet) -> ChangeSet {
        self.rebase_tie(other, false)
    }

    /// [`Self::rebase`], except that at one position this change set's insert comes
    /// first. `a.rebase(b)` and `b.rebase_mine_first(a)` order ties the same way, so
    /// `a` then `b.rebase_mine_first(a)` equals `b` then `a.rebase(b)`.
    pub fn rebase_mine_first(&self, other: &ChangeSet) -> ChangeSet {
        self.rebase_tie(other, true)
    }

    fn rebase_tie(&self, other: &ChangeSet, mine_first: bool) -> ChangeSet {
        debug_assert_eq!(self.len, other.len, "rebasing over a change set of another document");
        let mut out = ChangeSet::new();
        let mut a = self.ops.iter().cloned();
        let mut b = other.ops.iter().cloned();
        let (mut ha, mut hb) = (a.next(), b.next());
        loop {
            match (ha.take(), hb.take()) {
                (None, None) => break,
                (Some(Op::Insert(s)), h) if mine_first => {
                    out.insert(&s);
                    ha = a.next();
                    hb = h;
                }
                (h, Some(Op::Insert(t))) => {
                    out.retain(char_len(&t));
                    hb = b.next();
                    ha = h;
                }
                (Some(Op::Insert(s)), h) => {
                    out.insert(&s);
                    ha = a.next();
                    hb = h;
                }
                (Some(Op::Retain(i)), Some(Op::Retain(j))) => {
                    out.retain(i.min(j));
                    ha = if i > j { Some(Op::Retain(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Retain(j - i)) } else { b.next() };
                }
                (Some(Op::Retain(i)), Some(Op::Delete(j))) => {
                    ha = if i > j { Some(Op::Retain(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Delete(j - i)) } else { b.next() };
                }
                (Some(Op::Delete(i)), Some(Op::Retain(j))) => {
                    out.delete(i.min(j));
                    ha = if i > j { Some(Op::Delete(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Retain(j - i)) } else { b.next() };
                }
                (Some(Op::Delete(i)), Some(Op::Delete(j))) => {
                    ha = if i > j { Some(Op::Delete(i - j)) } else { a.next() };
                    hb = if j > i { Some(Op::Delete(j - i)) } else { b.next() };
                }
                (Some(_), None) | (None, Some(_)) => break,
            }
        }
        out
    }

    /// Chars inserted and deleted, for logs and statistics.
    pub fn stats(&self) -> (usize, usize) {
        self.ops.iter().fold((0, 0), |(ins, del), op| match op {
            Op::Retain(_) => (ins, del),
            Op::Delete(n) => (ins, del + n),
            Op::Insert(s) => (ins + char_len(s), del),
        })
    }
}

/// One sequential splice of a [`ChangeSet`], see [`ChangeSet::splices`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Splice<'a> {
    pub pos: usize,
    pub delete: usize,
    pub insert: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, cs: &ChangeSet) -> String {
        let mut rope = Rope::from_str(text);
        cs.apply(&mut rope);
        rope.to_string()
    }

    #[test]
    fn splice_then_invert_restores_text() {
        let rope = Rope::from_str("héllo wörld");
        let cs = ChangeSet::splice(11, 2, 3, "ΨΩ").unwrap();
        assert_eq!(apply("héllo wörld", &cs), "héΨΩ wörld");
        let inv = cs.invert(&rope);
        assert_eq!(apply("héΨΩ wörld", &inv), "héllo wörld");
    }

    #[test]
    fn splice_outside_document_is_refused() {
        assert!(ChangeSet::splice(3, 2, 2, "").is_none());
        assert!(ChangeSet::splice(3, 4, 0, "x").is_none());
        assert!(ChangeSet::splice(3, usize::MAX, 2, "").is_none());
    }

    #[test]
    fn insert_at_cursor_respects_assoc() {
        let cs = ChangeSet::splice(4, 2, 0, "xyz").unwrap();
        assert_eq!(cs.map_pos(2, Assoc::Before), 2);
        assert_eq!(cs.map_pos(2, Assoc::After), 5);
        assert_eq!(cs.map_pos(1, Assoc::After), 1);
        assert_eq!(cs.map_pos(3, Assoc::Before), 6);
        assert_eq!(cs.map_pos(4, Assoc::Before), 7);
    }

    #[test]
    fn position_inside_deletion_collapses_to_its_start() {
        let cs = ChangeSet::splice(10, 2, 5, "").unwrap();
        assert_eq!(cs.map_pos(4, Assoc::After), 2);
        assert_eq!(cs.map_pos(7, Assoc::After), 2);
        assert_eq!(cs.map_pos(8, Assoc::After), 3);
    }

    #[test]
    fn compose_equals_sequential_application() {
        let a = ChangeSet::splice(5, 1, 2, "XYZ").unwrap();
        let b = ChangeSet::splice(6, 2, 3, "é").unwrap();
        let ab = a.compose(&b);
        assert_eq!(apply(&apply("abcde", &a), &b), apply("abcde", &ab));
    }

    #[test]
    fn compose_all_equals_applying_one_after_another() {
        let mut text = String::from("the quick brown fox");
        let start = text.clone();
        let mut edits = Vec::new();
        for i in 0..37usize {
            let len = text.chars().count();
            let pos = (i * 7) % (len + 1);
            let delete = if i % 3 == 0 { 1.min(len - pos) } else { 0 };
            let edit = ChangeSet::splice(len, pos, delete, if i % 4 == 0 { "" } else { "ab" }).unwrap();
            text = apply(&text, &edit);
            edits.push(edit);
        }
        let all = ChangeSet::compose_all(edits).unwrap();
        assert_eq!(apply(&start, &all), text);
        assert!(ChangeSet::compose_all(Vec::new()).is_none());
    }

    #[test]
    fn rebase_never_deletes_text_the_other_side_inserted() {
        // Mine deletes "bcd"; theirs inserted "XY" between c and d.
        let mine = ChangeSet::splice(5, 1, 3, "").unwrap();
        let theirs = ChangeSet::splice(5, 3, 0, "XY").unwrap();
        let rebased = mine.rebase(&theirs);
        assert_eq!(apply(&apply("abcde", &theirs), &rebased), "aXYe");
    }

    #[test]
    fn splices_are_sequential() {
        let mut cs = ChangeSet::new();
        cs.retain(1);
        cs.delete(1);
        cs.insert("XX");
        cs.retain(1);
        cs.insert("!");
        cs.retain(1);
        let mut rope = Rope::from_str("abcd");
        for s in cs.splices() {
            rope.remove(s.pos..s.pos + s.delete);
            rope.insert(s.pos, s.insert);
        }
        assert_eq!(rope.to_string(), apply("abcd", &cs));
    }
}
