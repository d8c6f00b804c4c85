//! billpush: pushes every subscriber's monthly itemized bill by SMS, flags unexplained
//! deductions and aggregates spam reports.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod disputes;
pub mod domain;
pub mod export;
pub mod gateway;
pub mod gen;
pub mod import;
pub mod inbound;
pub mod progress;
pub mod push;
pub mod queue;
pub mod render;
pub mod replies;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod server;
pub mod store;
pub mod tls;
