//! The benchmark's one table, in Markdown so it reads in a terminal and pastes
//! into BENCHMARKS.md as it is.

use std::fmt;

pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub result: String,
    /// The row it is compared with, and the ratio to it.
    pub versus: Option<(&'static str, f64)>,
    /// The target and whether it was met.
    pub target: Option<(String, bool)>,
}

#[derive(Default)]
pub struct Table {
    pub heading: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    /// Targets that were missed, by row id.
    pub fn missed(&self) -> Vec<&'static str> {
        self.rows
            .iter()
            .filter(|r| matches!(r.target, Some((_, false))))
            .map(|r| r.id)
            .collect()
    }
}

/// A whole number with thousands separators.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.heading {
            writeln!(f, "{h}")?;
        }
        writeln!(f)?;
        let header = ["#", "measurement", "result", "vs", "ratio", "target", "met"];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                let (vs, ratio) = r.versus.map_or((String::new(), String::new()), |(v, x)| {
                    (v.to_string(), format!("{:.0}%", x * 100.0))
                });
                let (target, met) = r
                    .target
                    .as_ref()
                    .map_or((String::new(), String::new()), |(t, ok)| {
                        (t.clone(), if *ok { "yes" } else { "NO" }.to_string())
                    });
                [
                    r.id.to_string(),
                    r.what.clone(),
                    r.result.clone(),
                    vs,
                    ratio,
                    target,
                    met,
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |f: &mut fmt::Formatter<'_>, cols: &[String]| {
            write!(f, "|")?;
            for (c, w) in cols.iter().zip(&widths) {
                write!(f, " {c:<w$} |")?;
            }
            writeln!(f)
        };
        line(f, &header.map(String::from))?;
        line(
            f,
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        )?;
        for c in &cells {
            line(f, c)?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for n in &self.notes {
                writeln!(f, "- {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn rows_line_up_and_misses_are_listed() {
        let t = Table {
            heading: vec!["h".into()],
            rows: vec![
                Row {
                    id: "1",
                    what: "a".into(),
                    result: "10/s".into(),
                    versus: None,
                    target: None,
                },
                Row {
                    id: "2",
                    what: "bb".into(),
                    result: "9/s".into(),
                    versus: Some(("1", 0.9)),
                    target: Some((">= 95%".into(), false)),
                },
            ],
            notes: vec![],
        };
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        assert!(
            lines[3].contains("90%") && lines[3].contains("NO"),
            "{text}"
        );
        assert_eq!(t.missed(), ["2"]);
    }
}
