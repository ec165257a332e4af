//! `orderflow users add|list|remove`: the console's users file.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::serve::UsersFileArgs;
use crate::{
    console::Console,
    web::{
        Role,
        auth::{UserEntry, UsersFile, hash_password, new_token},
    },
};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (or set a user's password and role); asks for the password
    Add(AddArgs),
    /// List the users of the file
    List(UsersFileArgs),
    /// Remove a user
    Remove {
        name: String,
        #[command(flatten)]
        file: UsersFileArgs,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    #[arg(long, value_enum)]
    pub role: Role,
    /// Read the password from the first line of stdin instead of asking
    #[arg(long)]
    pub password_stdin: bool,
    /// Also make a bearer token for the API (printed once, kept hashed)
    #[arg(long)]
    pub token: bool,
    /// Print the NAME:ROLE:HASH entry for ORDERFLOW_USERS instead of writing the file
    #[arg(long)]
    pub print: bool,
    #[command(flatten)]
    pub file: UsersFileArgs,
}

pub fn run(command: UsersCommand) -> anyhow::Result<()> {
    let out = Console::new();
    match command {
        UsersCommand::Add(a) => add(&out, a),
        UsersCommand::List(f) => {
            for u in UsersFile::read(&f.users_file)?.users {
                out.line(format_args!(
                    "{}\t{}\t{} token(s)",
                    u.name,
                    u.role.as_str(),
                    u.token_sha256.len()
                ));
            }
            Ok(())
        }
        UsersCommand::Remove { name, file } => {
            let mut users = UsersFile::read(&file.users_file)?;
            let before = users.users.len();
            users.users.retain(|u| u.name != name);
            anyhow::ensure!(
                users.users.len() < before,
                "no user {name:?} in {}",
                file.users_file.display()
            );
            users.write(&file.users_file)?;
            out.line(format_args!("removed {name}"));
            Ok(())
        }
    }
}

fn add(out: &Console, a: AddArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.name.is_empty() && !a.name.contains([':', ' ', '\t', '\n']),
        "a user name must be non-empty, without ':' or spaces"
    );
    let password = if a.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let p = rpassword::prompt_password(format!("password for {}: ", a.name))?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(p == again, "the passwords differ: nothing was written");
        p
    };
    anyhow::ensure!(
        password.chars().count() >= 8,
        "the password is too short: give at least 8 characters"
    );
    let hash = hash_password(&password)?;
    if a.print {
        out.line(format_args!("{}:{}:{hash}", a.name, a.role.as_str()));
        return Ok(());
    }
    let mut users = UsersFile::read(&a.file.users_file)?;
    let mut tokens = users
        .users
        .iter()
        .find(|u| u.name == a.name)
        .map(|u| u.token_sha256.clone())
        .unwrap_or_default();
    let token = a.token.then(new_token).map(|(token, hash)| {
        tokens.push(hash);
        token
    });
    users.upsert(UserEntry {
        name: a.name.clone(),
        role: a.role,
        password_hash: hash,
        token_sha256: tokens,
    });
    users.write(&a.file.users_file)?;
    out.line(format_args!(
        "{} is a{} {} in {}",
        a.name,
        if a.role == Role::Operator { "n" } else { "" },
        a.role.as_str(),
        a.file.users_file.display()
    ));
    if let Some(t) = token {
        out.line(format_args!(
            "API token (shown once; send it as Authorization: Bearer TOKEN): {t}"
        ));
    }
    Ok(())
}
