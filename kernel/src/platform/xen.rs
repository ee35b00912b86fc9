//! Running on Xen: the hypercall page, the console, shared_info.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use janus_hypercall::cpuid::{Detection, cpuid};
use janus_hypercall::xen::console_ring::{XenconsInterface, XenconsRing, write_out};
use janus_hypercall::xen::cpuid::XenLeaves;
use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::event_channel::EvtchnPort;
use janus_hypercall::xen::hvm;
use janus_hypercall::xen::hypercall::{HypercallPage, install_hypercall_page};
use janus_hypercall::xen::machphys::M2pMappingError;
use janus_hypercall::xen::ops::{E820_ENTRY_SIZE, Version, e820_entries};
use janus_hypercall::xen::shared_info::{SharedInfo, SharedInfoRef};
use spin::{Mutex, Once};
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use crate::console::Sink;
use crate::mm::kernel_space;
use crate::mm::layout::{XEN_CONSOLE_PAGE, XEN_SHARED_INFO_PAGE, phys_to_virt};
use crate::mm::memory_map::{MAX_REGIONS, MemoryMap, MemoryMapError};
use crate::mm::paging::{MACHINE_FRAME, MapperError};

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
/// Set first thing by the Xen PV entry.
static XEN_PV: AtomicBool = AtomicBool::new(false);
static SHARED_INFO: Once<SharedInfoRef> = Once::new();

/// What the kernel learned about Xen at boot.
#[derive(Clone, Copy, Debug)]
pub struct Xen {
    pub version: Version,
    pub hypercalls: &'static HypercallPage,
}

/// The hypercall page, once installed.
/// Whether the kernel runs as a classic Xen PV guest (entered through `XEN_ELFNOTE_ENTRY`).
pub fn is_pv() -> bool {
    XEN_PV.load(Ordering::Relaxed)
}

pub fn hypercalls() -> Option<&'static HypercallPage> {
    HYPERCALLS.get()
}

/// Where the console goes until memory is set up: only dom0 may write Xen's console
/// (`console_io`); a domU is refused and uses the debug port until its ring is attached.
pub fn early_console(xen: &Xen) -> Sink {
    match xen.hypercalls.console_write(b"") {
        Ok(()) => Sink::XenConsoleIo,
        Err(_) => Sink::DebugPort,
    }
}

/// This domain's memory map from `XENMEM_memory_map`: Xen 4.17 starts a PVH dom0 with a
/// version 0 start info, which has none.
pub fn memory_map(xen: &Xen) -> Result<MemoryMap, XenMemoryMapError> {
    let mut raw = [0u8; MAX_REGIONS * E820_ENTRY_SIZE];
    let entries = xen
        .hypercalls
        .memory_map(&mut raw)
        .map_err(XenMemoryMapError::Xen)?;
    MemoryMap::from_entries(e820_entries(entries)).map_err(XenMemoryMapError::Invalid)
}

#[derive(Debug)]
pub enum XenMemoryMapError {
    Xen(XenError),
    Invalid(MemoryMapError),
}

impl fmt::Display for XenMemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xen(e) => write!(f, "XENMEM_memory_map failed: {e}"),
            Self::Invalid(e) => write!(f, "Xen's memory map (XENMEM_memory_map) is unusable: {e}"),
        }
    }
}

/// A domU's console: the ring page named by `HVM_PARAM_CONSOLE_PFN`, and the event
/// channel that tells the backend (xenconsoled) to drain it.
struct ConsoleRing {
    ring: XenconsRing,
    port: EvtchnPort,
}

static CONSOLE_RING: Mutex<Option<ConsoleRing>> = Mutex::new(None);

/// Spins allowed for the backend to make room before the rest of a write is dropped: a
/// stalled backend must not hang the kernel.
const CONSOLE_RING_MAX_SPINS: u32 = 1_000_000;

#[derive(Debug)]
pub enum ConsoleRingError {
    /// `HVM_PARAM_CONSOLE_PFN` is 0: this domain has no console ring.
    NoRing,
    Xen(XenError),
    Map(MapperError),
}

impl fmt::Display for ConsoleRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRing => f.write_str("HVM_PARAM_CONSOLE_PFN is 0: no console ring"),
            Self::Xen(e) => write!(f, "reading the console HVM params: {e}"),
            Self::Map(e) => write!(f, "mapping the console ring: {e}"),
        }
    }
}

/// Finds and maps a domU's console ring. Untested on real Xen: no domU can be started on
/// the machines this project runs on (see README).
pub fn attach_console_ring(xen: &Xen) -> Result<(), ConsoleRingError> {
    let pfn = xen
        .hypercalls
        .hvm_get_param(hvm::param::CONSOLE_PFN)
        .map_err(ConsoleRingError::Xen)?;
    let port = xen
        .hypercalls
        .hvm_get_param(hvm::param::CONSOLE_EVTCHN)
        .map_err(ConsoleRingError::Xen)?;
    if pfn == 0 || pfn >= 1 << 40 {
        return Err(ConsoleRingError::NoRing);
    }
    let page = Page::containing_address(VirtAddr::new(XEN_CONSOLE_PAGE));
    let frame = PhysFrame::containing_address(PhysAddr::new(pfn * 4096));
    kernel_space::with(|space| {
        space.mapper.map(
            page,
            frame,
            PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE,
            &mut space.frames,
        )
    })
    .map_err(ConsoleRingError::Map)?;
    let ptr = NonNull::new(page.start_address().as_mut_ptr::<XenconsInterface>())
        .expect("XEN_CONSOLE_PAGE is not null");
    // SAFETY: the page was just mapped RW at a virtual address reserved for it, and only
    // this ring writes it on the guest side.
    let ring = unsafe { XenconsRing::new(ptr) };
    *CONSOLE_RING.lock() = Some(ConsoleRing {
        ring,
        port: EvtchnPort(port as u32),
    });
    Ok(())
}

/// Writes to the console ring. `false` when there is no ring, it is busy (a fatal report
/// interrupting a write), or the backend corrupted it; the caller then uses the debug port.
pub fn console_ring_write(text: &[u8]) -> bool {
    let Some(mut guard) = CONSOLE_RING.try_lock() else {
        return false;
    };
    let (Some(console), Some(xen)) = (guard.as_mut(), hypercalls()) else {
        return false;
    };
    let mut rest = text;
    let mut spins = 0;
    while !rest.is_empty() && spins < CONSOLE_RING_MAX_SPINS {
        let Ok(written) = write_out(&mut console.ring, rest) else {
            return false;
        };
        rest = &rest[written..];
        if written > 0 {
            // Notification failures only delay output until the next one.
            let _ = xen.evtchn_send(console.port);
        } else {
            spins += 1;
            core::hint::spin_loop();
        }
    }
    true
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
        .expect("allocated frames lie above 1 MiB");
    // SAFETY: the frame is the kernel's for good (never freed), identity-mapped, and Xen
    // now backs it with this domain's shared info page.
    let shared = unsafe { SharedInfoRef::new(page) };
    Ok(*SHARED_INFO.call_once(|| shared))
}

/// Xen's machine-to-physical table, read-only in Xen's part of the address space: a PV
/// kernel reads it to turn the machine frames in its page tables back into its own.
pub fn m2p_table(xen: &Xen) -> Result<&'static [u64], M2pError> {
    let mapping = xen.hypercalls.machphys_mapping().map_err(M2pError::Xen)?;
    let entries = mapping.readable_entries().map_err(M2pError::Window)?;
    // SAFETY: Xen maps the window read-only for every PV guest, for its whole life, and
    // `readable_entries` bounded the slice by both the window and `max_mfn`.
    Ok(unsafe { core::slice::from_raw_parts(mapping.v_start as *const u64, entries as usize) })
}

#[derive(Debug)]
pub enum M2pError {
    Xen(XenError),
    Window(M2pMappingError),
}

impl fmt::Display for M2pError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xen(e) => write!(f, "XENMEM_machphys_mapping failed: {e}"),
            Self::Window(e) => e.fmt(f),
        }
    }
}

/// Maps the shared info page a PV guest is given (`start_info.shared_info`, a machine
/// address; a PV guest has no physmap to place it in).
pub fn map_shared_info_pv(machine_addr: u64) -> Result<SharedInfoRef, MapSharedInfoError> {
    let page = Page::containing_address(VirtAddr::new(XEN_SHARED_INFO_PAGE));
    let frame = PhysFrame::containing_address(PhysAddr::new(machine_addr));
    kernel_space::with(|space| {
        space.mapper.map(
            page,
            frame,
            PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE | MACHINE_FRAME,
            &mut space.frames,
        )
    })
    .map_err(MapSharedInfoError::Map)?;
    let ptr = NonNull::new(page.start_address().as_mut_ptr::<SharedInfo>())
        .expect("XEN_SHARED_INFO_PAGE is not null");
    // SAFETY: the page maps Xen's shared info frame for this domain, for the kernel's life.
    let shared = unsafe { SharedInfoRef::new(ptr) };
    Ok(*SHARED_INFO.call_once(|| shared))
}

#[derive(Debug)]
pub enum MapSharedInfoError {
    OutOfFrames,
    Xen(XenError),
    Map(MapperError),
}

impl fmt::Display for MapSharedInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFrames => f.write_str("no free frame for the shared info page"),
            Self::Xen(e) => write!(f, "XENMEM_add_to_physmap(shared_info) failed: {e}"),
            Self::Map(e) => write!(f, "mapping the shared info page: {e}"),
        }
    }
}

/// Installs the hypercall page through the MSR that CPUID leaf base + 2 names (PVH/HVM).
/// `None` when not on Xen or when Xen's leaves make no sense.
/// Takes Xen's hypercalls as a PV guest: Xen filled the page named by the
/// `HYPERCALL_PAGE` note when it loaded the image.
///
/// # Safety
/// Only from the Xen PV entry, before anything else.
pub unsafe fn init_pv() -> Result<Xen, XenError> {
    XEN_PV.store(true, Ordering::Relaxed);
    let hypercalls = HYPERCALLS.call_once(|| {
        // SAFETY: the PV domain builder filled the page the HYPERCALL_PAGE note names.
        unsafe { HypercallPage::new(&raw const janus_hypercall_page) }
    });
    let version = hypercalls.xen_version()?;
    Ok(Xen {
        version,
        hypercalls,
    })
}

pub fn init(detection: &Detection) -> Option<Xen> {
    let leaf = XenLeaves::new(detection)?.hypercall(cpuid)?;
    if leaf.pages == 0 {
        return None;
    }
    let page = &raw const janus_hypercall_page;
    let paddr = PhysAddr::new(page as u64);
    let hypercalls = HYPERCALLS.call_once(|| {
        // SAFETY: Xen named `msr` in its CPUID leaf; the page is the kernel's own
        // page-aligned, executable (text) page reserved for this, identity-mapped.
        unsafe { install_hypercall_page(leaf.msr, paddr.as_u64()) };
        // SAFETY: Xen has just filled the page with its stubs.
        unsafe { HypercallPage::new(page) }
    });
    let version = hypercalls.xen_version().ok()?;
    Some(Xen {
        version,
        hypercalls,
    })
}
