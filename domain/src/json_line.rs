//! A strict parser for one NDJSON line holding one flat event object (spec §1).
//!
//! Hand-written rather than serde because the spec asks for checks serde does not make on
//! its own: duplicate keys (anywhere), lone surrogate escapes (anywhere, ignored fields
//! included), and the JSON type of each field kept apart from its value. It also borrows
//! strings from the line when they hold no escape, which keeps the import path fast.

use super::limits::{FIELDS, MAX_LINE_BYTES, field_slot};
use super::raw_event::{RawEvent, RawValue};
use super::reject::Reject;
use std::borrow::Cow;

/// Parses one line (without its `\n` / `\r\n` terminator).
pub fn parse_line(line: &[u8]) -> Result<RawEvent<'_>, Reject> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Reject::TooLong);
    }
    parse_line_str(std::str::from_utf8(line).map_err(|_| Reject::NotUtf8)?)
}

/// [`parse_line`] for a line already known to be UTF-8 (e.g. a whole chunk was checked).
pub fn parse_line_str(text: &str) -> Result<RawEvent<'_>, Reject> {
    if text.len() > MAX_LINE_BYTES {
        return Err(Reject::TooLong);
    }
    let line = text.as_bytes();
    let mut p = Parser {
        s: text,
        b: line,
        i: 0,
    };
    p.ws();
    match p.peek() {
        None => return Err(Reject::Empty),
        Some(b'{') => {}
        Some(_) => {
            // Valid JSON that is not an object, or not JSON at all.
            p.skip_value()?;
            p.ws();
            return Err(if p.i == p.b.len() {
                Reject::NotObject
            } else {
                p.err("trailing characters")
            });
        }
    }
    let mut ev = RawEvent::default();
    let mut seen = 0u16;
    let mut unknown = KeySeen::default();
    if !p.open_object() {
        loop {
            let key = p.member_head()?;
            match field_slot(&key) {
                Some(idx) => {
                    if seen & (1 << idx) != 0 {
                        return Err(Reject::DuplicateKey(FIELDS[idx].to_owned()));
                    }
                    seen |= 1 << idx;
                    *ev.slot(idx) = p.scalar()?;
                }
                None => {
                    unknown.insert(key)?;
                    p.skip_value()?;
                }
            }
            p.ws();
            match p.next() {
                Some(b',') => {}
                Some(b'}') => break,
                _ => return Err(p.err("expected `,` or `}`")),
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(ev)
}

/// What the line reader can tell of a line's top-level members, for the one place that
/// decides what of a rejected line may be kept ([`super::privacy::redact_rejected`]).
/// Members are read by the same tokenizer as [`parse_line`], but no field rule applies:
/// duplicate or ill-typed fields are still outlined.
#[derive(Debug)]
pub struct Outline<'a> {
    /// Members read whole, in line order.
    pub members: Vec<OutlinedMember<'a>>,
    /// Byte offset from which the line could not be read as members of one JSON object;
    /// `None` when the whole line is one well-formed object.
    pub unread_from: Option<usize>,
}

#[derive(Debug)]
pub struct OutlinedMember<'a> {
    /// The key, escapes decoded.
    pub key: Cow<'a, str>,
    /// Bytes of the whole member, key to end of value.
    pub span: std::ops::Range<usize>,
    /// Bytes of the value alone.
    pub value_span: std::ops::Range<usize>,
    /// The value when it is a scalar (`Some(None)` for `null`); `None` for an object or
    /// an array.
    pub scalar: Option<Option<RawValue<'a>>>,
}

/// Outlines `text` (see [`Outline`]); never fails.
pub fn outline(text: &str) -> Outline<'_> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut members = Vec::new();
    p.ws();
    if p.peek() != Some(b'{') {
        return Outline {
            members,
            unread_from: Some(0),
        };
    }
    if !p.open_object() {
        loop {
            p.ws();
            let start = p.i;
            match p.outline_member() {
                Ok(m) => members.push(m),
                Err(_) => {
                    return Outline {
                        members,
                        unread_from: Some(start),
                    };
                }
            }
            p.ws();
            let at = p.i;
            match p.next() {
                Some(b',') => {}
                Some(b'}') => break,
                _ => {
                    return Outline {
                        members,
                        unread_from: (at < p.b.len()).then_some(at),
                    };
                }
            }
        }
    }
    p.ws();
    Outline {
        members,
        unread_from: (p.i < p.b.len()).then_some(p.i),
    }
}

/// Index of the first `"`, `\\` or control character (< 0x20) in `b`.
///
/// Word at a time (SWAR): for each 8-byte word, set the high bit of every byte that is
/// one of those; the lowest flagged byte is the first match (borrows in the subtractions
/// can only flag bytes above a real match).
pub(crate) fn first_special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let hits = |x: u64| {
        zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS)
    };
    let mut at = 0;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let h = hits(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]));
        if h != 0 {
            return Some(at + (h.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // The last few bytes as one more word, padded with a byte that is never special.
    let rest = words.remainder();
    let mut w = [b'a'; 8];
    w[..rest.len()].copy_from_slice(rest);
    let h = hits(u64::from_le_bytes(w));
    (h != 0).then(|| at + (h.trailing_zeros() / 8) as usize)
}

/// The keys of one object so far: a short list, a hash set once there are many (a line
/// of thousands of distinct keys must not cost a quadratic number of comparisons).
#[derive(Default)]
struct KeySeen<'a> {
    few: Vec<Cow<'a, str>>,
    many: std::collections::HashSet<Cow<'a, str>>,
}

impl<'a> KeySeen<'a> {
    const FEW: usize = 16;

    fn insert(&mut self, key: Cow<'a, str>) -> Result<(), Reject> {
        let dup = if self.many.is_empty() {
            self.few.contains(&key)
        } else {
            self.many.contains(&key)
        };
        if dup {
            return Err(duplicate(&key));
        }
        if self.many.is_empty() && self.few.len() < Self::FEW {
            self.few.push(key);
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(key);
        }
        Ok(())
    }
}

fn duplicate(key: &str) -> Reject {
    Reject::DuplicateKey(key.chars().take(64).collect())
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn err(&self, what: &'static str) -> Reject {
        Reject::Json { at: self.i, what }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), Reject> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), Reject> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// The value of a known field: `null` becomes `None`.
    fn scalar(&mut self) -> Result<Option<RawValue<'a>>, Reject> {
        Ok(Some(match self.peek() {
            Some(b'"') => RawValue::Str(self.string()?),
            Some(b'n') => {
                self.literal("null")?;
                return Ok(None);
            }
            Some(b't') => {
                self.literal("true")?;
                RawValue::Other("a boolean")
            }
            Some(b'f') => {
                self.literal("false")?;
                RawValue::Other("a boolean")
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b'[') => {
                self.skip_value()?;
                RawValue::Other("an array")
            }
            Some(b'{') => {
                self.skip_value()?;
                RawValue::Other("an object")
            }
            _ => return Err(self.err("expected a value")),
        }))
    }

    fn number(&mut self) -> Result<RawValue<'a>, Reject> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("invalid number")),
        }
        let int_end = self.i;
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.i += 1;
            self.digits1()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits1()?;
        }
        if !integral {
            return Ok(RawValue::Other("a number with a fraction or exponent"));
        }
        Ok(match self.s[start..int_end].parse::<i64>() {
            Ok(v) => RawValue::Int(v),
            Err(_) => RawValue::Other("an integer out of range"),
        })
    }

    fn digits1(&mut self) -> Result<(), Reject> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == start {
            Err(self.err("invalid number"))
        } else {
            Ok(())
        }
    }

    /// Parses a string starting at `"`; borrows when it holds no escape.
    fn string(&mut self) -> Result<Cow<'a, str>, Reject> {
        self.expect(b'"', "expected a string")?;
        let start = self.i;
        // Fast path: find the first quote, backslash or control character, 8 bytes at a
        // time; most strings here are short and end at a quote.
        let Some(stop) = first_special(&self.b[start..]) else {
            return Err(Reject::Json {
                at: self.b.len(),
                what: "unterminated string",
            });
        };
        if self.b[start + stop] < 0x20 {
            self.i = start + stop;
            return Err(self.err("control character in string"));
        }
        self.i = start + stop;
        if self.b[self.i] == b'"' {
            let s = &self.s[start..self.i];
            self.i += 1;
            return Ok(Cow::Borrowed(s));
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            match self.next() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => return Ok(Cow::Owned(out)),
                Some(b'\\') => self.escape(&mut out)?,
                Some(c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(c) if c < 0x80 => out.push(char::from(c)),
                Some(_) => {
                    // A multi-byte UTF-8 sequence: copy the whole character.
                    let at = self.i - 1;
                    let ch = self.s[at..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.i = at + ch.len_utf8();
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Reject> {
        let c = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            let lo = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return Err(Reject::LoneSurrogate);
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            return Err(Reject::LoneSurrogate);
                        }
                    }
                    0xDC00..=0xDFFF => return Err(Reject::LoneSurrogate),
                    _ => hi,
                };
                char::from_u32(code).ok_or(Reject::LoneSurrogate)?
            }
            _ => return Err(self.err("invalid escape")),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Reject> {
        let part = self.b.get(self.i..self.i + 4).ok_or(Reject::Json {
            at: self.i,
            what: "invalid \\u escape",
        })?;
        let mut v = 0u32;
        for &c in part {
            let d = char::from(c).to_digit(16).ok_or(Reject::Json {
                at: self.i,
                what: "invalid \\u escape",
            })?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    /// Reads one member `"key": value` for [`outline`].
    fn outline_member(&mut self) -> Result<OutlinedMember<'a>, Reject> {
        let start = self.i;
        let key = self.member_head()?;
        let value_start = self.i;
        let scalar = match self.peek() {
            Some(b'{' | b'[') => {
                self.skip_value()?;
                None
            }
            _ => Some(self.scalar()?),
        };
        Ok(OutlinedMember {
            key,
            span: start..self.i,
            value_span: value_start..self.i,
            scalar,
        })
    }

    /// Reads `"key":` of an object member, refusing a key already in `keys`.
    fn member_key(&mut self, keys: &mut KeySeen<'a>) -> Result<(), Reject> {
        let key = self.member_head()?;
        keys.insert(key)
    }

    /// `"key":` of an object member with the whitespace around it; the key decoded.
    fn member_head(&mut self) -> Result<Cow<'a, str>, Reject> {
        self.ws();
        let key = self.string()?;
        self.ws();
        self.expect(b':', "expected `:`")?;
        self.ws();
        Ok(key)
    }

    /// Steps over the `{` under the cursor; when the object is empty, over its `}` too,
    /// and says so.
    fn open_object(&mut self) -> bool {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Skips any JSON value, checking it as strictly as the fields themselves (duplicate
    /// keys and lone surrogates at any depth). Iterative, with an explicit stack, so any
    /// nesting a 64 KiB line can hold is accepted without risk to the thread's stack.
    fn skip_value(&mut self) -> Result<(), Reject> {
        enum Open<'k> {
            Object(KeySeen<'k>),
            Array,
        }
        let mut stack: Vec<Open<'a>> = Vec::new();
        loop {
            // At the start of a value.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    if !self.open_object() {
                        let mut keys = KeySeen::default();
                        self.member_key(&mut keys)?;
                        stack.push(Open::Object(keys));
                        continue;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        stack.push(Open::Array);
                        continue;
                    }
                }
                _ => {
                    self.scalar()?;
                }
            }
            // A value is complete: close the containers it ends, or go on to the next
            // member or element.
            loop {
                self.ws();
                let next = self.next();
                match (stack.last_mut(), next) {
                    (None, _) => {
                        self.i -= 1; // not ours: the caller reads what follows
                        return Ok(());
                    }
                    (Some(Open::Object(keys)), Some(b',')) => {
                        self.member_key(keys)?;
                        break;
                    }
                    (Some(Open::Array), Some(b',')) => break,
                    (Some(Open::Object(_)), Some(b'}')) | (Some(Open::Array), Some(b']')) => {
                        stack.pop();
                    }
                    (Some(Open::Object(_)), _) => return Err(self.err("expected `,` or `}`")),
                    (Some(Open::Array), _) => return Err(self.err("expected `,` or `]`")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<RawValue<'_>> {
        Some(RawValue::Str(Cow::Borrowed(v)))
    }

    #[test]
    fn parses_a_flat_event() {
        let ev = parse_line(br#" {"call_id":"c1","type":"offered","ts":1551682805250,"line":null,"x":[1,{"a":2}]} "#)
            .expect("valid");
        assert_eq!(ev.call_id, s("c1"));
        assert_eq!(ev.kind, s("offered"));
        assert_eq!(ev.ts, Some(RawValue::Int(1_551_682_805_250)));
        assert_eq!(ev.line, None);
    }

    #[test]
    fn first_special_agrees_with_a_plain_scan() {
        let plain = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let mut cases: Vec<Vec<u8>> =
            vec![b"".to_vec(), b"abc".to_vec(), "é€😀\"".as_bytes().to_vec()];
        for len in 0..40 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff] {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    if pos + 1 < len {
                        v[pos + 1] = b'"';
                    }
                    cases.push(v);
                }
            }
        }
        for c in cases {
            assert_eq!(first_special(&c), plain(&c), "{c:?}");
        }
    }

    #[test]
    fn decodes_escapes_and_surrogate_pairs() {
        let ev = parse_line(br#"{"agent":"a\"b\\\u00e9\ud83d\ude00\n"}"#).expect("valid");
        assert_eq!(
            ev.agent,
            Some(RawValue::Str(Cow::Owned("a\"b\\é😀\n".into())))
        );
    }

    #[test]
    fn rejects_lone_surrogates_anywhere() {
        for l in [
            br#"{"agent":"\ud800"}"#.as_slice(),
            br#"{"agent":"\udc00x"}"#,
            br#"{"agent":"\ud800\u0041"}"#,
            br#"{"extra":{"deep":["\ud800"]}}"#,
            br#"{"\ud800":1}"#,
        ] {
            assert_eq!(
                parse_line(l),
                Err(Reject::LoneSurrogate),
                "{}",
                String::from_utf8_lossy(l)
            );
        }
    }

    #[test]
    fn rejects_duplicate_keys_known_unknown_and_nested() {
        assert_eq!(
            parse_line(br#"{"ts":1,"ts":2}"#),
            Err(Reject::DuplicateKey("ts".into()))
        );
        assert_eq!(
            parse_line(br#"{"ts":null,"ts":2}"#),
            Err(Reject::DuplicateKey("ts".into()))
        );
        assert_eq!(
            parse_line(br#"{"x":1,"y":2,"x":3}"#),
            Err(Reject::DuplicateKey("x".into()))
        );
        assert_eq!(
            parse_line(br#"{"x":{"a":1,"a":1}}"#),
            Err(Reject::DuplicateKey("a".into()))
        );
        // The same key written with an escape is the same key.
        assert_eq!(
            parse_line(br#"{"ts":1,"t\u0073":2}"#),
            Err(Reject::DuplicateKey("ts".into()))
        );
    }

    #[test]
    fn keeps_json_kinds_apart() {
        let ev = parse_line(br#"{"ts":1.0,"call_id":true,"line":1e3,"agent":[],"reason":{},"caller":99999999999999999999}"#)
            .expect("valid JSON");
        assert!(matches!(ev.ts, Some(RawValue::Other(_))));
        assert_eq!(ev.call_id, Some(RawValue::Other("a boolean")));
        assert!(matches!(ev.line, Some(RawValue::Other(_))));
        assert_eq!(ev.agent, Some(RawValue::Other("an array")));
        assert_eq!(ev.reason, Some(RawValue::Other("an object")));
        assert_eq!(ev.caller, Some(RawValue::Other("an integer out of range")));
        assert_eq!(
            parse_line(br#"{"ts":-0}"#).map(|e| e.ts),
            Ok(Some(RawValue::Int(0)))
        );
    }

    #[test]
    fn rejects_malformed_json() {
        for l in [
            b"".as_slice(),
            b"   ",
            b"{",
            b"{\"a\":1,}",
            b"{\"a\":01}",
            b"{\"a\":1} x",
            b"{\"a\":\"tab\there\"}",
            b"{'a':1}",
            b"{\"a\":tru}",
            b"{\"a\":-}",
            b"{\"a\":1.}",
            b"{\"a\":\"\\x\"}",
            b"[1,2]",
            b"\"text\"",
            b"{\"a\" 1}",
        ] {
            assert!(parse_line(l).is_err(), "{}", String::from_utf8_lossy(l));
        }
        assert_eq!(parse_line(b"[1]"), Err(Reject::NotObject));
        assert_eq!(parse_line(b""), Err(Reject::Empty));
        assert_eq!(parse_line(b"{\"a\":\"\xff\"}"), Err(Reject::NotUtf8));
        // Any depth that fits in a line is fine; broken nesting is not.
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[{\"k\":".repeat(6_000),
            "}]".repeat(6_000)
        );
        assert!(parse_line(deep.as_bytes()).is_ok());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(30_000), "]".repeat(30_000));
        assert!(parse_line(deep.as_bytes()).is_ok());
        let bad = format!("{{\"a\":{}{}}}", "[".repeat(30_000), "]".repeat(29_999));
        assert!(parse_line(bad.as_bytes()).is_err());
        let dup = format!(
            "{{\"a\":{}{{\"k\":1,\"k\":2}}{}}}",
            "[".repeat(500),
            "]".repeat(500)
        );
        assert_eq!(
            parse_line(dup.as_bytes()),
            Err(Reject::DuplicateKey("k".into()))
        );
    }

    #[test]
    fn enforces_the_line_length_limit() {
        let pad = |n: usize| format!("{{\"x\":\"{}\"}}", "a".repeat(n - 8));
        assert!(parse_line(pad(MAX_LINE_BYTES).as_bytes()).is_ok());
        assert_eq!(
            parse_line(pad(MAX_LINE_BYTES + 1).as_bytes()),
            Err(Reject::TooLong)
        );
    }
}
