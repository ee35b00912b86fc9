//! Booting the peer under QEMU the way Janus is booted (same QEMU, accelerator, CPU model,
//! machine type and firmware) and measuring the boot.

use std::fmt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::{Error, Peer, console, tsc};
use crate::host;
use crate::qemu::{self, Accel, Machine, MemSize, Stream};

/// Guest RAM: room for the kernel to unpack itself and its initramfs, with no memory
/// pressure in the boot measured.
pub const MEMORY: MemSize = MemSize::from_mib(256);

/// The longest a boot may take. A boot of a few seconds that has not ended by then never
/// will: under this project's KVM the kernel dies with a "KVM internal error" and QEMU
/// pauses the guest rather than exiting (ENVIRONMENTS.md).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The kernel command line.
///
/// - `console=ttyS0`: the kernel's messages and init's output go to COM1, QEMU's stdout.
/// - `panic=-1`: a panic reboots at once, which `-no-reboot` turns into QEMU's exit, so a
///   failed boot ends with its reason rather than at the timeout.
/// - `printk.time=1`: the timestamps the guest time is read from. Debian's kernels print
///   them already; this keeps the measurement from depending on a build option.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 printk.time=1";

/// The kernel command line for a boot: [`CMDLINE`], and under TCG on microvm the TSC's rate
/// when the host states it, without which Linux can hang there ([`tsc`]).
pub fn kernel_cmdline(accel: Accel, machine: Machine, host_tsc_khz: Option<u64>) -> String {
    match (accel, machine, host_tsc_khz) {
        (Accel::Tcg, Machine::Microvm, Some(khz)) => format!("{CMDLINE} tsc_early_khz={khz}"),
        _ => CMDLINE.to_string(),
    }
}

/// One boot of the peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinuxBoot {
    #[serde(serialize_with = "by_name")]
    pub accel: Accel,
    #[serde(serialize_with = "by_name")]
    pub machine: Machine,
    /// `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// /init ran: it printed its line.
    pub reached_init: bool,
    /// Guest uptime when the kernel started /init, by its printk clock, in microseconds.
    pub guest_init_us: Option<u64>,
    /// Wall time on the host from QEMU's launch to its exit (or its kill), in milliseconds.
    pub host_ms: u64,
    /// Why the boot failed, in one line; `None` when init ran and the machine powered off.
    pub failure: Option<String>,
}

fn by_name<S: Serializer>(value: &impl fmt::Display, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The QEMU command that boots the peer with `cmdline`.
pub fn command(peer: &Peer, accel: Accel, machine: Machine, cmdline: &str) -> Command {
    let mut command = Command::new(qemu::PROGRAM);
    command
        .args(["-accel", accel.name()])
        .args(["-M", machine.name()])
        .args(["-cpu", accel.cpu()])
        .arg("-m")
        .arg(MEMORY.to_string())
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&peer.kernel)
        .arg("-initrd")
        .arg(&peer.initramfs)
        .arg("-append")
        .arg(cmdline);
    if let Some(firmware) = machine.firmware() {
        command.args(["-bios", firmware]);
    }
    command
}

/// Boots the peer once and measures it; `timeout` is capped at [`MAX_TIMEOUT`]. A boot that
/// fails is still a [`LinuxBoot`], with its reason; an error means QEMU could not be run.
pub fn run(
    peer: &Peer,
    accel: Accel,
    machine: Machine,
    timeout: Duration,
) -> Result<LinuxBoot, Error> {
    host::ensure(&host::QEMU).map_err(Error::Host)?;
    if machine.firmware().is_some() {
        host::ensure(&host::QBOOT).map_err(Error::Host)?;
    }
    let cmdline = kernel_cmdline(accel, machine, tsc::host_khz());
    let launched = Instant::now();
    let outcome = qemu::run_with_timeout(
        command(peer, accel, machine, &cmdline),
        timeout.min(MAX_TIMEOUT),
        // Should the reboot after a panic not happen, the panic still ends the run; after a
        // KVM internal error QEMU pauses the guest rather than exiting (ENVIRONMENTS.md).
        &|stream, line| match stream {
            Stream::Console => console::kernel_panic(line).is_some(),
            Stream::Qemu => qemu::kvm_internal_error(line),
        },
        &mut |_, _| {},
    )
    .map_err(Error::Qemu)?;
    let host_ms = u64::try_from(launched.elapsed().as_millis()).unwrap_or(u64::MAX);
    let reading = console::read(&outcome);
    Ok(LinuxBoot {
        accel,
        machine,
        kernel_version: peer.kernel_version.clone(),
        reached_init: reading.reached_init,
        guest_init_us: reading.guest_init_us,
        host_ms,
        failure: reading.failure,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn peer() -> Peer {
        Peer {
            kernel: PathBuf::from("/t/linux/vmlinuz-6.1.0-56-cloud-amd64"),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            initramfs: PathBuf::from("/t/linux/initramfs.cpio"),
        }
    }

    fn args(accel: Accel, machine: Machine) -> Vec<String> {
        command(&peer(), accel, machine, CMDLINE)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of(args: &[String], flag: &str) -> Option<String> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    }

    #[test]
    fn the_peer_boots_its_kernel_and_initramfs_with_the_console_on_stdout() {
        let a = args(Accel::Tcg, Machine::Microvm);
        assert_eq!(
            value_of(&a, "-kernel").as_deref(),
            Some("/t/linux/vmlinuz-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            value_of(&a, "-initrd").as_deref(),
            Some("/t/linux/initramfs.cpio")
        );
        assert_eq!(value_of(&a, "-append").as_deref(), Some(CMDLINE));
        assert_eq!(value_of(&a, "-serial").as_deref(), Some("stdio"));
        assert_eq!(value_of(&a, "-m").as_deref(), Some("256M"));
        assert!(a.iter().any(|x| x == "-no-reboot"));
    }

    #[test]
    fn only_tcg_on_microvm_is_told_the_tsc_rate() {
        assert_eq!(
            kernel_cmdline(Accel::Tcg, Machine::Microvm, Some(2_499_998)),
            "console=ttyS0 panic=-1 printk.time=1 tsc_early_khz=2499998"
        );
        assert_eq!(kernel_cmdline(Accel::Tcg, Machine::Microvm, None), CMDLINE);
        assert_eq!(
            kernel_cmdline(Accel::Tcg, Machine::Pc, Some(2_499_998)),
            CMDLINE
        );
        assert_eq!(
            kernel_cmdline(Accel::Kvm, Machine::Microvm, Some(2_499_998)),
            CMDLINE
        );
    }

    #[test]
    fn the_peer_runs_on_janus_accelerator_cpu_and_firmware() {
        for machine in [Machine::Pc, Machine::Q35] {
            let a = args(Accel::Tcg, machine);
            assert_eq!(value_of(&a, "-M").as_deref(), Some(machine.name()));
            assert_eq!(value_of(&a, "-bios").as_deref(), Some(qemu::QBOOT_ROM));
        }
        let a = args(Accel::Kvm, Machine::Microvm);
        assert_eq!(value_of(&a, "-accel").as_deref(), Some("kvm"));
        assert_eq!(
            value_of(&a, "-cpu").as_deref(),
            Some("host,-arch-capabilities")
        );
        assert!(!a.iter().any(|x| x == "-bios"));
    }

    #[test]
    fn a_boot_serializes_with_names_for_accel_and_machine() {
        let boot = LinuxBoot {
            accel: Accel::Tcg,
            machine: Machine::Microvm,
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            reached_init: true,
            guest_init_us: Some(812_345),
            host_ms: 1304,
            failure: None,
        };
        assert_eq!(
            serde_json::to_string(&boot).unwrap(),
            r#"{"accel":"tcg","machine":"microvm","kernel_version":"6.1.0-56-cloud-amd64","reached_init":true,"guest_init_us":812345,"host_ms":1304,"failure":null}"#
        );
    }
}
