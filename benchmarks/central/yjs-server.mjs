// Central Yjs sync server for the `tandem-bench central` baseline.
//
// Which server: `@y/websocket-server` (the maintained home of y-websocket's
// server since y-websocket 2.x split it out), pinned at 0.1.1. Its latest
// release, 0.1.5, depends on the yjs 14 *pre-release* (`yjs@^14.0.0-7`,
// `@y/protocols`), while every released client (`y-websocket` 3.1.0) is built
// on yjs 13; 0.1.1 is the newest release that peers on yjs ^13.5.6, so server
// and clients share one `yjs` 13.6.33 copy. It runs fine on Node 20.
//
// This file is the package's own `src/server.js` (an http server whose
// upgrade requests go to `setupWSConnection`), with three changes only:
// 127.0.0.1 and `--port P` (0 = any free port), a one-line JSON ready signal
// on stdout, and shutdown on SIGTERM or stdin EOF. It uses `ws` 8 (the
// maintained line, the same copy the clients use) rather than the ws 6 that
// the package lists as an optional dependency; setupWSConnection only uses
// send/ping/close/on('message'|'close'|'pong'), which are the same in both.
// No persistence (YPERSISTENCE unset) and no HTTP callback, i.e. the default
// in-memory deployment; document GC is on, as by default.

import fs from 'node:fs'
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

const argPort = process.argv.indexOf('--port')
const port = argPort >= 0 ? Number(process.argv[argPort + 1]) : 0
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`yjs-server: bad --port ${process.argv[argPort + 1]}\n`)
  process.exit(2)
}

// setupWSConnection reports protocol errors with console.error (stderr);
// nothing in it writes to stdout, which the coordinator reads as JSON lines.
const wss = new WebSocketServer({ noServer: true })
wss.on('connection', setupWSConnection)

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' })
  res.end('okay')
})
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, ws => wss.emit('connection', ws, req))
})

server.listen(port, '127.0.0.1', () => {
  const line = { ready: true, port: server.address().port, pid: process.pid }
  process.stdout.write(JSON.stringify(line) + '\n')
})

// Stop on SIGTERM/SIGINT, or when the coordinator's end of stdin closes (so a
// killed coordinator doesn't leave a server behind). stdin is watched only
// when it is a pipe or socket: started with stdin from /dev/null it would
// read EOF at once. setupWSConnection keeps a ping interval per connection,
// so exit explicitly rather than waiting for the event loop to drain.
const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
const stdin = fs.fstatSync(0)
if (stdin.isFIFO() || stdin.isSocket()) {
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
}
