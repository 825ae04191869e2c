//! The monitor's own 4-level page tables, replacing the boot stub's.
//!
//! Identity mapping (virtual = physical) keeps the monitor simple: RAM from
//! the memory map is mapped write-back and no-execute with 2 MiB pages where
//! it can be; the image is mapped with 4 KiB pages so that the page below
//! the boot stack is left unmapped as a guard (an overflow faults instead of
//! corrupting the page tables below it). Device memory (MMIO) is mapped only
//! when a driver asks, uncached.

use boot::{MemoryKind, MemoryRegion};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable,
    PageTableFlags as Flags, PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{FrameAllocator, FRAME_SIZE};

const MIB2: u64 = 2 << 20;

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum MapError {
    /// No frame for a page table.
    OutOfFrames,
    /// The range overlaps a mapping with other attributes (a monitor bug).
    Conflict {
        /// First conflicting address.
        address: u64,
    },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => f.write_str("out of frames for page tables"),
            MapError::Conflict { address } => {
                write!(f, "address {address:#x} is already mapped differently")
            }
        }
    }
}

impl<S: x86_64::structures::paging::PageSize> From<MapToError<S>> for MapError {
    fn from(e: MapToError<S>) -> Self {
        match e {
            MapToError::FrameAllocationFailed => MapError::OutOfFrames,
            // Identity mapping: the page address is the physical address.
            MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
                MapError::Conflict { address: 0 }
            }
        }
    }
}

/// Adapts our allocator to the `x86_64` crate's page-table builder. Page
/// tables must be reachable through the identity map, which they are:
/// everything the allocator hands out is RAM we map.
struct TableFrames<'a>(&'a mut FrameAllocator);

// SAFETY: every frame returned is free RAM owned by the caller from now on,
// and is zeroed before the mapper uses it as a table.
unsafe impl X86FrameAllocator<Size4KiB> for TableFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.0.allocate().ok()?;
        // SAFETY: the frame is fresh RAM, identity mapped, owned by us.
        unsafe { core::ptr::write_bytes(frame.address() as *mut u8, 0, FRAME_SIZE as usize) };
        Some(PhysFrame::containing_address(PhysAddr::new(
            frame.address(),
        )))
    }
}

/// The monitor's address space.
#[derive(Debug)]
pub struct AddressSpace {
    tables: OffsetPageTable<'static>,
    root: PhysFrame,
}

fn ram_flags() -> Flags {
    Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE
}

fn mmio_flags() -> Flags {
    Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::NO_CACHE | Flags::WRITE_THROUGH
}

impl AddressSpace {
    /// Builds the monitor's tables and switches to them.
    ///
    /// # Safety
    /// The boot stub's identity map of 0..4 GiB must be active, `image` and
    /// `guard` must be the image and the stack guard page, and the memory map
    /// must be true.
    pub unsafe fn build_and_load(
        frames: &mut FrameAllocator,
        map: &[MemoryRegion],
        image: (u64, u64),
        guard: u64,
    ) -> Result<Self, MapError> {
        let root_frame = frames.allocate().map_err(|_| MapError::OutOfFrames)?;
        let root_ptr = root_frame.address() as *mut PageTable;
        // SAFETY: a fresh, identity-mapped frame becomes the new PML4.
        let root = unsafe {
            root_ptr.write(PageTable::new());
            &mut *root_ptr
        };
        // SAFETY: physical memory is identity mapped (offset 0) in both the
        // boot tables and the tables being built.
        let tables = unsafe { OffsetPageTable::new(root, VirtAddr::new(0)) };
        let mut space = AddressSpace {
            tables,
            root: PhysFrame::containing_address(PhysAddr::new(root_frame.address())),
        };

        // The image, page by page, executable, without the guard page.
        let image_start = image.0 & !(FRAME_SIZE - 1);
        let mut addr = image_start;
        while addr < image.1 {
            if addr != guard {
                space.map_4k(frames, addr, Flags::PRESENT | Flags::WRITABLE)?;
            }
            addr += FRAME_SIZE;
        }
        let image_span = (image_start, image.1);
        // Low memory (BIOS data, EBDA, ROM shadow: read by the ACPI scan).
        space.map_range(frames, 0, 1 << 20, ram_flags(), image_span)?;
        for region in map {
            let cacheable = matches!(
                region.kind,
                MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
            );
            if cacheable {
                space.map_range(frames, region.base, region.end(), ram_flags(), image_span)?;
            }
        }
        // SAFETY: the new tables map the image (code, data, the running stack
        // except its guard page), all RAM, and the page tables themselves.
        unsafe { Cr3::write(space.root, Cr3Flags::empty()) };
        Ok(space)
    }

    fn map_4k(
        &mut self,
        frames: &mut FrameAllocator,
        addr: u64,
        flags: Flags,
    ) -> Result<(), MapError> {
        let page: Page<Size4KiB> = Page::containing_address(VirtAddr::new(addr));
        if let TranslateResult::Mapped { .. } = self.tables.translate(page.start_address()) {
            return Ok(());
        }
        let frame = PhysFrame::containing_address(PhysAddr::new(addr));
        // SAFETY: identity mapping of memory the caller says is RAM or
        // device memory; no existing mapping aliases it with other types.
        let flush = unsafe {
            self.tables
                .map_to(page, frame, flags, &mut TableFrames(frames))
        }
        .map_err(|e| match MapError::from(e) {
            MapError::Conflict { .. } => MapError::Conflict { address: addr },
            other => other,
        })?;
        flush.flush();
        Ok(())
    }

    fn map_2m(
        &mut self,
        frames: &mut FrameAllocator,
        addr: u64,
        flags: Flags,
    ) -> Result<(), MapError> {
        let page: Page<Size2MiB> = Page::containing_address(VirtAddr::new(addr));
        if let TranslateResult::Mapped { .. } = self.tables.translate(page.start_address()) {
            return Ok(());
        }
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(addr));
        // SAFETY: as for `map_4k`.
        let flush = unsafe {
            self.tables.map_to(
                page,
                frame,
                flags | Flags::HUGE_PAGE,
                &mut TableFrames(frames),
            )
        }
        .map_err(|e| match MapError::from(e) {
            MapError::Conflict { .. } => MapError::Conflict { address: addr },
            other => other,
        })?;
        flush.flush();
        Ok(())
    }

    /// Identity-maps `[start, end)` with `flags`, 2 MiB pages where aligned
    /// and clear of `avoid` (the image, already mapped with 4 KiB pages and
    /// its guard hole, which must stay as they are).
    fn map_range(
        &mut self,
        frames: &mut FrameAllocator,
        start: u64,
        end: u64,
        flags: Flags,
        avoid: (u64, u64),
    ) -> Result<(), MapError> {
        let mut addr = start & !(FRAME_SIZE - 1);
        while addr < end {
            let huge_fits = addr.is_multiple_of(MIB2)
                && addr + MIB2 <= end
                && !(addr < avoid.1 && avoid.0 < addr + MIB2);
            if huge_fits {
                self.map_2m(frames, addr, flags)?;
                addr += MIB2;
            } else {
                if !(avoid.0..avoid.1).contains(&addr) {
                    self.map_4k(frames, addr, flags)?;
                }
                addr += FRAME_SIZE;
            }
        }
        Ok(())
    }

    /// Maps device memory `[phys, phys + len)` uncached and returns its
    /// (identity) virtual address.
    pub fn map_mmio(
        &mut self,
        frames: &mut FrameAllocator,
        phys: u64,
        len: u64,
    ) -> Result<VirtAddr, MapError> {
        let start = phys & !(FRAME_SIZE - 1);
        self.map_range(frames, start, phys + len, mmio_flags(), (0, 0))?;
        Ok(VirtAddr::new(phys))
    }

    /// Physical address of the top-level table (PML4): the guests' address
    /// spaces share its entries (`vm::space`).
    pub fn root(&self) -> u64 {
        self.root.start_address().as_u64()
    }

    /// Whether `addr` is mapped, and with which flags.
    pub fn flags_of(&self, addr: u64) -> Option<Flags> {
        match self.tables.translate(VirtAddr::new(addr)) {
            TranslateResult::Mapped { flags, .. } => Some(flags),
            _ => None,
        }
    }
}
