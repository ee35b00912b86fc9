//! Time: the TSC and where its frequency comes from.
pub mod tsc;
