//! What the monitor checks of a ring-3 workload guest itself, not taking
//! the guest's word (its exit code, its own checks): the checksums the
//! same program gives when it runs alone, as a ring-3 guest on a vGPU of
//! its own (other slices, other frames, nobody beside it), and the
//! content of every data page of the guest's RAM against the bookkeeping
//! the guest keeps there (`guest::workload::verify`, read through
//! [`GuestRam`]). Together: no other guest changed what it computed or
//! what it holds.

use alloc::vec::Vec;
use core::fmt;

use gpu::backend::PhysMem;
use gpu::partition::VgpuType;
use gpu::vgpu::GuestMemoryMap;
use guest::abi::{Program, DRIVER_INDEX, RAM_FIRST_PAGE};
use guest::Kind;

use super::guest::RunState;
use super::{Guest, Runtime, Scheduler};
use crate::platform::Platform;
use crate::vgpus::VgpuManager;

/// Longest a reference run may take (TSC seconds).
const LIMIT_S: u64 = 120;

/// The same workload program alone, as a ring-3 guest on a fresh vGPU of
/// `pages` of RAM: the checksums a correct run beside other guests must
/// give, frame by frame (`frames` of them).
pub fn reference_checksums(
    p: &mut Platform,
    kind: Kind,
    seed: u64,
    frames: u64,
    pages: u64,
) -> Result<Vec<u64>, &'static str> {
    let rt = Runtime::init(&mut p.memory, p.calibration.tsc_hz)
        .map_err(|_| "the ring-3 runtime did not come up")?;
    let index = p
        .vgpus
        .add_vgpu(&mut p.memory.frames, VgpuType::Small, pages)
        .map_err(|_| "no room for the reference vGPU")?;
    let program = Program::Workload { kind, seed, frames };
    let guest = match Guest::create(&rt, &mut p.memory.frames, &mut p.vgpus, index, 0, program) {
        Ok(g) => g,
        Err(_) => {
            p.vgpus.remove_vgpu(&mut p.memory.frames, index);
            return Err("the reference guest could not be created");
        }
    };
    let mut sched = Scheduler::new(&rt);
    sched.add(guest);
    let ended = sched.run(&rt, &mut p.vgpus, LIMIT_S * rt.tsc_hz);
    let g = sched.guests.remove(0);
    let got: Vec<u64> = g.frames.all.iter().map(|f| f.1).collect();
    let ok = ended && g.state() == RunState::Exited(0);
    if let Some(i) = p
        .vgpus
        .vgpus
        .iter()
        .position(|h| h.partition.id() == g.vgpu)
    {
        p.vgpus.remove_vgpu(&mut p.memory.frames, i);
    }
    g.destroy(&mut p.memory.frames);
    if ok {
        Ok(got)
    } else {
        Err("the reference run alone did not end well")
    }
}

/// Why a read of a guest's RAM failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamError {
    /// The page is not the guest's RAM (the guest's bookkeeping names
    /// one it does not have).
    NotRam(u64),
    /// Its frames are not GPU memory (a monitor bug).
    Memory,
    /// Only reading is allowed here (a monitor bug).
    ReadOnly,
}

impl fmt::Display for RamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RamError::NotRam(page) => write!(f, "page {page:#x} is not the guest's RAM"),
            RamError::Memory => f.write_str("guest frames are not GPU memory (monitor bug)"),
            RamError::ReadOnly => f.write_str("the monitor's view of guest RAM is read-only"),
        }
    }
}

/// The monitor's read-only view of vGPU `index`'s guest RAM, as a
/// `guest::Platform` for `guest::workload::verify` (which only reads
/// RAM): no BAR0, no writes.
pub struct GuestRam<'a> {
    pub m: &'a VgpuManager,
    pub index: usize,
}

impl guest::Platform for GuestRam<'_> {
    type Error = RamError;

    fn mmio_read32(&mut self, _: u32) -> Result<u32, RamError> {
        Err(RamError::ReadOnly)
    }
    fn mmio_write32(&mut self, _: u32, _: u32) -> Result<(), RamError> {
        Err(RamError::ReadOnly)
    }
    fn mmio_write64(&mut self, _: u32, _: u64) -> Result<(), RamError> {
        Err(RamError::ReadOnly)
    }
    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), RamError> {
        if offset.checked_add(out.len()).is_none_or(|end| end > 4096) {
            return Err(RamError::NotRam(page));
        }
        let hosted = self.m.vgpus.get(self.index).ok_or(RamError::Memory)?;
        let frame = gpu::addr::GuestPage::new(page)
            .ok()
            .and_then(|p| hosted.memory.frame_of(p))
            .ok_or(RamError::NotRam(page))?;
        let at = gpu::addr::PhysAddr::new(frame.start().raw() + offset as u64)
            .map_err(|_| RamError::Memory)?;
        self.m
            .device
            .memory()
            .read(at, out)
            .map_err(|_| RamError::Memory)
    }
    fn ram_write(&mut self, _: u64, _: usize, _: &[u8]) -> Result<(), RamError> {
        Err(RamError::ReadOnly)
    }
    fn aperture_write(&mut self, _: u64, _: usize, _: &[u8]) -> Result<(), RamError> {
        Err(RamError::ReadOnly)
    }
    fn pause(&mut self) -> Result<(), RamError> {
        Ok(())
    }
}

/// Checks every data page of the workload of `kind` and `seed` in the RAM
/// of vGPU `index` (`pages` from `RAM_FIRST_PAGE`, the driver's from
/// `DRIVER_INDEX`) against its bookkeeping, reading only; returns how
/// many pages were checked.
pub fn guest_pages(
    m: &VgpuManager,
    index: usize,
    kind: Kind,
    seed: u64,
    pages: u64,
) -> Result<u64, guest::WorkloadError<RamError>> {
    let first = RAM_FIRST_PAGE + DRIVER_INDEX;
    guest::workload::verify(
        &mut GuestRam { m, index },
        first,
        pages - DRIVER_INDEX,
        kind,
        seed,
    )
}
