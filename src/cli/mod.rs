//! Command-line interface (names and flags are relied on by people and acceptance tests).

mod config;
mod deadletter;
mod import;
mod output;
mod push;
mod serve;
mod stats;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "netwait",
    version,
    about = "Call-centre events in, the CUP contract's figures out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value = "./netwait-data")]
    data: PathBuf,
    /// Configuration file (TOML); default: DATA/netwait.toml when present.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import NDJSON canonical events (`-` = stdin) into the embedded store.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Files to import, in order.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Serve the gRPC API and push ingest on the embedded store.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (`:0` picks a free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Seconds open streams may go on after SIGTERM/SIGINT before they are closed.
        #[arg(long, default_value = "10", value_parser = seconds)]
        drain_timeout: Duration,
        /// Seconds a push stream may go without a message before it is ended.
        #[arg(long, default_value = "60", value_parser = positive_seconds)]
        idle_timeout: Duration,
    },
    /// Stream NDJSON files to a running server.
    Push {
        #[arg(long)]
        server: String,
        /// Lines per message at most (each message is committed before the next).
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Milliseconds a line may wait for its message to fill before it is sent anyway
        /// (so `tail -f F | netwait push -` commits as lines come).
        #[arg(long, default_value_t = 200)]
        flush_ms: u64,
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Query the figures.
    Stats {
        #[command(subcommand)]
        query: stats::Query,
    },
    /// List the dead letters (rejected input with its reason) of a data directory.
    Deadletter {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Import { store, files } => import::run(&store, &files),
        Command::Serve {
            store,
            listen,
            drain_timeout,
            idle_timeout,
        } => serve::run(
            &store,
            &listen,
            netwait_api::server::ServeOptions {
                drain_timeout,
                idle_timeout,
            },
        ),
        Command::Push {
            server,
            batch,
            flush_ms,
            files,
        } => push::run(
            &server,
            push::Cadence {
                batch,
                flush: Duration::from_millis(flush_ms),
            },
            &files,
        ),
        Command::Stats { query } => stats::run(query),
        Command::Deadletter { store, json } => deadletter::run(&store, json),
    }
}

/// A duration given in (possibly fractional) seconds, 0 or more.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more".to_owned())
}

/// [`seconds`], more than 0.
fn positive_seconds(text: &str) -> Result<Duration, String> {
    seconds(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected a number of seconds, more than 0".to_owned())
}

/// A multi-threaded runtime for the gRPC commands.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `host:port` or a full URL, as the endpoint URL tonic wants.
fn endpoint(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// A connected client channel to `server`, with `TCP_NODELAY` (small requests and
/// replies are not held back by Nagle's algorithm).
async fn connect(server: &str) -> anyhow::Result<tonic::transport::Channel> {
    use anyhow::Context;
    tonic::transport::Endpoint::from_shared(endpoint(server))
        .with_context(|| format!("server address {server}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))
}
