//! `export.csv` on a disk filled by another program, in a whole run of the real binary: the
//! file holds exactly the rows the books say its worker was delivered, and ends with a
//! whole line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod runs;

use runs::{command, fill_with_ballast, fresh, summary, SmallDisk, EXE};

/// Pulses found in simulated waveforms (1000 events/s, paced) written as CSV every second,
/// into `target` with no disk reserve (the disk goes from roomy to full at once).
fn setup(target: &Path) -> String {
    format!(
        "target_directory: {}
options: {{disk_reserve_mb: 0}}
Buffers:
  raw:
    slot_count: 64
    data_length: 256
    data_dtype: {{chA: f4, chB: f4, chC: f4, chD: f4}}
  feat:
    slot_count: 256
    data_length: 1
    data_dtype: {{channel: int16, time: float64, height: float32, area: float32, width: float32}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: 1000, realtime: true, seed: 1}}
  pulse_finder:
    function: process.pulses
    sources: [raw]
    sinks: [feat]
    config: {{threshold: 0.05, sample_interval: 4.0e-9}}
  table:
    function: export.csv
    sources: [feat]
    config: {{save_interval: 1.0}}
",
        target.display()
    )
}

/// One run in `dir` onto the small disk at `disk`, the disk filled by another program once
/// the CSV file holds rows, and emptied again once the run has ended its workers: its run
/// directory and the CSV file, or `None` when the CSV exporter did not meet the full disk
/// (the run stopped while what it held still fitted into the file's last page).
fn run_onto_a_disk_that_fills(dir: &Path, disk: &Path) -> Option<(PathBuf, PathBuf)> {
    std::fs::write(dir.join("s.yaml"), setup(&disk.join("runs"))).unwrap();
    // The run's log is on the full disk: what it says is read from its stderr, kept off it.
    let said_at = dir.join("stderr.txt");
    let said = || std::fs::read_to_string(&said_at).unwrap_or_default();
    let mut child = command(EXE)
        .args(["s.yaml", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&said_at).unwrap())
        .spawn()
        .unwrap();
    // Past the first append, so the file has rows to keep.
    let t = Instant::now();
    let csv = loop {
        let target = disk.join("runs");
        let file = (target.is_dir().then(|| runs::run_dirs_in(&target)))
            .and_then(|mut dirs| dirs.pop())
            .map(|run| run.join("feat.csv"))
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 20_000));
        if let Some(f) = file {
            break f;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no CSV file of 20 kB appeared; the run said: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = csv.parent().unwrap().to_path_buf();
    let ballast = disk.join("ballast");
    fill_with_ballast(&ballast, 16 << 20, child.id(), &run);
    // Full until the run has ended its workers and waits for space for its summary (or has
    // written it into what a cut file gave back), then space again.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if said().contains("waiting up to 30 s for space") {
            let _ = std::fs::remove_file(&ballast);
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run did not end; it said: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&ballast);
    let err = said();
    if !err.contains("feat.csv: No space left on device") {
        println!("the CSV exporter did not meet the full disk; again. The run said: {err}");
        return None;
    }
    assert_eq!(status.code(), Some(1), "{err}");
    Some((run, csv))
}

/// The tester's report (session 25): with the disk filled by another program, the books
/// said the CSV worker was delivered 1582 events and lost none, while feat.csv held 1291
/// whole rows and a last row cut mid-number (`…,0.5247229,100.`, which still reads as a
/// number). Now what it could not write is counted lost (delivered = rows in the file) and
/// the file is cut back to its last whole line.
#[test]
fn a_csv_on_a_disk_filled_by_another_program_holds_what_the_books_say() {
    let dir = fresh("csv-disk-full");
    let Some(disk) = SmallDisk::mount(&dir.join("mnt"), 8) else {
        return;
    };
    let (run, csv) = (0..3)
        .find_map(|_| {
            let _ = std::fs::remove_dir_all(disk.0.join("runs"));
            run_onto_a_disk_that_fills(&dir, &disk.0)
        })
        .expect("in three runs the CSV exporter never met the full disk");
    let summary = summary(&run);
    let produced =
        summary["events"]["feat"].as_u64().unwrap() + summary["lost"]["feat"].as_u64().unwrap();
    let books = &summary["readers"]["feat"]["table"];
    let (delivered, lost) = (
        books["delivered"].as_u64().unwrap(),
        books["lost"].as_u64().unwrap(),
    );
    assert_eq!(delivered + lost, produced, "{summary}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let rows: Vec<&str> = whole.lines().skip(1).collect();
    assert_eq!(
        rows.len() as u64,
        delivered,
        "the file holds what was delivered (in whole rows): {summary}"
    );
    assert_eq!(
        whole.len(),
        text.len(),
        "the last line is cut: {:?}",
        &text[whole.len()..]
    );
    // Whole rows in order (the pulses of one waveform share its counter).
    let columns = text.lines().next().unwrap().split(',').count();
    let mut last = None;
    for row in &rows {
        assert_eq!(row.split(',').count(), columns, "{row}");
        let counter: u64 = row.split(',').next().unwrap().parse().unwrap();
        assert!(last.is_none_or(|l| counter >= l), "{row} after {last:?}");
        last = Some(counter);
    }
    println!("{delivered} rows in the file, {lost} counted lost, of {produced}");
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
