//! The names the injector and the drift check agree on: labels, annotations, volumes, paths,
//! and the one conversion of a Kubernetes object to JSON they compare with. A leaf: it imports
//! nothing from the crate.

use serde::Serialize;
use serde_json::Value;

/// Label (on namespaces: `enabled`) and pod label or annotation (`"true"`/`"false"`) that opt
/// in and out.
pub const INJECT_KEY: &str = "sluice.dev/inject";
/// The namespace label value that turns injection on.
pub const NAMESPACE_ENABLED: &str = "enabled";
/// Annotation recording which version of the injector made the pod's sidecar.
pub const INJECTED_VERSION: &str = "sluice.dev/injected-version";
/// Name of the injected container; reserved: a pod that has it is already injected.
pub const SIDECAR_NAME: &str = "sluice-sidecar";
/// Projected volume with the token and the CA.
pub const IDENTITY_VOLUME: &str = "sluice-identity";
/// `emptyDir` with the last config snapshot and unacknowledged usage, so a container restart
/// serves the last good config at once (DESIGN §6.2).
pub const STATE_VOLUME: &str = "sluice-state";
/// Where the identity volume is mounted.
pub const IDENTITY_DIR: &str = "/var/run/secrets/sluice";
/// The projected ServiceAccount token, as the sidecar's `--token-file` expects it.
pub const TOKEN_PATH: &str = "/var/run/secrets/sluice/token";
/// The operator's CA, as the sidecar's `--control-plane-ca` expects it.
pub const CA_PATH: &str = "/var/run/secrets/sluice/ca.crt";
/// Where the state volume is mounted (`--state-dir`).
pub const STATE_DIR: &str = "/var/run/sluice";
/// Audience of the projected token: the one the control server's `TokenReview` asks for.
pub const TOKEN_AUDIENCE: &str = sluice_crds::control::AUDIENCE;
/// Name of the sidecar's admin port (probes, metrics): a PodMonitor selects it by this name.
pub const ADMIN_PORT_NAME: &str = "sluice-admin";
/// The user the sidecar runs as: distroless's `nonroot`.
pub const SIDECAR_UID: i64 = 65532;

/// CPU request of the sidecar (`250m`, `0.5`).
pub const CPU: &str = "sluice.dev/sidecar-cpu";
/// CPU limit of the sidecar.
pub const CPU_LIMIT: &str = "sluice.dev/sidecar-cpu-limit";
/// Memory request of the sidecar (`128Mi`).
pub const MEMORY: &str = "sluice.dev/sidecar-memory";
/// Memory limit of the sidecar.
pub const MEMORY_LIMIT: &str = "sluice.dev/sidecar-memory-limit";
/// Loopback port of the sidecar's API, for apps that already use 4000.
pub const PORT: &str = "sluice.dev/sidecar-port";
/// Port of the sidecar's admin listener (probes, metrics).
pub const ADMIN_PORT: &str = "sluice.dev/sidecar-admin-port";
/// `"false"`: leave the app containers' environment alone (the app sets its base URLs
/// another way, e.g. through `envFrom`, which the webhook cannot see into).
pub const SET_ENV: &str = "sluice.dev/sidecar-set-env";

/// Every override annotation; any other `sluice.dev/sidecar-*` key is refused as a typo.
pub const ALL: [&str; 7] = [CPU, CPU_LIMIT, MEMORY, MEMORY_LIMIT, PORT, ADMIN_PORT, SET_ENV];

/// Kubernetes types always serialize; `Null` would only show up as a failed drift check.
pub fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
