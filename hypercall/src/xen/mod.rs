//! Xen public ABI (xen/include/public, Xen 4.17).
pub mod hvm_start_info;
