//! 4-level x86_64 page tables: one [`Mapper`] API over a [`PageTableBackend`] that decides how
//! table memory is written (directly, or by queued hypercalls under Xen PV).
pub mod backend;
pub mod entry;
pub mod mapper;

pub use backend::PageTableBackend;
pub use entry::{MACHINE_FRAME, PageTableEntry};
pub use mapper::{FrameSource, Leaf, Mapper, MapperError, PageSize, Translation};
pub use x86_64::structures::paging::PageTableFlags;
