//! Memory a NIC reaches by DMA: physically contiguous, zeroed runs of the
//! monitor's frames. The monitor identity-maps RAM (`mem::paging`), so the
//! address the CPU uses and the bus address the device is given are the
//! same number; x86 DMA is cache-coherent, so the write-back mapping of RAM
//! is right for descriptor rings and packet buffers alike.

use crate::mem::frames::{FrameAllocator, FrameError};
use crate::mem::FRAME_SIZE;

/// A run of frames owned by one driver for the life of the monitor (or
/// until it gives it back with [`DmaRegion::free`] after a failed bring-up).
#[derive(Debug)]
pub struct DmaRegion {
    phys: u64,
    frames: u64,
}

impl DmaRegion {
    /// At least `bytes` of zeroed, page-aligned, contiguous memory.
    pub fn allocate(frames: &mut FrameAllocator, bytes: usize) -> Result<Self, FrameError> {
        let count = (bytes as u64).div_ceil(FRAME_SIZE).max(1);
        let first = frames.allocate_contiguous(count, 1)?;
        let region = DmaRegion {
            phys: first.address(),
            frames: count,
        };
        // SAFETY: the frames were just allocated for this region, are
        // identity-mapped RAM, and nothing else refers to them.
        unsafe { core::ptr::write_bytes(region.ptr(), 0, region.len()) };
        Ok(region)
    }

    /// Bus (= physical = virtual) address of the first byte.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Length in bytes (whole frames).
    pub fn len(&self) -> usize {
        (self.frames * FRAME_SIZE) as usize
    }

    /// The first byte, for the CPU (the identity map makes it `phys`).
    pub fn ptr(&self) -> *mut u8 {
        self.phys as *mut u8
    }

    /// Bus address of byte `offset` (which must lie inside the region).
    pub fn phys_at(&self, offset: usize) -> u64 {
        debug_assert!(offset < self.len());
        self.phys + offset as u64
    }

    /// Gives the frames back (only after the device was stopped or never
    /// started: it must not write here any more).
    pub fn free(self, frames: &mut FrameAllocator) {
        let first = crate::mem::frames::Frame::containing(self.phys);
        if let Err(e) = frames.free(first, self.frames) {
            defmt::warn!("net: returning DMA frames: {}", defmt::Display2Format(&e));
        }
    }
}
