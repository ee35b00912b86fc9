//! Typed wrappers for the hypercalls the kernel makes at boot and in its self-tests.

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `XENVER_version` (xen/include/public/version.h): `major << 16 | minor`.
const XENVER_VERSION: u64 = 0;
/// `CONSOLEIO_write` (xen/include/public/xen.h).
const CONSOLEIO_WRITE: u64 = 0;
/// `SCHEDOP_shutdown` (xen/include/public/sched.h).
const SCHEDOP_SHUTDOWN: u64 = 2;
/// `XENMEM_add_to_physmap` (xen/include/public/memory.h).
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMEM_memory_map`: this domain's pseudo-physical memory map.
const XENMEM_MEMORY_MAP: u64 = 9;
/// `XENMAPSPACE_shared_info`.
const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `HVMOP_get_param` (xen/include/public/hvm/hvm_op.h).
const HVMOP_GET_PARAM: u64 = 1;

/// `DOMID_SELF` (xen/include/public/xen.h).
pub const DOMID_SELF: u16 = 0x7ff0;

/// Xen's version as `(major, minor)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub fn from_raw(raw: u64) -> Self {
        Self {
            major: (raw >> 16) as u16,
            minor: raw as u16,
        }
    }
}

/// `SHUTDOWN_*` reasons (xen/include/public/sched.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = 0,
    Reboot = 1,
    Suspend = 2,
    Crash = 3,
    Watchdog = 4,
}

/// `struct sched_shutdown` (xen/include/public/sched.h).
#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

const _: () = assert!(size_of::<SchedShutdown>() == 4);

/// `struct xen_add_to_physmap` (xen/include/public/memory.h).
#[repr(C)]
pub struct XenAddToPhysmap {
    pub domid: u16,
    /// Only for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}

const _: () = assert!(size_of::<XenAddToPhysmap>() == 24);
const _: () = assert!(core::mem::offset_of!(XenAddToPhysmap, space) == 4);
const _: () = assert!(core::mem::offset_of!(XenAddToPhysmap, idx) == 8);
const _: () = assert!(core::mem::offset_of!(XenAddToPhysmap, gpfn) == 16);

/// `struct xen_memory_map` (xen/include/public/memory.h). `nr_entries` is the buffer's
/// capacity going in and the number written coming out.
#[repr(C)]
struct XenMemoryMap {
    nr_entries: u32,
    buffer: u64,
}

const _: () = assert!(size_of::<XenMemoryMap>() == 16);
const _: () = assert!(core::mem::offset_of!(XenMemoryMap, buffer) == 8);

/// Xen writes the map as packed `struct e820entry { u64 addr; u64 size; u32 type; }`
/// (xen/arch/x86/include/asm/e820.h), 20 bytes each.
pub const E820_ENTRY_SIZE: usize = 20;

/// Decodes `count` packed e820 entries as `(addr, size, type)`.
pub fn e820_entries(raw: &[u8]) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
    raw.chunks_exact(E820_ENTRY_SIZE).map(|e| {
        let word = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap_or_default());
        let kind = u32::from_le_bytes(e[16..20].try_into().unwrap_or_default());
        (word(0), word(8), kind)
    })
}

/// `struct xen_hvm_param` (xen/include/public/hvm/hvm_op.h).
#[repr(C)]
pub struct XenHvmParam {
    pub domid: u16,
    pub index: u32,
    pub value: u64,
}

const _: () = assert!(size_of::<XenHvmParam>() == 16);
const _: () = assert!(core::mem::offset_of!(XenHvmParam, index) == 4);
const _: () = assert!(core::mem::offset_of!(XenHvmParam, value) == 8);

impl HypercallPage {
    pub fn xen_version(&self) -> Result<Version, XenError> {
        // SAFETY: XENVER_version takes no buffer.
        let raw = check(unsafe { self.call(number::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]) })?;
        Ok(Version::from_raw(raw))
    }

    /// Writes to Xen's console. Only the hardware domain (dom0) may; a domU gets `EPERM`
    /// unless Xen runs with guest console output enabled.
    pub fn console_write(&self, text: &[u8]) -> Result<(), XenError> {
        for chunk in text.chunks(u32::MAX as usize) {
            let args = [
                CONSOLEIO_WRITE,
                chunk.len() as u64,
                chunk.as_ptr() as u64,
                0,
                0,
            ];
            // SAFETY: Xen reads `len` bytes from the live slice.
            check(unsafe { self.call(number::CONSOLE_IO, args) })?;
        }
        Ok(())
    }

    /// Asks Xen to stop this domain. Xen may still return before the domain is gone, so the
    /// caller halts afterwards either way.
    pub fn shutdown(&self, reason: ShutdownReason) -> Result<(), XenError> {
        let arg = SchedShutdown {
            reason: reason as u32,
        };
        let args = [SCHEDOP_SHUTDOWN, &raw const arg as u64, 0, 0, 0];
        // SAFETY: Xen reads the live `sched_shutdown` struct.
        check(unsafe { self.call(number::SCHED_OP, args) }).map(|_| ())
    }

    /// Places this domain's shared info page at guest frame `gpfn`.
    pub fn map_shared_info(&self, gpfn: u64) -> Result<(), XenError> {
        let request = XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn,
        };
        let args = [XENMEM_ADD_TO_PHYSMAP, &raw const request as u64, 0, 0, 0];
        // SAFETY: Xen reads the live request struct.
        check(unsafe { self.call(number::MEMORY_OP, args) }).map(|_| ())
    }

    /// Fills `buffer` with this domain's memory map as packed e820 entries and returns the
    /// bytes written (decode them with [`e820_entries`]). A count larger than the buffer
    /// holds is refused with `E2BIG` rather than trusted.
    pub fn memory_map<'b>(&self, buffer: &'b mut [u8]) -> Result<&'b [u8], XenError> {
        let capacity = buffer.len() / E820_ENTRY_SIZE;
        let mut request = XenMemoryMap {
            nr_entries: u32::try_from(capacity).unwrap_or(u32::MAX),
            buffer: buffer.as_mut_ptr() as u64,
        };
        let args = [XENMEM_MEMORY_MAP, &raw mut request as u64, 0, 0, 0];
        // SAFETY: Xen writes at most `nr_entries` entries into the live buffer.
        check(unsafe { self.call(number::MEMORY_OP, args) })?;
        let count = request.nr_entries as usize;
        if count > capacity {
            return Err(XenError::E2big);
        }
        Ok(&buffer[..count * E820_ENTRY_SIZE])
    }

    /// Reads HVM parameter `index` (`HVM_PARAM_*`) of this domain.
    pub fn hvm_get_param(&self, index: u32) -> Result<u64, XenError> {
        let mut param = XenHvmParam {
            domid: DOMID_SELF,
            index,
            value: 0,
        };
        let args = [HVMOP_GET_PARAM, &raw mut param as u64, 0, 0, 0];
        // SAFETY: Xen reads and writes the live param struct.
        check(unsafe { self.call(number::HVM_OP, args) })?;
        Ok(param.value)
    }

    /// Makes a hypercall with a number Xen does not implement: the self-test expects
    /// `ENOSYS`, proving bad requests come back as errors.
    pub fn unknown_hypercall(&self) -> Result<u64, XenError> {
        // SAFETY: the last slot of the page is not a defined hypercall; Xen's stub returns
        // -ENOSYS without touching memory.
        check(unsafe { self.call(number::SLOTS - 1, [0; 5]) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_entries_decode_packed_records() {
        let mut raw = std::vec::Vec::new();
        for (addr, size, kind) in [(0u64, 0x9_f000u64, 1u32), (0x10_0000, 0x3ff0_0000, 1)] {
            raw.extend_from_slice(&addr.to_le_bytes());
            raw.extend_from_slice(&size.to_le_bytes());
            raw.extend_from_slice(&kind.to_le_bytes());
        }
        raw.extend_from_slice(&[0xff; 7]);
        let entries: std::vec::Vec<_> = e820_entries(&raw).collect();
        assert_eq!(entries, [(0, 0x9_f000, 1), (0x10_0000, 0x3ff0_0000, 1)]);
    }

    #[test]
    fn version_decodes_major_and_minor() {
        assert_eq!(
            Version::from_raw(0x0004_0011),
            Version {
                major: 4,
                minor: 17
            }
        );
    }
}
