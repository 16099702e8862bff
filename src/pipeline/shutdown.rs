//! The listening end of the daemon's shutdown broadcast (see the stop order in
//! [`crate::pipeline`]).

use tokio::sync::broadcast::{self, error::TryRecvError};

/// Listens for the one shutdown broadcast [`crate::pipeline::run_daemon`]
/// sends. Threads poll it between frames ([`Shutdown::is_shutdown`]); a
/// lagged or closed channel counts as shut down, so a dropped sender can never
/// leave a thread running.
pub(crate) struct Shutdown {
    /// Seen once, remembered: the broadcast carries a single value.
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    /// A listener on `notify`.
    pub(crate) fn new(notify: broadcast::Receiver<()>) -> Self {
        Self {
            is_shutdown: false,
            notify,
        }
    }

    /// Whether shutdown was asked for; never blocks (for the pipeline's threads).
    pub(crate) fn is_shutdown(&mut self) -> bool {
        if !self.is_shutdown {
            self.is_shutdown = !matches!(self.notify.try_recv(), Err(TryRecvError::Empty));
        }
        self.is_shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_broadcast_and_a_dropped_sender() {
        let (tx, _) = broadcast::channel(1);
        let mut shutdown = Shutdown::new(tx.subscribe());
        assert!(!shutdown.is_shutdown());
        tx.send(()).unwrap();
        assert!(shutdown.is_shutdown());
        assert!(shutdown.is_shutdown(), "stays shut down");

        let (tx, _) = broadcast::channel::<()>(1);
        let mut orphan = Shutdown::new(tx.subscribe());
        drop(tx);
        assert!(orphan.is_shutdown());
    }
}
