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
use tandem_auth::agekey::{AgeIdentity, AgeKeyError};
use tandem_auth::device::{DeviceKey, KeyError};
use tandem_doc::DocConfig;
use tandem_store::{Access, Keys, Request, StoreError, Workspace, access, home_dir, load_author, read_text};

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
    /// Print the document's text (now, or at a version `tandem log` lists).
    Cat {
        file: PathBuf,
        /// A version id from `tandem log` (a unique prefix of at least 6 digits will do).
        #[arg(long)]
        at: Option<String>,
    },
    /// Unified diff between two versions: FROM defaults to what the file last saved,
    /// TO to the current text.
    Diff { file: PathBuf, from: Option<String>, to: Option<String> },
    /// Bring back the text of VERSION as a new change (history is kept).
    Restore { file: PathBuf, version: String },
    /// Who last wrote into each line, and when.
    Blame {
        file: PathBuf,
        /// A list of {line, text, version, author, time_ms}.
        #[arg(long)]
        json: bool,
    },
    /// Export the document as txt, md, json or html, optionally encrypted with age.
    Export {
        file: PathBuf,
        #[arg(long, default_value = "txt", value_parser = ["txt", "md", "json", "html"])]
        format: String,
        /// Write to this file (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Export the text as it was at this version (see `tandem log`).
        #[arg(long)]
        at: Option<String>,
        /// Encrypt the export with age, always to this device's own age key (so you can
        /// read it: `age -d -i AGE_IDENTITY_PATH`, see `tandem id`) and to each --to.
        /// Binary age in the -o file; ASCII-armored age on stdout.
        #[arg(long)]
        encrypt: bool,
        /// With --encrypt: an age recipient (age1..., as `tandem id` prints) that can
        /// decrypt the export too. Repeat for more.
        #[arg(long, value_name = "RECIPIENT", requires = "encrypt", value_parser = recipient_arg)]
        to: Vec<String>,
        /// Instead of the text, write the document's history blobs as a CARv1 file
        /// (CIDv1, raw codec, BLAKE3 multihash) that any IPFS node can import.
        #[arg(long, value_name = "OUT.car", conflicts_with_all = ["at", "output", "encrypt"])]
        car: Option<PathBuf>,
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
    /// Check every file of FILE's history (of every document here when FILE is left
    /// out) and re-hash every blob; what is damaged is rebuilt from what is intact
    /// (the document's own copies, the blob store, a connected peer), and named.
    /// Exit code 1 while anything stays bad.
    Verify {
        file: Option<PathBuf>,
        /// `{"ok", "files": [{"file", "blobs", "bad": [{"blob", "what", "fault", "repaired"}],
        /// "rebuilt": [...], "error"?}], "store": null | "what was wrong with the blob database"}`.
        #[arg(long)]
        json: bool,
    },
    /// Delete history blobs that no document uses any more (old snapshots and the
    /// changes folded into them).
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Share FILE with other devices: print a ticket, then keep the document in sync.
    /// The ticket holds an invite: the device that joins with it becomes a member of
    /// the document's group with --role (only an admin or owner can share).
    Share {
        file: PathBuf,
        /// Also show the ticket as a QR code (printed; in the editor, over the text).
        #[arg(long)]
        qr: bool,
        /// What a device that joins with the ticket may do: read, or read and write.
        #[arg(long, default_value = "writer", value_parser = ["reader", "writer"])]
        role: String,
        /// The invite stops working after this long (30m, 12h, 7d; default: never).
        #[arg(long, value_name = "DURATION", value_parser = sharing::parse_duration)]
        expires: Option<u64>,
        /// The invite enrols at most this many devices (default: any number).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        uses: Option<u32>,
        #[command(flatten)]
        peer: PeerOpts,
    },
    /// Join a shared document from its ticket, saving it into DIR (default: here).
    Join {
        ticket: String,
        dir: Option<PathBuf>,
        #[command(flatten)]
        peer: PeerOpts,
    },
    /// Keep the folder DIR in sync: every text file under it is a document with its
    /// own history, and what any program does to them (edits, saves, creates,
    /// renames, moves, deletes) is recorded as it happens; a rename keeps the
    /// document's history, a delete keeps it too (`tandem log DIR/PATH`). Files listed
    /// in DIR/.tandemignore (gitignore syntax) are left out; binary, non-UTF-8,
    /// unreadable and oversized files and symbolic links are skipped and listed.
    Sync {
        dir: std::path::PathBuf,
        /// No terminal output: what is recorded goes to the log (`-v` shows it on stderr).
        #[arg(long)]
        headless: bool,
        /// Show the folder's documents, deleted files, skipped files and what is not
        /// yet recorded, then exit.
        #[arg(long)]
        status: bool,
        /// JSON: with --status one object `{"folder", "synced", "files": [{"path", "doc_id",
        /// "state"}], "deleted", "skipped": [{"path", "why"}], "unrecorded"}`; else one
        /// object per change recorded.
        #[arg(long)]
        json: bool,
    },
    /// Show or change who may read and write FILE: `tandem group FILE` lists the
    /// members; `add PEER_ID ROLE --age RECIPIENT`, `role PEER_ID ROLE`,
    /// `remove PEER_ID` and `rotate` change them (admins and owners only). Removing a
    /// member rotates the document's key: it reads nothing written after.
    Group {
        file: PathBuf,
        #[command(subcommand)]
        change: Option<GroupChange>,
        /// `{"file", "epoch", "members": [{"peer_id", "role", "age_recipient", "has_key"}], "ops", "needs_rotation"}`.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Keep a document online without a screen. With --relay (the only mode so far;
    /// `tandem share FILE --headless` serves a document you hold): store and forward
    /// the document of --ticket for its members, holding no key. An admin makes this
    /// device a relay first: `tandem group FILE add PEER_ID relay` (`tandem id` here
    /// prints PEER_ID). State goes in DIR/.tandem/relay/.
    Serve {
        dir: Option<PathBuf>,
        /// Relay (store and forward ciphertext; read nothing).
        #[arg(long)]
        relay: bool,
        /// A ticket of the document (any member's), to enrol at and stay connected to.
        #[arg(long, required = true)]
        ticket: String,
        #[command(flatten)]
        peer: NetOpts,
    },
    /// Run a public circuit relay (libp2p circuit relay v2) on a machine with a
    /// public address, a VPS or a home server with a port forward: peers behind NATs
    /// that name it (`--relay ADDR`, `[network] relays`) meet through it, and move to
    /// a direct connection when their NATs let a hole be punched. Its limits are
    /// sized for editing sessions (12 h, 1 GiB a circuit), rate limited per peer and
    /// IP. It holds no document and no key. Prints its addresses, ending in its peer
    /// id (kept in TANDEM_HOME, so they stay the same across restarts).
    Relay {
        /// Where to listen, as multiaddrs (repeatable; default:
        /// /ip4/0.0.0.0/udp/4001/quic-v1 and /ip4/0.0.0.0/tcp/4001).
        #[arg(long, value_name = "ADDR")]
        listen: Vec<String>,
        /// Print `{"peer_id", "addrs"}` as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Who this device is connected to for FILE (while `tandem share`, `join` or the
    /// editor runs on it): each peer with its name, role, how it is reached (a
    /// transport, or the relay it goes through), the last round trip, and whether it
    /// has everything we have; and each relay, with whether it holds a reservation.
    Peers {
        file: PathBuf,
        /// `{"file", "shared", "peers": [{"peer_id", "name", "role", "link", "direct",
        /// "via", "rtt_ms", "in_sync"}], "relays": [{"peer_id", "addr", "reserved", "connected"}],
        /// "reachable": {"public", "addr"} or null, "dht": {"nodes", "routing_table", "providing", "mode"}}`.
        #[arg(long)]
        json: bool,
    },
    /// Show this device's identity: its PeerId, its age recipient and its key files
    /// (created on first use; see keys/README.md).
    Id {
        /// `{"peer_id", "age_recipient", "age_identity_path", "device_key_path"}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GroupChange {
    /// Add a device (its peer id, as `tandem id` prints it there) with a role.
    Add {
        member: String,
        #[arg(value_parser = ["owner", "admin", "writer", "reader", "relay"])]
        role: String,
        /// The device's age recipient (age1..., `tandem id` prints it), which the
        /// document's key is wrapped to. Needed for every role but relay.
        #[arg(long = "age", value_name = "RECIPIENT", value_parser = recipient_arg)]
        age: Option<String>,
    },
    /// Change a member's role.
    Role {
        member: String,
        #[arg(value_parser = ["owner", "admin", "writer", "reader", "relay"])]
        role: String,
    },
    /// Remove a member (and rotate the key, so it reads nothing new).
    Remove { member: String },
    /// Give the members a new key (what removal does; use it if a device was lost).
    Rotate,
}

/// How a sharing peer runs.
#[derive(clap::Args)]
struct PeerOpts {
    #[command(flatten)]
    net: NetOpts,
    /// A circuit relay to keep a reservation at, so that peers behind other NATs
    /// reach this one through it (repeatable; also `[network] relays` in
    /// config.toml). Its address as `tandem relay` prints it: /ip4/.../p2p/12D3KooW...
    #[arg(long = "relay", value_name = "ADDR")]
    relays: Vec<String>,
    /// A DHT node to find the other members through when the ticket's addresses are
    /// stale (repeatable; also `[network] bootstrap` in config.toml; default: the
    /// public IPFS network's bootstrap nodes). A `tandem relay` is one.
    #[arg(long = "bootstrap", value_name = "ADDR")]
    bootstrap: Vec<String>,
}

#[derive(clap::Args)]
struct NetOpts {
    /// Run without a screen (servers, scripts, tests).
    #[arg(long)]
    headless: bool,
    /// Print this peer's ticket as one JSON line (`{"ticket", "peer_id", "doc_id", "file", "addrs"}`).
    #[arg(long)]
    json: bool,
    /// quic, webrtc or tcp (default: all three, QUIC first).
    #[arg(long, default_value = "any")]
    transport: String,
    /// Listen on this IPv4 address only (default: every interface).
    #[arg(long, default_value = "0.0.0.0")]
    listen: std::net::Ipv4Addr,
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

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Failure { code: 1, message: e.to_string() }
    }
}

impl From<AgeKeyError> for Failure {
    fn from(e: AgeKeyError) -> Self {
        Failure { code: 1, message: e.to_string() }
    }
}

/// A mistyped command (`tandem lgo notes.md`) is taken by clap for a file to open,
/// then refused for its extra argument: say which command was meant instead.
fn mistyped_command() -> Option<String> {
    use clap::CommandFactory;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let first = args.first()?;
    let cli = Cli::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    if names.contains(&first.as_str()) || Path::new(first).exists() {
        return None;
    }
    let close = names
        .iter()
        .copied()
        .filter(|n| edit_distance(n, first) <= 2)
        .min_by_key(|n| edit_distance(n, first))?;
    // `tandem notes` alone may be a new file; with more words it is a command.
    (args.len() > 1 || edit_distance(close, first) <= 1 && !first.contains(['.', '/'])).then(|| {
        format!("unknown command {first:?}: did you mean `tandem {close}`? (`tandem --help` lists them)")
    })
}

/// Levenshtein distance (command names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

fn main() -> ExitCode {
    if let Some(message) = mistyped_command() {
        eprintln!("tandem: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let result = match (cli.command, cli.file) {
        (Some(command), _) => {
            // With a screen, share and join run the editor: logs must not reach it.
            let screen = matches!(
                &command,
                Command::Share { peer: PeerOpts { net: NetOpts { headless: false, .. }, .. }, .. }
                    | Command::Join { peer: PeerOpts { net: NetOpts { headless: false, .. }, .. }, .. }
            );
            init_logging(cli.quiet, cli.verbose, screen);
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

/// tandem's own crates: what a headless peer's stderr shows by default.
const OWN_CRATES: [&str; 7] =
    ["tandem", "tandem_net", "tandem_store", "tandem_doc", "tandem_auth", "tandem_tui", "tandem_bench"];

/// Logs. By default stderr shows tandem's own messages only (warnings and errors;
/// `-v` adds information and every dependency's messages, `-q` keeps errors), and
/// everything at warning level, dependencies included, goes to
/// `$TANDEM_HOME/tandem.log`. In the editor nothing goes to stderr (it would tear
/// the screen): all of it goes to the log file. `RUST_LOG` replaces the stderr filter.
fn init_logging(quiet: bool, verbose: u8, editor: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};
    let own = |level: &str| {
        EnvFilter::new(OWN_CRATES.iter().map(|c| format!("{c}={level}")).collect::<Vec<_>>().join(","))
    };
    let stderr_filter = match EnvFilter::try_from_default_env() {
        Ok(from_env) => from_env,
        Err(_) => match (quiet, verbose) {
            (true, _) => own("error"),
            (_, 0) => own("warn"),
            (_, 1) => EnvFilter::new("info"),
            _ => EnvFilter::new("debug"),
        },
    };
    let home = home_dir();
    let file = std::fs::create_dir_all(&home)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(home.join("tandem.log")))
        .ok();
    // The editor's log file is what stderr would have shown, dependencies included.
    let file_filter = match std::env::var("RUST_LOG") {
        Ok(env) if editor => env,
        _ if editor && verbose > 0 => if verbose == 1 { "info" } else { "debug" }.to_owned(),
        _ => "warn".to_owned(),
    };
    let file_layer = file.map(|f| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .with_filter(EnvFilter::new(file_filter))
    });
    let stderr_layer = (!editor).then(|| {
        use std::io::IsTerminal;
        let colours = std::io::stderr().is_terminal();
        fmt::layer().with_ansi(colours).with_writer(std::io::stderr).with_filter(stderr_filter)
    });
    tracing_subscriber::registry().with(file_layer).with(stderr_layer).init();
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Cat { file, at } => {
            let file = abs(&file)?;
            // With no tandem running there, a current text cache answers at once
            // (a 20 MB history takes seconds and gigabytes to load).
            if at.is_none()
                && let Some((ws, keys)) = unowned(&file)?
                && let Some(text) = tandem_store::current_text(&ws, &file, &keys)
            {
                return out(&text);
            }
            let v = call(Request::Cat { file, at })?;
            out(v["text"].as_str().unwrap_or_default())
        }
        Command::Diff { file, from, to } => {
            let v = call(Request::Diff { file: abs(&file)?, from, to })?;
            out(v["diff"].as_str().unwrap_or_default())
        }
        Command::Blame { file, json } => {
            let v = call(Request::Blame { file: abs(&file)? })?;
            if json {
                return out_json(&v["lines"]);
            }
            let mut s = String::new();
            for l in v["lines"].as_array().into_iter().flatten() {
                s += &format!(
                    "{:<12}  {}  {:<12} {:>5} | {}\n",
                    l["version"].as_str().unwrap_or("-"),
                    l["time_ms"].as_i64().map_or_else(|| " ".repeat(16), format_time),
                    l["author"].as_str().unwrap_or("-"),
                    l["line"],
                    l["text"].as_str().unwrap_or_default(),
                );
            }
            out(&s)
        }
        Command::Restore { file, version } => {
            call(Request::Restore { file: abs(&file)?, version })?;
            Ok(())
        }
        Command::Export { file, car: Some(car), .. } => {
            let out = tandem_store::absolute(&car)?;
            let v = call(Request::ExportCar { file: abs(&file)?, out })?;
            out_json(&v)
        }
        Command::Export { file, format, output, at, encrypt, to, car: None } => {
            // The own key first: a broken age.key is found before any export work.
            let recipients = if encrypt { Some(own_and(to)?) } else { None };
            let v = call(Request::Export { file: abs(&file)?, format, at })?;
            let text = v["output"].as_str().unwrap_or_default();
            match (output, recipients) {
                (Some(path), None) => Ok(tandem_store::write_atomic(&path, text.as_bytes())?),
                (Some(path), Some(to)) => Ok(tandem_store::write_atomic(&path, &seal(text, &to, false)?)?),
                (None, None) => out(text),
                (None, Some(to)) => out(&String::from_utf8_lossy(&seal(text, &to, true)?)),
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
            let file = abs(&file)?;
            let v = match cached("log", &file)? {
                Some(v) => v,
                None => call(Request::Log { file })?,
            };
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
            let file = abs(&file)?;
            let v = match cached("info", &file)? {
                Some(v) => v,
                None => call(Request::Info { file })?,
            };
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
        Command::Verify { file, json } => {
            let req = match file {
                Some(file) => Request::Verify { file: abs(&file)?, all: false },
                None => Request::Verify { file: here()?, all: true },
            };
            let v = call(req)?;
            if json {
                out_json(&v)?;
            } else {
                out(&verify_report(&v))?;
            }
            if v["ok"].as_bool() == Some(true) {
                Ok(())
            } else {
                Err(Failure {
                    message: "some of the history is damaged and could not be repaired (see above)".into(),
                    code: 1,
                })
            }
        }
        Command::Gc { json } => {
            let v = call(Request::Gc { file: here()? })?;
            if json {
                return out_json(&v);
            }
            out(&format!(
                "removed {} blobs; the store went from {} to {} bytes\n",
                v["removed_blobs"], v["bytes_before"], v["bytes_after"]
            ))
        }
        Command::Group { file, change, json } => {
            let file = abs(&file)?;
            let req = match change {
                None => Request::Group { file },
                Some(c) => {
                    let (op, member, role, recipient) = match c {
                        GroupChange::Add { member, role, age } => ("add", Some(member), Some(role), age),
                        GroupChange::Role { member, role } => ("role", Some(member), Some(role), None),
                        GroupChange::Remove { member } => ("remove", Some(member), None, None),
                        GroupChange::Rotate => ("rotate", None, None, None),
                    };
                    Request::GroupChange { file, op: op.into(), member, role, recipient }
                }
            };
            let v = call(req)?;
            if json {
                return out_json(&v);
            }
            let mut s = format!("epoch {}\n", v["epoch"]);
            for m in v["members"].as_array().into_iter().flatten() {
                s += &format!(
                    "{:<8} {}{}\n",
                    m["role"].as_str().unwrap_or_default(),
                    m["peer_id"].as_str().unwrap_or("?"),
                    if m["has_key"].as_bool() == Some(false) && m["role"] != "relay" {
                        "  (no key yet)"
                    } else {
                        ""
                    }
                );
            }
            out(&s)
        }
        Command::Share { file, qr, peer, role, expires, uses } => {
            let mut net =
                sharing::Net::parse(&peer.net.transport, peer.net.listen, &peer.relays, &peer.bootstrap)?;
            net.invite = sharing::InviteOpts {
                role: if role == "reader" { tandem_net::Role::Reader } else { tandem_net::Role::Writer },
                expires_in_ms: expires,
                uses,
            };
            sharing::share(&abs(&file)?, peer.net.headless, peer.net.json, qr, net)
        }
        Command::Join { ticket, dir, peer } => {
            let net =
                sharing::Net::parse(&peer.net.transport, peer.net.listen, &peer.relays, &peer.bootstrap)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            sharing::join(&ticket, &dir, peer.net.headless, peer.net.json, net)
        }
        Command::Sync { dir, headless, status, json } => folder::sync(&dir, headless, status, json),
        Command::Id { json } => id(json),
        Command::Peers { file, json } => {
            let file = abs(&file)?;
            let v = call(Request::Peers { file })?;
            if json {
                return out_json(&v);
            }
            out(&peers_report(&v))
        }
        Command::Serve { dir, relay, ticket, peer } => {
            if !relay {
                return Err(Failure {
                    message: "tandem serve keeps documents online as a relay (--relay); to serve a document you hold, use `tandem share FILE --headless`".into(),
                    code: 2,
                });
            }
            // `--relay` is this command's own mode: circuit relays come from config.toml.
            let net = sharing::Net::parse(&peer.transport, peer.listen, &[], &[])?;
            sharing::relay(&ticket, &dir.unwrap_or_else(|| PathBuf::from(".")), peer.json, net)
        }
        Command::Relay { listen, json } => {
            let listen: Vec<tandem_net::libp2p::Multiaddr> = listen
                .iter()
                .map(|a| {
                    a.parse().map_err(|e| Failure {
                        message: format!(
                            "--listen {a}: not a multiaddr ({e}); e.g. /ip4/0.0.0.0/udp/4001/quic-v1"
                        ),
                        code: 2,
                    })
                })
                .collect::<Result<_, _>>()?;
            sharing::public_relay(&listen, json)
        }
    }
}

/// With no tandem running on `file`'s workspace, the `kind` answer (`info`, `log`)
/// kept from the last time, if the history and the file are unchanged since.
fn cached(kind: &str, file: &Path) -> Result<Option<Value>, Failure> {
    Ok(unowned(file)?.and_then(|(ws, keys)| tandem_store::cached_answer(&ws, file, kind, &keys)))
}

/// `file`'s workspace and this device's keys when no tandem process owns it (one
/// that does answers from the live document instead).
fn unowned(file: &Path) -> Result<Option<(Workspace, Keys)>, Failure> {
    let ws = Workspace::discover(file)?;
    if tandem_store::Client::connect(&ws).is_some() {
        return Ok(None);
    }
    Ok(Some((ws, Keys::load(&home_dir())?)))
}

/// `tandem id`: the device key and age identity of `$TANDEM_HOME`, made on first use.
fn id(json: bool) -> Result<(), Failure> {
    let home = home_dir();
    let device = DeviceKey::load_or_create(&home)?;
    let age = AgeIdentity::load_or_create(&home)?;
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let fields = [
        ("peer_id", device.keypair().public().to_peer_id().to_string()),
        ("age_recipient", age.recipient()),
        ("device_key_path", path(DeviceKey::path(&home))),
        ("age_identity_path", path(AgeIdentity::path(&home))),
    ];
    if json {
        let map = fields.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
        return out_json(&Value::Object(map));
    }
    out(&fields.iter().map(|(k, v)| format!("{k}: {v}\n")).collect::<String>())
}

/// `--to`'s parser: a malformed recipient is a usage error (exit 2) that names it,
/// found before anything is read or written.
fn recipient_arg(s: &str) -> Result<String, String> {
    tandem_auth::agekey::check_recipient(s).map(|()| s.to_owned())
}

/// This device's own age recipient followed by `to`: an encrypted export is always
/// readable by the one who made it.
fn own_and(to: Vec<String>) -> Result<Vec<String>, Failure> {
    let own = AgeIdentity::load_or_create(&home_dir())?.recipient();
    Ok(std::iter::once(own).chain(to).collect())
}

/// The export `text` encrypted with age to `to`, armored or binary.
fn seal(text: &str, to: &[String], armor: bool) -> Result<Vec<u8>, Failure> {
    tandem_auth::agekey::encrypt(text.as_bytes(), to, armor)
        .map_err(|e| Failure { message: format!("export --encrypt: {e}"), code: 1 })
}

mod editor;
mod folder;
mod sharing;

/// The file as an absolute path, checked to be a readable UTF-8 text file before
/// anything (including `.tandem/`) is touched. A deleted file whose history is
/// kept is fine too: its history answers, and a write brings the file back.
fn abs(file: &Path) -> Result<PathBuf, Failure> {
    match read_text(file) {
        Err(StoreError::NotFound(_)) if tandem_store::has_history(file) => {}
        other => {
            other?;
        }
    }
    Ok(tandem_store::absolute(file)?)
}

/// A path in the current directory's workspace, for commands about the whole
/// workspace (its parent is where the workspace is looked for).
fn here() -> Result<PathBuf, Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure { message: format!("current directory: {e}"), code: 1 })?;
    Ok(cwd.join(tandem_store::STORE_DIR))
}

/// `tandem peers`' report for people: one line per peer, one per relay.
fn peers_report(v: &Value) -> String {
    if v["shared"] != true {
        return format!(
            "{}: not shared by a running tandem here (`tandem share` or `tandem join` it)\n",
            v["file"].as_str().unwrap_or_default()
        );
    }
    let mut s = String::new();
    let peers = v["peers"].as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        s += "no peers connected\n";
    }
    for p in peers {
        let how = match p["via"].as_str() {
            Some(relay) => format!("relayed through {}", &relay[relay.len().saturating_sub(8)..]),
            None => format!("direct, {}", p["link"].as_str().unwrap_or("?")),
        };
        let rtt = p["rtt_ms"].as_f64().map_or(String::new(), |ms| format!(", {ms:.1} ms"));
        s += &format!(
            "{}  {}  {}  {how}{rtt}, {}\n",
            p["peer_id"].as_str().unwrap_or_default(),
            p["name"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            if p["in_sync"] == true { "in sync" } else { "syncing" }
        );
    }
    for r in v["relays"].as_array().into_iter().flatten() {
        s += &format!(
            "relay {}: {}\n",
            r["addr"].as_str().unwrap_or_default(),
            if r["reserved"] == true { "reservation held" } else { "unreachable (asking again)" }
        );
    }
    let dht = &v["dht"];
    if dht["nodes"].as_u64().unwrap_or(0) > 0 {
        s += &format!(
            "DHT: {} nodes configured, {} in the routing table; {}\n",
            dht["nodes"].as_u64().unwrap_or(0),
            dht["routing_table"].as_u64().unwrap_or(0),
            if dht["providing"] == true {
                "members find this device by the group's rendezvous key"
            } else {
                "not providing (no key for the current epoch)"
            }
        );
    }
    match (&v["reachable"]["public"], v["reachable"]["addr"].as_str()) {
        (Value::Bool(true), Some(addr)) => s += &format!("reachable from the internet at {addr} (AutoNAT)\n"),
        (Value::Bool(false), _) => s += "behind a NAT (AutoNAT): reached through relays and hole punching\n",
        _ => {}
    }
    s
}

/// `tandem verify`'s report for people: one line per document, one per bad blob.
fn verify_report(v: &Value) -> String {
    let mut s = String::new();
    if let Some(store) = v["store"].as_str() {
        s += &format!("{store}\n");
    }
    for f in v["files"].as_array().into_iter().flatten() {
        let file = f["file"].as_str().unwrap_or_default();
        let bad = f["bad"].as_array().cloned().unwrap_or_default();
        for rebuilt in f["rebuilt"].as_array().into_iter().flatten() {
            s += &format!("{file}: {}\n", rebuilt.as_str().unwrap_or_default());
        }
        if let Some(e) = f["error"].as_str() {
            s += &format!("{file}: NOT repaired: {e}\n");
            continue;
        }
        if bad.is_empty() {
            s += &format!("{file}: {} blobs, all verified; every file of its history checked\n", f["blobs"]);
        }
        for b in bad {
            let what = match b["what"].as_str() {
                Some("snapshot") => "snapshot".to_owned(),
                Some(change) => format!("change {}", &change[..12.min(change.len())]),
                None => "blob".to_owned(),
            };
            let outcome = match (b["repaired"].as_bool(), b["from"].as_str(), b["error"].as_str()) {
                (Some(true), Some(peer), _) => format!("repaired from peer {peer}"),
                (_, _, Some(e)) => format!("NOT repaired: {e}"),
                _ => "NOT repaired".to_owned(),
            };
            s += &format!(
                "{file}: blob {} ({what}) is {}; {outcome}\n",
                b["blob"].as_str().unwrap_or_default(),
                b["fault"].as_str().unwrap_or_default()
            );
        }
    }
    s
}

fn reach(file: &Path) -> Result<Access, Failure> {
    let ws = Workspace::discover(file)?;
    let author = load_author(&home_dir())?;
    let keys = Keys::load(&home_dir())?;
    Ok(access(ws, &author, &DocConfig::default(), &keys)?)
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
            let service = Arc::new(*service);
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
    let t = tandem_doc::time::utc(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}
