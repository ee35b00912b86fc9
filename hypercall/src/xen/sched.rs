//! Giving up the CPU (`HYPERVISOR_sched_op`, xen/include/public/sched.h). Shutdown stays in
//! [`super::ops`].

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `SCHEDOP_yield`: let other vCPUs run; this one stays runnable.
pub const SCHEDOP_YIELD: u64 = 0;
/// `SCHEDOP_block`: sleep until an event is pending.
pub const SCHEDOP_BLOCK: u64 = 1;

impl HypercallPage {
    /// Yields the physical CPU; returns once Xen schedules this vCPU again.
    pub fn sched_yield(&self) -> Result<(), XenError> {
        // SAFETY: SCHEDOP_yield takes no argument.
        check(unsafe { self.call(number::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]) }).map(|_| ())
    }

    /// Blocks this vCPU until an event is pending for it: the PV `hlt`.
    ///
    /// Xen clears the vCPU's `evtchn_upcall_mask` as part of blocking (so a wakeup cannot
    /// be missed between the check and the block): events are enabled when this returns,
    /// and the caller's upcall handler may have run.
    pub fn sched_block(&self) -> Result<(), XenError> {
        // SAFETY: SCHEDOP_block takes no argument.
        check(unsafe { self.call(number::SCHED_OP, [SCHEDOP_BLOCK, 0, 0, 0, 0]) }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::fake_hypervisor::FakeXen;

    #[test]
    fn yield_and_block_use_sched_op_with_their_command() {
        let fake = FakeXen::new(|call| {
            assert_eq!(call.nr, number::SCHED_OP);
            assert_eq!(call.args[1], 0);
            0
        });
        assert_eq!(fake.page().sched_yield(), Ok(()));
        assert_eq!(fake.page().sched_block(), Ok(()));
        let calls = fake.calls();
        assert_eq!((calls[0].args[0], calls[1].args[0]), (0, 1));
    }
}
