//! HVM parameters and operations (`HYPERVISOR_hvm_op`, xen/include/public/hvm/params.h
//! and hvm/hvm_op.h), for PVH and HVM guests. Reading a parameter is
//! [`HypercallPage::hvm_get_param`] in [`super::ops`].

use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};
use super::ops::{DOMID_SELF, XenHvmParam};

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_set_evtchn_upcall_vector`.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;

/// `HVM_PARAM_*` indices.
pub mod param {
    /// How event channel notifications reach vCPU 0; see [`super::callback_via_vector`].
    pub const CALLBACK_IRQ: u32 = 0;
    /// Guest frame of the xenstore ring.
    pub const STORE_PFN: u32 = 1;
    /// Event channel of the xenstore ring.
    pub const STORE_EVTCHN: u32 = 2;
    pub const PAE_ENABLED: u32 = 4;
    pub const IOREQ_PFN: u32 = 5;
    pub const BUFIOREQ_PFN: u32 = 6;
    pub const VIRIDIAN: u32 = 9;
    pub const TIMER_MODE: u32 = 10;
    pub const HPET_ENABLED: u32 = 11;
    pub const IDENT_PT: u32 = 12;
    pub const DM_DOMAIN: u32 = 13;
    pub const ACPI_S_STATE: u32 = 14;
    pub const VM86_TSS: u32 = 15;
    pub const VPT_ALIGN: u32 = 16;
    /// Guest frame of the console ring ([`crate::xen::console_ring`]).
    pub const CONSOLE_PFN: u32 = 17;
    /// Event channel of the console ring.
    pub const CONSOLE_EVTCHN: u32 = 18;
    pub const ACPI_IOPORTS_LOCATION: u32 = 19;
    pub const NESTEDHVM: u32 = 24;
    pub const PAGING_RING_PFN: u32 = 27;
    pub const MONITOR_RING_PFN: u32 = 28;
    pub const SHARING_RING_PFN: u32 = 29;
    pub const TRIPLE_FAULT_REASON: u32 = 31;
    pub const IOREQ_SERVER_PFN: u32 = 32;
    pub const NR_IOREQ_SERVER_PAGES: u32 = 33;
    pub const VM_GENERATION_ID_ADDR: u32 = 34;
    pub const ALTP2M: u32 = 35;
    pub const X87_FIP_WIDTH: u32 = 36;
    pub const VM86_TSS_SIZED: u32 = 37;
    pub const MCA_CAP: u32 = 38;
    /// `HVM_NR_PARAMS`: one past the last index.
    pub const NR_PARAMS: u32 = 39;
}

/// `HVM_PARAM_CALLBACK_TYPE_VECTOR` (x86), in bits 63:56 of `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;
const HVM_PARAM_CALLBACK_TYPE_SHIFT: u32 = 56;

/// The `HVM_PARAM_CALLBACK_IRQ` value that delivers event channel upcalls as interrupt
/// `vector` (needs `XENFEAT_hvm_callback_vector`).
pub const fn callback_via_vector(vector: u8) -> u64 {
    (HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_PARAM_CALLBACK_TYPE_SHIFT) | vector as u64
}

/// `struct xen_hvm_evtchn_upcall_vector` (xen/include/public/hvm/hvm_op.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}

const _: () = assert!(size_of::<XenHvmEvtchnUpcallVector>() == 8);
const _: () = assert!(offset_of!(XenHvmEvtchnUpcallVector, vcpu) == 0);
const _: () = assert!(offset_of!(XenHvmEvtchnUpcallVector, vector) == 4);

impl HypercallPage {
    /// Sets HVM parameter `index` (one of [`param`]) of this domain.
    pub fn hvm_set_param(&self, index: u32, value: u64) -> Result<(), XenError> {
        let param = XenHvmParam {
            domid: DOMID_SELF,
            index,
            value,
        };
        let args = [HVMOP_SET_PARAM, &raw const param as u64, 0, 0, 0];
        // SAFETY: HVMOP_set_param reads one live `xen_hvm_param`.
        check(unsafe { self.call(number::HVM_OP, args) }).map(|_| ())
    }

    /// Delivers `vcpu`'s event channel upcalls as interrupt `vector`, in preference to
    /// `HVM_PARAM_CALLBACK_IRQ`.
    pub fn hvm_set_evtchn_upcall_vector(&self, vcpu: u32, vector: u8) -> Result<(), XenError> {
        let arg = XenHvmEvtchnUpcallVector { vcpu, vector };
        let args = [
            HVMOP_SET_EVTCHN_UPCALL_VECTOR,
            &raw const arg as u64,
            0,
            0,
            0,
        ];
        // SAFETY: the command reads one live struct.
        check(unsafe { self.call(number::HVM_OP, args) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, read_guest, write_guest};

    #[test]
    fn callback_vector_encoding_puts_the_type_in_the_top_byte() {
        assert_eq!(callback_via_vector(0xf3), 0x0200_0000_0000_00f3);
    }

    #[test]
    fn set_param_writes_what_get_param_reads() {
        let store = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let seen = store.clone();
        let fake = FakeXen::new(move |call| {
            assert_eq!(call.nr, number::HVM_OP);
            // SAFETY: both HVMOP_set_param and HVMOP_get_param pass a live `xen_hvm_param`.
            let mut p: XenHvmParam = unsafe { read_guest(call.args[1]) };
            assert_eq!((p.domid, p.index), (DOMID_SELF, param::CALLBACK_IRQ));
            match call.args[0] {
                0 => seen.set(p.value),
                1 => {
                    p.value = seen.get();
                    // SAFETY: as above.
                    unsafe { write_guest(call.args[1], p) };
                }
                _ => return -38,
            }
            0
        });
        let xen = fake.page();
        assert_eq!(
            xen.hvm_set_param(param::CALLBACK_IRQ, callback_via_vector(0xf3)),
            Ok(())
        );
        assert_eq!(
            xen.hvm_get_param(param::CALLBACK_IRQ),
            Ok(0x0200_0000_0000_00f3)
        );
        assert_eq!(store.get(), 0x0200_0000_0000_00f3);
    }

    #[test]
    fn upcall_vector_passes_vcpu_and_vector() {
        let fake = FakeXen::new(|call| {
            assert_eq!(call.args[0], 23);
            // SAFETY: the wrapper passed a live struct.
            let a: XenHvmEvtchnUpcallVector = unsafe { read_guest(call.args[1]) };
            assert_eq!((a.vcpu, a.vector), (0, 0xf3));
            0
        });
        assert_eq!(fake.page().hvm_set_evtchn_upcall_vector(0, 0xf3), Ok(()));
        fake.calls();
    }
}
