//! What runs inside a guest (ARCHITECTURE.md "The guest crate"): a small
//! GVT-g-style vGPU driver and deterministic, self-checking GPU workloads
//! on top of it.
//!
//! The crate owns the guest's side of the vGPU interface and nothing of the
//! monitor: it reaches its vGPU only through [`Platform`], which is what a
//! virtual machine has (the virtual BAR0, trapped by the monitor, and the
//! guest's own RAM), so the same code drives a vGPU in a deprivileged
//! ring-3 guest image and in the host tests' model of one. It must never:
//! allocate, panic on anything the platform returns, or keep state that a
//! live migration would not carry: in a ring-3 guest all it holds is in
//! the guest's RAM and registers, which migrate whole.
//!
//! * [`driver`]: PVINFO and ballooning, the guest's GGTT entries, rings,
//!   batch submission and completion by fence.
//! * [`content`]: deterministic page contents, so expected results can be
//!   recomputed from a few bytes of bookkeeping.
//! * [`workload`]: the 3D-like, desktop and video workloads, with the write
//!   behaviour of the simulator's models (`migrate/sim/src/workload.rs`).
//! * [`abi`]: the contract with the monitor of a ring-3 guest image
//!   (`guest/images/`): its address space, boot block and system calls.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod abi;
pub mod attack;
pub mod content;
pub mod driver;
pub mod platform;
pub mod workload;

pub use driver::{Driver, DriverError};
pub use platform::Platform;
pub use workload::{FrameReport, Kind, Workload, WorkloadError};
