//! (shm: see DESIGN.md)
