//! The seeds' three claims, answered from the numbers of one run: MMU paravirtualization
//! (page-table updates by hypercall against direct writes), paravirtual clocks (pvclock reads
//! against HPET and ACPI PM timer reads, and drift), paravirtual I/O (virtio-blk against the
//! emulated ATA disk). Each claim keeps the numbers it was computed from, so a reader can
//! check the ratio, and says in one line what they show. A claim whose numbers are missing
//! says which environment would have given them; it never guesses.

use serde::Serialize;

use super::results::Summary;

/// How an environment runs the kernel, as far as the claims care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kvm,
    Tcg,
    XenPvh,
    XenPv,
}

impl Kind {
    /// From an environment label: `kvm/pc`, `tcg/microvm`, `xen-pvh/pc`, `xen-pv/pc`.
    pub fn of(environment: &str) -> Option<Kind> {
        match environment.split('/').next()? {
            "kvm" => Some(Kind::Kvm),
            "tcg" => Some(Kind::Tcg),
            "xen-pvh" => Some(Kind::XenPvh),
            "xen-pv" => Some(Kind::XenPv),
            _ => None,
        }
    }
}

/// All three claims.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claims {
    pub mmu: Claim,
    pub clock: Claim,
    pub io: Claim,
}

/// One claim: the ratio that answers it, what the ratio divides, the numbers, the verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    /// `None` when this run lacked an environment the ratio needs.
    pub ratio: Option<f64>,
    /// What `ratio` is, e.g. "batched mmu_update cycles per PTE / direct write under HAP".
    pub ratio_of: String,
    pub numbers: Vec<Number>,
    pub verdict: String,
}

/// One measured number behind a claim.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Number {
    pub label: String,
    pub environment: String,
    pub id: String,
    pub value: f64,
    pub unit: String,
}

/// What the host says about its KVM's paging, e.g. "shadow paging, kvm_pvm"; see
/// [`super::host::kvm_paging`].
pub type KvmPaging<'a> = Option<&'a str>;

impl Claims {
    pub fn answer(summaries: &[Summary], kvm_paging: KvmPaging) -> Claims {
        Claims {
            mmu: mmu(summaries, kvm_paging),
            clock: clock(summaries),
            io: io(summaries),
        }
    }
}

fn find<'a>(summaries: &'a [Summary], kind: Kind, id: &str) -> Option<&'a Summary> {
    summaries
        .iter()
        .find(|s| s.id == id && Kind::of(&s.environment) == Some(kind))
}

fn per_pte(label: &str, summary: &Summary) -> Option<Number> {
    Some(Number {
        label: label.to_string(),
        environment: summary.environment.clone(),
        id: summary.id.clone(),
        value: summary.cycles_per_pte?,
        unit: "cycles per PTE".into(),
    })
}

fn number(label: &str, summary: &Summary) -> Number {
    Number {
        label: label.to_string(),
        environment: summary.environment.clone(),
        id: summary.id.clone(),
        value: summary.median,
        unit: summary.unit.clone(),
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    let r = numerator / denominator;
    (r.is_finite() && r > 0.0).then_some(r)
}

/// How many times, rounded to what the eye can use: 2.35 → "2.4×", 41.7 → "42×".
pub fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

const MAP: &str = "pte-map-2mib-4k";
const MAP_SINGLE: &str = "pte-map-2mib-4k-single";

fn mmu(summaries: &[Summary], kvm_paging: KvmPaging) -> Claim {
    let batched = find(summaries, Kind::XenPv, MAP)
        .and_then(|s| per_pte("hypercall, batched (Xen PV mmu_update)", s));
    let single = find(summaries, Kind::XenPv, MAP_SINGLE)
        .and_then(|s| per_pte("hypercall, one per PTE (Xen PV)", s));
    let hap = find(summaries, Kind::XenPvh, MAP)
        .and_then(|s| per_pte("direct write, hardware-assisted paging (Xen PVH)", s));
    let kvm_label = format!(
        "direct write under KVM ({})",
        kvm_paging.unwrap_or("paging mode unknown")
    );
    let kvm = find(summaries, Kind::Kvm, MAP).and_then(|s| per_pte(&kvm_label, s));
    let tcg = find(summaries, Kind::Tcg, MAP)
        .and_then(|s| per_pte("direct write under QEMU's software MMU (TCG)", s));
    let ratio_value = match (&batched, &hap) {
        (Some(b), Some(h)) => ratio(b.value, h.value),
        _ => None,
    };
    let verdict = match (&batched, &hap, ratio_value) {
        (Some(b), Some(h), Some(r)) => {
            let mut line = if r > 1.0 {
                format!(
                    "a batched mmu_update costs {} a direct PTE write under hardware-assisted \
                     paging ({:.0} vs {:.0} cycles per PTE): with nested paging, MMU \
                     paravirtualization loses",
                    times(r),
                    b.value,
                    h.value
                )
            } else {
                format!(
                    "a batched mmu_update costs {} a direct PTE write under hardware-assisted \
                     paging ({:.0} vs {:.0} cycles per PTE): here the hypercall path does not \
                     lose",
                    times(r),
                    b.value,
                    h.value
                )
            };
            if let Some(s) = single.as_ref().and_then(|s| ratio(s.value, b.value)) {
                line.push_str(&format!("; unbatched, hypercalls cost {} more", times(s)));
            }
            if let Some(k) = &kvm
                && let Some(kr) = ratio(k.value, b.value)
            {
                let relation = if kr > 1.0 {
                    format!("{} the batched hypercall", times(kr))
                } else {
                    format!("{} the batched hypercall (cheaper)", times(kr))
                };
                line.push_str(&format!(
                    "; a direct write under this host's KVM ({}) costs {relation}",
                    kvm_paging.unwrap_or("paging mode unknown")
                ));
            }
            line
        }
        _ => format!(
            "not answered: needs {}",
            missing(&[
                (batched.is_none(), "xen-pv (the hypercall path)"),
                (hap.is_none(), "xen-pvh (direct writes under HAP)"),
            ])
        ),
    };
    Claim {
        ratio: ratio_value,
        ratio_of: "batched mmu_update cycles per PTE (Xen PV) / direct write cycles per PTE \
                   under hardware-assisted paging (Xen PVH)"
            .into(),
        numbers: [batched, single, hap, kvm, tcg]
            .into_iter()
            .flatten()
            .collect(),
        verdict,
    }
}

fn missing(what: &[(bool, &str)]) -> String {
    what.iter()
        .filter(|(m, _)| *m)
        .map(|(_, w)| *w)
        .collect::<Vec<_>>()
        .join(" and ")
}

const PVCLOCK: &str = "clock-read-pvclock";
const HPET: &str = "clock-read-hpet";
const PM_TIMER: &str = "clock-read-pmtimer";

/// The pvclock read compared with HPET and PM timer reads of one environment when one has
/// all of them (KVM on pc or q35); otherwise with those of another environment of the same
/// QEMU, taking the environment where pvclock is cheapest: the one where the least
/// emulation stands between the guest and the mechanism.
fn clock(summaries: &[Summary]) -> Claim {
    let with = |id: &'static str| summaries.iter().filter(move |s| s.id == id);
    let same_environment = with(PVCLOCK).find_map(|p| {
        let legacy = summaries
            .iter()
            .find(|s| s.environment == p.environment && (s.id == HPET || s.id == PM_TIMER))?;
        Some((p, legacy.environment.clone()))
    });
    let (pvclock, legacy_environment) = match same_environment {
        Some((p, env)) => (Some(p), Some(env)),
        None => (
            with(PVCLOCK).min_by(|a, b| a.median.total_cmp(&b.median)),
            with(HPET)
                .chain(with(PM_TIMER))
                .next()
                .map(|s| s.environment.clone()),
        ),
    };
    let legacy = |id| {
        let env = legacy_environment.as_deref()?;
        summaries
            .iter()
            .find(|s| s.id == id && s.environment == env)
    };
    let (hpet, pm_timer) = (legacy(HPET), legacy(PM_TIMER));
    let reference = hpet.or(pm_timer);
    let ratio_value = match (pvclock, reference) {
        (Some(p), Some(r)) if p.unit == r.unit => ratio(r.median, p.median),
        _ => None,
    };
    let mut numbers: Vec<Number> = [
        pvclock.map(|s| number("pvclock read", s)),
        hpet.map(|s| number("HPET read", s)),
        pm_timer.map(|s| number("ACPI PM timer read", s)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let drifts: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.id.starts_with("clock-drift-"))
        .collect();
    numbers.extend(drifts.iter().map(|s| {
        let source = s.id.trim_start_matches("clock-drift-");
        number(&format!("{source} drift against the chosen clock"), s)
    }));
    let verdict = match (pvclock, reference, ratio_value) {
        (Some(p), Some(r), Some(ratio)) => {
            let name = if r.id == HPET {
                "HPET"
            } else {
                "ACPI PM timer"
            };
            let place = if p.environment == r.environment {
                format!("both in {}", p.environment)
            } else {
                format!("pvclock in {}, {name} in {}", p.environment, r.environment)
            };
            let comparison = if ratio > 1.0 {
                format!("the emulated timer is {} slower", times(ratio))
            } else {
                format!("pvclock is {} slower here", times(1.0 / ratio))
            };
            let mut line = format!(
                "a pvclock read costs {:.0} {} against {:.0} for the {name} ({place}): \
                 {comparison}",
                p.median, p.unit, r.median,
            );
            if let Some(worst) = drifts
                .iter()
                .max_by(|a, b| a.median.abs().total_cmp(&b.median.abs()))
            {
                line.push_str(&format!(
                    "; largest drift against the chosen clock: {} {:+.1} ppm in {}",
                    worst.id.trim_start_matches("clock-drift-"),
                    worst.median,
                    worst.environment
                ));
            }
            line
        }
        _ => format!(
            "not answered: needs {}",
            missing(&[
                (
                    pvclock.is_none(),
                    "an environment with pvclock (kvm, xen-pvh or xen-pv)"
                ),
                (
                    reference.is_none(),
                    "an environment with an HPET or ACPI PM timer (pc or q35)"
                ),
            ])
        ),
    };
    Claim {
        ratio: ratio_value,
        ratio_of: "HPET read (else ACPI PM timer read) / pvclock read".into(),
        numbers,
        verdict,
    }
}

const VIRTIO_READ: &str = "virtio-blk-seq-read-64k";
const ATA_READ: &str = "ata-pio-seq-read-64k";

/// virtio-blk against the emulated ATA disk reading the same image, 64 KiB at a time, in
/// the first environment that has both (the ATA disk is only on pc).
fn io(summaries: &[Summary]) -> Claim {
    let pair = summaries
        .iter()
        .filter(|s| s.id == ATA_READ)
        .find_map(|ata| {
            let virtio = summaries
                .iter()
                .find(|s| s.id == VIRTIO_READ && s.environment == ata.environment)?;
            Some((virtio, ata))
        });
    let mib = |v: f64| v / (1024.0 * 1024.0);
    let Some((virtio, ata)) = pair else {
        return Claim {
            ratio: None,
            ratio_of: "virtio-blk / ATA PIO sequential read throughput, 64 KiB requests".into(),
            numbers: Vec::new(),
            verdict: "not answered: needs an environment with both virtio-blk and the ATA \
                      disk (kvm/pc or tcg/pc)"
                .into(),
        };
    };
    let ratio_value = ratio(virtio.median, ata.median);
    let in_mib = |label: &str, s: &Summary| Number {
        value: mib(s.median),
        unit: "MiB/s".into(),
        ..number(label, s)
    };
    let numbers = vec![
        in_mib("virtio-blk sequential read, 64 KiB", virtio),
        in_mib("ATA PIO sequential read, 64 KiB", ata),
    ];
    let verdict = match ratio_value {
        Some(r) => format!(
            "virtio-blk reads {:.0} MiB/s against {:.1} MiB/s for the emulated ATA disk in PIO \
             mode ({}, same data): {} {}",
            mib(virtio.median),
            mib(ata.median),
            virtio.environment,
            times(r),
            if r > 1.0 { "faster" } else { "slower" }
        ),
        None => "not answered: a throughput of zero was measured".into(),
    };
    Claim {
        ratio: ratio_value,
        ratio_of: "virtio-blk / ATA PIO sequential read throughput, 64 KiB requests".into(),
        numbers,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::{Provenance, Row};
    use crate::report::{self, Record};

    fn summaries(lines: &[(&str, &str)]) -> Vec<Summary> {
        let rows: Vec<Row> = lines
            .iter()
            .map(|(env, line)| {
                let Some(Ok(Record::Bench(b))) = report::parse_line(line) else {
                    panic!("{line}");
                };
                Row::new(env, 1, &b, &Provenance::default())
            })
            .collect();
        Summary::from_rows(&rows)
    }

    /// Lines as this machine printed them (TCG, Xen under TCG; no KVM).
    fn this_machine() -> Vec<Summary> {
        summaries(&[
            (
                "tcg/pc",
                "@janus bench clock-read-hpet unit=ns n=2000 min=787.7 median=790.9 p99=855.8",
            ),
            (
                "tcg/pc",
                "@janus bench clock-read-pmtimer unit=ns n=2000 min=419.5 median=421.1 p99=495.5",
            ),
            (
                "tcg/pc",
                "@janus bench clock-drift-hpet unit=ppm n=1 min=-722.656 median=-722.656 p99=-722.656",
            ),
            (
                "tcg/pc",
                "@janus bench pte-map-2mib-4k unit=ns n=100 min=198877.0 median=213347.9 p99=243465.8 ptes=512 cycles_per_pte=1040",
            ),
            (
                "tcg/pc",
                "@janus bench virtio-blk-seq-read-64k unit=bytes_per_s n=5 min=634032820 median=636665704 p99=643458629",
            ),
            (
                "tcg/pc",
                "@janus bench ata-pio-seq-read-64k unit=bytes_per_s n=5 min=5316820 median=5495512 p99=5558928",
            ),
            (
                "xen-pvh/pc",
                "@janus bench clock-read-pvclock unit=ns n=2000 min=185139.8 median=186608.2 p99=280762.7 source=xen-pvclock",
            ),
            (
                "xen-pvh/pc",
                "@janus bench pte-map-2mib-4k unit=ns n=100 min=218349.0 median=222137.0 p99=328458.7 ptes=512 cycles_per_pte=1084",
            ),
            (
                "xen-pv/pc",
                "@janus bench clock-read-pvclock unit=ns n=2000 min=541.5 median=551.1 p99=604.7 source=xen-pvclock",
            ),
            (
                "xen-pv/pc",
                "@janus bench clock-drift-tsc unit=ppm n=1 min=32.650 median=32.650 p99=32.650",
            ),
            (
                "xen-pv/pc",
                "@janus bench pte-map-2mib-4k unit=ns n=100 min=1464537.7 median=1502431.6 p99=1639524.6 ptes=512 cycles_per_pte=7336",
            ),
            (
                "xen-pv/pc",
                "@janus bench pte-map-2mib-4k-single unit=ns n=100 min=2561480.6 median=2583403.1 p99=2697156.1 ptes=512 cycles_per_pte=12614",
            ),
        ])
    }

    #[test]
    fn mmu_divides_the_batched_hypercall_by_the_hap_write() {
        let c = Claims::answer(&this_machine(), None).mmu;
        let r = c.ratio.unwrap();
        assert!((r - 7336.0 / 1084.0).abs() < 1e-9, "{r}");
        assert_eq!(c.numbers.len(), 4, "{:?}", c.numbers);
        assert!(c.verdict.contains("6.8×"), "{}", c.verdict);
        assert!(c.verdict.contains("loses"), "{}", c.verdict);
        assert!(
            c.verdict.contains("unbatched, hypercalls cost 1.7× more"),
            "{}",
            c.verdict
        );
    }

    #[test]
    fn mmu_names_shadow_paging_kvm_when_it_ran() {
        let mut s = this_machine();
        s.extend(summaries(&[(
            "kvm/microvm",
            "@janus bench pte-map-2mib-4k unit=ns n=100 min=1 median=2 p99=3 ptes=512 cycles_per_pte=73360",
        )]));
        let c = Claims::answer(&s, Some("shadow paging, kvm_pvm")).mmu;
        assert_eq!(c.numbers.len(), 5);
        assert!(
            c.verdict.contains("KVM (shadow paging, kvm_pvm) costs 10×"),
            "{}",
            c.verdict
        );
    }

    #[test]
    fn mmu_without_xen_says_what_is_missing() {
        let s: Vec<Summary> = this_machine()
            .into_iter()
            .filter(|s| !s.environment.starts_with("xen-pv/"))
            .collect();
        let c = Claims::answer(&s, None).mmu;
        assert_eq!(c.ratio, None);
        assert_eq!(c.verdict, "not answered: needs xen-pv (the hypercall path)");
    }

    #[test]
    fn clock_takes_the_cheapest_pvclock_when_no_environment_has_both() {
        let c = Claims::answer(&this_machine(), None).clock;
        let r = c.ratio.unwrap();
        assert!((r - 790.9 / 551.1).abs() < 1e-9, "{r}");
        assert!(
            c.verdict.contains("pvclock in xen-pv/pc, HPET in tcg/pc"),
            "{}",
            c.verdict
        );
        assert!(
            c.verdict.contains("hpet -722.7 ppm in tcg/pc"),
            "{}",
            c.verdict
        );
        assert_eq!(
            c.numbers.iter().filter(|n| n.unit == "ppm").count(),
            2,
            "{:?}",
            c.numbers
        );
    }

    #[test]
    fn clock_prefers_one_environment_with_both() {
        let mut s = this_machine();
        s.extend(summaries(&[
            (
                "kvm/pc",
                "@janus bench clock-read-pvclock unit=ns n=9 min=1 median=20 p99=30",
            ),
            (
                "kvm/pc",
                "@janus bench clock-read-hpet unit=ns n=9 min=1 median=2000 p99=3000",
            ),
        ]));
        let c = Claims::answer(&s, None).clock;
        assert_eq!(c.ratio, Some(100.0));
        assert!(c.verdict.contains("both in kvm/pc"), "{}", c.verdict);
        assert!(c.verdict.contains("100× slower"), "{}", c.verdict);
    }

    #[test]
    fn io_divides_virtio_by_ata_in_the_same_environment() {
        let c = Claims::answer(&this_machine(), None).io;
        let r = c.ratio.unwrap();
        assert!((r - 636665704.0 / 5495512.0).abs() < 1e-9);
        assert!(c.verdict.contains("116× faster"), "{}", c.verdict);
        assert!(c.verdict.contains("tcg/pc"), "{}", c.verdict);
    }

    #[test]
    fn io_without_ata_is_not_answered() {
        let s: Vec<Summary> = this_machine()
            .into_iter()
            .filter(|s| s.id != ATA_READ)
            .collect();
        let c = Claims::answer(&s, None).io;
        assert_eq!(c.ratio, None);
        assert!(c.verdict.starts_with("not answered"));
    }

    #[test]
    fn times_rounds_for_the_eye() {
        assert_eq!(times(2.35), "2.4×");
        assert_eq!(times(41.7), "42×");
    }

    #[test]
    fn kinds_come_from_labels() {
        assert_eq!(Kind::of("xen-pv/pc"), Some(Kind::XenPv));
        assert_eq!(Kind::of("xen-pvh/pc"), Some(Kind::XenPvh));
        assert_eq!(Kind::of("kvm/q35"), Some(Kind::Kvm));
        assert_eq!(Kind::of("tcg/microvm"), Some(Kind::Tcg));
        assert_eq!(Kind::of("linux"), None);
    }
}
