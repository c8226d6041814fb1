//! Fault cases of issue 10 item 1 not covered by `sidecar_openai.rs` / `sidecar_failover.rs`:
//! an upstream whose stream never ends, a backend whose host does not resolve, and SIGTERM while
//! a stream is in flight — each against the real `sluice-sidecar` binary.
//!
//! The streaming upstream here is raw (a `TcpListener` writing chunked SSE by hand) so that a test
//! can make it endless or hold it part-way with a [`Notify`].
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gateway::{backend, hello, route, sse_data};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long a test waits for something that must happen: a bound, never a target.
const WITHIN: Duration = Duration::from_secs(20);
/// The content of every chunk the raw upstream streams.
const PIECE: &str = "tick";
/// Chunks the gated upstream sends before it waits for its gate.
const BEFORE_GATE: usize = 2;
/// Chunks the gated upstream sends after its gate opens.
const AFTER_GATE: usize = 3;

/// How the raw upstream streams.
#[derive(Clone)]
enum Script {
    /// A chunk every 50 ms, forever.
    Endless,
    /// [`BEFORE_GATE`] chunks, then waits for the gate, then [`AFTER_GATE`] more and `[DONE]`.
    Gated(Arc<Notify>),
    /// [`BEFORE_GATE`] chunks, then nothing until the sidecar hangs up, which it signals.
    UntilHungUp(Arc<Notify>),
}

/// Starts the raw streaming upstream; every request gets `script`.
async fn sse_upstream(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket, script.clone()));
        }
    });
    addr
}

/// Reads one request, then streams as `script` says; stops when the sidecar hangs up.
async fn answer(mut socket: TcpStream, script: Script) {
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = socket.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match script {
        Script::Endless => {
            while send_event(&mut socket, &chunk(None)).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Script::Gated(gate) => {
            for _ in 0..BEFORE_GATE {
                send_event(&mut socket, &chunk(None)).await;
            }
            gate.notified().await;
            for _ in 0..AFTER_GATE {
                send_event(&mut socket, &chunk(None)).await;
            }
            send_event(&mut socket, &chunk(Some("stop"))).await;
            send_event(&mut socket, "[DONE]").await;
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
        Script::UntilHungUp(hung_up) => {
            for _ in 0..BEFORE_GATE {
                send_event(&mut socket, &chunk(None)).await;
            }
            while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            hung_up.notify_one();
        }
    }
}

/// One OpenAI chunk carrying [`PIECE`] (or only the finish reason).
fn chunk(finish_reason: Option<&str>) -> String {
    let delta = if finish_reason.is_some() {
        json!({})
    } else {
        json!({"content": PIECE})
    };
    json!({"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "raw",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    .to_string()
}

/// Writes `data: {data}\n\n` as one HTTP chunk; false once the peer is gone.
async fn send_event(socket: &mut TcpStream, data: &str) -> bool {
    let event = format!("data: {data}\n\n");
    let framed = format!("{:x}\r\n{event}\r\n", event.len());
    socket.write_all(framed.as_bytes()).await.is_ok() && socket.flush().await.is_ok()
}

/// A sidecar serving route `chat` from one backend at `base_url` with `timeouts`.
async fn sidecar(base_url: &str, timeouts: Value) -> (SidecarProcess, tempfile::TempDir) {
    sidecar_with(base_url, json!({"timeouts": timeouts})).await
}

/// A sidecar serving route `chat` from one backend at `base_url` with `extra` backend fields.
async fn sidecar_with(base_url: &str, extra: Value) -> (SidecarProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let doc = route(
        "chat",
        json!({"retry": {"attempts": 1}, "backends": [backend("raw", base_url, "raw", extra)]}),
    );
    std::fs::write(dir.path().join("routes.yaml"), doc.to_string()).unwrap();
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    (sidecar, dir)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WITHIN).build().unwrap()
}

fn streamed_hello() -> Value {
    let mut request = hello("chat");
    request["stream"] = json!(true);
    request
}

#[tokio::test]
async fn a_never_ending_upstream_stream_is_cut_at_the_total_timeout_with_an_error_event() {
    let upstream = sse_upstream(Script::Endless).await;
    let timeouts = json!({"connect": "1s", "firstByte": "1s", "total": "2s"});
    let (sidecar, _dir) = sidecar(&format!("http://{upstream}/v1"), timeouts).await;

    let response = client()
        .post(sidecar.url("/v1/chat/completions"))
        .json(&streamed_hello())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("the stream must end, not run forever");
    let data = sse_data(&text);
    let error_at = data
        .iter()
        .position(|d| d.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error event at the end of the stream:\n{text}"));
    assert!(error_at > 0, "chunks came before the cut:\n{text}");
    for d in &data[..error_at] {
        let chunk: Value = serde_json::from_str(d).unwrap();
        assert_eq!(chunk["choices"][0]["delta"]["content"], PIECE, "{d}");
    }
    let error: Value = serde_json::from_str(&data[error_at]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout", "{error}");
    assert!(
        data[error_at + 1..].iter().all(|d| d == "[DONE]"),
        "nothing but [DONE] may follow the error:\n{text}"
    );
}

#[tokio::test]
async fn a_backend_whose_host_does_not_resolve_fails_fast_with_a_clear_gateway_error() {
    let timeouts = json!({"connect": "5s", "firstByte": "5s", "total": "10s"});
    let (sidecar, _dir) = sidecar("http://sluice-test.invalid/v1", timeouts).await;

    let response = client()
        .post(sidecar.url("/v1/chat/completions"))
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();

    // A resolver that answers says the host does not exist (502 upstream_unreachable); one that
    // never answers runs into the connect timeout (504 upstream_timeout). Either is a clear,
    // bounded failure; anything else is not.
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    match status {
        StatusCode::BAD_GATEWAY => assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}"),
        StatusCode::GATEWAY_TIMEOUT => assert_eq!(body["error"]["code"], "upstream_timeout", "{body}"),
        other => panic!("unexpected {other}: {body}"),
    }
}

#[tokio::test]
async fn sigterm_during_a_stream_lets_it_finish_then_the_sidecar_exits() {
    let gate = Arc::new(Notify::new());
    let upstream = sse_upstream(Script::Gated(Arc::clone(&gate))).await;
    let timeouts = json!({"connect": "1s", "firstByte": "5s", "total": "30s"});
    let (mut sidecar, _dir) = sidecar(&format!("http://{upstream}/v1"), timeouts).await;

    let response = client()
        .post(sidecar.url("/v1/chat/completions"))
        .json(&streamed_hello())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    // The stream is under way: the chunks before the gate have reached the client.
    while sse_data(&text).len() < BEFORE_GATE {
        let bytes = body.next().await.expect("the stream ended early").unwrap();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &sidecar.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    sidecar.wait_for_stderr("shutting down", WITHIN).await.unwrap();
    gate.notify_one();
    while let Some(bytes) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&bytes.expect("the stream broke off")));
    }

    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let pieces = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|c| c["choices"][0]["delta"]["content"] == PIECE)
        .count();
    assert_eq!(pieces, BEFORE_GATE + AFTER_GATE, "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    let deadline = Instant::now() + WITHIN;
    while sidecar.is_running() {
        assert!(
            Instant::now() < deadline,
            "the sidecar did not exit once the stream was done"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !sidecar.stderr().contains("grace period over"),
        "the stream drained within the grace period:\n{}",
        sidecar.stderr()
    );
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_frees_its_slot_and_ends_the_upstream_call() {
    let hung_up = Arc::new(Notify::new());
    let upstream = sse_upstream(Script::UntilHungUp(Arc::clone(&hung_up))).await;
    let extra = json!({"limits": {"maxConcurrency": 1},
        "timeouts": {"connect": "1s", "firstByte": "5s", "total": "60s"}});
    let (sidecar, _dir) = sidecar_with(&format!("http://{upstream}/v1"), extra).await;
    let http = client();

    // Twice over: were the first stream's slot kept, the second request would queue behind it
    // until the total timeout.
    for round in 0..2 {
        let response = http
            .post(sidecar.url("/v1/chat/completions"))
            .json(&streamed_hello())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while sse_data(&text).len() < BEFORE_GATE {
            let bytes = body.next().await.expect("the stream ended early").unwrap();
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        drop(body);
        // The sidecar lets go of the upstream call too.
        tokio::time::timeout(WITHIN, hung_up.notified())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the upstream call was left open"));
    }

    let config: Value = http
        .get(sidecar.admin_url("/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backend = &config["state"]["routes"][0]["backends"][0];
    assert_eq!(backend["concurrency"]["inFlight"], 0, "{backend}");
    sidecar.wait_for_stderr("the client went away", WITHIN).await.unwrap();
}
