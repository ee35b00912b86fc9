//! The PCI bus: configuration space through ECAM when ACPI's MCFG gives a window, else
//! through ports 0xCF8/0xCFC; every bus walked; the BARs of the devices the kernel drives
//! sized, placed (qboot leaves them unassigned) and mapped uncached; interrupts by MSI-X, or
//! by INTx through the IOAPIC, on the input the chipset routes the pin to.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::{Range, RangeInclusive};

use janus_drivers::isa_irq;
use janus_drivers::pci::msix::{self, MsixCapability, MsixTable};
use janus_drivers::pci::virtio::{self as virtio_pci, VirtioPciCapability};
use janus_drivers::pci::{
    self as bus, Address, Bar, BarAllocator, ConfigSpace, Ecam, Function, IntxLine, IntxRouting,
    PortIo, command,
};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use x86_64::{PhysAddr, VirtAddr};

use super::dma::JanusHal;
use super::{Candidate, Connect, irq};
use crate::boot::cmdline::PciInterrupt;
use crate::boot::pvh::BootInfo;
use crate::mm::device_memory;
use crate::platform::{acpi, apic};
use crate::println;

/// How configuration space is reached. Copied into every user (virtio-drivers wants its
/// own), which is sound because the kernel runs one thing at a time.
#[derive(Clone, Copy)]
enum Mechanism {
    PortIo,
    Ecam {
        base: VirtAddr,
        start_bus: u8,
        end_bus: u8,
    },
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Self::PortIo => "port-io",
            Self::Ecam { .. } => "ecam",
        }
    }
}

impl Mechanism {
    fn port_io() -> PortIo {
        // SAFETY: ports 0xCF8/0xCFC are PCI configuration mechanism #1 on every PC, and only
        // this kernel, one access at a time, uses them.
        unsafe { PortIo::new() }
    }

    fn ecam(base: VirtAddr, start_bus: u8, end_bus: u8) -> Ecam {
        // SAFETY: `mechanism` mapped the window of these buses for good before making this.
        unsafe { Ecam::new(base.as_mut_ptr(), start_bus, end_bus) }
    }
}

impl ConfigSpace for Mechanism {
    fn read32(&self, address: Address, offset: u16) -> u32 {
        match *self {
            Self::PortIo => Self::port_io().read32(address, offset),
            Self::Ecam {
                base,
                start_bus,
                end_bus,
            } => Self::ecam(base, start_bus, end_bus).read32(address, offset),
        }
    }

    fn write32(&mut self, address: Address, offset: u16, value: u32) {
        match *self {
            Self::PortIo => Self::port_io().write32(address, offset, value),
            Self::Ecam {
                base,
                start_bus,
                end_bus,
            } => Self::ecam(base, start_bus, end_bus).write32(address, offset, value),
        }
    }

    fn size(&self) -> u16 {
        match self {
            Self::PortIo => 256,
            Self::Ecam { .. } => 4096,
        }
    }

    fn buses(&self) -> RangeInclusive<u8> {
        match *self {
            Self::PortIo => 0..=255,
            Self::Ecam {
                start_bus, end_bus, ..
            } => start_bus..=end_bus,
        }
    }
}

/// virtio-drivers reads the virtio capabilities itself, through its own trait.
struct VirtioCam(Mechanism);

impl ConfigurationAccess for VirtioCam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        self.0.read32(address_of(df), u16::from(register_offset))
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        self.0
            .write32(address_of(df), u16::from(register_offset), data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self(self.0)
    }
}

fn address_of(df: DeviceFunction) -> Address {
    Address {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

/// What the bus holds besides virtio devices.
pub struct Bus {
    /// The configuration mechanism (`ecam`, `port-io`), or `None` without a PCI bus.
    pub root: Option<&'static str>,
    /// An IDE controller in compatibility mode answers at the legacy ports.
    pub ide: bool,
}

/// Finds the bus, walks it, and adds a candidate for every virtio function, which will
/// interrupt as `interrupt` says.
pub fn probe(
    boot: &BootInfo,
    acpi: Option<&acpi::Platform>,
    interrupt: PciInterrupt,
    candidates: &mut Vec<Candidate>,
) -> Bus {
    let Some(mut config) = mechanism(acpi) else {
        return Bus {
            root: None,
            ide: false,
        };
    };
    let mut functions = Vec::new();
    bus::enumerate(
        &config,
        |f| functions.push(f),
        |p| println!("warning: PCI: {p}"),
    );
    let mut reserved: Vec<Range<u64>> = boot
        .memory_map
        .regions()
        .iter()
        .map(|r| r.start..r.end())
        .collect();
    if let Some(ecam) = acpi.and_then(|a| a.pci_ecam.first()) {
        reserved.push(ecam.base..ecam.base + ((u64::from(ecam.end_bus) + 1) << 20));
    }
    let mut window = bus::choose_window(&reserved).map(BarAllocator::new);
    let routing = functions
        .iter()
        .find(|f| f.address == HOST_BRIDGE)
        .and_then(|f| IntxRouting::of_host_bridge(f.vendor_id, f.device_id));
    let overrides = acpi.map_or(&[][..], |a| &a.isa_overrides[..]);
    let mut ide = false;
    for function in &functions {
        log::info!(
            "pci: {} {:04x}:{:04x} class {:02x}:{:02x}:{:02x}",
            function.address,
            function.vendor_id,
            function.device_id,
            function.class,
            function.subclass,
            function.prog_if
        );
        // Mass storage / IDE, with the primary channel in compatibility mode (programming
        // interface bit 0 clear): its registers are the legacy ports.
        if function.class == 0x01 && function.subclass == 0x01 && function.prog_if & 1 == 0 {
            command::enable(&mut config, function.address, command::IO_SPACE);
            ide = true;
        }
        if virtio_pci::virtio_device_type(function.vendor_id, function.device_id).is_none() {
            continue;
        }
        let intx = intx_line(&config, routing, overrides, function);
        match virtio_candidate(config, function, window.as_mut(), interrupt, intx) {
            Ok(candidate) => candidates.push(candidate),
            Err(e) => println!(
                "warning: virtio device at pci {} refused: {e}",
                function.address
            ),
        }
    }
    Bus {
        root: Some(config.name()),
        ide,
    }
}

/// ECAM from the MCFG's window for segment 0, else port I/O if a host bridge answers there.
fn mechanism(acpi: Option<&acpi::Platform>) -> Option<Mechanism> {
    let ecam = acpi.and_then(|a| a.pci_ecam.iter().find(|r| r.segment == 0));
    if let Some(region) = ecam {
        let start = region.bus_address(region.start_bus)?;
        let len = (u64::from(region.end_bus - region.start_bus) + 1) << 20;
        match device_memory::map(PhysAddr::new(start), len) {
            Ok(base) => {
                return Some(Mechanism::Ecam {
                    base,
                    start_bus: region.start_bus,
                    end_bus: region.end_bus,
                });
            }
            Err(e) => println!("warning: PCI ECAM at {start:#x} not used: {e}"),
        }
    }
    let ports = Mechanism::PortIo;
    (ports.read32(HOST_BRIDGE, 0) != u32::MAX).then_some(ports)
}

const HOST_BRIDGE: Address = Address {
    bus: 0,
    device: 0,
    function: 0,
};

/// The IOAPIC input `function`'s INTx reaches and how the line signals (see
/// [`bus::intx_route`] and [`bus::reached_input`]), reading the PIIX3's PIRQ route register
/// when the pin goes through one. `None` without a pin, or when the line is not routed.
fn intx_line(
    config: &Mechanism,
    routing: Option<IntxRouting>,
    overrides: &[isa_irq::Override],
    function: &Function,
) -> Option<IntxLine> {
    let route = bus::intx_route(routing, function);
    let pirq_route = |pirq| {
        config.read8(
            bus::PIIX3_ISA_BRIDGE,
            bus::PIIX3_PIRQ_ROUTE + u16::from(pirq),
        )
    };
    bus::reached_input(route, pirq_route, overrides)
}

/// Places and maps the function's memory BARs, turns on decoding and bus mastering, and
/// builds its transport, to interrupt by MSI-X or, on `intx`, INTx as `interrupt` allows.
fn virtio_candidate(
    mut config: Mechanism,
    function: &Function,
    window: Option<&mut BarAllocator>,
    interrupt: PciInterrupt,
    intx: Option<IntxLine>,
) -> Result<Candidate, String> {
    let address = function.address;
    let bars = place_bars(&mut config, function, window)?;
    command::enable(
        &mut config,
        address,
        command::MEMORY_SPACE | command::BUS_MASTER,
    );
    let capabilities: Vec<VirtioPciCapability> = virtio_pci::virtio_capabilities(&config, address)
        .filter_map(Result::ok)
        .collect();
    let region = |cfg_type| -> Option<VirtAddr> {
        let cap = capabilities.iter().find(|c| c.cfg_type == cfg_type)?;
        let Some(Bar::Memory { address: base, .. }) = bars.get(usize::from(cap.bar))? else {
            return None;
        };
        device_memory::find(
            PhysAddr::new(base + u64::from(cap.offset)),
            u64::from(cap.length),
        )
    };
    let common = region(virtio_pci::CFG_TYPE_COMMON).ok_or("no common configuration region")?;
    let isr = region(virtio_pci::CFG_TYPE_ISR);
    let mut root = PciRoot::new(VirtioCam(config));
    let device_function = DeviceFunction {
        bus: address.bus,
        device: address.device,
        function: address.function,
    };
    let transport =
        PciTransport::new::<JanusHal, _>(&mut root, device_function).map_err(|e| format!("{e}"))?;
    let msix = MsixCapability::find(&config, address).map_err(|e| format!("{e}"))?;
    let connect: Option<Connect> = match (msix, interrupt) {
        (Some(msix), PciInterrupt::Msix) => {
            let table_bar = bars
                .get(usize::from(msix.table_bar))
                .copied()
                .flatten()
                .ok_or("the MSI-X table's BAR is not a placed memory BAR")?;
            let table = msix.table_region(&table_bar).map_err(|e| format!("{e}"))?;
            let table = device_memory::find(PhysAddr::new(table.start), table.end - table.start)
                .ok_or("the MSI-X table is not mapped")?;
            Some(Box::new(move |queues| {
                connect_msix(config, address, msix, table, common, queues)
            }))
        }
        (msix, _) => {
            // Left enabled by an earlier owner, MSI-X would keep the function from ever
            // asserting INTx (PCI Local Bus 3.0 §6.8.2.3).
            if let Some(msix) = msix {
                msix::set_enabled(&mut config, address, &msix, false, false);
            }
            match (isr, intx) {
                (Some(isr), Some(line)) => {
                    Some(Box::new(move |_| connect_intx(config, address, isr, line)))
                }
                _ => None,
            }
        }
    };
    Ok(Candidate {
        name: format!("pci {address}"),
        transport: transport.into(),
        connect,
    })
}

/// Sizes every BAR, places the unassigned memory BARs in `window`, and maps all memory
/// BARs. Returns them by index; I/O BARs are left alone (virtio's modern registers are all
/// in memory).
fn place_bars(
    config: &mut Mechanism,
    function: &Function,
    mut window: Option<&mut BarAllocator>,
) -> Result<[Option<Bar>; 6], String> {
    let mut placed = [None; 6];
    for (index, probed) in bus::probe_bars(config, function).into_iter().enumerate() {
        let Some(probed) = probed else { continue };
        let mut bar = probed.map_err(|e| format!("BAR{index}: {e}"))?;
        let Bar::Memory { address, size, .. } = &mut bar else {
            continue;
        };
        if *address == 0 {
            let at = window
                .as_deref_mut()
                .and_then(|w| w.allocate(*size))
                .ok_or_else(|| {
                    format!("BAR{index}: no room for {size:#x} bytes in the PCI hole")
                })?;
            *address = at;
            bus::assign_memory_bar(config, function, index, &bar, at)
                .map_err(|e| format!("BAR{index}: {e}"))?;
        }
        if let Bar::Memory { address, size, .. } = bar {
            device_memory::map(PhysAddr::new(address), size)
                .map_err(|e| format!("BAR{index}: {e}"))?;
            log::info!(
                "pci: {} BAR{index}: {size:#x} bytes at {address:#x}",
                function.address
            );
        }
        placed[index] = Some(bar);
    }
    Ok(placed)
}

/// Entry 0 of the MSI-X table delivers `vector`; the configuration change interrupt gets
/// none and every queue uses entry 0 (virtio 1.2 §4.1.5.1.2). A device that does not take
/// the vector reads back `NO_VECTOR`.
fn connect_msix(
    mut config: Mechanism,
    address: Address,
    msix: MsixCapability,
    table: VirtAddr,
    common: VirtAddr,
    queues: u16,
) -> Result<u8, String> {
    let vector = irq::allocate(irq::Ack::Message).ok_or("no interrupt vector left")?;
    let apic_id = (crate::platform::cpuid(1, 0).ebx >> 24) as u8;
    let (message_address, data) = msix::message(apic_id, vector).map_err(|e| format!("{e}"))?;
    // SAFETY: the table lies in a BAR mapped uncached for good, with `table_size` entries.
    let mut entries = unsafe { MsixTable::new(table.as_mut_ptr(), msix.table_size) };
    entries
        .program(0, message_address, data)
        .map_err(|e| format!("{e}"))?;
    let register = |offset: usize| (common + offset as u64).as_mut_ptr::<u16>();
    // SAFETY: the common configuration region is mapped uncached; these are its 16-bit
    // fields (virtio 1.2 §4.1.4.3), written as the driver does during setup.
    unsafe {
        register(virtio_pci::COMMON_MSIX_CONFIG).write_volatile(virtio_pci::NO_VECTOR);
        for queue in 0..queues {
            register(virtio_pci::COMMON_QUEUE_SELECT).write_volatile(queue);
            register(virtio_pci::COMMON_QUEUE_MSIX_VECTOR).write_volatile(0);
            if register(virtio_pci::COMMON_QUEUE_MSIX_VECTOR).read_volatile() != 0 {
                return Err(format!(
                    "the device refused MSI-X entry 0 for queue {queue}"
                ));
            }
        }
    }
    msix::set_enabled(&mut config, address, &msix, true, false);
    command::disable_intx(&mut config, address);
    Ok(vector)
}

/// INTx on `line`. A function sharing an already routed line gets its vector, and the
/// IOAPIC entry is written again unchanged.
fn connect_intx(
    mut config: Mechanism,
    address: Address,
    isr: VirtAddr,
    line: IntxLine,
) -> Result<u8, String> {
    let IntxLine { gsi, signal } = line;
    let vector = irq::allocate_virtio_pci_intx(gsi, isr).ok_or("no interrupt vector left")?;
    apic::route_gsi(gsi, vector, signal).map_err(|e| format!("GSI {gsi}: {e}"))?;
    command::disable(&mut config, address, command::INTX_DISABLE);
    Ok(vector)
}
