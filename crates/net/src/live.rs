//! Live edits on one long-lived stream per peer (`/tandem/live/1`).
//!
//! A keystroke sent as a `/tandem/sync/1` request costs a new stream each time: a
//! multistream-select negotiation (a round trip on WebRTC, whose data channels are
//! opened in band), a response to wait for, and an ack on the wire. Here each peer gets
//! one outbound stream, opened at its first live edit and kept; every live edit is one
//! frame on it (the sync protocol's framing, kind `Live`), written and flushed as it
//! comes, in order, with no answer. What arrives on a peer's stream goes to the node as
//! if it were a request, through the same membership gate and checks.
//!
//! Live edits are best effort (the change that follows carries the same edit), but
//! none is dropped for want of a stream: a peer that does not speak the protocol (the
//! blind relay, an older tandem) gets them as requests from then on, and the edits a
//! broken stream did not take go by request while the next edit opens a new stream.

use std::collections::{HashMap, HashSet};

use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::codec;
use crate::protocol::{DocId, Message};

/// The protocol of the long-lived live-edit stream.
pub const PROTOCOL: &str = "/tandem/live/1";

/// Live-edit frames this process has written to streams (for tests and benchmarks;
/// those sent as requests are not counted here).
pub static STREAM_FRAMES_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How live edits go out: on a stream per peer (the default), or as one request each
/// (what tandem did before, kept to compare them: `tandem-bench live --live-wire`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    #[default]
    Stream,
    Requests,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::Stream => "stream",
            Wire::Requests => "requests",
        }
    }
}

impl std::str::FromStr for Wire {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stream" => Ok(Wire::Stream),
            "requests" => Ok(Wire::Requests),
            other => Err(format!("--live-wire {other}: use stream or requests")),
        }
    }
}

/// What the stream tasks tell the node.
pub(crate) enum Event {
    /// A frame read from `peer`'s stream.
    Received(PeerId, Message),
    /// `peer`'s stream did not take these envelopes: it broke, or (`unsupported`)
    /// the peer does not speak [`PROTOCOL`], and all its live edits go as requests.
    Unsent { peer: PeerId, envelopes: Vec<Vec<u8>>, unsupported: bool },
}

/// The live-edit streams of one node: a writer task per peer, a reader task per
/// stream a peer opened to us.
pub(crate) struct LiveStreams {
    wire: Wire,
    doc: DocId,
    control: Control,
    incoming: Option<IncomingStreams>,
    writers: HashMap<PeerId, UnboundedSender<Vec<u8>>>,
    /// Peers that answered "unsupported protocol" (until they disconnect).
    by_request: HashSet<PeerId>,
    events_tx: UnboundedSender<Event>,
    events: UnboundedReceiver<Event>,
}

impl LiveStreams {
    pub(crate) fn new(mut control: Control, doc: DocId) -> Self {
        // One Node per swarm: the protocol cannot be registered already.
        let incoming = control.accept(StreamProtocol::new(PROTOCOL)).ok();
        if incoming.is_none() {
            tracing::warn!("{PROTOCOL} is taken on this swarm: live edits arrive as requests only");
        }
        let (events_tx, events) = unbounded_channel();
        LiveStreams {
            wire: Wire::default(),
            doc,
            control,
            incoming,
            writers: HashMap::new(),
            by_request: HashSet::new(),
            events_tx,
            events,
        }
    }

    pub(crate) fn set_wire(&mut self, wire: Wire) {
        self.wire = wire;
    }

    /// Send `envelope` to `peer` on its stream (opened now if need be). Returns it back
    /// when it must go as a request instead.
    pub(crate) fn send(&mut self, peer: PeerId, envelope: Vec<u8>) -> Option<Vec<u8>> {
        if self.wire == Wire::Requests || self.by_request.contains(&peer) {
            return Some(envelope);
        }
        let writer = self.writers.entry(peer).or_insert_with(|| {
            let (tx, rx) = unbounded_channel();
            let control = self.control.clone();
            tokio::spawn(write(control, peer, self.doc, rx, self.events_tx.clone()));
            tx
        });
        match writer.send(envelope) {
            Ok(()) => None,
            // The task ended (its Unsent event is on its way): this one goes by request.
            Err(unsent) => {
                self.writers.remove(&peer);
                Some(unsent.0)
            }
        }
    }

    /// The next event of the stream tasks; meanwhile, each stream a peer opens to us
    /// gets a reader task.
    pub(crate) async fn next(&mut self) -> Event {
        use futures::StreamExt as _;
        loop {
            let incoming = async {
                match self.incoming.as_mut() {
                    Some(incoming) => incoming.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Never closed: this struct holds a sender.
                Some(event) = self.events.recv() => return event,
                opened = incoming => match opened {
                    Some((peer, stream)) => {
                        tokio::spawn(read(peer, stream, self.events_tx.clone()));
                    }
                    None => self.incoming = None,
                },
            }
        }
    }

    /// `peer` failed as the event says: forget its writer (and, when it does not speak
    /// the protocol, stream to it no more).
    pub(crate) fn failed(&mut self, peer: PeerId, unsupported: bool) {
        self.writers.remove(&peer);
        if unsupported {
            tracing::info!(peer = %peer, "the peer does not speak {PROTOCOL}: live edits go to it as requests");
            self.by_request.insert(peer);
        }
    }

    /// `peer` disconnected: its writer ends (its stream went with the connection), and
    /// it is asked again whether it speaks the protocol when it comes back.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.writers.remove(peer);
        self.by_request.remove(peer);
    }
}

/// Open a stream to `peer` and write each envelope `rx` gives as one flushed frame,
/// until the node drops the sender (the stream is then closed) or a write fails.
async fn write(
    mut control: Control,
    peer: PeerId,
    doc: DocId,
    mut rx: UnboundedReceiver<Vec<u8>>,
    events: UnboundedSender<Event>,
) {
    // Closed first, so an edit sent after this is refused to the node (which sends it
    // as a request) instead of being lost in a channel no one reads.
    let drain = |first: Option<Vec<u8>>, rx: &mut UnboundedReceiver<Vec<u8>>| {
        rx.close();
        let mut unsent: Vec<Vec<u8>> = first.into_iter().collect();
        while let Ok(e) = rx.try_recv() {
            unsent.push(e);
        }
        unsent
    };
    let mut stream = match control.open_stream(peer, StreamProtocol::new(PROTOCOL)).await {
        Ok(stream) => stream,
        Err(OpenStreamError::UnsupportedProtocol(_)) => {
            let _ = events.send(Event::Unsent { peer, envelopes: drain(None, &mut rx), unsupported: true });
            return;
        }
        Err(e) => {
            tracing::info!(peer = %peer, "opening the live-edit stream: {e}");
            let _ = events.send(Event::Unsent { peer, envelopes: drain(None, &mut rx), unsupported: false });
            return;
        }
    };
    tracing::debug!(peer = %peer, "live-edit stream open");
    while let Some(envelope) = rx.recv().await {
        let msg = Message::Live { doc, envelope };
        let frame = crate::protocol::encode(&msg);
        codec::count_sent(&frame);
        STREAM_FRAMES_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = codec::write_flushed(&mut stream, &frame).await {
            tracing::info!(peer = %peer, "the live-edit stream broke: {e}");
            let Message::Live { envelope, .. } = msg else { unreachable!("made as a live edit above") };
            let envelopes = drain(Some(envelope), &mut rx);
            let _ = events.send(Event::Unsent { peer, envelopes, unsupported: false });
            return;
        }
    }
    let _ = futures::AsyncWriteExt::close(&mut stream).await;
}

/// Read frames from a stream `peer` opened until it ends or sends a bad frame.
async fn read(peer: PeerId, mut stream: Stream, events: UnboundedSender<Event>) {
    loop {
        match codec::read_frame(&mut stream).await {
            Ok(msg) => {
                if events.send(Event::Received(peer, msg)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                tracing::info!(peer = %peer, "dropped the peer's live-edit stream: {e}");
                return;
            }
        }
    }
}

/// Live edits that go to peers as requests, at most [`REQUESTS_IN_FLIGHT`] at a time
/// per peer; the rest wait, in order, until an answer (or a failure) frees a slot.
///
/// A burst of keystrokes would otherwise open a stream per keystroke at once, and a
/// WebRTC peer closes the data channels it has not yet accepted beyond ten: those
/// edits were lost. `Id` is the request id (generic for the tests).
pub(crate) struct RequestWindow<Id> {
    in_flight: HashMap<Id, PeerId>,
    waiting: HashMap<PeerId, (usize, std::collections::VecDeque<Vec<u8>>)>,
}

/// Live-edit requests outstanding to one peer (WebRTC takes ten new streams at once,
/// shared with sync and presence requests).
pub(crate) const REQUESTS_IN_FLIGHT: usize = 4;
/// Live edits waiting for one peer beyond which the oldest are dropped (the changes
/// that follow carry them).
pub(crate) const REQUESTS_WAITING_MAX: usize = 1024;

impl<Id: std::hash::Hash + Eq> Default for RequestWindow<Id> {
    fn default() -> Self {
        RequestWindow { in_flight: HashMap::new(), waiting: HashMap::new() }
    }
}

impl<Id: std::hash::Hash + Eq> RequestWindow<Id> {
    /// `envelope` for `peer`: given back when it can go now (then call [`Self::sent`]),
    /// kept to go later otherwise.
    pub(crate) fn offer(&mut self, peer: PeerId, envelope: Vec<u8>) -> Option<Vec<u8>> {
        let (outstanding, queue) = self.waiting.entry(peer).or_default();
        if *outstanding < REQUESTS_IN_FLIGHT && queue.is_empty() {
            return Some(envelope);
        }
        if queue.len() == REQUESTS_WAITING_MAX {
            queue.pop_front();
            tracing::debug!(peer = %peer, "dropped a waiting live edit (its change carries it)");
        }
        queue.push_back(envelope);
        None
    }

    /// A live edit went to `peer` as request `id`.
    pub(crate) fn sent(&mut self, id: Id, peer: PeerId) {
        self.waiting.entry(peer).or_default().0 += 1;
        self.in_flight.insert(id, peer);
    }

    /// Request `id` was answered or failed. When it was a live edit whose peer has
    /// more waiting, the next of them, to send now (then call [`Self::sent`]).
    pub(crate) fn done(&mut self, id: &Id) -> Option<(PeerId, Vec<u8>)> {
        let peer = self.in_flight.remove(id)?;
        let (outstanding, queue) = self.waiting.get_mut(&peer)?;
        *outstanding = outstanding.saturating_sub(1);
        queue.pop_front().map(|envelope| (peer, envelope))
    }

    /// `peer` disconnected: what waited for it is dropped.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.waiting.remove(peer);
        self.in_flight.retain(|_, p| p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_keeps_order_and_bounds_what_is_outstanding() {
        let mut w = RequestWindow::<u32>::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        // (request id, what it carried) of each request sent to `a`, in order.
        let mut sent: Vec<(u32, u8)> = Vec::new();
        for k in 0..10u8 {
            if let Some(e) = w.offer(a, vec![k]) {
                let id = sent.len() as u32;
                w.sent(id, a);
                sent.push((id, e[0]));
            }
        }
        assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // Another peer's window is its own.
        assert!(w.offer(b, vec![100]).is_some());
        // Each answer (or failure) lets the next one go, oldest first.
        let mut answered = 0;
        while answered < sent.len() {
            if let Some((peer, e)) = w.done(&sent[answered].0) {
                assert_eq!(peer, a);
                let id = sent.len() as u32;
                w.sent(id, peer);
                sent.push((id, e[0]));
            }
            answered += 1;
        }
        assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), (0..10).collect::<Vec<u8>>());
        // An id that is not a live edit's frees nothing.
        assert!(w.done(&9999).is_none());
        // A peer gone takes what waited with it.
        for (id, k) in (100..108u32).zip(0..8u8) {
            if w.offer(a, vec![k]).is_some() {
                w.sent(id, a);
            }
        }
        w.forget(&a);
        assert!(w.offer(a, vec![1]).is_some());
    }

    #[test]
    fn a_window_drops_the_oldest_beyond_its_bound() {
        let mut w = RequestWindow::<u32>::default();
        let a = PeerId::random();
        for id in 0..REQUESTS_IN_FLIGHT as u32 {
            let e = w.offer(a, vec![]).unwrap();
            assert!(e.is_empty());
            w.sent(id, a);
        }
        for k in 0..REQUESTS_WAITING_MAX + 5 {
            assert!(w.offer(a, (k as u32).to_be_bytes().to_vec()).is_none());
        }
        let (_, next) = w.done(&0).unwrap();
        assert_eq!(next, 5u32.to_be_bytes().to_vec());
    }
}
