//! The PV console ring (`struct xencons_interface`, xen/include/public/io/console.h).
//!
//! A domU's console is a shared page with two byte rings: `out` (guest → console backend)
//! and `in` (backend → guest). Each has a producer and a consumer index that only grow
//! (wrapping at 2^32); the byte for index `i` sits at `i & (size - 1)` (`MASK_XENCONS_IDX`).
//! The guest produces `out` and consumes `in`, and signals the backend through the console
//! event channel afterwards.
//!
//! The indices the backend writes are untrusted: if `prod - cons` exceeds the ring size the
//! ring is corrupt, and the functions here return an error instead of copying garbage (or
//! looping over 4 GiB of "data"). The ring logic is written against [`ConsoleRingMemory`]
//! so host tests can run it on plain memory.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, compiler_fence};

/// Size of the `in` ring (backend → guest).
pub const IN_RING_SIZE: usize = 1024;
/// Size of the `out` ring (guest → backend).
pub const OUT_RING_SIZE: usize = 2048;

/// `struct xencons_interface` (xen/include/public/io/console.h), 3088 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenconsInterface {
    pub r#in: [u8; IN_RING_SIZE],
    pub out: [u8; OUT_RING_SIZE],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

const _: () = assert!(size_of::<XenconsInterface>() == 3088);
const _: () = assert!(offset_of!(XenconsInterface, r#in) == 0);
const _: () = assert!(offset_of!(XenconsInterface, out) == 1024);
const _: () = assert!(offset_of!(XenconsInterface, in_cons) == 3072);
const _: () = assert!(offset_of!(XenconsInterface, in_prod) == 3076);
const _: () = assert!(offset_of!(XenconsInterface, out_cons) == 3080);
const _: () = assert!(offset_of!(XenconsInterface, out_prod) == 3084);
const _: () = assert!(IN_RING_SIZE.is_power_of_two() && OUT_RING_SIZE.is_power_of_two());

impl XenconsInterface {
    /// An empty ring.
    pub const fn zeroed() -> Self {
        Self {
            r#in: [0; IN_RING_SIZE],
            out: [0; OUT_RING_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
        }
    }
}

/// `MASK_XENCONS_IDX(idx, ring)`: the byte offset of free-running index `idx` in a ring of
/// `ring_size` bytes (a power of two).
pub const fn mask_xencons_idx(idx: u32, ring_size: usize) -> usize {
    idx as usize & (ring_size - 1)
}

/// The backend's indices make no sense: `prod - cons` is larger than the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptRing {
    /// `"in"` or `"out"`.
    pub ring: &'static str,
    pub prod: u32,
    pub cons: u32,
}

impl fmt::Display for CorruptRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Xen console {} ring is corrupt: prod {:#x} - cons {:#x} exceeds the ring size",
            self.ring, self.prod, self.cons
        )
    }
}

/// Access to a console ring's memory. Index reads and writes must be single (volatile)
/// accesses to the shared page; byte offsets are always in bounds.
pub trait ConsoleRingMemory {
    fn in_cons(&self) -> u32;
    fn in_prod(&self) -> u32;
    fn out_cons(&self) -> u32;
    fn out_prod(&self) -> u32;
    fn set_in_cons(&mut self, value: u32);
    fn set_out_prod(&mut self, value: u32);
    /// Byte `offset` (< [`IN_RING_SIZE`]) of the `in` ring.
    fn in_byte(&self, offset: usize) -> u8;
    /// Sets byte `offset` (< [`OUT_RING_SIZE`]) of the `out` ring.
    fn set_out_byte(&mut self, offset: usize, byte: u8);
}

/// Bytes queued in a ring, checked against its size.
fn filled(ring: &'static str, prod: u32, cons: u32, size: usize) -> Result<usize, CorruptRing> {
    let filled = prod.wrapping_sub(cons) as usize;
    if filled > size {
        return Err(CorruptRing { ring, prod, cons });
    }
    Ok(filled)
}

/// Free bytes in the `out` ring.
pub fn out_free_space(ring: &impl ConsoleRingMemory) -> Result<usize, CorruptRing> {
    let filled = filled("out", ring.out_prod(), ring.out_cons(), OUT_RING_SIZE)?;
    Ok(OUT_RING_SIZE - filled)
}

/// Copies as much of `data` into the `out` ring as fits and publishes it; returns the
/// number of bytes written (0 when the ring is full). The caller then notifies the
/// backend through the console event channel.
pub fn write_out(ring: &mut impl ConsoleRingMemory, data: &[u8]) -> Result<usize, CorruptRing> {
    let cons = ring.out_cons();
    let mut prod = ring.out_prod();
    // Read the indices before the bytes they describe (Linux hvc_xen's mb()).
    compiler_fence(Ordering::SeqCst);
    let free = OUT_RING_SIZE - filled("out", prod, cons, OUT_RING_SIZE)?;
    let count = free.min(data.len());
    for &byte in &data[..count] {
        ring.set_out_byte(mask_xencons_idx(prod, OUT_RING_SIZE), byte);
        prod = prod.wrapping_add(1);
    }
    // The bytes must be visible before the index that publishes them (Linux's wmb(); x86
    // does not reorder stores with stores, so a compiler barrier suffices).
    compiler_fence(Ordering::Release);
    ring.set_out_prod(prod);
    Ok(count)
}

/// Copies up to `buf.len()` bytes from the `in` ring into `buf` and frees them; returns
/// the number of bytes read (0 when the ring is empty).
pub fn read_in(ring: &mut impl ConsoleRingMemory, buf: &mut [u8]) -> Result<usize, CorruptRing> {
    let mut cons = ring.in_cons();
    let prod = ring.in_prod();
    compiler_fence(Ordering::SeqCst);
    let available = filled("in", prod, cons, IN_RING_SIZE)?;
    let count = available.min(buf.len());
    for slot in &mut buf[..count] {
        *slot = ring.in_byte(mask_xencons_idx(cons, IN_RING_SIZE));
        cons = cons.wrapping_add(1);
    }
    // Finish reading the bytes before handing their space back (Linux's mb()).
    compiler_fence(Ordering::SeqCst);
    ring.set_in_cons(cons);
    Ok(count)
}

/// Plain memory, for tests and for a backend's view.
impl ConsoleRingMemory for XenconsInterface {
    fn in_cons(&self) -> u32 {
        self.in_cons
    }
    fn in_prod(&self) -> u32 {
        self.in_prod
    }
    fn out_cons(&self) -> u32 {
        self.out_cons
    }
    fn out_prod(&self) -> u32 {
        self.out_prod
    }
    fn set_in_cons(&mut self, value: u32) {
        self.in_cons = value;
    }
    fn set_out_prod(&mut self, value: u32) {
        self.out_prod = value;
    }
    fn in_byte(&self, offset: usize) -> u8 {
        self.r#in[offset]
    }
    fn set_out_byte(&mut self, offset: usize, byte: u8) {
        self.out[offset] = byte;
    }
}

/// The live console page, shared with the backend: every access is volatile.
#[derive(Debug)]
pub struct XenconsRing {
    ptr: NonNull<XenconsInterface>,
}

// SAFETY: the page stays mapped (constructor contract) and every access is a volatile
// access to it; `&mut self` methods serialise the guest's own writes.
unsafe impl Send for XenconsRing {}

impl XenconsRing {
    /// # Safety
    /// `ptr` must point at the mapped console ring page (`HVM_PARAM_CONSOLE_PFN`, or
    /// `start_info.console.domU.mfn` under PV), readable and writable for as long as this
    /// value exists, and no other guest code may write it.
    pub const unsafe fn new(ptr: NonNull<XenconsInterface>) -> Self {
        Self { ptr }
    }

    fn page(&self) -> *mut XenconsInterface {
        self.ptr.as_ptr()
    }
}

impl ConsoleRingMemory for XenconsRing {
    fn in_cons(&self) -> u32 {
        // SAFETY: the page is mapped (constructor contract); the field is aligned.
        unsafe { (&raw const (*self.page()).in_cons).read_volatile() }
    }
    fn in_prod(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (&raw const (*self.page()).in_prod).read_volatile() }
    }
    fn out_cons(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (&raw const (*self.page()).out_cons).read_volatile() }
    }
    fn out_prod(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (&raw const (*self.page()).out_prod).read_volatile() }
    }
    fn set_in_cons(&mut self, value: u32) {
        // SAFETY: the page is mapped writable (constructor contract).
        unsafe { (&raw mut (*self.page()).in_cons).write_volatile(value) }
    }
    fn set_out_prod(&mut self, value: u32) {
        // SAFETY: as above.
        unsafe { (&raw mut (*self.page()).out_prod).write_volatile(value) }
    }
    fn in_byte(&self, offset: usize) -> u8 {
        assert!(offset < IN_RING_SIZE);
        // SAFETY: the page is mapped and `offset` is inside the `in` array.
        unsafe { (&raw const (*self.page()).r#in[offset]).read_volatile() }
    }
    fn set_out_byte(&mut self, offset: usize, byte: u8) {
        assert!(offset < OUT_RING_SIZE);
        // SAFETY: the page is mapped writable and `offset` is inside the `out` array.
        unsafe { (&raw mut (*self.page()).out[offset]).write_volatile(byte) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::string::ToString;
    use std::vec::Vec;

    fn ring() -> Box<XenconsInterface> {
        Box::new(XenconsInterface::zeroed())
    }

    /// Drains the `out` ring as the backend would.
    fn backend_drain(r: &mut XenconsInterface) -> Vec<u8> {
        let mut got = Vec::new();
        while r.out_cons != r.out_prod {
            got.push(r.out[mask_xencons_idx(r.out_cons, OUT_RING_SIZE)]);
            r.out_cons = r.out_cons.wrapping_add(1);
        }
        got
    }

    #[test]
    fn mask_keeps_the_low_bits() {
        assert_eq!(mask_xencons_idx(2049, OUT_RING_SIZE), 1);
        assert_eq!(mask_xencons_idx(u32::MAX, IN_RING_SIZE), 1023);
    }

    #[test]
    fn write_then_drain_round_trips() {
        let mut r = ring();
        assert_eq!(out_free_space(&*r), Ok(2048));
        assert_eq!(write_out(&mut *r, b"hello\n"), Ok(6));
        assert_eq!(out_free_space(&*r), Ok(2042));
        assert_eq!(backend_drain(&mut r), b"hello\n");
    }

    #[test]
    fn writes_wrap_around_the_ring_end() {
        let mut r = ring();
        r.out_cons = 2040;
        r.out_prod = 2040;
        assert_eq!(write_out(&mut *r, b"0123456789abcdef"), Ok(16));
        assert_eq!(&r.out[2040..], b"01234567");
        assert_eq!(&r.out[..8], b"89abcdef");
        assert_eq!(backend_drain(&mut r), b"0123456789abcdef");
    }

    #[test]
    fn indices_wrap_at_2_pow_32() {
        let mut r = ring();
        r.out_cons = u32::MAX - 2;
        r.out_prod = u32::MAX - 2;
        assert_eq!(write_out(&mut *r, b"abcdef"), Ok(6));
        assert_eq!(r.out_prod, 3);
        assert_eq!(out_free_space(&*r), Ok(2042));
        assert_eq!(backend_drain(&mut r), b"abcdef");
    }

    #[test]
    fn a_full_ring_takes_what_fits_then_nothing() {
        let mut r = ring();
        let data = [b'x'; 3000];
        assert_eq!(write_out(&mut *r, &data), Ok(2048));
        assert_eq!(out_free_space(&*r), Ok(0));
        assert_eq!(write_out(&mut *r, b"more"), Ok(0));
        assert_eq!(backend_drain(&mut r).len(), 2048);
        assert_eq!(write_out(&mut *r, b"more"), Ok(4));
    }

    #[test]
    fn bad_out_indices_are_an_error_and_write_nothing() {
        let mut r = ring();
        r.out_cons = 0;
        r.out_prod = 4096; // 4096 bytes "queued" in a 2048-byte ring
        let got = write_out(&mut *r, b"text");
        assert_eq!(
            got,
            Err(CorruptRing {
                ring: "out",
                prod: 4096,
                cons: 0
            })
        );
        assert_eq!(r.out_prod, 4096);
        assert!(r.out.iter().all(|&b| b == 0));
        // A consumer ahead of the producer is the same nonsense, seen modulo 2^32.
        r.out_cons = 10;
        r.out_prod = 5;
        assert!(out_free_space(&*r).is_err());
        assert!(got.unwrap_err().to_string().contains("out ring is corrupt"));
    }

    #[test]
    fn read_in_takes_what_the_backend_produced_with_wrap() {
        let mut r = ring();
        r.in_cons = 1020;
        r.in_prod = 1028;
        r.r#in[1020..].copy_from_slice(b"abcd");
        r.r#in[..4].copy_from_slice(b"efgh");
        let mut buf = [0; 5];
        assert_eq!(read_in(&mut *r, &mut buf), Ok(5));
        assert_eq!(&buf, b"abcde");
        assert_eq!(r.in_cons, 1025);
        let mut buf = [0; 16];
        assert_eq!(read_in(&mut *r, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"fgh");
        assert_eq!(read_in(&mut *r, &mut buf), Ok(0));
    }

    #[test]
    fn bad_in_indices_are_an_error_not_a_huge_copy() {
        let mut r = ring();
        r.in_cons = 0;
        r.in_prod = 0x8000_0000;
        let mut buf = [0; 4096];
        assert_eq!(
            read_in(&mut *r, &mut buf),
            Err(CorruptRing {
                ring: "in",
                prod: 0x8000_0000,
                cons: 0
            })
        );
        assert_eq!(r.in_cons, 0);
        // Exactly full is fine.
        r.in_prod = 1024;
        assert_eq!(read_in(&mut *r, &mut buf), Ok(1024));
    }

    #[test]
    fn the_volatile_ring_behaves_like_plain_memory() {
        let mut page = ring();
        page.r#in[..2].copy_from_slice(b"ok");
        page.in_prod = 2;
        // SAFETY: the boxed page outlives `live` and is only accessed through it meanwhile.
        let mut live = unsafe { XenconsRing::new(NonNull::from(&mut *page)) };
        assert_eq!(write_out(&mut live, b"hi"), Ok(2));
        let mut buf = [0; 4];
        assert_eq!(read_in(&mut live, &mut buf), Ok(2));
        assert_eq!(&buf[..2], b"ok");
        assert_eq!(backend_drain(&mut page), b"hi");
        assert_eq!(page.in_cons, 2);
    }
}
