//! The `gpu` crate owns everything a vGPU is: the host GGTT and its
//! partitioning, the guest's view of a virtual BAR0, guest<->host graphics
//! address translation, the command scanner, and the GPU backends behind one
//! trait (DESIGN.md "What the monitor does" 1-2, "Hardware and emulation").
//!
//! It never touches hardware directly: a backend reaches MMIO through a small
//! trait the kernel implements, so all decisions here are tested on the host.
//! It knows nothing of the network or of migration policy.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
pub mod addr;
pub mod backend;
pub mod engine;
pub mod ggtt;
pub mod partition;
pub mod regs;
pub mod scan;
pub mod sim;
#[cfg(test)]
mod testutil;
