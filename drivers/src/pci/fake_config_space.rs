//! An in-memory configuration space for host tests.
//!
//! It models what the PCI code relies on: absent functions read all ones; each bit is
//! read-only, read-write or write-1-to-clear; a BAR's address bits below its size are
//! read-only zero, so writing all ones reads back the size mask. It also records BAR writes
//! made while the function decodes, which real hardware would turn into stray decoding.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::command::{BUS_MASTER, INTX_DISABLE, IO_SPACE, MEMORY_SPACE};
use super::{
    Address, BAR0, CLASS, COMMAND, ConfigSpace, DEVICE_ID, HEADER_TYPE, INTERRUPT_LINE,
    PRIMARY_BUS, SECONDARY_BUS, STATUS, SUBORDINATE_BUS, VENDOR_ID,
};

pub struct FakeConfigSpace {
    size: u16,
    buses: RangeInclusive<u8>,
    functions: BTreeMap<Address, FakeFunction>,
    /// BAR writes made while IO_SPACE or MEMORY_SPACE was set: (function, offset).
    pub writes_while_decoding: Vec<(Address, u16)>,
    /// Every write32, in order.
    pub writes: Vec<(Address, u16, u32)>,
    /// read32 calls, so tests of corrupt input can bound the work done.
    pub reads: Cell<usize>,
}

struct FakeFunction {
    bytes: Vec<u8>,
    /// Bits software can write.
    writable: Vec<u8>,
    /// Bits a written 1 clears.
    write_one_to_clear: Vec<u8>,
}

impl FakeConfigSpace {
    pub fn new(size: u16) -> Self {
        Self {
            size,
            buses: 0..=255,
            functions: BTreeMap::new(),
            writes_while_decoding: Vec::new(),
            writes: Vec::new(),
            reads: Cell::new(0),
        }
    }

    pub fn with_buses(mut self, buses: RangeInclusive<u8>) -> Self {
        self.buses = buses;
        self
    }

    /// A type 0 function with writable COMMAND decode/master/INTx bits, RW1C STATUS error
    /// bits and a writable Interrupt Line.
    pub fn add_device(
        &mut self,
        address: Address,
        vendor: u16,
        device: u16,
        class: u8,
        subclass: u8,
    ) {
        let size = usize::from(self.size);
        self.functions.insert(
            address,
            FakeFunction {
                bytes: vec![0; size],
                writable: vec![0; size],
                write_one_to_clear: vec![0; size],
            },
        );
        self.set16(address, VENDOR_ID, vendor);
        self.set16(address, DEVICE_ID, device);
        self.set32(
            address,
            CLASS,
            u32::from(class) << 24 | u32::from(subclass) << 16 | 0x01,
        );
        let command_bits = IO_SPACE | MEMORY_SPACE | BUS_MASTER | INTX_DISABLE;
        let status_error_bits: u16 = 0xf900;
        self.make_writable(address, COMMAND, u32::from(command_bits));
        self.function(address).write_one_to_clear[usize::from(STATUS)..][..2]
            .copy_from_slice(&status_error_bits.to_le_bytes());
        self.make_writable(address, INTERRUPT_LINE, 0xff);
    }

    /// A PCI-to-PCI bridge (class 06/04, header type 1) forwarding to `secondary`.
    pub fn add_bridge(&mut self, address: Address, secondary: u8, subordinate: u8) {
        self.add_device(address, 0x1b36, 0x0001, 0x06, 0x04);
        self.set8(address, HEADER_TYPE, 0x01);
        self.set8(address, PRIMARY_BUS, address.bus);
        self.set8(address, SECONDARY_BUS, secondary);
        self.set8(address, SUBORDINATE_BUS, subordinate);
    }

    pub fn set_multifunction(&mut self, address: Address) {
        let header_type = self.get8(address, HEADER_TYPE);
        self.set8(address, HEADER_TYPE, header_type | 0x80);
    }

    /// Bits of the dword at `offset` that software may write, as a mask; read-write bits
    /// not in it become read-only.
    pub fn make_writable(&mut self, address: Address, offset: u16, mask: u32) {
        let start = usize::from(offset);
        self.function(address).writable[start..start + 4].copy_from_slice(&mask.to_le_bytes());
    }

    /// A BAR reading `flags` in its low bits and decoding `size` bytes: its address bits
    /// below the size are hardwired to zero.
    fn bar(&mut self, address: Address, index: u16, flags: u32, writable: u32) {
        let offset = BAR0 + 4 * index;
        self.set32(address, offset, flags);
        self.make_writable(address, offset, writable);
    }

    pub fn add_memory32_bar(&mut self, address: Address, index: u16, size: u32, prefetch: bool) {
        let flags = if prefetch { 0x8 } else { 0x0 };
        self.bar(address, index, flags, !(size - 1) & !0xf);
    }

    pub fn add_memory64_bar(&mut self, address: Address, index: u16, size: u64, prefetch: bool) {
        let flags = 0x4 | if prefetch { 0x8 } else { 0x0 };
        let mask = !(size - 1);
        self.bar(address, index, flags, mask as u32 & !0xf);
        self.bar(address, index + 1, 0, (mask >> 32) as u32);
    }

    pub fn add_io_bar(&mut self, address: Address, index: u16, size: u32) {
        self.bar(address, index, 0x1, !(size - 1) & !0x3);
    }

    pub fn set32(&mut self, address: Address, offset: u16, value: u32) {
        let start = usize::from(offset);
        self.function(address).bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set16(&mut self, address: Address, offset: u16, value: u16) {
        let start = usize::from(offset);
        self.function(address).bytes[start..start + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set8(&mut self, address: Address, offset: u16, value: u8) {
        self.function(address).bytes[usize::from(offset)] = value;
    }

    pub fn get32(&self, address: Address, offset: u16) -> u32 {
        let start = usize::from(offset);
        let bytes = &self.functions[&address].bytes[start..start + 4];
        u32::from_le_bytes(bytes.try_into().unwrap())
    }

    pub fn get8(&self, address: Address, offset: u16) -> u8 {
        self.functions[&address].bytes[usize::from(offset)]
    }

    fn function(&mut self, address: Address) -> &mut FakeFunction {
        self.functions
            .get_mut(&address)
            .unwrap_or_else(|| panic!("test bug: no fake function at {address}"))
    }

    fn is_bar(&self, address: Address, offset: u16) -> bool {
        let bars = match self.get8(address, HEADER_TYPE) & 0x7f {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        (BAR0..BAR0 + 4 * bars).contains(&offset)
    }

    fn is_reachable(&self, address: Address, offset: u16) -> bool {
        address.is_valid()
            && offset.is_multiple_of(4)
            && offset < self.size
            && self.buses.contains(&address.bus)
    }
}

impl ConfigSpace for FakeConfigSpace {
    fn read32(&self, address: Address, offset: u16) -> u32 {
        self.reads.set(self.reads.get() + 1);
        if !self.is_reachable(address, offset) || !self.functions.contains_key(&address) {
            return u32::MAX;
        }
        self.get32(address, offset)
    }

    fn write32(&mut self, address: Address, offset: u16, value: u32) {
        if !self.is_reachable(address, offset) || !self.functions.contains_key(&address) {
            return;
        }
        self.writes.push((address, offset, value));
        let decoding = self.get32(address, COMMAND) & u32::from(IO_SPACE | MEMORY_SPACE) != 0;
        if decoding && self.is_bar(address, offset) {
            self.writes_while_decoding.push((address, offset));
        }
        let function = self.function(address);
        let start = usize::from(offset);
        for (i, new) in value.to_le_bytes().into_iter().enumerate() {
            let old = function.bytes[start + i];
            let writable = function.writable[start + i];
            let clearable = function.write_one_to_clear[start + i];
            let read_only = old & !(writable | clearable);
            function.bytes[start + i] = read_only | (new & writable) | (old & clearable & !new);
        }
    }

    fn size(&self) -> u16 {
        self.size
    }

    fn buses(&self) -> RangeInclusive<u8> {
        self.buses.clone()
    }
}
