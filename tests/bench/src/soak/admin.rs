//! What the sidecar says it did, from its admin listener: request and spend counters of
//! `/metrics` (DESIGN §8; names from `sidecar/src/metrics.rs`) and the budget of `/budgets`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::manifest;
use crate::driver::procs;

/// Requests by route and outcome.
pub const REQUESTS: &str = "sluice_requests_total";
/// Micro-dollars spent by route and outcome.
pub const SPEND: &str = "sluice_spend_microdollars_total";

/// One sample line of the text exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Parses the Prometheus text format's sample lines (comments skipped).
pub fn parse_exposition(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some(Series {
            name: head.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    other => val.push(other),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), val);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `name`'s values summed by `(route, outcome)` for the soak's routes.
pub fn by_route_outcome(series: &[Series], name: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for s in series.iter().filter(|s| s.name == name) {
        let route = s.labels.get("route").cloned().unwrap_or_default();
        let outcome = s.labels.get("outcome").cloned().unwrap_or_default();
        *out.entry((route, outcome)).or_insert(0) += s.value as u64;
    }
    out
}

/// The budget as `/budgets` shows it, in micro-dollars.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BudgetState {
    /// Settled spend in the period.
    pub spent: u64,
    /// Held by requests in flight.
    pub reserved: u64,
    /// The limit.
    pub limit: u64,
}

/// Reads the soak's budget from `/budgets`.
pub async fn budget(admin: SocketAddr) -> Result<BudgetState> {
    let text = procs::get_text(admin, "/budgets").await?;
    parse_budget(&text)
}

/// Finds [`manifest::BUDGET`] in the body of `/budgets`.
pub fn parse_budget(text: &str) -> Result<BudgetState> {
    let views: Vec<serde_json::Value> = serde_json::from_str(text).context("/budgets is not a JSON list")?;
    let view = views
        .iter()
        .find(|v| v["budget"] == manifest::BUDGET)
        .with_context(|| format!("/budgets has no {}", manifest::BUDGET))?;
    let micros = |field: &str| {
        view[field]
            .as_str()
            .and_then(manifest::parse_usd_micros)
            .with_context(|| format!("/budgets: {field} is not a dollar amount: {}", view[field]))
    };
    Ok(BudgetState {
        spent: micros("spentUSD")?,
        reserved: micros("reservedUSD")?,
        limit: micros("limitUSD")?,
    })
}

/// Reads and parses `/metrics`.
pub async fn metrics(admin: SocketAddr) -> Result<Vec<Series>> {
    Ok(parse_exposition(&procs::get_text(admin, "/metrics").await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_parse_with_labels() {
        let text = "# HELP sluice_requests Requests\n# TYPE sluice_requests counter\n\
            sluice_requests_total{route=\"soak/plain\",backend=\"primary\",model=\"gpt-4o-mini\",outcome=\"ok\",user=\"\"} 42\n\
            sluice_requests_total{route=\"soak/plain\",backend=\"\",model=\"\",outcome=\"rate_limited\",user=\"\"} 3\n\
            sluice_requests_total{route=\"soak/plain\",backend=\"b\",model=\"m\",outcome=\"ok\",user=\"a\\\"b\"} 1\n\
            up 1\n";
        let series = parse_exposition(text);
        assert_eq!(series.len(), 4);
        assert_eq!(series[0].labels["outcome"], "ok");
        assert_eq!(series[2].labels["user"], "a\"b");
        assert_eq!(series[3].name, "up");
        let counts = by_route_outcome(&series, REQUESTS);
        assert_eq!(counts[&("soak/plain".into(), "ok".into())], 43);
        assert_eq!(counts[&("soak/plain".into(), "rate_limited".into())], 3);
    }

    #[test]
    fn budget_is_found_by_name() {
        let text = r#"[{"budget":"soak/soak","limitUSD":"1000000","allowanceUSD":"1000000","spentUSD":"0.123456",
            "reservedUSD":"0","remainingUSD":"999999.876544","period_start":"x","resets_at":null,"enforcement":"hard"}]"#;
        let b = parse_budget(text).unwrap();
        assert_eq!((b.spent, b.reserved, b.limit), (123_456, 0, 1_000_000_000_000));
        assert!(parse_budget("[]").is_err());
    }
}
