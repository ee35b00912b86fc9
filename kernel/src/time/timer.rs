//! One-shot timer interrupts, and [`sleep_ns`], which halts the vCPU until one fires.
//!
//! The backend is chosen once at boot:
//! - the local APIC in TSC-deadline mode when the CPU has it (KVM), the deadline being a TSC
//!   value;
//! - else the local APIC's one-shot countdown (TCG), its rate measured against the clock;
//! - under Xen, `VCPUOP_set_singleshot_timer`, whose expiry Xen signals as `VIRQ_TIMER` on an
//!   event channel: through the event upcall under PV, through the HVM callback vector under
//!   PVH (`platform::xen_events`).
//!
//! The handler records the TSC on entry, so that [`latency_cycles`] can measure from the
//! deadline to the handler.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use janus_drivers::apic::{self, ApicError, Divide};
use janus_drivers::pvclock::PvclockError;
use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::event_channel::{EvtchnPort, virq};
use janus_hypercall::xen::hypercall::HypercallPage;
use spin::Once;

use super::clock;
use super::selection::{Kind, ns_to_ticks};
use crate::arch::cpu::rdtsc_ordered;
use crate::arch::interrupt;
use crate::platform::apic::with_local_apic;
use crate::platform::xen_events::{self, XenEventsError};

#[derive(Clone, Copy, Debug)]
enum Backend {
    TscDeadline,
    /// The APIC timer's rate after the divider, in Hz.
    ApicOneShot {
        hz: u64,
    },
    XenSingleshot {
        hypercalls: &'static HypercallPage,
        /// Whether events come by the PV upcall (else by the PVH callback vector).
        pv: bool,
    },
}

struct Timer {
    backend: Backend,
    /// Converts deadlines to TSC values for the latency measurement.
    tsc_hz: u64,
}

static TIMER: Once<Timer> = Once::new();
static FIRED: AtomicBool = AtomicBool::new(false);
static FIRED_TSC: AtomicU64 = AtomicU64::new(0);
static FIRES: AtomicU64 = AtomicU64::new(0);

/// The APIC one-shot timer runs undivided: QEMU's and KVM's APIC clocks run at 1 GHz,
/// so a 32-bit count still covers over 4 s.
const APIC_DIVIDE: Divide = Divide::By1;
/// How long the APIC timer is measured against the clock.
const APIC_CALIBRATION_NS: u64 = 10_000_000;
/// How long [`init_apic`] and [`init_xen`] wait for a first interrupt before declaring the
/// timer broken.
const PROBE_DELAY_NS: u64 = 1_000_000;
const PROBE_TIMEOUT_NS: u64 = 500_000_000;

#[derive(Debug)]
pub enum TimerError {
    /// No TSC frequency: deadlines cannot be converted.
    NoTscFrequency,
    Apic(ApicError),
    /// The APIC timer did not count down during calibration.
    ApicStopped,
    NoLocalApic,
    Xen(XenError),
    Events(XenEventsError),
    /// Xen's pvclock, which singleshot deadlines are written in, is not readable.
    NoXenClock,
    Pvclock(PvclockError),
    /// Armed, but no interrupt arrived within [`PROBE_TIMEOUT_NS`].
    NeverFired,
    /// The deadline had passed by the time the timer was armed; nothing will fire.
    DeadlinePassed,
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTscFrequency => f.write_str("the TSC frequency is unknown"),
            Self::Apic(e) => write!(f, "local APIC timer: {e}"),
            Self::ApicStopped => f.write_str("the local APIC timer does not count down"),
            Self::NoLocalApic => f.write_str("the local APIC is not enabled"),
            Self::Xen(e) => write!(f, "Xen timer: {e}"),
            Self::Events(e) => write!(f, "Xen timer event: {e}"),
            Self::NoXenClock => f.write_str(
                "Xen's pvclock is not readable, and singleshot deadlines are in its time",
            ),
            Self::Pvclock(e) => write!(f, "xen-pvclock: {e}"),
            Self::DeadlinePassed => f.write_str("the deadline passed while the timer was armed"),
            Self::NeverFired => write!(
                f,
                "armed {} us ahead, no timer interrupt arrived within {} ms",
                PROBE_DELAY_NS / 1000,
                PROBE_TIMEOUT_NS / 1_000_000
            ),
        }
    }
}

/// Which timer runs, as the env line's `timer=` shows it; `none` before a successful init.
pub fn name() -> &'static str {
    match TIMER.get().map(|t| t.backend) {
        Some(Backend::TscDeadline) => "tsc-deadline",
        Some(Backend::ApicOneShot { .. }) => "apic-oneshot",
        Some(Backend::XenSingleshot { .. }) => "xen-singleshot",
        None => "none",
    }
}

/// Timer interrupts handled since boot.
pub fn fires() -> u64 {
    FIRES.load(Ordering::SeqCst)
}

fn record_fire() {
    FIRED_TSC.store(rdtsc_ordered(), Ordering::SeqCst);
    FIRED.store(true, Ordering::SeqCst);
    FIRES.fetch_add(1, Ordering::SeqCst);
}

fn on_apic_timer(_vector: u8) {
    record_fire();
    with_local_apic(|apic| apic.eoi());
}

fn on_virq_timer(_port: EvtchnPort) {
    record_fire();
}

/// Sets up the local APIC timer (platform::apic::init must have enabled the APIC).
pub fn init_apic(tsc_deadline: bool, tsc_hz: Option<u64>) -> Result<(), TimerError> {
    let tsc_hz = tsc_hz.ok_or(TimerError::NoTscFrequency)?;
    interrupt::register(interrupt::TIMER, on_apic_timer);
    let backend = if tsc_deadline {
        with_local_apic(|apic| apic.start_tsc_deadline_mode(interrupt::TIMER))
            .ok_or(TimerError::NoLocalApic)?
            .map_err(TimerError::Apic)?;
        Backend::TscDeadline
    } else {
        Backend::ApicOneShot {
            hz: calibrate_apic()?,
        }
    };
    install_and_probe(Timer { backend, tsc_hz })
}

/// Counts the APIC timer down, masked, over [`APIC_CALIBRATION_NS`] of the clock.
fn calibrate_apic() -> Result<u64, TimerError> {
    with_local_apic(|apic| apic.start_masked_countdown(APIC_DIVIDE))
        .ok_or(TimerError::NoLocalApic)?;
    let start = clock::now();
    // A calibration, once at boot, has nothing to halt for: the timer being measured is
    // the one that would wake the vCPU.
    while clock::now() - start < APIC_CALIBRATION_NS {
        core::hint::spin_loop();
    }
    let (remaining, end) = with_local_apic(|apic| {
        let remaining = apic.current_count();
        (remaining, clock::now())
    })
    .ok_or(TimerError::NoLocalApic)?;
    with_local_apic(|apic| apic.stop_timer());
    let ticks = u64::from(apic::COUNTDOWN_START - remaining);
    apic::timer_hz_from(ticks, end - start).ok_or(TimerError::ApicStopped)
}

/// Binds `VIRQ_TIMER` and stops Xen's default periodic timer, which would otherwise wake the
/// vCPU every 10 ms for nothing. Event delivery (`xen_events::init`) must be set up.
pub fn init_xen(
    hypercalls: &'static HypercallPage,
    pv: bool,
    tsc_hz: Option<u64>,
) -> Result<(), TimerError> {
    let tsc_hz = tsc_hz.ok_or(TimerError::NoTscFrequency)?;
    // Not every Xen runs one for every guest; stopping an absent one is harmless.
    let _ = hypercalls.vcpu_stop_periodic_timer(0);
    let port = hypercalls
        .evtchn_bind_virq(virq::TIMER, 0)
        .map_err(TimerError::Xen)?;
    xen_events::bind(port, on_virq_timer).map_err(TimerError::Events)?;
    hypercalls.evtchn_unmask(port).map_err(TimerError::Xen)?;
    install_and_probe(Timer {
        backend: Backend::XenSingleshot { hypercalls, pv },
        tsc_hz,
    })
}

/// Installs the timer and checks that an interrupt arrives: a timer that never fires would
/// leave [`sleep_ns`] halted for good. Interrupts are enabled while it spins, once, at boot.
fn install_and_probe(timer: Timer) -> Result<(), TimerError> {
    let timer = TIMER.call_once(|| timer);
    FIRED.store(false, Ordering::SeqCst);
    arm(timer, PROBE_DELAY_NS)?;
    let start = clock::now();
    while !FIRED.load(Ordering::SeqCst) && clock::now() - start < PROBE_TIMEOUT_NS {
        with_interrupts_enabled(timer, core::hint::spin_loop);
    }
    disarm(timer);
    if FIRED.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(TimerError::NeverFired)
    }
}

/// Runs `f` with interrupts (or, under PV, event upcalls) enabled.
fn with_interrupts_enabled(timer: &Timer, f: impl FnOnce()) {
    match timer.backend {
        Backend::XenSingleshot { pv: true, .. } => {
            xen_events::enable_upcalls();
            f();
            xen_events::disable_upcalls();
        }
        _ => {
            x86_64::instructions::interrupts::enable();
            f();
            x86_64::instructions::interrupts::disable();
        }
    }
}

/// Arms the timer `delta_ns` from now; returns the TSC value at which it is due.
fn arm(timer: &Timer, delta_ns: u64) -> Result<u64, TimerError> {
    match timer.backend {
        Backend::TscDeadline => {
            let deadline = rdtsc_ordered().saturating_add(ns_to_ticks(delta_ns, timer.tsc_hz));
            // SAFETY: the APIC is in TSC-deadline mode (init_apic), at CPL 0.
            unsafe { apic::write_tsc_deadline(deadline) };
            Ok(deadline)
        }
        Backend::ApicOneShot { hz } => {
            // A wait beyond the 32-bit count is cut short; sleep_ns re-arms for the rest.
            let count = match apic::count_for(delta_ns, hz) {
                Err(ApicError::TooLong { .. }) => u32::MAX,
                other => other.map_err(TimerError::Apic)?,
            };
            let due_ns = u64::from(count) * 1_000_000_000 / hz;
            with_local_apic(|apic| {
                let start = rdtsc_ordered();
                apic.start_one_shot(interrupt::TIMER, count, APIC_DIVIDE)
                    .map(|()| start.saturating_add(ns_to_ticks(due_ns, timer.tsc_hz)))
            })
            .ok_or(TimerError::NoLocalApic)?
            .map_err(TimerError::Apic)
        }
        Backend::XenSingleshot { hypercalls, .. } => {
            let (system_ns, tsc) = xen_system_time()?;
            // With "future", a deadline that passed while this ran (under Xen PVH on TCG
            // the clock read alone takes 0.4 ms) fails with ETIME instead of firing at once:
            // a timer event raised inside the hypercall, with interrupts off, was seen to
            // leave the vCPU halted for good.
            hypercalls
                .vcpu_set_singleshot_timer(0, system_ns.saturating_add(delta_ns), true)
                .map_err(|e| match e {
                    XenError::Etime => TimerError::DeadlinePassed,
                    e => TimerError::Xen(e),
                })?;
            Ok(tsc.saturating_add(ns_to_ticks(delta_ns, timer.tsc_hz)))
        }
    }
}

/// Xen's system time, which singleshot deadlines are written in, whatever clock the kernel
/// chose, and the TSC it was computed from.
fn xen_system_time() -> Result<(u64, u64), TimerError> {
    let pvclock = clock::sources()
        .pvclock
        .as_ref()
        .filter(|p| p.kind() == Kind::XenPvclock)
        .ok_or(TimerError::NoXenClock)?;
    pvclock.read_with_tsc().map_err(TimerError::Pvclock)
}

fn disarm(timer: &Timer) {
    match timer.backend {
        // SAFETY: TSC-deadline mode (init_apic), CPL 0; 0 disarms.
        Backend::TscDeadline => unsafe { apic::write_tsc_deadline(0) },
        Backend::ApicOneShot { .. } => {
            with_local_apic(|apic| apic.stop_timer());
        }
        Backend::XenSingleshot { hypercalls, .. } => {
            let _ = hypercalls.vcpu_stop_singleshot_timer(0);
        }
    }
}

/// Gives up the vCPU until an interrupt (event) arrives and its handler ran.
fn wait(timer: &Timer) {
    match timer.backend {
        Backend::XenSingleshot {
            hypercalls,
            pv: true,
        } => {
            // SCHEDOP_block unmasks events atomically with the check for pending ones, so a
            // timer that fired already returns at once; mask them again for the caller.
            let _ = hypercalls.sched_block();
            xen_events::disable_upcalls();
        }
        _ => interrupt::wait_for_interrupt(),
    }
}

/// Halts until `ns` nanoseconds of the clock have passed. Without a working timer (see the
/// warning at boot) it polls the clock instead, and [`fires`] stays put, which the sleep
/// self-test reports.
pub fn sleep_ns(ns: u64) {
    let deadline = clock::now().saturating_add(ns);
    let Some(timer) = TIMER.get() else {
        while clock::now() < deadline {
            core::hint::spin_loop();
        }
        return;
    };
    loop {
        let now = clock::now();
        if now >= deadline {
            break;
        }
        FIRED.store(false, Ordering::SeqCst);
        if arm(timer, deadline - now).is_err() {
            // The deadline passed while arming (or, never seen, a backend that armed at init
            // refuses now): the clock decides, as the loop reads it again.
            core::hint::spin_loop();
            continue;
        }
        while !FIRED.load(Ordering::SeqCst) {
            wait(timer);
        }
    }
    disarm(timer);
}

/// Halts until `done` holds or the clock reaches `deadline` (ns of [`clock::now`]); returns
/// whether `done` held. Any interrupt wakes it to check `done` again, a device's completion
/// above all; the timer, armed at the deadline, makes sure it wakes even if none comes.
pub fn halt_until(deadline: u64, mut done: impl FnMut() -> bool) -> bool {
    let Some(timer) = TIMER.get() else {
        while !done() {
            if clock::now() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        return true;
    };
    let mut armed = false;
    let held = loop {
        if done() {
            break true;
        }
        let now = clock::now();
        if now >= deadline {
            break false;
        }
        // A timer that fired before the deadline (rounding) is armed again, or the halt
        // below would have nothing left to end it.
        if FIRED.swap(false, Ordering::SeqCst) {
            armed = false;
        }
        if !armed {
            armed = arm(timer, deadline - now).is_ok();
            if !armed {
                continue;
            }
        }
        wait(timer);
    };
    if armed {
        disarm(timer);
    }
    held
}

/// Arms the timer `delta_ns` ahead, halts until it fires, and returns how many TSC cycles
/// after its deadline the handler was entered (0 if early). `None` without a timer, or when
/// the deadline passed before the timer was armed.
pub fn latency_cycles(delta_ns: u64) -> Option<u64> {
    let timer = TIMER.get()?;
    FIRED.store(false, Ordering::SeqCst);
    let due = arm(timer, delta_ns).ok()?;
    while !FIRED.load(Ordering::SeqCst) {
        wait(timer);
    }
    Some(FIRED_TSC.load(Ordering::SeqCst).saturating_sub(due))
}
