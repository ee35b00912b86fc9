//! Configuration space access: the [`ConfigSpace`] trait and its two x86 mechanisms, port
//! I/O through 0xCF8/0xCFC ([`PortIo`], every PC chipset including QEMU's `pc`) and the
//! memory-mapped PCI Express ECAM ([`Ecam`], QEMU's `q35`, found through ACPI's MCFG).

use core::cell::Cell;
use core::marker::PhantomData;
use core::ops::RangeInclusive;

use x86_64::instructions::port::Port;

use super::{Address, COMMAND};

/// Reads and writes of one configuration space, in dwords.
///
/// An access addresses nothing, so reads return all ones and writes are dropped, when the
/// offset is not 4-aligned, lies at or beyond [`size`](Self::size), the address is not
/// [valid](Address::is_valid) or its bus is outside [`buses`](Self::buses). All ones is also
/// what an absent function returns, so callers need no separate check.
pub trait ConfigSpace {
    fn read32(&self, address: Address, offset: u16) -> u32;
    fn write32(&mut self, address: Address, offset: u16, value: u32);

    /// Bytes of configuration space per function: 256, or 4096 for PCI Express ECAM.
    fn size(&self) -> u16;

    /// The buses this mechanism reaches.
    fn buses(&self) -> RangeInclusive<u8> {
        0..=255
    }

    /// All ones if `offset` is odd.
    fn read16(&self, address: Address, offset: u16) -> u16 {
        if !offset.is_multiple_of(2) {
            return u16::MAX;
        }
        let dword = self.read32(address, offset & !3);
        (dword >> (u32::from(offset & 2) * 8)) as u16
    }

    fn read8(&self, address: Address, offset: u16) -> u8 {
        let dword = self.read32(address, offset & !3);
        (dword >> (u32::from(offset & 3) * 8)) as u8
    }

    /// Writes 16 bits by read-modify-write of the dword holding them; dropped if `offset` is
    /// odd.
    ///
    /// The other half of the dword is written back as read, which is wrong where it holds
    /// write-1-to-clear bits: writing back a set bit clears it. STATUS is such a register and
    /// shares its dword with COMMAND, so a write to COMMAND writes zeros into STATUS. Other
    /// registers beside write-1-to-clear ones (a bridge's I/O base and limit beside its
    /// Secondary Status at 0x1e, PCI Express Device and Link Control beside their Status
    /// registers) need a `write32` with that half zero instead.
    fn write16(&mut self, address: Address, offset: u16, value: u16) {
        if !offset.is_multiple_of(2) {
            return;
        }
        let dword_offset = offset & !3;
        let shift = u32::from(offset & 2) * 8;
        let other_half = if dword_offset == COMMAND && shift == 0 {
            0
        } else {
            self.read32(address, dword_offset) & !(0xffff << shift)
        };
        self.write32(
            address,
            dword_offset,
            other_half | u32::from(value) << shift,
        );
    }
}

/// Whether a dword access at `offset` addresses something in a space of `size` bytes.
fn is_dword_in_space(size: u16, address: Address, offset: u16) -> bool {
    address.is_valid() && offset.is_multiple_of(4) && offset < size
}

/// Configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2): a dword address written to
/// CONFIG_ADDRESS selects the register that CONFIG_DATA then reads or writes.
///
/// Not `Sync`: an access is two port accesses, and another CPU selecting a register between
/// them would redirect it. Share it behind a lock.
pub struct PortIo {
    not_sync: PhantomData<Cell<()>>,
}

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: turns the next CONFIG_DATA access into a configuration cycle.
const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;

impl PortIo {
    /// # Safety
    /// The machine must implement configuration mechanism #1 (every PC chipset since the
    /// PCI 2.0 era, QEMU's `pc` and `q35` included), and nothing else may use ports
    /// 0xCF8..=0xCFF while this value lives: no second `PortIo`, no other driver, no
    /// interrupt handler that touches them.
    pub unsafe fn new() -> Self {
        Self {
            not_sync: PhantomData,
        }
    }
}

/// The CONFIG_ADDRESS value selecting `offset`'s dword: bus in bits 23:16, device in 15:11,
/// function in 10:8, dword offset in 7:2.
fn port_io_address(address: Address, offset: u16) -> u32 {
    CONFIG_ADDRESS_ENABLE
        | u32::from(address.bus) << 16
        | u32::from(address.device) << 11
        | u32::from(address.function) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigSpace for PortIo {
    fn read32(&self, address: Address, offset: u16) -> u32 {
        if !is_dword_in_space(self.size(), address, offset) {
            return u32::MAX;
        }
        let mut select = Port::<u32>::new(CONFIG_ADDRESS);
        let mut data = Port::<u32>::new(CONFIG_DATA);
        // SAFETY: the ports belong to this value (constructor contract) and it is not Sync,
        // so no one selects another register between the two accesses; configuration reads
        // have no effect on memory.
        unsafe {
            select.write(port_io_address(address, offset));
            data.read()
        }
    }

    fn write32(&mut self, address: Address, offset: u16, value: u32) {
        if !is_dword_in_space(self.size(), address, offset) {
            return;
        }
        let mut select = Port::<u32>::new(CONFIG_ADDRESS);
        let mut data = Port::<u32>::new(CONFIG_DATA);
        // SAFETY: as in `read32`. The write changes a device's configuration, which is what
        // the caller asked for; moving a BAR over memory in use is prevented by the callers
        // (BARs are placed only inside a window chosen clear of RAM).
        unsafe {
            select.write(port_io_address(address, offset));
            data.write(value);
        }
    }

    fn size(&self) -> u16 {
        256
    }
}

/// PCI Express Enhanced Configuration Access Mechanism (PCIe Base 4.0 §7.2.2): each
/// function's 4 KiB of configuration space mapped at bus << 20 | device << 15 |
/// function << 12 from the base.
pub struct Ecam {
    base: *mut u8,
    start_bus: u8,
    end_bus: u8,
}

impl Ecam {
    /// # Safety
    /// `base` must point to a mapping, uncached, of the ECAM region for buses
    /// `start_bus..=end_bus` (`end_bus - start_bus + 1` MiB), and stay mapped while the value
    /// lives; nothing else may write configuration space meanwhile. An MCFG entry's base
    /// address is where bus 0 would be, so map from `base + (start_bus << 20)`.
    /// If `end_bus < start_bus` the value reaches no bus.
    pub unsafe fn new(base: *mut u8, start_bus: u8, end_bus: u8) -> Self {
        Self {
            base,
            start_bus,
            end_bus,
        }
    }

    fn register(&self, address: Address, offset: u16) -> Option<*mut u32> {
        let mapped = self.buses().contains(&address.bus);
        if !mapped || !is_dword_in_space(self.size(), address, offset) {
            return None;
        }
        let byte_offset = ecam_offset(address, offset, self.start_bus);
        // SAFETY: the bus is in start_bus..=end_bus and the function and offset are in range,
        // so the offset lies inside the mapping (constructor contract).
        Some(unsafe { self.base.add(byte_offset) }.cast::<u32>())
    }
}

/// Byte offset from the start of `start_bus`'s configuration space; `address.bus` must not
/// be below `start_bus`.
fn ecam_offset(address: Address, offset: u16, start_bus: u8) -> usize {
    usize::from(address.bus - start_bus) << 20
        | usize::from(address.device) << 15
        | usize::from(address.function) << 12
        | usize::from(offset)
}

// SAFETY: the value holds only the address of a mapping that outlives it (constructor
// contract); configuration space is one set of registers for all CPUs.
unsafe impl Send for Ecam {}
// SAFETY: shared references only read, and each read is one MMIO access with no side effect,
// so reads from several CPUs cannot interfere.
unsafe impl Sync for Ecam {}

impl ConfigSpace for Ecam {
    fn read32(&self, address: Address, offset: u16) -> u32 {
        match self.register(address, offset) {
            // SAFETY: `register` returned a 4-aligned dword inside the mapping; configuration
            // reads have no side effects.
            Some(register) => unsafe { register.read_volatile() },
            None => u32::MAX,
        }
    }

    fn write32(&mut self, address: Address, offset: u16, value: u32) {
        if let Some(register) = self.register(address, offset) {
            // SAFETY: as in `read32`; the write changes only the device's configuration.
            unsafe { register.write_volatile(value) }
        }
    }

    fn size(&self) -> u16 {
        4096
    }

    fn buses(&self) -> RangeInclusive<u8> {
        self.start_bus..=self.end_bus
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::STATUS;
    use crate::pci::fake_config_space::FakeConfigSpace;

    const DEVICE: Address = Address {
        bus: 0,
        device: 3,
        function: 0,
    };

    #[test]
    fn the_port_io_address_packs_bus_device_function_and_dword() {
        let address = Address {
            bus: 0x12,
            device: 0x1f,
            function: 5,
        };
        assert_eq!(port_io_address(address, 0x3d), 0x8012_fd3c);
        assert_eq!(port_io_address(DEVICE, 0), 0x8000_1800);
    }

    #[test]
    fn the_ecam_offset_gives_each_function_4_kib_and_each_bus_1_mib() {
        let address = Address {
            bus: 3,
            device: 2,
            function: 1,
        };
        assert_eq!(ecam_offset(address, 0x100, 0), 0x31_1100);
        assert_eq!(ecam_offset(address, 0xffc, 2), 0x11_1ffc);
    }

    #[test]
    fn narrow_reads_pick_their_bytes_out_of_the_dword() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        space.set32(DEVICE, 0x40, 0x4433_2211);
        assert_eq!(space.read16(DEVICE, 0x40), 0x2211);
        assert_eq!(space.read16(DEVICE, 0x42), 0x4433);
        assert_eq!(space.read8(DEVICE, 0x43), 0x44);
        assert_eq!(space.read8(DEVICE, 0x41), 0x22);
    }

    #[test]
    fn misaligned_and_out_of_range_accesses_read_all_ones_and_write_nothing() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        space.make_writable(DEVICE, 0x40, u32::MAX);
        assert_eq!(space.read16(DEVICE, 0x41), u16::MAX);
        assert_eq!(space.read32(DEVICE, 0x100), u32::MAX);
        assert_eq!(space.read8(DEVICE, 0x100), u8::MAX);
        space.write16(DEVICE, 0x41, 0);
        assert_eq!(space.get32(DEVICE, 0x40), 0);
        space.write16(DEVICE, 0x40, 0x1234);
        assert_eq!(space.get32(DEVICE, 0x40), 0x1234);
        let invalid = Address {
            device: 32,
            ..DEVICE
        };
        assert_eq!(space.read32(invalid, 0), u32::MAX);
    }

    #[test]
    fn writing_command_leaves_pending_status_bits_set() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        let received_master_abort = 1 << 13;
        space.set16(DEVICE, STATUS, received_master_abort);
        space.write16(DEVICE, COMMAND, 0x0002);
        assert_eq!(space.read16(DEVICE, COMMAND), 0x0002);
        assert_eq!(space.read16(DEVICE, STATUS), received_master_abort);
    }

    #[test]
    fn writing_status_clears_the_bits_written_and_keeps_command() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1000, 0x02, 0x00);
        space.set16(DEVICE, COMMAND, 0x0007);
        space.set16(DEVICE, STATUS, 0x3000);
        space.write16(DEVICE, STATUS, 0x1000);
        assert_eq!(space.read16(DEVICE, STATUS), 0x2000);
        assert_eq!(space.read16(DEVICE, COMMAND), 0x0007);
    }

    #[test]
    fn ecam_reads_and_writes_the_mapped_function_and_nothing_outside_its_buses() {
        // One bus: 1 MiB of u32s, so every access is aligned.
        let mut memory = vec![0u32; (1 << 20) / 4];
        let function = Address {
            bus: 4,
            device: 1,
            function: 2,
        };
        memory[ecam_offset(function, 0, 4) / 4] = 0x1234_1af4;
        // SAFETY: `memory` is a live, exclusively borrowed 1 MiB buffer standing in for bus
        // 4's mapping, and it outlives `ecam`.
        let mut ecam = unsafe { Ecam::new(memory.as_mut_ptr().cast(), 4, 4) };
        assert_eq!(ecam.read16(function, 0), 0x1af4);
        assert_eq!(ecam.read16(function, 2), 0x1234);
        ecam.write32(function, 0xffc, 0xdead_beef);
        assert_eq!(ecam.read32(function, 0xffc), 0xdead_beef);

        let other_bus = Address { bus: 5, ..function };
        assert_eq!(ecam.read32(other_bus, 0), u32::MAX);
        ecam.write32(other_bus, 0, 0);
        assert_eq!(ecam.read32(Address { bus: 3, ..function }, 0), u32::MAX);
        assert_eq!(ecam.read32(function, 0x1000), u32::MAX);
        assert_eq!(ecam.buses(), 4..=4);
        assert_eq!(memory.iter().filter(|&&word| word != 0).count(), 2);
    }
}
