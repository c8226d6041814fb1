//! What keeps one pod's keys its own (issue 10): the API listener stays on loopback unless
//! told otherwise, the admin listener shows `/config` and `/budgets` to its own pod only while
//! anyone may probe and scrape it (issue 18), and no output of a full cluster run — logs at debug level, admin endpoints,
//! metrics, resource status, events, the usage ledger, the answers clients get — holds an
//! API key, before or after the key is rotated — not even when an upstream quotes the key back
//! in its error.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::json;
use sluice_tests::addresses::listener;
use sluice_tests::cluster::cluster;
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, Process, TestPod, eventually};
use sluice_tests::sidecar::sidecar_binary;
use sluice_tests::upstream::bedrock::auth::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use sluice_tests::upstream::vertex::service_account_key;
use sluice_tests::upstream::{Upstream, Wire};

const WITHIN: Duration = Duration::from_secs(60);

fn local_manifest(dir: &std::path::Path) -> Result<()> {
    std::fs::write(
        dir.join("route.yaml"),
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: chat, namespace: team}\n\
         spec:\n  models: [chat]\n  backends:\n  - {name: up, provider: openai-compatible, \
         baseUrl: \"http://127.0.0.1:9/v1\", model: m}\n",
    )?;
    Ok(())
}

/// The sidecar with `--listen listen` and `extra`; its stdin/stdout/stderr piped.
fn sidecar_command(listen: &str, admin: &str, dir: &std::path::Path, extra: &[&str]) -> Result<Command> {
    let mut command = Command::new(sidecar_binary()?);
    command
        .args(["--listen", listen, "--admin-listen", admin, "--manifests"])
        .arg(dir)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .env_remove("SLUICE_ALLOW_NON_LOOPBACK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(command)
}

#[tokio::test]
async fn the_api_listener_refuses_a_non_loopback_address_unless_explicitly_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    local_manifest(dir.path())?;
    let everywhere = "0.0.0.0:0";

    let refused = sidecar_command(everywhere, "127.0.0.1:0", dir.path(), &[])?.output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(!refused.status.success(), "it started on {everywhere}: {stderr}");
    ensure!(
        stderr.contains("not a loopback address") && stderr.contains("--allow-non-loopback"),
        "the refusal does not say why or what to pass: {stderr}"
    );

    let address_file = dir.path().join("addresses.json");
    let file = address_file.to_string_lossy();
    let command = sidecar_command(
        everywhere,
        "127.0.0.1:0",
        dir.path(),
        &["--allow-non-loopback", "--address-file", &file],
    )?;
    // Its report comes once both listeners are bound, after the manifests are loaded.
    let (mut allowed, reported) = Process::spawn_reporting("sidecar on 0.0.0.0", command, &address_file).await?;
    let bound = listener(&reported, "listen")?;
    ensure!(bound.ip().is_unspecified(), "it bound {bound}, not {everywhere}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let served = http
        .get(format!("http://127.0.0.1:{}/v1/models", bound.port()))
        .send()
        .await?
        .text()
        .await?;
    allowed.kill()?;
    ensure!(served.contains("\"chat\""), "{served}");
    Ok(())
}

/// An address of this machine that is not loopback: the source address the kernel picks for a
/// route off the machine (connecting a UDP socket only picks the route; nothing is sent).
/// Connections to it stay on the machine but come from a non-loopback peer, as another pod's do.
/// Fails, never skips, on a machine that has none.
fn non_loopback_address() -> Result<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // TEST-NET-3 (RFC 5737): routed like any address off the machine, never a real host.
    socket.connect("203.0.113.1:9").context(
        "this machine has no route off loopback, so no non-loopback address to reach the admin listener from; \
         the test needs one (an interface with an address and a default route)",
    )?;
    let ip = socket.local_addr()?.ip();
    ensure!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "the route off the machine leaves from {ip}, which is no non-loopback address"
    );
    Ok(ip)
}

/// The status and body of `GET http://{at}{path}`.
async fn status_and_body(http: &reqwest::Client, at: SocketAddr, path: &str) -> Result<(u16, String)> {
    let url = format!("http://{at}{path}");
    let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn the_admin_listener_shows_config_and_budgets_to_loopback_only_and_probes_and_metrics_to_anyone() -> Result<()> {
    let outside = non_loopback_address()?;
    let dir = tempfile::tempdir()?;
    local_manifest(dir.path())?;
    let address_file = dir.path().join("addresses.json");
    let file = address_file.to_string_lossy();
    // Bound as an injected sidecar binds it: every address, for the kubelet and Prometheus.
    let command = sidecar_command("127.0.0.1:0", "0.0.0.0:0", dir.path(), &["--address-file", &file])?;
    let (mut sidecar, reported) = Process::spawn_reporting("sidecar, admin on 0.0.0.0", command, &address_file).await?;
    let admin = listener(&reported, "admin-listen")?;
    ensure!(
        admin.ip().is_unspecified(),
        "the admin listener bound {admin}, not 0.0.0.0"
    );
    let (loopback, from_outside) = (
        SocketAddr::new([127, 0, 0, 1].into(), admin.port()),
        SocketAddr::new(outside, admin.port()),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;

    // The pod itself reads everything (the manifests are loaded before the listeners bind).
    for path in ["/healthz", "/readyz", "/metrics", "/config", "/budgets"] {
        let (status, body) = status_and_body(&http, loopback, path).await?;
        ensure!(status == 200, "GET {path} from loopback: {status} {body}");
    }
    let (_, config) = status_and_body(&http, loopback, "/config").await?;
    ensure!(
        config.contains("\"chat\""),
        "/config from loopback shows the route: {config}"
    );

    // Anyone else: the probes and the metrics, and a 403 that names who asked for the rest.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = status_and_body(&http, from_outside, path).await?;
        ensure!(status == 200, "GET {path} from {outside}: {status} {body}");
    }
    let (_, metrics) = status_and_body(&http, from_outside, "/metrics").await?;
    ensure!(metrics.contains("# HELP sluice_"), "/metrics from {outside}: {metrics}");
    for path in ["/config", "/budgets"] {
        let (status, body) = status_and_body(&http, from_outside, path).await?;
        ensure!(
            status == 403,
            "GET {path} from {outside} was not refused: {status} {body}"
        );
        let error: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        ensure!(
            error["error"]["code"] == "loopback_only" && error["error"]["type"] == "permission_error",
            "GET {path} from {outside}: {body}"
        );
        let message = error["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(path) && message.contains(&format!("not to {outside}:")),
            "the refusal names the path and the peer ({outside}): {message}"
        );
        ensure!(
            !body.contains("\"chat\""),
            "the refusal shows nothing of the config: {body}"
        );
    }
    sidecar.kill()?;
    Ok(())
}

const KEY: &str = "sk-audit-4c1d2e9f7a3b5d60";
const ROTATED: &str = "sk-audit-rotated-8e2f61b0c9d4";

/// The Azure OpenAI resource key.
const AZURE_KEY: &str = "azure-audit-key-3c9e51f07ab2";
/// A backend header's value, from a Secret.
const HEADER_SECRET: &str = "gateway-audit-secret-d41f9a";

/// The Secret of the clouds' credentials: an Azure key, an AWS credentials file, a Vertex
/// service-account key and a header value.
fn cloud_secret(upstream: &Upstream) -> String {
    let indent = |text: &str| text.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: clouds}}\nstringData:\n  azure: {AZURE_KEY}\n  \
         gateway: {HEADER_SECRET}\n  bedrock: |\n{}  vertex: |\n{}",
        indent(&format!(
            "[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}"
        )),
        indent(&service_account_key(&format!("http://{}", upstream.addr))),
    )
}

/// One route per cloud, each with its credentials from the `clouds` Secret; the Azure one also
/// sends a header whose value is in that Secret.
fn cloud_routes(upstream: &Upstream) -> String {
    let route = |name: &str, backend: &str| {
        format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n  \
             models: [{name}]\n  backends:\n  - name: up\n    baseUrl: \"http://{addr}\"\n    \
             pricing: {{inputPerMTok: \"1.00\", outputPerMTok: \"2.00\"}}\n{backend}",
            addr = upstream.addr
        )
    };
    [
        route(
            "azure",
            "    provider: azure-openai\n    model: gpt-4o\n    \
             azure: {deployment: mock-ok, apiVersion: \"2024-10-21\"}\n    credentialsRef: {name: clouds, key: azure}\n    \
             headers: [{name: x-gateway-key, valueFrom: {name: clouds, key: gateway}}]\n",
        ),
        route(
            "bedrock",
            "    provider: bedrock\n    model: mock-ok\n    bedrock: {region: us-east-1}\n    \
             credentialsRef: {name: clouds, key: bedrock}\n",
        ),
        route(
            "vertex",
            "    provider: vertex\n    model: mock-ok\n    \
             vertex: {project: sluice-test-project, region: us-east5, publisher: google}\n    \
             credentialsRef: {name: clouds, key: vertex}\n",
        ),
    ]
    .concat()
}

/// The routes: one per way an upstream answers, `echoing` to a model that, like a careless
/// provider, quotes the whole key back in its 401; then one per cloud.
fn manifests(upstream: &Upstream, key: &str) -> String {
    let route = |name: &str, model: &str, extra: &str| {
        format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n  \
             models: [{name}]\n{extra}  backends:\n  - name: up\n    provider: openai-compatible\n    \
             baseUrl: \"http://{addr}/v1\"\n    model: {model}\n    credentialsRef: {{name: upstream, key: apiKey}}\n    \
             pricing: {{inputPerMTok: \"1.00\", outputPerMTok: \"2.00\"}}\n",
            addr = upstream.addr
        )
    };
    [
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: upstream}}\nstringData: {{apiKey: {key}}}\n"),
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {name: monthly}\n\
         spec: {limitUSD: \"10.00\", period: monthly, enforcement: hard}\n"
            .to_owned(),
        route("chat", "mock-ok", "  budgetRef: {name: monthly}\n"),
        route("denied", "mock-401", ""),
        route("broken", "mock-500", ""),
        route("garbage", "mock-garbage", ""),
        route("cut", "mock-cut-stream", ""),
        route("echoing", "mock-quote-key", ""),
        cloud_secret(upstream),
        cloud_routes(upstream),
    ]
    .concat()
}

/// Every request a client might make, good and bad; what the client saw, headers and body.
async fn exercise(sidecar: &ClusterSidecar) -> Result<String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
    let hello = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    let base = sidecar.base_url();
    let requests: Vec<(&str, String)> = vec![
        ("/chat/completions", hello("chat", false)),
        ("/chat/completions", hello("chat", true)),
        ("/chat/completions", hello("denied", false)),
        ("/chat/completions", hello("broken", false)),
        ("/chat/completions", hello("garbage", false)),
        ("/chat/completions", hello("cut", true)),
        ("/chat/completions", hello("echoing", false)),
        ("/chat/completions", hello("echoing", true)),
        ("/chat/completions", hello("no-such-model", false)),
        ("/chat/completions", hello("azure", false)),
        ("/chat/completions", hello("azure", true)),
        ("/chat/completions", hello("bedrock", false)),
        ("/chat/completions", hello("bedrock", true)),
        ("/chat/completions", hello("vertex", false)),
        ("/chat/completions", hello("vertex", true)),
        ("/chat/completions", "{\"model\": \"chat\", \"messages\": [".to_owned()),
        (
            "/messages",
            json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ),
        (
            "/messages",
            json!({"model": "denied", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ),
        (
            "/messages",
            json!({"model": "echoing", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ),
    ];
    let mut seen = String::new();
    for (path, body) in requests {
        let response = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-sluice-user", "auditor")
            .body(body)
            .send()
            .await?;
        seen.push_str(&format!("{} {path}\n{:?}\n", response.status(), response.headers()));
        seen.push_str(&response.text().await.unwrap_or_default());
        seen.push('\n');
    }
    let models = http.get(format!("{base}/models")).send().await?.text().await?;
    seen.push_str(&models);
    Ok(seen)
}

async fn get(url: String) -> Result<String> {
    Ok(reqwest::get(&url).await.with_context(|| url.clone())?.text().await?)
}

/// Fails naming the source when any text holds a secret (or its base64, as a Secret stores it).
fn assert_no_secret(texts: &[(String, String)], secrets: &[&str]) -> Result<()> {
    use base64::Engine as _;
    for secret in secrets {
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        for (source, text) in texts {
            ensure!(
                !text.is_empty() || source.ends_with("(may be empty)"),
                "{source} is empty: nothing audited"
            );
            ensure!(
                !text.contains(secret) && !text.contains(&encoded),
                "{source} holds the API key {secret}:\n{text}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn no_log_endpoint_metric_status_event_or_answer_of_a_full_run_holds_an_api_key() -> Result<()> {
    let Some(c) = cluster("secrets_audit").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let upstream = Upstream::start(&[Wire::OpenAi, Wire::Azure, Wire::Bedrock, Wire::Vertex]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&manifests(&upstream, KEY)))
        .await?
        .ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let mut operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "bot", &[]).await?;
    let debug = [("SLUICE_LOG", "debug,h2=info,hyper=info,rustls=info")];
    let mut sidecar = ClusterSidecar::spawn_with_env(&pod, &operator.control_url, &certs.ca(), &debug).await?;
    eventually("the sidecar's config", WITHIN, || async {
        sidecar
            .config()
            .await
            .filter(|c| c["routes"].as_array().is_some_and(|r| r.len() == 9))
    })
    .await?;

    let mut client_saw = exercise(&sidecar).await?;
    // The key was really in use: the audit below could have found it.
    let bearer = |key: &str| format!("Bearer {key}");
    let used = upstream.requests();
    ensure!(
        used.iter()
            .any(|r| r.header("authorization") == Some(bearer(KEY).as_str())),
        "the upstream never saw the key"
    );
    // So were the clouds' credentials and the header's value.
    ensure!(
        used.iter()
            .any(|r| r.header("api-key") == Some(AZURE_KEY) && r.header("x-gateway-key") == Some(HEADER_SECRET)),
        "the Azure upstream never saw its key and the header"
    );
    ensure!(
        used.iter().any(|r| r.path.starts_with("/model/mock-ok/converse")
            && r.header("authorization").is_some_and(|a| a.contains(ACCESS_KEY_ID))),
        "Bedrock was never called with the key from the credentials file"
    );
    ensure!(
        used.iter().any(|r| r.path.contains(":generateContent")
            && r.header("authorization").is_some_and(|a| a.starts_with("Bearer "))),
        "Vertex was never called with a token from the service-account key"
    );
    let vertex_key: serde_json::Value = serde_json::from_str(&service_account_key("http://unused"))?;
    let private_key = vertex_key["private_key"].as_str().unwrap_or_default().to_owned();
    // A line of the key's body: what any leak of the key would contain.
    let key_body = private_key
        .lines()
        .nth(1)
        .context("the test service-account key has no body")?
        .to_owned();

    // Rotate the key; the new one is used, and audited too.
    c.kubectl_ns(&["apply", "-f", "-"], Some(&manifests(&upstream, ROTATED)))
        .await?
        .ok()?;
    eventually("the rotated key in use", WITHIN, || async {
        let answer = sidecar.chat("chat").await?;
        let last = upstream.requests().pop()?;
        (answer.status == 200 && last.header("authorization") == Some(bearer(ROTATED).as_str())).then_some(())
    })
    .await?;
    client_saw.push_str(&exercise(&sidecar).await?);
    // Usage has reached status, so the status writers ran with these routes.
    eventually("spend in the budget's status", WITHIN, || async {
        let out = c
            .kubectl_ns(&["get", "budget", "monthly", "-o", "jsonpath={.status.spentUSD}"], None)
            .await
            .ok()?
            .ok()
            .ok()?;
        (!out.is_empty() && out != "0.000000").then_some(())
    })
    .await?;

    let sidecar_admin = |path: &str| get(format!("http://{}{path}", sidecar.admin_addr));
    let operator_admin = |path: &str| get(format!("http://{}{path}", operator.admin_addr));
    let kubectl = |args: &'static [&'static str]| {
        let c = &c;
        async move { c.kubectl_ns(args, None).await?.ok() }
    };
    let mut texts = vec![
        ("client answers".to_owned(), client_saw),
        ("sidecar /config".to_owned(), sidecar_admin("/config").await?),
        ("sidecar /metrics".to_owned(), sidecar_admin("/metrics").await?),
        ("sidecar /budgets".to_owned(), sidecar_admin("/budgets").await?),
        ("sidecar /healthz".to_owned(), sidecar_admin("/healthz").await?),
        ("operator /metrics".to_owned(), operator_admin("/metrics").await?),
        ("operator /readyz".to_owned(), operator_admin("/readyz").await?),
        (
            "modelroutes and budgets".to_owned(),
            kubectl(&["get", "modelroutes,budgets", "-o", "yaml"]).await?,
        ),
        ("events".to_owned(), kubectl(&["get", "events", "-o", "yaml"]).await?),
        (
            "config maps (usage ledger)".to_owned(),
            kubectl(&["get", "configmaps", "-o", "yaml"]).await?,
        ),
        ("leases".to_owned(), kubectl(&["get", "leases", "-o", "yaml"]).await?),
    ];
    // The sidecar's state directory, except the snapshot, which holds keys by design (mode 0600).
    for entry in std::fs::read_dir(&pod.state_dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n != "snapshot.json") && path.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
            texts.push((format!("{} (may be empty)", path.display()), text));
        }
    }
    // Logs last, after a graceful stop flushed everything.
    sidecar.process.terminate().await?;
    operator.process.terminate().await?;
    texts.push(("sidecar log (debug)".to_owned(), sidecar.process.output()));
    texts.push(("operator log (debug)".to_owned(), operator.process.output()));
    assert_no_secret(
        &texts,
        &[KEY, ROTATED, AZURE_KEY, HEADER_SECRET, SECRET_ACCESS_KEY, &key_body],
    )
}
