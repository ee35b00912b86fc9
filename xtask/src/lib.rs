//! `cargo xtask`: builds the Janus kernel, boots it under QEMU and judges its output.
//!
//! The subcommands (`build`, `run`, `test`, `lint`) are one module each with a `run()`.
//! The parts the boot tests reuse are plain library modules: [`qemu`] turns a
//! [`qemu::RunConfig`] into a QEMU command and runs it with a timeout, [`report`] parses the
//! kernel's `@janus` lines and turns a run into a [`report::Verdict`], and [`symbolize`]
//! resolves backtrace addresses against the kernel ELF. [`xen`] fetches Xen and reads its
//! console for runs with the kernel as Xen's dom0. [`devices`] prepares the paravirtual I/O
//! devices a run attaches (disk images, the UDP echo, the virtio console's log) and checks
//! on the host what the kernel did with them.

pub mod bench;
pub mod build;
pub mod cli;
pub mod debian;
pub mod devices;
pub mod host;
pub mod libtest;
pub mod lint;
pub mod linux;
pub mod qemu;
pub mod report;
pub mod run;
pub mod symbolize;
pub mod test;
pub mod workspace;
pub mod xen;
