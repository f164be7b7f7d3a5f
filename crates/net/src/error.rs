//! What can go wrong joining, enrolling or dialing, typed (tests and callers match
//! variants and wire codes) and said for people (`Display`: what failed and what to
//! check).

use libp2p::{Multiaddr, PeerId};
use tandem_store::BlobHash;

use crate::protocol::{Code, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the ticket has no address for --transport {0}")]
    NoAddress(&'static str),
    #[error("the ticket names this device itself: join from another device (or another TANDEM_HOME)")]
    SelfDial,
    #[error(
        "the ticket's address answers as another device ({obtained}, not {peer}): the ticket is stale; ask for a new one"
    )]
    StaleTicket { peer: PeerId, obtained: Box<PeerId> },
    #[error("the ticket has no address for {0}")]
    NoAddresses(PeerId),
    /// No address answered (libp2p's account of every address goes to the log).
    #[error(
        "the sharer {peer} is not reachable (tried {}): is `tandem share` still running there, and is its network reachable from here?",
        shown(.tried)
    )]
    Unreachable { peer: PeerId, tried: Vec<Multiaddr> },
    /// A dial failed and mDNS did not find the peer either.
    #[error("{0} (nor was it found on this LAN by mDNS)")]
    NotOnLan(Box<NetError>),
    #[error(
        "the sharer {peer} was not found on this LAN by mDNS within {wait_s} s, and the ticket has no address that answers: is `tandem share` still running there?"
    )]
    NotFoundOnLan { peer: PeerId, wait_s: u64 },
    #[error("the sharer {peer} did not answer within {wait_s} s: is `tandem share` still running there?")]
    NoAnswer { peer: PeerId, wait_s: u64 },
    /// The peer answered with a refusal (its code says which).
    #[error("the {who} refused: {refusal}")]
    Refused { who: &'static str, refusal: Refusal },
    #[error("unexpected answer from the {who} ({what})")]
    Unexpected { who: &'static str, what: String },
    #[error(
        "{0} answered but does not speak tandem's sync protocol: the ticket names another program's node"
    )]
    NotTandem(PeerId),
    #[error("the sharer took too long to answer: try again")]
    Timeout,
    #[error("the connection to the sharer {0} broke during the join: is `tandem share` still running there?")]
    Broken(PeerId),
    #[error("the peer's history is too large ({total} bytes in {blobs} blobs)")]
    HistoryTooLarge { total: u64, blobs: usize },
    /// A blob that failed verification; the peer that sent it was dropped.
    #[error("the peer sent blob {hash} wrong ({why}); dropped that peer")]
    BadBlob { hash: BlobHash, why: String },
    #[error("the peer refused blob {hash}: {refusal}")]
    BlobRefused { hash: BlobHash, refusal: Refusal },
    #[error("fetching blob {hash} failed: {why}")]
    BlobFailed { hash: BlobHash, why: String },
    /// This device failed (its store, its disk).
    #[error("{0}")]
    Local(String),
}

impl NetError {
    /// The wire code of a peer's refusal, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            NetError::Refused { refusal, .. } | NetError::BlobRefused { refusal, .. } => Some(refusal.code),
            NetError::NotOnLan(inner) => inner.code(),
            _ => None,
        }
    }
}

/// The CLI's errors are words for people.
impl From<NetError> for String {
    fn from(e: NetError) -> String {
        e.to_string()
    }
}

/// At most three addresses, and how many more.
fn shown(addrs: &[Multiaddr]) -> String {
    let mut s: Vec<String> = addrs.iter().take(3).map(|a| a.to_string()).collect();
    if addrs.len() > 3 {
        s.push(format!("and {} more", addrs.len() - 3));
    }
    s.join(", ")
}
