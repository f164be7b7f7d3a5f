//! `tandem share` and `tandem join`: a libp2p node (crates/net) driving the workspace's
//! service, which keeps serving scripts on the control socket. Headless, the node is
//! the whole program; otherwise it runs on a thread beside the editor.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_doc::DocConfig;
use tandem_net::libp2p::{Multiaddr, PeerId};
use tandem_net::node::{Stop, stop_signal};
use tandem_net::{Node, join, transport};
use tandem_net::{Role, Ticket, Transport, device_key};
use tandem_store::{Keys, Request, Service, Workspace, home_dir, load_author};

use crate::Failure;

fn fail(message: impl Into<String>) -> Failure {
    Failure { message: message.into(), code: 1 }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { message: message.into(), code: 2 }
}

/// Become the owner of `ws` and serve scripts on its control socket.
pub fn own(ws: &Workspace) -> Result<Arc<Service>, Failure> {
    let author = load_author(&home_dir())?;
    let config = tandem_tui::Config::load(&home_dir().join("config.toml")).map_err(fail)?;
    let doc_config = DocConfig {
        commit_idle_ms: config.commit_idle_ms,
        commit_max_ms: config.commit_max_ms,
        ..DocConfig::default()
    };
    let keys = Keys::load(&home_dir())?;
    let service = Service::own(ws.clone(), author, doc_config, keys)?.ok_or_else(|| {
        fail(format!(
            "{}: this workspace is open in another tandem process; use that one, or stop it first",
            ws.root().display()
        ))
    })?;
    let service = Arc::new(service);
    if let Err(e) = service.serve() {
        tracing::warn!("scripts cannot reach this process: {e}");
    }
    Ok(service)
}

fn doc_bytes(hex: &str) -> Result<[u8; 16], String> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    bytes.try_into().map_err(|_| format!("document id {hex:?} is not 16 bytes of hex"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("starting the network: {e}"))
}

/// How a node listens (transport and address), the relays it keeps a reservation
/// at, and what the invite in a sharer's ticket allows.
#[derive(Clone)]
pub struct Net {
    pub transport: Transport,
    pub listen: Ipv4Addr,
    pub invite: InviteOpts,
    /// Circuit relays (`--relay`, then `[network] relays` in config.toml).
    pub relays: Vec<(PeerId, Multiaddr)>,
    /// DHT nodes to find members through (`--bootstrap`, else `[network] bootstrap`,
    /// else the public IPFS network's bootstrap nodes).
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
}

/// `tandem share --role --expires --uses`.
#[derive(Clone, Copy)]
pub struct InviteOpts {
    pub role: Role,
    /// Milliseconds the invite stays valid; none: until the sharer stops sharing
    /// the document for good (it is kept in the document's directory).
    pub expires_in_ms: Option<u64>,
    pub uses: Option<u32>,
}

impl Default for InviteOpts {
    /// A writer, any number of times, no expiry: what a plain `tandem share` gives.
    fn default() -> InviteOpts {
        InviteOpts { role: Role::Writer, expires_in_ms: None, uses: None }
    }
}

impl Net {
    /// `--transport`, `--listen`, `--relay` and `--bootstrap` as given, and the relays
    /// and bootstrap nodes of config.toml; a malformed address is a usage error that
    /// names it.
    pub fn parse(
        transport: &str,
        listen: Ipv4Addr,
        relays: &[String],
        bootstrap: &[String],
    ) -> Result<Net, Failure> {
        let path = home_dir().join("config.toml");
        let config = tandem_tui::Config::load(&path).map_err(usage)?;
        let mut net = Net {
            transport: transport.parse().map_err(usage)?,
            listen,
            invite: InviteOpts::default(),
            relays: Vec::new(),
            bootstrap: Vec::new(),
        };
        let dht = tandem_net::discovery::bootstrap_addr;
        for b in bootstrap {
            net.bootstrap.push(dht(b).map_err(|e| usage(format!("--bootstrap: {e}")))?);
        }
        match &config.bootstrap {
            Some(nodes) => {
                for b in nodes {
                    let node =
                        dht(b).map_err(|e| usage(format!("{}: [network] bootstrap: {e}", path.display())))?;
                    net.bootstrap.push(node);
                }
            }
            None if bootstrap.is_empty() => net.bootstrap = tandem_net::discovery::ipfs_bootstrap(),
            None => {}
        }
        for r in relays {
            net.add_relay(tandem_net::reach::relay_addr(r).map_err(|e| usage(format!("--relay: {e}")))?);
        }
        for r in &config.relays {
            let relay = tandem_net::reach::relay_addr(r)
                .map_err(|e| usage(format!("{}: [network] relays: {e}", path.display())))?;
            net.add_relay(relay);
        }
        Ok(net)
    }

    /// Every transport, every interface, the relays of config.toml (what sharing
    /// from inside the editor does); a bad config.toml is said and its relays left out.
    pub fn configured() -> Net {
        Net::parse("any", Ipv4Addr::UNSPECIFIED, &[], &[]).unwrap_or_else(|e| {
            tracing::warn!("{}", e.message);
            Net {
                transport: Transport::Any,
                listen: Ipv4Addr::UNSPECIFIED,
                invite: InviteOpts::default(),
                relays: Vec::new(),
                bootstrap: tandem_net::discovery::ipfs_bootstrap(),
            }
        })
    }

    fn add_relay(&mut self, relay: (PeerId, Multiaddr)) {
        if !self.relays.iter().any(|(p, a)| *p == relay.0 && *a == relay.1) {
            self.relays.push(relay);
        }
    }
}

/// Reservations at `relays`: said on stderr (the log) for each one that failed, so
/// sharing goes on over whatever else works.
async fn meet_relays(
    swarm: &mut transport::NodeSwarm,
    relays: &[(PeerId, Multiaddr)],
) -> tandem_net::reach::Reached {
    let reached = tandem_net::reach::meet_relays(swarm, relays, true).await;
    for why in &reached.failed {
        tracing::warn!("{why}; sharing goes on without it (and asks it again)");
    }
    reached
}

/// A duration as `--expires` takes it: a number and a unit, s, m, h or d (`90s`,
/// `30m`, `12h`, `7d`).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration: give a number and a unit, like 30m, 12h or 7d");
    let unit = s.chars().last().ok_or_else(bad)?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("{s:?}: an invite that expires at once is no invite"));
    }
    n.checked_mul(ms).ok_or_else(bad)
}

/// The relays the members this device met before are reached through (their
/// remembered circuit addresses), beside `configured`.
fn relays_with_known(
    service: &Service,
    file: &Path,
    configured: &[(PeerId, Multiaddr)],
) -> Vec<(PeerId, Multiaddr)> {
    let mut relays = configured.to_vec();
    let known = service.known_peers(file);
    add_relays_of(
        &mut relays,
        known.iter().flat_map(|(_, addrs)| addrs.iter().filter_map(|a| a.parse().ok())),
    );
    relays
}

/// Add the relays that the circuit addresses among `addrs` go through, one address
/// per relay and QUIC where there is one (its handshake recovers from loss much
/// faster than TCP's), unless `relays` has the relay already.
fn add_relays_of(relays: &mut Vec<(PeerId, Multiaddr)>, addrs: impl Iterator<Item = Multiaddr>) {
    let mut found: Vec<(PeerId, Multiaddr)> = addrs.filter_map(|a| tandem_net::reach::relay_of(&a)).collect();
    found.sort_by_key(|(_, a)| !a.to_string().contains("/quic-v1"));
    for (peer, addr) in found {
        if !relays.iter().any(|(p, _)| *p == peer) {
            relays.push((peer, addr));
        }
    }
}

/// Start sharing the open document `file`: returns the node (not yet running) and
/// its ticket. The node also reconnects to the members this device met before. An
/// admin's or owner's ticket holds an invite; another member's (and any ticket
/// when `invite` is false) only lets members reach this device.
pub async fn start_share(service: &Arc<Service>, file: &Path, net: Net) -> Result<(Node, Ticket), String> {
    start_sharing(service, file, net, true).await
}

/// Reopening a shared document (`tandem FILE`): the node, reconnecting to the
/// members met before, with no invite in its ticket.
pub async fn start_rejoin(service: &Arc<Service>, file: &Path, net: Net) -> Result<(Node, Ticket), String> {
    start_sharing(service, file, net, false).await
}

async fn start_sharing(
    service: &Arc<Service>,
    file: &Path,
    net: Net,
    invite: bool,
) -> Result<(Node, Ticket), String> {
    let doc_id = service.with_open(file, |s| Ok(s.doc_id().to_owned())).map_err(|e| e.to_string())?;
    let doc = doc_bytes(&doc_id)?;
    let key = device_key(&home_dir())?;
    let peer = key.public().to_peer_id();
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cert = transport::webrtc_certificate(&home_dir())?;
    let (mut swarm, listeners) = transport::swarm(key, cert, net.transport, net.listen)?;
    let mut addrs = transport::listen_addrs(&mut swarm, listeners.len()).await?;
    // Behind a NAT, peers elsewhere reach this one through its relays.
    let relays = relays_with_known(service, file, &net.relays);
    let reached = meet_relays(&mut swarm, &relays).await;
    addrs.extend(reached.circuits.iter().cloned());
    let opts = net.invite;
    let role = match opts.role {
        Role::Reader => "reader",
        Role::Writer => "writer",
    };
    let mine = service.keys().device.public();
    let admin = matches!(
        service.role_of(file, &mine),
        Ok(Some(tandem_auth::group::Role::Owner | tandem_auth::group::Role::Admin))
    );
    let invite = if invite && admin {
        let expires_ms = opts.expires_in_ms.map(|d| tandem_store::now_ms().saturating_add(d));
        let invite = service
            .handle(&Request::Invite {
                file: file.to_owned(),
                role: role.into(),
                expires_ms,
                uses: opts.uses,
            })
            .map_err(|e| e.to_string())?;
        let token =
            |k: &str| -> Result<[u8; 16], String> { doc_bytes(invite[k].as_str().unwrap_or_default()) };
        Some((token("invite")?, token("secret")?))
    } else {
        if invite {
            tracing::warn!(
                "this device is not an admin of {name}: its ticket lets members reach it, and invites no one (an admin's `tandem share` does)"
            );
        }
        None
    };
    let ticket = Ticket { name, doc, peer, addrs, role: opts.role, invite };
    let mut node = Node::new(swarm, Arc::clone(service), file.to_owned(), doc, net.transport);
    node.keep_known_peers();
    node.use_relays(relays, &reached);
    node.use_dht(net.bootstrap);
    Ok((node, ticket))
}

/// Join `ticket` into the workspace of `service`: fetch the document, store it as
/// `file`, and return the node (connected to the sharer, not yet running) and this
/// peer's own ticket, so others can chain on.
pub async fn start_join(
    service: &Arc<Service>,
    file: &Path,
    ticket: &Ticket,
    net: Net,
) -> Result<(Node, Ticket), String> {
    let key = device_key(&home_dir())?;
    let cert = transport::webrtc_certificate(&home_dir())?;
    let (mut swarm, listeners) = transport::swarm(key.clone(), cert, net.transport, net.listen)?;
    let mut addrs = transport::listen_addrs(&mut swarm, listeners.len()).await?;
    // The sharer's relays too: this device keeps a reservation there as well (other
    // members reach it through them), and meets them before dialing through one, so
    // that a hole can be punched (identify tells it its address first).
    let mut relays =
        if file.exists() { relays_with_known(service, file, &net.relays) } else { net.relays.clone() };
    add_relays_of(&mut relays, ticket.addrs.iter().cloned());
    let reached = meet_relays(&mut swarm, &relays).await;
    addrs.extend(reached.circuits.iter().cloned());
    // A member rejoining (through any member's or a relay's ticket) already holds
    // the document: it only reconnects, and the usual hellos catch it up.
    let held = if file.exists() {
        // Peek without creating a history for a plain file that happens to be here.
        let id = tandem_store::doc_id_of(service.workspace(), file);
        if id.as_deref().is_some_and(|id| id != hex(&ticket.doc)) || id.is_none() {
            return Err(format!(
                "{} already exists here and is another document; join into another directory: `tandem join TICKET DIR`",
                file.display()
            ));
        }
        // A history that does not open (its group log and the copy both damaged)
        // is joined again: the sharer's log takes their place.
        match service.with_doc(file, |_| Ok(())) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e}: joining again to repair it");
                false
            }
        }
    } else {
        false
    };
    if !held {
        fetch_and_join(service, &mut swarm, file, ticket, net.transport).await?;
    }
    let mut node = Node::new(swarm, Arc::clone(service), file.to_owned(), ticket.doc, net.transport);
    node.use_relays(relays, &reached);
    node.use_dht(net.bootstrap);
    node.keep_known_peers();
    let connected = node.swarm.is_connected(&ticket.peer);
    node.keep_connected(ticket.peer, ticket.addrs.clone(), connected);
    let own = Ticket {
        name: ticket.name.clone(),
        doc: ticket.doc,
        peer: key.public().to_peer_id(),
        addrs,
        role: ticket.role,
        // A member's own ticket lets other members reach it; only an admin's
        // invite lets a new device in.
        invite: None,
    };
    Ok((node, own))
}

/// A fresh join: enrolment, then the history's blobs, stored as `file`.
async fn fetch_and_join(
    service: &Arc<Service>,
    swarm: &mut transport::NodeSwarm,
    file: &Path,
    ticket: &Ticket,
    transport: Transport,
) -> Result<(), String> {
    let store = service.blob_store().map_err(|e| e.to_string())?;
    let recipient = service.keys().age.recipient();
    let (shared, group) = join::fetch(
        swarm,
        ticket.peer,
        &ticket.addrs,
        ticket.doc,
        transport,
        &store,
        ticket.invite,
        recipient,
    )
    .await
    .map_err(|e| format!("joining {}: {e}", ticket.name))?;
    service
        .join(file, &hex(&ticket.doc), shared, &group)
        .map_err(|e| format!("joining {}: {e}", ticket.name))?;
    Ok(())
}

fn ticket_json(ticket: &Ticket, file: &Path) -> serde_json::Value {
    serde_json::json!({
        "ticket": ticket.to_string(),
        "peer_id": ticket.peer.to_string(),
        "doc_id": hex(&ticket.doc),
        "file": file.display().to_string(),
        "addrs": ticket.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

/// `ticket` as a QR code drawn with half blocks (dark modules are filled), without
/// its quiet zone (draw it on white). Only the first address goes in (QUIC on the
/// LAN comes first; mDNS finds the rest there), and in upper case, which QR codes
/// store in their alphanumeric mode (5.5 bits a character instead of 8): the code
/// is 21 rows of half blocks (it was 33). Tickets are read in either case.
pub fn qr(ticket: &Ticket) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let short = Ticket { addrs: ticket.addrs.iter().take(1).cloned().collect(), ..ticket.clone() };
    // Low error correction: a screen is not a crumpled sticker, and it saves a version.
    let code = qrcode::QrCode::with_error_correction_level(
        short.to_string().to_uppercase().as_bytes(),
        qrcode::EcLevel::L,
    )
    .ok()?;
    Some(code.render::<Dense1x2>().quiet_zone(false).build())
}

fn print_ticket(ticket: &Ticket, file: &Path, json: bool, show_qr: bool) -> Result<(), Failure> {
    if json {
        return crate::out_json(&ticket_json(ticket, file));
    }
    crate::out(&format!("{ticket}\n"))?;
    if show_qr {
        let code = qr(ticket).ok_or_else(|| fail("the ticket is too long for a QR code"))?;
        // Black on white whatever the terminal's colors (with a white margin, the
        // quiet zone), so phones can scan it.
        use std::io::IsTerminal;
        let paint = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let width = code.lines().next().map_or(0, |l| l.chars().count());
        let blank = " ".repeat(width);
        let lines: String = std::iter::once(blank.as_str())
            .chain(code.lines())
            .chain(std::iter::once(blank.as_str()))
            .map(|l| if paint { format!("\x1b[30;47m  {l}  \x1b[0m\n") } else { format!("  {l}  \n") })
            .collect();
        crate::out(&lines)?;
    }
    Ok(())
}

/// `tandem share FILE`: print a ticket (and with `qr`, its QR code), then keep the
/// document in sync.
pub fn share(file: &Path, headless: bool, json: bool, qr: bool, net: Net) -> Result<(), Failure> {
    if !headless {
        return crate::editor::share(file, net, qr);
    }
    let ws = Workspace::discover(file)?;
    let service = own(&ws)?;
    service.open(file, false)?;
    runtime().map_err(fail)?.block_on(async {
        let mut stop = stop_signal();
        let (node, ticket) = unless_stopped(&mut stop, start_share(&service, file, net)).await?;
        print_ticket(&ticket, file, json, qr)?;
        node.serve_until(stop).await.map_err(fail)
    })
}

/// `start` (listening, joining), unless Ctrl-C or SIGTERM comes first: then the
/// process ends with 130, as a shell expects of an interrupted command.
async fn unless_stopped<T>(
    stop: &mut Stop,
    start: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, Failure> {
    tokio::select! {
        started = start => started.map_err(fail),
        _ = stop => Err(Failure { message: "stopped before the session started".into(), code: 130 }),
    }
}

/// What a join is about to create (DIR, its `.tandem/`), so that a join that fails
/// before the document arrives leaves the directory as it found it.
pub struct JoinLeftovers {
    dir: Option<PathBuf>,
    store: Option<PathBuf>,
    file: PathBuf,
}

impl JoinLeftovers {
    pub fn before(dir: &Path, ws: &Workspace, file: &Path) -> JoinLeftovers {
        JoinLeftovers {
            dir: (!dir.exists()).then(|| dir.to_owned()),
            store: (!ws.store_dir().exists()).then(|| ws.store_dir()),
            file: file.to_owned(),
        }
    }

    /// Remove what the join created, unless the document arrived.
    pub fn remove_unless_joined(self) {
        if self.file.exists() {
            return;
        }
        if let Some(store) = self.store {
            let _ = std::fs::remove_dir_all(store);
        }
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir(dir); // only if empty
        }
    }
}

/// `tandem join TICKET [DIR]`: fetch the document into DIR, then keep it in sync.
pub fn join(ticket: &str, dir: &Path, headless: bool, json: bool, net: Net) -> Result<(), Failure> {
    let ticket: Ticket = ticket.parse().map_err(|e: tandem_net::TicketError| usage(e.to_string()))?;
    let probe = Workspace::at(dir)?;
    let leftovers = JoinLeftovers::before(dir, &probe, &probe.root().join(&ticket.name));
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let ws = Workspace::at(dir)?;
    let file: PathBuf = ws.root().join(&ticket.name);
    if !headless {
        let result = crate::editor::join(ws, file, ticket, net);
        leftovers.remove_unless_joined();
        return result;
    }
    let service = own(&ws)?;
    // One runtime for both: the node's sockets belong to the one they were made in.
    let runtime = runtime().map_err(fail)?;
    let mut stop = {
        let _in_runtime = runtime.enter();
        stop_signal()
    };
    let joined = runtime.block_on(unless_stopped(&mut stop, start_join(&service, &file, &ticket, net)));
    let (node, own_ticket) = match joined {
        Ok(j) => j,
        Err(e) => {
            drop(service);
            leftovers.remove_unless_joined();
            return Err(e);
        }
    };
    runtime.block_on(async {
        print_ticket(&own_ticket, &file, json, false)?;
        node.serve_until(stop).await.map_err(fail)
    })
}

/// `tandem serve --relay --ticket TICKET [DIR]`: enrol as the document's relay at the
/// ticket's peer, print this relay's own ticket (members add it to reach the relay),
/// then store and forward for the members until stopped.
pub fn relay(ticket: &str, dir: &Path, json: bool, net: Net) -> Result<(), Failure> {
    let ticket: Ticket = ticket.parse().map_err(|e: tandem_net::TicketError| usage(e.to_string()))?;
    let state = dir.join(".tandem").join("relay").join(hex(&ticket.doc));
    let key = device_key(&home_dir()).map_err(fail)?;
    runtime().map_err(fail)?.block_on(async {
        let cert = transport::webrtc_certificate(&home_dir()).map_err(fail)?;
        let (mut swarm, listeners) =
            transport::swarm(key.clone(), cert, net.transport, net.listen).map_err(fail)?;
        let addrs = transport::listen_addrs(&mut swarm, listeners.len()).await.map_err(fail)?;
        let ops = tandem_net::relay::enrol(&mut swarm, ticket.peer, &ticket.addrs, ticket.doc)
            .await
            .map_err(|e| fail(format!("enrolling as the relay of {}: {e}", ticket.name)))?;
        let mut relay = tandem_net::relay::Relay::new(swarm, ticket.doc, &ops, &state).map_err(fail)?;
        relay.keep_connected(ticket.peer, ticket.addrs.clone());
        let own = Ticket { peer: key.public().to_peer_id(), addrs, invite: None, ..ticket.clone() };
        print_ticket(&own, &state, json, false)?;
        relay.run().await;
        Ok(())
    })
}

/// `tandem relay [--listen ADDR]... [--json]`: a public circuit relay, until stopped.
pub fn public_relay(listen: &[Multiaddr], json: bool) -> Result<(), Failure> {
    use tandem_net::public;
    let listen: Vec<Multiaddr> = if listen.is_empty() {
        public::DEFAULT_LISTEN.iter().map(|a| a.parse().expect("valid default")).collect()
    } else {
        listen.to_vec()
    };
    let key = device_key(&home_dir()).map_err(fail)?;
    runtime().map_err(fail)?.block_on(async {
        let mut swarm = public::swarm(key, &listen).map_err(fail)?;
        let addrs = public::start(&mut swarm, listen.len()).await.map_err(fail)?;
        let peer = swarm.local_peer_id().to_string();
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        if json {
            crate::out_json(&serde_json::json!({"peer_id": peer, "addrs": addrs}))?;
        } else {
            let mut s = format!("relay {peer}; peers name it with --relay ADDR or in config.toml, one of:\n");
            for a in &addrs {
                s += &format!("  {a}\n");
            }
            crate::out(&s)?;
        }
        public::run(swarm).await;
        Ok(())
    })
}
