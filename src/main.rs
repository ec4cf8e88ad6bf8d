//! The `daq-engine` command.

fn main() {
    let registry = daq_engine::worker::Registry::builtin();
    std::process::exit(daq_engine::cli::run_main(registry));
}
