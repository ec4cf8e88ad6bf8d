//! (monitor: see DESIGN.md)
