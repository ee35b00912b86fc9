//! Batches of hypercalls in one guest exit (`HYPERVISOR_multicall`,
//! xen/include/public/xen.h).
//!
//! Xen runs the entries in order and stores each one's return value in its `result`; an
//! entry that fails does not stop the others. Only a failure of the multicall itself
//! (e.g. an unreadable list) stops it, and then the results are not to be trusted. Xen
//! debug builds overwrite the rest of every entry after running it ("the caller must depend
//! only on the 'result' field on return", xen/common/multicall.c), so an entry is built
//! again for every batch.

use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};
use super::mmu::UvmFlags;

/// `struct multicall_entry` (xen/include/public/xen.h), 64 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntry {
    /// The hypercall number (`__HYPERVISOR_*`, [`number`]).
    pub op: u64,
    /// Written by Xen: the hypercall's return value.
    pub result: u64,
    pub args: [u64; 6],
}

const _: () = assert!(size_of::<MulticallEntry>() == 64);
const _: () = assert!(offset_of!(MulticallEntry, op) == 0);
const _: () = assert!(offset_of!(MulticallEntry, result) == 8);
const _: () = assert!(offset_of!(MulticallEntry, args) == 16);

impl MulticallEntry {
    /// An entry for hypercall `op` with `args`.
    pub const fn new(op: u32, args: [u64; 6]) -> Self {
        Self {
            op: op as u64,
            result: 0,
            args,
        }
    }

    /// `update_va_mapping(va, pte, flags)` as an entry: Linux batches PV page-table
    /// updates this way.
    pub const fn update_va_mapping(va: u64, pte: u64, flags: UvmFlags) -> Self {
        Self::new(number::UPDATE_VA_MAPPING, [va, pte, flags.bits(), 0, 0, 0])
    }

    /// This entry's outcome, once the multicall ran.
    pub fn result(&self) -> Result<u64, XenError> {
        check(self.result as i64)
    }
}

impl HypercallPage {
    /// Runs `entries` as one multicall and returns each entry's outcome, in order.
    ///
    /// `Err` means the multicall itself failed, e.g. `EFAULT` for an unreadable list or
    /// `EINVAL` when called from within a multicall; then no entry's result is reliable.
    ///
    /// # Safety
    /// Every entry must be a hypercall that is safe to make with its arguments: pointers
    /// must point at live buffers of the size that hypercall reads or writes, and its effect
    /// must be one the caller could have asked for with that hypercall's own wrapper.
    pub unsafe fn multicall<'a>(
        &self,
        entries: &'a mut [MulticallEntry],
    ) -> Result<impl ExactSizeIterator<Item = Result<u64, XenError>> + 'a, XenError> {
        // `nr_calls` is a `uint32_t`; Xen resumes long lists itself.
        for chunk in entries.chunks_mut(u32::MAX as usize) {
            let args = [chunk.as_mut_ptr() as u64, chunk.len() as u64, 0, 0, 0];
            // SAFETY: Xen reads and writes the live entries; the entries' own hypercalls are
            // the caller's contract.
            check(unsafe { self.call(number::MULTICALL, args) })?;
        }
        Ok(entries.iter().map(MulticallEntry::result))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, read_guest, write_guest};
    use std::vec::Vec;

    #[test]
    fn entry_results_decode_as_hypercall_results() {
        let mut entry = MulticallEntry::new(number::XEN_VERSION, [0; 6]);
        entry.result = 0x4_0011;
        assert_eq!(entry.result(), Ok(0x4_0011));
        entry.result = (-22i64) as u64;
        assert_eq!(entry.result(), Err(XenError::Einval));
    }

    #[test]
    fn update_va_mapping_entry_matches_the_direct_hypercall() {
        let e = MulticallEntry::update_va_mapping(0x1000, 0x2067, UvmFlags::INVLPG_ALL);
        assert_eq!(e.op, 14);
        assert_eq!(e.args, [0x1000, 0x2067, 6, 0, 0, 0]);
    }

    /// Plays Xen: every entry's result is its first argument negated when the op is 17,
    /// else 0.
    fn xen_multicall(call: &crate::xen::fake_hypervisor::Call) -> i64 {
        assert_eq!(call.nr, number::MULTICALL);
        let [list, n, ..] = call.args;
        for i in 0..n {
            let addr = list + i * 64;
            // SAFETY: the wrapper passed `n` live entries at `list`.
            let mut e: MulticallEntry = unsafe { read_guest(addr) };
            e.result = if e.op == 17 {
                e.args[0].wrapping_neg()
            } else {
                0
            };
            // Like a Xen debug build: everything but `result` is clobbered.
            e.op = 0xaaaa_aaaa_aaaa_aaaa;
            // SAFETY: as above.
            unsafe { write_guest(addr, e) };
        }
        0
    }

    #[test]
    fn multicall_returns_each_entry_outcome_in_order() {
        let fake = FakeXen::new(xen_multicall);
        let mut entries = [
            MulticallEntry::new(17, [38, 0, 0, 0, 0, 0]),
            MulticallEntry::update_va_mapping(0x1000, 0x2067, UvmFlags::NONE),
            MulticallEntry::new(17, [0, 0, 0, 0, 0, 0]),
        ];
        // SAFETY: the fake hypervisor runs no real hypercall.
        let results: Vec<_> = unsafe { fake.page().multicall(&mut entries) }
            .unwrap()
            .collect();
        assert_eq!(results, [Err(XenError::Enosys), Ok(0), Ok(0)]);
        assert_eq!(fake.calls()[0].args[1], 3);
    }

    #[test]
    fn a_failed_multicall_is_an_error_for_the_whole_batch() {
        let fake = FakeXen::new(|_| -14);
        let mut entries = [MulticallEntry::new(17, [0; 6])];
        // SAFETY: the fake hypervisor runs no real hypercall.
        let got = unsafe { fake.page().multicall(&mut entries) }.map(|r| r.count());
        assert_eq!(got, Err(XenError::Efault));
    }
}
