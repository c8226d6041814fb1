//! Budget periods in the budget's own time zone: when the current one started and when the
//! next starts. Boundaries are local midnight (weeks from Monday, months from the 1st), found
//! with jiff so that a DST change at midnight still lands on the day's first instant.
//!
//! The operator and the sidecar both use this: they must agree on `start`, which is what a
//! pod's restored spend is keyed by.

use crate::Period;
use jiff::{Timestamp, ToSpan, Zoned, civil::Date, tz::TimeZone};

/// The span of one budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first instant of the period.
    pub start: Timestamp,
    /// The first instant of the next period; `None` for `never`.
    pub end: Option<Timestamp>,
}

impl Window {
    /// Whether `now` falls in this window.
    pub fn contains(&self, now: Timestamp) -> bool {
        now >= self.start && self.end.is_none_or(|end| now < end)
    }
}

/// A boundary could not be placed (a date out of jiff's range, or an unknown zone).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot compute the budget period: {0}")]
pub struct PeriodError(String);

/// The window of `period` that contains `now`, in the IANA zone `zone`.
pub fn window_in(period: Period, zone: &str, now: Timestamp) -> Result<Window, PeriodError> {
    let tz = TimeZone::get(zone).map_err(|e| PeriodError(e.to_string()))?;
    window(period, &tz, now)
}

/// The window of `period` that contains `now`, with boundaries at local midnight in `tz`.
pub fn window(period: Period, tz: &TimeZone, now: Timestamp) -> Result<Window, PeriodError> {
    let err = |e: jiff::Error| PeriodError(e.to_string());
    let today = now.to_zoned(tz.clone()).date();
    let (first, next) = match period {
        Period::Never => {
            return Ok(Window {
                start: Timestamp::UNIX_EPOCH,
                end: None,
            });
        }
        Period::Daily => (today, today.checked_add(1.day()).map_err(err)?),
        Period::Weekly => {
            let back = i64::from(today.weekday().to_monday_zero_offset());
            let monday = today.checked_sub(back.days()).map_err(err)?;
            (monday, monday.checked_add(7.days()).map_err(err)?)
        }
        Period::Monthly => {
            let first = today.first_of_month();
            (first, first.checked_add(1.month()).map_err(err)?)
        }
    };
    let start_of = |d: Date| -> Result<Timestamp, PeriodError> {
        let z: Zoned = d.to_zoned(tz.clone()).map_err(err)?;
        Ok(z.start_of_day().map_err(err)?.timestamp())
    };
    Ok(Window {
        start: start_of(first)?,
        end: Some(start_of(next)?),
    })
}

/// `start` as RFC 3339 with the zone's offset, as `status.periodStart` shows it.
pub fn display(start: Timestamp, zone: &str) -> String {
    display_in(start, &TimeZone::get(zone).unwrap_or(TimeZone::UTC))
}

/// An instant as RFC 3339 with `tz`'s offset, e.g. `2026-11-01T00:00:00+01:00`.
pub fn display_in(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn at(period: Period, zone: &str, now: &str) -> (String, Option<String>) {
        let w = window_in(period, zone, ts(now)).unwrap();
        (display(w.start, zone), w.end.map(|e| display(e, zone)))
    }

    #[test]
    fn monthly_starts_at_local_midnight_on_the_first() {
        assert_eq!(
            at(Period::Monthly, "Europe/Berlin", "2026-11-15T12:00:00Z"),
            (
                "2026-11-01T00:00:00+01:00".into(),
                Some("2026-12-01T00:00:00+01:00".into())
            )
        );
        // 23:30 UTC on Oct 31 is already November 1st in Berlin.
        assert_eq!(
            at(Period::Monthly, "Europe/Berlin", "2026-10-31T23:30:00Z").0,
            "2026-11-01T00:00:00+01:00"
        );
    }

    #[test]
    fn a_day_across_a_dst_change_is_23_or_25_hours() {
        // Berlin leaves summer time on 2026-10-25.
        let w = window_in(Period::Daily, "Europe/Berlin", ts("2026-10-25T12:00:00Z")).unwrap();
        assert_eq!(w.end.unwrap().as_second() - w.start.as_second(), 25 * 3600);
        let w = window_in(Period::Daily, "Europe/Berlin", ts("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(w.end.unwrap().as_second() - w.start.as_second(), 23 * 3600);
    }

    #[test]
    fn where_dst_skips_midnight_the_day_starts_at_one() {
        // Santiago springs forward at 00:00 local on 2026-09-06: the day begins at 01:00 (-03).
        assert_eq!(
            at(Period::Daily, "America/Santiago", "2026-09-06T12:00:00Z").0,
            "2026-09-06T01:00:00-03:00"
        );
    }

    #[test]
    fn weeks_start_on_monday_and_never_never_ends() {
        // 2026-11-22 is a Sunday.
        assert_eq!(
            at(Period::Weekly, "UTC", "2026-11-22T23:59:59Z"),
            (
                "2026-11-16T00:00:00+00:00".into(),
                Some("2026-11-23T00:00:00+00:00".into())
            )
        );
        let w = window_in(Period::Never, "UTC", ts("2026-11-22T00:00:00Z")).unwrap();
        assert_eq!((w.start, w.end), (Timestamp::UNIX_EPOCH, None));
    }
}
