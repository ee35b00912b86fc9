//! Per-vCPU operations (`HYPERVISOR_vcpu_op(cmd, vcpuid, arg)`,
//! xen/include/public/vcpu.h): where Xen puts a vCPU's `vcpu_info` and time record, its
//! timers and its run-state accounting.

use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::frame::Mfn;
use super::hypercall::{HypercallPage, number};
use super::shared_info::VcpuTimeInfo;

/// `VCPUOP_*` commands.
pub mod op {
    pub const INITIALISE: u32 = 0;
    pub const UP: u32 = 1;
    pub const DOWN: u32 = 2;
    pub const IS_UP: u32 = 3;
    pub const GET_RUNSTATE_INFO: u32 = 4;
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
    pub const SET_PERIODIC_TIMER: u32 = 6;
    pub const STOP_PERIODIC_TIMER: u32 = 7;
    pub const SET_SINGLESHOT_TIMER: u32 = 8;
    pub const STOP_SINGLESHOT_TIMER: u32 = 9;
    pub const REGISTER_VCPU_INFO: u32 = 10;
    pub const SEND_NMI: u32 = 11;
    pub const GET_PHYSID: u32 = 12;
    pub const REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
}

/// `VCPU_SSHOTTMR_future`: fail with `ETIME` if the timeout has passed (Xen may ignore it).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `RUNSTATE_*` values of [`VcpuRunstateInfo::state`].
pub const RUNSTATE_RUNNING: i32 = 0;
pub const RUNSTATE_RUNNABLE: i32 = 1;
pub const RUNSTATE_BLOCKED: i32 = 2;
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while Xen updates a registered
/// run-state area (with `VMASST_TYPE_runstate_update_flag`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `struct vcpu_runstate_info` (xen/include/public/vcpu.h), 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// System time (ns) when the current state was entered.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each `RUNSTATE_*`; the time not running while runnable is
    /// the vCPU's steal time.
    pub time: [u64; 4],
}

const _: () = assert!(size_of::<VcpuRunstateInfo>() == 48);
const _: () = assert!(offset_of!(VcpuRunstateInfo, state) == 0);
const _: () = assert!(offset_of!(VcpuRunstateInfo, state_entry_time) == 8);
const _: () = assert!(offset_of!(VcpuRunstateInfo, time) == 16);

/// `struct vcpu_set_periodic_timer` (xen/include/public/vcpu.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

const _: () = assert!(size_of::<VcpuSetPeriodicTimer>() == 8);
const _: () = assert!(offset_of!(VcpuSetPeriodicTimer, period_ns) == 0);

/// `struct vcpu_set_singleshot_timer` (xen/include/public/vcpu.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

const _: () = assert!(size_of::<VcpuSetSingleshotTimer>() == 16);
const _: () = assert!(offset_of!(VcpuSetSingleshotTimer, timeout_abs_ns) == 0);
const _: () = assert!(offset_of!(VcpuSetSingleshotTimer, flags) == 8);

/// `struct vcpu_register_vcpu_info` (xen/include/public/vcpu.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame of the page to place the `vcpu_info` in.
    pub mfn: u64,
    /// Offset within that page; the structure must not cross the page end.
    pub offset: u32,
    pub rsvd: u32,
}

const _: () = assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
const _: () = assert!(offset_of!(VcpuRegisterVcpuInfo, mfn) == 0);
const _: () = assert!(offset_of!(VcpuRegisterVcpuInfo, offset) == 8);
const _: () = assert!(offset_of!(VcpuRegisterVcpuInfo, rsvd) == 12);

/// `struct vcpu_register_time_memory_area` (xen/include/public/vcpu.h), 8 bytes: the
/// union `addr` as the guest virtual address of a [`VcpuTimeInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryArea {
    pub addr: u64,
}

const _: () = assert!(size_of::<VcpuRegisterTimeMemoryArea>() == 8);
const _: () = assert!(offset_of!(VcpuRegisterTimeMemoryArea, addr) == 0);

impl HypercallPage {
    /// # Safety
    /// `arg` must be null for commands without an argument, else point at the live struct
    /// `cmd` reads or writes, for the duration of the call.
    unsafe fn vcpu_op(&self, cmd: u32, vcpu: u32, arg: u64) -> Result<u64, XenError> {
        let args = [u64::from(cmd), u64::from(vcpu), arg, 0, 0];
        // SAFETY: forwarded from the caller.
        check(unsafe { self.call(number::VCPU_OP, args) })
    }

    /// Whether `vcpu` is running (`VCPUOP_is_up`).
    pub fn vcpu_is_up(&self, vcpu: u32) -> Result<bool, XenError> {
        // SAFETY: `VCPUOP_is_up` takes no argument.
        unsafe { self.vcpu_op(op::IS_UP, vcpu, 0) }.map(|up| up != 0)
    }

    /// The run-state accounting of `vcpu`.
    pub fn vcpu_runstate_info(&self, vcpu: u32) -> Result<VcpuRunstateInfo, XenError> {
        let mut info = VcpuRunstateInfo::default();
        // SAFETY: `VCPUOP_get_runstate_info` writes one live `vcpu_runstate_info`.
        unsafe { self.vcpu_op(op::GET_RUNSTATE_INFO, vcpu, &raw mut info as u64) }?;
        Ok(info)
    }

    /// Asks for a timer event (`VIRQ_TIMER`) on `vcpu` at absolute system time
    /// `timeout_abs_ns`. With `future`, Xen fails with `ETIME` if that time has passed.
    pub fn vcpu_set_singleshot_timer(
        &self,
        vcpu: u32,
        timeout_abs_ns: u64,
        future: bool,
    ) -> Result<(), XenError> {
        let arg = VcpuSetSingleshotTimer {
            timeout_abs_ns,
            flags: if future { VCPU_SSHOTTMR_FUTURE } else { 0 },
        };
        // SAFETY: `VCPUOP_set_singleshot_timer` reads one live struct.
        unsafe { self.vcpu_op(op::SET_SINGLESHOT_TIMER, vcpu, &raw const arg as u64) }.map(|_| ())
    }

    pub fn vcpu_stop_singleshot_timer(&self, vcpu: u32) -> Result<(), XenError> {
        // SAFETY: `VCPUOP_stop_singleshot_timer` takes no argument.
        unsafe { self.vcpu_op(op::STOP_SINGLESHOT_TIMER, vcpu, 0) }.map(|_| ())
    }

    /// Asks for a timer event on `vcpu` every `period_ns`. Xen starts a periodic timer for
    /// every vCPU of a PV guest; a tickless kernel stops it.
    pub fn vcpu_set_periodic_timer(&self, vcpu: u32, period_ns: u64) -> Result<(), XenError> {
        let arg = VcpuSetPeriodicTimer { period_ns };
        // SAFETY: `VCPUOP_set_periodic_timer` reads one live struct.
        unsafe { self.vcpu_op(op::SET_PERIODIC_TIMER, vcpu, &raw const arg as u64) }.map(|_| ())
    }

    pub fn vcpu_stop_periodic_timer(&self, vcpu: u32) -> Result<(), XenError> {
        // SAFETY: `VCPUOP_stop_periodic_timer` takes no argument.
        unsafe { self.vcpu_op(op::STOP_PERIODIC_TIMER, vcpu, 0) }.map(|_| ())
    }

    /// Moves the `vcpu_info` of `vcpu` to byte `offset` of frame `mfn` (needed beyond
    /// [`super::shared_info::XEN_LEGACY_MAX_VCPUS`]). Allowed once per vCPU. On an
    /// auto-translated guest pass [`Mfn::auto_translated`].
    ///
    /// # Safety
    /// The 64 bytes at `offset` of that frame must stay reserved for Xen's `vcpu_info`
    /// for the rest of the domain's life: Xen writes them at any time.
    pub unsafe fn vcpu_register_vcpu_info(
        &self,
        vcpu: u32,
        mfn: Mfn,
        offset: u32,
    ) -> Result<(), XenError> {
        let arg = VcpuRegisterVcpuInfo {
            mfn: mfn.as_u64(),
            offset,
            rsvd: 0,
        };
        // SAFETY: `VCPUOP_register_vcpu_info` reads one live struct; the frame's fate is the
        // caller's contract.
        unsafe { self.vcpu_op(op::REGISTER_VCPU_INFO, vcpu, &raw const arg as u64) }.map(|_| ())
    }

    /// Asks Xen to keep a copy of `vcpu`'s time record at `area` (a guest virtual address),
    /// updated with the same version protocol as the master copy.
    ///
    /// # Safety
    /// `area` must stay mapped, writable and reserved for Xen for the rest of the domain's
    /// life (or until another area is registered): Xen writes it at any time.
    pub unsafe fn vcpu_register_time_memory_area(
        &self,
        vcpu: u32,
        area: *mut VcpuTimeInfo,
    ) -> Result<(), XenError> {
        let arg = VcpuRegisterTimeMemoryArea { addr: area as u64 };
        let arg_ptr = &raw const arg as u64;
        // SAFETY: the command reads one live struct; the area is the caller's contract.
        unsafe { self.vcpu_op(op::REGISTER_VCPU_TIME_MEMORY_AREA, vcpu, arg_ptr) }.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{Call, FakeXen, read_guest, write_guest};

    fn xen_vcpu_op(call: &Call) -> i64 {
        assert_eq!(call.nr, number::VCPU_OP);
        let [cmd, vcpu, arg, ..] = call.args;
        if vcpu != 0 {
            return -2; // ENOENT: no such vCPU
        }
        // SAFETY: each arm reads or writes the struct its command defines, passed live.
        unsafe {
            match cmd as u32 {
                op::IS_UP => return 1,
                op::GET_RUNSTATE_INFO => write_guest(
                    arg,
                    VcpuRunstateInfo {
                        state: RUNSTATE_RUNNING,
                        state_entry_time: 10,
                        time: [100, 2, 3, 0],
                    },
                ),
                op::SET_SINGLESHOT_TIMER => {
                    let t: VcpuSetSingleshotTimer = read_guest(arg);
                    if t.flags & VCPU_SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < 1000 {
                        return -62; // ETIME
                    }
                }
                op::SET_PERIODIC_TIMER => {
                    let t: VcpuSetPeriodicTimer = read_guest(arg);
                    assert_eq!(t.period_ns, 10_000_000);
                }
                op::REGISTER_VCPU_INFO => {
                    let r: VcpuRegisterVcpuInfo = read_guest(arg);
                    assert_eq!((r.mfn, r.offset, r.rsvd), (0x1234, 0x40, 0));
                }
                op::REGISTER_VCPU_TIME_MEMORY_AREA => {
                    let r: VcpuRegisterTimeMemoryArea = read_guest(arg);
                    write_guest(
                        r.addr,
                        VcpuTimeInfo {
                            version: 2,
                            ..VcpuTimeInfo::default()
                        },
                    );
                }
                op::STOP_PERIODIC_TIMER | op::STOP_SINGLESHOT_TIMER => assert_eq!(arg, 0),
                _ => return -38,
            }
        }
        0
    }

    #[test]
    fn queries_decode_what_xen_wrote() {
        let fake = FakeXen::new(xen_vcpu_op);
        let xen = fake.page();
        assert_eq!(xen.vcpu_is_up(0), Ok(true));
        assert_eq!(xen.vcpu_is_up(1), Err(XenError::Enoent));
        let info = xen.vcpu_runstate_info(0).unwrap();
        assert_eq!((info.state, info.time[0]), (RUNSTATE_RUNNING, 100));
        let calls = fake.calls();
        assert_eq!(calls[0].args[..3], [3, 0, 0]);
        assert_eq!(calls[1].args[..2], [3, 1]);
    }

    #[test]
    fn timers_pass_their_structs_and_flags() {
        let fake = FakeXen::new(xen_vcpu_op);
        let xen = fake.page();
        assert_eq!(xen.vcpu_set_singleshot_timer(0, 500, false), Ok(()));
        assert_eq!(
            xen.vcpu_set_singleshot_timer(0, 500, true),
            Err(XenError::Etime)
        );
        assert_eq!(xen.vcpu_stop_singleshot_timer(0), Ok(()));
        assert_eq!(xen.vcpu_set_periodic_timer(0, 10_000_000), Ok(()));
        assert_eq!(xen.vcpu_stop_periodic_timer(0), Ok(()));
        let cmds: std::vec::Vec<_> = fake.calls().iter().map(|c| c.args[0]).collect();
        assert_eq!(cmds, [8, 8, 9, 6, 7]);
    }

    #[test]
    fn registration_passes_frame_offset_and_area() {
        let fake = FakeXen::new(xen_vcpu_op);
        let xen = fake.page();
        // SAFETY: the fake hypervisor keeps no reference to the frame.
        let registered = unsafe { xen.vcpu_register_vcpu_info(0, Mfn::new(0x1234), 0x40) };
        assert_eq!(registered, Ok(()));
        let mut area = VcpuTimeInfo::default();
        // SAFETY: the fake hypervisor writes `area` only during the call.
        let registered = unsafe { xen.vcpu_register_time_memory_area(0, &raw mut area) };
        assert_eq!(registered, Ok(()));
        assert_eq!(area.version, 2);
    }
}
