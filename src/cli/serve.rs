//! `netwait serve`: the gRPC API and push ingest on the embedded store, and (with
//! `--http-listen`) the HTTP push and `/metrics` on a second listener; the followed
//! logs of `[[sources]]` driven inside the process, into the same store.

use super::StoreArgs;
use super::config::{SourceSpec, Use, open_engine};
use anyhow::Context;
use netwait_aggregator::engine::CheckpointMoment;
use netwait_api::auth::Tokens;
use netwait_api::http::{DEFAULT_MAX_BODY, HttpOptions};
use netwait_api::server::{DEFAULT_MAX_STREAMS, Security, ServeOptions};
use netwait_api::shutdown::{Phase, Stopped, serve_until_signalled};
use netwait_api::state::AppState;
use netwait_api::tls::TlsIdentity;
use netwait_ingest::decoded::DecodeSettings;
use netwait_ingest::kafka::position_file::PositionFile;
use netwait_ingest::kafka::producer::EventProducer;
use netwait_ingest::kafka::tail_target::KafkaTarget;
use netwait_ingest::pipeline::{PipelineOptions, Target, drive};
use netwait_ingest::tail::TailSource;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The environment variable holding the HTTP bearer token (`--http-token-file` wins).
const TOKEN_ENV: &str = "NETWAIT_HTTP_TOKEN";

/// How long open HTTP requests may go on once the gRPC server has stopped.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// How long the followed logs may take to commit what they read once stopped.
const SOURCES_GRACE: Duration = Duration::from_secs(10);

/// The HTTP listener's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP listener (push `POST /v1/events`, `POST /v1/cdrs`,
    /// `GET /v1/openapi.json`, `GET /metrics`); off unless given. `:0` picks a free
    /// port: the line `netwait http listening on ADDR` says which.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Largest HTTP request body in bytes, before and after gzip decompression (413 above).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY, value_parser = positive_bytes)]
    http_max_body: usize,
    /// File holding the bearer token every HTTP request must carry (`Authorization:
    /// Bearer <token>`); else the NETWAIT_HTTP_TOKEN environment variable; else none.
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,
}

/// The ingest role's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct IngestRoleArgs {
    /// The ingest role: pushed events (gRPC push, HTTP `POST /v1/events`) and the
    /// followed logs of `[[sources]]` are published to Kafka at these brokers
    /// (`host:port[,...]`), one record a line keyed by call id, and a push is answered
    /// once the broker has every record; `netwait aggregate` consumes them. Queries still
    /// read `--data`.
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    kafka: Option<String>,
    /// The topic pushed events are published to (with --kafka); it must exist.
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
    /// With --kafka: a push the broker has not acknowledged within this many seconds (a
    /// broker down or restarting) is refused, gRPC `UNAVAILABLE` / HTTP 503, to be pushed
    /// again (event ids dedupe what the broker had of it).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = super::positive_seconds)]
    kafka_timeout: std::time::Duration,
}

fn positive_bytes(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| "expected a number of bytes, more than 0".to_owned())
}

impl HttpArgs {
    /// The options, reading the token (surrounding whitespace, such as the file's line
    /// end, is not part of it).
    fn options(&self) -> anyhow::Result<HttpOptions> {
        let token = match &self.http_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --http-token-file {}", path.display()))?,
            ),
            None => std::env::var(TOKEN_ENV).ok(),
        };
        let token = match token.as_deref().map(str::trim) {
            Some("") => anyhow::bail!(
                "the HTTP token is empty ({})",
                self.http_token_file
                    .as_ref()
                    .map_or_else(|| TOKEN_ENV.to_owned(), |p| p.display().to_string())
            ),
            Some(t) => Some(t.to_owned()),
            None => None,
        };
        Ok(HttpOptions {
            max_body: self.http_max_body,
            token,
            security: Default::default(),
        })
    }
}

/// TLS, tokens and limits from the configuration.
pub(super) fn security(store: &StoreArgs) -> anyhow::Result<Security> {
    let s = super::config::load(store)?.server;
    let tls = match &s.tls {
        Some((cert, key)) => Some(TlsIdentity::load(cert, key).context("[tls]")?),
        None => None,
    };
    let tokens = Tokens::from_hashes(&s.push_hashes, &s.read_hashes).context("[auth]")?;
    Ok(Security {
        tls,
        tokens: std::sync::Arc::new(tokens),
        max_concurrent_streams: s.max_concurrent_streams.unwrap_or(DEFAULT_MAX_STREAMS),
    })
}

pub fn run(
    store: &StoreArgs,
    listen: &str,
    mut options: ServeOptions,
    http: &HttpArgs,
    role: &IngestRoleArgs,
) -> anyhow::Result<()> {
    // Bound first: a port in use fails here, before any store is opened or created.
    let listener = bind(listen)?;
    if let Some(target) = &store.clickhouse {
        anyhow::ensure!(
            http.http_listen.is_none() && role.kafka.is_none(),
            "serve --clickhouse is the api role (the Stats service): --http-listen and --kafka go with --data"
        );
        return api_role(store, listener, target.clone());
    }
    let http_listener = http.http_listen.as_deref().map(bind).transpose()?;
    let mut http_options = http.options()?;
    options.security = security(store)?;
    http_options.security = options.security.clone();
    let settings = super::config::load(store)?;
    let (live_rules, decode, source_specs) = (settings.live, settings.decode, settings.sources);
    // The ingest role's producer, once the brokers said they have the topic.
    let forward = match (&role.kafka, &role.topic) {
        (Some(brokers), Some(topic)) => Some((
            super::tail::producer(brokers, topic, role.kafka_timeout)?,
            topic,
        )),
        _ => None,
    };
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    engine.checkpoint_at(CheckpointMoment::Opened);
    // A server answers many queries: each reads the cells of its period (those the
    // checkpoint keeps, else built now and kept at once). The call states stay in the
    // checkpoint until a query or a push reads them (checked whole when it was opened).
    engine.index_periods();
    engine.checkpoint_at(CheckpointMoment::Indexed);
    // Opened from the checkpoint, the log before it was not read: check it all, aside
    // (once the states and cells are built: the check takes a core of its own).
    super::log_check::spawn(&store.data);
    // The live queue and its alerts on the wall clock (the wallboard, `Live.WatchQueue`).
    let mut state = AppState::with_live(
        engine,
        pseudo,
        live_rules,
        std::sync::Arc::new(netwait_api::live::WallClock),
    );
    // In the ingest role the followed logs go to the topic too, their positions kept in
    // a file of the topic's (the store holds only their rejected lines).
    let mut publish_sources = None;
    if let Some((producer, topic)) = forward {
        tracing::info!(brokers = role.kafka.as_deref().unwrap_or_default(), %topic, "ingest role: pushes and followed logs are published to Kafka");
        if !source_specs.is_empty() {
            let positions = PositionFile::open(&store.data, topic)?;
            publish_sources = Some((Arc::clone(&producer), Arc::new(positions)));
        }
        state = state.forwarding_to(producer);
    }
    let sources = Driven::start(&source_specs, &state, &decode, publish_sources)?;
    let rt = super::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let mut signals = signals()?;
        // A line on stdout that scripts and tests wait for (the port when `:0` was asked).
        println!("netwait listening on {addr}");
        let http_server = match http_listener {
            Some(l) => {
                let l = tokio::net::TcpListener::from_std(l)?;
                let http_addr = l.local_addr()?;
                println!("netwait http listening on {http_addr}");
                tracing::info!(
                    addr = %http_addr,
                    token = http_options.token.is_some(),
                    tls = http_options.security.tls.is_some(),
                    "serving HTTP"
                );
                let shutdown = state.shutdown.clone();
                Some(tokio::spawn(netwait_api::http::serve(
                    l,
                    state.clone(),
                    http_options,
                    async move { shutdown.reached(Phase::Draining).await },
                )))
            }
            None => None,
        };
        std::io::stdout().flush()?;
        tracing::info!(
            %addr,
            data = %store.data.display(),
            tls = options.security.tls.is_some(),
            tokens = options.security.tokens.enabled(),
            "serving"
        );
        let stopped = serve_until_signalled(listener, state.clone(), options, &mut signals).await?;
        // Requests still open on the HTTP listener get a moment to finish (each is
        // answered only once durable); then they are dropped, unacknowledged.
        if let Some(task) = http_server {
            match tokio::time::timeout(HTTP_GRACE, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP listener failed"),
                Ok(Err(e)) => tracing::error!(error = %e, "HTTP listener task failed"),
                Err(_) => tracing::warn!("HTTP requests still open: stopping anyway"),
            }
        }
        // The followed logs stop: the batch in hand is committed, its position with it.
        if tokio::time::timeout(SOURCES_GRACE, tokio::task::spawn_blocking(move || sources.stop()))
            .await
            .is_err()
        {
            tracing::warn!("a followed log is still committing: stopping anyway");
        }
        if stopped == Stopped::Forced {
            tracing::warn!("stopped at once: no checkpoint (the next start replays the log)");
            return Ok(());
        }
        tracing::info!("shutting down: writing a checkpoint");
        let checkpoint = state.blocking(|e| {
            e.checkpoint_at(CheckpointMoment::Stopping);
            Ok(())
        });
        // A second signal still stops at once while the checkpoint is written (it is
        // replaced by rename: an unfinished one is never read).
        tokio::select! {
            done = checkpoint => done.map_err(|s| anyhow::anyhow!("shutting down: {}", s.message())),
            Some(()) = signals.recv() => {
                tracing::warn!("stopped at once: checkpoint not finished (the next start replays the log)");
                Ok(())
            }
        }
    });
    // Work still running (a commit of a stream stopped at once) is not waited for: what
    // it did not acknowledge, the next open cuts off.
    rt.shutdown_background();
    served
}

/// The `[[sources]]` the server drives, each on a thread of its own through the
/// pipeline's driver (as `netwait tail` does) into the server's writer, between the
/// pushes' work; in the ingest role to the topic (as `netwait tail --kafka` does).
struct Driven {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Driven {
    fn start(
        specs: &[SourceSpec],
        state: &AppState,
        decode: &DecodeSettings,
        publish: Option<(Arc<EventProducer>, Arc<PositionFile>)>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut source = TailSource::new(&spec.path, spec.format)
                .with_context(|| format!("[[sources]] {}", spec.path.display()))?;
            let name = source.name_for_humans().to_owned();
            tracing::info!(file = %name, format = spec.format.as_str(), "following");
            let pseudo = Arc::clone(&state.pseudo);
            let mut target: Box<dyn Target + Send> = match &publish {
                Some((producer, positions)) => Box::new(
                    KafkaTarget::new(
                        Arc::clone(producer),
                        Arc::clone(positions),
                        state.clone(),
                        Arc::clone(&stop),
                    )
                    .context("starting a followed log's Kafka delivery")?,
                ),
                None => Box::new(state.clone()),
            };
            let (stop, decode) = (Arc::clone(&stop), decode.clone());
            let thread = std::thread::Builder::new()
                .name("netwait-tail".into())
                .spawn(move || {
                    let driven = drive(
                        &mut source,
                        &mut *target,
                        &pseudo,
                        &decode,
                        PipelineOptions::long_running(),
                        Some(&stop),
                        &mut |_| {},
                    );
                    match driven {
                        Ok(sum) => tracing::info!(
                            file = %name,
                            accepted = sum.accepted,
                            duplicate = sum.duplicate,
                            rejected = sum.rejected,
                            "followed log stopped"
                        ),
                        Err(e) => {
                            tracing::error!(file = %name, error = %e, "followed log failed: no longer followed")
                        }
                    }
                })
                .context("starting a followed log's thread")?;
            threads.push(thread);
        }
        Ok(Self { stop, threads })
    }

    /// Stops every source once its batch in hand is committed.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// `serve --clickhouse`: the Stats service on a ClickHouse database's SQL (the same
/// service as `stats --clickhouse`), until SIGTERM/SIGINT.
fn api_role(
    store: &StoreArgs,
    listener: std::net::TcpListener,
    target: netwait_clickhouse::Target,
) -> anyhow::Result<()> {
    let security = security(store)?;
    let settings = super::config::load(store)?;
    let opening = format!(
        "opening the ClickHouse database {} at {}",
        target.database, target.url
    );
    // Before any runtime of ours: the client blocks on a runtime of its own.
    let answers = netwait_clickhouse::answers::SqlAnswers::open(target.clone(), settings.metrics)
        .context(opening)?;
    let stats = netwait_api::stats::StatsService::clickhouse(answers);
    let rt = super::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let mut signals = signals()?;
        println!("netwait listening on {addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, clickhouse = %target.url, database = %target.database, "serving the api role");
        netwait_api::server::serve_stats(listener, stats, security, async move {
            signals.recv().await;
        })
        .await?;
        anyhow::Ok(())
    });
    rt.shutdown_background();
    served
}

/// A bound, non-blocking listener.
pub(super) fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {listen}"))
}

/// A message for each SIGINT or SIGTERM.
fn signals() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
