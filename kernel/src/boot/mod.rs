//! Boot protocols and the boot information they produce.
pub mod cmdline;
pub mod pvh;
pub mod xen_pv;
