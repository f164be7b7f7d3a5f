//! Drawing the editor into a ratatui buffer. Only visible lines are measured, so a
//! frame costs the same in a 10-line file and a 10 MB one.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use tandem_doc::{CursorId, Document, Selection};
use unicode_width::UnicodeWidthStr;

use crate::config::ColorDepth;
use crate::editor::{Activity, Editor, MAX_COUNTED, Mode, Row};
use crate::history::{self, Blamed, Change, HistoryView};
use crate::keymap::describe;
use crate::text::{self, Symbol, line_text};

/// Styles of the editor's parts, adapted to the terminal's colors.
struct Styles {
    depth: ColorDepth,
    line_no: Style,
    line_no_current: Style,
    selection: Style,
    status: Style,
    message: Style,
    error: Style,
    search_match: Style,
    hidden: Style,
    added: Style,
    removed: Style,
}

impl Styles {
    fn new(editor: &Editor, depth: ColorDepth) -> Styles {
        let t = &editor.config.theme;
        let fg = |c: Color| depth.adapt(c).map_or(Style::default(), |c| Style::default().fg(c));
        let bg = |c: Color, fallback: Modifier| {
            depth.adapt(c).map_or(Style::default().add_modifier(fallback), |c| Style::default().bg(c))
        };
        Styles {
            depth,
            line_no: fg(t.line_numbers),
            line_no_current: Style::default().add_modifier(Modifier::BOLD),
            selection: bg(t.selection_bg, Modifier::REVERSED),
            status: match (depth.adapt(t.status_bg), depth.adapt(t.status_fg)) {
                (Some(b), Some(f)) => Style::default().bg(b).fg(f),
                _ => Style::default().add_modifier(Modifier::REVERSED),
            },
            message: fg(t.message),
            error: fg(t.error).add_modifier(Modifier::BOLD),
            search_match: bg(t.search_match_bg, Modifier::UNDERLINED),
            hidden: fg(t.hidden),
            // On green, black reads in every palette; without color, reverse video.
            added: depth.adapt(t.diff_added).map_or(Style::default().add_modifier(Modifier::REVERSED), |c| {
                Style::default().bg(c).fg(Color::Black)
            }),
            removed: fg(t.diff_removed).add_modifier(Modifier::CROSSED_OUT),
        }
    }

    fn peer(&self, color: Color) -> Style {
        match self.depth.adapt(color) {
            Some(c) => Style::default().bg(c).fg(Color::Black),
            None => Style::default().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED),
        }
    }

    fn peer_label(&self, color: Color) -> Style {
        match self.depth.adapt(color) {
            Some(c) => Style::default().fg(c).add_modifier(Modifier::BOLD),
            None => Style::default().add_modifier(Modifier::BOLD),
        }
    }
}

/// Columns of the blame gutter: an author's name, their change's age, and spaces.
const BLAME_NAME: usize = 8;
const BLAME_WIDTH: usize = BLAME_NAME + 1 + 4 + 1;

/// Draw the editor over `area` of `buf`; returns where the terminal cursor belongs.
pub fn render(
    editor: &mut Editor,
    doc: &mut Document,
    area: Rect,
    buf: &mut Buffer,
    depth: ColorDepth,
    now_ms: u64,
) -> Option<(u16, u16)> {
    let styles = Styles::new(editor, depth);
    let mut cursor_at = if editor.history.is_some() {
        draw_history(editor, doc, &styles, area, buf, now_ms);
        None
    } else {
        draw_editing(editor, doc, &styles, area, buf, now_ms)
    };
    if let Mode::Help { scroll } = editor.mode {
        draw_help(editor, area, buf, scroll);
        cursor_at = None;
    }
    if let Mode::Popup { title, lines } = &editor.mode {
        draw_popup(area, buf, title, lines, depth);
        cursor_at = None;
    }
    cursor_at
}

/// The text being edited, the status line and the message line.
fn draw_editing(
    editor: &mut Editor,
    doc: &mut Document,
    styles: &Styles,
    area: Rect,
    buf: &mut Buffer,
    now_ms: u64,
) -> Option<(u16, u16)> {
    let bars = if area.height >= 3 { 2 } else { 0 };
    let text_height = area.height.saturating_sub(bars) as usize;
    if let Some(blame) = &mut editor.blame {
        blame.refresh(doc, now_ms);
    }
    let rope = doc.rope().clone();
    let blame_w = if editor.blame.is_some() { BLAME_WIDTH } else { 0 };
    let numbers = if editor.line_numbers { rope.len_lines().to_string().len().max(3) + 1 } else { 0 };
    let gutter = blame_w + numbers;
    let text_width = (area.width as usize).saturating_sub(gutter).max(1);
    // A new size (a resized terminal) can leave the cursor outside the view: bring
    // it back in now, not at the next key.
    let resized = (editor.text_width, editor.text_height) != (text_width, text_height.max(1));
    editor.text_width = text_width;
    editor.text_height = text_height.max(1);
    if resized && editor.follow.is_none() {
        editor.scroll_to_cursor(doc);
    }
    editor.track_followed(doc);
    let tab = editor.config.tab_width;
    let local = doc.cursor(CursorId::LOCAL).unwrap_or_default();
    let cursor_line = rope.char_to_line(local.head.min(rope.len_chars()));
    let peers: Vec<(String, Color, Selection)> = editor
        .peers
        .iter()
        .filter_map(|p| doc.cursor(p.cursor).map(|s| (p.name.clone(), p.color, s)))
        .collect();
    let query = editor.search_query().map(str::to_owned);

    let mut rows: Vec<Row> = Vec::with_capacity(text_height);
    let mut cursor_at = None;
    let mut line = editor.top_line(doc);
    let mut first_row = editor.top_row;
    let x0 = area.x + gutter as u16;
    editor.text_origin = (x0, area.y);
    while rows.len() < text_height && line < rope.len_lines() {
        let text = line_text(&rope, line);
        let line_start = rope.line_to_char(line);
        let line_chars = text.chars().count();
        let starts = if editor.soft_wrap { text::wrap_rows(&text, text_width, tab) } else { vec![0] };
        let matches = query.as_deref().map(|q| match_ranges(&text, q)).unwrap_or_default();
        let cells: Vec<text::Cell<'_>> = text::cells(&text, tab).collect();
        for (r, &start) in starts.iter().enumerate().skip(first_row.min(starts.len() - 1)) {
            if rows.len() >= text_height {
                break;
            }
            let y = area.y + rows.len() as u16;
            let end = starts.get(r + 1).copied().unwrap_or(line_chars);
            if r == 0
                && let Some((name, age, color)) = blame_label(editor, doc, line, now_ms)
            {
                buf.set_stringn(area.x, y, &name, BLAME_NAME, styles.peer_label(color));
                buf.set_stringn(
                    area.x + BLAME_NAME as u16 + 1,
                    y,
                    &age,
                    blame_w - BLAME_NAME - 1,
                    styles.line_no,
                );
            }
            if numbers > 0 {
                let label =
                    if r == 0 { format!("{:>w$} ", line + 1, w = numbers - 1) } else { " ".repeat(numbers) };
                let style = if line == cursor_line { styles.line_no_current } else { styles.line_no };
                buf.set_stringn(area.x + blame_w as u16, y, &label, numbers, style);
            }
            let start_col = text::col_of(&text, start, tab);
            let shift = if editor.soft_wrap { start_col } else { editor.left_col };
            let mut content_end_x = 0usize;
            for cell in cells.iter().filter(|c| c.start >= start && c.start < end) {
                if cell.col < shift {
                    continue;
                }
                let x = cell.col - shift;
                if x + cell.width > text_width {
                    break;
                }
                let pos = line_start + cell.start;
                let mut style = Style::default();
                if matches.iter().any(|(s, e)| cell.start >= *s && cell.start < *e) {
                    style = style.patch(styles.search_match);
                }
                for (_, color, sel) in &peers {
                    if pos >= sel.start() && pos < sel.end() {
                        style = style.patch(styles.peer(*color).add_modifier(Modifier::DIM));
                    }
                }
                if pos >= local.start() && pos < local.end() {
                    style = style.patch(styles.selection);
                }
                for (_, color, sel) in &peers {
                    if sel.head == pos {
                        style = style.patch(styles.peer(*color));
                    }
                }
                let sx = x0 + x as u16;
                match cell.symbol {
                    Symbol::Text(g) => {
                        buf.set_stringn(sx, y, g, cell.width, style);
                    }
                    Symbol::Tab => {
                        buf.set_stringn(sx, y, " ".repeat(cell.width), cell.width, style);
                    }
                    Symbol::Hidden => {
                        buf.set_stringn(sx, y, "·", 1, style.patch(styles.hidden));
                    }
                }
                content_end_x = x + cell.width;
            }
            let row = Row { line, start, end, start_col };
            let last_row = r + 1 == starts.len();
            // Carets at the end of a line (or of a wrapped row) sit after its last cell.
            let in_row = |pos: usize| {
                pos >= line_start + start && (pos < line_start + end || (last_row && pos == line_start + end))
            };
            let caret_x = |pos: usize| text::col_of(&text, pos - line_start, tab).checked_sub(shift);
            if in_row(local.head)
                && let Some(x) = caret_x(local.head).filter(|x| *x < text_width)
            {
                cursor_at = Some((x0 + x as u16, y));
            }
            let mut label_x = content_end_x + 1;
            for (name, color, sel) in &peers {
                if !in_row(sel.head) {
                    continue;
                }
                if let Some(x) = caret_x(sel.head).filter(|x| *x < text_width)
                    && sel.head == line_start + end
                    && last_row
                {
                    buf.set_stringn(x0 + x as u16, y, " ", 1, styles.peer(*color));
                    label_x = label_x.max(x + 2);
                }
                let label = format!("‹{name}›");
                let w = label.width();
                let lx = if label_x + w <= text_width { label_x } else { text_width.saturating_sub(w) };
                buf.set_stringn(x0 + lx as u16, y, &label, text_width - lx, styles.peer_label(*color));
                label_x = lx + w + 1;
            }
            rows.push(row);
        }
        first_row = 0;
        line += 1;
    }
    editor.rows = rows;

    if bars > 0 {
        let status_y = area.y + area.height - 2;
        draw_status(editor, doc, styles, area, status_y, buf, now_ms);
        let msg_y = area.y + area.height - 1;
        if let Some(c) = draw_message(editor, styles, area, msg_y, buf) {
            cursor_at = Some(c);
        }
    }
    cursor_at
}

/// The blame gutter's cell of `line` when it is shown: who changed the line last (cut
/// to fit), when (right-aligned), and the color of that author.
fn blame_label(editor: &Editor, doc: &Document, line: usize, now_ms: u64) -> Option<(String, String, Color)> {
    let (name, age) = match editor.blame.as_ref()?.line(doc, line) {
        Blamed::Change(b) => (b.author.clone(), history::age(now_ms, b.time_ms)),
        Blamed::Changed { mine: true } => (doc.author().name.clone(), "now".to_owned()),
        Blamed::Changed { mine: false } => ("…".to_owned(), String::new()),
        Blamed::Nobody => return None,
    };
    let color = history::author_color(&name, &editor.config.theme.peers);
    Some((fit(&name, BLAME_NAME), format!("{age:>4} "), color))
}

/// `s` cut to `width` columns (never through a wide char).
fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    out
}

/// The history view: the selected version's text with what it changed marked, a
/// header naming the version in the status line, and its keys in the message line.
fn draw_history(
    editor: &mut Editor,
    doc: &mut Document,
    styles: &Styles,
    area: Rect,
    buf: &mut Buffer,
    now_ms: u64,
) {
    let bars = if area.height >= 3 { 2 } else { 0 };
    let height = area.height.saturating_sub(bars) as usize;
    // A diff marker column, then the text.
    let marker_w = 2usize;
    let width = (area.width as usize).saturating_sub(marker_w).max(1);
    editor.text_width = width;
    editor.text_height = height.max(1);
    let tab = editor.config.tab_width;
    let Some(view) = editor.history.as_mut() else { return };
    view.prepare(doc, height);
    let stale = view.is_stale(doc);
    let text_area = Rect::new(area.x, area.y, area.width, height as u16);
    match (view.current(), view.error()) {
        (Some(shown), _) => draw_version(shown, view.scroll, styles, text_area, tab, buf),
        (None, Some(e)) => {
            buf.set_stringn(
                area.x,
                area.y,
                format!("cannot read this version: {e}"),
                area.width as usize,
                styles.error,
            );
        }
        (None, None) => {
            buf.set_stringn(area.x, area.y, "reading this version…", area.width as usize, styles.message);
        }
    }
    if bars == 0 {
        return;
    }
    let header = history_header(view, now_ms);
    let status_y = area.y + area.height - 2;
    buf.set_style(Rect::new(area.x, status_y, area.width, 1), styles.status);
    buf.set_stringn(area.x, status_y, &header, area.width as usize, styles.status);
    let msg_y = area.y + area.height - 1;
    if let Some(m) = &editor.message {
        buf.set_stringn(
            area.x,
            msg_y,
            &m.text,
            area.width as usize,
            if m.error { styles.error } else { styles.message },
        );
    } else {
        let hint = "←/→ step · PgUp/PgDn ±10 · Home/End · ↑/↓ scroll · Enter restore · Esc back";
        let hint =
            if stale { format!("newer changes arrived: r reloads · {hint}") } else { hint.to_owned() };
        buf.set_stringn(area.x, msg_y, &hint, area.width as usize, styles.line_no);
    }
}

/// " version 12/40 │ 3f2a1b4c5d6e │ ada │ +12 -3 │ 2025-01-02 13:45 UTC, 5m ago": what
/// matters most first, as narrow terminals cut the end.
fn history_header(view: &HistoryView, now_ms: u64) -> String {
    let Some(v) = view.version() else { return " history".into() };
    let stats = view.current().map_or(String::new(), |s| format!(" │ +{} -{}", s.inserted, s.deleted));
    let ago = match history::age(now_ms, v.time_ms).as_str() {
        "now" => "just now".to_owned(),
        age => format!("{age} ago"),
    };
    format!(
        " version {}/{} │ {} │ {}{stats} │ {}, {ago}",
        view.index() + 1,
        view.len(),
        v.short_id(),
        v.author,
        history::utc(v.time_ms),
    )
}

/// The lines of a version from `scroll` on: added text on green, removed text struck
/// through in red, a `+`/`-`/`~` in the left column of every changed line. Long lines
/// wrap, so no change is ever off to the right.
fn draw_version(
    shown: &history::Shown,
    scroll: usize,
    styles: &Styles,
    area: Rect,
    tab: usize,
    buf: &mut Buffer,
) {
    let merged = &shown.merged;
    let height = area.height as usize;
    let width = (area.width as usize).saturating_sub(2).max(1);
    let x0 = area.x + 2;
    let mut y = 0usize;
    let mut line = scroll;
    while y < height && line < merged.len_lines() {
        let text = line_text(merged, line);
        let start = merged.line_to_char(line);
        let chars = text.chars().count();
        let style_of = |kind: Change| match kind {
            Change::Same => Style::default(),
            Change::Added => styles.added,
            Change::Removed => styles.removed,
        };
        if let Some(m) = shown.line_marker(line) {
            let kind = if m == '+' { Change::Added } else { Change::Removed };
            let style =
                if m == '~' { styles.message } else { style_of(kind).remove_modifier(Modifier::CROSSED_OUT) };
            buf.set_stringn(area.x, area.y + y as u16, m.to_string(), 1, style);
        }
        let starts = text::wrap_rows(&text, width, tab);
        let cells: Vec<text::Cell<'_>> = text::cells(&text, tab).collect();
        let mut end_x = 0;
        for (r, &row_start) in starts.iter().enumerate() {
            if y >= height {
                break;
            }
            let row_end = starts.get(r + 1).copied().unwrap_or(chars);
            let shift = text::col_of(&text, row_start, tab);
            let sy = area.y + y as u16;
            end_x = 0;
            for cell in cells.iter().filter(|c| c.start >= row_start && c.start < row_end) {
                let x = cell.col - shift;
                if x + cell.width > width {
                    break;
                }
                let style = style_of(shown.kind_at(start + cell.start));
                let sx = x0 + x as u16;
                match cell.symbol {
                    Symbol::Text(g) => buf.set_stringn(sx, sy, g, cell.width, style),
                    Symbol::Tab => buf.set_stringn(sx, sy, " ".repeat(cell.width), cell.width, style),
                    Symbol::Hidden => buf.set_stringn(sx, sy, "·", 1, style.patch(styles.hidden)),
                };
                end_x = x + cell.width;
            }
            y += 1;
        }
        // A line break the version added or removed, in a line it did not add or
        // remove whole (a join, a split), shows as ↵ at the line's end.
        let has_break = line + 1 < merged.len_lines();
        let kind = shown.kind_at(start + chars);
        let whole = (start..start + chars).all(|pos| shown.kind_at(pos) == kind);
        if has_break && kind != Change::Same && !whole && end_x < width && y > 0 {
            buf.set_stringn(x0 + end_x as u16, area.y + y as u16 - 1, "↵", 1, style_of(kind));
        }
        line += 1;
    }
}

/// A centered box: a title bar, then `lines` black on white (so a QR code scans
/// whatever the terminal's colors).
fn draw_popup(area: Rect, buf: &mut Buffer, title: &str, lines: &[String], depth: ColorDepth) {
    let width_of =
        |lines: &[String]| lines.iter().map(|l| l.width()).max().unwrap_or(0).max(title.width() + 2);
    // A cut QR code scans as nothing: say what it needs instead of drawing a part.
    let (need_w, need_h) = (width_of(lines) + 4, lines.len() + 2);
    let note;
    let lines = if need_w > area.width as usize || need_h > area.height as usize {
        note = vec![
            format!(
                "This needs {need_w} x {need_h} cells; the terminal has {} x {}.",
                area.width, area.height
            ),
            "Enlarge the terminal (or make its font smaller), then Alt-S shows it again.".to_owned(),
        ];
        &note[..]
    } else {
        lines
    };
    let content_w = width_of(lines);
    let w = (content_w as u16 + 4).min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let x = area.x + (area.width - w) / 2;
    let y = area.y + (area.height - h) / 2;
    let body = if depth == ColorDepth::None {
        Style::default()
    } else {
        Style::default().fg(Color::Black).bg(Color::White)
    };
    let bar = Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD);
    buf.set_stringn(x, y, format!(" {title:<width$}", width = w as usize - 1), w as usize, bar);
    for row in 1..h {
        let text = lines.get(row as usize - 1).map_or("", String::as_str);
        let line = format!("  {text:<width$}", width = w as usize - 2);
        buf.set_stringn(x, y + row, &line, w as usize, body);
    }
}

/// Char ranges in `text` matching `query` (smart case).
fn match_ranges(text: &str, query: &str) -> Vec<(usize, usize)> {
    let fold = !query.chars().any(char::is_uppercase);
    let hay: Vec<char> = if fold {
        text.chars().map(|c| c.to_lowercase().next().unwrap_or(c)).collect()
    } else {
        text.chars().collect()
    };
    let needle: Vec<char> =
        if fold { query.to_lowercase().chars().collect() } else { query.chars().collect() };
    if needle.is_empty() || needle.len() > hay.len() {
        return Vec::new();
    }
    (0..=hay.len() - needle.len())
        .filter(|&i| hay[i..i + needle.len()] == needle[..])
        .map(|i| (i, i + needle.len()))
        .collect()
}

fn draw_status(
    editor: &Editor,
    doc: &Document,
    styles: &Styles,
    area: Rect,
    y: u16,
    buf: &mut Buffer,
    now_ms: u64,
) {
    let rope = doc.rope();
    buf.set_style(Rect::new(area.x, y, area.width, 1), styles.status);
    let sel = doc.cursor(CursorId::LOCAL).unwrap_or_default();
    let head = sel.head.min(rope.len_chars());
    let line = rope.char_to_line(head);
    let col = text::col_of(&line_text(rope, line), head - rope.line_to_char(line), editor.config.tab_width);
    let selected =
        if sel.is_caret() { String::new() } else { format!(" ({} selected)", sel.end() - sel.start()) };
    let ending =
        match tandem_doc::export::line_ending(&rope.slice(..rope.len_chars().min(100_000)).to_string()) {
            "crlf" => "CRLF",
            "mixed" => "mixed",
            _ => "LF",
        };
    // A short name of the version: peers that agree show the same one.
    let version =
        doc.heads().iter().map(|h| h.to_string()).min().map_or(String::new(), |h| format!(" │ @{}", &h[..6]));
    let network = editor.network.as_ref().map_or(String::new(), |n| format!(" │ {n}"));
    let left = format!(
        " {}{} │ Ln {}, Col {}{} │ UTF-8 {}{}{}{}",
        editor.name,
        if editor.dirty { " [+]" } else { "" },
        line + 1,
        col + 1,
        selected,
        ending,
        if editor.soft_wrap { " │ wrap" } else { "" },
        version,
        network,
    );
    buf.set_stringn(area.x, y, &left, area.width as usize, styles.status);
    // Peers, right-aligned: a colored dot and the name, dimmed when idle or away.
    let mut spans: Vec<(String, Style)> = Vec::new();
    for (i, p) in editor.peers.iter().enumerate() {
        let (dot, suffix) = match p.activity(now_ms) {
            Activity::Active => ("●", ""),
            Activity::Idle => ("◐", " idle"),
            Activity::Away => ("○", " away"),
        };
        let following = if editor.follow == Some(i) { " (following)" } else { "" };
        spans.push((format!("{dot} "), styles.status.patch(styles.peer_label(p.color))));
        let link = if p.link.is_empty() { String::new() } else { format!(" ·{}", p.link) };
        spans.push((format!("{}{link}{suffix}{following}  ", p.name), styles.status));
    }
    // Who is here matters more than the right end of the status text: the peers get
    // up to 60% of the line, drawn over it; past that only their dots are shown.
    let mut width: usize = spans.iter().map(|(s, _)| s.width()).sum();
    if width > area.width as usize * 3 / 5 {
        spans.retain(|(s, _)| s.starts_with(['●', '◐', '○']));
        width = spans.iter().map(|(s, _)| s.width()).sum();
    }
    if width > 0 && width < area.width as usize {
        let mut x = area.x + area.width - width as u16;
        for (s, style) in spans {
            buf.set_stringn(x, y, &s, s.width(), style);
            x += s.width() as u16;
        }
    }
}

fn draw_message(
    editor: &Editor,
    styles: &Styles,
    area: Rect,
    y: u16,
    buf: &mut Buffer,
) -> Option<(u16, u16)> {
    let w = area.width as usize;
    match &editor.mode {
        Mode::Search { query, .. } => {
            let prompt = format!("Find: {query}");
            buf.set_stringn(area.x, y, &prompt, w, Style::default());
            let count = match editor.search_count {
                Some((_, 0)) => "  no match".to_owned(),
                Some((0, n)) => format!("  {n}{} matches", if n >= MAX_COUNTED { "+" } else { "" }),
                Some((i, n)) => format!("  {i} of {n}{}", if n >= MAX_COUNTED { "+" } else { "" }),
                None => String::new(),
            };
            let hint = format!("{count}  Enter/F3 next · Shift-Enter previous · Tab keep · Esc cancel");
            let hint = if prompt.width() + hint.width() < w { hint } else { count };
            let px = prompt.width();
            if px + hint.width() < w {
                buf.set_stringn(area.x + px as u16, y, &hint, w - px, styles.line_no);
            }
            Some((area.x + (px as u16).min(area.width.saturating_sub(1)), y))
        }
        Mode::Goto { input } => {
            let prompt = format!("Go to line[:column]: {input}");
            buf.set_stringn(area.x, y, &prompt, w, Style::default());
            Some((area.x + (prompt.width() as u16).min(area.width.saturating_sub(1)), y))
        }
        _ => {
            if let Some(m) = &editor.message {
                let style = if m.error { styles.error } else { styles.message };
                buf.set_stringn(area.x, y, &m.text, w, style);
            } else {
                buf.set_stringn(area.x, y, "F1 help · Ctrl-S save · Ctrl-Q quit", w, styles.line_no);
            }
            None
        }
    }
}

/// `text` in lines of at most `width` columns, broken between words.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.width() + 1 + word.width() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// F1: every binding, over the text but not over the status and message lines;
/// long descriptions wrap rather than being cut.
fn draw_help(editor: &Editor, area: Rect, buf: &mut Buffer, scroll: usize) {
    let lines = describe(&editor.config.keys);
    let key_w = lines.iter().map(|(k, _)| k.width()).max().unwrap_or(0).min(30);
    let w = (area.width.saturating_sub(4)).min(120);
    // The status and message lines stay visible below.
    let h = area.height.saturating_sub(3);
    if w < 30 || h < 5 {
        return;
    }
    let x = area.x + (area.width - w) / 2;
    let y = area.y;
    let frame = Rect::new(x, y, w, h);
    let reversed = Style::default().add_modifier(Modifier::REVERSED);
    for yy in frame.y..frame.y + frame.height {
        buf.set_stringn(frame.x, yy, " ".repeat(w as usize), w as usize, reversed);
    }
    let title = " tandem keys — Esc closes, ↑/↓ scroll ";
    buf.set_stringn(x + 2, y, title, w as usize - 4, reversed.add_modifier(Modifier::BOLD));
    let help_w = (w as usize).saturating_sub(key_w + 5).max(10);
    let rows: Vec<String> = lines
        .iter()
        .flat_map(|(keys, help)| {
            wrap_words(help, help_w).into_iter().enumerate().map(move |(i, part)| {
                let keys = if i == 0 { keys.as_str() } else { "" };
                format!(" {keys:<key_w$}  {part}")
            })
        })
        .collect();
    let inner = (h - 2) as usize;
    let scroll = scroll.min(rows.len().saturating_sub(inner));
    for (i, row) in rows.iter().skip(scroll).take(inner).enumerate() {
        buf.set_stringn(x + 1, y + 1 + i as u16, row, w as usize - 2, reversed);
    }
}

/// The first screen of a document that is still loading: its first lines, read-only.
pub fn render_preview(
    rope: &ropey::Rope,
    name: &str,
    config: &crate::Config,
    area: Rect,
    buf: &mut Buffer,
    depth: ColorDepth,
) {
    let line_no = depth.adapt(config.theme.line_numbers).map_or(Style::default(), |c| Style::default().fg(c));
    let bars = if area.height >= 3 { 2 } else { 0 };
    let height = area.height.saturating_sub(bars) as usize;
    let gutter = if config.line_numbers { rope.len_lines().to_string().len().max(3) + 1 } else { 0 };
    let width = (area.width as usize).saturating_sub(gutter);
    for line in 0..height.min(rope.len_lines()) {
        let y = area.y + line as u16;
        if gutter > 0 {
            buf.set_stringn(area.x, y, format!("{:>w$} ", line + 1, w = gutter - 1), gutter, line_no);
        }
        let text = line_text(rope, line);
        for cell in text::cells(&text, config.tab_width) {
            if cell.col + cell.width > width {
                break;
            }
            let x = area.x + (gutter + cell.col) as u16;
            match cell.symbol {
                Symbol::Text(g) => buf.set_stringn(x, y, g, cell.width, Style::default()),
                Symbol::Tab | Symbol::Hidden => buf.set_stringn(x, y, " ", 1, Style::default()),
            };
        }
    }
    if bars > 0 {
        let status = Style::default().add_modifier(Modifier::REVERSED);
        let y = area.y + area.height - 2;
        buf.set_style(Rect::new(area.x, y, area.width, 1), status);
        buf.set_stringn(area.x, y, format!(" {name} │ loading history…"), area.width as usize, status);
        buf.set_stringn(area.x, y + 1, "F1 help · Ctrl-S save · Ctrl-Q quit", area.width as usize, line_no);
    }
}
