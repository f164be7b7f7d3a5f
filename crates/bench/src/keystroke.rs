//! Keystroke-to-frame: the time from a key event to a drawn frame (edit + render on a
//! TestBackend), on documents of very different sizes, plus open-to-first-screen.

use std::path::Path;
use std::time::Instant;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Value, json};
use tandem_doc::{ActorId, Author, DocConfig, Document};
use tandem_store::{StoredDoc, Workspace, first_screen};
use tandem_tui::config::ColorDepth;
use tandem_tui::keymap::Command;
use tandem_tui::{Config, Editor, render};

const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    (sorted[i] * 100.0).round() / 100.0
}

pub fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({"p50": percentile(&v, 0.5), "p99": percentile(&v, 0.99), "max": percentile(&v, 1.0), "n": v.len()})
}

/// A generated text of about `bytes` bytes: lines of mixed scripts, tabs and emoji.
pub fn generated_text(bytes: usize) -> String {
    let words = ["alpha", "beta", "γάμμα", "日本語", "emoji🎉", "tab\there", "line", "ünïcödé", "x"];
    let mut out = String::with_capacity(bytes + 100);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while out.len() < bytes {
        for w in 0..10 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if w > 0 {
                out.push(' ');
            }
            out.push_str(words[(seed % words.len() as u64) as usize]);
        }
        out.push('\n');
    }
    out
}

/// Type `keys` keystrokes in the middle of `doc` (one Backspace in ten), drawing a
/// frame after each; commits happen as the default window says, at 10 keys/s.
pub fn type_into(doc: &mut Document, keys: usize) -> Value {
    let mut editor = Editor::new(Config::default(), "bench", doc);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    let mut now = 1_000_000u64;
    let middle = doc.rope().len_lines() / 2;
    editor.run(Command::GotoLine, doc, now);
    for c in (middle + 1).to_string().chars() {
        editor.handle_event(&Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)), doc, now);
    }
    editor.handle_event(&Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)), doc, now);
    let mut frame = |editor: &mut Editor, doc: &mut Document, now: u64| {
        term.draw(|f| {
            render(editor, doc, f.area(), f.buffer_mut(), ColorDepth::TrueColor, now);
        })
        .expect("draw");
    };
    frame(&mut editor, doc, now);
    let (mut key_us, mut commit_us) = (Vec::with_capacity(keys), Vec::new());
    let mut edit_us = Vec::with_capacity(keys);
    for i in 0..keys {
        now += 100;
        let code =
            if i % 10 == 9 { KeyCode::Backspace } else { KeyCode::Char((b'a' + (i % 26) as u8) as char) };
        let ev = Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
        let t = Instant::now();
        editor.handle_event(&ev, doc, now);
        edit_us.push(t.elapsed().as_secs_f64() * 1e6);
        frame(&mut editor, doc, now);
        key_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        if !doc.poll_commit(now).is_empty() {
            commit_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    json!({"keystroke_to_frame_us": stats(key_us), "edit_us": stats(edit_us), "commit_us": stats(commit_us)})
}

/// Open-to-first-screen for the file at `file` in workspace `ws`: the text from the
/// store's cache or the file, a rope, and one drawn frame.
pub fn first_screen_ms(ws: &Workspace, file: &Path) -> f64 {
    let t = Instant::now();
    let text = first_screen(ws, file)
        .ok()
        .flatten()
        .or_else(|| std::fs::read_to_string(file).ok())
        .unwrap_or_default();
    let rope = ropey::Rope::from_str(&text);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    term.draw(|f| {
        tandem_tui::render::render_preview(
            &rope,
            "bench",
            &Config::default(),
            f.area(),
            f.buffer_mut(),
            ColorDepth::TrueColor,
        )
    })
    .expect("draw");
    t.elapsed().as_secs_f64() * 1e3
}

/// Run the keystroke benchmark on one stored document.
pub fn bench_stored(name: &str, dir: &Path, file: &Path, keys: usize) -> Result<Value, String> {
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let first = first_screen_ms(&ws, file);
    let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("locked")?;
    let author = Author::new("bench", ActorId::from(vec![9u8; 16]));
    let t = Instant::now();
    let (mut stored, _) = StoredDoc::open(&ws, file, author, DocConfig::default(), false, &crate::keys(dir)?)
        .map_err(|e| e.to_string())?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let chars = stored.doc.len_chars();
    let changes = stored.doc.change_count();
    let mut out = type_into(&mut stored.doc, keys);
    out["doc"] = json!(name);
    out["chars"] = json!(chars);
    out["changes"] = json!(changes);
    out["first_screen_ms"] = json!((first * 100.0).round() / 100.0);
    out["full_load_ms"] = json!(load_ms.round());
    Ok(out)
}
