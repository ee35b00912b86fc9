//! no_std device drivers for Janus.
#![cfg_attr(not(test), no_std)]

pub mod pit;
pub mod uart16550;
