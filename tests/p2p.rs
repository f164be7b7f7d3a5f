//! Live sharing between real processes: `tandem share` and `tandem join` peers, edited
//! through the scripting CLI, run with the flags a user types (every interface, mDNS
//! on, every transport), each on a host of its own: a network namespace on a LAN of
//! the test's own (tests/common/lan.rs; as root, which CI is). Only the tests of a
//! forced transport pass `--transport`; none narrows where tandem listens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::lan::{Lan, command_on};
use common::noise;

const TRANSPORTS: [&str; 3] = ["quic", "webrtc", "tcp"];

struct Peer {
    name: String,
    dir: PathBuf,
    home: PathBuf,
    file: PathBuf,
    child: Child,
    info: Value,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tandem ARGS` here (scripting commands reach a peer through its control socket,
/// which is a file: no network namespace needed).
fn tandem(dir: &Path, home: &Path, name: &str, args: &[&str]) -> Command {
    tandem_on(None, dir, home, name, args)
}

/// `tandem ARGS` on `host` (a LAN host's namespace), or here.
fn tandem_on(host: Option<&str>, dir: &Path, home: &Path, name: &str, args: &[&str]) -> Command {
    let mut c = command_on(host, env!("CARGO_BIN_EXE_tandem"));
    c.args(args).current_dir(dir).env("TANDEM_HOME", home).env("TANDEM_NAME", name).env("RUST_LOG", "info");
    c
}

fn spawn_on(host: Option<&str>, dir: &Path, home: &Path, name: &str, args: &[&str], file: PathBuf) -> Peer {
    let mut child = tandem_on(host, dir, home, name, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "{name} printed {line:?}; log: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        )
    });
    Peer { name: name.into(), dir: dir.into(), home: home.into(), file, child, info }
}

/// `--transport T` when a test forces one; nothing (every transport) for "any".
fn transport_flag(transport: &str) -> Vec<&str> {
    if transport == "any" { vec![] } else { vec!["--transport", transport] }
}

/// `tandem share doc.md --headless --json EXTRA` on `host`, in `root/name`.
fn share_on(host: Option<&str>, root: &Path, name: &str, content: &str, extra: &[&str]) -> Peer {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("doc.md"), content).unwrap();
    let mut args = vec!["share", "doc.md", "--headless", "--json"];
    args.extend_from_slice(extra);
    spawn_on(host, &dir, &root.join(format!("{name}-home")), name, &args, dir.join("doc.md"))
}

/// `tandem join TICKET . --headless --json EXTRA` on `host`, in `root/name`.
fn join_on(host: Option<&str>, root: &Path, name: &str, ticket: &str, extra: &[&str]) -> Peer {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec!["join", ticket, ".", "--headless", "--json"];
    args.extend_from_slice(extra);
    spawn_on(host, &dir, &root.join(format!("{name}-home")), name, &args, dir.join("doc.md"))
}

impl Peer {
    fn ticket(&self) -> String {
        self.info["ticket"].as_str().unwrap().to_owned()
    }

    /// Edit through the scripting CLI, which reaches this peer's control socket.
    fn edit(&self, at: usize, text: &str) {
        let at = at.to_string();
        let out =
            tandem(&self.dir, &self.home, &self.name, &["edit", "doc.md", "--at", &at, "--insert", text])
                .output()
                .unwrap();
        assert!(out.status.success(), "{}: {}", self.name, String::from_utf8_lossy(&out.stderr));
    }

    fn heads(&self) -> Value {
        let out = tandem(&self.dir, &self.home, &self.name, &["info", "doc.md", "--json"]).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["heads"].clone()
    }

    fn text(&self) -> String {
        let out = tandem(&self.dir, &self.home, &self.name, &["cat", "doc.md"]).output().unwrap();
        assert!(out.status.success(), "{}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Wait until every peer shows the same text, containing every `needle`.
fn converge(peers: &[&Peer], needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let texts: Vec<String> = peers.iter().map(|p| p.text()).collect();
        let same = texts.iter().all(|t| t == &texts[0]) && needles.iter().all(|n| texts[0].contains(n));
        // Converged means the same version everywhere (the status line's @hash)...
        // ...and the plain files follow the documents (written at most every 200 ms).
        if same
            && peers.iter().all(|p| p.heads() == peers[0].heads())
            && peers.iter().all(|p| std::fs::read_to_string(&p.file).ok().as_ref() == Some(&texts[0]))
        {
            return texts[0].clone();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = peers
                .iter()
                .map(|p| std::fs::read_to_string(p.dir.join(format!("{}.log", p.name))).unwrap_or_default())
                .collect();
            panic!("no convergence: {texts:#?}\nlogs: {logs:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One test per transport that forces it: sharer and joiner on two hosts of a LAN.
#[test]
fn two_peers_converge_on_concurrent_edits_over_each_transport() {
    for transport in TRANSPORTS {
        let lan = Lan::new(2);
        let root = tempfile::tempdir().unwrap();
        // ~60 KB that does not compress: the join's frame is far over one WebRTC
        // data-channel message.
        let start = format!("shared text\n{}", noise(1000));
        let a = share_on(lan.host(0), root.path(), "alice", &start, &transport_flag(transport));
        let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &transport_flag(transport));
        assert_eq!(b.text(), start, "{transport}: the joiner got the document");
        a.edit(0, "A1 ");
        b.edit(0, "B1 ");
        a.edit(0, "A2 ");
        b.edit(0, "B2 ");
        let text = converge(&[&a, &b], &["A1", "A2", "B1", "B2", "shared"]);
        assert_eq!(text.matches("shared text").count(), 1, "{transport}: {text}");
    }
}

/// The README's two commands with nothing added, a fresh device joining each time:
/// across two hosts of a LAN, and on one host with a real interface (where the
/// sharer's mDNS finds the joiner before the joiner dials: the join failed every
/// time, "dial condition was configured to only happen when both disconnected").
#[test]
fn plain_share_and_join_work_for_fresh_devices_on_a_lan_and_on_one_host() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "ada", "plain\n", &[]);
    let addrs = a.info["addrs"].as_array().unwrap();
    if lan.isolated() {
        assert!(
            addrs.iter().all(|a| !a.as_str().unwrap().contains("/127.0.0.1/")),
            "no loopback address in a ticket when the host has another: {addrs:?}"
        );
    }
    for round in 0..3 {
        for (host, place) in [(lan.host(1), "lan"), (lan.host(0), "same-host")] {
            let name = format!("{place}{round}");
            let b = join_on(host, root.path(), &name, &a.ticket(), &[]);
            assert!(b.text().ends_with("plain\n"), "{name}: {}", b.text());
            b.edit(0, &format!("[{name}]"));
            wait_for(&a, &format!("[{name}]"));
            let log = std::fs::read_to_string(b.dir.join(format!("{name}.log"))).unwrap();
            assert!(!log.contains("Debug"), "{name}: {log}");
        }
    }
}

#[test]
fn four_peers_converge_and_a_chain_forwards() {
    let lan = Lan::new(4);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "a", "four\n", &[]);
    let b = join_on(lan.host(1), root.path(), "b", &a.ticket(), &[]);
    let c = join_on(lan.host(2), root.path(), "c", &a.ticket(), &[]);
    // d is let in by a (an admin's invite), then rejoins through b only: b
    // forwards between a and d. b's own ticket holds no invite: it only lets
    // members in.
    let d = join_on(lan.host(3), root.path(), "d", &a.ticket(), &[]);
    // b hears from a that d is a member (until then it would refuse d).
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.role_in(&b.group()).is_none() {
        assert!(Instant::now() < deadline, "b never heard that d is a member");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    let d = join_on(lan.host(3), root.path(), "d", &b.ticket(), &[]);
    for (i, p) in [&a, &b, &c, &d].iter().enumerate() {
        p.edit(0, &format!("<{i}>"));
    }
    converge(&[&a, &b, &c, &d], &["<0>", "<1>", "<2>", "<3>", "four"]);
}

#[test]
fn a_killed_peer_that_edited_offline_catches_up_and_loses_nothing() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "a", "base\n", &[]);
    let mut b = join_on(lan.host(1), root.path(), "b", &a.ticket(), &[]);
    b.edit(0, "before-kill ");
    converge(&[&a, &b], &["before-kill"]);
    // SIGKILL mid-session, then both sides edit while apart.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    b.edit(0, "offline-b ");
    a.edit(0, "online-a ");
    let ticket = a.ticket();
    drop(b);
    let b = join_on(lan.host(1), root.path(), "b", &ticket, &[]);
    let text = converge(&[&a, &b], &["before-kill", "offline-b", "online-a", "base"]);
    assert_eq!(text.matches("before-kill").count(), 1, "{text}");
}

/// A joiner that cannot reach its sharer says so in a sentence, with what to check,
/// and leaves nothing behind; a stopped peer leaves the session at once.
#[test]
fn a_failed_join_says_why_and_leaves_no_trace() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let mut a = share_on(lan.host(0), root.path(), "ada", "x\n", &[]);
    let ticket = a.ticket();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let dir = root.path().join("bob");
    let home = root.path().join("bob-home");
    let out = tandem_on(lan.host(1), root.path(), &home, "bob", &["join", &ticket, "bob", "--headless"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tandem share") && err.contains("still running"), "{err}");
    assert!(err.len() < 600 && !err.contains("Failed to negotiate"), "a wall of libp2p text: {err}");
    assert!(!err.contains(" WARN ") && !err.contains(" ERROR "), "dependency logs on stderr: {err}");
    assert!(!dir.exists(), "a failed join left {} behind", dir.display());
    // Into a directory that exists: it stays, without a .tandem/.
    std::fs::create_dir_all(&dir).unwrap();
    let out =
        tandem_on(lan.host(1), &dir, &home, "bob", &["join", &ticket, ".", "--headless"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(dir.exists() && !dir.join(".tandem").exists());
}

/// Ctrl-C while a join is still trying to reach the sharer: it stops at once, exits
/// 130 as an interrupted command does, and leaves nothing behind (the handler is
/// there before the join starts, so the signal does not kill it half-way).
#[test]
fn a_join_stopped_before_it_arrives_exits_130_and_leaves_no_trace() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let mut a = share_on(lan.host(0), root.path(), "ada", "x\n", &[]);
    let ticket = a.ticket();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let dir = root.path().join("bob");
    let home = root.path().join("bob-home");
    let child = tandem_on(lan.host(1), root.path(), &home, "bob", &["join", &ticket, "bob", "--headless"])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped"), "{err}");
    assert!(!dir.exists(), "a stopped join left {} behind", dir.display());
}

/// Joining into a directory that already holds another document of the ticket's
/// file name: refused at once, naming the file and the fix (it said "membership op is
/// for another document"); the other document is left as it was.
#[test]
fn a_join_into_a_directory_with_another_document_of_that_name_names_the_fix() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "ada", "shared\n", &[]);
    let dir = root.path().join("bob");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("doc.md"), "bob's own\n").unwrap();
    let home = root.path().join("bob-home");
    let own = tandem(&dir, &home, "bob", &["log", "doc.md"]).output().unwrap();
    assert!(own.status.success());
    let out = tandem_on(lan.host(1), &dir, &home, "bob", &["join", &a.ticket(), ".", "--headless"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("doc.md") && err.contains("another directory") && !err.contains("membership op"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("doc.md")).unwrap(), "bob's own\n");
    let out = tandem(&dir, &home, "bob", &["cat", "doc.md"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bob's own\n");
}

/// A member whose membership log and its copy are both damaged (the only place its
/// epoch keys are wrapped) joins again with a ticket: the sharer's log takes their
/// place, checked op by op, and nothing is lost.
#[test]
fn a_member_whose_group_log_is_lost_gets_it_back_from_a_peer() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "ada", "base\n", &[]);
    let mut b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    b.edit(0, "mine ");
    converge(&[&a, &b], &["mine base"]);
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let docs = b.dir.join(".tandem/docs");
    let dir = std::fs::read_dir(&docs).unwrap().next().unwrap().unwrap().path();
    for name in ["group.log", "group.copy"] {
        let mut bytes = std::fs::read(dir.join(name)).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x08;
        std::fs::write(dir.join(name), &bytes).unwrap();
    }
    let out = tandem(&b.dir, &b.home, "bob", &["blame", "doc.md"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the history cannot open here alone");
    drop(b);
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    a.edit(0, "after ");
    converge(&[&a, &b], &["after mine base"]);
    let out = tandem(&b.dir, &b.home, "bob", &["verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Ctrl-C (SIGINT) on a headless peer: it leaves, and the other side sees it go
/// within a second or two rather than when the connection times out (10-20 s).
#[test]
fn a_peer_that_stops_cleanly_leaves_the_session_at_once() {
    let lan = Lan::new(2);
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "ada", "x\n", &[]);
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    converge(&[&a, &b], &["x"]);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let log = a.dir.join("ada.log");
    while !std::fs::read_to_string(&log).unwrap().contains("disconnected") {
        assert!(started.elapsed() < Duration::from_secs(5), "ada did not see bob leave");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = b;
    let status = b.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_tickets_are_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    for bad in ["hello", "tandem1", "tandem1!!!!", &format!("tandem1{}", "a".repeat(5000))] {
        let out = tandem(root.path(), root.path(), "x", &["join", bad, ".", "--headless"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ticket"), "{bad:?}: {err}");
    }
}

#[test]
fn on_a_lan_a_ticket_without_addresses_finds_the_sharer_by_mdns() {
    let lan = Lan::new(2);
    if !lan.isolated() {
        eprintln!("skipping: this machine's own network may not carry mDNS between two processes");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let a = share_on(lan.host(0), root.path(), "a", "found by mdns\n", &[]);
    // The ticket names the document and the sharer, but no address at all.
    let mut ticket: tandem_net::Ticket = a.ticket().parse().unwrap();
    ticket.addrs.clear();
    let b = join_on(lan.host(1), root.path(), "b", &ticket.to_string(), &[]);
    assert_eq!(b.text(), "found by mdns\n");
    // And they stay in sync.
    a.edit(0, "LAN ");
    b.edit(0, "mdns ");
    converge(&[&a, &b], &["LAN", "mdns", "found by mdns"]);
}

#[test]
fn share_qr_prints_the_ticket_and_its_qr_code() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("doc.md"), "qr\n").unwrap();
    let mut child =
        tandem(root.path(), &root.path().join("home"), "q", &["share", "doc.md", "--headless", "--qr"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..12 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let ticket: Result<tandem_net::Ticket, _> = lines[0].trim().parse();
    assert!(ticket.is_ok(), "first line is the ticket: {:?}", lines[0]);
    // Then the code: half blocks, every row as wide as the first.
    let code = &lines[1..];
    assert!(code.iter().skip(1).all(|l| l.contains(['█', '▀', '▄'])), "{code:#?}");
    let width = code[0].trim_end_matches('\n').chars().count();
    assert!(
        width > 20 && code.iter().all(|l| l.trim_end_matches('\n').chars().count() == width),
        "{code:#?}"
    );
}

/// The snapshot blob of the history in `dir` (from its index) and its data file.
fn snapshot_blob(dir: &Path) -> (String, PathBuf) {
    let docs = std::fs::read_dir(dir.join(".tandem/docs")).unwrap().next().unwrap().unwrap().path();
    let index: Value = serde_json::from_slice(&std::fs::read(docs.join("index.json")).unwrap()).unwrap();
    let blob = index["snapshot"]["blob"].as_str().unwrap().to_owned();
    let data = dir.join(format!(".tandem/blobs/data/{blob}.data"));
    (blob, data)
}

#[test]
fn a_corrupt_blob_is_named_by_verify_and_repaired_from_a_peer() {
    let root = tempfile::tempdir().unwrap();
    // Large enough that the snapshot blob is a file of its own (not inline in the db).
    let content = noise(1000);
    let lan = Lan::new(2);
    let a = share_on(lan.host(0), root.path(), "ada", &content, &[]);
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    converge(&[&a, &b], &[]);
    // A fresh join adopts the sharer's blobs as they are.
    let (blob, data) = snapshot_blob(&b.dir);
    assert_eq!(blob, snapshot_blob(&a.dir).0);
    let verify =
        |p: &Peer| tandem(&p.dir, &p.home, &p.name, &["verify", "doc.md", "--json"]).output().unwrap();
    let out = verify(&b);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Bit rot on bob's disk, in place, in the blob and in the document's own copy
    // of it (one of them alone is put back from the other, see tests/cli.rs).
    let copy = || {
        let docs = b.dir.join(".tandem/docs");
        std::fs::read_dir(docs).unwrap().next().unwrap().unwrap().path().join("snapshot.copy")
    };
    let rot = |path: &Path, at: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x55;
        std::fs::write(path, &bytes).unwrap();
        bytes
    };
    let middle = std::fs::read(&data).unwrap().len() / 2;
    let bytes = rot(&data, middle);
    rot(&copy(), middle);
    let out = verify(&b);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let bad = &report["files"][0]["bad"][0];
    assert_eq!(bad["blob"], blob.as_str(), "{report}");
    assert!(bad["fault"].as_str().unwrap().contains("corrupt"), "{report}");
    assert_eq!(bad["repaired"], true, "{report}");
    assert_eq!(bad["from"], a.info["peer_id"], "{report}");
    assert_eq!(std::fs::read(&data).unwrap().len(), bytes.len());
    let out = verify(&b);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && report["files"][0]["bad"].as_array().unwrap().is_empty(), "{report}");

    // With no peer left, the damage is reported by name and the exit code says so.
    drop(a);
    rot(&data, 10);
    rot(&copy(), 10);
    let out = tandem(&b.dir, &b.home, &b.name, &["verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&blob) && stdout.contains("corrupt") && stdout.contains("NOT repaired"),
        "{stdout}"
    );
}

/// A join that must fail: its exit code and error.
fn failed_join(host: Option<&str>, root: &Path, name: &str, ticket: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let home = root.join(format!("{name}-home"));
    let args = ["join", ticket, ".", "--headless", "--json"];
    let mut child = tandem_on(host, &dir, &home, name, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name}: the join did not fail");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{name}: {err}");
    assert!(!dir.join("doc.md").exists(), "{name}: a refused join wrote the file");
    err
}

impl Peer {
    fn group(&self) -> Value {
        let out = tandem(&self.dir, &self.home, &self.name, &["group", "doc.md", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn peer_id(&self) -> String {
        let out = tandem(&self.dir, &self.home, &self.name, &["id", "--json"]).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["peer_id"].as_str().unwrap().to_owned()
    }

    fn role_in(&self, group: &Value) -> Option<String> {
        let me = self.peer_id();
        group["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["peer_id"] == me.as_str())
            .map(|m| m["role"].as_str().unwrap().to_owned())
    }
}

/// Wait until `p`'s text contains `needle`.
fn wait_for(p: &Peer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.text().contains(needle) {
        assert!(Instant::now() < deadline, "{}: no {needle:?} in {:?}", p.name, p.text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `share --role reader --uses 1`: the joiner is a reader: it reads what the writer
/// writes, its own changes are refused by the writer, and the ticket lets no second
/// device in.
#[test]
fn a_reader_reads_and_its_changes_are_refused_and_a_used_invite_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let lan = Lan::new(3);
    let a = share_on(lan.host(0), root.path(), "ada", "shared\n", &["--role", "reader", "--uses", "1"]);
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    assert_eq!(b.text(), "shared\n");
    assert_eq!(b.role_in(&a.group()).as_deref(), Some("reader"));
    assert_eq!(a.role_in(&b.group()).as_deref(), Some("owner"), "the reader has the same log");
    // A reader's edit is refused where it is made, saying why (the network
    // refusal of a reader's change, made anyway, is tested in crates/net/tests/wire.rs).
    let out = tandem(&b.dir, &b.home, "bob", &["edit", "doc.md", "--at", "0", "--insert", "READER "])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reader"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.text(), "shared\n", "the refused edit left nothing behind");
    a.edit(0, "WRITER ");
    wait_for(&b, "WRITER ");
    assert!(!a.text().contains("READER"));
    let err = failed_join(lan.host(2), root.path(), "cy", &a.ticket());
    assert!(err.contains("[invite_used_up]"), "the refusal's code: {err}");
}

#[test]
fn an_expired_invite_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let lan = Lan::new(3);
    let a = share_on(lan.host(0), root.path(), "ada", "shared\n", &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let err = failed_join(lan.host(1), root.path(), "bob", &a.ticket());
    assert!(err.contains("[invite_expired]"), "the refusal's code: {err}");
    let bad =
        tandem(root.path(), root.path(), "x", &["share", "doc.md", "--expires", "soon"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// An owner removes a member: the key rotates, the member is dropped and refused, it
/// gets nothing written after, and what it writes is refused; the others go on.
#[test]
fn a_removed_member_is_dropped_and_gets_nothing_new() {
    let root = tempfile::tempdir().unwrap();
    let lan = Lan::new(3);
    let a = share_on(lan.host(0), root.path(), "ada", "base\n", &[]);
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    let c = join_on(lan.host(2), root.path(), "cy", &a.ticket(), &[]);
    converge(&[&a, &b, &c], &["base"]);
    let bob = b.peer_id();
    let out =
        tandem(&a.dir, &a.home, "ada", &["group", "doc.md", "remove", &bob, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(group["epoch"], 1);
    assert_eq!(b.role_in(&group), None);
    // cy hears of it and is given the new key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.group()["epoch"] != 1 {
        assert!(Instant::now() < deadline, "the removal did not reach cy");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.edit(0, "after ");
    c.edit(0, "cy ");
    b.edit(0, "bob ");
    converge(&[&a, &c], &["after", "cy", "base"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!b.text().contains("after"), "the removed member got a new change: {}", b.text());
    assert!(!a.text().contains("bob"), "the removed member's change landed: {}", a.text());
    // Only the owner and admins change the group: cy (a writer) cannot.
    let out = tandem(&c.dir, &c.home, "cy", &["group", "doc.md", "remove", &a.peer_id()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tandem serve --relay`: a device the owner made a relay (it holds no key) keeps
/// what the owner writes while the other member is away, and hands it over when that
/// member comes back through the relay's ticket, the owner gone.
#[test]
fn a_relay_carries_edits_between_members_who_are_never_online_together() {
    let root = tempfile::tempdir().unwrap();
    let lan = Lan::new(3);
    let a = share_on(lan.host(0), root.path(), "ada", "base\n", &[]);
    let relay_dir = root.path().join("relay");
    std::fs::create_dir_all(&relay_dir).unwrap();
    let relay_home = root.path().join("relay-home");
    let id = tandem(&relay_dir, &relay_home, "relay", &["id", "--json"]).output().unwrap();
    let relay_id =
        serde_json::from_slice::<Value>(&id.stdout).unwrap()["peer_id"].as_str().unwrap().to_owned();
    let out =
        tandem(&a.dir, &a.home, "ada", &["group", "doc.md", "add", &relay_id, "relay"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ticket = a.ticket();
    let args = ["serve", "--relay", "--ticket", ticket.as_str(), "--json"];
    let relay = spawn_on(lan.host(2), &relay_dir, &relay_home, "relay", &args, relay_dir.join("none"));
    let mut b = join_on(lan.host(1), root.path(), "bob", &ticket, &[]);
    converge(&[&a, &b], &["base"]);
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    a.edit(0, "while bob was away ");
    // The relay keeps it (as ciphertext), then ada leaves.
    let kept =
        relay_dir.join(".tandem/relay").join(relay.info["doc_id"].as_str().unwrap()).join("envelopes.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&kept).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the relay kept nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!String::from_utf8_lossy(&std::fs::read(&kept).unwrap()).contains("while bob"));
    drop(a);
    drop(b);
    let b = join_on(lan.host(1), root.path(), "bob", relay.info["ticket"].as_str().unwrap(), &[]);
    wait_for(&b, "while bob was away base");
}

/// What `tandem peers --json` says on `p` about the peer `other`, once it says it.
fn peer_entry(p: &Peer, other: &Peer) -> Option<Value> {
    let out = tandem(&p.dir, &p.home, &p.name, &["peers", "doc.md", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let id = other.info["peer_id"].as_str()?;
    v["peers"].as_array()?.iter().find(|e| e["peer_id"] == id).cloned()
}

/// `tandem relay --json` on the NAT lab's public host, always as the same device
/// (`root/relay-home`, so a restart keeps its peer id), and its QUIC address there.
fn lab_relay(root: &Path) -> (Peer, String) {
    lab_relay_named(root, "relay", &[])
}

/// [`lab_relay`] as the device `root/NAME-home`, with `extra` arguments.
fn lab_relay_named(root: &Path, name: &str, extra: &[&str]) -> (Peer, String) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let home = root.join(format!("{name}-home"));
    let public = Some(common::natlab::PUBLIC);
    let mut args = vec!["relay", "--json"];
    args.extend_from_slice(extra);
    let relay = spawn_on(public, &dir, &home, name, &args, dir.join("none"));
    let addr = relay.info["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.contains("198.51.100.10") && a.contains("quic"))
        .expect("a QUIC address on the public host")
        .to_owned();
    (relay, addr)
}

/// Every pair of NAT kinds (10 pairs): the joiner reaches the sharer through a
/// `tandem relay` on the lab's public host, a live edit converges both ways, and the
/// pair ends on a direct connection exactly where the lab's own probe punches a
/// hole (`../shared/natlab/run_all.expected.txt`); elsewhere it stays on the relay.
/// `TANDEM_NAT_PAIRS=fullcone:symmetric,...` runs only those pairs.
#[test]
fn peers_behind_any_two_nats_meet_through_a_relay_and_punch_a_hole_where_the_nats_allow() {
    nat_matrix(0, 0);
}

/// The same with 20% of packets dropped at random by both routers, both ways: the
/// lab's probe still punches the same holes, and so does tandem.
#[test]
fn the_nat_matrix_holds_with_20_percent_packet_loss() {
    nat_matrix(20, 0);
}

/// The same with every packet held 50 ms by each router (the lab's `nfq_delay.py`;
/// this kernel has no netem): 100 ms round trips to the relay, 200 ms between the
/// peers, so every step of DCUtR's timing (it measures the round trip and sends its
/// SYNC half of it before both dial) is tried at an internet's pace.
#[test]
fn the_nat_matrix_holds_with_50_ms_delay_at_each_router() {
    nat_matrix(0, 50);
}

fn nat_matrix(loss: u32, delay_ms: u32) {
    use common::natlab::{KINDS, NatLab, PEER_A, PEER_B};
    let Some(lab) = NatLab::up() else { return };
    if delay_ms > 0 {
        lab.delay('A', delay_ms);
        lab.delay('B', delay_ms);
    }
    let root = tempfile::tempdir().unwrap();
    let (relay, relay_addr) = lab_relay(root.path());
    let only = std::env::var("TANDEM_NAT_PAIRS").ok();
    let mut results = Vec::new();
    for (i, a) in KINDS.iter().enumerate() {
        for b in &KINDS[i..] {
            if only.as_ref().is_some_and(|o| !o.split(',').any(|p| p == format!("{a}:{b}"))) {
                continue;
            }
            // The lab's probe: only symmetric against port-restricted or symmetric
            // finds no hole.
            let direct = !(*b == "symmetric" && (*a == "portrestricted" || *a == "symmetric"));
            lab.nat('A', a, loss);
            lab.nat('B', b, loss);
            let pair = root.path().join(format!("{a}-{b}"));
            let sharer = share_on(Some(PEER_A), &pair, "ada", "hello\n", &["--relay", &relay_addr]);
            let joiner = join_on(Some(PEER_B), &pair, "bob", &sharer.ticket(), &[]);
            sharer.edit(0, "from A. ");
            joiner.edit(0, "from B. ");
            converge(&[&sharer, &joiner], &["from A. ", "from B. "]);
            // A hole takes up to three DCUtR rounds; the relayed connection goes a
            // moment after the direct one comes up.
            let deadline = Instant::now() + Duration::from_secs(if direct { 30 } else { 15 });
            let link = loop {
                let seen = (peer_entry(&joiner, &sharer), peer_entry(&sharer, &joiner));
                let settled = |e: &Option<Value>| e.as_ref().is_some_and(|e| e["direct"] == direct);
                if (direct && settled(&seen.0) && settled(&seen.1)) || Instant::now() > deadline {
                    break seen;
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            let (b_sees, a_sees) = (link.0.unwrap_or_default(), link.1.unwrap_or_default());
            results.push(format!(
                "{a} x {b} at {loss}% loss, {delay_ms} ms delay: bob sees {} ({}, rtt {} ms), ada sees {}",
                b_sees["link"], b_sees["via"], b_sees["rtt_ms"], a_sees["link"]
            ));
            let log =
                |p: &Peer| std::fs::read_to_string(p.dir.join(format!("{}.log", p.name))).unwrap_or_default();
            assert_eq!(b_sees["direct"], direct, "{a} x {b}: {b_sees}\n{}\n{}", log(&joiner), log(&sharer));
            assert_eq!(a_sees["direct"], direct, "{a} x {b}: {a_sees}");
            if !direct {
                assert_eq!(b_sees["via"], relay.info["peer_id"], "{a} x {b}: relayed through the relay");
            }
            // The session goes on over whatever connection they ended on.
            sharer.edit(0, "later A. ");
            converge(&[&sharer, &joiner], &["later A. "]);
        }
    }
    eprintln!("{}", results.join("\n"));
}

/// The relay restarts mid-session (same identity, same port): a pair that punched a
/// hole never notices, a pair on the relay reconnects by itself, and no edit is lost.
/// Also under 20% packet loss on both routers, which the lab's probe still punches
/// through.
#[test]
fn a_relay_restart_and_packet_loss_lose_no_edit() {
    use common::natlab::{NatLab, PEER_A, PEER_B};
    let Some(lab) = NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut relay, relay_addr) = lab_relay(root.path());
    for (a, b, loss, direct) in [
        ("fullcone", "portrestricted", 0, true),
        ("symmetric", "symmetric", 0, false),
        ("portrestricted", "portrestricted", 20, true),
    ] {
        lab.nat('A', a, loss);
        lab.nat('B', b, loss);
        let pair = root.path().join(format!("{a}-{b}-{loss}"));
        let sharer = share_on(Some(PEER_A), &pair, "ada", "hello\n", &["--relay", &relay_addr]);
        let joiner = join_on(Some(PEER_B), &pair, "bob", &sharer.ticket(), &[]);
        joiner.edit(0, "one. ");
        converge(&[&sharer, &joiner], &["one. "]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while direct && !peer_entry(&joiner, &sharer).is_some_and(|e| e["direct"] == true) {
            assert!(Instant::now() < deadline, "{a} x {b} at {loss}% loss: no hole punched");
            std::thread::sleep(Duration::from_millis(250));
        }
        // Down, an edit on each side meanwhile, and up again.
        drop(relay);
        sharer.edit(0, "two. ");
        joiner.edit(0, "three. ");
        std::thread::sleep(Duration::from_secs(2));
        relay = lab_relay(root.path()).0;
        converge(&[&sharer, &joiner], &["one. ", "two. ", "three. "]);
        // `tandem peers` is brought up to date every second.
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = loop {
            match peer_entry(&joiner, &sharer) {
                Some(e) if e["direct"] == direct || Instant::now() > deadline => break e,
                None if Instant::now() > deadline => {
                    let out =
                        tandem(&joiner.dir, &joiner.home, "bob", &["peers", "doc.md", "--json"]).output();
                    panic!(
                        "{a} x {b}: no longer peers: {:?}",
                        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    );
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        };
        assert_eq!(e["direct"], direct, "{a} x {b}: {e}");
    }
}

/// A relay that does not answer: the share still starts (after the relay wait), says
/// on stderr which relay failed, and `tandem peers` shows it without a reservation
/// while a joiner on the LAN edits as usual.
#[test]
fn an_unreachable_relay_is_reported_and_sharing_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let lan = Lan::new(2);
    let dead = "/ip4/127.0.0.1/udp/9/quic-v1/p2p/12D3KooWBfHR4LkVebKSLwGhDC7KrXpAK8RrvwJuPxuBcq8DVkp9";
    let a = share_on(lan.host(0), root.path(), "ada", "hello\n", &["--relay", dead]);
    let log = std::fs::read_to_string(a.dir.join("ada.log")).unwrap();
    assert!(log.contains("relay") && log.contains("127.0.0.1/udp/9"), "{log}");
    let b = join_on(lan.host(1), root.path(), "bob", &a.ticket(), &[]);
    b.edit(0, "bob was here. ");
    converge(&[&a, &b], &["bob was here. "]);
    let out = tandem(&a.dir, &a.home, "ada", &["peers", "doc.md", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["relays"][0]["reserved"], false, "{v}");
    assert_eq!(v["relays"][0]["addr"], dead, "{v}");
    let human = tandem(&a.dir, &a.home, "ada", &["peers", "doc.md"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );
}

/// The directory of the js-libp2p relay (`tests/relay-js`), with its npm packages
/// installed (`scripts/test.sh` runs `npm ci` there); a missing install is a failure
/// as root (CI), a note elsewhere.
fn js_relay_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/relay-js");
    if dir.join("node_modules").is_dir() {
        return Some(dir);
    }
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } != 0,
        "{}/node_modules is missing: run `npm ci --prefix tests/relay-js`",
        dir.display()
    );
    eprintln!("skipping: {}/node_modules is missing (npm ci --prefix tests/relay-js)", dir.display());
    None
}

/// `node relay.mjs` (js-libp2p's relay and DHT server) on the lab's public host at
/// TCP `port`, with what it printed (`{"peer_id", "addrs"}`).
fn js_node(js: &Path, root: &Path, port: &str) -> (Child, Value) {
    let mut node = command_on(Some(common::natlab::PUBLIC), "node")
        .arg(js.join("relay.mjs"))
        .args(["198.51.100.10", port])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(root.join("relay-js.log")).unwrap()))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("the js relay printed {line:?}"));
    (node, info)
}

/// Only standard libp2p protocols: an independent implementation, js-libp2p's
/// circuit relay v2 server (from npm, TCP), on the lab's public host is the relay
/// two tandem peers behind NATs meet through; they edit through it both ways, and
/// where the NATs let a hole be punched (full cone on both sides) they move to a
/// direct connection; where none can be (symmetric on both sides) they stay on it.
#[test]
fn tandem_peers_meet_through_a_js_libp2p_relay() {
    use common::natlab::{NatLab, PEER_A, PEER_B};
    let Some(js) = js_relay_dir() else { return };
    let Some(lab) = NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut node, info) = js_node(&js, root.path(), "4002");
    let relay_addr = info["addrs"][0].as_str().unwrap().to_owned();
    for (kind, direct) in [("fullcone", true), ("symmetric", false)] {
        lab.nat('A', kind, 0);
        lab.nat('B', kind, 0);
        let pair = root.path().join(kind);
        let sharer = share_on(Some(PEER_A), &pair, "ada", "hello\n", &["--relay", &relay_addr]);
        assert!(
            !sharer.ticket().is_empty() && sharer.info["addrs"].to_string().contains("p2p-circuit"),
            "{}",
            sharer.info
        );
        let joiner = join_on(Some(PEER_B), &pair, "bob", &sharer.ticket(), &[]);
        sharer.edit(0, "from A. ");
        joiner.edit(0, "from B. ");
        converge(&[&sharer, &joiner], &["from A. ", "from B. "]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let seen = peer_entry(&joiner, &sharer);
            if seen.as_ref().is_some_and(|e| e["direct"] == true) || Instant::now() > deadline {
                break seen.unwrap_or_default();
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        eprintln!("{kind} x {kind} through the js relay: {seen}");
        assert_eq!(seen["direct"], direct, "{kind}: {seen}");
        if !direct {
            assert_eq!(seen["via"], info["peer_id"], "{seen}");
        }
    }
    let _ = node.kill();
    let _ = node.wait();
}

/// A session that must stay on the relay (symmetric NATs on both sides) outlives
/// libp2p's default circuit limits, 2 minutes and 128 KiB, which would have cut it:
/// `tandem relay` sizes them for editing. Takes a little over 2 minutes.
#[test]
fn a_relayed_session_outlives_the_default_circuit_limits() {
    use common::natlab::{NatLab, PEER_A, PEER_B};
    let Some(lab) = NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let (relay, relay_addr) = lab_relay(root.path());
    lab.nat('A', "symmetric", 0);
    lab.nat('B', "symmetric", 0);
    let sharer = share_on(Some(PEER_A), root.path(), "ada", "start\n", &["--relay", &relay_addr]);
    let joiner = join_on(Some(PEER_B), root.path(), "bob", &sharer.ticket(), &[]);
    converge(&[&sharer, &joiner], &["start"]);
    let first = peer_entry(&joiner, &sharer).unwrap();
    assert_eq!(first["direct"], false, "{first}");
    // More than 128 KiB through the circuit, in pieces, for more than 2 minutes.
    let started = Instant::now();
    let piece = noise(300);
    let mut sent = 0;
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(130) || sent < 160 << 10 {
        let marker = format!("[{round}]");
        sharer.edit(0, &format!("{marker}{piece}"));
        sent += piece.len();
        converge(&[&sharer, &joiner], &[&marker]);
        round += 1;
        std::thread::sleep(Duration::from_secs(5));
    }
    joiner.edit(0, "still here. ");
    converge(&[&sharer, &joiner], &["still here. "]);
    let last = peer_entry(&joiner, &sharer).unwrap();
    assert_eq!(last["via"], relay.info["peer_id"], "{last}");
    eprintln!("{sent} bytes over {:?} through one relay, {round} rounds", started.elapsed());
}

/// Coming back: both peers of a relayed session stop; the sharer starts again (on new
/// ports), and the joiner, reopening the document as a member with no ticket
/// (`tandem share` as a writer invites no one, it only reconnects), finds it again
/// through the relay it remembered, and their edits meet.
#[test]
fn members_find_each_other_again_after_both_restart_with_no_new_ticket() {
    use common::natlab::{NatLab, PEER_A, PEER_B};
    let Some(lab) = NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = lab_relay(root.path());
    lab.nat('A', "symmetric", 0);
    lab.nat('B', "symmetric", 0);
    let sharer = share_on(Some(PEER_A), root.path(), "ada", "hello\n", &["--relay", &relay_addr]);
    let joiner = join_on(Some(PEER_B), root.path(), "bob", &sharer.ticket(), &[]);
    joiner.edit(0, "before. ");
    converge(&[&sharer, &joiner], &["before. "]);
    // `tandem share doc.md` again, in the same directory with the same device.
    let reopen = |host: &str, name: &str, extra: &[&str]| {
        let mut args = vec!["share", "doc.md", "--headless", "--json"];
        args.extend_from_slice(extra);
        let (dir, home) = (root.path().join(name), root.path().join(format!("{name}-home")));
        spawn_on(Some(host), &dir, &home, name, &args, dir.join("doc.md"))
    };
    drop(joiner);
    drop(sharer);
    let sharer = reopen(PEER_A, "ada", &["--relay", &relay_addr]);
    sharer.edit(0, "ada again. ");
    let joiner = reopen(PEER_B, "bob", &[]);
    assert!(joiner.info["ticket"].as_str().is_some(), "{}", joiner.info);
    let log = std::fs::read_to_string(root.path().join("bob/bob.log")).unwrap();
    assert!(log.contains("invites no one"), "{log}");
    joiner.edit(0, "bob again. ");
    converge(&[&sharer, &joiner], &["before. ", "ada again. ", "bob again. "]);
}

/// Discovery beyond the ticket: the sharer moves (its old relay is gone, it
/// restarts on new ports behind another relay), so every address the joiner
/// remembers is stale; the joiner, reopening the document with no ticket, finds it
/// through the DHT (a `tandem relay` on the lab's public host named as the only
/// `[network] bootstrap` node in both devices' config.toml), by the group's
/// rendezvous key, and their edits meet.
#[test]
fn a_member_finds_a_sharer_that_moved_through_the_dht() {
    let Some(lab) = common::natlab::NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let [q, t] = relay_listen("4003");
    let (_dht, dht_addr) = lab_relay_named(root.path(), "dht", &["--listen", &q, "--listen", &t]);
    sharer_moves_and_is_found_through(&lab, root.path(), &dht_addr);
}

/// The same through an independent Kademlia implementation: js-libp2p's DHT server
/// (from npm) is the bootstrap node, and holds the providers' records.
#[test]
fn a_member_finds_a_sharer_that_moved_through_a_js_libp2p_dht() {
    let Some(js) = js_relay_dir() else { return };
    let Some(lab) = common::natlab::NatLab::up() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut node, info) = js_node(&js, root.path(), "4003");
    sharer_moves_and_is_found_through(&lab, root.path(), info["addrs"][0].as_str().unwrap());
    let _ = node.kill();
    let _ = node.wait();
}

/// `tandem relay`'s `--listen` addresses for `port` on every interface.
fn relay_listen(port: &str) -> [String; 2] {
    [format!("/ip4/0.0.0.0/udp/{port}/quic-v1"), format!("/ip4/0.0.0.0/tcp/{port}")]
}

fn sharer_moves_and_is_found_through(lab: &common::natlab::NatLab, root: &Path, dht_addr: &str) {
    use common::natlab::{PEER_A, PEER_B};
    let (old_relay, old_addr) = lab_relay(root);
    let [q, t] = relay_listen("4002");
    let (_new_relay, new_addr) = lab_relay_named(root, "relay2", &["--listen", &q, "--listen", &t]);
    for name in ["ada", "bob"] {
        let home = root.join(format!("{name}-home"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("config.toml"), format!("[network]\nbootstrap = [\"{dht_addr}\"]\n"))
            .unwrap();
    }
    lab.nat('A', "portrestricted", 0);
    lab.nat('B', "restricted", 0);
    let sharer = share_on(Some(PEER_A), root, "ada", "hello\n", &["--relay", &old_addr]);
    let joiner = join_on(Some(PEER_B), root, "bob", &sharer.ticket(), &[]);
    joiner.edit(0, "before. ");
    converge(&[&sharer, &joiner], &["before. "]);
    drop(joiner);
    drop(sharer);
    drop(old_relay);
    let reopen = |host: &str, name: &str, extra: &[&str]| {
        let mut args = vec!["share", "doc.md", "--headless", "--json"];
        args.extend_from_slice(extra);
        let (dir, home) = (root.join(name), root.join(format!("{name}-home")));
        spawn_on(Some(host), &dir, &home, name, &args, dir.join("doc.md"))
    };
    let sharer = reopen(PEER_A, "ada", &["--relay", &new_addr]);
    sharer.edit(0, "ada moved. ");
    let joiner = reopen(PEER_B, "bob", &[]);
    joiner.edit(0, "bob again. ");
    converge(&[&sharer, &joiner], &["before. ", "ada moved. ", "bob again. "]);
    let log = std::fs::read_to_string(root.join("bob/bob.log")).unwrap();
    assert!(log.contains("found a member through the DHT"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        match peer_entry(&joiner, &sharer) {
            Some(seen) => break seen,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            None => panic!("tandem peers never listed ada"),
        }
    };
    eprintln!("bob reached ada again through the DHT: {seen}");
    for p in [&sharer, &joiner] {
        let out = tandem(&p.dir, &p.home, &p.name, &["peers", "doc.md", "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["dht"]["providing"], true, "{}: {v}", p.name);
        assert!(v["dht"]["routing_table"].as_u64() >= Some(1), "{}: {v}", p.name);
        eprintln!("{}: dht {}, reachable {}", p.name, v["dht"], v["reachable"]);
        if p.name == "ada" {
            // Behind a port-restricted NAT, AutoNAT's dial-back (a port it never
            // sent to) is dropped: not publicly reachable, so a DHT client.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut v = v;
            while v["reachable"].is_null() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
                let out = tandem(&p.dir, &p.home, &p.name, &["peers", "doc.md", "--json"]).output().unwrap();
                v = serde_json::from_slice(&out.stdout).unwrap();
            }
            assert_eq!(v["reachable"]["public"], false, "{v}");
            assert_eq!(v["dht"]["mode"], "client", "{v}");
        }
        let out = tandem(&p.dir, &p.home, &p.name, &["peers", "doc.md"]).output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
