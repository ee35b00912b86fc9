//! A virtio block device (virtio 1.2 §5.2) on virtio-drivers' split virtqueue, with up to
//! [`MAX_IN_FLIGHT`] requests outstanding: the queue depth the random-read benchmark needs,
//! which virtio-drivers' own `VirtIOBlk` (16 descriptors, one request at a time) cannot give.
//!
//! Everything the device reports back is checked before it is believed: the used ring's
//! descriptor id must name a request in flight, and the length written must fit the buffers
//! of that request. A device that breaks either rule is refused from then on.

use core::fmt;
use core::ptr::NonNull;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

pub const SECTOR_SIZE: usize = 512;

/// Descriptors in the queue: three per request (header, data, status).
pub const QUEUE_SIZE: usize = 128;
/// Requests in flight at most.
pub const MAX_IN_FLIGHT: usize = 32;
const QUEUE: u16 = 0;

const REQUEST_HEADER: usize = 16;

/// Feature bits (virtio 1.2 §5.2.3, §6).
mod feature {
    pub const RO: u64 = 1 << 5;
    pub const FLUSH: u64 = 1 << 9;
    pub const VERSION_1: u64 = 1 << 32;
}

bitflags::bitflags! {
    /// The features this driver accepts.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const RO = feature::RO;
        const FLUSH = feature::FLUSH;
        const VERSION_1 = feature::VERSION_1;
    }
}

/// Request types (§5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Flush,
}

impl Operation {
    const fn type_code(self) -> u32 {
        match self {
            Operation::Read => 0,
            Operation::Write => 1,
            Operation::Flush => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The device's queue 0 is already in use, or virtio-drivers refused it.
    Queue(virtio_drivers::Error),
    /// The device offers a maximum queue size of 0: it has no queue 0.
    QueueSizeZero,
    /// The maximum queue size is not a power of two, which split queues require (§2.7).
    QueueSizeNotPowerOfTwo(u32),
    /// The device's queues are smaller than this driver's.
    QueueTooSmall { max: u32 },
    /// The configuration says the disk holds no sectors.
    NoCapacity,
    /// No DMA memory for the request headers.
    NoMemory,
    /// The request runs past the end of the disk, or its buffer is not whole sectors.
    BadRequest { sector: u64, len: usize },
    /// The device does not take writes (`VIRTIO_BLK_F_RO`).
    ReadOnly,
    /// All [`MAX_IN_FLIGHT`] request slots are busy.
    Busy,
    /// The used ring named descriptor `id`, which heads no request in flight.
    UsedIdNotInFlight { id: u16 },
    /// The device wrote `len` bytes into a request whose writable buffers hold `room`.
    UsedLengthTooLong { len: u32, room: usize },
    /// The device completed the request with a status other than OK (§5.2.6).
    Status(u8),
    /// An earlier violation made the device untrustworthy.
    Broken,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue(e) => write!(f, "setting up the request queue: {e}"),
            Self::QueueSizeZero => f.write_str("the device reports queue size 0"),
            Self::QueueSizeNotPowerOfTwo(n) => {
                write!(f, "the device reports queue size {n}, not a power of two")
            }
            Self::QueueTooSmall { max } => write!(
                f,
                "the device's queues hold {max} descriptors, this driver needs {QUEUE_SIZE}"
            ),
            Self::NoCapacity => f.write_str("the device reports a capacity of 0 sectors"),
            Self::NoMemory => f.write_str("no DMA memory for request headers"),
            Self::BadRequest { sector, len } => write!(
                f,
                "request of {len} bytes at sector {sector} is not whole sectors or runs past the disk"
            ),
            Self::ReadOnly => f.write_str("the device is read-only"),
            Self::Busy => write!(f, "all {MAX_IN_FLIGHT} request slots are in flight"),
            Self::UsedIdNotInFlight { id } => write!(
                f,
                "the device returned descriptor {id}, which heads no request in flight"
            ),
            Self::UsedLengthTooLong { len, room } => write!(
                f,
                "the device claims to have written {len} bytes into {room} bytes of buffers"
            ),
            Self::Status(s) => write!(f, "the device failed the request with status {s}"),
            Self::Broken => f.write_str("the device broke the virtio rules earlier; not used"),
        }
    }
}

/// A request handed to the device and not yet completed.
#[derive(Clone, Copy)]
struct InFlight {
    token: u16,
    operation: Operation,
    data: *mut u8,
    len: usize,
}

/// A finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What [`VirtioBlk::submit`] returned for it.
    pub slot: usize,
    pub result: Result<(), BlkError>,
}

pub struct VirtioBlk<H: Hal, T: Transport> {
    transport: T,
    queue: VirtQueue<H, QUEUE_SIZE>,
    capacity: u64,
    features: Features,
    /// One DMA page: the request headers, then one status byte per slot.
    headers: NonNull<u8>,
    headers_paddr: virtio_drivers::PhysAddr,
    slots: [Option<InFlight>; MAX_IN_FLIGHT],
    broken: bool,
}

// SAFETY: the raw pointers are the driver's own DMA page and buffers lent by `submit`'s
// caller, which stay valid wherever the driver goes; nothing in it is tied to one CPU.
unsafe impl<H: Hal, T: Transport + Send> Send for VirtioBlk<H, T> {}

/// Checks the queue size a device offers against what this driver needs.
pub fn check_queue_size(max: u32) -> Result<(), BlkError> {
    if max == 0 {
        Err(BlkError::QueueSizeZero)
    } else if !max.is_power_of_two() {
        Err(BlkError::QueueSizeNotPowerOfTwo(max))
    } else if max < QUEUE_SIZE as u32 {
        Err(BlkError::QueueTooSmall { max })
    } else {
        Ok(())
    }
}

/// Checks a request against the disk: whole sectors, at least one, inside the capacity.
pub fn check_request(capacity: u64, sector: u64, len: usize) -> Result<(), BlkError> {
    let sectors = (len / SECTOR_SIZE) as u64;
    let fits = sector
        .checked_add(sectors)
        .is_some_and(|end| end <= capacity);
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) || !fits {
        return Err(BlkError::BadRequest { sector, len });
    }
    Ok(())
}

/// How many bytes the device may write into a request: the data of a read, and the status.
pub const fn device_writable(operation: Operation, len: usize) -> usize {
    match operation {
        Operation::Read => len + 1,
        Operation::Write | Operation::Flush => 1,
    }
}

impl<H: Hal, T: Transport> VirtioBlk<H, T> {
    /// Resets and sets up the device. On error the device is left without DRIVER_OK, which
    /// is how a driver declines a device (§3.1.1).
    pub fn new(mut transport: T) -> Result<Self, BlkError> {
        let features = transport.begin_init(Features::all());
        // §5.2.4: capacity is the first field of the configuration, in 512-byte sectors.
        // Two 32-bit reads: the transport guarantees only 4-byte alignment (§4.1.4.6).
        let capacity = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(high) << 32 | u64::from(low))
            })
            .map_err(BlkError::Queue)?;
        if capacity == 0 {
            return Err(BlkError::NoCapacity);
        }
        check_queue_size(transport.max_queue_size(QUEUE))?;
        let queue = VirtQueue::new(&mut transport, QUEUE, false, false).map_err(BlkError::Queue)?;
        let (headers_paddr, headers) = H::dma_alloc(1, BufferDirection::Both);
        if headers_paddr == 0 {
            return Err(BlkError::NoMemory);
        }
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            capacity,
            features,
            headers,
            headers_paddr,
            slots: [None; MAX_IN_FLIGHT],
            broken: false,
        })
    }

    /// In 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn read_only(&self) -> bool {
        self.features.contains(Features::RO)
    }

    /// Whether the device makes flushes mean something (`VIRTIO_BLK_F_FLUSH`).
    pub fn has_flush(&self) -> bool {
        self.features.contains(Features::FLUSH)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn enable_interrupts(&mut self, enable: bool) {
        self.queue.set_dev_notify(enable);
    }

    fn header(&self, slot: usize) -> *mut u8 {
        self.headers.as_ptr().wrapping_add(slot * REQUEST_HEADER)
    }

    fn status(&self, slot: usize) -> *mut u8 {
        self.headers
            .as_ptr()
            .wrapping_add(MAX_IN_FLIGHT * REQUEST_HEADER + slot)
    }

    /// Hands a request to the device and returns its slot, which [`Self::poll`] reports
    /// when it completes. `data` is read into or written from (empty for a flush).
    ///
    /// # Safety
    /// `data` must stay valid, and untouched by anyone else, until the request's completion
    /// has been returned by [`Self::poll`].
    pub unsafe fn submit(
        &mut self,
        operation: Operation,
        sector: u64,
        data: *mut [u8],
    ) -> Result<usize, BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        let len = data.len();
        match operation {
            Operation::Flush => {}
            Operation::Write if self.read_only() => return Err(BlkError::ReadOnly),
            _ => check_request(self.capacity, sector, len)?,
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(BlkError::Busy)?;
        let mut header = [0u8; REQUEST_HEADER];
        header[..4].copy_from_slice(&operation.type_code().to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        // SAFETY: the header page is ours (dma_alloc) and the slot is free.
        unsafe {
            self.header(slot)
                .copy_from_nonoverlapping(header.as_ptr(), REQUEST_HEADER);
            self.status(slot).write_volatile(0xff);
        }
        let data = data.cast::<u8>();
        // SAFETY: the header and status live in our DMA page until the slot is freed in
        // `poll`, and the caller keeps `data` alive until then.
        let token = unsafe { self.add(slot, operation, data, len) }.map_err(BlkError::Queue)?;
        self.slots[slot] = Some(InFlight {
            token,
            operation,
            data,
            len,
        });
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(slot)
    }

    /// The request header, status byte and data of `slot`, as slices for the queue.
    ///
    /// # Safety
    /// `data` must be valid for `len` bytes and used by nothing else (submit's contract).
    unsafe fn buffers<'a>(
        &self,
        slot: usize,
        data: *mut u8,
        len: usize,
    ) -> (&'a [u8], &'a mut [u8], &'a mut [u8]) {
        // SAFETY: the header and status byte of each slot are distinct bytes of our DMA page,
        // which lives as long as the driver; `data` is the caller's to lend.
        unsafe {
            (
                core::slice::from_raw_parts(self.header(slot), REQUEST_HEADER),
                core::slice::from_raw_parts_mut(self.status(slot), 1),
                core::slice::from_raw_parts_mut(data, len),
            )
        }
    }

    /// # Safety
    /// As [`Self::submit`]: the buffers stay valid until `pop_used` returns them.
    unsafe fn add(
        &mut self,
        slot: usize,
        operation: Operation,
        data: *mut u8,
        len: usize,
    ) -> Result<u16, virtio_drivers::Error> {
        // SAFETY: the caller's contract.
        let (header, status, buffer) = unsafe { self.buffers(slot, data, len) };
        // SAFETY: the caller keeps every buffer alive until pop_used.
        unsafe {
            match operation {
                Operation::Read => self.queue.add(&[header], &mut [buffer, status]),
                Operation::Write => self.queue.add(&[header, buffer], &mut [status]),
                Operation::Flush => self.queue.add(&[header], &mut [status]),
            }
        }
    }

    /// Whether the used ring holds a completion [`Self::poll`] would return.
    pub fn has_completion(&self) -> bool {
        self.queue.can_pop()
    }

    /// Resets the device, which stops it using any buffer (§2.1.2), and refuses it from now
    /// on: for a device that stopped answering, whose requests' buffers are being given up.
    pub fn abandon(&mut self) {
        self.transport
            .set_status(virtio_drivers::transport::DeviceStatus::empty());
        self.broken = true;
    }

    /// Takes the next completed request off the used ring, if there is one.
    pub fn poll(&mut self) -> Result<Option<Completion>, BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        let Some(id) = self.queue.peek_used() else {
            return Ok(None);
        };
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.token == id))
        else {
            self.broken = true;
            return Err(BlkError::UsedIdNotInFlight { id });
        };
        let request = self.slots[slot].expect("found just now");
        // SAFETY: the same buffers `add` queued for this token, still valid (submit's
        // contract).
        let (header, status, buffer) = unsafe { self.buffers(slot, request.data, request.len) };
        // SAFETY: these are the buffers queued under `id` (see above).
        let written = unsafe {
            match request.operation {
                Operation::Read => self.queue.pop_used(id, &[header], &mut [buffer, status]),
                Operation::Write => self.queue.pop_used(id, &[header, buffer], &mut [status]),
                Operation::Flush => self.queue.pop_used(id, &[header], &mut [status]),
            }
        }
        .map_err(BlkError::Queue)?;
        self.slots[slot] = None;
        let room = device_writable(request.operation, request.len);
        if written as usize > room {
            self.broken = true;
            return Err(BlkError::UsedLengthTooLong { len: written, room });
        }
        // SAFETY: the device is done with the status byte; it is ours again.
        let result = match unsafe { self.status(slot).read_volatile() } {
            0 => Ok(()),
            code => Err(BlkError::Status(code)),
        };
        Ok(Some(Completion { slot, result }))
    }

    /// The device, for acknowledging interrupts and such.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }
}

impl<H: Hal, T: Transport> Drop for VirtioBlk<H, T> {
    fn drop(&mut self) {
        // Reset first, so the device stops using the headers before they are freed (§3.3.1).
        self.transport
            .set_status(virtio_drivers::transport::DeviceStatus::empty());
        // SAFETY: allocated in `new` with one page; the device is reset.
        unsafe { H::dma_dealloc(self.headers_paddr, self.headers, 1) };
    }
}

const _: () = assert!(MAX_IN_FLIGHT * (REQUEST_HEADER + 1) <= PAGE_SIZE);
const _: () = assert!(MAX_IN_FLIGHT * 3 <= QUEUE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sizes_are_checked() {
        assert_eq!(check_queue_size(0), Err(BlkError::QueueSizeZero));
        assert_eq!(
            check_queue_size(100),
            Err(BlkError::QueueSizeNotPowerOfTwo(100))
        );
        assert_eq!(
            check_queue_size(64),
            Err(BlkError::QueueTooSmall { max: 64 })
        );
        assert_eq!(check_queue_size(128), Ok(()));
        assert_eq!(check_queue_size(1024), Ok(()));
    }

    #[test]
    fn requests_must_be_whole_sectors_inside_the_disk() {
        assert_eq!(check_request(8, 0, 4096), Ok(()));
        assert_eq!(check_request(8, 7, 512), Ok(()));
        for (sector, len) in [(7, 1024), (0, 0), (0, 100), (u64::MAX, 512), (8, 512)] {
            assert_eq!(
                check_request(8, sector, len),
                Err(BlkError::BadRequest { sector, len })
            );
        }
    }

    #[test]
    fn only_reads_let_the_device_write_data() {
        assert_eq!(device_writable(Operation::Read, 4096), 4097);
        assert_eq!(device_writable(Operation::Write, 4096), 1);
        assert_eq!(device_writable(Operation::Flush, 0), 1);
    }
}
