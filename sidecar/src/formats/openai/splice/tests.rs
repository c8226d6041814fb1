//! Splicing into a client's bytes, against exact outputs and the serialized form it replaces.

use serde_json::{Value, json};

use super::*;
use crate::request::{parse_chat, parse_completions, parse_embeddings};

fn model_only(model: &str) -> Edits<'_> {
    Edits {
        model,
        stream_options: None,
    }
}

fn spliced(raw: &str, edits: Edits<'_>) -> String {
    String::from_utf8(splice(raw.as_bytes(), edits).unwrap().to_vec()).unwrap()
}

fn usage_on() -> StreamOptions {
    StreamOptions {
        include_usage: Some(true),
        ..StreamOptions::default()
    }
}

#[test]
fn replaces_only_the_model_and_keeps_every_other_byte() {
    let raw = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"hi\"} ],\n  \"model\" :  \"client\" , \"temperature\":0.50 }\n";
    assert_eq!(
        spliced(raw, model_only("gpt-4o")),
        "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"hi\"} ],\n  \"model\" :  \"gpt-4o\" , \"temperature\":0.50 }\n"
    );
}

#[test]
fn a_model_with_escapes_and_unicode_is_read_and_written_as_json() {
    let raw = r#"{"model":"a\"b\u00e9\\c","messages":[]}"#;
    assert_eq!(
        spliced(raw, model_only("dé\"p\u{1F600}")),
        r#"{"model":"dé\"p😀","messages":[]}"#
    );
}

#[test]
fn an_escaped_key_that_reads_model_is_the_model() {
    let raw = r#"{"mod\u0065l":"client","messages":[]}"#;
    assert_eq!(spliced(raw, model_only("m")), r#"{"mod\u0065l":"m","messages":[]}"#);
}

#[test]
fn a_model_nested_in_another_member_is_left_alone() {
    let raw = r#"{"tools":[{"type":"function","function":{"name":"f","parameters":{"model":"x"}}}],"metadata":{"model":"y"},"model":"client","messages":[{"role":"user","content":"{\"model\":\"z\"}"}]}"#;
    let out: Value = serde_json::from_str(&spliced(raw, model_only("m"))).unwrap();
    assert_eq!(out["model"], "m");
    assert_eq!(out["tools"][0]["function"]["parameters"]["model"], "x");
    assert_eq!(out["metadata"]["model"], "y");
    assert_eq!(out["messages"][0]["content"], "{\"model\":\"z\"}");
}

#[test]
fn every_repeat_of_a_key_gets_the_backends_value() {
    let raw = r#"{"model":"a","messages":[],"model":"b"}"#;
    assert_eq!(
        spliced(raw, model_only("m")),
        r#"{"model":"m","messages":[],"model":"m"}"#
    );
    let options = usage_on();
    let edits = Edits {
        model: "m",
        stream_options: Some(&options),
    };
    let raw = r#"{"model":"a","stream_options":null,"stream":true,"stream_options":{"include_usage":false}}"#;
    assert_eq!(
        spliced(raw, edits),
        r#"{"model":"m","stream_options":{"include_usage":true},"stream":true,"stream_options":{"include_usage":true}}"#
    );
}

#[test]
fn stream_options_are_added_when_absent_and_replaced_when_null_or_false() {
    let options = usage_on();
    let edits = Edits {
        model: "m",
        stream_options: Some(&options),
    };
    assert_eq!(
        spliced(r#"{"model":"a","stream":true}"#, edits),
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        spliced("{\"model\":\"a\",\"stream\":true }\n", edits),
        "{\"model\":\"m\",\"stream\":true ,\"stream_options\":{\"include_usage\":true}}\n"
    );
    assert_eq!(
        spliced(r#"{"stream_options":null,"model":"a"}"#, edits),
        r#"{"stream_options":{"include_usage":true},"model":"m"}"#
    );
    assert_eq!(
        spliced(r#"{"model":"a","stream_options":{"include_usage":false}}"#, edits),
        r#"{"model":"m","stream_options":{"include_usage":true}}"#
    );
}

#[test]
fn stream_options_are_untouched_when_no_edit_asks() {
    let raw = r#"{"model":"a","stream":true,"stream_options":{"include_usage":true,"x":1}}"#;
    assert_eq!(
        spliced(raw, model_only("m")),
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1}}"#
    );
}

#[test]
fn a_body_that_is_not_one_object_or_has_no_model_does_not_splice() {
    for raw in [
        "[1]",
        "\"x\"",
        "{\"model\":",
        "{\"messages\":[]}",
        "{\"model\":\"\\ud800\"}",
    ] {
        assert!(splice(raw.as_bytes(), model_only("m")).is_err(), "{raw}");
    }
}

#[test]
fn without_raw_bytes_the_parsed_form_is_serialized() {
    let body = upstream_body(&RawBody::default(), model_only("m"), || json!({"model": "m", "k": 1})).unwrap();
    assert_eq!(&body[..], br#"{"model":"m","k":1}"#);
}

#[test]
fn raw_bytes_that_do_not_splice_fall_back_to_the_parsed_form() {
    let raw = RawBody::new(Bytes::from_static(b"{\"messages\":[]}"));
    let body = upstream_body(&raw, model_only("m"), || json!({"model": "m"})).unwrap();
    assert_eq!(&body[..], br#"{"model":"m"}"#);
}

/// The spliced body reads as the same JSON as the parsed request re-serialized with the same
/// changes: the splice changes nothing else the upstream sees.
#[test]
fn a_spliced_request_reads_as_the_reserialized_one() {
    let bodies = [
        r#"{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"hé"}]}],"stream":true,"temperature":0.2,"n":2}"#,
        r#"{"messages":[{"role":"system","content":"s","name":"x"}],"model":"c","stream":true,"stream_options":{"include_usage":false,"extra":1}}"#,
        r#"{"model":"c","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":null,"user":"u"}"#,
        r#"{"model":"c","messages":[{"role":"user","content":"hi"}],"stream":false,"max_tokens":5}"#,
    ];
    for raw in bodies {
        let request = parse_chat(raw.as_bytes()).unwrap();
        let options = (request.is_stream() && !request.wants_stream_usage()).then(|| StreamOptions {
            include_usage: Some(true),
            ..request.stream_options.clone().unwrap_or_default()
        });
        let edits = Edits {
            model: "backend",
            stream_options: options.as_ref(),
        };
        let out = splice(raw.as_bytes(), edits).unwrap();
        let mut expected = request.clone();
        expected.model = "backend".into();
        if options.is_some() {
            expected.stream_options = options.clone();
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            serde_json::to_value(&expected).unwrap(),
            "{raw}"
        );
    }
}

#[test]
fn parsing_keeps_the_bytes_beside_every_openai_request() {
    let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(parse_chat(chat).unwrap().raw.get().map(|b| &b[..]), Some(&chat[..]));
    let embed = br#"{"model":"m","input":"hi"}"#;
    assert_eq!(
        parse_embeddings(embed).unwrap().raw.get().map(|b| &b[..]),
        Some(&embed[..])
    );
    let completion = br#"{"model":"m","prompt":"hi"}"#;
    assert_eq!(
        parse_completions(completion).unwrap().raw.get().map(|b| &b[..]),
        Some(&completion[..])
    );
}

#[test]
fn a_request_with_a_repeated_model_is_refused_as_before() {
    // The splice replaces every repeat, but no such body reaches it: the parse refuses it.
    assert!(parse_chat(br#"{"model":"a","model":"b","messages":[{"role":"user"}]}"#).is_err());
}
