//! `tandem-bench`: benchmark programs. They print numbers; they never assert timings.
//!
//! `tandem-bench replay PATH.json.gz --json` replays an editing trace through the
//! editor's document path (rope + Automerge + store) and, in the same run, through
//! raw Automerge (a commit per patch) and raw ropey, then measures opening the saved
//! document in a fresh process.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tandem_bench::{
    Clock, current_rss, load_trace, peak_rss, replay_automerge, replay_editor, replay_ropey, reset_peak_rss,
};
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_store::{StoredDoc, Workspace, first_screen};

#[derive(Parser)]
#[command(name = "tandem-bench", about = "tandem benchmark programs (numbers, not tests)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay an editing trace and print the figures.
    Replay {
        trace: PathBuf,
        /// Print one JSON object (default: a readable summary).
        #[arg(long)]
        json: bool,
        /// Coalescing clock: `trace` (the trace's timestamps) or `every:MS`.
        #[arg(long, default_value = "trace")]
        clock: String,
        /// Override the commit idle window (ms).
        #[arg(long)]
        idle_ms: Option<u64>,
        /// Override the maximum commit delay (ms).
        #[arg(long)]
        max_ms: Option<u64>,
        /// Skip the raw Automerge comparison (it takes seconds on big traces).
        #[arg(long)]
        no_baseline: bool,
        /// Also append the JSON result as one line to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Name every keystroke for peers as `tandem share` does (no keystroke then
        /// waits for the commit to reach Automerge).
        #[arg(long)]
        sharing: bool,
    },
    /// (internal) Open a replayed workspace in a fresh process and measure it.
    Open { dir: PathBuf },
    /// Keystroke-to-frame and open-to-first-screen on a small file, a 10 MB file and
    /// the automerge-paper document (with its history).
    Keystroke {
        /// The automerge-paper trace.
        #[arg(long, default_value = "../shared/traces/automerge-paper.json.gz")]
        paper: PathBuf,
        /// Keystrokes per document.
        #[arg(long, default_value_t = 2000)]
        keys: usize,
        /// Also append each JSON result as a line to this file.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Keystroke to remote rope latency and fresh-join size/time between two peers on
    /// 127.0.0.1, on a small document and on the automerge-paper document, per transport.
    Live {
        #[arg(long, default_value = "../shared/traces/automerge-paper.json.gz")]
        paper: PathBuf,
        /// Keystrokes per run.
        #[arg(long, default_value_t = 400)]
        keys: usize,
        /// Transports to run: quic, webrtc, tcp (comma-separated).
        #[arg(long, default_value = "quic,webrtc,tcp")]
        transports: String,
        /// How live edits travel: stream (one per peer, tandem's default), requests
        /// (one each); comma-separated to compare them in one run.
        #[arg(long, default_value = "stream,requests")]
        live_wire: String,
        /// Also time how long the receiving editor waits for the document (a thread
        /// asking every millisecond; it competes for the CPU, so latency figures are
        /// taken without it).
        #[arg(long)]
        probe_editor: bool,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Many peers typing at once: latency, convergence, CPU and bytes per keystroke.
    Load {
        /// Peer counts to run (comma-separated).
        #[arg(long, default_value = "2,4,8,16")]
        peers: String,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value = "quic")]
        transport: String,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// History on the automerge-paper document: store size against Automerge's
    /// `save()`, gc, first screen and full load, log/blame/old-version export (on the
    /// loaded document and cold through the CLI), and fresh-peer blob transfer.
    History {
        #[arg(long, default_value = "../shared/traces/automerge-paper.json.gz")]
        paper: PathBuf,
        /// The `tandem` binary for the cold CLI figures (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/tandem")]
        tandem: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Every pair of NAT kinds in the NAT lab (root): join time, time to a direct
    /// connection, and the relay's bytes and CPU per session.
    Nat {
        /// The `tandem` binary (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/tandem")]
        tandem: PathBuf,
        #[arg(long, default_value = "../shared/natlab")]
        natlab: PathBuf,
        /// Edits the sharer makes per pair (each a change the joiner must get).
        #[arg(long, default_value_t = 50)]
        edits: usize,
        /// Milliseconds each router holds every packet it forwards (the lab's
        /// `nfq_delay.py`): 50 makes a 100 ms round trip to the relay, 200 ms between
        /// the peers.
        #[arg(long, default_value_t = 0)]
        delay_ms: u32,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Per-change cost of signing + checking an envelope and of age encryption +
    /// decryption, on real changes of the automerge-paper trace.
    Security {
        #[arg(long, default_value = "../shared/traces/automerge-paper.json.gz")]
        paper: PathBuf,
        #[arg(long, default_value_t = 2000)]
        changes: usize,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// `tandem sync DIR` on a folder of NOTES notes: first sync (time, bytes), idle
    /// CPU and RSS, external save to recorded, catching up with 10/100/1000 changed
    /// notes; git keeping the same folder is the baseline.
    Folder {
        #[arg(long, default_value_t = 1000)]
        notes: usize,
        #[arg(long, default_value_t = 100)]
        saves: usize,
        #[arg(long, default_value_t = 10)]
        idle_seconds: u64,
        /// The `tandem` binary (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/tandem")]
        tandem: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// The centralized question: N typists at R keys/s on one document as a tandem
    /// mesh, a tandem star through `tandem serve --relay`, and Yjs through a
    /// y-websocket server; latency, convergence, CPU, RSS and bytes, side by side.
    Central {
        /// Typist counts (comma-separated).
        #[arg(long, default_value = "2,4,8,16,32")]
        peers: String,
        /// Designs to run, in this order for each count: mesh, star, yjs.
        #[arg(long, default_value = "mesh,star,yjs")]
        systems: String,
        /// Keys per second per typist.
        #[arg(long, default_value_t = 6.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Start from a document of this many characters (tandem only).
        #[arg(long, default_value_t = 0)]
        initial_chars: usize,
        /// The `tandem` binary (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/tandem")]
        tandem: PathBuf,
        /// The Yjs side (run `npm ci --ignore-scripts` there first).
        #[arg(long, default_value = "benchmarks/central")]
        central: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
        /// Draw the figures of the records in this file (this run's and earlier
        /// ones) as SVG next to it (`.svg`), without running anything.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// (internal) One tandem typist of `central`, driven over stdin/stdout.
    #[command(hide = true)]
    Typist(tandem_bench::central::TypistArgs),
    /// SIGKILL a syncing, edited `tandem join` process KILLS times; after each kill
    /// the store must verify clean and hold every acknowledged change.
    Crash {
        #[arg(long, default_value_t = 100)]
        kills: usize,
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// The `tandem` binary to kill (build it with `cargo build --release` first).
        #[arg(long, default_value = "target/release/tandem")]
        tandem: PathBuf,
        #[arg(long)]
        record: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Replay { trace, json, clock, idle_ms, max_ms, no_baseline, record, sharing } => {
            replay(&trace, json, &clock, idle_ms, max_ms, no_baseline, record.as_deref(), sharing)
        }
        Cmd::Open { dir } => open(&dir),
        Cmd::Keystroke { paper, keys, record } => keystroke(&paper, keys, record.as_deref()),
        Cmd::Live { paper, keys, transports, live_wire, probe_editor, record } => {
            // Ping each connection every 100 ms, so the transport's own round trip is
            // measured over the same keys (libp2p's default is every 15 s).
            tandem_net::transport::PING_INTERVAL_MS.store(100, std::sync::atomic::Ordering::Relaxed);
            live(&paper, keys, &transports, &live_wire, probe_editor, record.as_deref())
        }
        Cmd::Load { peers, seconds, transport, record } => {
            load(&peers, seconds, &transport, record.as_deref())
        }
        Cmd::Central { peers, systems, rate, seconds, initial_chars, tandem, central: js, record, plot } => {
            central(
                &peers,
                &systems,
                (rate, seconds, initial_chars),
                &tandem,
                &js,
                record.as_deref(),
                plot.as_deref(),
            )
        }
        Cmd::Typist(args) => tandem_bench::central::typist(args),
        Cmd::Crash { kills, seed, tandem, record } => crash(&tandem, kills, seed, record.as_deref()),
        Cmd::History { paper, tandem, record } => history(&paper, &tandem, record.as_deref()),
        Cmd::Nat { tandem, natlab, edits, delay_ms, record } => (|| {
            let tandem = std::path::absolute(&tandem).map_err(|e| e.to_string())?;
            let natlab = std::path::absolute(&natlab).map_err(|e| e.to_string())?;
            let root = tempdir()?;
            let results = tandem_bench::nat::run(&tandem, &natlab, edits, delay_ms, &root);
            let _ = std::fs::remove_dir_all(&root);
            emit(&results?, record.as_deref())
        })(),
        Cmd::Folder { notes, saves, idle_seconds, tandem, record } => (|| {
            let tandem = std::path::absolute(&tandem).map_err(|e| e.to_string())?;
            let root = tempdir()?;
            let results = tandem_bench::folder::run(&tandem, notes, saves, idle_seconds, &root);
            let _ = std::fs::remove_dir_all(&root);
            emit(&results?, record.as_deref())
        })(),
        Cmd::Security { paper, changes, record } => (|| {
            let trace = load_trace(&paper)?;
            let home = tempdir()?;
            let result = tandem_bench::security::run(&trace, changes, &home)?;
            let _ = std::fs::remove_dir_all(&home);
            emit(&[result], record.as_deref())
        })(),
    };
    if let Err(e) = result {
        eprintln!("tandem-bench: {e}");
        std::process::exit(1);
    }
}

fn replay(
    path: &Path,
    json_out: bool,
    clock: &str,
    idle_ms: Option<u64>,
    max_ms: Option<u64>,
    no_baseline: bool,
    record: Option<&Path>,
    sharing: bool,
) -> Result<(), String> {
    let clock = match clock {
        "trace" => Clock::Trace,
        other => Clock::Every(
            other
                .strip_prefix("every:")
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| format!("--clock {other:?}: use `trace` or `every:MS`"))?,
        ),
    };
    let mut config = DocConfig::default();
    config.commit_idle_ms = idle_ms.unwrap_or(config.commit_idle_ms);
    config.commit_max_ms = max_ms.unwrap_or(config.commit_max_ms);
    let trace = load_trace(path)?;
    let dir = tempdir()?;

    reset_peak_rss();
    let editor = replay_editor(&trace, &dir, clock, config.clone(), sharing)?;
    let editor_peak = peak_rss();
    if !editor.final_text_ok {
        return Err(format!("{}: the replayed text differs from endContent", path.display()));
    }
    let open = open_in_fresh_process(&dir)?;
    let (rope_ms, rope_ok) = replay_ropey(&trace);
    let baseline = (!no_baseline).then(|| replay_automerge(&trace));
    let _ = std::fs::remove_dir_all(&dir);

    let patches = trace.patches();
    let mut out = json!({
        "trace": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "txns": trace.txns.len(),
        "patches": patches,
        "clock": match clock { Clock::Trace => "trace".to_string(), Clock::Every(ms) => format!("every:{ms}") },
        "commit_idle_ms": config.commit_idle_ms,
        "commit_max_ms": config.commit_max_ms,
        "sharing": sharing,
        "changes_committed": editor.changes,
        "replay_ms": round(editor.replay_ms),
        "us_per_patch": round(editor.replay_ms * 1e3 / patches.max(1) as f64),
        "peak_rss_bytes": editor_peak,
        "saved_bytes": editor.automerge_save_bytes,
        "stored_bytes": editor.stored_bytes,
        "final_text_bytes": trace.end.len(),
        "load_ms": open["load_ms"],
        "first_screen_ms": open["first_screen_ms"],
        "rss_after_open_bytes": open["rss_after_open_bytes"],
        "ropey_ms": round(rope_ms),
        "ropey_ok": rope_ok,
        "end_content_ok": editor.final_text_ok,
    });
    if let Some((am_ms, am_ok, am_bytes)) = baseline {
        out["automerge_ms"] = json!(round(am_ms));
        out["automerge_ok"] = json!(am_ok);
        out["automerge_save_bytes"] = json!(am_bytes);
        out["ratio_vs_automerge"] = json!(round(editor.replay_ms / am_ms));
    }
    if let Some(record) = record {
        use std::io::Write;
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(record).map_err(|e| e.to_string())?;
        writeln!(f, "{out}").map_err(|e| e.to_string())?;
    }
    if json_out {
        println!("{out}");
    } else {
        for (k, v) in out.as_object().expect("object") {
            println!("{k:<22} {v}");
        }
    }
    Ok(())
}

/// `tandem-bench open DIR` in a new process (cold caches of this process's own:
/// what a user opening the file sees), its JSON result.
fn open_in_fresh_process(dir: &Path) -> Result<Value, String> {
    let opened = Process::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("open")
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !opened.status.success() {
        return Err(format!("open: {}", String::from_utf8_lossy(&opened.stderr)));
    }
    serde_json::from_slice(&opened.stdout).map_err(|e| e.to_string())
}

fn open(dir: &Path) -> Result<(), String> {
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let file = dir.join("trace.txt");
    let started = Instant::now();
    let text = first_screen(&ws, &file).map_err(|e| e.to_string())?.ok_or("no current text cache")?;
    let rope = ropey::Rope::from_str(&text);
    let first_screen_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(text);
    let started = Instant::now();
    let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("workspace locked")?;
    let author = Author::new("bench", ActorId::from(vec![7u8; 16]));
    let (stored, _) =
        StoredDoc::open(&ws, &file, author, DocConfig::default(), false, &tandem_bench::keys(dir)?)
            .map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    if stored.doc.rope() != &rope {
        return Err("the first screen differs from the loaded document".into());
    }
    println!(
        "{}",
        json!({
            "first_screen_ms": round(first_screen_ms),
            "load_ms": round(load_ms),
            "rss_after_open_bytes": current_rss(),
        })
    );
    Ok(())
}

fn keystroke(paper: &Path, keys: usize, record: Option<&Path>) -> Result<(), String> {
    use tandem_bench::keystroke::{bench_stored, generated_text};
    let mut results = Vec::new();
    // The same kind of lines at 20 KB and 10 MB: any difference is the cost of length.
    for (name, text) in
        [("generated-20KB", generated_text(20_000)), ("generated-10MB", generated_text(10_000_000))]
    {
        let dir = tempdir()?;
        let file = dir.join("doc.txt");
        std::fs::write(&file, &text).map_err(|e| e.to_string())?;
        // Import the file into history first (as the first `tandem` command on it does).
        {
            let ws = Workspace::at(&dir).map_err(|e| e.to_string())?;
            let _lock = ws.try_lock().map_err(|e| e.to_string())?.ok_or("locked")?;
            let author = Author::new("bench", ActorId::from(vec![9u8; 16]));
            StoredDoc::open(&ws, &file, author, DocConfig::default(), false, &tandem_bench::keys(&dir)?)
                .map_err(|e| e.to_string())?;
        }
        results.push(bench_stored(name, &dir, &file, keys)?);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The paper document with a realistic history: typed at 150 ms a key.
    let trace = load_trace(paper)?;
    let dir = tempdir()?;
    replay_editor(&trace, &dir, Clock::Every(150), DocConfig::default(), false)?;
    results.push(bench_stored("automerge-paper", &dir, &dir.join("trace.txt"), keys)?);
    let _ = std::fs::remove_dir_all(&dir);
    emit(&results, record)
}

/// Print each result as a JSON line, and append it to `record` when given.
fn emit(results: &[Value], record: Option<&Path>) -> Result<(), String> {
    for r in results {
        println!("{r}");
        if let Some(record) = record {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(record)
                .map_err(|e| e.to_string())?;
            writeln!(f, "{r}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

fn live(
    paper: &Path,
    keys: usize,
    transports: &str,
    wires: &str,
    probe_editor: bool,
    record: Option<&Path>,
) -> Result<(), String> {
    let rt = runtime()?;
    let trace = load_trace(paper)?;
    let wires: Vec<tandem_net::live::Wire> =
        wires.split(',').map(|w| w.trim().parse()).collect::<Result<_, _>>()?;
    for transport in transports.split(',') {
        let transport: tandem_net::Transport = transport.trim().parse()?;
        // Each wire in turn on the same documents, so they compare within one run.
        for &wire in &wires {
            // A small document: a short note.
            let dir = tempdir()?.join("a");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let file = dir.join("note.md");
            std::fs::write(&file, tandem_bench::keystroke::generated_text(2_000))
                .map_err(|e| e.to_string())?;
            let small = tandem_bench::live::latency(
                &rt,
                &dir,
                &file,
                "small-2KB",
                transport,
                wire,
                keys,
                probe_editor,
            )?;
            emit(&small, record)?;
            // The automerge-paper document with its history, typed at 150 ms a key.
            let dir = tempdir()?.join("a");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            replay_editor(&trace, &dir, Clock::Every(150), DocConfig::default(), false)?;
            let file = dir.join("trace.txt");
            let paper = tandem_bench::live::latency(
                &rt,
                &dir,
                &file,
                "automerge-paper",
                transport,
                wire,
                keys,
                probe_editor,
            )?;
            emit(&paper, record)?;
        }
    }
    Ok(())
}

fn load(peers: &str, seconds: u64, transport: &str, record: Option<&Path>) -> Result<(), String> {
    let rt = runtime()?;
    let transport: tandem_net::Transport = transport.parse()?;
    for n in peers.split(',') {
        let n: usize = n.trim().parse().map_err(|_| format!("--peers: {n:?} is not a number"))?;
        let root = tempdir()?;
        let result = tandem_bench::live::load(&rt, &root, n, seconds, transport)?;
        emit(&[result], record)?;
    }
    Ok(())
}

fn history(paper: &Path, tandem: &Path, record: Option<&Path>) -> Result<(), String> {
    use tandem_bench::history;
    let tandem = std::path::absolute(tandem).map_err(|e| e.to_string())?;
    let trace = load_trace(paper)?;
    let mut results = Vec::new();
    // A typist at 150 ms a key (commits every 2 s while typing on), and the worst
    // case: a commit per keystroke.
    for (name, every_ms) in [("typed", 150), ("commit-per-key", 1000)] {
        let dir = tempdir()?;
        let save_bytes = history::replay_like_editor(&trace, &dir, every_ms)?;
        let sizes = history::store_sizes(&tandem, &dir)?;
        let open = open_in_fresh_process(&dir)?;
        let ops = history::operations(&dir)?;
        let cli = history::cli_operations(&tandem, &dir)?;
        let save = save_bytes as f64;
        let mut v = json!({
            "bench": "history",
            "doc": "automerge-paper",
            "commits": name,
            "automerge_save_bytes": save_bytes,
            "store_vs_save": round(sizes["store_disk_bytes"].as_u64().unwrap_or(0) as f64 / save),
            "store_after_gc_vs_save": round(sizes["store_disk_bytes_after_gc"].as_u64().unwrap_or(0) as f64 / save),
            "command": "cargo build --release && cargo run --release -p tandem-bench -- history",
        });
        for part in [&sizes, &open, &ops, &cli] {
            for (k, val) in part.as_object().into_iter().flatten() {
                v[k] = val.clone();
            }
        }
        results.push(v);
        if std::env::var_os("TANDEM_BENCH_KEEP").is_some() {
            eprintln!("kept {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    // A fresh peer fetching the history blobs: the paper document, and a 10 MB file.
    let rt = runtime()?;
    for (name, text) in [
        ("automerge-paper", None),
        ("generated-10MB", Some(tandem_bench::keystroke::generated_text(10_000_000))),
    ] {
        let dir = tempdir()?;
        match text {
            None => {
                replay_editor(&trace, &dir, Clock::Every(150), DocConfig::default(), false)?;
            }
            Some(text) => std::fs::write(dir.join("trace.txt"), text).map_err(|e| e.to_string())?,
        }
        let joiner = tempdir()?;
        let cost = rt.block_on(async {
            let (peer, doc) = tandem_bench::live::share(
                &dir,
                &dir.join("trace.txt"),
                tandem_net::Transport::Quic,
                Default::default(),
            )
            .await?;
            tandem_bench::live::join(&joiner, 1, &peer, doc, tandem_net::Transport::Quic, Default::default())
                .await
                .map(|(_, c)| c)
        })?;
        results.push(json!({
            "bench": "history-transfer",
            "doc": name,
            "transport": "quic",
            "bytes": cost.bytes,
            "fetch_ms": round(cost.fetch_ms),
            "join_ms": round(cost.ms),
            "fetch_mb_per_s": round(cost.bytes as f64 / 1e6 / (cost.fetch_ms / 1e3)),
            "command": "cargo run --release -p tandem-bench -- history",
        }));
    }
    emit(&results, record)
}

#[allow(clippy::too_many_arguments)]
fn central(
    peers: &str,
    systems: &str,
    (rate, seconds, initial_chars): (f64, f64, usize),
    tandem: &Path,
    central: &Path,
    record: Option<&Path>,
    plot: Option<&Path>,
) -> Result<(), String> {
    use tandem_bench::central::{self, Programs, System};
    if let Some(records) = plot {
        let svg = records.with_extension("svg");
        central::plot(records, &svg)?;
        println!("{}", svg.display());
        return Ok(());
    }
    let programs = Programs {
        bench: std::env::current_exe().map_err(|e| e.to_string())?,
        tandem: std::path::absolute(tandem).map_err(|e| e.to_string())?,
        central: std::path::absolute(central).map_err(|e| e.to_string())?,
    };
    if !programs.central.join("node_modules").is_dir() {
        return Err(format!(
            "{}: no node_modules; run `npm ci --ignore-scripts` there first",
            programs.central.display()
        ));
    }
    let systems: Vec<System> = systems.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
    for n in peers.split(',') {
        let n: usize = n.trim().parse().map_err(|_| format!("--peers: {n:?} is not a number"))?;
        if !(2..=tandem_bench::central::ALPHABET.len()).contains(&n) {
            return Err(format!("--peers {n}: 2 to {}", tandem_bench::central::ALPHABET.len()));
        }
        for system in &systems {
            let root = tempdir()?;
            let mut v = central::run(&programs, &root, *system, n, rate, seconds, initial_chars)?;
            v["command"] = format!(
                "target/release/tandem-bench central --peers {n} --systems {} --rate {rate} --seconds {seconds} --initial-chars {initial_chars}",
                match system {
                    System::Mesh => "mesh",
                    System::Star => "star",
                    System::Yjs => "yjs",
                }
            )
            .into();
            emit(&[v], record)?;
            if std::env::var_os("TANDEM_BENCH_KEEP").is_some() {
                eprintln!("kept {}", root.display());
            } else {
                let _ = std::fs::remove_dir_all(&root);
            }
        }
    }
    Ok(())
}

fn crash(tandem: &Path, kills: usize, seed: u64, record: Option<&Path>) -> Result<(), String> {
    let tandem = std::path::absolute(tandem).map_err(|e| e.to_string())?;
    let root = tempdir()?;
    let started = std::time::Instant::now();
    let report = tandem_bench::crash::run(&tandem, &root, kills, seed)?;
    let mut v = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    v["bench"] = "crash".into();
    v["seed"] = seed.into();
    v["clean"] = report.clean().into();
    v["seconds"] = round(started.elapsed().as_secs_f64()).into();
    v["command"] =
        format!("cargo run --release -p tandem-bench -- crash --kills {kills} --seed {seed}").into();
    emit(&[v], record)?;
    if report.clean() {
        Ok(())
    } else {
        Err("committed changes were lost or the store did not verify".into())
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn tempdir() -> Result<PathBuf, String> {
    let dir =
        std::env::temp_dir().join(format!("tandem-bench-{}-{}", std::process::id(), tandem_store::now_ms()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
