//! Simulated peers in one process: random concurrent edits, changes exchanged in
//! random order and batches, live edits delivered (or lost) ahead of their changes. All peers converge, every rope equals its Automerge text
//! after every step, cursors stay in bounds and on their side, and undo never removes
//! another author's text.

use proptest::prelude::*;
use tandem_doc::{ActorId, Author, Change, DocConfig, Document, ElemId, LiveEdit, LiveOp, Selection};

#[derive(Clone, Debug)]
enum Step {
    /// Peer edits at a fraction of its length: delete up to `del`, insert `text`.
    Edit {
        peer: usize,
        at: f64,
        del: usize,
        text: String,
    },
    Commit {
        peer: usize,
    },
    /// Deliver peer `from`'s changes to `to`: a random subset (`keep` mask), shuffled.
    Deliver {
        from: usize,
        to: usize,
        seed: u64,
        batch: usize,
    },
    Undo {
        peer: usize,
    },
    Redo {
        peer: usize,
    },
    MoveCursor {
        peer: usize,
        at: f64,
    },
    /// Deliver the next `n` live edits `from` made to `to`, losing one when `lose`.
    Live {
        from: usize,
        to: usize,
        n: usize,
        lose: bool,
    },
    /// Deliver `from`'s changes to `to` with Automerge detached (as the network does),
    /// while `to` types `typed` at fractions of its length.
    Detached {
        from: usize,
        to: usize,
        typed: Vec<(f64, usize, String)>,
    },
    /// The peer stops or starts sharing: not sharing, its keystrokes reach Automerge
    /// only at the commit (or at the next read that needs them).
    Sharing {
        peer: usize,
    },
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z ]{0,4}", Just("\r\n".to_string()), Just("\t".to_string()), "[é日本🎉\u{301}]{1,3}",]
}

fn step_strategy(peers: usize) -> impl Strategy<Value = Step> {
    let p = 0..peers;
    prop_oneof![
        5 => (p.clone(), 0.0..=1.0f64, 0..4usize, text_strategy())
            .prop_map(|(peer, at, del, text)| Step::Edit { peer, at, del, text }),
        2 => p.clone().prop_map(|peer| Step::Commit { peer }),
        3 => (p.clone(), p.clone(), any::<u64>(), 1..5usize)
            .prop_map(|(from, to, seed, batch)| Step::Deliver { from, to, seed, batch }),
        1 => p.clone().prop_map(|peer| Step::Undo { peer }),
        1 => p.clone().prop_map(|peer| Step::Redo { peer }),
        1 => (p.clone(), 0.0..=1.0f64).prop_map(|(peer, at)| Step::MoveCursor { peer, at }),
        4 => (p.clone(), p.clone(), 1..6usize, prop::bool::weighted(0.1))
            .prop_map(|(from, to, n, lose)| Step::Live { from, to, n, lose }),
        2 => (p.clone(), p.clone(), prop::collection::vec((0.0..=1.0f64, 0..3usize, text_strategy()), 0..4))
            .prop_map(|(from, to, typed)| Step::Detached { from, to, typed }),
        2 => p.prop_map(|peer| Step::Sharing { peer }),
    ]
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

struct Peer {
    doc: Document,
    actor: ActorId,
    /// A cursor of "someone else" registered on this peer, to check mapping.
    watcher: tandem_doc::CursorId,
    /// Every live edit this peer made, and how many of them each peer was given.
    live: Vec<LiveEdit>,
    live_given: Vec<usize>,
    sharing: bool,
}

fn check(peer: &Peer) -> Result<(), TestCaseError> {
    prop_assert!(peer.doc.is_consistent(), "rope and Automerge text differ");
    let len = peer.doc.len_chars();
    for (_, sel) in peer.doc.cursors() {
        prop_assert!(sel.anchor <= len && sel.head <= len, "cursor {sel:?} outside 0..{len}");
    }
    Ok(())
}

fn run(peers: usize, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut ps: Vec<Peer> = (0..peers)
        .map(|i| {
            let actor = ActorId::from(vec![i as u8 + 1; 16]);
            let mut doc = Document::new(Author::new(format!("peer{i}"), actor.clone()), DocConfig::default());
            let watcher = doc.add_cursor(Selection::caret(0));
            doc.record_live(true);
            Peer { doc, actor, watcher, live: Vec::new(), live_given: vec![0; peers], sharing: true }
        })
        .collect();
    let mut now = 1_000u64;
    for step in steps {
        now += 7;
        match step {
            Step::Edit { peer, at, del, text } => {
                let d = &mut ps[peer].doc;
                let len = d.len_chars();
                let pos = ((len as f64) * at) as usize;
                let del = del.min(len - pos);
                d.splice(pos, del, &text, now).unwrap();
                d.set_cursor(tandem_doc::CursorId::LOCAL, Selection::caret(pos + text.chars().count()));
            }
            Step::Commit { peer } => {
                ps[peer].doc.commit(now);
            }
            Step::Deliver { from, to, seed, batch } => {
                if from == to {
                    continue;
                }
                ps[from].doc.commit(now);
                let mut changes: Vec<Change> = ps[from].doc.changes_since(&[]);
                shuffle(&mut changes, seed);
                // A watcher caret and its text neighbour: remote edits may move the caret
                // only by what was inserted before it or deleted around it.
                let w = ps[to].watcher;
                for chunk in changes.chunks(batch) {
                    let before = ps[to].doc.cursor(w).unwrap();
                    let edits = ps[to].doc.apply_remote(chunk.to_vec(), now).unwrap();
                    let mut expect = before;
                    for e in &edits {
                        expect = expect.map(e, false);
                    }
                    prop_assert_eq!(ps[to].doc.cursor(w).unwrap(), expect);
                    check(&ps[to])?;
                }
            }
            Step::Undo { peer } | Step::Redo { peer } => {
                let is_undo = matches!(step, Step::Undo { .. });
                let p = &mut ps[peer];
                let before = p.doc.rope().clone();
                // Under live edits Automerge's text is not the rope's; the check waits.
                let actors = if p.doc.has_overlay() {
                    vec![p.actor.clone(); before.len_chars()]
                } else {
                    p.doc.char_actors(0..before.len_chars())
                };
                let edit = if is_undo { p.doc.undo(now) } else { p.doc.redo(now) };
                if let Some(edit) = edit {
                    // Every char the undo/redo removed was inserted by this peer.
                    let mut pos = 0;
                    for op in edit.ops() {
                        match op {
                            tandem_doc::Op::Retain(n) => pos += n,
                            tandem_doc::Op::Delete(n) => {
                                for a in &actors[pos..pos + n] {
                                    prop_assert_eq!(a, &p.actor, "undo removed another author's text");
                                }
                                pos += n;
                            }
                            tandem_doc::Op::Insert(_) => {}
                        }
                    }
                }
            }
            Step::Live { from, to, n, lose } => {
                if from == to {
                    continue;
                }
                let start = ps[from].live_given[to];
                let end = (start + n).min(ps[from].live.len());
                ps[from].live_given[to] = end;
                let actor = ps[from].actor.clone();
                let batch: Vec<LiveEdit> = ps[from].live[start..end].to_vec();
                for (i, live) in batch.iter().enumerate() {
                    if lose && i == 0 {
                        continue;
                    }
                    let before = ps[to].doc.rope().clone();
                    if let Some(edit) = ps[to].doc.apply_live(&actor, live, now) {
                        let mut expect = before;
                        edit.apply(&mut expect);
                        prop_assert_eq!(ps[to].doc.rope(), &expect);
                    }
                }
            }
            Step::Detached { from, to, typed } => {
                if from == to {
                    continue;
                }
                ps[from].doc.commit(now);
                let changes = ps[from].doc.changes_since(&[]);
                let away = ps[to].doc.detach(changes, now).apply();
                let d = &mut ps[to].doc;
                let mut expect = d.rope().clone();
                for (at, del, text) in typed {
                    let len = d.len_chars();
                    let pos = ((len as f64) * at) as usize;
                    let del = del.min(len - pos);
                    d.splice(pos, del, &text, now).unwrap();
                    tandem_doc::ChangeSet::splice(len, pos, del, &text).unwrap().apply(&mut expect);
                    prop_assert_eq!(d.rope(), &expect, "typing while detached shows at once");
                }
                d.reattach(away, now).unwrap();
            }
            Step::Sharing { peer } => {
                let p = &mut ps[peer];
                p.sharing = !p.sharing;
                p.doc.record_live(p.sharing);
            }
            Step::MoveCursor { peer, at } => {
                let w = ps[peer].watcher;
                let d = &mut ps[peer].doc;
                let pos = ((d.len_chars() as f64) * at) as usize;
                d.set_cursor(w, Selection::caret(pos));
                d.break_undo_group();
            }
        }
        for p in &mut ps {
            let live = p.doc.take_live();
            p.live.extend(live);
            check(p)?;
        }
    }
    // Full exchange: everyone converges. Twice: a peer that deleted shown chars
    // ahead of their change deletes them in Automerge once the change comes.
    for _ in 0..2 {
        let all: Vec<Change> = ps
            .iter_mut()
            .flat_map(|p| {
                p.doc.commit(u64::MAX / 2);
                p.doc.changes_since(&[])
            })
            .collect();
        for p in &mut ps {
            p.doc.apply_remote(all.clone(), now).unwrap();
            check(p)?;
        }
    }
    let first = ps[0].doc.rope().to_string();
    for p in &ps[1..] {
        prop_assert_eq!(&p.doc.rope().to_string(), &first);
        prop_assert_eq!(p.doc.heads(), ps[0].doc.heads());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn peers_converge_and_stay_consistent(
        (peers, steps) in (2..=4usize).prop_flat_map(|n| (Just(n), prop::collection::vec(step_strategy(n), 1..60)))
    ) {
        run(peers, steps)?;
    }
}

#[test]
fn undo_after_remote_insert_inside_my_text_keeps_theirs() {
    let a_actor = ActorId::from(vec![1; 16]);
    let b_actor = ActorId::from(vec![2; 16]);
    let mut a = Document::new(Author::new("a", a_actor), DocConfig::default());
    let mut b = Document::new(Author::new("b", b_actor), DocConfig::default());
    for (i, c) in "hello".chars().enumerate() {
        a.splice(i, 0, &c.to_string(), 10 + i as u64).unwrap();
    }
    a.commit(100);
    b.apply_remote(a.changes_since(&[]), 100).unwrap();
    b.splice(2, 0, "XY", 200).unwrap();
    b.commit(200);
    a.apply_remote(b.changes_since(&[]), 300).unwrap();
    assert_eq!(a.rope().to_string(), "heXYllo");
    assert!(a.undo(400).is_some());
    assert_eq!(a.rope().to_string(), "XY");
    assert!(a.redo(500).is_some());
    assert_eq!(a.rope().to_string(), "heXYllo");
}

/// Not sharing, keystrokes reach Automerge at the commit, composed: a word is one
/// splice, and what was typed and erased before the commit is in no change. Sharing,
/// every keystroke is an Automerge operation (peers name them), as before.
#[test]
fn keystrokes_reach_automerge_composed_at_the_commit_unless_shared() {
    for sharing in [false, true] {
        let mut d = Document::new(Author::new("a", ActorId::from(vec![1; 16])), DocConfig::default());
        d.splice(0, 0, "base", 1).unwrap();
        d.commit(2);
        d.record_live(sharing);
        let mut t = 10;
        for (i, c) in "wordx".chars().enumerate() {
            t += 50;
            d.splice(i, 0, &c.to_string(), t).unwrap();
        }
        d.splice(4, 1, "", t + 50).unwrap(); // the x, erased
        assert!(d.is_consistent());
        assert_eq!(d.stable_position(0).is_empty(), !sharing, "no Automerge names for keys it lacks");
        let change = d.commit(t + 100);
        assert_eq!(change.len(), 1);
        let ops = d.change_log().last().unwrap().ops;
        assert_eq!(ops, if sharing { 6 } else { 4 }, "sharing: {sharing}");
        assert_eq!(d.rope().to_string(), "wordbase");
        assert!(d.is_consistent());
        assert!(!d.stable_position(0).is_empty());
        let copy =
            Document::from_changes(d.changes_since(&[]), d.author().clone(), DocConfig::default()).unwrap();
        assert_eq!(copy.rope().to_string(), "wordbase");
    }
}

#[test]
fn typing_groups_by_word_and_pause() {
    let mut d = Document::new(Author::new("a", ActorId::from(vec![1; 16])), DocConfig::default());
    let mut t = 0;
    for (i, c) in "one two".chars().enumerate() {
        t += 100;
        d.splice(i, 0, &c.to_string(), t).unwrap();
    }
    t += 5_000; // a long pause starts a new step
    d.splice(7, 0, "!", t).unwrap();
    d.undo(t).unwrap();
    assert_eq!(d.rope().to_string(), "one two");
    d.undo(t).unwrap();
    assert_eq!(d.rope().to_string(), "one ");
    d.undo(t).unwrap();
    assert_eq!(d.rope().to_string(), "");
    assert!(d.undo(t).is_none());
}

#[test]
fn crlf_tabs_and_astral_text_round_trip_through_automerge() {
    let text = "a\tb\r\nc 🎉 e\u{301}\r\n日本\n";
    let mut d = Document::with_text(Author::new("a", ActorId::random()), DocConfig::default(), text, 1);
    let saved = d.save(2);
    let loaded =
        Document::load(&saved, vec![], Author::new("b", ActorId::random()), DocConfig::default()).unwrap();
    assert_eq!(loaded.rope().to_string(), text);
}

#[test]
fn garbage_bytes_are_a_clear_error() {
    let err =
        Document::load(b"not automerge", vec![], Author::new("a", ActorId::random()), DocConfig::default())
            .unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn a_huge_paste_is_cut_into_bounded_changes_but_undone_in_one_step() {
    let mut d = Document::new(Author::new("a", ActorId::from(vec![1; 16])), DocConfig::default());
    let paste: String = "0123456789abcdé\n".repeat(10_000);
    d.splice(0, 0, &paste, 1).unwrap();
    let changes = d.commit(2);
    assert!(changes.len() >= 3, "160K chars should need several changes, got {}", changes.len());
    assert!(changes.iter().all(|c| c.len() <= 1 << 16), "a change holds too many ops");
    let mut other = Document::new(Author::new("b", ActorId::from(vec![2; 16])), DocConfig::default());
    other.apply_remote(changes, 3).unwrap();
    assert_eq!(other.rope().to_string(), paste);
    d.undo(4).unwrap();
    assert_eq!(d.len_chars(), 0);
    assert!(d.commit(5).len() >= 3, "the undo (a huge delete) is cut too");
    assert!(d.is_consistent());
}

fn pair() -> (Document, Document, ActorId) {
    let a_actor = ActorId::from(vec![1; 16]);
    let mut a = Document::new(Author::new("a", a_actor.clone()), DocConfig::default());
    let mut b = Document::new(Author::new("b", ActorId::from(vec![2; 16])), DocConfig::default());
    a.splice(0, 0, "hello world", 1).unwrap();
    b.apply_remote(a.commit(2), 2).unwrap();
    a.record_live(true);
    (a, b, a_actor)
}

#[test]
fn live_keystrokes_show_at_once_and_their_change_moves_nothing() {
    let (mut a, mut b, a_actor) = pair();
    let mine = b.add_cursor(Selection::caret(11));
    for (i, c) in ", dear".chars().enumerate() {
        a.splice(5 + i, 0, &c.to_string(), 10 + i as u64).unwrap();
        for live in a.take_live() {
            assert!(b.apply_live(&a_actor, &live, 100).is_some(), "keystroke {i} not shown");
        }
        assert_eq!(b.rope(), a.rope());
        assert!(b.is_consistent());
    }
    a.splice(0, 1, "H", 20).unwrap();
    for live in a.take_live() {
        b.apply_live(&a_actor, &live, 100).unwrap();
    }
    assert_eq!(b.rope().to_string(), "Hello, dear world");
    assert_eq!(b.cursor(mine), Some(Selection::caret(17)));
    let before = b.rope().clone();
    let edits = b.apply_remote(a.commit(400), 400).unwrap();
    // The live edits come off and the change puts them back: no net change.
    let mut replayed = before.clone();
    for e in &edits {
        e.apply(&mut replayed);
    }
    assert_eq!(replayed, before, "the change should only confirm what was shown: {edits:?}");
    assert!(!b.has_overlay());
    assert_eq!(b.rope().to_string(), "Hello, dear world");
    assert_eq!(b.cursor(mine), Some(Selection::caret(17)));
    // The next transaction starts from the new heads and is live again.
    a.splice(17, 0, "!", 500).unwrap();
    let live = a.take_live();
    assert_eq!(live[0].seq, 0);
    assert!(b.apply_live(&a_actor, &live[0], 100).is_some());
}

#[test]
fn live_edits_show_over_local_typing_and_wait_for_what_they_name() {
    let (mut a, mut b, a_actor) = pair();
    // b is typing too: a's keystroke still shows, where Automerge will put it.
    b.splice(0, 0, ">", 5).unwrap();
    a.splice(11, 0, "!", 6).unwrap();
    let live = a.take_live();
    assert!(b.apply_live(&a_actor, &live[0], 100).is_some());
    assert_eq!(b.rope().to_string(), ">hello world!");
    assert!(b.is_consistent());
    // A keystroke that overtook the one it follows waits for it, then both show;
    // a duplicate changes nothing.
    let (mut a, mut b, a_actor) = pair();
    a.splice(0, 0, "x", 5).unwrap();
    a.splice(1, 0, "y", 6).unwrap();
    let live = a.take_live();
    assert!(b.apply_live(&a_actor, &live[1], 100).is_none());
    assert_eq!(b.rope().to_string(), "hello world");
    assert!(b.apply_live(&a_actor, &live[0], 100).is_some());
    assert_eq!(b.rope().to_string(), "xyhello world");
    assert!(b.apply_live(&a_actor, &live[0], 100).is_none());
    // From myself, or naming chars that are no chars: nothing shown, no panic.
    assert!(b.apply_live(&ActorId::from(vec![2; 16]), &live[0], 100).is_none());
    let bogus = LiveEdit {
        seq: 0,
        ops: vec![
            LiveOp::Insert {
                after: Some(ElemId { counter: 1, actor: ActorId::from(vec![0; 16]) }),
                first: 900,
                text: "?".into(),
            },
            LiveOp::Delete(vec![ElemId { counter: 77_777, actor: a_actor.clone() }]),
        ],
    };
    assert!(b.apply_live(&ActorId::from(vec![5; 16]), &bogus, 100).is_none());
    b.apply_remote(a.commit(400), 400).unwrap();
    assert_eq!(b.rope().to_string(), "xyhello world");
    assert!(b.is_consistent());
}

/// Several typists at once, one watcher: every typist's live edits, delivered in
/// any order, some twice, show the text Automerge's merge of their changes gives,
/// and those changes then move nothing. With some lost, or the watcher typing too,
/// the rope stays Automerge's text plus what is shown, and all converge.
fn typists_run(
    typists: usize,
    edits: Vec<(usize, f64, usize, String)>,
    syncs: Vec<(usize, usize, usize)>,
    seed: u64,
    lose: Option<u64>,
    watcher_types: Option<(f64, String)>,
) -> Result<(), TestCaseError> {
    let base = Document::with_text(
        Author::new("w", ActorId::from(vec![9; 16])),
        DocConfig::default(),
        "hello world\n",
        1,
    );
    let start: Vec<Change> = {
        let mut base = base;
        base.changes_since(&[])
    };
    let new_doc = |i: u8| {
        let mut d =
            Document::new(Author::new(format!("t{i}"), ActorId::from(vec![i + 1; 16])), DocConfig::default());
        d.apply_remote(start.clone(), 2).unwrap();
        d
    };
    let mut ts: Vec<Document> = (0..typists as u8).map(new_doc).collect();
    for t in &mut ts {
        t.record_live(true);
    }
    let mut watcher = new_doc(200);
    let mut lives: Vec<(ActorId, LiveEdit)> = Vec::new();
    let deletes: usize = edits.iter().map(|e| e.2).sum();
    let mut now = 10;
    for (k, (t, at, del, text)) in edits.into_iter().enumerate() {
        now += 5;
        let d = &mut ts[t % typists];
        let len = d.len_chars();
        let pos = ((len as f64) * at) as usize;
        d.splice(pos, del.min(len - pos), &text, now).unwrap();
        let actor = d.author().actor.clone();
        lives.extend(d.take_live().into_iter().map(|l| (actor.clone(), l)));
        // Typists sometimes see each other's changes (their next keys then name
        // each other's chars).
        for (from, to, when) in &syncs {
            if *when == k && from % typists != to % typists {
                let changes = {
                    let f = &mut ts[from % typists];
                    f.commit(now);
                    f.changes_since(&[])
                };
                ts[to % typists].apply_remote(changes, now).unwrap();
                let actor = ts[to % typists].author().actor.clone();
                lives.extend(ts[to % typists].take_live().into_iter().map(|l| (actor.clone(), l)));
            }
        }
    }
    // Shuffled, some twice, some lost.
    let mut delivered: Vec<(ActorId, LiveEdit)> = lives.clone();
    delivered.extend(lives.iter().step_by(3).cloned());
    shuffle(&mut delivered, seed);
    if let Some(l) = lose {
        if !delivered.is_empty() {
            let gone = delivered.remove(l as usize % delivered.len());
            delivered.retain(|d| *d != gone);
        }
    }
    if let Some((at, text)) = &watcher_types {
        let len = watcher.len_chars();
        watcher.splice(((len as f64) * at) as usize, 0, text, now).unwrap();
    }
    for (actor, live) in &delivered {
        let before = watcher.rope().clone();
        if let Some(edit) = watcher.apply_live(actor, live, now) {
            let mut expect = before;
            edit.apply(&mut expect);
            prop_assert_eq!(watcher.rope(), &expect);
        }
        prop_assert!(watcher.is_consistent());
    }
    // What Automerge makes of every typist's changes.
    let all: Vec<Change> = ts
        .iter_mut()
        .flat_map(|t| {
            t.commit(u64::MAX / 2);
            t.changes_since(&[])
        })
        .collect();
    let mut merged = new_doc(201);
    merged.apply_remote(all.clone(), now).unwrap();
    // Exact when nothing is lost, the watcher does not type, and nothing is deleted
    // (deleted chars the watcher cannot see may order an insert next to them one
    // place off until its change lands: see the `live` module).
    let exact = lose.is_none() && watcher_types.is_none() && deletes == 0;
    if exact {
        prop_assert_eq!(watcher.rope().to_string(), merged.rope().to_string(), "shown before the changes");
    }
    let shown = watcher.rope().clone();
    watcher.apply_remote(all, now).unwrap();
    prop_assert!(watcher.is_consistent());
    prop_assert!(!watcher.has_overlay(), "live edits left after their changes");
    if exact {
        prop_assert_eq!(watcher.rope(), &shown, "the changes moved the text");
    } else {
        let mine = watcher.commit(u64::MAX / 2);
        merged.apply_remote(mine, now).unwrap();
        prop_assert_eq!(watcher.rope().to_string(), merged.rope().to_string());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_typists_live_edits_show_as_automerge_merges_them(
        typists in 2..=4usize,
        edits in prop::collection::vec((0..4usize, 0.0..=1.0f64, prop_oneof![3 => Just(0usize), 1 => 1..3usize], "[a-z]{1,3}"), 1..30),
        syncs in prop::collection::vec((0..4usize, 0..4usize, 0..30usize), 0..4),
        seed in any::<u64>(),
        lose in prop::option::weighted(0.2, any::<u64>()),
        watcher_types in prop::option::weighted(0.2, (0.0..=1.0f64, "[A-Z]{1,2}")),
    ) {
        typists_run(typists, edits, syncs, seed, lose, watcher_types)?;
    }
}

#[test]
fn typing_under_live_edits_keeps_both_and_converges() {
    let (mut a, mut b, a_actor) = pair();
    a.splice(11, 0, " again", 10).unwrap();
    for live in a.take_live() {
        b.apply_live(&a_actor, &live, 100).unwrap();
    }
    // b types at the front while a's words are shown ahead of their change.
    b.splice(0, 0, "> ", 20).unwrap();
    assert_eq!(b.rope().to_string(), "> hello world again");
    assert!(b.is_consistent());
    b.apply_remote(a.commit(400), 400).unwrap();
    a.apply_remote(b.commit(500), 500).unwrap();
    assert_eq!(b.rope().to_string(), "> hello world again");
    assert_eq!(a.rope(), b.rope());
    assert!(a.is_consistent() && b.is_consistent());
}

#[test]
fn a_peer_typing_at_the_same_time_shortens_the_idle_window() {
    let (mut a, mut b, a_actor) = pair();
    // b types on its own: two seconds may pass before its typing is committed.
    b.splice(0, 0, "b", 1_000).unwrap();
    assert_eq!(b.commit_deadline(), Some(1_300));
    for t in (1_100..2_000).step_by(100) {
        b.splice(0, 0, "b", t).unwrap();
    }
    assert_eq!(b.commit_deadline(), Some(2_200));
    b.commit(2_200);
    // a types too: b's steady typing still coalesces (up to 2 s; 6 keys/s, the
    // keys 167 ms apart, is not a pause), and a pause of 250 ms commits it.
    a.splice(0, 0, "a", 3_000).unwrap();
    for live in a.take_live() {
        b.apply_live(&a_actor, &live, 3_000);
    }
    b.splice(0, 0, "b", 3_000).unwrap();
    for t in (3_167..3_900).step_by(167) {
        b.splice(0, 0, "b", t).unwrap();
        assert!(b.poll_commit(t + 166).is_empty(), "typing 6 keys/s is one change");
    }
    assert_eq!(b.commit_deadline(), Some(3_835 + 250));
    assert!(!b.poll_commit(3_835 + 250).is_empty());
}

/// A typist that dies before committing: its keystrokes come off the screen when
/// its peer goes away, or when no change confirms them within the bound, so the
/// screen never shows (and a save never writes) text that no history has.
#[test]
fn live_edits_of_a_peer_that_is_gone_come_off() {
    for gone in ["disconnected", "silent"] {
        let (mut a, mut b, a_actor) = pair();
        a.splice(11, 0, "!!!", 10).unwrap();
        for live in a.take_live() {
            assert!(b.apply_live(&a_actor, &live, 100).is_some());
        }
        assert_eq!(b.rope().to_string(), "hello world!!!");
        // Another peer's departure changes nothing.
        assert!(b.drop_live_of(&ActorId::from(vec![9; 16])).is_none());
        assert!(b.expire_live(5_000, 10_000).is_none(), "within the bound");
        let dropped = match gone {
            "disconnected" => b.drop_live_of(&a_actor),
            _ => b.expire_live(10_100, 10_000),
        };
        assert!(dropped.is_some(), "{gone}");
        assert_eq!(b.rope().to_string(), "hello world", "{gone}");
        assert!(!b.has_overlay() && b.is_consistent(), "{gone}");
    }
}

/// Every keystroke becomes a live edit, the first after a commit included, and each
/// names its char as Automerge does: the peer shows every key at once, whether or not
/// the changes have come (one missing made every later key of the typist count one
/// behind on the other screens until its change landed).
#[test]
fn every_keystroke_is_a_live_edit_across_commits() {
    let (mut a, mut b, a_actor) = pair();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut unsent = Vec::new();
    for k in 0..200u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let now = 1_000 + k * 100;
        let pos = (seed % (a.len_chars() as u64 + 1)) as usize;
        a.splice(pos, 0, "a", now).unwrap();
        let live = a.take_live();
        assert_eq!(live.len(), 1, "key {k} was not sent live");
        for l in &live {
            b.apply_live(&a_actor, l, now);
        }
        assert_eq!(b.rope().to_string(), a.rope().to_string(), "key {k} is not shown");
        if k % 20 == 19 {
            unsent.extend(a.commit(now + 50));
        }
        // The changes land late, two commits behind.
        if k % 40 == 39 && unsent.len() > 1 {
            let keep = unsent.split_off(unsent.len() - 1);
            b.apply_remote(std::mem::replace(&mut unsent, keep), now + 60).unwrap();
            assert_eq!(b.rope().to_string(), a.rope().to_string(), "after the changes of key {k}");
        }
    }
}

/// Two typists at once, each key sent live and the changes exchanged late: each
/// screen holds every key typed so far, by both.
#[test]
fn two_typists_see_every_key_at_once_across_commits() {
    let (mut a, mut b, a_actor) = pair();
    let b_actor = ActorId::from(vec![2; 16]);
    b.record_live(true);
    let count = |d: &Document, c: char| d.rope().chars().filter(|x| *x == c).count();
    let base = (count(&a, 'a'), count(&a, 'b'));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    for k in 0..200u64 {
        let now = 1_000 + k * 50;
        for turn in 0..2 {
            let (me, other, c, actor) =
                if turn == 0 { (&mut a, &mut b, "a", &a_actor) } else { (&mut b, &mut a, "b", &b_actor) };
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pos = (seed % (me.len_chars() as u64 + 1)) as usize;
            me.splice(pos, 0, c, now).unwrap();
            for l in me.take_live() {
                other.apply_live(actor, &l, now);
            }
        }
        for (d, name) in [(&a, "a"), (&b, "b")] {
            assert_eq!(count(d, 'a') - base.0, k as usize + 1, "a's key {k} on {name}'s screen");
            assert_eq!(count(d, 'b') - base.1, k as usize + 1, "b's key {k} on {name}'s screen");
        }
        if k % 20 == 9 {
            to_b.extend(a.commit(now + 10));
        }
        if k % 20 == 19 {
            to_a.extend(b.commit(now + 10));
        }
        if k % 10 == 5 {
            b.apply_remote(std::mem::take(&mut to_b), now + 20).unwrap();
            a.apply_remote(std::mem::take(&mut to_a), now + 20).unwrap();
        }
    }
}
