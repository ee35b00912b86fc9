//! The kernel image. Everything lives in the library; this binary only links it, and the
//! boot entries in the library are reached through the ELF notes.
#![no_std]
#![no_main]

use janus_kernel as _;
