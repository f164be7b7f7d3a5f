//! A driver for the NAT lab of `../shared/natlab` (network namespaces; needs root):
//! builds it, sets each router's kind of NAT, loss and delay, and takes it down
//! again when dropped. Shared by `tandem-bench nat` and the NAT tests in `tests/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lab, up while this lives.
pub struct Lab {
    scripts: PathBuf,
    /// The delay shims (`nfq_delay.py`) holding each router's packets, by side.
    delays: Mutex<Vec<(char, Child)>>,
}

impl Lab {
    /// The lab of the scripts in `scripts`, built afresh (routers forwarding, no NAT
    /// rules yet).
    pub fn up(scripts: &Path) -> Result<Lab, String> {
        if !scripts.join("natlab.sh").exists() {
            return Err(format!("the NAT lab is missing: {}", scripts.display()));
        }
        let lab = Lab { scripts: scripts.to_owned(), delays: Mutex::new(Vec::new()) };
        let _ = lab.run(&["down"]);
        lab.run(&["up"])?;
        Ok(lab)
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(self.scripts.join("natlab.sh"))
            .args(args)
            .output()
            .map_err(|e| format!("bash: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "natlab.sh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Make router `side` ('A' or 'B') a NAT of `kind`, dropping `loss` percent of
    /// what it forwards.
    pub fn nat(&self, side: char, kind: &str, loss: u32) -> Result<(), String> {
        self.run(&["nat", &side.to_string(), kind, &loss.to_string()])?;
        // `nat` starts the router's rules afresh: its delay comes back on top.
        if self.delays.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(s, _)| *s == side) {
            queue_forwarded(side)?;
        }
        Ok(())
    }

    /// Hold every packet router `side` forwards for `ms` milliseconds, both ways:
    /// this kernel has no netem, so the lab's `nfq_delay.py` holds them in user space
    /// (an NFQUEUE). Lasts until the lab goes down, across [`Lab::nat`].
    pub fn delay(&self, side: char, ms: u32) -> Result<(), String> {
        let ns = format!("nl-nat{side}");
        let queue = queue_of(side).to_string();
        let mut shim = Command::new("ip")
            .args(["netns", "exec", &ns, "python3"])
            .arg(self.scripts.join("nfq_delay.py"))
            .args([&queue, &ms.to_string(), "0", "86400"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        // Bound to its queue before any packet goes there (the rule lets packets
        // through undelayed while no shim listens).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "cat", "/proc/net/netfilter/nfnetlink_queue"])
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            let listing = String::from_utf8_lossy(&out.stdout);
            if listing.lines().any(|l| l.split_whitespace().next() == Some(queue.as_str())) {
                break;
            }
            if let Ok(Some(_)) = shim.try_wait() {
                let out = shim.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!(
                    "nfq_delay.py did not start (it needs `pip install NetfilterQueue`, which \
                     scripts/test.sh does): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            if Instant::now() > deadline {
                let _ = shim.kill();
                return Err(format!("nfq_delay.py never bound queue {queue} in {ns}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.delays.lock().unwrap_or_else(|e| e.into_inner()).push((side, shim));
        queue_forwarded(side)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, mut shim) in self.delays.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = shim.kill();
            let _ = shim.wait();
        }
        let _ = self.run(&["down"]);
    }
}

/// The NFQUEUE number of router `side`'s delay shim.
fn queue_of(side: char) -> u16 {
    if side == 'A' { 1 } else { 2 }
}

/// Send everything router `side` forwards through its delay shim's queue
/// (`--queue-bypass`: straight on while no shim listens). iptables, not nft: this
/// kernel has the xtables NFQUEUE target but not nft's own `queue`.
fn queue_forwarded(side: char) -> Result<(), String> {
    let queue = queue_of(side).to_string();
    let ns = format!("nl-nat{side}");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "iptables", "-I", "FORWARD", "-j", "NFQUEUE"])
        .args(["--queue-num", &queue, "--queue-bypass"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("iptables in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim()))
}
