//! Drains the frame allocator completely, checking that no frame is handed out twice and none
//! lies in memory the kernel uses, then frees everything and checks the frames come back.

use alloc::vec;

use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;

use super::{Outcome, ensure};
use crate::mm::kernel_space;
use crate::mm::layout::phys_to_virt;

const END_OF_LIST: u64 = u64::MAX;

/// The drained frames form a list threaded through the frames themselves (each holds the
/// address of the previous one), so draining needs no memory but the frames.
fn link(frame: PhysFrame, previous: u64) {
    let slot = phys_to_virt(frame.start_address()).as_mut_ptr::<u64>();
    // SAFETY: the frame was just handed out by the allocator, so the test owns it, and all
    // RAM is mapped writable through the physical window.
    unsafe { slot.write_volatile(previous) }
}

fn next_in_list(frame: u64) -> u64 {
    let slot = phys_to_virt(PhysAddr::new(frame)).as_ptr::<u64>();
    // SAFETY: the frame is on the test's list, written by `link`.
    unsafe { slot.read_volatile() }
}

pub fn run() -> Outcome {
    kernel_space::with(|space| {
        let frames = &mut space.frames;
        let free_before = frames.free_frames();
        let top = crate::arch::stack::all()[0].top.as_u64();
        let mut seen = vec![0u64; frames.frame_limit().div_ceil(64) as usize];
        let mut list = END_OF_LIST;
        let mut drained = 0u64;
        while let Some(frame) = frames.allocate() {
            let addr = frame.start_address().as_u64();
            let (word, bit) = ((addr / 4096 / 64) as usize, addr / 4096 % 64);
            ensure!(
                seen[word] & (1 << bit) == 0,
                "frame {addr:#x} handed out twice"
            );
            seen[word] |= 1 << bit;
            ensure!(addr >= 1 << 20, "frame {addr:#x} is below 1 MiB");
            ensure!(
                !(0x10_0000..top).contains(&addr),
                "frame {addr:#x} lies in the kernel image"
            );
            link(frame, list);
            list = addr;
            drained += 1;
        }
        ensure!(
            drained == free_before,
            "drained {drained} frames, allocator said {free_before} were free"
        );
        ensure!(frames.free_frames() == 0, "allocator not empty after drain");

        let mut freed = 0;
        while list != END_OF_LIST {
            let next = next_in_list(list);
            frames.free(PhysFrame::containing_address(PhysAddr::new(list)))?;
            freed += 1;
            list = next;
        }
        ensure!(freed == drained, "freed {freed} of {drained} frames");
        ensure!(
            frames.free_frames() == free_before,
            "free count {} after freeing everything, was {free_before}",
            frames.free_frames()
        );

        let again = frames.allocate().ok_or("no frame after freeing all")?;
        let addr = again.start_address().as_u64();
        let word = (addr / 4096 / 64) as usize;
        ensure!(
            seen[word] & (1 << (addr / 4096 % 64)) != 0,
            "reallocated frame {addr:#x} was never free"
        );
        frames.free(again)?;
        ensure!(
            frames.free(again).is_err(),
            "double free of {addr:#x} was accepted"
        );
        Ok(Some(alloc::format!("frames={drained}")))
    })
}
