//! One writer per shard of a database (see [`crate::shard`]; the whole log's shard when
//! one writer consumes every partition): a lease in `netwait_leases`, renewed by a
//! heartbeat and checked before every commit.
//!
//! Commits are numbered by their writer (see the store), so two writers on one database
//! would number theirs alike and make each other's void. A writer claims the next
//! epoch (a row `(epoch, writer, since, at)`, both times the server's clock) when the
//! epoch's holder has not been heard of for [`TTL`]; the claims of one epoch are ranked
//! by `since`, then by writer id, so writers that claim at once agree on the winner once
//! each has waited [`SETTLE`] (every claim made before a writer's own has landed by
//! then). The holder's heartbeat adds a row of its epoch every [`HEARTBEAT`]; before each
//! commit it checks that no later epoch was claimed, so a writer that was taken over
//! (stalled, or cut off from the server for longer than [`TTL`] while another reached
//! it) stops instead of writing. A clean stop hands the lease over at once (a claim of
//! the next epoch by nobody). An aggregator started beside a running one waits as a
//! standby and takes over when the running one stops or dies (at once when it was a
//! process of the same host, boot and pid namespace, found gone; else after [`TTL`]);
//! an import is refused.
//! A writer stalled for longer than [`TTL`] in the middle of an insert may still land
//! it after it was taken over: the store's fences leave it out (see the store).

use crate::conn::{Conn, Error, Target};
use crate::shard::Shard;
use netwait_aggregator::random::{hex, random_bytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A holder not heard of for this long may be taken over.
pub const TTL: Duration = Duration::from_secs(15);
/// How often the holder says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a claim waits before it is ranked against the others of its epoch.
pub const SETTLE: Duration = Duration::from_millis(1500);
/// How often a standby looks again.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The writer named in an epoch's claim when nobody holds it (a holder stopped cleanly).
const NOBODY: &str = "";

/// What to do when another writer holds the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenHeld {
    /// Fail at once ([`Error::Held`]).
    Refuse,
    /// Wait as a standby until the holder stops or dies.
    Wait,
}

/// The holder of the latest epoch, as the server sees it now.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
struct Holder {
    epoch: u64,
    writer: String,
    /// When its claim was made (server clock, seconds): what ranks the claims of an epoch.
    since: u32,
    /// Seconds since the holder's last row, by the server's clock.
    silent_s: u64,
}

impl Holder {
    fn alive(&self) -> bool {
        self.writer != NOBODY && self.silent_s < TTL.as_secs() && !self.gone_from_here()
    }

    /// Whether the holder was a process of this host (the same kernel boot and process
    /// namespace: a pid means the same process only there) that is no longer running
    /// (a writer killed and started again takes over at once, not after [`TTL`]).
    fn gone_from_here(&self) -> bool {
        let Some(here) = this_host() else {
            return false;
        };
        let mut parts = self.writer.splitn(3, '/');
        match (
            parts.next(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
        ) {
            (Some(host), Some(pid)) => {
                host == here && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

/// This host as writer ids name it: `hostname@boot id.pid namespace`, `None` when a part
/// cannot be read (then no holder is known to be gone; it expires after [`TTL`]).
fn this_host() -> Option<&'static str> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        let namespace = std::fs::read_link("/proc/self/ns/pid")
            .ok()?
            .to_str()?
            .trim_start_matches("pid:[")
            .trim_end_matches(']')
            .to_owned();
        Some(format!(
            "{}@{}.{namespace}",
            read("/proc/sys/kernel/hostname")?,
            read("/proc/sys/kernel/random/boot_id")?
        ))
    })
    .as_deref()
}

/// The latest epoch's winner (its earliest claim, ties to the lowest writer id), the
/// epoch 0 of nobody on an empty table.
pub fn holder_sql(shard: &Shard) -> String {
    format!(
        "SELECT epoch, writer, since, toUInt64(greatest(toInt64(toUInt32(now())) - toInt64(last), 0)) AS silent_s \
         FROM (SELECT epoch, writer, min(since) AS since, max(at) AS last FROM netwait_leases \
         WHERE shard = {s} AND epoch = (SELECT max(epoch) FROM netwait_leases WHERE shard = {s}) \
         GROUP BY epoch, writer ORDER BY since, writer LIMIT 1)",
        s = shard.sql()
    )
}

/// A claim of `writer` for `epoch` of a shard at the server's time.
pub fn claim_sql() -> &'static str {
    "INSERT INTO netwait_leases (shard, epoch, writer, since, at) \
     SELECT ?, ?, ?, toUInt32(now()), toUInt32(now())"
}

/// A heartbeat of the holder of `epoch` whose claim was made at `since`. (The table
/// keeps one row per claim once merged, its latest `at`: it does not grow with time.)
pub fn heartbeat_sql() -> &'static str {
    "INSERT INTO netwait_leases (shard, epoch, writer, since, at) SELECT ?, ?, ?, ?, toUInt32(now())"
}

/// The latest epoch claimed of a shard.
pub fn latest_epoch_sql(shard: &Shard) -> String {
    format!(
        "SELECT max(epoch) FROM netwait_leases WHERE shard = {}",
        shard.sql()
    )
}

fn holder(conn: &Conn, shard: &Shard) -> Result<Holder, Error> {
    let rows: Vec<Holder> = conn
        .block_on(conn.client.query(&holder_sql(shard)).fetch_all())
        .map_err(|e| conn.error(e))?;
    Ok(rows.into_iter().next().unwrap_or(Holder {
        epoch: 0,
        writer: NOBODY.into(),
        since: 0,
        silent_s: u64::MAX,
    }))
}

fn heartbeat(
    conn: &Conn,
    shard: &Shard,
    epoch: u64,
    writer: &str,
    since: u32,
) -> Result<(), Error> {
    conn.block_on(
        conn.client
            .query(heartbeat_sql())
            .bind(shard.as_str())
            .bind(epoch)
            .bind(writer)
            .bind(since)
            .execute(),
    )
    .map_err(|e| conn.error(e))
}

fn claim(conn: &Conn, shard: &Shard, epoch: u64, writer: &str) -> Result<(), Error> {
    conn.block_on(
        conn.client
            .query(claim_sql())
            .bind(shard.as_str())
            .bind(epoch)
            .bind(writer)
            .execute(),
    )
    .map_err(|e| conn.error(e))
}

fn latest_epoch(conn: &Conn, shard: &Shard) -> Result<u64, Error> {
    conn.block_on(
        conn.client
            .query(&latest_epoch_sql(shard))
            .fetch_one::<u64>(),
    )
    .map_err(|e| conn.error(e))
}

/// A writer id: `host/pid/` (see [`this_host`]) and 16 random hex digits.
fn new_writer_id() -> Result<String, std::io::Error> {
    let random = hex(&random_bytes::<8>()?);
    let host = this_host().unwrap_or("unknown");
    Ok(format!("{host}/{}/{random}", std::process::id()))
}

/// A shard's write lease, held until dropped.
pub struct Lease {
    shard: Shard,
    epoch: u64,
    writer: String,
    target: Target,
    /// Set by the heartbeat when a later epoch was claimed.
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
    /// See [`Self::handed_over`].
    handed_over: bool,
}

impl Lease {
    /// Takes the lease of `shard` of `conn`'s database (retrying transient failures as
    /// `conn` does); with [`WhenHeld::Wait`], waits for as long as another writer holds it.
    pub fn acquire(conn: &Conn, shard: &Shard, when_held: WhenHeld) -> Result<Self, Error> {
        let writer = new_writer_id().map_err(|e| Error::Data {
            url: conn.target.url.clone(),
            what: format!("/dev/urandom: {e}"),
        })?;
        let mut told = false;
        loop {
            let now = conn.retrying(
                "reading the writer lease",
                |c| holder(c, shard),
                |_| Ok(None),
            )?;
            if now.alive() {
                if when_held == WhenHeld::Refuse {
                    return Err(Error::Held {
                        database: conn.target.database.clone(),
                        writer: now.writer,
                        silent_s: now.silent_s,
                    });
                }
                if !told {
                    tracing::warn!(
                        database = %conn.target.database,
                        %shard,
                        holder = %now.writer,
                        "another netwait writes to this database: standing by to take over when it stops"
                    );
                    told = true;
                }
                std::thread::sleep(STANDBY_POLL);
                continue;
            }
            let epoch = now.epoch + 1;
            conn.retrying(
                "claiming the writer lease",
                |c| claim(c, shard, epoch, &writer),
                |_| Ok(None),
            )?;
            std::thread::sleep(SETTLE);
            let won = conn.retrying(
                "reading the writer lease",
                |c| holder(c, shard),
                |_| Ok(None),
            )?;
            if won.epoch == epoch && won.writer == writer {
                tracing::info!(database = %conn.target.database, %shard, epoch, %writer, "writer lease taken");
                let mut lease =
                    Self::start(conn.target.clone(), shard.clone(), epoch, writer, won.since);
                lease.handed_over = now.writer == NOBODY;
                return Ok(lease);
            }
            // Another claim of the same epoch ranks first (or a later epoch was
            // claimed): that writer holds it now.
        }
    }

    fn start(target: Target, shard: Shard, epoch: u64, writer: String, since: u32) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let (target, writer, shard) = (target.clone(), writer.clone(), shard.clone());
            let (lost, stop) = (lost.clone(), stop.clone());
            move || {
                let conn = match Conn::new(target) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "writer lease heartbeat cannot start");
                        return;
                    }
                };
                let mut failing = false;
                while !stop.load(Ordering::Relaxed) {
                    let beat = heartbeat(&conn, &shard, epoch, &writer, since)
                        .and_then(|()| latest_epoch(&conn, &shard));
                    match beat {
                        Ok(latest) if latest > epoch => {
                            tracing::error!(
                                epoch,
                                latest,
                                "another writer took this database over: no more commits"
                            );
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Ok(_) => failing = false,
                        Err(e) => {
                            // Said once per outage: the commits say the rest.
                            if !failing {
                                tracing::warn!(error = %e, "writer lease heartbeat failed; retrying");
                                failing = true;
                            }
                        }
                    }
                    // Sleeps in short steps: a stop is seen at once.
                    let until = Instant::now() + HEARTBEAT;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        };
        let heartbeat = std::thread::Builder::new()
            .name("netwait-lease".into())
            .spawn(beat)
            .map_err(|e| tracing::error!(error = %e, "writer lease heartbeat cannot start"))
            .ok();
        Self {
            shard,
            epoch,
            writer,
            target,
            lost,
            stop,
            heartbeat,
            handed_over: false,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the epoch before this one ended with a clean handover (its holder stopped
    /// and said so; or the database never had a writer): no insert of an earlier writer
    /// can still be under way.
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// Whether this writer may still commit: no later epoch was claimed. Asks the
    /// server (a commit is refused on a lease it cannot confirm); transient failures
    /// are the caller's to retry.
    pub fn check(&self, conn: &Conn) -> Result<(), Error> {
        let latest = if self.lost.load(Ordering::Relaxed) {
            u64::MAX
        } else {
            latest_epoch(conn, &self.shard)?
        };
        if latest > self.epoch {
            self.lost.store(true, Ordering::Relaxed);
            return Err(Error::TakenOver {
                database: self.target.database.clone(),
                epoch: self.epoch,
            });
        }
        Ok(())
    }
}

impl Drop for Lease {
    /// Stops the heartbeat and hands the lease over (a standby takes it at once).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if self.lost.load(Ordering::Relaxed) {
            return;
        }
        let released = Conn::new(self.target.clone())
            .and_then(|conn| claim(&conn, &self.shard, self.epoch + 1, NOBODY));
        match released {
            Ok(()) => {
                tracing::info!(epoch = self.epoch, writer = %self.writer, "writer lease handed over")
            }
            Err(e) => {
                tracing::warn!(error = %e, "writer lease not handed over: a standby waits for it to expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_alive_while_heard_of_and_not_nobody() {
        let h = |writer: &str, silent_s| Holder {
            epoch: 1,
            writer: writer.into(),
            since: 0,
            silent_s,
        };
        assert!(h("a", 0).alive());
        assert!(h("a", TTL.as_secs() - 1).alive());
        assert!(!h("a", TTL.as_secs()).alive());
        assert!(!h(NOBODY, 0).alive());
    }

    #[test]
    fn writer_ids_differ_and_name_this_process() {
        let (a, b) = (new_writer_id().unwrap(), new_writer_id().unwrap());
        assert_ne!(a, b);
        let host = this_host().expect("this host is known");
        assert!(a.starts_with(&format!("{host}/{}/", std::process::id())));
    }

    #[test]
    fn a_holder_of_this_host_that_is_not_running_is_gone() {
        let h = |writer: String| Holder {
            epoch: 1,
            writer,
            since: 0,
            silent_s: 0,
        };
        let me = new_writer_id().unwrap();
        assert!(h(me).alive());
        // Above the kernel's pid limit: no such process.
        let host = this_host().expect("this host is known");
        let dead = format!("{host}/{}/00", u32::MAX);
        assert!(!h(dead).alive());
        // Another host's: alive while heard of.
        assert!(h(format!("elsewhere-{host}/{}/00", u32::MAX)).alive());
        // The same host name under another boot or process namespace: not this host.
        let (name, _) = host.split_once('@').expect("name@boot");
        assert!(h(format!("{name}@other-boot.1/{}/00", u32::MAX)).alive());
        assert!(h("no-pid".into()).alive());
    }
}
