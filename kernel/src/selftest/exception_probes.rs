//! The exception table: a probe whose instruction faults resumes at its fixup and says so.
//! Each path is shown where the fault is certain: without a hypervisor that takes them
//! (TCG), `vmcall` and `vmmcall` raise #UD; under Xen, which gives no guest KVM's MSRs,
//! writing `MSR_KVM_SYSTEM_TIME_NEW` raises #GP. Under KVM the same probes guard the
//! hypercall benchmark and kvmclock, where success is the expected answer.

use alloc::string::String;

use super::{Outcome, ensure};
use crate::arch::extable::{HypercallFaulted, MsrRefused, probe_kvm_hypercall, probe_wrmsr};
use janus_hypercall::cpuid::Hypervisor;
use janus_hypercall::kvm::hypercall::{HypercallInstruction, nr};
use janus_hypercall::kvm::msr::MSR_KVM_SYSTEM_TIME_NEW;

/// Whether the test has a certain fault to show under `hypervisor`.
pub fn applies(hypervisor: Hypervisor) -> bool {
    matches!(
        hypervisor,
        Hypervisor::Tcg | Hypervisor::None | Hypervisor::Xen
    )
}

pub fn run(hypervisor: Hypervisor) -> Outcome {
    let mut shown = String::new();
    if hypervisor == Hypervisor::Xen {
        // SAFETY: an enable bit of 0 asks for no record, so even a KVM would write nothing.
        let result = unsafe { probe_wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0) };
        ensure!(
            result == Err(MsrRefused),
            "writing MSR_KVM_SYSTEM_TIME_NEW under Xen gave {result:?} instead of #GP"
        );
        shown.push_str("wrmsr=faulted");
    } else {
        for instruction in [HypercallInstruction::Vmcall, HypercallInstruction::Vmmcall] {
            let result = probe_kvm_hypercall(instruction, nr::VAPIC_POLL_IRQ);
            ensure!(
                result == Err(HypercallFaulted),
                "{instruction:?} without a hypervisor returned {result:?} instead of faulting"
            );
        }
        shown.push_str("vmcall=faulted vmmcall=faulted");
    }
    Ok(Some(shown))
}
