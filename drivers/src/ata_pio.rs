//! ATA PIO disk driver, read-only: the emulated-disk baseline that Janus measures virtio-blk
//! against.
//!
//! The target is QEMU's `-M pc` PIIX IDE in legacy compatibility mode, a raw image attached
//! with `-drive file=...,if=ide,format=raw`. Every byte of a read crosses the data register
//! by programmed I/O, one 512-byte block at a time, with a status poll before each block.
//! That is the cost being measured, so the block is moved with `rep insw`: a hypervisor can
//! serve it in one or two string-I/O exits (KVM batches them up to a page) instead of 256
//! single-word exits, which would measure the exit path rather than the device model.
//!
//! Protocol (ATA/ATAPI-6, T13/1410D, and ACS-3, T13/2161-D): select the drive through the
//! Device register, write the task-file registers, write the command, then for every block
//! wait until BSY is clear and DRQ set and read 256 words. Interrupts are disabled (nIEN in
//! Device Control) because the driver polls; each status read after a select or a command
//! waits out the 400 ns the drive may take to post a valid status, by reading the alternate
//! status register four times first.
//!
//! Every wait is bounded by [`TIMEOUT_NS`] on a caller-supplied [`Clock`], so a missing,
//! stuck or misbehaving drive yields [`AtaError::Timeout`] instead of hanging the boot.
//!
//! # Why read-only
//! The benchmark only reads. A write path would need WRITE SECTORS plus FLUSH CACHE to be
//! durable, and any bug in it could overwrite the disk image on the host that the benchmark
//! checks its reads against. Without one the driver cannot damage the image under test.
//! Add writes (with a cache flush) only when a benchmark needs them.
//!
//! # Layering
//! Register access sits behind [`AtaPorts`]; [`IoPorts`] is the real channel on x86 I/O ports
//! and the only `unsafe` here. [`AtaPio`] and [`parse_identify`] are plain logic, tested on
//! the host against a fake drive that implements the register protocol.

use core::fmt;

use x86_64::instructions::port::Port;

/// Bytes in a sector, and in the block moved per DRQ.
pub const SECTOR_SIZE: usize = 512;

/// The longest any single wait for the drive may take before [`AtaError::Timeout`]. A QEMU
/// drive answers in microseconds, but its sector reads go to the host's block layer, which a
/// loaded CI host can stall for seconds; a stuck drive still fails the boot promptly.
pub const TIMEOUT_NS: u64 = 5_000_000_000;

/// Exclusive bound on `lba + count` for a 28-bit command: the last sector it may address is
/// 0x0FFF_FFFE (Linux `lba_28_ok` in include/linux/ata.h).
const LBA28_END: u64 = 1 << 28;
/// Exclusive bound on the sectors a 48-bit command may address (Linux `lba_48_ok`).
const LBA48_END: u64 = 1 << 48;
/// Most sectors per READ SECTORS; a count register of 0 means 256.
const LBA28_MAX_SECTORS: usize = 256;
/// Most sectors per READ SECTORS EXT; a 16-bit count of 0 means 65536.
const LBA48_MAX_SECTORS: usize = 65536;

// Status register bits.
/// Busy: the other status bits are not valid.
const BSY: u8 = 0x80;
/// Device fault.
const DF: u8 = 0x20;
/// Data request: a block is ready in the data register.
const DRQ: u8 = 0x08;
/// Error: the error register says what.
const ERR: u8 = 0x01;

// Error register bits, for messages.
/// Uncorrectable data.
const ERROR_UNC: u8 = 0x40;
/// ID not found: no such sector.
const ERROR_IDNF: u8 = 0x10;
/// Command aborted.
const ERROR_ABRT: u8 = 0x04;

mod command {
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
}

/// Device Control: nIEN masks the drive's interrupt, since this driver polls.
const DEVICE_CONTROL_NIEN: u8 = 0x02;
/// Device register: bit 6 selects LBA addressing; bits 7 and 5 are obsolete but were
/// required by drives before ATA-3, and current drives ignore them.
const DEVICE_LBA: u8 = 0x40;
const DEVICE_OBSOLETE: u8 = 0xa0;

/// Alternate status reads that span the 400 ns a drive may take to post a valid status
/// after a select or a command: each ISA-speed port read takes at least 100 ns, and far more
/// when the hypervisor traps it.
const SETTLE_READS: usize = 4;

/// Task-file registers read at offsets from [`Channel::command_base`]. The data register
/// (offset 0) is read only in whole blocks, through [`AtaPorts::read_data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRegister {
    Error = 1,
    SectorCount = 2,
    LbaLow = 3,
    LbaMid = 4,
    LbaHigh = 5,
    Device = 6,
    Status = 7,
}

/// Task-file registers written at offsets from [`Channel::command_base`]. Features and
/// Command share offsets with Error and Status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRegister {
    Features = 1,
    SectorCount = 2,
    LbaLow = 3,
    LbaMid = 4,
    LbaHigh = 5,
    Device = 6,
    Command = 7,
}

impl ReadRegister {
    pub fn offset(self) -> u16 {
        self as u16
    }
}

impl WriteRegister {
    pub fn offset(self) -> u16 {
        self as u16
    }
}

/// One ATA channel's registers, a trait so the driver logic runs against a fake in host
/// tests.
pub trait AtaPorts {
    fn read8(&mut self, register: ReadRegister) -> u8;
    fn write8(&mut self, register: WriteRegister, value: u8);
    /// Reads one block: 256 words from the data register, each stored little-endian, as
    /// `rep insw` stores them, so `block` holds the sector's bytes in disk order.
    fn read_data(&mut self, block: &mut [u8; SECTOR_SIZE]);
    /// Reads the alternate status register: the status without acknowledging an interrupt.
    fn read_alternate_status(&mut self) -> u8;
    fn write_device_control(&mut self, value: u8);
}

/// Lets a caller lend its ports, e.g. to probe both drives of a channel with one value.
impl<T: AtaPorts + ?Sized> AtaPorts for &mut T {
    fn read8(&mut self, register: ReadRegister) -> u8 {
        (**self).read8(register)
    }
    fn write8(&mut self, register: WriteRegister, value: u8) {
        (**self).write8(register, value)
    }
    fn read_data(&mut self, block: &mut [u8; SECTOR_SIZE]) {
        (**self).read_data(block)
    }
    fn read_alternate_status(&mut self) -> u8 {
        (**self).read_alternate_status()
    }
    fn write_device_control(&mut self, value: u8) {
        (**self).write_device_control(value)
    }
}

/// Monotonic time that bounds every wait; the kernel passes its clock, tests a counter.
pub trait Clock {
    /// Nanoseconds since any fixed origin; must never go backwards.
    fn now_ns(&mut self) -> u64;
}

/// Any `FnMut() -> u64` returning monotonic nanoseconds, e.g. the kernel's `time::clock::now`.
impl<F: FnMut() -> u64> Clock for F {
    fn now_ns(&mut self) -> u64 {
        self()
    }
}

/// Where a channel's registers live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Base of the command block: data at +0 through status/command at +7.
    pub command_base: u16,
    /// The alternate status / device control port itself. In PCI native mode this is BAR1
    /// plus 2, not BAR1.
    pub control_base: u16,
}

impl Channel {
    /// The primary channel in legacy compatibility mode (PIIX, and QEMU `-M pc`).
    pub const PRIMARY: Self = Self {
        command_base: 0x1f0,
        control_base: 0x3f6,
    };
    /// The secondary channel in legacy compatibility mode.
    pub const SECONDARY: Self = Self {
        command_base: 0x170,
        control_base: 0x376,
    };
}

/// One of the two drives on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    Master,
    Slave,
}

impl Drive {
    /// The DEV bit of the Device register.
    fn select_bit(self) -> u8 {
        match self {
            Self::Master => 0,
            Self::Slave => 0x10,
        }
    }
}

/// A channel on x86 I/O ports.
#[derive(Debug)]
pub struct IoPorts {
    channel: Channel,
}

impl IoPorts {
    /// # Safety
    /// 1. `channel` names an ATA channel's command block and alternate status / device
    ///    control port, or ports nothing answers: at other ports the accesses could program
    ///    an unrelated device, including one that writes memory by DMA.
    /// 2. Nothing else accesses those ports while this value lives, on any CPU or in an
    ///    interrupt handler: a command's register writes and data reads must not interleave
    ///    with another's. Both drives of a channel share the ports, so they share this value
    ///    (lend it with `&mut`).
    pub const unsafe fn new(channel: Channel) -> Self {
        Self { channel }
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }
}

impl AtaPorts for IoPorts {
    fn read8(&mut self, register: ReadRegister) -> u8 {
        let mut port = Port::<u8>::new(self.channel.command_base + register.offset());
        // SAFETY: the port is this channel's (constructor contract); reading a task-file
        // register touches no memory.
        unsafe { port.read() }
    }

    fn write8(&mut self, register: WriteRegister, value: u8) {
        let mut port = Port::<u8>::new(self.channel.command_base + register.offset());
        // SAFETY: the port is this channel's (constructor contract); the driver issues only
        // PIO commands, which move no memory by DMA.
        unsafe { port.write(value) }
    }

    fn read_data(&mut self, block: &mut [u8; SECTOR_SIZE]) {
        // SAFETY:
        // 1. DX is this channel's data register (constructor contract); reading it only pops
        //    the drive's data FIFO.
        // 2. `rep insw` stores RCX = 256 words, 512 bytes, upward from RDI: exactly `block`,
        //    which is borrowed mutably; x86 needs no alignment for the stores.
        // 3. The direction flag is clear on entry to `asm!` (Rust's inline-asm rules), so
        //    the stores go upward; RDI and RCX are declared clobbered, flags are untouched.
        unsafe {
            core::arch::asm!(
                "rep insw",
                in("dx") self.channel.command_base,
                inout("rdi") block.as_mut_ptr() => _,
                inout("rcx") SECTOR_SIZE / 2 => _,
                options(nostack, preserves_flags),
            );
        }
    }

    fn read_alternate_status(&mut self) -> u8 {
        let mut port = Port::<u8>::new(self.channel.control_base);
        // SAFETY: the port is this channel's (constructor contract); reading it touches no
        // memory and, unlike the status register, acknowledges nothing.
        unsafe { port.read() }
    }

    fn write_device_control(&mut self, value: u8) {
        let mut port = Port::<u8>::new(self.channel.control_base);
        // SAFETY: the port is this channel's (constructor contract); device control only
        // masks the interrupt or resets the drives, touching no memory.
        unsafe { port.write(value) }
    }
}

/// What IDENTIFY DEVICE says about a drive.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    model: [u8; MODEL_BYTES],
    model_len: u8,
    /// User-addressable sectors: words 100..=103 with 48-bit addressing, else words 60..=61.
    pub sectors: u64,
    /// Whether READ SECTORS EXT is available (word 83 bit 10).
    pub lba48: bool,
}

/// Words 27..=46 hold the model number, 40 ASCII characters.
const MODEL_WORDS: core::ops::Range<usize> = 27..47;
const MODEL_BYTES: usize = 40;

impl Identity {
    /// The model number, trimmed of its space padding, e.g. "QEMU HARDDISK".
    pub fn model(&self) -> &str {
        // Only printable ASCII is stored (`parse_identify`), so this cannot fail.
        core::str::from_utf8(&self.model[..usize::from(self.model_len)]).unwrap_or("")
    }

    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR_SIZE as u64
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("model", &self.model())
            .field("sectors", &self.sectors)
            .field("lba48", &self.lba48)
            .finish()
    }
}

/// Parses the 256 words of IDENTIFY DEVICE data (ACS-3 table "IDENTIFY DEVICE data").
///
/// A drive with 48-bit addressing whose words 100..=103 read 0 is treated as a 28-bit drive,
/// as Linux does (`ata_id_has_lba48`). Capacities beyond what the addressing can reach are
/// clamped to it, so every sector below [`Identity::sectors`] can be read.
pub fn parse_identify(words: &[u16; 256]) -> Result<Identity, AtaError> {
    // Word 255, the integrity word: when its low byte is the signature 0xA5, its high byte
    // makes the sum of all 512 bytes 0 mod 256. Drives without the signature skip the check.
    if words[255] & 0xff == 0xa5 {
        let sum = words
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .fold(0u8, u8::wrapping_add);
        if sum != 0 {
            return Err(AtaError::IdentifyChecksum);
        }
    }
    // Word 49 bit 9: LBA supported. Without it the drive only takes CHS addresses.
    if words[49] & (1 << 9) == 0 {
        return Err(AtaError::NoLba);
    }
    let lba28_sectors = u64::from(words[60]) | u64::from(words[61]) << 16;
    let lba48_sectors = (0..4).fold(0u64, |sum, i| sum | u64::from(words[100 + i]) << (16 * i));
    // Word 83 is valid only with bit 14 set and bit 15 clear; bit 10 is 48-bit addressing.
    let word83_valid = words[83] & 0xc000 == 0x4000;
    let lba48 = word83_valid && words[83] & (1 << 10) != 0 && lba48_sectors != 0;
    let sectors = if lba48 {
        lba48_sectors.min(LBA48_END)
    } else {
        lba28_sectors.min(LBA28_END - 1)
    };
    if sectors == 0 {
        return Err(AtaError::NoCapacity);
    }

    // Each word holds two characters, the first in the high byte.
    let mut raw = [0u8; MODEL_BYTES];
    for (pair, word) in raw.chunks_exact_mut(2).zip(&words[MODEL_WORDS]) {
        pair.copy_from_slice(&word.to_be_bytes());
    }
    let start = raw.iter().position(|&b| b != b' ' && b != 0);
    let end = raw.iter().rposition(|&b| b != b' ' && b != 0);
    let trimmed = match (start, end) {
        (Some(start), Some(end)) => &raw[start..=end],
        _ => &[][..],
    };
    let mut model = [0u8; MODEL_BYTES];
    for (out, &byte) in model.iter_mut().zip(trimmed) {
        *out = if byte.is_ascii_graphic() || byte == b' ' {
            byte
        } else {
            b'?'
        };
    }
    Ok(Identity {
        model,
        model_len: trimmed.len() as u8,
        sectors,
        lba48,
    })
}

/// Errors of the ATA PIO driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtaError {
    /// Status read 0xFF (nothing drives the bus) or 0x00 (no drive at the selected position,
    /// what QEMU returns for an empty one) after selecting the drive.
    NoDrive { status: u8 },
    /// IDENTIFY DEVICE failed and LBA mid/high hold another command set's signature.
    NotAta { lba_mid: u8, lba_high: u8 },
    /// The drive did not reach the awaited state within [`TIMEOUT_NS`].
    Timeout {
        waiting_for: &'static str,
        status: u8,
    },
    /// The drive set ERR or DF; `error` is its error register.
    Device { status: u8, error: u8 },
    /// IDENTIFY data fails its word-255 checksum.
    IdentifyChecksum,
    /// IDENTIFY word 49 bit 9 is clear: the drive takes only CHS addresses.
    NoLba,
    /// IDENTIFY reports no addressable sectors.
    NoCapacity,
    /// A read buffer is not a nonzero whole number of sectors.
    BufferLength { len: usize },
    /// The read reaches past the last sector.
    OutOfRange {
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
}

impl fmt::Display for AtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoDrive { status } => write!(
                f,
                "no ATA drive at the selected channel and position (status {status:#04x}, {}); \
                 attach a disk with -drive file=...,if=ide,format=raw or probe another position",
                if status == 0xff {
                    "a floating bus: no controller or no drives"
                } else {
                    "no drive answers"
                }
            ),
            Self::NotAta { lba_mid, lba_high } => write!(
                f,
                "the drive aborted IDENTIFY DEVICE with signature {lba_mid:#04x}/{lba_high:#04x} \
                 ({}), so it is not an ATA disk; attach the image as a disk (media=disk)",
                match (lba_mid, lba_high) {
                    (0x14, 0xeb) => "ATAPI, e.g. a CD-ROM",
                    (0x69, 0x96) => "SATAPI",
                    (0x3c, 0xc3) => "SATA",
                    _ => "unknown",
                }
            ),
            Self::Timeout {
                waiting_for,
                status,
            } => write!(
                f,
                "ATA drive timed out after {} ms waiting for {waiting_for} (status \
                 {status:#04x}): the drive is stuck or the host stalled; check the VMM's disk",
                TIMEOUT_NS / 1_000_000
            ),
            Self::Device { status, error } => write!(
                f,
                "ATA drive reported an error (status {status:#04x}, error {error:#04x}: {}); \
                 check the disk image and the VMM's log",
                if status & DF != 0 {
                    "device fault"
                } else if error & ERROR_UNC != 0 {
                    "uncorrectable data"
                } else if error & ERROR_IDNF != 0 {
                    "sector not found"
                } else if error & ERROR_ABRT != 0 {
                    "command aborted"
                } else {
                    "unknown cause"
                }
            ),
            Self::IdentifyChecksum => write!(
                f,
                "IDENTIFY DEVICE data fails its word-255 checksum: the transfer was corrupted; \
                 check the VMM's IDE emulation"
            ),
            Self::NoLba => write!(
                f,
                "the ATA drive does not support LBA addressing (IDENTIFY word 49 bit 9 clear) \
                 and CHS is not supported; use a drive with LBA"
            ),
            Self::NoCapacity => write!(
                f,
                "the ATA drive reports 0 addressable sectors: the disk image is empty; attach \
                 a non-empty image"
            ),
            Self::BufferLength { len } => write!(
                f,
                "a read buffer of {len} bytes is not a nonzero multiple of the \
                 {SECTOR_SIZE}-byte sector; read whole sectors"
            ),
            Self::OutOfRange {
                lba,
                sectors,
                capacity,
            } => write!(
                f,
                "reading {sectors} sectors at LBA {lba} goes past the disk's {capacity} \
                 sectors; read below LBA {capacity}"
            ),
        }
    }
}

/// The register protocol on one drive: selection, commands and bounded waits.
struct Link<P, C> {
    ports: P,
    clock: C,
    drive: Drive,
}

impl<P: AtaPorts, C: Clock> Link<P, C> {
    /// Polls status until `done` accepts it, for at most [`TIMEOUT_NS`].
    fn wait(
        &mut self,
        waiting_for: &'static str,
        done: impl Fn(u8) -> bool,
    ) -> Result<u8, AtaError> {
        // A ready drive, the common case, costs one port read and no clock read.
        let status = self.ports.read8(ReadRegister::Status);
        if done(status) {
            return Ok(status);
        }
        let start = self.clock.now_ns();
        loop {
            // Read the clock before the status, so a timeout always follows a status read
            // made after the deadline, even if this CPU was descheduled in between.
            let expired = self.clock.now_ns().saturating_sub(start) >= TIMEOUT_NS;
            let status = self.ports.read8(ReadRegister::Status);
            if done(status) {
                return Ok(status);
            }
            if expired {
                return Err(AtaError::Timeout {
                    waiting_for,
                    status,
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Waits out the 400 ns before status is valid after a select or a command.
    fn settle(&mut self) {
        for _ in 0..SETTLE_READS {
            self.ports.read_alternate_status();
        }
    }

    /// Device selection protocol: the channel idle, the Device register written, 400 ns,
    /// the drive idle. Detects an absent drive from its status.
    fn select(&mut self, address_bits: u8) -> Result<(), AtaError> {
        let idle = |status: u8| status & (BSY | DRQ) == 0;
        // A floating bus reads 0xFF, which would look busy until the timeout.
        let status = self.ports.read8(ReadRegister::Status);
        if status == 0xff {
            return Err(AtaError::NoDrive { status });
        }
        self.wait("BSY and DRQ to clear before selecting the drive", idle)?;
        let device = DEVICE_OBSOLETE | DEVICE_LBA | self.drive.select_bit() | address_bits;
        self.ports.write8(WriteRegister::Device, device);
        self.settle();
        let status = self.ports.read8(ReadRegister::Status);
        if status == 0xff || status == 0 {
            return Err(AtaError::NoDrive { status });
        }
        self.wait("BSY and DRQ to clear after selecting the drive", idle)?;
        Ok(())
    }

    fn issue(&mut self, command: u8) {
        self.ports.write8(WriteRegister::Command, command);
        self.settle();
    }

    /// Waits until the drive offers a block (BSY clear, DRQ set) or reports an error.
    fn wait_for_block(&mut self, waiting_for: &'static str) -> Result<(), AtaError> {
        let status = self.wait(waiting_for, |status| {
            status & BSY == 0 && status & (DRQ | ERR | DF) != 0
        })?;
        self.check(status)
    }

    /// Waits for the drive to finish the command after its last block, and checks it.
    fn finish(&mut self) -> Result<(), AtaError> {
        let status = self.wait("BSY to clear after the last block", |status| {
            status & BSY == 0
        })?;
        self.check(status)
    }

    fn check(&mut self, status: u8) -> Result<(), AtaError> {
        if status & (ERR | DF) != 0 {
            let error = self.ports.read8(ReadRegister::Error);
            return Err(AtaError::Device { status, error });
        }
        Ok(())
    }

    /// READ SECTORS for `blocks.len()`, at most 256, sectors at `lba`, which with the count
    /// must lie below [`LBA28_END`].
    fn read_lba28(&mut self, lba: u64, blocks: &mut [[u8; SECTOR_SIZE]]) -> Result<(), AtaError> {
        debug_assert!(blocks.len() <= LBA28_MAX_SECTORS);
        debug_assert!(lba + (blocks.len() as u64) < LBA28_END);
        self.select((lba >> 24) as u8 & 0x0f)?;
        // A count of 256 is written as 0, which means 256.
        self.ports
            .write8(WriteRegister::SectorCount, blocks.len() as u8);
        self.ports.write8(WriteRegister::LbaLow, lba as u8);
        self.ports.write8(WriteRegister::LbaMid, (lba >> 8) as u8);
        self.ports.write8(WriteRegister::LbaHigh, (lba >> 16) as u8);
        self.issue(command::READ_SECTORS);
        self.read_blocks(blocks)
    }

    /// READ SECTORS EXT for `blocks.len()`, at most 65536, sectors at `lba`.
    fn read_lba48(&mut self, lba: u64, blocks: &mut [[u8; SECTOR_SIZE]]) -> Result<(), AtaError> {
        debug_assert!(blocks.len() <= LBA48_MAX_SECTORS);
        debug_assert!(lba + blocks.len() as u64 <= LBA48_END);
        self.select(0)?;
        let count = blocks.len() as u64;
        // Each register is a two-byte FIFO: the first write becomes the "previous" (high)
        // byte when the second arrives. A count of 65536 is written as 0, which means 65536.
        self.ports
            .write8(WriteRegister::SectorCount, (count >> 8) as u8);
        self.ports.write8(WriteRegister::LbaLow, (lba >> 24) as u8);
        self.ports.write8(WriteRegister::LbaMid, (lba >> 32) as u8);
        self.ports.write8(WriteRegister::LbaHigh, (lba >> 40) as u8);
        self.ports.write8(WriteRegister::SectorCount, count as u8);
        self.ports.write8(WriteRegister::LbaLow, lba as u8);
        self.ports.write8(WriteRegister::LbaMid, (lba >> 8) as u8);
        self.ports.write8(WriteRegister::LbaHigh, (lba >> 16) as u8);
        self.issue(command::READ_SECTORS_EXT);
        self.read_blocks(blocks)
    }

    fn read_blocks(&mut self, blocks: &mut [[u8; SECTOR_SIZE]]) -> Result<(), AtaError> {
        for block in blocks {
            self.wait_for_block("sector data (BSY clear, DRQ set)")?;
            self.ports.read_data(block);
        }
        self.finish()
    }
}

/// A read-only ATA disk driven by polled PIO.
pub struct AtaPio<P, C> {
    link: Link<P, C>,
    identity: Identity,
}

impl<P: AtaPorts, C: Clock> AtaPio<P, C> {
    /// Masks the channel's interrupt, selects `drive` and runs IDENTIFY DEVICE.
    ///
    /// Interrupts stay masked for the channel (Device Control is shared by its two drives).
    /// No software reset is done: it would reset the other drive too, and firmware or the
    /// VMM leaves the drives reset.
    pub fn identify(ports: P, clock: C, drive: Drive) -> Result<Self, AtaError> {
        let mut link = Link {
            ports,
            clock,
            drive,
        };
        link.ports.write_device_control(DEVICE_CONTROL_NIEN);
        link.select(0)?;
        // Zeroed, so that a non-zero LBA mid/high after an abort is a signature.
        for register in [
            WriteRegister::SectorCount,
            WriteRegister::LbaLow,
            WriteRegister::LbaMid,
            WriteRegister::LbaHigh,
        ] {
            link.ports.write8(register, 0);
        }
        link.issue(command::IDENTIFY_DEVICE);
        let status = link.ports.read8(ReadRegister::Status);
        if status == 0 {
            return Err(AtaError::NoDrive { status });
        }
        match link.wait_for_block("IDENTIFY data (BSY clear, DRQ set)") {
            Ok(()) => {}
            // ATAPI and SATA devices abort IDENTIFY DEVICE and leave their signature in LBA
            // mid/high (ACS-3 "Signature and persistence"; QEMU's cmd_identify does so).
            Err(AtaError::Device { status, error }) if status & ERR != 0 => {
                let lba_mid = link.ports.read8(ReadRegister::LbaMid);
                let lba_high = link.ports.read8(ReadRegister::LbaHigh);
                if (lba_mid, lba_high) != (0, 0) {
                    return Err(AtaError::NotAta { lba_mid, lba_high });
                }
                return Err(AtaError::Device { status, error });
            }
            Err(other) => return Err(other),
        }
        let mut block = [0u8; SECTOR_SIZE];
        link.ports.read_data(&mut block);
        link.finish()?;
        let mut words = [0u16; 256];
        for (word, bytes) in words.iter_mut().zip(block.as_chunks::<2>().0) {
            *word = u16::from_le_bytes(*bytes);
        }
        let identity = parse_identify(&words)?;
        Ok(Self { link, identity })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn drive(&self) -> Drive {
        self.link.drive
    }

    /// Reads `buf.len() / 512` sectors starting at `lba` into `buf`.
    ///
    /// A range that fits in 28 bits is read with READ SECTORS, 256 sectors per command; one
    /// beyond with READ SECTORS EXT, 65536 per command. Per-command overhead is about a
    /// dozen register accesses against two per sector, so the smaller commands cost little.
    /// On an error `buf` holds the sectors read before it and garbage after.
    pub fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), AtaError> {
        let len = buf.len();
        let (mut blocks, rest) = buf.as_chunks_mut::<SECTOR_SIZE>();
        if blocks.is_empty() || !rest.is_empty() {
            return Err(AtaError::BufferLength { len });
        }
        let capacity = self.identity.sectors;
        let sectors = blocks.len() as u64;
        if lba.checked_add(sectors).is_none_or(|end| end > capacity) {
            return Err(AtaError::OutOfRange {
                lba,
                sectors,
                capacity,
            });
        }
        let mut lba = lba;
        while !blocks.is_empty() {
            let lba28_count = blocks.len().min(LBA28_MAX_SECTORS);
            let lba28 = lba + (lba28_count as u64) < LBA28_END;
            let count = if lba28 {
                lba28_count
            } else {
                blocks.len().min(LBA48_MAX_SECTORS)
            };
            let (chunk, rest) = core::mem::take(&mut blocks).split_at_mut(count);
            if lba28 {
                self.link.read_lba28(lba, chunk)?;
            } else if self.identity.lba48 {
                self.link.read_lba48(lba, chunk)?;
            } else {
                // Unreachable: without LBA48 the capacity lies below LBA28_END.
                return Err(AtaError::OutOfRange {
                    lba,
                    sectors: count as u64,
                    capacity,
                });
            }
            lba += count as u64;
            blocks = rest;
        }
        Ok(())
    }

    /// Gives back the ports and the clock.
    pub fn into_parts(self) -> (P, C) {
        (self.link.ports, self.link.clock)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    const DRDY: u8 = 0x40;
    const DSC: u8 = 0x10;
    /// Status reads a fake drive stays BSY before each block, like QEMU's asynchronous reads.
    const BLOCK_DELAY: u32 = 3;

    /// The byte at `offset` of sector `lba` on the disk of drive `salt`: the LBA in the first
    /// eight bytes, so a sector read from the wrong place is caught, then a mix of all three.
    fn disk_byte(salt: u8, lba: u64, offset: usize) -> u8 {
        if offset < 8 {
            lba.to_le_bytes()[offset]
        } else {
            (offset as u8) ^ (lba as u8).rotate_left(3) ^ (lba >> 8) as u8 ^ salt
        }
    }

    fn assert_sectors(salt: u8, lba: u64, buf: &[u8]) {
        for (i, sector) in buf.chunks_exact(SECTOR_SIZE).enumerate() {
            let lba = lba + i as u64;
            for (offset, &byte) in sector.iter().enumerate() {
                assert_eq!(
                    byte,
                    disk_byte(salt, lba, offset),
                    "sector {lba} byte {offset}"
                );
            }
        }
    }

    /// IDENTIFY data for an LBA drive, with a valid integrity word.
    fn identify_words(model: &str, lba28: u32, lba48: Option<u64>) -> [u16; 256] {
        let mut words = [0u16; 256];
        words[49] = 1 << 9;
        words[60] = lba28 as u16;
        words[61] = (lba28 >> 16) as u16;
        words[83] = 0x4000;
        if let Some(sectors) = lba48 {
            words[83] |= 1 << 10;
            for i in 0..4 {
                words[100 + i] = (sectors >> (16 * i)) as u16;
            }
        }
        let mut model_bytes = [b' '; 40];
        model_bytes[..model.len()].copy_from_slice(model.as_bytes());
        for (word, pair) in words[27..47].iter_mut().zip(model_bytes.chunks_exact(2)) {
            *word = u16::from_be_bytes([pair[0], pair[1]]);
        }
        seal(&mut words);
        words
    }

    /// Sets the integrity word so the 512 bytes sum to 0.
    fn seal(words: &mut [u16; 256]) {
        words[255] = 0x00a5;
        let sum = words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .fold(0u8, u8::wrapping_add);
        words[255] |= u16::from(sum.wrapping_neg()) << 8;
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Transfer {
        Identify,
        Read { lba: u64, remaining: u64 },
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Issued {
        command: u8,
        lba: u64,
        count: u64,
    }

    struct FakeDrive {
        /// `None` for an ATAPI device.
        identify: Option<[u16; 256]>,
        sectors: u64,
        lba48: bool,
        salt: u8,
        status: u8,
        error: u8,
        /// Status reads left before the pending block is offered.
        busy_reads: u32,
        transfer: Option<Transfer>,
        block: [u8; SECTOR_SIZE],
        /// A read of this sector fails with UNC.
        bad_lba: Option<u64>,
        /// Once a command is issued, BSY never clears.
        hangs_on_command: bool,
        /// An error register value posted, with ERR, when BSY clears after the last block.
        error_after_last_block: Option<u8>,
    }

    impl FakeDrive {
        fn ata(model: &str, sectors: u64, lba48: bool, salt: u8) -> Self {
            let lba28 = sectors.min(LBA28_END - 1) as u32;
            let words = identify_words(model, lba28, lba48.then_some(sectors));
            Self {
                identify: Some(words),
                sectors,
                lba48,
                salt,
                status: DRDY | DSC,
                error: 0,
                busy_reads: 0,
                transfer: None,
                block: [0; SECTOR_SIZE],
                bad_lba: None,
                hangs_on_command: false,
                error_after_last_block: None,
            }
        }

        fn atapi() -> Self {
            Self {
                identify: None,
                ..Self::ata("", 1, false, 0)
            }
        }

        /// Goes busy, to offer the next block of the transfer after `BLOCK_DELAY` polls.
        fn start_block(&mut self) {
            self.status = BSY | DSC;
            self.busy_reads = BLOCK_DELAY;
        }

        /// One status poll: time passes while busy.
        fn poll(&mut self) -> u8 {
            if self.status & BSY != 0 && !self.hangs_on_command {
                if self.busy_reads == 0 {
                    self.offer_block();
                } else {
                    self.busy_reads -= 1;
                }
            }
            self.status
        }

        fn offer_block(&mut self) {
            match self.transfer {
                Some(Transfer::Identify) => {
                    let words = self.identify.expect("an ATA drive");
                    for (bytes, word) in self.block.chunks_exact_mut(2).zip(words) {
                        bytes.copy_from_slice(&word.to_le_bytes());
                    }
                    self.status = DRDY | DSC | DRQ;
                }
                Some(Transfer::Read { lba, .. }) if self.bad_lba == Some(lba) => {
                    self.transfer = None;
                    self.status = DRDY | DSC | ERR;
                    self.error = ERROR_UNC;
                }
                Some(Transfer::Read { lba, .. }) => {
                    for (offset, byte) in self.block.iter_mut().enumerate() {
                        *byte = disk_byte(self.salt, lba, offset);
                    }
                    self.status = DRDY | DSC | DRQ;
                }
                None => match self.error_after_last_block {
                    Some(error) => {
                        self.status = DRDY | DSC | ERR;
                        self.error = error;
                    }
                    None => self.status = DRDY | DSC,
                },
            }
        }

        fn block_read(&mut self) {
            self.transfer = match self.transfer {
                Some(Transfer::Read { lba, remaining }) if remaining > 1 => Some(Transfer::Read {
                    lba: lba + 1,
                    remaining: remaining - 1,
                }),
                _ => None,
            };
            // Between blocks and after the last one the drive is briefly busy.
            self.start_block();
        }

        fn abort(&mut self) {
            self.status = DRDY | DSC | ERR;
            self.error = ERROR_ABRT;
        }
    }

    /// A channel with up to two drives that implements the task-file protocol, and panics
    /// where the driver breaks it.
    struct FakeChannel {
        drives: [Option<FakeDrive>; 2],
        /// Nothing drives the bus: every register reads 0xFF.
        floating: bool,
        selected: usize,
        device: u8,
        device_control: u8,
        /// Each LBA48-capable register is a FIFO: [current, previous].
        sector_count: [u8; 2],
        lba_low: [u8; 2],
        lba_mid: [u8; 2],
        lba_high: [u8; 2],
        /// Alternate status reads still due before the status may be read.
        settle_owed: usize,
        issued: Vec<Issued>,
    }

    impl FakeChannel {
        fn new(master: Option<FakeDrive>, slave: Option<FakeDrive>) -> Self {
            Self {
                drives: [master, slave],
                floating: false,
                selected: 0,
                device: 0,
                device_control: 0,
                sector_count: [0; 2],
                lba_low: [0; 2],
                lba_mid: [0; 2],
                lba_high: [0; 2],
                settle_owed: 0,
                issued: Vec::new(),
            }
        }

        fn master(drive: FakeDrive) -> Self {
            Self::new(Some(drive), None)
        }

        fn floating() -> Self {
            Self {
                floating: true,
                ..Self::new(None, None)
            }
        }

        fn drive(&mut self) -> Option<&mut FakeDrive> {
            self.drives[self.selected].as_mut()
        }

        fn execute(&mut self, command: u8) {
            assert!(
                self.device_control & DEVICE_CONTROL_NIEN != 0,
                "command issued with the drive's interrupt enabled"
            );
            let lba28 = u64::from(self.lba_low[0])
                | u64::from(self.lba_mid[0]) << 8
                | u64::from(self.lba_high[0]) << 16
                | u64::from(self.device & 0x0f) << 24;
            let lba48 = u64::from(self.lba_low[0])
                | u64::from(self.lba_mid[0]) << 8
                | u64::from(self.lba_high[0]) << 16
                | u64::from(self.lba_low[1]) << 24
                | u64::from(self.lba_mid[1]) << 32
                | u64::from(self.lba_high[1]) << 40;
            let count28 = match self.sector_count[0] {
                0 => 256,
                n => u64::from(n),
            };
            let count48 =
                match u64::from(self.sector_count[1]) << 8 | u64::from(self.sector_count[0]) {
                    0 => 65536,
                    n => n,
                };
            let lba_mode = self.device & DEVICE_LBA != 0;
            let (lba, count) = match command {
                command::READ_SECTORS => (lba28, count28),
                command::READ_SECTORS_EXT => (lba48, count48),
                _ => (0, 0),
            };
            // QEMU ignores commands to an absent drive.
            let Some(drive) = self.drives[self.selected].as_mut() else {
                return;
            };
            assert!(
                drive.status & (BSY | DRQ) == 0,
                "command {command:#04x} written while the drive is busy or has data"
            );
            drive.error = 0;
            match command {
                command::IDENTIFY_DEVICE if drive.identify.is_none() => {
                    // ATAPI: abort, leaving the packet-device signature.
                    self.lba_mid[0] = 0x14;
                    self.lba_high[0] = 0xeb;
                    drive.abort();
                }
                command::IDENTIFY_DEVICE => {
                    drive.transfer = Some(Transfer::Identify);
                    drive.start_block();
                }
                command::READ_SECTORS | command::READ_SECTORS_EXT => {
                    assert!(lba_mode, "CHS read: the Device register lacks the LBA bit");
                    self.issued.push(Issued {
                        command,
                        lba,
                        count,
                    });
                    if command == command::READ_SECTORS_EXT && !drive.lba48 {
                        drive.abort();
                    } else if lba + count > drive.sectors {
                        drive.status = DRDY | DSC | ERR;
                        drive.error = ERROR_IDNF;
                    } else {
                        drive.transfer = Some(Transfer::Read {
                            lba,
                            remaining: count,
                        });
                        drive.start_block();
                    }
                }
                _ => drive.abort(),
            }
        }

        fn push(fifo: &mut [u8; 2], value: u8) {
            *fifo = [value, fifo[0]];
        }
    }

    impl AtaPorts for FakeChannel {
        fn read8(&mut self, register: ReadRegister) -> u8 {
            if self.floating {
                return 0xff;
            }
            if register == ReadRegister::Status {
                assert_eq!(
                    self.settle_owed, 0,
                    "status read within 400 ns of a select or a command"
                );
            }
            // QEMU reads 0 from every register of an empty position (hw/ide/core.c).
            let selected = self.selected;
            let Some(drive) = self.drives[selected].as_mut() else {
                return 0;
            };
            match register {
                ReadRegister::Status => drive.poll(),
                ReadRegister::Error => drive.error,
                ReadRegister::SectorCount => self.sector_count[0],
                ReadRegister::LbaLow => self.lba_low[0],
                ReadRegister::LbaMid => self.lba_mid[0],
                ReadRegister::LbaHigh => self.lba_high[0],
                ReadRegister::Device => self.device,
            }
        }

        fn write8(&mut self, register: WriteRegister, value: u8) {
            if let Some(drive) = self.drive() {
                assert!(
                    drive.status & (BSY | DRQ) == 0,
                    "{register:?} written while the drive is busy or has data"
                );
            }
            match register {
                WriteRegister::Features => {}
                WriteRegister::SectorCount => Self::push(&mut self.sector_count, value),
                WriteRegister::LbaLow => Self::push(&mut self.lba_low, value),
                WriteRegister::LbaMid => Self::push(&mut self.lba_mid, value),
                WriteRegister::LbaHigh => Self::push(&mut self.lba_high, value),
                WriteRegister::Device => {
                    self.device = value;
                    self.selected = usize::from(value & 0x10 != 0);
                    self.settle_owed = SETTLE_READS;
                }
                WriteRegister::Command => {
                    self.execute(value);
                    self.settle_owed = SETTLE_READS;
                }
            }
        }

        fn read_data(&mut self, block: &mut [u8; SECTOR_SIZE]) {
            let drive = self.drive().expect("data read from an empty position");
            assert_eq!(drive.status & (BSY | DRQ), DRQ, "data read without DRQ");
            *block = drive.block;
            drive.block_read();
        }

        fn read_alternate_status(&mut self) -> u8 {
            if self.floating {
                return 0xff;
            }
            self.settle_owed = self.settle_owed.saturating_sub(1);
            self.drive().map_or(0, |drive| drive.poll())
        }

        fn write_device_control(&mut self, value: u8) {
            self.device_control = value;
        }
    }

    /// A clock that advances `step` ns every time it is read.
    struct StepClock {
        now: u64,
        step: u64,
    }

    impl Clock for StepClock {
        fn now_ns(&mut self) -> u64 {
            self.now += self.step;
            self.now
        }
    }

    fn clock() -> StepClock {
        StepClock {
            now: 0,
            step: 1_000,
        }
    }

    fn open(channel: FakeChannel) -> AtaPio<FakeChannel, StepClock> {
        AtaPio::identify(channel, clock(), Drive::Master).expect("the fake drive identifies")
    }

    fn identify_error(channel: FakeChannel, drive: Drive) -> AtaError {
        match AtaPio::identify(channel, clock(), drive) {
            Ok(ata) => panic!("identified {:?}", ata.identity()),
            Err(error) => error,
        }
    }

    // parse_identify

    #[test]
    fn parse_identify_reads_model_and_lba28_capacity() {
        let identity = parse_identify(&identify_words("QEMU HARDDISK", 204_800, None)).unwrap();
        assert_eq!(identity.model(), "QEMU HARDDISK");
        assert_eq!(identity.sectors, 204_800);
        assert!(!identity.lba48);
        assert_eq!(identity.bytes(), 204_800 * 512);
    }

    #[test]
    fn parse_identify_prefers_the_lba48_capacity() {
        let words = identify_words("BIG", 0x0fff_ffff, Some(0x1_2345_6789));
        let identity = parse_identify(&words).unwrap();
        assert!(identity.lba48);
        assert_eq!(identity.sectors, 0x1_2345_6789);
    }

    #[test]
    fn parse_identify_ignores_lba48_when_word_83_is_invalid() {
        let mut words = identify_words("X", 1000, Some(1 << 40));
        words[83] |= 0x8000;
        seal(&mut words);
        let identity = parse_identify(&words).unwrap();
        assert!(!identity.lba48);
        assert_eq!(identity.sectors, 1000);
    }

    #[test]
    fn parse_identify_falls_back_to_lba28_when_the_lba48_count_is_zero() {
        let mut words = identify_words("X", 1000, Some(0));
        words[83] |= 1 << 10;
        seal(&mut words);
        let identity = parse_identify(&words).unwrap();
        assert!(!identity.lba48);
        assert_eq!(identity.sectors, 1000);
    }

    #[test]
    fn parse_identify_clamps_capacity_to_what_commands_can_address() {
        let mut words = identify_words("X", 0, None);
        words[60] = 0xffff;
        words[61] = 0xffff;
        seal(&mut words);
        assert_eq!(parse_identify(&words).unwrap().sectors, LBA28_END - 1);

        let words = identify_words("X", 0x0fff_ffff, Some(u64::MAX));
        assert_eq!(parse_identify(&words).unwrap().sectors, LBA48_END);
    }

    #[test]
    fn parse_identify_refuses_zero_capacity() {
        let words = identify_words("EMPTY", 0, None);
        assert_eq!(parse_identify(&words), Err(AtaError::NoCapacity));
    }

    #[test]
    fn parse_identify_refuses_a_chs_only_drive() {
        let mut words = identify_words("OLD", 1000, None);
        words[49] = 0;
        seal(&mut words);
        assert_eq!(parse_identify(&words), Err(AtaError::NoLba));
    }

    #[test]
    fn parse_identify_checks_the_integrity_word_only_when_signed() {
        let mut words = identify_words("X", 1000, None);
        words[60] += 1;
        assert_eq!(parse_identify(&words), Err(AtaError::IdentifyChecksum));
        words[255] = 0;
        assert_eq!(parse_identify(&words).unwrap().sectors, 1001);
    }

    #[test]
    fn parse_identify_trims_padding_and_replaces_non_ascii() {
        let mut words = identify_words("", 1000, None);
        // "  A\u{1}B\xff" then spaces: leading spaces go, odd bytes become '?'.
        words[27] = u16::from_be_bytes([b' ', b' ']);
        words[28] = u16::from_be_bytes([b'A', 0x01]);
        words[29] = u16::from_be_bytes([b'B', 0xff]);
        seal(&mut words);
        assert_eq!(parse_identify(&words).unwrap().model(), "A?B?");

        let blank = identify_words("", 1000, None);
        assert_eq!(parse_identify(&blank).unwrap().model(), "");

        let full = "0123456789012345678901234567890123456789";
        let words = identify_words(full, 1000, None);
        assert_eq!(parse_identify(&words).unwrap().model(), full);
    }

    #[test]
    fn parse_identify_never_panics_and_keeps_its_invariants_on_random_data() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut words = [0u16; 256];
            for word in &mut words {
                *word = next() as u16;
            }
            // Make half the rounds pass the LBA and checksum gates so the rest is exercised.
            if round % 2 == 0 {
                words[49] |= 1 << 9;
                if round % 4 == 0 {
                    words[83] = (words[83] & 0x3fff) | 0x4000;
                }
                seal(&mut words);
            }
            if let Ok(identity) = parse_identify(&words) {
                assert!(identity.sectors > 0);
                assert!(
                    identity.sectors
                        <= if identity.lba48 {
                            LBA48_END
                        } else {
                            LBA28_END - 1
                        }
                );
                let model = identity.model();
                assert!(model.len() <= MODEL_BYTES);
                assert!(model.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
                assert_eq!(model.trim(), model);
            }
        }
    }

    // identify over the register protocol

    #[test]
    fn identify_reads_the_master_drive() {
        let ata = open(FakeChannel::master(FakeDrive::ata(
            "QEMU HARDDISK",
            2048,
            false,
            0,
        )));
        assert_eq!(ata.identity().model(), "QEMU HARDDISK");
        assert_eq!(ata.identity().sectors, 2048);
        assert_eq!(ata.drive(), Drive::Master);
        let (channel, _) = ata.into_parts();
        assert!(channel.issued.is_empty());
    }

    #[test]
    fn identify_selects_the_slave_drive() {
        let mut channel = FakeChannel::new(
            Some(FakeDrive::ata("MASTER", 100, false, 1)),
            Some(FakeDrive::ata("SLAVE", 200, false, 2)),
        );
        let mut slave = AtaPio::identify(&mut channel, clock(), Drive::Slave).unwrap();
        assert_eq!(slave.identity().model(), "SLAVE");
        let mut buf = [0u8; SECTOR_SIZE];
        slave.read_sectors(150, &mut buf).unwrap();
        assert_sectors(2, 150, &buf);

        // The lent ports serve the master next, which must be reselected.
        let mut master = AtaPio::identify(&mut channel, clock(), Drive::Master).unwrap();
        assert_eq!(master.identity().model(), "MASTER");
        master.read_sectors(50, &mut buf).unwrap();
        assert_sectors(1, 50, &buf);
    }

    #[test]
    fn identify_reports_a_floating_bus_as_no_drive() {
        let error = identify_error(FakeChannel::floating(), Drive::Master);
        assert_eq!(error, AtaError::NoDrive { status: 0xff });
    }

    #[test]
    fn identify_reports_an_empty_channel_as_no_drive() {
        let error = identify_error(FakeChannel::new(None, None), Drive::Master);
        assert_eq!(error, AtaError::NoDrive { status: 0 });
    }

    #[test]
    fn identify_reports_an_empty_slave_position_as_no_drive() {
        let channel = FakeChannel::master(FakeDrive::ata("MASTER", 100, false, 0));
        assert_eq!(
            identify_error(channel, Drive::Slave),
            AtaError::NoDrive { status: 0 }
        );
    }

    #[test]
    fn identify_recognises_an_atapi_device() {
        let channel = FakeChannel::master(FakeDrive::atapi());
        assert_eq!(
            identify_error(channel, Drive::Master),
            AtaError::NotAta {
                lba_mid: 0x14,
                lba_high: 0xeb
            }
        );
    }

    #[test]
    fn identify_times_out_on_a_drive_that_stays_busy() {
        let mut drive = FakeDrive::ata("STUCK", 100, false, 0);
        drive.status = BSY;
        drive.hangs_on_command = true;
        let mut clock = clock();
        let now = || clock.now_ns();
        let error = match AtaPio::identify(FakeChannel::master(drive), now, Drive::Master) {
            Ok(ata) => panic!("identified {:?}", ata.identity()),
            Err(error) => error,
        };
        assert_eq!(
            error,
            AtaError::Timeout {
                waiting_for: "BSY and DRQ to clear before selecting the drive",
                status: BSY
            }
        );
        // The bound is the clock's, not a number of polls.
        assert!(clock.now >= TIMEOUT_NS);
        assert!(clock.now < TIMEOUT_NS + 10 * clock.step);
    }

    #[test]
    fn identify_times_out_when_identify_data_never_comes() {
        let mut drive = FakeDrive::ata("STUCK", 100, false, 0);
        drive.hangs_on_command = true;
        let error = identify_error(FakeChannel::master(drive), Drive::Master);
        assert_eq!(
            error,
            AtaError::Timeout {
                waiting_for: "IDENTIFY data (BSY clear, DRQ set)",
                status: BSY | DSC
            }
        );
    }

    // read_sectors

    #[test]
    fn read_sectors_reads_one_sector_with_lba28() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 7)));
        let mut buf = [0u8; SECTOR_SIZE];
        ata.read_sectors(0, &mut buf).unwrap();
        assert_sectors(7, 0, &buf);
        ata.read_sectors(999, &mut buf).unwrap();
        assert_sectors(7, 999, &buf);
        let (channel, _) = ata.into_parts();
        assert_eq!(
            channel.issued,
            [
                Issued {
                    command: command::READ_SECTORS,
                    lba: 0,
                    count: 1
                },
                Issued {
                    command: command::READ_SECTORS,
                    lba: 999,
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn read_sectors_splits_lba28_reads_into_256_sector_commands() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata(
            "D",
            0x0fff_ffff,
            false,
            3,
        )));
        // Starts high enough that bits 24..27 travel in the Device register.
        let lba = 0x0abc_def0;
        let mut buf = vec![0u8; 600 * SECTOR_SIZE];
        ata.read_sectors(lba, &mut buf).unwrap();
        assert_sectors(3, lba, &buf);
        let (channel, _) = ata.into_parts();
        let read = |lba, count| Issued {
            command: command::READ_SECTORS,
            lba,
            count,
        };
        assert_eq!(
            channel.issued,
            [read(lba, 256), read(lba + 256, 256), read(lba + 512, 88)]
        );
    }

    #[test]
    fn read_sectors_writes_a_count_of_256_as_zero() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 0)));
        let mut buf = vec![0u8; 256 * SECTOR_SIZE];
        ata.read_sectors(10, &mut buf).unwrap();
        assert_sectors(0, 10, &buf);
        let (channel, _) = ata.into_parts();
        assert_eq!(channel.sector_count[0], 0);
        assert_eq!(channel.issued.len(), 1);
        assert_eq!(channel.issued[0].count, 256);
    }

    #[test]
    fn read_sectors_uses_lba48_for_a_range_that_crosses_28_bits() {
        let sectors = 1 << 32;
        let mut ata = open(FakeChannel::master(FakeDrive::ata("BIG", sectors, true, 9)));
        let lba = LBA28_END - 2;
        let mut buf = vec![0u8; 4 * SECTOR_SIZE];
        ata.read_sectors(lba, &mut buf).unwrap();
        assert_sectors(9, lba, &buf);
        // The last sector of all.
        ata.read_sectors(sectors - 1, &mut buf[..SECTOR_SIZE])
            .unwrap();
        assert_sectors(9, sectors - 1, &buf[..SECTOR_SIZE]);
        let (channel, _) = ata.into_parts();
        let ext = |lba, count| Issued {
            command: command::READ_SECTORS_EXT,
            lba,
            count,
        };
        assert_eq!(channel.issued, [ext(lba, 4), ext(sectors - 1, 1)]);
    }

    #[test]
    fn read_sectors_stays_on_lba28_below_the_28_bit_limit() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("BIG", 1 << 32, true, 0)));
        let mut buf = vec![0u8; SECTOR_SIZE];
        // The last sector a 28-bit command may address.
        ata.read_sectors(LBA28_END - 2, &mut buf).unwrap();
        ata.read_sectors(LBA28_END - 1, &mut buf).unwrap();
        let (channel, _) = ata.into_parts();
        let commands: Vec<u8> = channel.issued.iter().map(|i| i.command).collect();
        assert_eq!(commands, [command::READ_SECTORS, command::READ_SECTORS_EXT]);
    }

    #[test]
    fn read_sectors_splits_lba48_reads_into_65536_sector_commands() {
        let sectors = 0x2_0000_0000;
        let mut ata = open(FakeChannel::master(FakeDrive::ata("BIG", sectors, true, 5)));
        let lba = 0x1_2345_6789;
        let mut buf = vec![0u8; (65536 + 10) * SECTOR_SIZE];
        ata.read_sectors(lba, &mut buf).unwrap();
        assert_sectors(5, lba, &buf);
        let (channel, _) = ata.into_parts();
        let ext = |lba, count| Issued {
            command: command::READ_SECTORS_EXT,
            lba,
            count,
        };
        assert_eq!(channel.issued, [ext(lba, 65536), ext(lba + 65536, 10)]);
    }

    #[test]
    fn read_sectors_refuses_a_range_past_the_end() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 0)));
        let mut buf = vec![0u8; 2 * SECTOR_SIZE];
        assert_eq!(
            ata.read_sectors(999, &mut buf),
            Err(AtaError::OutOfRange {
                lba: 999,
                sectors: 2,
                capacity: 1000
            })
        );
        assert_eq!(
            ata.read_sectors(u64::MAX, &mut buf),
            Err(AtaError::OutOfRange {
                lba: u64::MAX,
                sectors: 2,
                capacity: 1000
            })
        );
        let (channel, _) = ata.into_parts();
        assert!(channel.issued.is_empty());
    }

    #[test]
    fn read_sectors_refuses_partial_sectors() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 0)));
        for len in [0, 1, 511, 513, 1000] {
            let mut buf = vec![0u8; len];
            assert_eq!(
                ata.read_sectors(0, &mut buf),
                Err(AtaError::BufferLength { len })
            );
        }
    }

    #[test]
    fn read_sectors_reports_a_device_error_and_recovers() {
        let mut drive = FakeDrive::ata("D", 1000, false, 4);
        drive.bad_lba = Some(101);
        let mut ata = open(FakeChannel::master(drive));
        let mut buf = vec![0u8; 3 * SECTOR_SIZE];
        let error = ata.read_sectors(100, &mut buf).unwrap_err();
        assert_eq!(
            error,
            AtaError::Device {
                status: DRDY | DSC | ERR,
                error: ERROR_UNC
            }
        );
        assert!(error.to_string().contains("uncorrectable"), "{error}");
        // The sector before the bad one arrived; the drive takes the next command.
        assert_sectors(4, 100, &buf[..SECTOR_SIZE]);
        ata.read_sectors(102, &mut buf[..SECTOR_SIZE]).unwrap();
        assert_sectors(4, 102, &buf[..SECTOR_SIZE]);
    }

    #[test]
    fn read_sectors_reports_an_error_posted_after_the_last_block() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 0)));
        ata.link.ports.drives[0]
            .as_mut()
            .unwrap()
            .error_after_last_block = Some(ERROR_ABRT);
        let mut buf = vec![0u8; 2 * SECTOR_SIZE];
        assert_eq!(
            ata.read_sectors(0, &mut buf),
            Err(AtaError::Device {
                status: DRDY | DSC | ERR,
                error: ERROR_ABRT
            })
        );
        assert_sectors(0, 0, &buf);
    }

    #[test]
    fn read_sectors_times_out_when_the_drive_hangs() {
        let mut ata = open(FakeChannel::master(FakeDrive::ata("D", 1000, false, 0)));
        ata.link.ports.drives[0].as_mut().unwrap().hangs_on_command = true;
        let mut buf = vec![0u8; SECTOR_SIZE];
        let error = ata.read_sectors(0, &mut buf).unwrap_err();
        assert_eq!(
            error,
            AtaError::Timeout {
                waiting_for: "sector data (BSY clear, DRQ set)",
                status: BSY | DSC
            }
        );
    }

    #[test]
    fn errors_display_as_one_line() {
        let errors = [
            AtaError::NoDrive { status: 0xff },
            AtaError::NoDrive { status: 0 },
            AtaError::NotAta {
                lba_mid: 0x14,
                lba_high: 0xeb,
            },
            AtaError::NotAta {
                lba_mid: 1,
                lba_high: 2,
            },
            AtaError::Timeout {
                waiting_for: "x",
                status: BSY,
            },
            AtaError::Device {
                status: DF,
                error: 0,
            },
            AtaError::Device {
                status: ERR,
                error: ERROR_IDNF,
            },
            AtaError::Device {
                status: ERR,
                error: ERROR_ABRT,
            },
            AtaError::Device {
                status: ERR,
                error: 0,
            },
            AtaError::IdentifyChecksum,
            AtaError::NoLba,
            AtaError::NoCapacity,
            AtaError::BufferLength { len: 3 },
            AtaError::OutOfRange {
                lba: 1,
                sectors: 2,
                capacity: 2,
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
        assert!(
            AtaError::NotAta {
                lba_mid: 0x14,
                lba_high: 0xeb
            }
            .to_string()
            .contains("ATAPI")
        );
        assert!(
            AtaError::Timeout {
                waiting_for: "x",
                status: BSY
            }
            .to_string()
            .contains("5000 ms")
        );
    }
}
