//! ACPI: finding the RSDP and reading the tables that say where the clock, interrupt and
//! device hardware is: the FADT (PM timer, RTC century register, the DSDT's address), the
//! HPET table, the MADT (I/O APICs, ISA IRQ overrides, local APIC address), the MCFG (PCI
//! Express ECAM windows) and the DSDT (virtio-mmio transports). References are to ACPI 6.5
//! chapter 5.2, the IA-PC HPET specification 1.0a and the PCI Firmware Specification 3.2.
//!
//! The tables come from the host and are untrusted. Physical memory is reached only through
//! [`PhysRead`]; each table is copied out whole, its signature, length (at most
//! [`MAX_TABLE_LEN`]) and checksum are checked, and its fields are read by offset from that
//! copy, so a host changing a table under the kernel cannot make it read past what it
//! checked. A bad leaf table costs only what it describes: the problem goes to
//! [`Platform::problems`] and the other tables are still read.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use janus_drivers::isa_irq;
use janus_drivers::virtio_mmio::{self, MmioDevice};

use crate::boot::pvh::PhysRead;
use crate::mm::memory_map::PHYS_ADDR_LIMIT;

/// Longest table accepted. ACPI sets no limit; the fixed tables read here are a few hundred
/// bytes (a MADT for a thousand CPUs is about 16 KiB) and a DSDT tens of KiB (QEMU's are
/// under 10 KiB; large servers' reach a few hundred), so a longer length is garbage, and the
/// bound keeps one bad length from claiming the kernel heap.
pub const MAX_TABLE_LEN: u32 = 1 << 20;

/// Most RSDT/XSDT entries looked at. Firmware lists a few dozen tables; the bound caps the
/// work of a root table whose length claims thousands.
pub const MAX_ROOT_ENTRIES: usize = 256;

/// Most I/O APICs kept, as Linux's `MAX_IO_APICS`: a MADT listing more is garbage.
pub const MAX_IOAPICS: usize = 128;

/// Most PCI Express ECAM windows kept from the MCFG: there is one per PCI segment group (or
/// per bus range of one), and QEMU declares one; an MCFG listing more is garbage.
pub const MAX_ECAM_REGIONS: usize = 64;

/// Most virtio-mmio transports kept from the DSDT: QEMU microvm declares at most 24.
pub const MAX_VIRTIO_MMIO: usize = 64;

/// Most problems recorded; a table full of bad entries must not fill the heap with messages.
/// One more line says that further problems were dropped.
pub const MAX_PROBLEMS: usize = 32;

/// Where the clock, interrupt and device hardware is, as the firmware's tables say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// From the "HPET" table; `None` without a usable one.
    pub hpet: Option<HpetTable>,
    /// From the FADT ("FACP"); `None` if it has no PM timer the kernel can use.
    pub pm_timer: Option<PmTimerBlock>,
    /// The CMOS RAM index of the RTC century register (FADT `CENTURY`), if there is one.
    pub century_register: Option<u8>,
    /// The local APIC's physical address: the MADT's 32-bit field, or its Local APIC Address
    /// Override entry when there is one.
    pub local_apic_address: Option<u64>,
    /// The MADT's I/O APIC entries, in table order.
    pub ioapics: Vec<IoApicEntry>,
    /// The MADT's Interrupt Source Overrides for ISA IRQs, at most one per IRQ.
    pub isa_overrides: Vec<isa_irq::Override>,
    /// The MCFG's PCI Express ECAM windows, in table order.
    pub pci_ecam: Vec<EcamRegion>,
    /// The virtio-mmio transports the DSDT declares (`_HID` "LNRO0005"), in table order.
    pub virtio_mmio: Vec<MmioDevice>,
    /// What was wrong in tables that did not stop the parse, one line each, for the log.
    pub problems: Vec<String>,
}

/// An HPET timer block (IA-PC HPET specification 1.0a, §3.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetTable {
    /// Physical address of the 1 KiB register block, in memory space.
    pub base: u64,
    /// Which HPET block this is (0 for the first).
    pub hpet_number: u8,
    /// The smallest period, in main counter ticks, that periodic mode can be set to without
    /// losing interrupts.
    pub min_tick: u16,
}

/// The ACPI PM timer (ACPI 6.5 4.8.3.3): a counter at 3.579545 MHz in I/O space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimerBlock {
    /// The I/O port of the 4-byte `PM_TMR` register.
    pub port: u16,
    /// The counter has 32 bits (FADT flag `TMR_VAL_EXT`), else 24.
    pub bits32: bool,
}

/// An I/O APIC (ACPI 6.5 5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicEntry {
    pub id: u8,
    /// Physical address of its registers (a 32-bit field in the MADT).
    pub address: u64,
    /// The first global system interrupt its inputs deliver.
    pub gsi_base: u32,
}

/// A PCI Express enhanced configuration (ECAM) window: an MCFG configuration space base
/// address allocation structure (PCI Firmware Specification 3.2, §4.1.2, table 4-3).
///
/// `base` is where bus 0's configuration space would be even when `start_bus` is later, as
/// Linux reads it (arch/x86/pci/mmconfig-shared.c, `pci_mmconfig_alloc`, adds
/// `start_bus << 20`), so bus `b`'s 1 MiB lies at `base + (b << 20)`. Every value kept has
/// `start_bus <= end_bus`; `base` nonzero (Linux refuses 0 too) and aligned to 1 MiB, so
/// each bus's window is (the stricter PCIe rule, alignment to the whole window's
/// power-of-two size, is not enforced; Linux does not either); and the windows of
/// `start_bus..=end_bus` below the 2^52 physical address limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    pub base: u64,
    /// The PCI segment group number.
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamRegion {
    /// The physical address of `bus`'s 1 MiB of configuration space, if this window has it.
    pub fn bus_address(&self, bus: u8) -> Option<u64> {
        (self.start_bus..=self.end_bus)
            .contains(&bus)
            .then(|| self.base + (u64::from(bus) << ECAM_BUS_SHIFT))
    }
}

/// Why ACPI could not be read at all. Problems confined to one leaf table are not errors;
/// they land in [`Platform::problems`], formatted with this type where they are structural.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `len` bytes of `what` at `paddr` could not be read (address 0, past 2^52, wrapping, or
    /// not readable at this point of boot).
    Unreadable {
        what: &'static str,
        paddr: u64,
        len: u64,
    },
    /// The boot protocol passed no RSDP and the BIOS areas hold none (ACPI 6.5 5.2.5.1).
    NoRsdp,
    /// The RSDP at `paddr` fails a check of ACPI 6.5 5.2.5.3.
    BadRsdp { paddr: u64, why: &'static str },
    /// The `table` at `paddr` fails a structural check (ACPI 6.5 5.2.6).
    BadTable {
        table: &'static str,
        paddr: u64,
        why: &'static str,
    },
    /// The heap could not hold a copy of the `len`-byte `table`.
    NoMemory { table: &'static str, len: u32 },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::Unreadable { what, paddr, len } => write!(
                f,
                "cannot read {len} bytes of the ACPI {what} at physical address {paddr:#x}: \
                 the address is 0, wraps, or lies outside the memory readable at boot"
            ),
            AcpiError::NoRsdp => f.write_str(
                "found no ACPI RSDP: the boot protocol passed none, and none with valid \
                 checksums lies in the first KiB of the EBDA or in 0xe0000..0x100000; give the \
                 VM ACPI tables (e.g. drop QEMU's -no-acpi)",
            ),
            AcpiError::BadRsdp { paddr, why } => {
                write!(f, "the ACPI RSDP at {paddr:#x} is invalid: {why}")
            }
            AcpiError::BadTable { table, paddr, why } => {
                write!(f, "the ACPI {table} at {paddr:#x} is invalid: {why}")
            }
            AcpiError::NoMemory { table, len } => write!(
                f,
                "the heap has no room for a copy of the {len}-byte ACPI {table}: give the VM \
                 more memory"
            ),
        }
    }
}

/// Reads `buf.len()` bytes of `what` at `paddr`, refusing address 0 and ranges that wrap or
/// pass 2^52 before the reader sees them (as [`crate::boot::pvh`] does).
fn read(
    mem: &impl PhysRead,
    what: &'static str,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), AcpiError> {
    let len = buf.len() as u64;
    let unreadable = AcpiError::Unreadable { what, paddr, len };
    if paddr == 0
        || paddr
            .checked_add(len)
            .is_none_or(|end| end > PHYS_ADDR_LIMIT)
    {
        return Err(unreadable);
    }
    // Every reader error means the range is not readable; what it says beyond that is
    // about the reader, not the tables.
    mem.read(paddr, buf).map_err(|_| unreadable)
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// The `N` bytes at `offset`; callers have checked that `bytes` is long enough.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(field(bytes, offset))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(field(bytes, offset))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(field(bytes, offset))
}

// The RSDP, ACPI 6.5 5.2.5.3.
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// The ACPI 1.0 structure, which the first checksum covers.
const RSDP_V1_LEN: usize = 20;
const RSDP_REVISION: usize = 15;
const RSDP_RSDT_ADDRESS: usize = 16;
const RSDP_LENGTH: usize = 20;
const RSDP_XSDT_ADDRESS: usize = 24;
/// The ACPI 2.0+ structure: adds length, XSDT address and the extended checksum.
const RSDP_V2_LEN: usize = 36;
/// The first revision with the ACPI 2.0 fields (revision 0 is ACPI 1.0; 1 was never used).
const RSDP_XSDT_REVISION: u8 = 2;
/// Bound on the RSDP length, the same as the PVH boot path's so an RSDP it accepted is
/// accepted here: 36 bytes today, a page leaves room for growth.
const RSDP_MAX_LEN: u32 = 4096;

/// The root tables an RSDP points at (0 / `None` when absent).
pub(crate) struct Rsdp {
    /// The structure's length: 20 bytes before revision 2, its length field after.
    pub(crate) len: u64,
    rsdt: u32,
    xsdt: Option<u64>,
}

/// Validates the RSDP at `paddr`: signature, checksum of the first 20 bytes, and for
/// revision 2 and later the length and the extended checksum over all of it.
pub(crate) fn read_rsdp(mem: &impl PhysRead, paddr: u64) -> Result<Rsdp, AcpiError> {
    let bad = |why| AcpiError::BadRsdp { paddr, why };
    // The 20-byte prefix alone first: an ACPI 1.0 RSDP may end right before unreadable memory.
    let mut head = [0u8; RSDP_V2_LEN];
    read(mem, "RSDP", paddr, &mut head[..RSDP_V1_LEN])?;
    if &head[..RSDP_SIGNATURE.len()] != RSDP_SIGNATURE {
        return Err(bad("it lacks the \"RSD PTR \" signature"));
    }
    if checksum(&head[..RSDP_V1_LEN]) != 0 {
        return Err(bad("the checksum of its first 20 bytes is not 0"));
    }
    let rsdt = u32_at(&head, RSDP_RSDT_ADDRESS);
    if head[RSDP_REVISION] < RSDP_XSDT_REVISION {
        return Ok(Rsdp {
            len: RSDP_V1_LEN as u64,
            rsdt,
            xsdt: None,
        });
    }
    read(mem, "RSDP", paddr, &mut head)?;
    let length = u32_at(&head, RSDP_LENGTH);
    if !(RSDP_V2_LEN as u32..=RSDP_MAX_LEN).contains(&length) {
        return Err(bad("its length field is outside 36..=4096"));
    }
    // Summed in pieces so no page-sized buffer lands on the boot stack.
    let mut sum = 0u8;
    let mut chunk = [0u8; 64];
    let mut done = 0u64;
    while done < u64::from(length) {
        let n = (u64::from(length) - done).min(chunk.len() as u64) as usize;
        read(mem, "RSDP", paddr + done, &mut chunk[..n])?;
        sum = sum.wrapping_add(checksum(&chunk[..n]));
        done += n as u64;
    }
    if sum != 0 {
        return Err(bad("its extended checksum is not 0"));
    }
    let xsdt = u64_at(&head, RSDP_XSDT_ADDRESS);
    Ok(Rsdp {
        len: u64::from(length),
        rsdt,
        xsdt: (xsdt != 0).then_some(xsdt),
    })
}

// Finding the RSDP on IA-PC systems, ACPI 6.5 5.2.5.1.
/// The BIOS data area word holding the EBDA's real-mode segment (40:0Eh).
const EBDA_SEGMENT_POINTER: u64 = 0x40e;
/// Only the first KiB of the EBDA is searched.
const EBDA_SEARCH_LEN: u64 = 1024;
/// An EBDA lies in conventional memory, past the BIOS data area (0x400..0x500) and below the
/// legacy video window at 0xA0000; a segment pointing elsewhere is garbage, e.g. zeroed low
/// memory under a VMM without a BIOS.
const EBDA_BOUNDS: Range<u64> = 0x500..0xa_0000;
/// The BIOS read-only memory space.
const BIOS_AREA: Range<u64> = 0xe_0000..0x10_0000;
const RSDP_ALIGN: usize = 16;
/// Bytes read at a time while scanning. It divides both areas, so each piece is whole.
const SCAN_CHUNK: usize = 1024;
const _: () = assert!(EBDA_SEARCH_LEN as usize == SCAN_CHUNK);
const _: () = assert!((BIOS_AREA.end - BIOS_AREA.start).is_multiple_of(SCAN_CHUNK as u64));

/// The RSDP's physical address: `hint` (the boot protocol's, e.g. PVH `rsdp_paddr`) if there
/// is one, else the first RSDP with valid checksums on a 16-byte boundary in the first KiB of
/// the EBDA or in 0xE0000..0x100000, searched in that order (ACPI 6.5 5.2.5.1). The checks are
/// those of ACPI 6.5 5.2.5.3: signature, checksum, and for revision 2 and later length and
/// extended checksum.
///
/// A hint is trusted alone: the VMM that gives one says where its tables are, and a bad one
/// is reported rather than replaced by whatever a scan of low memory turns up.
pub fn find_rsdp(mem: &impl PhysRead, hint: Option<u64>) -> Result<u64, AcpiError> {
    if let Some(paddr) = hint {
        return read_rsdp(mem, paddr).map(|_| paddr);
    }
    let mut segment = [0u8; 2];
    let ebda = read(mem, "EBDA pointer", EBDA_SEGMENT_POINTER, &mut segment)
        .ok()
        .map(|()| u64::from(u16::from_le_bytes(segment)) << 4)
        .filter(|&base| EBDA_BOUNDS.contains(&base) && base + EBDA_SEARCH_LEN <= EBDA_BOUNDS.end);
    ebda.and_then(|base| scan_for_rsdp(mem, base..base + EBDA_SEARCH_LEN))
        .or_else(|| scan_for_rsdp(mem, BIOS_AREA))
        .ok_or(AcpiError::NoRsdp)
}

/// The first valid RSDP in `area`, which is 16-byte aligned and a whole number of
/// [`SCAN_CHUNK`]s long. Unreadable pieces are skipped: a PVH guest may have no BIOS there.
fn scan_for_rsdp(mem: &impl PhysRead, area: Range<u64>) -> Option<u64> {
    let mut chunk = [0u8; SCAN_CHUNK];
    for base in area.step_by(SCAN_CHUNK) {
        if read(mem, "RSDP search area", base, &mut chunk).is_err() {
            continue;
        }
        for offset in (0..SCAN_CHUNK).step_by(RSDP_ALIGN) {
            let paddr = base + offset as u64;
            // The signature alone is common enough in ROM images; only the checksums decide.
            if chunk[offset..].starts_with(RSDP_SIGNATURE) && read_rsdp(mem, paddr).is_ok() {
                return Some(paddr);
            }
        }
    }
    None
}

// The system description table header, ACPI 6.5 5.2.6.
const SDT_SIGNATURE_LEN: usize = 4;
const SDT_LENGTH: usize = 4;
const SDT_HEADER_LEN: usize = 36;
/// The RSDT lists 32-bit table addresses (5.2.7), the XSDT 64-bit ones (5.2.8).
const RSDT_ENTRY_LEN: usize = 4;
const XSDT_ENTRY_LEN: usize = 8;

/// Copies the table at `paddr` and checks its signature, that its length lies in
/// `min_len..=MAX_TABLE_LEN`, and its checksum. The copy's own length is what later reads are
/// bounded by, so a table changed between the header read and the copy cannot mislead them.
fn load_table(
    mem: &impl PhysRead,
    paddr: u64,
    signature: &[u8; SDT_SIGNATURE_LEN],
    table: &'static str,
    min_len: usize,
) -> Result<Vec<u8>, AcpiError> {
    let bad = |why| AcpiError::BadTable { table, paddr, why };
    let mut header = [0u8; SDT_HEADER_LEN];
    read(mem, table, paddr, &mut header)?;
    if header[..SDT_SIGNATURE_LEN] != *signature {
        return Err(bad("it does not begin with its signature"));
    }
    let len = u32_at(&header, SDT_LENGTH);
    if len > MAX_TABLE_LEN {
        return Err(bad("its length is over 1 MiB"));
    }
    if (len as usize) < min_len {
        return Err(bad(
            "its length is shorter than the fixed part of the table",
        ));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| AcpiError::NoMemory { table, len })?;
    bytes.resize(len as usize, 0);
    read(mem, table, paddr, &mut bytes)?;
    if checksum(&bytes) != 0 {
        return Err(bad("its bytes do not sum to 0 (bad checksum)"));
    }
    Ok(bytes)
}

/// [`Platform::problems`] under construction, bounded by [`MAX_PROBLEMS`].
struct Problems(Vec<String>);

impl Problems {
    fn note(&mut self, problem: impl fmt::Display) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(problem.to_string());
        } else if self.0.len() == MAX_PROBLEMS {
            self.0
                .push("further ACPI problems were not recorded".to_string());
        }
    }
}

/// A leaf table this module reads.
struct Leaf {
    signature: &'static [u8; SDT_SIGNATURE_LEN],
    name: &'static str,
    min_len: usize,
    parse: fn(&[u8], u64, &mut Platform, &mut Problems),
}

const FADT_SIGNATURE: &[u8; SDT_SIGNATURE_LEN] = b"FACP";

const LEAVES: [Leaf; 4] = [
    Leaf {
        signature: FADT_SIGNATURE,
        name: "FADT",
        min_len: FADT_V1_LEN,
        parse: parse_fadt,
    },
    Leaf {
        signature: b"HPET",
        name: "HPET table",
        min_len: HPET_LEN,
        parse: parse_hpet,
    },
    Leaf {
        signature: b"APIC",
        name: "MADT",
        min_len: MADT_ENTRIES,
        parse: parse_madt,
    },
    Leaf {
        signature: b"MCFG",
        name: "MCFG",
        min_len: MCFG_ENTRIES,
        parse: parse_mcfg,
    },
];

/// Walks the XSDT (ACPI 6.5 5.2.8) when the RSDP at `rsdp` has revision 2 or later and a
/// nonzero XSDT address, else the RSDT (5.2.7), and reads the FADT, HPET table, MADT and
/// MCFG it lists, then the DSDT the FADT points at.
///
/// Errors only when the RSDP or the root table is unusable. An XSDT that fails its checks
/// falls back to the RSDT when there is one, as Linux does, with a problem noted. Problems
/// in a leaf table or the DSDT, a zero or unreadable entry, or a second table with a
/// signature already read (the first wins) go to [`Platform::problems`].
pub fn parse(mem: &impl PhysRead, rsdp: u64) -> Result<Platform, AcpiError> {
    let pointer = read_rsdp(mem, rsdp)?;
    let mut problems = Problems(Vec::new());
    let (root, entry_len, root_name) = load_root(mem, rsdp, &pointer, &mut problems)?;

    let count = (root.len() - SDT_HEADER_LEN) / entry_len;
    if count > MAX_ROOT_ENTRIES {
        problems.note(format_args!(
            "the ACPI {root_name} lists {count} tables; only the first {MAX_ROOT_ENTRIES} \
             were looked at"
        ));
    }
    let mut platform = Platform::default();
    let mut seen = [false; LEAVES.len()];
    let mut dsdt = None;
    let addresses = root[SDT_HEADER_LEN..]
        .chunks_exact(entry_len)
        .take(MAX_ROOT_ENTRIES)
        .map(|e| match e.len() {
            RSDT_ENTRY_LEN => u64::from(u32_at(e, 0)),
            _ => u64_at(e, 0),
        });
    for (index, paddr) in addresses.enumerate() {
        if paddr == 0 {
            problems.note(format_args!(
                "entry {index} of the ACPI {root_name} is address 0"
            ));
            continue;
        }
        let mut header = [0u8; SDT_HEADER_LEN];
        if let Err(e) = read(mem, "table header", paddr, &mut header) {
            problems.note(format_args!("entry {index} of the ACPI {root_name}: {e}"));
            continue;
        }
        let Some(which) = LEAVES
            .iter()
            .position(|leaf| header[..SDT_SIGNATURE_LEN] == *leaf.signature)
        else {
            continue;
        };
        let leaf = &LEAVES[which];
        if seen[which] {
            problems.note(format_args!(
                "a second ACPI {} at {paddr:#x} was ignored; the one read before it is used",
                leaf.name
            ));
            continue;
        }
        match load_table(mem, paddr, leaf.signature, leaf.name, leaf.min_len) {
            Ok(bytes) => {
                seen[which] = true;
                (leaf.parse)(&bytes, paddr, &mut platform, &mut problems);
                // The DSDT is not listed in the root table; only the FADT says where it is.
                if leaf.signature == FADT_SIGNATURE {
                    dsdt = fadt_dsdt(&bytes);
                    if dsdt.is_none() {
                        problems.note(format_args!(
                            "the ACPI FADT at {paddr:#x} gives no DSDT address (DSDT and \
                             X_DSDT are 0), so ACPI lists no devices"
                        ));
                    }
                }
            }
            Err(e) => problems.note(e),
        }
    }
    if let Some(dsdt) = dsdt {
        read_dsdt(mem, dsdt, &mut platform, &mut problems);
    }
    platform.problems = problems.0;
    Ok(platform)
}

/// The root table's bytes, its entry size, and its name.
fn load_root(
    mem: &impl PhysRead,
    rsdp_paddr: u64,
    rsdp: &Rsdp,
    problems: &mut Problems,
) -> Result<(Vec<u8>, usize, &'static str), AcpiError> {
    if let Some(xsdt) = rsdp.xsdt {
        match load_table(mem, xsdt, b"XSDT", "XSDT", SDT_HEADER_LEN) {
            Ok(bytes) => return Ok((bytes, XSDT_ENTRY_LEN, "XSDT")),
            Err(e) if rsdp.rsdt != 0 => {
                problems.note(format_args!("{e}; the RSDT is used instead"));
            }
            Err(e) => return Err(e),
        }
    }
    if rsdp.rsdt == 0 {
        return Err(AcpiError::BadRsdp {
            paddr: rsdp_paddr,
            why: "it points at no RSDT or XSDT",
        });
    }
    let bytes = load_table(mem, u64::from(rsdp.rsdt), b"RSDT", "RSDT", SDT_HEADER_LEN)?;
    Ok((bytes, RSDT_ENTRY_LEN, "RSDT"))
}

// The Generic Address Structure, ACPI 6.5 5.2.3.2.
const GAS_SPACE_ID: usize = 0;
const GAS_ADDRESS: usize = 4;
const GAS_LEN: usize = 12;
const SPACE_SYSTEM_MEMORY: u8 = 0;
const SPACE_SYSTEM_IO: u8 = 1;

/// A register block of `len` bytes at `addr` that the kernel could map: not at 0 and below
/// the architectural physical address limit.
fn plausible_mmio(addr: u64, len: u64) -> bool {
    addr != 0
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= PHYS_ADDR_LIMIT)
}

// The FADT, ACPI 6.5 5.2.9. Which fields exist is decided by the table's length, not its
// revision: the length is what was checksummed, and firmware gets the revision wrong.
const FADT_DSDT: usize = 40;
const FADT_PM_TMR_BLK: usize = 76;
const FADT_PM_TMR_LEN: usize = 91;
const FADT_CENTURY: usize = 108;
const FADT_FLAGS: usize = 112;
/// The ACPI 1.0 FADT ends after `Flags`.
const FADT_V1_LEN: usize = 116;
const FADT_X_DSDT: usize = 140;
const FADT_X_PM_TMR_BLK: usize = 208;
const FADT_FLAG_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_FLAG_HW_REDUCED_ACPI: u32 = 1 << 20;
/// `PM_TMR_LEN` of a present PM timer: its register is 4 bytes.
const PM_TMR_LEN: u8 = 4;
/// The RTC's own registers occupy CMOS indexes 0..=0xD, and index bit 7 of port 0x70 masks
/// NMIs, so a century register can only be at 0xE..=0x7F.
const CMOS_CENTURY_INDEXES: Range<u8> = 0x0e..0x80;

fn parse_fadt(t: &[u8], paddr: u64, platform: &mut Platform, problems: &mut Problems) {
    match fadt_pm_timer(t) {
        Ok(timer) => platform.pm_timer = Some(timer),
        Err(why) => problems.note(format_args!("the ACPI FADT at {paddr:#x}: {why}")),
    }
    match t[FADT_CENTURY] {
        0 => {}
        index if CMOS_CENTURY_INDEXES.contains(&index) => {
            platform.century_register = Some(index);
        }
        index => problems.note(format_args!(
            "the ACPI FADT at {paddr:#x}: the RTC century register is at CMOS index \
             {index:#x}, outside 0xe..=0x7f; it is ignored"
        )),
    }
}

/// The DSDT's address: `X_DSDT` when the table has it and it is nonzero (ACPI 6.5 table 5.9:
/// then "the DSDT field must be ignored"), else `DSDT`; `None` if both are 0.
fn fadt_dsdt(t: &[u8]) -> Option<u64> {
    let extended = (t.len() >= FADT_X_DSDT + 8)
        .then(|| u64_at(t, FADT_X_DSDT))
        .filter(|&address| address != 0);
    extended.or_else(|| Some(u64::from(u32_at(t, FADT_DSDT))).filter(|&address| address != 0))
}

/// The PM timer an FADT describes: `X_PM_TMR_BLK` when the table has it and its address is
/// nonzero, else `PM_TMR_BLK`; in either case it must be in I/O space with `PM_TMR_LEN` 4.
fn fadt_pm_timer(t: &[u8]) -> Result<PmTimerBlock, String> {
    let flags = u32_at(t, FADT_FLAGS);
    if flags & FADT_FLAG_HW_REDUCED_ACPI != 0 {
        // Hardware-reduced ACPI has no fixed hardware, so the block fields mean nothing.
        return Err("no PM timer (hardware-reduced ACPI)".to_string());
    }
    let extended = (t.len() >= FADT_X_PM_TMR_BLK + GAS_LEN)
        .then(|| &t[FADT_X_PM_TMR_BLK..FADT_X_PM_TMR_BLK + GAS_LEN])
        .filter(|gas| u64_at(gas, GAS_ADDRESS) != 0);
    let address = match extended {
        Some(gas) if gas[GAS_SPACE_ID] != SPACE_SYSTEM_IO => {
            return Err(format!(
                "the PM timer (X_PM_TMR_BLK) is in address space {}, not system I/O; only \
                 an I/O port PM timer is supported",
                gas[GAS_SPACE_ID]
            ));
        }
        Some(gas) => u64_at(gas, GAS_ADDRESS),
        None => u64::from(u32_at(t, FADT_PM_TMR_BLK)),
    };
    if address == 0 {
        return Err("no PM timer (PM_TMR_BLK and X_PM_TMR_BLK are 0)".to_string());
    }
    let len = t[FADT_PM_TMR_LEN];
    if len != PM_TMR_LEN {
        return Err(format!(
            "PM_TMR_LEN is {len}, not 4, so the PM timer at port {address:#x} is not used"
        ));
    }
    // All four bytes of the register must be addressable ports.
    let port = u16::try_from(address)
        .ok()
        .filter(|port| port.checked_add(u16::from(PM_TMR_LEN - 1)).is_some())
        .ok_or_else(|| format!("the PM timer port {address:#x} is outside the I/O space"))?;
    Ok(PmTimerBlock {
        port,
        bits32: flags & FADT_FLAG_TMR_VAL_EXT != 0,
    })
}

// The HPET table, IA-PC HPET specification 1.0a §3.2.4. (The Event Timer Block ID at 36 is
// the general capabilities register's low half, which the driver reads from the hardware.)
const HPET_BASE_ADDRESS: usize = 40;
const HPET_NUMBER: usize = 52;
const HPET_MIN_TICK: usize = 53;
/// The table ends with the page protection byte at 55.
const HPET_LEN: usize = 56;
/// The register block is 1 KiB (HPET specification §2.3.1).
const HPET_REGISTERS_LEN: u64 = 1024;

fn parse_hpet(t: &[u8], paddr: u64, platform: &mut Platform, problems: &mut Problems) {
    let gas = &t[HPET_BASE_ADDRESS..HPET_BASE_ADDRESS + GAS_LEN];
    let base = u64_at(gas, GAS_ADDRESS);
    if gas[GAS_SPACE_ID] != SPACE_SYSTEM_MEMORY {
        problems.note(format_args!(
            "the ACPI HPET table at {paddr:#x}: HPET registers not in memory space (address \
             space {}); the HPET is not used",
            gas[GAS_SPACE_ID]
        ));
    } else if !plausible_mmio(base, HPET_REGISTERS_LEN) {
        problems.note(format_args!(
            "the ACPI HPET table at {paddr:#x}: base address {base:#x} is 0 or past the \
             physical address limit; the HPET is not used"
        ));
    } else {
        platform.hpet = Some(HpetTable {
            base,
            hpet_number: t[HPET_NUMBER],
            min_tick: u16_at(t, HPET_MIN_TICK),
        });
    }
}

// The MADT, ACPI 6.5 5.2.12.
const MADT_LOCAL_APIC_ADDRESS: usize = 36;
const MADT_ENTRIES: usize = 44;
/// Each entry starts with its type and length bytes.
const MADT_ENTRY_HEADER_LEN: usize = 2;
/// I/O APIC structure, 5.2.12.3.
const MADT_IOAPIC: u8 = 1;
const IOAPIC_LEN: usize = 12;
const IOAPIC_ID: usize = 2;
const IOAPIC_ADDRESS: usize = 4;
const IOAPIC_GSI_BASE: usize = 8;
/// IOREGSEL at 0 and IOWIN at 0x10 (82093AA datasheet §3.1).
const IOAPIC_REGISTERS_LEN: u64 = 0x20;
/// Interrupt Source Override structure, 5.2.12.5.
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const INTERRUPT_OVERRIDE_LEN: usize = 10;
const INTERRUPT_OVERRIDE_BUS: usize = 2;
const INTERRUPT_OVERRIDE_SOURCE: usize = 3;
const INTERRUPT_OVERRIDE_GSI: usize = 4;
const INTERRUPT_OVERRIDE_FLAGS: usize = 8;
/// The only source bus the structure defines.
const BUS_ISA: u8 = 0;
/// Local APIC Address Override structure, 5.2.12.8.
const MADT_LAPIC_OVERRIDE: u8 = 5;
const LAPIC_OVERRIDE_LEN: usize = 12;
const LAPIC_OVERRIDE_ADDRESS: usize = 4;
/// The local APIC's registers fill a 4 KiB page (Intel SDM vol. 3A, 11.4.1).
const LAPIC_REGISTERS_LEN: u64 = 4096;

fn parse_madt(t: &[u8], paddr: u64, platform: &mut Platform, problems: &mut Problems) {
    let mut note = |what: fmt::Arguments<'_>| {
        problems.note(format_args!("the ACPI MADT at {paddr:#x}: {what}"));
    };
    let header_address = u32_at(t, MADT_LOCAL_APIC_ADDRESS);
    let mut lapic = (header_address != 0).then_some(u64::from(header_address));
    let mut overridden = false;
    let mut offset = MADT_ENTRIES;
    // Every pass moves `offset` on by at least the entry header, so this ends within the
    // table's length.
    while offset < t.len() {
        let rest = &t[offset..];
        let len = rest.get(1).map_or(0, |&len| usize::from(len));
        if !(MADT_ENTRY_HEADER_LEN..=rest.len()).contains(&len) {
            note(format_args!(
                "the entry at offset {offset} has length {len}, less than 2 or past the \
                 table's end; the entries from there on are ignored"
            ));
            break;
        }
        let entry = &rest[..len];
        match entry[0] {
            MADT_IOAPIC if len != IOAPIC_LEN => note(format_args!(
                "the I/O APIC entry at offset {offset} has length {len}, not 12; it is ignored"
            )),
            MADT_IOAPIC => {
                let address = u64::from(u32_at(entry, IOAPIC_ADDRESS));
                if !plausible_mmio(address, IOAPIC_REGISTERS_LEN) {
                    note(format_args!(
                        "the I/O APIC entry at offset {offset} has address 0; it is ignored"
                    ));
                } else if platform.ioapics.len() == MAX_IOAPICS {
                    note(format_args!(
                        "the I/O APIC entry at offset {offset} is past the {MAX_IOAPICS} kept; \
                         it is ignored"
                    ));
                } else {
                    platform.ioapics.push(IoApicEntry {
                        id: entry[IOAPIC_ID],
                        address,
                        gsi_base: u32_at(entry, IOAPIC_GSI_BASE),
                    });
                }
            }
            MADT_INTERRUPT_OVERRIDE if len != INTERRUPT_OVERRIDE_LEN => note(format_args!(
                "the interrupt source override at offset {offset} has length {len}, not 10; \
                 it is ignored"
            )),
            MADT_INTERRUPT_OVERRIDE => match interrupt_override(entry, &platform.isa_overrides) {
                Ok(o) => platform.isa_overrides.push(o),
                Err(why) => note(format_args!(
                    "the interrupt source override at offset {offset} {why}; it is ignored"
                )),
            },
            MADT_LAPIC_OVERRIDE if len != LAPIC_OVERRIDE_LEN => note(format_args!(
                "the local APIC address override at offset {offset} has length {len}, not \
                 12; it is ignored"
            )),
            MADT_LAPIC_OVERRIDE => {
                let address = u64_at(entry, LAPIC_OVERRIDE_ADDRESS);
                if overridden {
                    // 5.2.12.8: "Only one Local APIC Address Override Structure may be
                    // defined."
                    note(format_args!(
                        "a second local APIC address override at offset {offset} is ignored"
                    ));
                } else if !plausible_mmio(address, LAPIC_REGISTERS_LEN) {
                    note(format_args!(
                        "the local APIC address override at offset {offset} gives {address:#x}, \
                         which is 0 or past the physical address limit; it is ignored"
                    ));
                } else {
                    lapic = Some(address);
                    overridden = true;
                }
            }
            _ => {}
        }
        offset += len;
    }
    if lapic.is_none() {
        note(format_args!("it gives no local APIC address"));
    }
    platform.local_apic_address = lapic;
}

/// An Interrupt Source Override entry of the right length, checked against those already
/// kept (`kept`): `Err` says what is wrong with it.
fn interrupt_override(
    entry: &[u8],
    kept: &[isa_irq::Override],
) -> Result<isa_irq::Override, String> {
    let bus = entry[INTERRUPT_OVERRIDE_BUS];
    let irq = entry[INTERRUPT_OVERRIDE_SOURCE];
    let gsi = u32_at(entry, INTERRUPT_OVERRIDE_GSI);
    let flags = u16_at(entry, INTERRUPT_OVERRIDE_FLAGS);
    if bus != BUS_ISA {
        return Err(format!("names bus {bus}, not ISA (0)"));
    }
    if irq >= isa_irq::ISA_IRQS {
        return Err(format!("names IRQ {irq}, which is not an ISA IRQ"));
    }
    if kept.iter().any(|o| o.irq == irq) {
        return Err(format!("overrides IRQ {irq} a second time"));
    }
    let (polarity, trigger) = isa_irq::decode_flags(flags).map_err(|e| format!("{e}"))?;
    Ok(isa_irq::Override {
        irq,
        gsi,
        polarity,
        trigger,
    })
}

// The MCFG, PCI Firmware Specification 3.2 §4.1.2: the header, 8 reserved bytes, then
// 16-byte configuration space base address allocation structures (table 4-3).
const MCFG_ENTRIES: usize = 44;
const MCFG_ENTRY_LEN: usize = 16;
const MCFG_BASE: usize = 0;
const MCFG_SEGMENT: usize = 8;
const MCFG_START_BUS: usize = 10;
const MCFG_END_BUS: usize = 11;
/// ECAM gives each bus 1 MiB: 32 devices of 8 functions of 4 KiB, the bus number in address
/// bits 27:20 (PCI Express Base Specification, "Enhanced Configuration Access Mechanism").
const ECAM_BUS_SHIFT: u32 = 20;
const ECAM_BUS_LEN: u64 = 1 << ECAM_BUS_SHIFT;

fn parse_mcfg(t: &[u8], paddr: u64, platform: &mut Platform, problems: &mut Problems) {
    let entries = &t[MCFG_ENTRIES..];
    let extra = entries.len() % MCFG_ENTRY_LEN;
    if extra != 0 {
        problems.note(format_args!(
            "the ACPI MCFG at {paddr:#x}: {extra} bytes after the last whole 16-byte entry \
             are ignored"
        ));
    }
    for (index, e) in entries.chunks_exact(MCFG_ENTRY_LEN).enumerate() {
        let region = EcamRegion {
            base: u64_at(e, MCFG_BASE),
            segment: u16_at(e, MCFG_SEGMENT),
            start_bus: e[MCFG_START_BUS],
            end_bus: e[MCFG_END_BUS],
        };
        let mut ignore = |why: fmt::Arguments<'_>| {
            problems.note(format_args!(
                "the ACPI MCFG at {paddr:#x}: entry {index} (segment {}, buses \
                 {:#04x}..={:#04x}, base {:#x}) is ignored: {why}",
                region.segment, region.start_bus, region.end_bus, region.base
            ));
        };
        match ecam_refusal(&region, &platform.pci_ecam) {
            Some(why) => ignore(format_args!("{why}")),
            None if platform.pci_ecam.len() == MAX_ECAM_REGIONS => {
                ignore(format_args!(
                    "only the first {MAX_ECAM_REGIONS} windows are kept"
                ));
            }
            None => platform.pci_ecam.push(region),
        }
    }
}

/// Why `region` cannot be used, given the regions already kept; `None` if it can.
fn ecam_refusal(region: &EcamRegion, kept: &[EcamRegion]) -> Option<&'static str> {
    if region.start_bus > region.end_bus {
        return Some("its start bus is past its end bus");
    }
    if !region.base.is_multiple_of(ECAM_BUS_LEN) {
        return Some("its base is not 1 MiB aligned, so its buses' windows are not either");
    }
    let start = region
        .base
        .checked_add(u64::from(region.start_bus) << ECAM_BUS_SHIFT);
    let len = (u64::from(region.end_bus - region.start_bus) + 1) << ECAM_BUS_SHIFT;
    if region.base == 0 || !start.is_some_and(|start| plausible_mmio(start, len)) {
        return Some("its base is 0 or its buses' windows run past the physical address limit");
    }
    let overlaps = kept.iter().any(|k| {
        k.segment == region.segment
            && k.start_bus <= region.end_bus
            && region.start_bus <= k.end_bus
    });
    if overlaps {
        return Some("its buses overlap an earlier entry's for the same segment");
    }
    None
}

/// Reads the DSDT at `paddr` (ACPI 6.5 5.2.11.1) with the checks of every table, and records
/// the virtio-mmio transports its AML declares.
fn read_dsdt(mem: &impl PhysRead, paddr: u64, platform: &mut Platform, problems: &mut Problems) {
    let table = match load_table(mem, paddr, b"DSDT", "DSDT", SDT_HEADER_LEN) {
        Ok(table) => table,
        Err(e) => return problems.note(e),
    };
    let aml = paddr + SDT_HEADER_LEN as u64;
    virtio_mmio::scan_dsdt(&table[SDT_HEADER_LEN..], |device| match device {
        Ok(device) if platform.virtio_mmio.len() < MAX_VIRTIO_MMIO => {
            platform.virtio_mmio.push(device);
        }
        Ok(device) => problems.note(format_args!(
            "the ACPI DSDT at {paddr:#x}: the virtio-mmio device at {:#x} is past the \
             {MAX_VIRTIO_MMIO} kept; it is ignored",
            device.base
        )),
        Err(e) => problems.note(format_args!(
            "the ACPI DSDT at {paddr:#x} (AML from {aml:#x}): {e}"
        )),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::pvh::BootInfoError;
    use crate::rng::XorShift64 as Rng;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use janus_drivers::isa_irq::{Polarity, Trigger};

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

        fn byte(&self, paddr: u64) -> u8 {
            self.pages[&(paddr / PAGE)][(paddr % PAGE) as usize]
        }

        fn xor(&mut self, paddr: u64, mask: u8) {
            let b = self.byte(paddr);
            self.write(paddr, &[b ^ mask]);
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

    // Where QEMU's SeaBIOS puts them, give or take.
    const RSDP: u64 = 0xf_5ae0;
    const RSDT: u64 = 0x7fe_2000;
    const XSDT: u64 = 0x7fe_2100;
    const FADT: u64 = 0x7fe_0000;
    const MADT: u64 = 0x7fe_1000;
    const HPET: u64 = 0x7fe_1800;
    const DSDT: u64 = 0x7fe_6000;
    const MCFG: u64 = 0x7fe_7000;
    const UNMAPPED: u64 = 0x900_0000;

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; if revision >= 2 { 36 } else { 20 }];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"BOCHS ");
        r[15] = revision;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        if revision >= 2 {
            r[20..24].copy_from_slice(&36u32.to_le_bytes());
            r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        }
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

    /// A table with a header and zeroed body; the checksum is set when it is written.
    fn sdt(signature: &[u8; 4], len: usize) -> Vec<u8> {
        let mut t = vec![0u8; len];
        t[..4].copy_from_slice(signature);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t[8] = 1;
        t[10..16].copy_from_slice(b"BOCHS ");
        t
    }

    /// Cuts or extends a table, keeping its length field in step.
    fn set_len(t: &mut Vec<u8>, len: usize) {
        t.resize(len, 0);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    }

    fn fix_checksum(t: &mut [u8]) {
        t[9] = 0;
        t[9] = checksum(t).wrapping_neg();
    }

    fn root(signature: &[u8; 4], entries: &[u64]) -> Vec<u8> {
        let width = if signature == b"XSDT" { 8 } else { 4 };
        let mut t = sdt(signature, 36 + width * entries.len());
        for (i, &e) in entries.iter().enumerate() {
            let at = 36 + width * i;
            t[at..at + width].copy_from_slice(&e.to_le_bytes()[..width]);
        }
        t
    }

    fn gas(space: u8, width: u8, address: u64) -> [u8; 12] {
        let mut g = [0u8; 12];
        g[0] = space;
        g[1] = width;
        g[4..].copy_from_slice(&address.to_le_bytes());
        g
    }

    /// QEMU's FADT (revision 3, 244 bytes): PM timer at port 0x608 in both fields, 24 bits,
    /// the DSDT's address in both fields.
    fn qemu_fadt() -> Vec<u8> {
        let mut t = sdt(b"FACP", 244);
        t[8] = 3;
        t[40..44].copy_from_slice(&(DSDT as u32).to_le_bytes());
        t[140..148].copy_from_slice(&DSDT.to_le_bytes());
        t[76..80].copy_from_slice(&0x608u32.to_le_bytes());
        t[91] = 4;
        t[108] = 0x32;
        t[112..116].copy_from_slice(&0x0000_04a5u32.to_le_bytes());
        t[208..220].copy_from_slice(&gas(1, 32, 0x608));
        t
    }

    /// QEMU's HPET table: one block at 0xfed00000, minimum tick 128.
    fn qemu_hpet() -> Vec<u8> {
        let mut t = sdt(b"HPET", 56);
        t[36..40].copy_from_slice(&0x8086_a201u32.to_le_bytes());
        t[40..52].copy_from_slice(&gas(0, 0, 0xfed0_0000));
        t[52] = 0;
        t[53..55].copy_from_slice(&128u16.to_le_bytes());
        t
    }

    fn madt_entry(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut e = vec![kind, (body.len() + 2) as u8];
        e.extend_from_slice(body);
        e
    }

    fn ioapic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
        let mut body = vec![id, 0];
        body.extend_from_slice(&address.to_le_bytes());
        body.extend_from_slice(&gsi_base.to_le_bytes());
        madt_entry(1, &body)
    }

    fn lapic_override(address: u64) -> Vec<u8> {
        let mut body = vec![0, 0];
        body.extend_from_slice(&address.to_le_bytes());
        madt_entry(5, &body)
    }

    fn madt(lapic: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut t = sdt(b"APIC", 44);
        t[36..40].copy_from_slice(&lapic.to_le_bytes());
        t[40..44].copy_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        for e in entries {
            t.extend_from_slice(e);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    fn interrupt_override(bus: u8, irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
        let mut body = vec![bus, irq];
        body.extend_from_slice(&gsi.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        madt_entry(2, &body)
    }

    /// QEMU's MADT for two CPUs on `-M pc` (hw/i386/acpi-common.c, `build_madt`): two local
    /// APICs, an I/O APIC, IRQ 0 moved to GSI 2, and the PCI IRQs 5, 9, 10 and 11 level,
    /// active high.
    fn qemu_madt() -> Vec<u8> {
        madt(
            0xfee0_0000,
            &[
                madt_entry(0, &[0, 0, 1, 0, 0, 0]),
                madt_entry(0, &[1, 1, 1, 0, 0, 0]),
                ioapic(0, 0xfec0_0000, 0),
                interrupt_override(0, 0, 2, 0),
                interrupt_override(0, 5, 5, 0xd),
                interrupt_override(0, 9, 9, 0xd),
                interrupt_override(0, 10, 10, 0xd),
                interrupt_override(0, 11, 11, 0xd),
            ],
        )
    }

    /// `op`, a PkgLength counting itself and `content` in the fewest bytes (ACPI 6.5
    /// 20.2.4), then `content`.
    fn aml_package(op: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = op.to_vec();
        let total = |extra: usize| content.len() + 1 + extra;
        if total(0) < 1 << 6 {
            out.push(total(0) as u8);
        } else {
            let follow = (1..=3).find(|&n| total(n) < 1 << (4 + 8 * n)).unwrap();
            let len = total(follow);
            out.push((follow << 6) as u8 | (len & 0x0f) as u8);
            out.extend((0..follow).map(|i| (len >> (4 + 8 * i)) as u8));
        }
        out.extend_from_slice(content);
        out
    }

    /// A virtio-mmio transport as QEMU declares it (hw/virtio/virtio-acpi.c): `Device (VRnn)`
    /// with `_HID` "LNRO0005", `_UID`, `_CCA` and a `_CRS` of Memory32Fixed and Interrupt.
    fn virtio_aml(index: u8, base: u32, irq: u32) -> Vec<u8> {
        let mut crs = vec![0x86, 9, 0, 1];
        crs.extend_from_slice(&base.to_le_bytes());
        crs.extend_from_slice(&0x200u32.to_le_bytes());
        crs.extend_from_slice(&[0x89, 6, 0, 1, 1]);
        crs.extend_from_slice(&irq.to_le_bytes());
        crs.extend_from_slice(&[0x79, 0]);
        let buffer = aml_package(&[0x11], &[&[0x0a, crs.len() as u8][..], &crs].concat());
        let body = [
            &[b'V', b'R', b'0' + index / 10, b'0' + index % 10][..],
            b"\x08_HID\x0dLNRO0005\x00",
            &[0x08, b'_', b'U', b'I', b'D', 0x0a, index],
            b"\x08_CCA\x01",
            b"\x08_CRS",
            &buffer,
        ]
        .concat();
        aml_package(&[0x5b, 0x82], &body)
    }

    /// A DSDT whose AML is `Scope (\_SB) {devices}`.
    fn dsdt(devices: &[Vec<u8>]) -> Vec<u8> {
        let scope = aml_package(&[0x10], &[&b"\\_SB_"[..], &devices.concat()].concat());
        let mut t = sdt(b"DSDT", 36);
        t.extend_from_slice(&scope);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    /// QEMU's DSDT for `-M pc` declares no virtio-mmio devices.
    fn qemu_dsdt() -> Vec<u8> {
        dsdt(&[])
    }

    /// QEMU microvm's first `n` virtio-mmio transports, behind its second IOAPIC.
    fn microvm_devices(n: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| virtio_aml(i, 0xfeb0_0000 + u32::from(i) * 0x200, 24 + u32::from(i)))
            .collect()
    }

    fn mcfg_entry(base: u64, segment: u16, start_bus: u8, end_bus: u8) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&base.to_le_bytes());
        e[8..10].copy_from_slice(&segment.to_le_bytes());
        e[10] = start_bus;
        e[11] = end_bus;
        e
    }

    fn mcfg(entries: &[[u8; 16]]) -> Vec<u8> {
        let mut t = sdt(b"MCFG", 44);
        t[8] = 1;
        for e in entries {
            t.extend_from_slice(e);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    /// What firmware writes; `memory()` lays it out with valid checksums.
    struct Firmware {
        rsdp_revision: u8,
        rsdt: Vec<u64>,
        xsdt: Vec<u64>,
        tables: Vec<(u64, Vec<u8>)>,
    }

    impl Firmware {
        fn qemu() -> Self {
            Firmware {
                rsdp_revision: 2,
                rsdt: vec![FADT, MADT, HPET],
                xsdt: vec![FADT, MADT, HPET],
                tables: vec![
                    (FADT, qemu_fadt()),
                    (MADT, qemu_madt()),
                    (HPET, qemu_hpet()),
                    (DSDT, qemu_dsdt()),
                ],
            }
        }

        /// QEMU's q35 tables: those of [`Firmware::qemu`], and an MCFG for 256 buses at
        /// 0xb0000000.
        fn q35() -> Self {
            let mut fw = Firmware::qemu();
            fw.tables
                .push((MCFG, mcfg(&[mcfg_entry(0xb000_0000, 0, 0, 0xff)])));
            fw.rsdt.push(MCFG);
            fw.xsdt.push(MCFG);
            fw
        }

        /// QEMU microvm's: those of [`Firmware::qemu`], with `n` virtio-mmio transports in
        /// the DSDT.
        fn microvm(n: u8) -> Self {
            let mut fw = Firmware::qemu();
            *fw.table(DSDT) = dsdt(&microvm_devices(n));
            fw
        }

        fn table(&mut self, paddr: u64) -> &mut Vec<u8> {
            &mut self
                .tables
                .iter_mut()
                .find(|(at, _)| *at == paddr)
                .unwrap()
                .1
        }

        fn memory(&self) -> FakeMem {
            let mut mem = FakeMem::default();
            let xsdt = if self.xsdt.is_empty() { 0 } else { XSDT };
            mem.write(RSDP, &rsdp(self.rsdp_revision, RSDT as u32, xsdt));
            let mut tables = self.tables.clone();
            tables.push((RSDT, root(b"RSDT", &self.rsdt)));
            if xsdt != 0 {
                tables.push((XSDT, root(b"XSDT", &self.xsdt)));
            }
            for (paddr, mut t) in tables {
                fix_checksum(&mut t);
                mem.write(paddr, &t);
            }
            mem
        }

        fn parse(&self) -> Platform {
            parse(&self.memory(), RSDP).unwrap()
        }
    }

    fn has_problem(platform: &Platform, text: &str) -> bool {
        platform.problems.iter().any(|p| p.contains(text))
    }

    #[test]
    fn qemu_tables_are_read_through_the_xsdt() {
        let platform = Firmware::qemu().parse();
        assert_eq!(
            platform,
            Platform {
                hpet: Some(HpetTable {
                    base: 0xfed0_0000,
                    hpet_number: 0,
                    min_tick: 128
                }),
                pm_timer: Some(PmTimerBlock {
                    port: 0x608,
                    bits32: false
                }),
                century_register: Some(0x32),
                local_apic_address: Some(0xfee0_0000),
                ioapics: vec![IoApicEntry {
                    id: 0,
                    address: 0xfec0_0000,
                    gsi_base: 0
                }],
                isa_overrides: [(0, 2), (5, 5), (9, 9), (10, 10), (11, 11)]
                    .into_iter()
                    .map(|(irq, gsi)| {
                        let pci = irq != 0;
                        isa_irq::Override {
                            irq,
                            gsi,
                            polarity: if pci {
                                Polarity::ActiveHigh
                            } else {
                                Polarity::ConformsToBus
                            },
                            trigger: if pci {
                                Trigger::Level
                            } else {
                                Trigger::ConformsToBus
                            },
                        }
                    })
                    .collect(),
                pci_ecam: vec![],
                virtio_mmio: vec![],
                problems: vec![],
            }
        );
    }

    #[test]
    fn revision_2_rsdp_uses_the_xsdt_and_revision_0_the_rsdt() {
        let mut fw = Firmware::qemu();
        fw.rsdt = vec![FADT];
        assert!(fw.parse().hpet.is_some());
        fw.rsdp_revision = 0;
        let platform = fw.parse();
        assert!(platform.hpet.is_none() && platform.pm_timer.is_some());
        assert!(platform.problems.is_empty(), "{:?}", platform.problems);
    }

    #[test]
    fn revision_2_rsdp_without_xsdt_uses_the_rsdt() {
        let mut fw = Firmware::qemu();
        fw.xsdt.clear();
        fw.rsdt = vec![MADT];
        let platform = fw.parse();
        assert_eq!(platform.ioapics.len(), 1);
        assert!(platform.pm_timer.is_none() && platform.problems.is_empty());
    }

    #[test]
    fn bad_xsdt_falls_back_to_the_rsdt() {
        let mut fw = Firmware::qemu();
        fw.rsdt = vec![HPET];
        let mut mem = fw.memory();
        mem.xor(XSDT + 20, 0x40);
        let platform = parse(&mem, RSDP).unwrap();
        assert!(platform.hpet.is_some() && platform.pm_timer.is_none());
        assert_eq!(platform.problems.len(), 1);
        assert!(has_problem(
            &platform,
            "XSDT at 0x7fe2100 is invalid: its bytes do not"
        ));
        assert!(has_problem(&platform, "the RSDT is used instead"));
    }

    #[test]
    fn unusable_root_tables_are_errors() {
        let mut mem = Firmware::qemu().memory();
        mem.xor(XSDT + 20, 0x40);
        mem.xor(RSDT, 0x20); // "rSDT"
        assert_eq!(
            parse(&mem, RSDP).unwrap_err(),
            AcpiError::BadTable {
                table: "RSDT",
                paddr: RSDT,
                why: "it does not begin with its signature"
            }
        );

        let mut mem = FakeMem::default();
        mem.write(RSDP, &rsdp(0, UNMAPPED as u32, 0));
        assert_eq!(
            parse(&mem, RSDP).unwrap_err(),
            AcpiError::Unreadable {
                what: "RSDT",
                paddr: UNMAPPED,
                len: 36
            }
        );

        mem.write(RSDP, &rsdp(2, 0, 0));
        let err = parse(&mem, RSDP).unwrap_err();
        assert!(matches!(err, AcpiError::BadRsdp { paddr: RSDP, .. }));
        assert!(
            err.to_string().contains("points at no RSDT or XSDT"),
            "{err}"
        );

        // Only an XSDT, and it is unreadable: nothing to fall back to.
        mem.write(RSDP, &rsdp(2, 0, UNMAPPED));
        assert!(matches!(
            parse(&mem, RSDP).unwrap_err(),
            AcpiError::Unreadable { what: "XSDT", .. }
        ));
    }

    #[test]
    fn bad_rsdp_is_refused_by_parse() {
        let mut mem = Firmware::qemu().memory();
        mem.xor(RSDP + 32, 1); // extended checksum
        let err = parse(&mem, RSDP).unwrap_err();
        assert_eq!(
            err,
            AcpiError::BadRsdp {
                paddr: RSDP,
                why: "its extended checksum is not 0"
            }
        );
        assert_eq!(
            err.to_string(),
            "the ACPI RSDP at 0xf5ae0 is invalid: its extended checksum is not 0"
        );
    }

    #[test]
    fn acpi_1_fadt_has_a_pm_timer_in_pm_tmr_blk() {
        let mut fw = Firmware::qemu();
        set_len(fw.table(FADT), 116);
        let platform = fw.parse();
        assert_eq!(
            platform.pm_timer,
            Some(PmTimerBlock {
                port: 0x608,
                bits32: false
            })
        );
        assert_eq!(platform.century_register, Some(0x32));
        assert!(platform.problems.is_empty());
    }

    #[test]
    fn fadt_shorter_than_x_pm_tmr_blk_ignores_it() {
        let mut fw = Firmware::qemu();
        let fadt = fw.table(FADT);
        fadt[208..220].copy_from_slice(&gas(0, 32, 0xfee0_0000)); // would be refused
        set_len(fadt, 219);
        assert_eq!(fw.parse().pm_timer.unwrap().port, 0x608);
    }

    #[test]
    fn x_pm_tmr_blk_is_preferred_when_nonzero() {
        let mut fw = Firmware::qemu();
        fw.table(FADT)[208..220].copy_from_slice(&gas(1, 32, 0xb008));
        assert_eq!(fw.parse().pm_timer.unwrap().port, 0xb008);

        fw.table(FADT)[76..80].fill(0);
        assert_eq!(fw.parse().pm_timer.unwrap().port, 0xb008);

        // A zero X_PM_TMR_BLK address means "use PM_TMR_BLK", whatever its space id says.
        let fadt = fw.table(FADT);
        fadt[76..80].copy_from_slice(&0x408u32.to_le_bytes());
        fadt[208..220].copy_from_slice(&gas(0, 0, 0));
        assert_eq!(fw.parse().pm_timer.unwrap().port, 0x408);
    }

    #[test]
    fn tmr_val_ext_makes_the_timer_32_bits() {
        let mut fw = Firmware::qemu();
        fw.table(FADT)[113] |= 1; // bit 8 of Flags
        assert!(fw.parse().pm_timer.unwrap().bits32);
    }

    #[test]
    fn pm_timer_in_memory_space_is_not_supported() {
        let mut fw = Firmware::qemu();
        fw.table(FADT)[208..220].copy_from_slice(&gas(0, 32, 0xfe00_0008));
        let platform = fw.parse();
        assert_eq!(platform.pm_timer, None);
        assert!(has_problem(&platform, "address space 0, not system I/O"));
        assert_eq!(platform.century_register, Some(0x32));
    }

    #[test]
    fn fadt_without_pm_timer_still_gives_the_century() {
        let mut fw = Firmware::qemu();
        let fadt = fw.table(FADT);
        fadt[76..80].fill(0);
        fadt[91] = 0;
        fadt[208..220].fill(0);
        let platform = fw.parse();
        assert_eq!(platform.pm_timer, None);
        assert_eq!(platform.century_register, Some(0x32));
        assert!(platform.hpet.is_some() && platform.local_apic_address.is_some());
        assert_eq!(platform.problems.len(), 1);
        assert!(has_problem(
            &platform,
            "FADT at 0x7fe0000: no PM timer (PM_TMR_BLK and X_PM_TMR_BLK are 0)"
        ));
    }

    #[test]
    fn hardware_reduced_acpi_has_no_pm_timer() {
        let mut fw = Firmware::qemu();
        fw.table(FADT)[114] |= 0x10; // bit 20 of Flags
        let platform = fw.parse();
        assert_eq!(platform.pm_timer, None);
        assert!(has_problem(
            &platform,
            "FADT at 0x7fe0000: no PM timer (hardware-reduced ACPI)"
        ));
    }

    #[test]
    fn pm_tmr_len_other_than_4_disables_the_pm_timer() {
        for len in [0, 3, 8] {
            let mut fw = Firmware::qemu();
            fw.table(FADT)[91] = len;
            let platform = fw.parse();
            assert_eq!(platform.pm_timer, None);
            assert!(has_problem(
                &platform,
                &format!("PM_TMR_LEN is {len}, not 4")
            ));
        }
    }

    #[test]
    fn pm_timer_port_must_hold_the_whole_register() {
        for (port, ok) in [(0xfffc, true), (0xfffd, false), (0x1_0000, false)] {
            let mut fw = Firmware::qemu();
            fw.table(FADT)[208..220].copy_from_slice(&gas(1, 32, port));
            let platform = fw.parse();
            assert_eq!(platform.pm_timer.is_some(), ok, "{port:#x}");
            assert_eq!(has_problem(&platform, "outside the I/O space"), !ok);
        }
    }

    #[test]
    fn century_register_must_be_a_cmos_index_past_the_clock() {
        for (index, expected, problem) in [
            (0, None, false),
            (0x0d, None, true),
            (0x0e, Some(0x0e), false),
            (0x7f, Some(0x7f), false),
            (0x80, None, true),
        ] {
            let mut fw = Firmware::qemu();
            fw.table(FADT)[108] = index;
            let platform = fw.parse();
            assert_eq!(platform.century_register, expected, "{index:#x}");
            assert_eq!(has_problem(&platform, "RTC century"), problem);
        }
    }

    #[test]
    fn short_fadt_is_a_problem_and_the_other_tables_survive() {
        let mut fw = Firmware::qemu();
        set_len(fw.table(FADT), 115);
        let platform = fw.parse();
        assert_eq!(platform.pm_timer, None);
        assert_eq!(platform.century_register, None);
        assert!(platform.hpet.is_some() && !platform.ioapics.is_empty());
        assert_eq!(
            platform.problems,
            [AcpiError::BadTable {
                table: "FADT",
                paddr: FADT,
                why: "its length is shorter than the fixed part of the table"
            }
            .to_string()]
        );
    }

    #[test]
    fn hpet_with_bad_checksum_does_not_lose_the_fadt() {
        let fw = Firmware::qemu();
        let mut mem = fw.memory();
        mem.xor(HPET + 53, 1);
        let platform = parse(&mem, RSDP).unwrap();
        assert_eq!(platform.hpet, None);
        assert!(platform.pm_timer.is_some() && platform.local_apic_address.is_some());
        assert_eq!(
            platform.problems,
            [
                "the ACPI HPET table at 0x7fe1800 is invalid: its bytes do not sum to 0 (bad \
              checksum)"
            ]
        );
    }

    #[test]
    fn hpet_in_io_space_is_refused() {
        let mut fw = Firmware::qemu();
        fw.table(HPET)[40] = 1;
        let platform = fw.parse();
        assert_eq!(platform.hpet, None);
        assert!(has_problem(
            &platform,
            "HPET registers not in memory space (address space 1)"
        ));
    }

    #[test]
    fn hpet_at_address_0_or_past_the_limit_is_refused() {
        for base in [0, PHYS_ADDR_LIMIT - 512, u64::MAX] {
            let mut fw = Firmware::qemu();
            fw.table(HPET)[44..52].copy_from_slice(&base.to_le_bytes());
            let platform = fw.parse();
            assert_eq!(platform.hpet, None);
            assert!(has_problem(&platform, &format!("base address {base:#x}")));
        }
    }

    #[test]
    fn hpet_table_reports_its_number_and_minimum_tick() {
        let mut fw = Firmware::qemu();
        let hpet = fw.table(HPET);
        hpet[52] = 2;
        hpet[53..55].copy_from_slice(&0x37eeu16.to_le_bytes());
        set_len(hpet, 60); // a longer table is fine
        let hpet = fw.parse().hpet.unwrap();
        assert_eq!((hpet.hpet_number, hpet.min_tick), (2, 0x37ee));
    }

    #[test]
    fn truncated_tables_are_problems() {
        let mut fw = Firmware::qemu();
        set_len(fw.table(HPET), 55);
        set_len(fw.table(MADT), 43);
        let platform = fw.parse();
        assert_eq!(platform.hpet, None);
        assert_eq!(platform.local_apic_address, None);
        assert_eq!(platform.problems.len(), 2, "{:?}", platform.problems);
        assert!(has_problem(
            &platform,
            "HPET table at 0x7fe1800 is invalid: its length"
        ));
        assert!(has_problem(
            &platform,
            "MADT at 0x7fe1000 is invalid: its length"
        ));
    }

    #[test]
    fn table_longer_than_readable_memory_is_a_problem() {
        let mut fw = Firmware::qemu();
        // The HPET table claims to run past the last mapped page.
        let at = 0x7fe_3000 - 56;
        fw.rsdt = vec![at];
        fw.xsdt = vec![at, FADT];
        let mut hpet = qemu_hpet();
        hpet[4..8].copy_from_slice(&0x100u32.to_le_bytes());
        fw.tables.push((at, hpet));
        let platform = fw.parse();
        assert_eq!(platform.hpet, None);
        assert!(platform.pm_timer.is_some());
        assert_eq!(
            platform.problems,
            [AcpiError::Unreadable {
                what: "HPET table",
                paddr: at,
                len: 0x100
            }
            .to_string()]
        );
    }

    #[test]
    fn table_over_1_mib_is_refused_before_it_is_read() {
        let mut fw = Firmware::qemu();
        fw.table(MADT)[4..8].copy_from_slice(&(MAX_TABLE_LEN + 1).to_le_bytes());
        let platform = fw.parse();
        assert!(has_problem(
            &platform,
            "MADT at 0x7fe1000 is invalid: its length is over"
        ));
        assert!(platform.ioapics.is_empty());
    }

    #[test]
    fn madt_gives_ioapics_and_the_overridden_local_apic_address() {
        let mut fw = Firmware::qemu();
        *fw.table(MADT) = madt(
            0xfee0_0000,
            &[
                ioapic(8, 0xfec0_0000, 0),
                lapic_override(0x8_fee0_0000),
                ioapic(9, 0xfec0_1000, 24),
            ],
        );
        let platform = fw.parse();
        assert_eq!(platform.local_apic_address, Some(0x8_fee0_0000));
        assert_eq!(
            platform.ioapics,
            [
                IoApicEntry {
                    id: 8,
                    address: 0xfec0_0000,
                    gsi_base: 0
                },
                IoApicEntry {
                    id: 9,
                    address: 0xfec0_1000,
                    gsi_base: 24
                }
            ]
        );
        assert!(platform.problems.is_empty());
    }

    #[test]
    fn override_replaces_a_zero_header_address_and_only_the_first_counts() {
        let mut fw = Firmware::qemu();
        *fw.table(MADT) = madt(0, &[lapic_override(0xfee0_0000), lapic_override(0x1000)]);
        let platform = fw.parse();
        assert_eq!(platform.local_apic_address, Some(0xfee0_0000));
        assert!(has_problem(
            &platform,
            "a second local APIC address override"
        ));
    }

    #[test]
    fn bad_madt_entries_are_skipped() {
        let mut fw = Firmware::qemu();
        let mut short_ioapic = ioapic(1, 0xfec0_0000, 0);
        short_ioapic.truncate(10);
        short_ioapic[1] = 10;
        *fw.table(MADT) = madt(
            0,
            &[
                short_ioapic,
                ioapic(2, 0, 0),
                lapic_override(0),
                madt_entry(5, &[0; 6]),
                ioapic(3, 0xfec0_0000, 0),
            ],
        );
        let platform = fw.parse();
        assert_eq!(platform.ioapics.len(), 1);
        assert_eq!(platform.ioapics[0].id, 3);
        assert_eq!(platform.local_apic_address, None);
        for text in [
            "I/O APIC entry at offset 44 has length 10",
            "I/O APIC entry at offset 54 has address 0",
            "override at offset 66 gives 0x0",
            "override at offset 78 has length 8",
            "it gives no local APIC address",
        ] {
            assert!(
                has_problem(&platform, text),
                "{text}: {:?}",
                platform.problems
            );
        }
    }

    #[test]
    fn bad_interrupt_source_overrides_are_skipped() {
        let mut fw = Firmware::qemu();
        *fw.table(MADT) = madt(
            0xfee0_0000,
            &[
                interrupt_override(0, 9, 20, 0xf),
                interrupt_override(1, 10, 10, 0xd),
                interrupt_override(0, 16, 16, 0xd),
                interrupt_override(0, 9, 9, 0xd),
                interrupt_override(0, 11, 11, 0b10),
                interrupt_override(0, 11, 11, 0b1000),
                madt_entry(2, &[0, 4, 4, 0, 0, 0]),
            ],
        );
        let platform = fw.parse();
        assert_eq!(
            platform.isa_overrides,
            [isa_irq::Override {
                irq: 9,
                gsi: 20,
                polarity: Polarity::ActiveLow,
                trigger: Trigger::Level,
            }]
        );
        for text in [
            "override at offset 54 names bus 1, not ISA (0)",
            "override at offset 64 names IRQ 16, which is not an ISA IRQ",
            "override at offset 74 overrides IRQ 9 a second time",
            "override at offset 84 flags 0x0002 use a reserved polarity or trigger mode",
            "override at offset 94 flags 0x0008 use a reserved",
            "override at offset 104 has length 8, not 10",
        ] {
            assert!(
                has_problem(&platform, text),
                "{text}: {:?}",
                platform.problems
            );
        }
    }

    #[test]
    fn madt_entry_of_length_0_ends_the_walk() {
        let mut fw = Firmware::qemu();
        *fw.table(MADT) = madt(
            0xfee0_0000,
            &[
                ioapic(0, 0xfec0_0000, 0),
                vec![1, 0, 0, 0],
                ioapic(1, 0xfec0_1000, 24),
            ],
        );
        let platform = fw.parse();
        assert_eq!(platform.ioapics.len(), 1);
        assert!(has_problem(&platform, "entry at offset 56 has length 0"));
    }

    #[test]
    fn madt_entry_past_the_table_end_ends_the_walk() {
        let mut fw = Firmware::qemu();
        let mut last = ioapic(1, 0xfec0_1000, 24);
        last.truncate(11);
        *fw.table(MADT) = madt(0xfee0_0000, &[ioapic(0, 0xfec0_0000, 0), last]);
        let platform = fw.parse();
        assert_eq!(platform.ioapics.len(), 1);
        assert!(has_problem(
            &platform,
            "entry at offset 56 has length 12, less than 2 or past"
        ));

        // A lone type byte at the end.
        *fw.table(MADT) = madt(0xfee0_0000, &[vec![1]]);
        assert!(has_problem(&fw.parse(), "entry at offset 44 has length 0"));
    }

    #[test]
    fn ioapics_and_problems_are_bounded() {
        let mut fw = Firmware::qemu();
        // The long MADT runs over where the HPET table would be.
        fw.tables.retain(|&(at, _)| at != HPET);
        fw.xsdt.retain(|&at| at != HPET);
        let entries: Vec<Vec<u8>> = (0..MAX_IOAPICS + 40)
            .map(|i| ioapic(i as u8, 0xfec0_0000 + i as u32 * 0x1000, 0))
            .collect();
        *fw.table(MADT) = madt(0xfee0_0000, &entries);
        let platform = fw.parse();
        assert_eq!(platform.ioapics.len(), MAX_IOAPICS);
        assert_eq!(platform.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            platform.problems.last().unwrap(),
            "further ACPI problems were not recorded"
        );
    }

    #[test]
    fn duplicate_tables_are_ignored_and_the_first_wins() {
        let mut fw = Firmware::qemu();
        let second = 0x7fe_1c00;
        let mut hpet = qemu_hpet();
        hpet[44..52].copy_from_slice(&0xfed0_1000u64.to_le_bytes());
        fw.tables.push((second, hpet));
        fw.xsdt.push(second);
        let platform = fw.parse();
        assert_eq!(platform.hpet.unwrap().base, 0xfed0_0000);
        assert_eq!(
            platform.problems,
            ["a second ACPI HPET table at 0x7fe1c00 was ignored; the one read before it is used"]
        );
    }

    #[test]
    fn a_bad_first_table_does_not_hide_a_good_duplicate() {
        let mut fw = Firmware::qemu();
        let second = 0x7fe_1c00;
        fw.tables.push((second, qemu_hpet()));
        fw.xsdt.insert(0, second);
        let mut mem = fw.memory();
        mem.xor(second + 20, 1);
        let platform = parse(&mem, RSDP).unwrap();
        assert_eq!(platform.hpet.unwrap().base, 0xfed0_0000);
        assert_eq!(platform.problems.len(), 1);
    }

    #[test]
    fn zero_and_unreadable_entries_are_problems() {
        let mut fw = Firmware::qemu();
        fw.xsdt = vec![0, UNMAPPED, FADT, MADT, HPET];
        let platform = fw.parse();
        assert!(platform.hpet.is_some() && platform.pm_timer.is_some());
        assert_eq!(
            platform.problems,
            [
                "entry 0 of the ACPI XSDT is address 0".to_string(),
                format!(
                    "entry 1 of the ACPI XSDT: {}",
                    AcpiError::Unreadable {
                        what: "table header",
                        paddr: UNMAPPED,
                        len: 36
                    }
                ),
            ]
        );
    }

    #[test]
    fn root_entries_are_capped() {
        let mut fw = Firmware::qemu();
        let ssdt = 0x7fe_4000;
        fw.tables.push((ssdt, sdt(b"SSDT", 36)));
        fw.xsdt = vec![ssdt; MAX_ROOT_ENTRIES];
        fw.xsdt.push(HPET);
        let platform = fw.parse();
        assert_eq!(platform.hpet, None);
        assert_eq!(
            platform.problems,
            ["the ACPI XSDT lists 257 tables; only the first 256 were looked at"]
        );
    }

    #[test]
    fn hint_is_checked_and_returned() {
        let mem = Firmware::qemu().memory();
        assert_eq!(find_rsdp(&mem, Some(RSDP)), Ok(RSDP));
        assert_eq!(
            find_rsdp(&mem, Some(RSDP + 16)),
            Err(AcpiError::BadRsdp {
                paddr: RSDP + 16,
                why: "it lacks the \"RSD PTR \" signature"
            })
        );
        assert!(matches!(
            find_rsdp(&mem, Some(UNMAPPED)),
            Err(AcpiError::Unreadable { what: "RSDP", .. })
        ));
    }

    #[test]
    fn hint_with_bad_checksum_is_refused_not_replaced_by_a_scan() {
        let mut mem = Firmware::qemu().memory();
        let hint = 0x7fe_5000;
        let mut r = rsdp(0, RSDT as u32, 0);
        r[8] ^= 1;
        mem.write(hint, &r);
        assert_eq!(
            find_rsdp(&mem, Some(hint)),
            Err(AcpiError::BadRsdp {
                paddr: hint,
                why: "the checksum of its first 20 bytes is not 0"
            })
        );
    }

    #[test]
    fn scan_finds_the_rsdp_in_the_bios_area() {
        let mut mem = Firmware::qemu().memory();
        mem.write(0xe_0000, &[0]); // the whole area readable, as under SeaBIOS
        mem.write(0xf_ffff, &[0]);
        assert_eq!(find_rsdp(&mem, None), Ok(RSDP));
        // Found the same way when only its own page is readable.
        assert_eq!(find_rsdp(&Firmware::qemu().memory(), None), Ok(RSDP));
        // An ACPI 1.0 RSDP at the area's last slot.
        let mut mem = FakeMem::default();
        mem.write(0xf_fff0, &rsdp(0, RSDT as u32, 0)[..16]);
        assert_eq!(find_rsdp(&mem, None), Err(AcpiError::NoRsdp));
        mem.write(0xf_ffe0, &rsdp(0, RSDT as u32, 0));
        assert_eq!(find_rsdp(&mem, None), Ok(0xf_ffe0));
    }

    #[test]
    fn scan_looks_only_at_16_byte_boundaries() {
        let mut mem = FakeMem::default();
        mem.write(0xe_0008, &rsdp(0, RSDT as u32, 0));
        assert_eq!(find_rsdp(&mem, None), Err(AcpiError::NoRsdp));
    }

    #[test]
    fn scan_skips_candidates_with_bad_checksums() {
        let mut mem = FakeMem::default();
        let mut bad = rsdp(0, RSDT as u32, 0);
        bad[8] ^= 1;
        mem.write(0xe_0000, &bad);
        let mut bad_extended = rsdp(2, RSDT as u32, XSDT);
        bad_extended[32] ^= 1;
        mem.write(0xe_0010 + 0x1000, &bad_extended);
        assert_eq!(find_rsdp(&mem, None), Err(AcpiError::NoRsdp));
        mem.write(0xf_0000, &rsdp(2, RSDT as u32, XSDT));
        assert_eq!(find_rsdp(&mem, None), Ok(0xf_0000));
    }

    #[test]
    fn scan_looks_in_the_first_kib_of_the_ebda_first() {
        let mut mem = Firmware::qemu().memory();
        mem.write(0x40e, &0x9fc0u16.to_le_bytes());
        let in_ebda = 0x9_fc00 + 0x3f0;
        mem.write(in_ebda, &rsdp(2, RSDT as u32, XSDT));
        assert_eq!(find_rsdp(&mem, None), Ok(in_ebda));
        // Past the first KiB, only the BIOS area's copy is found.
        let mut mem = Firmware::qemu().memory();
        mem.write(0x40e, &0x9f00u16.to_le_bytes());
        mem.write(0x9_f000 + 0x400, &rsdp(2, RSDT as u32, XSDT));
        assert_eq!(find_rsdp(&mem, None), Ok(RSDP));
    }

    #[test]
    fn implausible_ebda_segment_is_not_searched() {
        // In the interrupt vector table; running past 0xa0000; in the video window.
        for segment in [0x10u16, 0x20, 0x9fd0, 0xa000] {
            let mut mem = FakeMem::default();
            mem.write(0x40e, &segment.to_le_bytes());
            let base = u64::from(segment) << 4;
            mem.write(base, &rsdp(0, RSDT as u32, 0));
            assert_eq!(
                find_rsdp(&mem, None),
                Err(AcpiError::NoRsdp),
                "{segment:#x}"
            );
        }
    }

    #[test]
    fn no_rsdp_anywhere_is_an_error_that_says_what_to_do() {
        let err = find_rsdp(&FakeMem::default(), None).unwrap_err();
        assert_eq!(err, AcpiError::NoRsdp);
        assert!(err.to_string().contains("-no-acpi"));
    }

    #[test]
    fn every_error_message_names_what_and_where() {
        let errors = [
            AcpiError::Unreadable {
                what: "MADT",
                paddr: 0x1234,
                len: 44,
            },
            AcpiError::BadRsdp {
                paddr: 0x1234,
                why: "x",
            },
            AcpiError::BadTable {
                table: "MADT",
                paddr: 0x1234,
                why: "x",
            },
            AcpiError::NoMemory {
                table: "MADT",
                len: 0x1234,
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.contains("0x1234") || text.contains("4660"), "{text}");
            assert!(text.contains("ACPI"), "{text}");
        }
    }

    #[test]
    fn mcfg_gives_the_ecam_windows() {
        let platform = Firmware::q35().parse();
        assert_eq!(
            platform.pci_ecam,
            [EcamRegion {
                base: 0xb000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xff
            }]
        );
        assert!(platform.problems.is_empty(), "{:?}", platform.problems);
        let region = platform.pci_ecam[0];
        assert_eq!(region.bus_address(0), Some(0xb000_0000));
        assert_eq!(region.bus_address(0xff), Some(0xbff0_0000));
    }

    #[test]
    fn ecam_base_is_bus_0_relative_when_the_range_starts_later() {
        let mut fw = Firmware::q35();
        // Buses 0x80..=0x8f of segment 1: the base is where bus 0 would be.
        *fw.table(MCFG) = mcfg(&[
            mcfg_entry(0xb000_0000, 0, 0, 0x3f),
            mcfg_entry(0x8_0000_0000, 1, 0x80, 0x8f),
        ]);
        let platform = fw.parse();
        assert_eq!(platform.pci_ecam.len(), 2);
        let region = platform.pci_ecam[1];
        assert_eq!(region.bus_address(0x7f), None);
        assert_eq!(region.bus_address(0x80), Some(0x8_0800_0000));
        assert_eq!(region.bus_address(0x8f), Some(0x8_08f0_0000));
        assert_eq!(region.bus_address(0x90), None);
        assert!(platform.problems.is_empty(), "{:?}", platform.problems);
    }

    #[test]
    fn bad_mcfg_entries_are_problems_and_the_good_ones_are_kept() {
        let limit = PHYS_ADDR_LIMIT;
        let mut fw = Firmware::q35();
        let mut table = mcfg(&[
            mcfg_entry(0xb000_0000, 0, 0x10, 0x0f),
            mcfg_entry(0xb008_0000, 0, 0, 0xff),
            mcfg_entry(0, 0, 0, 0),
            mcfg_entry(limit - (0xff << 20), 0, 0, 0xff),
            mcfg_entry(u64::MAX - 0xf_ffff, 0, 0xff, 0xff),
            mcfg_entry(0xb000_0000, 2, 0, 0x7f),
            mcfg_entry(0xc000_0000, 2, 0x7f, 0xff),
            mcfg_entry(0, 3, 0x10, 0x1f),
            mcfg_entry(limit - (0x100 << 20), 4, 0, 0xff),
        ]);
        // Trailing bytes short of an entry.
        let len = table.len() + 15;
        set_len(&mut table, len);
        *fw.table(MCFG) = table;
        let platform = fw.parse();
        assert_eq!(
            platform.pci_ecam,
            [
                EcamRegion {
                    base: 0xb000_0000,
                    segment: 2,
                    start_bus: 0,
                    end_bus: 0x7f
                },
                EcamRegion {
                    base: limit - (0x100 << 20),
                    segment: 4,
                    start_bus: 0,
                    end_bus: 0xff
                },
            ]
        );
        for text in [
            "15 bytes after the last whole 16-byte entry",
            "entry 0 (segment 0, buses 0x10..=0x0f, base 0xb0000000) is ignored: its start \
             bus is past its end bus",
            "entry 1 (segment 0, buses 0x00..=0xff, base 0xb0080000) is ignored: its base is \
             not 1 MiB aligned",
            "entry 2 (segment 0, buses 0x00..=0x00, base 0x0) is ignored: its base is 0",
            "entry 3 (segment 0, buses 0x00..=0xff, base 0xffffff0100000) is ignored: its \
             base is 0 or its buses' windows run past",
            "entry 4 (segment 0, buses 0xff..=0xff, base 0xfffffffffff00000) is ignored: its \
             base is 0 or its buses' windows run past",
            "entry 6 (segment 2, buses 0x7f..=0xff, base 0xc0000000) is ignored: its buses \
             overlap an earlier entry's for the same segment",
            "entry 7 (segment 3, buses 0x10..=0x1f, base 0x0) is ignored: its base is 0",
        ] {
            assert!(
                has_problem(&platform, text),
                "{text}: {:#?}",
                platform.problems
            );
        }
        assert_eq!(platform.problems.len(), 8, "{:#?}", platform.problems);
    }

    #[test]
    fn ecam_regions_are_capped() {
        let mut fw = Firmware::q35();
        let entries: Vec<_> = (0..MAX_ECAM_REGIONS as u16 + 2)
            .map(|segment| mcfg_entry(0xb000_0000, segment, 0, 0))
            .collect();
        *fw.table(MCFG) = mcfg(&entries);
        let platform = fw.parse();
        assert_eq!(platform.pci_ecam.len(), MAX_ECAM_REGIONS);
        assert_eq!(platform.problems.len(), 2, "{:?}", platform.problems);
        assert!(has_problem(&platform, "only the first 64 windows are kept"));
    }

    #[test]
    fn short_mcfg_is_a_problem() {
        let mut fw = Firmware::q35();
        set_len(fw.table(MCFG), 43);
        let platform = fw.parse();
        assert!(platform.pci_ecam.is_empty());
        assert!(has_problem(
            &platform,
            "MCFG at 0x7fe7000 is invalid: its length is shorter"
        ));
    }

    #[test]
    fn microvm_dsdt_gives_its_virtio_mmio_transports() {
        let platform = Firmware::microvm(24).parse();
        assert!(platform.problems.is_empty(), "{:?}", platform.problems);
        let expected: Vec<_> = janus_drivers::virtio_mmio::microvm_slots()
            .zip(24..)
            .map(|(slot, irq)| MmioDevice {
                irq: Some(irq),
                ..slot
            })
            .collect();
        assert_eq!(platform.virtio_mmio, expected);
        assert_eq!(platform.virtio_mmio[7].base, 0xfeb0_0e00);
        assert_eq!(platform.virtio_mmio[4].irq, Some(0x1c));
    }

    #[test]
    fn x_dsdt_is_preferred_and_dsdt_is_the_fallback() {
        let elsewhere = 0x7fe_8000;
        let mut fw = Firmware::microvm(2);
        fw.tables.push((elsewhere, dsdt(&microvm_devices(1))));
        fw.table(FADT)[140..148].copy_from_slice(&elsewhere.to_le_bytes());
        assert_eq!(fw.parse().virtio_mmio.len(), 1);
        // X_DSDT 0: the 32-bit field is used.
        fw.table(FADT)[140..148].fill(0);
        assert_eq!(fw.parse().virtio_mmio.len(), 2);
        // An ACPI 1.0 FADT has no X_DSDT, whatever lies past its end.
        fw.table(FADT)[140..148].copy_from_slice(&elsewhere.to_le_bytes());
        set_len(fw.table(FADT), 116);
        let platform = fw.parse();
        assert_eq!(platform.virtio_mmio.len(), 2);
        assert!(platform.problems.is_empty(), "{:?}", platform.problems);
        // A 147-byte FADT cuts X_DSDT short: not used either.
        let mut fw = Firmware::microvm(2);
        fw.tables.push((elsewhere, dsdt(&microvm_devices(1))));
        fw.table(FADT)[140..148].copy_from_slice(&elsewhere.to_le_bytes());
        set_len(fw.table(FADT), 147);
        assert_eq!(fw.parse().virtio_mmio.len(), 2);
    }

    #[test]
    fn fadt_without_a_dsdt_is_a_problem() {
        let mut fw = Firmware::microvm(2);
        fw.table(FADT)[40..44].fill(0);
        fw.table(FADT)[140..148].fill(0);
        let platform = fw.parse();
        assert!(platform.virtio_mmio.is_empty());
        assert!(platform.pm_timer.is_some());
        assert_eq!(
            platform.problems,
            [
                "the ACPI FADT at 0x7fe0000 gives no DSDT address (DSDT and X_DSDT are 0), so \
                 ACPI lists no devices"
            ]
        );
    }

    #[test]
    fn bad_dsdts_are_problems_and_the_other_tables_survive() {
        // Bad checksum.
        let mut mem = Firmware::microvm(2).memory();
        mem.xor(DSDT + 40, 1);
        let platform = parse(&mem, RSDP).unwrap();
        assert!(platform.virtio_mmio.is_empty());
        assert!(platform.pm_timer.is_some() && platform.hpet.is_some());
        assert_eq!(
            platform.problems,
            ["the ACPI DSDT at 0x7fe6000 is invalid: its bytes do not sum to 0 (bad checksum)"]
        );
        // Wrong signature, over 1 MiB, unreadable.
        let mut fw = Firmware::microvm(2);
        fw.table(DSDT)[0] = b'S';
        assert!(has_problem(
            &fw.parse(),
            "DSDT at 0x7fe6000 is invalid: it does not begin with its signature"
        ));
        let mut fw = Firmware::microvm(2);
        fw.table(DSDT)[4..8].copy_from_slice(&(MAX_TABLE_LEN + 1).to_le_bytes());
        assert!(has_problem(
            &fw.parse(),
            "DSDT at 0x7fe6000 is invalid: its length is over 1 MiB"
        ));
        let mut fw = Firmware::microvm(2);
        fw.table(FADT)[140..148].copy_from_slice(&UNMAPPED.to_le_bytes());
        let platform = fw.parse();
        assert!(platform.virtio_mmio.is_empty());
        assert_eq!(
            platform.problems,
            [AcpiError::Unreadable {
                what: "DSDT",
                paddr: UNMAPPED,
                len: 36
            }
            .to_string()]
        );
    }

    #[test]
    fn bad_virtio_mmio_declarations_are_problems() {
        let mut devices = microvm_devices(3);
        // Device 1's window: Memory32Fixed's base, after the 0x86 tag, length and info byte.
        let window = devices[1]
            .windows(4)
            .position(|w| w == [0x86, 9, 0, 1])
            .unwrap();
        devices[1][window + 4..window + 8].copy_from_slice(&0xfeb0_0202u32.to_le_bytes());
        let mut fw = Firmware::microvm(0);
        *fw.table(DSDT) = dsdt(&devices);
        let platform = fw.parse();
        assert_eq!(platform.virtio_mmio.len(), 2);
        assert_eq!(platform.problems.len(), 1, "{:?}", platform.problems);
        assert!(has_problem(
            &platform,
            "the ACPI DSDT at 0x7fe6000 (AML from 0x7fe6024): the virtio-mmio device"
        ));
        assert!(has_problem(
            &platform,
            "base address 0xfeb00202 is not a multiple of 4"
        ));
    }

    #[test]
    fn virtio_mmio_devices_are_capped() {
        let devices: Vec<_> = (0..MAX_VIRTIO_MMIO + 3)
            .map(|i| virtio_aml((i % 100) as u8, 0xd000_0000 + i as u32 * 0x200, 5))
            .collect();
        let mut fw = Firmware::qemu();
        *fw.table(DSDT) = dsdt(&devices);
        let platform = fw.parse();
        assert_eq!(platform.virtio_mmio.len(), MAX_VIRTIO_MMIO);
        assert_eq!(platform.problems.len(), 3, "{:?}", platform.problems);
        assert!(has_problem(
            &platform,
            "the virtio-mmio device at 0xd0008000 is past the 64 kept"
        ));
    }

    #[test]
    fn random_damage_never_panics_and_results_stay_bounded() {
        let mut rng = Rng::new(0xac91_7ab1_e5ee_d001);
        let mut fw = Firmware::q35();
        *fw.table(DSDT) = dsdt(&microvm_devices(3));
        *fw.table(MADT) = madt(
            0xfee0_0000,
            &[
                madt_entry(0, &[0, 0, 1, 0, 0, 0]),
                ioapic(0, 0xfec0_0000, 0),
                lapic_override(0xfee0_0000),
                madt_entry(2, &[0, 0, 2, 0, 0, 0, 0, 0]),
            ],
        );
        let pristine = fw.memory();
        let clean = parse(&pristine, RSDP).unwrap();
        assert!(clean.problems.is_empty() && clean.hpet.is_some() && clean.pm_timer.is_some());
        assert_eq!(clean.ioapics.len(), 1);
        assert_eq!((clean.pci_ecam.len(), clean.virtio_mmio.len()), (1, 3));
        // The bytes the host controls: the RSDP, both roots, and every table (the DSDT too).
        let mut targets = vec![
            (RSDP, 36),
            (RSDT, 36 + 4 * fw.rsdt.len() as u64),
            (XSDT, 36 + 8 * fw.xsdt.len() as u64),
        ];
        targets.extend(fw.tables.iter().map(|(at, t)| (*at, t.len() as u64)));
        let mut accepted = 0;
        let mut damaged_devices = 0;
        for _ in 0..5_000 {
            let mut mem = pristine.clone();
            for _ in 0..1 + rng.below(6) {
                let (base, len) = targets[rng.below(targets.len() as u64) as usize];
                let at = base + rng.below(len);
                let value = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => mem.byte(at) ^ (1 << rng.below(8)),
                    _ => rng.next_u64() as u8,
                };
                mem.write(at, &[value]);
                // Half the time the table's checksum is repaired, so the parsers behind it
                // see the damage.
                if rng.below(2) == 0
                    && let Some(&(table, _)) = targets[1..]
                        .iter()
                        .find(|&&(t, l)| (t..t + l).contains(&at))
                {
                    let mut len = [0u8; 4];
                    mem.read(table + 4, &mut len).unwrap();
                    let len = u64::from(u32::from_le_bytes(len)).min(4096);
                    let mut t = vec![0u8; len as usize];
                    if len > 9 && mem.read(table, &mut t).is_ok() {
                        fix_checksum(&mut t);
                        mem.write(table, &t);
                    }
                }
            }
            if let Ok(platform) = parse(&mem, RSDP) {
                accepted += 1;
                assert!(platform.ioapics.len() <= MAX_IOAPICS);
                assert!(platform.isa_overrides.len() <= usize::from(isa_irq::ISA_IRQS));
                assert!(
                    platform
                        .isa_overrides
                        .iter()
                        .all(|o| o.irq < isa_irq::ISA_IRQS)
                );
                assert!(platform.problems.len() <= MAX_PROBLEMS + 1);
                assert!(platform.ioapics.iter().all(|io| io.address != 0));
                assert!(platform.hpet.is_none_or(|h| h.base != 0));
                assert!(platform.pm_timer.is_none_or(|p| p.port != 0));
                assert!(platform.pci_ecam.len() <= MAX_ECAM_REGIONS);
                for region in &platform.pci_ecam {
                    assert!(region.start_bus <= region.end_bus, "{region:?}");
                    assert!(region.base.is_multiple_of(ECAM_BUS_LEN), "{region:?}");
                    let end = region.base + ((u64::from(region.end_bus) + 1) << 20);
                    assert!(end <= PHYS_ADDR_LIMIT, "{region:?}");
                    assert!(region.base != 0, "{region:?}");
                }
                assert!(platform.virtio_mmio.len() <= MAX_VIRTIO_MMIO);
                for device in &platform.virtio_mmio {
                    assert!(
                        device.base != 0 && device.base.is_multiple_of(4),
                        "{device:?}"
                    );
                    assert!((0x100..=1 << 20).contains(&device.size), "{device:?}");
                    assert!(device.base + device.size <= PHYS_ADDR_LIMIT, "{device:?}");
                    assert!(device.irq.is_none_or(|irq| (1..=255).contains(&irq)));
                }
                damaged_devices += usize::from(platform.virtio_mmio != clean.virtio_mmio);
            }
        }
        // The damage reached the DSDT scan often enough to mean something.
        assert!(
            damaged_devices > 100,
            "only {damaged_devices} changed the devices"
        );
        assert!(accepted > 1_000, "only {accepted} accepted");
    }
}
