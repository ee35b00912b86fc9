//! Base Address Registers (PCI Local Bus 3.0 §6.2.5.1): sizing what a function decodes, and
//! placing it, since qboot leaves every BAR unassigned.
//!
//! A BAR's address bits below its size are hardwired to zero, so after all ones are written
//! it reads back the size as a mask. Bits 3:0 of a memory BAR and 1:0 of an I/O BAR describe
//! it and are read-only.

use core::ops::Range;

use super::command::with_decode_disabled;
use super::{Address, BAR0, ConfigSpace, Function, HeaderType};

/// BARs in a type 0 header; other headers have fewer.
pub const MAX_BARS: usize = 6;

/// Bit 0: the BAR is in I/O space.
const IO_SPACE_INDICATOR: u32 = 1 << 0;
const IO_FLAGS: u32 = 0b11;
/// I/O BAR bit 1 is reserved and reads zero.
const IO_RESERVED: u32 = 1 << 1;
/// x86 has 64 KiB of I/O ports and devices may hardwire the upper 16 bits of an I/O BAR to
/// zero, so, as in Linux (`IO_SPACE_LIMIT`), only the low 16 bits give the size.
const IO_DECODED: u32 = 0xffff;

const MEMORY_FLAGS: u32 = 0b1111;
/// Memory BAR bits 2:1: 00 a 32-bit BAR, 10 a 64-bit BAR taking the next slot as its upper
/// half; 01 (PCI 2.x's "below 1 MiB") and 11 are reserved.
const MEMORY_TYPE: u32 = 0b110;
const MEMORY_TYPE_32_BIT: u32 = 0b000;
const MEMORY_TYPE_64_BIT: u32 = 0b100;
const MEMORY_PREFETCHABLE: u32 = 1 << 3;

/// What one BAR decodes. An address (or port) of 0 means unassigned: qboot leaves every BAR
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Memory {
        address: u64,
        size: u64,
        prefetchable: bool,
        is_64bit: bool,
    },
    Io {
        port: u32,
        size: u32,
    },
}

impl Bar {
    pub fn is_assigned(&self) -> bool {
        match *self {
            Self::Memory { address, .. } => address != 0,
            Self::Io { port, .. } => port != 0,
        }
    }

    pub fn size(&self) -> u64 {
        match *self {
            Self::Memory { size, .. } => size,
            Self::Io { size, .. } => u64::from(size),
        }
    }
}

impl core::fmt::Display for Bar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Memory {
                address,
                size,
                prefetchable,
                is_64bit,
            } => {
                write!(f, "memory at {address:#x} ({size:#x} bytes")?;
                if is_64bit {
                    f.write_str(", 64-bit")?;
                }
                if prefetchable {
                    f.write_str(", prefetchable")?;
                }
                f.write_str(")")
            }
            Self::Io { port, size } => write!(f, "I/O ports at {port:#x} ({size:#x} ports)"),
        }
    }
}

/// Why a BAR could not be sized or placed. `index` is the BAR's slot, 0..6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarError {
    /// The BAR's type bits hold a reserved value.
    ReservedType { index: usize, raw: u32 },
    /// The BAR is not all zeros, yet none of its address bits can be written.
    Unsizable { index: usize, raw: u32 },
    /// The writable address bits are not one run, so they give no power-of-two size.
    MalformedSizeMask { index: usize, mask: u64 },
    /// A 64-bit BAR in the last slot, with no slot for its upper half.
    SixtyFourBitInLastSlot { index: usize },
    /// The header type has no BAR at this index.
    NoSuchBar { index: usize, count: usize },
    /// Only memory BARs are assigned here.
    NotMemory { index: usize },
    /// The address is not a multiple of the BAR's size.
    Misaligned {
        index: usize,
        address: u64,
        size: u64,
    },
    /// The range does not fit the BAR's address width.
    OutOfReach {
        index: usize,
        address: u64,
        size: u64,
    },
    /// The BAR read back something else after the address was written.
    AddressDidNotStick { index: usize, wrote: u64, read: u64 },
}

impl core::fmt::Display for BarError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ReservedType { index, raw } => write!(
                f,
                "BAR{index} reads {raw:#010x}, whose type bits are reserved: the function \
                 returned garbage or is gone"
            ),
            Self::Unsizable { index, raw } => write!(
                f,
                "BAR{index} reads {raw:#010x} but none of its address bits can be written, so \
                 it cannot be sized"
            ),
            Self::MalformedSizeMask { index, mask } => write!(
                f,
                "BAR{index} read back size mask {mask:#x} after all ones were written: its \
                 address bits are not one run, so it has no power-of-two size"
            ),
            Self::SixtyFourBitInLastSlot { index } => write!(
                f,
                "BAR{index} claims to be 64-bit but is the last BAR, with no slot for its upper \
                 half"
            ),
            Self::NoSuchBar { index, count } => write!(
                f,
                "BAR{index} does not exist: this header type has BARs 0..{count}"
            ),
            Self::NotMemory { index } => write!(
                f,
                "BAR{index} is an I/O BAR; only memory BARs can be assigned"
            ),
            Self::Misaligned {
                index,
                address,
                size,
            } => write!(
                f,
                "address {address:#x} for BAR{index} is not a multiple of its size {size:#x}; \
                 BARs need natural alignment (use BarAllocator)"
            ),
            Self::OutOfReach {
                index,
                address,
                size,
            } => write!(
                f,
                "BAR{index} cannot decode {size:#x} bytes at {address:#x}: a 32-bit BAR must lie \
                 below 4 GiB"
            ),
            Self::AddressDidNotStick { index, wrote, read } => write!(
                f,
                "BAR{index} reads {read:#x} after {wrote:#x} was written: the function cannot \
                 decode that address; choose a lower window"
            ),
        }
    }
}

/// BARs in a header of this type: six for a device, two for a PCI-to-PCI bridge, one for a
/// CardBus bridge, none for an unknown layout.
pub fn bar_count(header_type: HeaderType) -> usize {
    match header_type {
        HeaderType::Device => 6,
        HeaderType::PciBridge => 2,
        HeaderType::CardBus => 1,
        HeaderType::Unknown(_) => 0,
    }
}

fn bar_offset(index: usize) -> u16 {
    BAR0 + 4 * index as u16
}

/// One BAR register as read before sizing and after all ones were written.
#[derive(Clone, Copy)]
struct Sample {
    original: u32,
    readback: u32,
}

fn sample(config: &mut (impl ConfigSpace + ?Sized), address: Address, index: usize) -> Sample {
    let offset = bar_offset(index);
    let original = config.read32(address, offset);
    config.write32(address, offset, u32::MAX);
    let readback = config.read32(address, offset);
    config.write32(address, offset, original);
    Sample { original, readback }
}

/// Sizes the function's BARs, leaving them and COMMAND as they were.
///
/// Slot `i` is `None` when BAR `i` is not implemented (reads zero, and zero after all ones),
/// is the upper half of the 64-bit BAR in slot `i - 1`, or is beyond the header type's
/// [`bar_count`]. Decode is off while BARs hold all ones (except on host bridges, see
/// [`command`](super::command)), so the function claims no stray addresses meanwhile.
pub fn probe_bars(
    config: &mut (impl ConfigSpace + ?Sized),
    function: &Function,
) -> [Option<Result<Bar, BarError>>; MAX_BARS] {
    let count = bar_count(function.header_type);
    let address = function.address;
    let mut bars = [None; MAX_BARS];
    with_decode_disabled(config, function, |config| {
        let mut index = 0;
        while index < count {
            let low = sample(config, address, index);
            let mut slots = 1;
            let bar = if low.original == 0 && low.readback == 0 {
                Ok(None)
            } else if low.original & IO_SPACE_INDICATOR != 0 {
                decode_io(index, low)
            } else {
                match low.original & MEMORY_TYPE {
                    MEMORY_TYPE_32_BIT => decode_memory(index, low, None),
                    MEMORY_TYPE_64_BIT if index + 1 < count => {
                        slots = 2;
                        let high = sample(config, address, index + 1);
                        decode_memory(index, low, Some(high))
                    }
                    // The register after the last BAR is no upper half: in a bridge it holds
                    // the bus numbers, which all ones would wreck.
                    MEMORY_TYPE_64_BIT => Err(BarError::SixtyFourBitInLastSlot { index }),
                    _ => Err(BarError::ReservedType {
                        index,
                        raw: low.original,
                    }),
                }
            };
            bars[index] = bar.transpose();
            index += slots;
        }
    });
    bars
}

fn decode_io(index: usize, sample: Sample) -> Result<Option<Bar>, BarError> {
    if sample.original & IO_RESERVED != 0 {
        return Err(BarError::ReservedType {
            index,
            raw: sample.original,
        });
    }
    let mask = sample.readback & IO_DECODED & !IO_FLAGS;
    let size = size_from_mask(index, u64::from(mask), sample.original)?;
    Ok(Some(Bar::Io {
        port: sample.original & !IO_FLAGS,
        // The mask has 16 bits, so the size fits.
        size: size as u32,
    }))
}

fn decode_memory(index: usize, low: Sample, high: Option<Sample>) -> Result<Option<Bar>, BarError> {
    let (high_original, high_readback) = high.map_or((0, 0), |h| (h.original, h.readback));
    let mask = u64::from(high_readback) << 32 | u64::from(low.readback & !MEMORY_FLAGS);
    let size = size_from_mask(index, mask, low.original)?;
    Ok(Some(Bar::Memory {
        address: u64::from(high_original) << 32 | u64::from(low.original & !MEMORY_FLAGS),
        size,
        prefetchable: low.original & MEMORY_PREFETCHABLE != 0,
        is_64bit: high.is_some(),
    }))
}

/// The size a read-back address mask (type bits cleared) stands for: its lowest set bit.
///
/// The set bits must be one run from there up. Bits above the run that read zero are
/// hardwired, which only limits where the BAR can be placed; [`assign_memory_bar`] finds out
/// by reading the address back. Flag bits are cleared first, so sizes are at least 16
/// (memory) or 4 (I/O), the spec's minimums.
fn size_from_mask(index: usize, mask: u64, raw: u32) -> Result<u64, BarError> {
    if mask == 0 {
        return Err(BarError::Unsizable { index, raw });
    }
    let run = mask >> mask.trailing_zeros();
    if run & run.wrapping_add(1) != 0 {
        return Err(BarError::MalformedSizeMask { index, mask });
    }
    Ok(1 << mask.trailing_zeros())
}

/// Places memory BAR `index`, as sized by [`probe_bars`], at `address`, and checks that the
/// function took it.
///
/// Decode is off while the BAR changes (except on host bridges) and COMMAND is restored
/// afterwards, so decode stays off if it was; turn it on with [`command::enable`] once all
/// BARs are placed. Only works for functions on a root bus: nothing here programs bridge
/// windows.
///
/// [`command::enable`]: super::command::enable
pub fn assign_memory_bar(
    config: &mut (impl ConfigSpace + ?Sized),
    function: &Function,
    index: usize,
    bar: &Bar,
    address: u64,
) -> Result<(), BarError> {
    let count = bar_count(function.header_type);
    if index >= count {
        return Err(BarError::NoSuchBar { index, count });
    }
    let Bar::Memory { size, is_64bit, .. } = *bar else {
        return Err(BarError::NotMemory { index });
    };
    if is_64bit && index + 1 >= count {
        return Err(BarError::SixtyFourBitInLastSlot { index });
    }
    if !size.is_power_of_two() || address & (size - 1) != 0 {
        return Err(BarError::Misaligned {
            index,
            address,
            size,
        });
    }
    let limit = if is_64bit { u64::MAX } else { 1 << 32 };
    if address.checked_add(size).is_none_or(|end| end > limit) {
        return Err(BarError::OutOfReach {
            index,
            address,
            size,
        });
    }

    let target = function.address;
    let offset = bar_offset(index);
    let read = with_decode_disabled(config, function, |config| {
        // Type bits are read-only, so writing the bare address leaves them alone.
        config.write32(target, offset, address as u32);
        if is_64bit {
            config.write32(target, offset + 4, (address >> 32) as u32);
        }
        let low = u64::from(config.read32(target, offset) & !MEMORY_FLAGS);
        let high = if is_64bit {
            u64::from(config.read32(target, offset + 4))
        } else {
            0
        };
        high << 32 | low
    });
    if read == address {
        Ok(())
    } else {
        Err(BarError::AddressDidNotStick {
            index,
            wrote: address,
            read,
        })
    }
}

/// The 32-bit PCI hole's usual extent: above the 3 GiB that PCs keep for RAM at most, below
/// the IOAPIC (0xFEC0_0000), the local APIC, HPET and the firmware flash.
pub const PCI_HOLE_32BIT: Range<u64> = 0xc000_0000..0xfec0_0000;

/// The largest part of [`PCI_HOLE_32BIT`] that overlaps none of `reserved` (RAM and reserved
/// regions of the memory map, the ECAM window, ...), the lowest of equals; `None` if nothing
/// is left. Empty ranges in `reserved` are ignored.
///
/// On `pc` with more than 3 GiB of RAM, QEMU puts RAM up to 0xE000_0000 below 4 GiB, so the
/// hole shrinks; on `q35` the ECAM window sits at 0xB000_0000, just below it.
pub fn choose_window(reserved: &[Range<u64>]) -> Option<Range<u64>> {
    let hole = PCI_HOLE_32BIT;
    // A largest gap starts where the hole starts or where a reserved range ends.
    let candidates = core::iter::once(hole.start).chain(reserved.iter().map(|r| r.end));
    let mut best: Option<Range<u64>> = None;
    for start in candidates {
        if !hole.contains(&start) || reserved.iter().any(|r| r.contains(&start)) {
            continue;
        }
        let end = reserved
            .iter()
            .filter(|r| !r.is_empty() && r.start > start)
            .map(|r| r.start)
            .fold(hole.end, u64::min);
        let better = best.as_ref().is_none_or(|b| {
            let (length, best_length) = (end - start, b.end - b.start);
            length > best_length || (length == best_length && start < b.start)
        });
        if better {
            best = Some(start..end);
        }
    }
    best
}

/// Hands out naturally aligned ranges from a window, lowest first.
///
/// Natural alignment makes a bump allocator waste space when a small BAR precedes a large
/// one, so allocate the largest BARs first.
#[derive(Clone, Debug)]
pub struct BarAllocator {
    window: Range<u64>,
    next: u64,
}

impl BarAllocator {
    pub fn new(window: Range<u64>) -> Self {
        Self {
            next: window.start,
            window,
        }
    }

    pub fn window(&self) -> Range<u64> {
        self.window.clone()
    }

    /// The start of a free `size`-byte range aligned to `size`, or `None` if `size` is not a
    /// power of two or the window has no room left. Never 0, which reads as unassigned.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let start = self.next.max(1).checked_next_multiple_of(size)?;
        let end = start.checked_add(size)?;
        if end > self.window.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::command::{self, BUS_MASTER, IO_SPACE, MEMORY_SPACE};
    use crate::pci::fake_config_space::FakeConfigSpace;
    use crate::pci::{HEADER_TYPE, PRIMARY_BUS, SECONDARY_BUS};

    const DEVICE: Address = Address {
        bus: 0,
        device: 3,
        function: 0,
    };

    /// A QEMU virtio-net (transitional) as qboot leaves it: an I/O BAR, the MSI-X table's
    /// 32-bit BAR and a 64-bit prefetchable BAR for the modern registers, all at 0.
    fn virtio_net() -> (FakeConfigSpace, Function) {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        space.add_io_bar(DEVICE, 0, 0x20);
        space.add_memory32_bar(DEVICE, 1, 0x1000, false);
        space.add_memory64_bar(DEVICE, 4, 0x4000, true);
        let function = Function::read(&space, DEVICE).unwrap();
        (space, function)
    }

    fn memory(address: u64, size: u64, prefetchable: bool, is_64bit: bool) -> Bar {
        Bar::Memory {
            address,
            size,
            prefetchable,
            is_64bit,
        }
    }

    #[test]
    fn unassigned_bars_of_a_virtio_device_are_sized() {
        let (mut space, function) = virtio_net();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars,
            [
                Some(Ok(Bar::Io {
                    port: 0,
                    size: 0x20
                })),
                Some(Ok(memory(0, 0x1000, false, false))),
                None,
                None,
                Some(Ok(memory(0, 0x4000, true, true))),
                None,
            ]
        );
        assert!(
            bars.iter()
                .flatten()
                .flatten()
                .all(|bar| !bar.is_assigned())
        );
    }

    #[test]
    fn sizing_restores_the_bars_and_keeps_decode_off_meanwhile() {
        let (mut space, function) = virtio_net();
        space.set32(DEVICE, BAR0 + 4, 0xfebf_1000);
        space.set32(DEVICE, BAR0 + 16, 0x0000_000c);
        space.set32(DEVICE, BAR0 + 20, 0x0000_0001);
        command::enable(&mut space, DEVICE, IO_SPACE | MEMORY_SPACE | BUS_MASTER);
        let before: Vec<u32> = (0..6).map(|i| space.get32(DEVICE, bar_offset(i))).collect();

        let bars = probe_bars(&mut space, &function);

        assert_eq!(bars[1], Some(Ok(memory(0xfebf_1000, 0x1000, false, false))));
        assert_eq!(bars[4], Some(Ok(memory(0x1_0000_0000, 0x4000, true, true))));
        let after: Vec<u32> = (0..6).map(|i| space.get32(DEVICE, bar_offset(i))).collect();
        assert_eq!(before, after);
        assert_eq!(
            command::read(&space, DEVICE),
            IO_SPACE | MEMORY_SPACE | BUS_MASTER
        );
        assert!(space.writes_while_decoding.is_empty());
    }

    #[test]
    fn every_64_bit_size_is_sized_including_upper_half_only_masks() {
        for shift in 4..64 {
            let size = 1u64 << shift;
            let mut space = FakeConfigSpace::new(256);
            space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
            space.add_memory64_bar(DEVICE, 2, size, false);
            let function = Function::read(&space, DEVICE).unwrap();
            let bars = probe_bars(&mut space, &function);
            assert_eq!(
                bars[2],
                Some(Ok(memory(0, size, false, true))),
                "size {size:#x}"
            );
        }
    }

    #[test]
    fn an_io_bar_with_hardwired_upper_bits_is_sized_from_the_low_16() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x8086, 0x7010, 0x01, 0x01);
        space.set32(DEVICE, BAR0, 0x1);
        space.make_writable(DEVICE, BAR0, 0x0000_fff0);
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars[0],
            Some(Ok(Bar::Io {
                port: 0,
                size: 0x10
            }))
        );
    }

    #[test]
    fn a_64_bit_bar_in_the_last_slot_is_an_error_and_the_next_register_is_untouched() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set32(DEVICE, BAR0 + 20, 0x4);
        space.make_writable(DEVICE, BAR0 + 20, 0xffff_f000);
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars[5],
            Some(Err(BarError::SixtyFourBitInLastSlot { index: 5 }))
        );
        assert!(space.writes.iter().all(|&(_, offset, _)| offset != 0x28));
    }

    #[test]
    fn a_bridge_has_two_bars_and_its_bus_numbers_are_never_written() {
        let mut space = FakeConfigSpace::new(256);
        let bridge = Address {
            bus: 0,
            device: 0x1e,
            function: 0,
        };
        space.add_bridge(bridge, 1, 1);
        space.set32(bridge, BAR0 + 4, 0x4);
        space.make_writable(bridge, BAR0 + 4, 0xffff_f000);
        let function = Function::read(&space, bridge).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(bars[0], None);
        assert_eq!(
            bars[1],
            Some(Err(BarError::SixtyFourBitInLastSlot { index: 1 }))
        );
        assert_eq!(bars[2..], [None; 4]);
        assert!(
            space
                .writes
                .iter()
                .all(|&(_, offset, _)| offset < PRIMARY_BUS)
        );
        assert_eq!(space.get8(bridge, SECONDARY_BUS), 1);
    }

    #[test]
    fn a_function_reading_all_ones_gives_errors_not_bars() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        for index in 0..6 {
            space.set32(DEVICE, bar_offset(index), u32::MAX);
        }
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert!(
            bars.iter()
                .all(|bar| matches!(bar, Some(Err(BarError::ReservedType { .. }))))
        );
    }

    #[test]
    fn a_reserved_memory_type_is_an_error() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set32(DEVICE, BAR0, 0x2);
        space.make_writable(DEVICE, BAR0, 0xffff_f000);
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars[0],
            Some(Err(BarError::ReservedType { index: 0, raw: 0x2 }))
        );
    }

    #[test]
    fn a_size_mask_with_holes_is_an_error() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.make_writable(DEVICE, BAR0, 0xfff0_f000);
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars[0],
            Some(Err(BarError::MalformedSizeMask {
                index: 0,
                mask: 0xfff0_f000
            }))
        );
    }

    #[test]
    fn a_bar_with_flags_but_no_writable_bits_is_unsizable() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set32(DEVICE, BAR0, 0x8);
        let function = Function::read(&space, DEVICE).unwrap();
        let bars = probe_bars(&mut space, &function);
        assert_eq!(
            bars[0],
            Some(Err(BarError::Unsizable { index: 0, raw: 0x8 }))
        );
    }

    #[test]
    fn an_unknown_header_type_has_no_bars_and_nothing_is_written() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set8(DEVICE, HEADER_TYPE, 0x7f);
        let function = Function::read(&space, DEVICE).unwrap();
        assert_eq!(probe_bars(&mut space, &function), [None; 6]);
        assert!(space.writes.is_empty());
    }

    #[test]
    fn random_readbacks_never_give_an_inconsistent_size() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let (a, b) = (next(), next());
            let low = Sample {
                original: a as u32,
                readback: (a >> 32) as u32,
            };
            let high = Sample {
                original: b as u32,
                readback: (b >> 32) as u32,
            };
            for result in [
                decode_io(0, low),
                decode_memory(0, low, None),
                decode_memory(0, low, Some(high)),
            ] {
                if let Ok(Some(bar)) = result {
                    let size = bar.size();
                    assert!(size.is_power_of_two());
                    let minimum = if matches!(bar, Bar::Io { .. }) { 4 } else { 16 };
                    assert!(size >= minimum, "{bar}");
                }
            }
        }
    }

    #[test]
    fn assigning_writes_both_halves_with_decode_off_and_reads_them_back() {
        let (mut space, function) = virtio_net();
        command::enable(&mut space, DEVICE, MEMORY_SPACE);
        let bars = probe_bars(&mut space, &function);
        let table = bars[1].unwrap().unwrap();
        let modern = bars[4].unwrap().unwrap();

        assign_memory_bar(&mut space, &function, 1, &table, 0xe000_1000).unwrap();
        assign_memory_bar(&mut space, &function, 4, &modern, 0x8_0000_4000).unwrap();

        assert_eq!(space.get32(DEVICE, BAR0 + 4), 0xe000_1000);
        assert_eq!(space.get32(DEVICE, BAR0 + 16), 0x0000_400c);
        assert_eq!(space.get32(DEVICE, BAR0 + 20), 0x8);
        assert!(space.writes_while_decoding.is_empty());
        assert_eq!(command::read(&space, DEVICE), MEMORY_SPACE);
        let bars = probe_bars(&mut space, &function);
        assert_eq!(bars[1], Some(Ok(memory(0xe000_1000, 0x1000, false, false))));
        assert_eq!(bars[4], Some(Ok(memory(0x8_0000_4000, 0x4000, true, true))));
    }

    #[test]
    fn assignment_rejects_what_the_bar_cannot_decode() {
        let (mut space, function) = virtio_net();
        let io = Bar::Io {
            port: 0,
            size: 0x20,
        };
        let bar32 = memory(0, 0x1000, false, false);
        let bar64 = memory(0, 0x4000, true, true);
        let assign = |space: &mut FakeConfigSpace, index, bar: &Bar, address| {
            assign_memory_bar(space, &function, index, bar, address)
        };
        assert_eq!(
            assign(&mut space, 0, &io, 0xe000_0000),
            Err(BarError::NotMemory { index: 0 })
        );
        assert_eq!(
            assign(&mut space, 6, &bar32, 0xe000_0000),
            Err(BarError::NoSuchBar { index: 6, count: 6 })
        );
        assert_eq!(
            assign(&mut space, 1, &bar32, 0xe000_0800),
            Err(BarError::Misaligned {
                index: 1,
                address: 0xe000_0800,
                size: 0x1000
            })
        );
        assert_eq!(
            assign(&mut space, 1, &bar32, 0xffff_f000 + 0x1000),
            Err(BarError::OutOfReach {
                index: 1,
                address: 0x1_0000_0000,
                size: 0x1000
            })
        );
        assert_eq!(
            assign(&mut space, 5, &bar64, 0xe000_0000),
            Err(BarError::SixtyFourBitInLastSlot { index: 5 })
        );
        assert_eq!(
            assign(&mut space, 4, &bar64, u64::MAX - 0x3fff),
            Err(BarError::OutOfReach {
                index: 4,
                address: u64::MAX - 0x3fff,
                size: 0x4000
            })
        );
        assert!(space.writes.is_empty());
    }

    #[test]
    fn an_address_the_bar_cannot_hold_is_reported() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        // Decodes only below 1 MiB: the upper address bits are hardwired to zero.
        space.make_writable(DEVICE, BAR0, 0x000f_f000);
        let function = Function::read(&space, DEVICE).unwrap();
        let bar = probe_bars(&mut space, &function)[0].unwrap().unwrap();
        assert_eq!(bar, memory(0, 0x1000, false, false));
        assert_eq!(
            assign_memory_bar(&mut space, &function, 0, &bar, 0xe000_0000),
            Err(BarError::AddressDidNotStick {
                index: 0,
                wrote: 0xe000_0000,
                read: 0
            })
        );
    }

    #[test]
    fn the_allocator_aligns_naturally_and_stays_in_its_window() {
        let mut allocator = BarAllocator::new(0xe000_0800..0xe001_0000);
        assert_eq!(allocator.allocate(0x1000), Some(0xe000_1000));
        assert_eq!(allocator.allocate(0x10), Some(0xe000_2000));
        assert_eq!(allocator.allocate(0x4000), Some(0xe000_4000));
        assert_eq!(allocator.allocate(0x10000), None);
        assert_eq!(allocator.allocate(0x3000), None);
        assert_eq!(allocator.allocate(0), None);
        assert_eq!(allocator.allocate(0x8000), Some(0xe000_8000));
        assert_eq!(allocator.allocate(0x10), None);
    }

    #[test]
    fn the_allocator_never_hands_out_zero_or_overflows() {
        let mut allocator = BarAllocator::new(0..0x100);
        assert_eq!(allocator.allocate(0x10), Some(0x10));
        let mut allocator = BarAllocator::new(u64::MAX - 0xfff..u64::MAX);
        assert_eq!(allocator.allocate(0x1000), None);
        assert_eq!(allocator.allocate(1 << 63), None);
        assert_eq!(allocator.allocate(0x800), Some(u64::MAX - 0xfff));
    }

    #[test]
    fn the_window_is_the_whole_hole_when_nothing_is_reserved() {
        assert_eq!(choose_window(&[]), Some(PCI_HOLE_32BIT));
        // q35: RAM below 2 GiB and the ECAM window just below the hole.
        let q35 = [0..0x8000_0000, 0xb000_0000..0xc000_0000];
        assert_eq!(choose_window(&q35), Some(PCI_HOLE_32BIT));
    }

    #[test]
    fn ram_reaching_into_the_hole_pushes_the_window_up() {
        let pc_with_4_gib = [0..0xe000_0000, 0x1_0000_0000..0x1_2000_0000];
        assert_eq!(
            choose_window(&pc_with_4_gib),
            Some(0xe000_0000..0xfec0_0000)
        );
    }

    #[test]
    fn the_largest_gap_wins() {
        let reserved = [0xd000_0000..0xd100_0000, 0xfe00_0000..0xfe10_0000];
        assert_eq!(choose_window(&reserved), Some(0xd100_0000..0xfe00_0000));
        let off_centre = 0xdf00_0000..0xe1c0_0000;
        assert_eq!(
            choose_window(core::slice::from_ref(&off_centre)),
            Some(0xc000_0000..0xdf00_0000)
        );
    }

    #[test]
    fn of_equal_gaps_the_lowest_wins_whatever_the_order() {
        // Two gaps of 0x0f40_0000 bytes; the higher one is found first.
        let reserved = [0xef40_0000..0xef80_0000, 0xb000_0000..0xe000_0000];
        assert_eq!(choose_window(&reserved), Some(0xe000_0000..0xef40_0000));
    }

    #[test]
    fn empty_and_inverted_reserved_ranges_are_ignored() {
        #[allow(clippy::reversed_empty_ranges, reason = "the input under test")]
        let reserved = [0xd000_0000..0xd000_0000, 0xd000_0000..0xc800_0000];
        assert_eq!(choose_window(&reserved), Some(PCI_HOLE_32BIT));
    }

    #[test]
    fn a_fully_reserved_hole_leaves_no_window() {
        let everything = 0..u64::MAX;
        assert_eq!(choose_window(core::slice::from_ref(&everything)), None);
        let pieces = [0xb000_0000..0xe000_0000, 0xe000_0000..0xff00_0000];
        assert_eq!(choose_window(&pieces), None);
    }

    #[test]
    fn errors_explain_themselves_in_one_line() {
        let errors = [
            BarError::MalformedSizeMask {
                index: 2,
                mask: 0xfff0_f000,
            },
            BarError::AddressDidNotStick {
                index: 0,
                wrote: 0xe000_0000,
                read: 0,
            },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.starts_with("BAR"), "{message}");
            assert!(!message.contains('\n'));
        }
    }
}
