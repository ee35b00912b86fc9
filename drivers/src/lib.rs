//! no_std device drivers for Janus.
#![cfg_attr(not(test), no_std)]

pub mod acpi_pm_timer;
pub mod apic;
pub mod ata_pio;
pub mod disk_pattern;
pub mod hpet;
pub mod ioapic;
pub mod isa_irq;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod pvclock;
pub mod rtc;
pub mod uart16550;
pub mod virtio_blk;
pub mod virtio_mmio;
pub mod wrapping_counter;
