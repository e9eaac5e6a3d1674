//! Shards: the parts of a database's log that writers keep apart. A shard has its one
//! writer at a time (a lease of its own), its own numbering of commits, its own void
//! commits and fences; its rows name it (`netwait_log.shard`), and its cells and days
//! are the figures of its own calls. A writer that consumes every partition of its
//! topics writes the whole log's shard (`''`); aggregators that share a group's
//! partitions each write the shards of the partitions they hold (`topic/partition`),
//! so that the member a partition moves to takes its calls, positions and figures over
//! from the database.
//!
//! Which of the two a database holds is its [`Layout`], fixed before its first commit:
//! readers of a whole log keep the cheaper queries of one writer's commits, readers of
//! shards sum each shard's latest figures and keep each shard's commits whole on their
//! own (`BENCHMARKS.md`, "ClickHouse queries that sum shards").

/// How a database's log is written, which decides how its readers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One writer at a time, of every partition: the whole log's shard only.
    Whole,
    /// Aggregators sharing a group's partitions: a shard per partition.
    Shards,
}

impl Layout {
    /// The `netwait_meta` key that records a database's layout (absent: [`Self::Whole`]).
    pub const META_KEY: &'static str = "layout";
    /// Its value for [`Self::Shards`].
    pub const SHARDS: &'static str = "shards";

    /// The layout's value in `netwait_meta` (whole when no row says shards).
    pub fn read_sql() -> String {
        format!(
            "SELECT toUInt8(countIf(value = '{}') > 0) FROM netwait_meta WHERE key = '{}'",
            Self::SHARDS,
            Self::META_KEY
        )
    }

    /// The statement that makes a database's layout [`Self::Shards`].
    pub fn shards_sql() -> String {
        format!(
            "INSERT INTO netwait_meta (key, value) VALUES ('{}', '{}')",
            Self::META_KEY,
            Self::SHARDS
        )
    }
}

/// A shard's name, as rows hold it: `''`, or `topic/partition` with a Kafka topic's
/// characters only (ASCII letters, digits, `.`, `_`, `-`), so that it can stand in SQL
/// as a plain literal.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard(String);

impl Shard {
    /// The shard of a writer of every partition.
    pub fn whole() -> Self {
        Self(String::new())
    }

    /// The shard of one Kafka partition; `None` for a topic name Kafka would refuse.
    pub fn partition(topic: &str, partition: i32) -> Option<Self> {
        let legal = !topic.is_empty()
            && topic.len() <= 249
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        (legal && partition >= 0).then(|| Self(format!("{topic}/{partition}")))
    }

    /// A shard name read back from the database (any name a writer could have written).
    pub fn parse(name: &str) -> Option<Self> {
        if name.is_empty() {
            return Some(Self::whole());
        }
        let (topic, partition) = name.rsplit_once('/')?;
        let partition: i32 = partition.parse().ok()?;
        Self::partition(topic, partition).filter(|s| s.0 == name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_whole(&self) -> bool {
        self.0.is_empty()
    }

    /// The name as an SQL string literal (its characters need no escaping).
    pub fn sql(&self) -> String {
        format!("'{}'", self.0)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.is_whole() {
            true => f.write_str("the whole log"),
            false => write!(f, "partition {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn only_kafka_topic_names_make_shards() {
        let s = Shard::partition("calls.asst-1_x", 7).expect("a legal topic");
        assert_eq!(
            (s.as_str(), s.sql().as_str()),
            ("calls.asst-1_x/7", "'calls.asst-1_x/7'")
        );
        assert_eq!(Shard::parse(s.as_str()), Some(s));
        for topic in ["", "a'b", "a?b", "a/b", "a b", "é", &"t".repeat(250)] {
            assert_eq!(Shard::partition(topic, 0), None, "{topic}");
        }
        assert_eq!(Shard::partition("t", -1), None);
        assert_eq!(Shard::parse(""), Some(Shard::whole()));
        for name in ["t", "t/", "t/x", "t/-1", "/1", "t/01", "a'/1"] {
            assert_eq!(Shard::parse(name), None, "{name}");
        }
    }
}
