//! Self-benchmarks: each prints one `@janus bench` line with min, median and p99.
pub mod stats;

#[cfg(target_os = "none")]
mod cases;
#[cfg(target_os = "none")]
mod clock;
#[cfg(target_os = "none")]
pub use cases::run_all;
#[cfg(target_os = "none")]
mod io;
#[cfg(target_os = "none")]
mod paging;
