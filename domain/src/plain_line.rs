//! The fast path of line validation, for the plain shape almost every producer writes: a
//! flat object whose values are strings without escapes (1..=128 bytes) or integers,
//! with at most a few unknown keys of that kind, on one line of at most 512 bytes. Such a
//! line goes to an [`Event`] in one pass, without the general parser's intermediate form:
//! its quotes are located first ([`QuoteMask`], usually while the input is split into
//! lines), then the walk jumps between them.
//!
//! Anything else — an escape, a nested value, `null`, a long string, and every invalid
//! line — returns `None`, and the general path ([`super::json_line`] then
//! [`super::validate`]) decides and gives the reason. So this path may only accept what
//! the general one accepts, with the same result; a differential test holds it to that.

use super::event::{BookingKind, Event, EventType};
use super::limits::field_slot;
use super::line_scan::QuoteMask;
use super::privacy::Pseudonymizer;
use super::time::{in_range, parse_rfc3339};
use super::validate::check_required;
use std::borrow::Cow;

/// Longest string value taken here: at most 128 bytes is at most 128 code points.
const MAX_PLAIN_STR: usize = 128;
/// Unknown keys checked for duplicates here; a line with more takes the general path.
const MAX_UNKNOWN: usize = 4;

#[derive(Clone, Copy)]
enum Plain<'a> {
    Str(&'a str),
    Int(i64),
}

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    quotes: QuoteMask,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string, the opening quote already consumed (the line has no escapes).
    fn plain_str(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = self.quotes.next(start)?;
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// `-?(0|[1-9][0-9]*)` not followed by a fraction or exponent, fitting in i64.
    fn int(&mut self) -> Option<i64> {
        let neg = self.b[self.i] == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(if neg { -v } else { v })
    }

    fn value(&mut self) -> Option<Plain<'a>> {
        self.ws();
        match self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                self.plain_str().map(Plain::Str)
            }
            b'-' | b'0'..=b'9' => self.int().map(Plain::Int),
            _ => None,
        }
    }
}

/// A text field of the plain shape: a string of 1..=128 bytes.
fn text(v: Option<Plain<'_>>) -> Option<Option<Cow<'_, str>>> {
    match v {
        None => Some(None),
        Some(Plain::Str(s)) if !s.is_empty() && s.len() <= MAX_PLAIN_STR => {
            Some(Some(Cow::Borrowed(s)))
        }
        Some(_) => None,
    }
}

/// The event of a plain, valid line whose quotes are located (see
/// [`super::line_scan`]); `None` sends the line to the general path.
pub fn validate_plain_with<'a>(
    line: &'a str,
    quotes: QuoteMask,
    pseudo: &Pseudonymizer,
) -> Option<Event<'a>> {
    let mut c = Cursor {
        s: line,
        b: line.as_bytes(),
        i: 0,
        quotes,
    };
    c.eat(b'{')?;
    // Slots in the general parser's order (`limits::field_slot`).
    let mut known: [Option<Plain<'a>>; 9] = [None; 9];
    let mut unknown: [&str; MAX_UNKNOWN] = [""; MAX_UNKNOWN];
    let mut n_unknown = 0;
    loop {
        c.eat(b'"')?;
        let key = c.plain_str()?;
        c.eat(b':')?;
        let value = c.value()?;
        match field_slot(key) {
            Some(k) if known[k].is_none() => known[k] = Some(value),
            Some(_) => return None, // a duplicate key
            None if n_unknown < MAX_UNKNOWN && !unknown[..n_unknown].contains(&key) => {
                unknown[n_unknown] = key;
                n_unknown += 1;
            }
            None => return None,
        }
        c.ws();
        match c.b.get(c.i)? {
            b',' => c.i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    c.i += 1;
    c.ws();
    if c.i != c.b.len() {
        return None;
    }
    let [
        call_id,
        kind,
        ts,
        event_id,
        line_name,
        agent,
        booking,
        reason,
        caller,
    ] = known;
    let kind = match kind? {
        Plain::Str(s) => EventType::parse(s)?,
        Plain::Int(_) => return None,
    };
    let ts = match ts? {
        Plain::Int(ms) if in_range(ms) => ms,
        Plain::Int(_) => return None,
        Plain::Str(s) => parse_rfc3339(s).ok()?,
    };
    let booking = match text(booking)? {
        None => None,
        Some(b) => Some(BookingKind::parse(&b)?),
    };
    let call_id = text(call_id)?;
    let agent = text(agent)?;
    check_required(kind, call_id.is_some(), agent.is_some(), booking.is_some()).ok()?;
    Some(Event {
        kind,
        ts,
        call_id,
        event_id: text(event_id)?,
        line: text(line_name)?,
        agent,
        booking,
        reason: text(reason)?,
        caller: text(caller)?.map(|c| pseudo.hash(&c)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_line::parse_line_str;
    use crate::random_edits::Rng;
    use crate::validate::validate;

    fn pseudo() -> Pseudonymizer {
        Pseudonymizer::new([3; 32])
    }

    /// The fast path's contract: whatever it accepts, the general path accepts the same.
    fn agrees(line: &str) -> bool {
        let p = pseudo();
        let fast = QuoteMask::of(line.as_bytes()).and_then(|q| validate_plain_with(line, q, &p));
        match fast {
            None => false,
            Some(fast) => {
                let general = parse_line_str(line).and_then(|raw| validate(raw, &p));
                assert_eq!(general.as_ref(), Ok(&fast), "{line}");
                true
            }
        }
    }

    const PLAIN: [&str; 8] = [
        r#"{"type":"offered","line":"cup","call_id":"c19-000000","event_id":"c19-000000-0","ts":1546412407055}"#,
        r#"{"type":"announcement_end","call_id":"c1","event_id":"e1","ts":"2019-01-02T08:00:47.055+01:00"}"#,
        r#"{"type":"answered","agent":"op1","call_id":"c1","ts":"2019-03-31 03:00:00.9999Z"}"#,
        r#"{"type":"booking","booking":"move","call_id":"c1","ts":0,"caller":"+390364111222"}"#,
        r#"{"type":"agent_login","agent":"op7","ts":4133980799999,"x":1,"y":"z"}"#,
        r#" { "type" : "overflow" , "reason" : "queue_full", "call_id" : "ü€" , "ts" : -0 } "#,
        r#"{"type":"ended","call_id":"c","ts":"2019-10-27T02:30:00-00:00","queue":"a","site":-5}"#,
        r#"{"ts":1,"type":"abandoned","call_id":"x","line":"prelievi","event_id":"k"}"#,
    ];

    #[test]
    fn takes_plain_lines_with_the_general_result() {
        for line in PLAIN {
            assert!(agrees(line), "not taken: {line}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_general_path() {
        let long = format!(
            r#"{{"type":"offered","call_id":"{}","ts":0}}"#,
            "a".repeat(129)
        );
        for line in [
            r#"{"type":"offered","call_id":"c\n","ts":0}"#,
            r#"{"type":"offered","call_id":"c","ts":0,"line":null}"#,
            r#"{"type":"offered","call_id":"c","ts":0,"x":[1]}"#,
            r#"{"type":"offered","call_id":"c","ts":1.5}"#,
            r#"{"type":"offered","call_id":"c","ts":01}"#,
            r#"{"type":"offered","call_id":"c","ts":0,"ts":1}"#,
            r#"{"type":"offered","call_id":"c","ts":0,"x":1,"x":2}"#,
            r#"{"type":"offered","call_id":"c","ts":0,"a":1,"b":1,"c":1,"d":1,"e":1}"#,
            r#"{"type":"offered","call_id":"","ts":0}"#,
            r#"{"type":"offered","call_id":"c","ts":-1}"#,
            r#"{"type":"offered","call_id":"c","ts":"2019-01-01T00:00:00+0100"}"#,
            r#"{"type":"offered","call_id":"c","ts":99999999999999999999}"#,
            r#"{"type":"answered","call_id":"c","ts":0}"#,
            r#"{"type":"booking","booking":"steal","call_id":"c","ts":0}"#,
            r#"{"type":"offered","call_id":"c","ts":0} x"#,
            r#"{"type":"offered","call_id":"c","ts":0,}"#,
            &long,
        ] {
            assert!(!agrees(line), "taken: {line}");
        }
    }

    /// Every line reachable by a few random edits of the plain lines, with the bytes that
    /// matter to JSON: the fast path never accepts what the general path would not.
    #[test]
    fn random_edits_never_make_the_paths_disagree() {
        const ALPHABET: &[u8] = b"{}[]\":,\\ \t\r0123456789-+.eEZTtnul_acsy\x01";
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let (mut taken, mut tried) = (0, 0);
        for _ in 0..60_000 {
            let edits = 1 + rng.below(3);
            let base = *rng.pick(&PLAIN);
            let b = rng.edited(base.as_bytes(), edits, ALPHABET);
            if let Ok(line) = std::str::from_utf8(&b) {
                tried += 1;
                taken += usize::from(agrees(line));
            }
        }
        // Both outcomes are exercised: the test would prove nothing otherwise.
        assert!(taken > 1_000 && taken < tried - 1_000, "{taken} of {tried}");
    }
}
