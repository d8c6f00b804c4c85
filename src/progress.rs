//! How far a long step has come. The CLI draws it as bars on a terminal; everywhere else
//! (tests, daemons, the API) nothing is drawn and nothing is paid for it.

use std::sync::Arc;

/// What a step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Items,
    Bytes,
}

/// One step's progress, shared with the tasks that make it.
pub trait Progress: Send + Sync {
    fn set_message(&self, message: String);
    fn set_length(&self, length: u64);
    fn set_position(&self, position: u64);
    fn position(&self) -> u64;
    fn inc(&self, delta: u64);
    /// The step is over: its bar goes away.
    fn finish(&self);
}

/// Hands out a progress for each step a command takes.
pub trait Reporter: Send + Sync {
    /// A new step named `what` of `length` units (0 while not known).
    fn step(&self, what: String, length: u64, unit: Unit) -> Arc<dyn Progress>;
}

/// Reports nowhere.
pub struct Silent;

impl Progress for Silent {
    fn set_message(&self, _: String) {}
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn position(&self) -> u64 {
        0
    }
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn step(&self, _: String, _: u64, _: Unit) -> Arc<dyn Progress> {
        Arc::new(Silent)
    }
}
