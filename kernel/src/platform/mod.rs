//! What the kernel runs on, decided once at boot: hypervisor, console, and how to stop.
pub mod exit;
pub mod xen;
