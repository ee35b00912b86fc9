//! virtio over PCI (virtio 1.2 §4.1): recognising virtio functions, and the vendor-specific
//! capabilities that locate a modern device's register blocks in its BARs.
//!
//! The virtio-drivers crate drives the device through those blocks but assigns no MSI-X
//! vectors, so the kernel writes `config_msix_vector` and each queue's `queue_msix_vector`
//! in the common configuration block itself; the offsets are below.

use core::mem::offset_of;

use super::capability::{CapabilityError, ID_VENDOR, capabilities};
use super::{Address, ConfigSpace};

/// Red Hat's (formerly Qumranet's) vendor ID, under which all virtio PCI devices appear.
pub const PCI_VENDOR_ID: u16 = 0x1af4;
/// A modern device's PCI device ID is this plus its virtio device ID (§4.1.2.1).
const MODERN_DEVICE_ID_BASE: u16 = 0x1040;
const MODERN_DEVICE_ID_LAST: u16 = 0x107f;

// Virtio device IDs (§5).
pub const DEVICE_NET: u16 = 1;
pub const DEVICE_BLOCK: u16 = 2;
pub const DEVICE_CONSOLE: u16 = 3;
pub const DEVICE_ENTROPY: u16 = 4;
pub const DEVICE_BALLOON: u16 = 5;
pub const DEVICE_SCSI: u16 = 8;
pub const DEVICE_9P: u16 = 9;

/// The virtio device ID (1 net, 2 block, 3 console, 4 entropy, ...) of a PCI function, or
/// `None` if it is not a virtio device.
///
/// Modern devices use 0x1041..=0x107f; transitional ones the fixed table of §4.1.2.1
/// (0x1000 net, 0x1001 block, 0x1002 balloon, 0x1003 console, 0x1004 SCSI, 0x1005 entropy,
/// 0x1009 9P). Other IDs in 0x1000..=0x103f are unassigned, and 0x1040 would be device ID 0,
/// which is reserved.
pub fn virtio_device_type(vendor: u16, device: u16) -> Option<u16> {
    if vendor != PCI_VENDOR_ID {
        return None;
    }
    match device {
        0x1000 => Some(DEVICE_NET),
        0x1001 => Some(DEVICE_BLOCK),
        0x1002 => Some(DEVICE_BALLOON),
        0x1003 => Some(DEVICE_CONSOLE),
        0x1004 => Some(DEVICE_SCSI),
        0x1005 => Some(DEVICE_ENTROPY),
        0x1009 => Some(DEVICE_9P),
        MODERN_DEVICE_ID_BASE..=MODERN_DEVICE_ID_LAST if device != MODERN_DEVICE_ID_BASE => {
            Some(device - MODERN_DEVICE_ID_BASE)
        }
        _ => None,
    }
}

// `cfg_type` values (§4.1.4): which register block a capability locates.
pub const CFG_TYPE_COMMON: u8 = 1;
pub const CFG_TYPE_NOTIFY: u8 = 2;
pub const CFG_TYPE_ISR: u8 = 3;
pub const CFG_TYPE_DEVICE: u8 = 4;
/// A window for reaching the other blocks through configuration space.
pub const CFG_TYPE_PCI: u8 = 5;
pub const CFG_TYPE_SHARED_MEMORY: u8 = 8;
pub const CFG_TYPE_VENDOR: u8 = 9;

/// `struct virtio_pci_cap` (§4.1.4), as it lies in configuration space; only its layout is
/// used, for the field offsets.
#[repr(C)]
#[allow(dead_code, reason = "never built: only offset_of! reads it")]
struct VirtioPciCap {
    cap_vndr: u8,
    cap_next: u8,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    id: u8,
    padding: [u8; 2],
    offset: u32,
    length: u32,
}
const _: () = assert!(size_of::<VirtioPciCap>() == 16);

const CAP_LEN: u16 = offset_of!(VirtioPciCap, cap_len) as u16;
const CAP_CFG_TYPE: u16 = offset_of!(VirtioPciCap, cfg_type) as u16;
const CAP_BAR: u16 = offset_of!(VirtioPciCap, bar) as u16;
const CAP_OFFSET: u16 = offset_of!(VirtioPciCap, offset) as u16;
const CAP_LENGTH: u16 = offset_of!(VirtioPciCap, length) as u16;
const CAP_SIZE: u16 = size_of::<VirtioPciCap>() as u16;

/// `struct virtio_pci_common_cfg` (§4.1.4.3), the block `CFG_TYPE_COMMON` locates; only its
/// layout is used, to check the offsets below.
#[repr(C)]
#[allow(dead_code, reason = "never built: only offset_of! reads it")]
struct VirtioPciCommonCfg {
    device_feature_select: u32,
    device_feature: u32,
    driver_feature_select: u32,
    driver_feature: u32,
    config_msix_vector: u16,
    num_queues: u16,
    device_status: u8,
    config_generation: u8,
    queue_select: u16,
    queue_size: u16,
    queue_msix_vector: u16,
    queue_enable: u16,
    queue_notify_off: u16,
    queue_desc: u64,
    queue_driver: u64,
    queue_device: u64,
    queue_notif_config_data: u16,
    queue_reset: u16,
}

/// `config_msix_vector` (le16): the MSI-X entry for configuration-change interrupts.
pub const COMMON_MSIX_CONFIG: usize = 0x10;
/// `num_queues` (le16, read-only).
pub const COMMON_NUM_QUEUES: usize = 0x12;
/// `queue_select` (le16): which queue the `queue_*` fields address.
pub const COMMON_QUEUE_SELECT: usize = 0x16;
/// `queue_msix_vector` (le16): the MSI-X entry for the selected queue.
pub const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1a;
/// "No vector" for the two fields above. A device that cannot map a vector reads back
/// NO_VECTOR after the write (§4.1.5.1.2), so read the field back to check.
pub const NO_VECTOR: u16 = 0xffff;

const _: () = {
    assert!(offset_of!(VirtioPciCommonCfg, config_msix_vector) == COMMON_MSIX_CONFIG);
    assert!(offset_of!(VirtioPciCommonCfg, num_queues) == COMMON_NUM_QUEUES);
    assert!(offset_of!(VirtioPciCommonCfg, device_status) == 0x14);
    assert!(offset_of!(VirtioPciCommonCfg, queue_select) == COMMON_QUEUE_SELECT);
    assert!(offset_of!(VirtioPciCommonCfg, queue_size) == 0x18);
    assert!(offset_of!(VirtioPciCommonCfg, queue_msix_vector) == COMMON_QUEUE_MSIX_VECTOR);
    assert!(offset_of!(VirtioPciCommonCfg, queue_desc) == 0x20);
    assert!(offset_of!(VirtioPciCommonCfg, queue_reset) == 0x3a);
};

/// One virtio vendor capability: register block `cfg_type` is `length` bytes at `offset`
/// in BAR `bar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioPciCapability {
    pub cfg_type: u8,
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
    /// Where the capability starts in configuration space, for the fields some types
    /// append (the notify capability's `notify_off_multiplier` at +16).
    pub capability_offset: u8,
}

/// A vendor capability that is not a well-formed `virtio_pci_cap`. The spec tells drivers
/// to ignore such a capability (§4.1.4), so this is a reason to skip it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioCapabilityError {
    Capability(CapabilityError),
    /// The capability runs past the first 256 bytes of configuration space.
    OutOfBounds {
        capability_offset: u8,
    },
    /// `cap_len` is below the 16 bytes of `struct virtio_pci_cap`.
    TooShort {
        capability_offset: u8,
        cap_len: u8,
    },
    /// `bar` is not 0..=5.
    ReservedBar {
        capability_offset: u8,
        bar: u8,
    },
    /// `offset + length` overflows 32 bits.
    RegionOverflows {
        capability_offset: u8,
        offset: u32,
        length: u32,
    },
}

impl From<CapabilityError> for VirtioCapabilityError {
    fn from(error: CapabilityError) -> Self {
        Self::Capability(error)
    }
}

impl core::fmt::Display for VirtioCapabilityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Capability(error) => write!(f, "walking virtio capabilities: {error}"),
            Self::OutOfBounds { capability_offset } => write!(
                f,
                "virtio capability at config offset {capability_offset:#04x} runs past the \
                 256-byte configuration header space; ignored"
            ),
            Self::TooShort {
                capability_offset,
                cap_len,
            } => write!(
                f,
                "virtio capability at config offset {capability_offset:#04x} is {cap_len} bytes \
                 long, shorter than struct virtio_pci_cap (16); ignored"
            ),
            Self::ReservedBar {
                capability_offset,
                bar,
            } => write!(
                f,
                "virtio capability at config offset {capability_offset:#04x} names BAR {bar}, \
                 which is reserved (only 0..=5 exist); ignored"
            ),
            Self::RegionOverflows {
                capability_offset,
                offset,
                length,
            } => write!(
                f,
                "virtio capability at config offset {capability_offset:#04x} locates {length:#x} \
                 bytes at {offset:#x}, past the end of any BAR; ignored"
            ),
        }
    }
}

/// The function's virtio vendor capabilities in list order, malformed ones as errors. Only
/// meaningful for a virtio function ([`virtio_device_type`]): other vendors' vendor
/// capabilities have other layouts.
pub fn virtio_capabilities<C: ConfigSpace + ?Sized>(
    config: &C,
    address: Address,
) -> impl Iterator<Item = Result<VirtioPciCapability, VirtioCapabilityError>> {
    capabilities(config, address).filter_map(move |entry| match entry {
        Ok(capability) if capability.id == ID_VENDOR => {
            Some(read_virtio_capability(config, address, capability.offset))
        }
        Ok(_) => None,
        Err(error) => Some(Err(error.into())),
    })
}

/// The first well-formed common configuration capability: the spec has drivers use the
/// first of each type they can (§4.1.4) and ignore malformed ones, which
/// [`virtio_capabilities`] reports.
pub fn common_config(
    config: &(impl ConfigSpace + ?Sized),
    address: Address,
) -> Option<VirtioPciCapability> {
    virtio_capabilities(config, address)
        .filter_map(Result::ok)
        .find(|capability| capability.cfg_type == CFG_TYPE_COMMON)
}

fn read_virtio_capability(
    config: &(impl ConfigSpace + ?Sized),
    address: Address,
    capability_offset: u8,
) -> Result<VirtioPciCapability, VirtioCapabilityError> {
    let base = u16::from(capability_offset);
    if base + CAP_SIZE > 256 {
        return Err(VirtioCapabilityError::OutOfBounds { capability_offset });
    }
    let cap_len = config.read8(address, base + CAP_LEN);
    if u16::from(cap_len) < CAP_SIZE {
        return Err(VirtioCapabilityError::TooShort {
            capability_offset,
            cap_len,
        });
    }
    let bar = config.read8(address, base + CAP_BAR);
    if bar > 5 {
        return Err(VirtioCapabilityError::ReservedBar {
            capability_offset,
            bar,
        });
    }
    let offset = config.read32(address, base + CAP_OFFSET);
    let length = config.read32(address, base + CAP_LENGTH);
    if offset.checked_add(length).is_none() {
        return Err(VirtioCapabilityError::RegionOverflows {
            capability_offset,
            offset,
            length,
        });
    }
    Ok(VirtioPciCapability {
        cfg_type: config.read8(address, base + CAP_CFG_TYPE),
        bar,
        offset,
        length,
        capability_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::capability::ID_MSIX;
    use crate::pci::fake_config_space::FakeConfigSpace;
    use crate::pci::{CAPABILITIES_POINTER, STATUS, STATUS_CAPABILITIES_LIST};

    const DEVICE: Address = Address {
        bus: 0,
        device: 3,
        function: 0,
    };

    fn cap(cfg_type: u8, bar: u8, offset: u32, length: u32, at: u8) -> VirtioPciCapability {
        VirtioPciCapability {
            cfg_type,
            bar,
            offset,
            length,
            capability_offset: at,
        }
    }

    /// Writes a `virtio_pci_cap` at `at`, linked to `next`.
    fn put(space: &mut FakeConfigSpace, at: u8, next: u8, cap_len: u8, c: VirtioPciCapability) {
        let base = u16::from(at);
        space.set32(
            DEVICE,
            base,
            u32::from_le_bytes([ID_VENDOR, next, cap_len, c.cfg_type]),
        );
        space.set32(DEVICE, base + 4, u32::from(c.bar));
        space.set32(DEVICE, base + 8, c.offset);
        space.set32(DEVICE, base + 12, c.length);
    }

    /// QEMU's modern virtio-net layout: MSI-X at 0x98, then the PCI window, notify, device,
    /// ISR and common capabilities, all in BAR4.
    fn qemu_virtio_net() -> FakeConfigSpace {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, PCI_VENDOR_ID, 0x1041, 0x02, 0x00);
        space.set16(DEVICE, STATUS, STATUS_CAPABILITIES_LIST);
        space.set8(DEVICE, CAPABILITIES_POINTER, 0x98);
        space.set16(DEVICE, 0x98, u16::from(ID_MSIX) | 0x84 << 8);
        put(
            &mut space,
            0x84,
            0x70,
            0x14,
            cap(CFG_TYPE_PCI, 0, 0, 0, 0x84),
        );
        put(
            &mut space,
            0x70,
            0x60,
            0x14,
            cap(CFG_TYPE_NOTIFY, 4, 0x3000, 0x1000, 0x70),
        );
        put(
            &mut space,
            0x60,
            0x50,
            0x10,
            cap(CFG_TYPE_DEVICE, 4, 0x2000, 0x1000, 0x60),
        );
        put(
            &mut space,
            0x50,
            0x40,
            0x10,
            cap(CFG_TYPE_ISR, 4, 0x1000, 0x1000, 0x50),
        );
        put(
            &mut space,
            0x40,
            0x00,
            0x10,
            cap(CFG_TYPE_COMMON, 4, 0, 0x1000, 0x40),
        );
        space
    }

    #[test]
    fn modern_and_transitional_ids_give_the_virtio_device_type() {
        assert_eq!(virtio_device_type(0x1af4, 0x1041), Some(DEVICE_NET));
        assert_eq!(virtio_device_type(0x1af4, 0x1042), Some(DEVICE_BLOCK));
        assert_eq!(virtio_device_type(0x1af4, 0x1043), Some(DEVICE_CONSOLE));
        assert_eq!(virtio_device_type(0x1af4, 0x1044), Some(DEVICE_ENTROPY));
        assert_eq!(virtio_device_type(0x1af4, 0x107f), Some(0x3f));
        assert_eq!(virtio_device_type(0x1af4, 0x1000), Some(DEVICE_NET));
        assert_eq!(virtio_device_type(0x1af4, 0x1001), Some(DEVICE_BLOCK));
        assert_eq!(virtio_device_type(0x1af4, 0x1003), Some(DEVICE_CONSOLE));
        assert_eq!(virtio_device_type(0x1af4, 0x1005), Some(DEVICE_ENTROPY));
    }

    #[test]
    fn other_ids_are_not_virtio_devices() {
        assert_eq!(virtio_device_type(0x1af4, 0x1040), None);
        assert_eq!(virtio_device_type(0x1af4, 0x1006), None);
        assert_eq!(virtio_device_type(0x1af4, 0x1080), None);
        assert_eq!(virtio_device_type(0x1af4, 0x1100), None);
        assert_eq!(virtio_device_type(0x8086, 0x1041), None);
    }

    #[test]
    fn qemus_capabilities_are_listed_in_order() {
        let space = qemu_virtio_net();
        let found: Vec<_> = virtio_capabilities(&space, DEVICE).collect();
        assert_eq!(
            found,
            [
                Ok(cap(CFG_TYPE_PCI, 0, 0, 0, 0x84)),
                Ok(cap(CFG_TYPE_NOTIFY, 4, 0x3000, 0x1000, 0x70)),
                Ok(cap(CFG_TYPE_DEVICE, 4, 0x2000, 0x1000, 0x60)),
                Ok(cap(CFG_TYPE_ISR, 4, 0x1000, 0x1000, 0x50)),
                Ok(cap(CFG_TYPE_COMMON, 4, 0, 0x1000, 0x40)),
            ]
        );
        assert_eq!(
            common_config(&space, DEVICE),
            Some(cap(CFG_TYPE_COMMON, 4, 0, 0x1000, 0x40))
        );
    }

    #[test]
    fn malformed_capabilities_are_reported_and_skipped_by_common_config() {
        let mut space = qemu_virtio_net();
        // Two broken common capabilities ahead of the good one.
        put(
            &mut space,
            0x84,
            0x70,
            0x08,
            cap(CFG_TYPE_COMMON, 0, 0, 0x100, 0x84),
        );
        put(
            &mut space,
            0x70,
            0x60,
            0x10,
            cap(CFG_TYPE_COMMON, 6, 0, 0x100, 0x70),
        );
        put(
            &mut space,
            0x60,
            0x50,
            0x10,
            cap(CFG_TYPE_COMMON, 2, u32::MAX, 2, 0x60),
        );
        let found: Vec<_> = virtio_capabilities(&space, DEVICE).collect();
        assert_eq!(
            found[..3],
            [
                Err(VirtioCapabilityError::TooShort {
                    capability_offset: 0x84,
                    cap_len: 8
                }),
                Err(VirtioCapabilityError::ReservedBar {
                    capability_offset: 0x70,
                    bar: 6
                }),
                Err(VirtioCapabilityError::RegionOverflows {
                    capability_offset: 0x60,
                    offset: u32::MAX,
                    length: 2
                }),
            ]
        );
        assert_eq!(
            common_config(&space, DEVICE),
            Some(cap(CFG_TYPE_COMMON, 4, 0, 0x1000, 0x40))
        );
    }

    #[test]
    fn a_capability_at_the_end_of_the_header_space_is_out_of_bounds() {
        let mut space = qemu_virtio_net();
        space.set8(DEVICE, 0x41, 0xf8);
        space.set16(DEVICE, 0xf8, u16::from(ID_VENDOR));
        let last = virtio_capabilities(&space, DEVICE).last();
        assert_eq!(
            last,
            Some(Err(VirtioCapabilityError::OutOfBounds {
                capability_offset: 0xf8
            }))
        );
    }

    #[test]
    fn a_list_error_ends_the_walk_and_common_config_finds_nothing_after_it() {
        let mut space = qemu_virtio_net();
        space.set8(DEVICE, 0x99, 0x20);
        let found: Vec<_> = virtio_capabilities(&space, DEVICE).collect();
        assert!(matches!(
            found[..],
            [Err(VirtioCapabilityError::Capability(_))]
        ));
        assert_eq!(common_config(&space, DEVICE), None);
    }
}
