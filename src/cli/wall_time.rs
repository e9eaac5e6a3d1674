//! Wall-clock instants given and shown by the CLI (when a dead letter was received), in
//! Europe/Rome local time like every date of netwait.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use netwait_aggregator::domain::time::{parse_date, parse_rfc3339};

fn rome() -> TimeZone {
    // The tz database is bundled into the binary (jiff's `tzdb-bundle-always`).
    TimeZone::get("Europe/Rome").unwrap_or(TimeZone::UTC)
}

/// `--since T`: an RFC 3339 instant (as an event's `ts`: with an offset), or a date
/// `YYYY-MM-DD` meaning its local midnight in Europe/Rome; epoch ms.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ms) = parse_rfc3339(text) {
        return Ok(ms);
    }
    parse_date(text)
        .and_then(|d| d.to_zoned_datetime(rome()).ok())
        .map(|z| z.timestamp().as_millisecond())
        .ok_or_else(|| {
            "expected an RFC 3339 instant with an offset (2026-03-04T09:00:00+01:00) or a date YYYY-MM-DD (1970 to 2100)"
                .to_owned()
        })
}

/// An instant (epoch ms) as local RFC 3339 with its offset, to the second.
pub fn rome_text(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(
        |_| format!("{ms} ms"),
        |t| {
            t.to_zoned_datetime(rome())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_instant_or_a_local_date() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1_000));
        assert_eq!(
            parse_since("2026-03-04T09:00:00+01:00"),
            parse_since("2026-03-04T08:00:00Z")
        );
        // A date is its midnight in Rome: CET in winter, CEST in summer.
        assert_eq!(
            parse_since("2026-01-10"),
            parse_since("2026-01-09T23:00:00Z")
        );
        assert_eq!(
            parse_since("2026-07-10"),
            parse_since("2026-07-09T22:00:00Z")
        );
        for bad in ["2026-13-01", "2026-03-04T09:00:00", "yesterday", ""] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shown_in_rome_time() {
        assert_eq!(rome_text(0), "1970-01-01T01:00:00+01:00");
        assert_eq!(rome_text(1_783_000_000_000), "2026-07-02T15:46:40+02:00");
    }
}
