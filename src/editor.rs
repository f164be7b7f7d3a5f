//! `tandem FILE`: the editor, owning the file's workspace for as long as it runs
//! so scripts reach the open document through the control socket.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tandem_doc::{Document, Selection};
use tandem_net::presence::{Pos, Presence, SharedBoard};
use tandem_store::{Service, StoreError, Workspace, first_screen, home_dir, now_ms, read_text};
use tandem_tui::editor::PeerView;
use tandem_tui::{Config, Host};

use crate::Failure;
use crate::sharing::{self, Net};

struct StoreHost {
    service: Arc<Service>,
    file: PathBuf,
    last_refresh: Instant,
    /// Set by the loading thread: the document is open (or why it is not).
    loaded: Arc<OnceLock<Result<(), String>>>,
    notices: Notices,
    /// Presence shared with the network node, when sharing.
    board: Option<SharedBoard>,
    name: String,
    popups: Popups,
    /// How to share when asked from inside the editor.
    net: Net,
}

/// Messages for the editor's message line from other threads (the network), each
/// with text to put on the clipboard.
type Notices = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Boxes to show over the text (title, text), such as a ticket's QR code.
type Popups = Arc<Mutex<Vec<(String, String)>>>;

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    list.lock().unwrap_or_else(|e| e.into_inner()).push(item);
}

/// What the work thread beside the editor gets.
struct Ctx {
    service: Arc<Service>,
    file: PathBuf,
    loaded: Arc<OnceLock<Result<(), String>>>,
    notices: Notices,
    board: SharedBoard,
    popups: Popups,
    /// Show the ticket as a QR code once it is known.
    qr: bool,
}

/// The QR code of `ticket` as a popup.
fn ticket_popup(ticket: &tandem_net::Ticket) -> (String, String) {
    // Blank lines above and below: the code's quiet zone, white like the box.
    let text = sharing::qr(ticket)
        .map_or_else(|| "(the ticket is too long for a QR code)".into(), |code| format!("\n{code}\n "));
    let title = if ticket.invite.is_some() {
        "ticket: scan it, or paste it from the clipboard; any key closes"
    } else {
        "this device's ticket, for members (no invite); any key closes"
    };
    (title.into(), text)
}

impl StoreHost {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut tandem_store::StoredDoc) -> Result<T, StoreError>,
    ) -> Result<T, String> {
        // Never waits for remote changes being applied (see Service::apply_remote).
        self.service.with_open_live(&self.file, f).map_err(|e| e.to_string())
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

    fn presence(&mut self, me: Selection, top: usize) -> Option<Vec<PeerView>> {
        let board = self.board.clone()?;
        let name = self.name.clone();
        self.with(|s| {
            let doc = &s.doc;
            let pos = |p: usize| Pos { index: p as u64, stable: doc.stable_position(p) };
            let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
            // The node fills in the origin and signs it.
            b.set_local(Presence {
                name,
                anchor: pos(me.anchor),
                head: pos(me.head),
                top: pos(top),
                ..Presence::default()
            });
            let len = doc.len_chars();
            let resolve = |p: &Pos| doc.resolve_position(&p.stable).unwrap_or((p.index as usize).min(len));
            let now = now_ms();
            Ok(b.peers()
                .into_iter()
                .map(|(id, p, since, link)| PeerView {
                    id,
                    name: p.name.clone(),
                    sel: Selection { anchor: resolve(&p.anchor), head: resolve(&p.head) },
                    top: Some(resolve(&p.top)),
                    last_active_ms: now.saturating_sub(since.as_millis() as u64),
                    link: link.to_owned(),
                })
                .collect())
        })
        .ok()
    }

    fn read_only(&mut self) -> Option<String> {
        self.service
            .with_open_live(&self.file, |s| Ok(s.secure().check_writer().err().map(|e| e.to_string())))
            .ok()
            .flatten()
    }

    fn network(&mut self) -> Option<String> {
        let board = self.board.as_ref()?;
        board.lock().unwrap_or_else(|e| e.into_inner()).network.clone()
    }

    fn share(&mut self) -> Result<String, String> {
        if self.board.is_some() {
            // Already shared (or joined): show this peer's ticket again.
            let saved = self.service.workspace().store_dir().join("ticket");
            let text = std::fs::read_to_string(&saved)
                .map_err(|_| "the network is still starting; try again in a moment".to_owned())?;
            let ticket: tandem_net::Ticket =
                text.parse().map_err(|e| format!("{}: {e}; share again to renew it", saved.display()))?;
            push(&self.popups, ticket_popup(&ticket));
            if ticket.invite.is_none() {
                // A joiner's own ticket: where members reach this device, no invite.
                push(&self.notices, (
                    "this ticket lets members reconnect through this device; it invites no one (the owner's `tandem share` does); copied".to_owned(),
                    Some(ticket.to_string()),
                ));
                return Ok("showing this device's ticket".into());
            }
            push(&self.notices, ("ticket copied to the clipboard".to_owned(), Some(ticket.to_string())));
            return Ok("showing the ticket".into());
        }
        let board = SharedBoard::default();
        self.board = Some(Arc::clone(&board));
        let ctx = Ctx {
            service: Arc::clone(&self.service),
            file: self.file.clone(),
            loaded: Arc::clone(&self.loaded),
            notices: Arc::clone(&self.notices),
            board,
            popups: Arc::clone(&self.popups),
            qr: true,
        };
        let net = self.net.clone();
        std::thread::spawn(move || {
            let (service, file) = (Arc::clone(&ctx.service), ctx.file.clone());
            serve_node(&ctx, async move { sharing::start_share(&service, &file, net).await });
        });
        Ok("sharing: starting the network…".into())
    }

    fn popup(&mut self) -> Option<(String, String)> {
        let mut popups = self.popups.lock().unwrap_or_else(|e| e.into_inner());
        (!popups.is_empty()).then(|| popups.remove(0))
    }

    fn notices(&mut self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn discard(&mut self) -> Result<(), String> {
        self.service.discard_unsaved(&self.file, now_ms()).map_err(|e| e.to_string())
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
            // Committed and handed to the network (the node leaves after sending it).
            if let Err(e) = service.commit_now(&file, now) {
                tracing::error!("closing {}: {e}", file.display());
            }
            if let Err(e) = service.with_open(&file, |s| s.write_text_cache(now)) {
                tracing::error!("closing {}: {e}", file.display());
            }
        })
    }
}

fn need_terminal(file: &Path) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return Ok(());
    }
    Err(Failure {
        message: format!(
            "{}: the editor needs a terminal; from scripts use `tandem cat|edit|write|export {}` or --headless",
            file.display(),
            file.display()
        ),
        code: 1,
    })
}

/// The text to show while the document loads: the store's first screen, else the file.
fn preview(ws: &Workspace, file: &Path) -> Option<ropey::Rope> {
    first_screen(ws, file).ok().flatten().or_else(|| read_text(file).ok()).map(|t| ropey::Rope::from_str(&t))
}

/// Run the editor on `file` while `work` runs on a thread beside it: `work` opens the
/// document (setting `loaded`) and may then keep going (the network node).
fn run(
    service: Arc<Service>,
    file: PathBuf,
    preview: Option<ropey::Rope>,
    sharing: Option<(Net, bool)>,
    work: impl FnOnce(Ctx) + Send + 'static,
) -> Result<(), Failure> {
    let config =
        Config::load(&home_dir().join("config.toml")).map_err(|e| Failure { message: e, code: 1 })?;
    let loaded = Arc::new(OnceLock::new());
    let notices: Notices = Arc::default();
    let board = sharing.as_ref().map(|_| SharedBoard::default());
    let popups: Popups = Arc::default();
    let (net, qr) = sharing.unwrap_or_else(|| (Net::configured(), false));
    let ctx = Ctx {
        service: Arc::clone(&service),
        file: file.clone(),
        loaded: Arc::clone(&loaded),
        notices: Arc::clone(&notices),
        board: board.clone().unwrap_or_default(),
        popups: Arc::clone(&popups),
        qr,
    };
    std::thread::spawn(move || work(ctx));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let author = service.author_name();
    let mut host = StoreHost {
        service,
        file,
        last_refresh: Instant::now(),
        loaded,
        notices,
        board,
        name: author,
        popups,
        net,
    };
    let result = tandem_tui::run(&mut host, config, &name, preview)
        .map_err(|e| Failure { message: e.to_string(), code: 1 });
    if let Some(board) = &host.board {
        leave(board);
    }
    result
}

/// Let the node leave the session (the others see this device go at once), waiting
/// at most a second for it.
fn leave(board: &SharedBoard) {
    let lock = || board.lock().unwrap_or_else(|e| e.into_inner());
    lock().quitting = true;
    let deadline = Instant::now() + Duration::from_secs(1);
    while lock().running && !lock().left && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The file checked, made absolute, and its workspace owned (serving scripts).
fn prepare(file: &Path) -> Result<(PathBuf, Workspace, Arc<Service>), Failure> {
    need_terminal(file)?;
    match read_text(file) {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let file = tandem_store::absolute(file)?;
    let ws = Workspace::discover(&file)?;
    let service = sharing::own(&ws)?;
    Ok((file, ws, service))
}

/// `tandem FILE`.
/// A document shared before (this device has met other members of it) comes back
/// online by itself: the node reconnects to whichever members are reachable.
pub fn open(file: &Path) -> Result<(), Failure> {
    let (file, ws, service) = prepare(file)?;
    let preview = preview(&ws, &file);
    if service.known_peers(&file).is_empty() {
        return run(service, file, preview, None, |ctx| {
            let _ = ctx.loaded.set(ctx.service.open(&ctx.file, true).map(drop).map_err(|e| e.to_string()));
        });
    }
    let net = Net::configured();
    run(service, file, preview, Some((net.clone(), false)), move |ctx| {
        if let Err(e) = ctx.service.open(&ctx.file, true) {
            let _ = ctx.loaded.set(Err(e.to_string()));
            return;
        }
        let _ = ctx.loaded.set(Ok(()));
        let (service, file) = (Arc::clone(&ctx.service), ctx.file.clone());
        let back = "shared before: reconnecting to its members (the status line shows who is here)";
        serve_node_saying(&ctx, async move { sharing::start_rejoin(&service, &file, net).await }, back);
    })
}

/// Keep the node running on this thread until the process ends.
fn serve_node(
    ctx: &Ctx,
    started: impl std::future::Future<Output = Result<(tandem_net::Node, tandem_net::Ticket), String>>,
) {
    serve_node_saying(
        ctx,
        started,
        "joined: editing together (Alt-S shows this device's address ticket, for members only)",
    )
}

/// [`serve_node`], saying `joined` once the node runs without an invite to hand out.
fn serve_node_saying(
    ctx: &Ctx,
    started: impl std::future::Future<Output = Result<(tandem_net::Node, tandem_net::Ticket), String>>,
    joined: &str,
) {
    let runtime = match sharing::runtime() {
        Ok(r) => r,
        Err(e) => {
            let _ = ctx.loaded.set(Err(e));
            return;
        }
    };
    runtime.block_on(async {
        match started.await {
            Ok((node, ticket)) => {
                let node = node.with_presence(Arc::clone(&ctx.board));
                let _ = ctx.loaded.set(Ok(()));
                let text = ticket.to_string();
                let saved = ctx.service.workspace().store_dir().join("ticket");
                // It may hold an invite (a secret): readable by this user only.
                let _ = tandem_store::write_private(&saved, format!("{text}\n").as_bytes());
                let msg = if ticket.invite.is_some() {
                    format!("sharing: ticket copied to the clipboard and saved in {}", saved.display())
                } else {
                    joined.to_owned()
                };
                if ctx.qr {
                    push(&ctx.popups, ticket_popup(&ticket));
                }
                // Only a ticket with an invite is worth the clipboard: it lets someone in.
                push(&ctx.notices, (msg, ticket.invite.is_some().then_some(text)));
                if let Err(e) = node.serve().await {
                    ctx.notices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((format!("network stopped: {e}"), None));
                }
            }
            Err(e) => {
                if ctx.loaded.set(Err(e.clone())).is_err() {
                    ctx.notices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((format!("not shared: {e}"), None));
                }
            }
        }
    });
}

/// `tandem share FILE` with a screen: the editor, and the node beside it.
pub fn share(file: &Path, net: Net, qr: bool) -> Result<(), Failure> {
    let (file, ws, service) = prepare(file)?;
    let preview = preview(&ws, &file);
    run(service, file, preview, Some((net.clone(), qr)), move |ctx| {
        if let Err(e) = ctx.service.open(&ctx.file, true) {
            let _ = ctx.loaded.set(Err(e.to_string()));
            return;
        }
        let _ = ctx.loaded.set(Ok(()));
        let (service, file) = (Arc::clone(&ctx.service), ctx.file.clone());
        serve_node(&ctx, async move { sharing::start_share(&service, &file, net).await });
    })
}

/// `tandem join TICKET [DIR]` with a screen: fetch, then edit, the node beside.
pub fn join(ws: Workspace, file: PathBuf, ticket: tandem_net::Ticket, net: Net) -> Result<(), Failure> {
    need_terminal(&file)?;
    let service = sharing::own(&ws)?;
    let preview = preview(&ws, &file);
    run(service, file, preview, Some((net.clone(), false)), move |ctx| {
        let (service, file) = (Arc::clone(&ctx.service), ctx.file.clone());
        serve_node(&ctx, async move { sharing::start_join(&service, &file, &ticket, net).await });
    })
}
