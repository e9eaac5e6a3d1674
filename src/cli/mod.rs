//! Command-line interface (names and flags are relied on by people and acceptance tests).

mod check;
mod config;
mod deadletter;
mod decoded_inputs;
mod import;
mod inputs;
mod interrupt;
mod log_check;
mod number_format;
mod output;
mod progress;
mod push;
mod repair;
mod serve;
mod stats;
mod terminal_text;
mod wall_time;
mod watch;

pub use interrupt::{EXIT_STATUS as INTERRUPTED_STATUS, Interrupted};

use clap::{ArgAction, Args, Parser, Subcommand};
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
    /// More log on stderr: -v info, -vv debug (default: warnings and errors; `serve`:
    /// info). RUST_LOG, when set, wins.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

impl Cli {
    /// The log filter: RUST_LOG when set, else by `-v` count.
    pub fn log_filter(&self) -> tracing_subscriber::EnvFilter {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
            return filter;
        }
        // A server's log is its operator's view: it says it serves and how it stops.
        let quiet = if matches!(self.command, Command::Serve { .. }) {
            "info"
        } else {
            "warn"
        };
        tracing_subscriber::EnvFilter::new(match self.verbose {
            0 => quiet,
            1 => "info",
            _ => "debug",
        })
    }
}

/// An error and its causes on one line, each said once (a cause whose text its parent
/// already holds, as in "tcp connect error: tcp connect error", is left out).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value = "./netwait-data")]
    data: PathBuf,
    /// Configuration file (TOML); default: DATA/netwait.toml when present.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The command's `--calendar`, when it has one (wins over the configuration).
    #[arg(skip)]
    calendar: Option<config::CalendarMode>,
}

/// `--calendar`: which hours count as service time.
#[derive(Args, Debug, Clone, Default)]
pub struct CalendarArg {
    /// Service calendar: `cup` (the contract's, spec §3) or `24x7` (every hour counts,
    /// no holidays: for data not from an Italian CUP). Default: the configuration's
    /// `[calendar] mode`, else `cup`.
    #[arg(long, value_name = "MODE", value_parser = config::CalendarMode::parse_arg)]
    calendar: Option<config::CalendarMode>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import NDJSON canonical events (`-` = stdin) into the embedded store.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Files to import, in order (`-` = stdin). All are opened and checked first.
        #[arg(required = true)]
        files: Vec<String>,
        /// Exit non-zero when any line was rejected (the valid ones are still imported).
        #[arg(long)]
        strict: bool,
        /// Input format: ndjson, queue_log, queue_log_csv or cdr (NDJSON or CSV call
        /// records). Default: guessed from each file's first row (stdin: ndjson).
        #[arg(long, value_parser = import::format_arg)]
        format: Option<netwait_ingest::format::Format>,
        #[command(flatten)]
        calendar: CalendarArg,
        /// Time zone of local date-times in the input (the queue_log CSV export).
        /// Default: the configuration's `[queue_log] timezone`, else Europe/Rome.
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
    },
    /// Serve the gRPC API and push ingest on the embedded store.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        calendar: CalendarArg,
        /// Address to listen on for gRPC (`:0` picks a free port; the line printed says which).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Seconds open streams may go on after SIGTERM/SIGINT before they are closed.
        #[arg(long, default_value = "10", value_parser = seconds)]
        drain_timeout: Duration,
        /// Seconds a push stream may go without a message before it is ended.
        #[arg(long, default_value = "60", value_parser = positive_seconds)]
        idle_timeout: Duration,
        #[command(flatten)]
        http: serve::HttpArgs,
    },
    /// Stream NDJSON files to a running server.
    Push {
        /// gRPC address of a running `netwait serve` (http://host:port or host:port).
        #[arg(long)]
        server: String,
        /// Lines per message at most (each message is committed before the next).
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Milliseconds a line may wait for its message to fill before it is sent anyway
        /// (so `tail -f F | netwait push -` commits as lines come).
        #[arg(long, default_value_t = 200)]
        flush_ms: u64,
        /// Files to push, in order (`-` = stdin). All are opened and checked first.
        #[arg(required = true)]
        files: Vec<String>,
        /// Exit non-zero when any line was rejected (the valid ones are still committed).
        #[arg(long)]
        strict: bool,
    },
    /// Watch a server's live queue: waiting calls, operators against the plan, SLA
    /// today and month to date, open alerts (a screen updated in place; one line per
    /// update when not on a terminal).
    Watch {
        /// gRPC address of a running `netwait serve` (http://host:port or host:port).
        #[arg(long)]
        server: String,
        /// Only this service line (default: every line).
        #[arg(long)]
        line: Option<String>,
        /// One line per update even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Query the figures.
    Stats {
        #[command(subcommand)]
        query: stats::Query,
    },
    /// List the dead letters (rejected input with its reason) of a data directory, or
    /// count them per reason and source.
    Deadletter {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        query: deadletter::Query,
    },
    /// Verify the whole log of a data directory; report damage with byte positions
    /// (exit 1 when damaged). Writes nothing.
    Check {
        /// Data directory of the embedded store.
        #[arg(long, default_value = "./netwait-data")]
        data: PathBuf,
    },
    /// Copy every intact commit of a (damaged) data directory into a new one, saying what
    /// was lost. The original is left as it is.
    Repair {
        /// Data directory to salvage.
        #[arg(long, default_value = "./netwait-data")]
        data: PathBuf,
        /// New data directory (absent or empty).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Import {
            mut store,
            files,
            strict,
            format,
            calendar,
            timezone,
        } => {
            store.calendar = calendar.calendar;
            import::run(&store, &files, strict, format, timezone.as_deref())
        }
        Command::Serve {
            store,
            calendar,
            listen,
            drain_timeout,
            idle_timeout,
            http,
        } => serve::run(
            &StoreArgs {
                calendar: calendar.calendar,
                ..store
            },
            &listen,
            netwait_api::server::ServeOptions {
                drain_timeout,
                idle_timeout,
            },
            &http,
        ),
        Command::Push {
            server,
            batch,
            flush_ms,
            files,
            strict,
        } => push::run(
            &server,
            push::Cadence {
                batch,
                flush: Duration::from_millis(flush_ms),
            },
            &files,
            strict,
        ),
        Command::Watch {
            server,
            line,
            plain,
        } => watch::run(&server, line, plain),
        Command::Stats { query } => stats::run(query),
        Command::Deadletter { store, query } => deadletter::run(&store, &query),
        Command::Check { data } => check::run(&data),
        Command::Repair { data, out } => repair::run(&data, &out),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command, down the whole tree, says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str())
                {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn error_chain_says_each_cause_once() {
        let e = anyhow::anyhow!("tcp connect error")
            .context("tcp connect error")
            .context("connecting to 127.0.0.1:9");
        assert_eq!(
            error_chain(&e),
            "connecting to 127.0.0.1:9: tcp connect error"
        );
        let e = anyhow::anyhow!("File exists (os error 17)")
            .context("opening x: File exists (os error 17)");
        assert_eq!(error_chain(&e), "opening x: File exists (os error 17)");
    }
}
