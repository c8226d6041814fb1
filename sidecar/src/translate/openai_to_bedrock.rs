//! OpenAI's chat format → Bedrock's Converse, as pure functions, for the `bedrock` provider.
//! Converse's answers come back through [`super::bedrock_to_openai`].
//!
//! Decisions a client may notice:
//! - System and developer messages become `system` blocks; tool messages become `toolResult`
//!   blocks of a user turn; turns of one role in a row are merged (Converse wants them alternating).
//! - Images must be base64 `data:` URLs (png, jpeg, gif, webp): Converse takes image bytes, and the
//!   sidecar fetches nothing on a client's behalf, so a remote URL is refused (400
//!   `unsupported_for_backend`); so are audio and files.
//! - `tool_choice` `auto`/`required`/a function become `auto`/`any`/`tool`; `none` sends no tools.
//! - `max_tokens` (or `max_completion_tokens`), `temperature`, `top_p` and `stop` become
//!   `inferenceConfig`; `n` above 1 and JSON response formats are refused; other sampling knobs
//!   Converse lacks are left out.
//! - Reasoning text of earlier assistant turns is not sent back (it carries no signature here).

use serde_json::{Map, Value, json};

use crate::formats::bedrock::{
    ContentBlock, ConverseRequest, ImageBlock, ImageSource, InferenceConfig, InputSchema, Message, SpecificTool,
    SystemBlock, Tool, ToolChoice, ToolConfig, ToolResultBlock, ToolResultContent, ToolSpec, ToolUseBlock,
};
use crate::formats::openai::{self, ChatRequest, ContentPart, Role, ToolChoice as OpenAiToolChoice, Untranslatable};

/// An OpenAI chat request as a Converse request (the model goes in the URL).
pub fn request(request: &ChatRequest) -> Result<ConverseRequest, Untranslatable> {
    if request.choices() > 1 {
        return Err(Untranslatable("bedrock backends answer one choice: n must be 1".into()));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for message in &request.messages {
        match message.role {
            Role::System | Role::Developer => {
                let text = openai::content_text(&message.content)?;
                if !text.is_empty() {
                    system.push(SystemBlock { text });
                }
            }
            Role::User => {
                let blocks = openai::content_parts(&message.content)?
                    .into_iter()
                    .map(user_block)
                    .collect::<Result<Vec<_>, _>>()?;
                push_turn(&mut messages, "user", blocks);
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                let text = openai::content_text(&message.content)?;
                if !text.is_empty() {
                    blocks.push(ContentBlock::text(text));
                }
                for call in openai::tool_calls(message)? {
                    let input = match call.function.arguments.trim() {
                        "" => json!({}),
                        text => serde_json::from_str(text).map_err(|e| {
                            Untranslatable(format!("the arguments of tool call {} are not JSON: {e}", call.id))
                        })?,
                    };
                    blocks.push(ContentBlock {
                        tool_use: Some(ToolUseBlock {
                            tool_use_id: call.id,
                            name: call.function.name,
                            input,
                        }),
                        ..ContentBlock::default()
                    });
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            Role::Tool => {
                let id = openai::tool_call_id(message)
                    .ok_or_else(|| Untranslatable("a tool message lacks its tool_call_id".into()))?;
                let text = openai::content_text(&message.content)?;
                let block = ContentBlock {
                    tool_result: Some(ToolResultBlock {
                        tool_use_id: id.to_owned(),
                        content: vec![ToolResultContent {
                            text: Some(text),
                            json: None,
                        }],
                        status: None,
                    }),
                    ..ContentBlock::default()
                };
                push_turn(&mut messages, "user", vec![block]);
            }
            Role::Function => {
                return Err(Untranslatable(
                    "legacy function messages cannot be sent to a bedrock backend; use tool messages".into(),
                ));
            }
        }
    }
    Ok(ConverseRequest {
        messages,
        system,
        inference_config: inference_config(request)?,
        tool_config: tool_config(request)?,
    })
}

/// Appends a turn, merged into the previous one of the same role; a turn without blocks is
/// dropped (Converse refuses empty content).
fn push_turn(messages: &mut Vec<Message>, role: &str, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Message {
            role: role.to_owned(),
            content: blocks,
        }),
    }
}

fn user_block(part: ContentPart) -> Result<ContentBlock, Untranslatable> {
    match part {
        ContentPart::Text { text, .. } => Ok(ContentBlock::text(text)),
        ContentPart::ImageUrl { image_url } => {
            let Some((media_type, data)) = openai::parse_data_url(&image_url.url) else {
                return Err(Untranslatable(
                    "bedrock backends take images as base64 data: URLs only; the sidecar does not fetch remote \
                     image URLs"
                        .into(),
                ));
            };
            let format = match media_type.to_ascii_lowercase().as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(Untranslatable(format!(
                        "bedrock backends take png, jpeg, gif or webp images, not {other}"
                    )));
                }
            };
            Ok(ContentBlock {
                image: Some(ImageBlock {
                    format: format.to_owned(),
                    source: ImageSource { bytes: data.to_owned() },
                }),
                ..ContentBlock::default()
            })
        }
        ContentPart::InputAudio { .. } | ContentPart::File { .. } | ContentPart::Unknown => Err(Untranslatable(
            "bedrock backends take text and image_url parts only".into(),
        )),
    }
}

fn inference_config(request: &ChatRequest) -> Result<Option<InferenceConfig>, Untranslatable> {
    match request
        .rest
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some(other) => {
            return Err(Untranslatable(format!(
                "response_format {other:?} cannot be sent to a bedrock backend; describe the format in the prompt \
                 or use a tool"
            )));
        }
    }
    let f64_of = |key: &str| request.rest.get(key).and_then(Value::as_f64);
    let config = InferenceConfig {
        max_tokens: request.completion_cap(),
        temperature: f64_of("temperature"),
        top_p: f64_of("top_p"),
        stop_sequences: openai::stop_sequences(&request.rest).filter(|s| !s.is_empty()),
    };
    Ok((config != InferenceConfig::default()).then_some(config))
}

fn tool_config(request: &ChatRequest) -> Result<Option<ToolConfig>, Untranslatable> {
    let tools = openai::tools(&request.rest)?;
    let choice = match request.rest.get("tool_choice") {
        Some(choice) if !choice.is_null() => Some(OpenAiToolChoice::parse(choice)?),
        _ => None,
    };
    if tools.is_empty() || choice == Some(OpenAiToolChoice::None) {
        return Ok(None);
    }
    let empty = || Some(Map::new());
    let tool_choice = choice.map(|choice| match choice {
        OpenAiToolChoice::Auto | OpenAiToolChoice::None => ToolChoice {
            auto: empty(),
            ..ToolChoice::default()
        },
        OpenAiToolChoice::Required => ToolChoice {
            any: empty(),
            ..ToolChoice::default()
        },
        OpenAiToolChoice::Function(name) => ToolChoice {
            tool: Some(SpecificTool { name }),
            ..ToolChoice::default()
        },
    });
    Ok(Some(ToolConfig {
        tools: tools
            .into_iter()
            .map(|t| Tool {
                tool_spec: ToolSpec {
                    name: t.function.name,
                    description: t.function.description,
                    input_schema: InputSchema {
                        json: t
                            .function
                            .parameters
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    },
                },
            })
            .collect(),
        tool_choice,
    }))
}
