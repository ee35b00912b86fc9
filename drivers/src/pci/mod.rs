//! PCI bus support: configuration space access, enumeration, BAR sizing and assignment,
//! capability lists, MSI-X, virtio-pci's vendor capabilities, and where INTx pins are routed.
//!
//! QEMU's `pc` and `q35` machines boot Janus through qboot, which numbers no bridges and
//! assigns no BARs: every BAR reads back 0 with decode disabled (`info pci` in the QEMU
//! monitor shows them "unassigned"), while the Interrupt Line register is set (10 or 11).
//! So the kernel sizes BARs ([`probe_bars`]), picks a window in the 32-bit PCI hole
//! ([`choose_window`]), places BARs there ([`BarAllocator`], [`assign_memory_bar`]) and only
//! then turns decode on ([`command::enable`]).
//!
//! Configuration space contents come from the host and are not trusted: a bad capability
//! pointer, a capability loop, a bridge pointing back at its own bus or a BAR with a
//! nonsensical size mask each give an error, never a hang or a panic.
//!
//! Register offsets and layouts follow the PCI Local Bus Specification 3.0, chapter 6 (the
//! type 0 and type 1 headers), and the PCI Express Base Specification §7.2 (ECAM).
//! Everything above register access goes through [`ConfigSpace`], so host tests run it
//! against a fake configuration space.

mod bar;
mod capability;
pub mod command;
mod config;
mod enumerate;
mod intx;
pub mod msix;
pub mod virtio;

#[cfg(test)]
mod fake_config_space;

pub use bar::{
    Bar, BarAllocator, BarError, MAX_BARS, PCI_HOLE_32BIT, assign_memory_bar, bar_count,
    choose_window, probe_bars,
};
pub use capability::{
    Capabilities, Capability, CapabilityError, ID_MSI, ID_MSIX, ID_VENDOR, capabilities,
    find_capability,
};
pub use command::{disable_intx, enable};
pub use config::{ConfigSpace, Ecam, PortIo};
pub use enumerate::{EnumerationProblem, Function, HeaderType, enumerate, enumerate_from};
pub use intx::{
    IntxLine, IntxRoute, IntxRouting, PIIX3_ISA_BRIDGE, PIIX3_PIRQ_ROUTE, intx_route, reached_input,
};

/// Where a function sits: bus, device (0..32) and function (0..8) numbers.
///
/// Fields are plain so that callers build and take apart addresses freely. A device number
/// of 32 or more, or a function number of 8 or more, addresses nothing: reads of it return
/// all ones and writes are dropped, as for an absent function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Address {
    /// Device numbers are 5 bits and function numbers 3 bits wide in every configuration
    /// mechanism.
    pub const fn is_valid(self) -> bool {
        self.device < 32 && self.function < 8
    }
}

/// `bus:device.function` in hex, as `lspci` and QEMU's `info pci` print it: `00:03.0`.
impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

// Configuration header registers common to all header types (PCI Local Bus 3.0 §6.1).
pub const VENDOR_ID: u16 = 0x00;
pub const DEVICE_ID: u16 = 0x02;
pub const COMMAND: u16 = 0x04;
/// Bits here are write-1-to-clear; see [`ConfigSpace::write16`].
pub const STATUS: u16 = 0x06;
/// The dword holding Revision ID (byte 0), Programming Interface, Subclass and Class Code
/// (byte 3).
pub const CLASS: u16 = 0x08;
/// Bits 6:0 the layout of the rest of the header, bit 7 set on a multi-function device.
pub const HEADER_TYPE: u16 = 0x0e;
/// The first Base Address Register; the others follow at 4-byte steps.
pub const BAR0: u16 = 0x10;
/// Type 0 and type 1 headers; a CardBus (type 2) header keeps it at 0x14.
pub const CAPABILITIES_POINTER: u16 = 0x34;
pub const INTERRUPT_LINE: u16 = 0x3c;
pub const INTERRUPT_PIN: u16 = 0x3d;

// PCI-to-PCI bridge (type 1) header registers (PCI-to-PCI Bridge Architecture 1.2 §3.2).
pub const PRIMARY_BUS: u16 = 0x18;
pub const SECONDARY_BUS: u16 = 0x19;
pub const SUBORDINATE_BUS: u16 = 0x1a;

/// STATUS bit 4: the function has a capability list at [`CAPABILITIES_POINTER`].
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;

/// Class code 0x06, subclass 0x00: a host bridge.
pub const CLASS_BRIDGE: u8 = 0x06;
pub const SUBCLASS_HOST_BRIDGE: u8 = 0x00;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_displays_like_lspci() {
        let address = Address {
            bus: 0,
            device: 3,
            function: 0,
        };
        assert_eq!(format!("{address}"), "00:03.0");
        let address = Address {
            bus: 0xab,
            device: 0x1f,
            function: 7,
        };
        assert_eq!(format!("{address}"), "ab:1f.7");
    }

    #[test]
    fn addresses_order_by_bus_then_device_then_function() {
        let a = Address {
            bus: 0,
            device: 31,
            function: 7,
        };
        let b = Address {
            bus: 1,
            device: 0,
            function: 0,
        };
        assert!(a < b);
    }

    #[test]
    fn device_and_function_numbers_beyond_their_fields_are_invalid() {
        let valid = Address {
            bus: 255,
            device: 31,
            function: 7,
        };
        assert!(valid.is_valid());
        assert!(
            !Address {
                device: 32,
                ..valid
            }
            .is_valid()
        );
        assert!(
            !Address {
                function: 8,
                ..valid
            }
            .is_valid()
        );
    }
}
