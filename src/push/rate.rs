//! The gateway rate limit. `gateway.rate_per_second` counts message parts, as carriers
//! throttle, and is the total across `gateway.workers` processes: each process takes its
//! share, with a burst of at most 1% of it (at least 1 part).
//!
//! A message's parts reach the gateway together, when the last of them is granted. So that
//! no one-second window at the gateway holds more than share + burst parts, one message at a
//! time collects its parts (they take consecutive emission slots) and the emission rate is
//! lowered by the largest message less one part: a window then holds at most the slots of
//! one second plus those of one message begun just before it, which is share - 1 + burst.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Mutex;

pub struct PartLimiter(Option<(DefaultDirectRateLimiter, Mutex<()>)>);

impl PartLimiter {
    pub fn unlimited() -> Self {
        PartLimiter(None)
    }

    pub fn new(rate_per_second: u32, workers: u32, max_segments: u32) -> Self {
        let share = (rate_per_second / workers.max(1)).max(1);
        let burst = (share / 100).max(1);
        let emission = share.saturating_sub(max_segments.saturating_sub(1)).max(1);
        let quota = Quota::per_second(NonZeroU32::new(emission).expect("at least 1"))
            .allow_burst(NonZeroU32::new(burst).expect("at least 1"));
        PartLimiter(Some((RateLimiter::direct(quota), Mutex::new(()))))
    }

    /// Waits until a message of `parts` parts may go out.
    pub async fn wait_for(&self, parts: u32) {
        if let Some((limiter, one_message_at_a_time)) = &self.0 {
            let _turn = one_message_at_a_time.lock().await;
            for _ in 0..parts.max(1) {
                limiter.until_ready().await;
            }
        }
    }
}
