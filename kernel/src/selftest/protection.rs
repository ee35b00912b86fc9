//! Checks of the memory protection the kernel promises: no mapping both writable and
//! executable, page 0 and stack guard pages unmapped, text read-only, and the CPU protection
//! features on where the CPU offers them.

use x86_64::VirtAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::PageTableFlags as Flags;

use super::{Outcome, ensure};
use crate::arch::{cpu, stack};
use crate::mm::kernel_space;

pub fn no_writable_executable() -> Outcome {
    ensure!(
        Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE),
        "EFER.NXE is off: NO_EXECUTE is not enforced"
    );
    kernel_space::with(|space| {
        let mapper = &space.mapper;
        let mut leaves = 0u64;
        let mut offender = None;
        mapper.for_each_leaf(|leaf| {
            leaves += 1;
            let flags = leaf.effective;
            if flags.contains(Flags::WRITABLE) && !flags.contains(Flags::NO_EXECUTE) {
                offender.get_or_insert(leaf.virt);
            }
        });
        if let Some(va) = offender {
            ensure!(
                false,
                "{:#x} is mapped writable and executable",
                va.as_u64()
            );
        }
        ensure!(
            mapper.translate(VirtAddr::new(0)).is_none(),
            "page 0 is mapped"
        );
        for s in stack::all() {
            ensure!(
                mapper.translate(s.guard).is_none(),
                "guard page of the '{}' stack is mapped",
                s.name
            );
        }
        let text = VirtAddr::new(no_writable_executable as *const () as u64);
        let t = mapper.translate(text).ok_or("kernel text is not mapped")?;
        ensure!(
            !t.flags.contains(Flags::WRITABLE) && !t.flags.contains(Flags::NO_EXECUTE),
            "kernel text is mapped {:?}",
            t.flags
        );
        Ok(Some(alloc::format!("leaves={leaves}")))
    })
}

pub fn cpu_protection() -> Outcome {
    let features = cpu::features();
    let cr4 = Cr4::read();
    ensure!(
        Cr0::read().contains(Cr0Flags::WRITE_PROTECT),
        "CR0.WP is off"
    );
    if crate::platform::xen::is_pv() {
        // The kernel runs at CPL 3 under Xen's SMEP/SMAP; CR4 is Xen's, not its to set.
        return Ok(Some("smep=n/a smap=n/a umip=n/a".into()));
    }
    for (offered, bit, name) in [
        (
            features.smep,
            Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION,
            "SMEP",
        ),
        (
            features.smap,
            Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION,
            "SMAP",
        ),
        (
            features.umip,
            Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION,
            "UMIP",
        ),
    ] {
        ensure!(
            !offered || cr4.contains(bit),
            "CPU offers {name} but it is off"
        );
    }
    let yes_no = |b| if b { "on" } else { "absent" };
    Ok(Some(alloc::format!(
        "smep={} smap={} umip={}",
        yes_no(features.smep),
        yes_no(features.smap),
        yes_no(features.umip)
    )))
}
