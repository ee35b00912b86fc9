//! In-guest self-tests. Each prints one `@janus test <name> pass|fail [reason=...]` line.

mod frame_allocator;
mod heap;
mod mapper;
mod protection;
pub mod provoke;

use alloc::string::String;

use crate::println;

/// A failed check, with a message for the `reason=` field.
pub struct Failure(pub String);

impl<T: core::fmt::Display> From<T> for Failure {
    fn from(message: T) -> Self {
        Self(alloc::format!("{message}"))
    }
}

macro_rules! ensure {
    ($condition:expr, $($message:tt)*) => {
        if !$condition {
            return Err($crate::selftest::Failure(alloc::format!($($message)*)));
        }
    };
}
use ensure;

pub type Outcome = Result<Option<String>, Failure>;

/// Runs of the self-tests: how many passed and failed.
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
}

/// `reason=` values must not contain spaces.
fn machine_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

pub fn run_all(seed: u64) -> Summary {
    let tests: [(&str, &dyn Fn() -> Outcome); 5] = [
        ("frame-allocator", &frame_allocator::run),
        ("heap", &heap::run),
        ("mapper", &|| mapper::run(seed)),
        (
            "no-writable-executable",
            &protection::no_writable_executable,
        ),
        ("cpu-protection", &protection::cpu_protection),
    ];
    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    for (name, test) in tests {
        match test() {
            Ok(extra) => {
                summary.passed += 1;
                match extra {
                    Some(extra) => println!("@janus test {name} pass {extra}"),
                    None => println!("@janus test {name} pass"),
                }
            }
            Err(Failure(reason)) => {
                summary.failed += 1;
                println!("@janus test {name} fail reason={}", machine_value(&reason));
            }
        }
    }
    summary
}
