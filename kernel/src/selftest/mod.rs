//! In-guest self-tests. Each prints one `@janus test <name> pass|fail [reason=...]` line.

mod exception_probes;
mod frame_allocator;
mod heap;
pub mod io;
mod mapper;
mod protection;
pub mod provoke;
mod time;
mod xen;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use janus_hypercall::cpuid::Detection;

use crate::platform::xen::Xen;
use crate::println;

/// A failed check, with a message for the `reason=` field.
pub struct Failure(pub String);

impl<T: core::fmt::Display> From<T> for Failure {
    fn from(message: T) -> Self {
        Self(alloc::format!("{message}"))
    }
}

macro_rules! ensure {
    ($condition:expr, $($message:tt)*) => {
        if !$condition {
            return Err($crate::selftest::Failure(alloc::format!($($message)*)));
        }
    };
}
use ensure;

pub type Outcome = Result<Option<String>, Failure>;

/// Runs of the self-tests: how many passed and failed.
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
}

/// `reason=` values must not contain spaces.
fn machine_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Runs the self-tests that apply: the foundation and time ones everywhere, the Xen ones
/// under Xen. `host_time` (from `host-time=`) enables the wall-clock test.
pub fn run_all(
    seed: u64,
    hypervisor: &Detection,
    xen: Option<&Xen>,
    host_time: Option<u64>,
    net_echo_secs: Option<u64>,
) -> Summary {
    type Test<'a> = (&'static str, Box<dyn Fn() -> Outcome + 'a>);
    let mut tests: Vec<Test<'_>> = alloc::vec![
        ("frame-allocator", Box::new(frame_allocator::run)),
        ("heap", Box::new(heap::run)),
        ("mapper", Box::new(move || mapper::run(seed))),
        (
            "no-writable-executable",
            Box::new(protection::no_writable_executable)
        ),
        ("cpu-protection", Box::new(protection::cpu_protection)),
        ("clock-monotonic", Box::new(time::monotonic)),
        ("sleep", Box::new(time::sleep)),
        ("clock-vs-tsc", Box::new(time::clock_vs_tsc)),
    ];
    let kind = hypervisor.hypervisor;
    if exception_probes::applies(kind) {
        tests.push((
            "exception-probes",
            Box::new(move || exception_probes::run(kind)),
        ));
    }
    match host_time {
        Some(host_time) => {
            tests.push(("wall-clock", Box::new(move || time::wall_clock(host_time))))
        }
        None => println!(
            "janus: no host-time= on the command line, so the wall clock is not checked \
             (cargo xtask passes it)"
        ),
    }
    if let Some(xen) = xen {
        tests.push(("xen-version", Box::new(|| xen::version(xen))));
        tests.push(("xen-console-io", Box::new(|| xen::console_io(xen))));
        tests.push(("xen-shared-info", Box::new(|| xen::shared_info(hypervisor))));
        tests.push((
            "xen-unknown-hypercall",
            Box::new(|| xen::unknown_hypercall(xen)),
        ));
        if crate::platform::xen::is_pv() {
            tests.push(("xen-event-upcall", Box::new(|| xen::event_upcall(xen))));
        }
    }
    if crate::devices::BLOCK.lock().is_some() {
        tests.push(("virtio-blk-read", Box::new(move || io::blk_read(seed))));
        tests.push(("virtio-blk-write", Box::new(io::blk_write)));
    }
    if crate::devices::NETWORK.lock().is_some() {
        tests.push(("virtio-net-gateway", Box::new(io::net_gateway)));
        if let Some(secs) = net_echo_secs {
            tests.push((
                "virtio-net-udp-echo",
                Box::new(move || io::net_udp_echo(secs)),
            ));
        }
    }
    if crate::devices::console::present() {
        tests.push(("virtio-console", Box::new(move || io::console(seed))));
    }
    if crate::devices::rng::present() {
        tests.push(("virtio-rng", Box::new(io::rng)));
    }
    if crate::devices::ata::DISK.lock().is_some() {
        tests.push(("ata-pio-read", Box::new(io::ata_read)));
    }
    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    for (name, test) in tests {
        match test() {
            Ok(extra) => {
                summary.passed += 1;
                match extra {
                    Some(extra) => println!("@janus test {name} pass {extra}"),
                    None => println!("@janus test {name} pass"),
                }
            }
            Err(Failure(reason)) => {
                summary.failed += 1;
                println!("@janus test {name} fail reason={}", machine_value(&reason));
            }
        }
    }
    summary
}
