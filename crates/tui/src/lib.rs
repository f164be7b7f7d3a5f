//! tandem's terminal front end: a modeless editor drawn with ratatui on crossterm.
//!
//! - [`Editor`] (editor.rs) holds view state and turns key, mouse and paste events
//!   into edits of a [`tandem_doc::Document`]; it never touches the terminal.
//! - [`render`] draws an editor and its document into a ratatui buffer, measuring
//!   only the visible lines.
//! - [`history`] is the history view (versions and their diffs, restore) and the blame
//!   gutter, read from the document's Automerge history.
//! - [`run`] owns the terminal: raw mode, alternate screen, bracketed paste, mouse,
//!   and its restoration on exit, panic, SIGTERM and SIGHUP.
//!
//! The document lives with a [`Host`] (the store, and through it the network node),
//! so scripts and peers change it while the editor shows it; the editor reaches it
//! only through [`Host::with_doc`].

pub mod config;
pub mod editor;
pub mod history;
pub mod keymap;
pub mod render;
pub mod text;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::cursor::SetCursorStyle;
use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tandem_doc::Document;

pub use config::{ColorDepth, Config};
pub use editor::{Action, Editor, Mode, Peer};
pub use render::render;

/// Where the editor's document lives, and what saving means.
pub trait Host {
    /// True once the document can be edited; until then the editor shows the first
    /// screen it was given. `Err` when loading failed (the editor then exits with it).
    fn ready(&mut self) -> Result<bool, String>;
    /// Run `f` on the live document.
    fn with_doc(&mut self, f: &mut dyn FnMut(&mut Document));
    /// Commit and write the file. `Ok` carries a short report for the message line;
    /// `Err` a message naming the problem (the buffer is kept either way).
    fn save(&mut self) -> Result<String, String>;
    /// Periodic work: commit after the idle window, persist, merge outside changes.
    fn tick(&mut self, now_ms: u64) -> Result<(), String>;
    /// Who else is here, with positions resolved in the document; `me` and `top` (the
    /// first char of my view) are what this device shows them. `None` when there is
    /// no network (the peers list is then left alone).
    fn presence(&mut self, me: tandem_doc::Selection, top: usize) -> Option<Vec<editor::PeerView>>;
    /// The network's state when it needs saying ("offline, retrying in 4 s"); `None`
    /// when connected or not sharing.
    fn network(&mut self) -> Option<String> {
        None
    }
    /// Why this device may not change the document (a reader of a shared one), or
    /// `None` when it may: the editor then refuses edits, saying why.
    fn read_only(&mut self) -> Option<String> {
        None
    }
    /// Share the document (or show its ticket again): `Ok` says what happens next.
    fn share(&mut self) -> Result<String, String> {
        Err("sharing is not available here".into())
    }
    /// A box to show over the text (title, text), such as a ticket's QR code.
    fn popup(&mut self) -> Option<(String, String)> {
        None
    }
    /// Messages from elsewhere (the network) for the message line, each with text to
    /// copy to the clipboard.
    fn notices(&mut self) -> Vec<(String, Option<String>)>;
    /// True when the document differs from the file on disk.
    fn is_dirty(&mut self) -> bool;
    /// Take the document back to the file's text, keeping what is discarded in
    /// history (what was typed is committed first, the way back is a change of its
    /// own).
    fn discard(&mut self) -> Result<(), String> {
        Err("this document has no file to go back to".into())
    }
    /// The editor is closing: commit what is pending.
    fn close(&mut self);
    /// What to run when a signal ends the editor from another thread (crossterm may be
    /// blocked reading a terminal that is gone): commit what is pending.
    fn closer(&self) -> Box<dyn Fn() + Send>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Put the terminal back as we found it. Safe to call more than once.
pub fn restore_terminal() {
    let mut out = io::stdout();
    let _ = crossterm::execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        SetCursorStyle::DefaultUserShape,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Run the editor until the user quits (or SIGTERM/SIGHUP arrives). `preview` is the
/// text to show while the host loads the document (see [`Host::ready`]).
pub fn run(host: &mut dyn Host, config: Config, name: &str, preview: Option<ropey::Rope>) -> io::Result<()> {
    let depth = ColorDepth::detect();
    let stop = Arc::new(AtomicBool::new(false));
    // SIGTERM, SIGHUP (terminal closed) and SIGINT end the editor from a thread of their
    // own: when the terminal is gone, crossterm spins reading it and never returns.
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    let closer = host.closer();
    let stopping = Arc::clone(&stop);
    // Set by the event loop once every key it read is in the document (keys typed
    // while the history loads wait in the loop until then), so the commit has them.
    let handed = Arc::new(AtomicBool::new(false));
    let handed_over = Arc::clone(&handed);
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            stopping.store(true, Ordering::SeqCst);
            tracing::info!("signal {sig}: committing and leaving");
            let deadline = Instant::now() + Duration::from_secs(3);
            while !handed_over.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Commit on a thread of its own and wait a bounded time: whatever holds the
            // document must not keep a dead terminal's editor alive.
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                closer();
                let _ = done.send(());
            });
            if finished.recv_timeout(Duration::from_secs(3)).is_err() {
                tracing::error!("signal {sig}: committing took too long; leaving anyway");
            }
            restore_terminal();
            std::process::exit(128 + sig);
        }
    });
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous_hook(info);
    }));

    enable_raw_mode()?;
    let mut out = io::stdout();
    crossterm::execute!(
        out,
        EnterAlternateScreen,
        EnableBracketedPaste,
        EnableMouseCapture,
        SetCursorStyle::SteadyBar
    )?;
    let result = event_loop(host, config, name, depth, &stop, preview);
    handed.store(true, Ordering::SeqCst);
    host.close();
    restore_terminal();
    result
}

fn event_loop(
    host: &mut dyn Host,
    config: Config,
    name: &str,
    depth: ColorDepth,
    stop: &AtomicBool,
    preview: Option<ropey::Rope>,
) -> io::Result<()> {
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    // Until the document is loaded (seconds for a long history), the first screen is
    // an editor of its own on a stand-in document: what is typed shows at once. The
    // keys are kept and played again on the real document when it is there, which
    // has the same text, so the screen ends as it was.
    let mut early: Vec<Event> = Vec::new();
    let mut stand_in = tandem_doc::Document::preview(
        preview.unwrap_or_default(),
        tandem_doc::Author::new("", tandem_doc::ActorId::from(vec![0u8; 16])),
        tandem_doc::DocConfig::default(),
    );
    let mut early_editor = Editor::new(config.clone(), name, &mut stand_in);
    early_editor.network = Some("loading the history…".into());
    while !host.ready().map_err(io::Error::other)? {
        if stop.load(Ordering::Relaxed) {
            // A signal while loading: what was typed is only on the stand-in. Give the
            // history a moment to load so those keys are committed, not lost.
            let deadline = Instant::now() + Duration::from_millis(2500);
            while !host.ready().map_err(io::Error::other)? {
                if Instant::now() > deadline {
                    tracing::warn!("the history did not load in time: {} early keys are lost", early.len());
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            break;
        }
        terminal.draw(|frame| {
            let area = frame.area();
            let cursor = render(&mut early_editor, &mut stand_in, area, frame.buffer_mut(), depth, now_ms());
            if let Some((x, y)) = cursor {
                frame.set_cursor_position((x, y));
            }
        })?;
        if event::poll(Duration::from_millis(20))? {
            let ev = event::read()?;
            match &ev {
                Event::Resize(..) => terminal.autoresize()?,
                Event::Key(k)
                    if k.code == event::KeyCode::Char('q')
                        && k.modifiers == event::KeyModifiers::CONTROL
                        && early.is_empty() =>
                {
                    return Ok(());
                }
                _ => {}
            }
            // Shown now unless it needs the history (which is what is loading) or
            // asks the host for something (save, share, quit): those wait.
            let needs_history = matches!(&ev, Event::Key(k) if matches!(
                early_editor.config.command_for(k),
                Some(keymap::Command::History | keymap::Command::ToggleBlame | keymap::Command::Share)
            ));
            if !needs_history {
                let _ = early_editor.handle_event(&ev, &mut stand_in, now_ms());
            }
            if !matches!(ev, Event::Resize(..)) {
                early.push(ev);
            }
        }
    }
    let mut editor = None;
    host.with_doc(&mut |doc| editor = Some(Editor::new(config.clone(), name, doc)));
    let mut editor = editor.expect("the host ran the closure");
    // Keys typed while loading count like any other (a Ctrl-S among them saves).
    for ev in early {
        if dispatch(host, &mut editor, &ev) {
            return Ok(());
        }
    }
    let mut last_tick = Instant::now() - Duration::from_secs(1);
    // Redraw after input, when the document changed under us (a peer's keystroke, a
    // script), and every 100 ms for clocks and presence; otherwise only poll.
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut drawn_revision = None;
    let mut input = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = now_ms();
        if last_tick.elapsed() >= Duration::from_millis(50) {
            if let Err(e) = host.tick(now) {
                editor.error(e);
            }
            let mut mine = None;
            host.with_doc(&mut |doc| {
                mine =
                    Some((doc.cursor(tandem_doc::CursorId::LOCAL).unwrap_or_default(), editor.top_char(doc)))
            });
            if let Some((sel, top)) = mine
                && let Some(views) = host.presence(sel, top)
            {
                host.with_doc(&mut |doc| editor.sync_peers(doc, &views));
            }
            editor.network = host.network();
            editor.read_only = host.read_only();
            if let Some((title, text)) = host.popup() {
                editor.popup(title, &text);
            }
            for (text, copy) in host.notices() {
                editor.info(text);
                if let Some(copy) = copy {
                    editor.osc52 = Some(editor::osc52(&copy));
                }
            }
            last_tick = Instant::now();
        }
        let mut revision = None;
        host.with_doc(&mut |doc| revision = Some(doc.revision()));
        let stale = revision != drawn_revision || last_draw.elapsed() >= Duration::from_millis(100);
        if !(input || stale) {
            if event::poll(Duration::from_millis(8))? {
                input = true;
                if handle_waiting(host, &mut editor, &mut terminal)? {
                    return Ok(());
                }
            }
            continue;
        }
        editor.dirty = host.is_dirty();
        terminal.draw(|frame| {
            let area = frame.area();
            let mut cursor = None;
            host.with_doc(&mut |doc| cursor = render(&mut editor, doc, area, frame.buffer_mut(), depth, now));
            if let Some((x, y)) = cursor {
                frame.set_cursor_position((x, y));
            }
        })?;
        last_draw = Instant::now();
        drawn_revision = revision;
        input = false;
        if let Some(seq) = editor.osc52.take() {
            let mut out = io::stdout();
            out.write_all(seq.as_bytes())?;
            out.flush()?;
        }
        if event::poll(Duration::from_millis(8))? {
            input = true;
            if handle_waiting(host, &mut editor, &mut terminal)? {
                return Ok(());
            }
        }
    }
}

/// Handle every event already waiting (before drawing again); true means quit.
fn handle_waiting<B: ratatui::backend::Backend>(
    host: &mut dyn Host,
    editor: &mut Editor,
    terminal: &mut Terminal<B>,
) -> io::Result<bool>
where
    io::Error: From<B::Error>,
{
    loop {
        let ev = event::read()?;
        if let Event::Resize(..) = ev {
            terminal.autoresize()?;
        }
        if dispatch(host, editor, &ev) {
            return Ok(true);
        }
        if !event::poll(Duration::ZERO)? {
            return Ok(false);
        }
    }
}

/// Let the editor handle one event and carry out what it asks; true means quit.
fn dispatch(host: &mut dyn Host, editor: &mut Editor, ev: &Event) -> bool {
    let mut action = Action::None;
    let now = now_ms();
    host.with_doc(&mut |doc| action = editor.handle_event(ev, doc, now));
    match action {
        Action::None => false,
        Action::Save => {
            save(host, editor);
            false
        }
        Action::Quit => true,
        Action::SaveAndQuit => save(host, editor),
        Action::DiscardAndQuit => match host.discard() {
            // Back to the file's text, as a change of its own: the next open shows
            // what was saved, and `tandem log` / `restore` still have the rest.
            Ok(()) => true,
            Err(e) => {
                editor.error(format!("not discarded: {e}"));
                false
            }
        },
        Action::Share => {
            match host.share() {
                Ok(report) => editor.info(report),
                Err(e) => editor.error(e),
            }
            false
        }
    }
}

fn save(host: &mut dyn Host, editor: &mut Editor) -> bool {
    match host.save() {
        Ok(report) => {
            editor.info(report);
            true
        }
        Err(e) => {
            editor.error(format!("not saved: {e} (your text is kept; fix it and press Ctrl-S again)"));
            false
        }
    }
}
