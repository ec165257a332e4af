//! Console output: the seeds' lines, optionally prefixed when several components
//! share one terminal (the demo).

use std::{fmt, io::Write};

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

    /// Prints one line (each line of a multi-line text gets the prefix). Output
    /// errors such as a closed pipe are ignored: printing is never why work fails.
    pub fn line(&self, args: fmt::Arguments<'_>) {
        let mut out = std::io::stdout().lock();
        match &self.prefix {
            None => {
                let _ = writeln!(out, "{args}");
            }
            Some(p) => {
                for l in args.to_string().lines() {
                    let _ = writeln!(out, "{p}{l}");
                }
            }
        }
    }
}

/// An amount with two decimals, or `-` when there is none (no price, no average yet).
pub fn amount(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}
