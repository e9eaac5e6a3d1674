//! Command-line interface (names and flags are relied on by people and acceptance tests).

mod aggregate;
mod check;
mod clickhouse;
mod config;
mod deadletter;
mod decoded_inputs;
mod deployment;
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
mod tail;
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
    /// Log lines as `text` or `json` (one JSON object a line, for log collectors).
    /// Default: the configuration's `[log] format`, else text.
    #[arg(long, global = true, value_name = "text|json", env = "NETWAIT_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// The command was given `--data` on its command line (not its default).
    #[arg(skip)]
    data_given: bool,
}

impl Cli {
    /// The command line, parsed, knowing whether `--data` was on it (the environment
    /// does not move such a command to another store: see `deployment`).
    pub fn from_command_line() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        // At any depth (`deadletter replay --data D`).
        let mut at = matches.subcommand();
        while let Some((_, sub)) = at {
            cli.data_given |= matches!(sub.try_get_raw("data"), Ok(Some(_)))
                && sub.value_source("data") == Some(clap::parser::ValueSource::CommandLine);
            at = sub.subcommand();
        }
        cli
    }

    /// The `[log]` section of the command's configuration, when it has one.
    fn log_config(&self) -> Option<config::Log> {
        let store = match &self.command {
            Command::Import { store, .. }
            | Command::Serve { store, .. }
            | Command::Aggregate { store, .. }
            | Command::Deadletter {
                action:
                    Some(
                        deadletter::Action::List { store, .. }
                        | deadletter::Action::Replay { store, .. },
                    ),
                ..
            }
            | Command::Deadletter { store, .. }
            | Command::Tail { store, .. } => store,
            _ => return None,
        };
        config::log_settings(store)
    }

    /// Whether log lines are JSON objects.
    pub fn json_logs(&self) -> bool {
        let configured = || self.log_config().and_then(|l| l.format);
        self.log_format.clone().or_else(configured).as_deref() == Some("json")
    }

    /// The log filter: RUST_LOG when set, else by `-v` count, else the configuration's
    /// `[log] level`.
    pub fn log_filter(&self) -> tracing_subscriber::EnvFilter {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
            return filter;
        }
        if self.verbose == 0
            && let Some(level) = self.log_config().and_then(|l| l.level)
            && let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&level)
        {
            return filter;
        }
        // A server's log is its operator's view: it says it serves and how it stops.
        let quiet = if matches!(
            self.command,
            Command::Serve { .. } | Command::Aggregate { .. }
        ) {
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
    /// The ClickHouse store instead of the embedded one, when the command's flags, the
    /// environment or the configuration choose it (see `deployment`).
    #[arg(skip)]
    clickhouse: Option<netwait_clickhouse::Target>,
    /// Where a writer on the ClickHouse store keeps its checkpoints.
    #[arg(skip)]
    checkpoints: Option<clickhouse::Checkpoints>,
}

impl StoreArgs {
    /// These, on the store that `flags`, the environment and the configuration choose
    /// (`data_given`: --data was on the command line).
    fn on_store(
        mut self,
        flags: &clickhouse::ClickHouseArgs,
        data_given: bool,
    ) -> anyhow::Result<Self> {
        let file = deployment::Deployment::read(config::path(&self).as_deref())?;
        self.clickhouse = flags.resolve(&file, data_given)?;
        self.checkpoints = flags.checkpoints(file.state_dir());
        Ok(self)
    }
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
enum TokenAction {
    /// Reads a token on stdin, prints its hash for `[auth] push` or `read`.
    Hash,
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
        #[command(flatten)]
        clickhouse: clickhouse::ClickHouseArgs,
    },
    /// Create or upgrade the schema of a ClickHouse database (versioned migrations).
    Migrate {
        #[command(flatten)]
        clickhouse: clickhouse::ClickHouseArgs,
        /// Print every statement of every migration instead (nothing is sent).
        #[arg(long)]
        print_sql: bool,
    },
    /// Serve the gRPC API and push ingest on the embedded store.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        calendar: CalendarArg,
        /// Address to listen on for gRPC (`:0` picks a free port; the line printed says
        /// which) [default: 127.0.0.1:50051; none with `--role aggregator`].
        #[arg(long)]
        listen: Option<String>,
        /// Seconds open streams may go on after SIGTERM/SIGINT before they are closed.
        #[arg(long, default_value = "10", value_parser = seconds)]
        drain_timeout: Duration,
        /// Seconds a push stream may go without a message before it is ended.
        #[arg(long, default_value = "60", value_parser = positive_seconds)]
        idle_timeout: Duration,
        #[command(flatten)]
        http: serve::HttpArgs,
        #[command(flatten)]
        role: serve::IngestRoleArgs,
        /// The api role: the gRPC Stats service answered from this ClickHouse database
        /// (no push; `netwait aggregate --clickhouse` fills it); with --kafka and
        /// --topic, also the live state of the followed topic.
        #[command(flatten)]
        clickhouse: clickhouse::ClickHouseArgs,
    },
    /// The aggregator role: consume Kafka topics (a consumer group) into the embedded
    /// store, or ClickHouse with --clickhouse; offsets are committed once the events are
    /// durable.
    Aggregate {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        kafka: aggregate::KafkaArgs,
        #[command(flatten)]
        clickhouse: clickhouse::ClickHouseArgs,
    },
    /// Stream NDJSON files to a running server.
    Push {
        /// gRPC address of a running `netwait serve` (http://host:port or host:port).
        #[arg(long)]
        server: String,
        #[command(flatten)]
        client: ClientArgs,
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
    /// Bearer tokens: `netwait token hash` prints the hash to configure for a token
    /// (read from stdin, so it is not left in the shell's history).
    Token {
        #[command(subcommand)]
        action: TokenAction,
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
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Query the figures.
    Stats {
        #[command(subcommand)]
        query: stats::Query,
    },
    /// The dead letters (rejected input with its reason) of a store: `list` them (the
    /// default) or count them per reason and source; `replay` them after a fix.
    #[command(args_conflicts_with_subcommands = true)]
    Deadletter {
        #[command(subcommand)]
        action: Option<deadletter::Action>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        clickhouse: Box<clickhouse::ClickHouseArgs>,
        #[command(flatten)]
        query: Box<deadletter::Query>,
    },
    /// Verify the whole log of a data directory; report damage with byte positions
    /// (exit 1 when damaged). Writes nothing.
    Check {
        /// Data directory of the embedded store.
        #[arg(long, default_value = "./netwait-data")]
        data: PathBuf,
    },
    /// Follow a growing log like `tail -F` (across logrotate's rename + new file and
    /// copytruncate), committing its events as they come (within a second) with the
    /// position read, so that a restart neither skips nor double-counts; with `--kafka`,
    /// publishing them to a topic instead. SIGINT/SIGTERM: the lines read are committed,
    /// then it exits.
    Tail {
        #[command(flatten)]
        store: StoreArgs,
        /// Format of the log: queue_log (or ndjson).
        #[arg(value_parser = import::format_arg)]
        format: netwait_ingest::format::Format,
        /// The file to follow (it need not exist yet).
        path: PathBuf,
        #[command(flatten)]
        calendar: CalendarArg,
        #[command(flatten)]
        kafka: tail::TailKafkaArgs,
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
    let data_given = cli.data_given;
    match cli.command {
        Command::Import {
            mut store,
            files,
            strict,
            format,
            calendar,
            timezone,
            clickhouse,
        } => {
            store.calendar = calendar.calendar;
            let store = store.on_store(&clickhouse, data_given)?;
            import::run(&store, &files, strict, format, timezone.as_deref())
        }
        Command::Tail {
            mut store,
            format,
            path,
            calendar,
            kafka,
        } => {
            store.calendar = calendar.calendar;
            tail::run(&store, format, &path, &kafka)
        }
        Command::Migrate {
            clickhouse,
            print_sql,
        } => clickhouse::migrate(&clickhouse, print_sql),
        Command::Serve {
            store,
            calendar,
            listen,
            drain_timeout,
            idle_timeout,
            http,
            role,
            clickhouse,
        } => serve::run(
            &StoreArgs {
                calendar: calendar.calendar,
                ..store
            }
            .on_store(&clickhouse, data_given)?,
            listen.as_deref(),
            netwait_api::server::ServeOptions {
                drain_timeout,
                idle_timeout,
                security: Default::default(),
            },
            &http,
            &role,
        ),
        Command::Aggregate {
            store,
            kafka,
            clickhouse,
        } => aggregate::run(&store.on_store(&clickhouse, data_given)?, &kafka),
        Command::Push {
            server,
            client,
            batch,
            flush_ms,
            files,
            strict,
        } => push::run(
            &server,
            &client,
            push::Cadence {
                batch,
                flush: Duration::from_millis(flush_ms),
            },
            &files,
            strict,
        ),
        Command::Token {
            action: TokenAction::Hash,
        } => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            if token.trim().is_empty() {
                anyhow::bail!("no token on stdin");
            }
            println!("{}", netwait_api::auth::hash_hex(&token));
            Ok(())
        }
        Command::Watch {
            server,
            line,
            plain,
            client,
        } => watch::run(&server, &client, line, plain),
        Command::Stats { query } => stats::run(query),
        Command::Deadletter {
            action,
            store,
            clickhouse,
            query,
        } => match action {
            None => deadletter::list(&store.on_store(&clickhouse, data_given)?, &query),
            Some(deadletter::Action::List {
                store,
                clickhouse,
                query,
            }) => deadletter::list(&store.on_store(&clickhouse, data_given)?, &query),
            Some(deadletter::Action::Replay {
                store,
                clickhouse,
                replay,
            }) => deadletter::replay::run(&store.on_store(&clickhouse, data_given)?, &replay),
        },
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

/// How a client reaches a server: TLS trust and a bearer token.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// PEM certificate of the CA (or the self-signed certificate) the server's TLS
    /// certificate is checked against; turns TLS on (`https://` does too).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Bearer token sent with every call (a `read` token for stats, `push` for push).
    #[arg(long, env = "NETWAIT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<token>)")
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A client channel that sends the token.
pub type Client =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// A connected client channel to `server`, with `TCP_NODELAY` (small requests and
/// replies are not held back by Nagle's algorithm), TLS when asked, and the token.
async fn connect(server: &str, client: &ClientArgs) -> anyhow::Result<Client> {
    use anyhow::Context;
    let mut url = endpoint(server);
    if client.ca_cert.is_some() && url.starts_with("http://") {
        url = url.replacen("http://", "https://", 1);
    }
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("server address {server}"))?
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &client.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-cert {}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).context("TLS configuration")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let token = match client.token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("--token / NETWAIT_TOKEN: not a valid header value")?,
        ),
    };
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        Bearer(token),
    ))
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
