//! Blobs as a CARv1 file (<https://ipld.io/specs/transport/car/carv1/>), the archive
//! format IPFS implementations import and export, so that a document's history can be
//! handed to any of them (`ipfs dag import`) and served, checked and pinned there.
//!
//! A blob's hash already is its BLAKE3 digest, so each blob becomes one block whose
//! CID is that digest behind a fixed prefix: CIDv1, codec `raw` (the block is the
//! blob's bytes, uninterpreted), multihash BLAKE3-256. Nothing is re-encoded or
//! re-hashed under another function, and the CID any IPFS node computes for the
//! block is the one written here.
//!
//! The file is a varint-framed DAG-CBOR header `{"roots": [CID, ...], "version": 1}`
//! followed by one `varint(len) || CID || bytes` section per block.
//!
//! [`read_car`] is the other direction, kept small: it checks framing and header
//! and returns the sections, for tests and for callers that verify blocks themselves.

use std::io::{self, Write};

use crate::blobs::{BlobHash, blob_hash};

/// CID version 1.
const CID_V1: u8 = 0x01;
/// Multicodec `raw`.
const RAW: u8 = 0x55;
/// Multihash code of BLAKE3 (here with a 32-byte digest).
const BLAKE3: u8 = 0x1e;
const DIGEST_LEN: u8 = 32;
/// Each of the four is below 0x80, so each is a one-byte varint.
const CID_PREFIX: [u8; 4] = [CID_V1, RAW, BLAKE3, DIGEST_LEN];
/// Bytes in the binary CID of a blob.
pub const CID_LEN: usize = CID_PREFIX.len() + DIGEST_LEN as usize;

/// The DAG-CBOR tag that marks a CID.
const CID_TAG: u64 = 42;
/// In DAG-CBOR a CID's byte string starts with the multibase "identity" prefix.
const MULTIBASE_IDENTITY: u8 = 0x00;
/// Longest varint the multiformats spec allows (63 bits of value).
const VARINT_MAX_BYTES: u32 = 9;

/// CBOR major types used by the header.
const UINT: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// The binary CID of blob `hash`: CIDv1, raw, BLAKE3-256.
pub fn cid_bytes(hash: &BlobHash) -> [u8; CID_LEN] {
    let mut cid = [0u8; CID_LEN];
    cid[..CID_PREFIX.len()].copy_from_slice(&CID_PREFIX);
    cid[CID_PREFIX.len()..].copy_from_slice(hash.as_bytes());
    cid
}

/// The CID of blob `hash` as IPFS prints it: multibase base32, lower case (`bafkr4i...`).
pub fn cid_string(hash: &BlobHash) -> String {
    let mut text = String::from("b");
    base32_lower(&cid_bytes(hash), &mut text);
    text
}

/// The blob hash a binary CID names, when it is a raw BLAKE3-256 CIDv1 (the only
/// kind [`write_car`] writes).
pub fn hash_from_cid(cid: &[u8]) -> Option<BlobHash> {
    let digest: [u8; 32] = cid.strip_prefix(&CID_PREFIX)?.try_into().ok()?;
    Some(BlobHash::from(digest))
}

/// Write a CARv1 file to `out`: a header naming `roots`, then every block, each under
/// the CID of its hash. Returns the bytes written.
///
/// Each block's bytes are hashed first, and a block that does not match its hash
/// stops the write with an error naming it, so a CAR never carries a block its CID
/// does not verify. `out` then holds a partial file: write to a temporary file and
/// rename it on success. At least one root is required (some readers refuse a CAR
/// without); roots should be among the blocks for the file to stand alone, which is
/// not checked here. `out` gets several small writes per block: buffer it.
pub fn write_car<W: Write + ?Sized>(
    out: &mut W,
    roots: &[BlobHash],
    blocks: impl IntoIterator<Item = (BlobHash, Vec<u8>)>,
) -> io::Result<u64> {
    if roots.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a CAR file needs at least one root"));
    }
    let mut written = write_section(out, &[&header(roots)])?;
    for (hash, data) in blocks {
        let actual = blob_hash(&data);
        if actual != hash {
            let msg = format!(
                "blob {hash} does not match its BLAKE3 hash (its bytes hash to {actual}); \
                 the CAR file was left incomplete and must be discarded"
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        written += write_section(out, &[&cid_bytes(&hash), &data])?;
    }
    Ok(written)
}

/// One varint-length-prefixed section made of `parts`.
fn write_section<W: Write + ?Sized>(out: &mut W, parts: &[&[u8]]) -> io::Result<u64> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut prefix = Vec::with_capacity(VARINT_MAX_BYTES as usize);
    put_varint(&mut prefix, len as u64);
    out.write_all(&prefix)?;
    for part in parts {
        out.write_all(part)?;
    }
    Ok((prefix.len() + len) as u64)
}

/// The header in canonical DAG-CBOR: map keys sorted shorter first ("roots" before
/// "version"), every length in its shortest form, CIDs as tag 42.
fn header(roots: &[BlobHash]) -> Vec<u8> {
    let mut cbor = Vec::with_capacity(16 + roots.len() * (CID_LEN + 4));
    put_cbor_head(&mut cbor, MAP, 2);
    put_cbor_text(&mut cbor, "roots");
    put_cbor_head(&mut cbor, ARRAY, roots.len() as u64);
    for root in roots {
        put_cbor_head(&mut cbor, TAG, CID_TAG);
        put_cbor_head(&mut cbor, BYTES, 1 + CID_LEN as u64);
        cbor.push(MULTIBASE_IDENTITY);
        cbor.extend_from_slice(&cid_bytes(root));
    }
    put_cbor_text(&mut cbor, "version");
    put_cbor_head(&mut cbor, UINT, 1);
    cbor
}

fn put_cbor_text(out: &mut Vec<u8>, text: &str) {
    put_cbor_head(out, TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A CBOR item head: major type and argument, in the shortest form (DAG-CBOR
/// accepts no other).
fn put_cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..24 => out.push(major | value as u8),
        24..0x100 => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..0x1_0000 => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..0x1_0000_0000 => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Unsigned LEB128, as multiformats' unsigned-varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// RFC 4648 base32, lower case, no padding (multibase `b`).
fn base32_lower(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[(buffer >> bits) as usize & 31] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[(buffer << (5 - bits)) as usize & 31] as char);
    }
}

/// A CAR file's contents, as read by [`read_car`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    /// The binary CIDs the header names.
    pub roots: Vec<Vec<u8>>,
    pub blocks: Vec<CarBlock>,
}

/// One block: its binary CID and its bytes, not verified against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarBlock {
    pub cid: Vec<u8>,
    pub data: Vec<u8>,
}

/// Read a CARv1 file. Framing, header and CID syntax are checked (any CIDv0 or
/// CIDv1, not only the kind [`write_car`] writes); whether a block's bytes match
/// its CID is left to the caller ([`hash_from_cid`] and [`blob_hash`] for ours).
/// Bad or truncated input is an error saying where, never a panic, and no length
/// read from the input is trusted beyond the bytes actually there.
pub fn read_car(bytes: &[u8]) -> Result<Car, String> {
    let mut input = Input::new(bytes);
    let header_len = input.varint().map_err(|e| format!("CAR header length: {e}"))?;
    let header = input.take(header_len).map_err(|e| format!("CAR header: {e}"))?;
    let roots = read_header(header).map_err(|e| format!("CAR header: {e}"))?;
    let mut blocks = Vec::new();
    while !input.is_empty() {
        let at = input.pos;
        let block = read_block(&mut input).map_err(|e| format!("CAR block at byte {at}: {e}"))?;
        blocks.push(block);
    }
    Ok(Car { roots, blocks })
}

fn read_block(input: &mut Input) -> Result<CarBlock, String> {
    let len = input.varint()?;
    let section = input.take(len)?;
    let cid_len = cid_len(section)?;
    let (cid, data) = section.split_at(cid_len);
    Ok(CarBlock { cid: cid.to_vec(), data: data.to_vec() })
}

/// The roots of a header `{"roots": [...], "version": 1}` (keys in either order).
fn read_header(header: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut cbor = Input::new(header);
    let entries = cbor.cbor_head(MAP)?;
    let (mut roots, mut version) = (None, None);
    for _ in 0..entries {
        let key_len = cbor.cbor_head(TEXT)?;
        match cbor.take(key_len)? {
            b"roots" if roots.is_none() => roots = Some(read_roots(&mut cbor)?),
            b"version" if version.is_none() => version = Some(cbor.cbor_head(UINT)?),
            key => return Err(format!("unexpected or repeated key {:?}", String::from_utf8_lossy(key))),
        }
    }
    if !cbor.is_empty() {
        return Err("bytes after the header map".into());
    }
    match (roots, version) {
        (Some(roots), Some(1)) => Ok(roots),
        (_, Some(v)) if v != 1 => Err(format!("version {v}; only CARv1 is read")),
        _ => Err("\"roots\" or \"version\" missing".into()),
    }
}

fn read_roots(cbor: &mut Input) -> Result<Vec<Vec<u8>>, String> {
    let count = cbor.cbor_head(ARRAY)?;
    let mut roots = Vec::new();
    for _ in 0..count {
        if cbor.cbor_head(TAG)? != CID_TAG {
            return Err("a root that is not a CID (tag 42)".into());
        }
        let len = cbor.cbor_head(BYTES)?;
        let cid = match cbor.take(len)? {
            [MULTIBASE_IDENTITY, cid @ ..] => cid,
            _ => return Err("a root CID without its 0x00 prefix".into()),
        };
        if cid_len(cid)? != cid.len() {
            return Err("a root CID with trailing bytes".into());
        }
        roots.push(cid.to_vec());
    }
    Ok(roots)
}

/// Length of the CID at the start of `bytes`: CIDv0 (a bare sha2-256 multihash) or
/// CIDv1 (version, codec, multihash code, digest length, digest).
fn cid_len(bytes: &[u8]) -> Result<usize, String> {
    const CID_V0_LEN: usize = 34;
    if bytes.starts_with(&[0x12, 0x20]) {
        return if bytes.len() >= CID_V0_LEN { Ok(CID_V0_LEN) } else { Err("truncated CIDv0".into()) };
    }
    let mut cid = Input::new(bytes);
    let version = cid.varint()?;
    if version != 1 {
        return Err(format!("CID version {version}; expected 1"));
    }
    let _codec = cid.varint()?;
    let _hash_code = cid.varint()?;
    let digest_len = cid.varint()?;
    cid.take(digest_len).map_err(|e| format!("CID digest: {e}"))?;
    Ok(cid.pos)
}

/// A cursor over untrusted bytes: every read is checked against what is left.
struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Input { bytes, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.pos;
        let len = usize::try_from(len).ok().filter(|&len| len <= left).ok_or_else(|| {
            format!("{len} bytes announced at byte {}, only {left} left (truncated?)", self.pos)
        })?;
        let taken = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned varint in its shortest form, at most 9 bytes.
    fn varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..VARINT_MAX_BYTES).map(|i| i * 7) {
            let byte = self.byte().map_err(|_| format!("truncated varint at byte {start}"))?;
            if byte == 0 && shift > 0 {
                return Err(format!("varint at byte {start} is not in its shortest form"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint at byte {start} is longer than {VARINT_MAX_BYTES} bytes"))
    }

    /// The argument of a CBOR head of major type `major` (definite lengths only).
    fn cbor_head(&mut self, major: u8) -> Result<u64, String> {
        let at = self.pos;
        let head = self.byte()?;
        if head >> 5 != major {
            return Err(format!("CBOR major type {} at byte {at}; expected {major}", head >> 5));
        }
        let arg = |bytes: &[u8]| bytes.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
        match head & 31 {
            info @ 0..24 => Ok(u64::from(info)),
            24 => Ok(arg(self.take(1)?)),
            25 => Ok(arg(self.take(2)?)),
            26 => Ok(arg(self.take(4)?)),
            27 => Ok(arg(self.take(8)?)),
            _ => Err(format!("unsupported CBOR head {head:#04x} at byte {at}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(bytes: &[u8]) -> (BlobHash, Vec<u8>) {
        (blob_hash(bytes), bytes.to_vec())
    }

    /// Three blobs, the last spanning several 16 KiB chunk groups.
    fn blobs() -> Vec<(BlobHash, Vec<u8>)> {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        vec![blob(b"hello"), blob(b""), blob(&big)]
    }

    fn car_of(roots: &[BlobHash], blocks: &[(BlobHash, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let written = write_car(&mut out, roots, blocks.iter().cloned()).unwrap();
        assert_eq!(written, out.len() as u64);
        out
    }

    #[test]
    fn cid_string_of_hello_matches_python_multiformats() {
        // Computed independently: multiformats.CID("base32", 1, "raw",
        // multihash.wrap(blake3(b"hello").digest(), "blake3")).
        let hash = blob_hash(b"hello");
        assert_eq!(cid_string(&hash), "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4");
        assert_eq!(cid_bytes(&hash)[..4], [0x01, 0x55, 0x1e, 0x20]);
        assert_eq!(hash_from_cid(&cid_bytes(&hash)), Some(hash));
    }

    #[test]
    fn written_car_reads_back_block_for_block() {
        let blocks = blobs();
        let roots = [blocks[2].0, blocks[0].0];
        let car = read_car(&car_of(&roots, &blocks)).unwrap();
        assert_eq!(car.roots, roots.map(|r| cid_bytes(&r).to_vec()));
        assert_eq!(car.blocks.len(), blocks.len());
        for (read, (hash, data)) in car.blocks.iter().zip(&blocks) {
            assert_eq!(hash_from_cid(&read.cid), Some(*hash));
            assert_eq!(&read.data, data);
        }
    }

    #[test]
    fn header_is_canonical_dag_cbor() {
        let root = blob_hash(b"hello");
        let mut expected = vec![0xa2, 0x65];
        expected.extend_from_slice(b"roots");
        expected.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
        expected.extend_from_slice(&cid_bytes(&root));
        expected.push(0x67);
        expected.extend_from_slice(b"version");
        expected.push(0x01);
        let car = car_of(&[root], &[]);
        assert_eq!(car[0] as usize, expected.len());
        assert_eq!(car[1..], expected);
    }

    #[test]
    fn block_not_matching_its_hash_is_never_written() {
        let (hello, _) = blob(b"hello");
        let mut out = Vec::new();
        let err = write_car(&mut out, &[hello], [blob(b"ok"), (hello, b"jello".to_vec())]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&hello.to_hex()), "{err}");
        let partial = read_car(&out).unwrap();
        assert_eq!(partial.blocks.len(), 1, "only the good block before it was written");
    }

    #[test]
    fn car_without_roots_is_refused() {
        let err = write_car(&mut Vec::new(), &[], [blob(b"hello")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn truncated_car_is_an_error_unless_cut_between_blocks() {
        let blocks = blobs();
        let roots = [blocks[0].0];
        let car = car_of(&roots, &blocks);
        let boundaries: Vec<usize> = (0..=blocks.len()).map(|n| car_of(&roots, &blocks[..n]).len()).collect();
        for cut in 0..car.len() {
            let read = read_car(&car[..cut]);
            match boundaries.iter().position(|&b| b == cut) {
                Some(n) => assert_eq!(read.unwrap().blocks.len(), n, "cut at {cut}"),
                None => assert!(read.is_err(), "cut at {cut} read as {read:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: [&[u8]; 8] = [
            b"",
            &[0xff; 12],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            &[0x80, 0x00],
            &[0x03, 0x83, 0x01, 0x02],
            &[0x02, 0xa1, 0x61],
            &[0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02],
            b"not a car file at all",
        ];
        for bytes in cases {
            assert!(read_car(bytes).is_err(), "{bytes:?}");
        }
        // Arbitrary bytes (a fixed pseudo-random sequence) must not panic either.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2_000 {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = read_car(&bytes);
        }
    }

    #[test]
    fn corrupted_block_reads_but_fails_its_hash() {
        let blocks = blobs();
        let mut car = car_of(&[blocks[0].0], &blocks);
        let last = car.len() - 1;
        car[last] ^= 1;
        let read = read_car(&car).unwrap();
        let block = &read.blocks[2];
        assert_ne!(hash_from_cid(&block.cid), Some(blob_hash(&block.data)));
    }
}
