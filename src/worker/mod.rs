//! (worker: see DESIGN.md)
