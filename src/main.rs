use clap::Parser;
use orderflow::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_env("ORDERFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    // Before the real parse and before any thread: the file's settings become
    // environment values, which the flags' own parsers then read.
    if let Err(e) = orderflow::cli::config::apply_file() {
        eprintln!("error: {}", describe(&e));
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    // The processor is the long-running service held to a memory budget; the
    // broker and the demo keep glibc's default for their many writer threads.
    if matches!(cli.command, Command::Process(_)) {
        orderflow::resources::limit_malloc_arenas();
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime failed: {e}"))
        .and_then(|runtime| runtime.block_on(orderflow::cli::run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: our errors often quote their source
/// in their own message already.
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
