//! Micro-benchmarks of the pure steps every request takes: parsing the body and choosing its
//! backends, counting prompt tokens, taking from a token bucket, decoding SSE and translating
//! each provider's stream into OpenAI chunks, reading each provider's usage and pricing it.
//! `cargo bench -p sluice-sidecar --bench hot_paths`.
//!
//! They measure; nothing here asserts a time, and `cargo test` does not run them.

// A benchmark's fixtures are constants known to parse: a failure is a bug in the bench itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use divan::{Bencher, black_box};
use serde_json::Value;
use sluice_crds::{Pricing, Provider, Tokens};
use sluice_sidecar::limits::bucket::TokenBucket;
use sluice_sidecar::request::parse_chat;
use sluice_sidecar::sse::{SseDecoder, encode_data_into};
use sluice_sidecar::tokenizer::Tokenizer;
use sluice_sidecar::wire::Usage;

fn main() {
    divan::main();
}

/// The request of the load benchmarks (`tests/bench`): small, two messages.
const SMALL_CHAT: &str = concat!(
    r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},"#,
    r#"{"role":"user","content":"Say hello to the benchmark in five words."}],"max_tokens":32}"#
);

/// A chat request with a conversation of `turns` exchanges of about 400 characters each.
fn conversation(turns: usize) -> String {
    let text = "The quick brown fox jumps over the lazy dog while the benchmark counts every token. ".repeat(5);
    let mut messages = vec![serde_json::json!({"role": "system", "content": "You are a helpful assistant."})];
    for i in 0..turns {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": text}));
    }
    serde_json::json!({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "stream": true,
        "stream_options": {"include_usage": true}, "user": "bench-user"})
    .to_string()
}

/// One OpenAI stream chunk as an upstream sends it.
const CHUNK: &str = concat!(
    "data: ",
    r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","#,
    r#""choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}"#,
    "\n\n"
);

mod request {
    use super::*;

    #[divan::bench]
    fn parse_small_chat(b: Bencher) {
        b.bench(|| parse_chat(black_box(SMALL_CHAT.as_bytes())).unwrap());
    }

    #[divan::bench(args = [10, 50])]
    fn parse_conversation(b: Bencher, turns: usize) {
        let body = conversation(turns);
        b.counter(divan::counter::BytesCount::new(body.len()))
            .bench(|| parse_chat(black_box(body.as_bytes())).unwrap());
    }

    /// The same request every time: with a BPE, its texts' counts are remembered after the
    /// first (`tokenizer::memo`), so this is the cost of a hit.
    #[divan::bench(args = ["o200k", "estimate"])]
    fn count_prompt_tokens_small(b: Bencher, tokenizer: &str) {
        let request = parse_chat(SMALL_CHAT.as_bytes()).unwrap();
        let tokenizer = pick(tokenizer);
        tokenizer.count_chat(&request); // loads the BPE tables outside the measurement
        b.bench(|| tokenizer.count_chat(black_box(&request)));
    }

    /// As above, ten turns of about 400 characters each.
    #[divan::bench(args = ["o200k", "estimate"])]
    fn count_prompt_tokens_10_turns(b: Bencher, tokenizer: &str) {
        let request = parse_chat(conversation(10).as_bytes()).unwrap();
        let tokenizer = pick(tokenizer);
        tokenizer.count_chat(&request);
        b.bench(|| tokenizer.count_chat(black_box(&request)));
    }

    /// A text never counted before (a miss): the BPE itself, plus the memo's hash and store.
    #[divan::bench]
    fn count_unseen_text_o200k(b: Bencher) {
        let tokenizer = pick("o200k");
        tokenizer.count("loads the tables");
        let mut take = 0u64;
        b.with_inputs(|| {
            take += 1;
            format!("Say hello to the benchmark in five words, take {take}.")
        })
        .bench_local_refs(|text| tokenizer.count(text));
    }

    fn pick(name: &str) -> Tokenizer {
        match name {
            "o200k" => Tokenizer::for_backend(Provider::Openai, "gpt-4o-mini"),
            _ => Tokenizer::for_backend(Provider::OpenaiCompatible, "deepseek-chat"),
        }
    }
}

mod limits {
    use super::*;

    #[divan::bench]
    fn token_bucket_take(b: Bencher) {
        let bucket = TokenBucket::new(u32::MAX, Duration::from_secs(60));
        let now = tokio::time::Instant::now();
        b.bench(|| bucket.take(black_box(1), now));
    }
}

mod sse {
    use super::*;

    /// Decoding a 100-chunk stream that arrives in one read.
    #[divan::bench]
    fn decode_100_chunks(b: Bencher) {
        let stream = bytes::Bytes::from(CHUNK.repeat(100));
        b.counter(divan::counter::ItemsCount::new(100usize)).bench(|| {
            let mut decoder = SseDecoder::new(1 << 20);
            decoder.push(black_box(stream.clone()));
            let mut n = 0;
            while let Some(event) = decoder.next_event() {
                black_box(event.unwrap());
                n += 1;
            }
            n
        });
    }

    /// Decoding chunks that arrive one per read, as a paced stream does.
    #[divan::bench]
    fn decode_one_chunk_per_read(b: Bencher) {
        let mut decoder = SseDecoder::new(1 << 20);
        b.bench_local(|| {
            decoder.push(black_box(bytes::Bytes::from_static(CHUNK.as_bytes())));
            decoder.next_event().unwrap().unwrap()
        });
    }

    #[divan::bench]
    fn decode_parse_and_reencode_one_chunk(b: Bencher) {
        let mut decoder = SseDecoder::new(1 << 20);
        b.bench_local(|| {
            decoder.push(black_box(bytes::Bytes::from_static(CHUNK.as_bytes())));
            let event = decoder.next_event().unwrap().unwrap();
            let value: Value = serde_json::from_str(&event.data).unwrap();
            let mut out = bytes::BytesMut::new();
            encode_data_into(&mut out, &serde_json::to_vec(&value).unwrap());
            out
        });
    }
}

mod accounting {
    use super::*;

    #[divan::bench]
    fn usage_from_openai(b: Bencher) {
        let usage: Value = serde_json::from_str(
            r#"{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":1024}}"#,
        )
        .unwrap();
        b.bench(|| Usage::from_openai(black_box(&usage)).unwrap());
    }

    #[divan::bench]
    fn usage_cost(b: Bencher) {
        let pricing: Pricing =
            serde_json::from_str(r#"{"inputPerMTok":"2.00","outputPerMTok":"8.00","cachedInputPerMTok":"0.50"}"#)
                .unwrap();
        let usage = Usage {
            input: Tokens(1200),
            cached_input: Tokens(1024),
            cache_write_input: Tokens(0),
            output: Tokens(300),
            estimated: false,
        };
        b.bench(|| black_box(usage).cost(black_box(&pricing)));
    }
}

/// The full feature path's route of the load benchmarks (`tests/bench/src/driver/manifests.rs`):
/// two priced backends, two content rules, limits and a budget.
const FULL_ROUTE: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: bench, namespace: bench}
stringData: {apiKey: sk-bench-not-a-secret}
---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {name: bench, namespace: bench}
spec: {limitUSD: "1000000.00", period: monthly, timeZone: UTC, enforcement: hard, alertThresholds: [50, 80, 100]}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: fast, namespace: bench}
spec:
  models: [gpt-4o-mini]
  strategy: priority
  backends:
  - name: primary
    provider: openai-compatible
    baseUrl: http://127.0.0.1:9/v1
    model: gpt-4o-mini
    priority: 0
    credentialsRef: {name: bench, key: apiKey}
    pricing: {inputPerMTok: "2.00", outputPerMTok: "8.00", cachedInputPerMTok: "0.50"}
    limits: {requestsPerMinute: 1000000000, tokensPerMinute: 4000000000, maxConcurrency: 4096}
  - name: secondary
    provider: openai-compatible
    baseUrl: http://127.0.0.1:9/v1
    model: gpt-4o-mini
    priority: 1
    credentialsRef: {name: bench, key: apiKey}
    pricing: {inputPerMTok: "2.00", outputPerMTok: "8.00", cachedInputPerMTok: "0.50"}
  rules:
  - when: {maxPromptTokens: 2000, anyKeyword: [translate, summarize]}
    backends: [secondary]
  - when: {header: {name: x-sluice-tier, value: premium}}
    backends: [secondary]
  rateLimit: {requestsPerMinute: 1000000000, tokensPerMinute: 4000000000}
  perUser: {requestsPerMinute: 1000000000, tokensPerMinute: 4000000000, requestsPerDay: 4000000000}
  budgetRef: {name: bench}
"#;

mod route {
    use std::sync::Arc;

    use http::HeaderMap;
    use sluice_sidecar::{
        accounting::recorder::Recorder,
        config::{ActiveConfig, ConfigStore},
        route::{
            facts::{Body, Facts},
            plan::Constraints,
        },
    };

    use super::*;

    fn full_config() -> Arc<ActiveConfig> {
        let dir = std::env::temp_dir().join(format!("sluice-hot-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bench.yaml"), FULL_ROUTE).unwrap();
        let loaded = sluice_sidecar::manifests::load(&dir, &|_| None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let store = ConfigStore::new(Recorder::default());
        store.apply(&loaded.snapshot).unwrap();
        store.current().unwrap()
    }

    /// Parsing the body, resolving its model to the route, evaluating the rules (which count
    /// the prompt with `o200k_base`: the full route's rule bounds prompt tokens) and ordering the
    /// backends: what the full feature path does before it admits.
    #[divan::bench]
    fn parse_and_plan(b: Bencher) {
        let config = full_config();
        let mut headers = HeaderMap::new();
        headers.insert("x-sluice-user", "bench-user".parse().unwrap());
        b.bench_local(|| {
            let request = parse_chat(black_box(SMALL_CHAT.as_bytes())).unwrap();
            let route = config.routes.resolve(&request.model).unwrap();
            let facts = Facts::new(Body::Chat(&request), &headers, route.tokenizer);
            let plan = route
                .plan(&facts, Constraints::default(), tokio::time::Instant::now())
                .unwrap();
            plan.candidates.len()
        });
    }

    /// Resolving the model and ordering the backends of a parsed request whose prompt tokens
    /// are already counted: the routing itself.
    #[divan::bench]
    fn plan_counted(b: Bencher) {
        let config = full_config();
        let headers = HeaderMap::new();
        let request = parse_chat(SMALL_CHAT.as_bytes()).unwrap();
        let route = config.routes.resolve(&request.model).unwrap();
        let facts = Facts::new(Body::Chat(&request), &headers, route.tokenizer);
        facts.prompt_tokens();
        b.bench_local(|| {
            let route = config.routes.resolve(black_box(&request.model)).unwrap();
            route
                .plan(&facts, Constraints::default(), tokio::time::Instant::now())
                .unwrap()
                .candidates
                .len()
        });
    }
}

/// Each provider's streamed answer of 100 text chunks, translated into OpenAI chunks.
mod translate_stream {
    use bytes::Bytes;
    use futures::StreamExt as _;
    use sluice_sidecar::providers::{ChunkStream, StreamEvent, anthropic, gemini, openai};

    use super::*;

    const CHUNKS: usize = 100;

    fn openai_body() -> String {
        let mut body = CHUNK.repeat(CHUNKS);
        body.push_str(concat!(
            "data: ",
            r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","#,
            r#""choices":[],"usage":{"prompt_tokens":12,"completion_tokens":100,"total_tokens":112}}"#,
            "\n\ndata: [DONE]\n\n"
        ));
        body
    }

    fn anthropic_body() -> String {
        let event = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
        let mut body = event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        );
        body += &event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        );
        for _ in 0..CHUNKS {
            body += &event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" tok"}}"#,
            );
        }
        body += &event("content_block_stop", r#"{"type":"content_block_stop","index":0}"#);
        body += &event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":100}}"#,
        );
        body += &event("message_stop", r#"{"type":"message_stop"}"#);
        body
    }

    fn gemini_body() -> String {
        let mut body = String::new();
        for i in 0..CHUNKS {
            let finish = if i + 1 == CHUNKS {
                r#","finishReason":"STOP""#
            } else {
                ""
            };
            body += &format!(
                "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\" tok\"}}],\"role\":\"model\"}},\"index\":0{finish}}}],\
                 \"usageMetadata\":{{\"promptTokenCount\":12,\"candidatesTokenCount\":{i},\"totalTokenCount\":{}}},\
                 \"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"bench\"}}\r\n\r\n",
                12 + i
            );
        }
        body
    }

    /// Drives `translate` over `body` arriving in one read; returns the data chunks.
    fn run(rt: &tokio::runtime::Runtime, body: &str, translate: impl Fn(Bytes) -> ChunkStream) -> usize {
        let stream = translate(Bytes::copy_from_slice(body.as_bytes()));
        rt.block_on(
            stream
                .filter(|e| std::future::ready(matches!(e, Ok(StreamEvent::Data(_)))))
                .count(),
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(3600)
    }

    fn once(bytes: Bytes) -> impl sluice_sidecar::providers::BodyStream {
        futures::stream::iter([Ok(bytes)])
    }

    /// OpenAI to OpenAI: each chunk parsed for usage and passed through.
    #[divan::bench]
    fn openai_pass_through(b: Bencher) {
        bench_openai(b, &openai_body());
    }

    /// OpenAI to OpenAI as OpenAI streams once usage is asked for: `"usage": null` on every
    /// chunk, taken out of each for a client that did not ask.
    #[divan::bench]
    fn openai_null_usage_stripped(b: Bencher) {
        bench_openai(
            b,
            &openai_body().replace(r#""choices":[{"#, r#""usage":null,"choices":[{"#),
        );
    }

    /// The OpenAI stream translation over `body`, for a client that did not ask for usage.
    fn bench_openai(b: Bencher, body: &str) {
        let rt = runtime();
        let translate = |bytes| openai::translate_body(once(bytes), deadline(), false);
        assert_eq!(run(&rt, body, translate), CHUNKS);
        b.counter(divan::counter::ItemsCount::new(CHUNKS))
            .bench_local(|| run(&rt, black_box(body), translate));
    }

    /// Anthropic's Messages events to OpenAI chunks.
    #[divan::bench]
    fn anthropic_to_openai(b: Bencher) {
        let (rt, body) = (runtime(), anthropic_body());
        let translate = |bytes| anthropic::translate_body(once(bytes), deadline(), false, 1_700_000_000);
        assert!(run(&rt, &body, translate) >= CHUNKS);
        b.counter(divan::counter::ItemsCount::new(CHUNKS))
            .bench_local(|| run(&rt, black_box(&body), translate));
    }

    /// Gemini's `streamGenerateContent` answers to OpenAI chunks.
    #[divan::bench]
    fn gemini_to_openai(b: Bencher) {
        let (rt, body) = (runtime(), gemini_body());
        let translate = |bytes| {
            gemini::translate_body(
                once(bytes),
                deadline(),
                false,
                1_700_000_000,
                "gemini-2.5-flash",
                "bench",
            )
        };
        assert!(run(&rt, &body, translate) >= CHUNKS);
        b.counter(divan::counter::ItemsCount::new(CHUNKS))
            .bench_local(|| run(&rt, black_box(&body), translate));
    }
}

/// A whole answer of each provider read for its usage (OpenAI's passes through; the others are
/// translated into an OpenAI completion, which is where their usage is read).
mod usage_per_provider {
    use sluice_sidecar::{formats::openai::usage::openai_usage, providers::anthropic, providers::gemini};

    use super::*;

    const OPENAI: &str = concat!(
        r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","#,
        r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, benchmark: five words."},"#,
        r#""finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"#,
        r#""prompt_tokens_details":{"cached_tokens":0}}}"#
    );

    const ANTHROPIC: &str = concat!(
        r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","#,
        r#""content":[{"type":"text","text":"Hello there, benchmark: five words."}],"stop_reason":"end_turn","#,
        r#""usage":{"input_tokens":12,"output_tokens":9,"cache_read_input_tokens":0}}"#
    );

    const GEMINI: &str = concat!(
        r#"{"candidates":[{"content":{"parts":[{"text":"Hello there, benchmark: five words."}],"role":"model"},"#,
        r#""finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":9,"#,
        r#""totalTokenCount":21},"modelVersion":"gemini-2.5-flash","responseId":"bench"}"#
    );

    /// The answer checked to be a JSON object and its usage read, nothing else built.
    #[divan::bench]
    fn openai_answer(b: Bencher) {
        assert!(openai_usage(OPENAI.as_bytes()).unwrap().is_some());
        b.bench(|| openai_usage(black_box(OPENAI.as_bytes())).unwrap());
    }

    /// The same answer parsed into a `serde_json::Value` first (what the sidecar did before).
    #[divan::bench]
    fn openai_answer_via_value(b: Bencher) {
        b.bench(|| {
            let value: Value = serde_json::from_slice(black_box(OPENAI.as_bytes())).unwrap();
            value.get("usage").and_then(Usage::from_openai)
        });
    }

    #[divan::bench]
    fn anthropic_answer(b: Bencher) {
        assert!(
            anthropic::parse_message(ANTHROPIC.as_bytes(), 1_700_000_000)
                .unwrap()
                .usage
                .is_some()
        );
        b.bench(|| {
            anthropic::parse_message(black_box(ANTHROPIC.as_bytes()), 1_700_000_000)
                .unwrap()
                .usage
        });
    }

    #[divan::bench]
    fn gemini_answer(b: Bencher) {
        b.bench(|| {
            let answer = gemini::parse_answer(black_box(GEMINI.as_bytes())).unwrap();
            gemini::complete_answer(answer, "gemini-2.5-flash", 1_700_000_000, "bench")
                .unwrap()
                .usage
        });
    }
}
