//! Which IOAPIC input an ISA IRQ arrives on, and how it signals.
//!
//! ISA IRQ n is IOAPIC input (global system interrupt) n, edge-triggered and active high,
//! unless the MADT has an Interrupt Source Override for it (ACPI 6.5 5.2.12.5). QEMU writes
//! one for IRQ 0 (to GSI 2) and, on PC machines, for the IRQs PCI lines may be routed to
//! (5, 9, 10 and 11: level, active high).
//!
//! Everything here works on values already read from the table, so host tests cover it; the
//! table walk is the ACPI parser's part.

use core::fmt;

use crate::ioapic::Signal;

/// The ISA IRQs, 0-15, and so the most overrides a MADT can sensibly hold.
pub const ISA_IRQS: u8 = 16;

/// Polarity of an overridden line: the MPS INTI flags' bits 1:0 (ACPI 6.5 table 5.26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// 00: whatever the source bus defines.
    ConformsToBus,
    /// 01.
    ActiveHigh,
    /// 11.
    ActiveLow,
}

/// Trigger mode of an overridden line: the MPS INTI flags' bits 3:2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// 00: whatever the source bus defines.
    ConformsToBus,
    /// 01.
    Edge,
    /// 11.
    Level,
}

/// An MPS INTI flags field with a reserved value (10) in the polarity or trigger bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedFlags(pub u16);

impl fmt::Display for ReservedFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flags {:#06x} use a reserved polarity or trigger mode",
            self.0
        )
    }
}

/// Decodes the MPS INTI flags of an Interrupt Source Override.
pub fn decode_flags(flags: u16) -> Result<(Polarity, Trigger), ReservedFlags> {
    let polarity = match flags & 0b11 {
        0b00 => Polarity::ConformsToBus,
        0b01 => Polarity::ActiveHigh,
        0b11 => Polarity::ActiveLow,
        _ => return Err(ReservedFlags(flags)),
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b00 => Trigger::ConformsToBus,
        0b01 => Trigger::Edge,
        0b11 => Trigger::Level,
        _ => return Err(ReservedFlags(flags)),
    };
    Ok((polarity, trigger))
}

/// An Interrupt Source Override for an ISA IRQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The ISA IRQ, below [`ISA_IRQS`].
    pub irq: u8,
    /// The IOAPIC input it arrives on instead of input `irq`.
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// Where ISA IRQ `irq` arrives, and how: the override's input and, where it does not
/// defer to the bus, its polarity and trigger mode; everything else from `bus`, which is
/// what the caller knows of the line (ISA's [`Signal::EDGE_HIGH`], or how a PCI interrupt
/// routed onto the IRQ signals).
pub fn resolve(irq: u8, overrides: &[Override], bus: Signal) -> (u32, Signal) {
    let Some(o) = overrides.iter().find(|o| o.irq == irq) else {
        return (u32::from(irq), bus);
    };
    let signal = Signal {
        level: match o.trigger {
            Trigger::ConformsToBus => bus.level,
            Trigger::Edge => false,
            Trigger::Level => true,
        },
        active_low: match o.polarity {
            Polarity::ConformsToBus => bus.active_low,
            Polarity::ActiveHigh => false,
            Polarity::ActiveLow => true,
        },
    };
    (o.gsi, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decode_every_defined_value_and_refuse_reserved_ones() {
        assert_eq!(
            decode_flags(0),
            Ok((Polarity::ConformsToBus, Trigger::ConformsToBus))
        );
        // QEMU's flags for the PCI IRQs.
        assert_eq!(
            decode_flags(0xd),
            Ok((Polarity::ActiveHigh, Trigger::Level))
        );
        assert_eq!(decode_flags(0x7), Ok((Polarity::ActiveLow, Trigger::Edge)));
        assert_eq!(decode_flags(0b10), Err(ReservedFlags(0b10)));
        assert_eq!(decode_flags(0b1000), Err(ReservedFlags(0b1000)));
        // Bits above the two fields are reserved as zero but carry no meaning to refuse.
        assert_eq!(
            decode_flags(0xfff0),
            Ok((Polarity::ConformsToBus, Trigger::ConformsToBus))
        );
    }

    fn qemu_pc() -> [Override; 3] {
        [
            Override {
                irq: 0,
                gsi: 2,
                polarity: Polarity::ConformsToBus,
                trigger: Trigger::ConformsToBus,
            },
            Override {
                irq: 10,
                gsi: 10,
                polarity: Polarity::ActiveHigh,
                trigger: Trigger::Level,
            },
            Override {
                irq: 11,
                gsi: 11,
                polarity: Polarity::ActiveHigh,
                trigger: Trigger::Level,
            },
        ]
    }

    #[test]
    fn an_irq_without_override_is_its_own_input_as_the_bus_signals() {
        assert_eq!(
            resolve(4, &qemu_pc(), Signal::EDGE_HIGH),
            (4, Signal::EDGE_HIGH)
        );
        assert_eq!(resolve(9, &[], Signal::LEVEL_HIGH), (9, Signal::LEVEL_HIGH));
    }

    #[test]
    fn an_override_moves_the_irq_and_sets_what_it_does_not_defer() {
        assert_eq!(
            resolve(0, &qemu_pc(), Signal::EDGE_HIGH),
            (2, Signal::EDGE_HIGH)
        );
        assert_eq!(
            resolve(11, &qemu_pc(), Signal::EDGE_HIGH),
            (11, Signal::LEVEL_HIGH)
        );
        let low_level = Override {
            irq: 9,
            gsi: 20,
            polarity: Polarity::ActiveLow,
            trigger: Trigger::ConformsToBus,
        };
        assert_eq!(
            resolve(9, &[low_level], Signal::LEVEL_HIGH),
            (
                20,
                Signal {
                    level: true,
                    active_low: true
                }
            )
        );
        let edge = Override {
            trigger: Trigger::Edge,
            polarity: Polarity::ConformsToBus,
            ..low_level
        };
        assert_eq!(
            resolve(9, &[edge], Signal::LEVEL_HIGH),
            (20, Signal::EDGE_HIGH)
        );
    }
}
