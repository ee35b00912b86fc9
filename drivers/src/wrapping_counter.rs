//! Extends a free-running N-bit hardware counter to 64 bits: the ACPI PM timer (24 or 32
//! bits, ACPI 6.5 §4.8.3.3 "Power Management Timer") and the HPET main counter (32 or 64
//! bits, IA-PC HPET spec 1.0a §2.3.4).
//!
//! Each read is placed after the previous one, forward by the counter's distance modulo
//! 2^N. A reading taken *before* the last recorded one arrives when an interrupt handler
//! reads and extends between a normal caller's read and its call to [`WrappingCounter::extend`];
//! it shows up as a distance of more than half a wrap and does not move the value, as
//! Linux's `clocksource_delta` treats it (`CONFIG_CLOCKSOURCE_VALIDATE_LAST_CYCLE`).

use core::sync::atomic::{AtomicU64, Ordering};

/// The state before the first reading: any extended value for a counter narrower than 64
/// bits stays below it for 2^64 ticks (over 580 years at 1 GHz).
const UNSET: u64 = u64::MAX;

/// A 64-bit view of an N-bit up-counter.
///
/// Correct while successive calls to [`Self::extend`] are less than half a wrap apart:
/// 2.3 s for a 24-bit PM timer, 20 min for a 32-bit one, 21 s for a 32-bit HPET at 100 MHz.
/// A longer gap loses whole wraps (or, past half a wrap, freezes the value until the counter
/// comes round again).
#[derive(Debug)]
pub struct WrappingCounter {
    bits: u32,
    /// The last extended value, or [`UNSET`]; its low `bits` bits are the last raw reading.
    state: AtomicU64,
}

impl WrappingCounter {
    /// A counter `bits` wide, in `2..=64`: a 1-bit counter has no "forward" half.
    pub const fn new(bits: u32) -> Self {
        assert!(
            bits >= 2 && bits <= 64,
            "a wrapping counter is 2 to 64 bits wide"
        );
        Self {
            bits,
            state: AtomicU64::new(if bits == 64 { 0 } else { UNSET }),
        }
    }

    /// The 64-bit value of the raw reading `raw` (bits above the counter's width are ignored).
    /// Never less than a value already returned, from any caller.
    pub fn extend(&self, raw: u64) -> u64 {
        let mask = u64::MAX >> (64 - self.bits);
        let raw = raw & mask;
        if self.bits == 64 {
            // Nothing to extend; only a stale reading must be kept from going backwards.
            return self.state.fetch_max(raw, Ordering::Relaxed).max(raw);
        }
        // Relaxed suffices: the state guards no other memory, and compare-exchanges on one
        // location are totally ordered.
        let update = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                if last == UNSET {
                    return Some(raw);
                }
                let forward = raw.wrapping_sub(last) & mask;
                if forward == 0 || forward > mask >> 1 {
                    // Unchanged, or a stale reading: leave the value where it is.
                    None
                } else {
                    Some(last.wrapping_add(forward))
                }
            });
        match update {
            Ok(UNSET) => raw,
            Ok(last) => last.wrapping_add(raw.wrapping_sub(last) & mask),
            Err(last) => last,
        }
    }

    /// The counter's width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_24_bit_counter_wraps_into_the_upper_bits() {
        let c = WrappingCounter::new(24);
        assert_eq!(c.extend(0xff_fff0), 0xff_fff0);
        assert_eq!(c.extend(0x00_0010), 0x100_0010);
        assert_eq!(c.extend(0x7f_0000), 0x17f_0000);
        assert_eq!(c.extend(0xf0_0000), 0x1f0_0000);
        assert_eq!(c.extend(0x00_0005), 0x200_0005);
    }

    #[test]
    fn a_32_bit_counter_wraps_into_the_upper_bits() {
        let c = WrappingCounter::new(32);
        assert_eq!(c.extend(5), 5);
        assert_eq!(c.extend(0x8000_0000), 0x8000_0000);
        assert_eq!(c.extend(0xffff_ffff), 0xffff_ffff);
        assert_eq!(c.extend(3), 0x1_0000_0003);
    }

    #[test]
    fn bits_above_the_counter_width_are_ignored() {
        let c = WrappingCounter::new(24);
        assert_eq!(c.extend(0xff00_0007), 7);
        assert_eq!(c.extend(0xab00_0009), 9);
        assert_eq!(c.bits(), 24);
    }

    #[test]
    fn the_first_reading_is_taken_as_is_even_in_the_upper_half() {
        let c = WrappingCounter::new(24);
        assert_eq!(c.extend(0xff_ff00), 0xff_ff00);
        assert_eq!(c.extend(0xff_ff01), 0xff_ff01);
    }

    #[test]
    fn a_64_bit_counter_passes_through() {
        let c = WrappingCounter::new(64);
        assert_eq!(c.extend(0), 0);
        assert_eq!(c.extend(0xdead_beef_0000), 0xdead_beef_0000);
        assert_eq!(c.extend(u64::MAX - 1), u64::MAX - 1);
        // A stale reading does not go backwards.
        assert_eq!(c.extend(17), u64::MAX - 1);
    }

    #[test]
    fn a_reading_made_stale_by_an_interrupt_does_not_move_the_value() {
        let c = WrappingCounter::new(24);
        assert_eq!(c.extend(0xff_fff0), 0xff_fff0);
        // The normal caller reads 0xff_fff8; an interrupt reads and extends 0x00_0004 first.
        assert_eq!(c.extend(0x00_0004), 0x100_0004);
        // The stale reading must not count as a nearly full wrap forward.
        assert_eq!(c.extend(0xff_fff8), 0x100_0004);
        assert_eq!(c.extend(0x00_0010), 0x100_0010);
    }

    #[test]
    fn many_steps_stay_monotonic_and_exact() {
        for bits in [24, 32] {
            let c = WrappingCounter::new(bits);
            let mut truth = 0x1234u64;
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut last = c.extend(truth);
            for _ in 0..100_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Steps up to just under half a wrap, now and then a stale re-read.
                let step = state % (1 << (bits - 1));
                if state.is_multiple_of(7) {
                    let stale = truth.wrapping_sub(step / 3);
                    assert_eq!(c.extend(stale), last);
                    continue;
                }
                truth += step;
                let got = c.extend(truth);
                assert_eq!(got, truth, "{bits} bits");
                assert!(got >= last);
                last = got;
            }
        }
    }

    #[test]
    #[should_panic(expected = "2 to 64 bits")]
    fn a_width_beyond_64_bits_is_a_bug() {
        let _ = WrappingCounter::new(65);
    }
}
