// One typist of the Yjs baseline for `tandem-bench central`.
//
//   node yjs-typist.mjs --url ws://127.0.0.1:P --room load --index I --peers N \
//                       --rate R --seconds S [--cursor-awareness]
//
// A plain Yjs client as apps deploy it: a Y.Doc, a y-websocket
// WebsocketProvider (with `ws` as the WebSocket implementation), and a Y.Text
// named `text` that it edits and observes.
//
// stdout carries JSON lines only, stdin carries the coordinator's lines:
//   -> {"ready":true}                 once the provider has synced
//   <- go T0                          T0 = CLOCK_MONOTONIC ns (process.hrtime.bigint())
//   -> {"seen":J,"count":c,"t":"ns"}  typist J's character count rose to c (J != I)
//   <- stop
//   -> {"done":true,"typed_ns":[...],"len":L,"hash":"sha256 hex","bytes_sent":B,
//       "bytes_received":B,"awareness_bytes_sent":A,"awareness_bytes_received":A}
// stdin closing ends the process. typed_ns[k] is read right after key k's
// insert returns, which is after y-websocket has handed the update to the
// socket: a sender preempted in between can be stamped after a receiver
// already saw the key (slightly negative latency on a loaded machine).

import crypto from 'node:crypto'
import readline from 'node:readline'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string', default: 'load' },
    index: { type: 'string' },
    peers: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
    // Off by default. When on, every key also publishes the cursor through
    // awareness, as editor bindings (y-codemirror, y-prosemirror) do.
    'cursor-awareness': { type: 'boolean', default: false }
  }
})
const I = Number(opt.index)
const N = Number(opt.peers)
const R = Number(opt.rate)
const S = Number(opt.seconds)
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
if (!opt.url || !(N >= 1 && N <= ALPHABET.length) || !(I >= 0 && I < N) || !(R > 0) || !(S > 0)) {
  process.stderr.write('usage: yjs-typist.mjs --url URL --room NAME --index I --peers N --rate R --seconds S\n')
  process.exit(2)
}
const KEYS = Math.round(R * S)
const MY_CHAR = ALPHABET[I]
const charToTypist = new Map([...ALPHABET.slice(0, N)].map((c, j) => [c, j]))

const now = () => process.hrtime.bigint() // CLOCK_MONOTONIC on Linux, same as the Rust side
const out = line => process.stdout.write(line)

// --- Byte counting --------------------------------------------------------
// Payload bytes of every WebSocket message this client sends or receives
// after `go` (frame and TCP/IP headers excluded; the server does not accept
// permessage-deflate, so payload = bytes framed). bytes_sent/bytes_received
// INCLUDE awareness; awareness_bytes_* is the part whose y-protocols message
// type (first varuint, a single byte here) is 1 = awareness. Stock behaviour
// that shows in these numbers: the server relays each update to every
// connection including its sender (so bytes_received includes our own keys
// coming back), and y-websocket's provider re-sends every awareness change
// it receives (so awareness_bytes_sent grows with N when others' states
// change, e.g. the 15 s awareness renewal or --cursor-awareness).
const MSG_AWARENESS = 1
const bytes = { sent: 0, received: 0, awarenessSent: 0, awarenessReceived: 0 }
let counting = false
const asBytes = data => (data instanceof ArrayBuffer ? new Uint8Array(data) : data)

// y-websocket does `new WebSocketPolyfill(url, protocols)`, assigns
// `onmessage` and calls `send(Uint8Array)`; a subclass of ws sees all of it.
class CountingWebSocket extends WebSocket {
  constructor (...args) {
    super(...args)
    this.on('message', data => {
      if (!counting) return
      const u8 = asBytes(data)
      bytes.received += u8.byteLength
      if (u8[0] === MSG_AWARENESS) bytes.awarenessReceived += u8.byteLength
    })
  }

  send (data, ...rest) {
    if (counting) {
      const u8 = asBytes(data)
      bytes.sent += u8.byteLength
      if (u8[0] === MSG_AWARENESS) bytes.awarenessSent += u8.byteLength
    }
    return super.send(data, ...rest)
  }
}

// --- Document and observation ---------------------------------------------
const doc = new Y.Doc()
const text = doc.getText('text')
const counts = new Array(N).fill(0)

// Running per-typist counts, updated from what each transaction inserted,
// never by rescanning the text. Not from `event.delta`: Yjs computes the
// delta by walking every item of the Y.Text, so it costs O(document) per
// update (measured here: 11 us per update without it, 84 us with it at 3,840
// chars, growing with the text), which with 32 typists on 2 cores would
// swamp the measurement. Instead take the items whose ids lie between the
// transaction's before- and after-state vectors: exactly the inserts the
// delta would list, found by binary search in Yjs's struct store.
// Only inserts exist in this benchmark, so counts only grow. A local
// transaction can only carry our own character, which is never reported, so
// local events are skipped (editor bindings likewise ignore their own
// changes). One event can carry several keys (a receiver may apply a few
// relayed updates at once): then one line with the new count.
text.observe(event => {
  const tr = event.transaction
  if (tr.local) return
  const t = now().toString()
  const touched = new Set()
  for (const [client, after] of tr.afterState) {
    const before = tr.beforeState.get(client) || 0
    if (after <= before) continue
    const structs = doc.store.clients.get(client)
    for (let i = Y.findIndexSS(structs, before); i < structs.length && structs[i].id.clock < after; i++) {
      const item = structs[i]
      if (!(item instanceof Y.Item) || item.deleted || item.parent !== text) continue
      if (!(item.content instanceof Y.ContentString)) continue
      // An item may straddle `before` or `after` (merged or split), so keep
      // only the part of it this transaction added. One char = one clock.
      const { clock } = item.id
      const added = item.content.str.slice(Math.max(before - clock, 0), Math.min(after - clock, item.length))
      for (const ch of added) {
        const j = charToTypist.get(ch)
        if (j !== undefined) { counts[j]++; touched.add(j) }
      }
    }
  }
  let lines = ''
  for (const j of touched) {
    if (j !== I) lines += `{"seen":${j},"count":${counts[j]},"t":"${t}"}\n`
  }
  if (lines) out(lines)
})

const provider = new WebsocketProvider(opt.url, opt.room, doc, {
  WebSocketPolyfill: CountingWebSocket,
  disableBc: true // one process per typist; no cross-tab channel to share
})
provider.awareness.setLocalStateField('user', { name: `typist-${I}` })

let ready = false
provider.on('sync', synced => {
  if (synced && !ready) {
    ready = true
    out('{"ready":true}\n')
  }
})

// --- Typing ----------------------------------------------------------------
// xorshift64 (13, 7, 17), the same generator as crates/bench; position =
// next() % (len + 1).
const MASK64 = (1n << 64n) - 1n
let rng = 0x2545F4914F6CDD1Dn ^ BigInt(I + 1)
const nextRandom = () => {
  rng ^= (rng << 13n) & MASK64
  rng ^= rng >> 7n
  rng ^= (rng << 17n) & MASK64
  return rng
}

const typedNs = []
let t0 = null
let stopped = false
// Key k is due at T0 + k/R s, staggered by I/(R*N) s so that the N typists
// interleave evenly instead of all hitting the server in the same instant.
const dueNs = k => t0 + BigInt(Math.round((k * 1e9) / R + (I * 1e9) / (R * N)))

const typeKey = () => {
  const pos = Number(nextRandom() % BigInt(text.length + 1))
  text.insert(pos, MY_CHAR) // one insert = one transaction = one update sent
  typedNs.push(now().toString())
  if (opt['cursor-awareness']) {
    const at = Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text, pos + 1))
    provider.awareness.setLocalStateField('cursor', { anchor: at, head: at })
  }
}

// Timers only, no spinning: sleep in whole milliseconds until a key is due
// (or at most 1 ms early), type it, then yield to the event loop before the
// next one so that incoming updates are handled even when running late.
const tick = () => {
  if (stopped || typedNs.length >= KEYS) return
  const waitMs = Number(dueNs(typedNs.length) - now()) / 1e6
  if (waitMs > 1) {
    setTimeout(tick, Math.floor(waitMs))
    return
  }
  typeKey()
  setImmediate(tick)
}

// --- Coordinator protocol --------------------------------------------------
const finish = () => {
  if (stopped) return
  stopped = true
  const s = text.toString()
  const done = {
    done: true,
    typed_ns: typedNs,
    len: text.length,
    hash: crypto.createHash('sha256').update(s, 'utf8').digest('hex'),
    bytes_sent: bytes.sent,
    bytes_received: bytes.received,
    awareness_bytes_sent: bytes.awarenessSent,
    awareness_bytes_received: bytes.awarenessReceived
  }
  counting = false
  out(JSON.stringify(done) + '\n')
  provider.destroy()
  // Exit once the line is flushed (pipes are synchronous on Linux anyway).
  process.stdout.write('', () => process.exit(0))
}

const input = readline.createInterface({ input: process.stdin })
input.on('line', raw => {
  const line = raw.trim()
  const go = /^go (\d+)$/.exec(line)
  if (go && t0 === null) {
    t0 = BigInt(go[1])
    counting = true
    tick()
  } else if (line === 'stop') {
    finish()
  } else if (line) {
    process.stderr.write(`yjs-typist ${I}: ignoring stdin line ${JSON.stringify(line)}\n`)
  }
})
input.on('close', () => process.exit(0))
