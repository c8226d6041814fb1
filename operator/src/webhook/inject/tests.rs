//! Injection over a table of pod shapes: each case states the exact JSON Patch, which is then
//! applied with `json-patch` to the pod's JSON and read back as a `Pod`, which must be
//! injected (a second injection is a no-op) and not outdated.

use serde_json::{Value, json};

use super::*;

mod outdated;

/// The defaults, with the image and version pinned so the expected patches do not change
/// with the crate version.
fn config() -> InjectConfig {
    InjectConfig {
        image: "sluice/sluice-sidecar:0.1.0".to_owned(),
        version: "0.1.0".to_owned(),
        ..InjectConfig::default()
    }
}

fn probe(path: &str, period: i64, failures: i64) -> Value {
    json!({
        "httpGet": {"path": path, "port": "sluice-admin", "scheme": "HTTP"},
        "periodSeconds": period, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": failures
    })
}

/// The default native sidecar, written out in full.
fn sidecar() -> Value {
    json!({
        "name": "sluice-sidecar",
        "image": "sluice/sluice-sidecar:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--listen=127.0.0.1:4000",
            "--admin-listen=0.0.0.0:4001",
            "--control-plane=https://sluice-operator.sluice-system.svc:8444",
            "--control-plane-ca=/var/run/secrets/sluice/ca.crt",
            "--token-file=/var/run/secrets/sluice/token",
            "--state-dir=/var/run/sluice",
            "--log-format=json"
        ],
        "ports": [{"name": "sluice-admin", "containerPort": 4001, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "restartPolicy": "Always",
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "startupProbe": probe("/healthz", 1, 60),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 5, 3),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "sluice-identity", "mountPath": "/var/run/secrets/sluice", "readOnly": true},
            {"name": "sluice-state", "mountPath": "/var/run/sluice"}
        ]
    })
}

fn identity_volume() -> Value {
    json!({
        "name": "sluice-identity",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"audience": "sluice", "expirationSeconds": 3600, "path": "token"}},
                {"configMap": {"name": "sluice-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}], "optional": false}}
            ]
        }
    })
}

fn state_volume() -> Value {
    json!({"name": "sluice-state", "emptyDir": {"sizeLimit": "64Mi"}})
}

fn base_urls(port: u16) -> [Value; 2] {
    [
        json!({"name": "OPENAI_BASE_URL", "value": format!("http://127.0.0.1:{port}/v1")}),
        json!({"name": "ANTHROPIC_BASE_URL", "value": format!("http://127.0.0.1:{port}")}),
    ]
}

fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

/// A pod in namespace `team-a` with one container `app`, then `extra` merged into it.
fn pod(extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bot", "namespace": "team-a"},
        "spec": {"containers": [{"name": "app", "image": "bot:1"}]}
    });
    json_patch::merge(&mut pod, &extra);
    pod
}

fn parse(pod: &Value) -> Pod {
    serde_json::from_value(pod.clone()).unwrap()
}

/// The patch must be `expected` exactly; applied, it must give a valid injected pod that a
/// second injection leaves alone and the drift check finds current.
fn check(name: &str, pod: Value, config: &InjectConfig, expected: Value) -> Pod {
    let patch = inject(&parse(&pod), config)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: nothing injected"));
    assert_eq!(serde_json::to_value(&patch).unwrap(), expected, "{name}");

    let mut patched = pod;
    json_patch::patch(&mut patched, &patch).unwrap_or_else(|e| panic!("{name}: the patch does not apply: {e}"));
    let injected = parse(&patched);
    assert_eq!(
        skip_reason(&injected, config).unwrap(),
        Some(Skip::AlreadyInjected),
        "{name}"
    );
    assert!(inject(&injected, config).unwrap().is_none(), "{name}: not idempotent");
    assert!(
        !is_outdated(&injected, config),
        "{name}: outdated right after injection"
    );
    injected
}

#[test]
fn a_pod_without_init_containers_volumes_or_annotations_gets_every_list_created() {
    check(
        "bare pod",
        pod(json!({})),
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([sidecar()])),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
}

#[test]
fn existing_lists_are_appended_to_and_the_sidecar_starts_before_the_pods_init_containers() {
    let pod = pod(json!({
        "metadata": {"labels": {"app": "bot"}, "annotations": {"team": "a"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "bot:1"}],
            "containers": [{"name": "app", "image": "bot:1", "env": [{"name": "LOG", "value": "debug"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }));
    let [openai, anthropic] = base_urls(4000);
    let injected = check(
        "existing lists",
        pod,
        &config(),
        json!([
            add("/spec/volumes/-", identity_volume()),
            add("/spec/volumes/-", state_volume()),
            add("/spec/initContainers/0", sidecar()),
            add("/spec/containers/0/env/-", openai),
            add("/spec/containers/0/env/-", anthropic),
            add("/metadata/labels/sluice.dev~1sidecar", json!("true")),
            add("/metadata/annotations/sluice.dev~1injected-version", json!("0.1.0")),
        ]),
    );
    let spec = injected.spec.unwrap();
    let init: Vec<_> = spec.init_containers.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(init, ["sluice-sidecar", "migrate"]);
}

#[test]
fn a_base_url_the_app_sets_itself_is_kept() {
    let pod = pod(json!({"spec": {"containers": [
        {"name": "app", "image": "bot:1", "env": [{"name": "OPENAI_BASE_URL", "value": "https://proxy.internal/v1"}]},
        {"name": "worker", "image": "bot:1"}
    ]}}));
    let [_, anthropic] = base_urls(4000);
    let injected = check(
        "own base url",
        pod,
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([sidecar()])),
            add("/spec/containers/0/env/-", anthropic),
            add("/spec/containers/1/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
    let app = &injected.spec.unwrap().containers[0];
    assert_eq!(
        app.env.as_ref().unwrap()[0].value.as_deref(),
        Some("https://proxy.internal/v1")
    );
}

#[test]
fn a_pod_with_its_own_termination_grace_gives_the_sidecar_that_grace_to_shut_down_in() {
    let mut sidecar = sidecar();
    sidecar["args"]
        .as_array_mut()
        .unwrap()
        .push(json!("--shutdown-grace=120s"));
    check(
        "long grace",
        pod(json!({"spec": {"terminationGracePeriodSeconds": 120}})),
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([sidecar])),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
    // Kubernetes' default grace is the sidecar's own: no flag, so pods injected before this
    // flag existed are not reported as drifted.
    check(
        "default grace",
        pod(json!({"spec": {"terminationGracePeriodSeconds": 30}})),
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([self::sidecar()])),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
}

#[test]
fn plain_mode_appends_a_regular_container_without_a_restart_policy() {
    let config = InjectConfig {
        mode: SidecarMode::Plain,
        ..config()
    };
    let mut plain = sidecar();
    plain.as_object_mut().unwrap().remove("restartPolicy");
    let injected = check(
        "plain",
        pod(json!({})),
        &config,
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/containers/-", plain),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
    let names: Vec<_> = injected.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
    // The app stays first, so `kubectl logs` and `exec` still default to it.
    assert_eq!(names, ["app", "sluice-sidecar"]);
}

#[test]
fn a_ca_from_a_secret_is_projected_from_the_secret() {
    let config = InjectConfig {
        ca: CaSource::Secret {
            name: "sluice-trust".to_owned(),
            key: "bundle.pem".to_owned(),
        },
        ..config()
    };
    let mut identity = identity_volume();
    identity["projected"]["sources"][1] = json!(
        {"secret": {"name": "sluice-trust", "items": [{"key": "bundle.pem", "path": "ca.crt"}], "optional": false}}
    );
    check(
        "secret ca",
        pod(json!({})),
        &config,
        json!([
            add("/spec/volumes", json!([identity, state_volume()])),
            add("/spec/initContainers", json!([sidecar()])),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations", json!({"sluice.dev/injected-version": "0.1.0"})),
        ]),
    );
}

#[test]
fn annotations_override_resources_and_ports_and_the_base_urls_follow_the_port() {
    let pod = pod(json!({"metadata": {"annotations": {
        "sluice.dev/sidecar-cpu": "200m",
        "sluice.dev/sidecar-cpu-limit": "1",
        "sluice.dev/sidecar-memory": "128Mi",
        "sluice.dev/sidecar-memory-limit": "512Mi",
        "sluice.dev/sidecar-port": "4100",
        "sluice.dev/sidecar-admin-port": "4101"
    }}}));
    let mut sidecar = sidecar();
    sidecar["args"][0] = json!("--listen=127.0.0.1:4100");
    sidecar["args"][1] = json!("--admin-listen=0.0.0.0:4101");
    sidecar["ports"][0]["containerPort"] = json!(4101);
    sidecar["resources"] =
        json!({"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}});
    let injected = check(
        "overrides",
        pod,
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([sidecar])),
            add("/spec/containers/0/env", json!(base_urls(4100))),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations/sluice.dev~1injected-version", json!("0.1.0")),
        ]),
    );
    // The drift check reads the same annotations: the overridden sidecar is current.
    assert!(!is_outdated(&injected, &config()));
}

#[test]
fn set_env_false_leaves_the_app_containers_alone() {
    let pod = pod(json!({"metadata": {"annotations": {"sluice.dev/sidecar-set-env": "false"}}}));
    check(
        "no env",
        pod,
        &config(),
        json!([
            add("/spec/volumes", json!([identity_volume(), state_volume()])),
            add("/spec/initContainers", json!([sidecar()])),
            add("/metadata/labels", json!({"sluice.dev/sidecar": "true"})),
            add("/metadata/annotations/sluice.dev~1injected-version", json!("0.1.0")),
        ]),
    );
}

#[test]
fn our_own_volume_left_from_an_earlier_injection_is_reused_and_a_stale_version_replaced() {
    // A pod spec copied from an injected pod with the sidecar deleted: the volume, label and
    // annotation are ours, the container is missing.
    let pod = pod(json!({
        "metadata": {"labels": {"sluice.dev/sidecar": "true"}, "annotations": {"sluice.dev/injected-version": "0.0.9"}},
        "spec": {"volumes": [state_volume()]}
    }));
    check(
        "leftovers",
        pod,
        &config(),
        json!([
            add("/spec/volumes/-", identity_volume()),
            add("/spec/initContainers", json!([sidecar()])),
            add("/spec/containers/0/env", json!(base_urls(4000))),
            {"op": "replace", "path": "/metadata/labels/sluice.dev~1sidecar", "value": "true"},
            {"op": "replace", "path": "/metadata/annotations/sluice.dev~1injected-version", "value": "0.1.0"},
        ]),
    );
}

#[test]
fn pods_left_alone_get_no_patch() {
    let injected = {
        let bare = pod(json!({}));
        let patch = inject(&parse(&bare), &config()).unwrap().unwrap();
        let mut patched = bare;
        json_patch::patch(&mut patched, &patch).unwrap();
        patched
    };
    let cases = [
        (
            "annotation false",
            pod(json!({"metadata": {"annotations": {"sluice.dev/inject": "false"}}})),
            Skip::OptedOut,
        ),
        (
            "label false",
            pod(json!({"metadata": {"labels": {"sluice.dev/inject": "false"}}})),
            Skip::OptedOut,
        ),
        (
            "false wins over true",
            pod(
                json!({"metadata": {"labels": {"sluice.dev/inject": "true"}, "annotations": {"sluice.dev/inject": "false"}}}),
            ),
            Skip::OptedOut,
        ),
        ("already injected", injected, Skip::AlreadyInjected),
        (
            "excluded namespace",
            pod(json!({"metadata": {"namespace": "kube-system"}})),
            Skip::ExcludedNamespace,
        ),
        (
            // An opted-out pod is left alone even when it breaks our rules.
            "opted out hostNetwork pod",
            pod(json!({"metadata": {"annotations": {"sluice.dev/inject": "false"}}, "spec": {"hostNetwork": true}})),
            Skip::OptedOut,
        ),
    ];
    for (name, pod, reason) in cases {
        let pod = parse(&pod);
        assert_eq!(skip_reason(&pod, &config()).unwrap(), Some(reason), "{name}");
        assert!(inject(&pod, &config()).unwrap().is_none(), "{name}");
    }
    // The opt-in annotation (and label) inject like the namespace label does.
    let opted_in = parse(&pod(
        json!({"metadata": {"labels": {"sluice.dev/inject": "true"}, "annotations": {"sluice.dev/inject": "true"}}}),
    ));
    assert!(inject(&opted_in, &config()).unwrap().is_some());
}

#[test]
fn pods_that_cannot_be_injected_are_refused_with_what_to_change() {
    let annotated = |key: &str, value: &str| pod(json!({"metadata": {"annotations": {key: value}}}));
    let cases = [
        (
            annotated("sluice.dev/inject", "yes"),
            r#"sluice.dev/inject must be "true" or "false", not "yes""#,
        ),
        (
            annotated("sluice.dev/sidecar-memory", "128m"),
            r#"annotation sluice.dev/sidecar-memory: "128m" is not a valid quantity: the suffix m means thousandths of a byte; write Mi (mebibytes) or M (megabytes)"#,
        ),
        (
            annotated("sluice.dev/sidecar-cpu", "fast"),
            r#"annotation sluice.dev/sidecar-cpu: "fast" is not a valid quantity: not a quantity: expected a number and a suffix, like 250m, 0.5 or 2"#,
        ),
        (
            annotated("sluice.dev/sidecar-cpus", "1"),
            "unknown annotation sluice.dev/sidecar-cpus; the sidecar overrides are sluice.dev/sidecar-cpu, \
             sluice.dev/sidecar-cpu-limit, sluice.dev/sidecar-memory, sluice.dev/sidecar-memory-limit, \
             sluice.dev/sidecar-port, sluice.dev/sidecar-admin-port, sluice.dev/sidecar-set-env",
        ),
        (
            annotated("sluice.dev/sidecar-port", "80"),
            r#"annotation sluice.dev/sidecar-port: "80" is not a port in 1024-65535"#,
        ),
        (
            annotated("sluice.dev/sidecar-admin-port", "70000"),
            r#"annotation sluice.dev/sidecar-admin-port: "70000" is not a port in 1024-65535"#,
        ),
        (
            annotated("sluice.dev/sidecar-port", "4001"),
            "the sidecar's API and admin ports are both 4001; set sluice.dev/sidecar-port or \
             sluice.dev/sidecar-admin-port to tell them apart",
        ),
        (
            annotated("sluice.dev/sidecar-set-env", "no"),
            r#"sluice.dev/sidecar-set-env must be "true" or "false", not "no""#,
        ),
        (
            annotated("sluice.dev/sidecar-memory", "1Gi"),
            "the sidecar's memory request 1Gi is above its limit 256Mi; set sluice.dev/sidecar-memory-limit too",
        ),
        (
            pod(
                json!({"spec": {"containers": [{"name": "app", "image": "bot:1", "ports": [{"containerPort": 4000}]}]}}),
            ),
            r#"container "app" declares port 4000, which the sidecar would listen on; set sluice.dev/sidecar-port to a free port"#,
        ),
        (
            pod(json!({"spec": {"volumes": [{"name": "sluice-state", "emptyDir": {"medium": "Memory"}}]}})),
            r#"the pod already has a volume named "sluice-state"; names starting with "sluice-" are reserved for the sidecar"#,
        ),
        (
            pod(json!({"spec": {"hostNetwork": true}})),
            r#"the pod uses hostNetwork, where the sidecar's 127.0.0.1 ports would be shared with the node; opt the pod out with the annotation sluice.dev/inject: "false""#,
        ),
        (
            pod(json!({"spec": {"os": {"name": "windows"}}})),
            r#"the pod runs on windows, and the sidecar is Linux-only; opt the pod out with the annotation sluice.dev/inject: "false""#,
        ),
    ];
    for (pod, message) in cases {
        let error = inject(&parse(&pod), &config()).unwrap_err();
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn the_opentelemetry_environment_reaches_the_sidecar_container_and_nothing_else_by_default() {
    let plain = super::sidecar::sidecar_container(&config(), &overrides::PodOverrides::default());
    assert_eq!(plain.env, None);
    let config = InjectConfig {
        env: vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            "http://collector:4317".to_owned(),
        )],
        ..config()
    };
    let container = super::sidecar::sidecar_container(&config, &overrides::PodOverrides::default());
    assert_eq!(
        serde_json::to_value(container.env).unwrap(),
        json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}])
    );
}
