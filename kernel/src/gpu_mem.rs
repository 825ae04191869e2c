//! The memory the GPU reaches: frames the monitor allocated for it (the
//! software model's GGTT table, pages handed to vGPUs) and nothing else.
//!
//! `gpu::backend::PhysMem` is how the `gpu` crate touches host memory. This
//! implementation refuses any address outside the frames it was given, so a
//! remapping bug in the GPU model shows up as a typed error, never as a write
//! into the monitor's own data.

use gpu::addr::PhysAddr;
use gpu::backend::{PhysMem, PhysMemError};
use gpu::vgpu::FrameRuns;

use crate::mem::frames::{Frame, FrameAllocator, FrameError};
use crate::mem::FRAME_SIZE;

/// Most separate runs of frames the GPU can own.
const MAX_RUNS: usize = 64;

/// A run of frames given to the GPU.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
}

/// The GPU's share of physical memory.
#[derive(Debug, Default)]
pub struct GpuMemory {
    runs: heapless::Vec<Run, MAX_RUNS>,
}

/// Why frames could not be given to the GPU.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum GpuMemoryError {
    /// The frame allocator had no such run.
    Frames(FrameError),
    /// More separate runs than [`MAX_RUNS`].
    TooManyRuns,
    /// A run to release is not one the GPU owns.
    NotOwned,
}

impl core::fmt::Display for GpuMemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GpuMemoryError::Frames(e) => write!(f, "{e}"),
            GpuMemoryError::TooManyRuns => {
                write!(f, "more than {MAX_RUNS} separate GPU memory runs")
            }
            GpuMemoryError::NotOwned => f.write_str("frames to release are not GPU memory"),
        }
    }
}

impl GpuMemory {
    /// Allocates `count` contiguous, zeroed frames aligned to `align` frames
    /// and gives them to the GPU. Returns the physical address of the first.
    pub fn allocate(
        &mut self,
        frames: &mut FrameAllocator,
        count: u64,
        align: u64,
    ) -> Result<PhysAddr, GpuMemoryError> {
        if self.runs.is_full() {
            return Err(GpuMemoryError::TooManyRuns);
        }
        let first: Frame = frames
            .allocate_contiguous(count, align)
            .map_err(GpuMemoryError::Frames)?;
        let start = first.address();
        let end = start + count * FRAME_SIZE;
        // SAFETY: the frames were just allocated for the GPU, are identity
        // mapped RAM, and nothing else refers to them yet.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
        // Cannot fail: fullness was checked above.
        let _ = self.runs.push(Run { start, end });
        // Frames come from RAM below the 39-bit limit of a GGTT PTE.
        PhysAddr::new(start).map_err(|_| GpuMemoryError::Frames(FrameError::OutOfFrames))
    }

    /// Takes back from the GPU the frames of a guest's memory `map` (each
    /// run exactly as [`Self::allocate`] gave it), zeroes them so no guest
    /// data outlives the guest, and returns them to `frames`. The caller
    /// has already removed every GGTT entry that maps them. Runs the GPU
    /// does not own as given are left alone and reported.
    pub fn release<const N: usize>(
        &mut self,
        frames: &mut FrameAllocator,
        map: &FrameRuns<N>,
    ) -> Result<(), GpuMemoryError> {
        let mut result = Ok(());
        for run in map.runs() {
            if let Err(e) = self.release_run(frames, run.first_frame.start(), run.count) {
                result = Err(e);
            }
        }
        result
    }

    /// Takes back, zeroes and returns the `count` frames from `start`,
    /// one run exactly as [`Self::allocate`] gave it (a guest's memory, a
    /// vGPU's shadow PPGTT pool). The caller has already made sure the GPU
    /// no longer reaches them. A run the GPU does not own as given is left
    /// alone and reported.
    pub fn release_run(
        &mut self,
        frames: &mut FrameAllocator,
        start: PhysAddr,
        count: u64,
    ) -> Result<(), GpuMemoryError> {
        let start = start.raw();
        let end = start + count * FRAME_SIZE;
        let i = self
            .runs
            .iter()
            .position(|r| r.start == start && r.end == end)
            .ok_or(GpuMemoryError::NotOwned)?;
        self.runs.swap_remove(i);
        // SAFETY: the run was allocated for the GPU by `allocate` (found
        // above, now removed, so no other `GpuMemory` access reaches it),
        // is identity-mapped RAM, and the GPU no longer reaches it.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
        frames
            .free(Frame::containing(start), count)
            .map_err(GpuMemoryError::Frames)
    }

    /// Bytes the GPU owns.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.end - r.start).sum()
    }

    fn check(&self, addr: PhysAddr, len: usize) -> Result<*mut u8, PhysMemError> {
        let start = addr.raw();
        let end = start.checked_add(len as u64).ok_or(PhysMemError { addr })?;
        if self.runs.iter().any(|r| r.start <= start && end <= r.end) {
            Ok(start as *mut u8)
        } else {
            Err(PhysMemError { addr })
        }
    }
}

impl PhysMem for GpuMemory {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let src = self.check(addr, buf.len())?;
        // SAFETY: `check` proved the range lies in frames owned by the GPU
        // memory, identity mapped; `buf` is a distinct Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        let dst = self.check(addr, data.len())?;
        // SAFETY: as in `read`; `&mut self` makes this the only writer.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}
