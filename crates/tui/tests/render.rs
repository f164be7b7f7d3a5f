//! Rendering on ratatui's TestBackend, snapshot style: the screen is compared line by
//! line, and styles are checked where they carry meaning.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use tandem_doc::{ActorId, Author, Change, CursorId, DocConfig, Document, Selection};
use tandem_tui::config::ColorDepth;
use tandem_tui::{Config, Editor, render};

mod common;
use common::screen;

const NOW: u64 = 1_000_000;

fn doc(text: &str) -> Document {
    Document::with_text(Author::new("me", ActorId::from(vec![1u8; 16])), DocConfig::default(), text, 1)
}

fn draw(
    editor: &mut Editor,
    doc: &mut Document,
    w: u16,
    h: u16,
    depth: ColorDepth,
) -> (Terminal<TestBackend>, Option<(u16, u16)>) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut cursor = None;
    term.draw(|f| cursor = render(editor, doc, f.area(), f.buffer_mut(), depth, NOW)).unwrap();
    (term, cursor)
}

fn key(code: KeyCode, mods: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, mods))
}

#[test]
fn text_line_numbers_and_status_line() {
    let mut d = doc("fn main() {\n\tprintln!(\"hi\");\n}\n");
    let mut e = Editor::new(Config::default(), "main.rs", &mut d);
    let (term, cursor) = draw(&mut e, &mut d, 50, 7, ColorDepth::None);
    let version = &d.heads()[0].to_string()[..6];
    let status = format!(" main.rs │ Ln 1, Col 1 │ UTF-8 LF │ @{version}");
    assert_eq!(
        screen(&term),
        vec![
            "  1 fn main() {",
            "  2     println!(\"hi\");",
            "  3 }",
            "  4",
            "",
            status.as_str(),
            "F1 help · Ctrl-S save · Ctrl-Q quit",
        ]
    );
    assert_eq!(cursor, Some((4, 0)));
}

#[test]
fn wide_and_combining_characters_take_their_columns() {
    let mut d = doc("日本語のテキスト\ne\u{301}🎉x\n");
    let mut e = Editor::new(Config::default(), "u.txt", &mut d);
    e.line_numbers = false;
    // Move to after the emoji: e+combining is one grapheme, the emoji another.
    e.handle_event(&key(KeyCode::Down, KeyModifiers::NONE), &mut d, NOW);
    e.handle_event(&key(KeyCode::Home, KeyModifiers::NONE), &mut d, NOW);
    e.handle_event(&key(KeyCode::Right, KeyModifiers::NONE), &mut d, NOW);
    e.handle_event(&key(KeyCode::Right, KeyModifiers::NONE), &mut d, NOW);
    let (term, cursor) = draw(&mut e, &mut d, 12, 5, ColorDepth::None);
    let s = screen(&term);
    // 8 wide chars need 16 columns: the line is cut before a char, never through one.
    assert_eq!(s[0], "日本語のテキ");
    assert_eq!(s[1], "e\u{301}🎉x");
    assert_eq!(cursor, Some((3, 1)), "after e-acute (1 column) and the emoji (2 columns)");
    let (term, _) = draw(&mut e, &mut d, 40, 5, ColorDepth::None);
    assert!(screen(&term)[3].contains("Ln 2, Col 4"), "{}", screen(&term)[3]);
}

#[test]
fn soft_wrap_breaks_long_lines_between_characters() {
    let mut d = doc("abcdefghij日本\nx\n");
    let mut e = Editor::new(Config::default(), "w.txt", &mut d);
    e.line_numbers = false;
    e.soft_wrap = true;
    let (term, _) = draw(&mut e, &mut d, 5, 6, ColorDepth::None);
    assert_eq!(&screen(&term)[..4], &["abcde", "fghij", "日本", "x"]);
}

#[test]
fn selection_is_highlighted_and_counted() {
    let mut d = doc("hello world\n");
    let mut e = Editor::new(Config::default(), "s.txt", &mut d);
    for _ in 0..5 {
        e.handle_event(&key(KeyCode::Right, KeyModifiers::SHIFT), &mut d, NOW);
    }
    let (term, _) = draw(&mut e, &mut d, 50, 4, ColorDepth::TrueColor);
    let buf = term.backend().buffer();
    assert_eq!(buf[(4, 0)].bg, Color::Rgb(38, 79, 120), "selected 'h'");
    assert_eq!(buf[(9, 0)].bg, Color::Reset, "unselected ' '");
    assert!(screen(&term)[2].contains("(5 selected)"));
    // Without color the selection is shown in reverse video.
    let (term, _) = draw(&mut e, &mut d, 30, 4, ColorDepth::None);
    assert!(term.backend().buffer()[(4, 0)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn remote_cursors_show_in_their_color_with_their_name() {
    let mut d = doc("one\ntwo\nthree\n");
    let mut e = Editor::new(Config::default(), "p.txt", &mut d);
    let alice = e.add_peer(&mut d, "alice", Selection::caret(5), NOW);
    e.add_peer(&mut d, "bob", Selection { anchor: 8, head: 13 }, NOW - 120_000);
    let (term, _) = draw(&mut e, &mut d, 40, 6, ColorDepth::TrueColor);
    let s = screen(&term);
    assert_eq!(s[1], "  2 two ‹alice›");
    assert_eq!(s[2], "  3 three  ‹bob›", "a caret at the line end is a cell of its own");
    let buf = term.backend().buffer();
    let alice_color = e.peers[alice].color;
    assert_eq!(buf[(5, 1)].bg, alice_color, "alice's caret is on the 'w'");
    assert_eq!(buf[(8, 1)].fg, alice_color, "her name is in her color");
    assert!(s[4].contains("● alice") && s[4].contains("◐ bob idle"), "{}", s[4]);
}

#[test]
fn remote_edits_move_neither_my_view_nor_my_cursor_beyond_what_they_insert() {
    let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
    let mut mine = doc(&text);
    let mut theirs = Document::new(Author::new("them", ActorId::from(vec![2u8; 16])), DocConfig::default());
    theirs.apply_remote(mine.changes_since(&[]), NOW).unwrap();
    let mut e = Editor::new(Config::default(), "v.txt", &mut mine);
    e.line_numbers = false;
    e.run(tandem_tui::keymap::Command::GotoLine, &mut mine, NOW);
    for c in "30".chars() {
        e.handle_event(&key(KeyCode::Char(c), KeyModifiers::NONE), &mut mine, NOW);
    }
    e.handle_event(&key(KeyCode::Enter, KeyModifiers::NONE), &mut mine, NOW);
    let (term, _) = draw(&mut e, &mut mine, 20, 6, ColorDepth::None);
    let before = screen(&term);
    let caret = mine.cursor(CursorId::LOCAL).unwrap().head;
    // They insert two lines at the top and type in front of my cursor.
    theirs.splice(0, 0, "new a\nnew b\n", NOW).unwrap();
    let at = theirs.rope().to_string().find("line 30").unwrap();
    theirs.splice(at, 0, ">>", NOW).unwrap();
    let changes: Vec<Change> = theirs.commit(NOW);
    mine.apply_remote(changes, NOW).unwrap();
    let (term, _) = draw(&mut e, &mut mine, 20, 6, ColorDepth::None);
    let after = screen(&term);
    // The same lines, with what they typed into mine.
    let after: Vec<String> = after.iter().map(|l| l.replace(">>", "")).collect();
    assert_eq!(after[1..4], before[1..4], "the view stays on the same text");
    assert!(before[1..4].iter().any(|l| l == "line 30"), "the cursor's line is in view: {before:?}");
    assert_eq!(
        mine.cursor(CursorId::LOCAL).unwrap().head,
        caret + 12,
        "moved only by what was inserted before it"
    );
}

#[test]
fn help_overlay_lists_every_binding() {
    let mut d = doc("x\n");
    let mut e = Editor::new(Config::default(), "h.txt", &mut d);
    e.handle_event(&key(KeyCode::F(1), KeyModifiers::NONE), &mut d, NOW);
    let (term, cursor) = draw(&mut e, &mut d, 80, 70, ColorDepth::None);
    let s = screen(&term).join("\n");
    assert!(s.contains("tandem keys"));
    assert!(s.contains("Ctrl-S") && s.contains("save the file"));
    assert!(s.contains("Ctrl-Z") && s.contains("undo your last change"));
    assert_eq!(cursor, None);
    e.handle_event(&key(KeyCode::Esc, KeyModifiers::NONE), &mut d, NOW);
    let (term, _) = draw(&mut e, &mut d, 80, 30, ColorDepth::None);
    assert!(!screen(&term).join("\n").contains("tandem keys"));
}

#[test]
fn crlf_files_stay_crlf_and_say_so() {
    let mut d = doc("a\r\nb\r\n");
    let mut e = Editor::new(Config::default(), "dos.txt", &mut d);
    e.handle_event(&key(KeyCode::End, KeyModifiers::NONE), &mut d, NOW);
    e.handle_event(&key(KeyCode::Enter, KeyModifiers::NONE), &mut d, NOW);
    e.handle_event(&Event::Paste("x\ny\r".into()), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "a\r\nx\r\ny\r\n\r\nb\r\n");
    let (term, _) = draw(&mut e, &mut d, 40, 8, ColorDepth::None);
    assert!(screen(&term)[6].contains("UTF-8 CRLF"));
}

#[test]
fn search_highlights_and_selects_matches() {
    let mut d = doc("cat dog cat\n");
    let mut e = Editor::new(Config::default(), "f.txt", &mut d);
    e.handle_event(&key(KeyCode::Char('f'), KeyModifiers::CONTROL), &mut d, NOW);
    for c in "cat".chars() {
        e.handle_event(&key(KeyCode::Char(c), KeyModifiers::NONE), &mut d, NOW);
    }
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection { anchor: 0, head: 3 });
    e.handle_event(&key(KeyCode::Enter, KeyModifiers::NONE), &mut d, NOW);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection { anchor: 8, head: 11 });
    let (term, cursor) = draw(&mut e, &mut d, 40, 4, ColorDepth::None);
    assert!(screen(&term)[3].starts_with("Find: cat"));
    assert_eq!(cursor, Some((9, 3)), "the cursor is in the prompt");
    e.handle_event(&key(KeyCode::Esc, KeyModifiers::NONE), &mut d, NOW);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection::caret(0), "Esc goes back");
}

#[test]
fn typing_undo_and_redo_through_keys() {
    let mut d = doc("");
    let mut e = Editor::new(Config::default(), "t.txt", &mut d);
    for c in "hi there".chars() {
        e.handle_event(&key(KeyCode::Char(c), KeyModifiers::NONE), &mut d, NOW);
    }
    e.handle_event(&key(KeyCode::Char('z'), KeyModifiers::CONTROL), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "hi ");
    e.handle_event(&key(KeyCode::Char('y'), KeyModifiers::CONTROL), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "hi there");
    // Select all, cut, paste back twice.
    e.handle_event(&key(KeyCode::Char('a'), KeyModifiers::CONTROL), &mut d, NOW);
    e.handle_event(&key(KeyCode::Char('x'), KeyModifiers::CONTROL), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "");
    assert!(
        e.osc52.as_deref().is_some_and(|s| s.starts_with("\x1b]52;c;")),
        "copy reaches the system clipboard"
    );
    e.handle_event(&key(KeyCode::Char('v'), KeyModifiers::CONTROL), &mut d, NOW);
    e.handle_event(&key(KeyCode::Char('v'), KeyModifiers::CONTROL), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "hi therehi there");
}

#[test]
fn indent_and_dedent_selected_lines() {
    let mut d = doc("a\nb\nc\n");
    let cfg = Config { expand_tabs: true, tab_width: 2, ..Config::default() };
    let mut e = Editor::new(cfg, "i.txt", &mut d);
    e.handle_event(&key(KeyCode::Down, KeyModifiers::SHIFT), &mut d, NOW);
    e.handle_event(&key(KeyCode::Down, KeyModifiers::SHIFT), &mut d, NOW);
    e.handle_event(&key(KeyCode::Tab, KeyModifiers::NONE), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "  a\n  b\nc\n");
    e.handle_event(&key(KeyCode::BackTab, KeyModifiers::SHIFT), &mut d, NOW);
    assert_eq!(d.rope().to_string(), "a\nb\nc\n");
}

fn mouse(kind: crossterm::event::MouseEventKind, x: u16, y: u16) -> Event {
    Event::Mouse(crossterm::event::MouseEvent { kind, column: x, row: y, modifiers: KeyModifiers::NONE })
}

#[test]
fn mouse_click_drag_and_wheel() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let text: String = (1..=100).map(|i| format!("line {i} 日本\n")).collect();
    let mut d = doc(&text);
    let mut e = Editor::new(Config::default(), "m.txt", &mut d);
    draw(&mut e, &mut d, 30, 10, ColorDepth::None);
    // Click on row 2, column 4 of the text (after the 4-column gutter): "li|ne 3".
    e.handle_event(&mouse(MouseEventKind::Down(MouseButton::Left), 6, 2), &mut d, NOW);
    let line3 = d.rope().line_to_char(2);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection::caret(line3 + 2));
    // Clicking the right half of a wide char lands before it.
    e.handle_event(&mouse(MouseEventKind::Down(MouseButton::Left), 4 + 8, 0), &mut d, NOW);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection::caret(7));
    // Drag to select.
    e.handle_event(&mouse(MouseEventKind::Down(MouseButton::Left), 4, 1), &mut d, NOW);
    e.handle_event(&mouse(MouseEventKind::Drag(MouseButton::Left), 8, 1), &mut d, NOW);
    e.handle_event(&mouse(MouseEventKind::Up(MouseButton::Left), 8, 1), &mut d, NOW);
    let line2 = d.rope().line_to_char(1);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection { anchor: line2, head: line2 + 4 });
    // The wheel scrolls the view, not the cursor.
    e.handle_event(&mouse(MouseEventKind::ScrollDown, 5, 5), &mut d, NOW);
    let (term, _) = draw(&mut e, &mut d, 30, 10, ColorDepth::None);
    assert!(screen(&term)[0].starts_with("  4 line 4"), "{:?}", screen(&term));
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection { anchor: line2, head: line2 + 4 });
}

#[test]
fn follow_mode_tracks_a_peer_and_jump_goes_to_them() {
    let text: String = (1..=200).map(|i| format!("line {i}\n")).collect();
    let mut d = doc(&text);
    let mut e = Editor::new(Config::default(), "f.txt", &mut d);
    let far = d.rope().line_to_char(150);
    let bob = e.add_peer(&mut d, "bob", Selection::caret(far), NOW);
    draw(&mut e, &mut d, 50, 10, ColorDepth::None);
    e.run(tandem_tui::keymap::Command::FollowPeer, &mut d, NOW);
    let (term, _) = draw(&mut e, &mut d, 50, 10, ColorDepth::None);
    assert!(
        screen(&term).iter().any(|l| l.contains("line 151") && l.contains("‹bob›")),
        "{:?}",
        screen(&term)
    );
    assert!(screen(&term)[8].contains("bob (following)"));
    // Bob scrolls to the top and shares his viewport: we follow.
    e.update_peer(&mut d, bob, Selection::caret(5), Some(0), NOW);
    let (term, _) = draw(&mut e, &mut d, 50, 10, ColorDepth::None);
    assert!(screen(&term)[0].starts_with("  1 line 1"));
    // Any movement of mine stops following; jump puts my cursor on his.
    e.handle_event(&key(KeyCode::Down, KeyModifiers::NONE), &mut d, NOW);
    assert_eq!(e.follow, None);
    e.run(tandem_tui::keymap::Command::JumpToPeer, &mut d, NOW);
    assert_eq!(d.cursor(CursorId::LOCAL).unwrap(), Selection::caret(5));
}

#[test]
fn the_status_line_says_how_each_peer_is_reached_and_when_we_are_offline() {
    let mut d = doc("one\n");
    let mut e = Editor::new(Config::default(), "p.txt", &mut d);
    let alice = e.add_peer(&mut d, "alice", Selection::caret(0), NOW);
    let bob = e.add_peer(&mut d, "bob", Selection::caret(1), NOW);
    e.peers[alice].link = "quic".into();
    e.peers[bob].link = "relayed".into();
    e.network = Some("offline, retrying in 4 s".into());
    let (term, _) = draw(&mut e, &mut d, 110, 4, ColorDepth::None);
    let s = screen(&term);
    assert!(s[2].contains("│ offline, retrying in 4 s"), "{}", s[2]);
    assert!(s[2].contains("● alice ·quic") && s[2].contains("● bob ·relayed"), "{}", s[2]);
}

#[test]
fn a_popup_shows_over_the_text_until_a_key_closes_it() {
    let mut d = doc("text under the box\n");
    let mut e = Editor::new(Config::default(), "p.txt", &mut d);
    e.popup("ticket", "██▀▀ █\n█ ▄▄██");
    let (term, cursor) = draw(&mut e, &mut d, 40, 8, ColorDepth::TrueColor);
    let s = screen(&term);
    assert!(s.iter().any(|l| l.contains(" ticket")), "{s:#?}");
    assert!(s.iter().any(|l| l.contains("██▀▀ █")) && s.iter().any(|l| l.contains("█ ▄▄██")), "{s:#?}");
    assert_eq!(cursor, None, "no caret over a popup");
    // Black on white, so a QR code scans whatever the terminal's colors.
    let buf = term.backend().buffer();
    let row = s.iter().position(|l| l.contains("██▀▀ █")).unwrap() as u16;
    let col = s[row as usize].find("██▀▀").unwrap() as u16;
    assert_eq!((buf[(col, row)].fg, buf[(col, row)].bg), (Color::Black, Color::White));
    e.handle_event(&key(KeyCode::Esc, KeyModifiers::NONE), &mut d, NOW);
    let (term, _) = draw(&mut e, &mut d, 40, 8, ColorDepth::TrueColor);
    assert!(!screen(&term).iter().any(|l| l.contains("██▀▀")));
    assert_eq!(d.rope().to_string(), "text under the box\n", "the closing key is not typed");
}
