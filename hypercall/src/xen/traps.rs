//! Exceptions for a 64-bit PV kernel: the virtual IDT (`HYPERVISOR_set_trap_table`), the
//! kernel stack for entries from user mode (`HYPERVISOR_stack_switch`) and the way back
//! (`HYPERVISOR_iret`). ABI from Xen 4.17 xen/include/public/arch-x86/xen.h (`trap_info`)
//! and arch-x86/xen-x86_64.h (selectors, `iret_context`, `VGCF_in_syscall`).
//!
//! A PV kernel runs in ring 3 and owns no IDT: the CPU delivers every exception to Xen,
//! which "bounces" it to the handler the kernel named in its trap table.
//!
//! # The frame a handler finds
//!
//! Xen enters a handler (and the event and failsafe callbacks of [`super::callback`]) on the
//! kernel stack with this frame, lowest address (the handler's `rsp`) first
//! (`create_bounce_frame` in xen/arch/x86/x86_64/entry.S):
//!
//! | offset | word |
//! |---|---|
//! | 0 | `rcx` ([`BOUNCE_FRAME_RCX_OFFSET`]) |
//! | 8 | `r11` ([`BOUNCE_FRAME_R11_OFFSET`]) |
//! | 16 | error code, only for vectors that have one |
//! | 16 or 24 | `rip`, `cs`, `rflags`, `rsp`, `ss`: the frame the CPU would push |
//!
//! Xen returns to the guest with `sysret`, which clobbers `rcx` and `r11`, so it saves
//! their interrupted values on top of the hardware-like frame: `pop %rcx; pop %r11` at
//! the handler's start leaves exactly what a bare-metal handler expects. In the `cs` word,
//! the selector's RPL is 0 if the kernel was interrupted and 3 if user code was; bits
//! 32 to 39 hold the event upcall mask as it was before entry, and `rflags.IF` is its
//! inverse. The failsafe callback's frame has `ds`, `es`, `fs`, `gs` between `r11` and
//! `rip` (`load_segments`, xen/arch/x86/domain.c).
//!
//! # Returning: `HYPERVISOR_iret`
//!
//! `iret` from ring 3 cannot restore the upcall mask, so the return is a hypercall that
//! never returns: the kernel restores `rcx` and `r11` to the values to resume with, pushes
//! a flags word (0 or [`VGCF_IN_SYSCALL`]) below the hardware-like frame and *jumps* to
//! hypercall page + [`iret_entry_offset`]. That stub pushes `rcx`, `r11` and `rax`, so Xen
//! finds an [`IretContext`] at the stack pointer (`pv_ring3_init_hypercall_page`,
//! xen/arch/x86/pv/hypercall.c). Xen then resumes at `cs:rip` with `rsp`, ORs RPL 3 into
//! `cs` and `ss`, sets the upcall mask to `!rflags.IF` and, unless the flags word has
//! [`VGCF_IN_SYSCALL`], restores `rcx` and `r11` (`do_iret`, xen/arch/x86/pv/iret.c).
//! The header also allows returning to the kernel itself without Xen
//! (`orb $3, 8(%rsp); iretq`), which leaves the upcall mask as it is.

use core::fmt;
use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `FLAT_KERNEL_CS64`: Xen's flat 64-bit code segment for the kernel (GDT index 262, RPL
/// 3: a PV kernel runs in ring 3), present in every PV GDT.
pub const FLAT_KERNEL_CS64: u16 = 0xe033;
/// `FLAT_KERNEL_SS64`: the kernel's flat stack segment (GDT index 261).
pub const FLAT_KERNEL_SS64: u16 = 0xe02b;
/// `FLAT_KERNEL_DS64`: the null selector, as long mode ignores data segments.
pub const FLAT_KERNEL_DS64: u16 = 0;

/// [`TrapInfo::flags`] bits 0..2 (`TI_GET_DPL`): the least privileged mode that may raise
/// the vector with `int n`. On x86_64 levels 1 and 2 both mean the kernel, 3 everyone, 0
/// no one; exceptions the CPU raises are delivered whatever the level.
pub const TI_DPL_MASK: u8 = 0b11;
/// [`TrapInfo::flags`] bit 2 (`TI_SET_IF`): mask event upcalls on entry, as an interrupt
/// gate clears `IF`; the frame's `rflags.IF` records the mask from before.
pub const TI_MASK_EVENTS: u8 = 1 << 2;

/// The most entries [`HypercallPage::set_trap_table`] takes: one per vector.
pub const MAX_TRAP_TABLE_ENTRIES: usize = 256;

/// `VGCF_in_syscall` (arch-x86/xen-x86_64.h) in the flags word of an [`IretContext`]:
/// return as `sysret` would, restoring only `rax`, `rip`, `rflags` and `rsp`.
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// Where the bounce frame keeps the interrupted `rcx`: at the handler's `rsp`.
pub const BOUNCE_FRAME_RCX_OFFSET: usize = 0;
/// Where the bounce frame keeps the interrupted `r11`.
pub const BOUNCE_FRAME_R11_OFFSET: usize = 8;

/// `struct trap_info` (xen/include/public/arch-x86/xen.h), x86_64: 16 bytes. One entry of
/// the virtual IDT.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapInfo {
    /// The exception vector.
    pub vector: u8,
    /// [`TI_DPL_MASK`] and [`TI_MASK_EVENTS`].
    pub flags: u8,
    /// The handler's code selector, normally [`FLAT_KERNEL_CS64`].
    pub cs: u16,
    /// The handler's address; 0 ends the list Xen reads.
    pub address: u64,
}

const _: () = assert!(size_of::<TrapInfo>() == 16);
const _: () = assert!(offset_of!(TrapInfo, vector) == 0);
const _: () = assert!(offset_of!(TrapInfo, flags) == 1);
const _: () = assert!(offset_of!(TrapInfo, cs) == 2);
const _: () = assert!(offset_of!(TrapInfo, address) == 8);

impl TrapInfo {
    /// The entry that ends the list Xen reads.
    const END: Self = Self {
        vector: 0,
        flags: 0,
        cs: 0,
        address: 0,
    };

    /// Sends `vector` to `handler` in the kernel's code segment.
    ///
    /// `dpl` is as in [`TI_DPL_MASK`]; `mask_events` gives interrupt-gate semantics.
    ///
    /// # Panics
    /// If `dpl` is above 3.
    pub const fn kernel(vector: u8, handler: u64, dpl: u8, mask_events: bool) -> Self {
        assert!(dpl <= TI_DPL_MASK, "a trap's privilege level is 0..=3");
        let mask = if mask_events { TI_MASK_EVENTS } else { 0 };
        Self {
            vector,
            flags: dpl | mask,
            cs: FLAT_KERNEL_CS64,
            address: handler,
        }
    }
}

/// `struct iret_context` (xen/include/public/arch-x86/xen-x86_64.h), 72 bytes: what
/// `HYPERVISOR_iret` reads at the stack pointer, top of stack first. The kernel pushes
/// `flags` to `ss`; the hypercall stub pushes `rcx`, `r11` and `rax`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IretContext {
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// 0 or [`VGCF_IN_SYSCALL`].
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<IretContext>() == 72);
const _: () = assert!(offset_of!(IretContext, rax) == 0);
const _: () = assert!(offset_of!(IretContext, r11) == 8);
const _: () = assert!(offset_of!(IretContext, rcx) == 16);
const _: () = assert!(offset_of!(IretContext, flags) == 24);
const _: () = assert!(offset_of!(IretContext, rip) == 32);
const _: () = assert!(offset_of!(IretContext, cs) == 40);
const _: () = assert!(offset_of!(IretContext, rflags) == 48);
const _: () = assert!(offset_of!(IretContext, rsp) == 56);
const _: () = assert!(offset_of!(IretContext, ss) == 64);

/// The offset of the `HYPERVISOR_iret` stub in the hypercall page, for a `jmp` (see the
/// module documentation): every stub is 32 bytes.
pub const fn iret_entry_offset() -> usize {
    number::IRET as usize * 32
}

/// A trap table [`HypercallPage::set_trap_table`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapTableError {
    /// More entries than vectors: some vector is listed twice.
    TooLong { len: usize },
    /// Entry `index` has handler address 0, which would end Xen's list early and silently
    /// drop the entries after it.
    ZeroAddress { index: usize, vector: u8 },
    /// Entry `index` has a non-canonical handler address. Xen refuses it with `EINVAL`
    /// only after installing the entries before it.
    NonCanonical {
        index: usize,
        vector: u8,
        address: u64,
    },
    /// Xen refused the table.
    Xen(XenError),
}

impl fmt::Display for TrapTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLong { len } => write!(
                f,
                "trap table has {len} entries, more than the {MAX_TRAP_TABLE_ENTRIES} vectors"
            ),
            Self::ZeroAddress { index, vector } => write!(
                f,
                "trap table entry {index} (vector {vector}) has handler address 0, \
                 which Xen reads as the end of the table"
            ),
            Self::NonCanonical {
                index,
                vector,
                address,
            } => write!(
                f,
                "trap table entry {index} (vector {vector}) has non-canonical handler \
                 address {address:#x}"
            ),
            Self::Xen(error) => write!(f, "Xen refused the trap table: {error}"),
        }
    }
}

/// Whether `address` is canonical with 48-bit virtual addresses (bits 63..47 equal).
const fn is_canonical(address: u64) -> bool {
    (((address << 16) as i64) >> 16) as u64 == address
}

/// Checks everything Xen would refuse part-way, so the table is installed whole or not at
/// all.
fn check_trap_table(table: &[TrapInfo]) -> Result<(), TrapTableError> {
    if table.len() > MAX_TRAP_TABLE_ENTRIES {
        return Err(TrapTableError::TooLong { len: table.len() });
    }
    for (index, entry) in table.iter().enumerate() {
        let vector = entry.vector;
        if entry.address == 0 {
            return Err(TrapTableError::ZeroAddress { index, vector });
        }
        if !is_canonical(entry.address) {
            return Err(TrapTableError::NonCanonical {
                index,
                vector,
                address: entry.address,
            });
        }
    }
    Ok(())
}

impl HypercallPage {
    /// Installs `table` in this vCPU's virtual IDT (`HYPERVISOR_set_trap_table`). Vectors
    /// not in `table` keep their handlers; a vector listed twice gets the later one.
    ///
    /// Xen wants a list ended by an entry with address 0, so `table` is copied, ended,
    /// into a 4 KiB stack buffer; it takes no terminator itself. A table Xen would apply
    /// only in part (see [`TrapTableError`]) is refused before the call.
    ///
    /// # Safety
    /// Every handler must be kernel code that handles its vector on the frame described in
    /// the module documentation: from now on, faults on this vCPU go there.
    pub unsafe fn set_trap_table(&self, table: &[TrapInfo]) -> Result<(), TrapTableError> {
        check_trap_table(table)?;
        let mut list = [TrapInfo::END; MAX_TRAP_TABLE_ENTRIES + 1];
        list[..table.len()].copy_from_slice(table);
        let args = [list.as_ptr() as u64, 0, 0, 0, 0];
        // SAFETY: Xen reads the live list up to its terminator, which the buffer's spare
        // entry guarantees; where faults go is the caller's contract.
        check(unsafe { self.call(number::SET_TRAP_TABLE, args) }).map_err(TrapTableError::Xen)?;
        Ok(())
    }

    /// Sets the stack Xen switches to when an exception, event or system call arrives
    /// while this vCPU runs user code (`HYPERVISOR_stack_switch`, the TSS's `ss:rsp` of a
    /// PV kernel). Xen aligns `rsp` down to 16 bytes; an entry from kernel mode stays on
    /// the current stack.
    ///
    /// # Safety
    /// `rsp` must be the top of a mapped, writable kernel stack reserved for such entries
    /// on this vCPU, and `ss` normally [`FLAT_KERNEL_SS64`]: Xen crashes the domain if it
    /// cannot write a frame there.
    pub unsafe fn stack_switch(&self, ss: u16, rsp: u64) -> Result<(), XenError> {
        let args = [u64::from(ss), rsp, 0, 0, 0];
        // SAFETY: no pointer is passed; the stack's validity is the caller's contract.
        check(unsafe { self.call(number::STACK_SWITCH, args) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, read_guest};
    use std::string::ToString;
    use std::vec::Vec;

    /// Plays Xen's `set_trap_table`: reads entries up to the terminator, as
    /// `do_set_trap_table` (xen/arch/x86/pv/callback.c) does.
    fn read_list(mut addr: u64) -> Vec<TrapInfo> {
        let mut entries = Vec::new();
        loop {
            // SAFETY: the wrapper passed a live, terminated list.
            let entry: TrapInfo = unsafe { read_guest(addr) };
            if entry.address == 0 {
                return entries;
            }
            entries.push(entry);
            addr += 16;
        }
    }

    #[test]
    fn kernel_entries_use_the_flat_kernel_segment_and_the_header_flag_bits() {
        let page_fault = TrapInfo::kernel(14, 0xffff_ffff_8000_1000, 0, true);
        assert_eq!(
            page_fault,
            TrapInfo {
                vector: 14,
                flags: 4,
                cs: 0xe033,
                address: 0xffff_ffff_8000_1000
            }
        );
        assert_eq!(TrapInfo::kernel(3, 1, 3, false).flags, 3);
    }

    #[test]
    #[should_panic(expected = "0..=3")]
    fn a_privilege_level_above_three_is_a_bug() {
        let _ = TrapInfo::kernel(3, 1, 4, false);
    }

    #[test]
    fn the_table_reaches_xen_terminated_and_unchanged() {
        let table: Vec<_> = (0..32u8)
            .map(|v| TrapInfo::kernel(v, 0xffff_ffff_8000_0000 + u64::from(v) * 16, 0, v == 2))
            .collect();
        let expected = table.clone();
        let fake = FakeXen::new(move |call| {
            assert_eq!(call.nr, number::SET_TRAP_TABLE);
            assert_eq!(read_list(call.args[0]), expected);
            0
        });
        // SAFETY: the fake hypervisor installs nothing.
        assert_eq!(unsafe { fake.page().set_trap_table(&table) }, Ok(()));
        assert_eq!(fake.calls().len(), 1);
    }

    #[test]
    fn a_full_table_of_256_vectors_fits_and_an_empty_one_is_just_the_terminator() {
        let table: Vec<_> = (0..=255u8)
            .map(|v| TrapInfo::kernel(v, 0x1000 + u64::from(v), 0, false))
            .collect();
        let mut lengths = [256, 0].into_iter();
        let fake = FakeXen::new(move |call| {
            assert_eq!(Some(read_list(call.args[0]).len()), lengths.next());
            0
        });
        // SAFETY: the fake hypervisor installs nothing.
        assert_eq!(unsafe { fake.page().set_trap_table(&table) }, Ok(()));
        // SAFETY: as above.
        assert_eq!(unsafe { fake.page().set_trap_table(&[]) }, Ok(()));
        assert_eq!(fake.calls().len(), 2);
    }

    #[test]
    fn tables_xen_would_apply_in_part_are_refused_before_the_call() {
        let fake = FakeXen::new(|_| panic!("an invalid table reached Xen"));
        let ok = TrapInfo::kernel(0, 0x1000, 0, false);
        let too_long = [ok; MAX_TRAP_TABLE_ENTRIES + 1];
        // SAFETY: nothing reaches the (fake) hypervisor.
        let got = unsafe { fake.page().set_trap_table(&too_long) };
        assert_eq!(got, Err(TrapTableError::TooLong { len: 257 }));

        let zero = [ok, TrapInfo::kernel(6, 0, 0, false)];
        // SAFETY: as above.
        let got = unsafe { fake.page().set_trap_table(&zero) };
        assert_eq!(
            got,
            Err(TrapTableError::ZeroAddress {
                index: 1,
                vector: 6
            })
        );
        assert!(got.unwrap_err().to_string().contains("end of the table"));

        let wild = [TrapInfo::kernel(13, 0x0000_8000_0000_0000, 0, false)];
        // SAFETY: as above.
        let got = unsafe { fake.page().set_trap_table(&wild) };
        assert_eq!(
            got,
            Err(TrapTableError::NonCanonical {
                index: 0,
                vector: 13,
                address: 0x0000_8000_0000_0000
            })
        );
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn xen_refusing_the_table_is_reported() {
        let fake = FakeXen::new(|_| -14);
        // SAFETY: the fake hypervisor installs nothing.
        let got = unsafe {
            fake.page()
                .set_trap_table(&[TrapInfo::kernel(1, 8, 0, false)])
        };
        assert_eq!(got, Err(TrapTableError::Xen(XenError::Efault)));
        assert_eq!(
            got.unwrap_err().to_string(),
            "Xen refused the trap table: Xen error 14 (bad address)"
        );
    }

    #[test]
    fn canonical_means_bits_63_to_47_agree() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(is_canonical(u64::MAX));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xfff7_ffff_ffff_ffff));
    }

    #[test]
    fn stack_switch_passes_selector_and_stack() {
        let fake = FakeXen::new(|_| 0);
        // SAFETY: the fake hypervisor switches nothing.
        let got = unsafe {
            fake.page()
                .stack_switch(FLAT_KERNEL_SS64, 0xffff_8880_0001_0000)
        };
        assert_eq!(got, Ok(()));
        let call = fake.calls()[0];
        assert_eq!(call.nr, number::STACK_SWITCH);
        assert_eq!(call.args, [0xe02b, 0xffff_8880_0001_0000, 0, 0, 0]);
    }

    #[test]
    fn the_iret_stub_is_slot_23() {
        assert_eq!(iret_entry_offset(), 736);
        assert_eq!(VGCF_IN_SYSCALL, 0x100);
    }
}
