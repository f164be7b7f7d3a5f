//! tandem's document core: a [`ropey::Rope`] bound to an Automerge text.
//!
//! The editor draws the rope; Automerge makes the text mergeable. A [`Document`]
//! keeps the two equal:
//!
//! - a local edit ([`ChangeSet`], char positions) updates the rope and the open
//!   Automerge transaction in one call ([`Document::edit`]);
//! - the transaction is committed after a short idle window, or on flush
//!   ([`Document::poll_commit`], [`Document::commit`]), so a burst of typing becomes
//!   one change carrying author and time;
//! - a batch of remote changes is applied with one `apply_changes` call and the
//!   resulting patches become rope edits ([`Document::apply_remote`]);
//! - while sharing, each local edit also goes out at once in Automerge's names
//!   ([`LiveEdit`]: which char an insert follows, which chars go); every peer shows
//!   every typist's live edits where Automerge will put them, before the changes
//!   carrying them arrive ([`Document::apply_live`], the `live` module);
//! - every edit, whatever its origin, moves every cursor ([`Selection`]) and feeds
//!   per-user undo ([`Document::undo`]).
//!
//! This crate does no I/O and knows nothing of files, terminals or networks: the
//! caller passes the clock in (`now_ms`) and moves bytes.
//!
//! ```
//! use tandem_doc::{Author, DocConfig, Document};
//! let me = Author::new("ada", automerge::ActorId::random());
//! let mut doc = Document::new(me, DocConfig::default());
//! doc.splice(0, 0, "hello", 0).unwrap();
//! doc.commit(10);
//! assert_eq!(doc.rope().to_string(), "hello");
//! ```

mod changeset;
mod cursor;
mod diff;
mod document;
pub mod export;
mod live;
pub mod time;
mod undo;

pub use automerge::{ActorId, Change, ChangeHash};
pub use changeset::{Assoc, ChangeSet, Op, Splice};
pub use cursor::{CursorId, Selection};
pub use diff::{diff, unified};
pub use document::{Author, ChangeInfo, Detached, DocConfig, DocError, Document, Origin};
pub use live::{ElemId, LiveEdit, LiveOp, MAX_LIVE_CHARS};
