//! Full-jitter exponential backoff: each pause is uniform in `[0, min(cap, base × 2^n))`.
//!
//! Full jitter spreads a fleet's retries evenly instead of in waves, which is what a
//! thousand instances booting together need. The IMDS schedule (docs/architecture.md#defaults) is base
//! 250 ms, cap 10 s: pauses drawn from [0, 0.25), [0, 0.5), [0, 1), [0, 2), [0, 4),
//! [0, 8) and then [0, 10) seconds, until the caller's deadline.

use std::time::Duration;

use rand::Rng;

/// An endless schedule of pauses.
#[derive(Debug, Clone)]
pub struct FullJitter {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl FullJitter {
    /// A schedule starting at `base` and never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        FullJitter {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The IMDS boot schedule: 250 ms doubling up to 10 s.
    pub fn imds() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// The upper bound of the next pause, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next pause.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        uniform(ceiling)
    }

    /// Back to the first, shortest pause (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Calls `op` until it succeeds or `again(&error, attempts_so_far, next_pause)` says
    /// to stop, sleeping the next pause between attempts. Returns the last result and
    /// the number of calls made.
    pub async fn retry<T, E, Fut>(
        &mut self,
        mut op: impl FnMut() -> Fut,
        mut again: impl FnMut(&E, u32, Duration) -> bool,
    ) -> (Result<T, E>, u32)
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let e = match op().await {
                Ok(v) => return (Ok(v), attempts),
                Err(e) => e,
            };
            let pause = self.next_delay();
            if !again(&e, attempts, pause) {
                return (Err(e), attempts);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// A pause uniform in `[0, max)` (zero when `max` is zero).
pub fn uniform(max: Duration) -> Duration {
    let nanos = max.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_under_a_doubling_ceiling_capped() {
        let mut b = FullJitter::imds();
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling();
                assert!(b.next_delay() < c);
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_when_told_and_counts_the_calls() {
        let mut b = FullJitter::new(Duration::from_millis(10), Duration::from_millis(10));
        let mut calls = 0;
        let (r, n) = b
            .retry(
                || {
                    calls += 1;
                    let c = calls;
                    async move {
                        if c < 3 {
                            Err(c)
                        } else {
                            Ok(c)
                        }
                    }
                },
                |_, _, _| true,
            )
            .await;
        assert_eq!((r, n), (Ok(3), 3));
        let (r, n) = b
            .retry(
                || async { Err::<(), _>("no") },
                |_, attempts, _| attempts < 2,
            )
            .await;
        assert_eq!((r, n), (Err("no"), 2));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
    }

    #[test]
    fn a_long_run_never_overflows() {
        let mut b = FullJitter::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay() < Duration::from_secs(30));
        }
    }
}
