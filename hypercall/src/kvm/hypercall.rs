//! KVM hypercalls (Linux `Documentation/virt/kvm/x86/hypercalls.rst`,
//! `include/uapi/linux/kvm_para.h`).
//!
//! x86 ABI: the number in `rax`, up to four arguments in `rbx`, `rcx`, `rdx`, `rsi`, the
//! result in `rax`; nothing else is clobbered. The instruction is `vmcall` on Intel and
//! `vmmcall` on AMD/Hygon. KVM patches the wrong one when it traps on it, but that costs an
//! extra exit (and patching guest text), so the kernel picks by CPU vendor.

use core::fmt;

use crate::cpuid::CpuidResult;

/// `KVM_HC_*` hypercall numbers.
pub mod nr {
    /// Forces an exit so the host checks pending interrupts; returns 0. The cheapest
    /// round trip to the host.
    pub const VAPIC_POLL_IRQ: u32 = 1;
    /// Deprecated; current KVM answers `-KVM_ENOSYS`.
    pub const MMU_OP: u32 = 2;
    /// PowerPC only: x86 hosts answer `-KVM_ENOSYS`.
    pub const FEATURES: u32 = 3;
    /// PowerPC only.
    pub const PPC_MAP_MAGIC_PAGE: u32 = 4;
    /// Wakes the halted vCPU with APIC id `a1` (`a0` is flags, 0).
    pub const KICK_CPU: u32 = 5;
    /// Host/guest clock pairing into a `kvm_clock_pairing` at guest-physical `a0`.
    pub const CLOCK_PAIRING: u32 = 9;
    /// Multicast IPI by APIC-id bitmap.
    pub const SEND_IPI: u32 = 10;
    /// Yields to the vCPU with APIC id `a0` if it was preempted.
    pub const SCHED_YIELD: u32 = 11;
    /// Memory encryption status of a guest-physical range (handled by the VMM).
    pub const MAP_GPA_RANGE: u32 = 12;
}

/// `KVM_CLOCK_PAIRING_WALLCLOCK`: the only clock type of `KVM_HC_CLOCK_PAIRING`.
pub const KVM_CLOCK_PAIRING_WALLCLOCK: u64 = 0;

/// A KVM hypercall error (`-KVM_E*` in `rax`; `kvm_para.h`: the values follow Linux errno,
/// except `KVM_ENOSYS` = 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmError {
    /// `KVM_ENOSYS` (1000): no such hypercall.
    Enosys,
    /// `KVM_EFAULT` (14): a guest address could not be accessed.
    Efault,
    /// `KVM_EINVAL` (22).
    Einval,
    /// `KVM_E2BIG` (7).
    E2big,
    /// `KVM_EPERM` (1): e.g. a hypercall from CPL > 0.
    Eperm,
    /// `KVM_EOPNOTSUPP` (95): e.g. clock pairing on a host not using the TSC clocksource.
    Eopnotsupp,
    /// A negative result KVM does not define, as its positive value.
    Unknown(i64),
}

impl KvmError {
    pub const KVM_ENOSYS: i64 = 1000;
    pub const KVM_EFAULT: i64 = 14;
    pub const KVM_EINVAL: i64 = 22;
    pub const KVM_E2BIG: i64 = 7;
    pub const KVM_EPERM: i64 = 1;
    pub const KVM_EOPNOTSUPP: i64 = 95;

    /// The error for a negative hypercall result's positive value.
    pub fn from_errno(errno: i64) -> Self {
        match errno {
            Self::KVM_ENOSYS => Self::Enosys,
            Self::KVM_EFAULT => Self::Efault,
            Self::KVM_EINVAL => Self::Einval,
            Self::KVM_E2BIG => Self::E2big,
            Self::KVM_EPERM => Self::Eperm,
            Self::KVM_EOPNOTSUPP => Self::Eopnotsupp,
            other => Self::Unknown(other),
        }
    }

    pub fn errno(self) -> i64 {
        match self {
            Self::Enosys => Self::KVM_ENOSYS,
            Self::Efault => Self::KVM_EFAULT,
            Self::Einval => Self::KVM_EINVAL,
            Self::E2big => Self::KVM_E2BIG,
            Self::Eperm => Self::KVM_EPERM,
            Self::Eopnotsupp => Self::KVM_EOPNOTSUPP,
            Self::Unknown(other) => other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Enosys => "no such hypercall",
            Self::Efault => "bad guest address",
            Self::Einval => "invalid argument",
            Self::E2big => "argument too big",
            Self::Eperm => "not permitted (called outside ring 0?)",
            Self::Eopnotsupp => "not supported by this host",
            Self::Unknown(_) => "unknown error",
        }
    }
}

impl fmt::Display for KvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KVM error {} ({})", self.errno(), self.describe())
    }
}

/// A raw KVM hypercall result: non-negative is a value, `-KVM_E*` an error.
pub fn check(result: i64) -> Result<u64, KvmError> {
    if result < 0 {
        Err(KvmError::from_errno(result.wrapping_neg()))
    } else {
        Ok(result as u64)
    }
}

/// The hypercall instruction of this CPU's virtualization extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallInstruction {
    /// Intel VMX (and every vendor not known to use SVM).
    Vmcall,
    /// AMD SVM, also Hygon.
    Vmmcall,
}

impl HypercallInstruction {
    /// The instruction for the CPU vendor string of CPUID leaf 0 (`ebx`, `edx`, `ecx`).
    pub fn for_vendor(vendor: &[u8; 12]) -> Self {
        match vendor {
            b"AuthenticAMD" | b"HygonGenuine" => Self::Vmmcall,
            _ => Self::Vmcall,
        }
    }

    /// The instruction for the CPU that `cpuid` describes.
    pub fn detect_with(cpuid: impl FnOnce(u32, u32) -> CpuidResult) -> Self {
        Self::for_vendor(&cpu_vendor(cpuid))
    }
}

/// The vendor string of CPUID leaf 0, in the order the CPU spells it: `ebx`, `edx`, `ecx`.
pub fn cpu_vendor(cpuid: impl FnOnce(u32, u32) -> CpuidResult) -> [u8; 12] {
    let r = cpuid(0, 0);
    let mut vendor = [0; 12];
    vendor[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
    vendor[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    vendor
}

/// Makes KVM hypercall `nr` with arguments `a0..a3` and returns KVM's raw result.
///
/// # Safety
/// The kernel must run under KVM at CPL 0 (elsewhere the instruction raises #UD), and the
/// arguments must be valid for hypercall `nr`: guest-physical addresses must name memory
/// the kernel owns and may let the host write.
pub unsafe fn hypercall(
    instruction: HypercallInstruction,
    nr: u32,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
) -> i64 {
    let result: i64;
    // SAFETY: under KVM (caller's promise) the instruction exits to the host, which reads
    // rax/rbx/rcx/rdx/rsi and writes only rax. LLVM reserves rbx, so `a0` travels in a
    // scratch register swapped into rbx around the instruction, restoring rbx after.
    unsafe {
        match instruction {
            HypercallInstruction::Vmcall => core::arch::asm!(
                "xchg {a0}, rbx",
                "vmcall",
                "xchg {a0}, rbx",
                a0 = inout(reg) a0 => _,
                inlateout("rax") u64::from(nr) => result,
                in("rcx") a1,
                in("rdx") a2,
                in("rsi") a3,
                options(nostack),
            ),
            HypercallInstruction::Vmmcall => core::arch::asm!(
                "xchg {a0}, rbx",
                "vmmcall",
                "xchg {a0}, rbx",
                a0 = inout(reg) a0 => _,
                inlateout("rax") u64::from(nr) => result,
                in("rcx") a1,
                in("rdx") a2,
                in("rsi") a3,
                options(nostack),
            ),
        }
    }
    result
}

/// KVM's hypercalls, once the kernel knows it runs under KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmHypercalls {
    instruction: HypercallInstruction,
}

impl KvmHypercalls {
    /// # Safety
    /// The kernel must run under KVM (CPUID signature `KVMKVMKVM`) at CPL 0, and
    /// `instruction` must be this CPU's ([`HypercallInstruction::detect_with`]).
    pub const unsafe fn new(instruction: HypercallInstruction) -> Self {
        Self { instruction }
    }

    pub fn instruction(&self) -> HypercallInstruction {
        self.instruction
    }

    /// Makes hypercall `nr` and checks its result.
    ///
    /// # Safety
    /// The arguments must be valid for hypercall `nr` (see [`hypercall`]).
    pub unsafe fn call(&self, nr: u32, args: [u64; 4]) -> Result<u64, KvmError> {
        let [a0, a1, a2, a3] = args;
        // SAFETY: under KVM (constructor contract); arguments are the caller's contract.
        check(unsafe { hypercall(self.instruction, nr, a0, a1, a2, a3) })
    }

    /// A bare exit to the host and back (`KVM_HC_VAPIC_POLL_IRQ`): what a hypercall costs.
    pub fn vapic_poll_irq(&self) -> Result<(), KvmError> {
        // SAFETY: takes no arguments and only makes the host re-check interrupts.
        unsafe { self.call(nr::VAPIC_POLL_IRQ, [0; 4]) }.map(|_| ())
    }

    /// Yields to the vCPU with APIC id `dest_apic_id` if the host preempted it
    /// (`KVM_HC_SCHED_YIELD`, needs `KVM_FEATURE_PV_SCHED_YIELD`).
    pub fn sched_yield(&self, dest_apic_id: u32) -> Result<(), KvmError> {
        // SAFETY: an APIC id is not an address; the host at most reschedules.
        unsafe { self.call(nr::SCHED_YIELD, [u64::from(dest_apic_id), 0, 0, 0]) }.map(|_| ())
    }

    /// Wakes the halted vCPU with APIC id `apic_id` (`KVM_HC_KICK_CPU`, needs
    /// `KVM_FEATURE_PV_UNHALT`).
    pub fn kick_cpu(&self, apic_id: u32) -> Result<(), KvmError> {
        // SAFETY: flags 0 and an APIC id: no memory is involved.
        unsafe { self.call(nr::KICK_CPU, [0, u64::from(apic_id), 0, 0]) }.map(|_| ())
    }

    /// A hypercall x86 KVM does not implement (`KVM_HC_FEATURES` is PowerPC-only): the
    /// self-test expects [`KvmError::Enosys`], proving errors come back as errors.
    pub fn unknown_hypercall(&self) -> Result<u64, KvmError> {
        // SAFETY: x86 KVM rejects this number before looking at any argument.
        unsafe { self.call(nr::FEATURES, [0; 4]) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn results_map_to_kvm_errors() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(3), Ok(3));
        assert_eq!(check(-1000), Err(KvmError::Enosys));
        assert_eq!(check(-14), Err(KvmError::Efault));
        assert_eq!(check(-22), Err(KvmError::Einval));
        assert_eq!(check(-7), Err(KvmError::E2big));
        assert_eq!(check(-1), Err(KvmError::Eperm));
        assert_eq!(check(-95), Err(KvmError::Eopnotsupp));
        assert_eq!(check(-38), Err(KvmError::Unknown(38)));
        assert_eq!(check(i64::MIN), Err(KvmError::Unknown(i64::MIN)));
        for e in [1000, 14, 22, 7, 1, 95, 38] {
            assert_eq!(KvmError::from_errno(e).errno(), e);
        }
        assert_eq!(
            KvmError::Enosys.to_string(),
            "KVM error 1000 (no such hypercall)"
        );
    }

    #[test]
    fn hypercall_numbers_match_kvm_para_h() {
        assert_eq!(
            [
                nr::VAPIC_POLL_IRQ,
                nr::MMU_OP,
                nr::FEATURES,
                nr::PPC_MAP_MAGIC_PAGE,
                nr::KICK_CPU,
                nr::CLOCK_PAIRING,
                nr::SEND_IPI,
                nr::SCHED_YIELD,
                nr::MAP_GPA_RANGE
            ],
            [1, 2, 3, 4, 5, 9, 10, 11, 12]
        );
    }

    fn leaf0(vendor: &[u8; 12]) -> impl FnOnce(u32, u32) -> CpuidResult {
        let word =
            |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
        let r = CpuidResult {
            eax: 0x16,
            ebx: word(0),
            edx: word(4),
            ecx: word(8),
        };
        move |leaf, _| {
            assert_eq!(leaf, 0);
            r
        }
    }

    #[test]
    fn the_instruction_follows_the_vendor() {
        use HypercallInstruction::*;
        assert_eq!(
            HypercallInstruction::detect_with(leaf0(b"GenuineIntel")),
            Vmcall
        );
        assert_eq!(
            HypercallInstruction::detect_with(leaf0(b"AuthenticAMD")),
            Vmmcall
        );
        assert_eq!(
            HypercallInstruction::detect_with(leaf0(b"HygonGenuine")),
            Vmmcall
        );
        assert_eq!(
            HypercallInstruction::detect_with(leaf0(b"CentaurHauls")),
            Vmcall
        );
        assert_eq!(
            HypercallInstruction::detect_with(leaf0(b"  Shanghai  ")),
            Vmcall
        );
    }

    #[test]
    fn vendor_registers_are_read_in_ebx_edx_ecx_order() {
        // Leaf 0 as read on this project's development host.
        let recorded = |_, _| CpuidResult {
            eax: 0x16,
            ebx: 0x756e_6547,
            ecx: 0x6c65_746e,
            edx: 0x4965_6e69,
        };
        assert_eq!(&cpu_vendor(recorded), b"GenuineIntel");
    }
}
