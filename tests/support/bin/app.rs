//! `sluice-test-app --listen 0.0.0.0:8080`: an application that knows nothing of Sluice but
//! the `OPENAI_BASE_URL` its environment holds, as a pod in the node tests.
//!
//! `POST /chat` sends its body to `$OPENAI_BASE_URL/chat/completions` and answers
//! `{"status", "headers", "body"}`: the upstream answer's status, its `x-sluice-*` headers and
//! its body (JSON, or the text when it is not JSON). `GET /env` answers
//! `{"OPENAI_BASE_URL": …}`; `GET /healthz` answers 200. `GET /sidecar-admin/PATH` asks the
//! sidecar's admin listener for `/PATH` from inside the pod (loopback, `--sidecar-admin`), which
//! is the only place it shows `/config` and `/budgets`, and answers `{"status", "body"}`. The
//! first stdout line is `listening on ADDR`.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use sluice_tests::http::{Body, json_response, serve_connections};
use tokio::net::TcpListener;

/// Command line of the test application.
#[derive(Debug, Parser)]
#[command(name = "sluice-test-app")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The sidecar's admin listener, as the pod reaches it.
    #[arg(long, default_value = "127.0.0.1:4001")]
    sidecar_admin: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let base = std::env::var("OPENAI_BASE_URL").ok();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    let admin = args.sidecar_admin;
    serve_connections(listener, move |request| {
        let (client, base) = (client.clone(), base.clone());
        async move { Ok::<_, Infallible>(handle(request, &client, base.as_deref(), admin).await) }
    })
    .await;
    Ok(())
}

async fn handle(
    request: Request<Incoming>,
    client: &reqwest::Client,
    base: Option<&str>,
    admin: SocketAddr,
) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"ok": true})),
        (&Method::GET, path) if path.starts_with("/sidecar-admin/") => {
            let url = format!("http://{admin}{}", path.strip_prefix("/sidecar-admin").unwrap_or(path));
            match get(client, &url).await {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": format!("{e:#}")})),
            }
        }
        (&Method::GET, "/env") => json_response(StatusCode::OK, &json!({"OPENAI_BASE_URL": base})),
        (&Method::POST, "/chat") => {
            let Some(base) = base else {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "OPENAI_BASE_URL is not set"}),
                );
            };
            let body = match request.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
            };
            match chat(client, base, body).await {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": format!("{e:#}")})),
            }
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "GET /healthz, GET /env, GET /sidecar-admin/PATH or POST /chat"}),
        ),
    }
}

async fn chat(client: &reqwest::Client, base: &str, body: Bytes) -> Result<Value> {
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let headers: Map<String, Value> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-sluice-"))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                json!(String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect();
    let bytes = response.bytes().await.context("reading the answer")?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    Ok(json!({"status": status, "headers": headers, "body": body}))
}

/// `GET url`: `{"status", "body"}`, the body as JSON, or as text when it is not JSON.
async fn get(client: &reqwest::Client, url: &str) -> Result<Value> {
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.context("reading the answer")?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    Ok(json!({"status": status, "body": body}))
}
