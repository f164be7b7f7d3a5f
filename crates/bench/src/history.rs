//! History figures on a long-lived document (issue 5): the store's size on disk
//! against Automerge's `save()`, what `tandem gc` takes back, and the time of the
//! history operations (`log`, `blame`, export of an old version) on the loaded
//! document and cold through the `tandem` binary.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use tandem_doc::export::{ExportMeta, Format, export};
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_store::{StoredDoc, Workspace};

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Replay `trace` into `dir` as the editor does: a commit when the idle window or
/// the maximum delay has passed, and a checkpoint every second (the editor's tick,
/// which also compacts when due). Returns Automerge's `save()` size at the end.
pub fn replay_like_editor(trace: &crate::Trace, dir: &Path, every_ms: u64) -> Result<usize, String> {
    let file = dir.join("trace.txt");
    std::fs::write(&file, &trace.start).map_err(|e| e.to_string())?;
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("workspace locked")?;
    let author = Author::new("bench", ActorId::from(vec![7u8; 16]));
    let (mut stored, _) =
        StoredDoc::open(&ws, &file, author, DocConfig::default(), false, &crate::keys(dir)?)
            .map_err(|e| e.to_string())?;
    let mut last_sync = 0;
    for (i, txn) in trace.txns.iter().enumerate() {
        let now = 1_000_000 + i as u64 * every_ms;
        stored.poll_commit(now).map_err(|e| e.to_string())?;
        if now - last_sync >= 1000 {
            stored.sync().map_err(|e| e.to_string())?;
            last_sync = now;
        }
        for (pos, del, ins) in &txn.patches {
            stored.doc.splice(*pos, *del, ins, now).map_err(|e| format!("txn {i}: {e}"))?;
        }
    }
    let end = 1_000_000 + trace.txns.len() as u64 * every_ms + 10_000;
    stored.save(end).map_err(|e| e.to_string())?;
    if stored.doc.rope() != trace.end.as_str() {
        return Err("the replayed text differs from endContent".into());
    }
    Ok(stored.doc.save(end).len())
}

/// Sizes of the workspace `dir` (history of `trace.txt`, already replayed): bytes
/// on disk as the editor left them, and after `tandem gc` (histories folded into one
/// snapshot each, unused blobs deleted, the database file compacted).
pub fn store_sizes(tandem: &Path, dir: &Path) -> Result<Value, String> {
    let before = tandem_store::dir_bytes(&dir.join(".tandem"));
    let out = Command::new(tandem)
        .args(["gc", "--json"])
        .current_dir(dir)
        .env("TANDEM_HOME", dir.join("home"))
        .output()
        .map_err(|e| format!("{}: {e}", tandem.display()))?;
    if !out.status.success() {
        return Err(format!("tandem gc: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let gc: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(json!({
        "store_disk_bytes": before,
        "gc_removed_blobs": gc["removed_blobs"],
        "store_disk_bytes_after_gc": tandem_store::dir_bytes(&dir.join(".tandem")),
    }))
}

/// `log`, `blame` and an export of the version a tenth of the way into the history,
/// on the document loaded from `dir`.
pub fn operations(dir: &Path) -> Result<Value, String> {
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("workspace locked")?;
    let author = Author::new("bench", ActorId::from(vec![7u8; 16]));
    let (mut stored, _) =
        StoredDoc::open(&ws, &dir.join("trace.txt"), author, DocConfig::default(), false, &crate::keys(dir)?)
            .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let log = stored.doc.change_log();
    let log_ms = ms(started);
    let started = Instant::now();
    let blame = stored.doc.blame();
    let blame_ms = ms(started);
    let old = log.get(log.len() / 10).ok_or("an empty history")?;
    let started = Instant::now();
    let text = stored.doc.text_at(&[old.hash]).map_err(|e| e.to_string())?;
    let meta = ExportMeta {
        name: "trace.txt".into(),
        heads: vec![old.hash.to_string()],
        authors: vec!["bench".into()],
        change_count: log.len() / 10,
    };
    let exported = export(&text, Format::Md, &meta);
    let export_ms = ms(started);
    Ok(json!({
        "changes": log.len(),
        "log_ms": log_ms,
        "blame_ms": blame_ms,
        "blamed_chars": blame.len(),
        "export_old_version_ms": export_ms,
        "export_old_version_bytes": exported.len(),
    }))
}

/// The same operations cold, as a user runs them: one `tandem` process each (which
/// opens the workspace and loads the document).
pub fn cli_operations(tandem: &Path, dir: &Path) -> Result<Value, String> {
    let run = |args: &[&str]| -> Result<(f64, Vec<u8>), String> {
        let started = Instant::now();
        let out = Command::new(tandem)
            .args(args)
            .current_dir(dir)
            .env("TANDEM_HOME", dir.join("home"))
            .output()
            .map_err(|e| format!("{}: {e}", tandem.display()))?;
        if !out.status.success() {
            return Err(format!("tandem {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
        Ok((ms(started), out.stdout))
    };
    let (log_ms, log) = run(&["log", "trace.txt", "--json"])?;
    let log: Value = serde_json::from_slice(&log).map_err(|e| e.to_string())?;
    let versions = log.as_array().ok_or("log is not a list")?;
    let old = versions[versions.len() / 10]["version"].as_str().ok_or("no version")?.to_owned();
    let (blame_ms, _) = run(&["blame", "trace.txt", "--json"])?;
    let (export_ms, _) = run(&["export", "trace.txt", "--format", "md", "--at", &old])?;
    let (cat_ms, _) = run(&["cat", "trace.txt"])?;
    Ok(json!({
        "cli_cat_ms": cat_ms,
        "cli_log_ms": log_ms,
        "cli_blame_ms": blame_ms,
        "cli_export_old_version_ms": export_ms,
    }))
}
