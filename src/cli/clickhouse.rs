//! The ClickHouse side of the CLI: `--clickhouse URL [--database D]`, `netwait
//! migrate`, and the engine on the ClickHouse store (`stats --clickhouse` and `serve
//! --clickhouse` answer from SQL through the Stats service: see `netwait_api::stats`).

use super::config::Settings;
use super::deployment::{self, Deployment, StoreFlags, StoreKind};
use anyhow::Context;
use clap::Args;
use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::Engine;
use netwait_clickhouse::{ClickHouseStore, Conn, Retry, Shard, Target, WhenHeld};

#[derive(Args, Debug, Clone, Default)]
pub struct ClickHouseArgs {
    /// Where the figures are kept: `embedded` (the data directory of --data) or
    /// `clickhouse`. Default: --clickhouse-url given, else NETWAIT_STORE (not applied
    /// with --data), else the configuration's `[store] kind`, else embedded.
    #[arg(long, value_enum, value_name = "KIND")]
    pub store: Option<StoreKind>,
    /// ClickHouse HTTP URL (e.g. http://127.0.0.1:8123): use the ClickHouse store. With
    /// --store clickhouse and no URL: NETWAIT_CLICKHOUSE_URL, else `[store]
    /// clickhouse_url`.
    #[arg(long, visible_alias = "clickhouse-url", value_name = "URL")]
    pub clickhouse: Option<String>,
    /// ClickHouse database (one contract per database), with the ClickHouse store.
    /// Default: NETWAIT_CLICKHOUSE_DB, else `[store] clickhouse_db`, else netwait.
    #[arg(long, visible_alias = "clickhouse-db", value_name = "NAME")]
    pub database: Option<String>,
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
    /// Where a writer on the ClickHouse store keeps its checkpoints (a directory per
    /// database under it): an open replays only the commits after the last one, and the
    /// settled calls' states and dedupe keys stay in its files, not in memory. Default:
    /// `[store] state_dir`, else $XDG_STATE_HOME/netwait, else ~/.local/state/netwait.
    #[arg(long, value_name = "DIR", env = "NETWAIT_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Seconds a writer on the ClickHouse store keeps a call's state in memory after
    /// the call's last event, counted back from the newest event (then it leaves at the
    /// next checkpoint, and is read back from it when a late event or a query needs
    /// it). The default, a day, is well past the 6 hours after which an open call
    /// counts as unresolved.
    #[arg(
        long,
        value_name = "S",
        default_value = "86400",
        env = "NETWAIT_SETTLE_WINDOW",
        value_parser = super::positive_seconds
    )]
    pub settle_window: std::time::Duration,
    /// MiB of the log's records a writer on the ClickHouse store replays at a time when
    /// its state directory is behind (a new host): it checkpoints between windows, so
    /// that only what can still change stays in memory (0: the whole log at once).
    #[arg(
        long,
        value_name = "MIB",
        default_value = "64",
        env = "NETWAIT_REPLAY_WINDOW_MIB"
    )]
    pub replay_window: u64,
}

/// Where a writer on the ClickHouse store keeps its checkpoints, and what it keeps in
/// memory (see [`ClickHouseArgs::state_dir`], [`ClickHouseArgs::settle_window`]).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub root: std::path::PathBuf,
    pub settle_window: std::time::Duration,
    /// Bytes of records an open replays at a time ([`ClickHouseArgs::replay_window`]).
    pub replay_window_bytes: u64,
}

impl ClickHouseArgs {
    /// The checkpoints of these flags (the state directory: the flag or
    /// NETWAIT_STATE_DIR, else `file`'s, else under the user's state home; `None` when
    /// there is no home to put it in).
    pub fn checkpoints(&self, file: Option<&std::path::Path>) -> Option<Checkpoints> {
        let root = match self.state_dir.as_deref().or(file) {
            Some(dir) => dir.to_owned(),
            None => {
                let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                    Some(state) => std::path::PathBuf::from(state),
                    None => {
                        std::path::PathBuf::from(std::env::var_os("HOME")?).join(".local/state")
                    }
                };
                base.join("netwait")
            }
        };
        Some(Checkpoints {
            root,
            settle_window: self.settle_window,
            replay_window_bytes: self.replay_window.saturating_mul(1 << 20),
        })
    }
}

impl ClickHouseArgs {
    /// The ClickHouse store these flags, the environment and the configuration `file`
    /// choose (`None`: the embedded one); `data_given`: --data was on the command line.
    pub fn resolve(&self, file: &Deployment, data_given: bool) -> anyhow::Result<Option<Target>> {
        let flags = StoreFlags {
            kind: self.store,
            url: self.clickhouse.as_deref(),
            db: self.database.as_deref(),
            data_given,
        };
        let chosen = deployment::store(&flags, file, &deployment::process_env)?;
        Ok(chosen.map(|c| Target {
            url: c.url,
            database: c.database,
            retry: Retry {
                give_up_after: self.clickhouse_timeout,
                ..Retry::default()
            },
        }))
    }

    /// [`Self::resolve`] without a configuration file nor --data (`migrate`, `stats`).
    pub fn target(&self) -> anyhow::Result<Option<Target>> {
        self.resolve(&Deployment::default(), false)
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
        .target()?
        .context("give --clickhouse-url URL, or --store clickhouse with NETWAIT_CLICKHOUSE_URL (or --print-sql)")?;
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

/// The engine on the ClickHouse store of `target` (its keys kept in the database); a
/// writer's checkpoints as `checkpoints` says.
pub fn open_engine(
    target: &Target,
    settings: Settings,
    when_held: WhenHeld,
    checkpoints: Option<&Checkpoints>,
) -> anyhow::Result<(Engine, Pseudonymizer)> {
    let store = ClickHouseStore::open(target.clone(), when_held)
        .with_context(|| opening(target, &Shard::whole()))?;
    let secrets = store
        .secrets(settings.caller_key)
        .with_context(|| opening(target, &Shard::whole()))?;
    let caller = secrets.caller;
    let engine = engine_on(store, &secrets, settings.metrics, checkpoints)?;
    Ok((engine, Pseudonymizer::new(caller)))
}

fn opening(target: &Target, shard: &Shard) -> String {
    let of = match shard.is_whole() {
        true => String::new(),
        false => format!(" ({shard})"),
    };
    format!(
        "opening the ClickHouse store {} at {}{of}",
        target.database, target.url
    )
}

/// The engine on `store` opened, its checkpoints kept as `checkpoints` says.
fn engine_on(
    mut store: ClickHouseStore,
    secrets: &netwait_aggregator::store::secrets::Secrets,
    metrics: MetricsConfig,
    checkpoints: Option<&Checkpoints>,
) -> anyhow::Result<Engine> {
    let name = format!("opening the ClickHouse store {}", store_name(&store));
    let kept = checkpoints.map(|c| store.keep_checkpoints(&c.root, secrets));
    match &kept {
        Some(Ok(dir)) => tracing::info!(dir = %dir.display(), "checkpoints kept here"),
        Some(Err(error)) => tracing::warn!(
            %error,
            "no checkpoints: every open replays the whole log, and every call stays in memory"
        ),
        None => {}
    }
    let engine = match (&kept, checkpoints) {
        (Some(Ok(_)), Some(c)) => {
            store.replay_in_windows(c.replay_window_bytes);
            Engine::open_settling(Box::new(store), secrets.dedupe, metrics, c.settle_window)
        }
        _ => Engine::open(Box::new(store), secrets.dedupe, metrics),
    }
    .with_context(|| name)?;
    Ok(engine)
}

fn store_name(store: &ClickHouseStore) -> String {
    let t = &store.conn().target;
    format!("{} at {}", t.database, t.url)
}

/// The ClickHouse store of aggregators that share the partitions of their group: the
/// database made shared ([`ClickHouseStore::share`]), and an engine per partition's
/// shard, each its writer.
pub struct SharedStore {
    target: Target,
    metrics: MetricsConfig,
    checkpoints: Option<Checkpoints>,
    secrets: netwait_aggregator::store::secrets::Secrets,
}

impl SharedStore {
    pub fn prepare(
        target: &Target,
        settings: Settings,
        checkpoints: Option<&Checkpoints>,
    ) -> anyhow::Result<Self> {
        let secrets = ClickHouseStore::share(target.clone(), WhenHeld::Wait, settings.caller_key)
            .with_context(|| {
            format!(
                "sharing the ClickHouse store {} at {} by partitions",
                target.database, target.url
            )
        })?;
        Ok(Self {
            target: target.clone(),
            metrics: settings.metrics,
            checkpoints: checkpoints.cloned(),
            secrets,
        })
    }

    pub fn pseudonymizer(&self) -> Pseudonymizer {
        Pseudonymizer::new(self.secrets.caller)
    }

    pub fn key_hasher(&self) -> KeyHasher {
        KeyHasher::new(self.secrets.dedupe)
    }

    /// The engine of the shard of `partition` of `topic`, once its lease is this
    /// process's (the member it was taken from hands it over, or is found gone).
    pub fn open(&self, topic: &str, partition: i32) -> anyhow::Result<Engine> {
        let shard = Shard::partition(topic, partition)
            .with_context(|| format!("topic {topic:?}: not a Kafka topic name"))?;
        let store = ClickHouseStore::open_shard(self.target.clone(), shard.clone(), WhenHeld::Wait)
            .with_context(|| opening(&self.target, &shard))?;
        engine_on(
            store,
            &self.secrets,
            self.metrics.clone(),
            self.checkpoints.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ClickHouseArgs;
    use std::path::Path;

    #[test]
    fn the_state_directory_is_the_flag_else_the_configuration_s() {
        let mut args = ClickHouseArgs {
            state_dir: Some("/flag".into()),
            settle_window: std::time::Duration::from_secs(60),
            ..ClickHouseArgs::default()
        };
        let file = Some(Path::new("/file"));
        let c = args.checkpoints(file).expect("a directory");
        assert_eq!(
            (c.root.as_path(), c.settle_window.as_secs()),
            (Path::new("/flag"), 60)
        );
        args.state_dir = None;
        assert_eq!(
            args.checkpoints(file).expect("a directory").root,
            Path::new("/file")
        );
    }
}
