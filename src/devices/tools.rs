//! The device commands of the command line: `daq-engine devices`, `daq-engine udev install`,
//! `daq-engine udev check` and `daq-engine bench drivers`.
//!
//! Guarantees: scanning only reads descriptors and `/dev`, `/sys`; `udev install` writes
//! only the one rules file (to `/etc/udev/rules.d`, or where `--rules-dir` /
//! `DAQ_UDEV_RULES_DIR` says, in which case udev is not reloaded) and with `--dry-run`
//! changes nothing. Must never: run `sudo` itself, or touch a device node.

use daq_drivers::DeviceInfo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The udev rules shipped with daq-engine (`udev/70-daq-engine.rules`), built into the binary.
pub const UDEV_RULES: &str = include_str!("../../udev/70-daq-engine.rules");

/// File name of the installed rules.
pub const RULES_NAME: &str = "70-daq-engine.rules";

/// Where udev reads local rules.
pub const SYSTEM_RULES_DIR: &str = "/etc/udev/rules.d";
/// Where the Debian package installs the rules (udev reads this too; /etc overrides it).
pub const PACKAGE_RULES_DIR: &str = "/usr/lib/udev/rules.d";

/// Environment variable that redirects `udev install` (tests, packaging).
pub const RULES_DIR_ENV: &str = "DAQ_UDEV_RULES_DIR";

/// Which importer function and example setup serve a device: what its family's file says
/// ([`super::Family::suggest`]).
pub fn function_for(d: &DeviceInfo) -> (&'static str, &'static str) {
    super::FAMILIES
        .iter()
        .find(|f| f.driver.family == d.family)
        .map_or(("-", "-"), |f| (f.suggest)(d))
}

/// Every connected supported device, and notes on scans that could not run (the registered
/// families' scans, [`daq_drivers::families::scan_all`]).
pub fn scan_all() -> (Vec<DeviceInfo>, Vec<String>) {
    daq_drivers::families::scan_all()
}

/// `daq-engine devices --probe PORT|HOST[:PORT]`. A path (`/dev/ttyUSB0`) is a serial port:
/// see [`daq_drivers::probe::serial`]. Anything else is a network address, since network
/// devices are not enumerated: a Red Pitaya's MCPHA server answers a status request (code
/// 11) with 36 bytes (port 1001 unless given), its SCPI server answers `*IDN?` (port 5000
/// unless given). Without a port both are tried, MCPHA first; with one, that port is asked
/// both ways.
pub fn probe(address: &str, listen_seconds: f64) -> i32 {
    use daq_drivers::redpitaya::{self, protocol, scpi};
    if address.starts_with('/') {
        let Ok(listen) = Duration::try_from_secs_f64(listen_seconds) else {
            println!("--listen {listen_seconds}: give seconds, at least 0");
            return 2;
        };
        return probe_serial(Path::new(address), listen);
    }
    let timeout = Duration::from_secs(2);
    let mut why = Vec::new();
    match redpitaya::resolve(address, protocol::PORT) {
        Ok(addr) => match redpitaya::probe(addr, timeout) {
            Ok((_, st)) => {
                println!(
                    "{:<28} {:<10} {:<12} {:<34} {:<20} setups/redpitaya_spectroscopy.yaml",
                    format!("mcpha:{addr}"),
                    "-",
                    "-",
                    "Red Pitaya MCPHA server",
                    "device.redpitaya"
                );
                println!(
                    "  timers IN1 {:.3} s, IN2 {:.3} s; oscilloscope {}",
                    st.seconds(protocol::Input::In1),
                    st.seconds(protocol::Input::In2),
                    if st.running() {
                        "armed"
                    } else {
                        "idle (or trace ready)"
                    }
                );
                return 0;
            }
            Err(e) => why.push(format!("no MCPHA server: {e}")),
        },
        Err(e) => {
            println!("{address}: {e}");
            return 1;
        }
    }
    match redpitaya::resolve(address, scpi::protocol::PORT)
        .map_err(|e| e.to_string())
        .and_then(|addr| {
            scpi::probe_scpi(addr, timeout)
                .map(|idn| (addr, idn))
                .map_err(|e| e.to_string())
        }) {
        Ok((addr, idn)) => {
            println!(
                "{:<28} {:<10} {:<12} {:<34} {:<20} setups/redpitaya_scpi.yaml",
                format!("scpi:{addr}"),
                "-",
                "-",
                "Red Pitaya SCPI server",
                "device.redpitaya (transport: scpi)"
            );
            println!("  *IDN? {idn}");
            0
        }
        Err(e) => {
            why.push(format!("no SCPI server: {e}"));
            println!(
                "{address}: no Red Pitaya MCPHA server found, nor a SCPI server: {}",
                why.join("; ")
            );
            1
        }
    }
}

/// What `daq-engine devices` says when it finds nothing: where it looked, what to check.
fn nothing_found() -> String {
    format!(
        "No supported devices found: no serial detector ports (looked in /dev/serial/by-id, \
         /dev/ttyUSB*, /dev/ttyACM*, /dev/daq) and no {} on USB.\n\
         Plug the device in and check `dmesg`/`lsusb`; install the udev rules with \
         `daq-engine udev install`; on Ubuntu with a CH340 (1a86:7523) check that brltty did \
         not take the port. Without hardware, try any setup with --simulate, e.g.\n  \
         daq-engine setups/geiger_gmc.yaml --simulate",
        daq_drivers::families::usb_sought()
    )
}

/// `daq-engine devices`.
pub fn devices() -> i32 {
    let (found, notes) = scan_all();
    for n in &notes {
        println!("note: {n}");
    }
    if found.is_empty() {
        println!("{}", nothing_found());
        return 0;
    }
    println!(
        "{:<28} {:<10} {:<12} {:<34} {:<20} setup",
        "port", "usb id", "serial", "model", "function"
    );
    for d in &found {
        println!("{}", row(d));
    }
    if let Some(hint) = probe_hint(&found) {
        println!("{hint}");
    }
    0
}

/// After a scan that found a serial port it could only guess at ("probe needed": one chip
/// serves many detectors), the command that finds out.
fn probe_hint(found: &[DeviceInfo]) -> Option<String> {
    let port = &found
        .iter()
        .find(|d| d.model.ends_with("probe needed"))?
        .port;
    Some(format!(
        "probe needed: `daq-engine devices --probe {port}` listens to the port (and then asks, \
         as a GMC counter is asked) and says which device it is"
    ))
}

/// A device's line in `daq-engine devices`: port, USB id, serial, model, function, setup.
fn row(d: &DeviceInfo) -> String {
    let (function, setup) = function_for(d);
    format!(
        "{:<28} {:<10} {:<12} {:<34} {:<20} {}",
        d.port,
        d.usb_id
            .map(|(v, p)| format!("{v:04x}:{p:04x}"))
            .unwrap_or_else(|| "-".into()),
        d.serial.as_deref().unwrap_or("-"),
        d.model,
        function,
        setup
    )
}

/// `daq-engine devices --probe PORT`: which family's device is behind a serial port
/// ([`daq_drivers::probe::serial`], listening `listen` at each rate); prints its line as
/// `daq-engine devices` would, with how it was recognised. 0 when recognised, 1 otherwise.
fn probe_serial(port: &Path, listen: Duration) -> i32 {
    match daq_drivers::probe::serial(port, listen) {
        Ok(p) => {
            println!("{}", row(&p.info));
            println!("  {}", p.evidence);
            0
        }
        Err(e @ daq_drivers::probe::ProbeError::Port(_)) => {
            println!("{e}");
            1
        }
        // What each rate heard and each question got; the last question's answer asks the
        // user whether the device is on and this is its port.
        Err(e) => {
            println!("{}: {e}", port.display());
            1
        }
    }
}

/// Why `udevadm` did not reload the rules.
#[derive(Debug, thiserror::Error)]
pub enum UdevadmError {
    /// It could not be started (not installed, not on PATH).
    #[error("cannot run udevadm {args}: {source}")]
    Spawn {
        /// Its arguments.
        args: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("udevadm {args} failed ({status})")]
    Failed {
        /// Its arguments.
        args: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

fn run_udevadm(args: &[&str]) -> Result<(), UdevadmError> {
    let status = std::process::Command::new("udevadm")
        .args(args)
        .status()
        .map_err(|source| UdevadmError::Spawn {
            args: args.join(" "),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(UdevadmError::Failed {
            args: args.join(" "),
            status,
        })
    }
}

/// `daq-engine udev install [--dry-run] [--rules-dir DIR]`.
pub fn udev_install(dry_run: bool, rules_dir: Option<&Path>) -> i32 {
    let redirected = rules_dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(RULES_DIR_ENV).map(PathBuf::from));
    let dir = redirected
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_RULES_DIR));
    let target = dir.join(RULES_NAME);
    let system = redirected.is_none();
    if dry_run {
        println!(
            "would write {} bytes of udev rules to {}",
            UDEV_RULES.len(),
            target.display()
        );
        if system {
            println!("would run: udevadm control --reload-rules");
            println!("would run: udevadm trigger");
        } else {
            println!(
                "would not reload udev (rules directory redirected away from {SYSTEM_RULES_DIR})"
            );
        }
        println!("then unplug and replug the device; after joining a group, log out and in");
        return 0;
    }
    if system && !nix::unistd::geteuid().is_root() {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "daq-engine".into());
        eprintln!(
            "daq-engine: installing udev rules needs root. Run:\n  sudo {exe} udev install\n\
             or, from the source tree:\n  sudo cp udev/{RULES_NAME} {SYSTEM_RULES_DIR}/\n  \
             sudo udevadm control --reload-rules\n  sudo udevadm trigger"
        );
        return 1;
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("daq-engine: cannot create {}: {e}", dir.display());
        return 1;
    }
    if let Err(e) = crate::worker::write_atomically(&target, UDEV_RULES.as_bytes()) {
        eprintln!("daq-engine: cannot write {}: {e}", target.display());
        return 1;
    }
    println!("wrote {} ({} bytes)", target.display(), UDEV_RULES.len());
    if !system {
        println!(
            "not reloading udev: the rules went to {} instead of {SYSTEM_RULES_DIR}",
            dir.display()
        );
        return 0;
    }
    for args in [&["control", "--reload-rules"][..], &["trigger"][..]] {
        println!("running: udevadm {}", args.join(" "));
        if let Err(e) = run_udevadm(args) {
            eprintln!("daq-engine: {e}");
            return 1;
        }
    }
    println!("done: unplug and replug the device; after joining a group, log out and in");
    0
}

/// The device node behind a device: the tty (symlinks followed) or `/dev/bus/usb/BBB/DDD`.
pub fn node_of(d: &DeviceInfo) -> PathBuf {
    if let Some(rest) = d.port.strip_prefix("usb:") {
        let mut it = rest.split(':');
        if let (Some(b), Some(a)) = (it.next(), it.next()) {
            if let (Ok(b), Ok(a)) = (b.parse::<u32>(), a.parse::<u32>()) {
                return PathBuf::from(format!("/dev/bus/usb/{b:03}/{a:03}"));
            }
        }
    }
    std::fs::canonicalize(&d.port).unwrap_or_else(|_| PathBuf::from(&d.port))
}

/// Why this user cannot open `node` (None when it can).
pub fn access_problem(node: &Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    use std::os::unix::fs::MetadataExt;
    if access(node, AccessFlags::R_OK | AccessFlags::W_OK).is_ok() {
        return None;
    }
    let meta = match std::fs::metadata(node) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", node.display())),
    };
    let gid = nix::unistd::Gid::from_raw(meta.gid());
    let group = nix::unistd::Group::from_gid(gid)
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string());
    let member = nix::unistd::getgroups()
        .map(|gs| gs.contains(&gid) || nix::unistd::getegid() == gid)
        .unwrap_or(false);
    let mode = meta.mode() & 0o777;
    let installed = std::fs::read_to_string(Path::new(SYSTEM_RULES_DIR).join(RULES_NAME))
        .map(|t| t == UDEV_RULES);
    let mut why = format!("mode {mode:03o}, group {group}");
    if mode & 0o060 != 0o060 {
        why.push_str(
            "; the group may not read and write it: the daq-engine udev rules are not applied",
        );
    } else if !member {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "$USER".into());
        why.push_str(&format!(
            "; you are not in group {group}: sudo usermod -aG {group} {user}, then log out and in"
        ));
    }
    match installed {
        Ok(true) => why.push_str(&format!(
            "; rules installed in {SYSTEM_RULES_DIR}: unplug and replug the device"
        )),
        Ok(false) => why.push_str(&format!(
            "; {SYSTEM_RULES_DIR}/{RULES_NAME} differs from this version: run `daq-engine udev install`"
        )),
        Err(_) => why.push_str("; rules not installed: run `daq-engine udev install`"),
    }
    Some(why)
}

/// `daq-engine udev check`.
pub fn udev_check() -> i32 {
    // The Debian package installs the rules where packages put theirs; udev reads both.
    let packaged = Path::new(PACKAGE_RULES_DIR).join(RULES_NAME);
    if std::fs::read_to_string(&packaged).is_ok_and(|t| t == UDEV_RULES) {
        println!(
            "udev rules: {} installed by the package and current",
            packaged.display()
        );
    }
    let installed = std::fs::read_to_string(Path::new(SYSTEM_RULES_DIR).join(RULES_NAME));
    match &installed {
        Ok(t) if t == UDEV_RULES => {
            println!("udev rules: {SYSTEM_RULES_DIR}/{RULES_NAME} installed and current")
        }
        Ok(_) => println!(
            "udev rules: {SYSTEM_RULES_DIR}/{RULES_NAME} is from another version: run `daq-engine udev install`"
        ),
        Err(_) if packaged.exists() => {}
        Err(_) => println!(
            "udev rules: not installed ({SYSTEM_RULES_DIR}/{RULES_NAME} missing): run `daq-engine udev install`"
        ),
    }
    let (found, notes) = scan_all();
    for n in &notes {
        println!("note: {n}");
    }
    if found.is_empty() {
        println!("no supported devices connected; nothing to check");
        return 0;
    }
    let mut bad = 0;
    for d in &found {
        let node = node_of(d);
        match access_problem(&node) {
            None => println!(
                "{}  {}  {}: found, you can open it",
                d.port,
                d.model,
                node.display()
            ),
            Some(why) => {
                bad += 1;
                println!(
                    "{}  {}  {}: found, you CANNOT open it: {why}",
                    d.port,
                    d.model,
                    node.display()
                );
            }
        }
    }
    if bad > 0 {
        1
    } else {
        0
    }
}

/// One row of `bench drivers`.
#[derive(Clone, Debug)]
pub struct DriverRate {
    /// Device and configuration measured.
    pub device: String,
    /// Bytes per event.
    pub event_bytes: usize,
    /// Events read.
    pub events: u64,
    /// Events per second through the driver.
    pub events_per_s: f64,
    /// MB/s through the driver.
    pub mb_per_s: f64,
    /// Ring rate for the same event size (events/s), if measured.
    pub ring_events_per_s: Option<f64>,
}

/// Publishes `events` events of `event_bytes` through an in-process ring with one reader
/// thread and returns events per second.
pub fn ring_rate(event_bytes: usize, events: u64) -> Result<f64, String> {
    use crate::dtype::Dtype;
    use crate::ring::{Next, Policy, Ring, RingSpec};
    use crate::shm::{places, HugePages};
    let records = event_bytes.div_ceil(4).max(1);
    let slot_count = (8 << 20) / (records * 4 + 64);
    let slot_count = slot_count.clamp(2, 1024).next_power_of_two().min(1024);
    let spec = RingSpec {
        name: format!("bench-drivers-{}-{}", std::process::id(), event_bytes),
        dtype: Dtype::parse([("x", "u4")]).map_err(|e| e.to_string())?,
        data_length: records,
        slot_count,
        policy: Policy::Block,
        groups: vec![1],
    };
    let ring = Ring::create(&places(HugePages::Off, None), &spec).map_err(|e| e.to_string())?;
    let mut producer = ring.producer().map_err(|e| e.to_string())?;
    let mut reader = ring.reader(0, 0).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let got = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let mut n = 0u64;
            let mut sum = 0u64;
            while let Next::Event(ev) = reader.next(Duration::from_secs(5)) {
                sum = sum.wrapping_add(u64::from(ev.data()[0]));
                n += 1;
            }
            std::hint::black_box(sum);
            n
        });
        for i in 0..events {
            let Ok(mut slot) = producer.claim(Duration::from_secs(5)) else {
                break;
            };
            let d = slot.data_mut();
            d.fill(i as u8);
            slot.publish();
        }
        producer.close();
        h.join().unwrap_or(0)
    });
    let secs = t0.elapsed().as_secs_f64();
    if got != events {
        return Err(format!("ring bench read {got} of {events} events"));
    }
    Ok(events as f64 / secs.max(1e-9))
}

/// A serial detector's rate: its simulator on a pty (`simulate`), the driver opened on the
/// pty's path (`open`), `events` (or 2000; at most 5000: the simulators pace them) read as
/// fast as they come.
pub(super) fn serial_rate<S: daq_drivers::Source>(
    name: &str,
    events: Option<u64>,
    simulate: impl FnOnce()
        -> std::io::Result<(daq_drivers::serial::SimulatorHandle, std::path::PathBuf)>,
    open: impl FnOnce(std::path::PathBuf) -> Result<S, daq_drivers::DriverError>,
) -> Result<DriverRate, String> {
    let events = events.unwrap_or(2_000).min(5_000);
    let (_sim, path) = simulate().map_err(|e| e.to_string())?;
    let mut src = open(path).map_err(|e| e.to_string())?;
    let size = src.layout().event_size();
    let mut out = vec![0u8; size];
    src.start().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut n = 0u64;
    while n < events {
        match src
            .read_event(&mut out, Duration::from_secs(2))
            .map_err(|e| e.to_string())?
        {
            daq_drivers::ReadOutcome::Event(_) => n += 1,
            daq_drivers::ReadOutcome::Idle => return Err(format!("{name}: no event for 2 s")),
            daq_drivers::ReadOutcome::End => break,
        }
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    Ok(DriverRate {
        device: name.into(),
        event_bytes: size,
        events: n,
        events_per_s: n as f64 / secs,
        mb_per_s: (n as f64 * size as f64) / 1e6 / secs,
        ring_events_per_s: None,
    })
}

/// Events a waveform device's row reads: `events`, or 20000.
pub(super) fn wave_events(events: Option<u64>) -> u64 {
    events.unwrap_or(20_000)
}

/// The row of a device measured through a [`daq_drivers::usb::BenchFigures`].
pub(super) fn figures_row(
    device: &str,
    figures: Result<daq_drivers::usb::BenchFigures, daq_drivers::DriverError>,
) -> Result<DriverRate, String> {
    figures
        .map(|f| DriverRate {
            device: device.into(),
            event_bytes: (f.bytes / f.events.max(1)) as usize,
            events: f.events,
            events_per_s: f.events_per_second(),
            mb_per_s: f.megabytes_per_second(),
            ring_events_per_s: None,
        })
        .map_err(|e| e.to_string())
}

/// Measures every simulated device through its driver (each family's rows,
/// [`super::Family::bench`]), with the ring's rate beside it.
pub fn measure(events: Option<u64>) -> Vec<Result<DriverRate, String>> {
    let mut rows: Vec<Result<DriverRate, String>> = super::FAMILIES
        .iter()
        .flat_map(|f| (f.bench)(events))
        .collect();
    for r in rows.iter_mut().flatten() {
        let n = (200_000_000 / r.event_bytes.max(16) as u64).clamp(2_000, 200_000);
        r.ring_events_per_s = ring_rate(r.event_bytes.max(16), n).ok();
    }
    rows
}

/// `daq-engine bench drivers`.
pub fn bench_drivers(events: Option<u64>) -> i32 {
    println!(
        "driver path of every simulated device into one reused event buffer, beside the ring's \
         own rate for the same event size (in-process producer and reader thread)"
    );
    println!(
        "{:<78} {:>8} {:>8} {:>12} {:>10} {:>12} {:>10}",
        "device", "bytes", "events", "driver ev/s", "MB/s", "ring ev/s", "MB/s"
    );
    let mut failed = 0;
    for r in measure(events) {
        match r {
            Ok(r) => {
                let (re, rm) = match r.ring_events_per_s {
                    Some(e) => (
                        format!("{e:.0}"),
                        format!("{:.0}", e * r.event_bytes as f64 / 1e6),
                    ),
                    None => ("-".into(), "-".into()),
                };
                println!(
                    "{:<78} {:>8} {:>8} {:>12.0} {:>10.1} {:>12} {:>10}",
                    r.device, r.event_bytes, r.events, r.events_per_s, r.mb_per_s, re, rm
                );
            }
            Err(e) => {
                failed += 1;
                println!("failed: {e}");
            }
        }
    }
    println!(
        "serial rows are paced by their simulators (device seconds shortened); they show the \
         driver keeps up, not a device limit"
    );
    if failed > 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daq_drivers::Family;

    fn found(family: Family, model: &str) -> DeviceInfo {
        DeviceInfo {
            family,
            model: model.into(),
            serial: None,
            port: "/dev/ttyUSB0".into(),
            usb_id: None,
        }
    }

    /// A scan's guess at a serial port ends in "probe needed"; the hint names the command
    /// with the first such port.
    #[test]
    fn a_guessed_serial_port_gets_the_probe_command() {
        let mut pico = found(Family::PicoScope, "PicoScope 3406D");
        assert_eq!(probe_hint(std::slice::from_ref(&pico)), None);
        let guess = found(
            Family::LineCounter,
            "CP210x (10c4:ea60): line-output counter - probe needed",
        );
        pico.port = "usb:1-2".into();
        let hint = probe_hint(&[pico, guess]).unwrap();
        assert!(
            hint.starts_with("probe needed: `daq-engine devices --probe /dev/ttyUSB0` listens"),
            "{hint}"
        );
    }

    /// What `daq-engine devices` suggests for each family, as the command has always printed.
    #[test]
    fn every_family_suggests_its_function_and_setup() {
        let want = [
            (Family::Gmc, "x", "device.gmc", "setups/geiger_gmc.yaml"),
            (
                Family::LineCounter,
                "NetIO GC10",
                "device.gc10",
                "setups/mightyohm.yaml (function: device.gc10)",
            ),
            (
                Family::LineCounter,
                daq_drivers::linecounter::ONE_INTEGER,
                "device.gc10 or device.line_counter",
                "setups/mightyohm.yaml (function: device.gc10)",
            ),
            (
                Family::LineCounter,
                "MightyOhm kit",
                "device.mightyohm",
                "setups/mightyohm.yaml",
            ),
            (
                Family::LineCounter,
                "CP210x (10c4:ea60): line-output counter - probe needed",
                "device.mightyohm, device.gc10 or device.line_counter",
                "setups/mightyohm.yaml",
            ),
            (
                Family::CosmicWatch,
                "x",
                "device.cosmicwatch",
                "setups/cosmicwatch.yaml",
            ),
            (
                Family::PicoScope,
                "x",
                "device.picoscope",
                "setups/picoscope_muon.yaml",
            ),
            (
                Family::Hantek6022,
                "x",
                "device.hantek6022",
                "setups/hantek6022.yaml",
            ),
            (Family::Drs4, "x", "device.drs4", "setups/drs4_sipm.yaml"),
            (
                Family::RedPitaya,
                "x",
                "device.redpitaya",
                "setups/redpitaya_spectroscopy.yaml",
            ),
        ];
        for (family, model, function, setup) in want {
            assert_eq!(
                function_for(&found(family, model)),
                (function, setup),
                "{family:?} {model}"
            );
        }
    }

    /// The engine registers the same families as the driver crate, in the same order, and
    /// the functions of every family are the importers the registry lists.
    #[test]
    fn engine_and_driver_families_agree() {
        let engine: Vec<_> = super::super::FAMILIES
            .iter()
            .map(|f| f.driver.family)
            .collect();
        let drivers: Vec<_> = daq_drivers::FAMILIES.iter().map(|f| f.family).collect();
        assert_eq!(engine, drivers);
        let names: Vec<_> = super::super::functions()
            .iter()
            .map(|(f, _)| f.spec.name)
            .collect();
        assert_eq!(
            names,
            [
                "device.gmc",
                "device.mightyohm",
                "device.gc10",
                "device.line_counter",
                "device.cosmicwatch",
                "device.picoscope",
                "importers.picoscope.source",
                "device.hantek6022",
                "device.drs4",
                "device.redpitaya",
            ]
        );
    }

    /// What `daq-engine devices` prints with nothing plugged in, as it always has.
    #[test]
    fn nothing_found_names_every_usb_id_sought() {
        assert_eq!(
            nothing_found(),
            "No supported devices found: no serial detector ports (looked in /dev/serial/by-id, \
             /dev/ttyUSB*, /dev/ttyACM*, /dev/daq) and no PicoScope (0ce9:*), Hantek 6022 \
             (04b4:6022/602a/2020, 04b5:6022/602a, 1d50:608e) or DRS4 (04b4:1175) on USB.\n\
             Plug the device in and check `dmesg`/`lsusb`; install the udev rules with \
             `daq-engine udev install`; on Ubuntu with a CH340 (1a86:7523) check that brltty did \
             not take the port. Without hardware, try any setup with --simulate, e.g.\n  \
             daq-engine setups/geiger_gmc.yaml --simulate"
        );
    }
}
