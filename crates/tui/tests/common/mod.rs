//! Helpers shared by the editor's rendering tests (each includes this with `mod common;`).

use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The drawn screen as text, one trimmed line per row (a wide char's second cell
/// is skipped, so lines read as the user sees them).
pub fn screen(term: &Terminal<TestBackend>) -> Vec<String> {
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            let mut line = String::new();
            let mut skip = 0;
            for x in 0..buf.area.width {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = buf[(x, y)].symbol();
                line.push_str(sym);
                skip = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
            }
            line.trim_end().to_string()
        })
        .collect()
}
