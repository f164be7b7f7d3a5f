//! Text measurement on the rope: lines without their endings, grapheme clusters,
//! display widths (wide CJK, emoji, zero-width, tabs) and the mapping between char
//! indices and screen columns. Everything here looks at one line at a time, so its
//! cost never grows with the document's length.

use ropey::Rope;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The text of line `line` without its line ending.
pub fn line_text(rope: &Rope, line: usize) -> String {
    let mut s: String = rope.line(line).chars().collect();
    let trimmed =
        s.trim_end_matches(['\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{2028}', '\u{2029}']).len();
    s.truncate(trimmed);
    s
}

/// Chars in line `line`, line ending excluded.
pub fn line_len(rope: &Rope, line: usize) -> usize {
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    let mut chars = slice.chars_at(len);
    while let Some(c) = chars.prev() {
        if matches!(c, '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            len -= 1;
        } else {
            break;
        }
    }
    len
}

/// First char index of the line holding `pos`, and the line number.
pub fn line_of(rope: &Rope, pos: usize) -> (usize, usize) {
    let line = rope.char_to_line(pos.min(rope.len_chars()));
    (line, rope.line_to_char(line))
}

/// How a grapheme cluster is drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell<'a> {
    /// Char offset of the grapheme in its line.
    pub start: usize,
    /// Chars in the grapheme.
    pub chars: usize,
    /// Screen column where it starts.
    pub col: usize,
    /// Columns it covers.
    pub width: usize,
    /// What to draw (a tab becomes spaces; invisible clusters a placeholder).
    pub symbol: Symbol<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Symbol<'a> {
    Text(&'a str),
    /// A tab: draw `width` spaces.
    Tab,
    /// A control or zero-width cluster: drawn as a visible placeholder so it can be
    /// seen and deleted.
    Hidden,
}

/// Lay out one line's text into cells, starting at screen column 0.
pub fn cells(line: &str, tab_width: usize) -> impl Iterator<Item = Cell<'_>> {
    let tab_width = tab_width.max(1);
    let mut col = 0;
    let mut start = 0;
    line.graphemes(true).map(move |g| {
        let chars = g.chars().count();
        let (width, symbol) = if g == "\t" {
            (tab_width - col % tab_width, Symbol::Tab)
        } else if g.chars().any(char::is_control) || g.width() == 0 {
            (1, Symbol::Hidden)
        } else {
            (g.width(), Symbol::Text(g))
        };
        let cell = Cell { start, chars, col, width, symbol };
        col += width;
        start += chars;
        cell
    })
}

/// Screen column of char offset `offset` in `line`.
pub fn col_of(line: &str, offset: usize, tab_width: usize) -> usize {
    let mut last_end = 0;
    for c in cells(line, tab_width) {
        if c.start >= offset {
            return c.col;
        }
        last_end = c.col + c.width;
    }
    last_end
}

/// The char offset in `line` whose cell covers screen column `col` (the end of the
/// line when `col` is past it). A click on the right half of a wide char still lands
/// before it.
pub fn offset_at_col(line: &str, col: usize, tab_width: usize) -> usize {
    let mut end = 0;
    for c in cells(line, tab_width) {
        if col < c.col + c.width {
            return c.start;
        }
        end = c.start + c.chars;
    }
    end
}

/// Grapheme boundary after `pos` (a line ending counts as one step).
pub fn next_boundary(rope: &Rope, pos: usize) -> usize {
    let len = rope.len_chars();
    if pos >= len {
        return len;
    }
    let (line, start) = line_of(rope, pos);
    let content = line_len(rope, line);
    if pos - start >= content {
        return rope.line_to_char((line + 1).min(rope.len_lines()));
    }
    let text = line_text(rope, line);
    let offset = pos - start;
    let mut acc = 0;
    for g in text.graphemes(true) {
        let n = g.chars().count();
        if acc + n > offset {
            return start + acc + n;
        }
        acc += n;
    }
    start + content
}

/// Grapheme boundary before `pos` (a line ending counts as one step).
pub fn prev_boundary(rope: &Rope, pos: usize) -> usize {
    if pos == 0 {
        return 0;
    }
    let (line, start) = line_of(rope, pos);
    if pos == start {
        let prev = line - 1;
        return rope.line_to_char(prev) + line_len(rope, prev);
    }
    let text = line_text(rope, line);
    let offset = (pos - start).min(text.chars().count());
    let mut acc = 0;
    for g in text.graphemes(true) {
        let n = g.chars().count();
        if acc + n >= offset {
            return start + acc;
        }
        acc += n;
    }
    start + acc
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Class {
    Space,
    Word,
    Punct,
}

fn class(c: char) -> Class {
    if c.is_whitespace() {
        Class::Space
    } else if c.is_alphanumeric() || c == '_' {
        Class::Word
    } else {
        Class::Punct
    }
}

/// Start of the next word after `pos` (Ctrl-Right): skip the rest of this word or
/// punctuation run, then whitespace.
pub fn next_word(rope: &Rope, pos: usize) -> usize {
    let len = rope.len_chars();
    let mut i = pos;
    let mut chars = rope.chars_at(pos.min(len));
    let Some(first) = chars.next() else { return len };
    let c0 = class(first);
    i += 1;
    if c0 != Class::Space {
        for c in chars.by_ref() {
            if class(c) != c0 {
                break;
            }
            i += 1;
        }
        chars = rope.chars_at(i.min(len));
    }
    for c in chars {
        if class(c) != Class::Space {
            break;
        }
        i += 1;
    }
    i.min(len)
}

/// Start of the word before `pos` (Ctrl-Left).
pub fn prev_word(rope: &Rope, pos: usize) -> usize {
    let mut i = pos.min(rope.len_chars());
    let mut chars = rope.chars_at(i);
    while let Some(c) = chars.prev() {
        if class(c) != Class::Space {
            chars.next();
            break;
        }
        i -= 1;
    }
    let mut chars = rope.chars_at(i);
    let Some(c) = chars.prev() else { return 0 };
    let c0 = class(c);
    i -= 1;
    while let Some(c) = chars.prev() {
        if class(c) != c0 {
            break;
        }
        i -= 1;
    }
    i
}

/// Split a line's cells into screen rows of at most `width` columns (soft wrap),
/// between words: a row ends after its last blank, and only a word longer than a
/// row is split. A blank that reaches the edge stays at the end of its row (like
/// the end of a line that fills the row). Returns the char offset where each row
/// starts (the first is 0).
pub fn wrap_rows(line: &str, width: usize, tab_width: usize) -> Vec<usize> {
    let width = width.max(1);
    let mut rows = vec![0];
    let mut row_start_col = 0;
    // Where the current row may end: just after its last blank (offset, column).
    let mut after_blank: Option<(usize, usize)> = None;
    for c in cells(line, tab_width) {
        let blank = match c.symbol {
            Symbol::Tab => true,
            Symbol::Text(g) => g.chars().all(char::is_whitespace),
            Symbol::Hidden => false,
        };
        if c.col + c.width - row_start_col > width && c.col > row_start_col {
            if blank {
                rows.push(c.start + c.chars);
                row_start_col = c.col + c.width;
                after_blank = None;
                continue;
            }
            match after_blank {
                // The word so far moves down whole, if it fits a row.
                Some((start, col)) if col > row_start_col && c.col + c.width - col <= width => {
                    rows.push(start);
                    row_start_col = col;
                }
                _ => {
                    rows.push(c.start);
                    row_start_col = c.col;
                }
            }
            after_blank = None;
        }
        if blank {
            after_blank = Some((c.start + c.chars, c.col + c.width));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_zero_width_and_tabs_get_their_widths() {
        let widths: Vec<usize> = cells("a日\tb🎉e\u{301}\u{200b}", 4).map(|c| c.width).collect();
        // a=1, 日=2, tab to col 4 = 1, b=1, 🎉=2, e+combining=1, zero-width space shown as 1
        assert_eq!(widths, vec![1, 2, 1, 1, 2, 1, 1]);
        assert_eq!(col_of("a日b", 2, 4), 3);
        assert_eq!(offset_at_col("a日b", 2, 4), 1, "right half of a wide char lands before it");
    }

    #[test]
    fn boundaries_step_over_clusters_and_crlf() {
        let rope = Rope::from_str("e\u{301}x\r\n🎉\n");
        assert_eq!(next_boundary(&rope, 0), 2);
        assert_eq!(next_boundary(&rope, 3), 5, "CRLF is one step");
        assert_eq!(prev_boundary(&rope, 5), 3);
        assert_eq!(prev_boundary(&rope, 2), 0);
        assert_eq!(line_len(&rope, 0), 3);
        assert_eq!(line_text(&rope, 0), "e\u{301}x");
    }

    #[test]
    fn words() {
        let rope = Rope::from_str("foo  bar.baz\nqux");
        assert_eq!(next_word(&rope, 0), 5);
        assert_eq!(next_word(&rope, 5), 8);
        assert_eq!(prev_word(&rope, 8), 5);
        assert_eq!(prev_word(&rope, 5), 0);
        assert_eq!(next_word(&rope, 9), 13);
    }

    #[test]
    fn wrapping_never_splits_a_wide_char() {
        assert_eq!(wrap_rows("ab日本", 3, 4), vec![0, 2, 3]);
        assert_eq!(wrap_rows("ab日本", 4, 4), vec![0, 3]);
        assert_eq!(wrap_rows("abc", 3, 4), vec![0]);
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        // "hello world foo" at 8 columns: "hello ", "world ", "foo".
        assert_eq!(wrap_rows("hello world foo", 8, 4), vec![0, 6, 12]);
        // A blank at the edge stays on its row; the next word starts the next one.
        assert_eq!(wrap_rows("aaa bbb", 3, 4), vec![0, 4]);
        // A word longer than a row is split.
        assert_eq!(wrap_rows("a abcdefgh", 4, 4), vec![0, 2, 6]);
        // No blank at all: split at the edge, as before.
        assert_eq!(wrap_rows("abcdefg", 3, 4), vec![0, 3, 6]);
    }
}
