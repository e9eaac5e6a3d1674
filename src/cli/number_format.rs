//! Numbers as the seed's tables print them (Italian conventions): `.` between thousands,
//! `,` before decimals, whole seconds for times.

/// `181795` → `181.795`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// Seconds rounded to whole seconds (half away from zero), as a count: `1240.4` → `1.240`;
/// an empty figure is `—`.
pub fn whole_secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => count(s.round() as u64),
        Some(_) | None => "—".to_owned(),
    }
}

/// Seconds with at most three decimals, trailing zeros dropped: `139.5` → `139,5`.
pub fn secs(s: f64) -> String {
    let text = format!("{s:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text.split_once('.') {
        Some((whole, frac)) => format!("{},{frac}", count(whole.parse().unwrap_or(0))),
        None => count(text.parse().unwrap_or(0)),
    }
}

/// A share as a percentage with one decimal: `0.6123` → `61,2%`; no share is `—`.
pub fn percent(x: Option<f64>) -> String {
    x.map_or_else(
        || "—".to_owned(),
        |x| format!("{:.1}%", x * 100.0).replace('.', ","),
    )
}

/// `text` cut into lines of at most `width` characters at spaces (a longer word stays
/// whole on its own line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn italian_numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_240), "1.240");
        assert_eq!(count(181_795), "181.795");
        assert_eq!(count(1_234_567), "1.234.567");
        assert_eq!(whole_secs(Some(1240.0)), "1.240");
        assert_eq!(whole_secs(Some(228.5)), "229");
        assert_eq!(whole_secs(Some(228.49)), "228");
        assert_eq!(whole_secs(None), "—");
        assert_eq!(secs(140.0), "140");
        assert_eq!(secs(139.5), "139,5");
        assert_eq!(secs(1.005), "1,005");
        assert_eq!(secs(86_400.0), "86.400");
        assert_eq!(percent(Some(0.6123)), "61,2%");
        assert_eq!(percent(None), "—");
    }

    #[test]
    fn wraps_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh x", 4), ["abcdefgh", "x"]);
        assert!(wrap("", 10).is_empty());
    }
}
