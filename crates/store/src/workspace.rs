//! A workspace: the directory that holds `.tandem/`, and the lock that makes one
//! process its owner.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// Name of the history directory.
pub const STORE_DIR: &str = ".tandem";
const FORMAT_FILE: &str = "FORMAT";
const FORMAT: &str = "tandem-store 1\n";

/// The marker a tandem whose store format is `version` (above 1) writes in
/// `.tandem/FORMAT`: the line, and a check of it, so that this tandem tells a newer
/// format from a flipped byte. Format 1 (this one) is the bare line, which older
/// builds of it read.
pub fn format_marker(version: u32) -> String {
    let line = format!("tandem-store {version}");
    format!("{line}\ncheck {}\n", &blake3::hash(line.as_bytes()).to_hex()[..8])
}

/// What `.tandem/FORMAT` says.
enum Marker {
    Current,
    /// A newer tandem's (its check holds): this one must not touch the store.
    Newer,
    /// Neither: a damaged file.
    Damaged,
}

fn marker(found: &str) -> Marker {
    if found == FORMAT {
        return Marker::Current;
    }
    let ours: u32 = FORMAT.trim().rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let version =
        found.lines().next().and_then(|l| l.strip_prefix("tandem-store ")).and_then(|n| n.parse().ok());
    match version {
        Some(n) if n > ours && found == format_marker(n) => Marker::Newer,
        _ => Marker::Damaged,
    }
}

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace of `file`: the nearest ancestor directory that has a `.tandem/`,
    /// else the file's own directory (where `.tandem/` is created on first write).
    pub fn discover(file: &Path) -> Result<Workspace> {
        let abs = absolute(file)?;
        let start = abs.parent().unwrap_or(Path::new("/")).to_owned();
        let root =
            start.ancestors().find(|d| d.join(STORE_DIR).is_dir()).map(Path::to_owned).unwrap_or(start);
        Ok(Workspace { root })
    }

    /// The workspace rooted exactly at `dir`.
    pub fn at(dir: &Path) -> Result<Workspace> {
        Ok(Workspace { root: absolute(dir)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.tandem/` directory (may not exist yet).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(STORE_DIR)
    }

    /// The content-addressed blob store that holds every document's history.
    pub fn blob_dir(&self) -> PathBuf {
        self.store_dir().join("blobs")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.store_dir().join("control.sock")
    }

    /// True when `.tandem/` is in the format this tandem reads.
    pub fn format_is_current(&self) -> bool {
        fs::read_to_string(self.store_dir().join(FORMAT_FILE)).is_ok_and(|f| f == FORMAT)
    }

    /// Create `.tandem/` if missing; check its format if present.
    pub fn ensure(&self) -> Result<()> {
        let dir = self.store_dir();
        let format = dir.join(FORMAT_FILE);
        match fs::read(&format).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(f) => match marker(&f) {
                Marker::Current => Ok(()),
                Marker::Newer => Err(StoreError::BadRequest(format!(
                    "{}: this workspace was made by a newer tandem ({:?}; this one reads {:?}): update tandem",
                    dir.display(),
                    f.lines().next().unwrap_or_default(),
                    FORMAT.trim()
                ))),
                // Damaged (a flipped byte): the store beside it says what it is.
                Marker::Damaged if dir.join("docs").is_dir() => {
                    tracing::warn!(
                        "{}: damaged ({:?}); written again (the store beside it is in format {:?})",
                        format.display(),
                        f.trim(),
                        FORMAT.trim()
                    );
                    crate::fsutil::write_atomic(&format, FORMAT.as_bytes())
                }
                Marker::Damaged => Err(StoreError::corrupt(
                    &format,
                    format!("unknown store format {:?}; this tandem reads {:?}", f.trim(), FORMAT.trim()),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir.join("docs")).map_err(StoreError::io(&dir))?;
                crate::fsutil::write_atomic(&format, FORMAT.as_bytes())
            }
            Err(e) => Err(StoreError::Io { path: format, source: e }),
        }
    }

    /// Try to become the owner of this workspace's store. `None` when another process
    /// owns it. The lock is held as long as the returned guard lives.
    pub fn try_lock(&self) -> Result<Option<Lock>> {
        self.ensure()?;
        let path = self.store_dir().join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// `file`'s path relative to the workspace root, with `/` separators.
    ///
    /// Asked on every call into a document (the editor's every frame, every keystroke
    /// received): the last answer of each thread is kept, for a file that existed
    /// when it was worked out (canonicalizing took ~6% of a typist's CPU).
    pub fn relative(&self, file: &Path) -> Result<String> {
        type Last = Option<(PathBuf, PathBuf, String)>;
        thread_local! {
            static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
        }
        let asked = if file.is_absolute() {
            file.to_owned()
        } else {
            std::env::current_dir().map_err(StoreError::io(Path::new(".")))?.join(file)
        };
        let hit = LAST.with_borrow(|last| match last {
            Some((root, path, rel)) if *root == self.root && *path == asked => Some(rel.clone()),
            _ => None,
        });
        if let Some(rel) = hit {
            return Ok(rel);
        }
        let rel = self.relative_uncached(file)?;
        if asked.exists() {
            LAST.with_borrow_mut(|last| *last = Some((self.root.clone(), asked, rel.clone())));
        }
        Ok(rel)
    }

    fn relative_uncached(&self, file: &Path) -> Result<String> {
        let abs = absolute(file)?;
        let rel = abs.strip_prefix(&self.root).map_err(|_| {
            StoreError::BadRequest(format!(
                "{} is outside the workspace {}",
                file.display(),
                self.root.display()
            ))
        })?;
        Ok(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
    }

    /// The directory holding the history of the file at `rel`.
    pub fn doc_dir(&self, rel: &str) -> PathBuf {
        let key = blake3::hash(rel.as_bytes()).to_hex();
        self.store_dir().join("docs").join(&key[..32])
    }
}

/// Ownership of a workspace's store; released on drop (and by the OS if the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// `path` made absolute against the current directory, with `.` and `..` resolved
/// lexically (the file may not exist yet). Symlinked directories are resolved so that
/// two spellings of one workspace agree.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(StoreError::io(Path::new(".")))?;
    let joined = cwd.join(path);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    // Canonicalize the deepest existing ancestor, keep the rest as written.
    let existing = out.ancestors().find(|a| a.exists()).map(Path::to_owned);
    if let Some(base) = existing
        && let Ok(canon) = base.canonicalize()
    {
        let rest = out.strip_prefix(&base).expect("ancestor is a prefix");
        return Ok(if rest.as_os_str().is_empty() { canon } else { canon.join(rest) });
    }
    Ok(out)
}
