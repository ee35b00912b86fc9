//! Where Xen enters a 64-bit PV kernel for events, failed returns, system calls and NMIs
//! (`HYPERVISOR_callback_op`, xen/include/public/callback.h; `xen_callback_t` from
//! arch-x86/xen-x86_64.h).
//!
//! Xen 4.17 also has the older x86_64 `HYPERVISOR_set_callbacks(event, failsafe,
//! syscall)` ([`number::SET_CALLBACKS`]), but it returns 0 even when it ignored an
//! address (`do_set_callbacks`, xen/arch/x86/pv/callback.c), so only `callback_op` is
//! wrapped. The callbacks are entered on the frame described in [`super::traps`].

use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `CALLBACKOP_*` commands.
pub mod op {
    pub const REGISTER: u32 = 0;
    pub const UNREGISTER: u32 = 1;
}

/// `CALLBACKF_mask_events`: mask event upcalls while the callback runs. Xen ignores it for
/// [`CallbackType::Event`] and [`CallbackType::Nmi`], which always mask them.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// The `CALLBACKTYPE_*` a 64-bit kernel uses. `sysenter` (5) and `syscall32` (7) serve
/// 32-bit user code, which Janus does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum CallbackType {
    /// The event upcall: Xen enters it when an event channel is pending and upcalls are
    /// unmasked.
    Event = 0,
    /// Entered when Xen cannot restore the guest's state on a return (e.g. a bad segment
    /// selector), instead of crashing the domain.
    Failsafe = 1,
    /// `syscall` from 64-bit user code.
    Syscall = 2,
    /// NMI delivery; Xen installs it as trap vector 2.
    Nmi = 4,
}

/// `struct callback_register` (xen/include/public/callback.h), x86_64: 16 bytes;
/// `xen_callback_t` is an `unsigned long` there, after 4 bytes of padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackRegister {
    /// `type`: a [`CallbackType`].
    pub kind: u16,
    /// [`CALLBACKF_MASK_EVENTS`].
    pub flags: u16,
    /// The callback's address, in the kernel's flat code segment.
    pub address: u64,
}

const _: () = assert!(size_of::<CallbackRegister>() == 16);
const _: () = assert!(offset_of!(CallbackRegister, kind) == 0);
const _: () = assert!(offset_of!(CallbackRegister, flags) == 2);
const _: () = assert!(offset_of!(CallbackRegister, address) == 8);

/// `struct callback_unregister` (xen/include/public/callback.h), 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackUnregister {
    /// `type`: a [`CallbackType`].
    pub kind: u16,
    pub unused: u16,
}

const _: () = assert!(size_of::<CallbackUnregister>() == 4);
const _: () = assert!(offset_of!(CallbackUnregister, kind) == 0);
const _: () = assert!(offset_of!(CallbackUnregister, unused) == 2);

impl HypercallPage {
    /// Makes `address` this vCPU's callback of `kind` (`CALLBACKOP_register`).
    /// `mask_events` is [`CALLBACKF_MASK_EVENTS`]. Xen refuses a non-canonical address with
    /// `EINVAL`.
    ///
    /// # Safety
    /// `address` must be kernel code that handles the callback on Xen's frame (see
    /// [`super::traps`]): Xen enters it asynchronously from now on.
    pub unsafe fn register_callback(
        &self,
        kind: CallbackType,
        address: u64,
        mask_events: bool,
    ) -> Result<(), XenError> {
        let arg = CallbackRegister {
            kind: kind as u16,
            flags: if mask_events {
                CALLBACKF_MASK_EVENTS
            } else {
                0
            },
            address,
        };
        let args = [u64::from(op::REGISTER), &raw const arg as u64, 0, 0, 0];
        // SAFETY: Xen reads the live struct; what the callback does is the caller's
        // contract.
        check(unsafe { self.call(number::CALLBACK_OP, args) }).map(|_| ())
    }

    /// Removes this vCPU's callback of `kind` (`CALLBACKOP_unregister`). Xen 4.17 only
    /// removes [`CallbackType::Nmi`] (NMIs are then dropped) and refuses the others with
    /// `EINVAL` (`unregister_guest_callback`, xen/arch/x86/pv/callback.c).
    pub fn unregister_callback(&self, kind: CallbackType) -> Result<(), XenError> {
        let arg = CallbackUnregister {
            kind: kind as u16,
            unused: 0,
        };
        let args = [u64::from(op::UNREGISTER), &raw const arg as u64, 0, 0, 0];
        // SAFETY: Xen reads the live struct; no longer entering a callback cannot break
        // the kernel's memory.
        check(unsafe { self.call(number::CALLBACK_OP, args) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::fake_hypervisor::{Call, FakeXen, read_guest};

    /// Plays Xen 4.17's `do_callback_op`: registers canonical addresses of known types and
    /// unregisters only the NMI callback.
    fn xen_callback_op(call: &Call) -> i64 {
        assert_eq!(call.nr, number::CALLBACK_OP);
        let [cmd, arg, ..] = call.args;
        match cmd as u32 {
            op::REGISTER => {
                // SAFETY: the wrapper passed a live `callback_register`.
                let reg: CallbackRegister = unsafe { read_guest(arg) };
                assert!(matches!(reg.kind, 0 | 1 | 2 | 4));
                if reg.address >= 0x0000_8000_0000_0000 && reg.address < 0xffff_8000_0000_0000 {
                    return -22;
                }
                0
            }
            op::UNREGISTER => {
                // SAFETY: the wrapper passed a live `callback_unregister`.
                let unreg: CallbackUnregister = unsafe { read_guest(arg) };
                if unreg.kind == 4 { 0 } else { -22 }
            }
            _ => -38,
        }
    }

    #[test]
    fn register_passes_type_flags_and_address() {
        let fake = FakeXen::new(|call| {
            // SAFETY: the wrapper passed a live `callback_register`.
            let reg: CallbackRegister = unsafe { read_guest(call.args[1]) };
            assert_eq!(
                reg,
                CallbackRegister {
                    kind: 2,
                    flags: 1,
                    address: 0xffff_ffff_8000_2000
                }
            );
            xen_callback_op(call)
        });
        // SAFETY: the fake hypervisor enters nothing.
        let got = unsafe {
            fake.page()
                .register_callback(CallbackType::Syscall, 0xffff_ffff_8000_2000, true)
        };
        assert_eq!(got, Ok(()));
        assert_eq!(fake.calls()[0].args[0], 0);
    }

    #[test]
    fn register_reports_what_xen_refuses() {
        let fake = FakeXen::new(xen_callback_op);
        let xen = fake.page();
        // SAFETY: the fake hypervisor enters nothing.
        unsafe {
            assert_eq!(
                xen.register_callback(CallbackType::Event, 0xffff_ffff_8000_1000, false),
                Ok(())
            );
            assert_eq!(
                xen.register_callback(CallbackType::Failsafe, 0x0000_8000_0000_0000, false),
                Err(XenError::Einval)
            );
        }
    }

    #[test]
    fn only_the_nmi_callback_can_be_unregistered() {
        let fake = FakeXen::new(xen_callback_op);
        let xen = fake.page();
        assert_eq!(xen.unregister_callback(CallbackType::Nmi), Ok(()));
        assert_eq!(
            xen.unregister_callback(CallbackType::Event),
            Err(XenError::Einval)
        );
        let calls = fake.calls();
        assert!(calls.iter().all(|c| c.args[0] == 1));
    }
}
