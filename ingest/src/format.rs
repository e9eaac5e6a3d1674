//! Input formats: how the bytes of an input become raw events. NDJSON (canonical events)
//! keeps its parallel fast path ([`crate::pipeline`]); the PBX formats (Asterisk
//! `queue_log`, call detail records) are small and decode sequentially
//! ([`crate::decoded`]), through the same validation and the same staging.

use crate::bom::UTF8_BOM;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Canonical events, one JSON object a line (spec §1).
    Ndjson,
    /// Asterisk `queue_log` file layout: `epoch|callid|queue|agent|EVENT|data1|...`.
    QueueLog,
    /// The realtime (database) `queue_log` table exported as CSV with a header row.
    QueueLogCsv,
    /// Call detail records, one per call: NDJSON objects or CSV with a header row.
    Cdr,
}

impl Format {
    pub const ALL: [Format; 4] = [Self::Ndjson, Self::QueueLog, Self::QueueLogCsv, Self::Cdr];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::QueueLog => "queue_log",
            Self::QueueLogCsv => "queue_log_csv",
            Self::Cdr => "cdr",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The format of an input, guessed from its first bytes (its first row): a
    /// `digits|` row is a queue_log; a CSV header naming `callid` and `event` the
    /// queue_log export, one naming `call_id` and `*_at` columns call records; a JSON
    /// object with `*_at` members and no `type` a call record; anything else NDJSON
    /// (whose validation then says what is wrong with it).
    pub fn detect(head: &[u8]) -> Self {
        let head = head.strip_prefix(UTF8_BOM).unwrap_or(head);
        // A crash may leave NUL bytes, and a log may start with blank lines.
        let start = head
            .iter()
            .position(|b| !matches!(b, 0 | b'\n' | b'\r' | b' ' | b'\t'))
            .unwrap_or(head.len());
        let rest = &head[start..];
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        let text = String::from_utf8_lossy(line);
        if text.starts_with('{') {
            let cdr = !text.contains("\"type\"")
                && (text.contains("_at\"") || text.contains("\"bookings\""));
            return if cdr { Self::Cdr } else { Self::Ndjson };
        }
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && text[digits..].starts_with(['|', '.']) && text.contains('|') {
            return Self::QueueLog;
        }
        let header: Vec<String> = text
            .split(',')
            .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let has = |name: &str| header.iter().any(|h| h == name);
        if has("callid") && has("event") {
            Self::QueueLogCsv
        } else if has("call_id") && header.iter().any(|h| h.ends_with("_at")) {
            Self::Cdr
        } else {
            Self::Ndjson
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("csv"), None);
    }

    #[test]
    fn detects_each_format_by_its_first_row() {
        let cases: [(&[u8], Format); 9] = [
            (
                b"{\"call_id\":\"a\",\"type\":\"offered\",\"ts\":0}\n",
                Format::Ndjson,
            ),
            (b"\xEF\xBB\xBF{\"type\":\"offered\"}", Format::Ndjson),
            (b"{\"call_id\":\"a\",\"offered_at\":0}\n", Format::Cdr),
            (b"1655366541|NONE|NONE|NONE|QUEUESTART|\n", Format::QueueLog),
            (
                b"\0\0\0\n1655366541|NONE|NONE|NONE|QUEUESTART|\n",
                Format::QueueLog,
            ),
            (
                b"uid,date_time,callid,queue_name,type,event,param1\n",
                Format::QueueLogCsv,
            ),
            (b"call_id,line,offered_at,answered_at\n", Format::Cdr),
            (b"not json\n", Format::Ndjson),
            (b"", Format::Ndjson),
        ];
        for (head, want) in cases {
            assert_eq!(
                Format::detect(head),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
