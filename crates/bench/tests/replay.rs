//! Replaying a real editing trace through the editor's document path reproduces the
//! trace's final text.

use std::path::PathBuf;

use tandem_bench::{Clock, load_trace, replay_editor};
use tandem_doc::DocConfig;

fn traces() -> PathBuf {
    // Tests run from the crate directory; the traces sit beside the repository.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")
}

#[test]
fn replaying_a_small_trace_reaches_its_end_content() {
    let trace = load_trace(&traces().join("sveltecomponent.json.gz")).unwrap();
    assert_eq!(trace.patches(), 19_749);
    // Not sharing, keys reach Automerge composed at the commit; sharing, one by one.
    for sharing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let result = replay_editor(&trace, dir.path(), Clock::Trace, DocConfig::default(), sharing).unwrap();
        assert!(result.final_text_ok, "rope or Automerge differs from endContent (sharing: {sharing})");
        assert_eq!(std::fs::read_to_string(dir.path().join("trace.txt")).unwrap(), trace.end);
        assert!(
            result.changes > 1 && result.changes < trace.txns.len(),
            "commits were coalesced: {}",
            result.changes
        );
    }
}

#[test]
fn a_malformed_trace_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 1, 2, 3]).unwrap();
    let err = load_trace(&bad).err().unwrap();
    assert!(err.contains("bad.json.gz") && err.contains("gzip"), "{err}");
}
