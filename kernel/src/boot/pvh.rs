//! The PVH boot protocol: parsing and validating the `hvm_start_info` whose physical address
//! the VMM hands over in `ebx` (Xen `xen/include/public/arch-x86/hvm/start_info.h`).
//!
//! Everything in it comes from the host and is untrusted. Physical memory is reached only
//! through [`PhysRead`], so the kernel decides which addresses are readable at this point
//! of boot and host tests substitute a fake memory. Every structure is copied out and
//! decoded from bytes; nothing is dereferenced in place.

use core::fmt;
use core::ops::Range;

use janus_hypercall::xen::hvm_start_info::{
    HVM_START_MAGIC_VALUE, HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo,
};

use crate::boot::cmdline::{self, CmdlineError, MAX_CMDLINE_LEN};
use crate::mm::memory_map::{MAX_REGIONS, MemoryMap, MemoryMapError, PHYS_ADDR_LIMIT, RegionKind};
use crate::platform::acpi::{self, AcpiError};

/// Most modules accepted. Janus uses none today; a few leave room for an initrd or test data.
pub const MAX_MODULES: usize = 16;

/// Reads guest-physical memory during boot.
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`, or refuses with
    /// [`BootInfoError::Unreadable`] if any part of the range is not readable now. The
    /// `what` an implementation puts there is replaced by [`parse`] with the name of the
    /// structure it was reading.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), BootInfoError>;
}

/// A module (e.g. an initrd) that the VMM loaded into guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub len: u64,
}

impl Module {
    /// The exclusive end; never overflows for a module accepted by [`parse`].
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }

    const EMPTY: Module = Module { start: 0, len: 0 };
}

/// What the host told the kernel, validated.
#[derive(Clone)]
pub struct BootInfo {
    pub memory_map: MemoryMap,
    cmdline: [u8; MAX_CMDLINE_LEN],
    cmdline_len: usize,
    /// Physical address of the ACPI RSDP, checksums verified.
    pub rsdp: Option<u64>,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    /// Where the start info itself lies (the `ebx` of the PVH entry).
    pub start_info_paddr: u64,
    /// The start info `flags` (`SIF_*` in `xen/include/public/xen.h`; e.g. `SIF_INITDOMAIN`
    /// says this is Xen's dom0).
    pub flags: u32,
    /// What the host's boot data occupies (empty ranges for what is absent).
    host_data: [Range<u64>; HOST_DATA_RANGES],
}

/// The start info, memory map, command line, module list and RSDP.
const HOST_DATA_RANGES: usize = 5;

impl BootInfo {
    /// The command line: printable ASCII, spaces and tabs, at most [`MAX_CMDLINE_LEN`] bytes.
    pub fn cmdline(&self) -> &str {
        // Validated as ASCII when it was copied in.
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The modules, in the host's order.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// Every physical range the boot information occupies, which the frame allocator must
    /// not hand out: the start info, the memory map table, the command line (with its NUL),
    /// the module list, the RSDP, and each module. Ranges are non-empty and do not wrap;
    /// they may overlap each other.
    pub fn reserved_ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.host_data
            .iter()
            .filter(|r| !r.is_empty())
            .cloned()
            .chain(self.modules().iter().map(|m| m.start..m.end()))
    }

    /// Boot information from another entry than PVH (the Xen PV one): its memory map, its
    /// command line (already checked by [`cmdline::from_nul_terminated`]), its `SIF_*`
    /// flags and up to five ranges its boot data occupies.
    pub fn from_parts(
        memory_map: MemoryMap,
        cmdline_text: &str,
        flags: u32,
        host_data: &[Range<u64>],
    ) -> Self {
        let mut cmdline = [0u8; MAX_CMDLINE_LEN];
        let cmdline_len = cmdline_text.len().min(MAX_CMDLINE_LEN);
        cmdline[..cmdline_len].copy_from_slice(&cmdline_text.as_bytes()[..cmdline_len]);
        let mut ranges: [Range<u64>; HOST_DATA_RANGES] = core::array::from_fn(|_| 0..0);
        for (slot, range) in ranges.iter_mut().zip(host_data) {
            *slot = range.clone();
        }
        assert!(
            host_data.len() <= HOST_DATA_RANGES,
            "too many boot data ranges"
        );
        Self {
            memory_map,
            cmdline,
            cmdline_len,
            rsdp: None,
            modules: [Module::EMPTY; MAX_MODULES],
            module_count: 0,
            start_info_paddr: host_data.first().map_or(0, |r| r.start),
            flags,
            host_data: ranges,
        }
    }
}

impl fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("memory_map", &self.memory_map)
            .field("cmdline", &self.cmdline())
            .field("rsdp", &self.rsdp)
            .field("modules", &self.modules())
            .field("start_info_paddr", &self.start_info_paddr)
            .field("flags", &self.flags)
            .finish()
    }
}

/// Why the boot information was refused. The kernel stops with the message and
/// `@janus abort kind=boot-info reason=<reason()>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// `len` bytes of the `what` at `paddr` could not be read (address 0, wrapping, or not
    /// readable at this point of boot).
    Unreadable {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
    /// The start info does not begin with `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic { found: u32 },
    /// Start info version 0, which predates the memory map.
    NoMemoryMap,
    /// The memory map was refused.
    MemoryMap(MemoryMapError),
    /// The command line was refused.
    Cmdline(CmdlineError),
    /// More than [`MAX_MODULES`] modules.
    TooManyModules { count: u32 },
    /// Module `index` is malformed or lies outside known memory.
    BadModule {
        index: usize,
        start: u64,
        len: u64,
        why: &'static str,
    },
    /// The RSDP fails a structural check (ACPI 6.5, 5.2.5.3).
    BadRsdp { paddr: u64, why: &'static str },
}

impl BootInfoError {
    /// Short kebab-case tag for the `@janus abort kind=boot-info reason=<tag>` line.
    pub const fn reason(&self) -> &'static str {
        match self {
            BootInfoError::Unreadable { .. } => "unreadable",
            BootInfoError::BadMagic { .. } => "bad-magic",
            BootInfoError::NoMemoryMap => "no-memory-map",
            BootInfoError::MemoryMap(e) => e.reason(),
            BootInfoError::Cmdline(e) => e.reason(),
            BootInfoError::TooManyModules { .. } => "too-many-modules",
            BootInfoError::BadModule { .. } => "bad-module",
            BootInfoError::BadRsdp { .. } => "bad-rsdp",
        }
    }
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::Unreadable { what, paddr, len } => write!(
                f,
                "cannot read {len} bytes of the {what} at physical address {paddr:#x}: the \
                 address is 0, wraps, or lies outside the memory readable at boot"
            ),
            BootInfoError::BadMagic { found } => write!(
                f,
                "start info magic is {found:#010x}, expected {HVM_START_MAGIC_VALUE:#010x}: \
                 the kernel was not entered through PVH with ebx pointing at hvm_start_info"
            ),
            BootInfoError::NoMemoryMap => f.write_str(
                "start info version 0 carries no memory map, and the hypervisor gave none: \
                 boot with a VMM that passes start info version 1 or later",
            ),
            BootInfoError::MemoryMap(e) => e.fmt(f),
            BootInfoError::Cmdline(e) => e.fmt(f),
            BootInfoError::TooManyModules { count } => write!(
                f,
                "the start info lists {count} modules, more than the {MAX_MODULES} this \
                 kernel accepts"
            ),
            BootInfoError::BadModule {
                index,
                start,
                len,
                why,
            } => write!(f, "module {index} (start {start:#x}, size {len:#x}) {why}"),
            BootInfoError::BadRsdp { paddr, why } => {
                write!(f, "the ACPI RSDP at {paddr:#x} is invalid: {why}")
            }
        }
    }
}

impl From<MemoryMapError> for BootInfoError {
    fn from(e: MemoryMapError) -> Self {
        BootInfoError::MemoryMap(e)
    }
}

impl From<CmdlineError> for BootInfoError {
    fn from(e: CmdlineError) -> Self {
        BootInfoError::Cmdline(e)
    }
}

/// Reads `buf.len()` bytes of `what` at `paddr`, refusing address 0 (the header: "nothing
/// will be loaded at physical address 0") and ranges that wrap or pass 2^52 before the
/// reader sees them.
fn read(
    mem: &impl PhysRead,
    what: &'static str,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), BootInfoError> {
    let len = buf.len() as u64;
    let unreadable = BootInfoError::Unreadable { what, paddr, len };
    if paddr == 0
        || paddr
            .checked_add(len)
            .is_none_or(|end| end > PHYS_ADDR_LIMIT)
    {
        return Err(unreadable);
    }
    mem.read(paddr, buf).map_err(|e| match e {
        BootInfoError::Unreadable { .. } => unreadable,
        other => other,
    })
}

/// Parses and validates the start info at `start_info_paddr`.
///
/// Checks, in order: magic, version, memory map (at most [`MAX_REGIONS`] entries, then
/// [`MemoryMap::from_entries`]), command line, modules, RSDP.
///
/// A version 0 start info has no memory map; `fallback_map` supplies one from elsewhere
/// (Xen 4.17 boots a PVH dom0 with version 0, and `XENMEM_memory_map` gives the map), or
/// the boot fails with [`BootInfoError::NoMemoryMap`].
pub fn parse(
    mem: &impl PhysRead,
    start_info_paddr: u64,
    fallback_map: Option<MemoryMap>,
) -> Result<BootInfo, BootInfoError> {
    // The version 0 prefix first: a version 0 producer wrote nothing past it, and that
    // memory may not be readable.
    let mut raw = [0u8; HvmStartInfo::SIZE];
    read(
        mem,
        "start info",
        start_info_paddr,
        &mut raw[..HvmStartInfo::V0_SIZE],
    )?;
    let header = HvmStartInfo::from_bytes_v0(&raw).unwrap_or_default();
    if header.magic != HVM_START_MAGIC_VALUE {
        return Err(BootInfoError::BadMagic {
            found: header.magic,
        });
    }
    let (info, start_info_len, memory_map, memmap) = if header.version == 0 {
        let map = fallback_map.ok_or(BootInfoError::NoMemoryMap)?;
        (header, HvmStartInfo::V0_SIZE, map, 0..0)
    } else {
        read(mem, "start info", start_info_paddr, &mut raw)?;
        let info = HvmStartInfo::from_bytes(&raw).unwrap_or_default();
        let (map, memmap) = read_memory_map(mem, &info)?;
        (info, HvmStartInfo::SIZE, map, memmap)
    };

    let mut cmdline = [0u8; MAX_CMDLINE_LEN];
    let mut cmdline_len = 0;
    let mut cmdline_range = None;
    if info.cmdline_paddr != 0 {
        let mut window = [0u8; MAX_CMDLINE_LEN + 1];
        let filled = read_until_nul(mem, info.cmdline_paddr, &mut window)?;
        let text = cmdline::from_nul_terminated(&window[..filled])?;
        cmdline_len = text.len();
        cmdline[..cmdline_len].copy_from_slice(text.as_bytes());
        // `read_until_nul` read these bytes, so the range does not wrap.
        cmdline_range = Some(info.cmdline_paddr..info.cmdline_paddr + cmdline_len as u64 + 1);
    }

    let mut modules = [Module::EMPTY; MAX_MODULES];
    let module_count = info.nr_modules as usize;
    let mut modlist = None;
    if module_count > MAX_MODULES {
        return Err(BootInfoError::TooManyModules {
            count: info.nr_modules,
        });
    }
    if module_count > 0 {
        let mut raw = [0u8; MAX_MODULES * HvmModlistEntry::SIZE];
        let raw = &mut raw[..module_count * HvmModlistEntry::SIZE];
        read(mem, "module list", info.modlist_paddr, raw)?;
        modlist = Some(info.modlist_paddr..info.modlist_paddr + raw.len() as u64);
        let entries = raw
            .chunks_exact(HvmModlistEntry::SIZE)
            .filter_map(HvmModlistEntry::from_bytes);
        for (index, (entry, slot)) in entries.zip(modules.iter_mut()).enumerate() {
            *slot = check_module(&memory_map, index, entry)?;
        }
    }

    let mut rsdp = None;
    let mut rsdp_range = None;
    if info.rsdp_paddr != 0 {
        let len = check_rsdp(mem, info.rsdp_paddr)?;
        rsdp = Some(info.rsdp_paddr);
        rsdp_range = Some(info.rsdp_paddr..info.rsdp_paddr + len);
    }

    Ok(BootInfo {
        memory_map,
        cmdline,
        cmdline_len,
        rsdp,
        modules,
        module_count,
        start_info_paddr,
        flags: info.flags,
        host_data: [
            start_info_paddr..start_info_paddr + start_info_len as u64,
            memmap,
            cmdline_range.unwrap_or(0..0),
            modlist.unwrap_or(0..0),
            rsdp_range.unwrap_or(0..0),
        ],
    })
}

fn read_memory_map(
    mem: &impl PhysRead,
    info: &HvmStartInfo,
) -> Result<(MemoryMap, Range<u64>), BootInfoError> {
    let count = info.memmap_entries as usize;
    if count > MAX_REGIONS {
        return Err(MemoryMapError::TooManyEntries { count }.into());
    }
    let mut raw = [0u8; MAX_REGIONS * HvmMemmapTableEntry::SIZE];
    let raw = &mut raw[..count * HvmMemmapTableEntry::SIZE];
    if count > 0 {
        read(mem, "memory map", info.memmap_paddr, raw)?;
    }
    let entries = raw
        .chunks_exact(HvmMemmapTableEntry::SIZE)
        .filter_map(HvmMemmapTableEntry::from_bytes)
        .map(|e| (e.addr, e.size, e.r#type));
    let map = MemoryMap::from_entries(entries)?;
    // A map was read, so count > 0 and this range was readable, hence does not wrap.
    Ok((map, info.memmap_paddr..info.memmap_paddr + raw.len() as u64))
}

/// Granularity of the command line reads. Reads stop at multiples of it, so a string that
/// ends shortly before an unreadable page is not refused for the bytes past its NUL.
const CMDLINE_CHUNK: u64 = 64;

/// Fills `window` from `paddr` in aligned chunks until a chunk holds a NUL or the window is
/// full; returns how many bytes were read.
fn read_until_nul(
    mem: &impl PhysRead,
    paddr: u64,
    window: &mut [u8],
) -> Result<usize, BootInfoError> {
    let mut filled = 0;
    while filled < window.len() {
        let Some(addr) = paddr.checked_add(filled as u64) else {
            break;
        };
        let to_boundary = (CMDLINE_CHUNK - addr % CMDLINE_CHUNK) as usize;
        let n = to_boundary.min(window.len() - filled);
        let chunk = &mut window[filled..filled + n];
        read(mem, "command line", addr, chunk)?;
        filled += n;
        if chunk.contains(&0) {
            break;
        }
    }
    Ok(filled)
}

fn check_module(
    map: &MemoryMap,
    index: usize,
    entry: HvmModlistEntry,
) -> Result<Module, BootInfoError> {
    let bad = |why| BootInfoError::BadModule {
        index,
        start: entry.paddr,
        len: entry.size,
        why,
    };
    if entry.size == 0 {
        return Err(bad("has size 0"));
    }
    let end = entry
        .paddr
        .checked_add(entry.size)
        .ok_or(bad("ends past the top of the address space"))?;
    match map.region_containing(entry.paddr, end) {
        Some(r) if matches!(r.kind, RegionKind::Usable | RegionKind::Reserved) => Ok(Module {
            start: entry.paddr,
            len: entry.size,
        }),
        _ => Err(bad(
            "does not lie inside one usable or reserved region of the memory map",
        )),
    }
}

/// Validates the RSDP at `paddr` (the rules of [`acpi::read_rsdp`]) and returns its length.
fn check_rsdp(mem: &impl PhysRead, paddr: u64) -> Result<u64, BootInfoError> {
    acpi::read_rsdp(mem, paddr)
        .map(|rsdp| rsdp.len)
        .map_err(|e| match e {
            AcpiError::BadRsdp { why, .. } => BootInfoError::BadRsdp { paddr, why },
            AcpiError::Unreadable { paddr, len, .. } => BootInfoError::Unreadable {
                what: "RSDP",
                paddr,
                len,
            },
            _ => BootInfoError::BadRsdp {
                paddr,
                why: "it cannot be read",
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
    }
    use crate::rng::XorShift64 as Rng;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;
    use janus_hypercall::xen::hvm_start_info::{HVM_MEMMAP_TYPE_RAM, HVM_MEMMAP_TYPE_RESERVED};

    const PAGE: u64 = 4096;

    /// Sparse guest memory: only pages that were written are readable.
    #[derive(Clone, Default)]
    struct FakeMem {
        pages: BTreeMap<u64, [u8; PAGE as usize]>,
    }

    impl FakeMem {
        fn write(&mut self, paddr: u64, bytes: &[u8]) {
            for (i, &b) in bytes.iter().enumerate() {
                let addr = paddr + i as u64;
                let page = self.pages.entry(addr / PAGE).or_insert([0; PAGE as usize]);
                page[(addr % PAGE) as usize] = b;
            }
        }

        fn unmap(&mut self, paddr: u64) {
            self.pages.remove(&(paddr / PAGE));
        }
    }

    impl PhysRead for FakeMem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
            let refuse = BootInfoError::Unreadable {
                what: "fake memory",
                paddr,
                len: buf.len() as u64,
            };
            for (i, b) in buf.iter_mut().enumerate() {
                let addr = paddr.checked_add(i as u64).ok_or(refuse)?;
                let page = self.pages.get(&(addr / PAGE)).ok_or(refuse)?;
                *b = page[(addr % PAGE) as usize];
            }
            Ok(())
        }
    }

    const START_INFO: u64 = 0x6000;
    const MEMMAP: u64 = 0x6100;
    const MODLIST: u64 = 0x6400;
    const CMDLINE: u64 = 0x2_0000;
    const RSDP: u64 = 0xf_5ae0;
    const MODULE: u64 = 0x700_0000;

    /// What a VMM writes; `memory()` lays it out in a [`FakeMem`].
    struct Fixture {
        info: HvmStartInfo,
        memmap: Vec<(u64, u64, u32)>,
        cmdline: Vec<u8>,
        modules: Vec<HvmModlistEntry>,
        rsdp: Vec<u8>,
    }

    fn rsdp_v2(length: u32) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"BOCHS ");
        r[15] = 2;
        r[16..20].copy_from_slice(&0x7fe_2000u32.to_le_bytes());
        r[20..24].copy_from_slice(&length.to_le_bytes());
        r[24..32].copy_from_slice(&0x7fe_3000u64.to_le_bytes());
        fix_rsdp_checksums(&mut r);
        r
    }

    fn fix_rsdp_checksums(r: &mut [u8]) {
        r[8] = 0;
        r[8] = checksum(&r[..20]).wrapping_neg();
        if r.len() >= 36 {
            r[32] = 0;
            r[32] = checksum(r).wrapping_neg();
        }
    }

    impl Fixture {
        /// QEMU microvm with `-m 128 -append "log=debug seed=42" -initrd <1234 bytes>`.
        fn qemu() -> Self {
            Fixture {
                info: HvmStartInfo {
                    magic: HVM_START_MAGIC_VALUE,
                    version: 1,
                    flags: 0,
                    nr_modules: 1,
                    modlist_paddr: MODLIST,
                    cmdline_paddr: CMDLINE,
                    rsdp_paddr: RSDP,
                    memmap_paddr: MEMMAP,
                    memmap_entries: 4,
                    reserved: 0,
                },
                memmap: vec![
                    (0, 0x9_fc00, HVM_MEMMAP_TYPE_RAM),
                    (0x9_fc00, 0x400, HVM_MEMMAP_TYPE_RESERVED),
                    (0xf_0000, 0x1_0000, HVM_MEMMAP_TYPE_RESERVED),
                    (0x10_0000, 0x7f0_0000, HVM_MEMMAP_TYPE_RAM),
                ],
                cmdline: b"log=debug seed=42\0".to_vec(),
                modules: vec![HvmModlistEntry {
                    paddr: MODULE,
                    size: 1234,
                    cmdline_paddr: 0,
                    reserved: 0,
                }],
                rsdp: rsdp_v2(36),
            }
        }

        fn memory(&self) -> FakeMem {
            let mut mem = FakeMem::default();
            mem.write(START_INFO, &self.info.to_bytes());
            for (i, &(addr, size, r#type)) in self.memmap.iter().enumerate() {
                let entry = HvmMemmapTableEntry {
                    addr,
                    size,
                    r#type,
                    reserved: 0,
                };
                mem.write(
                    MEMMAP + (i * HvmMemmapTableEntry::SIZE) as u64,
                    &entry.to_bytes(),
                );
            }
            mem.write(CMDLINE, &self.cmdline);
            for (i, m) in self.modules.iter().enumerate() {
                mem.write(MODLIST + (i * HvmModlistEntry::SIZE) as u64, &m.to_bytes());
            }
            mem.write(RSDP, &self.rsdp);
            mem
        }

        fn parse(&self) -> Result<BootInfo, BootInfoError> {
            parse(&self.memory(), START_INFO, None)
        }
    }

    fn reason_of(fixture: &Fixture) -> &'static str {
        fixture.parse().unwrap_err().reason()
    }

    #[test]
    fn qemu_like_start_info_is_accepted() {
        let boot = Fixture::qemu().parse().unwrap();
        assert_eq!(boot.memory_map.regions().len(), 4);
        assert_eq!(boot.memory_map.usable_end(), 0x800_0000);
        assert_eq!(boot.cmdline(), "log=debug seed=42");
        assert_eq!(boot.rsdp, Some(RSDP));
        assert_eq!(
            boot.modules(),
            [Module {
                start: MODULE,
                len: 1234
            }]
        );
        assert_eq!(boot.start_info_paddr, START_INFO);
        let reserved: Vec<Range<u64>> = boot.reserved_ranges().collect();
        assert_eq!(
            reserved,
            [
                START_INFO..START_INFO + 56,
                MEMMAP..MEMMAP + 4 * 24,
                CMDLINE..CMDLINE + 18,
                MODLIST..MODLIST + 32,
                RSDP..RSDP + 36,
                MODULE..MODULE + 1234,
            ]
        );
    }

    #[test]
    fn unsorted_memory_map_is_accepted_and_sorted() {
        let mut fixture = Fixture::qemu();
        fixture.memmap.reverse();
        let boot = fixture.parse().unwrap();
        assert!(
            boot.memory_map
                .regions()
                .windows(2)
                .all(|w| w[0].end() <= w[1].start)
        );
        assert_eq!(boot.memory_map, Fixture::qemu().parse().unwrap().memory_map);
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut fixture = Fixture::qemu();
        fixture.info.magic = 0x1bad_b002;
        let err = fixture.parse().unwrap_err();
        assert_eq!(err, BootInfoError::BadMagic { found: 0x1bad_b002 });
        assert_eq!(err.reason(), "bad-magic");
        assert!(err.to_string().contains("0x1badb002"));
    }

    #[test]
    fn version_0_has_no_memory_map_and_only_its_40_bytes_are_read() {
        let mut fixture = Fixture::qemu();
        fixture.info.version = 0;
        fixture.info.cmdline_paddr = 0;
        fixture.info.nr_modules = 0;
        fixture.info.rsdp_paddr = 0;
        let mut mem = FakeMem::default();
        // A version 0 start info ending exactly at the end of readable memory.
        let at = 0x7000 - HvmStartInfo::V0_SIZE as u64;
        mem.write(at, &fixture.info.to_bytes()[..HvmStartInfo::V0_SIZE]);
        let err = parse(&mem, at, None).unwrap_err();
        assert_eq!(err, BootInfoError::NoMemoryMap);
        assert_eq!(err.reason(), "no-memory-map");
        assert!(
            err.to_string()
                .starts_with("start info version 0 carries no memory map")
        );

        // With a map from the hypervisor, version 0 boots, and only its 40 bytes are
        // reserved.
        let map = MemoryMap::from_entries([(0x10_0000, 0x100_0000, 1)]).unwrap();
        let boot = parse(&mem, at, Some(map)).unwrap();
        assert_eq!(boot.memory_map.regions().len(), 1);
        assert!(
            boot.reserved_ranges()
                .any(|r| r == (at..at + HvmStartInfo::V0_SIZE as u64))
        );
    }

    #[test]
    fn later_versions_are_read_with_the_version_1_layout() {
        let mut fixture = Fixture::qemu();
        fixture.info.version = 2;
        assert!(fixture.parse().is_ok());
    }

    #[test]
    fn unreadable_start_info_is_refused() {
        let fixture = Fixture::qemu();
        let err = parse(&fixture.memory(), 0, None).unwrap_err();
        assert_eq!(
            err,
            BootInfoError::Unreadable {
                what: "start info",
                paddr: 0,
                len: 40
            }
        );
        assert_eq!(err.reason(), "unreadable");
        assert_eq!(
            parse(&fixture.memory(), 0x5_0000, None)
                .unwrap_err()
                .reason(),
            "unreadable"
        );
        assert_eq!(
            parse(&fixture.memory(), u64::MAX - 8, None)
                .unwrap_err()
                .reason(),
            "unreadable"
        );
    }

    #[test]
    fn empty_memory_map_is_refused() {
        let mut fixture = Fixture::qemu();
        fixture.info.memmap_entries = 0;
        assert_eq!(
            fixture.parse().unwrap_err(),
            BootInfoError::MemoryMap(MemoryMapError::Empty)
        );
    }

    #[test]
    fn too_many_map_entries_are_refused_before_reading() {
        let mut fixture = Fixture::qemu();
        fixture.info.memmap_entries = 129;
        fixture.info.memmap_paddr = 0xdead_0000; // unreadable: must not be touched
        let err = fixture.parse().unwrap_err();
        assert_eq!(
            err,
            BootInfoError::MemoryMap(MemoryMapError::TooManyEntries { count: 129 })
        );
        assert_eq!(err.reason(), "memory-map-too-many-entries");
        fixture.info.memmap_entries = u32::MAX;
        assert_eq!(reason_of(&fixture), "memory-map-too-many-entries");
    }

    #[test]
    fn memory_map_past_readable_memory_is_refused() {
        let mut fixture = Fixture::qemu();
        fixture.info.memmap_paddr = 0x6ff0; // runs into the unmapped page 0x7000
        assert_eq!(
            fixture.parse().unwrap_err(),
            BootInfoError::Unreadable {
                what: "memory map",
                paddr: 0x6ff0,
                len: 96
            }
        );
    }

    type Damage = fn(&mut Vec<(u64, u64, u32)>);

    #[test]
    fn malformed_memory_maps_are_refused_with_their_reason() {
        let cases: [(Damage, &str); 4] = [
            (|m| m[1].1 = 0, "memory-map-zero-length"),
            (|m| m[1].1 = 0x10_0000, "memory-map-overlap"),
            (|m| m[3].1 = u64::MAX, "memory-map-overflow"),
            (|m| m[3].2 = 2, "no-usable-ram"),
        ];
        for (damage, reason) in cases {
            let mut fixture = Fixture::qemu();
            damage(&mut fixture.memmap);
            assert_eq!(reason_of(&fixture), reason);
        }
    }

    #[test]
    fn absent_command_line_is_empty() {
        let mut fixture = Fixture::qemu();
        fixture.info.cmdline_paddr = 0;
        let boot = fixture.parse().unwrap();
        assert_eq!(boot.cmdline(), "");
        assert_eq!(boot.reserved_ranges().count(), 5);
    }

    #[test]
    fn longest_command_line_is_accepted() {
        let mut fixture = Fixture::qemu();
        fixture.cmdline = vec![b'x'; MAX_CMDLINE_LEN];
        fixture.cmdline.push(0);
        assert_eq!(fixture.parse().unwrap().cmdline().len(), MAX_CMDLINE_LEN);
    }

    #[test]
    fn unterminated_command_line_is_too_long() {
        let mut fixture = Fixture::qemu();
        fixture.cmdline = vec![b'x'; MAX_CMDLINE_LEN + 1];
        let err = fixture.parse().unwrap_err();
        assert_eq!(err, BootInfoError::Cmdline(CmdlineError::TooLong));
        assert_eq!(err.reason(), "cmdline-too-long");
    }

    #[test]
    fn command_line_ending_just_before_unreadable_memory_is_read() {
        let mut fixture = Fixture::qemu();
        let mut mem = fixture.memory();
        let at = 0x3_0000 - 5;
        mem.write(at, b"a=b\0");
        fixture.info.cmdline_paddr = at;
        mem.write(START_INFO, &fixture.info.to_bytes());
        assert_eq!(parse(&mem, START_INFO, None).unwrap().cmdline(), "a=b");
    }

    #[test]
    fn command_line_running_into_unreadable_memory_is_refused() {
        let mut fixture = Fixture::qemu();
        let mut mem = fixture.memory();
        let at = 0x3_0000 - 5;
        mem.write(at, b"abcde");
        fixture.info.cmdline_paddr = at;
        mem.write(START_INFO, &fixture.info.to_bytes());
        assert_eq!(
            parse(&mem, START_INFO, None).unwrap_err(),
            BootInfoError::Unreadable {
                what: "command line",
                paddr: 0x3_0000,
                len: 64
            }
        );
    }

    #[test]
    fn non_printable_command_line_is_refused() {
        let mut fixture = Fixture::qemu();
        fixture.cmdline = b"log=debug\x1b[31m\0".to_vec();
        let err = fixture.parse().unwrap_err();
        assert_eq!(
            err,
            BootInfoError::Cmdline(CmdlineError::NotPrintable {
                offset: 9,
                byte: 0x1b
            })
        );
        assert_eq!(err.reason(), "cmdline-not-printable");
    }

    #[test]
    fn too_many_modules_are_refused() {
        let mut fixture = Fixture::qemu();
        fixture.info.nr_modules = MAX_MODULES as u32 + 1;
        let err = fixture.parse().unwrap_err();
        assert_eq!(err, BootInfoError::TooManyModules { count: 17 });
        assert_eq!(err.reason(), "too-many-modules");
    }

    #[test]
    fn sixteen_modules_are_fine() {
        let mut fixture = Fixture::qemu();
        fixture.info.nr_modules = MAX_MODULES as u32;
        fixture.modules = (0..MAX_MODULES as u64)
            .map(|i| HvmModlistEntry {
                paddr: MODULE + i * 0x1000,
                size: 0x1000,
                ..HvmModlistEntry::default()
            })
            .collect();
        let boot = fixture.parse().unwrap();
        assert_eq!(boot.modules().len(), MAX_MODULES);
        assert_eq!(boot.reserved_ranges().count(), 5 + MAX_MODULES);
    }

    #[test]
    fn malformed_modules_are_refused() {
        let cases: [(u64, u64); 5] = [
            (MODULE, 0),          // empty
            (u64::MAX - 10, 100), // wraps
            (0x800_0000, 0x1000), // above RAM
            (0xa_0000, 0x1000),   // in the hole below 1 MiB
            (0xf_f000, 0x2000),   // straddles reserved / usable
        ];
        for (paddr, size) in cases {
            let mut fixture = Fixture::qemu();
            fixture.modules[0].paddr = paddr;
            fixture.modules[0].size = size;
            let err = fixture.parse().unwrap_err();
            assert!(
                matches!(err, BootInfoError::BadModule { index: 0, start, len, .. }
                    if start == paddr && len == size),
                "{err:?}"
            );
            assert_eq!(err.reason(), "bad-module");
        }
    }

    #[test]
    fn module_in_a_reserved_region_is_fine() {
        let mut fixture = Fixture::qemu();
        fixture.modules[0].paddr = 0xf_1000;
        fixture.modules[0].size = 0x100;
        assert!(fixture.parse().is_ok());
    }

    #[test]
    fn module_list_at_address_0_is_refused() {
        let mut fixture = Fixture::qemu();
        fixture.info.modlist_paddr = 0;
        assert_eq!(
            fixture.parse().unwrap_err(),
            BootInfoError::Unreadable {
                what: "module list",
                paddr: 0,
                len: 32
            }
        );
    }

    #[test]
    fn absent_rsdp_is_none() {
        let mut fixture = Fixture::qemu();
        fixture.info.rsdp_paddr = 0;
        assert_eq!(fixture.parse().unwrap().rsdp, None);
    }

    #[test]
    fn acpi_1_rsdp_needs_only_20_bytes() {
        let mut fixture = Fixture::qemu();
        let mut r = rsdp_v2(36);
        r[15] = 0;
        r.truncate(20);
        fix_rsdp_checksums(&mut r);
        let mut mem = fixture.memory();
        // At the very end of readable memory.
        let at = 0xe_0000 - 20;
        mem.write(at, &r);
        fixture.info.rsdp_paddr = at;
        mem.write(START_INFO, &fixture.info.to_bytes());
        let boot = parse(&mem, START_INFO, None).unwrap();
        assert_eq!(boot.rsdp, Some(at));
        assert!(boot.reserved_ranges().any(|r| r == (at..at + 20)));
    }

    #[test]
    fn malformed_rsdps_are_refused() {
        let mut wrong_signature = rsdp_v2(36);
        wrong_signature[0] = b'X';
        fix_rsdp_checksums(&mut wrong_signature);
        let mut bad_checksum = rsdp_v2(36);
        bad_checksum[8] ^= 1;
        let mut short_length = rsdp_v2(20);
        fix_rsdp_checksums(&mut short_length);
        let mut huge_length = rsdp_v2(0x1_0000);
        fix_rsdp_checksums(&mut huge_length);
        let mut bad_extended = rsdp_v2(36);
        bad_extended[32] ^= 1;
        for (rsdp, why) in [
            (wrong_signature, "signature"),
            (bad_checksum, "first 20 bytes"),
            (short_length, "length"),
            (huge_length, "length"),
            (bad_extended, "extended checksum"),
        ] {
            let mut fixture = Fixture::qemu();
            fixture.rsdp = rsdp;
            let err = fixture.parse().unwrap_err();
            assert_eq!(err.reason(), "bad-rsdp");
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn longer_rsdp_extended_checksum_covers_its_length() {
        let mut fixture = Fixture::qemu();
        let mut r = rsdp_v2(100);
        r.resize(100, 0xaa);
        r[32] = 0;
        r[32] = checksum(&r).wrapping_neg();
        fixture.rsdp = r;
        let boot = fixture.parse().unwrap();
        assert!(boot.reserved_ranges().any(|r| r == (RSDP..RSDP + 100)));
    }

    #[test]
    fn every_reason_is_kebab_case_and_every_message_nonempty() {
        let errors = [
            BootInfoError::Unreadable {
                what: "x",
                paddr: 0,
                len: 0,
            },
            BootInfoError::BadMagic { found: 0 },
            BootInfoError::NoMemoryMap,
            BootInfoError::MemoryMap(MemoryMapError::Empty),
            BootInfoError::Cmdline(CmdlineError::TooLong),
            BootInfoError::TooManyModules { count: 17 },
            BootInfoError::BadModule {
                index: 0,
                start: 0,
                len: 0,
                why: "x",
            },
            BootInfoError::BadRsdp { paddr: 0, why: "x" },
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

    fn check_invariants(boot: &BootInfo) {
        let map = &boot.memory_map;
        assert!(!map.regions().is_empty() && map.regions().len() <= MAX_REGIONS);
        assert!(map.regions().windows(2).all(|w| w[0].end() <= w[1].start));
        assert!(map.usable_bytes() >= 1 << 20);
        assert!(boot.cmdline().len() <= MAX_CMDLINE_LEN);
        assert!(
            boot.cmdline()
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
        );
        assert!(boot.modules().len() <= MAX_MODULES);
        for m in boot.modules() {
            assert!(m.len > 0);
            let r = map.region_containing(m.start, m.end()).unwrap();
            assert!(matches!(r.kind, RegionKind::Usable | RegionKind::Reserved));
        }
        for r in boot.reserved_ranges() {
            assert!(r.start < r.end, "{r:?}");
        }
        assert_ne!(boot.rsdp, Some(0));
    }

    #[test]
    fn random_damage_never_panics_and_accepted_info_holds_its_invariants() {
        let mut rng = Rng::new(0x5eed_0fba_5eba_1100);
        let pristine = Fixture::qemu().memory();
        // The bytes a host controls: start info, memory map, module list, cmdline, RSDP.
        let targets: [(u64, u64); 5] = [
            (START_INFO, 56),
            (MEMMAP, 96),
            (MODLIST, 32),
            (CMDLINE, 24),
            (RSDP, 36),
        ];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut mem = pristine.clone();
            for _ in 0..1 + rng.below(4) {
                let (base, len) = targets[rng.below(targets.len() as u64) as usize];
                let at = base + rng.below(len);
                let value = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next_u64() as u8,
                };
                mem.write(at, &[value]);
            }
            if let Ok(boot) = parse(&mem, START_INFO, None) {
                accepted += 1;
                check_invariants(&boot);
            }
        }
        assert!(accepted > 100, "only {accepted} accepted");
    }

    #[test]
    fn random_start_info_bytes_never_panic() {
        let mut rng = Rng::new(0xfeed_face_0bad_cafe);
        let pristine = Fixture::qemu().memory();
        for _ in 0..20_000 {
            let mut mem = pristine.clone();
            let mut raw = [0u8; 56];
            raw.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            if rng.below(2) == 0 {
                raw[..4].copy_from_slice(&HVM_START_MAGIC_VALUE.to_le_bytes());
            }
            // Keep addresses near the real ones often enough to reach the later checks.
            for field in [16usize, 24, 32, 40] {
                if rng.below(2) == 0 {
                    let near = [MODLIST, CMDLINE, RSDP, MEMMAP][field / 8 - 2];
                    let addr = near.wrapping_add(rng.below(64)).wrapping_sub(32);
                    raw[field..field + 8].copy_from_slice(&addr.to_le_bytes());
                }
            }
            if rng.below(2) == 0 {
                raw[12..16].copy_from_slice(&(rng.below(20) as u32).to_le_bytes());
                raw[48..52].copy_from_slice(&(rng.below(140) as u32).to_le_bytes());
            }
            mem.write(START_INFO, &raw);
            if rng.below(4) == 0 {
                mem.unmap(CMDLINE);
            }
            if let Ok(boot) = parse(&mem, START_INFO, None) {
                check_invariants(&boot);
            }
        }
    }
}
