//! `orderflow serve`: the web console and its API.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Args;

use super::args::{Connection, StoreArgs};
use crate::{
    console::Console,
    dlq::redrive::Topics,
    metrics, shutdown,
    web::{self, App, Settings, Users},
};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the console (port 0: any free port, printed at start)
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The processor's consumer group, whose lag and state the dashboard shows
    #[arg(long, env = "ORDERFLOW_GROUP", default_value = "order-group")]
    pub group: String,
    #[command(flatten)]
    pub users: UsersFileArgs,
    /// Also serve Prometheus metrics on http://ADDR/metrics (the console's port
    /// serves them too) [default: off]
    #[arg(long, env = "ORDERFLOW_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// How long a sign-in lasts without use
    #[arg(long, env = "ORDERFLOW_SESSION_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct UsersFileArgs {
    /// The console's users (argon2 password hashes): `orderflow users add` writes it
    #[arg(
        long,
        env = "ORDERFLOW_USERS_FILE",
        default_value = ".orderflow/users.toml"
    )]
    pub users_file: PathBuf,
}

impl UsersFileArgs {
    /// The file's users and those of `ORDERFLOW_USERS`.
    pub fn load(&self) -> anyhow::Result<Users> {
        let env = std::env::var("ORDERFLOW_USERS").ok();
        Ok(Users::load(&self.users_file, env.as_deref())?)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let store = args.store.open_required().await?;
    let kafka = args.conn.kafka();
    let stop = shutdown::on_signals();
    let app = App::new(
        store,
        Settings {
            kafka,
            topics: topics(&args.conn),
            group: args.group.clone(),
            users: args.users.load()?,
            session_ttl: args.session_ttl,
        },
        stop.clone(),
    )
    .with_context(|| format!("users file {}", args.users.users_file.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let addr = listener.local_addr()?;
    Console::new().line(format_args!("console on http://{addr}/"));
    if let Some(l) = metrics_listener {
        eprintln!("metrics on http://{}/metrics", l.local_addr()?);
        tokio::spawn(metrics::serve(l, app.clone(), stop.clone()));
    }
    web::run(listener, app).await.context("serving the console")
}

pub(crate) fn topics(conn: &Connection) -> Topics {
    Topics {
        dlq: conn.dlq_topic.clone(),
        orders: conn.topic.clone(),
        parking: conn.parking_topic.clone(),
    }
}
