//! OpenAI's Responses format → its chat format, for the `/v1/responses` endpoint, which serves
//! Responses requests through the chat pipeline (and so through every provider's translation).
//!
//! Decisions a client may notice:
//! - `instructions` becomes the first message, a system message.
//! - A `function_call` item joins the assistant message just before it (or starts one), so a
//!   turn of text and calls stays one turn; a `function_call_output` becomes a tool message.
//! - A `function_call` item's `extra_content` (which this gateway's answers put there for Gemini's
//!   thought signatures) goes back with the call.
//! - Reasoning items from earlier turns are dropped: chat has no way to send them back.
//! - `max_output_tokens` becomes `max_tokens`; `text.format` becomes `response_format`;
//!   `reasoning.effort` becomes `reasoning_effort` (honoured by OpenAI-protocol backends).
//! - `store` is accepted and nothing is stored (the answer says `store: false`);
//!   `previous_response_id`, item references and uploaded file ids need OpenAI's own state and
//!   are refused, naming the field.
//! - Tools OpenAI runs itself (`web_search`, `file_search`, …) are not offered to the model:
//!   no backend here can run them. A namespace's function tools become chat tools named
//!   `<namespace>__<name>`, and a call to one comes back with its `namespace`.
//! - Other Responses-only fields (`include`, `truncation`, `service_tier`, …) are not sent on.

use serde_json::{Map, Value, json};

use crate::formats::{
    openai::{ChatMessage, ChatRequest, Role, StreamOptions, Untranslatable, splice::RawBody},
    responses::{
        ContentPart, FunctionCallOutput, Input, InputItem, InputMessage, MessageContent, ResponsesRequest, TextFormat,
        Tool,
    },
};

/// What joins a namespace and a function's name in the chat tool's name (`multi_agent__spawn`).
pub const NAMESPACE_SEPARATOR: &str = "__";

/// The member of a call that carries a provider's own data (Gemini's thought signature) through
/// OpenAI's format.
const EXTRA: &str = "extra_content";

/// A Responses request as a chat request; `stream` as the client asked, with usage asked for.
pub fn request(request: &ResponsesRequest) -> Result<ChatRequest, Untranslatable> {
    if request.previous_response_id.is_some() {
        return Err(Untranslatable(
            "previous_response_id needs a stored response: this gateway stores none, and this request is translated \
             for its backend; send the whole conversation in input instead"
                .into(),
        ));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = &request.instructions {
        messages.push(message(Role::System, Value::from(instructions.as_str())));
    }
    match &request.input {
        Input::Text(text) => messages.push(message(Role::User, Value::from(text.as_str()))),
        Input::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut messages, item).map_err(|e| Untranslatable(format!("input[{i}]: {e}")))?;
            }
        }
    }
    if !messages.iter().any(|m| m.role != Role::System) {
        return Err(Untranslatable("input must hold at least one message or item".into()));
    }
    let mut rest = Map::new();
    let mut tools = Vec::new();
    for (i, t) in request.tools.iter().enumerate() {
        push_tool(&mut tools, t, None).map_err(|e| Untranslatable(format!("tools[{i}]: {e}")))?;
    }
    if !tools.is_empty() {
        rest.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        rest.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(format) = request.text.as_ref().and_then(|t| t.format.as_ref()) {
        match format {
            TextFormat::Text => {}
            TextFormat::JsonObject => {
                rest.insert("response_format".into(), json!({"type": "json_object"}));
            }
            TextFormat::JsonSchema {
                name,
                schema,
                description,
                strict,
            } => {
                let mut spec = Map::new();
                spec.insert("name".into(), Value::from(name.as_str()));
                spec.insert("schema".into(), schema.clone());
                if let Some(d) = description {
                    spec.insert("description".into(), Value::from(d.as_str()));
                }
                if let Some(s) = strict {
                    spec.insert("strict".into(), Value::from(*s));
                }
                rest.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": spec}),
                );
            }
        }
    }
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_deref()) {
        rest.insert("reasoning_effort".into(), Value::from(effort));
    }
    for (key, value) in [
        ("temperature", request.temperature.map(Value::from)),
        ("top_p", request.top_p.map(Value::from)),
        ("parallel_tool_calls", request.parallel_tool_calls.map(Value::from)),
    ] {
        if let Some(v) = value {
            rest.insert(key.into(), v);
        }
    }
    let stream = request.is_stream();
    Ok(ChatRequest {
        model: request.model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            rest: Map::new(),
        }),
        max_tokens: request.max_output_tokens,
        max_completion_tokens: None,
        user: request.user.clone(),
        rest,
        raw: RawBody::default(),
    })
}

fn message(role: Role, content: Value) -> ChatMessage {
    ChatMessage {
        role,
        content,
        rest: Map::new(),
    }
}

/// Appends what one input item becomes.
fn push_item(messages: &mut Vec<ChatMessage>, item: &InputItem) -> Result<(), Untranslatable> {
    match item {
        InputItem::Message(m) => messages.push(input_message(m)?),
        InputItem::FunctionCall(call) => {
            let name = match &call.namespace {
                Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{}", call.name),
                None => call.name.clone(),
            };
            let mut tool_call = json!({
                "id": call.call_id,
                "type": "function",
                "function": {"name": name, "arguments": call.arguments},
            });
            // What a translated answer carried with the call (Gemini's thought signature) goes back.
            if let (Some(extra), Value::Object(o)) = (call.rest.get(EXTRA), &mut tool_call) {
                o.insert(EXTRA.into(), extra.clone());
            }
            // A call joins the assistant turn it belongs to: the message just before, if it is one.
            let joins = messages.last().is_some_and(|m| m.role == Role::Assistant);
            if !joins {
                messages.push(message(Role::Assistant, Value::Null));
            }
            if let Some(last) = messages.last_mut() {
                match last
                    .rest
                    .entry("tool_calls")
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(calls) => calls.push(tool_call),
                    other => *other = Value::Array(vec![tool_call]),
                }
            }
        }
        InputItem::FunctionCallOutput(output) => messages.push(tool_output(output)?),
        // Chat cannot carry reasoning back to the model; the turn's text and calls are enough.
        InputItem::Reasoning(_) => {}
        InputItem::Other(kind) => {
            return Err(Untranslatable(format!(
                "items of type {kind:?} need OpenAI's stored state or its own tools and are not supported \
                 here; send messages, function_call and function_call_output items"
            )));
        }
    }
    Ok(())
}

fn input_message(m: &InputMessage) -> Result<ChatMessage, Untranslatable> {
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(Untranslatable(format!(
                "role {other:?} is not one of user, assistant, system, developer"
            )));
        }
    };
    let content = match &m.content {
        MessageContent::Text(text) => Value::from(text.as_str()),
        MessageContent::Parts(parts) if role == Role::User => {
            Value::Array(parts.iter().map(user_part).collect::<Result<_, _>>()?)
        }
        // System, developer and assistant turns are text in chat: their parts are joined.
        MessageContent::Parts(parts) => Value::from(text_of(parts)?),
    };
    Ok(message(role, content))
}

/// One part of a user message as a chat content part.
fn user_part(part: &ContentPart) -> Result<Value, Untranslatable> {
    Ok(match part {
        ContentPart::InputText { text } | ContentPart::OutputText { text, .. } => json!({"type": "text", "text": text}),
        ContentPart::Refusal { refusal } => json!({"type": "text", "text": refusal}),
        ContentPart::InputImage {
            image_url: Some(url),
            detail,
            ..
        } => {
            let mut image = json!({"url": url});
            if let Some(d) = detail {
                image["detail"] = Value::from(d.as_str());
            }
            json!({"type": "image_url", "image_url": image})
        }
        ContentPart::InputImage { .. } => {
            return Err(Untranslatable(
                "an input_image needs an image_url (https or data: URL); uploaded file ids are OpenAI's alone".into(),
            ));
        }
        ContentPart::InputFile {
            file_data: Some(data),
            filename,
            ..
        } => {
            let mut file = json!({"file_data": data});
            if let Some(name) = filename {
                file["filename"] = Value::from(name.as_str());
            }
            json!({"type": "file", "file": file})
        }
        ContentPart::InputFile { .. } => {
            return Err(Untranslatable(
                "an input_file needs file_data (a data: URL); uploaded file ids and file URLs are not supported here"
                    .into(),
            ));
        }
        ContentPart::Other(v) => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("untyped");
            return Err(Untranslatable(format!(
                "content parts of type {kind:?} are not supported"
            )));
        }
    })
}

/// The text of parts that may only hold text.
fn text_of(parts: &[ContentPart]) -> Result<String, Untranslatable> {
    let mut out = String::new();
    for part in parts {
        match part {
            ContentPart::InputText { text } | ContentPart::OutputText { text, .. } => out.push_str(text),
            ContentPart::Refusal { refusal } => out.push_str(refusal),
            _ => {
                return Err(Untranslatable(
                    "only text parts are allowed in system, developer and assistant messages".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn tool_output(output: &FunctionCallOutput) -> Result<ChatMessage, Untranslatable> {
    let content = match &output.output {
        MessageContent::Text(text) => text.clone(),
        MessageContent::Parts(parts) => text_of(parts)?,
    };
    let mut m = message(Role::Tool, Value::from(content));
    m.rest
        .insert("tool_call_id".into(), Value::from(output.call_id.as_str()));
    Ok(m)
}

/// Appends the chat function tools `tool` becomes: a function as itself, a namespace's functions
/// each named `<namespace>__<name>`; a tool OpenAI runs itself becomes none.
fn push_tool(out: &mut Vec<Value>, tool: &Tool, namespace: Option<&str>) -> Result<(), Untranslatable> {
    match tool {
        Tool::Function {
            name,
            description,
            parameters,
            strict,
        } => {
            let mut function = Map::new();
            let name = match namespace {
                Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
                None => name.clone(),
            };
            function.insert("name".into(), Value::from(name));
            if let Some(d) = description {
                function.insert("description".into(), Value::from(d.as_str()));
            }
            if let Some(p) = parameters {
                function.insert("parameters".into(), p.clone());
            }
            if let Some(s) = strict {
                function.insert("strict".into(), Value::from(*s));
            }
            out.push(json!({"type": "function", "function": function}));
        }
        Tool::Namespace { name, tools, .. } => {
            if namespace.is_some() {
                return Err(Untranslatable("namespaces cannot nest".into()));
            }
            for t in tools {
                push_tool(out, t, Some(name))?;
            }
        }
        // Web search, file search and the like run inside OpenAI; no backend here can run them,
        // so the model is not offered them (Codex declares web_search on every request).
        Tool::Other(_) => {}
    }
    Ok(())
}

fn tool_choice(choice: &Value) -> Result<Value, Untranslatable> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Untranslatable("tool_choice of type function needs a name".into()))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(Untranslatable(
            "tool_choice must be auto, none, required or {\"type\": \"function\", \"name\": …}".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
