//! Minimal edits between two texts, so that replacing a document's content (an
//! outside editor's save, `tandem write`) records the real change in history.

use std::time::{Duration, Instant};

use similar::{Algorithm, DiffOp, capture_diff_slices_deadline};

use crate::changeset::ChangeSet;

/// Hunks larger than this (in chars, old + new) are replaced whole instead of being
/// diffed char by char: a line-level diff already located them.
const CHAR_DIFF_LIMIT: usize = 20_000;
/// Myers' diff is quadratic in the worst case; past this budget `similar` falls back
/// to a coarser (still correct) answer.
const DIFF_BUDGET: Duration = Duration::from_millis(500);

/// `old` -> `new` as a unified diff (3 lines of context) with the given file labels;
/// empty when they are equal.
pub fn unified(old: &str, new: &str, from: &str, to: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(from, to).to_string()
}

/// A change set that turns `old` into `new`, small where the texts are alike: common
/// prefix and suffix are kept, the middle is diffed by lines, and changed lines by chars.
pub fn diff(old: &str, new: &str) -> ChangeSet {
    let prefix_bytes: usize =
        old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    let (old_rest, new_rest) = (&old[prefix_bytes..], &new[prefix_bytes..]);
    let suffix_bytes: usize = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let old_mid = &old_rest[..old_rest.len() - suffix_bytes];
    let new_mid = &new_rest[..new_rest.len() - suffix_bytes];

    let mut cs = ChangeSet::new();
    cs.retain(old[..prefix_bytes].chars().count());
    let deadline = Some(Instant::now() + DIFF_BUDGET);
    let old_lines: Vec<&str> = old_mid.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new_mid.split_inclusive('\n').collect();
    let chars = |lines: &[&str]| lines.iter().map(|l| l.chars().count()).sum::<usize>();
    for op in capture_diff_slices_deadline(Algorithm::Myers, &old_lines, &new_lines, deadline) {
        match op {
            DiffOp::Equal { old_index, len, .. } => cs.retain(chars(&old_lines[old_index..old_index + len])),
            DiffOp::Delete { old_index, old_len, .. } => {
                cs.delete(chars(&old_lines[old_index..old_index + old_len]))
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                cs.insert(&new_lines[new_index..new_index + new_len].concat())
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                let a = old_lines[old_index..old_index + old_len].concat();
                let b = new_lines[new_index..new_index + new_len].concat();
                diff_chars(&mut cs, &a, &b, deadline);
            }
        }
    }
    cs.retain(old_rest[old_mid.len()..].chars().count());
    cs
}

fn diff_chars(cs: &mut ChangeSet, old: &str, new: &str, deadline: Option<Instant>) {
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    if a.len() + b.len() > CHAR_DIFF_LIMIT {
        cs.delete(a.len());
        cs.insert(new);
        return;
    }
    for op in capture_diff_slices_deadline(Algorithm::Myers, &a, &b, deadline) {
        match op {
            DiffOp::Equal { len, .. } => cs.retain(len),
            DiffOp::Delete { old_len, .. } => cs.delete(old_len),
            DiffOp::Insert { new_index, new_len, .. } => {
                cs.insert(&b[new_index..new_index + new_len].iter().collect::<String>())
            }
            DiffOp::Replace { old_len, new_index, new_len, .. } => {
                cs.delete(old_len);
                cs.insert(&b[new_index..new_index + new_len].iter().collect::<String>());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropey::Rope;

    fn roundtrip(old: &str, new: &str) -> ChangeSet {
        let cs = diff(old, new);
        let mut rope = Rope::from_str(old);
        cs.apply(&mut rope);
        assert_eq!(rope.to_string(), new);
        cs
    }

    #[test]
    fn one_word_change_is_a_one_word_edit() {
        let cs = roundtrip("line one\nline two\nline three\n", "line one\nline 2\nline three\n");
        assert_eq!(cs.stats(), (1, 3));
    }

    #[test]
    fn unrelated_texts_and_unicode_round_trip() {
        roundtrip("", "héllo\r\nwörld 🎉\n");
        roundtrip("abc\ndef\n", "");
        roundtrip("日本語のテキスト\n二行目\n", "日本語テキスト\n三行目\n追加\n");
        roundtrip("a\tb\r\nc", "a\tb\nc");
    }
}
