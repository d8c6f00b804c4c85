//! Progress bars on the terminal (standard error), drawn only when it is one.

use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::{Progress, Reporter, Unit};

/// Every step of a command as one bar among the command's bars.
#[derive(Default)]
pub struct Bars(MultiProgress);

impl Reporter for Bars {
    fn step(&self, what: String, length: u64, unit: Unit) -> Arc<dyn Progress> {
        let template = match unit {
            Unit::Items => "{msg} {wide_bar} {pos}/{len} {elapsed}",
            Unit::Bytes => "{msg} {wide_bar} {bytes}/{total_bytes} {elapsed}",
        };
        let bar = ProgressBar::new(length).with_message(what);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        Arc::new(Bar(self.0.add(bar)))
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_message(&self, message: String) {
        self.0.set_message(message);
    }
    fn set_length(&self, length: u64) {
        self.0.set_length(length);
    }
    fn set_position(&self, position: u64) {
        self.0.set_position(position);
    }
    fn position(&self) -> u64 {
        self.0.position()
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
