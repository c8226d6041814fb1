//! Budget periods: when the current one started and when it ends, in the budget's time zone.

use jiff::{Timestamp, ToSpan, Zoned, tz::TimeZone};
use sluice_crds::Period;

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

/// The time zone could not place a period boundary (out of range dates).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot compute the budget period: {0}")]
pub struct PeriodError(String);

/// The window of `period` that contains `now`, with boundaries at local midnight in `tz`;
/// weeks start on Monday.
pub fn window(period: Period, tz: &TimeZone, now: Timestamp) -> Result<Window, PeriodError> {
    let err = |e: jiff::Error| PeriodError(e.to_string());
    let local = now.to_zoned(tz.clone());
    let (first_day, next_first_day) = match period {
        Period::Never => {
            return Ok(Window {
                start: Timestamp::UNIX_EPOCH,
                end: None,
            });
        }
        Period::Daily => (local.date(), local.date().checked_add(1.day()).map_err(err)?),
        Period::Weekly => {
            let back = i64::from(local.weekday().to_monday_zero_offset());
            let monday = local.date().checked_sub(back.days()).map_err(err)?;
            (monday, monday.checked_add(7.days()).map_err(err)?)
        }
        Period::Monthly => {
            let first = local.date().first_of_month();
            (first, first.checked_add(1.month()).map_err(err)?)
        }
    };
    // `start_of_day` lands on the first instant of the day even where DST skips midnight.
    let start_of = |d: jiff::civil::Date| -> Result<Timestamp, PeriodError> {
        let z: Zoned = d.to_zoned(tz.clone()).map_err(err)?;
        Ok(z.start_of_day().map_err(err)?.timestamp())
    };
    Ok(Window {
        start: start_of(first_day)?,
        end: Some(start_of(next_first_day)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    #[test]
    fn daily_in_utc_runs_midnight_to_midnight() {
        let w = window(Period::Daily, &TimeZone::UTC, ts("2026-11-21T23:59:59Z")).unwrap();
        assert_eq!(
            w,
            Window {
                start: ts("2026-11-21T00:00:00Z"),
                end: Some(ts("2026-11-22T00:00:00Z"))
            }
        );
    }

    #[test]
    fn weekly_starts_on_monday() {
        // 2026-11-21 is a Saturday.
        let w = window(Period::Weekly, &TimeZone::UTC, ts("2026-11-21T12:00:00Z")).unwrap();
        assert_eq!(w.start, ts("2026-11-16T00:00:00Z"));
        assert_eq!(w.end, Some(ts("2026-11-23T00:00:00Z")));
    }

    #[test]
    fn monthly_in_berlin_follows_local_midnight() {
        // 00:30 on the 1st in Berlin is still October in UTC.
        let w = window(Period::Monthly, &berlin(), ts("2026-10-31T23:30:00Z")).unwrap();
        assert_eq!(w.start, ts("2026-10-31T23:00:00Z"));
        assert_eq!(w.end, Some(ts("2026-11-30T23:00:00Z")));
    }

    #[test]
    fn a_day_with_a_dst_change_is_23_or_25_hours_long() {
        // Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
        let spring = window(Period::Daily, &berlin(), ts("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(spring.start, ts("2026-03-28T23:00:00Z"));
        assert_eq!(spring.end, Some(ts("2026-03-29T22:00:00Z")));
        let autumn = window(Period::Daily, &berlin(), ts("2026-10-25T12:00:00Z")).unwrap();
        assert_eq!(autumn.start, ts("2026-10-24T22:00:00Z"));
        assert_eq!(autumn.end, Some(ts("2026-10-25T23:00:00Z")));
    }

    #[test]
    fn monthly_window_across_a_dst_change_keeps_local_midnights() {
        let w = window(Period::Monthly, &berlin(), ts("2026-03-15T00:00:00Z")).unwrap();
        assert_eq!(w.start, ts("2026-02-28T23:00:00Z"));
        assert_eq!(w.end, Some(ts("2026-03-31T22:00:00Z")));
    }

    #[test]
    fn never_has_no_end() {
        let w = window(Period::Never, &berlin(), ts("2026-03-15T00:00:00Z")).unwrap();
        assert!(w.end.is_none() && w.contains(ts("2100-01-01T00:00:00Z")));
    }
}
