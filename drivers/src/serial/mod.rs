//! (serial: filled in by its driver work; see HARDWARE.md)
