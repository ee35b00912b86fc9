//! Which clock the kernel trusts: the platform table of DESIGN.md as one preference order,
//! and the `clock=` override, decided from the sources that actually work here.

use core::fmt;

/// A clock source, named as the env line's `clock=` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kvmclock,
    XenPvclock,
    Tsc,
    Hpet,
    PmTimer,
}

impl Kind {
    /// The platform's preference, best first. The paravirtual clocks come first because a
    /// hypervisor only offers its own (kvmclock under KVM, Xen's under Xen), and each keeps
    /// guest time right across host frequency changes and migration; a bare TSC is next
    /// when its frequency is known, then the emulated counters, which cost an exit a read.
    pub const PREFERENCE: [Kind; 5] = [
        Kind::Kvmclock,
        Kind::XenPvclock,
        Kind::Tsc,
        Kind::Hpet,
        Kind::PmTimer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kvmclock => "kvmclock",
            Kind::XenPvclock => "xen-pvclock",
            Kind::Tsc => "tsc",
            Kind::Hpet => "hpet",
            Kind::PmTimer => "pmtimer",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The clock to use among `available`: the forced one if it is there, else the first of
/// [`Kind::PREFERENCE`]. `Err` carries the default when the forced one is missing, so the
/// caller can say why it was not honoured. `None` when nothing is available.
pub fn choose(available: &[Kind], forced: Option<Kind>) -> Option<Result<Kind, Kind>> {
    let default = Kind::PREFERENCE
        .into_iter()
        .find(|kind| available.contains(kind))?;
    Some(match forced {
        Some(kind) if available.contains(&kind) => Ok(kind),
        Some(_) => Err(default),
        None => Ok(default),
    })
}

/// Nanoseconds since the Unix epoch, from a wall-clock reading and the monotonic time it was
/// taken at, for monotonic time `now`. A `now` before the reading (impossible for one
/// monotonic clock) gives the reading itself.
pub fn wall_at(wall_ns: u64, taken_at: u64, now: u64) -> u64 {
    wall_ns.saturating_add(now.saturating_sub(taken_at))
}

/// Nanoseconds to ticks of a `hz` counter, rounded down; saturates instead of wrapping.
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(ns) * u128::from(hz) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Ticks of a `hz` counter to nanoseconds, rounded down; saturates instead of wrapping.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1))).unwrap_or(u64::MAX)
}

/// Where [`since_launch_s`] counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscOrigin {
    /// The TSC counts from the VM's reset.
    Reset,
    /// The TSC was not reset with the VM, so the count starts at kernel entry.
    Entry,
}

impl TscOrigin {
    pub fn name(self) -> &'static str {
        match self {
            TscOrigin::Reset => "reset",
            TscOrigin::Entry => "entry",
        }
    }
}

/// Longer than any VM here runs before the kernel's first instruction: Xen on TCG, on a
/// loaded host, took 9 s to start its dom0.
pub const MAX_BEFORE_ENTRY_S: u64 = 120;

/// Seconds since the VM started, from TSC values `now` and `at_entry` (kernel entry) of a
/// `hz` TSC. A TSC that counts from reset says so by a small `at_entry`; one that does not
/// (this machine kind's shadow-paging KVM, `kvm_pvm`, passes the host's TSC through
/// unoffset, so it reads the host's uptime) is counted from kernel entry instead, which
/// misses only the firmware's part.
pub fn since_launch_s(now: u64, at_entry: u64, hz: u64) -> (u64, TscOrigin) {
    let hz = hz.max(1);
    if at_entry / hz <= MAX_BEFORE_ENTRY_S {
        (now / hz, TscOrigin::Reset)
    } else {
        (now.saturating_sub(at_entry) / hz, TscOrigin::Entry)
    }
}

/// How far a source drifted from the reference over one interval, in parts per billion:
/// positive when it ran fast. `None` for an empty reference interval.
pub fn drift_ppb(source_ns: u64, reference_ns: u64) -> Option<i64> {
    if reference_ns == 0 {
        return None;
    }
    let difference = i128::from(source_ns) - i128::from(reference_ns);
    i64::try_from(difference * 1_000_000_000 / i128::from(reference_ns)).ok()
}

/// Parts per billion as parts per million with three decimals, sign first.
pub fn ppm_text(ppb: i64) -> alloc::string::String {
    let sign = if ppb < 0 { "-" } else { "" };
    let ppb = ppb.unsigned_abs();
    alloc::format!("{sign}{}.{:03}", ppb / 1000, ppb % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paravirtual_clocks_win_then_tsc_then_emulated_counters() {
        use Kind::*;
        assert_eq!(choose(&[Tsc, Kvmclock, Hpet], None), Some(Ok(Kvmclock)));
        assert_eq!(
            choose(&[PmTimer, Tsc, XenPvclock], None),
            Some(Ok(XenPvclock))
        );
        assert_eq!(choose(&[PmTimer, Hpet, Tsc], None), Some(Ok(Tsc)));
        assert_eq!(choose(&[PmTimer, Hpet], None), Some(Ok(Hpet)));
        assert_eq!(choose(&[PmTimer], None), Some(Ok(PmTimer)));
        assert_eq!(choose(&[], None), None);
        assert_eq!(choose(&[], Some(Tsc)), None);
    }

    #[test]
    fn a_forced_clock_is_used_only_when_available() {
        use Kind::*;
        assert_eq!(choose(&[Kvmclock, Hpet], Some(Hpet)), Some(Ok(Hpet)));
        assert_eq!(choose(&[Kvmclock, Tsc], Some(Hpet)), Some(Err(Kvmclock)));
        assert_eq!(choose(&[Tsc], Some(XenPvclock)), Some(Err(Tsc)));
    }

    #[test]
    fn names_are_the_env_line_values() {
        let names: [&str; 5] = Kind::PREFERENCE.map(Kind::name);
        assert_eq!(names, ["kvmclock", "xen-pvclock", "tsc", "hpet", "pmtimer"]);
    }

    #[test]
    fn wall_time_advances_with_the_monotonic_clock() {
        assert_eq!(wall_at(1_000, 50, 80), 1_030);
        assert_eq!(wall_at(1_000, 50, 10), 1_000);
        assert_eq!(wall_at(u64::MAX, 0, 5), u64::MAX);
    }

    #[test]
    fn tick_conversions_round_down_and_saturate() {
        assert_eq!(ns_to_ticks(1_000, 3_579_545), 3);
        assert_eq!(ticks_to_ns(3_579_545, 3_579_545), 1_000_000_000);
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_ns(7, 0), 7_000_000_000);
    }

    #[test]
    fn time_since_launch_counts_from_reset_unless_the_tsc_was_not_reset() {
        let hz = 2_000_000_000;
        assert_eq!(since_launch_s(9 * hz, 8 * hz, hz), (9, TscOrigin::Reset));
        // A host TSC at four days of uptime, the kernel entered three seconds ago.
        let host_uptime = 4 * 86_400 * hz;
        assert_eq!(
            since_launch_s(host_uptime + 3 * hz, host_uptime, hz),
            (3, TscOrigin::Entry)
        );
        assert_eq!(since_launch_s(5, u64::MAX, 0), (0, TscOrigin::Entry));
    }

    #[test]
    fn drift_is_signed_parts_per_billion() {
        assert_eq!(drift_ppb(1_000_100_000, 1_000_000_000), Some(100_000));
        assert_eq!(drift_ppb(999_999_000, 1_000_000_000), Some(-1_000));
        assert_eq!(drift_ppb(5, 0), None);
    }

    #[test]
    fn ppm_text_keeps_three_decimals_and_the_sign() {
        assert_eq!(ppm_text(100_000), "100.000");
        assert_eq!(ppm_text(-1_234), "-1.234");
        assert_eq!(ppm_text(-5), "-0.005");
        assert_eq!(ppm_text(0), "0.000");
        assert_eq!(ppm_text(i64::MIN), "-9223372036854775.808");
    }
}
