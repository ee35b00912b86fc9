//! The boot sequence after an entry stub: validate what the host handed over, take over
//! memory, pick the platform, then run the self-tests and benchmarks and stop.

use core::sync::atomic::{AtomicBool, Ordering};

use janus_hypercall::cpuid::{self, Detection};
use janus_hypercall::kvm;
use janus_hypercall::kvm::hypercall::{HypercallInstruction, KvmHypercalls};

use janus_hypercall::xen::cpuid::PvCpuid;
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::{boot, cpu, extable, trap};
use crate::boot::cmdline;
use crate::boot::pvh::{self, BootInfo, BootInfoError, PhysRead};
use crate::boot::xen_pv::{self, XenPvBoot};
use crate::console::{self, Sink};
use crate::mm::kernel_space::{self, Paging};
use crate::platform;
use crate::platform::acpi;
use crate::platform::exit::{self, ExitCode, exit};
use crate::platform::xen::{self, Xen};
use crate::platform::xen_events;
use crate::time;
use crate::{emergency_println, println};

/// The start info, memory map and command line lie where the boot stub's identity map reaches:
/// the first 4 GiB, minus page 0 (a null pointer from the host is refused, not followed).
struct BootWindow;

const BOOT_WINDOW: core::ops::Range<u64> = 0x1000..(4 << 30);

impl PhysRead for BootWindow {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
        let end = paddr.checked_add(buf.len() as u64);
        if paddr < BOOT_WINDOW.start || end.is_none_or(|end| end > BOOT_WINDOW.end) {
            return Err(BootInfoError::Unreadable {
                what: "range",
                paddr,
                len: buf.len() as u64,
            });
        }
        // SAFETY: the range lies in the boot stub's identity map (checked above) and is only
        // read; RAM and ROM reads have no side effects.
        unsafe {
            core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

/// Under Xen PV, boot data lies wherever Xen's bootstrap tables map it; a page that is not
/// mapped is refused rather than faulted on.
struct ProbedRead;

impl PhysRead for ProbedRead {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
        let len = buf.len() as u64;
        let unreadable = BootInfoError::Unreadable {
            what: "range",
            paddr: addr,
            len,
        };
        let end = addr.checked_add(len).ok_or(unreadable)?;
        if addr < 4096 || VirtAddr::try_new(end).is_err() {
            return Err(unreadable);
        }
        let mut page = addr & !4095;
        while page < end {
            // SAFETY: a read of RAM has no side effects, and one that faults is caught.
            unsafe { extable::probe_read_u8(VirtAddr::new(page.max(addr))) }
                .map_err(|_| unreadable)?;
            page += 4096;
        }
        // SAFETY: every page of the range was just read successfully, and it is only read.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
}

pub fn start_xen_pv(start_info_va: u64) -> ! {
    // SAFETY: this is the Xen PV entry, and nothing ran before.
    let xen = match unsafe { xen::init_pv() } {
        Ok(xen) => xen,
        // Xen refusing xen_version leaves no console to say so and no way to stop. An
        // exception before the trap table exists makes Xen crash the domain, which xtask
        // reports (XEN-FATAL) instead of waiting for a timeout.
        // SAFETY: ud2 only raises #UD; nothing returns from it.
        Err(_) => unsafe { core::arch::asm!("ud2", options(noreturn)) },
    };
    exit::set_port_io(false);
    console::init(Sink::XenConsoleIo);
    if let Err(e) = trap::init_xen_pv(xen.hypercalls) {
        println!("janus: cannot boot: set_trap_table: {e}");
        println!("@janus abort kind=boot-info reason=trap-table");
        exit(ExitCode::Fatal)
    }
    // I/O privilege level 1 is the PV kernel's "ring 1": `out` to isa-debug-exit works.
    match xen.hypercalls.physdev_set_iopl(1) {
        Ok(()) => exit::set_port_io(true),
        Err(e) => println!("warning: PHYSDEVOP_set_iopl: {e}; stopping by SCHEDOP_shutdown"),
    }
    // SAFETY: this is the Xen PV entry.
    let hypervisor = unsafe { PvCpuid::new() }.detect();
    println!(
        "Janus {} (Xen PV entry, start_info at {start_info_va:#x})",
        env!("CARGO_PKG_VERSION")
    );
    let (boot, pv) = match xen_pv::parse(&ProbedRead, start_info_va, kernel_space::image()) {
        Ok(parsed) => parsed,
        Err(e) => {
            println!("janus: cannot boot: {e}");
            println!("@janus abort kind=boot-info reason={}", e.reason());
            exit(ExitCode::Fatal)
        }
    };
    run(&boot, &hypervisor, Some(&xen), Some(&pv))
}

pub fn start_pvh(start_info_paddr: u64) -> ! {
    console::init(Sink::Com1);
    trap::init();
    let hypervisor = cpuid::detect();
    let xen = xen::init(&hypervisor);
    if let Some(xen) = &xen {
        console::set_sink(xen::early_console(xen));
    }
    println!(
        "Janus {} (PVH entry, start info at {start_info_paddr:#x})",
        env!("CARGO_PKG_VERSION")
    );
    let xen_map = xen.as_ref().and_then(|xen| {
        xen::memory_map(xen)
            .map_err(|e| println!("warning: {e}"))
            .ok()
    });
    let boot = match pvh::parse(&BootWindow, start_info_paddr, xen_map) {
        Ok(boot) => boot,
        Err(e) => {
            println!("janus: cannot boot: {e}");
            println!("@janus abort kind=boot-info reason={}", e.reason());
            exit(ExitCode::Fatal)
        }
    };
    run(&boot, &hypervisor, xen.as_ref(), None)
}

/// Firmware memory after the kernel's own page tables are live: the BIOS area below 1 MiB
/// and whatever the memory map lists (ACPI tables often sit in reserved RAM), each page
/// mapped just for the copy. Anything else, device registers above all, is refused.
struct FirmwareRead<'a>(&'a BootInfo);

impl PhysRead for FirmwareRead<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
        let unreadable = BootInfoError::Unreadable {
            what: "range",
            paddr,
            len: buf.len() as u64,
        };
        let end = paddr.checked_add(buf.len() as u64).ok_or(unreadable)?;
        let listed = self
            .0
            .memory_map
            .regions()
            .iter()
            .any(|r| r.start <= paddr && end <= r.end());
        if !(paddr >= 0x1000 && end <= 0x10_0000 || listed) {
            return Err(unreadable);
        }
        kernel_space::read_physical(PhysAddr::new(paddr), buf).map_err(|_| unreadable)
    }
}

/// The firmware's ACPI tables, for the clock and interrupt hardware; problems are reported
/// and the kernel goes on without what they would have given.
fn read_acpi(boot: &BootInfo) -> Option<acpi::Platform> {
    let reader = FirmwareRead(boot);
    let platform = acpi::find_rsdp(&reader, boot.rsdp)
        .and_then(|rsdp| acpi::parse(&reader, rsdp))
        .map_err(|e| println!("warning: ACPI tables not used: {e}"))
        .ok()?;
    for problem in &platform.problems {
        println!("warning: ACPI: {problem}");
    }
    Some(platform)
}

/// What the command line asks of paging, against what the entry allows.
fn check_paging_options(options: &cmdline::Options, hypervisor: &Detection, pv: bool) {
    match (options.paging, pv) {
        (Some(cmdline::Paging::XenPv), false) => println!(
            "warning: paging=xen-pv-mmu refused: page-table updates by hypercall need a Xen \
             PV boot, and this is a PVH boot (hypervisor={}); using paging=direct",
            hypervisor.hypervisor
        ),
        (Some(cmdline::Paging::Direct), true) => println!(
            "warning: paging=direct refused: a Xen PV kernel cannot write its page tables, \
             Xen maps them read-only and validates every change; using paging=xen-pv-mmu"
        ),
        _ => {}
    }
    if !options.mmu_batch && !pv {
        println!("warning: mmu-batch=off has no effect with paging=direct: nothing is batched");
    }
}

fn run(boot: &BootInfo, hypervisor: &Detection, xen: Option<&Xen>, pv: Option<&XenPvBoot>) -> ! {
    let options = cmdline::parse(boot.cmdline(), |w| println!("warning: {w}"));
    check_paging_options(&options, hypervisor, pv.is_some());
    log::set_max_level(options.log_level);
    log::info!("command line: '{}'", boot.cmdline());
    for region in boot.memory_map.regions() {
        log::debug!("memory: {region}");
    }

    let features = cpu::features();
    if !features.nx {
        println!("janus: cannot boot: the CPU has no NX (no-execute) bit; W^X needs it");
        println!("@janus abort kind=unsupported-cpu reason=no-nx");
        exit(ExitCode::Fatal)
    }
    let paging = match (pv, xen) {
        (Some(pv), Some(xen)) => match xen::m2p_table(xen) {
            Ok(m2p) => Paging::XenPv {
                boot: pv,
                hypercalls: xen.hypercalls,
                m2p,
                batching: options.mmu_batch,
            },
            Err(e) => {
                println!("janus: cannot set up memory: {e}");
                println!("@janus abort kind=memory reason=m2p");
                exit(ExitCode::Fatal)
            }
        },
        _ => Paging::Direct,
    };
    let memory = match kernel_space::init(boot, &features, paging) {
        Ok(memory) => memory,
        Err(e) => {
            println!("janus: cannot set up memory: {e}");
            println!("@janus abort kind=memory reason=init");
            exit(ExitCode::Fatal)
        }
    };
    log::info!(
        "memory: {} MiB usable, {} frames free, {} KiB heap",
        memory.usable_bytes >> 20,
        memory.free_frames,
        memory.heap_bytes >> 10
    );
    if let Some(xen) = xen {
        let shared = match pv {
            Some(pv) => xen::map_shared_info_pv(pv.shared_info),
            None => xen::map_shared_info(xen),
        };
        if let Err(e) = shared {
            println!("warning: {e}");
        }
        // The trap table (start_xen_pv) or IDT and shared info are in place now.
        let events = match pv {
            Some(_) => xen_events::init_pv(xen),
            None => xen_events::init_pvh(xen),
        };
        if let Err(e) = events {
            println!("warning: event channels will not be delivered: {e}");
        }
        // A domU may not use console_io: move from the debug port to its console ring.
        if console::sink() == Sink::DebugPort {
            match xen::attach_console_ring(xen) {
                Ok(()) => console::set_sink(Sink::XenConsoleRing),
                Err(e) => println!("warning: staying on port 0xe9: {e}"),
            }
        }
    }
    let kvm_features = kvm::features::read_features(hypervisor, platform::cpuid);
    // A PV guest's pseudo-physical memory holds no firmware tables.
    let acpi = if pv.is_none() { read_acpi(boot) } else { None };
    let time = time::boot::init(&time::boot::Platforms {
        hypervisor,
        xen,
        pv: pv.is_some(),
        kvm: kvm_features.map(|leaf| leaf.features),
        acpi: acpi.as_ref(),
        forced: options.clock,
    });
    let frequency = time.tsc;
    let tsc_khz = frequency.map_or(0, |f| f.hz / 1000);
    // A PV kernel runs at CPL 3 and may not write CR4: SMEP/SMAP/UMIP are Xen's business.
    let onoff = |b| if b && pv.is_none() { "on" } else { "off" };
    let tsc_source: &dyn core::fmt::Display = match &frequency {
        Some(f) => &f.source,
        None => &"none",
    };
    let hypervisor_keys = match (xen, kvm_features) {
        (Some(xen), _) => alloc::format!(" xen={}.{}", xen.version.major, xen.version.minor),
        (None, Some(kvm)) => alloc::format!(" kvm_features={}", kvm.features),
        (None, None) => alloc::string::String::new(),
    };
    let yes_no = |b| if b { "yes" } else { "no" };
    let io = if xen.is_some() {
        println!("devices: not probed under Xen: Janus has no drivers for Xen's split devices");
        None
    } else {
        Some(crate::devices::probe(
            boot,
            acpi.as_ref(),
            options.io_completion,
            options.pci_irq,
            options.seed.unwrap_or_else(cpu::rdtsc_ordered),
        ))
    };
    println!(
        "@janus env hypervisor={} boot={} paging={} clock={} console={} cpus=1 mem_mib={} \
         tsc_khz={tsc_khz} tsc_source={} tsc_invariant={} timer={} nx=on smep={} smap={} \
         umip={} pci={} devices={}{hypervisor_keys}",
        hypervisor.hypervisor,
        if pv.is_some() { "xen-pv" } else { "pvh" },
        kernel_space::with(|space| space.mapper.backend().name()),
        time.clock,
        console::sink().name(),
        memory.usable_bytes >> 20,
        tsc_source,
        yes_no(time.invariant_tsc),
        time::timer::name(),
        onoff(features.smep),
        onoff(features.smap),
        onoff(features.umip),
        io.as_ref().map_or("none", |io| io.pci),
        io.as_ref().map_or("none", |io| io.devices.as_str()),
    );
    let ready = cpu::rdtsc_ordered();

    let seed = options.seed.unwrap_or(ready);
    let summary = if options.tests {
        crate::selftest::run_all(
            seed,
            hypervisor,
            xen,
            options.host_time,
            options.net_echo_secs,
        )
    } else {
        crate::selftest::Summary {
            passed: 0,
            failed: 0,
        }
    };
    if let Some(test) = options.selftest {
        if test == cmdline::SelfTest::StackOverflow && pv.is_some() {
            println!(
                "janus: selftest=stack-overflow cannot be reported under Xen PV: Xen delivers \
                 faults on the current stack, and when that overflowed it crashes the domain"
            );
            println!("@janus abort kind=unsupported reason=stack-overflow-under-xen-pv");
            exit(ExitCode::Fatal)
        }
        crate::selftest::provoke::run(test);
    }
    if options.bench {
        // SAFETY: CPUID says KVM, and the kernel runs at CPL 0.
        let kvm = kvm_features.map(|_| unsafe {
            KvmHypercalls::new(HypercallInstruction::detect_with(cpuid::cpuid))
        });
        crate::bench::run_all(&time, xen, kvm.as_ref());
    }

    let boot_cycles = ready - boot::boot_tsc();
    // How long KVM kept this vCPU from running while it wanted to, over the whole run: what
    // the benchmarks above lost to the host.
    let steal = crate::time::kvmclock::steal_ns()
        .map(|ns| alloc::format!(" steal_us={}", ns / 1000))
        .unwrap_or_default();
    match frequency {
        Some(f) => println!(
            "@janus done tests_passed={} tests_failed={} boot_us={}{steal}",
            summary.passed,
            summary.failed,
            f.micros(boot_cycles)
        ),
        None => println!(
            "@janus done tests_passed={} tests_failed={} boot_cycles={boot_cycles}{steal}",
            summary.passed, summary.failed
        ),
    }
    exit(if summary.failed == 0 {
        ExitCode::Passed
    } else {
        ExitCode::TestFailed
    })
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        emergency_println!("PANIC while panicking: {}", info.message());
        exit(ExitCode::Fatal)
    }
    emergency_println!();
    match info.location() {
        Some(l) => emergency_println!("!! PANIC at {}:{}: {}", l.file(), l.line(), info.message()),
        None => emergency_println!("!! PANIC: {}", info.message()),
    }
    trap::print_backtrace(
        panic as *const () as u64,
        crate::arch::backtrace::current_frame(),
    );
    match info.location() {
        Some(l) => emergency_println!("@janus abort kind=panic location={}:{}", l.file(), l.line()),
        None => emergency_println!("@janus abort kind=panic"),
    }
    exit(ExitCode::Fatal)
}
