//! `netwait serve`: the gRPC API and push ingest on the embedded store, and (with
//! `--http-listen`) the HTTP push and `/metrics` on a second listener; the followed
//! logs of `[[sources]]` driven inside the process, into the same store.

use super::StoreArgs;
use super::aggregate::KafkaArgs;
use super::config::{SourceSpec, Use, open_engine};
use super::deployment::{self, Deployment, KafkaChoice, Plan, Role, RoleFlags};
use anyhow::Context;
use netwait_aggregator::engine::CheckpointMoment;
use netwait_api::auth::Tokens;
use netwait_api::http::{DEFAULT_MAX_BODY, HttpOptions};
use netwait_api::server::{DEFAULT_MAX_STREAMS, Security, ServeOptions};
use netwait_api::shutdown::{Phase, Stopped, serve_until_signalled};
use netwait_api::state::AppState;
use netwait_api::tls::TlsIdentity;
use netwait_clickhouse::answers::SqlAnswers;
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

/// The role flags (see `deployment` for their environment and configuration keys).
#[derive(clap::Args, Debug, Clone)]
pub struct IngestRoleArgs {
    /// What this process does: `ingest` (pushes and followed logs published to Kafka),
    /// `aggregator` (the topic consumed into the store, as `netwait aggregate`), `api`
    /// (the Stats service from ClickHouse), `all` (the three; on the embedded store
    /// without Kafka, pushes committed to it directly). Default: NETWAIT_ROLE, else
    /// `[serve] role`, else what the flags imply: --kafka on the embedded store is
    /// ingest; the ClickHouse store is api, with a topic all; else all.
    #[arg(long, value_enum, value_name = "ROLE")]
    role: Option<Role>,
    /// Kafka brokers (`host:port[,...]`). The ingest role publishes pushed events (gRPC
    /// push, HTTP `POST /v1/events`) and the followed logs of `[[sources]]` there, one
    /// record a line keyed by call id, and answers a push once the broker has every
    /// record; the aggregator consumes them. The api role's live state follows the
    /// topic at these brokers (every partition, no consumer group, nothing committed),
    /// for `Live.WatchQueue`, the wallboard and the live gauges. Default: NETWAIT_KAFKA,
    /// else `[kafka] brokers` (read only by a role that uses Kafka).
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// The topic (it must exist). Default: NETWAIT_KAFKA_TOPIC, else `[kafka] topic`.
    #[arg(long)]
    topic: Option<String>,
    /// The aggregators' consumer group. Default: NETWAIT_KAFKA_GROUP, else `[kafka]
    /// group`, else netwait-aggregator.
    #[arg(long)]
    group: Option<String>,
    /// With --kafka: a push the broker has not acknowledged within this many seconds (a
    /// broker down or restarting) is refused, gRPC `UNAVAILABLE` / HTTP 503, to be pushed
    /// again (event ids dedupe what the broker had of it).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = super::positive_seconds)]
    kafka_timeout: std::time::Duration,
}

/// Where gRPC listens when `--listen` is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

impl IngestRoleArgs {
    /// The role and its Kafka settings on `store`.
    fn plan(&self, store: &StoreArgs, listen: bool, http_listen: bool) -> anyhow::Result<Plan> {
        let file = Deployment::read(super::config::path(store).as_deref())?;
        let flags = RoleFlags {
            role: self.role,
            kafka: self.kafka.as_deref(),
            topic: self.topic.as_deref(),
            group: self.group.as_deref(),
            listen,
            http_listen,
        };
        deployment::plan(
            &flags,
            store.clickhouse.is_some(),
            &file,
            &deployment::process_env,
        )
    }
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
    listen: Option<&str>,
    options: ServeOptions,
    http: &HttpArgs,
    role: &IngestRoleArgs,
) -> anyhow::Result<()> {
    let plan = role.plan(store, listen.is_some(), http.http_listen.is_some())?;
    let listen = listen.unwrap_or(DEFAULT_LISTEN);
    // Each role binds its listener first: a port in use fails before any store is
    // opened or created.
    let kafka = plan.kafka.as_ref();
    match (plan.role, &store.clickhouse) {
        (Role::Aggregator, _) => {
            let kafka = kafka.context("the aggregator role's topic")?;
            super::aggregate::run(store, &KafkaArgs::of(kafka))
        }
        (Role::Api, Some(target)) => {
            let listener = bind(listen)?;
            let http_listener = http.http_listen.as_deref().map(bind).transpose()?;
            api_role(store, listener, http_listener, target.clone(), kafka)
        }
        (Role::All, Some(target)) => {
            let kafka = kafka.context("the aggregator role's topic")?;
            let listener = bind(listen)?;
            // The aggregator on a thread of its own, into the database; it stops on the
            // same signals, once its window in hand is durable (or when the rest fails).
            let stop = super::aggregate::stop_on_signals()?;
            let aggregator = {
                let (store, args, stop) = (store.clone(), KafkaArgs::of(kafka), Arc::clone(&stop));
                std::thread::Builder::new()
                    .name("netwait-aggregator".into())
                    .spawn(move || {
                        let aggregated = super::aggregate::run_until(&store, &args, &stop);
                        // Failed on its own: the whole process stops, as on SIGTERM (a
                        // server taking pushes that nothing aggregates would hide it).
                        if let Err(e) = &aggregated
                            && !stop.load(Ordering::Relaxed)
                        {
                            tracing::error!(error = %e, "the aggregator role failed: stopping");
                            let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
                        }
                        aggregated
                    })?
            };
            let served = sql_answers(store, target).and_then(|answers| {
                ingest(
                    store,
                    listener,
                    options,
                    http,
                    role,
                    Some(kafka),
                    Some(answers),
                )
            });
            stop.store(true, Ordering::Relaxed);
            let aggregated = aggregator
                .join()
                .map_err(|_| anyhow::anyhow!("the aggregator thread panicked"))?;
            served.and(aggregated)
        }
        // The ingest role keeps its state (rejected lines, the followed logs' positions,
        // the live queue) in --data, whichever store the aggregators fill.
        (Role::Ingest | Role::All, _) => {
            ingest(store, bind(listen)?, options, http, role, kafka, None)
        }
        // `deployment::plan` refuses it.
        (Role::Api, None) => anyhow::bail!("--role api needs the ClickHouse store"),
    }
}

/// The pushes' server on `store`'s data directory: committed there, or with `kafka`
/// published to its topic; its Stats service from `answers` when given (the ClickHouse
/// database the aggregator fills), else from the data directory.
fn ingest(
    store: &StoreArgs,
    listener: std::net::TcpListener,
    mut options: ServeOptions,
    http: &HttpArgs,
    role: &IngestRoleArgs,
    kafka: Option<&KafkaChoice>,
    answers: Option<SqlAnswers>,
) -> anyhow::Result<()> {
    // Its own state is the data directory's, whichever store the figures are in.
    let store = &StoreArgs {
        clickhouse: None,
        ..store.clone()
    };
    let http_listener = http.http_listen.as_deref().map(bind).transpose()?;
    let mut http_options = http.options()?;
    options.security = security(store)?;
    http_options.security = options.security.clone();
    let settings = super::config::load(store)?;
    let (live_rules, decode, source_specs) = (settings.live, settings.decode, settings.sources);
    // The ingest role's producer, once the brokers said they have the topic.
    let forward = match kafka {
        Some(k) => Some((
            super::tail::producer(&k.brokers, &k.topic, role.kafka_timeout)?,
            &k.topic,
        )),
        None => None,
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
        tracing::info!(brokers = kafka.map(|k| k.brokers.as_str()).unwrap_or_default(), %topic, "ingest role: pushes and followed logs are published to Kafka");
        if !source_specs.is_empty() {
            let positions = PositionFile::open(&store.data, topic)?;
            publish_sources = Some((Arc::clone(&producer), Arc::new(positions)));
        }
        state = state.forwarding_to(producer);
    }
    if let Some(answers) = answers {
        state = state.answering_from(answers);
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

/// The api role: the Stats service on a ClickHouse database's SQL (the same service as
/// `stats --clickhouse`); with `kafka`, also the live state of the followed topic
/// (`Live.WatchQueue`, and with `--http-listen` the wallboard, `/v1/live` and
/// `/metrics`; see `netwait_api::live::follower`), until SIGTERM/SIGINT.
fn api_role(
    store: &StoreArgs,
    listener: std::net::TcpListener,
    http_listener: Option<std::net::TcpListener>,
    target: netwait_clickhouse::Target,
    kafka: Option<&KafkaChoice>,
) -> anyhow::Result<()> {
    let security = security(store)?;
    let settings = super::config::load(store)?;
    // Before any runtime of ours: the client blocks on a runtime of its own.
    let stats = netwait_api::stats::StatsService::clickhouse(sql_answers(store, &target)?);
    let stopping = netwait_api::shutdown::Shutdown::default();
    // The live state: the topic followed into a book in memory, the past days from SQL
    // on a connection of its own.
    let (live, _follower) = match kafka {
        Some(KafkaChoice { brokers, topic, .. }) => {
            let clock: Arc<dyn netwait_api::live::Clock> = Arc::new(netwait_api::live::WallClock);
            let options = netwait_api::live::follower::FollowOptions {
                brokers: brokers.clone(),
                topic: topic.clone(),
                timeout: super::tail::METADATA_TIMEOUT,
                config: settings.metrics.clone(),
            };
            let (opened, snapshots) =
                netwait_api::live::follower::Follower::open(options, Arc::clone(&clock))
                    .with_context(|| format!("Kafka at {brokers}, topic {topic}"))?;
            let past = netwait_api::live::past::PastDays::start(
                sql_answers(store, &target)?,
                Arc::clone(&clock),
            )
            .context("starting the live state's reader of past days")?;
            let (feed, handle) =
                netwait_api::live::runner::start(settings.live, clock, snapshots, Some(past))
                    .context("starting the live thread")?;
            netwait_api::live::metrics::expose(&handle);
            let follower = opened
                .start(feed)
                .context("starting the topic's follower")?;
            tracing::info!(%brokers, %topic, "api role: live state from the topic");
            (Some(handle), Some(follower))
        }
        _ => (None, None),
    };
    let rt = super::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let mut signals = signals()?;
        println!("netwait listening on {addr}");
        if let Some(l) = http_listener {
            let l = tokio::net::TcpListener::from_std(l)?;
            println!("netwait http listening on {}", l.local_addr()?);
            let (security, live, stopping) = (security.clone(), live.clone(), stopping.clone());
            tokio::spawn(async move {
                let draining = stopping.clone();
                let served = netwait_api::http::serve_metrics(
                    l,
                    security,
                    live.map(|l| (l, stopping)),
                    async move { draining.reached(Phase::Draining).await },
                )
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            });
        }
        std::io::stdout().flush()?;
        tracing::info!(%addr, clickhouse = %target.url, database = %target.database, "serving the api role");
        let draining = stopping.clone();
        netwait_api::server::serve_stats(
            listener,
            stats,
            live.map(|l| (l, stopping.clone())),
            security,
            async move {
                signals.recv().await;
                // Live streams end first: the server then stops once they are gone.
                draining.enter(Phase::Draining);
            },
        )
        .await?;
        anyhow::Ok(())
    });
    rt.shutdown_background();
    served
}

/// The reports of the ClickHouse database of `target`, opened before any runtime of
/// ours (the client blocks on a runtime of its own).
fn sql_answers(
    store: &StoreArgs,
    target: &netwait_clickhouse::Target,
) -> anyhow::Result<SqlAnswers> {
    let settings = super::config::load(store)?;
    let opening = format!(
        "opening the ClickHouse database {} at {}",
        target.database, target.url
    );
    SqlAnswers::open(target.clone(), settings.metrics).context(opening)
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
