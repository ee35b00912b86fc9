//! Self-tests of the Xen interfaces, run only under Xen.

use janus_hypercall::xen::error::XenError;

use super::{Outcome, ensure};
use crate::platform::xen::Xen;

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

pub fn unknown_hypercall(xen: &Xen) -> Outcome {
    match xen.hypercalls.unknown_hypercall() {
        Err(XenError::Enosys) => Ok(None),
        other => Err(super::Failure(alloc::format!(
            "an undefined hypercall returned {other:?}, expected ENOSYS"
        ))),
    }
}
