//! (export: see DESIGN.md)
