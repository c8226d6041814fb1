//! Loading manifests from disk: what is read, how references resolve, what is refused.

use super::*;

#[test]
fn only_changes_to_manifests_or_mounted_data_cause_a_reload() {
    use notify::{
        Event, EventKind,
        event::{AccessKind, CreateKind, ModifyKind},
    };
    let event = |kind: EventKind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
    let modified = EventKind::Modify(ModifyKind::Any);
    assert!(concerns_manifests(&event(modified, "/m/route.yaml")));
    assert!(concerns_manifests(&event(modified, "/m/secret.yml")));
    // A mounted ConfigMap's atomic swap.
    let created = EventKind::Create(CreateKind::Any);
    assert!(concerns_manifests(&event(created, "/m/..data_tmp")));
    assert!(!concerns_manifests(&event(modified, "/m/sidecar.log")));
    assert!(!concerns_manifests(&event(modified, "/m/.route.yaml.swp")));
    let read = EventKind::Access(AccessKind::Any);
    assert!(!concerns_manifests(&event(read, "/m/route.yaml")));
}

#[test]
fn env_var_names_are_upper_snake() {
    assert_eq!(env_var_name("openai", "apiKey"), "OPENAI_API_KEY");
    assert_eq!(env_var_name("my-deepseek", "apiKey"), "MY_DEEPSEEK_API_KEY");
    assert_eq!(env_var_name("open.router", "token"), "OPEN_ROUTER_TOKEN");
    assert_eq!(env_var_name("gpt4o", "APIKey"), "GPT4O_APIKEY");
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

const ROUTE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat, namespace: team-a}
spec:
  models: [chat]
  backends:
  - {name: openai, provider: openai, model: gpt-4.1, credentialsRef: {name: openai, key: apiKey}}
"#;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-manifests-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn resolves_credentials_from_a_secret_document_before_the_environment() {
    let dir = temp_dir("secret");
    write(&dir, "route.yaml", ROUTE);
    write(
        &dir,
        "secret.yml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: openai, namespace: team-a}\nstringData: {apiKey: sk-from-secret}\n",
    );
    write(&dir, "notes.txt", "not yaml: [");
    let loaded = load(&dir, &|_| Some("sk-from-env".into())).unwrap();
    let key = &loaded.snapshot.routes[0].credentials[&sluice_crds::BackendName::try_from("openai").unwrap()];
    assert_eq!(key.expose(), "sk-from-secret");
    assert_eq!(loaded.files.len(), 2);
}

#[test]
fn falls_back_to_the_environment_and_names_it_when_missing() {
    let dir = temp_dir("env");
    write(&dir, "route.yaml", ROUTE);
    let loaded = load(&dir, &|name| (name == "OPENAI_API_KEY").then(|| "sk-env".into())).unwrap();
    assert_eq!(
        loaded.snapshot.routes[0].credentials.values().next().unwrap().expose(),
        "sk-env"
    );
    let err = load(&dir, &|_| None).unwrap_err().to_string();
    assert!(
        err.contains("spec.backends[0].credentialsRef") && err.contains("OPENAI_API_KEY"),
        "{err}"
    );
}

#[test]
fn refuses_the_same_route_defined_twice() {
    let dir = temp_dir("dup");
    write(&dir, "a.yaml", ROUTE);
    write(&dir, "b.yaml", ROUTE);
    let err = load(&dir, &|_| Some("k".into())).unwrap_err();
    assert!(matches!(err, LoadError::Duplicate { kind: "ModelRoute", .. }), "{err}");
}

#[test]
fn refuses_a_budget_ref_to_a_missing_budget() {
    let dir = temp_dir("budget");
    write(&dir, "route.yaml", &format!("{ROUTE}  budgetRef: {{name: nope}}\n"));
    let err = load(&dir, &|_| Some("k".into())).unwrap_err().to_string();
    assert!(err.contains("spec.budgetRef.name"), "{err}");
}

const HEADERS_ROUTE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat, namespace: team-a}
spec:
  models: [chat]
  backends:
  - name: proxied
    provider: openai-compatible
    model: llama
    baseUrl: http://127.0.0.1:9/v1
    headers:
    - {name: x-team, value: team-a}
    - {name: x-gateway-key, valueFrom: {name: gateway, key: token}}
"#;

#[test]
fn resolves_header_values_from_a_secret_or_the_environment_as_credentials_are() {
    let dir = temp_dir("headers");
    write(&dir, "route.yaml", HEADERS_ROUTE);
    let backend = sluice_crds::BackendName::try_from("proxied").unwrap();
    let loaded = load(&dir, &|name| {
        (name == "GATEWAY_TOKEN").then(|| " gw-from-env \n".into())
    })
    .unwrap();
    let values = &loaded.snapshot.routes[0].header_values[&backend];
    assert_eq!(values.len(), 1, "a written value stays in the spec");
    assert_eq!(values["x-gateway-key"].expose(), "gw-from-env");

    write(
        &dir,
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: gateway, namespace: team-a}\nstringData: {token: gw-from-secret}\n",
    );
    let loaded = load(&dir, &|_| Some("gw-from-env".into())).unwrap();
    assert_eq!(
        loaded.snapshot.routes[0].header_values[&backend]["x-gateway-key"].expose(),
        "gw-from-secret"
    );

    std::fs::remove_file(dir.join("secret.yaml")).unwrap();
    let err = load(&dir, &|_| None).unwrap_err().to_string();
    assert!(
        err.contains("spec.backends[0].headers[1].valueFrom") && err.contains("GATEWAY_TOKEN"),
        "{err}"
    );
}
