//! Pure billing logic: money, periods, numbers, bills, flags, spam aggregation, usage alerts
//! and SMS encoding. Nothing in here performs I/O, so every rule can be tested in isolation.

pub mod alerts;
pub mod bill;
pub mod category;
pub mod delivery;
pub mod dispute;
pub mod flags;
pub mod money;
pub mod msisdn;
pub mod period;
pub mod quiet_hours;
pub mod records;
pub mod reply;
pub mod retention;
pub mod shard;
pub mod sms;
pub mod spam;
