//! The kernel console behind `print!`/`println!` and the `log` facade. It starts on COM1
//! and moves once at boot if the platform needs it: under Xen, COM1 belongs to Xen and a
//! dom0's writes to it are dropped, so text goes through the `console_io` hypercall, or to
//! port 0xe9 (Xen's and QEMU's debug port) where that hypercall is refused.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use janus_drivers::uart16550::{COM1, Uart16550};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;
use x86_64::instructions::port::Port;

/// Where console text goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Sink {
    Com1 = 0,
    XenConsoleIo = 1,
    DebugPort = 2,
    XenConsoleRing = 3,
}

impl Sink {
    /// The env line's `console=` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Com1 => "com1",
            Self::XenConsoleIo => "xen-console-io",
            Self::DebugPort => "port-e9",
            Self::XenConsoleRing => "xen-console-ring",
        }
    }
}

const DEBUG_PORT: u16 = 0xe9;

static SINK: AtomicU8 = AtomicU8::new(Sink::Com1 as u8);

pub fn sink() -> Sink {
    match SINK.load(Ordering::Relaxed) {
        1 => Sink::XenConsoleIo,
        2 => Sink::DebugPort,
        3 => Sink::XenConsoleRing,
        _ => Sink::Com1,
    }
}

/// Sends console text to `sink` from now on. `XenConsoleIo` needs the hypercall page.
pub fn set_sink(sink: Sink) {
    SINK.store(sink as u8, Ordering::Relaxed);
}

fn write_debug_port(s: &str) {
    for byte in s.bytes() {
        // SAFETY: the debug port only prints the byte; it touches no memory.
        unsafe { Port::<u8>::new(DEBUG_PORT).write(byte) };
    }
}

/// Writes to the sink without any lock.
struct SinkWriter;

impl Write for SinkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match sink() {
            Sink::Com1 => {
                // SAFETY: COM1 belongs to the console, and writers take PRINT_LOCK (except
                // the fatal path, see `emergency_print`).
                let mut serial = unsafe { Uart16550::new(COM1) };
                serial.write_str(s)
            }
            Sink::XenConsoleIo => match crate::platform::xen::hypercalls() {
                Some(xen) => xen.console_write(s.as_bytes()).map_err(|_| fmt::Error),
                None => Err(fmt::Error),
            },
            Sink::XenConsoleRing => {
                if !crate::platform::xen::console_ring_write(s.as_bytes()) {
                    write_debug_port(s);
                }
                Ok(())
            }
            Sink::DebugPort => {
                write_debug_port(s);
                Ok(())
            }
        }
    }
}

static LOGGER: Logger = Logger;

struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            print(format_args!("[{:<5}] {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

/// Starts the console on `sink` (programming COM1 if that is it) and installs the logger at
/// `info`; the command line may change the level.
pub fn init(sink: Sink) {
    let _guard = PRINT_LOCK.lock();
    if sink == Sink::Com1 {
        // SAFETY: COM1 belongs to the console; PRINT_LOCK is held.
        unsafe { Uart16550::new(COM1) }.init();
    }
    set_sink(sink);
    // Only fails when a logger is already set, i.e. on a second call, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Serializes whole `print!` calls so lines do not interleave.
static PRINT_LOCK: Mutex<()> = Mutex::new(());

/// A second console that gets a copy of everything printed (`fn(&str) -> bool` as an
/// integer, 0 for none): virtio-console once it is found.
static MIRROR: AtomicUsize = AtomicUsize::new(0);

/// Copies everything printed from now on to `mirror` as well.
pub fn set_mirror(mirror: fn(&str) -> bool) {
    MIRROR.store(mirror as usize, Ordering::SeqCst);
}

struct MirrorWriter(fn(&str) -> bool);

impl Write for MirrorWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if (self.0)(s) { Ok(()) } else { Err(fmt::Error) }
    }
}

pub fn print(args: fmt::Arguments<'_>) {
    let _guard = PRINT_LOCK.lock();
    // The console is the only output; a write error has nowhere to be reported.
    let _ = SinkWriter.write_fmt(args);
    let mirror = MIRROR.load(Ordering::SeqCst);
    if mirror != 0 {
        // SAFETY: only `set_mirror` stores nonzero values, and they are `fn(&str) -> bool`.
        let mirror = unsafe { core::mem::transmute::<usize, fn(&str) -> bool>(mirror) };
        let _ = MirrorWriter(mirror).write_fmt(args);
    }
}

/// Writes without taking the console lock: for fault and panic reports, which may interrupt
/// code that holds it. Output may interleave with the interrupted line; it never deadlocks.
/// The fatal path stops the machine right after, so racing a writer that holds the lock
/// costs at most a garbled line.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let _ = SinkWriter.write_fmt(args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `println!` for the fatal paths, see [`emergency_print`].
#[macro_export]
macro_rules! emergency_println {
    () => { $crate::console::emergency_print(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::emergency_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
