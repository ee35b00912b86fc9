//! Boot time against a real peer: Janus booted with nothing to do (`tests=off bench=off`, no
//! devices) and Debian's Linux kernel with an init that prints a line and powers off, both by
//! the same QEMU on the same machine type, one after the other in the same run.
//!
//! Two times each: the guest's own, from its entry to ready (Janus's `@janus done boot_us`,
//! Linux's printk timestamp on `Run /init as init process`), and the host's, from QEMU's
//! launch to its exit, which adds firmware, loading and power-off. The ratios are Janus's
//! over Linux's: below 1, Janus is quicker.

use serde::Serialize;

use super::results::median;

/// One boot of Janus that only boots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JanusBoot {
    pub run: u32,
    pub guest_us: Option<u64>,
    pub host_ms: u64,
    /// Why the boot does not count, when it failed.
    pub failure: Option<String>,
}

/// One boot of the Linux peer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinuxBoot {
    pub run: u32,
    pub kernel: String,
    /// Guest time at which the kernel ran init.
    pub guest_us: Option<u64>,
    pub host_ms: u64,
    /// Why Linux did not reach init, e.g. a "KVM internal error".
    pub failure: Option<String>,
}

/// Both peers in one environment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BootComparison {
    pub environment: String,
    pub janus: Vec<JanusBoot>,
    /// Empty where QEMU does not boot Linux directly (under Xen).
    pub linux: Vec<LinuxBoot>,
    pub janus_guest_ms: Option<f64>,
    pub janus_host_ms: Option<f64>,
    pub linux_guest_ms: Option<f64>,
    pub linux_host_ms: Option<f64>,
    /// Janus's guest time over Linux's, where both booted.
    pub guest_ratio: Option<f64>,
    /// Janus's launch-to-exit over Linux's, where both booted.
    pub host_ratio: Option<f64>,
    /// One line on what the ratios rest on, or why there are none.
    pub note: String,
}

impl BootComparison {
    pub fn new(
        environment: &str,
        janus: Vec<JanusBoot>,
        linux: Vec<LinuxBoot>,
        linux_skipped: Option<&str>,
    ) -> BootComparison {
        let ok_janus: Vec<&JanusBoot> = janus.iter().filter(|b| b.failure.is_none()).collect();
        let ok_linux: Vec<&LinuxBoot> = linux.iter().filter(|b| b.failure.is_none()).collect();
        let ms_of = |values: Vec<f64>| (!values.is_empty()).then(|| median(&values));
        let janus_guest_ms = ms_of(
            ok_janus
                .iter()
                .filter_map(|b| Some(b.guest_us? as f64 / 1000.0))
                .collect(),
        );
        let janus_host_ms = ms_of(ok_janus.iter().map(|b| b.host_ms as f64).collect());
        let linux_guest_ms = ms_of(
            ok_linux
                .iter()
                .filter_map(|b| Some(b.guest_us? as f64 / 1000.0))
                .collect(),
        );
        let linux_host_ms = ms_of(ok_linux.iter().map(|b| b.host_ms as f64).collect());
        let ratio = |a: Option<f64>, b: Option<f64>| {
            let r = a? / b?;
            (r.is_finite() && r > 0.0).then_some(r)
        };
        let guest_ratio = ratio(janus_guest_ms, linux_guest_ms);
        let host_ratio = ratio(janus_host_ms, linux_host_ms);
        let note = if let Some(why) = linux_skipped {
            format!("only Janus boots here: {why}")
        } else if janus_host_ms.is_none() {
            let why = janus
                .iter()
                .find_map(|b| b.failure.as_deref())
                .unwrap_or("it did not run");
            format!("Janus did not boot: {why}")
        } else if linux_host_ms.is_none() {
            let why = linux
                .iter()
                .find_map(|b| b.failure.as_deref())
                .unwrap_or("it did not run");
            format!("only Janus boots here: Linux failed ({why})")
        } else {
            format!(
                "{} Janus and {} Linux boots that reached ready/init",
                ok_janus.len(),
                ok_linux.len()
            )
        };
        BootComparison {
            environment: environment.to_string(),
            janus,
            linux,
            janus_guest_ms,
            janus_host_ms,
            linux_guest_ms,
            linux_host_ms,
            guest_ratio,
            host_ratio,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn janus(run: u32, guest_us: u64, host_ms: u64) -> JanusBoot {
        JanusBoot {
            run,
            guest_us: Some(guest_us),
            host_ms,
            failure: None,
        }
    }

    fn linux(run: u32, guest_us: Option<u64>, host_ms: u64, failure: Option<&str>) -> LinuxBoot {
        LinuxBoot {
            run,
            kernel: "6.1.0-56-cloud-amd64".into(),
            guest_us,
            host_ms,
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn ratios_are_janus_over_linux_from_the_medians() {
        let c = BootComparison::new(
            "tcg/microvm",
            vec![janus(1, 40_000, 120), janus(2, 60_000, 140)],
            vec![
                linux(1, Some(800_000), 1300, None),
                linux(2, Some(1_000_000), 1500, None),
            ],
            None,
        );
        assert_eq!(c.janus_guest_ms, Some(50.0));
        assert_eq!(c.linux_guest_ms, Some(900.0));
        assert_eq!(c.guest_ratio, Some(50.0 / 900.0));
        assert_eq!(c.host_ratio, Some(130.0 / 1400.0));
        assert_eq!(c.note, "2 Janus and 2 Linux boots that reached ready/init");
    }

    #[test]
    fn where_linux_fails_only_janus_is_reported() {
        let c = BootComparison::new(
            "kvm/microvm",
            vec![janus(1, 40_000, 120)],
            vec![linux(
                1,
                None,
                60_000,
                Some("KVM internal error. Suberror: 1"),
            )],
            None,
        );
        assert_eq!(c.janus_host_ms, Some(120.0));
        assert_eq!(c.linux_host_ms, None);
        assert_eq!(c.guest_ratio, None);
        assert_eq!(
            c.note,
            "only Janus boots here: Linux failed (KVM internal error. Suberror: 1)"
        );
    }

    #[test]
    fn under_xen_there_is_no_linux_peer() {
        let c = BootComparison::new(
            "xen-pv/pc",
            vec![janus(1, 1_000_000, 9000)],
            Vec::new(),
            Some("Linux is booted only where QEMU boots it directly"),
        );
        assert_eq!(c.host_ratio, None);
        assert!(c.note.starts_with("only Janus boots here"));
    }
}
