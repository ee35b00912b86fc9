//! Memory management.
pub mod frame_allocator;
pub mod memory_map;
pub mod paging;

#[cfg(target_os = "none")]
pub mod backend;
#[cfg(target_os = "none")]
pub mod device_memory;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod kernel_space;
#[cfg(target_os = "none")]
pub mod layout;
