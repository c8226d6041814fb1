//! The bad input suite (issue 10, item 2): malformed and hostile requests against the real
//! `sluice-sidecar` binary.
//!
//! [`CASES`] is a table of raw HTTP/1.1 exchanges, each sent on its own TCP connection so that
//! requests reqwest would never produce (broken framing, smuggling attempts, invalid UTF-8,
//! oversized heads) are sent byte for byte. Each case expects a clear 4xx with the OpenAI error
//! shape, or, where HTTP itself is broken, hyper's bare refusal or a closed connection — never a
//! panic, a hang (every exchange runs under a client timeout) or unbounded allocation (the
//! sidecar's RSS is read from `/proc/<pid>/status` before and after). After every case a good
//! request on a new connection must still be answered. Slow clients and HTTP/2 abuse need more
//! than one exchange and are tests of their own.
//!
//! Invalid `ModelRoute`/`Budget` specs, the other half of item 2, are tabled elsewhere and not
//! repeated here: `crds/src/validation/tests.rs` (`CASES`, each refused naming the field) and
//! `tests/e2e/cluster_crds.rs` (the same against a real API server's schema).
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use gateway::{backend, route};
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{OK_CONTENT, Upstream, Wire};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The body limit the suite runs the sidecar with (small, so that "just over" stays fast).
const BODY_LIMIT: usize = 1 << 20;
/// How long one exchange may take before it counts as a hang: a bound, never a target.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How much the sidecar's resident memory may grow over the whole table.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;
/// Nesting depth of the deep-nesting cases (serde_json refuses past 128).
const DEEP: usize = 100_000;

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A 200 from the upstream, through the sidecar.
    Ok,
    /// This status with an OpenAI error body whose `param` is as given.
    Error(u16, Param),
    /// HTTP itself is broken: one of these statuses (hyper's own answer, no body shape
    /// required), or the connection closed without an answer.
    Refused(&'static [u16]),
}

/// The `param` an OpenAI error must carry.
#[derive(Debug, Clone, Copy)]
enum Param {
    /// Any value, null included.
    Any,
    /// Exactly null.
    Null,
    /// Exactly this field path.
    Is(&'static str),
}

/// One hostile request: a name saying what it is, how to build its bytes, and what it must get.
struct Case {
    name: &'static str,
    request: fn() -> Raw,
    expect: Expect,
}

/// The bytes of one exchange; `half_close` shuts the write side after sending them.
struct Raw {
    bytes: Vec<u8>,
    half_close: bool,
}

fn raw(bytes: impl Into<Vec<u8>>) -> Raw {
    Raw {
        bytes: bytes.into(),
        half_close: false,
    }
}

/// A POST of `body` to `path` with a correct Content-Length.
fn post(path: &str, body: &[u8]) -> Raw {
    post_with(path, &[], body)
}

/// A POST of `body` to `path` with extra header lines (each without CRLF).
fn post_with(path: &str, headers: &[&[u8]], body: &[u8]) -> Raw {
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for h in headers {
        bytes.extend_from_slice(h);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    raw(bytes)
}

fn chat(body: &[u8]) -> Raw {
    post("/v1/chat/completions", body)
}

fn chat_json(body: &Value) -> Raw {
    chat(body.to_string().as_bytes())
}

/// A good chat request with `field` set to `value`.
fn chat_with(field: &str, value: Value) -> Raw {
    let mut body = hello();
    body[field] = value;
    chat_json(&body)
}

/// A good chat request whose only message is `message`.
fn chat_message(message: Value) -> Raw {
    chat_json(&json!({"model": "chat", "messages": [message]}))
}

fn embed_json(body: &Value) -> Raw {
    post("/v1/embeddings", body.to_string().as_bytes())
}

/// A request with no body: `METHOD path`.
fn bare(method: &str, path: &str) -> Raw {
    raw(format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    ))
}

fn hello() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "Say hello"}]})
}

/// A good chat request whose message content pads the body to exactly `size` bytes.
fn chat_of_size(size: usize) -> Vec<u8> {
    let frame = json!({"model": "chat", "messages": [{"role": "user", "content": ""}]}).to_string();
    let body =
        json!({"model": "chat", "messages": [{"role": "user", "content": "a".repeat(size - frame.len())}]}).to_string();
    assert_eq!(body.len(), size);
    body.into_bytes()
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// A chunked chat request whose chunk stream is `chunks` verbatim.
fn chunked(chunks: &str) -> Raw {
    raw(format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{chunks}"
    ))
}

const NOT_HTTP: &[u16] = &[400];
const TOO_LARGE_HEAD: &[u16] = &[400, 414, 431];

/// The table: at least 40 hostile requests, each with the answer it must get.
const CASES: &[Case] = &[
    // --- Bad JSON ---
    Case {
        name: "empty body",
        request: || chat(b""),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "truncated object",
        request: || chat(br#"{"model": "chat", "messages": ["#),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "top-level null",
        request: || chat(b"null"),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "top-level array",
        request: || chat(b"[]"),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "top-level string",
        request: || chat(br#""chat""#),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "trailing garbage after the object",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]} x"#),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "two objects back to back",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}{}"#),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "NaN literal",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":NaN}"#),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "single-quoted strings",
        request: || chat(b"{'model':'chat','messages':[]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "trailing comma",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],}"#),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "comment",
        request: || chat(b"// hi\n{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "byte order mark",
        request: || chat(b"\xEF\xBB\xBF{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "duplicate model key",
        request: || chat(br#"{"model":"chat","model":"other","messages":[{"role":"user","content":"hi"}]}"#),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "number out of range",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1e400}"#),
        expect: Expect::Error(400, Param::Any),
    },
    // --- Invalid UTF-8 and control characters ---
    Case {
        name: "invalid UTF-8 in a string value",
        request: || chat(b"{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"\xFF\xFE\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "invalid UTF-8 in a key",
        request: || chat(b"{\"model\":\"chat\",\"\xC3\x28\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "overlong UTF-8 encoding of '/'",
        request: || chat(b"{\"model\":\"chat\xC0\xAF\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    Case {
        name: "lone surrogate escape",
        request: || chat(br#"{"model":"chat","messages":[{"role":"user","content":"\ud800"}]}"#),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "raw NUL byte inside a string",
        request: || chat(b"{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"a\x00b\"}]}"),
        expect: Expect::Error(400, Param::Null),
    },
    // --- Deep nesting: refused by serde_json's recursion limit, not a stack overflow ---
    Case {
        name: "100k nested arrays as the body",
        request: || chat(nested_arrays(DEEP).as_bytes()),
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "100k nested arrays as message content",
        request: || {
            chat(
                format!(
                    r#"{{"model":"chat","messages":[{{"role":"user","content":{}}}]}}"#,
                    nested_arrays(DEEP)
                )
                .as_bytes(),
            )
        },
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "100k nested objects in an unknown field",
        request: || {
            chat(
                format!(
                    r#"{{"model":"chat","messages":[{{"role":"user","content":"hi"}}],"x":{}}}"#,
                    nested_objects(DEEP)
                )
                .as_bytes(),
            )
        },
        expect: Expect::Error(400, Param::Any),
    },
    Case {
        name: "100k nested arrays as embeddings input",
        request: || {
            post(
                "/v1/embeddings",
                format!(r#"{{"model":"embed","input":{}}}"#, nested_arrays(DEEP)).as_bytes(),
            )
        },
        expect: Expect::Error(400, Param::Any),
    },
    // --- Huge bodies around the limit ---
    Case {
        name: "body one byte under the limit",
        request: || chat(&chat_of_size(BODY_LIMIT - 1)),
        expect: Expect::Ok,
    },
    Case {
        name: "body one byte over the limit",
        request: || chat(&chat_of_size(BODY_LIMIT + 1)),
        expect: Expect::Error(413, Param::Null),
    },
    Case {
        name: "chunked body over the limit without a length",
        request: || {
            let body = chat_of_size(BODY_LIMIT + 1);
            let mut r = chunked(&format!("{:x}\r\n", body.len()));
            r.bytes.extend_from_slice(&body);
            r.bytes.extend_from_slice(b"\r\n0\r\n\r\n");
            r
        },
        expect: Expect::Error(413, Param::Null),
    },
    Case {
        name: "body shorter than its Content-Length, then half-close",
        request: || {
            let mut r = raw(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n\r\n{\"model\":"
                    .to_vec(),
            );
            r.half_close = true;
            r
        },
        expect: Expect::Refused(&[400]),
    },
    // --- Wrong types for every typed field ---
    Case {
        name: "model is a number",
        request: || chat_with("model", json!(42)),
        expect: Expect::Error(400, Param::Is("model")),
    },
    Case {
        name: "model is null",
        request: || chat_with("model", Value::Null),
        expect: Expect::Error(400, Param::Is("model")),
    },
    Case {
        name: "model is an array",
        request: || chat_with("model", json!(["chat"])),
        expect: Expect::Error(400, Param::Is("model")),
    },
    Case {
        name: "messages is an object",
        request: || chat_with("messages", json!({"role": "user"})),
        expect: Expect::Error(400, Param::Is("messages")),
    },
    Case {
        name: "messages is empty",
        request: || chat_with("messages", json!([])),
        expect: Expect::Error(400, Param::Is("messages")),
    },
    Case {
        name: "a message is a number",
        request: || chat_with("messages", json!([42])),
        expect: Expect::Error(400, Param::Is("messages[0]")),
    },
    Case {
        name: "role is a number",
        request: || chat_message(json!({"role": 7, "content": "hi"})),
        expect: Expect::Error(400, Param::Is("messages[0].role")),
    },
    Case {
        name: "role is unknown",
        request: || chat_message(json!({"role": "robot", "content": "hi"})),
        expect: Expect::Error(400, Param::Is("messages[0].role")),
    },
    Case {
        name: "role is missing",
        request: || chat_message(json!({"content": "hi"})),
        expect: Expect::Error(400, Param::Is("role")),
    },
    Case {
        name: "stream is a string",
        request: || chat_with("stream", json!("true")),
        expect: Expect::Error(400, Param::Is("stream")),
    },
    Case {
        name: "stream is a number",
        request: || chat_with("stream", json!(1)),
        expect: Expect::Error(400, Param::Is("stream")),
    },
    Case {
        name: "stream_options is a string",
        request: || chat_with("stream_options", json!("yes")),
        expect: Expect::Error(400, Param::Is("stream_options")),
    },
    Case {
        name: "stream_options.include_usage is a string",
        request: || chat_with("stream_options", json!({"include_usage": "yes"})),
        expect: Expect::Error(400, Param::Is("stream_options.include_usage")),
    },
    Case {
        name: "max_tokens is a fraction",
        request: || chat_with("max_tokens", json!(1.5)),
        expect: Expect::Error(400, Param::Is("max_tokens")),
    },
    Case {
        name: "max_tokens is -1",
        request: || chat_with("max_tokens", json!(-1)),
        expect: Expect::Error(400, Param::Is("max_tokens")),
    },
    Case {
        name: "max_tokens is 0",
        request: || chat_with("max_tokens", json!(0)),
        expect: Expect::Error(400, Param::Is("max_tokens")),
    },
    Case {
        name: "max_tokens is 2^40",
        request: || chat_with("max_tokens", json!(1_u64 << 40)),
        expect: Expect::Error(400, Param::Is("max_tokens")),
    },
    Case {
        name: "max_completion_tokens is -1",
        request: || chat_with("max_completion_tokens", json!(-1)),
        expect: Expect::Error(400, Param::Is("max_completion_tokens")),
    },
    Case {
        name: "max_completion_tokens is a boolean",
        request: || chat_with("max_completion_tokens", json!(true)),
        expect: Expect::Error(400, Param::Is("max_completion_tokens")),
    },
    Case {
        name: "max_completion_tokens is u64::MAX",
        request: || chat_with("max_completion_tokens", json!(u64::MAX)),
        expect: Expect::Error(400, Param::Is("max_completion_tokens")),
    },
    Case {
        name: "user is a number",
        request: || chat_with("user", json!(12)),
        expect: Expect::Error(400, Param::Is("user")),
    },
    Case {
        name: "user is an object",
        request: || chat_with("user", json!({"id": 1})),
        expect: Expect::Error(400, Param::Is("user")),
    },
    Case {
        name: "embeddings input is a number",
        request: || embed_json(&json!({"model": "embed", "input": 42})),
        expect: Expect::Error(400, Param::Is("input")),
    },
    Case {
        name: "embeddings input is null",
        request: || embed_json(&json!({"model": "embed", "input": null})),
        expect: Expect::Error(400, Param::Is("input")),
    },
    Case {
        name: "embeddings input is empty",
        request: || embed_json(&json!({"model": "embed", "input": []})),
        expect: Expect::Error(400, Param::Is("input")),
    },
    Case {
        name: "embeddings input is missing",
        request: || embed_json(&json!({"model": "embed"})),
        expect: Expect::Error(400, Param::Is("input")),
    },
    Case {
        name: "embeddings model is a number",
        request: || embed_json(&json!({"model": 1, "input": "hi"})),
        expect: Expect::Error(400, Param::Is("model")),
    },
    // --- Unknown fields pass through ---
    Case {
        name: "unknown fields at every level",
        request: || {
            chat_json(
                &json!({"model": "chat", "messages": [{"role": "user", "content": "hi", "x-extra": {"a": [1]}}], "stream_options": null, "frobnicate": true, "logit_bias": {"50256": -100}}),
            )
        },
        expect: Expect::Ok,
    },
    // --- Header injection and odd model names ---
    Case {
        name: "CR/LF header injection in the model name",
        request: || chat_with("model", json!("chat\r\nX-Injected: yes")),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "NUL in the model name",
        request: || chat_with("model", json!("chat\u{0}")),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "unicode look-alike model name",
        request: || chat_with("model", json!("\u{217d}hat")),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "right-to-left override in the model name",
        request: || chat_with("model", json!("\u{202e}tahc")),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "path traversal as the model name",
        request: || chat_with("model", json!("../../etc/passwd")),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "100 KiB model name",
        request: || chat_with("model", json!("m".repeat(100 * 1024))),
        expect: Expect::Error(404, Param::Is("model")),
    },
    Case {
        name: "non-ASCII bytes in x-sluice-user",
        request: || {
            post_with(
                "/v1/chat/completions",
                &[b"x-sluice-user: \xFF\xFEroot"],
                hello().to_string().as_bytes(),
            )
        },
        expect: Expect::Error(400, Param::Null),
    },
    // --- Oversized and too many headers ---
    Case {
        name: "one 64 KiB header",
        request: || {
            post_with(
                "/v1/chat/completions",
                &[format!("x-big: {}", "a".repeat(64 * 1024)).as_bytes()],
                hello().to_string().as_bytes(),
            )
        },
        expect: Expect::Refused(&[431]),
    },
    Case {
        name: "one 1 MiB header",
        request: || {
            post_with(
                "/v1/chat/completions",
                &[format!("x-big: {}", "a".repeat(1 << 20)).as_bytes()],
                hello().to_string().as_bytes(),
            )
        },
        expect: Expect::Refused(&[431]),
    },
    Case {
        name: "500 headers",
        request: || {
            let lines: Vec<Vec<u8>> = (0..500).map(|i| format!("x-h{i}: v").into_bytes()).collect();
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            post_with("/v1/chat/completions", &refs, hello().to_string().as_bytes())
        },
        expect: Expect::Refused(&[431]),
    },
    Case {
        name: "100 KiB request target",
        request: || bare("GET", &format!("/v1/models?{}", "a".repeat(100 * 1024))),
        expect: Expect::Refused(TOO_LARGE_HEAD),
    },
    // --- Request smuggling attempts ---
    Case {
        name: "Content-Length and Transfer-Encoding together",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_vec())
        },
        expect: Expect::Refused(&[400]),
    },
    Case {
        name: "two Content-Lengths that differ",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\ncontent-length: 40\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "Content-Length list with different values",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2, 40\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "non-numeric Content-Length",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: abc\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "negative Content-Length",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: -1\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "space before the colon of Content-Length",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length : 2\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "obs-fold continuation line",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\n{}".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "Transfer-Encoding that is not chunked last",
        request: || {
            raw(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec())
        },
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "chunk size that is not hex",
        request: || chunked("zz\r\n{}\r\n0\r\n\r\n"),
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "chunk size that overflows 64 bits",
        request: || chunked("fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "chunk longer than its declared size",
        request: || chunked("2\r\n{\"model\":1}\r\n0\r\n\r\n"),
        expect: Expect::Refused(NOT_HTTP),
    },
    // --- Not HTTP at all ---
    Case {
        name: "random bytes",
        request: || raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n".to_vec()),
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "NUL in the method",
        request: || raw(b"GE\x00T /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_vec()),
        expect: Expect::Refused(NOT_HTTP),
    },
    Case {
        name: "HTTP/2 preface followed by garbage frames",
        request: || raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec()),
        expect: Expect::Refused(&[]),
    },
    // --- Methods ---
    Case {
        name: "PUT on chat completions",
        request: || bare("PUT", "/v1/chat/completions"),
        expect: Expect::Error(405, Param::Any),
    },
    Case {
        name: "DELETE on embeddings",
        request: || bare("DELETE", "/v1/embeddings"),
        expect: Expect::Error(405, Param::Any),
    },
    Case {
        name: "TRACE on models",
        request: || bare("TRACE", "/v1/models"),
        expect: Expect::Error(405, Param::Any),
    },
    Case {
        name: "GET on chat completions",
        request: || bare("GET", "/v1/chat/completions"),
        expect: Expect::Error(405, Param::Any),
    },
    Case {
        name: "PATCH on messages",
        request: || bare("PATCH", "/v1/messages"),
        expect: Expect::Error(405, Param::Any),
    },
    // --- Paths ---
    Case {
        name: "dot-dot segments",
        request: || bare("GET", "/v1/../v1/models"),
        expect: Expect::Error(404, Param::Any),
    },
    Case {
        name: "percent-encoded dot-dot",
        request: || bare("GET", "/v1/%2e%2e/config"),
        expect: Expect::Error(404, Param::Any),
    },
    Case {
        name: "double slash",
        request: || bare("POST", "/v1//chat/completions"),
        expect: Expect::Error(404, Param::Any),
    },
    Case {
        name: "admin path on the API listener",
        request: || bare("GET", "/config"),
        expect: Expect::Error(404, Param::Any),
    },
    Case {
        // Absolute form must be accepted (RFC 9112 3.2.2); the sidecar serves it itself, it is no proxy.
        name: "absolute-form target naming another host is served locally",
        request: || {
            post(
                "http://sluice-test.invalid/v1/chat/completions",
                hello().to_string().as_bytes(),
            )
        },
        expect: Expect::Ok,
    },
];

/// What came back on the wire.
#[derive(Debug)]
enum Outcome {
    /// A response: status, header block, body.
    Answered { status: u16, head: String, body: Vec<u8> },
    /// The connection closed (or was reset) without a response.
    Closed,
}

/// Sends `raw` on a new connection and reads one response, or the close.
async fn exchange(addr: SocketAddr, raw: &Raw) -> Outcome {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (a refused head): keep going.
    if socket.write_all(&raw.bytes).await.is_ok() && raw.half_close {
        let _ = socket.shutdown().await;
    }
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let body = &received[end + 4..];
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                return Outcome::Answered {
                    status,
                    body: body.to_vec(),
                    head,
                };
            }
        } else if n == 0 {
            // An HTTP/2 server's SETTINGS and GOAWAY before the close are a refusal too; half an
            // HTTP/1 answer is not.
            assert!(
                !received.starts_with(b"HTTP/"),
                "half a response: {:?}",
                String::from_utf8_lossy(&received)
            );
            return Outcome::Closed;
        }
    }
}

/// Checks `{"error": {"message", "type", "param", "code"}}` and the param.
fn check_openai_error(body: &[u8], param: Param) -> Result<(), String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {:?}", String::from_utf8_lossy(body)))?;
    let error = body["error"]
        .as_object()
        .ok_or(format!("not an OpenAI error: {body}"))?;
    let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    if keys != BTreeSet::from(["message", "type", "param", "code"]) {
        return Err(format!("error keys of {body}"));
    }
    if error["message"].as_str().is_none_or(str::is_empty) || !error["type"].is_string() {
        return Err(format!("no message or type in {body}"));
    }
    match param {
        Param::Any => Ok(()),
        Param::Null if error["param"].is_null() => Ok(()),
        Param::Is(p) if error["param"] == p => Ok(()),
        _ => Err(format!("param of {body} is not {param:?}")),
    }
}

/// Whether `outcome` is what `expect` asks for; `Err` says what was wrong.
fn judge(outcome: &Outcome, expect: Expect) -> Result<(), String> {
    match (expect, outcome) {
        (Expect::Ok, Outcome::Answered { status: 200, body, .. }) => {
            let body: Value = serde_json::from_slice(body).map_err(|e| format!("200 but not JSON: {e}"))?;
            if body["choices"][0]["message"]["content"] == OK_CONTENT {
                Ok(())
            } else {
                Err(format!("200 without the upstream's answer: {body}"))
            }
        }
        (Expect::Error(want, param), Outcome::Answered { status, body, .. }) if *status == want => {
            check_openai_error(body, param)
        }
        (Expect::Refused(_), Outcome::Closed) => Ok(()),
        (Expect::Refused(statuses), Outcome::Answered { status, .. }) if statuses.contains(status) => Ok(()),
        (_, Outcome::Answered { status, head, body }) => Err(format!(
            "got {status}: {head} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
        (_, Outcome::Closed) => Err("the connection closed without an answer".to_owned()),
    }
}

/// One upstream, one sidecar with a [`BODY_LIMIT`] body limit, serving `chat` and `embed`.
struct Harness {
    _upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = upstream.base_url();
        let docs = [
            route(
                "chat",
                json!({"backends": [backend("mock", &base, "mock-ok", json!({}))]}),
            ),
            route(
                "embed",
                json!({"backends": [backend("mock", &base, "mock-ok", json!({}))]}),
            ),
        ];
        let text: Vec<String> = docs.iter().map(Value::to_string).collect();
        std::fs::write(dir.path().join("routes.yaml"), text.join("\n---\n")).unwrap();
        let limit = BODY_LIMIT.to_string();
        let sidecar = SidecarProcess::start_with_args(dir.path(), &["--max-body-bytes", &limit])
            .await
            .unwrap();
        let http = reqwest::Client::builder().timeout(EXCHANGE_TIMEOUT).build().unwrap();
        Self {
            _upstream: upstream,
            sidecar,
            _dir: dir,
            http,
        }
    }

    /// A good request on a new connection gets a good answer, and the process is alive.
    async fn assert_still_serving(&mut self, after: &str) {
        assert!(self.sidecar.is_running(), "the sidecar died after {after}");
        let response = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(self.sidecar.addr, &chat_json(&hello())))
            .await
            .unwrap_or_else(|_| panic!("a good request hung after {after}"));
        if let Err(e) = judge(&response, Expect::Ok) {
            panic!("the sidecar stopped serving after {after}: {e}");
        }
    }

    /// The sidecar's resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.sidecar.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

#[tokio::test]
async fn every_hostile_request_of_the_table_gets_a_clear_refusal_and_the_sidecar_keeps_serving() {
    assert!(CASES.len() >= 40, "the table has only {} cases", CASES.len());
    let mut h = Harness::start().await;
    h.assert_still_serving("start").await;
    let rss_before = h.rss_kib();

    let mut failures = Vec::new();
    for case in CASES {
        let request = (case.request)();
        let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(h.sidecar.addr, &request))
            .await
            .unwrap_or_else(|_| panic!("{}: no answer nor close within {EXCHANGE_TIMEOUT:?}", case.name));
        if let Err(e) = judge(&outcome, case.expect) {
            failures.push(format!("{}: expected {:?}, {e}", case.name, case.expect));
        }
        h.assert_still_serving(case.name).await;
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    let rss_after = h.rss_kib();
    eprintln!(
        "{} cases; sidecar RSS {rss_before} KiB before, {rss_after} KiB after",
        CASES.len()
    );
    assert!(
        rss_after < rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over the table"
    );
    assert!(
        !h.sidecar.stderr().contains("panicked"),
        "the sidecar panicked:\n{}",
        h.sidecar.stderr()
    );
}

#[tokio::test]
async fn a_model_name_with_cr_lf_never_becomes_a_response_header() {
    let h = Harness::start().await;
    let outcome = exchange(h.sidecar.addr, &chat_with("model", json!("chat\r\nX-Injected: yes"))).await;

    let Outcome::Answered { status, head, .. } = outcome else {
        panic!("no answer")
    };
    assert_eq!(status, 404);
    assert!(!head.to_ascii_lowercase().contains("x-injected"), "{head}");
}

#[tokio::test]
async fn unknown_fields_reach_the_upstream_untouched() {
    let h = Harness::start().await;
    let mut body = hello();
    body["frobnicate"] = json!({"deep": [1, 2, {"x": null}]});
    body["messages"][0]["x-extra"] = json!("kept");

    let response = h
        .http
        .post(h.sidecar.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let seen = h._upstream.requests();
    assert_eq!(seen[0].body["frobnicate"], body["frobnicate"]);
    assert_eq!(seen[0].body["messages"][0]["x-extra"], "kept");
}

#[tokio::test]
async fn clients_trickling_their_headers_do_not_hold_up_other_clients() {
    let mut h = Harness::start().await;
    let addr = h.sidecar.addr;
    // Slowloris: many connections, each sending its head a byte at a time and never finishing.
    let trickle = (0..64)
        .map(|_| {
            tokio::spawn(async move {
                let mut socket = TcpStream::connect(addr).await.unwrap();
                for byte in b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: " {
                    if socket.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Hold the connection open with its head unfinished.
                std::future::pending::<()>().await;
            })
        })
        .collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(200)).await;

    for i in 0..10 {
        h.assert_still_serving(&format!("good request {i} while 64 clients trickle"))
            .await;
    }
    let response = h.http.get(h.sidecar.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(
        trickle.iter().all(|t| !t.is_finished()),
        "the trickling clients ended early"
    );
    for t in trickle {
        t.abort();
    }
}

/// An HTTP/2 connection with prior knowledge (h2c) to the sidecar.
async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

fn h2_chat(addr: SocketAddr) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    hyper::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(hello().to_string())))
        .unwrap()
}

#[tokio::test]
async fn http2_many_concurrent_streams_on_one_connection_are_all_answered() {
    use http_body_util::BodyExt as _;
    let mut h = Harness::start().await;
    let addr = h.sidecar.addr;
    let sender = h2c(addr).await;

    // More streams than the server's limit of 256 at once: the client queues the excess.
    let requests = (0..600).map(|_| {
        let mut sender = sender.clone();
        async move {
            sender.ready().await.unwrap();
            let response = sender.send_request(h2_chat(addr)).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    });
    let answers = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(requests))
        .await
        .expect("streams hung");

    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
    }
    h.assert_still_serving("600 concurrent HTTP/2 streams").await;
}

#[tokio::test]
async fn http2_rapid_reset_of_thousands_of_streams_leaves_the_sidecar_serving() {
    use http_body_util::BodyExt as _;
    let mut h = Harness::start().await;
    let addr = h.sidecar.addr;
    let rss_before = h.rss_kib();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = h2::client::handshake(stream).await.unwrap();
    let connection = tokio::spawn(connection);

    // HEADERS then RST_STREAM at once, thousands of times (CVE-2023-44487), each stream asking for
    // an upstream call. The server may answer the abuse with GOAWAY: that ends the loop.
    let mut reset = 0;
    for _ in 0..5000 {
        sender = match sender.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        let request = hyper::Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let Ok((_response, mut body)) = sender.send_request(request, false) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
        reset += 1;
    }
    assert!(reset > 0, "no stream was opened");
    connection.abort();

    // A new connection is served.
    let mut fresh = h2c(addr).await;
    fresh.ready().await.unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, fresh.send_request(h2_chat(addr)))
        .await
        .expect("a fresh HTTP/2 request hung")
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await.unwrap();
    h.assert_still_serving(&format!("{reset} reset HTTP/2 streams")).await;
    let rss_after = h.rss_kib();
    assert!(
        rss_after < rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
