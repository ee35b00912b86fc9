//! MSI-X (PCI Local Bus 3.0 §6.8.2): the capability in configuration space that locates a
//! table of interrupt messages in one of the function's memory BARs, and that table.
//!
//! On x86 a message is a memory write to the local APIC's address range whose address and
//! data encode the destination CPU and vector (Intel SDM vol. 3, "Message Signalled
//! Interrupts" in the APIC chapter).

use core::ops::Range;

use super::capability::{Capability, CapabilityError, ID_MSIX, find_capability};
use super::{Address, Bar, ConfigSpace};

/// Offsets within the capability.
const MESSAGE_CONTROL: u16 = 0x02;
const TABLE_OFFSET_BIR: u16 = 0x04;
const PBA_OFFSET_BIR: u16 = 0x08;
/// Bytes of the capability, which must lie in the first 256 bytes of configuration space.
const CAPABILITY_LENGTH: u16 = 12;

/// Message Control bits 10:0: table entries minus one.
const CONTROL_TABLE_SIZE: u16 = 0x7ff;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const CONTROL_ENABLE: u16 = 1 << 15;
/// Table and PBA Offset/BIR bits 2:0: which BAR (BAR Indicator Register); the rest is the
/// offset into that BAR, 8-byte aligned.
const BIR_MASK: u32 = 0b111;

/// Bytes per table entry: address low, address high, data, vector control.
const ENTRY_BYTES: u32 = 16;
const ENTRY_ADDRESS_LOW: usize = 0;
const ENTRY_ADDRESS_HIGH: usize = 1;
const ENTRY_DATA: usize = 2;
const ENTRY_VECTOR_CONTROL: usize = 3;
/// Vector Control bit 0; bits 31:1 are reserved and must be preserved.
const VECTOR_MASKED: u32 = 1 << 0;

/// x86 MSI address: bits 31:20 0xFEE, destination APIC ID in bits 19:12; redirection hint
/// (bit 3) and destination mode (bit 2) zero select that one CPU by physical ID.
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;
const MSI_DESTINATION_SHIFT: u32 = 12;
/// Vectors 0..32 are CPU exceptions.
const FIRST_USABLE_VECTOR: u8 = 32;

/// A parsed MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    /// Where the capability starts in configuration space.
    pub offset: u8,
    /// Table entries, 1..=2048.
    pub table_size: u16,
    /// BAR holding the table, 0..=5.
    pub table_bar: u8,
    pub table_offset: u32,
    /// BAR holding the Pending Bit Array, 0..=5.
    pub pba_bar: u8,
    pub pba_offset: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixError {
    Capability(CapabilityError),
    /// The capability passed is not MSI-X.
    NotMsix {
        offset: u8,
        id: u8,
    },
    /// The capability runs past the first 256 bytes of configuration space.
    CapabilityOutOfBounds {
        offset: u8,
    },
    /// A BAR Indicator naming no BAR (6 and 7 are reserved).
    ReservedBir {
        structure: &'static str,
        bir: u8,
    },
    /// The BAR holding a structure is not a memory BAR or is unassigned.
    BarUnusable {
        structure: &'static str,
        bar: u8,
    },
    /// A structure extends past the end of its BAR.
    OutsideBar {
        structure: &'static str,
        offset: u32,
        length: u32,
        bar_size: u64,
    },
    /// A table index at or beyond the table's size.
    NoSuchEntry {
        index: u16,
        entries: u16,
    },
    /// A CPU exception vector.
    ReservedVector(u8),
}

impl From<CapabilityError> for MsixError {
    fn from(error: CapabilityError) -> Self {
        Self::Capability(error)
    }
}

impl core::fmt::Display for MsixError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Capability(error) => write!(f, "finding MSI-X: {error}"),
            Self::NotMsix { offset, id } => write!(
                f,
                "capability at config offset {offset:#04x} has ID {id:#04x}, not MSI-X \
                 ({ID_MSIX:#04x})"
            ),
            Self::CapabilityOutOfBounds { offset } => write!(
                f,
                "MSI-X capability at config offset {offset:#04x} runs past the 256-byte \
                 configuration header space"
            ),
            Self::ReservedBir { structure, bir } => write!(
                f,
                "MSI-X {structure} is in BAR indicator {bir}, which names no BAR (0..=5)"
            ),
            Self::BarUnusable { structure, bar } => write!(
                f,
                "MSI-X {structure} is in BAR{bar}, which is not an assigned memory BAR; assign \
                 the BARs first"
            ),
            Self::OutsideBar {
                structure,
                offset,
                length,
                bar_size,
            } => write!(
                f,
                "MSI-X {structure} at offset {offset:#x} ({length:#x} bytes) extends past the \
                 end of its {bar_size:#x}-byte BAR"
            ),
            Self::NoSuchEntry { index, entries } => write!(
                f,
                "MSI-X entry {index} does not exist: the table has entries 0..{entries}"
            ),
            Self::ReservedVector(vector) => write!(
                f,
                "vector {vector} is a CPU exception vector; use one in 32..=255"
            ),
        }
    }
}

impl MsixCapability {
    /// Parses the MSI-X capability found at `capability`.
    pub fn read(
        config: &(impl ConfigSpace + ?Sized),
        address: Address,
        capability: Capability,
    ) -> Result<Self, MsixError> {
        let Capability { id, offset } = capability;
        if id != ID_MSIX {
            return Err(MsixError::NotMsix { offset, id });
        }
        let base = u16::from(offset);
        if base + CAPABILITY_LENGTH > 256 {
            return Err(MsixError::CapabilityOutOfBounds { offset });
        }
        let control = config.read16(address, base + MESSAGE_CONTROL);
        let (table_bar, table_offset) =
            split_bir("table", config.read32(address, base + TABLE_OFFSET_BIR))?;
        let (pba_bar, pba_offset) =
            split_bir("PBA", config.read32(address, base + PBA_OFFSET_BIR))?;
        Ok(Self {
            offset,
            table_size: (control & CONTROL_TABLE_SIZE) + 1,
            table_bar,
            table_offset,
            pba_bar,
            pba_offset,
        })
    }

    /// The function's MSI-X capability, if it has one.
    pub fn find(
        config: &(impl ConfigSpace + ?Sized),
        address: Address,
    ) -> Result<Option<Self>, MsixError> {
        match find_capability(config, address, ID_MSIX)? {
            Some(capability) => Self::read(config, address, capability).map(Some),
            None => Ok(None),
        }
    }

    /// The table's physical address range, given the (assigned) BAR numbered
    /// [`table_bar`](Self::table_bar); checked to lie inside it, as the offset is the
    /// host's word.
    pub fn table_region(&self, bar: &Bar) -> Result<Range<u64>, MsixError> {
        let length = u32::from(self.table_size) * ENTRY_BYTES;
        region("table", self.table_bar, bar, self.table_offset, length)
    }

    /// The Pending Bit Array's physical address range: one bit per entry in 64-bit words.
    pub fn pba_region(&self, bar: &Bar) -> Result<Range<u64>, MsixError> {
        let length = u32::from(self.table_size).div_ceil(64) * 8;
        region("PBA", self.pba_bar, bar, self.pba_offset, length)
    }
}

fn split_bir(structure: &'static str, register: u32) -> Result<(u8, u32), MsixError> {
    let bir = (register & BIR_MASK) as u8;
    if bir > 5 {
        return Err(MsixError::ReservedBir { structure, bir });
    }
    Ok((bir, register & !BIR_MASK))
}

fn region(
    structure: &'static str,
    bar_index: u8,
    bar: &Bar,
    offset: u32,
    length: u32,
) -> Result<Range<u64>, MsixError> {
    let (address, size) = match *bar {
        Bar::Memory { address, size, .. } if address != 0 => (address, size),
        _ => {
            return Err(MsixError::BarUnusable {
                structure,
                bar: bar_index,
            });
        }
    };
    let end = u64::from(offset) + u64::from(length);
    let outside = MsixError::OutsideBar {
        structure,
        offset,
        length,
        bar_size: size,
    };
    if end > size {
        return Err(outside);
    }
    // A BAR that wraps past the top of the address space is garbage too.
    let region_end = address.checked_add(end).ok_or(outside)?;
    Ok(address + u64::from(offset)..region_end)
}

/// Sets or clears MSI-X Enable and Function Mask in Message Control.
///
/// While enabled, the function sends messages instead of asserting INTx. Function Mask holds
/// back every vector regardless of its own mask bit, so a driver may enable with the function
/// masked, program the table, then unmask.
pub fn set_enabled(
    config: &mut (impl ConfigSpace + ?Sized),
    address: Address,
    capability: &MsixCapability,
    enabled: bool,
    function_mask: bool,
) {
    let register = u16::from(capability.offset) + MESSAGE_CONTROL;
    let mut control = config.read16(address, register) & !(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
    if enabled {
        control |= CONTROL_ENABLE;
    }
    if function_mask {
        control |= CONTROL_FUNCTION_MASK;
    }
    config.write16(address, register, control);
}

/// The (address, data) of an x86 message delivering `vector` to the CPU whose local APIC ID
/// is `destination_apic_id`: physical destination, fixed delivery, edge triggered (data bits
/// 10:8 and 15 zero).
pub fn message(destination_apic_id: u8, vector: u8) -> Result<(u64, u32), MsixError> {
    if vector < FIRST_USABLE_VECTOR {
        return Err(MsixError::ReservedVector(vector));
    }
    let address = MSI_ADDRESS_BASE | u64::from(destination_apic_id) << MSI_DESTINATION_SHIFT;
    Ok((address, u32::from(vector)))
}

/// A mapped MSI-X table.
pub struct MsixTable {
    base: *mut u32,
    entries: u16,
}

impl MsixTable {
    /// # Safety
    /// `base` must point to a function's MSI-X table (see [`MsixCapability::table_region`]),
    /// mapped uncached over `entries * 16` bytes and 4-aligned, and stay mapped while the
    /// value lives; nothing else may write the table meanwhile.
    pub unsafe fn new(base: *mut u8, entries: u16) -> Self {
        Self {
            base: base.cast(),
            entries,
        }
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Points entry `index` at `address`/`data` (see [`message`]) and unmasks it.
    ///
    /// The entry is masked while it changes: a message sent with half-written address or
    /// data would go astray, and the spec leaves changing an unmasked entry undefined.
    pub fn program(&mut self, index: u16, address: u64, data: u32) -> Result<(), MsixError> {
        self.check(index)?;
        let control = self.read(index, ENTRY_VECTOR_CONTROL);
        self.write(index, ENTRY_VECTOR_CONTROL, control | VECTOR_MASKED);
        self.write(index, ENTRY_ADDRESS_LOW, address as u32);
        self.write(index, ENTRY_ADDRESS_HIGH, (address >> 32) as u32);
        self.write(index, ENTRY_DATA, data);
        self.write(index, ENTRY_VECTOR_CONTROL, control & !VECTOR_MASKED);
        Ok(())
    }

    /// Holds back entry `index`'s messages; the function records them in the PBA instead.
    pub fn mask(&mut self, index: u16) -> Result<(), MsixError> {
        self.check(index)?;
        let control = self.read(index, ENTRY_VECTOR_CONTROL);
        self.write(index, ENTRY_VECTOR_CONTROL, control | VECTOR_MASKED);
        Ok(())
    }

    pub fn unmask(&mut self, index: u16) -> Result<(), MsixError> {
        self.check(index)?;
        let control = self.read(index, ENTRY_VECTOR_CONTROL);
        self.write(index, ENTRY_VECTOR_CONTROL, control & !VECTOR_MASKED);
        Ok(())
    }

    fn check(&self, index: u16) -> Result<(), MsixError> {
        if index < self.entries {
            Ok(())
        } else {
            Err(MsixError::NoSuchEntry {
                index,
                entries: self.entries,
            })
        }
    }

    /// The dword `word` (0..4) of entry `index`, which must be checked.
    fn dword(&self, index: u16, word: usize) -> *mut u32 {
        self.base.wrapping_add(usize::from(index) * 4 + word)
    }

    fn read(&self, index: u16, word: usize) -> u32 {
        // SAFETY: `index` was checked against `entries`, so the dword is inside the mapped,
        // aligned table (constructor contract); reading the table has no side effects.
        unsafe { self.dword(index, word).read_volatile() }
    }

    fn write(&mut self, index: u16, word: usize, value: u32) {
        // SAFETY: as in `read`; the table belongs to this value, and writing it changes only
        // where the function's messages go.
        unsafe { self.dword(index, word).write_volatile(value) }
    }
}

// SAFETY: the value holds only the address of a mapping that outlives it (constructor
// contract); the table is device memory, the same from every CPU.
unsafe impl Send for MsixTable {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::capability::ID_VENDOR;
    use crate::pci::fake_config_space::FakeConfigSpace;
    use crate::pci::{CAPABILITIES_POINTER, STATUS, STATUS_CAPABILITIES_LIST};

    const DEVICE: Address = Address {
        bus: 0,
        device: 3,
        function: 0,
    };

    /// QEMU's virtio-net: MSI-X at 0x98 with 3 entries, table at BAR1 + 0, PBA at
    /// BAR1 + 0x800.
    fn virtio_net() -> FakeConfigSpace {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        space.set16(DEVICE, STATUS, STATUS_CAPABILITIES_LIST);
        space.set8(DEVICE, CAPABILITIES_POINTER, 0x98);
        space.set16(DEVICE, 0x98, u16::from(ID_MSIX) | 0x84 << 8);
        space.set16(DEVICE, 0x9a, 0x0002);
        space.make_writable(
            DEVICE,
            0x98,
            u32::from(CONTROL_ENABLE | CONTROL_FUNCTION_MASK) << 16,
        );
        space.set32(DEVICE, 0x9c, 0x0000_0001);
        space.set32(DEVICE, 0xa0, 0x0000_0801);
        space.set16(DEVICE, 0x84, u16::from(ID_VENDOR));
        space
    }

    fn capability() -> MsixCapability {
        MsixCapability {
            offset: 0x98,
            table_size: 3,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800,
        }
    }

    fn bar(address: u64, size: u64) -> Bar {
        Bar::Memory {
            address,
            size,
            prefetchable: false,
            is_64bit: false,
        }
    }

    #[test]
    fn the_capability_is_found_and_parsed() {
        let space = virtio_net();
        assert_eq!(MsixCapability::find(&space, DEVICE), Ok(Some(capability())));
    }

    #[test]
    fn a_function_without_msix_has_none() {
        let mut space = virtio_net();
        space.set16(DEVICE, STATUS, 0);
        assert_eq!(MsixCapability::find(&space, DEVICE), Ok(None));
    }

    #[test]
    fn reserved_bar_indicators_are_errors() {
        let mut space = virtio_net();
        space.set32(DEVICE, 0x9c, 0x0000_0006);
        assert_eq!(
            MsixCapability::find(&space, DEVICE),
            Err(MsixError::ReservedBir {
                structure: "table",
                bir: 6
            })
        );
        let mut space = virtio_net();
        space.set32(DEVICE, 0xa0, 0x0000_0807);
        assert_eq!(
            MsixCapability::find(&space, DEVICE),
            Err(MsixError::ReservedBir {
                structure: "PBA",
                bir: 7
            })
        );
    }

    #[test]
    fn a_capability_at_the_end_of_the_header_space_is_an_error() {
        let space = virtio_net();
        let at_end = Capability {
            id: ID_MSIX,
            offset: 0xf8,
        };
        assert_eq!(
            MsixCapability::read(&space, DEVICE, at_end),
            Err(MsixError::CapabilityOutOfBounds { offset: 0xf8 })
        );
        let not_msix = Capability {
            id: ID_VENDOR,
            offset: 0x84,
        };
        assert_eq!(
            MsixCapability::read(&space, DEVICE, not_msix),
            Err(MsixError::NotMsix {
                offset: 0x84,
                id: ID_VENDOR
            })
        );
    }

    #[test]
    fn the_largest_table_size_field_means_2048_entries() {
        let mut space = virtio_net();
        space.set16(DEVICE, 0x9a, 0x07ff);
        let parsed = MsixCapability::find(&space, DEVICE).unwrap().unwrap();
        assert_eq!(parsed.table_size, 2048);
    }

    #[test]
    fn enabling_sets_enable_and_function_mask_and_keeps_the_size() {
        let mut space = virtio_net();
        set_enabled(&mut space, DEVICE, &capability(), true, true);
        assert_eq!(space.read16(DEVICE, 0x9a), 0xc002);
        set_enabled(&mut space, DEVICE, &capability(), true, false);
        assert_eq!(space.read16(DEVICE, 0x9a), 0x8002);
        set_enabled(&mut space, DEVICE, &capability(), false, false);
        assert_eq!(space.read16(DEVICE, 0x9a), 0x0002);
        assert_eq!(space.read8(DEVICE, 0x98), ID_MSIX);
    }

    #[test]
    fn regions_lie_inside_their_bar() {
        let cap = capability();
        assert_eq!(
            cap.table_region(&bar(0xe000_1000, 0x1000)),
            Ok(0xe000_1000..0xe000_1030)
        );
        assert_eq!(
            cap.pba_region(&bar(0xe000_1000, 0x1000)),
            Ok(0xe000_1800..0xe000_1808)
        );
        assert_eq!(
            cap.pba_region(&bar(0xe000_1000, 0x800)),
            Err(MsixError::OutsideBar {
                structure: "PBA",
                offset: 0x800,
                length: 8,
                bar_size: 0x800
            })
        );
        assert_eq!(
            cap.table_region(&bar(0, 0x1000)),
            Err(MsixError::BarUnusable {
                structure: "table",
                bar: 1
            })
        );
        let io = Bar::Io {
            port: 0xc000,
            size: 0x40,
        };
        assert!(cap.table_region(&io).is_err());
        let huge_offset = MsixCapability {
            table_offset: 0xffff_fff8,
            table_size: 2048,
            ..cap
        };
        assert!(huge_offset.table_region(&bar(0xe000_0000, 0x1000)).is_err());
    }

    #[test]
    fn a_message_targets_one_apic_with_a_fixed_edge_vector() {
        assert_eq!(message(0, 0x30), Ok((0xfee0_0000, 0x30)));
        assert_eq!(message(3, 0xfe), Ok((0xfee0_3000, 0xfe)));
        assert_eq!(message(0xff, 0x20), Ok((0xfeef_f000, 0x20)));
        assert_eq!(message(0, 14), Err(MsixError::ReservedVector(14)));
    }

    #[test]
    fn programming_writes_address_and_data_and_unmasks_only_that_entry() {
        // Three entries with a reserved vector-control bit set; entries 0 and 1 masked.
        let mut memory = [0u32; 12];
        for entry in memory.chunks_mut(4) {
            entry[3] = 0x8000_0001;
        }
        memory[11] = 0x8000_0000;
        // SAFETY: `memory` is a live, exclusively borrowed, aligned buffer of three entries
        // and outlives `table`.
        let mut table = unsafe { MsixTable::new(memory.as_mut_ptr().cast(), 3) };
        let (address, data) = message(2, 0x41).unwrap();
        table
            .program(1, address | 0x1234_5678_0000_0000, data)
            .unwrap();
        assert_eq!(
            table.program(3, address, data),
            Err(MsixError::NoSuchEntry {
                index: 3,
                entries: 3
            })
        );
        table.mask(2).unwrap();
        assert!(table.unmask(3).is_err());
        assert_eq!(memory[4..8], [0xfee0_2000, 0x1234_5678, 0x41, 0x8000_0000]);
        assert_eq!(memory[0..4], [0, 0, 0, 0x8000_0001]);
        assert_eq!(memory[8..12], [0, 0, 0, 0x8000_0001]);
    }

    #[test]
    fn masking_keeps_reserved_vector_control_bits() {
        let mut memory = [0u32, 0, 0, 0x4000_0000];
        // SAFETY: as above, for one entry.
        let mut table = unsafe { MsixTable::new(memory.as_mut_ptr().cast(), 1) };
        table.mask(0).unwrap();
        assert_eq!(table.read(0, ENTRY_VECTOR_CONTROL), 0x4000_0001);
        table.unmask(0).unwrap();
        assert_eq!(table.read(0, ENTRY_VECTOR_CONTROL), 0x4000_0000);
    }
}
