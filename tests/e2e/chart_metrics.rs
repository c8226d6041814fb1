//! The chart's Grafana dashboard and PrometheusRule ask only for metrics the binaries export:
//! the sidecar's names are scraped from the real sidecar after some traffic (a failover, a
//! stream, a budget), the operator's are read from its registry. A panel or an alert on a
//! name that does not exist would show nothing and fire never; this is where it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;
use sluice_tests::cluster::repo_root;
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{Upstream, Wire};

/// The sample names an exposition has: every `# TYPE` line's family expanded the way the text
/// format writes its samples (a counter gets `_total`, a histogram `_bucket`, `_sum`, `_count`),
/// so that a family with no sample yet (no budget spent, no circuit open) still counts.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// PromQL's binary and aggregation operators: written like names, never metrics.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression reads: what is left once label matchers, grouping
/// clauses, ranges, strings, numbers, functions and operators are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth_brace = 0usize;
    let mut depth_bracket = 0usize;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' if depth_brace == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace = depth_brace.saturating_sub(1),
            '[' => depth_bracket += 1,
            ']' => depth_bracket = depth_bracket.saturating_sub(1),
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => text.push(c),
        }
        if matches!(c, '{' | '[') {
            text.push(' ');
        }
    }
    // `by (a, b)`, `without (…)`, `on (…)`, `ignoring (…)`, `group_left (…)` name labels.
    let grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let tokens: Vec<String> = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '(' || c == ')' || c == '$'))
        .flat_map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let next = tokens.get(i + 1).map(String::as_str);
        if grouping.contains(&token.as_str()) && next == Some("(") {
            // Skip to the closing parenthesis.
            while i < tokens.len() && tokens[i] != ")" {
                i += 1;
            }
        } else if next != Some("(")
            && token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !KEYWORDS.contains(&token.as_str())
        {
            names.insert(token.clone());
        }
        i += 1;
    }
    names
}

/// Every `expr` of the shipped dashboard.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("charts/sluice/dashboards/sluice.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                stack.extend(map.into_values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    exprs
}

/// Every alert expression of the PrometheusRule template, its template actions (thresholds)
/// replaced by a number.
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("charts/sluice/templates/prometheusrule.yaml")).unwrap();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| {
            let mut out = String::new();
            let mut rest = expr;
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                out.push('1');
                rest = rest[start..].split_once("}}").map_or("", |(_, after)| after);
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// The real sidecar's `/metrics` after a failover, a stream and a budgeted request.
async fn sidecar_exposition() -> String {
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let url = upstream.base_url();
    let backend = |name: &str, model: &str, priority: u32| {
        json!({"name": name, "provider": "openai-compatible", "baseUrl": url, "model": model, "priority": priority,
            "pricing": {"inputPerMTok": "1", "outputPerMTok": "2"}})
    };
    let docs = [
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget", "metadata": {"name": "team", "namespace": "default"},
            "spec": {"limitUSD": "10.00", "period": "monthly", "enforcement": "hard"}}),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "metadata": {"name": "chat", "namespace": "default"},
            "spec": {"models": ["chat"], "budgetRef": {"name": "team"},
                "backends": [backend("primary", "mock-500", 0), backend("secondary", "mock-ok", 1)]}}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<String> = docs.iter().map(|d| serde_json::to_string_pretty(d).unwrap()).collect();
    std::fs::write(dir.path().join("routes.yaml"), text.join("\n---\n")).unwrap();
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = reqwest::Client::new();
    for stream in [false, true] {
        let body = json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let response = client
            .post(sidecar.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    let metrics = client.get(sidecar.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    metrics.text().await.unwrap()
}

fn assert_all_exported(what: &str, exprs: &[String], exported: &BTreeSet<String>) {
    assert!(!exprs.is_empty(), "{what}: no expressions found");
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in {expr:?}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{what}: {name} (in {expr:?}) is exported by neither binary; they export {exported:?}"
            );
        }
    }
}

#[test]
fn metric_names_are_read_from_promql_without_labels_functions_or_ranges() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(gen_ai_client_operation_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval]))) > 0 and on() up == 1"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "gen_ai_client_operation_duration_seconds_bucket".to_owned(),
            "up".to_owned()
        ])
    );
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_ask_only_for_metrics_the_sidecar_and_the_operator_export() {
    let mut names = exported(&sidecar_exposition().await);
    // A family is written once it has a series: give each of the operator's one.
    let operator = sluice_operator::metrics::Metrics::default();
    operator.reconciled("modelroute");
    operator.reconcile_failed("modelroute");
    for result in ["applied", "failed"] {
        operator
            .usage_reports
            .get_or_create(&sluice_operator::metrics::ReportLabels {
                result: result.to_owned(),
            })
            .inc();
    }
    let operator = operator.encode().unwrap();
    names.extend(exported(&operator));
    for must in [
        "sluice_requests_total",
        "sluice_circuit_open",
        "sluice_operator_snapshot_pushes_total",
        "sluice_operator_oldest_unacked_push_seconds",
    ] {
        assert!(names.contains(must), "{must} missing from {names:?}");
    }
    assert_all_exported("dashboard", &dashboard_exprs(), &names);
    assert_all_exported("PrometheusRule", &rule_exprs(), &names);
}
