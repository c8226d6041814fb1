//! The operator's errors, one enum for its Kubernetes-facing layer.

/// Why a reconcile, a status write or a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A stored document could not be read or written as JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An object lacks a namespace or name the API server always sets.
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// The usage ledger of a namespace changed under us (another writer); it is reloaded.
    #[error("the usage ledger of namespace {0} changed concurrently; reloading it")]
    LedgerConflict(String),
    /// The usage ledger of a namespace was deleted while the operator held it.
    #[error("the usage ledger ConfigMap {0} was deleted")]
    LedgerDeleted(String),
    /// A namespace's ledger ConfigMap exists and is not a ledger: never overwritten, reports
    /// held until an administrator deletes it.
    #[error(
        "the usage ledger ConfigMap {configmap} cannot be read since {since} ({reason}): usage reports are held \
         (sidecars keep them and send them again) until an administrator deletes it; it is then rebuilt from status"
    )]
    LedgerUnreadable {
        /// `namespace/name` of the ConfigMap.
        configmap: String,
        /// Why it cannot be read.
        reason: String,
        /// When the operator first found it so.
        since: jiff::Timestamp,
    },
}

/// Results of the operator's library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
