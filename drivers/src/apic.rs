//! Local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode: enabling it with every local interrupt
//! source masked, end-of-interrupt, and the timer in one-shot or TSC-deadline mode.
//!
//! Follows the Intel SDM vol. 3A ch. 11 "Advanced Programmable Interrupt Controller (APIC)":
//! register map (table 11-1), IA32_APIC_BASE and the mode state machine (11.4.4, 11.12.5),
//! the LVT (11.5.1), the timer (11.5.4, 11.5.4.1 for TSC-deadline), the ESR (11.5.3), the
//! spurious-interrupt vector register (11.9) and the x2APIC MSR map (11.12.1.2).
//!
//! Register access sits behind [`Registers`], so everything above it runs against a fake in
//! host tests. Which mode and timer to use is the caller's choice, from [`Capabilities`]: QEMU
//! TCG may lack x2APIC and has no TSC-deadline timer, KVM has both, Xen HVM/PVH emulates them
//! as its CPUID says.

use x86_64::PhysAddr;
use x86_64::registers::model_specific::Msr;

/// The IA32_APIC_BASE MSR (SDM 11.4.4).
pub const IA32_APIC_BASE: u32 = 0x1B;
/// The IA32_TSC_DEADLINE MSR (SDM 11.5.4.1).
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;

const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;
/// Bits 12..52; bits from MAXPHYADDR up read as zero, so masking at the architectural limit
/// of 52 is enough without knowing MAXPHYADDR.
const APIC_BASE_ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;

/// First x2APIC MSR; register at xAPIC offset `o` is MSR `0x800 + (o >> 4)` (SDM 11.12.1.2).
const X2APIC_MSR_BASE: u32 = 0x800;

const SVR_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_ONE_SHOT: u32 = 0b00 << 17;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// VERSION bits 23:16 hold the number of LVT entries minus one (SDM 11.4.8).
const VERSION_MAX_LVT_SHIFT: u32 = 16;
/// Max-LVT values from which the optional entries exist. The order entries were added in
/// (SDM 11.4.8): Pentium has 4 (timer, LINT0, LINT1, error), P6 adds performance counters,
/// Pentium 4 thermal, later cores CMCI. In x2APIC mode touching an absent one is a #GP.
const MAX_LVT_WITH_PERF: u32 = 4;
const MAX_LVT_WITH_THERMAL: u32 = 5;
const MAX_LVT_WITH_CMCI: u32 = 6;
/// Vectors 0..32 are CPU exceptions; an APIC vector there is either illegal (0..16, SDM
/// 11.5.3) or indistinguishable from an exception in its handler.
const FIRST_USABLE_VECTOR: u8 = 32;

/// Value [`LocalApic::start_masked_countdown`] starts from: ticks elapsed since are
/// `COUNTDOWN_START - current_count()`.
pub const COUNTDOWN_START: u32 = u32::MAX;

/// A local APIC register, named by its xAPIC MMIO offset (SDM table 11-1). A closed set, so
/// an implementation of [`Registers`] can never be handed an offset outside the APIC page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Register(u32);

impl Register {
    pub const ID: Self = Self(0x20);
    pub const VERSION: Self = Self(0x30);
    pub const TPR: Self = Self(0x80);
    pub const EOI: Self = Self(0xB0);
    pub const SVR: Self = Self(0xF0);
    pub const ESR: Self = Self(0x280);
    pub const LVT_CMCI: Self = Self(0x2F0);
    pub const LVT_TIMER: Self = Self(0x320);
    pub const LVT_THERMAL: Self = Self(0x330);
    pub const LVT_PERF: Self = Self(0x340);
    pub const LVT_LINT0: Self = Self(0x350);
    pub const LVT_LINT1: Self = Self(0x360);
    pub const LVT_ERROR: Self = Self(0x370);
    pub const TIMER_INITIAL_COUNT: Self = Self(0x380);
    pub const TIMER_CURRENT_COUNT: Self = Self(0x390);
    pub const TIMER_DIVIDE: Self = Self(0x3E0);

    /// Offset within the xAPIC MMIO page.
    pub const fn mmio_offset(self) -> u32 {
        self.0
    }

    /// The MSR holding this register in x2APIC mode.
    pub const fn x2apic_msr(self) -> u32 {
        X2APIC_MSR_BASE + (self.0 >> 4)
    }
}

/// 32-bit access to the local APIC's registers.
pub trait Registers {
    /// Whether this is x2APIC mode, where the ID register holds the whole 32-bit ID instead of
    /// an 8-bit one in bits 31:24 (SDM 11.12.5.1).
    const X2APIC: bool;
    fn read(&self, register: Register) -> u32;
    fn write(&mut self, register: Register, value: u32);
}

/// xAPIC mode: the registers are a 4 KiB MMIO page.
pub struct XApic {
    base: *mut u8,
}

impl XApic {
    /// # Safety
    /// `base` must point to this CPU's local APIC page (IA32_APIC_BASE's address, xAPIC mode),
    /// mapped uncached, 4 KiB long, and stay mapped for as long as the value lives. Nothing
    /// else may program the APIC meanwhile.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self { base }
    }

    fn register(&self, register: Register) -> *mut u32 {
        // Offsets are below 0x400 and 16-byte aligned, so this stays within the page.
        self.base
            .wrapping_add(register.mmio_offset() as usize)
            .cast::<u32>()
    }
}

// SAFETY: the value holds only the address of a mapping that outlives it (constructor
// contract); any CPU may access it. On several CPUs each reaches its own APIC at that address,
// which the single-vCPU kernel does not yet have to care about.
unsafe impl Send for XApic {}

impl Registers for XApic {
    const X2APIC: bool = false;

    fn read(&self, register: Register) -> u32 {
        // SAFETY: the register lies in the mapped APIC page (constructor contract, `Register`
        // offsets are in-page and aligned); reads have no memory side effects.
        unsafe { self.register(register).read_volatile() }
    }

    fn write(&mut self, register: Register, value: u32) {
        // SAFETY: as in `read`; the APIC is owned by this value, so the write affects only it.
        unsafe { self.register(register).write_volatile(value) }
    }
}

/// x2APIC mode: the registers are MSRs 0x800..0x8FF.
pub struct X2Apic(());

impl X2Apic {
    /// # Safety
    /// x2APIC mode must be enabled in IA32_APIC_BASE (see [`switch_mode`]) and the code must
    /// run at CPL 0 for as long as the value lives. Nothing else may program the APIC meanwhile.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

impl Registers for X2Apic {
    const X2APIC: bool = true;

    fn read(&self, register: Register) -> u32 {
        // SAFETY: x2APIC mode is on at CPL 0 (constructor contract), so the MSR exists; reading
        // APIC registers has no memory side effects. Only the low half is defined for the
        // registers `Register` names.
        unsafe { Msr::new(register.x2apic_msr()).read() as u32 }
    }

    fn write(&mut self, register: Register, value: u32) {
        // SAFETY: as in `read`; the APIC is owned by this value, so the write affects only it.
        unsafe { Msr::new(register.x2apic_msr()).write(u64::from(value)) }
    }
}

/// IA32_APIC_BASE, decoded (SDM figure 11-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicBase {
    /// Physical address of the xAPIC MMIO page.
    pub address: PhysAddr,
    /// EN: the APIC is globally enabled.
    pub enabled: bool,
    /// EXTD: x2APIC mode.
    pub x2apic: bool,
    /// This is the bootstrap processor.
    pub bsp: bool,
}

pub fn apic_base_decode(msr: u64) -> ApicBase {
    ApicBase {
        address: PhysAddr::new(msr & APIC_BASE_ADDRESS),
        enabled: msr & APIC_BASE_EN != 0,
        x2apic: msr & APIC_BASE_EXTD != 0,
        bsp: msr & APIC_BASE_BSP != 0,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    XApic,
    X2Apic,
}

/// IA32_APIC_BASE values to write in order: at most two, as the SDM allows one mode step per
/// write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseWrites {
    values: [u64; 2],
    len: usize,
}

impl BaseWrites {
    pub fn as_slice(&self) -> &[u64] {
        &self.values[..self.len]
    }
}

/// The IA32_APIC_BASE writes that take the APIC from `current` (the MSR's value) to `target`
/// mode, keeping the address and the other bits. SDM 11.12.5 allows disabled→xAPIC and
/// xAPIC→x2APIC but faults on disabled→x2APIC, so that takes two writes; x2APIC→xAPIC is
/// illegal and is refused rather than routed through a reset.
pub fn apic_base_encode(current: u64, target: ApicMode) -> Result<BaseWrites, ApicError> {
    let base = apic_base_decode(current);
    if base.x2apic && !base.enabled {
        return Err(ApicError::InvalidBaseState { msr: current });
    }
    if base.x2apic && target == ApicMode::XApic {
        return Err(ApicError::X2ApicToXApic);
    }
    let xapic = (current & !APIC_BASE_EXTD) | APIC_BASE_EN;
    let x2apic = xapic | APIC_BASE_EXTD;
    let mut writes = BaseWrites {
        values: [0; 2],
        len: 0,
    };
    let mut push = |value| {
        writes.values[writes.len] = value;
        writes.len += 1;
    };
    if !base.enabled {
        push(xapic);
    }
    if target == ApicMode::X2Apic && !base.x2apic {
        push(x2apic);
    }
    Ok(writes)
}

/// Puts the local APIC in `target` mode and returns the resulting IA32_APIC_BASE.
///
/// # Safety
/// CPL 0, and nothing may be using the APIC through the other mode's registers: an [`XApic`]
/// is useless after a switch to x2APIC. For [`ApicMode::X2Apic`] the CPU must support x2APIC
/// ([`Capabilities::x2apic`]), or the write faults.
pub unsafe fn switch_mode(target: ApicMode) -> Result<ApicBase, ApicError> {
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: CPL 0 (caller contract); reading IA32_APIC_BASE has no side effects.
    let current = unsafe { msr.read() };
    let writes = apic_base_encode(current, target)?;
    let mut last = current;
    for &value in writes.as_slice() {
        // SAFETY: each value is one legal mode step (`apic_base_encode`) that keeps the base
        // address, so no memory mapping changes; the caller guarantees no one holds registers
        // of the mode being left and that x2APIC is supported when asked for.
        unsafe { msr.write(value) };
        last = value;
    }
    Ok(apic_base_decode(last))
}

/// What CPUID.01H:ECX says about this CPU's local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub x2apic: bool,
    pub tsc_deadline: bool,
}

impl Capabilities {
    pub fn from_cpuid_leaf1(ecx: u32) -> Self {
        Self {
            x2apic: ecx & (1 << 21) != 0,
            tsc_deadline: ecx & (1 << 24) != 0,
        }
    }
}

/// Timer clock divider (divide configuration register, SDM figure 11-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divide {
    By1,
    By2,
    By4,
    By8,
    By16,
    By32,
    By64,
    By128,
}

impl Divide {
    /// The divide configuration register value: the divisor's code in bits 0, 1 and 3.
    pub const fn register_value(self) -> u32 {
        match self {
            Self::By2 => 0b0000,
            Self::By4 => 0b0001,
            Self::By8 => 0b0010,
            Self::By16 => 0b0011,
            Self::By32 => 0b1000,
            Self::By64 => 0b1001,
            Self::By128 => 0b1010,
            Self::By1 => 0b1011,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// The duration needs an initial count beyond 32 bits.
    TooLong { ns: u64, timer_hz: u64 },
    /// The timer frequency is not known.
    NotCalibrated,
    /// A vector in the CPU exception range.
    ReservedVector(u8),
    /// A one-shot initial count of 0, which never fires.
    ZeroCount,
    /// The APIC is in x2APIC mode and xAPIC was asked for.
    X2ApicToXApic,
    /// IA32_APIC_BASE has EXTD set with EN clear.
    InvalidBaseState { msr: u64 },
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLong { ns, timer_hz } => write!(
                f,
                "{ns} ns does not fit the 32-bit APIC timer count at {timer_hz} Hz; \
                 use a larger divider or split the wait"
            ),
            Self::NotCalibrated => write!(
                f,
                "APIC timer frequency unknown; calibrate it (timer_hz_from) before \
                 converting durations"
            ),
            Self::ReservedVector(vector) => write!(
                f,
                "vector {vector} is a CPU exception vector; use one in 32..=255"
            ),
            Self::ZeroCount => write!(
                f,
                "an APIC timer initial count of 0 never fires; use count_for, which gives \
                 at least 1"
            ),
            Self::X2ApicToXApic => write!(
                f,
                "the local APIC is already in x2APIC mode, which cannot go back to xAPIC \
                 (SDM 11.12.5); use ApicMode::X2Apic and X2Apic registers"
            ),
            Self::InvalidBaseState { msr } => write!(
                f,
                "IA32_APIC_BASE {msr:#x} has x2APIC set with the APIC disabled, an invalid \
                 state (SDM 11.12.5); the firmware or hypervisor left the APIC broken"
            ),
        }
    }
}

fn check_vector(vector: u8) -> Result<(), ApicError> {
    if vector < FIRST_USABLE_VECTOR {
        return Err(ApicError::ReservedVector(vector));
    }
    Ok(())
}

/// The initial count for a one-shot of `ns` nanoseconds with the timer (after its divider)
/// ticking at `timer_hz`: rounded up, so the interrupt never comes early, and at least 1,
/// because 0 stops the timer.
pub fn count_for(ns: u64, timer_hz: u64) -> Result<u32, ApicError> {
    if timer_hz == 0 {
        return Err(ApicError::NotCalibrated);
    }
    let count = (u128::from(ns) * u128::from(timer_hz)).div_ceil(1_000_000_000);
    u32::try_from(count.max(1)).map_err(|_| ApicError::TooLong { ns, timer_hz })
}

/// The timer's frequency (after its divider), from `ticks` counted down while a reference
/// clock measured `elapsed_ns`. `None` when either is 0 or the result overflows.
pub fn timer_hz_from(ticks: u64, elapsed_ns: u64) -> Option<u64> {
    if ticks == 0 || elapsed_ns == 0 {
        return None;
    }
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(elapsed_ns)).ok()
}

/// Arms (or with 0 disarms) the TSC-deadline timer: it fires once the TSC reaches `tsc`.
///
/// # Safety
/// CPL 0 and a CPU with the TSC-deadline timer ([`Capabilities::tsc_deadline`]); the LVT timer
/// must be in TSC-deadline mode ([`LocalApic::start_tsc_deadline_mode`]), as the write is
/// ignored otherwise.
pub unsafe fn write_tsc_deadline(tsc: u64) {
    // SAFETY: MFENCE only orders memory accesses. SDM 11.5.4.1 requires it between the xAPIC
    // MMIO write that set TSC-deadline mode and the WRMSR, or the WRMSR may land first and be
    // ignored.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    // SAFETY: CPL 0 and TSC-deadline support (caller contract), so the MSR exists; arming the
    // timer does not touch memory.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc) };
}

/// A local APIC driven through `R`.
pub struct LocalApic<R: Registers> {
    regs: R,
}

impl<R: Registers> LocalApic<R> {
    pub fn new(regs: R) -> Self {
        Self { regs }
    }

    /// Software-enables the APIC with `spurious_vector` and every local interrupt source
    /// masked, accepting all priorities.
    pub fn enable(&mut self, spurious_vector: u8) -> Result<(), ApicError> {
        check_vector(spurious_vector)?;
        // Masked before the enable so nothing firmware left unmasked (LINT0 as ExtINT is
        // common) fires the moment the APIC comes on.
        let max_lvt = (self.version() >> VERSION_MAX_LVT_SHIFT) & 0xFF;
        let lvts = [
            Register::LVT_TIMER,
            Register::LVT_LINT0,
            Register::LVT_LINT1,
            Register::LVT_ERROR,
        ]
        .into_iter()
        .chain((max_lvt >= MAX_LVT_WITH_PERF).then_some(Register::LVT_PERF))
        .chain((max_lvt >= MAX_LVT_WITH_THERMAL).then_some(Register::LVT_THERMAL))
        .chain((max_lvt >= MAX_LVT_WITH_CMCI).then_some(Register::LVT_CMCI));
        for lvt in lvts {
            self.regs.write(lvt, LVT_MASKED);
        }
        self.regs.write(Register::TPR, 0);
        self.regs
            .write(Register::SVR, SVR_APIC_ENABLE | u32::from(spurious_vector));
        // The ESR latches errors only on a write (SDM 11.5.3); x2APIC faults on a non-zero one.
        self.regs.write(Register::ESR, 0);
        self.regs.read(Register::ESR);
        Ok(())
    }

    /// Signals end of interrupt for the vector being serviced. x2APIC faults on a non-zero
    /// value, xAPIC ignores it, so 0 it is.
    pub fn eoi(&mut self) {
        self.regs.write(Register::EOI, 0);
    }

    pub fn id(&self) -> u32 {
        let raw = self.regs.read(Register::ID);
        if R::X2APIC { raw } else { raw >> 24 }
    }

    pub fn version(&self) -> u32 {
        self.regs.read(Register::VERSION)
    }

    /// Fires `vector` once, `initial_count` timer ticks (bus clock over `divide`) from now.
    pub fn start_one_shot(
        &mut self,
        vector: u8,
        initial_count: u32,
        divide: Divide,
    ) -> Result<(), ApicError> {
        check_vector(vector)?;
        if initial_count == 0 {
            return Err(ApicError::ZeroCount);
        }
        self.program_countdown(
            LVT_TIMER_ONE_SHOT | u32::from(vector),
            initial_count,
            divide,
        );
        Ok(())
    }

    /// Counts down from [`COUNTDOWN_START`] with the interrupt masked, for calibrating the
    /// timer against a reference clock: the LVT mask stops delivery, not counting (SDM 11.5.4).
    pub fn start_masked_countdown(&mut self, divide: Divide) {
        self.program_countdown(LVT_MASKED | LVT_TIMER_ONE_SHOT, COUNTDOWN_START, divide);
    }

    fn program_countdown(&mut self, lvt: u32, initial_count: u32, divide: Divide) {
        // The initial-count write starts the countdown, so it comes last.
        self.regs
            .write(Register::TIMER_DIVIDE, divide.register_value());
        self.regs.write(Register::LVT_TIMER, lvt);
        self.regs
            .write(Register::TIMER_INITIAL_COUNT, initial_count);
    }

    /// Switches the timer to TSC-deadline mode delivering `vector`; arm it with
    /// [`write_tsc_deadline`].
    pub fn start_tsc_deadline_mode(&mut self, vector: u8) -> Result<(), ApicError> {
        check_vector(vector)?;
        self.regs.write(
            Register::LVT_TIMER,
            LVT_TIMER_TSC_DEADLINE | u32::from(vector),
        );
        Ok(())
    }

    /// Stops the timer in any mode. The masked LVT value selects one-shot mode, and leaving
    /// TSC-deadline mode disarms a pending deadline (SDM 11.5.4.1); the zero initial count
    /// then stops a countdown.
    pub fn stop_timer(&mut self) {
        self.regs
            .write(Register::LVT_TIMER, LVT_MASKED | LVT_TIMER_ONE_SHOT);
        self.regs.write(Register::TIMER_INITIAL_COUNT, 0);
    }

    pub fn current_count(&self) -> u32 {
        self.regs.read(Register::TIMER_CURRENT_COUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A register file that remembers values and the order of writes.
    struct FakeRegs<const X2APIC: bool> {
        values: HashMap<Register, u32>,
        writes: Vec<(Register, u32)>,
        reads: RefCell<Vec<Register>>,
    }

    impl<const X2APIC: bool> FakeRegs<X2APIC> {
        fn with(values: &[(Register, u32)]) -> Self {
            Self {
                values: values.iter().copied().collect(),
                writes: Vec::new(),
                reads: RefCell::new(Vec::new()),
            }
        }
    }

    impl<const X2APIC: bool> Registers for FakeRegs<X2APIC> {
        const X2APIC: bool = X2APIC;

        fn read(&self, register: Register) -> u32 {
            self.reads.borrow_mut().push(register);
            self.values.get(&register).copied().unwrap_or(0)
        }

        fn write(&mut self, register: Register, value: u32) {
            self.values.insert(register, value);
            self.writes.push((register, value));
        }
    }

    /// QEMU's and Xen's emulated APIC version: 6 LVT entries.
    const VERSION_6_LVTS: u32 = 0x0005_0014;

    fn apic(version: u32) -> LocalApic<FakeRegs<false>> {
        LocalApic::new(FakeRegs::with(&[(Register::VERSION, version)]))
    }

    fn written(apic: &LocalApic<FakeRegs<false>>) -> Vec<(Register, u32)> {
        apic.regs.writes.clone()
    }

    #[test]
    fn enable_masks_every_lvt_before_setting_svr() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.enable(0xFF).unwrap();
        let writes = written(&apic);
        let svr_at = writes
            .iter()
            .position(|&(r, _)| r == Register::SVR)
            .unwrap();
        assert_eq!(writes[svr_at].1, 0x1FF);
        for lvt in [
            Register::LVT_TIMER,
            Register::LVT_THERMAL,
            Register::LVT_PERF,
            Register::LVT_LINT0,
            Register::LVT_LINT1,
            Register::LVT_ERROR,
        ] {
            let at = writes.iter().position(|&(r, _)| r == lvt).unwrap();
            assert!(at < svr_at, "{lvt:?} masked after SVR");
            assert_eq!(writes[at].1, LVT_MASKED, "{lvt:?}");
        }
        assert!(!writes.iter().any(|&(r, _)| r == Register::LVT_CMCI));
        assert_eq!(apic.regs.values[&Register::TPR], 0);
    }

    #[test]
    fn enable_clears_esr_by_writing_zero_then_reading() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.enable(0xFF).unwrap();
        assert_eq!(written(&apic).last(), Some(&(Register::ESR, 0)));
        assert_eq!(apic.regs.reads.borrow().last(), Some(&Register::ESR));
    }

    #[test]
    fn enable_skips_lvt_entries_the_apic_lacks() {
        // Pentium-style: 4 entries. Touching an absent one in x2APIC mode would #GP.
        let mut apic = apic(0x0003_0014);
        apic.enable(0xFF).unwrap();
        let touched: Vec<_> = written(&apic).iter().map(|&(r, _)| r).collect();
        for absent in [
            Register::LVT_PERF,
            Register::LVT_THERMAL,
            Register::LVT_CMCI,
        ] {
            assert!(!touched.contains(&absent), "{absent:?} written");
        }
        assert!(touched.contains(&Register::LVT_LINT0));
    }

    #[test]
    fn enable_masks_cmci_when_present() {
        let mut apic = apic(0x0006_0015);
        apic.enable(0xFF).unwrap();
        assert!(written(&apic).contains(&(Register::LVT_CMCI, LVT_MASKED)));
    }

    #[test]
    fn exception_vectors_are_refused_before_any_write() {
        let mut apic = apic(VERSION_6_LVTS);
        assert_eq!(apic.enable(31), Err(ApicError::ReservedVector(31)));
        assert_eq!(
            apic.start_one_shot(0, 10, Divide::By1),
            Err(ApicError::ReservedVector(0))
        );
        assert_eq!(
            apic.start_tsc_deadline_mode(15),
            Err(ApicError::ReservedVector(15))
        );
        assert!(written(&apic).is_empty());
    }

    #[test]
    fn one_shot_writes_initial_count_last() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.start_one_shot(0x40, 1234, Divide::By16).unwrap();
        assert_eq!(
            written(&apic),
            [
                (Register::TIMER_DIVIDE, 0b0011),
                (Register::LVT_TIMER, 0x40),
                (Register::TIMER_INITIAL_COUNT, 1234),
            ]
        );
    }

    #[test]
    fn one_shot_of_zero_count_is_refused() {
        let mut apic = apic(VERSION_6_LVTS);
        assert_eq!(
            apic.start_one_shot(0x40, 0, Divide::By1),
            Err(ApicError::ZeroCount)
        );
        assert!(written(&apic).is_empty());
    }

    #[test]
    fn masked_countdown_counts_from_max_without_interrupting() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.start_masked_countdown(Divide::By1);
        assert_eq!(
            written(&apic),
            [
                (Register::TIMER_DIVIDE, 0b1011),
                (Register::LVT_TIMER, LVT_MASKED),
                (Register::TIMER_INITIAL_COUNT, u32::MAX),
            ]
        );
    }

    #[test]
    fn tsc_deadline_mode_sets_mode_bits_and_vector() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.start_tsc_deadline_mode(0x41).unwrap();
        assert_eq!(written(&apic), [(Register::LVT_TIMER, 0x0004_0041)]);
    }

    #[test]
    fn stop_masks_in_one_shot_mode_then_zeroes_count() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.start_tsc_deadline_mode(0x41).unwrap();
        apic.stop_timer();
        assert_eq!(
            written(&apic)[1..],
            [
                (Register::LVT_TIMER, 0x0001_0000),
                (Register::TIMER_INITIAL_COUNT, 0),
            ]
        );
    }

    #[test]
    fn eoi_writes_zero() {
        let mut apic = apic(VERSION_6_LVTS);
        apic.eoi();
        assert_eq!(written(&apic), [(Register::EOI, 0)]);
    }

    #[test]
    fn id_is_bits_31_24_in_xapic_and_whole_in_x2apic() {
        let xapic = LocalApic::new(FakeRegs::<false>::with(&[(Register::ID, 0x0300_0000)]));
        assert_eq!(xapic.id(), 3);
        let x2apic = LocalApic::new(FakeRegs::<true>::with(&[(Register::ID, 0x0001_0203)]));
        assert_eq!(x2apic.id(), 0x0001_0203);
    }

    #[test]
    fn current_count_reads_the_current_count_register() {
        let apic = LocalApic::new(FakeRegs::<false>::with(&[(
            Register::TIMER_CURRENT_COUNT,
            77,
        )]));
        assert_eq!(apic.current_count(), 77);
    }

    #[test]
    fn register_msrs_follow_the_x2apic_map() {
        // SDM table 11-6.
        for (register, msr) in [
            (Register::ID, 0x802),
            (Register::VERSION, 0x803),
            (Register::TPR, 0x808),
            (Register::EOI, 0x80B),
            (Register::SVR, 0x80F),
            (Register::ESR, 0x828),
            (Register::LVT_CMCI, 0x82F),
            (Register::LVT_TIMER, 0x832),
            (Register::LVT_THERMAL, 0x833),
            (Register::LVT_PERF, 0x834),
            (Register::LVT_LINT0, 0x835),
            (Register::LVT_LINT1, 0x836),
            (Register::LVT_ERROR, 0x837),
            (Register::TIMER_INITIAL_COUNT, 0x838),
            (Register::TIMER_CURRENT_COUNT, 0x839),
            (Register::TIMER_DIVIDE, 0x83E),
        ] {
            assert_eq!(register.x2apic_msr(), msr, "{register:?}");
        }
    }

    #[test]
    fn divide_encoding_matches_the_sdm() {
        for (divide, bits) in [
            (Divide::By1, 0b1011),
            (Divide::By2, 0b0000),
            (Divide::By4, 0b0001),
            (Divide::By8, 0b0010),
            (Divide::By16, 0b0011),
            (Divide::By32, 0b1000),
            (Divide::By64, 0b1001),
            (Divide::By128, 0b1010),
        ] {
            assert_eq!(divide.register_value(), bits, "{divide:?}");
        }
    }

    #[test]
    fn count_for_rounds_up_and_is_at_least_one() {
        assert_eq!(count_for(1_000, 1_000_000_000), Ok(1_000));
        // 1 ns at 1 MHz is 0.001 ticks: rounded up to 1.
        assert_eq!(count_for(1, 1_000_000), Ok(1));
        assert_eq!(count_for(0, 1_000_000), Ok(1));
        // 1.5 ticks → 2.
        assert_eq!(count_for(1_500, 1_000_000), Ok(2));
        assert_eq!(count_for(1_000_000_000, 100_000_000), Ok(100_000_000));
    }

    #[test]
    fn count_for_rejects_overflow_and_unknown_frequency() {
        // 2^32 ticks at 1 GHz is about 4.29 s.
        assert_eq!(count_for(4_294_967_295, 1_000_000_000), Ok(u32::MAX));
        assert_eq!(
            count_for(4_294_967_296, 1_000_000_000),
            Err(ApicError::TooLong {
                ns: 4_294_967_296,
                timer_hz: 1_000_000_000
            })
        );
        assert!(count_for(u64::MAX, u64::MAX).is_err());
        assert_eq!(count_for(1_000, 0), Err(ApicError::NotCalibrated));
    }

    #[test]
    fn timer_hz_from_scales_ticks_to_a_second() {
        assert_eq!(timer_hz_from(1_000_000, 10_000_000), Some(100_000_000));
        assert_eq!(timer_hz_from(u64::MAX, 1), None);
        assert_eq!(timer_hz_from(0, 10), None);
        assert_eq!(timer_hz_from(10, 0), None);
    }

    #[test]
    fn apic_base_decodes_fields() {
        let base = apic_base_decode(0xFEE0_0000 | APIC_BASE_EN | APIC_BASE_BSP);
        assert_eq!(
            base,
            ApicBase {
                address: PhysAddr::new(0xFEE0_0000),
                enabled: true,
                x2apic: false,
                bsp: true,
            }
        );
        let x2 = apic_base_decode(0xFEE0_0000 | APIC_BASE_EN | APIC_BASE_EXTD);
        assert!(x2.x2apic && x2.enabled && !x2.bsp);
        // Reserved low bits and bits above 52 are not part of the address.
        assert_eq!(
            apic_base_decode(0xFFF0_0000_FEE0_00FF).address,
            PhysAddr::new(0xFEE0_0000)
        );
    }

    #[test]
    fn apic_base_encode_enables_xapic_before_x2apic() {
        let disabled = 0xFEE0_0000 | APIC_BASE_BSP;
        let xapic = disabled | APIC_BASE_EN;
        let x2apic = xapic | APIC_BASE_EXTD;
        let writes = |current, target| apic_base_encode(current, target).unwrap();
        assert_eq!(writes(disabled, ApicMode::XApic).as_slice(), [xapic]);
        assert_eq!(
            writes(disabled, ApicMode::X2Apic).as_slice(),
            [xapic, x2apic]
        );
        assert_eq!(writes(xapic, ApicMode::X2Apic).as_slice(), [x2apic]);
        assert_eq!(writes(xapic, ApicMode::XApic).as_slice(), [0u64; 0]);
        assert_eq!(writes(x2apic, ApicMode::X2Apic).as_slice(), [0u64; 0]);
    }

    #[test]
    fn apic_base_encode_refuses_illegal_transitions() {
        let x2apic = 0xFEE0_0000 | APIC_BASE_EN | APIC_BASE_EXTD;
        assert_eq!(
            apic_base_encode(x2apic, ApicMode::XApic),
            Err(ApicError::X2ApicToXApic)
        );
        let invalid = 0xFEE0_0000 | APIC_BASE_EXTD;
        assert_eq!(
            apic_base_encode(invalid, ApicMode::X2Apic),
            Err(ApicError::InvalidBaseState { msr: invalid })
        );
    }

    #[test]
    fn capabilities_come_from_ecx_bits_21_and_24() {
        assert_eq!(
            Capabilities::from_cpuid_leaf1(1 << 21),
            Capabilities {
                x2apic: true,
                tsc_deadline: false
            }
        );
        assert_eq!(
            Capabilities::from_cpuid_leaf1(1 << 24),
            Capabilities {
                x2apic: false,
                tsc_deadline: true
            }
        );
        assert_eq!(
            Capabilities::from_cpuid_leaf1(!((1 << 21) | (1 << 24))),
            Capabilities {
                x2apic: false,
                tsc_deadline: false
            }
        );
    }
}
