//! The validated physical memory map.
//!
//! The map comes from the host (PVH `hvm_memmap_table_entry` or a Xen PV E820), so it is
//! checked once here and everything after boot relies on its invariants: at most
//! [`MAX_REGIONS`] regions, sorted by start, non-empty, non-overlapping, below 2^52, with at
//! least 1 MiB of usable RAM above 1 MiB.

use core::fmt;

use janus_hypercall::xen::hvm_start_info as hvm;

/// How many regions the map holds. QEMU and Xen give a handful; 128 is the same bound as
/// Linux's `E820_MAX_ENTRIES_ZEROPAGE`, the size of the table a boot loader can hand over.
pub const MAX_REGIONS: usize = 128;

/// The architectural limit of x86_64 physical addresses (MAXPHYADDR is at most 52), so no
/// region may end above it.
pub const PHYS_ADDR_LIMIT: u64 = 1 << 52;

const MIB: u64 = 1 << 20;

/// The type of a region, numbered as in E820 and `XEN_HVM_MEMMAP_TYPE_*` (ACPI address range
/// types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// RAM the kernel may use (type 1).
    Usable,
    /// Reserved by firmware or the hypervisor (type 2).
    Reserved,
    /// ACPI tables; reusable once they are parsed (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (type 4).
    AcpiNvs,
    /// Memory with detected errors (type 5).
    Unusable,
    /// Disabled (type 6).
    Disabled,
    /// Persistent memory (type 7).
    Persistent,
    /// A type number this kernel does not know; treated like `Reserved`.
    Unknown(u32),
}

impl RegionKind {
    /// Maps an E820 / `XEN_HVM_MEMMAP_TYPE_*` number to a kind.
    pub const fn from_type(type_number: u32) -> Self {
        match type_number {
            hvm::HVM_MEMMAP_TYPE_RAM => RegionKind::Usable,
            hvm::HVM_MEMMAP_TYPE_RESERVED => RegionKind::Reserved,
            hvm::HVM_MEMMAP_TYPE_ACPI => RegionKind::AcpiReclaimable,
            hvm::HVM_MEMMAP_TYPE_NVS => RegionKind::AcpiNvs,
            hvm::HVM_MEMMAP_TYPE_UNUSABLE => RegionKind::Unusable,
            hvm::HVM_MEMMAP_TYPE_DISABLED => RegionKind::Disabled,
            hvm::HVM_MEMMAP_TYPE_PMEM => RegionKind::Persistent,
            other => RegionKind::Unknown(other),
        }
    }

    /// The E820 / `XEN_HVM_MEMMAP_TYPE_*` number of this kind.
    pub const fn type_number(self) -> u32 {
        match self {
            RegionKind::Usable => hvm::HVM_MEMMAP_TYPE_RAM,
            RegionKind::Reserved => hvm::HVM_MEMMAP_TYPE_RESERVED,
            RegionKind::AcpiReclaimable => hvm::HVM_MEMMAP_TYPE_ACPI,
            RegionKind::AcpiNvs => hvm::HVM_MEMMAP_TYPE_NVS,
            RegionKind::Unusable => hvm::HVM_MEMMAP_TYPE_UNUSABLE,
            RegionKind::Disabled => hvm::HVM_MEMMAP_TYPE_DISABLED,
            RegionKind::Persistent => hvm::HVM_MEMMAP_TYPE_PMEM,
            RegionKind::Unknown(other) => other,
        }
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Usable => f.write_str("usable"),
            RegionKind::Reserved => f.write_str("reserved"),
            RegionKind::AcpiReclaimable => f.write_str("acpi-reclaimable"),
            RegionKind::AcpiNvs => f.write_str("acpi-nvs"),
            RegionKind::Unusable => f.write_str("unusable"),
            RegionKind::Disabled => f.write_str("disabled"),
            RegionKind::Persistent => f.write_str("persistent"),
            RegionKind::Unknown(other) => write!(f, "unknown-type-{other}"),
        }
    }
}

/// One region `[start, start + len)` of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl Region {
    /// The exclusive end. Regions inside a [`MemoryMap`] end at or below 2^52; for a region
    /// built by hand the sum saturates rather than wraps.
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }

    /// Whether `[start, end)` lies entirely inside this region.
    pub const fn contains_range(&self, start: u64, end: u64) -> bool {
        self.start <= start && start <= end && end <= self.end()
    }

    const EMPTY: Region = Region {
        start: 0,
        len: 0,
        kind: RegionKind::Reserved,
    };
}

/// `[0x100000..0x7fe0000) usable`
impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..{:#x}) {}", self.start, self.end(), self.kind)
    }
}

/// Why the host's memory map was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMapError {
    /// The map has no entries at all.
    Empty,
    /// More than [`MAX_REGIONS`] entries; `count` is how many there were.
    TooManyEntries { count: usize },
    /// Entry `index` (in the host's order) has size 0.
    ZeroLength { index: usize },
    /// Entry `index` ends past 2^64 or past the 2^52 physical address limit.
    Overflow { index: usize, start: u64, len: u64 },
    /// Two regions overlap (after sorting by start; `first` starts first).
    Overlap { first: Region, second: Region },
    /// Less than 1 MiB of usable RAM lies above 1 MiB.
    NoUsableRam { usable_above_1mib: u64 },
}

impl MemoryMapError {
    /// Short kebab-case tag for the `@janus abort kind=boot-info reason=<tag>` line.
    pub const fn reason(&self) -> &'static str {
        match self {
            MemoryMapError::Empty => "memory-map-empty",
            MemoryMapError::TooManyEntries { .. } => "memory-map-too-many-entries",
            MemoryMapError::ZeroLength { .. } => "memory-map-zero-length",
            MemoryMapError::Overflow { .. } => "memory-map-overflow",
            MemoryMapError::Overlap { .. } => "memory-map-overlap",
            MemoryMapError::NoUsableRam { .. } => "no-usable-ram",
        }
    }
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryMapError::Empty => f.write_str(
                "the host passed an empty memory map: the VMM must describe guest RAM \
                 (start info memmap_entries is 0)",
            ),
            MemoryMapError::TooManyEntries { count } => write!(
                f,
                "the memory map has {count} entries, more than the {MAX_REGIONS} this kernel \
                 accepts"
            ),
            MemoryMapError::ZeroLength { index } => {
                write!(
                    f,
                    "memory map entry {index} has size 0: the host's map is malformed"
                )
            }
            MemoryMapError::Overflow { index, start, len } => write!(
                f,
                "memory map entry {index} (start {start:#x}, size {len:#x}) ends beyond the \
                 2^52 physical address limit"
            ),
            MemoryMapError::Overlap { first, second } => write!(
                f,
                "memory map regions {first} and {second} overlap: the host's map is malformed"
            ),
            MemoryMapError::NoUsableRam { usable_above_1mib } => write!(
                f,
                "the memory map has {usable_above_1mib:#x} bytes of usable RAM above 1 MiB, \
                 the kernel needs at least 1 MiB there: give the guest more memory (e.g. -m 64)"
            ),
        }
    }
}

/// A validated physical memory map: sorted by start, non-overlapping, fixed capacity.
#[derive(Clone)]
pub struct MemoryMap {
    regions: [Region; MAX_REGIONS],
    len: usize,
}

impl MemoryMap {
    /// Validates the host's `(addr, size, type)` entries, in any order.
    ///
    /// The iterator must be finite: past [`MAX_REGIONS`] entries it is drained only to
    /// report how many there were. When the map has too many entries that error wins;
    /// otherwise the first bad entry in the host's order is reported.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (u64, u64, u32)>,
    ) -> Result<Self, MemoryMapError> {
        let mut map = MemoryMap {
            regions: [Region::EMPTY; MAX_REGIONS],
            len: 0,
        };
        let mut count = 0usize;
        let mut first_bad_entry = None;
        for (index, (start, len, type_number)) in entries.into_iter().enumerate() {
            count = count.saturating_add(1);
            if index >= MAX_REGIONS || first_bad_entry.is_some() {
                continue;
            }
            // An all-zero entry is an unused table slot, not a region: QEMU 7.2's microvm
            // firmware (qboot) reports one after its last real entry. Seen on every
            // `-M microvm` PVH boot here; a zero-length entry with an address or type is
            // still refused below.
            if (start, len, type_number) == (0, 0, 0) {
                continue;
            }
            if len == 0 {
                first_bad_entry = Some(MemoryMapError::ZeroLength { index });
                continue;
            }
            if start
                .checked_add(len)
                .is_none_or(|end| end > PHYS_ADDR_LIMIT)
            {
                first_bad_entry = Some(MemoryMapError::Overflow { index, start, len });
                continue;
            }
            map.regions[map.len] = Region {
                start,
                len,
                kind: RegionKind::from_type(type_number),
            };
            map.len += 1;
        }
        if count > MAX_REGIONS {
            return Err(MemoryMapError::TooManyEntries { count });
        }
        if let Some(error) = first_bad_entry {
            return Err(error);
        }
        if count == 0 {
            return Err(MemoryMapError::Empty);
        }

        // The secondary keys only make the order, and so the regions named by an overlap
        // error, independent of the host's order.
        map.regions[..map.len].sort_unstable_by_key(|r| (r.start, r.len, r.kind.type_number()));
        // Sorted by start, any overlap shows up between neighbours: if region i overlaps a
        // later j, it also overlaps i + 1, which starts between them.
        for pair in map.regions().windows(2) {
            if pair[0].end() > pair[1].start {
                return Err(MemoryMapError::Overlap {
                    first: pair[0],
                    second: pair[1],
                });
            }
        }

        let usable_above_1mib: u64 = map
            .usable()
            .map(|r| r.end().saturating_sub(r.start.max(MIB)))
            .sum();
        if usable_above_1mib < MIB {
            return Err(MemoryMapError::NoUsableRam { usable_above_1mib });
        }
        Ok(map)
    }

    /// All regions, sorted by start.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// The usable regions, sorted by start.
    pub fn usable(&self) -> impl Iterator<Item = Region> + '_ {
        self.regions()
            .iter()
            .copied()
            .filter(|r| r.kind == RegionKind::Usable)
    }

    /// Total bytes of usable RAM, including any below 1 MiB.
    pub fn usable_bytes(&self) -> u64 {
        self.usable().map(|r| r.len).sum()
    }

    /// The highest end of a usable region (exclusive): the top of RAM.
    pub fn usable_end(&self) -> u64 {
        self.usable().map(|r| r.end()).max().unwrap_or(0)
    }

    /// The region that contains all of `[start, end)`, if one does.
    pub fn region_containing(&self, start: u64, end: u64) -> Option<Region> {
        self.regions()
            .iter()
            .copied()
            .find(|r| r.contains_range(start, end))
    }
}

impl PartialEq for MemoryMap {
    fn eq(&self, other: &Self) -> bool {
        self.regions() == other.regions()
    }
}

impl Eq for MemoryMap {}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64 as Rng;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    const RAM: u32 = 1;
    const RESERVED: u32 = 2;

    /// QEMU microvm's map for `-m 128`.
    const QEMU_MICROVM: [(u64, u64, u32); 4] = [
        (0, 0x9_fc00, RAM),
        (0x9_fc00, 0x400, RESERVED),
        (0xf_0000, 0x1_0000, RESERVED),
        (0x10_0000, 0x7f0_0000, RAM),
    ];

    #[test]
    fn qemu_microvm_map_is_accepted() {
        let map = MemoryMap::from_entries(QEMU_MICROVM).unwrap();
        assert_eq!(map.regions().len(), 4);
        assert_eq!(map.usable_bytes(), 0x9_fc00 + 0x7f0_0000);
        assert_eq!(map.usable_end(), 0x800_0000);
        assert_eq!(map.usable().count(), 2);
        assert_eq!(map.regions()[3].to_string(), "[0x100000..0x8000000) usable");
    }

    #[test]
    fn unsorted_input_is_sorted() {
        let mut entries = QEMU_MICROVM;
        entries.reverse();
        let map = MemoryMap::from_entries(entries).unwrap();
        assert_eq!(map, MemoryMap::from_entries(QEMU_MICROVM).unwrap());
        assert!(map.regions().windows(2).all(|w| w[0].start < w[1].start));
    }

    #[test]
    fn adjacent_regions_are_fine_overlapping_ones_are_not() {
        let err =
            MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (0x80_0000, 0x1000, RESERVED)])
                .unwrap_err();
        assert_eq!(
            err,
            MemoryMapError::Overlap {
                first: Region {
                    start: 0x10_0000,
                    len: 0x100_0000,
                    kind: RegionKind::Usable
                },
                second: Region {
                    start: 0x80_0000,
                    len: 0x1000,
                    kind: RegionKind::Reserved
                },
            }
        );
        assert_eq!(err.reason(), "memory-map-overlap");
        assert_eq!(
            err.to_string(),
            "memory map regions [0x100000..0x1100000) usable and [0x800000..0x801000) \
             reserved overlap: the host's map is malformed"
        );
    }

    #[test]
    fn overlap_with_a_non_neighbour_is_caught() {
        let err = MemoryMap::from_entries([
            (0x10_0000, 0x1000_0000, RAM),
            (0x20_0000, 0x1000, RESERVED),
            (0x30_0000, 0x1000, RESERVED),
        ])
        .unwrap_err();
        assert!(matches!(err, MemoryMapError::Overlap { .. }));
    }

    #[test]
    fn identical_entries_overlap() {
        let err =
            MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (0x10_0000, 0x100_0000, RAM)])
                .unwrap_err();
        assert_eq!(err.reason(), "memory-map-overlap");
    }

    #[test]
    fn all_zero_unused_slots_are_skipped_wherever_they_are() {
        let map = MemoryMap::from_entries([
            (0, 0x9_fc00, RAM),
            (0, 0, 0),
            (0x10_0000, 0x100_0000, RAM),
            (0, 0, 0),
        ])
        .unwrap();
        assert_eq!(map.regions().len(), 2);
        assert_eq!(map.regions()[1].start, 0x10_0000);
        let err = MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (0, 0, RAM)]).unwrap_err();
        assert_eq!(err, MemoryMapError::ZeroLength { index: 1 });
    }

    #[test]
    fn zero_length_entry_is_named_by_index() {
        let err = MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (0x200_0000, 0, RAM)])
            .unwrap_err();
        assert_eq!(err, MemoryMapError::ZeroLength { index: 1 });
        assert_eq!(err.reason(), "memory-map-zero-length");
    }

    #[test]
    fn entries_ending_past_2_pow_64_or_2_pow_52_are_refused() {
        let err = MemoryMap::from_entries([(u64::MAX - 10, 0x1000, RAM)]).unwrap_err();
        assert_eq!(err.reason(), "memory-map-overflow");
        let err =
            MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (1 << 52, 1, RAM)]).unwrap_err();
        assert_eq!(
            err,
            MemoryMapError::Overflow {
                index: 1,
                start: 1 << 52,
                len: 1
            }
        );
        // Ending exactly at the limit is fine.
        MemoryMap::from_entries([(PHYS_ADDR_LIMIT - 0x20_0000, 0x20_0000, RAM)]).unwrap();
    }

    #[test]
    fn too_many_entries_reports_the_count() {
        let entries = (0..200u64).map(|i| (0x10_0000 + i * 0x10_0000, 0x10_0000, RAM));
        let err = MemoryMap::from_entries(entries).unwrap_err();
        assert_eq!(err, MemoryMapError::TooManyEntries { count: 200 });
        assert_eq!(err.reason(), "memory-map-too-many-entries");
        let exactly_max =
            (0..MAX_REGIONS as u64).map(|i| (0x10_0000 + i * 0x10_0000, 0x10_0000, RAM));
        assert_eq!(
            MemoryMap::from_entries(exactly_max)
                .unwrap()
                .regions()
                .len(),
            MAX_REGIONS
        );
    }

    #[test]
    fn empty_map_is_refused() {
        let err = MemoryMap::from_entries([]).unwrap_err();
        assert_eq!(err, MemoryMapError::Empty);
        assert_eq!(err.reason(), "memory-map-empty");
    }

    #[test]
    fn a_map_without_usable_ram_above_1mib_is_refused() {
        let err = MemoryMap::from_entries([(0, 0x9_fc00, RAM), (0x10_0000, 0x100_0000, RESERVED)])
            .unwrap_err();
        assert_eq!(
            err,
            MemoryMapError::NoUsableRam {
                usable_above_1mib: 0
            }
        );
        assert_eq!(err.reason(), "no-usable-ram");
        // A usable region straddling 1 MiB counts only above it.
        let err = MemoryMap::from_entries([(0x8_0000, 0x10_0000, RAM)]).unwrap_err();
        assert_eq!(
            err,
            MemoryMapError::NoUsableRam {
                usable_above_1mib: 0x8_0000
            }
        );
        MemoryMap::from_entries([(0x8_0000, 0x18_0000, RAM)]).unwrap();
    }

    #[test]
    fn unknown_types_are_kept_and_not_usable() {
        let map = MemoryMap::from_entries([(0x10_0000, 0x100_0000, RAM), (0x200_0000, 0x1000, 99)])
            .unwrap();
        assert_eq!(map.regions()[1].kind, RegionKind::Unknown(99));
        assert_eq!(
            map.regions()[1].to_string(),
            "[0x2000000..0x2001000) unknown-type-99"
        );
        assert_eq!(map.usable_end(), 0x110_0000);
    }

    #[test]
    fn region_kinds_round_trip_their_type_numbers() {
        for n in 0..10 {
            assert_eq!(RegionKind::from_type(n).type_number(), n);
        }
    }

    #[test]
    fn region_containing_requires_a_single_region() {
        let map = MemoryMap::from_entries(QEMU_MICROVM).unwrap();
        assert_eq!(
            map.region_containing(0x20_0000, 0x30_0000).map(|r| r.kind),
            Some(RegionKind::Usable)
        );
        // Spans the reserved/usable boundary at 1 MiB.
        assert_eq!(map.region_containing(0xf_f000, 0x10_1000), None);
        assert_eq!(map.region_containing(0x800_0000, 0x800_1000), None);
    }

    #[test]
    fn every_error_has_a_kebab_case_reason_and_a_message() {
        let region = Region {
            start: 0,
            len: 1,
            kind: RegionKind::Usable,
        };
        let errors = [
            MemoryMapError::Empty,
            MemoryMapError::TooManyEntries { count: 129 },
            MemoryMapError::ZeroLength { index: 0 },
            MemoryMapError::Overflow {
                index: 0,
                start: 0,
                len: 0,
            },
            MemoryMapError::Overlap {
                first: region,
                second: region,
            },
            MemoryMapError::NoUsableRam {
                usable_above_1mib: 0,
            },
        ];
        for e in errors {
            assert!(
                e.reason()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-')
            );
            assert!(!e.to_string().is_empty());
        }
    }

    /// Values clustered where the edge cases live.
    fn interesting(rng: &mut Rng) -> u64 {
        match rng.below(6) {
            0 => rng.below(0x1000),
            1 => rng.below(0x1_0000_0000) & !0xfff,
            2 => PHYS_ADDR_LIMIT - rng.below(0x1000_0000),
            3 => u64::MAX - rng.below(0x1000),
            4 => rng.next_u64(),
            _ => 0x10_0000 * rng.below(64),
        }
    }

    /// Entries with no structure at all: mostly rejected.
    fn random_entries(rng: &mut Rng, n: usize) -> Vec<(u64, u64, u32)> {
        (0..n)
            .map(|_| (interesting(rng), interesting(rng), rng.below(9) as u32))
            .collect()
    }

    /// A well-formed map walked upwards with gaps, then perhaps damaged, then shuffled.
    fn plausible_entries(rng: &mut Rng, n: usize) -> Vec<(u64, u64, u32)> {
        let mut cursor = rng.below(0x10_0000);
        let mut entries = Vec::new();
        for _ in 0..n {
            cursor += rng.below(3) * rng.below(0x100_0000);
            let len = 1 + rng.below(0x400_0000);
            let kind = if rng.below(2) == 0 {
                RAM
            } else {
                rng.below(9) as u32
            };
            entries.push((cursor, len, kind));
            cursor += len;
        }
        for _ in 0..rng.below(3) {
            if entries.is_empty() {
                break;
            }
            let i = rng.below(entries.len() as u64) as usize;
            match rng.below(4) {
                0 => entries[i].1 = 0,
                1 => entries[i].0 = interesting(rng),
                2 => entries[i].1 = interesting(rng),
                _ => entries.push(entries[i]),
            }
        }
        for i in (1..entries.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            entries.swap(i, j);
        }
        entries
    }

    #[test]
    fn random_maps_never_panic_and_accepted_maps_hold_their_invariants() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let n = if rng.below(4) == 0 {
                rng.below(MAX_REGIONS as u64 + 8) as usize
            } else {
                rng.below(8) as usize
            };
            let entries = if rng.below(2) == 0 {
                random_entries(&mut rng, n)
            } else {
                plausible_entries(&mut rng, n)
            };
            let Ok(map) = MemoryMap::from_entries(entries.iter().copied()) else {
                continue;
            };
            accepted += 1;
            let regions = map.regions();
            assert_eq!(regions.len(), entries.len());
            assert!(regions.len() <= MAX_REGIONS);
            for r in regions {
                assert!(r.len > 0);
                assert!(
                    r.start
                        .checked_add(r.len)
                        .is_some_and(|e| e <= PHYS_ADDR_LIMIT)
                );
            }
            for w in regions.windows(2) {
                assert!(w[0].end() <= w[1].start, "{} then {}", w[0], w[1]);
            }
            let above: u64 = map
                .usable()
                .map(|r| r.end().saturating_sub(r.start.max(MIB)))
                .sum();
            assert!(above >= MIB);
            assert!(map.usable_end() >= 2 * MIB);
        }
        assert!(
            accepted > 100,
            "only {accepted} maps accepted: generator too harsh"
        );
    }
}
