//! OpenAI's chat and embeddings formats → Gemini's, as pure functions, for the `gemini` provider.
//! Gemini's answers come back through [`super::gemini_to_openai`].
//!
//! Decisions a client may notice:
//! - `assistant` turns are `model` turns; system and developer messages become `systemInstruction`;
//!   tool messages become `functionResponse` parts (named after the call they answer) in a user turn.
//! - Tool parameters go as `parametersJsonSchema`, which takes full JSON Schema as OpenAI does.
//! - Gemini's function calls have no ids: they get `call_<answer id>_<n>`. A call's thought
//!   signature travels as `extra_content.google.thought_signature` on the tool call (Google's own
//!   OpenAI-compatible convention) and is sent back with it; a call without one (from another
//!   provider's turn) gets the placeholder Google documents for that case.
//! - `response_format` `json_schema` becomes `responseMimeType: application/json` with
//!   `responseJsonSchema`; `json_object` the MIME type alone.
//! - `reasoning_effort` becomes `thinkingConfig` with the budget of [`super::thinking_budget`]
//!   (`none`: 0, which turns thinking off where the model allows it) and `includeThoughts`, so
//!   thought summaries come back as reasoning (`reasoning_content`), never as answer text.
//! - A prompt Gemini blocks is a 400 with code `content_filter`; an answer it stops for safety
//!   ends with `finish_reason: content_filter`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::formats::gemini::{
    BatchEmbedContentsRequest, Blob, Content, EmbedContentRequest, FileData, FunctionCall, FunctionCallingConfig,
    FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerationConfig, Part, ThinkingConfig, Tool,
    ToolConfig,
};
use crate::formats::openai::{
    self, ChatRequest, ContentPart, EmbeddingInput, EmbeddingsRequest, Role, ToolCall, ToolChoice, Untranslatable,
};

/// The thought signature Google documents for function calls that no Gemini model made.
pub const PLACEHOLDER_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------------------------
// Requests

/// An OpenAI chat request as a Gemini `generateContent` request (the model goes in the URL).
pub fn request(request: &ChatRequest) -> Result<GenerateContentRequest, Untranslatable> {
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Function names by tool-call id: Gemini answers a call by name, OpenAI by id.
    let mut names: HashMap<String, String> = HashMap::new();
    for message in &request.messages {
        match message.role {
            Role::System | Role::Developer => {
                let text = openai::content_text(&message.content)?;
                system.push(Part::text(text));
            }
            Role::User => {
                let parts = openai::content_parts(&message.content)?
                    .into_iter()
                    .map(user_part)
                    .collect::<Result<Vec<_>, _>>()?;
                push_turn(&mut contents, "user", parts);
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = openai::content_text(&message.content)?;
                if !text.is_empty() {
                    parts.push(Part::text(text));
                }
                let calls = openai::tool_calls(message)?;
                let any_signed = calls.iter().any(|c| thought_signature(c).is_some());
                for (i, call) in calls.into_iter().enumerate() {
                    let args = match call.function.arguments.trim() {
                        "" => json!({}),
                        text => serde_json::from_str(text).map_err(|e| {
                            Untranslatable(format!("the arguments of tool call {} are not JSON: {e}", call.id))
                        })?,
                    };
                    let signature = match thought_signature(&call) {
                        Some(s) => Some(s.to_owned()),
                        // Only a step's first call carries the signature; one placeholder covers it.
                        None if !any_signed && i == 0 => Some(PLACEHOLDER_SIGNATURE.to_owned()),
                        None => None,
                    };
                    names.insert(call.id.clone(), call.function.name.clone());
                    parts.push(Part {
                        function_call: Some(FunctionCall {
                            id: None,
                            name: call.function.name,
                            args,
                        }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                push_turn(&mut contents, "model", parts);
            }
            Role::Tool => {
                let id = openai::tool_call_id(message)
                    .ok_or_else(|| Untranslatable("a tool message lacks its tool_call_id".into()))?;
                let name = names
                    .get(id)
                    .cloned()
                    .or_else(|| message.rest.get("name").and_then(Value::as_str).map(str::to_owned))
                    .ok_or_else(|| {
                        Untranslatable(format!(
                            "tool message {id:?} answers no tool call of an earlier message"
                        ))
                    })?;
                let text = openai::content_text(&message.content)?;
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: None,
                        name,
                        response: function_response(&text),
                    }),
                    ..Part::default()
                };
                push_turn(&mut contents, "user", vec![part]);
            }
            Role::Function => {
                return Err(Untranslatable(
                    "legacy function messages cannot be sent to a gemini backend; use tool messages".into(),
                ));
            }
        }
    }
    let tools = openai::tools(&request.rest)?;
    let tool_config = match request.rest.get("tool_choice") {
        Some(choice) if !choice.is_null() => Some(tool_config(ToolChoice::parse(choice)?)),
        _ => None,
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| Content {
            role: None,
            parts: system,
        }),
        tools: (!tools.is_empty()).then(|| {
            vec![Tool {
                function_declarations: tools
                    .into_iter()
                    .map(|t| FunctionDeclaration {
                        name: t.function.name,
                        description: t.function.description,
                        parameters_json_schema: t.function.parameters,
                    })
                    .collect(),
            }]
        }),
        tool_config,
        generation_config: generation_config(request)?,
    })
}

/// Appends a turn, merging it into the previous one of the same role: Gemini wants every
/// function response of a step in one turn.
fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    // Gemini refuses a turn without parts (an assistant message with neither text nor calls).
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

fn thought_signature(call: &ToolCall) -> Option<&str> {
    call.rest
        .get("extra_content")
        .and_then(|e| e.pointer("/google/thought_signature"))
        .and_then(Value::as_str)
}

/// A tool's answer as the object Gemini takes: a JSON object as is, anything else under `result`.
fn function_response(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => json!({ "result": text }),
    }
}

fn user_part(part: ContentPart) -> Result<Part, Untranslatable> {
    let inline = |mime_type: &str, data: &str| Part {
        inline_data: Some(Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
        }),
        ..Part::default()
    };
    match part {
        ContentPart::Text { text, .. } => Ok(Part::text(text)),
        ContentPart::ImageUrl { image_url } => {
            if let Some((mime_type, data)) = openai::parse_data_url(&image_url.url) {
                Ok(inline(mime_type, data))
            } else if image_url.url.starts_with("https://") || image_url.url.starts_with("http://") {
                Ok(Part {
                    file_data: Some(FileData {
                        mime_type: guess_mime_type(&image_url.url).map(str::to_owned),
                        file_uri: image_url.url,
                    }),
                    ..Part::default()
                })
            } else {
                Err(Untranslatable(
                    "an image_url must be an http(s) URL or a base64 data: URL".into(),
                ))
            }
        }
        ContentPart::InputAudio { input_audio } => {
            Ok(inline(&format!("audio/{}", input_audio.format), &input_audio.data))
        }
        ContentPart::File { file } => file
            .file_data
            .as_deref()
            .and_then(openai::parse_data_url)
            .map(|(mime_type, data)| inline(mime_type, data))
            .ok_or_else(|| Untranslatable("gemini backends take files as base64 data: URLs in file_data".into())),
        ContentPart::Unknown => Err(Untranslatable(
            "a content part type gemini backends do not accept (use text, image_url, input_audio or file)".into(),
        )),
    }
}

/// The media type of an image URL from its extension, when it has a known one.
fn guess_mime_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    let extension = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match extension {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn tool_config(choice: ToolChoice) -> ToolConfig {
    let (mode, allowed) = match choice {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::Function(name) => ("ANY", Some(vec![name])),
    };
    ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode: mode.to_owned(),
            allowed_function_names: allowed,
        },
    }
}

fn generation_config(request: &ChatRequest) -> Result<Option<GenerationConfig>, Untranslatable> {
    let f64_of = |key: &str| request.rest.get(key).and_then(Value::as_f64);
    let u32_of = |key: &str| {
        request
            .rest
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    };
    let (response_mime_type, response_json_schema) = match request.rest.get("response_format") {
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("json_object") => (Some("application/json".to_owned()), None),
            Some("json_schema") => (
                Some("application/json".to_owned()),
                format.pointer("/json_schema/schema").cloned(),
            ),
            Some("text") | None => (None, None),
            Some(other) => {
                return Err(Untranslatable(format!(
                    "response_format {other:?} is not one of text, json_object, json_schema"
                )));
            }
        },
        None => (None, None),
    };
    let config = GenerationConfig {
        temperature: f64_of("temperature"),
        top_p: f64_of("top_p"),
        top_k: u32_of("top_k"),
        max_output_tokens: request.completion_cap(),
        stop_sequences: openai::stop_sequences(&request.rest).filter(|s| !s.is_empty()),
        candidate_count: u32_of("n"),
        presence_penalty: f64_of("presence_penalty"),
        frequency_penalty: f64_of("frequency_penalty"),
        seed: request.rest.get("seed").and_then(Value::as_i64),
        response_mime_type,
        response_json_schema,
        thinking_config: super::thinking_budget(request)?.map(|budget| ThinkingConfig {
            thinking_budget: Some(budget),
            include_thoughts: (budget > 0).then_some(true),
        }),
    };
    Ok((config != GenerationConfig::default()).then_some(config))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The Gemini request for an OpenAI embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedRequest {
    /// One text: `embedContent`.
    One(EmbedContentRequest),
    /// Several: `batchEmbedContents`.
    Batch(BatchEmbedContentsRequest),
}

/// An OpenAI embeddings request for `model` as Gemini's.
pub fn embeddings_request(request: &EmbeddingsRequest, model: &str) -> Result<EmbedRequest, Untranslatable> {
    let dimensions = request
        .rest
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok());
    let entry = |text: &str, model: Option<String>| EmbedContentRequest {
        model,
        content: Content {
            role: None,
            parts: vec![Part::text(text)],
        },
        output_dimensionality: dimensions,
    };
    match &request.input {
        EmbeddingInput::One(text) => Ok(EmbedRequest::One(entry(text, None))),
        EmbeddingInput::Many(texts) => Ok(EmbedRequest::Batch(BatchEmbedContentsRequest {
            requests: texts
                .iter()
                .map(|t| entry(t, Some(format!("models/{model}"))))
                .collect(),
        })),
        EmbeddingInput::Tokens(_) => Err(Untranslatable(
            "gemini backends embed text, not token arrays: send input as strings".into(),
        )),
    }
}
