//! A real node on 127.0.0.1 fed bad requests by another real swarm: each is refused
//! with a reason, and the session goes on serving good requests afterwards.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use tandem_doc::{ActorId, Author, DocConfig};
use tandem_net::node::{self, BehaviourEvent, Node, Transport};
use tandem_net::protocol::Message;
use tandem_store::{Service, Workspace};

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
        // The session is still good: the whole document comes back, compact.
        let reply = ask(&mut client, peer, Message::Need { doc, have: vec![] }).await;
        match reply {
            Message::Snapshot { envelope, .. } => assert!(!envelope.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(service.with_open(&file, |s| Ok(s.doc.rope().to_string())).unwrap(), "hello\n");
        running.abort();
    }
}
