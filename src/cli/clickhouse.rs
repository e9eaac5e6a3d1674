//! The ClickHouse side of the CLI: `--clickhouse URL [--database D]`, `netwait
//! migrate`, the engine on the ClickHouse store, and `stats --clickhouse` answered
//! from SQL (the api role's queries, without a server).

use super::config::Settings;
use super::output;
use anyhow::Context;
use clap::Args;
use netwait_aggregator::domain::arguments;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::Engine;
use netwait_aggregator::published::Answers;
use netwait_clickhouse::answers::SqlAnswers;
use netwait_clickhouse::{ClickHouseStore, Conn, DEFAULT_DATABASE, Target};

#[derive(Args, Debug, Clone, Default)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL (e.g. http://127.0.0.1:8123): use the ClickHouse store.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
    /// ClickHouse database (one contract per database), with --clickhouse.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_DATABASE, requires = "clickhouse")]
    pub database: String,
}

impl ClickHouseArgs {
    pub fn target(&self) -> Option<Target> {
        self.clickhouse.as_ref().map(|url| Target {
            url: url.clone(),
            database: self.database.clone(),
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
    let conn = Conn::new(target.clone())?;
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
pub fn open_engine(target: &Target, settings: Settings) -> anyhow::Result<(Engine, Pseudonymizer)> {
    let opening = || {
        format!(
            "opening the ClickHouse store {} at {}",
            target.database, target.url
        )
    };
    let store = ClickHouseStore::open(target.clone()).with_context(opening)?;
    let secrets = store.secrets(settings.caller_key).with_context(opening)?;
    let engine =
        Engine::open(Box::new(store), secrets.dedupe, settings.metrics).with_context(opening)?;
    Ok((engine, Pseudonymizer::new(secrets.caller)))
}

/// The reports of `stats --clickhouse`.
pub enum Report {
    Table1 {
        from: String,
        to: String,
        line: Option<String>,
        threshold: Option<f64>,
    },
    Sla {
        year: i32,
        line: Option<String>,
        threshold: Option<f64>,
        target: Option<f64>,
    },
    Volume {
        half: String,
    },
}

/// Answers one report from the database's SQL, argument rules as the gRPC service's.
pub fn stats(target: Target, settings: Settings, report: Report, json: bool) -> anyhow::Result<()> {
    let answers = SqlAnswers::open(target, settings.metrics)?;
    let check_line = |line: Option<&str>| -> anyhow::Result<()> {
        if let Some(l) = line {
            let lines = answers.lines()?;
            arguments::line(l, lines.iter().map(String::as_str)).context("--line")?;
        }
        Ok(())
    };
    let threshold = |t: Option<f64>| -> anyhow::Result<Option<i64>> {
        t.map(|s| arguments::threshold_ms_from_secs(s).context("--threshold"))
            .transpose()
    };
    let now = netwait_api::state::wall_ms();
    match report {
        Report::Table1 {
            from,
            to,
            line,
            threshold: t,
        } => {
            let from_date = arguments::date(&from).context("--from")?;
            let to_date = arguments::date(&to).context("--to")?;
            anyhow::ensure!(
                from_date <= to_date,
                "--from must not be after --to (--to is exclusive)"
            );
            let ms = threshold(t)?;
            check_line(line.as_deref())?;
            let t1 = answers.checked(|a| a.table1(now, from_date, to_date, line, ms))?;
            let mut reply = netwait_api::convert::table1(&t1);
            reply.threshold_s = t.unwrap_or(reply.threshold_s);
            output::table1(&reply, json)
        }
        Report::Sla {
            year,
            line,
            threshold: t,
            target,
        } => {
            let year = arguments::year(i64::from(year)).context("--year")?;
            let ms = threshold(t)?;
            if let Some(x) = target {
                arguments::target(x, answers.answer_config().grave_floor).context("--target")?;
            }
            check_line(line.as_deref())?;
            let y = answers.checked(|a| a.sla_year(now, year, line, ms, target))?;
            let mut reply = netwait_api::convert::sla_year(&y);
            reply.threshold_s = t.unwrap_or(reply.threshold_s);
            output::sla(&reply, json)
        }
        Report::Volume { half } => {
            let half = arguments::half(&half).context("--half")?;
            let v = answers.checked(|a| a.volume(now, half))?;
            output::volume(&netwait_api::convert::volume(&v), json)
        }
    }
}
