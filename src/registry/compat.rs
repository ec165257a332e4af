//! Compatibility levels and Avro's reader/writer rules, as Confluent Schema
//! Registry applies them when a schema is registered.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

/// A subject's (or the registry's) compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
        Level::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
            Level::None => "NONE",
        }
    }

    /// Case-insensitive, as clients send `backward` as often as `BACKWARD`.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    /// (new schema reads old data, old schema reads new data)
    fn directions(self) -> (bool, bool) {
        match self {
            Level::Backward | Level::BackwardTransitive => (true, false),
            Level::Forward | Level::ForwardTransitive => (false, true),
            Level::Full | Level::FullTransitive => (true, true),
            Level::None => (false, false),
        }
    }
}

/// Why a schema may not follow others: one message per version it fails against.
pub fn check(level: Level, new: &Schema, existing_newest_first: &[(i64, Schema)]) -> Vec<String> {
    let (backward, forward) = level.directions();
    let against = if level.transitive() {
        existing_newest_first
    } else {
        &existing_newest_first[..existing_newest_first.len().min(1)]
    };
    let mut problems = Vec::new();
    for (version, old) in against {
        if backward && let Err(e) = reads(old, new) {
            problems.push(format!(
                "the new schema cannot read data written with version {version} ({}): {e}",
                level.as_str()
            ));
        }
        if forward && let Err(e) = reads(new, old) {
            problems.push(format!(
                "version {version} cannot read data written with the new schema ({}): {e}",
                level.as_str()
            ));
        }
    }
    problems
}

/// Whether `reader` reads all data written with `writer`. A partial match (a
/// writer's enum symbol or union branch the reader lacks) fails on some data,
/// so it counts as incompatible, as in Avro's Java checker that Confluent runs.
pub fn reads(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => {
            Err("the reader lacks an enum symbol or a union branch the writer may use".to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}
