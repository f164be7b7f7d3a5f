//! A real node on 127.0.0.1 fed bad requests by another real swarm: each is refused
//! with a reason, and the session goes on serving good requests afterwards.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_net::blobs::{BlobRequest, BlobResponse};
use tandem_net::node::{self, BehaviourEvent, Node, Transport};
use tandem_net::protocol::{BlobRef, Message};
use tandem_store::{BlobStore, Service, Workspace};

async fn ask(swarm: &mut libp2p::Swarm<node::Behaviour>, peer: libp2p::PeerId, msg: Message) -> Message {
    let id = swarm.behaviour_mut().sync_mut().send_request(&peer, msg);
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response }, ..
                })) = ev
                    && request_id == id {
                        return response;
                    }
            }
            _ = &mut deadline => panic!("no answer"),
        }
    }
}

async fn ask_blob(
    swarm: &mut libp2p::Swarm<node::Behaviour>,
    peer: libp2p::PeerId,
    req: BlobRequest,
) -> BlobResponse {
    let id = swarm.behaviour_mut().blobs_mut().send_request(&peer, req);
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response }, ..
                })) = ev
                    && request_id == id {
                        return response;
                    }
            }
            _ = &mut deadline => panic!("no answer"),
        }
    }
}

/// A peer that lists a blob and then serves something else for it: wrong bytes, a
/// cut-off encoding, or padding. Each time the joiner refuses it (nothing stored,
/// the blob named in the error) and drops the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_wrong_or_truncated_blobs_is_detected_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let source = BlobStore::open(&dir.path().join("source")).unwrap();
    let real: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let hash = source.put("t/real".into(), real.clone()).unwrap();
    let decoy = source.put("t/decoy".into(), vec![7u8; 70_000]).unwrap();
    let good = source.export_bao(hash).unwrap();
    let wrong = source.export_bao(decoy).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() - 10] ^= 1;
    let cut = good[..good.len() - 1000].to_vec();
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 64]);
    let doc = [3u8; 16];
    for (case, answer) in
        [("wrong blob", wrong), ("flipped byte", flipped), ("truncated", cut), ("padded", padded)]
    {
        let (mut liar, listeners) = node::swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            node::webrtc_certificate(dir.path()).unwrap(),
            Transport::Quic,
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        let addrs = node::listen_addrs(&mut liar, listeners.len()).await;
        let liar_id = *liar.local_peer_id();
        let size = real.len() as u64;
        let serving = tokio::spawn(async move {
            loop {
                match liar.select_next_some().await {
                    SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    })) => {
                        let blobs = vec![BlobRef { hash: *hash.as_bytes(), size, snapshot: true }];
                        let _ = liar
                            .behaviour_mut()
                            .sync_mut()
                            .send_response(channel, Message::History { doc, blobs });
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    })) => {
                        let _ = liar
                            .behaviour_mut()
                            .blobs_mut()
                            .send_response(channel, BlobResponse::Found(answer.clone()));
                    }
                    _ => {}
                }
            }
        });
        let joiner_dir = tempfile::tempdir().unwrap();
        let (mut joiner, _) = node::swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            node::webrtc_certificate(joiner_dir.path()).unwrap(),
            Transport::Quic,
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        let store = BlobStore::open(&joiner_dir.path().join("blobs")).unwrap();
        let result = node::fetch(&mut joiner, liar_id, &addrs, doc, Transport::Quic, &store).await;
        let err = match result {
            Err(e) => e,
            Ok(_) => panic!("{case}: a bad blob was accepted"),
        };
        assert!(err.contains(&hash.to_string()) && err.contains("dropped"), "{case}: {err}");
        assert!(!store.has(hash), "{case}: the bad blob was stored");
        // The connection closes once the swarm processes the disconnect.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while joiner.is_connected(&liar_id) && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(100), joiner.select_next_some()).await;
        }
        assert!(!joiner.is_connected(&liar_id), "{case}: the lying peer is still connected");
        serving.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_the_session_continues() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.txt");
    std::fs::write(&file, "hello\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let author = Author::new("a", ActorId::from(vec![1u8; 16]));
    let service = Arc::new(Service::own(ws, author, DocConfig::default()).unwrap().unwrap());
    service.open(&file, false).unwrap();
    let doc_hex = service.with_open(&file, |s| Ok(s.doc_id().to_owned())).unwrap();
    let doc: [u8; 16] = (0..16)
        .map(|i| u8::from_str_radix(&doc_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();

    for transport in [Transport::Quic, Transport::Webrtc, Transport::Tcp] {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let cert = node::webrtc_certificate(dir.path()).unwrap();
        let (mut swarm, listeners) =
            node::swarm(key.clone(), cert, transport, "127.0.0.1".parse().unwrap()).unwrap();
        let addrs = node::listen_addrs(&mut swarm, listeners.len()).await;
        let peer = key.public().to_peer_id();
        let node = Node::new(swarm, Arc::clone(&service), file.clone(), doc, transport);
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (_live_tx, live_rx) = tokio::sync::mpsc::unbounded_channel();
        let running = tokio::spawn(node.run(rx, live_rx));

        let other = tempfile::tempdir().unwrap();
        let (mut client, _) = node::swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            node::webrtc_certificate(other.path()).unwrap(),
            transport,
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        client.dial(libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build()).unwrap();

        // Another document.
        let reply = ask(&mut client, peer, Message::Need { doc: [9; 16], have: vec![] }).await;
        assert!(
            matches!(reply, Message::Error { ref message } if message.contains("does not share")),
            "{reply:?}"
        );
        // Changes that are not Automerge changes.
        let reply =
            ask(&mut client, peer, Message::Changes { doc, envelopes: vec![b"garbage".to_vec()] }).await;
        assert!(
            matches!(reply, Message::Error { ref message } if message.contains("does not decode")),
            "{reply:?}"
        );
        // A response sent as a request.
        let reply = ask(&mut client, peer, Message::Ack { heads: vec![] }).await;
        assert!(matches!(reply, Message::Error { .. }), "{reply:?}");
        // Live edits: damaged, and well-formed but for a text of another length.
        let reply = ask(&mut client, peer, Message::Live { doc, envelope: vec![16, 1, 2] }).await;
        assert!(
            matches!(reply, Message::Error { ref message } if message.contains("truncated")),
            "{reply:?}"
        );
        let live = tandem_doc::LiveEdit {
            base: vec![],
            seq: 0,
            edit: tandem_doc::ChangeSet::splice(3, 0, 0, "zzz").unwrap(),
        };
        let envelope = tandem_net::protocol::encode_live(&ActorId::from(vec![5u8; 16]), &live);
        let reply = ask(&mut client, peer, Message::Live { doc, envelope }).await;
        assert!(matches!(reply, Message::Ack { .. }), "{reply:?}");
        // The session is still good: the history's blobs are listed, snapshot first...
        let reply = ask(&mut client, peer, Message::Need { doc, have: vec![] }).await;
        let blobs = match reply {
            Message::History { blobs, .. } => blobs,
            other => panic!("{other:?}"),
        };
        assert!(blobs[0].snapshot && blobs[0].size > 0, "{blobs:?}");
        // ...and served only for this document, and only blobs of its history.
        let reply = ask_blob(&mut client, peer, BlobRequest { doc: [9; 16], hash: blobs[0].hash }).await;
        assert!(
            matches!(reply, BlobResponse::Refused(ref why) if why.contains("does not share")),
            "{reply:?}"
        );
        let stranger = *blake3::hash(b"not in this history").as_bytes();
        let reply = ask_blob(&mut client, peer, BlobRequest { doc, hash: stranger }).await;
        assert!(matches!(reply, BlobResponse::Refused(ref why) if why.contains("not part of")), "{reply:?}");
        // Fetched for real, verified into another store.
        let store = BlobStore::open(&other.path().join(format!("blobs-{}", transport.name()))).unwrap();
        let got = node::fetch_blobs(&mut client, peer, doc, &blobs, &store).await.unwrap();
        let snapshot = store.get(got[0]).unwrap();
        let loaded = tandem_doc::Document::load(
            &snapshot,
            vec![],
            Author::new("b", ActorId::from(vec![2u8; 16])),
            DocConfig::default(),
        )
        .unwrap();
        assert_eq!(loaded.rope().to_string(), "hello\n");
        assert_eq!(service.with_open(&file, |s| Ok(s.doc.rope().to_string())).unwrap(), "hello\n");
        running.abort();
    }
}
