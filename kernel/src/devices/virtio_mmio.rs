//! virtio-mmio transports (QEMU `-M microvm`): where the firmware's DSDT or the command line
//! says they are, or, when neither says anything, in the slots QEMU's microvm uses. Every
//! entry is checked against the registers at its address before a driver sees it.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use janus_drivers::ioapic::Signal;
use janus_drivers::virtio_mmio::{self, MmioDevice};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use x86_64::{PhysAddr, VirtAddr};

use super::{Candidate, irq};
use crate::boot::cmdline::VIRTIO_MMIO_DEVICE;
use crate::mm::device_memory;
use crate::platform::apic;
use crate::println;

/// Where an entry came from, for messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Acpi,
    Cmdline,
    Probe,
}

/// Adds a candidate for every device found; refuses, by name, listed entries with none.
pub fn probe(dsdt: &[MmioDevice], cmdline: &str, candidates: &mut Vec<Candidate>) {
    let mut entries: Vec<(MmioDevice, Origin, String)> = dsdt
        .iter()
        .map(|d| (*d, Origin::Acpi, format!("ACPI LNRO0005 at {:#x}", d.base)))
        .collect();
    for word in cmdline.split([' ', '\t']) {
        let Some(value) = word
            .strip_prefix(VIRTIO_MMIO_DEVICE)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        match virtio_mmio::parse_cmdline_entry(value) {
            Ok(device) if entries.iter().any(|(d, ..)| d.base == device.base) => {}
            Ok(device) => entries.push((device, Origin::Cmdline, String::from(word))),
            Err(e) => println!("warning: {word} refused: {e}"),
        }
    }
    if entries.is_empty() {
        entries.extend(
            virtio_mmio::microvm_slots()
                .map(|d| (d, Origin::Probe, format!("microvm slot {:#x}", d.base))),
        );
    }
    for (device, origin, what) in entries {
        match transport(&device) {
            Ok(Some(candidate)) => candidates.push(candidate),
            Ok(None) if origin == Origin::Probe => {}
            Ok(None) => println!("warning: {what} refused: no device there (device ID 0)"),
            Err(e) if origin == Origin::Probe => log::debug!("{what}: {e}"),
            Err(e) => println!("warning: {what} refused: {e}"),
        }
    }
}

fn transport(device: &MmioDevice) -> Result<Option<Candidate>, String> {
    let base =
        device_memory::map(PhysAddr::new(device.base), device.size).map_err(|e| format!("{e}"))?;
    let read = |offset: u64| {
        // SAFETY: the window was just mapped uncached; these header registers are read-only
        // and reading them has no side effects (virtio 1.2 §4.2.2).
        unsafe { (base + offset).as_ptr::<u32>().read_volatile() }
    };
    let device_id = virtio_mmio::check_header(
        read(virtio_mmio::MAGIC_VALUE_OFFSET),
        read(virtio_mmio::VERSION_OFFSET),
        read(virtio_mmio::DEVICE_ID_OFFSET),
    )
    .map_err(|e| format!("{e}"))?;
    if device_id.is_none() {
        return Ok(None);
    }
    let header = NonNull::new(base.as_mut_ptr::<VirtIOHeader>()).ok_or("null window")?;
    // SAFETY: `size` bytes of device registers are mapped at `base` for the kernel's life
    // (the device window never unmaps), and only this transport drives them.
    let transport =
        unsafe { MmioTransport::new(header, device.size as usize) }.map_err(|e| format!("{e}"))?;
    let name = format!("mmio {:#x}", device.base);
    let connect = device
        .irq
        .map(|gsi| Box::new(move |_queues: u16| connect(base, gsi)) as Box<dyn FnOnce(u16) -> _>);
    Ok(Some(Candidate {
        name,
        transport: transport.into(),
        connect,
    }))
}

/// Routes the transport's interrupt line: QEMU holds it asserted until the driver writes
/// InterruptACK, so the IOAPIC pin is level-triggered (active high, as microvm's DSDT says).
fn connect(base: VirtAddr, gsi: u32) -> Result<u8, String> {
    let vector = irq::allocate(irq::Ack::VirtioMmio(base)).ok_or("no interrupt vector left")?;
    apic::route_gsi(gsi, vector, Signal::LEVEL_HIGH).map_err(|e| format!("GSI {gsi}: {e}"))?;
    Ok(vector)
}
