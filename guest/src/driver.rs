//! The guest's vGPU driver, as a GVT-g guest driver works: it reads PVINFO
//! from its virtual BAR0 to learn its aperture and hidden slices
//! (ballooning), maps its own RAM into them through the GGTT window at
//! BAR0 + 8 MiB, runs one ring per engine it uses, and submits batch
//! buffers from its RAM, each ending with a post-sync write of a fence
//! value that it waits for.
//!
//! Layout of the guest RAM the driver keeps (page indices from the first
//! RAM page): a one-page ring per engine, a fence page, then a batch area
//! per engine of [`BATCH_PAGES`] pages (the scanner's shadow batch holds
//! 32 KiB). The workload's data pages follow ([`DATA_FIRST`]). RAM page
//! `i` is mapped at aperture page `i` while the aperture lasts, then at
//! hidden page `i - aperture pages`.
//!
//! # Two submission modes
//! * *Legacy rings* ([`Driver::boot`]): RING_START and RING_CTL once, a
//!   TAIL write per submission. The simple guests use only this.
//! * *Execlists* ([`Driver::boot_execlists`]), as a Gen9 i915 in a GVT-g
//!   VM drives an engine (`intel_lrc.c`): GFX_MODE's run-list enable, one
//!   logical ring context per engine in its own GM (a per-process status
//!   page, then the register state page with RING_HEAD/TAIL/START/CTL and
//!   PDP0, the root of its 4-level PPGTT), a submission written to the
//!   ring, its tail into the context image and the context's descriptor
//!   (valid, privileged, 4-level addressing: what `gpu::execlist`
//!   accepts) into ELSP; completion is its fence and the context's
//!   COMPLETE in the context status buffer (CSB), whose read pointer it
//!   moves on. Its PPGTT's tables are its own, in its RAM
//!   ([`Driver::ppgtt_map`]): a page of its RAM at any 48-bit address it
//!   chooses. An engine in execlist mode keeps the same ring page, but
//!   its batches are PPGTT batches, as i915 starts a user's batch: the
//!   fence page and the engine's batch pages are mapped in the PPGTT
//!   from [`DRIVER_VA`], the ring starts the batch with the Address
//!   Space Indicator set and the fence write goes to the fence page's
//!   PPGTT address. Every address in such a batch is a PPGTT address,
//!   which stays the same when the vGPU moves to other slices.
//!
//! In execlist mode the driver also holds the last [`EXECLIST_PAGES`]
//! pages of its RAM: the contexts (two pages per engine), then the PPGTT's
//! table pages, then one page for its user's state (surface states, a
//! binding table: [`Driver::state_page`], at [`STATE_VA`] in the PPGTT).

use core::fmt;

use gpu::addr::GuestPage;
use gpu::encode;
use gpu::engine::Engine;
use gpu::execlist::{self, lrc};
use gpu::ggtt::{GuestPte, PteFlags};
use gpu::ppgtt::{Entry, WRITABLE};
use gpu::regs::{masked, pvinfo, ring, GGTT_BAR0_OFFSET};

use crate::content::PAGE;
use crate::platform::Platform;

/// The engines the driver runs rings on: render (fences, counters) and the
/// blitter (bulk copies and fills).
pub const ENGINES: [Engine; 2] = [Engine::Render, Engine::Blitter];
/// Pages of one engine's batch area.
pub const BATCH_PAGES: u64 = 8;
/// DWords a batch may hold for the workload (the rest: fence and end).
pub const BATCH_CAPACITY: usize = BATCH_PAGES as usize * PAGE / 4 - 16;
const FENCE_PAGE: u64 = ENGINES.len() as u64;
const BATCH_FIRST: u64 = FENCE_PAGE + 1;
/// First RAM page index the workload may use.
pub const DATA_FIRST: u64 = BATCH_FIRST + ENGINES.len() as u64 * BATCH_PAGES;
/// Bytes a ring advances per submission (MI_BATCH_BUFFER_START + MI_NOOP).
const RING_STEP: u32 = 16;
/// Bytes a ring advances per [`Driver::queue`] entry: the commands, the
/// fence write, NOOPs up to it.
const QUEUE_STEP: u32 = 64;
/// Most command words one [`Driver::queue`] entry takes (the render
/// engine's fence write, a PIPE_CONTROL, takes 6 of its 16).
pub const QUEUE_WORDS: usize = 10;
/// Most [`Driver::queue`] entries outstanding on a ring (half of a
/// one-page ring, so the tail never laps the head).
pub const MAX_QUEUED: u32 = PAGE as u32 / QUEUE_STEP / 2;
/// The RAM page indices (from the driver's first) the aperture probe
/// (`guest::abi::Probe::Aperture`) uses: the first four data pages.
pub const APERTURE_PROBE_PAGES: [u64; 4] =
    [DATA_FIRST, DATA_FIRST + 1, DATA_FIRST + 2, DATA_FIRST + 3];
/// Pauses a wait for a fence may take before the driver gives up.
pub const WAIT_LIMIT: u32 = 1_000_000;
/// Pages of a logical ring context: the per-process status page and the
/// register state page (all the vGPU reads; i915's render context has
/// more, which hold state a vGPU does not restore from the image).
const CONTEXT_PAGES: u64 = 2;
/// Page-table pages the execlist mode's PPGTT may use.
pub const PPGTT_TABLES: u64 = 12;
/// RAM pages the execlist mode holds at the end of RAM: the contexts,
/// the PPGTT's tables, the state page.
pub const EXECLIST_PAGES: u64 = ENGINES.len() as u64 * CONTEXT_PAGES + PPGTT_TABLES + 1;

/// In execlist mode, RAM page index `i` below [`DATA_FIRST`] (the fence
/// page, the batch areas) is at PPGTT address `DRIVER_VA + i * 4096`.
pub const DRIVER_VA: u64 = 0x10_0000;
/// In execlist mode, the PPGTT address of [`Driver::state_page`] (in
/// the same page table as the driver's pages, below 4 GiB).
pub const STATE_VA: u64 = DRIVER_VA + DATA_FIRST * PAGE as u64;

/// Why the driver stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverError<E> {
    /// The platform refused an access (the vGPU stopped, say).
    Platform(E),
    /// PVINFO does not carry the GVT-g magic: not a vGPU.
    NoPvinfo {
        /// The magic read.
        magic: u64,
    },
    /// The RAM to map does not fit the slices PVINFO grants.
    TooLarge {
        /// RAM pages asked for.
        pages: u64,
        /// Pages of the aperture and hidden slices.
        room: u64,
    },
    /// A batch has no room for more commands.
    BatchFull,
    /// A fence never arrived: the GPU did not finish the batch.
    Timeout {
        /// The engine.
        engine: Engine,
        /// The fence value awaited.
        fence: u32,
    },
    /// Its RAM or graphics memory does not fit the fields that name them
    /// (a page number, a 32-bit register).
    OutOfRange,
    /// [`Driver::queue`] with [`MAX_QUEUED`] entries outstanding, or
    /// more than [`QUEUE_WORDS`] words.
    RingFull,
    /// [`Driver::ppgtt_map`] needs more table pages than
    /// [`PPGTT_TABLES`], or the driver is not in execlist mode.
    PpgttFull,
    /// The context status buffer reported something other than the
    /// context's own switches (a preemption the driver never asked for).
    Csb {
        /// The engine.
        engine: Engine,
        /// The status dword.
        status: u32,
    },
}

impl<E: fmt::Display> fmt::Display for DriverError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Platform(e) => write!(f, "{e}"),
            DriverError::NoPvinfo { magic } => {
                write!(f, "no vGPU: PVINFO magic {magic:#018x}")
            }
            DriverError::TooLarge { pages, room } => write!(
                f,
                "{pages} RAM pages do not fit the {room} pages of the vGPU's slices"
            ),
            DriverError::BatchFull => f.write_str("batch buffer full"),
            DriverError::Timeout { engine, fence } => {
                write!(f, "{engine}: fence {fence} never arrived")
            }
            DriverError::OutOfRange => {
                f.write_str("the driver's memory lies beyond what its vGPU's fields can name")
            }
            DriverError::RingFull => f.write_str("ring full: too many queued entries or words"),
            DriverError::PpgttFull => f.write_str(
                "the PPGTT needs more table pages than the driver keeps (or no execlist mode)",
            ),
            DriverError::Csb { engine, status } => {
                write!(f, "{engine}: unexpected context status {status:#x}")
            }
        }
    }
}

/// The driver of one vGPU. Plain data in the guest's memory: in a ring-3
/// guest it migrates with the guest's RAM and registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driver {
    ram_first: u64,
    ram_pages: u64,
    aperture_gm: u64,
    aperture_pages: u64,
    hidden_gm: u64,
    tail: [u32; ENGINES.len()],
    fence: [u32; ENGINES.len()],
    /// Engines ([`ENGINES`] order) driven through execlists.
    execlist: [bool; ENGINES.len()],
    /// PPGTT table pages in use (the PML4 first).
    ppgtt_tables: u64,
}

/// Commands being written into an engine's batch area.
#[derive(Debug)]
pub struct Batch {
    engine: usize,
    len: usize,
    staged: [u32; 64],
    staged_len: usize,
}

fn engine_slot(engine: Engine) -> usize {
    match engine {
        Engine::Blitter => 1,
        _ => 0,
    }
}

impl Batch {
    /// DWords written so far.
    pub fn len(&self) -> usize {
        self.len + self.staged_len
    }
    /// Nothing written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `n` more DWords fit.
    pub fn fits(&self, n: usize) -> bool {
        self.len() + n <= BATCH_CAPACITY
    }
    /// Appends `words`.
    pub fn push<P: Platform>(
        &mut self,
        p: &mut P,
        d: &Driver,
        words: &[u32],
    ) -> Result<(), DriverError<P::Error>> {
        if !self.fits(words.len()) {
            return Err(DriverError::BatchFull);
        }
        self.push_unchecked(p, d, words)
    }
    fn push_unchecked<P: Platform>(
        &mut self,
        p: &mut P,
        d: &Driver,
        words: &[u32],
    ) -> Result<(), DriverError<P::Error>> {
        for &w in words {
            if self.staged_len == self.staged.len() {
                self.flush(p, d)?;
            }
            self.staged[self.staged_len] = w;
            self.staged_len += 1;
        }
        Ok(())
    }
    fn flush<P: Platform>(&mut self, p: &mut P, d: &Driver) -> Result<(), DriverError<P::Error>> {
        let mut bytes = [0u8; 256];
        for (raw, w) in bytes
            .chunks_exact_mut(4)
            .zip(&self.staged[..self.staged_len])
        {
            raw.copy_from_slice(&w.to_le_bytes());
        }
        let mut done = 0;
        let total = self.staged_len * 4;
        while done < total {
            let at = self.len * 4 + done;
            let page = d.batch_page(self.engine) + (at / PAGE) as u64;
            let in_page = (PAGE - at % PAGE).min(total - done);
            p.ram_write(d.ram_first + page, at % PAGE, &bytes[done..done + in_page])
                .map_err(DriverError::Platform)?;
            done += in_page;
        }
        self.len += self.staged_len;
        self.staged_len = 0;
        Ok(())
    }
}

impl Driver {
    /// Finds the vGPU: PVINFO magic and the slices it grants. `ram_first`
    /// and `ram_pages` are the guest RAM the driver will map.
    pub fn probe<P: Platform>(
        p: &mut P,
        ram_first: u64,
        ram_pages: u64,
    ) -> Result<Driver, DriverError<P::Error>> {
        let mut read = |rel: u32| {
            p.mmio_read32(pvinfo::PAGE + rel)
                .map_err(DriverError::Platform)
        };
        let magic = u64::from(read(pvinfo::MAGIC_OFFSET)?)
            | u64::from(read(pvinfo::MAGIC_OFFSET + 4)?) << 32;
        if magic != pvinfo::MAGIC {
            return Err(DriverError::NoPvinfo { magic });
        }
        let aperture_gm = u64::from(read(pvinfo::APERTURE_BASE)?);
        let aperture_size = u64::from(read(pvinfo::APERTURE_SIZE)?);
        let hidden_gm = u64::from(read(pvinfo::HIDDEN_BASE)?);
        let hidden_size = u64::from(read(pvinfo::HIDDEN_SIZE)?);
        let aperture_pages = (aperture_size / PAGE as u64).min(ram_pages);
        let room = aperture_size / PAGE as u64 + hidden_size / PAGE as u64;
        if ram_pages > room || ram_pages <= DATA_FIRST {
            return Err(DriverError::TooLarge {
                pages: ram_pages,
                room,
            });
        }
        Ok(Driver {
            ram_first,
            ram_pages,
            aperture_gm,
            aperture_pages,
            hidden_gm,
            tail: [0; ENGINES.len()],
            fence: [0; ENGINES.len()],
            execlist: [false; ENGINES.len()],
            ppgtt_tables: 0,
        })
    }

    /// Maps every RAM page into the slices and enables the rings.
    pub fn boot<P: Platform>(&mut self, p: &mut P) -> Result<(), DriverError<P::Error>> {
        for i in 0..self.ram_pages {
            let page = GuestPage::new(self.ram_first + i).map_err(|_| DriverError::OutOfRange)?;
            let index = self.gm(i) / PAGE as u64;
            let slot = GGTT_BAR0_OFFSET as u64 + index * 8;
            let slot = u32::try_from(slot).map_err(|_| DriverError::OutOfRange)?;
            p.mmio_write64(slot, GuestPte::map(page, PteFlags::NONE).raw())
                .map_err(DriverError::Platform)?;
        }
        for (i, engine) in ENGINES.into_iter().enumerate() {
            self.tail[i] = 0;
            if self.execlist[i] {
                continue;
            }
            let base = engine.mmio_base();
            let start = self.gm32(i as u64)?;
            let w = |p: &mut P, reg: u32, v: u32| {
                p.mmio_write32(base + reg, v).map_err(DriverError::Platform)
            };
            w(p, ring::START, start)?;
            w(p, ring::CTL, ring::CTL_ENABLE)?;
        }
        Ok(())
    }

    /// [`Driver::boot`] with `engines` (of [`ENGINES`]) in execlist mode:
    /// run lists enabled, each engine's logical ring context written, the
    /// PPGTT holding the fence page and those engines' batch areas from
    /// [`DRIVER_VA`] and the state page at [`STATE_VA`].
    pub fn boot_execlists<P: Platform>(
        &mut self,
        p: &mut P,
        engines: &[Engine],
    ) -> Result<(), DriverError<P::Error>> {
        if self.ram_pages <= DATA_FIRST + EXECLIST_PAGES {
            return Err(DriverError::TooLarge {
                pages: self.ram_pages,
                room: DATA_FIRST + EXECLIST_PAGES,
            });
        }
        for &e in engines {
            self.execlist[engine_slot(e)] = true;
        }
        self.ppgtt_tables = 0;
        self.boot(p)?;
        // The PML4: the first table page, fresh.
        self.new_table(p)?;
        for (slot, engine) in ENGINES.into_iter().enumerate() {
            if !self.execlist[slot] {
                continue;
            }
            let base = engine.mmio_base();
            let on = masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE);
            p.mmio_write32(base + ring::MODE, on)
                .map_err(DriverError::Platform)?;
            let hwsp = self.gm32(self.context_page(slot))?;
            p.mmio_write32(base + ring::HWS_PGA, hwsp)
                .map_err(DriverError::Platform)?;
            self.write_context(p, slot)?;
        }
        let mut pages = FENCE_PAGE..FENCE_PAGE + 1;
        let execlist = self.execlist;
        for slot in (0..ENGINES.len()).filter(|&s| execlist[s]) {
            let batch = self.batch_page(slot);
            for i in pages.chain(batch..batch + BATCH_PAGES) {
                self.ppgtt_map(p, DRIVER_VA + i * PAGE as u64, i)?;
            }
            pages = 0..0;
        }
        let state = self.state_page();
        self.ppgtt_map(p, STATE_VA, state)
    }

    /// Whether `engine` runs in execlist mode.
    pub fn uses_execlists(&self, engine: Engine) -> bool {
        self.execlist[engine_slot(engine)]
    }

    fn gm32<E>(&self, i: u64) -> Result<u32, DriverError<E>> {
        u32::try_from(self.gm(i)).map_err(|_| DriverError::OutOfRange)
    }

    /// First RAM index of the execlist area.
    fn execlist_first(&self) -> u64 {
        self.ram_pages - EXECLIST_PAGES
    }
    /// RAM index of engine slot `slot`'s context (its status page; the
    /// register state follows).
    fn context_page(&self, slot: usize) -> u64 {
        self.execlist_first() + slot as u64 * CONTEXT_PAGES
    }
    fn table_page(&self, n: u64) -> u64 {
        self.execlist_first() + ENGINES.len() as u64 * CONTEXT_PAGES + n
    }
    /// RAM index of the page the driver's user keeps GPU state in (in
    /// execlist mode; mapped in the PPGTT at [`STATE_VA`]).
    pub fn state_page(&self) -> u64 {
        self.table_page(PPGTT_TABLES)
    }

    /// The context's register state page, as i915 lays it out
    /// (`execlists_init_reg_state`): an MI_LOAD_REGISTER_IMM header, then
    /// (register, value) pairs at the `CTX_*` indices the vGPU reads.
    fn write_context<P: Platform>(
        &mut self,
        p: &mut P,
        slot: usize,
    ) -> Result<(), DriverError<P::Error>> {
        let base = ENGINES[slot].mmio_base();
        let pml4 = self.page(self.table_page(0)) * PAGE as u64;
        let mut state = [0u32; lrc::READ_DWORDS];
        // MI_LOAD_REGISTER_IMM of 14 registers, force-posted (i915's
        // header for this part of the image).
        state[1] = (0x22 << 23) | (1 << 12) | (2 * 14 - 1);
        let mut set = |index: usize, reg: u32, value: u32| {
            state[index] = base + reg;
            state[index + 1] = value;
        };
        set(lrc::RING_HEAD, ring::HEAD, 0);
        set(lrc::RING_TAIL, ring::TAIL, 0);
        set(lrc::RING_START, ring::START, self.gm32(slot as u64)?);
        // One page, valid.
        set(lrc::RING_CTL, ring::CTL, ring::CTL_ENABLE);
        // PDP0 (GEN8_RING_PDP_UDW/LDW: +0x274, +0x270): in the 4-level
        // mode the PML4's address.
        set(lrc::PDP0_UDW, 0x274, (pml4 >> 32) as u32);
        set(lrc::PDP0_LDW, 0x270, pml4 as u32);
        let mut bytes = [0u8; lrc::READ_DWORDS * 4];
        for (raw, w) in bytes.chunks_exact_mut(4).zip(state) {
            raw.copy_from_slice(&w.to_le_bytes());
        }
        let page = self.page(self.context_page(slot) + 1);
        p.ram_write(page, 0, &bytes).map_err(DriverError::Platform)
    }

    /// The context descriptor of engine slot `slot` (`GEN8_CTX_*`): valid,
    /// 4-level addressing, privileged, the LRCA, its id in the upper half.
    fn descriptor(&self, slot: usize) -> u64 {
        (slot as u64 + 1) << 32
            | self.gm(self.context_page(slot))
            | execlist::DESC_PRIVILEGE
            | execlist::ADDRESSING_4_LEVEL << execlist::DESC_ADDRESSING_SHIFT
            | execlist::DESC_VALID
    }

    /// A fresh (zeroed) PPGTT table page; returns its RAM index.
    fn new_table<P: Platform>(&mut self, p: &mut P) -> Result<u64, DriverError<P::Error>> {
        if self.ppgtt_tables >= PPGTT_TABLES {
            return Err(DriverError::PpgttFull);
        }
        let index = self.table_page(self.ppgtt_tables);
        self.ppgtt_tables += 1;
        p.ram_write(self.page(index), 0, &[0u8; PAGE])
            .map_err(DriverError::Platform)?;
        Ok(index)
    }

    fn entry<P: Platform>(
        &self,
        p: &mut P,
        table: u64,
        i: u64,
    ) -> Result<Entry, DriverError<P::Error>> {
        let mut b = [0u8; 8];
        p.ram_read(self.page(table), i as usize * 8, &mut b)
            .map_err(DriverError::Platform)?;
        Ok(Entry::from_raw(u64::from_le_bytes(b)))
    }

    /// Maps RAM page index `index` at PPGTT address `va` (4 KiB, writable),
    /// with the tables on the way taken from the driver's table pages as
    /// needed. The vGPU sees the change at the context's next submission.
    pub fn ppgtt_map<P: Platform>(
        &mut self,
        p: &mut P,
        va: u64,
        index: u64,
    ) -> Result<(), DriverError<P::Error>> {
        if self.ppgtt_tables == 0 || va >= 1 << 48 || index >= self.ram_pages {
            return Err(DriverError::PpgttFull);
        }
        let mut table = self.table_page(0);
        for shift in [39u32, 30, 21] {
            let i = (va >> shift) & 511;
            let e = self.entry(p, table, i)?;
            table = if e.is_present() {
                // Its own table pages only (it wrote them).
                let page = e.page(gpu::ppgtt::Level::Pml4);
                page.checked_sub(self.ram_first)
                    .filter(|&t| (self.table_page(0)..self.table_page(PPGTT_TABLES)).contains(&t))
                    .ok_or(DriverError::PpgttFull)?
            } else {
                let t = self.new_table(p)?;
                let raw = Entry::new(self.page(t), WRITABLE).raw();
                p.ram_write(self.page(table), i as usize * 8, &raw.to_le_bytes())
                    .map_err(DriverError::Platform)?;
                t
            };
        }
        let raw = Entry::new(self.page(index), WRITABLE).raw();
        p.ram_write(
            self.page(table),
            ((va >> 12) & 511) as usize * 8,
            &raw.to_le_bytes(),
        )
        .map_err(DriverError::Platform)
    }

    /// Submits engine slot `slot`'s ring up to `tail`: TAIL written in
    /// execlist mode into the context image, then the descriptor into
    /// ELSP (element 1 empty, upper dwords first); else the legacy TAIL.
    fn submit<P: Platform>(
        &mut self,
        p: &mut P,
        slot: usize,
        tail: u32,
    ) -> Result<(), DriverError<P::Error>> {
        let base = ENGINES[slot].mmio_base();
        if !self.execlist[slot] {
            return p
                .mmio_write32(base + ring::TAIL, tail)
                .map_err(DriverError::Platform);
        }
        let state = self.page(self.context_page(slot) + 1);
        p.ram_write(state, 4 * (lrc::RING_TAIL + 1), &tail.to_le_bytes())
            .map_err(DriverError::Platform)?;
        let d = self.descriptor(slot);
        for dword in [0, 0, (d >> 32) as u32, d as u32] {
            p.mmio_write32(base + ring::ELSP, dword)
                .map_err(DriverError::Platform)?;
        }
        Ok(())
    }

    /// Reads the context status buffer's new entries of engine slot
    /// `slot` and moves its read pointer past them; true if one said the
    /// driver's context completed. Any other context's switch, or a
    /// preemption, is an error: the driver submits one context at a time
    /// and waits for it.
    fn drain_csb<P: Platform>(
        &self,
        p: &mut P,
        slot: usize,
    ) -> Result<bool, DriverError<P::Error>> {
        let engine = ENGINES[slot];
        let base = engine.mmio_base();
        let read = |p: &mut P, reg: u32| p.mmio_read32(base + reg).map_err(DriverError::Platform);
        let ptr = read(p, ring::CSB_PTR)?;
        let (mut at, write) = ((ptr >> 8) & 0x7, ptr & 0xf);
        let mut complete = false;
        while at != write {
            // 7: nothing read since reset (i915's GEN8_CSB_ENTRIES - 1 + 1).
            at = if at == 7 {
                0
            } else {
                (at + 1) % ring::CSB_ENTRIES
            };
            let status = read(p, ring::CSB_BASE + 8 * at)?;
            let id = read(p, ring::CSB_BASE + 8 * at + 4)?;
            let ours = id == slot as u32 + 1;
            if status & execlist::CTX_STATUS_COMPLETE != 0 && ours {
                complete = true;
            } else if status & execlist::CTX_STATUS_PREEMPTED != 0 || (id != 0 && !ours) {
                return Err(DriverError::Csb { engine, status });
            }
        }
        if at != (ptr >> 8) & 0x7 {
            p.mmio_write32(base + ring::CSB_PTR, masked(0x7 << 8, at << 8))
                .map_err(DriverError::Platform)?;
        }
        Ok(complete)
    }

    /// Guest GM of RAM page index `i`.
    pub fn gm(&self, i: u64) -> u64 {
        if i < self.aperture_pages {
            self.aperture_gm + i * PAGE as u64
        } else {
            self.hidden_gm + (i - self.aperture_pages) * PAGE as u64
        }
    }
    /// The aperture page RAM page index `i` is mapped at, if it is in the
    /// aperture (the CPU can then reach it through the aperture too).
    pub fn aperture_page(&self, i: u64) -> Option<u64> {
        (i < self.aperture_pages).then_some(i)
    }
    /// Guest page number of RAM page index `i`.
    pub fn page(&self, i: u64) -> u64 {
        self.ram_first + i
    }
    /// RAM pages the driver maps.
    pub fn ram_pages(&self) -> u64 {
        self.ram_pages
    }
    fn batch_page(&self, slot: usize) -> u64 {
        BATCH_FIRST + slot as u64 * BATCH_PAGES
    }
    /// PPGTT address of engine slot `slot`'s batch area (execlist mode).
    fn batch_va(&self, slot: usize) -> u64 {
        DRIVER_VA + self.batch_page(slot) * PAGE as u64
    }
    /// PPGTT address of the fence page (execlist mode): the driver's user
    /// may store into it past the fences (at 256 bytes and on).
    pub fn fence_page_va(&self) -> u64 {
        DRIVER_VA + FENCE_PAGE * PAGE as u64
    }

    /// An empty batch for `engine` (one of [`ENGINES`]).
    pub fn batch(&self, engine: Engine) -> Batch {
        Batch {
            engine: engine_slot(engine),
            len: 0,
            staged: [0; 64],
            staged_len: 0,
        }
    }

    /// Ends `batch` with a fence write and MI_BATCH_BUFFER_END, starts it
    /// from the engine's ring and waits until its fence arrives. In
    /// execlist mode it is a PPGTT batch (see the module docs): its
    /// addresses, the fence's too, are PPGTT addresses.
    pub fn run<P: Platform>(
        &mut self,
        p: &mut P,
        mut batch: Batch,
    ) -> Result<(), DriverError<P::Error>> {
        let slot = batch.engine;
        let engine = ENGINES[slot];
        let fence = self.fence[slot].wrapping_add(1).max(1);
        let ppgtt = self.execlist[slot];
        let fence_at = if ppgtt {
            self.fence_page_va()
        } else {
            self.gm(FENCE_PAGE)
        } + 64 * slot as u64;
        let v = u64::from(fence);
        match (engine, ppgtt) {
            (Engine::Render, false) => {
                batch.push_unchecked(p, self, &encode::pipe_control_imm(fence_at, v))?
            }
            (Engine::Render, true) => {
                batch.push_unchecked(p, self, &encode::ppgtt_pipe_control_imm(fence_at, v))?
            }
            (_, false) => batch.push_unchecked(p, self, &encode::flush_dw_imm(fence_at, fence))?,
            (_, true) => {
                batch.push_unchecked(p, self, &encode::ppgtt_flush_dw_imm(fence_at, fence))?
            }
        }
        batch.push_unchecked(p, self, &[encode::BB_END])?;
        batch.flush(p, self)?;
        let start = if ppgtt {
            encode::ppgtt_bb_start(self.batch_va(slot), false)
        } else {
            encode::bb_start(self.gm(self.batch_page(slot)), false)
        };
        let cmds = [start[0], start[1], start[2], encode::NOOP];
        let mut bytes = [0u8; RING_STEP as usize];
        for (raw, w) in bytes.chunks_exact_mut(4).zip(cmds) {
            raw.copy_from_slice(&w.to_le_bytes());
        }
        let tail = self.tail[slot];
        p.ram_write(self.page(slot as u64), tail as usize, &bytes)
            .map_err(DriverError::Platform)?;
        let tail = (tail + RING_STEP) % PAGE as u32;
        self.tail[slot] = tail;
        self.fence[slot] = fence;
        self.submit(p, slot, tail)?;
        // In execlist mode the context's COMPLETE too: the next ELSP then
        // finds the engine idle and the new head in the context image.
        let mut complete = !self.execlist[slot];
        for _ in 0..WAIT_LIMIT {
            let mut b = [0u8; 4];
            p.ram_read(self.page(FENCE_PAGE), 64 * slot, &mut b)
                .map_err(DriverError::Platform)?;
            if u32::from_le_bytes(b) == fence {
                complete = complete || self.drain_csb(p, slot)?;
                if complete {
                    return Ok(());
                }
            }
            p.pause().map_err(DriverError::Platform)?;
        }
        Err(DriverError::Timeout { engine, fence })
    }

    /// Writes `cmds` and a write of the engine's next fence value straight
    /// into `engine`'s ring and rings TAIL, without waiting (the GPU runs
    /// them in its own time): returns that fence value, which
    /// [`Driver::fence_reached`] then tells. At most [`MAX_QUEUED`] may be
    /// outstanding.
    pub fn queue<P: Platform>(
        &mut self,
        p: &mut P,
        engine: Engine,
        cmds: &[u32],
    ) -> Result<u32, DriverError<P::Error>> {
        let slot = engine_slot(engine);
        let fence = self.fence[slot].wrapping_add(1).max(1);
        let done = self.fence_value(p, engine)?;
        if cmds.len() > QUEUE_WORDS || self.fence[slot].wrapping_sub(done) >= MAX_QUEUED {
            return Err(DriverError::RingFull);
        }
        let fence_gm = self.gm(FENCE_PAGE) + 64 * slot as u64;
        let mut words = [encode::NOOP; QUEUE_STEP as usize / 4];
        words[..cmds.len()].copy_from_slice(cmds);
        let write: &[u32] = match engine {
            Engine::Render => &encode::pipe_control_imm(fence_gm, u64::from(fence)),
            _ => &encode::flush_dw_imm(fence_gm, fence),
        };
        words[cmds.len()..cmds.len() + write.len()].copy_from_slice(write);
        let mut tail = self.tail[slot];
        if tail + QUEUE_STEP > PAGE as u32 {
            // No command straddles the ring's end: NOOPs up to it.
            let pad = [0u8; QUEUE_STEP as usize];
            let n = PAGE - tail as usize;
            p.ram_write(self.page(slot as u64), tail as usize, &pad[..n])
                .map_err(DriverError::Platform)?;
            tail = 0;
        }
        let mut bytes = [0u8; QUEUE_STEP as usize];
        for (raw, w) in bytes.chunks_exact_mut(4).zip(words) {
            raw.copy_from_slice(&w.to_le_bytes());
        }
        p.ram_write(self.page(slot as u64), tail as usize, &bytes)
            .map_err(DriverError::Platform)?;
        let tail = (tail + QUEUE_STEP) % PAGE as u32;
        self.tail[slot] = tail;
        self.fence[slot] = fence;
        self.submit(p, slot, tail)?;
        Ok(fence)
    }

    /// Whether `engine` has run everything up to the submission of fence
    /// value `fence` (fences of one ring arrive in order).
    pub fn fence_reached<P: Platform>(
        &self,
        p: &mut P,
        engine: Engine,
        fence: u32,
    ) -> Result<bool, DriverError<P::Error>> {
        let done = self.fence_value(p, engine)?;
        // Values wrap (and skip 0): ordered by their distance.
        Ok(done != 0 && (done.wrapping_sub(fence) as i32) >= 0)
    }

    fn fence_value<P: Platform>(
        &self,
        p: &mut P,
        engine: Engine,
    ) -> Result<u32, DriverError<P::Error>> {
        let mut b = [0u8; 4];
        p.ram_read(self.page(FENCE_PAGE), 64 * engine_slot(engine), &mut b)
            .map_err(DriverError::Platform)?;
        Ok(u32::from_le_bytes(b))
    }
}
