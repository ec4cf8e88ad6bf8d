//! The run plan: everything a worker process needs to know, written by the supervisor into
//! the run directory as `plan.json` before any worker starts, and read by each worker.
//!
//! It is derived from a validated setup: buffers with their rings (one per producing
//! process), each buffer's reading workers in group order, and each worker's merged config.

use crate::dtype::{Dtype, FieldType};
use crate::ring::Policy;
use crate::worker::{BufferShape, Config, Template};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One buffer of the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BufferPlan {
    /// Name in the setup.
    pub name: String,
    /// Fields as (name, numpy type), written as numpy names (`float32`; other types as
    /// numpy writes them: `>f4`, `|b1`, `|S10`, `(2,)<f4`, see [`FieldType`]'s Display).
    pub fields: Vec<(String, FieldType)>,
    /// Records per event.
    pub data_length: usize,
    /// Slots per ring.
    pub slot_count: usize,
    /// `block` or `drop`.
    pub policy: Policy,
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
        Dtype::new(self.fields.iter().map(|(n, t)| (n.clone(), *t)))
            .expect("plan dtypes come from a validated setup")
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

/// What the supervisor does when a worker process fails (`restart:` in a setup, the same
/// spelling in plan.json).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// A failed worker stops the run (the default).
    #[default]
    Never,
    /// A worker process that exits non-zero or is killed is started again.
    OnFailure,
}

impl Restart {
    /// The setup-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnFailure => "on-failure",
        }
    }
}

/// One worker of the run, as the setup declares it (resolved: includes read, configs
/// merged, paths made absolute) and as `plan.json` hands it to each worker process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerPlan {
    /// Name in the setup.
    pub name: String,
    /// Function name (`filter.threshold`, or a user function in `file`).
    pub function: String,
    /// The user library or Python file holding the function (`file:`), resolved against
    /// the setup's directory.
    pub file: Option<PathBuf>,
    /// The function's template, when it is a known built-in (the setup's check knows it;
    /// `plan.json` does not carry it).
    #[serde(skip)]
    pub template: Option<Template>,
    /// Processes sharing its work (`number_of_processes` in the setup).
    pub processes: usize,
    /// Buffers read, in setup order.
    pub sources: Vec<String>,
    /// Buffers written, in setup order.
    pub sinks: Vec<String>,
    /// Buffers observed, in setup order.
    pub observes: Vec<String>,
    /// The merged config (base_config, then the worker's layers).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Cores to pin its processes to (empty: the engine chooses).
    pub cpu: Vec<usize>,
    /// SCHED_FIFO priority 1..99, if asked for.
    pub priority: Option<u8>,
    /// What happens when it fails.
    pub restart: Restart,
    /// The venv of a Python worker (its `python:`, else `options: python:`), resolved
    /// against the setup's directory.
    #[serde(default)]
    pub python: Option<PathBuf>,
    /// The files it names in the run directory, as its function declares them
    /// ([`crate::worker::Writes`]): one, or one per process that writes its own; a rotating
    /// HDF5 writer numbers the files after the first. Empty for a function that declares
    /// none (and in the plan of an engine from before this field). `recover` reads it to
    /// know whose events a CSV file holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Seconds it may go on delivering after the stop, once its sources are drained (see
    /// [`crate::worker::FunctionSpec::delivers_after_stop`]): the drain watch gives it that
    /// time on top of `drain_stall_seconds`. 0 for most.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delivery_seconds: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl WorkerPlan {
    /// True for an importer: a worker that reads no buffer (no sources, no observes) and
    /// so starts the data flow; it is paused, stopped first and placed first.
    pub fn is_importer(&self) -> bool {
        self.sources.is_empty() && self.observes.is_empty()
    }

    /// Whether it takes no events and is no importer: it only observes, so it holds no
    /// event and nothing waits for it to drain.
    pub fn only_observes(&self) -> bool {
        self.sources.is_empty() && !self.observes.is_empty()
    }

    /// Whether `other` does the same thing: all but the name, the process count and the
    /// placement (cores, priority, restart) alike.
    pub fn does_the_same(&self, other: &WorkerPlan) -> bool {
        (
            &self.function,
            &self.file,
            &self.sources,
            &self.sinks,
            &self.observes,
            &self.config,
            &self.python,
        ) == (
            &other.function,
            &other.file,
            &other.sources,
            &other.sinks,
            &other.observes,
            &other.config,
            &other.python,
        )
    }

    /// Its config, as a function reads it.
    pub fn config(&self) -> Config {
        Config::new(self.name.clone(), self.config.clone())
    }
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
    /// Which pages the rings may use.
    pub huge_pages: crate::shm::HugePages,
    /// Stop the run cleanly when less than this many MB are free on the run's disk.
    #[serde(default)]
    pub disk_reserve_mb: f64,
    /// After a stop or once the importers ran out, seconds without any event moving while
    /// some wait before the workers are killed (`options.drain_stall_seconds`).
    #[serde(default = "default_drain_stall")]
    pub drain_stall_seconds: f64,
    /// While the importers run, seconds a reader may take no event while events wait for it,
    /// or a device importer's loop may not come round, before it counts as stuck
    /// (`options.worker_stall_seconds`); 0: never.
    #[serde(default = "default_worker_stall")]
    pub worker_stall_seconds: f64,
    /// The setup's `options.alert_command`, run by the supervisor when a warning starts.
    #[serde(default)]
    pub alert_command: Option<String>,
}

/// `options.drain_stall_seconds` when the setup does not say.
pub const DRAIN_STALL_SECONDS: f64 = 300.0;

/// The drain stall time of a plan that does not say (one written before the option).
fn default_drain_stall() -> f64 {
    DRAIN_STALL_SECONDS
}

/// `options.worker_stall_seconds` when the setup does not say.
pub const WORKER_STALL_SECONDS: f64 = 300.0;

/// The worker stall time of a plan that does not say (one written before the option).
fn default_worker_stall() -> f64 {
    WORKER_STALL_SECONDS
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

    /// A plan of one simulator writing `raw` into `raw.h5`, for tests.
    #[cfg(test)]
    pub(crate) fn example() -> Plan {
        use crate::dtype::Scalar;
        Plan {
            run_id: "r1".into(),
            run_dir: "/tmp/run".into(),
            setup_dir: "/tmp".into(),
            buffers: vec![BufferPlan {
                name: "raw".into(),
                fields: vec![
                    ("ch0".into(), Scalar::F32.into()),
                    ("t".into(), Scalar::U64.into()),
                    ("xy".into(), FieldType::parse("(2,)>f8").unwrap()),
                    ("name".into(), FieldType::parse("U4").unwrap()),
                ],
                data_length: 8,
                slot_count: 4,
                policy: Policy::Drop,
                writer: Some("sim".into()),
                readers: vec!["h5".into()],
                observers: vec![],
                rings: vec!["/dev/shm/daq-r1-raw-0".into()],
            }],
            workers: vec![WorkerPlan {
                name: "sim".into(),
                function: "simulate.pulses".into(),
                file: None,
                template: None,
                processes: 1,
                sources: vec![],
                sinks: vec!["raw".into()],
                observes: vec![],
                config: serde_json::Map::new(),
                cpu: vec![],
                priority: None,
                restart: Restart::OnFailure,
                python: None,
                files: vec!["raw.h5".into()],
                delivery_seconds: 0.5,
            }],
            max_events: Some(10),
            max_seconds: None,
            stats_interval: 1.0,
            huge_pages: crate::shm::HugePages::Auto,
            disk_reserve_mb: 0.0,
            drain_stall_seconds: DRAIN_STALL_SECONDS,
            worker_stall_seconds: WORKER_STALL_SECONDS,
            alert_command: None,
        }
    }

    /// Reads a plan file.
    pub fn load(path: &Path) -> std::io::Result<Plan> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::HugePages;

    /// plan.json keeps the spellings it had as strings, and reads back as the same plan.
    #[test]
    fn a_plan_round_trips_with_its_former_spellings() {
        let p = Plan::example();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["buffers"][0]["policy"], "drop");
        assert_eq!(
            v["buffers"][0]["fields"],
            serde_json::json!([
                ["ch0", "float32"],
                ["t", "uint64"],
                ["xy", "(2,)>f8"],
                ["name", "<U4"]
            ])
        );
        assert_eq!(v["workers"][0]["restart"], "on-failure");
        assert_eq!(v["huge_pages"], "auto");
        let back: Plan = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.buffers[0].dtype().record_size(), 12 + 16 + 16);
        // Plans of earlier versions said `huge_pages: true/false`.
        for (old, now) in [(true, HugePages::Auto), (false, HugePages::Off)] {
            let mut v = v.clone();
            v["huge_pages"] = old.into();
            assert_eq!(serde_json::from_value::<Plan>(v).unwrap().huge_pages, now);
        }
    }

    /// An unknown policy, type or restart is an error, not a fallback to `block` or `uint8`.
    #[test]
    fn an_unknown_plan_value_is_an_error() {
        for (path, bad) in [
            ("/buffers/0/policy", "sometimes"),
            ("/buffers/0/fields/0/1", "float128"),
            ("/workers/0/restart", "always"),
            ("/huge_pages", "sometimes"),
        ] {
            let mut v = serde_json::to_value(Plan::example()).unwrap();
            *v.pointer_mut(path).unwrap() = bad.into();
            let e = serde_json::from_value::<Plan>(v).unwrap_err().to_string();
            assert!(e.contains(bad), "{path}: {e}");
        }
    }
}
