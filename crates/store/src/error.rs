use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store. Each message names the input and says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: no such file; create it first (or open it in the editor with `tandem {path}`)", path = .0.display())]
    NotFound(PathBuf),
    #[error("{path}: binary data (a NUL byte at byte {offset}); tandem edits UTF-8 text files only", path = .path.display())]
    Binary { path: PathBuf, offset: usize },
    #[error("{path}: not valid UTF-8 (at byte {offset}); convert it first, e.g. `iconv -t UTF-8`", path = .path.display())]
    InvalidUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: is a directory, not a text file; `tandem sync {path}` keeps a folder's notes (on this device: sharing a folder between devices is not built yet)", path = .0.display())]
    IsDirectory(PathBuf),
    #[error("{path}: corrupt tandem history ({detail}); nothing was changed. `tandem verify` names every damaged file and rebuilds what it can from what is intact", path = .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: {source}{hint}", path = .path.display(), hint = io_hint(.source))]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: the workspace is in use by another tandem process that does not answer on its control socket; wait for it or stop it", path = .0.display())]
    Busy(PathBuf),
    #[error("{0}")]
    BadRequest(String),
    #[error("{path}: {source}", path = .path.display())]
    Doc { path: PathBuf, source: tandem_doc::DocError },
    /// Refused by the document's group: not a member, not a writer, no key, a bad
    /// signature or ciphertext.
    #[error("{0}")]
    Denied(String),
    /// A peer's envelope cites membership ops this device has not seen yet: not a
    /// refusal for good, only a sign that this device's copy of the group's log is
    /// behind the sender's (ask the sender for it, then take the envelope again).
    #[error("{0}")]
    GroupBehind(String),
    /// A peer's envelope is damaged or not one this version reads (truncated, an
    /// unknown version or kind, not a change).
    #[error("{0}")]
    Malformed(String),
    /// An invite that cannot be redeemed.
    #[error("{0}")]
    Invite(#[from] InviteError),
    #[error("control socket: {0}")]
    Protocol(String),
}

/// Why an invite was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("unknown invite (revoked, or given by another device)")]
    Unknown,
    #[error("wrong invite secret")]
    WrongSecret,
    #[error("the invite has expired; ask for a new ticket")]
    Expired,
    #[error("the invite has been used up; ask for a new ticket")]
    UsedUp,
}

impl InviteError {
    pub fn kind(self) -> &'static str {
        match self {
            InviteError::Unknown => "invite_unknown",
            InviteError::WrongSecret => "invite_wrong_secret",
            InviteError::Expired => "invite_expired",
            InviteError::UsedUp => "invite_used_up",
        }
    }
}

/// What to do about an I/O error, when there is something to say.
fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull => "; free some space and try again",
        std::io::ErrorKind::PermissionDenied => "; check the permissions of the file and its directory",
        std::io::ErrorKind::ReadOnlyFilesystem => "; the file system is read-only",
        _ => "",
    }
}

impl StoreError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io { path: path.to_owned(), source }
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: path.to_owned(), detail: detail.into() }
    }

    /// A short stable name of the error kind, for JSON errors on the control socket.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Binary { .. } => "binary",
            StoreError::InvalidUtf8 { .. } => "invalid_utf8",
            StoreError::IsDirectory(_) => "is_directory",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Denied(_) => "denied",
            StoreError::GroupBehind(_) => "group_behind",
            StoreError::Malformed(_) => "malformed",
            StoreError::Invite(e) => e.kind(),
            StoreError::Io { .. } => "io",
            StoreError::Busy(_) => "busy",
            StoreError::BadRequest(_) => "bad_request",
            StoreError::Doc { .. } => "doc",
            StoreError::Protocol(_) => "protocol",
        }
    }

    /// True for errors caused by how the command was called (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, StoreError::BadRequest(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
