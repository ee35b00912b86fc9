//! Benchmark families: which benchmarks share a table and a chart. A family groups ids that
//! measure the same kind of thing in the same unit, so their numbers read side by side.

use serde::{Deserialize, Serialize};

/// One family of benchmarks, in the order the report shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// One read of each clock source.
    ClockRead,
    /// How far each source drifts from the chosen clock.
    ClockDrift,
    /// Page-table updates: the cost per PTE of a 512-entry batch.
    PageTable,
    /// Round trips to the CPU or the hypervisor: cpuid, hypercall, page fault, timer.
    Trap,
    /// Block throughput, virtio-blk and the emulated ATA disk.
    BlockThroughput,
    /// Random 4 KiB reads per second.
    BlockIops,
    /// One request's completion, by interrupt or by polling.
    BlockLatency,
    /// Packets sent per second.
    Network,
    /// Kernel code that touches no device: heap allocation.
    Kernel,
    /// An id this version does not know, kept rather than dropped.
    Other,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::ClockRead,
        Family::ClockDrift,
        Family::PageTable,
        Family::Trap,
        Family::BlockThroughput,
        Family::BlockIops,
        Family::BlockLatency,
        Family::Network,
        Family::Kernel,
        Family::Other,
    ];

    /// The family of a benchmark id.
    pub fn of(id: &str) -> Family {
        if id.starts_with("clock-read-") {
            Family::ClockRead
        } else if id.starts_with("clock-drift-") {
            Family::ClockDrift
        } else if id.starts_with("pte-map-2mib-4k") || id.starts_with("pte-protect-512") {
            Family::PageTable
        } else if matches!(
            id,
            "cpuid" | "hypercall" | "page-fault" | "timer-latency" | "pte-map-unmap"
        ) {
            Family::Trap
        } else if id.starts_with("virtio-blk-seq-") || id.starts_with("ata-pio-seq-") {
            Family::BlockThroughput
        } else if id.starts_with("virtio-blk-rand-") {
            Family::BlockIops
        } else if id.starts_with("virtio-blk-completion-") {
            Family::BlockLatency
        } else if id.starts_with("virtio-net-") {
            Family::Network
        } else if id == "heap-alloc-free" {
            Family::Kernel
        } else {
            Family::Other
        }
    }

    /// The file-name form: `clock-read`, `page-table`.
    pub fn slug(self) -> &'static str {
        match self {
            Family::ClockRead => "clock-read",
            Family::ClockDrift => "clock-drift",
            Family::PageTable => "page-table",
            Family::Trap => "trap",
            Family::BlockThroughput => "block-throughput",
            Family::BlockIops => "block-iops",
            Family::BlockLatency => "block-latency",
            Family::Network => "network",
            Family::Kernel => "kernel",
            Family::Other => "other",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Family::ClockRead => "Clock source read cost",
            Family::ClockDrift => "Clock drift against the chosen clock",
            Family::PageTable => "Page-table updates, cost per PTE in a 512-entry batch",
            Family::Trap => "Round trips: cpuid, hypercall, page fault, one PTE, timer",
            Family::BlockThroughput => "Block sequential throughput",
            Family::BlockIops => "Block random 4 KiB reads",
            Family::BlockLatency => "Block request completion latency",
            Family::Network => "Network transmit, 64-byte UDP",
            Family::Kernel => "Kernel heap",
            Family::Other => "Other benchmarks",
        }
    }

    /// The unit the family is shown in, for every row of it.
    pub fn display(self) -> Display {
        match self {
            Family::ClockDrift => Display::Ppm,
            Family::PageTable => Display::CyclesPerPte,
            Family::BlockThroughput => Display::MibPerSecond,
            Family::BlockIops | Family::Network => Display::PerSecond,
            Family::ClockRead
            | Family::Trap
            | Family::BlockLatency
            | Family::Kernel
            | Family::Other => Display::Native,
        }
    }

    /// Whether a larger number is better, for `--compare`; `None` where neither direction
    /// is a regression (drift, which says how a clock behaves, not how fast Janus is).
    pub fn higher_is_better(self, unit: &str) -> Option<bool> {
        match (self, unit) {
            (Family::ClockDrift, _) | (_, "ppm") => None,
            (_, "bytes_per_s" | "ops_per_s") => Some(true),
            _ => Some(false),
        }
    }
}

/// How a family's numbers are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// The unit the kernel printed (ns, or cycles where it knew no TSC frequency).
    Native,
    /// Bytes per second shown as MiB/s.
    MibPerSecond,
    /// Operations per second.
    PerSecond,
    /// The `cycles_per_pte` field rather than the whole batch's time.
    CyclesPerPte,
    /// Parts per million, signed.
    Ppm,
}

impl Display {
    /// The axis and column label for rows whose kernel unit is `unit`.
    pub fn label(self, unit: &str) -> String {
        match self {
            Display::Native => unit.to_string(),
            Display::MibPerSecond => "MiB/s".into(),
            Display::PerSecond => "per second".into(),
            Display::CyclesPerPte => "cycles per PTE".into(),
            Display::Ppm => "ppm".into(),
        }
    }

    /// A kernel value in this display's unit.
    pub fn scale(self, value: f64) -> f64 {
        match self {
            Display::MibPerSecond => value / (1024.0 * 1024.0),
            Display::Native | Display::PerSecond | Display::CyclesPerPte | Display::Ppm => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_the_kernel_prints_has_its_family() {
        for (id, family) in [
            ("clock-read-pvclock", Family::ClockRead),
            ("clock-read-hpet", Family::ClockRead),
            ("clock-drift-tsc", Family::ClockDrift),
            ("pte-map-2mib-4k", Family::PageTable),
            ("pte-map-2mib-4k-single", Family::PageTable),
            ("pte-protect-512-single", Family::PageTable),
            ("pte-map-unmap", Family::Trap),
            ("cpuid", Family::Trap),
            ("hypercall", Family::Trap),
            ("page-fault", Family::Trap),
            ("timer-latency", Family::Trap),
            ("virtio-blk-seq-read-64k", Family::BlockThroughput),
            ("ata-pio-seq-read-64k", Family::BlockThroughput),
            ("virtio-blk-rand-read-4k-qd32", Family::BlockIops),
            ("virtio-blk-completion-poll", Family::BlockLatency),
            ("virtio-net-tx-udp-64", Family::Network),
            ("heap-alloc-free", Family::Kernel),
            ("something-new", Family::Other),
        ] {
            assert_eq!(Family::of(id), family, "{id}");
        }
    }

    #[test]
    fn slugs_are_distinct_file_names() {
        let mut slugs: Vec<_> = Family::ALL.iter().map(|f| f.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), Family::ALL.len());
        assert!(
            slugs
                .iter()
                .all(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }

    #[test]
    fn throughput_regresses_downwards_latency_upwards_drift_never() {
        assert_eq!(
            Family::BlockThroughput.higher_is_better("bytes_per_s"),
            Some(true)
        );
        assert_eq!(Family::Network.higher_is_better("ops_per_s"), Some(true));
        assert_eq!(Family::ClockRead.higher_is_better("ns"), Some(false));
        assert_eq!(Family::PageTable.higher_is_better("ns"), Some(false));
        assert_eq!(Family::ClockDrift.higher_is_better("ppm"), None);
    }

    #[test]
    fn throughput_is_shown_in_mib_per_second() {
        assert_eq!(Display::MibPerSecond.scale(2.0 * 1024.0 * 1024.0), 2.0);
        assert_eq!(
            Family::BlockThroughput.display().label("bytes_per_s"),
            "MiB/s"
        );
        assert_eq!(Family::ClockRead.display().label("ns"), "ns");
    }
}
