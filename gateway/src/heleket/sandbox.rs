//! The sandbox payment provider (not written yet).
