//! Turning kernel addresses (fault RIP, backtrace frames) into `symbol+offset (file:line)`
//! from the kernel ELF's symbol table and DWARF line tables.

use std::fmt;
use std::path::{Path, PathBuf};

/// The symbol table and line tables of one ELF file.
pub struct Symbolizer {
    loader: addr2line::Loader,
    source_root: Option<PathBuf>,
}

/// Where an address lies in the kernel's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Demangled, without the hash suffix.
    pub name: String,
    /// Bytes from the start of the symbol.
    pub offset: u64,
    /// Source file, relative to the source root when under it.
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({file}:{line})"),
            (Some(file), None) => write!(f, " ({file})"),
            (None, _) => Ok(()),
        }
    }
}

/// The ELF could not be read.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read symbols from {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for Error {}

impl Symbolizer {
    pub fn load(elf: &Path) -> Result<Symbolizer, Error> {
        let loader = addr2line::Loader::new(elf).map_err(|e| Error {
            path: elf.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Symbolizer {
            loader,
            source_root: None,
        })
    }

    /// Prints source files under `root` relative to it, as `kernel/src/...`.
    pub fn relative_to(mut self, root: &Path) -> Symbolizer {
        self.source_root = Some(root.to_path_buf());
        self
    }

    /// The symbol and source line of the instruction at `address` (a fault's RIP).
    pub fn lookup(&self, address: u64) -> Option<Symbol> {
        self.describe(address, address)
    }

    /// The symbol and source line of the call that `return_address` returns from.
    ///
    /// A return address points after the call, often at the next line or even the next
    /// function, so the line is looked up one byte earlier (as gdb and libunwind do).
    pub fn lookup_return_address(&self, return_address: u64) -> Option<Symbol> {
        self.describe(return_address, return_address.checked_sub(1)?)
    }

    fn describe(&self, address: u64, line_probe: u64) -> Option<Symbol> {
        let symbol = self.loader.find_symbol_info(line_probe)?;
        let name = format!("{:#}", rustc_demangle::demangle(symbol.name()));
        let (file, line) = self.source_line(line_probe).unzip();
        Some(Symbol {
            name,
            offset: address - symbol.address(),
            file,
            line: line.flatten(),
        })
    }

    /// The innermost source line under the source root, else the innermost one.
    ///
    /// A fault often sits in code inlined from `core` (`ptr::write_volatile`); the line
    /// worth reading is the kernel's call into it.
    fn source_line(&self, probe: u64) -> Option<(String, Option<u32>)> {
        let mut frames = self.loader.find_frames(probe).ok()?;
        let mut innermost = None;
        while let Ok(Some(frame)) = frames.next() {
            let Some(location) = frame.location else {
                continue;
            };
            let Some(file) = location.file else {
                continue;
            };
            let ours = self
                .source_root
                .as_deref()
                .is_some_and(|root| Path::new(file).starts_with(root));
            let found = (self.shorten(file), location.line);
            if ours {
                return Some(found);
            }
            innermost.get_or_insert(found);
        }
        innermost
    }

    fn shorten(&self, file: &str) -> String {
        self.source_root
            .as_deref()
            .and_then(|root| Path::new(file).strip_prefix(root).ok())
            .map_or_else(|| file.to_string(), |p| p.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSymbol};

    use super::*;

    /// A function with a known name in this test binary, to look up by address.
    #[inline(never)]
    fn marker_for_symbolizer(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3).rotate_left(7)
    }

    /// The link-time address of `marker_for_symbolizer`, read with `object` independently
    /// of the code under test (the running address differs: the test binary is PIE).
    fn marker_address(exe: &Path) -> u64 {
        let data = std::fs::read(exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        file.symbols()
            .find(|s| {
                s.name()
                    .is_ok_and(|n| n.contains("marker_for_symbolizer") && !n.contains("closure"))
            })
            .map(|s| s.address())
            .expect("the marker function is in the symbol table")
    }

    #[test]
    fn looks_up_symbol_offset_and_line_in_this_test_binary() {
        assert_eq!(marker_for_symbolizer(1), 384);
        let exe = std::env::current_exe().unwrap();
        let address = marker_address(&exe);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let symbolizer = Symbolizer::load(&exe).unwrap().relative_to(root);

        let at_start = symbolizer.lookup(address).unwrap();
        assert_eq!(
            at_start.name,
            "xtask::symbolize::tests::marker_for_symbolizer"
        );
        assert_eq!(at_start.offset, 0);
        assert_eq!(at_start.file.as_deref(), Some("xtask/src/symbolize.rs"));
        assert!(at_start.line.is_some());
        let text = at_start.to_string();
        assert!(
            text.starts_with(
                "xtask::symbolize::tests::marker_for_symbolizer+0x0 (xtask/src/symbolize.rs:"
            ),
            "{text}"
        );

        let inside = symbolizer.lookup(address + 4).unwrap();
        assert_eq!(inside.name, at_start.name);
        assert_eq!(inside.offset, 4);

        let returning = symbolizer.lookup_return_address(address + 4).unwrap();
        assert_eq!(returning.offset, 4);
        assert_eq!(returning.name, at_start.name);
    }

    #[test]
    fn address_below_every_symbol_has_no_symbol() {
        let exe = std::env::current_exe().unwrap();
        let symbolizer = Symbolizer::load(&exe).unwrap();
        assert_eq!(symbolizer.lookup(0), None);
        assert_eq!(symbolizer.lookup_return_address(0), None);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = Symbolizer::load(Path::new("/nonexistent/janus"))
            .err()
            .expect("no such file");
        assert!(err.to_string().contains("/nonexistent/janus"), "{err}");
    }

    #[test]
    fn display_without_line_info() {
        let s = Symbol {
            name: "start".into(),
            offset: 0x1c,
            file: None,
            line: None,
        };
        assert_eq!(s.to_string(), "start+0x1c");
        let s = Symbol {
            file: Some("kernel/src/boot/pvh.rs".into()),
            ..s
        };
        assert_eq!(s.to_string(), "start+0x1c (kernel/src/boot/pvh.rs)");
    }
}
