//! The kernel console: COM1 behind `print!`/`println!` and the `log` facade.

use core::fmt::{self, Write};

use janus_drivers::uart16550::{COM1, Uart16550};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

// SAFETY: COM1 is owned by the console; nothing else in the kernel programs it.
static SERIAL: Mutex<Uart16550> = Mutex::new(unsafe { Uart16550::new(COM1) });

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

/// Programs COM1 and installs the logger at `info`; the command line may change the level.
pub fn init() {
    SERIAL.lock().init();
    // Only fails when a logger is already set, i.e. on a second call, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

pub fn print(args: fmt::Arguments<'_>) {
    // The console is the only output; a write error has nowhere to be reported.
    let _ = SERIAL.lock().write_fmt(args);
}

/// Writes without taking the console lock: for fault and panic reports, which may interrupt
/// code that holds it. Output may interleave with the interrupted line; it never deadlocks.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    // SAFETY: a second handle to COM1; the fatal path stops the machine right after, so the
    // two handles never program the UART concurrently in a way that matters.
    let mut serial = unsafe { Uart16550::new(COM1) };
    let _ = serial.write_fmt(args);
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
