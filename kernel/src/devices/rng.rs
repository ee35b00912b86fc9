//! virtio-rng: the host's randomness (QEMU reads its /dev/urandom), behind the kernel's
//! entropy API.

use spin::Mutex;
use virtio_drivers::device::rng::VirtIORng;

use super::Transport;
use super::dma::JanusHal;

static RNG: Mutex<Option<VirtIORng<JanusHal, Transport>>> = Mutex::new(None);

pub fn install(rng: VirtIORng<JanusHal, Transport>) {
    *RNG.lock() = Some(rng);
}

pub fn present() -> bool {
    RNG.lock().is_some()
}

/// Fills `buf` from the device; `false` when there is none or it gave less than asked.
pub fn fill(buf: &mut [u8]) -> bool {
    let mut rng = RNG.lock();
    let Some(rng) = rng.as_mut() else {
        return false;
    };
    let mut done = 0;
    // The device may return fewer bytes than asked (virtio 1.2 §5.4.6); a device that
    // returns none would otherwise loop forever.
    for _ in 0..64 {
        if done == buf.len() {
            return true;
        }
        match rng.request_entropy(&mut buf[done..]) {
            Ok(n) if n > 0 && n <= buf.len() - done => done += n,
            _ => return false,
        }
    }
    done == buf.len()
}
