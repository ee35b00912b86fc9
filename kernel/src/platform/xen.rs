//! Running on Xen: the hypercall page, the console, shared_info.

use janus_hypercall::cpuid::{Detection, Hypervisor, cpuid};
use janus_hypercall::xen::hypercall::{HypercallPage, install_hypercall_page};
use janus_hypercall::xen::ops::Version;
use spin::Once;
use x86_64::PhysAddr;

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
