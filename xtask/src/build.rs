//! `cargo xtask build`: build the kernel image.

use crate::cli::Failure;
use crate::workspace::Workspace;

/// Builds `cargo build --release -p janus-kernel --bin janus --target x86_64-unknown-none`,
/// installing the target first when the toolchain lacks it.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints the image path as the last line of stdout, for `$(cargo xtask build | tail -1)`.
pub fn run(_args: &Args) -> Result<u8, Failure> {
    let image = Workspace::locate()?.build_kernel()?;
    println!("{}", image.display());
    Ok(0)
}
