//! Keeps calling numbers out of the dead-letter store: in a rejected line, the value of
//! every `caller` key is replaced by its keyed hash before the line is stored.
//!
//! The line may be broken JSON, so this is a tolerant tokenizer, not a parser: it finds
//! string tokens, decodes them (so `"c\u0061ller"` is caught too), and when one equal to
//! `caller` is followed by `:`, it replaces the value token that follows.

use netwait_aggregator::domain::privacy::Pseudonymizer;
use std::borrow::Cow;

/// End (exclusive) of the string token starting at `start` (a `"`), or the line's end.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Decodes a string token's content well enough to compare it with a key name.
fn decoded_is(token: &[u8], name: &str) -> bool {
    let inner = token
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(token);
    if !inner.contains(&b'\\') {
        return inner == name.as_bytes();
    }
    let mut out = String::new();
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && inner.get(i + 1) == Some(&b'u') {
            let code = inner
                .get(i + 2..i + 6)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32);
            match code {
                Some(c) => out.push(c),
                None => return false,
            }
            i += 6;
        } else if inner[i] == b'\\' {
            out.push(char::from(*inner.get(i + 1).unwrap_or(&b'?')));
            i += 2;
        } else {
            out.push(char::from(inner[i]));
            i += 1;
        }
    }
    out == name
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Returns the line with every `caller` value replaced by `"redacted:<keyed hash>"`.
pub fn redact_caller<'a>(line: &'a [u8], pseudo: &Pseudonymizer) -> Cow<'a, [u8]> {
    // Fast path: no key can decode to "caller" without the letters or an escape.
    if !line.windows(6).any(|w| w == b"caller") && !line.contains(&b'\\') {
        return Cow::Borrowed(line);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(line, i);
        let colon = skip_ws(line, end);
        if !decoded_is(&line[i..end], "caller") || line.get(colon) != Some(&b':') {
            i = end;
            continue;
        }
        let v = skip_ws(line, colon + 1);
        let v_end = if line.get(v) == Some(&b'"') {
            string_end(line, v)
        } else {
            let mut j = v;
            while j < line.len() && !matches!(line[j], b',' | b'}' | b']') {
                j += 1;
            }
            j
        };
        let value = String::from_utf8_lossy(&line[v..v_end]);
        let buf = out.get_or_insert_with(|| Vec::with_capacity(line.len() + 32));
        buf.extend_from_slice(&line[copied..v]);
        buf.extend_from_slice(
            format!("\"redacted:{:?}\"", pseudo.hash(value.trim_matches('"'))).as_bytes(),
        );
        copied = v_end;
        i = v_end;
    }
    match out {
        None => Cow::Borrowed(line),
        Some(mut buf) => {
            buf.extend_from_slice(&line[copied..]);
            Cow::Owned(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(line: &str) -> String {
        String::from_utf8_lossy(&redact_caller(
            line.as_bytes(),
            &Pseudonymizer::new([1; 32]),
        ))
        .into_owned()
    }

    #[test]
    fn replaces_caller_values_only() {
        let out = red(r#"{"type":"bogus","caller":"+390364111222","x":"caller"}"#);
        assert!(!out.contains("390364111222"), "{out}");
        assert!(out.contains(r#""x":"caller""#));
        assert!(out.starts_with(r#"{"type":"bogus","caller":"redacted:"#));
        let out = red(r#"{"c\u0061ller" : 390364111222, "ts": 1}"#);
        assert!(!out.contains("390364111222"), "{out}");
        let out = red(r#"{"caller":"+39 0364 111222"  broken"#);
        assert!(!out.contains("111222"), "{out}");
        assert_eq!(red(r#"{"type":"x"}"#), r#"{"type":"x"}"#);
    }
}
