//! A document's group: who may read and write it, as a signed, hash-linked log of
//! membership operations kept outside the Automerge document.
//!
//! Each [`Op`] names the ops it follows (its parents, by BLAKE3 hash), its author's
//! device key, an [`Action`], and the author's signature over all of that. The log
//! is a DAG; every peer that holds the same ops computes the same members, whatever
//! order the ops arrived in:
//!
//! - the ops are put in one order: parents before children, and among ops that do
//!   not depend on each other, by (depth, hash);
//! - they are folded in that order, each taking effect only if its author, at that
//!   point, holds the role the action needs. So of two admins removing each other
//!   at the same time, the one whose removal sorts first wins, on every peer, and
//!   the other's removal is void (its author was already out).
//!
//! Who may do what: the genesis op's author is the owner. Owners add, remove and
//! re-role anyone; admins do so for writers, readers and relays (never for owners
//! or other admins); anyone may leave (remove themselves). Rotating the epoch key
//! needs an admin. A removal also rotates the epoch (the removed member must not
//! read what comes next): see [`Group::epoch`].
//!
//! Input is bounded: an op's encoding, its parent count, the ops a log may hold, and
//! the ops whose parents have not arrived yet (held aside, at most
//! [`MAX_WAITING`], then refused).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::agekey::AgeIdentity;
use crate::device::{DeviceKey, PublicKey, verify};
use crate::epoch::EpochKey;

pub type OpHash = [u8; 32];
pub type DocId = [u8; 16];

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"tandem membership op\0";
/// Most parents one op may name.
pub const MAX_PARENTS: usize = 64;
/// Most ops one group's log may hold.
pub const MAX_OPS: usize = 100_000;
/// Most ops held while their parents are missing.
pub const MAX_WAITING: usize = 1024;
/// Most wrapped keys one op may carry (one per member that reads).
pub const MAX_WRAPS: usize = 1024;
/// Largest wrapped key (an age file of 64 bytes to one recipient is ~200).
pub const MAX_WRAP: usize = 1024;
/// Longest age recipient string.
pub const MAX_RECIPIENT: usize = 128;
/// In a [`Wrap`], "the epoch this op starts".
pub const THIS_OP: OpHash = [0; 32];

/// Roles, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Stores and forwards ciphertext; holds no key.
    Relay,
    Reader,
    Writer,
    Admin,
    Owner,
}

impl Role {
    fn from_byte(b: u8) -> Option<Role> {
        Some(match b {
            0 => Role::Relay,
            1 => Role::Reader,
            2 => Role::Writer,
            3 => Role::Admin,
            4 => Role::Owner,
            _ => return None,
        })
    }

    fn byte(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        [Role::Relay, Role::Reader, Role::Writer, Role::Admin, Role::Owner]
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("{s:?} is not a role: use owner, admin, writer, reader or relay"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The first op of a group: its author becomes the owner of `doc`.
    Genesis {
        doc: DocId,
    },
    /// Add `member` with `role`, or change the role of a member.
    SetRole {
        member: PublicKey,
        role: Role,
    },
    Remove {
        member: PublicKey,
    },
    /// Start a new epoch (a new read key for the members).
    Rotate,
}

/// An epoch key wrapped (age-encrypted) to one member's device age key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    pub member: PublicKey,
    /// The op that started the epoch whose key this is ([`THIS_OP`]: the op that
    /// carries the wrap).
    pub start: OpHash,
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub parents: Vec<OpHash>,
    pub author: PublicKey,
    pub action: Action,
    /// The age recipient of the member a `SetRole` adds, or of the owner in the
    /// genesis op: what later epoch keys are wrapped to.
    pub recipient: Option<String>,
    /// Epoch keys for members: the new epoch's key for every reading member when
    /// the op starts an epoch, or the current one for a member being added.
    pub wraps: Vec<Wrap>,
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("membership op is malformed: {0}")]
    Malformed(&'static str),
    #[error("membership op signature does not verify")]
    BadSignature,
    #[error("a group has one genesis op, first; this op is a {0}")]
    Genesis(&'static str),
    #[error("membership op is for another document")]
    WrongDocument,
    #[error("the membership log is full ({MAX_OPS} ops)")]
    Full,
    #[error("too many membership ops wait for missing parents ({MAX_WAITING})")]
    TooManyWaiting,
}

fn unsigned_bytes(
    parents: &[OpHash],
    author: &PublicKey,
    action: &Action,
    recipient: &Option<String>,
    wraps: &[Wrap],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 32 * parents.len());
    out.push(VERSION);
    out.push(parents.len() as u8);
    for p in parents {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(author);
    match action {
        Action::Genesis { doc } => {
            out.push(0);
            out.extend_from_slice(doc);
        }
        Action::SetRole { member, role } => {
            out.push(1);
            out.extend_from_slice(member);
            out.push(role.byte());
        }
        Action::Remove { member } => {
            out.push(2);
            out.extend_from_slice(member);
        }
        Action::Rotate => out.push(3),
    }
    let r = recipient.as_deref().unwrap_or("").as_bytes();
    out.push(r.len() as u8);
    out.extend_from_slice(r);
    out.extend_from_slice(&(wraps.len() as u16).to_be_bytes());
    for w in wraps {
        out.extend_from_slice(&w.member);
        out.extend_from_slice(&w.start);
        out.extend_from_slice(&(w.sealed.len() as u16).to_be_bytes());
        out.extend_from_slice(&w.sealed);
    }
    out
}

impl Op {
    /// A new op by `key` after `parents`.
    pub fn sign(key: &DeviceKey, parents: Vec<OpHash>, action: Action) -> Op {
        Self::sign_with(key, parents, action, None, Vec::new())
    }

    /// [`Self::sign`] with a recipient and wrapped keys.
    pub fn sign_with(
        key: &DeviceKey,
        parents: Vec<OpHash>,
        action: Action,
        recipient: Option<String>,
        wraps: Vec<Wrap>,
    ) -> Op {
        let author = key.public();
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(&unsigned_bytes(&parents, &author, &action, &recipient, &wraps));
        let signature = key.sign(&msg);
        Op { parents, author, action, recipient, wraps, signature }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = unsigned_bytes(&self.parents, &self.author, &self.action, &self.recipient, &self.wraps);
        out.extend_from_slice(&self.signature);
        out
    }

    /// The op's id: BLAKE3 of its encoding (signature included).
    pub fn hash(&self) -> OpHash {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Read an op, checking its form and signature (not yet whether its author may
    /// do what it says: that depends on the log).
    pub fn decode(bytes: &[u8]) -> Result<Op, GroupError> {
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], GroupError> {
            if r.len() < n {
                return Err(GroupError::Malformed("truncated"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        if take(1)?[0] != VERSION {
            return Err(GroupError::Malformed("unknown version"));
        }
        let n = take(1)?[0] as usize;
        if n > MAX_PARENTS {
            return Err(GroupError::Malformed("too many parents"));
        }
        let parents =
            (0..n).map(|_| Ok(take(32)?.try_into().expect("32 bytes"))).collect::<Result<Vec<_>, _>>()?;
        let author: PublicKey = take(32)?.try_into().expect("32 bytes");
        let action = match take(1)?[0] {
            0 => Action::Genesis { doc: take(16)?.try_into().expect("16 bytes") },
            1 => {
                let member = take(32)?.try_into().expect("32 bytes");
                let role = Role::from_byte(take(1)?[0]).ok_or(GroupError::Malformed("unknown role"))?;
                Action::SetRole { member, role }
            }
            2 => Action::Remove { member: take(32)?.try_into().expect("32 bytes") },
            3 => Action::Rotate,
            _ => return Err(GroupError::Malformed("unknown action")),
        };
        let n = take(1)?[0] as usize;
        if n > MAX_RECIPIENT {
            return Err(GroupError::Malformed("recipient too long"));
        }
        let recipient = match n {
            0 => None,
            _ => Some(
                std::str::from_utf8(take(n)?)
                    .map_err(|_| GroupError::Malformed("recipient is not text"))?
                    .to_owned(),
            ),
        };
        let n = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
        if n > MAX_WRAPS {
            return Err(GroupError::Malformed("too many wrapped keys"));
        }
        let mut wraps = Vec::with_capacity(n);
        for _ in 0..n {
            let member = take(32)?.try_into().expect("32 bytes");
            let start = take(32)?.try_into().expect("32 bytes");
            let len = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
            if len > MAX_WRAP {
                return Err(GroupError::Malformed("wrapped key too large"));
            }
            wraps.push(Wrap { member, start, sealed: take(len)?.to_vec() });
        }
        let signature: [u8; 64] = take(64)?.try_into().expect("64 bytes");
        if !r.is_empty() {
            return Err(GroupError::Malformed("trailing bytes"));
        }
        let op = Op { parents, author, action, recipient, wraps, signature };
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(&unsigned_bytes(&op.parents, &op.author, &op.action, &op.recipient, &op.wraps));
        if !verify(&op.author, &msg, &op.signature) {
            return Err(GroupError::BadSignature);
        }
        Ok(op)
    }
}

/// Members and their roles, and the epoch, after some set of ops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub roles: BTreeMap<PublicKey, Role>,
    /// Members' age recipients (what epoch keys are wrapped to).
    pub recipients: BTreeMap<PublicKey, String>,
    /// Starts at 0; every rotation and every removal starts the next.
    pub epoch: u64,
    /// The op that started the current epoch (the genesis op for epoch 0).
    pub epoch_start: OpHash,
    /// Who was given the current epoch's key.
    pub holders: BTreeSet<PublicKey>,
}

impl Members {
    pub fn role(&self, key: &PublicKey) -> Option<Role> {
        self.roles.get(key).copied()
    }

    /// True when `key` may write (writer, admin or owner).
    pub fn can_write(&self, key: &PublicKey) -> bool {
        self.role(key).is_some_and(|r| r >= Role::Writer)
    }

    /// Whether `author` may do `action` now.
    fn allows(&self, author: &PublicKey, action: &Action) -> bool {
        let Some(mine) = self.role(author) else { return false };
        // Owners manage anyone; admins manage those below admin.
        let may_manage = |theirs: Option<Role>, new: Option<Role>| {
            let top = theirs.into_iter().chain(new).max();
            mine == Role::Owner || (mine == Role::Admin && top.is_none_or(|r| r < Role::Admin))
        };
        match action {
            Action::Genesis { .. } => false,
            Action::SetRole { member, role } => may_manage(self.role(member), Some(*role)),
            Action::Remove { member } => member == author || may_manage(self.role(member), None),
            Action::Rotate => mine >= Role::Admin,
        }
    }

    /// Members who read (every role but relay).
    pub fn readers(&self) -> impl Iterator<Item = &PublicKey> {
        self.roles.iter().filter(|(_, r)| **r >= Role::Reader).map(|(k, _)| k)
    }

    /// True when the current epoch key must be replaced: a reading member lacks it,
    /// or someone who is no longer a member was given it (a removal and an addition
    /// or rotation that happened at once). Any admin that sees this rotates.
    pub fn needs_rotation(&self) -> bool {
        // Only readers with a known recipient can be given a key.
        let lacking = self.readers().any(|k| self.recipients.contains_key(k) && !self.holders.contains(k));
        lacking || self.holders.iter().any(|k| self.role(k).is_none_or(|r| r < Role::Reader))
    }

    fn apply(&mut self, hash: OpHash, op: &Op) {
        let start_epoch = |m: &mut Members| {
            m.epoch_start = hash;
            m.holders = op.wraps.iter().filter(|w| w.start == THIS_OP).map(|w| w.member).collect();
        };
        match &op.action {
            Action::Genesis { .. } => {
                self.roles.insert(op.author, Role::Owner);
                if let Some(r) = &op.recipient {
                    self.recipients.insert(op.author, r.clone());
                }
                start_epoch(self);
            }
            Action::SetRole { member, role } => {
                self.roles.insert(*member, *role);
                if let Some(r) = &op.recipient {
                    self.recipients.insert(*member, r.clone());
                }
                let current = self.epoch_start;
                if op.wraps.iter().any(|w| w.member == *member && w.start == current) {
                    self.holders.insert(*member);
                }
            }
            Action::Remove { member } => {
                if self.roles.remove(member).is_some() {
                    self.recipients.remove(member);
                    self.epoch += 1;
                    start_epoch(self);
                }
            }
            Action::Rotate => {
                self.epoch += 1;
                start_epoch(self);
            }
        }
    }
}

/// One document's membership log.
#[derive(Debug, Clone)]
pub struct Group {
    doc: DocId,
    ops: HashMap<OpHash, Op>,
    /// Longest parent chain to each op (for the order; genesis is 0).
    depth: HashMap<OpHash, u64>,
    heads: HashSet<OpHash>,
    /// Ops whose parents have not all arrived.
    waiting: HashMap<OpHash, Op>,
}

impl Group {
    /// A new group for `doc`, owned by `owner`; returns it and its genesis op.
    pub fn create(owner: &DeviceKey, doc: DocId) -> (Group, Op) {
        let genesis = Op::sign(owner, vec![], Action::Genesis { doc });
        let mut group = Group::empty(doc);
        group.add(genesis.clone()).expect("a fresh genesis op is valid");
        (group, genesis)
    }

    /// A new group for `doc` owned by `owner` (whose age recipient is `recipient`), and
    /// its genesis op, which carries epoch 0's key wrapped to the owner.
    pub fn create_keyed(
        owner: &DeviceKey,
        recipient: &str,
        doc: DocId,
    ) -> Result<(Group, Op, EpochKey), String> {
        let key = EpochKey::generate();
        let wraps =
            vec![Wrap { member: owner.public(), start: THIS_OP, sealed: key.wrap(&THIS_OP, recipient)? }];
        let genesis =
            Op::sign_with(owner, vec![], Action::Genesis { doc }, Some(recipient.to_owned()), wraps);
        let mut group = Group::empty(doc);
        group.add(genesis.clone()).map_err(|e| e.to_string())?;
        Ok((group, genesis, key))
    }

    /// The op by which `by` gives `member` `role` (adding it when new). A member that
    /// reads gets `current` (this epoch's key) wrapped to `recipient`.
    pub fn set_role_op(
        &self,
        by: &DeviceKey,
        member: PublicKey,
        role: Role,
        recipient: Option<&str>,
        current: Option<&EpochKey>,
    ) -> Result<Op, String> {
        let members = self.members();
        let recipient = recipient.map(str::to_owned).or_else(|| members.recipients.get(&member).cloned());
        let mut wraps = Vec::new();
        if let (true, Some(r), Some(key)) = (role >= Role::Reader, &recipient, current) {
            let start = members.epoch_start;
            wraps.push(Wrap { member, start, sealed: key.wrap(&start, r)? });
        }
        Ok(Op::sign_with(by, self.heads(), Action::SetRole { member, role }, recipient, wraps))
    }

    /// An op that starts a new epoch (`Remove` or `Rotate`), with a new key wrapped to
    /// every reading member that remains; returns the op and the key.
    pub fn new_epoch_op(&self, by: &DeviceKey, action: Action) -> Result<(Op, EpochKey), String> {
        let members = self.members();
        let gone = match &action {
            Action::Remove { member } => Some(*member),
            _ => None,
        };
        let key = EpochKey::generate();
        let mut wraps = Vec::new();
        for member in members.readers().filter(|k| Some(**k) != gone) {
            if let Some(r) = members.recipients.get(member) {
                wraps.push(Wrap { member: *member, start: THIS_OP, sealed: key.wrap(&THIS_OP, r)? });
            }
        }
        Ok((Op::sign_with(by, self.heads(), action, None, wraps), key))
    }

    /// A group that has not seen its genesis op yet (a joiner's, before sync).
    pub fn empty(doc: DocId) -> Group {
        Group {
            doc,
            ops: HashMap::new(),
            depth: HashMap::new(),
            heads: HashSet::new(),
            waiting: HashMap::new(),
        }
    }

    /// The current heads, sorted (what a new op names as its parents).
    pub fn heads(&self) -> Vec<OpHash> {
        let mut h: Vec<_> = self.heads.iter().copied().collect();
        h.sort();
        h
    }

    /// True when the op `hash` is in the log (not merely waiting).
    pub fn contains(&self, hash: &OpHash) -> bool {
        self.ops.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Add an op (already signature-checked by [`Op::decode`] or made by
    /// [`Op::sign`]). An op whose parents are missing waits for them. Adding an op
    /// twice is harmless. Whether its author may do what it says is decided when the
    /// members are computed, not here: an unauthorized op stays in the log, void.
    pub fn add(&mut self, op: Op) -> Result<(), GroupError> {
        let hash = op.hash();
        if self.ops.contains_key(&hash) {
            return Ok(());
        }
        match (&op.action, op.parents.is_empty()) {
            (Action::Genesis { doc }, true) => {
                if *doc != self.doc {
                    return Err(GroupError::WrongDocument);
                }
                if !self.ops.is_empty() {
                    return Err(GroupError::Genesis("second genesis"));
                }
            }
            (Action::Genesis { .. }, false) => return Err(GroupError::Genesis("genesis with parents")),
            (_, true) => return Err(GroupError::Genesis("non-genesis op without parents")),
            _ => {}
        }
        if self.ops.len() >= MAX_OPS {
            return Err(GroupError::Full);
        }
        if op.parents.iter().any(|p| !self.ops.contains_key(p)) {
            if self.waiting.len() >= MAX_WAITING {
                return Err(GroupError::TooManyWaiting);
            }
            self.waiting.insert(hash, op);
            return Ok(());
        }
        self.insert(hash, op);
        // Ops that waited for this one may fit now.
        loop {
            let ready: Vec<OpHash> = self
                .waiting
                .iter()
                .filter(|(_, w)| w.parents.iter().all(|p| self.ops.contains_key(p)))
                .map(|(h, _)| *h)
                .collect();
            if ready.is_empty() {
                return Ok(());
            }
            for h in ready {
                let op = self.waiting.remove(&h).expect("listed above");
                self.insert(h, op);
            }
        }
    }

    fn insert(&mut self, hash: OpHash, op: Op) {
        let depth = op.parents.iter().map(|p| self.depth[p] + 1).max().unwrap_or(0);
        for p in &op.parents {
            self.heads.remove(p);
        }
        self.heads.insert(hash);
        self.depth.insert(hash, depth);
        self.ops.insert(hash, op);
    }

    /// Ops waiting for parents that have not arrived.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The members as of `heads` (all the ops they descend from), folded in the one
    /// order every peer uses. Unknown heads are ignored.
    pub fn members_at(&self, heads: &[OpHash]) -> Members {
        self.fold(heads, |_, _, _| {})
    }

    /// Fold the ops `heads` descend from (see [`Self::members_at`]), calling `visit`
    /// with each op that took effect and the members just after it.
    fn fold(&self, heads: &[OpHash], mut visit: impl FnMut(OpHash, &Op, &Members)) -> Members {
        // Everything `heads` descend from.
        let mut seen = HashSet::new();
        let mut stack: Vec<OpHash> = heads.iter().filter(|h| self.ops.contains_key(*h)).copied().collect();
        while let Some(h) = stack.pop() {
            if seen.insert(h) {
                stack.extend(self.ops[&h].parents.iter().copied());
            }
        }
        // Parents have smaller depth than their children, so (depth, hash) is a
        // topological order, and the same on every peer.
        let mut order: Vec<OpHash> = seen.into_iter().collect();
        order.sort_by_key(|h| (self.depth[h], *h));
        let mut members = Members::default();
        for h in order {
            let op = &self.ops[&h];
            let allowed =
                matches!(op.action, Action::Genesis { .. }) || members.allows(&op.author, &op.action);
            if allowed {
                members.apply(h, op);
                visit(h, op, &members);
            }
        }
        members
    }

    /// The epoch keys wrapped to `me` that `identity` opens, by epoch number (as of
    /// every head). Wraps in ops that did not take effect are ignored, and so are
    /// wraps that do not open or say another epoch than where they stand.
    pub fn keys_for(&self, me: &PublicKey, identity: &AgeIdentity) -> BTreeMap<u64, EpochKey> {
        let mut epochs: HashMap<OpHash, u64> = HashMap::new();
        let mut mine: Vec<(OpHash, Vec<u8>)> = Vec::new();
        self.fold(&self.heads(), |hash, op, members| {
            if members.epoch_start == hash {
                epochs.insert(hash, members.epoch);
            }
            for w in op.wraps.iter().filter(|w| w.member == *me) {
                let start = if w.start == THIS_OP { hash } else { w.start };
                mine.push((start, w.sealed.clone()));
            }
        });
        let mut keys = BTreeMap::new();
        for (start, sealed) in mine {
            let Some(epoch) = epochs.get(&start) else { continue };
            match EpochKey::unwrap(identity, &sealed) {
                Ok((said, key)) if said == THIS_OP || said == start => {
                    keys.insert(*epoch, key);
                }
                // A wrap that does not open (made for an old age identity of this
                // device, or damaged) gives no key; it is not fatal.
                _ => {}
            }
        }
        keys
    }

    /// The op hash of every epoch start, by epoch number.
    pub fn epoch_of(&self, start: &OpHash) -> Option<u64> {
        let mut found = None;
        self.fold(&self.heads(), |hash, _, members| {
            if hash == *start && members.epoch_start == hash {
                found = Some(members.epoch);
            }
        });
        found
    }

    /// The members now (at every head).
    pub fn members(&self) -> Members {
        self.members_at(&self.heads())
    }

    /// Every op, in the order [`Self::members_at`] folds them (for sending to a
    /// peer: parents come first).
    pub fn ops_in_order(&self) -> Vec<&Op> {
        let mut order: Vec<(&OpHash, &Op)> = self.ops.iter().collect();
        order.sort_by_key(|(h, _)| (self.depth[*h], **h));
        order.into_iter().map(|(_, op)| op).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: DocId = [5; 16];

    fn keys(n: usize) -> Vec<DeviceKey> {
        (0..n).map(|_| DeviceKey::generate()).collect()
    }

    /// `key` does `action` after the group's current heads.
    fn act(group: &mut Group, key: &DeviceKey, action: Action) -> Op {
        let op = Op::sign(key, group.heads(), action);
        group.add(op.clone()).unwrap();
        op
    }

    #[test]
    fn the_owner_adds_and_roles_apply() {
        let [owner, ada, bob] = <[DeviceKey; 3]>::try_from(keys(3)).unwrap();
        let (mut g, _) = Group::create(&owner, DOC);
        act(&mut g, &owner, Action::SetRole { member: ada.public(), role: Role::Writer });
        act(&mut g, &owner, Action::SetRole { member: bob.public(), role: Role::Reader });
        let m = g.members();
        assert_eq!(m.role(&owner.public()), Some(Role::Owner));
        assert!(m.can_write(&ada.public()));
        assert!(!m.can_write(&bob.public()), "a reader cannot write");
        assert_eq!(m.epoch, 0);
    }

    #[test]
    fn non_admins_cannot_change_membership_and_admins_cannot_touch_admins() {
        let [owner, admin, other_admin, writer, outsider] = <[DeviceKey; 5]>::try_from(keys(5)).unwrap();
        let (mut g, _) = Group::create(&owner, DOC);
        act(&mut g, &owner, Action::SetRole { member: admin.public(), role: Role::Admin });
        act(&mut g, &owner, Action::SetRole { member: other_admin.public(), role: Role::Admin });
        act(&mut g, &owner, Action::SetRole { member: writer.public(), role: Role::Writer });
        // A writer promotes itself, an outsider adds itself: void.
        act(&mut g, &writer, Action::SetRole { member: writer.public(), role: Role::Owner });
        act(&mut g, &outsider, Action::SetRole { member: outsider.public(), role: Role::Writer });
        // An admin removes another admin, or demotes the owner: void.
        act(&mut g, &admin, Action::Remove { member: other_admin.public() });
        act(&mut g, &admin, Action::SetRole { member: owner.public(), role: Role::Reader });
        let m = g.members();
        assert_eq!(m.role(&writer.public()), Some(Role::Writer));
        assert_eq!(m.role(&outsider.public()), None);
        assert_eq!(m.role(&other_admin.public()), Some(Role::Admin));
        assert_eq!(m.role(&owner.public()), Some(Role::Owner));
        // But an admin manages writers, and anyone may leave.
        act(&mut g, &admin, Action::SetRole { member: writer.public(), role: Role::Reader });
        act(&mut g, &other_admin, Action::Remove { member: other_admin.public() });
        let m = g.members();
        assert_eq!(m.role(&writer.public()), Some(Role::Reader));
        assert_eq!(m.role(&other_admin.public()), None);
    }

    #[test]
    fn removal_rotates_the_epoch_and_ends_writing() {
        let [owner, ada] = <[DeviceKey; 2]>::try_from(keys(2)).unwrap();
        let (mut g, _) = Group::create(&owner, DOC);
        act(&mut g, &owner, Action::SetRole { member: ada.public(), role: Role::Writer });
        let before = g.heads();
        act(&mut g, &owner, Action::Remove { member: ada.public() });
        assert!(g.members_at(&before).can_write(&ada.public()));
        let m = g.members();
        assert!(!m.can_write(&ada.public()));
        assert_eq!(m.epoch, 1);
        act(&mut g, &owner, Action::Rotate);
        assert_eq!(g.members().epoch, 2);
        // Ada's own ops after her removal change nothing.
        act(&mut g, &ada, Action::SetRole { member: ada.public(), role: Role::Writer });
        assert!(!g.members().can_write(&ada.public()));
    }

    /// Concurrent changes on two peers (the owner demotes w on one and promotes w on
    /// the other, while admin b removes w and admin a rotates), exchanged in opposite
    /// orders, children before parents on one side: both peers end with the same
    /// members.
    #[test]
    fn concurrent_role_changes_and_removals_resolve_the_same_way_everywhere() {
        let [owner, a, b, w] = <[DeviceKey; 4]>::try_from(keys(4)).unwrap();
        let (mut base, _) = Group::create(&owner, DOC);
        act(&mut base, &owner, Action::SetRole { member: a.public(), role: Role::Admin });
        act(&mut base, &owner, Action::SetRole { member: b.public(), role: Role::Admin });
        act(&mut base, &owner, Action::SetRole { member: w.public(), role: Role::Writer });
        let (mut left, mut right) = (base.clone(), base.clone());
        let l1 = act(&mut left, &owner, Action::SetRole { member: w.public(), role: Role::Reader });
        let l2 = act(&mut left, &a, Action::Rotate);
        let r1 = act(&mut right, &owner, Action::SetRole { member: w.public(), role: Role::Admin });
        let r2 = act(&mut right, &b, Action::Remove { member: w.public() });
        for op in [r2, r1] {
            left.add(op).unwrap(); // children first: r2 waits for r1
        }
        for op in [l1, l2] {
            right.add(op).unwrap();
        }
        assert_eq!(left.waiting(), 0);
        assert_eq!(left.heads(), right.heads());
        assert_eq!(left.members(), right.members());
        // Both rotations count (a's, and b's removal of w if it came before w became
        // an admin in the fold order; either way the epoch moved on).
        assert!(left.members().epoch >= 1);
    }

    #[test]
    fn forged_malformed_and_foreign_ops_are_refused() {
        let [owner, ada] = <[DeviceKey; 2]>::try_from(keys(2)).unwrap();
        let (mut g, genesis) = Group::create(&owner, DOC);
        let op = Op::sign(&owner, g.heads(), Action::SetRole { member: ada.public(), role: Role::Writer });
        let bytes = op.encode();
        assert_eq!(Op::decode(&bytes).unwrap(), op);
        // Forged: claims the owner wrote what ada signed.
        let mut forged =
            Op::sign(&ada, g.heads(), Action::SetRole { member: ada.public(), role: Role::Owner });
        forged.author = owner.public();
        assert_eq!(Op::decode(&forged.encode()), Err(GroupError::BadSignature));
        for cut in 0..bytes.len() {
            assert!(Op::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(Op::decode(&flipped).is_err());
        let mut bad_role = bytes.clone();
        bad_role[2 + 32 + 32 + 1 + 32] = 9;
        assert_eq!(Op::decode(&bad_role), Err(GroupError::Malformed("unknown role")));
        // A second genesis, a genesis of another document, an op with no parents.
        let (_, other) = Group::create(&ada, DOC);
        assert!(matches!(g.add(other), Err(GroupError::Genesis(_))));
        assert_eq!(Group::empty([6; 16]).add(genesis.clone()), Err(GroupError::WrongDocument));
        let orphan = Op::sign(&owner, vec![], Action::Rotate);
        assert!(matches!(g.add(orphan), Err(GroupError::Genesis(_))));
    }

    #[test]
    fn ops_with_unknown_parents_are_bounded() {
        let owner = DeviceKey::generate();
        let (mut g, _) = Group::create(&owner, DOC);
        for i in 0..MAX_WAITING {
            let mut fake = [0u8; 32];
            fake[..8].copy_from_slice(&(i as u64).to_le_bytes());
            g.add(Op::sign(&owner, vec![fake], Action::Rotate)).unwrap();
        }
        let err = g.add(Op::sign(&owner, vec![[9; 32]], Action::Rotate));
        assert_eq!(err, Err(GroupError::TooManyWaiting));
        assert_eq!(g.len(), 1);
        assert_eq!(g.members().epoch, 0, "waiting ops do not count");
    }

    #[test]
    fn a_log_replayed_in_any_order_gives_the_same_members() {
        let ks = keys(6);
        let (mut g, _) = Group::create(&ks[0], DOC);
        for (i, k) in ks.iter().enumerate().skip(1) {
            let role = [Role::Admin, Role::Writer, Role::Reader, Role::Relay, Role::Writer][i - 1];
            act(&mut g, &ks[0], Action::SetRole { member: k.public(), role });
        }
        act(&mut g, &ks[1], Action::Remove { member: ks[2].public() });
        act(&mut g, &ks[3], Action::Rotate);
        let ops: Vec<Op> = g.ops_in_order().into_iter().cloned().collect();
        let want = g.members();
        for seed in 0..20u64 {
            let mut shuffled = ops[1..].to_vec();
            let mut s = seed * 0x9e37_79b9 + 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut replay = Group::empty(DOC);
            replay.add(ops[0].clone()).unwrap();
            for op in shuffled {
                replay.add(op).unwrap();
            }
            assert_eq!(replay.members(), want, "seed {seed}");
        }
    }

    /// Epoch keys: the owner's genesis key, a member added later gets the current
    /// key, a removal gives the remaining readers a new key that the removed member's
    /// age identity cannot open; relays get no key.
    #[test]
    fn epoch_keys_reach_readers_and_not_removed_members_or_relays() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<AgeIdentity> =
            (0..4).map(|i| AgeIdentity::load_or_create(&dir.path().join(i.to_string())).unwrap()).collect();
        let [owner, ada, bob, relay] = <[DeviceKey; 4]>::try_from(keys(4)).unwrap();
        let (mut g, _, k0) = Group::create_keyed(&owner, &ids[0].recipient(), DOC).unwrap();
        for (k, id, role) in
            [(&ada, &ids[1], Role::Writer), (&bob, &ids[2], Role::Reader), (&relay, &ids[3], Role::Relay)]
        {
            let op = g.set_role_op(&owner, k.public(), role, Some(&id.recipient()), Some(&k0)).unwrap();
            g.add(op).unwrap();
        }
        assert!(!g.members().needs_rotation());
        for (k, id) in [(&owner, &ids[0]), (&ada, &ids[1]), (&bob, &ids[2])] {
            assert_eq!(g.keys_for(&k.public(), id).get(&0), Some(&k0));
        }
        assert!(g.keys_for(&relay.public(), &ids[3]).is_empty(), "a relay holds no key");
        let (op, k1) = g.new_epoch_op(&owner, Action::Remove { member: bob.public() }).unwrap();
        g.add(op).unwrap();
        assert_eq!(g.members().epoch, 1);
        assert_eq!(g.keys_for(&ada.public(), &ids[1]).get(&1), Some(&k1));
        assert_eq!(g.keys_for(&bob.public(), &ids[2]).get(&1), None, "the removed member gets no new key");
        assert_eq!(g.keys_for(&bob.public(), &ids[2]).get(&0), Some(&k0), "old epochs stay readable");
        // Wrapped keys survive encoding; an op with a bad wrap list is refused.
        let ops: Vec<Op> = g.ops_in_order().into_iter().cloned().collect();
        let mut replay = Group::empty(DOC);
        for op in &ops {
            replay.add(Op::decode(&op.encode()).unwrap()).unwrap();
        }
        assert_eq!(replay.keys_for(&ada.public(), &ids[1]).get(&1), Some(&k1));
        let mut bytes = ops.last().unwrap().encode();
        let n = bytes.len();
        bytes[n - 70] ^= 1;
        assert!(Op::decode(&bytes).is_err());
    }

    /// An admin adds a member while the owner removes another at the same time: the
    /// fold gives everyone the same epoch, and says the key needs replacing (the new
    /// member lacks the new key); a rotation puts that right.
    #[test]
    fn concurrent_addition_and_removal_call_for_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<AgeIdentity> =
            (0..4).map(|i| AgeIdentity::load_or_create(&dir.path().join(i.to_string())).unwrap()).collect();
        let [owner, admin, gone, new] = <[DeviceKey; 4]>::try_from(keys(4)).unwrap();
        let (mut g, _, k0) = Group::create_keyed(&owner, &ids[0].recipient(), DOC).unwrap();
        for (k, id, role) in [(&admin, &ids[1], Role::Admin), (&gone, &ids[2], Role::Writer)] {
            g.add(g.set_role_op(&owner, k.public(), role, Some(&id.recipient()), Some(&k0)).unwrap())
                .unwrap();
        }
        let (mut left, mut right) = (g.clone(), g.clone());
        let add = left
            .set_role_op(&admin, new.public(), Role::Writer, Some(&ids[3].recipient()), Some(&k0))
            .unwrap();
        left.add(add.clone()).unwrap();
        let (remove, _) = right.new_epoch_op(&owner, Action::Remove { member: gone.public() }).unwrap();
        right.add(remove.clone()).unwrap();
        left.add(remove).unwrap();
        right.add(add).unwrap();
        assert_eq!(left.members(), right.members());
        let m = left.members();
        assert_eq!(m.epoch, 1);
        // Either order of the two ops leaves the new member without epoch 1's key.
        assert!(m.role(&new.public()).is_some() && !m.holders.contains(&new.public()));
        {
            assert!(m.needs_rotation());
            let (op, k2) = left.new_epoch_op(&admin, Action::Rotate).unwrap();
            left.add(op).unwrap();
            assert!(!left.members().needs_rotation());
            assert_eq!(left.keys_for(&new.public(), &ids[3]).get(&2), Some(&k2));
            assert_eq!(left.keys_for(&gone.public(), &ids[2]).get(&2), None);
        }
    }

    /// Oversized parts of an op (wrap lists, wrapped keys, recipients) are refused
    /// before anything is allocated for them; so is a log over its limit.
    #[test]
    fn oversized_ops_are_refused() {
        let owner = DeviceKey::generate();
        let (g, _) = Group::create(&owner, DOC);
        let wrap = |n: usize| Wrap { member: [1; 32], start: THIS_OP, sealed: vec![0; n] };
        let too_many = Op::sign_with(
            &owner,
            g.heads(),
            Action::Rotate,
            None,
            (0..MAX_WRAPS + 1).map(|_| wrap(1)).collect(),
        );
        assert_eq!(Op::decode(&too_many.encode()), Err(GroupError::Malformed("too many wrapped keys")));
        let too_big = Op::sign_with(&owner, g.heads(), Action::Rotate, None, vec![wrap(MAX_WRAP + 1)]);
        assert_eq!(Op::decode(&too_big.encode()), Err(GroupError::Malformed("wrapped key too large")));
        let long =
            Op::sign_with(&owner, g.heads(), Action::Rotate, Some("a".repeat(MAX_RECIPIENT + 1)), vec![]);
        assert_eq!(Op::decode(&long.encode()), Err(GroupError::Malformed("recipient too long")));
        let mut many_parents = Op::sign(&owner, vec![[1; 32]; 2], Action::Rotate).encode();
        many_parents[1] = (MAX_PARENTS + 1) as u8;
        assert_eq!(Op::decode(&many_parents), Err(GroupError::Malformed("too many parents")));
    }
}
