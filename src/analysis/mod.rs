//! (analysis: see DESIGN.md)
