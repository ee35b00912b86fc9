//! Xen as a place to run the kernel: QEMU (TCG) boots Xen 4.17 through its multiboot
//! loader, and Xen boots the kernel as its dom0, through its PVH entry or as a classic PV
//! guest ([`Dom0`]). [`fetch`] gets the hypervisor from Debian; [`console`] reads what Xen's
//! console says about the run.

pub mod console;
pub mod fetch;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::qemu::MemSize;

/// Machine RAM when the user gives none: Xen keeps a little and hands dom0 the rest.
pub const DEFAULT_MEM: MemSize = MemSize::from_mib(1024);

/// How Xen boots the kernel as its dom0. Both boot the same ELF: it carries the PVH note
/// and the PV notes, and Xen's command line picks which one it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom0 {
    /// A PVH dom0 (`dom0=pvh`): an HVM container entered through the PVH note, paging with
    /// hardware assistance.
    Pvh,
    /// A classic PV dom0 (Xen's default): entered in long mode on page tables Xen built,
    /// which the kernel updates by hypercall.
    Pv,
}

impl Dom0 {
    /// The `--env` value, and the first half of the run's label: `xen-pvh`, `xen-pv`.
    pub fn env_name(self) -> &'static str {
        match self {
            Dom0::Pvh => "xen-pvh",
            Dom0::Pv => "xen-pv",
        }
    }

    /// `-cpu`, when QEMU's default (qemu64) does not do.
    ///
    /// This Xen has no shadow paging, so a PVH dom0 needs hardware-assisted paging, and
    /// plain qemu64 has SVM without nested paging ("HAP not detected"). A PV dom0 needs
    /// neither (ENVIRONMENTS.md).
    pub fn cpu(self) -> Option<&'static str> {
        match self {
            Dom0::Pvh => Some("qemu64,+npt"),
            Dom0::Pv => None,
        }
    }

    /// Xen's command line (`-append`).
    ///
    /// - `console=com1`: Xen's console, which carries the guest's output too, is QEMU's
    ///   stdout.
    /// - `loglvl=all guest_loglvl=all`: a PVH dom0's port 0xe9 lines are guest debug
    ///   messages, which Xen drops at its default level.
    /// - `console_timestamps=boot`: every Xen line carries seconds since Xen started.
    /// - PVH only, `dom0=pvh`: the kernel boots through its PVH entry; without it Xen boots
    ///   a PV dom0.
    /// - PVH only, `dom0-iommu=none`: QEMU's `pc` has no IOMMU, and without it Xen panics
    ///   for a PVH dom0.
    /// - `noreboot`: a Xen panic or dom0 crash halts with the reason as the last lines
    ///   rather than rebooting 5 s later (which `-no-reboot` turns into QEMU status 0).
    pub fn options(self) -> &'static str {
        match self {
            Dom0::Pvh => {
                "console=com1 loglvl=all guest_loglvl=all console_timestamps=boot dom0=pvh \
                 dom0-iommu=none noreboot"
            }
            Dom0::Pv => "console=com1 loglvl=all guest_loglvl=all console_timestamps=boot noreboot",
        }
    }
}

/// The longest dom0 command line Xen passes on: it copies into a 1024-byte buffer
/// (`MAX_GUEST_CMDLINE`) and silently drops the rest (seen with 4.17).
pub const MAX_CMDLINE: usize = 1023;

/// The multiboot module string QEMU's `-initrd` takes: the image path, then the dom0
/// command line. QEMU splits modules at `,` unless doubled, and Xen ends the path at the
/// first space, so the caller refuses image paths with spaces (see [`path_has_space`]).
pub fn dom0_module(image: &Path, cmdline: &str) -> OsString {
    let mut module = escape_commas(image.as_os_str().as_bytes());
    if !cmdline.is_empty() {
        module.push(b' ');
        module.extend(escape_commas(cmdline.as_bytes()));
    }
    OsString::from_vec(module)
}

fn escape_commas(bytes: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(bytes.len());
    for &b in bytes {
        escaped.push(b);
        if b == b',' {
            escaped.push(b',');
        }
    }
    escaped
}

/// Whether Xen would cut this image path short when reading the module string.
pub fn path_has_space(image: &Path) -> bool {
    image.as_os_str().as_bytes().contains(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_options_are_the_pvh_ones_without_the_pvh_words() {
        let pvh_only = ["dom0=pvh", "dom0-iommu=none"];
        let without: Vec<&str> = Dom0::Pvh
            .options()
            .split(' ')
            .filter(|w| !pvh_only.contains(w))
            .collect();
        assert_eq!(Dom0::Pv.options(), without.join(" "));
    }

    #[test]
    fn module_is_the_image_then_the_cmdline() {
        assert_eq!(
            dom0_module(Path::new("/t/janus"), "log=debug seed=1"),
            "/t/janus log=debug seed=1"
        );
        assert_eq!(dom0_module(Path::new("/t/janus"), ""), "/t/janus");
    }

    #[test]
    fn commas_are_doubled_for_qemu() {
        assert_eq!(
            dom0_module(Path::new("/t/a,b/janus"), "x=1,2,,3"),
            "/t/a,,b/janus x=1,,2,,,,3"
        );
    }

    #[test]
    fn only_spaces_in_the_path_matter() {
        assert!(path_has_space(Path::new("/my kernels/janus")));
        assert!(!path_has_space(Path::new("/t/a,b/janus")));
    }
}
