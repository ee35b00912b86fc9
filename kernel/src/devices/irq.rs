//! Device interrupts. Each device that completes by interrupt gets a vector of its own, but
//! the virtio-pci functions on one INTx line share that line's; the handler acknowledges the
//! devices whose line stays asserted until then (virtio INTx and virtio-mmio behind a
//! level-triggered IOAPIC pin), counts the interrupt, and sends the EOI. Drivers never wait
//! on the count: they check their queue and halt (`time::timer::halt_until`), and any
//! interrupt wakes them to check again.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use spin::Mutex;
use x86_64::VirtAddr;

use crate::arch::interrupt::{self, DEVICE_BASE, DEVICE_VECTORS};
use crate::platform::apic::with_local_apic;

/// What the handler must do before the EOI so that the device drops its line.
#[derive(Clone, Copy, Debug)]
pub enum Ack {
    /// An MSI-X message: edge, nothing to acknowledge.
    Message,
    /// Virtio-mmio: InterruptStatus (0x60) read, written back to InterruptACK (0x64).
    VirtioMmio(VirtAddr),
}

const KIND_MESSAGE: u8 = 1;
const KIND_PCI_INTX: u8 = 2;
const KIND_MMIO: u8 = 3;

const SLOTS: usize = DEVICE_VECTORS as usize;
static KIND: [AtomicU8; SLOTS] = [const { AtomicU8::new(0) }; SLOTS];
static ADDRESS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static COUNT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The virtio-pci functions interrupting through one INTx line, which PCI lets several
/// functions share (PCI Local Bus 3.0 §2.2.6): the line has one vector, and its handler reads
/// every function's ISR status, since any of them may be holding the line asserted. Reading
/// the ISR status of a function that did not interrupt only returns 0.
struct IntxLine {
    gsi: u32,
    vector: u8,
    /// Each function's ISR status byte; reading it deasserts that function's INTx (virtio
    /// 1.2 §4.1.4.5).
    isrs: Vec<VirtAddr>,
}

/// Locked by the handler, and otherwise only while setting up with interrupts disabled, so
/// the handler never finds it held.
static INTX_LINES: Mutex<Vec<IntxLine>> = Mutex::new(Vec::new());

/// A device vector with its acknowledgement set up; `None` when none is left.
pub fn allocate(ack: Ack) -> Option<u8> {
    let (kind, address) = match ack {
        Ack::Message => (KIND_MESSAGE, 0),
        Ack::VirtioMmio(base) => (KIND_MMIO, base.as_u64()),
    };
    allocate_slot(kind, address)
}

/// The vector of INTx line `gsi` (an IOAPIC input), now also acknowledging the virtio-pci
/// function whose ISR status byte is mapped at `isr`: the line's vector when another function
/// already uses the line, else a new one; `None` when none is left.
pub fn allocate_virtio_pci_intx(gsi: u32, isr: VirtAddr) -> Option<u8> {
    let mut lines = INTX_LINES.lock();
    if let Some(line) = lines.iter_mut().find(|line| line.gsi == gsi) {
        line.isrs.push(isr);
        return Some(line.vector);
    }
    let vector = allocate_slot(KIND_PCI_INTX, 0)?;
    lines.push(IntxLine {
        gsi,
        vector,
        isrs: vec![isr],
    });
    Some(vector)
}

/// The GSI of the INTx line `vector` serves, if it serves one.
pub fn line_gsi(vector: u8) -> Option<u32> {
    INTX_LINES
        .lock()
        .iter()
        .find(|line| line.vector == vector)
        .map(|line| line.gsi)
}

fn allocate_slot(kind: u8, address: u64) -> Option<u8> {
    let vector = interrupt::allocate_device_vector(on_interrupt)?;
    let slot = usize::from(vector - DEVICE_BASE);
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
        KIND_PCI_INTX => {
            if let Some(line) = INTX_LINES.lock().iter().find(|l| l.vector == vector) {
                for isr in &line.isrs {
                    // SAFETY: `allocate_virtio_pci_intx` got this address from a mapped virtio
                    // ISR status register, which a read only acknowledges.
                    let _ = unsafe { isr.as_ptr::<u8>().read_volatile() };
                }
            }
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
