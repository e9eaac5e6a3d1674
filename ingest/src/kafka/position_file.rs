//! Where the followed logs of an ingest process stand in what the broker acknowledged:
//! `DATA/tail-positions.<topic>`, the sources' checkpoint (the store's encoding of it,
//! after a header line). The local store cannot hold it: its commits hold what is
//! stored there, and the events went to the topic. Replaced whole at each batch
//! acknowledged (written aside, fsynced, renamed over, the directory fsynced), so that a
//! crash leaves the old file or the new one, never a part of either.

use netwait_aggregator::store::StoreError;
use netwait_aggregator::store::positions::{CheckpointDelta, SourceCheckpoint};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const HEADER: &[u8] = b"netwait tail positions 1\n";

/// The position file of a topic, shared by every followed log publishing to it.
#[derive(Debug)]
pub struct PositionFile {
    path: PathBuf,
    standing: Mutex<SourceCheckpoint>,
}

impl PositionFile {
    /// The file name of `topic`'s positions in a data directory.
    pub fn path_in(data: &Path, topic: &str) -> PathBuf {
        data.join(format!("tail-positions.{topic}"))
    }

    /// Reads `DATA/tail-positions.<topic>` (none yet: every log from its start).
    pub fn open(data: &Path, topic: &str) -> Result<Self, StoreError> {
        let path = Self::path_in(data, topic);
        let standing = match std::fs::read(&path) {
            Ok(bytes) => bytes
                .strip_prefix(HEADER)
                .and_then(SourceCheckpoint::decode)
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.display().to_string(),
                    what: "not a position file of this netwait; moved away, the logs are read again from their start".into(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SourceCheckpoint::default(),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        Ok(Self {
            path,
            standing: Mutex::new(standing),
        })
    }

    /// Where every log stands.
    pub fn standing(&self) -> SourceCheckpoint {
        self.lock().clone()
    }

    /// Moves the logs of `delta` on, durably; returns where every log stands now. On an
    /// error nothing moved (the file is the one before).
    pub fn advance(&self, delta: &CheckpointDelta) -> Result<SourceCheckpoint, StoreError> {
        let mut standing = self.lock();
        let mut next = standing.clone();
        next.apply(delta);
        if next != *standing {
            self.write(&next)
                .map_err(|e| StoreError::io(&self.path, e))?;
            *standing = next;
        }
        Ok(standing.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceCheckpoint> {
        // A panic while holding it left the last durable state in it: still right.
        self.standing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, checkpoint: &SourceCheckpoint) -> std::io::Result<()> {
        let mut bytes = HEADER.to_vec();
        checkpoint.encode(&mut bytes);
        let mut aside = self.path.clone().into_os_string();
        aside.push(".tmp");
        let mut file = std::fs::File::create(&aside)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&aside, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::store::positions::Position;

    #[test]
    fn positions_survive_a_reopen_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PositionFile::open(dir.path(), "calls").expect("open");
        assert!(file.standing().is_empty());
        let delta = |from, to| {
            CheckpointDelta::single("tail:/x", Position::offset(from), Position::offset(to))
                .expect("delta")
        };
        file.advance(&delta(0, 10)).expect("advance");
        let now = file.advance(&delta(10, 25)).expect("advance");
        assert_eq!(now.position("tail:/x"), Position::offset(25));
        // A batch read again (before where the log stands) moves nothing back.
        file.advance(&delta(0, 10)).expect("advance");
        let again = PositionFile::open(dir.path(), "calls").expect("reopen");
        assert_eq!(again.standing().position("tail:/x"), Position::offset(25));
        assert!(
            PositionFile::open(dir.path(), "other")
                .expect("open")
                .standing()
                .is_empty()
        );

        std::fs::write(PositionFile::path_in(dir.path(), "calls"), b"garbage").expect("write");
        let err = PositionFile::open(dir.path(), "calls").expect_err("damaged");
        assert!(err.to_string().contains("not a position file"), "{err}");
    }
}
