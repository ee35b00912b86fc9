//! Linux as the boot-time peer. `cargo xtask bench` reports Janus's boot time as a ratio to
//! a Linux guest booted by the same QEMU, with the same accelerator and machine type, in the
//! same run, so the number carries over between hosts of different speed and load.
//!
//! The peer is Debian's cloud kernel ([`fetch`]), taken from its package and never
//! installed, with an initramfs xtask writes itself ([`initramfs`], [`cpio`]) whose `/init`
//! ([`init`]) prints one line and powers the machine off: the boot measured is the
//! kernel's, with next to no user space.
//!
//! Measured per boot ([`mod@boot`]), read from the output by [`console`]:
//! - host time: wall clock from QEMU's launch to its exit;
//! - guest time to init: the printk timestamp of the kernel's `Run /init as init process`
//!   line, i.e. time since the kernel's clock started, firmware and decompression not
//!   included;
//! - whether /init ran, and when the boot failed, why, in one line.
//!
//! On microvm under TCG the kernel is told the TSC's rate ([`tsc`]): it has no clock there to
//! measure it against and can hang without it.
//!
//! Under this project's KVM (`kvm_pvm`), Debian's kernel dies early with "KVM internal
//! error" emulation failures and QEMU pauses the guest instead of exiting (ENVIRONMENTS.md):
//! such a boot lasts until its timeout and reports QEMU's line. Under TCG it boots; on a busy
//! 2-core host init came 3.5–4 s into its uptime with `-cpu max` (Janus's TCG CPU, so the
//! peer's too), 2.7 s with QEMU's default CPU.

pub mod boot;
pub mod console;
pub mod cpio;
pub mod fetch;
pub mod init;
pub mod initramfs;
pub mod tsc;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use boot::LinuxBoot;

use crate::debian;
use crate::host;
use crate::qemu::{self, Accel, Machine};

/// What QEMU boots as the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The bzImage.
    pub kernel: PathBuf,
    /// `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// The cpio archive with `/init`.
    pub initramfs: PathBuf,
}

/// Why the peer could not be set up or run; every message is one line that says what to
/// do. A boot that fails is not an error: [`LinuxBoot::failure`] says why.
#[derive(Debug)]
pub enum Error {
    /// Fetching or unpacking the kernel's package failed.
    Package(debian::Error),
    /// `apt-cache depends` on the metapackage named no single versioned cloud kernel.
    NoKernelPackage { listed: Vec<String>, dir: PathBuf },
    /// The cache folder holds several kernels.
    SeveralKernels { dir: PathBuf, names: Vec<String> },
    /// The cached kernel is not a bzImage.
    CachedNotAKernel { path: PathBuf },
    /// The package's kernel is not a bzImage.
    PackagedNotAKernel { deb: PathBuf, name: String },
    /// The initramfs could not be written.
    Initramfs { path: PathBuf, reason: String },
    /// QEMU or its firmware is missing and could not be installed.
    Host(host::SetupError),
    /// QEMU could not be started or waited for.
    Qemu(qemu::RunError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Package(e) => e.fmt(f),
            Error::NoKernelPackage { listed, dir } => write!(
                f,
                "`apt-cache depends {}` names no single linux-image-<version>-cloud-amd64 \
                 (it lists: {}); put such a package's .deb in {}",
                fetch::METAPACKAGE,
                if listed.is_empty() {
                    "nothing".to_string()
                } else {
                    listed.join(", ")
                },
                dir.display()
            ),
            Error::SeveralKernels { dir, names } => write!(
                f,
                "{} holds several kernels ({}); delete all but one",
                dir.display(),
                names.join(", ")
            ),
            Error::CachedNotAKernel { path } => write!(
                f,
                "{} is not a Linux bzImage; delete it to fetch the kernel again",
                path.display()
            ),
            Error::PackagedNotAKernel { deb, name } => write!(
                f,
                "boot/{name} in {} is not a Linux bzImage; delete the package to download it \
                 again",
                deb.display()
            ),
            Error::Initramfs { path, reason } => write!(
                f,
                "cannot write the Linux peer's initramfs to {} ({reason}); make that folder \
                 writable",
                path.display()
            ),
            Error::Host(e) => e.fmt(f),
            Error::Qemu(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<debian::Error> for Error {
    fn from(e: debian::Error) -> Error {
        Error::Package(e)
    }
}

/// The peer, kept in `<target_dir>/linux/`: the kernel is fetched on the first call (which
/// needs Debian's registry) and reused afterwards without the network; the initramfs is
/// rewritten when it differs from what this xtask builds.
pub fn ensure(target_dir: &Path) -> Result<Peer, Error> {
    let dir = target_dir.join(fetch::CACHE_DIR);
    let kernel = fetch::ensure(&dir)?;
    let initramfs = initramfs::write(&dir)?;
    Ok(Peer {
        kernel: kernel.path,
        kernel_version: kernel.version,
        initramfs,
    })
}

/// Boots the peer once under `accel` on `machine` and measures it; `timeout` is capped at
/// [`boot::MAX_TIMEOUT`]. Installs QEMU and its firmware first when missing and running as
/// root, as `cargo xtask run` does.
pub fn boot(
    peer: &Peer,
    accel: Accel,
    machine: Machine,
    timeout: Duration,
) -> Result<LinuxBoot, Error> {
    boot::run(peer, accel, machine, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_one_line() {
        let errors = [
            Error::NoKernelPackage {
                listed: vec![],
                dir: "/w/target/linux".into(),
            },
            Error::SeveralKernels {
                dir: "/w/target/linux".into(),
                names: vec!["vmlinuz-a".into(), "vmlinuz-b".into()],
            },
            Error::CachedNotAKernel {
                path: "/w/target/linux/vmlinuz-a".into(),
            },
            Error::PackagedNotAKernel {
                deb: "/w/target/linux/x.deb".into(),
                name: "vmlinuz-a".into(),
            },
            Error::Initramfs {
                path: "/w/target/linux/initramfs.cpio".into(),
                reason: "Permission denied".into(),
            },
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
