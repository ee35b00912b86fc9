//! I/O devices: found once at boot on the PCI bus and among virtio-mmio transports, each
//! checked and set up, or refused with the reason while the kernel carries on without it.
//!
//! Virtio devices run on the virtio-drivers crate's queues with [`dma::JanusHal`]. The
//! block and network devices complete by interrupt (MSI-X, or an IOAPIC pin), or by polling
//! (`io-completion=poll`, or a device without an interrupt); the console and entropy
//! devices only ever wait for their own short requests and poll. The emulated IDE disk of
//! `-M pc` is the baseline the block benchmarks compare with.
//!
//! Under Xen nothing is probed: Janus has no drivers for Xen's own split devices, and a PV
//! guest's DMA would need machine addresses.

pub mod ata;
pub mod blk;
pub mod console;
pub mod dma;
pub mod irq;
pub mod net;
mod pci;
pub mod rng;
mod virtio_mmio;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use janus_drivers::virtio_blk::VirtioBlk;
use spin::Mutex;
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport as _};

pub use crate::boot::cmdline::Completion;
use crate::boot::cmdline::PciInterrupt;
use crate::boot::pvh::BootInfo;
use crate::platform::acpi;
use crate::println;
use blk::BlockDevice;
use net::NetDevice;

pub type Transport = SomeTransport<'static>;

/// Gives a device an interrupt vector once its driver has set up the given number of
/// queues.
pub type Connect = Box<dyn FnOnce(u16) -> Result<u8, String>>;

/// A virtio device found and not yet driven.
pub struct Candidate {
    /// Where it is, for messages: `pci 00:03.0`, `mmio 0xfeb00e00`.
    pub name: String,
    pub transport: Transport,
    /// `None` for a device without a usable interrupt line.
    pub connect: Option<Connect>,
}

pub static BLOCK: Mutex<Option<BlockDevice>> = Mutex::new(None);
pub static NETWORK: Mutex<Option<NetDevice>> = Mutex::new(None);

/// What [`probe`] found, for the env line.
pub struct Summary {
    /// How PCI configuration space was reached: `ecam`, `port-io`, or `none`.
    pub pci: &'static str,
    /// The devices in use, comma-separated (`blk,net,rng,console,ata`), or `none`.
    pub devices: String,
}

/// Finds and sets up every device the kernel drives. `acpi` gives the ECAM windows and the
/// DSDT's virtio-mmio transports; `pci_interrupt` says whether PCI devices may use MSI-X.
pub fn probe(
    boot: &BootInfo,
    acpi: Option<&acpi::Platform>,
    mode: Completion,
    pci_interrupt: PciInterrupt,
    seed: u64,
) -> Summary {
    let mut candidates = Vec::new();
    let pci = pci::probe(boot, acpi, pci_interrupt, &mut candidates);
    let dsdt = acpi.map_or(&[][..], |a| &a.virtio_mmio[..]);
    if pci.root.is_none() || !dsdt.is_empty() || has_mmio_entries(boot.cmdline()) {
        virtio_mmio::probe(dsdt, boot.cmdline(), &mut candidates);
    }
    let mut found: Vec<&'static str> = Vec::new();
    for candidate in candidates {
        if let Some(kind) = bring_up(candidate, mode, seed) {
            found.push(kind);
        }
    }
    if pci.ide && ata::probe() {
        found.push("ata");
    }
    Summary {
        pci: pci.root.unwrap_or("none"),
        devices: if found.is_empty() {
            String::from("none")
        } else {
            found.join(",")
        },
    }
}

fn has_mmio_entries(cmdline: &str) -> bool {
    cmdline
        .split([' ', '\t'])
        .any(|w| w.starts_with(crate::boot::cmdline::VIRTIO_MMIO_DEVICE))
}

/// Drives one virtio device; returns its short name when it works.
fn bring_up(candidate: Candidate, mode: Completion, seed: u64) -> Option<&'static str> {
    let Candidate {
        name,
        transport,
        connect,
    } = candidate;
    let connect = |queues| -> Option<u8> {
        match connect?(queues) {
            Ok(vector) => Some(vector),
            Err(e) => {
                println!("warning: {name}: no interrupt, polling instead: {e}");
                None
            }
        }
    };
    match transport.device_type() {
        DeviceType::Block => match VirtioBlk::new(transport) {
            Ok(driver) if BLOCK.lock().is_none() => {
                let sectors = driver.capacity();
                let vector = connect(1);
                println!(
                    "devices: virtio-blk at {name}: {sectors} sectors, {}",
                    completion_text(vector)
                );
                *BLOCK.lock() = Some(BlockDevice::new(name, driver, vector, mode));
                Some("blk")
            }
            Ok(_) => {
                println!("devices: virtio-blk at {name} ignored: only one disk is used");
                None
            }
            Err(e) => refuse("virtio-blk", &name, e),
        },
        DeviceType::Network => match NetDevice::new(name.clone(), transport, seed) {
            Ok(mut device) if NETWORK.lock().is_none() => {
                // Queue 0 receives, queue 1 transmits.
                let vector = connect(2);
                device.set_interrupt(vector, mode);
                let mac = device.mac;
                println!(
                    "devices: virtio-net at {name}: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, \
                     {}",
                    mac[0],
                    mac[1],
                    mac[2],
                    mac[3],
                    mac[4],
                    mac[5],
                    completion_text(vector)
                );
                *NETWORK.lock() = Some(device);
                Some("net")
            }
            Ok(_) => None,
            Err(e) => refuse("virtio-net", &name, e),
        },
        DeviceType::Console => match VirtIOConsole::new(transport) {
            Ok(device) => {
                println!("devices: virtio-console at {name}: second console, polled");
                console::install(device);
                Some("console")
            }
            Err(e) => refuse("virtio-console", &name, e),
        },
        DeviceType::EntropySource => match VirtIORng::new(transport) {
            Ok(device) => {
                println!("devices: virtio-rng at {name}: kernel entropy source, polled");
                rng::install(device);
                Some("rng")
            }
            Err(e) => refuse("virtio-rng", &name, e),
        },
        other => {
            println!("devices: virtio device type {other:?} at {name} has no driver here");
            None
        }
    }
}

fn completion_text(vector: Option<u8>) -> String {
    match vector {
        Some(v) => match irq::line_gsi(v) {
            Some(gsi) => alloc::format!("interrupt INTx GSI {gsi} -> vector {v:#x}"),
            None => alloc::format!("interrupt vector {v:#x}"),
        },
        None => String::from("polled"),
    }
}

fn refuse(kind: &str, name: &str, error: impl core::fmt::Display) -> Option<&'static str> {
    println!("warning: {kind} at {name} refused: {error}");
    None
}
