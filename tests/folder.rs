//! `tandem sync DIR` as a user runs it: a real `tandem` process keeping a real
//! folder while other programs (these tests, standing in for vim, `mv`, `rm`, a
//! script) change it; checked through `tandem sync DIR --status --json` and
//! `tandem log`, which reach the running process like any second command.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Env, stderr};

/// `tandem sync notes --json`, running until dropped.
struct Sync {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Sync {
    fn start(env: &Env, dir: &str) -> Sync {
        let mut child = env.cmd(&["sync", dir, "--json"]).stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Sync { child, lines }
    }

    /// The next report the process printed.
    fn report(&self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("a sync report within 30 s");
        serde_json::from_str(&line).unwrap()
    }

    /// Reports until one satisfies `done` (a change may be seen in more than one pass).
    fn until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no report showed {what}");
            let r = self.report();
            if done(&r) {
                return r;
            }
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(env: &Env) -> Value {
    status_of(env, "notes")
}

fn status_of(env: &Env, dir: &str) -> Value {
    env.json(&["sync", dir, "--status", "--json"])
}

/// path -> doc id of every live document.
fn docs(status: &Value) -> std::collections::BTreeMap<String, String> {
    status["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["doc_id"].as_str().unwrap().to_owned()))
        .collect()
}

fn has(list: &Value, s: &str) -> bool {
    list.as_array().unwrap().iter().any(|v| v == s)
}

fn skipped_why(status: &Value, path: &str) -> Option<String> {
    status["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["path"] == path)
        .map(|k| k["why"].as_str().unwrap().to_owned())
}

fn log_len(env: &Env, file: &str) -> usize {
    env.json(&["log", file, "--json"]).as_array().unwrap().len()
}

#[test]
fn sync_records_what_other_programs_do_to_a_folder() {
    let env = Env::new();
    env.write("notes/todo.md", "- milk\n");
    env.write("notes/journal/monday.md", "rain\n");
    env.write("notes/.tandemignore", "*.tmp\nbuild/\n");
    env.write("notes/scratch.tmp", "not a note\n");
    env.write("notes/build/out.md", "generated\n");
    env.write("notes/photo.png", [0x89u8, b'P', b'N', b'G', 0, 0, 0, 13]);
    env.write("notes/latin1.txt", [b'c', b'a', b'f', 0xe9, b'\n']);
    env.write("outside.md", "secret\n");
    symlink(env.path("outside.md"), env.path("notes/link.md")).unwrap();

    let sync = Sync::start(&env, "notes");
    let first = sync.report();
    for p in ["todo.md", "journal/monday.md", ".tandemignore"] {
        assert!(has(&first["added"], p), "{p} is a document of the folder: {first}");
    }
    assert_eq!(first["added"].as_array().unwrap().len(), 3, "ignored and skipped files are not: {first}");
    let s = status(&env);
    assert!(skipped_why(&s, "photo.png").unwrap().contains("binary"), "{s}");
    assert!(skipped_why(&s, "latin1.txt").unwrap().contains("UTF-8"), "{s}");
    assert!(skipped_why(&s, "link.md").unwrap().contains("symbolic link"), "{s}");
    assert!(!docs(&s).keys().any(|p| p.ends_with(".tmp") || p.starts_with("build/")), "{s}");
    assert_eq!(s["unrecorded"], serde_json::json!([]), "{s}");
    let ids = docs(&s);

    // An edit with another program is merged into the document's history.
    std::fs::write(env.path("notes/todo.md"), "- milk\n- eggs\n").unwrap();
    sync.until("the edit merged", |r| has(&r["merged"], "todo.md"));
    assert_eq!(env.ok(&["cat", "notes/todo.md"]), "- milk\n- eggs\n");
    let changes = log_len(&env, "notes/todo.md");

    // An editor's atomic save (write a temporary file, rename it over the note) is
    // an edit of the same document, not a delete and a create.
    std::fs::write(env.path("notes/.todo.md.swp"), "- milk\n- eggs\n- tea\n").unwrap();
    std::fs::rename(env.path("notes/.todo.md.swp"), env.path("notes/todo.md")).unwrap();
    let r = sync.until("the atomic save", |r| has(&r["merged"], "todo.md"));
    assert!(r["deleted"].as_array().unwrap().is_empty() && r["added"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(docs(&status(&env))["todo.md"], ids["todo.md"]);
    assert_eq!(log_len(&env, "notes/todo.md"), changes + 1);

    // A rename keeps the document and its history.
    std::fs::rename(env.path("notes/todo.md"), env.path("notes/shopping.md")).unwrap();
    sync.until("the rename", |r| !r["moved"].as_array().unwrap().is_empty());
    let s = status(&env);
    assert_eq!(docs(&s)["shopping.md"], ids["todo.md"], "{s}");
    assert!(!docs(&s).contains_key("todo.md"));
    assert_eq!(log_len(&env, "notes/shopping.md"), changes + 1);

    // So does moving a whole subfolder.
    std::fs::rename(env.path("notes/journal"), env.path("notes/2026")).unwrap();
    sync.until("the folder move", |r| {
        r["moved"].as_array().unwrap().iter().any(|m| m["to"] == "2026/monday.md")
    });
    assert_eq!(docs(&status(&env))["2026/monday.md"], ids["journal/monday.md"]);

    // A delete is a tombstone; the history stays and `tandem log` still reads it.
    std::fs::remove_file(env.path("notes/shopping.md")).unwrap();
    sync.until("the delete", |r| has(&r["deleted"], "shopping.md"));
    let s = status(&env);
    let deleted = &s["deleted"].as_array().unwrap()[0];
    assert_eq!(deleted["path"], "shopping.md");
    assert_eq!(deleted["doc_id"].as_str().unwrap(), ids["todo.md"]);
    assert_eq!(log_len(&env, "notes/shopping.md"), changes + 1);
    assert_eq!(env.ok(&["cat", "notes/shopping.md"]), "- milk\n- eggs\n- tea\n");
    let versions = env.json(&["log", "notes/shopping.md", "--json"]);
    let first_edit = versions.as_array().unwrap()[1]["version"].as_str().unwrap().to_owned();
    assert_eq!(env.ok(&["cat", "notes/shopping.md", "--at", &first_edit]), "- milk\n");

    // `tandem restore` of its last version brings the file back, the same document.
    let last = versions.as_array().unwrap().last().unwrap()["version"].as_str().unwrap().to_owned();
    env.ok(&["restore", "notes/shopping.md", &last]);
    assert_eq!(std::fs::read_to_string(env.path("notes/shopping.md")).unwrap(), "- milk\n- eggs\n- tea\n");
    sync.until("the restore", |r| has(&r["restored"], "shopping.md"));
    let s = status(&env);
    assert_eq!(docs(&s)["shopping.md"], ids["todo.md"], "{s}");
    assert!(s["deleted"].as_array().unwrap().is_empty(), "{s}");
    // And an edit to it afterwards is merged into that document.
    std::fs::write(env.path("notes/shopping.md"), "- milk\n- eggs\n- tea\n- bread\n").unwrap();
    sync.until("the edit after the restore", |r| has(&r["merged"], "shopping.md"));

    // Ignoring a note from now on leaves its document as it was (it is not deleted).
    std::fs::write(env.path("notes/.tandemignore"), "*.tmp\nbuild/\n2026/\n").unwrap();
    sync.until("the new ignore rule", |r| has(&r["merged"], ".tandemignore"));
    let s = status(&env);
    assert!(s["deleted"].as_array().unwrap().is_empty(), "{s}");
    let monday = s["files"].as_array().unwrap().iter().find(|f| f["path"] == "2026/monday.md").unwrap();
    assert_eq!(monday["state"], "ignored", "{s}");

    // A new note in a new subfolder, written by a script.
    env.write("notes/projects/tandem.md", "ship it\n");
    sync.until("the new note", |r| has(&r["added"], "projects/tandem.md"));
    let s = status(&env);
    assert_eq!(s["unrecorded"], serde_json::json!([]), "{s}");
}

#[test]
fn sync_catches_up_with_what_changed_while_it_was_not_running() {
    let env = Env::new();
    env.write("notes/a.md", "alpha\n");
    env.write("notes/b.md", "beta, a longer note that will be moved\n");
    env.write("notes/c.md", "gamma\n");
    {
        let sync = Sync::start(&env, "notes");
        sync.report();
    }
    let ids = docs(&status(&env));
    // While nothing runs: an edit, a rename without any watcher to see it, a delete,
    // a new file.
    std::fs::write(env.path("notes/a.md"), "alpha\nmore\n").unwrap();
    std::fs::create_dir(env.path("notes/old")).unwrap();
    std::fs::rename(env.path("notes/b.md"), env.path("notes/old/b.md")).unwrap();
    std::fs::remove_file(env.path("notes/c.md")).unwrap();
    env.write("notes/d.md", "delta\n");
    let s = status(&env);
    let states: Vec<(String, String)> = s["unrecorded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["path"].as_str().unwrap().to_owned(), u["state"].as_str().unwrap().to_owned()))
        .collect();
    for want in [("a.md", "changed"), ("b.md", "missing"), ("c.md", "missing"), ("d.md", "new")] {
        assert!(states.contains(&(want.0.into(), want.1.into())), "{want:?} in {s}");
    }

    let sync = Sync::start(&env, "notes");
    let r = sync.report();
    assert!(has(&r["merged"], "a.md"), "{r}");
    assert_eq!(r["moved"], serde_json::json!([{"from": "b.md", "to": "old/b.md"}]), "found by content: {r}");
    assert!(has(&r["deleted"], "c.md"), "{r}");
    assert!(has(&r["added"], "d.md"), "{r}");
    let after = docs(&status(&env));
    assert_eq!(after["old/b.md"], ids["b.md"]);
    assert_eq!(after["a.md"], ids["a.md"]);
    let human = env.ok(&["sync", "notes", "--status"]);
    assert!(human.contains("everything on disk is recorded"), "{human}");
    assert!(human.contains("1 deleted"), "{human}");
}

#[test]
fn sync_refuses_a_file_and_says_what_to_do() {
    let env = Env::new();
    env.write("notes.md", "x\n");
    let out = env.run(&["sync", "notes.md"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tandem FILE"), "{}", stderr(&out));
    let out = env.run(&["sync", "nowhere"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    let human = env.ok(&["sync", ".", "--status"]);
    assert!(human.contains("tandem sync"), "{human}");
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_git_checkout_under_sync_is_edits_deletes_and_creates_and_back_again() {
    let env = Env::new();
    let notes = env.path("notes");
    env.write("notes/a.md", "one\ntwo\n");
    env.write("notes/b.md", "bee\n");
    git(&notes, &["init", "-q"]);
    git(&notes, &["add", "a.md", "b.md"]);
    git(&notes, &["commit", "-qm", "main"]);
    git(&notes, &["checkout", "-qb", "other"]);
    env.write("notes/a.md", "one\ntwo\nthree\n");
    std::fs::remove_file(env.path("notes/b.md")).unwrap();
    env.write("notes/c.md", "sea\n");
    git(&notes, &["add", "-A", "a.md", "b.md", "c.md"]);
    git(&notes, &["commit", "-qm", "other"]);
    git(&notes, &["checkout", "-q", "main"]);

    let sync = Sync::start(&env, "notes");
    let first = sync.report();
    assert_eq!(first["added"], serde_json::json!(["a.md", "b.md"]), "{first}");
    let s = status(&env);
    assert!(skipped_why(&s, ".git/").unwrap().contains("git repository"), "{s}");
    let ids = docs(&s);

    git(&notes, &["checkout", "-q", "other"]);
    sync.until("the checkout", |_| {
        let d = docs(&status(&env));
        d.contains_key("c.md") && !d.contains_key("b.md")
    });
    let s = status(&env);
    assert_eq!(s["unrecorded"], serde_json::json!([]), "{s}");
    assert_eq!(env.ok(&["cat", "notes/a.md"]), "one\ntwo\nthree\n");
    assert_eq!(docs(&s)["a.md"], ids["a.md"]);

    // Back: the deleted note is the same document again, the branch's note is deleted.
    git(&notes, &["checkout", "-q", "main"]);
    sync.until("the checkout back", |_| {
        let d = docs(&status(&env));
        d.contains_key("b.md") && !d.contains_key("c.md")
    });
    let s = status(&env);
    assert_eq!(docs(&s)["b.md"], ids["b.md"], "{s}");
    assert_eq!(env.ok(&["cat", "notes/a.md"]), "one\ntwo\n");
    assert!(s["deleted"].as_array().unwrap().iter().any(|d| d["path"] == "c.md"), "{s}");
}

/// A small file system of its own (tmpfs), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tandem-test"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_disk_that_fills_during_sync_loses_nothing_and_sync_goes_on() {
    if !nix_is_root() {
        eprintln!("skipped: mounting a small disk needs root (CI runs as root)");
        return;
    }
    let env = Env::new();
    let Some(_disk) = SmallDisk::mount(env.path("disk"), "4m") else {
        panic!("mount -t tmpfs failed although running as root");
    };
    env.write("disk/notes/a.md", "first line\n");
    env.write("disk/notes/b.md", "another note\n");
    let sync = Sync::start(&env, "disk/notes");
    sync.report();

    // Fill the disk to the last byte.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(env.path("disk/filler")).unwrap();
        let chunk = vec![7u8; 4096];
        while filler.write_all(&chunk).is_ok() {}
        while filler.write_all(&[7u8]).is_ok() {}
    }
    // The user's editor can still rewrite a note in place (its page is its own)...
    std::fs::write(env.path("disk/notes/a.md"), "first line\nsecond line\n").unwrap();
    // ...but tandem has no room for the history: it says so, and keeps going.
    let r = sync.until("the failure", |r| !r["failed"].as_array().unwrap().is_empty());
    let failed = r["failed"].to_string();
    assert!(failed.contains("No space left") && failed.contains("free some space"), "{r}");
    assert_eq!(std::fs::read_to_string(env.path("disk/notes/a.md")).unwrap(), "first line\nsecond line\n");
    assert!(sync_alive(&sync), "sync stopped on a full disk");

    // Room again: what failed is recorded without anyone touching the file, and the
    // history that was there before is intact.
    std::fs::remove_file(env.path("disk/filler")).unwrap();
    sync.until("the retry", |r| has(&r["merged"], "a.md"));
    let s = status_of(&env, "disk/notes");
    assert_eq!(s["unrecorded"], serde_json::json!([]), "{s}");
    assert_eq!(env.ok(&["cat", "disk/notes/a.md"]), "first line\nsecond line\n");
    assert_eq!(env.ok(&["cat", "disk/notes/b.md"]), "another note\n");
    env.ok(&["verify", "disk/notes/a.md"]);
}

fn nix_is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn sync_alive(sync: &Sync) -> bool {
    let pid = sync.child.id();
    std::path::Path::new(&format!("/proc/{pid}/status")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().contains("zombie")
}

#[test]
fn a_path_too_long_to_open_is_listed_and_the_rest_syncs() {
    let env = Env::new();
    env.write("notes/ok.md", "fine\n");
    // 24 directories of 200 letters: past PATH_MAX (4096), made one `cd` at a time.
    let part = "d".repeat(200);
    let script =
        format!("cd notes && for i in $(seq 24); do mkdir {part} && cd {part}; done && echo deep > deep.md");
    let made = std::process::Command::new("bash").args(["-c", &script]).current_dir(env.dir.path()).status();
    assert!(made.unwrap().success());
    let sync = Sync::start(&env, "notes");
    let first = sync.report();
    assert_eq!(first["added"], serde_json::json!(["ok.md"]), "{first}");
    let skipped = first["skipped"].to_string();
    assert!(skipped.contains("too long"), "the deep file is listed with why: {first}");
}

#[test]
fn a_file_the_user_cannot_read_is_listed_and_the_rest_syncs() {
    use std::os::unix::fs::PermissionsExt;
    if !nix_is_root() {
        eprintln!(
            "skipped: a file root cannot read needs another user, made with setpriv as root (CI runs as root)"
        );
        return;
    }
    // Root reads everything: the sync runs as `nobody`, from a copy of the binary
    // that user can reach, on a folder it owns but for one file it may not read.
    let env = Env::new();
    let top = env.dir.path();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = env.path("tandem");
    std::fs::copy(env!("CARGO_BIN_EXE_tandem"), &bin).unwrap();
    env.write("notes/ok.md", "fine\n");
    env.write("notes/locked.md", "not yours\n");
    std::fs::create_dir_all(&env.home).unwrap();
    let chown = |path: &std::path::Path| {
        let ok = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(path).status();
        assert!(ok.unwrap().success());
    };
    chown(&env.path("notes"));
    chown(&env.home);
    std::process::Command::new("chown").args(["0:0"]).arg(env.path("notes/locked.md")).status().unwrap();
    std::fs::set_permissions(env.path("notes/locked.md"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["sync", "notes", "--json"])
        .current_dir(top)
        .env("TANDEM_HOME", &env.home)
        .env("TANDEM_NAME", "nobody")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let first: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{e}: {line:?}, stderr {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(first["added"], serde_json::json!(["ok.md"]), "{first}");
    let why = first["skipped"].as_array().unwrap().iter().find(|k| k["path"] == "locked.md").unwrap()["why"]
        .clone();
    assert!(why.as_str().unwrap().contains("permission denied"), "{first}");
}

#[test]
fn tandems_home_in_the_folder_is_never_synced() {
    // `tandem sync ~` holds ~/.config/tandem: this device's secret keys.
    let env = Env::new();
    env.write("note.md", "hello\n");
    env.ok(&["id"]);
    assert!(env.home.join("age.key").exists());
    let sync = Sync::start(&env, ".");
    let first = sync.report();
    assert_eq!(first["added"], serde_json::json!(["note.md"]), "{first}");
    let why = first["skipped"].as_array().unwrap().iter().find(|k| k["path"] == "home/").cloned();
    assert!(why.is_some_and(|w| w["why"].as_str().unwrap().contains("keys")), "{first}");
}
