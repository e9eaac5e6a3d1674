//! How long `netwait serve` takes to be ready on a store: from spawning it to the first
//! health check answered `SERVING` (polled every 2 ms), then the server is killed (no
//! checkpoint, so the store is left as it was). Best and median of `ROUNDS`.
//!
//! ```sh
//! cargo run --release --example serve_ready -- ./target/release/netwait DIR 127.0.0.1:50071 5
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn serving(addr: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    // 1 = SERVING
    reply.is_ok_and(|r| r.into_inner().status == 1)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [binary, dir, addr, rounds] = args.as_slice() else {
        return Err("usage: serve_ready NETWAIT DIR HOST:PORT ROUNDS".into());
    };
    let rounds: usize = rounds.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["serve", "--data", dir, "--listen", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let ready = rt.block_on(async {
            while started.elapsed() < Duration::from_secs(60) {
                if serving(addr).await {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            None
        });
        child.kill()?;
        child.wait()?;
        took.push(ready.ok_or("not ready within 60 s")?);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "serve ready on {dir}: best {:.0} ms  median {:.0} ms  ({rounds} rounds)",
        ms(took[0]),
        ms(took[took.len() / 2])
    );
    Ok(())
}
