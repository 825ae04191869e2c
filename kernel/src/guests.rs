//! Guests that run the `guest` crate's driver and workloads, played by the
//! monitor until the ring-3 guest runtime lands: [`StandIn`] is their
//! `guest::Platform`, over the vGPU's trapped BAR0 (`gpu::vgpu::Vgpu`'s
//! register policies, the scanner, the backend) and the guest's own frames.
//!
//! A TAIL write queues the guest's commands; the scheduler runs them
//! ([`VgpuManager::poll`]) right away if the engine is free, and at every
//! [`guest::Platform::pause`], which is how the guest's driver waits for
//! its fence: the GPU's work takes time, and the guest waits for it.
//!
//! What a live migration needs to know of a guest's step is collected on
//! the way: the guest pages its CPU wrote ([`CpuDirty`], what PTE dirty
//! bits will say for ring-3 guests) and the write sets of its dispatched
//! submissions ([`WriteLog`], the scanner's write targets, taken from the
//! gate after each poll).

use alloc::vec;
use alloc::vec::Vec;

use gpu::addr::GuestPage;
use gpu::backend::PhysMem;
use gpu::scan::WriteSet;
use gpu::vgpu::{AccessSize, GuestMemoryMap, MmioEffect, VgpuError, VgpuState};

use crate::vgpus::VgpuManager;

/// Why a guest's access failed.
#[derive(Debug, Clone, Copy)]
pub enum StandInError {
    /// The vGPU refused (the guest's fault, or it stopped).
    Vgpu(VgpuError),
    /// A page outside the guest's RAM (the guest's fault).
    NotGuestRam(u64),
    /// The guest's frames are not GPU memory (a monitor bug).
    Memory,
}

impl core::fmt::Display for StandInError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StandInError::Vgpu(e) => write!(f, "{e}"),
            StandInError::NotGuestRam(p) => write!(f, "page {p:#x} is not the guest's RAM"),
            StandInError::Memory => f.write_str("guest frames are not GPU memory (monitor bug)"),
        }
    }
}

/// The guest pages (by index from the guest's first RAM page) its CPU
/// wrote since the last [`CpuDirty::take`].
#[derive(Debug, Clone)]
pub struct CpuDirty {
    bits: Vec<u64>,
    any: bool,
}

impl CpuDirty {
    /// Room for `pages` pages, none dirty.
    pub fn new(pages: u64) -> Self {
        CpuDirty {
            bits: vec![0; pages.div_ceil(64) as usize],
            any: false,
        }
    }
    fn mark(&mut self, index: u64) {
        if let Some(w) = self.bits.get_mut((index / 64) as usize) {
            *w |= 1 << (index % 64);
            self.any = true;
        }
    }
    /// Calls `f` with every dirty page index and clears them.
    pub fn take(&mut self, mut f: impl FnMut(u64)) {
        if !self.any {
            return;
        }
        for (i, w) in self.bits.iter_mut().enumerate() {
            let mut bits = core::mem::take(w);
            while bits != 0 {
                let b = bits.trailing_zeros();
                f(i as u64 * 64 + u64::from(b));
                bits &= bits - 1;
            }
        }
        self.any = false;
    }
}

/// Write sets of the submissions a guest step got accepted.
#[derive(Debug, Default)]
pub struct WriteLog {
    sets: heapless::Vec<WriteSet, 16>,
    /// Some submission may have written pages no set lists (or the log
    /// overflowed): treat all of the vGPU's memory as written.
    pub untracked: bool,
}

impl WriteLog {
    /// Adds a submission's set (an untracked one, or one past the log's
    /// room, makes the whole memory count as written).
    pub fn push(&mut self, set: &WriteSet) {
        if set.untracked || self.sets.push(*set).is_err() {
            self.untracked = true;
        }
    }
    /// The sets, and empties the log.
    pub fn drain(&mut self) -> impl Iterator<Item = WriteSet> + '_ {
        self.untracked = false;
        let sets = core::mem::take(&mut self.sets);
        sets.into_iter()
    }
}

/// A guest's machine: vGPU `index` of the manager and its RAM.
pub struct StandIn<'a> {
    pub m: &'a mut VgpuManager,
    pub index: usize,
    pub cpu: &'a mut CpuDirty,
    pub writes: &'a mut WriteLog,
}

impl StandIn<'_> {
    fn frame(&self, page: u64) -> Result<u64, StandInError> {
        let hosted = &self.m.vgpus[self.index];
        let p = GuestPage::new(page).map_err(|_| StandInError::NotGuestRam(page))?;
        hosted
            .memory
            .frame_of(p)
            .map(|f| f.start().raw())
            .ok_or(StandInError::NotGuestRam(page))
    }
    fn first_page(&self) -> u64 {
        self.m.vgpus[self.index]
            .memory
            .runs()
            .first()
            .map_or(0, |r| r.first_page.number())
    }

    /// Runs the GPU on to now, and takes what this guest's dispatched
    /// submissions may write.
    fn run_gpu(&mut self) {
        self.m.poll(crate::time::nanos_since_boot());
        self.m.collect_writes(self.index, self.writes);
    }
}

fn in_page(offset: usize, len: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= 4096)
}

impl guest::Platform for StandIn<'_> {
    type Error = StandInError;

    fn mmio_read32(&mut self, offset: u32) -> Result<u32, StandInError> {
        let hosted = &mut self.m.vgpus[self.index];
        hosted
            .vgpu
            .mmio_read(
                self.m.device.backend(),
                &hosted.memory,
                offset,
                AccessSize::Dword,
            )
            .map(|v| v as u32)
            .map_err(StandInError::Vgpu)
    }

    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), StandInError> {
        let hosted = &mut self.m.vgpus[self.index];
        let effect = hosted
            .vgpu
            .mmio_write(
                self.m.device.backend(),
                &hosted.memory,
                offset,
                AccessSize::Dword,
                u64::from(value),
            )
            .map_err(StandInError::Vgpu)?;
        if let MmioEffect::Queued(_) = effect {
            // Starts it now if the engine is free; the guest then waits
            // for its fence, pausing.
            self.run_gpu();
        }
        Ok(())
    }

    fn mmio_write64(&mut self, offset: u32, value: u64) -> Result<(), StandInError> {
        let hosted = &mut self.m.vgpus[self.index];
        hosted
            .vgpu
            .mmio_write(
                self.m.device.backend(),
                &hosted.memory,
                offset,
                AccessSize::Qword,
                value,
            )
            .map(|_| ())
            .map_err(StandInError::Vgpu)
    }

    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), StandInError> {
        if !in_page(offset, out.len()) {
            return Err(StandInError::NotGuestRam(page));
        }
        let at = gpu::addr::PhysAddr::new(self.frame(page)? + offset as u64)
            .map_err(|_| StandInError::Memory)?;
        self.m
            .device
            .memory()
            .read(at, out)
            .map_err(|_| StandInError::Memory)
    }

    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), StandInError> {
        if !in_page(offset, data.len()) {
            return Err(StandInError::NotGuestRam(page));
        }
        let at = gpu::addr::PhysAddr::new(self.frame(page)? + offset as u64)
            .map_err(|_| StandInError::Memory)?;
        self.m
            .device
            .memory_mut()
            .write(at, data)
            .map_err(|_| StandInError::Memory)?;
        let first = self.first_page();
        self.cpu.mark(page - first);
        Ok(())
    }

    fn pause(&mut self) -> Result<(), StandInError> {
        self.run_gpu();
        if let VgpuState::Failed(reason) = self.m.vgpus[self.index].vgpu.state() {
            return Err(StandInError::Vgpu(VgpuError::Stopped(reason)));
        }
        Ok(())
    }
}
