//! The operator's flags for sidecar injection, flattened into its command line; each has an
//! environment variable too. The Helm chart sets them from `values.yaml` (`sidecar.*`).

use std::net::IpAddr;

use clap::Args;

use super::inject::quantity::{self, QuantityError, Resource};
use super::inject::{CaSource, InjectConfig, SidecarMode, SidecarResources};

/// What the webhook injects, as flags.
#[derive(Clone, Debug, Args)]
pub struct InjectArgs {
    /// Sidecar image (`repository:tag` or `repository@sha256:…`).
    #[arg(long, env = "SLUICE_SIDECAR_IMAGE", default_value = concat!("sluice/sluice-sidecar:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,
    /// Pull policy of the sidecar image.
    #[arg(long, env = "SLUICE_SIDECAR_IMAGE_PULL_POLICY", default_value = "IfNotPresent",
          value_parser = ["IfNotPresent", "Always", "Never"])]
    pub sidecar_image_pull_policy: String,
    /// `native`: an init container with `restartPolicy: Always` (Kubernetes ≥ 1.29);
    /// `plain`: a regular container, for older clusters.
    #[arg(long, env = "SLUICE_SIDECAR_MODE", value_enum, default_value_t = SidecarMode::Native)]
    pub sidecar_mode: SidecarMode,
    /// CPU request of the sidecar (empty: none).
    #[arg(long, env = "SLUICE_SIDECAR_CPU_REQUEST", default_value = "50m")]
    pub sidecar_cpu_request: String,
    /// CPU limit of the sidecar (empty, the default: none).
    #[arg(long, env = "SLUICE_SIDECAR_CPU_LIMIT", default_value = "")]
    pub sidecar_cpu_limit: String,
    /// Memory request of the sidecar (empty: none).
    #[arg(long, env = "SLUICE_SIDECAR_MEMORY_REQUEST", default_value = "64Mi")]
    pub sidecar_memory_request: String,
    /// Memory limit of the sidecar (empty: none).
    #[arg(long, env = "SLUICE_SIDECAR_MEMORY_LIMIT", default_value = "256Mi")]
    pub sidecar_memory_limit: String,
    /// Loopback port of the sidecar's API; apps get `OPENAI_BASE_URL=http://127.0.0.1:PORT/v1`.
    #[arg(long, env = "SLUICE_SIDECAR_PORT", default_value_t = 4000, value_parser = clap::value_parser!(u16).range(1024..))]
    pub sidecar_port: u16,
    /// Port of the sidecar's admin listener (probes, metrics).
    #[arg(long, env = "SLUICE_SIDECAR_ADMIN_PORT", default_value_t = 4001, value_parser = clap::value_parser!(u16).range(1024..))]
    pub sidecar_admin_port: u16,
    /// Address the sidecar's admin listener binds (`0.0.0.0`, or `::` on IPv6-only clusters):
    /// the kubelet probes the pod IP.
    #[arg(long, env = "SLUICE_SIDECAR_ADMIN_ADDRESS", default_value = "0.0.0.0")]
    pub sidecar_admin_address: IpAddr,
    /// Size limit of the sidecar's state `emptyDir` (empty: none).
    #[arg(long, env = "SLUICE_SIDECAR_STATE_SIZE_LIMIT", default_value = "64Mi")]
    pub sidecar_state_size_limit: String,
    /// Lifetime of the sidecar's projected token, in seconds (the API server's minimum is 600).
    #[arg(long, env = "SLUICE_SIDECAR_TOKEN_EXPIRATION_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(600..))]
    pub sidecar_token_expiration_seconds: i64,
    /// The control server's URL as sidecars reach it.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE_URL",
        default_value = "https://sluice-operator.sluice-system.svc:8444"
    )]
    pub control_plane_url: String,
    /// ConfigMap, in each injected namespace, holding the operator's CA (the operator
    /// publishes it there).
    #[arg(
        long,
        env = "SLUICE_CA_CONFIGMAP",
        default_value = "sluice-ca",
        conflicts_with = "ca_secret"
    )]
    pub ca_configmap: String,
    /// Read the CA from this Secret in each injected namespace instead of the ConfigMap.
    #[arg(long, env = "SLUICE_CA_SECRET")]
    pub ca_secret: Option<String>,
    /// Key of the CA bundle in that ConfigMap or Secret.
    #[arg(long, env = "SLUICE_CA_KEY", default_value = "ca.crt")]
    pub ca_key: String,
    /// Namespaces never injected, whatever their labels (comma-separated). The chart adds the
    /// operator's own namespace.
    #[arg(
        long,
        env = "SLUICE_INJECT_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    pub inject_exclude_namespaces: Vec<String>,
    /// Environment of every injected sidecar, `NAME=VALUE`, repeatable: the OpenTelemetry
    /// variables only (`OTEL_*`), since the sidecar's own settings are flags the webhook owns.
    #[arg(long = "sidecar-env", value_parser = otel_env)]
    pub sidecar_env: Vec<(String, String)>,
}

/// One `--sidecar-env`: `OTEL_NAME=VALUE`.
fn otel_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let valid = name.starts_with("OTEL_")
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(format!(
            "{name:?}: only OpenTelemetry variables (OTEL_*) may be set on the sidecar"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A flag that does not hold a valid quantity.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {value:?} is not a valid quantity: {source}")]
pub struct BadFlag {
    /// The flag, without dashes.
    pub flag: &'static str,
    /// What it said.
    pub value: String,
    /// Why it was refused.
    pub source: QuantityError,
}

impl InjectArgs {
    /// The injection config, with every quantity checked so that a typo stops the operator at
    /// start instead of every pod at admission.
    pub fn into_config(self) -> Result<InjectConfig, BadFlag> {
        let checked = |flag: &'static str, resource: Resource, value: String| -> Result<Option<String>, BadFlag> {
            if value.is_empty() {
                return Ok(None);
            }
            match quantity::parse(resource, &value) {
                Ok(_) => Ok(Some(value)),
                Err(source) => Err(BadFlag { flag, value, source }),
            }
        };
        let ca = match self.ca_secret {
            Some(name) => CaSource::Secret { name, key: self.ca_key },
            None => CaSource::ConfigMap {
                name: self.ca_configmap,
                key: self.ca_key,
            },
        };
        Ok(InjectConfig {
            image: self.sidecar_image,
            image_pull_policy: self.sidecar_image_pull_policy,
            mode: self.sidecar_mode,
            control_plane_url: self.control_plane_url,
            ca,
            resources: SidecarResources {
                cpu_request: checked("sidecar-cpu-request", Resource::Cpu, self.sidecar_cpu_request)?,
                cpu_limit: checked("sidecar-cpu-limit", Resource::Cpu, self.sidecar_cpu_limit)?,
                memory_request: checked("sidecar-memory-request", Resource::Memory, self.sidecar_memory_request)?,
                memory_limit: checked("sidecar-memory-limit", Resource::Memory, self.sidecar_memory_limit)?,
            },
            port: self.sidecar_port,
            admin_port: self.sidecar_admin_port,
            admin_address: self.sidecar_admin_address,
            token_expiration_seconds: self.sidecar_token_expiration_seconds,
            state_size_limit: checked(
                "sidecar-state-size-limit",
                Resource::Memory,
                self.sidecar_state_size_limit,
            )?,
            excluded_namespaces: self.inject_exclude_namespaces,
            env: self.sidecar_env,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        inject: InjectArgs,
    }

    #[test]
    fn the_defaults_are_the_injection_defaults() {
        let config = Cli::try_parse_from(["operator"]).unwrap().inject.into_config().unwrap();
        assert_eq!(config, InjectConfig::default());
    }

    #[test]
    fn empty_quantities_mean_none_and_a_secret_replaces_the_configmap() {
        let cli = Cli::try_parse_from([
            "operator",
            "--sidecar-memory-limit=",
            "--sidecar-cpu-limit=1",
            "--ca-secret=trust",
            "--sidecar-mode=plain",
            "--inject-exclude-namespaces=kube-system,sluice-system",
        ])
        .unwrap();
        let config = cli.inject.into_config().unwrap();
        assert_eq!(config.resources.memory_limit, None);
        assert_eq!(config.resources.cpu_limit.as_deref(), Some("1"));
        assert_eq!(config.mode, SidecarMode::Plain);
        assert_eq!(config.excluded_namespaces, ["kube-system", "sluice-system"]);
        assert_eq!(
            config.ca,
            CaSource::Secret {
                name: "trust".to_owned(),
                key: "ca.crt".to_owned()
            }
        );
    }

    #[test]
    fn the_sidecar_pull_policy_flag_is_what_the_injected_container_gets() {
        let cli = Cli::try_parse_from([
            "operator",
            "--sidecar-image=sluice-sidecar:dev",
            "--sidecar-image-pull-policy=Never",
        ])
        .unwrap();
        let config = cli.inject.into_config().unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}
        }))
        .unwrap();
        let patch = serde_json::to_value(super::super::inject::inject(&pod, &config).unwrap().unwrap()).unwrap();
        let sidecar = patch
            .as_array()
            .unwrap()
            .iter()
            .map(|op| &op["value"])
            .flat_map(|v| {
                if v.is_array() {
                    v.as_array().unwrap().clone()
                } else {
                    vec![v.clone()]
                }
            })
            .find(|v| v["name"] == "sluice-sidecar")
            .unwrap();
        assert_eq!(sidecar["image"], "sluice-sidecar:dev");
        assert_eq!(sidecar["imagePullPolicy"], "Never");
    }

    #[test]
    fn a_bad_quantity_flag_names_the_flag() {
        let cli = Cli::try_parse_from(["operator", "--sidecar-memory-request=64m"]).unwrap();
        let error = cli.inject.into_config().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--sidecar-memory-request: \"64m\" is not a valid quantity: the suffix m means thousandths of a byte; \
             write Mi (mebibytes) or M (megabytes)"
        );
    }

    #[test]
    fn ports_below_1024_are_refused() {
        assert!(Cli::try_parse_from(["operator", "--sidecar-port=80"]).is_err());
    }

    #[test]
    fn sidecar_env_takes_repeated_opentelemetry_variables_only() {
        let cli = Cli::try_parse_from([
            "operator",
            "--sidecar-env=OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4317",
            "--sidecar-env=OTEL_RESOURCE_ATTRIBUTES=a=1,b=2",
        ])
        .unwrap();
        assert_eq!(
            cli.inject.into_config().unwrap().env,
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "http://c:4317".to_owned()),
                ("OTEL_RESOURCE_ATTRIBUTES".to_owned(), "a=1,b=2".to_owned()),
            ]
        );
        assert!(Cli::try_parse_from(["operator", "--sidecar-env=SLUICE_LOG=debug"]).is_err());
        assert!(Cli::try_parse_from(["operator", "--sidecar-env=OTEL_EXPORTER_OTLP_ENDPOINT"]).is_err());
    }
}
