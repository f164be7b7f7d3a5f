//! Crash-safe file primitives: atomic replace, durable append, text validation.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StoreError};

/// Replace `path` with `bytes` atomically: a temp file beside it is written and
/// fsynced, renamed over the target, and the directory is fsynced. A crash leaves
/// either the old or the new content, never a mix. Permissions of an existing file
/// are kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_as(path, bytes, None)
}

/// [`write_atomic`] for a secret (a ticket with its invite): readable by its owner
/// only (0600), from the first byte written.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_as(path, bytes, Some(0o600))
}

fn write_atomic_as(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tandem-tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut f = options.open(&tmp).map_err(StoreError::io(&tmp))?;
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            // A temp file left by a crash keeps its old mode otherwise.
            f.set_permissions(fs::Permissions::from_mode(mode)).map_err(StoreError::io(&tmp))?;
        }
        if mode.is_none()
            && let Ok(meta) = fs::metadata(path)
        {
            f.set_permissions(meta.permissions()).map_err(StoreError::io(&tmp))?;
        }
        f.write_all(bytes).map_err(StoreError::io(&tmp))?;
        f.sync_all().map_err(StoreError::io(&tmp))?;
        fs::rename(&tmp, path).map_err(StoreError::io(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io(dir))
}

/// Read a file that must be UTF-8 text: binary data and invalid UTF-8 are errors that
/// name the file and the offending byte.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound(path.to_owned()));
        }
        Err(_) if path.is_dir() => return Err(StoreError::IsDirectory(path.to_owned())),
        Err(e) => return Err(StoreError::Io { path: path.to_owned(), source: e }),
    };
    text_from_bytes(path, bytes)
}

/// Validate bytes as a text file's content.
pub fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(StoreError::Binary { path: path.to_owned(), offset });
    }
    String::from_utf8(bytes)
        .map_err(|e| StoreError::InvalidUtf8 { path: path.to_owned(), offset: e.utf8_error().valid_up_to() })
}

/// Bytes the files under `dir` take on disk (allocated blocks, not lengths), so a
/// store of many small files is measured as the disk sees it.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
