//! The one builder of the injected container and its volumes, shared by [`super::inject`] and
//! the drift check [`super::is_outdated`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    KeyToPath, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CaSource, InjectConfig, SidecarMode};
use super::names::{
    ADMIN_PORT_NAME, CA_PATH, IDENTITY_DIR, IDENTITY_VOLUME, SIDECAR_NAME, SIDECAR_UID, STATE_DIR, STATE_VOLUME,
    TOKEN_AUDIENCE, TOKEN_PATH,
};
use super::overrides::PodOverrides;

/// The sidecar container: the one definition, used to inject and to check for drift.
pub fn sidecar_container(config: &InjectConfig, overrides: &PodOverrides) -> Container {
    let port = overrides.port.unwrap_or(config.port);
    let admin_port = overrides.admin_port.unwrap_or(config.admin_port);
    let pick = |over: &Option<String>, default: &Option<String>| over.clone().or_else(|| default.clone());
    let defaults = &config.resources;
    let requests = quantities([
        ("cpu", pick(&overrides.cpu_request, &defaults.cpu_request)),
        ("memory", pick(&overrides.memory_request, &defaults.memory_request)),
    ]);
    let limits = quantities([
        ("cpu", pick(&overrides.cpu_limit, &defaults.cpu_limit)),
        ("memory", pick(&overrides.memory_limit, &defaults.memory_limit)),
    ]);
    let mut args = vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--admin-listen={}", SocketAddr::new(config.admin_address, admin_port)),
        format!("--control-plane={}", config.control_plane_url),
        format!("--control-plane-ca={CA_PATH}"),
        format!("--token-file={TOKEN_PATH}"),
        format!("--state-dir={STATE_DIR}"),
        "--log-format=json".to_owned(),
    ];
    if let Some(seconds) = overrides.shutdown_grace_seconds {
        args.push(format!("--shutdown-grace={seconds}s"));
    }
    Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(args),
        env: (!config.env.is_empty()).then(|| {
            config
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                })
                .collect()
        }),
        ports: Some(vec![ContainerPort {
            name: Some(ADMIN_PORT_NAME.to_owned()),
            container_port: i32::from(admin_port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: (requests.is_some() || limits.is_some()).then_some(ResourceRequirements {
            requests,
            limits,
            ..ResourceRequirements::default()
        }),
        restart_policy: (config.mode == SidecarMode::Native).then(|| "Always".to_owned()),
        security_context: Some(security_context()),
        // A native sidecar holds the app back until this passes: the listener is up.
        startup_probe: Some(probe("/healthz", 1, 60)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        // Ready once a config is loaded, so the pod only takes traffic with a working gateway.
        readiness_probe: Some(probe("/readyz", 5, 3)),
        // The last log lines land in the pod status when the sidecar crashes.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: IDENTITY_VOLUME.to_owned(),
                mount_path: IDENTITY_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: STATE_VOLUME.to_owned(),
                mount_path: STATE_DIR.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// An HTTP probe of the admin port's `path`.
fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        // Every field the API server would default is set, so the drift check compares
        // like with like.
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Unprivileged, read-only, no capabilities: what the `restricted` Pod Security Standard asks.
fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(SIDECAR_UID),
        run_as_group: Some(SIDECAR_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The volumes the sidecar mounts: its identity (token and CA) and its state.
pub fn sidecar_volumes(config: &InjectConfig) -> [Volume; 2] {
    let items = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_owned(),
            path: "ca.crt".to_owned(),
            mode: None,
        }])
    };
    let ca = match &config.ca {
        CaSource::ConfigMap { name, key } => VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.clone(),
                items: items(key),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        },
        CaSource::Secret { name, key } => VolumeProjection {
            secret: Some(SecretProjection {
                name: name.clone(),
                items: items(key),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        },
    };
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            audience: Some(TOKEN_AUDIENCE.to_owned()),
            expiration_seconds: Some(config.token_expiration_seconds),
            path: "token".to_owned(),
        }),
        ..VolumeProjection::default()
    };
    [
        Volume {
            name: IDENTITY_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                // The API server's default, written out so the drift check compares equal.
                default_mode: Some(0o644),
                sources: Some(vec![token, ca]),
            }),
            ..Volume::default()
        },
        Volume {
            name: STATE_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: config.state_size_limit.clone().map(Quantity),
            }),
            ..Volume::default()
        },
    ]
}

fn quantities(entries: [(&str, Option<String>); 2]) -> Option<BTreeMap<String, Quantity>> {
    let map: BTreeMap<String, Quantity> = entries
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), Quantity(value?))))
        .collect();
    (!map.is_empty()).then_some(map)
}
