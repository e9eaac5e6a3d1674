//! The service calendar of spec §3: opening hours per weekday in Europe/Rome local time,
//! Italian national holidays, optional site patron days and extra closures.

use super::time::{HOUR, Millis};
use jiff::civil::Date;
use std::collections::HashSet;

/// Opening hours of one day: `start <= t < end`, in ms since local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub start: Millis,
    pub end: Millis,
}

impl Hours {
    /// True for a time of day (ms since local midnight) inside these hours.
    pub fn contains(&self, t: Millis) -> bool {
        self.start <= t && t < self.end
    }

    /// Parses `HH:MM-HH:MM` (end may be `24:00`).
    pub fn parse(text: &str) -> Option<Self> {
        let (a, b) = text.trim().split_once('-')?;
        let hm = |s: &str| -> Option<Millis> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60)
                .then_some(h * HOUR + m * 60_000)
        };
        let (start, end) = (hm(a)?, hm(b)?);
        (start < end).then_some(Self { start, end })
    }
}

/// Sites of ASST Valcamonica with a patron-saint day (spec §3), off unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatronSite {
    Esine,
    Breno,
    Darfo,
    Pisogne,
    Edolo,
}

impl PatronSite {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "esine" => Some(Self::Esine),
            "breno" => Some(Self::Breno),
            "darfo" => Some(Self::Darfo),
            "pisogne" => Some(Self::Pisogne),
            "edolo" => Some(Self::Edolo),
            _ => None,
        }
    }

    /// (month, day) of the patron day.
    fn day(self) -> (i8, i8) {
        match self {
            Self::Esine => (1, 25),
            Self::Breno => (2, 14),
            Self::Darfo => (2, 15),
            Self::Pisogne => (5, 12),
            Self::Edolo => (9, 8),
        }
    }
}

/// Easter Sunday (Gregorian, anonymous algorithm).
pub fn easter_sunday(year: i16) -> Date {
    let y = i32::from(year);
    let (a, b, c) = (y % 19, y / 100, y % 100);
    let (d, e) = (b / 4, b % 4);
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let (i, k) = (c / 4, c % 4);
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, month as i8, day as i8).unwrap_or(Date::MIN)
}

/// Italian national holidays; 4 October from 2026 on (Law 151/2025).
pub fn is_national_holiday(date: Date) -> bool {
    const FIXED: [(i8, i8); 10] = [
        (1, 1),
        (1, 6),
        (4, 25),
        (5, 1),
        (6, 2),
        (8, 15),
        (11, 1),
        (12, 8),
        (12, 25),
        (12, 26),
    ];
    let md = (date.month(), date.day());
    FIXED.contains(&md)
        || (md == (10, 4) && date.year() >= 2026)
        // Easter Monday falls between 23 March and 26 April.
        || (matches!(date.month(), 3 | 4) && easter_sunday(date.year()).tomorrow().ok() == Some(date))
}

/// When the call centre is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCalendar {
    /// Monday first.
    pub week: [Option<Hours>; 7],
    pub patron_sites: Vec<PatronSite>,
    pub extra_closures: HashSet<Date>,
    /// Italian national holidays close the centre (spec §3); off for foreign data.
    pub national_holidays: bool,
}

impl Default for ServiceCalendar {
    /// Seed §1.4: Monday–Friday 08:00–18:00, Saturday 08:00–12:00, closed Sunday.
    fn default() -> Self {
        let day = Some(Hours {
            start: 8 * HOUR,
            end: 18 * HOUR,
        });
        let sat = Some(Hours {
            start: 8 * HOUR,
            end: 12 * HOUR,
        });
        Self {
            week: [day, day, day, day, day, sat, None],
            patron_sites: Vec::new(),
            extra_closures: HashSet::new(),
            national_holidays: true,
        }
    }
}

impl ServiceCalendar {
    /// `24x7`: every hour of every day is service time, no holidays (for data that is
    /// not from an Italian CUP, e.g. another PBX's logs).
    pub fn always_open() -> Self {
        let day = Some(Hours {
            start: 0,
            end: 24 * HOUR,
        });
        Self {
            week: [day; 7],
            patron_sites: Vec::new(),
            extra_closures: HashSet::new(),
            national_holidays: false,
        }
    }

    pub fn is_closed_day(&self, date: Date) -> bool {
        (self.national_holidays && is_national_holiday(date))
            || self.extra_closures.contains(&date)
            || self
                .patron_sites
                .iter()
                .any(|s| s.day() == (date.month(), date.day()))
    }

    /// The service hours of a local date; `None` when the centre is closed all day.
    pub fn hours_on(&self, date: Date) -> Option<Hours> {
        let weekday = date.weekday().to_monday_zero_offset() as usize;
        self.week[weekday].filter(|_| !self.is_closed_day(date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{RomeClock, local_date, parse_rfc3339};

    /// In service at an instant, as `figures::tally` decides it: the hours of the local
    /// date, and the local time of day inside them.
    fn open_at(cal: &ServiceCalendar, ts: &str) -> bool {
        let (day, time) = RomeClock::default().local_day(parse_rfc3339(ts).expect("valid ts"));
        cal.hours_on(local_date(day))
            .is_some_and(|h| h.contains(time))
    }

    #[test]
    fn easter_dates() {
        assert_eq!(easter_sunday(2019), jiff::civil::date(2019, 4, 21));
        assert_eq!(easter_sunday(2024), jiff::civil::date(2024, 3, 31));
        assert_eq!(easter_sunday(2026), jiff::civil::date(2026, 4, 5));
        assert_eq!(easter_sunday(2000), jiff::civil::date(2000, 4, 23));
    }

    #[test]
    fn holidays() {
        use jiff::civil::date;
        assert!(is_national_holiday(date(2019, 4, 22)), "Easter Monday 2019");
        assert!(!is_national_holiday(date(2019, 4, 21 + 2)));
        assert!(is_national_holiday(date(2019, 12, 26)));
        assert!(!is_national_holiday(date(2025, 10, 4)));
        assert!(is_national_holiday(date(2026, 10, 4)));
        assert!(is_national_holiday(date(2027, 10, 4)));
        assert!(
            !is_national_holiday(date(2019, 1, 25)),
            "patron days are off by default"
        );
    }

    #[test]
    fn hours_are_half_open_in_local_time() {
        let cal = ServiceCalendar::default();
        // Monday 2019-03-04 (CET, +01:00).
        assert!(!open_at(&cal, "2019-03-04T07:59:59.999+01:00"));
        assert!(open_at(&cal, "2019-03-04T08:00:00.000+01:00"));
        assert!(open_at(&cal, "2019-03-04T17:59:59.999+01:00"));
        assert!(!open_at(&cal, "2019-03-04T18:00:00.000+01:00"));
        // Same local hour written in UTC.
        assert!(open_at(&cal, "2019-03-04T07:00:00Z"));
        assert!(!open_at(&cal, "2019-03-04T06:59:59.999Z"));
        // Saturday 08:00-12:00, Sunday closed.
        assert!(open_at(&cal, "2019-03-09T11:59:59.999+01:00"));
        assert!(!open_at(&cal, "2019-03-09T12:00:00+01:00"));
        assert!(!open_at(&cal, "2019-03-10T10:00:00+01:00"));
        // Holiday on a weekday.
        assert!(!open_at(&cal, "2019-04-25T10:00:00+02:00"));
    }

    #[test]
    fn daylight_saving_days() {
        let cal = ServiceCalendar::default();
        // Monday 2019-04-01 in CEST: 08:00 local is 06:00Z.
        assert!(open_at(&cal, "2019-04-01T06:00:00Z"));
        assert!(!open_at(&cal, "2019-04-01T05:59:59.999Z"));
        assert!(!open_at(&cal, "2019-04-01T16:00:00Z"));
        // Saturday 2019-10-26 (CEST) and Monday 2019-10-28 (back to CET).
        assert!(open_at(&cal, "2019-10-26T09:59:59Z"));
        assert!(!open_at(&cal, "2019-10-26T10:00:00Z"));
        assert!(open_at(&cal, "2019-10-28T07:00:00Z"));
        assert!(!open_at(&cal, "2019-10-28T06:30:00Z"));
    }

    #[test]
    fn always_open_counts_every_hour_and_holiday() {
        let cal = ServiceCalendar::always_open();
        // Christmas at 03:00, a Sunday at 23:59:59.999, a DST change day at midnight.
        assert!(open_at(&cal, "2019-12-25T03:00:00+01:00"));
        assert!(open_at(&cal, "2019-03-10T23:59:59.999+01:00"));
        assert!(open_at(&cal, "2019-03-31T00:00:00+01:00"));
        assert!(!open_at(
            &ServiceCalendar::default(),
            "2019-12-25T10:00:00+01:00"
        ));
    }

    #[test]
    fn configured_closures() {
        let mut cal = ServiceCalendar::default();
        assert!(open_at(&cal, "2019-01-25T10:00:00+01:00"));
        cal.patron_sites.push(PatronSite::Esine);
        cal.extra_closures.insert(jiff::civil::date(2019, 3, 5));
        assert!(!open_at(&cal, "2019-01-25T10:00:00+01:00"));
        assert!(!open_at(&cal, "2019-03-05T10:00:00+01:00"));
        assert_eq!(Hours::parse("08:30-24:00").map(|h| h.end), Some(24 * HOUR));
        assert_eq!(Hours::parse("18:00-08:00"), None);
        assert_eq!(Hours::parse("8-18"), None);
    }
}
