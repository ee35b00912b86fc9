//! Xen public ABI (xen/include/public, Xen 4.17) and hypercalls.
pub mod error;
pub mod hvm_start_info;
pub mod hypercall;
pub mod ops;
