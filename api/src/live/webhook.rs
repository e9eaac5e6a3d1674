//! Alerts to a webhook: each raised or cleared alert is POSTed as JSON to the configured
//! URL, retried with a doubling backoff, on a thread of its own behind a bounded queue:
//! a slow or dead receiver never holds up the live state (nor ingest), and when the
//! queue is full the alert is dropped with a warning.
//!
//! The client is hyper-util's, already built for tonic and axum (no second HTTP stack;
//! `http://` only, the receivers being on the hospital's own network).

use super::alerts::Alert;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::sync::mpsc;

/// Alerts waiting to be sent, at most.
pub const QUEUE: usize = 256;
/// Attempts per alert, and the first wait between two (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// One attempt, at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending end.
#[derive(Debug)]
pub struct Webhook {
    queue: mpsc::Sender<String>,
}

impl Webhook {
    /// Starts the sender thread for `url`.
    pub fn start(url: String) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("netwait-webhook".into())
            .spawn(move || rt.block_on(send_all(url, rx)))?;
        Ok(Self { queue })
    }

    /// Queues `alert` (dropped with a warning when the queue is full).
    pub fn send(&self, alert: &Alert) {
        let body = match serde_json::to_string(alert) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "alert not encoded for the webhook");
                return;
            }
        };
        if self.queue.try_send(body).is_err() {
            tracing::warn!(alert = %alert.id, "webhook queue full: alert not sent");
        }
    }
}

async fn send_all(url: String, mut rx: mpsc::Receiver<String>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    while let Some(body) = rx.recv().await {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match post(&client, &url, &body).await {
                Ok(()) => break,
                Err(e) if attempt == ATTEMPTS => {
                    tracing::warn!(error = %e, attempts = ATTEMPTS, "webhook: alert not delivered");
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "webhook: retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: &str,
) -> Result<(), String> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}
