//! sFlow v5 collector.
