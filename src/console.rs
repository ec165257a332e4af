//! Console output: the seeds' lines, optionally prefixed when several components
//! share one terminal (the demo).

use std::{
    borrow::Cow,
    fmt,
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

#[derive(Debug, Clone, Default)]
pub struct Console {
    prefix: Option<String>,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }

    pub fn prefixed(prefix: &str) -> Self {
        Console {
            prefix: Some(format!("[{prefix}] ")),
        }
    }

    /// Prints one line (each line of a multi-line text gets the prefix), with
    /// control characters escaped (see `printable`). Output errors such as a
    /// closed pipe are ignored: printing is never why work fails.
    pub fn line(&self, args: fmt::Arguments<'_>) {
        let text = args.to_string();
        let mut out = std::io::stdout().lock();
        let prefix = self.prefix.as_deref().unwrap_or("");
        for l in text.split('\n') {
            let _ = writeln!(out, "{prefix}{}", printable(l));
        }
    }
}

/// `s` with every character that could drive a terminal escaped as `\u{..}`:
/// C0 and C1 controls (ESC starts colour and cursor sequences, CR rewrites a
/// line), DEL, and the bidirectional overrides that reorder what is shown. Order
/// fields and failure reasons come from anyone's messages.
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An amount with two decimals, or `-` when there is none (no price, no average yet).
pub fn amount(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// A time as ms since the epoch: RFC 3339, or a duration before now.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).map_err(|_| {
                format!("{s:?} is neither a time (2026-12-01T10:00:00Z) nor a duration (2h)")
            })?;
            SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| format!("{s:?} ago is before the epoch"))?
        }
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("{s:?} is too far ahead"))
}

/// RFC 3339, or the milliseconds as they are when RFC 3339 has no year for
/// them (a producer's timestamps in microseconds, say).
pub fn time(ms: i64) -> String {
    const YEAR_10000_MS: i64 = 253_402_300_800_000;
    if !(0..YEAR_10000_MS).contains(&ms) {
        return format!("{ms} ms since 1970");
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_text_is_kept() {
        assert!(matches!(printable("burger x 2\tok"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}[31mred\r\u{7f}\u{9b}\u{202e}txt"),
            "\\u{1b}[31mred\\u{d}\\u{7f}\\u{9b}\\u{202e}txt"
        );
        assert_eq!(printable("Ünïcödé 寿司"), "Ünïcödé 寿司");
    }
}
