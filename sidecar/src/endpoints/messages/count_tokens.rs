//! `POST /v1/messages/count_tokens`: Anthropic's token counting for the route's primary backend
//! (the one whose tokenizer the route counts with). An Anthropic backend (or Claude on Vertex AI)
//! counts for itself; for any other the sidecar counts locally with that backend's tokenizer and
//! says so in `x-sluice-token-count: estimate`. Nothing is generated, so nothing is billed or rate limited.

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Map;

use super::super::{TOKEN_COUNT_HEADER, set_headers};
use crate::{
    config::ActiveConfig,
    error::ApiError,
    formats::anthropic::{CountTokensRequest, MessagesRequest, TokenCount},
    providers::Upstream,
    request::parse_json,
    response::{self, Response},
    tokenizer::Tokenizer,
    translate::anthropic_to_openai,
};

/// Serves one count_tokens request; a refusal is the sidecar's usual (OpenAI-shaped) error,
/// which the listener turns into Anthropic's shape.
pub async fn handle(config: &ActiveConfig, _headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let request: CountTokensRequest = parse_json(body)?;
    let route = config.routes.resolve(&request.model)?;
    let Some(backend) = route.backends.first() else {
        return Err(ApiError::NoBackendAvailable {
            reason: format!("route {} has no backends", route.key),
        });
    };
    let (count, how) = match &backend.upstream {
        Upstream::Anthropic(anthropic) => {
            let deadline = tokio::time::Instant::now() + backend.timeouts.total.get();
            let count = anthropic
                .count_tokens(&request, backend.model.as_str(), deadline)
                .await
                .map_err(ApiError::Upstream)?;
            (count, "provider")
        }
        Upstream::Vertex(vertex) if vertex.counts_tokens() => {
            let deadline = tokio::time::Instant::now() + backend.timeouts.total.get();
            let count = vertex
                .count_tokens(&request, backend.model.as_str(), deadline)
                .await
                .map_err(ApiError::Upstream)?;
            (count, "provider")
        }
        _ => (count_locally(request, route.tokenizer)?, "estimate"),
    };
    let mut resp = response::json(StatusCode::OK, serde_json::to_vec(&count).unwrap_or_default());
    set_headers(&mut resp, route, Some(backend.as_ref()), 0);
    resp.headers_mut()
        .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static(how));
    Ok(resp)
}

/// The request's prompt tokens as the route counts them for routing and limits: the
/// conversation as the pipeline sees it, plus the tool definitions' JSON.
fn count_locally(request: CountTokensRequest, tokenizer: Tokenizer) -> Result<TokenCount, ApiError> {
    let tools = request
        .tools
        .as_ref()
        .map_or(0, |t| tokenizer.count(&serde_json::to_string(t).unwrap_or_default()));
    let messages = MessagesRequest {
        model: request.model,
        messages: request.messages,
        // Counting generates nothing; the translation wants a cap all the same.
        max_tokens: 1,
        system: request.system,
        stop_sequences: None,
        stream: None,
        temperature: None,
        top_p: None,
        top_k: None,
        tools: request.tools,
        tool_choice: request.tool_choice,
        metadata: None,
        rest: Map::new(),
    };
    let chat = anthropic_to_openai::request(messages).map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    Ok(TokenCount {
        input_tokens: tokenizer.count_chat(&chat) + tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CountTokensRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn counts_the_system_prompt_the_turns_and_the_tools_with_the_estimate_tokenizer() {
        let plain = request(r#"{"model":"m","messages":[{"role":"user","content":"abcdefgh"}]}"#);
        assert_eq!(count_locally(plain, Tokenizer::Estimate).unwrap().input_tokens, 2);
        let with_system = request(r#"{"model":"m","system":"abcd","messages":[{"role":"user","content":"abcdefgh"}]}"#);
        assert_eq!(count_locally(with_system, Tokenizer::Estimate).unwrap().input_tokens, 3);
        let with_tool = request(
            r#"{"model":"m","messages":[{"role":"user","content":"abcdefgh"}],
                "tools":[{"name":"f","input_schema":{"type":"object"}}]}"#,
        );
        let tool_json = r#"[{"name":"f","input_schema":{"type":"object"}}]"#;
        assert_eq!(
            count_locally(with_tool, Tokenizer::Estimate).unwrap().input_tokens,
            2 + Tokenizer::Estimate.count(tool_json)
        );
    }

    #[test]
    fn counts_with_the_real_bpe_and_its_message_framing() {
        let r = request(r#"{"model":"m","messages":[{"role":"user","content":"hello world"}]}"#);
        // "hello world" is 2 tokens, 3 framing per message and 3 priming the reply.
        assert_eq!(count_locally(r, Tokenizer::O200kBase).unwrap().input_tokens, 8);
    }

    #[test]
    fn a_conversation_without_content_is_refused() {
        let r = request(r#"{"model":"m","messages":[]}"#);
        assert!(matches!(
            count_locally(r, Tokenizer::Estimate),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
