//! Commits durable messages to the outbox on a thread of its own, so that the
//! inference thread does not wait for the disk. With `synchronous = "full"` a
//! commit is an fsync (~4 ms on a virtual disk, more on an SD card); handed
//! over here, it overlaps with the next frame's inference.
//!
//! At most one batch is ever on its way: [`Committer::submit`] waits until the
//! previous batch is on disk before handing over the next. So when `submit`
//! returns for frame N, everything up to frame N-1 is committed, and a crash
//! can cost at most the one frame whose commit was running (like the frame the
//! model was working on).

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};

use super::Outgoing;
use crate::lock::IgnorePoison;

/// Hands batches of durable messages to the commit thread, one at a time.
pub(super) struct Committer {
    progress: Mutex<Progress>,
    changed: Condvar,
    /// `None` once closed; dropping it ends the thread.
    tx: Mutex<Option<SyncSender<Vec<Outgoing>>>>,
}

#[derive(Default)]
struct Progress {
    /// A batch was handed over and is not committed yet.
    pending: bool,
    /// Why the last commit failed, until a caller of `submit` has been told.
    failure: Option<String>,
}

impl Committer {
    /// Starts the commit thread; `commit` writes one batch in one transaction.
    pub(super) fn spawn(
        mut commit: impl FnMut(Vec<Outgoing>) -> Result<()> + Send + 'static,
    ) -> Result<Arc<Committer>> {
        let (tx, rx) = mpsc::sync_channel::<Vec<Outgoing>>(1);
        let committer = Arc::new(Committer {
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            tx: Mutex::new(Some(tx)),
        });
        let shared = committer.clone();
        std::thread::Builder::new()
            .name("outbox-commit".into())
            .spawn(move || {
                for batch in rx {
                    let result = commit(batch);
                    let mut p = shared.progress.lock().ignore_poison();
                    p.pending = false;
                    if let Err(e) = result {
                        log::error!("outbox: could not store messages: {e:#}");
                        p.failure = Some(format!("{e:#}"));
                    }
                    shared.changed.notify_all();
                }
            })
            .context("cannot start the outbox commit thread")?;
        Ok(committer)
    }

    /// Waits for the previous batch to be committed, then hands over `batch`.
    /// Fails if the previous commit failed (that batch is lost: the disk is
    /// failing) or the committer is closed.
    pub(super) fn submit(&self, batch: Vec<Outgoing>) -> Result<()> {
        let mut p = self.wait_idle();
        if let Some(failure) = p.failure.take() {
            return Err(anyhow!(
                "the outbox could not store earlier messages: {failure}"
            ));
        }
        let tx = self.tx.lock().ignore_poison();
        let tx = tx
            .as_ref()
            .ok_or_else(|| anyhow!("the outbox is closed: message not accepted"))?;
        p.pending = true;
        // Never blocks: the channel holds one batch and the previous one is out of it.
        tx.send(batch).map_err(|_| {
            p.pending = false;
            anyhow!("the outbox commit thread is gone: message not accepted")
        })
    }

    /// Waits until the batch in hand (if any) is committed.
    pub(super) fn flush(&self) {
        drop(self.wait_idle());
    }

    /// Whether no batch is on its way to the disk.
    pub(super) fn is_idle(&self) -> bool {
        !self.progress.lock().ignore_poison().pending
    }

    /// Refuses further batches and lets the thread end once it is idle.
    pub(super) fn close(&self) {
        self.flush();
        self.tx.lock().ignore_poison().take();
    }

    fn wait_idle(&self) -> MutexGuard<'_, Progress> {
        let p = self.progress.lock().ignore_poison();
        self.changed.wait_while(p, |p| p.pending).ignore_poison()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::MessageClass;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    fn message(n: u8) -> Outgoing {
        Outgoing::new(MessageClass::Detections, "detections", vec![n])
    }

    #[test]
    fn commits_in_order_and_flush_waits_for_the_disk() {
        let stored = Arc::new(StdMutex::new(Vec::new()));
        let sink = stored.clone();
        let committer = Committer::spawn(move |batch| {
            std::thread::sleep(Duration::from_millis(5)); // a slow fsync
            sink.lock()
                .unwrap()
                .extend(batch.into_iter().map(|m| m.payload[0]));
            Ok(())
        })
        .unwrap();
        for n in 0..5 {
            committer
                .submit(vec![message(n), message(n + 100)])
                .unwrap();
        }
        committer.flush();
        assert!(committer.is_idle());
        assert_eq!(
            *stored.lock().unwrap(),
            vec![0, 100, 1, 101, 2, 102, 3, 103, 4, 104]
        );
        committer.close();
        assert!(committer.submit(vec![message(9)]).is_err());
    }

    #[test]
    fn a_failed_commit_is_reported_to_the_next_caller_once() {
        let committer = Committer::spawn(|batch| {
            if batch[0].payload[0] == 1 {
                anyhow::bail!("disk I/O error");
            }
            Ok(())
        })
        .unwrap();
        committer.submit(vec![message(1)]).unwrap();
        let err = committer.submit(vec![message(2)]).unwrap_err();
        assert!(format!("{err:#}").contains("disk I/O error"), "{err:#}");
        // Told once; the batch that reported it was not taken.
        committer.submit(vec![message(3)]).unwrap();
        committer.flush();
    }
}
