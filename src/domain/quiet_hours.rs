//! Quiet hours: the local time window in which no message may be pushed.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
}

impl QuietHours {
    /// `[start, end)` local time; the window may wrap midnight. Equal start and end disable it.
    pub fn new(start: NaiveTime, end: NaiveTime, tz: Tz) -> Self {
        QuietHours { start, end, tz }
    }

    fn contains(&self, time: NaiveTime) -> bool {
        if self.start <= self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// When pushing may resume: `None` when `now` is outside quiet hours.
    pub fn resumes_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        if !self.contains(local.time()) {
            return None;
        }
        let mut date = local.date_naive();
        if local.time() >= self.end {
            date = date.succ_opt().expect("dates this far from the end of time");
        }
        let end = date.and_time(self.end);
        // An end time inside a DST gap does not exist that day; resume an hour later.
        let resume = [end, end + Duration::hours(1)]
            .iter()
            .find_map(|local| self.tz.from_local_datetime(local).earliest())
            .expect("a DST gap is shorter than an hour")
            .with_timezone(&Utc);
        Some(resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use chrono_tz::Asia::Shanghai;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::<FixedOffset>::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn the_default_window_wraps_midnight() {
        let quiet = QuietHours::new(hm("21:00"), hm("08:00"), Shanghai);
        assert_eq!(quiet.resumes_at(at("2026-11-02T20:59:59+08:00")), None);
        assert_eq!(quiet.resumes_at(at("2026-11-02T21:00:00+08:00")), Some(at("2026-11-03T08:00:00+08:00")));
        assert_eq!(quiet.resumes_at(at("2026-11-03T03:00:00+08:00")), Some(at("2026-11-03T08:00:00+08:00")));
        assert_eq!(quiet.resumes_at(at("2026-11-03T08:00:00+08:00")), None);
        // 14:00 UTC is 22:00 in Shanghai: quiet, although it is afternoon in UTC.
        assert_eq!(quiet.resumes_at(at("2026-11-02T14:00:00+00:00")), Some(at("2026-11-03T08:00:00+08:00")));
    }

    #[test]
    fn a_window_within_one_day_works_too() {
        let quiet = QuietHours::new(hm("12:00"), hm("14:00"), Shanghai);
        assert_eq!(quiet.resumes_at(at("2026-11-02T13:00:00+08:00")), Some(at("2026-11-02T14:00:00+08:00")));
        assert_eq!(quiet.resumes_at(at("2026-11-02T14:00:00+08:00")), None);
    }

    #[test]
    fn equal_start_and_end_disable_quiet_hours() {
        let quiet = QuietHours::new(hm("00:00"), hm("00:00"), Shanghai);
        assert_eq!(quiet.resumes_at(at("2026-11-02T23:00:00+08:00")), None);
        assert_eq!(quiet.resumes_at(at("2026-11-02T00:00:00+08:00")), None);
    }
}
