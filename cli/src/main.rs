//! `auditstream`: the command-line program of the pipeline.
//!
//! Each subcommand lives in `cmd/<name>.rs` with its `Args` and `run`; this file parses the
//! command line, sets up logging, loads the configuration and maps errors to exit codes
//! (0 success, 1 runtime failure, 2 bad usage or configuration).

mod cmd;
mod config;
#[cfg(test)]
mod deploy_queries;
mod events;
mod shutdown;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Every event costs a few dozen small allocations in the router and the sinks; with mimalloc the
/// router drained about a fifth faster than with glibc's malloc, side by side
/// (docs/PERFORMANCE.md, "What the profiles showed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Carries audit events from services to SIEMs through Kafka: at least once, redacted, observable.
#[derive(Parser)]
#[command(name = "auditstream", version, propagate_version = true)]
#[command(
    after_help = "Configuration: a TOML file (--config) with [kafka], [topics], [router] and \
[[destinations]] sections; any field can be overridden by AUDITSTREAM_<SECTION>__<FIELD>, e.g. \
AUDITSTREAM_KAFKA__BROKERS=127.0.0.1:9092. See README.md, \"Configuration\"."
)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults and environment variables apply.
    #[arg(
        long,
        short,
        global = true,
        env = "AUDITSTREAM_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Bootstrap brokers (host:port,...), overriding kafka.brokers of the configuration.
    #[arg(
        long,
        global = true,
        env = "AUDITSTREAM_BROKERS",
        value_name = "HOST:PORT"
    )]
    brokers: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the pipeline's Kafka topics.
    #[command(subcommand)]
    Topics(cmd::topics::Command),
    /// Run a router: raw topics in, redacted v2 envelopes out.
    Router(cmd::router::Args),
    /// Run a sink worker of one destination.
    Sink(cmd::sink::Args),
    /// Publish raw events from a JSON-lines file or stdin, or generate synthetic ones.
    Produce(cmd::produce::Args),
    /// Deliver a destination's dead-lettered events again.
    Replay(cmd::replay::Args),
    /// Inspect dead-lettered records.
    #[command(subcommand)]
    Dlq(cmd::dlq::Command),
    /// Show every stage of the pipeline: workers, lag, rate, dead letters, last error.
    Status(cmd::status::Args),
    /// Export the lag of every consumer group of the pipeline as Prometheus metrics.
    LagExporter(cmd::lag_exporter::Args),
    /// Run a local HTTP(S) destination that prints what it receives (for demos and tests).
    Receiver(cmd::receiver::Args),
    /// Lifecycle events of an organisation or a stack, newest first (table, JSON or CSV).
    #[command(subcommand)]
    History(cmd::history::Command),
    /// Print normalized events as they arrive, as JSON lines (no consumer group, no commits).
    Tail(cmd::tail::Args),
    /// Compare published ids with received ids: published, delivered, missing, duplicates.
    Verify(cmd::verify::Args),
}

/// A failure the user fixes by changing the command line or the configuration (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}

/// How long the runtime waits for background work once the command is done. The readiness
/// check runs on a blocking thread and can be waiting up to 5 s for a broker that is down, which
/// a runtime dropped at the end of `main` would wait for; the answer no longer matters then.
const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for people: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Receiver(args) = cli.command {
        // The receiver is not part of the pipeline: it needs no configuration.
        return cmd::receiver::run(args).await;
    }
    if let Command::Verify(args) = cli.command {
        // Verification reads two files: it needs no configuration either.
        return cmd::verify::run(args);
    }
    let mut config = Config::load(cli.config.as_deref()).map_err(UsageError)?;
    if let Some(brokers) = cli.brokers {
        config.kafka.brokers = brokers;
    }
    match cli.command {
        Command::Topics(command) => cmd::topics::run(command, &config).await,
        Command::Router(args) => cmd::router::run(args, &config).await,
        Command::Sink(args) => cmd::sink::run(args, &config).await,
        Command::Produce(args) => cmd::produce::run(args, &config).await,
        Command::Dlq(command) => cmd::dlq::run(command, &config).await,
        Command::Replay(args) => cmd::replay::run(args, &config).await,
        Command::LagExporter(args) => cmd::lag_exporter::run(args, &config).await,
        Command::Status(args) => cmd::status::run(args, &config).await,
        Command::History(command) => cmd::history::run(command, &config).await,
        Command::Tail(args) => cmd::tail::run(args, &config).await,
        Command::Receiver(_) | Command::Verify(_) => unreachable!("handled above"),
    }
}
