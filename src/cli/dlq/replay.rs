//! `orderflow dlq replay|jobs|cancel`: redrive jobs.

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{CatchUp, engine, json_lines, triage::SelectionArgs};
use crate::{
    cli::{
        args::{Connection, StoreArgs},
        process::SummaryFormat,
    },
    console::{Console, time},
    dlq::redrive::{Redrive, Request, check_rate, os_user},
    shutdown,
    store::dead_letters::{JobRow, JobState, LetterState},
};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Only these order ids
    #[arg(long, num_args = 1..)]
    pub ids: Vec<String>,
    /// At most this many dead letters, the oldest first
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: Option<i64>,
    /// Orders per second at most (0.1 to 1,000,000)
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Send every order to this topic instead of the one it came from
    #[arg(long)]
    pub to: Option<String>,
    /// Dead letters replayed this many times already go to the parking topic instead
    #[arg(long, env = "ORDERFLOW_MAX_REPLAYS", default_value_t = 3)]
    pub max_replays: u32,
    /// Print how many would go and a sample; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run a job that stopped (crashed, failed) to its end instead of starting one
    #[arg(long, conflicts_with_all = ["reason", "product", "since", "until", "ids", "limit", "rate", "to", "dry_run"])]
    pub resume: Option<i64>,
    /// The job at its end: text on stderr, or json on stdout (for scripts)
    #[arg(long, value_enum, default_value = "text")]
    pub summary: SummaryFormat,
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r = s
        .parse::<f64>()
        .map_err(|_| format!("{s:?} is no rate: give orders per second"))?;
    check_rate(r)
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let engine = engine(&args.conn, &args.store, CatchUp::Required).await?;
    let out = Console::new();
    let job = match args.resume {
        Some(id) => engine.job(id).await?,
        None => {
            let req = Request {
                selection: args
                    .select
                    .selection(Some(LetterState::Dead), args.ids.clone()),
                limit: args.limit,
                to: args.to.clone(),
                rate: args.rate,
                max_replays: args.max_replays,
                principal: os_user(),
            };
            let (count, sample) = engine.preview(&req, 5).await?;
            if count == 0 {
                out.line(format_args!(
                    "nothing to replay: no dead letter matches (`orderflow dlq list` shows what there is)"
                ));
                return Ok(());
            }
            if args.dry_run {
                out.line(format_args!(
                    "dry run: {count} dead letter(s) would be replayed (those replayed {} times already to {}); nothing was changed. The first of them:",
                    args.max_replays, args.conn.parking_topic
                ));
                super::triage::print_table(&out, &sample);
                return Ok(());
            }
            engine.start(&req).await?
        }
    };
    // On stderr, with the progress, so that stdout holds only the summary.
    eprintln!(
        "replay job {}: {} dead letter(s){}",
        job.id,
        job.selected,
        job.rate
            .map_or(String::new(), |r| format!(", at most {r}/s"))
    );
    let done = run(&engine, &job).await?;
    match args.summary {
        SummaryFormat::Text => eprintln!("{}", summary(&done)),
        SummaryFormat::Json => {
            println!("{}", serde_json::to_string(&done).expect("jobs serialize"))
        }
    }
    if done.state == JobState::Failed {
        anyhow::bail!(
            "{}",
            done.error.as_deref().unwrap_or("the replay job failed")
        );
    }
    Ok(())
}

/// Runs a job with a progress bar on a terminal, cancelled by Ctrl-C.
async fn run(engine: &Redrive, job: &JobRow) -> anyhow::Result<JobRow> {
    let bar = ProgressBar::with_draw_target(
        Some(job.selected.max(0) as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({elapsed})")
            .expect("the template is valid"),
    );
    let stop = shutdown::on_signals();
    let result = engine
        .run(job.id, &stop, |j| {
            bar.set_position((j.sent + j.parked + j.skipped + j.failed) as u64);
            bar.set_message(format!("sent {}, parked {}", j.sent, j.parked));
        })
        .await;
    bar.finish_and_clear();
    result.with_context(|| format!("replay job {}", job.id))
}

fn summary(j: &JobRow) -> String {
    let left = j.selected - j.sent - j.parked - j.skipped - j.failed;
    format!(
        "replay job {} {}: {} selected, {} sent, {} parked, {} skipped, {} failed{}",
        j.id,
        j.state.as_str(),
        j.selected,
        j.sent,
        j.parked,
        j.skipped,
        j.failed,
        if left > 0 {
            format!(", {left} not sent (still dead)")
        } else {
            String::new()
        }
    )
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let store = args.store.open_required().await?;
    let out = Console::new();
    let jobs = store.replay_jobs(args.limit).await?;
    if args.json {
        json_lines(&out, &jobs);
        return Ok(());
    }
    out.line(format_args!(
        "{:>5}  {:<9}  {:<12}  {:<24}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  SELECTION",
        "JOB", "STATE", "BY", "STARTED", "SELECTED", "SENT", "PARKED", "SKIPPED", "FAILED"
    ));
    for j in jobs {
        out.line(format_args!(
            "{:>5}  {:<9}  {:<12}  {:<24}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {}",
            j.id,
            j.state.as_str(),
            j.principal,
            time(j.created_ms),
            j.selected,
            j.sent,
            j.parked,
            j.skipped,
            j.failed,
            j.selection
        ));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub job: i64,
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let engine = engine(&args.conn, &args.store, CatchUp::Required).await?;
    let out = Console::new();
    let mut job = engine.cancel(args.job).await?;
    if job.state == JobState::Running {
        out.line(format_args!(
            "asked replay job {} to stop (it runs in {}); it stops after the orders it is sending",
            job.id, job.owner
        ));
        for _ in 0..60 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            job = engine.job(args.job).await?;
            if job.state != JobState::Running {
                break;
            }
        }
    }
    out.line(format_args!("{}", summary(&job)));
    Ok(())
}
