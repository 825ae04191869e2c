//! [`RingPlatform`]: `guest::Platform` for a deprivileged guest. BAR0
//! accesses are volatile loads and stores at `BAR0_VA + offset`, which
//! fault into the monitor (trap-and-emulate); RAM accesses are copies
//! to and from the guest's own pages; aperture writes are plain stores
//! into the aperture window at `APERTURE_VA`, which the monitor maps
//! through the guest's GGTT entries; `pause` is the `wait` system call.

use core::fmt;

use guest::abi::{aperture_va, ram_va, APERTURE_MAX, BAR0_SIZE, BAR0_VA, PAGE};
use guest::Platform;

use crate::sys;

/// Why an access did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The offset is beyond the virtual BAR0 (the guest's own bug).
    OutsideBar {
        /// The offset.
        offset: u32,
    },
    /// The page is not part of the RAM this platform was given.
    NotRam {
        /// Guest page number.
        page: u64,
    },
    /// The range is not inside one page of the aperture window.
    NotAperture {
        /// Aperture page index.
        index: u64,
    },
    /// The vGPU stopped (the monitor said so on `wait`).
    VgpuFailed,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::OutsideBar { offset } => write!(f, "BAR0+{offset:#x} is outside BAR0"),
            RingError::NotRam { page } => write!(f, "page {page:#x} is not the driver's RAM"),
            RingError::NotAperture { index } => {
                write!(
                    f,
                    "aperture page {index} is not one page of the aperture window"
                )
            }
            RingError::VgpuFailed => f.write_str("the vGPU stopped"),
        }
    }
}

/// The guest's machine: its virtual BAR0 and the RAM pages
/// `[first, first + pages)` (the driver's region of `guest::abi`).
#[derive(Debug)]
pub struct RingPlatform {
    first: u64,
    pages: u64,
}

/// Tells the compiler that memory may have changed: the GPU writes guest
/// RAM while the guest runs (its queued work runs whenever the monitor's
/// scheduler polls: at a BAR0 access, a system call, between slices),
/// which plain loads after a BAR0 access must see.
fn device_barrier() {
    // SAFETY: an empty asm block; its default memory clobber is the point.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

impl RingPlatform {
    /// The platform over RAM pages `[first, first + pages)`.
    pub const fn new(first: u64, pages: u64) -> Self {
        RingPlatform { first, pages }
    }

    fn bar(offset: u32, width: u64) -> Result<u64, RingError> {
        if u64::from(offset) + width > BAR0_SIZE {
            return Err(RingError::OutsideBar { offset });
        }
        Ok(BAR0_VA + u64::from(offset))
    }

    fn ram(&self, page: u64, offset: usize, len: usize) -> Result<u64, RingError> {
        let inside = page >= self.first && page - self.first < self.pages;
        if !inside || offset.checked_add(len).is_none_or(|end| end as u64 > PAGE) {
            return Err(RingError::NotRam { page });
        }
        Ok(ram_va(page) + offset as u64)
    }
}

impl Platform for RingPlatform {
    type Error = RingError;

    fn mmio_read32(&mut self, offset: u32) -> Result<u32, RingError> {
        let at = Self::bar(offset, 4)?;
        // SAFETY: BAR0_VA is never mapped; the load faults and the monitor
        // emulates it (it never touches memory of this program).
        let value = unsafe { core::ptr::read_volatile(at as *const u32) };
        device_barrier();
        Ok(value)
    }

    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), RingError> {
        let at = Self::bar(offset, 4)?;
        // SAFETY: as in `mmio_read32`.
        unsafe { core::ptr::write_volatile(at as *mut u32, value) };
        device_barrier();
        Ok(())
    }

    fn mmio_write64(&mut self, offset: u32, value: u64) -> Result<(), RingError> {
        let at = Self::bar(offset, 8)?;
        // SAFETY: as in `mmio_read32`.
        unsafe { core::ptr::write_volatile(at as *mut u64, value) };
        device_barrier();
        Ok(())
    }

    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), RingError> {
        let at = self.ram(page, offset, out.len())?;
        // SAFETY: the range lies in one page of the driver's RAM (checked),
        // which the monitor maps read/write for this guest and which no
        // Rust reference of this program covers.
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), RingError> {
        let at = self.ram(page, offset, data.len())?;
        // SAFETY: as in `ram_read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut u8, data.len()) };
        Ok(())
    }

    fn aperture_write(&mut self, index: u64, offset: usize, data: &[u8]) -> Result<(), RingError> {
        if index >= APERTURE_MAX / PAGE
            || offset
                .checked_add(data.len())
                .is_none_or(|end| end as u64 > PAGE)
        {
            return Err(RingError::NotAperture { index });
        }
        let at = aperture_va(index) + offset as u64;
        // SAFETY: the range lies in one page of the aperture window, which
        // no Rust reference of this program covers; the monitor maps it to
        // the RAM page this guest's GGTT entry names (a page of its own
        // RAM), or leaves it unmapped, when the store faults and the
        // monitor kills this guest. The barrier below keeps the stores
        // before whatever BAR0 access comes next (a blit reading them).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut u8, data.len()) };
        device_barrier();
        Ok(())
    }

    fn pause(&mut self) -> Result<(), RingError> {
        if sys::wait() {
            Ok(())
        } else {
            Err(RingError::VgpuFailed)
        }
    }
}

impl guest::attack::Arena for RingPlatform {
    fn declare(&mut self, class: guest::attack::Class) -> Result<(), RingError> {
        sys::attempt(class);
        Ok(())
    }

    fn settle(&mut self) -> Result<bool, RingError> {
        Ok(!sys::wait())
    }

    fn mmio_read64(&mut self, offset: u32) -> Result<u64, RingError> {
        mmio_read64(offset)
    }

    fn mmio_write64_unchecked(&mut self, offset: u32, value: u64) -> Result<(), RingError> {
        let at = BAR0_VA.wrapping_add(u64::from(offset));
        // SAFETY: deliberately unchecked (the hostile guest's access past
        // the end of BAR0): the address is unmapped in this guest's slot,
        // so the store faults into the monitor, which refuses or kills; it
        // touches no memory of this program.
        unsafe { core::ptr::write_volatile(at as *mut u64, value) };
        device_barrier();
        Ok(())
    }
}

/// A 64-bit BAR0 read at `offset` (GGTT entries), for probes: the
/// `Platform` has no 64-bit read.
pub fn mmio_read64(offset: u32) -> Result<u64, RingError> {
    let at = RingPlatform::bar(offset, 8)?;
    // SAFETY: as in `RingPlatform::mmio_read32`.
    let value = unsafe { core::ptr::read_volatile(at as *const u64) };
    device_barrier();
    Ok(value)
}
