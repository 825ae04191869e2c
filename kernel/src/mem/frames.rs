//! Physical frame allocator: one bit per 4 KiB frame up to the highest
//! usable address, stored in usable RAM found from the memory map (so the
//! image does not grow with the machine: 64 GiB costs a 2 MiB bitmap).
//! First fit from a moving hint; contiguous, aligned runs for device memory
//! (the software GPU's memory, DMA rings).

use boot::{MemoryKind, MemoryRegion};

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;
/// Memory below 1 MiB stays with the firmware (real-mode structures, EBDA).
const LOW_MEMORY_END: u64 = 1 << 20;
/// The bitmap must be reachable through the early (0..4 GiB) mapping.
const EARLY_MAPPED_END: u64 = 1 << 32;

/// A physical frame, by frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, defmt::Format)]
pub struct Frame(u64);

impl Frame {
    /// First physical byte of the frame.
    pub const fn address(self) -> u64 {
        self.0 * FRAME_SIZE
    }
    /// Frame number.
    pub const fn number(self) -> u64 {
        self.0
    }
    /// The frame holding physical byte `address`.
    pub const fn containing(address: u64) -> Frame {
        Frame(address / FRAME_SIZE)
    }
}

/// Why the allocator could not be built or a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum FrameError {
    /// The memory map lists no usable RAM.
    NoUsableMemory,
    /// No usable region below 4 GiB can hold the bitmap.
    NoRoomForBitmap,
    /// No run of free frames of the requested size and alignment.
    OutOfFrames,
    /// A freed frame was not allocated (a monitor bug).
    DoubleFree,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::NoUsableMemory => "the memory map lists no usable RAM",
            FrameError::NoRoomForBitmap => "no usable region below 4 GiB can hold the frame bitmap",
            FrameError::OutOfFrames => "out of physical frames",
            FrameError::DoubleFree => "frame freed twice or never allocated",
        })
    }
}

/// The allocator. A set bit means "in use or not RAM".
#[derive(Debug)]
pub struct FrameAllocator {
    bitmap: &'static mut [u64],
    frames: u64,
    free: u64,
    usable: u64,
    hint: usize,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl FrameAllocator {
    /// Builds the allocator from the memory map, keeping `reserved` ranges
    /// (the image, the loader's structures) out of it.
    ///
    /// # Safety
    /// The memory map must be true and the low 4 GiB identity mapped; the
    /// usable RAM outside `reserved` must not be in use by anything.
    pub unsafe fn new(map: &[MemoryRegion], reserved: &[(u64, u64)]) -> Result<Self, FrameError> {
        let usable = || map.iter().filter(|r| r.kind == MemoryKind::Usable);
        let top = usable()
            .map(|r| r.end())
            .max()
            .ok_or(FrameError::NoUsableMemory)?;
        let frames = top.div_ceil(FRAME_SIZE);
        let words = frames.div_ceil(64);
        let bytes = (words * 8).next_multiple_of(FRAME_SIZE);
        // First usable place for the bitmap that avoids low memory and `reserved`.
        let place = usable()
            .filter_map(|r| {
                let mut start = r.base.max(LOW_MEMORY_END).next_multiple_of(FRAME_SIZE);
                // Step past reserved ranges inside this region.
                loop {
                    let end = start + bytes;
                    match reserved.iter().find(|&&res| overlaps((start, end), res)) {
                        Some(&(_, res_end)) => start = res_end.next_multiple_of(FRAME_SIZE),
                        None => break,
                    }
                }
                (start + bytes <= r.end() && start + bytes <= EARLY_MAPPED_END).then_some(start)
            })
            .next()
            .ok_or(FrameError::NoRoomForBitmap)?;
        // SAFETY: `place..place + bytes` is usable RAM that nothing uses
        // (caller's contract, and it avoids `reserved`), identity mapped
        // below 4 GiB, 4 KiB aligned, and handed out nowhere else.
        let bitmap = unsafe { core::slice::from_raw_parts_mut(place as *mut u64, words as usize) };
        bitmap.fill(u64::MAX);
        let mut allocator = FrameAllocator {
            bitmap,
            frames,
            free: 0,
            usable: 0,
            hint: 0,
        };
        for r in usable() {
            let first = r.base.max(LOW_MEMORY_END).div_ceil(FRAME_SIZE);
            let last = r.end() / FRAME_SIZE;
            for frame in first..last {
                allocator.set_free(frame, true);
            }
        }
        allocator.usable = allocator.free;
        for &(start, end) in reserved
            .iter()
            .chain(core::iter::once(&(place, place + bytes)))
        {
            for frame in start / FRAME_SIZE..end.div_ceil(FRAME_SIZE) {
                if frame < frames {
                    allocator.set_free(frame, false);
                }
            }
        }
        Ok(allocator)
    }

    fn is_free(&self, frame: u64) -> bool {
        self.bitmap[(frame / 64) as usize] & (1 << (frame % 64)) == 0
    }

    fn set_free(&mut self, frame: u64, free: bool) {
        let word = &mut self.bitmap[(frame / 64) as usize];
        let bit = 1u64 << (frame % 64);
        let was_free = *word & bit == 0;
        if free && !was_free {
            *word &= !bit;
            self.free += 1;
        } else if !free && was_free {
            *word |= bit;
            self.free -= 1;
        }
    }

    /// One free frame (contents undefined).
    pub fn allocate(&mut self) -> Result<Frame, FrameError> {
        let words = self.bitmap.len();
        for i in 0..words {
            let index = (self.hint + i) % words;
            let word = self.bitmap[index];
            if word != u64::MAX {
                let frame = index as u64 * 64 + u64::from((!word).trailing_zeros());
                if frame >= self.frames {
                    continue;
                }
                self.set_free(frame, false);
                self.hint = index;
                return Ok(Frame(frame));
            }
        }
        Err(FrameError::OutOfFrames)
    }

    /// `count` physically contiguous free frames whose first frame number is
    /// a multiple of `align` (in frames, a power of two).
    pub fn allocate_contiguous(&mut self, count: u64, align: u64) -> Result<Frame, FrameError> {
        let align = align.max(1);
        let mut start = 0;
        while start + count <= self.frames {
            match (start..start + count).find(|&f| !self.is_free(f)) {
                Some(used) => start = (used + 1).next_multiple_of(align),
                None => {
                    for f in start..start + count {
                        self.set_free(f, false);
                    }
                    return Ok(Frame(start));
                }
            }
        }
        Err(FrameError::OutOfFrames)
    }

    /// Gives back `count` frames starting at `frame`.
    pub fn free(&mut self, frame: Frame, count: u64) -> Result<(), FrameError> {
        let range = frame.0..frame.0 + count;
        if range.end > self.frames || range.clone().any(|f| self.is_free(f)) {
            return Err(FrameError::DoubleFree);
        }
        for f in range {
            self.set_free(f, true);
        }
        self.hint = (frame.0 / 64) as usize;
        Ok(())
    }

    /// Free frames now.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Usable frames the map offered (before the image and bitmap).
    pub fn usable_frames(&self) -> u64 {
        self.usable
    }

    /// One past the highest usable physical address.
    pub fn top(&self) -> u64 {
        self.frames * FRAME_SIZE
    }
}
