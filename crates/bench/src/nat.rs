//! `tandem-bench nat`: every pair of NAT kinds in the NAT lab (`../shared/natlab`,
//! network namespaces; needs root), with the real `tandem` binary and a `tandem
//! relay` on the lab's public host. Per pair: how long `tandem join` takes to have
//! the document (fetched, verified, written), whether and how soon the pair moves to
//! a direct connection, the round trip and how long an edit takes to reach the other
//! peer on the connection they ended on (direct or relayed), and what the relay spent
//! on the session (bytes through its interface, CPU time). Optionally with every
//! packet held `--delay-ms` by each router, as an internet path would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem_store::{Client, Request, Workspace};

use crate::keystroke::stats;
use crate::natlab::Lab;

const KINDS: [&str; 4] = ["fullcone", "restricted", "portrestricted", "symmetric"];

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tandem ARGS` in namespace `ns`, in `dir` as the device of `home`; its first
/// stdout line (JSON) and the process.
fn spawn(tandem: &Path, ns: &str, dir: &Path, home: &Path, args: &[&str]) -> Result<(Value, Proc), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(tandem)
        .args(args)
        .current_dir(dir)
        .env("TANDEM_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).map_err(|e| e.to_string())?;
    let v = serde_json::from_str(&line).map_err(|_| format!("tandem {args:?} printed {line:?}"))?;
    Ok((v, Proc(child)))
}

/// `tandem ARGS` through a peer's control socket (no namespace needed).
fn cli(tandem: &Path, dir: &Path, home: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tandem).args(args).current_dir(dir).env("TANDEM_HOME", home).output();
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("tandem {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bytes through the public host's interface, both ways.
fn relay_bytes() -> u64 {
    ["rx_bytes", "tx_bytes"]
        .iter()
        .filter_map(|f| {
            let out = Command::new("ip")
                .args(["netns", "exec", "nl-pub", "cat", &format!("/sys/class/net/pub0/statistics/{f}")])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().ok()
        })
        .sum()
}

/// CPU time (user + system) the process `pid` and its children have used.
fn cpu_ms(pid: u32) -> f64 {
    // `ip netns exec` execs the program, so the pid is the relay's own.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1000.0 / hz
}

/// One edit and its wait on the receiver, through the two peers' control sockets
/// (each one connection for the whole run, so no process start is in the figure).
struct Keyboard {
    ada: Client,
    bob: Client,
    ada_file: PathBuf,
    bob_file: PathBuf,
}

impl Keyboard {
    fn connect(ada: &Path, bob: &Path) -> Result<Keyboard, String> {
        let client = |dir: &Path| {
            let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
            Client::connect(&ws).ok_or_else(|| format!("no tandem process answers in {}", dir.display()))
        };
        Ok(Keyboard {
            ada: client(ada)?,
            bob: client(bob)?,
            ada_file: ada.join("doc.md"),
            bob_file: bob.join("doc.md"),
        })
    }

    fn text(client: &mut Client, file: &Path) -> Result<String, String> {
        let v = client.call(&Request::Cat { file: file.to_owned(), at: None }).map_err(|e| e.to_string())?;
        Ok(v["text"].as_str().unwrap_or_default().to_owned())
    }

    /// Ada inserts `key` at the start; how long until Bob's document starts with
    /// everything Ada's does (`None` after 10 s).
    fn key(&mut self, key: &str) -> Result<Option<f64>, String> {
        let t0 = Instant::now();
        let edit = Request::Edit { file: self.ada_file.clone(), at: 0, delete: 0, insert: key.to_owned() };
        self.ada.call(&edit).map_err(|e| e.to_string())?;
        let want = Self::text(&mut self.ada, &self.ada_file)?;
        while t0.elapsed() < Duration::from_secs(10) {
            if Self::text(&mut self.bob, &self.bob_file)? == want {
                return Ok(Some(t0.elapsed().as_secs_f64() * 1000.0));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(None)
    }
}

pub fn run(
    tandem: &Path,
    natlab: &Path,
    edits: usize,
    delay_ms: u32,
    root: &Path,
) -> Result<Vec<Value>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the NAT lab needs root (network namespaces)".into());
    }
    let lab = Lab::up(natlab)?;
    if delay_ms > 0 {
        lab.delay('A', delay_ms)?;
        lab.delay('B', delay_ms)?;
    }
    pairs(tandem, &lab, edits, delay_ms, root)
}

fn pairs(tandem: &Path, lab: &Lab, edits: usize, delay_ms: u32, root: &Path) -> Result<Vec<Value>, String> {
    let relay_home = root.join("relay-home");
    let (relay, relay_proc) =
        spawn(tandem, "nl-pub", &root.join("relay"), &relay_home, &["relay", "--json"])?;
    let relay_addr = relay["addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.contains("198.51.100.10") && a.contains("quic"))
        .ok_or("the relay has no QUIC address")?
        .to_owned();
    let mut out = Vec::new();
    for (i, a) in KINDS.iter().enumerate() {
        for b in &KINDS[i..] {
            lab.nat('A', a, 0)?;
            lab.nat('B', b, 0)?;
            let pair = root.join(format!("{a}-{b}"));
            let (ada, bob) = (pair.join("ada"), pair.join("bob"));
            let (ada_home, bob_home) = (pair.join("ada-home"), pair.join("bob-home"));
            std::fs::create_dir_all(&ada).map_err(|e| e.to_string())?;
            std::fs::write(ada.join("doc.md"), "hello\n").map_err(|e| e.to_string())?;
            let (bytes0, cpu0) = (relay_bytes(), cpu_ms(relay_proc.0.id()));
            let share_args = ["share", "doc.md", "--headless", "--json", "--relay", &relay_addr];
            let (ticket, _sharer) = spawn(tandem, "nl-peerA", &ada, &ada_home, &share_args)?;
            let ticket = ticket["ticket"].as_str().ok_or("no ticket")?.to_owned();
            let started = Instant::now();
            let (_, _joiner) =
                spawn(tandem, "nl-peerB", &bob, &bob_home, &["join", &ticket, ".", "--headless", "--json"])?;
            let join_ms = started.elapsed().as_secs_f64() * 1000.0;
            // Direct, or not within 20 s (three DCUtR rounds take less).
            let mut to_direct_ms = None;
            let mut link = Value::Null;
            while started.elapsed() < Duration::from_secs(20) {
                let peers: Value =
                    serde_json::from_str(&cli(tandem, &bob, &bob_home, &["peers", "doc.md", "--json"])?)
                        .map_err(|e| e.to_string())?;
                link = peers["peers"][0].clone();
                if link["direct"] == true {
                    to_direct_ms = Some(started.elapsed().as_secs_f64() * 1000.0 - join_ms);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Let the move to the direct connection (or the relayed one's set-up) settle.
            std::thread::sleep(Duration::from_secs(1));
            let rtt_ms =
                serde_json::from_str::<Value>(&cli(tandem, &bob, &bob_home, &["peers", "doc.md", "--json"])?)
                    .map_err(|e| e.to_string())?["peers"][0]["rtt_ms"]
                    .clone();
            // Keystrokes at 10 a second, each timed until the joiner has it.
            let mut keys = Keyboard::connect(&ada, &bob)?;
            let mut latency = Vec::with_capacity(edits);
            let mut missed = 0;
            for k in 0..edits {
                let pace = Instant::now() + Duration::from_millis(100);
                match keys.key(&format!("{}", k % 10))? {
                    Some(ms) => latency.push(ms),
                    None => missed += 1,
                }
                std::thread::sleep(pace.saturating_duration_since(Instant::now()));
            }
            if latency.is_empty() {
                return Err(format!("{a} x {b}: no edit reached the joiner"));
            }
            let (bytes1, cpu1) = (relay_bytes(), cpu_ms(relay_proc.0.id()));
            out.push(json!({
                "bench": "nat",
                "pair": format!("{a} x {b}"),
                "delay_ms_per_router": delay_ms,
                "join_ms": round(join_ms),
                "direct": to_direct_ms.is_some(),
                "link": link["link"],
                "to_direct_ms": to_direct_ms.map(round),
                "edits": edits,
                "edit_to_remote_ms": stats(latency),
                "missed": missed,
                "rtt_ms": rtt_ms,
                "relay_bytes": bytes1.saturating_sub(bytes0),
                "relay_cpu_ms": round(cpu1 - cpu0),
                "command": format!("sudo target/release/tandem-bench nat --edits {edits} --delay-ms {delay_ms}"),
            }));
        }
    }
    Ok(out)
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
