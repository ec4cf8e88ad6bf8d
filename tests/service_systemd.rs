//! The run as a systemd service: the unit template passes `systemd-analyze verify`, and the
//! real binary speaks sd_notify on a socket the test provides, as systemd would (READY=1
//! once every worker runs, watchdog pings, STATUS= lines with rates, STOPPING=1).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/daq-engine@.service");

mod runs;
use runs::{engine_in, finish_within, interrupt, summary, Dir};

/// `systemd-analyze verify` on `unit` (ExecStart pointed at the built binary: the installed
/// path does not exist here); its exit code and everything it said.
fn verify(dir: &Dir, unit: &str) -> Option<(i32, String)> {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let file = dir.0.join("daq-engine@.service");
    std::fs::write(&file, unit.replace("/usr/bin/daq-engine", EXE)).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(dir.0.join("daq-engine@lab.service"))
        .output()
        .expect("run systemd-analyze");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.code().unwrap_or(-1), text))
}

#[test]
fn the_unit_template_verifies_clean() {
    let dir = Dir::new("verify");
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let Some((code, text)) = verify(&dir, &unit) else {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package `systemd`)");
        return;
    };
    assert_eq!((code, text.as_str()), (0, ""), "systemd-analyze verify");
    // The checker itself catches a broken unit (so the clean result above means something).
    let broken = unit.replace("KillSignal=SIGINT", "KillSignal=SIGNOPE");
    let (code, text) = verify(&dir, &broken).unwrap();
    assert!(code != 0 || !text.is_empty(), "a bad signal name passed");
    for line in [
        "Type=notify",
        "KillSignal=SIGINT",
        "NotifyAccess=main",
        "ExecStart=/usr/bin/daq-engine run --no-tui --progress-every 60 /etc/daq-engine/%i.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
}

const SETUP: &str = "target_directory: runs
options: {stats_interval: 0.1}
Buffers:
  raw:
    slot_count: 64
    data_length: 16
    data_dtype: {ch0: f4}
Workers:
  source:
    function: bench.source
    sinks: [raw]
    config: {n_events: 1000000000}
  sink:
    function: bench.sink
    sources: [raw]
";

/// Runs the setup under a fake systemd listening on `socket_name` (a path, or `@name` for an
/// abstract socket) with a 200 ms watchdog, stops it with SIGINT once `STATUS=` lines
/// came, and returns every message in the order it arrived.
fn messages(tag: &str, abstract_socket: bool) -> Vec<String> {
    let dir = Dir::new(tag);
    std::fs::write(dir.0.join("setup.yaml"), SETUP).unwrap();
    let (sock, name) = if abstract_socket {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("daq-svc-{tag}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    } else {
        let path = dir.0.join("notify.sock");
        (
            UnixDatagram::bind(&path).unwrap(),
            path.to_string_lossy().into_owned(),
        )
    };
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let child = engine_in(&dir.0, &["setup.yaml", "--no-tui", "--quiet"])
        .env("NOTIFY_SOCKET", &name)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut stopped = false;
    // At most about 60 s of reading: a run that never reports fails below.
    for _ in 0..600 {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let statuses = got.iter().filter(|m| m.starts_with("STATUS=")).count();
        let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
        if !stopped && statuses >= 3 && pings >= 3 {
            stopped = true;
            interrupt(&child).unwrap();
            break;
        }
    }
    assert!(stopped, "no READY/STATUS/WATCHDOG within a minute: {got:?}");
    let (code, out) = finish_within(child, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    // systemd stops a unit with its KillSignal, SIGINT: under a service manager that is no
    // person's Ctrl-C, and the end is alerted as such.
    assert_eq!(summary(&dir.run_dir())["stopped_by"], "terminated");
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

fn check_order(got: &[String]) {
    let at = |m: &str| got.iter().position(|x| x == m);
    assert_eq!(at("READY=1"), Some(0), "READY=1 comes first: {got:?}");
    assert_eq!(got.iter().filter(|m| *m == "READY=1").count(), 1, "{got:?}");
    let stopping = at("STOPPING=1").unwrap_or_else(|| panic!("no STOPPING=1: {got:?}"));
    assert_eq!(
        got.iter().filter(|m| *m == "STOPPING=1").count(),
        1,
        "{got:?}"
    );
    let first_ping = at("WATCHDOG=1").unwrap_or_else(|| panic!("no WATCHDOG=1: {got:?}"));
    let first_status = got
        .iter()
        .position(|m| m.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS=: {got:?}"));
    assert!(
        first_ping < stopping && first_status < stopping,
        "pings and status before STOPPING: {got:?}"
    );
    // Status lines name the buffer with its rate and fill, one line each.
    for s in got.iter().filter(|m| m.starts_with("STATUS=")) {
        assert!(
            s.starts_with("STATUS=raw: ") && s.contains(" ev/s fill ") && !s.contains('\n'),
            "{s}"
        );
    }
    // The run made events, and a status line said so.
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=raw: ") && !m.starts_with("STATUS=raw: 0 ev/s")),
        "every status line says 0 ev/s: {got:?}"
    );
    // Nothing but the protocol's words.
    for m in got {
        assert!(
            m == "READY=1" || m == "WATCHDOG=1" || m == "STOPPING=1" || m.starts_with("STATUS="),
            "unexpected message {m:?}"
        );
    }
}

#[test]
fn sd_notify_on_a_socket_path() {
    check_order(&messages("path", false));
}

#[test]
fn sd_notify_on_an_abstract_socket() {
    check_order(&messages("abstract", true));
}

/// Without NOTIFY_SOCKET, progress on stderr carries no terminal escape codes (the
/// journal shows them as garbage) when stderr is not a terminal.
#[test]
fn no_escape_codes_when_stderr_is_not_a_terminal() {
    let dir = Dir::new("plain");
    std::fs::write(
        dir.0.join("setup.yaml"),
        SETUP.replace("n_events: 1000000000", "n_events: 20000"),
    )
    .unwrap();
    let child = engine_in(&dir.0, &["setup.yaml", "--progress-every", "0.1"])
        .spawn()
        .unwrap();
    let (code, out) = finish_within(child, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("daq-engine: run directory"), "{out}");
    assert!(!out.contains('\x1b'), "escape codes in {out:?}");
}

/// The Debian package's man page comes from `daq-engine man`: roff with the command's
/// options and subcommands.
#[test]
fn the_man_page_is_made_from_the_command_line() {
    let out = Command::new(EXE).arg("man").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH daq-engine 1"), "{page}");
    for word in ["\\-\\-max\\-events", "udev", "status", "recover"] {
        assert!(page.contains(word), "the man page lacks {word}: {page}");
    }
    assert!(
        !page.contains("__worker"),
        "hidden commands are not documented"
    );
}
