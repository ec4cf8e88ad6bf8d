//! `daq-engine devices --probe PORT` (`daq_drivers::probe::serial`) against each serial
//! family's simulator on a pty: the family and model come out right, a line printer is never
//! written to, and a port nobody recognises is an error saying what was heard and asked.

mod common;

use std::time::Duration;

use daq_drivers::cosmicwatch::{self, CosmicWatchSimConfig, SimVersion, V3Columns};
use daq_drivers::gmc::{self, GmcModel, GmcSimConfig};
use daq_drivers::linecounter::{self, LineSimConfig, SimFormat};
use daq_drivers::probe::serial;
use daq_drivers::Family;

/// Long enough at each rate for a simulator printing every 10 ms; short enough that the
/// GMC case (silent until asked) listens at two rates quickly.
const LISTEN: Duration = Duration::from_millis(800);

fn line_sim(format: SimFormat) -> LineSimConfig {
    LineSimConfig {
        format,
        cps: 5.0,
        seed: 2,
        second: Duration::from_millis(10),
    }
}

#[test]
fn a_mightyohm_and_a_gc10_are_told_apart_by_their_lines_and_never_written_to() {
    for (format, model) in [
        (SimFormat::MightyOhm, "MightyOhm kit"),
        (SimFormat::Gc10, linecounter::ONE_INTEGER),
    ] {
        let (sim, path) = linecounter::simulate(line_sim(format)).unwrap();
        let p = serial(&path, LISTEN).unwrap();
        assert_eq!(p.info.family, Family::LineCounter);
        assert_eq!(p.info.model, model);
        assert_eq!(p.info.port, path.display().to_string());
        assert!(p.evidence.starts_with("printed at 9600 baud: "), "{p:?}");
        assert!(
            sim.wire().host_sent().is_empty(),
            "{model}: the probe wrote to it"
        );
    }
}

#[test]
fn cosmicwatch_v2_and_v3x_are_recognised_by_their_lines() {
    for (version, model) in [
        (SimVersion::V2, "CosmicWatch v2"),
        (SimVersion::V3X(V3Columns::ALL), "CosmicWatch v3X"),
        (SimVersion::V3X(V3Columns::default()), "CosmicWatch v3X"),
    ] {
        let (sim, path) = cosmicwatch::simulate(CosmicWatchSimConfig {
            version,
            rate: 50.0,
            seed: 5,
            second: Duration::from_millis(10),
            ..Default::default()
        })
        .unwrap();
        let p = serial(&path, LISTEN).unwrap();
        assert_eq!(p.info.family, Family::CosmicWatch, "{p:?}");
        assert_eq!(p.info.model, model, "{p:?}");
        assert!(sim.wire().host_sent().is_empty());
    }
}

#[test]
fn a_gmc_stays_silent_until_asked_and_answers_with_its_model() {
    for model in [GmcModel::Gmc320, GmcModel::Gmc500Plus] {
        let (sim, path) = gmc::simulate(GmcSimConfig {
            model,
            second: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
        let p = serial(&path, LISTEN).unwrap();
        assert_eq!(p.info.family, Family::Gmc);
        assert!(
            p.evidence.starts_with("answered as a gmc counter: "),
            "{p:?}"
        );
        let sent = sim.wire().host_sent();
        assert!(
            sent.windows(9).any(|w| w == b"<GETVER>>"),
            "{:?}",
            String::from_utf8_lossy(&sent)
        );
        assert!(p.info.model.starts_with("GMC"), "{p:?}");
    }
}

#[test]
fn a_port_nobody_recognises_says_what_was_heard_and_asked() {
    let sim = common::scripted(b"hello there\r\nnot a counter\r\n");
    let e = serial(sim.path(), LISTEN).unwrap_err().to_string();
    assert!(
        e.starts_with("no supported serial device recognised: "),
        "{e}"
    );
    assert!(
        e.contains("9600 baud: 2 line(s), none recognised (first: \"hello there\")"),
        "{e}"
    );
    assert!(e.contains("115200 baud: no whole line"), "{e}");
    assert!(e.contains("asked as a gmc counter: "), "{e}");
}
