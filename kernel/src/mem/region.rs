//! Zeroed, physically contiguous runs of the monitor's frames, for what
//! is too big for the heap or a static: NIC rings and packet buffers (see
//! `net::dma`), a migration's dirty table, delta cache and state blobs.
//! The monitor identity-maps RAM (`mem::paging`), so the address the CPU
//! uses and the physical (bus) address are the same number.

use crate::mem::frames::{FrameAllocator, FrameError};
use crate::mem::FRAME_SIZE;

/// A run of frames owned by one user until it gives it back with
/// [`Region::free`].
#[derive(Debug)]
pub struct Region {
    phys: u64,
    frames: u64,
}

impl Region {
    /// At least `bytes` of zeroed, page-aligned, contiguous memory.
    pub fn allocate(frames: &mut FrameAllocator, bytes: usize) -> Result<Self, FrameError> {
        let count = (bytes as u64).div_ceil(FRAME_SIZE).max(1);
        let first = frames.allocate_contiguous(count, 1)?;
        let region = Region {
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

    /// The region as `len` values of `T`, all zero at first (`T` is valid
    /// as all-zero bytes: [`ZeroValid`]). `None` if they do not fit.
    pub fn slice_mut<T: ZeroValid>(&mut self, len: usize) -> Option<&mut [T]> {
        let bytes = len.checked_mul(core::mem::size_of::<T>())?;
        if bytes > self.len() || !self.phys.is_multiple_of(core::mem::align_of::<T>() as u64) {
            return None;
        }
        // SAFETY: the region owns `self.len()` bytes of identity-mapped RAM
        // from `phys`, which nothing else refers to; `&mut self` makes this
        // the only borrow; `phys` is aligned for `T` (checked) and `bytes`
        // fit (checked); every byte was initialised (zeroed at allocation,
        // and later only written through such slices of `ZeroValid` types),
        // and a `ZeroValid` type is valid for any bytes written that way.
        Some(unsafe { core::slice::from_raw_parts_mut(self.phys as *mut T, len) })
    }

    /// Gives the frames back (only once nothing, no device either, uses
    /// them any more).
    pub fn free(self, frames: &mut FrameAllocator) {
        let first = crate::mem::frames::Frame::containing(self.phys);
        if let Err(e) = frames.free(first, self.frames) {
            defmt::warn!("returning a region's frames: {}", defmt::Display2Format(&e));
        }
    }
}

/// Types for which all-zero bytes are a valid value and that have no
/// invalid bit patterns reachable by writes through a `&mut [Self]`
/// (plain integers and arrays of them, and structs of those).
///
/// # Safety
/// Implement only for types whose every field is an integer, a byte array
/// or another `ZeroValid` type: no references, no `bool`, no enums.
pub unsafe trait ZeroValid: Sized {}

// SAFETY: integers and byte arrays: every bit pattern is a value.
unsafe impl ZeroValid for u8 {}
// SAFETY: as above.
unsafe impl ZeroValid for u64 {}
// SAFETY: as above.
unsafe impl ZeroValid for [u8; 4096] {}
