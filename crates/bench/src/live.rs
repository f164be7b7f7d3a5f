//! Live-editing benchmarks over real libp2p connections on 127.0.0.1: keystroke to
//! remote rope latency, fresh-join size and time, and many peers typing at once.
//!
//! Every peer is a real [`Service`] (store on disk) driven by a real [`Node`] on its
//! own swarm; they share one process (and one tokio runtime) only so that one clock
//! times both ends of a keystroke.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_net::codec::{SYNC_BYTES_BY_KIND, SYNC_BYTES_SENT};
use tandem_net::live::Wire;
use tandem_net::{Node, Transport, join, transport};
use tandem_store::{Service, Shared, Workspace, now_ms};

use crate::keystroke::stats;

/// One peer: its service (the document on disk) and where it listens.
pub struct Peer {
    pub service: Arc<Service>,
    pub file: PathBuf,
    pub id: PeerId,
    pub addrs: Vec<Multiaddr>,
}

impl Peer {
    fn len(&self) -> usize {
        self.service.with_open(&self.file, |s| Ok(s.doc.len_chars())).unwrap_or(0)
    }

    fn text(&self) -> String {
        self.service.with_open(&self.file, |s| Ok(s.doc.rope().to_string())).unwrap_or_default()
    }

    fn settled(&self) -> (String, Vec<tandem_doc::ChangeHash>, bool) {
        self.service
            .with_open(&self.file, |s| {
                Ok((
                    s.doc.rope().to_string(),
                    s.doc.heads().to_vec(),
                    s.doc.has_overlay() || s.doc.has_pending(),
                ))
            })
            .unwrap_or_default()
    }

    /// Type: `delete` chars at `pos` replaced by `insert`, as the editor does.
    fn splice(&self, pos: usize, delete: usize, insert: &str) {
        let _ = self.service.with_open(&self.file, |s| {
            let _ = s.doc.splice(pos, delete, insert, now_ms());
            Ok(())
        });
    }

    /// The editor's tick: commit after the idle window.
    fn tick(&self) {
        let _ = self.service.poll_commit(&self.file, now_ms());
    }
}

/// Peer `i`'s service over `dir`, with its own device keys (in `dir/home`): its
/// actor id, its PeerId and its membership are that key.
pub(crate) fn own(dir: &Path, i: usize) -> Result<Arc<Service>, String> {
    let ws = Workspace::at(dir).map_err(|e| e.to_string())?;
    let keys = tandem_store::Keys::load(&dir.join("home")).map_err(|e| e.to_string())?;
    let author = Author::new(format!("peer{i}"), ActorId::from(keys.public().to_vec()));
    Ok(Arc::new(
        Service::own(ws, author, DocConfig::default(), keys).map_err(|e| e.to_string())?.ok_or("locked")?,
    ))
}

pub(crate) fn doc_id(service: &Service, file: &Path) -> Result<[u8; 16], String> {
    let hex = service.with_open(file, |s| Ok(s.doc_id().to_owned())).map_err(|e| e.to_string())?;
    let bytes: Vec<u8> =
        (0..16).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    bytes.try_into().map_err(|_| format!("bad document id {hex}"))
}

pub(crate) async fn swarm(
    dir: &Path,
    service: &Service,
    transport: Transport,
) -> Result<(libp2p::Swarm<transport::Behaviour>, PeerId, Vec<Multiaddr>), String> {
    let key = service.keys().device.keypair().clone();
    let id = key.public().to_peer_id();
    let cert = transport::webrtc_certificate(&dir.join("home"))?;
    let (mut swarm, listeners) = transport::swarm(key, cert, transport, "127.0.0.1".parse().expect("ip"))?;
    let addrs = transport::listen_addrs(&mut swarm, listeners.len()).await?;
    Ok((swarm, id, addrs))
}

/// Share `file` (in `dir`, already holding its text or history) as peer 0.
pub async fn share(
    dir: &Path,
    file: &Path,
    transport: Transport,
    wire: Wire,
) -> Result<(Peer, [u8; 16]), String> {
    let service = own(dir, 0)?;
    service.open(file, false).map_err(|e| e.to_string())?;
    let doc = doc_id(&service, file)?;
    let (swarm, id, addrs) = swarm(dir, &service, transport).await?;
    tokio::spawn(
        Node::new(swarm, Arc::clone(&service), file.to_owned(), doc, transport).with_live_wire(wire).serve(),
    );
    Ok((Peer { service, file: file.to_owned(), id, addrs }, doc))
}

/// What a fresh join cost.
pub struct JoinCost {
    /// Bytes of the frame that carried the document.
    pub bytes: usize,
    /// From dialing to the whole history stored here, verified.
    pub fetch_ms: f64,
    /// Until the document is open (loaded, its file written).
    pub ms: f64,
}

/// Join `to`'s document as peer `i` into `dir`.
pub async fn join(
    dir: &Path,
    i: usize,
    to: &Peer,
    doc: [u8; 16],
    transport: Transport,
    wire: Wire,
) -> Result<(Peer, JoinCost), String> {
    let service = own(dir, i)?;
    let file = dir.join(to.file.file_name().ok_or("no file name")?);
    let (mut swarm, id, addrs) = swarm(dir, &service, transport).await?;
    // The sharer's invite, as `tandem share` puts it in the ticket.
    let invite = to
        .service
        .handle(&tandem_store::Request::Invite {
            file: to.file.clone(),
            role: "writer".into(),
            expires_ms: None,
            uses: None,
        })
        .map_err(|e| e.to_string())?;
    let token = |k: &str| hex16(invite[k].as_str().unwrap_or_default());
    let invite = Some((token("invite"), token("secret")));
    let started = Instant::now();
    let blobs_before = tandem_net::blobs::BLOB_BYTES_RECEIVED.load(std::sync::atomic::Ordering::Relaxed);
    let store = service.blob_store().map_err(|e| e.to_string())?;
    let recipient = service.keys().age.recipient();
    let (shared, group) =
        join::fetch(&mut swarm, to.id, &to.addrs, doc, transport, &store, invite, recipient).await?;
    let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
    let blob_bytes =
        tandem_net::blobs::BLOB_BYTES_RECEIVED.load(std::sync::atomic::Ordering::Relaxed) - blobs_before;
    // Frames: length, version, kind, document id, then the payload (blob fetches
    // counted as read off the wire).
    let bytes = 6
        + 16
        + match &shared {
            Shared::Snapshot(b) => b.len(),
            Shared::Changes(c) => c.iter().map(|c| 4 + c.raw_bytes().len()).sum::<usize>() + 4,
            Shared::Blobs(b) => 2 + b.len() * 41 + blob_bytes as usize,
        };
    let hex: String = doc.iter().map(|b| format!("{b:02x}")).collect();
    service.join(&file, &hex, shared, &group).map_err(|e| e.to_string())?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let mut node = Node::new(swarm, Arc::clone(&service), file.clone(), doc, transport).with_live_wire(wire);
    let connected = node.swarm.is_connected(&to.id);
    node.keep_connected(to.id, to.addrs.clone(), connected);
    tokio::spawn(node.serve());
    Ok((Peer { service, file, id, addrs }, JoinCost { bytes, fetch_ms, ms }))
}

/// 16 bytes from 32 hex digits (an invite's id or secret as the service prints it).
pub(crate) fn hex16(hex: &str) -> [u8; 16] {
    std::array::from_fn(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
}

fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    false
}

/// Keystroke to remote rope: peer A types `keys` keys at 10 keys/s (a 0.6 s pause
/// after every 20, where the idle window commits), one in ten a Backspace; each is
/// timed from the edit call on A until B's rope has it. Also reports the fresh join.
///
/// With `probe_editor`, a thread stands in for B's editor, asking for the document
/// every millisecond and timing the wait (it competes for the two cores, so the
/// latency figures are taken in runs without it).
#[allow(clippy::too_many_arguments)]
pub fn latency(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    file: &Path,
    label: &str,
    transport: Transport,
    wire: Wire,
    keys: usize,
    probe_editor: bool,
) -> Result<Vec<Value>, String> {
    let b_dir = dir.with_extension("b");
    std::fs::create_dir_all(&b_dir).map_err(|e| e.to_string())?;
    let (a, b, cost) = rt.block_on(async {
        let (a, doc) = share(dir, file, transport, wire).await?;
        let (b, cost) = join(&b_dir, 1, &a, doc, transport, wire).await?;
        Ok::<_, String>((a, b, cost))
    })?;
    let saved =
        a.service.with_open(&a.file, |s| Ok(s.doc.save(now_ms()).len())).map_err(|e| e.to_string())?;
    if !wait_until(Duration::from_secs(10), || a.text() == b.text()) {
        return Err("the peers did not agree after joining".into());
    }
    // Let connection set-up settle (hello, presence) before timing.
    std::thread::sleep(Duration::from_millis(500));
    // B's editor: how long it would wait for the document, every millisecond, while
    // A's keystrokes and changes land (the ~25 ms Automerge apply must not be in it).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (service, file, done) = (Arc::clone(&b.service), b.file.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut waits = Vec::new();
            while probe_editor && !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = service.with_open_live(&file, |s| Ok(s.doc.len_chars()));
                waits.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(1));
            }
            waits
        })
    };
    let mut lat = Vec::with_capacity(keys);
    let mut missed = 0;
    let mid = a.len() / 2;
    // The floor: libp2p ping's round trips on the same connection, meanwhile.
    transport::PING_RTTS_US.lock().unwrap_or_else(|e| e.into_inner()).clear();
    transport::RECORD_PINGS.store(true, Ordering::Relaxed);
    let mut typed = 0usize;
    let mut next = Instant::now();
    for k in 0..keys {
        let len = a.len();
        let backspace = k % 10 == 9 && typed > 0;
        let t0 = Instant::now();
        if backspace {
            a.splice(mid + typed - 1, 1, "");
            typed -= 1;
        } else {
            a.splice(mid + typed, 0, "x");
            typed += 1;
        }
        let want = if backspace { len - 1 } else { len + 1 };
        if wait_until(Duration::from_secs(5), || b.len() == want) {
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
        } else {
            missed += 1;
            if missed >= 3 {
                return Err(format!(
                    "{label} over {transport:?}: keystroke {k} never reached the other peer"
                ));
            }
            // Let the next keystroke start from agreement again.
            wait_until(Duration::from_secs(10), || a.text() == b.text());
        }
        next += Duration::from_millis(if k % 20 == 19 { 700 } else { 100 });
        while Instant::now() < next {
            a.tick();
            std::thread::sleep(Duration::from_millis(10).min(next.saturating_duration_since(Instant::now())));
        }
    }
    transport::RECORD_PINGS.store(false, Ordering::Relaxed);
    let rtts: Vec<f64> =
        std::mem::take(&mut *transport::PING_RTTS_US.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            // A's pings of B and B's of A: this run's one connection (the nodes of earlier
            // runs in this process are still up, and still pinging).
            .filter(|(peer, _)| *peer == a.id || *peer == b.id)
            .map(|(_, us)| us as f64 / 1e3)
            .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let p50_vs_rtt = match (median(&lat), median(&rtts)) {
        (Some(key), Some(rtt)) if rtt > 0.0 => json!((key / rtt * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    let agreed = wait_until(Duration::from_secs(10), || a.text() == b.text());
    done.store(true, Ordering::Relaxed);
    let waits = editor.join().map_err(|_| "editor thread panicked")?;
    Ok(vec![
        json!({
            "bench": "live-latency", "doc": label, "transport": format!("{transport:?}").to_lowercase(),
            "live_wire": wire.name(),
            "keys": keys, "latency_ms": stats(lat), "missed": missed, "agreed": agreed,
            "transport_rtt_ms": stats(rtts), "p50_vs_transport_rtt": p50_vs_rtt,
            "receiver_editor_wait_ms": if probe_editor { stats(waits) } else { Value::Null },
        }),
        json!({
            "bench": "fresh-join", "doc": label, "transport": format!("{transport:?}").to_lowercase(),
            "bytes": cost.bytes, "automerge_save_bytes": saved,
            "ratio": (cost.bytes as f64 / saved as f64 * 1000.0).round() / 1000.0,
            "ms": (cost.ms * 10.0).round() / 10.0,
        }),
    ])
}

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// `n` peers (one sharer, the others joined to it) each typing 10 keys/s for
/// `seconds`, each its own letter at a random place. Latency: from a key on one peer
/// until another peer's rope holds that many of its letters.
pub fn load(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    n: usize,
    seconds: u64,
    transport: Transport,
) -> Result<Value, String> {
    assert!((2..=26).contains(&n), "2 to 26 peers");
    let dir0 = root.join("p0");
    std::fs::create_dir_all(&dir0).map_err(|e| e.to_string())?;
    let file0 = dir0.join("load.txt");
    std::fs::write(&file0, "load test\n").map_err(|e| e.to_string())?;
    let peers = rt.block_on(async {
        let (first, doc) = share(&dir0, &file0, transport, Wire::default()).await?;
        let mut peers = vec![first];
        for i in 1..n {
            let dir = root.join(format!("p{i}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let (p, _) = join(&dir, i, &peers[0], doc, transport, Wire::default()).await?;
            peers.push(p);
        }
        Ok::<_, String>(peers)
    })?;
    let peers = Arc::new(peers);
    std::thread::sleep(Duration::from_secs(2));
    let letter = |i: usize| (b'a' + i as u8) as char;
    let keys_each = (seconds * 10) as usize;
    // When peer i typed its k-th key.
    let typed: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::new(); n]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (peers, typed, done) = (Arc::clone(&peers), Arc::clone(&typed), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen = vec![vec![0usize; n]; n];
            let mut lat = Vec::new();
            loop {
                // Read before polling: a last round runs after the typing is over.
                let last_round = done.load(Ordering::Relaxed);
                for (j, p) in peers.iter().enumerate() {
                    let text = p.text();
                    let now = Instant::now();
                    let mut counts = vec![0usize; n];
                    for c in text.chars() {
                        let i = (c as usize).wrapping_sub('a' as usize);
                        if i < n {
                            counts[i] += 1;
                        }
                    }
                    let typed = typed.lock().expect("typed");
                    for i in (0..n).filter(|i| *i != j) {
                        // "load test" holds some of the letters already.
                        let base = "load test\n".chars().filter(|c| *c == letter(i)).count();
                        let have = counts[i].saturating_sub(base).min(typed[i].len());
                        for k in seen[j][i]..have {
                            lat.push((now - typed[i][k]).as_secs_f64() * 1e3);
                        }
                        seen[j][i] = seen[j][i].max(have);
                    }
                }
                if last_round {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            lat
        })
    };
    let bytes0 = SYNC_BYTES_SENT.load(Ordering::Relaxed);
    let kinds0: Vec<u64> = SYNC_BYTES_BY_KIND.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // Key k of peer i is due at k * 100 ms + i * 100 / n ms.
    let mut schedule: Vec<(Duration, usize)> = (0..keys_each)
        .flat_map(|k| {
            (0..n)
                .map(move |i| (Duration::from_micros(k as u64 * 100_000 + i as u64 * 100_000 / n as u64), i))
        })
        .collect();
    schedule.sort();
    let mut last_tick = Instant::now();
    for (due, i) in schedule {
        while start.elapsed() < due {
            if last_tick.elapsed() >= Duration::from_millis(10) {
                peers.iter().for_each(Peer::tick);
                last_tick = Instant::now();
            }
            std::thread::sleep((due.saturating_sub(start.elapsed())).min(Duration::from_millis(2)));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let p = &peers[i];
        let pos = (seed % (p.len() as u64 + 1)) as usize;
        let mut typed = typed.lock().expect("typed");
        p.splice(pos, 0, &letter(i).to_string());
        typed[i].push(Instant::now());
    }
    let typing_s = start.elapsed().as_secs_f64();
    let last_key = Instant::now();
    // Converged: every peer shows the same text, at the same heads, with nothing pending.
    let converged = wait_until(Duration::from_secs(30), || {
        peers.iter().for_each(Peer::tick);
        let first = peers[0].settled();
        !first.2 && peers[1..].iter().all(|p| p.settled() == first)
    });
    let converge_ms = last_key.elapsed().as_secs_f64() * 1e3;
    let cpu = cpu_seconds() - cpu0;
    let bytes = SYNC_BYTES_SENT.load(Ordering::Relaxed) - bytes0;
    let names = ["?", "hello", "need", "changes", "ack", "error", "live", "snapshot"];
    let by_kind: serde_json::Map<String, Value> = SYNC_BYTES_BY_KIND
        .iter()
        .zip(kinds0)
        .zip(names)
        .map(|((b, before), name)| (name.to_owned(), json!(b.load(Ordering::Relaxed) - before)))
        .filter(|(_, v)| v.as_u64() != Some(0))
        .collect();
    done.store(true, Ordering::Relaxed);
    let lat = poller.join().map_err(|_| "poller panicked")?;
    let total_keys = keys_each * n;
    Ok(json!({
        "bench": "live-load", "peers": n, "transport": format!("{transport:?}").to_lowercase(),
        "seconds": seconds, "keys": total_keys,
        "latency_ms": stats(lat),
        "converged": converged,
        "converge_after_last_key_ms": (converge_ms * 10.0).round() / 10.0,
        "cpu_cores_all_peers": ((cpu / typing_s) * 1000.0).round() / 1000.0,
        "cpu_ms_per_peer_per_s": ((cpu / typing_s / n as f64) * 1e6).round() / 1e3,
        "sync_bytes_per_keystroke": (bytes as f64 / total_keys as f64).round(),
        "sync_bytes_per_keystroke_per_receiver": (bytes as f64 / (total_keys * (n - 1)) as f64).round(),
        "sync_bytes_by_kind": by_kind,
    }))
}
