//! Console output: the seeds' lines, optionally prefixed when several components
//! share one terminal (the demo).

use std::{borrow::Cow, fmt, io::Write};

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
