//! Files that survive a crash whole: written beside their place, synced, renamed over it, and
//! the directory synced, so that a reader finds the old content or the new, never a mix; and the
//! JSON state files kept that way (the budget spend, cluster mode's snapshot and usage).
//! A leaf: it imports nothing from the crate.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not what this version writes.
    #[error("{}: not a Sluice state file of this version: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
}

/// Writes `value` as JSON to `path` with [`replace`].
pub fn save_json<T: Serialize>(path: &Path, value: &T, access: Access) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Format {
        path: path.to_owned(),
        source,
    })?;
    replace(path, &bytes, access).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the JSON file at `path`; `None` when it does not exist.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Format {
            path: path.to_owned(),
            source,
        })
}

/// Who may read a file written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// As the process's umask allows.
    Default,
    /// The owner only (mode 0600), for files that hold secrets or money.
    OwnerOnly,
}

/// Replaces the file at `path` with `bytes`, atomically and durably, creating its directory if
/// needed. The temporary file is `.<name>.tmp` beside it.
pub fn replace(path: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if access == Access::OwnerOnly {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = std::env::temp_dir().join(format!("sluice-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("nested/state.json");
        replace(&path, b"old", Access::Default).unwrap();
        replace(&path, b"new", Access::OwnerOnly).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
