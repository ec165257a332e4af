//! The config file in the command line: found and applied before the real parse
//! (see `crate::config_file`), and `orderflow config show`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory, Subcommand};

use crate::config_file::{self, Setting};

use super::Cli;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings each command runs with, and where each comes from
    /// (file, env or default), secrets masked
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only this command's settings (e.g. process) [default: every command's]
    pub command: Option<String>,
}

/// Each command's section name and the environment variables its flags read
/// (subcommands such as `orders list` fall under their command's section).
fn flags() -> Vec<(String, Vec<String>)> {
    fn vars(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
                .filter(|e| e != "ORDERFLOW_CONFIG"),
        );
        for sub in cmd.get_subcommands() {
            vars(sub, out);
        }
    }
    Cli::command()
        .get_subcommands()
        .map(|sub| {
            let mut v = Vec::new();
            vars(sub, &mut v);
            v.sort();
            v.dedup();
            (sub.get_name().to_string(), v)
        })
        .collect()
}

/// Finds the config file for this command line and makes its settings the
/// environment's where the environment has none. Runs before any thread starts.
/// A command line that does not parse is left to the real parse to report.
pub fn apply_file() -> anyhow::Result<()> {
    let Ok(m) = Cli::command().ignore_errors(true).try_get_matches() else {
        return Ok(());
    };
    let named = m.get_one::<PathBuf>("config");
    let Some(path) = config_file::locate(named.map(PathBuf::as_path))? else {
        return Ok(());
    };
    let command = m.subcommand_name().unwrap_or_default();
    let settings = config_file::settings(&path, command, &flags())?;
    config_file::apply(&settings);
    tracing::debug!(file = %path.display(), settings = settings.len(), "config file applied");
    Ok(())
}

pub fn run(command: ConfigCommand, named: Option<PathBuf>) -> anyhow::Result<()> {
    let ConfigCommand::Show(args) = command;
    let path = config_file::locate(named.as_deref())?;
    match &path {
        Some(p) => println!("# config file: {}", p.display()),
        None => println!(
            "# no config file: none named with --config, no ./{name}, no ~/.config/orderflow/{name}",
            name = config_file::FILE_NAME
        ),
    }
    let all = flags();
    if let Some(c) = &args.command {
        anyhow::ensure!(
            all.iter().any(|(n, _)| n == c),
            "no command {c:?}; commands: {}",
            all.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let root = Cli::command();
    for (name, vars) in &all {
        if args.command.as_ref().is_some_and(|c| c != name) || vars.is_empty() {
            continue;
        }
        let from_file: Vec<Setting> = match &path {
            Some(p) => config_file::settings(p, name, &all)
                .with_context(|| format!("reading the settings of {name}"))?,
            None => Vec::new(),
        };
        let sub = root.find_subcommand(name).expect("a listed command exists");
        println!("\n[{name}]");
        for var in vars {
            let key = var.trim_start_matches("ORDERFLOW_").to_lowercase();
            let (value, source) = if let Ok(v) = std::env::var(var) {
                (Some(v), "env")
            } else if let Some(s) = from_file.iter().find(|s| &s.var == var) {
                (Some(s.value.clone()), "file")
            } else {
                (default_of(sub, var), "default")
            };
            match value {
                Some(v) => println!(
                    "{key} = {}  # {source}",
                    toml::Value::String(config_file::mask(&v))
                ),
                None => println!("# {key}: not set"),
            }
        }
    }
    Ok(())
}

/// The default value of the flag that reads `var`, in `cmd` or its subcommands.
fn default_of(cmd: &clap::Command, var: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == var))
        .and_then(|a| {
            let d: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            (!d.is_empty()).then(|| d.join(";"))
        })
        .or_else(|| cmd.get_subcommands().find_map(|s| default_of(s, var)))
}
