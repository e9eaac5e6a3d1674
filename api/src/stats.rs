//! The `Stats` service: Table 1, the SLA year view, the intervals and the volume check,
//! answered from the embedded engine's snapshot or from a ClickHouse database (the api
//! role): the same request checks and report code on either (`on_reports!`).

use crate::convert;
use crate::state::{AppState, wall_ms};
use netwait_aggregator::domain::arguments::{self, ArgumentError};
use netwait_aggregator::domain::reports::Every;
use netwait_aggregator::domain::time::Millis;
use netwait_aggregator::published::Answers;
use netwait_aggregator::published::Snapshot;
use netwait_clickhouse::answers::SqlAnswers;
use netwait_proto::v1 as pb;
use pb::stats_server::Stats;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// The longest period of one interval request (a leap year: 35,136 quarter hours).
pub const MAX_INTERVAL_DAYS: i32 = 366;

/// Where the reports are counted from.
#[derive(Clone)]
enum Reports {
    /// The embedded engine's published snapshot.
    Engine(AppState),
    /// A ClickHouse database's SQL, one report at a time on its connection.
    ClickHouse(Arc<Mutex<SqlAnswers>>),
}

pub struct StatsService {
    reports: Reports,
}

impl StatsService {
    /// The reports of `state`: its engine's snapshot, or the ClickHouse database it
    /// answers from ([`AppState::answering_from`]).
    pub fn new(state: AppState) -> Self {
        let reports = match &state.sql_reports {
            Some(sql) => Reports::ClickHouse(Arc::clone(sql)),
            None => Reports::Engine(state),
        };
        Self { reports }
    }

    /// The api role: reports from a ClickHouse database (`serve --clickhouse`, `stats
    /// --clickhouse`).
    pub fn clickhouse(answers: SqlAnswers) -> Self {
        Self {
            reports: Reports::ClickHouse(Arc::new(Mutex::new(answers))),
        }
    }
}

/// What a request's line is checked against: the lines the reports have calls of.
trait Lines {
    fn check_line(&self, line: Option<&str>) -> Result<(), Status>;
}

impl Lines for Snapshot {
    fn check_line(&self, line: Option<&str>) -> Result<(), Status> {
        match line {
            Some(l) => arguments::line(l, self.lines()).map_err(|e| invalid("line", e)),
            None => Ok(()),
        }
    }
}

impl Lines for SqlAnswers {
    fn check_line(&self, line: Option<&str>) -> Result<(), Status> {
        let Some(l) = line else {
            return Ok(());
        };
        let lines = self.lines().map_err(unavailable)?;
        arguments::line(l, lines.iter().map(String::as_str)).map_err(|e| invalid("line", e))
    }
}

/// ClickHouse could not answer (down, restarting: the client may retry).
fn unavailable(e: netwait_clickhouse::Error) -> Status {
    Status::unavailable(e.to_string())
}

/// Runs a report on the ClickHouse connection, off the async workers; a query that
/// failed fails the report.
async fn sql_query<T: Send + 'static>(
    sql: &Arc<Mutex<SqlAnswers>>,
    work: impl FnOnce(&SqlAnswers) -> T + Send + 'static,
) -> Result<T, Status> {
    let sql = Arc::clone(sql);
    tokio::task::spawn_blocking(move || {
        let answers = sql.lock().unwrap_or_else(|p| p.into_inner());
        answers.checked(work).map_err(unavailable)
    })
    .await
    .map_err(|e| Status::internal(format!("query task failed: {e}")))?
}

/// Runs `$body` with `$r` bound to the reports, a [`Snapshot`] or the [`SqlAnswers`]
/// (both [`Answers`] and [`Lines`]): one body, compiled for each.
macro_rules! on_reports {
    ($reports:expr, |$r:ident| -> $ret:ty $body:block) => {
        match $reports {
            Reports::Engine(state) => state.query(move |$r: &Snapshot| -> $ret { $body }).await,
            Reports::ClickHouse(sql) => {
                sql_query(sql, move |$r: &SqlAnswers| -> $ret { $body }).await
            }
        }
    };
    ($reports:expr, |$r:ident| $body:expr) => {
        match $reports {
            Reports::Engine(state) => state.query(move |$r: &Snapshot| $body).await,
            Reports::ClickHouse(sql) => sql_query(sql, move |$r: &SqlAnswers| $body).await,
        }
    };
}

/// A refused argument, named as the request names it.
fn invalid(field: &str, e: ArgumentError) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}

fn threshold(s: Option<f64>) -> Result<Option<Millis>, Status> {
    s.map(|s| arguments::threshold_ms_from_secs(s).map_err(|e| invalid("threshold_s", e)))
        .transpose()
}

fn date(field: &str, text: &str) -> Result<jiff::civil::Date, Status> {
    arguments::date(text).map_err(|e| invalid(field, e))
}

#[tonic::async_trait]
impl Stats for StatsService {
    async fn get_table1(
        &self,
        req: Request<pb::Table1Request>,
    ) -> Result<Response<pb::Table1>, Status> {
        let r = req.into_inner();
        let from = date("from", &r.from)?;
        let to = date("to", &r.to)?;
        if from > to {
            return Err(Status::invalid_argument(
                "from must not be after to (to is exclusive)",
            ));
        }
        let threshold = threshold(r.threshold_s)?;
        let line = r.line;
        let now = wall_ms();
        let t = on_reports!(&self.reports, |e| -> Result<_, Status> {
            e.check_line(line.as_deref())?;
            Ok(e.table1(now, from, to, line, threshold))
        })??;
        let mut reply = convert::table1(&t);
        // Echo T as asked (it is applied to whole-millisecond waits).
        reply.threshold_s = r.threshold_s.unwrap_or(reply.threshold_s);
        Ok(Response::new(reply))
    }

    async fn get_sla_year(
        &self,
        req: Request<pb::SlaYearRequest>,
    ) -> Result<Response<pb::SlaYear>, Status> {
        let r = req.into_inner();
        let year = arguments::year(i64::from(r.year)).map_err(|e| invalid("year", e))?;
        let threshold = threshold(r.threshold_s)?;
        let (line, target) = (r.line, r.target);
        let now = wall_ms();
        let y = on_reports!(&self.reports, |e| -> Result<_, Status> {
            if let Some(t) = target {
                arguments::target(t, e.answer_config().grave_floor)
                    .map_err(|e| invalid("target", e))?;
            }
            e.check_line(line.as_deref())?;
            Ok(e.sla_year(now, year, line, threshold, target))
        })??;
        let mut reply = convert::sla_year(&y);
        reply.threshold_s = r.threshold_s.unwrap_or(reply.threshold_s);
        Ok(Response::new(reply))
    }

    async fn get_volume_check(
        &self,
        req: Request<pb::VolumeRequest>,
    ) -> Result<Response<pb::VolumeCheck>, Status> {
        let r = req.into_inner();
        let half = arguments::half(&r.half).map_err(|e| invalid("half", e))?;
        let now = wall_ms();
        let v = on_reports!(&self.reports, |e| e.volume(now, half))?;
        Ok(Response::new(convert::volume(&v)))
    }

    async fn get_intervals(
        &self,
        req: Request<pb::IntervalsRequest>,
    ) -> Result<Response<pb::Intervals>, Status> {
        let r = req.into_inner();
        let from = date("from", &r.from)?;
        let to = date("to", &r.to)?;
        if from > to {
            return Err(Status::invalid_argument(
                "from must not be after to (to is exclusive)",
            ));
        }
        if (to - from).get_days() > MAX_INTERVAL_DAYS {
            return Err(Status::invalid_argument(format!(
                "to: at most {MAX_INTERVAL_DAYS} days of intervals in one request"
            )));
        }
        let minutes = if r.every_minutes == 0 {
            15
        } else {
            r.every_minutes
        };
        let every = Every::from_minutes(minutes).ok_or_else(|| {
            Status::invalid_argument(format!("every_minutes: {minutes:.32} is not 15, 30 or 60"))
        })?;
        let threshold = threshold(r.threshold_s)?;
        let line = r.line;
        let now = wall_ms();
        let report = on_reports!(&self.reports, |e| -> Result<_, Status> {
            e.check_line(line.as_deref())?;
            Ok(e.intervals(now, (from, to), line, threshold, every))
        })??;
        let mut reply = convert::intervals(&report);
        reply.threshold_s = r.threshold_s.unwrap_or(reply.threshold_s);
        Ok(Response::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;
    use netwait_aggregator::store::embedded::EmbeddedStore;
    use pb::stats_client::StatsClient;

    #[tokio::test]
    async fn a_huge_bad_date_is_an_invalid_argument_with_a_short_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer::start(EmbeddedStore::open(dir.path()).expect("store")).await;
        let mut stats = StatsClient::new(server.channel.clone());
        let err = stats
            .get_table1(pb::Table1Request {
                from: "x".repeat(1 << 20),
                to: "2019-01-01".into(),
                line: None,
                threshold_s: None,
            })
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().len() < 200, "{}", err.message());
        server.stop().await;
    }
}
