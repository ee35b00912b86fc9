//! Entropy for the kernel: unpredictable bytes from the best source present, virtio-rng
//! first, then the CPU's RDRAND.

/// Where [`fill`] got its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    VirtioRng,
    Rdrand,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::VirtioRng => "virtio-rng",
            Self::Rdrand => "rdrand",
        }
    }
}

/// Fills `buf` with unpredictable bytes; `None` when no source works.
pub fn fill(buf: &mut [u8]) -> Option<Source> {
    if crate::devices::rng::fill(buf) {
        return Some(Source::VirtioRng);
    }
    fill_rdrand(buf).then_some(Source::Rdrand)
}

fn fill_rdrand(buf: &mut [u8]) -> bool {
    if crate::platform::cpuid(1, 0).ecx & (1 << 30) == 0 {
        return false;
    }
    for chunk in buf.chunks_mut(8) {
        // Intel SDM: retry a few times on a transient underflow (CF=0).
        let word = (0..10).find_map(|_| {
            let mut value = 0u64;
            // SAFETY: CPUID says RDRAND exists; it only writes `value`.
            (unsafe { core::arch::x86_64::_rdrand64_step(&mut value) } == 1).then_some(value)
        });
        match word {
            Some(word) => chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]),
            None => return false,
        }
    }
    true
}
