//! Caches of read-model rows (being written).
