//! The `daq-engine` command line: what a physicist types.
//!
//! Exit codes: 0 the run finished (or the command succeeded), 1 the run failed,
//! 2 the setup or the command line is wrong.

pub mod bench;
pub mod bench_python;
pub mod check;
pub mod migrate;
pub mod recover;
pub mod run;
pub mod status;
pub mod tune;

/// The exit codes of every command: what a script or systemd sees.
pub mod exit {
    /// Done: the run finished (or stopped cleanly), the setup is good, the file recovered.
    pub const OK: i32 = 0;
    /// Something failed after it started: a worker failed, a file could not be written.
    pub const FAILED: i32 = 1;
    /// Bad input, found before anything started: a setup `check` refuses, a bad argument,
    /// a path that is not a run directory. No run directory is made.
    pub const BAD_INPUT: i32 = 2;
}

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Data acquisition for physics detectors: ring buffers in shared memory, one process per
/// worker, HDF5 output. Give it a setup file (the mimoCoRB2 format) and it runs until the
/// sources end, a limit is reached, or you press Ctrl-C (once: finish cleanly; twice: abort).
#[derive(Parser, Debug)]
#[command(name = "daq-engine", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The setup file to run (see `setups/` for examples; `daq-engine check` validates one).
    pub setup: Option<PathBuf>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A number of seconds above 0 and at most a year ([`crate::worker::Config::LONGEST`], the
/// longest a setup's time keys may give): a longer wait is none a run has, and past it a
/// clock's arithmetic overflows.
fn positive_seconds(s: &str) -> Result<f64, String> {
    let longest = crate::worker::Config::LONGEST;
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= longest => Ok(x),
        _ => Err(format!(
            "'{s}' is not a number of seconds above 0 and at most a year ({longest} s)"
        )),
    }
}

/// A count of events as `--max-events` takes it (0 is refused with the setup's limits).
fn event_count(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("'{s}' is not a whole number of events (1 or more)"))
}

/// Options of a run.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Stop after this many events per importer (overrides `options.max_events`).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = event_count)]
    pub max_events: Option<u64>,

    /// Stop after this many seconds (overrides `options.max_seconds`).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub max_seconds: Option<f64>,

    /// Print plain progress lines instead of the live display.
    #[arg(long)]
    pub no_tui: bool,

    /// Print nothing but the summary.
    #[arg(long, short)]
    pub quiet: bool,

    /// Seconds between plain progress lines (without the live display: when the output is
    /// not a terminal, a service's journal, or with --no-tui).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = positive_seconds)]
    pub progress_every: f64,

    /// Replace every hardware importer by its device simulator (try a setup without hardware).
    #[arg(long)]
    pub simulate: bool,

    /// Write the run directory here instead of the setup's `target_directory`.
    #[arg(long, value_name = "DIR")]
    pub target_directory: Option<PathBuf>,

    /// Serve a live page with rates, traces, histograms and pause/resume/stop at this
    /// address (e.g. 127.0.0.1:8080). Loopback only unless --http-any is given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Allow --http on a non-loopback address (then a token is required).
    #[arg(long, requires = "http")]
    pub http_any: bool,

    /// File whose first line is the token every request to --http must carry
    /// (Authorization: Bearer TOKEN; the page: open http://ADDR/#token=TOKEN). Without it,
    /// the environment variable DAQ_ENGINE_TOKEN. Never on the command line: `ps` shows it.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub token_file: Option<PathBuf>,
}

/// Commands besides running a setup.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a setup file (the same as `daq-engine SETUP`).
    Run {
        /// The setup file.
        setup: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Validate a setup file and print its pipeline; writes nothing but the graph.
    Check {
        /// The setup file.
        setup: PathBuf,
        /// Also write the pipeline as Graphviz to this file.
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
        /// Check as a run with --simulate would start (no serial port needs to exist).
        #[arg(long)]
        simulate: bool,
        /// Then run options.alert_command once (DAQ_ALERT_KIND=test, DAQ_RUN_DIR the target
        /// directory) and say whether it worked: see the mail arrive before the run relies
        /// on it.
        #[arg(long)]
        test_alert: bool,
    },
    /// Port a mimoCoRB2 setup: writes NAME_daq-engine.yaml beside it with what is read
    /// differently here changed, and prints each change and why.
    Migrate {
        /// The setup file.
        setup: PathBuf,
        /// Write the port here instead.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the built-in worker functions with their config keys.
    Functions {
        /// Only this function.
        name: Option<String>,
    },
    /// Measure: `ring`, `ring-loaded` (latency with the other CPU busy), `pipeline`,
    /// `python`, `analysis`, `hdf5`, `drivers`, `kafka` or `web`.
    Bench {
        /// What to measure.
        what: String,
        /// Events per case (defaults depend on the benchmark; `ring`, `analysis` and `web`
        /// run each case for a set time instead).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        events: Option<u64>,
        /// For `pipeline` and `python`: also run mimoCoRB2 from this reference directory.
        #[arg(long, value_name = "DIR")]
        reference: Option<PathBuf>,
    },
    /// List connected supported devices (serial detectors, PicoScope, Hantek 6022, DRS4)
    /// with the function and setup to use for each; `--probe` asks one serial port or
    /// network device.
    Devices {
        /// Find out which device is behind this serial port (a path: it listens, then asks),
        /// or ask a network device at this address (a Red Pitaya: HOST or HOST:PORT).
        #[arg(long, value_name = "PORT|HOST[:PORT]")]
        probe: Option<String>,
        /// With `--probe PORT`: seconds to listen at each baud rate before asking (a counter
        /// that prints less often needs more).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 3.0,
            requires = "probe"
        )]
        listen: f64,
    },
    /// Check this machine's real-time readiness (isolated cores, RT throttling, CPU
    /// governor, huge pages, memlock, irqbalance): what each costs and how to change it.
    Tune {
        /// Change the settings that are safe to change now (saving the old values).
        #[arg(long, conflicts_with = "restore")]
        apply: bool,
        /// Put back what `--apply` changed.
        #[arg(long)]
        restore: bool,
        /// With --apply: reserve this many 2 MiB huge pages.
        #[arg(long, value_name = "N", requires = "apply")]
        hugepages: Option<u64>,
        /// Read and write below this directory instead of / (for tests).
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
    },
    /// Install or check the udev rules that give users access to the devices.
    Udev {
        #[command(subcommand)]
        action: UdevAction,
    },
    /// Print what an HDF5 run file holds: buffers, fields, events, counters, time span.
    Inspect {
        /// The .h5 files; a run directory stands for every .h5 file in it.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the state of a running or finished run from its run directory; exits 1 for a run
    /// that did not finish (none of its processes is alive and its last line is not its end)
    /// and for a live run whose supervisor writes no statistics any more (stopped or hung).
    Status {
        /// The run directory (`target/run_…`); a target directory stands for its newest run.
        run_dir: PathBuf,
    },
    /// Make the files of a run that did not finish (killed, power cut) readable everywhere:
    /// clear the HDF5 writer flags, cut `data` and `metadata` to the events both hold,
    /// compress, and write summary.json marked "recovered". A run started into the same
    /// target directory does this by itself.
    Recover {
        /// The run directory (`target/run_…`); a target directory stands for each run in it
        /// that did not finish.
        run_dir: PathBuf,
    },
    /// Print the manual page (roff), made from this command line's help:
    /// `daq-engine man > daq-engine.1` (the Debian package installs it).
    Man,
    #[command(hide = true, name = "__plugin-probe")]
    /// Internal: loads a user library and says whether it is a daq-engine plugin (started by
    /// `check` and the run, so that a library that crashes while loading costs only this
    /// process).
    PluginProbe {
        /// The library.
        library: PathBuf,
    },
    #[command(hide = true, name = "__python-probe")]
    /// Internal: imports a Python worker file and checks its function (started by `check`
    /// and the run, so that a file that fails to import costs only this process).
    PythonProbe {
        /// The worker file.
        file: PathBuf,
        /// The worker function.
        function: String,
        /// The venv whose packages it imports.
        venv: Option<PathBuf>,
    },
    #[command(hide = true, name = "__recover-file")]
    /// Internal: cuts one run file of a run that did not finish to its whole events
    /// (started by the recovery, so that a libhdf5 that loops over a damaged file can be
    /// stopped).
    RecoverFile {
        /// The run file.
        file: PathBuf,
    },
    #[command(hide = true, name = "__worker")]
    /// Internal: one worker process (started by the supervisor).
    Worker {
        /// plan.json of the run.
        plan: PathBuf,
        /// Worker name.
        worker: String,
        /// Process index.
        process: usize,
    },
}

/// `daq-engine udev …`.
#[derive(Subcommand, Debug)]
pub enum UdevAction {
    /// Copy the rules to /etc/udev/rules.d, reload udev and re-trigger devices (needs root).
    Install {
        /// Print what would be done and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the rules file into this directory instead of /etc/udev/rules.d (udev is
        /// then not reloaded; also settable with DAQ_UDEV_RULES_DIR).
        #[arg(long, value_name = "DIR")]
        rules_dir: Option<PathBuf>,
    },
    /// For each connected supported device: whether this user can open it, and why not.
    Check,
}

impl Command {
    /// Whether the command only reads and prints (nothing it would leave half done, no
    /// socket), so that a reader that stops early (`| head`) may simply end it.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Check { .. }
                | Command::Functions { .. }
                | Command::Status { .. }
                | Command::Inspect { .. }
                | Command::Devices { probe: None, .. }
                | Command::Man
        )
    }
}

/// Lets SIGPIPE end the process, as it ends any Unix command whose output reader has gone
/// (`daq-engine inspect run.h5 | head`): Rust ignores the signal, and the next `println!`
/// would panic instead. Only for commands that only print: a run keeps ignoring it (a web
/// client or broker that hangs up is an error there, not an end).
fn end_quietly_when_output_goes() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called on the main thread before any other thread starts; setting the default
    // disposition installs no handler code.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("daq-engine: could not restore SIGPIPE: {e}");
    }
}

/// Runs a parsed command line (everything but the hidden worker mode); returns the exit code.
pub fn main(
    setup: Option<PathBuf>,
    run: RunArgs,
    command: Option<Command>,
    registry: &crate::worker::Registry,
) -> i32 {
    if command.as_ref().is_some_and(Command::only_prints) {
        end_quietly_when_output_goes();
    }
    match command {
        None => match setup {
            Some(path) => run::run(&path, &run, registry),
            None => {
                eprintln!(
                    "daq-engine: no setup file given.\n\
                     Try the demo, which needs no hardware:  daq-engine setups/demo.yaml\n\
                     or see `daq-engine --help`."
                );
                exit::BAD_INPUT
            }
        },
        Some(Command::Run { setup, run }) => run::run(&setup, &run, registry),
        Some(Command::Check {
            setup,
            dot,
            simulate,
            test_alert,
        }) => check::check(&setup, dot.as_deref(), simulate, test_alert, registry),
        Some(Command::Migrate { setup, output }) => {
            migrate::migrate(&setup, output.as_deref(), registry)
        }
        Some(Command::Functions { name }) => functions(name.as_deref(), registry),
        Some(Command::Status { run_dir }) => status::status(&run_dir),
        Some(Command::Recover { run_dir }) => recover::recover(&run_dir),
        Some(Command::Inspect { files }) => inspect(&files),
        Some(Command::Devices { probe: None, .. }) => crate::devices::tools::devices(),
        Some(Command::Devices {
            probe: Some(a),
            listen,
        }) => crate::devices::tools::probe(&a, listen),
        Some(Command::Tune {
            apply,
            restore,
            hugepages,
            root,
        }) => tune::run(apply, restore, hugepages, root.as_deref()),
        Some(Command::Man) => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("daq-engine: writing the manual page: {e}");
                    exit::FAILED
                }
            }
        }
        Some(Command::Udev {
            action: UdevAction::Install { dry_run, rules_dir },
        }) => crate::devices::tools::udev_install(dry_run, rules_dir.as_deref()),
        Some(Command::Udev {
            action: UdevAction::Check,
        }) => crate::devices::tools::udev_check(),
        Some(Command::Bench {
            what,
            events,
            reference,
        }) => bench::bench(&what, events, reference.as_deref(), registry),
        Some(Command::Worker { .. }) => exit::BAD_INPUT,
        Some(Command::RecoverFile { file }) => recover::cut_file(&file),
        Some(Command::PythonProbe {
            file,
            function,
            venv,
        }) => crate::python::probe(&file, &function, venv.as_deref()),
        Some(Command::PluginProbe { library }) => {
            match crate::worker::plugin::load(&library, &mut registry.clone()) {
                Ok(names) => {
                    println!("{}", names.join("\n"));
                    exit::OK
                }
                Err(e) => {
                    eprintln!("{e}");
                    exit::BAD_INPUT
                }
            }
        }
    }
}

fn functions(only: Option<&str>, registry: &crate::worker::Registry) -> i32 {
    let mut found = false;
    for f in registry.all() {
        let s = &f.spec;
        if only.is_some_and(|o| o != s.name) {
            continue;
        }
        found = true;
        println!("{}  ({})", s.name, s.template);
        println!("    {}", s.summary);
        println!(
            "    sources: {}, sinks: {}, observes: {}",
            s.sources, s.sinks, s.observes
        );
        for k in s.keys {
            let dflt = match (k.required, k.default) {
                (true, _) => "required".to_string(),
                (false, Some(d)) => format!("default {d}"),
                (false, None) => "optional".to_string(),
            };
            println!(
                "    {:<20} {:<14} {:<18} {}",
                k.name,
                k.ty.describe(),
                dflt,
                k.doc
            );
        }
        println!();
    }
    if !found {
        eprintln!("daq-engine: no function '{}'", only.unwrap_or(""));
        return exit::BAD_INPUT;
    }
    exit::OK
}

/// The whole program for a given set of functions: parses the command line, and either runs
/// a worker process (when started by the supervisor) or the command. A user's own binary
/// calls this with the built-ins plus their functions; it returns the exit code.
pub fn run_main(registry: crate::worker::Registry) -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Worker {
            plan,
            worker,
            process,
        }) => {
            if let Ok(p) = crate::run_dir::plan::Plan::load(&plan) {
                crate::engine::init_log(&crate::run_dir::log_path(&p.run_dir));
            }
            crate::runtime::run(
                &plan,
                &worker,
                process,
                &registry,
                crate::python::run_worker,
            )
        }
        command => main(cli.setup, cli.run, command, &registry),
    }
}

/// `daq-engine inspect FILE…`: each file in turn (a run directory: its .h5 files by name),
/// a blank line between them, and the setup a file carries unless it is the one shown last
/// (the files of one run carry the same). A file that cannot be read is reported and the
/// others are still shown; the exit code says whether any failed.
fn inspect(args: &[PathBuf]) -> i32 {
    let mut files = Vec::new();
    let mut code = exit::OK;
    for arg in args {
        if !arg.is_dir() {
            files.push(arg.clone());
            continue;
        }
        let mut h5: Vec<PathBuf> = std::fs::read_dir(arg)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        h5.retain(|p| p.extension().is_some_and(|e| e == "h5"));
        // A FIFO named like a run file would make the reading wait for a writer for ever.
        h5.retain(|p| {
            let file = p.is_file();
            if !file {
                eprintln!(
                    "daq-engine: {}: not a regular file (a FIFO, a device or a directory): \
                     passed over",
                    p.display()
                );
                code = exit::FAILED;
            }
            file
        });
        if h5.is_empty() {
            // A target directory: say which run to give.
            let hint = status::newest_run(arg).map_or(String::new(), |run| {
                format!(
                    " (it holds runs: give one, the newest is {})",
                    run.display()
                )
            });
            eprintln!(
                "daq-engine: {}: no .h5 file in this directory{hint}",
                arg.display()
            );
            code = exit::FAILED;
        }
        h5.sort();
        files.extend(h5);
    }
    // The setup shown last, and the file it was shown with.
    let mut shown: Option<(String, &PathBuf)> = None;
    for (i, file) in files.iter().enumerate() {
        let read = {
            let _spin = crate::export::spin::SpinGuard::watch(file, exit::FAILED);
            crate::export::inspect_apart(file)
        };
        match read {
            Ok((text, setup)) => {
                print!("{}{text}", if i > 0 { "\n" } else { "" });
                match (setup, &shown) {
                    (Some(s), Some((last, with))) if &s == last => {
                        println!("\nsetup: the same as {}'s", with.display());
                    }
                    (Some(s), _) => {
                        print!("{}", crate::export::setup_text(&s));
                        shown = Some((s, file));
                    }
                    (None, _) => {}
                }
            }
            Err(e) => {
                eprintln!("daq-engine: {e}");
                code = exit::FAILED;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--progress-every` takes a year and refuses what is not above 0 or is longer: past
    /// a year, the progress clock's arithmetic overflowed and the run panicked.
    #[test]
    fn progress_every_is_above_0_and_at_most_a_year() {
        let every = |arg: &str| {
            Cli::try_parse_from(["daq-engine", "s.yaml", "--progress-every", arg])
                .map(|cli| cli.run.progress_every)
        };
        assert_eq!(every("31536000").unwrap(), 31_536_000.0);
        assert_eq!(every("0.5").unwrap(), 0.5);
        for bad in ["31536001", "1e20", "inf", "nan", "0"] {
            let e = every(bad).unwrap_err().to_string();
            assert!(e.contains("at most a year (31536000 s)"), "{bad}: {e}");
        }
    }
}
