//! The shadow PPGTT: the tables an engine really walks for a guest context,
//! built by the monitor from the guest's own 4-level tables so that every
//! PPGTT address maps only to frames of that vGPU.
//!
//! Rules:
//! * A guest leaf (PTE, or a 2 MiB PD entry) naming a guest page maps the
//!   frame that backs it ([`GuestMemoryMap::frame_of`]); naming anything
//!   else, it maps the vGPU's *scratch page*, never a foreign frame. A
//!   directory entry naming a page that is not the guest's maps the
//!   vGPU's scratch table of the next level (whose entries end on the
//!   scratch page). A not-present guest entry is not present in the shadow,
//!   so the access faults the guest's own context.
//! * Shadow entries are built from nothing but the present bit, the
//!   writable bit, the cache bits of a leaf and a frame the monitor chose:
//!   no other guest bit reaches the hardware. PD entries' 64 KiB (IPS) bit
//!   is dropped (the hardware ignores it too, see [`super`]).
//! * A 2 MiB guest page becomes a shadow PT of 512 4 KiB entries (its guest
//!   pages need not be contiguous frames), as GVT-g does when the host page
//!   is not huge. A 1 GiB page is refused ([`ShadowError::HugePage1G`]):
//!   splitting it would take 513 shadow pages, and GVT-g does not support
//!   it either.
//! * Shadow tables come from a pool of frames the kernel gives the vGPU
//!   ([`ShadowPpgtt::new`]): [`SCRATCH_FRAMES`] for the scratch page and
//!   scratch tables, then one frame per table page of the per-vGPU
//!   *budget* (at most `N`), which bounds how many are in use; a guest
//!   whose tables need more gets [`ShadowError::BudgetExceeded`], not an
//!   allocation failure. Only the budget's frames are ever written, so the
//!   kernel gives each vGPU [`SCRATCH_FRAMES`] + budget frames, no more.
//!   The scratch page and the pool are the vGPU's own, so what one vGPU's
//!   engine writes through its scratch page no other vGPU reads.
//! * One shadow table per guest table *and level*: tables the guest shares
//!   (i915 points every unused entry at one scratch table per level) are
//!   shadowed once and reference-counted, a guest table reached at two
//!   levels is shadowed at each. Levels strictly descend, so no cycle of
//!   guest tables makes the walk loop, and a sync visits each shadow table
//!   at most once.
//! * The reserved window ([`super::WINDOW_BASE`]) overrides the guest:
//!   the shadow of the PDP a guest's PML4 entry 511 names gets the
//!   monitor's window PD at entry 511 whatever the guest's entry 511 is
//!   (not read, not shadowed); its other entries are the guest's. Where
//!   PML4 entry 511 is absent or names no guest page, the monitor's own
//!   window PDP takes its place. That PDP is shadowed apart from the same
//!   guest page reached through another PML4 entry (where entry 511 is
//!   the guest's), each copy reference-counted as any table. Why override
//!   rather than refuse: i915 points every unused entry, PML4 entry 511
//!   included, at present scratch tables (its scratch PDP, PD and PT,
//!   every entry present), so every i915 guest "maps" the window; Mesa's
//!   anv and iris never allocate in the top 4 GiB. A guest that does map
//!   something there sees its own shadow batches, read-only, in its
//!   place: nothing of another vGPU, and a write there faults its own
//!   context.
//! * Release: [`ShadowPpgtt::unpin`] drops a context's root and every table
//!   only it reached; [`ShadowPpgtt::release_all`] drops everything (vGPU
//!   reset, teardown, migration). Whatever the hardware still caches of a
//!   released table names only this vGPU's pool and frames.
//!
//! # Keeping the shadow in sync: validate at submission
//!
//! The guest changes its tables with plain CPU writes. Two ways keep the
//! shadow true to them:
//! * *write-protection* (GVT-g's choice): the monitor write-protects every
//!   guest page that holds a table (in the guest's CPU page tables here, in
//!   EPT on KVM), traps each write, and applies it to the shadow; GVT-g
//!   batches the updates of trapped writes it cannot apply at once
//!   ("post-shadow") and flushes them before each workload is submitted.
//!   Its out-of-sync mode (leave hot PT pages writable and re-sync them at
//!   submission) exists but is off by default (`enable_out_of_sync`).
//! * *validate at submission* (this module): nothing is trapped; before
//!   each submission in a context, [`ShadowPpgtt::sync`] re-reads the
//!   guest's tables reachable from the root and re-derives what changed,
//!   comparing each recomputed shadow entry with the one in place and
//!   rewriting only those that differ. [`SyncScope::Changed`] (the
//!   per-submission default) re-reads every table but re-derives only the
//!   chunks of 64 entries whose content digest moved since they were last
//!   derived; [`SyncScope::Written`] also skips re-reading the guest pages
//!   the CPU did not write since the last sync (from the PTE dirty bits the
//!   monitor reads for migration, once the kernel keeps a copy of them for
//!   this consumer); [`SyncScope::Everything`] re-derives every entry, for
//!   when the guest's memory map changed.
//!
//! Why this one, by measurement (`gpu/examples/ppgtt_bench.rs`, figures
//! in the README and `cargo xtask bench`): write-protection costs a trap
//! per guest write to a table, an exit the size of the monitor's MMIO
//! emulation (page fault, decode, emulate, return: thousands of cycles
//! on hardware, tens of thousands under TCG), against about ten
//! nanoseconds to apply the write. i915 writes PTEs in bursts (binding a
//! 2 MiB object rewrites 512 PTEs), so the traps dominate whenever the
//! guest binds anything. Validation costs nothing per write and about the
//! same ten-odd nanoseconds per changed PTE at the next submission, plus
//! a floor per submission: one read and digest per table page the
//! context's address space uses (one per 2 MiB mapped, plus directories),
//! a few tens of microseconds for 64 MiB mapped, a fraction of the scan
//! of a large 3D submission; with [`SyncScope::Written`], a few
//! microseconds whatever the size. The trade turns for a guest that keeps
//! hundreds of MiB mapped, never rebinds, and submits thousands of times
//! a second: there GVT-g's write-protection (or the written scope) reads
//! nothing. Validation also needs no write-protection machinery in the
//! guest runtime, and keeps the shadow exact at the only moment the
//! hardware uses it: a guest that rewrites its tables while its own batch
//! runs changes only what its own context sees (as on bare metal before a
//! TLB invalidation), never reaching a foreign frame.
//!
//! The digest is not collision-resistant, and need not be: a guest that
//! forges a collision keeps its own previous mapping, which names only
//! its own frames.
//!
//! What stays true either way: the shadow is only ever rebuilt from the
//! guest's tables and the memory map, so after a migration the destination
//! builds it anew over its own frames (the PPGTT roots travel in the device
//! state, the tables as guest memory). The memory map must not lose a page
//! while a shadow maps it: the vGPU releases its shadows first.

use super::{Entry, Level, ENTRIES, HUGE_CACHE_BITS, WINDOW_BATCH_PAGES, WINDOW_INDEX, WRITABLE};
use crate::addr::{GuestPage, PhysFrame, PAGE_SIZE};
use crate::backend::{PhysMem, PhysMemError};
use crate::vgpu::GuestMemoryMap;
use core::fmt;

/// Frames at the start of a vGPU's pool that hold its scratch page (0)
/// and its scratch PT (1), PD (2) and PDP (3).
pub const SCRATCH_FRAMES: u64 = 4;
/// Frames after them holding the reserved window's tables (see
/// [`super::WINDOW_BASE`]): the PDP a PML4 entry 511 naming no guest PDP
/// leads to, the window's PD and its PT.
pub const WINDOW_TABLE_FRAMES: u64 = 3;
/// Frames of a pool before its table pages: the scratch frames, the
/// window's tables, and the [`WINDOW_BATCH_PAGES`] frames of the vGPU's
/// shadow batches the window maps.
pub const POOL_HEADER_FRAMES: u64 = SCRATCH_FRAMES + WINDOW_TABLE_FRAMES + WINDOW_BATCH_PAGES;

/// Frames a pool of `tables` table pages takes, from its first.
pub const fn pool_frames(tables: usize) -> u64 {
    POOL_HEADER_FRAMES + tables as u64
}

const WINDOW_PDP: u64 = SCRATCH_FRAMES;
const WINDOW_PD: u64 = SCRATCH_FRAMES + 1;
const WINDOW_PT: u64 = SCRATCH_FRAMES + 2;
const WINDOW_BATCHES: u64 = SCRATCH_FRAMES + WINDOW_TABLE_FRAMES;

const SCRATCH_PAGE: u64 = 0;
/// Entries processed at once: bounds the stack a table visit holds
/// (2 × 512 bytes per level, four levels).
const CHUNK: usize = 64;
const CHUNKS: usize = ENTRIES / CHUNK;

/// What a shadow table shadows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    /// The guest's table in guest page `page`, read at `level`; `window`:
    /// a PDP reached through PML4 entry 511, whose entry 511 is the
    /// reserved window (shadowed apart from the same page reached
    /// elsewhere, where that entry is the guest's).
    Table {
        page: u64,
        level: Level,
        window: bool,
    },
    /// A 2 MiB guest page, split: its first guest page and the writable
    /// and cache bits of its PD entry.
    Split { first: u64, flags: u64 },
}

impl Source {
    const fn level(self) -> Level {
        match self {
            Source::Table { level, .. } => level,
            Source::Split { .. } => Level::Pt,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    source: Source,
    /// Shadow entries naming this table, plus pins of a root.
    refs: u32,
    /// Generation of the last sync that visited it.
    seen: u32,
    /// Not yet fully derived from its source (new, or a sync failed in
    /// it): the next sync re-reads it whatever the scope.
    fresh: bool,
    used: bool,
    /// [`chunk_digest`] of each chunk of its source as last derived.
    digests: [u64; CHUNKS],
}

impl Slot {
    const FREE: Slot = Slot {
        source: Source::Split { first: 0, flags: 0 },
        refs: 0,
        seen: 0,
        fresh: false,
        used: false,
        digests: [0; CHUNKS],
    };
}

/// Why the shadow could not be built or kept, and who is to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// Guest: its tables need more shadow pages than its budget.
    BudgetExceeded {
        /// The vGPU's budget, in shadow table pages.
        budget: usize,
    },
    /// Guest: a PDP entry maps a 1 GiB page, which the monitor does not
    /// shadow.
    HugePage1G {
        /// The guest page the entry names.
        page: u64,
    },
    /// Guest: more contexts with distinct PPGTT roots in use at once than
    /// the vGPU keeps shadows of.
    TooManyRoots {
        /// Roots a vGPU keeps.
        max: usize,
    },
    /// Guest: the context's PPGTT root is not one of its pages.
    RootNotGuestPage {
        /// The page the root names.
        page: u64,
    },
    /// Monitor: a guest frame or a pool frame is not backed by memory.
    Memory(PhysMemError),
    /// Monitor: the pool does not fit physical memory or the budget
    /// exceeds the table capacity.
    BadPool,
    /// Monitor: a root from before [`ShadowPpgtt::release_all`], or from
    /// another vGPU's shadow.
    StaleRoot,
}

impl ShadowError {
    /// True when the guest is to blame.
    pub const fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            ShadowError::BudgetExceeded { .. }
                | ShadowError::HugePage1G { .. }
                | ShadowError::TooManyRoots { .. }
                | ShadowError::RootNotGuestPage { .. }
        )
    }
}

impl fmt::Display for ShadowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShadowError::BudgetExceeded { budget } => write!(
                f,
                "the guest's PPGTT needs more than its {budget} shadow table pages"
            ),
            ShadowError::HugePage1G { page } => write!(
                f,
                "a PDP entry maps a 1 GiB page at guest page {page:#x}: not supported"
            ),
            ShadowError::TooManyRoots { max } => write!(
                f,
                "more than {max} contexts with distinct PPGTT roots in use at once"
            ),
            ShadowError::RootNotGuestPage { page } => {
                write!(
                    f,
                    "PPGTT root names page {page:#x}, which is not the guest's"
                )
            }
            ShadowError::Memory(e) => write!(f, "shadow PPGTT memory: {e}"),
            ShadowError::BadPool => f.write_str("shadow PPGTT pool misconfigured"),
            ShadowError::StaleRoot => f.write_str("shadow PPGTT root is stale"),
        }
    }
}

impl From<PhysMemError> for ShadowError {
    fn from(e: PhysMemError) -> Self {
        ShadowError::Memory(e)
    }
}

/// Which guest tables a sync re-reads.
#[derive(Clone, Copy)]
pub enum SyncScope<'a> {
    /// Every table reachable from the root is re-derived, entry by entry
    /// (and every split 2 MiB page from the memory map): after the memory
    /// map changed.
    Everything,
    /// Every table reachable from the root is re-read, and the chunks of
    /// 64 entries whose content differs from what they were last derived
    /// from are re-derived: before each submission, when nothing says
    /// which pages the guest wrote.
    Changed,
    /// Only tables in guest pages the predicate says were written since
    /// the last sync (and tables not yet fully built) are re-read, and of
    /// those the chunks that changed re-derived. The predicate must
    /// not miss a write, or the shadow keeps the guest's old (still
    /// contained) mapping until a later sync.
    Written(&'a dyn Fn(GuestPage) -> bool),
}

impl fmt::Debug for SyncScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncScope::Everything => "Everything",
            SyncScope::Changed => "Changed",
            SyncScope::Written(_) => "Written",
        })
    }
}

/// What one pin or sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Shadow tables visited.
    pub tables_checked: u32,
    /// Of those, re-read from their guest source.
    pub tables_read: u32,
    /// Chunks of 64 entries re-derived.
    pub chunks_derived: u32,
    /// Shadow entries rewritten.
    pub entries_changed: u32,
    /// Shadow tables allocated.
    pub tables_allocated: u32,
    /// Shadow tables released.
    pub tables_freed: u32,
}

/// A pinned root: the shadow PML4 of one guest PML4, for as long as a
/// context uses it. Hand it back to [`ShadowPpgtt::unpin`] exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a pinned shadow root holds shadow pages until unpinned"]
pub struct ShadowRoot {
    guest: GuestPage,
    slot: u16,
    frame: PhysFrame,
    epoch: u32,
}

impl ShadowRoot {
    /// The guest's PML4 page.
    pub const fn guest(&self) -> GuestPage {
        self.guest
    }
    /// The shadow PML4 the engine walks (what the context image's root
    /// pointer holds on hardware).
    pub const fn frame(&self) -> PhysFrame {
        self.frame
    }
}

/// The shadow PPGTT tables of one vGPU: up to `N` table pages (a power of
/// two) from its pool, shared by all its contexts' roots.
#[derive(Debug)]
pub struct ShadowPpgtt<const N: usize> {
    pool: PhysFrame,
    budget: usize,
    slots: [Slot; N],
    index: heapless::index_map::FnvIndexMap<Source, u16, N>,
    free: heapless::Vec<u16, N>,
    generation: u32,
    epoch: u32,
}

/// One sync's or release's companions: the guest's memory, the scope, and
/// the tally.
struct Io<'a, M: PhysMem + ?Sized> {
    map: &'a dyn GuestMemoryMap,
    mem: &'a mut M,
    scope: SyncScope<'a>,
    stats: SyncStats,
}

impl<const N: usize> ShadowPpgtt<N> {
    /// A shadow over the pool starting at frame `pool` ([`pool_frames`]`(budget)`
    /// frames, the monitor's, given to this vGPU alone): at most `budget`
    /// (at most `N`) table pages, each in the pool frame of its slot, slots
    /// `0..budget`. Writes the scratch page (zeroes), the scratch tables,
    /// the window's tables and its (zeroed) shadow batch frames.
    pub fn new<M: PhysMem + ?Sized>(
        pool: PhysFrame,
        budget: usize,
        mem: &mut M,
    ) -> Result<Self, ShadowError> {
        let last = pool.number() + pool_frames(budget);
        if budget > N || N > usize::from(u16::MAX) || PhysFrame::new(last).is_err() {
            return Err(ShadowError::BadPool);
        }
        let frame = |i: u64| PhysFrame::new(pool.number() + i).map_err(|_| ShadowError::BadPool);
        mem.write(frame(SCRATCH_PAGE)?.start(), &[0; PAGE_SIZE as usize])?;
        // Scratch PT -> scratch page, PD -> PT, PDP -> PD, all writable:
        // what a guest reaches through a foreign page lands on its scratch.
        for level in 1..SCRATCH_FRAMES {
            let entry = Entry::new(frame(level - 1)?.number(), WRITABLE).raw();
            let mut page = [0u8; PAGE_SIZE as usize];
            for e in page.chunks_exact_mut(8) {
                e.copy_from_slice(&entry.to_le_bytes());
            }
            mem.write(frame(level)?.start(), &page)?;
        }
        // The window: PDP entry 511 -> PD, its entry 0 -> PT, which maps
        // the shadow batch frames read-only (a guest's engine on one
        // engine must not rewrite a batch another engine runs).
        let mut table = |at: u64, entries: &mut dyn Iterator<Item = (usize, Entry)>| {
            let mut page = [0u8; PAGE_SIZE as usize];
            for (i, e) in entries {
                page[i * 8..i * 8 + 8].copy_from_slice(&e.raw().to_le_bytes());
            }
            mem.write(frame(at)?.start(), &page)
                .map_err(ShadowError::from)
        };
        let pd = frame(WINDOW_PD)?.number();
        let pt = frame(WINDOW_PT)?.number();
        let first = frame(WINDOW_BATCHES)?.number();
        table(
            WINDOW_PDP,
            &mut [(WINDOW_INDEX, Entry::new(pd, WRITABLE))].into_iter(),
        )?;
        table(WINDOW_PD, &mut [(0, Entry::new(pt, WRITABLE))].into_iter())?;
        table(
            WINDOW_PT,
            &mut (0..WINDOW_BATCH_PAGES as usize).map(|i| (i, Entry::new(first + i as u64, 0))),
        )?;
        for i in 0..WINDOW_BATCH_PAGES {
            mem.write(frame(WINDOW_BATCHES + i)?.start(), &[0; PAGE_SIZE as usize])?;
        }
        let mut free = heapless::Vec::new();
        // Only the budget's slots: a frame past the pool is never named.
        for s in (0..budget as u16).rev() {
            // At most N: cannot fail.
            let _ = free.push(s);
        }
        Ok(ShadowPpgtt {
            pool,
            budget,
            slots: [Slot::FREE; N],
            index: heapless::index_map::FnvIndexMap::new(),
            free,
            generation: 0,
            epoch: 0,
        })
    }

    /// The budget, in shadow table pages.
    pub const fn budget(&self) -> usize {
        self.budget
    }
    /// Shadow table pages in use.
    pub fn tables_in_use(&self) -> usize {
        self.index.len()
    }
    /// The vGPU's scratch page.
    pub fn scratch_page(&self) -> PhysFrame {
        self.frame_at(SCRATCH_PAGE)
    }
    /// Whether `frame` is one of this shadow's pool frames (scratch or
    /// table): what the engine may read as a table.
    pub fn owns_frame(&self, frame: PhysFrame) -> bool {
        frame
            .number()
            .checked_sub(self.pool.number())
            .is_some_and(|i| i < pool_frames(N))
    }

    /// Frame `page` of the vGPU's shadow batches, which the window maps at
    /// [`super::WINDOW_BASE`] + `page` * 4 KiB (read-only): where the monitor
    /// writes the shadow batches its engines run from the window.
    pub fn window_batch_frame(&self, page: u64) -> Option<PhysFrame> {
        (page < WINDOW_BATCH_PAGES).then(|| self.frame_at(WINDOW_BATCHES + page))
    }

    fn frame_at(&self, i: u64) -> PhysFrame {
        // In range: `new` checked the pool's last frame.
        PhysFrame::new(self.pool.number() + i).unwrap_or(self.pool)
    }
    fn slot_frame(&self, slot: u16) -> PhysFrame {
        self.frame_at(POOL_HEADER_FRAMES + u64::from(slot))
    }
    /// The scratch table of `level` (PT, PD or PDP).
    fn scratch_table(&self, level: Level) -> PhysFrame {
        self.frame_at(match level {
            Level::Pt => 1,
            Level::Pd => 2,
            Level::Pdp | Level::Pml4 => 3,
        })
    }
    /// The table slot whose frame is `frame`, if in use.
    fn slot_of(&self, frame: u64) -> Option<u16> {
        let i = frame.checked_sub(self.pool.number() + POOL_HEADER_FRAMES)?;
        let i = u16::try_from(i).ok()?;
        self.slots.get(usize::from(i)).filter(|s| s.used).map(|_| i)
    }

    /// Pins the shadow of the guest PML4 in `root` for a context and
    /// builds it (all of it, as [`SyncScope::Everything`]). Contexts with
    /// the same root share it.
    pub fn pin<M: PhysMem + ?Sized>(
        &mut self,
        root: GuestPage,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
    ) -> Result<(ShadowRoot, SyncStats), ShadowError> {
        if map.frame_of(root).is_none() {
            return Err(ShadowError::RootNotGuestPage {
                page: root.number(),
            });
        }
        let mut io = Io {
            map,
            mem,
            scope: SyncScope::Everything,
            stats: SyncStats::default(),
        };
        let source = Source::Table {
            page: root.number(),
            level: Level::Pml4,
            window: false,
        };
        let slot = self.ensure(source, &mut io)?;
        self.slots[usize::from(slot)].refs += 1;
        let pinned = ShadowRoot {
            guest: root,
            slot,
            frame: self.slot_frame(slot),
            epoch: self.epoch,
        };
        self.next_generation();
        match self.visit(slot, &mut io) {
            Ok(()) => Ok((pinned, io.stats)),
            Err(e) => {
                // Give the budget back: a failed pin holds nothing.
                let _ = self.deref(slot, &mut io);
                Err(e)
            }
        }
    }

    /// Brings the shadow of `root` in line with the guest's tables as they
    /// are now (see the module docs), before a submission in its context.
    pub fn sync<M: PhysMem + ?Sized>(
        &mut self,
        root: &ShadowRoot,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
        scope: SyncScope<'_>,
    ) -> Result<SyncStats, ShadowError> {
        self.check_root(root)?;
        let mut io = Io {
            map,
            mem,
            scope,
            stats: SyncStats::default(),
        };
        self.next_generation();
        self.visit(root.slot, &mut io)?;
        Ok(io.stats)
    }

    /// Drops a context's pin; tables no other root reaches are released.
    pub fn unpin<M: PhysMem + ?Sized>(
        &mut self,
        root: ShadowRoot,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
    ) -> Result<SyncStats, ShadowError> {
        self.check_root(&root)?;
        let mut io = Io {
            map,
            mem,
            scope: SyncScope::Everything,
            stats: SyncStats::default(),
        };
        self.deref(root.slot, &mut io)?;
        Ok(io.stats)
    }

    /// Releases every shadow table at once (vGPU reset, teardown, before a
    /// restore): every [`ShadowRoot`] handed out before is stale.
    pub fn release_all(&mut self) {
        self.slots = [Slot::FREE; N];
        self.index.clear();
        self.free.clear();
        for s in (0..self.budget as u16).rev() {
            let _ = self.free.push(s);
        }
        self.epoch = self.epoch.wrapping_add(1);
    }

    fn check_root(&self, root: &ShadowRoot) -> Result<(), ShadowError> {
        let slot = self.slots.get(usize::from(root.slot));
        let live = root.epoch == self.epoch
            && root.frame == self.slot_frame(root.slot)
            && slot.is_some_and(|s| {
                s.used
                    && s.refs > 0
                    && s.source
                        == Source::Table {
                            page: root.guest.number(),
                            level: Level::Pml4,
                            window: false,
                        }
            });
        if live {
            Ok(())
        } else {
            Err(ShadowError::StaleRoot)
        }
    }

    fn next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: no slot may look visited by this generation.
            for s in &mut self.slots {
                s.seen = 0;
            }
            self.generation = 1;
        }
    }

    /// The table for `source`, allocated (zeroed, all entries absent) if
    /// there is none yet. The caller takes the reference at once.
    fn ensure<M: PhysMem + ?Sized>(
        &mut self,
        source: Source,
        io: &mut Io<'_, M>,
    ) -> Result<u16, ShadowError> {
        if let Some(&slot) = self.index.get(&source) {
            return Ok(slot);
        }
        if self.index.len() >= self.budget {
            return Err(ShadowError::BudgetExceeded {
                budget: self.budget,
            });
        }
        let slot = self.free.pop().ok_or(ShadowError::BudgetExceeded {
            budget: self.budget,
        })?;
        if let Err(e) = io
            .mem
            .write(self.slot_frame(slot).start(), &[0; PAGE_SIZE as usize])
        {
            let _ = self.free.push(slot);
            return Err(e.into());
        }
        // Fewer than N entries (the budget check): cannot fail.
        let _ = self.index.insert(source, slot);
        self.slots[usize::from(slot)] = Slot {
            source,
            refs: 0,
            seen: 0,
            fresh: true,
            used: true,
            digests: [0; CHUNKS],
        };
        io.stats.tables_allocated += 1;
        Ok(slot)
    }

    /// Drops one reference; at zero releases the table and, through its
    /// entries, the tables below it.
    fn deref<M: PhysMem + ?Sized>(
        &mut self,
        slot: u16,
        io: &mut Io<'_, M>,
    ) -> Result<(), ShadowError> {
        let s = &mut self.slots[usize::from(slot)];
        s.refs = s.refs.saturating_sub(1);
        if s.refs > 0 {
            return Ok(());
        }
        let source = s.source;
        if source.level() != Level::Pt {
            let frame = self.slot_frame(slot);
            let mut buf = [0u8; CHUNK * 8];
            for chunk in 0..CHUNKS {
                io.mem
                    .read(frame.at((chunk * CHUNK * 8) as u64), &mut buf)?;
                for raw in buf.chunks_exact(8) {
                    let e = entry_of(raw);
                    if let Some(child) = self.child_of(e, source.level()) {
                        self.deref(child, io)?;
                    }
                }
            }
        }
        self.index.swap_remove(&source);
        self.slots[usize::from(slot)] = Slot::FREE;
        let _ = self.free.push(slot);
        io.stats.tables_freed += 1;
        Ok(())
    }

    /// The shadow table a shadow entry at `level` names, if it names one
    /// of the pool's tables (not a page, not a scratch table).
    fn child_of(&self, e: Entry, level: Level) -> Option<u16> {
        if level == Level::Pt || !e.is_present() {
            return None;
        }
        // Shadow directory entries never set bit 7: the page field is the
        // whole address.
        self.slot_of(e.page(Level::Pml4))
    }

    /// Visits a table once per generation, chunk by chunk: re-derives the
    /// chunks whose source the scope says may have changed, follows the
    /// others' shadow entries to the tables below.
    fn visit<M: PhysMem + ?Sized>(
        &mut self,
        slot: u16,
        io: &mut Io<'_, M>,
    ) -> Result<(), ShadowError> {
        let s = &mut self.slots[usize::from(slot)];
        if s.seen == self.generation {
            return Ok(());
        }
        s.seen = self.generation;
        io.stats.tables_checked += 1;
        let fresh = s.fresh;
        let read_source = fresh
            || match (io.scope, s.source) {
                (SyncScope::Everything | SyncScope::Changed, _) => true,
                (SyncScope::Written(written), Source::Table { page, .. }) => {
                    GuestPage::new(page).map_or(true, written)
                }
                // A split page's source is its PD entry, re-read with it.
                (SyncScope::Written(_), Source::Split { .. }) => false,
            };
        if read_source {
            io.stats.tables_read += 1;
        }
        let result = self.visit_chunks(slot, read_source, io);
        let s = &mut self.slots[usize::from(slot)];
        match result {
            Ok(()) => {
                if read_source {
                    s.fresh = false;
                }
                Ok(())
            }
            Err(e) => {
                // Left half-done: the next sync re-derives all of it
                // whatever its scope says.
                s.fresh = true;
                Err(e)
            }
        }
    }

    fn visit_chunks<M: PhysMem + ?Sized>(
        &mut self,
        slot: u16,
        read_source: bool,
        io: &mut Io<'_, M>,
    ) -> Result<(), ShadowError> {
        let Slot { source, fresh, .. } = self.slots[usize::from(slot)];
        let level = source.level();
        if !read_source && level == Level::Pt {
            // A clean PT names no table.
            return Ok(());
        }
        let frame = self.slot_frame(slot);
        // The guest's frame of a table page: a page that stopped being the
        // guest's reads as all absent (its parent maps it to scratch at
        // the next re-read of the parent).
        let guest_frame = match source {
            Source::Table { page, .. } => {
                GuestPage::new(page).ok().and_then(|p| io.map.frame_of(p))
            }
            Source::Split { .. } => None,
        };
        let mut guest = [0u8; CHUNK * 8];
        let mut shadow = [0u8; CHUNK * 8];
        for chunk in 0..CHUNKS {
            let offset = (chunk * CHUNK * 8) as u64;
            let mut digest = None;
            if read_source {
                match (source, guest_frame) {
                    (Source::Table { .. }, Some(g)) => io.mem.read(g.at(offset), &mut guest)?,
                    (Source::Table { .. }, None) => guest.fill(0),
                    (Source::Split { first, flags }, _) => {
                        for (i, raw) in guest.chunks_exact_mut(8).enumerate() {
                            let page = first + (chunk * CHUNK + i) as u64;
                            raw.copy_from_slice(&Entry::new(page, flags).raw().to_le_bytes());
                        }
                    }
                }
                let d = chunk_digest(&guest);
                let unchanged = !fresh
                    && !matches!(io.scope, SyncScope::Everything)
                    && self.slots[usize::from(slot)].digests[chunk] == d;
                if !unchanged {
                    digest = Some(d);
                }
            }
            if digest.is_none() && level == Level::Pt {
                // An unchanged chunk of a PT names no table.
                continue;
            }
            io.mem.read(frame.at(offset), &mut shadow)?;
            match digest {
                Some(d) => {
                    io.stats.chunks_derived += 1;
                    self.derive_chunk(slot, level, offset, &guest, &shadow, io)?;
                    self.slots[usize::from(slot)].digests[chunk] = d;
                }
                None => self.follow_chunk(level, &shadow, io)?,
            }
        }
        Ok(())
    }

    /// Visits the tables a chunk of shadow entries names (runs of one
    /// entry, as i915's scratch layout makes, visit once).
    fn follow_chunk<M: PhysMem + ?Sized>(
        &mut self,
        level: Level,
        shadow: &[u8; CHUNK * 8],
        io: &mut Io<'_, M>,
    ) -> Result<(), ShadowError> {
        if level == Level::Pt {
            return Ok(());
        }
        let mut previous = None;
        for raw in shadow.chunks_exact(8) {
            let e = entry_of(raw);
            if previous == Some(e) {
                continue;
            }
            previous = Some(e);
            if let Some(child) = self.child_of(e, level) {
                self.visit(child, io)?;
            }
        }
        Ok(())
    }

    /// Recomputes a chunk of entries from their guest source and rewrites
    /// those that differ, then visits the tables below.
    fn derive_chunk<M: PhysMem + ?Sized>(
        &mut self,
        slot: u16,
        level: Level,
        offset: u64,
        guest: &[u8; CHUNK * 8],
        shadow: &[u8; CHUNK * 8],
        io: &mut Io<'_, M>,
    ) -> Result<(), ShadowError> {
        let frame = self.slot_frame(slot);
        let source = self.slots[usize::from(slot)].source;
        // The last guest entry and what it derived: a run of equal guest
        // entries derives (and visits) once. Its child stays referenced
        // meanwhile, so the result stays true. The window's entries
        // depend on their position, not only on the guest's entry.
        let mut previous: Option<(Entry, Entry, Option<u16>)> = None;
        for i in 0..CHUNK {
            let g = entry_of(&guest[i * 8..i * 8 + 8]);
            let old = entry_of(&shadow[i * 8..i * 8 + 8]);
            let index = offset as usize / 8 + i;
            let at_window = window_position(source, index).is_some();
            let (want, child, repeat) = match previous {
                Some((pg, want, child)) if pg == g && !at_window => (want, child, true),
                _ => {
                    let (want, child) = self.derive(source, index, g, io)?;
                    previous = (!at_window).then_some((g, want, child));
                    (want, child, false)
                }
            };
            if want != old {
                // Entry first, then the references: a failed write leaves
                // the counts true to what is in memory.
                let at = frame.at(offset + (i * 8) as u64);
                io.mem.write(at, &want.raw().to_le_bytes())?;
                if let Some(c) = child {
                    self.slots[usize::from(c)].refs += 1;
                }
                io.stats.entries_changed += 1;
                if let Some(old_child) = self.child_of(old, level) {
                    self.deref(old_child, io)?;
                }
            }
            if let (Some(c), false) = (child, repeat) {
                self.visit(c, io)?;
            }
        }
        Ok(())
    }

    /// The shadow entry for guest entry `g`, entry `index` of the table
    /// `source` shadows, and the shadow table it names (allocated if new).
    fn derive<M: PhysMem + ?Sized>(
        &mut self,
        source: Source,
        index: usize,
        g: Entry,
        io: &mut Io<'_, M>,
    ) -> Result<(Entry, Option<u16>), ShadowError> {
        let level = source.level();
        match window_position(source, index) {
            Some(WindowPosition::Entry) => {
                // The window itself: the monitor's, whatever the guest's
                // entry says (never read, never shadowed; see the module
                // docs).
                let pd = self.frame_at(WINDOW_PD).number();
                return Ok((Entry::new(pd, WRITABLE), None));
            }
            Some(WindowPosition::Pdp) => {
                // The PDP holding the window: the guest's own (shadowed
                // as a window PDP), or, where the guest has none, the
                // monitor's (only the window present).
                let page = g.page(level);
                let owned = GuestPage::new(page).ok().and_then(|p| io.map.frame_of(p));
                if !g.is_present() || owned.is_none() {
                    let pdp = self.frame_at(WINDOW_PDP).number();
                    return Ok((Entry::new(pdp, WRITABLE), None));
                }
                let source = Source::Table {
                    page,
                    level: Level::Pdp,
                    window: true,
                };
                let child = self.ensure(source, io)?;
                return Ok((
                    Entry::new(self.slot_frame(child).number(), g.raw() & WRITABLE),
                    Some(child),
                ));
            }
            None => {}
        }
        if !g.is_present() {
            return Ok((Entry::ABSENT, None));
        }
        let writable = g.raw() & WRITABLE;
        if g.is_leaf(level) {
            return match level {
                Level::Pt => {
                    let frame = self.guest_frame(g.page(level), io.map);
                    Ok((
                        Entry::new(frame.number(), writable | g.cache_bits(level)),
                        None,
                    ))
                }
                Level::Pd => {
                    let source = Source::Split {
                        first: g.page(level),
                        flags: writable | (g.raw() & HUGE_CACHE_BITS),
                    };
                    let child = self.ensure(source, io)?;
                    Ok((
                        Entry::new(self.slot_frame(child).number(), WRITABLE),
                        Some(child),
                    ))
                }
                Level::Pdp | Level::Pml4 => Err(ShadowError::HugePage1G {
                    page: g.page(level),
                }),
            };
        }
        let Some(next) = level.next() else {
            return Ok((Entry::ABSENT, None));
        };
        let page = g.page(level);
        let owned = GuestPage::new(page).ok().and_then(|p| io.map.frame_of(p));
        if owned.is_none() {
            return Ok((
                Entry::new(self.scratch_table(next).number(), writable),
                None,
            ));
        }
        let source = Source::Table {
            page,
            level: next,
            window: false,
        };
        let child = self.ensure(source, io)?;
        Ok((
            Entry::new(self.slot_frame(child).number(), writable),
            Some(child),
        ))
    }

    /// The frame a guest leaf may reach for guest page number `page`: its
    /// own frame, or the scratch page.
    fn guest_frame(&self, page: u64, map: &dyn GuestMemoryMap) -> PhysFrame {
        GuestPage::new(page)
            .ok()
            .and_then(|p| map.frame_of(p))
            .unwrap_or_else(|| self.scratch_page())
    }
}

/// One cached root of [`ContextShadows`].
#[derive(Debug)]
struct CachedRoot {
    root: ShadowRoot,
    /// Submitted contexts (execlist elements) that use it now.
    users: u32,
    /// When it was last acquired (a counter).
    last_used: u64,
}

/// The shadow PPGTTs of one vGPU's contexts: the tables ([`ShadowPpgtt`])
/// and up to `R` roots. A root is acquired for each submitted context
/// (synced then, [`SyncScope::Changed`]) and released when the context's
/// work is done or dropped; a released root stays cached, so the next
/// submission of that context only re-validates it. When a new root finds
/// every place taken, or its tables exceed the budget, a root no context
/// uses is evicted, least recently used first (as GVT-g reclaims unpinned
/// shadow mms), and the acquisition retried, until it succeeds or nothing
/// is left to evict. Not `Clone`:
/// it owns its pool's frames.
#[derive(Debug)]
pub struct ContextShadows<const N: usize, const R: usize> {
    tables: ShadowPpgtt<N>,
    roots: [Option<CachedRoot>; R],
    clock: u64,
}

impl<const N: usize, const R: usize> ContextShadows<N, R> {
    /// Shadows over the pool at `pool` (see [`ShadowPpgtt::new`]).
    pub fn new<M: PhysMem + ?Sized>(
        pool: PhysFrame,
        budget: usize,
        mem: &mut M,
    ) -> Result<Self, ShadowError> {
        Ok(ContextShadows {
            tables: ShadowPpgtt::new(pool, budget, mem)?,
            roots: core::array::from_fn(|_| None),
            clock: 0,
        })
    }

    /// The tables.
    pub fn tables(&self) -> &ShadowPpgtt<N> {
        &self.tables
    }

    /// The shadow PML4 of guest PML4 `pml4`, if cached.
    pub fn frame_of(&self, pml4: GuestPage) -> Option<PhysFrame> {
        self.roots
            .iter()
            .flatten()
            .find(|c| c.root.guest() == pml4)
            .map(|c| c.root.frame())
    }

    /// Acquires the shadow of `pml4` for one submitted context, synced
    /// with the guest's tables as they are now.
    pub fn acquire<M: PhysMem + ?Sized>(
        &mut self,
        pml4: GuestPage,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
    ) -> Result<PhysFrame, ShadowError> {
        loop {
            match self.try_acquire(pml4, map, mem) {
                Err(ShadowError::BudgetExceeded { .. } | ShadowError::TooManyRoots { .. })
                    if self.evict_oldest_unused(pml4, map, mem)? => {}
                other => return other,
            }
        }
    }

    fn try_acquire<M: PhysMem + ?Sized>(
        &mut self,
        pml4: GuestPage,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
    ) -> Result<PhysFrame, ShadowError> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(c) = self
            .roots
            .iter_mut()
            .flatten()
            .find(|c| c.root.guest() == pml4)
        {
            self.tables.sync(&c.root, map, mem, SyncScope::Changed)?;
            c.users += 1;
            c.last_used = clock;
            return Ok(c.root.frame());
        }
        let Some(free) = self.roots.iter().position(Option::is_none) else {
            return Err(ShadowError::TooManyRoots { max: R });
        };
        let (root, _) = self.tables.pin(pml4, map, mem)?;
        let frame = root.frame();
        self.roots[free] = Some(CachedRoot {
            root,
            users: 1,
            last_used: clock,
        });
        Ok(frame)
    }

    /// Evicts the least recently used root no context uses (but `keep`);
    /// whether one went.
    fn evict_oldest_unused<M: PhysMem + ?Sized>(
        &mut self,
        keep: GuestPage,
        map: &dyn GuestMemoryMap,
        mem: &mut M,
    ) -> Result<bool, ShadowError> {
        let oldest = self
            .roots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.users == 0 && c.root.guest() != keep)
            .min_by_key(|(_, c)| c.last_used)
            .map(|(i, _)| i);
        match oldest.and_then(|i| self.roots[i].take()) {
            Some(c) => {
                self.tables.unpin(c.root, map, mem)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One submitted context of `pml4` is done with it.
    pub fn release(&mut self, pml4: GuestPage) {
        if let Some(c) = self
            .roots
            .iter_mut()
            .flatten()
            .find(|c| c.root.guest() == pml4)
        {
            c.users = c.users.saturating_sub(1);
        }
    }

    /// Drops every root and table (reset, teardown).
    pub fn release_all(&mut self) {
        self.roots = core::array::from_fn(|_| None);
        self.tables.release_all();
    }
}

/// A digest of one chunk of a guest table, to tell a chunk the guest left
/// alone from one it rewrote: four independent multiply-xor lanes over the
/// 64 entries. Not collision-resistant, and it need not be: a guest that
/// forges a collision keeps its own previous mapping, which names only its
/// own frames.
fn chunk_digest(chunk: &[u8; CHUNK * 8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [1u64, 2, 3, 4];
    for block in chunk.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            *lane = (*lane ^ u64::from_le_bytes(b))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    lanes
        .iter()
        .fold(0u64, |h, l| (h ^ l).wrapping_mul(K).rotate_left(31))
}

/// Which part of the path to the reserved window an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WindowPosition {
    /// PML4 entry 511: names the PDP holding the window.
    Pdp,
    /// Entry 511 of that PDP: the window (1 GiB).
    Entry,
}

/// Where entry `index` of the table `source` shadows lies on the path to
/// the window, if it does.
fn window_position(source: Source, index: usize) -> Option<WindowPosition> {
    match source {
        Source::Table {
            level: Level::Pml4, ..
        } if index == WINDOW_INDEX => Some(WindowPosition::Pdp),
        Source::Table {
            level: Level::Pdp,
            window: true,
            ..
        } if index == WINDOW_INDEX => Some(WindowPosition::Entry),
        _ => None,
    }
}

fn entry_of(raw: &[u8]) -> Entry {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[..8]);
    Entry::from_raw(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::super::{walk, HostTables, PpgttAddr, BIT7, PCD, PRESENT, PWT, WINDOW_BASE};
    use super::*;
    use crate::testutil::SparseMem;
    use crate::vgpu::{FrameRun, FrameRuns};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Guest pages 0..GUEST_PAGES live in frames from GUEST_FRAME; frames
    /// from FOREIGN_FRAME are another vGPU's; the pool starts at POOL.
    const GUEST_PAGES: u64 = 64;
    const GUEST_FRAME: u64 = 0x1000;
    const FOREIGN_FRAME: u64 = 0x2000;
    const POOL: u64 = 0x8000;

    struct Guest {
        mem: SparseMem,
        map: FrameRuns<1>,
    }

    impl Guest {
        fn new() -> Self {
            let mut map = FrameRuns::new();
            map.push(FrameRun {
                first_page: GuestPage::new(0).unwrap(),
                first_frame: PhysFrame::new(GUEST_FRAME).unwrap(),
                count: GUEST_PAGES,
            })
            .unwrap();
            Guest {
                mem: SparseMem::new(1 << 32),
                map,
            }
        }
        fn set(&mut self, page: u64, index: usize, e: Entry) {
            let at = PhysFrame::new(GUEST_FRAME + page)
                .unwrap()
                .at(index as u64 * 8);
            self.mem.write(at, &e.raw().to_le_bytes()).unwrap();
        }
        fn table(&mut self, page: u64, index: usize, child: u64) {
            self.set(page, index, Entry::new(child, WRITABLE));
        }
    }

    fn page(n: u64) -> GuestPage {
        GuestPage::new(n).unwrap()
    }

    fn shadow<const N: usize>(g: &mut Guest, budget: usize) -> ShadowPpgtt<N> {
        ShadowPpgtt::new(PhysFrame::new(POOL).unwrap(), budget, &mut g.mem).unwrap()
    }

    /// What the shadow must translate `addr` to: the guest's own walk,
    /// with every page that is not the guest's replaced by the scratch
    /// page (a foreign table: everything below it), and the writable bits
    /// of the entries above; in the reserved window, the monitor's
    /// read-only batch frames (`window`: the first), whatever the guest
    /// has (a PML4 entry 511 it leaves absent or foreign leads to a PDP
    /// with nothing but the window).
    fn expected(
        g: &Guest,
        root: u64,
        addr: u64,
        scratch: u64,
        window: u64,
    ) -> Result<(u64, bool), Level> {
        let a = PpgttAddr::new(addr).unwrap();
        let top = a.index(Level::Pml4) == WINDOW_INDEX;
        if top && a.index(Level::Pdp) == WINDOW_INDEX {
            return match (a.index(Level::Pd), a.index(Level::Pt) as u64) {
                (0, pt) if pt < WINDOW_BATCH_PAGES => Ok((window + pt, false)),
                (0, _) => Err(Level::Pt),
                _ => Err(Level::Pd),
            };
        }
        let mut table = root;
        let mut writable = true;
        for level in Level::ALL {
            if top
                && level == Level::Pdp
                && GuestPage::new(table)
                    .ok()
                    .and_then(|p| g.map.frame_of(p))
                    .is_none()
            {
                return Err(Level::Pdp);
            }
            let Some(frame) = GuestPage::new(table).ok().and_then(|p| g.map.frame_of(p)) else {
                return Ok((scratch, writable));
            };
            let e = super::super::read_entry(&g.mem, frame, a.index(level)).unwrap();
            if !e.is_present() {
                return Err(if top && level == Level::Pml4 {
                    Level::Pdp
                } else {
                    level
                });
            }
            writable &= e.is_writable();
            if e.is_leaf(level) {
                let within = (addr & ((1 << level.shift()) - 1)) >> 12;
                let p = e.page(level) + within;
                let f = GuestPage::new(p)
                    .ok()
                    .and_then(|p| g.map.frame_of(p))
                    .map_or(scratch, |f| f.number());
                return Ok((f, writable));
            }
            table = e.page(level);
        }
        unreachable!()
    }

    fn actual(g: &Guest, root: &ShadowRoot, addr: u64) -> Result<(u64, bool), Level> {
        let t = HostTables { mem: &g.mem };
        match walk(&t, root.frame().number(), PpgttAddr::new(addr).unwrap()) {
            Ok(t) => Ok((t.page, t.writable)),
            Err(super::super::WalkError::NotPresent { level }) => Err(level),
            Err(e) => panic!("shadow walk unreadable: {e:?}"),
        }
    }

    /// Addresses whose index at every level is one of `IDX`, at two page
    /// offsets.
    const IDX: [u64; 4] = [0, 1, 2, 511];
    fn probe_addresses() -> impl Iterator<Item = u64> {
        IDX.into_iter().flat_map(|a| {
            IDX.into_iter().flat_map(move |b| {
                IDX.into_iter().flat_map(move |c| {
                    IDX.into_iter()
                        .map(move |d| a << 39 | b << 30 | c << 21 | d << 12 | 0x18)
                })
            })
        })
    }

    fn assert_contained<const N: usize>(g: &Guest, s: &ShadowPpgtt<N>, root: &ShadowRoot) {
        let scratch = s.scratch_page().number();
        let window = s.window_batch_frame(0).unwrap().number();
        for addr in probe_addresses() {
            let got = actual(g, root, addr);
            assert_eq!(
                got,
                expected(g, root.guest().number(), addr, scratch, window),
                "{addr:#x}"
            );
            if let Ok((frame, _)) = got {
                let own = (GUEST_FRAME..GUEST_FRAME + GUEST_PAGES).contains(&frame)
                    || (window..window + WINDOW_BATCH_PAGES).contains(&frame);
                assert!(
                    own || frame == scratch,
                    "{addr:#x} reaches frame {frame:#x}"
                );
            }
        }
    }

    /// Distinct shadow tables the guest's tables from `root` need: one per
    /// (guest table, level) reachable (a PDP below PML4 entry 511 apart),
    /// one per 2 MiB page; none for the window.
    fn needed(g: &Guest, root: u64) -> usize {
        fn go(
            g: &Guest,
            (page, window): (u64, bool),
            level: Level,
            seen: &mut BTreeSet<(u64, Level, u64)>,
        ) {
            if !seen.insert((page, level, u64::from(window) << 40)) {
                return;
            }
            let Some(next) = level.next() else { return };
            let frame = g.map.frame_of(GuestPage::new(page).unwrap()).unwrap();
            for i in 0..ENTRIES {
                let e = super::super::read_entry(&g.mem, frame, i).unwrap();
                if !e.is_present() || (window && i == WINDOW_INDEX) {
                    continue;
                }
                if e.is_leaf(level) {
                    let flags = e.raw() & (WRITABLE | HUGE_CACHE_BITS);
                    seen.insert((e.page(level), Level::Pt, 1 + flags));
                    continue;
                }
                let child = e.page(level);
                if GuestPage::new(child)
                    .ok()
                    .and_then(|p| g.map.frame_of(p))
                    .is_some()
                {
                    let below = level == Level::Pml4 && i == WINDOW_INDEX;
                    go(g, (child, below), next, seen);
                }
            }
        }
        let mut seen = BTreeSet::new();
        go(g, (root, false), Level::Pml4, &mut seen);
        seen.len()
    }

    /// PML4 in page 1 -> PDP 2 -> PD 3 -> PT 4, PT entry 0 -> page 10.
    fn simple(g: &mut Guest) {
        g.table(1, 0, 2);
        g.table(2, 0, 3);
        g.table(3, 0, 4);
        g.set(4, 0, Entry::new(10, WRITABLE));
    }

    #[test]
    fn shadow_maps_guest_pages_to_their_frames_and_keeps_absent_entries_absent() {
        let mut g = Guest::new();
        simple(&mut g);
        g.set(4, 1, Entry::new(11, 0)); // read-only
        let mut s = shadow::<16>(&mut g, 16);
        let (root, stats) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(stats.tables_allocated, 4);
        assert_eq!(actual(&g, &root, 0x18), Ok((GUEST_FRAME + 10, true)));
        assert_eq!(actual(&g, &root, 0x1018), Ok((GUEST_FRAME + 11, false)));
        assert_eq!(actual(&g, &root, 0x2018), Err(Level::Pt));
        assert_eq!(actual(&g, &root, 1 << 39), Err(Level::Pml4));
        assert_contained(&g, &s, &root);
        // The shadow PML4 is not the guest's: the guest's page is untouched.
        assert_ne!(root.frame().number(), GUEST_FRAME + 1);
        s.unpin(root, &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 0);
    }

    #[test]
    fn foreign_pages_map_to_the_scratch_page_never_to_their_frame() {
        let mut g = Guest::new();
        simple(&mut g);
        // A PTE naming another vGPU's frame as if it were a guest page, a
        // PTE beyond every guest page number, a PD entry naming a foreign
        // table, a PDP entry naming the pool's own scratch PT.
        g.set(4, 1, Entry::new(FOREIGN_FRAME, WRITABLE));
        g.set(
            4,
            2,
            Entry::from_raw(((1 << 46) - 0x1000) | PRESENT | WRITABLE),
        );
        g.table(3, 1, FOREIGN_FRAME + 3);
        g.table(2, 1, POOL + 1);
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        let scratch = s.scratch_page().number();
        assert_eq!(scratch, POOL);
        assert_eq!(actual(&g, &root, 0x1000), Ok((scratch, true)));
        assert_eq!(actual(&g, &root, 0x2000), Ok((scratch, true)));
        assert_eq!(actual(&g, &root, 0x20_0000 + 0x5000), Ok((scratch, true)));
        assert_eq!(actual(&g, &root, 0x4000_0000), Ok((scratch, true)));
        assert_contained(&g, &s, &root);
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn only_the_present_writable_and_cache_bits_reach_the_shadow() {
        let mut g = Guest::new();
        simple(&mut g);
        // Reserved and software bits, IPS in the PD entry, bits above the
        // address field: none survive.
        let noisy = (0x3f << 52) | (1 << 63) | (1 << 11) | (1 << 9) | (1 << 5) | (1 << 6);
        g.set(3, 0, Entry::from_raw(Entry::new(4, WRITABLE).raw() | noisy));
        g.set(
            4,
            0,
            Entry::from_raw(Entry::new(10, WRITABLE | PWT | PCD | BIT7).raw() | noisy),
        );
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        let t = HostTables { mem: &g.mem };
        let mut table = root.frame().number();
        for level in Level::ALL {
            let e = super::super::read_entry(&g.mem, PhysFrame::new(table).unwrap(), 0).unwrap();
            let allowed = if level == Level::Pt {
                PRESENT | WRITABLE | PWT | PCD | BIT7 | super::super::ADDR_MASK
            } else {
                PRESENT | WRITABLE | super::super::ADDR_MASK
            };
            assert_eq!(e.raw() & !allowed, 0, "{level}: {:#x}", e.raw());
            table = e.page(Level::Pml4);
        }
        assert!(walk(&t, root.frame().number(), PpgttAddr::new(0).unwrap()).is_ok());
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn the_window_is_the_monitors_whatever_the_guest_maps_there() {
        let mut g = Guest::new();
        simple(&mut g);
        let mut s = shadow::<8>(&mut g, 8);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        // Without a guest PML4 entry 511 the window is there, read-only.
        let window = s.window_batch_frame(0).unwrap().number();
        assert_eq!(actual(&g, &root, WINDOW_BASE), Ok((window, false)));
        assert_eq!(
            actual(&g, &root, WINDOW_BASE + 0x3000),
            Ok((window + 3, false))
        );
        assert_eq!(s.window_batch_frame(WINDOW_BATCH_PAGES), None);
        // The guest's own PDP at PML4 entry 511: its entries are the
        // guest's but for entry 511, the window.
        g.table(1, WINDOW_INDEX, 5);
        g.table(5, 0, 3);
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Changed)
            .unwrap();
        assert_eq!(
            actual(&g, &root, 0xff80_0000_0000),
            Ok((GUEST_FRAME + 10, true))
        );
        assert_eq!(actual(&g, &root, WINDOW_BASE), Ok((window, false)));
        assert_contained(&g, &s, &root);
        // The guest maps its own page (through PD 3, PT 4: page 10) in the
        // window: the window's frames stay, read-only, and the guest's PD
        // is not shadowed a second time for it.
        let before = s.tables_in_use();
        g.table(5, WINDOW_INDEX, 3);
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Changed)
            .unwrap();
        assert_eq!(actual(&g, &root, WINDOW_BASE), Ok((window, false)));
        assert_eq!(s.tables_in_use(), before);
        assert_contained(&g, &s, &root);
        // The same page elsewhere maps as the guest says, entry 511
        // included; below PML4 entry 511 the window still wins.
        g.table(1, 0, 5);
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Changed)
            .unwrap();
        assert_eq!(
            actual(&g, &root, 0x7f_c000_0000),
            Ok((GUEST_FRAME + 10, true))
        );
        assert_eq!(actual(&g, &root, WINDOW_BASE), Ok((window, false)));
        assert_contained(&g, &s, &root);
        // Unpinning releases every table, both shadows of PDP 5 included;
        // a fresh pin of such tables agrees.
        let in_use = s.tables_in_use();
        s.unpin(root, &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 0);
        let mut t = shadow::<8>(&mut g, 8);
        let (other, _) = t.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(t.tables_in_use(), in_use);
        assert_contained(&g, &t, &other);
    }

    #[test]
    fn shared_guest_tables_are_shadowed_once() {
        // i915's layout: every PML4 entry names one scratch PDP, every PDP
        // entry one scratch PD, every PD entry one scratch PT, all present,
        // up to the reserved window. The scratch PDP is shadowed twice: as
        // the window's PDP (below PML4 entry 511, its entry 511 the
        // monitor's window) and as any other.
        let mut g = Guest::new();
        for i in 0..ENTRIES {
            g.table(1, i, 2);
            g.table(2, i, 3);
            g.table(3, i, 4);
            g.set(4, i, Entry::new(5, WRITABLE));
        }
        let mut s = shadow::<8>(&mut g, 8);
        let (root, stats) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 5);
        assert_eq!(stats.tables_checked, 5);
        for addr in [0x1234_5000, 0xff80_0000_0000, 0xffff_bfff_f000] {
            assert_eq!(actual(&g, &root, addr), Ok((GUEST_FRAME + 5, true)));
        }
        let window = s.window_batch_frame(0).unwrap().number();
        assert_eq!(actual(&g, &root, WINDOW_BASE), Ok((window, false)));
        assert_contained(&g, &s, &root);
        s.unpin(root, &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 0);
    }

    #[test]
    fn exceeding_the_budget_is_a_typed_guest_error_that_holds_nothing() {
        let mut g = Guest::new();
        simple(&mut g);
        // Ten distinct PTs under one PD: 13 tables in all.
        for i in 0..10 {
            g.table(3, i, 20 + i as u64);
        }
        let mut s = shadow::<16>(&mut g, 8);
        let err = s.pin(page(1), &g.map, &mut g.mem).unwrap_err();
        assert_eq!(err, ShadowError::BudgetExceeded { budget: 8 });
        assert!(err.is_guest_fault());
        assert_eq!(s.tables_in_use(), 0);
        // Within budget once the guest needs fewer.
        for i in 5..10 {
            g.set(3, i, Entry::ABSENT);
        }
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 8);
        // A later update that needs one more table fails the sync, leaves
        // the shadow contained, and is retried by the next sync.
        g.table(3, 5, 30);
        let written = |p: GuestPage| p.number() == 3;
        let err = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Written(&written))
            .unwrap_err();
        assert_eq!(err, ShadowError::BudgetExceeded { budget: 8 });
        assert_eq!(actual(&g, &root, 5 << 21), Err(Level::Pd));
        g.set(3, 4, Entry::ABSENT);
        let nothing = |_: GuestPage| false;
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Written(&nothing))
            .unwrap();
        assert_contained(&g, &s, &root);
        assert_eq!(s.tables_in_use(), 8);
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn only_the_budgets_frames_of_the_pool_are_ever_written() {
        let mut g = Guest::new();
        simple(&mut g);
        for i in 0..10 {
            g.table(3, i, 20 + i as u64);
        }
        // The frames past a pool of 8 table pages (another owner's).
        let past = POOL + pool_frames(8);
        let sentinel = [0xa5u8; PAGE_SIZE as usize];
        for f in past..past + 8 {
            g.mem
                .write(PhysFrame::new(f).unwrap().start(), &sentinel)
                .unwrap();
        }
        let mut s = shadow::<16>(&mut g, 8);
        for _ in 0..3 {
            assert!(s.pin(page(1), &g.map, &mut g.mem).is_err());
            for i in 5..10 {
                g.set(3, i, Entry::ABSENT);
            }
            let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
            assert_eq!(s.tables_in_use(), 8);
            s.unpin(root, &g.map, &mut g.mem).unwrap();
            s.release_all();
            for i in 5..10 {
                g.table(3, i, 20 + i as u64);
            }
        }
        for f in past..past + 8 {
            let mut b = [0u8; PAGE_SIZE as usize];
            g.mem
                .read(PhysFrame::new(f).unwrap().start(), &mut b)
                .unwrap();
            assert_eq!(b, sentinel, "frame {f:#x} past the pool was written");
        }
    }

    #[test]
    fn sync_applies_updates_and_releases_tables_the_guest_dropped() {
        let mut g = Guest::new();
        simple(&mut g);
        g.table(3, 1, 5);
        g.set(5, 7, Entry::new(12, WRITABLE));
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 5);
        // Unchanged: nothing rewritten.
        let stats = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Everything)
            .unwrap();
        assert_eq!((stats.tables_read, stats.entries_changed), (5, 0));
        // Remap one page, drop the second PT.
        g.set(4, 0, Entry::new(13, WRITABLE));
        g.set(3, 1, Entry::ABSENT);
        let stats = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Everything)
            .unwrap();
        assert_eq!(stats.entries_changed, 2);
        assert_eq!(stats.tables_freed, 1);
        assert_eq!(s.tables_in_use(), 4);
        assert_eq!(actual(&g, &root, 0), Ok((GUEST_FRAME + 13, true)));
        assert_eq!(actual(&g, &root, 0x20_0000 + 0x7000), Err(Level::Pd));
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn the_changed_scope_rederives_only_the_chunks_the_guest_rewrote() {
        let mut g = Guest::new();
        simple(&mut g);
        for i in 1..8 {
            g.table(3, i, 20 + i as u64);
            g.set(20 + i as u64, 100, Entry::new(30, WRITABLE));
        }
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        let stats = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Changed)
            .unwrap();
        assert_eq!((stats.tables_read, stats.chunks_derived), (11, 0));
        // One PTE and one PD entry rewritten: their two chunks re-derive.
        g.set(23, 100, Entry::new(31, WRITABLE));
        g.set(3, 7, Entry::ABSENT);
        let stats = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Changed)
            .unwrap();
        assert_eq!(stats.chunks_derived, 2);
        assert_eq!(stats.entries_changed, 2);
        assert_eq!(stats.tables_freed, 1);
        assert_eq!(
            actual(&g, &root, 3 << 21 | 100 << 12),
            Ok((GUEST_FRAME + 31, true))
        );
        assert_contained(&g, &s, &root);
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn a_written_scope_rereads_only_the_written_tables() {
        let mut g = Guest::new();
        simple(&mut g);
        for i in 1..8 {
            g.table(3, i, 20 + i as u64);
        }
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        g.set(23, 4, Entry::new(40, WRITABLE));
        let written = |p: GuestPage| p.number() == 23;
        let stats = s
            .sync(&root, &g.map, &mut g.mem, SyncScope::Written(&written))
            .unwrap();
        assert_eq!(stats.tables_read, 1);
        assert_eq!(stats.entries_changed, 1);
        assert_eq!(
            actual(&g, &root, 3 << 21 | 4 << 12),
            Ok((GUEST_FRAME + 40, true))
        );
        // A scope that misses a write keeps the old (contained) mapping;
        // a full sync catches it up.
        g.set(24, 0, Entry::new(41, WRITABLE));
        let nothing = |_: GuestPage| false;
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Written(&nothing))
            .unwrap();
        assert_eq!(actual(&g, &root, 4 << 21), Err(Level::Pt));
        s.sync(&root, &g.map, &mut g.mem, SyncScope::Everything)
            .unwrap();
        assert_eq!(actual(&g, &root, 4 << 21), Ok((GUEST_FRAME + 41, true)));
        s.unpin(root, &g.map, &mut g.mem).unwrap();
    }

    #[test]
    fn a_2m_page_is_split_into_4k_entries_and_a_1g_page_is_refused() {
        let mut g = Guest::new();
        simple(&mut g);
        // 2 MiB at guest page 0: its first 64 pages are the guest's, the
        // rest map to scratch.
        g.set(3, 1, Entry::from_raw(PRESENT | WRITABLE | BIT7 | PCD));
        let mut s = shadow::<16>(&mut g, 16);
        let (root, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(
            actual(&g, &root, 0x20_0000 + 0x3000),
            Ok((GUEST_FRAME + 3, true))
        );
        assert_eq!(actual(&g, &root, 0x20_0000 + 0x40_000), Ok((POOL, true)));
        assert_contained(&g, &s, &root);
        g.set(2, 1, Entry::from_raw(PRESENT | WRITABLE | BIT7));
        assert_eq!(
            s.sync(&root, &g.map, &mut g.mem, SyncScope::Everything),
            Err(ShadowError::HugePage1G { page: 0 })
        );
        s.unpin(root, &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 0);
    }

    #[test]
    fn roots_are_shared_refcounted_and_stale_after_release_all() {
        let mut g = Guest::new();
        simple(&mut g);
        let mut s = shadow::<16>(&mut g, 16);
        let (a, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        let (b, _) = s.pin(page(1), &g.map, &mut g.mem).unwrap();
        assert_eq!(a.frame(), b.frame());
        s.unpin(a, &g.map, &mut g.mem).unwrap();
        assert_eq!(s.tables_in_use(), 4);
        assert_eq!(
            s.pin(page(GUEST_PAGES), &g.map, &mut g.mem).unwrap_err(),
            ShadowError::RootNotGuestPage { page: GUEST_PAGES }
        );
        s.release_all();
        assert_eq!(s.tables_in_use(), 0);
        assert_eq!(
            s.sync(&b, &g.map, &mut g.mem, SyncScope::Everything),
            Err(ShadowError::StaleRoot)
        );
    }

    #[test]
    fn context_shadows_cache_released_roots_and_evict_them_when_full() {
        let mut g = Guest::new();
        // Three PML4s (pages 1, 5, 6) sharing PDP 2 -> PD 3 -> PT 4.
        simple(&mut g);
        g.table(5, 0, 2);
        g.table(6, 0, 2);
        let pool = PhysFrame::new(POOL).unwrap();
        let mut c = ContextShadows::<8, 2>::new(pool, 8, &mut g.mem).unwrap();
        let a = c.acquire(page(1), &g.map, &mut g.mem).unwrap();
        let b = c.acquire(page(5), &g.map, &mut g.mem).unwrap();
        assert_ne!(a, b);
        assert_eq!(c.tables().tables_in_use(), 5);
        // Both places in use: a third root is refused.
        assert_eq!(
            c.acquire(page(6), &g.map, &mut g.mem),
            Err(ShadowError::TooManyRoots { max: 2 })
        );
        // Released, a root stays cached (same shadow), and is evicted,
        // least recently used first, when a new one needs its place.
        c.release(page(1));
        assert_eq!(c.acquire(page(1), &g.map, &mut g.mem), Ok(a));
        c.release(page(1));
        c.release(page(5));
        let _ = c.acquire(page(5), &g.map, &mut g.mem).unwrap();
        c.release(page(5));
        assert!(c.acquire(page(6), &g.map, &mut g.mem).is_ok());
        assert_eq!(c.frame_of(page(1)), None, "the oldest went");
        assert!(c.frame_of(page(5)).is_some());
        c.release_all();
        assert_eq!(c.tables().tables_in_use(), 0);
    }

    /// One guest entry, from a small alphabet that covers every case.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Absent,
        /// A guest table page (0..12) or data page, writable or not.
        Guest(u64, bool),
        /// A foreign frame number.
        Foreign,
        /// A 2 MiB page (only meaningful at PD; elsewhere as Guest).
        Huge,
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            2 => Just(Kind::Absent),
            6 => (0..12u64, any::<bool>()).prop_map(|(p, w)| Kind::Guest(p, w)),
            1 => Just(Kind::Foreign),
            1 => Just(Kind::Huge),
        ]
    }

    /// (table page, index, kind): an entry the guest writes.
    fn write() -> impl Strategy<Value = (u64, usize, Kind)> {
        (0..12u64, 0..IDX.len(), kind())
    }

    fn apply(g: &mut Guest, (table, idx, k): (u64, usize, Kind), root_level_of: u64) {
        let index = IDX[idx] as usize;
        let e = match k {
            Kind::Absent => Entry::ABSENT,
            Kind::Guest(p, w) => Entry::new(p, if w { WRITABLE } else { 0 }),
            Kind::Foreign => Entry::new(FOREIGN_FRAME + table, WRITABLE),
            // Only PD tables (pages 6..9 by convention) get size bits, so
            // no 1 GiB page arises at a PDP.
            Kind::Huge if (6..9).contains(&table) => {
                Entry::from_raw(PRESENT | WRITABLE | BIT7 | (root_level_of << 21))
            }
            Kind::Huge => Entry::new(table + 1, WRITABLE),
        };
        g.set(table, index, e);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random guest tables, then random rewrites: after every sync the
        /// shadow translates every probe address as the guest's own walk
        /// does with foreign pages on scratch, reaches no foreign frame,
        /// holds exactly the tables the guest's tables need, and a fresh
        /// shadow built from the same tables agrees.
        #[test]
        fn shadow_follows_random_guest_tables(
            initial in proptest::collection::vec(write(), 1..60),
            rounds in proptest::collection::vec(
                (proptest::collection::vec(write(), 1..8), 0..3u8), 1..6),
        ) {
            let mut g = Guest::new();
            // 1 GiB pages never arise: PDP-level size bits only in pages
            // the generator marks as PD tables (see `apply`).
            for w in &initial {
                apply(&mut g, *w, 0);
            }
            let root_page = 1;
            let mut s = shadow::<64>(&mut g, 64);
            let (root, _) = match s.pin(page(root_page), &g.map, &mut g.mem) {
                Ok(r) => r,
                Err(ShadowError::HugePage1G { .. }) => {
                    return Ok(())
                }
                Err(e) => panic!("{e}"),
            };
            assert_contained(&g, &s, &root);
            prop_assert_eq!(s.tables_in_use(), needed(&g, root_page));
            for (writes, scope) in rounds {
                let mut touched = BTreeSet::new();
                for w in &writes {
                    apply(&mut g, *w, 0);
                    touched.insert(w.0);
                }
                let written = |p: GuestPage| touched.contains(&p.number());
                let scope = match scope {
                    0 => SyncScope::Everything,
                    1 => SyncScope::Changed,
                    _ => SyncScope::Written(&written),
                };
                match s.sync(&root, &g.map, &mut g.mem, scope) {
                    Ok(_) => {}
                    Err(ShadowError::HugePage1G { .. }) => {
                        return Ok(())
                    }
                    Err(e) => panic!("{e}"),
                }
                assert_contained(&g, &s, &root);
                prop_assert_eq!(s.tables_in_use(), needed(&g, root_page));
                let other_pool = POOL + 0x1000;
                let mut fresh = ShadowPpgtt::<64>::new(
                    PhysFrame::new(other_pool).unwrap(), 64, &mut g.mem).unwrap();
                let (other, _) = fresh.pin(page(root_page), &g.map, &mut g.mem).unwrap();
                for addr in probe_addresses() {
                    let (a, b) = (actual(&g, &root, addr), actual(&g, &other, addr));
                    let same = match (a, b) {
                        (Ok((x, wx)), Ok((y, wy))) => wx == wy
                            && (x == y
                                || (x.checked_sub(POOL) == y.checked_sub(other_pool)
                                    && x < POOL + POOL_HEADER_FRAMES)),
                        (x, y) => x == y,
                    };
                    prop_assert!(same, "{:#x}: {:?} vs {:?}", addr, a, b);
                }
                fresh.unpin(other, &g.map, &mut g.mem).unwrap();
            }
            s.unpin(root, &g.map, &mut g.mem).unwrap();
            prop_assert_eq!(s.tables_in_use(), 0);
        }
    }
}
