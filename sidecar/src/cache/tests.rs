use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_crds::{ByteSize, Tokens};

use super::*;
use crate::{request::parse_chat, wire::StreamEvent};

fn policy(ttl_secs: u64, max_bytes: u64) -> CachePolicy {
    CachePolicy {
        ttl: sluice_crds::Duration::from_secs(ttl_secs),
        max_bytes: ByteSize::new(max_bytes),
    }
}

fn some_key(text: &str) -> Key {
    let route = sluice_crds::ObjectKey {
        namespace: "ns".into(),
        name: "r".into(),
    };
    let body = json!({"model": "m", "messages": [{"role": "user", "content": text}], "temperature": 0});
    key::key(&route, &parse_chat(body.to_string().as_bytes()).unwrap())
}

fn backend() -> BackendName {
    BackendName::try_from("b").unwrap()
}

fn usage() -> Usage {
    Usage {
        input: Tokens(3),
        cached_input: Tokens(0),
        cache_write_input: Tokens(0),
        output: Tokens(2),
        estimated: false,
    }
}

async fn miss(cache: &Arc<Cache>, key: Key) -> Fill {
    match cache.lookup(key, Instant::now() + Duration::from_secs(60)).await {
        Lookup::Miss(fill) => fill,
        Lookup::Hit(_) => panic!("expected a miss"),
    }
}

async fn hit(cache: &Arc<Cache>, key: Key) -> Arc<Entry> {
    match cache.lookup(key, Instant::now() + Duration::from_secs(60)).await {
        Lookup::Hit(entry) => entry,
        Lookup::Miss(_) => panic!("expected a hit"),
    }
}

const DOC: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

#[tokio::test(start_paused = true)]
async fn stores_an_answer_and_serves_it_until_the_ttl() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    miss(&cache, key)
        .await
        .complete(backend(), Bytes::from_static(DOC.as_bytes()), Some(usage()));
    let entry = hit(&cache, key).await;
    assert_eq!(replay::complete(&entry).unwrap(), DOC.as_bytes());
    tokio::time::advance(Duration::from_secs(59)).await;
    hit(&cache, key).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(miss(&cache, key).await);
    assert_eq!(cache.level().hits, 2);
    assert_eq!(cache.level().misses, 2);
}

#[tokio::test(start_paused = true)]
async fn identical_lookups_wait_for_the_leader_and_hit_its_answer() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    let leader = miss(&cache, key).await;
    let followers: Vec<_> = (0..19)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                matches!(
                    cache.lookup(key, Instant::now() + Duration::from_secs(60)).await,
                    Lookup::Hit(_)
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.complete(backend(), Bytes::from_static(DOC.as_bytes()), None);
    for f in followers {
        assert!(f.await.unwrap(), "every follower is answered from the leader's answer");
    }
    assert_eq!(cache.level().misses, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_leader_hands_the_lead_to_one_waiter() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    let leader = miss(&cache, key).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.lookup(key, Instant::now() + Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(leader);
    assert!(matches!(waiter.await.unwrap(), Lookup::Miss(_)));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_goes_upstream_itself_when_the_leader_outlasts_its_deadline() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    let _leader = miss(&cache, key).await;
    let started = Instant::now();
    let lookup = cache.lookup(key, started + Duration::from_secs(5)).await;
    assert!(matches!(lookup, Lookup::Miss(Fill { flight: None, .. })));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn answers_larger_than_the_cache_are_not_stored() {
    let cache = Arc::new(Cache::new(policy(60, 100)));
    let key = some_key("hi");
    miss(&cache, key)
        .await
        .complete(backend(), Bytes::from(vec![b' '; 200]), None);
    drop(miss(&cache, key).await);
}

fn chunk(delta: Value, finish: Value) -> Bytes {
    Bytes::from(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null})
        .to_string(),
    )
}

async fn replayed(stream: crate::wire::ChunkStream) -> (Vec<Value>, Option<Usage>) {
    let items: Vec<_> = stream.collect().await;
    let mut chunks = Vec::new();
    let mut usage = None;
    for item in items {
        match item.unwrap() {
            StreamEvent::Data(d) => chunks.push(serde_json::from_slice(&d).unwrap()),
            StreamEvent::Usage(u) => usage = Some(u),
        }
    }
    (chunks, usage)
}

#[tokio::test(start_paused = true)]
async fn a_recorded_stream_replays_as_a_stream_and_as_a_document() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    let mut recorder = miss(&cache, key).await.record(backend());
    recorder.chunk(&chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    recorder.chunk(&chunk(json!({"content": "Hello"}), Value::Null));
    recorder.chunk(&chunk(json!({"content": " there"}), Value::Null));
    recorder.chunk(&chunk(json!({"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}), Value::Null));
    recorder.chunk(&chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        Value::Null,
    ));
    recorder.chunk(&chunk(json!({}), json!("stop")));
    recorder.chunk(&Bytes::from(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        .to_string(),
    ));
    recorder.usage(usage());
    recorder.finish();
    let entry = hit(&cache, key).await;

    let (chunks, metered) = replayed(replay::stream(&entry, false).unwrap()).await;
    assert_eq!(
        chunks.len(),
        6,
        "the usage chunk is not replayed to a client that did not ask"
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(metered, Some(usage()));
    let (chunks, _) = replayed(replay::stream(&entry, true).unwrap()).await;
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 5);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));

    let doc: Value = serde_json::from_slice(&replay::complete(&entry).unwrap()).unwrap();
    assert_eq!(doc["object"], "chat.completion");
    assert_eq!(doc["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(
        doc["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    assert_eq!(doc["choices"][0]["message"]["tool_calls"][0]["id"], "t1");
    assert_eq!(doc["choices"][0]["finish_reason"], "stop");
    assert_eq!(doc["usage"]["prompt_tokens"], 3);
}

#[tokio::test(start_paused = true)]
async fn a_stored_document_replays_as_a_stream() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    miss(&cache, key)
        .await
        .complete(backend(), Bytes::from_static(DOC.as_bytes()), Some(usage()));
    let entry = hit(&cache, key).await;
    let (chunks, _) = replayed(replay::stream(&entry, false).unwrap()).await;
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "Hello there");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_is_not_stored() {
    let cache = Arc::new(Cache::new(policy(60, 1 << 20)));
    let key = some_key("hi");
    let mut recorder = miss(&cache, key).await.record(backend());
    recorder.chunk(&chunk(json!({"content": "Hel"}), Value::Null));
    drop(recorder);
    drop(miss(&cache, key).await);
}
