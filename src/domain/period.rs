//! Billing months and the periods they cover in the operator's timezone.
//!
//! Month `M` for billing day `d` covers `[M-d 00:00, (M+1)-d 00:00)` local time. Local
//! midnights are resolved through the tz database, never by adding 24-hour days, so DST
//! zones work too.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillingMonth {
    year: i32,
    month: u32,
}

impl BillingMonth {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1000..=9999).contains(&year)).then_some(BillingMonth { year, month })
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            BillingMonth { year: self.year + 1, month: 1 }
        } else {
            BillingMonth { year: self.year, month: self.month + 1 }
        }
    }

    pub fn previous(self) -> Self {
        if self.month == 1 {
            BillingMonth { year: self.year - 1, month: 12 }
        } else {
            BillingMonth { year: self.year, month: self.month - 1 }
        }
    }

    fn day(self, day: BillingDay) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, u32::from(day.0))
            .expect("billing days 1-28 exist in every month")
    }
}

impl fmt::Display for BillingMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for BillingMonth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for BillingMonth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a month written YYYY-MM");
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 || !year.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        BillingMonth::new(year.parse().map_err(|_| bad())?, month.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

/// First day of a subscriber's billing period, 1 to 28 so that it exists in every month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillingDay(u8);

impl BillingDay {
    pub const FIRST: BillingDay = BillingDay(1);
    pub const LAST: BillingDay = BillingDay(28);

    pub fn new(day: i64) -> Option<Self> {
        (1..=28).contains(&day).then_some(BillingDay(day as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A half-open interval of instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The billing period of `month` for a subscriber whose period starts on `day`.
pub fn billing_period(month: BillingMonth, day: BillingDay, tz: Tz) -> Period {
    Period { start: local_midnight(month.day(day), tz), end: local_midnight(month.next().day(day), tz) }
}

/// Finds the billing month an instant falls in, for any billing day: the month whose
/// `billing_period` holds it, by construction. The periods it looks at are kept, since an
/// import places millions of records in a handful of them, and the time zone lookup of
/// each record's local date cost more than the rest of placing it.
pub struct MonthFinder {
    tz: Tz,
    periods: HashMap<(BillingMonth, BillingDay), Period>,
}

impl MonthFinder {
    pub fn new(tz: Tz) -> Self {
        MonthFinder { tz, periods: HashMap::new() }
    }

    pub fn month_of(&mut self, at: DateTime<Utc>, day: BillingDay) -> BillingMonth {
        // The month by the UTC date is at most one off: no zone is a day away from UTC.
        let utc = at.date_naive();
        let mut month = BillingMonth::new(utc.year(), utc.month()).expect("a four-digit year");
        if utc.day() < u32::from(day.get()) {
            month = month.previous();
        }
        loop {
            let tz = self.tz;
            let period = *self.periods.entry((month, day)).or_insert_with(|| billing_period(month, day, tz));
            if at < period.start {
                month = month.previous();
            } else if at >= period.end {
                month = month.next();
            } else {
                return month;
            }
        }
    }
}

/// The calendar month in the operator's timezone (spam reports are counted per calendar month).
pub fn calendar_month(month: BillingMonth, tz: Tz) -> Period {
    billing_period(month, BillingDay::FIRST, tz)
}

/// The smallest interval holding every subscriber's period of `month`, whatever the billing day.
pub fn all_periods_of(month: BillingMonth, tz: Tz) -> Period {
    Period {
        start: billing_period(month, BillingDay::FIRST, tz).start,
        end: billing_period(month, BillingDay::LAST, tz).end,
    }
}

/// The first instant of `date` in `tz`. Where midnight does not exist (a DST jump at 00:00)
/// the day starts at the first local time that does.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut local = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    loop {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => local += Duration::minutes(15),
        }
    }
}

/// The local calendar date of an instant, used for "same day" comparisons.
pub fn local_date(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The last local day inside a period (its end is exclusive), for display.
pub fn last_local_day(period: &Period, tz: Tz) -> NaiveDate {
    local_date(period.end - Duration::microseconds(1), tz)
}

/// Month and day of a local date, without the year, e.g. for "10月1日".
pub fn month_and_day(date: NaiveDate) -> (u32, u32) {
    (date.month(), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset};
    use chrono_tz::Asia::Shanghai;
    use proptest::prelude::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::<FixedOffset>::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn month(s: &str) -> BillingMonth {
        s.parse().unwrap()
    }

    #[test]
    fn months_parse_only_in_the_contract_form() {
        assert_eq!(month("2026-10").to_string(), "2026-10");
        for bad in ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "2026-10-01", "", "２０２６-10"] {
            assert!(bad.parse::<BillingMonth>().is_err(), "{bad} should be refused");
        }
        assert_eq!(month("2026-12").next(), month("2027-01"));
        assert_eq!(month("2027-01").previous(), month("2026-12"));
    }

    #[test]
    fn a_period_runs_from_the_billing_day_to_the_same_day_next_month() {
        let p = billing_period(month("2026-10"), BillingDay::new(1).unwrap(), Shanghai);
        assert_eq!(p.start, at("2026-10-01T00:00:00+08:00"));
        assert_eq!(p.end, at("2026-11-01T00:00:00+08:00"));

        let p = billing_period(month("2026-12"), BillingDay::new(28).unwrap(), Shanghai);
        assert_eq!(p.start, at("2026-12-28T00:00:00+08:00"));
        assert_eq!(p.end, at("2027-01-28T00:00:00+08:00"));

        let p = billing_period(month("2027-01"), BillingDay::new(28).unwrap(), Shanghai);
        assert_eq!(p.end, at("2027-02-28T00:00:00+08:00"), "February has a 28th");
    }

    #[test]
    fn records_are_placed_by_their_instant_in_the_operator_timezone() {
        let p = billing_period(month("2026-08"), BillingDay::FIRST, Shanghai);
        assert!(p.contains(at("2026-08-01T00:00:00+08:00")), "exactly at the start is inside");
        assert!(!p.contains(at("2026-09-01T00:00:00+08:00")), "exactly at the end is outside");
        // 2026-07-31 10:59:59 at -05:00 is 23:59:59 on July 31st in Shanghai: before the period.
        assert!(!p.contains(at("2026-07-31T10:59:59-05:00")));
        // 2026-08-31 15:59:59 UTC is 23:59:59 on August 31st in Shanghai: inside.
        assert!(p.contains(at("2026-08-31T15:59:59+00:00")));
        // 2026-08-01 01:00 at +09:00 is 00:00 on August 1st in Shanghai: inside.
        assert!(p.contains(at("2026-08-01T01:00:00+09:00")));
        // One microsecond before local midnight belongs to the previous month.
        assert!(!p.contains(at("2026-07-31T15:59:59.999999+00:00")));
    }

    #[test]
    fn a_dst_zone_gets_its_local_midnights_right() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let p = billing_period(month("2026-03"), BillingDay::FIRST, tz);
        assert_eq!(p.start, at("2026-03-01T00:00:00-05:00"));
        assert_eq!(p.end, at("2026-04-01T00:00:00-04:00"));
        assert_eq!((p.end - p.start).num_hours(), 31 * 24 - 1);
        // Santiago skips midnight when DST starts; the day begins at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let start = local_midnight(NaiveDate::from_ymd_opt(2026, 9, 6).unwrap(), santiago);
        assert_eq!(start.with_timezone(&santiago).format("%H:%M").to_string(), "01:00");
    }

    #[test]
    fn the_last_day_shown_is_the_day_before_the_next_period_starts() {
        let p = billing_period(month("2026-10"), BillingDay::new(15).unwrap(), Shanghai);
        assert_eq!(last_local_day(&p, Shanghai), NaiveDate::from_ymd_opt(2026, 11, 14).unwrap());
    }

    proptest! {
        #[test]
        fn consecutive_periods_tile_time_without_gaps(year in 2000i32..2100, m in 1u32..=12, day in 1i64..=28) {
            let month = BillingMonth::new(year, m).unwrap();
            let day = BillingDay::new(day).unwrap();
            let this = billing_period(month, day, Shanghai);
            let next = billing_period(month.next(), day, Shanghai);
            prop_assert_eq!(this.end, next.start);
            let days = (this.end - this.start).num_days();
            prop_assert!((28..=31).contains(&days));
            let all = all_periods_of(month, Shanghai);
            prop_assert!(all.start <= this.start && this.end <= all.end);
        }

        #[test]
        fn every_instant_falls_in_exactly_one_period(secs in 946_684_800i64..4_102_444_800, day in 1i64..=28) {
            let instant = DateTime::from_timestamp(secs, 0).unwrap();
            let day = BillingDay::new(day).unwrap();
            let local = instant.with_timezone(&Shanghai);
            let mut month = BillingMonth::new(local.year(), local.month()).unwrap();
            if local.day() < u32::from(day.get()) {
                month = month.previous();
            }
            prop_assert!(billing_period(month, day, Shanghai).contains(instant));
            prop_assert!(!billing_period(month.previous(), day, Shanghai).contains(instant));
            prop_assert!(!billing_period(month.next(), day, Shanghai).contains(instant));
        }

        #[test]
        fn the_month_finder_finds_the_period_that_holds_an_instant(
            secs in 946_684_800i64..4_102_444_800,
            day in 1i64..=28,
            zone in prop::sample::select(vec![Shanghai, chrono_tz::America::Havana, chrono_tz::Pacific::Kiritimati,
                                              chrono_tz::Pacific::Pago_Pago, chrono_tz::Europe::London]),
        ) {
            let instant = DateTime::from_timestamp(secs, 0).unwrap();
            let day = BillingDay::new(day).unwrap();
            let mut finder = MonthFinder::new(zone);
            let month = finder.month_of(instant, day);
            prop_assert!(billing_period(month, day, zone).contains(instant));
            // Asked again, from the periods it kept, it answers the same.
            prop_assert_eq!(finder.month_of(instant, day), month);
        }
    }
}
