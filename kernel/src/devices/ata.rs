//! The emulated IDE disk of QEMU `-M pc`, read by ATA PIO: the baseline virtio-blk is
//! measured against. Only probed where PCI shows a PIIX-style IDE controller in
//! compatibility mode, so its fixed ports are known to belong to it.

use janus_drivers::ata_pio::{AtaPio, Channel, Drive, IoPorts};
use spin::Mutex;

use crate::println;
use crate::time::clock;

pub type Disk = AtaPio<IoPorts, fn() -> u64>;

pub static DISK: Mutex<Option<Disk>> = Mutex::new(None);

/// Looks for the primary master; `true` when a disk answered IDENTIFY.
pub fn probe() -> bool {
    // SAFETY: the caller saw an IDE controller in compatibility mode, so the primary
    // channel's legacy ports are its; nothing else in the kernel touches them.
    let ports = unsafe { IoPorts::new(Channel::PRIMARY) };
    match AtaPio::identify(ports, clock::now as fn() -> u64, Drive::Master) {
        Ok(disk) => {
            let identity = disk.identity();
            println!(
                "devices: ATA disk on the primary channel: '{}', {} sectors, PIO",
                identity.model(),
                identity.sectors
            );
            *DISK.lock() = Some(disk);
            true
        }
        Err(e) => {
            println!("devices: no ATA disk on the primary IDE channel: {e}");
            false
        }
    }
}
