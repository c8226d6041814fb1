//! The address file: how a process told to bind port 0 tells whoever started it which addresses
//! it got. A launcher that probed for a free port and handed it over would race with every other
//! process on the machine for it; one that binds port 0 and reads this file cannot lose.
//!
//! The sidecar, the operator (`run`) and `sluice-test-upstream` write it when given
//! `--address-file PATH`: one JSON object, one member per listener named as its flag, the
//! address it bound as the value, e.g. `{"admin-listen":"127.0.0.1:41874","listen":"127.0.0.1:41873"}`.
//! It is written once, when every listener is bound (before the process is ready: readiness has
//! its own probe), into a temporary file beside `PATH` that is then renamed over it, so a reader
//! sees no file or the whole object, never a part. The file is not removed on exit: a launcher
//! gives a path that does not exist yet.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Each listener's flag without its leading dashes (e.g. `admin-listen`) and the address it bound.
pub type Addresses = BTreeMap<String, SocketAddr>;

/// Why the address file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AddressFileError {
    /// The file (or its temporary twin) could not be written or renamed into place.
    #[error("writing the address file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file exists but could not be read.
    #[error("reading the address file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not a JSON object of addresses.
    #[error("the address file {path} is not a JSON object of socket addresses: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
}

/// Writes `addresses` to `path` all at once (a temporary file in the same directory, renamed).
pub fn write(path: &Path, addresses: &Addresses) -> Result<(), AddressFileError> {
    let failed = |source| AddressFileError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Same directory, so the rename stays on one file system and is atomic.
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let json = serde_json::to_vec(addresses).map_err(|e| failed(std::io::Error::other(e)))?;
    std::fs::write(&temporary, json).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        failed(source)
    })
}

/// The addresses in `path`, or `None` while it does not exist yet.
pub fn read(path: &Path) -> Result<Option<Addresses>, AddressFileError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AddressFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| AddressFileError::Format {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_no_temporary_file_is_left() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("sluice-address-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("addresses.json");
        let addresses = Addresses::from([
            ("listen".to_owned(), "127.0.0.1:41873".parse()?),
            ("admin-listen".to_owned(), "[::1]:41874".parse()?),
        ]);
        write(&path, &addresses)?;
        assert_eq!(read(&path)?, Some(addresses));
        assert_eq!(
            std::fs::read_to_string(&path)?,
            r#"{"admin-listen":"[::1]:41874","listen":"127.0.0.1:41873"}"#
        );
        let names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["addresses.json"]);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_file_not_written_yet_reads_as_none_and_a_foreign_one_as_an_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("sluice-address-file-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("addresses.json");
        assert_eq!(read(&path)?, None);
        std::fs::write(&path, "listening on 127.0.0.1:4000")?;
        assert!(matches!(read(&path), Err(AddressFileError::Format { .. })));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
