//! The run's state on a Kafka topic (`export.kafka`'s `status_topic`), sent by the first
//! process of the exporter every `status_interval` and once more at the end:
//!
//! - **f144** slow values from the supervisor's latest statistics line: per buffer
//!   `<setup>/<buffer>/events_in`, `rate_hz`, `fill`, `deadtime`, `lost`; per worker
//!   `<setup>/<worker>/events`; the run's `<setup>/paused_s`; every number in a device
//!   importer's notes (temperatures, `device.events`, …) as `<setup>/<worker>/<key>`; the
//!   exporter's own counts as `<source_name>/kafka_events`, `kafka_delivered`, `kafka_lost`,
//!   `kafka_spooled`.
//! - **al00** when a source's alarm state changes (see [`Alarms`]): a buffer losing events
//!   or full, a worker failed or started again, a device disconnected or silent, the
//!   exporter itself losing events or spooling while the broker does not take them. A
//!   state going back to normal is sent as OK.
//! - **x5f2** status of the exporter: its counts, the run's time and its pause as JSON.
//!
//! Guarantees: reads only the run directory's files (a tail of `stats.jsonl`, the device
//! notes) on the exporter's flush path, never per event; a file missing or half written
//! gives fewer values, never an error. Status messages are not events: one that cannot be
//! queued is counted (`status_dropped`), never spooled.

use super::wire::{self, LogValue, Severity};
use crate::run_dir::{KafkaCounts, Snapshot, FULL_LEVEL};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Seconds an alarm about lost events stays up after the count last rose (as the monitor's
/// warning does).
pub const LOST_ALARM: Duration = Duration::from_secs(10);

/// One message for the status topic: its key (the source name) and bytes.
pub type Message = (String, Vec<u8>);

/// The alarm state of every source, and what was last sent for each.
#[derive(Default)]
pub struct Alarms {
    /// Per source: the severity and message last sent.
    sent: BTreeMap<String, (Severity, String)>,
    /// Per source whose loss count is watched: when it last rose, and to what.
    rose: BTreeMap<String, (Instant, u64)>,
}

impl Alarms {
    /// Notes `count` lost events of `source` at `now`; true while the count rose within
    /// [`LOST_ALARM`].
    fn losing(&mut self, source: &str, count: u64, now: Instant) -> bool {
        let before = self.rose.get(source).map_or(0, |r| r.1);
        if count > before {
            self.rose.insert(source.to_string(), (now, count));
        }
        self.rose
            .get(source)
            .is_some_and(|r| now.duration_since(r.0) <= LOST_ALARM)
    }

    /// The alarm states now, from the latest snapshot and the exporter's own counts, with
    /// `no_topic` saying that the broker does not have the exporter's topic: (source,
    /// severity, message) for every source whose state differs from what was last sent (a
    /// source never in alarm is not sent).
    pub fn update(
        &mut self,
        setup: &str,
        snap: Option<&Snapshot>,
        own_source: &str,
        own: &KafkaCounts,
        no_topic: Option<&str>,
        now: Instant,
    ) -> Vec<(String, Severity, String)> {
        let mut states: Vec<(String, Severity, String)> = Vec::new();
        if let Some(s) = snap {
            for (name, b) in &s.buffers {
                let source = format!("{setup}/{name}");
                let state = if self.losing(&source, b.lost, now) {
                    (
                        Severity::Major,
                        format!(
                            "buffer '{name}' is losing events ({} lost so far, ring full under \
                             policy drop)",
                            b.lost
                        ),
                    )
                } else if b.fill >= FULL_LEVEL && !b.closed {
                    (
                        Severity::Minor,
                        format!(
                            "buffer '{name}' is full: its readers do not keep up (the writer \
                             waits: dead time)"
                        ),
                    )
                } else {
                    (Severity::Ok, String::new())
                };
                states.push((source, state.0, state.1));
            }
            for (name, w) in &s.workers {
                let running = w.state == "running";
                let state = match w.device {
                    _ if w.state == "failed" => (
                        Severity::Major,
                        format!("worker '{name}' failed (see the run log)"),
                    ),
                    Some(d) if !d.connected && running => (
                        Severity::Major,
                        format!("worker '{name}': the device is disconnected"),
                    ),
                    Some(d) if d.silent && running => (
                        Severity::Minor,
                        format!(
                            "worker '{name}': the device sent no good event for longer than \
                             its expect_data_within"
                        ),
                    ),
                    _ if w.restarts > 0 => (
                        Severity::Minor,
                        format!("worker '{name}' was started again {} time(s)", w.restarts),
                    ),
                    _ => (Severity::Ok, String::new()),
                };
                states.push((format!("{setup}/{name}"), state.0, state.1));
            }
        }
        let own_state = if self.losing(own_source, own.lost, now) {
            let why = no_topic.map(|w| format!(": {w}")).unwrap_or_default();
            (
                Severity::Major,
                format!("{} events lost on the way to Kafka{why}", own.lost),
            )
        } else if let Some(why) = no_topic {
            // Not passing, as a broker away may be: someone must create the topic.
            (
                Severity::Major,
                format!("{why}: {} events wait in the spool", own.spool_pending),
            )
        } else if own.spool_pending > 0 {
            (
                Severity::Minor,
                format!(
                    "the broker does not take messages: {} events wait in the spool",
                    own.spool_pending
                ),
            )
        } else {
            (Severity::Ok, String::new())
        };
        states.push((own_source.to_string(), own_state.0, own_state.1));
        let mut changed = Vec::new();
        for (source, severity, message) in states {
            let last = self.sent.get(&source);
            let unchanged = match last {
                Some((s, m)) => *s == severity && *m == message,
                None => severity == Severity::Ok,
            };
            if !unchanged {
                // An OK state is remembered without its message, so the next OK matches.
                let (kept, sent) = if severity == Severity::Ok {
                    (String::new(), "back to normal".to_string())
                } else {
                    (message.clone(), message)
                };
                self.sent.insert(source.clone(), (severity, kept));
                changed.push((source, severity, sent));
            }
        }
        changed
    }
}

/// The f144 values of a snapshot, the device notes and the exporter's own counts.
pub fn values(
    setup: &str,
    snap: Option<&Snapshot>,
    notes: &[(String, Vec<(String, String)>)],
    own_source: &str,
    own: &KafkaCounts,
) -> Vec<(String, LogValue)> {
    let mut out = Vec::new();
    if let Some(s) = snap {
        // The run's pause total: live time = elapsed - paused.
        out.push((format!("{setup}/paused_s"), LogValue::Double(s.paused_s)));
        for (name, b) in &s.buffers {
            let long = |v: u64| LogValue::Long(i64::try_from(v).unwrap_or(i64::MAX));
            out.push((format!("{setup}/{name}/events_in"), long(b.events_in)));
            out.push((
                format!("{setup}/{name}/rate_hz"),
                LogValue::Double(b.rate_hz),
            ));
            out.push((format!("{setup}/{name}/fill"), LogValue::Double(b.fill)));
            out.push((
                format!("{setup}/{name}/deadtime"),
                LogValue::Double(b.deadtime),
            ));
            out.push((format!("{setup}/{name}/lost"), long(b.lost)));
        }
        for (name, w) in &s.workers {
            out.push((
                format!("{setup}/{name}/events"),
                LogValue::Long(i64::try_from(w.events).unwrap_or(i64::MAX)),
            ));
        }
    }
    for (worker, entries) in notes {
        for (key, value) in entries {
            let v = if let Ok(i) = value.parse::<i64>() {
                LogValue::Long(i)
            } else if let Ok(x) = value.parse::<f64>() {
                LogValue::Double(x)
            } else {
                continue;
            };
            out.push((format!("{setup}/{worker}/{key}"), v));
        }
    }
    for (key, v) in [
        ("kafka_events", own.events),
        ("kafka_delivered", own.delivered),
        ("kafka_lost", own.lost),
        ("kafka_spooled", own.spooled),
    ] {
        out.push((
            format!("{own_source}/{key}"),
            LogValue::Long(i64::try_from(v).unwrap_or(i64::MAX)),
        ));
    }
    out
}

/// The status stream of one exporter process.
pub struct RunStatus {
    run_dir: PathBuf,
    setup: String,
    run_name: String,
    /// The exporter's source name: its service id and the prefix of its own values.
    service: String,
    interval: Duration,
    last: Option<Instant>,
    alarms: Alarms,
    host: String,
}

impl RunStatus {
    /// The status of the exporter `service` in the run `run_dir` of setup `setup`, every
    /// `interval`.
    pub fn new(run_dir: PathBuf, setup: &str, service: &str, interval: Duration) -> RunStatus {
        let run_name = crate::fsio::file_name(&run_dir);
        RunStatus {
            run_dir,
            setup: setup.to_string(),
            run_name,
            service: service.to_string(),
            interval,
            last: None,
            alarms: Alarms::default(),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// True when the next status is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|t| now.duration_since(t) >= self.interval)
    }

    /// The messages of one status round: the f144 values, the al00 alarms that changed, the
    /// x5f2 status; `ended` for the last one. `no_topic`: that the broker does not have the
    /// exporter's topic.
    pub fn messages(
        &mut self,
        own: &KafkaCounts,
        no_topic: Option<&str>,
        ended: bool,
    ) -> Vec<Message> {
        let now = Instant::now();
        self.last = Some(now);
        let ns = wire::epoch_ns(crate::clock::wall_clock());
        let snap = crate::run_dir::last_snapshot(&self.run_dir);
        let notes = crate::run_dir::run_notes(&self.run_dir);
        let mut out: Vec<Message> = values(&self.setup, snap.as_ref(), &notes, &self.service, own)
            .into_iter()
            .map(|(source, v)| {
                let m = wire::log_data(&source, ns, v);
                (source, m)
            })
            .collect();
        for (source, severity, message) in self.alarms.update(
            &self.setup,
            snap.as_ref(),
            &self.service,
            own,
            no_topic,
            now,
        ) {
            let m = wire::alarm(&source, ns, severity, &message);
            out.push((source, m));
        }
        let json = serde_json::json!({
            "run": self.run_name,
            "setup": self.setup,
            "t": snap.as_ref().map_or(0.0, |s| s.t),
            "paused": snap.as_ref().is_some_and(|s| s.paused),
            "paused_s": snap.as_ref().map_or(0.0, |s| s.paused_s),
            "ended": ended,
            "kafka": own,
        })
        .to_string();
        let m = wire::status(&wire::StatusFields {
            service_id: &self.service,
            host_name: &self.host,
            process_id: std::process::id(),
            update_interval_ms: self.interval.as_millis().min(u32::MAX as u128) as u32,
            status_json: &json,
        });
        out.push((self.service.clone(), m));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{BufferStats, DeviceState, WorkerStats};

    fn snap(lost: u64, fill: f64, device: Option<DeviceState>) -> Snapshot {
        let mut s = Snapshot::default();
        s.buffers.insert(
            "raw".into(),
            BufferStats {
                lost,
                fill,
                events_in: 10,
                ..Default::default()
            },
        );
        s.workers.insert(
            "scope".into(),
            WorkerStats {
                state: "running".into(),
                device,
                events: 7,
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn alarms_are_sent_when_a_state_changes_and_ok_when_it_is_over() {
        let mut a = Alarms::default();
        let own = KafkaCounts::default();
        let t0 = Instant::now();
        let up = Some(DeviceState {
            connected: true,
            ..Default::default()
        });
        // All well: nothing is sent.
        assert!(a
            .update("s", Some(&snap(0, 0.1, up)), "k", &own, None, t0)
            .is_empty());
        // Losing events and a device gone.
        let down = Some(DeviceState::default());
        let got = a.update("s", Some(&snap(5, 1.0, down)), "k", &own, None, t0);
        let sev: Vec<(&str, Severity)> = got.iter().map(|x| (x.0.as_str(), x.1)).collect();
        assert_eq!(
            sev,
            vec![("s/raw", Severity::Major), ("s/scope", Severity::Major)]
        );
        assert!(got[0].2.contains("5 lost"), "{got:?}");
        assert!(got[1].2.contains("disconnected"), "{got:?}");
        // The same state again: nothing new.
        assert!(a
            .update("s", Some(&snap(5, 1.0, down)), "k", &own, None, t0)
            .is_empty());
        // Later the losses stopped but the ring is full; the device is back.
        let later = t0 + LOST_ALARM + Duration::from_secs(1);
        let got = a.update("s", Some(&snap(5, 1.0, up)), "k", &own, None, later);
        let sev: Vec<(&str, Severity)> = got.iter().map(|x| (x.0.as_str(), x.1)).collect();
        assert_eq!(
            sev,
            vec![("s/raw", Severity::Minor), ("s/scope", Severity::Ok)]
        );
        // The exporter itself: spooling, then losing.
        let spooling = KafkaCounts {
            spool_pending: 3,
            ..Default::default()
        };
        let got = a.update("s", None, "k", &spooling, None, later);
        assert_eq!((got[0].0.as_str(), got[0].1), ("k", Severity::Minor));
        let losing = KafkaCounts {
            lost: 2,
            ..Default::default()
        };
        let got = a.update("s", None, "k", &losing, None, later);
        assert_eq!(
            (got[0].1, got[0].2.as_str()),
            (Severity::Major, "2 events lost on the way to Kafka")
        );
    }

    #[test]
    fn a_topic_the_broker_does_not_have_is_a_major_alarm_named_until_it_exists() {
        let mut a = Alarms::default();
        let t0 = Instant::now();
        let why = "topic 'raw' does not exist on broker b:9092";
        let spooling = KafkaCounts {
            spool_pending: 3,
            ..Default::default()
        };
        let got = a.update("s", None, "k", &spooling, Some(why), t0);
        assert_eq!(
            (got[0].1, got[0].2.as_str()),
            (
                Severity::Major,
                "topic 'raw' does not exist on broker b:9092: 3 events wait in the spool"
            )
        );
        // The spool full: events lost, said with the reason.
        let losing = KafkaCounts {
            lost: 2,
            spool_pending: 3,
            ..Default::default()
        };
        let got = a.update("s", None, "k", &losing, Some(why), t0);
        assert_eq!(
            got[0].2,
            "2 events lost on the way to Kafka: topic 'raw' does not exist on broker b:9092"
        );
        // The topic created, the spool replayed, no loss for a while: back to normal.
        let later = t0 + LOST_ALARM + Duration::from_secs(1);
        let got = a.update(
            "s",
            None,
            "k",
            &KafkaCounts {
                lost: 2,
                ..Default::default()
            },
            None,
            later,
        );
        assert_eq!(
            (got[0].1, got[0].2.as_str()),
            (Severity::Ok, "back to normal")
        );
    }

    #[test]
    fn values_come_from_the_snapshot_the_notes_and_the_own_counts() {
        let mut s = snap(3, 0.5, None);
        s.paused_s = 1.5;
        let notes = vec![(
            "scope".to_string(),
            vec![
                ("device.model".to_string(), "DS1054Z".to_string()),
                ("temperature".to_string(), "23.5".to_string()),
                ("device.events".to_string(), "42".to_string()),
            ],
        )];
        let own = KafkaCounts {
            delivered: 9,
            ..Default::default()
        };
        let v: BTreeMap<String, LogValue> = values("s", Some(&s), &notes, "s/k/raw", &own)
            .into_iter()
            .collect();
        assert_eq!(v["s/raw/events_in"], LogValue::Long(10));
        assert_eq!(v["s/paused_s"], LogValue::Double(1.5));
        assert_eq!(v["s/raw/lost"], LogValue::Long(3));
        assert_eq!(v["s/raw/fill"], LogValue::Double(0.5));
        assert_eq!(v["s/scope/events"], LogValue::Long(7));
        assert_eq!(v["s/scope/temperature"], LogValue::Double(23.5));
        assert_eq!(v["s/scope/device.events"], LogValue::Long(42));
        assert!(
            !v.contains_key("s/scope/device.model"),
            "text is not a value"
        );
        assert_eq!(v["s/k/raw/kafka_delivered"], LogValue::Long(9));
    }
}
