//! Self-tests of the Xen interfaces, run only under Xen.

use janus_hypercall::cpuid::Detection;

use crate::platform::cpuid;
use janus_hypercall::xen::error::XenError;

use super::{Outcome, ensure};
use crate::platform::{self, xen::Xen};
use crate::time::tsc;

pub fn version(xen: &Xen) -> Outcome {
    let again = xen.hypercalls.xen_version()?;
    ensure!(
        again == xen.version,
        "xen_version changed from {:?} to {again:?}",
        xen.version
    );
    ensure!(
        xen.version.major >= 3,
        "implausible Xen version {}.{}",
        xen.version.major,
        xen.version.minor
    );
    Ok(Some(alloc::format!(
        "version={}.{}",
        xen.version.major,
        xen.version.minor
    )))
}

pub fn console_io(xen: &Xen) -> Outcome {
    xen.hypercalls
        .console_write(b"janus: console_io self-test line\n")?;
    Ok(None)
}

/// The shared info page is mapped, its time record for vCPU 0 is consistent and advancing,
/// the TSC frequency it implies agrees with Xen's CPUID time leaf, and the wallclock is
/// after 2001.
pub fn shared_info(detection: &Detection) -> Outcome {
    let shared = platform::xen::shared_info().ok_or("shared info page not mapped")?;
    let time = shared.vcpu_time(0).ok_or("no time record for vCPU 0")?;
    let first = time.read()?;
    ensure!(first.tsc_to_system_mul != 0, "tsc_to_system_mul is 0");
    ensure!(first.system_time > 0, "system_time is 0");
    for _ in 0..1000 {
        core::hint::black_box(core::arch::x86_64::__cpuid_count(0, 0));
    }
    let second = time.read()?;
    ensure!(
        second.system_time >= first.system_time,
        "system_time went back from {} to {}",
        first.system_time,
        second.system_time
    );
    let pvclock_hz = tsc::from_pvclock(second.tsc_to_system_mul, second.tsc_shift)
        .ok_or("implausible tsc_to_system_mul/tsc_shift")?;
    if let Some(leaf) = tsc::from_cpuid(cpuid, detection) {
        ensure!(
            pvclock_hz.abs_diff(leaf.hz) <= leaf.hz / 100,
            "pvclock implies a {pvclock_hz} Hz TSC, the CPUID leaf says {} Hz",
            leaf.hz
        );
    }
    let wallclock = shared.read_wallclock()?;
    ensure!(
        wallclock.sec >= 1_000_000_000,
        "wallclock at {} s since the epoch",
        wallclock.sec
    );
    Ok(Some(alloc::format!(
        "pvclock_tsc_khz={} system_time_ns={}",
        pvclock_hz / 1000,
        second.system_time
    )))
}

pub fn unknown_hypercall(xen: &Xen) -> Outcome {
    match xen.hypercalls.unknown_hypercall() {
        Err(XenError::Enosys) => Ok(None),
        other => Err(super::Failure(alloc::format!(
            "an undefined hypercall returned {other:?}, expected ENOSYS"
        ))),
    }
}
