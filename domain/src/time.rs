//! Instants (epoch milliseconds, UTC), the RFC 3339 form of spec §1, and Europe/Rome local time.
//!
//! Everything is kept to the millisecond; fraction digits after the third are dropped,
//! never rounded (spec §1).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::sync::OnceLock;

/// Epoch milliseconds (UTC).
pub type Millis = i64;

use super::limits::{END_TS, MIN_TS, YEARS};

pub const SECOND: Millis = 1_000;
pub const HOUR: Millis = 3_600 * SECOND;
pub const DAY: Millis = 24 * HOUR;

/// Why a `ts` text is not RFC 3339 as spec §1 accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsError {
    Syntax,
    OutOfRange,
}

/// True when `ms` is inside the accepted range `[1970-01-01T00:00Z, 2101-01-01T00:00Z)`.
pub fn in_range(ms: i64) -> bool {
    (MIN_TS..END_TS).contains(&ms)
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TsError> {
    let part = b.get(at..at + n).ok_or(TsError::Syntax)?;
    part.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(TsError::Syntax)
        }
    })
}

/// The optional `.` + digits at `at`, as milliseconds (the first three digits; the rest
/// dropped, truncation not rounding), and where what follows starts.
fn fraction_ms(b: &[u8], at: usize) -> Result<(u32, usize), TsError> {
    if b.get(at) != Some(&b'.') {
        return Ok((0, at));
    }
    let start = at + 1;
    let digits = b
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(TsError::Syntax);
    }
    let millis = (0..3).fold(0u32, |ms, i| {
        let d = b
            .get(start + i)
            .filter(|_| i < digits)
            .map_or(0, |c| c - b'0');
        ms * 10 + u32::from(d)
    });
    Ok((millis, start + digits))
}

/// Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first year of [`YEAR_START`]: the one before [`super::limits::YEARS`] (a UTC
/// offset can bring a local time of the year before or after into range).
const FIRST_TABLE_YEAR: u32 = *YEARS.start() as u32 - 1;
/// Years in [`YEAR_START`]: those of [`super::limits::YEARS`] and one either side.
const TABLE_YEARS: usize = (*YEARS.end() - *YEARS.start()) as usize + 3;

/// [`days_from_civil`] of 1 January of each year from [`FIRST_TABLE_YEAR`] on.
const YEAR_START: [i64; TABLE_YEARS] = {
    let mut table = [0; TABLE_YEARS];
    let mut i = 0;
    while i < TABLE_YEARS {
        table[i] = days_from_civil(FIRST_TABLE_YEAR as i64 + i as i64, 1, 1);
        i += 1;
    }
    table
};

/// Days of the year before the first of each month (of a common year).
const DAYS_BEFORE_MONTH: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// [`days_from_civil`] of a checked date (month 1..=12, day within it), from tables for
/// the years an instant in range can have.
fn civil_days(year: u32, month: u32, day: u32) -> i64 {
    let start = year
        .checked_sub(FIRST_TABLE_YEAR)
        .and_then(|i| YEAR_START.get(i as usize));
    let before = month
        .checked_sub(1)
        .and_then(|m| DAYS_BEFORE_MONTH.get(m as usize));
    match (start, before) {
        (Some(&start), Some(&before)) => {
            let leap_day = month > 2 && days_in_month(year, 2) == 29;
            start + i64::from(before) + i64::from(leap_day) + i64::from(day) - 1
        }
        _ => days_from_civil(i64::from(year), month, day),
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

/// Parses spec §1's RFC 3339 `date-time` into epoch milliseconds.
///
/// `YYYY-MM-DD`, `T`/`t`/space, `hh:mm:ss`, optional `.` + digits, then `Z`/`z`/`±hh:mm`.
/// The fixed-width head is read eight bytes at a time ([`head`]): it is on every
/// event's path.
pub fn parse_rfc3339(text: &str) -> Result<Millis, TsError> {
    let b = text.as_bytes();
    let h = b.first_chunk::<19>().ok_or(TsError::Syntax)?;
    let [year, month, day, hour, minute, second] = head(h).ok_or(TsError::Syntax)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(TsError::Syntax);
    }
    // Milliseconds as almost every producer writes them (`.055`) without the loop.
    let (millis, at) = match (b.get(19..23), b.get(23)) {
        (Some(&[b'.', x, y, z]), next)
            if [x, y, z].iter().all(u8::is_ascii_digit)
                && !next.is_some_and(u8::is_ascii_digit) =>
        {
            let digit = |c: u8| u32::from(c - b'0');
            (digit(x) * 100 + digit(y) * 10 + digit(z), 23)
        }
        _ => fraction_ms(b, 19)?,
    };
    let offset_min: i64 = match b.get(at..) {
        Some([b'Z' | b'z']) => 0,
        Some(&[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
            let digit = |c: u8| u32::from(c.wrapping_sub(b'0'));
            if [h1, h2, m1, m2].iter().any(|&c| digit(c) > 9) {
                return Err(TsError::Syntax);
            }
            let (oh, om) = (digit(h1) * 10 + digit(h2), digit(m1) * 10 + digit(m2));
            if oh > 23 || om > 59 {
                return Err(TsError::Syntax);
            }
            let v = i64::from(oh * 60 + om);
            if sign == b'-' { -v } else { v }
        }
        _ => return Err(TsError::Syntax),
    };
    instant(
        [year, month, day],
        [hour, minute, second, millis],
        offset_min,
    )
}

/// Bytes 4 and 7 of `YYYY-MM-`, and bytes 2 and 5 of `DDThh:mm` and of `hh:mm:ss`: the
/// separators among the digits of an RFC 3339 head.
const SEP_DATE: u64 = 0xff00_00ff_0000_0000;
const SEP_TIME: u64 = 0x0000_ff00_00ff_0000;
const ONES: u64 = 0x0101_0101_0101_0101;

/// `YYYY-MM-DDThh:mm:ss` as year, month, day, hour, minute, second (not range-checked),
/// or `None` when a digit or a separator is not one. Three overlapping little-endian
/// words hold the 19 bytes; each is checked and read whole (SWAR).
fn head(h: &[u8; 19]) -> Option<[u32; 6]> {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (date, mid, time) = (word(0), word(8), word(11));
    let byte = |w: u64, i: u32| (w >> (8 * i)) as u8;
    if byte(date, 4) != b'-'
        || byte(date, 7) != b'-'
        || !matches!(byte(mid, 2), b'T' | b't' | b' ')
        || byte(mid, 5) != b':'
        || byte(time, 5) != b':'
    {
        return None;
    }
    // The separators read as '0', then each word's bytes are digits' values.
    let values = |w: u64, sep: u64| {
        let w = (w & !sep) | (sep & (ONES * u64::from(b'0')));
        all_digits(w).then(|| w - ONES * u64::from(b'0'))
    };
    let (date, mid, time) = (
        values(date, SEP_DATE)?,
        values(mid, SEP_TIME)?,
        values(time, SEP_TIME)?,
    );
    // Byte i of `pairs(w)`: the two-digit number of bytes i and i + 1 (at most 99, so
    // no byte carries into the next).
    let pairs = |w: u64| w.wrapping_mul(10) + (w >> 8);
    let two = |w: u64, i: u32| u32::from(byte(pairs(w), i));
    Some([
        two(date, 0) * 100 + two(date, 2),
        two(date, 5),
        two(mid, 0),
        two(mid, 3),
        two(mid, 6),
        two(time, 6),
    ])
}

/// True when every byte of `w` is an ASCII digit: its high nibble is 3, and still 3
/// once 6 is added (which no byte of high nibble 3 carries out of).
fn all_digits(w: u64) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    ((w & HIGH) | ((w.wrapping_add(ONES * 6) & HIGH) >> 4)) == ONES * 0x33
}

/// The instant of a checked civil date and time of day (with milliseconds) at a UTC
/// offset in minutes; out of range when outside spec §1's years.
fn instant(date: [u32; 3], time: [u32; 4], offset_min: i64) -> Result<Millis, TsError> {
    let [year, month, day] = date;
    let [hour, minute, second, millis] = time;
    let days = civil_days(year, month, day);
    let local_ms = days * DAY
        + i64::from(hour) * HOUR
        + i64::from(minute) * 60 * SECOND
        + i64::from(second) * SECOND
        + i64::from(millis);
    let ms = local_ms - offset_min * 60 * SECOND;
    if in_range(ms) {
        Ok(ms)
    } else {
        Err(TsError::OutOfRange)
    }
}

fn rome() -> &'static TimeZone {
    static ROME: OnceLock<TimeZone> = OnceLock::new();
    // The tz database is bundled into the binary (jiff's `tzdb-bundle-always`), so the
    // result never depends on the machine's /usr/share/zoneinfo.
    ROME.get_or_init(|| TimeZone::get("Europe/Rome").unwrap_or(TimeZone::UTC))
}

/// Local Europe/Rome civil date-time of an instant (daylight saving included), straight
/// from the tz rules: the reference [`RomeClock`] is tested against.
#[cfg(test)]
pub fn rome_local(ms: Millis) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    rome().to_datetime(ts)
}

/// The instant of local midnight (Europe/Rome) starting a civil date.
pub fn rome_midnight(date: Date) -> Millis {
    rome()
        .to_ambiguous_timestamp(date.at(0, 0, 0, 0))
        .compatible()
        .map(|t| t.as_millisecond())
        .unwrap_or(MIN_TS)
}

/// An instant as Europe/Rome local RFC 3339 with its offset, to the second
/// (`2019-10-27T02:00:00+01:00`: the two 02:00 of a DST end day stay apart).
pub fn rome_rfc3339(ms: Millis) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = rome().to_datetime(ts);
    let off = rome().to_offset(ts).seconds();
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        off / 3600,
        off / 60 % 60
    )
}

/// Europe/Rome local time for many instants: remembers the UTC offset of the last UTC
/// hour seen.
/// Europe/Rome has changed offset only on whole UTC hours since 1970, so an hour's offset
/// holds for all of it; calls come roughly in time order, so the tz rules are looked up
/// about once an hour of data instead of once a call.
#[derive(Debug, Default)]
pub struct RomeClock {
    hour: Option<(i64, jiff::tz::Offset)>,
}

impl RomeClock {
    fn offset(&mut self, ms: Millis, ts: jiff::Timestamp) -> jiff::tz::Offset {
        let hour = ms.div_euclid(HOUR);
        match self.hour {
            Some((h, off)) if h == hour => off,
            _ => {
                let off = rome().to_offset(ts);
                self.hour = Some((hour, off));
                off
            }
        }
    }

    /// The local day of an instant (days since 1970-01-01 in local time) and its time of
    /// day in ms, without building a civil date for each call (see [`local_date`] for
    /// the date of a day).
    pub fn local_day(&mut self, ms: Millis) -> (i64, Millis) {
        let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let local = ms + i64::from(self.offset(ms, ts).seconds()) * SECOND;
        (local.div_euclid(DAY), local.rem_euclid(DAY))
    }
}

/// The civil date of a local day number (days since 1970-01-01).
pub fn local_date(day: i64) -> Date {
    jiff::Timestamp::from_second(day * (DAY / SECOND))
        .map(|t| TimeZone::UTC.to_datetime(t).date())
        .unwrap_or(Date::MIN)
}

/// Milliseconds since local midnight of a civil date-time.
#[cfg(test)]
pub fn ms_of_day(dt: jiff::civil::DateTime) -> Millis {
    i64::from(dt.hour()) * HOUR
        + i64::from(dt.minute()) * 60 * SECOND
        + i64::from(dt.second()) * SECOND
        + i64::from(dt.subsec_nanosecond() / 1_000_000)
}

/// Parses a `YYYY-MM-DD` local date.
pub fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(b, 0, 4).ok()?;
    let m = digits(b, 5, 2).ok()?;
    let d = digits(b, 8, 2).ok()?;
    Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_edits::Rng;

    fn expect(b: &[u8], at: usize, what: u8) -> Result<(), TsError> {
        if b.get(at) == Some(&what) {
            Ok(())
        } else {
            Err(TsError::Syntax)
        }
    }

    /// The previous, digit-by-digit parser: the reference for the differential test.
    ///
    /// `YYYY-MM-DD`, `T`/`t`/space, `hh:mm:ss`, optional `.` + digits, then `Z`/`z`/`±hh:mm`.
    fn reference_parse(text: &str) -> Result<Millis, TsError> {
        let b = text.as_bytes();
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
            return Err(TsError::Syntax);
        }
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let second = digits(b, 17, 2)?;
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TsError::Syntax);
        }
        let mut at = 19;
        let mut millis = 0u32;
        if b.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                // Keep the first three digits, drop the rest (truncation, not rounding).
                if at - start < 3 {
                    millis = millis * 10 + u32::from(b[at] - b'0');
                }
                at += 1;
            }
            let n = at - start;
            if n == 0 {
                return Err(TsError::Syntax);
            }
            for _ in n..3 {
                millis *= 10;
            }
        }
        let offset_min: i64 = match b.get(at) {
            Some(b'Z' | b'z') if at + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() => {
                let oh = digits(b, at + 1, 2)?;
                expect(b, at + 3, b':')?;
                let om = digits(b, at + 4, 2)?;
                if oh > 23 || om > 59 {
                    return Err(TsError::Syntax);
                }
                let v = i64::from(oh * 60 + om);
                if sign == b'-' { -v } else { v }
            }
            _ => return Err(TsError::Syntax),
        };
        instant(
            [year, month, day],
            [hour, minute, second, millis],
            offset_min,
        )
    }

    const T0: Millis = 1_551_682_805_250; // 2019-03-04T07:00:05.250Z

    #[test]
    fn agrees_with_the_reference_parser_on_random_edits() {
        const BASE: [&str; 4] = [
            "2019-06-21T16:31:46.711+02:00",
            "2100-12-31T23:59:59.999999Z",
            "1970-01-01 00:00:00-00:30",
            "2020-02-29t08:00:05z",
        ];
        const ALPHABET: &[u8] = b"0123456789-+:.TtZz 9/;a\x7f";
        let mut rng = Rng::new(0x853c_49e6_748f_ea9b);
        let (mut ok, mut tried) = (0, 0);
        for _ in 0..200_000 {
            let edits = rng.below(3);
            let base = *rng.pick(&BASE);
            let b = rng.edited(base.as_bytes(), edits, ALPHABET);
            let text = String::from_utf8(b).expect("ascii");
            let got = parse_rfc3339(&text);
            assert_eq!(got, reference_parse(&text), "{text}");
            tried += 1;
            ok += usize::from(got.is_ok());
        }
        assert!(ok > 10_000 && ok < tried - 10_000, "{ok} of {tried}");
    }

    #[test]
    fn accepts_every_rfc3339_form() {
        for t in [
            "2019-03-04T08:00:05.250+01:00",
            "2019-03-04t08:00:05.250+01:00",
            "2019-03-04 08:00:05.250+01:00",
            "2019-03-04T07:00:05.250Z",
            "2019-03-04T07:00:05.250z",
            "2019-03-04T07:00:05.25Z",
            "2019-03-04T07:00:05.2509999Z",
            "2019-03-04T02:00:05.250-05:00",
        ] {
            assert_eq!(parse_rfc3339(t), Ok(T0), "{t}");
        }
        assert_eq!(parse_rfc3339("2019-03-04T07:00:05Z"), Ok(T0 - 250));
        assert_eq!(
            parse_rfc3339("2019-03-04T07:00:05.9999Z"),
            Ok(T0 - 250 + 999)
        );
        assert_eq!(parse_rfc3339("2019-03-04T07:00:05.1Z"), Ok(T0 - 150));
    }

    #[test]
    fn rejects_other_forms() {
        for t in [
            "2019-03-04T08:00:05+0100",
            "2019-03-04T08:00:05,5+01:00",
            "2019-03-04T08:00:05",
            "2019-03-04T08:00+01:00",
            "2019-03-04T23:59:60Z",
            "2019-03-04T08:00:05.Z",
            "2019-03-04T08:00:05+24:00",
            "2019-02-29T08:00:05Z",
            "2019-13-01T08:00:05Z",
            "2019-00-01T08:00:05Z",
            "2019-03-04T24:00:00Z",
            "2019-03-04X08:00:05Z",
            "2019-03-04T08:00:05Z ",
            "2019-3-04T08:00:05Z",
            "",
            "2019-03-04T08:00:05+01:00x",
            "２019-03-04T08:00:05Z",
        ] {
            assert_eq!(parse_rfc3339(t), Err(TsError::Syntax), "{t}");
        }
        assert!(parse_rfc3339("2020-02-29T08:00:05Z").is_ok());
    }

    #[test]
    fn range_is_1970_to_2101_exclusive() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("1970-01-01T00:59:59.999+01:00"),
            Err(TsError::OutOfRange)
        );
        assert_eq!(parse_rfc3339("2100-12-31T23:59:59.999Z"), Ok(END_TS - 1));
        assert_eq!(
            parse_rfc3339("2101-01-01T00:00:00Z"),
            Err(TsError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339("2101-01-01T00:30:00+01:00"),
            Ok(END_TS - 30 * 60 * 1000)
        );
    }

    #[test]
    fn rome_follows_daylight_saving() {
        // 2019-03-31: clocks jump 02:00 CET -> 03:00 CEST at 01:00Z.
        let before = parse_rfc3339("2019-03-31T00:59:59.999Z").unwrap_or_default();
        assert_eq!(rome_local(before).hour(), 1);
        assert_eq!(rome_local(before + 1).hour(), 3);
        // 2019-10-27: 03:00 CEST -> 02:00 CET at 01:00Z.
        let t = parse_rfc3339("2019-10-27T07:00:00Z").unwrap_or_default();
        assert_eq!(rome_local(t).hour(), 8);
        let t = parse_rfc3339("2019-07-01T06:00:00Z").unwrap_or_default();
        assert_eq!(rome_local(t).hour(), 8);
        assert_eq!(ms_of_day(rome_local(T0)), 8 * HOUR + 5_250);
    }

    #[test]
    fn cached_clock_agrees_with_the_tz_rules() {
        let mut clock = RomeClock::default();
        // Every 7 minutes for two years across four DST switches, then back in time.
        let start = parse_rfc3339("2019-01-01T00:00:00Z").unwrap_or_default();
        let mut t = start;
        while t < start + 730 * DAY {
            let (day, time) = clock.local_day(t);
            assert_eq!(local_date(day), rome_local(t).date(), "{t}");
            assert_eq!(time, ms_of_day(rome_local(t)), "{t}");
            t += 7 * 60 * SECOND + 13;
        }
        for t in [start + 100 * DAY, start, start + 300 * DAY + 1] {
            let (day, time) = clock.local_day(t);
            let want = rome_local(t);
            assert_eq!((local_date(day), time), (want.date(), ms_of_day(want)));
        }
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("2019-12-31"), Date::new(2019, 12, 31).ok());
        assert_eq!(parse_date("2019-02-29"), None);
        assert_eq!(parse_date("2019-1-01"), None);
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn range_constants_are_the_spec_dates() {
        assert_eq!(END_TS, days_from_civil(2101, 1, 1) * DAY);
        // The tables agree with the formula on every date they cover, and past them.
        for year in FIRST_TABLE_YEAR - 2..FIRST_TABLE_YEAR + TABLE_YEARS as u32 + 2 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        civil_days(year, month, day),
                        days_from_civil(i64::from(year), month, day),
                        "{year}-{month}-{day}"
                    );
                }
            }
        }
        assert_eq!(MIN_TS, days_from_civil(1970, 1, 1) * DAY);
    }
}
