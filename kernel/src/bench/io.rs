//! I/O benchmarks: virtio-blk throughput by request size and random-read IOPS by queue
//! depth, the same sequential read from the emulated ATA disk, how long a request takes to
//! complete by interrupt and by polling, and virtio-net's transmit rate.
//!
//! Throughput samples are whole passes over a region, reported as `bytes_per_s` or
//! `ops_per_s` (so min is the slowest pass). Writes go only to the guest's half of a disk
//! that carries xtask's pattern, and write the guest's pattern.

use alloc::vec::Vec;

use janus_drivers::disk_pattern::{self, SECTOR_SIZE, Writer};
use janus_drivers::virtio_blk::{MAX_IN_FLIGHT, Operation};

use super::stats;
use crate::arch::cpu::rdtsc_ordered;
use crate::devices::dma::DmaBuffer;
use crate::devices::{self, Completion, ata, blk::BlockDevice};
use crate::net::{DISCARD_PORT, GATEWAY};
use crate::println;
use crate::time::clock;
use crate::time::tsc::Frequency;

/// Bytes each sequential pass moves.
const PASS_BYTES: usize = 4 << 20;
const PASSES: usize = 5;
const RANDOM_READS: usize = 512;
const LATENCY_SAMPLES: usize = 200;
const TX_PACKETS: usize = 500;

fn report_rate(id: &str, unit: &str, mut rates: Vec<u64>, extra: &str) {
    let Some(s) = stats::summarize(&mut rates) else {
        return;
    };
    println!(
        "@janus bench {id} unit={unit} n={} min={} median={} p99={}{extra}",
        s.n, s.min, s.median, s.p99
    );
}

/// Units of work per second over `ns`.
fn per_second(units: u64, ns: u64) -> u64 {
    (u128::from(units) * 1_000_000_000 / u128::from(ns.max(1))) as u64
}

/// Runs `pass` `PASSES` times after one warm-up, timing each on the clock.
fn passes(mut pass: impl FnMut() -> Option<u64>) -> Option<Vec<u64>> {
    pass()?;
    let mut rates = Vec::new();
    for _ in 0..PASSES {
        let start = clock::now();
        let units = pass()?;
        rates.push(per_second(units, clock::now() - start));
    }
    Some(rates)
}

pub fn run_all(tsc: Option<Frequency>) {
    if let Some(device) = devices::BLOCK.lock().as_mut() {
        block(device, tsc);
    }
    ata_read();
    network();
}

fn block(device: &mut BlockDevice, tsc: Option<Frequency>) {
    let Some(mut buf) = DmaBuffer::new(PASS_BYTES) else {
        println!("warning: no DMA memory for the block benchmarks");
        return;
    };
    let capacity = device.capacity();
    let host_half = disk_pattern::guest_writable(capacity).start;
    let pass_sectors = (PASS_BYTES / SECTOR_SIZE) as u64;
    if host_half < pass_sectors {
        println!("warning: block benchmarks skipped: the disk's host half is under 4 MiB");
        return;
    }
    let sizes = [("4k", 4 << 10), ("64k", 64 << 10), ("1m", 1 << 20)];
    for (name, size) in sizes {
        let rates = passes(|| sequential(device, Operation::Read, 0, buf.bytes(), size));
        match rates {
            Some(r) => report_rate(
                &alloc::format!("virtio-blk-seq-read-{name}"),
                "bytes_per_s",
                r,
                "",
            ),
            None => println!("warning: virtio-blk-seq-read-{name} failed"),
        }
    }
    // Writes only to a disk xtask prepared, in its guest half, with the guest's pattern.
    let test_disk = device
        .holds_host_pattern(&mut buf.bytes()[..SECTOR_SIZE])
        .unwrap_or(false);
    let region = disk_pattern::guest_writable(capacity).start;
    if test_disk && region + pass_sectors <= capacity {
        disk_pattern::fill_sectors(Writer::Guest, region, buf.bytes());
        for (name, size) in sizes {
            let rates = passes(|| sequential(device, Operation::Write, region, buf.bytes(), size));
            match rates {
                Some(r) => report_rate(
                    &alloc::format!("virtio-blk-seq-write-{name}"),
                    "bytes_per_s",
                    r,
                    "",
                ),
                None => println!("warning: virtio-blk-seq-write-{name} failed"),
            }
        }
    } else {
        println!("janus: virtio-blk write benchmarks skipped: not a Janus test disk");
    }
    for depth in [1, MAX_IN_FLIGHT] {
        let rates = passes(|| random_reads(device, host_half, buf.bytes(), depth));
        match rates {
            Some(r) => report_rate(
                &alloc::format!("virtio-blk-rand-read-4k-qd{depth}"),
                "ops_per_s",
                r,
                "",
            ),
            None => println!("warning: virtio-blk-rand-read-4k-qd{depth} failed"),
        }
    }
    completion_latency(device, buf.bytes(), tsc);
}

/// Moves `buf` to or from the disk from `sector` on in requests of `size` bytes, one at a
/// time; returns the bytes moved.
fn sequential(
    device: &mut BlockDevice,
    operation: Operation,
    sector: u64,
    buf: &mut [u8],
    size: usize,
) -> Option<u64> {
    for (i, chunk) in buf.chunks_mut(size).enumerate() {
        let at = sector + (i * size / SECTOR_SIZE) as u64;
        let done = match operation {
            Operation::Write => device.write(at, chunk),
            _ => device.read(at, chunk),
        };
        done.ok()?;
    }
    Some(buf.len() as u64)
}

/// `RANDOM_READS` 4 KiB reads at random 4 KiB-aligned places of the host's half, keeping
/// `depth` in flight; returns the reads done.
fn random_reads(
    device: &mut BlockDevice,
    sectors: u64,
    buf: &mut [u8],
    depth: usize,
) -> Option<u64> {
    const SIZE: usize = 4096;
    let blocks = sectors / (SIZE / SECTOR_SIZE) as u64;
    let mut rng = crate::rng::XorShift64::new(0x5eed ^ depth as u64);
    let mut free: Vec<*mut [u8]> = buf
        .chunks_mut(SIZE)
        .take(depth)
        .map(|c| c as *mut [u8])
        .collect();
    let (mut submitted, mut completed) = (0, 0);
    let mut in_flight: Vec<(usize, *mut [u8])> = Vec::new();
    while completed < RANDOM_READS {
        while submitted < RANDOM_READS
            && let Some(data) = free.pop()
        {
            let sector = rng.below(blocks) * (SIZE / SECTOR_SIZE) as u64;
            // SAFETY: `data` is a distinct 4 KiB piece of `buf`, which outlives this loop,
            // and it is not touched until its completion comes back below.
            let slot = unsafe { device.submit(Operation::Read, sector, data) }.ok()?;
            in_flight.push((slot, data));
            submitted += 1;
        }
        let done = device.complete().ok()?;
        done.result.ok()?;
        let index = in_flight.iter().position(|(slot, _)| *slot == done.slot)?;
        free.push(in_flight.swap_remove(index).1);
        completed += 1;
    }
    Some(RANDOM_READS as u64)
}

/// One 4 KiB read at a time, completed by interrupt and then by polling.
fn completion_latency(device: &mut BlockDevice, buf: &mut [u8], tsc: Option<Frequency>) {
    let original = device.mode();
    for (name, mode) in [
        ("interrupt", Completion::Interrupt),
        ("poll", Completion::Poll),
    ] {
        device.set_mode(mode);
        if device.mode() != mode {
            println!("janus: virtio-blk-completion-{name} skipped: the device has no interrupt");
            continue;
        }
        let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
        for i in 0..LATENCY_SAMPLES + 20 {
            let start = rdtsc_ordered();
            if device.read((i as u64 % 64) * 8, &mut buf[..4096]).is_err() {
                break;
            }
            let end = rdtsc_ordered();
            if i >= 20 {
                samples.push(end - start);
            }
        }
        super::cases::report(
            &alloc::format!("virtio-blk-completion-{name}"),
            samples,
            tsc,
        );
    }
    device.set_mode(original);
}

/// The same sequential read as virtio-blk's, from the emulated IDE disk by PIO.
fn ata_read() {
    let mut guard = ata::DISK.lock();
    let Some(disk) = guard.as_mut() else {
        return;
    };
    let mut buf = alloc::vec![0u8; PASS_BYTES];
    let size = 64 << 10;
    let rates = passes(|| {
        for (i, chunk) in buf.chunks_mut(size).enumerate() {
            disk.read_sectors((i * size / SECTOR_SIZE) as u64, chunk)
                .ok()?;
        }
        Some(PASS_BYTES as u64)
    });
    match rates {
        Some(r) => report_rate("ata-pio-seq-read-64k", "bytes_per_s", r, ""),
        None => println!("warning: ata-pio-seq-read-64k failed"),
    }
}

/// 64-byte UDP datagrams to the gateway's discard port, each handed to the device before
/// the next.
fn network() {
    let mut guard = devices::NETWORK.lock();
    let Some(device) = guard.as_mut() else {
        return;
    };
    let payload = [0x5au8; 64];
    let rates = passes(|| {
        for _ in 0..TX_PACKETS {
            if !device.stack().send_udp(GATEWAY, DISCARD_PORT, &payload) {
                return None;
            }
            device.poll();
        }
        Some(TX_PACKETS as u64)
    });
    match rates {
        Some(r) => report_rate("virtio-net-tx-udp-64", "ops_per_s", r, ""),
        None => println!("warning: virtio-net-tx-udp-64 failed: the socket refused a datagram"),
    }
}
