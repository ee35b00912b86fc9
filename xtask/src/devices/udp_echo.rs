//! The host side of the UDP echo round trip through virtio-net.
//!
//! QEMU's user network forwards a host port on 127.0.0.1 to the guest's UDP port 7. When the
//! kernel prints `@janus net-echo ready`, a host thread sends [`DATAGRAMS`] datagrams there,
//! one at a time, each waiting for an identical echo, then [`END`], which the kernel echoes
//! before it stops serving.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The guest port the kernel serves the echo on (the classic echo service).
pub const GUEST_PORT: u16 = 7;

/// Datagrams sent before [`END`].
pub const DATAGRAMS: usize = 16;

/// Their sizes: spread from 1 byte to 1400, under the 1472 bytes a 1500-byte Ethernet MTU
/// leaves for a UDP payload.
pub const SIZES: [usize; DATAGRAMS] = [
    1, 16, 64, 100, 128, 256, 333, 512, 576, 700, 900, 1024, 1100, 1200, 1300, 1400,
];

/// The payload that ends the exchange: the kernel echoes it, then stops serving.
pub const END: &[u8] = b"janus-echo-end";

/// Picks a UDP port on 127.0.0.1 that is free now: binds port 0, reads the port the kernel
/// gave, and releases it for QEMU's `hostfwd`.
pub fn pick_free_port() -> io::Result<u16> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(socket.local_addr()?.port())
}

/// Datagram `index`: `janus-echo <index> ` padded with filler to [`SIZES`]`[index]` bytes
/// (the 1-byte one is that text cut short). The same on every run.
///
/// # Panics
/// If `index` is not below [`DATAGRAMS`].
pub fn payload(index: usize) -> Vec<u8> {
    let size = SIZES[index];
    let mut payload = format!("janus-echo {index} ").into_bytes();
    payload.truncate(size);
    while payload.len() < size {
        // Printable, and different for every datagram and offset.
        let at = payload.len();
        payload.push(b'a' + ((index * 7 + at * 13) % 26) as u8);
    }
    payload
}

/// How long to wait and how often to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// For each echo.
    pub reply_timeout: Duration,
    /// Sends of a datagram after the first.
    pub retries: u32,
}

impl Default for Patience {
    fn default() -> Patience {
        Patience {
            reply_timeout: Duration::from_secs(2),
            retries: 3,
        }
    }
}

/// How the exchange went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EchoResult {
    /// Where the datagrams went: 127.0.0.1 and the forwarded port.
    pub target: Option<SocketAddr>,
    /// Datagrams of [`DATAGRAMS`] that came back identical.
    pub intact: usize,
    /// Sends beyond the first of each datagram.
    pub retries: u32,
    /// The round trip of each intact datagram, from the send that it answered.
    pub round_trips: Vec<Duration>,
    /// The datagrams that never came back intact.
    pub lost: Vec<usize>,
    /// Whether [`END`] came back.
    pub end_echoed: bool,
    /// Replies that matched nothing sent: corrupted or foreign.
    pub garbled: u32,
    /// The port refused a datagram (ICMP port unreachable): nothing was listening.
    pub refused: bool,
    /// QEMU ended before the exchange did.
    pub cut_short: bool,
    /// A socket error that stopped the exchange.
    pub error: Option<String>,
}

impl EchoResult {
    /// All datagrams and the end came back intact.
    pub fn passed(&self) -> bool {
        self.intact == DATAGRAMS && self.end_echoed && self.error.is_none()
    }

    /// The median round trip in whole microseconds.
    pub fn median_round_trip_us(&self) -> Option<u64> {
        let mut sorted = self.round_trips.clone();
        sorted.sort();
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        };
        Some(median.as_micros() as u64)
    }
}

impl fmt::Display for EchoResult {
    /// One line, e.g. `16/16 datagrams echoed intact via 127.0.0.1:40123 (median round trip
    /// 812 us)`, followed by what went wrong, if anything did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{DATAGRAMS} datagrams echoed intact", self.intact)?;
        if let Some(target) = self.target {
            write!(f, " via {target}")?;
        }
        let mut notes = Vec::new();
        if let Some(us) = self.median_round_trip_us() {
            notes.push(format!("median round trip {us} us"));
        }
        if self.retries > 0 {
            notes.push(format!("{} retries", self.retries));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        if let Some(error) = &self.error {
            write!(f, "; stopped by a socket error: {error}")?;
        }
        if !self.lost.is_empty() {
            let mut lost: Vec<String> = self
                .lost
                .iter()
                .take(LOST_NAMED)
                .map(|&i| format!("#{i} ({} B)", SIZES[i]))
                .collect();
            if self.lost.len() > LOST_NAMED {
                lost.push(format!("{} more", self.lost.len() - LOST_NAMED));
            }
            write!(f, "; not echoed intact: {}", lost.join(", "))?;
        }
        if !self.end_echoed {
            write!(f, "; `{}` was not echoed", String::from_utf8_lossy(END))?;
        }
        if self.garbled > 0 {
            write!(f, "; {} replies matched nothing sent", self.garbled)?;
        }
        if self.refused {
            write!(f, "; the port refused datagrams: nothing listened on it")?;
        }
        if self.cut_short {
            write!(f, "; QEMU ended before the exchange did")?;
        }
        Ok(())
    }
}

/// How many lost datagrams a result line names.
const LOST_NAMED: usize = 3;

/// How long a wait for a reply sleeps before looking at the stop flag again.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Sends the datagrams and [`END`] to `target`, each until its echo comes back or
/// `patience` runs out; gives up between two waits once `stop` is set.
pub fn exchange(target: SocketAddr, patience: Patience, stop: &AtomicBool) -> EchoResult {
    let mut result = EchoResult {
        target: Some(target),
        ..EchoResult::default()
    };
    let socket = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|s| {
        // Connected, so only the target's replies arrive, and an ICMP port unreachable
        // shows up as ECONNREFUSED.
        s.connect(target)?;
        Ok(s)
    }) {
        Ok(socket) => socket,
        Err(e) => {
            result.error = Some(crate::host::io_reason(&e));
            result.lost = (0..DATAGRAMS).collect();
            return result;
        }
    };
    let mut client = Client {
        socket,
        patience,
        stop,
        result,
        sent: Vec::new(),
    };
    for index in 0..DATAGRAMS {
        match client.round_trip(&payload(index)) {
            Ok(Some(took)) => {
                client.result.intact += 1;
                client.result.round_trips.push(took);
            }
            Ok(None) => client.result.lost.push(index),
            Err(e) => {
                client.result.error = Some(crate::host::io_reason(&e));
                client.result.lost.extend(index..DATAGRAMS);
                return client.result;
            }
        }
    }
    match client.round_trip(END) {
        Ok(echoed) => client.result.end_echoed = echoed.is_some(),
        Err(e) => client.result.error = Some(crate::host::io_reason(&e)),
    }
    client.result
}

struct Client<'a> {
    socket: UdpSocket,
    patience: Patience,
    stop: &'a AtomicBool,
    result: EchoResult,
    /// Everything sent so far: a late echo of an earlier datagram is not garbage.
    sent: Vec<Vec<u8>>,
}

/// Why a wait for an echo ended without it.
enum NoEcho {
    TimedOut,
    Refused,
    Stopped,
}

impl Client<'_> {
    /// Sends `payload` until it comes back identical; the round trip of the send it
    /// answered, or `None` when every try went unanswered.
    fn round_trip(&mut self, payload: &[u8]) -> io::Result<Option<Duration>> {
        self.sent.push(payload.to_vec());
        for attempt in 0..=self.patience.retries {
            if self.result.cut_short {
                return Ok(None);
            }
            if attempt > 0 {
                self.result.retries += 1;
            }
            let sent_at = Instant::now();
            match self.socket.send(payload) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.result.refused = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            match self.await_echo(payload, sent_at + self.patience.reply_timeout)? {
                Ok(()) => return Ok(Some(sent_at.elapsed())),
                Err(NoEcho::Refused) => self.result.refused = true,
                Err(NoEcho::Stopped) => self.result.cut_short = true,
                Err(NoEcho::TimedOut) => {}
            }
        }
        Ok(None)
    }

    /// Reads replies until `payload` comes back or `deadline` passes.
    fn await_echo(&mut self, payload: &[u8], deadline: Instant) -> io::Result<Result<(), NoEcho>> {
        let mut buf = vec![0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Err(NoEcho::TimedOut));
            }
            self.socket.set_read_timeout(Some(left.min(STOP_POLL)))?;
            match self.socket.recv(&mut buf) {
                Ok(n) if buf[..n] == *payload => return Ok(Ok(())),
                // A late echo of an earlier send.
                Ok(n) if self.sent.iter().any(|p| buf[..n] == **p) => {}
                Ok(_) => self.result.garbled += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Replies already queued are read first: QEMU may have echoed and
                    // exited.
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(Err(NoEcho::Stopped));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Ok(Err(NoEcho::Refused));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// An exchange running on its own thread; dropping it tells the thread to give up.
pub struct EchoThread {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<EchoResult>>,
}

impl EchoThread {
    /// Starts [`exchange`] with `target` on a new thread.
    pub fn spawn(target: SocketAddr, patience: Patience) -> EchoThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("janus-udp-echo".into())
            .spawn(move || exchange(target, patience, &flag))
            .ok();
        EchoThread { stop, thread }
    }

    /// Tells the thread the guest is gone and waits for what it got (at most
    /// [`STOP_POLL`] more).
    pub fn finish(mut self) -> EchoResult {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => EchoResult {
                error: Some("the echo thread panicked".into()),
                ..EchoResult::default()
            },
            None => EchoResult {
                error: Some("the echo thread could not be started".into()),
                ..EchoResult::default()
            },
        }
    }
}

impl Drop for EchoThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1 that passes each datagram, with how many it has
    /// received, through `answer` and sends back what that returns; it stops after
    /// answering [`END`].
    fn server(
        answer: impl Fn(&[u8], u32) -> Option<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<u32>) {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut received = 0;
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                received += 1;
                if let Some(reply) = answer(&buf[..n], received) {
                    socket.send_to(&reply, from).unwrap();
                    if &buf[..n] == END {
                        break;
                    }
                }
            }
            received
        });
        (addr, handle)
    }

    fn quick() -> Patience {
        Patience {
            reply_timeout: Duration::from_millis(20),
            retries: 3,
        }
    }

    fn no_stop() -> AtomicBool {
        AtomicBool::new(false)
    }

    #[test]
    fn payloads_have_the_documented_shape() {
        assert_eq!(payload(0), b"j");
        assert_eq!(&payload(1)[..13], b"janus-echo 1 ");
        assert_eq!(&payload(15)[..14], b"janus-echo 15 ");
        for (i, size) in SIZES.into_iter().enumerate() {
            let p = payload(i);
            assert_eq!(p.len(), size, "#{i}");
            assert!(p.iter().all(|b| b.is_ascii_graphic() || *b == b' '), "#{i}");
            assert_eq!(p, payload(i), "deterministic");
            assert_ne!(p, END);
        }
        assert!(SIZES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((SIZES[0], SIZES[DATAGRAMS - 1]), (1, 1400));
        // Different datagrams differ even where their text does not.
        assert_ne!(&payload(2)[13..], &payload(3)[13..64]);
    }

    #[test]
    fn an_echo_server_gets_everything_back() {
        let (addr, handle) = server(|d, _| Some(d.to_vec()));
        let result = exchange(addr, Patience::default(), &no_stop());
        assert!(result.passed(), "{result}");
        assert_eq!(result.intact, 16);
        assert_eq!(result.retries, 0);
        assert_eq!(result.round_trips.len(), 16);
        assert!(result.end_echoed);
        assert_eq!(handle.join().unwrap(), 17);
        let line = result.to_string();
        assert!(
            line.starts_with(&format!(
                "16/16 datagrams echoed intact via {addr} (median round trip "
            )),
            "{line}"
        );
        assert!(line.ends_with(" us)"), "{line}");
    }

    #[test]
    fn lost_datagrams_are_sent_again() {
        // Every datagram's first copy is dropped.
        let (addr, handle) = server(|d, n| (n % 2 == 0).then(|| d.to_vec()));
        let result = exchange(addr, quick(), &no_stop());
        assert!(result.passed(), "{result}");
        assert_eq!(result.retries, 17);
        assert_eq!(handle.join().unwrap(), 34);
        assert!(result.to_string().contains(", 17 retries)"), "{result}");
    }

    #[test]
    fn garbled_echoes_do_not_count() {
        let (addr, _handle) = server(|d, _| {
            let mut d = d.to_vec();
            if d != END {
                d[0] ^= 0x20;
            }
            Some(d)
        });
        let result = exchange(addr, quick(), &no_stop());
        assert!(!result.passed());
        assert_eq!(result.intact, 0);
        assert_eq!(result.garbled, 64);
        assert_eq!(result.retries, 48);
        assert!(result.end_echoed);
        assert_eq!(result.lost, (0..16).collect::<Vec<_>>());
        let line = result.to_string();
        assert!(
            line.starts_with("0/16 datagrams echoed intact via"),
            "{line}"
        );
        assert!(
            line.contains("; not echoed intact: #0 (1 B), #1 (16 B), #2 (64 B), 13 more;"),
            "{line}"
        );
        assert!(line.contains("; 64 replies matched nothing sent"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_silent_port_fails_after_the_retries_without_hanging() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let start = Instant::now();
        let result = exchange(silent.local_addr().unwrap(), quick(), &no_stop());
        let took = start.elapsed();
        assert!(!result.passed());
        assert_eq!(result.intact, 0);
        assert_eq!(result.retries, 17 * 3);
        assert!(!result.end_echoed);
        assert!(!result.refused);
        // 17 payloads, 4 sends each, 20 ms per wait.
        assert!(took >= Duration::from_millis(17 * 4 * 20), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(
            result
                .to_string()
                .ends_with("; `janus-echo-end` was not echoed"),
            "{result}"
        );
    }

    #[test]
    fn a_closed_port_is_refused_quickly() {
        let port = pick_free_port().unwrap();
        let start = Instant::now();
        let result = exchange(
            (Ipv4Addr::LOCALHOST, port).into(),
            Patience::default(),
            &no_stop(),
        );
        assert!(!result.passed());
        assert!(result.refused, "{result}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            result
                .to_string()
                .contains("the port refused datagrams: nothing listened on it"),
            "{result}"
        );
    }

    #[test]
    fn a_stopped_exchange_ends_at_the_next_wait() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let echo = EchoThread::spawn(silent.local_addr().unwrap(), Patience::default());
        thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let result = echo.finish();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(result.cut_short);
        assert_eq!(result.intact, 0);
        assert_eq!(result.lost.len(), 16);
        assert!(
            result
                .to_string()
                .ends_with("; QEMU ended before the exchange did")
        );
    }

    #[test]
    fn a_thread_exchange_returns_its_result() {
        let (addr, _handle) = server(|d, _| Some(d.to_vec()));
        let echo = EchoThread::spawn(addr, Patience::default());
        // Long enough for 17 local round trips.
        thread::sleep(Duration::from_millis(500));
        let result = echo.finish();
        assert!(result.passed(), "{result}");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        let us = |v: &[u64]| EchoResult {
            round_trips: v.iter().map(|&u| Duration::from_micros(u)).collect(),
            ..EchoResult::default()
        };
        assert_eq!(us(&[]).median_round_trip_us(), None);
        assert_eq!(us(&[30, 10, 20]).median_round_trip_us(), Some(20));
        assert_eq!(us(&[40, 10, 20, 30]).median_round_trip_us(), Some(25));
    }

    #[test]
    fn picked_ports_are_free_and_bindable() {
        let port = pick_free_port().unwrap();
        assert_ne!(port, 0);
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).expect("the picked port is free");
    }
}
