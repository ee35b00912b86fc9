//! Xen public ABI (xen/include/public, Xen 4.17) and hypercalls.
pub mod callback;
pub mod console_ring;
pub mod cpuid;
pub mod error;
pub mod event_channel;
pub mod frame;
pub mod hvm;
pub mod hvm_start_info;
pub mod hypercall;
pub mod machphys;
pub mod mmu;
pub mod multicall;
pub mod ops;
pub mod physdev;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod traps;
pub mod vcpu;

#[cfg(test)]
mod fake_hypervisor;
