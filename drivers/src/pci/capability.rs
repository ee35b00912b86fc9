//! The capability list (PCI Local Bus 3.0 §6.7): a chain of (ID, next pointer) headers in
//! configuration space after the standard header.
//!
//! The chain comes from the host, so the walk checks every pointer and bounds its length.

use super::{
    Address, CAPABILITIES_POINTER, ConfigSpace, HEADER_TYPE, HeaderType, STATUS,
    STATUS_CAPABILITIES_LIST,
};

pub const ID_MSI: u8 = 0x05;
/// Vendor-specific; virtio-pci keeps its register locations in these.
pub const ID_VENDOR: u8 = 0x09;
pub const ID_MSIX: u8 = 0x11;

/// Capabilities live after the 64-byte standard header.
const FIRST_CAPABILITY: u8 = 0x40;
/// A CardBus bridge keeps its capabilities pointer here instead.
const CARDBUS_CAPABILITIES_POINTER: u16 = 0x14;
/// The 192 bytes after the header hold at most 48 four-byte capabilities, so a longer chain
/// must revisit one. Linux uses the same bound (`PCI_FIND_CAP_TTL`).
const MAX_CAPABILITIES: u8 = 48;
/// Pointers are dword-aligned; the low two bits are reserved and software must mask them.
const POINTER_MASK: u8 = !0b11;

/// One capability: its ID and where it starts in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// The pointer read at configuration offset `at` points into the standard header.
    PointerIntoHeader { at: u16, pointer: u8 },
    /// More entries than fit in configuration space: the chain loops.
    TooLong,
    /// The capability at `offset` has ID 0xff: the function reads all ones, so it is gone.
    FunctionGone { offset: u8 },
}

impl core::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::PointerIntoHeader { at, pointer } => write!(
                f,
                "capability pointer at config offset {at:#04x} reads {pointer:#04x}, inside the \
                 standard header (below 0x40): the capability list is corrupt"
            ),
            Self::TooLong => write!(
                f,
                "capability list has more than {MAX_CAPABILITIES} entries, more than fit in \
                 configuration space: it loops"
            ),
            Self::FunctionGone { offset } => write!(
                f,
                "capability at config offset {offset:#04x} reads all ones: the function no \
                 longer answers"
            ),
        }
    }
}

/// The function's capabilities in list order. Empty when STATUS says there is no list; ends
/// after the first error.
pub fn capabilities<C: ConfigSpace + ?Sized>(config: &C, address: Address) -> Capabilities<'_, C> {
    let pointer_at = match HeaderType::from_register(config.read8(address, HEADER_TYPE)) {
        HeaderType::CardBus => CARDBUS_CAPABILITIES_POINTER,
        _ => CAPABILITIES_POINTER,
    };
    let has_list = config.read16(address, STATUS) & STATUS_CAPABILITIES_LIST != 0;
    Capabilities {
        config,
        address,
        pointer_at,
        next: if has_list {
            config.read8(address, pointer_at) & POINTER_MASK
        } else {
            0
        },
        seen: 0,
    }
}

/// The first capability with ID `id`, if any.
pub fn find_capability(
    config: &(impl ConfigSpace + ?Sized),
    address: Address,
    id: u8,
) -> Result<Option<Capability>, CapabilityError> {
    for capability in capabilities(config, address) {
        let capability = capability?;
        if capability.id == id {
            return Ok(Some(capability));
        }
    }
    Ok(None)
}

/// Iterator over a function's capability list; see [`capabilities`].
pub struct Capabilities<'a, C: ConfigSpace + ?Sized> {
    config: &'a C,
    address: Address,
    /// Where `next` was read from, for error messages.
    pointer_at: u16,
    /// Offset of the next capability, 0 at the end of the list.
    next: u8,
    seen: u8,
}

impl<C: ConfigSpace + ?Sized> Capabilities<'_, C> {
    fn step(&mut self) -> Result<Capability, CapabilityError> {
        let offset = self.next;
        if offset < FIRST_CAPABILITY {
            return Err(CapabilityError::PointerIntoHeader {
                at: self.pointer_at,
                pointer: offset,
            });
        }
        if self.seen == MAX_CAPABILITIES {
            return Err(CapabilityError::TooLong);
        }
        self.seen += 1;
        let [id, next] = self
            .config
            .read16(self.address, u16::from(offset))
            .to_le_bytes();
        if id == 0xff {
            return Err(CapabilityError::FunctionGone { offset });
        }
        self.pointer_at = u16::from(offset) + 1;
        self.next = next & POINTER_MASK;
        Ok(Capability { id, offset })
    }
}

impl<C: ConfigSpace + ?Sized> Iterator for Capabilities<'_, C> {
    type Item = Result<Capability, CapabilityError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == 0 {
            return None;
        }
        let result = self.step();
        if result.is_err() {
            self.next = 0;
        }
        Some(result)
    }
}

impl<C: ConfigSpace + ?Sized> core::iter::FusedIterator for Capabilities<'_, C> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake_config_space::FakeConfigSpace;

    const DEVICE: Address = Address {
        bus: 0,
        device: 3,
        function: 0,
    };

    /// A device whose capability list is the given (offset, id, next) entries, starting at
    /// `first`.
    fn device_with_list(first: u8, entries: &[(u8, u8, u8)]) -> FakeConfigSpace {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set16(DEVICE, STATUS, STATUS_CAPABILITIES_LIST);
        space.set8(DEVICE, CAPABILITIES_POINTER, first);
        for &(offset, id, next) in entries {
            space.set8(DEVICE, u16::from(offset), id);
            space.set8(DEVICE, u16::from(offset) + 1, next);
        }
        space
    }

    fn walk(space: &FakeConfigSpace) -> Vec<Result<Capability, CapabilityError>> {
        capabilities(space, DEVICE).collect()
    }

    #[test]
    fn a_virtio_devices_list_is_walked_in_order() {
        let space = device_with_list(
            0x98,
            &[
                (0x98, ID_MSIX, 0x84),
                (0x84, ID_VENDOR, 0x70),
                (0x70, ID_VENDOR, 0x00),
            ],
        );
        assert_eq!(
            walk(&space),
            [
                Ok(Capability {
                    id: ID_MSIX,
                    offset: 0x98
                }),
                Ok(Capability {
                    id: ID_VENDOR,
                    offset: 0x84
                }),
                Ok(Capability {
                    id: ID_VENDOR,
                    offset: 0x70
                }),
            ]
        );
    }

    #[test]
    fn without_the_status_bit_there_is_no_list() {
        let mut space = device_with_list(0x40, &[(0x40, ID_MSI, 0)]);
        space.set16(DEVICE, STATUS, 0);
        assert!(walk(&space).is_empty());
    }

    #[test]
    fn the_reserved_low_pointer_bits_are_masked() {
        let space = device_with_list(0x43, &[(0x40, ID_MSI, 0x53), (0x50, ID_MSIX, 0x02)]);
        assert_eq!(
            walk(&space),
            [
                Ok(Capability {
                    id: ID_MSI,
                    offset: 0x40
                }),
                Ok(Capability {
                    id: ID_MSIX,
                    offset: 0x50
                }),
            ]
        );
    }

    #[test]
    fn a_pointer_into_the_header_ends_the_walk_with_an_error() {
        let space = device_with_list(0x40, &[(0x40, ID_MSI, 0x10)]);
        assert_eq!(
            walk(&space),
            [
                Ok(Capability {
                    id: ID_MSI,
                    offset: 0x40
                }),
                Err(CapabilityError::PointerIntoHeader {
                    at: 0x41,
                    pointer: 0x10
                }),
            ]
        );
        let space = device_with_list(0x3c, &[]);
        assert_eq!(
            walk(&space),
            [Err(CapabilityError::PointerIntoHeader {
                at: 0x34,
                pointer: 0x3c
            })]
        );
    }

    #[test]
    fn a_loop_ends_after_48_entries_with_an_error() {
        let space = device_with_list(0x40, &[(0x40, ID_VENDOR, 0x44), (0x44, ID_VENDOR, 0x40)]);
        let entries = walk(&space);
        assert_eq!(entries.len(), 49);
        assert!(entries[..48].iter().all(Result::is_ok));
        assert_eq!(entries[48], Err(CapabilityError::TooLong));
        assert!(space.reads.get() < 200);
    }

    #[test]
    fn a_self_loop_ends_too() {
        let space = device_with_list(0xfc, &[(0xfc, ID_VENDOR, 0xfc)]);
        assert_eq!(walk(&space).last(), Some(&Err(CapabilityError::TooLong)));
    }

    #[test]
    fn a_vanished_function_is_reported_not_walked() {
        let space = FakeConfigSpace::new(256);
        let entries: Vec<_> = capabilities(&space, DEVICE).collect();
        assert_eq!(
            entries,
            [Err(CapabilityError::FunctionGone { offset: 0xfc })]
        );
    }

    #[test]
    fn a_cardbus_bridge_keeps_its_pointer_at_0x14() {
        let mut space = device_with_list(0x00, &[(0x80, ID_MSI, 0)]);
        space.set8(DEVICE, HEADER_TYPE, 0x02);
        space.set8(DEVICE, CARDBUS_CAPABILITIES_POINTER, 0x80);
        assert_eq!(
            walk(&space),
            [Ok(Capability {
                id: ID_MSI,
                offset: 0x80
            })]
        );
    }

    #[test]
    fn find_returns_the_first_match_or_the_error_before_it() {
        let space = device_with_list(0x40, &[(0x40, ID_VENDOR, 0x50), (0x50, ID_MSIX, 0)]);
        assert_eq!(
            find_capability(&space, DEVICE, ID_MSIX),
            Ok(Some(Capability {
                id: ID_MSIX,
                offset: 0x50
            }))
        );
        assert_eq!(find_capability(&space, DEVICE, ID_MSI), Ok(None));
        let broken = device_with_list(0x40, &[(0x40, ID_VENDOR, 0x20)]);
        assert!(find_capability(&broken, DEVICE, ID_MSIX).is_err());
    }

    #[test]
    fn a_dyn_config_space_works_too() {
        let space = device_with_list(0x40, &[(0x40, ID_MSIX, 0)]);
        let config: &dyn ConfigSpace = &space;
        assert_eq!(capabilities(config, DEVICE).count(), 1);
    }
}
