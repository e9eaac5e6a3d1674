//! The rules a query's arguments and the configuration's knobs follow (spec §1, §4–§6),
//! in one place: the CLI flags, the gRPC requests and the configuration file all call
//! these, and each edge only adds the name the user wrote (`--threshold`,
//! `threshold_s`, `sla.threshold_s`).

use super::reports::Half;
use super::time::{Millis, SECOND, parse_date};
use jiff::civil::Date;
use thiserror::Error;

/// The threshold T (spec §4): 1 s to 86,400 s, at most three decimals.
pub const THRESHOLD_MS: std::ops::RangeInclusive<Millis> = SECOND..=86_400 * SECOND;
/// Years a query may name: those of the spec's valid instants.
use super::limits::{MAX_TEXT_CHARS, YEARS};

/// Why an argument is refused. Messages quote at most a short prefix of what was given.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ArgumentError {
    #[error(
        "{0} is not a threshold: T is from 1 to 86400 seconds with at most three decimals (e.g. 139.5)"
    )]
    Threshold(Quoted),
    #[error("{0} is not a message length: 0 to 600 seconds with at most three decimals (e.g. 40)")]
    MessageLength(Quoted),
    #[error("year {0} is out of range: years run from 1970 to 2100")]
    Year(Quoted),
    #[error("{0} is not a date YYYY-MM-DD")]
    DateSyntax(Quoted),
    #[error("date {0} is out of range: dates run from 1970-01-01 to 2101-01-01 (exclusive end)")]
    DateRange(Quoted),
    #[error("{0} is not a half-year YYYY-H1 or YYYY-H2")]
    HalfSyntax(Quoted),
    #[error("{0} is not a share from 0 to 1")]
    Share(Quoted),
    #[error("{target} must be above the grave floor {floor} and at most 1")]
    TargetNotAboveFloor { target: f64, floor: f64 },
    #[error("a line name is 1 to 128 characters")]
    LineLength,
    #[error("unknown line {line} (names are case-sensitive); lines in the store: {known}")]
    UnknownLine { line: Quoted, known: String },
}

/// An argument as it is quoted back: at most 32 characters of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quoted(String);

impl Quoted {
    /// A number, as it prints.
    fn number(x: impl std::fmt::Display) -> Self {
        Self(x.to_string())
    }

    fn new(text: impl std::fmt::Display) -> Self {
        const MAX: usize = 32;
        let text = text.to_string();
        match text.char_indices().nth(MAX) {
            Some((cut, _)) => Self(format!("{:?}…", &text[..cut])),
            None => Self(format!("{text:?}")),
        }
    }
}

impl std::fmt::Display for Quoted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn threshold_in_range(ms: Millis, given: Quoted) -> Result<Millis, ArgumentError> {
    if THRESHOLD_MS.contains(&ms) {
        Ok(ms)
    } else {
        Err(ArgumentError::Threshold(given))
    }
}

/// T written in seconds (`140`, `139.5`, `0139.250`) as whole milliseconds, exactly: the
/// digits are read as a decimal, never through binary floating point.
pub fn threshold_ms_from_text(text: &str) -> Result<Millis, ArgumentError> {
    let refuse = || ArgumentError::Threshold(Quoted::new(text));
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 3
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(refuse());
    }
    // Leading zeros aside, more than 5 whole digits is out of range anyway.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 5 {
        return Err(refuse());
    }
    let secs: Millis = whole.parse().unwrap_or(0);
    let frac_ms = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |ms, c| ms * 10 + Millis::from(c - b'0'));
    threshold_in_range(secs * SECOND + frac_ms, Quoted::new(text))
}

/// T as a binary floating-point number of seconds (a gRPC `double`, a TOML float) as whole
/// milliseconds: it must be the double nearest to a value with at most three decimals
/// (`139.5`, `1.005`), so `140.0001` is refused rather than rounded.
pub fn threshold_ms_from_secs(secs: f64) -> Result<Millis, ArgumentError> {
    let ms = whole_ms(secs).ok_or_else(|| ArgumentError::Threshold(Quoted::number(secs)))?;
    threshold_in_range(ms, Quoted::number(secs))
}

/// Seconds with at most three decimals as whole milliseconds; `None` for any other value.
fn whole_ms(secs: f64) -> Option<Millis> {
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // Both operands are exact and IEEE division rounds correctly: this is the double
    // nearest to ms / 1000, which is `secs` exactly when `secs` has at most 3 decimals.
    (ms / 1000.0 == secs).then_some(ms as Millis)
}

/// The information message's length (configuration `sla.message_s`): 0 to 600 s.
pub fn message_ms_from_secs(secs: f64) -> Result<Millis, ArgumentError> {
    whole_ms(secs)
        .filter(|ms| *ms <= 600 * SECOND)
        .ok_or_else(|| ArgumentError::MessageLength(Quoted::number(secs)))
}

/// A year of a query (spec §1: instants from 1970 to 2100).
pub fn year(y: i64) -> Result<i16, ArgumentError> {
    i16::try_from(y)
        .ok()
        .filter(|y| YEARS.contains(y))
        .ok_or_else(|| ArgumentError::Year(Quoted::number(y)))
}

/// A local date bound of a period `YYYY-MM-DD`, from 1970-01-01 to 2101-01-01 (the
/// exclusive end of 2100).
pub fn date(text: &str) -> Result<Date, ArgumentError> {
    let d = parse_date(text).ok_or_else(|| ArgumentError::DateSyntax(Quoted::new(text)))?;
    let last = Date::new(*YEARS.end() + 1, 1, 1).unwrap_or(Date::MAX);
    if YEARS.contains(&d.year()) || d == last {
        Ok(d)
    } else {
        Err(ArgumentError::DateRange(Quoted::new(text)))
    }
}

/// `YYYY-H1` / `YYYY-H2` (also `h1`, `h2`); a well-formed half of a year out of range
/// says so.
pub fn half(text: &str) -> Result<Half, ArgumentError> {
    let syntax = || ArgumentError::HalfSyntax(Quoted::new(text));
    let (y, h) = text.split_once('-').ok_or_else(syntax)?;
    let second = match h {
        "H1" | "h1" => false,
        "H2" | "h2" => true,
        _ => return Err(syntax()),
    };
    if y.len() != 4 || !y.bytes().all(|c| c.is_ascii_digit()) {
        return Err(syntax());
    }
    let year = year(y.parse().map_err(|_| syntax())?)?;
    Ok(Half { year, second })
}

/// A share (target, grave floor) lies in [0, 1].
pub fn share(x: f64) -> Result<f64, ArgumentError> {
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(ArgumentError::Share(Quoted::number(x)))
    }
}

/// The SLA target must be above the grave floor (else no month could be `below_target`)
/// and at most 1.
pub fn target(target: f64, floor: f64) -> Result<f64, ArgumentError> {
    if target > floor && target <= 1.0 {
        Ok(target)
    } else {
        Err(ArgumentError::TargetNotAboveFloor { target, floor })
    }
}

/// A line a query filters on must be one the store has seen (names are exact: `PRELIEVI`
/// is not `prelievi`), so a typo is an error instead of a table of zeros.
pub fn line<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Result<(), ArgumentError> {
    /// Names listed in the message at most.
    const LISTED: usize = 20;
    if name.is_empty() || name.chars().count() > MAX_TEXT_CHARS {
        return Err(ArgumentError::LineLength);
    }
    let mut known: Vec<&str> = known.into_iter().collect();
    if known.contains(&name) {
        return Ok(());
    }
    known.sort_unstable();
    known.dedup();
    let mut list = known
        .iter()
        .take(LISTED)
        .map(|l| Quoted::new(l).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > LISTED {
        list.push_str(&format!(" and {} more", known.len() - LISTED));
    }
    Err(ArgumentError::UnknownLine {
        line: Quoted::new(name),
        known: list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lengths() {
        assert_eq!(message_ms_from_secs(40.0), Ok(40 * SECOND));
        assert_eq!(message_ms_from_secs(0.0), Ok(0));
        assert_eq!(message_ms_from_secs(42.5), Ok(42_500));
        for bad in [-1.0, 600.001, 40.0001, f64::NAN] {
            assert!(message_ms_from_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn threshold_text_is_exact_whole_milliseconds() {
        for (text, ms) in [
            ("140", 140_000),
            ("139.5", 139_500),
            ("139.999", 139_999),
            ("1.005", 1_005),
            ("1", 1_000),
            ("86400", 86_400_000),
            ("86400.000", 86_400_000),
            ("000140.250", 140_250),
        ] {
            assert_eq!(threshold_ms_from_text(text), Ok(ms), "{text}");
        }
        for bad in [
            "0.5",
            "0.999",
            "0",
            "140.0001",
            "86400.001",
            "-1",
            "+140",
            "1e3",
            "",
            ".5",
            "140.",
            "1 40",
            "NaN",
            "inf",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(
                    threshold_ms_from_text(bad),
                    Err(ArgumentError::Threshold(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn threshold_secs_refuses_more_than_three_decimals() {
        for (secs, ms) in [
            (140.0, 140_000),
            (139.5, 139_500),
            (1.005, 1_005),
            (1.0, 1_000),
        ] {
            assert_eq!(threshold_ms_from_secs(secs), Ok(ms), "{secs}");
        }
        for bad in [
            0.5,
            0.0,
            -1.0,
            140.0001,
            139.9994,
            86_400.001,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(threshold_ms_from_secs(bad).is_err(), "{bad} accepted");
        }
        // Every value with three decimals in the range goes through a double exactly.
        for ms in (1_000..=86_400_000).step_by(997) {
            let text = format!("{}.{:03}", ms / 1000, ms % 1000);
            let secs: f64 = text.parse().expect("decimal");
            assert_eq!(threshold_ms_from_secs(secs), Ok(ms), "{text}");
            assert_eq!(threshold_ms_from_text(&text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn years_dates_and_halves_share_one_range() {
        assert_eq!(year(1970), Ok(1970));
        assert_eq!(year(2100), Ok(2100));
        assert!(matches!(year(1800), Err(ArgumentError::Year(_))));
        assert!(matches!(year(2101), Err(ArgumentError::Year(_))));
        assert!(matches!(year(1 << 40), Err(ArgumentError::Year(_))));
        assert_eq!(date("1970-01-01").map(|d| d.year()), Ok(1970));
        assert_eq!(date("2101-01-01").map(|d| d.year()), Ok(2101));
        assert!(matches!(
            date("2101-01-02"),
            Err(ArgumentError::DateRange(_))
        ));
        assert!(matches!(
            date("1800-01-01"),
            Err(ArgumentError::DateRange(_))
        ));
        assert!(matches!(
            date("2019-02-29"),
            Err(ArgumentError::DateSyntax(_))
        ));
        assert_eq!(
            half("2019-H2"),
            Ok(Half {
                year: 2019,
                second: true
            })
        );
        assert!(matches!(half("1800-H1"), Err(ArgumentError::Year(_))));
        for bad in ["2019-H3", "2019", "19-H1", "+2019-H1", "2019-H1x"] {
            assert!(
                matches!(half(bad), Err(ArgumentError::HalfSyntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn target_above_floor_and_quoting_bounded() {
        assert_eq!(target(0.6, 0.4), Ok(0.6));
        assert_eq!(target(1.0, 0.4), Ok(1.0));
        assert!(target(0.4, 0.4).is_err());
        assert!(target(0.3, 0.4).is_err());
        assert!(target(1.5, 0.4).is_err());
        assert!(share(-0.1).is_err() && share(0.0).is_ok());
        let long = "9".repeat(10_000);
        let msg = threshold_ms_from_text(&long)
            .expect_err("refused")
            .to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn unknown_lines_list_the_known_ones() {
        let known = ["prelievi", "cup"];
        assert_eq!(line("cup", known), Ok(()));
        let msg = line("PRELIEVI", known)
            .expect_err("case matters")
            .to_string();
        assert!(
            msg.contains(r#""PRELIEVI""#) && msg.contains(r#""cup", "prelievi""#),
            "{msg}"
        );
        assert_eq!(line("", known), Err(ArgumentError::LineLength));
        let many: Vec<String> = (0..30).map(|i| format!("l{i:02}")).collect();
        let msg = line("x", many.iter().map(String::as_str))
            .expect_err("unknown")
            .to_string();
        assert!(msg.ends_with("and 10 more"), "{msg}");
    }
}
