//! The COMMAND register (PCI Local Bus 3.0 §6.2.2): what a function decodes and whether it
//! may master the bus or raise INTx.

use super::{Address, COMMAND, ConfigSpace, Function};

/// Respond to I/O space accesses in the function's I/O BARs.
pub const IO_SPACE: u16 = 1 << 0;
/// Respond to memory accesses in the function's memory BARs.
pub const MEMORY_SPACE: u16 = 1 << 1;
/// Let the function issue memory requests: needed for DMA and for MSI/MSI-X messages.
pub const BUS_MASTER: u16 = 1 << 2;
/// Keep the function from asserting its INTx pin.
pub const INTX_DISABLE: u16 = 1 << 10;

pub fn read(config: &(impl ConfigSpace + ?Sized), address: Address) -> u16 {
    config.read16(address, COMMAND)
}

/// Sets `bits` in COMMAND, leaving the others and STATUS as they are.
pub fn enable(config: &mut (impl ConfigSpace + ?Sized), address: Address, bits: u16) {
    let command = read(config, address);
    config.write16(address, COMMAND, command | bits);
}

/// Clears `bits` in COMMAND, leaving the others and STATUS as they are.
pub fn disable(config: &mut (impl ConfigSpace + ?Sized), address: Address, bits: u16) {
    let command = read(config, address);
    config.write16(address, COMMAND, command & !bits);
}

/// For drivers that use MSI-X: an INTx line left asserting would be an interrupt no one
/// acknowledges.
pub fn disable_intx(config: &mut (impl ConfigSpace + ?Sized), address: Address) {
    enable(config, address, INTX_DISABLE);
}

/// Runs `body` with the function's I/O and memory decode off, then restores COMMAND.
///
/// A BAR being sized reads all ones, and one being moved passes through intermediate values;
/// with decode on, the function would meanwhile claim whatever addresses those name. Host
/// bridges keep decode on, as in Linux (`quirk_mmio_always_on`): on some chipsets turning it
/// off cuts the CPU off from memory.
pub(super) fn with_decode_disabled<C: ConfigSpace + ?Sized, R>(
    config: &mut C,
    function: &Function,
    body: impl FnOnce(&mut C) -> R,
) -> R {
    let address = function.address;
    let original = read(config, address);
    let decode = IO_SPACE | MEMORY_SPACE;
    let must_disable = original & decode != 0 && !function.is_host_bridge();
    if must_disable {
        config.write16(address, COMMAND, original & !decode);
    }
    let result = body(config);
    if must_disable {
        config.write16(address, COMMAND, original);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::STATUS;
    use crate::pci::fake_config_space::FakeConfigSpace;

    const DEVICE: Address = Address {
        bus: 0,
        device: 4,
        function: 0,
    };

    fn device_with_pending_status() -> FakeConfigSpace {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x1af4, 0x1041, 0x02, 0x00);
        space.set16(DEVICE, STATUS, 1 << 15);
        space
    }

    #[test]
    fn enabling_sets_only_the_bits_asked_for_and_keeps_status() {
        let mut space = device_with_pending_status();
        enable(&mut space, DEVICE, MEMORY_SPACE);
        enable(&mut space, DEVICE, BUS_MASTER);
        assert_eq!(read(&space, DEVICE), MEMORY_SPACE | BUS_MASTER);
        assert_eq!(space.read16(DEVICE, STATUS), 1 << 15);
    }

    #[test]
    fn disabling_clears_only_the_bits_asked_for() {
        let mut space = device_with_pending_status();
        enable(&mut space, DEVICE, IO_SPACE | MEMORY_SPACE | BUS_MASTER);
        disable(&mut space, DEVICE, IO_SPACE);
        assert_eq!(read(&space, DEVICE), MEMORY_SPACE | BUS_MASTER);
        assert_eq!(space.read16(DEVICE, STATUS), 1 << 15);
    }

    #[test]
    fn disabling_intx_sets_the_interrupt_disable_bit() {
        let mut space = device_with_pending_status();
        enable(&mut space, DEVICE, MEMORY_SPACE);
        disable_intx(&mut space, DEVICE);
        assert_eq!(read(&space, DEVICE), MEMORY_SPACE | INTX_DISABLE);
    }

    #[test]
    fn decode_is_off_inside_and_restored_after() {
        let mut space = device_with_pending_status();
        enable(&mut space, DEVICE, IO_SPACE | MEMORY_SPACE | BUS_MASTER);
        let function = Function::read(&space, DEVICE).unwrap();
        let inside = with_decode_disabled(&mut space, &function, |space| read(space, DEVICE));
        assert_eq!(inside, BUS_MASTER);
        assert_eq!(read(&space, DEVICE), IO_SPACE | MEMORY_SPACE | BUS_MASTER);
        assert_eq!(space.read16(DEVICE, STATUS), 1 << 15);
    }

    #[test]
    fn a_host_bridge_keeps_decoding() {
        let mut space = FakeConfigSpace::new(256);
        space.add_device(DEVICE, 0x8086, 0x1237, 0x06, 0x00);
        enable(&mut space, DEVICE, MEMORY_SPACE);
        let function = Function::read(&space, DEVICE).unwrap();
        let inside = with_decode_disabled(&mut space, &function, |space| read(space, DEVICE));
        assert_eq!(inside, MEMORY_SPACE);
    }
}
