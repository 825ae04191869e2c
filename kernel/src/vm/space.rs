//! A guest's address space: page tables of its own whose one user slot
//! (PML4 entry [`USER_SLOT`], `guest::abi::USER_BASE`) maps its RAM with
//! 4 KiB pages, and whose every other entry is the monitor's, made
//! supervisor-only.
//!
//! The monitor's entries are copied, not shared by reference at the top:
//! a PML4 entry without the user bit makes its whole subtree unreachable
//! from ring 3 whatever the lower levels say, so the copy strips it (the
//! monitor never sets it, but this is the one place that decides).
//! [`UserSpace::sync_kernel`] copies them again before the guest runs, so
//! a top-level entry the monitor added after the guest was made (a device
//! mapped late) is there too.
//!
//! CPU dirty tracking: RAM is mapped with 4 KiB pages and the dirty bit
//! clear, so the CPU sets a page's dirty bit at the guest's first write to
//! it; [`UserSpace::take_dirty`] reports and clears them. A clear must be
//! followed by a TLB flush for this address space, or a write through a
//! TLB entry that still says "dirty" would not set the bit again; the
//! entries are not global, so any CR3 load flushes them. The runtime loads
//! the guest's CR3 when it runs the guest and the monitor's when it stops,
//! so a clear made while the guest does not run needs nothing more; one
//! made while its CR3 is loaded reloads CR3.
//!
//! The aperture window (`guest::abi::APERTURE_VA`) is mapped through the
//! same tables, but its leaves change while the guest runs: the guest
//! rewrites a GGTT entry of its aperture through BAR0 and the monitor
//! follows ([`UserSpace::set_leaf`]). Its tables are made when the guest
//! is ([`UserSpace::reserve`]), so that following a GGTT write (in the
//! middle of a BAR0 emulation) never needs a frame; a leaf replaced while
//! the guest's CR3 is loaded is flushed with `invlpg`. Leaves are
//! write-back (PAT 0): see `vm::guest`'s aperture docs for why.

use alloc::vec::Vec;
use core::fmt;

use guest::abi::{PAGE, USER_BASE, USER_SLOT_SIZE};
use x86_64::registers::control::Cr3;

use crate::mem::frames::{Frame, FrameAllocator};

/// The PML4 entry of the user slot.
pub const USER_SLOT: usize = (USER_BASE >> 39) as usize & 511;

const P: u64 = 1 << 0;
const W: u64 = 1 << 1;
const U: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const HUGE: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// What the guest may do with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Read only (the boot block, read-only data).
    Read,
    /// Read and write, never execute (RAM, stack, data).
    ReadWrite,
    /// Read and execute (code).
    ReadExecute,
}

impl Perm {
    fn bits(self) -> u64 {
        match self {
            Perm::Read => P | U | NX,
            Perm::ReadWrite => P | U | W | NX,
            Perm::ReadExecute => P | U,
        }
    }
}

/// Why a mapping could not be made (each a monitor bug or a shortage,
/// never the guest's doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceError {
    /// No frame for a page table.
    OutOfFrames,
    /// The page is mapped already.
    AlreadyMapped {
        /// Its address.
        va: u64,
    },
    /// The address is outside the user slot or not page aligned.
    NotUser {
        /// The address.
        va: u64,
    },
    /// The monitor's own tables use the user slot.
    SlotInUse,
    /// No page table was reserved for the address (a monitor bug).
    NotReserved {
        /// The address.
        va: u64,
    },
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpaceError::OutOfFrames => f.write_str("out of frames for page tables"),
            SpaceError::AlreadyMapped { va } => write!(f, "{va:#x} is mapped already"),
            SpaceError::NotUser { va } => {
                write!(f, "{va:#x} is not a page of the guests' address slot")
            }
            SpaceError::NotReserved { va } => {
                write!(f, "no page table was reserved for {va:#x}")
            }
            SpaceError::SlotInUse => write!(
                f,
                "the monitor's page tables use PML4 entry {USER_SLOT}, the guests' slot"
            ),
        }
    }
}

/// One guest's page tables.
#[derive(Debug)]
pub struct UserSpace {
    root: u64,
    monitor_root: u64,
    /// Every table frame, the root first (freed together).
    tables: Vec<u64>,
}

/// A page table in the monitor's identity map.
///
/// # Safety
/// `phys` must be a page-table frame of a [`UserSpace`] (or the monitor's
/// PML4), and no other reference to it may be live.
unsafe fn table<'a>(phys: u64) -> &'a mut [u64; 512] {
    // SAFETY: the caller's contract; frames are identity-mapped RAM.
    unsafe { &mut *(phys as *mut [u64; 512]) }
}

impl UserSpace {
    /// Empty user slot, the monitor's entries (from the PML4 at
    /// `monitor_root`) supervisor-only.
    pub fn new(frames: &mut FrameAllocator, monitor_root: u64) -> Result<Self, SpaceError> {
        // SAFETY: the monitor's PML4, read only here.
        if unsafe { table(monitor_root) }[USER_SLOT] & P != 0 {
            return Err(SpaceError::SlotInUse);
        }
        let root = zeroed_table(frames)?;
        let mut space = UserSpace {
            root,
            monitor_root,
            tables: alloc::vec![root],
        };
        space.sync_kernel();
        Ok(space)
    }

    /// Physical address of the PML4 (for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Copies the monitor's PML4 entries (all but the user slot) without
    /// the user bit.
    pub fn sync_kernel(&mut self) {
        // SAFETY: the monitor's PML4 (read) and this space's root
        // (written), distinct frames; nothing else refers to the root now.
        let (monitor, root) = unsafe { (table(self.monitor_root), table(self.root)) };
        for (i, entry) in root.iter_mut().enumerate() {
            if i != USER_SLOT {
                *entry = monitor[i] & !U;
            }
        }
    }

    /// Maps the page at `va` (in the user slot) to the frame at `phys`.
    pub fn map(
        &mut self,
        frames: &mut FrameAllocator,
        va: u64,
        phys: u64,
        perm: Perm,
    ) -> Result<(), SpaceError> {
        if !in_slot(va) || !va.is_multiple_of(PAGE) || !phys.is_multiple_of(PAGE) {
            return Err(SpaceError::NotUser { va });
        }
        let at = self.table_of(Some(frames), va)?;
        // SAFETY: a page table of this space, the only reference to it.
        let leaf = &mut unsafe { table(at) }[index_of(va, 0)];
        if *leaf & P != 0 {
            return Err(SpaceError::AlreadyMapped { va });
        }
        *leaf = phys | perm.bits();
        Ok(())
    }

    /// Makes the page tables for the `pages` pages from `va` (in the user
    /// slot, page aligned), with nothing mapped, so that
    /// [`UserSpace::set_leaf`] there needs no frames.
    pub fn reserve(
        &mut self,
        frames: &mut FrameAllocator,
        va: u64,
        pages: u64,
    ) -> Result<(), SpaceError> {
        let end = pages
            .checked_mul(PAGE)
            .and_then(|bytes| va.checked_add(bytes))
            .ok_or(SpaceError::NotUser { va })?;
        if !va.is_multiple_of(PAGE) || !in_slot(va) || (pages > 0 && !in_slot(end - 1)) {
            return Err(SpaceError::NotUser { va });
        }
        // One walk per page table (each covers 2 MiB).
        let mut at = va;
        while at < end {
            self.table_of(Some(frames), at)?;
            at = (at | ((PAGE << 9) - 1)) + 1;
        }
        Ok(())
    }

    /// The page table (level 0) that holds `va`'s leaf: made on the way
    /// if `frames` is given, else `None` when a level is missing.
    fn table_of(
        &mut self,
        mut frames: Option<&mut FrameAllocator>,
        va: u64,
    ) -> Result<u64, SpaceError> {
        let mut at = self.root;
        for level in [3u32, 2, 1] {
            let index = index_of(va, level);
            // SAFETY: `at` is a table of this space (the root or one it
            // allocated), and this is the only reference to it.
            let entry = &mut unsafe { table(at) }[index];
            if *entry & P == 0 {
                let Some(frames) = frames.as_deref_mut() else {
                    return Err(SpaceError::NotReserved { va });
                };
                let fresh = zeroed_table(frames)?;
                self.tables.push(fresh);
                *entry = fresh | P | W | U;
            }
            at = *entry & ADDRESS;
        }
        Ok(at)
    }

    /// Sets the leaf of `va` (in a range [`UserSpace::reserve`]d) to map
    /// the frame at `phys` with `perm`, or to nothing. Returns what it
    /// mapped before, if anything: the frame and whether the guest wrote
    /// it through this mapping since its dirty bit was last cleared (the
    /// caller keeps that evidence, which the new leaf no longer holds).
    /// The TLB entry is flushed if this space is loaded.
    pub fn set_leaf(
        &mut self,
        va: u64,
        to: Option<(u64, Perm)>,
    ) -> Result<Option<(u64, bool)>, SpaceError> {
        if !in_slot(va) || !va.is_multiple_of(PAGE) {
            return Err(SpaceError::NotUser { va });
        }
        if let Some((phys, _)) = to {
            if !phys.is_multiple_of(PAGE) || phys & !ADDRESS != 0 {
                return Err(SpaceError::NotUser { va });
            }
        }
        let pt = self.table_of(None, va)?;
        // SAFETY: a page table of this space, the only reference to it;
        // the guest does not run while the monitor does (one CPU).
        let leaf = &mut unsafe { table(pt) }[index_of(va, 0)];
        let old = *leaf;
        let new = to.map_or(0, |(phys, perm)| phys | perm.bits());
        if old == new {
            // Unchanged (and so not dirty: a new leaf has D clear).
            return Ok((old & P != 0).then_some((old & ADDRESS, false)));
        }
        *leaf = new;
        if old & P != 0 && Cr3::read_raw().0.start_address().as_u64() == self.root {
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
        }
        Ok((old & P != 0).then_some((old & ADDRESS, old & D != 0)))
    }

    /// The leaf entry of `va`, if every level maps it for ring 3.
    fn leaf(&self, va: u64) -> Option<u64> {
        if !in_slot(va) {
            return None;
        }
        let mut at = self.root;
        for level in [3u32, 2, 1, 0] {
            // SAFETY: tables of this space, read only.
            let entry = unsafe { table(at) }[index_of(va, level)];
            if entry & (P | U) != P | U || (level > 0 && entry & HUGE != 0) {
                return None;
            }
            if level == 0 {
                return Some(entry);
            }
            at = entry & ADDRESS;
        }
        None
    }

    /// The physical address behind `va` as ring 3 sees it: mapped for the
    /// guest, and writable if `write`.
    pub fn translate(&self, va: u64, write: bool) -> Option<u64> {
        let leaf = self.leaf(va)?;
        if write && leaf & W == 0 {
            return None;
        }
        Some((leaf & ADDRESS) | (va % PAGE))
    }

    /// Whether the guest may execute the page at `va`.
    pub fn executable(&self, va: u64) -> bool {
        self.leaf(va).is_some_and(|e| e & NX == 0)
    }

    /// Copies `out.len()` bytes the guest can read from `va`; false (and
    /// nothing meaningful in `out`) if any of them it cannot.
    pub fn read_user(&self, va: u64, out: &mut [u8]) -> bool {
        let mut done = 0;
        while done < out.len() {
            let Some(at) = va.checked_add(done as u64) else {
                return false;
            };
            let Some(phys) = self.translate(at, false) else {
                return false;
            };
            let n = (PAGE - at % PAGE).min((out.len() - done) as u64) as usize;
            // SAFETY: `phys..phys + n` lies in one frame the guest maps
            // (its RAM, identity-mapped for the monitor); `out` is ours.
            unsafe {
                core::ptr::copy_nonoverlapping(phys as *const u8, out[done..].as_mut_ptr(), n)
            };
            done += n;
        }
        true
    }

    /// Calls `f` with the address of every page the guest wrote since the
    /// last call (its PTE dirty bit) and the frame it maps, clears those
    /// bits, and flushes the TLB if this space is loaded (see the module
    /// docs). Returns how many.
    pub fn take_dirty(&mut self, mut f: impl FnMut(u64, u64)) -> u64 {
        let mut count = 0;
        // SAFETY: the root of this space, read only here.
        let slot = unsafe { table(self.root) }[USER_SLOT];
        if slot & P == 0 {
            return 0;
        }
        let base = USER_BASE;
        // SAFETY: a table of this space reached from its root; the guest
        // is not running (one CPU) and no other reference to it is live.
        // The same holds for the tables below.
        let pdpt = unsafe { table(slot & ADDRESS) };
        for (i, &pdpte) in pdpt.iter().enumerate() {
            if pdpte & P == 0 {
                continue;
            }
            // SAFETY: as above.
            let pd = unsafe { table(pdpte & ADDRESS) };
            for (j, &pde) in pd.iter().enumerate() {
                if pde & P == 0 {
                    continue;
                }
                // SAFETY: as above.
                let pt = unsafe { table(pde & ADDRESS) };
                for (k, pte) in pt.iter_mut().enumerate() {
                    if *pte & (P | D) == P | D {
                        *pte &= !D;
                        count += 1;
                        let va =
                            base + ((i as u64) << 30) + ((j as u64) << 21) + ((k as u64) << 12);
                        f(va, *pte & ADDRESS);
                    }
                }
            }
        }
        if count > 0 && Cr3::read_raw().0.start_address().as_u64() == self.root {
            let (frame, flags) = Cr3::read();
            // SAFETY: reloading the current CR3 only flushes the TLB.
            unsafe { Cr3::write(frame, flags) };
        }
        count
    }

    /// The leaf's accessed and dirty bits of `va` (for tests).
    pub fn accessed_dirty(&self, va: u64) -> Option<(bool, bool)> {
        self.leaf(va).map(|e| (e & A != 0, e & D != 0))
    }

    /// Gives the table frames back. The RAM behind the mappings is the
    /// vGPU's and stays.
    pub fn free(self, frames: &mut FrameAllocator) {
        for phys in self.tables {
            if let Err(e) = frames.free(Frame::containing(phys), 1) {
                defmt::warn!("guest page table: {}", defmt::Display2Format(&e));
            }
        }
    }
}

fn in_slot(va: u64) -> bool {
    (USER_BASE..USER_BASE + USER_SLOT_SIZE).contains(&va)
}

fn index_of(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

fn zeroed_table(frames: &mut FrameAllocator) -> Result<u64, SpaceError> {
    let frame = frames.allocate().map_err(|_| SpaceError::OutOfFrames)?;
    let phys = frame.address();
    // SAFETY: a fresh frame, identity-mapped RAM owned by this space now.
    unsafe { core::ptr::write_bytes(phys as *mut u8, 0, PAGE as usize) };
    Ok(phys)
}
