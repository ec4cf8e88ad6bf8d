//! Prints `udev/70-daq-engine.rules` as the registered families describe it:
//! `cargo run -p daq-drivers --example udev_rules > udev/70-daq-engine.rules`
//! after changing a family's udev lines (a test compares the file with this).

fn main() {
    print!("{}", daq_drivers::families::udev_rules());
}
