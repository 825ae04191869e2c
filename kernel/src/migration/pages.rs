//! A guest's memory and state as the migration stream sees them: the
//! source's [`GuestPages`] (a `migrate::PageSource`), the destination's
//! [`GuestSink`] (a `migrate::PageSink` that keeps each page's digest as
//! it lands), the fold of those digests both sides report so that xtask
//! can check the destination holds what the source held at the stop
//! ([`Digests`]), and the storage a migration borrows, from frames
//! ([`SourceBuffers`], [`DestBuffers`]).

use gpu::backend::PhysMem;
use gpu::vgpu::FrameRuns;
use guest::abi::RAM_FIRST_PAGE;
use migrate::page::{read_state_chunk, GuestPage, MemoryError, PageBuf, PageSink, PageSource};
use migrate::tracker::Slot;

use crate::gpu_mem::GpuMemory;
use crate::mem::frames::{FrameAllocator, FrameError};
use crate::mem::region::{Region, ZeroValid};
use crate::migration::{frame_address, guest_page};

// SAFETY: `migrate::tracker::Slot` is a struct of a u64, a [u64; 4], a
// [u8; 4] and a u8 (migrate/src/tracker.rs): every bit pattern is a value.
unsafe impl ZeroValid for Slot {}

/// Bytes reserved for a vGPU's device state (12 bytes a mapped GGTT entry:
/// 2 MiB covers every entry of a guest of 170k pages, far more than the
/// largest `guest_mib`).
pub const BLOB_BYTES: usize = 2 << 20;

/// The source guest's pages (its RAM, which is its vGPU's guest memory),
/// and once stopped its device state and its CPU state.
pub struct GuestPages<'a> {
    pub memory: &'a GpuMemory,
    pub map: &'a FrameRuns<4>,
    pub pages: u64,
    pub device: &'a [u8],
    pub cpu: &'a [u8],
}

impl<'a> GuestPages<'a> {
    /// The pages of vGPU `index`'s guest (`pages` of them), with `device`
    /// and `cpu` as its states.
    pub fn of(
        m: &'a crate::vgpus::VgpuManager,
        index: usize,
        pages: u64,
        (device, cpu): (&'a [u8], &'a [u8]),
    ) -> Self {
        GuestPages {
            memory: m.device.memory(),
            map: &m.vgpus[index].memory,
            pages,
            device,
            cpu,
        }
    }
}

impl PageSource for GuestPages<'_> {
    fn page_count(&self) -> usize {
        self.pages as usize
    }
    fn page_at(&self, index: usize) -> GuestPage {
        guest_page(RAM_FIRST_PAGE + index as u64)
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page)?;
        self.memory
            .read(at, out)
            .map_err(|_| MemoryError::NotMapped(page))
    }
    fn device_state_len(&self) -> usize {
        self.device.len()
    }
    fn read_device_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        read_state_chunk(self.device, offset, out)
    }
    fn cpu_state_len(&self) -> usize {
        self.cpu.len()
    }
    fn read_cpu_state(&mut self, offset: usize, out: &mut [u8]) -> Result<(), MemoryError> {
        read_state_chunk(self.cpu, offset, out)
    }
}

/// Folds per-page digests into one value (order matters: page `i`'s digest
/// is folded with `i`), the figure both sides report.
#[derive(Clone, Copy, Debug)]
pub struct Digests;

impl Digests {
    /// The fold of `digests` (page `i` at index `i`).
    pub fn fold(digests: impl Iterator<Item = u64>) -> u64 {
        let mut acc = 0x6a09_e667_f3bc_c908_u64;
        for (i, d) in digests.enumerate() {
            acc = (acc ^ d ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .rotate_left(23)
                .wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        acc
    }

    /// The fold over the pages of a guest's memory as it is now.
    pub fn of_memory(memory: &GpuMemory, map: &FrameRuns<4>, pages: u64) -> u64 {
        let mut buf = [0u8; 4096];
        Self::fold((0..pages).map(|i| {
            let page = guest_page(RAM_FIRST_PAGE + i);
            match frame_address(map, page)
                .ok()
                .map(|at| memory.read(at, &mut buf))
            {
                Some(Ok(())) => migrate::digest::xxh3(&buf),
                // Not the guest's page: a value no page hashes to, so the
                // two sides differ.
                _ => 0,
            }
        }))
    }
}

/// The destination's frames for the incoming guest, its state blobs, and
/// the digest of every page as it landed.
pub struct GuestSink<'a> {
    pub memory: &'a mut GpuMemory,
    pub map: &'a FrameRuns<4>,
    pub digests: &'a mut [u64],
    pub device: &'a mut [u8],
    pub device_len: &'a mut usize,
    pub cpu: &'a mut [u8],
    pub cpu_len: &'a mut usize,
}

fn store_chunk(
    blob: &mut [u8],
    len: &mut usize,
    offset: usize,
    total: usize,
    data: &[u8],
) -> Result<(), MemoryError> {
    let end = offset
        .checked_add(data.len())
        .filter(|end| *end <= total && total <= blob.len());
    let Some(end) = end else {
        return Err(MemoryError::StateOutOfRange {
            offset,
            len: data.len(),
        });
    };
    blob[offset..end].copy_from_slice(data);
    *len = total;
    Ok(())
}

impl PageSink for GuestSink<'_> {
    fn write_page(&mut self, page: GuestPage, data: &PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page).map_err(|_| MemoryError::Refused(page))?;
        self.memory
            .write(at, data)
            .map_err(|_| MemoryError::Refused(page))?;
        let index = page.get().wrapping_sub(RAM_FIRST_PAGE) as usize;
        if let Some(d) = self.digests.get_mut(index) {
            *d = migrate::digest::xxh3(data);
        }
        Ok(())
    }
    fn read_page(&mut self, page: GuestPage, out: &mut PageBuf) -> Result<(), MemoryError> {
        let at = frame_address(self.map, page)?;
        self.memory
            .read(at, out)
            .map_err(|_| MemoryError::NotMapped(page))
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        store_chunk(self.device, self.device_len, offset, total, data)
    }
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), MemoryError> {
        store_chunk(self.cpu, self.cpu_len, offset, total, data)
    }
}

/// What a source borrows for one migration of a guest of `pages` pages:
/// the dirty table (a power of two, at least twice the pages), a delta
/// cache of an eighth of the pages, and the device-state blob. Frames,
/// given back by [`SourceBuffers::free`].
pub struct SourceBuffers {
    slots: Region,
    cache: Region,
    owners: Region,
    blob: Region,
    n_slots: usize,
    n_cache: usize,
}

/// The parts of [`SourceBuffers`], borrowed.
pub struct SourceParts<'a> {
    pub slots: &'a mut [Slot],
    pub cache_pages: &'a mut [PageBuf],
    pub cache_owners: &'a mut [u64],
    pub blob: &'a mut [u8],
}

impl SourceBuffers {
    /// Storage for a guest of `pages` pages.
    pub fn allocate(frames: &mut FrameAllocator, pages: u64) -> Result<Self, FrameError> {
        let n_slots = (pages as usize * 2).next_power_of_two();
        let n_cache = (pages as usize / 8).max(1);
        let slots = Region::allocate(frames, n_slots * core::mem::size_of::<Slot>())?;
        let cache = Region::allocate(frames, n_cache * 4096)?;
        let owners = Region::allocate(frames, n_cache * 8)?;
        let blob = Region::allocate(frames, BLOB_BYTES)?;
        Ok(SourceBuffers {
            slots,
            cache,
            owners,
            blob,
            n_slots,
            n_cache,
        })
    }

    /// The storage, for one migration.
    pub fn parts(&mut self) -> Option<SourceParts<'_>> {
        Some(SourceParts {
            slots: self.slots.slice_mut(self.n_slots)?,
            cache_pages: self.cache.slice_mut(self.n_cache)?,
            cache_owners: self.owners.slice_mut(self.n_cache)?,
            blob: self.blob.slice_mut(BLOB_BYTES)?,
        })
    }

    /// Gives the frames back.
    pub fn free(self, frames: &mut FrameAllocator) {
        for r in [self.slots, self.cache, self.owners, self.blob] {
            r.free(frames);
        }
    }
}

/// What a destination borrows for one incoming guest of `pages` pages:
/// the device-state blob and the page digests.
pub struct DestBuffers {
    digests: Region,
    blob: Region,
    pages: usize,
}

impl DestBuffers {
    /// Storage for a guest of `pages` pages.
    pub fn allocate(frames: &mut FrameAllocator, pages: u64) -> Result<Self, FrameError> {
        Ok(DestBuffers {
            digests: Region::allocate(frames, pages as usize * 8)?,
            blob: Region::allocate(frames, BLOB_BYTES)?,
            pages: pages as usize,
        })
    }
    /// The page digests and the device-state blob.
    pub fn parts(&mut self) -> Option<(&mut [u64], &mut [u8])> {
        Some((
            self.digests.slice_mut(self.pages)?,
            self.blob.slice_mut(BLOB_BYTES)?,
        ))
    }
    /// Gives the frames back.
    pub fn free(self, frames: &mut FrameAllocator) {
        self.digests.free(frames);
        self.blob.free(frames);
    }
}
