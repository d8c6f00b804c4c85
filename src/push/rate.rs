//! The gateway rate limit. `gateway.rate_per_second` counts message parts, as carriers
//! throttle, and is the total across `gateway.workers` processes: each process takes its
//! share and a burst of at most 1% of it (at least 1 part), so in any one-second window a
//! process pushes at most its share plus that burst.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct PartLimiter(Option<DefaultDirectRateLimiter>);

impl PartLimiter {
    pub fn unlimited() -> Self {
        PartLimiter(None)
    }

    pub fn new(rate_per_second: u32, workers: u32) -> Self {
        let share = (rate_per_second / workers.max(1)).max(1);
        let burst = (share / 100).max(1);
        let quota = Quota::per_second(NonZeroU32::new(share).expect("share is at least 1"))
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
        PartLimiter(Some(RateLimiter::direct(quota)))
    }

    /// Waits until `parts` more parts may go out. Parts are taken one by one, so a message of
    /// several parts never needs more than the burst at once.
    pub async fn wait_for(&self, parts: u32) {
        if let Some(limiter) = &self.0 {
            for _ in 0..parts.max(1) {
                limiter.until_ready().await;
            }
        }
    }
}
