//! The text log's line around its fields: the time, the level and the target, written as
//! `tracing-subscriber`'s default (`Full`) format writes them without colours, but without its
//! per-line costs. Every request writes an access line, and the default format builds a
//! calendar date from the clock and pads seven numbers through `write!` for each one, then
//! writes the level and the target through styled `Display` wrappers; here the date and time of
//! day are formatted once a second per thread and the rest are plain string writes.
//!
//! Lines this fast path does not cover (colours on a terminal, events inside spans, records
//! forwarded from the `log` crate) are written by the default format itself.

use std::{
    cell::RefCell,
    fmt::{self, Write},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Full, Writer},
        time::FormatTime,
    },
    registry::LookupSpan,
};

/// The time as the default timer writes it (RFC 3339 in UTC with microseconds,
/// `2026-12-06T14:55:01.123456Z`), the part up to the second formatted once a second per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct UtcMicros;

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_time(w, SystemTime::now())
    }
}

thread_local! {
    /// The second last written on this thread and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `at` as [`UtcMicros`] does.
fn write_time(w: &mut impl Write, at: SystemTime) -> fmt::Result {
    let Ok(since) = at.duration_since(UNIX_EPOCH) else {
        // A clock before 1970: not worth a cache.
        return match jiff::Timestamp::try_from(at) {
            Ok(t) => write!(w, "{t:.6}"),
            Err(_) => w.write_str("<unknown time>"),
        };
    };
    let second = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = i64::try_from(second)
                .ok()
                .and_then(|s| jiff::Timestamp::from_second(s).ok())
                .map(|t| t.to_string());
            // `jiff` writes a whole second as `2026-12-06T14:55:01Z`: keep all but the `Z`.
            let Some(prefix) = text.as_deref().and_then(|t| t.strip_suffix('Z')) else {
                return w.write_str("<unknown time>");
            };
            cached.1.clear();
            cached.1.push_str(prefix);
            cached.0 = second;
        }
        w.write_str(&cached.1)
    })?;
    let mut digits = [b'0'; 6];
    let mut micros = since.subsec_micros();
    for digit in digits.iter_mut().rev() {
        // A remainder of ten is one decimal digit.
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    w.write_char('.')?;
    w.write_str(std::str::from_utf8(&digits).unwrap_or("000000"))?;
    w.write_char('Z')
}

/// The level as the default format pads it without colours.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// The text line: `time level target: fields`, as the default format writes it without colours.
#[derive(Debug)]
pub struct PlainLine {
    /// The default format, for the lines the fast path leaves to it.
    full: Format<Full, UtcMicros>,
}

impl PlainLine {
    /// The line format, falling back on the default format with the same timer.
    pub fn new() -> Self {
        Self {
            full: Format::default().with_timer(UtcMicros),
        }
    }
}

impl Default for PlainLine {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        // `log` records carry their real target in fields the default format reads.
        let forwarded = meta.fields().field("log.target").is_some();
        if writer.has_ansi_escapes() || forwarded || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        if write_time(&mut writer, SystemTime::now()).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_char(' ')?;
        writer.write_str(level(meta.level()))?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log_fields::{PlainFields, tests::Lines};

    #[test]
    fn times_read_as_the_default_timer_writes_them() {
        let cases = [
            (Duration::new(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456Z"),
            (Duration::new(1_700_000_000, 999_999_999), "2023-11-14T22:13:20.999999Z"),
            (Duration::new(1_700_000_001, 7_000), "2023-11-14T22:13:21.000007Z"),
            (Duration::new(1_700_000_001, 0), "2023-11-14T22:13:21.000000Z"),
            (Duration::new(0, 1_000), "1970-01-01T00:00:00.000001Z"),
            (Duration::new(1_700_000_000, 500_000), "2023-11-14T22:13:20.000500Z"),
        ];
        for (since, expected) in cases {
            let mut out = String::new();
            write_time(&mut out, UNIX_EPOCH + since).unwrap();
            assert_eq!(out, expected);
        }
    }

    /// What `log` writes with this line format, or with the default one; timestamps cut off
    /// (their length checked), since the two read the clock at different moments.
    fn written(plain: bool, log: impl Fn()) -> Vec<String> {
        let lines = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .fmt_fields(PlainFields);
        if plain {
            tracing::subscriber::with_default(builder.event_format(PlainLine::new()).finish(), log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        let text = lines.text();
        text.split_inclusive('\n')
            .map(|line| {
                let (time, rest) = line.split_at(27);
                assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{line}");
                rest.to_owned()
            })
            .collect()
    }

    #[test]
    fn lines_read_exactly_as_with_the_default_format() {
        let log = || {
            tracing::info!(target: "sluice::access", endpoint = "chat", route = %"team-a/chat", attempts = 2_u32,
                cost_usd = %"0.000123", error = "", "request finished");
            tracing::warn!(route = "r", "request refused");
            tracing::error!("plain message");
            tracing::debug!(n = 1_u64, "debug");
            tracing::trace!("trace");
            let span = tracing::info_span!("reload", generation = 3_u64);
            span.in_scope(|| tracing::info!(routes = 2_u64, "inside a span"));
        };
        let plain = written(true, log);
        assert_eq!(plain, written(false, log));
        assert_eq!(plain.len(), 6, "{plain:?}");
        assert!(
            plain[0]
                .starts_with(r#"  INFO sluice::access: request finished endpoint="chat" route=team-a/chat attempts=2"#),
            "{plain:?}"
        );
        assert!(plain[5].contains("reload{generation=3}: "), "{plain:?}");
    }
}
