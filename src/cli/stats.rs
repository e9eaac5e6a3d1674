//! `netwait stats`: Table 1, the SLA year view and the volume check, from a server
//! (`--server`) or straight from a data directory (`--data`, no server needed). Both go
//! through the same service code, so they validate and compute identically.

use super::config::{Use, open_engine};
use super::{StoreArgs, output};
use clap::{Args, Subcommand};
use netwait_api::state::AppState;
use netwait_api::stats::StatsService;
use netwait_proto::v1 as pb;
use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::stats_server::Stats;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct Where {
    /// gRPC address of a running `netwait serve` (http://host:port or host:port).
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    server: Option<String>,
    /// Read a data directory directly instead (it must not be served at the same time).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Configuration file for --data.
    #[arg(long, requires = "data")]
    config: Option<PathBuf>,
    /// Print one JSON object with the spec's keys.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Query {
    /// Table 1 (seed §1.2) for [from, to) in Europe/Rome local dates.
    Table1 {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        from: String,
        /// Exclusive.
        #[arg(long)]
        to: String,
        #[arg(long)]
        line: Option<String>,
        /// SLA threshold T in seconds (default 140).
        #[arg(long)]
        threshold: Option<f64>,
    },
    /// Monthly SLA of a year, statuses, termination risk and penalty exposure.
    Sla {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        year: i32,
        #[arg(long)]
        line: Option<String>,
        #[arg(long)]
        threshold: Option<f64>,
        /// Target share (default 0.60).
        #[arg(long)]
        target: Option<f64>,
    },
    /// Bookings of a half-year against the contract's index (seed §1.6).
    Volume {
        #[command(flatten)]
        at: Where,
        /// YYYY-H1 or YYYY-H2.
        #[arg(long)]
        half: String,
    },
}

enum Backend {
    Remote(StatsClient<tonic::transport::Channel>),
    Local(StatsService),
}

impl Backend {
    async fn open(at: &Where) -> anyhow::Result<Self> {
        match (&at.server, &at.data) {
            (Some(server), _) => Ok(Self::Remote(StatsClient::new(
                super::connect(server).await?,
            ))),
            (None, Some(data)) => {
                let store = StoreArgs {
                    data: data.clone(),
                    config: at.config.clone(),
                };
                let (engine, pseudo) = open_engine(&store, Use::Queries)?;
                Ok(Self::Local(StatsService::new(AppState::new(
                    engine, pseudo,
                ))))
            }
            (None, None) => anyhow::bail!("give --server or --data"),
        }
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", s.code(), s.message())
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
