//! What security costs per change (issue 6): encrypting a change with the epoch key
//! and signing the envelope, and checking and decrypting it
//! ([`tandem_auth::envelope`]); and, for comparison, age encryption of the change to
//! one recipient and its decryption ([`tandem_auth::agekey`]), which is why the
//! epoch key is symmetric. On real changes of the automerge-paper trace (typed at
//! 150 ms a key, as the editor commits them).

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT};
use serde_json::{Value, json};
use tandem_auth::agekey::{AgeIdentity, encrypt};
use tandem_auth::device::DeviceKey;
use tandem_auth::envelope::{Kind, check, seal};
use tandem_auth::epoch::EpochKey;

use crate::Trace;

/// Per-change figures over the first `n` commits of `trace` (a commit every 13
/// transactions: 2 s of typing at 150 ms a key).
pub fn run(trace: &Trace, n: usize, home: &std::path::Path) -> Result<Value, String> {
    let key = DeviceKey::generate();
    let age = AgeIdentity::load_or_create(home).map_err(|e| e.to_string())?;
    let recipients = [age.recipient()];
    let mut doc = AutoCommit::new().with_actor(ActorId::from(key.public().to_vec()));
    let text = doc.put_object(ROOT, "text", ObjType::Text).map_err(|e| e.to_string())?;
    doc.splice_text(&text, 0, 0, &trace.start).map_err(|e| e.to_string())?;
    doc.commit();
    let mut changes = Vec::new();
    for (i, txn) in trace.txns.iter().enumerate() {
        for (pos, del, ins) in &txn.patches {
            doc.splice_text(&text, *pos, *del as isize, ins).map_err(|e| e.to_string())?;
        }
        if i % 13 == 12 {
            doc.commit();
            changes.push(doc.get_last_local_change().ok_or("no change")?.raw_bytes().to_vec());
            if changes.len() == n {
                break;
            }
        }
    }
    let doc_id = [1u8; 16];
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64() * 1e6 / changes.len() as f64
    };
    let epoch_key = EpochKey::generate();
    let heads = [[7u8; 32]];
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let seal_us = time(&mut || {
        sealed = changes.iter().map(|c| seal(&key, &doc_id, Kind::Change, 0, &heads, &epoch_key, c)).collect()
    });
    let mut ok = true;
    let open_us = time(&mut || {
        ok &= sealed.iter().all(|e| check(e, &doc_id).and_then(|c| c.open_change(&epoch_key)).is_ok())
    });
    let sealed_bytes: usize = sealed.iter().map(Vec::len).sum();
    let mut boxed = Vec::new();
    let encrypt_us = time(&mut || boxed = changes.iter().map(|c| encrypt(c, &recipients, false)).collect());
    let boxed: Vec<Vec<u8>> = boxed.into_iter().collect::<Result<_, _>>()?;
    let decrypt_us = time(&mut || ok &= boxed.iter().all(|b| age.decrypt(b).is_ok()));
    if !ok {
        return Err("a sealed or encrypted change did not open".into());
    }
    let bytes: usize = changes.iter().map(Vec::len).sum();
    let age_bytes: usize = boxed.iter().map(Vec::len).sum();
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "bench": "security",
        "changes": changes.len(),
        "mean_change_bytes": bytes / changes.len().max(1),
        "sign_encrypt_us": round(seal_us),
        "verify_decrypt_us": round(open_us),
        "age_encrypt_us": round(encrypt_us),
        "age_decrypt_us": round(decrypt_us),
        "envelope_overhead_bytes": (sealed_bytes - bytes) / changes.len().max(1),
        "age_overhead_bytes": (age_bytes - bytes) / changes.len().max(1),
        "command": "cargo run --release -p tandem-bench -- security",
    }))
}
