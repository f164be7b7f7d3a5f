//! The device's age identity: an X25519 key kept in `$TANDEM_HOME/age.key`, written
//! exactly as `age-keygen` writes it (mode 0600; see keys/README.md) so that the `age`
//! tool opens what tandem encrypts (`age -d -i age.key`). Its recipient (`age1...`) is
//! what other devices will encrypt group keys to, and what `tandem export --encrypt`
//! encrypts to by default.
//!
//! Age does not say who encrypted a file: decrypting proves nothing about its sender,
//! so nothing here is ever a source of write authority (see `envelope`).

use std::fs;
use std::io::{self, Read, Write};
use std::iter;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::{ExposeSecret, SecretString};
use age::{DecryptError, Decryptor, Encryptor, x25519};

/// An `age-keygen` file is about 190 bytes; anything far larger is not one, and is
/// refused before it is parsed.
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgeKeyError {
    #[error(
        "{path}: not an age identity ({detail}); move it aside to make a new one \
         (keep it if anything was encrypted to it: only it can open that)",
        path = .path.display()
    )]
    Bad { path: PathBuf, detail: String },
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// This device's age X25519 identity and its public recipient.
pub struct AgeIdentity {
    identity: x25519::Identity,
    recipient: x25519::Recipient,
}

impl std::fmt::Debug for AgeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        f.debug_struct("AgeIdentity").field("recipient", &self.recipient()).finish()
    }
}

impl AgeIdentity {
    /// The file the age identity of `home` lives in.
    pub fn path(home: &Path) -> PathBuf {
        home.join("age.key")
    }

    /// Load the age identity of `home`, creating it on first use. A file that is not
    /// an age identity is an error, never replaced: what was encrypted to it would be
    /// lost with it.
    pub fn load_or_create(home: &Path) -> Result<AgeIdentity, AgeKeyError> {
        let path = Self::path(home);
        match read_bounded(&path) {
            Ok(bytes) => Self::parse(&bytes).map_err(|detail| AgeKeyError::Bad { path, detail }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(home, &path),
            Err(e) => Err(AgeKeyError::Io { path, source: e }),
        }
    }

    /// The recipient (`age1...`) that encrypts to this identity.
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }

    /// Decrypt an age file (armored or binary) encrypted to this identity. Errors say
    /// what is wrong with the ciphertext; the caller names where it came from.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let decryptor = Decryptor::new_buffered(ArmoredReader::new(ciphertext))
            .map_err(|e| format!("not an age file ({e})"))?;
        let mut reader = decryptor.decrypt(iter::once(&self.identity as &dyn age::Identity)).map_err(|e| {
            match e {
                DecryptError::NoMatchingKeys => format!(
                    "it is not encrypted to this device's age key ({}); only one of its recipients can open it",
                    self.recipient()
                ),
                other => format!("cannot open it ({other})"),
            }
        })?;
        let mut plaintext = Vec::new();
        reader
            .read_to_end(&mut plaintext)
            .map_err(|e| format!("it is damaged or cut short ({e}); nothing of it can be trusted"))?;
        Ok(plaintext)
    }

    /// A new identity, stored in `path` unless another process stored one first (then
    /// that one is used, so that two first uses never end up with two keys).
    fn create(home: &Path, path: &Path) -> Result<AgeIdentity, AgeKeyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| AgeKeyError::Io { path, source }
        };
        fs::create_dir_all(home).map_err(io(home))?;
        let identity = x25519::Identity::generate();
        let recipient = identity.to_public();
        // A secret string: wiped from memory when dropped, like age's own.
        let file = SecretString::from(format!(
            "# created: {}\n# public key: {recipient}\n{}\n",
            rfc3339_now(),
            identity.to_string().expose_secret()
        ));
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = home.join(format!(".age.key.tmp-{}-{n}", std::process::id()));
        let written = write_private(&tmp, file.expose_secret().as_bytes()).map_err(io(&tmp));
        let stored = written.and_then(|()| match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // A file system without hard links: a plain rename is still atomic.
            Err(_) => fs::rename(&tmp, path).map(|()| true).map_err(io(path)),
        });
        let _ = fs::remove_file(&tmp);
        if !stored? {
            return Self::load_or_create(home);
        }
        fs::File::open(home).and_then(|d| d.sync_all()).map_err(io(home))?;
        Ok(AgeIdentity { identity, recipient })
    }

    /// Parse an `age-keygen` file: comment lines, then one `AGE-SECRET-KEY-1...` line.
    fn parse(bytes: &[u8]) -> Result<AgeIdentity, String> {
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(format!("larger than any age key file ({MAX_KEY_FILE} bytes at most)"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
        let mut secrets = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(secret), None) = (secrets.next(), secrets.next()) else {
            return Err("it must hold exactly one AGE-SECRET-KEY-1... line".into());
        };
        let identity: x25519::Identity =
            secret.parse().map_err(|e| format!("its secret key line is malformed: {e}"))?;
        let recipient = identity.to_public();
        let recipient_text = recipient.to_string();
        let mut noted = text.lines().filter_map(|l| l.trim().strip_prefix("# public key:")).map(str::trim);
        if let Some(wrong) = noted.find(|noted| *noted != recipient_text) {
            return Err(format!("its `# public key: {wrong}` line is not its secret key's recipient"));
        }
        Ok(AgeIdentity { identity, recipient })
    }
}

/// Check that `recipient` is an age X25519 recipient (`age1...`) that is safe to encrypt
/// to; the error names it and says what is expected.
pub fn check_recipient(recipient: &str) -> Result<(), String> {
    parse_recipient(recipient).map(|_| ())
}

/// Encrypt `plaintext` to every one of `recipients` (`age1...` strings; repeats count
/// once), as ASCII armor (`-----BEGIN AGE ENCRYPTED FILE-----`) or binary age.
pub fn encrypt(plaintext: &[u8], recipients: &[String], armor: bool) -> Result<Vec<u8>, String> {
    let mut parsed = Vec::with_capacity(recipients.len());
    for r in recipients {
        let r = parse_recipient(r)?;
        if !parsed.contains(&r) {
            parsed.push(r);
        }
    }
    if parsed.is_empty() {
        return Err("no recipients to encrypt to".into());
    }
    let encryptor = Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 512);
    let sealed = if armor {
        ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)
            .and_then(|w| seal(encryptor, w, plaintext))
            .and_then(|w| w.finish())
            .map(drop)
    } else {
        seal(encryptor, &mut out, plaintext).map(drop)
    };
    sealed.map_err(|e| format!("cannot encrypt: {e}"))?;
    Ok(out)
}

/// Write the age stream of `plaintext` into `w`, returning `w` for the armor to close.
fn seal<W: Write>(encryptor: Encryptor, w: W, plaintext: &[u8]) -> io::Result<W> {
    let mut writer = encryptor.wrap_output(w)?;
    writer.write_all(plaintext)?;
    writer.finish()
}

fn parse_recipient(s: &str) -> Result<x25519::Recipient, String> {
    if s.get(..15).is_some_and(|p| p.eq_ignore_ascii_case("AGE-SECRET-KEY-")) {
        // Named without its secret: error messages end up in logs and terminals.
        return Err("\"AGE-SECRET-KEY-1...\" is not an age recipient but a secret key: keep it private, \
                    and give its recipient (age1..., `age-keygen -y` prints it)"
            .into());
    }
    let bad = |why: &str| {
        format!("{s:?} is not an age recipient ({why}); give an age1... key, such as `tandem id` prints")
    };
    let recipient: x25519::Recipient = s.parse().map_err(bad)?;
    if !contributory(s) {
        return Err(bad("a low-order point: anyone could open what is encrypted to it"));
    }
    Ok(recipient)
}

/// False for the X25519 public keys of small order, with which every shared secret is
/// zero (and the age crate panics while encrypting). Any clamped scalar is a multiple
/// of 8 below 2^255, never a multiple of the prime group order, so its product with a
/// point is zero exactly when the point's order divides 8: one fixed scalar decides.
fn contributory(recipient: &str) -> bool {
    let Ok((_, bytes)) = bech32::decode(recipient) else { return false };
    let Ok(point) = <[u8; 32]>::try_from(bytes) else { return false };
    let scalar = x25519_dalek::StaticSecret::from([0x5a; 32]);
    scalar.diffie_hellman(&x25519_dalek::PublicKey::from(point)).was_contributory()
}

/// The first [`MAX_KEY_FILE`] + 1 bytes of `path`: enough to tell a key file that is
/// too large without reading all of it.
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Write `bytes` to a new file only its owner can read, and flush it to disk.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Now as RFC 3339 in UTC (`2026-01-31T09:05:00Z`), as `age-keygen` dates its files.
fn rfc3339_now() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let t = tandem_doc::time::utc(ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> (tempfile::TempDir, AgeIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let id = AgeIdentity::load_or_create(dir.path()).unwrap();
        (dir, id)
    }

    #[test]
    fn agekey_is_stored_as_age_keygen_writes_it_and_persists() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, a) = identity();
        let b = AgeIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.recipient(), b.recipient());
        assert!(a.recipient().starts_with("age1"));
        let path = AgeIdentity::path(dir.path());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("# created: 20") && lines[0].ends_with('Z'), "{text}");
        assert_eq!(lines[1], format!("# public key: {}", a.recipient()));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"), "{text}");
        assert!(!format!("{a:?}").contains("SECRET"), "Debug never shows the secret key");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only age.key: no temporary file is left behind");
    }

    #[test]
    fn agekey_round_trips_armored_and_binary_to_several_recipients() {
        let ((_d1, a), (_d2, b)) = (identity(), identity());
        let text = "héllo\n".repeat(20_000).into_bytes();
        for armor in [true, false] {
            let sealed = encrypt(&text, &[a.recipient(), b.recipient(), a.recipient()], armor).unwrap();
            assert_eq!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), armor);
            assert_eq!(a.decrypt(&sealed).unwrap(), text);
            assert_eq!(b.decrypt(&sealed).unwrap(), text);
        }
        assert_eq!(a.decrypt(&encrypt(b"", &[a.recipient()], false).unwrap()).unwrap(), b"");
    }

    #[test]
    fn agekey_another_identity_cannot_decrypt() {
        let ((_d1, a), (_d2, b)) = (identity(), identity());
        let sealed = encrypt(b"secret", &[a.recipient()], true).unwrap();
        let err = b.decrypt(&sealed).unwrap_err();
        assert!(err.contains("not encrypted to this device's age key"), "{err}");
    }

    #[test]
    fn agekey_malformed_and_low_order_recipients_are_named() {
        let (dir, a) = identity();
        let long = "x".repeat(300);
        // A valid Bech32 "age" key of 32 zero bytes: the smallest low-order point.
        let low_order = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z";
        let mut typo = a.recipient();
        let last = typo.pop().unwrap();
        typo.push(if last == 'q' { 'p' } else { 'q' });
        for bad in ["", "age1", "bob", &long, &a.recipient()[..20], &typo, low_order] {
            let err = encrypt(b"t", &[a.recipient(), bad.to_owned()], false).unwrap_err();
            assert!(err.contains(&format!("{bad:?} is not an age recipient")), "{bad}: {err}");
            assert_eq!(check_recipient(bad).unwrap_err(), err);
        }
        let file = fs::read_to_string(AgeIdentity::path(dir.path())).unwrap();
        let secret = file.lines().last().unwrap();
        let err = check_recipient(secret).unwrap_err();
        assert!(err.contains("secret key") && !err.contains(secret), "the secret is never echoed: {err}");
        assert!(check_recipient(&a.recipient()).is_ok());
        assert!(encrypt(b"t", &[], false).unwrap_err().contains("no recipients"));
    }

    #[test]
    fn agekey_damaged_ciphertext_fails_cleanly() {
        let (_d, a) = identity();
        let text = vec![7u8; 200_000];
        for armor in [true, false] {
            let sealed = encrypt(&text, &[a.recipient()], armor).unwrap();
            let damaged = |bytes: &[u8], what: &str| match a.decrypt(bytes) {
                // Armor may end without its last line break, or decode a flipped bit
                // of padding to the same bytes: what decrypts must be the original.
                Ok(plain) if armor => assert_eq!(plain, text, "{what}"),
                Ok(_) => panic!("{what} decrypted"),
                Err(_) => {}
            };
            for cut in [0, 1, 20, 100, sealed.len() / 2, sealed.len() - 2, sealed.len() - 1] {
                damaged(&sealed[..cut], &format!("cut at {cut} (armor {armor})"));
            }
            for at in [0, 10, 60, 100, sealed.len() / 2, sealed.len() - 40, sealed.len() - 1] {
                let mut flipped = sealed.clone();
                flipped[at] ^= 0x01;
                damaged(&flipped, &format!("flip at {at} (armor {armor})"));
            }
        }
        let sealed = encrypt(&text, &[a.recipient()], false).unwrap();
        let mut body = sealed.clone();
        let last = body.len() - 1;
        body[last] ^= 0x80;
        let err = a.decrypt(&body).unwrap_err();
        assert!(err.contains("damaged or cut short"), "{err}");
        let err = a.decrypt(&sealed[..sealed.len() - 1]).unwrap_err();
        assert!(err.contains("damaged or cut short"), "{err}");
        let mut header = sealed;
        let mac = header.windows(5).position(|w| w == b"\n--- ").unwrap() + 6;
        header[mac] = if header[mac] == b'A' { b'B' } else { b'A' };
        assert!(a.decrypt(&header).is_err(), "a wrong header MAC");
        assert!(a.decrypt(b"age-encryption.org/v1\n-> X25519\n").is_err());
        assert!(a.decrypt(b"just some text").unwrap_err().starts_with("not an age file"));
    }

    #[test]
    fn agekey_garbage_key_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = AgeIdentity::path(dir.path());
        let other = identity().1;
        let other_file = format!("# public key: {}\nAGE-SECRET-KEY-1QQQ\n", other.recipient());
        let real = {
            let (d, _) = identity();
            fs::read_to_string(AgeIdentity::path(d.path())).unwrap()
        };
        let mismatched =
            real.replace(real.lines().nth(1).unwrap(), &format!("# public key: {}", other.recipient()));
        let two_keys = format!("{real}{}\n", real.lines().last().unwrap());
        let cases: [&[u8]; 6] =
            [b"junk", b"", b"\xff\xfe", other_file.as_bytes(), mismatched.as_bytes(), two_keys.as_bytes()];
        for garbage in cases {
            fs::write(&path, garbage).unwrap();
            let err = AgeIdentity::load_or_create(dir.path()).unwrap_err().to_string();
            assert!(err.contains("age.key: not an age identity") && err.contains("move it aside"), "{err}");
            assert_eq!(fs::read(&path).unwrap(), garbage, "never replaced");
        }
        fs::write(&path, vec![b'#'; MAX_KEY_FILE as usize + 1]).unwrap();
        let err = AgeIdentity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("age.key: not an age identity (larger than"), "{err}");
    }
}
