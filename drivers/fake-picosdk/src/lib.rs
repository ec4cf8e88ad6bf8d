//! Fake PicoScope vendor library (filled in by the USB driver work).
