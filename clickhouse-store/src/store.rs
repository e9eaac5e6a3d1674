//! [`ClickHouseStore`]: the [`EventStore`] whose commits are rows of `netwait_log`.
//!
//! Commit `seq` (increasing; the store's [`LogPosition`]) is ONE insert of one block:
//! its records (as the embedded log encodes them), the new state of each cell it
//! touched, its call records' cancel and new rows, and last a commit row. ClickHouse
//! makes a block visible whole or not at all, but 18.16 inserts what arrived of an
//! insert whose connection was cut (netwait killed mid-commit): a block can hold a
//! commit's first rows only, without its commit row. Readers count a row when its `seq`
//! is at most the last commit row's and not void ([`crate::schema::committed`]): the rows of a cut
//! commit stay above the last commit row until the next writer opens, which makes their
//! seqs void before it commits above them (a fence, which also voids whatever a writer
//! taken over while stalled still inserts: each writer commits above a base of its own
//! lease epoch's). A failed insert whose answer was lost is
//! found by its commit row before it is tried again; one that is not there is made void
//! (in case it lands later, or landed in part) and tried again under the next `seq`, so
//! nothing counts twice.
//!
//! The writer's checkpoints (its book: open call states, dedupe keys, call index, cells
//! and the sources' positions, as of a commit `seq`) are kept in a local state
//! directory of its own ([`ClickHouseStore::keep_checkpoints`]): an open replays only
//! the commits after it, and the book's settled parts live in its mapped files rather
//! than in memory. Without one (or when another process holds it) opening replays
//! every commit into the book. Either way the cells in ClickHouse are already the
//! book's.

use crate::conn::{Conn, Error, Target};
use crate::lease::{Lease, WhenHeld};
use crate::rows::{LogRow, RecordsRow};
use crate::schema::{committed_in, kind, not_void_in};
use crate::shard::{Layout, Shard};
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::derived::Derived;
use netwait_aggregator::random::{hex, random_bytes};
use netwait_aggregator::store::checkpoint_dir::CheckpointDir;
use netwait_aggregator::store::codec::Decoder;
use netwait_aggregator::store::positions::SourceCheckpoint;
use netwait_aggregator::store::record::Record;
use netwait_aggregator::store::secrets::{Secrets, unhex};
use netwait_aggregator::store::{
    Aside, Batch, Checkpoint, EventStore, LogPosition, PartBytes, PartWriter, RunId, StoreError,
};
use std::path::{Path, PathBuf};

/// Rows of one commit at most (one block: ClickHouse splits an insert into blocks of
/// `max_insert_block_size` rows, and only a block is atomic).
pub const MAX_COMMIT_ROWS: usize = 1 << 22;

pub struct ClickHouseStore {
    conn: Conn,
    /// The part of the log this writer keeps.
    shard: Shard,
    lease: Lease,
    /// The last whole commit.
    seq: u64,
    /// The `seq` of the next commit: above every row in the table, cut ones included.
    next: u64,
    /// Where the writer's checkpoints are kept ([`Self::keep_checkpoints`]).
    state: Option<CheckpointDir>,
    /// The last replay: from, to, and the bytes of its records.
    replayed: Option<(u64, u64, u64)>,
    /// The windows an open replays the log in ([`Self::replay_in_windows`]).
    windows: ReplayWindows,
}

/// A long log replayed in windows of about `bytes` of records each, so that an open
/// without a checkpoint (a new host) checkpoints between them and keeps in memory only
/// what can still change: the ends still to replay, planned from `from`.
#[derive(Debug, Default)]
struct ReplayWindows {
    bytes: u64,
    from: u64,
    ends: std::collections::VecDeque<u64>,
}

impl ReplayWindows {
    /// The ends of windows over commits of `sizes` (seq, bytes of records, in order):
    /// each ends before the commit that would take it past `bytes` (a bigger commit is
    /// a window of its own).
    fn plan(bytes: u64, sizes: &[(u64, u64)]) -> std::collections::VecDeque<u64> {
        let mut ends = std::collections::VecDeque::new();
        let mut held = 0u64;
        let mut last = None;
        for &(seq, size) in sizes {
            if let Some(prev) = last
                && held + size > bytes
            {
                ends.push_back(prev);
                held = 0;
            }
            held += size;
            last = Some(seq);
        }
        ends
    }
}

fn store_error(e: Error) -> StoreError {
    match e {
        Error::Server {
            url,
            transient: true,
            source,
        } => StoreError::Io {
            path: url,
            source: std::io::Error::other(source),
        },
        e @ (Error::Held { .. } | Error::TakenOver { .. }) => {
            StoreError::OtherWriter(e.to_string())
        }
        other => StoreError::Corrupt {
            path: "clickhouse".into(),
            what: other.to_string(),
        },
    }
}

impl ClickHouseStore {
    /// Opens the store of `target` as its one writer ([`Lease`]), whose schema must be
    /// current (`netwait migrate`); waits for a server that cannot be reached yet
    /// ([`Conn::connect`]), and, as `when_held` says, for another writer to stop.
    /// It writes the whole log's shard (a database of [`Layout::Whole`]).
    pub fn open(target: Target, when_held: WhenHeld) -> Result<Self, Error> {
        Self::open_shard(target, Shard::whole(), when_held)
    }

    /// [`Self::open`] as the writer of `shard`: a partition's in a database made shared
    /// ([`Self::share`]), the whole log's in one that is not.
    pub fn open_shard(target: Target, shard: Shard, when_held: WhenHeld) -> Result<Self, Error> {
        let conn = Conn::connect(target)?;
        conn.require_schema()?;
        let lease = Lease::acquire(&conn, &shard, when_held)?;
        match (read_layout(&conn)?, shard.is_whole()) {
            (Layout::Whole, true) | (Layout::Shards, false) => {}
            (Layout::Shards, true) => return Err(layout_error(&conn, SHARED)),
            (Layout::Whole, false) => return Err(layout_error(&conn, NOT_SHARED)),
        }
        // After a writer taken over (not a clean handover), everything up to this
        // writer's base is fenced off: that writer may still land an insert there.
        let (seq, next) = positions(
            &conn,
            &shard,
            epoch_base(lease.epoch()),
            !lease.handed_over(),
        )?;
        Ok(Self {
            conn,
            shard,
            lease,
            seq,
            next,
            state: None,
            replayed: None,
            windows: ReplayWindows::default(),
        })
    }

    /// Makes the database of `target` one whose aggregators share the partitions of a
    /// group, each writing the shards of the partitions it holds ([`Layout::Shards`]), if
    /// it is not yet: only before its first commit (a whole log's calls cannot be cut
    /// into partitions afterwards); creates the store's keys if it has none and returns
    /// them (as [`Self::secrets`]). Holds the whole log's lease meanwhile, so that no
    /// writer of the whole log commits beside it and sharing aggregators starting
    /// together do this one at a time.
    pub fn share(
        target: Target,
        when_held: WhenHeld,
        caller_override: Option<[u8; 32]>,
    ) -> Result<Secrets, Error> {
        let conn = Conn::connect(target)?;
        conn.require_schema()?;
        let lease = Lease::acquire(&conn, &Shard::whole(), when_held)?;
        if read_layout(&conn)? == Layout::Whole {
            let commits: u64 = conn
                .block_on(
                    conn.client
                        .query(&format!(
                            "SELECT count() FROM netwait_log WHERE kind = {}",
                            kind::COMMIT
                        ))
                        .fetch_one(),
                )
                .map_err(|e| conn.error(e))?;
            if commits > 0 {
                return Err(layout_error(&conn, NOT_EMPTY));
            }
            let mut statements = vec![Layout::shards_sql()];
            statements.extend(crate::schema::views_of(Layout::Shards));
            for sql in statements {
                conn.block_on(conn.client.query(&sql).execute())
                    .map_err(|e| conn.error(e))?;
            }
            tracing::info!(
                database = %conn.target.database,
                "ClickHouse database made shared by the partitions of a group"
            );
            // A reader that opened it before takes the new layout within this.
            std::thread::sleep(crate::answers::LAYOUT_RECHECK * 2);
        }
        let secrets = secrets_of(&conn, caller_override)?;
        drop(lease);
        Ok(secrets)
    }

    /// Keeps this writer's checkpoints under `root`, in a directory of this database's
    /// own (named by the database and a hash keyed by its dedupe key, so that a
    /// database made again never meets the checkpoints of the old one); returns it.
    /// [`StoreError::Locked`] when another process holds it.
    pub fn keep_checkpoints(
        &mut self,
        root: &Path,
        secrets: &Secrets,
    ) -> Result<PathBuf, StoreError> {
        let dir = root.join(state_dir_name(
            &self.conn.target.database,
            &self.shard,
            secrets,
        ));
        self.state = Some(CheckpointDir::lock(&dir)?);
        Ok(dir)
    }

    /// Replays a log without a checkpoint to start from in windows of about `bytes` of
    /// records, checkpointed between (0: in one go). Only with checkpoints kept
    /// ([`Self::keep_checkpoints`]): without them there is nowhere to put what settles.
    pub fn replay_in_windows(&mut self, bytes: u64) {
        self.windows.bytes = bytes;
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The store's keys, created on first use (one writer creates them).
    pub fn secrets(&self, caller_override: Option<[u8; 32]>) -> Result<Secrets, Error> {
        secrets_of(&self.conn, caller_override)
    }
    /// Whether commit `seq` of `shard` is in the table whole (its commit row is there)
    /// and not void.
    fn landed(conn: &Conn, shard: &Shard, seq: u64) -> Result<bool, Error> {
        let n: u64 = conn
            .block_on(conn.client.query(&landed_sql(shard)).bind(seq).fetch_one())
            .map_err(|e| conn.error(e))?;
        Ok(n > 0)
    }

    fn insert(conn: &Conn, rows: &[LogRow]) -> Result<(), Error> {
        conn.block_on(async {
            let mut insert = conn
                .client
                .insert::<LogRow>("netwait_log")
                .await?
                .with_setting("max_insert_block_size", MAX_COMMIT_ROWS.to_string());
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        })
        .map_err(|e| conn.error(e))
    }
}

/// The keys of the store on `conn`, created on first use (by one writer: the whole
/// log's, or the first sharing aggregator under the whole log's lease).
fn secrets_of(conn: &Conn, caller_override: Option<[u8; 32]>) -> Result<Secrets, Error> {
    let secrets = match read_secrets(conn)? {
        Some(s) => s,
        None => {
            let raw = random_bytes::<48>().map_err(|e| Error::Data {
                url: conn.target.url.clone(),
                what: format!("/dev/urandom: {e}"),
            })?;
            conn.block_on(
                conn.client
                    .query("INSERT INTO netwait_meta (key, value) VALUES ('dedupe_key', ?), ('caller_key', ?)")
                    .bind(hex(&raw[..16]))
                    .bind(hex(&raw[16..]))
                    .execute(),
            )
            .map_err(|e| conn.error(e))?;
            read_secrets(conn)?.ok_or_else(|| Error::Data {
                url: conn.target.url.clone(),
                what: "the keys written cannot be read back".into(),
            })?
        }
    };
    Ok(match caller_override {
        Some(caller) => Secrets { caller, ..secrets },
        None => secrets,
    })
}

/// The layout of the database on `conn`.
pub fn read_layout(conn: &Conn) -> Result<Layout, Error> {
    let shards: u8 = conn
        .block_on(conn.client.query(&Layout::read_sql()).fetch_one())
        .map_err(|e| conn.error(e))?;
    Ok(if shards > 0 {
        Layout::Shards
    } else {
        Layout::Whole
    })
}

const SHARED: &str = "is shared by the aggregators of a group (`aggregate --share-partitions`): \
     a writer of every partition (import, push, an aggregator without --share-partitions) \
     writes to a database of its own";
const NOT_SHARED: &str = "is not shared by the partitions of a group: start the aggregators \
     with --share-partitions (which makes an empty database shared)";
const NOT_EMPTY: &str = "already holds commits of a writer of every partition (import, push, \
     an aggregator without --share-partitions): aggregators sharing the partitions of a \
     group start on a database of their own (a new --database)";

fn layout_error(conn: &Conn, why: &'static str) -> Error {
    Error::Layout {
        url: conn.target.url.clone(),
        database: conn.target.database.clone(),
        why,
    }
}

/// The state directory of a database's shard: the database's name (what a path may
/// hold of it), the shard's (none for the whole log's) and a hash keyed by its dedupe key.
fn state_dir_name(database: &str, shard: &Shard, secrets: &Secrets) -> String {
    let name: String = match shard.is_whole() {
        true => database.to_owned(),
        false => format!("{database}-{}", shard.as_str()),
    };
    let name: String = name
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                true => c,
                false => '_',
            },
        )
        .collect();
    let id = KeyHasher::new(secrets.dedupe).call_key(b"netwait checkpoint directory");
    format!("{name}-{:016x}", id as u64)
}

/// Each commit of `shard` in `(?, ?]` with the bytes of its records (cut commits too:
/// a window plan only).
pub fn commit_sizes_sql(shard: &Shard) -> String {
    format!(
        "SELECT seq, toUInt64(sum(length(payload))) FROM netwait_log WHERE kind = {} \
         AND shard = {} AND seq > ? AND seq <= ? GROUP BY seq ORDER BY seq",
        kind::RECORDS,
        shard.sql()
    )
}

/// The bytes of the records of `shard`'s commits in `(?, ?]` (an estimate: cut commits
/// count too).
pub fn log_bytes_sql(shard: &Shard) -> String {
    format!(
        "SELECT sum(length(payload)) FROM netwait_log WHERE kind = {} AND shard = {} \
         AND seq > ? AND seq <= ?",
        kind::RECORDS,
        shard.sql()
    )
}

/// The shards that have a commit (read only: `netwait deadletter` reads every shard).
pub fn shards_sql() -> String {
    format!(
        "SELECT DISTINCT shard FROM netwait_log WHERE kind = {} ORDER BY shard",
        kind::COMMIT
    )
}

/// The shards that have a commit (names a writer could not have written are left out).
pub fn shards(conn: &Conn) -> Result<Vec<Shard>, Error> {
    let names: Vec<String> = conn
        .block_on(conn.client.query(&shards_sql()).fetch_all())
        .map_err(|e| conn.error(e))?;
    Ok(names.iter().filter_map(|n| Shard::parse(n)).collect())
}

/// The store's keys, when its first writer made them (read only).
pub fn read_secrets(conn: &Conn) -> Result<Option<Secrets>, Error> {
    let rows: Vec<(String, String)> = conn
        .block_on(
            conn.client
                .query("SELECT key, any(value) FROM netwait_meta WHERE key IN ('dedupe_key', 'caller_key') GROUP BY key")
                .fetch_all(),
        )
        .map_err(|e| conn.error(e))?;
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    match (
        get("dedupe_key").and_then(unhex::<16>),
        get("caller_key").and_then(unhex::<32>),
    ) {
        (Some(dedupe), Some(caller)) => Ok(Some(Secrets { dedupe, caller })),
        _ => Ok(None),
    }
}

/// The last whole commit of `shard`, read only (a reader beside the writer: rows of
/// commits cut short above it are left for the writer to void).
pub fn last_commit(conn: &Conn, shard: &Shard) -> Result<u64, Error> {
    let (whole, _): (u64, u64) = conn
        .block_on(conn.client.query(&positions_sql(shard)).fetch_one())
        .map_err(|e| conn.error(e))?;
    Ok(whole)
}

/// Visits the records of `shard`'s whole commits in `(from, end]`, in order: what the
/// writer replays when it opens, and what a reader lists (`netwait deadletter`).
/// Returns their encoded bytes.
pub fn visit_records(
    conn: &Conn,
    shard: &Shard,
    from: u64,
    end: u64,
    visit: &mut dyn FnMut(Record<'_>),
) -> Result<u64, StoreError> {
    let sql = replay_sql(shard);
    let mut bad = None;
    let mut bytes = 0u64;
    conn.block_on(async {
        let mut cursor = conn
            .client
            .query(&sql)
            .bind(from)
            .bind(end)
            .fetch::<RecordsRow>()?;
        while let Some(row) = cursor.next().await? {
            bytes += row.payload.len() as u64;
            for rec in Decoder::new(&row.payload) {
                match rec {
                    Ok(r) => visit(r),
                    Err(e) => {
                        bad.get_or_insert((row.seq, e));
                    }
                }
            }
        }
        Ok::<_, clickhouse::error::Error>(())
    })
    .map_err(|e| store_error(conn.error(e)))?;
    match bad {
        Some((seq, e)) => Err(StoreError::Corrupt {
            path: format!("clickhouse commit {seq}"),
            what: e.to_string(),
        }),
        None => Ok(bytes),
    }
}

/// The last whole commit of `shard` and the highest `seq` of any of its rows (0, 0 for
/// a shard without rows).
pub fn positions_sql(shard: &Shard) -> String {
    format!(
        "SELECT maxIf(seq, kind = {}), max(seq) FROM netwait_log WHERE shard = {}",
        kind::COMMIT,
        shard.sql()
    )
}

/// How many commit rows commit `?` of `shard` has when it is not void (1 when it is
/// whole, else 0).
pub fn landed_sql(shard: &Shard) -> String {
    // Not void: an attempt given up on and made void may still land whole, late; its
    // retry must not then take it for landed.
    format!(
        "SELECT count() FROM netwait_log WHERE kind = {} AND shard = {} AND seq = ? AND {}",
        kind::COMMIT,
        shard.sql(),
        not_void_in(shard)
    )
}

/// The seq above which the writer of lease `epoch` numbers its commits: above every
/// earlier epoch's (2^40 commits each), so that what an earlier writer still inserts
/// after it was taken over falls in the fence of a later one (see [`kind::FENCE`]).
pub fn epoch_base(epoch: u64) -> u64 {
    epoch.saturating_mul(1 << 40)
}

/// The records of `shard`'s whole commits in `(?, ?]`, in order.
pub fn replay_sql(shard: &Shard) -> String {
    format!(
        "SELECT seq, payload FROM netwait_log WHERE kind = {} AND shard = {} AND {} \
         AND seq > ? AND seq <= ? ORDER BY seq, idx",
        kind::RECORDS,
        shard.sql(),
        committed_in(shard)
    )
}

/// The last whole commit, and the `seq` the next commit takes (above `floor`: the
/// writer's [`epoch_base`] at open, the last seq it tried after a failure), once every
/// seq above the last whole commit that may hold rows is fenced off: those of commits
/// cut short, and with `fence_floor` those up to `floor` (an earlier writer's insert
/// still under way, a failed attempt of this one).
fn positions(
    conn: &Conn,
    shard: &Shard,
    floor: u64,
    fence_floor: bool,
) -> Result<(u64, u64), Error> {
    let (whole, top): (u64, u64) = conn.retrying(
        "reading the last commit",
        |conn| {
            conn.block_on(conn.client.query(&positions_sql(shard)).fetch_one())
                .map_err(|e| conn.error(e))
        },
        |_| Ok(None),
    )?;
    let fenced = if fence_floor { top.max(floor) } else { top };
    if top > whole {
        tracing::warn!(
            %shard,
            last_whole_commit = whole,
            highest_seq = top,
            "the table holds rows of commits cut short (a writer stopped mid-commit): \
             they are made void, never counted"
        );
    }
    if fenced > whole {
        let fence = [LogRow::fence(whole + 1, fenced).of(shard)];
        conn.retrying(
            "fencing off earlier writers",
            |conn| ClickHouseStore::insert(conn, &fence),
            |_| Ok(None),
        )?;
    }
    Ok((whole, top.max(floor) + 1))
}

/// The rows of commit `seq` of `shard`.
pub fn commit_rows(seq: u64, shard: &Shard, batch: &Batch, derived: &Derived) -> Vec<LogRow> {
    let mut rows = Vec::with_capacity(
        batch.parts().len() + derived.cells.len() + derived.days.len() + derived.calls.len(),
    );
    let mut idx = 0u32;
    let mut next = || {
        idx += 1;
        idx
    };
    for part in batch.parts() {
        rows.push(LogRow::records(seq, next(), part.clone()));
    }
    for cell in derived.cells.values() {
        rows.push(LogRow::cell(seq, next(), cell));
    }
    for day in derived.days.values() {
        rows.push(LogRow::day(seq, next(), day));
    }
    for call in &derived.calls {
        rows.push(LogRow::call(seq, next(), call));
    }
    let all = next();
    rows.push(LogRow::commit(seq, all));
    if !shard.is_whole() {
        rows.iter_mut()
            .for_each(|r| r.shard = shard.as_str().to_owned());
    }
    rows
}

impl EventStore for ClickHouseStore {
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        let end = self.seq;
        let bytes = visit_records(&self.conn, &self.shard, from, end, visit)?;
        self.replayed = Some((from, end, bytes));
        Ok(end)
    }

    fn replay_window(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<(LogPosition, bool), StoreError> {
        if self.state.is_none() || self.windows.bytes == 0 {
            return self.replay(from, visit).map(|end| (end, false));
        }
        if self.windows.from != from || self.windows.ends.is_empty() {
            let conn = &self.conn;
            let sizes: Vec<(u64, u64)> = conn
                .block_on(
                    conn.client
                        .query(&commit_sizes_sql(&self.shard))
                        .bind(from)
                        .bind(self.seq)
                        .fetch_all(),
                )
                .map_err(|e| store_error(conn.error(e)))?;
            self.windows.ends = ReplayWindows::plan(self.windows.bytes, &sizes);
            if !self.windows.ends.is_empty() {
                tracing::info!(
                    windows = self.windows.ends.len() + 1,
                    commits = sizes.len(),
                    "replaying the log in windows, checkpointed between"
                );
            }
        }
        let end = self.windows.ends.pop_front().unwrap_or(self.seq);
        let bytes = visit_records(&self.conn, &self.shard, from, end, visit)?;
        self.replayed = Some((from, end, bytes));
        self.windows.from = end;
        Ok((end, end < self.seq))
    }

    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        self.commit_derived(batch, &Derived::default())
    }

    fn log_bytes(&mut self, from: LogPosition, to: LogPosition) -> Result<u64, StoreError> {
        if from >= to {
            return Ok(0);
        }
        if let Some((f, t, bytes)) = self.replayed
            && (f, t) == (from, to)
        {
            // What an open just replayed: no second reading.
            return Ok(bytes);
        }
        let conn = &self.conn;
        conn.block_on(
            conn.client
                .query(&log_bytes_sql(&self.shard))
                .bind(from)
                .bind(to)
                .fetch_one::<u64>(),
        )
        .map_err(|e| store_error(conn.error(e)))
    }

    fn checkpoints(&self) -> bool {
        self.state.is_some()
    }

    fn load_checkpoint(&mut self, with_fold: bool) -> Result<Option<Checkpoint>, StoreError> {
        match &self.state {
            Some(state) => state.load_checkpoint(with_fold, self.seq),
            None => Ok(None),
        }
    }

    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        match &self.state {
            Some(state) => state.save_checkpoint(position, query, fold, runs),
            None => Ok(()),
        }
    }

    fn load_run(&mut self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
        match &self.state {
            Some(state) => state.load_run(id, verify),
            None => Ok(None),
        }
    }

    fn verify_runs(&mut self, ids: &[RunId]) -> Result<bool, StoreError> {
        match &self.state {
            Some(state) => state.verify_runs(ids),
            None => Ok(ids.is_empty()),
        }
    }

    fn save_positions(
        &mut self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        match &self.state {
            Some(state) => state.save_positions(at, positions),
            None => Ok(()),
        }
    }

    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        match &self.state {
            Some(state) => state.load_positions(),
            None => Ok(None),
        }
    }

    fn save_aside(
        &mut self,
        aside: Aside,
        at: LogPosition,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        match &self.state {
            Some(state) => state.save_aside(aside, at, bytes),
            None => Ok(()),
        }
    }

    fn load_aside(&mut self, aside: Aside) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        match &self.state {
            Some(state) => state.load_aside(aside, self.seq),
            None => Ok(None),
        }
    }

    fn retain_runs(&mut self, keep: &[RunId]) -> Result<(), StoreError> {
        match &self.state {
            Some(state) => state.retain_runs(keep),
            None => Ok(()),
        }
    }

    fn derives(&self) -> bool {
        true
    }

    fn commit_derived(
        &mut self,
        batch: &Batch,
        derived: &Derived,
    ) -> Result<LogPosition, StoreError> {
        if batch.is_empty() && derived.is_empty() {
            return Ok(self.seq);
        }
        let mut rows = commit_rows(self.next, &self.shard, batch, derived);
        if rows.len() > MAX_COMMIT_ROWS {
            return Err(StoreError::Corrupt {
                path: "clickhouse".into(),
                what: format!(
                    "a commit of {} rows (at most {MAX_COMMIT_ROWS})",
                    rows.len()
                ),
            });
        }
        // The seq of the attempt, and whether an attempt under it failed. A failed
        // attempt may have left rows (cut short), or may still land whole: its seq is
        // made void before the next attempt takes the next seq.
        let attempt = std::cell::Cell::new((self.next, false));
        let shard = &self.shard;
        self.conn
            .retrying(
                "commit",
                |conn| {
                    // Each attempt: this writer still holds the lease.
                    self.lease.check(conn)?;
                    let (mut seq, failed) = attempt.get();
                    if failed {
                        Self::insert(conn, &[LogRow::void(seq).of(shard)])?;
                        seq += 1;
                        rows.iter_mut().for_each(|r| r.seq = seq);
                    }
                    attempt.set((seq, true));
                    Self::insert(conn, &rows)
                },
                |conn| {
                    let (seq, _) = attempt.get();
                    Ok(Self::landed(conn, shard, seq)?.then_some(()))
                },
            )
            .map_err(|e| {
                // Never tried again under that seq: it may still land.
                self.next = attempt.get().0 + 1;
                store_error(e)
            })?;
        self.seq = attempt.get().0;
        self.next = self.seq + 1;
        Ok(self.seq)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        // What is durable is what the table holds whole: a commit that failed is
        // absent, or cut short (not counted), or, when only its answer was lost, whole.
        // Every seq this writer tried (a failed attempt may still land) is fenced off.
        (self.seq, self.next) =
            positions(&self.conn, &self.shard, self.next - 1, true).map_err(store_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ReplayWindows;

    #[test]
    fn windows_end_before_the_commit_that_would_take_them_past_their_bytes() {
        let sizes = [(3, 40), (5, 50), (9, 10), (10, 200), (12, 5), (20, 60)];
        // 40 + 50 + 10 fill 100; the 200 of commit 10 alone; 5 + 60 up to the log's end.
        assert_eq!(ReplayWindows::plan(100, &sizes), [9, 10]);
        // A commit bigger than a window is a window of its own; the last window is left
        // to end at the log's end.
        assert_eq!(ReplayWindows::plan(30, &sizes), [3, 5, 9, 10, 12]);
        assert!(ReplayWindows::plan(1000, &sizes).is_empty());
        assert!(ReplayWindows::plan(10, &[]).is_empty());
    }
}
