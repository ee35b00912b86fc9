//! virtio-net under the kernel's smoltcp stack ([`crate::net`]).

use core::cell::RefCell;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};

use super::Completion as Mode;
use super::Transport;
use super::dma::JanusHal;
use crate::net::Stack;
use crate::time::{clock, timer};

/// Receive buffers kept posted, and the transmit queue's depth.
const QUEUE_SIZE: usize = 16;
/// A full Ethernet frame and the virtio-net header.
const BUFFER_LEN: usize = 2048;

type Driver = VirtIONet<JanusHal, Transport, QUEUE_SIZE>;

pub struct NetDevice {
    pub name: alloc::string::String,
    pub mac: [u8; 6],
    driver: RefCell<Driver>,
    stack: Stack,
    vector: Option<u8>,
    mode: Mode,
}

/// The driver as smoltcp sees it.
struct Phy<'a>(&'a RefCell<Driver>);

struct Rx<'a> {
    driver: &'a RefCell<Driver>,
    buffer: RxBuffer,
}

struct Tx<'a>(&'a RefCell<Driver>);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.buffer.packet());
        // Posting the buffer again can only fail if the queue broke; the next receive says so.
        let _ = self.driver.borrow_mut().recycle_rx_buffer(self.buffer);
        result
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut driver = self.0.borrow_mut();
        let mut buffer = driver.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        // smoltcp has no way to hear of a lost frame; its retransmits (ARP, the host's UDP
        // retries) cover it.
        let _ = driver.send(buffer);
        result
    }
}

impl Device for Phy<'_> {
    type RxToken<'a>
        = Rx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buffer = self.0.borrow_mut().receive().ok()?;
        Some((
            Rx {
                driver: self.0,
                buffer,
            },
            Tx(self.0),
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        self.0.borrow().can_send().then_some(Tx(self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = 1514;
        capabilities
    }
}

fn now_us() -> i64 {
    (clock::now() / 1000) as i64
}

impl NetDevice {
    /// A polled device; [`Self::set_interrupt`] gives it an interrupt.
    pub fn new(
        name: alloc::string::String,
        transport: Transport,
        seed: u64,
    ) -> Result<Self, virtio_drivers::Error> {
        let driver = RefCell::new(Driver::new(transport, BUFFER_LEN)?);
        let mac = driver.borrow().mac_address();
        let stack = Stack::new(mac, &mut Phy(&driver), now_us(), seed);
        driver.borrow_mut().disable_interrupts();
        Ok(Self {
            name,
            mac,
            driver,
            stack,
            vector: None,
            mode: Mode::Poll,
        })
    }

    /// Completion by interrupt needs a vector; without one the device is polled.
    pub fn set_interrupt(&mut self, vector: Option<u8>, mode: Mode) {
        self.vector = vector;
        self.mode = if vector.is_some() { mode } else { Mode::Poll };
        if self.mode == Mode::Interrupt {
            self.driver.borrow_mut().enable_interrupts();
        } else {
            self.driver.borrow_mut().disable_interrupts();
        }
    }

    pub fn vector(&self) -> Option<u8> {
        self.vector
    }

    /// Runs the stack once; `true` if a frame moved.
    pub fn poll(&mut self) -> bool {
        self.stack.poll(now_us(), &mut Phy(&self.driver))
    }

    pub fn stack(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// Waits until a frame arrives, the stack has a timer due, or the clock reaches
    /// `deadline` (ns), then runs the stack.
    pub fn wait(&mut self, deadline: u64) {
        let due = self
            .stack
            .poll_delay_us(now_us())
            .map_or(deadline, |us| clock::now().saturating_add(us * 1000));
        let until = deadline.min(due);
        let driver = &self.driver;
        match self.mode {
            Mode::Interrupt => {
                timer::halt_until(until, || driver.borrow().can_recv());
            }
            Mode::Poll => {
                while !driver.borrow().can_recv() && clock::now() < until {
                    core::hint::spin_loop();
                }
            }
        }
        self.poll();
    }
}
