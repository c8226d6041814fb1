//! The in-test upstream: one loopback server that speaks OpenAI's, Anthropic's, Google's Gemini
//! and Vertex AI's wire formats, whichever a test starts it with, and misbehaves on command. These
//! answers are how the tests prove the sidecar speaks each provider's real format, so each part
//! answers exactly as its provider does (ids, usage, stream framing, error bodies).
//!
//! | endpoint | wire, in |
//! |---|---|
//! | `POST /v1/chat/completions`, `POST /v1/embeddings` | [`Wire::OpenAi`], [`openai`] |
//! | `POST /v1/messages` | [`Wire::Anthropic`], [`anthropic`] |
//! | `POST /v1beta/models/{model}:{method}` | [`Wire::Gemini`], [`gemini`] |
//! | `POST /v1/projects/…/models/{model}:{method}`, `POST /token`, the metadata server's token | [`Wire::Vertex`], [`vertex`] |
//! | `POST /openai/…`, `POST /{tenant}/oauth2/v2.0/token` | [`Wire::Azure`], [`azure`] |
//! | `POST /model/{modelId}/converse`, `/converse-stream`, `/sts`, `GET /container-credentials` | [`Wire::Bedrock`], [`bedrock`] |
//!
//! A request reaches the wire whose endpoint it names, among those the upstream speaks; any
//! other goes to the first of them, which answers it as its provider answers an unknown URL.
//!
//! What a request gets is chosen by its model (the body's `model`; Gemini's and Vertex's are in
//! the path), so
//! a manifest picks the behaviour per backend through the backend's `model` (the sidecar
//! rewrites the client's alias to it). The names ([`Behaviour::of_model`]):
//!
//! | model | answer |
//! |---|---|
//! | `mock-ok`, `mock-ok-*` (e.g. `mock-ok-a`) | [`OK_CONTENT`], streamed as [`OK_PIECES`], with the usage of [`Tokens::default`] |
//! | `mock-tool` | a [`TOOL_NAME`] call; once the last turn holds its result, [`TOOL_ANSWER_PREFIX`] and the result |
//! | `mock-long-tool` | OpenAI only (chat, and `/v1/responses` streamed): reasoning, then a [`TOOL_NAME`] call whose arguments stream in [`LONG_TOOL_PIECES`] pieces of [`LONG_TOOL_PIECE_CHARS`] characters |
//! | `mock-NNN` (e.g. `mock-429`) | status NNN with the provider's error body ([`RETRY_AFTER_SECS`] to wait on 429) |
//! | `mock-garbage` | 200 whose body (or first event) is not valid JSON |
//! | `mock-cut-stream` | part of the stream (or half the body), then the connection drops |
//! | `mock-slow-stream` | like `mock-ok`, one event every [`SLOW_CHUNK_INTERVAL`] |
//! | `mock-stall` | accepts the request and never answers |
//! | `mock-whole` | like `mock-ok`, always whole: `stream` ignored, as some OpenAI-compatible servers do |
//! | `mock-quote-key` | 401 whose message quotes the whole API key back, as a careless provider might |
//! | `mock-error-event`, `mock-overloaded-early` | Anthropic's `error` event mid-stream, or before any content |
//! | `mock-safety`, `mock-blocked` | Gemini's answer stopped for safety, or its prompt refused |
//! | `gpt-4o-` and one of the above (e.g. `gpt-4o-mock-ok`) | the same, under a name the sidecar counts with OpenAI's `o200k_base` |
//! | anything else | the provider's 404 for an unknown model |
//!
//! A behaviour a provider has no form for is that provider's unknown model. A test can also
//! steer a model from Rust: [`Upstream::script`] queues behaviours its next requests follow
//! (then the name's behaviour again), [`Upstream::set_delay`] delays every answer,
//! [`Upstream::set_usage`] changes the usage it reports, and [`Upstream::hold`] keeps its
//! requests waiting until [`Upstream::release`] lets them go one by one.
//!
//! `GET /_requests` returns every request received (method, path, headers, JSON body) as a JSON
//! array; `DELETE /_requests` forgets them. [`Upstream::requests`] gives the same to Rust tests.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod openai;
mod record;
mod script;
mod server;
pub mod vertex;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hyper::Response;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use self::record::RecordedRequest;
use self::record::Recorder;
pub use self::script::Behaviour;
use self::script::{Controls, Steer};
use crate::http::Body;

/// The streamed pieces of the `mock-ok` answer, in order.
pub const OK_PIECES: [&str; 5] = ["Hello", " from", " the", " mock", " upstream."];
/// The whole `mock-ok` answer.
pub const OK_CONTENT: &str = "Hello from the mock upstream.";
/// Prompt tokens every answer reports (cached ones included), unless told otherwise.
pub const PROMPT_TOKENS: u64 = 12;
/// Completion tokens every answer reports (one per piece), unless told otherwise.
pub const COMPLETION_TOKENS: u64 = 5;
/// Of the prompt tokens, those read from the provider's cache.
pub const CACHED_TOKENS: u64 = 4;
/// Time between two events of `mock-slow-stream`.
pub const SLOW_CHUNK_INTERVAL: Duration = Duration::from_millis(50);
/// The seconds a 429 says to wait (`Retry-After`, or Gemini's `retryDelay`).
pub const RETRY_AFTER_SECS: &str = "2";
/// Vector length of embeddings when the request sets none.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// How many argument pieces `mock-long-tool` streams.
pub const LONG_TOOL_PIECES: usize = 100;
/// Characters in each of them (ASCII, one token per four by the sidecar's estimate).
pub const LONG_TOOL_PIECE_CHARS: usize = 400;

/// The tool every wire's `mock-tool` model calls.
pub const TOOL_NAME: &str = "get_weather";
/// The city it asks about.
pub const TOOL_CITY: &str = "Paris";
/// What `mock-tool` answers once it has the tool's result: this, then the result's text.
pub const TOOL_ANSWER_PREFIX: &str = "The weather in Paris: ";
/// The text before `mock-tool`'s call, where the format has a text block beside it.
pub const TOOL_PREAMBLE: &str = "Let me check the weather.";

/// The arguments of the `mock-tool` call.
pub fn tool_arguments() -> Value {
    json!({"city": TOOL_CITY})
}

/// The text of a message's content: a string, or the `text` of its parts (blocks) joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// The vector the upstream gives input `index`: `index + 0.125 * (j + 1)`, exact in `f32` and JSON.
pub fn embedding_vector(index: usize, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|j| index as f32 + 0.125 * (j as f32 + 1.0))
        .collect()
}

/// The token counts an answer reports; [`CACHED_TOKENS`] of the prompt are always cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt (input) tokens, cached ones included.
    pub prompt: u64,
    /// Completion (output) tokens.
    pub completion: u64,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            prompt: PROMPT_TOKENS,
            completion: COMPLETION_TOKENS,
        }
    }
}

/// A provider's wire format (`openai`, `anthropic`, `gemini` on a command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// OpenAI's Chat Completions and embeddings, under `/v1`.
    #[value(name = "openai")]
    OpenAi,
    /// Anthropic's Messages API, `/v1/messages`.
    Anthropic,
    /// Google's Gemini API, `/v1beta/models/…`.
    Gemini,
    /// Google's Vertex AI (Gemini and Claude models), `/v1/projects/…`, with its token issuers.
    Vertex,
    /// Azure OpenAI, `/openai/…`, and Entra ID's token endpoint.
    Azure,
    /// Amazon Bedrock's Converse API, `/model/…`, SigV4-checked, with an STS endpoint.
    Bedrock,
}

impl Wire {
    /// Every wire.
    pub const ALL: [Wire; 6] = [
        Wire::OpenAi,
        Wire::Anthropic,
        Wire::Gemini,
        Wire::Vertex,
        Wire::Azure,
        Wire::Bedrock,
    ];

    /// The API root a backend of this provider takes as `baseUrl`, as its SDK takes it:
    /// `http://ADDR/v1` for OpenAI, `http://ADDR` for Anthropic, Gemini, Vertex and Azure (the
    /// resource's endpoint, and the Entra authority host).
    pub fn base_url(self, addr: SocketAddr) -> String {
        match self {
            Wire::OpenAi => format!("http://{addr}/v1"),
            Wire::Anthropic | Wire::Gemini | Wire::Vertex | Wire::Azure | Wire::Bedrock => format!("http://{addr}"),
        }
    }

    /// Whether `path` (its query aside) is one of this wire's endpoints.
    fn serves(self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        match self {
            Wire::OpenAi => matches!(
                path,
                "/v1/chat/completions" | "/v1/embeddings" | "/v1/completions" | "/v1/responses"
            ),
            Wire::Anthropic => matches!(path, "/v1/messages" | "/v1/messages/count_tokens"),
            Wire::Gemini => path.starts_with("/v1beta/"),
            Wire::Vertex => vertex::serves(path),
            Wire::Azure => azure::serves(path),
            Wire::Bedrock => {
                path.starts_with("/model/") || path == bedrock::auth::STS_PATH || path == bedrock::auth::CONTAINER_PATH
            }
        }
    }

    /// The model a request to this wire asks for.
    fn model(self, request: &RecordedRequest) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Wire::OpenAi | Wire::Anthropic => request.body.get("model").and_then(Value::as_str).map(Into::into),
            Wire::Gemini => gemini::model(&request.path).map(Into::into),
            Wire::Vertex => vertex::model(&request.path).map(Into::into),
            Wire::Azure => azure::model(request).map(Into::into),
            Wire::Bedrock => bedrock::model(&request.path).map(Into::into),
        }
    }

    /// Answers a request (the `sequence`-th received) as this provider would.
    async fn answer(self, request: &RecordedRequest, sequence: usize, shared: &Shared) -> Response<Body> {
        let controls = &shared.controls;
        match self {
            Wire::OpenAi => openai::answer(request, sequence, controls).await,
            Wire::Anthropic => anthropic::answer(request, sequence, controls).await,
            Wire::Gemini => gemini::answer(request, sequence, controls).await,
            Wire::Vertex => vertex::answer(request, sequence, controls, &shared.vertex_tokens).await,
            Wire::Azure => azure::answer(request, sequence, controls, &shared.azure_tokens).await,
            Wire::Bedrock => bedrock::answer(request, sequence, controls, &shared.bedrock).await,
        }
    }
}

/// What the server shares with the handle.
#[derive(Debug)]
struct Shared {
    /// The wires it speaks; the first answers what none of them serves.
    wires: Vec<Wire>,
    requests: Recorder,
    controls: Controls,
    /// The tokens the Vertex wire's issuers handed out.
    vertex_tokens: vertex::Issued,
    /// The Entra ID tokens the Azure part issued.
    azure_tokens: azure::Issued,
    /// The AWS keys the Bedrock wire accepts and issues.
    bedrock: bedrock::Keys,
}

impl Shared {
    /// The wire a request to `path` reaches.
    fn wire_for(&self, path: &str) -> Wire {
        let first = self.wires.first().copied().unwrap_or(Wire::OpenAi);
        self.wires.iter().copied().find(|w| w.serves(path)).unwrap_or(first)
    }
}

/// A running upstream on loopback, stopped when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream speaking `wires` on a free loopback port.
    pub async fn start(wires: &[Wire]) -> Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), wires).await
    }

    /// Starts an upstream speaking `wires` on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, wires: &[Wire]) -> Result<Self> {
        ensure!(!wires.is_empty(), "an upstream speaks at least one wire format");
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the upstream to {addr}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            wires: wires.to_vec(),
            requests: Recorder::default(),
            controls: Controls::default(),
            vertex_tokens: vertex::Issued::default(),
            azure_tokens: azure::Issued::default(),
            bedrock: bedrock::Keys::default(),
        });
        let server = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, server })
    }

    /// The API root to put in a backend's `baseUrl` for the first wire it speaks (see
    /// [`Wire::base_url`]).
    pub fn base_url(&self) -> String {
        self.base_url_of(self.shared.wire_for(""))
    }

    /// The API root to put in a backend's `baseUrl` for `wire`.
    pub fn base_url_of(&self, wire: Wire) -> String {
        wire.base_url(self.addr)
    }

    /// Every request received so far, oldest first (`/_requests` itself excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// The requests that reached `wire`, oldest first.
    pub fn requests_to(&self, wire: Wire) -> Vec<RecordedRequest> {
        let mut all = self.requests();
        all.retain(|r| self.shared.wire_for(&r.path) == wire);
        all
    }

    /// How many requests for `model` (as the sidecar sent it) arrived.
    pub fn count(&self, model: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| self.shared.wire_for(&r.path).model(r).as_deref() == Some(model))
            .count()
    }

    /// The AWS keys the Bedrock wire accepts and the temporary ones it issued.
    pub fn bedrock_keys(&self) -> &bedrock::Keys {
        &self.shared.bedrock
    }

    /// The next requests for `model` behave as `behaviours` say, one each, in order.
    pub fn script(&self, model: &str, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.shared.controls.script(model, behaviours);
    }

    /// Every answer for `model` waits `delay` first.
    pub fn set_delay(&self, model: &str, delay: Duration) {
        self.shared.controls.set_delay(model, delay);
    }

    /// Answers for `model` report this usage.
    pub fn set_usage(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) {
        let tokens = Tokens {
            prompt: prompt_tokens,
            completion: completion_tokens,
        };
        self.shared.controls.set_tokens(model, tokens);
    }

    /// Expires every Entra ID token the Azure part issued: requests carrying one get Azure's 401.
    pub fn expire_azure_tokens(&self) {
        self.shared.azure_tokens.expire_all();
    }

    /// Requests for `model` arriving from now on wait (already recorded) until released.
    pub fn hold(&self, model: &str) {
        self.shared.controls.hold(model);
    }

    /// Every Vertex access token issued so far stops working: the next call with one is a 401.
    pub fn expire_vertex_tokens(&self) {
        self.shared.vertex_tokens.expire_all();
    }

    /// How many Vertex access tokens were issued: by the JWT-bearer grant, by the metadata server.
    pub fn vertex_tokens_granted(&self) -> (usize, usize) {
        self.shared.vertex_tokens.granted()
    }

    /// Lets `n` held requests for `model` answer, in arrival order.
    pub fn release(&self, model: &str, n: usize) {
        self.shared.controls.release(model, n);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}
