//! Event channels: the event upcall Xen enters when a port is pending, and the per-port
//! handlers it runs. Under PV Xen enters the upcall directly (`trap::xen_event_upcall_entry`,
//! registered by [`init_pv`]); under PVH it raises the HVM callback vector
//! (`HVM_PARAM_CALLBACK_IRQ`, [`init_pvh`]), an interrupt like any other, gated by `IF`.
//!
//! The upcall follows the
//! 2-level scan of xen/include/public/xen.h (`vcpu_info`): clear `evtchn_upcall_pending`
//! first, take the selector, then clear each ready port's pending bit before running its
//! handler, so that an event arriving meanwhile sets the bits again and is not lost; repeat
//! while Xen flagged more. A port with no handler is masked (and counted), so a stray
//! source cannot keep re-entering the upcall.
//!
//! Everything starts masked, and only what a user opens is delivered:
//! - vCPU 0's upcall mask (the PV `IF`) stays set except while code that wants events
//!   clears it ([`enable_upcalls`]): nothing else in the kernel expects to be interrupted,
//!   and a handler borrowing a lock its interrupted caller holds would deadlock;
//! - every port's mask bit is set by [`init_pv`]: Xen hands over the shared info page with
//!   all mask bits clear (`evtchn_2l_set_pending`, xen/common/event_2l.c, only checks the
//!   bit), so without this any port bound later would upcall as soon as upcalls are on.
//!   A user binds a handler with [`bind`], then unmasks the port with `evtchn_unmask`.
//!
//! Only vCPU 0 is served: the kernel runs one vCPU, and Xen binds new ports to vCPU 0.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use janus_hypercall::xen::callback::CallbackType;
use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::event_channel::EvtchnPort;
use janus_hypercall::xen::hvm;
use janus_hypercall::xen::shared_info::{
    EVTCHN_2L_NR_CHANNELS, SharedInfoRef, VcpuInfoRef, ready_ports,
};
use spin::Mutex;

use crate::arch::{interrupt, trap};
use crate::platform::xen::{self, Xen};

/// What runs when its port is pending: in the upcall, with upcalls masked. It must not
/// block or take a lock that code running with upcalls enabled may hold (the console's,
/// for instance).
pub type EventHandler = fn(EvtchnPort);

/// How many ports can have a handler at once: enough for the clock, the console and a
/// self-test.
pub const MAX_BINDINGS: usize = 16;

/// How many scans one upcall makes while Xen keeps flagging new events; after that it
/// returns, and Xen upcalls again on the way back if events are still pending, so a
/// flood cannot hold the kernel in one upcall.
const MAX_SCANS_PER_UPCALL: u32 = 16;

/// The vCPU whose events the upcall handles.
const VCPU: usize = 0;

#[derive(Clone, Copy)]
struct Binding {
    port: EvtchnPort,
    handler: EventHandler,
}

/// The handlers. Taken by the upcall, so everyone else takes it with upcalls masked
/// ([`with_upcalls_masked`]): on one vCPU the upcall then never finds it held.
static BINDINGS: Mutex<[Option<Binding>; MAX_BINDINGS]> = Mutex::new([None; MAX_BINDINGS]);

static REGISTERED: AtomicBool = AtomicBool::new(false);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static DISPATCHED: AtomicU64 = AtomicU64::new(0);
static STRAY: AtomicU64 = AtomicU64::new(0);

/// Counters since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventStats {
    /// Entries into the upcall.
    pub upcalls: u64,
    /// Events handed to a bound handler.
    pub dispatched: u64,
    /// Events on ports without a handler, which were masked.
    pub stray: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenEventsError {
    /// The shared info page is not mapped, so there are no event bits to scan.
    NoSharedInfo,
    /// Xen refused the HVM callback vector.
    CallbackVector(XenError),
    /// Xen refused to register a callback.
    Register {
        callback: CallbackType,
        error: XenError,
    },
    /// The port is beyond the 2-level event ABI.
    PortOutOfRange(EvtchnPort),
    /// The port already has a handler.
    AlreadyBound(EvtchnPort),
    /// All [`MAX_BINDINGS`] handler slots are taken.
    TableFull(EvtchnPort),
    /// The port has no handler to remove.
    NotBound(EvtchnPort),
}

impl fmt::Display for XenEventsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoSharedInfo => {
                f.write_str("the shared info page is not mapped: no event channel can be delivered")
            }
            Self::CallbackVector(e) => write!(
                f,
                "HVM_PARAM_CALLBACK_IRQ (vector {:#x}) refused: {e}",
                interrupt::XEN_CALLBACK
            ),
            Self::Register { callback, error } => write!(
                f,
                "CALLBACKOP_register of the {} callback failed: {error}",
                match callback {
                    CallbackType::Event => "event",
                    CallbackType::Failsafe => "failsafe",
                    CallbackType::Syscall => "syscall",
                    CallbackType::Nmi => "NMI",
                }
            ),
            Self::PortOutOfRange(port) => write!(
                f,
                "{port} is beyond the {EVTCHN_2L_NR_CHANNELS} ports of the 2-level event ABI"
            ),
            Self::AlreadyBound(port) => write!(f, "{port} already has an event handler"),
            Self::TableFull(port) => write!(
                f,
                "no free handler slot for {port}: all {MAX_BINDINGS} are bound; unbind one \
                 or raise MAX_BINDINGS"
            ),
            Self::NotBound(port) => write!(f, "{port} has no event handler to unbind"),
        }
    }
}

fn vcpu_info() -> Option<(SharedInfoRef, VcpuInfoRef)> {
    let shared = xen::shared_info()?;
    Some((shared, shared.vcpu_info(VCPU)?))
}

/// Masks upcalls and every port (see the module documentation).
fn mask_everything() -> Result<(), XenEventsError> {
    let (shared, vcpu) = vcpu_info().ok_or(XenEventsError::NoSharedInfo)?;
    // Xen's dom0 builder masks upcalls already (`dom0_construct_pv`,
    // xen/arch/x86/pv/dom0_build.c); a domU's builder may not.
    vcpu.set_upcall_mask(true);
    for port in 0..EVTCHN_2L_NR_CHANNELS {
        shared.set_mask(EvtchnPort(port), true);
    }
    Ok(())
}

/// Has Xen raise the callback vector for events (PVH). With the "vector" callback type Xen
/// injects it while `evtchn_upcall_pending` is set, without the local APIC, so no EOI
/// follows (`hvm_vcpu_has_pending_irq`, xen/arch/x86/hvm/irq.c). Needs the shared info
/// page and the IDT.
pub fn init_pvh(xen: &Xen) -> Result<(), XenEventsError> {
    mask_everything()?;
    interrupt::register(interrupt::XEN_CALLBACK, |_| handle_upcall());
    xen.hypercalls
        .hvm_set_param(
            hvm::param::CALLBACK_IRQ,
            hvm::callback_via_vector(interrupt::XEN_CALLBACK),
        )
        .map_err(XenEventsError::CallbackVector)?;
    REGISTERED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Registers the event upcall and the failsafe callback with Xen, after masking upcalls
/// and every port (see the module documentation). Needs the trap table's Xen-style
/// returns (`trap::init_xen_pv`) and the shared info page.
pub fn init_pv(xen: &Xen) -> Result<(), XenEventsError> {
    mask_everything()?;
    let callbacks = [
        (CallbackType::Event, trap::xen_event_upcall_entry()),
        (CallbackType::Failsafe, trap::xen_failsafe_entry()),
    ];
    for (callback, entry) in callbacks {
        // SAFETY: the entry is trap.rs's stub for exactly this callback's frame, and Xen-style
        // returns were selected when the trap table was installed. Both mask events while
        // they run: Xen always does for the event upcall; the failsafe report is fatal.
        let registered = unsafe {
            xen.hypercalls
                .register_callback(callback, entry.as_u64(), true)
        };
        registered.map_err(|error| XenEventsError::Register { callback, error })?;
    }
    REGISTERED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether [`init_pv`] or [`init_pvh`] registered the upcall.
pub fn is_registered() -> bool {
    REGISTERED.load(Ordering::SeqCst)
}

pub fn stats() -> EventStats {
    EventStats {
        upcalls: UPCALLS.load(Ordering::SeqCst),
        dispatched: DISPATCHED.load(Ordering::SeqCst),
        stray: STRAY.load(Ordering::SeqCst),
    }
}

/// Runs `f` with upcalls masked, then restores the mask as it was.
fn with_upcalls_masked<R>(f: impl FnOnce() -> R) -> R {
    let was_masked = disable_upcalls();
    let result = f();
    if !was_masked {
        enable_upcalls();
    }
    result
}

/// Masks event upcalls on this vCPU (the PV `cli`); returns whether they were masked
/// already. Without a shared info page there are no upcalls, and it returns `true`.
pub fn disable_upcalls() -> bool {
    match vcpu_info() {
        Some((_, vcpu)) => {
            let was_masked = vcpu.upcall_mask();
            vcpu.set_upcall_mask(true);
            was_masked
        }
        None => true,
    }
}

/// Unmasks event upcalls on this vCPU (the PV `sti`). Xen only looks at the mask on its
/// way back to the guest, so an event that arrived while masked is delivered by making a
/// cheap hypercall (`xen_version`), as Linux's `xen_force_evtchn_callback` does.
pub fn enable_upcalls() {
    let Some((_, vcpu)) = vcpu_info() else {
        return;
    };
    vcpu.set_upcall_mask(false);
    if vcpu.upcall_pending()
        && let Some(hypercalls) = xen::hypercalls()
    {
        // Only the return path matters; the version is known.
        let _ = hypercalls.xen_version();
    }
}

/// Makes `handler` run for every event on `port`. The port's mask bit is left alone:
/// unmask it afterwards (`evtchn_unmask`, which also delivers an event already pending).
pub fn bind(port: EvtchnPort, handler: EventHandler) -> Result<(), XenEventsError> {
    if port.0 >= EVTCHN_2L_NR_CHANNELS {
        return Err(XenEventsError::PortOutOfRange(port));
    }
    with_upcalls_masked(|| {
        let mut bindings = BINDINGS.lock();
        if bindings.iter().flatten().any(|b| b.port == port) {
            return Err(XenEventsError::AlreadyBound(port));
        }
        let slot = bindings
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(XenEventsError::TableFull(port))?;
        *slot = Some(Binding { port, handler });
        Ok(())
    })
}

/// Removes `port`'s handler and masks the port, so that it raises no upcall and a later
/// channel on the same port number starts masked too (Xen keeps mask bits across
/// `EVTCHNOP_close`).
pub fn unbind(port: EvtchnPort) -> Result<(), XenEventsError> {
    if port.0 >= EVTCHN_2L_NR_CHANNELS {
        return Err(XenEventsError::PortOutOfRange(port));
    }
    with_upcalls_masked(|| {
        if let Some((shared, _)) = vcpu_info() {
            shared.set_mask(port, true);
        }
        let mut bindings = BINDINGS.lock();
        let slot = bindings
            .iter_mut()
            .find(|slot| slot.is_some_and(|b| b.port == port))
            .ok_or(XenEventsError::NotBound(port))?;
        *slot = None;
        Ok(())
    })
}

fn handler_for(port: EvtchnPort) -> Option<EventHandler> {
    BINDINGS
        .lock()
        .iter()
        .flatten()
        .find(|b| b.port == port)
        .map(|b| b.handler)
}

/// The event upcall, from `trap::dispatch` with upcalls masked (PV) or interrupts disabled
/// (PVH).
pub fn handle_upcall() {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    // Registered only after the page was mapped, so this always succeeds.
    let Some((shared, vcpu)) = vcpu_info() else {
        return;
    };
    for _ in 0..MAX_SCANS_PER_UPCALL {
        vcpu.clear_upcall_pending();
        let selector = vcpu.take_pending_sel();
        let ports = ready_ports(
            selector,
            |word| shared.pending_word(word),
            |word| shared.mask_word(word),
        );
        for port in ports {
            shared.clear_pending_bit(port);
            // The lock is dropped before the handler runs, which may unbind itself.
            match handler_for(port) {
                Some(handler) => {
                    DISPATCHED.fetch_add(1, Ordering::SeqCst);
                    handler(port);
                }
                None => {
                    shared.set_mask(port, true);
                    STRAY.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if !vcpu.upcall_pending() {
            return;
        }
    }
}
