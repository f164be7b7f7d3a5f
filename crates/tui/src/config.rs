//! The editor's configuration: `config.toml` in the tandem home directory
//! (`$TANDEM_HOME`, else `$XDG_CONFIG_HOME/tandem`, else `~/.config/tandem`).
//!
//! ```toml
//! tab_width = 4
//! expand_tabs = false     # Tab inserts spaces instead of a tab
//! soft_wrap = false
//! line_numbers = true
//!
//! [keys]                  # key = command; "none" unbinds (see F1 for the names)
//! "ctrl-s" = "save"
//! "alt-z" = "toggle_wrap"
//!
//! [colors]                # "#rrggbb", 0-255, or a name (red, darkgray, ...)
//! selection_bg = "#264f78"
//!
//! [commit]                # typing becomes one change after idle_ms without a key,
//! idle_ms = 300           # or after max_ms of continuous typing
//! max_ms = 2000
//!
//! [network]               # circuit relays to keep a reservation at (peers behind
//! relays = [              # NATs reach this device through them), as `tandem relay`
//!   "/ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooW...",  # prints them
//! ]
//! bootstrap = [           # DHT nodes to find the other members through; left out:
//!   "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...",  # the public IPFS network's; [] for none
//! ]
//! ```
//!
//! Colors degrade to the terminal: truecolor when `COLORTERM` says so, else the 256-color
//! palette when `TERM` mentions 256color, else the 16 ANSI colors; `NO_COLOR` turns
//! color off (selections and bars then use reverse video).

use std::collections::HashMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use serde::Deserialize;

use crate::keymap::{Command, default_bindings, parse_key};

#[derive(Clone, Debug)]
pub struct Config {
    pub tab_width: usize,
    pub expand_tabs: bool,
    pub soft_wrap: bool,
    pub line_numbers: bool,
    pub keys: HashMap<(KeyCode, KeyModifiers), Command>,
    pub theme: Theme,
    /// `[commit] idle_ms, max_ms`: how typing is coalesced into changes (peers see
    /// keystrokes at once either way, as live edits).
    pub commit_idle_ms: u64,
    pub commit_max_ms: u64,
    /// `[network] relays`: circuit relay addresses (checked by whoever dials them).
    pub relays: Vec<String>,
    /// `[network] bootstrap`: DHT node addresses; `None` when the file names none
    /// (then the public IPFS network's are used), `Some([])` to use no DHT.
    pub bootstrap: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tab_width: 4,
            expand_tabs: false,
            soft_wrap: false,
            line_numbers: true,
            keys: default_bindings(),
            theme: Theme::default(),
            commit_idle_ms: 300,
            commit_max_ms: 2_000,
            relays: Vec::new(),
            bootstrap: None,
        }
    }
}

/// How many colors the terminal shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorDepth {
    None,
    Ansi16,
    Palette256,
    TrueColor,
}

impl ColorDepth {
    /// From the environment: `NO_COLOR`, `COLORTERM`, `TERM`.
    pub fn detect() -> ColorDepth {
        Self::from_env(|k| std::env::var(k).ok())
    }

    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> ColorDepth {
        if get("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorDepth::None;
        }
        let colorterm = get("COLORTERM").unwrap_or_default().to_ascii_lowercase();
        if colorterm.contains("truecolor") || colorterm.contains("24bit") {
            return ColorDepth::TrueColor;
        }
        if get("TERM").unwrap_or_default().contains("256") {
            ColorDepth::Palette256
        } else {
            ColorDepth::Ansi16
        }
    }

    /// `c` as this terminal can show it (`None` for no color).
    pub fn adapt(self, c: Color) -> Option<Color> {
        match (self, c) {
            (ColorDepth::None, _) => None,
            (ColorDepth::TrueColor, c) => Some(c),
            (ColorDepth::Palette256, Color::Rgb(r, g, b)) => Some(Color::Indexed(rgb_to_256(r, g, b))),
            (ColorDepth::Ansi16, Color::Rgb(r, g, b)) => Some(rgb_to_16(r, g, b)),
            (ColorDepth::Ansi16, Color::Indexed(i)) => {
                let (r, g, b) = palette_rgb(i);
                Some(rgb_to_16(r, g, b))
            }
            (_, c) => Some(c),
        }
    }
}

fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    let level = |v: u8| {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    let (lr, lg, lb) = (level(r), level(g), level(b));
    let cube = 16 + 36 * lr + 6 * lg + lb;
    // A grey ramp entry is closer for near-grey colors.
    let avg = (u16::from(r) + u16::from(g) + u16::from(b)) / 3;
    let grey_index = if avg > 238 { 23 } else { (avg.saturating_sub(3)) / 10 } as u8;
    let grey_value = 8 + 10 * grey_index;
    let cube_value = |l: u8| if l == 0 { 0 } else { 55 + 40 * l };
    let dist = |a: (u8, u8, u8)| {
        let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).pow(2);
        d(a.0, r) + d(a.1, g) + d(a.2, b)
    };
    if dist((grey_value, grey_value, grey_value)) < dist((cube_value(lr), cube_value(lg), cube_value(lb))) {
        232 + grey_index
    } else {
        cube
    }
}

fn palette_rgb(i: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (128, 0, 0),
        (0, 128, 0),
        (128, 128, 0),
        (0, 0, 128),
        (128, 0, 128),
        (0, 128, 128),
        (192, 192, 192),
        (128, 128, 128),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (0, 0, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ];
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let i = i - 16;
            let v = |l: u8| if l == 0 { 0 } else { 55 + 40 * l };
            (v(i / 36), v(i / 6 % 6), v(i % 6))
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            (g, g, g)
        }
    }
}

fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    const NAMED: [Color; 16] = [
        Color::Black,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::Gray,
        Color::DarkGray,
        Color::LightRed,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::White,
    ];
    let best = (0..16u8)
        .min_by_key(|&i| {
            let (pr, pg, pb) = palette_rgb(i);
            let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).pow(2);
            d(pr, r) + d(pg, g) + d(pb, b)
        })
        .unwrap_or(7);
    NAMED[best as usize]
}

/// Colors of the editor's parts (before adapting them to the terminal).
#[derive(Clone, Debug)]
pub struct Theme {
    pub line_numbers: Color,
    pub selection_bg: Color,
    pub status_bg: Color,
    pub status_fg: Color,
    pub message: Color,
    pub error: Color,
    pub search_match_bg: Color,
    pub hidden: Color,
    /// Text a version added and removed, in the history view.
    pub diff_added: Color,
    pub diff_removed: Color,
    /// Colors given to remote peers, in turn (and to authors in the blame gutter).
    pub peers: Vec<Color>,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            line_numbers: Color::Rgb(110, 118, 129),
            selection_bg: Color::Rgb(38, 79, 120),
            status_bg: Color::Rgb(48, 54, 61),
            status_fg: Color::Rgb(230, 237, 243),
            message: Color::Rgb(121, 192, 255),
            error: Color::Rgb(255, 123, 114),
            search_match_bg: Color::Rgb(110, 89, 0),
            hidden: Color::Rgb(110, 118, 129),
            diff_added: Color::Rgb(35, 134, 54),
            diff_removed: Color::Rgb(248, 81, 73),
            peers: vec![
                Color::Rgb(255, 166, 87),
                Color::Rgb(126, 231, 135),
                Color::Rgb(210, 168, 255),
                Color::Rgb(255, 123, 114),
                Color::Rgb(121, 192, 255),
                Color::Rgb(242, 204, 96),
            ],
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tab_width: Option<usize>,
    expand_tabs: Option<bool>,
    soft_wrap: Option<bool>,
    line_numbers: Option<bool>,
    #[serde(default)]
    keys: HashMap<String, String>,
    #[serde(default)]
    colors: HashMap<String, String>,
    #[serde(default)]
    commit: RawCommit,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    relays: Vec<String>,
    bootstrap: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCommit {
    idle_ms: Option<u64>,
    max_ms: Option<u64>,
}

/// Parse a color: `#rrggbb`, a palette index `0`-`255`, or a name.
pub fn parse_color(s: &str) -> Option<Color> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() == 6 {
            let v = u32::from_str_radix(hex, 16).ok()?;
            return Some(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
        }
        return None;
    }
    if let Ok(i) = s.parse::<u8>() {
        return Some(Color::Indexed(i));
    }
    s.parse::<Color>().ok()
}

impl Config {
    /// Load `path`; a missing file means defaults. Errors name the file, the key and
    /// what is accepted.
    pub fn load(path: &Path) -> Result<Config, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut c = Config::default();
        if let Some(t) = raw.tab_width {
            if !(1..=16).contains(&t) {
                return Err(format!("tab_width = {t}: use 1 to 16"));
            }
            c.tab_width = t;
        }
        c.expand_tabs = raw.expand_tabs.unwrap_or(c.expand_tabs);
        c.soft_wrap = raw.soft_wrap.unwrap_or(c.soft_wrap);
        c.line_numbers = raw.line_numbers.unwrap_or(c.line_numbers);
        c.commit_idle_ms = raw.commit.idle_ms.unwrap_or(c.commit_idle_ms);
        c.commit_max_ms = raw.commit.max_ms.unwrap_or(c.commit_max_ms);
        c.relays = raw.network.relays;
        c.bootstrap = raw.network.bootstrap;
        if !(1..=3_600_000).contains(&c.commit_idle_ms) || c.commit_max_ms < c.commit_idle_ms {
            return Err(format!(
                "[commit] idle_ms = {}, max_ms = {}: use 1 to 3600000 ms, with max_ms >= idle_ms",
                c.commit_idle_ms, c.commit_max_ms
            ));
        }
        for (key, command) in raw.keys {
            let k = parse_key(&key).ok_or_else(|| {
                format!("[keys] {key:?}: not a key; write e.g. \"ctrl-s\", \"alt-shift-left\", \"f5\"")
            })?;
            if command == "none" {
                c.keys.remove(&k);
                continue;
            }
            let cmd: Command = command
                .parse()
                .map_err(|_| format!("[keys] {key:?} = {command:?}: unknown command (F1 lists them)"))?;
            c.keys.insert(k, cmd);
        }
        for (name, value) in raw.colors {
            let color = parse_color(&value).ok_or_else(|| {
                format!("[colors] {name} = {value:?}: use \"#rrggbb\", 0-255 or a color name")
            })?;
            let t = &mut c.theme;
            match name.as_str() {
                "line_numbers" => t.line_numbers = color,
                "selection_bg" => t.selection_bg = color,
                "status_bg" => t.status_bg = color,
                "status_fg" => t.status_fg = color,
                "message" => t.message = color,
                "error" => t.error = color,
                "search_match_bg" => t.search_match_bg = color,
                "diff_added" => t.diff_added = color,
                "diff_removed" => t.diff_removed = color,
                other => return Err(format!("[colors] {other}: unknown color name")),
            }
        }
        Ok(c)
    }

    /// The command bound to a key press, if any.
    pub fn command_for(&self, key: &KeyEvent) -> Option<Command> {
        let mut mods = key.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        // Shifted characters arrive as their upper-case or symbol char already.
        if let KeyCode::Char(_) = key.code
            && !mods.contains(KeyModifiers::CONTROL)
            && !mods.contains(KeyModifiers::ALT)
        {
            mods.remove(KeyModifiers::SHIFT);
        }
        let code = match key.code {
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) || mods.contains(KeyModifiers::ALT) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            KeyCode::BackTab => {
                mods.insert(KeyModifiers::SHIFT);
                KeyCode::Tab
            }
            c => c,
        };
        self.keys.get(&(code, mods)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_and_errors_name_the_key() {
        let c = Config::parse("tab_width = 2\nsoft_wrap = true\n[keys]\n\"ctrl-w\" = \"toggle_wrap\"\n\"ctrl-s\" = \"none\"\n[colors]\nselection_bg = \"#112233\"\n").unwrap();
        assert_eq!(c.tab_width, 2);
        assert!(c.soft_wrap);
        let key = |code, m| KeyEvent::new(code, m);
        assert_eq!(c.command_for(&key(KeyCode::Char('w'), KeyModifiers::CONTROL)), Some(Command::ToggleWrap));
        assert_eq!(c.command_for(&key(KeyCode::Char('s'), KeyModifiers::CONTROL)), None);
        assert_eq!(c.theme.selection_bg, Color::Rgb(0x11, 0x22, 0x33));
        let err = Config::parse("[keys]\n\"ctrl-w\" = \"fly\"\n").unwrap_err();
        assert!(err.contains("ctrl-w") && err.contains("unknown command"), "{err}");
        assert!(Config::parse("tab_width = 0").unwrap_err().contains("tab_width"));
        assert!(Config::parse("colour = 1").is_err(), "unknown fields are refused");
    }

    #[test]
    fn colors_degrade_with_the_terminal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(
            ColorDepth::from_env(env(&[("NO_COLOR", "1"), ("COLORTERM", "truecolor")])),
            ColorDepth::None
        );
        assert_eq!(ColorDepth::from_env(env(&[("COLORTERM", "truecolor")])), ColorDepth::TrueColor);
        assert_eq!(ColorDepth::from_env(env(&[("TERM", "xterm-256color")])), ColorDepth::Palette256);
        assert_eq!(ColorDepth::from_env(env(&[("TERM", "xterm")])), ColorDepth::Ansi16);
        let red = Color::Rgb(255, 0, 0);
        assert_eq!(ColorDepth::Palette256.adapt(red), Some(Color::Indexed(196)));
        assert_eq!(ColorDepth::Ansi16.adapt(red), Some(Color::LightRed));
        assert_eq!(ColorDepth::None.adapt(red), None);
        assert_eq!(ColorDepth::Palette256.adapt(Color::Rgb(128, 128, 128)), Some(Color::Indexed(244)));
    }
}
