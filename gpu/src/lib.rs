//! The `gpu` crate owns everything a vGPU is: the host GGTT and its
//! partitioning, the guest's view of a virtual BAR0, guest<->host graphics
//! address translation, the command scanner, and the GPU backends behind one
//! trait (ARCHITECTURE.md "The GPU side").
//!
//! It never touches hardware directly: a backend reaches MMIO through a small
//! trait the kernel implements ([`intel::Mmio`]) and memory through
//! [`backend::PhysMem`], so all decisions here are tested on the host. It
//! knows nothing of the network or of migration policy; migration sees only
//! the opaque blob of [`persist`].
//!
//! It must never: panic on anything a guest hands in (every guest path
//! returns a typed [`vgpu::VgpuError`]); let a guest GM address reach a
//! backend without [`partition::GmTranslation`]; allocate (no `alloc`:
//! fixed arrays and `heapless`); use `unsafe`.
//!
//! Map of the crate:
//! * [`addr`]: address newtypes and ranges.
//! * [`regs`]: Gen9 register tables, PVINFO layout.
//! * [`ggtt`]: the 64-bit GGTT PTE and the flush obligation.
//! * [`partition`]: GM layout, vGPU types, the allocator, and the one
//!   guest<->host translation.
//! * [`execlist`]: the execlist port a Gen9 guest driver submits through
//!   (ELSP, CSB, context images), per engine of each vGPU.
//! * [`vgpu`]: the virtual BAR0, its register policies, the TAIL -> queue
//!   -> [`vgpu::SubmissionGate`] (scanner) -> [`backend::Backend`] path,
//!   failsafe.
//! * [`persist`]: device state save/restore with remapping onto new slices.
//! * [`ppgtt`]: the 4-level PPGTT entry format and walk, and the shadow
//!   PPGTT that confines a guest context to its vGPU's frames.
//! * [`encode`]: command encoders for tests, benches and workloads.
//! * [`device`]: which PCI devices the real-hardware backend drives.
//! * [`backend`]: the backend trait; [`sim`] (software Gen9) and [`intel`]
//!   (real Gen9 over MMIO) implement it.
//! * [`scan`]: the command scanner; [`mediate`] seats it as the
//!   [`vgpu::SubmissionGate`] of every vGPU.
//! * [`sched`]: the vGPU scheduler: turns of the vGPUs' queued work on
//!   each engine, and the engine time each used.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
pub mod addr;
pub mod backend;
pub mod device;
pub mod encode;
pub mod engine;
pub mod execlist;
pub mod ggtt;
pub mod intel;
pub mod mediate;
pub mod partition;
pub mod persist;
pub mod ppgtt;
pub mod regs;
pub mod scan;
pub mod sched;
pub mod sim;
#[cfg(test)]
mod testutil;
pub mod vgpu;
