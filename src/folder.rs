//! `tandem sync DIR`: keep every text file under DIR recorded as a document of the
//! folder, whatever program edits, creates, renames or deletes them (see
//! `tandem_store::folder`), and `--status`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tandem_store::Workspace;
use tandem_store::folder::{self, Folder};

use crate::Failure;

/// How long the watcher must be quiet before what it saw is recorded: an editor's
/// save (write a temporary file, rename it over the old one) is one change.
const QUIET: Duration = Duration::from_millis(150);

fn fail(message: impl Into<String>) -> Failure {
    Failure { message: message.into(), code: 1 }
}

pub fn sync(dir: &Path, headless: bool, status: bool, json: bool) -> Result<(), Failure> {
    let meta = std::fs::metadata(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Failure {
            message: format!(
                "{} is a file: `tandem sync` keeps a folder (`tandem sync DIR`); open a file with `tandem FILE`",
                dir.display()
            ),
            code: 2,
        });
    }
    let ws = Workspace::at(dir)?;
    if status {
        let v = folder::status(&ws)?;
        return if json { crate::out_json(&v) } else { crate::out(&status_report(&v)) };
    }
    let service = crate::sharing::own(&ws)?;
    let device = service.author_name();
    let mut folder = Folder::open(service, &device)?;
    // The folder as the user named it, to put before a note's path in a command.
    let prefix = match dir.to_string_lossy().trim_end_matches('/') {
        "." | "" => String::new(),
        d => format!("{d}/"),
    };
    let mut first = true;
    // What failed is retried every few seconds; it is told again only when it changes.
    let mut failed = Vec::new();
    folder.watch(QUIET, |report| {
        let news = report.failed != failed;
        failed.clone_from(&report.failed);
        let mut report = report.clone();
        if !news {
            report.failed.clear();
        }
        let report = &report;
        let shown = if json {
            (first || report.changed() || news)
                .then(|| format!("{}\n", serde_json::to_string(&report.json()).expect("json serializes")))
        } else if headless {
            // A service's output is its log: what was recorded, at info level
            // (`-v`); failures are warnings.
            for line in report.lines(&prefix) {
                tracing::info!("{line}");
            }
            for (path, e) in &report.failed {
                tracing::warn!("{path}: {e}");
            }
            None
        } else {
            let mut lines = report.lines(&prefix);
            if first {
                lines.extend(report.skipped.iter().map(|(p, why)| format!("skipped  {p}: {why}")));
            }
            (!lines.is_empty()).then(|| lines.iter().map(|l| format!("{l}\n")).collect())
        };
        if first && !json {
            eprintln!(
                "tandem: keeping {} in sync on this device (every text file is a document with its history; Ctrl-C stops)",
                folder_name(dir)
            );
        }
        first = false;
        shown.is_none_or(|s| crate::out(&s).is_ok())
    })?;
    Ok(())
}

fn folder_name(dir: &Path) -> String {
    tandem_store::absolute(dir).map_or_else(|_| dir.display().to_string(), |d| d.display().to_string())
}

/// `--status` for people.
fn status_report(v: &Value) -> String {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (files, deleted, skipped, unrecorded) =
        (list("files"), list("deleted"), list("skipped"), list("unrecorded"));
    let folder = v["folder"].as_str().unwrap_or_default();
    if v["synced"] != Value::Bool(true) {
        return format!("{folder} is not kept as a folder yet: `tandem sync {folder}` starts it\n");
    }
    let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
    let mut s = format!(
        "{folder}: {}, {} deleted (history kept), {} skipped\n",
        plural(files.len(), "document"),
        deleted.len(),
        skipped.len()
    );
    if unrecorded.is_empty() {
        s += "everything on disk is recorded\n";
    } else {
        s += "on disk, not yet recorded (`tandem sync` records them):\n";
        for u in &unrecorded {
            s += &format!(
                "  {}  {}\n",
                u["state"].as_str().unwrap_or_default(),
                u["path"].as_str().unwrap_or_default()
            );
        }
    }
    if !skipped.is_empty() {
        s += "skipped (not documents):\n";
        for k in &skipped {
            s += &format!(
                "  {}: {}\n",
                k["path"].as_str().unwrap_or_default(),
                k["why"].as_str().unwrap_or_default()
            );
        }
    }
    s += "other devices: none (syncing a folder between devices is not built yet)\n";
    s
}
