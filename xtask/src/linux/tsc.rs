//! The TSC rate a TCG guest sees, for the peer's `tsc_early_khz=` on `-M microvm`.
//!
//! Under TCG, QEMU's `rdtsc` returns the host's counter (`cpu_get_ticks` reads it when icount
//! is off), so the guest's TSC runs at the host's rate; a `pc` boot of the peer measured
//! 2499.999 MHz on a host whose `cpu MHz` says 2499.998. Linux measures that rate against
//! another clock, and microvm offers it none that works under load: no HPET, no ACPI PM
//! timer, and its quick PIT calibration fails when the vCPU thread is descheduled between
//! PIT reads (seen on `pc` too, where the HPET then stands in). Linux then marks the TSC
//! unstable and, its ACPI being hardware-reduced, has no PIT tick either, so the boot hangs
//! after "tsc: Marking TSC unstable due to could not calculate TSC khz" (3 of 3 microvm
//! boots on a busy 2-core host). Given the rate, as a hypervisor's timing leaf gives it under
//! KVM, Linux skips the measurement.

use std::fs;
use std::path::Path;

/// Where CPU 0's frequency driver shows itself, when there is one.
const CPUFREQ_DIR: &str = "/sys/devices/system/cpu/cpu0/cpufreq";

/// The host's TSC rate in kHz, when /proc/cpuinfo states it.
pub fn host_khz() -> Option<u64> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    khz_from_cpuinfo(&cpuinfo, Path::new(CPUFREQ_DIR).exists())
}

/// The first processor's `cpu MHz` in kHz, where it is the TSC's rate: the TSC ticks at a
/// fixed rate (`constant_tsc`), and the figure is the kernel's fixed `cpu_khz` rather than
/// the core's running frequency, which Linux shows instead when it samples APERF/MPERF
/// (`aperfmperf`) or has a cpufreq driver (Linux's arch/x86/kernel/cpu/proc.c).
pub fn khz_from_cpuinfo(cpuinfo: &str, cpufreq_driver: bool) -> Option<u64> {
    if cpufreq_driver {
        return None;
    }
    let field = |name| crate::host::cpuinfo_field(cpuinfo, name);
    let flags: Vec<&str> = field("flags")?.split_whitespace().collect();
    if !flags.contains(&"constant_tsc") || flags.contains(&"aperfmperf") {
        return None;
    }
    let (mhz, fraction) = field("cpu MHz")?.split_once('.')?;
    if fraction.len() != 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let khz = mhz.parse::<u64>().ok()? * 1000 + fraction.parse::<u64>().ok()?;
    (khz > 0).then_some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of this project's hosts' /proc/cpuinfo (a KVM guest itself), flags cut.
    const HOST: &str = "processor\t: 0\n\
                        vendor_id\t: GenuineIntel\n\
                        model name\t: Intel(R) Xeon(R) Processor @ 2.50GHz\n\
                        cpu MHz\t\t: 2499.998\n\
                        flags\t\t: fpu tsc msr constant_tsc rep_good nopl nonstop_tsc \
                        tsc_known_freq hypervisor\n\
                        \n\
                        processor\t: 1\n\
                        cpu MHz\t\t: 1200.000\n\
                        flags\t\t: fpu tsc constant_tsc\n";

    #[test]
    fn a_fixed_cpu_mhz_is_the_tsc_rate() {
        assert_eq!(khz_from_cpuinfo(HOST, false), Some(2_499_998));
    }

    #[test]
    fn a_sampled_or_driven_frequency_is_not() {
        assert_eq!(khz_from_cpuinfo(HOST, true), None);
        let sampled = HOST.replace("nonstop_tsc", "nonstop_tsc aperfmperf");
        assert_eq!(khz_from_cpuinfo(&sampled, false), None);
        let varying = HOST.replace("constant_tsc ", "");
        assert_eq!(khz_from_cpuinfo(&varying, false), None);
    }

    #[test]
    fn odd_figures_give_nothing() {
        for mhz in ["2499.99", "2499", "abc.def", "0.000"] {
            let cpuinfo = HOST.replace("2499.998", mhz);
            assert_eq!(khz_from_cpuinfo(&cpuinfo, false), None, "{mhz}");
        }
        assert_eq!(khz_from_cpuinfo("", false), None);
    }
}
