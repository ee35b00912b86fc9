//! 4-level x86_64 page tables: one [`Mapper`] API over a [`PageTableBackend`] that decides how
//! table memory is written (directly, or by queued hypercalls under Xen PV).
pub mod backend;
pub mod entry;
pub mod mapper;
pub mod xen_pv_mmu;

pub use backend::PageTableBackend;
pub use entry::{MACHINE_FRAME, PageTableEntry};
pub use mapper::{FrameSource, Leaf, Mapper, MapperError, PageSize, Translation};
pub use x86_64::structures::paging::PageTableFlags;
#[cfg(target_os = "none")]
pub use xen_pv_mmu::XenHypercalls;
pub use xen_pv_mmu::{FlushError, PvMmuHypervisor, PvMmuStats, XenPvMmu};
