//! `netwait tail FORMAT PATH`: a followed log into the embedded store, or with `--kafka`
//! (the ingest role) to a Kafka topic, through the same source driver as `import` (see
//! `netwait_ingest::tail`, `netwait_ingest::kafka::tail_target`).

use super::StoreArgs;
use super::config::{Use, open_engine};
use anyhow::Context;
use netwait_aggregator::engine::CheckpointMoment;
use netwait_ingest::format::Format;
use netwait_ingest::kafka::position_file::PositionFile;
use netwait_ingest::kafka::producer::{DELIVERY_TIMEOUT, EventProducer};
use netwait_ingest::kafka::tail_target::KafkaTarget;
use netwait_ingest::pipeline::{PipelineOptions, Target, drive};
use netwait_ingest::tail::TailSource;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long the brokers may take to say whether they have the topic, at start.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// `tail`'s ingest role flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TailKafkaArgs {
    /// The ingest role: the log's events (validated, the caller pseudonymised) are
    /// published to Kafka at these brokers (`host:port[,...]`), one record an event keyed
    /// by call id, for `netwait aggregate`; its rejected lines stay in `--data`'s dead
    /// letters, its position in `DATA/tail-positions.TOPIC` once the broker has the
    /// events.
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    kafka: Option<String>,
    /// The topic the events are published to (with --kafka); it must exist.
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
}

/// The ingest role's producer on `brokers`, once they said they have `topic`.
pub(super) fn producer(
    brokers: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Arc<EventProducer>> {
    let producer = EventProducer::new(brokers, topic, timeout)
        .and_then(|p| p.check_topic(METADATA_TIMEOUT).map(|()| p))
        .with_context(|| format!("Kafka at {brokers}, topic {topic}"))?;
    Ok(Arc::new(producer))
}

pub fn run(
    store: &StoreArgs,
    format: Format,
    path: &Path,
    kafka: &TailKafkaArgs,
) -> anyhow::Result<()> {
    if !matches!(format, Format::QueueLog | Format::Ndjson) {
        anyhow::bail!("tail follows queue_log or ndjson, not {}", format.as_str());
    }
    let settings = super::config::load(store)?.decode;
    let mut source =
        TailSource::new(path, format).with_context(|| format!("following {}", path.display()))?;
    let published = match (&kafka.kafka, &kafka.topic) {
        (Some(brokers), Some(topic)) => Some((producer(brokers, topic, DELIVERY_TIMEOUT)?, topic)),
        _ => None,
    };
    let (engine, pseudo) = open_engine(store, Use::Ingest)?;
    let (name, kind) = (source.name_for_humans().to_owned(), format.as_str());
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("catching signals")?;
    }
    let mut follow = |target: &mut dyn Target| {
        drive(
            &mut source,
            target,
            &pseudo,
            &settings,
            PipelineOptions::long_running(),
            Some(&stop),
            &mut |_| {},
        )
    };
    let sum = match published {
        Some((producer, topic)) => {
            let positions = Arc::new(PositionFile::open(&store.data, topic)?);
            eprintln!("netwait: following {name} ({kind}) to Kafka topic {topic}");
            let mut target = KafkaTarget::new(producer, positions, engine, Arc::clone(&stop))
                .context("starting the Kafka delivery")?;
            let sum = follow(&mut target)?;
            target.local_mut().checkpoint_at(CheckpointMoment::Stopping);
            sum
        }
        None => {
            eprintln!("netwait: following {name} ({kind})");
            let mut engine = engine;
            let sum = follow(&mut engine)?;
            engine.checkpoint_at(CheckpointMoment::Stopping);
            sum
        }
    };
    println!(
        "stopped: accepted {} duplicate {} rejected {}",
        sum.accepted, sum.duplicate, sum.rejected
    );
    Ok(())
}
