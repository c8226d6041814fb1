//! The drift check against a pod the injector patched: what the API server adds is not drift,
//! a change of what the injector makes is.

use serde_json::{Value, json};

use super::*;

/// The pod as the API server stores it: defaulted fields added, quantities canonical.
fn as_stored(mut pod: Value) -> Pod {
    let sidecar = &mut pod["spec"]["initContainers"][0];
    sidecar["terminationMessagePath"] = json!("/dev/termination-log");
    sidecar["resources"]["requests"]["cpu"] = json!("50m");
    // A LimitRange's default CPU limit is not ours to undo.
    sidecar["resources"]["limits"]["cpu"] = json!("2");
    sidecar["volumeMounts"][0]["mountPropagation"] = json!("None");
    // The ServiceAccount admission plugin mounts the API token into every container.
    sidecar["volumeMounts"].as_array_mut().unwrap().push(json!(
        {"name": "kube-api-access-629b2", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
    ));
    pod["spec"]["volumes"][1]["emptyDir"]["sizeLimit"] = json!("64Mi");
    parse(&pod)
}

fn injected_json(config: &InjectConfig) -> Value {
    let bare = pod(json!({}));
    let patch = inject(&parse(&bare), config).unwrap().unwrap();
    let mut patched = bare;
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

#[test]
fn fields_the_api_server_adds_and_canonical_quantities_are_not_drift() {
    // `0.05` is stored as `50m`, `0.0625Gi` as `64Mi`: equal in value, so not outdated.
    let config = InjectConfig {
        resources: SidecarResources {
            cpu_request: Some("0.05".to_owned()),
            ..SidecarResources::default()
        },
        state_size_limit: Some("0.0625Gi".to_owned()),
        ..config()
    };
    assert!(!is_outdated(&as_stored(injected_json(&config)), &config));
}

#[test]
fn a_new_image_flags_resources_mode_or_volume_make_a_running_sidecar_outdated() {
    let running = parse(&injected_json(&config()));
    let changed = [
        (
            "image",
            InjectConfig {
                image: "sluice/sluice-sidecar:0.2.0".to_owned(),
                ..config()
            },
        ),
        (
            "control plane",
            InjectConfig {
                control_plane_url: "https://sluice.other.svc:8444".to_owned(),
                ..config()
            },
        ),
        (
            "memory",
            InjectConfig {
                resources: SidecarResources {
                    memory_limit: Some("512Mi".to_owned()),
                    ..SidecarResources::default()
                },
                ..config()
            },
        ),
        (
            "mode",
            InjectConfig {
                mode: SidecarMode::Plain,
                ..config()
            },
        ),
        (
            "token lifetime",
            InjectConfig {
                token_expiration_seconds: 7200,
                ..config()
            },
        ),
        (
            "trace collector",
            InjectConfig {
                env: vec![(
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                    "http://collector:4317".to_owned(),
                )],
                ..config()
            },
        ),
    ];
    for (name, config) in changed {
        assert!(is_outdated(&running, &config), "{name}");
    }
    assert!(!is_outdated(&running, &config()));
    assert!(
        !is_outdated(&parse(&pod(json!({}))), &config()),
        "a pod without a sidecar is not outdated"
    );
}

#[test]
fn a_mount_of_ours_at_another_path_is_drift() {
    let mut running = injected_json(&config());
    running["spec"]["initContainers"][0]["volumeMounts"][1]["mountPath"] = json!("/tmp/state");
    assert!(is_outdated(&parse(&running), &config()));
}

#[test]
fn an_override_added_after_injection_makes_the_sidecar_outdated() {
    let mut running = injected_json(&config());
    running["metadata"]["annotations"]["sluice.dev/sidecar-memory"] = json!("128Mi");
    assert!(is_outdated(&parse(&running), &config()));
    running["metadata"]["annotations"]["sluice.dev/sidecar-memory"] = json!("128m");
    assert!(
        is_outdated(&parse(&running), &config()),
        "invalid overrides count as outdated"
    );
}
