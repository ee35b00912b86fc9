//! 16550 UART on x86 I/O ports, output only: the serial console.

use x86_64::instructions::port::Port;

/// COM1's conventional I/O base.
pub const COM1: u16 = 0x3f8;

const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;

const LINE_STATUS_THR_EMPTY: u8 = 1 << 5;
/// Spins allowed for the transmitter to drain before a byte is written anyway. An absent UART
/// reads 0xff (THR empty) and an emulated one drains at once, so this only bounds a stuck one.
const MAX_TX_SPINS: u32 = 100_000;

pub struct Uart16550 {
    base: u16,
}

impl Uart16550 {
    /// # Safety
    /// `base` must be the I/O base of a 16550-compatible UART (or of nothing: writes to absent
    /// ports are dropped), and no one else may program that UART.
    pub const unsafe fn new(base: u16) -> Self {
        Self { base }
    }

    fn out(&self, register: u16, value: u8) {
        let mut port = Port::<u8>::new(self.base + register);
        // SAFETY: the port belongs to this UART (constructor contract); writing its registers
        // has no effect on memory.
        unsafe { port.write(value) }
    }

    fn status(&self) -> u8 {
        let mut port = Port::<u8>::new(self.base + LINE_STATUS);
        // SAFETY: reading the line status register has no side effects.
        unsafe { port.read() }
    }

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
        self.out(INTERRUPT_ENABLE, 0x00);
        self.out(LINE_CONTROL, 0x80); // DLAB: the next two writes set the divisor
        self.out(DATA, 0x01);
        self.out(INTERRUPT_ENABLE, 0x00);
        self.out(LINE_CONTROL, 0x03);
        self.out(FIFO_CONTROL, 0xc7);
        self.out(MODEM_CONTROL, 0x03);
    }

    pub fn write_byte(&mut self, byte: u8) {
        let mut spins = 0;
        while self.status() & LINE_STATUS_THR_EMPTY == 0 && spins < MAX_TX_SPINS {
            spins += 1;
            core::hint::spin_loop();
        }
        self.out(DATA, byte);
    }
}

impl core::fmt::Write for Uart16550 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}
