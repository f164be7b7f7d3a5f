//! The centralized question: N typists on one document, each typing continuously at
//! R keys/s (automerge-repo#207's workload), through three designs in one run:
//!
//! - `mesh`: tandem peers, every one connected to every other;
//! - `star`: tandem peers connected only to one `tandem serve --relay` (the blind
//!   group peer, which stores and forwards ciphertext and cannot read);
//! - `yjs`: Yjs clients through a y-websocket server (`benchmarks/central`).
//!
//! Every typist is its own process speaking one JSON-lines protocol on
//! stdin/stdout (see `benchmarks/central/README.md`): the Yjs typist is
//! `yjs-typist.mjs`, tandem's is `tandem-bench typist` ([`typist`]), a real
//! [`Service`] and [`tandem_net::Node`] as `tandem join` runs them. The
//! coordinator ([`run`]) starts them, says `go T0`, reads what each one saw and
//! when (CLOCK_MONOTONIC, one clock for all processes), and samples every
//! process's CPU and RSS from `/proc`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem_net::codec::{SYNC_BYTES_BY_KIND, SYNC_BYTES_RECEIVED, SYNC_BYTES_SENT};
use tandem_net::{Node, Role, Ticket, Transport};
use tandem_store::now_ms;

use crate::keystroke::stats;

/// Each typist's character: typist `i` types only `ALPHABET[i]`.
pub const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// CLOCK_MONOTONIC in nanoseconds: what Node's `process.hrtime.bigint()` reads, so
/// that stamps from every process compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The design under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Mesh,
    Star,
    Yjs,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Mesh => "tandem-mesh",
            System::Star => "tandem-star",
            System::Yjs => "yjs-websocket",
        }
    }
}

impl std::str::FromStr for System {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mesh" => Ok(System::Mesh),
            "star" => Ok(System::Star),
            "yjs" => Ok(System::Yjs),
            other => Err(format!("--systems {other}: use mesh, star or yjs")),
        }
    }
}

// ---------------------------------------------------------------------------
// The tandem typist process.

/// What `tandem-bench typist` is told (its command line).
#[derive(clap::Args)]
pub struct TypistArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub index: usize,
    #[arg(long)]
    pub peers: usize,
    #[arg(long)]
    pub rate: f64,
    #[arg(long)]
    pub seconds: f64,
    /// Join this ticket (with its invite); none for typist 0, which shares.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Also keep connected to these peers (their tickets): the mesh.
    #[arg(long)]
    pub connect: Vec<String>,
    /// After joining, leave the sharer and keep connected to this peer only (the
    /// relay's ticket): the star.
    #[arg(long)]
    pub hub: Option<String>,
    /// Typist 0: add this device to the group as the relay first.
    #[arg(long)]
    pub relay_member: Option<String>,
    /// Typist 0: start from a document of this many characters (none of them a
    /// typist's letter), to see what the length of the document costs.
    #[arg(long, default_value_t = 0)]
    pub initial_chars: usize,
}

fn out(line: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// One tandem typist, as the coordinator drives it (the protocol of
/// `benchmarks/central/README.md`): set up, print `{"ready":true,"ticket":..}`,
/// type on `go T0`, print `{"seen":J,"count":c,"t":"ns"}` whenever typist J's
/// characters on this peer's screen grow, and on `stop` print the done line.
pub fn typist(a: TypistArgs) -> Result<(), String> {
    // tandem's own messages on stderr (the coordinator keeps them in `tI.log`).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "tandem_bench=info,tandem_net=info,tandem_store=info,tandem_doc=warn",
        )
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let service = crate::live::own(&a.dir, a.index)?;
    let file = a.dir.join("load.txt");
    let own_ticket = rt.block_on(async {
        let (mut swarm, id, addrs) = crate::live::swarm(&a.dir, &service, Transport::Quic).await?;
        let ticket = match &a.ticket {
            None => {
                let line = "0123456789 .,;:-+=*/%$#@!?()[]{}<>\n";
                let text: String = line.chars().cycle().take(a.initial_chars).collect();
                std::fs::write(&file, text).map_err(|e| e.to_string())?;
                service.open(&file, false).map_err(|e| e.to_string())?;
                if let Some(relay) = &a.relay_member {
                    service
                        .handle(&tandem_store::Request::GroupChange {
                            file: file.clone(),
                            op: "add".into(),
                            member: Some(relay.clone()),
                            role: Some("relay".into()),
                            recipient: None,
                        })
                        .map_err(|e| e.to_string())?;
                }
                let doc = crate::live::doc_id(&service, &file)?;
                let invite = service
                    .handle(&tandem_store::Request::Invite {
                        file: file.clone(),
                        role: "writer".into(),
                        expires_ms: None,
                        uses: None,
                    })
                    .map_err(|e| e.to_string())?;
                let token = |k: &str| crate::live::hex16(invite[k].as_str().unwrap_or_default());
                let node = Node::new(swarm, Arc::clone(&service), file.clone(), doc, Transport::Quic);
                tokio::spawn(node.serve());
                Ticket {
                    name: "load.txt".into(),
                    doc,
                    peer: id,
                    addrs,
                    role: Role::Writer,
                    invite: Some((token("invite"), token("secret"))),
                }
            }
            Some(t) => {
                let t: Ticket = t.parse().map_err(|e: tandem_net::TicketError| e.to_string())?;
                let store = service.blob_store().map_err(|e| e.to_string())?;
                let recipient = service.keys().age.recipient();
                let (shared, group) = tandem_net::join::fetch(
                    &mut swarm,
                    t.peer,
                    &t.addrs,
                    t.doc,
                    Transport::Quic,
                    &store,
                    t.invite,
                    recipient,
                )
                .await?;
                let hex: String = t.doc.iter().map(|b| format!("{b:02x}")).collect();
                service.join(&file, &hex, shared, &group).map_err(|e| e.to_string())?;
                let mut keep: Vec<Ticket> = Vec::new();
                match &a.hub {
                    Some(hub) => {
                        // The star: the sharer only let this peer in.
                        let _ = swarm.disconnect_peer_id(t.peer);
                        keep.push(hub.parse().map_err(|e: tandem_net::TicketError| e.to_string())?);
                    }
                    None => keep.push(t.clone()),
                }
                for c in &a.connect {
                    keep.push(c.parse().map_err(|e: tandem_net::TicketError| e.to_string())?);
                }
                let mut node = Node::new(swarm, Arc::clone(&service), file.clone(), t.doc, Transport::Quic);
                for k in keep {
                    let connected = node.swarm.is_connected(&k.peer);
                    node.keep_connected(k.peer, k.addrs, connected);
                }
                tokio::spawn(node.serve());
                Ticket { peer: id, addrs, invite: None, ..t }
            }
        };
        Ok::<_, String>(ticket)
    })?;
    out(&json!({"ready": true, "ticket": own_ticket.to_string(), "pid": std::process::id()}));

    // The editor's tick: commit after the idle window.
    let stopping = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (service, file, stopping) = (Arc::clone(&service), file.clone(), Arc::clone(&stopping));
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let _ = service.poll_commit(&file, now_ms());
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // The screen: what the editor would redraw from (its revision, then its text),
    // checked every 2 ms (the editor itself looks every 8 ms).
    let mut watcher = Some({
        let (service, file, stopping) = (Arc::clone(&service), file.clone(), Arc::clone(&stopping));
        let (me, n) = (a.index, a.peers);
        std::thread::spawn(move || {
            let mut counts = vec![0usize; n];
            let mut dips = 0usize;
            let mut revision = None;
            while !stopping.load(Ordering::Relaxed) {
                let now = service.with_open(&file, |s| Ok(s.doc.revision())).ok();
                if now != revision {
                    revision = now;
                    let text = service.with_open(&file, |s| Ok(s.doc.rope().to_string())).unwrap_or_default();
                    let t = monotonic_ns();
                    let mut fresh = vec![0usize; n];
                    for b in text.bytes() {
                        if let Some(j) = ALPHABET[..n].iter().position(|c| *c == b) {
                            fresh[j] += 1;
                        }
                    }
                    for j in (0..n).filter(|j| *j != me && fresh[*j] > counts[*j]) {
                        out(&json!({"seen": j, "count": fresh[j], "t": t.to_string()}));
                    }
                    // Counts only grow here (inserts only): a key that was shown and
                    // is gone again is counted as a dip (the high-water mark is what
                    // the latency is taken from).
                    for j in 0..n {
                        if fresh[j] < counts[j] {
                            dips += 1;
                            tracing::warn!(
                                typist = j,
                                shown = counts[j],
                                now = fresh[j],
                                "keys shown before are gone"
                            );
                        }
                        counts[j] = counts[j].max(fresh[j]);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            dips
        })
    });

    let lines = stdin_lines();
    let mut typed_ns: Vec<String> = Vec::new();
    let (mut sent0, mut received0) = (0, 0);
    let kinds = || -> Vec<u64> { SYNC_BYTES_BY_KIND.iter().map(|b| b.load(Ordering::Relaxed)).collect() };
    let mut kinds0 = kinds();
    let keys = (a.rate * a.seconds).round() as usize;
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (a.index as u64 + 1);
    let me = ALPHABET[a.index] as char;
    while let Ok(line) = lines.recv() {
        if let Some(t0) = line.strip_prefix("go ").and_then(|t| t.trim().parse::<u64>().ok()) {
            sent0 = SYNC_BYTES_SENT.load(Ordering::Relaxed);
            received0 = SYNC_BYTES_RECEIVED.load(Ordering::Relaxed);
            kinds0 = kinds();
            for k in 0..keys {
                let due = t0
                    + (k as f64 * 1e9 / a.rate + a.index as f64 * 1e9 / (a.rate * a.peers as f64)).round()
                        as u64;
                let now = monotonic_ns();
                if due > now {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let _ = service.with_open(&file, |s| {
                    let pos = (seed % (s.doc.len_chars() as u64 + 1)) as usize;
                    let _ = s.doc.splice(pos, 0, &me.to_string(), now_ms());
                    Ok(())
                });
                typed_ns.push(monotonic_ns().to_string());
            }
        } else if line.trim() == "stop" {
            // Settled: every typist's every key in history, nothing shown ahead of it
            // (or 15 s gone: the done line then says how far it got).
            let all = keys * a.peers + a.initial_chars;
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                let settled = service
                    .with_open(&file, |s| {
                        Ok(!s.doc.has_overlay() && !s.doc.has_pending() && s.doc.len_chars() == all)
                    })
                    .unwrap_or(false);
                if settled {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = service.with_open(&file, |s| Ok(s.doc.rope().to_string())).unwrap_or_default();
            stopping.store(true, Ordering::Relaxed);
            let dips = watcher.take().map_or(0, |w| w.join().unwrap_or(0));
            out(&json!({
                "dips": dips,
                "done": true,
                "typed_ns": typed_ns,
                "len": text.chars().count(),
                "hash": blake3::hash(text.as_bytes()).to_hex().to_string(),
                "bytes_sent": SYNC_BYTES_SENT.load(Ordering::Relaxed) - sent0,
                "bytes_received": SYNC_BYTES_RECEIVED.load(Ordering::Relaxed) - received0,
                "bytes_sent_by_kind": kinds().iter().zip(&kinds0).map(|(a, b)| a - b).collect::<Vec<u64>>(),
            }));
            // Still a peer until the coordinator closes stdin: one leaving early
            // would take its last keystrokes off the others' screens before its
            // change reached them.
        }
    }
    stopping.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    Ok(())
}

/// This process's stdin, a line at a time (closed: the channel ends).
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// The coordinator.

/// Where the programs are.
pub struct Programs {
    /// This benchmark's own binary (`tandem-bench typist`).
    pub bench: PathBuf,
    /// The `tandem` binary (`tandem serve --relay`, `tandem id`).
    pub tandem: PathBuf,
    /// `benchmarks/central` with its `node_modules`.
    pub central: PathBuf,
}

/// A started process: its stdin, and its stdout lines on the run's channel.
struct Proc {
    child: Child,
    stdin: ChildStdin,
}

impl Proc {
    fn start(
        mut cmd: Command,
        index: usize,
        log: &Path,
        lines: &Sender<(usize, Value)>,
    ) -> Result<Proc, String> {
        let err = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let tx = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send((index, v)).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("process {index} printed {line:?}"),
                }
            }
        });
        Ok(Proc { child, stdin })
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Resident set size of a process, in bytes.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .unwrap_or(0)
        * 1024
}

/// Wait for `want` lines that `pick` accepts, up to `timeout`; the rest are kept in
/// `other`.
fn wait_lines(
    rx: &Receiver<(usize, Value)>,
    timeout: Duration,
    other: &mut Vec<(usize, Value)>,
    mut pick: impl FnMut(usize, &Value) -> bool,
    want: usize,
    what: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, v)) => {
                if pick(i, &v) {
                    got += 1;
                } else {
                    other.push((i, v));
                }
            }
            Err(_) => return Err(format!("{what}: {got} of {want} within {} s", timeout.as_secs())),
        }
    }
    Ok(())
}

/// One run: `n` typists of `system`, each typing `rate` keys/s for `seconds`.
#[allow(clippy::needless_range_loop)] // typists r and j index several tables at once
pub fn run(
    p: &Programs,
    root: &Path,
    system: System,
    n: usize,
    rate: f64,
    seconds: f64,
    initial_chars: usize,
) -> Result<Value, String> {
    assert!((2..=ALPHABET.len()).contains(&n));
    if system == System::Yjs && initial_chars > 0 {
        return Err("--initial-chars: the Yjs typists start from an empty text".into());
    }
    let dir = root.join(format!("{}-{n}", system.name()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (tx, rx) = channel::<(usize, Value)>();
    let mut other = Vec::new();
    let setup = Duration::from_secs(60);
    // Process `n` is the hub, if there is one.
    let mut hub: Option<Proc> = None;
    let mut typists: Vec<Proc> = Vec::new();
    let typist_cmd = |i: usize| {
        let mut c = Command::new(&p.bench);
        c.arg("typist")
            .arg("--dir")
            .arg(dir.join(format!("t{i}")))
            .args(["--index", &i.to_string(), "--peers", &n.to_string()])
            .args(["--rate", &rate.to_string(), "--seconds", &seconds.to_string()])
            .args(["--initial-chars", &initial_chars.to_string()]);
        c
    };
    let log = |name: &str| dir.join(format!("{name}.log"));
    match system {
        System::Yjs => {
            let mut c = Command::new("node");
            c.arg(p.central.join("yjs-server.mjs")).args(["--port", "0"]);
            hub = Some(Proc::start(c, n, &log("server"), &tx)?);
            let mut port = 0;
            wait_lines(
                &rx,
                setup,
                &mut other,
                |i, v| {
                    let ok = i == n && v["ready"] == true;
                    if ok {
                        port = v["port"].as_u64().unwrap_or(0);
                    }
                    ok
                },
                1,
                "the y-websocket server ready",
            )?;
            for i in 0..n {
                let mut c = Command::new("node");
                c.arg(p.central.join("yjs-typist.mjs"))
                    .args(["--url", &format!("ws://127.0.0.1:{port}"), "--room", "load"])
                    .args(["--index", &i.to_string(), "--peers", &n.to_string()])
                    .args(["--rate", &rate.to_string(), "--seconds", &seconds.to_string()]);
                typists.push(Proc::start(c, i, &log(&format!("t{i}")), &tx)?);
            }
            wait_lines(&rx, setup, &mut other, |_, v| v["ready"] == true, n, "Yjs typists synced")?;
        }
        System::Mesh | System::Star => {
            let mut relay_id = None;
            let relay_home = dir.join("relay-home");
            if system == System::Star {
                let out = Command::new(&p.tandem)
                    .args(["id", "--json"])
                    .env("TANDEM_HOME", &relay_home)
                    .output()
                    .map_err(|e| format!("{}: {e}", p.tandem.display()))?;
                let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("tandem id: {e}"))?;
                relay_id = v["peer_id"].as_str().map(str::to_owned);
            }
            let mut c = typist_cmd(0);
            if let Some(id) = &relay_id {
                c.args(["--relay-member", id]);
            }
            typists.push(Proc::start(c, 0, &log("t0"), &tx)?);
            let mut tickets: Vec<String> = Vec::new();
            let take_ticket = |v: &Value, tickets: &mut Vec<String>| {
                let ok = v["ready"] == true;
                if ok {
                    tickets.push(v["ticket"].as_str().unwrap_or_default().to_owned());
                }
                ok
            };
            wait_lines(&rx, setup, &mut other, |_, v| take_ticket(v, &mut tickets), 1, "typist 0 sharing")?;
            let share = tickets[0].clone();
            let mut hub_ticket = None;
            if system == System::Star {
                let relay_dir = dir.join("relay");
                std::fs::create_dir_all(&relay_dir).map_err(|e| e.to_string())?;
                let mut c = Command::new(&p.tandem);
                c.args(["serve", "--relay", "--ticket", &share, "--json"])
                    .arg(&relay_dir)
                    .env("TANDEM_HOME", &relay_home)
                    .env("TANDEM_NAME", "relay");
                hub = Some(Proc::start(c, n, &log("relay"), &tx)?);
                let mut t = None;
                wait_lines(
                    &rx,
                    setup,
                    &mut other,
                    |i, v| {
                        let ok = i == n && v["ticket"].is_string();
                        if ok {
                            t = v["ticket"].as_str().map(str::to_owned);
                        }
                        ok
                    },
                    1,
                    "the relay enrolled",
                )?;
                hub_ticket = t;
            }
            for i in 1..n {
                let mut c = typist_cmd(i);
                c.args(["--ticket", &share]);
                match &hub_ticket {
                    Some(h) => {
                        c.args(["--hub", h]);
                    }
                    None => {
                        for t in &tickets[1..] {
                            c.args(["--connect", t]);
                        }
                    }
                }
                typists.push(Proc::start(c, i, &log(&format!("t{i}")), &tx)?);
                wait_lines(
                    &rx,
                    setup,
                    &mut other,
                    |j, v| j == i && take_ticket(v, &mut tickets),
                    1,
                    &format!("typist {i} joined"),
                )?;
            }
        }
    }
    // Let connections, hellos and presence settle.
    std::thread::sleep(Duration::from_secs(3));
    other.clear();
    while rx.try_recv().is_ok() {}

    let pids: Vec<u32> = typists.iter().map(Proc::pid).collect();
    let hub_pid = hub.as_ref().map(Proc::pid);
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_of(*p)).collect();
    let hub_cpu0 = hub_pid.map(cpu_of);
    let t0 = monotonic_ns() + 300_000_000;
    for t in &mut typists {
        t.say(&format!("go {t0}"));
    }
    let keys = (rate * seconds).round() as usize;
    // seen[r][j]: (count, t) steps of typist j's characters on typist r's screen.
    let mut seen: Vec<Vec<Vec<(usize, u64)>>> = vec![vec![Vec::new(); n]; n];
    let mut rss_max = vec![0u64; n];
    let mut hub_rss_max = 0u64;
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    // Every minute: seconds since go, the typists' mean and largest RSS, the hub's
    // (MB): memory growth over a long run (the soak).
    let mut timeline: Vec<Value> = Vec::new();
    let started = Instant::now();
    let complete = |seen: &Vec<Vec<Vec<(usize, u64)>>>| {
        (0..n).all(|r| (0..n).all(|j| j == r || seen[r][j].last().is_some_and(|s| s.0 >= keys)))
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 60.0);
    while !complete(&seen) && Instant::now() < deadline {
        if last_sample.elapsed() >= Duration::from_millis(500) {
            let rss: Vec<u64> = pids.iter().map(|p| rss_of(*p)).collect();
            for (i, r) in rss.iter().enumerate() {
                rss_max[i] = rss_max[i].max(*r);
            }
            let hub_rss = hub_pid.map(rss_of);
            if let Some(r) = hub_rss {
                hub_rss_max = hub_rss_max.max(r);
            }
            let minute = started.elapsed().as_secs() / 60;
            if minute as usize >= timeline.len() {
                let mb = |b: u64| (b as f64 / 1e5).round() / 10.0;
                timeline.push(json!([
                    started.elapsed().as_secs(),
                    mb(rss.iter().sum::<u64>() / n as u64),
                    mb(rss.iter().copied().max().unwrap_or(0)),
                    hub_rss.map(mb),
                ]));
            }
            last_sample = Instant::now();
        }
        if let Ok((r, v)) = rx.recv_timeout(Duration::from_millis(100))
            && let (Some(j), Some(c), Some(t)) =
                (v["seen"].as_u64(), v["count"].as_u64(), v["t"].as_str().and_then(|t| t.parse::<u64>().ok()))
            && r < n
            && (j as usize) < n
        {
            seen[r][j as usize].push((c as usize, t));
        }
    }
    let all_seen = complete(&seen);
    let typing_s = (monotonic_ns().saturating_sub(t0)) as f64 / 1e9;
    let cpu: Vec<f64> = pids.iter().zip(&cpu0).map(|(p, c0)| cpu_of(*p) - c0).collect();
    let hub_cpu = hub_pid.zip(hub_cpu0).map(|(p, c0)| cpu_of(p) - c0);
    let rss_end: Vec<u64> = pids.iter().map(|p| rss_of(*p)).collect();
    let hub_rss_end = hub_pid.map(rss_of);
    for t in &mut typists {
        t.say("stop");
    }
    let mut done: HashMap<usize, Value> = HashMap::new();
    let _ = wait_lines(
        &rx,
        Duration::from_secs(30),
        &mut other,
        |i, v| {
            let ok = v["done"] == true;
            if ok {
                done.insert(i, v.clone());
            }
            ok
        },
        n,
        "typists done",
    );
    drop(typists);
    drop(hub);

    // Latency: from key k typed on j to the moment r's screen held k+1 of j's keys.
    let typed: Vec<Vec<u64>> = (0..n)
        .map(|j| {
            done.get(&j)
                .and_then(|d| d["typed_ns"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.as_str().and_then(|t| t.parse().ok()))
                .collect()
        })
        .collect();
    let mut lat = Vec::new();
    let mut last_seen = 0u64;
    let mut missing = 0usize;
    for r in 0..n {
        for j in (0..n).filter(|j| *j != r) {
            let mut have = 0usize;
            for &(c, t) in &seen[r][j] {
                for k in have..c.min(typed[j].len()) {
                    lat.push(t.saturating_sub(typed[j][k]) as f64 / 1e6);
                }
                have = have.max(c.min(typed[j].len()));
                last_seen = last_seen.max(t);
            }
            missing += keys - have.min(keys);
        }
    }
    let last_typed = typed.iter().filter_map(|t| t.last()).max().copied().unwrap_or(0);
    let hashes: Vec<&str> = done.values().filter_map(|d| d["hash"].as_str()).collect();
    let agree = done.len() == n && hashes.windows(2).all(|w| w[0] == w[1]);
    let sum = |k: &str| done.values().map(|d| d[k].as_u64().unwrap_or(0)).sum::<u64>();
    let total_keys = (keys * n) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let mb = |b: u64| r3(b as f64 / 1e6);
    // Bytes sent per key by message kind (tandem): hello, need, changes, ack, error, live, ...
    let by_kind = {
        let names = ["?", "hello", "need", "changes", "ack", "error", "live", "other"];
        let mut by = serde_json::Map::new();
        for d in done.values() {
            for (i, b) in d["bytes_sent_by_kind"].as_array().into_iter().flatten().enumerate() {
                let e = by.entry(names[i.min(7)]).or_insert(json!(0.0));
                *e = json!(e.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0) / total_keys);
            }
        }
        by.retain(|_, v| v.as_f64().unwrap_or(0.0) >= 0.5);
        by.values_mut().for_each(|v| *v = json!(v.as_f64().unwrap_or(0.0).round()));
        Value::Object(by)
    };
    Ok(json!({
        "bench": "central",
        "system": system.name(),
        "typists": n,
        "rate_keys_per_s": rate,
        "initial_chars": initial_chars,
        "seconds": seconds,
        "keys": keys * n,
        "latency_ms": stats(lat),
        "all_seen": all_seen,
        "keys_missing": missing,
        "agree": agree,
        "dips": sum("dips"),
        // Each typist's final length where they disagree (who is behind, and by how much).
        "final_lengths": if agree { Value::Null } else { (0..n).map(|i| done.get(&i).map_or(Value::Null, |d| d["len"].clone())).collect() },
        "converge_after_last_key_ms": if all_seen { r3(last_seen.saturating_sub(last_typed) as f64 / 1e6) } else { -1.0 },
        "hub_cpu_cores": hub_cpu.map(|c| r3(c / typing_s)),
        "hub_rss_mb_max": hub_pid.map(|_| mb(hub_rss_max)),
        "hub_rss_mb_end": hub_rss_end.map(mb),
        "typist_cpu_cores_mean": r3(mean(&cpu) / typing_s),
        "typist_cpu_cores_max": r3(cpu.iter().copied().fold(0.0, f64::max) / typing_s),
        "typist_rss_mb_mean": mb((rss_max.iter().sum::<u64>() as f64 / n as f64) as u64),
        "typist_rss_mb_end_mean": mb((rss_end.iter().sum::<u64>() as f64 / n as f64) as u64),
        "rss_timeline_mb": timeline,
        "all_cpu_cores": r3((cpu.iter().sum::<f64>() + hub_cpu.unwrap_or(0.0)) / typing_s),
        "bytes_sent_per_key": (sum("bytes_sent") as f64 / total_keys).round(),
        "bytes_sent_per_key_by_kind": by_kind,
        "bytes_received_per_key": (sum("bytes_received") as f64 / total_keys).round(),
        "bytes_received_per_key_per_receiver": (sum("bytes_received") as f64 / total_keys / (n - 1) as f64).round(),
        "command": "cargo build --release && target/release/tandem-bench central",
    }))
}

// ---------------------------------------------------------------------------
// Figures.

/// One panel of the figure: a value of each record against the typist count.
struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&Value) -> Option<f64>,
    log: bool,
}

const PANELS: [Panel; 6] = [
    Panel {
        title: "keystroke to every other typist, p50",
        unit: "ms",
        value: |v| v["latency_ms"]["p50"].as_f64(),
        log: true,
    },
    Panel {
        title: "keystroke to every other typist, p99",
        unit: "ms",
        value: |v| v["latency_ms"]["p99"].as_f64(),
        log: true,
    },
    Panel {
        title: "converged after the last key",
        unit: "ms",
        value: |v| v["converge_after_last_key_ms"].as_f64().filter(|x| *x >= 0.0),
        log: true,
    },
    Panel {
        title: "CPU of the hub (server or relay)",
        unit: "cores",
        value: |v| v["hub_cpu_cores"].as_f64(),
        log: false,
    },
    Panel {
        title: "CPU of all processes",
        unit: "cores",
        value: |v| v["all_cpu_cores"].as_f64(),
        log: false,
    },
    Panel {
        title: "bytes received per key per receiver",
        unit: "B",
        value: |v| v["bytes_received_per_key_per_receiver"].as_f64(),
        log: true,
    },
];

const COLORS: [(&str, &str); 3] =
    [("tandem-mesh", "#1b9e77"), ("tandem-star", "#7570b3"), ("yjs-websocket", "#d95f02")];

/// Draw the `central` records of `records` (a JSON-lines file; for each design and
/// typist count the last record wins) as one SVG of six panels at `svg`.
pub fn plot(records: &Path, svg: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(records).map_err(|e| format!("{}: {e}", records.display()))?;
    let mut last: std::collections::BTreeMap<(String, u64), Value> = Default::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["bench"] != "central" || v["initial_chars"].as_u64().unwrap_or(0) > 0 {
            continue;
        }
        let (Some(system), Some(n)) = (v["system"].as_str(), v["typists"].as_u64()) else { continue };
        last.insert((system.to_owned(), n), v);
    }
    if last.is_empty() {
        return Err(format!("{}: no `central` records", records.display()));
    }
    let ns: Vec<u64> = {
        let mut ns: Vec<u64> = last.keys().map(|(_, n)| *n).collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    };
    let (pw, ph, cols) = (380.0, 250.0, 3usize);
    let rows = PANELS.len().div_ceil(cols);
    let (w, h) = (pw * cols as f64, ph * rows as f64 + 40.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // Legend.
    for (i, (name, color)) in COLORS.iter().enumerate() {
        let x = 20.0 + i as f64 * 170.0;
        s += &format!(
            "<rect x=\"{x}\" y=\"12\" width=\"14\" height=\"4\" fill=\"{color}\"/><text x=\"{}\" y=\"18\">{name}</text>\n",
            x + 20.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"18\" fill=\"#555\">x: typists (each {} keys/s); hollow: not every key arrived within 60 s; from {}</text>\n",
        20.0 + 3.0 * 170.0,
        last.values().next().and_then(|v| v["rate_keys_per_s"].as_f64()).unwrap_or(0.0),
        records.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let xpos = |n: u64, x0: f64, x1: f64| {
        let (a, b) = ((ns[0] as f64).log2(), (*ns.last().expect("ns") as f64).log2());
        if b > a { x0 + ((n as f64).log2() - a) / (b - a) * (x1 - x0) } else { (x0 + x1) / 2.0 }
    };
    for (pi, panel) in PANELS.iter().enumerate() {
        let (ox, oy) = ((pi % cols) as f64 * pw, 40.0 + (pi / cols) as f64 * ph);
        let (x0, x1, y0, y1) = (ox + 55.0, ox + pw - 15.0, oy + ph - 35.0, oy + 25.0);
        let values: Vec<f64> = last.values().filter_map(panel.value).collect();
        let lo = if panel.log {
            values.iter().copied().filter(|v| *v > 0.0).fold(f64::MAX, f64::min)
        } else {
            0.0
        };
        let hi = values.iter().copied().fold(0.0, f64::max);
        let (lo, hi) = if panel.log {
            let lo = if lo == f64::MAX { 1.0 } else { 10f64.powf(lo.log10().floor()) };
            (lo, 10f64.powf(hi.max(lo * 10.0).log10().ceil()))
        } else {
            (0.0, if hi > 0.0 { nice_ceiling(hi) } else { 1.0 })
        };
        let ypos = |v: f64| {
            let f =
                if panel.log { (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) } else { v / hi };
            y0 - f * (y0 - y1)
        };
        s += &format!(
            "<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{} ({})</text>\n",
            x0,
            oy + 14.0,
            panel.title,
            panel.unit
        );
        s += &format!(
            "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/><line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#999\"/>\n"
        );
        // Y ticks: each power of ten (log) or five steps.
        let ticks: Vec<f64> = if panel.log {
            let mut t = Vec::new();
            let mut v = lo;
            while v <= hi * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            (0..=5).map(|i| hi * i as f64 / 5.0).collect()
        };
        for t in ticks {
            let y = ypos(t);
            s += &format!(
                "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{x1}\" y2=\"{y}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                x0 - 4.0,
                y + 4.0,
                short(t)
            );
        }
        for n in &ns {
            let x = xpos(*n, x0, x1);
            s += &format!("<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{n}</text>\n", y0 + 14.0);
        }
        for (name, color) in COLORS {
            // Hollow: a run where not every key reached every typist in time.
            let pts: Vec<(f64, f64, bool)> = ns
                .iter()
                .filter_map(|n| {
                    let v = last.get(&(name.to_owned(), *n))?;
                    Some((xpos(*n, x0, x1), ypos((panel.value)(v)?), v["all_seen"] == true))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let line: Vec<String> = pts.iter().map(|(x, y, _)| format!("{x:.1},{y:.1}")).collect();
            s += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                line.join(" ")
            );
            for (x, y, whole) in pts {
                let fill = if whole { color } else { "white" };
                s += &format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{fill}\" stroke=\"{color}\"/>\n"
                );
            }
        }
    }
    s += "</svg>\n";
    std::fs::write(svg, s).map_err(|e| format!("{}: {e}", svg.display()))
}

/// 1, 2 or 5 times a power of ten, at least `x`.
fn nice_ceiling(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|v| *v >= x).unwrap_or(10.0 * p)
}

fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", (v / 100.0).round() / 10.0)
    } else {
        // Three decimals at most: 0.12, not 0.12000000000000001.
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}
