//! Reading queue_log rows, in both layouts, past whatever damage the file holds: each
//! damaged part (NUL runs, a cut last row, bytes that are not UTF-8, too few fields, a
//! time that does not read) becomes a refused [`Unit`] with its line and byte offset,
//! and reading goes on with the next row.

use super::verb::Verb;
use crate::bom::UTF8_BOM;
use crate::decoded::Unit;
use jiff::tz::TimeZone;
use netwait_aggregator::domain::limits::MAX_LINE_BYTES;
use netwait_aggregator::domain::reject::Reject;
use netwait_aggregator::domain::time::{Millis, SECOND};
use std::borrow::Cow;
use std::ops::Range;

/// One readable row.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub line: u64,
    pub span: Range<usize>,
    /// The row as read: its event ids derive from it.
    pub text: Cow<'a, str>,
    pub ms: Millis,
    pub callid: Cow<'a, str>,
    pub queue: Cow<'a, str>,
    pub agent: Cow<'a, str>,
    pub verb: Cow<'a, str>,
    /// The first data field (a DID row's number).
    pub data1: Cow<'a, str>,
    /// An ENTERQUEUE's calling number, where its layout puts it.
    pub caller: Option<Cow<'a, str>>,
}

/// A row, or what could not be read of the input.
#[derive(Debug)]
pub enum Item<'a> {
    Row(Row<'a>),
    Damaged(Unit<'a>),
}

fn damaged<'a>(line: u64, span: Range<usize>, reject: Reject) -> Item<'a> {
    Item::Damaged(Unit {
        line,
        span,
        decoded: Err(reject),
    })
}

/// Epoch seconds (a fraction, when a PBX writes one, kept to the millisecond).
fn epoch_ms(text: &str) -> Option<Millis> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || secs.len() > 12 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    Some(secs.parse::<i64>().ok()? * SECOND + ms)
}

/// The file layout: `epoch|callid|queue|agent|EVENT|data1|...`, one row a line.
pub fn read_file_layout(bytes: &[u8]) -> Vec<Item<'_>> {
    let mut items = Vec::new();
    let mut at = if bytes.starts_with(UTF8_BOM) { 3 } else { 0 };
    let mut line = 0u64;
    while at < bytes.len() {
        line += 1;
        let (end, next, terminated) = match memchr::memchr(b'\n', &bytes[at..]) {
            Some(p) => (at + p, at + p + 1, true),
            None => (bytes.len(), bytes.len(), false),
        };
        let end = if end > at && bytes[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        read_line(bytes, at..end, line, terminated, &mut items);
        at = next;
    }
    items
}

/// One line: NUL runs are refused one by one; the text after the last one is the row
/// (a crash leaves NULs where a write was lost, and the next write follows them); text
/// before a NUL run is a row cut short.
fn read_line<'a>(
    bytes: &'a [u8],
    span: Range<usize>,
    line: u64,
    terminated: bool,
    items: &mut Vec<Item<'a>>,
) {
    let mut at = span.start;
    while let Some(p) = memchr::memchr(0, &bytes[at..span.end]) {
        let nul = at + p;
        if nul > at && !bytes[at..nul].iter().all(u8::is_ascii_whitespace) {
            items.push(damaged(line, at..nul, Reject::Truncated));
        }
        let run = bytes[nul..span.end].iter().take_while(|&&b| b == 0).count();
        items.push(damaged(line, nul..nul + run, Reject::NulRun(run)));
        at = nul + run;
    }
    let rest = at..span.end;
    if bytes[rest.clone()].iter().all(u8::is_ascii_whitespace) {
        return; // a blank line (or nothing after the NULs) is no row
    }
    items.push(match read_row(bytes, rest.clone(), line) {
        Ok(row) if terminated || Verb::of(&row.verb) != Verb::Unknown => Item::Row(row),
        // A last row without its line end, that does not read whole: the writer was cut.
        _ if !terminated => damaged(line, rest, Reject::Truncated),
        Ok(row) => Item::Row(row),
        Err(reject) => damaged(line, rest, reject),
    });
}

fn read_row(bytes: &[u8], span: Range<usize>, line: u64) -> Result<Row<'_>, Reject> {
    let raw = &bytes[span.clone()];
    if raw.len() > MAX_LINE_BYTES {
        return Err(Reject::TooLong);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Reject::NotUtf8)?;
    let fields: Vec<&str> = text.split('|').collect();
    if fields.len() < 5 {
        return Err(Reject::FieldCount {
            got: fields.len(),
            want: "at least 5 (epoch|callid|queue|agent|EVENT)",
        });
    }
    let ms = epoch_ms(fields[0]).ok_or(Reject::BadRowTime)?;
    let data = |i: usize| Cow::Borrowed(fields.get(5 + i).copied().unwrap_or(""));
    Ok(Row {
        line,
        span,
        text: Cow::Borrowed(text),
        ms,
        callid: Cow::Borrowed(fields[1]),
        queue: Cow::Borrowed(fields[2]),
        agent: Cow::Borrowed(fields[3]),
        verb: Cow::Borrowed(fields[4]),
        data1: data(0),
        // url|callerid|position
        caller: (fields[4] == "ENTERQUEUE").then(|| data(1)),
    })
}

/// Columns of the realtime table export, found by header name.
struct Columns {
    /// Time columns in order of preference (`date_time`, then `time`).
    time: Vec<usize>,
    callid: usize,
    queue: usize,
    agent: usize,
    event: usize,
    data: Vec<usize>,
}

impl Columns {
    fn find(header: &csv::ByteRecord) -> Option<Self> {
        let names: Vec<String> = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
            .collect();
        let col = |options: &[&str]| {
            options
                .iter()
                .find_map(|o| names.iter().position(|n| n == o))
        };
        let data = (1..=5)
            .filter_map(|i| col(&[&format!("data{i}"), &format!("param{i}")]))
            .collect();
        Some(Self {
            time: ["date_time", "time"]
                .iter()
                .filter_map(|c| col(&[c]))
                .collect(),
            callid: col(&["callid"])?,
            queue: col(&["queue_name", "queuename", "queue"])?,
            // PBXware names the agent column `type`.
            agent: col(&["agent", "type"])?,
            event: col(&["event"])?,
            data,
        })
    }
}

/// A time cell: epoch seconds, or a local date-time (`2018-11-30 13:31:17`, as the
/// realtime driver writes it) read in `tz`.
fn cell_ms(text: &str, tz: &TimeZone) -> Option<Millis> {
    let text = text.trim();
    if let Some(ms) = epoch_ms(text) {
        return Some(ms);
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    // A time the clocks skipped or went through twice reads as before the change.
    let ts = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
    Some(ts.as_millisecond())
}

/// The realtime table exported as CSV (header row; time as epoch seconds or local time).
pub fn read_csv_layout<'a>(bytes: &'a [u8], tz: &TimeZone) -> Vec<Item<'a>> {
    let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let base = bytes.len() - body.len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(body);
    let mut items = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut columns: Option<Columns> = None;
    let mut width = 0;
    loop {
        let start = base + reader.position().byte() as usize;
        let line = reader.position().line();
        let read = reader.read_byte_record(&mut record);
        let end = base + reader.position().byte() as usize;
        let span = start..trim_line_end(bytes, start, end);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(_) => {
                items.push(damaged(line, span, Reject::NotUtf8));
                continue;
            }
        }
        let Some(cols) = &columns else {
            width = record.len();
            columns = Columns::find(&record);
            if columns.is_none() {
                items.push(damaged(
                    line,
                    span,
                    Reject::FieldCount {
                        got: record.len(),
                        want: "a header naming callid, queue_name, agent (or type), event and time",
                    },
                ));
                return items;
            }
            continue;
        };
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        items.push(
            match csv_row(&record, cols, width, tz, line, span.clone(), bytes) {
                Ok(row) => Item::Row(row),
                Err(reject) => damaged(line, span, reject),
            },
        );
    }
    items
}

fn trim_line_end(bytes: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    end
}

fn csv_row<'a>(
    record: &csv::ByteRecord,
    cols: &Columns,
    width: usize,
    tz: &TimeZone,
    line: u64,
    span: Range<usize>,
    bytes: &'a [u8],
) -> Result<Row<'a>, Reject> {
    let raw = &bytes[span.clone()];
    if let Some(p) = memchr::memchr(0, raw) {
        let run = raw[p..].iter().take_while(|&&b| b == 0).count();
        return Err(Reject::NulRun(run));
    }
    if record.len() != width {
        return Err(Reject::FieldCount {
            got: record.len(),
            want: "as many as the header",
        });
    }
    let text = std::str::from_utf8(raw).map_err(|_| Reject::NotUtf8)?;
    let cell = |i: usize| -> Result<Cow<'a, str>, Reject> {
        let b = record.get(i).unwrap_or_default();
        Ok(Cow::Owned(
            std::str::from_utf8(b)
                .map_err(|_| Reject::NotUtf8)?
                .to_owned(),
        ))
    };
    let mut ms = None;
    for &c in &cols.time {
        ms = cell_ms(&cell(c)?, tz);
        if ms.is_some() {
            break;
        }
    }
    let verb = cell(cols.event)?;
    let data = |i: usize| match cols.data.get(i) {
        Some(&c) => cell(c),
        None => Ok(Cow::Borrowed("")),
    };
    // Asterisk's realtime rows hold url|callerid|position; PBXware's the caller first.
    let caller = if verb == "ENTERQUEUE" {
        let second = data(1)?;
        Some(if second.is_empty() { data(0)? } else { second })
    } else {
        None
    };
    Ok(Row {
        line,
        span,
        text: Cow::Borrowed(text),
        ms: ms.ok_or(Reject::BadRowTime)?,
        callid: cell(cols.callid)?,
        queue: cell(cols.queue)?,
        agent: cell(cols.agent)?,
        data1: data(0)?,
        verb,
        caller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(items: &[Item<'_>]) -> Vec<(u64, usize, &'static str)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Damaged(u) => Some((u.line, u.span.start, u.decoded.as_ref().err()?.code())),
                Item::Row(_) => None,
            })
            .collect()
    }

    fn rows<'a>(items: &'a [Item<'a>]) -> Vec<&'a Row<'a>> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Row(r) => Some(r),
                Item::Damaged(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_nul_run_is_refused_and_the_row_after_it_read() {
        let text = b"1|c|q|NONE|QUEUESTART|\n\0\0\0\x002|c|q|NONE|ENTERQUEUE||333|1\n12|c|\0\0\n";
        let items = read_file_layout(text);
        assert_eq!(
            rejects(&items),
            vec![
                (2, 23, "nul_bytes"),
                (3, 56, "truncated"),
                (3, 61, "nul_bytes")
            ]
        );
        let r = rows(&items);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[1].line, r[1].ms, r[1].verb.as_ref()),
            (2, 2_000, "ENTERQUEUE")
        );
        assert_eq!(r[1].caller.as_deref(), Some("333"));
        assert_eq!(r[1].span, 27..55);
    }

    #[test]
    fn damage_is_refused_and_reading_goes_on() {
        let text = b"x|c|q|a|CONNECT|1|2|3\n5|c|q\n6|c|q|\xff|CONNECT|1\n\r\n7|c|q|a|ABANDON|1|1|1\r\n8|c|q|a|ABAN";
        let items = read_file_layout(text);
        assert_eq!(
            rejects(&items),
            vec![
                (1, 0, "bad_time"),
                (2, 22, "field_count"),
                (3, 28, "not_utf8"),
                (6, 71, "truncated")
            ]
        );
        assert_eq!(rows(&items).len(), 1);
        // A last row without its line end that reads whole is kept.
        let items = read_file_layout(b"8|c|q|a|ABANDON|1|1");
        assert_eq!(rows(&items).len(), 1);
        assert_eq!(epoch_ms("1543602677.25"), Some(1_543_602_677_250));
        assert_eq!(epoch_ms("-5"), None);
    }

    #[test]
    fn csv_export_by_header_names_epoch_or_local_time() {
        let tz = TimeZone::get("Europe/Rome").expect("tz");
        let text = "uid,date_time,callid,queue_name,type,event,param1,param2\n\
            1,1543602677,17.1,IT,NONE,ENTERQUEUE,5557,,\n\
            2,2018-11-30 13:31:17,17.1,IT,Agent/1,CONNECT,,17.2\n\
            3,1543602677,17.1,IT\n\
            4,yesterday,17.1,IT,NONE,ABANDON,1,\n";
        // Row 1 has one field too many: the header says 8.
        let items = read_csv_layout(text.as_bytes(), &tz);
        assert_eq!(
            rejects(&items),
            vec![
                (2, 57, "field_count"),
                (4, 153, "field_count"),
                (5, 174, "bad_time")
            ]
        );
        let r = rows(&items);
        assert_eq!(r.len(), 1);
        // 13:31:17 in Rome (CET, +01:00) is 12:31:17Z.
        assert_eq!(r[0].ms, 1_543_581_077_000);
        assert_eq!(
            (r[0].agent.as_ref(), r[0].verb.as_ref()),
            ("Agent/1", "CONNECT")
        );
        assert_eq!(
            &text[r[0].span.clone()],
            "2,2018-11-30 13:31:17,17.1,IT,Agent/1,CONNECT,,17.2"
        );
    }
}
