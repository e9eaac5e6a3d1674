//! Latency of a warm gRPC client: `N` calls one after another on one connection (after
//! one warm-up call), p50 / p99 / max.
//!
//! ```sh
//! # GetTable1 of one period
//! cargo run --release --example grpc_latency -- 127.0.0.1:50051 2019-03-01 2019-04-01 200
//! # the query suite of a year: a month's and the year's GetTable1, GetSlaYear,
//! # GetVolumeCheck (configured threshold), the year's GetTable1 with T = 120 s
//! cargo run --release --example grpc_latency -- 127.0.0.1:50051 suite 2019 200
//! ```

use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::{SlaYearRequest, Table1Request, VolumeRequest};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

type Client = StatsClient<Channel>;

/// One kind of request, sent `calls` times after a warm-up.
enum Query {
    Table1(Table1Request),
    SlaYear(SlaYearRequest),
    Volume(VolumeRequest),
}

impl Query {
    async fn send(&self, client: &mut Client) -> Result<(), tonic::Status> {
        match self {
            Self::Table1(r) => client.get_table1(r.clone()).await.map(drop),
            Self::SlaYear(r) => client.get_sla_year(r.clone()).await.map(drop),
            Self::Volume(r) => client.get_volume_check(r.clone()).await.map(drop),
        }
    }
}

fn table1(from: String, to: String, threshold_s: Option<f64>) -> Query {
    Query::Table1(Table1Request {
        from,
        to,
        line: None,
        threshold_s,
    })
}

/// The suite of one year.
fn suite(year: i32) -> Vec<(String, Query)> {
    let (y, next) = (format!("{year}-01-01"), format!("{}-01-01", year + 1));
    vec![
        (
            format!("GetTable1 month {year}-03"),
            table1(format!("{year}-03-01"), format!("{year}-04-01"), None),
        ),
        (
            format!("GetTable1 year {year}"),
            table1(y.clone(), next.clone(), None),
        ),
        (
            format!("GetSlaYear {year}"),
            Query::SlaYear(SlaYearRequest {
                year,
                ..Default::default()
            }),
        ),
        (
            format!("GetVolumeCheck {year}-H1"),
            Query::Volume(VolumeRequest {
                half: format!("{year}-H1"),
            }),
        ),
        (
            format!("GetTable1 year {year} T=120s"),
            table1(y, next, Some(120.0)),
        ),
    ]
}

async fn measure(
    client: &mut Client,
    name: &str,
    query: &Query,
    calls: usize,
) -> Result<(), tonic::Status> {
    query.send(client).await?;
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        query.send(client).await?;
        took.push(t.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{calls} {name}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(took[took.len() - 1])
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, a, b, calls] = args.as_slice() else {
        return Err("usage: grpc_latency HOST:PORT (FROM TO | suite YEAR) CALLS".into());
    };
    let calls: usize = calls.parse()?;
    if calls == 0 {
        return Err("CALLS must be at least 1".into());
    }
    let queries = if a == "suite" {
        suite(b.parse()?)
    } else {
        vec![(
            format!("GetTable1 {a}..{b}"),
            table1(a.clone(), b.clone(), None),
        )]
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // tonic's client channel sets TCP_NODELAY by default: what varies is the server.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
            .connect()
            .await?;
        let mut client = StatsClient::new(channel);
        for (name, query) in &queries {
            measure(&mut client, name, query, calls).await?;
        }
        Ok(())
    })
}
