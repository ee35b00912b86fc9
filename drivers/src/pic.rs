//! The legacy 8259A PIC pair: remapped off the exception vectors and fully masked, since the
//! kernel takes its interrupts through the APICs. Spurious IRQ 7/15 detection and EOI for
//! what still gets through.
//!
//! Follows the Intel 8259A datasheet (231468): the ICW1..ICW4 initialization sequence, OCW1
//! (interrupt mask), OCW2 (EOI) and OCW3 (reading the in-service register).
//!
//! Under Xen PVH there is no PIC: the ports ignore writes and read 0xFF, which this code
//! tolerates.

use x86_64::instructions::port::Port;

/// One of the four PIC I/O ports. A closed set, so [`IoPorts`] cannot be made to write an
/// arbitrary port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicPort {
    MasterCommand,
    MasterData,
    SlaveCommand,
    SlaveData,
}

impl PicPort {
    pub const fn number(self) -> u16 {
        match self {
            Self::MasterCommand => 0x20,
            Self::MasterData => 0x21,
            Self::SlaveCommand => 0xA0,
            Self::SlaveData => 0xA1,
        }
    }
}

/// ICW1: initialization, edge triggered, cascaded, ICW4 follows.
const ICW1_INIT_WITH_ICW4: u8 = 0x11;
/// ICW3 on the master: a slave hangs off IR2.
const ICW3_MASTER_SLAVE_ON_IR2: u8 = 1 << CASCADE_IRQ;
/// ICW3 on the slave: its cascade identity, the master input it drives.
const ICW3_SLAVE_ID: u8 = CASCADE_IRQ;
/// ICW4: 8086/8088 mode, normal EOI, not buffered.
const ICW4_8086: u8 = 0x01;
/// OCW1: every input masked.
const OCW1_MASK_ALL: u8 = 0xFF;
/// OCW2: non-specific EOI.
const OCW2_EOI: u8 = 0x20;
/// OCW3: the next command-port read returns the in-service register.
const OCW3_READ_ISR: u8 = 0x0B;

/// The master input the slave is cascaded into. A spurious IRQ 15 was a real IRQ 2 to the
/// master, so it needs `eoi(ports, CASCADE_IRQ)`.
pub const CASCADE_IRQ: u8 = 2;
const IRQS_PER_PIC: u8 = 8;
const IRQS: u8 = 2 * IRQS_PER_PIC;
/// Vectors 0..32 are CPU exceptions.
const FIRST_USABLE_VECTOR: u8 = 32;

/// Byte access to the PICs' I/O ports.
pub trait Ports {
    fn write(&mut self, port: PicPort, value: u8);
    fn read(&mut self, port: PicPort) -> u8;
}

/// The real I/O ports.
pub struct IoPorts(());

impl IoPorts {
    /// # Safety
    /// The caller owns both PICs: nothing else may program them while this value lives.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

impl Ports for IoPorts {
    fn write(&mut self, port: PicPort, value: u8) {
        // SAFETY: `PicPort` names only PIC ports, owned by this value (constructor contract);
        // writing them does not touch memory.
        unsafe { Port::<u8>::new(port.number()).write(value) }
    }

    fn read(&mut self, port: PicPort) -> u8 {
        // SAFETY: as in `write`; reading a PIC port affects only the PIC.
        unsafe { Port::<u8>::new(port.number()).read() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicError {
    /// ICW2 keeps only bits 7:3 of a vector base.
    MisalignedBase { base: u8 },
    /// A vector base inside the CPU exception range.
    ReservedBase { base: u8 },
    /// Both PICs given the same vector base.
    SameBase { base: u8 },
    /// An IRQ number beyond 15.
    NoSuchIrq(u8),
}

impl core::fmt::Display for PicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MisalignedBase { base } => write!(
                f,
                "PIC vector base {base:#x} is not a multiple of 8; the 8259A ignores its low \
                 3 bits"
            ),
            Self::ReservedBase { base } => write!(
                f,
                "PIC vector base {base:#x} overlaps CPU exception vectors; use 32 or above"
            ),
            Self::SameBase { base } => write!(
                f,
                "both PICs given vector base {base:#x}; give the slave its own 8 vectors"
            ),
            Self::NoSuchIrq(irq) => write!(f, "IRQ {irq} does not exist; the PICs have 0..=15"),
        }
    }
}

fn check_base(base: u8) -> Result<(), PicError> {
    if !base.is_multiple_of(IRQS_PER_PIC) {
        return Err(PicError::MisalignedBase { base });
    }
    if base < FIRST_USABLE_VECTOR {
        return Err(PicError::ReservedBase { base });
    }
    Ok(())
}

/// Reinitializes both PICs to deliver IRQ 0..8 at `master_base`.. and IRQ 8..16 at
/// `slave_base`.., then masks every input. The BIOS default (8 and 0x70) puts IRQ 0..7 on
/// exception vectors 8..15, where a stray or spurious IRQ 7 would pose as a fault. Call with
/// interrupts disabled: ICW1 clears the masks until the final OCW1.
///
/// No delay between writes: the datasheet's recovery time is far shorter than an ISA port
/// access on hardware, and emulated PICs have none.
pub fn remap_and_mask(
    ports: &mut impl Ports,
    master_base: u8,
    slave_base: u8,
) -> Result<(), PicError> {
    check_base(master_base)?;
    check_base(slave_base)?;
    if master_base == slave_base {
        return Err(PicError::SameBase { base: master_base });
    }
    ports.write(PicPort::MasterCommand, ICW1_INIT_WITH_ICW4);
    ports.write(PicPort::SlaveCommand, ICW1_INIT_WITH_ICW4);
    ports.write(PicPort::MasterData, master_base);
    ports.write(PicPort::SlaveData, slave_base);
    ports.write(PicPort::MasterData, ICW3_MASTER_SLAVE_ON_IR2);
    ports.write(PicPort::SlaveData, ICW3_SLAVE_ID);
    ports.write(PicPort::MasterData, ICW4_8086);
    ports.write(PicPort::SlaveData, ICW4_8086);
    ports.write(PicPort::MasterData, OCW1_MASK_ALL);
    ports.write(PicPort::SlaveData, OCW1_MASK_ALL);
    Ok(())
}

/// The command port of the PIC serving `irq`, and `irq`'s bit there.
fn pic_of(irq: u8) -> Result<(PicPort, u8), PicError> {
    match irq {
        0..IRQS_PER_PIC => Ok((PicPort::MasterCommand, 1 << irq)),
        IRQS_PER_PIC..IRQS => Ok((PicPort::SlaveCommand, 1 << (irq - IRQS_PER_PIC))),
        _ => Err(PicError::NoSuchIrq(irq)),
    }
}

/// Whether `irq`, just delivered, is spurious: its in-service bit is clear. A PIC raises its
/// lowest-priority input (IRQ 7, or IRQ 15 on the slave) when a request vanishes before the
/// CPU acknowledges it. A spurious IRQ gets no EOI of its own, but a spurious IRQ 15 reached
/// the master as a real IRQ 2, so that one still needs `eoi(ports, CASCADE_IRQ)`.
pub fn is_spurious(ports: &mut impl Ports, irq: u8) -> Result<bool, PicError> {
    let (command, bit) = pic_of(irq)?;
    ports.write(command, OCW3_READ_ISR);
    Ok(ports.read(command) & bit == 0)
}

/// Ends service of `irq`: the slave and then the master for IRQ 8..16, which reach the CPU
/// through both, the master alone otherwise.
pub fn eoi(ports: &mut impl Ports, irq: u8) -> Result<(), PicError> {
    let (command, _) = pic_of(irq)?;
    if command == PicPort::SlaveCommand {
        ports.write(PicPort::SlaveCommand, OCW2_EOI);
    }
    ports.write(PicPort::MasterCommand, OCW2_EOI);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Access {
        Write(u16, u8),
        Read(u16),
    }

    /// Records every access by port number; command-port reads return the configured in-service registers.
    #[derive(Default)]
    struct FakePorts {
        log: Vec<Access>,
        master_isr: u8,
        slave_isr: u8,
    }

    impl Ports for FakePorts {
        fn write(&mut self, port: PicPort, value: u8) {
            self.log.push(Access::Write(port.number(), value));
        }

        fn read(&mut self, port: PicPort) -> u8 {
            self.log.push(Access::Read(port.number()));
            match port {
                PicPort::MasterCommand => self.master_isr,
                PicPort::SlaveCommand => self.slave_isr,
                PicPort::MasterData | PicPort::SlaveData => 0xFF,
            }
        }
    }

    use Access::{Read, Write};

    #[test]
    fn remap_writes_the_8259a_init_sequence_then_masks() {
        let mut ports = FakePorts::default();
        remap_and_mask(&mut ports, 0x20, 0x28).unwrap();
        assert_eq!(
            ports.log,
            [
                Write(0x20, 0x11),
                Write(0xA0, 0x11),
                Write(0x21, 0x20),
                Write(0xA1, 0x28),
                Write(0x21, 0x04),
                Write(0xA1, 0x02),
                Write(0x21, 0x01),
                Write(0xA1, 0x01),
                Write(0x21, 0xFF),
                Write(0xA1, 0xFF),
            ]
        );
    }

    #[test]
    fn remap_refuses_bad_bases_before_touching_the_pics() {
        let mut ports = FakePorts::default();
        assert_eq!(
            remap_and_mask(&mut ports, 0x21, 0x28),
            Err(PicError::MisalignedBase { base: 0x21 })
        );
        assert_eq!(
            remap_and_mask(&mut ports, 0x20, 0x2C),
            Err(PicError::MisalignedBase { base: 0x2C })
        );
        assert_eq!(
            remap_and_mask(&mut ports, 0x08, 0x70),
            Err(PicError::ReservedBase { base: 0x08 })
        );
        assert_eq!(
            remap_and_mask(&mut ports, 0x30, 0x30),
            Err(PicError::SameBase { base: 0x30 })
        );
        assert!(ports.log.is_empty());
    }

    #[test]
    fn irq7_without_isr_bit_is_spurious() {
        let mut ports = FakePorts::default();
        assert_eq!(is_spurious(&mut ports, 7), Ok(true));
        assert_eq!(ports.log, [Write(0x20, 0x0B), Read(0x20)]);
        ports.master_isr = 0x80;
        assert_eq!(is_spurious(&mut ports, 7), Ok(false));
    }

    #[test]
    fn irq15_checks_the_slave_isr() {
        let mut ports = FakePorts {
            master_isr: 0x84,
            ..FakePorts::default()
        };
        assert_eq!(is_spurious(&mut ports, 15), Ok(true));
        assert_eq!(ports.log, [Write(0xA0, 0x0B), Read(0xA0)]);
        ports.slave_isr = 0x80;
        assert_eq!(is_spurious(&mut ports, 15), Ok(false));
        assert_eq!(is_spurious(&mut ports, 16), Err(PicError::NoSuchIrq(16)));
    }

    #[test]
    fn eoi_goes_to_slave_then_master_for_slave_irqs() {
        let mut ports = FakePorts::default();
        eoi(&mut ports, 12).unwrap();
        assert_eq!(ports.log, [Write(0xA0, 0x20), Write(0x20, 0x20)]);
        ports.log.clear();
        eoi(&mut ports, CASCADE_IRQ).unwrap();
        assert_eq!(ports.log, [Write(0x20, 0x20)]);
        assert_eq!(eoi(&mut ports, 200), Err(PicError::NoSuchIrq(200)));
    }
}
