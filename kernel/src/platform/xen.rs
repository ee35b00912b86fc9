//! Running on Xen: the hypercall page, the console, shared_info.

use core::fmt;
use core::ptr::NonNull;

use janus_hypercall::cpuid::{Detection, Hypervisor, cpuid};
use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::hypercall::{HypercallPage, install_hypercall_page};
use janus_hypercall::xen::ops::Version;
use janus_hypercall::xen::shared_info::{SharedInfo, SharedInfoRef};
use spin::Once;
use x86_64::PhysAddr;

use crate::mm::kernel_space;
use crate::mm::layout::phys_to_virt;

core::arch::global_asm!(
    r#"
    .section .text.hypercall_page, "ax"
    .balign 4096
    .global janus_hypercall_page
janus_hypercall_page:
    /* ud2 until Xen fills it, so a call before installation faults loudly. */
    .fill 2048, 2, 0x0b0f
    "#
);

unsafe extern "C" {
    static janus_hypercall_page: u8;
}

static HYPERCALLS: Once<HypercallPage> = Once::new();
static SHARED_INFO: Once<SharedInfoRef> = Once::new();

/// What the kernel learned about Xen at boot.
#[derive(Clone, Copy, Debug)]
pub struct Xen {
    pub version: Version,
    pub hypercalls: &'static HypercallPage,
}

/// The hypercall page, once installed.
pub fn hypercalls() -> Option<&'static HypercallPage> {
    HYPERCALLS.get()
}

/// The shared info page, once mapped.
pub fn shared_info() -> Option<SharedInfoRef> {
    SHARED_INFO.get().copied()
}

/// Gives a frame to Xen's shared info page (XENMEM_add_to_physmap): Xen replaces the RAM at
/// that guest frame, which the identity map already covers, so no new mapping is needed.
pub fn map_shared_info(xen: &Xen) -> Result<SharedInfoRef, MapSharedInfoError> {
    let frame = kernel_space::with(|space| space.frames.allocate())
        .ok_or(MapSharedInfoError::OutOfFrames)?;
    let paddr = frame.start_address();
    xen.hypercalls
        .map_shared_info(paddr.as_u64() / 4096)
        .map_err(MapSharedInfoError::Xen)?;
    let page = NonNull::new(phys_to_virt(paddr).as_mut_ptr::<SharedInfo>())
        .ok_or(MapSharedInfoError::OutOfFrames)?;
    // SAFETY: the frame is the kernel's for good (never freed), identity-mapped, and Xen
    // now backs it with this domain's shared info page.
    let shared = unsafe { SharedInfoRef::new(page) };
    Ok(*SHARED_INFO.call_once(|| shared))
}

#[derive(Debug)]
pub enum MapSharedInfoError {
    OutOfFrames,
    Xen(XenError),
}

impl fmt::Display for MapSharedInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFrames => f.write_str("no free frame for the shared info page"),
            Self::Xen(e) => write!(f, "XENMEM_add_to_physmap(shared_info) failed: {e}"),
        }
    }
}

/// Installs the hypercall page through the MSR that CPUID leaf base + 2 names (PVH/HVM).
/// `None` when not on Xen or when Xen's leaves make no sense.
pub fn init(detection: &Detection) -> Option<Xen> {
    if detection.hypervisor != Hypervisor::Xen || detection.max_leaf < detection.base_leaf + 2 {
        return None;
    }
    let leaf = cpuid(detection.base_leaf + 2, 0);
    let (pages, msr) = (leaf.eax, leaf.ebx);
    if pages == 0 {
        return None;
    }
    let page = &raw const janus_hypercall_page;
    let paddr = PhysAddr::new(page as u64);
    let hypercalls = HYPERCALLS.call_once(|| {
        // SAFETY: Xen named `msr` in its CPUID leaf; the page is the kernel's own
        // page-aligned, executable (text) page reserved for this, identity-mapped.
        unsafe { install_hypercall_page(msr, paddr.as_u64()) };
        // SAFETY: Xen has just filled the page with its stubs.
        unsafe { HypercallPage::new(page) }
    });
    let version = hypercalls.xen_version().ok()?;
    Some(Xen {
        version,
        hypercalls,
    })
}
