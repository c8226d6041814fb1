//! What cluster mode keeps on the state volume (an `emptyDir`, so it survives a container
//! restart): the last snapshot that applied, served at start while the operator is away (fail
//! static), and the usage report not yet acked. Both hold secrets or money: written atomically
//! (temporary file, fsync, rename, fsync of the directory), readable by the owner only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sluice_crds::{ConfigSnapshot, UsageReport};

/// The snapshot file's name in the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// The usage file's name in the state directory.
pub const USAGE_FILE: &str = "usage.json";
/// Where the last usage report the operator refused for good is kept, for whoever investigates.
pub const REFUSED_FILE: &str = "usage-refused.json";

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
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
}

/// Unacked usage and the numbering of the next report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageState {
    /// The sequence the next new report gets.
    pub next_sequence: u64,
    /// The report sent (or about to be) and not acked yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<UsageReport>,
}

/// Writes `value` as JSON to `dir/name` atomically, mode 0600.
pub fn save<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StateError> {
    let path = dir.join(name);
    let bytes = serde_json::to_vec(value).map_err(|source| StateError::Json {
        path: path.clone(),
        source,
    })?;
    crate::durable::replace(&path, &bytes, crate::durable::Access::OwnerOnly)
        .map_err(|source| StateError::Io { path, source })
}

/// Reads `dir/name`; `None` when it does not exist.
pub fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StateError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Json { path, source })
}

/// Saves the snapshot that just applied.
pub fn save_snapshot(dir: &Path, snapshot: &ConfigSnapshot) -> Result<(), StateError> {
    save(dir, SNAPSHOT_FILE, snapshot)
}
