//! Hypervisor ABIs: CPUID detection, KVM and Xen interfaces.
#![cfg_attr(not(test), no_std)]

pub mod cpuid;
mod flag_names;
pub mod kvm;
pub mod xen;
