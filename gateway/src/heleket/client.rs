//! The real Heleket HTTP client (not written yet).
