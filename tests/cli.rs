//! End-to-end tests of the `tandem` binary on real files in temporary directories.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Env, noise, stderr};

/// Every file under `dir` with its bytes, to prove a failing command touched nothing.
fn snapshot_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "lock" && !p.ends_with(".tandem/blobs/blobs.db") {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn cat_edit_and_info_work_on_a_plain_file() {
    let env = Env::new();
    env.write("notes.txt", "héllo wörld\n");
    assert_eq!(env.ok(&["cat", "notes.txt"]), "héllo wörld\n");
    // Char positions: "héllo" is 5 chars though 6 bytes.
    env.ok(&["edit", "notes.txt", "--at", "5", "--insert", ", dear"]);
    env.ok(&["edit", "notes.txt", "--at", "0", "--delete", "1", "--insert", "H"]);
    assert_eq!(std::fs::read_to_string(env.path("notes.txt")).unwrap(), "Héllo, dear wörld\n");
    assert!(env.path(".tandem").is_dir(), "history lives beside the file");
    let info = env.json(&["info", "notes.txt", "--json"]);
    assert_eq!(info["chars"], 18);
    assert_eq!(info["bytes"], "Héllo, dear wörld\n".len());
    assert_eq!(info["lines"], 1);
    assert_eq!(info["line_ending"], "lf");
    assert_eq!(info["changes"], 4, "genesis, the file's content, two edits");
    assert_eq!(info["authors"], serde_json::json!(["tester"]));
    assert_eq!(info["saved"], true);
    assert_eq!(info["heads"].as_array().unwrap().len(), 1);
}

#[test]
fn crlf_line_endings_survive_edits() {
    let env = Env::new();
    env.write("dos.txt", "one\r\ntwo\r\n");
    env.ok(&["edit", "dos.txt", "--at", "5", "--insert", "1.5\r\n"]);
    assert_eq!(std::fs::read(env.path("dos.txt")).unwrap(), b"one\r\n1.5\r\ntwo\r\n");
    assert_eq!(env.json(&["info", "dos.txt", "--json"])["line_ending"], "crlf");
}

#[test]
fn write_records_a_minimal_diff() {
    let env = Env::new();
    let long: String = (0..200).map(|i| format!("line number {i}\n")).collect();
    env.write("big.txt", &long);
    let changed = long.replace("line number 100\n", "line NUMBER 100\n");
    let out = env.run_stdin(&["write", "big.txt", "--json"], changed.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["inserted"].as_u64(), v["deleted"].as_u64()), (Some(6), Some(6)));
    assert_eq!(std::fs::read_to_string(env.path("big.txt")).unwrap(), changed);
    let log = env.json(&["log", "big.txt", "--json"]);
    let last = log.as_array().unwrap().last().unwrap();
    assert!(last["ops"].as_u64().unwrap() <= 12, "minimal change, got {last}");
    // Writing the same text again changes nothing.
    let again = env.run_stdin(&["write", "big.txt", "--json"], changed.as_bytes());
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["changed"], false);
}

#[test]
fn outside_edits_are_merged_not_lost() {
    let env = Env::new();
    env.write("todo.md", "- buy milk\n");
    env.ok(&["edit", "todo.md", "--at", "10", "--insert", " and eggs"]);
    // Another editor changes the file behind tandem's back.
    let outside = std::fs::read_to_string(env.path("todo.md")).unwrap() + "- call mum\n";
    std::fs::write(env.path("todo.md"), &outside).unwrap();
    env.ok(&["edit", "todo.md", "--at", "0", "--insert", "# list\n"]);
    assert_eq!(
        std::fs::read_to_string(env.path("todo.md")).unwrap(),
        "# list\n- buy milk and eggs\n- call mum\n"
    );
    let log = env.json(&["log", "todo.md", "--json"]);
    assert_eq!(log.as_array().unwrap().len(), 5, "the outside edit is its own change: {log}");
}

#[test]
fn log_lists_changes_with_author_and_time() {
    let env = Env::new();
    env.write("a.txt", "a");
    env.ok(&["edit", "a.txt", "--at", "1", "--insert", "b"]);
    let log = env.json(&["log", "a.txt", "--json"]);
    let entries = log.as_array().unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last["author"], "tester");
    assert!(last["time_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(last["deps"][0], entries[entries.len() - 2]["change"]);
    let human = env.ok(&["log", "a.txt"]);
    assert_eq!(human.lines().count(), entries.len());
    assert!(human.contains("tester"));
}

#[test]
fn export_in_every_format() {
    let env = Env::new();
    env.write("code.rs", "fn main() { println!(\"<hi> & bye\"); }\n");
    assert_eq!(
        env.ok(&["export", "code.rs", "--format", "txt"]),
        "fn main() { println!(\"<hi> & bye\"); }\n"
    );
    let md = env.ok(&["export", "code.rs", "--format", "md"]);
    assert!(md.starts_with("```rs\nfn main()") && md.ends_with("\n```\n"), "{md}");
    let json: Value = serde_json::from_str(&env.ok(&["export", "code.rs", "--format", "json"])).unwrap();
    assert_eq!(json["text"], "fn main() { println!(\"<hi> & bye\"); }\n");
    assert_eq!(json["change_count"], 2);
    assert_eq!(json["heads"].as_array().unwrap().len(), 1);
    assert_eq!(json["authors"], serde_json::json!(["tester"]));
    env.ok(&["export", "code.rs", "--format", "html", "-o", "code.html"]);
    let html = std::fs::read_to_string(env.path("code.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("&lt;hi&gt; &amp; bye"));
    assert!(!html.contains("<hi>"));
}

#[test]
fn bad_files_get_clear_errors_and_nothing_is_touched() {
    let env = Env::new();
    env.write("ok.txt", "fine\n");
    env.ok(&["cat", "ok.txt"]);
    env.write("bin.dat", b"PNG\x00\x01\x02");
    env.write("latin1.txt", b"caf\xe9\n");
    std::fs::create_dir(env.path("adir")).unwrap();
    let before = snapshot_tree(env.dir.path());
    for (file, needle) in [
        ("bin.dat", "binary data"),
        ("latin1.txt", "not valid UTF-8 (at byte 3)"),
        ("missing.txt", "no such file"),
        ("adir", "directory"),
    ] {
        for args in [vec!["cat", file], vec!["edit", file, "--at", "0", "--insert", "x"], vec!["info", file]]
        {
            let out = env.run(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(err.contains(file) && err.contains(needle), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    assert_eq!(snapshot_tree(env.dir.path()), before, "a failed command changed files");
}

/// A damaged index, state or blob database is rebuilt from what is intact when the
/// document is opened, and says so.
#[test]
fn a_corrupt_history_is_rebuilt_when_opened() {
    let env = Env::new();
    env.write("doc.txt", "precious\n");
    env.ok(&["edit", "doc.txt", "--at", "8", "--insert", " data"]);
    let doc_dir = std::fs::read_dir(env.path(".tandem/docs")).unwrap().next().unwrap().unwrap().path();
    // A torn or flipped log record is covered by the changelog's unit tests and
    // a_damaged_change_log_is_rebuilt_from_its_intact_records_and_the_blob_store.
    for (victim, garbage) in [
        ("index.json", b"{\"version\":1,\"snapshot\":{\"blob\":\"zz\"".to_vec()),
        ("state.json", b"{not json".to_vec()),
    ] {
        std::fs::write(doc_dir.join(victim), &garbage).unwrap();
        // `log` loads the history (a plain `cat` may answer from the file).
        let out = env.run(&["log", "doc.txt"]);
        assert!(out.status.success(), "{victim}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(victim) && stderr(&out).contains("rebuilt"),
            "{victim}: {}",
            stderr(&out)
        );
        assert_eq!(env.ok(&["cat", "doc.txt"]), "precious data\n", "{victim}");
    }
    // A blob database that is not one at all is set aside for a new one, and the
    // history's blobs come back from the document's own copies.
    let path = env.path(".tandem/blobs/blobs.db");
    std::fs::write(&path, b"not a database at all".repeat(300)).unwrap();
    let out = env.run(&["blame", "doc.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("blobs.db") && err.contains("damaged") && err.contains("put back"), "{err}");
    assert!(env.path(".tandem/blobs/blobs.db.damaged").exists(), "the damaged database is kept");
    assert_eq!(env.ok(&["cat", "doc.txt"]), "precious data\n");
    assert!(env.run(&["blame", "doc.txt"]).stderr.is_empty(), "repaired once, quiet after");
}

#[test]
fn usage_errors_exit_with_code_2() {
    let env = Env::new();
    env.write("a.txt", "abc");
    for args in [
        vec!["edit", "a.txt", "--insert", "x"],
        vec!["export", "a.txt", "--format", "pdf"],
        vec!["--nonsense"],
        vec!["cat"],
        vec!["edit", "a.txt", "--at", "4", "--insert", "x"],
        vec!["edit", "a.txt", "--at", "1", "--delete", "5"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = env.run(&["edit", "a.txt", "--at", "4", "--insert", "x"]);
    assert!(stderr(&out).contains("a.txt") && stderr(&out).contains("0..=3"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(env.path("a.txt")).unwrap(), "abc");
}

#[test]
fn the_editor_without_a_terminal_says_so() {
    let env = Env::new();
    env.write("a.txt", "abc");
    let out = env.cmd(&["a.txt"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a terminal"), "{}", stderr(&out));
}

#[test]
fn binary_stdin_for_write_is_refused() {
    let env = Env::new();
    env.write("a.txt", "abc");
    let out = env.run_stdin(&["write", "a.txt"], b"\x00\x01");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stdin"), "{}", stderr(&out));
    let out = env.run_stdin(&["write", "a.txt"], b"\xff\xfe");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(env.path("a.txt")).unwrap(), "abc");
}

/// Reads JSON lines from a child's stdout on a thread, with a timeout per line.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    fn new(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    fn next_json(&self) -> Value {
        let line = self.rx.recv_timeout(Duration::from_secs(20)).expect("a watch line within 20 s");
        serde_json::from_str(&line).unwrap()
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_socket(dir: &Path) {
    let sock = dir.join(".tandem/control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "the owner never served its control socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_streams_changes_made_through_the_owner_socket() {
    let env = Env::new();
    env.write("live.txt", "hello\n");
    let mut owner = env.cmd(&["watch", "live.txt", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let owner_lines = Lines::new(&mut owner);
    let _owner = Killed(owner);
    wait_for_socket(env.dir.path());
    // A second watcher reaches the owner through the socket.
    let mut second = env.cmd(&["watch", "live.txt", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let second_lines = Lines::new(&mut second);
    let _second = Killed(second);
    std::thread::sleep(Duration::from_millis(300));

    env.ok(&["edit", "live.txt", "--at", "5", "--insert", " wörld"]);
    for lines in [&owner_lines, &second_lines] {
        let event = lines.next_json();
        assert_eq!(event["file"], "live.txt");
        assert_eq!(event["author"], "tester");
        assert_eq!(event["edits"], serde_json::json!([{"pos": 5, "delete": 0, "insert": " wörld"}]));
        assert_eq!(event["heads"].as_array().unwrap().len(), 1);
        assert!(event["time_ms"].as_i64().unwrap() > 0);
    }
    assert_eq!(std::fs::read_to_string(env.path("live.txt")).unwrap(), "hello wörld\n");
    // An edit made with another tool shows up too, as a merged change.
    std::fs::write(env.path("live.txt"), "hello wörld\nmore\n").unwrap();
    let event = owner_lines.next_json();
    assert_eq!(event["edits"], serde_json::json!([{"pos": 12, "delete": 0, "insert": "more\n"}]));
    // Commands keep working through the owner.
    assert_eq!(env.ok(&["cat", "live.txt"]), "hello wörld\nmore\n");
}

#[test]
fn edits_acknowledged_before_a_kill_survive_it() {
    let env = Env::new();
    env.write("log.txt", "");
    let mut acknowledged = Vec::new();
    for round in 0..12u64 {
        // An owner process that is killed with SIGKILL at an arbitrary moment.
        let owner = env.cmd(&["watch", "log.txt", "--json"]).stdout(Stdio::null()).spawn().unwrap();
        let mut owner = Killed(owner);
        wait_for_socket(env.dir.path());
        let line = format!("line {round}\n");
        let len = env.ok(&["cat", "log.txt"]).chars().count();
        let len_s = len.to_string();
        let writer = env
            .cmd(&["edit", "log.txt", "--at", &len_s, "--insert", &line])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(round * 3 % 20));
        owner.0.kill().unwrap();
        owner.0.wait().unwrap();
        let status = writer.wait_with_output().unwrap().status;
        if status.success() {
            acknowledged.push(line);
        }
        // The history opens cleanly and every acknowledged edit is in it and in the file.
        let text = env.ok(&["cat", "log.txt"]);
        let file = std::fs::read_to_string(env.path("log.txt")).unwrap();
        for a in &acknowledged {
            assert!(text.contains(a.as_str()), "round {round}: lost {a:?}; text {text:?}");
            assert!(file.contains(a.as_str()), "round {round}: file lost {a:?}; file {file:?}");
        }
    }
    assert!(!acknowledged.is_empty());
}

#[test]
fn any_version_can_be_read_diffed_exported_and_restored() {
    let env = Env::new();
    env.write("h.md", "one\ntwo\n");
    env.ok(&["edit", "h.md", "--at", "4", "--delete", "3", "--insert", "TWO"]);
    env.ok(&["edit", "h.md", "--at", "8", "--insert", "three\n"]);
    let log = env.json(&["log", "h.md", "--json"]);
    let versions: Vec<String> =
        log.as_array().unwrap().iter().map(|c| c["version"].as_str().unwrap().to_owned()).collect();
    // genesis, the file's content, two edits; oldest first.
    assert_eq!(versions.len(), 4, "{log}");
    let (first, second) = (&versions[1], &versions[2]);
    assert_eq!(env.ok(&["cat", "h.md", "--at", first]), "one\ntwo\n");
    assert_eq!(env.ok(&["cat", "h.md", "--at", &second[..6]]), "one\nTWO\n", "a 6-digit prefix will do");
    let md = env.ok(&["export", "h.md", "--format", "md", "--at", first]);
    assert!(md.contains("one\ntwo\n"), "{md}");
    let diff = env.ok(&["diff", "h.md", first, second]);
    assert!(
        diff.contains(&format!("--- h.md@{first}")) && diff.contains("-two\n") && diff.contains("+TWO\n"),
        "{diff}"
    );
    assert_eq!(env.ok(&["diff", "h.md"]), "", "the file holds the current text");
    // Restore: a new change brings the old text back; history keeps everything.
    env.ok(&["restore", "h.md", first]);
    assert_eq!(std::fs::read_to_string(env.path("h.md")).unwrap(), "one\ntwo\n");
    assert_eq!(env.json(&["log", "h.md", "--json"]).as_array().unwrap().len(), 5);
    assert_eq!(env.ok(&["cat", "h.md", "--at", &versions[3]]), "one\nTWO\nthree\n");
    // Bad versions name the problem.
    for bad in ["zz", "123", "ffffffffffff"] {
        let out = env.run(&["cat", "h.md", "--at", bad]);
        assert!(!out.status.success(), "{bad}");
        let err = stderr(&out);
        assert!(err.contains("version"), "{bad}: {err}");
    }
}

#[test]
fn blame_names_who_last_wrote_each_line() {
    let env = Env::new();
    env.write("b.txt", "alpha\nbeta\ngamma");
    // The first command on a file imports it, by whoever runs it.
    env.ok(&["info", "b.txt"]);
    // Another device (its own TANDEM_HOME) reads nothing of the history until the
    // owner adds it to the group: the history is encrypted.
    let ann = |args: &[&str]| {
        env.cmd(args).env("TANDEM_NAME", "ann").env("TANDEM_HOME", env.path("ann-home")).output().unwrap()
    };
    let id: Value = serde_json::from_slice(&ann(&["id", "--json"]).stdout).unwrap();
    let denied = ann(&["cat", "b.txt"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied).contains("holds no key") && stderr(&denied).contains("tandem group"),
        "{}",
        stderr(&denied)
    );
    let (peer, age) = (id["peer_id"].as_str().unwrap(), id["age_recipient"].as_str().unwrap());
    env.ok(&["group", "b.txt", "add", peer, "writer", "--age", age]);
    let out = env
        .cmd(&["edit", "b.txt", "--at", "6", "--delete", "4", "--insert", "BETA"])
        .env("TANDEM_NAME", "ann")
        .env("TANDEM_HOME", env.path("ann-home"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = env.json(&["blame", "b.txt", "--json"]);
    let who: Vec<(&str, &str)> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["text"].as_str().unwrap(), l["author"].as_str().unwrap()))
        .collect();
    assert_eq!(who, [("alpha", "tester"), ("BETA", "ann"), ("gamma", "tester")], "{lines}");
    let log = env.json(&["log", "b.txt", "--json"]);
    let anns = log.as_array().unwrap().iter().find(|c| c["author"] == "ann").unwrap()["version"].clone();
    assert_eq!(lines[1]["version"], anns);
    let text = env.ok(&["blame", "b.txt"]);
    assert!(text.lines().nth(1).unwrap().contains("ann") && text.contains("| BETA"), "{text}");
}

/// A snapshot of the history folds its changes in; `tandem gc` then deletes the blobs
/// no history names any more, and everything still reads and verifies.
#[test]
fn gc_deletes_what_compaction_replaced_and_keeps_history() {
    let env = Env::new();
    env.write("big.txt", "start\n");
    env.ok(&["edit", "big.txt", "--at", "0", "--insert", "one "]);
    // A change larger than the snapshot and 256 KiB: the next save compacts.
    let big: String = (0..8000).map(|i| format!("line {i} of a long paste, with some words\n")).collect();
    let out = env.run_stdin(&["write", "big.txt"], big.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let log_before = env.json(&["log", "big.txt", "--json"]);
    let gc = env.json(&["gc", "--json"]);
    assert!(gc["bytes_after"].as_u64() < gc["bytes_before"].as_u64(), "{gc}");
    assert_eq!(gc["compacted_documents"], 1, "{gc}");
    // (Compaction already starts a collection in the background, so how many blobs
    // this one removed varies; what is left does not.) One snapshot, nothing else.
    let doc_dir = std::fs::read_dir(env.path(".tandem/docs")).unwrap().next().unwrap().unwrap().path();
    let index: Value = serde_json::from_slice(&std::fs::read(doc_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["changes"].as_array().unwrap().len(), 0, "{index}");
    let snapshot = index["snapshot"]["blob"].as_str().unwrap();
    let files: Vec<String> = std::fs::read_dir(env.path(".tandem/blobs/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".data"))
        .collect();
    assert_eq!(files, vec![format!("{snapshot}.data")]);
    assert_eq!(env.json(&["log", "big.txt", "--json"]), log_before);
    assert_eq!(env.ok(&["cat", "big.txt"]), big);
    let first = log_before[1]["version"].as_str().unwrap();
    assert_eq!(env.ok(&["cat", "big.txt", "--at", first]), "start\n");
    let verify = env.json(&["verify", "--json"]);
    assert_eq!(verify["ok"], true, "{verify}");
    // Nothing left to collect.
    assert_eq!(env.json(&["gc", "--json"])["removed_blobs"], 0);
}

/// `tandem export --car`: the history's blobs as a CAR file, each block under its CID
/// (raw, BLAKE3); read back here and, when its npm packages are installed (always in
/// CI, where crates/store/tests/car.rs insists on them), by the JavaScript IPFS
/// libraries.
#[test]
fn export_car_writes_every_history_blob_under_its_cid() {
    let env = Env::new();
    env.write("notes.md", "# notes\n");
    env.ok(&["edit", "notes.md", "--at", "8", "--insert", "first\n"]);
    env.ok(&["edit", "notes.md", "--at", "14", "--insert", "second\n"]);
    let out = env.json(&["export", "notes.md", "--car", "notes.car"]);
    let car = std::fs::read(env.path("notes.car")).unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(car.len() as u64), "{out}");
    let parsed = tandem_store::car::read_car(&car).unwrap();
    assert_eq!(parsed.blocks.len() as u64, out["blocks"].as_u64().unwrap());
    assert!(parsed.blocks.len() >= 3, "snapshot and two changes: {out}");
    for block in &parsed.blocks {
        let hash = tandem_store::car::hash_from_cid(&block.cid).expect("a raw BLAKE3 CID");
        assert_eq!(hash, tandem_store::blob_hash(&block.data));
    }
    let verifier = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/car");
    if verifier.join("node_modules").is_dir() {
        let node = Command::new("node")
            .arg(verifier.join("verify.mjs"))
            .arg(env.path("notes.car"))
            .output()
            .unwrap();
        assert!(node.status.success(), "{}", String::from_utf8_lossy(&node.stderr));
        let summary: Value = serde_json::from_slice(&node.stdout).unwrap();
        assert_eq!(summary["blocks"], out["blocks"]);
        assert_eq!(summary["roots"], out["roots"]);
    }
    // --car takes the whole history: --at makes no sense with it.
    let bad = env.run(&["export", "notes.md", "--car", "x.car", "--at", "abcdef"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(!env.path("x.car").exists());
}

/// A history blob deleted from disk comes back from the document's copy; with that
/// gone too, `verify` names it as missing (exit 1, no peer to repair it from), and
/// reading the document refuses it by name, changing nothing.
#[test]
fn a_missing_blob_is_named_and_never_silently_skipped() {
    let env = Env::new();
    // Pseudo-random lines: the snapshot is larger than 16 KiB, so a file of its own.
    let text = noise(800);
    env.write("big.txt", &text);
    assert_eq!(env.json(&["verify", "big.txt", "--json"])["files"][0]["blobs"], 0, "no history yet");
    env.ok(&["cat", "big.txt"]);
    assert!(env.json(&["verify", "big.txt", "--json"])["ok"] == true);
    let doc_dir = std::fs::read_dir(env.path(".tandem/docs")).unwrap().next().unwrap().unwrap().path();
    let index: Value = serde_json::from_slice(&std::fs::read(doc_dir.join("index.json")).unwrap()).unwrap();
    let blob = index["snapshot"]["blob"].as_str().unwrap().to_owned();
    let blob_file = env.path(&format!(".tandem/blobs/data/{blob}.data"));
    std::fs::remove_file(&blob_file).unwrap();
    // The document's own copy puts it back...
    let report = env.json(&["verify", "big.txt", "--json"]);
    assert!(
        report["ok"] == true && report["files"][0]["rebuilt"].to_string().contains("put back"),
        "{report}"
    );
    assert!(blob_file.exists());
    // ...unless that is gone too: then only a peer has it.
    std::fs::remove_file(&blob_file).unwrap();
    std::fs::remove_file(doc_dir.join("snapshot.copy")).unwrap();
    let out = env.run(&["verify", "big.txt", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = &report["files"][0]["bad"][0];
    assert_eq!(bad["blob"], blob.as_str(), "{report}");
    assert_eq!(bad["fault"], "missing", "{report}");
    assert_eq!(bad["repaired"], false, "{report}");
    // Anything that loads the history refuses it by name (`cat` may still answer
    // from the plain file, which is intact).
    let out = env.run(&["log", "big.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&blob) && err.contains("missing") && err.contains("tandem verify"), "{err}");
    assert_eq!(std::fs::read_to_string(env.path("big.txt")).unwrap(), text);
}

/// Small things a new user met first (issue 12), each as it was reported.
#[test]
fn mistakes_at_the_command_line_get_the_answer_that_fixes_them() {
    let env = Env::new();
    env.write("notes.md", "hello\n");
    // A mistyped command: "did you mean", exit 2.
    let out = env.run(&["lgo", "notes.md"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `tandem log`"), "{}", stderr(&out));
    // A malformed version: what a version is, not "invalid edit".
    let out = env.run(&["cat", "notes.md", "--at", "2d14"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("6 to 64 hex digits") && !stderr(&out).contains("invalid edit"));
    // --listen with an address this host lacks: why, and what to do.
    let out = env.run(&["share", "notes.md", "--headless", "--listen", "10.255.254.253"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot listen on 10.255.254.253") && err.contains("ip addr"), "{err:?}");
}

/// The sole owner cannot remove or demote itself (nobody could manage the group,
/// and a removed owner cannot read): refused, exit 2, nothing changed.
#[test]
fn the_last_owner_cannot_be_removed_or_demoted() {
    let env = Env::new();
    env.write("doc.md", "mine\n");
    let me = env.json(&["id", "--json"])["peer_id"].as_str().unwrap().to_owned();
    let before = env.json(&["group", "doc.md", "--json"]);
    for args in [vec!["group", "doc.md", "remove", &me], vec!["group", "doc.md", "role", &me, "writer"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("only owner"), "{}", stderr(&out));
    }
    assert_eq!(env.json(&["group", "doc.md", "--json"]), before);
    env.ok(&["edit", "doc.md", "--at", "0", "--insert", "still "]);
    assert_eq!(env.ok(&["cat", "doc.md"]), "still mine\n");
}

/// TANDEM_NAME names each change, also after the device's first one (Automerge keeps
/// one author per actor, so the name goes in every change).
#[test]
fn a_renamed_device_writes_under_its_new_name() {
    let env = Env::new();
    env.write("doc.md", "x\n");
    env.cmd(&["edit", "doc.md", "--at", "0", "--insert", "a"]).env("TANDEM_NAME", "ann").output().unwrap();
    env.cmd(&["edit", "doc.md", "--at", "0", "--insert", "b"]).env("TANDEM_NAME", "bea").output().unwrap();
    let log = env.json(&["log", "doc.md", "--json"]);
    let names: Vec<&str> = log.as_array().unwrap().iter().filter_map(|c| c["author"].as_str()).collect();
    assert_eq!(names.last(), Some(&"bea"), "{log}");
    assert!(names.contains(&"ann"), "{log}");
}

/// `export --at V --format json|html` describes V (its heads, its change count), not
/// the current version.
#[test]
fn an_export_of_an_old_version_reports_that_version() {
    let env = Env::new();
    env.write("doc.md", "one\n");
    env.ok(&["edit", "doc.md", "--at", "0", "--insert", "two "]);
    env.ok(&["edit", "doc.md", "--at", "0", "--insert", "three "]);
    let log = env.json(&["log", "doc.md", "--json"]);
    let changes = log.as_array().unwrap();
    let old = changes[changes.len() - 2]["change"].as_str().unwrap();
    let now = env.json(&["export", "doc.md", "--format", "json"]);
    let then = env.json(&["export", "doc.md", "--format", "json", "--at", old]);
    assert_eq!(then["text"], "two one\n");
    assert_eq!(then["heads"], serde_json::json!([old]));
    assert_eq!(then["change_count"].as_u64().unwrap() + 1, now["change_count"].as_u64().unwrap());
    let html = env.ok(&["export", "doc.md", "--format", "html", "--at", old]);
    assert!(html.contains(&old[..12]) && !html.contains(&now["heads"][0].as_str().unwrap()[..12]), "{html}");
}

/// A file system of its own, 4 MB of tmpfs (root only), unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new() -> Option<SmallDisk> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: mounting a small file system needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        Some(SmallDisk(dir))
    }

    fn used(&self) -> u64 {
        let out = Command::new("df").args(["--output=used", "-B1"]).arg(self.0.path()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// `tandem write` that runs out of disk half way: it fails saying so, and changes
/// nothing: the history, the file and the disk's free space are as before (it left a
/// part of the new text in history, which the next save wrote to the file).
#[test]
fn a_write_on_a_full_disk_is_all_or_nothing() {
    let Some(disk) = SmallDisk::new() else { return };
    let dir = disk.0.path();
    let home = tempfile::tempdir().unwrap();
    let tandem = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .current_dir(dir)
            .env("TANDEM_HOME", home.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    std::fs::write(dir.join("doc.md"), "start\n").unwrap();
    let first = noise(12_000); // 0.7 MB
    let out = tandem(&["write", "doc.md"], &first);
    assert!(out.status.success(), "{}", stderr(&out));
    let used = disk.used();
    let log: Value = serde_json::from_slice(&tandem(&["log", "doc.md", "--json"], "").stdout).unwrap();
    let changes_before = log.as_array().unwrap().len();
    let second: String = noise(50_000).chars().rev().collect(); // 3 MB: does not fit
    let out = tandem(&["write", "doc.md"], &second);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.to_lowercase().contains("no space left") && err.contains("changes nothing"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("doc.md")).unwrap(), first, "the file");
    // The history itself (`cat --at` of the newest version loads it; a plain
    // `cat` may answer from the file).
    let log: Value = serde_json::from_slice(&tandem(&["log", "doc.md", "--json"], "").stdout).unwrap();
    let newest = log.as_array().unwrap().last().unwrap()["change"].as_str().unwrap().to_owned();
    assert_eq!(log.as_array().unwrap().len(), changes_before, "changes in the history");
    assert!(tandem(&["cat", "doc.md", "--at", &newest], "").stdout == first.as_bytes(), "the history");
    let stray: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().contains("tmp")
                || p.extension().is_some_and(|x| x == "temp")
        })
        .collect();
    assert!(stray.is_empty(), "temp files left on the full disk: {stray:?}");
    assert!(
        disk.used() <= used + used / 10,
        "the failed write kept its space: {} then {}",
        used,
        disk.used()
    );
    // And the next write that fits works.
    let out = tandem(&["write", "doc.md"], "small again\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.join("doc.md")).unwrap(), "small again\n");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// One flipped byte in any one file of a history costs nothing: every command still
/// works on the document (the damaged file is rebuilt from what is intact, when the
/// document is opened or by `tandem verify`), and all the history is there.
#[test]
fn a_flipped_byte_in_any_file_of_a_history_loses_nothing() {
    let setup = || {
        let env = Env::new();
        env.write("doc.md", "one\n");
        for i in 0..3 {
            env.ok(&["edit", "doc.md", "--at", "0", "--insert", &format!("e{i} ")]);
        }
        let log = env.json(&["log", "doc.md", "--json"]);
        (env, log)
    };
    let (probe, _) = setup();
    let docs = probe.path(".tandem/docs");
    let dir = std::fs::read_dir(&docs).unwrap().next().unwrap().unwrap().file_name();
    // The blob store's database too (small blobs live in it): most flips land in
    // pages redb checks, so it is set aside and the blobs come back from the copies.
    for name in [
        "state.json",
        "group.log",
        "group.copy",
        "index.json",
        "text.cache",
        "snapshot.copy",
        "changes.copy",
        "../../blobs/blobs.db",
        "../../FORMAT",
    ] {
        assert!(docs.join(&dir).join(name).exists(), "{name}");
        for k in 0..8 {
            let (env, log) = setup();
            let path = env.path(".tandem/docs").join(&dir).join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            let (len, at) = (bytes.len(), bytes.len() * (2 * k + 1) / 16);
            bytes[at] ^= 0x04;
            std::fs::write(&path, &bytes).unwrap();
            let what = format!("{name} byte {at} of {len}");
            let out = env.run(&["verify", "--json"]);
            assert!(
                out.status.success(),
                "{what}: verify failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let rebuilt = report["files"][0]["rebuilt"].to_string();
            if name == "group.log" || name == "group.copy" {
                // Every op is signed: a flip anywhere in it shows.
                assert!(rebuilt.contains("group") || name == "group.copy", "{what}: not named: {report}");
            }
            assert_eq!(env.ok(&["cat", "doc.md"]), "e2 e1 e0 one\n", "{what}");
            assert_eq!(env.json(&["log", "doc.md", "--json"]), log, "{what}: history lost");
            env.ok(&["edit", "doc.md", "--at", "0", "--insert", "after "]);
            assert_eq!(env.ok(&["cat", "doc.md"]), "after e2 e1 e0 one\n", "{what}");
        }
    }
    // A store made by a newer tandem is called that, not corrupt.
    let (env, _) = setup();
    std::fs::write(env.path(".tandem/FORMAT"), tandem_store::format_marker(9)).unwrap();
    let out = env.run(&["cat", "doc.md"]);
    assert!(stderr(&out).contains("newer tandem") && !stderr(&out).contains("corrupt"), "{}", stderr(&out));
}

/// A history too big to live inside the blob database has its blobs as files of
/// their own: a flipped byte in any of them, a lost database or a lost blob store
/// costs nothing either (each document keeps its own copy of its blobs).
#[test]
fn a_damaged_or_lost_blob_store_loses_no_history() {
    // ~60 KB of words that do not compress away: the snapshot is a file of its own.
    let mut x = 12345u64;
    let mut text = String::new();
    while text.len() < 60_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text += &format!("w{:x} ", x >> 40);
    }
    text.push('\n');
    let setup = || {
        let env = Env::new();
        env.write("doc.md", &text);
        for i in 0..3 {
            env.ok(&["edit", "doc.md", "--at", "0", "--insert", &format!("e{i} ")]);
        }
        let log = env.json(&["log", "doc.md", "--json"]);
        (env, log)
    };
    let expected = format!("e2 e1 e0 {text}");
    let check = |env: &Env, log: &Value, what: &str| {
        let out = env.run(&["verify", "--json"]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{what}: verify failed: {report}{}", stderr(&out));
        assert_eq!(env.ok(&["cat", "doc.md"]), expected, "{what}");
        assert_eq!(&env.json(&["log", "doc.md", "--json"]), log, "{what}: history lost");
        env.ok(&["edit", "doc.md", "--at", "0", "--insert", "after "]);
        assert_eq!(env.ok(&["cat", "doc.md"]), format!("after {expected}"), "{what}");
        report
    };
    // Blob files are named by hash, and every history seals its own: listed afresh.
    let data_files = |env: &Env| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(env.path(".tandem/blobs/data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .collect();
        files.sort();
        files
    };
    let count = data_files(&setup().0).len();
    assert!(count > 0, "the snapshot is a file of its own");
    for k in 0..count {
        let (env, log) = setup();
        let path = data_files(&env)[k].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let report = check(&env, &log, &format!("blob file {k} byte {at}"));
        assert!(report.contains("put back from"), "blob file {k}: {report}");
    }
    for lost in [".tandem/blobs/blobs.db", ".tandem/blobs"] {
        let (env, log) = setup();
        let path = env.path(lost);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        let report = check(&env, &log, lost);
        assert!(report.contains("put back"), "{lost}: {report}");
    }
}

/// `info` and `log` answer from what the last full answer kept while the history and
/// the file are as they were (a long history takes seconds to load), and never
/// answer stale: an edit, an outside change or a damaged cache means a full answer.
#[test]
fn info_and_log_are_kept_and_never_stale() {
    let env = Env::new();
    env.write("doc.md", "one\n");
    env.ok(&["edit", "doc.md", "--at", "0", "--insert", "a "]);
    let (info, log) = (env.json(&["info", "doc.md", "--json"]), env.json(&["log", "doc.md", "--json"]));
    let dir = std::fs::read_dir(env.path(".tandem/docs")).unwrap().next().unwrap().unwrap().path();
    assert!(dir.join("info.cache").exists() && dir.join("log.cache").exists());
    assert_eq!(env.json(&["info", "doc.md", "--json"]), info);
    assert_eq!(env.json(&["log", "doc.md", "--json"]), log);
    env.ok(&["edit", "doc.md", "--at", "0", "--insert", "b "]);
    let after = env.json(&["log", "doc.md", "--json"]);
    assert_eq!(after.as_array().unwrap().len(), log.as_array().unwrap().len() + 1);
    std::fs::write(env.path("doc.md"), "outside\n").unwrap();
    assert_eq!(env.json(&["info", "doc.md", "--json"])["chars"], 8);
    let info = env.json(&["info", "doc.md", "--json"]);
    let mut bytes = std::fs::read(dir.join("info.cache")).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(dir.join("info.cache"), &bytes).unwrap();
    assert_eq!(env.json(&["info", "doc.md", "--json"]), info, "a damaged cache is not used");
}

/// A relay or bootstrap address that cannot be one is a usage error naming it and
/// what is missing, on the command line and in config.toml; so is a bad `tandem
/// relay --listen`; `tandem peers` on a document no tandem shares says so.
#[test]
fn malformed_relay_addresses_are_usage_errors_that_name_them() {
    let env = Env::new();
    env.write("doc.md", "x\n");
    let peer = "12D3KooWBfHR4LkVebKSLwGhDC7KrXpAK8RrvwJuPxuBcq8DVkp9";
    for (bad, needle) in [
        ("/ip4/198.51.100.10/udp/4001/quic-v1".to_owned(), "peer id"),
        ("relay.example.org".to_owned(), "not a multiaddr"),
        (format!("/p2p/{peer}"), "no address"),
        (format!("/ip4/198.51.100.10/tcp/4001/p2p/{peer}/p2p-circuit"), "not a circuit"),
    ] {
        for flag in ["--relay", "--bootstrap"] {
            for cmd in [
                vec!["share", "doc.md", "--headless", flag, &bad],
                vec!["join", "tandem1abc", "--headless", flag, &bad],
            ] {
                let out = env.run(&cmd);
                assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", stderr(&out));
                let err = stderr(&out);
                assert!(err.contains(&bad) && err.contains(needle) && err.contains(flag), "{cmd:?}: {err}");
            }
        }
    }
    std::fs::create_dir_all(&env.home).unwrap();
    std::fs::write(env.home.join("config.toml"), "[network]\nrelays = [\"/ip4/10.0.0.1/tcp/4001\"]\n")
        .unwrap();
    let out = env.run(&["share", "doc.md", "--headless"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("config.toml") && err.contains("/ip4/10.0.0.1/tcp/4001") && err.contains("peer id"),
        "{err}"
    );
    std::fs::write(env.home.join("config.toml"), "[network]\nbootstrap = [\"dht.example.org\"]\n").unwrap();
    let out = env.run(&["share", "doc.md", "--headless"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("[network] bootstrap") && err.contains("dht.example.org"), "{err}");
    std::fs::remove_file(env.home.join("config.toml")).unwrap();

    let out = env.run(&["relay", "--listen", "0.0.0.0:4001"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0.0.0.0:4001") && stderr(&out).contains("multiaddr"), "{}", stderr(&out));

    let v = env.json(&["peers", "doc.md", "--json"]);
    assert_eq!(v["shared"], false, "{v}");
    assert!(env.ok(&["peers", "doc.md"]).contains("not shared"));
}
