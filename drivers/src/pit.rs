//! Intel 8254 programmable interval timer, used as a reference clock to calibrate the TSC.
//!
//! Channel 0 runs as a free-running rate generator (mode 2) and is read through the
//! counter-latch command. Unlike the usual channel-2 method this needs no port 0x61 gate,
//! which `-M microvm` does not emulate.

use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

const CHANNEL0_DATA: u16 = 0x40;
const MODE_COMMAND: u16 = 0x43;
/// Channel 0, low byte then high byte, mode 2 (rate generator), binary.
const CHANNEL0_RATE_GENERATOR: u8 = 0x34;
/// Channel 0, counter latch.
const CHANNEL0_LATCH: u8 = 0x00;
/// Consecutive identical readings after which the counter is declared absent or stopped; a
/// running PIT changes value every 0.84 us, far faster than this many port reads.
const MAX_STALLED_READS: u32 = 100_000;

/// Access to channel 0, a trait so the measurement logic runs against a fake in host tests.
pub trait Channel0 {
    /// Programs channel 0 as a rate generator that counts down from 65536 and reloads.
    fn start(&mut self);
    /// Latches and reads the current count.
    fn read(&mut self) -> u16;
}

/// The real PIT on I/O ports 0x40..0x43.
pub struct PortPit(());

impl PortPit {
    /// # Safety
    /// The caller owns the PIT: nothing else may program it while this value lives, and its
    /// interrupt (IRQ 0) must be masked or ignored, because channel 0 is reprogrammed.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

impl Channel0 for PortPit {
    fn start(&mut self) {
        // SAFETY: PIT ports are owned by this value (constructor contract); writing them does
        // not touch memory.
        unsafe {
            Port::<u8>::new(MODE_COMMAND).write(CHANNEL0_RATE_GENERATOR);
            Port::<u8>::new(CHANNEL0_DATA).write(0);
            Port::<u8>::new(CHANNEL0_DATA).write(0);
        }
    }

    fn read(&mut self) -> u16 {
        // SAFETY: as in `start`; the latch command freezes the count for the two reads.
        unsafe {
            Port::<u8>::new(MODE_COMMAND).write(CHANNEL0_LATCH);
            let low = Port::<u8>::new(CHANNEL0_DATA).read();
            let high = Port::<u8>::new(CHANNEL0_DATA).read();
            u16::from_le_bytes([low, high])
        }
    }
}

/// PIT ticks elapsed from reading `earlier` to reading `later` of a down-counter that wraps at
/// 65536. Correct as long as readings are less than 65536 ticks (55 ms) apart.
pub fn ticks_between(earlier: u16, later: u16) -> u64 {
    u64::from(earlier.wrapping_sub(later))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    pub pit_ticks: u64,
    pub clock_ticks: u64,
}

impl Measurement {
    /// The measured clock's frequency in Hz.
    pub fn clock_hz(&self) -> u64 {
        (u128::from(self.clock_ticks) * u128::from(PIT_HZ) / u128::from(self.pit_ticks.max(1)))
            as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PitError {
    /// The count never changed: no PIT, or a stopped one.
    Stalled,
    /// The window did not complete within the allowed number of readings.
    TooSlow { readings: u64, pit_ticks: u64 },
}

impl core::fmt::Display for PitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Stalled => write!(
                f,
                "PIT channel 0 count does not move (no PIT on this machine?)"
            ),
            Self::TooSlow {
                readings,
                pit_ticks,
            } => write!(
                f,
                "PIT advanced only {pit_ticks} ticks in {readings} readings"
            ),
        }
    }
}

/// Counts `clock` ticks over at least `window` PIT ticks. Bounded: gives up after
/// `max_readings` counter reads, or when the counter stalls.
pub fn measure(
    pit: &mut impl Channel0,
    window: u64,
    max_readings: u64,
    mut clock: impl FnMut() -> u64,
) -> Result<Measurement, PitError> {
    pit.start();
    let mut previous = pit.read();
    let clock_start = clock();
    let mut pit_ticks = 0;
    let mut stalled = 0;
    for _ in 0..max_readings {
        let count = pit.read();
        let now = clock();
        let advanced = ticks_between(previous, count);
        if advanced == 0 {
            stalled += 1;
            if stalled >= MAX_STALLED_READS {
                return Err(PitError::Stalled);
            }
            continue;
        }
        stalled = 0;
        pit_ticks += advanced;
        previous = count;
        if pit_ticks >= window {
            return Ok(Measurement {
                pit_ticks,
                clock_ticks: now - clock_start,
            });
        }
    }
    Err(PitError::TooSlow {
        readings: max_readings,
        pit_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PIT whose count drops by `step` per read, and a clock that advances `clock_per_read`.
    struct FakePit {
        count: u16,
        step: u16,
    }

    impl Channel0 for FakePit {
        fn start(&mut self) {
            self.count = 0;
        }
        fn read(&mut self) -> u16 {
            self.count = self.count.wrapping_sub(self.step);
            self.count
        }
    }

    #[test]
    fn ticks_between_handles_wrap() {
        assert_eq!(ticks_between(100, 40), 60);
        assert_eq!(ticks_between(5, 65530), 11);
        assert_eq!(ticks_between(0, 65535), 1);
        assert_eq!(ticks_between(7, 7), 0);
    }

    #[test]
    fn measures_clock_against_pit() {
        let mut pit = FakePit { count: 0, step: 3 };
        let mut now = 0u64;
        // 3 PIT ticks per read, 7543 clock ticks per read: ~3 GHz clock.
        let m = measure(&mut pit, 11_932, 1_000_000, || {
            now += 7_543;
            now
        })
        .unwrap();
        assert!(m.pit_ticks >= 11_932);
        let hz = m.clock_hz();
        let expected = 7_543 * PIT_HZ / 3;
        assert!(
            hz.abs_diff(expected) < expected / 1000,
            "{hz} vs {expected}"
        );
    }

    #[test]
    fn stalled_counter_is_an_error_not_a_hang() {
        let mut pit = FakePit { count: 0, step: 0 };
        assert_eq!(
            measure(&mut pit, 100, u64::MAX, || 0),
            Err(PitError::Stalled)
        );
    }

    #[test]
    fn too_few_readings_is_an_error() {
        let mut pit = FakePit { count: 0, step: 1 };
        assert_eq!(
            measure(&mut pit, 1_000, 10, || 0),
            Err(PitError::TooSlow {
                readings: 10,
                pit_ticks: 10
            })
        );
    }
}
