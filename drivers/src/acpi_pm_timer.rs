//! ACPI Power Management Timer (ACPI 6.5 §4.8.3.3 "Power Management Timer"): a free-running
//! up-counter at 3.579545 MHz, 24 bits wide, or 32 when the FADT sets `TMR_VAL_EXT`, read
//! with a 32-bit `in` from the FADT's `PM_TMR_BLK` port.
//!
//! The port number comes from firmware tables and is not trusted to decode: an absent port
//! reads all ones, a present but halted timer never changes, and either is reported instead
//! of being used as a clock.

use x86_64::instructions::port::Port;

/// The timer's fixed input clock (ACPI 6.5 §4.8.3.3).
pub const FREQUENCY_HZ: u64 = 3_579_545;

/// Reads without a change after which the timer counts as stopped or absent. It ticks every
/// 279 ns, and this many port reads take far longer (a port read costs hundreds of ns on
/// hardware, microseconds when the VMM traps it).
const MAX_STALLED_READS: u32 = 100_000;

const NS_PER_SEC: u128 = 1_000_000_000;

/// A 32-bit input port, a trait so the checks run against a fake in host tests.
pub trait Port32 {
    fn read(&mut self) -> u32;
}

/// The timer's real I/O port.
#[derive(Debug)]
pub struct IoPort(u16);

impl IoPort {
    /// # Safety
    /// `port` is the FADT's `PM_TMR_BLK` (or `X_PM_TMR_BLK` in I/O space), or a port at which
    /// a 32-bit read has no side effects.
    pub unsafe fn new(port: u16) -> Self {
        Self(port)
    }
}

impl Port32 for IoPort {
    fn read(&mut self) -> u32 {
        // SAFETY: reading this port has no side effects (constructor contract) and touches no
        // memory.
        unsafe { Port::<u32>::new(self.0).read() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmTimerError {
    /// Every read returned all ones: nothing decodes the port.
    Absent,
    /// The value never changed.
    Stopped,
}

impl core::fmt::Display for PmTimerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Absent => write!(
                f,
                "ACPI PM timer port reads all ones: the FADT's PM_TMR_BLK is not a timer; \
                 check the FADT or use another clock source"
            ),
            Self::Stopped => write!(
                f,
                "ACPI PM timer did not change in {MAX_STALLED_READS} reads: the timer is \
                 halted; use another clock source"
            ),
        }
    }
}

/// A PM timer checked to be running.
#[derive(Debug)]
pub struct PmTimer<P: Port32> {
    port: P,
    bits: u32,
}

impl<P: Port32> PmTimer<P> {
    /// Checks that the timer behind `port` ticks (bounded); `bits32` is the FADT's
    /// `TMR_VAL_EXT` flag.
    pub fn new(mut port: P, bits32: bool) -> Result<Self, PmTimerError> {
        let bits = if bits32 { 32 } else { 24 };
        let mask = mask(bits);
        let first = port.read();
        for _ in 0..MAX_STALLED_READS {
            // Compared masked, so noise in a 24-bit timer's reserved upper byte does not pass
            // for ticking.
            if (port.read() ^ first) & mask != 0 {
                return Ok(Self { port, bits });
            }
            core::hint::spin_loop();
        }
        // A 32-bit timer reads all ones for one tick in 2^32; a stuck one is not present.
        if first == u32::MAX {
            Err(PmTimerError::Absent)
        } else {
            Err(PmTimerError::Stopped)
        }
    }

    /// The current count, in the timer's low [`Self::bits`] bits.
    pub fn read(&mut self) -> u32 {
        self.port.read() & mask(self.bits)
    }

    /// 24 or 32: where [`Self::read`] wraps.
    pub fn bits(&self) -> u32 {
        self.bits
    }
}

/// Nanoseconds for `ticks` PM timer ticks, rounded down; saturates at `u64::MAX`.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = u128::from(ticks) * NS_PER_SEC / u128::from(FREQUENCY_HZ);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn mask(bits: u32) -> u32 {
    u32::MAX >> (32 - bits)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// A port that reads `value`, then adds `step` after every read.
    #[derive(Debug)]
    struct FakePort {
        value: u32,
        step: u32,
        reads: u32,
    }

    impl FakePort {
        fn new(value: u32, step: u32) -> Self {
            Self {
                value,
                step,
                reads: 0,
            }
        }
    }

    impl Port32 for FakePort {
        fn read(&mut self) -> u32 {
            self.reads += 1;
            let value = self.value;
            self.value = self.value.wrapping_add(self.step);
            value
        }
    }

    #[test]
    fn a_ticking_24_bit_timer_is_accepted_and_masked() {
        // Garbage in the reserved upper byte must not show through.
        let mut timer = PmTimer::new(FakePort::new(0xab00_0010, 1), false).unwrap();
        assert_eq!(timer.bits(), 24);
        assert_eq!(timer.read(), 0x12);
        assert_eq!(timer.port.reads, 3);
    }

    #[test]
    fn a_32_bit_timer_keeps_all_bits() {
        let mut timer = PmTimer::new(FakePort::new(0xab00_0010, 1), true).unwrap();
        assert_eq!(timer.bits(), 32);
        assert_eq!(timer.read(), 0xab00_0012);
    }

    #[test]
    fn a_32_bit_timer_passing_all_ones_is_not_absent() {
        let mut timer = PmTimer::new(FakePort::new(u32::MAX, 1), true).unwrap();
        assert_eq!(timer.read(), 1);
    }

    #[test]
    fn a_port_reading_all_ones_is_absent() {
        for bits32 in [false, true] {
            let err = PmTimer::new(FakePort::new(u32::MAX, 0), bits32).unwrap_err();
            assert_eq!(err, PmTimerError::Absent);
        }
        assert!(
            PmTimerError::Absent
                .to_string()
                .contains("PM_TMR_BLK is not a timer")
        );
    }

    #[test]
    fn a_timer_that_never_changes_is_stopped_not_a_hang() {
        let err = PmTimer::new(FakePort::new(0x1234, 0), false).unwrap_err();
        assert_eq!(err, PmTimerError::Stopped);
    }

    #[test]
    fn changes_only_in_the_reserved_byte_are_not_ticks() {
        let err = PmTimer::new(FakePort::new(0x0000_1234, 0x0100_0000), false).unwrap_err();
        assert_eq!(err, PmTimerError::Stopped);
    }

    #[test]
    fn ticks_convert_at_3_579545_mhz() {
        assert_eq!(ticks_to_ns(FREQUENCY_HZ), 1_000_000_000);
        // One tick is 279.36 ns.
        assert_eq!(ticks_to_ns(1), 279);
        // A 24-bit timer wraps every 4.69 s.
        assert_eq!(ticks_to_ns(1 << 24), 4_686_968_874);
        assert_eq!(ticks_to_ns(u64::MAX), u64::MAX);
    }
}
