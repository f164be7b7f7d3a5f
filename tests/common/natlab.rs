//! The NAT lab of `../shared/natlab`: a small "internet" (198.51.100.0/24) with a
//! public host (`nl-pub`, .10 and .11) and two peers (`nl-peerA` 10.10.1.2,
//! `nl-peerB` 10.10.2.2), each behind a NAT router whose kind a test sets (full
//! cone, restricted, port-restricted, symmetric), all network namespaces on this
//! machine. The lab's namespaces have fixed names, so one test at a time holds it.
//! Needs root (CI is root); without it [`NatLab::up`] says why and gives none.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

pub const PUBLIC: &str = "nl-pub";
pub const PEER_A: &str = "nl-peerA";
pub const PEER_B: &str = "nl-peerB";

/// The kinds of NAT the lab's routers can be, most permissive first.
pub const KINDS: [&str; 4] = ["fullcone", "restricted", "portrestricted", "symmetric"];

pub struct NatLab {
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/natlab")
}

fn natlab(args: &[&str]) {
    let out = Command::new("bash").arg(scripts().join("natlab.sh")).args(args).output().expect("bash runs");
    assert!(
        out.status.success(),
        "natlab.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NatLab {
    /// The lab, built afresh (routers forwarding, no NAT rules yet); `None` with the
    /// reason printed when this is not root.
    pub fn up() -> Option<NatLab> {
        static LAB: Mutex<()> = Mutex::new(());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: the NAT lab needs root for its network namespaces (CI runs as root)");
            return None;
        }
        let guard = LAB.lock().unwrap_or_else(|e| e.into_inner());
        assert!(scripts().join("natlab.sh").exists(), "the NAT lab is missing: {}", scripts().display());
        let _ = Command::new("bash").arg(scripts().join("natlab.sh")).arg("down").output();
        natlab(&["up"]);
        Some(NatLab { _one_at_a_time: guard })
    }

    /// Make router `side` ('A' or 'B') a NAT of `kind`, dropping `loss` percent of
    /// what it forwards.
    pub fn nat(&self, side: char, kind: &str, loss: u32) {
        natlab(&["nat", &side.to_string(), kind, &loss.to_string()]);
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(scripts().join("natlab.sh")).arg("down").output();
    }
}
