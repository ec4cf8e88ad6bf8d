//! `/metrics` read by a real Prometheus (Debian's `prometheus`): it scrapes a short run every
//! second on loopback, and its HTTP API then gives per buffer exactly the events the run's
//! summary (summary.json) counts, and per reader exactly what it says was delivered. `promtool check
//! metrics` finds nothing to fault in the text. Skipped, saying so, without prometheus.

mod monitor_common;
mod runs;
use daq_engine::monitor::Web;
use monitor_common::{
    exchange, free_loopback_addr, holds_within, http, start_run_with, wait_for, wait_up_to,
};
use runs::Dir;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// simulate.pulses → raw → threshold → triggered, three seconds.
const SETUP: &str = "target_directory: runs
options: {stats_interval: 0.2, max_seconds: 3}
Buffers:
  raw: &waveforms
    slot_count: 32
    data_length: 256
    data_dtype: {chA: float32}
  triggered: *waveforms
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {rate: 300, realtime: true, amplitude_mean: 0.3, noise: 0.003, seed: 7}
  trigger:
    function: filter.threshold
    sources: [raw]
    sinks: [triggered]
    config: {level: 0.1, edge: rising, channels: [chA]}
";

/// Prometheus, killed when dropped (also when the test fails).
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The result vector of an instant query: (labels, value) per series.
fn query(prom: SocketAddr, q: &str) -> Vec<(serde_json::Value, f64)> {
    let Ok((200, body)) = exchange(
        prom,
        &format!("GET /api/v1/query?query={q} HTTP/1.1\r\nHost: {prom}\r\n"),
    ) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_runs_counters() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: prometheus is not installed (apt-get install prometheus; \
             `scripts/install-deps.sh test` installs it)"
        );
        return;
    }
    let dir = Dir::new("prometheus");
    let (addr, _run_dir, run) = start_run_with(&dir.0, SETUP, |run_dir| {
        Web::bind("127.0.0.1:0", None, false, run_dir).unwrap()
    });

    // The text as promtool sees it: no format or naming problem.
    wait_for("a first snapshot", || {
        http(addr, "GET", "/metrics", &[])
            .1
            .contains("buffer=\"raw\"")
    });
    let (status, text) = http(addr, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus on a free loopback port, scraping the run every second.
    let prom = free_loopback_addr();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: daq-engine\n    \
             static_configs: [{{targets: ['{addr}']}}]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let prometheus_log =
        || std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    wait_up_to(Duration::from_secs(20), "prometheus to be ready", || {
        exchange(prom, &format!("GET /-/ready HTTP/1.1\r\nHost: {prom}\r\n"))
            .is_ok_and(|(s, _)| s == 200)
    });

    let (summary, web) = run.join().unwrap();
    assert_eq!(summary.exit_code, 0, "{:?}", summary.failures);
    // The summary as the binary writes it to summary.json.
    let file = serde_json::to_value(&summary).unwrap();
    let events = file["events"].as_object().unwrap();
    assert!(events["raw"].as_u64().unwrap() > 0, "{file}");

    // The ended run's page stays up until Prometheus has scraped its last numbers.
    let mut seen = Vec::new();
    let agree = holds_within(Duration::from_secs(20), || {
        seen = query(prom, "daq_engine_buffer_events_total");
        seen.len() == events.len()
            && seen.iter().all(|(m, v)| {
                let b = m["buffer"].as_str().unwrap_or("");
                m["job"] == "daq-engine"
                    && events.get(b).and_then(|e| e.as_u64()) == Some(*v as u64)
            })
    });
    assert!(
        agree,
        "Prometheus has {seen:?}, summary.json {file}\n{}",
        prometheus_log()
    );
    // Each reader's delivered count, as the summary books it.
    let delivered = query(prom, "daq_engine_reader_delivered_total");
    assert_eq!(delivered.len(), 1, "raw/trigger: {delivered:?}");
    for (m, v) in delivered {
        let (b, r) = (m["buffer"].as_str().unwrap(), m["reader"].as_str().unwrap());
        assert_eq!(
            file["readers"][b][r]["delivered"].as_u64(),
            Some(v as u64),
            "{b}/{r}: {file}"
        );
    }
    let finished = query(prom, "daq_engine_run_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].1, 1.0);
    drop(web);
}
