//! The architecture this kernel runs on, picked in one place.
pub mod x86_64;
pub use self::x86_64::*;
