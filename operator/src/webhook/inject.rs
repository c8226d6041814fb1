//! Sidecar injection (DESIGN §7): a pure function from a pod and the injection config to the
//! JSON Patch the mutating webhook answers with. The HTTPS handler only decodes the
//! `AdmissionReview`, calls [`inject`] and encodes the answer; everything that decides what a
//! pod gets lives here and is tested without a server.
//!
//! Who is injected: the webhook's `namespaceSelector` sends pods of namespaces labelled
//! `sluice.dev/inject=enabled`, and an optional second webhook entry sends pods labelled
//! `sluice.dev/inject: "true"` from other namespaces (the API server selects by labels only,
//! never annotations). A pod opts out with the label or annotation `sluice.dev/inject: "false"`.
//!
//! What a pod gets: the sidecar from [`sidecar_container`] (the one builder, shared with the
//! drift check [`is_outdated`]), a projected volume with its ServiceAccount token (audience
//! `sluice`) and the operator's CA, an `emptyDir` for its state, `OPENAI_BASE_URL` and
//! `ANTHROPIC_BASE_URL` on app containers that do not set their own, the label
//! `sluice.dev/sidecar: "true"` (the operator watches pods by it) and the annotation
//! `sluice.dev/injected-version`.

mod config;
mod drift;
mod error;
mod names;
mod overrides;
pub mod quantity;
mod sidecar;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use serde_json::Value;

pub use config::{CaSource, InjectConfig, SidecarMode, SidecarResources};
pub use drift::is_outdated;
pub use error::InjectError;
use names::to_value;
pub use names::{
    ADMIN_PORT_NAME, CA_PATH, IDENTITY_DIR, IDENTITY_VOLUME, INJECT_KEY, INJECTED_VERSION, NAMESPACE_ENABLED,
    SIDECAR_NAME, SIDECAR_UID, STATE_DIR, STATE_VOLUME, TOKEN_AUDIENCE, TOKEN_PATH,
};
pub use overrides::{PodOverrides, parse_bool};
pub use sidecar::{sidecar_container, sidecar_volumes};

use drift::{contains, running_sidecar};
use quantity::Resource;

/// Override annotations, re-exported under one name for the docs and the handler.
pub mod annotations {
    pub use super::names::{ADMIN_PORT, ALL, CPU, CPU_LIMIT, MEMORY, MEMORY_LIMIT, PORT, SET_ENV};
}

/// Why [`inject`] leaves a pod alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `sluice.dev/inject: "false"` as label or annotation.
    OptedOut,
    /// The pod already has the `sluice-sidecar` container: injecting is idempotent.
    AlreadyInjected,
    /// The namespace is in [`InjectConfig::excluded_namespaces`].
    ExcludedNamespace,
}

/// Why `pod` is not to be injected, or `None` when it is. The caller has been sent the pod by
/// the API server, so the namespace label or pod label already selected it; `pod`'s
/// `metadata.namespace` must be filled in (from the `AdmissionRequest` on CREATE, where the
/// object may lack it).
pub fn skip_reason(pod: &Pod, config: &InjectConfig) -> Result<Option<Skip>, InjectError> {
    let meta = &pod.metadata;
    for map in [&meta.labels, &meta.annotations].into_iter().flatten() {
        if let Some(value) = map.get(INJECT_KEY)
            && !parse_bool(INJECT_KEY, value)?
        {
            return Ok(Some(Skip::OptedOut));
        }
    }
    if pod.spec.as_ref().and_then(running_sidecar).is_some() {
        return Ok(Some(Skip::AlreadyInjected));
    }
    if meta
        .namespace
        .as_ref()
        .is_some_and(|ns| config.excluded_namespaces.contains(ns))
    {
        return Ok(Some(Skip::ExcludedNamespace));
    }
    Ok(None)
}

/// The patch that injects the sidecar into `pod`, `None` when there is nothing to do (opted
/// out, excluded, already injected), or why the pod cannot be injected.
pub fn inject(pod: &Pod, config: &InjectConfig) -> Result<Option<Patch>, InjectError> {
    if skip_reason(pod, config)?.is_some() {
        return Ok(None);
    }
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    if spec.host_network == Some(true) {
        return Err(InjectError::HostNetwork);
    }
    if let Some(os) = spec.os.as_ref().filter(|os| os.name != "linux") {
        return Err(InjectError::UnsupportedOs { os: os.name.clone() });
    }
    let overrides = PodOverrides::from_pod(pod)?;
    check_resources(config, &overrides)?;
    let port = overrides.port.unwrap_or(config.port);
    check_ports(spec, port, overrides.admin_port.unwrap_or(config.admin_port))?;

    let mut ops = Vec::new();
    add_volumes(&mut ops, spec, config)?;
    let sidecar = to_value(&sidecar_container(config, &overrides));
    match config.mode {
        SidecarMode::Native => add_to_list(
            &mut ops,
            "initContainers",
            spec.init_containers.as_deref(),
            sidecar,
            true,
        ),
        SidecarMode::Plain => add_to_list(&mut ops, "containers", Some(&spec.containers), sidecar, false),
    }
    if overrides.set_env != Some(false) {
        add_base_urls(&mut ops, &spec.containers, port);
    }
    // The operator watches pods by this label to count each route's sidecars.
    set_metadata(
        &mut ops,
        "labels",
        pod.metadata.labels.as_ref(),
        crate::SIDECAR_LABEL,
        "true",
    );
    set_metadata(
        &mut ops,
        "annotations",
        pod.metadata.annotations.as_ref(),
        INJECTED_VERSION,
        &config.version,
    );
    Ok(Some(Patch(ops)))
}

/// Refuses a request above its limit here, naming the annotation, rather than leaving the API
/// server to refuse the patched pod with a message about a container the user never wrote.
fn check_resources(config: &InjectConfig, overrides: &PodOverrides) -> Result<(), InjectError> {
    let defaults = &config.resources;
    let checks = [
        (
            "cpu",
            Resource::Cpu,
            (&overrides.cpu_request, &defaults.cpu_request),
            (&overrides.cpu_limit, &defaults.cpu_limit),
            names::CPU_LIMIT,
        ),
        (
            "memory",
            Resource::Memory,
            (&overrides.memory_request, &defaults.memory_request),
            (&overrides.memory_limit, &defaults.memory_limit),
            names::MEMORY_LIMIT,
        ),
    ];
    for (name, resource, request, limit, hint) in checks {
        let (Some(request), Some(limit)) = (
            request.0.as_ref().or(request.1.as_ref()),
            limit.0.as_ref().or(limit.1.as_ref()),
        ) else {
            continue;
        };
        // The config's own values were validated when it was built; the overrides just now.
        if let (Ok(r), Ok(l)) = (quantity::parse(resource, request), quantity::parse(resource, limit))
            && r > l
        {
            return Err(InjectError::RequestAboveLimit {
                resource: name,
                request: request.clone(),
                limit: limit.clone(),
                hint,
            });
        }
    }
    Ok(())
}

/// The sidecar shares the pod's network namespace: its ports must be free.
fn check_ports(spec: &PodSpec, port: u16, admin_port: u16) -> Result<(), InjectError> {
    if port == admin_port {
        return Err(InjectError::SamePorts { port });
    }
    let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
    for container in containers {
        for declared in container.ports.iter().flatten() {
            for (ours, annotation) in [(port, names::PORT), (admin_port, names::ADMIN_PORT)] {
                if declared.container_port == i32::from(ours) {
                    return Err(InjectError::PortTaken {
                        container: container.name.clone(),
                        port: ours,
                        annotation,
                    });
                }
            }
        }
    }
    Ok(())
}

fn add_volumes(ops: &mut Vec<PatchOperation>, spec: &PodSpec, config: &InjectConfig) -> Result<(), InjectError> {
    let existing = spec.volumes.as_deref().unwrap_or_default();
    let mut missing = Vec::new();
    for volume in sidecar_volumes(config) {
        match existing.iter().find(|v| v.name == volume.name) {
            // Ours, left over from an injection whose container was removed: keep it.
            Some(have) if contains(&to_value(have), &to_value(&volume), false) => {}
            Some(_) => return Err(InjectError::VolumeNameTaken { name: volume.name }),
            None => missing.push(to_value(&volume)),
        }
    }
    if existing.is_empty() {
        if !missing.is_empty() {
            ops.push(add(&["spec", "volumes"], Value::Array(missing)));
        }
    } else {
        ops.extend(missing.into_iter().map(|v| add(&["spec", "volumes", "-"], v)));
    }
    Ok(())
}

/// Adds `item` to the pod spec's list `field`: creates the list when the pod has none, else
/// puts it first (`first`: a native sidecar starts before the pod's own init containers, so
/// they can use it too) or last (a plain container: `kubectl logs` keeps defaulting to the
/// app, the first container).
fn add_to_list(ops: &mut Vec<PatchOperation>, field: &str, list: Option<&[Container]>, item: Value, first: bool) {
    match list {
        None | Some([]) => ops.push(add(&["spec", field], Value::Array(vec![item]))),
        Some(_) => ops.push(add(&["spec", field, if first { "0" } else { "-" }], item)),
    }
}

/// `OPENAI_BASE_URL` and `ANTHROPIC_BASE_URL` on every app container that does not set its
/// own in `env` (values from `envFrom` are invisible here: `sluice.dev/sidecar-set-env:
/// "false"` turns this off for such pods).
fn add_base_urls(ops: &mut Vec<PatchOperation>, containers: &[Container], port: u16) {
    let vars = [
        ("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1")),
        ("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}")),
    ];
    for (index, container) in containers.iter().enumerate() {
        let env = container.env.as_deref().unwrap_or_default();
        let missing: Vec<Value> = vars
            .iter()
            .filter(|(name, _)| !env.iter().any(|e| e.name == *name))
            .map(|(name, value)| {
                to_value(&EnvVar {
                    name: (*name).to_owned(),
                    value: Some(value.clone()),
                    value_from: None,
                })
            })
            .collect();
        let index = index.to_string();
        if env.is_empty() {
            if !missing.is_empty() {
                ops.push(add(&["spec", "containers", &index, "env"], Value::Array(missing)));
            }
        } else {
            ops.extend(
                missing
                    .into_iter()
                    .map(|v| add(&["spec", "containers", &index, "env", "-"], v)),
            );
        }
    }
}

/// Sets `key` in the pod's `labels` or `annotations` (`field`), creating the map if needed.
fn set_metadata(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    map: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) {
    let value = Value::String(value.to_owned());
    match map {
        None => ops.push(add(
            &["metadata", field],
            Value::Object([(key.to_owned(), value)].into_iter().collect()),
        )),
        Some(map) if map.contains_key(key) => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(&["metadata", field, key]),
            value,
        })),
        Some(_) => ops.push(add(&["metadata", field, key], value)),
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

/// A JSON Pointer from unescaped tokens (`sluice.dev/injected-version` becomes
/// `sluice.dev~1injected-version`).
fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}
