//! Workload models of GPU (and CPU) dirtying, and trace replay.
//!
//! # Where the parameters come from
//!
//! No published per-page dirty trace of a Gen9 vGPU exists that we could
//! use, so the three GPU presets are assumptions, chosen before the
//! `informed` policy was tuned and not changed since to favour it; the
//! fourth preset is the one measured anchor we have. Until the monitor
//! records real traces (format in [`crate::trace`], replayed by
//! [`Dirtier::Replay`]), read the figures as "under these assumptions".
//!
//! | parameter | 3d-game | 2d-desktop | video | qemu-anchor | basis |
//! |---|---:|---:|---:|---:|---|
//! | pages (4 KiB) | 32768 (128 MiB) | 16384 | 24576 | 65536 (256 MiB) | presets: the GM a guest of that kind keeps mapped, below the smallest GVT-g type (448 MiB); anchor: the measured VM's RAM |
//! | hot fraction | 0.06 (~7.7 MiB) | 0.04 | 0.08 | 0.25 (64 MiB) | presets: a 1080p RGBA render target + depth buffer (~16 MiB) is 0.06-0.12 of the set, a desktop's damaged windows less, a video decoder's output ring of a few NV12 frames ~8 MiB; anchor: the measured 64 MiB set |
//! | hot share | 0.95 | 0.85 | 0.97 | 1.0 | assumption: most GPU writes go to render targets / output frames; the anchor writes only its set |
//! | writes/s (page writes) | 30000 | 2000 | 12000 | 8000 | presets: hot set size x frame rate x 1/8-2 (partial redraws); anchor: measured ~8k pages/s |
//! | unchanged fraction | 0.5 | 0.6 | 0.1 | 0.9375 | presets: assumption (a game redraws static parts of a frame identically, a desktop repaints unchanged widgets, video frames always differ); anchor: measured 15 of 16 |
//! | small-edit fraction | 0.15 | 0.3 | 0.02 | 0 | assumption: cursor, text and widget updates on a desktop, HUD counters in a game |
//! | CPU fraction | 0.05 | 0.3 | 0.1 | 0 | assumption: uploads through the aperture; the anchor's writes are modelled as GPU writes the scanner reports, so gMig must hash them as it hashes any GPU page |
//! | zero fraction | 0.3 | 0.5 | 0.2 | 0 | assumption: freshly allocated, cleared buffers; anchor: unknown, so no zero pages (no elision benefit) |
//! | GPU writes untracked | yes | no | yes | no | the scanner: draws write render targets, and video objects decode into pictures, through state it does not parse, so their submissions' write sets are untracked (`gpu::scan::table::STATE_WRITERS`) and command-informed policies must hash every page; a desktop's blits name their destinations; the anchor's writes are modelled as reported ones |
//!
//! A full rewrite fills the page with fresh random bytes: the conservative
//! choice, since it makes a rewritten page incompressible and useless as a
//! delta base. A small edit changes 1-16 consecutive bytes. CPU writes are
//! always full rewrites (conservative again: they never look unchanged).

use migrate::{GuestPage, PAGE_SIZE};
use serde::Serialize;

use crate::trace::{Trace, WriteKind};

/// Parameters of a synthetic workload.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadModel {
    /// Name in reports.
    pub name: String,
    /// Pages the vGPU references (the migrated set).
    pub pages: usize,
    /// Fraction of pages in the hot set (render targets, frame ring).
    pub hot_fraction: f64,
    /// Locality: probability that a write hits the hot set.
    pub hot_share: f64,
    /// Page writes per second while the guest runs.
    pub writes_per_sec: f64,
    /// Fraction of rewrites that leave the content unchanged.
    pub unchanged_fraction: f64,
    /// Fraction of writes that change only a few bytes.
    pub small_edit_fraction: f64,
    /// Fraction of writes done by the CPU (seen through PTE dirty bits).
    pub cpu_fraction: f64,
    /// Fraction of pages that start all-zero.
    pub zero_fraction: f64,
    /// The GPU writes through state the scanner does not parse (draws into
    /// render targets, video decode into pictures), so the monitor reports
    /// its submissions' writes as untracked, not as write targets.
    pub gpu_writes_untracked: bool,
}

impl WorkloadModel {
    /// A 3D game: 128 MiB referenced, a hot 6% (render targets)
    /// rewritten every frame, half the rewrites producing identical content.
    pub fn game_3d() -> Self {
        Self {
            name: "3d-game".into(),
            pages: 32768,
            hot_fraction: 0.06,
            hot_share: 0.95,
            writes_per_sec: 30_000.0,
            unchanged_fraction: 0.5,
            small_edit_fraction: 0.15,
            cpu_fraction: 0.05,
            zero_fraction: 0.3,
            gpu_writes_untracked: true,
        }
    }
    /// A 2D desktop: 64 MiB, small damage regions, mostly small edits.
    pub fn desktop_2d() -> Self {
        Self {
            name: "2d-desktop".into(),
            pages: 16384,
            hot_fraction: 0.04,
            hot_share: 0.85,
            writes_per_sec: 2_000.0,
            unchanged_fraction: 0.6,
            small_edit_fraction: 0.3,
            cpu_fraction: 0.3,
            zero_fraction: 0.5,
            gpu_writes_untracked: false,
        }
    }
    /// Video playback: 96 MiB, a ring of decoded frames fully rewritten.
    pub fn video() -> Self {
        Self {
            name: "video".into(),
            pages: 24576,
            hot_fraction: 0.08,
            hot_share: 0.97,
            writes_per_sec: 12_000.0,
            unchanged_fraction: 0.1,
            small_edit_fraction: 0.02,
            cpu_fraction: 0.1,
            zero_fraction: 0.2,
            gpu_writes_untracked: true,
        }
    }
    /// The measured anchor (QEMU's own migration, measured as gMig reports it): a
    /// 256 MiB guest rewriting whole pages of a 64 MiB set at about 8k
    /// pages/s, 15 of 16 rewrites leaving the content unchanged. QEMU saw
    /// those writes in its dirty log; here they are GPU writes (reported by
    /// the scanner), so gMig has to hash them.
    pub fn qemu_anchor() -> Self {
        Self {
            name: "qemu-anchor".into(),
            pages: 65536,
            hot_fraction: 0.25,
            hot_share: 1.0,
            writes_per_sec: 8_000.0,
            unchanged_fraction: 15.0 / 16.0,
            small_edit_fraction: 0.0,
            cpu_fraction: 0.0,
            zero_fraction: 0.0,
            gpu_writes_untracked: false,
        }
    }
    /// The three GPU presets and the measured anchor.
    pub fn presets() -> Vec<Self> {
        vec![
            Self::game_3d(),
            Self::desktop_2d(),
            Self::video(),
            Self::qemu_anchor(),
        ]
    }
    /// The same workload scaled down by `k` (pages and write rate), for quick runs.
    pub fn scaled(mut self, k: usize) -> Self {
        self.pages = (self.pages / k).max(64);
        self.writes_per_sec /= k as f64;
        self
    }
}

/// A fast deterministic PRNG (xorshift64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One write the guest makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// Page index in the migrated set.
    pub index: usize,
    /// What the write does.
    pub kind: WriteKind,
}

/// Where writes come from: a model or a recorded trace.
#[derive(Debug)]
pub enum Dirtier {
    /// Synthetic model.
    Model {
        /// Parameters.
        model: WorkloadModel,
        /// Randomness.
        rng: Rng,
        /// Fractional writes carried over.
        carry: f64,
    },
    /// Trace replay.
    Replay {
        /// The trace.
        trace: Trace,
        /// Next event.
        next: usize,
    },
}

impl Dirtier {
    /// Writes happening in `(from_ns, to_ns]` of the guest's own time,
    /// appended to `out`. The simulator's guest clock runs at the share of
    /// GPU time the guest is granted, so a throttled guest issues the same
    /// writes, later.
    pub fn writes(&mut self, from_ns: u64, to_ns: u64, out: &mut Vec<Write>) {
        match self {
            Self::Model { model, rng, carry } => {
                let n = model.writes_per_sec * (to_ns - from_ns) as f64 / 1e9 + *carry;
                let whole = n.floor();
                *carry = n - whole;
                let hot = ((model.pages as f64 * model.hot_fraction) as usize).max(1);
                for _ in 0..whole as u64 {
                    let index = if rng.unit() < model.hot_share {
                        rng.below(hot)
                    } else {
                        rng.below(model.pages)
                    };
                    let cpu = rng.unit() < model.cpu_fraction;
                    let r = rng.unit();
                    let kind = if r < model.unchanged_fraction {
                        WriteKind::Unchanged
                    } else if r < model.unchanged_fraction + model.small_edit_fraction {
                        WriteKind::SmallEdit
                    } else if cpu {
                        WriteKind::Cpu
                    } else {
                        WriteKind::Full
                    };
                    let kind = if cpu && kind != WriteKind::Full {
                        WriteKind::Cpu
                    } else {
                        kind
                    };
                    out.push(Write { index, kind });
                }
            }
            Self::Replay { trace, next } => {
                while let Some(e) = trace.events.get(*next) {
                    if e.t_ns > to_ns {
                        break;
                    }
                    if e.t_ns > from_ns || (from_ns == 0 && e.t_ns == 0) {
                        out.push(Write {
                            index: e.page as usize % trace.pages.max(1),
                            kind: e.kind,
                        });
                    }
                    *next += 1;
                }
            }
        }
    }

    /// Whether the monitor reports this workload's GPU writes as untracked
    /// (see [`WorkloadModel::gpu_writes_untracked`]; a trace records write
    /// targets).
    pub fn gpu_writes_untracked(&self) -> bool {
        match self {
            Self::Model { model, .. } => model.gpu_writes_untracked,
            Self::Replay { .. } => false,
        }
    }

    /// Size of the page set.
    pub fn pages(&self) -> usize {
        match self {
            Self::Model { model, .. } => model.pages,
            Self::Replay { trace, .. } => trace.pages,
        }
    }
}

/// The guest's memory in the simulator.
#[derive(Debug)]
pub struct SimMemory {
    /// Page contents.
    pub pages: Vec<[u8; PAGE_SIZE]>,
    /// Device-state blob.
    pub device: Vec<u8>,
    /// CPU-state blob.
    pub cpu: Vec<u8>,
    rng: Rng,
}

/// Device-state plus CPU-state bytes of the simulated vGPU: 64 KiB stands
/// for the register file and GGTT slice a Gen9 vGPU save produces (an
/// assumption; the `gpu` crate's blob will replace it), 4 KiB for the
/// guest's CPU registers.
pub const STATE_BYTES: u64 = 64 * 1024 + 4096;

/// Base guest page number of the simulated set.
pub const BASE_GFN: u64 = 0x10_0000;

impl SimMemory {
    /// `pages` pages, a `zero_fraction` of them zero, the rest random.
    pub fn new(pages: usize, zero_fraction: f64, seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let mut v = vec![[0u8; PAGE_SIZE]; pages];
        for p in v.iter_mut() {
            if rng.unit() >= zero_fraction {
                fill(p, &mut rng);
            }
        }
        Self {
            pages: v,
            device: vec![0x5a; 64 * 1024],
            cpu: vec![0xc3; 4096],
            rng,
        }
    }

    /// Apply a write to page `index`.
    pub fn apply(&mut self, w: Write) {
        let p = &mut self.pages[w.index];
        match w.kind {
            WriteKind::Unchanged => {}
            WriteKind::SmallEdit => {
                let at = self.rng.below(PAGE_SIZE - 16);
                let n = 1 + self.rng.below(16);
                for b in &mut p[at..at + n] {
                    *b = b.wrapping_add(1);
                }
            }
            WriteKind::Full | WriteKind::Cpu => fill(p, &mut self.rng),
        }
    }

    /// Page number of index `i`.
    pub fn gfn(i: usize) -> GuestPage {
        GuestPage::new(BASE_GFN + i as u64).expect("small page numbers")
    }
}

fn fill(p: &mut [u8; PAGE_SIZE], rng: &mut Rng) {
    for w in p.chunks_exact_mut(8) {
        w.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
}

impl migrate::PageSource for SimMemory {
    fn page_count(&self) -> usize {
        self.pages.len()
    }
    fn page_at(&self, index: usize) -> GuestPage {
        Self::gfn(index)
    }
    fn read_page(
        &mut self,
        page: GuestPage,
        out: &mut [u8; PAGE_SIZE],
    ) -> Result<(), migrate::MemoryError> {
        let i = page.get().wrapping_sub(BASE_GFN) as usize;
        *out = *self
            .pages
            .get(i)
            .ok_or(migrate::MemoryError::NotMapped(page))?;
        Ok(())
    }
    fn device_state_len(&self) -> usize {
        self.device.len()
    }
    fn read_device_state(
        &mut self,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), migrate::MemoryError> {
        migrate::page::read_state_chunk(&self.device, offset, out)
    }
    fn cpu_state_len(&self) -> usize {
        self.cpu.len()
    }
    fn read_cpu_state(
        &mut self,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), migrate::MemoryError> {
        migrate::page::read_state_chunk(&self.cpu, offset, out)
    }
}

/// The destination's memory in the simulator.
#[derive(Debug)]
pub struct SimSink {
    /// Page contents (indexed like [`SimMemory::pages`]).
    pub pages: Vec<Option<Box<[u8; PAGE_SIZE]>>>,
    /// Device-state blob.
    pub device: Vec<u8>,
    /// CPU-state blob.
    pub cpu: Vec<u8>,
}

impl SimSink {
    /// An empty destination for `pages` pages.
    pub fn new(pages: usize) -> Self {
        Self {
            pages: vec![None; pages],
            device: Vec::new(),
            cpu: Vec::new(),
        }
    }
    /// Whether it equals `mem` byte for byte.
    pub fn identical(&self, mem: &SimMemory) -> bool {
        self.device == mem.device
            && self.cpu == mem.cpu
            && self
                .pages
                .iter()
                .zip(&mem.pages)
                .all(|(d, s)| d.as_deref() == Some(s))
    }
}

impl migrate::PageSink for SimSink {
    fn write_page(
        &mut self,
        page: GuestPage,
        data: &[u8; PAGE_SIZE],
    ) -> Result<(), migrate::MemoryError> {
        let i = page.get().wrapping_sub(BASE_GFN) as usize;
        let slot = self
            .pages
            .get_mut(i)
            .ok_or(migrate::MemoryError::Refused(page))?;
        match slot {
            Some(b) => **b = *data,
            None => *slot = Some(Box::new(*data)),
        }
        Ok(())
    }
    fn read_page(
        &mut self,
        page: GuestPage,
        out: &mut [u8; PAGE_SIZE],
    ) -> Result<(), migrate::MemoryError> {
        // A page never written reads as a fresh (zeroed) frame does.
        let i = page.get().wrapping_sub(BASE_GFN) as usize;
        let slot = self
            .pages
            .get(i)
            .ok_or(migrate::MemoryError::NotMapped(page))?;
        *out = slot.as_deref().copied().unwrap_or([0; PAGE_SIZE]);
        Ok(())
    }
    fn write_device_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), migrate::MemoryError> {
        self.device.resize(total, 0);
        self.device[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_cpu_state(
        &mut self,
        offset: usize,
        total: usize,
        data: &[u8],
    ) -> Result<(), migrate::MemoryError> {
        self.cpu.resize(total, 0);
        self.cpu[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
}
