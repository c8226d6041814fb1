#![allow(clippy::unwrap_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use sluice_crds::{LocalRef, ModelRoute};

use super::*;

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn route(ns: &str, name: &str, yaml_spec: &str) -> AcceptedRoute {
    let text = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{yaml_spec}"
    );
    let r: ModelRoute = serde_saphyr::from_str(&text).unwrap();
    AcceptedRoute {
        key: key(ns, name),
        generation: 1,
        spec: r.spec,
        credentials: BTreeMap::new(),
        header_values: Default::default(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

const SIM: &str = "  backends: [{name: sim, provider: simulator, model: sim-1}]\n";

#[test]
fn selectors_match_labels_and_expressions() {
    let pod = labels(&[("app", "bot"), ("tier", "gold")]);
    assert!(selects(None, &pod));
    let mut s = LabelSelector {
        match_labels: Some([("app".to_owned(), "bot".to_owned())].into()),
        ..Default::default()
    };
    assert!(selects(Some(&s), &pod));
    s.match_expressions = Some(vec![LabelSelectorRequirement {
        key: "tier".into(),
        operator: "In".into(),
        values: Some(vec!["silver".into()]),
    }]);
    assert!(!selects(Some(&s), &pod));
    s.match_expressions = Some(vec![LabelSelectorRequirement {
        key: "canary".into(),
        operator: "DoesNotExist".into(),
        values: None,
    }]);
    assert!(selects(Some(&s), &pod));
}

#[test]
fn a_pod_gets_only_its_namespaces_routes_that_select_it_with_their_budget_and_share() {
    let mut chat = route(
        "team-a",
        "chat",
        &format!(
            "  models: [chat]\n  podSelector: {{matchLabels: {{app: bot}}}}\n  rateLimit: {{requestsPerMinute: 100}}\n{SIM}"
        ),
    );
    chat.spec.budget_ref = Some(LocalRef { name: "monthly".into() });
    chat.credentials
        .insert(BackendName::try_from("sim").unwrap(), ApiKey::new("sk-a"));
    let other_app = route(
        "team-a",
        "batch",
        &format!("  models: [batch]\n  podSelector: {{matchLabels: {{app: batch}}}}\n{SIM}"),
    );
    let everyone = route("team-a", "embed", &format!("  models: [embed]\n{SIM}"));
    let other_ns = route("team-b", "chat", &format!("  models: [chat-b]\n{SIM}"));
    let routes = [&chat, &other_app, &everyone, &other_ns];
    let budget: BudgetSpec = serde_json::from_value(serde_json::json!({"limitUSD": "10"})).unwrap();
    let budgets = BTreeMap::from([(key("team-a", "monthly"), budget.clone())]);
    let pod_labels = labels(&[("app", "bot")]);
    let (snapshot, conflicts) = snapshot_for(&PodInputs {
        namespace: "team-a",
        labels: &pod_labels,
        routes: &routes,
        budgets: &budgets,
        allowance: &|_| Grant {
            allowance: MicroUsd::new(2_500_000),
            period_start: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            exhausted: false,
        },
        share: &|k| LimitShare {
            requests_per_minute: (k.name == "chat").then_some(50),
            tokens_per_minute: None,
        },
    });
    assert!(conflicts.is_empty());
    let names: Vec<String> = snapshot.routes.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(names, ["team-a/chat", "team-a/embed"]);
    assert_eq!(snapshot.routes[0].credentials.values().next().unwrap().expose(), "sk-a");
    assert_eq!(snapshot.routes[0].share.requests_per_minute, Some(50));
    assert_eq!(snapshot.routes[1].share, LimitShare::default());
    assert_eq!(
        snapshot.budgets,
        vec![BudgetConfig {
            key: key("team-a", "monthly"),
            spec: budget,
            allowance: MicroUsd::new(2_500_000),
            allowance_period_start: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            exhausted: false,
        }]
    );
    // The same inputs give the same version; a new allowance gives a new one.
    let again = ConfigSnapshot::new(snapshot.routes.clone(), snapshot.budgets.clone());
    assert_eq!(again.version, snapshot.version);
}

#[test]
fn a_model_claimed_twice_keeps_the_first_route_by_name() {
    let a = route("ns", "a", &format!("  models: [chat]\n{SIM}"));
    let b = route("ns", "b", &format!("  models: [chat, other]\n{SIM}"));
    let (snapshot, conflicts) = snapshot_for(&PodInputs {
        namespace: "ns",
        labels: &BTreeMap::new(),
        routes: &[&b, &a],
        budgets: &BTreeMap::new(),
        allowance: &|_| Grant::default(),
        share: &|_| LimitShare::default(),
    });
    assert_eq!(snapshot.routes.len(), 1);
    assert_eq!(snapshot.routes[0].key, key("ns", "a"));
    assert_eq!(conflicts, vec![key("ns", "b")]);
}
