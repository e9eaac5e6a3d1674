//! The ClickHouse side of the CLI: `--clickhouse URL [--database D]`, `netwait
//! migrate`, and the engine on the ClickHouse store (`stats --clickhouse` and `serve
//! --clickhouse` answer from SQL through the Stats service: see `netwait_api::stats`).

use super::config::Settings;
use anyhow::Context;
use clap::Args;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::Engine;
use netwait_clickhouse::{ClickHouseStore, Conn, DEFAULT_DATABASE, Retry, Target, WhenHeld};

#[derive(Args, Debug, Clone, Default)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL (e.g. http://127.0.0.1:8123): use the ClickHouse store.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
    /// ClickHouse database (one contract per database), with --clickhouse.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_DATABASE, requires = "clickhouse")]
    pub database: String,
    /// How long to wait for a ClickHouse server that cannot be reached (at start, and
    /// for each write afterwards), retrying with backoff and a warning per retry; then
    /// fail.
    #[arg(
        long,
        value_name = "S",
        default_value = "300",
        env = "NETWAIT_CLICKHOUSE_TIMEOUT",
        value_parser = super::positive_seconds
    )]
    pub clickhouse_timeout: std::time::Duration,
}

impl ClickHouseArgs {
    pub fn target(&self) -> Option<Target> {
        self.clickhouse.as_ref().map(|url| Target {
            url: url.clone(),
            database: self.database.clone(),
            retry: Retry {
                give_up_after: self.clickhouse_timeout,
                ..Retry::default()
            },
        })
    }
}

/// `netwait migrate`.
pub fn migrate(args: &ClickHouseArgs, print_sql: bool) -> anyhow::Result<()> {
    if print_sql {
        for sql in netwait_clickhouse::schema::all_statements() {
            println!("{sql};");
        }
        return Ok(());
    }
    let target = args
        .target()
        .context("give --clickhouse URL (or --print-sql)")?;
    let conn = Conn::connect(target.clone())?;
    let applied = netwait_clickhouse::migrate(&conn)?;
    let version = conn.schema_version()?;
    println!(
        "database {} at {}: schema version {version} ({} applied now)",
        target.database,
        target.url,
        applied.len()
    );
    Ok(())
}

/// The engine on the ClickHouse store of `target` (its keys kept in the database).
pub fn open_engine(
    target: &Target,
    settings: Settings,
    when_held: WhenHeld,
) -> anyhow::Result<(Engine, Pseudonymizer)> {
    let opening = || {
        format!(
            "opening the ClickHouse store {} at {}",
            target.database, target.url
        )
    };
    let store = ClickHouseStore::open(target.clone(), when_held).with_context(opening)?;
    let secrets = store.secrets(settings.caller_key).with_context(opening)?;
    let engine =
        Engine::open(Box::new(store), secrets.dedupe, settings.metrics).with_context(opening)?;
    Ok((engine, Pseudonymizer::new(secrets.caller)))
}
