//! The cargo workspace: where it lives, where cargo puts artifacts, and building the kernel.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::Deserialize;

use crate::host;

/// The kernel's target triple.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// The kernel's package and binary.
pub const KERNEL_PACKAGE: &str = "janus-kernel";
pub const KERNEL_BIN: &str = "janus";

/// The parts of `cargo metadata --format-version 1 --no-deps` xtask uses.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Workspace {
    #[serde(rename = "workspace_root")]
    pub root: PathBuf,
    #[serde(rename = "target_directory")]
    pub target_dir: PathBuf,
}

/// A cargo or rustup step that did not work.
#[derive(Debug)]
pub enum Error {
    Spawn { program: String, source: io::Error },
    Failed { what: String, status: ExitStatus },
    Metadata(serde_json::Error),
    MissingImage(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            Error::Failed { what, status } => {
                write!(f, "{what} failed ({status}); see its output above")
            }
            Error::Metadata(e) => write!(f, "cannot read `cargo metadata` output: {e}"),
            Error::MissingImage(path) => write!(
                f,
                "cargo reported success but {} does not exist",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The cargo that runs xtask, so nested builds use the same toolchain.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs `command` with inherited stdio, naming it by `what` when it fails.
pub fn run_step(command: &mut Command, what: &str) -> Result<(), Error> {
    let status = command.status().map_err(|source| Error::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            what: what.to_string(),
            status,
        })
    }
}

/// Runs `command` and returns its stdout.
fn capture(command: &mut Command, what: &str) -> Result<String, Error> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Failed {
            what: what.to_string(),
            status: output.status,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Workspace {
    /// Asks cargo about the workspace this xtask was built from.
    pub fn locate() -> Result<Workspace, Error> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits inside the workspace")
            .join("Cargo.toml");
        let json = capture(
            Command::new(cargo_program())
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .arg("--manifest-path")
                .arg(manifest),
            "cargo metadata",
        )?;
        Workspace::from_metadata(&json)
    }

    fn from_metadata(json: &str) -> Result<Workspace, Error> {
        serde_json::from_str(json).map_err(Error::Metadata)
    }

    /// A cargo command run from the workspace root.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(cargo_program());
        command.current_dir(&self.root);
        command
    }

    /// Where the release build of the kernel lands.
    pub fn kernel_image(&self) -> PathBuf {
        self.target_dir
            .join(KERNEL_TARGET)
            .join("release")
            .join(KERNEL_BIN)
    }

    /// The arguments that build the kernel image.
    pub fn kernel_build_args() -> [&'static str; 8] {
        [
            "build",
            "--release",
            "-p",
            KERNEL_PACKAGE,
            "--bin",
            KERNEL_BIN,
            "--target",
            KERNEL_TARGET,
        ]
    }

    /// Builds the kernel (installing its target first if needed) and returns the image.
    pub fn build_kernel(&self) -> Result<PathBuf, Error> {
        self.ensure_kernel_target()?;
        run_step(
            self.cargo().args(Workspace::kernel_build_args()),
            "building the kernel",
        )?;
        let image = self.kernel_image();
        if image.is_file() {
            Ok(image)
        } else {
            Err(Error::MissingImage(image))
        }
    }

    /// Installs the kernel target into the pinned toolchain when it is missing.
    ///
    /// rust-toolchain.toml names the target, but rustup adds it only when it installs the
    /// toolchain; a toolchain that was already there lacks it.
    pub fn ensure_kernel_target(&self) -> Result<(), Error> {
        if host::find_program("rustup").is_none() {
            // Without rustup the toolchain is managed by other means; cargo's own error
            // about a missing target is then the clearest message.
            return Ok(());
        }
        let installed = capture(
            Command::new("rustup")
                .current_dir(&self.root)
                .args(["target", "list", "--installed"]),
            "rustup target list --installed",
        )?;
        if installed.lines().any(|l| l.trim() == KERNEL_TARGET) {
            return Ok(());
        }
        println!("installing the kernel target: rustup target add {KERNEL_TARGET}");
        run_step(
            Command::new("rustup")
                .current_dir(&self.root)
                .args(["target", "add", KERNEL_TARGET]),
            "rustup target add",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_root_and_target_dir_from_cargo_metadata() {
        let json = r#"{"packages":[],"workspace_members":[],"target_directory":"/w/target",
            "workspace_root":"/w","version":1,"metadata":null}"#;
        let ws = Workspace::from_metadata(json).unwrap();
        assert_eq!(ws.root, Path::new("/w"));
        assert_eq!(
            ws.kernel_image(),
            Path::new("/w/target/x86_64-unknown-none/release/janus")
        );
    }

    #[test]
    fn metadata_without_target_dir_is_an_error() {
        let err = Workspace::from_metadata(r#"{"workspace_root":"/w"}"#).unwrap_err();
        assert!(err.to_string().contains("target_directory"), "{err}");
    }

    #[test]
    fn locate_finds_this_workspace() {
        let ws = Workspace::locate().unwrap();
        assert!(ws.root.join("xtask/Cargo.toml").is_file());
        assert!(ws.kernel_image().starts_with(&ws.target_dir));
    }

    #[test]
    fn kernel_is_built_for_the_none_target_in_release() {
        assert_eq!(
            Workspace::kernel_build_args().join(" "),
            "build --release -p janus-kernel --bin janus --target x86_64-unknown-none"
        );
    }
}
