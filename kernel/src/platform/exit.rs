//! Stopping the machine with a status the host can read: QEMU's isa-debug-exit device at port
//! 0xf4 turns a written value `v` into the QEMU exit status `(v << 1) | 1`. A PVH dom0 reaches
//! that port too. Where nothing answers and Xen is there, `SCHEDOP_shutdown` stops the domain
//! (poweroff when all passed, crash otherwise), though the status is then lost.

use core::sync::atomic::{AtomicBool, Ordering};

use janus_hypercall::xen::ops::ShutdownReason;
use x86_64::instructions::port::Port;

const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// Whether `out` reaches the port. A Xen PV kernel runs at CPL 3, where `out` faults until
/// `PHYSDEVOP_set_iopl` grants I/O privilege.
static PORT_IO: AtomicBool = AtomicBool::new(true);

/// Records whether port I/O works (the Xen PV entry clears it until `set_iopl` succeeds).
pub fn set_port_io(usable: bool) {
    PORT_IO.store(usable, Ordering::Relaxed);
}

/// The exit statuses of the output contract (DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// All self-tests passed (QEMU status 33).
    Passed = 0x10,
    /// A self-test failed (QEMU status 35).
    TestFailed = 0x11,
    /// Panic, unexpected fault or unusable boot information (QEMU status 37).
    Fatal = 0x12,
}

pub fn exit(code: ExitCode) -> ! {
    if PORT_IO.load(Ordering::Relaxed) {
        // SAFETY: writing the debug-exit port either stops the VM or is ignored; it touches
        // no memory.
        unsafe { Port::<u8>::new(ISA_DEBUG_EXIT_PORT).write(code as u8) };
    }
    if let Some(xen) = crate::platform::xen::hypercalls() {
        let reason = match code {
            ExitCode::Passed => ShutdownReason::Poweroff,
            ExitCode::TestFailed | ExitCode::Fatal => ShutdownReason::Crash,
        };
        crate::emergency_println!(
            "janus: port {ISA_DEBUG_EXIT_PORT:#x} did not stop the machine; SCHEDOP_shutdown \
             ({reason:?}) for status {:#x}",
            code as u8
        );
        if let Err(e) = xen.shutdown(reason) {
            crate::emergency_println!("janus: SCHEDOP_shutdown refused: {e}");
        }
    }
    crate::emergency_println!(
        "janus: port {ISA_DEBUG_EXIT_PORT:#x} did not stop the machine (no isa-debug-exit \
         device); halting with status {:#x}",
        code as u8
    );
    loop {
        match crate::platform::xen::hypercalls() {
            // `cli` and `hlt` are privileged for a PV kernel. Yielding, unlike SCHEDOP_block,
            // leaves events masked: no upcall can arrive at a kernel that is stopping.
            Some(xen) if crate::platform::xen::is_pv() => {
                let _ = xen.sched_yield();
            }
            _ => {
                x86_64::instructions::interrupts::disable();
                x86_64::instructions::hlt();
            }
        }
    }
}
