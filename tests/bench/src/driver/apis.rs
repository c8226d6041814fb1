//! The client APIs a run measures: one request per API, so that the same route can be timed as a
//! chat client, a Responses client and an Anthropic Messages client each see it.
//!
//! The sidecar's bench routes are served by `openai-compatible` backends, so a Responses or
//! Messages request is translated to chat on the way up and back on the way down: the figures
//! beside chat are what that translation adds. The direct call and the floor send the same
//! request to the upstream, which answers those paths natively with a fixed body.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::Serialize;

use super::manifests::{FAST_MODEL, STREAM_MODEL};
use super::oha::{Oha, Shape};
use super::results::{ApiResults, Target};
use super::{Endpoint, Plan, measure_with, step, summarize_streams};

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// OpenAI chat completions.
    Chat,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Messages,
}

/// One request kind: where it goes and what it carries.
#[derive(Debug, Clone)]
pub struct RequestKind {
    /// The path, e.g. `/v1/chat/completions`.
    pub path: &'static str,
    /// The JSON body.
    pub body: Bytes,
}

/// The system prompt and question every non-streamed request carries, whatever its API.
const SYSTEM: &str = "You are terse.";
const QUESTION: &str = "Say hello to the benchmark in five words.";
/// The question of a streamed request.
const STREAM_QUESTION: &str = "Count to one hundred.";

impl Api {
    /// Every API, chat first, in report order.
    pub const ALL: [Api; 3] = [Api::Chat, Api::Responses, Api::Messages];

    /// Its name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Api::Chat => "chat completions",
            Api::Responses => "Responses",
            Api::Messages => "Anthropic Messages",
        }
    }

    /// The path a client of this API posts to.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    /// The non-streamed request of the load runs, asking [`FAST_MODEL`] for at most 32 tokens.
    pub fn request(self) -> RequestKind {
        let body = match self {
            Api::Chat => serde_json::json!({
                "model": FAST_MODEL,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
                "max_tokens": 32,
            }),
            Api::Responses => serde_json::json!({
                "model": FAST_MODEL,
                "instructions": SYSTEM,
                "input": QUESTION,
                "max_output_tokens": 32,
            }),
            Api::Messages => serde_json::json!({
                "model": FAST_MODEL,
                "system": SYSTEM,
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": 32,
            }),
        };
        self.kind(&body)
    }

    /// A streamed request for `model` (whose name tells the upstream how to stream).
    pub fn stream_request(self, model: &str) -> RequestKind {
        let body = match self {
            Api::Chat => serde_json::json!({
                "model": model, "stream": true,
                "messages": [{"role": "user", "content": STREAM_QUESTION}],
            }),
            Api::Responses => serde_json::json!({"model": model, "stream": true, "input": STREAM_QUESTION}),
            Api::Messages => serde_json::json!({
                "model": model, "stream": true, "max_tokens": 1024,
                "messages": [{"role": "user", "content": STREAM_QUESTION}],
            }),
        };
        self.kind(&body)
    }

    fn kind(self, body: &serde_json::Value) -> RequestKind {
        RequestKind {
            path: self.path(),
            body: Bytes::from(body.to_string()),
        }
    }
}

/// The targets each API is measured through: the upstream answers every API's path itself, the
/// floor forwards any path, and the full-path sidecar is what a client pays for.
const TARGETS: [Target; 3] = [Target::Direct, Target::Floor, Target::SidecarFull];

/// Measures every API through [`TARGETS`] (one client, then a CPU run), chat again beside the
/// others so that the ratios compare runs made minutes apart at most, then streams each API
/// through the full-path sidecar. Failed requests are noted in `notes`.
pub(super) async fn measure_all(
    oha: &Oha,
    endpoints: &[Endpoint],
    upstream_pid: u32,
    plan: &Plan,
    notes: &mut Vec<String>,
) -> Result<Vec<ApiResults>> {
    let mut results: Vec<ApiResults> = Vec::new();
    let ours: Vec<&Endpoint> = endpoints.iter().filter(|e| TARGETS.contains(&e.target)).collect();
    step("client APIs: warm-up and one client");
    for api in Api::ALL {
        let request = api.request();
        for e in &ours {
            let warm = Shape::Count {
                connections: 8,
                requests: plan.warmup_requests / 4,
            };
            measure_with(
                oha,
                e,
                upstream_pid,
                &request,
                warm,
                notes,
                &format!("{} warm-up", api.label()),
            )
            .await?;
            let one = Shape::Closed {
                connections: 1,
                duration: plan.one_client,
            };
            let what = format!("{} one client", api.label());
            let mut r = ApiResults::new(api, e.target);
            r.one_client = Some(measure_with(oha, e, upstream_pid, &request, one, notes, &what).await?);
            results.push(r);
        }
    }
    step("client APIs: CPU per request");
    for api in Api::ALL {
        let request = api.request();
        for e in &ours {
            let shape = Shape::Count {
                connections: plan.cpu_connections,
                requests: plan.cpu_requests,
            };
            let what = format!("{} CPU run", api.label());
            let load = measure_with(oha, e, upstream_pid, &request, shape, notes, &what).await?;
            if let Some(r) = results.iter_mut().find(|r| r.api == api && r.target == e.target) {
                r.cpu_run = Some(load);
            }
        }
    }
    step("client APIs: streaming through the full-path sidecar");
    if let Some(full) = ours.iter().find(|e| e.target == Target::SidecarFull) {
        for api in Api::ALL {
            let request = api.stream_request(STREAM_MODEL);
            let timings =
                super::streams::time_streams(full.addr, &request, &full.headers, plan.stream_warmup, plan.streams)
                    .await
                    .with_context(|| format!("streaming {} through {}", api.label(), full.target.label()))?;
            if let Some(r) = results.iter_mut().find(|r| r.api == api && r.target == full.target) {
                r.streaming = Some(summarize_streams(&timings));
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_asks_the_fast_model_on_its_own_path() {
        for api in [Api::Chat, Api::Responses, Api::Messages] {
            let req = api.request();
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["model"], FAST_MODEL);
            assert_eq!(req.path, api.path());
            let streamed: serde_json::Value = serde_json::from_slice(&api.stream_request("m").body).unwrap();
            assert_eq!(streamed["stream"], true);
        }
    }
}
