//! `tandem sync DIR` on a folder of many notes, as a real process: the first
//! record of the whole folder (time, bytes), idle CPU and memory, an external
//! editor's save until it is recorded, and catching up with 10, 100 and 1,000
//! notes changed while it was not running. The baseline, in the same run, is what
//! a user would pick instead to keep a folder's history: git (`git add -A && git
//! commit` of the same files).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `tandem sync DIR --json` and its report lines.
struct Sync {
    child: Child,
    lines: Receiver<Value>,
}

impl Sync {
    fn start(tandem: &Path, root: &Path) -> Result<Sync, String> {
        let mut child = Command::new(tandem)
            .args(["sync", "notes", "--json"])
            .current_dir(root)
            .env("TANDEM_HOME", root.join("home"))
            .env("TANDEM_NAME", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", tandem.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str(&line) else { continue };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Ok(Sync { child, lines })
    }

    fn report(&self) -> Result<Value, String> {
        self.lines.recv_timeout(Duration::from_secs(600)).map_err(|_| "tandem sync printed no report".into())
    }

    /// Milliseconds of CPU (user + system) this process has used.
    fn cpu_ms(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        f.get(10..12).map_or(0.0, |t| (t[0] + t[1]) as f64 * 1e3 / ticks)
    }

    fn status_kb(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A note of a few hundred to a few thousand bytes of word-like text.
fn note(i: usize) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let lines = 10 + (next() % 60) as usize;
    let mut s = format!("# note {i}\n\n");
    for _ in 0..lines {
        let words = 4 + next() % 10;
        for w in 0..words {
            let len = 2 + next() % 8;
            let word: String = (0..len).map(|_| (b'a' + (next() % 26) as u8) as char).collect();
            s += &word;
            s.push(if w + 1 == words { '\n' } else { ' ' });
        }
    }
    s
}

fn path_of(i: usize) -> String {
    format!("topic{}/note{i}.md", i % 10)
}

fn write_folder(dir: &Path, notes: usize) -> Result<(), String> {
    for i in 0..notes {
        let p = dir.join(path_of(i));
        std::fs::create_dir_all(p.parent().expect("has a parent")).map_err(|e| e.to_string())?;
        std::fs::write(&p, note(i)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// An editor's save: the new text to a temporary file, renamed over the note.
fn save(dir: &Path, rel: &str, extra: &str) -> Result<(), String> {
    let p = dir.join(rel);
    let mut text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
    text += extra;
    let tmp = p.with_extension("md.tmp~");
    std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &p).map_err(|e| e.to_string())
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("git: {e}"))?;
    out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bytes_under(dir: &Path) -> u64 {
    tandem_store::dir_bytes(dir)
}

pub fn run(
    tandem: &Path,
    notes: usize,
    saves: usize,
    idle_s: u64,
    root: &Path,
) -> Result<Vec<Value>, String> {
    let dir = root.join("notes");
    write_folder(&dir, notes)?;
    let text_bytes = bytes_under(&dir);

    // The baseline: git keeping the same folder's history.
    let git_dir = root.join("git");
    write_folder(&git_dir, notes)?;
    let t = Instant::now();
    git(&git_dir, &["init", "-q"])?;
    git(&git_dir, &["add", "-A"])?;
    git(&git_dir, &["commit", "-qm", "first"])?;
    let git_first_ms = ms(t);
    let git_bytes = bytes_under(&git_dir.join(".git"));

    // First record of the whole folder.
    let t = Instant::now();
    let sync = Sync::start(tandem, root)?;
    let first = sync.report()?;
    let first_ms = ms(t);
    let added = first["added"].as_array().map_or(0, Vec::len);
    if added != notes {
        return Err(format!("the first report added {added} notes of {notes}: {first}"));
    }
    let store_bytes = bytes_under(&dir.join(tandem_store::STORE_DIR));
    let rss_after_first = sync.status_kb("VmRSS:") * 1024;

    // Idle: nothing changes.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t) = (sync.cpu_ms(), Instant::now());
    std::thread::sleep(Duration::from_secs(idle_s));
    let idle_cpu_ms = sync.cpu_ms() - cpu0;
    let idle_cpu_pct = idle_cpu_ms / (t.elapsed().as_secs_f64() * 1e3) * 100.0;
    let idle_rss = sync.status_kb("VmRSS:") * 1024;

    // External saves, one at a time, each until it is recorded; git commits of
    // the same saves are the baseline.
    let mut latencies = Vec::new();
    let mut git_latencies = Vec::new();
    let cpu_before_saves = sync.cpu_ms();
    for i in 0..saves {
        let rel = path_of(i * 7 % notes);
        let line = format!("saved {i}\n");
        let t = Instant::now();
        save(&dir, &rel, &line)?;
        loop {
            let r = sync.report()?;
            if r["merged"].as_array().is_some_and(|m| m.iter().any(|p| p == rel.as_str())) {
                break;
            }
        }
        latencies.push(ms(t));
        let t = Instant::now();
        save(&git_dir, &rel, &line)?;
        git(&git_dir, &["commit", "-qam", "save"])?;
        git_latencies.push(ms(t));
    }
    let cpu_per_save_ms = (sync.cpu_ms() - cpu_before_saves) / saves.max(1) as f64;
    latencies.sort_by(f64::total_cmp);
    git_latencies.sort_by(f64::total_cmp);
    let peak_rss = sync.status_kb("VmHWM:") * 1024;
    drop(sync);

    let mut out = vec![json!({
        "bench": "folder",
        "notes": notes,
        "text_bytes": text_bytes,
        "first_sync_ms": first_ms,
        "git_first_commit_ms": git_first_ms,
        "first_sync_ratio_vs_git": (first_ms / git_first_ms * 100.0).round() / 100.0,
        "store_bytes": store_bytes,
        "git_bytes": git_bytes,
        "store_ratio_vs_git": (store_bytes as f64 / git_bytes.max(1) as f64 * 100.0).round() / 100.0,
        "rss_after_first_bytes": rss_after_first,
        "idle_seconds": idle_s,
        "idle_cpu_ms": (idle_cpu_ms * 10.0).round() / 10.0,
        "idle_cpu_percent": (idle_cpu_pct * 1000.0).round() / 1000.0,
        "idle_rss_bytes": idle_rss,
        "peak_rss_bytes": peak_rss,
        "saves": saves,
        "save_to_recorded_ms_p50": percentile(&latencies, 0.5),
        "save_to_recorded_ms_p99": percentile(&latencies, 0.99),
        "git_save_and_commit_ms_p50": percentile(&git_latencies, 0.5),
        "git_save_and_commit_ms_p99": percentile(&git_latencies, 0.99),
        "cpu_per_save_ms": (cpu_per_save_ms * 10.0).round() / 10.0,
        "quiet_window_ms": 150,
    })];

    // Catching up: notes changed while no tandem ran, recorded at the next start.
    for changed in [10, 100, 1000].into_iter().filter(|&c| c <= notes) {
        for i in 0..changed {
            save(&dir, &path_of(i), &format!("offline {changed}\n"))?;
            save(&git_dir, &path_of(i), &format!("offline {changed}\n"))?;
        }
        let t = Instant::now();
        let sync = Sync::start(tandem, root)?;
        let r = sync.report()?;
        let catch_up_ms = ms(t);
        drop(sync);
        let merged = r["merged"].as_array().map_or(0, Vec::len);
        if merged != changed {
            return Err(format!("catching up merged {merged} notes of {changed}: {r}"));
        }
        let t = Instant::now();
        git(&git_dir, &["commit", "-qam", "offline"])?;
        let git_ms = ms(t);
        out.push(json!({
            "bench": "folder_catch_up",
            "notes": notes,
            "changed": changed,
            "catch_up_ms": catch_up_ms,
            "git_commit_ms": git_ms,
            "ratio_vs_git": (catch_up_ms / git_ms * 100.0).round() / 100.0,
        }));
    }
    Ok(out)
}
