//! Test harness: pvtherm's publisher on its own tokio runtime, as the daemon
//! runs it, with the three ways a test ends it (clean shutdown, crash) and a
//! poll of its stats.
//!
//! Include it from a test file with
//! `#[path = "common/publisher.rs"] mod publisher;`.
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use pvtherm::publish::{
    spawn_publisher, Identity, MqttConfig, OutboxConfig, Publisher, PublisherStats,
};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// A publisher on its own runtime, as the daemon runs it.
pub struct Running {
    pub rt: Runtime,
    pub publisher: Publisher,
    pub task: JoinHandle<anyhow::Result<()>>,
    stop: broadcast::Sender<()>,
}

impl Running {
    /// Starts the publisher for `device` (topic prefix `pvtherm`).
    pub fn start(mqtt: &MqttConfig, outbox: &OutboxConfig, device: &str) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let identity = Identity::new("pvtherm", device).unwrap();
        let (stop, stop_rx) = broadcast::channel(1);
        let (publisher, task) = rt
            .block_on(async { spawn_publisher(mqtt, outbox, &identity, stop_rx) })
            .unwrap();
        Running {
            rt,
            publisher,
            task,
            stop,
        }
    }

    /// Clean shutdown: drain, `offline`, disconnect.
    pub fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.rt
            .block_on(self.task)
            .expect("publisher task panicked")
    }

    /// Simulated crash: the runtime and its sockets vanish without any goodbye.
    pub fn crash(self) {
        self.rt.shutdown_background();
    }

    /// Stats once `done` holds (or `timeout` passed).
    pub fn wait_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&PublisherStats) -> bool,
    ) -> PublisherStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.publisher.stats();
            if done(&stats) || Instant::now() > deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
