//! The editor's state and what every key does to it. No terminal here: events come
//! in, edits go to the [`Document`], and [`crate::render`] draws the result, so all of
//! it runs under tests.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind};
use ratatui::style::Color;
use ropey::Rope;
use tandem_doc::{ChangeSet, CursorId, Document, Selection};

use crate::config::Config;
use crate::history::{BlameGutter, HistoryView};
use crate::keymap::Command;
use crate::text::{self, line_len, line_of, line_text};

/// What the program around the editor must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Save,
    Quit,
    SaveAndQuit,
    /// Quit, taking the text back to what the file holds (as a change: history
    /// keeps what was discarded).
    DiscardAndQuit,
    /// Share the document (start the network), or show its ticket again.
    Share,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Edit,
    /// A box over the text (a ticket's QR code); any key closes it.
    Popup {
        title: String,
        lines: Vec<String>,
    },
    /// Incremental search; `origin` is where it started (Esc goes back there).
    Search {
        query: String,
        origin: Selection,
    },
    Goto {
        input: String,
    },
    ConfirmQuit,
    Help {
        scroll: usize,
    },
    /// The history view over the text ([`Editor::history`] holds its state).
    History,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Someone else in the document, as the editor shows them.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The network's id for this peer (empty for peers added by hand).
    pub id: String,
    pub name: String,
    pub color: Color,
    /// Their cursor, registered with the document so every edit maps it.
    pub cursor: CursorId,
    /// First char of their viewport, when they share it.
    pub viewport: Option<CursorId>,
    pub last_active_ms: u64,
    /// How this device reaches them: "quic", "webrtc", "tcp", or "relayed" (through
    /// another peer); empty when unknown.
    pub link: String,
}

/// A remote peer as the network reports it (see `Host::presence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Stable id (the PeerId).
    pub id: String,
    pub name: String,
    pub sel: Selection,
    /// First char of their view.
    pub top: Option<usize>,
    pub last_active_ms: u64,
    /// See [`Peer::link`].
    pub link: String,
}

/// Presence as the peers line shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Active,
    Idle,
    Away,
}

const IDLE_MS: u64 = 60_000;
const AWAY_MS: u64 = 300_000;

impl Peer {
    pub fn activity(&self, now_ms: u64) -> Activity {
        match now_ms.saturating_sub(self.last_active_ms) {
            t if t >= AWAY_MS => Activity::Away,
            t if t >= IDLE_MS => Activity::Idle,
            _ => Activity::Active,
        }
    }
}

/// One screen row of text as last drawn: which line and which chars of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    /// Char offsets in the line's text.
    pub start: usize,
    pub end: usize,
    /// Screen column of `start` within the line (non-zero for wrapped rows).
    pub start_col: usize,
}

pub struct Editor {
    pub config: Config,
    pub name: String,
    pub mode: Mode,
    pub message: Option<Message>,
    /// While searching: which match is selected and how many there are (`3 of 7`);
    /// the count stops at [`MAX_COUNTED`].
    pub search_count: Option<(usize, usize)>,
    /// True when the document differs from the file (set by the program each loop).
    pub dirty: bool,
    pub peers: Vec<Peer>,
    /// The network's state when it needs saying (see `Host::network`).
    pub network: Option<String>,
    /// Why edits are refused, when they are (see `Host::read_only`).
    pub read_only: Option<String>,
    /// Index into `peers` of the peer being followed.
    pub follow: Option<usize>,
    pub soft_wrap: bool,
    pub line_numbers: bool,
    /// The history view while it is open: it stays open under the help, a popup or the
    /// quit question, and [`Mode::History`] routes the keys to it.
    pub history: Option<HistoryView>,
    /// The blame gutter, while it is shown.
    pub blame: Option<BlameGutter>,
    /// First char of the top line of the view, mapped through every edit so remote
    /// edits above it do not move what I am looking at.
    view_anchor: CursorId,
    /// Screen row of the anchor's line to start from (for wrapped lines).
    pub top_row: usize,
    /// Horizontal scroll (columns), without soft wrap.
    pub left_col: usize,
    /// Text area size, set by the renderer.
    pub text_width: usize,
    pub text_height: usize,
    /// Rows as last drawn, for mouse clicks.
    pub rows: Vec<Row>,
    /// Where the text area starts on screen (x of the first text column, y of row 0).
    pub text_origin: (u16, u16),
    clipboard: String,
    /// An OSC 52 sequence to write to the terminal (copy to the system clipboard).
    pub osc52: Option<String>,
    desired_col: Option<usize>,
    dragging: bool,
    line_ending: &'static str,
}

impl Editor {
    pub fn new(config: Config, name: impl Into<String>, doc: &mut Document) -> Editor {
        let view_anchor = doc.add_cursor(Selection::caret(0));
        let first = usize::from(doc.rope().get_char(0) == Some('\u{feff}'));
        doc.set_cursor(CursorId::LOCAL, Selection::caret(first));
        let line_ending = if doc.rope().line(0).to_string().ends_with("\r\n") { "\r\n" } else { "\n" };
        Editor {
            soft_wrap: config.soft_wrap,
            line_numbers: config.line_numbers,
            config,
            name: name.into(),
            mode: Mode::Edit,
            message: None,
            search_count: None,
            dirty: false,
            peers: Vec::new(),
            network: None,
            read_only: None,
            follow: None,
            history: None,
            blame: None,
            view_anchor,
            top_row: 0,
            left_col: 0,
            text_width: 80,
            text_height: 24,
            rows: Vec::new(),
            text_origin: (0, 0),
            clipboard: String::new(),
            osc52: None,
            desired_col: None,
            dragging: false,
            line_ending,
        }
    }

    /// The line ending new lines get ("\r\n" in CRLF files).
    pub fn line_ending(&self) -> &'static str {
        self.line_ending
    }

    /// Line at the top of the view.
    pub fn top_line(&self, doc: &Document) -> usize {
        let pos = doc.cursor(self.view_anchor).map_or(0, |s| s.head);
        doc.rope().char_to_line(pos.min(doc.len_chars()))
    }

    fn set_top_line(&mut self, doc: &mut Document, line: usize, row: usize) {
        let line = line.min(doc.rope().len_lines().saturating_sub(1));
        let pos = doc.rope().line_to_char(line);
        doc.set_cursor(self.view_anchor, Selection::caret(pos));
        self.top_row = row;
    }

    /// Show `text` in a box over the document until a key is pressed.
    pub fn popup(&mut self, title: impl Into<String>, text: &str) {
        self.mode = Mode::Popup { title: title.into(), lines: text.lines().map(str::to_owned).collect() };
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message { text: text.into(), error: false });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message { text: text.into(), error: true });
    }

    /// Add a (simulated or real) peer; returns its index.
    pub fn add_peer(&mut self, doc: &mut Document, name: &str, sel: Selection, now_ms: u64) -> usize {
        let palette = &self.config.theme.peers;
        let color = palette[self.peers.len() % palette.len().max(1)];
        let cursor = doc.add_cursor(sel);
        self.peers.push(Peer {
            id: String::new(),
            name: name.to_owned(),
            color,
            cursor,
            viewport: None,
            last_active_ms: now_ms,
            link: String::new(),
        });
        self.peers.len() - 1
    }

    /// A peer moved its cursor or view.
    pub fn update_peer(
        &mut self,
        doc: &mut Document,
        peer: usize,
        sel: Selection,
        viewport: Option<usize>,
        now_ms: u64,
    ) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        doc.set_cursor(p.cursor, sel);
        if let Some(top) = viewport {
            match p.viewport {
                Some(id) => {
                    doc.set_cursor(id, Selection::caret(top));
                }
                None => p.viewport = Some(doc.add_cursor(Selection::caret(top))),
            }
        }
        p.last_active_ms = now_ms;
    }

    /// Make the peers list match the network's view: add, move and drop peers.
    pub fn sync_peers(&mut self, doc: &mut Document, views: &[PeerView]) {
        let gone: Vec<usize> = (0..self.peers.len())
            .rev()
            .filter(|&i| !views.iter().any(|v| v.id == self.peers[i].id))
            .collect();
        for i in gone {
            self.remove_peer(doc, i);
        }
        for v in views {
            let i = match self.peers.iter().position(|p| p.id == v.id) {
                Some(i) => i,
                None => {
                    let i = self.add_peer(doc, &v.name, v.sel, v.last_active_ms);
                    self.peers[i].id = v.id.clone();
                    i
                }
            };
            self.peers[i].name.clone_from(&v.name);
            self.peers[i].link.clone_from(&v.link);
            self.update_peer(doc, i, v.sel, v.top, v.last_active_ms);
        }
    }

    /// First char of the top line of the view.
    pub fn top_char(&self, doc: &Document) -> usize {
        doc.cursor(self.view_anchor).map_or(0, |s| s.head)
    }

    /// A peer left.
    pub fn remove_peer(&mut self, doc: &mut Document, peer: usize) {
        if peer >= self.peers.len() {
            return;
        }
        let p = self.peers.remove(peer);
        doc.remove_cursor(p.cursor);
        if let Some(v) = p.viewport {
            doc.remove_cursor(v);
        }
        self.follow = match self.follow {
            Some(f) if f == peer => None,
            Some(f) if f > peer => Some(f - 1),
            f => f,
        };
    }

    fn selection(&self, doc: &Document) -> Selection {
        doc.cursor(CursorId::LOCAL).unwrap_or_default()
    }

    fn set_selection(&mut self, doc: &mut Document, sel: Selection) {
        // Nothing goes in front of a byte-order mark: the cursor starts after it.
        let first = usize::from(doc.rope().get_char(0) == Some('\u{feff}'));
        let sel = Selection { anchor: sel.anchor.max(first), head: sel.head.max(first) };
        doc.set_cursor(CursorId::LOCAL, sel);
    }

    /// Handle one terminal event.
    pub fn handle_event(&mut self, event: &Event, doc: &mut Document, now_ms: u64) -> Action {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.handle_key(key, doc, now_ms),
            Event::Paste(text) => {
                if self.mode == Mode::Edit {
                    self.message = None;
                    let text = self.normalize_newlines(text);
                    self.insert_text(doc, &text, now_ms);
                } else if let Mode::Search { query, .. } | Mode::Goto { input: query } = &mut self.mode {
                    query.push_str(text.lines().next().unwrap_or_default());
                    self.after_prompt_change(doc);
                }
                Action::None
            }
            Event::Mouse(m) => {
                self.handle_mouse(m.kind, m.column, m.row, doc);
                Action::None
            }
            _ => Action::None,
        }
    }

    fn handle_key(&mut self, key: &KeyEvent, doc: &mut Document, now_ms: u64) -> Action {
        match self.mode.clone() {
            Mode::Popup { .. } => {
                self.mode = self.base_mode();
                return Action::None;
            }
            Mode::Help { scroll } => {
                self.mode = match key.code {
                    KeyCode::Down | KeyCode::PageDown | KeyCode::Char('j') => {
                        Mode::Help { scroll: scroll + 5 }
                    }
                    KeyCode::Up | KeyCode::PageUp | KeyCode::Char('k') => {
                        Mode::Help { scroll: scroll.saturating_sub(5) }
                    }
                    _ => self.base_mode(),
                };
                return Action::None;
            }
            Mode::ConfirmQuit => {
                self.mode = self.base_mode();
                self.message = None;
                return match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => Action::SaveAndQuit,
                    KeyCode::Char('n') | KeyCode::Char('N') => Action::DiscardAndQuit,
                    KeyCode::Char('q') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
                    _ => {
                        self.info("quit cancelled");
                        Action::None
                    }
                };
            }
            Mode::Search { .. } | Mode::Goto { .. } => return self.handle_prompt_key(key, doc),
            Mode::History => return self.handle_history_key(key, doc, now_ms),
            Mode::Edit => {}
        }
        if let Some(cmd) = self.config.command_for(key) {
            self.message = None;
            return self.run(cmd, doc, now_ms);
        }
        match key.code {
            KeyCode::Char(c) if !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                self.message = None;
                self.insert_text(doc, c.encode_utf8(&mut [0; 4]), now_ms);
            }
            KeyCode::Esc => {
                let sel = self.selection(doc);
                self.set_selection(doc, Selection::caret(sel.head));
                self.follow = None;
                self.message = None;
            }
            _ => {}
        }
        Action::None
    }

    /// Run a command (from a key or from elsewhere).
    pub fn run(&mut self, cmd: Command, doc: &mut Document, now_ms: u64) -> Action {
        use Command::*;
        let moving = matches!(
            cmd,
            MoveLeft
                | MoveRight
                | MoveUp
                | MoveDown
                | WordLeft
                | WordRight
                | LineStart
                | LineEnd
                | PageUp
                | PageDown
                | DocStart
                | DocEnd
                | SelectLeft
                | SelectRight
                | SelectUp
                | SelectDown
                | SelectWordLeft
                | SelectWordRight
                | SelectLineStart
                | SelectLineEnd
                | SelectPageUp
                | SelectPageDown
                | SelectDocStart
                | SelectDocEnd
                | SelectAll
        );
        if moving {
            doc.break_undo_group();
            self.follow = None;
        }
        if !matches!(
            cmd,
            MoveUp | MoveDown | PageUp | PageDown | SelectUp | SelectDown | SelectPageUp | SelectPageDown
        ) {
            self.desired_col = None;
        }
        match cmd {
            MoveLeft | SelectLeft => self.motion(doc, cmd == SelectLeft, |e, r, s| {
                if !s.is_caret() && cmd == MoveLeft { s.start() } else { e.prev(r, s.head) }
            }),
            MoveRight | SelectRight => self.motion(doc, cmd == SelectRight, |e, r, s| {
                if !s.is_caret() && cmd == MoveRight { s.end() } else { e.next(r, s.head) }
            }),
            WordLeft | SelectWordLeft => {
                self.motion(doc, cmd == SelectWordLeft, |_, r, s| text::prev_word(r, s.head))
            }
            WordRight | SelectWordRight => {
                self.motion(doc, cmd == SelectWordRight, |_, r, s| text::next_word(r, s.head))
            }
            LineStart | SelectLineStart => {
                self.motion(doc, cmd == SelectLineStart, |_, r, s| smart_home(r, s.head))
            }
            LineEnd | SelectLineEnd => self.motion(doc, cmd == SelectLineEnd, |_, r, s| {
                let (line, start) = line_of(r, s.head);
                start + line_len(r, line)
            }),
            DocStart | SelectDocStart => self.motion(doc, cmd == SelectDocStart, |_, _, _| 0),
            DocEnd | SelectDocEnd => self.motion(doc, cmd == SelectDocEnd, |_, r, _| r.len_chars()),
            MoveUp | SelectUp => self.vertical(doc, -1, cmd == SelectUp),
            MoveDown | SelectDown => self.vertical(doc, 1, cmd == SelectDown),
            PageUp | SelectPageUp => {
                let page = self.text_height.saturating_sub(1).max(1) as isize;
                self.vertical(doc, -page, cmd == SelectPageUp)
            }
            PageDown | SelectPageDown => {
                let page = self.text_height.saturating_sub(1).max(1) as isize;
                self.vertical(doc, page, cmd == SelectPageDown)
            }
            SelectAll => {
                let len = doc.len_chars();
                self.set_selection(doc, Selection { anchor: 0, head: len });
            }
            Backspace => self.delete(doc, now_ms, |r, pos| text::prev_boundary(r, pos)..pos),
            Delete => self.delete(doc, now_ms, |r, pos| pos..text::next_boundary(r, pos)),
            DeleteWordBack => self.delete(doc, now_ms, |r, pos| text::prev_word(r, pos)..pos),
            Newline => {
                let sel = self.selection(doc);
                let (line, start) = line_of(doc.rope(), sel.start());
                let indent: String = line_text(doc.rope(), line)
                    .chars()
                    .take(sel.start() - start)
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                let text = format!("{}{indent}", self.line_ending);
                self.insert_text(doc, &text, now_ms);
            }
            Indent => self.indent(doc, now_ms),
            Dedent => self.dedent(doc, now_ms),
            Undo | Redo if self.refuse_edit() => {}
            Undo => {
                if doc.undo(now_ms).is_none() {
                    self.info("nothing to undo");
                }
            }
            Redo => {
                if doc.redo(now_ms).is_none() {
                    self.info("nothing to redo");
                }
            }
            Copy | Cut => {
                let sel = self.selection(doc);
                if sel.is_caret() {
                    self.info("nothing selected");
                } else {
                    self.clipboard = doc.rope().slice(sel.start()..sel.end()).to_string();
                    self.osc52 = Some(osc52(&self.clipboard));
                    let n = sel.end() - sel.start();
                    if cmd == Cut {
                        self.replace_selection(doc, "", now_ms);
                        self.info(format!("cut {n} characters"));
                    } else {
                        self.info(format!("copied {n} characters"));
                    }
                }
            }
            Paste => {
                if self.clipboard.is_empty() {
                    self.info("the clipboard is empty (paste from the terminal pastes the system clipboard)");
                } else {
                    let text = self.clipboard.clone();
                    doc.break_undo_group();
                    self.replace_selection(doc, &text, now_ms);
                    doc.break_undo_group();
                }
            }
            Save => return Action::Save,
            Share => return Action::Share,
            Quit => {
                if self.dirty {
                    self.mode = Mode::ConfirmQuit;
                    self.info(
                        "unsaved changes: y = save and quit, n = discard them and quit (history keeps them: tandem log), Esc = stay",
                    );
                } else {
                    return Action::Quit;
                }
            }
            Find => {
                let origin = self.selection(doc);
                self.mode = Mode::Search { query: String::new(), origin };
                self.search_count = None;
            }
            FindNext | FindPrev => self.find_again(doc, cmd == FindNext),
            GotoLine => self.mode = Mode::Goto { input: String::new() },
            ToggleWrap => {
                self.soft_wrap = !self.soft_wrap;
                self.left_col = 0;
                self.top_row = 0;
                self.info(if self.soft_wrap { "soft wrap on" } else { "soft wrap off" });
            }
            ToggleLineNumbers => self.line_numbers = !self.line_numbers,
            Help => self.mode = Mode::Help { scroll: 0 },
            JumpToPeer => self.jump_to_peer(doc),
            FollowPeer => self.follow_next_peer(doc),
            History => self.open_history(doc),
            ToggleBlame => {
                self.blame = match self.blame {
                    Some(_) => None,
                    None => Some(BlameGutter::default()),
                };
                self.info(if self.blame.is_some() { "blame on" } else { "blame off" });
            }
        }
        if !matches!(cmd, Save | Quit | Help | FollowPeer | History) {
            self.scroll_to_cursor(doc);
        }
        Action::None
    }

    fn prev(&self, rope: &Rope, pos: usize) -> usize {
        text::prev_boundary(rope, pos)
    }

    fn next(&self, rope: &Rope, pos: usize) -> usize {
        text::next_boundary(rope, pos)
    }

    fn motion(&mut self, doc: &mut Document, extend: bool, to: impl Fn(&Self, &Rope, Selection) -> usize) {
        let sel = self.selection(doc);
        let head = to(self, doc.rope(), sel);
        let new = if extend { Selection { anchor: sel.anchor, head } } else { Selection::caret(head) };
        self.set_selection(doc, new);
    }

    /// Move `lines` screen lines (document lines, or wrapped rows with soft wrap)
    /// keeping the column the cursor had.
    fn vertical(&mut self, doc: &mut Document, lines: isize, extend: bool) {
        let rope = doc.rope().clone();
        let sel = self.selection(doc);
        let tab = self.config.tab_width;
        let (line, start) = line_of(&rope, sel.head);
        let text = line_text(&rope, line);
        let offset = sel.head - start;
        let width = self.wrap_width();
        let (row_starts, row) = self.row_of(&text, offset, width);
        let col_in_row = text::col_of(&text, offset, tab) - text::col_of(&text, row_starts[row], tab);
        let want = *self.desired_col.get_or_insert(col_in_row);
        // Walk rows.
        let (mut line, mut row, mut starts) = (line, row as isize, row_starts);
        let mut remaining = lines;
        while remaining != 0 {
            if remaining > 0 {
                if (row as usize) + 1 < starts.len() {
                    row += 1;
                } else if line + 1 < rope.len_lines() {
                    line += 1;
                    starts = self.row_starts(&line_text(&rope, line), width);
                    row = 0;
                } else {
                    break;
                }
                remaining -= 1;
            } else {
                if row > 0 {
                    row -= 1;
                } else if line > 0 {
                    line -= 1;
                    starts = self.row_starts(&line_text(&rope, line), width);
                    row = starts.len() as isize - 1;
                } else {
                    break;
                }
                remaining += 1;
            }
        }
        let moved_nowhere = remaining == lines;
        let head = if moved_nowhere {
            // Up on the first row goes to the start, down on the last row to the end.
            if lines < 0 { 0 } else { rope.len_chars() }
        } else {
            let text = line_text(&rope, line);
            let row = row as usize;
            let row_start_col = text::col_of(&text, starts[row], tab);
            let mut off = text::offset_at_col(&text, row_start_col + want, tab);
            if let Some(next_start) = starts.get(row + 1) {
                // Stay on this wrapped row.
                off = off.min(next_start.saturating_sub(1).max(starts[row]));
            }
            rope.line_to_char(line) + off
        };
        let new = if extend { Selection { anchor: sel.anchor, head } } else { Selection::caret(head) };
        self.set_selection(doc, new);
    }

    fn wrap_width(&self) -> Option<usize> {
        self.soft_wrap.then_some(self.text_width.max(1))
    }

    fn row_starts(&self, text: &str, width: Option<usize>) -> Vec<usize> {
        match width {
            Some(w) => text::wrap_rows(text, w, self.config.tab_width),
            None => vec![0],
        }
    }

    /// Row starts of a line and the row holding `offset`.
    fn row_of(&self, text: &str, offset: usize, width: Option<usize>) -> (Vec<usize>, usize) {
        let starts = self.row_starts(text, width);
        let row = starts.iter().rposition(|s| *s <= offset).unwrap_or(0);
        (starts, row)
    }

    fn normalize_newlines(&self, text: &str) -> String {
        // Terminals send pasted line breaks as CR; the file decides what they become.
        let unified = text.replace("\r\n", "\n").replace('\r', "\n");
        if self.line_ending == "\n" { unified } else { unified.replace('\n', self.line_ending) }
    }

    /// True (and says why) when this device may not edit.
    fn refuse_edit(&mut self) -> bool {
        match self.read_only.clone() {
            Some(why) => {
                self.error(why);
                true
            }
            None => false,
        }
    }

    fn replace_selection(&mut self, doc: &mut Document, text: &str, now_ms: u64) {
        if self.refuse_edit() {
            return;
        }
        let sel = self.selection(doc);
        let len = doc.len_chars();
        let Some(edit) = ChangeSet::splice(len, sel.start(), sel.end() - sel.start(), text) else { return };
        // The selection stays as it was until the edit (undo brings it back), and
        // the caret then goes after what was typed or pasted.
        match doc.edit(&edit, now_ms) {
            Ok(()) => self.set_selection(doc, Selection::caret(sel.start() + text.chars().count())),
            Err(e) => self.error(e.to_string()),
        }
    }

    /// Type or paste text at the cursor (replacing the selection).
    pub fn insert_text(&mut self, doc: &mut Document, text: &str, now_ms: u64) {
        self.replace_selection(doc, text, now_ms);
        self.scroll_to_cursor(doc);
    }

    fn delete(
        &mut self,
        doc: &mut Document,
        now_ms: u64,
        range: impl Fn(&Rope, usize) -> std::ops::Range<usize>,
    ) {
        let sel = self.selection(doc);
        if sel.is_caret() {
            let r = range(doc.rope(), sel.head);
            if r.is_empty() {
                return;
            }
            self.set_selection(doc, Selection { anchor: r.start, head: r.end });
        }
        self.replace_selection(doc, "", now_ms);
    }

    fn selected_lines(&self, doc: &Document) -> std::ops::RangeInclusive<usize> {
        let sel = self.selection(doc);
        let rope = doc.rope();
        let first = rope.char_to_line(sel.start());
        let mut last = rope.char_to_line(sel.end());
        if last > first && rope.line_to_char(last) == sel.end() {
            last -= 1;
        }
        first..=last
    }

    fn indent_unit(&self) -> String {
        if self.config.expand_tabs { " ".repeat(self.config.tab_width) } else { "\t".into() }
    }

    fn indent(&mut self, doc: &mut Document, now_ms: u64) {
        let lines = self.selected_lines(doc);
        if lines.start() == lines.end() {
            // Within one line Tab types an indent (replacing any selection).
            let unit = self.indent_unit();
            self.insert_text(doc, &unit, now_ms);
            return;
        }
        let unit = self.indent_unit();
        let rope = doc.rope();
        let mut edit = ChangeSet::new();
        let mut at = 0;
        for line in lines {
            let start = rope.line_to_char(line);
            edit.retain(start - at);
            edit.insert(&unit);
            at = start;
        }
        edit.retain(rope.len_chars() - at);
        self.apply_line_edit(doc, &edit, now_ms);
    }

    fn dedent(&mut self, doc: &mut Document, now_ms: u64) {
        let tab = self.config.tab_width;
        let rope = doc.rope();
        let mut edit = ChangeSet::new();
        let mut at = 0;
        for line in self.selected_lines(doc) {
            let start = rope.line_to_char(line);
            let text = line_text(rope, line);
            let n = if text.starts_with('\t') {
                1
            } else {
                text.chars().take(tab).take_while(|c| *c == ' ').count()
            };
            edit.retain(start - at);
            edit.delete(n);
            at = start + n;
        }
        edit.retain(rope.len_chars() - at);
        if edit.is_identity() {
            return;
        }
        self.apply_line_edit(doc, &edit, now_ms);
    }

    fn apply_line_edit(&mut self, doc: &mut Document, edit: &ChangeSet, now_ms: u64) {
        if self.refuse_edit() {
            return;
        }
        let sel = self.selection(doc);
        doc.break_undo_group();
        if let Err(e) = doc.edit(edit, now_ms) {
            self.error(e.to_string());
            return;
        }
        doc.break_undo_group();
        // Keep the lines selected (the document mapped our cursor as its author's).
        let map = |p: usize| edit.map_pos(p, tandem_doc::Assoc::Before);
        let (a, h) = (map(sel.anchor), map(sel.head));
        let (a, h) = if sel.anchor <= sel.head {
            (doc.rope().line_to_char(doc.rope().char_to_line(a)), h)
        } else {
            (a, doc.rope().line_to_char(doc.rope().char_to_line(h)))
        };
        self.set_selection(doc, Selection { anchor: a, head: h });
    }

    fn handle_prompt_key(&mut self, key: &KeyEvent, doc: &mut Document) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match (&mut self.mode, key.code) {
            (Mode::Search { origin, .. }, KeyCode::Esc) => {
                let origin = *origin;
                self.set_selection(doc, origin);
                self.mode = Mode::Edit;
                self.scroll_to_cursor(doc);
            }
            (Mode::Search { .. }, KeyCode::Enter) if key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.find_again(doc, false)
            }
            (Mode::Search { .. }, KeyCode::Enter | KeyCode::Down | KeyCode::F(3)) => {
                let backwards = key.modifiers.contains(KeyModifiers::SHIFT);
                self.find_again(doc, !backwards)
            }
            (Mode::Search { .. }, KeyCode::Char('n')) if ctrl => self.find_again(doc, true),
            (Mode::Search { .. }, KeyCode::Char('p')) if ctrl => self.find_again(doc, false),
            (Mode::Search { .. }, KeyCode::Up) => self.find_again(doc, false),
            (Mode::Search { .. }, KeyCode::Tab) => {
                // Done searching; keep the match selected.
                self.mode = Mode::Edit;
            }
            (Mode::Goto { .. }, KeyCode::Esc) => self.mode = Mode::Edit,
            (Mode::Goto { input }, KeyCode::Enter) => {
                let input = input.clone();
                self.mode = Mode::Edit;
                match parse_goto(&input) {
                    Some((n, col)) => {
                        let rope = doc.rope();
                        let line = (n - 1).min(rope.len_lines().saturating_sub(1));
                        let pos = rope.line_to_char(line) + (col - 1).min(line_len(rope, line));
                        self.set_selection(doc, Selection::caret(pos));
                        doc.break_undo_group();
                        self.scroll_to_cursor(doc);
                    }
                    None => self.error(format!("{input:?} is not a line (give LINE or LINE:COLUMN, from 1)")),
                }
            }
            (Mode::Search { query, .. } | Mode::Goto { input: query }, KeyCode::Backspace) => {
                query.pop();
                self.after_prompt_change(doc);
            }
            (Mode::Search { query, .. } | Mode::Goto { input: query }, KeyCode::Char(c))
                if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) =>
            {
                query.push(c);
                self.after_prompt_change(doc);
            }
            (Mode::Search { .. }, _) => {
                // Any other key ends the search and does its usual job.
                self.mode = Mode::Edit;
                return self.handle_key(key, doc, 0);
            }
            _ => {}
        }
        Action::None
    }

    fn after_prompt_change(&mut self, doc: &mut Document) {
        if let Mode::Search { query, origin } = &self.mode {
            let (query, origin) = (query.clone(), *origin);
            if query.is_empty() {
                self.set_selection(doc, origin);
            } else {
                match find(doc.rope(), &query, origin.start(), true) {
                    Some((s, e)) => self.set_selection(doc, Selection { anchor: s, head: e }),
                    None => self.set_selection(doc, origin),
                }
            }
            self.count_matches(doc, &query);
            self.scroll_to_cursor(doc);
        }
    }

    /// The active search query, if any (the renderer highlights its matches).
    pub fn search_query(&self) -> Option<&str> {
        match &self.mode {
            Mode::Search { query, .. } if !query.is_empty() => Some(query),
            _ => None,
        }
    }

    fn find_again(&mut self, doc: &mut Document, forward: bool) {
        let query = match &self.mode {
            Mode::Search { query, .. } => query.clone(),
            _ => String::new(),
        };
        if query.is_empty() {
            self.info("nothing to search for: Ctrl-F starts a search");
            return;
        }
        let sel = self.selection(doc);
        let from = if forward { sel.end() } else { sel.start() };
        match find(doc.rope(), &query, from, forward) {
            Some((s, e)) => {
                if (forward && s < from) || (!forward && s >= from) {
                    self.info("search wrapped around");
                }
                self.set_selection(doc, Selection { anchor: s, head: e });
                self.count_matches(doc, &query);
                self.scroll_to_cursor(doc);
            }
            None => self.error(format!("{query:?} not found")),
        }
    }

    /// Count the matches of `query` for the prompt, and which one is selected.
    fn count_matches(&mut self, doc: &Document, query: &str) {
        self.search_count = (!query.is_empty()).then(|| {
            let at = self.selection(doc).start();
            let starts = match_starts(doc.rope(), query, MAX_COUNTED);
            let index = starts.iter().take_while(|&&s| s < at).count();
            let current = if starts.get(index) == Some(&at) { index + 1 } else { 0 };
            (current, starts.len())
        });
    }

    /// The mode the overlays (help, a popup, the quit question) go back to.
    fn base_mode(&self) -> Mode {
        if self.history.is_some() { Mode::History } else { Mode::Edit }
    }

    /// Open the history view on the newest version.
    fn open_history(&mut self, doc: &mut Document) {
        if doc.is_detached() {
            // Automerge is away applying a peer's changes for a few ms; its history with it.
            self.info("taking in a peer's changes; try again in a moment");
            return;
        }
        let view = HistoryView::open(doc);
        if view.is_empty() {
            self.info("no history yet: nothing has been written in this document");
            return;
        }
        self.follow = None;
        self.history = Some(view);
        self.mode = Mode::History;
    }

    fn close_history(&mut self) {
        self.history = None;
        self.mode = Mode::Edit;
    }

    fn handle_history_key(&mut self, key: &KeyEvent, doc: &mut Document, now_ms: u64) -> Action {
        self.message = None;
        match self.config.command_for(key) {
            Some(Command::History) => {
                self.close_history();
                return Action::None;
            }
            // Saving, quitting and the help work from here too.
            Some(cmd @ (Command::Save | Command::Quit | Command::Help)) => return self.run(cmd, doc, now_ms),
            _ => {}
        }
        match key.code {
            KeyCode::Enter => self.restore_version(doc, now_ms),
            KeyCode::Esc | KeyCode::Char('q') => self.close_history(),
            code => {
                let Some(view) = self.history.as_mut() else { return Action::None };
                let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                match code {
                    KeyCode::Left => view.step(if ctrl { -100 } else { -1 }),
                    KeyCode::Right => view.step(if ctrl { 100 } else { 1 }),
                    KeyCode::PageUp => view.step(-10),
                    KeyCode::PageDown => view.step(10),
                    KeyCode::Home => view.select(0),
                    KeyCode::End => view.select(usize::MAX),
                    KeyCode::Up => view.scroll_by(-1),
                    KeyCode::Down => view.scroll_by(1),
                    KeyCode::Char('r') if !doc.is_detached() => view.reload(doc),
                    _ => {}
                }
            }
        }
        Action::None
    }

    /// Bring the selected version back as a new local edit of the whole text: undoable,
    /// sent to peers and committed like typing, with every version before it kept.
    fn restore_version(&mut self, doc: &mut Document, now_ms: u64) {
        if self.refuse_edit() {
            return;
        }
        let Some(view) = self.history.as_mut() else { return };
        view.prepare(doc, self.text_height);
        let (Some(shown), Some(version)) = (view.current(), view.version()) else {
            let why = view.error().map_or_else(
                || "that version is still being read; press Enter again".to_owned(),
                |e| format!("cannot restore it: {e}"),
            );
            self.error(why);
            return;
        };
        let text = std::sync::Arc::clone(&shown.text);
        let label = format!("{} ({}/{})", version.short_id(), view.index() + 1, view.len());
        self.close_history();
        if *doc.rope() == *text {
            self.info(format!("version {label} is the text as it is"));
            return;
        }
        doc.break_undo_group();
        let restored = doc.replace_text(&text, now_ms);
        doc.break_undo_group();
        match restored {
            Ok(_) => {
                self.scroll_to_cursor(doc);
                self.info(format!("restored version {label} as a new change (undo takes it back)"));
            }
            Err(e) => self.error(format!("not restored: {e}")),
        }
    }

    fn jump_to_peer(&mut self, doc: &mut Document) {
        if self.peers.is_empty() {
            self.info("nobody else is here");
            return;
        }
        let here = self.selection(doc).head;
        // The next peer after the one whose cursor we are on, in order of the list.
        let current = self.peers.iter().position(|p| doc.cursor(p.cursor).is_some_and(|s| s.head == here));
        let next = current.map_or(0, |i| (i + 1) % self.peers.len());
        let p = &self.peers[next];
        if let Some(sel) = doc.cursor(p.cursor) {
            let name = p.name.clone();
            self.set_selection(doc, Selection::caret(sel.head));
            doc.break_undo_group();
            self.scroll_to_cursor(doc);
            self.info(format!("at {name}'s cursor"));
        }
    }

    fn follow_next_peer(&mut self, doc: &mut Document) {
        if self.peers.is_empty() {
            self.info("nobody else is here to follow");
            return;
        }
        self.follow = match self.follow {
            None => Some(0),
            Some(i) if i + 1 < self.peers.len() => Some(i + 1),
            Some(_) => None,
        };
        match self.follow {
            Some(i) => {
                let name = self.peers[i].name.clone();
                self.info(format!("following {name} (Esc or any move stops)"));
                self.track_followed(doc);
            }
            None => self.info("not following anyone"),
        }
    }

    /// In follow mode, move the view to the followed peer (called every frame).
    pub fn track_followed(&mut self, doc: &mut Document) {
        let Some(p) = self.follow.and_then(|i| self.peers.get(i)) else { return };
        if let Some(top) = p.viewport.and_then(|v| doc.cursor(v)) {
            let line = doc.rope().char_to_line(top.head.min(doc.len_chars()));
            self.set_top_line(doc, line, 0);
        } else if let Some(sel) = doc.cursor(p.cursor) {
            self.reveal(doc, sel.head);
        }
    }

    /// Scroll so the local cursor is on screen.
    pub fn scroll_to_cursor(&mut self, doc: &mut Document) {
        let head = self.selection(doc).head;
        self.reveal(doc, head);
    }

    /// Scroll the least needed to show `pos`.
    fn reveal(&mut self, doc: &mut Document, pos: usize) {
        let rope = doc.rope().clone();
        let tab = self.config.tab_width;
        let (line, start) = line_of(&rope, pos);
        let text = line_text(&rope, line);
        let width = self.wrap_width();
        let (_, row) = self.row_of(&text, pos - start, width);
        let height = self.text_height.max(1);
        let top = self.top_line(doc);
        if (line, row) < (top, self.top_row) {
            self.set_top_line(doc, line, row);
        } else {
            // Rows from the top of the view down to the cursor's row.
            let mut rows = 0usize;
            let mut l = top;
            let mut first_row = self.top_row;
            while l < line && rows < height {
                rows += self.row_starts(&line_text(&rope, l), width).len() - first_row;
                first_row = 0;
                l += 1;
            }
            if l == line {
                rows += row - first_row.min(row);
            }
            if rows >= height {
                // Put the cursor's row on the last screen row.
                let (mut l, mut r) = (line, row);
                let mut above = height - 1;
                while above > 0 {
                    if r > 0 {
                        r -= 1;
                    } else if l > 0 {
                        l -= 1;
                        r = self.row_starts(&line_text(&rope, l), width).len() - 1;
                    } else {
                        break;
                    }
                    above -= 1;
                }
                self.set_top_line(doc, l, r);
            }
        }
        if !self.soft_wrap {
            let col = text::col_of(&text, pos - start, tab);
            let w = self.text_width.max(1);
            if col < self.left_col {
                self.left_col = col.saturating_sub(w / 4);
            } else if col >= self.left_col + w {
                self.left_col = col + 1 - w + w / 4;
            }
        }
    }

    /// Scroll the view by `rows` screen lines without moving the cursor.
    pub fn scroll(&mut self, doc: &mut Document, lines: isize) {
        let top = self.top_line(doc) as isize;
        let max = doc.rope().len_lines().saturating_sub(1) as isize;
        let new = (top + lines).clamp(0, max) as usize;
        self.set_top_line(doc, new, 0);
    }

    fn handle_mouse(&mut self, kind: MouseEventKind, x: u16, y: u16, doc: &mut Document) {
        if let Some(view) = &mut self.history {
            // The history view is read-only: the wheel scrolls it, clicks do nothing.
            match kind {
                MouseEventKind::ScrollUp => view.scroll_by(-3),
                MouseEventKind::ScrollDown => view.scroll_by(3),
                _ => {}
            }
            return;
        }
        match kind {
            MouseEventKind::ScrollUp => self.scroll(doc, -3),
            MouseEventKind::ScrollDown => self.scroll(doc, 3),
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(pos) = self.pos_at(doc, x, y) {
                    self.mode = Mode::Edit;
                    self.follow = None;
                    self.set_selection(doc, Selection::caret(pos));
                    doc.break_undo_group();
                    self.dragging = true;
                }
            }
            MouseEventKind::Drag(MouseButton::Left) if self.dragging => {
                if let Some(pos) = self.pos_at(doc, x, y) {
                    let sel = self.selection(doc);
                    self.set_selection(doc, Selection { anchor: sel.anchor, head: pos });
                    self.reveal(doc, pos);
                }
            }
            MouseEventKind::Up(MouseButton::Left) => self.dragging = false,
            _ => {}
        }
    }

    /// The document position under screen cell (x, y), from the last drawn frame.
    pub fn pos_at(&self, doc: &Document, x: u16, y: u16) -> Option<usize> {
        let (ox, oy) = self.text_origin;
        if y < oy || self.rows.is_empty() {
            return None;
        }
        let row = self.rows.get((y - oy) as usize).or_else(|| self.rows.last())?;
        let rope = doc.rope();
        let text = line_text(rope, row.line);
        let col =
            (x.saturating_sub(ox) as usize) + if self.soft_wrap { row.start_col } else { self.left_col };
        let off = text::offset_at_col(&text, col, self.config.tab_width).clamp(row.start, row.end);
        Some(rope.line_to_char(row.line) + off)
    }
}

/// Home: to the first non-blank char of the line, or to the line start when already there.
fn smart_home(rope: &Rope, pos: usize) -> usize {
    let (line, start) = line_of(rope, pos);
    let indent = line_text(rope, line).chars().take_while(|c| *c == ' ' || *c == '\t').count();
    if pos == start + indent { start } else { start + indent }
}

/// Most matches the search prompt counts (`1 of 10000+`).
pub const MAX_COUNTED: usize = 10_000;

/// `LINE` or `LINE:COLUMN` (both from 1) as the go-to prompt takes them.
pub fn parse_goto(input: &str) -> Option<(usize, usize)> {
    let (line, col) = match input.trim().split_once(':') {
        Some((l, c)) => (l.trim().parse().ok()?, c.trim().parse().ok()?),
        None => (input.trim().parse().ok()?, 1),
    };
    (line >= 1 && col >= 1).then_some((line, col))
}

/// The needle as [`find`] matches it (smart case), and whether case is folded.
fn needle_of(query: &str) -> (Vec<char>, bool) {
    let fold = !query.chars().any(char::is_uppercase);
    (if fold { query.to_lowercase().chars().collect() } else { query.chars().collect() }, fold)
}

/// Where `needle` starts in `line` (document char offsets).
fn matches_in_line(rope: &Rope, line: usize, needle: &[char], fold: bool) -> Vec<usize> {
    let text: Vec<char> = rope.line(line).chars().collect();
    let hay: Vec<char> =
        if fold { text.iter().map(|c| c.to_lowercase().next().unwrap_or(*c)).collect() } else { text };
    let start = rope.line_to_char(line);
    (0..hay.len().saturating_sub(needle.len() - 1))
        .filter(|&i| hay[i..i + needle.len()] == needle[..])
        .map(|i| start + i)
        .collect()
}

/// The start of every match of `query` in the document, in order, at most `limit`.
pub fn match_starts(rope: &Rope, query: &str, limit: usize) -> Vec<usize> {
    let (needle, fold) = needle_of(query);
    if needle.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in 0..rope.len_lines() {
        out.extend(matches_in_line(rope, line, &needle, fold));
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    out
}

/// Find `query` (smart case: case-insensitive unless it has upper case) from `from`,
/// wrapping around. Returns the match as a char range.
pub fn find(rope: &Rope, query: &str, from: usize, forward: bool) -> Option<(usize, usize)> {
    let (needle, fold) = needle_of(query);
    if needle.is_empty() {
        return None;
    }
    let lines = rope.len_lines();
    let (from_line, _) = line_of(rope, from);
    let matches_in = |line: usize| matches_in_line(rope, line, &needle, fold);
    for step in 0..=lines {
        let line =
            if forward { (from_line + step) % lines } else { (from_line + lines - step % lines) % lines };
        let found = matches_in(line);
        let hit = if forward {
            found.into_iter().find(|&s| step > 0 || s >= from)
        } else {
            found.into_iter().rev().find(|&s| step > 0 || s < from)
        };
        if let Some(s) = hit {
            return Some((s, s + needle.len()));
        }
    }
    // The only match may be behind us on the starting line.
    let found = matches_in(from_line);
    let hit = if forward { found.first().copied() } else { found.last().copied() };
    hit.map(|s| (s, s + needle.len()))
}

/// The OSC 52 escape that puts `text` on the system clipboard (works through SSH and,
/// with `set-clipboard on`, tmux).
pub fn osc52(text: &str) -> String {
    format!("\x1b]52;c;{}\x07", base64(text.as_bytes()))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64("héllo".as_bytes()), "aMOpbGxv");
    }

    #[test]
    fn find_wraps_and_folds_case() {
        let rope = Rope::from_str("Alpha beta\nalpha BETA\n");
        assert_eq!(find(&rope, "alpha", 1, true), Some((11, 16)));
        assert_eq!(find(&rope, "alpha", 12, true), Some((0, 5)));
        assert_eq!(find(&rope, "BETA", 0, true), Some((17, 21)));
        assert_eq!(find(&rope, "beta", 17, false), Some((6, 10)));
        assert_eq!(find(&rope, "zeta", 0, true), None);
    }
}
