//! Helpers for the boot tests: boot the image named by `JANUS_KERNEL` under QEMU and check
//! the parsed `@janus` records (never the human-readable text, unless a test is about it)
//! and the host's checks of the paravirtual I/O devices.

use std::path::PathBuf;
use std::time::Duration;

use xtask::devices::{self, HostCheck};
use xtask::qemu::{Env, Kvm, Machine, MemSize, Outcome, RunConfig, Stream};
use xtask::report::{self, Report, Verdict};

/// No boot test may take longer. Alone, a TCG boot takes under 5 s and a Xen boot about
/// 10 s; with the boot tests running side by side a Xen PVH boot was seen to pass 60 s
/// (every `rdtsc` and `cpuid` there is a VM exit that TCG emulates, at 0.2 ms each).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(150);

/// Self-tests every healthy boot runs. `wall-clock` runs because xtask passes `host-time=`.
pub const REQUIRED_TESTS: [&str; 8] = [
    "frame-allocator",
    "heap",
    "mapper",
    "no-writable-executable",
    "clock-monotonic",
    "sleep",
    "clock-vs-tsc",
    "wall-clock",
];

/// Benchmarks every healthy boot reports.
pub const REQUIRED_BENCHES: [&str; 8] = [
    "clock-read-rdtsc",
    "timer-latency",
    "cpuid",
    "pte-map-unmap",
    "pte-map-2mib-4k",
    "pte-protect-512",
    "page-fault",
    "heap-alloc-free",
];

/// Clock benchmarks a PC (`pc`, `q35`) adds: its HPET, ACPI PM timer, PIT and RTC, each
/// read and (but the PIT and RTC) compared with the chosen clock.
pub const REQUIRED_PC_CLOCK_BENCHES: [&str; 6] = [
    "clock-read-hpet",
    "clock-read-pmtimer",
    "clock-read-pit",
    "clock-read-rtc",
    "clock-drift-hpet",
    "clock-drift-pmtimer",
];

/// Self-tests every boot under Xen runs on top of [`REQUIRED_TESTS`].
pub const REQUIRED_XEN_TESTS: [&str; 5] = [
    "exception-probes",
    "xen-version",
    "xen-console-io",
    "xen-shared-info",
    "xen-unknown-hypercall",
];

/// Benchmarks every boot under Xen reports on top of [`REQUIRED_BENCHES`]: the pvclock
/// read, and the TSC's drift against it.
pub const REQUIRED_XEN_BENCHES: [&str; 3] = ["hypercall", "clock-read-pvclock", "clock-drift-tsc"];

/// Self-tests of the paravirtual I/O devices xtask attaches to every boot QEMU makes
/// directly (none under Xen).
pub const REQUIRED_IO_TESTS: [&str; 6] = [
    "virtio-blk-read",
    "virtio-blk-write",
    "virtio-net-gateway",
    "virtio-net-udp-echo",
    "virtio-console",
    "virtio-rng",
];

/// Benchmarks of those devices.
pub const REQUIRED_IO_BENCHES: [&str; 11] = [
    "virtio-blk-seq-read-4k",
    "virtio-blk-seq-read-64k",
    "virtio-blk-seq-read-1m",
    "virtio-blk-seq-write-4k",
    "virtio-blk-seq-write-64k",
    "virtio-blk-seq-write-1m",
    "virtio-blk-rand-read-4k-qd1",
    "virtio-blk-rand-read-4k-qd32",
    "virtio-net-tx-udp-64",
    "virtio-blk-completion-interrupt",
    "virtio-blk-completion-poll",
];

/// The slowest median 4 KiB read completed by interrupt that still means the interrupt
/// arrived: under TCG it takes about 0.09 ms (0.075 ms polled), while a read whose interrupt
/// is lost waits for some other device's interrupt, or for the request's 5 s timeout.
pub const INTERRUPT_COMPLETION_LIMIT_NS: f64 = 5_000_000.0;

/// The self-test of the ATA disk `-M pc` adds, the baseline virtio-blk is compared with.
pub const REQUIRED_ATA_TESTS: [&str; 1] = ["ata-pio-read"];

/// Its benchmark.
pub const REQUIRED_ATA_BENCHES: [&str; 1] = ["ata-pio-seq-read-64k"];

/// The host checks of every boot with devices; `-M pc` adds [`devices::ATA_CHECK`].
pub const REQUIRED_HOST_CHECKS: [&str; 3] = [
    devices::DISK_CHECK,
    devices::ECHO_CHECK,
    devices::CONSOLE_CHECK,
];

/// How each machine reaches PCI configuration space: the env line's `pci=`.
pub fn expected_pci(machine: Machine) -> &'static str {
    match machine {
        Machine::Pc => "port-io",
        Machine::Q35 => "ecam",
        Machine::Microvm => "none",
    }
}

/// The clock each hypervisor's boot must choose (DESIGN.md's platform table).
pub fn expected_clock(hypervisor: &str) -> &'static str {
    match hypervisor {
        "kvm" => "kvmclock",
        "xen" => "xen-pvclock",
        _ => "tsc",
    }
}

/// The kernel image under test.
pub fn kernel_image() -> PathBuf {
    match std::env::var_os(xtask::test::KERNEL_ENV) {
        Some(path) => PathBuf::from(path),
        None => panic!("run the boot tests through `cargo xtask test`"),
    }
}

/// The Xen ELF `cargo xtask test` fetched; when it could not, the test fails with the
/// reason it gave.
pub fn xen_image() -> PathBuf {
    if let Some(path) = std::env::var_os(xtask::test::XEN_ENV) {
        return PathBuf::from(path);
    }
    match std::env::var(xtask::test::XEN_ERROR_ENV) {
        Ok(reason) => panic!("{reason}"),
        Err(_) => panic!("run the boot tests through `cargo xtask test`"),
    }
}

/// One finished boot.
pub struct Boot {
    /// As run, with its devices prepared.
    pub config: RunConfig,
    pub outcome: Outcome,
    pub report: Report,
    pub verdict: Verdict,
    /// Removes the devices' files when the test ends well.
    _io: IoFiles,
}

/// The run's device directory: removed when the test passes, kept (and named) when it
/// panics, so a failing boot test leaves the images and virtcon.log to look at.
struct IoFiles(Option<PathBuf>);

impl Drop for IoFiles {
    fn drop(&mut self) {
        if let Some(dir) = &self.0
            && let Some(line) = devices::keep_or_remove(dir, !std::thread::panicking())
        {
            // Shown with the failing test's output.
            println!("{line}");
        }
    }
}

/// How a healthy boot entered the kernel and updates its page tables: `boot=` and
/// `paging=` on the env line.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub boot: &'static str,
    pub paging: &'static str,
}

/// The PVH entry (QEMU's `-kernel`, or Xen's PVH dom0), writing page-table entries in place.
pub const PVH: Entry = Entry {
    boot: "pvh",
    paging: "direct",
};

/// A classic Xen PV guest, whose page tables Xen validates and the kernel updates by
/// `mmu_update`.
pub const XEN_PV: Entry = Entry {
    boot: "xen-pv",
    paging: "xen-pv-mmu",
};

/// Boots the kernel in `env` on `machine` with `mem` and `cmdline`, with the devices xtask
/// attaches by default (none under Xen).
///
/// `Env::Kvm` on a host without /dev/kvm fails the test with the reason, never falls back;
/// so do the Xen environments when Xen could not be fetched.
pub fn boot(env: Env, machine: Machine, mem: &str, cmdline: &str) -> Boot {
    boot_with(env, machine, mem, cmdline, true)
}

/// [`boot`] with no devices attached.
pub fn boot_without_devices(env: Env, machine: Machine, mem: &str, cmdline: &str) -> Boot {
    boot_with(env, machine, mem, cmdline, false)
}

fn boot_with(env: Env, machine: Machine, mem: &str, cmdline: &str, devices: bool) -> Boot {
    let accel = env
        .resolve(&Kvm::probe())
        .unwrap_or_else(|e| panic!("{e}"))
        .accel;
    let mut config = match env.xen_dom0() {
        Some(dom0) => RunConfig::xen(dom0, xen_image(), kernel_image()),
        None => RunConfig::new(accel, machine, kernel_image()),
    };
    config.machine = machine;
    config.mem = mem.parse::<MemSize>().unwrap_or_else(|e| panic!("{e}"));
    config.cmdline = cmdline.to_string();
    config.timeout = BOOT_TIMEOUT;
    config.devices &= devices;
    config.prepare_devices().unwrap_or_else(|e| panic!("{e}"));
    let io = IoFiles(config.attached().map(|io| io.dir.clone()));
    // libtest captures this and shows it only for a failing test.
    if let Some(io) = config.attached() {
        println!("{}", io.describe());
    }
    let outcome = config
        .run(&mut |stream, line| match stream {
            Stream::Console => println!("{line}"),
            Stream::Qemu => println!("qemu: {line}"),
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let report = Report::from_lines(&outcome.console);
    for check in &outcome.host_checks {
        println!("{check}");
    }
    let verdict = config.verdict(&outcome, &report);
    println!("{verdict}");
    Boot {
        config,
        outcome,
        report,
        verdict,
        _io: io,
    }
}

impl Boot {
    /// Fails the test with `problem` and the verdict.
    #[track_caller]
    pub fn fail(&self, problem: &str) -> ! {
        panic!("{}: {problem}\n{}", self.config.label(), self.verdict)
    }

    /// Fails the test with `problem` unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.fail(&problem());
        }
    }

    /// The env line's value for `key`, failing the test when it is missing.
    pub fn env_value(&self, key: &str) -> &str {
        self.report
            .env_value(key)
            .unwrap_or_else(|| self.fail(&format!("no `{key}=` on the `@janus env` line")))
    }

    /// Fails the test unless the env line has `key=expected`.
    #[track_caller]
    pub fn assert_env(&self, key: &str, expected: &str) {
        let found = self.env_value(key);
        self.check(found == expected, || {
            format!("env {key}={found}, expected {expected}")
        });
    }

    /// `mem_mib` from the env line.
    pub fn mem_mib(&self) -> u64 {
        let value = self.env_value("mem_mib");
        value
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("mem_mib={value} is not a number")))
    }

    /// Checks everything a clean boot promises: no failed host check, exit 0, the
    /// hypervisor, boot entry and paging backend on the env line, all tests passed and the
    /// required ones present, the required benches plausible, and a `done` line.
    #[track_caller]
    pub fn assert_healthy(&self, hypervisor: &str, entry: Entry) {
        if let Some(check) = self.outcome.host_checks.iter().find(|c| c.failed()) {
            self.fail(&check.to_string());
        }
        self.check(self.verdict.exit_code() == 0, || "expected exit 0".into());
        self.assert_env("hypervisor", hypervisor);
        self.assert_env("boot", entry.boot);
        self.assert_env("paging", entry.paging);
        self.assert_env("clock", expected_clock(hypervisor));
        for test in &self.report.tests {
            self.check(test.pass, || {
                format!("test {} failed: {:?}", test.name, test.reason)
            });
        }
        for name in REQUIRED_TESTS {
            self.check(self.report.test(name).is_some(), || {
                format!("self-test {name} missing")
            });
        }
        if hypervisor == "tcg" {
            self.assert_tests_passed(&["exception-probes"]);
        }
        self.assert_benches(&REQUIRED_BENCHES);
        let Some(done) = &self.report.done else {
            self.fail("no `@janus done` line");
        };
        self.check(done.tests_failed == 0, || {
            format!("done says tests_failed={}", done.tests_failed)
        });
        self.check(done.boot_us > 0, || "done says boot_us=0".into());
    }

    /// Checks what the devices xtask attached promise on top of [`Boot::assert_healthy`]:
    /// `pci=` on the env line, the I/O self-tests passed (on `-M pc` the ATA one too), their
    /// benches plausible, and every host check run and passed.
    #[track_caller]
    pub fn assert_io(&self) {
        let machine = self.config.machine;
        self.check(self.config.attached().is_some(), || {
            "no devices were attached".into()
        });
        self.assert_env("pci", expected_pci(machine));
        let pc = machine == Machine::Pc;
        let ata_tests: &[&str] = if pc { &REQUIRED_ATA_TESTS } else { &[] };
        self.assert_tests_passed(&[&REQUIRED_IO_TESTS[..], ata_tests].concat());
        self.assert_benches(&REQUIRED_IO_BENCHES);
        if pc {
            self.assert_benches(&REQUIRED_ATA_BENCHES);
        }
        let ata_check: &[&str] = if pc { &[devices::ATA_CHECK] } else { &[] };
        for name in [&REQUIRED_HOST_CHECKS[..], ata_check].concat() {
            match self.host_check(name) {
                Some(check) => self.check(check.passed(), || check.to_string()),
                None => self.fail(&format!("host check `{name}` missing")),
            }
        }
    }

    /// Checks that the console's `devices:` line says `device` (`virtio-blk`, `virtio-net`)
    /// waits for completions as `expected`: `polled`, `interrupt vector 0x40` (MSI-X), or
    /// `interrupt INTx GSI 11 -> vector 0x40`. The line is for people, so only tests about the
    /// interrupt route read it.
    #[track_caller]
    pub fn assert_completion_route(&self, device: &str, expected: &str) {
        let prefix = format!("devices: {device} at ");
        let found = self
            .outcome
            .console
            .iter()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(", ").next());
        self.check(found == Some(expected), || {
            format!("{device} completes by {found:?}, expected {expected:?}")
        });
    }

    /// Checks that virtio-blk's completions arrive by interrupt: the median of
    /// `virtio-blk-completion-interrupt` under [`INTERRUPT_COMPLETION_LIMIT_NS`]. The I/O
    /// self-tests alone cannot tell: a driver whose interrupt is lost still sees its
    /// completions, only late.
    #[track_caller]
    pub fn assert_completion_interrupts_arrive(&self) {
        let id = "virtio-blk-completion-interrupt";
        let Some(bench) = self.report.bench(id) else {
            self.fail(&format!("bench {id} missing"));
        };
        self.check(bench.median < INTERRUPT_COMPLETION_LIMIT_NS, || {
            format!(
                "bench {id}: median {} ns, over {INTERRUPT_COMPLETION_LIMIT_NS} ns: the \
                 device's interrupt does not wake the driver",
                bench.median
            )
        });
    }

    /// The host check called `name`.
    pub fn host_check(&self, name: &str) -> Option<&HostCheck> {
        self.outcome.host_checks.iter().find(|c| c.name == name)
    }

    /// Checks that each of `names` was reported and passed.
    #[track_caller]
    pub fn assert_tests_passed(&self, names: &[&str]) {
        for &name in names {
            match self.report.test(name) {
                Some(test) => self.check(test.pass, || {
                    format!("self-test {name} failed: {:?}", test.reason)
                }),
                None => self.fail(&format!("self-test {name} missing")),
            }
        }
    }

    /// Checks that each of `ids` was reported with plausible statistics.
    #[track_caller]
    pub fn assert_benches(&self, ids: &[&str]) {
        for &id in ids {
            let Some(b) = self.report.bench(id) else {
                self.fail(&format!("bench {id} missing"));
            };
            self.check(b.n > 0, || format!("bench {id} has n=0"));
            self.check(b.min <= b.median && b.median <= b.p99, || {
                format!(
                    "bench {id}: min={} median={} p99={} out of order",
                    b.min, b.median, b.p99
                )
            });
        }
    }

    /// Checks what a clean boot as Xen's dom0, entered as `entry` says, promises on top of
    /// [`Boot::assert_healthy`]: the Xen version on the env line, the Xen self-tests and
    /// benches, and most of the machine's memory.
    #[track_caller]
    pub fn assert_healthy_under_xen(&self, entry: Entry, machine_mib: u64) {
        self.assert_healthy("xen", entry);
        let version = self.env_value("xen");
        self.check(version == "4.17", || {
            format!("env xen={version}, expected 4.17")
        });
        self.assert_tests_passed(&REQUIRED_XEN_TESTS);
        self.assert_benches(&REQUIRED_XEN_BENCHES);
        self.check(self.outcome.host_checks.is_empty(), || {
            "host checks ran, though Xen runs attach no devices".into()
        });
        // Xen keeps some memory for itself (82 MiB of a 1 GiB machine with Xen 4.17) and
        // gives dom0 the rest.
        let found = self.mem_mib();
        self.check(found >= machine_mib / 2 && found < machine_mib, || {
            format!("mem_mib={found}, expected most of the machine's {machine_mib} MiB")
        });
    }

    /// Checks that `mem_mib` is at most `mib` and at most a few MiB under it: firmware and
    /// the legacy hole below 1 MiB take a little.
    #[track_caller]
    pub fn assert_mem_near(&self, mib: u64) {
        let found = self.mem_mib();
        self.check(found <= mib && found + 4 >= mib, || {
            format!("mem_mib={found}, expected a little under {mib}")
        });
    }

    /// Checks a run that stopped on a page fault, with a backtrace.
    #[track_caller]
    pub fn assert_page_fault(&self) {
        self.check(self.verdict.exit_code() == 2, || "expected exit 2".into());
        self.check(self.outcome.status == Some(report::STATUS_ABORTED), || {
            format!("QEMU status {:?}, expected 37", self.outcome.status)
        });
        let Some(abort) = &self.report.abort else {
            self.fail("no `@janus abort` line");
        };
        for (key, expected) in [("vector", "14"), ("exception", "page-fault")] {
            let found = abort.get(key);
            self.check(found == Some(expected), || {
                format!("abort {key}={found:?}, expected {expected}")
            });
        }
        self.check(abort.kind == "fault", || {
            format!("abort kind={}, expected fault", abort.kind)
        });
        self.check(self.report.backtrace.iter().any(|f| f.index == 0), || {
            "no `bt #0` line".into()
        });
    }
}

/// A command line of `len` printable, non-space ASCII bytes, the same on every run.
pub fn garbage_cmdline(len: usize) -> String {
    // A fixed-seed xorshift: deterministic without a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // '!' (0x21) to '~' (0x7e): printable and never a space.
            char::from(b'!' + (state % 94) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_cmdline_is_long_printable_varied_and_stable() {
        let a = garbage_cmdline(4096);
        assert_eq!(a.len(), 4096);
        assert!(a.bytes().all(|b| b.is_ascii_graphic()));
        assert!(a.bytes().collect::<std::collections::BTreeSet<_>>().len() > 80);
        assert_eq!(a, garbage_cmdline(4096));
    }
}
