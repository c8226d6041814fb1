//! Why a pod cannot be injected.

use super::INJECT_KEY;
use super::names as overrides;
use super::quantity::QuantityError;

/// Why a pod cannot be injected. Each message says what to change; the webhook denies the pod
/// with it, because a pod in an opted-in namespace must never start without its sidecar.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The pod has no `spec`.
    #[error("the pod has no spec")]
    NoSpec,
    /// `sluice.dev/inject` (or another boolean annotation) is neither `"true"` nor `"false"`.
    #[error("{key} must be \"true\" or \"false\", not {value:?}")]
    NotABool {
        /// The label or annotation.
        key: String,
        /// What it said.
        value: String,
    },
    /// A `sluice.dev/sidecar-*` annotation that does not exist (a typo would otherwise be
    /// ignored).
    #[error("unknown annotation {key}; the sidecar overrides are {}", overrides::ALL.join(", "))]
    UnknownOverride {
        /// The annotation.
        key: String,
    },
    /// A CPU or memory override that is not a valid quantity.
    #[error("annotation {annotation}: {value:?} is not a valid quantity: {source}")]
    BadQuantity {
        /// The annotation.
        annotation: &'static str,
        /// What it said.
        value: String,
        /// Why it was refused.
        source: QuantityError,
    },
    /// A port override that is not a number in 1024–65535.
    #[error("annotation {annotation}: {value:?} is not a port in 1024-65535")]
    BadPort {
        /// The annotation.
        annotation: &'static str,
        /// What it said.
        value: String,
    },
    /// The API and admin ports are the same.
    #[error(
        "the sidecar's API and admin ports are both {port}; set {} or {} to tell them apart",
        overrides::PORT,
        overrides::ADMIN_PORT
    )]
    SamePorts {
        /// The port.
        port: u16,
    },
    /// A container of the pod declares a port the sidecar would listen on.
    #[error(
        "container {container:?} declares port {port}, which the sidecar would listen on; set {annotation} to a free port"
    )]
    PortTaken {
        /// The container.
        container: String,
        /// The port.
        port: u16,
        /// The annotation that moves the sidecar's port.
        annotation: &'static str,
    },
    /// A request above its limit, which the API server would refuse with a vaguer message.
    #[error("the sidecar's {resource} request {request} is above its limit {limit}; set {hint} too")]
    RequestAboveLimit {
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The request.
        request: String,
        /// The limit.
        limit: String,
        /// The annotation to adjust.
        hint: &'static str,
    },
    /// The pod already has a volume with one of our names that is not ours.
    #[error(
        "the pod already has a volume named {name:?}; names starting with \"sluice-\" are reserved for the sidecar"
    )]
    VolumeNameTaken {
        /// The volume.
        name: String,
    },
    /// `hostNetwork` pods share the node's loopback: the sidecars of two such pods on one node
    /// would fight over port 4000.
    #[error(
        "the pod uses hostNetwork, where the sidecar's 127.0.0.1 ports would be shared with the node; opt the pod out with the annotation {INJECT_KEY}: \"false\""
    )]
    HostNetwork,
    /// The sidecar image is Linux-only.
    #[error(
        "the pod runs on {os}, and the sidecar is Linux-only; opt the pod out with the annotation {INJECT_KEY}: \"false\""
    )]
    UnsupportedOs {
        /// `spec.os.name`.
        os: String,
    },
}
