//! Kafka in and out (issue 12): the aggregator's source, an rdkafka consumer group on
//! the configured topics ([`consumer`]), whose messages ([`payload`]: NDJSON or protobuf)
//! are validated and pseudonymised as every other input; refused items go to the store's
//! dead letters and to a dead-letter topic ([`dead_letter_topic`]). Offsets are committed
//! to Kafka only once the events they cover are durable in the store (at-least-once in,
//! exactly once counted by dedupe). The ingest role's producer ([`producer`]) publishes
//! pushed events, keyed by call id, and reports only once the broker has them; a followed
//! log in that role goes to the topic through the pipeline's target seam ([`tail_target`]),
//! its positions kept in a file of their own ([`position_file`]).

pub mod consumer;
pub mod dead_letter_topic;
pub mod driver;
pub mod outage;
pub mod payload;
pub mod position_file;
pub mod producer;
pub mod tail_target;

use rdkafka::config::ClientConfig;

/// The partition id of a Kafka partition, as the store and dead letters name it.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}/{partition}")
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn name(&self) -> String {
        partition_name(&self.topic, self.partition)
    }
}

/// Where the aggregator reads.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group: String,
    /// Topic refused items are copied to, if any.
    pub dead_letter_topic: Option<String>,
    /// Aggregators of the group share its partitions, each counting the calls of the
    /// partitions it holds: chunks hold one partition's messages, and a call event must
    /// be in a message keyed by its call id (else it is refused).
    pub share_partitions: bool,
}

/// Largest message the clients send or take: the broker of `deploy/` accepts 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The broker did not acknowledge a publish within the producer's timeout.
    #[error("the broker did not acknowledge it within {} s", .0.as_secs_f64())]
    Unacknowledged(std::time::Duration),
    #[error("kafka: {0}")]
    Other(String),
}

/// A client configuration on `brokers` with this crate's common settings.
fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set(
            "message.max.bytes",
            (MAX_MESSAGE_BYTES + 65_536).to_string(),
        )
        // rdkafka's own log goes through `tracing` (see `consumer::GroupContext::log`);
        // broker connections that drop are retried, and said once.
        .set("log.connection.close", "false")
        // A broker that restarts is reconnected to within 2 s of its return (the default
        // backoff grows to 10 s: events would wait that long after a restart).
        .set("reconnect.backoff.max.ms", "2000");
    // librdkafka's own debug contexts (e.g. `cgrp,broker`), logged at debug level through
    // `tracing`: what a client stuck on a broker was doing.
    if let Some(contexts) = std::env::var("NETWAIT_KAFKA_DEBUG")
        .ok()
        .filter(|c| !c.is_empty())
    {
        config
            .set("debug", contexts)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    config
}
