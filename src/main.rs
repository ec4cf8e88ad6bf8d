//! The `daq-engine` command.

use clap::Parser;
use daq_engine::cli::{Cli, Command};
use daq_engine::engine::{self, Registry};

fn main() {
    let cli = Cli::parse();
    let registry = Registry::builtin();
    let code = match cli.command {
        Some(Command::Worker {
            plan,
            worker,
            process,
        }) => {
            if let Ok(p) = engine::Plan::load(&plan) {
                engine::init_log(&engine::process::log_path(&p.run_dir));
            }
            engine::process::run(&plan, &worker, process, &registry)
        }
        command => daq_engine::cli::main(cli.setup, cli.run, command, &registry),
    };
    std::process::exit(code);
}
