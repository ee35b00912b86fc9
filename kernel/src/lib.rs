//! The Janus kernel.
//!
//! Pure logic (parsers, allocator bookkeeping, page-table walks, statistics) is compiled for
//! the host as well so `cargo test` can exercise it; everything that touches hardware is
//! compiled only for the kernel target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod bench;
pub mod boot;
pub mod mm;
pub mod net;
pub mod rng;
pub mod time;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod devices;
#[cfg(target_os = "none")]
pub mod entropy;
#[cfg(target_os = "none")]
mod kmain;
pub mod platform;
#[cfg(target_os = "none")]
pub mod selftest;
