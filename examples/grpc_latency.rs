//! Latency of a warm gRPC client: `N` GetTable1 calls one after another on one
//! connection (after one warm-up call), p50 / p99 / max.
//!
//! ```sh
//! cargo run --example grpc_latency -- 127.0.0.1:50051 2019-03-01 2019-04-01 200
//! ```

use netwait_proto::v1::Table1Request;
use netwait_proto::v1::stats_client::StatsClient;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, from, to, calls] = args.as_slice() else {
        return Err("usage: grpc_latency HOST:PORT FROM TO CALLS".into());
    };
    let calls: usize = calls.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // tonic's client channel sets TCP_NODELAY by default: what varies is the server.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
            .connect()
            .await?;
        let mut client = StatsClient::new(channel);
        let request = Table1Request {
            from: from.clone(),
            to: to.clone(),
            line: None,
            threshold_s: None,
        };
        client.get_table1(request.clone()).await?;
        let mut took = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            client.get_table1(request.clone()).await?;
            took.push(t.elapsed());
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{calls} GetTable1 {from}..{to}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(at(0.50)),
            ms(at(0.99)),
            ms(took[took.len() - 1])
        );
        Ok(())
    })
}
