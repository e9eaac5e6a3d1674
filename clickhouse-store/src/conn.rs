//! A connection to one contract's database: the client, the small runtime its calls
//! run on (the store's callers are synchronous), and the retry of transient failures.

use clickhouse::Client;
use std::time::{Duration, Instant};

/// Why a ClickHouse call failed, and whether retrying may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ClickHouse at {url}: {source}")]
    Server {
        url: String,
        transient: bool,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error(
        "ClickHouse database {database} at {url} has schema version {found}, this netwait needs {needed}: run `netwait migrate --clickhouse {url} --database {database}`"
    )]
    Schema {
        url: String,
        database: String,
        found: u32,
        needed: u32,
    },
    #[error("cannot start the ClickHouse client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("ClickHouse at {url}: {what}")]
    Data { url: String, what: String },
    #[error(
        "another netwait (writer {writer}, heard of {silent_s} s ago) writes to ClickHouse database {database}: one writer at a time (an aggregator started beside it stands by)"
    )]
    Held {
        database: String,
        writer: String,
        silent_s: u64,
    },
    #[error("ClickHouse database {database} at {url} {why}")]
    Layout {
        url: String,
        database: String,
        why: &'static str,
    },
    #[error(
        "another netwait took ClickHouse database {database} over (this one held epoch {epoch} of its writer lease): no more commits from this one"
    )]
    TakenOver { database: String, epoch: u64 },
}

impl Error {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Server {
                transient: true,
                ..
            }
        )
    }
}

/// ClickHouse error codes that pass by waiting: too many parts, timeouts, network,
/// memory, too many queries.
const TRANSIENT_CODES: [&str; 7] = [
    "Code: 252",
    "Code: 159",
    "Code: 209",
    "Code: 210",
    "Code: 241",
    "Code: 202",
    "Code: 425",
];

fn transient(e: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        E::BadResponse(text) => TRANSIENT_CODES.iter().any(|c| text.contains(c)),
        _ => false,
    }
}

/// How long and how often a failing call is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Give up (the error goes to the caller) once failing for this long.
    pub give_up_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            give_up_after: Duration::from_secs(300),
        }
    }
}

/// Where the data is: a server's HTTP URL and a database (one contract per database),
/// and how long to wait for it while it cannot be reached.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub database: String,
    pub retry: Retry,
}

pub const DEFAULT_DATABASE: &str = "netwait";

pub struct Conn {
    pub target: Target,
    pub client: Client,
    /// Without a database: for `CREATE DATABASE`.
    pub server: Client,
    /// Always `Some` until dropped: taken by `Drop` to shut it down without blocking, so
    /// that a connection may be dropped in async code (a server's service).
    rt: Option<tokio::runtime::Runtime>,
    pub retry: Retry,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Conn {
    pub fn new(target: Target) -> Result<Self, Error> {
        let server = Client::default()
            .with_url(&target.url)
            .with_validation(false);
        let client = server.clone().with_database(&target.database);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let retry = target.retry;
        Ok(Self {
            target,
            client,
            server,
            rt: Some(rt),
            retry,
        })
    }

    /// [`Self::new`], then waits (retrying with backoff, a warning per retry) until the
    /// server answers, for at most [`Retry::give_up_after`]: a process started while
    /// ClickHouse is down (or restarting) waits for it instead of failing at once.
    pub fn connect(target: Target) -> Result<Self, Error> {
        let conn = Self::new(target)?;
        conn.retrying(
            "connecting to ClickHouse",
            |conn| {
                conn.block_on(conn.server.query("SELECT 1").fetch_one::<u8>())
                    .map_err(|e| conn.error(e))
            },
            |_| Ok(None),
        )?;
        Ok(conn)
    }

    pub fn error(&self, source: clickhouse::error::Error) -> Error {
        Error::Server {
            url: self.target.url.clone(),
            transient: transient(&source),
            source,
        }
    }

    /// Runs a call to completion on the connection's runtime (never from async code:
    /// from a blocking thread, e.g. `spawn_blocking`).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the connection")
            .block_on(f)
    }

    /// Runs `call` until it succeeds, or fails for good, or [`Retry::give_up_after`]
    /// passes; `before_retry` runs before each retry (e.g. to learn that a call whose
    /// answer was lost did succeed: `Ok(true)` ends the retries with success).
    pub fn retrying<T>(
        &self,
        what: &str,
        mut call: impl FnMut(&Self) -> Result<T, Error>,
        mut landed: impl FnMut(&Self) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let mut delay = self.retry.first_delay;
        let mut attempt = 0u32;
        loop {
            let err = match call(self) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.is_transient() || started.elapsed() >= self.retry.give_up_after {
                return Err(err);
            }
            attempt += 1;
            let left = self.retry.give_up_after.saturating_sub(started.elapsed());
            tracing::warn!(
                attempt,
                error = %err,
                delay_ms = delay.as_millis() as u64,
                gives_up_in_s = left.as_secs(),
                "{what} failed; retrying"
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(self.retry.max_delay);
            match landed(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The schema version the database has (0: none).
    pub fn schema_version(&self) -> Result<u32, Error> {
        let exists: u64 = self
            .block_on(
                self.server
                    .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'netwait_migrations'")
                    .bind(&self.target.database)
                    .fetch_one(),
            )
            .map_err(|e| self.error(e))?;
        if exists == 0 {
            return Ok(0);
        }
        let version: u32 = self
            .block_on(
                self.client
                    .query("SELECT toUInt32(max(version)) FROM netwait_migrations")
                    .fetch_one(),
            )
            .map_err(|e| self.error(e))?;
        Ok(version)
    }

    /// Fails unless the schema is the one this netwait writes.
    pub fn require_schema(&self) -> Result<(), Error> {
        let needed = crate::schema::MIGRATIONS.last().map_or(0, |m| m.version);
        let found = self.schema_version()?;
        if found != needed {
            return Err(Error::Schema {
                url: self.target.url.clone(),
                database: self.target.database.clone(),
                found,
                needed,
            });
        }
        Ok(())
    }
}

/// Creates or upgrades the schema; returns the versions applied now. Give it a
/// connection of [`Conn::connect`] to wait for a server that is not up yet.
pub fn migrate(conn: &Conn) -> Result<Vec<u32>, Error> {
    let db = &conn.target.database;
    let create = format!("CREATE DATABASE IF NOT EXISTS `{}`", db.replace('`', "\\`"));
    conn.block_on(conn.server.query(&create).execute())
        .map_err(|e| conn.error(e))?;
    conn.block_on(conn.client.query(crate::schema::MIGRATIONS_TABLE).execute())
        .map_err(|e| conn.error(e))?;
    let found = conn.schema_version()?;
    let mut applied = Vec::new();
    for m in crate::schema::MIGRATIONS
        .iter()
        .filter(|m| m.version > found)
    {
        for column in (m.columns)() {
            let present: u64 = conn
                .block_on(conn.client.query(&column.present_sql()).fetch_one())
                .map_err(|e| conn.error(e))?;
            if present == 0 {
                conn.block_on(conn.client.query(&column.statement()).execute())
                    .map_err(|e| conn.error(e))?;
            }
        }
        for sql in (m.statements)() {
            conn.block_on(conn.client.query(&sql).execute())
                .map_err(|e| conn.error(e))?;
        }
        conn.block_on(
            conn.client
                .query("INSERT INTO netwait_migrations (version, name) VALUES (?, ?)")
                .bind(m.version)
                .bind(m.name)
                .execute(),
        )
        .map_err(|e| conn.error(e))?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}
