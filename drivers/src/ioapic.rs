//! I/O APIC: masking every pin, and routing a pin to a vector on a local APIC.
//!
//! Follows the Intel 82093AA I/O APIC datasheet (290566-001), section 3: the indirect
//! IOREGSEL/IOWIN register access, IOAPICVER (3.2.2) and the 64-bit redirection table entries
//! (3.2.4). Later chipset IOAPICs keep this layout.
//!
//! Register access sits behind [`Registers`], so the logic runs against a fake in host tests.

/// IOREGSEL: selects the register IOWIN reads and writes.
const IOREGSEL: usize = 0x00;
/// IOWIN: the selected register.
const IOWIN: usize = 0x10;

const VERSION: u8 = 0x01;
const REDIRECTION_TABLE: u8 = 0x10;
/// IOAPICVER bits 23:16: index of the highest redirection entry.
const VERSION_MAX_ENTRY_SHIFT: u32 = 16;
/// Redirection entries live at 8-bit register indices 0x10..=0xFF, two each, so at most 120
/// fit; a larger count means the version register is garbage.
const MAX_PINS: u32 = (0x100 - REDIRECTION_TABLE as u32) / 2;

const ENTRY_MASKED: u32 = 1 << 16;
const ENTRY_LEVEL_TRIGGERED: u32 = 1 << 15;
const ENTRY_ACTIVE_LOW: u32 = 1 << 13;
/// High dword bits 31:24 (entry bits 63:56): the destination APIC ID in physical mode.
const ENTRY_DESTINATION_SHIFT: u32 = 24;
/// Vectors 0..32 are CPU exceptions; the 82093AA also refuses 0..16 (datasheet 3.2.4).
const FIRST_USABLE_VECTOR: u8 = 32;

/// How an input's line signals an interrupt: the redirection entry's trigger mode and
/// polarity bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// Level-triggered (held until acknowledged at the device), else edge-triggered.
    pub level: bool,
    pub active_low: bool,
}

impl Signal {
    /// The ISA bus's convention.
    pub const EDGE_HIGH: Self = Self {
        level: false,
        active_low: false,
    };
    /// How QEMU wires PCI INTx and virtio-mmio lines to the IOAPIC, as its DSDT declares them.
    pub const LEVEL_HIGH: Self = Self {
        level: true,
        active_low: false,
    };
}

/// Indirect access to the IOAPIC's 32-bit registers. Select and access are one call, so no
/// one can re-select between them while the `&mut` is held.
pub trait Registers {
    fn read(&mut self, register: u8) -> u32;
    fn write(&mut self, register: u8, value: u32);
}

/// An IOAPIC's MMIO window.
pub struct Mmio {
    base: *mut u8,
}

impl Mmio {
    /// # Safety
    /// `base` must point to an IOAPIC's registers (the MADT's I/O APIC address), mapped
    /// uncached over at least 0x20 bytes, and stay mapped for as long as the value lives.
    /// Nothing else may program this IOAPIC meanwhile.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn select(&mut self, register: u8) {
        // SAFETY: IOREGSEL is in the mapped window (constructor contract); writing it only
        // selects a register.
        unsafe {
            self.base
                .wrapping_add(IOREGSEL)
                .cast::<u32>()
                .write_volatile(u32::from(register))
        }
    }

    fn window(&self) -> *mut u32 {
        self.base.wrapping_add(IOWIN).cast::<u32>()
    }
}

// SAFETY: the value holds only the address of a mapping that outlives it (constructor
// contract), and an IOAPIC is one device for all CPUs, so any thread may own it.
unsafe impl Send for Mmio {}

impl Registers for Mmio {
    fn read(&mut self, register: u8) -> u32 {
        self.select(register);
        // SAFETY: IOWIN is in the mapped window (constructor contract); reads have no memory
        // side effects.
        unsafe { self.window().read_volatile() }
    }

    fn write(&mut self, register: u8, value: u32) {
        self.select(register);
        // SAFETY: as in `read`; the IOAPIC is owned by this value, so the write affects only it.
        unsafe { self.window().write_volatile(value) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoApicError {
    /// IOAPICVER read as all ones or all zeros: nothing answers at the address.
    Absent { version: u32 },
    /// IOAPICVER claims more redirection entries than the register space holds.
    TooManyPins { max_entry: u32 },
    /// A pin beyond the last redirection entry.
    NoSuchPin { pin: u32, pins: u32 },
    /// A vector in the CPU exception range.
    ReservedVector(u8),
}

impl core::fmt::Display for IoApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Absent { version } => write!(
                f,
                "no IOAPIC at this address (version register reads {version:#x}); check the \
                 MADT's I/O APIC entry and that the page is mapped uncached"
            ),
            Self::TooManyPins { max_entry } => write!(
                f,
                "IOAPIC version register claims {} pins, more than the {MAX_PINS} its register \
                 space holds; this is not an 82093AA-compatible IOAPIC",
                max_entry + 1
            ),
            Self::NoSuchPin { pin, pins } => write!(
                f,
                "IOAPIC pin {pin} does not exist: this IOAPIC has pins 0..{pins}; translate the \
                 GSI with the MADT's GSI base first"
            ),
            Self::ReservedVector(vector) => write!(
                f,
                "vector {vector} is a CPU exception vector; use one in 32..=255"
            ),
        }
    }
}

/// One IOAPIC driven through `R`.
pub struct IoApic<R: Registers> {
    regs: R,
    pins: u32,
}

impl<R: Registers> IoApic<R> {
    pub fn new(mut regs: R) -> Result<Self, IoApicError> {
        let version = regs.read(VERSION);
        // Unbacked MMIO reads all ones on real buses and under Xen, zero under QEMU; a real
        // IOAPIC reports a non-zero version (0x11 or 0x20) in bits 7:0.
        if version == u32::MAX || version == 0 {
            return Err(IoApicError::Absent { version });
        }
        let max_entry = (version >> VERSION_MAX_ENTRY_SHIFT) & 0xFF;
        if max_entry >= MAX_PINS {
            return Err(IoApicError::TooManyPins { max_entry });
        }
        Ok(Self {
            regs,
            pins: max_entry + 1,
        })
    }

    pub fn pins(&self) -> u32 {
        self.pins
    }

    /// Sets the mask bit of every redirection entry, keeping the rest of each.
    pub fn mask_all(&mut self) {
        for pin in 0..self.pins {
            let (low, _) = entry_registers(pin);
            let entry = self.regs.read(low);
            self.regs.write(low, entry | ENTRY_MASKED);
        }
    }

    /// Routes `pin` to `vector` on the local APIC with `destination_apic_id`: fixed delivery,
    /// physical destination, the line's `signal`. The entry is left masked,
    /// so the pin cannot fire before its handler is in place; unmask it with [`set_masked`].
    ///
    /// [`set_masked`]: Self::set_masked
    pub fn route(
        &mut self,
        pin: u32,
        vector: u8,
        destination_apic_id: u8,
        signal: Signal,
    ) -> Result<(), IoApicError> {
        self.check_pin(pin)?;
        if vector < FIRST_USABLE_VECTOR {
            return Err(IoApicError::ReservedVector(vector));
        }
        let mut entry = ENTRY_MASKED | u32::from(vector);
        if signal.level {
            entry |= ENTRY_LEVEL_TRIGGERED;
        }
        if signal.active_low {
            entry |= ENTRY_ACTIVE_LOW;
        }
        let (low, high) = entry_registers(pin);
        // Low (masked) first, so the entry never pairs an old unmasked vector with the new
        // destination.
        self.regs.write(low, entry);
        self.regs.write(
            high,
            u32::from(destination_apic_id) << ENTRY_DESTINATION_SHIFT,
        );
        Ok(())
    }

    pub fn set_masked(&mut self, pin: u32, masked: bool) -> Result<(), IoApicError> {
        self.check_pin(pin)?;
        let (low, _) = entry_registers(pin);
        let entry = self.regs.read(low);
        let entry = if masked {
            entry | ENTRY_MASKED
        } else {
            entry & !ENTRY_MASKED
        };
        self.regs.write(low, entry);
        Ok(())
    }

    fn check_pin(&self, pin: u32) -> Result<(), IoApicError> {
        if pin >= self.pins {
            return Err(IoApicError::NoSuchPin {
                pin,
                pins: self.pins,
            });
        }
        Ok(())
    }
}

/// The low and high dword registers of `pin`'s redirection entry; `pin` is below [`MAX_PINS`].
fn entry_registers(pin: u32) -> (u8, u8) {
    let low = REDIRECTION_TABLE + 2 * (pin as u8);
    (low, low + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole 256-register space, with a log of writes.
    struct FakeIoApic {
        registers: [u32; 256],
        writes: Vec<(u8, u32)>,
    }

    impl FakeIoApic {
        fn with_version(version: u32) -> Self {
            let mut registers = [0; 256];
            registers[usize::from(VERSION)] = version;
            Self {
                registers,
                writes: Vec::new(),
            }
        }
    }

    impl Registers for FakeIoApic {
        fn read(&mut self, register: u8) -> u32 {
            self.registers[usize::from(register)]
        }

        fn write(&mut self, register: u8, value: u32) {
            self.registers[usize::from(register)] = value;
            self.writes.push((register, value));
        }
    }

    /// An 82093AA: 24 pins, version 0x11.
    fn ioapic() -> IoApic<FakeIoApic> {
        IoApic::new(FakeIoApic::with_version(0x0017_0011)).unwrap()
    }

    #[test]
    fn pins_come_from_the_version_register() {
        assert_eq!(ioapic().pins(), 24);
        let one = IoApic::new(FakeIoApic::with_version(0x0000_0020)).unwrap();
        assert_eq!(one.pins(), 1);
    }

    #[test]
    fn all_ones_or_zero_version_is_absent() {
        for version in [u32::MAX, 0] {
            assert_eq!(
                IoApic::new(FakeIoApic::with_version(version)).err(),
                Some(IoApicError::Absent { version })
            );
        }
    }

    #[test]
    fn more_entries_than_register_space_is_refused() {
        assert_eq!(
            IoApic::new(FakeIoApic::with_version(0x0078_0020)).err(),
            Some(IoApicError::TooManyPins { max_entry: 0x78 })
        );
        assert_eq!(
            IoApic::new(FakeIoApic::with_version(0x0077_0020))
                .unwrap()
                .pins(),
            120
        );
    }

    #[test]
    fn mask_all_sets_only_the_mask_bit_of_every_entry() {
        let mut regs = FakeIoApic::with_version(0x0017_0011);
        for pin in 0..24 {
            regs.registers[0x10 + 2 * pin] = 0x0000_A030 + pin as u32;
            regs.registers[0x11 + 2 * pin] = 0x0100_0000;
        }
        let mut ioapic = IoApic::new(regs).unwrap();
        ioapic.mask_all();
        for pin in 0..24 {
            assert_eq!(
                ioapic.regs.registers[0x10 + 2 * pin],
                0x0001_A030 + pin as u32
            );
            assert_eq!(ioapic.regs.registers[0x11 + 2 * pin], 0x0100_0000);
        }
        // Nothing past the last entry is touched.
        assert!(ioapic.regs.writes.iter().all(|&(r, _)| r < 0x10 + 48));
        assert_eq!(ioapic.regs.writes.len(), 24);
    }

    #[test]
    fn route_programs_a_masked_fixed_physical_entry() {
        let mut ioapic = ioapic();
        ioapic
            .route(
                5,
                0x30,
                2,
                Signal {
                    level: true,
                    active_low: true,
                },
            )
            .unwrap();
        assert_eq!(
            ioapic.regs.writes,
            [
                (0x1A, 0x0001_0000 | 0x8000 | 0x2000 | 0x30),
                (0x1B, 0x0200_0000),
            ]
        );
        ioapic.route(23, 0xFE, 0xFF, Signal::EDGE_HIGH).unwrap();
        assert_eq!(ioapic.regs.registers[0x3E], 0x0001_00FE);
        assert_eq!(ioapic.regs.registers[0x3F], 0xFF00_0000);
    }

    #[test]
    fn route_refuses_bad_pin_and_exception_vector() {
        let mut ioapic = ioapic();
        assert_eq!(
            ioapic.route(24, 0x30, 0, Signal::EDGE_HIGH),
            Err(IoApicError::NoSuchPin { pin: 24, pins: 24 })
        );
        assert_eq!(
            ioapic.route(u32::MAX, 0x30, 0, Signal::EDGE_HIGH),
            Err(IoApicError::NoSuchPin {
                pin: u32::MAX,
                pins: 24
            })
        );
        assert_eq!(
            ioapic.route(0, 31, 0, Signal::EDGE_HIGH),
            Err(IoApicError::ReservedVector(31))
        );
        assert!(ioapic.regs.writes.is_empty());
    }

    #[test]
    fn set_masked_flips_only_the_mask_bit() {
        let mut ioapic = ioapic();
        ioapic.route(3, 0x40, 0, Signal::LEVEL_HIGH).unwrap();
        ioapic.set_masked(3, false).unwrap();
        assert_eq!(ioapic.regs.registers[0x16], 0x8040);
        ioapic.set_masked(3, true).unwrap();
        assert_eq!(ioapic.regs.registers[0x16], 0x0001_8040);
        assert_eq!(
            ioapic.set_masked(24, false),
            Err(IoApicError::NoSuchPin { pin: 24, pins: 24 })
        );
    }
}
