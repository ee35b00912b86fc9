//! virtio-console as a second console: once it is up, everything the kernel prints goes to
//! it too.

use spin::Mutex;
use virtio_drivers::device::console::VirtIOConsole;

use super::Transport;
use super::dma::JanusHal;

static CONSOLE: Mutex<Option<VirtIOConsole<JanusHal, Transport>>> = Mutex::new(None);

/// Makes `console` the second console.
pub fn install(console: VirtIOConsole<JanusHal, Transport>) {
    *CONSOLE.lock() = Some(console);
    crate::console::set_mirror(write);
}

/// Writes `text`; `false` when there is no virtio console or it refused the bytes.
pub fn write(text: &str) -> bool {
    // A formatted line arrives in pieces, some empty; a queue takes no empty buffer.
    if text.is_empty() {
        return true;
    }
    // A print from inside a print (a panic while writing) finds the lock taken: skip it
    // rather than deadlock.
    let Some(mut console) = CONSOLE.try_lock() else {
        return false;
    };
    console
        .as_mut()
        .is_some_and(|c| c.send_bytes(text.as_bytes()).is_ok())
}

pub fn present() -> bool {
    CONSOLE.lock().is_some()
}
