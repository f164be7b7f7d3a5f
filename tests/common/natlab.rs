//! The NAT lab of `../shared/natlab`: a small "internet" (198.51.100.0/24) with a
//! public host (`nl-pub`, .10 and .11) and two peers (`nl-peerA` 10.10.1.2,
//! `nl-peerB` 10.10.2.2), each behind a NAT router whose kind a test sets (full
//! cone, restricted, port-restricted, symmetric), all network namespaces on this
//! machine, driven by [`tandem_bench::natlab::Lab`]. The lab's namespaces have fixed
//! names, so one test at a time holds it. Needs root (CI is root); without it
//! [`NatLab::up`] says why and gives none.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tandem_bench::natlab::Lab;

pub const PUBLIC: &str = "nl-pub";
pub const PEER_A: &str = "nl-peerA";
pub const PEER_B: &str = "nl-peerB";

/// The kinds of NAT the lab's routers can be, most permissive first.
pub const KINDS: [&str; 4] = ["fullcone", "restricted", "portrestricted", "symmetric"];

pub struct NatLab {
    // Dropped first: the lab goes down before the next test may take it.
    lab: Lab,
    _one_at_a_time: MutexGuard<'static, ()>,
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
        let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/natlab");
        let lab = Lab::up(&scripts).unwrap_or_else(|e| panic!("{e}"));
        Some(NatLab { lab, _one_at_a_time: guard })
    }

    /// Make router `side` ('A' or 'B') a NAT of `kind`, dropping `loss` percent of
    /// what it forwards.
    pub fn nat(&self, side: char, kind: &str, loss: u32) {
        self.lab.nat(side, kind, loss).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Hold every packet router `side` forwards for `ms` milliseconds (see
    /// [`Lab::delay`]).
    pub fn delay(&self, side: char, ms: u32) {
        self.lab.delay(side, ms).unwrap_or_else(|e| panic!("{e}"));
    }
}
