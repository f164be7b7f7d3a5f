//! End-to-end tests of `tandem id` and `tandem export --encrypt`: the real binary,
//! each device a temporary `TANDEM_HOME`, and encrypted exports opened by the real
//! `age` command-line tool (an implementation that shares no code with ours).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{Env, stderr};

fn identity(env: &Env) -> Value {
    serde_json::from_slice(&env.ok_bytes(&["id", "--json"])).unwrap()
}

/// A small document with non-ASCII text, so a byte-exact round trip means something.
fn document(env: &Env) -> PathBuf {
    let p = env.path("notes.md");
    std::fs::write(&p, "# Notes\n\nhéllo wörld, `code` & <tags>\n").unwrap();
    p
}

/// Whether the `age` tool is here. Without it the test is skipped with a reason, except
/// as root or in CI (which runs as root): there scripts/test.sh installs it, so its
/// absence is a failure, not a reason to skip.
fn have_age(test: &str) -> bool {
    if Command::new("age").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let must = std::env::var_os("CI").is_some() || unsafe { libc::geteuid() } == 0;
    assert!(!must, "the `age` command is missing: run scripts/test.sh or `apt-get install age`");
    eprintln!("skipping {test}: the `age` command is missing (`apt-get install age`)");
    false
}

/// `age -d -i IDENTITY FILE`'s stdout; the tool must succeed.
fn age_decrypt(identity: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age").arg("-d").arg("-i").arg(identity).arg(file).output().unwrap();
    assert!(out.status.success(), "age -d -i {} {}: {}", identity.display(), file.display(), stderr(&out));
    out.stdout
}

fn identity_path(id: &Value) -> PathBuf {
    PathBuf::from(id["age_identity_path"].as_str().unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn id_shows_a_stable_identity_whose_age_key_file_is_private_and_names_its_recipient() {
    let env = Env::new();
    let id = identity(&env);
    assert_eq!(id.as_object().unwrap().len(), 4, "{id}");
    assert!(id["peer_id"].as_str().unwrap().starts_with("12D3KooW"), "an Ed25519 PeerId: {id}");
    let recipient = id["age_recipient"].as_str().unwrap();
    assert!(recipient.starts_with("age1"), "{id}");
    assert_eq!(id["device_key_path"], env.home.join("device.key").to_str().unwrap());
    assert_eq!(id["age_identity_path"], env.home.join("age.key").to_str().unwrap());
    assert_eq!(identity(&env), id, "the same identity on every run");

    let age_key = identity_path(&id);
    assert_eq!(mode(&age_key), 0o600);
    assert_eq!(mode(&env.home.join("device.key")), 0o600);
    let text = std::fs::read_to_string(&age_key).unwrap();
    assert!(text.lines().any(|l| l == format!("# public key: {recipient}")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("# created: ")), "{text}");

    let human = String::from_utf8(env.ok_bytes(&["id"])).unwrap();
    for key in ["peer_id", "age_recipient", "age_identity_path", "device_key_path"] {
        let line = format!("{key}: {}", id[key].as_str().unwrap());
        assert!(human.lines().any(|l| l == line), "{line:?} in\n{human}");
    }
    assert_eq!(human.lines().count(), 4, "{human}");
    assert_ne!(identity(&Env::new())["age_recipient"], id["age_recipient"], "each home its own key");

    if have_age("id_shows_a_stable_identity_whose_age_key_file_is_private_and_names_its_recipient") {
        let out = Command::new("age-keygen").arg("-y").arg(&age_key).output().unwrap();
        assert!(out.status.success(), "age-keygen -y: {}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), recipient, "the age tool reads the key");
    }
}

#[test]
fn encrypted_export_opens_with_the_age_tool_to_the_exact_plain_export() {
    let env = Env::new();
    if !have_age("encrypted_export_opens_with_the_age_tool_to_the_exact_plain_export") {
        return;
    }
    document(&env);
    let key = identity_path(&identity(&env));
    for format in ["txt", "md", "json", "html"] {
        let plain = env.ok_bytes(&["export", "notes.md", "--format", format]);
        assert!(!plain.is_empty());
        env.ok_bytes(&["export", "notes.md", "--format", format, "--encrypt", "-o", "out.age"]);
        let sealed = std::fs::read(env.path("out.age")).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"), "binary age in a file ({format})");
        assert_eq!(age_decrypt(&key, &env.path("out.age")), plain, "{format}");

        let armored = env.ok_bytes(&["export", "notes.md", "--format", format, "--encrypt"]);
        assert!(armored.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n"), "armor on stdout ({format})");
        std::fs::write(env.path("stdout.age"), &armored).unwrap();
        assert_eq!(age_decrypt(&key, &env.path("stdout.age")), plain, "{format}");
    }
}

#[test]
fn export_to_another_recipient_opens_for_it_and_for_its_maker_only() {
    let (me, friend, stranger) = (Env::new(), Env::new(), Env::new());
    if !have_age("export_to_another_recipient_opens_for_it_and_for_its_maker_only") {
        return;
    }
    document(&me);
    let (mine, theirs) = (identity(&me), identity(&friend));
    let to = theirs["age_recipient"].as_str().unwrap();
    me.ok_bytes(&["export", "notes.md", "--encrypt", "--to", to, "-o", "shared.age"]);
    let plain = me.ok_bytes(&["export", "notes.md"]);
    let sealed = me.path("shared.age");
    assert_eq!(age_decrypt(&identity_path(&theirs), &sealed), plain, "the --to recipient");
    assert_eq!(age_decrypt(&identity_path(&mine), &sealed), plain, "the maker, always included");

    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity_path(&identity(&stranger)))
        .arg(&sealed)
        .output();
    let out = out.unwrap();
    assert!(!out.status.success() && out.stdout.is_empty(), "a third identity opens nothing");
}

#[test]
fn a_malformed_recipient_is_a_usage_error_that_names_it() {
    let env = Env::new();
    document(&env);
    // The last is a valid Bech32 age key of all zeros: a low-order point.
    let low_order = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z";
    for bad in ["bob@example.com", "age1notakey", low_order] {
        let out = env.run(&["export", "notes.md", "--encrypt", "--to", bad, "-o", "out.age"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("{bad:?} is not an age recipient")), "{}", stderr(&out));
        assert!(!env.path("out.age").exists(), "nothing written");
    }
}

#[test]
fn to_without_encrypt_and_encrypt_with_car_are_usage_errors() {
    let env = Env::new();
    document(&env);
    let me = identity(&env);
    let to = me["age_recipient"].as_str().unwrap();
    let out = env.run(&["export", "notes.md", "--to", to, "-o", "out.txt"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--encrypt"), "{}", stderr(&out));
    assert!(!env.path("out.txt").exists(), "no plain text where encryption was meant");

    let out = env.run(&["export", "notes.md", "--encrypt", "--car", "out.car"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!env.path("out.car").exists());
}

#[test]
fn a_corrupt_age_key_is_named_and_kept() {
    let env = Env::new();
    document(&env);
    let key = identity_path(&identity(&env));
    std::fs::write(&key, "not a key\n").unwrap();
    for args in [&["id"][..], &["export", "notes.md", "--encrypt"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{}: not an age identity", key.display())),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("move it aside"), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key\n", "never replaced");
}

#[test]
fn a_key_made_by_age_keygen_is_this_devices_age_identity() {
    let env = Env::new();
    if !have_age("a_key_made_by_age_keygen_is_this_devices_age_identity") {
        return;
    }
    std::fs::create_dir_all(&env.home).unwrap();
    let key = env.home.join("age.key");
    let out = Command::new("age-keygen").arg("-o").arg(&key).output().unwrap();
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    let made = std::fs::read(&key).unwrap();
    let recipient = stderr(&out).trim().trim_start_matches("Public key: ").to_owned();
    assert_eq!(identity(&env)["age_recipient"], recipient);
    assert_eq!(std::fs::read(&key).unwrap(), made, "used as it is");
}
