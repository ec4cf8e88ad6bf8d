//! (hantek6022: filled in by its driver work; see HARDWARE.md)
