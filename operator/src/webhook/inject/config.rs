//! The injector's configuration, built once from the operator's flags ([`crate::webhook::args`]).

use std::net::{IpAddr, Ipv4Addr};

/// How the sidecar is added to a pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes ≥ 1.29): started and ready
    /// before the app, stopped after it, and it does not keep a Job from completing.
    #[default]
    Native,
    /// A regular container, for clusters older than 1.29: no start ordering, and a Job's pod
    /// never completes while the sidecar runs.
    Plain,
}

/// Where the operator's CA comes from. Volumes only reach objects of the pod's own namespace,
/// so the operator publishes the CA into each injected namespace (like `kube-root-ca.crt`), or
/// a tool such as trust-manager distributes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// A ConfigMap: a CA certificate is public, and ConfigMap volumes follow its updates.
    ConfigMap {
        /// The ConfigMap's name.
        name: String,
        /// The key holding the PEM bundle.
        key: String,
    },
    /// A Secret, for clusters whose policy distributes trust bundles as Secrets.
    Secret {
        /// The Secret's name.
        name: String,
        /// The key holding the PEM bundle.
        key: String,
    },
}

/// The sidecar's default resources; each may be overridden per pod by annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarResources {
    /// CPU request (`None`: no request).
    pub cpu_request: Option<String>,
    /// CPU limit (`None`: none, the default: CPU limits throttle a latency-sensitive proxy).
    pub cpu_limit: Option<String>,
    /// Memory request.
    pub memory_request: Option<String>,
    /// Memory limit.
    pub memory_limit: Option<String>,
}

impl Default for SidecarResources {
    fn default() -> Self {
        Self {
            cpu_request: Some("50m".to_owned()),
            cpu_limit: None,
            memory_request: Some("64Mi".to_owned()),
            memory_limit: Some("256Mi".to_owned()),
        }
    }
}

/// Everything the injector needs besides the pod; built once from the operator's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectConfig {
    /// Sidecar image, `repository:tag` or `repository@digest`.
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Native sidecar or plain container.
    pub mode: SidecarMode,
    /// The operator's control server as sidecars reach it (`https://SERVICE.NAMESPACE.svc:8444`).
    pub control_plane_url: String,
    /// Where the CA bundle is read from in the pod's namespace.
    pub ca: CaSource,
    /// Default resources.
    pub resources: SidecarResources,
    /// Default API port on 127.0.0.1.
    pub port: u16,
    /// Default admin port.
    pub admin_port: u16,
    /// Address the admin listener binds: not loopback, because the kubelet probes the pod IP (the
    /// sidecar keeps `/config` and `/budgets` to loopback peers).
    pub admin_address: IpAddr,
    /// Lifetime of the projected token; the kubelet refreshes it at 80%.
    pub token_expiration_seconds: i64,
    /// Bound of the state `emptyDir`, so a stuck usage queue cannot fill the node's disk.
    pub state_size_limit: Option<String>,
    /// Namespaces never injected whatever their labels say (the system's, the operator's own:
    /// injecting the operator would make it wait for itself).
    pub excluded_namespaces: Vec<String>,
    /// Environment of the sidecar container (`OTEL_*` only, checked at the flag).
    pub env: Vec<(String, String)>,
    /// Written to `sluice.dev/injected-version`.
    pub version: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            image: concat!("sluice/sluice-sidecar:", env!("CARGO_PKG_VERSION")).to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            mode: SidecarMode::Native,
            control_plane_url: "https://sluice-operator.sluice-system.svc:8444".to_owned(),
            ca: CaSource::ConfigMap {
                name: "sluice-ca".to_owned(),
                key: "ca.crt".to_owned(),
            },
            resources: SidecarResources::default(),
            port: 4000,
            admin_port: 4001,
            admin_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            token_expiration_seconds: 3600,
            state_size_limit: Some("64Mi".to_owned()),
            excluded_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(str::to_owned)
                .to_vec(),
            env: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}
