//! The operator binary's command line: its subcommands, the flags of `run`, and the
//! [`Settings`] those flags make. Kept in the library so that `main.rs` only wires.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{context::Settings, webhook::inject::InjectConfig};

/// Command line of the operator binary.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about = "The Sluice operator")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers and the control server (uses the in-cluster config or $KUBECONFIG).
    Run(Box<RunOptions>),
    /// Print the CRD manifests (or write them into a directory with --out).
    Crds {
        /// Directory to write `modelroute.yaml` and `budget.yaml` into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a CA (`ca.crt`) and a serving certificate (`tls.crt`, `tls.key`) into a directory.
    Certs {
        /// Where to write them.
        #[arg(long)]
        out: PathBuf,
        /// Names the certificate is valid for (DNS names or IP addresses).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
}

/// The flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// Address of the control server (HTTPS).
    #[arg(long, env = "SLUICE_CONTROL_LISTEN", default_value = "0.0.0.0:8443")]
    pub control_listen: SocketAddr,
    /// Address of the admin listener (metrics, probes).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM chain); without it a CA and certificate are generated.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving certificate's key (PEM).
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names for a generated certificate.
    #[arg(long = "san", default_values_t = ["sluice-operator".to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub sans: Vec<String>,
    /// Where to write a generated CA certificate.
    #[arg(long, env = "SLUICE_CA_OUT")]
    pub ca_out: Option<PathBuf>,
    /// The operator's own namespace: of the leader Lease, and of the usage ledgers (one
    /// ConfigMap per namespace counted, `sluice-usage-<namespace>`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-operator")]
    pub lease_name: String,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a lease holds without renewal.
    #[arg(long, default_value = "15s")]
    pub lease_duration: sluice_crds::Duration,
    /// How often usage and sidecar counts are written into status.
    #[arg(long, env = "SLUICE_STATUS_INTERVAL", default_value = "2s")]
    pub status_interval: sluice_crds::Duration,
    /// How often a control stream carries a heartbeat.
    #[arg(long, default_value = "15s")]
    pub heartbeat: sluice_crds::Duration,
    /// How far back allowance sizing looks at a sidecar's spend.
    #[arg(long, default_value = "60s")]
    pub sizing_window: sluice_crds::Duration,
    /// Watch and serve only this namespace (default: all).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the sidecar-injection webhook (HTTPS, `POST /mutate`); omitted: no webhook.
    #[arg(long, env = "SLUICE_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,
    /// Once every listener is bound (before the leader election), write their addresses to this
    /// file as one JSON object, `{"admin-listen":"…","control-listen":"…","webhook-listen":"…"}`
    /// (webhook only with --webhook-listen; written whole: a temporary file renamed into place).
    /// With port 0 in the listen flags, this is how whoever started the operator learns its ports.
    #[arg(long, env = "SLUICE_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,
    /// Secret (in the `--lease-namespace`) holding the operator's CA and serving certificate:
    /// read, or created with a new CA when absent; the certificate is re-issued before it
    /// expires and served without a restart. Instead of --tls-cert/--tls-key.
    #[arg(long, env = "SLUICE_TLS_SECRET_NAME", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_secret_name: Option<String>,
    /// MutatingWebhookConfiguration whose webhooks' caBundle the operator keeps equal to the CA
    /// of --tls-secret-name.
    #[arg(long, env = "SLUICE_WEBHOOK_CONFIG_NAME", requires = "tls_secret_name")]
    pub webhook_config_name: Option<String>,
    /// Lifetime of a serving certificate the operator issues (with --tls-secret-name).
    #[arg(long, env = "SLUICE_CERT_LIFETIME", default_value = "2160h")]
    pub cert_lifetime: sluice_crds::Duration,
    /// Re-issue the serving certificate when it expires within this (with --tls-secret-name).
    #[arg(long, env = "SLUICE_CERT_RENEW_BEFORE", default_value = "720h")]
    pub cert_renew_before: sluice_crds::Duration,
    /// What the webhook injects.
    #[command(flatten)]
    pub inject: crate::webhook::args::InjectArgs,
}

/// How logs are written: `text` (human-readable lines) or `json` (one JSON object a line).
// No doc comments on the variants: clap would turn them into `--help` text.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl RunOptions {
    /// The controllers' tunables; `inject` is what the webhook injects.
    pub fn settings(&self, inject: &Arc<InjectConfig>) -> Settings {
        Settings {
            status_interval: self.status_interval.get(),
            heartbeat: self.heartbeat.get(),
            sizing_window: self.sizing_window.get(),
            watch_namespace: self.watch_namespace.clone().filter(|ns| !ns.is_empty()),
            ledger_namespace: self.lease_namespace.clone(),
            // Drift is measured against what this operator's webhook injects.
            inject: self.webhook_listen.is_some().then(|| inject.clone()),
        }
    }
}
