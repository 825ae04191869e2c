//! The Gen9 per-process GTT (PPGTT) in its 4-level, 48-bit form (DESIGN.md
//! "Hardware and emulation": execlists with a 4-level PPGTT), and the shadow
//! PPGTT the monitor builds from a guest's ([`shadow`]).
//!
//! Layout (PRM Vol 5 "Memory Views", "Per-Process GTT, 48-bit"; i915
//! `gen8_pte_encode` / `gen8_pde_encode`, GVT-g `gtt.c`): four levels of
//! 4 KiB tables of 512 little-endian 64-bit entries. A 48-bit address
//! indexes the PML4 with bits 47:39, the page-directory-pointer table (PDP)
//! with 38:30, the page directory (PD) with 29:21 and the page table (PT)
//! with 20:12; bits 11:0 are the offset in the 4 KiB page.
//!
//! Every entry: bit 0 present, bit 1 writable, bits 3/4 PWT/PCD (with bit 7
//! of a PTE: the private-PAT index, i915's `PPAT_*`), address bits 45:12
//! (GVT-g's `GTT_HAW` of 46 bits). Bit 7 of a PDP entry maps a 1 GiB page
//! (`GEN8_PDPE_PS_1G`, address bits 45:30) and of a PD entry a 2 MiB page
//! (`GEN8_PDE_PS_2M`, bits 45:21); a PML4 entry has no page-size bit. Bit 11
//! of a PD entry (`GEN8_PDE_IPS_64K`) selects 64 KiB pages only when the
//! GT's `GAMW_ECO_DEV_RW_IA` enables them, which no vGPU can do here (the
//! register is not exposed), so it is ignored: the table is read as 512
//! 4 KiB entries.
//!
//! Writability is that of x86 IA-32e paging, whose formats the Gen8 PPGTT
//! follows: a write needs the writable bit at every level. i915 sets it in
//! every directory entry and clears it in a PTE for read-only objects.
//!
//! [`walk`] is the hardware's translation, over any [`TableReader`]: the
//! guest's tables in its own memory ([`GuestTables`], addresses naming
//! guest pages), or tables in host memory ([`HostTables`], addresses
//! naming frames: the shadow tables the engine walks, and `SimGpu`'s walk).

use crate::addr::{GuestPage, PhysFrame, PAGE_SHIFT};
use crate::backend::{PhysMem, PhysMemError};
use crate::vgpu::GuestMemoryMap;
use core::fmt;

pub mod shadow;

/// Entries in one table (one 4 KiB page of 8-byte entries).
pub const ENTRIES: usize = 512;
/// Size of the 4-level PPGTT address space (48 bits).
pub const PPGTT_SIZE: u64 = 1 << 48;

/// First address of the monitor's reserved window: the top GiB of the
/// 48-bit space (PML4 entry 511, PDP entry 511). The shadow PPGTT maps
/// there, read-only, the vGPU's shadow batches, which its engines run in
/// place of the guest's PPGTT batches (the scanner's copy,
/// [`crate::scan::scanner`]), whatever the guest's own tables map there:
/// the window overrides them ([`shadow`], "the reserved window").
///
/// Why there: Mesa keeps the top 4 GiB of the 48-bit space out of its
/// allocators, so that no state base address plus its 4 GiB bound
/// overflows 48 bits (anv `anv_device.c` and iris `iris_bufmgr.c`: "Leave
/// the last 4GiB out of the high vma range", after anv's
/// Wa32bitGeneralStateOffset note), and both place every buffer
/// themselves (softpin); i915 places objects its clients do not pin below
/// 4 GiB unless they opt into 48-bit addresses, and Gen9 i915 maps nothing
/// of its own into a user context's PPGTT, only its scratch tables (every
/// unused entry points at present scratch tables, up to PML4 entry 511:
/// why the window overrides the guest's entries rather than refusing a
/// guest whose tables reach it).
pub const WINDOW_BASE: u64 = PPGTT_SIZE - (1 << 30);
/// The PML4 entry, and the entry of the PDP below it, holding the window.
pub const WINDOW_INDEX: usize = ENTRIES - 1;
/// Pages of shadow batches at the start of the window: one slot of
/// [`crate::scan::scanner::BATCH_DWORDS`] per engine and pool place.
pub const WINDOW_BATCH_PAGES: u64 = (crate::engine::Engine::COUNT
    * crate::scan::scanner::BATCH_POOL
    * crate::scan::scanner::BATCH_DWORDS
    * 4) as u64
    / PAGE_SIZE;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// The window page of the first page of `engine`'s shadow batch `slot`.
pub const fn window_batch_page(engine: crate::engine::Engine, slot: usize) -> u64 {
    ((engine.index() * crate::scan::scanner::BATCH_POOL + slot)
        * crate::scan::scanner::BATCH_DWORDS
        * 4) as u64
        / PAGE_SIZE
}

/// The PPGTT address at which `engine`'s shadow batch `slot` runs.
pub const fn window_batch_va(engine: crate::engine::Engine, slot: usize) -> u64 {
    WINDOW_BASE + window_batch_page(engine, slot) * PAGE_SIZE
}

/// Whether `[addr, addr + len)` reaches into the reserved window.
pub const fn in_window(addr: u64, len: u64) -> bool {
    addr.saturating_add(len) > WINDOW_BASE
}

/// Present bit (`_PAGE_PRESENT`).
pub const PRESENT: u64 = 1 << 0;
/// Writable bit (`_PAGE_RW`).
pub const WRITABLE: u64 = 1 << 1;
/// Page write-through: part of the private-PAT index (`_PAGE_PWT`).
pub const PWT: u64 = 1 << 3;
/// Page cache disable: part of the private-PAT index (`_PAGE_PCD`).
pub const PCD: u64 = 1 << 4;
/// In a PTE: the third private-PAT index bit (`_PAGE_PAT`, i915's
/// `PPAT_CACHED`). In a PDP or PD entry: the page-size bit
/// (`GEN8_PDPE_PS_1G`, `GEN8_PDE_PS_2M`).
pub const BIT7: u64 = 1 << 7;
/// In a PD entry: 64 KiB pages in the PT it names (`GEN8_PDE_IPS_64K`),
/// ignored here (see the module docs).
pub const PDE_IPS_64K: u64 = 1 << 11;
/// Address bits 45:12 (GVT-g `ADDR_4K_MASK` with `GTT_HAW` 46).
pub const ADDR_MASK: u64 = ((1 << 46) - 1) & !((1 << PAGE_SHIFT) - 1);
/// The cache bits a PTE carries (the private-PAT index).
pub const PTE_CACHE_BITS: u64 = PWT | PCD | BIT7;
/// The cache bits a 2 MiB or 1 GiB entry carries (bit 7 is its size bit).
pub const HUGE_CACHE_BITS: u64 = PWT | PCD;

/// The four table levels, from the root down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Page-map level 4: the root, one entry per 512 GiB.
    Pml4,
    /// Page-directory pointers: one entry per 1 GiB.
    Pdp,
    /// Page directory: one entry per 2 MiB.
    Pd,
    /// Page table: one entry per 4 KiB page.
    Pt,
}

impl Level {
    /// Root to leaf.
    pub const ALL: [Level; 4] = [Level::Pml4, Level::Pdp, Level::Pd, Level::Pt];

    /// Lowest address bit this level's index takes.
    pub const fn shift(self) -> u32 {
        match self {
            Level::Pml4 => 39,
            Level::Pdp => 30,
            Level::Pd => 21,
            Level::Pt => 12,
        }
    }
    /// The level of the tables this level's entries name (`None` for PT).
    pub const fn next(self) -> Option<Level> {
        match self {
            Level::Pml4 => Some(Level::Pdp),
            Level::Pdp => Some(Level::Pd),
            Level::Pd => Some(Level::Pt),
            Level::Pt => None,
        }
    }
    /// Whether bit 7 of an entry at this level maps a page (PDP: 1 GiB,
    /// PD: 2 MiB) instead of naming a table.
    pub const fn has_page_size_bit(self) -> bool {
        matches!(self, Level::Pdp | Level::Pd)
    }
    /// Short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Pml4 => "PML4",
            Level::Pdp => "PDP",
            Level::Pd => "PD",
            Level::Pt => "PT",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An address in a 48-bit PPGTT (what a batch in a PPGTT context names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PpgttAddr(u64);

impl PpgttAddr {
    /// Checked constructor: below 2^48.
    pub const fn new(raw: u64) -> Option<Self> {
        if raw < PPGTT_SIZE {
            Some(PpgttAddr(raw))
        } else {
            None
        }
    }
    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// This address's entry index in a table of `level`.
    pub const fn index(self, level: Level) -> usize {
        ((self.0 >> level.shift()) & (ENTRIES as u64 - 1)) as usize
    }
    /// Byte offset in its 4 KiB page.
    pub const fn page_offset(self) -> u64 {
        self.0 & 0xfff
    }
    /// The address `bytes` further on, if still below 2^48.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) => PpgttAddr::new(v),
            None => None,
        }
    }
}

impl fmt::Display for PpgttAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PPGTT {:#014x}", self.0)
    }
}

/// One 64-bit entry of a PPGTT table, at any level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Entry(u64);

impl Entry {
    /// The not-present entry.
    pub const ABSENT: Entry = Entry(0);

    /// Reinterprets a raw value read from a table.
    pub const fn from_raw(raw: u64) -> Self {
        Entry(raw)
    }
    /// An entry naming the table (or 4 KiB page) in page `page`, present,
    /// with `flags` (only [`WRITABLE`] and the cache bits are kept).
    pub const fn new(page: u64, flags: u64) -> Self {
        Entry(((page << PAGE_SHIFT) & ADDR_MASK) | (flags & (WRITABLE | PTE_CACHE_BITS)) | PRESENT)
    }
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Whether the present bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PRESENT != 0
    }
    /// Whether the writable bit is set.
    pub const fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }
    /// Whether this entry, at `level`, maps a page rather than a table:
    /// always at PT, by bit 7 at PDP (1 GiB) and PD (2 MiB).
    pub const fn is_leaf(self, level: Level) -> bool {
        match level {
            Level::Pt => true,
            Level::Pdp | Level::Pd => self.0 & BIT7 != 0,
            Level::Pml4 => false,
        }
    }
    /// The page number the address field names (a table, or the first
    /// 4 KiB page of what a leaf maps, with the bits below the leaf's
    /// alignment cleared as the hardware ignores them).
    pub const fn page(self, level: Level) -> u64 {
        let mask = if self.is_leaf(level) {
            ADDR_MASK & !((1u64 << level.shift()) - 1)
        } else {
            ADDR_MASK
        };
        (self.0 & mask) >> PAGE_SHIFT
    }
    /// The cache (private-PAT) bits of a leaf at `level`.
    pub const fn cache_bits(self, level: Level) -> u64 {
        match level {
            Level::Pt => self.0 & PTE_CACHE_BITS,
            _ => self.0 & HUGE_CACHE_BITS,
        }
    }
}

/// Reads table entries from some memory: page numbers are whatever its
/// entries name (guest pages for a guest's tables, frames for the host's).
pub trait TableReader {
    /// Why an entry could not be read.
    type Error;
    /// Entry `index` (< [`ENTRIES`]) of the table in page `table`.
    fn entry(&self, table: u64, index: usize) -> Result<Entry, Self::Error>;
}

/// Where a walk ended: the 4 KiB page that holds the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Page number (in the reader's namespace) of the 4 KiB page holding
    /// the address.
    pub page: u64,
    /// Whether every level allows writes.
    pub writable: bool,
    /// The level whose entry mapped the page (PT, or PD/PDP for a 2 MiB /
    /// 1 GiB page).
    pub leaf: Level,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError<E> {
    /// The entry at `level` is not present: a page fault.
    NotPresent {
        /// Level of the not-present entry.
        level: Level,
    },
    /// The table at `level` could not be read.
    Read {
        /// Level of the unreadable table.
        level: Level,
        /// Its page number.
        table: u64,
        /// The reader's error.
        error: E,
    },
}

impl<E: fmt::Display> fmt::Display for WalkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::NotPresent { level } => write!(f, "{level} entry not present"),
            WalkError::Read {
                level,
                table,
                error,
            } => write!(f, "{level} table at page {table:#x} unreadable: {error}"),
        }
    }
}

/// The hardware's translation of `addr` through the tables rooted at the
/// PML4 in page `root`.
pub fn walk<R: TableReader + ?Sized>(
    reader: &R,
    root: u64,
    addr: PpgttAddr,
) -> Result<Translation, WalkError<R::Error>> {
    let mut table = root;
    let mut writable = true;
    for level in Level::ALL {
        let entry = reader
            .entry(table, addr.index(level))
            .map_err(|error| WalkError::Read {
                level,
                table,
                error,
            })?;
        if !entry.is_present() {
            return Err(WalkError::NotPresent { level });
        }
        writable &= entry.is_writable();
        if entry.is_leaf(level) {
            let within = (addr.raw() & ((1u64 << level.shift()) - 1)) >> PAGE_SHIFT;
            return Ok(Translation {
                page: entry.page(level) + within,
                writable,
                leaf: level,
            });
        }
        table = entry.page(level);
    }
    // Unreachable: a PT entry is always a leaf. Report it as the PT fault
    // rather than panicking.
    Err(WalkError::NotPresent { level: Level::Pt })
}

/// Why a guest's table entry could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestTableError {
    /// The table's page is not the guest's (or beyond a guest page number).
    NotGuestPage {
        /// The page number the entry above named.
        page: u64,
    },
    /// The guest's frame is not backed (a monitor configuration fault).
    Memory(PhysMemError),
}

impl fmt::Display for GuestTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestTableError::NotGuestPage { page } => {
                write!(f, "page {page:#x} is not the guest's")
            }
            GuestTableError::Memory(e) => write!(f, "guest frame unreadable: {e}"),
        }
    }
}

/// A guest's tables in its own memory: page numbers are [`GuestPage`]s,
/// read through the guest's memory map.
#[derive(Clone, Copy)]
pub struct GuestTables<'a, M: PhysMem + ?Sized> {
    /// The guest's pages.
    pub map: &'a dyn GuestMemoryMap,
    /// The memory behind them.
    pub mem: &'a M,
}

impl<M: PhysMem + ?Sized> fmt::Debug for GuestTables<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuestTables")
    }
}

impl<M: PhysMem + ?Sized> GuestTables<'_, M> {
    /// The frame backing guest page number `page`, if it is the guest's.
    pub fn frame(&self, page: u64) -> Option<PhysFrame> {
        GuestPage::new(page).ok().and_then(|p| self.map.frame_of(p))
    }
}

impl<M: PhysMem + ?Sized> TableReader for GuestTables<'_, M> {
    type Error = GuestTableError;
    fn entry(&self, table: u64, index: usize) -> Result<Entry, GuestTableError> {
        let frame = self
            .frame(table)
            .ok_or(GuestTableError::NotGuestPage { page: table })?;
        read_entry(self.mem, frame, index).map_err(GuestTableError::Memory)
    }
}

/// Tables in host memory: page numbers are [`PhysFrame`] numbers.
#[derive(Clone, Copy)]
pub struct HostTables<'a, M: PhysMem + ?Sized> {
    /// The memory holding them.
    pub mem: &'a M,
}

impl<M: PhysMem + ?Sized> fmt::Debug for HostTables<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostTables")
    }
}

impl<M: PhysMem + ?Sized> TableReader for HostTables<'_, M> {
    type Error = HostTableError;
    fn entry(&self, table: u64, index: usize) -> Result<Entry, HostTableError> {
        let frame =
            PhysFrame::new(table).map_err(|_| HostTableError::FrameOutOfRange { frame: table })?;
        read_entry(self.mem, frame, index).map_err(HostTableError::Memory)
    }
}

/// Why a table entry in host memory could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostTableError {
    /// The entry above named a frame beyond the 39 physical address bits.
    FrameOutOfRange {
        /// The frame number named.
        frame: u64,
    },
    /// No memory backs the frame.
    Memory(PhysMemError),
}

impl fmt::Display for HostTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostTableError::FrameOutOfRange { frame } => {
                write!(f, "frame {frame:#x} is beyond physical memory")
            }
            HostTableError::Memory(e) => e.fmt(f),
        }
    }
}

/// Entry `index` of the table in `frame`.
pub fn read_entry<M: PhysMem + ?Sized>(
    mem: &M,
    frame: PhysFrame,
    index: usize,
) -> Result<Entry, PhysMemError> {
    let mut b = [0u8; 8];
    mem.read(frame.at((index as u64 % ENTRIES as u64) * 8), &mut b)?;
    Ok(Entry::from_raw(u64::from_le_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::SparseMem;
    use crate::vgpu::{FrameRun, FrameRuns};

    fn write_entry(mem: &mut SparseMem, frame: u64, index: usize, e: Entry) {
        let at = PhysFrame::new(frame).unwrap().at(index as u64 * 8);
        mem.write(at, &e.raw().to_le_bytes()).unwrap();
    }

    #[test]
    fn an_address_splits_into_four_indices_and_an_offset() {
        let a = PpgttAddr::new(0x0000_8081_4060_3abc).unwrap();
        assert_eq!(a.index(Level::Pml4), 0x101);
        assert_eq!(a.index(Level::Pdp), 0x005);
        assert_eq!(a.index(Level::Pd), 0x003);
        assert_eq!(a.index(Level::Pt), 0x003);
        assert_eq!(a.page_offset(), 0xabc);
        assert_eq!(PpgttAddr::new(PPGTT_SIZE), None);
    }

    #[test]
    fn entries_encode_as_i915_writes_them() {
        // gen8_pde_encode: address | present | RW; gen8_pte_encode with
        // PPAT_CACHED: address | present | RW | _PAGE_PAT.
        let pde = Entry::new(0x12345, WRITABLE);
        assert_eq!(pde.raw(), 0x1234_5003);
        let pte = Entry::new(0x777, WRITABLE | BIT7);
        assert_eq!(pte.raw(), 0x77_7083);
        assert!(pte.is_leaf(Level::Pt) && !pte.is_leaf(Level::Pml4));
        // Address bits above 45 are not part of the address.
        assert_eq!(Entry::from_raw(1 << 46 | 0x5000 | 1).page(Level::Pt), 5);
        // A 2 MiB entry's address ignores bits 20:12.
        let huge = Entry::from_raw(0x20_3000 | BIT7 | PRESENT);
        assert_eq!(huge.page(Level::Pd), 0x200);
        assert_eq!(huge.page(Level::Pml4), 0x203);
    }

    #[test]
    fn walk_translates_4k_2m_and_1g_pages_and_faults_on_absent_entries() {
        let mut mem = SparseMem::new(1 << 32);
        // Host tables: PML4 in frame 1, PDP 2, PD 3, PT 4.
        write_entry(&mut mem, 1, 0, Entry::new(2, WRITABLE));
        write_entry(&mut mem, 2, 0, Entry::new(3, WRITABLE));
        write_entry(&mut mem, 3, 0, Entry::new(4, WRITABLE));
        write_entry(&mut mem, 4, 5, Entry::new(0x99, 0)); // read-only page
        write_entry(&mut mem, 3, 1, Entry::from_raw(0x40_0000 | BIT7 | 3)); // 2 MiB
        write_entry(&mut mem, 2, 1, Entry::from_raw(0x8000_0000 | BIT7 | 3)); // 1 GiB
        let t = HostTables { mem: &mem };
        let at = |a: u64| walk(&t, 1, PpgttAddr::new(a).unwrap());
        assert_eq!(
            at(0x5123),
            Ok(Translation {
                page: 0x99,
                writable: false,
                leaf: Level::Pt
            })
        );
        let two_m = at(0x20_0000 + 0x3_4567).unwrap();
        assert_eq!((two_m.page, two_m.leaf), (0x400 + 0x34, Level::Pd));
        assert!(two_m.writable);
        let one_g = at(0x4000_0000 + 0x123_4567).unwrap();
        assert_eq!((one_g.page, one_g.leaf), (0x8_0000 + 0x1234, Level::Pdp));
        assert_eq!(at(0x6000), Err(WalkError::NotPresent { level: Level::Pt }));
        assert_eq!(
            at(0x80_0000_0000),
            Err(WalkError::NotPresent { level: Level::Pml4 })
        );
    }

    #[test]
    fn guest_walk_reads_tables_through_the_guest_map_and_stops_at_foreign_pages() {
        let mut mem = SparseMem::new(1 << 32);
        // Guest pages 0..16 live in frames 0x100..0x110.
        let mut map = FrameRuns::<1>::new();
        map.push(FrameRun {
            first_page: GuestPage::new(0).unwrap(),
            first_frame: PhysFrame::new(0x100).unwrap(),
            count: 16,
        })
        .unwrap();
        write_entry(&mut mem, 0x101, 0, Entry::new(2, WRITABLE));
        write_entry(&mut mem, 0x102, 0, Entry::new(3, WRITABLE));
        write_entry(&mut mem, 0x103, 0, Entry::new(4, WRITABLE));
        write_entry(&mut mem, 0x104, 0, Entry::new(9, WRITABLE));
        // A second PD entry names guest page 0x40, which is not the guest's.
        write_entry(&mut mem, 0x103, 1, Entry::new(0x40, WRITABLE));
        let t = GuestTables {
            map: &map,
            mem: &mem,
        };
        let ok = walk(&t, 1, PpgttAddr::new(0x10).unwrap()).unwrap();
        assert_eq!(ok.page, 9);
        assert_eq!(
            walk(&t, 1, PpgttAddr::new(0x20_0000).unwrap()),
            Err(WalkError::Read {
                level: Level::Pt,
                table: 0x40,
                error: GuestTableError::NotGuestPage { page: 0x40 }
            })
        );
    }
}
