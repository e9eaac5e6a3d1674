//! A real server on `127.0.0.1:0` for the crate's tests, on any store.

use crate::server::ServeOptions;
use crate::state::AppState;
use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::Engine;
use netwait_aggregator::store::EventStore;
use tonic::transport::Channel;

pub struct TestServer {
    pub state: AppState,
    pub channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(store: impl EventStore + 'static) -> Self {
        Self::start_with(store, ServeOptions::default()).await
    }

    pub async fn start_with(store: impl EventStore + 'static, options: ServeOptions) -> Self {
        let engine =
            Engine::open(Box::new(store), [7; 16], MetricsConfig::default()).expect("engine");
        let state = AppState::new(engine, Pseudonymizer::new([3; 32]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let task = tokio::spawn(async move {
            crate::server::serve(listener, served, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        Self {
            state,
            channel,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.channel);
        self.task.await.expect("server task");
    }
}
