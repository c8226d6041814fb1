//! What the upstream received: every request, in arrival order, as tests read it back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request as the upstream received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a body that is not JSON is kept as a JSON string, an empty one as null.
    pub body: Value,
}

impl RecordedRequest {
    /// The request as recorded from its parts.
    pub fn new(method: String, path: String, headers: &HeaderMap, body: &[u8]) -> Self {
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let mut joined = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            joined
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        Self {
            method,
            path,
            headers: joined,
            body,
        }
    }

    /// A header's value, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Every request received, oldest first.
#[derive(Debug, Default)]
pub(super) struct Recorder(Mutex<Vec<RecordedRequest>>);

impl Recorder {
    /// Keeps `request`; its number counts the requests received, this one included.
    pub(super) fn record(&self, request: RecordedRequest) -> usize {
        match self.0.lock() {
            Ok(mut all) => {
                all.push(request);
                all.len()
            }
            Err(_) => 0,
        }
    }

    /// Every request so far.
    pub(super) fn all(&self) -> Vec<RecordedRequest> {
        self.0.lock().map(|all| all.clone()).unwrap_or_default()
    }

    /// Forgets every request.
    pub(super) fn clear(&self) {
        if let Ok(mut all) = self.0.lock() {
            all.clear();
        }
    }
}
