//! The `daq-engine` command.

fn main() {
    eprintln!("daq-engine: under construction");
    std::process::exit(2);
}
