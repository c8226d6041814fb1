//! The text log's fields, written straight into the line. The access log writes eighteen fields
//! for every request, and `tracing-subscriber`'s default visitor styles each name through
//! `nu_ansi_term` and a four-argument `write!` even with colours off: a fifth of the sidecar's
//! own work per request went there.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, format::Writer},
};

/// Fields as the default text format writes them (the message bare, then `name=value` with
/// strings quoted), without styling, and with control characters escaped in every value so that
/// nothing an upstream or a client sent can forge a log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes each field it visits; the first failure stops it.
struct PlainVisitor<'a, W> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> PlainVisitor<'_, W> {
    /// Writes the separator and `name=` (nothing for the message), then the value.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        // The metadata of a record forwarded from the `log` crate, which the line's target
        // and location already say: the default visitor leaves these out too.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(' ')?;
            }
            let name = field.name();
            if name != "message" {
                self.out.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.out.write_char('=')?;
            }
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for PlainVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |out| Escaping(out).write_str(value));
        } else if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            // What `{:?}` writes for a string that needs no escape, without visiting each char.
            self.field(field, |out| {
                out.write_char('"')?;
                out.write_str(value)?;
                out.write_char('"')
            });
        } else {
            self.field(field, |out| write!(out, "{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = crate::wire::with_causes(value);
        self.field(field, |out| Escaping(out).write_str(&text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write!(Escaping(out), "{value:?}"));
    }
}

/// Passes text on with control characters (newlines included) escaped as `{:?}` escapes them.
struct Escaping<'a, W>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (at, c) in s.char_indices().filter(|(_, c)| c.is_control()) {
            self.0.write_str(&s[start..at])?;
            write!(self.0, "{}", c.escape_debug())?;
            start = at + c.len_utf8();
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Every line written, kept for the test to read (the log line's tests use it too).
    #[derive(Clone, Default)]
    pub(crate) struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        /// What was written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// What `log` writes through the text format with `fields`, or with the default fields.
    fn written(plain: bool, log: impl FnOnce()) -> String {
        let lines = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .without_time();
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        lines.text()
    }

    #[derive(Debug)]
    enum Outcome {
        Ok,
    }

    fn access_line() {
        let route = "team-a/chat";
        tracing::info!(target: "sluice::access", endpoint = "chat", route = %route, backend = "openai",
            user = "", outcome = ?Outcome::Ok, attempts = 2_u32, stream = true, latency_ms = 12_u64,
            ttft_ms = Some(3_u64), delta = -4_i64, cost_usd = %"0.000123", error = "upstream said \"no\"",
            "request finished");
    }

    #[test]
    fn an_access_line_reads_exactly_as_with_the_default_fields() {
        let plain = written(true, access_line);
        assert_eq!(plain, written(false, access_line));
        assert!(
            plain.contains(r#"request finished endpoint="chat" route=team-a/chat backend="openai" user="""#),
            "{plain}"
        );
    }

    #[test]
    fn the_fields_of_a_forwarded_log_record_are_left_out_as_by_default() {
        let record = || tracing::info!("log.target" = "hyper::proto", "log.line" = 12_u64, n = 1_u64, "read");
        let plain = written(true, record);
        assert_eq!(plain, written(false, record));
        assert!(plain.ends_with("read n=1\n"), "{plain}");
    }

    #[test]
    fn control_characters_in_any_value_cannot_start_a_new_line() {
        let plain = written(true, || {
            let forged = "x\n2026-01-01T00:00:00Z  INFO forged";
            tracing::warn!(route = %forged, model = forged, "bad\r\nmessage \u{1b}[31m");
        });
        assert_eq!(plain.lines().count(), 1, "{plain}");
        assert!(plain.contains(r"bad\r\nmessage \u{1b}[31m"), "{plain}");
        assert!(plain.contains(r#"route=x\n2026"#), "{plain}");
        assert!(plain.contains(r#"model="x\n2026"#), "{plain}");
    }

    #[test]
    fn an_error_value_is_written_with_its_causes() {
        let cause = std::io::Error::other("connection reset");
        let plain = written(true, || {
            let error: &(dyn std::error::Error + 'static) = &cause;
            tracing::error!(error, "upstream failed");
        });
        assert!(plain.contains("upstream failed error=connection reset"), "{plain}");
    }
}
