//! The interrupt controllers of a machine the kernel drives itself (KVM, TCG): the legacy
//! PIC and every IOAPIC are masked, so that only the local APIC timer can interrupt, and the
//! local APIC is enabled, in x2APIC mode when the CPU has it.
//!
//! Under Xen none of this runs: a PV kernel has no APIC, and a PVH dom0's interrupt
//! controllers are Xen's to program; events arrive on Xen's callback instead.

use alloc::vec::Vec;
use core::fmt;

use janus_drivers::apic::{
    self, ApicError, ApicMode, Capabilities, LocalApic, Register, Registers, X2Apic, XApic,
};
use janus_drivers::ioapic::{self, IoApic, IoApicError, Signal};
use janus_drivers::pic::{self, PicError};
use spin::Mutex;
use x86_64::PhysAddr;

use crate::arch::interrupt;
use crate::mm::kernel_space;
use crate::mm::layout::{IO_APIC_PAGES, LOCAL_APIC_PAGE, MAX_IO_APICS};
use crate::mm::paging::MapperError;
use crate::platform::acpi::IoApicEntry;

/// Where an IOAPIC sits when the firmware's tables do not say (the PC default; QEMU's
/// `pc`, `q35` and `microvm` all put the first one there).
const DEFAULT_IO_APIC: u64 = 0xfec0_0000;

/// The local APIC in whichever mode it runs.
pub enum ApicRegisters {
    XApic(XApic),
    X2Apic(X2Apic),
}

impl Registers for ApicRegisters {
    // Only `LocalApic::id` looks at this, and this kernel does not read the ID.
    const X2APIC: bool = false;

    fn read(&self, register: Register) -> u32 {
        match self {
            Self::XApic(r) => r.read(register),
            Self::X2Apic(r) => r.read(register),
        }
    }

    fn write(&mut self, register: Register, value: u32) {
        match self {
            Self::XApic(r) => r.write(register, value),
            Self::X2Apic(r) => r.write(register, value),
        }
    }
}

/// This vCPU's local APIC, once enabled. Interrupt handlers take it (for EOI); everyone
/// else takes it with interrupts disabled, which the kernel always runs with.
static LOCAL_APIC: Mutex<Option<LocalApic<ApicRegisters>>> = Mutex::new(None);

/// Runs `f` on the local APIC; `None` before [`init`] succeeded.
pub fn with_local_apic<R>(f: impl FnOnce(&mut LocalApic<ApicRegisters>) -> R) -> Option<R> {
    LOCAL_APIC.lock().as_mut().map(f)
}

#[derive(Debug)]
pub enum InterruptControllerError {
    /// CPUID.1:EDX.APIC is clear.
    NoLocalApic,
    Pic(PicError),
    Apic(ApicError),
    Map(MapperError),
}

impl fmt::Display for InterruptControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLocalApic => f.write_str("the CPU has no local APIC (CPUID.1:EDX bit 9)"),
            Self::Pic(e) => write!(f, "legacy PIC: {e}"),
            Self::Apic(e) => write!(f, "local APIC: {e}"),
            Self::Map(e) => write!(f, "mapping the local APIC: {e}"),
        }
    }
}

/// What [`init`] set up, for the env line and the timer.
#[derive(Clone, Copy, Debug)]
pub struct LocalApicInfo {
    pub mode: ApicMode,
    pub capabilities: Capabilities,
    /// IOAPICs found and masked.
    pub io_apics: usize,
}

/// Masks the PIC and the IOAPICs (`io_apics` from ACPI's MADT; empty means try the default
/// address) and enables the local APIC. Interrupts must be disabled, as they always are
/// outside `interrupt::wait_for_interrupt`.
pub fn init(
    io_apics: &[IoApicEntry],
    mut warn: impl FnMut(fmt::Arguments<'_>),
) -> Result<LocalApicInfo, InterruptControllerError> {
    let leaf1 = crate::platform::cpuid(1, 0);
    if leaf1.edx & (1 << 9) == 0 {
        return Err(InterruptControllerError::NoLocalApic);
    }
    let capabilities = Capabilities::from_cpuid_leaf1(leaf1.ecx);

    // SAFETY: nothing else programs the PIC; interrupts are disabled (caller contract).
    let mut ports = unsafe { pic::IoPorts::new() };
    pic::remap_and_mask(&mut ports, interrupt::PIC_BASE, interrupt::PIC_BASE + 8)
        .map_err(InterruptControllerError::Pic)?;
    for vector in interrupt::PIC_BASE..interrupt::PIC_BASE + 16 {
        interrupt::register(vector, pic_interrupt);
    }

    let masked = mask_io_apics(io_apics, &mut warn);

    let mode = if capabilities.x2apic {
        ApicMode::X2Apic
    } else {
        ApicMode::XApic
    };
    // SAFETY: CPL 0; nothing uses the APIC yet; x2APIC only when CPUID has it.
    let base = unsafe { apic::switch_mode(mode) }.map_err(InterruptControllerError::Apic)?;
    let registers = match mode {
        // SAFETY: x2APIC mode was just enabled, at CPL 0.
        ApicMode::X2Apic => ApicRegisters::X2Apic(unsafe { X2Apic::new() }),
        ApicMode::XApic => {
            let page = kernel_space::map_mmio(LOCAL_APIC_PAGE, base.address)
                .map_err(InterruptControllerError::Map)?;
            // SAFETY: the APIC page was just mapped uncached at a slot reserved for it.
            ApicRegisters::XApic(unsafe { XApic::new(page.as_mut_ptr()) })
        }
    };
    let mut local_apic = LocalApic::new(registers);
    interrupt::register(interrupt::SPURIOUS, |_| {});
    local_apic
        .enable(interrupt::SPURIOUS)
        .map_err(InterruptControllerError::Apic)?;
    *LOCAL_APIC.lock() = Some(local_apic);
    Ok(LocalApicInfo {
        mode,
        capabilities,
        io_apics: masked,
    })
}

/// The IOAPICs [`init`] found, with the first GSI each delivers, for [`route_gsi`].
static IO_APICS: Mutex<Vec<(u32, IoApic<ioapic::Mmio>)>> = Mutex::new(Vec::new());

/// Sends global system interrupt `gsi` to `vector` on this vCPU, unmasked. `signal`
/// describes the line as the firmware (MADT override, DSDT) or the bus defines it.
pub fn route_gsi(gsi: u32, vector: u8, signal: Signal) -> Result<(), RouteError> {
    let mut io_apics = IO_APICS.lock();
    let (base, io_apic) = io_apics
        .iter_mut()
        .find(|(base, io_apic)| (*base..base + io_apic.pins()).contains(&gsi))
        .ok_or(RouteError::NoIoApic { gsi })?;
    let pin = gsi - *base;
    // The initial APIC ID (CPUID.1:EBX[31:24]) is this vCPU's, the only one that runs.
    let destination = (crate::platform::cpuid(1, 0).ebx >> 24) as u8;
    io_apic
        .route(pin, vector, destination, signal)
        .and_then(|()| io_apic.set_masked(pin, false))
        .map_err(RouteError::IoApic)
}

#[derive(Debug)]
pub enum RouteError {
    NoIoApic { gsi: u32 },
    IoApic(IoApicError),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoIoApic { gsi } => write!(f, "no IOAPIC delivers GSI {gsi}"),
            Self::IoApic(e) => write!(f, "IOAPIC: {e}"),
        }
    }
}

/// Masks every pin of every IOAPIC that answers and keeps them for [`route_gsi`]; returns
/// how many answered. Without MADT entries the default address is tried.
fn mask_io_apics(entries: &[IoApicEntry], warn: &mut impl FnMut(fmt::Arguments<'_>)) -> usize {
    let addresses: Vec<(u64, u32)> = if entries.is_empty() {
        alloc::vec![(DEFAULT_IO_APIC, 0)]
    } else {
        entries.iter().map(|e| (e.address, e.gsi_base)).collect()
    };
    if addresses.len() > MAX_IO_APICS {
        warn(format_args!(
            "{} IOAPICs in the MADT; only the first {MAX_IO_APICS} are masked, the others \
             keep their reset state (all pins masked)",
            addresses.len()
        ));
    }
    let mut masked = 0;
    for (slot, &(address, gsi_base)) in addresses.iter().take(MAX_IO_APICS).enumerate() {
        let page = IO_APIC_PAGES + 4096 * slot as u64;
        let page = match kernel_space::map_mmio(page, PhysAddr::new(address)) {
            Ok(page) => page,
            Err(e) => {
                warn(format_args!("IOAPIC at {address:#x} not mapped: {e}"));
                continue;
            }
        };
        // SAFETY: the register window was just mapped uncached at a slot reserved for it.
        let registers = unsafe { ioapic::Mmio::new(page.as_mut_ptr()) };
        match IoApic::new(registers) {
            Ok(mut io_apic) => {
                io_apic.mask_all();
                IO_APICS.lock().push((gsi_base, io_apic));
                masked += 1;
            }
            Err(e @ IoApicError::Absent { .. }) if entries.is_empty() => {
                log::debug!("no IOAPIC at the default address: {e}");
            }
            Err(e) => warn(format_args!("IOAPIC at {address:#x}: {e}")),
        }
    }
    masked
}

/// A PIC line fired although all are masked: only a spurious IRQ 7 or 15 can, and it must
/// not be acknowledged on its own chip (8259A datasheet); anything else gets its EOI.
fn pic_interrupt(vector: u8) {
    let irq = vector - interrupt::PIC_BASE;
    // SAFETY: only interrupt handlers, which do not nest, touch the PIC after `init`.
    let mut ports = unsafe { pic::IoPorts::new() };
    match pic::is_spurious(&mut ports, irq) {
        Ok(true) if irq == 15 => {
            let _ = pic::eoi(&mut ports, pic::CASCADE_IRQ);
        }
        Ok(true) => {}
        _ => {
            let _ = pic::eoi(&mut ports, irq);
        }
    }
}
