//! The `Stats` service: Table 1, the SLA year view and the volume check.

use crate::convert;
use crate::state::{AppState, wall_ms};
use netwait_aggregator::domain::config::{threshold_from_secs, valid_share};
use netwait_aggregator::domain::reports::Half;
use netwait_aggregator::domain::time::{Millis, parse_date};
use netwait_proto::v1 as pb;
use pb::stats_server::Stats;
use tonic::{Request, Response, Status};

pub struct StatsService {
    state: AppState,
}

impl StatsService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn threshold(s: Option<f64>) -> Result<Option<Millis>, Status> {
    s.map(|s| {
        threshold_from_secs(s)
            .ok_or_else(|| Status::invalid_argument("threshold_s must be > 0 and <= 86400"))
    })
    .transpose()
}

fn line(l: Option<String>) -> Result<Option<String>, Status> {
    match l {
        Some(l) if l.is_empty() || l.chars().count() > 128 => {
            Err(Status::invalid_argument("line must be 1 to 128 characters"))
        }
        other => Ok(other),
    }
}

/// Characters of a bad argument quoted back in an error at most (a reply's message
/// travels in a header: echoing a huge argument would make the reply itself fail).
const QUOTED_CHARS: usize = 32;

/// `text` for an error message: quoted, at most [`QUOTED_CHARS`] of it.
fn quoted_prefix(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

fn date(field: &str, text: &str) -> Result<jiff::civil::Date, Status> {
    parse_date(text).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{field} must be a date YYYY-MM-DD, got {}",
            quoted_prefix(text)
        ))
    })
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
        let line = line(r.line)?;
        let now = wall_ms();
        let t = self
            .state
            .query(move |e| e.table1(now, from, to, line, threshold))
            .await?;
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
        let year = i16::try_from(r.year)
            .ok()
            .filter(|y| (1970..=2100).contains(y))
            .ok_or_else(|| Status::invalid_argument("year must be within 1970..=2100"))?;
        if r.target.is_some_and(|t| !valid_share(t)) {
            return Err(Status::invalid_argument("target must be within 0..=1"));
        }
        let threshold = threshold(r.threshold_s)?;
        let line = line(r.line)?;
        let now = wall_ms();
        let y = self
            .state
            .query(move |e| e.sla_year(now, year, line, threshold, r.target))
            .await?;
        let mut reply = convert::sla_year(&y);
        reply.threshold_s = r.threshold_s.unwrap_or(reply.threshold_s);
        Ok(Response::new(reply))
    }

    async fn get_volume_check(
        &self,
        req: Request<pb::VolumeRequest>,
    ) -> Result<Response<pb::VolumeCheck>, Status> {
        let r = req.into_inner();
        let half = Half::parse(&r.half)
            .ok_or_else(|| Status::invalid_argument("half must be YYYY-H1 or YYYY-H2"))?;
        let now = wall_ms();
        let v = self.state.query(move |e| e.volume(now, half)).await?;
        Ok(Response::new(convert::volume(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;
    use netwait_aggregator::store::embedded::EmbeddedStore;
    use pb::stats_client::StatsClient;

    #[test]
    fn bad_arguments_are_quoted_short() {
        assert_eq!(quoted_prefix("2019-3-4"), "\"2019-3-4\"");
        let long = "é".repeat(40);
        assert_eq!(
            quoted_prefix(&long),
            format!("{:?}… (80 bytes)", "é".repeat(32))
        );
    }

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
