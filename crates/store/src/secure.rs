//! A document's security: its group (membership log, `group.log` in the document's
//! directory), the epoch keys this device holds, and the sealing and opening of
//! every change and snapshot that goes into the blob store or comes from a peer.
//!
//! What is on disk is ciphertext: change blobs, snapshot blobs and the change log
//! all hold envelopes ([`tandem_auth::envelope`]). The plain file the user edits is,
//! of course, plain; so is the text cache, which is what that file would show.
//!
//! Two ways in, two levels of checking:
//! - [`Secure::open_stored`]: this device's own history. The signature and the
//!   encryption are checked (a changed byte is caught twice: by the blob's hash and
//!   here), not whether the signer may still write: a change accepted before its
//!   author was removed stays history.
//! - [`Secure::open_remote`]: anything a peer sends. Also [`envelope::authorize`]:
//!   the signer was a writer at the membership heads it cites, the epoch is the one
//!   at those heads, and the signer is a writer still.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_auth::agekey::AgeIdentity;
use tandem_auth::device::{DeviceKey, PublicKey};
use tandem_auth::envelope::{self, EnvelopeError, Kind};
use tandem_auth::epoch::EpochKey;
use tandem_auth::group::{Action, Group, GroupError, Members, Op, Role};
use tandem_doc::Change;

use crate::error::{InviteError, Result, StoreError};
use crate::fsutil::write_atomic;

const GROUP_LOG: &str = "group.log";
/// A second copy of the membership log, written with it: the log holds the only
/// wrapped copy of this device's epoch keys, so one flipped byte in it must not cost
/// the history. Both are checked the same way (every op is signed).
const GROUP_COPY: &str = "group.copy";
/// Largest `group.log` read (100,000 ops of a few hundred bytes is far below).
const MAX_GROUP_LOG: u64 = 256 << 20;

/// This device's keys: the device key (signs, and is the actor id) and the age
/// identity (opens epoch keys wrapped to this device).
#[derive(Clone)]
pub struct Keys {
    pub device: DeviceKey,
    pub age: Arc<AgeIdentity>,
}

impl Keys {
    /// Load the keys of `home` (`device.key`, `age.key`), creating them on first use.
    pub fn load(home: &Path) -> Result<Keys> {
        let device = DeviceKey::load_or_create(home).map_err(|e| match e {
            tandem_auth::device::KeyError::Bad { path, detail } => StoreError::corrupt(&path, detail),
            tandem_auth::device::KeyError::Io { path, source } => StoreError::Io { path, source },
        })?;
        let age = AgeIdentity::load_or_create(home).map_err(|e| match e {
            tandem_auth::agekey::AgeKeyError::Bad { path, detail } => StoreError::corrupt(&path, detail),
            tandem_auth::agekey::AgeKeyError::Io { path, source } => StoreError::Io { path, source },
        })?;
        Ok(Keys { device, age: Arc::new(age) })
    }

    pub fn public(&self) -> PublicKey {
        self.device.public()
    }
}

/// What an envelope held.
pub enum Plain {
    Change(Box<Change>),
    /// A document in Automerge's compact form.
    Snapshot(Vec<u8>),
}

/// The document id (32 hex digits) as 16 bytes.
pub fn doc_bytes(doc_id: &str) -> Option<[u8; 16]> {
    if doc_id.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(doc_id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn denied(e: impl std::fmt::Display) -> StoreError {
    StoreError::Denied(e.to_string())
}

/// A peer's envelope refused here, `what` naming it: [`StoreError::GroupBehind`]
/// when only this device's membership log is behind, [`StoreError::Malformed`] when
/// it is damaged, else denied.
pub(crate) fn refused(what: &str, e: EnvelopeError) -> StoreError {
    let why = format!("{what} refused: {e}");
    match e {
        EnvelopeError::UnknownHeads => StoreError::GroupBehind(why),
        EnvelopeError::Truncated(_)
        | EnvelopeError::TooLarge(_)
        | EnvelopeError::Version(_)
        | EnvelopeError::UnknownKind(_)
        | EnvelopeError::TooManyHeads(_)
        | EnvelopeError::NotAChange(_) => StoreError::Malformed(why),
        _ => denied(why),
    }
}

pub struct Secure {
    doc: [u8; 16],
    keys: Keys,
    group: Group,
    /// Epoch keys this device holds, by epoch.
    epoch_keys: BTreeMap<u64, EpochKey>,
    members: Members,
    path: PathBuf,
    /// (signer, epoch, cited heads) already authorized under the current log: a
    /// typist's keystrokes and changes cite the same heads over and over, and each
    /// authorization folds the log twice. Cleared whenever the log changes.
    authorized:
        std::sync::Mutex<std::collections::HashSet<(PublicKey, u64, Vec<tandem_auth::group::OpHash>)>>,
}

impl Secure {
    /// A new group for `doc_id`, owned by this device, written to `dir`.
    pub fn create(dir: &Path, doc_id: &str, keys: &Keys) -> Result<Secure> {
        let path = dir.join(GROUP_LOG);
        let doc = doc_bytes(doc_id).ok_or_else(|| StoreError::corrupt(&path, "bad document id"))?;
        let (group, _, key) = Group::create_keyed(&keys.device, &keys.age.recipient(), doc)
            .map_err(|e| StoreError::corrupt(&path, e))?;
        let secure = Secure::with_group(doc, keys, group, path);
        debug_assert_eq!(secure.epoch_keys.get(&0), Some(&key));
        secure.write()?;
        Ok(secure)
    }

    /// The group of `doc_id` in `dir`; a document from before groups existed gets a
    /// new one, owned by this device.
    pub fn load(dir: &Path, doc_id: &str, keys: &Keys) -> Result<Secure> {
        let path = dir.join(GROUP_LOG);
        if !path.exists() && !dir.join(GROUP_COPY).exists() {
            return Secure::create(dir, doc_id, keys);
        }
        let doc = doc_bytes(doc_id).ok_or_else(|| StoreError::corrupt(&path, "bad document id"))?;
        let group = match read_group(&path, doc) {
            Ok(group) => group,
            Err(e) => match read_group(&dir.join(GROUP_COPY), doc) {
                Ok(group) => {
                    tracing::warn!("{e}: rebuilt from its copy, {GROUP_COPY}");
                    group
                }
                Err(_) => return Err(e),
            },
        };
        let secure = Secure::with_group(doc, keys, group, path);
        // A missing, damaged or older copy (or log) is written again.
        let bytes = join_ops(&secure.ops());
        for name in [GROUP_LOG, GROUP_COPY] {
            if fs::read(dir.join(name)).ok().as_ref() != Some(&bytes) {
                write_atomic(&dir.join(name), &bytes)?;
            }
        }
        Ok(secure)
    }

    /// True when the membership log in `dir` (or its copy) says this device may
    /// read the document: cheap (the log is small), for answering without loading.
    pub fn may_read(dir: &Path, keys: &Keys) -> bool {
        let Some(doc) = Secure::document_of(dir) else { return false };
        [GROUP_LOG, GROUP_COPY].iter().any(|name| {
            read_group(&dir.join(name), doc)
                .is_ok_and(|g| g.members().role(&keys.public()).is_some_and(|r| r >= Role::Reader))
        })
    }

    /// Write a peer's membership log (`ops`) for `doc_id` into `dir`, in place of a
    /// damaged one: only when it builds, every op checked.
    pub fn restore(dir: &Path, doc_id: &str, ops: &[Vec<u8>]) -> Result<()> {
        let path = dir.join(GROUP_LOG);
        let doc = doc_bytes(doc_id).ok_or_else(|| StoreError::corrupt(&path, "bad document id"))?;
        let group = build(doc, ops).map_err(denied)?;
        let bytes = join_ops(&group.ops_in_order().into_iter().map(Op::encode).collect::<Vec<_>>());
        write_atomic(&path, &bytes)?;
        write_atomic(&dir.join(GROUP_COPY), &bytes)
    }

    /// The document a history's membership log is for (its genesis op names it),
    /// from the log or its copy, whichever is intact: what rebuilds a damaged
    /// `state.json`.
    pub fn document_of(dir: &Path) -> Option<[u8; 16]> {
        [GROUP_LOG, GROUP_COPY].iter().find_map(|name| {
            let bytes = fs::read(dir.join(name)).ok()?;
            let ops = split_ops(&bytes)?;
            let doc = ops.iter().find_map(|op| match Op::decode(op).ok()?.action {
                tandem_auth::group::Action::Genesis { doc } => Some(doc),
                _ => None,
            })?;
            build(doc, &ops).ok().map(|_| doc)
        })
    }

    /// The group a peer sent (its ops, encoded), for a document this device joins.
    /// This device must be a member that reads, holding the current epoch's key.
    pub fn join(dir: &Path, doc_id: &str, keys: &Keys, ops: &[Vec<u8>]) -> Result<Secure> {
        let path = dir.join(GROUP_LOG);
        let doc =
            doc_bytes(doc_id).ok_or_else(|| StoreError::BadRequest(format!("bad document id {doc_id:?}")))?;
        let group = build(doc, ops).map_err(denied)?;
        let secure = Secure::with_group(doc, keys, group, path);
        secure.readable()?;
        Ok(secure)
    }

    fn with_group(doc: [u8; 16], keys: &Keys, group: Group, path: PathBuf) -> Secure {
        let mut s = Secure {
            doc,
            keys: keys.clone(),
            group,
            epoch_keys: BTreeMap::new(),
            members: Members::default(),
            path,
            authorized: Default::default(),
        };
        s.refresh();
        s
    }

    /// [`envelope::authorize`], remembered for the current log.
    fn authorize(&self, header: &envelope::Header) -> std::result::Result<(), EnvelopeError> {
        let key = (header.signer, header.epoch, header.heads.clone());
        let mut done = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&key) {
            return Ok(());
        }
        envelope::authorize(&self.group, header)?;
        if done.len() >= 4096 {
            done.clear();
        }
        done.insert(key);
        Ok(())
    }

    fn refresh(&mut self) {
        self.authorized.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        self.members = self.group.members();
        self.epoch_keys = self.group.keys_for(&self.keys.public(), &self.keys.age);
    }

    /// Write `group.log` (atomically: it is small, and rewritten whole).
    pub fn write(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let bytes = join_ops(&self.ops());
        write_atomic(&self.path, &bytes)?;
        write_atomic(&self.path.with_file_name(GROUP_COPY), &bytes)
    }

    /// Every op of the group, parents first (what a peer is sent).
    pub fn ops(&self) -> Vec<Vec<u8>> {
        self.group.ops_in_order().into_iter().map(Op::encode).collect()
    }

    pub fn group(&self) -> &Group {
        &self.group
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub fn doc(&self) -> [u8; 16] {
        self.doc
    }

    /// The group's rendezvous secret for peer discovery: derived from the current
    /// epoch's key, so only current members can compute it (a removed member cannot
    /// find the others), and the document id is never part of it. `None` when this
    /// device holds no key for the current epoch.
    pub fn rendezvous(&self) -> Option<[u8; 32]> {
        self.epoch_keys.get(&self.members.epoch).map(|k| k.derive("tandem 2026-12 rendezvous v1"))
    }

    /// The role of `key` now.
    pub fn role(&self, key: &PublicKey) -> Option<Role> {
        self.members.role(key)
    }

    /// Ok when this device can read the current epoch (it holds its key).
    pub fn readable(&self) -> Result<()> {
        let me = self.keys.public();
        match self.members.role(&me) {
            None => Err(denied("this device is not a member of the document's group")),
            Some(Role::Relay) => Err(denied("this device is a relay of the document: it holds no key")),
            Some(_) if !self.epoch_keys.contains_key(&self.members.epoch) => Err(denied(format!(
                "this device holds no key for the document's current epoch ({}); an admin must add it again",
                self.members.epoch
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Add ops a peer sent; returns how many were new. Ops that do not decode are an
    /// error (the peer is lying or broken); ops whose author may not do what they
    /// say are kept, void, as everywhere.
    pub fn add_ops(&mut self, ops: &[Vec<u8>]) -> Result<usize> {
        let before = self.group.len();
        for bytes in ops {
            let op = Op::decode(bytes).map_err(denied)?;
            self.group.add(op).map_err(denied)?;
        }
        let added = self.group.len() - before;
        if added > 0 {
            self.refresh();
            self.write()?;
        }
        Ok(added)
    }

    /// Make and add an op by this device: give `member` `role` (with its age
    /// `recipient` when it reads), remove it, or rotate the epoch key.
    pub fn act(&mut self, action: Action, recipient: Option<&str>) -> Result<Op> {
        let me = self.keys.public();
        let mine = self.members.role(&me);
        let op = match &action {
            Action::SetRole { member, role } => {
                let current = self.epoch_keys.get(&self.members.epoch);
                self.group
                    .set_role_op(&self.keys.device, *member, *role, recipient, current)
                    .map_err(denied)?
            }
            Action::Remove { .. } | Action::Rotate => {
                self.group.new_epoch_op(&self.keys.device, action.clone()).map_err(denied)?.0
            }
            Action::Genesis { .. } => return Err(denied("a group has one genesis")),
        };
        // Refuse here what every peer would void, so the user hears why.
        let mut trial = self.group.clone();
        trial.add(op.clone()).map_err(denied)?;
        if trial.members() == self.members && !matches!(action, Action::Rotate) {
            let role = mine.map_or("not a member", Role::name);
            return Err(denied(format!("this device ({role}) may not do that, or it changes nothing")));
        }
        self.group = trial;
        self.refresh();
        self.write()?;
        Ok(op)
    }

    /// Rotate when the current epoch key must be replaced (see
    /// [`Members::needs_rotation`]) and this device may: returns the op made.
    pub fn heal(&mut self) -> Result<Option<Op>> {
        let me = self.keys.public();
        if !self.members.needs_rotation() || self.members.role(&me).is_none_or(|r| r < Role::Admin) {
            return Ok(None);
        }
        self.act(Action::Rotate, None).map(Some)
    }

    fn current_key(&self) -> Result<(u64, &EpochKey)> {
        let epoch = self.members.epoch;
        let key = self.epoch_keys.get(&epoch).ok_or_else(|| {
            denied(format!("this device holds no key for the current epoch ({epoch}) of the document"))
        })?;
        Ok((epoch, key))
    }

    /// `change` (this device's own) sealed for the blob store and the wire. Only a
    /// writer can: a reader's edits stay on its screen, refused at the source.
    pub fn seal_change(&self, change: &[u8]) -> Result<Vec<u8>> {
        self.check_writer()?;
        self.seal(Kind::Change, change)
    }

    /// Ok when this device may change the document (writer, admin or owner).
    pub fn check_writer(&self) -> Result<()> {
        let me = self.keys.public();
        if !self.members.can_write(&me) {
            let role = self.members.role(&me).map_or("not a member", Role::name);
            return Err(denied(format!(
                "this device may not change the document (its role: {role}): it is read-only here"
            )));
        }
        Ok(())
    }

    /// A snapshot (the document's compact form) sealed for the blob store. Any
    /// member that reads can seal one for itself; peers take snapshots from writers
    /// only.
    pub fn seal_snapshot(&self, snapshot: &[u8]) -> Result<Vec<u8>> {
        self.seal(Kind::Snapshot, snapshot)
    }

    /// A live edit (encoded) sealed for the wire.
    pub fn seal_live(&self, live: &[u8]) -> Result<Vec<u8>> {
        self.seal(Kind::Live, live)
    }

    /// A live edit (encoded) for a peer connected to this device that does not pass
    /// live edits on (see [`envelope::seal_direct`]).
    pub fn seal_live_direct(&self, live: &[u8]) -> Result<Vec<u8>> {
        let (epoch, key) = self.current_key()?;
        Ok(envelope::seal_direct(&self.doc, &self.keys.public(), epoch, key, live))
    }

    /// A live edit from a peer: checked like a change (a writer's, at heads it
    /// cites); returns its signer and the encoded edit. A direct one (see
    /// [`envelope::seal_direct`]) is its sender's own, who must be a writer now.
    /// `sender` is the peer it came from (its signature is not checked again when
    /// it is the signer: see [`envelope::check_from`]).
    pub fn open_live(
        &self,
        bytes: &[u8],
        sender: Option<&PublicKey>,
    ) -> std::result::Result<(PublicKey, Vec<u8>), EnvelopeError> {
        if envelope::is_direct(bytes) {
            // Only its typist sends one: with no connection to vouch, it is refused.
            let signer = sender.ok_or(EnvelopeError::BadSignature)?;
            let (_, plain) = envelope::open_direct(bytes, &self.doc, signer, |e| self.epoch_keys.get(&e))?;
            if !self.members.can_write(signer) {
                return Err(EnvelopeError::NotWriter);
            }
            return Ok((*signer, plain));
        }
        let checked = match sender {
            Some(s) => envelope::check_from(bytes, &self.doc, s)?,
            None => envelope::check(bytes, &self.doc)?,
        };
        if checked.header.kind != Kind::Live {
            return Err(EnvelopeError::WrongKind(checked.header.kind, Kind::Live));
        }
        self.authorize(&checked.header)?;
        let key =
            self.epoch_keys.get(&checked.header.epoch).ok_or(EnvelopeError::NoKey(checked.header.epoch))?;
        Ok((checked.header.signer, checked.decrypt(key)?))
    }

    fn seal(&self, kind: Kind, plaintext: &[u8]) -> Result<Vec<u8>> {
        let (epoch, key) = self.current_key()?;
        Ok(envelope::seal(&self.keys.device, &self.doc, kind, epoch, &self.group.heads(), key, plaintext))
    }

    fn decrypt(&self, checked: &envelope::Checked<'_>) -> std::result::Result<Plain, EnvelopeError> {
        let epoch = checked.header.epoch;
        let key = self.epoch_keys.get(&epoch).ok_or(EnvelopeError::NoKey(epoch))?;
        Ok(match checked.header.kind {
            Kind::Change => Plain::Change(Box::new(checked.open_change(key)?)),
            Kind::Snapshot => Plain::Snapshot(checked.decrypt(key)?),
            Kind::Live => return Err(EnvelopeError::WrongKind(Kind::Live, Kind::Change)),
        })
    }

    /// A blob or log record of this device's own history. Histories written before
    /// envelopes existed hold bare Automerge chunks; those are read as they are.
    pub fn open_stored(&self, bytes: Vec<u8>) -> std::result::Result<Plain, EnvelopeError> {
        if !envelope::is_envelope(&bytes) {
            return match Change::from_bytes(bytes.clone()) {
                Ok(c) => Ok(Plain::Change(Box::new(c))),
                Err(_) => Ok(Plain::Snapshot(bytes)),
            };
        }
        let checked = envelope::check(&bytes, &self.doc)?;
        self.decrypt(&checked)
    }

    /// The error for a history this device holds no key for (another device's
    /// workspace, or a member since removed).
    pub fn no_key(&self, file: &Path, epoch: u64) -> StoreError {
        let me = tandem_auth::device::peer_id(&self.keys.public()).map(|p| p.to_string()).unwrap_or_default();
        denied(format!(
            "{}: this history is encrypted for its group's members, and this device ({me}) holds no key for \
             its epoch {epoch}: it is not a member, or was removed. An admin or owner can add it: \
             `tandem group {} add {me} writer --age {}`",
            file.display(),
            file.display(),
            self.keys.age.recipient()
        ))
    }

    /// An envelope from a peer: every check (see the module doc). A snapshot must
    /// come from a writer, like a change: it speaks for every change in it.
    pub fn open_remote(&self, bytes: &[u8]) -> std::result::Result<Plain, EnvelopeError> {
        let checked = envelope::check(bytes, &self.doc)?;
        self.authorize(&checked.header)?;
        self.decrypt(&checked)
    }

    /// Whether `peer` may sync this document at all (any member, relays included).
    pub fn is_member(&self, peer: &PublicKey) -> bool {
        self.members.role(peer).is_some()
    }
}

/// The group in the log file at `path`, every op checked.
fn read_group(path: &Path, doc: [u8; 16]) -> Result<Group> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(StoreError::io(path))?;
    let mut bytes = Vec::new();
    f.take(MAX_GROUP_LOG + 1).read_to_end(&mut bytes).map_err(StoreError::io(path))?;
    if bytes.len() as u64 > MAX_GROUP_LOG {
        return Err(StoreError::corrupt(path, "membership log over 256 MiB"));
    }
    let ops = split_ops(&bytes).ok_or_else(|| StoreError::corrupt(path, "truncated membership log"))?;
    build(doc, &ops).map_err(|e| StoreError::corrupt(path, format!("damaged membership log ({e})")))
}

fn build(doc: [u8; 16], ops: &[Vec<u8>]) -> std::result::Result<Group, GroupError> {
    let mut group = Group::empty(doc);
    for bytes in ops {
        group.add(Op::decode(bytes)?)?;
    }
    if group.waiting() > 0 {
        return Err(GroupError::Malformed("ops whose parents are missing"));
    }
    if group.is_empty() {
        return Err(GroupError::Genesis("no genesis op"));
    }
    Ok(group)
}

/// `u32 BE length | op` records.
fn join_ops(ops: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        out.extend_from_slice(&(op.len() as u32).to_be_bytes());
        out.extend_from_slice(op);
    }
    out
}

fn split_ops(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut ops = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        ops.push(bytes.get(4..4 + len)?.to_vec());
        bytes = &bytes[4 + len..];
    }
    Some(ops)
}

const INVITES: &str = "invites.json";

/// An invite this device gave out (`tandem share --role --expires --uses`): the
/// ticket holds its id and secret; this file holds only the secret's hash.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Invite {
    id: String,
    /// BLAKE3 of the secret, hex.
    secret: String,
    role: String,
    /// Milliseconds since the Unix epoch; none: never expires.
    expires_ms: Option<u64>,
    /// Uses left; none: unlimited.
    uses_left: Option<u32>,
}

/// A fresh invite's id and secret (what the ticket carries).
pub type InviteToken = ([u8; 16], [u8; 16]);

impl Secure {
    fn invites_path(&self) -> PathBuf {
        self.path.with_file_name(INVITES)
    }

    fn read_invites(&self) -> Result<Vec<Invite>> {
        let path = self.invites_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::corrupt(&path, format!("unreadable invites: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    fn write_invites(&self, invites: &[Invite]) -> Result<()> {
        write_atomic(&self.invites_path(), &serde_json::to_vec_pretty(invites).expect("invites serialize"))
    }

    /// A new invite for `role` (reader or writer), valid until `expires_ms` and for
    /// `uses` joins. Only an admin or owner can give one: it is redeemed by adding
    /// the joiner to the group.
    pub fn invite(&self, role: Role, expires_ms: Option<u64>, uses: Option<u32>) -> Result<InviteToken> {
        if !matches!(role, Role::Reader | Role::Writer) {
            return Err(StoreError::BadRequest(format!(
                "an invite is for a reader or a writer, not a {}",
                role.name()
            )));
        }
        let me = self.keys.public();
        if self.members.role(&me).is_none_or(|r| r < Role::Admin) {
            return Err(denied("only an admin or owner of the document can invite (ask one to share it)"));
        }
        let id: [u8; 16] = tandem_auth::epoch::random();
        let secret: [u8; 16] = tandem_auth::epoch::random();
        let mut invites = self.read_invites()?;
        let now = crate::stored::now_ms();
        invites.retain(|i| i.expires_ms.is_none_or(|t| t > now) && i.uses_left != Some(0));
        invites.push(Invite {
            id: tandem_auth::device::hex(&id),
            secret: blake3::hash(&secret).to_hex().to_string(),
            role: role.name().to_owned(),
            expires_ms,
            uses_left: uses,
        });
        self.write_invites(&invites)?;
        Ok((id, secret))
    }

    /// Redeem an invite for `peer` (the device on the other end of the connection,
    /// whose age recipient is `recipient`): it becomes a member with the invite's
    /// role. A device that is a member already keeps its role (an invite never
    /// demotes nor promotes). Returns the op that added it, if one was needed.
    pub fn redeem(&mut self, token: InviteToken, peer: PublicKey, recipient: &str) -> Result<Option<Op>> {
        let (id, secret) = token;
        let mut invites = self.read_invites()?;
        let hex_id = tandem_auth::device::hex(&id);
        let Some(invite) = invites.iter_mut().find(|i| i.id == hex_id) else {
            return Err(InviteError::Unknown.into());
        };
        if invite.secret != blake3::hash(&secret).to_hex().as_str() {
            return Err(InviteError::WrongSecret.into());
        }
        if invite.expires_ms.is_some_and(|t| t <= crate::stored::now_ms()) {
            return Err(InviteError::Expired.into());
        }
        if invite.uses_left == Some(0) {
            return Err(InviteError::UsedUp.into());
        }
        if self.members.role(&peer).is_some() {
            return Ok(None);
        }
        tandem_auth::agekey::check_recipient(recipient).map_err(denied)?;
        let role: Role =
            invite.role.parse().map_err(|e: String| StoreError::corrupt(&self.invites_path(), e))?;
        if let Some(n) = &mut invite.uses_left {
            *n -= 1;
        }
        // Used before the member is added: a crash in between wastes a use, never
        // gives one more.
        self.write_invites(&invites)?;
        self.act(Action::SetRole { member: peer, role }, Some(recipient)).map(Some)
    }
}
