//! Maps, checks, write-protects and unmaps 10,000 random pages, with contents checked
//! through both the new mapping and the physical window, and a probe proving each unmapped
//! page really faults (so the TLB was invalidated). Pages go in rounds as large as the free
//! memory allows, so the test also runs in a 16 MiB guest.

use alloc::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags as Flags};

use super::{Outcome, ensure};
use crate::arch::extable::probe_read_u8;
use crate::mm::kernel_space::{self, KernelSpace};
use crate::mm::layout::{MAPPER_TEST_WINDOW, MAPPER_TEST_WINDOW_SIZE, phys_to_virt};
use crate::rng::XorShift64;

const PAGES: usize = 10_000;
const MAX_ROUND: usize = 2_048;

fn tag(va: u64) -> u64 {
    va.rotate_left(17) ^ 0x6a61_6e75_735f_6d6d
}

/// 10,000 distinct random pages of the test window.
fn random_pages(rng: &mut XorShift64) -> Vec<Page> {
    let slots = MAPPER_TEST_WINDOW_SIZE / 4096;
    let mut used = alloc::vec![0u64; (slots / 64) as usize];
    let mut pages = Vec::with_capacity(PAGES);
    while pages.len() < PAGES {
        let slot = rng.below(slots);
        let (word, bit) = ((slot / 64) as usize, slot % 64);
        if used[word] & (1 << bit) == 0 {
            used[word] |= 1 << bit;
            pages.push(Page::containing_address(VirtAddr::new(
                MAPPER_TEST_WINDOW + slot * 4096,
            )));
        }
    }
    pages
}

pub fn run(seed: u64) -> Outcome {
    let mut rng = XorShift64::new(seed);
    let pages = random_pages(&mut rng);
    let round = kernel_space::with(|s| (s.frames.free_frames() as usize / 4).min(MAX_ROUND));
    ensure!(round > 0, "no free frames for the mapper test");
    let rw = Flags::WRITABLE | Flags::NO_EXECUTE;

    for chunk in pages.chunks(round) {
        let mapped = kernel_space::with(|space| -> Result<Vec<_>, super::Failure> {
            let frames: Vec<_> = (0..chunk.len())
                .map(|_| space.frames.allocate())
                .collect::<Option<_>>()
                .ok_or("out of frames")?;
            let KernelSpace {
                mapper,
                frames: allocator,
            } = space;
            mapper.batch(|m| {
                chunk
                    .iter()
                    .zip(&frames)
                    .try_for_each(|(page, frame)| m.map(*page, *frame, rw, allocator))
            })?;
            Ok(frames)
        })?;

        for (page, frame) in chunk.iter().zip(&mapped) {
            let va = page.start_address();
            let slot = (va.as_u64() / 4096 % 512) as usize;
            // SAFETY: the page was just mapped writable to a frame the test owns.
            unsafe {
                va.as_mut_ptr::<u64>()
                    .add(slot)
                    .write_volatile(tag(va.as_u64()))
            };
            let through_window = phys_to_virt(frame.start_address()).as_ptr::<u64>();
            // SAFETY: the same frame through the physical window.
            let seen = unsafe { through_window.add(slot).read_volatile() };
            ensure!(
                seen == tag(va.as_u64()),
                "{:#x}: frame {:#x} holds {seen:#x}, not what was written through the mapping",
                va.as_u64(),
                frame.start_address().as_u64()
            );
        }

        kernel_space::with(|space| -> Result<(), super::Failure> {
            let mapper = &mut space.mapper;
            for (page, frame) in chunk.iter().zip(&mapped) {
                let va = page.start_address();
                let t = mapper
                    .translate(va + 8u64)
                    .ok_or("translate lost a mapping")?;
                ensure!(
                    t.phys == frame.start_address() + 8u64,
                    "translate({:#x}) = {:#x}, mapped to {:#x}",
                    va.as_u64(),
                    t.phys.as_u64(),
                    frame.start_address().as_u64()
                );
                ensure!(t.flags.contains(rw), "{:#x} lost its flags", va.as_u64());
            }
            mapper.batch(|m| {
                chunk
                    .iter()
                    .try_for_each(|page| m.protect(*page, Flags::NO_EXECUTE))
            })?;
            for page in chunk {
                let t = mapper
                    .translate(page.start_address())
                    .ok_or("protect unmapped a page")?;
                ensure!(
                    !t.flags.contains(Flags::WRITABLE),
                    "{:#x} still writable after protect",
                    page.start_address().as_u64()
                );
            }
            Ok(())
        })?;

        for page in chunk {
            let va = page.start_address();
            // SAFETY: test-window pages are plain RAM.
            let first = unsafe { probe_read_u8(va) };
            ensure!(
                first.is_ok(),
                "{:#x} faults while mapped read-only",
                va.as_u64()
            );
        }

        kernel_space::with(|space| -> Result<(), super::Failure> {
            for (page, frame) in chunk.iter().zip(&mapped) {
                let got = space.mapper.unmap(*page)?;
                ensure!(got == *frame, "unmap returned the wrong frame");
                ensure!(
                    space.mapper.translate(page.start_address()).is_none(),
                    "{:#x} still translates after unmap",
                    page.start_address().as_u64()
                );
                space.frames.free(*frame)?;
            }
            Ok(())
        })?;

        for page in chunk {
            // SAFETY: the page is unmapped; the probe catches the fault.
            let after = unsafe { probe_read_u8(page.start_address()) };
            ensure!(
                after.is_err(),
                "{:#x} still readable after unmap: stale TLB entry",
                page.start_address().as_u64()
            );
        }
    }
    // Everything is unmapped again: every level-1 table of the window is empty and goes
    // back to the allocator (under Xen PV: unpinned and made writable again).
    let free_before = kernel_space::with(|s| s.frames.free_frames());
    let released = kernel_space::with(|space| {
        let KernelSpace { mapper, frames } = space;
        let window = VirtAddr::new(MAPPER_TEST_WINDOW)
            ..VirtAddr::new(MAPPER_TEST_WINDOW + MAPPER_TEST_WINDOW_SIZE);
        let mut refused = 0;
        let released = mapper.release_empty_tables(window, |table| {
            if frames.free(table).is_err() {
                refused += 1;
            }
        });
        ensure!(
            refused == 0,
            "{refused} released table frame(s) refused by the allocator"
        );
        Ok(released)
    })?;
    let free_after = kernel_space::with(|s| s.frames.free_frames());
    ensure!(
        released > 0,
        "no page table of the test window was released"
    );
    ensure!(
        free_after == free_before + released as u64,
        "releasing {released} tables freed {} frames",
        free_after.saturating_sub(free_before)
    );
    Ok(Some(alloc::format!(
        "pages={PAGES} round={round} seed={seed:#x} tables_released={released}"
    )))
}
