//! Exponential backoff with full jitter (AWS architecture blog style):
//! the n-th delay is uniform in `[0, min(cap, base * 2^n)]`. The probe's reconnects
//! and the controller's schedule feed both use it.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 1 s base, 60 s cap.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; each call widens the window until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = (self.attempt + 1).min(31);
        ceiling.mul_f64(rand::random::<f64>())
    }

    /// Back to the first step (after a session that worked for a while).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..200 {
            let ceiling = b.ceiling();
            ceilings.push(ceiling);
            let d = b.next_delay();
            assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            assert!(d <= Duration::from_secs(60));
        }
        assert_eq!(ceilings[0], Duration::from_secs(1));
        assert_eq!(ceilings[1], Duration::from_secs(2));
        assert_eq!(ceilings[5], Duration::from_secs(32));
        assert_eq!(ceilings[6], Duration::from_secs(60));
        assert_eq!(ceilings[199], Duration::from_secs(60));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        // Full jitter: delays are not all equal to the ceiling.
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let delays: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(59)));
    }
}
