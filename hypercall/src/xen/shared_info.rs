//! The shared info page and the per-vCPU time record.
//!
//! Layouts from Xen 4.17 `xen/include/public/xen.h` (`vcpu_time_info`, `vcpu_info`,
//! `shared_info`), `arch-x86/xen.h` (`arch_shared_info`, `XEN_LEGACY_MAX_VCPUS`) and
//! `arch-x86/xen-x86_64.h` (`arch_vcpu_info`), x86_64 layout. KVM's `pvclock_vcpu_time_info`
//! (Linux `arch/x86/include/asm/pvclock-abi.h`) has the same 32-byte layout, so
//! [`VcpuTimeInfo`] and [`read_time_info`] serve kvmclock too.
//!
//! The hypervisor writes these records while the guest reads them. Xen brackets every update
//! with two increments of a version field (odd while an update is in progress); the reader
//! follows the seqlock protocol in [`read_versioned`]. The host is untrusted: a version that
//! never settles is an error after a bounded number of attempts, never a hang.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, compiler_fence};

use super::event_channel::EvtchnPort;

/// `XEN_LEGACY_MAX_VCPUS` (x86): the vCPUs whose `vcpu_info` lives in the shared info page.
/// Others must register a `vcpu_info` elsewhere (`VCPUOP_register_vcpu_info`).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` in [`VcpuTimeInfo::flags`]: time read on different vCPUs
/// is monotonic across them (KVM's `PVCLOCK_TSC_STABLE_BIT`, offered when CPUID
/// 0x4000_0001 has `KVM_FEATURE_CLOCKSOURCE_STABLE_BIT`).
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` in [`VcpuTimeInfo::flags`]: the host paused the vCPU
/// (KVM's `PVCLOCK_GUEST_STOPPED`).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// How many times [`VcpuTimeInfoRef::read`] and [`SharedInfoRef::read_wallclock`] retry
/// before reporting [`SeqlockTimeout`]. Xen updates a record in well under a microsecond, on
/// the vCPU's own physical CPU before resuming it, so a reader that keeps seeing an update
/// in progress for this many rounds is facing a broken host.
pub const SEQLOCK_MAX_ATTEMPTS: u32 = 1024;

/// `struct vcpu_time_info` (xen/include/public/xen.h), 32 bytes; identical to KVM's
/// `struct pvclock_vcpu_time_info`.
///
/// System time in ns is
/// `system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`,
/// with a negative `tsc_shift` shifting right.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Odd while the hypervisor updates the record; see [`read_versioned`].
    pub version: u32,
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at the last update.
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` bits (interface version > 0x040600; older hosts leave it zero).
    pub flags: u8,
    pub pad1: [u8; 2],
}

const _: () = assert!(size_of::<VcpuTimeInfo>() == 32);
const _: () = assert!(offset_of!(VcpuTimeInfo, version) == 0);
const _: () = assert!(offset_of!(VcpuTimeInfo, pad0) == 4);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_timestamp) == 8);
const _: () = assert!(offset_of!(VcpuTimeInfo, system_time) == 16);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_shift) == 28);
const _: () = assert!(offset_of!(VcpuTimeInfo, flags) == 29);
const _: () = assert!(offset_of!(VcpuTimeInfo, pad1) == 30);

impl VcpuTimeInfo {
    /// Whether the host promises monotonic time across vCPUs.
    pub fn tsc_stable(&self) -> bool {
        self.flags & XEN_PVCLOCK_TSC_STABLE_BIT != 0
    }

    /// Whether the host reports that it paused this vCPU.
    pub fn guest_stopped(&self) -> bool {
        self.flags & XEN_PVCLOCK_GUEST_STOPPED != 0
    }
}

/// `struct arch_vcpu_info` (xen/include/public/arch-x86/xen-x86_64.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    /// The faulting address of a PV guest's last page fault.
    pub cr2: u64,
    /// Keeps `sizeof(vcpu_info_t) == 64`.
    pub pad: u64,
}

const _: () = assert!(size_of::<ArchVcpuInfo>() == 16);
const _: () = assert!(offset_of!(ArchVcpuInfo, cr2) == 0);
const _: () = assert!(offset_of!(ArchVcpuInfo, pad) == 8);

/// `struct vcpu_info` (xen/include/public/xen.h), 64 bytes on x86.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU; the guest clears it before it
    /// scans for work.
    pub evtchn_upcall_pending: u8,
    /// Non-zero masks event upcalls to this vCPU (x86 has `XEN_HAVE_PV_UPCALL_MASK`).
    pub evtchn_upcall_mask: u8,
    /// One bit per word of [`SharedInfo::evtchn_pending`] that has a pending event.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

const _: () = assert!(size_of::<VcpuInfo>() == 64);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_pending) == 0);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
const _: () = assert!(offset_of!(VcpuInfo, arch) == 16);
const _: () = assert!(offset_of!(VcpuInfo, time) == 32);

/// `struct arch_shared_info` (xen/include/public/arch-x86/xen.h), x86_64: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// Number of valid entries in the P2M list(s).
    pub max_pfn: u64,
    /// Frame of the three-level P2M frame list list (0: not set up, !0: invalid).
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    /// When non-zero, the CR3 of the address space where `p2m_vaddr` is valid.
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list.
    pub p2m_vaddr: u64,
    /// Odd while the guest changes the P2M list's mappings.
    pub p2m_generation: u64,
}

const _: () = assert!(size_of::<ArchSharedInfo>() == 48);
const _: () = assert!(offset_of!(ArchSharedInfo, max_pfn) == 0);
const _: () = assert!(offset_of!(ArchSharedInfo, pfn_to_mfn_frame_list_list) == 8);
const _: () = assert!(offset_of!(ArchSharedInfo, nmi_reason) == 16);
const _: () = assert!(offset_of!(ArchSharedInfo, p2m_cr3) == 24);
const _: () = assert!(offset_of!(ArchSharedInfo, p2m_vaddr) == 32);
const _: () = assert!(offset_of!(ArchSharedInfo, p2m_generation) == 40);

/// `struct shared_info` (xen/include/public/xen.h), x86_64: 3136 bytes at the start of
/// the shared info page. The header warns that the size may grow within compatible
/// versions; the fields here do not move.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Event channel pending bits (2-level ABI), one per port.
    pub evtchn_pending: [u64; 64],
    /// Event channel mask bits, one per port; only the guest writes them.
    pub evtchn_mask: [u64; 64],
    /// Seqlock version of the wallclock fields.
    pub wc_version: u32,
    /// Wallclock at system time zero: seconds since the Unix epoch, low 32 bits.
    pub wc_sec: u32,
    pub wc_nsec: u32,
    /// High 32 bits of the wallclock seconds (x86_64 keeps it here, not in `arch`).
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

const _: () = assert!(size_of::<SharedInfo>() == 3136);
const _: () = assert!(offset_of!(SharedInfo, vcpu_info) == 0);
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
const _: () = assert!(offset_of!(SharedInfo, wc_version) == 3072);
const _: () = assert!(offset_of!(SharedInfo, wc_sec) == 3076);
const _: () = assert!(offset_of!(SharedInfo, wc_nsec) == 3080);
const _: () = assert!(offset_of!(SharedInfo, wc_sec_hi) == 3084);
const _: () = assert!(offset_of!(SharedInfo, arch) == 3088);
const _: () = assert!(size_of::<SharedInfo>() <= 4096);

/// Byte offsets for the kernel's assembly (event upcall, page-fault entry), which cannot
/// name fields: within a [`VcpuInfo`], and of the event bit arrays within [`SharedInfo`].
pub mod offsets {
    use super::{ArchVcpuInfo, SharedInfo, VcpuInfo};
    use core::mem::{offset_of, size_of};

    pub const VCPU_INFO_SIZE: usize = size_of::<VcpuInfo>();
    pub const VCPU_INFO_UPCALL_PENDING: usize = offset_of!(VcpuInfo, evtchn_upcall_pending);
    pub const VCPU_INFO_UPCALL_MASK: usize = offset_of!(VcpuInfo, evtchn_upcall_mask);
    pub const VCPU_INFO_PENDING_SEL: usize = offset_of!(VcpuInfo, evtchn_pending_sel);
    /// `arch.cr2`.
    pub const VCPU_INFO_CR2: usize = offset_of!(VcpuInfo, arch) + offset_of!(ArchVcpuInfo, cr2);
    pub const VCPU_INFO_TIME: usize = offset_of!(VcpuInfo, time);
    pub const SHARED_INFO_EVTCHN_PENDING: usize = offset_of!(SharedInfo, evtchn_pending);
    pub const SHARED_INFO_EVTCHN_MASK: usize = offset_of!(SharedInfo, evtchn_mask);

    // The values the x86_64 headers give.
    const _: () = assert!(VCPU_INFO_SIZE == 64);
    const _: () = assert!(VCPU_INFO_UPCALL_PENDING == 0);
    const _: () = assert!(VCPU_INFO_UPCALL_MASK == 1);
    const _: () = assert!(VCPU_INFO_PENDING_SEL == 8);
    const _: () = assert!(VCPU_INFO_CR2 == 16);
    const _: () = assert!(VCPU_INFO_TIME == 32);
    const _: () = assert!(SHARED_INFO_EVTCHN_PENDING == 2048);
    const _: () = assert!(SHARED_INFO_EVTCHN_MASK == 2560);
}

/// `EVTCHN_2L_NR_CHANNELS` (xen/include/public/event_channel.h): the ports of the
/// 2-level event ABI, one bit each in [`SharedInfo::evtchn_pending`] and
/// [`SharedInfo::evtchn_mask`].
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;

/// The word of the event bit arrays holding `port`, and its bit there.
///
/// # Panics
/// If `port` is not below [`EVTCHN_2L_NR_CHANNELS`]: Xen hands out no such port under the
/// 2-level ABI, so the caller mixed something up.
fn port_bit(port: EvtchnPort) -> (usize, u64) {
    assert!(
        port.0 < EVTCHN_2L_NR_CHANNELS,
        "{port} is beyond the {EVTCHN_2L_NR_CHANNELS} ports of the 2-level event ABI"
    );
    ((port.0 / 64) as usize, 1 << (port.0 % 64))
}

/// The ports an event upcall should handle, in order (the 2-level scan of
/// xen/include/public/xen.h): for each word named by a set bit of `selector` (taken with
/// [`VcpuInfoRef::take_pending_sel`]), the ports pending and not masked in it. `pending`
/// and `mask` read word `i` of [`SharedInfo::evtchn_pending`] and
/// [`SharedInfo::evtchn_mask`]; each word is read once, when the scan reaches it, so a bit
/// set meanwhile in a later word is still seen.
///
/// A pending port that is masked is skipped and keeps its pending bit: Xen sets no selector
/// bit for it, and `EVTCHNOP_unmask` raises it again (`evtchn_2l_set_pending`,
/// `evtchn_2l_unmask`, xen/common/event_2l.c).
pub fn ready_ports(
    selector: u64,
    mut pending: impl FnMut(usize) -> u64,
    mut mask: impl FnMut(usize) -> u64,
) -> impl Iterator<Item = EvtchnPort> {
    set_bits(selector).flat_map(move |word| {
        let ready = pending(word) & !mask(word);
        set_bits(ready).map(move |bit| EvtchnPort((word * 64 + bit) as u32))
    })
}

/// The indices of the set bits of `bits`, lowest first.
fn set_bits(mut bits: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let bit = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(bit)
    })
}

impl SharedInfo {
    /// An all-zero page, as Xen hands it over before any update; tests build on it.
    pub const fn zeroed() -> Self {
        const ZERO_VCPU: VcpuInfo = VcpuInfo {
            evtchn_upcall_pending: 0,
            evtchn_upcall_mask: 0,
            evtchn_pending_sel: 0,
            arch: ArchVcpuInfo { cr2: 0, pad: 0 },
            time: VcpuTimeInfo {
                version: 0,
                pad0: 0,
                tsc_timestamp: 0,
                system_time: 0,
                tsc_to_system_mul: 0,
                tsc_shift: 0,
                flags: 0,
                pad1: [0; 2],
            },
        };
        Self {
            vcpu_info: [ZERO_VCPU; XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; 64],
            evtchn_mask: [0; 64],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            wc_sec_hi: 0,
            arch: ArchSharedInfo {
                max_pfn: 0,
                pfn_to_mfn_frame_list_list: 0,
                nmi_reason: 0,
                p2m_cr3: 0,
                p2m_vaddr: 0,
                p2m_generation: 0,
            },
        }
    }
}

/// A versioned record never held still: the host kept it mid-update (odd version) or kept
/// changing it for every one of `attempts` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqlockTimeout {
    pub attempts: u32,
}

impl fmt::Display for SeqlockTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hypervisor time record still changing after {} reads: \
             the host never finished an update",
            self.attempts
        )
    }
}

/// Reads a record the hypervisor guards with a version counter (the Linux seqlock
/// protocol the header points to): read the version; if it is odd an update is in
/// progress, so retry; else read the fields, re-read the version, and accept the fields
/// only if it did not change. At most `max_attempts` rounds (at least one).
///
/// `version` and `fields` stand for the (volatile) reads of the live record, so host tests
/// can play a writer that updates between any two reads.
pub fn read_versioned<T>(
    mut version: impl FnMut() -> u32,
    mut fields: impl FnMut() -> T,
    max_attempts: u32,
) -> Result<T, SeqlockTimeout> {
    let attempts = max_attempts.max(1);
    for _ in 0..attempts {
        let before = version();
        if before & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        // x86 does not reorder loads with other loads (Intel SDM vol. 3A, "Memory Ordering
        // in P6 and More Recent Processor Families"), so only the compiler must be kept from
        // moving the field reads across the version reads: Linux's `virt_rmb()` is a
        // compiler barrier on x86 too.
        compiler_fence(Ordering::Acquire);
        let value = fields();
        compiler_fence(Ordering::Acquire);
        if version() == before {
            return Ok(value);
        }
    }
    Err(SeqlockTimeout { attempts })
}

/// Reads a [`VcpuTimeInfo`] consistently through `read_version` and `read_record` (whose
/// `version` field is ignored); the result carries the version it was read under.
pub fn read_time_info(
    mut read_version: impl FnMut() -> u32,
    mut read_record: impl FnMut() -> VcpuTimeInfo,
    max_attempts: u32,
) -> Result<VcpuTimeInfo, SeqlockTimeout> {
    let mut version_seen = 0;
    let mut info = read_versioned(
        || {
            version_seen = read_version();
            version_seen
        },
        &mut read_record,
        max_attempts,
    )?;
    info.version = version_seen;
    Ok(info)
}

/// A live [`VcpuTimeInfo`] the hypervisor updates: in the shared info page, in a
/// `VCPUOP_register_vcpu_time_memory_area` copy, or in the page given to KVM's
/// `MSR_KVM_SYSTEM_TIME_NEW`.
#[derive(Clone, Copy, Debug)]
pub struct VcpuTimeInfoRef {
    ptr: NonNull<VcpuTimeInfo>,
}

// SAFETY: the record is only ever read, with volatile loads, and the constructor's caller
// promised that it stays mapped for the value's lifetime; which CPU reads does not matter.
unsafe impl Send for VcpuTimeInfoRef {}
// SAFETY: as above; shared references only perform reads.
unsafe impl Sync for VcpuTimeInfoRef {}

impl VcpuTimeInfoRef {
    /// # Safety
    /// `ptr` must point at a mapped, 8-byte aligned [`VcpuTimeInfo`] that stays readable
    /// for as long as this value (or a copy) exists. Only the hypervisor may write it.
    pub const unsafe fn new(ptr: NonNull<VcpuTimeInfo>) -> Self {
        Self { ptr }
    }

    /// One consistent snapshot (see [`read_versioned`]).
    pub fn read(&self) -> Result<VcpuTimeInfo, SeqlockTimeout> {
        read_time_info(
            || self.read_version(),
            || self.read_record(),
            SEQLOCK_MAX_ATTEMPTS,
        )
    }

    /// The version field alone, for a seqlock reader of its own.
    pub fn read_version(&self) -> u32 {
        // SAFETY: `ptr` is valid and aligned (constructor contract); volatile because the
        // hypervisor writes the record behind the compiler's back.
        unsafe { (&raw const (*self.ptr.as_ptr()).version).read_volatile() }
    }

    /// The whole record, possibly torn by a concurrent update: only meaningful between two
    /// equal, even [`Self::read_version`]s.
    pub fn read_record(&self) -> VcpuTimeInfo {
        // SAFETY: as in `read_version`.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }
}

/// Wallclock time at system time zero (`shared_info.wc_*`): add the system time to get
/// the current wallclock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Seconds since the Unix epoch (`wc_sec_hi << 32 | wc_sec`).
    pub sec: u64,
    pub nsec: u32,
}

/// The mapped shared info page.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfoRef {
    ptr: NonNull<SharedInfo>,
}

// SAFETY: only volatile reads and atomic accesses of a page that stays mapped (constructor
// contract), which are sound from any CPU.
unsafe impl Send for SharedInfoRef {}
// SAFETY: as above.
unsafe impl Sync for SharedInfoRef {}

impl SharedInfoRef {
    /// # Safety
    /// `ptr` must point at the domain's mapped shared info page (page-aligned), readable
    /// and writable for as long as this value (or a copy) exists. Other writers (Xen, the
    /// kernel's assembly) must use atomic or locked instructions, as this type does.
    pub const unsafe fn new(ptr: NonNull<SharedInfo>) -> Self {
        Self { ptr }
    }

    /// The time record of `vcpu`, `None` beyond [`XEN_LEGACY_MAX_VCPUS`].
    pub fn vcpu_time(&self, vcpu: usize) -> Option<VcpuTimeInfoRef> {
        if vcpu >= XEN_LEGACY_MAX_VCPUS {
            return None;
        }
        let shared = self.ptr.as_ptr();
        // SAFETY: `vcpu` is in bounds and the page is mapped (constructor contract), so the
        // field address is in the page and non-null.
        let time = unsafe { NonNull::new_unchecked(&raw mut (*shared).vcpu_info[vcpu].time) };
        // SAFETY: the record lies in the page, which outlives `self` and its copies.
        Some(unsafe { VcpuTimeInfoRef::new(time) })
    }

    /// The event state of `vcpu`, `None` beyond [`XEN_LEGACY_MAX_VCPUS`].
    pub fn vcpu_info(&self, vcpu: usize) -> Option<VcpuInfoRef> {
        if vcpu >= XEN_LEGACY_MAX_VCPUS {
            return None;
        }
        let shared = self.ptr.as_ptr();
        // SAFETY: `vcpu` is in bounds and the page is mapped (constructor contract), so the
        // field address is in the page and non-null.
        let info = unsafe { NonNull::new_unchecked(&raw mut (*shared).vcpu_info[vcpu]) };
        Some(VcpuInfoRef { ptr: info })
    }

    /// Word `index` of the pending bits: bit `b` is port `64 * index + b`. `index` comes
    /// from a set bit of [`VcpuInfoRef::take_pending_sel`].
    ///
    /// # Panics
    /// If `index` is 64 or more.
    pub fn pending_word(&self, index: usize) -> u64 {
        self.event_word(EventArray::Pending, index)
            .load(Ordering::SeqCst)
    }

    /// Clears `port`'s pending bit, before handling its event so that a new one is not
    /// lost. Atomic, as Xen sets bits from other CPUs.
    ///
    /// # Panics
    /// If `port` is not below [`EVTCHN_2L_NR_CHANNELS`].
    pub fn clear_pending_bit(&self, port: EvtchnPort) {
        let (index, bit) = port_bit(port);
        self.event_word(EventArray::Pending, index)
            .fetch_and(!bit, Ordering::SeqCst);
    }

    /// Word `index` of the mask bits, laid out as [`Self::pending_word`].
    ///
    /// # Panics
    /// If `index` is 64 or more.
    pub fn mask_word(&self, index: usize) -> u64 {
        self.event_word(EventArray::Mask, index)
            .load(Ordering::SeqCst)
    }

    /// Sets or clears `port`'s mask bit. A masked port still becomes pending, but raises
    /// no upcall; and clearing the bit here does not deliver an event that arrived
    /// meanwhile: `evtchn_unmask` does, or the caller checks [`Self::pending_word`].
    ///
    /// # Panics
    /// If `port` is not below [`EVTCHN_2L_NR_CHANNELS`].
    pub fn set_mask(&self, port: EvtchnPort, masked: bool) {
        let (index, bit) = port_bit(port);
        let word = self.event_word(EventArray::Mask, index);
        if masked {
            word.fetch_or(bit, Ordering::SeqCst);
        } else {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// Word `index` of one of the event bit arrays, for atomic access.
    fn event_word(&self, array: EventArray, index: usize) -> &AtomicU64 {
        assert!(
            index < 64,
            "event word {index} is beyond the 64 of the 2-level ABI"
        );
        let shared = self.ptr.as_ptr();
        // SAFETY: the page is mapped (constructor contract); `&raw mut` takes the array's
        // address without reading it.
        let words = unsafe {
            match array {
                EventArray::Pending => &raw mut (*shared).evtchn_pending,
                EventArray::Mask => &raw mut (*shared).evtchn_mask,
            }
        };
        let word: *mut u64 = words.cast::<u64>().wrapping_add(index);
        // SAFETY: 1. `index` is in bounds, so `word` is an aligned u64 of the page, which
        // is readable and writable while `self` lives (constructor contract). 2. The only
        // other accesses are Xen's locked bit operations and this type's atomics.
        unsafe { AtomicU64::from_ptr(word) }
    }

    /// One consistent wallclock snapshot, under `wc_version`.
    pub fn read_wallclock(&self) -> Result<WallClock, SeqlockTimeout> {
        let shared = self.ptr.as_ptr();
        read_versioned(
            // SAFETY: the page is mapped and aligned (constructor contract); volatile since
            // Xen writes it.
            || unsafe { (&raw const (*shared).wc_version).read_volatile() },
            || {
                // SAFETY: as above.
                let (lo, nsec, hi) = unsafe {
                    (
                        (&raw const (*shared).wc_sec).read_volatile(),
                        (&raw const (*shared).wc_nsec).read_volatile(),
                        (&raw const (*shared).wc_sec_hi).read_volatile(),
                    )
                };
                WallClock {
                    sec: (u64::from(hi) << 32) | u64::from(lo),
                    nsec,
                }
            },
            SEQLOCK_MAX_ATTEMPTS,
        )
    }
}

/// Which event bit array of [`SharedInfo`] to touch.
#[derive(Clone, Copy)]
enum EventArray {
    Pending,
    Mask,
}

/// Which flag byte of [`VcpuInfo`] to touch.
#[derive(Clone, Copy)]
enum Flag {
    UpcallPending,
    UpcallMask,
}

/// A live [`VcpuInfo`] in the shared info page: the event state of one vCPU, which Xen
/// and the kernel both write. Every access is atomic: Xen sets the pending flag and
/// selector from other physical CPUs with locked instructions.
#[derive(Clone, Copy, Debug)]
pub struct VcpuInfoRef {
    /// In the page a [`SharedInfoRef`] was made from, so it inherits that contract.
    ptr: NonNull<VcpuInfo>,
}

// SAFETY: only atomic accesses to a record that stays mapped and writable (the contract of
// the `SharedInfoRef` it comes from); which CPU makes them does not matter.
unsafe impl Send for VcpuInfoRef {}
// SAFETY: as above.
unsafe impl Sync for VcpuInfoRef {}

impl VcpuInfoRef {
    /// Whether Xen has flagged an event for this vCPU (`evtchn_upcall_pending`).
    pub fn upcall_pending(&self) -> bool {
        self.flag(Flag::UpcallPending).load(Ordering::SeqCst) != 0
    }

    /// Clears `evtchn_upcall_pending`; done *before* scanning for events, so that one
    /// arriving during the scan sets it again (the header's set-and-check rule).
    pub fn clear_upcall_pending(&self) {
        self.flag(Flag::UpcallPending).store(0, Ordering::SeqCst);
    }

    /// Whether event upcalls are masked (`evtchn_upcall_mask`): the PV `!IF`.
    pub fn upcall_mask(&self) -> bool {
        self.flag(Flag::UpcallMask).load(Ordering::SeqCst) != 0
    }

    /// Masks or unmasks event upcalls. Unmasking does not upcall for an event that arrived
    /// while masked: the caller checks [`Self::upcall_pending`] afterwards.
    pub fn set_upcall_mask(&self, masked: bool) {
        self.flag(Flag::UpcallMask)
            .store(u8::from(masked), Ordering::SeqCst);
    }

    /// Takes and clears `evtchn_pending_sel` in one atomic swap: bit `i` set means word `i`
    /// of the pending bits ([`SharedInfoRef::pending_word`]) may have work.
    pub fn take_pending_sel(&self) -> u64 {
        self.pending_sel().swap(0, Ordering::SeqCst)
    }

    /// `arch.cr2`: the faulting address Xen stored before entering the page-fault handler.
    pub fn cr2(&self) -> u64 {
        let info = self.ptr.as_ptr();
        // SAFETY: the record is mapped (see `ptr`); `&raw mut` reads nothing.
        let cr2 = unsafe { &raw mut (*info).arch.cr2 };
        // SAFETY: `cr2` is an aligned u64 in the mapped, writable record; Xen writes it
        // from this vCPU's own physical CPU only.
        unsafe { AtomicU64::from_ptr(cr2) }.load(Ordering::SeqCst)
    }

    /// One of the flag bytes, for atomic access.
    fn flag(&self, flag: Flag) -> &AtomicU8 {
        let info = self.ptr.as_ptr();
        // SAFETY: the record is mapped (see `ptr`); `&raw mut` reads nothing.
        let byte = unsafe {
            match flag {
                Flag::UpcallPending => &raw mut (*info).evtchn_upcall_pending,
                Flag::UpcallMask => &raw mut (*info).evtchn_upcall_mask,
            }
        };
        // SAFETY: 1. `byte` is in the mapped, writable record (see `ptr`). 2. Xen touches
        // it only with locked instructions, this type only atomically.
        unsafe { AtomicU8::from_ptr(byte) }
    }

    fn pending_sel(&self) -> &AtomicU64 {
        let info = self.ptr.as_ptr();
        // SAFETY: the record is mapped (see `ptr`); `&raw mut` reads nothing.
        let sel = unsafe { &raw mut (*info).evtchn_pending_sel };
        // SAFETY: 1. `sel` is an aligned u64 in the mapped, writable record. 2. Xen sets its
        // bits with locked instructions; this type only uses atomics.
        unsafe { AtomicU64::from_ptr(sel) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::cell::Cell;
    use std::string::ToString;

    fn sample(version: u32) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version,
            tsc_timestamp: 1_000_000,
            system_time: 5_000_000_000,
            tsc_to_system_mul: 0x8000_0000,
            tsc_shift: -1,
            flags: XEN_PVCLOCK_TSC_STABLE_BIT,
            ..VcpuTimeInfo::default()
        }
    }

    #[test]
    fn a_quiet_record_is_read_in_one_round() {
        let reads = Cell::new(0);
        let got = read_time_info(
            || {
                reads.set(reads.get() + 1);
                4
            },
            || sample(0),
            8,
        );
        assert_eq!(got, Ok(sample(4)));
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn an_odd_version_is_retried_until_the_writer_finishes() {
        // The writer is mid-update (7) for two version reads, then done (8).
        let versions = [7, 7, 8, 8];
        let i = Cell::new(0);
        let fields_read = Cell::new(0);
        let got = read_time_info(
            || {
                let v = versions[i.get()];
                i.set(i.get() + 1);
                v
            },
            || {
                fields_read.set(fields_read.get() + 1);
                sample(0)
            },
            8,
        );
        assert_eq!(got.map(|t| t.version), Ok(8));
        // Fields are not read under an odd version.
        assert_eq!(fields_read.get(), 1);
    }

    #[test]
    fn an_update_between_the_two_version_reads_discards_the_fields() {
        // Round 1 sees version 2, reads torn fields, then sees 4: retried. Round 2 is clean.
        let versions = [2, 4, 4, 4];
        let i = Cell::new(0);
        let round = Cell::new(0);
        let got = read_time_info(
            || {
                let v = versions[i.get()];
                i.set(i.get() + 1);
                v
            },
            || {
                round.set(round.get() + 1);
                let mut t = sample(0);
                if round.get() == 1 {
                    t.system_time = 0xdead; // half-written
                }
                t
            },
            8,
        )
        .unwrap();
        assert_eq!(got.system_time, 5_000_000_000);
        assert_eq!(got.version, 4);
    }

    #[test]
    fn a_record_stuck_mid_update_is_an_error_not_a_hang() {
        let calls = Cell::new(0u32);
        let got = read_time_info(
            || {
                calls.set(calls.get() + 1);
                1
            },
            || sample(0),
            SEQLOCK_MAX_ATTEMPTS,
        );
        assert_eq!(
            got,
            Err(SeqlockTimeout {
                attempts: SEQLOCK_MAX_ATTEMPTS
            })
        );
        assert_eq!(calls.get(), SEQLOCK_MAX_ATTEMPTS);
        assert!(got.unwrap_err().to_string().contains("1024 reads"));
    }

    #[test]
    fn a_record_that_changes_every_round_is_an_error() {
        let v = Cell::new(0u32);
        let got = read_versioned(
            || {
                v.set(v.get() + 2);
                v.get()
            },
            || (),
            5,
        );
        assert_eq!(got, Err(SeqlockTimeout { attempts: 5 }));
    }

    #[test]
    fn zero_attempts_still_reads_once() {
        assert_eq!(read_versioned(|| 0, || 42, 0), Ok(42));
    }

    #[test]
    fn flag_helpers_follow_the_header_bits() {
        let mut t = VcpuTimeInfo::default();
        assert!(!t.tsc_stable() && !t.guest_stopped());
        t.flags = XEN_PVCLOCK_TSC_STABLE_BIT | XEN_PVCLOCK_GUEST_STOPPED;
        assert!(t.tsc_stable() && t.guest_stopped());
    }

    #[test]
    fn shared_info_ref_reads_vcpu_time_and_wallclock_from_a_page() {
        let mut page = Box::new(SharedInfo::zeroed());
        page.vcpu_info[3].time = sample(6);
        page.wc_version = 2;
        page.wc_sec = 0x6000_0000;
        page.wc_sec_hi = 1;
        page.wc_nsec = 999;
        let ptr = NonNull::from(&mut *page);
        // SAFETY: the boxed page outlives `shared` and nothing writes it meanwhile.
        let shared = unsafe { SharedInfoRef::new(ptr) };
        assert_eq!(shared.vcpu_time(3).unwrap().read(), Ok(sample(6)));
        assert!(shared.vcpu_time(XEN_LEGACY_MAX_VCPUS).is_none());
        assert_eq!(
            shared.read_wallclock(),
            Ok(WallClock {
                sec: 0x1_6000_0000,
                nsec: 999
            })
        );
    }

    #[test]
    fn vcpu_info_flags_selector_and_cr2_are_the_page_s() {
        let mut page = Box::new(SharedInfo::zeroed());
        page.vcpu_info[1].evtchn_upcall_pending = 1;
        page.vcpu_info[1].evtchn_pending_sel = 0b101;
        page.vcpu_info[1].arch.cr2 = 0xffff_8880_dead_b000;
        // SAFETY: the boxed page outlives `shared`, and is only accessed through it until
        // the checks at the end.
        let shared = unsafe { SharedInfoRef::new(NonNull::from(&mut *page)) };
        assert!(shared.vcpu_info(XEN_LEGACY_MAX_VCPUS).is_none());
        let vcpu = shared.vcpu_info(1).unwrap();

        assert!(vcpu.upcall_pending());
        vcpu.clear_upcall_pending();
        assert!(!vcpu.upcall_pending());

        assert!(!vcpu.upcall_mask());
        vcpu.set_upcall_mask(true);
        assert!(vcpu.upcall_mask());

        assert_eq!(vcpu.take_pending_sel(), 0b101);
        assert_eq!(vcpu.take_pending_sel(), 0);
        assert_eq!(vcpu.cr2(), 0xffff_8880_dead_b000);

        let info = page.vcpu_info[1];
        assert_eq!(
            (info.evtchn_upcall_pending, info.evtchn_upcall_mask),
            (0, 1)
        );
        assert_eq!(info.evtchn_pending_sel, 0);
        // Other vCPUs are untouched.
        assert_eq!(page.vcpu_info[0], SharedInfo::zeroed().vcpu_info[0]);
    }

    #[test]
    fn ports_map_to_word_port_div_64_bit_port_mod_64() {
        let mut page = Box::new(SharedInfo::zeroed());
        page.evtchn_pending[1] = (1 << 1) | (1 << 63);
        page.evtchn_pending[63] = 1 << 63;
        // SAFETY: the boxed page outlives `shared`, and is only accessed through it until
        // the checks at the end.
        let shared = unsafe { SharedInfoRef::new(NonNull::from(&mut *page)) };

        assert_eq!(shared.pending_word(1), (1 << 1) | (1 << 63));
        shared.clear_pending_bit(EvtchnPort(65));
        assert_eq!(shared.pending_word(1), 1 << 63);
        shared.clear_pending_bit(EvtchnPort(EVTCHN_2L_NR_CHANNELS - 1));
        assert_eq!(shared.pending_word(63), 0);

        shared.set_mask(EvtchnPort(3), true);
        shared.set_mask(EvtchnPort(130), true);
        assert_eq!(shared.mask_word(0), 1 << 3);
        assert_eq!(shared.mask_word(2), 1 << 2);
        shared.set_mask(EvtchnPort(3), false);
        assert_eq!(shared.mask_word(0), 0);

        assert_eq!(page.evtchn_pending[1], 1 << 63);
        assert_eq!(page.evtchn_mask[2], 1 << 2);
        assert_eq!(page.evtchn_mask.iter().filter(|&&w| w != 0).count(), 1);
    }

    #[test]
    fn ready_ports_are_the_pending_unmasked_bits_of_the_selected_words_in_order() {
        let mut pending = [0u64; 64];
        let mut mask = [0u64; 64];
        pending[0] = (1 << 3) | (1 << 5);
        mask[0] = 1 << 5;
        pending[2] = 1 << 63;
        // Word 7 has a pending port but no selector bit: it is not read.
        pending[7] = 1;
        let selector = (1 << 0) | (1 << 2) | (1 << 4);
        let ports: std::vec::Vec<_> = ready_ports(selector, |w| pending[w], |w| mask[w]).collect();
        assert_eq!(ports, [EvtchnPort(3), EvtchnPort(191)]);

        mask[2] = u64::MAX;
        let masked: std::vec::Vec<_> = ready_ports(selector, |w| pending[w], |w| mask[w]).collect();
        assert_eq!(masked, [EvtchnPort(3)]);
        pending = [0; 64];
        assert_eq!(
            ready_ports(u64::MAX, |w| pending[w], |w| mask[w]).count(),
            0
        );
    }

    #[test]
    fn ready_ports_reads_each_selected_word_once_and_only_when_it_gets_there() {
        let reads = std::cell::RefCell::new(std::vec::Vec::new());
        let mut ports = ready_ports(
            (1 << 1) | (1 << 40),
            |w| {
                reads.borrow_mut().push(w);
                0b11
            },
            |_| 0,
        );
        assert_eq!(ports.next(), Some(EvtchnPort(64)));
        assert_eq!(*reads.borrow(), [1]);
        assert_eq!(ports.next(), Some(EvtchnPort(65)));
        assert_eq!(ports.next(), Some(EvtchnPort(40 * 64)));
        assert_eq!(ports.next(), Some(EvtchnPort(40 * 64 + 1)));
        assert_eq!(ports.next(), None);
        assert_eq!(*reads.borrow(), [1, 40]);
    }

    #[test]
    fn every_port_of_the_2_level_abi_can_be_ready_and_none_beyond() {
        let ports: std::vec::Vec<_> = ready_ports(u64::MAX, |_| u64::MAX, |_| 0).collect();
        assert_eq!(ports.len(), EVTCHN_2L_NR_CHANNELS as usize);
        assert!(ports.iter().enumerate().all(|(i, p)| p.0 == i as u32));
    }

    #[test]
    #[should_panic(expected = "port 4096 is beyond the 4096 ports")]
    fn a_port_beyond_the_2_level_abi_is_a_bug() {
        let mut page = Box::new(SharedInfo::zeroed());
        // SAFETY: the boxed page outlives `shared`.
        let shared = unsafe { SharedInfoRef::new(NonNull::from(&mut *page)) };
        shared.set_mask(EvtchnPort(EVTCHN_2L_NR_CHANNELS), true);
    }

    #[test]
    #[should_panic(expected = "event word 64")]
    fn a_word_index_beyond_64_is_a_bug() {
        let mut page = Box::new(SharedInfo::zeroed());
        // SAFETY: the boxed page outlives `shared`.
        let shared = unsafe { SharedInfoRef::new(NonNull::from(&mut *page)) };
        let _ = shared.pending_word(64);
    }

    #[test]
    fn wallclock_mid_update_times_out() {
        let mut page = Box::new(SharedInfo::zeroed());
        page.wc_version = 3;
        // SAFETY: the boxed page outlives `shared`.
        let shared = unsafe { SharedInfoRef::new(NonNull::from(&mut *page)) };
        assert_eq!(
            shared.read_wallclock(),
            Err(SeqlockTimeout {
                attempts: SEQLOCK_MAX_ATTEMPTS
            })
        );
    }
}
