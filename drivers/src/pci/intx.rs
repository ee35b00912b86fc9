//! Which IOAPIC input a function's INTx pin reaches on the chipsets QEMU emulates.
//!
//! Each pin of a root-bus function drives one of the chipset's PIRQ lines (numbered from 0
//! for PIRQA) by a swizzle the board fixes and ACPI's `_PRT` describes; the kernel has no
//! AML interpreter to read `_PRT`, so the swizzles here are QEMU's, as its DSDT states them.
//!
//! The Interrupt Line register cannot be trusted instead: qboot (`do_setup_pci_irq` in its
//! pci.c) picks the PIRQ with the Interrupt Pin counted from 1 for INTA#, where QEMU's
//! swizzles count from 0, so for half the slots it names the other of IRQs 10 and 11 (10 for
//! 00:04.0 on `-M pc`, whose PIRQD goes to 11), and the device's interrupts would arrive on
//! a line whose handler never acknowledges them.
//!
//! Everything here works on values already read; reading the PIIX3's route registers is the
//! caller's part, as [`IntxRoute::Piix3Pirq`] says.

use super::{Address, Function};
use crate::ioapic::Signal;
use crate::isa_irq;

/// How the host bridge's chipset takes a root-bus function's INTx pin to an IOAPIC input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntxRouting {
    /// i440FX and PIIX3 (`-M pc`): PIRQA-D reach the IOAPIC only through the ISA IRQ that
    /// each PIRQ Route Control register (PIRQRC[A:D], 0x60-0x63 of the PIIX3 at 00:01.0)
    /// names, which firmware sets (qboot: 10, 10, 11, 11).
    Piix3,
    /// Q35 and ICH9 (`-M q35`): PIRQA-H also drive IOAPIC inputs 16-23 directly, whatever
    /// the route registers say (the ICH9 datasheet's APIC interrupt mapping; QEMU's
    /// `ich9_pirq_to_gsi`).
    Ich9,
}

/// The PIIX3's PCI-to-ISA bridge function, which holds the PIRQ Route Control registers.
pub const PIIX3_ISA_BRIDGE: Address = Address {
    bus: 0,
    device: 1,
    function: 0,
};
/// PIRQRC[A]; the registers of PIRQB-D follow it byte by byte.
pub const PIIX3_PIRQ_ROUTE: u16 = 0x60;
/// PIRQRC: routing to the ISA IRQ in bits 3:0 is off.
const PIIX3_PIRQ_ROUTE_DISABLED: u8 = 0x80;
const ICH9_PIRQA_GSI: u32 = 16;

impl IntxRouting {
    /// The routing of the chipset whose host bridge (00:00.0) has these ids, if it is one
    /// whose swizzle is known.
    pub fn of_host_bridge(vendor_id: u16, device_id: u16) -> Option<Self> {
        match (vendor_id, device_id) {
            (0x8086, 0x1237) => Some(Self::Piix3),
            (0x8086, 0x29c0) => Some(Self::Ich9),
            _ => None,
        }
    }

    /// The PIRQ that INTx `pin` (1 for INTA#) of root-bus `device` drives, when the swizzle
    /// is known: QEMU's `pci_slot_get_pirq` (hw/pci-host/i440fx.c) for the PIIX3, and
    /// `ich9_cc_init` (hw/isa/lpc_ich9.c) for devices 0-24 on the ICH9, whose devices 25-31
    /// follow the chipset configuration registers instead.
    fn pirq(self, device: u8, pin: u8) -> Option<u8> {
        let intx = pin.checked_sub(1).filter(|&intx| intx < 4)?;
        match self {
            // QEMU subtracts 1 from the device number; adding 3 is the same modulo 4, and
            // reducing the device first keeps any device number from overflowing.
            Self::Piix3 => Some((device % 4 + 3 + intx) % 4),
            Self::Ich9 if device <= 24 => Some(4 + (device + intx) % 4),
            Self::Ich9 => None,
        }
    }
}

/// Where a function's INTx pin goes, as far as its header and the host bridge tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntxRoute {
    /// The pin drives this PIIX3 PIRQ (0 for PIRQA), whose IOAPIC input is the ISA IRQ
    /// that its route register (of [`PIIX3_ISA_BRIDGE`], at [`PIIX3_PIRQ_ROUTE`] plus the
    /// PIRQ) names, as [`piix3_routed_irq`] decodes it; none if routing is off.
    Piix3Pirq(u8),
    /// This ISA IRQ, which reaches the IOAPIC as the MADT's overrides say.
    IsaIrq(u8),
    /// This IOAPIC input.
    Gsi(u32),
    /// No pin, or nothing says where it goes.
    Unrouted,
}

/// The route of `function`'s INTx pin: the chipset's when `routing` knows the swizzle for
/// it (a root-bus function), else the Interrupt Line firmware wrote, the only word there is:
/// an ISA IRQ when below 16, as PC firmware writes it, else an IOAPIC input.
pub fn intx_route(routing: Option<IntxRouting>, function: &Function) -> IntxRoute {
    let address = function.address;
    if let Some(routing) = routing.filter(|_| address.bus == 0)
        && let Some(pirq) = routing.pirq(address.device, function.interrupt_pin)
    {
        return match routing {
            IntxRouting::Piix3 => IntxRoute::Piix3Pirq(pirq),
            IntxRouting::Ich9 => IntxRoute::Gsi(ICH9_PIRQA_GSI + u32::from(pirq)),
        };
    }
    match (function.interrupt_pin, function.interrupt_line) {
        (1..=4, irq @ 1..isa_irq::ISA_IRQS) => IntxRoute::IsaIrq(irq),
        (1..=4, line @ isa_irq::ISA_IRQS..=254) => IntxRoute::Gsi(u32::from(line)),
        _ => IntxRoute::Unrouted,
    }
}

/// Where a function's INTx arrives: an IOAPIC input, and how the line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxLine {
    pub gsi: u32,
    pub signal: Signal,
}

/// The IOAPIC input `route` reaches and how the line signals. `pirq_route` reads the PIIX3
/// route register of a PIRQ; an ISA IRQ goes through the MADT's `overrides`. A line no
/// override describes is taken as QEMU's DSDT declares every PCI interrupt link:
/// level-triggered, active high (the kernel has no AML interpreter to read `_PRS`).
pub fn reached_input(
    route: IntxRoute,
    pirq_route: impl FnOnce(u8) -> u8,
    overrides: &[isa_irq::Override],
) -> Option<IntxLine> {
    let irq = match route {
        IntxRoute::Piix3Pirq(pirq) => piix3_routed_irq(pirq_route(pirq))?,
        IntxRoute::IsaIrq(irq) => irq,
        IntxRoute::Gsi(gsi) => {
            return Some(IntxLine {
                gsi,
                signal: Signal::LEVEL_HIGH,
            });
        }
        IntxRoute::Unrouted => return None,
    };
    let (gsi, signal) = isa_irq::resolve(irq, overrides, Signal::LEVEL_HIGH);
    Some(IntxLine { gsi, signal })
}

/// The ISA IRQ a PIIX3 PIRQRC register value sends its PIRQ to, if routing is on and the IRQ
/// is one the PIIX3 can route to (the datasheet reserves 0-2, 8 and 13).
fn piix3_routed_irq(route: u8) -> Option<u8> {
    let irq = route & 0x0f;
    (route & PIIX3_PIRQ_ROUTE_DISABLED == 0 && !matches!(irq, 0..=2 | 8 | 13)).then_some(irq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::HeaderType;

    const A: u8 = 0;
    const B: u8 = 1;
    const C: u8 = 2;
    const D: u8 = 3;
    const E: u8 = 4;
    const F: u8 = 5;
    const G: u8 = 6;
    const H: u8 = 7;

    /// The PIRQ for INTA#..INTD# of a device, by device number modulo 4, from QEMU's
    /// `(pci_intx + slot - 1) & 3` with `pci_intx` 0 for INTA#.
    const PIIX3_SWIZZLE: [[u8; 4]; 4] = [[D, A, B, C], [A, B, C, D], [B, C, D, A], [C, D, A, B]];
    /// Likewise from QEMU's `(slot + intx) % 4 + 4` for devices 0-24.
    const ICH9_SWIZZLE: [[u8; 4]; 4] = [[E, F, G, H], [F, G, H, E], [G, H, E, F], [H, E, F, G]];

    /// qboot's PIRQRC[A:D]: IRQs 10, 10, 11, 11.
    const QBOOT_PIRQ_ROUTES: [u8; 4] = [10, 10, 11, 11];

    fn function(bus: u8, device: u8, interrupt_pin: u8, interrupt_line: u8) -> Function {
        Function {
            address: Address {
                bus,
                device,
                function: 0,
            },
            vendor_id: 0x1af4,
            device_id: 0x1042,
            class: 0x01,
            subclass: 0x00,
            prog_if: 0x00,
            revision: 1,
            header_type: HeaderType::Device,
            interrupt_line,
            interrupt_pin,
        }
    }

    /// The IOAPIC input a route reaches, reading PIIX3 route registers from `piix3_routes`,
    /// without MADT overrides.
    fn reached_gsi(route: IntxRoute, piix3_routes: [u8; 4]) -> Option<u32> {
        reached_input(route, |pirq| piix3_routes[usize::from(pirq)], &[]).map(|line| line.gsi)
    }

    #[test]
    fn host_bridge_ids_pick_the_routing() {
        assert_eq!(
            IntxRouting::of_host_bridge(0x8086, 0x1237),
            Some(IntxRouting::Piix3)
        );
        assert_eq!(
            IntxRouting::of_host_bridge(0x8086, 0x29c0),
            Some(IntxRouting::Ich9)
        );
        assert_eq!(IntxRouting::of_host_bridge(0x8086, 0x7190), None);
        assert_eq!(IntxRouting::of_host_bridge(0x1022, 0x1237), None);
    }

    #[test]
    fn the_piix3_swizzle_matches_qemus_for_every_slot_and_pin() {
        for device in 0..32 {
            for pin in 1..=4 {
                let expected = PIIX3_SWIZZLE[usize::from(device % 4)][usize::from(pin - 1)];
                assert_eq!(
                    intx_route(Some(IntxRouting::Piix3), &function(0, device, pin, 0)),
                    IntxRoute::Piix3Pirq(expected),
                    "device {device} pin {pin}"
                );
            }
        }
    }

    #[test]
    fn the_ich9_swizzle_matches_qemus_for_every_slot_and_pin_up_to_device_24() {
        for device in 0..=24 {
            for pin in 1..=4 {
                let pirq = ICH9_SWIZZLE[usize::from(device % 4)][usize::from(pin - 1)];
                assert_eq!(
                    intx_route(Some(IntxRouting::Ich9), &function(0, device, pin, 0)),
                    IntxRoute::Gsi(16 + u32::from(pirq)),
                    "device {device} pin {pin}"
                );
            }
        }
    }

    #[test]
    fn q35_pins_reach_ioapic_inputs_16_to_23() {
        for device in 0..=24 {
            for pin in 1..=4 {
                let route = intx_route(Some(IntxRouting::Ich9), &function(0, device, pin, 10));
                let gsi = reached_gsi(route, [0x80; 4]).expect("routed");
                assert!((16..=23).contains(&gsi), "device {device} pin {pin}: {gsi}");
            }
        }
        // Where `-M q35` puts virtio-blk and virtio-net: PIRQG and PIRQH.
        let blk = intx_route(Some(IntxRouting::Ich9), &function(0, 2, 1, 10));
        let net = intx_route(Some(IntxRouting::Ich9), &function(0, 3, 1, 11));
        assert_eq!((blk, net), (IntxRoute::Gsi(22), IntxRoute::Gsi(23)));
    }

    #[test]
    fn ich9_devices_25_to_31_fall_back_to_the_interrupt_line() {
        for device in 25..32 {
            assert_eq!(
                intx_route(Some(IntxRouting::Ich9), &function(0, device, 1, 10)),
                IntxRoute::IsaIrq(10)
            );
        }
    }

    /// qboot computes `(pin + device - 1) & 3` with the pin counted from 1, so for 00:04.0
    /// INTA# it names PIRQA and writes Interrupt Line 10; QEMU drives PIRQ
    /// `(0 + 4 - 1) & 3` = PIRQD, which qboot routes to IRQ 11. For 00:03.0 both land on 11
    /// (qboot's PIRQD, QEMU's PIRQC), which is why only half the slots go wrong.
    #[test]
    fn qboot_interrupt_line_off_by_one_is_not_trusted_on_pc() {
        let net = intx_route(Some(IntxRouting::Piix3), &function(0, 4, 1, 10));
        assert_eq!(net, IntxRoute::Piix3Pirq(D));
        assert_eq!(reached_gsi(net, QBOOT_PIRQ_ROUTES), Some(11));

        let blk = intx_route(Some(IntxRouting::Piix3), &function(0, 3, 1, 11));
        assert_eq!(blk, IntxRoute::Piix3Pirq(C));
        assert_eq!(reached_gsi(blk, QBOOT_PIRQ_ROUTES), Some(11));
    }

    #[test]
    fn a_disabled_pirq_route_register_routes_nowhere() {
        for route in [0x80, 0x80 | 10, 0x80 | 11, 0xff] {
            assert_eq!(piix3_routed_irq(route), None, "{route:#x}");
        }
        let net = intx_route(Some(IntxRouting::Piix3), &function(0, 4, 1, 10));
        assert_eq!(reached_gsi(net, [10, 10, 11, 0x80 | 11]), None);
    }

    #[test]
    fn reserved_isa_irqs_in_a_pirq_route_register_are_refused() {
        for irq in 0..16 {
            let expected = (!matches!(irq, 0..=2 | 8 | 13)).then_some(irq);
            assert_eq!(piix3_routed_irq(irq), expected, "IRQ {irq}");
        }
    }

    #[test]
    fn an_unknown_chipset_falls_back_to_the_interrupt_line() {
        assert_eq!(
            intx_route(None, &function(0, 4, 1, 10)),
            IntxRoute::IsaIrq(10)
        );
        assert_eq!(intx_route(None, &function(0, 4, 1, 16)), IntxRoute::Gsi(16));
        assert_eq!(
            intx_route(None, &function(0, 4, 4, 254)),
            IntxRoute::Gsi(254)
        );
        for line in [0, 255] {
            assert_eq!(
                intx_route(None, &function(0, 4, 1, line)),
                IntxRoute::Unrouted,
                "line {line}"
            );
        }
    }

    #[test]
    fn a_function_behind_a_bridge_falls_back_to_the_interrupt_line() {
        for routing in [IntxRouting::Piix3, IntxRouting::Ich9] {
            assert_eq!(
                intx_route(Some(routing), &function(1, 4, 1, 11)),
                IntxRoute::IsaIrq(11)
            );
        }
    }

    #[test]
    fn a_function_without_a_valid_pin_is_unrouted() {
        for routing in [None, Some(IntxRouting::Piix3), Some(IntxRouting::Ich9)] {
            for pin in [0, 5, 0xff] {
                assert_eq!(
                    intx_route(routing, &function(0, 4, pin, 11)),
                    IntxRoute::Unrouted,
                    "{routing:?} pin {pin}"
                );
            }
        }
    }

    /// QEMU's MADT overrides for the PCI IRQs say level, active high; a board whose override
    /// moves IRQ 11 elsewhere or makes it active low is followed, for a PIRQ and for an
    /// Interrupt Line alike.
    #[test]
    fn isa_irqs_reach_the_ioapic_through_the_madt_overrides() {
        use isa_irq::{Override, Polarity, Trigger};
        let net = intx_route(Some(IntxRouting::Piix3), &function(0, 4, 1, 10));
        let qemu = [Override {
            irq: 11,
            gsi: 11,
            polarity: Polarity::ActiveHigh,
            trigger: Trigger::Level,
        }];
        assert_eq!(
            reached_input(net, |pirq| QBOOT_PIRQ_ROUTES[usize::from(pirq)], &qemu),
            Some(IntxLine {
                gsi: 11,
                signal: Signal::LEVEL_HIGH
            })
        );
        let moved = [Override {
            irq: 11,
            gsi: 19,
            polarity: Polarity::ActiveLow,
            trigger: Trigger::ConformsToBus,
        }];
        let level_low = Signal {
            level: true,
            active_low: true,
        };
        assert_eq!(
            reached_input(net, |pirq| QBOOT_PIRQ_ROUTES[usize::from(pirq)], &moved),
            Some(IntxLine {
                gsi: 19,
                signal: level_low
            })
        );
        let behind_bridge = intx_route(Some(IntxRouting::Piix3), &function(1, 0, 1, 11));
        assert_eq!(
            reached_input(behind_bridge, |_| unreachable!(), &moved),
            Some(IntxLine {
                gsi: 19,
                signal: level_low
            })
        );
        let q35 = intx_route(Some(IntxRouting::Ich9), &function(0, 2, 1, 11));
        assert_eq!(
            reached_input(q35, |_| unreachable!(), &moved),
            Some(IntxLine {
                gsi: 22,
                signal: Signal::LEVEL_HIGH
            })
        );
    }
}
