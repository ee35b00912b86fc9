//! Finding virtio-mmio transports (virtio 1.2 §4.2 "Virtio Over MMIO") and checking the
//! header of one.
//!
//! A VMM says where its transports are in one of three ways, tried in this order by the
//! caller:
//! 1. the kernel command line, in Linux's `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`
//!    form, which QEMU's `-M microvm,acpi=off` appends ([`cmdline_entries`]);
//! 2. the ACPI DSDT, as `Device` objects with `_HID` "LNRO0005" whose `_CRS` gives the
//!    window and the interrupt ([`scan_dsdt`]);
//! 3. nowhere: then QEMU microvm's fixed slots are probed ([`microvm_slots`]), and
//!    [`check_header`] tells a transport from an empty slot or from nothing at all.
//!
//! Everything here comes from the host and is untrusted; what is accepted is a window the
//! kernel can map and an interrupt line the IOAPICs can route, with no promise that a
//! device answers there.

use core::fmt;

/// A virtio-mmio transport's register window and interrupt line.
///
/// Every value the parsers here return satisfies: `size` in
/// [`MIN_WINDOW`]`..=`[`MAX_WINDOW`], `base` nonzero and a multiple of [`WINDOW_ALIGN`],
/// `base + size` at most [`PHYS_ADDR_LIMIT`], and `irq` in `1..=`[`MAX_IRQ`] when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    /// Physical address of the register window.
    pub base: u64,
    /// Length of the window in bytes.
    pub size: u64,
    /// The global system interrupt it raises; `None` when only probing found it, or its ACPI
    /// `_CRS` lists no interrupt.
    pub irq: Option<u32>,
}

/// Smallest window accepted: the registers run up to the device-specific configuration
/// space at 0x100 (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
pub const MIN_WINDOW: u64 = 0x100;

/// Largest window accepted. A window is the 0x100 bytes of registers plus the device's
/// configuration space, which is a few hundred bytes at most for any device type of virtio
/// 1.2; QEMU gives 512 bytes and Firecracker 4 KiB. 1 MiB leaves room for a VMM that rounds
/// up generously, while keeping a garbage size from making the kernel map a huge range.
pub const MAX_WINDOW: u64 = 1 << 20;

/// Required alignment of the base. The driver "MUST only use 32 bit wide and aligned reads
/// and writes to access the control registers" (virtio 1.2 §4.2.2.2), which needs a 4-byte
/// aligned base and nothing more; QEMU's bases are 512-byte aligned and Firecracker's page
/// aligned, but the spec does not ask for that, so it is not required.
pub const WINDOW_ALIGN: u64 = 4;

/// x86-64's architectural physical address limit (MAXPHYADDR is at most 52, Intel SDM vol.
/// 3A §4.1.4): a window reaching past it cannot be mapped.
pub const PHYS_ADDR_LIMIT: u64 = 1 << 52;

/// Highest interrupt accepted. The number is a global system interrupt routed through the
/// IOAPICs: QEMU microvm uses 5..=12 without ACPI, and with it 16..=23, or 24..=47 behind
/// its second IOAPIC (hw/i386/microvm.c, `virtio_irq_base`); a GSI past 255 would need more
/// than ten 24-pin IOAPICs, so here it is garbage. 0 is refused too, as Linux refuses it
/// (drivers/virtio/virtio_mmio.c, `vm_cmdline_set`): GSI 0 is the timer's.
pub const MAX_IRQ: u32 = 255;

/// Why a `virtio_mmio.device=` value, or a window read from the DSDT, was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioEntryError {
    /// The size is not a number with an optional K/M/G/T/P/E suffix, or overflows 64 bits.
    BadSize,
    /// No `@` follows the size.
    NoBase,
    /// The base address is not a number, overflows 64 bits, or is not followed by `:`.
    BadBase,
    /// Nothing follows the base address.
    NoIrq,
    /// The IRQ is not a decimal number, overflows 64 bits, or is followed by something other
    /// than `:<id>`.
    BadIrq,
    /// The id after the IRQ is not a decimal number.
    BadId,
    /// The size is outside [`MIN_WINDOW`]`..=`[`MAX_WINDOW`].
    SizeOutOfRange { size: u64 },
    /// The base is not a multiple of [`WINDOW_ALIGN`].
    Misaligned { base: u64 },
    /// The window starts at 0, wraps, or ends past [`PHYS_ADDR_LIMIT`].
    OutsidePhysicalMemory { base: u64, size: u64 },
    /// The IRQ is 0 or above [`MAX_IRQ`].
    IrqOutOfRange { irq: u64 },
}

/// The form of a command line entry, for messages.
const ENTRY_FORM: &str = "<size>@<base>:<irq>[:<id>], e.g. 512@0xfeb00e00:12";

impl fmt::Display for MmioEntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize => write!(
                f,
                "the size (before '@') is not a number like 512, 0x200 or 4K that fits in 64 \
                 bits; the form is {ENTRY_FORM}"
            ),
            Self::NoBase => write!(
                f,
                "no '@<base address>' follows the size; the form is {ENTRY_FORM}"
            ),
            Self::BadBase => write!(
                f,
                "the base address (after '@') is not a number like 0xfeb00e00 that fits in 64 \
                 bits and is followed by ':'; the form is {ENTRY_FORM}"
            ),
            Self::NoIrq => write!(
                f,
                "no ':<irq>' follows the base address; the form is {ENTRY_FORM}"
            ),
            Self::BadIrq => write!(
                f,
                "the IRQ (after the base address) is not a decimal number, or is followed by \
                 something other than ':<id>'; the form is {ENTRY_FORM}"
            ),
            Self::BadId => write!(
                f,
                "the id (after the IRQ) is not a decimal number; the form is {ENTRY_FORM}"
            ),
            Self::SizeOutOfRange { size } => write!(
                f,
                "the size {size:#x} is outside {MIN_WINDOW:#x}..={MAX_WINDOW:#x} bytes: a \
                 virtio-mmio window holds 0x100 bytes of registers and the device's \
                 configuration space"
            ),
            Self::Misaligned { base } => write!(
                f,
                "the base address {base:#x} is not a multiple of {WINDOW_ALIGN}: virtio-mmio \
                 registers are read as aligned 32-bit words"
            ),
            Self::OutsidePhysicalMemory { base, size } => write!(
                f,
                "the window of {size:#x} bytes at {base:#x} starts at 0 or ends past the 2^52 \
                 physical address limit"
            ),
            Self::IrqOutOfRange { irq } => write!(
                f,
                "the IRQ {irq} is outside 1..={MAX_IRQ}: it must be an IOAPIC global system \
                 interrupt other than the timer's"
            ),
        }
    }
}

/// The device, if `base`, `size` and `irq` satisfy the invariants of [`MmioDevice`].
fn checked_device(base: u64, size: u64, irq: Option<u64>) -> Result<MmioDevice, MmioEntryError> {
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
        return Err(MmioEntryError::SizeOutOfRange { size });
    }
    if !base.is_multiple_of(WINDOW_ALIGN) {
        return Err(MmioEntryError::Misaligned { base });
    }
    if base == 0
        || base
            .checked_add(size)
            .is_none_or(|end| end > PHYS_ADDR_LIMIT)
    {
        return Err(MmioEntryError::OutsidePhysicalMemory { base, size });
    }
    let irq = irq
        .map(|irq| {
            u32::try_from(irq)
                .ok()
                .filter(|irq| (1..=MAX_IRQ).contains(irq))
                .ok_or(MmioEntryError::IrqOutOfRange { irq })
        })
        .transpose()?;
    Ok(MmioDevice { base, size, irq })
}

// The command line.

/// The parameter QEMU appends, in Linux's spelling (drivers/virtio/virtio_mmio.c).
const CMDLINE_KEY: &str = "virtio_mmio.device=";

/// Parses the value of one `virtio_mmio.device=` parameter, Linux's
/// `<size>@<baseaddr>:<irq>[:<id>]` (drivers/virtio/virtio_mmio.c, `vm_cmdline_set`):
/// - `size` is read as Linux's `memparse` does: a C `strtoull` base-0 number (`0x` hex,
///   leading-`0` octal, else decimal) with an optional `K`, `M`, `G`, `T`, `P` or `E` suffix
///   in either case, each multiplying by 1024 once more;
/// - `baseaddr` is a base-0 number as above, without suffix;
/// - `irq` is decimal, as Linux's `%u`;
/// - `id`, if present, must be a decimal number (optionally negative, as Linux's `%d`) and is
///   otherwise ignored: Linux uses it only to number the platform devices it creates.
///
/// Stricter than Linux where Linux is sloppy: no signs or spaces before numbers, and a number
/// that overflows 64 bits is refused rather than wrapped. The result is then held to the
/// invariants of [`MmioDevice`].
pub fn parse_cmdline_entry(value: &str) -> Result<MmioDevice, MmioEntryError> {
    let (size, rest) = leading_number(value).ok_or(MmioEntryError::BadSize)?;
    let shift = match rest.bytes().next().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => 10,
        Some(b'M') => 20,
        Some(b'G') => 30,
        Some(b'T') => 40,
        Some(b'P') => 50,
        Some(b'E') => 60,
        _ => 0,
    };
    let rest = if shift == 0 { rest } else { &rest[1..] };
    let size = size
        .checked_mul(1 << shift)
        .ok_or(MmioEntryError::BadSize)?;
    let rest = rest.strip_prefix('@').ok_or(MmioEntryError::NoBase)?;
    let (base, rest) = leading_number(rest).ok_or(MmioEntryError::BadBase)?;
    let rest = match rest.strip_prefix(':') {
        Some(rest) => rest,
        None if rest.is_empty() => return Err(MmioEntryError::NoIrq),
        None => return Err(MmioEntryError::BadBase),
    };
    let (irq, rest) = leading_digits(rest, 10).ok_or(MmioEntryError::BadIrq)?;
    if !rest.is_empty() {
        let id = rest.strip_prefix(':').ok_or(MmioEntryError::BadIrq)?;
        let digits = id.strip_prefix('-').unwrap_or(id);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MmioEntryError::BadId);
        }
    }
    checked_device(base, size, Some(irq))
}

/// Every `virtio_mmio.device=` word of `cmdline`, parsed, in order. Words are separated by
/// spaces and tabs, as the kernel's own options are; the key must be spelled as QEMU writes
/// it (Linux would also take `virtio-mmio.device=`).
pub fn cmdline_entries(cmdline: &str) -> impl Iterator<Item = Result<MmioDevice, MmioEntryError>> {
    cmdline
        .split([' ', '\t'])
        .filter_map(|word| word.strip_prefix(CMDLINE_KEY))
        .map(parse_cmdline_entry)
}

/// The unsigned number at the start of `s` as C's `strtoull(s, _, 0)` reads it, the base
/// chosen as Linux's `_parse_integer_fixup_radix` does: `0x` or `0X` followed by a hex digit
/// means hex, a leading `0` octal, anything else decimal. Returns the value and the text
/// after it; `None` if no digit starts `s` or the value overflows 64 bits.
fn leading_number(s: &str) -> Option<(u64, &str)> {
    let bytes = s.as_bytes();
    let hex = bytes.len() > 2
        && bytes[0] == b'0'
        && bytes[1].eq_ignore_ascii_case(&b'x')
        && bytes[2].is_ascii_hexdigit();
    if hex {
        leading_digits(&s[2..], 16)
    } else if bytes.first() == Some(&b'0') {
        leading_digits(s, 8)
    } else {
        leading_digits(s, 10)
    }
}

/// The run of base-`radix` digits at the start of `s`: its value and the text after it;
/// `None` if there is no digit or the value overflows 64 bits.
fn leading_digits(s: &str, radix: u32) -> Option<(u64, &str)> {
    let len = s
        .bytes()
        .position(|b| !char::from(b).is_digit(radix))
        .unwrap_or(s.len());
    if len == 0 {
        return None;
    }
    let value = s[..len].bytes().try_fold(0u64, |value, b| {
        let digit = char::from(b).to_digit(radix)?;
        value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))
    })?;
    Some((value, &s[len..]))
}

// The DSDT. AML encodings are from ACPI 6.5 chapter 20, resource descriptors from §6.4.

/// `Name (_HID, "LNRO0005")`: NameOp, the NameSeg, StringPrefix, the string and its NUL.
/// "LNRO0005" is the id Linux's virtio_mmio driver matches (`virtio_mmio_acpi_match`).
const HID_LNRO0005: &[u8] = b"\x08_HID\x0dLNRO0005\x00";
/// `Name (_HID, ...)` of any device: where the next device's declarations begin.
const NAME_HID: &[u8] = b"\x08_HID";
/// `Name (_CRS, ...)`.
const NAME_CRS: &[u8] = b"\x08_CRS";
const BUFFER_OP: u8 = 0x11;

/// How far past its `_HID` a device's `_CRS` is looked for. QEMU's and Firecracker's
/// virtio-mmio devices declare `_HID`, `_UID`, `_CCA` and `_CRS` in that order, in about 60
/// bytes; 4 KiB leaves room for firmware that adds methods between them.
pub const DEVICE_SCAN_LIMIT: usize = 4096;

/// Why a virtio-mmio device the DSDT declares was not taken. `hid` is the offset of its
/// `Name (_HID, "LNRO0005")` in the AML given to [`scan_dsdt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsdtError {
    /// No `Name (_CRS, ...)` follows the `_HID` before the next `_HID` or within
    /// [`DEVICE_SCAN_LIMIT`] bytes.
    NoCrs { hid: usize },
    /// The `_CRS` is not a well-formed buffer of resource descriptors.
    BadCrs { hid: usize, why: &'static str },
    /// The `_CRS` lists no Memory32Fixed descriptor.
    NoMemoryRange { hid: usize },
    /// The window or interrupt the `_CRS` gives is refused.
    Invalid { hid: usize, error: MmioEntryError },
}

impl fmt::Display for DsdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let device = "the virtio-mmio device (_HID \"LNRO0005\") declared at AML offset";
        match self {
            Self::NoCrs { hid } => write!(
                f,
                "{device} {hid:#x} has no Name (_CRS, ...) after its _HID and within \
                 {DEVICE_SCAN_LIMIT} bytes (a _CRS method is not supported); it is ignored"
            ),
            Self::BadCrs { hid, why } => {
                write!(
                    f,
                    "{device} {hid:#x} has a malformed _CRS: {why}; it is ignored"
                )
            }
            Self::NoMemoryRange { hid } => write!(
                f,
                "{device} {hid:#x} has no Memory32Fixed descriptor in its _CRS, so its \
                 registers are unknown; it is ignored"
            ),
            Self::Invalid { hid, error } => {
                write!(f, "{device} {hid:#x} is ignored: {error}")
            }
        }
    }
}

/// Finds the virtio-mmio devices declared in `aml`, a DSDT's or SSDT's AML (the bytes after
/// its 36-byte header), and calls `found` for each, in table order.
///
/// This is a targeted scanner, not an AML interpreter. A device is each
/// `Name (_HID, "LNRO0005")` in the byte stream; its declarations are taken to run from there
/// to the next `Name (_HID, ...)` of any device, at most [`DEVICE_SCAN_LIMIT`] bytes. In that
/// span the first `Name (_CRS, Buffer (...) {...})` is decoded: BufferOp, PkgLength, the size
/// as an integer constant, then resource descriptors up to the End Tag. The first
/// Memory32Fixed descriptor gives the window, which is required; the first Extended
/// Interrupt or IRQ descriptor gives the interrupt, else it is `None`. Every length is
/// checked against `aml`, so any input is safe to scan, and the spans of two devices do not
/// overlap, so the work is linear in `aml.len()`.
///
/// Not understood, and so reported as errors: a `_CRS` declared before the `_HID`, a `_CRS`
/// method, and windows given by Address Space descriptors. QEMU and Firecracker emit none of
/// these.
pub fn scan_dsdt(aml: &[u8], mut found: impl FnMut(Result<MmioDevice, DsdtError>)) {
    let mut from = 0;
    while let Some(hid) = find(aml, from, HID_LNRO0005) {
        let body = hid + HID_LNRO0005.len();
        let limit = aml.len().min(body.saturating_add(DEVICE_SCAN_LIMIT));
        let end = find(&aml[..limit], body, NAME_HID).unwrap_or(limit);
        found(device_at(aml, hid, body, end));
        from = body;
    }
}

/// The offset of the first `pattern` in `haystack` at or after `from`.
fn find(haystack: &[u8], from: usize, pattern: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(pattern.len())
        .position(|w| w == pattern)
        .map(|at| from + at)
}

/// The device whose `_HID` is at `hid`, from the first `_CRS` in `aml[body..end]`.
fn device_at(aml: &[u8], hid: usize, body: usize, end: usize) -> Result<MmioDevice, DsdtError> {
    let crs = find(&aml[..end], body, NAME_CRS).ok_or(DsdtError::NoCrs { hid })?;
    let bad = |why| DsdtError::BadCrs { hid, why };
    let resources = buffer_contents(&aml[crs + NAME_CRS.len()..]).map_err(bad)?;
    let found = walk_resources(resources).map_err(bad)?;
    let (base, size) = found.memory.ok_or(DsdtError::NoMemoryRange { hid })?;
    checked_device(u64::from(base), u64::from(size), found.irq.map(u64::from))
        .map_err(|error| DsdtError::Invalid { hid, error })
}

/// The initializer bytes of the `Buffer` at the start of `aml` (ACPI 6.5 §20.2.5.4,
/// `DefBuffer := BufferOp PkgLength BufferSize ByteList`). The declared size is skipped:
/// when it differs from the initializer's length the larger wins (as in ACPICA's
/// `AcpiDsBuildInternalBufferObj`), and the descriptors are all in the initializer.
fn buffer_contents(aml: &[u8]) -> Result<&[u8], &'static str> {
    if aml.first() != Some(&BUFFER_OP) {
        return Err("it is not a Buffer");
    }
    let package = &aml[1..];
    let (len, len_bytes) = pkg_length(package).ok_or("its PkgLength is malformed")?;
    let package = package
        .get(len_bytes..len)
        .ok_or("its PkgLength runs past the end of the AML or is shorter than itself")?;
    let size_bytes = integer_len(package).ok_or("its size is not an integer constant")?;
    Ok(&package[size_bytes..])
}

/// Decodes the PkgLength at the start of `bytes` (ACPI 6.5 §20.2.4): the length it encodes,
/// which counts the PkgLength's own bytes and what follows them, and how many bytes it
/// takes. Bits 7:6 of the lead byte count the bytes that follow (0 to 3); with none, bits
/// 5:0 are the length, else bits 3:0 are its low nibble and bits 5:4 must be zero.
fn pkg_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let lead = *bytes.first()?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    if lead & 0x30 != 0 {
        return None;
    }
    let mut len = usize::from(lead & 0x0f);
    for (i, &b) in bytes.get(1..=follow)?.iter().enumerate() {
        len |= usize::from(b) << (4 + 8 * i);
    }
    Some((len, 1 + follow))
}

/// The length of the integer constant at the start of `bytes`, if it is one that fits
/// (ACPI 6.5 §20.2.3: ZeroOp, OneOp, OnesOp, or a Byte/Word/DWord/QWord prefix and value).
fn integer_len(bytes: &[u8]) -> Option<usize> {
    let len = match *bytes.first()? {
        0x00 | 0x01 | 0xff => 1,
        0x0a => 2,
        0x0b => 3,
        0x0c => 5,
        0x0e => 9,
        _ => return None,
    };
    (bytes.len() >= len).then_some(len)
}

/// What a `_CRS` gives: the first Memory32Fixed window and the first interrupt.
#[derive(Default)]
struct Resources {
    memory: Option<(u32, u32)>,
    irq: Option<u32>,
}

// Resource descriptor types, ACPI 6.5 §6.4.2 (small items) and §6.4.3 (large items).
const SMALL_IRQ: u8 = 0x04;
const SMALL_END_TAG: u8 = 0x0f;
const LARGE_MEMORY32_FIXED: u8 = 0x06;
const LARGE_EXTENDED_IRQ: u8 = 0x09;
/// IRQ descriptor: a 16-bit mask of ISA IRQs, then optional flags (§6.4.2.1).
const IRQ_MIN_LEN: usize = 2;
/// Memory32Fixed: information byte, then base and length, 32 bits each (§6.4.3.4).
const MEMORY32_FIXED_LEN: usize = 9;
/// Extended Interrupt: flags, count, then `count` 32-bit interrupts (§6.4.3.6).
const EXTENDED_IRQ_MIN_LEN: usize = 6;

/// Walks the resource descriptors in `bytes` up to the End Tag (ACPI 6.5 §6.4: a small item
/// is a tag byte with bit 7 clear, its type in bits 6:3 and its length in bits 2:0; a large
/// item is a tag byte with bit 7 set and its type in bits 6:0, then a 16-bit length).
fn walk_resources(bytes: &[u8]) -> Result<Resources, &'static str> {
    const PAST_END: &str = "a resource descriptor runs past the end of the buffer";
    let mut found = Resources::default();
    let mut at = 0;
    // Each pass moves `at` on by at least the tag byte, so this ends within `bytes`.
    loop {
        let tag = *bytes.get(at).ok_or("its resource list has no End Tag")?;
        let (large, kind, body_at, len) = if tag & 0x80 == 0 {
            (false, (tag >> 3) & 0x0f, at + 1, usize::from(tag & 0x07))
        } else {
            let len = bytes.get(at + 1..at + 3).ok_or(PAST_END)?;
            (
                true,
                tag & 0x7f,
                at + 3,
                usize::from(u16::from_le_bytes([len[0], len[1]])),
            )
        };
        let body = bytes.get(body_at..body_at + len).ok_or(PAST_END)?;
        match (large, kind) {
            (false, SMALL_END_TAG) => return Ok(found),
            (false, SMALL_IRQ) if len < IRQ_MIN_LEN => {
                return Err("an IRQ descriptor is shorter than its mask");
            }
            (false, SMALL_IRQ) => {
                let mask = u16::from_le_bytes([body[0], body[1]]);
                if found.irq.is_none() && mask != 0 {
                    found.irq = Some(mask.trailing_zeros());
                }
            }
            (true, LARGE_MEMORY32_FIXED) if len != MEMORY32_FIXED_LEN => {
                return Err("a Memory32Fixed descriptor's length is not 9");
            }
            (true, LARGE_MEMORY32_FIXED) if found.memory.is_none() => {
                found.memory = Some((u32_at(body, 1), u32_at(body, 5)));
            }
            (true, LARGE_EXTENDED_IRQ) => {
                let count = body.get(1).map_or(0, |&count| usize::from(count));
                if len < EXTENDED_IRQ_MIN_LEN || count == 0 || len < 2 + 4 * count {
                    return Err(
                        "an Extended Interrupt descriptor lists no interrupt or is shorter \
                         than its count",
                    );
                }
                if found.irq.is_none() {
                    found.irq = Some(u32_at(body, 2));
                }
            }
            _ => {}
        }
        at = body_at + len;
    }
}

/// The little-endian u32 at `offset`; callers have checked that `bytes` is long enough.
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

// Probing QEMU microvm's slots.

/// First transport of QEMU's microvm machine (hw/i386/microvm.h, `VIRTIO_MMIO_BASE`).
pub const MICROVM_FIRST_SLOT: u64 = 0xfeb0_0000;
/// Each microvm transport's window (hw/i386/microvm.c creates them 512 bytes apart).
pub const MICROVM_SLOT_SIZE: u64 = 0x200;
/// How many transports microvm creates at most: one per pin of its second IOAPIC
/// (hw/i386/microvm.c, `virtio_num_transports`; 8 without that IOAPIC).
pub const MICROVM_SLOTS: usize = 24;

/// The base of QEMU microvm's transport `index`, `None` past the last. This is QEMU's
/// microvm layout (hw/i386/microvm.c: `VIRTIO_MMIO_BASE` 0xfeb00000, up to 24 transports
/// of 512 bytes), to be probed only when neither the command line nor ACPI lists devices.
pub fn slot_base(index: usize) -> Option<u64> {
    (index < MICROVM_SLOTS).then(|| MICROVM_FIRST_SLOT + index as u64 * MICROVM_SLOT_SIZE)
}

/// Every microvm slot as a window to probe with [`check_header`], interrupt unknown. Only
/// for when neither the command line nor ACPI lists devices: on another machine these
/// addresses may belong to something else.
pub fn microvm_slots() -> impl Iterator<Item = MmioDevice> {
    (0..MICROVM_SLOTS)
        .filter_map(slot_base)
        .map(|base| MmioDevice {
            base,
            size: MICROVM_SLOT_SIZE,
            irq: None,
        })
}

// The header, virtio 1.2 §4.2.2.

/// Offset of `MagicValue`; it and the two below are 32-bit little-endian registers.
pub const MAGIC_VALUE_OFFSET: u64 = 0x000;
/// Offset of `Version`.
pub const VERSION_OFFSET: u64 = 0x004;
/// Offset of `DeviceID`.
pub const DEVICE_ID_OFFSET: u64 = 0x008;
/// `MagicValue`: "virt" in little-endian order.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version` of the legacy interface (virtio 1.2 §4.2.4).
pub const VERSION_LEGACY: u32 = 1;
/// `Version` of the interface of virtio 1.0 and later.
pub const VERSION_MODERN: u32 = 2;

/// Why a window holds no usable virtio-mmio transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioHeaderError {
    /// `MagicValue` is not "virt": no transport decodes there.
    BadMagic { magic: u32 },
    /// `Version` is neither 1 nor 2.
    UnknownVersion { version: u32 },
}

impl fmt::Display for MmioHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { magic } => write!(
                f,
                "no virtio-mmio transport here: the magic value reads {magic:#010x}, not \
                 {MAGIC_VALUE:#010x} (\"virt\"); check the address the VMM gave"
            ),
            Self::UnknownVersion { version } => write!(
                f,
                "the virtio-mmio transport has version {version}, neither 1 (legacy) nor 2 \
                 (virtio 1.0 and later); it is not supported"
            ),
        }
    }
}

/// Checks the first three registers of a window: the transport's device type, or `None`
/// for an empty slot (device ID 0, virtio 1.2 §4.2.2: a transport with no device behind
/// it, as QEMU microvm leaves its unused slots).
pub fn check_header(
    magic: u32,
    version: u32,
    device_id: u32,
) -> Result<Option<u32>, MmioHeaderError> {
    if magic != MAGIC_VALUE {
        return Err(MmioHeaderError::BadMagic { magic });
    }
    if !(VERSION_LEGACY..=VERSION_MODERN).contains(&version) {
        return Err(MmioHeaderError::UnknownVersion { version });
    }
    Ok((device_id != 0).then_some(device_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(base: u64, size: u64, irq: Option<u32>) -> MmioDevice {
        MmioDevice { base, size, irq }
    }

    /// The invariants [`MmioDevice`] documents.
    fn assert_valid(d: &MmioDevice) {
        assert!((MIN_WINDOW..=MAX_WINDOW).contains(&d.size), "{d:?}");
        assert!(d.base != 0 && d.base.is_multiple_of(WINDOW_ALIGN), "{d:?}");
        assert!(d.base + d.size <= PHYS_ADDR_LIMIT, "{d:?}");
        assert!(
            d.irq.is_none_or(|irq| (1..=MAX_IRQ).contains(&irq)),
            "{d:?}"
        );
    }

    #[test]
    fn qemu_microvm_command_line_gives_its_devices() {
        let cmdline = "console=ttyS0 log=debug virtio_mmio.device=512@0xfeb00e00:12 \
                       virtio_mmio.device=512@0xfeb00c00:11";
        let devices: Vec<_> = cmdline_entries(cmdline).collect();
        assert_eq!(
            devices,
            [
                Ok(device(0xfeb0_0e00, 512, Some(12))),
                Ok(device(0xfeb0_0c00, 512, Some(11)))
            ]
        );
    }

    #[test]
    fn cmdline_words_split_on_spaces_and_tabs_and_only_the_exact_key_counts() {
        let cmdline = "\tvirtio_mmio.device=4K@0x10000000:5\t\tvirtio_mmio.devices=512@0x1000:5 \
                       xvirtio_mmio.device=512@0x1000:5 virtio_mmio.device \
                       virtio_mmio.device=junk";
        let devices: Vec<_> = cmdline_entries(cmdline).collect();
        assert_eq!(
            devices,
            [
                Ok(device(0x1000_0000, 4096, Some(5))),
                Err(MmioEntryError::BadSize)
            ]
        );
        assert_eq!(cmdline_entries("").count(), 0);
    }

    #[test]
    fn numbers_are_read_as_c_base_0_and_sizes_take_memparse_suffixes() {
        for (value, base, size) in [
            ("512@0xfeb00000:5", 0xfeb0_0000, 512),
            ("0x200@0XFEB00200:5", 0xfeb0_0200, 0x200),
            ("01000@4096:5", 4096, 512), // octal size
            ("1k@010000:5", 0o10000, 1024),
            ("4K@0x1000:5", 0x1000, 4096),
            ("1m@0x100000:5", 0x10_0000, 1 << 20),
            ("0x100@0x1000:5", 0x1000, 0x100),
        ] {
            assert_eq!(
                parse_cmdline_entry(value),
                Ok(device(base, size, Some(5))),
                "{value}"
            );
        }
    }

    #[test]
    fn each_malformed_part_gives_its_own_error() {
        use MmioEntryError::*;
        for (value, error) in [
            ("", BadSize),
            ("@0x1000:5", BadSize),
            ("-512@0x1000:5", BadSize),
            ("99999999999999999999@0x1000:5", BadSize),
            ("16E@0x1000:5", BadSize),
            ("512", NoBase),
            ("512x@0x1000:5", NoBase),
            ("512K1@0x1000:5", NoBase),
            ("512@", BadBase),
            ("512@:5", BadBase),
            ("512@0x:5", BadBase), // "0" then "x": C reads 0 and stops
            ("512@08:5", BadBase), // octal
            ("512@0x1000", NoIrq),
            ("512@0x1000;5", BadBase),
            ("512@0x1000:", BadIrq),
            ("512@0x1000:0x1c", BadIrq), // %u is decimal
            ("512@0x1000:5x", BadIrq),
            ("512@0x1000:99999999999999999999", BadIrq),
            ("512@0x1000:5:", BadId),
            ("512@0x1000:5:x", BadId),
            ("512@0x1000:5:-", BadId),
            ("512@0x1000:5:1:2", BadId),
        ] {
            assert_eq!(parse_cmdline_entry(value), Err(error), "{value:?}");
        }
    }

    #[test]
    fn id_is_accepted_and_ignored() {
        for value in ["512@0x1000:5:0", "512@0x1000:5:7", "512@0x1000:5:-1"] {
            assert_eq!(
                parse_cmdline_entry(value),
                Ok(device(0x1000, 512, Some(5))),
                "{value}"
            );
        }
    }

    #[test]
    fn windows_and_irqs_are_held_to_their_bounds() {
        use MmioEntryError::*;
        let limit = PHYS_ADDR_LIMIT;
        for (value, result) in [
            ("0@0x1000:5".to_string(), Err(SizeOutOfRange { size: 0 })),
            ("0xff@0x1000:5".into(), Err(SizeOutOfRange { size: 0xff })),
            ("1M@0x1000:5".into(), Ok(device(0x1000, 1 << 20, Some(5)))),
            (
                "0x100001@0x1000:5".into(),
                Err(SizeOutOfRange { size: 0x10_0001 }),
            ),
            ("1G@0x1000:5".into(), Err(SizeOutOfRange { size: 1 << 30 })),
            ("512@0x1002:5".into(), Err(Misaligned { base: 0x1002 })),
            ("512@0x1004:5".into(), Ok(device(0x1004, 512, Some(5)))),
            (
                "512@0:5".into(),
                Err(OutsidePhysicalMemory { base: 0, size: 512 }),
            ),
            (
                format!("512@{:#x}:5", limit - 512),
                Ok(device(limit - 512, 512, Some(5))),
            ),
            (
                format!("512@{:#x}:5", limit - 508),
                Err(OutsidePhysicalMemory {
                    base: limit - 508,
                    size: 512,
                }),
            ),
            (
                "512@0xfffffffffffffe00:5".into(),
                Err(OutsidePhysicalMemory {
                    base: 0xffff_ffff_ffff_fe00,
                    size: 512,
                }),
            ),
            ("512@0x1000:0".into(), Err(IrqOutOfRange { irq: 0 })),
            ("512@0x1000:1".into(), Ok(device(0x1000, 512, Some(1)))),
            ("512@0x1000:255".into(), Ok(device(0x1000, 512, Some(255)))),
            ("512@0x1000:256".into(), Err(IrqOutOfRange { irq: 256 })),
            (
                "512@0x1000:4294967296".into(),
                Err(IrqOutOfRange { irq: 1 << 32 }),
            ),
        ] {
            assert_eq!(parse_cmdline_entry(&value), result, "{value}");
        }
    }

    #[test]
    fn entry_errors_are_one_line_naming_the_bad_part() {
        use MmioEntryError::*;
        for (error, part) in [
            (BadSize, "size"),
            (NoBase, "'@<base address>'"),
            (BadBase, "base address"),
            (NoIrq, "':<irq>'"),
            (BadIrq, "IRQ"),
            (BadId, "id"),
            (SizeOutOfRange { size: 0x10 }, "size 0x10"),
            (Misaligned { base: 0x1002 }, "base address 0x1002"),
            (
                OutsidePhysicalMemory {
                    base: 0,
                    size: 0x200,
                },
                "window of 0x200 bytes at 0x0",
            ),
            (IrqOutOfRange { irq: 256 }, "IRQ 256"),
        ] {
            let text = error.to_string();
            assert!(text.contains(part), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    // AML, built from the encoding rules of ACPI 6.5 chapter 20.

    /// `op`, then a PkgLength counting itself and `content`, in the fewest bytes that hold it
    /// (§20.2.4), then `content`.
    fn package(op: &[u8], content: &[u8]) -> Vec<u8> {
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

    fn name(seg: &[u8; 4], value: &[u8]) -> Vec<u8> {
        [&[0x08], &seg[..], value].concat()
    }

    fn string(s: &str) -> Vec<u8> {
        [&[0x0d], s.as_bytes(), &[0]].concat()
    }

    /// `Buffer () {bytes}`, its size a ByteConst or WordConst.
    fn buffer(bytes: &[u8]) -> Vec<u8> {
        let size = match u8::try_from(bytes.len()) {
            Ok(n) => vec![0x0a, n],
            Err(_) => [&[0x0b][..], &(bytes.len() as u16).to_le_bytes()].concat(),
        };
        package(&[0x11], &[&size[..], bytes].concat())
    }

    /// `Device (name) {body}`: ExtOpPrefix DeviceOp PkgLength NameString TermList.
    fn aml_device(seg: &[u8; 4], body: &[Vec<u8>]) -> Vec<u8> {
        package(&[0x5b, 0x82], &[&seg[..], &body.concat()].concat())
    }

    fn memory32_fixed(base: u32, len: u32) -> Vec<u8> {
        [
            &[0x86, 9, 0, 1][..],
            &base.to_le_bytes(),
            &len.to_le_bytes(),
        ]
        .concat()
    }

    /// `Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {irqs}`.
    fn extended_irq(irqs: &[u32]) -> Vec<u8> {
        let len = (2 + 4 * irqs.len()) as u16;
        let mut d = [&[0x89][..], &len.to_le_bytes(), &[0x01, irqs.len() as u8]].concat();
        for irq in irqs {
            d.extend_from_slice(&irq.to_le_bytes());
        }
        d
    }

    const END_TAG: [u8; 2] = [0x79, 0];

    /// A device as QEMU's `virtio_acpi_dsdt_add` (hw/virtio/virtio-acpi.c) declares it, with
    /// `resources` (End Tag added) as its `_CRS`.
    fn virtio_device(index: u8, resources: &[Vec<u8>]) -> Vec<u8> {
        let seg = [b'V', b'R', b'0' + index / 10, b'0' + index % 10];
        let crs = buffer(&[resources.concat(), END_TAG.to_vec()].concat());
        aml_device(
            &seg,
            &[
                name(b"_HID", &string("LNRO0005")),
                name(b"_UID", &[0x0a, index]),
                name(b"_CCA", &[0x01]),
                name(b"_CRS", &crs),
            ],
        )
    }

    fn qemu_device(index: u8) -> Vec<u8> {
        virtio_device(
            index,
            &[
                memory32_fixed(0xfeb0_0000 + u32::from(index) * 0x200, 0x200),
                extended_irq(&[24 + u32::from(index)]),
            ],
        )
    }

    /// `Scope (\_SB) {devices}`.
    fn sb_scope(devices: &[Vec<u8>]) -> Vec<u8> {
        package(&[0x10], &[&b"\\_SB_"[..], &devices.concat()].concat())
    }

    fn scan(aml: &[u8]) -> Vec<Result<MmioDevice, DsdtError>> {
        let mut found = Vec::new();
        scan_dsdt(aml, |d| found.push(d));
        found
    }

    /// Where the first `_HID` "LNRO0005" is after `from`.
    fn hid_at(aml: &[u8], from: usize) -> usize {
        find(aml, from, HID_LNRO0005).unwrap()
    }

    #[test]
    fn two_qemu_devices_in_a_scope_are_both_found() {
        // The second device's _CRS carries a 60-byte vendor descriptor before its window,
        // so its buffer needs a 2-byte PkgLength where the first's takes 1.
        let vendor = [&[0x84, 60, 0][..], &[0xab; 60]].concat();
        let second = virtio_device(
            7,
            &[
                vendor,
                memory32_fixed(0xfeb0_0e00, 0x200),
                extended_irq(&[0x1c, 0x1d]),
            ],
        );
        let first = qemu_device(0);
        let crs_pkg_length = |d: &[u8]| d[find(d, 0, NAME_CRS).unwrap() + 6];
        assert_eq!(crs_pkg_length(&first) >> 6, 0);
        assert_eq!(crs_pkg_length(&second) >> 6, 1);
        let aml = [
            name(b"TEST", &[0x0a, 1]),
            sb_scope(&[first, aml_device(b"COM1", &[]), second]),
        ]
        .concat();
        // The scope is long enough for a 2-byte PkgLength too.
        assert_eq!(aml[8] >> 6, 1);
        assert_eq!(
            scan(&aml),
            [
                Ok(device(0xfeb0_0000, 0x200, Some(24))),
                Ok(device(0xfeb0_0e00, 0x200, Some(0x1c)))
            ]
        );
    }

    #[test]
    fn all_24_microvm_transports_are_found() {
        let devices: Vec<_> = (0..24).map(qemu_device).collect();
        let found = scan(&sb_scope(&devices));
        let expected: Vec<_> = microvm_slots()
            .zip(24..)
            .map(|(slot, irq)| {
                Ok(MmioDevice {
                    irq: Some(irq),
                    ..slot
                })
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn device_without_an_interrupt_has_irq_none_and_legacy_irq_descriptors_count() {
        let no_irq = virtio_device(0, &[memory32_fixed(0xfeb0_0000, 0x200)]);
        // IRQNoFlags () {5}: small item type 4, length 2, mask bit 5.
        let legacy = virtio_device(
            1,
            &[vec![0x22, 0x20, 0x00], memory32_fixed(0xd000_0000, 0x1000)],
        );
        let empty_mask = virtio_device(2, &[vec![0x22, 0, 0], memory32_fixed(0xd000_1000, 0x1000)]);
        assert_eq!(
            scan(&sb_scope(&[no_irq, legacy, empty_mask])),
            [
                Ok(device(0xfeb0_0000, 0x200, None)),
                Ok(device(0xd000_0000, 0x1000, Some(5))),
                Ok(device(0xd000_1000, 0x1000, None)),
            ]
        );
    }

    #[test]
    fn device_without_a_window_is_an_error_and_the_next_one_is_still_found() {
        let aml = sb_scope(&[virtio_device(0, &[extended_irq(&[5])]), qemu_device(1)]);
        let first = hid_at(&aml, 0);
        assert_eq!(
            scan(&aml),
            [
                Err(DsdtError::NoMemoryRange { hid: first }),
                Ok(device(0xfeb0_0200, 0x200, Some(25)))
            ]
        );
    }

    #[test]
    fn crs_is_not_taken_from_the_next_device() {
        // A virtio device without _CRS, then an unrelated device with one.
        let bare = aml_device(b"VR00", &[name(b"_HID", &string("LNRO0005"))]);
        let other = aml_device(
            b"FOO0",
            &[
                name(b"_HID", &string("PNP0C0C")),
                name(
                    b"_CRS",
                    &buffer(&[memory32_fixed(0xfed0_0000, 0x400), END_TAG.to_vec()].concat()),
                ),
            ],
        );
        let aml = sb_scope(&[bare, other]);
        assert_eq!(
            scan(&aml),
            [Err(DsdtError::NoCrs {
                hid: hid_at(&aml, 0)
            })]
        );
        // Nor from past the scan limit.
        let far = [
            name(b"_HID", &string("LNRO0005")),
            vec![0xa3; DEVICE_SCAN_LIMIT], // NoOps
            name(
                b"_CRS",
                &buffer(&[memory32_fixed(0xfeb0_0000, 0x200), END_TAG.to_vec()].concat()),
            ),
        ]
        .concat();
        assert_eq!(scan(&far), [Err(DsdtError::NoCrs { hid: 0 })]);
    }

    #[test]
    fn malformed_crs_buffers_are_errors() {
        let window = memory32_fixed(0xfeb0_0000, 0x200);
        let hid = name(b"_HID", &string("LNRO0005"));
        let cases: [(Vec<u8>, &str); 9] = [
            (name(b"_CRS", &[0x0a, 5]), "it is not a Buffer"),
            (name(b"_CRS", &[0x11, 0x40]), "its PkgLength is malformed"),
            (
                name(b"_CRS", &[0x11, 0x50, 0x00]),
                "its PkgLength is malformed",
            ), // bits 5:4 set
            (
                name(b"_CRS", &[0x11, 0x3f, 0x0a, 0x02]),
                "runs past the end of the AML",
            ),
            (name(b"_CRS", &[0x11, 0x00]), "shorter than itself"),
            (
                name(b"_CRS", &[0x11, 0x03, 0x60, 0x79]),
                "its size is not an integer constant",
            ),
            (name(b"_CRS", &buffer(&window)), "has no End Tag"),
            (
                name(b"_CRS", &buffer(&[&window[..], &[0x86, 9]].concat())),
                "runs past the end of the buffer",
            ),
            (
                name(
                    b"_CRS",
                    &buffer(&[&[0x86, 8, 0][..], &[0; 8], &END_TAG].concat()),
                ),
                "Memory32Fixed descriptor's length is not 9",
            ),
        ];
        for (crs, why) in cases {
            let aml = [hid.clone(), crs].concat();
            let found = scan(&aml);
            assert!(
                matches!(found[..], [Err(DsdtError::BadCrs { hid: 0, why: w })] if w.contains(why)),
                "{why}: {found:?}"
            );
        }
        for irq in [
            extended_irq(&[]),
            vec![0x89, 6, 0, 1, 2, 5, 0, 0, 0],
            vec![0x22, 0x20],
        ] {
            let crs = buffer(&[&window[..], &irq, &END_TAG].concat());
            let found = scan(&[hid.clone(), name(b"_CRS", &crs)].concat());
            assert!(
                matches!(found[..], [Err(DsdtError::BadCrs { .. })]),
                "{irq:x?}: {found:?}"
            );
        }
    }

    #[test]
    fn crs_window_and_irq_are_validated_like_the_command_line() {
        let hid = name(b"_HID", &string("LNRO0005"));
        for (resources, error) in [
            (
                vec![memory32_fixed(0xfeb0_0000, 0x80)],
                MmioEntryError::SizeOutOfRange { size: 0x80 },
            ),
            (
                vec![memory32_fixed(0, 0x200)],
                MmioEntryError::OutsidePhysicalMemory {
                    base: 0,
                    size: 0x200,
                },
            ),
            (
                vec![memory32_fixed(0xfeb0_0001, 0x200)],
                MmioEntryError::Misaligned { base: 0xfeb0_0001 },
            ),
            (
                vec![memory32_fixed(0xfeb0_0000, 0x200), extended_irq(&[256])],
                MmioEntryError::IrqOutOfRange { irq: 256 },
            ),
        ] {
            let crs = buffer(&[resources.concat(), END_TAG.to_vec()].concat());
            let aml = [hid.clone(), name(b"_CRS", &crs)].concat();
            assert_eq!(scan(&aml), [Err(DsdtError::Invalid { hid: 0, error })]);
        }
    }

    #[test]
    fn only_the_first_window_and_interrupt_count_and_buffer_size_may_differ() {
        let resources = [
            extended_irq(&[9]),
            memory32_fixed(0xfeb0_0000, 0x200),
            memory32_fixed(0xfeb0_1000, 0x200),
            extended_irq(&[10]),
            END_TAG.to_vec(),
        ]
        .concat();
        // Buffer (0x100) {...}: declared larger than its initializer.
        let crs = package(&[0x11], &[&[0x0b, 0x00, 0x01][..], &resources].concat());
        let aml = [name(b"_HID", &string("LNRO0005")), name(b"_CRS", &crs)].concat();
        assert_eq!(scan(&aml), [Ok(device(0xfeb0_0000, 0x200, Some(9)))]);
    }

    #[test]
    fn aml_without_virtio_devices_gives_nothing() {
        assert!(scan(&[]).is_empty());
        assert!(scan(&HID_LNRO0005[..HID_LNRO0005.len() - 1]).is_empty());
        let other = aml_device(b"COM1", &[name(b"_HID", &[0x0c, 0x41, 0xd0, 0x05, 0x01])]);
        assert!(scan(&sb_scope(&[other])).is_empty());
    }

    #[test]
    fn dsdt_errors_are_one_line_naming_the_device() {
        for error in [
            DsdtError::NoCrs { hid: 0x1234 },
            DsdtError::BadCrs {
                hid: 0x1234,
                why: "it is not a Buffer",
            },
            DsdtError::NoMemoryRange { hid: 0x1234 },
            DsdtError::Invalid {
                hid: 0x1234,
                error: MmioEntryError::IrqOutOfRange { irq: 0 },
            },
        ] {
            let text = error.to_string();
            assert!(
                text.contains("LNRO0005") && text.contains("0x1234"),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn microvm_slots_are_qemus_layout() {
        assert_eq!(slot_base(0), Some(0xfeb0_0000));
        assert_eq!(slot_base(7), Some(0xfeb0_0e00));
        assert_eq!(slot_base(23), Some(0xfeb0_2e00));
        assert_eq!(slot_base(24), None);
        assert_eq!(slot_base(usize::MAX), None);
        let slots: Vec<_> = microvm_slots().collect();
        assert_eq!(slots.len(), MICROVM_SLOTS);
        for slot in &slots {
            assert_valid(slot);
            assert_eq!(slot.irq, None);
        }
    }

    #[test]
    fn header_check_tells_transports_empty_slots_and_nothing_apart() {
        assert_eq!(check_header(MAGIC_VALUE, 2, 2), Ok(Some(2)));
        assert_eq!(check_header(MAGIC_VALUE, 1, 1), Ok(Some(1)));
        assert_eq!(check_header(MAGIC_VALUE, 2, 0), Ok(None));
        assert_eq!(u32::from_le_bytes(*b"virt"), MAGIC_VALUE);
        for magic in [0, u32::MAX, u32::from_be_bytes(*b"virt")] {
            assert_eq!(
                check_header(magic, 2, 2),
                Err(MmioHeaderError::BadMagic { magic })
            );
        }
        for version in [0, 3, u32::MAX] {
            assert_eq!(
                check_header(MAGIC_VALUE, version, 2),
                Err(MmioHeaderError::UnknownVersion { version })
            );
        }
        let text = MmioHeaderError::BadMagic { magic: u32::MAX }.to_string();
        assert!(
            text.contains("0xffffffff") && text.contains("0x74726976"),
            "{text}"
        );
        let text = MmioHeaderError::UnknownVersion { version: 3 }.to_string();
        assert!(text.contains("version 3"), "{text}");
    }

    /// xorshift64 (Marsaglia 2003), seeded per case so a failure names the case to replay.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed | 1)
        }

        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Prints the case's seed if the case panics, so it can be replayed alone.
    struct SeedOnFailure(u64);

    impl Drop for SeedOnFailure {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("failing case seed: {:#x}", self.0);
            }
        }
    }

    /// Seeds of the random cases: one stream, each seed reproducing one case.
    fn case_seeds(seed: u64, cases: usize) -> impl Iterator<Item = u64> {
        let mut rng = Rng::new(seed);
        (0..cases).map(move |_| rng.next_u64())
    }

    /// Applies 1 to 4 random byte edits to `bytes`: overwrite, insert, delete, truncate.
    fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, alphabet: &[u8]) {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            let byte = match rng.below(3) {
                0 => alphabet[rng.below(alphabet.len())],
                1 => rng.next_u64() as u8,
                _ => [0, 0xff, 0x3f, 0x40, 0x7f, 0x80][rng.below(6)],
            };
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                3 => bytes.truncate(at),
                _ => bytes.insert(at, byte),
            }
        }
    }

    #[test]
    fn random_and_mutated_cmdline_entries_never_panic_and_results_are_valid() {
        const VALID: [&str; 4] = [
            "512@0xfeb00e00:12",
            "0x200@0xfeb00000:5:3",
            "4K@0x10000000:255",
            "1M@0x000ff00000:1:-1",
        ];
        let alphabet = b"0123456789abcdefxXkKmMgGeE@:-+ ";
        let mut accepted = 0;
        for seed in case_seeds(0x5eed_0f7a_1ce5, 20_000) {
            let _report = SeedOnFailure(seed);
            let mut rng = Rng::new(seed);
            let mut value = if rng.below(4) == 0 {
                (0..rng.below(24))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            } else {
                VALID[rng.below(VALID.len())].as_bytes().to_vec()
            };
            mutate(&mut rng, &mut value, alphabet);
            let value = String::from_utf8_lossy(&value);
            if let Ok(d) = parse_cmdline_entry(&value) {
                accepted += 1;
                assert_valid(&d);
            }
            let cmdline =
                format!("a=b virtio_mmio.device={value}\tvirtio_mmio.device=512@0x1000:5");
            for d in cmdline_entries(&cmdline).flatten() {
                assert_valid(&d);
            }
        }
        assert!(accepted > 1_000, "only {accepted} accepted");
    }

    #[test]
    fn random_and_mutated_aml_never_panics_and_results_are_valid() {
        let pristine = [
            sb_scope(&(0..3).map(qemu_device).collect::<Vec<_>>()),
            virtio_device(
                3,
                &[vec![0x22, 0x20, 0], memory32_fixed(0xd000_0000, 0x1000)],
            ),
        ]
        .concat();
        assert_eq!(scan(&pristine).iter().filter(|d| d.is_ok()).count(), 4);
        // Bytes that mean something to the scanner.
        let alphabet = [
            0x08, 0x0a, 0x0b, 0x0c, 0x11, 0x22, 0x79, 0x86, 0x89, 0x09, b'_',
        ];
        let mut found_devices = 0;
        for seed in case_seeds(0xd5d7_5ca0_0001, 20_000) {
            let _report = SeedOnFailure(seed);
            let mut rng = Rng::new(seed);
            let aml = if rng.below(8) == 0 {
                // Random bytes with a few device starts sprinkled in.
                let mut aml: Vec<u8> = (0..rng.below(512)).map(|_| rng.next_u64() as u8).collect();
                for _ in 0..rng.below(4) {
                    let at = rng.below(aml.len() + 1);
                    let piece = if rng.below(2) == 0 {
                        HID_LNRO0005
                    } else {
                        NAME_CRS
                    };
                    aml.splice(at..at, piece.iter().copied());
                }
                aml
            } else {
                let mut aml = pristine.clone();
                mutate(&mut rng, &mut aml, &alphabet);
                aml
            };
            scan_dsdt(&aml, |d| {
                if let Ok(d) = d {
                    found_devices += 1;
                    assert_valid(&d);
                }
            });
        }
        assert!(found_devices > 10_000, "only {found_devices} found");
    }
}
