//! Boot tests: each boots the kernel image under QEMU and checks its `@janus` output.
//! Run them through `cargo xtask test`, which builds the image and passes it in
//! `JANUS_KERNEL`.

use janus_tests::{
    PVH, REQUIRED_ATA_TESTS, REQUIRED_IO_TESTS, REQUIRED_PC_CLOCK_BENCHES, XEN_PV, boot,
    boot_without_devices, garbage_cmdline,
};
use xtask::qemu::{Env, Machine};

/// With virtio-mmio devices: virtio-blk, virtio-net with the UDP echo, virtio-rng and the
/// virtio console, all checked on the host too.
#[test]
fn tcg_microvm_passes() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", "");
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    run.assert_mem_near(128);
}

/// With the virtio devices on PCI (configuration space through ports 0xcf8/0xcfc), each
/// interrupting by MSI-X, and the ATA baseline disk.
#[test]
fn tcg_pc_qboot_passes() {
    let run = boot(Env::Tcg, Machine::Pc, "128M", "");
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    run.assert_benches(&REQUIRED_PC_CLOCK_BENCHES);
    run.assert_mem_near(128);
    run.assert_completion_route("virtio-blk", "interrupt vector 0x40");
    run.assert_completion_route("virtio-net", "interrupt vector 0x41");
}

/// `pci-irq=intx`: the virtio devices interrupt by INTx through the IOAPIC, as a device
/// without MSI-X would, and their completions still arrive by interrupt. qboot routes PIRQC
/// and PIRQD, which INTA# of virtio-blk at 00:03.0 and virtio-net at 00:04.0 drive, to IRQ
/// 11: the two share the line and its vector. (qboot's Interrupt Line says 10 for 00:04.0.)
#[test]
fn tcg_pc_intx_interrupts_pass() {
    let run = boot(Env::Tcg, Machine::Pc, "128M", "pci-irq=intx");
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    run.assert_benches(&REQUIRED_PC_CLOCK_BENCHES);
    run.assert_mem_near(128);
    for device in ["virtio-blk", "virtio-net"] {
        run.assert_completion_route(device, "interrupt INTx GSI 11 -> vector 0x40");
    }
    run.assert_completion_interrupts_arrive();
}

/// [`tcg_pc_intx_interrupts_pass`] on Q35, where INTA# of virtio-blk at 00:02.0 and
/// virtio-net at 00:03.0 drive PIRQG and PIRQH, which the ICH9 wires to IOAPIC inputs 22 and
/// 23: a line and a vector each.
#[test]
fn tcg_q35_intx_interrupts_pass() {
    let run = boot(Env::Tcg, Machine::Q35, "128M", "pci-irq=intx");
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    run.assert_benches(&REQUIRED_PC_CLOCK_BENCHES);
    run.assert_mem_near(128);
    run.assert_completion_route("virtio-blk", "interrupt INTx GSI 22 -> vector 0x40");
    run.assert_completion_route("virtio-net", "interrupt INTx GSI 23 -> vector 0x41");
    run.assert_completion_interrupts_arrive();
}

/// With the virtio devices on PCIe (configuration space through ECAM), no IDE.
#[test]
fn tcg_q35_qboot_passes() {
    let run = boot(Env::Tcg, Machine::Q35, "128M", "");
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    run.assert_benches(&REQUIRED_PC_CLOCK_BENCHES);
    run.assert_mem_near(128);
}

/// A `virtio_mmio.device=` entry for a slot with no device behind it (QEMU 7.2's microvm
/// fills its 24 slots from the top, 0xfeb02e00 down, so with four devices the first slot is
/// empty) is refused by name, and the real devices still work.
#[test]
fn tcg_microvm_bad_virtio_mmio_entry_is_refused() {
    let run = boot(
        Env::Tcg,
        Machine::Microvm,
        "128M",
        "virtio_mmio.device=512@0xfeb00000:5",
    );
    run.assert_healthy("tcg", PVH);
    run.assert_io();
    // The refusal is for people, so this test reads the human text on purpose.
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("virtio_mmio.device=512@0xfeb00000:5 refused")),
        || "no refusal of virtio_mmio.device=512@0xfeb00000:5 on the console".into(),
    );
}

/// Without devices the I/O self-tests are not run, no host check either, and the boot
/// still passes.
#[test]
fn tcg_pc_without_devices_still_passes() {
    let run = boot_without_devices(Env::Tcg, Machine::Pc, "128M", "");
    run.assert_healthy("tcg", PVH);
    run.check(run.outcome.host_checks.is_empty(), || {
        format!(
            "host checks ran without devices: {:?}",
            run.outcome.host_checks
        )
    });
    run.check(!run.config.kernel_cmdline().contains("net-echo="), || {
        "net-echo= was passed without a NIC".into()
    });
    for name in REQUIRED_IO_TESTS.iter().chain(&REQUIRED_ATA_TESTS) {
        run.check(run.report.test(name).is_none(), || {
            format!("self-test {name} ran without its device")
        });
    }
}

/// `clock=` forces another source where it exists. The TSC is then compared with the PM
/// timer, which under TCG follows the host's (NTP-slewed) monotonic clock while the TSC
/// follows the host's TSC: they may disagree by more than the 100 ppm `clock-vs-tsc`
/// allows, so only the clock's own tests are required here.
#[test]
fn tcg_pc_clock_pmtimer_can_be_forced() {
    let run = boot(Env::Tcg, Machine::Pc, "128M", "clock=pmtimer");
    run.assert_env("clock", "pmtimer");
    for name in ["clock-monotonic", "sleep", "wall-clock"] {
        match run.report.test(name) {
            Some(test) => run.check(test.pass, || format!("{name} failed: {:?}", test.reason)),
            None => run.fail(&format!("self-test {name} missing")),
        }
    }
    run.assert_benches(&["clock-drift-tsc", "clock-drift-hpet", "timer-latency"]);
}

/// A forced clock that does not exist here is refused by name, and the platform's choice
/// is used.
#[test]
fn tcg_missing_forced_clock_is_refused() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", "clock=kvmclock");
    run.assert_healthy("tcg", PVH);
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("clock=kvmclock is not available here; using clock=tsc")),
        || "no refusal of clock=kvmclock on the console".into(),
    );
}

#[test]
fn tcg_fault_selftest_reports_and_exits_2() {
    boot(Env::Tcg, Machine::Microvm, "128M", "selftest=fault").assert_page_fault();
}

#[test]
fn tcg_stack_overflow_is_reported() {
    let run = boot(
        Env::Tcg,
        Machine::Microvm,
        "128M",
        "selftest=stack-overflow",
    );
    run.check(run.verdict.exit_code() == 2, || "expected exit 2".into());
    let Some(abort) = &run.report.abort else {
        run.fail("no `@janus abort` line");
    };
    run.check(abort.kind == "fault", || {
        format!("abort kind={}", abort.kind)
    });
    run.check(abort.get("vector") == Some("14"), || {
        format!("abort vector={:?}, expected 14", abort.get("vector"))
    });
    run.check(abort.get("guard").is_some(), || {
        "abort line does not name the overflowed stack (guard=)".into()
    });
}

#[test]
fn tcg_panic_is_reported_with_location() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", "selftest=panic");
    run.check(run.verdict.exit_code() == 2, || "expected exit 2".into());
    let Some(abort) = &run.report.abort else {
        run.fail("no `@janus abort` line");
    };
    run.check(abort.kind == "panic", || {
        format!("abort kind={}", abort.kind)
    });
    run.check(
        abort
            .get("location")
            .is_some_and(|l| l.starts_with("kernel/src/selftest/provoke.rs:")),
        || format!("abort location={:?}", abort.get("location")),
    );
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("panicking on purpose")),
        || "the panic message is not on the console".into(),
    );
}

#[test]
fn tcg_16m_boots() {
    let run = boot(Env::Tcg, Machine::Microvm, "16M", "");
    run.assert_healthy("tcg", PVH);
    let mem = run.mem_mib();
    run.check(mem < 16, || format!("mem_mib={mem} with -m 16M"));
}

/// q35 puts 2 GiB of a 3 GiB guest below 4 GiB and the rest above: the memory map has a
/// hole the allocator must step over.
#[test]
fn tcg_3g_with_hole_below_4g_passes() {
    let run = boot(Env::Tcg, Machine::Q35, "3G", "");
    run.assert_healthy("tcg", PVH);
    let mem = run.mem_mib();
    run.check(mem >= 3000, || format!("mem_mib={mem} with -m 3G"));
}

/// QEMU passes a 4096-byte `-append` through to a PVH kernel unchanged (checked with
/// QEMU 7.2 on microvm, pc and q35), so the kernel sees the whole line.
#[test]
fn tcg_garbage_cmdline_4k_is_refused() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", &garbage_cmdline(4096));
    run.check(run.verdict.exit_code() == 2, || "expected exit 2".into());
    let Some(abort) = &run.report.abort else {
        run.fail("no `@janus abort` line");
    };
    run.check(abort.kind == "boot-info", || {
        format!("abort kind={}", abort.kind)
    });
    run.check(abort.get("reason") == Some("cmdline-too-long"), || {
        format!("abort reason={:?}", abort.get("reason"))
    });
}

#[test]
fn tcg_unknown_cmdline_option_is_warned() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", "frobnicate=1 log=debug");
    run.check(run.verdict.exit_code() == 0, || "expected exit 0".into());
    // The warning is for people, so this test reads the human text on purpose.
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("unknown option 'frobnicate'")),
        || "no warning about 'frobnicate' on the console".into(),
    );
}

/// `paging=xen-pv-mmu` is only possible in a Xen PV boot: a PVH boot refuses it by name and goes
/// on with direct paging.
#[test]
fn tcg_paging_xen_pv_is_refused_on_pvh() {
    let run = boot(Env::Tcg, Machine::Microvm, "128M", "paging=xen-pv-mmu");
    run.check(run.verdict.exit_code() == 0, || "expected exit 0".into());
    run.check(run.report.env_value("paging") == Some("direct"), || {
        format!(
            "paging={:?}, expected direct",
            run.report.env_value("paging")
        )
    });
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("paging=xen-pv-mmu refused") && l.contains("PVH boot")),
        || "no refusal naming the reason on the console".into(),
    );
}

/// Xen 4.17 under TCG with the kernel as its PVH dom0 (Xen needs nested paging, which this
/// project's KVM hosts do not offer, so this runs under TCG everywhere).
#[test]
fn xen_pvh_passes() {
    let run = boot(Env::XenPvh, Machine::Pc, "1024M", "");
    run.assert_healthy_under_xen(PVH, 1024);
}

/// QEMU's `-initrd` splits modules at commas unless doubled: the dom0 command line must
/// arrive exactly as given, commas and all.
#[test]
fn xen_pvh_cmdline_with_commas_reaches_the_kernel_intact() {
    let run = boot(Env::XenPvh, Machine::Pc, "1024M", "seed=1,2,,3 log=debug");
    run.check(run.verdict.exit_code() == 0, || "expected exit 0".into());
    // The warning is for people, so this test reads the human text on purpose.
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("bad value '1,2,,3' for 'seed'")),
        || "no warning quoting seed=1,2,,3 on the console".into(),
    );
}

/// Xen 4.17 under TCG with the same image as its classic PV dom0: entered on Xen's page
/// tables, which the kernel may only change through `mmu_update`.
#[test]
fn xen_pv_passes() {
    let run = boot(Env::XenPv, Machine::Pc, "1024M", "");
    run.assert_healthy_under_xen(XEN_PV, 1024);
    // Only a PV guest registers the event upcall (set_callbacks) so far.
    match run.report.test("xen-event-upcall") {
        Some(test) => run.check(test.pass, || "self-test xen-event-upcall failed".into()),
        None => run.fail("self-test xen-event-upcall missing"),
    }
    // Batched by default, and measured one hypercall per PTE as well.
    for id in ["pte-map-2mib-4k-single", "pte-protect-512-single"] {
        run.check(run.report.bench(id).is_some(), || {
            format!("bench {id} missing")
        });
    }
}

/// Direct PTE writes are impossible under Xen PV (Xen maps the tables read-only): the kernel
/// refuses `paging=direct` by name and keeps the hypercall backend; `mmu-batch=off` makes it
/// one hypercall per update, so there is no separate `-single` measurement.
#[test]
fn xen_pv_refuses_direct_paging_and_runs_unbatched() {
    let run = boot(
        Env::XenPv,
        Machine::Pc,
        "1024M",
        "paging=direct mmu-batch=off",
    );
    run.assert_healthy_under_xen(XEN_PV, 1024);
    run.check(
        run.outcome
            .console
            .iter()
            .any(|l| l.contains("paging=direct refused") && l.contains("read-only")),
        || "no refusal of paging=direct naming the reason on the console".into(),
    );
    run.check(run.report.bench("pte-protect-512-single").is_none(), || {
        "a -single bench although batching was off".into()
    });
}

/// A PV guest's exceptions come through the trap table it registers with Xen, not through
/// the IDT: a page fault must still be reported as vector 14, with exit status 2.
#[test]
fn xen_pv_fault_selftest_reports_and_exits_2() {
    boot(Env::XenPv, Machine::Pc, "1024M", "selftest=fault").assert_page_fault();
}

#[test]
#[ignore = "needs /dev/kvm"]
fn kvm_microvm_passes() {
    let run = boot(Env::Kvm, Machine::Microvm, "128M", "");
    run.assert_healthy("kvm", PVH);
    run.assert_io();
    run.assert_mem_near(128);
}

/// The virtio devices on PCI and the ATA disk under KVM, as `tcg_pc_qboot_passes` under TCG.
#[test]
#[ignore = "needs /dev/kvm"]
fn kvm_pc_qboot_passes() {
    let run = boot(Env::Kvm, Machine::Pc, "128M", "");
    run.assert_healthy("kvm", PVH);
    run.assert_io();
    run.assert_benches(&REQUIRED_PC_CLOCK_BENCHES);
    run.assert_mem_near(128);
}

/// The virtio devices on PCI Express with ECAM under KVM.
#[test]
#[ignore = "needs /dev/kvm"]
fn kvm_q35_qboot_passes() {
    let run = boot(Env::Kvm, Machine::Q35, "128M", "");
    run.assert_healthy("kvm", PVH);
    run.assert_io();
    run.assert_mem_near(128);
}

#[test]
#[ignore = "needs /dev/kvm"]
fn kvm_fault_selftest_reports_and_exits_2() {
    boot(Env::Kvm, Machine::Microvm, "128M", "selftest=fault").assert_page_fault();
}
