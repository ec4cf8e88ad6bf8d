//! The live view of a run: a terminal dashboard ([`Tui`]) and a web page ([`Web`]), both
//! fed by the supervisor through the engine's [`Watcher`] trait, both able to pause, resume
//! and stop the run.
//!
//! One source of truth: both faces show a [`RunView`] built from the supervisor's statistics
//! snapshots, and plots read from the files the analysis functions keep in the run
//! directory ([`RunFiles`]).
//!
//! Must never: touch a ring, or do anything on the acquisition path. Watchers only read
//! snapshots (handed over by the supervisor's loop) and files, in their own threads; the
//! supervisor's calls into them only swap data behind a short lock or send on a channel.
//!
//! Wiring, one call each:
//! ```no_run
//! # fn f(run_dir: &std::path::Path, sup: daq_engine::engine::Supervisor) -> anyhow::Result<()> {
//! use daq_engine::monitor::{Tui, Watchers, Web};
//! let mut watchers = Watchers::new();
//! watchers.push(Box::new(Tui::new(run_dir)?));
//! watchers.push(Box::new(Web::bind("127.0.0.1:8080", None, false, run_dir)?));
//! let summary = sup.run_watched(Some(&mut watchers))?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod files;
pub mod metrics;
pub mod tui;
pub mod view;
pub mod web;

pub use crate::engine::{Control, RunSummary, Watcher};
pub use files::{HistogramFile, RunFiles, Trace};
pub use tui::Tui;
pub use view::{Progress, RunView, Snapshot};
pub use web::{Web, WebError};

use std::collections::VecDeque;

/// Several watchers as one: every snapshot goes to each, and each one's control requests
/// are passed on in the order they were asked for.
#[derive(Default)]
pub struct Watchers {
    all: Vec<Box<dyn Watcher>>,
    pending: VecDeque<Control>,
}

impl Watchers {
    /// None yet.
    pub fn new() -> Watchers {
        Watchers::default()
    }

    /// Adds one.
    pub fn push(&mut self, w: Box<dyn Watcher>) {
        self.all.push(w);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

impl Watcher for Watchers {
    fn update(&mut self, stats: &Snapshot) {
        for w in &mut self.all {
            w.update(stats);
        }
    }

    fn poll(&mut self) -> Option<Control> {
        for w in &mut self.all {
            while let Some(c) = w.poll() {
                self.pending.push_back(c);
            }
        }
        self.pending.pop_front()
    }

    fn finish(&mut self, summary: &RunSummary) {
        for w in &mut self.all {
            w.finish(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<Control>, u32);
    impl Watcher for Fixed {
        fn update(&mut self, _: &Snapshot) {
            self.1 += 1;
        }
        fn poll(&mut self) -> Option<Control> {
            if self.0.is_empty() {
                None
            } else {
                Some(self.0.remove(0))
            }
        }
    }

    #[test]
    fn fan_out_keeps_every_request_in_order() {
        let mut w = Watchers::new();
        w.push(Box::new(Fixed(vec![Control::Pause, Control::Resume], 0)));
        w.push(Box::new(Fixed(vec![Control::Stop], 0)));
        w.update(&Snapshot::default());
        let got: Vec<Control> = std::iter::from_fn(|| w.poll()).collect();
        assert_eq!(got, vec![Control::Pause, Control::Resume, Control::Stop]);
        assert_eq!(w.len(), 2);
    }
}
