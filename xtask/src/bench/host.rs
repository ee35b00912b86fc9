//! What the report says about the machine it ran on: CPU model, QEMU and Xen versions, the
//! Janus commit and date, and how this host's KVM pages (which the guest cannot see: CPUID
//! says `KVMKVMKVM` either way).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::results::Provenance;
use crate::{host, qemu};

/// Reads the machine and the tree; whatever cannot be read is "unknown", never an error:
/// the numbers are still worth writing.
pub fn provenance(root: &Path, xen_version: Option<String>, unix_time: u64) -> Provenance {
    Provenance {
        cpu_model: fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model(&text))
            .unwrap_or_else(|| "unknown".into()),
        qemu_version: output(Command::new(qemu::PROGRAM).arg("--version"))
            .and_then(|text| qemu_version(&text))
            .unwrap_or_else(|| "unknown".into()),
        xen_version,
        commit: commit(root).unwrap_or_else(|| "unknown".into()),
        date: rfc3339(unix_time),
    }
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn commit(root: &Path) -> Option<String> {
    let head =
        output(
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["rev-parse", "--short=12", "HEAD"]),
        )?;
    let dirty = output(Command::new("git").arg("-C").arg(root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| !s.trim().is_empty());
    Some(format!(
        "{}{}",
        head.trim(),
        if dirty { "-dirty" } else { "" }
    ))
}

/// The first `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    host::cpuinfo_field(cpuinfo, "model name").map(str::to_string)
}

/// `QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)` → `7.2.22 (Debian ...)`.
pub fn qemu_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let version = first.split_once("version ")?.1.trim();
    (!version.is_empty()).then(|| version.to_string())
}

/// Xen's version: what the guest read from Xen (`xen=4.17` on its env line), with the
/// version of the Debian package `xen.elf` came from when it lies in `cache`.
pub fn xen_version(from_guest: Option<&str>, cache: &Path) -> Option<String> {
    let package = fs::read_dir(cache).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find_map(|name| {
                let (package, version) = crate::debian::package_and_version(&name)?;
                (package == crate::xen::fetch::PACKAGE).then(|| version.to_string())
            })
    });
    match (from_guest, package) {
        (Some(guest), Some(package)) => Some(format!("{guest} (Debian {package})")),
        (Some(guest), None) => Some(guest.to_string()),
        (None, package) => package,
    }
}

/// How this host's KVM pages guests, from the loaded module's parameters under
/// `sys_module` (normally /sys/module).
pub fn kvm_paging(sys_module: &Path) -> Option<String> {
    let param = |module: &str, name: &str| {
        fs::read_to_string(sys_module.join(module).join("parameters").join(name))
            .ok()
            .map(|v| v.trim().to_string())
    };
    let on = |v: &str| matches!(v, "Y" | "y" | "1");
    if sys_module.join("kvm_pvm").exists() {
        Some("shadow paging, kvm_pvm".into())
    } else if let Some(ept) = param("kvm_intel", "ept") {
        Some(if on(&ept) {
            "hardware-assisted, EPT".into()
        } else {
            "shadow paging, kvm_intel ept=N".into()
        })
    } else {
        param("kvm_amd", "npt").map(|npt| {
            if on(&npt) {
                "hardware-assisted, NPT".into()
            } else {
                "shadow paging, kvm_amd npt=0".into()
            }
        })
    }
}

/// Seconds since the Unix epoch as `2026-11-21T21:31:18Z`.
pub fn rfc3339(unix_time: u64) -> String {
    let days = unix_time / 86_400;
    let seconds = unix_time % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: count 400-year eras (146 097 days
/// each) from 0000-03-01, so that the leap day falls at the end of each year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_296_701), "2026-11-21T21:31:41Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) \
                    Processor @ 2.50GHz\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) Processor @ 2.50GHz")
        );
        assert_eq!(cpu_model("flags: fpu\n"), None);
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(
            qemu_version(
                "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright ..."
            )
            .as_deref(),
            Some("7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)")
        );
        assert_eq!(qemu_version("nonsense"), None);
    }

    #[test]
    fn kvm_paging_reads_the_module_parameters() {
        let dir = std::env::temp_dir().join(format!("janus-kvm-paging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(kvm_paging(&dir), None);
        fs::create_dir_all(dir.join("kvm_intel/parameters")).unwrap();
        fs::write(dir.join("kvm_intel/parameters/ept"), "Y\n").unwrap();
        assert_eq!(kvm_paging(&dir).as_deref(), Some("hardware-assisted, EPT"));
        fs::write(dir.join("kvm_intel/parameters/ept"), "N\n").unwrap();
        assert_eq!(
            kvm_paging(&dir).as_deref(),
            Some("shadow paging, kvm_intel ept=N")
        );
        fs::create_dir_all(dir.join("kvm_pvm")).unwrap();
        assert_eq!(kvm_paging(&dir).as_deref(), Some("shadow paging, kvm_pvm"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
