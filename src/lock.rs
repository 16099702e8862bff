//! Poison-tolerant locking.
//!
//! A mutex is poisoned when a thread panicked while holding it. Every mutex in
//! pvtherm guards data that stays consistent across such a panic (counters, a
//! one-frame slot, a stop flag, the outbox handle), and a daemon that stops
//! delivering because another thread panicked once would lose more than it
//! protects. So every lock and condition-variable wait goes through
//! [`IgnorePoison::ignore_poison`] and carries on with the data as they are.

use std::sync::{LockResult, PoisonError};

/// Takes the guard out of a [`LockResult`] whether or not the lock is poisoned.
pub(crate) trait IgnorePoison<G> {
    /// The guard (or guard and timeout result, for condition variables),
    /// poisoned or not.
    fn ignore_poison(self) -> G;
}

impl<G> IgnorePoison<G> for LockResult<G> {
    fn ignore_poison(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_mutex_still_gives_its_data() {
        let m = Arc::new(Mutex::new(7));
        let poisoner = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.lock().ignore_poison(), 7);
    }
}
