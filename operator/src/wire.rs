//! The lines of the config stream (`application/x-ndjson`, `sluice_crds::control`): each
//! snapshot is encoded once, when it is pushed, and the same bytes go down every stream it is
//! sent to; a stream only copies the line when it adds a push's trace context.

use std::sync::Arc;

use bytes::Bytes;
use sluice_crds::{ConfigSnapshot, control::WatchEvent};

/// A snapshot as it goes down the streams: the snapshot, and its line of the stream.
#[derive(Debug)]
pub struct Pushed {
    /// The snapshot.
    pub snapshot: Arc<ConfigSnapshot>,
    /// Its `snapshot` event, encoded, newline included.
    pub line: Bytes,
}

impl Pushed {
    /// Encodes `snapshot`'s line once.
    pub fn new(snapshot: Arc<ConfigSnapshot>) -> Self {
        let line = snapshot_line(&snapshot);
        Self { snapshot, line }
    }
}

/// The heartbeat's line, the same for every stream.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b"{\"type\":\"heartbeat\"}\n")
}

/// `event`'s line.
pub fn line(event: &WatchEvent) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The line of a `snapshot` event, encoded straight from the snapshot (no copy of it into a
/// [`WatchEvent`]); the same bytes as [`line`] of `WatchEvent::Snapshot`.
fn snapshot_line(snapshot: &ConfigSnapshot) -> Bytes {
    #[derive(serde::Serialize)]
    struct Tagged<'a> {
        r#type: &'static str,
        #[serde(flatten)]
        snapshot: &'a ConfigSnapshot,
    }
    let mut bytes = serde_json::to_vec(&Tagged {
        r#type: "snapshot",
        snapshot,
    })
    .unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// `line` (an encoded object) with the push's `traceparent` (and `tracestate`) as members of
/// its object, which a sidecar that does not trace ignores.
pub fn traced(line: &Bytes, carried: &http::HeaderMap) -> Bytes {
    let Some(object) = line.strip_suffix(b"}\n") else {
        return line.clone();
    };
    let mut bytes = Vec::with_capacity(line.len() + 128);
    bytes.extend_from_slice(object);
    for (name, value) in carried {
        let Ok(value) = value.to_str() else { continue };
        // Strings into a Vec: serializing cannot fail.
        bytes.push(b',');
        let _ = serde_json::to_writer(&mut bytes, name.as_str());
        bytes.push(b':');
        let _ = serde_json::to_writer(&mut bytes, value);
    }
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sluice_crds::{BudgetConfig, ObjectKey};

    use super::*;

    fn snapshot() -> Arc<ConfigSnapshot> {
        let budget = BudgetConfig {
            key: ObjectKey {
                namespace: "team-a".into(),
                name: "b".into(),
            },
            spec: serde_json::from_value(serde_json::json!({"limitUSD": "10.00", "period": "monthly"})).unwrap(),
            allowance: sluice_crds::MicroUsd::ZERO,
            allowance_period_start: None,
            exhausted: true,
        };
        Arc::new(ConfigSnapshot::new(Vec::new(), vec![budget]))
    }

    #[test]
    fn a_pushed_line_is_the_snapshot_event_as_serde_writes_it() {
        let snapshot = snapshot();
        let pushed = Pushed::new(snapshot.clone());
        assert_eq!(pushed.line, line(&WatchEvent::Snapshot(snapshot.as_ref().clone())));
        let parsed: WatchEvent = serde_json::from_slice(&pushed.line).unwrap();
        assert_eq!(parsed, WatchEvent::Snapshot(snapshot.as_ref().clone()));
    }

    #[test]
    fn the_heartbeat_line_is_the_heartbeat_event_as_serde_writes_it() {
        assert_eq!(heartbeat(), line(&WatchEvent::Heartbeat));
    }

    #[test]
    fn a_traced_line_is_the_same_event_with_the_trace_context_as_members() {
        let pushed = Pushed::new(snapshot());
        let mut carried = http::HeaderMap::new();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        carried.insert("traceparent", parent.parse().unwrap());
        carried.insert("tracestate", "a=\"b\"".parse().unwrap());
        let line = traced(&pushed.line, &carried);
        assert!(line.ends_with(b"}\n"));
        let object: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(object["traceparent"], parent);
        assert_eq!(object["tracestate"], "a=\"b\"");
        let event: WatchEvent = serde_json::from_slice(&line).unwrap();
        assert_eq!(event, WatchEvent::Snapshot(pushed.snapshot.as_ref().clone()));
    }
}
