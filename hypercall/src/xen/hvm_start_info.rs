//! The PVH start-of-day structures, from Xen 4.17
//! `xen/include/public/arch-x86/hvm/start_info.h`.
//!
//! A PVH guest is entered with `ebx` holding the physical address of an [`HvmStartInfo`].
//! QEMU (`-kernel`), Xen and other VMMs all write these structures, and the guest must treat
//! every byte as untrusted. So the kernel does not cast raw memory to these types: it copies
//! the bytes out of physical memory and decodes them with the `from_bytes` constructors,
//! which read each field little-endian at its header-defined offset and never fail except on
//! a short buffer.
//!
//! The header's rule that "nothing will be loaded at physical address 0, so a 0 value in any
//! of the address fields should be treated as not present" applies to every `*_paddr` field.

use core::mem::{offset_of, size_of};

/// `XEN_HVM_START_MAGIC_VALUE`: "xEn3" with the 0x80 bit of the "E" set.
pub const HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `XEN_HVM_MEMMAP_TYPE_RAM`. The type numbers match the ACPI "System Address Map
/// Interfaces" address range types (ACPI 6.2, section 15), i.e. the E820 numbers.
pub const HVM_MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED`.
pub const HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI`: ACPI tables, reclaimable once they are parsed.
pub const HVM_MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS`: ACPI non-volatile storage, never reclaimable.
pub const HVM_MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`: memory with detected errors.
pub const HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED`.
pub const HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM`: persistent memory.
pub const HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// `struct hvm_start_info`, version 1 layout (56 bytes).
///
/// Version 0 ends after `rsdp_paddr` (40 bytes, [`HvmStartInfo::V0_SIZE`]); version 1 added
/// `memmap_paddr`, `memmap_entries` and `reserved`. The header promises that later versions
/// stay backwards-compatible, so a version above 1 is read with this layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// Must be [`HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure.
    pub version: u32,
    /// `SIF_*` flags from `xen/include/public/xen.h`.
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: u64,
    /// Physical address of the command line, a zero-terminated ASCII string.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of an array of [`HvmMemmapTableEntry`] (version 1 and newer).
    pub memmap_paddr: u64,
    /// Number of entries at `memmap_paddr`; zero when no memory map is provided
    /// (version 1 and newer).
    pub memmap_entries: u32,
    /// Must be zero (version 1 and newer).
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvmStartInfo>() == 56);
const _: () = assert!(offset_of!(HvmStartInfo, magic) == 0);
const _: () = assert!(offset_of!(HvmStartInfo, version) == 4);
const _: () = assert!(offset_of!(HvmStartInfo, flags) == 8);
const _: () = assert!(offset_of!(HvmStartInfo, nr_modules) == 12);
const _: () = assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
const _: () = assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
const _: () = assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_paddr) == HvmStartInfo::V0_SIZE);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);
const _: () = assert!(offset_of!(HvmStartInfo, reserved) == 52);

impl HvmStartInfo {
    /// Size of the version 1 (and current) layout.
    pub const SIZE: usize = 56;
    /// Size of the version 0 layout, which ends after `rsdp_paddr`.
    pub const V0_SIZE: usize = 40;

    /// Decodes the full (version 1) layout from the first [`Self::SIZE`] bytes of `bytes`.
    /// Returns `None` if `bytes` is shorter. No field is validated here.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        let mut info = Self::from_bytes_v0(bytes)?;
        info.memmap_paddr = le_u64(bytes, 40)?;
        info.memmap_entries = le_u32(bytes, 48)?;
        info.reserved = le_u32(bytes, 52)?;
        Some(info)
    }

    /// Decodes only the version 0 fields from the first [`Self::V0_SIZE`] bytes of `bytes`;
    /// the version 1 fields are zero. Use it to learn `magic` and `version` without touching
    /// bytes that a version 0 producer never wrote (they may lie past readable memory).
    pub fn from_bytes_v0(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::V0_SIZE)?;
        Some(Self {
            magic: le_u32(bytes, 0)?,
            version: le_u32(bytes, 4)?,
            flags: le_u32(bytes, 8)?,
            nr_modules: le_u32(bytes, 12)?,
            modlist_paddr: le_u64(bytes, 16)?,
            cmdline_paddr: le_u64(bytes, 24)?,
            rsdp_paddr: le_u64(bytes, 32)?,
            memmap_paddr: 0,
            memmap_entries: 0,
            reserved: 0,
        })
    }

    /// Encodes the version 1 layout; tests and fake VMMs use it to build guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0; Self::SIZE];
        put(&mut out, 0, &self.magic.to_le_bytes());
        put(&mut out, 4, &self.version.to_le_bytes());
        put(&mut out, 8, &self.flags.to_le_bytes());
        put(&mut out, 12, &self.nr_modules.to_le_bytes());
        put(&mut out, 16, &self.modlist_paddr.to_le_bytes());
        put(&mut out, 24, &self.cmdline_paddr.to_le_bytes());
        put(&mut out, 32, &self.rsdp_paddr.to_le_bytes());
        put(&mut out, 40, &self.memmap_paddr.to_le_bytes());
        put(&mut out, 48, &self.memmap_entries.to_le_bytes());
        put(&mut out, 52, &self.reserved.to_le_bytes());
        out
    }
}

/// `struct hvm_modlist_entry` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Physical address of the module's command line, a zero-terminated ASCII string.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

const _: () = assert!(size_of::<HvmModlistEntry>() == 32);
const _: () = assert!(offset_of!(HvmModlistEntry, paddr) == 0);
const _: () = assert!(offset_of!(HvmModlistEntry, size) == 8);
const _: () = assert!(offset_of!(HvmModlistEntry, cmdline_paddr) == 16);
const _: () = assert!(offset_of!(HvmModlistEntry, reserved) == 24);

impl HvmModlistEntry {
    /// Size of one entry in the module list array.
    pub const SIZE: usize = 32;

    /// Decodes an entry from the first [`Self::SIZE`] bytes; `None` if `bytes` is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            paddr: le_u64(bytes, 0)?,
            size: le_u64(bytes, 8)?,
            cmdline_paddr: le_u64(bytes, 16)?,
            reserved: le_u64(bytes, 24)?,
        })
    }

    /// Encodes the entry; tests and fake VMMs use it to build guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0; Self::SIZE];
        put(&mut out, 0, &self.paddr.to_le_bytes());
        put(&mut out, 8, &self.size.to_le_bytes());
        put(&mut out, 16, &self.cmdline_paddr.to_le_bytes());
        put(&mut out, 24, &self.reserved.to_le_bytes());
        out
    }
}

/// `struct hvm_memmap_table_entry` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapTableEntry {
    /// Base address of the memory region.
    pub addr: u64,
    /// Size of the memory region in bytes.
    pub size: u64,
    /// One of the `HVM_MEMMAP_TYPE_*` values (others may appear: treat them as reserved).
    pub r#type: u32,
    /// Must be zero for version 1.
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvmMemmapTableEntry>() == 24);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, addr) == 0);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, size) == 8);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, r#type) == 16);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, reserved) == 20);

impl HvmMemmapTableEntry {
    /// Size of one entry in the memory map table.
    pub const SIZE: usize = 24;

    /// Decodes an entry from the first [`Self::SIZE`] bytes; `None` if `bytes` is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            addr: le_u64(bytes, 0)?,
            size: le_u64(bytes, 8)?,
            r#type: le_u32(bytes, 16)?,
            reserved: le_u32(bytes, 20)?,
        })
    }

    /// Encodes the entry; tests and fake VMMs use it to build guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0; Self::SIZE];
        put(&mut out, 0, &self.addr.to_le_bytes());
        put(&mut out, 8, &self.size.to_le_bytes());
        put(&mut out, 16, &self.r#type.to_le_bytes());
        put(&mut out, 20, &self.reserved.to_le_bytes());
        out
    }
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Copies `field` into `out` at `offset`; every caller passes an in-bounds constant offset.
fn put(out: &mut [u8], offset: usize, field: &[u8]) {
    if let Some(dst) = out.get_mut(offset..offset + field.len()) {
        dst.copy_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start info QEMU writes for `-kernel` on microvm, as bytes (little-endian).
    fn qemu_like_bytes() -> [u8; 56] {
        let mut b = [0u8; 56];
        b[0..4].copy_from_slice(&[0x78, 0xc5, 0x6e, 0x33]);
        b[4] = 1; // version
        b[12] = 1; // nr_modules
        b[16..24].copy_from_slice(&0x6000u64.to_le_bytes());
        b[24..32].copy_from_slice(&0x2_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&0xf_5ae0u64.to_le_bytes());
        b[40..48].copy_from_slice(&0x7000u64.to_le_bytes());
        b[48] = 4; // memmap_entries
        b
    }

    #[test]
    fn start_info_decodes_fields_at_header_offsets() {
        let info = HvmStartInfo::from_bytes(&qemu_like_bytes()).unwrap();
        assert_eq!(info.magic, HVM_START_MAGIC_VALUE);
        assert_eq!(info.version, 1);
        assert_eq!(info.flags, 0);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, 0x6000);
        assert_eq!(info.cmdline_paddr, 0x2_0000);
        assert_eq!(info.rsdp_paddr, 0xf_5ae0);
        assert_eq!(info.memmap_paddr, 0x7000);
        assert_eq!(info.memmap_entries, 4);
        assert_eq!(info.reserved, 0);
    }

    #[test]
    fn start_info_round_trips_through_bytes() {
        let bytes = qemu_like_bytes();
        let info = HvmStartInfo::from_bytes(&bytes).unwrap();
        assert_eq!(info.to_bytes(), bytes);
    }

    #[test]
    fn short_buffers_are_refused_not_read_past() {
        let bytes = qemu_like_bytes();
        for len in 0..HvmStartInfo::SIZE {
            assert_eq!(HvmStartInfo::from_bytes(&bytes[..len]), None, "len {len}");
        }
        for len in 0..HvmStartInfo::V0_SIZE {
            assert_eq!(
                HvmStartInfo::from_bytes_v0(&bytes[..len]),
                None,
                "len {len}"
            );
        }
        assert_eq!(HvmModlistEntry::from_bytes(&[0; 31]), None);
        assert_eq!(HvmMemmapTableEntry::from_bytes(&[0; 23]), None);
    }

    #[test]
    fn version_0_decoding_ignores_the_version_1_tail() {
        let bytes = qemu_like_bytes();
        let v0 = HvmStartInfo::from_bytes_v0(&bytes[..HvmStartInfo::V0_SIZE]).unwrap();
        assert_eq!(v0.rsdp_paddr, 0xf_5ae0);
        assert_eq!((v0.memmap_paddr, v0.memmap_entries), (0, 0));
    }

    #[test]
    fn longer_buffers_decode_only_the_struct_prefix() {
        let mut bytes = [0xffu8; 80];
        bytes[..56].copy_from_slice(&qemu_like_bytes());
        assert_eq!(
            HvmStartInfo::from_bytes(&bytes),
            HvmStartInfo::from_bytes(&qemu_like_bytes())
        );
    }

    #[test]
    fn memmap_entry_decodes_and_round_trips() {
        let entry = HvmMemmapTableEntry {
            addr: 0x10_0000,
            size: 0x7f0_0000,
            r#type: HVM_MEMMAP_TYPE_RAM,
            reserved: 0,
        };
        let bytes = entry.to_bytes();
        assert_eq!(&bytes[0..8], &0x10_0000u64.to_le_bytes());
        assert_eq!(&bytes[16..20], &1u32.to_le_bytes());
        assert_eq!(HvmMemmapTableEntry::from_bytes(&bytes), Some(entry));
    }

    #[test]
    fn modlist_entry_decodes_and_round_trips() {
        let entry = HvmModlistEntry {
            paddr: 0x700_0000,
            size: 12345,
            cmdline_paddr: 0x2_1000,
            reserved: 0,
        };
        let bytes = entry.to_bytes();
        assert_eq!(&bytes[8..16], &12345u64.to_le_bytes());
        assert_eq!(HvmModlistEntry::from_bytes(&bytes), Some(entry));
    }

    #[test]
    fn memmap_type_numbers_match_the_header() {
        assert_eq!(
            [
                HVM_MEMMAP_TYPE_RAM,
                HVM_MEMMAP_TYPE_RESERVED,
                HVM_MEMMAP_TYPE_ACPI,
                HVM_MEMMAP_TYPE_NVS,
                HVM_MEMMAP_TYPE_UNUSABLE,
                HVM_MEMMAP_TYPE_DISABLED,
                HVM_MEMMAP_TYPE_PMEM,
            ],
            [1, 2, 3, 4, 5, 6, 7]
        );
    }
}
