//! Benchmark machinery for tandem: load editing traces (the `../shared/traces` format)
//! and replay them through the real document path, raw Automerge and raw ropey.
//!
//! Trace format (gzipped JSON): `{"startContent", "endContent", "txns": [{"time",
//! "patches": [[pos, delete, insert], ...]}]}`; positions are Unicode code points.

pub mod central;
pub mod crash;
pub mod folder;
pub mod history;
pub mod keystroke;
pub mod live;
pub mod nat;
pub mod natlab;
pub mod security;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use ropey::Rope;
use serde::Deserialize;
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_store::{StoredDoc, Workspace};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    start_content: String,
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    time: String,
    patches: Vec<(usize, usize, String)>,
}

/// One transaction of a trace: its time and its patches.
pub struct Txn {
    pub time_ms: u64,
    pub patches: Vec<(usize, usize, String)>,
}

pub struct Trace {
    pub start: String,
    pub end: String,
    pub txns: Vec<Txn>,
}

impl Trace {
    pub fn patches(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}

/// The device keys benchmarks sign with (kept in `dir/home`, made on first use).
pub fn keys(dir: &Path) -> Result<tandem_store::Keys, String> {
    tandem_store::Keys::load(&dir.join("home")).map_err(|e| e.to_string())
}

/// Load a `.json.gz` (or plain `.json`) trace.
pub fn load_trace(path: &Path) -> Result<Trace, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("{}: not a valid gzip file: {e}", path.display()))?;
        out
    } else {
        bytes
    };
    let raw: RawTrace = serde_json::from_slice(&json)
        .map_err(|e| format!("{}: not an editing trace: {e}", path.display()))?;
    let mut txns = Vec::with_capacity(raw.txns.len());
    let mut last = 0u64;
    for (i, t) in raw.txns.into_iter().enumerate() {
        let ms = parse_iso_ms(&t.time)
            .ok_or_else(|| format!("{}: txn {i}: bad time {:?}", path.display(), t.time))?;
        // Some traces step back in time now and then; a clock never does.
        last = last.max(ms);
        txns.push(Txn { time_ms: last, patches: t.patches });
    }
    Ok(Trace { start: raw.start_content, end: raw.end_content, txns })
}

/// Milliseconds since the Unix epoch of an ISO-8601 time like
/// `2021-04-19T06:06:58.219Z` or `2023-11-22T03:57:32+00:00` (fraction optional).
pub fn parse_iso_ms(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let (time, offset_min) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (t, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
        (t, sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?))
    } else {
        (time, 0)
    };
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac_ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm - offset_min) * 60 * 1000 + ss * 1000 + frac_ms).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_times_with_and_without_offsets() {
        use super::parse_iso_ms;
        assert_eq!(parse_iso_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(parse_iso_ms("2021-04-19T06:06:58.219Z"), Some(1_618_812_418_219));
        assert_eq!(parse_iso_ms("2023-11-22T03:57:32+00:00"), parse_iso_ms("2023-11-22T03:57:32Z"));
        assert_eq!(parse_iso_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso_ms("yesterday"), None);
    }
}

/// Which clock drives commit coalescing during a replay.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The trace's own timestamps.
    Trace,
    /// A fixed interval between transactions (a typist at constant speed).
    Every(u64),
}

/// What a replay through the editor's path measured.
pub struct EditorReplay {
    pub changes: usize,
    pub replay_ms: f64,
    pub final_text_ok: bool,
    pub automerge_save_bytes: usize,
    pub stored_bytes: u64,
}

/// Replay `trace` through the real document path: rope + Automerge edits, commits
/// coalesced by `clock` and `config`, each commit appended durably to a store in
/// `dir`, then a final save of the plain file. `sharing`: every keystroke is also
/// named for peers as a live edit (what `tandem share` does), and handed out.
pub fn replay_editor(
    trace: &Trace,
    dir: &Path,
    clock: Clock,
    config: DocConfig,
    sharing: bool,
) -> Result<EditorReplay, String> {
    let file = dir.join("trace.txt");
    std::fs::write(&file, &trace.start).map_err(|e| e.to_string())?;
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("workspace locked")?;
    let author = Author::new("bench", ActorId::from(vec![7u8; 16]));
    let (mut stored, _) =
        StoredDoc::open(&ws, &file, author, config, false, &crate::keys(dir)?).map_err(|e| e.to_string())?;
    stored.doc.record_live(sharing);
    let base = trace.txns.first().map_or(0, |t| t.time_ms);
    let mut changes = 0;
    let started = Instant::now();
    let mut last_sync = started;
    for (i, txn) in trace.txns.iter().enumerate() {
        let now = match clock {
            Clock::Trace => txn.time_ms,
            Clock::Every(ms) => base + i as u64 * ms,
        };
        changes += stored.poll_commit(now).map_err(|e| e.to_string())?.len();
        // The editor makes its history durable once a second of wall time (log
        // fsync, checkpoint), whatever the trace's clock says.
        if last_sync.elapsed() >= std::time::Duration::from_secs(1) {
            stored.sync().map_err(|e| e.to_string())?;
            last_sync = Instant::now();
        }
        for (pos, del, ins) in &txn.patches {
            stored.doc.splice(*pos, *del, ins, now).map_err(|e| format!("txn {i}: {e}"))?;
        }
        if sharing {
            std::hint::black_box(stored.doc.take_live());
        }
    }
    let end = trace.txns.last().map_or(base, |t| t.time_ms) + 10_000;
    changes += stored.commit(end).map_err(|e| e.to_string())?.len();
    stored.save(end).map_err(|e| e.to_string())?;
    let replay_ms = started.elapsed().as_secs_f64() * 1e3;
    stored.compact().map_err(|e| e.to_string())?;
    // The rope, and Automerge's text (what history holds) with it.
    let final_text_ok = stored.doc.rope() == trace.end.as_str() && stored.doc.is_consistent();
    let automerge_save_bytes = stored.doc.save(end).len();
    Ok(EditorReplay {
        changes,
        replay_ms,
        final_text_ok,
        automerge_save_bytes,
        stored_bytes: stored.stored_bytes(),
    })
}

/// Raw Automerge: one splice and one commit per patch. Returns (ms, final text ok, save bytes).
pub fn replay_automerge(trace: &Trace) -> (f64, bool, usize) {
    let started = Instant::now();
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, "text", ObjType::Text).expect("new text object");
    doc.splice_text(&text, 0, 0, &trace.start).expect("initial text");
    doc.commit();
    for txn in &trace.txns {
        for (pos, del, ins) in &txn.patches {
            doc.splice_text(&text, *pos, *del as isize, ins).expect("trace patch fits");
            doc.commit();
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    use automerge::ReadDoc;
    let ok = doc.text(&text).map(|t| t == trace.end).unwrap_or(false);
    (ms, ok, doc.save().len())
}

/// Raw ropey: the same patches on a bare rope. Returns (ms, final text ok).
pub fn replay_ropey(trace: &Trace) -> (f64, bool) {
    let started = Instant::now();
    let mut rope = Rope::from_str(&trace.start);
    for txn in &trace.txns {
        for (pos, del, ins) in &txn.patches {
            rope.remove(*pos..pos + del);
            rope.insert(*pos, ins);
        }
    }
    (started.elapsed().as_secs_f64() * 1e3, rope == trace.end.as_str())
}

/// Peak resident set size of this process so far, in bytes (Linux).
pub fn peak_rss() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

/// Current resident set size of this process, in bytes (Linux).
pub fn current_rss() -> u64 {
    proc_status_kb("VmRSS:") * 1024
}

fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Reset the peak RSS counter so the next phase is measured alone (Linux >= 4.0).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
