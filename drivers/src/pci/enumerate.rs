//! Finding every function: a walk of bus 0 and of the buses behind its PCI-to-PCI bridges.
//!
//! The walk trusts no bus number. A bridge is followed only to a secondary bus above its
//! own, reachable by the configuration mechanism, and claimed by no other bridge, so the
//! walk visits each bus at most once and ends after at most 256 buses; anything else is
//! reported as an [`EnumerationProblem`] and not followed. Buses wait in a 256-bit set and
//! are scanned lowest first, which needs neither recursion nor allocation and, since
//! firmware numbers buses depth first, visits functions in depth-first order.

use super::{
    Address, CLASS, CLASS_BRIDGE, ConfigSpace, DEVICE_ID, HEADER_TYPE, INTERRUPT_LINE,
    INTERRUPT_PIN, SECONDARY_BUS, SUBCLASS_HOST_BRIDGE, VENDOR_ID,
};

/// HEADER_TYPE bit 7: functions 1..8 may exist.
const MULTIFUNCTION: u8 = 1 << 7;

/// Layout of the header beyond offset 0x10, from HEADER_TYPE bits 6:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderType {
    /// Type 0: an endpoint, with six BARs.
    Device,
    /// Type 1: a PCI-to-PCI bridge, with two BARs and bus numbers.
    PciBridge,
    /// Type 2: a CardBus bridge.
    CardBus,
    Unknown(u8),
}

impl HeaderType {
    /// Decodes HEADER_TYPE, ignoring the multi-function bit.
    pub fn from_register(value: u8) -> Self {
        match value & !MULTIFUNCTION {
            0 => Self::Device,
            1 => Self::PciBridge,
            2 => Self::CardBus,
            other => Self::Unknown(other),
        }
    }
}

/// One function's identity, as read from its configuration header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: Address,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    pub header_type: HeaderType,
    /// What firmware wrote for the interrupt controller input of INTx: qboot writes 10 or
    /// 11; 0xff or 0 mean unknown.
    pub interrupt_line: u8,
    /// 1..=4 for INTA#..INTD#, 0 if the function uses no INTx pin.
    pub interrupt_pin: u8,
}

impl Function {
    /// The function at `address`, or `None` if nothing answers there.
    pub fn read(config: &(impl ConfigSpace + ?Sized), address: Address) -> Option<Self> {
        let vendor_id = config.read16(address, VENDOR_ID);
        if !is_present(vendor_id) {
            return None;
        }
        let [revision, prog_if, subclass, class] = config.read32(address, CLASS).to_le_bytes();
        Some(Self {
            address,
            vendor_id,
            device_id: config.read16(address, DEVICE_ID),
            class,
            subclass,
            prog_if,
            revision,
            header_type: HeaderType::from_register(config.read8(address, HEADER_TYPE)),
            interrupt_line: config.read8(address, INTERRUPT_LINE),
            interrupt_pin: config.read8(address, INTERRUPT_PIN),
        })
    }

    pub fn is_host_bridge(&self) -> bool {
        self.class == CLASS_BRIDGE && self.subclass == SUBCLASS_HOST_BRIDGE
    }
}

/// An empty slot reads all ones; some boards return zero instead, which Linux also takes as
/// empty (`pci_bus_generic_read_dev_vendor_id`). Neither is an assigned vendor ID.
fn is_present(vendor_id: u16) -> bool {
    vendor_id != 0xffff && vendor_id != 0x0000
}

fn is_multifunction(config: &(impl ConfigSpace + ?Sized), address: Address) -> bool {
    config.read8(address, HEADER_TYPE) & MULTIFUNCTION != 0
}

/// Something in configuration space the walk did not follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnumerationProblem {
    /// A root bus the configuration mechanism does not reach.
    RootBusUnreachable { bus: u8, first: u8, last: u8 },
    /// A bridge whose secondary bus is not above its own bus: unnumbered by firmware (0) or
    /// garbage. Following it could loop.
    SecondaryBusNotAbove { bridge: Address, secondary: u8 },
    /// A bridge whose secondary bus the configuration mechanism does not reach.
    SecondaryBusUnreachable {
        bridge: Address,
        secondary: u8,
        first: u8,
        last: u8,
    },
    /// A bridge naming a bus that is already a root bus or another bridge's secondary bus.
    BusClaimedTwice { bridge: Address, bus: u8 },
}

impl core::fmt::Display for EnumerationProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::RootBusUnreachable { bus, first, last } => write!(
                f,
                "root bus {bus:02x} is outside buses {first:02x}..={last:02x} that the \
                 configuration mechanism reaches; not scanned"
            ),
            Self::SecondaryBusNotAbove { bridge, secondary } => write!(
                f,
                "bridge {bridge} names bus {secondary:02x} as its secondary bus, which is not \
                 above its own: its bus numbers are unassigned (qboot assigns none) or corrupt, \
                 so the devices behind it are not enumerated"
            ),
            Self::SecondaryBusUnreachable {
                bridge,
                secondary,
                first,
                last,
            } => write!(
                f,
                "bridge {bridge} leads to bus {secondary:02x}, outside buses \
                 {first:02x}..={last:02x} that the configuration mechanism reaches (check the \
                 MCFG bus range); not scanned"
            ),
            Self::BusClaimedTwice { bridge, bus } => write!(
                f,
                "bridge {bridge} leads to bus {bus:02x}, which another bridge or a root bus \
                 already claims; bus numbering is corrupt, so it is scanned only once"
            ),
        }
    }
}

/// Calls `visit` with every function reachable from bus 0, and `problem` for every bridge
/// (or root bus) not followed.
///
/// Besides bus 0, further root buses are taken from host bridge 00:00.0 when it is a
/// multi-function device: each of its functions 1..8 that is itself a host bridge is taken to
/// be the host bridge of the bus with its function number. This is the heuristic of the
/// OSDev wiki's PCI page for machines with several host bridges; neither the PCI Firmware
/// Specification nor Linux has it, as both take each root bus from ACPI (`_BBN` of a
/// PNP0A03/PNP0A08 device). It costs a few reads and never fires on QEMU's `pc` and `q35`,
/// whose 00:00.0 is single-function; use [`enumerate_from`] when ACPI names the root buses
/// (e.g. QEMU's `pxb` expander bridges). Buses are not probed blindly.
pub fn enumerate(
    config: &(impl ConfigSpace + ?Sized),
    visit: impl FnMut(Function),
    problem: impl FnMut(EnumerationProblem),
) {
    let mut roots = BusSet::default();
    roots.insert(0);
    let host_bridge = Address {
        bus: 0,
        device: 0,
        function: 0,
    };
    let is_host_bridge =
        |address| Function::read(config, address).is_some_and(|f| f.is_host_bridge());
    if is_host_bridge(host_bridge) && is_multifunction(config, host_bridge) {
        for function in 1..8 {
            let sibling = Address {
                function,
                ..host_bridge
            };
            if is_host_bridge(sibling) {
                roots.insert(function);
            }
        }
    }
    scan(config, roots, visit, problem);
}

/// As [`enumerate`], from the root buses the caller names (ACPI's `_BBN` of each host
/// bridge); duplicates are ignored.
pub fn enumerate_from(
    config: &(impl ConfigSpace + ?Sized),
    root_buses: &[u8],
    visit: impl FnMut(Function),
    mut problem: impl FnMut(EnumerationProblem),
) {
    let reachable = config.buses();
    let mut roots = BusSet::default();
    for &bus in root_buses {
        if reachable.contains(&bus) {
            roots.insert(bus);
        } else {
            problem(EnumerationProblem::RootBusUnreachable {
                bus,
                first: *reachable.start(),
                last: *reachable.end(),
            });
        }
    }
    scan(config, roots, visit, problem);
}

fn scan(
    config: &(impl ConfigSpace + ?Sized),
    mut pending: BusSet,
    mut visit: impl FnMut(Function),
    mut problem: impl FnMut(EnumerationProblem),
) {
    // Every bus ever claimed; pending ones are still to be scanned.
    let mut claimed = pending;
    while let Some(bus) = pending.take_lowest() {
        for device in 0..32 {
            let first = Address {
                bus,
                device,
                function: 0,
            };
            let Some(function_0) = Function::read(config, first) else {
                continue;
            };
            // A single-function device may answer at every function number with function
            // 0's registers, so functions 1..8 count only when the bit says they exist.
            let functions = if is_multifunction(config, first) {
                8
            } else {
                1
            };
            for number in 0..functions {
                let address = Address {
                    function: number,
                    ..first
                };
                let found = if number == 0 {
                    Some(function_0)
                } else {
                    Function::read(config, address)
                };
                let Some(function) = found else { continue };
                visit(function);
                if function.header_type == HeaderType::PciBridge {
                    match follow_bridge(config, &function, &claimed) {
                        Ok(secondary) => {
                            claimed.insert(secondary);
                            pending.insert(secondary);
                        }
                        Err(reason) => problem(reason),
                    }
                }
            }
        }
    }
}

/// The bus behind `bridge`, if it is safe to scan.
fn follow_bridge(
    config: &(impl ConfigSpace + ?Sized),
    bridge: &Function,
    claimed: &BusSet,
) -> Result<u8, EnumerationProblem> {
    let address = bridge.address;
    let secondary = config.read8(address, SECONDARY_BUS);
    let reachable = config.buses();
    if secondary <= address.bus {
        Err(EnumerationProblem::SecondaryBusNotAbove {
            bridge: address,
            secondary,
        })
    } else if !reachable.contains(&secondary) {
        Err(EnumerationProblem::SecondaryBusUnreachable {
            bridge: address,
            secondary,
            first: *reachable.start(),
            last: *reachable.end(),
        })
    } else if claimed.contains(secondary) {
        Err(EnumerationProblem::BusClaimedTwice {
            bridge: address,
            bus: secondary,
        })
    } else {
        Ok(secondary)
    }
}

/// A set of bus numbers.
#[derive(Clone, Copy, Default)]
struct BusSet([u64; 4]);

impl BusSet {
    fn insert(&mut self, bus: u8) {
        self.0[usize::from(bus / 64)] |= 1 << (bus % 64);
    }

    fn contains(&self, bus: u8) -> bool {
        self.0[usize::from(bus / 64)] & 1 << (bus % 64) != 0
    }

    fn take_lowest(&mut self) -> Option<u8> {
        let (word, bits) = self
            .0
            .iter_mut()
            .enumerate()
            .find(|(_, bits)| **bits != 0)?;
        let bit = bits.trailing_zeros();
        *bits &= !(1 << bit);
        u8::try_from(word * 64 + bit as usize).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake_config_space::FakeConfigSpace;

    fn at(bus: u8, device: u8, function: u8) -> Address {
        Address {
            bus,
            device,
            function,
        }
    }

    fn walk(space: &FakeConfigSpace) -> (Vec<Address>, Vec<EnumerationProblem>) {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        enumerate(space, |f| found.push(f.address), |p| problems.push(p));
        (found, problems)
    }

    /// QEMU's `pc` machine with a virtio-net device, as qboot leaves it.
    fn qemu_pc() -> FakeConfigSpace {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(at(0, 0, 0), 0x8086, 0x1237, 0x06, 0x00);
        space.add_device(at(0, 1, 0), 0x8086, 0x7000, 0x06, 0x01);
        space.set_multifunction(at(0, 1, 0));
        space.add_device(at(0, 1, 1), 0x8086, 0x7010, 0x01, 0x01);
        space.add_device(at(0, 1, 3), 0x8086, 0x7113, 0x06, 0x80);
        space.add_device(at(0, 2, 0), 0x1234, 0x1111, 0x03, 0x00);
        space.add_device(at(0, 3, 0), 0x1af4, 0x1000, 0x02, 0x00);
        space.set8(at(0, 3, 0), INTERRUPT_LINE, 11);
        space.set8(at(0, 3, 0), INTERRUPT_PIN, 1);
        space
    }

    #[test]
    fn the_pc_machine_enumerates_every_function_in_order() {
        let (found, problems) = walk(&qemu_pc());
        assert_eq!(
            found,
            [
                at(0, 0, 0),
                at(0, 1, 0),
                at(0, 1, 1),
                at(0, 1, 3),
                at(0, 2, 0),
                at(0, 3, 0)
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn a_function_reports_its_identity_and_interrupt_routing() {
        let space = qemu_pc();
        let function = Function::read(&space, at(0, 3, 0)).unwrap();
        assert_eq!(
            function,
            Function {
                address: at(0, 3, 0),
                vendor_id: 0x1af4,
                device_id: 0x1000,
                class: 0x02,
                subclass: 0x00,
                prog_if: 0x00,
                revision: 0x01,
                header_type: HeaderType::Device,
                interrupt_line: 11,
                interrupt_pin: 1,
            }
        );
        assert!(Function::read(&space, at(0, 4, 0)).is_none());
    }

    #[test]
    fn functions_of_a_single_function_device_are_not_scanned() {
        let mut space = qemu_pc();
        // Some devices answer at every function number with function 0's registers.
        space.add_device(at(0, 2, 1), 0x1234, 0x1111, 0x03, 0x00);
        let (found, _) = walk(&space);
        assert!(!found.contains(&at(0, 2, 1)));
    }

    #[test]
    fn a_vendor_id_of_zero_is_an_empty_slot() {
        let mut space = qemu_pc();
        space.add_device(at(0, 5, 0), 0x0000, 0x0000, 0x00, 0x00);
        let (found, _) = walk(&space);
        assert!(!found.contains(&at(0, 5, 0)));
    }

    #[test]
    fn buses_behind_bridges_are_walked_depth_first() {
        let mut space = qemu_pc();
        space.add_bridge(at(0, 0x1e, 0), 1, 2);
        space.add_bridge(at(1, 0, 0), 2, 2);
        space.add_device(at(1, 1, 0), 0x1af4, 0x1001, 0x01, 0x00);
        space.add_device(at(2, 3, 0), 0x1af4, 0x1041, 0x02, 0x00);
        space.add_bridge(at(0, 0x1f, 0), 3, 3);
        space.add_device(at(3, 0, 0), 0x1af4, 0x1042, 0x01, 0x00);
        let (found, problems) = walk(&space);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            found[6..],
            [
                at(0, 0x1e, 0),
                at(0, 0x1f, 0),
                at(1, 0, 0),
                at(1, 1, 0),
                at(2, 3, 0),
                at(3, 0, 0)
            ]
        );
    }

    #[test]
    fn a_bridge_without_bus_numbers_is_reported_not_followed() {
        let mut space = qemu_pc();
        space.add_bridge(at(0, 5, 0), 0, 0);
        let (found, problems) = walk(&space);
        assert!(found.contains(&at(0, 5, 0)));
        assert_eq!(
            problems,
            [EnumerationProblem::SecondaryBusNotAbove {
                bridge: at(0, 5, 0),
                secondary: 0
            }]
        );
    }

    #[test]
    fn a_bridge_pointing_back_up_the_tree_is_reported_not_followed() {
        let mut space = qemu_pc();
        space.add_bridge(at(0, 5, 0), 1, 1);
        space.add_bridge(at(1, 0, 0), 1, 1);
        space.add_bridge(at(1, 1, 0), 0, 1);
        let (found, problems) = walk(&space);
        assert_eq!(found.iter().filter(|a| a.bus == 1).count(), 2);
        assert_eq!(problems.len(), 2);
        assert!(
            problems
                .iter()
                .all(|p| matches!(p, EnumerationProblem::SecondaryBusNotAbove { .. }))
        );
    }

    #[test]
    fn two_bridges_claiming_one_bus_get_it_scanned_once() {
        let mut space = qemu_pc();
        space.add_bridge(at(0, 5, 0), 1, 1);
        space.add_bridge(at(0, 6, 0), 1, 1);
        space.add_device(at(1, 0, 0), 0x1af4, 0x1041, 0x02, 0x00);
        let (found, problems) = walk(&space);
        assert_eq!(found.iter().filter(|&&a| a == at(1, 0, 0)).count(), 1);
        assert_eq!(
            problems,
            [EnumerationProblem::BusClaimedTwice {
                bridge: at(0, 6, 0),
                bus: 1
            }]
        );
    }

    #[test]
    fn a_secondary_bus_beyond_the_ecam_range_is_reported() {
        let mut space = FakeConfigSpace::new(4096).with_buses(0..=3);
        space.add_bridge(at(0, 1, 0), 9, 9);
        let (_, problems) = walk(&space);
        assert_eq!(
            problems,
            [EnumerationProblem::SecondaryBusUnreachable {
                bridge: at(0, 1, 0),
                secondary: 9,
                first: 0,
                last: 3
            }]
        );
    }

    #[test]
    fn a_chain_through_all_256_buses_ends() {
        let mut space = FakeConfigSpace::new(256);
        for bus in 0..255 {
            space.add_bridge(at(bus, 0, 0), bus + 1, 255);
        }
        // The last bridge can only point back at its own bus.
        space.add_bridge(at(255, 0, 0), 255, 255);
        let (found, problems) = walk(&space);
        assert_eq!(found.len(), 256);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn a_multifunction_host_bridge_adds_root_buses_by_function_number() {
        let mut space = qemu_pc();
        space.set_multifunction(at(0, 0, 0));
        space.add_device(at(0, 0, 2), 0x8086, 0x1237, 0x06, 0x00);
        // Not a host bridge: no root bus 3.
        space.add_device(at(0, 0, 3), 0x8086, 0x7020, 0x0c, 0x03);
        space.add_device(at(2, 4, 0), 0x1af4, 0x1041, 0x02, 0x00);
        space.add_device(at(3, 4, 0), 0x1af4, 0x1041, 0x02, 0x00);
        let (found, problems) = walk(&space);
        assert!(problems.is_empty());
        assert!(found.contains(&at(0, 0, 3)));
        assert!(found.contains(&at(2, 4, 0)));
        assert!(!found.contains(&at(3, 4, 0)));
    }

    #[test]
    fn a_single_function_host_bridge_adds_no_root_bus() {
        let mut space = qemu_pc();
        space.add_device(at(1, 0, 0), 0x1af4, 0x1041, 0x02, 0x00);
        let (found, _) = walk(&space);
        assert!(!found.contains(&at(1, 0, 0)));
    }

    #[test]
    fn named_root_buses_are_scanned_and_unreachable_ones_reported() {
        let mut space = FakeConfigSpace::new(4096).with_buses(0..=0x3f);
        space.add_device(at(0, 0, 0), 0x8086, 0x29c0, 0x06, 0x00);
        space.add_device(at(0x20, 0, 0), 0x1b36, 0x000b, 0x06, 0x00);
        let mut found = Vec::new();
        let mut problems = Vec::new();
        enumerate_from(
            &space,
            &[0, 0x20, 0x20, 0x80],
            |f| found.push(f.address),
            |p| problems.push(p),
        );
        assert_eq!(found, [at(0, 0, 0), at(0x20, 0, 0)]);
        assert_eq!(
            problems,
            [EnumerationProblem::RootBusUnreachable {
                bus: 0x80,
                first: 0,
                last: 0x3f
            }]
        );
    }

    #[test]
    fn header_types_decode_without_the_multifunction_bit() {
        assert_eq!(HeaderType::from_register(0x80), HeaderType::Device);
        assert_eq!(HeaderType::from_register(0x01), HeaderType::PciBridge);
        assert_eq!(HeaderType::from_register(0x82), HeaderType::CardBus);
        assert_eq!(HeaderType::from_register(0xff), HeaderType::Unknown(0x7f));
    }

    #[test]
    fn problems_explain_themselves_in_one_line() {
        let problem = EnumerationProblem::SecondaryBusNotAbove {
            bridge: at(0, 5, 0),
            secondary: 0,
        };
        let message = problem.to_string();
        assert!(message.contains("00:05.0"), "{message}");
        assert!(!message.contains('\n'));
    }
}
