//! The virtio block device as the kernel uses it: synchronous reads, writes and flushes,
//! and the raw submit/complete pair for queue-depth benchmarks, each waiting for its
//! completion by interrupt or by polling.

use core::fmt;

use janus_drivers::disk_pattern::{self, Writer};
use janus_drivers::virtio_blk::{BlkError, Completion, Operation, VirtioBlk};

use super::Completion as Mode;
use super::Transport;
use super::dma::JanusHal;
use crate::time::{clock, timer};

/// A device that has not answered in this long has stopped working.
const REQUEST_TIMEOUT_NS: u64 = 5_000_000_000;

#[derive(Debug)]
pub enum IoError {
    Device(BlkError),
    /// No completion within [`REQUEST_TIMEOUT_NS`].
    Timeout,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => e.fmt(f),
            Self::Timeout => write!(
                f,
                "no completion within {} s",
                REQUEST_TIMEOUT_NS / 1_000_000_000
            ),
        }
    }
}

impl From<BlkError> for IoError {
    fn from(e: BlkError) -> Self {
        Self::Device(e)
    }
}

pub struct BlockDevice {
    pub name: alloc::string::String,
    driver: VirtioBlk<JanusHal, Transport>,
    /// The interrupt vector, when the device has one.
    vector: Option<u8>,
    mode: Mode,
}

impl BlockDevice {
    pub fn new(
        name: alloc::string::String,
        driver: VirtioBlk<JanusHal, Transport>,
        vector: Option<u8>,
        mode: Mode,
    ) -> Self {
        let mut device = Self {
            name,
            driver,
            vector,
            mode: Mode::Poll,
        };
        device.set_mode(mode);
        device
    }

    /// Sectors of 512 bytes.
    pub fn capacity(&self) -> u64 {
        self.driver.capacity()
    }

    pub fn vector(&self) -> Option<u8> {
        self.vector
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Completion by interrupt needs a vector; without one the device is polled.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = if self.vector.is_some() {
            mode
        } else {
            Mode::Poll
        };
        self.driver.enable_interrupts(self.mode == Mode::Interrupt);
    }

    /// # Safety
    /// As [`VirtioBlk::submit`]: `data` stays valid and untouched until its completion.
    pub unsafe fn submit(
        &mut self,
        operation: Operation,
        sector: u64,
        data: *mut [u8],
    ) -> Result<usize, IoError> {
        // SAFETY: the caller's contract.
        Ok(unsafe { self.driver.submit(operation, sector, data) }?)
    }

    /// Waits for the next completion.
    pub fn complete(&mut self) -> Result<Completion, IoError> {
        if let Some(done) = self.driver.poll()? {
            return Ok(done);
        }
        let deadline = clock::now().saturating_add(REQUEST_TIMEOUT_NS);
        let driver = &mut self.driver;
        let arrived = match self.mode {
            Mode::Interrupt => timer::halt_until(deadline, || driver.has_completion()),
            Mode::Poll => loop {
                if driver.has_completion() {
                    break true;
                }
                if clock::now() >= deadline {
                    break false;
                }
                core::hint::spin_loop();
            },
        };
        if !arrived {
            // Its buffers go back to their owners now; the device must not write them later.
            self.driver.abandon();
            return Err(IoError::Timeout);
        }
        self.driver.poll()?.ok_or(IoError::Timeout)
    }

    fn run(&mut self, operation: Operation, sector: u64, data: *mut [u8]) -> Result<(), IoError> {
        // SAFETY: `data` outlives the request: this waits for its completion before
        // returning, and the device is reset (dropped) if it never comes.
        let slot = unsafe { self.submit(operation, sector, data) }?;
        let done = self.complete()?;
        debug_assert_eq!(done.slot, slot, "one request in flight");
        Ok(done.result?)
    }

    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.run(Operation::Read, sector, buf)
    }

    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        // The device only reads a write's buffer; the driver's signature is shared with reads.
        self.run(
            Operation::Write,
            sector,
            core::ptr::from_ref(buf).cast_mut(),
        )
    }

    /// Whether sector 0 holds xtask's pattern: only such a disk is ever written to.
    /// `sector` is one sector of scratch space.
    pub fn holds_host_pattern(&mut self, sector: &mut [u8]) -> Result<bool, IoError> {
        self.read(0, sector)?;
        Ok(disk_pattern::classify(0, sector) == Some(Writer::Host))
    }

    /// Makes earlier writes durable; `false` when the device has no flush (its writes are
    /// durable as they complete, virtio 1.2 §5.2.6.2).
    pub fn flush(&mut self) -> Result<bool, IoError> {
        if !self.driver.has_flush() {
            return Ok(false);
        }
        self.run(Operation::Flush, 0, &mut [] as &mut [u8])?;
        Ok(true)
    }
}
