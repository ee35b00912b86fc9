//! High Precision Event Timer, used as a free-running reference counter (IA-PC HPET
//! specification 1.0a, October 2004, §2.3 "Register Descriptions").
//!
//! Only the main counter is used: every comparator's interrupt and the legacy replacement
//! routing are switched off, so the HPET never raises an interrupt the kernel has not asked
//! for. The base address comes from the ACPI `HPET` table and is not trusted to decode to an
//! HPET, so the capabilities are checked before anything is written.

/// Size of the register block (spec §2.3.1, Table 2).
const BLOCK_BYTES: usize = 0x400;

const GENERAL_CAPABILITIES: usize = 0x000;
const GENERAL_CONFIGURATION: usize = 0x010;
const MAIN_COUNTER: usize = 0x0F0;
const TIMER0_CONFIGURATION: usize = 0x100;
const TIMER_STRIDE: usize = 0x20;

/// `COUNT_SIZE_CAP` in General Capabilities: the main counter is 64 bits wide.
const COUNT_SIZE_CAP: u64 = 1 << 13;
const NUM_TIM_CAP_SHIFT: u32 = 8;
const NUM_TIM_CAP_MASK: u64 = 0x1f;
const REV_ID_MASK: u64 = 0xff;
/// `COUNTER_CLK_PERIOD` is at most 100 ns (spec §2.3.4), i.e. the counter runs at 10 MHz or
/// more.
const MAX_PERIOD_FS: u64 = 0x05F5_E100;

/// `ENABLE_CNF` in General Configuration: the main counter runs.
const ENABLE_CNF: u64 = 1 << 0;
/// `LEG_RT_CNF` in General Configuration: timers 0 and 1 take over IRQ 0 and IRQ 8.
const LEG_RT_CNF: u64 = 1 << 1;
/// `Tn_INT_ENB_CNF` in a timer's configuration: the comparator may interrupt.
const TN_INT_ENB_CNF: u64 = 1 << 2;

/// Timers whose registers fit in the 1 KiB block. `NUM_TIM_CAP` can claim up to 32, but
/// timers 24 and above would lie past the block the spec defines and the ACPI table maps.
const MAX_TIMERS: usize = (BLOCK_BYTES - TIMER0_CONFIGURATION) / TIMER_STRIDE;

/// Main counter reads without a change after which it counts as stopped. The counter ticks
/// at least every 100 ns, and this many uncached reads take milliseconds at the very least.
const MAX_STALLED_READS: u32 = 1_000_000;

const FS_PER_SEC: u64 = 1_000_000_000_000_000;
const FS_PER_NS: u128 = 1_000_000;

/// 64-bit access to the register block, a trait so the setup logic runs against a fake in
/// host tests. `offset` is a byte offset of a register, a multiple of 8 below 0x400.
pub trait Registers {
    fn read(&self, offset: usize) -> u64;
    fn write(&mut self, offset: usize, value: u64);
}

/// The memory-mapped register block of a real HPET.
#[derive(Debug)]
pub struct MmioRegisters {
    base: *mut u64,
}

// SAFETY: the block stays mapped for the value's lifetime (constructor contract), and HPET
// register reads have no side effects, so reads from any CPU, even at once, are fine; writes
// need `&mut self`.
unsafe impl Send for MmioRegisters {}
// SAFETY: as above.
unsafe impl Sync for MmioRegisters {}

impl MmioRegisters {
    /// # Safety
    /// `base` is the start of an HPET's 1 KiB register block, 8-byte aligned, mapped
    /// uncached (device memory) for as long as this value lives, and not programmed by
    /// anything else meanwhile.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self { base: base.cast() }
    }

    /// The register at `offset`, after checking it lies in the block: offsets come from
    /// this module's constants, so a bad one is a bug, and must not reach memory.
    fn register(&self, offset: usize) -> *mut u64 {
        assert!(
            offset.is_multiple_of(8) && offset < BLOCK_BYTES,
            "HPET register offset {offset:#x} outside the 1 KiB block"
        );
        self.base.wrapping_add(offset / 8)
    }
}

impl Registers for MmioRegisters {
    fn read(&self, offset: usize) -> u64 {
        let register = self.register(offset);
        // SAFETY: `register` is an aligned u64 inside the mapped block (constructor contract,
        // checked offset); volatile because the device changes it.
        unsafe { register.read_volatile() }
    }

    fn write(&mut self, offset: usize, value: u64) {
        let register = self.register(offset);
        // SAFETY: as in `read`; the block is this value's to program (constructor contract).
        unsafe { register.write_volatile(value) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpetError {
    /// The capabilities read all ones or have revision 0.
    Absent,
    /// `COUNTER_CLK_PERIOD` (femtoseconds) is 0 or above 100 ns.
    BadPeriod(u64),
    /// The main counter did not move after being enabled.
    Stopped,
}

impl core::fmt::Display for HpetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Absent => write!(
                f,
                "the address from the ACPI HPET table is not an HPET (capabilities read \
                 all ones or revision 0): check the table, or run without an HPET"
            ),
            Self::BadPeriod(fs) => write!(
                f,
                "HPET counter period is {fs} fs, out of spec (1 to {MAX_PERIOD_FS} fs): \
                 the device is broken or misemulated; use another clock source"
            ),
            Self::Stopped => write!(
                f,
                "HPET main counter does not advance after {MAX_STALLED_READS} reads with \
                 ENABLE_CNF set: the device is halted; use another clock source"
            ),
        }
    }
}

/// An HPET whose main counter runs and whose comparators are all silent.
#[derive(Debug)]
pub struct Hpet<R: Registers> {
    regs: R,
    period_fs: u64,
    bits: u32,
}

impl<R: Registers> Hpet<R> {
    /// Checks the capabilities, disables every comparator interrupt and legacy routing,
    /// enables the main counter and checks that it advances (bounded).
    pub fn new(mut regs: R) -> Result<Self, HpetError> {
        let capabilities = regs.read(GENERAL_CAPABILITIES);
        // All ones: nothing decodes the address. Revision 0 is reserved (spec §2.3.4), and
        // an all-zero read is unbacked memory rather than a broken period.
        if capabilities == u64::MAX || capabilities & REV_ID_MASK == 0 {
            return Err(HpetError::Absent);
        }
        let period_fs = capabilities >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return Err(HpetError::BadPeriod(period_fs));
        }
        let bits = if capabilities & COUNT_SIZE_CAP != 0 {
            64
        } else {
            32
        };

        // NUM_TIM_CAP is the number of the last timer.
        let timers = ((capabilities >> NUM_TIM_CAP_SHIFT) & NUM_TIM_CAP_MASK) as usize + 1;
        for timer in 0..timers.min(MAX_TIMERS) {
            let offset = TIMER0_CONFIGURATION + timer * TIMER_STRIDE;
            let config = regs.read(offset);
            regs.write(offset, config & !TN_INT_ENB_CNF);
        }
        let config = regs.read(GENERAL_CONFIGURATION);
        regs.write(GENERAL_CONFIGURATION, (config & !LEG_RT_CNF) | ENABLE_CNF);

        let hpet = Self {
            regs,
            period_fs,
            bits,
        };
        let start = hpet.counter();
        for _ in 0..MAX_STALLED_READS {
            if hpet.counter() != start {
                return Ok(hpet);
            }
            core::hint::spin_loop();
        }
        Err(HpetError::Stopped)
    }

    /// The main counter; only the low 32 bits when the counter is 32 bits wide, whose upper
    /// half the spec leaves undefined.
    pub fn counter(&self) -> u64 {
        let value = self.regs.read(MAIN_COUNTER);
        if self.bits == 32 {
            value & u64::from(u32::MAX)
        } else {
            value
        }
    }

    /// 32 or 64: where [`Self::counter`] wraps.
    pub fn counter_bits(&self) -> u32 {
        self.bits
    }

    /// Femtoseconds per counter tick.
    pub fn period_fs(&self) -> u64 {
        self.period_fs
    }

    /// Counter ticks per second, rounded down.
    pub fn frequency_hz(&self) -> u64 {
        FS_PER_SEC / self.period_fs
    }

    /// Nanoseconds for `ticks` counter ticks, rounded down; saturates at `u64::MAX`.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let ns = u128::from(ticks) * u128::from(self.period_fs) / FS_PER_NS;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::cell::Cell;
    use std::string::ToString;

    /// QEMU's HPET: 10 ns period (100 MHz), 64-bit counter, timers 0..=2, revision 1.
    const QEMU_CAPABILITIES: u64 = (10_000_000 << 32) | COUNT_SIZE_CAP | (2 << 8) | 1;

    /// A register block whose main counter advances by `step` on every read once enabled.
    #[derive(Debug)]
    struct FakeHpet {
        registers: [u64; BLOCK_BYTES / 8],
        counter: Cell<u64>,
        step: u64,
    }

    impl FakeHpet {
        fn new(capabilities: u64, step: u64) -> Self {
            let mut registers = [0; BLOCK_BYTES / 8];
            registers[GENERAL_CAPABILITIES / 8] = capabilities;
            // Firmware left legacy routing on and every comparator able to interrupt.
            registers[GENERAL_CONFIGURATION / 8] = LEG_RT_CNF;
            for timer in 0..MAX_TIMERS {
                registers[(TIMER0_CONFIGURATION + timer * TIMER_STRIDE) / 8] =
                    TN_INT_ENB_CNF | (1 << 4);
            }
            Self {
                registers,
                counter: Cell::new(0),
                step,
            }
        }
    }

    impl Registers for FakeHpet {
        fn read(&self, offset: usize) -> u64 {
            if offset == MAIN_COUNTER {
                if self.registers[GENERAL_CONFIGURATION / 8] & ENABLE_CNF != 0 {
                    self.counter.set(self.counter.get().wrapping_add(self.step));
                }
                return self.counter.get();
            }
            self.registers[offset / 8]
        }

        fn write(&mut self, offset: usize, value: u64) {
            assert_ne!(offset, GENERAL_CAPABILITIES, "capabilities are read-only");
            self.registers[offset / 8] = value;
        }
    }

    fn timer_config(hpet: &Hpet<FakeHpet>, timer: usize) -> u64 {
        hpet.regs.registers[(TIMER0_CONFIGURATION + timer * TIMER_STRIDE) / 8]
    }

    #[test]
    fn qemu_s_hpet_is_a_100_mhz_64_bit_counter() {
        let hpet = Hpet::new(FakeHpet::new(QEMU_CAPABILITIES, 7)).unwrap();
        assert_eq!(hpet.period_fs(), 10_000_000);
        assert_eq!(hpet.frequency_hz(), 100_000_000);
        assert_eq!(hpet.counter_bits(), 64);
        assert_eq!(hpet.ticks_to_ns(100_000_000), 1_000_000_000);
        assert_eq!(hpet.ticks_to_ns(u64::MAX), u64::MAX);
        let a = hpet.counter();
        assert_eq!(hpet.counter(), a + 7);
    }

    #[test]
    fn setup_enables_the_counter_and_silences_every_timer() {
        let hpet = Hpet::new(FakeHpet::new(QEMU_CAPABILITIES, 1)).unwrap();
        let config = hpet.regs.registers[GENERAL_CONFIGURATION / 8];
        assert_eq!(config & ENABLE_CNF, ENABLE_CNF);
        assert_eq!(config & LEG_RT_CNF, 0);
        for timer in 0..3 {
            // Only the interrupt enable is cleared; other settings stay.
            assert_eq!(timer_config(&hpet, timer), 1 << 4, "timer {timer}");
        }
        // Timers the HPET does not have are not touched.
        assert_eq!(timer_config(&hpet, 3), TN_INT_ENB_CNF | (1 << 4));
    }

    #[test]
    fn a_claim_of_32_timers_touches_only_the_block() {
        let capabilities = (QEMU_CAPABILITIES & !(0x1f << 8)) | (31 << 8);
        let hpet = Hpet::new(FakeHpet::new(capabilities, 1)).unwrap();
        assert_eq!(timer_config(&hpet, MAX_TIMERS - 1), 1 << 4);
    }

    #[test]
    fn all_ones_is_absent() {
        assert_eq!(
            Hpet::new(FakeHpet::new(u64::MAX, 1)).unwrap_err(),
            HpetError::Absent
        );
    }

    #[test]
    fn revision_0_is_absent() {
        assert_eq!(
            Hpet::new(FakeHpet::new(QEMU_CAPABILITIES & !0xff, 1)).unwrap_err(),
            HpetError::Absent
        );
        assert_eq!(
            Hpet::new(FakeHpet::new(0, 1)).unwrap_err(),
            HpetError::Absent
        );
    }

    #[test]
    fn a_zero_period_is_refused() {
        let capabilities = QEMU_CAPABILITIES & 0xffff_ffff;
        assert_eq!(
            Hpet::new(FakeHpet::new(capabilities, 1)).unwrap_err(),
            HpetError::BadPeriod(0)
        );
    }

    #[test]
    fn a_period_above_100_ns_is_refused() {
        let capabilities = (QEMU_CAPABILITIES & 0xffff_ffff) | ((MAX_PERIOD_FS + 1) << 32);
        let err = Hpet::new(FakeHpet::new(capabilities, 1)).unwrap_err();
        assert_eq!(err, HpetError::BadPeriod(100_000_001));
        assert!(err.to_string().contains("100000001 fs"));
        // Exactly 100 ns is in spec.
        let capabilities = (QEMU_CAPABILITIES & 0xffff_ffff) | (MAX_PERIOD_FS << 32);
        assert_eq!(
            Hpet::new(FakeHpet::new(capabilities, 1))
                .unwrap()
                .frequency_hz(),
            10_000_000
        );
    }

    #[test]
    fn a_counter_that_never_moves_is_stopped_not_a_hang() {
        assert_eq!(
            Hpet::new(FakeHpet::new(QEMU_CAPABILITIES, 0)).unwrap_err(),
            HpetError::Stopped
        );
    }

    #[test]
    fn a_32_bit_counter_is_masked() {
        let capabilities = QEMU_CAPABILITIES & !COUNT_SIZE_CAP;
        let fake = FakeHpet::new(capabilities, 1);
        // Garbage in the undefined upper half.
        fake.counter.set(0xabcd_0000_ffff_fff0);
        let hpet = Hpet::new(fake).unwrap();
        assert_eq!(hpet.counter_bits(), 32);
        assert_eq!(hpet.counter() >> 32, 0);
        assert!(hpet.counter() > 0xffff_fff0);
    }

    #[test]
    fn the_14_mhz_period_of_pc_hardware_converts() {
        // 69.841279 ns: the 14.31818 MHz crystal of ICH-era chipsets.
        let capabilities = (69_841_279 << 32) | (2 << 8) | 1;
        let hpet = Hpet::new(FakeHpet::new(capabilities, 1)).unwrap();
        assert_eq!(hpet.frequency_hz(), 14_318_179);
        assert_eq!(hpet.ticks_to_ns(14_318_180), 1_000_000_004);
    }

    #[test]
    fn mmio_registers_are_volatile_64_bit_accesses() {
        let mut block = [0u64; BLOCK_BYTES / 8];
        block[MAIN_COUNTER / 8] = 0x1234;
        // SAFETY: `block` is an aligned, 1 KiB buffer that outlives `regs`, and is only
        // accessed through it until the final check.
        let mut regs = unsafe { MmioRegisters::new(block.as_mut_ptr().cast()) };
        assert_eq!(regs.read(MAIN_COUNTER), 0x1234);
        regs.write(GENERAL_CONFIGURATION, ENABLE_CNF);
        assert_eq!(block[GENERAL_CONFIGURATION / 8], ENABLE_CNF);
    }

    #[test]
    #[should_panic(expected = "outside the 1 KiB block")]
    fn mmio_registers_refuse_an_offset_past_the_block() {
        let mut block = [0u64; BLOCK_BYTES / 8];
        // SAFETY: as above.
        let regs = unsafe { MmioRegisters::new(block.as_mut_ptr().cast()) };
        let _ = regs.read(BLOCK_BYTES);
    }
}
