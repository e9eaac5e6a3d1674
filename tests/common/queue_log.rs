//! A PBX writing a growing `queue_log` for the live-tail tests (`tests/tail_follow.rs`,
//! `tests/kafka_tail.rs`): the rows of many calls in time order (so that calls straddle
//! batches, rotations and restarts), a writer that appends them a share at a time to
//! whichever file it has open, `netwait tail` started and stopped, and the figures of a
//! one-shot import of the same rows to compare with.

use super::{BIN, netwait};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The queue_log rows of call `i` with their instants: joins, then answered and
/// completed, abandoned, or (every 7th) leaves for a second queue by timeout and is
/// answered there (its first ENTERQUEUE alone makes its `offered`: a decoder that
/// forgot it, at a rotation or restart, would count the call again).
pub fn call_rows(i: u64) -> Vec<(u64, String)> {
    let t = 1_551_682_800 + i * 7; // Monday 2019-03-04 08:00 Rome, 7 s apart
    let id = format!("{t}.{i}");
    let mut rows = vec![(t, format!("{t}|{id}|cup|NONE|ENTERQUEUE||33312{i:05}|1"))];
    let mut answered = |at: u64, queue: &str, waited: u64| {
        rows.push((
            at,
            format!("{at}|{id}|{queue}|Agent/1|CONNECT|{waited}|{id}.9|2"),
        ));
        let end = at + 380;
        rows.push((
            end,
            format!("{end}|{id}|{queue}|Agent/1|COMPLETECALLER|{waited}|180|1"),
        ));
    };
    if i.is_multiple_of(7) {
        answered(t + 90, "cup-overflow", 30);
        rows.push((
            t + 60,
            format!("{}|{id}|cup|NONE|EXITWITHTIMEOUT|1|1|60", t + 60),
        ));
        rows.push((
            t + 60,
            format!(
                "{}|{id}|cup-overflow|NONE|ENTERQUEUE||33312{i:05}|1",
                t + 60
            ),
        ));
    } else if i.is_multiple_of(5) {
        rows.push((t + 35, format!("{}|{id}|cup|NONE|ABANDON|1|1|35", t + 35)));
    } else {
        answered(t + 20 + i % 200, "cup", 20 + i % 200);
    }
    rows
}

/// Every row of `calls` calls, in the order a PBX writes them (by time).
pub fn all_rows(calls: u64) -> Vec<String> {
    let mut rows: Vec<(u64, u64, usize, String)> = (0..calls)
        .flat_map(|i| {
            call_rows(i)
                .into_iter()
                .enumerate()
                .map(move |(k, (at, text))| (at, i, k, text))
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(.., text)| text + "\n").collect()
}

pub fn open_append(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log")
}

/// The writer: the rows in order, written to whichever file it has open.
pub struct Writer {
    pub rows: Vec<String>,
    pub next: usize,
}

impl Writer {
    pub fn new(calls: u64) -> Self {
        Self {
            rows: all_rows(calls),
            next: 0,
        }
    }

    /// Writes the rows up to the `share` (in %) of all of them, pausing now and then.
    pub fn write_to(&mut self, f: &mut File, share: usize) {
        let upto = self.rows.len() * share / 100;
        for (k, row) in self.rows[self.next..upto].iter().enumerate() {
            f.write_all(row.as_bytes()).expect("write");
            if k % 600 == 599 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.next = upto;
    }

    /// The rows written so far.
    pub fn written(&self) -> &[String] {
        &self.rows[..self.next]
    }
}

/// `netwait tail queue_log LOG --data DATA EXTRA...`, its stdout piped.
pub fn tail(data: &Path, log: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["tail", "queue_log"])
        .arg(log)
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tail")
}

/// SIGTERM, and its output once it exited.
pub fn sigterm(child: Child) -> std::process::Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    child.wait_with_output().expect("tail exits")
}

/// `rows` imported at once (`netwait import --format queue_log`) into a new data
/// directory: the reference a followed log's figures must equal.
pub fn import_rows(rows: &[String]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("all.log");
    std::fs::write(&file, rows.concat()).expect("write");
    let data = dir.path().join("data");
    let (f, d) = (file.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    netwait(&["import", "--format", "queue_log", "--data", d, f]);
    (dir, data)
}
