//! Crash safety (a handful of kills; `tandem-bench crash` runs 100 or more): a
//! syncing `tandem join` process, edited through its control socket, is SIGKILLed at
//! random moments; after each kill the store verifies clean and every change an edit
//! was told was committed is still there.

#[test]
fn sigkill_at_random_moments_loses_no_committed_change() {
    let work = tempfile::tempdir().unwrap();
    let report =
        tandem_bench::crash::run(std::path::Path::new(env!("CARGO_BIN_EXE_tandem")), work.path(), 6, 0xc1a5)
            .unwrap();
    println!("{report:?}");
    assert_eq!(report.kills, 6);
    assert!(report.acked_edits > 0, "no edit was acknowledged: {report:?}");
    assert!(report.missing.is_empty(), "committed changes lost: {report:?}");
    assert!(report.verify_failures.is_empty(), "the store did not verify: {report:?}");
}
