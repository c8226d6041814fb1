//! Per-pod overrides of the sidecar, read from the pod's annotations and validated: a bad value
//! is an [`InjectError`] naming the annotation, which the webhook turns into a denial, so a typo
//! never produces a pod whose sidecar silently ignores what was asked. One more comes from the
//! pod's spec: its termination grace, which bounds the sidecar's own shutdown.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::InjectError;
use super::names::{ADMIN_PORT, ALL, CPU, CPU_LIMIT, MEMORY, MEMORY_LIMIT, PORT, SET_ENV};
use super::quantity::{self, Resource};

/// The prefix reserved for override annotations.
const PREFIX: &str = "sluice.dev/sidecar-";

/// What a pod's annotations change about its sidecar. `None` keeps the configured default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodOverrides {
    /// CPU request, as written (validated).
    pub cpu_request: Option<String>,
    /// CPU limit, as written (validated).
    pub cpu_limit: Option<String>,
    /// Memory request, as written (validated).
    pub memory_request: Option<String>,
    /// Memory limit, as written (validated).
    pub memory_limit: Option<String>,
    /// API port on 127.0.0.1.
    pub port: Option<u16>,
    /// Admin port.
    pub admin_port: Option<u16>,
    /// `Some(false)`: do not set `OPENAI_BASE_URL`/`ANTHROPIC_BASE_URL` on app containers.
    pub set_env: Option<bool>,
    /// The pod's `terminationGracePeriodSeconds` where it is not the sidecar's default: the
    /// kubelet kills the sidecar when it runs out, so the drain and the last usage report must
    /// fit in it.
    pub shutdown_grace_seconds: Option<i64>,
}

/// The grace the sidecar assumes without `--shutdown-grace`, which is also Kubernetes' default.
const DEFAULT_GRACE_SECONDS: i64 = 30;

impl PodOverrides {
    /// Reads and validates the override annotations of `pod`.
    pub fn from_pod(pod: &Pod) -> Result<Self, InjectError> {
        let empty = BTreeMap::new();
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        if let Some(key) = annotations
            .keys()
            .find(|k| k.starts_with(PREFIX) && !ALL.contains(&k.as_str()))
        {
            return Err(InjectError::UnknownOverride { key: key.clone() });
        }
        let get = |key: &str| annotations.get(key).map(String::as_str);
        Ok(Self {
            cpu_request: quantity_override(CPU, Resource::Cpu, get(CPU))?,
            cpu_limit: quantity_override(CPU_LIMIT, Resource::Cpu, get(CPU_LIMIT))?,
            memory_request: quantity_override(MEMORY, Resource::Memory, get(MEMORY))?,
            memory_limit: quantity_override(MEMORY_LIMIT, Resource::Memory, get(MEMORY_LIMIT))?,
            port: port_override(PORT, get(PORT))?,
            admin_port: port_override(ADMIN_PORT, get(ADMIN_PORT))?,
            set_env: get(SET_ENV).map(|value| parse_bool(SET_ENV, value)).transpose()?,
            shutdown_grace_seconds: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.termination_grace_period_seconds)
                // Negative is refused by the API server's validation; only a real figure counts.
                .filter(|&seconds| seconds >= 0 && seconds != DEFAULT_GRACE_SECONDS),
        })
    }
}

/// `"true"` or `"false"`, nothing looser: `"False"`, `"no"` or `"0"` would be guesses.
pub fn parse_bool(annotation: &str, value: &str) -> Result<bool, InjectError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(InjectError::NotABool {
            key: annotation.to_owned(),
            value: value.to_owned(),
        }),
    }
}

fn quantity_override(
    annotation: &'static str,
    resource: Resource,
    value: Option<&str>,
) -> Result<Option<String>, InjectError> {
    let Some(value) = value else { return Ok(None) };
    quantity::parse(resource, value).map_err(|source| InjectError::BadQuantity {
        annotation,
        value: value.to_owned(),
        source,
    })?;
    Ok(Some(value.to_owned()))
}

fn port_override(annotation: &'static str, value: Option<&str>) -> Result<Option<u16>, InjectError> {
    let Some(value) = value else { return Ok(None) };
    // Below 1024 a non-root process with no capabilities cannot bind.
    match value.parse::<u16>() {
        Ok(port) if port >= 1024 => Ok(Some(port)),
        _ => Err(InjectError::BadPort {
            annotation,
            value: value.to_owned(),
        }),
    }
}
