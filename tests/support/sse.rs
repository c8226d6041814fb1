//! Reading the server-sent events a test receives, in any provider's framing (`\n` or `\r\n`
//! line ends, named events or not).

/// The events of a server-sent-events body: each `event:` name (if any) and its `data:`.
pub fn read_sse(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let mut name = None;
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

/// The `data:` payloads of a server-sent-events body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    read_sse(body).into_iter().map(|(_, data)| data).collect()
}

/// The JSON payloads of an OpenAI-framed stream before `[DONE]`, and whether `[DONE]` ended it;
/// an error names the first payload that is not JSON.
pub fn openai_events(body: &str) -> Result<(Vec<serde_json::Value>, bool), String> {
    let data = sse_data(body);
    let done = data.last().is_some_and(|d| d == "[DONE]");
    let events = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).map_err(|e| format!("event {d:?} is not JSON: {e}")))
        .collect::<Result<_, _>>()?;
    Ok((events, done))
}
