//! `orderflow dlq list|reasons`: dead letters as the store holds them.

use clap::Args;

use super::{CatchUp, engine, json_lines};
use crate::{
    cli::args::{Connection, StoreArgs},
    console::{Console, parse_time, time},
    store::dead_letters::{LetterState, Selection, StoredLetter},
};

/// Which dead letters a command takes.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only reasons that contain this text (as printed by `dlq reasons`, or in part)
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub product: Option<String>,
    /// Dead-lettered at or after: a time (2026-12-01T10:00:00Z) or a duration ago (2h)
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Dead-lettered before: a time or a duration ago
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
}

impl SelectionArgs {
    pub fn selection(&self, state: Option<LetterState>, ids: Vec<String>) -> Selection {
        Selection {
            reason: self.reason.clone(),
            group: None,
            product: self.product.clone(),
            since_ms: self.since,
            until_ms: self.until,
            state,
            ids,
        }
    }
}

pub(super) fn parse_state(s: &str) -> Result<LetterState, String> {
    LetterState::parse(s)
        .ok_or_else(|| format!("unknown status {s:?}: use dead, replayed or parked"))
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: SelectionArgs,
    /// dead, replayed or parked
    #[arg(long, value_parser = parse_state)]
    pub status: Option<LetterState>,
    /// The next page: dead letters older than this id
    #[arg(long)]
    pub after: Option<i64>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let engine = engine(&args.conn, &args.store, CatchUp::BestEffort).await?;
    let selection = args.select.selection(args.status, Vec::new());
    let letters = engine
        .store()
        .dead_letters(&selection, args.after, args.limit)
        .await?;
    let out = Console::new();
    if args.json {
        json_lines(&out, &letters);
    } else {
        print_table(&out, &letters);
    }
    if let Some(last) = letters
        .last()
        .filter(|_| letters.len() as i64 == args.limit)
    {
        eprintln!("more: add --after {}", last.id);
    }
    Ok(())
}

pub(super) fn print_table(out: &Console, letters: &[StoredLetter]) {
    out.line(format_args!(
        "{:>6}  {:<8}  {:<36}  {:<10}  {:<24}  {:>2}  {:<22}  REASON",
        "ID", "STATE", "ORDER", "PRODUCT", "DEAD", "RE", "SOURCE"
    ));
    for l in letters {
        let d = &l.letter;
        out.line(format_args!(
            "{:>6}  {:<8}  {:<36}  {:<10}  {:<24}  {:>2}  {:<22}  {}",
            l.id,
            l.state.as_str(),
            d.order_id.as_deref().unwrap_or("(names no order)"),
            d.product.as_deref().unwrap_or("-"),
            time(d.dead_ms),
            d.replays,
            d.source
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string),
            d.reason
        ));
    }
}

#[derive(Debug, Args)]
pub struct ReasonsArgs {
    #[command(flatten)]
    pub select: SelectionArgs,
    /// dead (default), replayed or parked
    #[arg(long, value_parser = parse_state, default_value = "dead")]
    pub status: LetterState,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn reasons(args: ReasonsArgs) -> anyhow::Result<()> {
    let engine = engine(&args.conn, &args.store, CatchUp::BestEffort).await?;
    let selection = args.select.selection(Some(args.status), Vec::new());
    let out = Console::new();
    out.line(format_args!(
        "{:>7}  {:<24}  {:<24}  {:<36}  REASON",
        "COUNT", "FIRST", "LAST", "SAMPLE"
    ));
    for r in engine
        .store()
        .dead_letter_reasons(&selection, args.limit)
        .await?
    {
        out.line(format_args!(
            "{:>7}  {:<24}  {:<24}  {:<36}  {}",
            r.count,
            time(r.first_ms),
            time(r.last_ms),
            r.sample_id.as_deref().unwrap_or("(names no order)"),
            r.reason
        ));
    }
    Ok(())
}
