//! Time as a dependency: the pipeline asks a clock for "now" and to wait, so tests can run
//! at any hour (quiet hours cover most of the UTC afternoon) without sleeping.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    async fn sleep_until(&self, at: DateTime<Utc>);
}

pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A clock that only moves when told to or when someone waits on it: waiting jumps straight
/// to the awaited instant and is remembered, so a test can see that a wait happened.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    waits: Mutex<Vec<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(now), waits: Mutex::new(Vec::new()) }
    }

    /// Moves the clock on, as the time between two runs.
    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().expect("clock lock") += by;
    }

    /// Every instant somebody waited for, in order.
    pub fn waits(&self) -> Vec<DateTime<Utc>> {
        self.waits.lock().expect("clock lock").clone()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        self.waits.lock().expect("clock lock").push(at);
        let mut now = self.now.lock().expect("clock lock");
        *now = (*now).max(at);
    }
}
