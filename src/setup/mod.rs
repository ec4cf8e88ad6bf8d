//! (setup: see DESIGN.md)
