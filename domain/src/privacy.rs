//! Calling numbers never reach the data directory or a log in clear. This is the one
//! place that decides it:
//! - a valid event's `caller` is replaced by a keyed hash (BLAKE3 keyed mode), so that the
//!   same number maps to the same token while nobody without the key can invert it, even
//!   by trying every phone number ([`Pseudonymizer::hash`], called by validation);
//! - a rejected line is kept for triage only as [`redact_rejected`] leaves it: the line
//!   reader outlines its members; a `caller` member read whole has its value replaced by
//!   the hash, known fields with a scalar value are kept as they are, and everything else
//!   (other members, and whatever could not be read as JSON members) keeps no run of six
//!   or more digits ([`mask_digit_runs`]).

use super::event::CallerHash;
use super::json_line::outline;
use super::limits::field_slot;
use super::raw_event::RawValue;
use std::borrow::Cow;

/// Digit runs at least this long are masked where the caller cannot be delimited.
pub const MASKED_RUN: usize = 6;

/// The character a masked digit becomes.
const MASK: u8 = b'#';

pub struct Pseudonymizer {
    key: [u8; 32],
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn hash(&self, caller: &str) -> CallerHash {
        let full = blake3::keyed_hash(&self.key, caller.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        CallerHash(out)
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

/// `raw`, a rejected input, as it may be stored (see the module doc).
pub fn redact_rejected<'a>(raw: &'a [u8], pseudo: &Pseudonymizer) -> Cow<'a, [u8]> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return mask_digit_runs(raw);
    };
    let shape = outline(text);
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() + 32);
    let mut copied = 0;
    for m in &shape.members {
        out.extend_from_slice(&raw[copied..m.span.start]);
        copied = m.span.end;
        let value = &raw[m.value_span.clone()];
        if m.key == "caller" {
            let hash = match &m.scalar {
                Some(Some(RawValue::Str(s))) => pseudo.hash(s),
                _ => pseudo.hash(&String::from_utf8_lossy(value)),
            };
            out.extend_from_slice(&raw[m.span.start..m.value_span.start]);
            out.extend_from_slice(format!("\"redacted:{hash:?}\"").as_bytes());
        } else if field_slot(&m.key).is_some() && m.scalar.is_some() {
            out.extend_from_slice(&raw[m.span.clone()]);
        } else {
            out.extend_from_slice(&mask_digit_runs(&raw[m.span.clone()]));
        }
    }
    let unread = shape.unread_from.unwrap_or(raw.len()).max(copied);
    out.extend_from_slice(&raw[copied..unread]);
    out.extend_from_slice(&mask_digit_runs(&raw[unread..]));
    if out == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(out)
    }
}

/// `text` with every number of [`MASKED_RUN`] or more digits masked digit by digit, a
/// number being digits written as a phone number may be: in groups split by at most two
/// of ` -./()` (`+39 333 123 4567`, `(0364) 12-34-56`). A digit is an ASCII digit, its
/// JSON escape (`\u0033`) or a full-width digit, so that neither escaping nor a different
/// script hides a number.
pub fn mask_digit_runs(text: &[u8]) -> Cow<'_, [u8]> {
    mask_numbers(text, 2)
}

/// Masks numbers of [`MASKED_RUN`] or more digits whose groups are split by at most
/// `max_gap` separators (0: only unbroken runs count).
fn mask_numbers(text: &[u8], max_gap: usize) -> Cow<'_, [u8]> {
    let digit_len = |at: usize| -> usize {
        match text.get(at..).unwrap_or_default() {
            [b'0'..=b'9', ..] => 1,
            [b'\\', b'u', b'0', b'0', b'3', b'0'..=b'9', ..] => 6,
            [0xEF, 0xBC, 0x90..=0x99, ..] => 3,
            _ => 0,
        }
    };
    let separator =
        |at: usize| matches!(text.get(at), Some(b' ' | b'-' | b'.' | b'/' | b'(' | b')'));
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < text.len() {
        if digit_len(i) == 0 {
            if let Some(buf) = &mut out {
                buf.push(text[i]);
            }
            i += 1;
            continue;
        }
        // One number: digit groups, and the short separator runs between them.
        let start = i;
        let mut digits = 0;
        let mut end = i;
        loop {
            let n = digit_len(i);
            if n > 0 {
                i += n;
                digits += 1;
                end = i;
                continue;
            }
            let mut gap = 0;
            while gap < max_gap && separator(i + gap) {
                gap += 1;
            }
            if gap > 0 && digit_len(i + gap) > 0 {
                i += gap;
            } else {
                break;
            }
        }
        i = end;
        if digits >= MASKED_RUN {
            let buf = out.get_or_insert_with(|| text[..start].to_vec());
            let mut j = start;
            while j < end {
                match digit_len(j) {
                    0 => {
                        buf.push(text[j]);
                        j += 1;
                    }
                    n => {
                        buf.push(MASK);
                        j += n;
                    }
                }
            }
        } else if let Some(buf) = &mut out {
            buf.extend_from_slice(&text[start..end]);
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// A message (a reject's reason may quote a key of the input) with every unbroken run of
/// [`MASKED_RUN`] or more digits masked (its own numbers, positions and sizes, are split
/// by words, and stay readable).
pub fn mask_digit_runs_str(text: &str) -> Cow<'_, str> {
    match mask_numbers(text.as_bytes(), 0) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Only whole ASCII digits, escapes or full-width digits were replaced by ASCII.
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_number_same_token_and_key_matters() {
        let a = Pseudonymizer::new([1; 32]);
        let b = Pseudonymizer::new([2; 32]);
        assert_eq!(a.hash("+390364123456"), a.hash("+390364123456"));
        assert_ne!(a.hash("+390364123456"), a.hash("+390364123457"));
        assert_ne!(a.hash("+390364123456"), b.hash("+390364123456"));
        assert!(!format!("{:?}", a.hash("+390364123456")).contains("390364"));
    }

    const NUMBER: &str = "393331234567";

    fn red(line: &str) -> String {
        String::from_utf8_lossy(&redact_rejected(
            line.as_bytes(),
            &Pseudonymizer::new([1; 32]),
        ))
        .into_owned()
    }

    #[test]
    fn masks_runs_of_six_digits_and_more_only() {
        let m = |s: &str| String::from_utf8_lossy(&mask_digit_runs(s.as_bytes())).into_owned();
        assert_eq!(m("ab 12345 x"), "ab 12345 x");
        assert_eq!(m("+393331234567,"), "+############,");
        assert_eq!(m("1234567"), "#######");
        assert_eq!(m("\\u0033\\u003912345"), "#######");
        assert_eq!(m("３９3331234"), "#########");
        assert_eq!(m("12 34 5"), "12 34 5");
        assert_eq!(m("+39 333 123 4567"), "+## ### ### ####");
        assert_eq!(m("(0364) 12-34-56"), "(####) ##-##-##");
        assert_eq!(m("333-123-4567,"), "###-###-####,");
        assert_eq!(m("12 ab 3456"), "12 ab 3456");
        assert_eq!(m("123   456"), "123   456");
        assert!(matches!(mask_digit_runs(b"no digits"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_caller_read_whole_is_hashed_known_fields_kept() {
        let out =
            red(r#"{"type":"bogus","ts":1546329600000,"caller":"+393331234567","x":"caller"}"#);
        assert!(!out.contains(NUMBER), "{out}");
        assert!(
            out.starts_with(r#"{"type":"bogus","ts":1546329600000,"caller":"redacted:"#),
            "{out}"
        );
        assert!(out.ends_with(r#","x":"caller"}"#), "{out}");
        // The hash is the one a valid event gets: the decoded value's.
        let p = Pseudonymizer::new([1; 32]);
        let escaped = red(r#"{"c\u0061ller":"+39333\u00312\u00334\u003567","ts":"x"}"#);
        assert!(
            escaped.contains(&format!("{:?}", p.hash("+393331234567"))),
            "{escaped}"
        );
    }

    #[test]
    fn no_hostile_shape_keeps_the_number() {
        for line in [
            r#"{"type":"offered","caller":{"cc":"+39","n":"+393331234567"}}"#,
            r#"{"type":"offered","caller":["+39","+393331234567"]}"#,
            r#"{"type":"offered","caller":393331234567}"#,
            r#"{"type":"offered",caller:"+393331234567"}"#,
            r#"{'type':'offered','caller':'+393331234567'}"#,
            r#"{"type":"offered","caller":"+393331234567""#,
            r#"{"type":"offered","caller" "+393331234567"}"#,
            r#"{"caller":"x","caller":"+393331234567"}"#,
            r#"{"Caller":"+393331234567","type":1}"#,
            r#"{"x":{"caller":"+393331234567"}}"#,
            r#"{"agent":{"caller":"+393331234567"},"type":"x"}"#,
            r#"{"+393331234567":1,"+393331234567":2}"#,
            r#"["+393331234567"]"#,
            r#""+393331234567""#,
            r#"caller=+393331234567"#,
            r#"{"type":"offered",caller:"+39 333 123 4567"}"#,
            r#"{'type':'offered','caller':'333-123-4567'}"#,
            r#"{"type":"x","caller":"\ud800+393331234567"}"#,
            r#"{"type":"x","caller":"+39\u00333\u003331234567"}"#,
            r#"{"type":"x"} {"caller":"+393331234567"}"#,
            "{\"type\":\"x\",\"caller\":\"+393331234567\u{1}\"}",
        ] {
            let out = red(line);
            assert!(!out.contains(NUMBER), "{line} -> {out}");
            assert!(!out.contains("31234567"), "{line} -> {out}");
            assert!(
                !out.contains("123 4567") && !out.contains("123-4567"),
                "{line} -> {out}"
            );
        }
        let bytes = b"{\"caller\":\"+393331234567\xff\"}";
        let out = redact_rejected(bytes, &Pseudonymizer::new([1; 32]));
        assert!(!out.windows(NUMBER.len()).any(|w| w == NUMBER.as_bytes()));
    }
}
