//! Hypervisor ABIs: CPUID detection, KVM and Xen interfaces.
#![no_std]

pub mod cpuid;
pub mod xen;
