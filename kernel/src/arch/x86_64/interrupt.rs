//! Interrupts (vectors 32 and up): a handler per vector, run from `trap::dispatch` with
//! interrupts disabled (every IDT gate is an interrupt gate), and the one way the kernel
//! waits for an interrupt.
//!
//! The kernel runs with `IF` clear. Only [`wait_for_interrupt`] opens it, for exactly one
//! `hlt`, so an interrupt handler never finds a lock held by the code it interrupted unless
//! that code is waiting.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// The legacy PIC's 16 lines, remapped above the exceptions so that a stray one cannot pose
/// as a CPU exception; they are all masked, and a spurious IRQ 7 or 15 lands here.
pub const PIC_BASE: u8 = 0x20;
/// Devices' interrupts (MSI-X messages and IOAPIC pins), handed out by
/// [`allocate_device_vector`].
pub const DEVICE_BASE: u8 = 0x40;
pub const DEVICE_VECTORS: u8 = 8;
/// The local APIC timer.
pub const TIMER: u8 = 0xf0;
/// Xen's event channel callback under PVH (`HVM_PARAM_CALLBACK_IRQ`, type vector).
pub const XEN_CALLBACK: u8 = 0xf3;
/// The local APIC's spurious-interrupt vector (its low 4 bits must be 1 on old APICs).
pub const SPURIOUS: u8 = 0xff;

/// The vectors that have an entry stub, in `trap`'s order.
pub const VECTORS: [u8; 27] = [
    PIC_BASE,
    PIC_BASE + 1,
    PIC_BASE + 2,
    PIC_BASE + 3,
    PIC_BASE + 4,
    PIC_BASE + 5,
    PIC_BASE + 6,
    PIC_BASE + 7,
    PIC_BASE + 8,
    PIC_BASE + 9,
    PIC_BASE + 10,
    PIC_BASE + 11,
    PIC_BASE + 12,
    PIC_BASE + 13,
    PIC_BASE + 14,
    PIC_BASE + 15,
    DEVICE_BASE,
    DEVICE_BASE + 1,
    DEVICE_BASE + 2,
    DEVICE_BASE + 3,
    DEVICE_BASE + 4,
    DEVICE_BASE + 5,
    DEVICE_BASE + 6,
    DEVICE_BASE + 7,
    TIMER,
    XEN_CALLBACK,
    SPURIOUS,
];

/// What runs for a vector; it gets the vector, and must acknowledge its source (EOI).
pub type Handler = fn(u8);

/// `fn(u8)` pointers as integers, 0 for none: an atomic table needs no lock in the handler.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// Makes `handler` run for `vector` from now on, replacing any earlier one.
pub fn register(vector: u8, handler: Handler) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::SeqCst);
}

pub fn unregister(vector: u8) {
    HANDLERS[usize::from(vector)].store(0, Ordering::SeqCst);
}

static NEXT_DEVICE_VECTOR: AtomicU8 = AtomicU8::new(DEVICE_BASE);

/// A device vector nobody has yet, with `handler` registered on it; `None` when all
/// [`DEVICE_VECTORS`] are taken (the device then has to be polled).
pub fn allocate_device_vector(handler: Handler) -> Option<u8> {
    let vector = NEXT_DEVICE_VECTOR
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            (v < DEVICE_BASE + DEVICE_VECTORS).then_some(v + 1)
        })
        .ok()?;
    register(vector, handler);
    Some(vector)
}

/// Interrupts that arrived on a vector without a handler since boot.
pub fn unhandled() -> u64 {
    UNHANDLED.load(Ordering::SeqCst)
}

/// From `trap::dispatch`.
pub(super) fn handle(vector: u8) {
    let raw = HANDLERS[usize::from(vector)].load(Ordering::SeqCst);
    if raw == 0 {
        UNHANDLED.fetch_add(1, Ordering::SeqCst);
        return;
    }
    // SAFETY: the only nonzero values stored are `Handler`s (see `register`).
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(raw) };
    handler(vector);
}

/// Halts until the next interrupt and lets it run, then returns with interrupts disabled
/// again. `sti` takes effect after the following instruction, so no interrupt can slip in
/// between the caller's last check and the `hlt` and leave it sleeping.
pub fn wait_for_interrupt() {
    // SAFETY: every vector that can fire has a gate (unregistered ones are counted), and
    // nothing holds a lock a handler takes while it waits here.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
