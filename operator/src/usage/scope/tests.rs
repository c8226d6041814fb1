#![allow(clippy::unwrap_used)]

use sluice_crds::{BackendName, MicroUsd, ModelName, ModelRoute, Outcome, Tokens, UsageDelta};

use super::*;

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn route(name: &str, yaml_spec: &str) -> Arc<AcceptedRoute> {
    let text = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: team-a}}\nspec:\n  models: [{name}]\n  backends: [{{name: sim, provider: simulator, model: sim-1}}]\n{yaml_spec}"
    );
    let r: ModelRoute = serde_saphyr::from_str(&text).unwrap();
    Arc::new(AcceptedRoute {
        key: key("team-a", name),
        generation: 1,
        spec: r.spec,
        credentials: BTreeMap::new(),
        header_values: Default::default(),
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

fn delta(ns: &str, route: &str) -> UsageDelta {
    UsageDelta {
        route: key(ns, route),
        backend: BackendName::try_from("sim").unwrap(),
        model: ModelName::try_from("sim-1").unwrap(),
        user: None,
        outcome: Outcome::Ok,
        requests: 1,
        input_tokens: Tokens(10),
        cached_input_tokens: Tokens(0),
        output_tokens: Tokens(5),
        cache_write_input_tokens: Tokens(0),
        cost: MicroUsd::new(20_000),
        failovers: 0,
        estimated: false,
    }
}

/// `bots` selects `app: bot` and spends Budget `shared`; `open` selects every pod; `other`
/// selects `app: other` and names no Budget.
fn routes() -> Vec<Arc<AcceptedRoute>> {
    vec![
        route(
            "bots",
            "  podSelector: {matchLabels: {app: bot}}\n  budgetRef: {name: shared}\n",
        ),
        route("open", ""),
        route("other", "  podSelector: {matchLabels: {app: other}}\n"),
    ]
}

fn check_as(labels: Option<&BTreeMap<String, String>>, sent: &[&str], deltas: &[UsageDelta]) -> Result<(), OutOfScope> {
    let routes = routes();
    let sent: BTreeSet<ObjectKey> = sent.iter().map(|r| key("team-a", r)).collect();
    check(
        &Scope {
            namespace: "team-a",
            pod: "pod-1",
            labels,
            sent: &sent,
            routes: &routes,
        },
        deltas.iter().map(|d| &d.route),
    )
}

#[test]
fn a_pod_reports_for_the_routes_that_select_it() {
    let bot = labels(&[("app", "bot")]);
    let deltas = [
        delta("team-a", "bots"),
        delta("team-a", "open"),
        delta("team-a", "bots"),
    ];
    assert_eq!(check_as(Some(&bot), &[], &deltas), Ok(()));
    assert_eq!(check_as(Some(&bot), &[], &[]), Ok(()));
}

#[test]
fn a_route_that_does_not_select_the_pod_refuses_the_whole_report_naming_route_and_budget() {
    let intruder = labels(&[("app", "intruder")]);
    let refused = check_as(
        Some(&intruder),
        &[],
        &[delta("team-a", "open"), delta("team-a", "bots")],
    );
    assert_eq!(
        refused,
        Err(OutOfScope::NotSelected {
            route: key("team-a", "bots"),
            pod: "pod-1".into(),
            budget: Some("shared".into()),
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "route team-a/bots does not select pod pod-1 and was never sent to it, so it may not spend from \
         Budget shared: a pod reports usage only for its own routes; the report is refused, nothing of it applied"
    );
    assert_eq!(
        check_as(Some(&intruder), &[], &[delta("team-a", "other")])
            .unwrap_err()
            .to_string(),
        "route team-a/other does not select pod pod-1 and was never sent to it: a pod reports usage only for \
         its own routes; the report is refused, nothing of it applied"
    );
}

#[test]
fn a_route_sent_to_the_pod_is_accepted_after_the_pod_was_relabelled_or_the_route_deleted() {
    let moved = labels(&[("app", "moved")]);
    assert_eq!(check_as(Some(&moved), &["bots"], &[delta("team-a", "bots")]), Ok(()));
    // Deleted since (no longer accepted), but it was sent: what was served is counted.
    assert_eq!(check_as(Some(&moved), &["gone"], &[delta("team-a", "gone")]), Ok(()));
    // Sent routes do not widen to others.
    assert!(matches!(
        check_as(Some(&moved), &["bots"], &[delta("team-a", "other")]),
        Err(OutOfScope::NotSelected { .. })
    ));
}

#[test]
fn an_unknown_route_another_namespace_or_unknown_labels_are_refused() {
    let bot = labels(&[("app", "bot")]);
    assert_eq!(
        check_as(Some(&bot), &[], &[delta("team-a", "made-up")]),
        Err(OutOfScope::UnknownRoute {
            route: key("team-a", "made-up"),
            pod: "pod-1".into(),
        })
    );
    let other_namespace = check_as(Some(&bot), &["bots"], &[delta("team-b", "bots")]);
    assert_eq!(
        other_namespace.unwrap_err().to_string(),
        "route team-b/bots is not in the pod's namespace team-a; the report is refused, nothing of it applied"
    );
    // A pod whose labels are unknown is selected by nothing, not even a route without selector.
    assert!(matches!(
        check_as(None, &[], &[delta("team-a", "open")]),
        Err(OutOfScope::NotSelected { budget: None, .. })
    ));
    assert_eq!(check_as(None, &["open"], &[delta("team-a", "open")]), Ok(()));
}
