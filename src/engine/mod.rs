//! (engine: see DESIGN.md)
