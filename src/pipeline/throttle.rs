//! Which captured frames go to the model: every n-th (`detect_every_n`) and
//! no more than `max_fps` per second. The others are counted as skipped.

use std::time::{Duration, Instant};

use crate::config::PipelineConfig;

/// Admits one frame in `every_n`, at most one per `min_interval`.
pub(crate) struct Throttle {
    every_n: u64,
    min_interval: Option<Duration>,
    seen: u64,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle for the `[pipeline]` settings.
    pub(crate) fn new(cfg: &PipelineConfig) -> Self {
        let min_interval = (cfg.max_fps > 0.0).then(|| Duration::from_secs_f32(1.0 / cfg.max_fps));
        Self {
            every_n: cfg.detect_every_n.max(1) as u64,
            min_interval,
            seen: 0,
            last: None,
        }
    }

    /// Whether the frame that just arrived goes to the model.
    pub(crate) fn admit(&mut self) -> bool {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.every_n) {
            return false;
        }
        let now = Instant::now();
        if let (Some(min), Some(last)) = (self.min_interval, self.last) {
            if now.duration_since(last) < min {
                return false;
            }
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_every_n() {
        let mut t = Throttle::new(&PipelineConfig {
            detect_every_n: 3,
            ..Default::default()
        });
        let admitted: Vec<bool> = (0..6).map(|_| t.admit()).collect();
        assert_eq!(admitted, [true, false, false, true, false, false]);
    }
}
