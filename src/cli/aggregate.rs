//! `netwait aggregate`: the aggregator role, a Kafka consumer group feeding the same
//! engine and store as `import` and `serve` (see `netwait_ingest::kafka`).

use super::StoreArgs;
use super::clickhouse::SharedStore;
use super::config::{Use, open_engine};
use anyhow::Context;
use clap::Args;
use netwait_ingest::kafka::KafkaOptions;
use netwait_ingest::kafka::consumer::Consumer;
use netwait_ingest::kafka::dead_letter_topic::DeadLetterTopic;
use netwait_ingest::kafka::driver::{self, DriverError, DriverOptions, Totals, Writers};
use netwait_ingest::kafka::outage::Reachability;
use netwait_ingest::kafka::{KafkaError, TopicPartition};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers, `host:port[,host:port...]`.
    #[arg(long, value_name = "BROKERS")]
    kafka: String,
    /// Topic to consume (repeat for several).
    #[arg(long, required = true)]
    topic: Vec<String>,
    /// Consumer group: aggregators of one group share the topic's partitions.
    #[arg(long, default_value = super::deployment::DEFAULT_GROUP)]
    group: String,
    /// Topic refused items are copied to, with their origin and reason in headers.
    #[arg(long, value_name = "TOPIC")]
    dead_letter_topic: Option<String>,
    /// Stop (commit, leave the group, exit 0) after this many seconds without a message
    /// while the broker is reachable (a broker down or restarting is waited for, not
    /// idle, and so is the aggregator's own work on what it holds: a long window or
    /// checkpoint): for runs that catch up with a topic and end. Default: run until
    /// SIGTERM/SIGINT.
    #[arg(long, value_name = "S", value_parser = super::positive_seconds)]
    idle_exit: Option<Duration>,
    /// Serve `GET /metrics` (Prometheus text: the consumer lag by partition, commits,
    /// rejects) on this address, with the configuration's TLS and read tokens. `:0`
    /// picks a free port: the line `netwait metrics listening on ADDR` says which.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Replace the group member by a new one (it rejoins and resumes from the store's
    /// positions) once its group has not been settled for this many seconds: a member
    /// the Kafka client does not rejoin after a broker restart would wait forever.
    #[arg(
        long,
        value_name = "S",
        env = "NETWAIT_KAFKA_RESTART_UNSETTLED",
        default_value_t = driver::RESTART_UNSETTLED.as_secs(),
    )]
    restart_unsettled: u64,
    /// Share the group's partitions with the other aggregators of the group (ClickHouse
    /// store only): each writes the calls of the partitions it holds, in a shard of its
    /// own, and takes over the shard of a partition moved to it. Every call's events
    /// must be in one partition: a call event in a message not keyed by its call_id is
    /// refused (`key_not_call_id`). Makes an empty database shared; a database written
    /// by one writer of every partition is refused. Without it an aggregator beside a
    /// running one stands by.
    #[arg(long, env = super::deployment::ENV_SHARE_PARTITIONS, value_parser = super::deployment::switch)]
    share_partitions: bool,
}

impl KafkaArgs {
    /// The aggregator role of `serve` (no dead-letter topic, no idle exit; `/metrics` is
    /// the HTTP listener's, when it has one).
    pub fn of(kafka: &super::deployment::KafkaChoice) -> Self {
        Self {
            kafka: kafka.brokers.clone(),
            topic: vec![kafka.topic.clone()],
            group: kafka.group.clone(),
            dead_letter_topic: None,
            idle_exit: None,
            metrics_listen: None,
            // (the flag's environment variable, as clap reads it for `aggregate`)
            restart_unsettled: std::env::var("NETWAIT_KAFKA_RESTART_UNSETTLED")
                .ok()
                .and_then(|s| {
                    s.parse()
                        .map_err(|e| {
                            tracing::warn!(value = %s, error = %e, "NETWAIT_KAFKA_RESTART_UNSETTLED is not a number of seconds: the default is used");
                        })
                        .ok()
                })
                .unwrap_or(driver::RESTART_UNSETTLED.as_secs()),
            share_partitions: kafka.share_partitions,
        }
    }
}

/// `--metrics-listen`: `/metrics` on a thread of its own, for the life of the process.
fn serve_metrics(store: &StoreArgs, listen: &str) -> anyhow::Result<()> {
    let listener = super::serve::bind(listen)?;
    let security = super::serve::security(store)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("metrics runtime")?;
    std::thread::Builder::new()
        .name("netwait-metrics".into())
        .spawn(move || {
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                netwait_api::http::serve_metrics(listener, security, None, std::future::pending())
                    .await
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        })?;
    println!("netwait metrics listening on {addr}");
    Ok(())
}

/// `--idle-exit`: the time without a message, counted only while partitions are assigned
/// and the broker is reachable. The clock restarts with every message, every rebalance
/// and every return of the broker: a topic is quiet only if the broker, there, had
/// nothing to send. (Counted across an outage, a restart of the broker longer than the
/// limit would end a run while events are still to come.)
struct IdleWatch {
    limit: Duration,
    /// One more per durable window or rebalance.
    activity: Arc<AtomicU64>,
    assigned: Arc<AtomicBool>,
    reachability: Arc<Reachability>,
}

impl IdleWatch {
    /// Returns once idle for the limit.
    fn wait(&self) {
        let tick = Duration::from_millis(100);
        let state = || {
            (
                self.activity.load(Ordering::Relaxed),
                self.reachability.returns(),
            )
        };
        let mut seen = state();
        let mut idle = Duration::ZERO;
        let mut last = Instant::now();
        while idle < self.limit {
            std::thread::sleep(tick);
            let now = Instant::now();
            let elapsed = now - std::mem::replace(&mut last, now);
            let state = state();
            if state != seen {
                seen = state;
                idle = Duration::ZERO;
            } else if self.assigned.load(Ordering::Relaxed)
                && self.reachability.is_reachable()
                && !self.reachability.is_held_back()
            {
                idle += elapsed;
            }
        }
    }
}

pub fn run(store: &StoreArgs, args: &KafkaArgs) -> anyhow::Result<()> {
    run_until(store, args, &stop_on_signals()?)
}

/// A flag set by SIGTERM/SIGINT: finish the window in hand, commit, leave the group; a
/// second signal stops at once (what is durable is kept, Kafka has the rest).
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// [`run`] until `stop` is set.
pub fn run_until(
    store: &StoreArgs,
    args: &KafkaArgs,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    if let Some(listen) = &args.metrics_listen {
        serve_metrics(store, listen)?;
    }
    // The one writer of the store (a standby until the running one stops), or what
    // opens a writer per partition held.
    let (mut one, shared, pseudo, hasher) = if args.share_partitions {
        let target = store.clickhouse.as_ref().context(
            "--share-partitions needs the ClickHouse store (--clickhouse URL): a data directory has one writer",
        )?;
        let settings = super::config::load(store)?;
        let shared = SharedStore::prepare(target, settings, store.checkpoints.as_ref())?;
        let (pseudo, hasher) = (shared.pseudonymizer(), shared.key_hasher());
        (None, Some(shared), pseudo, hasher)
    } else {
        // Beside a running aggregator on the same store, this one stands by (and joins
        // the group only once it writes: a member would be handed partitions it cannot
        // store).
        let (engine, pseudo) = open_engine(store, Use::Standby)?;
        let hasher = engine.key_hasher();
        (Some(Box::new(engine)), None, pseudo, hasher)
    };
    let options = KafkaOptions {
        brokers: args.kafka.clone(),
        topics: args.topic.clone(),
        group: args.group.clone(),
        dead_letter_topic: args.dead_letter_topic.clone(),
        share_partitions: args.share_partitions,
    };
    let dead_letters = options
        .dead_letter_topic
        .as_deref()
        .map(|t| DeadLetterTopic::new(&options.brokers, t))
        .transpose()
        .context("dead-letter topic producer")?;
    let mut consumer = Consumer::start(&options, Arc::new(pseudo), hasher)
        .with_context(|| format!("joining group {} on {}", options.group, options.brokers))?;
    eprintln!(
        "netwait aggregating {} from {} (group {})",
        options.topics.join(","),
        options.brokers,
        options.group
    );
    let activity = Arc::new(AtomicU64::new(0));
    let assigned = Arc::new(AtomicBool::new(false));
    if let Some(idle) = args.idle_exit {
        let watch = IdleWatch {
            limit: idle,
            activity: Arc::clone(&activity),
            assigned: Arc::clone(&assigned),
            reachability: consumer.reachability(),
        };
        let stop = Arc::clone(stop);
        std::thread::spawn(move || {
            watch.wait();
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut seen = (0, 0);
    let mut report = |t: &Totals| {
        if (t.messages, t.rebalances) != seen {
            seen = (t.messages, t.rebalances);
            activity.fetch_add(1, Ordering::Relaxed);
        }
        assigned.store(t.assigned > 0, Ordering::Relaxed);
        tracing::debug!(
            messages = t.messages,
            accepted = t.summary.accepted,
            windows = t.windows,
            "durable"
        );
    };
    let open_partition = |tp: &TopicPartition| {
        let shared = shared
            .as_ref()
            .ok_or_else(|| KafkaError::Other("one writer of every partition".into()))?;
        shared
            .open(&tp.topic, tp.partition)
            .map_err(|e| DriverError::Kafka(KafkaError::Other(format!("{e:#}"))))
    };
    let writers = match one.as_mut() {
        Some(engine) => Writers::One(engine),
        None => Writers::PerPartition {
            open: &open_partition,
            engines: Default::default(),
        },
    };
    let totals = driver::run(
        writers,
        &mut consumer,
        dead_letters.as_ref(),
        stop,
        DriverOptions {
            restart_unsettled: Duration::from_secs(args.restart_unsettled.max(1)),
            ..DriverOptions::default()
        },
        &mut report,
    )?;
    let s = totals.summary;
    if let Some((first, last)) = totals.busy {
        let secs = (last - first).as_secs_f64().max(1e-3);
        let events = s.accepted + s.duplicate + s.rejected;
        let q = |x| totals.lag.quantile(x).unwrap_or(0);
        eprintln!(
            "netwait: {events} events in {secs:.2} s ({:.0} events/s) from the first message to the last durable commit; lag (message timestamp to durable) p50 {} ms, p99 {} ms",
            events as f64 / secs,
            q(0.5),
            q(0.99)
        );
    }
    println!(
        "total: messages {} accepted {} duplicate {} rejected {}",
        totals.messages, s.accepted, s.duplicate, s.rejected
    );
    drop(consumer);
    std::mem::forget(one);
    Ok(())
}
