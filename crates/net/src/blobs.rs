//! `/tandem/blobs/1`: fetch one blob of a document's history from a peer.
//!
//! Request: `version: u8 | doc: 16 bytes | hash: 32 bytes` (BLAKE3 of the blob).
//! Response: `version: u8 | status: u8 | len: u32 BE | body`, where status 0 carries
//! the blob in bao form (iroh-blobs' verified-streaming encoding: 8-byte size, then
//! the BLAKE3 tree interleaved with the data), and status 1 a refusal (a
//! [`crate::protocol::Code`], u16 BE, then a UTF-8 reason).
//!
//! The receiver never trusts the body: it is imported with
//! [`tandem_store::BlobStore::import_bao`], which checks every 16 KiB group against
//! the hash it asked for before anything is stored, so a wrong, truncated or padded
//! blob is refused and the peer that sent it is dropped.

use std::io;

use futures::AsyncReadExt;
use libp2p::StreamProtocol;

use crate::protocol::{DocId, Hash, Refusal};

pub const PROTOCOL: &str = "/tandem/blobs/1";
/// 2: a refusal carries a code.
const VERSION: u8 = 2;
/// Largest blob served or accepted (a snapshot of a very large document).
pub const MAX_BLOB: u64 = 256 << 20;
const FOUND: u8 = 0;
const REFUSED: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRequest {
    pub doc: DocId,
    pub hash: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobResponse {
    /// The blob in bao form (unverified until imported).
    Found(Vec<u8>),
    Refused(Refusal),
}

/// Bytes of blob responses this process has read (for benchmarks).
pub static BLOB_BYTES_RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most bytes a bao encoding of a blob of at most [`MAX_BLOB`] bytes can take.
fn max_body() -> usize {
    // Size prefix, data, and 64 bytes of tree per 16 KiB group (plus slack).
    (8 + MAX_BLOB + MAX_BLOB / 256 + 4096) as usize
}

#[derive(Clone, Default)]
pub struct BlobCodec;

impl libp2p::request_response::Codec for BlobCodec {
    type Protocol = StreamProtocol;
    type Request = BlobRequest;
    type Response = BlobResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<BlobRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = [0u8; 49];
        io.read_exact(&mut buf).await?;
        if buf[0] != VERSION {
            return Err(invalid(format!("blob protocol version {}, this peer speaks {VERSION}", buf[0])));
        }
        Ok(BlobRequest {
            doc: buf[1..17].try_into().expect("16 bytes"),
            hash: buf[17..49].try_into().expect("32 bytes"),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<BlobResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut head = [0u8; 6];
        io.read_exact(&mut head).await?;
        if head[0] != VERSION {
            return Err(invalid(format!("blob protocol version {}, this peer speaks {VERSION}", head[0])));
        }
        let len = u32::from_be_bytes(head[2..6].try_into().expect("4 bytes")) as usize;
        if len > max_body() {
            return Err(invalid(format!("a blob of {len} bytes, over the limit of {}", max_body())));
        }
        let mut body = Vec::new();
        // `take` bounds the read; a peer that sends less is caught below.
        io.take(len as u64).read_to_end(&mut body).await?;
        BLOB_BYTES_RECEIVED.fetch_add(6 + body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if body.len() != len {
            return Err(invalid(format!("the blob ended after {} of {len} bytes", body.len())));
        }
        match head[1] {
            FOUND => Ok(BlobResponse::Found(body)),
            REFUSED => Refusal::decode(&body).map(BlobResponse::Refused).map_err(|e| invalid(e.to_string())),
            s => Err(invalid(format!("unknown blob status {s}"))),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: BlobRequest) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        let mut buf = Vec::with_capacity(49);
        buf.push(VERSION);
        buf.extend_from_slice(&req.doc);
        buf.extend_from_slice(&req.hash);
        crate::codec::write_pieces(io, &buf).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: BlobResponse) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        let mut refusal = Vec::new();
        let (status, body) = match &res {
            BlobResponse::Found(bao) => (FOUND, bao.as_slice()),
            BlobResponse::Refused(why) => {
                why.encode(&mut refusal);
                (REFUSED, refusal.as_slice())
            }
        };
        let mut buf = Vec::with_capacity(6 + body.len());
        buf.push(VERSION);
        buf.push(status);
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(body);
        crate::codec::write_pieces(io, &buf).await
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
