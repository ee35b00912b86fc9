//! Time: the clock sources, the one clock the kernel reads, timers and sleeping.
pub mod selection;
pub mod tsc;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod clock;
#[cfg(target_os = "none")]
pub mod kvmclock;
#[cfg(target_os = "none")]
pub mod timer;
