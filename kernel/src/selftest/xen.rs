//! Self-tests of the Xen interfaces, run only under Xen.

use core::sync::atomic::{AtomicU32, Ordering};

use alloc::string::String;
use janus_hypercall::cpuid::Detection;

use crate::platform::cpuid;
use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::event_channel::EvtchnPort;
use janus_hypercall::xen::hypercall::HypercallPage;
use janus_hypercall::xen::ops::DOMID_SELF;

use super::{Failure, Outcome, ensure};
use crate::platform::xen_events;
use crate::platform::{self, xen::Xen};
use crate::time::tsc;

pub fn version(xen: &Xen) -> Outcome {
    let again = xen.hypercalls.xen_version()?;
    ensure!(
        again == xen.version,
        "xen_version changed from {:?} to {again:?}",
        xen.version
    );
    ensure!(
        xen.version.major >= 3,
        "implausible Xen version {}.{}",
        xen.version.major,
        xen.version.minor
    );
    Ok(Some(alloc::format!(
        "version={}.{}",
        xen.version.major,
        xen.version.minor
    )))
}

pub fn console_io(xen: &Xen) -> Outcome {
    xen.hypercalls
        .console_write(b"janus: console_io self-test line\n")?;
    Ok(None)
}

/// The shared info page is mapped, its time record for vCPU 0 is consistent and advancing,
/// the TSC frequency it implies agrees with Xen's CPUID time leaf, and the wallclock is
/// after 2001.
pub fn shared_info(detection: &Detection) -> Outcome {
    let shared = platform::xen::shared_info().ok_or("shared info page not mapped")?;
    let time = shared.vcpu_time(0).ok_or("no time record for vCPU 0")?;
    let first = time.read()?;
    ensure!(first.tsc_to_system_mul != 0, "tsc_to_system_mul is 0");
    ensure!(first.system_time > 0, "system_time is 0");
    for _ in 0..1000 {
        core::hint::black_box(core::arch::x86_64::__cpuid_count(0, 0));
    }
    let second = time.read()?;
    ensure!(
        second.system_time >= first.system_time,
        "system_time went back from {} to {}",
        first.system_time,
        second.system_time
    );
    let pvclock_hz =
        janus_drivers::pvclock::tsc_hz(&second).ok_or("implausible tsc_to_system_mul/tsc_shift")?;
    if let Some(leaf) = tsc::from_cpuid(cpuid, detection) {
        ensure!(
            pvclock_hz.abs_diff(leaf.hz) <= leaf.hz / 100,
            "pvclock implies a {pvclock_hz} Hz TSC, the CPUID leaf says {} Hz",
            leaf.hz
        );
    }
    let wallclock = shared.read_wallclock()?;
    ensure!(
        wallclock.sec >= 1_000_000_000,
        "wallclock at {} s since the epoch",
        wallclock.sec
    );
    Ok(Some(alloc::format!(
        "pvclock_tsc_khz={} system_time_ns={}",
        pvclock_hz / 1000,
        second.system_time
    )))
}

pub fn unknown_hypercall(xen: &Xen) -> Outcome {
    match xen.hypercalls.unknown_hypercall() {
        Err(XenError::Enosys) => Ok(None),
        other => Err(super::Failure(alloc::format!(
            "an undefined hypercall returned {other:?}, expected ENOSYS"
        ))),
    }
}

/// Events the loopback handler saw, and the port of the last one.
static LOOPBACK_EVENTS: AtomicU32 = AtomicU32::new(0);
static LOOPBACK_LAST_PORT: AtomicU32 = AtomicU32::new(u32::MAX);

/// Round trips to Xen allowed for an event to arrive: each returns through Xen's check for
/// pending events, so one should do.
const EVENT_WAIT_HYPERCALLS: u32 = 100;

fn count_loopback_event(port: EvtchnPort) {
    LOOPBACK_LAST_PORT.store(port.0, Ordering::SeqCst);
    LOOPBACK_EVENTS.fetch_add(1, Ordering::SeqCst);
}

/// Whether the loopback handler has seen `events` events, within a bounded number of
/// hypercalls.
fn wait_for_events(xen: &HypercallPage, events: u32) -> bool {
    for _ in 0..EVENT_WAIT_HYPERCALLS {
        if LOOPBACK_EVENTS.load(Ordering::SeqCst) >= events {
            return true;
        }
        let _ = xen.xen_version();
        core::hint::spin_loop();
    }
    LOOPBACK_EVENTS.load(Ordering::SeqCst) >= events
}

/// An event sent over a loopback channel reaches the handler bound to the receiving port
/// through the event upcall. The channel: a port allocated for this domain
/// (`alloc_unbound(DOMID_SELF)`) and a second one bound to it (`bind_interdomain`). The
/// second starts pending (Xen sets it in case the peer signalled before the bind), so it
/// must see two events: that one once unmasked, then the one sent on the first port.
pub fn event_upcall(xen: &Xen) -> Outcome {
    ensure!(
        xen_events::is_registered(),
        "the event upcall is not registered (see the warning at boot)"
    );
    let xen = xen.hypercalls;
    let sender = xen
        .evtchn_alloc_unbound(DOMID_SELF)
        .map_err(|e| alloc::format!("EVTCHNOP_alloc_unbound(DOMID_SELF): {e}"))?;
    let receiver = match xen.evtchn_bind_interdomain(DOMID_SELF, sender) {
        Ok(port) => port,
        Err(e) => {
            let _ = xen.evtchn_close(sender);
            return Err(Failure(alloc::format!(
                "EVTCHNOP_bind_interdomain(DOMID_SELF, {sender}): {e}"
            )));
        }
    };
    let outcome = deliver_over_loopback(xen, sender, receiver);
    // Whatever happened: upcalls off again, the handler gone and the port masked (unbind),
    // both ports closed.
    xen_events::disable_upcalls();
    let unbound = xen_events::unbind(receiver);
    let closed = xen
        .evtchn_close(receiver)
        .and_then(|()| xen.evtchn_close(sender));
    let extra = outcome?;
    unbound?;
    closed.map_err(|e| alloc::format!("EVTCHNOP_close: {e}"))?;
    Ok(Some(extra))
}

fn deliver_over_loopback(
    xen: &HypercallPage,
    sender: EvtchnPort,
    receiver: EvtchnPort,
) -> Result<String, Failure> {
    LOOPBACK_EVENTS.store(0, Ordering::SeqCst);
    LOOPBACK_LAST_PORT.store(u32::MAX, Ordering::SeqCst);
    let before = xen_events::stats();
    xen_events::bind(receiver, count_loopback_event)?;
    xen.evtchn_unmask(receiver)
        .map_err(|e| alloc::format!("EVTCHNOP_unmask({receiver}): {e}"))?;
    xen_events::enable_upcalls();
    ensure!(
        wait_for_events(xen, 1),
        "the event pending on {receiver} since bind_interdomain never reached its handler \
         after evtchn_unmask, clearing the upcall mask and {EVENT_WAIT_HYPERCALLS} \
         hypercalls (upcalls={})",
        xen_events::stats().upcalls - before.upcalls
    );
    xen.evtchn_send(sender)
        .map_err(|e| alloc::format!("EVTCHNOP_send({sender}): {e}"))?;
    ensure!(
        wait_for_events(xen, 2),
        "evtchn_send on {sender} never reached the handler of {receiver} within \
         {EVENT_WAIT_HYPERCALLS} hypercalls (upcalls={})",
        xen_events::stats().upcalls - before.upcalls
    );
    // One more round trip, in which a duplicate delivery would show.
    let _ = xen.xen_version();
    let events = LOOPBACK_EVENTS.load(Ordering::SeqCst);
    let last = LOOPBACK_LAST_PORT.load(Ordering::SeqCst);
    ensure!(
        last == receiver.0,
        "the handler of {receiver} was called for port {last}"
    );
    ensure!(events == 2, "2 events were sent, the handler saw {events}");
    let after = xen_events::stats();
    ensure!(
        after.stray == before.stray,
        "{} events arrived on ports without a handler",
        after.stray - before.stray
    );
    Ok(alloc::format!(
        "upcalls={} events={events} port={}",
        after.upcalls - before.upcalls,
        receiver.0
    ))
}
