//! The store on real files: three-way merge of outside edits, the first-screen cache,
//! recovery from a torn log, and the single-owner lock.

use std::path::Path;

use tandem_doc::{ActorId, Author, DocConfig};
use tandem_store::{Keys, Opened, StoredDoc, Workspace, first_screen};

fn author() -> Author {
    Author::new("me", ActorId::from(vec![3u8; 16]))
}

/// This test process's device keys (made once, in a directory of their own).
fn keys() -> Keys {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    Keys::load(HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()).unwrap()
}

fn open(ws: &Workspace, file: &Path) -> (StoredDoc, Opened) {
    StoredDoc::open(ws, file, author(), DocConfig::default(), false, &keys()).unwrap()
}

/// A second device, added to `s`'s group as a writer: its keys (in `home`).
fn writer(s: &mut StoredDoc, home: &Path) -> Keys {
    let peer = Keys::load(home).unwrap();
    let action =
        tandem_auth::group::Action::SetRole { member: peer.public(), role: tandem_auth::group::Role::Writer };
    s.secure_mut().act(action, Some(&peer.age.recipient())).unwrap();
    peer
}

/// `change` sealed by `peer` as it would send it (with the epoch key it was given).
fn sealed_by(s: &StoredDoc, peer: &Keys, change: &tandem_doc::Change) -> Vec<u8> {
    let group = s.secure().group();
    let epoch = group.members().epoch;
    let key = group.keys_for(&peer.public(), &peer.age).remove(&epoch).unwrap();
    let doc = s.secure().doc();
    tandem_auth::envelope::seal(
        &peer.device,
        &doc,
        tandem_auth::envelope::Kind::Change,
        epoch,
        &group.heads(),
        &key,
        change.raw_bytes(),
    )
}

#[test]
fn outside_edit_merges_with_unsaved_document_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "alpha\nbeta\ngamma\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    {
        let (mut s, opened) = open(&ws, &file);
        assert_eq!(opened, Opened::Created);
        // Committed to history, not yet saved to the file.
        s.doc.splice(0, 0, "> ", 1).unwrap();
        s.commit(2).unwrap();
        assert!(s.is_dirty());
    }
    // Meanwhile another tool edits the file.
    std::fs::write(&file, "alpha\nbeta\ngamma\ndelta\n").unwrap();
    let (mut s, opened) = open(&ws, &file);
    assert!(matches!(opened, Opened::MergedExternal(_)), "{opened:?}");
    assert_eq!(s.doc.rope().to_string(), "> alpha\nbeta\ngamma\ndelta\n");
    s.save(3).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "> alpha\nbeta\ngamma\ndelta\n");
    drop(s);
    // Saved: opening again finds nothing to merge.
    assert_eq!(open(&ws, &file).1, Opened::Loaded);
}

#[test]
fn first_screen_cache_is_used_only_while_current() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "cached text\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    let (mut s, _) = open(&ws, &file);
    assert_eq!(first_screen(&ws, &file).unwrap().as_deref(), Some("cached text\n"));
    s.doc.splice(0, 0, "new ", 5).unwrap();
    s.commit(6).unwrap();
    // The log grew: the cache no longer describes the history.
    assert_eq!(first_screen(&ws, &file).unwrap(), None);
    s.write_text_cache(7).unwrap();
    assert_eq!(first_screen(&ws, &file).unwrap().as_deref(), Some("new cached text\n"));
    // A saved document's file is its first screen...
    s.doc.splice(0, 0, "saved ", 8).unwrap();
    s.save(9).unwrap();
    assert_eq!(first_screen(&ws, &file).unwrap().as_deref(), Some("saved new cached text\n"));
    // ...until the file is changed behind tandem's back.
    std::fs::write(&file, "edited elsewhere\n").unwrap();
    assert_eq!(first_screen(&ws, &file).unwrap(), None);
}

#[test]
fn a_torn_log_record_is_cut_and_committed_changes_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    {
        let (mut s, _) = open(&ws, &file);
        s.doc.splice(1, 0, "y", 1).unwrap();
        s.commit(2).unwrap();
    }
    let log = ws.doc_dir("f.txt").join("changes.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[200, 1, 0, 0, 9, 9, 9]).unwrap();
    let (s, _) = open(&ws, &file);
    assert_eq!(s.doc.rope().to_string(), "xy");
    // The tail was cut, so the next commit appends after the last good record.
    drop(s);
    let (mut s, _) = open(&ws, &file);
    s.doc.splice(2, 0, "z", 3).unwrap();
    s.commit(4).unwrap();
    drop(s);
    assert_eq!(open(&ws, &file).0.doc.rope().to_string(), "xyz");
}

#[test]
fn only_one_process_owns_a_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let first = ws.try_lock().unwrap();
    assert!(first.is_some());
    assert!(ws.try_lock().unwrap().is_none(), "a second owner was let in");
    drop(first);
    assert!(ws.try_lock().unwrap().is_some(), "the lock is released on drop");
}

#[test]
fn workspace_is_the_nearest_ancestor_with_history() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".tandem")).unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    let ws = Workspace::discover(&dir.path().join("a/b/note.md")).unwrap();
    assert_eq!(ws.root(), dir.path().canonicalize().unwrap());
    assert_eq!(ws.relative(&dir.path().join("a/b/note.md")).unwrap(), "a/b/note.md");
}

#[test]
fn typing_goes_on_while_remote_changes_are_applied_and_both_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "one two\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let lock = ws.try_lock().unwrap().unwrap();
    let (mut s, _) = open(&ws, &file);
    // A peer (a writer) with the same history adds a line.
    let home = tempfile::tempdir().unwrap();
    let keys = writer(&mut s, home.path());
    let mut peer = tandem_doc::Document::load(
        &s.doc.save(1),
        vec![],
        Author::new("peer", ActorId::from(keys.public().to_vec())),
        DocConfig::default(),
    )
    .unwrap();
    peer.splice(8, 0, "three\n", 2).unwrap();
    let theirs: Vec<_> = peer
        .commit(3)
        .into_iter()
        .map(|c| {
            let env = sealed_by(&s, &keys, &c);
            (c, env)
        })
        .collect();
    // Automerge goes out to apply it; meanwhile the user types at the front.
    let job = s.begin_remote(theirs, 4).unwrap();
    assert!(s.doc.is_detached());
    s.doc.splice(0, 0, "> ", 5).unwrap();
    assert_eq!(s.doc.rope().to_string(), "> one two\n", "typing shows at once");
    assert!(s.poll_commit(10_000).unwrap().is_empty(), "nothing commits while Automerge is out");
    let job = job.run();
    assert_eq!(s.finish_remote(job, 6).unwrap(), 1);
    assert!(!s.doc.is_detached());
    assert_eq!(s.doc.rope().to_string(), "> one two\nthree\n");
    assert!(s.doc.is_consistent());
    // The typing reached Automerge and becomes a change like any other.
    assert_eq!(s.commit(7).unwrap().len(), 1);
    s.save(8).unwrap();
    drop(s);
    drop(lock);
    let _lock = ws.try_lock().unwrap().unwrap();
    let (s, _) = open(&ws, &file);
    assert_eq!(s.doc.rope().to_string(), "> one two\nthree\n", "both survive a reopen");
}

/// A save while a peer's keystrokes are shown ahead of their change (the share's save
/// after remote changes, once a second): the file and the first-screen cache get
/// history's text, and the screen keeps those keystrokes, so the peer's next keys,
/// which name them, show at once too.
#[test]
fn a_save_writes_history_and_keeps_a_peers_live_keys_on_screen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "ab\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    let (mut s, _) = open(&ws, &file);
    let home = tempfile::tempdir().unwrap();
    let keys = writer(&mut s, home.path());
    let actor = ActorId::from(keys.public().to_vec());
    let mut peer = tandem_doc::Document::load(
        &s.doc.save(1),
        vec![],
        Author::new("peer", actor.clone()),
        DocConfig::default(),
    )
    .unwrap();
    peer.record_live(true);
    // The peer types "x" then "y" at the end of the first line: live edits, no change.
    peer.splice(2, 0, "x", 2).unwrap();
    let first = peer.take_live();
    assert!(s.doc.apply_live(&actor, &first[0], 3).is_some());
    assert_eq!(s.doc.rope().to_string(), "abx\n");
    // Here a change of ours lands in history and the file is saved.
    s.doc.splice(0, 0, "> ", 4).unwrap();
    s.save_text(5).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "> ab\n", "the file holds history only");
    assert_eq!(s.doc.rope().to_string(), "> abx\n", "the peer's key stays on screen");
    // The peer's next key names the one before: it shows at once.
    peer.splice(3, 0, "y", 6).unwrap();
    let second = peer.take_live();
    assert!(s.doc.apply_live(&actor, &second[0], 7).is_some());
    assert_eq!(s.doc.rope().to_string(), "> abxy\n");
    // When the change comes, nothing moves.
    let theirs: Vec<_> = peer.commit(8).into_iter().map(|c| (sealed_by(&s, &keys, &c), c)).collect();
    let job = s.begin_remote(theirs.into_iter().map(|(e, c)| (c, e)).collect(), 9).unwrap();
    let job = job.run();
    assert_eq!(s.finish_remote(job, 10).unwrap(), 1);
    assert_eq!(s.doc.rope().to_string(), "> abxy\n");
    assert!(!s.doc.has_overlay());
    s.save_text(11).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "> abxy\n");
}

/// A shared document joined a second time into the same workspace under another name
/// is refused: its blobs' tags are named by the document id, so two histories of it
/// would collect each other's blobs.
#[test]
fn a_second_history_of_one_document_in_a_workspace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "shared\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    let (mut a, _) = open(&ws, &file);
    let changes = a.doc.changes_since(&[]);
    let doc_id = a.doc_id().to_owned();
    let err = StoredDoc::join(
        &ws,
        &dir.path().join("b.txt"),
        &doc_id,
        tandem_store::Shared::Changes(changes),
        author(),
        DocConfig::default(),
        &keys(),
        &a.secure().ops(),
    )
    .err()
    .expect("a second history of the same document");
    assert!(err.to_string().contains("already has that shared document, as a.txt"), "{err}");
    assert!(!dir.path().join("b.txt").exists());
}

/// A flipped byte in the middle of the change log (changes committed, not yet folded
/// into the index, as an editor's idle commits are) loses none of them: on open the
/// log is rebuilt from its intact records and the blobs each change is also stored as.
#[test]
fn a_damaged_change_log_is_rebuilt_and_loses_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "base\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    let expected = {
        let (mut s, _) = open(&ws, &file);
        for (i, word) in ["one ", "two ", "three ", "four "].iter().enumerate() {
            s.doc.splice(0, 0, word, 10 + i as u64).unwrap();
            s.commit(20 + i as u64).unwrap();
        }
        s.doc.rope().to_string()
    };
    let log = std::fs::read_dir(dir.path().join(".tandem/docs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("changes.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // Where each record starts (`len: u32 LE | blake3: 32 | payload`).
    let mut starts = vec![0usize];
    while let Some(&at) = starts.last() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 36 + len >= bytes.len() {
            break;
        }
        starts.push(at + 36 + len);
    }
    assert_eq!(starts.len(), 4, "four changes in the log");
    // In the second record's length (the framing after it is lost), in a payload,
    // and in the last record (which looks like a crash's torn tail).
    for at in [starts[1] + 1, starts[2] + 40, starts[3] + 1, bytes.len() - 2] {
        let before = bytes.clone();
        bytes[at] ^= 0x20;
        std::fs::write(&log, &bytes).unwrap();
        let (s, _) = open(&ws, &file);
        assert_eq!(s.doc.rope().to_string(), expected, "flip at {at}");
        drop(s);
        bytes = before;
        std::fs::write(&log, &bytes).unwrap();
    }
}

/// A write that fails after its changes were checkpointed into the index (here the
/// file cannot be replaced: it is immutable) goes back to the history as it was,
/// with what was typed before it: those changes were already in the log, and the
/// checkpoint had moved them into the index the rewind restores.
#[test]
fn a_failed_write_keeps_what_was_typed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "base\n").unwrap();
    let ws = Workspace::at(dir.path()).unwrap();
    let service = tandem_store::Service::own(ws, author(), DocConfig::default(), keys()).unwrap().unwrap();
    service.open(&file, false).unwrap();
    // Typed in the editor: committed to the log, not saved.
    service
        .with_open(&file, |s| {
            s.doc.splice(0, 0, "typed ", 10).unwrap();
            s.commit(11).map(drop)
        })
        .unwrap();
    let chattr = |flag: &str| {
        std::process::Command::new("chattr").arg(flag).arg(&file).output().is_ok_and(|o| o.status.success())
    };
    if !chattr("+i") {
        eprintln!("skipping: chattr +i is not available here (root on ext4 is)");
        return;
    }
    let failed =
        service.handle(&tandem_store::Request::Write { file: file.clone(), text: "replaced\n".into() });
    chattr("-i");
    assert!(failed.is_err(), "the file could not be replaced");
    let text = service.with_open(&file, |s| Ok(s.doc.rope().to_string())).unwrap();
    assert_eq!(text, "typed base\n", "the write is undone, the typing kept");
    drop(service);
    let ws = Workspace::at(dir.path()).unwrap();
    let _lock = ws.try_lock().unwrap().unwrap();
    let (s, _) = open(&ws, &file);
    assert_eq!(s.doc.rope().to_string(), "typed base\n", "and so it is on disk");
}
