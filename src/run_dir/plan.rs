//! The run plan: everything a worker process needs to know, written by the supervisor into
//! the run directory as `plan.json` before any worker starts, and read by each worker.
//!
//! It is derived from a validated setup: buffers with their rings (one per producing
//! process), each buffer's reading workers in group order, and each worker's merged config.

use crate::dtype::{Dtype, Scalar};
use crate::ring::Policy;
use crate::worker::BufferShape;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One buffer of the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BufferPlan {
    /// Name in the setup.
    pub name: String,
    /// Fields as (name, numpy type string).
    pub fields: Vec<(String, String)>,
    /// Records per event.
    pub data_length: usize,
    /// Slots per ring.
    pub slot_count: usize,
    /// `block` or `drop`.
    pub policy: String,
    /// The worker that writes it, if any.
    pub writer: Option<String>,
    /// Workers that read it, in consumer-group order.
    pub readers: Vec<String>,
    /// Workers that observe it.
    pub observers: Vec<String>,
    /// Ring files, one per process of the writer (filled in by the supervisor).
    pub rings: Vec<PathBuf>,
}

impl BufferPlan {
    /// The record type.
    pub fn dtype(&self) -> Dtype {
        Dtype::new(
            self.fields
                .iter()
                .map(|(n, t)| (n.clone(), Scalar::parse(t).unwrap_or(Scalar::U8))),
        )
        .expect("plan dtypes come from a validated setup")
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        if self.policy == "drop" {
            Policy::Drop
        } else {
            Policy::Block
        }
    }

    /// The shape a function sees.
    pub fn shape(&self) -> BufferShape {
        BufferShape {
            name: self.name.clone(),
            dtype: self.dtype(),
            data_length: self.data_length,
        }
    }

    /// The consumer group of worker `name` in this buffer's rings.
    pub fn group_of(&self, name: &str) -> Option<usize> {
        self.readers.iter().position(|r| r == name)
    }
}

/// Whether a dead worker process is started again.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// A failed worker stops the run (default).
    #[default]
    Never,
    /// A failed worker process is started again.
    OnFailure,
}

/// One worker of the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerPlan {
    /// Name in the setup.
    pub name: String,
    /// Function name.
    pub function: String,
    /// Shared library holding the function (`file:`), resolved to an absolute path.
    pub file: Option<PathBuf>,
    /// Processes.
    pub processes: usize,
    /// Buffers read, in setup order.
    pub sources: Vec<String>,
    /// Buffers written.
    pub sinks: Vec<String>,
    /// Buffers observed.
    pub observes: Vec<String>,
    /// Merged config.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Cores to pin to (empty: the engine chooses).
    pub cpu: Vec<usize>,
    /// SCHED_FIFO priority 1..99, if asked.
    pub priority: Option<i32>,
    /// Restart policy.
    pub restart: Restart,
    /// The venv of a Python worker (setup `python:`), resolved to an absolute path.
    #[serde(default)]
    pub python: Option<PathBuf>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// Unique id of the run (also in ring file names).
    pub run_id: String,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The directory of the setup file.
    pub setup_dir: PathBuf,
    /// Buffers.
    pub buffers: Vec<BufferPlan>,
    /// Workers.
    pub workers: Vec<WorkerPlan>,
    /// Stop after this many events per Importer worker.
    pub max_events: Option<u64>,
    /// Stop after this many seconds.
    pub max_seconds: Option<f64>,
    /// Seconds between lines of stats.jsonl.
    pub stats_interval: f64,
    /// Use huge pages where available.
    pub huge_pages: bool,
    /// Stop the run cleanly when less than this many MB are free on the run's disk.
    #[serde(default)]
    pub disk_reserve_mb: f64,
    /// The setup's `options.alert_command`, run by the supervisor when a warning starts.
    #[serde(default)]
    pub alert_command: Option<String>,
}

impl Plan {
    /// The buffer called `name`.
    pub fn buffer(&self, name: &str) -> Option<&BufferPlan> {
        self.buffers.iter().find(|b| b.name == name)
    }

    /// The worker called `name`.
    pub fn worker(&self, name: &str) -> Option<&WorkerPlan> {
        self.workers.iter().find(|w| w.name == name)
    }

    /// Writes `plan.json` into the run directory.
    pub fn save(&self) -> std::io::Result<PathBuf> {
        let path = self.run_dir.join(super::PLAN);
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Reads a plan file.
    pub fn load(path: &Path) -> std::io::Result<Plan> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}
