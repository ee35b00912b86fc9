//! Physical device operations (`HYPERVISOR_physdev_op`, xen/include/public/physdev.h).

use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `PHYSDEVOP_set_iopl`.
pub const PHYSDEVOP_SET_IOPL: u64 = 6;

/// `struct physdev_set_iopl` (xen/include/public/physdev.h), 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevSetIopl {
    /// The I/O privilege level, 0..=3.
    pub iopl: u32,
}

const _: () = assert!(size_of::<PhysdevSetIopl>() == 4);
const _: () = assert!(offset_of!(PhysdevSetIopl, iopl) == 0);

impl HypercallPage {
    /// Sets this vCPU's virtual I/O privilege level. A PV kernel runs in ring 3, so its
    /// `in`/`out` trap to Xen, which emulates them for ports the domain may use (such as
    /// QEMU's isa-debug-exit for dom0) only if this level allows: Xen counts a PV kernel as
    /// ring 1 unless `VMASST_TYPE_architectural_iopl` is on (`iopl_ok` in
    /// xen/arch/x86/pv/emul-priv-op.c), so level 1 suffices. Xen refuses levels above 3
    /// with `EINVAL`.
    pub fn physdev_set_iopl(&self, iopl: u32) -> Result<(), XenError> {
        let arg = PhysdevSetIopl { iopl };
        let args = [PHYSDEVOP_SET_IOPL, &raw const arg as u64, 0, 0, 0];
        // SAFETY: PHYSDEVOP_set_iopl reads one live struct.
        check(unsafe { self.call(number::PHYSDEV_OP, args) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, read_guest};

    #[test]
    fn set_iopl_passes_the_level() {
        let fake = FakeXen::new(|call| {
            assert_eq!((call.nr, call.args[0]), (number::PHYSDEV_OP, 6));
            // SAFETY: the wrapper passed a live `physdev_set_iopl`.
            let arg: PhysdevSetIopl = unsafe { read_guest(call.args[1]) };
            if arg.iopl > 3 { -22 } else { 0 }
        });
        assert_eq!(fake.page().physdev_set_iopl(1), Ok(()));
        assert_eq!(fake.page().physdev_set_iopl(4), Err(XenError::Einval));
    }
}
