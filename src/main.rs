//! `tandem`: the command line. Parsing, output and exit codes only; the work is done
//! by `tandem-store` (workspaces, history, the owner's control socket) and
//! `tandem-doc` (the document core).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use tandem_doc::DocConfig;
use tandem_store::{Access, Request, StoreError, Workspace, access, home_dir, load_author, read_text};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A terminal collaborative editor that is its own peer-to-peer node"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage error.\nEnvironment: TANDEM_HOME (identity and config), TANDEM_NAME (author name), RUST_LOG."
)]
struct Cli {
    /// Less output (errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
    /// Open FILE in the editor (created on first save if missing).
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the document's text.
    Cat { file: PathBuf },
    /// Export the document as txt, md, json or html.
    Export {
        file: PathBuf,
        #[arg(long, default_value = "txt", value_parser = ["txt", "md", "json", "html"])]
        format: String,
        /// Write to this file (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Delete and/or insert text at a char position.
    Edit {
        file: PathBuf,
        /// Char position (0 = before the first char).
        #[arg(long)]
        at: usize,
        /// Chars to delete at the position.
        #[arg(long, default_value_t = 0)]
        delete: usize,
        /// Text to insert at the position.
        #[arg(long, default_value = "")]
        insert: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the content with stdin, recorded as a minimal edit.
    Write {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print every change to the document as it happens.
    Watch {
        file: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List the document's changes, oldest first.
    Log {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show heads, size and change count.
    Info {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Share FILE with other devices: print a ticket, then keep the document in sync.
    Share {
        file: PathBuf,
        /// Run without a screen (servers, scripts, tests). Required for now.
        #[arg(long)]
        headless: bool,
        /// Print the ticket as one JSON line (`{"ticket": ...}`).
        #[arg(long)]
        json: bool,
        /// quic or tcp (default: both, QUIC first).
        #[arg(long, default_value = "any")]
        transport: String,
        /// Listen on this IPv4 address only (default: every interface).
        #[arg(long, default_value = "0.0.0.0")]
        listen: std::net::Ipv4Addr,
    },
    /// Join a shared document from its ticket, saving it into DIR (default: here).
    Join {
        ticket: String,
        dir: Option<PathBuf>,
        /// Run without a screen. Required for now.
        #[arg(long)]
        headless: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "any")]
        transport: String,
        /// Listen on this IPv4 address only (default: every interface).
        #[arg(long, default_value = "0.0.0.0")]
        listen: std::net::Ipv4Addr,
    },
}

/// A failed command: its message and exit code.
struct Failure {
    message: String,
    code: u8,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure { code: if e.is_usage() { 2 } else { 1 }, message: e.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.command, cli.file) {
        (Some(command), _) => {
            init_logging(cli.quiet, cli.verbose, false);
            run(command)
        }
        (None, Some(file)) => {
            init_logging(cli.quiet, cli.verbose, true);
            editor::open(&file)
        }
        (None, None) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tandem: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Logs go to stderr, except in the editor, where they would tear the screen: there
/// they go to `$TANDEM_HOME/tandem.log`.
fn init_logging(quiet: bool, verbose: u8, editor: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if editor {
        let home = home_dir();
        let file = std::fs::create_dir_all(&home).and_then(|_| {
            std::fs::OpenOptions::new().create(true).append(true).open(home.join("tandem.log"))
        });
        match file {
            Ok(f) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).init(),
            Err(_) => builder.with_writer(std::io::sink).init(),
        }
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Cat { file } => {
            let v = call(Request::Cat { file: abs(&file)? })?;
            out(v["text"].as_str().unwrap_or_default())
        }
        Command::Export { file, format, output } => {
            let v = call(Request::Export { file: abs(&file)?, format })?;
            let text = v["output"].as_str().unwrap_or_default();
            match output {
                Some(path) => Ok(tandem_store::write_atomic(&path, text.as_bytes())?),
                None => out(text),
            }
        }
        Command::Edit { file, at, delete, insert, json } => {
            let v = call(Request::Edit { file: abs(&file)?, at, delete, insert })?;
            if json { out_json(&v) } else { Ok(()) }
        }
        Command::Write { file, json } => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| Failure {
                message: format!(
                    "stdin: not UTF-8 text ({e}); `tandem write` takes the new content on stdin"
                ),
                code: 1,
            })?;
            if text.contains('\0') {
                return Err(Failure {
                    message: "stdin: binary data (a NUL byte); tandem edits text only".into(),
                    code: 1,
                });
            }
            let v = call(Request::Write { file: abs(&file)?, text })?;
            if json { out_json(&v) } else { Ok(()) }
        }
        Command::Log { file, json } => {
            let v = call(Request::Log { file: abs(&file)? })?;
            if json {
                return out_json(&v["changes"]);
            }
            let mut s = String::new();
            for c in v["changes"].as_array().into_iter().flatten() {
                s += &format!(
                    "{}  {}  {:<12} {} ops\n",
                    &c["change"].as_str().unwrap_or_default()[..12],
                    format_time(c["time_ms"].as_i64().unwrap_or(0)),
                    c["author"].as_str().unwrap_or("(genesis)"),
                    c["ops"],
                );
            }
            out(&s)
        }
        Command::Info { file, json } => {
            let v = call(Request::Info { file: abs(&file)? })?;
            if json {
                return out_json(&v);
            }
            let mut s = String::new();
            for key in [
                "file",
                "doc_id",
                "chars",
                "bytes",
                "lines",
                "line_ending",
                "changes",
                "saved",
                "stored_bytes",
            ] {
                s += &format!("{key:<13}{}\n", plain(&v[key]));
            }
            s += &format!("{:<13}{}\n", "authors", join(&v["authors"]));
            s += &format!("{:<13}{}\n", "heads", join(&v["heads"]));
            out(&s)
        }
        Command::Watch { file, json } => watch(&abs(&file)?, json),
        Command::Share { file, headless, json, transport, listen } => {
            sharing::share(&abs(&file)?, headless, json, &transport, listen)
        }
        Command::Join { ticket, dir, headless, json, transport, listen } => sharing::join(
            &ticket,
            &dir.unwrap_or_else(|| PathBuf::from(".")),
            headless,
            json,
            &transport,
            listen,
        ),
    }
}

mod sharing {
    //! `tandem share` and `tandem join`: a libp2p node (crates/net) driving the
    //! workspace's service, which keeps serving scripts on the control socket.

    use std::path::Path;
    use std::sync::Arc;

    use tandem_doc::{Change, DocConfig};
    use tandem_net::node::{self, Node};
    use tandem_net::{Role, Ticket, Transport, device_key};
    use tandem_store::{Service, Workspace, home_dir, load_author};

    use super::Failure;

    fn fail(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 1 }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 2 }
    }

    fn own(ws: &Workspace) -> Result<Arc<Service>, Failure> {
        let author = load_author(&home_dir())?;
        let service = Service::own(ws.clone(), author, DocConfig::default())?.ok_or_else(|| {
            fail(format!(
                "{}: this workspace is open in another tandem process; share from that one, or stop it first",
                ws.root().display()
            ))
        })?;
        let service = Arc::new(service);
        if let Err(e) = service.serve() {
            tracing::warn!("scripts cannot reach this peer: {e}");
        }
        Ok(service)
    }

    fn doc_bytes(hex: &str) -> Result<[u8; 16], Failure> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect();
        bytes.try_into().map_err(|_| fail(format!("document id {hex:?} is not 16 bytes of hex")))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Local changes from the service, moved onto the node's async channel.
    fn feed(
        service: &Service,
        file: &Path,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Vec<Vec<u8>>>, Failure> {
        let rx = service.subscribe_changes(file)?;
        let (tx, out) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for batch in rx {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        Ok(out)
    }

    fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
        tokio::runtime::Runtime::new().map_err(|e| fail(format!("starting the network: {e}")))
    }

    fn parse_transport(t: &str) -> Result<Transport, Failure> {
        t.parse().map_err(usage)
    }

    pub fn share(
        file: &Path,
        headless: bool,
        json: bool,
        transport: &str,
        listen: std::net::Ipv4Addr,
    ) -> Result<(), Failure> {
        if !headless {
            return Err(usage(
                "sharing from the editor is not built yet: run `tandem share FILE --headless` beside it",
            ));
        }
        let transport = parse_transport(transport)?;
        let ws = Workspace::discover(file)?;
        let service = own(&ws)?;
        service.open(file, false)?;
        let doc_id = service.with_open(file, |s| Ok(s.doc_id().to_owned()))?;
        let doc = doc_bytes(&doc_id)?;
        let key = device_key(&home_dir()).map_err(fail)?;
        let peer = key.public().to_peer_id();
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        runtime()?.block_on(async {
            let (mut swarm, listeners) = node::swarm(key, transport, listen).map_err(fail)?;
            let addrs = node::listen_addrs(&mut swarm, listeners.len()).await;
            let ticket = Ticket { name, doc, peer, addrs: addrs.clone(), role: Role::Writer };
            if json {
                let line = serde_json::json!({
                    "ticket": ticket.to_string(),
                    "peer_id": peer.to_string(),
                    "doc_id": doc_id,
                    "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                });
                super::out_json(&line)?;
            } else {
                super::out(&format!("{ticket}\n"))?;
            }
            let local = feed(&service, file)?;
            Node::new(swarm, service, file.to_owned(), doc, transport).run(local).await;
            Ok(())
        })
    }

    pub fn join(
        ticket: &str,
        dir: &Path,
        headless: bool,
        json: bool,
        transport: &str,
        listen: std::net::Ipv4Addr,
    ) -> Result<(), Failure> {
        let ticket: Ticket = ticket.parse().map_err(|e: tandem_net::TicketError| usage(e.to_string()))?;
        if !headless {
            return Err(usage(
                "joining into the editor is not built yet: run `tandem join TICKET DIR --headless`",
            ));
        }
        let transport = parse_transport(transport)?;
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let ws = Workspace::at(dir)?;
        let file = ws.root().join(&ticket.name);
        let service = own(&ws)?;
        let key = device_key(&home_dir()).map_err(fail)?;
        let doc_id = hex(&ticket.doc);
        runtime()?.block_on(async {
            let (mut swarm, listeners) = node::swarm(key.clone(), transport, listen).map_err(fail)?;
            let addrs = node::listen_addrs(&mut swarm, listeners.len()).await;
            let envelopes = node::fetch(&mut swarm, ticket.peer, &ticket.addrs, ticket.doc, transport)
                .await
                .map_err(|e| fail(format!("joining {}: {e}", ticket.name)))?;
            let changes = envelopes
                .into_iter()
                .map(|e| {
                    Change::from_bytes(e).map_err(|err| fail(format!("the sharer sent a bad change: {err}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            service.join(&file, &doc_id, changes)?;
            if json {
                // A joiner is a peer like any other: its own ticket lets others chain on.
                let own = Ticket {
                    name: ticket.name.clone(),
                    doc: ticket.doc,
                    peer: key.public().to_peer_id(),
                    addrs,
                    role: ticket.role,
                };
                let line = serde_json::json!({
                    "file": file.display().to_string(),
                    "peer_id": key.public().to_peer_id().to_string(),
                    "doc_id": doc_id,
                    "ticket": own.to_string(),
                });
                super::out_json(&line)?;
            } else {
                super::out(&format!("joined: {}\n", file.display()))?;
            }
            let local = feed(&service, &file)?;
            let mut node = Node::new(swarm, service, file.clone(), ticket.doc, transport);
            let connected = node.swarm.is_connected(&ticket.peer);
            node.keep_connected(ticket.peer, ticket.addrs.clone(), connected);
            node.run(local).await;
            Ok(())
        })
    }
}

mod editor {
    //! `tandem FILE`: the editor, owning the file's workspace for as long as it runs
    //! so scripts reach the open document through the control socket.

    use std::path::{Path, PathBuf};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use tandem_doc::{DocConfig, Document};
    use tandem_store::{
        Service, StoreError, Workspace, first_screen, home_dir, load_author, now_ms, read_text,
    };
    use tandem_tui::{Config, Host};

    use super::Failure;

    struct StoreHost {
        service: Arc<Service>,
        file: PathBuf,
        last_refresh: Instant,
        /// Set by the loading thread: the document is open (or why it is not).
        loaded: Arc<OnceLock<Result<(), String>>>,
    }

    impl StoreHost {
        fn with<T>(
            &self,
            f: impl FnOnce(&mut tandem_store::StoredDoc) -> Result<T, StoreError>,
        ) -> Result<T, String> {
            self.service.with_open(&self.file, f).map_err(|e| e.to_string())
        }
    }

    impl Host for StoreHost {
        fn ready(&mut self) -> Result<bool, String> {
            match self.loaded.get() {
                None => Ok(false),
                Some(Ok(())) => Ok(true),
                Some(Err(e)) => Err(e.clone()),
            }
        }

        fn with_doc(&mut self, f: &mut dyn FnMut(&mut Document)) {
            let _ = self.with(|s| {
                f(&mut s.doc);
                Ok(())
            });
        }

        fn save(&mut self) -> Result<String, String> {
            self.service.save(&self.file, now_ms()).map_err(|e| e.to_string())?;
            self.with(|s| Ok(format!("saved {} ({} lines)", s.rel(), s.doc.rope().len_lines())))
        }

        fn tick(&mut self, now: u64) -> Result<(), String> {
            self.service.poll_commit(&self.file, now).map_err(|e| e.to_string())?;
            if self.last_refresh.elapsed() >= Duration::from_secs(1) {
                self.last_refresh = Instant::now();
                // Edits another program saved to the file are merged in live.
                self.service.refresh_file(&self.file).map_err(|e| e.to_string())?;
                self.with(|s| s.sync())?;
            }
            Ok(())
        }

        fn is_dirty(&mut self) -> bool {
            self.with(|s| Ok(s.is_dirty())).unwrap_or(true)
        }

        fn close(&mut self) {
            (self.closer())();
        }

        fn closer(&self) -> Box<dyn Fn() + Send> {
            let (service, file) = (Arc::clone(&self.service), self.file.clone());
            Box::new(move || {
                let now = now_ms();
                if let Err(e) = service.with_open(&file, |s| s.write_text_cache(now)) {
                    tracing::error!("closing {}: {e}", file.display());
                }
            })
        }
    }

    pub fn open(file: &Path) -> Result<(), Failure> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
            return Err(Failure {
                message: format!(
                    "{}: the editor needs a terminal; from scripts use `tandem cat|edit|write|export {}`",
                    file.display(),
                    file.display()
                ),
                code: 1,
            });
        }
        match read_text(file) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let file = tandem_store::absolute(file)?;
        let ws = Workspace::discover(&file)?;
        let author = load_author(&home_dir())?;
        let config =
            Config::load(&home_dir().join("config.toml")).map_err(|e| Failure { message: e, code: 1 })?;
        let service = Service::own(ws.clone(), author, DocConfig::default())?.ok_or_else(|| Failure {
            message: format!(
                "{}: its workspace {} is open in another tandem process; close it first (live sharing between editors arrives with `tandem share`)",
                file.display(),
                ws.root().display()
            ),
            code: 1,
        })?;
        let service = Arc::new(service);
        // The first screen comes from the file or the text cache at once; Automerge
        // loads on a thread meanwhile (seconds for a multi-megabyte history).
        let preview = first_screen(&ws, &file)
            .ok()
            .flatten()
            .or_else(|| read_text(&file).ok())
            .map(|t| ropey::Rope::from_str(&t));
        // Serve scripts at once: their requests wait for the document to load.
        if let Err(e) = service.serve() {
            tracing::warn!("scripts cannot reach this editor: {e}");
        }
        let loaded = Arc::new(OnceLock::new());
        {
            let (service, file, loaded) = (Arc::clone(&service), file.clone(), Arc::clone(&loaded));
            std::thread::spawn(move || {
                let _ = loaded.set(service.open(&file, true).map(drop).map_err(|e| e.to_string()));
            });
        }
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut host = StoreHost { service, file, last_refresh: Instant::now(), loaded };
        tandem_tui::run(&mut host, config, &name, preview)
            .map_err(|e| Failure { message: e.to_string(), code: 1 })
    }
}

/// The file as an absolute path, checked to be a readable UTF-8 text file before
/// anything (including `.tandem/`) is touched.
fn abs(file: &Path) -> Result<PathBuf, Failure> {
    read_text(file)?;
    Ok(tandem_store::absolute(file)?)
}

fn reach(file: &Path) -> Result<Access, Failure> {
    let ws = Workspace::discover(file)?;
    let author = load_author(&home_dir())?;
    Ok(access(ws, &author, &DocConfig::default())?)
}

fn call(req: Request) -> Result<Value, Failure> {
    Ok(match reach(req.file())? {
        Access::Remote(mut client) => client.call(&req)?,
        Access::Local(service) => service.handle(&req)?,
    })
}

fn watch(file: &Path, json: bool) -> Result<(), Failure> {
    let print = |event: &Value| -> Result<(), Failure> {
        if json {
            return out_json(event);
        }
        let (mut ins, mut del) = (0, 0);
        for e in event["edits"].as_array().into_iter().flatten() {
            ins += e["insert"].as_str().map_or(0, |s| s.chars().count());
            del += e["delete"].as_u64().unwrap_or(0);
        }
        out(&format!(
            "{}  {:<12} +{ins} -{del}  {}\n",
            format_time(event["time_ms"].as_i64().unwrap_or(0)),
            event["author"].as_str().unwrap_or("?"),
            &event["change"].as_str().unwrap_or("")[..12.min(event["change"].as_str().unwrap_or("").len())],
        ))
    };
    match reach(file)? {
        Access::Remote(mut client) => {
            client.call(&Request::Watch { file: file.to_owned() })?;
            loop {
                print(&client.next_line()?)?;
            }
        }
        Access::Local(service) => {
            // This process now owns the workspace: serve other commands, and look at
            // the file now and then so edits made by other tools show up too.
            let service = Arc::new(service);
            if let Err(e) = service.serve() {
                tracing::warn!("other tandem commands cannot reach this one: {e}");
            }
            let events = service.subscribe(file)?;
            loop {
                match events.recv_timeout(Duration::from_millis(500)) {
                    Ok(event) => print(&event)?,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        service.with_doc(file, |_| Ok(()))?;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
        }
    }
}

fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`tandem cat f | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Failure { message: format!("stdout: {e}"), code: 1 }),
    }
}

fn out_json(v: &Value) -> Result<(), Failure> {
    out(&format!("{}\n", serde_json::to_string(v).expect("json values serialize")))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(plain).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// `2026-11-24 06:32:27Z` from milliseconds since the Unix epoch (UTC).
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
