//! Micro-benchmarks of the pure steps every request takes: parsing the body, counting prompt
//! tokens, taking from a token bucket, decoding and framing SSE chunks, reading usage and
//! pricing it. `cargo bench -p sluice-sidecar --bench hot_paths`.
//!
//! They measure; nothing here asserts a time, and `cargo test` does not run them.

// A benchmark's fixtures are constants known to parse: a failure is a bug in the bench itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use divan::{Bencher, black_box};
use serde_json::Value;
use sluice_crds::{Pricing, Provider, Tokens};
use sluice_sidecar::accounting::Usage;
use sluice_sidecar::limits::bucket::TokenBucket;
use sluice_sidecar::request::parse_chat;
use sluice_sidecar::sse::{SseDecoder, encode_data};
use sluice_sidecar::tokenizer::Tokenizer;

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

    #[divan::bench(args = ["o200k", "estimate"])]
    fn count_prompt_tokens_small(b: Bencher, tokenizer: &str) {
        let request = parse_chat(SMALL_CHAT.as_bytes()).unwrap();
        let tokenizer = pick(tokenizer);
        tokenizer.count_chat(&request); // loads the BPE tables outside the measurement
        b.bench(|| tokenizer.count_chat(black_box(&request)));
    }

    #[divan::bench(args = ["o200k", "estimate"])]
    fn count_prompt_tokens_10_turns(b: Bencher, tokenizer: &str) {
        let request = parse_chat(conversation(10).as_bytes()).unwrap();
        let tokenizer = pick(tokenizer);
        tokenizer.count_chat(&request);
        b.bench(|| tokenizer.count_chat(black_box(&request)));
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
        let stream = CHUNK.repeat(100);
        b.counter(divan::counter::ItemsCount::new(100usize)).bench(|| {
            let mut decoder = SseDecoder::new(1 << 20);
            decoder.push(black_box(stream.as_bytes()));
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
            decoder.push(black_box(CHUNK.as_bytes()));
            decoder.next_event().unwrap().unwrap()
        });
    }

    #[divan::bench]
    fn decode_parse_and_reencode_one_chunk(b: Bencher) {
        let mut decoder = SseDecoder::new(1 << 20);
        b.bench_local(|| {
            decoder.push(black_box(CHUNK.as_bytes()));
            let event = decoder.next_event().unwrap().unwrap();
            let value: Value = serde_json::from_str(&event.data).unwrap();
            encode_data(&serde_json::to_vec(&value).unwrap())
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
            output: Tokens(300),
            estimated: false,
        };
        b.bench(|| black_box(usage).cost(black_box(&pricing)));
    }
}
