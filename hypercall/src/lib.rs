//! Hypervisor ABIs: CPUID detection, KVM and Xen interfaces.
#![cfg_attr(not(test), no_std)]

pub mod cpuid;
pub mod xen;
