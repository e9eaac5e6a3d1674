//! `netwait stats`: Table 1, the SLA year view and the volume check, from a server
//! (`--server`) or straight from a data directory (`--data`, no server needed). Both go
//! through the same service code, so they validate and compute identically.

use super::config::{Use, open_engine};
use super::{StoreArgs, output};
use anyhow::Context;
use clap::{Args, Subcommand};
use netwait_aggregator::domain::arguments::{self, ArgumentError};
use netwait_api::state::AppState;
use netwait_api::stats::StatsService;
use netwait_clickhouse::answers::SqlAnswers;
use netwait_proto::v1 as pb;
use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::stats_server::Stats;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct Where {
    /// gRPC address of a running `netwait serve` (http://host:port or host:port).
    #[arg(long, conflicts_with_all = ["data", "clickhouse", "store"], required_unless_present_any = ["data", "clickhouse", "store"])]
    server: Option<String>,
    /// Read a data directory directly instead (it must not be served at the same time).
    #[arg(long, conflicts_with_all = ["clickhouse", "store"])]
    data: Option<PathBuf>,
    /// Or answer from a ClickHouse database's SQL (the api role, no server needed).
    #[command(flatten)]
    clickhouse: super::clickhouse::ClickHouseArgs,
    /// Configuration file, with --data only (a server uses its own).
    #[arg(long, conflicts_with = "server")]
    config: Option<PathBuf>,
    /// Print one JSON object with the spec's keys.
    #[arg(long)]
    json: bool,
    /// With --data: `--calendar cup|24x7` (a server uses its own).
    #[command(flatten)]
    calendar: super::CalendarArg,
    /// With --server: TLS trust and the bearer token.
    #[command(flatten)]
    client: super::ClientArgs,
}

/// `--threshold`: seconds, 1 to 86400, at most three decimals (read exactly, as text).
/// Sent on as the double nearest to it, which the service converts back exactly.
fn threshold_arg(text: &str) -> Result<f64, ArgumentError> {
    arguments::threshold_ms_from_text(text).map(|ms| ms as f64 / 1000.0)
}

fn year_arg(text: &str) -> Result<i32, String> {
    let y: i64 = text
        .parse()
        .map_err(|_| format!("{text:.32} is not a year"))?;
    arguments::year(y).map(i32::from).map_err(|e| e.to_string())
}

fn date_arg(text: &str) -> Result<String, ArgumentError> {
    arguments::date(text).map(|_| text.to_owned())
}

fn half_arg(text: &str) -> Result<String, ArgumentError> {
    arguments::half(text).map(|_| text.to_owned())
}

/// `--every`: 15m, 30m or 60m (minutes).
fn every_arg(text: &str) -> Result<u32, String> {
    match text {
        "15m" => Ok(15),
        "30m" => Ok(30),
        "60m" | "1h" => Ok(60),
        _ => Err(format!("{text:.32} is not 15m, 30m or 60m")),
    }
}

fn share_arg(text: &str) -> Result<f64, String> {
    let x: f64 = text
        .parse()
        .map_err(|_| format!("{text:.32} is not a number"))?;
    arguments::share(x).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum Query {
    /// Table 1 (seed §1.2) for [from, to) in Europe/Rome local dates.
    Table1 {
        #[command(flatten)]
        at: Where,
        /// First local date of the period, YYYY-MM-DD.
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        from: String,
        /// Local date after the period (exclusive), YYYY-MM-DD.
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        to: String,
        /// Only this service line (exactly as in the events, e.g. cup, prelievi).
        #[arg(long)]
        line: Option<String>,
        /// SLA threshold T on the net wait, seconds: 1 to 86400, at most three decimals
        /// (default 140, or the configuration's).
        #[arg(long, value_name = "SECONDS", value_parser = threshold_arg, allow_negative_numbers = true)]
        threshold: Option<f64>,
    },
    /// Monthly SLA of a year, statuses, termination risk and penalty exposure.
    Sla {
        #[command(flatten)]
        at: Where,
        /// Calendar year, 1970 to 2100.
        #[arg(long, value_name = "YEAR", value_parser = year_arg, allow_negative_numbers = true)]
        year: i32,
        /// Only this service line (exactly as in the events, e.g. cup, prelievi).
        #[arg(long)]
        line: Option<String>,
        /// SLA threshold T on the net wait, seconds: 1 to 86400, at most three decimals
        /// (default 140, or the configuration's).
        #[arg(long, value_name = "SECONDS", value_parser = threshold_arg, allow_negative_numbers = true)]
        threshold: Option<f64>,
        /// Target share, above the grave floor and at most 1 (default 0.60).
        #[arg(long, value_name = "SHARE", value_parser = share_arg, allow_negative_numbers = true)]
        target: Option<f64>,
    },
    /// Figures per 15, 30 or 60 minutes of [from, to) in Europe/Rome local dates (every
    /// interval, in time order; summed they are the period's Table 1 and SLA figures).
    Intervals {
        #[command(flatten)]
        at: Where,
        /// First local date of the period, YYYY-MM-DD.
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        from: String,
        /// Local date after the period (exclusive), YYYY-MM-DD; at most 366 days.
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        to: String,
        /// Bucket length: 15m, 30m or 60m.
        #[arg(long, value_name = "15m|30m|60m", value_parser = every_arg, default_value = "15m")]
        every: u32,
        /// Only this service line (exactly as in the events, e.g. cup, prelievi).
        #[arg(long)]
        line: Option<String>,
        /// SLA threshold T on the net wait, seconds: 1 to 86400, at most three decimals
        /// (default 140, or the configuration's).
        #[arg(long, value_name = "SECONDS", value_parser = threshold_arg, allow_negative_numbers = true)]
        threshold: Option<f64>,
        /// One CSV row per interval (with a header row) instead of the table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Bookings of a half-year against the contract's index (seed §1.6).
    Volume {
        #[command(flatten)]
        at: Where,
        /// YYYY-H1 or YYYY-H2.
        #[arg(long, value_name = "YYYY-HN", value_parser = half_arg)]
        half: String,
    },
}

enum Backend {
    Remote(StatsClient<super::Client>),
    Local(StatsService),
}

impl Backend {
    async fn open(at: &Where) -> anyhow::Result<Self> {
        match (&at.server, &at.data) {
            (Some(_), _) if at.calendar.calendar.is_some() => {
                anyhow::bail!("--calendar goes with --data (a server uses its own calendar)")
            }
            (Some(server), _) => Ok(Self::Remote(
                StatsClient::new(super::connect(server, &at.client).await?)
                    // A year of quarter hours is about 5 MB.
                    .max_decoding_message_size(64 << 20),
            )),
            (None, Some(data)) => {
                let store = StoreArgs {
                    data: data.clone(),
                    config: at.config.clone(),
                    calendar: at.calendar.calendar,
                    clickhouse: None,
                    checkpoints: None,
                };
                let (engine, pseudo) = open_engine(&store, Use::Queries)?;
                Ok(Self::Local(StatsService::new(AppState::for_queries(
                    engine, pseudo,
                ))))
            }
            (None, None) => {
                let target = at
                    .clickhouse
                    .target()?
                    .context("give --server, --data or --clickhouse-url")?;
                // The api role's service on the database's SQL (its client blocks on a
                // runtime of its own: opened off the async workers).
                let no_data = StoreArgs {
                    data: PathBuf::new(),
                    config: None,
                    calendar: None,
                    clickhouse: None,
                    checkpoints: None,
                };
                let settings = super::config::load_file(at.config.clone(), &no_data)?;
                let answers =
                    tokio::task::spawn_blocking(move || SqlAnswers::open(target, settings.metrics))
                        .await??;
                Ok(Self::Local(StatsService::clickhouse(answers)))
            }
        }
    }
}

/// Request fields as the flags that set them.
const FLAGS: [(&str, &str); 8] = [
    ("every_minutes", "--every"),
    ("threshold_s", "--threshold"),
    ("target", "--target"),
    ("line", "--line"),
    ("from", "--from"),
    ("to", "--to"),
    ("year", "--year"),
    ("half", "--half"),
];

/// A refused request says which flag was wrong, without gRPC's wording; other failures
/// keep their status code (from a server, it says what to do: `UNAVAILABLE`, ...).
fn status(s: tonic::Status) -> anyhow::Error {
    let message = s.message();
    if s.code() != tonic::Code::InvalidArgument {
        return anyhow::anyhow!("{message} ({:?})", s.code());
    }
    for (field, flag) in FLAGS {
        if let Some(rest) = message
            .strip_prefix(field)
            .and_then(|r| r.strip_prefix(": "))
        {
            return anyhow::anyhow!("{flag}: {rest}");
        }
    }
    anyhow::anyhow!("{message}")
}

pub fn run(query: Query) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    rt.block_on(async {
        match query {
            Query::Table1 {
                at,
                from,
                to,
                line,
                threshold,
            } => {
                let req = pb::Table1Request {
                    from,
                    to,
                    line,
                    threshold_s: threshold,
                };
                let t = match Backend::open(&at).await? {
                    Backend::Remote(mut c) => c.get_table1(req).await,
                    Backend::Local(s) => s.get_table1(tonic::Request::new(req)).await,
                }
                .map_err(status)?
                .into_inner();
                output::table1(&t, at.json)
            }
            Query::Sla {
                at,
                year,
                line,
                threshold,
                target,
            } => {
                let req = pb::SlaYearRequest {
                    year,
                    line,
                    threshold_s: threshold,
                    target,
                };
                let y = match Backend::open(&at).await? {
                    Backend::Remote(mut c) => c.get_sla_year(req).await,
                    Backend::Local(s) => s.get_sla_year(tonic::Request::new(req)).await,
                }
                .map_err(status)?
                .into_inner();
                output::sla(&y, at.json)
            }
            Query::Intervals {
                at,
                from,
                to,
                every,
                line,
                threshold,
                csv,
            } => {
                let req = pb::IntervalsRequest {
                    from,
                    to,
                    every_minutes: every,
                    line,
                    threshold_s: threshold,
                };
                let r = match Backend::open(&at).await? {
                    Backend::Remote(mut c) => c.get_intervals(req).await,
                    Backend::Local(s) => s.get_intervals(tonic::Request::new(req)).await,
                }
                .map_err(status)?
                .into_inner();
                if csv {
                    output::intervals_csv(&r)
                } else {
                    output::intervals(&r, at.json)
                }
            }
            Query::Volume { at, half } => {
                let req = pb::VolumeRequest { half };
                let v = match Backend::open(&at).await? {
                    Backend::Remote(mut c) => c.get_volume_check(req).await,
                    Backend::Local(s) => s.get_volume_check(tonic::Request::new(req)).await,
                }
                .map_err(status)?
                .into_inner();
                output::volume(&v, at.json)
            }
        }
    })
}
