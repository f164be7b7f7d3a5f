//! Editor commands, their names (for the config file and the help overlay) and the
//! default key bindings.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyModifiers};

macro_rules! commands {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// Everything a key can be bound to.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Command { $($variant),* }

        impl Command {
            /// Every command with its config name and a one-line description.
            pub const ALL: &'static [(Command, &'static str, &'static str)] =
                &[$((Command::$variant, $name, $help)),*];
        }
    };
}

commands! {
    MoveLeft => "move_left", "cursor left one character";
    MoveRight => "move_right", "cursor right one character";
    MoveUp => "move_up", "cursor up one line";
    MoveDown => "move_down", "cursor down one line";
    WordLeft => "word_left", "cursor to the previous word";
    WordRight => "word_right", "cursor to the next word";
    LineStart => "line_start", "cursor to the first non-blank, then the line start";
    LineEnd => "line_end", "cursor to the line end";
    PageUp => "page_up", "up one screen";
    PageDown => "page_down", "down one screen";
    DocStart => "doc_start", "to the start of the document";
    DocEnd => "doc_end", "to the end of the document";
    SelectLeft => "select_left", "extend the selection left";
    SelectRight => "select_right", "extend the selection right";
    SelectUp => "select_up", "extend the selection up";
    SelectDown => "select_down", "extend the selection down";
    SelectWordLeft => "select_word_left", "extend the selection a word left";
    SelectWordRight => "select_word_right", "extend the selection a word right";
    SelectLineStart => "select_line_start", "extend the selection to the line start";
    SelectLineEnd => "select_line_end", "extend the selection to the line end";
    SelectPageUp => "select_page_up", "extend the selection a screen up";
    SelectPageDown => "select_page_down", "extend the selection a screen down";
    SelectDocStart => "select_doc_start", "extend the selection to the start";
    SelectDocEnd => "select_doc_end", "extend the selection to the end";
    SelectAll => "select_all", "select the whole document";
    Backspace => "backspace", "delete the selection or the character before the cursor";
    Delete => "delete", "delete the selection or the character after the cursor";
    DeleteWordBack => "delete_word_back", "delete the word before the cursor";
    Newline => "newline", "new line, keeping the indentation";
    Indent => "indent", "insert a tab, or indent the selected lines";
    Dedent => "dedent", "unindent the current or selected lines";
    Undo => "undo", "undo your last change (others' edits stay)";
    Redo => "redo", "redo what you undid";
    Copy => "copy", "copy the selection (also to the system clipboard via OSC 52)";
    Cut => "cut", "cut the selection";
    Paste => "paste", "paste the clipboard";
    Save => "save", "save the file";
    Quit => "quit", "quit (asks when there are unsaved changes)";
    Find => "find", "search as you type";
    FindNext => "find_next", "next match";
    FindPrev => "find_prev", "previous match";
    GotoLine => "goto_line", "go to a line number";
    ToggleWrap => "toggle_wrap", "soft wrap on/off";
    ToggleLineNumbers => "toggle_line_numbers", "line numbers on/off";
    Help => "help", "this help";
    JumpToPeer => "jump_to_peer", "move to the next peer's cursor";
    FollowPeer => "follow_peer", "follow the next peer's view (again to stop)";
    Share => "share", "share this document: copy its ticket and show it as a QR code";
    History => "history", "browse versions and diffs, restore one";
    ToggleBlame => "toggle_blame", "blame gutter: who last changed each line";
}

impl std::str::FromStr for Command {
    type Err = ();
    fn from_str(s: &str) -> Result<Command, ()> {
        Command::ALL.iter().find(|(_, name, _)| *name == s).map(|(c, _, _)| *c).ok_or(())
    }
}

impl Command {
    pub fn name(self) -> &'static str {
        Command::ALL.iter().find(|(c, _, _)| *c == self).map_or("?", |(_, n, _)| n)
    }
}

/// Parse `ctrl-s`, `alt-shift-left`, `f3`, `pagedown`, `x`.
pub fn parse_key(s: &str) -> Option<(KeyCode, KeyModifiers)> {
    let lower = s.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('-').collect();
    // "ctrl--" binds the minus key.
    if lower.ends_with("--") {
        parts.pop();
        parts.pop();
        parts.push("-");
    }
    let key = parts.pop()?;
    let mut mods = KeyModifiers::NONE;
    for m in parts {
        mods |= match m {
            "ctrl" | "c" => KeyModifiers::CONTROL,
            "alt" | "a" | "meta" => KeyModifiers::ALT,
            "shift" | "s" => KeyModifiers::SHIFT,
            _ => return None,
        };
    }
    let code = match key {
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "tab" => KeyCode::Tab,
        "backspace" => KeyCode::Backspace,
        "delete" | "del" => KeyCode::Delete,
        "insert" => KeyCode::Insert,
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "space" => KeyCode::Char(' '),
        f if f.starts_with('f') && f.len() > 1 => {
            KeyCode::F(f[1..].parse().ok().filter(|n| (1..=24).contains(n))?)
        }
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
        _ => return None,
    };
    Some((code, mods))
}

/// The bindings tandem starts with.
pub fn default_bindings() -> HashMap<(KeyCode, KeyModifiers), Command> {
    use Command::*;
    let table: &[(&str, Command)] = &[
        ("left", MoveLeft),
        ("right", MoveRight),
        ("up", MoveUp),
        ("down", MoveDown),
        ("ctrl-left", WordLeft),
        ("ctrl-right", WordRight),
        ("home", LineStart),
        ("end", LineEnd),
        ("pageup", PageUp),
        ("pagedown", PageDown),
        ("ctrl-home", DocStart),
        ("ctrl-end", DocEnd),
        ("shift-left", SelectLeft),
        ("shift-right", SelectRight),
        ("shift-up", SelectUp),
        ("shift-down", SelectDown),
        ("ctrl-shift-left", SelectWordLeft),
        ("ctrl-shift-right", SelectWordRight),
        ("shift-home", SelectLineStart),
        ("shift-end", SelectLineEnd),
        ("shift-pageup", SelectPageUp),
        ("shift-pagedown", SelectPageDown),
        ("ctrl-shift-home", SelectDocStart),
        ("ctrl-shift-end", SelectDocEnd),
        ("ctrl-a", SelectAll),
        ("backspace", Backspace),
        ("shift-backspace", Backspace),
        ("delete", Delete),
        ("ctrl-backspace", DeleteWordBack),
        ("alt-backspace", DeleteWordBack),
        ("ctrl-h", DeleteWordBack),
        ("enter", Newline),
        ("tab", Indent),
        ("shift-tab", Dedent),
        ("ctrl-z", Undo),
        ("ctrl-y", Redo),
        ("ctrl-shift-z", Redo),
        ("ctrl-c", Copy),
        ("ctrl-x", Cut),
        ("ctrl-v", Paste),
        ("ctrl-s", Save),
        ("ctrl-q", Quit),
        ("ctrl-f", Find),
        ("f3", FindNext),
        ("shift-f3", FindPrev),
        ("ctrl-g", GotoLine),
        ("alt-z", ToggleWrap),
        ("alt-n", ToggleLineNumbers),
        ("f1", Help),
        ("alt-j", JumpToPeer),
        ("alt-f", FollowPeer),
        ("alt-s", Share),
        ("alt-h", History),
        ("alt-b", ToggleBlame),
    ];
    table.iter().map(|(k, c)| (parse_key(k).expect("default bindings parse"), *c)).collect()
}

/// Bindings as "key: command — description" lines for the help overlay, sorted by
/// command order.
pub fn describe(bindings: &HashMap<(KeyCode, KeyModifiers), Command>) -> Vec<(String, &'static str)> {
    Command::ALL
        .iter()
        .map(|(cmd, _, help)| {
            let mut keys: Vec<String> = bindings
                .iter()
                .filter(|(_, c)| *c == cmd)
                .map(|((code, mods), _)| key_name(*code, *mods))
                .collect();
            keys.sort_by_key(|k| (k.len(), k.clone()));
            (if keys.is_empty() { "(unbound)".to_string() } else { keys.join(", ") }, *help)
        })
        .collect()
}

fn key_name(code: KeyCode, mods: KeyModifiers) -> String {
    let mut s = String::new();
    if mods.contains(KeyModifiers::CONTROL) {
        s.push_str("Ctrl-");
    }
    if mods.contains(KeyModifiers::ALT) {
        s.push_str("Alt-");
    }
    if mods.contains(KeyModifiers::SHIFT) {
        s.push_str("Shift-");
    }
    s.push_str(&match code {
        KeyCode::Char(' ') => "Space".to_string(),
        KeyCode::Char(c) => c.to_ascii_uppercase().to_string(),
        KeyCode::F(n) => format!("F{n}"),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        other => format!("{other:?}"),
    });
    s
}
