//! Where each source stands (the quickwit model): a source reads partitions (a file, a
//! tailed file, a Kafka partition), each at a [`Position`] the store does not interpret
//! beyond its order. A batch of input carries a [`CheckpointDelta`] (partition → from..to);
//! the delta is committed in the same commit as the events it covers, so the store's
//! [`SourceCheckpoint`] is exactly what is durable, and a source resumed from it neither
//! skips input nor needs more than dedupe to absorb what it reads again.

use std::collections::BTreeMap;

/// A partition of a source: a file's absolute path, `tail:<path>`, `kafka:<topic>/<p>`.
pub type PartitionId = String;

/// A place in a partition, opaque to the store but ordered within its partition (bytes
/// compared lexicographically). The empty position is the beginning, before anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(Vec<u8>);

impl Position {
    /// Before anything of the partition.
    pub const BEGINNING: Position = Position(Vec::new());

    /// A byte or record offset (big-endian, so that the bytes order as the numbers do).
    pub fn offset(n: u64) -> Self {
        Self(n.to_be_bytes().to_vec())
    }

    /// The offset of a position made by [`Self::offset`]; 0 for the beginning.
    pub fn as_offset(&self) -> Option<u64> {
        if self.0.is_empty() {
            return Some(0);
        }
        <[u8; 8]>::try_from(self.0.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    }

    /// A position of the source's own making (at most 65,535 bytes: it is stored with a
    /// 16-bit length).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_beginning(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a batch moved one partition over: from where it started reading to where it
/// stopped (`from <= to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDelta {
    pub from: Position,
    pub to: Position,
}

/// Why a delta cannot be recorded or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// The delta starts after where the partition stands: input in between would be lost.
    #[error(
        "partition {partition}: a batch starting at {from:?} follows one that ended at {at:?}: input in between is missing"
    )]
    Gap {
        partition: PartitionId,
        at: Position,
        from: Position,
    },
    #[error("partition {partition}: a batch going backwards ({from:?} to {to:?})")]
    Backwards {
        partition: PartitionId,
        from: Position,
        to: Position,
    },
}

/// Partition → position moves of one batch, or of several batches merged in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointDelta(BTreeMap<PartitionId, PartitionDelta>);

impl CheckpointDelta {
    /// A delta moving one partition.
    pub fn single(
        partition: impl Into<PartitionId>,
        from: Position,
        to: Position,
    ) -> Result<Self, PositionError> {
        let mut d = Self::default();
        d.record(partition, from, to)?;
        Ok(d)
    }

    /// Adds a move of `partition`: after the moves already recorded for it, it must start
    /// where they ended or before (a batch read again), never after.
    pub fn record(
        &mut self,
        partition: impl Into<PartitionId>,
        from: Position,
        to: Position,
    ) -> Result<(), PositionError> {
        let partition = partition.into();
        if to < from {
            return Err(PositionError::Backwards {
                partition,
                from,
                to,
            });
        }
        match self.0.get_mut(&partition) {
            None => {
                self.0.insert(partition, PartitionDelta { from, to });
            }
            Some(d) if from <= d.to => {
                d.from = d.from.clone().min(from);
                d.to = d.to.clone().max(to);
            }
            Some(d) => {
                return Err(PositionError::Gap {
                    at: d.to.clone(),
                    partition,
                    from,
                });
            }
        }
        Ok(())
    }

    /// Merges a later delta into this one (see [`Self::record`]).
    pub fn extend(&mut self, later: CheckpointDelta) -> Result<(), PositionError> {
        for (p, d) in later.0 {
            self.record(p, d.from, d.to)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PartitionId, &PartitionDelta)> + '_ {
        self.0.iter()
    }

    pub fn get(&self, partition: &str) -> Option<&PartitionDelta> {
        self.0.get(partition)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Where every partition stands: what is durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCheckpoint(BTreeMap<PartitionId, Position>);

impl SourceCheckpoint {
    /// Where `partition` stands ([`Position::BEGINNING`] when never read).
    pub fn position(&self, partition: &str) -> Position {
        self.0.get(partition).cloned().unwrap_or_default()
    }

    pub fn get(&self, partition: &str) -> Option<&Position> {
        self.0.get(partition)
    }

    /// The partitions whose id starts with `prefix` (a source's own, e.g. `kafka:t/`).
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a PartitionId, &'a Position)> + 'a {
        self.0
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(p, _)| p.starts_with(prefix))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PartitionId, &Position)> + '_ {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that `delta` applies: each partition's move starts where it stands or
    /// before (input read again after a crash, harmless: dedupe drops it). A partition
    /// never seen may start anywhere (a topic's first retained offset, a file's BOM).
    pub fn check(&self, delta: &CheckpointDelta) -> Result<(), PositionError> {
        for (p, d) in delta.iter() {
            let Some(at) = self.0.get(p).cloned() else {
                continue;
            };
            if d.from > at {
                return Err(PositionError::Gap {
                    partition: p.clone(),
                    at,
                    from: d.from.clone(),
                });
            }
        }
        Ok(())
    }

    /// Moves each partition of `delta` to its end, never backwards (see [`Self::check`];
    /// a delta that does not check is applied all the same: what it covers is durable).
    pub fn apply(&mut self, delta: &CheckpointDelta) {
        for (p, d) in delta.iter() {
            match self.0.get_mut(p) {
                Some(at) if *at >= d.to => {}
                Some(at) => *at = d.to.clone(),
                None => {
                    self.0.insert(p.clone(), d.to.clone());
                }
            }
        }
    }

    /// The checkpoint's encoding (see [`Self::decode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for (p, at) in &self.0 {
            put(out, p.as_bytes());
            put(out, at.as_bytes());
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let n = u32::from_le_bytes(r.array()?);
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let p = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            map.insert(p, Position(r.bytes()?.to_vec()));
        }
        r.0.is_empty().then_some(Self(map))
    }
}

impl CheckpointDelta {
    /// The delta's encoding, as the codec stores it in a commit (see [`Self::decode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for (p, d) in &self.0 {
            put(out, p.as_bytes());
            put(out, d.from.as_bytes());
            put(out, d.to.as_bytes());
        }
    }

    /// Reads a delta from the start of `bytes`; returns it and the bytes it took.
    pub fn decode(bytes: &[u8]) -> Option<(Self, usize)> {
        let mut r = Reader(bytes);
        let n = u32::from_le_bytes(r.array()?);
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let p = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            let from = Position(r.bytes()?.to_vec());
            let to = Position(r.bytes()?.to_vec());
            map.insert(p, PartitionDelta { from, to });
        }
        Some((Self(map), bytes.len() - r.0.len()))
    }
}

/// A length-prefixed byte string (u16 LE length; longer ones are cut: positions and
/// partition names are short).
fn put(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_le_bytes(self.array()?);
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> Position {
        Position::offset(n)
    }

    #[test]
    fn offsets_order_as_numbers_and_the_beginning_comes_first() {
        assert!(at(255) < at(256));
        assert!(Position::BEGINNING < at(0));
        assert_eq!(at(1 << 40).as_offset(), Some(1 << 40));
        assert_eq!(Position::BEGINNING.as_offset(), Some(0));
        assert_eq!(Position::from_bytes(vec![1, 2]).as_offset(), None);
    }

    #[test]
    fn deltas_merge_in_order_and_refuse_gaps_and_backward_moves() {
        let mut d = CheckpointDelta::single("a", at(0), at(10)).expect("delta");
        d.record("a", at(10), at(25)).expect("contiguous");
        d.record("b", at(5), at(6)).expect("another partition");
        // Read again (overlapping): fine, the ends only grow.
        d.record("a", at(20), at(22)).expect("overlap");
        assert_eq!(
            d.get("a"),
            Some(&PartitionDelta {
                from: at(0),
                to: at(25)
            })
        );
        assert!(matches!(
            d.record("a", at(26), at(30)),
            Err(PositionError::Gap { .. })
        ));
        assert!(matches!(
            d.record("c", at(3), at(2)),
            Err(PositionError::Backwards { .. })
        ));
    }

    #[test]
    fn a_checkpoint_takes_deltas_from_where_it_stands_or_before_and_never_goes_back() {
        let mut cp = SourceCheckpoint::default();
        let d1 = CheckpointDelta::single("a", Position::BEGINNING, at(10)).expect("delta");
        cp.check(&d1).expect("from the beginning");
        cp.apply(&d1);
        assert_eq!(cp.position("a"), at(10));
        // A replay after a crash: starts before, ends before; nothing moves back.
        let replay = CheckpointDelta::single("a", at(0), at(5)).expect("delta");
        cp.check(&replay).expect("a replay is fine");
        cp.apply(&replay);
        assert_eq!(cp.position("a"), at(10));
        let gap = CheckpointDelta::single("a", at(11), at(20)).expect("delta");
        assert!(cp.check(&gap).is_err());
        let new = CheckpointDelta::single("b", at(1_000), at(1_001)).expect("delta");
        cp.check(&new).expect("a new partition starts anywhere");
        assert_eq!(cp.position("zz"), Position::BEGINNING);
    }

    #[test]
    fn encodings_round_trip_and_prefixes_select_a_sources_partitions() {
        let mut d = CheckpointDelta::single("kafka:t/0", at(1), at(9)).expect("delta");
        d.record("kafka:t/1", Position::BEGINNING, at(3))
            .expect("delta");
        d.record(
            "tail:/var/log/q",
            at(0),
            Position::from_bytes(vec![0, 7, 255]),
        )
        .expect("delta");
        let mut buf = Vec::new();
        d.encode(&mut buf);
        buf.push(42);
        let (back, used) = CheckpointDelta::decode(&buf).expect("decodes");
        assert_eq!((back.clone(), used), (d.clone(), buf.len() - 1));
        let mut cp = SourceCheckpoint::default();
        cp.apply(&back);
        let mut buf = Vec::new();
        cp.encode(&mut buf);
        assert_eq!(SourceCheckpoint::decode(&buf), Some(cp.clone()));
        assert_eq!(SourceCheckpoint::decode(&buf[..buf.len() - 1]), None);
        let kafka: Vec<_> = cp
            .with_prefix("kafka:t/")
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(kafka, ["kafka:t/0", "kafka:t/1"]);
    }
}
