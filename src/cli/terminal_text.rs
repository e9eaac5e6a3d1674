//! Input bytes shown on a terminal: nothing in them may move the cursor, change colours,
//! reorder the text around it (bidi controls) or end a line, and invalid UTF-8 is named
//! byte by byte, never printed raw.

use std::fmt::Write as _;

/// `bytes` as one printable line of at most `max` characters of input (a character or
/// an invalid byte counting as one); returns the text and how many bytes of `bytes` it
/// shows. Backslashes are doubled, so every escape is unambiguous: `\n`, `\r`, `\t`,
/// `\x1b` (other ASCII controls and invalid bytes), `\u{202e}` (other controls and
/// invisible formatting characters).
pub fn escape(bytes: &[u8], max: usize) -> (String, usize) {
    let mut out = String::with_capacity(bytes.len().min(max) + 16);
    let (mut shown, mut used) = (0usize, 0usize);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == max {
                return (out, used);
            }
            push_char(&mut out, c);
            shown += 1;
            used += c.len_utf8();
        }
        for &b in chunk.invalid() {
            if shown == max {
                return (out, used);
            }
            let _ = write!(out, "\\x{b:02x}");
            shown += 1;
            used += 1;
        }
    }
    (out, used)
}

/// All of `text`, escaped as [`escape`] does (for names and reasons, which are short).
pub fn escape_all(text: &str) -> String {
    escape(text.as_bytes(), usize::MAX).0
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || invisible(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Formatting characters that show nothing themselves but change how the text around
/// them looks (bidi overrides and isolates, zero-width characters, line separators).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invalid_bytes_are_escaped() {
        let raw = b"a\x1b[31mred\x07\tb\r\n\\x\xff\xc3(\x7f";
        let (text, used) = escape(raw, 100);
        assert_eq!(text, r"a\x1b[31mred\x07\tb\r\n\\x\xff\xc3(\x7f");
        assert_eq!(used, raw.len());
        assert!(!text.chars().any(char::is_control));
    }

    #[test]
    fn unicode_is_kept_but_not_its_invisible_controls() {
        let text = escape_all("città \u{202e}txt.exe\u{85}\u{200b}€");
        assert_eq!(text, r"città \u{202e}txt.exe\u{85}\u{200b}€");
    }

    #[test]
    fn cut_after_max_characters_on_a_character_boundary() {
        let raw = "é".repeat(300);
        let (text, used) = escape(raw.as_bytes(), 200);
        assert_eq!((text.chars().count(), used), (200, 400));
        // An invalid byte counts as one character.
        let (text, used) = escape(b"\xff\xfeabc", 3);
        assert_eq!((text.as_str(), used), (r"\xff\xfea", 3));
        assert_eq!(escape(b"", 5), (String::new(), 0));
    }
}
