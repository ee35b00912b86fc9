//! The interrupt descriptor table (Intel SDM vol. 3, 6.14.1 "64-bit mode IDT"). Hand-written
//! rather than the x86_64 crate's because its handler types need the nightly x86-interrupt ABI;
//! here every vector points at a naked entry stub (see `trap`).

use core::mem::size_of;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// One 16-byte interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 0..3: IST slot (0 = stay on the current stack).
    ist: u8,
    /// Present, DPL 0, type 0xE (64-bit interrupt gate: IF cleared on entry).
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

const INTERRUPT_GATE_PRESENT: u8 = 0x8e;

impl Gate {
    const MISSING: Self = Self {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn new(handler: u64, selector: u16, ist: u16) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist: ist as u8,
            type_attr: INTERRUPT_GATE_PRESENT,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
pub struct Idt([Gate; 256]);

const _: () = assert!(size_of::<Idt>() == 4096);

static IDT: Once<Idt> = Once::new();

/// Builds the IDT from `(vector, handler, ist)` triples and loads it. Vectors not listed stay
/// not-present, so raising one is a #GP that the #GP handler reports.
pub fn load(code_selector: u16, gates: impl Iterator<Item = (u8, u64, u16)>) {
    let idt = IDT.call_once(|| {
        let mut idt = Idt([Gate::MISSING; 256]);
        for (vector, handler, ist) in gates {
            idt.0[usize::from(vector)] = Gate::new(handler, code_selector, ist);
        }
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is a static that lives forever and every present gate points at an entry
    // stub that saves state and calls the dispatcher.
    unsafe { lidt(&pointer) }
}
