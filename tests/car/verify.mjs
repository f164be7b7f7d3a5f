// Checks a CAR file written by tandem with libraries tandem shares no code with:
// @ipld/car (the CAR reader IPFS's JavaScript implementations use), @ipld/dag-cbor,
// multiformats and @noble/hashes' BLAKE3.
//
// Usage: node verify.mjs FILE.car
//
// Passes when the file reads as CARv1, its header is the canonical DAG-CBOR encoding
// of what it says, every block's CID is CIDv1 / raw / BLAKE3-256 and BLAKE3 of the
// block's bytes is that CID's digest, and every root is one of the blocks. Prints
// {"blocks": N, "roots": ["bafkr4i..."], "bytes": FILE_SIZE} and exits 0; otherwise
// prints each failure to stderr and exits 1 (2 for a usage or read error).

import { readFile } from 'node:fs/promises'
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { equals } from 'multiformats/bytes'
import { blake3 as blake3Hash } from '@noble/hashes/blake3'

const RAW = 0x55
const BLAKE3 = 0x1e

const blake3 = hasherFrom({ name: 'blake3', code: BLAKE3, encode: (bytes) => blake3Hash(bytes) })

/** The header's own bytes: a varint length, then that many bytes of DAG-CBOR. */
function headerBytes (bytes) {
  let len = 0
  let pos = 0
  for (let shift = 0; ; shift += 7) {
    if (pos >= bytes.length || shift > 49) throw new Error('bad header length varint')
    const b = bytes[pos++]
    len += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) break
  }
  return bytes.subarray(pos, pos + len)
}

/** Every reason `block` is not a raw BLAKE3 block whose CID matches its bytes. */
async function blockFaults (block) {
  const { cid, bytes } = block
  const faults = []
  if (cid.version !== 1) faults.push(`CID version ${cid.version}, expected 1`)
  if (cid.code !== RAW) faults.push(`codec 0x${cid.code.toString(16)}, expected raw (0x55)`)
  if (cid.multihash.code !== BLAKE3) {
    faults.push(`multihash 0x${cid.multihash.code.toString(16)}, expected blake3 (0x1e)`)
  }
  if (cid.multihash.size !== 32) faults.push(`digest of ${cid.multihash.size} bytes, expected 32`)
  const digest = await blake3.digest(bytes)
  if (!equals(digest.bytes, cid.multihash.bytes)) faults.push('BLAKE3 of the block does not match its CID')
  if (!CID.createV1(RAW, digest).equals(cid)) faults.push('CID differs from the one computed from its bytes')
  if (!CID.parse(cid.toString()).equals(cid)) faults.push('CID does not survive its text form')
  return faults
}

async function verify (path) {
  const bytes = await readFile(path)
  const reader = await CarReader.fromBytes(bytes)
  if (reader.version !== 1) throw new Error(`CAR version ${reader.version}, expected 1`)
  const roots = await reader.getRoots()
  const failures = []
  const canonical = dagCbor.encode({ version: 1, roots })
  if (!equals(canonical, headerBytes(bytes))) failures.push('header is not canonical DAG-CBOR')
  if (roots.length === 0) failures.push('no roots')
  const seen = new Set()
  let blocks = 0
  for await (const block of reader.blocks()) {
    blocks++
    seen.add(block.cid.toString())
    for (const fault of await blockFaults(block)) failures.push(`block ${block.cid}: ${fault}`)
  }
  for (const root of roots) {
    if (!seen.has(root.toString())) failures.push(`root ${root} is not among the blocks`)
  }
  return { failures, summary: { blocks, roots: roots.map(String), bytes: bytes.length } }
}

if (process.argv.length !== 3) {
  console.error('usage: node verify.mjs FILE.car')
  process.exit(2)
}
const path = process.argv[2]
let result
try {
  result = await verify(path)
} catch (e) {
  console.error(`${path}: not a readable CAR file: ${e.message}`)
  process.exit(2)
}
for (const failure of result.failures) console.error(`${path}: ${failure}`)
console.log(JSON.stringify(result.summary))
process.exit(result.failures.length === 0 ? 0 : 1)
