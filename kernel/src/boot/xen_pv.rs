//! The Xen PV boot information: `start_info` and the bootstrap layout it describes.
//!
//! Xen's PV domain builder places, after the kernel image, the P2M list (one MFN per
//! pseudo-physical frame), `start_info`, the bootstrap page tables and a boot stack, and
//! maps all of it at `VIRT_BASE` 0, so here a virtual address is a pseudo-physical one.
//! Every field is host data: the structure is decoded and validated, and every range it
//! names must lie in the domain's memory, outside the image, and be readable.

use core::fmt;
use core::ops::Range;

use janus_hypercall::xen::frame::PAGE_SIZE;
use janus_hypercall::xen::start_info::{
    SIF_MOD_START_PFN, StartInfo, StartInfoConsole, StartInfoError,
};

use super::cmdline::{self, CmdlineError};
use super::pvh::{BootInfo, BootInfoError, PhysRead};
use crate::mm::memory_map::{MemoryMap, MemoryMapError, PHYS_ADDR_LIMIT};

/// What the PV backend and platform need beyond [`BootInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenPvBoot {
    /// Frames of the domain: pseudo-physical memory is `0..nr_pages * 4096`.
    pub nr_pages: u64,
    /// The P2M list: `nr_pages` MFNs at this address.
    pub p2m: u64,
    /// The active (bootstrap) L4 table's pseudo-physical frame number.
    pub root_pfn: u64,
    /// The bootstrap page tables, which stay page tables: mapped read-only, never freed.
    pub page_tables: Range<u64>,
    /// Machine address of the shared info page.
    pub shared_info: u64,
    pub console: StartInfoConsole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenPvBootError {
    /// `start_info` itself could not be read.
    Unreadable(BootInfoError),
    StartInfo(StartInfoError),
    /// `nr_pages` does not cover the image, or exceeds what x86_64 can address.
    BadPageCount {
        nr_pages: u64,
    },
    /// A structure `start_info` points at lies outside the domain's memory or over the image.
    OutOfPlace {
        what: &'static str,
        start: u64,
        len: u64,
    },
    /// No bootstrap page tables, or more than the builder could have made.
    BadPageTableCount {
        nr_pt_frames: u64,
    },
    Cmdline(CmdlineError),
    MemoryMap(MemoryMapError),
}

impl XenPvBootError {
    /// Short kebab-case tag for `@janus abort kind=boot-info reason=<tag>`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable",
            Self::StartInfo(StartInfoError::BadMagic { .. }) => "bad-magic",
            Self::StartInfo(_) => "bad-start-info",
            Self::BadPageCount { .. } => "bad-nr-pages",
            Self::OutOfPlace { .. } => "out-of-place",
            Self::BadPageTableCount { .. } => "bad-nr-pt-frames",
            Self::Cmdline(e) => e.reason(),
            Self::MemoryMap(e) => e.reason(),
        }
    }
}

impl fmt::Display for XenPvBootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(e) => e.fmt(f),
            Self::StartInfo(e) => e.fmt(f),
            Self::BadPageCount { nr_pages } => write!(
                f,
                "start_info: nr_pages {nr_pages} does not cover the kernel image or exceeds \
                 the physical address space"
            ),
            Self::OutOfPlace { what, start, len } => write!(
                f,
                "start_info: the {what} ({len:#x} bytes at {start:#x}) lies outside the \
                 domain's memory, over the kernel image, or is unreadable"
            ),
            Self::BadPageTableCount { nr_pt_frames } => write!(
                f,
                "start_info: nr_pt_frames {nr_pt_frames} is not a plausible bootstrap page \
                 table count (4..={MAX_PT_FRAMES})"
            ),
            Self::Cmdline(e) => e.fmt(f),
            Self::MemoryMap(e) => e.fmt(f),
        }
    }
}

/// A 4-level bootstrap needs one table per level; Xen's builder makes a few hundred at most
/// (one L1 per 2 MiB of bootstrap mappings).
const MAX_PT_FRAMES: u64 = 4096;

/// Reads and checks `start_info` at `start_info_va`, given the image's extent.
pub fn parse(
    mem: &impl PhysRead,
    start_info_va: u64,
    image: Range<u64>,
) -> Result<(BootInfo, XenPvBoot), XenPvBootError> {
    let mut raw = [0u8; StartInfo::SIZE];
    mem.read(start_info_va, &mut raw)
        .map_err(XenPvBootError::Unreadable)?;
    let info = StartInfo::from_bytes(&raw).map_err(XenPvBootError::StartInfo)?;
    info.validate().map_err(XenPvBootError::StartInfo)?;

    let nr_pages = info.nr_pages;
    let ram_end = nr_pages
        .checked_mul(PAGE_SIZE)
        .filter(|&end| end <= PHYS_ADDR_LIMIT && end > image.end)
        .ok_or(XenPvBootError::BadPageCount { nr_pages })?;
    if !(4..=MAX_PT_FRAMES).contains(&info.nr_pt_frames) {
        return Err(XenPvBootError::BadPageTableCount {
            nr_pt_frames: info.nr_pt_frames,
        });
    }
    let place = |what: &'static str, start: u64, len: u64| -> Result<Range<u64>, XenPvBootError> {
        let out_of_place = XenPvBootError::OutOfPlace { what, start, len };
        let end = start.checked_add(len).ok_or(out_of_place)?;
        let inside = start >= PAGE_SIZE && end <= ram_end;
        let clear_of_image = end <= image.start || start >= image.end;
        if !inside || !clear_of_image || len == 0 {
            return Err(out_of_place);
        }
        Ok(start..end)
    };
    let start_info = place("start_info", start_info_va, StartInfo::SIZE as u64)?;
    let p2m = place("P2M list", info.mfn_list, nr_pages * 8)?;
    if !info.mfn_list.is_multiple_of(8) {
        return Err(XenPvBootError::OutOfPlace {
            what: "P2M list",
            start: info.mfn_list,
            len: nr_pages * 8,
        });
    }
    let page_tables = place(
        "bootstrap page tables",
        info.pt_base,
        info.nr_pt_frames * PAGE_SIZE,
    )?;
    // The P2M list must be readable end to end: the backend indexes it.
    for page in (p2m.start & !(PAGE_SIZE - 1)..p2m.end).step_by(PAGE_SIZE as usize) {
        mem.read(page.max(p2m.start), &mut [0u8; 8])
            .map_err(|_| XenPvBootError::OutOfPlace {
                what: "P2M list",
                start: p2m.start,
                len: p2m.end - p2m.start,
            })?;
    }
    let module = match info.mod_len {
        0 => 0..0,
        len => {
            let start = if info.flags & SIF_MOD_START_PFN != 0 {
                info.mod_start.saturating_mul(PAGE_SIZE)
            } else {
                info.mod_start
            };
            place("module", start, len)?
        }
    };

    let command_line = info.command_line().map_err(XenPvBootError::StartInfo)?;
    let mut window = [0u8; cmdline::MAX_CMDLINE_LEN + 1];
    window[..command_line.len()].copy_from_slice(command_line);
    let text = cmdline::from_nul_terminated(&window).map_err(XenPvBootError::Cmdline)?;

    // Pseudo-physical memory is one block; page 0 stays out, as under PVH.
    let memory_map = MemoryMap::from_entries([(PAGE_SIZE, ram_end - PAGE_SIZE, 1)])
        .map_err(XenPvBootError::MemoryMap)?;
    let boot = BootInfo::from_parts(
        memory_map,
        text,
        info.flags,
        &[start_info, p2m.clone(), page_tables.clone(), module],
    );
    Ok((
        boot,
        XenPvBoot {
            nr_pages,
            p2m: p2m.start,
            root_pfn: info.pt_base / PAGE_SIZE,
            page_tables,
            shared_info: info.shared_info,
            console: info.console(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    const IMAGE: Range<u64> = 0x10_0000..0x30_0000;

    /// Guest memory from 0 to `len`, all readable.
    struct Memory(Vec<u8>);

    impl PhysRead for Memory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BootInfoError> {
            let start = addr as usize;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or(BootInfoError::Unreadable {
                    what: "range",
                    paddr: addr,
                    len: buf.len() as u64,
                })?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn start_info() -> StartInfo {
        let mut magic = [0; 32];
        magic[..14].copy_from_slice(b"xen-3.0-x86_64");
        let mut cmd_line = [0; 1024];
        cmd_line[..9].copy_from_slice(b"log=debug");
        StartInfo {
            magic,
            nr_pages: 0x800,
            shared_info: 0x7777_7000,
            flags: 3,
            store_mfn: 0,
            store_evtchn: 0,
            console: [0, 0],
            pt_base: 0x30_2000,
            nr_pt_frames: 6,
            mfn_list: 0x30_0000,
            mod_start: 0,
            mod_len: 0,
            cmd_line,
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        }
    }

    fn memory(info: &StartInfo) -> Memory {
        let mut bytes = std::vec![0u8; 0x40_0000];
        bytes[0x30_4000..0x30_4000 + StartInfo::SIZE].copy_from_slice(&info.to_bytes());
        Memory(bytes)
    }

    #[test]
    fn a_builder_layout_is_accepted() {
        let info = start_info();
        let (boot, pv) = parse(&memory(&info), 0x30_4000, IMAGE).unwrap();
        assert_eq!(boot.cmdline(), "log=debug");
        assert_eq!(boot.memory_map.usable_bytes(), 0x80_0000 - 0x1000);
        assert_eq!(pv.root_pfn, 0x302);
        assert_eq!(pv.page_tables, 0x30_2000..0x30_8000);
        let reserved: Vec<_> = boot.reserved_ranges().collect();
        assert!(reserved.contains(&(0x30_0000..0x30_4000)), "{reserved:?}");
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        type Corruption = fn(&mut StartInfo);
        let cases: [(Corruption, &str); 5] = [
            (|i| i.magic[4] = b'4', "bad-magic"),
            (|i| i.nr_pages = 0x200, "bad-nr-pages"),
            (|i| i.mfn_list = 0x20_0000, "out-of-place"),
            (|i| i.nr_pt_frames = 1, "bad-nr-pt-frames"),
            (|i| i.pt_base = 0x7ff_f000, "out-of-place"),
        ];
        for (corrupt, reason) in cases {
            let mut info = start_info();
            corrupt(&mut info);
            let err = parse(&memory(&info), 0x30_4000, IMAGE).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
    }

    #[test]
    fn an_unreadable_start_info_is_an_error_not_a_fault() {
        let info = start_info();
        let err = parse(&memory(&info), 0x7f_f000, IMAGE).unwrap_err();
        assert_eq!(err.reason(), "unreadable");
    }
}
