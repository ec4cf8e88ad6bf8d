//! (ring: see DESIGN.md)
