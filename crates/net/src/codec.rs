//! The framing of `/tandem/sync/1`: one message per request and per response, its
//! header (length, version, kind) checked against the kind's limit before the body is
//! read; and the piecewise writing every tandem protocol uses (see [`write_pieces`]).

use std::io;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::protocol::{self, Message};

/// The codec of `/tandem/sync/1`: one framed [`Message`] per request and response.
#[derive(Clone, Default)]
pub struct SyncCodec;

pub(crate) async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Message> {
    let mut head = [0u8; 6];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    protocol::check_header(len, head[4], head[5])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len - 2];
    io.read_exact(&mut body).await?;
    SYNC_BYTES_RECEIVED.fetch_add(4 + len as u64, std::sync::atomic::Ordering::Relaxed);
    protocol::decode_body(head[5], &body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Largest single write to a stream (see `write_frame`).
const WRITE_PIECE: usize = 4096;

/// Bytes of `/tandem/sync/1` frames this process has written (for benchmarks).
pub static SYNC_BYTES_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Bytes of `/tandem/sync/1` frames this process has read whole (for benchmarks).
pub static SYNC_BYTES_RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The bytes sent, by message kind (the frame's kind byte, 1 to 7).
pub static SYNC_BYTES_BY_KIND: [std::sync::atomic::AtomicU64; 8] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 8];

/// Count `frame` in [`SYNC_BYTES_SENT`] and [`SYNC_BYTES_BY_KIND`].
pub(crate) fn count_sent(frame: &[u8]) {
    SYNC_BYTES_SENT.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
    SYNC_BYTES_BY_KIND[(frame[5] as usize).min(7)]
        .fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(io: &mut T, msg: Message) -> io::Result<()> {
    let frame = protocol::encode(&msg);
    count_sent(&frame);
    write_pieces(io, &frame).await
}

/// Write `bytes` and close the stream, in flushed pieces: libp2p-webrtc (0.10 alpha)
/// batches unflushed writes into one data-channel message, and its reader takes at
/// most 8192 bytes per message ("Short buffer (size: 8192) to be filled"): any frame
/// over ~8 KB, such as a fresh join, failed over WebRTC.
pub(crate) async fn write_pieces<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    write_flushed(io, bytes).await?;
    io.close().await
}

/// Write `bytes` in flushed pieces (see [`write_pieces`]), leaving the stream open.
pub(crate) async fn write_flushed<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    for piece in bytes.chunks(WRITE_PIECE) {
        io.write_all(piece).await?;
        io.flush().await?;
    }
    Ok(())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Message;
    type Response = Message;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Message) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Message) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, res).await
    }
}
