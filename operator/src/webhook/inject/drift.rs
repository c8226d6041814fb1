//! Drift: whether a running pod's sidecar is what the injector would make today.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::Value;

use super::config::{InjectConfig, SidecarMode};
use super::names::{SIDECAR_NAME, to_value};
use super::overrides::PodOverrides;
use super::quantity::{self, Resource};
use super::sidecar::{sidecar_container, sidecar_volumes};

/// Whether `pod` runs a sidecar other than the one [`sidecar_container`] makes today (new
/// image, flags, resources, mode or volumes). A pod without a sidecar is not outdated; a pod
/// whose overrides no longer validate is.
pub fn is_outdated(pod: &Pod, config: &InjectConfig) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let Some((running, mode)) = running_sidecar(spec) else {
        return false;
    };
    if mode != config.mode {
        return true;
    }
    let Ok(overrides) = PodOverrides::from_pod(pod) else {
        return true;
    };
    if !contains(
        &to_value(running),
        &to_value(&sidecar_container(config, &overrides)),
        false,
    ) {
        return true;
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    !sidecar_volumes(config).iter().all(|want| {
        volumes
            .iter()
            .find(|v| v.name == want.name)
            .is_some_and(|have| contains(&to_value(have), &to_value(want), false))
    })
}

/// The injected container and how it was injected, if the pod has one.
pub(super) fn running_sidecar(spec: &PodSpec) -> Option<(&Container, SidecarMode)> {
    fn find(list: &[Container]) -> Option<&Container> {
        list.iter().find(|c| c.name == SIDECAR_NAME)
    }
    find(spec.init_containers.as_deref().unwrap_or_default())
        .map(|c| (c, SidecarMode::Native))
        .or_else(|| find(&spec.containers).map(|c| (c, SidecarMode::Plain)))
}

/// Whether `have` has every field of `want` with the same value: what other admission plugins
/// or the API server add (a LimitRange's default limit, the ServiceAccount plugin's
/// `kube-api-access-*` mount, a defaulted field we do not set) is not drift. Lists of named
/// items (mounts, env, ports) match by name; other lists (args) item by item. Quantities
/// compare by value, since the API server rewrites them (`0.1` is stored as `100m`).
pub(super) fn contains(have: &Value, want: &Value, quantities: bool) -> bool {
    let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
    match (have, want) {
        (Value::Object(have), Value::Object(want)) => want.iter().all(|(key, w)| {
            let quantities = quantities || matches!(key.as_str(), "requests" | "limits" | "sizeLimit");
            have.get(key).is_some_and(|h| contains(h, w, quantities))
        }),
        (Value::Array(have), Value::Array(want)) if !want.is_empty() && want.iter().all(|w| name(w).is_some()) => {
            want.iter().all(|w| {
                have.iter()
                    .find(|h| name(h) == name(w))
                    .is_some_and(|h| contains(h, w, quantities))
            })
        }
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w, quantities))
        }
        (Value::String(h), Value::String(w)) if quantities && h != w => [Resource::Cpu, Resource::Memory]
            .iter()
            .any(|&r| matches!((quantity::parse(r, h), quantity::parse(r, w)), (Ok(a), Ok(b)) if a == b)),
        _ => have == want,
    }
}
