//! Self-tests of the I/O devices: data read from and written to the disks, a round trip to
//! the network's gateway and the host's UDP datagrams, the second console, the entropy
//! source.

use alloc::format;
use janus_drivers::disk_pattern::{self, SECTOR_SIZE, Writer};

use super::{Failure, Outcome, ensure};
use crate::devices::dma::DmaBuffer;
use crate::devices::{self, ata};
use crate::net::{self, GATEWAY};
use crate::println;
use crate::time::clock;

/// Reads sector 0, to see whether this disk is one xtask prepared.
fn is_test_disk(
    device: &mut devices::blk::BlockDevice,
    buf: &mut DmaBuffer,
) -> Result<bool, Failure> {
    Ok(device.holds_host_pattern(&mut buf.bytes()[..SECTOR_SIZE])?)
}

const CHUNK: usize = 64 * 1024;

/// The first MiB and 64 scattered sectors of the host's half read back as the host wrote
/// them.
pub fn blk_read(seed: u64) -> Outcome {
    let mut guard = devices::BLOCK.lock();
    let device = guard.as_mut().ok_or("no virtio-blk device")?;
    let mut buf = DmaBuffer::new(CHUNK).ok_or("no contiguous DMA memory for 64 KiB")?;
    ensure!(
        is_test_disk(device, &mut buf)?,
        "sector 0 does not hold xtask's pattern: not a Janus test disk, nothing checked"
    );
    let host_half = disk_pattern::guest_writable(device.capacity()).start;
    let first = (1 << 20) / SECTOR_SIZE as u64;
    ensure!(host_half >= first, "the disk's host half is under 1 MiB");
    let per_chunk = (CHUNK / SECTOR_SIZE) as u64;
    let mut sector = 0;
    while sector < first {
        device.read(sector, buf.bytes())?;
        if let Some((lba, found)) = disk_pattern::first_mismatch(Writer::Host, sector, buf.bytes())
        {
            return Err(Failure(format!(
                "sector {lba} holds {found:?}, not the host's data"
            )));
        }
        sector += per_chunk;
    }
    let mut rng = crate::rng::XorShift64::new(seed);
    for _ in 0..64 {
        let lba = rng.below(host_half);
        let one = &mut buf.bytes()[..SECTOR_SIZE];
        device.read(lba, one)?;
        ensure!(
            disk_pattern::classify(lba, one) == Some(Writer::Host),
            "sector {lba} read back wrong"
        );
    }
    Ok(Some(format!(
        "sectors={} capacity={}",
        first + 64,
        device.capacity()
    )))
}

/// Writes the guest's pattern over the write-test range, flushes, and reads it back; xtask
/// then checks the image file on the host.
pub fn blk_write() -> Outcome {
    let mut guard = devices::BLOCK.lock();
    let device = guard.as_mut().ok_or("no virtio-blk device")?;
    let mut buf = DmaBuffer::new(CHUNK).ok_or("no contiguous DMA memory for 64 KiB")?;
    ensure!(
        is_test_disk(device, &mut buf)?,
        "sector 0 does not hold xtask's pattern: this disk is not written to"
    );
    let range = disk_pattern::write_test_range(device.capacity())
        .ok_or("the disk is too small for the write test")?;
    let per_chunk = (CHUNK / SECTOR_SIZE) as u64;
    let mut sector = range.start;
    while sector < range.end {
        let n = per_chunk.min(range.end - sector) as usize * SECTOR_SIZE;
        disk_pattern::fill_sectors(Writer::Guest, sector, &mut buf.bytes()[..n]);
        device.write(sector, &buf.bytes()[..n])?;
        sector += per_chunk;
    }
    let flushed = device.flush()?;
    sector = range.start;
    while sector < range.end {
        let n = per_chunk.min(range.end - sector) as usize * SECTOR_SIZE;
        buf.bytes()[..n].fill(0);
        device.read(sector, &mut buf.bytes()[..n])?;
        if let Some((lba, found)) =
            disk_pattern::first_mismatch(Writer::Guest, sector, &buf.bytes()[..n])
        {
            return Err(Failure(format!(
                "sector {lba} reads back {found:?} after the write"
            )));
        }
        sector += per_chunk;
    }
    Ok(Some(format!(
        "sectors={}..{} flush={}",
        range.start,
        range.end,
        if flushed { "yes" } else { "not-offered" }
    )))
}

/// An ICMP echo to the gateway and its reply: ARP both ways, then ICMP.
pub fn net_gateway() -> Outcome {
    let mut guard = devices::NETWORK.lock();
    let device = guard.as_mut().ok_or("no virtio-net device")?;
    for seq in 1..=3u16 {
        let sent = clock::now();
        ensure!(
            device.stack().send_ping(GATEWAY, seq, b"janus"),
            "the ICMP socket refused the request"
        );
        let deadline = sent + 1_000_000_000;
        while clock::now() < deadline {
            device.poll();
            if device.stack().ping_reply(GATEWAY) == Some(seq) {
                let rtt_us = (clock::now() - sent) / 1000;
                return Ok(Some(format!(
                    "gateway={GATEWAY} rtt_us={rtt_us} tries={seq}"
                )));
            }
            device.wait(deadline);
        }
    }
    Err(Failure(format!(
        "no echo reply from {GATEWAY} in 3 tries of 1 s"
    )))
}

/// Serves UDP echo until the host's end marker, for at most `secs` seconds.
pub fn net_udp_echo(secs: u64) -> Outcome {
    let mut guard = devices::NETWORK.lock();
    let device = guard.as_mut().ok_or("no virtio-net device")?;
    println!(
        "@janus net-echo ready ip={} port={}",
        net::ADDRESS,
        net::ECHO_PORT
    );
    let deadline = clock::now().saturating_add(secs.saturating_mul(1_000_000_000));
    let mut echoed = 0;
    loop {
        device.poll();
        let round = device.stack().serve_echo();
        echoed += round.echoed;
        if round.end {
            // Send the last echo before reporting.
            device.poll();
            return Ok(Some(format!("echoed={echoed}")));
        }
        if clock::now() >= deadline {
            return Err(Failure(format!(
                "no end marker from the host within {secs} s ({echoed} datagrams echoed)"
            )));
        }
        device.wait(deadline);
    }
}

/// A nonce written on the virtio console; xtask finds it in the file behind it.
pub fn console(seed: u64) -> Outcome {
    ensure!(devices::console::present(), "no virtio-console device");
    let mut bytes = [0u8; 8];
    let nonce = match crate::entropy::fill(&mut bytes) {
        Some(_) => u64::from_le_bytes(bytes),
        None => crate::rng::XorShift64::new(seed).next_u64(),
    };
    let line = format!("@janus console-check nonce={nonce:016x}\n");
    ensure!(
        devices::console::write(&line),
        "the virtio console did not take the line"
    );
    Ok(Some(format!("nonce={nonce:016x}")))
}

/// Random bytes from virtio-rng look random: two draws differ, and 256 bytes take many
/// values (a stuck or zero source would not).
pub fn rng() -> Outcome {
    ensure!(devices::rng::present(), "no virtio-rng device");
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    ensure!(
        devices::rng::fill(&mut a),
        "the device gave fewer bytes than asked"
    );
    ensure!(
        devices::rng::fill(&mut b),
        "the device gave fewer bytes than asked"
    );
    ensure!(a != b, "two draws of 256 bytes are equal");
    let mut seen = [false; 256];
    a.iter().for_each(|&x| seen[usize::from(x)] = true);
    let distinct = seen.iter().filter(|&&s| s).count();
    // 256 uniform bytes take about 162 distinct values; fewer than 100 is far out.
    ensure!(
        distinct >= 100,
        "only {distinct} distinct values in 256 bytes"
    );
    let source = crate::entropy::fill(&mut b).map_or("none", |s| s.name());
    Ok(Some(format!("distinct={distinct} entropy_source={source}")))
}

/// The first MiB of the IDE disk reads as the host wrote it.
pub fn ata_read() -> Outcome {
    let mut guard = ata::DISK.lock();
    let disk = guard.as_mut().ok_or("no ATA disk")?;
    let mut buf = alloc::vec![0u8; CHUNK];
    let per_chunk = (CHUNK / SECTOR_SIZE) as u64;
    let first = (1 << 20) / SECTOR_SIZE as u64;
    let mut sector = 0;
    while sector < first {
        disk.read_sectors(sector, &mut buf)
            .map_err(|e| format!("{e}"))?;
        if let Some((lba, found)) = disk_pattern::first_mismatch(Writer::Host, sector, &buf) {
            return Err(Failure(format!(
                "sector {lba} holds {found:?}, not the host's data"
            )));
        }
        sector += per_chunk;
    }
    Ok(Some(format!("sectors={first}")))
}
