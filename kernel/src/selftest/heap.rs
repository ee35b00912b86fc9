//! Stresses the heap with the collections the kernel uses, then checks nothing leaked.
//! Sized to peak near 1 MiB so it also runs in a 16 MiB guest (heap = a quarter of free RAM).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{Outcome, ensure};
use crate::mm::heap;

pub fn run() -> Outcome {
    let used_before = heap::used();
    {
        let mut numbers: Vec<u64> = Vec::new();
        for i in 0..20_000u64 {
            numbers.push(i * 3);
        }
        ensure!(
            numbers.iter().sum::<u64>() == 3 * 19_999 * 20_000 / 2,
            "Vec lost elements while growing"
        );

        let boxes: Vec<Box<[u8; 100]>> = (0..1_000u32).map(|i| Box::new([i as u8; 100])).collect();
        for (i, b) in boxes.iter().enumerate() {
            ensure!(b.iter().all(|&x| x == i as u8), "Box {i} was overwritten");
        }

        let mut map = BTreeMap::new();
        let mut key = 1u64;
        for i in 0..5_000u64 {
            key = key
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            map.insert(key, i);
        }
        let keys: Vec<u64> = map.keys().copied().collect();
        ensure!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "BTreeMap keys out of order"
        );
        for k in keys.iter().step_by(2) {
            map.remove(k);
        }
        ensure!(
            map.len() == keys.len() / 2,
            "BTreeMap holds {} entries after removing half of {}",
            map.len(),
            keys.len()
        );

        // Interleaved sizes fragment the free list; everything must still fit back together.
        let mut mixed: Vec<Vec<u8>> = Vec::new();
        for i in 0..2_000usize {
            mixed.push(alloc::vec![0xa5; 1 + (i * 37) % 700]);
            if i % 3 == 0 {
                mixed.swap_remove(i / 2);
            }
        }
        ensure!(
            mixed.iter().all(|v| v.iter().all(|&b| b == 0xa5)),
            "fragmented allocations overlap"
        );
    }
    let used_after = heap::used();
    ensure!(
        used_after == used_before,
        "heap use went from {used_before} to {used_after} bytes after freeing everything"
    );
    Ok(None)
}
