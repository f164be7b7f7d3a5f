//! The editor's behaviour on keys, against a real document: each test is a defect a
//! user met (issue 12), driven the way the terminal drives it.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tandem_doc::{ActorId, Author, CursorId, DocConfig, Document, Selection};
use tandem_tui::config::ColorDepth;
use tandem_tui::{Config, Editor, render};

mod common;
use common::screen;

const NOW: u64 = 1_000_000;

fn doc(text: &str) -> Document {
    Document::with_text(Author::new("me", ActorId::from(vec![1u8; 16])), DocConfig::default(), text, 1)
}

fn key(e: &mut Editor, d: &mut Document, code: KeyCode, mods: KeyModifiers) {
    e.handle_event(&Event::Key(KeyEvent::new(code, mods)), d, NOW);
}

fn typed(e: &mut Editor, d: &mut Document, text: &str) {
    for c in text.chars() {
        key(e, d, KeyCode::Char(c), KeyModifiers::NONE);
    }
}

fn caret(d: &Document) -> usize {
    d.cursor(CursorId::LOCAL).unwrap().head
}

fn draw(e: &mut Editor, d: &mut Document, w: u16, h: u16) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| {
        render(e, d, f.area(), f.buffer_mut(), ColorDepth::None, NOW);
    })
    .unwrap();
    screen(&term)
}

/// Select "bc" in "abcdef" and type XYZ: "aXYZdef" with the caret after Z (it was
/// `aYZXdef`); select all and type hello: "hello" (it was `elloh`); paste and Enter
/// over a selection likewise.
#[test]
fn typing_over_a_selection_replaces_it_and_the_caret_follows_the_text() {
    let mut d = doc("abcdef");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    d.set_cursor(CursorId::LOCAL, Selection { anchor: 1, head: 3 });
    typed(&mut e, &mut d, "XYZ");
    assert_eq!(d.rope().to_string(), "aXYZdef");
    assert_eq!(caret(&d), 4);

    key(&mut e, &mut d, KeyCode::Char('a'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "hello");
    assert_eq!(d.rope().to_string(), "hello");
    assert_eq!(caret(&d), 5);

    d.set_cursor(CursorId::LOCAL, Selection { anchor: 0, head: 2 });
    e.handle_event(&Event::Paste("HE".into()), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "HEllo");
    assert_eq!(caret(&d), 2);
    d.set_cursor(CursorId::LOCAL, Selection { anchor: 2, head: 4 });
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(d.rope().to_string(), "HE\no");
    assert_eq!(caret(&d), 3);
    // Undo brings the selection back with the text.
    key(&mut e, &mut d, KeyCode::Char('z'), KeyModifiers::CONTROL);
    assert_eq!(d.rope().to_string(), "HEllo");
}

/// Redo puts the caret after the redone text, wherever it was when undoing.
#[test]
fn redo_puts_the_caret_after_the_redone_text() {
    let mut d = doc("one two \n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    key(&mut e, &mut d, KeyCode::End, KeyModifiers::NONE);
    typed(&mut e, &mut d, "three");
    key(&mut e, &mut d, KeyCode::Home, KeyModifiers::NONE);
    key(&mut e, &mut d, KeyCode::Char('z'), KeyModifiers::CONTROL);
    assert_eq!(d.rope().to_string(), "one two \n");
    key(&mut e, &mut d, KeyCode::Home, KeyModifiers::CONTROL);
    key(&mut e, &mut d, KeyCode::Char('y'), KeyModifiers::CONTROL);
    assert_eq!(d.rope().to_string(), "one two three\n");
    assert_eq!(caret(&d), "one two three".len());
}

/// Nothing goes in front of a byte-order mark: typing at the start of the file goes
/// after it.
#[test]
fn typing_at_the_start_goes_after_a_byte_order_mark() {
    let mut d = doc("\u{feff}text");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    typed(&mut e, &mut d, "A");
    key(&mut e, &mut d, KeyCode::Home, KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "B");
    key(&mut e, &mut d, KeyCode::Left, KeyModifiers::NONE);
    key(&mut e, &mut d, KeyCode::Left, KeyModifiers::NONE);
    typed(&mut e, &mut d, "C");
    assert_eq!(d.rope().to_string(), "\u{feff}CBAtext");
}

/// Ctrl-G takes `LINE:COLUMN` as well as `LINE`; anything else says what it takes.
#[test]
fn go_to_line_takes_a_column() {
    let mut d = doc("first\nsecond line\nthird\n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    key(&mut e, &mut d, KeyCode::Char('g'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "2:5");
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(caret(&d), "first\n".len() + 4);
    key(&mut e, &mut d, KeyCode::Char('g'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "3:99");
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(caret(&d), "first\nsecond line\nthird".len(), "a column past the end: the line's end");
    key(&mut e, &mut d, KeyCode::Char('g'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "x:1");
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert!(e.message.as_ref().unwrap().text.contains("LINE:COLUMN"), "{:?}", e.message);
}

/// The search prompt says which match is selected and how many there are.
#[test]
fn search_shows_which_match_of_how_many() {
    let mut d = doc("cat dog cat\ncat bird\ndog\n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    key(&mut e, &mut d, KeyCode::Char('f'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "cat");
    assert_eq!(e.search_count, Some((1, 3)));
    assert!(draw(&mut e, &mut d, 80, 6)[5].contains("1 of 3"));
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(e.search_count, Some((2, 3)));
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(e.search_count, Some((1, 3)), "wrapped around");
    typed(&mut e, &mut d, "fish");
    assert!(draw(&mut e, &mut d, 80, 6)[5].contains("no match"));
}

/// F1 at 120 columns: no description is cut (long ones wrap), and the status and
/// message lines stay visible below the box.
#[test]
fn help_wraps_and_leaves_the_status_line_visible() {
    let mut d = doc("text\n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    key(&mut e, &mut d, KeyCode::F(1), KeyModifiers::NONE);
    let rows = draw(&mut e, &mut d, 120, 200);
    let help: String = rows.iter().map(|r| r.trim()).collect::<Vec<_>>().join(" ");
    for (_, description) in tandem_tui::keymap::describe(&e.config.keys) {
        let last_word = description.split(' ').next_back().unwrap();
        assert!(help.contains(last_word), "{description:?} cut in:\n{}", rows.join("\n"));
    }
    let rows = draw(&mut e, &mut d, 60, 12);
    assert!(rows[10].contains("t.txt"), "status line covered:\n{}", rows.join("\n"));
}

/// Soft wrap breaks between words, never inside one that fits a row.
#[test]
fn soft_wrap_keeps_words_whole() {
    let mut d = doc("the quick brown fox jumps over the lazy dog\n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    e.line_numbers = false;
    e.soft_wrap = true;
    let rows = draw(&mut e, &mut d, 12, 8);
    for row in &rows[..4] {
        for word in row.split_whitespace() {
            assert!(
                "the quick brown fox jumps over the lazy dog".split(' ').any(|w| w == word),
                "{word:?} is a broken word:\n{}",
                rows.join("\n")
            );
        }
    }
}

/// A terminal made smaller keeps the cursor on screen (it was hidden until the
/// next key).
#[test]
fn a_resize_keeps_the_cursor_visible() {
    let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    let mut d = doc(&text);
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    key(&mut e, &mut d, KeyCode::Char('g'), KeyModifiers::CONTROL);
    typed(&mut e, &mut d, "40");
    key(&mut e, &mut d, KeyCode::Enter, KeyModifiers::NONE);
    let mut term = Terminal::new(TestBackend::new(40, 50)).unwrap();
    let mut cursor = None;
    term.draw(|f| cursor = render(&mut e, &mut d, f.area(), f.buffer_mut(), ColorDepth::None, NOW)).unwrap();
    assert!(cursor.is_some());
    e.handle_event(&Event::Resize(40, 10), &mut d, NOW);
    let mut term = Terminal::new(TestBackend::new(40, 10)).unwrap();
    term.draw(|f| cursor = render(&mut e, &mut d, f.area(), f.buffer_mut(), ColorDepth::None, NOW)).unwrap();
    let (_, y) = cursor.expect("the cursor is drawn after the resize");
    assert!(screen(&term)[y as usize].contains("line 40"), "{:#?}", screen(&term));
}

/// A box too big for the terminal (a ticket's QR code in a small one) is not drawn
/// cut: the editor says how big the terminal must be.
#[test]
fn a_popup_that_does_not_fit_says_to_enlarge_the_terminal() {
    let mut d = doc("text\n");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    let code: String = (0..33).map(|_| "█".repeat(60) + "\n").collect();
    e.popup("ticket", &code);
    let rows = draw(&mut e, &mut d, 80, 20).join("\n");
    assert!(rows.contains("Enlarge the terminal") && !rows.contains("████"), "{rows}");
    let rows = draw(&mut e, &mut d, 80, 40).join("\n");
    assert!(rows.contains("████"), "{rows}");
}
