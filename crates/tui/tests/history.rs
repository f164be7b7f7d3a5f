//! The history view (Alt-H) and the blame gutter (Alt-B) on ratatui's TestBackend,
//! over real documents with real histories.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use tandem_doc::{ActorId, Author, DocConfig, Document};
use tandem_tui::config::ColorDepth;
use tandem_tui::history::author_color;
use tandem_tui::{Config, Editor, Mode, render};

mod common;
use common::screen;

/// 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;
/// Five minutes after the last version below.
const NOW: u64 = T0 + 7 * MINUTE;

fn author(name: &str, byte: u8) -> Author {
    Author::new(name, ActorId::from(vec![byte; 16]))
}

/// Three versions by ada: the first text, "cat" made "dog", then a fourth line.
fn three_versions() -> Document {
    let mut d = Document::with_text(author("ada", 1), DocConfig::default(), "one\nthe cat sat\nthree\n", T0);
    d.splice(8, 3, "dog", T0 + MINUTE).unwrap();
    d.commit(T0 + MINUTE);
    d.splice(22, 0, "four\n", T0 + 2 * MINUTE).unwrap();
    d.commit(T0 + 2 * MINUTE);
    d
}

fn draw(editor: &mut Editor, doc: &mut Document, w: u16, h: u16, depth: ColorDepth) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| {
        render(editor, doc, f.area(), f.buffer_mut(), depth, NOW);
    })
    .unwrap();
    term
}

fn press(e: &mut Editor, d: &mut Document, code: KeyCode, mods: KeyModifiers) {
    e.handle_event(&Event::Key(KeyEvent::new(code, mods)), d, NOW);
}

fn key(e: &mut Editor, d: &mut Document, code: KeyCode) {
    press(e, d, code, KeyModifiers::NONE);
}

/// Short ids of the versions (the genesis change every document shares is not one).
fn version_ids(d: &mut Document) -> Vec<String> {
    d.change_log().iter().skip(1).map(|c| c.hash.to_string()[..12].to_owned()).collect()
}

#[test]
fn history_view_shows_a_version_with_its_diff_and_header() {
    let mut d = three_versions();
    let ids = version_ids(&mut d);
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    assert_eq!(e.mode, Mode::History);

    // The newest version: the line it added, marked and on green.
    let term = draw(&mut e, &mut d, 100, 8, ColorDepth::TrueColor);
    let s = screen(&term);
    assert_eq!(&s[..5], &["  one", "  the dog sat", "  three", "+ four", ""]);
    let header = format!(" version 3/3 │ {} │ ada │ +5 -0 │ 2023-11-14 22:15 UTC, 5m ago", ids[2]);
    assert_eq!(s[6], header);
    assert!(s[7].contains("Enter restore"), "{}", s[7]);
    let buf = term.backend().buffer();
    assert_eq!(buf[(2, 3)].bg, Color::Rgb(35, 134, 54), "the added 'f' is on green");
    assert_eq!(buf[(2, 2)].bg, Color::Reset, "'three' was there before");

    // One step older: "cat" became "dog", the old word struck out before the new.
    key(&mut e, &mut d, KeyCode::Left);
    let term = draw(&mut e, &mut d, 100, 8, ColorDepth::TrueColor);
    let s = screen(&term);
    assert_eq!(&s[..4], &["  one", "~ the catdog sat", "  three", ""]);
    let header = format!(" version 2/3 │ {} │ ada │ +3 -3 │ 2023-11-14 22:14 UTC, 6m ago", ids[1]);
    assert_eq!(s[6], header);
    let buf = term.backend().buffer();
    let (c, g, sat) = ((6, 1), (11, 1), (13, 1));
    assert_eq!(buf[c].fg, Color::Rgb(248, 81, 73), "the removed 'c' is red");
    assert!(buf[c].modifier.contains(Modifier::CROSSED_OUT), "and struck through");
    assert_eq!(buf[g].bg, Color::Rgb(35, 134, 54), "the added 'g' is on green");
    assert_eq!((buf[sat].fg, buf[sat].bg), (Color::Reset, Color::Reset), "'sat' stayed");

    // In 16 colors the same marks use the named colors; without color, attributes.
    let term = draw(&mut e, &mut d, 100, 8, ColorDepth::Ansi16);
    let buf = term.backend().buffer();
    assert_eq!((buf[g].bg, buf[c].fg), (Color::Green, Color::LightRed));
    let term = draw(&mut e, &mut d, 100, 8, ColorDepth::None);
    let buf = term.backend().buffer();
    assert!(buf[g].modifier.contains(Modifier::REVERSED));
    assert!(buf[c].modifier.contains(Modifier::CROSSED_OUT));

    // The first version added everything; End goes back to the newest.
    key(&mut e, &mut d, KeyCode::Home);
    let s = screen(&draw(&mut e, &mut d, 100, 8, ColorDepth::TrueColor));
    assert_eq!(&s[..3], &["+ one", "+ the cat sat", "+ three"]);
    assert!(s[6].contains("version 1/3") && s[6].contains(&ids[0]), "{}", s[6]);
    key(&mut e, &mut d, KeyCode::Left);
    assert!(screen(&draw(&mut e, &mut d, 100, 8, ColorDepth::TrueColor))[6].contains("version 1/3"));
    key(&mut e, &mut d, KeyCode::End);
    assert!(screen(&draw(&mut e, &mut d, 100, 8, ColorDepth::TrueColor))[6].contains("version 3/3"));
}

#[test]
fn enter_restores_a_version_as_a_new_change_and_keeps_the_history() {
    let mut d = three_versions();
    let before: Vec<_> = d.change_log().iter().map(|c| c.hash).collect();
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    key(&mut e, &mut d, KeyCode::Left);
    key(&mut e, &mut d, KeyCode::Left);
    draw(&mut e, &mut d, 60, 8, ColorDepth::None);
    key(&mut e, &mut d, KeyCode::Enter);
    assert_eq!(e.mode, Mode::Edit);
    assert_eq!(d.rope().to_string(), "one\nthe cat sat\nthree\n", "the first version's text is back");
    let s = screen(&draw(&mut e, &mut d, 60, 8, ColorDepth::None));
    assert!(s[7].starts_with("restored version"), "{}", s[7]);

    d.commit(NOW);
    let log = d.change_log();
    assert_eq!(log.len(), before.len() + 1, "one new change");
    assert!(log.iter().zip(&before).all(|(c, h)| c.hash == *h), "the earlier history is all there");
    let newest = log.last().unwrap();
    assert_eq!(newest.author.as_deref(), Some("ada"));
    assert_eq!(d.text_at(&[before[3]]).unwrap(), "one\nthe dog sat\nthree\nfour\n", "still readable");
    // The restore is one undo step, like any edit of mine.
    press(&mut e, &mut d, KeyCode::Char('z'), KeyModifiers::CONTROL);
    assert_eq!(d.rope().to_string(), "one\nthe dog sat\nthree\nfour\n");
}

#[test]
fn esc_leaves_the_history_view_and_the_text_as_it_was() {
    let mut d = three_versions();
    let heads = d.heads().to_vec();
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    key(&mut e, &mut d, KeyCode::PageUp);
    draw(&mut e, &mut d, 60, 8, ColorDepth::None);
    key(&mut e, &mut d, KeyCode::Esc);
    assert_eq!(e.mode, Mode::Edit);
    assert!(e.history.is_none());
    assert_eq!(d.rope().to_string(), "one\nthe dog sat\nthree\nfour\n");
    assert_eq!(d.heads(), &heads[..], "no change was made");
    assert!(!d.has_pending());
    let s = screen(&draw(&mut e, &mut d, 60, 8, ColorDepth::None));
    assert_eq!(s[0], "  1 one", "the text is back, with its line numbers");
    assert!(s[6].starts_with(" h.txt"), "{}", s[6]);
}

#[test]
fn the_view_survives_peer_edits_and_reloads_on_request() {
    let mut d = three_versions();
    let mut bob =
        Document::from_changes(d.changes_since(&[]), author("bob", 2), DocConfig::default()).unwrap();
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    key(&mut e, &mut d, KeyCode::Left);
    draw(&mut e, &mut d, 80, 8, ColorDepth::None);
    // Bob deletes everything while ada looks at version 2.
    let len = bob.len_chars();
    bob.splice(0, len, "bob's\n", T0 + 3 * MINUTE).unwrap();
    d.apply_remote(bob.commit(T0 + 3 * MINUTE), NOW).unwrap();
    let s = screen(&draw(&mut e, &mut d, 80, 8, ColorDepth::None));
    assert_eq!(&s[..2], &["  one", "~ the catdog sat"], "the version shown stays");
    assert!(s[6].contains("version 2/3"), "{}", s[6]);
    assert!(s[7].starts_with("newer changes arrived: r reloads"), "{}", s[7]);
    key(&mut e, &mut d, KeyCode::Char('r'));
    let s = screen(&draw(&mut e, &mut d, 80, 8, ColorDepth::None));
    assert!(s[6].contains("version 2/4"), "the same version, in the longer history: {}", s[6]);
    key(&mut e, &mut d, KeyCode::End);
    let s = screen(&draw(&mut e, &mut d, 80, 8, ColorDepth::None));
    assert!(s[6].contains("version 4/4 │") && s[6].contains("│ bob │"), "{}", s[6]);
    assert_eq!(&s[..5], &["- one", "- the dog sat", "- three", "- four", "+ bob's"]);
}

#[test]
fn blame_gutter_names_each_lines_author_in_their_color() {
    // Ada writes two lines; bob, with a copy of her document, rewrites the second and
    // adds a third; ada takes in his change.
    let mut ada =
        Document::with_text(author("ada", 1), DocConfig::default(), "ada wrote this\nand this\n", T0);
    let mut bob =
        Document::from_changes(ada.changes_since(&[]), author("bob", 2), DocConfig::default()).unwrap();
    bob.splice(15, 8, "bob rewrote it\nbob added this", T0 + 4 * MINUTE).unwrap();
    ada.apply_remote(bob.commit(T0 + 4 * MINUTE), NOW).unwrap();
    assert_eq!(ada.rope().to_string(), "ada wrote this\nbob rewrote it\nbob added this\n");

    let mut e = Editor::new(Config::default(), "b.txt", &mut ada);
    press(&mut e, &mut ada, KeyCode::Char('b'), KeyModifiers::ALT);
    let term = draw(&mut e, &mut ada, 60, 7, ColorDepth::TrueColor);
    let s = screen(&term);
    assert_eq!(
        &s[..4],
        &[
            "ada        7m   1 ada wrote this",
            "bob        3m   2 bob rewrote it",
            "bob        3m   3 bob added this",
            "                4",
        ]
    );
    let palette = &e.config.theme.peers;
    let (ada_color, bob_color) = (author_color("ada", palette), author_color("bob", palette));
    assert_ne!(ada_color, bob_color, "two authors, two colors");
    let buf = term.backend().buffer();
    assert_eq!(buf[(0, 0)].fg, ada_color);
    assert_eq!(buf[(0, 1)].fg, bob_color);
    assert_eq!(buf[(0, 2)].fg, bob_color);

    // As ada types, the lines move with the text and hers says she is on it; once
    // committed, the blame is read again.
    e.insert_text(&mut ada, "new first line\n", NOW);
    let s = screen(&draw(&mut e, &mut ada, 60, 7, ColorDepth::TrueColor));
    assert_eq!(
        &s[..4],
        &[
            "ada       now   1 new first line",
            "ada        7m   2 ada wrote this",
            "bob        3m   3 bob rewrote it",
            "bob        3m   4 bob added this",
        ]
    );
    ada.commit(NOW);
    let s = screen(&draw(&mut e, &mut ada, 60, 7, ColorDepth::TrueColor));
    assert_eq!(s[0], "ada       now   1 new first line");
    assert_eq!(s[3], "bob        3m   4 bob added this");
    // Alt-B again hides it.
    press(&mut e, &mut ada, KeyCode::Char('b'), KeyModifiers::ALT);
    assert_eq!(screen(&draw(&mut e, &mut ada, 60, 7, ColorDepth::TrueColor))[0], "  1 new first line");
}

#[test]
fn help_lists_the_history_keys() {
    let mut d = three_versions();
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    press(&mut e, &mut d, KeyCode::F(1), KeyModifiers::NONE);
    let s = screen(&draw(&mut e, &mut d, 100, 60, ColorDepth::None)).join("\n");
    assert!(s.contains("Alt-H") && s.contains("browse versions"), "{s}");
    assert!(s.contains("Alt-B") && s.contains("blame gutter"), "{s}");
    // From the history view, the help goes back to it.
    key(&mut e, &mut d, KeyCode::Esc);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    press(&mut e, &mut d, KeyCode::F(1), KeyModifiers::NONE);
    key(&mut e, &mut d, KeyCode::Esc);
    assert_eq!(e.mode, Mode::History);
}

#[test]
fn concurrent_edits_are_stepped_through_as_one_growing_history() {
    let mut ada = Document::with_text(author("ada", 1), DocConfig::default(), "middle\n", T0);
    let mut bob =
        Document::from_changes(ada.changes_since(&[]), author("bob", 2), DocConfig::default()).unwrap();
    ada.splice(0, 0, "ada\n", T0 + MINUTE).unwrap();
    ada.commit(T0 + MINUTE);
    bob.splice(7, 0, "bob\n", T0 + MINUTE).unwrap();
    ada.apply_remote(bob.commit(T0 + MINUTE), NOW).unwrap();
    assert_eq!(ada.rope().to_string(), "ada\nmiddle\nbob\n");

    let mut e = Editor::new(Config::default(), "c.txt", &mut ada);
    press(&mut e, &mut ada, KeyCode::Char('h'), KeyModifiers::ALT);
    // The newest version holds both branches and marks only its own line.
    let s = screen(&draw(&mut e, &mut ada, 80, 8, ColorDepth::None));
    assert!(s[6].contains("version 3/3"), "{}", s[6]);
    let text: Vec<&str> = s[..3].iter().map(|l| &l[2..]).collect();
    assert_eq!(text, ["ada", "middle", "bob"]);
    assert_eq!(s[..3].iter().filter(|l| l.starts_with('+')).count(), 1, "{s:?}");
    // One step back, one of the two edits is there and the first text is not marked.
    key(&mut e, &mut ada, KeyCode::Left);
    let s = screen(&draw(&mut e, &mut ada, 80, 8, ColorDepth::None));
    assert!(s[..2] == ["+ ada", "  middle"] || s[..2] == ["  middle", "+ bob"], "{s:?}");
}

#[test]
fn a_change_far_right_on_a_long_line_is_wrapped_into_view() {
    let long = format!("{}end\n", "word ".repeat(30));
    let mut d = Document::with_text(author("ada", 1), DocConfig::default(), &long, T0);
    d.splice(long.len() - 1, 0, "!", T0 + MINUTE).unwrap();
    d.commit(T0 + MINUTE);
    let mut e = Editor::new(Config::default(), "w.txt", &mut d);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    let term = draw(&mut e, &mut d, 42, 8, ColorDepth::TrueColor);
    let s = screen(&term);
    assert!(s[0].starts_with("+ word word"), "{s:?}");
    let last = s.iter().rposition(|l| l.ends_with("end!")).expect("the end of the line is on screen");
    let x = s[last].chars().count() as u16 - 1;
    assert_eq!(term.backend().buffer()[(x, last as u16)].bg, Color::Rgb(35, 134, 54), "'!' is marked");
}

/// A reader's editor (the host says why it may not edit): typing, deleting, undo and
/// restoring a version change nothing, and the message line says why.
#[test]
fn a_read_only_editor_refuses_every_edit_and_says_why() {
    let mut d = three_versions();
    let before = d.rope().to_string();
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    e.read_only = Some("read-only here: this device is a reader".into());
    key(&mut e, &mut d, KeyCode::Char('x'));
    key(&mut e, &mut d, KeyCode::Backspace);
    key(&mut e, &mut d, KeyCode::Enter);
    press(&mut e, &mut d, KeyCode::Char('z'), KeyModifiers::CONTROL);
    press(&mut e, &mut d, KeyCode::Char('h'), KeyModifiers::ALT);
    key(&mut e, &mut d, KeyCode::Left);
    draw(&mut e, &mut d, 60, 8, ColorDepth::None);
    key(&mut e, &mut d, KeyCode::Enter);
    assert_eq!(d.rope().to_string(), before);
    let s = screen(&draw(&mut e, &mut d, 60, 8, ColorDepth::None));
    assert!(s[7].contains("read-only"), "{}", s[7]);
}
