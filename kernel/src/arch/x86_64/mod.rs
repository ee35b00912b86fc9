//! Everything specific to x86_64: boot entry, descriptor tables, traps, paging hardware.
pub mod backtrace;
pub mod boot;
pub mod cpu;
pub mod extable;
mod gdt;
mod idt;
pub mod interrupt;
pub mod paging;
pub mod stack;
pub mod trap;
mod xen_pv_entry;
