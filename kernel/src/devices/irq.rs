//! Device interrupts. Each device that completes by interrupt gets a vector of its own; the
//! handler acknowledges the device where its line stays asserted until then (virtio INTx and
//! virtio-mmio behind a level-triggered IOAPIC pin), counts the interrupt, and sends the EOI.
//! Drivers never wait on the count: they check their queue and halt
//! (`time::timer::halt_until`), and any interrupt wakes them to check again.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use x86_64::VirtAddr;

use crate::arch::interrupt::{self, DEVICE_BASE, DEVICE_VECTORS};
use crate::platform::apic::with_local_apic;

/// What the handler must do before the EOI so that the device drops its line.
#[derive(Clone, Copy, Debug)]
pub enum Ack {
    /// An MSI-X message: edge, nothing to acknowledge.
    Message,
    /// Virtio over PCI, INTx: reading the ISR status byte deasserts the line (virtio 1.2
    /// §4.1.4.5).
    VirtioPciIsr(VirtAddr),
    /// Virtio-mmio: InterruptStatus (0x60) read, written back to InterruptACK (0x64).
    VirtioMmio(VirtAddr),
}

const KIND_MESSAGE: u8 = 1;
const KIND_PCI_ISR: u8 = 2;
const KIND_MMIO: u8 = 3;

const SLOTS: usize = DEVICE_VECTORS as usize;
static KIND: [AtomicU8; SLOTS] = [const { AtomicU8::new(0) }; SLOTS];
static ADDRESS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static COUNT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// A device vector with its acknowledgement set up; `None` when none is left.
pub fn allocate(ack: Ack) -> Option<u8> {
    let vector = interrupt::allocate_device_vector(on_interrupt)?;
    let slot = usize::from(vector - DEVICE_BASE);
    let (kind, address) = match ack {
        Ack::Message => (KIND_MESSAGE, 0),
        Ack::VirtioPciIsr(isr) => (KIND_PCI_ISR, isr.as_u64()),
        Ack::VirtioMmio(base) => (KIND_MMIO, base.as_u64()),
    };
    ADDRESS[slot].store(address, Ordering::SeqCst);
    KIND[slot].store(kind, Ordering::SeqCst);
    Some(vector)
}

/// Interrupts taken on `vector` since boot.
pub fn count(vector: u8) -> u64 {
    vector
        .checked_sub(DEVICE_BASE)
        .and_then(|slot| COUNT.get(usize::from(slot)))
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

fn on_interrupt(vector: u8) {
    let slot = usize::from(vector - DEVICE_BASE);
    let address = ADDRESS[slot].load(Ordering::SeqCst);
    match KIND[slot].load(Ordering::SeqCst) {
        KIND_PCI_ISR => {
            // SAFETY: `allocate` got this address from a mapped virtio ISR register, which a
            // read only acknowledges.
            let _ = unsafe { (address as *const u8).read_volatile() };
        }
        KIND_MMIO => {
            let status = (address + 0x60) as *const u32;
            let acknowledge = (address + 0x64) as *mut u32;
            // SAFETY: `address` is a mapped virtio-mmio register block; acknowledging what
            // the device reports is what its driver would do.
            unsafe { acknowledge.write_volatile(status.read_volatile()) };
        }
        _ => {}
    }
    COUNT[slot].fetch_add(1, Ordering::SeqCst);
    with_local_apic(|apic| apic.eoi());
}
