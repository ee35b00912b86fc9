//! kvmclock: KVM keeps a pvclock record and a wall-clock record up to date in guest memory
//! once the guest writes their addresses to `MSR_KVM_SYSTEM_TIME_NEW` and
//! `MSR_KVM_WALL_CLOCK_NEW` (Linux `Documentation/virt/kvm/x86/msr.rst`), and, with
//! `STEAL_TIME`, how long this vCPU was runnable but not running (`MSR_KVM_STEAL_TIME`).
//!
//! Untested in a guest: no machine this was developed on had `/dev/kvm` (README). The MSRs
//! are written through the exception table, so a KVM that advertises a feature and then
//! refuses its MSR costs the feature, not the boot.

use core::fmt;
use core::ptr::NonNull;

use janus_drivers::pvclock::PvclockError;
use janus_hypercall::kvm::features::KvmFeatures;
use janus_hypercall::kvm::msr::{
    self, KvmStealTime, MSR_KVM_STEAL_TIME, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_WALL_CLOCK_NEW,
    MisalignedMsrAddress, PvclockWallClock,
};
use janus_hypercall::xen::shared_info::{
    SEQLOCK_MAX_ATTEMPTS, SeqlockTimeout, VcpuTimeInfo, VcpuTimeInfoRef, read_versioned,
};
use spin::Once;

use super::clock::Pvclock;
use super::selection::Kind;
use crate::arch::extable::{MsrRefused, probe_wrmsr};
use crate::mm::kernel_space;
use crate::mm::layout::phys_to_virt;

/// Where each record lies in the one page given to KVM: each at the alignment its MSR
/// demands (4, 4 and 64 bytes), none overlapping.
const SYSTEM_TIME_OFFSET: usize = 0;
const WALL_CLOCK_OFFSET: usize = 64;
const STEAL_TIME_OFFSET: usize = 128;

const _: () = assert!(SYSTEM_TIME_OFFSET + size_of::<VcpuTimeInfo>() <= WALL_CLOCK_OFFSET);
const _: () = assert!(WALL_CLOCK_OFFSET + size_of::<PvclockWallClock>() <= STEAL_TIME_OFFSET);
const _: () = assert!(STEAL_TIME_OFFSET.is_multiple_of(64));
const _: () = assert!(STEAL_TIME_OFFSET + size_of::<KvmStealTime>() <= 4096);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmclockError {
    /// CPUID does not advertise `KVM_FEATURE_CLOCKSOURCE2`.
    NotAdvertised,
    OutOfFrames,
    Misaligned(MisalignedMsrAddress),
    /// KVM refused the write to this MSR with #GP.
    MsrRefused(&'static str),
    /// The record KVM filled in is unusable.
    Record(PvclockError),
    /// The wall-clock record never settled.
    WallClock(SeqlockTimeout),
}

impl fmt::Display for KvmclockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAdvertised => f.write_str(
                "KVM does not advertise KVM_FEATURE_CLOCKSOURCE2 (MSR_KVM_SYSTEM_TIME_NEW)",
            ),
            Self::OutOfFrames => f.write_str("no free frame for the kvmclock records"),
            Self::Misaligned(e) => write!(f, "{e}"),
            Self::MsrRefused(msr) => write!(f, "KVM refused the write to {msr} (#GP)"),
            Self::Record(e) => write!(f, "kvmclock: {e}"),
            Self::WallClock(e) => write!(f, "kvmclock wall clock: {e}"),
        }
    }
}

/// kvmclock, registered: the clock, and the wall time in ns since the Unix epoch at its
/// system time zero.
pub struct Kvmclock {
    pub clock: Pvclock,
    pub wall_at_zero_ns: u64,
}

/// The steal-time record, once registered.
struct StealTimePtr(NonNull<KvmStealTime>);
// SAFETY: only read, with volatile loads, from a page that is never freed.
unsafe impl Send for StealTimePtr {}
// SAFETY: as above.
unsafe impl Sync for StealTimePtr {}

static STEAL: Once<StealTimePtr> = Once::new();

/// Registers kvmclock (and steal time when KVM offers it) on this vCPU.
pub fn init(features: KvmFeatures) -> Result<Kvmclock, KvmclockError> {
    if !features.contains(KvmFeatures::CLOCKSOURCE2) {
        return Err(KvmclockError::NotAdvertised);
    }
    let frame =
        kernel_space::with(|space| space.frames.allocate()).ok_or(KvmclockError::OutOfFrames)?;
    let paddr = frame.start_address().as_u64();
    let page: *mut u8 = phys_to_virt(frame.start_address()).as_mut_ptr();
    // SAFETY: the frame was just allocated, is identity-mapped RW and is the kernel's for
    // good (never freed): KVM writes it from now on.
    unsafe { page.write_bytes(0, 4096) };
    let at = |offset: usize| paddr + offset as u64;
    let system_time =
        msr::system_time_msr_value(at(SYSTEM_TIME_OFFSET)).map_err(KvmclockError::Misaligned)?;
    let wall_clock =
        msr::wall_clock_msr_value(at(WALL_CLOCK_OFFSET)).map_err(KvmclockError::Misaligned)?;
    // SAFETY: both make KVM write its records into this page, which nothing else uses.
    unsafe {
        probe_wrmsr(MSR_KVM_SYSTEM_TIME_NEW, system_time)
            .map_err(|_| KvmclockError::MsrRefused("MSR_KVM_SYSTEM_TIME_NEW"))?;
        probe_wrmsr(MSR_KVM_WALL_CLOCK_NEW, wall_clock)
            .map_err(|_| KvmclockError::MsrRefused("MSR_KVM_WALL_CLOCK_NEW"))?;
    }
    // SAFETY: the offsets lie in the page (asserted above) at the records' alignment.
    let record = unsafe {
        VcpuTimeInfoRef::new(
            NonNull::new(page.add(SYSTEM_TIME_OFFSET).cast::<VcpuTimeInfo>())
                .expect("identity-mapped frames are not null"),
        )
    };
    let clock = Pvclock::new(Kind::Kvmclock, record).map_err(KvmclockError::Record)?;
    // SAFETY: as above.
    let wall = unsafe { page.add(WALL_CLOCK_OFFSET).cast::<PvclockWallClock>() };
    let wall = read_versioned(
        // SAFETY: `wall` points into the page; volatile since KVM writes it.
        || unsafe { (&raw const (*wall).version).read_volatile() },
        // SAFETY: as above.
        || unsafe { wall.read_volatile() },
        SEQLOCK_MAX_ATTEMPTS,
    )
    .map_err(KvmclockError::WallClock)?;
    if features.contains(KvmFeatures::STEAL_TIME)
        && let Ok(value) = msr::steal_time_msr_value(at(STEAL_TIME_OFFSET))
    {
        // SAFETY: KVM writes the zeroed record in this page, which nothing else uses.
        match unsafe { probe_wrmsr(MSR_KVM_STEAL_TIME, value) } {
            Ok(()) => {
                // SAFETY: in the page, 64-byte aligned (asserted above).
                let steal = unsafe { NonNull::new_unchecked(page.add(STEAL_TIME_OFFSET).cast()) };
                STEAL.call_once(|| StealTimePtr(steal));
            }
            Err(MsrRefused) => crate::println!(
                "warning: KVM advertises steal time but refused MSR_KVM_STEAL_TIME (#GP); no \
                 steal time"
            ),
        }
    }
    Ok(Kvmclock {
        clock,
        wall_at_zero_ns: u64::from(wall.sec) * 1_000_000_000 + u64::from(wall.nsec),
    })
}

/// Nanoseconds this vCPU was runnable but not running since steal time was registered;
/// `None` without steal time or when the record never settles.
pub fn steal_ns() -> Option<u64> {
    let steal = STEAL.get()?.0.as_ptr();
    read_versioned(
        // SAFETY: registered in `init`: a page that stays mapped; volatile since KVM writes
        // it.
        || unsafe { (&raw const (*steal).version).read_volatile() },
        // SAFETY: as above.
        || unsafe { (&raw const (*steal).steal).read_volatile() },
        SEQLOCK_MAX_ATTEMPTS,
    )
    .ok()
}
