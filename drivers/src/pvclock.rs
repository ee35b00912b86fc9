//! The pvclock protocol shared by KVM's kvmclock and Xen's per-vCPU time, as pure functions.
//!
//! The record is Xen's `struct vcpu_time_info` (`xen/include/public/xen.h`), byte for byte
//! KVM's `struct pvclock_vcpu_time_info` (Linux `arch/x86/include/asm/pvclock-abi.h`):
//! nanoseconds since boot are
//! `system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`,
//! a negative `tsc_shift` shifting right. The reading rules follow Linux
//! `arch/x86/kernel/pvclock.c` (`pvclock_clocksource_read`).
//!
//! The hypervisor is not trusted: a record that never settles or carries a nonsensical scale
//! is an error, and no input makes the arithmetic overflow or panic.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use janus_hypercall::xen::shared_info::{SeqlockTimeout, VcpuTimeInfo, read_time_info};

/// `PVCLOCK_TSC_STABLE_BIT` in [`VcpuTimeInfo::flags`] (pvclock-abi.h): time computed on
/// different vCPUs is monotonic across them, so [`Monotonic`] may pass it through.
pub const TSC_STABLE_BIT: u8 = 1;

/// The widest shift [`validate`] accepts in either direction. Hypervisors use far less
/// (KVM's `kvm_get_time_scale` and Xen's `set_time_scale` keep it within a few bits of 0),
/// so a wider one means a corrupt record, not a clock.
const MAX_SHIFT: i8 = 32;

const NS_PER_SEC: u128 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvclockError {
    /// The version stayed odd or kept changing for every one of `attempts` reads.
    VersionStuck { attempts: u32 },
    /// `tsc_to_system_mul` is 0: every TSC delta would scale to 0 ns.
    ZeroMultiplier,
    /// `tsc_shift` is outside `-32..=32`.
    BadShift(i8),
}

impl fmt::Display for PvclockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VersionStuck { attempts } => write!(
                f,
                "pvclock record still mid-update after {attempts} reads (version odd or \
                 changing): the hypervisor left it half-written; use another clock source"
            ),
            Self::ZeroMultiplier => write!(
                f,
                "pvclock record has tsc_to_system_mul = 0, so time would never advance: \
                 the hypervisor has not initialised it; use another clock source"
            ),
            Self::BadShift(shift) => write!(
                f,
                "pvclock record has tsc_shift = {shift}, outside -{MAX_SHIFT}..={MAX_SHIFT}: \
                 the record is corrupt; use another clock source"
            ),
        }
    }
}

impl From<SeqlockTimeout> for PvclockError {
    fn from(timeout: SeqlockTimeout) -> Self {
        Self::VersionStuck {
            attempts: timeout.attempts,
        }
    }
}

/// Nanoseconds for `delta` TSC ticks: `delta` shifted by `shift` (right when negative), then
/// `(delta * mul) >> 32`. Exact for every `u64` delta: the intermediate is 128 bits wide,
/// where Linux's 64-bit `delta << shift` would drop high bits. Results beyond `u64::MAX`
/// (reachable only with a positive shift) saturate.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    if delta == 0 || mul == 0 {
        return 0;
    }
    let wide = u128::from(delta);
    let shifted = if shift >= 0 {
        let shift = u32::from(shift.unsigned_abs());
        // A value of 2^96 or more before the multiply scales to at least 2^64 ns; checking
        // here also keeps the shift and the multiply from losing bits of the u128.
        if wide.leading_zeros() < shift + 32 {
            return u64::MAX;
        }
        wide << shift
    } else {
        // Truncating before the multiply, as the hypervisor and Linux do, keeps guest and
        // host computing the same nanosecond for the same TSC.
        wide.checked_shr(u32::from(shift.unsigned_abs()))
            .unwrap_or(0)
    };
    let ns = (shifted * u128::from(mul)) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Nanoseconds since boot that `record` gives for the TSC value `tsc`.
///
/// A `tsc` before `tsc_timestamp` (read on a CPU whose TSC lags the one the record was
/// written for, or just before a vCPU migration) counts as no time elapsed rather than as a
/// wrapped, enormous delta. "Before" means within 2^63 ticks (over 50 years at 5 GHz) of
/// the timestamp, so a TSC that wrapped past zero still counts forward.
pub fn system_time(record: &VcpuTimeInfo, tsc: u64) -> u64 {
    let delta = tsc.wrapping_sub(record.tsc_timestamp);
    let delta = if delta > i64::MAX as u64 { 0 } else { delta };
    record.system_time.saturating_add(scale_delta(
        delta,
        record.tsc_to_system_mul,
        record.tsc_shift,
    ))
}

/// Refuses a scale no hypervisor would publish for a working clock.
pub fn validate(record: &VcpuTimeInfo) -> Result<(), PvclockError> {
    if record.tsc_to_system_mul == 0 {
        return Err(PvclockError::ZeroMultiplier);
    }
    if !(-MAX_SHIFT..=MAX_SHIFT).contains(&record.tsc_shift) {
        return Err(PvclockError::BadShift(record.tsc_shift));
    }
    Ok(())
}

/// One consistent, validated snapshot of a live record. `version` and `record` stand for the
/// volatile reads of the record's version field and of the whole record; the snapshot
/// carries the version it was read under. Gives up after `max_attempts` rounds (at least
/// one) of the seqlock protocol.
pub fn read(
    version: impl FnMut() -> u32,
    record: impl FnMut() -> VcpuTimeInfo,
    max_attempts: u32,
) -> Result<VcpuTimeInfo, PvclockError> {
    let snapshot = read_time_info(version, record, max_attempts)?;
    validate(&snapshot)?;
    Ok(snapshot)
}

/// The TSC frequency in Hz that the record's scale implies: one tick is
/// `mul * 2^shift / 2^32` ns, so `hz = 10^9 * 2^32 / (mul * 2^shift)`, rounded down.
/// `None` for a record [`validate`] refuses, or a frequency beyond `u64`.
pub fn tsc_hz(record: &VcpuTimeInfo) -> Option<u64> {
    validate(record).ok()?;
    let mul = u128::from(record.tsc_to_system_mul);
    let shift = record.tsc_shift;
    // Dividing once, after all shifts, keeps the precision a negative shift would lose
    // if the quotient were shifted instead: 10^9 * 2^64 < 2^94 fits comfortably.
    let hz = if shift >= 0 {
        (NS_PER_SEC << 32) / (mul << shift)
    } else {
        (NS_PER_SEC << (32 + shift.unsigned_abs())) / mul
    };
    u64::try_from(hz).ok()
}

/// Keeps pvclock time from going backwards across vCPUs when the host does not promise a
/// stable TSC: Linux's `last_value` fix in `pvclock_clocksource_read`. Share one per clock.
#[derive(Debug, Default)]
pub struct Monotonic {
    last: AtomicU64,
}

impl Monotonic {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
        }
    }

    /// `now` itself when `stable` (the record's [`TSC_STABLE_BIT`] is set); otherwise the
    /// largest `now` any caller has passed with `stable` false, this one included.
    pub fn fix(&self, now: u64, stable: bool) -> u64 {
        if stable {
            return now;
        }
        // Relaxed suffices: read-modify-writes of one location are totally ordered, which is
        // all monotonicity needs; the value guards no other memory.
        let previous = self.last.fetch_max(now, Ordering::Relaxed);
        previous.max(now)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::cell::Cell;
    use std::string::ToString;

    /// 2.5 GHz as KVM's `kvm_get_time_scale` encodes it: 0.4 ns per tick = 0.8 * 2^-1, and
    /// `mul = floor(0.8 * 2^32)`, a hair under 0.8.
    const MUL_2_5_GHZ: u32 = 3_435_973_836;

    fn record(mul: u32, shift: i8) -> VcpuTimeInfo {
        VcpuTimeInfo {
            tsc_timestamp: 1_000_000,
            system_time: 7_000_000_000,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            ..VcpuTimeInfo::default()
        }
    }

    /// Independent reference: `floor(d * mul * 2^s / 2^32)` for a left shift is the exact
    /// product shifted once; a right shift truncates `d` first, then the product is split
    /// into 32-bit halves like Linux's `mul_u64_u32_shr`.
    fn reference(delta: u64, mul: u32, shift: i8) -> u64 {
        if shift >= 0 {
            let product = u128::from(delta) * u128::from(mul);
            let s = shift as u32;
            let exact = if s <= 32 {
                product >> (32 - s)
            } else if product.leading_zeros() < s - 32 {
                return u64::MAX;
            } else {
                product << (s - 32)
            };
            u64::try_from(exact).unwrap_or(u64::MAX)
        } else {
            let d = delta.checked_shr(shift.unsigned_abs().into()).unwrap_or(0);
            let (hi, lo) = (d >> 32, d & 0xffff_ffff);
            let low_part = (lo * u64::from(mul)) >> 32;
            hi.checked_mul(u64::from(mul))
                .and_then(|h| h.checked_add(low_part))
                .unwrap_or(u64::MAX)
        }
    }

    #[test]
    fn scale_delta_matches_hand_computed_values() {
        // mul = 2^31 is 0.5 before the shift.
        assert_eq!(scale_delta(1000, 1 << 31, 0), 500);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        // The right shift truncates before multiplying: 3 >> 1 = 1, then 1 * 0.5 = 0.
        assert_eq!(scale_delta(3, 1 << 31, -1), 0);
        // 5000 * 0.79999999995 = 3999.99999977, rounded down.
        assert_eq!(scale_delta(10_000, MUL_2_5_GHZ, -1), 3_999);
        assert_eq!(scale_delta(0, u32::MAX, 32), 0);
        assert_eq!(scale_delta(u64::MAX, 1, -32), 0);
        assert_eq!(scale_delta(u64::MAX, 1 << 31, -64), 0);
    }

    #[test]
    fn scale_delta_does_not_overflow_near_u64_max() {
        let exact = (u128::from(u64::MAX - 5) * u128::from(u32::MAX)) >> 32;
        assert_eq!(u128::from(scale_delta(u64::MAX - 5, u32::MAX, 0)), exact);
        assert_eq!(
            u128::from(scale_delta(u64::MAX, MUL_2_5_GHZ, -1)),
            (u128::from(u64::MAX >> 1) * u128::from(MUL_2_5_GHZ)) >> 32
        );
        // 2^64 ticks at a left shift overflow u64 nanoseconds: saturate, don't wrap.
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 1), u64::MAX);
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 32), u64::MAX);
        assert_eq!(scale_delta(1, 1, i8::MAX), u64::MAX);
        assert_eq!(scale_delta(0, 1, i8::MAX), 0);
        assert_eq!(scale_delta(1, 0, i8::MAX), 0);
        // Shifts beyond what `validate` accepts are still exact while the result fits.
        assert_eq!(scale_delta(1, 1, 40), 1 << 8);
        assert_eq!(scale_delta(1, 1, 95), 1 << 63);
        assert_eq!(scale_delta(1, 2, 95), u64::MAX);
        assert_eq!(scale_delta(5, 1, i8::MIN), 0);
    }

    #[test]
    fn scale_delta_agrees_with_the_reference_on_random_inputs() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let raw = next();
            // Mix small, full-width and near-maximal deltas.
            let delta = match raw % 3 {
                0 => raw >> (raw % 64),
                1 => raw,
                _ => u64::MAX - (raw % 1024),
            };
            let mul = next() as u32;
            // Mostly what `validate` accepts, some beyond it.
            let shift = ((next() % 141) as i16 - 70) as i8;
            assert_eq!(
                scale_delta(delta, mul, shift),
                reference(delta, mul, shift),
                "delta {delta:#x} mul {mul:#x} shift {shift}"
            );
        }
    }

    #[test]
    fn system_time_adds_the_scaled_tsc_delta() {
        let r = record(MUL_2_5_GHZ, -1);
        assert_eq!(system_time(&r, 1_000_000), 7_000_000_000);
        // One second of ticks is 999_999_999.94 ns by this (rounded-down) multiplier.
        assert_eq!(system_time(&r, 1_000_000 + 2_500_000_000), 7_999_999_999);
    }

    #[test]
    fn a_tsc_before_the_timestamp_counts_as_no_time_not_a_huge_one() {
        let r = record(MUL_2_5_GHZ, -1);
        assert_eq!(system_time(&r, 999_999), 7_000_000_000);
        assert_eq!(system_time(&r, 0), 7_000_000_000);
    }

    #[test]
    fn a_tsc_that_wrapped_past_zero_still_counts_forward() {
        let r = VcpuTimeInfo {
            tsc_timestamp: u64::MAX - 9,
            ..record(1 << 31, 1)
        };
        assert_eq!(system_time(&r, 10), 7_000_000_020);
    }

    #[test]
    fn validate_refuses_a_zero_multiplier_and_absurd_shifts() {
        assert_eq!(validate(&record(0, 0)), Err(PvclockError::ZeroMultiplier));
        assert_eq!(validate(&record(1, 33)), Err(PvclockError::BadShift(33)));
        assert_eq!(validate(&record(1, -33)), Err(PvclockError::BadShift(-33)));
        assert_eq!(validate(&record(1, 32)), Ok(()));
        assert_eq!(validate(&record(1, -32)), Ok(()));
    }

    #[test]
    fn a_version_that_stays_odd_is_stuck_after_exactly_max_attempts() {
        let version_reads = Cell::new(0u32);
        let got = read(
            || {
                version_reads.set(version_reads.get() + 1);
                3
            },
            || record(MUL_2_5_GHZ, -1),
            17,
        );
        assert_eq!(got, Err(PvclockError::VersionStuck { attempts: 17 }));
        assert_eq!(version_reads.get(), 17);
        assert!(got.unwrap_err().to_string().contains("17 reads"));
    }

    #[test]
    fn a_version_that_changes_once_then_settles_is_read() {
        // Round 1: version 4, fields, then 6 (an update slipped in). Round 2: 6 and 6.
        let versions = [4, 6, 6, 6];
        let i = Cell::new(0);
        let got = read(
            || {
                let v = versions[i.get()];
                i.set(i.get() + 1);
                v
            },
            || record(MUL_2_5_GHZ, -1),
            4,
        );
        assert_eq!(
            got,
            Ok(VcpuTimeInfo {
                version: 6,
                ..record(MUL_2_5_GHZ, -1)
            })
        );
        assert_eq!(i.get(), 4);
    }

    #[test]
    fn read_refuses_a_settled_but_invalid_record() {
        assert_eq!(
            read(|| 2, || record(0, 0), 4),
            Err(PvclockError::ZeroMultiplier)
        );
        assert_eq!(
            read(|| 2, || record(1, 40), 4),
            Err(PvclockError::BadShift(40))
        );
    }

    #[test]
    fn tsc_hz_inverts_the_scale() {
        // 10^9 * 2^33 / 3_435_973_836 = 2_500_000_000.58.
        assert_eq!(tsc_hz(&record(MUL_2_5_GHZ, -1)), Some(2_500_000_000));
        // 1 ns per tick = 0.5 * 2^1.
        assert_eq!(tsc_hz(&record(1 << 31, 1)), Some(1_000_000_000));
        // A negative shift divides once: 0.25 ns per tick = 0.5 * 2^-1 is exactly 4 GHz.
        assert_eq!(tsc_hz(&record(1 << 31, -1)), Some(4_000_000_000));
        assert_eq!(tsc_hz(&record(0, 0)), None);
        assert_eq!(tsc_hz(&record(1, 100)), None);
        // 2^-64 ns per tick is beyond u64 Hz.
        assert_eq!(tsc_hz(&record(1, -32)), None);
    }

    #[test]
    fn unstable_time_never_goes_backwards() {
        let clock = Monotonic::new();
        let mut state = 12_345u64;
        let mut highest = 0;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let got = clock.fix(state % 1_000_000, false);
            assert!(got >= highest);
            assert!(got >= state % 1_000_000);
            highest = got;
        }
        assert_eq!(clock.fix(5, false), highest);
    }

    #[test]
    fn stable_time_passes_through() {
        let clock = Monotonic::new();
        assert_eq!(clock.fix(100, false), 100);
        assert_eq!(clock.fix(50, true), 50);
        assert_eq!(clock.fix(60, false), 100);
    }

    #[test]
    fn stable_bit_is_the_header_s() {
        assert_eq!(
            TSC_STABLE_BIT,
            janus_hypercall::xen::shared_info::XEN_PVCLOCK_TSC_STABLE_BIT
        );
    }
}
