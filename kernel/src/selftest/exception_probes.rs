//! The exception table: a probe whose instruction faults resumes at its fixup and says so.
//! Under KVM a hypercall probe may succeed, which is what the hypercall benchmark asks it;
//! where no hypervisor takes `vmcall` or `vmmcall` (TCG, bare metal), both must raise #UD,
//! which is the only place the fixup path of #UD can be shown to work.

use super::{Outcome, ensure};
use crate::arch::extable::{HypercallFaulted, probe_kvm_hypercall};
use janus_hypercall::kvm::hypercall::{HypercallInstruction, nr};

pub fn run() -> Outcome {
    for instruction in [HypercallInstruction::Vmcall, HypercallInstruction::Vmmcall] {
        let result = probe_kvm_hypercall(instruction, nr::VAPIC_POLL_IRQ);
        ensure!(
            result == Err(HypercallFaulted),
            "{instruction:?} without a hypervisor returned {result:?} instead of faulting"
        );
    }
    Ok(Some("vmcall=faulted vmmcall=faulted".into()))
}
