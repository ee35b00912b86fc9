//! Event channels: Xen's virtual interrupts (`HYPERVISOR_event_channel_op`,
//! xen/include/public/event_channel.h; `VIRQ_*` from xen/include/public/xen.h).
//!
//! A port is bound to a source (a virtual IRQ such as the timer, another domain, an IPI);
//! Xen marks it pending in the shared info page and upcalls the vCPU it is bound to.

use core::fmt;
use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};
use super::ops::DOMID_SELF;

/// `EVTCHNOP_*` commands.
pub mod op {
    pub const BIND_INTERDOMAIN: u32 = 0;
    pub const BIND_VIRQ: u32 = 1;
    pub const BIND_PIRQ: u32 = 2;
    pub const CLOSE: u32 = 3;
    pub const SEND: u32 = 4;
    pub const STATUS: u32 = 5;
    pub const ALLOC_UNBOUND: u32 = 6;
    pub const BIND_IPI: u32 = 7;
    pub const BIND_VCPU: u32 = 8;
    pub const UNMASK: u32 = 9;
    pub const RESET: u32 = 10;
    pub const INIT_CONTROL: u32 = 11;
    pub const EXPAND_ARRAY: u32 = 12;
    pub const SET_PRIORITY: u32 = 13;
}

/// `VIRQ_*` virtual interrupts (xen/include/public/xen.h). "V." ones are per vCPU,
/// "G." ones global.
pub mod virq {
    /// V. Timebase update and/or requested timeout.
    pub const TIMER: u32 = 0;
    /// V. Request to dump debug info.
    pub const DEBUG: u32 = 1;
    /// G. (dom0) Bytes received on the emergency console.
    pub const CONSOLE: u32 = 2;
    /// G. (dom0) Exceptional event for some domain.
    pub const DOM_EXC: u32 = 3;
    /// G. (dom0) Trace buffer has records available.
    pub const TBUF: u32 = 4;
    /// G. (dom0) A domain has paused for debugging.
    pub const DEBUGGER: u32 = 6;
    /// V. XenOprofile sample available.
    pub const XENOPROF: u32 = 7;
    /// G. (dom0) Bytes received on the console.
    pub const CON_RING: u32 = 8;
    /// G. (dom0) Physical CPU state changed.
    pub const PCPU_STATE: u32 = 9;
    /// G. (dom0) A memory event occurred.
    pub const MEM_EVENT: u32 = 10;
    /// G. Argo interdomain message notification.
    pub const ARGO: u32 = 11;
    /// G. (dom0) Low on heap memory.
    pub const ENOMEM: u32 = 12;
    /// V. PMC interrupt.
    pub const XENPMU: u32 = 13;
}

/// `evtchn_port_t`: an event channel port of this domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct EvtchnPort(pub u32);

impl fmt::Display for EvtchnPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// `struct evtchn_alloc_unbound` (xen/include/public/event_channel.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    /// Out: the new port.
    pub port: u32,
}

const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8);
const _: () = assert!(offset_of!(EvtchnAllocUnbound, remote_dom) == 2);
const _: () = assert!(offset_of!(EvtchnAllocUnbound, port) == 4);

/// `struct evtchn_bind_interdomain` (xen/include/public/event_channel.h), 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: u16,
    pub remote_port: u32,
    /// Out: the new local port.
    pub local_port: u32,
}

const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 12);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, remote_dom) == 0);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, remote_port) == 4);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, local_port) == 8);

/// `struct evtchn_bind_virq` (xen/include/public/event_channel.h), 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// One of [`virq`].
    pub virq: u32,
    pub vcpu: u32,
    /// Out: the bound port.
    pub port: u32,
}

const _: () = assert!(size_of::<EvtchnBindVirq>() == 12);
const _: () = assert!(offset_of!(EvtchnBindVirq, vcpu) == 4);
const _: () = assert!(offset_of!(EvtchnBindVirq, port) == 8);

/// `struct evtchn_bind_ipi` (xen/include/public/event_channel.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// Out: the bound port.
    pub port: u32,
}

const _: () = assert!(size_of::<EvtchnBindIpi>() == 8);
const _: () = assert!(offset_of!(EvtchnBindIpi, port) == 4);

/// `struct evtchn_close`, `struct evtchn_send` and `struct evtchn_unmask`
/// (xen/include/public/event_channel.h): a lone port, 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnPortArg {
    pub port: u32,
}

const _: () = assert!(size_of::<EvtchnPortArg>() == 4);
const _: () = assert!(offset_of!(EvtchnPortArg, port) == 0);

/// `struct evtchn_bind_vcpu` (xen/include/public/event_channel.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    pub port: u32,
    pub vcpu: u32,
}

const _: () = assert!(size_of::<EvtchnBindVcpu>() == 8);
const _: () = assert!(offset_of!(EvtchnBindVcpu, vcpu) == 4);

/// `struct evtchn_status` (xen/include/public/event_channel.h), 24 bytes. The trailing
/// union `u` is kept as raw words: `unbound.dom` / `interdomain.dom` (u16 at 16),
/// `interdomain.port` (u32 at 20), `pirq` / `virq` (u32 at 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    pub dom: u16,
    pub port: u32,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the vCPU the port is bound to.
    pub vcpu: u32,
    /// Out: the union's first word.
    pub u0: u32,
    /// Out: the union's second word.
    pub u1: u32,
}

const _: () = assert!(size_of::<EvtchnStatus>() == 24);
const _: () = assert!(offset_of!(EvtchnStatus, port) == 4);
const _: () = assert!(offset_of!(EvtchnStatus, status) == 8);
const _: () = assert!(offset_of!(EvtchnStatus, vcpu) == 12);
const _: () = assert!(offset_of!(EvtchnStatus, u0) == 16);
const _: () = assert!(offset_of!(EvtchnStatus, u1) == 20);

/// `EVTCHNSTAT_*`.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// What a port is bound to, decoded from [`EvtchnStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Closed,
    /// Waiting for domain `remote_dom` to bind.
    Unbound {
        remote_dom: u16,
    },
    Interdomain {
        dom: u16,
        port: EvtchnPort,
    },
    Pirq(u32),
    Virq(u32),
    Ipi,
    /// A status value this kernel does not know.
    Unknown(u32),
}

impl EvtchnStatus {
    pub fn state(&self) -> ChannelState {
        match self.status {
            EVTCHNSTAT_CLOSED => ChannelState::Closed,
            EVTCHNSTAT_UNBOUND => ChannelState::Unbound {
                remote_dom: self.u0 as u16,
            },
            EVTCHNSTAT_INTERDOMAIN => ChannelState::Interdomain {
                dom: self.u0 as u16,
                port: EvtchnPort(self.u1),
            },
            EVTCHNSTAT_PIRQ => ChannelState::Pirq(self.u0),
            EVTCHNSTAT_VIRQ => ChannelState::Virq(self.u0),
            EVTCHNSTAT_IPI => ChannelState::Ipi,
            other => ChannelState::Unknown(other),
        }
    }
}

impl HypercallPage {
    /// `HYPERVISOR_event_channel_op(cmd, arg)`.
    ///
    /// # Safety
    /// `T` must be the struct that `cmd` reads and writes.
    unsafe fn event_channel_op<T>(&self, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
        let args = [u64::from(cmd), arg as *mut T as u64, 0, 0, 0];
        // SAFETY: `arg` is live for the call and of the type `cmd` expects (caller's
        // contract).
        check(unsafe { self.call(number::EVENT_CHANNEL_OP, args) })
    }

    /// Allocates a port in this domain that domain `remote_dom` may bind to.
    pub fn evtchn_alloc_unbound(&self, remote_dom: u16) -> Result<EvtchnPort, XenError> {
        let mut arg = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom,
            port: 0,
        };
        // SAFETY: `EVTCHNOP_alloc_unbound` takes this struct.
        unsafe { self.event_channel_op(op::ALLOC_UNBOUND, &mut arg) }?;
        Ok(EvtchnPort(arg.port))
    }

    /// Connects a new local port to `remote_port` of domain `remote_dom`, which that
    /// domain allocated unbound for this one (`EVTCHNOP_bind_interdomain`); sending on
    /// either end makes the other pending.
    ///
    /// `remote_dom` may be `DOMID_SELF` (the header's note 1, in both this call and
    /// `EVTCHNOP_alloc_unbound`), giving a loopback pair:
    /// `evtchn_bind_interdomain(DOMID_SELF, evtchn_alloc_unbound(DOMID_SELF)?)`. Xen
    /// resolves `DOMID_SELF` to this domain's id in both, so the binding matches
    /// (`evtchn_alloc_unbound`, `evtchn_bind_interdomain`, xen/common/event_channel.c).
    ///
    /// The new port starts pending, bound to vCPU 0: Xen always sets it in case the peer
    /// signalled before the bind.
    pub fn evtchn_bind_interdomain(
        &self,
        remote_dom: u16,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, XenError> {
        let mut arg = EvtchnBindInterdomain {
            remote_dom,
            remote_port: remote_port.0,
            local_port: 0,
        };
        // SAFETY: `EVTCHNOP_bind_interdomain` takes this struct.
        unsafe { self.event_channel_op(op::BIND_INTERDOMAIN, &mut arg) }?;
        Ok(EvtchnPort(arg.local_port))
    }

    /// Binds virtual IRQ `virq` (one of [`virq`]) on `vcpu` to a new port.
    pub fn evtchn_bind_virq(&self, virq: u32, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut arg = EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        };
        // SAFETY: `EVTCHNOP_bind_virq` takes this struct.
        unsafe { self.event_channel_op(op::BIND_VIRQ, &mut arg) }?;
        Ok(EvtchnPort(arg.port))
    }

    /// Binds a new port for inter-processor events to `vcpu`.
    pub fn evtchn_bind_ipi(&self, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut arg = EvtchnBindIpi { vcpu, port: 0 };
        // SAFETY: `EVTCHNOP_bind_ipi` takes this struct.
        unsafe { self.event_channel_op(op::BIND_IPI, &mut arg) }?;
        Ok(EvtchnPort(arg.port))
    }

    pub fn evtchn_close(&self, port: EvtchnPort) -> Result<(), XenError> {
        let mut arg = EvtchnPortArg { port: port.0 };
        // SAFETY: `EVTCHNOP_close` takes this struct.
        unsafe { self.event_channel_op(op::CLOSE, &mut arg) }.map(|_| ())
    }

    /// Signals the other end of `port`.
    pub fn evtchn_send(&self, port: EvtchnPort) -> Result<(), XenError> {
        let mut arg = EvtchnPortArg { port: port.0 };
        // SAFETY: `EVTCHNOP_send` takes this struct.
        unsafe { self.event_channel_op(op::SEND, &mut arg) }.map(|_| ())
    }

    /// Clears the port's mask bit and, if it is pending, delivers the event again (the
    /// edge lost while it was masked).
    pub fn evtchn_unmask(&self, port: EvtchnPort) -> Result<(), XenError> {
        let mut arg = EvtchnPortArg { port: port.0 };
        // SAFETY: `EVTCHNOP_unmask` takes this struct.
        unsafe { self.event_channel_op(op::UNMASK, &mut arg) }.map(|_| ())
    }

    /// Moves the upcalls of `port` to `vcpu`.
    pub fn evtchn_bind_vcpu(&self, port: EvtchnPort, vcpu: u32) -> Result<(), XenError> {
        let mut arg = EvtchnBindVcpu { port: port.0, vcpu };
        // SAFETY: `EVTCHNOP_bind_vcpu` takes this struct.
        unsafe { self.event_channel_op(op::BIND_VCPU, &mut arg) }.map(|_| ())
    }

    /// What `port` of this domain is bound to, and on which vCPU.
    pub fn evtchn_status(&self, port: EvtchnPort) -> Result<(ChannelState, u32), XenError> {
        let mut arg = EvtchnStatus {
            dom: DOMID_SELF,
            port: port.0,
            ..EvtchnStatus::default()
        };
        // SAFETY: `EVTCHNOP_status` takes this struct.
        unsafe { self.event_channel_op(op::STATUS, &mut arg) }?;
        Ok((arg.state(), arg.vcpu))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{Call, FakeXen, read_guest, write_guest};
    use std::string::ToString;

    /// Plays Xen's event channel hypercall: hands out port 5 and fills status for port 9.
    fn xen_evtchn(call: &Call) -> i64 {
        assert_eq!(call.nr, number::EVENT_CHANNEL_OP);
        let [cmd, arg, ..] = call.args;
        // SAFETY: each arm reads and writes the struct its command defines, which the
        // wrapper passed live.
        unsafe {
            match cmd as u32 {
                op::ALLOC_UNBOUND => {
                    let mut a: EvtchnAllocUnbound = read_guest(arg);
                    assert_eq!((a.dom, a.remote_dom), (DOMID_SELF, 0));
                    a.port = 5;
                    write_guest(arg, a);
                }
                op::BIND_VIRQ => {
                    let mut a: EvtchnBindVirq = read_guest(arg);
                    assert_eq!((a.virq, a.vcpu), (virq::TIMER, 0));
                    a.port = 5;
                    write_guest(arg, a);
                }
                op::BIND_IPI => {
                    let mut a: EvtchnBindIpi = read_guest(arg);
                    a.port = 6;
                    write_guest(arg, a);
                }
                op::STATUS => {
                    let mut a: EvtchnStatus = read_guest(arg);
                    assert_eq!((a.dom, a.port), (DOMID_SELF, 9));
                    a.status = EVTCHNSTAT_INTERDOMAIN;
                    a.vcpu = 1;
                    a.u0 = 7;
                    a.u1 = 33;
                    write_guest(arg, a);
                }
                op::SEND | op::CLOSE | op::UNMASK => {
                    let a: EvtchnPortArg = read_guest(arg);
                    if a.port != 5 {
                        return -22;
                    }
                }
                op::BIND_VCPU => {
                    let a: EvtchnBindVcpu = read_guest(arg);
                    assert_eq!((a.port, a.vcpu), (5, 1));
                }
                _ => return -38,
            }
        }
        0
    }

    #[test]
    fn binding_returns_the_port_xen_wrote() {
        let fake = FakeXen::new(xen_evtchn);
        let xen = fake.page();
        assert_eq!(xen.evtchn_alloc_unbound(0), Ok(EvtchnPort(5)));
        assert_eq!(xen.evtchn_bind_virq(virq::TIMER, 0), Ok(EvtchnPort(5)));
        assert_eq!(xen.evtchn_bind_ipi(0), Ok(EvtchnPort(6)));
        let cmds: std::vec::Vec<_> = fake.calls().iter().map(|c| c.args[0]).collect();
        assert_eq!(cmds, [6, 1, 7]);
    }

    #[test]
    fn port_commands_pass_the_port_and_report_errors() {
        let fake = FakeXen::new(xen_evtchn);
        let xen = fake.page();
        assert_eq!(xen.evtchn_send(EvtchnPort(5)), Ok(()));
        assert_eq!(xen.evtchn_unmask(EvtchnPort(5)), Ok(()));
        assert_eq!(xen.evtchn_close(EvtchnPort(5)), Ok(()));
        assert_eq!(xen.evtchn_send(EvtchnPort(4)), Err(XenError::Einval));
        assert_eq!(xen.evtchn_bind_vcpu(EvtchnPort(5), 1), Ok(()));
        let cmds: std::vec::Vec<_> = fake.calls().iter().map(|c| c.args[0]).collect();
        assert_eq!(cmds, [4, 9, 3, 4, 8]);
    }

    #[test]
    fn status_decodes_the_union() {
        let fake = FakeXen::new(xen_evtchn);
        assert_eq!(
            fake.page().evtchn_status(EvtchnPort(9)),
            Ok((
                ChannelState::Interdomain {
                    dom: 7,
                    port: EvtchnPort(33)
                },
                1
            ))
        );
    }

    /// Plays Xen's loopback bookkeeping: `alloc_unbound` hands out port 3 accepting
    /// `remote_dom`; `bind_interdomain` accepts only that port from the domain it names
    /// (both resolving `DOMID_SELF` to this domain, id 1) and returns port 4.
    fn xen_loopback(call: &Call) -> i64 {
        const MY_DOMID: u16 = 1;
        let resolve = |dom: u16| if dom == DOMID_SELF { MY_DOMID } else { dom };
        let [cmd, arg, ..] = call.args;
        // SAFETY: each arm reads and writes the struct its command defines.
        unsafe {
            match cmd as u32 {
                op::ALLOC_UNBOUND => {
                    let mut a: EvtchnAllocUnbound = read_guest(arg);
                    assert_eq!(a.dom, DOMID_SELF);
                    assert_eq!(resolve(a.remote_dom), MY_DOMID);
                    a.port = 3;
                    write_guest(arg, a);
                }
                op::BIND_INTERDOMAIN => {
                    let mut a: EvtchnBindInterdomain = read_guest(arg);
                    if resolve(a.remote_dom) != MY_DOMID || a.remote_port != 3 {
                        return -22;
                    }
                    assert_eq!(a.local_port, 0);
                    a.local_port = 4;
                    write_guest(arg, a);
                }
                _ => return -38,
            }
        }
        0
    }

    #[test]
    fn a_loopback_pair_binds_with_domid_self_on_both_calls() {
        let fake = FakeXen::new(xen_loopback);
        let xen = fake.page();
        let listener = xen.evtchn_alloc_unbound(DOMID_SELF).unwrap();
        assert_eq!(listener, EvtchnPort(3));
        assert_eq!(
            xen.evtchn_bind_interdomain(DOMID_SELF, listener),
            Ok(EvtchnPort(4))
        );
        assert_eq!(
            xen.evtchn_bind_interdomain(DOMID_SELF, EvtchnPort(9)),
            Err(XenError::Einval)
        );
        let calls = fake.calls();
        assert!(calls.iter().all(|c| c.nr == number::EVENT_CHANNEL_OP));
        let cmds: std::vec::Vec<_> = calls.iter().map(|c| c.args[0]).collect();
        assert_eq!(cmds, [6, 0, 0]);
    }

    #[test]
    fn every_status_value_decodes() {
        let s = |status, u0| EvtchnStatus {
            status,
            u0,
            ..EvtchnStatus::default()
        };
        assert_eq!(s(0, 0).state(), ChannelState::Closed);
        assert_eq!(s(1, 3).state(), ChannelState::Unbound { remote_dom: 3 });
        assert_eq!(s(3, 11).state(), ChannelState::Pirq(11));
        assert_eq!(s(4, 0).state(), ChannelState::Virq(0));
        assert_eq!(s(5, 0).state(), ChannelState::Ipi);
        assert_eq!(s(6, 0).state(), ChannelState::Unknown(6));
        assert_eq!(EvtchnPort(3).to_string(), "port 3");
    }
}
