//! The built-in simulator: a model with configurable latency, length and failures, no network.
//! It serves the no-key quickstart, demos and load tests, and is deterministic under a seed.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sluice_crds::{SimulatedError, SimulatorSpec, Tokens};

use super::{ChatCall, Complete, EmbeddingsCall, ProviderError, Reply, StreamEvent, unix_now};
use crate::wire::{Usage, estimate_tokens};

const WORDS: [&str; 24] = [
    "the", "gateway", "routes", "each", "request", "to", "a", "healthy", "backend", "and", "counts", "every", "token",
    "so", "teams", "know", "what", "they", "spend", "before", "invoice", "arrives", "quickly", "today",
];

/// A simulated model.
#[derive(Debug)]
pub struct Simulator {
    spec: SimulatorSpec,
    seed: u64,
    calls: AtomicU64,
}

/// What one simulated call does, drawn from the seeded generator.
#[derive(Debug)]
struct Draw {
    call: u64,
    fails: bool,
    words: Vec<&'static str>,
    truncated: bool,
}

impl Simulator {
    /// A simulator; without a seed it draws one from the clock.
    pub fn new(spec: SimulatorSpec) -> Self {
        let seed = spec.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Self {
            spec,
            seed,
            calls: AtomicU64::new(0),
        }
    }

    /// Draws the n-th call's outcome: the same seed gives the same sequence.
    fn draw(&self, cap: Option<u32>) -> Draw {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let fails = rng.random_ratio(self.spec.error_rate.millionths(), 1_000_000);
        let wanted = self.spec.output_tokens;
        let n = cap.map_or(wanted, |c| c.min(wanted));
        let words = (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
        Draw {
            call,
            fails,
            words,
            truncated: n < wanted,
        }
    }

    fn failure(&self) -> ProviderError {
        let (status, kind, message, retry_after) = match self.spec.error_kind {
            SimulatedError::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "simulated server error",
                None,
            ),
            SimulatedError::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "simulated rate limit",
                Some(std::time::Duration::from_secs(1)),
            ),
            SimulatedError::Overloaded => (
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
                "simulated overload",
                None,
            ),
        };
        let body = json!({"error": {"message": message, "type": kind, "code": null, "param": null}});
        ProviderError::Status {
            status,
            retry_after,
            body: Bytes::from(body.to_string()),
        }
    }

    /// Answers a chat request after the configured delays.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let draw = self.draw(call.request.completion_cap());
        tokio::time::sleep(self.spec.time_to_first_token.get()).await;
        if draw.fails {
            return Err(self.failure());
        }
        let usage = Usage {
            input: estimate_tokens(call.request.prompt_chars()),
            cached_input: Tokens(0),
            cache_write_input: Tokens(0),
            output: Tokens(draw.words.len() as u64),
            estimated: false,
        };
        let id = format!("chatcmpl-sim-{:x}-{}", self.seed, draw.call);
        let model = call.model.to_string();
        let finish = if draw.truncated { "length" } else { "stop" };
        if !call.request.is_stream() {
            tokio::time::sleep(self.spec.per_token.get() * draw.words.len() as u32).await;
            let body = json!({
                "id": id, "object": "chat.completion", "created": unix_now(), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": draw.words.join(" ")},
                             "logprobs": null, "finish_reason": finish}],
                "usage": usage.to_openai(),
            });
            return Ok(Reply::Complete(Complete {
                body: Bytes::from(body.to_string()),
                usage: Some(usage),
            }));
        }
        let per_token = self.spec.per_token.get();
        let wants_usage = call.request.wants_stream_usage();
        let created = unix_now();
        let chunk = move |delta: Value, finish: Option<&str>| {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
            if wants_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        let mut payloads = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        for (i, word) in draw.words.iter().enumerate() {
            let text = if i == 0 { (*word).to_owned() } else { format!(" {word}") };
            payloads.push(chunk(json!({"content": text}), None));
        }
        payloads.push(chunk(json!({}), Some(finish)));
        let mut tail = vec![Ok(StreamEvent::Usage(usage))];
        if wants_usage {
            let mut last = payloads[0].clone();
            last["choices"] = json!([]);
            last["usage"] = usage.to_openai();
            tail.push(Ok(StreamEvent::Data(Bytes::from(last.to_string()))));
        }
        let content_chunks =
            futures::stream::iter(payloads.into_iter().enumerate()).then(move |(i, payload)| async move {
                // The role chunk and the first word go out at once; each further word takes `perToken`.
                if i > 1 {
                    tokio::time::sleep(per_token).await;
                }
                Ok(StreamEvent::Data(Bytes::from(payload.to_string())))
            });
        let stream = content_chunks.chain(futures::stream::iter(tail));
        Ok(Reply::Stream(Box::pin(stream)))
    }

    /// Answers an embeddings request with vectors derived from each text, so equal texts embed equally.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        let draw = self.draw(Some(0));
        tokio::time::sleep(self.spec.time_to_first_token.get()).await;
        if draw.fails {
            return Err(self.failure());
        }
        let texts = call.request.input.texts();
        let dims = self.spec.embedding_dimensions as usize;
        let data: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": self.vector(text, dims)}))
            .collect();
        let chars = texts.iter().map(|t| t.chars().count()).sum();
        let usage = Usage {
            input: estimate_tokens(chars),
            ..Usage::default()
        };
        let body = json!({
            "object": "list", "data": data, "model": call.model.to_string(),
            "usage": {"prompt_tokens": usage.input.0, "total_tokens": usage.input.0},
        });
        Ok(Complete {
            body: Bytes::from(body.to_string()),
            usage: Some(usage),
        })
    }

    /// A unit vector seeded by the text (FNV-1a) and the simulator's seed.
    fn vector(&self, text: &str, dims: usize) -> Vec<f32> {
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ hash);
        let raw: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0_f32..1.0)).collect();
        let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
        raw.into_iter().map(|x| x / norm).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_chat;
    use sluice_crds::{Duration, ModelName, Ratio};

    fn spec(seed: u64) -> SimulatorSpec {
        SimulatorSpec {
            time_to_first_token: Duration::from_millis(80),
            per_token: Duration::from_millis(5),
            output_tokens: 8,
            seed: Some(seed),
            ..SimulatorSpec::default()
        }
    }

    async fn answer(sim: &Simulator, body: &str) -> Result<Value, ProviderError> {
        let request = parse_chat(body.as_bytes()).unwrap();
        let model = ModelName::try_from("sim-1").unwrap();
        let call = ChatCall {
            request: &request,
            model: &model,
            deadline: tokio::time::Instant::now(),
        };
        match sim.chat(&call).await? {
            Reply::Complete(c) => Ok(serde_json::from_slice(&c.body).unwrap()),
            Reply::Stream(s) => {
                let items: Vec<_> = s.collect().await;
                Ok(Value::Array(
                    items
                        .into_iter()
                        .filter_map(|i| match i {
                            Ok(StreamEvent::Data(b)) => Some(serde_json::from_slice(&b).unwrap()),
                            _ => None,
                        })
                        .collect(),
                ))
            }
        }
    }

    const HI: &str = r#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;

    #[tokio::test(start_paused = true)]
    async fn same_seed_gives_same_answers() {
        let (a, b) = (Simulator::new(spec(7)), Simulator::new(spec(7)));
        for _ in 0..3 {
            let (x, y) = (answer(&a, HI).await.unwrap(), answer(&b, HI).await.unwrap());
            assert_eq!(x["choices"], y["choices"]);
        }
        let c = Simulator::new(spec(8));
        assert_ne!(
            answer(&c, HI).await.unwrap()["choices"],
            answer(&Simulator::new(spec(7)), HI).await.unwrap()["choices"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn takes_first_token_plus_per_token_time() {
        let sim = Simulator::new(spec(1));
        let start = tokio::time::Instant::now();
        let v = answer(&sim, HI).await.unwrap();
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(80 + 8 * 5));
        assert_eq!(v["usage"]["completion_tokens"], 8);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test(start_paused = true)]
    async fn caps_output_at_max_tokens_and_says_length() {
        let sim = Simulator::new(spec(1));
        let v = answer(
            &sim,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#,
        )
        .await
        .unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    #[tokio::test(start_paused = true)]
    async fn streams_role_words_and_finish_with_usage_when_asked() {
        let sim = Simulator::new(spec(1));
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let chunks = answer(&sim, body).await.unwrap();
        let chunks = chunks.as_array().unwrap();
        // role, 8 words, finish, usage
        assert_eq!(chunks.len(), 11);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[10]["usage"]["completion_tokens"], 8);
    }

    #[tokio::test(start_paused = true)]
    async fn fails_at_the_configured_rate_with_the_configured_kind() {
        let always = SimulatorSpec {
            error_rate: "1".parse::<Ratio>().unwrap(),
            error_kind: SimulatedError::RateLimited,
            ..spec(3)
        };
        let sim = Simulator::new(always);
        match answer(&sim, HI).await {
            Err(ProviderError::Status {
                status, retry_after, ..
            }) => {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(1)));
            }
            other => panic!("expected a simulated 429, got {other:?}"),
        }
    }
}
