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

use core::fmt;

use gpu::addr::GuestPage;
use gpu::encode;
use gpu::engine::Engine;
use gpu::ggtt::{GuestPte, PteFlags};
use gpu::regs::{pvinfo, ring, GGTT_BAR0_OFFSET};

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
            let base = engine.mmio_base();
            let start = u32::try_from(self.gm(i as u64)).map_err(|_| DriverError::OutOfRange)?;
            let w = |p: &mut P, reg: u32, v: u32| {
                p.mmio_write32(base + reg, v).map_err(DriverError::Platform)
            };
            w(p, ring::START, start)?;
            w(p, ring::CTL, ring::CTL_ENABLE)?;
            self.tail[i] = 0;
        }
        Ok(())
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
    /// from the engine's ring and waits until its fence arrives.
    pub fn run<P: Platform>(
        &mut self,
        p: &mut P,
        mut batch: Batch,
    ) -> Result<(), DriverError<P::Error>> {
        let slot = batch.engine;
        let engine = ENGINES[slot];
        let fence = self.fence[slot].wrapping_add(1).max(1);
        let fence_gm = self.gm(FENCE_PAGE) + 64 * slot as u64;
        match engine {
            Engine::Render => batch.push_unchecked(
                p,
                self,
                &encode::pipe_control_imm(fence_gm, u64::from(fence)),
            )?,
            _ => batch.push_unchecked(p, self, &encode::flush_dw_imm(fence_gm, fence))?,
        }
        batch.push_unchecked(p, self, &[encode::BB_END])?;
        batch.flush(p, self)?;
        let start = encode::bb_start(self.gm(self.batch_page(slot)), false);
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
        p.mmio_write32(engine.mmio_base() + ring::TAIL, tail)
            .map_err(DriverError::Platform)?;
        for _ in 0..WAIT_LIMIT {
            let mut b = [0u8; 4];
            p.ram_read(self.page(FENCE_PAGE), 64 * slot, &mut b)
                .map_err(DriverError::Platform)?;
            if u32::from_le_bytes(b) == fence {
                return Ok(());
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
        p.mmio_write32(engine.mmio_base() + ring::TAIL, tail)
            .map_err(DriverError::Platform)?;
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
