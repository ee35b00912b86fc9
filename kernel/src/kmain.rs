//! The boot sequence after an entry stub: validate what the host handed over, take over
//! memory, pick the platform, then run the self-tests and benchmarks and stop.

use core::sync::atomic::{AtomicBool, Ordering};

use janus_hypercall::cpuid::{self, Detection};
use janus_hypercall::kvm;
use janus_hypercall::kvm::hypercall::{HypercallInstruction, KvmHypercalls};

use crate::arch::{boot, cpu, trap};
use crate::boot::cmdline;
use crate::boot::pvh::{self, BootInfo, BootInfoError, PhysRead};
use crate::console::{self, Sink};
use crate::mm::kernel_space;
use crate::platform::exit::{ExitCode, exit};
use crate::platform::xen::{self, Xen};
use crate::time::tsc::{self, Frequency};
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

pub fn start_pvh(start_info_paddr: u64) -> ! {
    console::init();
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
    run(&boot, &hypervisor, xen.as_ref())
}

fn run(boot: &BootInfo, hypervisor: &Detection, xen: Option<&Xen>) -> ! {
    let options = cmdline::parse(boot.cmdline(), |w| println!("warning: {w}"));
    if options.paging == Some(cmdline::Paging::XenPv) {
        println!(
            "warning: paging=xen-pv refused: page-table updates by hypercall need a Xen PV \
             boot, and this is a PVH boot (hypervisor={}); using paging=direct",
            hypervisor.hypervisor
        );
    }
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
    let memory = match kernel_space::init(boot, &features) {
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
        if let Err(e) = xen::map_shared_info(xen) {
            println!("warning: {e}");
        }
        // A domU may not use console_io: move from the debug port to its console ring.
        if console::sink() == Sink::DebugPort {
            match xen::attach_console_ring(xen) {
                Ok(()) => console::set_sink(Sink::XenConsoleRing),
                Err(e) => println!("warning: staying on port 0xe9: {e}"),
            }
        }
    }
    let frequency = tsc_frequency(hypervisor);

    let tsc_khz = frequency.map_or(0, |f| f.hz / 1000);
    let kvm_features = kvm::features::read_features(hypervisor, cpuid::cpuid);
    let onoff = |b| if b { "on" } else { "off" };
    let tsc_source: &dyn core::fmt::Display = match &frequency {
        Some(f) => &f.source,
        None => &"none",
    };
    let hypervisor_keys = match (xen, kvm_features) {
        (Some(xen), _) => alloc::format!(" xen={}.{}", xen.version.major, xen.version.minor),
        (None, Some(kvm)) => alloc::format!(" kvm_features={}", kvm.features),
        (None, None) => alloc::string::String::new(),
    };
    println!(
        "@janus env hypervisor={} boot=pvh paging=direct clock=tsc console={} cpus=1 \
         mem_mib={} tsc_khz={tsc_khz} tsc_source={} nx=on smep={} smap={} umip={}{hypervisor_keys}",
        hypervisor.hypervisor,
        console::sink().name(),
        memory.usable_bytes >> 20,
        tsc_source,
        onoff(features.smep),
        onoff(features.smap),
        onoff(features.umip),
    );
    let ready = cpu::rdtsc_ordered();

    let seed = options.seed.unwrap_or(ready);
    let summary = crate::selftest::run_all(seed, hypervisor, xen);
    if let Some(test) = options.selftest {
        crate::selftest::provoke::run(test);
    }
    // SAFETY: CPUID says KVM, and the kernel runs at CPL 0.
    let kvm = kvm_features
        .map(|_| unsafe { KvmHypercalls::new(HypercallInstruction::detect_with(cpuid::cpuid)) });
    crate::bench::run_all(frequency, xen, kvm.as_ref());

    let boot_cycles = ready - boot::boot_tsc();
    match frequency {
        Some(f) => println!(
            "@janus done tests_passed={} tests_failed={} boot_us={}",
            summary.passed,
            summary.failed,
            f.micros(boot_cycles)
        ),
        None => println!(
            "@janus done tests_passed={} tests_failed={} boot_cycles={boot_cycles}",
            summary.passed, summary.failed
        ),
    }
    exit(if summary.failed == 0 {
        ExitCode::Passed
    } else {
        ExitCode::TestFailed
    })
}

fn tsc_frequency(hypervisor: &Detection) -> Option<Frequency> {
    if let Some(f) = tsc::from_cpuid(cpuid::cpuid, hypervisor) {
        return Some(f);
    }
    // SAFETY: nothing else uses the PIT, and interrupts are off, so reprogramming channel 0
    // raises nothing.
    let mut pit = unsafe { janus_drivers::pit::PortPit::new() };
    match tsc::from_pit(&mut pit, cpu::rdtsc_ordered) {
        Ok(f) => Some(f),
        Err(e) => {
            println!("warning: TSC calibration failed: {e}; benchmarks are reported in cycles");
            None
        }
    }
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
