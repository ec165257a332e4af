//! `orderflow.toml`: settings for every command, layered as defaults < file <
//! environment < flags.
//!
//! Every flag already reads `ORDERFLOW_<FLAG>` from the environment, so the file is
//! applied as environment values that the environment itself has not set: one
//! precedence rule, the flags' own parsers and checks, and nothing else to keep in
//! step with the flags. Top-level keys apply to every command that has the flag;
//! a `[process]` (or `[orders]`, `[topics]`, ...) table applies to that command and
//! wins over the top level.
//!
//! ```toml
//! bootstrap_servers = "127.0.0.1:9092"
//! x = ["security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512"]
//! [process]
//! group = "billing"
//! max_retries = 5
//! ```

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "orderflow.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: unknown key {key:?}{section}; keys are the flags' environment variables without ORDERFLOW_, in lower case (`orderflow config show` lists them): {known}"
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        section: String,
        known: String,
    },
    #[error("{path}: unknown section [{section}]; sections are the commands: {known}")]
    UnknownSection {
        path: PathBuf,
        section: String,
        known: String,
    },
    #[error("{path}: {key:?} must be a string, number, boolean or an array of them")]
    BadValue { path: PathBuf, key: String },
}

/// Where the file is: the one named (`--config`, `ORDERFLOW_CONFIG`), which must
/// exist; else `./orderflow.toml`; else `$XDG_CONFIG_HOME/orderflow/orderflow.toml`
/// (`~/.config/...`); else none.
pub fn locate(named: Option<&Path>) -> Result<Option<PathBuf>, Error> {
    if let Some(p) = named {
        return match std::fs::metadata(p) {
            Ok(_) => Ok(Some(p.to_path_buf())),
            Err(source) => Err(Error::Read {
                path: p.to_path_buf(),
                source,
            }),
        };
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let candidates = std::iter::once(PathBuf::from(FILE_NAME))
        .chain(xdg.map(|d| d.join("orderflow").join(FILE_NAME)));
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// One setting the file gives a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The environment variable it stands for, `ORDERFLOW_...`.
    pub var: String,
    pub value: String,
}

/// The settings of `path` for `command` (its section name, e.g. `process`).
/// `flags` lists each command's section name with the environment variables its
/// flags read. A key or section no command has is an error, so a typo never goes
/// unnoticed.
pub fn settings(
    path: &Path,
    command: &str,
    flags: &[(String, Vec<String>)],
) -> Result<Vec<Setting>, Error> {
    let command_vars: &[String] = flags
        .iter()
        .find(|(name, _)| name == command)
        .map_or(&[], |(_, v)| v.as_slice());
    let mut all_vars: Vec<String> = flags.iter().flat_map(|(_, v)| v.clone()).collect();
    all_vars.sort();
    all_vars.dedup();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out: Vec<Setting> = Vec::new();
    let mut put = |s: Setting| match out.iter_mut().find(|o| o.var == s.var) {
        Some(o) => *o = s,
        None => out.push(s),
    };
    let mut sections = Vec::new();
    for (key, value) in &table {
        if let toml::Value::Table(t) = value {
            sections.push((key.as_str(), t));
            continue;
        }
        let var = var_of(key);
        if !all_vars.contains(&var) {
            return Err(unknown(path, key, "", &all_vars));
        }
        if command_vars.contains(&var) {
            put(Setting {
                var,
                value: text_of(path, key, value)?,
            });
        }
    }
    for (name, t) in sections {
        let Some((_, vars)) = flags.iter().find(|(n, _)| n == name) else {
            let mut names: Vec<&str> = flags.iter().map(|(n, _)| n.as_str()).collect();
            names.sort();
            return Err(Error::UnknownSection {
                path: path.to_path_buf(),
                section: name.to_string(),
                known: names.join(", "),
            });
        };
        for (key, value) in t {
            let var = var_of(key);
            if !vars.contains(&var) {
                return Err(unknown(path, key, name, vars));
            }
            if name == command {
                put(Setting {
                    var,
                    value: text_of(path, key, value)?,
                });
            }
        }
    }
    Ok(out)
}

/// Makes the settings the environment's, except where the environment already
/// has a value. Call before any thread starts (`std::env::set_var`).
pub fn apply(settings: &[Setting]) -> Vec<Setting> {
    let mut applied = Vec::new();
    for s in settings {
        if std::env::var_os(&s.var).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread
            // exists, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(&s.var, &s.value) };
            applied.push(s.clone());
        }
    }
    applied
}

fn var_of(key: &str) -> String {
    format!("ORDERFLOW_{}", key.replace('-', "_").to_uppercase())
}

fn key_of(var: &str) -> String {
    var.trim_start_matches("ORDERFLOW_").to_lowercase()
}

fn unknown(path: &Path, key: &str, section: &str, vars: &[String]) -> Error {
    let mut known: Vec<String> = vars.iter().map(|v| key_of(v)).collect();
    known.sort();
    known.dedup();
    Error::UnknownKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        section: if section.is_empty() {
            String::new()
        } else {
            format!(" in [{section}]")
        },
        known: known.join(", "),
    }
}

/// A value as the flag's environment variable carries it: arrays joined with
/// `;`, as `-X` and `-C` read them.
fn text_of(path: &Path, key: &str, value: &toml::Value) -> Result<String, Error> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    let bad = || Error::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
    };
    match value {
        toml::Value::Array(items) => items
            .iter()
            .map(|v| scalar(v).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(";")),
        v => scalar(v).ok_or_else(bad),
    }
}

/// `value` with secrets masked: the password of a URL, and the values of
/// librdkafka properties whose names say they are secret.
pub fn mask(value: &str) -> String {
    value
        .split(';')
        .map(|part| {
            if let Some((k, _)) = part.split_once('=')
                && ["password", "secret", "token", "key.pem", "jaas"]
                    .iter()
                    .any(|s| k.contains(s))
            {
                return format!("{k}=****");
            }
            match url::Url::parse(part) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("****"));
                    u.to_string()
                }
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| format!("ORDERFLOW_{s}")).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn flags() -> Vec<(String, Vec<String>)> {
        vec![
            (
                "process".into(),
                vars(&[
                    "BOOTSTRAP_SERVERS",
                    "GROUP",
                    "X",
                    "MAX_RETRIES",
                    "QUIET",
                    "STORE",
                ]),
            ),
            ("dlq".into(), vars(&["BOOTSTRAP_SERVERS", "GROUP"])),
            ("stats".into(), vars(&["STORE"])),
        ]
    }

    #[test]
    fn the_command_section_wins_over_the_top_level_and_other_sections_stay_out() {
        let f = file(
            "bootstrap-servers = \"k:9092\"\ngroup = \"top\"\nx = [\"a=1\", \"b=2\"]\n\
             [process]\ngroup = \"billing\"\nmax_retries = 5\nquiet = true\n[dlq]\ngroup = \"d\"\n",
        );
        let got = settings(f.path(), "process", &flags()).unwrap();
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|s| (s.var.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("ORDERFLOW_BOOTSTRAP_SERVERS", "k:9092"),
                ("ORDERFLOW_GROUP", "billing"),
                ("ORDERFLOW_X", "a=1;b=2"),
                ("ORDERFLOW_MAX_RETRIES", "5"),
                ("ORDERFLOW_QUIET", "true"),
            ]
        );
        // A command without those flags takes none of them.
        assert!(settings(f.path(), "stats", &flags()).unwrap().is_empty());
    }

    #[test]
    fn typos_and_bad_values_are_errors_that_name_the_key() {
        let e = settings(file("gruop = \"x\"").path(), "process", &flags()).unwrap_err();
        assert!(e.to_string().contains("\"gruop\""), "{e}");
        assert!(e.to_string().contains("bootstrap_servers, group"), "{e}");
        let e = settings(file("[stats]\ngroup = \"g\"").path(), "stats", &flags()).unwrap_err();
        assert!(e.to_string().contains("in [stats]"), "{e}");
        let e = settings(file("[proces]\ngroup = \"g\"").path(), "dlq", &flags()).unwrap_err();
        assert!(matches!(e, Error::UnknownSection { .. }), "{e}");
        let e = settings(file("group = [[1]]").path(), "dlq", &flags()).unwrap_err();
        assert!(matches!(e, Error::BadValue { .. }), "{e}");
        let e = settings(file("group = ").path(), "dlq", &flags()).unwrap_err();
        assert!(matches!(e, Error::Parse { .. }), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask("security.protocol=SASL_SSL;sasl.password=hunter2"),
            "security.protocol=SASL_SSL;sasl.password=****"
        );
        assert_eq!(
            mask("postgres://app:hunter2@db:5432/orders"),
            "postgres://app:****@db:5432/orders"
        );
        assert_eq!(
            mask("sqlite://.orderflow/orders.db"),
            "sqlite://.orderflow/orders.db"
        );
    }
}
