//! Which environments a `cargo xtask bench` boots: every place the kernel runs here, with the
//! machine types that apply, unless the user narrows it.

use clap::ValueEnum;

use crate::qemu::{Accel, Kvm, Machine};
use crate::xen::Dom0;

/// A place to run, as `--env` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Place {
    Kvm,
    Tcg,
    XenPvh,
    XenPv,
}

/// One environment of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// QEMU boots the kernel directly; the Linux peer boots the same way.
    Direct { accel: Accel, machine: Machine },
    /// Xen (under TCG, on pc) boots the kernel as its dom0.
    Xen { dom0: Dom0 },
}

impl Target {
    /// The label verdicts and the report use: `tcg/pc`, `xen-pv/pc`.
    pub fn label(self) -> String {
        match self {
            Target::Direct { accel, machine } => format!("{accel}/{machine}"),
            Target::Xen { dom0 } => format!("{}/{}", dom0.env_name(), Machine::Pc),
        }
    }
}

/// An environment that does not run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excluded {
    pub environment: String,
    pub reason: String,
}

/// The matrix: `places` and `machines` as the user gave them (empty: all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub targets: Vec<Target>,
    pub excluded: Vec<Excluded>,
}

/// Why the matrix cannot be built as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixError(pub String);

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MatrixError {}

pub const ALL_MACHINES: [Machine; 3] = [Machine::Microvm, Machine::Pc, Machine::Q35];

impl Matrix {
    pub fn plan(places: &[Place], machines: &[Machine], kvm: &Kvm) -> Result<Matrix, MatrixError> {
        let asked = |p: Place| places.is_empty() || places.contains(&p);
        let machines: Vec<Machine> = if machines.is_empty() {
            ALL_MACHINES.to_vec()
        } else {
            ALL_MACHINES
                .into_iter()
                .filter(|m| machines.contains(m))
                .collect()
        };
        let mut matrix = Matrix {
            targets: Vec::new(),
            excluded: Vec::new(),
        };
        if asked(Place::Kvm) {
            match kvm {
                Kvm::Opens => matrix.direct(Accel::Kvm, &machines),
                Kvm::DoesNotOpen(reason) if places.contains(&Place::Kvm) => {
                    return Err(MatrixError(format!(
                        "--env kvm needs {}, which does not open read-write here ({reason}); \
                         leave --env out to bench everything that runs here",
                        crate::qemu::KVM_DEVICE
                    )));
                }
                Kvm::DoesNotOpen(reason) => matrix.excluded.push(Excluded {
                    environment: "kvm".into(),
                    reason: format!("{} does not open: {reason}", crate::qemu::KVM_DEVICE),
                }),
            }
        }
        if asked(Place::Tcg) {
            matrix.direct(Accel::Tcg, &machines);
        }
        // Xen boots on pc only (ENVIRONMENTS.md); a --machine list without pc leaves it out
        // only when the user also named Xen, which is then an error rather than a silent no.
        for (place, dom0) in [(Place::XenPvh, Dom0::Pvh), (Place::XenPv, Dom0::Pv)] {
            if !asked(place) {
                continue;
            }
            if !machines.contains(&Machine::Pc) {
                if places.contains(&place) {
                    return Err(MatrixError(format!(
                        "--env {} runs on pc only; add pc to --machine",
                        dom0.env_name()
                    )));
                }
                continue;
            }
            matrix.targets.push(Target::Xen { dom0 });
        }
        Ok(matrix)
    }

    fn direct(&mut self, accel: Accel, machines: &[Machine]) {
        self.targets.extend(
            machines
                .iter()
                .map(|&machine| Target::Direct { accel, machine }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(m: &Matrix) -> Vec<String> {
        m.targets.iter().map(|t| t.label()).collect()
    }

    #[test]
    fn everything_that_runs_here_by_default() {
        let m = Matrix::plan(&[], &[], &Kvm::Opens).unwrap();
        assert_eq!(
            labels(&m),
            [
                "kvm/microvm",
                "kvm/pc",
                "kvm/q35",
                "tcg/microvm",
                "tcg/pc",
                "tcg/q35",
                "xen-pvh/pc",
                "xen-pv/pc"
            ]
        );
        assert!(m.excluded.is_empty());
    }

    #[test]
    fn without_kvm_the_default_says_why_it_is_left_out() {
        let m = Matrix::plan(
            &[],
            &[],
            &Kvm::DoesNotOpen("No such file or directory".into()),
        )
        .unwrap();
        assert_eq!(m.targets.len(), 5);
        assert_eq!(m.excluded.len(), 1);
        assert!(m.excluded[0].reason.contains("No such file"));
    }

    #[test]
    fn asking_for_kvm_without_it_is_an_error() {
        let e = Matrix::plan(&[Place::Kvm], &[], &Kvm::DoesNotOpen("denied".into())).unwrap_err();
        assert!(e.to_string().contains("(denied)"), "{e}");
    }

    #[test]
    fn machines_narrow_the_direct_environments_and_keep_their_order() {
        let m = Matrix::plan(
            &[Place::Tcg],
            &[Machine::Q35, Machine::Pc],
            &Kvm::DoesNotOpen("x".into()),
        )
        .unwrap();
        assert_eq!(labels(&m), ["tcg/pc", "tcg/q35"]);
    }

    #[test]
    fn xen_needs_pc() {
        let m = Matrix::plan(&[], &[Machine::Microvm], &Kvm::DoesNotOpen("x".into())).unwrap();
        assert_eq!(labels(&m), ["tcg/microvm"]);
        let e = Matrix::plan(&[Place::XenPv], &[Machine::Microvm], &Kvm::Opens).unwrap_err();
        assert!(e.to_string().contains("add pc to --machine"), "{e}");
    }
}
