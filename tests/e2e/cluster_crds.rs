//! The CRDs in `crds/` against a real kube-apiserver (see `tests/cluster/README.md`):
//! they install with `kubectl apply`, print their columns, document their fields,
//! accept the examples, and the API server itself rejects invalid resources with
//! the schema's and the CEL rules' messages.

use anyhow::{Context as _, Result, bail, ensure};
use kube::Api;
use kube::api::{Patch, PatchParams};
use sluice_crds::{Budget, BudgetSpec, ModelRoute, ModelRouteSpec};
use sluice_tests::cluster::{TestCluster, cluster, repo_root};

async fn with_crds(test: &str) -> Result<Option<TestCluster>> {
    let Some(c) = cluster(test).await? else {
        return Ok(None);
    };
    c.install_crds().await?;
    Ok(Some(c))
}

/// `kubectl get KIND NAME` in the test namespace: the header cells and the
/// row's cells, cut at the header's column starts (so an empty cell is "").
async fn table(c: &TestCluster, kind: &str, name: &str) -> Result<(Vec<String>, Vec<String>)> {
    let out = c.kubectl_ns(&["get", kind, name], None).await?.ok()?;
    let mut lines = out.lines();
    let header = lines.next().context("no header line")?;
    let row = lines.next().context("no row")?;
    // A column starts where a non-space follows two spaces (or at 0); "IN SYNC" has one.
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' ')))
        .collect();
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = starts.get(n + 1).copied().unwrap_or(line.len()).min(line.len());
                line.get(start.min(end)..end).unwrap_or_default().trim().to_owned()
            })
            .collect()
    };
    Ok((cut(header), cut(row)))
}

#[tokio::test]
async fn kubectl_apply_of_the_crds_directory_installs_both_crds() -> Result<()> {
    let Some(c) = cluster("kubectl_apply_crds").await? else {
        return Ok(());
    };
    // `kubectl apply -f crds/`, exactly as the README tells users (client-side,
    // so the CRDs also fit the last-applied annotation), then Established.
    let out = c.install_crds().await?;
    for crd in ["modelroutes.sluice.dev", "budgets.sluice.dev"] {
        ensure!(
            out.contains(&format!("customresourcedefinition.apiextensions.k8s.io/{crd}")),
            "kubectl apply did not mention {crd}:\n{out}"
        );
    }
    // Applying again changes nothing; server-side apply takes them as well.
    let dir = format!("{}/", repo_root().join("crds").display());
    let again = c.kubectl(&["apply", "-f", &dir], None).await?.ok()?;
    ensure!(
        again.lines().count() == 2 && again.lines().all(|l| l.ends_with(" unchanged")),
        "a second apply changed something:\n{again}"
    );
    let ssa = c
        .kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &dir], None)
        .await?
        .ok()?;
    ensure!(
        ssa.lines().count() == 2 && ssa.lines().all(|l| l.ends_with(" serverside-applied")),
        "server-side apply: {ssa}"
    );
    Ok(())
}

#[tokio::test]
async fn get_modelroutes_prints_models_strategy_ready_in_sync_and_cost() -> Result<()> {
    let Some(c) = with_crds("get_modelroutes_columns").await? else {
        return Ok(());
    };
    let route = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  models: [chat, gpt-4.1]
  strategy: weighted
  backends: [{name: rehearsal, provider: simulator, model: sim-1}]
"#;
    c.kubectl_ns(&["apply", "-f", "-"], Some(route)).await?.ok()?;
    let (header, row) = table(&c, "modelroutes", "chat").await?;
    ensure!(
        header == ["NAME", "MODELS", "STRATEGY", "READY", "IN SYNC", "COST", "AGE"],
        "header: {header:?}"
    );
    ensure!(
        row[..6] == ["chat", r#"["chat","gpt-4.1"]"#, "weighted", "", "", ""],
        "row: {row:?}"
    );

    // The status columns read what the operator writes.
    let status = r#"{"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Pushed", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "sidecars": {"desired": 3, "inSync": 2},
        "usage": {"requests": 10, "errors": 0, "failovers": 0, "cacheHits": 0,
                  "inputTokens": 100, "outputTokens": 50, "costUSD": "4.210000"}}}"#;
    c.kubectl_ns(
        &[
            "patch",
            "modelroute",
            "chat",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        None,
    )
    .await?
    .ok()?;
    let (_, row) = table(&c, "modelroutes", "chat").await?;
    ensure!(
        row[..6] == ["chat", r#"["chat","gpt-4.1"]"#, "weighted", "True", "2", "4.210000"],
        "row after status: {row:?}"
    );

    // Short name and category work too.
    let mr = c.kubectl_ns(&["get", "mr", "-o", "name"], None).await?.ok()?;
    ensure!(mr.trim() == "modelroute.sluice.dev/chat", "kubectl get mr: {mr}");
    Ok(())
}

#[tokio::test]
async fn get_budgets_prints_limit_spent_remaining_period_and_enforcement() -> Result<()> {
    let Some(c) = with_crds("get_budgets_columns").await? else {
        return Ok(());
    };
    let budget = r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {name: team-a-monthly}
spec: {limitUSD: "500.00", period: weekly, enforcement: soft}
"#;
    c.kubectl_ns(&["apply", "-f", "-"], Some(budget)).await?.ok()?;
    let (header, row) = table(&c, "budgets", "team-a-monthly").await?;
    ensure!(
        header == ["NAME", "LIMIT", "SPENT", "REMAINING", "PERIOD", "ENFORCEMENT", "AGE"],
        "header: {header:?}"
    );
    // Nothing spent or remaining until the operator writes a status.
    ensure!(
        row[..6] == ["team-a-monthly", "500.00", "", "", "weekly", "soft"],
        "row: {row:?}"
    );

    let status = r#"{"status": {"spentUSD": "123.456789", "remainingUSD": "376.543211"}}"#;
    c.kubectl_ns(
        &[
            "patch",
            "budget",
            "team-a-monthly",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        None,
    )
    .await?
    .ok()?;
    let (_, row) = table(&c, "budgets", "team-a-monthly").await?;
    ensure!(
        row[..6] == ["team-a-monthly", "500.00", "123.456789", "376.543211", "weekly", "soft"],
        "row after status: {row:?}"
    );

    // `kubectl get sluice` (the category) lists both kinds.
    let route = r#"{"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "metadata": {"name": "r"},
        "spec": {"models": ["m"], "backends": [{"name": "s", "provider": "simulator", "model": "m"}]}}"#;
    c.kubectl_ns(&["apply", "-f", "-"], Some(route)).await?.ok()?;
    let all = c.kubectl_ns(&["get", "sluice", "-o", "name"], None).await?.ok()?;
    let mut names: Vec<&str> = all.lines().collect();
    names.sort_unstable();
    ensure!(
        names == ["budget.sluice.dev/team-a-monthly", "modelroute.sluice.dev/r"],
        "kubectl get sluice: {all}"
    );
    Ok(())
}

/// One invalid resource: `spec` (YAML) and substrings the API server's refusal must contain.
struct Invalid {
    what: &'static str,
    spec: &'static str,
    expect: &'static [&'static str],
}

/// Submits each case with `kubectl create --dry-run=server` (full validation,
/// nothing stored) and collects every case that was accepted or refused for
/// another reason.
async fn expect_rejections(c: &TestCluster, kind: &str, cases: &[Invalid]) -> Result<()> {
    let mut failures = Vec::new();
    for case in cases {
        let doc = format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: invalid}}\n{}\n",
            if case.spec.is_empty() {
                String::new()
            } else {
                format!("spec: {}", case.spec)
            }
        );
        let out = c
            .kubectl_ns(&["create", "--dry-run=server", "-f", "-"], Some(&doc))
            .await?;
        if out.success {
            failures.push(format!(
                "{kind} with {}: accepted, expected a refusal\n{doc}",
                case.what
            ));
            continue;
        }
        let missing: Vec<_> = case.expect.iter().filter(|e| !out.stderr.contains(**e)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{kind} with {}: refused, but the message lacks {missing:?}:\n{}",
                case.what,
                out.stderr.trim()
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}

#[tokio::test]
async fn api_server_rejects_invalid_modelroutes_with_the_schema_and_cel_messages() -> Result<()> {
    let Some(c) = with_crds("invalid_modelroutes").await? else {
        return Ok(());
    };
    // The same spec with no fault is accepted: every refusal below is for its one fault.
    let valid = "{models: [chat], backends: [{name: sim, provider: simulator, model: m}]}";
    expect_accepted(&c, "ModelRoute", valid).await?;
    let priced = r#"{models: [chat], backends: [{name: sim, provider: simulator, model: m, pricing: {inputPerMTok: "3.00", outputPerMTok: "15.00", cachedInputPerMTok: "0.30", cacheWriteInputPerMTok: "3.75"}}]}"#;
    expect_accepted(&c, "ModelRoute", priced).await?;
    let clouds = "{models: [chat], backends: [\
        {name: az, provider: azure-openai, model: gpt-4o, baseUrl: 'https://r.openai.azure.com', azure: {deployment: prod, apiVersion: '2024-10-21'}, credentialsRef: {name: s, key: k}}, \
        {name: az-v1, provider: azure-openai, model: gpt-4o, baseUrl: 'https://r.openai.azure.com', azure: {auth: entra-id}}, \
        {name: br, provider: bedrock, model: 'anthropic.claude-sonnet-4-v1:0', bedrock: {region: us-east-1}}, \
        {name: vx, provider: vertex, model: 'claude-sonnet-4@20250514', vertex: {project: my-project, region: us-east5, publisher: anthropic}, \
         headers: [{name: x-team, value: a}, {name: x-gateway-key, valueFrom: {name: gw, key: token}}]}]}";
    expect_accepted(&c, "ModelRoute", clouds).await?;
    let cases = [
        Invalid {
            what: "duplicate backend names",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m}, {name: a, provider: simulator, model: m2}]}",
            expect: &["spec.backends", "backend names must be unique"],
        },
        Invalid {
            what: "a rule naming a backend the route lacks",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m}], rules: [{when: {hasTools: true}, backends: [b]}]}",
            expect: &["spec.rules", "every backend a rule names must be one of spec.backends"],
        },
        Invalid {
            what: "duplicate model names",
            spec: "{models: [chat, chat], backends: [{name: a, provider: simulator, model: m}]}",
            expect: &["spec.models", "model names must be unique"],
        },
        Invalid {
            what: "a negative price",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, pricing: {inputPerMTok: "-2.00", outputPerMTok: "8.00"}}]}"#,
            expect: &[
                "spec.backends[0].pricing.inputPerMTok",
                r"should match '^[0-9]+(\.[0-9]{1,6})?$'",
            ],
        },
        Invalid {
            what: "a negative cache-write price",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, pricing: {inputPerMTok: "3.00", outputPerMTok: "15.00", cacheWriteInputPerMTok: "-3.75"}}]}"#,
            expect: &[
                "spec.backends[0].pricing.cacheWriteInputPerMTok",
                r"should match '^[0-9]+(\.[0-9]{1,6})?$'",
            ],
        },
        Invalid {
            what: "a price with seven decimal places",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, pricing: {inputPerMTok: "2.00", outputPerMTok: "0.0000001"}}]}"#,
            expect: &["spec.backends[0].pricing.outputPerMTok", "should match"],
        },
        Invalid {
            what: "a price written as a number",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, pricing: {inputPerMTok: 2.5, outputPerMTok: "8.00"}}]}"#,
            expect: &["spec.backends[0].pricing.inputPerMTok", "must be of type string"],
        },
        Invalid {
            what: "pricing without an output price",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, pricing: {inputPerMTok: "2.00"}}]}"#,
            expect: &["spec.backends[0].pricing.outputPerMTok", "Required value"],
        },
        Invalid {
            what: "an unknown strategy",
            spec: "{models: [chat], strategy: random, backends: [{name: a, provider: simulator, model: m}]}",
            expect: &["spec.strategy", r#"Unsupported value: "random""#, r#""least-latency""#],
        },
        Invalid {
            what: "an unknown provider",
            spec: "{models: [chat], backends: [{name: a, provider: openrouter, model: m}]}",
            expect: &["spec.backends[0].provider", r#"Unsupported value: "openrouter""#],
        },
        Invalid {
            what: "no models",
            spec: "{backends: [{name: a, provider: simulator, model: m}]}",
            expect: &["spec.models", "Required value"],
        },
        Invalid {
            what: "an empty model list",
            spec: "{models: [], backends: [{name: a, provider: simulator, model: m}]}",
            expect: &["spec.models", "should have at least 1 items"],
        },
        Invalid {
            what: "no backends",
            spec: "{models: [chat]}",
            expect: &["spec.backends", "Required value"],
        },
        Invalid {
            what: "a backend without its upstream model",
            spec: "{models: [chat], backends: [{name: a, provider: simulator}]}",
            expect: &["spec.backends[0].model", "Required value"],
        },
        Invalid {
            what: "a backend name that is not a DNS label",
            spec: "{models: [chat], backends: [{name: OpenAI, provider: simulator, model: m}]}",
            expect: &["spec.backends[0].name", "should match"],
        },
        Invalid {
            what: "a negative weight",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m, weight: -1}]}",
            expect: &["spec.backends[0].weight", "should be greater than or equal to 0"],
        },
        Invalid {
            what: "a weight above 1000",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m, weight: 1001}]}",
            expect: &["spec.backends[0].weight", "should be less than or equal to 1000"],
        },
        Invalid {
            what: "a duration without a unit",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, timeouts: {connect: "30"}}]}"#,
            expect: &[
                "spec.backends[0].timeouts.connect",
                "should match '^([0-9]+(ms|s|m|h))+$'",
            ],
        },
        Invalid {
            what: "a fractional duration",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m}], retry: {backoff: {base: 1.5s}}}"#,
            expect: &["spec.retry.backoff.base", "should match"],
        },
        Invalid {
            what: "zero retry attempts",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m}], retry: {attempts: 0}}",
            expect: &["spec.retry.attempts", "should be greater than or equal to 1"],
        },
        Invalid {
            what: "an unknown retry condition",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m}], retry: {retryOn: [teapot]}}"#,
            expect: &["spec.retry.retryOn[0]", r#"Unsupported value: "teapot""#],
        },
        Invalid {
            what: "an openai-compatible backend without a baseUrl",
            spec: "{models: [chat], backends: [{name: a, provider: openai-compatible, model: m, credentialsRef: {name: s, key: k}}]}",
            expect: &["spec.backends[0]", "openai-compatible backends need a baseUrl"],
        },
        Invalid {
            what: "an openai backend without a credentialsRef",
            spec: "{models: [chat], backends: [{name: a, provider: openai, model: gpt-4.1}]}",
            expect: &[
                "spec.backends[0]",
                "openai, anthropic and gemini backends need a credentialsRef",
            ],
        },
        Invalid {
            what: "simulator settings on an anthropic backend",
            spec: "{models: [chat], backends: [{name: a, provider: anthropic, model: m, credentialsRef: {name: s, key: k}, simulator: {outputTokens: 5}}]}",
            expect: &[
                "spec.backends[0]",
                "simulator settings are only allowed with provider simulator",
            ],
        },
        Invalid {
            what: "a baseUrl that is not http(s)",
            spec: "{models: [chat], backends: [{name: a, provider: openai-compatible, model: m, baseUrl: 'ftp://example.test/v1'}]}",
            expect: &["spec.backends[0].baseUrl", "should match"],
        },
        Invalid {
            what: "a simulated error rate above 1",
            spec: r#"{models: [chat], backends: [{name: a, provider: simulator, model: m, simulator: {errorRate: "1.5"}}]}"#,
            expect: &["spec.backends[0].simulator.errorRate", "should match"],
        },
        Invalid {
            what: "a zero backend request limit",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m, limits: {requestsPerMinute: 0}}]}",
            expect: &[
                "spec.backends[0].limits.requestsPerMinute",
                "should be greater than or equal to 1",
            ],
        },
        Invalid {
            what: "a header rule whose name has a space",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m}], rules: [{when: {header: {name: 'x tier', value: p}}, backends: [a]}]}",
            expect: &["spec.rules[0].when.header.name", "should match"],
        },
        Invalid {
            what: "a cache size in an unknown unit",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m}], cache: {maxBytes: 64MB}}",
            expect: &["spec.cache.maxBytes", "should match"],
        },
        Invalid {
            what: "an azure-openai backend without a baseUrl",
            spec: "{models: [chat], backends: [{name: a, provider: azure-openai, model: m, credentialsRef: {name: s, key: k}}]}",
            expect: &["spec.backends[0]", "azure-openai backends need a baseUrl"],
        },
        Invalid {
            what: "an azure-openai backend with the default api-key auth and no key",
            spec: "{models: [chat], backends: [{name: a, provider: azure-openai, model: m, baseUrl: 'https://r.openai.azure.com'}]}",
            expect: &[
                "spec.backends[0]",
                "azure-openai backends need a credentialsRef unless azure.auth is entra-id",
            ],
        },
        Invalid {
            what: "an azure deployment without an api version",
            spec: "{models: [chat], backends: [{name: a, provider: azure-openai, model: m, baseUrl: 'https://r.openai.azure.com', azure: {deployment: d, auth: entra-id}}]}",
            expect: &["spec.backends[0]", "azure.deployment needs azure.apiVersion"],
        },
        Invalid {
            what: "a bedrock backend without its settings",
            spec: "{models: [chat], backends: [{name: a, provider: bedrock, model: m}]}",
            expect: &["spec.backends[0]", "provider bedrock needs bedrock settings"],
        },
        Invalid {
            what: "a bedrock region that is no region",
            spec: "{models: [chat], backends: [{name: a, provider: bedrock, model: m, bedrock: {region: 'US East'}}]}",
            expect: &["spec.backends[0].bedrock.region", "should match"],
        },
        Invalid {
            what: "vertex settings on an openai backend",
            spec: "{models: [chat], backends: [{name: a, provider: openai, model: m, credentialsRef: {name: s, key: k}, vertex: {project: my-project, region: us-east5}}]}",
            expect: &[
                "spec.backends[0]",
                "provider vertex needs vertex settings, and only it may have them",
            ],
        },
        Invalid {
            what: "a header with both a value and a Secret",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m, headers: [{name: x-k, value: v, valueFrom: {name: s, key: k}}]}]}",
            expect: &["spec.backends[0].headers[0]", "set exactly one of value and valueFrom"],
        },
        Invalid {
            what: "a misspelled field (strict field validation)",
            spec: "{models: [chat], backends: [{name: a, provider: simulator, model: m, wieght: 2}]}",
            expect: &[r#"unknown field "spec.backends[0].wieght""#],
        },
    ];
    expect_rejections(&c, "ModelRoute", &cases).await
}

#[tokio::test]
async fn api_server_rejects_invalid_budgets_with_the_schema_and_cel_messages() -> Result<()> {
    let Some(c) = with_crds("invalid_budgets").await? else {
        return Ok(());
    };
    expect_accepted(
        &c,
        "Budget",
        r#"{limitUSD: "500.00", enforcement: downgrade, downgradeTo: [deepseek]}"#,
    )
    .await?;
    let cases = [
        Invalid {
            what: "enforcement downgrade without downgradeTo",
            spec: r#"{limitUSD: "500.00", enforcement: downgrade}"#,
            expect: &[
                "spec.downgradeTo",
                "enforcement downgrade needs at least one backend in downgradeTo",
            ],
        },
        Invalid {
            what: "enforcement downgrade with an empty downgradeTo",
            spec: r#"{limitUSD: "500.00", enforcement: downgrade, downgradeTo: []}"#,
            expect: &[
                "spec.downgradeTo",
                "enforcement downgrade needs at least one backend in downgradeTo",
            ],
        },
        Invalid {
            what: "duplicate alert thresholds",
            spec: r#"{limitUSD: "500.00", alertThresholds: [50, 80, 50]}"#,
            expect: &["spec.alertThresholds", "alert thresholds must be unique"],
        },
        Invalid {
            what: "a zero alert threshold",
            spec: r#"{limitUSD: "500.00", alertThresholds: [0]}"#,
            expect: &["spec.alertThresholds[0]", "should be greater than or equal to 1"],
        },
        Invalid {
            what: "more than 16 alert thresholds",
            spec: r#"{limitUSD: "500.00", alertThresholds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}"#,
            expect: &["spec.alertThresholds", "must have at most 16 items"],
        },
        Invalid {
            what: "a negative limit",
            spec: r#"{limitUSD: "-5.00"}"#,
            expect: &["spec.limitUSD", r"should match '^[0-9]+(\.[0-9]{1,6})?$'"],
        },
        Invalid {
            what: "a limit in cents notation",
            spec: r#"{limitUSD: "5,00"}"#,
            expect: &["spec.limitUSD", "should match"],
        },
        Invalid {
            what: "a limit written as a number",
            spec: "{limitUSD: 500}",
            expect: &["spec.limitUSD", "must be of type string"],
        },
        Invalid {
            what: "no limit",
            spec: "{period: monthly}",
            expect: &["spec.limitUSD", "Required value"],
        },
        Invalid {
            what: "no spec at all",
            spec: "",
            expect: &["spec", "Required value"],
        },
        Invalid {
            what: "an unknown period",
            spec: r#"{limitUSD: "500.00", period: yearly}"#,
            expect: &["spec.period", r#"Unsupported value: "yearly""#, r#""monthly""#],
        },
        Invalid {
            what: "an unknown enforcement",
            spec: r#"{limitUSD: "500.00", enforcement: strict}"#,
            expect: &["spec.enforcement", r#"Unsupported value: "strict""#],
        },
        Invalid {
            what: "an empty time zone",
            spec: r#"{limitUSD: "500.00", timeZone: ""}"#,
            expect: &["spec.timeZone", "should be at least 1 chars long"],
        },
        Invalid {
            what: "a downgrade backend name that is not a DNS label",
            spec: r#"{limitUSD: "500.00", enforcement: downgrade, downgradeTo: [Deep_Seek]}"#,
            expect: &["spec.downgradeTo[0]", "should match"],
        },
    ];
    expect_rejections(&c, "Budget", &cases).await
}

async fn expect_accepted(c: &TestCluster, kind: &str, spec: &str) -> Result<()> {
    let doc = format!("apiVersion: sluice.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: valid}}\nspec: {spec}\n");
    c.kubectl_ns(&["create", "--dry-run=server", "-f", "-"], Some(&doc))
        .await?
        .ok()
        .with_context(|| format!("the valid {kind} baseline was refused:\n{doc}"))?;
    Ok(())
}

/// Every manifest under `examples/quickstart/`, as JSON values.
fn quickstart_objects() -> Result<Vec<serde_json::Value>> {
    let dir = repo_root().join("examples/quickstart");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("parsing {}", file.display()))?;
        objects.extend(docs.into_iter().filter(|d| !d.is_null()));
    }
    Ok(objects)
}

#[tokio::test]
async fn quickstart_example_is_accepted_by_the_api_server() -> Result<()> {
    let Some(c) = with_crds("quickstart_example").await? else {
        return Ok(());
    };
    // First exactly what a user runs, kubectl reading the YAML itself (YAML 1.1:
    // a bare `on:` key reads as `true`). Dry run: the files name namespace `default`.
    let dir = format!("{}/", repo_root().join("examples/quickstart").display());
    c.kubectl(&["apply", "--dry-run=server", "-f", &dir], None)
        .await?
        .ok()
        .context("kubectl apply --dry-run=server -f examples/quickstart/")?;
    // Then for real, in the test's namespace.
    let objects = quickstart_objects()?;
    let mut routes = Vec::new();
    for mut object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "Namespace" {
            continue; // the test's own namespace stands in for it
        }
        if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("namespace");
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if kind == "ModelRoute" {
            routes.push(name.clone());
        }
        let json = serde_json::to_string(&object)?;
        c.kubectl_ns(&["apply", "-f", "-"], Some(&json))
            .await?
            .ok()
            .with_context(|| format!("examples/quickstart: {kind} {name} was refused"))?;
    }
    ensure!(!routes.is_empty(), "examples/quickstart/ holds no ModelRoute");
    // Stored as applied, and readable as the Rust type the operator uses.
    let api: Api<ModelRoute> = Api::namespaced(c.client.clone(), &c.namespace);
    for name in &routes {
        let route = api
            .get(name)
            .await
            .with_context(|| format!("reading back ModelRoute {name}"))?;
        ensure!(!route.spec.backends.is_empty(), "{name} has no backends");
    }
    Ok(())
}

#[tokio::test]
async fn kubectl_explain_shows_the_backend_field_docs() -> Result<()> {
    let Some(c) = with_crds("kubectl_explain").await? else {
        return Ok(());
    };
    // The OpenAPI document catches up with a new CRD a moment after it is Established.
    let mut last = String::new();
    for _ in 0..120 {
        let out = c.kubectl(&["explain", "modelroute.spec.backends"], None).await?;
        if out.success && out.stdout.contains("FIELDS:") {
            last = out.stdout;
            break;
        }
        last = format!("{}{}", out.stdout, out.stderr);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for expected in [
        "KIND:       ModelRoute",
        "FIELD: backends <[]Object>",
        "The upstreams that can serve this route.",
        "provider\t<string> -required-",
        "Which wire protocol the upstream speaks.",
        "credentialsRef\t<Object>",
        "The Secret key that holds the API key.",
        "pricing\t<Object>",
        "Relative share for the weighted strategy.",
    ] {
        ensure!(last.contains(expected), "kubectl explain lacks {expected:?}:\n{last}");
    }
    let provider = c
        .kubectl(&["explain", "modelroute.spec.backends.provider"], None)
        .await?
        .ok()?;
    for value in ["openai", "anthropic", "gemini", "openai-compatible", "simulator"] {
        ensure!(
            provider.lines().any(|l| l.trim() == value),
            "kubectl explain provider lacks enum value {value}:\n{provider}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn server_side_defaults_mean_what_the_rust_defaults_mean() -> Result<()> {
    let Some(c) = with_crds("server_defaults").await? else {
        return Ok(());
    };
    // Minimal objects: the server fills in schema defaults; the Rust types fill
    // in serde defaults. Both readings must be the same resource.
    let route = serde_json::json!({
        "models": ["chat"],
        "backends": [{"name": "sim", "provider": "simulator", "model": "sim-1", "simulator": {}}],
        "rules": [{"backends": ["sim"]}],
        "cache": {}
    });
    let budget = serde_json::json!({"limitUSD": "10"});
    for (kind, spec) in [("ModelRoute", &route), ("Budget", &budget)] {
        let doc = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": kind, "metadata": {"name": "minimal"}, "spec": spec
        });
        c.kubectl_ns(&["create", "-f", "-"], Some(&doc.to_string()))
            .await?
            .ok()?;
    }
    let stored = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace)
        .get("minimal")
        .await?;
    let local: ModelRouteSpec = serde_json::from_value(route)?;
    ensure!(
        stored.spec == local,
        "ModelRoute defaults differ:\nserver: {:#?}\nrust:   {local:#?}",
        stored.spec
    );
    let stored = Api::<Budget>::namespaced(c.client.clone(), &c.namespace)
        .get("minimal")
        .await?;
    let local: BudgetSpec = serde_json::from_value(budget)?;
    ensure!(
        stored.spec == local,
        "Budget defaults differ:\nserver: {:#?}\nrust:   {local:#?}",
        stored.spec
    );
    Ok(())
}

#[tokio::test]
async fn the_design_example_route_serialized_by_the_rust_types_is_accepted() -> Result<()> {
    let Some(c) = with_crds("design_example").await? else {
        return Ok(());
    };
    // DESIGN.md §3's ModelRoute, as written there.
    let yaml = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  models: [chat, gpt-4.1]
  podSelector: {matchLabels: {app: support-bot}}
  strategy: priority
  backends:
  - name: openai
    provider: openai
    baseUrl: https://api.openai.com/v1
    model: gpt-4.1
    credentialsRef: {name: openai, key: apiKey}
    weight: 3
    priority: 0
    pricing: {inputPerMTok: "2.00", outputPerMTok: "8.00", cachedInputPerMTok: "0.50"}
    limits: {requestsPerMinute: 500, tokensPerMinute: 200000, maxConcurrency: 64}
    timeouts: {connect: 2s, firstByte: 30s, total: 120s}
  - name: deepseek
    provider: openai-compatible
    baseUrl: https://api.deepseek.com/v1
    model: deepseek-chat
    credentialsRef: {name: deepseek, key: apiKey}
    pricing: {inputPerMTok: "0.10", outputPerMTok: "0.42"}
  - name: rehearsal
    provider: simulator
    model: sim-1
    simulator: {timeToFirstToken: 80ms, perToken: 5ms, outputTokens: 64, errorRate: "0.0", seed: 7}
  rules:
  - when: {maxPromptTokens: 2000, anyKeyword: [translate, summarize]}
    backends: [deepseek]
  - when: {header: {name: x-sluice-tier, value: premium}}
    backends: [openai]
  retry: {attempts: 3, backoff: {base: 200ms, max: 10s}, retryOn: [connect-error, timeout, "429", "5xx"]}
  circuitBreaker: {consecutiveFailures: 5, openFor: 60s}
  rateLimit: {requestsPerMinute: 1000, tokensPerMinute: 500000}
  perUser: {requestsPerMinute: 60, tokensPerMinute: 40000, requestsPerDay: 5000}
  cache: {ttl: 10m, maxBytes: 64Mi}
  budgetRef: {name: team-a-monthly}
"#;
    // The Rust types read it, the kube client writes what they serialize, and
    // the API server accepts that as is (strict field validation on).
    let route: ModelRoute = serde_saphyr::from_str(yaml).context("the Rust types refuse the example")?;
    let api: Api<ModelRoute> = Api::namespaced(c.client.clone(), &c.namespace);
    let pp = PatchParams::apply("sluice-tests").validation_strict();
    let created = api
        .patch("chat", &pp, &Patch::Apply(&route))
        .await
        .context("the API server refused the serialized example")?;
    ensure!(
        created.spec == route.spec,
        "the stored route differs:\n{:#?}\nvs\n{:#?}",
        created.spec,
        route.spec
    );
    // And kubectl accepts the YAML text itself.
    let text = yaml.replace("name: chat}", "name: chat-kubectl}");
    c.kubectl_ns(&["create", "-f", "-"], Some(&text)).await?.ok()?;
    Ok(())
}
