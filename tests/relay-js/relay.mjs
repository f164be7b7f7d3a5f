// A circuit relay v2 server and Kademlia DHT server built with js-libp2p, an
// implementation that shares no code with tandem's (rust-libp2p): `node relay.mjs IP
// PORT` listens on TCP, prints {"peer_id", "addrs"} as one line, and serves until it
// gets SIGTERM. Its relay limits are raised from js-libp2p's defaults (2 minutes,
// 128 KiB a circuit) for editing; its DHT keeps private addresses (the NAT lab's
// are not global), which js-libp2p drops by default.

// libp2p 3 uses Promise.withResolvers (Node 22); Node 20, Debian's, lacks it.
if (!Promise.withResolvers) {
  Promise.withResolvers = () => {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { circuitRelayServer } = await import('@libp2p/circuit-relay-v2')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')

const [ip, port] = process.argv.slice(2)
if (!ip || !port) {
  console.error('usage: node relay.mjs IP PORT')
  process.exit(2)
}
const hour = 60 * 60 * 1000
const node = await createLibp2p({
  addresses: { listen: [`/ip4/${ip}/tcp/${port}`] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: false,
      peerInfoMapper: passthroughMapper
    }),
    relay: circuitRelayServer({
      reservations: {
        maxReservations: 64,
        defaultDurationLimit: 12 * hour,
        defaultDataLimit: 1n << 30n
      }
    })
  }
})
const addrs = node.getMultiaddrs().map(String)
console.log(JSON.stringify({ peer_id: node.peerId.toString(), addrs }))
const stop = async () => {
  await node.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
