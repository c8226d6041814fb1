//! What cluster mode keeps on the state volume (an `emptyDir`, so it survives a container
//! restart): the last snapshot that applied, served at start while the operator is away (fail
//! static), the usage reports not yet acked and the usage journal ([`super::journal`]). Both hold secrets or money: written atomically
//! (temporary file, fsync, rename, fsync of the directory), readable by the owner only.

use std::path::Path;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sluice_crds::{ConfigSnapshot, UsageReport};

pub use crate::durable::StateError;
use crate::durable::{self, Access};

/// The snapshot file's name in the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// The usage file's name in the state directory.
pub const USAGE_FILE: &str = "usage.json";
/// Where the last usage report the operator refused for good is kept, for whoever investigates.
pub const REFUSED_FILE: &str = "usage-refused.json";

/// Unacked usage and the numbering of the next report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageState {
    /// The sequence the next new report gets.
    pub next_sequence: u64,
    /// The reports not acked yet, in sequence order; only the first may have been sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<UsageReport>,
    /// The journal generations below this one are in `queue` (or were acked): replay starts here.
    #[serde(default)]
    pub journal_floor: u64,
    /// What a sidecar of the one-report-in-flight days saved; moved to `queue` on load.
    #[serde(default, rename = "inFlight", skip_serializing)]
    pub legacy_in_flight: Option<UsageReport>,
}

/// Writes `value` as JSON to `dir/name` atomically, mode 0600.
pub fn save<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StateError> {
    durable::save_json(&dir.join(name), value, Access::OwnerOnly)
}

/// Reads `dir/name`; `None` when it does not exist.
pub fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StateError> {
    durable::load_json(&dir.join(name))
}

/// Saves the snapshot that just applied.
pub fn save_snapshot(dir: &Path, snapshot: &ConfigSnapshot) -> Result<(), StateError> {
    save(dir, SNAPSHOT_FILE, snapshot)
}
