//! PV page-table hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping`
//! (xen/include/public/xen.h).
//!
//! A PV guest's page tables are read-only to it; every change is a request Xen validates.
//! Requests are cheap only in batches, hence the slice-taking wrappers, which report how
//! much of a batch Xen applied before an error.
//!
//! The wrappers that change mappings are `unsafe`: like writing a page-table entry
//! directly, a wrong request can unmap or alias memory the kernel relies on, and Xen's
//! checks only protect Xen and other domains, not this kernel from itself.

use core::fmt;
use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::frame::{MachineAddr, Mfn, Pfn};
use super::hypercall::{HypercallPage, number};
use super::ops::DOMID_SELF;

/// `MMU_NORMAL_PT_UPDATE`: checked `*ptr = val`, `ptr` a machine address.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `MMU_MACHPHYS_UPDATE`: `ptr` is a machine address in the frame whose M2P entry
/// becomes `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `MMU_PT_UPDATE_PRESERVE_AD`: as normal, but the entry's accessed/dirty bits are kept.
/// Only where Xen's CPUID base + 2 says so ([`super::cpuid::HypercallLeaf`]).
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// `MMU_PT_UPDATE_NO_TRANSLATE`: as normal, `val` not translated through the foreign
/// domain's tables.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

/// `MMUEXT_*` commands (`enum mmuext_cmd`).
pub mod mmuext {
    pub const PIN_L1_TABLE: u32 = 0;
    pub const PIN_L2_TABLE: u32 = 1;
    pub const PIN_L3_TABLE: u32 = 2;
    pub const PIN_L4_TABLE: u32 = 3;
    pub const UNPIN_TABLE: u32 = 4;
    pub const NEW_BASEPTR: u32 = 5;
    pub const TLB_FLUSH_LOCAL: u32 = 6;
    pub const INVLPG_LOCAL: u32 = 7;
    pub const TLB_FLUSH_MULTI: u32 = 8;
    pub const INVLPG_MULTI: u32 = 9;
    pub const TLB_FLUSH_ALL: u32 = 10;
    pub const INVLPG_ALL: u32 = 11;
    pub const FLUSH_CACHE: u32 = 12;
    pub const SET_LDT: u32 = 13;
    pub const NEW_USER_BASEPTR: u32 = 15;
    pub const CLEAR_PAGE: u32 = 16;
    pub const COPY_PAGE: u32 = 17;
    pub const FLUSH_CACHE_GLOBAL: u32 = 18;
    pub const MARK_SUPER: u32 = 19;
    pub const UNMARK_SUPER: u32 = 20;
}

/// `UVMF_NONE`: no TLB flush after `update_va_mapping`.
pub const UVMF_NONE: u64 = 0;
/// `UVMF_TLB_FLUSH`: flush entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// `UVMF_INVLPG`: flush only the one entry.
pub const UVMF_INVLPG: u64 = 2;
/// `UVMF_FLUSHTYPE_MASK`.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// `UVMF_MULTI`: flush the vCPUs in a bitmap whose pointer is ORed into the flags. Not
/// offered by [`UvmFlags`]: it needs a pointer that outlives the call.
pub const UVMF_MULTI: u64 = 0;
/// `UVMF_LOCAL`: `UVMF_MULTI` with a null bitmap, i.e. this vCPU only.
pub const UVMF_LOCAL: u64 = 0;
/// `UVMF_ALL`: flush on all vCPUs.
pub const UVMF_ALL: u64 = 1 << 2;

/// The flush requested with `update_va_mapping` (`enum uvm_flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UvmFlags(u64);

impl UvmFlags {
    /// No flush: the caller flushes later (or the old entry was not present).
    pub const NONE: Self = Self(UVMF_NONE);
    /// Invalidate the one page on this vCPU.
    pub const INVLPG_LOCAL: Self = Self(UVMF_INVLPG | UVMF_LOCAL);
    /// Flush this vCPU's whole TLB.
    pub const TLB_FLUSH_LOCAL: Self = Self(UVMF_TLB_FLUSH | UVMF_LOCAL);
    /// Invalidate the one page on every vCPU.
    pub const INVLPG_ALL: Self = Self(UVMF_INVLPG | UVMF_ALL);
    /// Flush every vCPU's whole TLB.
    pub const TLB_FLUSH_ALL: Self = Self(UVMF_TLB_FLUSH | UVMF_ALL);

    pub const fn bits(self) -> u64 {
        self.0
    }
}

/// `struct mmu_update` (xen/include/public/xen.h), 16 bytes. The low two bits of `ptr`
/// select the `MMU_*` command; the rest is a machine address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

const _: () = assert!(size_of::<MmuUpdate>() == 16);
const _: () = assert!(offset_of!(MmuUpdate, ptr) == 0);
const _: () = assert!(offset_of!(MmuUpdate, val) == 8);

impl MmuUpdate {
    /// `*pte = val`, where `pte` is the machine address of a page-table entry.
    ///
    /// # Panics
    /// If `pte` is not 8-byte aligned: entries always are, and a misaligned address would
    /// change the command bits.
    pub fn normal_pt_update(pte: MachineAddr, val: u64) -> Self {
        Self::pt_update(pte, MMU_NORMAL_PT_UPDATE, val)
    }

    /// As [`Self::normal_pt_update`], keeping the entry's accessed and dirty bits.
    pub fn pt_update_preserve_ad(pte: MachineAddr, val: u64) -> Self {
        Self::pt_update(pte, MMU_PT_UPDATE_PRESERVE_AD, val)
    }

    fn pt_update(pte: MachineAddr, command: u64, val: u64) -> Self {
        assert!(
            pte.as_u64().is_multiple_of(8),
            "page-table entry machine address {:#x} is not 8-byte aligned",
            pte.as_u64()
        );
        Self {
            ptr: pte.as_u64() | command,
            val,
        }
    }

    /// Records in the machine-to-physical table that machine frame `mfn` backs guest frame
    /// `pfn`.
    pub fn machphys_update(mfn: Mfn, pfn: Pfn) -> Self {
        Self {
            ptr: mfn.start_address().as_u64() | MMU_MACHPHYS_UPDATE,
            val: pfn.as_u64(),
        }
    }
}

/// `struct mmuext_op` (xen/include/public/xen.h), 24 bytes on x86_64.
///
/// The header's two unions are kept as raw words: `arg1` is `mfn` or `linear_addr`; `arg2`
/// is `nr_ents` (an `unsigned int` in the low half), `vcpumask` (a guest handle) or
/// `src_mfn`. The constructors fill the member each command reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// One of [`mmuext`].
    pub cmd: u32,
    pub arg1: u64,
    pub arg2: u64,
}

const _: () = assert!(size_of::<MmuextOp>() == 24);
const _: () = assert!(offset_of!(MmuextOp, cmd) == 0);
const _: () = assert!(offset_of!(MmuextOp, arg1) == 8);
const _: () = assert!(offset_of!(MmuextOp, arg2) == 16);

/// A page-table level for pinning, L1 (page table) to L4 (PML4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableLevel {
    L1,
    L2,
    L3,
    L4,
}

impl MmuextOp {
    const fn new(cmd: u32, arg1: u64, arg2: u64) -> Self {
        Self { cmd, arg1, arg2 }
    }

    /// Pins `mfn` as a page table of `level`: Xen validates it once and keeps it typed.
    pub const fn pin_table(level: TableLevel, mfn: Mfn) -> Self {
        let cmd = match level {
            TableLevel::L1 => mmuext::PIN_L1_TABLE,
            TableLevel::L2 => mmuext::PIN_L2_TABLE,
            TableLevel::L3 => mmuext::PIN_L3_TABLE,
            TableLevel::L4 => mmuext::PIN_L4_TABLE,
        };
        Self::new(cmd, mfn.as_u64(), 0)
    }

    pub const fn unpin_table(mfn: Mfn) -> Self {
        Self::new(mmuext::UNPIN_TABLE, mfn.as_u64(), 0)
    }

    /// Switches the kernel page-table base (CR3) to the L4 table `mfn`.
    pub const fn new_baseptr(mfn: Mfn) -> Self {
        Self::new(mmuext::NEW_BASEPTR, mfn.as_u64(), 0)
    }

    /// Sets the page-table base used in user mode (x86_64 PV keeps two).
    pub const fn new_user_baseptr(mfn: Mfn) -> Self {
        Self::new(mmuext::NEW_USER_BASEPTR, mfn.as_u64(), 0)
    }

    pub const fn tlb_flush_local() -> Self {
        Self::new(mmuext::TLB_FLUSH_LOCAL, 0, 0)
    }

    pub const fn invlpg_local(linear_addr: u64) -> Self {
        Self::new(mmuext::INVLPG_LOCAL, linear_addr, 0)
    }

    pub const fn tlb_flush_all() -> Self {
        Self::new(mmuext::TLB_FLUSH_ALL, 0, 0)
    }

    pub const fn invlpg_all(linear_addr: u64) -> Self {
        Self::new(mmuext::INVLPG_ALL, linear_addr, 0)
    }

    pub const fn flush_cache() -> Self {
        Self::new(mmuext::FLUSH_CACHE, 0, 0)
    }

    /// Loads an LDT of `nr_ents` entries at page-aligned `linear_addr`.
    pub const fn set_ldt(linear_addr: u64, nr_ents: u32) -> Self {
        Self::new(mmuext::SET_LDT, linear_addr, nr_ents as u64)
    }

    pub const fn clear_page(mfn: Mfn) -> Self {
        Self::new(mmuext::CLEAR_PAGE, mfn.as_u64(), 0)
    }

    pub const fn copy_page(dst: Mfn, src: Mfn) -> Self {
        Self::new(mmuext::COPY_PAGE, dst.as_u64(), src.as_u64())
    }

    pub const fn mark_super(mfn: Mfn) -> Self {
        Self::new(mmuext::MARK_SUPER, mfn.as_u64(), 0)
    }

    pub const fn unmark_super(mfn: Mfn) -> Self {
        Self::new(mmuext::UNMARK_SUPER, mfn.as_u64(), 0)
    }
}

/// A batch Xen stopped part-way: the first `done` requests took effect, the next failed
/// with `error` and the rest were not attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialBatch {
    pub error: XenError,
    pub done: usize,
}

impl fmt::Display for PartialBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} request(s) of the batch took effect",
            self.error, self.done
        )
    }
}

/// Xen reserves the top bit of the count of `mmu_update` / `mmuext_op` for its own
/// continuations (`MMU_UPDATE_PREEMPTED`, xen/arch/x86/include/asm/hypercall.h), so a
/// batch is split into calls of at most this many requests.
const MAX_BATCH: usize = (u32::MAX >> 1) as usize;

impl HypercallPage {
    /// Applies `updates` in order (`HYPERVISOR_mmu_update`, foreign domain `DOMID_SELF`)
    /// and returns how many were applied, all of them on success.
    ///
    /// # Safety
    /// The updates must leave every mapping the kernel relies on intact (the contract of
    /// writing these entries directly); Xen only refuses updates unsafe for Xen itself.
    pub unsafe fn mmu_update(&self, updates: &[MmuUpdate]) -> Result<usize, PartialBatch> {
        let mut total = 0;
        for chunk in updates.chunks(MAX_BATCH) {
            let mut done: u32 = 0;
            let args = [
                chunk.as_ptr() as u64,
                chunk.len() as u64,
                &raw mut done as u64,
                u64::from(DOMID_SELF),
                0,
            ];
            // SAFETY: Xen reads `chunk.len()` live entries and writes the live `done`;
            // what the updates do is the caller's contract.
            let result = check(unsafe { self.call(number::MMU_UPDATE, args) });
            // `done` comes from the host: never report more than was submitted.
            total += (done as usize).min(chunk.len());
            if let Err(error) = result {
                return Err(PartialBatch { error, done: total });
            }
        }
        Ok(total)
    }

    /// Runs `ops` in order (`HYPERVISOR_mmuext_op`, foreign domain `DOMID_SELF`) and
    /// returns how many ran, all of them on success.
    ///
    /// # Safety
    /// As for [`Self::mmu_update`]: pinning, unpinning and switching page-table bases
    /// change what memory the kernel can reach.
    pub unsafe fn mmuext_op(&self, ops: &[MmuextOp]) -> Result<usize, PartialBatch> {
        let mut total = 0;
        for chunk in ops.chunks(MAX_BATCH) {
            let mut done: u32 = 0;
            let args = [
                chunk.as_ptr() as u64,
                chunk.len() as u64,
                &raw mut done as u64,
                u64::from(DOMID_SELF),
                0,
            ];
            // SAFETY: Xen reads `chunk.len()` live ops and writes the live `done`; what the
            // ops do is the caller's contract.
            let result = check(unsafe { self.call(number::MMUEXT_OP, args) });
            total += (done as usize).min(chunk.len());
            if let Err(error) = result {
                return Err(PartialBatch { error, done: total });
            }
        }
        Ok(total)
    }

    /// Flushes this vCPU's TLB; a PV guest may not reload CR3 itself.
    pub fn tlb_flush_local(&self) -> Result<(), XenError> {
        // SAFETY: a flush changes no mapping.
        unsafe { self.mmuext_op(&[MmuextOp::tlb_flush_local()]) }
            .map(|_| ())
            .map_err(|partial| partial.error)
    }

    /// Invalidates the TLB entry of `linear_addr` on this vCPU.
    pub fn invlpg_local(&self, linear_addr: u64) -> Result<(), XenError> {
        // SAFETY: an invalidation changes no mapping.
        unsafe { self.mmuext_op(&[MmuextOp::invlpg_local(linear_addr)]) }
            .map(|_| ())
            .map_err(|partial| partial.error)
    }

    /// Sets the L1 entry that maps virtual address `va` in the current address space to
    /// `pte` (a machine-frame entry), then flushes as `flags` say
    /// (`HYPERVISOR_update_va_mapping`).
    ///
    /// # Safety
    /// As for [`Self::mmu_update`]: the new mapping must not break memory the kernel
    /// relies on.
    pub unsafe fn update_va_mapping(
        &self,
        va: u64,
        pte: u64,
        flags: UvmFlags,
    ) -> Result<(), XenError> {
        let args = [va, pte, flags.bits(), 0, 0];
        // SAFETY: no pointer arguments; the mapping's effect is the caller's contract.
        check(unsafe { self.call(number::UPDATE_VA_MAPPING, args) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, read_guest, write_guest};
    use std::vec::Vec;

    #[test]
    fn pt_update_puts_the_command_in_the_low_bits() {
        let u = MmuUpdate::normal_pt_update(MachineAddr::new(0x1234_5008), 0x8000_0000_0abc_d067);
        assert_eq!(u.ptr, 0x1234_5008);
        assert_eq!(u.val, 0x8000_0000_0abc_d067);
        let u = MmuUpdate::pt_update_preserve_ad(MachineAddr::new(0x1000), 1);
        assert_eq!(u.ptr, 0x1002);
        let u = MmuUpdate::machphys_update(Mfn::new(0xabc), Pfn::new(0x42));
        assert_eq!((u.ptr, u.val), (0xab_c001, 0x42));
    }

    #[test]
    #[should_panic(expected = "not 8-byte aligned")]
    fn a_misaligned_pte_address_is_a_bug_not_a_command() {
        let _ = MmuUpdate::normal_pt_update(MachineAddr::new(0x1001), 0);
    }

    #[test]
    fn mmuext_constructors_fill_the_right_union_members() {
        assert_eq!(
            MmuextOp::pin_table(TableLevel::L4, Mfn::new(9)),
            MmuextOp {
                cmd: 3,
                arg1: 9,
                arg2: 0
            }
        );
        assert_eq!(MmuextOp::new_baseptr(Mfn::new(9)).cmd, 5);
        assert_eq!(
            MmuextOp::invlpg_local(0xffff_8000_0000_1000).arg1,
            0xffff_8000_0000_1000
        );
        assert_eq!(
            MmuextOp::copy_page(Mfn::new(1), Mfn::new(2)),
            MmuextOp {
                cmd: 17,
                arg1: 1,
                arg2: 2
            }
        );
        assert_eq!(MmuextOp::set_ldt(0x5000, 3).arg2, 3);
        assert_eq!(MmuextOp::unmark_super(Mfn::new(4)).cmd, 20);
    }

    #[test]
    fn uvm_flags_match_the_header() {
        assert_eq!(UvmFlags::NONE.bits(), 0);
        assert_eq!(UvmFlags::INVLPG_LOCAL.bits(), 2);
        assert_eq!(UvmFlags::TLB_FLUSH_LOCAL.bits(), 1);
        assert_eq!(UvmFlags::INVLPG_ALL.bits(), 6);
        assert_eq!(UvmFlags::TLB_FLUSH_ALL.bits(), 5);
    }

    /// Plays Xen's `mmu_update`: applies entries until one has `val == u64::MAX`, which it
    /// refuses with EINVAL.
    fn xen_mmu_update(call: &crate::xen::fake_hypervisor::Call) -> i64 {
        assert_eq!(call.nr, number::MMU_UPDATE);
        let [reqs, count, pdone, foreigndom, _] = call.args;
        assert_eq!(foreigndom, 0x7ff0);
        let mut done = 0u32;
        let mut rc = 0;
        for i in 0..count {
            // SAFETY: the wrapper passed `count` live entries at `reqs`.
            let u: MmuUpdate = unsafe { read_guest(reqs + i * 16) };
            if u.val == u64::MAX {
                rc = -22;
                break;
            }
            done += 1;
        }
        // SAFETY: the wrapper passed a live `u32` for the done count.
        unsafe { write_guest(pdone, done) };
        rc
    }

    #[test]
    fn mmu_update_passes_the_batch_and_reports_all_done() {
        let fake = FakeXen::new(xen_mmu_update);
        let batch: Vec<_> = (0..3)
            .map(|i| MmuUpdate::normal_pt_update(MachineAddr::new(0x1000 + 8 * i), i))
            .collect();
        // SAFETY: the fake hypervisor changes no real mapping.
        assert_eq!(unsafe { fake.page().mmu_update(&batch) }, Ok(3));
        let calls = fake.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].args[0], batch.as_ptr() as u64);
        assert_eq!(calls[0].args[1], 3);
    }

    #[test]
    fn mmu_update_reports_the_error_and_how_many_took_effect() {
        let fake = FakeXen::new(xen_mmu_update);
        let mut batch = [MmuUpdate::normal_pt_update(MachineAddr::new(0x2000), 7); 5];
        batch[2].val = u64::MAX;
        // SAFETY: the fake hypervisor changes no real mapping.
        let got = unsafe { fake.page().mmu_update(&batch) };
        assert_eq!(
            got,
            Err(PartialBatch {
                error: XenError::Einval,
                done: 2
            })
        );
        assert_eq!(
            std::string::ToString::to_string(&got.unwrap_err()),
            "Xen error 22 (invalid argument) after 2 request(s) of the batch took effect"
        );
    }

    #[test]
    fn a_done_count_larger_than_the_batch_is_not_believed() {
        let fake = FakeXen::new(|call| {
            // SAFETY: the wrapper passed a live `u32` for the done count.
            unsafe { write_guest(call.args[2], 1000u32) };
            -14
        });
        // SAFETY: the fake hypervisor changes no real mapping.
        let got = unsafe { fake.page().mmuext_op(&[MmuextOp::tlb_flush_all()]) };
        assert_eq!(
            got,
            Err(PartialBatch {
                error: XenError::Efault,
                done: 1
            })
        );
    }

    #[test]
    fn mmuext_op_and_flush_helpers_use_mmuext_op() {
        let fake = FakeXen::new(|call| {
            assert_eq!(call.nr, number::MMUEXT_OP);
            assert_eq!(call.args[3], 0x7ff0);
            // SAFETY: the wrapper passed a live op array and a live done count.
            let op: MmuextOp = unsafe { read_guest(call.args[0]) };
            assert!(op.cmd == mmuext::TLB_FLUSH_LOCAL || op.cmd == mmuext::INVLPG_LOCAL);
            // SAFETY: as above.
            unsafe { write_guest(call.args[2], call.args[1] as u32) };
            0
        });
        assert_eq!(fake.page().tlb_flush_local(), Ok(()));
        assert_eq!(fake.page().invlpg_local(0x4000), Ok(()));
        let calls = fake.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].args[1], 1);
    }

    #[test]
    fn update_va_mapping_passes_va_pte_and_flags() {
        let fake = FakeXen::new(|_| 0);
        // SAFETY: the fake hypervisor changes no real mapping.
        let got = unsafe {
            fake.page().update_va_mapping(
                0xffff_8000_0010_0000,
                0x1234_5067,
                UvmFlags::INVLPG_LOCAL,
            )
        };
        assert_eq!(got, Ok(()));
        assert_eq!(
            fake.calls()[0].args,
            [0xffff_8000_0010_0000, 0x1234_5067, 2, 0, 0]
        );
        assert_eq!(fake.calls()[0].nr, number::UPDATE_VA_MAPPING);
    }
}
