//! Crash safety under SIGKILL: a real `tandem join` process is edited through its
//! control socket while it syncs with a sharer that is edited too, and is killed
//! with SIGKILL at a random moment, again and again. After each kill the workspace
//! must verify clean (`tandem verify`) and hold every change an edit command was
//! told was committed (`tandem log`).
//!
//! Used by `tandem-bench crash` (100 kills or more) and by the test suite (a few).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the kills found.
#[derive(Debug, Default, serde::Serialize)]
pub struct CrashReport {
    pub kills: usize,
    /// Local edits acknowledged as committed before their process was killed.
    pub acked_edits: usize,
    /// Edits made on the sharer meanwhile (arriving as remote changes).
    pub remote_edits: usize,
    /// Acknowledged changes not found after the restart (must be empty).
    pub missing: Vec<String>,
    /// Rounds whose workspace did not verify clean (must be empty).
    pub verify_failures: Vec<String>,
    /// Time to open the killed workspace again and read the document (`tandem cat`), ms.
    pub reopen_ms_p50: f64,
    pub reopen_ms_max: f64,
    /// Changes in the history at the end.
    pub final_changes: usize,
}

impl CrashReport {
    pub fn clean(&self) -> bool {
        self.missing.is_empty() && self.verify_failures.is_empty()
    }
}

struct Proc {
    child: Child,
    first_line: Value,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cmd(tandem: &Path, dir: &Path, name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(tandem);
    c.args(args)
        .current_dir(dir)
        .env("TANDEM_HOME", dir.join("home"))
        .env("TANDEM_NAME", name)
        .env("RUST_LOG", "warn");
    c
}

fn spawn(tandem: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<Proc, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| e.to_string())?;
    let mut child = cmd(tandem, dir, name, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("starting {}: {e}", tandem.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).map_err(|e| e.to_string())?;
    let first_line = serde_json::from_str(&line).map_err(|_| {
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        format!("{name} printed {line:?}; its log ends: {}", &log[log.len().saturating_sub(2000)..])
    })?;
    Ok(Proc { child, first_line })
}

fn run_json(tandem: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<Value, String> {
    let out = cmd(tandem, dir, name, args).output().map_err(|e| e.to_string())?;
    if !out.status.success() && out.stdout.is_empty() {
        return Err(format!("tandem {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("tandem {}: {e}: {}", args.join(" "), String::from_utf8_lossy(&out.stdout)))
}

/// A small deterministic random source (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Edit `dir`'s doc.md through the CLI until `stop`, recording the heads each
/// acknowledged edit reported. Every few edits is a large paste, so compactions
/// happen too.
fn edit_loop(
    tandem: PathBuf,
    dir: PathBuf,
    name: &'static str,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let text = if rng.below(8) == 0 {
            format!("[{name} paste {n}: {}]\n", "words and more words ".repeat(200))
        } else {
            format!("{name}{n} ")
        };
        let at = 0.to_string();
        let out =
            cmd(&tandem, &dir, name, &["edit", "doc.md", "--at", &at, "--insert", &text, "--json"]).output();
        if let Ok(out) = out
            && out.status.success()
            && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
        {
            acked.extend(
                v["heads"].as_array().into_iter().flatten().filter_map(|h| h.as_str().map(String::from)),
            );
        }
    }
    acked
}

/// Kill a syncing, edited `tandem join` process `kills` times (see the module doc),
/// in a fresh directory under `work`.
pub fn run(tandem: &Path, work: &Path, kills: usize, seed: u64) -> Result<CrashReport, String> {
    let sharer_dir = work.join("sharer");
    let victim_dir = work.join("victim");
    for d in [&sharer_dir, &victim_dir] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(sharer_dir.join("doc.md"), "# crash test\n").map_err(|e| e.to_string())?;
    let share_args = ["share", "doc.md", "--headless", "--json", "--transport", "quic"];
    let sharer = spawn(tandem, &sharer_dir, "sharer", &share_args)?;
    let ticket = sharer.first_line["ticket"].as_str().ok_or("the sharer printed no ticket")?.to_owned();
    let join_args = ["join", &ticket, ".", "--headless", "--json", "--transport", "quic"];

    let mut rng = Rng(seed | 1);
    let mut report = CrashReport::default();
    let mut reopen = Vec::new();
    let acked_all = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..kills {
        let victim = spawn(tandem, &victim_dir, "victim", &join_args)?;
        let stop = Arc::new(AtomicBool::new(false));
        let local = {
            let (t, d, s) = (tandem.to_owned(), victim_dir.clone(), stop.clone());
            let seed = rng.next();
            std::thread::spawn(move || edit_loop(t, d, "victim", seed, s))
        };
        let remote = {
            let (t, d, s) = (tandem.to_owned(), sharer_dir.clone(), stop.clone());
            let seed = rng.next();
            std::thread::spawn(move || edit_loop(t, d, "sharer", seed, s))
        };
        std::thread::sleep(Duration::from_millis(20 + rng.below(700)));
        // SIGKILL, while edits and syncing are under way.
        let mut victim = victim;
        victim.child.kill().map_err(|e| e.to_string())?;
        let _ = victim.child.wait();
        stop.store(true, Ordering::SeqCst);
        let acked = local.join().map_err(|_| "the edit thread panicked")?;
        report.remote_edits += remote.join().map_err(|_| "the edit thread panicked")?.len();
        report.acked_edits += acked.len();
        report.kills += 1;
        acked_all.lock().expect("not poisoned").extend(acked);

        // Reopen: the document reads, the store verifies, nothing acknowledged is lost.
        let started = Instant::now();
        let cat =
            cmd(tandem, &victim_dir, "victim", &["cat", "doc.md"]).output().map_err(|e| e.to_string())?;
        reopen.push(started.elapsed().as_secs_f64() * 1e3);
        if !cat.status.success() {
            report
                .verify_failures
                .push(format!("round {round}: cat: {}", String::from_utf8_lossy(&cat.stderr)));
        }
        let verify = run_json(tandem, &victim_dir, "victim", &["verify", "--json"])?;
        if verify["ok"] != true {
            report.verify_failures.push(format!("round {round}: {verify}"));
        }
        let log = run_json(tandem, &victim_dir, "victim", &["log", "doc.md", "--json"])?;
        let present: HashSet<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["version"].as_str().map(String::from))
            .collect();
        report.final_changes = present.len();
        for head in acked_all.lock().expect("not poisoned").iter() {
            if !present.contains(&head[..12]) && !report.missing.contains(head) {
                report.missing.push(head.clone());
            }
        }
    }
    drop(sharer);
    reopen.sort_by(f64::total_cmp);
    report.reopen_ms_p50 = reopen.get(reopen.len() / 2).copied().unwrap_or(0.0);
    report.reopen_ms_max = reopen.last().copied().unwrap_or(0.0);
    Ok(report)
}
