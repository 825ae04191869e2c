//! Scanner + SimGpu under an access checker.
//!
//! Each input is a command stream for one engine, either random (raw
//! DWords for the ring and for a batch the ring may jump to) or one of the
//! valid seed streams of `tests/scan_support` mutated by the input (bit
//! flips and word stores). The stream goes through the real scanner
//! ([`Shadow::scan`]) against the two-slice guest memory of
//! `tests/scan_support` (with a fixture of chained and second-level
//! batches). For every input:
//!
//! - no panic anywhere (scanner, checks, executor);
//! - an accepted submission stayed within the scan budget (commands and
//!   DWords) and its scan took bounded time;
//! - every address the scanner rewrote lies in the vGPU's host slices, and
//!   every batch start points at a shadow batch (`check_buffer`);
//! - the accepted shadow is then executed by [`SimGpu`] over physical memory
//!   that checks every access the GPU makes: writes only to the frames
//!   backing the vGPU's slices, reads only from those, the shadow buffers
//!   and the GGTT table. A neighbour vGPU's slice is mapped right next to
//!   them as a canary; any touch of it, or of anything else, is a failure;
//! - unless the submission's write set is untracked, every guest page the
//!   GPU wrote is in it (migration relies on that);
//! - nothing the submission did reached another context: every other
//!   engine runs a neighbour vGPU's context while the input runs, and that
//!   context must still hold only power-on state afterwards (a command of
//!   one engine reaching another engine's registers would write it); and
//!   no fence register changed.
//!
//! PPGTT contexts (random mode with bit 6 of the mode byte): the input
//! also writes entries of the guest's 4-level page tables (in the vGPU's
//! frames: absent, the guest's pages writable or not, another vGPU's and
//! the monitor's frame numbers, 2 MiB pages, other tables, the reserved
//! window), the monitor shadows them ([`ShadowPpgtt`]; a typed refusal
//! ends the input), and the ring of that context starts the input's batch
//! in its PPGTT. The scanner reads it through the shadow, scans it
//! non-privileged, and `SimGpu` runs the copy from the window, in the
//! shadow PPGTT. Checked besides the above: the GPU writes only the
//! vGPU's frames and its scratch page, reads those, the shadow tables and
//! window; the engine never stops on a privilege violation (what the
//! hardware would stop the scanner must have refused first); every frame
//! written is in the write set's frames unless untracked.
//!
//! The executor runs every command the scanner accepts that moves data or
//! control (predication, conditional batch ends, register loads, memory
//! copies, atomics, semaphore waits, the ALU) and stops with
//! `FaultKind::Unmodeled` on what it does not model, so the checker sees
//! those commands' accesses too; the statistics count the inputs that
//! stopped there. `tests/scan_support`'s seeds include streams of those MI
//! commands and of the commands that consume earlier state (a HiZ depth
//! clear, an SFC frame, HEVC decode, HuC); `seeds/seed_N` selects seed
//! stream N (`cargo test -p gpu --test scan_fuzz fuzz_seed_files` checks
//! there is one for each).

#![no_main]

#[path = "../../tests/scan_support/mod.rs"]
mod scan_support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use gpu::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame};
use gpu::backend::{
    Backend, ContextId, EngineStatus, FaultKind, PhysMem, PhysMemError, Submission,
};
use gpu::encode::ppgtt_bb_start;
use gpu::engine::Engine;
use gpu::ggtt::{HostPte, PteFlags};
use gpu::partition::VgpuId;
use gpu::regs::{fence, ring};
use gpu::addr::{GuestGm, GuestGmRange, GuestPage};
use gpu::ppgtt::shadow::{ShadowPpgtt, ShadowRoot};
use gpu::ppgtt::{walk, window_batch_page, Entry, HostTables, PpgttAddr, WalkError, WRITABLE};
use gpu::scan::scanner::{PpgttFault, PpgttSpace, BATCH_POOL, MAX_COMMANDS, MAX_DWORDS};
use gpu::scan::{GmFault, GmSpace, Shadow};
use gpu::vgpu::{FrameRun, FrameRuns};
use gpu::sim::{SimGpu, GGTT_TABLE_BYTES};
use libfuzzer_sys::fuzz_target;
use scan_support::*;

const GGTT_TABLE: u64 = 16 << 30;
/// Host GM of the shadow buffers (scan_support's layout) and its size.
const SHADOW_GM: u64 = SHADOW_RING_HOST;
const SHADOW_GM_SIZE: u64 = SHADOW_BATCH_HOST + SHADOW_BATCH_STRIDE * BATCH_POOL as u64 - SHADOW_GM;
/// A neighbour vGPU's slice, mapped but never to be touched.
const NEIGHBOUR_GM: u64 = HIDDEN_HOST + HIDDEN_SIZE;
const NEIGHBOUR_SIZE: u64 = 0x10_0000;
/// Where the random mode's batch goes (clear of the fixture batches).
const FUZZ_BATCH: u64 = HIDDEN + 0x32_0000;
/// Upper bound on the CPU time of one scan (the budget bounds the work;
/// this only catches a runaway loop, generously for sanitizer builds). CPU
/// time, not wall time: on a machine shared with builds a niced fuzzer is
/// descheduled for longer than this (a run found a 12-DWord scan "taking"
/// 338 ms of wall time).
const SCAN_TIME: Duration = Duration::from_millis(250);

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration;
    // CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The engine context the vGPU's submissions run on (slot 0's).
const VGPU_CONTEXT: ContextId = match VgpuId::new(0) {
    Some(slot) => ContextId::of_vgpu(slot),
    None => panic!("slot 0 exists"),
};
/// The neighbour vGPU's context, loaded on every other engine.
const NEIGHBOUR_CONTEXT: ContextId = match VgpuId::new(1) {
    Some(slot) => ContextId::of_vgpu(slot),
    None => panic!("slot 1 exists"),
};

/// Physical frame ranges, as (first frame, count).
const APERTURE_FRAMES: (u64, u64) = (0x1_0000, APERTURE_SIZE / 4096);
const HIDDEN_FRAMES: (u64, u64) = (0x1_1000, HIDDEN_SIZE / 4096);
const SHADOW_FRAMES: (u64, u64) = (0x2_0000, SHADOW_GM_SIZE / 4096);
const NEIGHBOUR_FRAMES: (u64, u64) = (0x3_0000, NEIGHBOUR_SIZE / 4096);
/// The vGPU's shadow PPGTT pool (the monitor's frames given to it).
const PPGTT_TABLES: usize = 32;
const POOL_FRAMES: (u64, u64) = (0x4_0000, gpu::ppgtt::shadow::pool_frames(PPGTT_TABLES));
/// The guest's RAM in PPGTT mode: guest page g is hidden-slice frame g.
const GUEST_RAM_PAGES: u64 = HIDDEN_SIZE / 4096;
/// Guest pages of its tables: PML4, PDP, PD, two PTs (the second maps
/// PPGTT 16 MiB.., the first 0..2 MiB), and the pages the base PT maps
/// (PPGTT 0.. -> guest pages 0x300..).
const TABLES: [u64; 5] = [0x3f0, 0x3f1, 0x3f2, 0x3f3, 0x3f4];
const MAPPED: u64 = 0x300;
/// Where the PPGTT batch is (guest page 0x310).
const PPGTT_BATCH: u64 = 0x1_0000;

fn in_frames(addr: u64, len: u64, (first, count): (u64, u64)) -> bool {
    let (lo, hi) = (first * 4096, (first + count) * 4096);
    addr >= lo && addr + len <= hi
}

/// Sparse physical memory that classifies every access.
struct Checked {
    pages: HashMap<u64, Box<[u8; 4096]>>,
    /// The monitor (not the GPU) is accessing: setup, shadow upload.
    monitor: bool,
    /// First access the GPU must not have made.
    violation: Option<(&'static str, u64, usize)>,
    /// Frames the GPU wrote since the last submission.
    written: Vec<u64>,
    /// In a PPGTT submission: the vGPU's scratch page (the GPU may write
    /// it) and its pool (the GPU may read the tables and the window).
    ppgtt: Option<u64>,
}

impl Checked {
    fn gpu_may(&self, write: bool, addr: u64, len: usize) -> bool {
        let len = len as u64;
        let vgpu = in_frames(addr, len, APERTURE_FRAMES) || in_frames(addr, len, HIDDEN_FRAMES);
        let scratch = self.ppgtt.is_some_and(|f| in_frames(addr, len, (f, 1)));
        if write {
            return vgpu || scratch;
        }
        let pool = self.ppgtt.is_some() && in_frames(addr, len, POOL_FRAMES);
        vgpu || pool
            || in_frames(addr, len, SHADOW_FRAMES)
            || (addr >= GGTT_TABLE && addr + len <= GGTT_TABLE + GGTT_TABLE_BYTES)
    }
    fn note(&mut self, write: bool, addr: u64, len: usize) {
        if !self.monitor && self.violation.is_none() && !self.gpu_may(write, addr, len) {
            self.violation = Some((if write { "write" } else { "read" }, addr, len));
        }
        if write && !self.monitor && len > 0 {
            self.written.extend(addr >> 12..=(addr + len as u64 - 1) >> 12);
        }
    }
}

impl PhysMem for Checked {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if !self.monitor && !self.gpu_may(false, addr.raw(), buf.len()) {
            // `read` takes &self: record through the interior cell below.
            VIOLATION.with(|v| {
                v.borrow_mut()
                    .get_or_insert(("read", addr.raw(), buf.len()));
            });
        }
        let mut done = 0;
        while done < buf.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            match self.pages.get(&(a >> 12)) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        self.note(true, addr.raw(), data.len());
        let mut done = 0;
        while done < data.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(data.len() - done);
            let p = self
                .pages
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0u8; 4096]));
            p[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

thread_local! {
    static VIOLATION: RefCell<Option<(&'static str, u64, usize)>> = const { RefCell::new(None) };
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

struct World {
    sim: SimGpu<Checked>,
    /// The vGPU's shadow PPGTT (released before each PPGTT input).
    ppgtt: ShadowPpgtt<PPGTT_TABLES>,
    shadow: Box<Shadow>,
    /// Guest memory with the fixture batches, restored before each input.
    pristine: FakeGm,
    gm: FakeGm,
    /// Inputs, accepted submissions, executed without an engine fault,
    /// stopped on a command the model does not execute.
    stats: [u64; 4],
}

fn map(b: &mut dyn Backend, gm_base: u64, (frame, pages): (u64, u64)) {
    for i in 0..pages {
        let idx = HostGgttIndex::new((gm_base >> 12) + i).unwrap();
        let f = b.write_pte(
            idx,
            HostPte::map(PhysFrame::new(frame + i).unwrap(), PteFlags::NONE),
        );
        b.flush_ggtt(f);
    }
}

impl World {
    fn new() -> World {
        let mem = Checked {
            pages: HashMap::new(),
            monitor: true,
            violation: None,
            written: Vec::new(),
            ppgtt: None,
        };
        let mut sim = SimGpu::new(mem, PhysAddr::new(GGTT_TABLE).unwrap()).unwrap();
        let pool = PhysFrame::new(POOL_FRAMES.0).unwrap();
        let ppgtt = ShadowPpgtt::new(pool, PPGTT_TABLES, sim.mem_mut()).unwrap();
        map(&mut sim, APERTURE_HOST, APERTURE_FRAMES);
        map(&mut sim, HIDDEN_HOST, HIDDEN_FRAMES);
        map(&mut sim, SHADOW_GM, SHADOW_FRAMES);
        map(&mut sim, NEIGHBOUR_GM, NEIGHBOUR_FRAMES);
        let pristine = fixture();
        let gm = FakeGm {
            aperture: pristine.aperture.clone(),
            hidden: pristine.hidden.clone(),
        };
        // These are GGTT (legacy ring) submissions: the monitor's default
        // shader policy refuses their shader work (`ShaderPolicy`), since a
        // draw follows surface state the scanner does not audit, and
        // SimGpu's draw executes it.
        let mut shadow = shadow(Engine::Render);
        shadow.deny_shaders = true;
        let mut w = World {
            sim,
            ppgtt,
            shadow,
            pristine,
            gm,
            stats: [0; 4],
        };
        w.self_test();
        w
    }

    /// The checker is not vacuous: a store to the neighbour that bypasses
    /// the scanner is caught, and a scanned store lands in the vGPU.
    fn self_test(&mut self) {
        let sim = &mut self.sim;
        sim.mem_mut().monitor = true;
        let mut bad = sdi(NEIGHBOUR_GM + 0x40, 0xbad).to_vec();
        bad.extend([NOOP, NOOP, NOOP, NOOP]);
        upload(sim, SHADOW_RING_HOST, &bad);
        sim.mem_mut().monitor = false;
        let ring_range =
            HostGmRange::new(HostGm::new(SHADOW_RING_HOST).unwrap(), 0x1_0000).unwrap();
        let s = Submission::new(
            Engine::Render,
            ContextId::MONITOR,
            ring_range,
            0,
            4 * bad.len() as u32,
        )
        .unwrap();
        let _ = sim.submit(&s);
        run_to_end(sim, Engine::Render);
        assert!(
            sim.mem().violation.is_some(),
            "checker missed an unscanned store to the neighbour"
        );
        sim.mem_mut().violation = None;
        sim.mem_mut().monitor = true;
        // A scanned store (random mode, render engine, 4 ring DWords) is
        // accepted, executed, and lands in the vGPU's hidden slice.
        let mut data = vec![0u8, 4];
        for w in sdi(HIDDEN + 0x1_0000, 7) {
            data.extend(w.to_le_bytes());
        }
        one(self, &data);
        let mut v = [0u8; 4];
        self.sim
            .read_gm(HostGm::new(HIDDEN_HOST + 0x1_0000).unwrap(), &mut v)
            .unwrap();
        assert_eq!(u32::from_le_bytes(v), 7, "scanned store did not land");
    }

    /// Restores the guest memory the previous input may have changed.
    fn reset(&mut self) {
        let ring = (RING_SIZE / 4) as usize;
        self.gm.aperture[..ring].copy_from_slice(&self.pristine.aperture[..ring]);
        let from = ((HIDDEN_SIZE - 0x10_0000) / 4) as usize;
        self.gm.hidden[from..].copy_from_slice(&self.pristine.hidden[from..]);
    }
}

/// The guest's RAM in PPGTT mode (guest page g: hidden frame g).
fn guest_ram() -> FrameRuns<1> {
    let mut map = FrameRuns::new();
    let _ = map.push(FrameRun {
        first_page: GuestPage::new(0).unwrap(),
        first_frame: PhysFrame::new(HIDDEN_FRAMES.0).unwrap(),
        count: GUEST_RAM_PAGES,
    });
    map
}

/// A PPGTT mode input: `[mode, n, n * 4 bytes of table entries, batch]`.
/// Writes the guest's tables (a base layout, then the input's entries)
/// and the batch into the vGPU's frames; returns the engine.
fn ppgtt_input(data: &[u8], sim: &mut SimGpu<Checked>) -> Option<Engine> {
    let (&mode, rest) = data.split_first()?;
    let (&n, rest) = rest.split_first()?;
    let n = usize::from(n % 32);
    let (entries, rest) = rest.split_at_checked(4 * n)?;
    let frame = |page: u64| PhysFrame::new(HIDDEN_FRAMES.0 + page).unwrap();
    let mem = sim.mem_mut();
    let mut set = |page: u64, index: u64, e: Entry| {
        mem.write(frame(page).at((index % 512) * 8), &e.raw().to_le_bytes())
            .unwrap();
    };
    for &t in &TABLES {
        for i in 0..512 {
            set(t, i, Entry::ABSENT);
        }
    }
    let [pml4, pdp, pd, pt, pt2] = TABLES;
    set(pml4, 0, Entry::new(pdp, WRITABLE));
    set(pdp, 0, Entry::new(pd, WRITABLE));
    set(pd, 0, Entry::new(pt, WRITABLE));
    set(pd, 8, Entry::new(pt2, WRITABLE));
    for i in 0..64 {
        set(pt, i, Entry::new(MAPPED + i, WRITABLE));
        set(pt2, i, Entry::new(i, WRITABLE));
    }
    for e in entries.chunks_exact(4) {
        let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let table = TABLES[(v & 7) as usize % TABLES.len()];
        // Index 0..7, 64 or 511 mostly (where the walks go), else any.
        let index = match v >> 3 & 0x3ff {
            i @ 0..=7 => u64::from(i),
            8..=15 => 511,
            i => u64::from(i) % 512,
        };
        let arg = u64::from(v >> 16 & 0x3ff);
        let e = match v >> 26 {
            0..=9 => Entry::ABSENT,
            10..=29 => Entry::new(arg % GUEST_RAM_PAGES, WRITABLE),
            30..=39 => Entry::new(arg % GUEST_RAM_PAGES, 0),
            40..=44 => Entry::new(NEIGHBOUR_FRAMES.0 - HIDDEN_FRAMES.0 + arg % 16, WRITABLE),
            45..=49 => Entry::new(POOL_FRAMES.0 - HIDDEN_FRAMES.0 + arg % POOL_FRAMES.1, WRITABLE),
            50..=54 => Entry::new(TABLES[arg as usize % TABLES.len()], WRITABLE),
            55..=59 => Entry::from_raw(1 | 2 | 1 << 7 | (arg % 2) << 21),
            _ => Entry::new(arg, WRITABLE | 1 << 7),
        };
        set(table, index, e);
    }
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .take(0x4000 / 4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let bytes: Vec<u8> = words.iter().flat_map(|d| d.to_le_bytes()).collect();
    for (i, chunk) in bytes.chunks(4096).enumerate() {
        let page = MAPPED + (PPGTT_BATCH >> 12) + i as u64;
        mem.write(frame(page).at(0), chunk).unwrap();
    }
    Some(Engine::ALL[usize::from(mode) % 4])
}

/// The scanner's view of a PPGTT context: the guest's GM as before, and
/// its PPGTT through the shadow tables in the checked memory.
struct PpgttGm<'a> {
    gm: &'a FakeGm,
    mem: &'a Checked,
    root: PhysFrame,
}

impl GmSpace for PpgttGm<'_> {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        self.gm.read_guest(at, out)
    }
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        self.gm.g2h(range)
    }
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        self.gm.slice_of(at)
    }
    fn ppgtt(&self) -> Option<&dyn PpgttSpace> {
        Some(self)
    }
}

impl PpgttSpace for PpgttGm<'_> {
    fn frame_of(&self, va: PpgttAddr, write: bool) -> Result<PhysFrame, PpgttFault> {
        let t = walk(&HostTables { mem: self.mem }, self.root.number(), va).map_err(|e| match e {
            WalkError::NotPresent { .. } => PpgttFault::NotPresent,
            WalkError::Read { .. } => PpgttFault::Unreadable,
        })?;
        if write && !t.writable {
            return Err(PpgttFault::ReadOnly);
        }
        PhysFrame::new(t.page).map_err(|_| PpgttFault::Unreadable)
    }
    fn read_frame(&self, frame: PhysFrame, offset: u64, out: &mut [u32]) -> Result<(), PpgttFault> {
        let mut b = vec![0u8; out.len() * 4];
        self.mem
            .read(frame.at(offset), &mut b)
            .map_err(|_| PpgttFault::Unreadable)?;
        for (w, c) in out.iter_mut().zip(b.chunks_exact(4)) {
            *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }
}

/// Builds (engine, ring words) from the input; may write a batch.
fn stream(data: &[u8], gm: &mut FakeGm) -> Option<(Engine, Vec<u32>)> {
    let (&mode, rest) = data.split_first()?;
    if mode & 0x80 == 0 {
        // Random: rest[0] = ring DWords, then the ring, then a batch.
        let (&k, rest) = rest.split_first()?;
        let words: Vec<u32> = rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let k = usize::from(k).min(words.len());
        let (ring, batch) = words.split_at(k);
        let batch = &batch[..batch.len().min(0x1_0000 / 4)];
        gm.write(FUZZ_BATCH, batch);
        return Some((Engine::ALL[usize::from(mode) % 4], ring.to_vec()));
    }
    let mut seeds = seeds();
    let (engine, mut cmds) = seeds.swap_remove(usize::from(mode & 0x7f) % seeds.len());
    for r in rest.chunks_exact(6) {
        let at = usize::from(u16::from_le_bytes([r[0], r[1]]));
        let v = u32::from_le_bytes([r[2], r[3], r[4], r[5]]);
        let n = cmds.len();
        let i = (at & 0x7fff) % n;
        if at & 0x8000 != 0 {
            cmds[i] = v;
        } else {
            cmds[i] ^= 1 << (v & 31);
        }
    }
    Some((engine, cmds))
}

fn one(w: &mut World, data: &[u8]) {
    w.stats[0] += 1;
    if w.stats[0].is_power_of_two() {
        let [n, a, e, u] = w.stats;
        eprintln!(
            "scan_sim: {n} inputs, {a} accepted, {e} executed without a fault, \
             {u} stopped on an unmodelled command"
        );
    }
    w.reset();
    let ppgtt_mode = data.first().is_some_and(|m| m & 0xc0 == 0x40);
    let mut root: Option<ShadowRoot> = None;
    let (engine, cmds) = if ppgtt_mode {
        w.sim.mem_mut().monitor = true;
        let Some(engine) = ppgtt_input(data, &mut w.sim) else {
            return;
        };
        w.ppgtt.release_all();
        let map = guest_ram();
        match w.ppgtt.pin(GuestPage::new(TABLES[0]).unwrap(), &map, w.sim.mem_mut()) {
            Ok((r, _)) => root = Some(r),
            Err(e) => {
                assert!(e.is_guest_fault(), "shadow PPGTT: {e}");
                return;
            }
        }
        let mut ring = ppgtt_bb_start(PPGTT_BATCH, false).to_vec();
        ring.push(NOOP);
        (engine, ring)
    } else {
        let Some(x) = stream(data, &mut w.gm) else {
            return;
        };
        x
    };
    if cmds.len() >= (RING_SIZE / 4) as usize {
        return;
    }
    let rs = ring(&mut w.gm, &cmds);
    w.shadow.engine = engine;
    // Shader work is allowed in PPGTT contexts only (the default policy).
    w.shadow.deny_shaders = root.is_none();
    let t = thread_cpu_time();
    let result = match &root {
        Some(r) => {
            let view = PpgttGm {
                gm: &w.gm,
                mem: w.sim.mem(),
                root: r.frame(),
            };
            w.shadow.scan(&view, rs)
        }
        None => w.shadow.scan(&w.gm, rs),
    };
    let took = thread_cpu_time().saturating_sub(t);
    assert!(took < SCAN_TIME, "scan took {took:?} of CPU time");
    let Ok(sub) = result else {
        return;
    };
    assert!(sub.commands <= MAX_COMMANDS && sub.dwords <= MAX_DWORDS);
    check_buffer(engine, &w.shadow.ring[..sub.ring_dwords]);
    for b in &w.shadow.batches[..sub.batches] {
        // A PPGTT batch's addresses are the context's, left as they are.
        if !b.guest.is_ppgtt() {
            check_buffer(engine, &b.words[..b.len]);
        }
    }

    // Upload the shadow (the monitor's writes), then let the GPU run it.
    let sim = &mut w.sim;
    sim.mem_mut().monitor = true;
    // Before the upload: its NOOPs sit where the shadow ring goes.
    load_neighbour_context(sim, engine);
    let mut ring_words = w.shadow.ring[..sub.ring_dwords].to_vec();
    if ring_words.len() % 2 == 1 {
        ring_words.push(NOOP); // the tail is QWord aligned
    }
    upload(sim, SHADOW_RING_HOST, &ring_words);
    for (i, b) in w.shadow.batches[..sub.batches].iter().enumerate() {
        if b.guest.is_ppgtt() {
            // Into the vGPU's window frames (the gate's way).
            let bytes: Vec<u8> = b.image().iter().flat_map(|d| d.to_le_bytes()).collect();
            for (k, chunk) in bytes.chunks(4096).enumerate() {
                let page = window_batch_page(engine, i) + k as u64;
                let f = w.ppgtt.window_batch_frame(page).expect("window frame");
                sim.mem_mut().write(f.at(0), chunk).unwrap();
            }
            continue;
        }
        upload(
            sim,
            SHADOW_BATCH_HOST + SHADOW_BATCH_STRIDE * i as u64,
            b.image(),
        );
    }
    sim.reset_engine(engine);
    sim.mem_mut().ppgtt = root.as_ref().map(|_| w.ppgtt.scratch_page().number());
    sim.mem_mut().monitor = false;
    sim.mem_mut().violation = None;
    sim.mem_mut().written.clear();
    VIOLATION.with(|v| *v.borrow_mut() = None);
    let ring_range = HostGmRange::new(HostGm::new(SHADOW_RING_HOST).unwrap(), 0x1_0000).unwrap();
    let tail = 4 * ring_words.len() as u32;
    let s = Submission::new(engine, VGPU_CONTEXT, ring_range, 0, tail)
        .expect("shadow ring submission");
    let s = match &root {
        Some(r) => s.with_ppgtt(r.frame()),
        None => s,
    };
    let _ = sim.submit(&s);
    w.stats[1] += 1;
    match run_to_end(sim, engine) {
        EngineStatus::Idle { .. } => w.stats[2] += 1,
        EngineStatus::Faulted(f) if matches!(f.kind, FaultKind::Unmodeled(_)) => w.stats[3] += 1,
        EngineStatus::Faulted(f) if matches!(f.kind, FaultKind::PrivilegeViolation(_)) => {
            panic!("{engine}: an accepted submission stopped on {f:?} (stream {cmds:08x?})")
        }
        _ => {}
    }
    assert!(
        sim.context_is_fresh(NEIGHBOUR_CONTEXT),
        "{engine}: the submission reached another engine's context (stream {cmds:08x?})"
    );
    for i in 0..fence::COUNT {
        assert!(
            sim.read_reg(fence::lo(i)) == 0 && sim.read_reg(fence::hi(i)) == 0,
            "{engine}: fence {i} changed (stream {cmds:08x?})"
        );
    }
    let v = sim
        .mem()
        .violation
        .or_else(|| VIOLATION.with(|v| *v.borrow()));
    assert!(
        v.is_none(),
        "{engine}: GPU {:?} outside the vGPU (stream {:08x?})",
        v,
        cmds
    );
    // Migration trusts the write set: every page the GPU wrote is listed
    // unless the set says it is untracked.
    if !sub.writes.untracked {
        for &frame in &sim.mem().written {
            let scratch = sim.mem().ppgtt == Some(frame);
            let f = PhysFrame::new(frame).unwrap();
            if scratch || sub.writes.contains_frame(f) {
                // The scratch page holds nothing of the guest's.
                continue;
            }
            let guest = [(APERTURE_FRAMES, APERTURE), (HIDDEN_FRAMES, HIDDEN)]
                .into_iter()
                .find(|&((first, count), _)| frame >= first && frame < first + count)
                .map(|((first, _), gm)| (gm >> 12) + frame - first);
            let page = guest.expect("GPU writes land in the vGPU's frames");
            assert!(
                sub.writes.contains(page),
                "{engine}: GPU wrote guest page {page:#x}, not in the write set {:?} (stream {:08x?})",
                sub.writes.runs(),
                cmds
            );
        }
    }
    sim.mem_mut().monitor = true;
    sim.mem_mut().ppgtt = None;
}

/// Runs `engine`'s submission to its end: the model executes as its clock
/// passes, and one second covers any submission's budgets.
fn run_to_end(sim: &mut SimGpu<Checked>, engine: Engine) -> EngineStatus {
    for _ in 0..4 {
        match sim.poll(engine) {
            EngineStatus::Busy { .. } => sim.advance(sim.now_ns() + 1_000_000_000),
            done => return done,
        }
    }
    sim.poll(engine)
}

/// Makes the neighbour vGPU's (fresh) context the one loaded on every
/// engine but `engine`, by running two MI_NOOPs on it there (the monitor's
/// accesses: the checker ignores them).
fn load_neighbour_context(sim: &mut SimGpu<Checked>, engine: Engine) {
    sim.release_context(NEIGHBOUR_CONTEXT);
    upload(sim, SHADOW_RING_HOST, &[NOOP, NOOP]);
    let ring_range = HostGmRange::new(HostGm::new(SHADOW_RING_HOST).unwrap(), 0x1000).unwrap();
    for other in Engine::ALL.into_iter().filter(|&e| e != engine) {
        sim.reset_engine(other);
        let s = Submission::new(other, NEIGHBOUR_CONTEXT, ring_range, 0, 8).unwrap();
        let _ = sim.submit(&s);
        run_to_end(sim, other);
        let head = sim.read_reg(ring::reg(other, ring::HEAD));
        assert_eq!(head, 8, "{other}: the neighbour's NOOPs did not run");
    }
    assert!(sim.context_is_fresh(NEIGHBOUR_CONTEXT));
}

fn upload(sim: &mut SimGpu<Checked>, at: u64, words: &[u32]) {
    let bytes: Vec<u8> = words.iter().flat_map(|d| d.to_le_bytes()).collect();
    sim.write_gm(HostGm::new(at).unwrap(), &bytes)
        .expect("shadow area is mapped");
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let w = slot.get_or_insert_with(World::new);
        one(w, data);
    });
});
