//! What the kernel runs on, decided once at boot: hypervisor, and how to stop.
pub mod exit;
