//! The hostile guest's attempts (issue 11): what a guest may try against
//! the monitor through the interface a virtual machine has, one attempt
//! per class of hole the monitor closes, each of which must be refused.
//!
//! * Command streams ([`Refusal::Scanner`]): one per class of stream the
//!   command scanner refuses (`gpu/tests/scan_attack.rs`,
//!   `scan_control.rs`, `scan_addresses.rs`, `scan_operands.rs`):
//!   privileged and unknown commands, register loads it may not make,
//!   memory outside its slices (written or read), batch starts it cannot
//!   follow, predication, state set after a conditional end, extents past
//!   the slice's end, state consumed without being set. Each has a
//!   *benign twin* ([`stream`] with `benign`), the same submission with
//!   only the offending bit or operand changed, which the scanner accepts:
//!   so a refusal is the scanner's rule at work, not a broken vehicle.
//! * Device accesses ([`Refusal::Device`]): GGTT entries outside its
//!   slices (written and read) or naming pages that are not its own,
//!   registers its BAR0 does not grant, fences and rings outside its
//!   slices, an access that runs past the end of BAR0.
//! * CPU ([`Refusal::Timer`], [`Refusal::Fault`]): a loop that never
//!   yields, and a read of another guest's RAM (the images' probe does
//!   these; they are instructions, not platform accesses).
//! * Memory-resident state in a PPGTT context ([`Refusal::Contained`]):
//!   draws, which shaders are allowed to make there (`shaders=ppgtt`),
//!   whose RENDER_SURFACE_STATE or page tables point at another guest's
//!   frame, at the monitor's memory, at a GM (GGTT) address, or through a
//!   binding table entry at an unmapped surface state. No scanner sees
//!   these addresses, so nothing refuses them: the shadow PPGTT contains
//!   them. The monitor judges by its own evidence that every access
//!   stayed in the vGPU's own frames (the draw landed on its scratch
//!   page, which only its pool holds) or faulted its own context; that
//!   the other guests' memory is unchanged it checks by content at the
//!   end. SimGpu models the draw through surface state (`gpu::sim::draw`)
//!   but neither interface descriptors (MEDIA_INTERFACE_DESCRIPTOR_LOAD
//!   is recorded, not executed; GPGPU_WALKER stops the engine) nor
//!   sampler border colours, so those are not attempted. Each has a
//!   benign twin ([`Attacker::ppgtt_draw`] with `benign`): the same
//!   draw with the pointer at its own page, which lands there.
//!
//! [`Attacker`] runs the stream and device attempts over an [`Arena`]:
//! before each it resets its vGPU with a full GDRST reset (a stopped vGPU
//! comes back only so), maps its pages and proves with a store it checks
//! that the vGPU runs; it declares the attempt ([`Arena::declare`], so the
//! monitor can tell, from its own evidence, whether it refused it), makes
//! it, and sees the verdict where a guest sees it: a refused submission or
//! write stops the vGPU ([`Arena::settle`] says so), a refused read loads
//! all ones ([`gpu::vgpu::REFUSED_READ`]).
//!
//! # Graphics memory
//! The attacker uses [`PAGES`] pages of its RAM: [`LOW_PAGES`] mapped at
//! the start of its aperture slice (rings, a status page, three batch
//! pages, scratch), and [`EDGE_PAGES`] mapped at the very end of its
//! hidden slice, where the streams that try to run past a slice's end sit
//! (so their twins, which stop just short of it, run on mapped pages).
//! Foreign memory is [`Layout::victim`]: another guest's graphics memory
//! when the monitor names it, otherwise the page below its aperture.

use core::fmt;

use gpu::addr::GuestPage;
use gpu::encode::{self, BB_END, NOOP};
use gpu::engine::Engine;
use gpu::execlist::{self, lrc};
use gpu::ggtt::{GuestPte, PteFlags};
use gpu::ppgtt::{Entry, WRITABLE};
use gpu::regs::{fence, gdrst, pvinfo, ring, GGTT_BAR0_OFFSET};

use crate::content::PAGE;
use crate::platform::Platform;

const PAGE_U64: u64 = PAGE as u64;

/// Who refuses an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The command scanner rejects the submission (the vGPU stops).
    Scanner,
    /// The vGPU refuses the BAR0 access (a write stops it; a read loads
    /// all ones).
    Device,
    /// The APIC timer takes the CPU back.
    Timer,
    /// The CPU faults and the monitor kills the guest.
    Fault,
    /// Nothing refuses it; the shadow PPGTT keeps every access in the
    /// vGPU's own frames, or the access faults the guest's own context.
    Contained,
}

impl Refusal {
    /// One word for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Refusal::Scanner => "scanner",
            Refusal::Device => "vgpu",
            Refusal::Timer => "timer",
            Refusal::Fault => "fault",
            Refusal::Contained => "shadow-ppgtt",
        }
    }
}

macro_rules! classes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $word:literal, $refusal:ident;)*) => {
        /// One class of attempt.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Class {
            $($(#[$doc])* $name = $code,)*
        }

        impl Class {
            /// Every class, in the order the hostile guest tries them.
            pub const ALL: [Class; [$($code),*].len()] = [$(Class::$name),*];
            /// Short name, for reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Class::$name => $word,)*
                }
            }
            /// Who must refuse it.
            pub const fn refusal(self) -> Refusal {
                match self {
                    $(Class::$name => Refusal::$refusal,)*
                }
            }
        }
    };
}

classes! {
    /// MI_SET_CONTEXT in a batch (privileged).
    PrivilegedCommand = 1, "privileged-command", Scanner;
    /// A batch start through the per-process GTT (not mediated).
    PpgttBatch = 2, "ppgtt-batch", Scanner;
    /// A batch start with the resource streamer on (privileged).
    ResourceStreamer = 3, "resource-streamer", Scanner;
    /// An opcode no Gen9 engine has.
    UnknownOpcode = 4, "unknown-opcode", Scanner;
    /// A command cut by TAIL.
    TruncatedCommand = 5, "truncated-command", Scanner;
    /// MI_LOAD_REGISTER_IMM of a fence register (not on the list).
    RegisterNotListed = 6, "lri-unlisted-register", Scanner;
    /// MI_LOAD_REGISTER_IMM of a listed register with a value its rule
    /// forbids (CS_DEBUG_MODE2 bit 4 cleared).
    RegisterValue = 7, "lri-forbidden-value", Scanner;
    /// MI_LOAD_REGISTER_MEM into a register with a value rule (a value
    /// the scan cannot see).
    RegisterFromMemory = 8, "lrm-unseen-value", Scanner;
    /// MI_LOAD_REGISTER_REG into the command streamer's TAIL.
    LoadIntoStreamer = 9, "lrr-streamer-register", Scanner;
    /// A codec status read before any codec work of its own (what the
    /// engine holds is another vGPU's).
    StatusBeforeOwnWork = 10, "srm-foreign-status", Scanner;
    /// MI_STORE_DATA_IMM into another guest's memory.
    StoreOutside = 11, "store-outside", Scanner;
    /// PIPE_CONTROL post-sync write into another guest's memory.
    PostSyncOutside = 12, "post-sync-outside", Scanner;
    /// XY_COLOR_BLT whose last row runs past the slice's end.
    BlitPastSlice = 13, "blit-past-slice", Scanner;
    /// MI_COPY_MEM_MEM from another guest's memory into its own.
    CopyFromOutside = 14, "copy-from-outside", Scanner;
    /// XY_SRC_COPY_BLT from another guest's memory into its own.
    BlitFromOutside = 15, "blit-from-outside", Scanner;
    /// MI_SEMAPHORE_WAIT on another guest's memory.
    SemaphoreOutside = 16, "semaphore-outside", Scanner;
    /// A vertex buffer in another guest's memory.
    VertexBufferOutside = 17, "vertex-buffer-outside", Scanner;
    /// A batch in another guest's memory.
    BatchOutside = 18, "batch-outside", Scanner;
    /// A batch that chains to itself.
    BatchCycle = 19, "batch-cycle", Scanner;
    /// Batches nested three deep.
    BatchDepth = 20, "batch-depth", Scanner;
    /// A batch that never ends and runs off the slice's end.
    BatchRunsOff = 21, "batch-runs-off", Scanner;
    /// MI_BATCH_BUFFER_START with Predication Enable (the engine may fall
    /// through into unscanned words).
    PredicatedBatchStart = 22, "predicated-batch-start", Scanner;
    /// A blitter setup set after MI_CONDITIONAL_BATCH_BUFFER_END (the
    /// engine may skip it), used after the batch.
    StateAfterConditionalEnd = 23, "state-after-conditional-end", Scanner;
    /// MI_BATCH_BUFFER_END in the ring.
    BatchEndInRing = 24, "batch-end-in-ring", Scanner;
    /// A chaining batch start inside a second-level batch.
    ChainInSecondLevel = 25, "chain-in-second-level", Scanner;
    /// MI_SET_PREDICATE other than NOOP Never.
    SetPredicate = 26, "set-predicate", Scanner;
    /// SFC_STATE whose output frame runs past the slice's end.
    SfcPastSlice = 27, "sfc-frame-past-slice", Scanner;
    /// A depth buffer whose surface runs past the slice's end.
    DepthPastSlice = 28, "depth-buffer-past-slice", Scanner;
    /// A Ys-tiled fast copy whose 64 KiB tile runs past the slice's end.
    TiledBlitPastSlice = 29, "tiled-blit-past-slice", Scanner;
    /// 3DSTATE_WM_HZ_OP clearing a depth buffer no state of its own set.
    ConsumerWithoutState = 30, "consumer-without-state", Scanner;
    /// A vertex buffer without Address Modify Enable (the address the
    /// engine context holds).
    StaleState = 31, "stale-vertex-buffer", Scanner;
    /// A pre-Gen8 COLOR_BLT (not a Gen9 form).
    UnsupportedCommand = 32, "unsupported-command", Scanner;
    /// MFX_STATE_POINTER (memory-resident state of no known size).
    UnboundedState = 33, "unbounded-state", Scanner;
    /// A GGTT entry of another guest's graphics memory written.
    GgttWriteOutside = 40, "ggtt-write-outside", Device;
    /// A GGTT entry of another guest's graphics memory read.
    GgttReadOutside = 41, "ggtt-read-outside", Device;
    /// A GGTT entry naming a page that is not its own.
    GgttForeignPage = 42, "ggtt-foreign-page", Device;
    /// The execlist submit port, which its BAR0 does not grant.
    RegisterNotGranted = 43, "register-not-granted", Device;
    /// PVINFO's aperture size (growing its slices).
    PvinfoWrite = 44, "pvinfo-write", Device;
    /// A fence register it does not own.
    FenceNotOwned = 45, "fence-not-owned", Device;
    /// A fence over another guest's graphics memory.
    FenceOutside = 46, "fence-outside", Device;
    /// A ring in another guest's graphics memory.
    RingOutside = 47, "ring-outside", Device;
    /// BAR0 between the register space and the GGTT window.
    MmioGap = 48, "mmio-gap", Device;
    /// A 64-bit access whose second half lies past the end of BAR0.
    MmioPastBar = 49, "mmio-past-bar", Device;
    /// A draw whose surface state names a PPGTT page whose entry names
    /// another guest's frame.
    SurfaceForeignFrame = 50, "surface-foreign-frame", Contained;
    /// A draw whose surface state names a PPGTT page whose entry names
    /// the monitor's memory (physical page 0x10, below every guest).
    SurfaceMonitorFrame = 51, "surface-monitor-frame", Contained;
    /// A draw whose surface state holds another guest's GM (GGTT)
    /// address.
    SurfaceGgttAddress = 52, "surface-ggtt-address", Contained;
    /// A draw through a page directory entry naming another guest's frame
    /// as its page table.
    TableForeignFrame = 53, "table-foreign-frame", Contained;
    /// A draw whose binding table entry names a surface state 1 MiB past
    /// the surface state heap, where its PPGTT maps nothing.
    SurfaceStateUnmapped = 54, "surface-state-unmapped", Contained;
    /// A loop that never yields.
    TightLoop = 60, "tight-loop", Timer;
    /// A CPU read of another guest's RAM.
    ForeignRam = 61, "foreign-ram", Fault;
}

impl Class {
    /// Its code (the `attempt` system call's argument).
    pub const fn code(self) -> u64 {
        self as u64
    }
    /// The class with code `code`.
    pub fn from_code(code: u64) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.code() == code)
    }
    /// Its bit in a set of classes ([`Class::ALL`] order).
    pub fn bit(self) -> u64 {
        let index = Class::ALL.iter().position(|&c| c == self).unwrap_or(63);
        1 << index
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---- the attacker's graphics memory ----

/// RAM index of engine `e`'s ring (one page).
pub const fn ring_index(e: Engine) -> u64 {
    match e {
        Engine::Render => 0,
        Engine::Blitter => 1,
        _ => 2,
    }
}
/// RAM index of the status page: control fences, a conditional end's
/// and a semaphore's DWords.
pub const STATUS: u64 = 3;
/// RAM index of the first batch page (batches A, B, C follow).
pub const BATCH: u64 = 4;
/// RAM index of the scratch pages (copy targets, patterns, twins).
pub const SCRATCH: u64 = 7;
/// Pages mapped at the start of the aperture slice.
pub const LOW_PAGES: u64 = 16;
/// Pages mapped at the end of the hidden slice.
pub const EDGE_PAGES: u64 = 16;
/// RAM pages the attacker uses.
pub const PAGES: u64 = LOW_PAGES + EDGE_PAGES;
/// Where in the status page the control store lands.
const CONTROL_SLOT: u64 = 0x100;
/// The PPGTT draws' pages (RAM indices among the low pages, after the
/// first scratch page): the logical ring context (status page, register
/// state), the page tables (PML4, PDP, PD, PT), the surface state heap
/// (surface state at 0, binding table at [`BINDING_TABLE`]) and the draw's
/// own render target. Their ring is the third batch page.
const LRC: u64 = 8;
const PML4: u64 = 10;
const PDP: u64 = 11;
const PD: u64 = 12;
const PT: u64 = 13;
const HEAP: u64 = 14;
const TARGET: u64 = 15;
const DRAW_RING: u64 = BATCH + 2;
const BINDING_TABLE: u32 = 0x800;
/// Physical page of the monitor's memory a PPGTT attempt names (low
/// memory, below every guest's RAM).
const MONITOR_PAGE: u64 = 0x10;

/// The attacker's slices (from PVINFO) and the foreign memory it aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Aperture slice base (guest GM).
    pub aperture: u64,
    /// Aperture slice bytes.
    pub aperture_size: u64,
    /// Hidden slice base.
    pub hidden: u64,
    /// Hidden slice bytes.
    pub hidden_size: u64,
    /// Fences it owns.
    pub fences: u32,
    /// A page-aligned GM address outside its slices.
    pub victim: u64,
}

impl Layout {
    /// The slices PVINFO gives, aimed at `victim` (0: the page below the
    /// aperture, or past the hidden slice if the aperture starts at 0).
    pub fn new(
        aperture: u64,
        aperture_size: u64,
        hidden: u64,
        hidden_size: u64,
        fences: u32,
        victim: u64,
    ) -> Layout {
        let mut l = Layout {
            aperture,
            aperture_size,
            hidden,
            hidden_size,
            fences,
            victim: victim & !(PAGE_U64 - 1),
        };
        if victim == 0 || l.inside(l.victim) {
            l.victim = aperture
                .checked_sub(PAGE_U64)
                .unwrap_or(hidden + hidden_size);
        }
        l
    }
    /// One past the end of the hidden slice.
    pub const fn end(&self) -> u64 {
        self.hidden + self.hidden_size
    }
    /// Whether `gm` is in one of its slices.
    pub const fn inside(&self, gm: u64) -> bool {
        (gm >= self.aperture && gm < self.aperture + self.aperture_size)
            || (gm >= self.hidden && gm < self.end())
    }
    /// GM of RAM index `index` (< [`PAGES`]).
    pub const fn gm(&self, index: u64) -> u64 {
        if index < LOW_PAGES {
            self.aperture + index * PAGE_U64
        } else {
            self.end() - (PAGES - index) * PAGE_U64
        }
    }
    /// RAM index and offset of a GM address of its pages.
    pub fn index_of(&self, gm: u64) -> Option<(u64, usize)> {
        (0..PAGES)
            .find(|&i| (self.gm(i)..self.gm(i) + PAGE_U64).contains(&gm))
            .map(|i| (i, (gm - self.gm(i)) as usize))
    }
    /// Whether the slices hold every page the attacker maps.
    pub const fn fits(&self) -> bool {
        self.aperture_size >= LOW_PAGES * PAGE_U64 && self.hidden_size >= EDGE_PAGES * PAGE_U64
    }
    fn batch(&self, n: u64) -> u64 {
        self.gm(BATCH + n)
    }
    fn scratch(&self) -> u64 {
        self.gm(SCRATCH)
    }
    fn status(&self) -> u64 {
        self.gm(STATUS)
    }
}

// ---- command streams ----

/// DWords of a ring part.
pub const RING_WORDS: usize = 32;
/// DWords of a batch part.
pub const BATCH_WORDS: usize = 64;

/// A bounded list of DWords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words<const N: usize> {
    buf: [u32; N],
    len: usize,
}

impl<const N: usize> Words<N> {
    /// `parts` one after another, if they fit.
    pub fn of(parts: &[&[u32]]) -> Option<Self> {
        let mut w = Words {
            buf: [0; N],
            len: 0,
        };
        for part in parts {
            let end = w.len.checked_add(part.len()).filter(|&e| e <= N)?;
            w.buf[w.len..end].copy_from_slice(part);
            w.len = end;
        }
        Some(w)
    }
    /// The DWords.
    pub fn words(&self) -> &[u32] {
        &self.buf[..self.len]
    }
}

/// One submission: the ring's words (from HEAD 0) and up to three
/// batches, each at a GM address of the attacker's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The engine.
    pub engine: Engine,
    /// Ring words, padded to whole QWords (TAIL's alignment).
    pub ring: Words<RING_WORDS>,
    /// (GM address, words) of each batch.
    pub batches: [Option<(u64, Words<BATCH_WORDS>)>; 3],
}

impl Stream {
    fn new(engine: Engine, ring: &[&[u32]], batches: &[(u64, &[&[u32]])]) -> Option<Stream> {
        let mut ring = Words::<RING_WORDS>::of(ring)?;
        if ring.len % 2 == 1 {
            ring = Words::of(&[ring.words(), &[NOOP]])?;
        }
        let mut s = Stream {
            engine,
            ring,
            batches: [None; 3],
        };
        if batches.len() > s.batches.len() {
            return None;
        }
        for (slot, (at, parts)) in s.batches.iter_mut().zip(batches) {
            *slot = Some((*at, Words::of(parts)?));
        }
        Some(s)
    }
}

const BLT: u32 = 2 << 29;

/// GFXPIPE header of `key` (bits 28:16), `len` DWords.
const fn gfx(key: u32, len: u32) -> u32 {
    (3 << 29) | (key << 16) | (len - 2)
}
const fn lo(a: u64) -> u32 {
    a as u32
}
const fn hi(a: u64) -> u32 {
    (a >> 32) as u32
}
/// MI_SET_CONTEXT (two DWords; privileged).
const SET_CONTEXT: [u32; 2] = [0x18 << 23, 0];
/// 3DSTATE_VERTEX_BUFFERS of one 16-byte-pitch buffer, Address Modify
/// Enable `modify`.
const fn vertex_buffer(at: u64, size: u32, modify: bool) -> [u32; 5] {
    [
        gfx(0x1808, 5),
        ((modify as u32) << 14) | 16,
        lo(at),
        hi(at),
        size,
    ]
}
/// XY_SETUP_BLT, 32 bpp, PATCOPY: destination `dst` of `pitch` bytes, an
/// 8x8 pattern at `pat`.
const fn patcopy_setup(dst: u64, pitch: u32, pat: u64) -> [u32; 10] {
    [
        BLT | (0x01 << 22) | 8,
        (3 << 24) | (0xf0 << 16) | pitch,
        0,
        0,
        lo(dst),
        hi(dst),
        0,
        !0,
        lo(pat),
        hi(pat),
    ]
}
/// XY_SCANLINES_BLT of `rows` rows of `width` pixels from the setup's
/// destination.
const fn scanlines(rows: u32, width: u32) -> [u32; 3] {
    [BLT | (0x25 << 22) | 1, 0, (rows << 16) | width]
}
/// SFC_STATE: a `width` x `rows` linear Y8 output frame of `pitch` bytes
/// at `out`, both line buffers at `lines`.
fn sfc_state(out: u64, lines: u64, pitch: u32, width: u32, rows: u32) -> [u32; 32] {
    let mut w = [0u32; 32];
    w[0] = gfx(0x1501, 32);
    w[2] = ((rows - 1) << 16) | (width - 1);
    w[7] = ((rows - 1) << 16) | (width - 1);
    w[29] = (12 << 28) | ((pitch - 1) << 3);
    for (d, a) in [(17, out), (20, lines), (23, lines)] {
        w[d] = lo(a) & !0xfff;
        w[d + 1] = hi(a) & 0xffff;
    }
    w
}
/// The depth packet: 3DSTATE_MULTISAMPLE (one sample), a 2D D32_FLOAT
/// depth buffer of 256 x `rows` at `at` (pitch 1 KiB, Y-tiled), stencil
/// and HiZ off, clear parameters.
fn depth_packet(at: u64, rows: u32) -> [u32; 23] {
    let mut w = [0u32; 23];
    w[0] = gfx(0x180d, 2);
    w[2] = gfx(0x1805, 8);
    w[3] = (1 << 29) | (1 << 28) | (1 << 18) | 1023;
    w[4] = lo(at);
    w[5] = hi(at);
    w[6] = ((rows - 1) << 18) | (255 << 4);
    w[10] = gfx(0x1806, 5);
    w[15] = gfx(0x1807, 5);
    w[20] = gfx(0x1804, 3);
    w[22] = 1;
    w
}
/// 3DSTATE_WM_HZ_OP: a depth clear of 64 x 64 pixels.
const HZ_CLEAR: [u32; 5] = [gfx(0x1852, 5), 1 << 30, 0, (64 << 16) | 64, 0xffff];
/// XY_FAST_COPY_BLT of `width` x 1 64-bpp pixels from linear `src`
/// (pitch 4 KiB) to `dst`, Ys-tiled with a 1 KiB pitch.
const fn fast_copy_ys(dst: u64, src: u64, width: u32) -> [u32; 10] {
    [
        BLT | (0x42 << 22) | (3 << 13) | 8,
        (4 << 24) | 256,
        0,
        (1 << 16) | width,
        lo(dst),
        hi(dst),
        0,
        4096,
        lo(src),
        hi(src),
    ]
}

/// Register offsets the streams load (PRM vol 2c; i915).
mod reg {
    /// Render CS_GPR0 (listed: context-saved, the engine's own).
    pub const RENDER_GPR0: u32 = 0x2600;
    /// Video CS_GPR0.
    pub const VIDEO_GPR0: u32 = 0x1_2600;
    /// Render RING_TAIL.
    pub const RENDER_TAIL: u32 = 0x2030;
    /// CS_DEBUG_MODE2 (listed with a rule: bit 4 stays set).
    pub const CS_DEBUG_MODE2: u32 = 0x20d8;
    /// MFX_ERROR_FLAG (a codec status).
    pub const MFX_ERROR_FLAG: u32 = 0x1_2800;
    /// Fence 0, low DWord (not loadable by commands).
    pub const FENCE0: u32 = 0x10_0000;
}

/// The stream of stream class `class` on layout `l` (its benign twin if
/// `benign`), or `None` for a class that is not a stream.
pub fn stream(class: Class, l: &Layout, benign: bool) -> Option<Stream> {
    use Engine::{Blitter, Render, Video};
    let b = benign;
    let (a, bb, c) = (l.batch(0), l.batch(1), l.batch(2));
    let d = l.scratch();
    let s = l.status();
    let v = l.victim;
    let end = l.end();
    let start_a = encode::bb_start(a, false);
    let call = |at| encode::bb_start(at, true);
    // A batch A of `body` then MI_BATCH_BUFFER_END, started from the ring.
    let in_batch =
        |engine, body: &[u32]| Stream::new(engine, &[&start_a], &[(a, &[body, &[BB_END]])]);
    let pick = |bad: u64, good: u64| if b { good } else { bad };
    match class {
        Class::PrivilegedCommand => in_batch(Render, if b { &[NOOP, NOOP] } else { &SET_CONTEXT }),
        Class::PpgttBatch | Class::ResourceStreamer => {
            let bit = if class == Class::PpgttBatch { 8 } else { 10 };
            let mut start = start_a;
            start[0] |= u32::from(!b) << bit;
            Stream::new(Render, &[&start], &[(a, &[&[BB_END]])])
        }
        Class::UnknownOpcode => in_batch(Render, &[if b { NOOP } else { 0x3f << 23 }]),
        Class::TruncatedCommand => {
            let store = encode::sdi(d, 1);
            Stream::new(Render, &[if b { &store } else { &store[..2] }], &[])
        }
        Class::RegisterNotListed => in_batch(
            Render,
            &encode::lri(if b { reg::RENDER_GPR0 } else { reg::FENCE0 }, 0),
        ),
        Class::RegisterValue => in_batch(
            Render,
            &encode::lri(
                reg::CS_DEBUG_MODE2,
                if b { 0x0010_0010 } else { 0x0010_0000 },
            ),
        ),
        Class::RegisterFromMemory => in_batch(
            Render,
            &encode::lrm(
                if b {
                    reg::RENDER_GPR0
                } else {
                    reg::CS_DEBUG_MODE2
                },
                s,
            ),
        ),
        Class::LoadIntoStreamer => in_batch(
            Render,
            &encode::lrr(
                reg::RENDER_GPR0,
                if b {
                    reg::RENDER_GPR0 + 8
                } else {
                    reg::RENDER_TAIL
                },
            ),
        ),
        Class::StatusBeforeOwnWork => in_batch(
            Video,
            &encode::srm(
                if b {
                    reg::VIDEO_GPR0
                } else {
                    reg::MFX_ERROR_FLAG
                },
                s,
            ),
        ),
        Class::StoreOutside => in_batch(Render, &encode::sdi(pick(v, d), 0x6a6a_6a6a)),
        Class::PostSyncOutside => in_batch(Render, &encode::pipe_control_imm(pick(v, d), 1)),
        Class::BlitPastSlice => {
            // 16 pixels a row, pitch 4 KiB, from the last page: a second
            // row starts past the end.
            let rows = if b { 1 } else { 2 };
            let dst = end - PAGE_U64;
            in_batch(
                Blitter,
                &encode::color_blt(dst, 4096, 0, 0, 16, rows, 0x5a5a_5a5a),
            )
        }
        Class::CopyFromOutside => in_batch(Render, &encode::copy_mem_mem(d, pick(v, d + 64))),
        Class::BlitFromOutside => in_batch(
            Blitter,
            &encode::copy_blt(d, 256, 0, 0, 16, 4, pick(v, d + PAGE_U64), 256, 0, 0),
        ),
        // SAD >= 0 on a DWord of its own: satisfied at once.
        Class::SemaphoreOutside => in_batch(Video, &encode::semaphore_wait(pick(v, s), 0, 1, true)),
        Class::VertexBufferOutside => in_batch(Render, &vertex_buffer(pick(v, d), 0x1000, true)),
        Class::BatchOutside => Stream::new(
            Render,
            &[&encode::bb_start(pick(v, a), false)],
            &[(a, &[&[BB_END]])],
        ),
        Class::BatchCycle => Stream::new(
            Render,
            &[&start_a],
            &[
                (a, &[&[NOOP], &encode::bb_start(pick(a, bb), false)]),
                (bb, &[&[BB_END]]),
            ],
        ),
        Class::BatchDepth => {
            let third = call(c);
            Stream::new(
                Render,
                &[&start_a],
                &[
                    (a, &[&call(bb), &[BB_END]]),
                    (
                        bb,
                        &[if b { &[NOOP, NOOP, NOOP] } else { &third }, &[BB_END]],
                    ),
                    (c, &[&[BB_END]]),
                ],
            )
        }
        Class::BatchRunsOff => {
            let at = end - 8;
            Stream::new(
                Render,
                &[&encode::bb_start(at, false)],
                &[(at, &[&[NOOP, if b { BB_END } else { NOOP }]])],
            )
        }
        Class::PredicatedBatchStart => {
            let start = if b {
                start_a
            } else {
                encode::bb_start_predicated(a)
            };
            Stream::new(Render, &[&start], &[(a, &[&[BB_END]])])
        }
        Class::StateAfterConditionalEnd => {
            // The first setup aims 64 bytes before the end: a row of 16
            // pixels fits, four rows leave the slice. The second is
            // harmless. After a conditional end the scanner cannot know
            // which holds.
            let edge = patcopy_setup(end - 64, 4096, d);
            let safe = patcopy_setup(d, 4096, d);
            let cond = encode::cond_bb_end(s, 0, false);
            let none: &[u32] = &[];
            Stream::new(
                Blitter,
                &[&start_a, &scanlines(4, 16)],
                &[(a, &[&edge, if b { none } else { &cond }, &safe, &[BB_END]])],
            )
        }
        Class::BatchEndInRing => {
            Stream::new(Render, &[&[if b { NOOP } else { BB_END }, NOOP]], &[])
        }
        Class::ChainInSecondLevel => {
            let chain = encode::bb_start(bb, false);
            Stream::new(
                Render,
                &[&start_a],
                &[
                    (a, &[&call(c), &[BB_END]]),
                    (c, &[if b { &[NOOP, NOOP, BB_END] } else { &chain }]),
                    (bb, &[&[BB_END]]),
                ],
            )
        }
        Class::SetPredicate => Stream::new(
            Render,
            &[&start_a],
            &[(
                a,
                &[
                    &[encode::set_predicate(u32::from(!b))],
                    &encode::sdi(d, 1),
                    &[encode::set_predicate(0), BB_END],
                ],
            )],
        ),
        Class::SfcPastSlice => {
            // 16 rows at a 1 KiB pitch from 16 KiB before the end fit
            // (the last row is 1000 bytes); 17 do not.
            let rows = if b { 16 } else { 17 };
            in_batch(Video, &sfc_state(end - 16 * 1024, d, 1024, 1000, rows))
        }
        Class::DepthPastSlice => {
            // 256 x 64 D32 pixels, Y-tiled at a 1 KiB pitch: 64 KiB, the
            // edge pages exactly; 256 rows are 256 KiB.
            in_batch(
                Render,
                &depth_packet(end - 0x1_0000, if b { 64 } else { 256 }),
            )
        }
        Class::TiledBlitPastSlice => {
            // One row of a Ys tile is the whole 64 KiB tile.
            let dst = end - pick(0x8000, 0x1_0000);
            in_batch(Blitter, &fast_copy_ys(dst, d, 16))
        }
        Class::ConsumerWithoutState => {
            let packet = depth_packet(end - 0x1_0000, 64);
            let none: &[u32] = &[];
            Stream::new(
                Render,
                &[&start_a],
                &[(a, &[if b { &packet } else { none }, &HZ_CLEAR, &[BB_END]])],
            )
        }
        Class::StaleState => in_batch(Render, &vertex_buffer(d, 0x1000, b)),
        Class::UnsupportedCommand => {
            // COLOR_BLT (pre-Gen8, 5 DWords) and XY_COLOR_BLT at the same
            // target.
            let xy = encode::color_blt(d, 256, 0, 0, 16, 4, 0);
            let old = [
                BLT | (0x40 << 22) | 3,
                (3 << 24) | (0xf0 << 16) | 256,
                (4 << 16) | 64,
                lo(d),
                0,
            ];
            in_batch(Blitter, if b { &xy } else { &old })
        }
        Class::UnboundedState => {
            // MFX_STATE_POINTER, or a NOOP pair in its place.
            let pointer = [gfx(0x1006, 2), lo(d)];
            in_batch(Video, if b { &[NOOP, NOOP] } else { &pointer })
        }
        _ => None,
    }
}

// ---- running the attempts ----

/// What the attacker needs of its machine beyond [`Platform`].
pub trait Arena: Platform {
    /// Tells the monitor that what follows is an attempt of `class`.
    fn declare(&mut self, class: Class) -> Result<(), Self::Error>;
    /// Waits until the vGPU has nothing queued or running; true if it
    /// stopped (a refused submission or write, or a GPU fault).
    fn settle(&mut self) -> Result<bool, Self::Error>;
    /// 64-bit BAR0 read.
    fn mmio_read64(&mut self, offset: u32) -> Result<u64, Self::Error>;
    /// 64-bit BAR0 write at `offset` with no check that it lies in BAR0
    /// (the attempt to reach past its end).
    fn mmio_write64_unchecked(&mut self, offset: u32, value: u64) -> Result<(), Self::Error>;
}

/// Why the attacker could not go on (not a refusal: the machine or the
/// vGPU did not behave as a vGPU does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackError<E> {
    /// The platform failed.
    Platform(E),
    /// PVINFO does not carry the GVT-g magic.
    NoPvinfo,
    /// The slices or the RAM are too small for the attacker's pages.
    TooSmall,
    /// After a reset the vGPU did not run a plain store: the refusals
    /// would prove nothing.
    ControlFailed {
        /// The attempt before which it failed.
        before: Class,
    },
}

impl<E: fmt::Display> fmt::Display for AttackError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackError::Platform(e) => write!(f, "{e}"),
            AttackError::NoPvinfo => f.write_str("no vGPU: PVINFO magic missing"),
            AttackError::TooSmall => f.write_str("the vGPU's slices or RAM are too small"),
            AttackError::ControlFailed { before } => write!(
                f,
                "before {before}: the reset vGPU did not run a plain store, so refusals prove nothing"
            ),
        }
    }
}

/// The attacker: its layout and its RAM.
#[derive(Clone, Copy, Debug)]
pub struct Attacker {
    layout: Layout,
    ram_first: u64,
    ram_pages: u64,
    control: u32,
    /// Where the next submission goes in each ring (render, blitter,
    /// video), from 0 after each reset.
    ring_at: [u32; 3],
    /// Another guest's RAM frame the PPGTT attempts name (0: none given,
    /// then the first page past its own RAM).
    victim_frame: u64,
}

/// What an attempt came to, as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The class.
    pub class: Class,
    /// Whether it was refused.
    pub refused: bool,
}

impl Attacker {
    /// Reads PVINFO; `ram_first`, `ram_pages`: the RAM it may use (at
    /// least [`PAGES`] pages); `victim`: foreign GM to aim at (0: its own
    /// choice, see [`Layout::new`]).
    pub fn probe<P: Platform>(
        p: &mut P,
        ram_first: u64,
        ram_pages: u64,
        victim: u64,
    ) -> Result<Attacker, AttackError<P::Error>> {
        let mut read = |rel: u32| {
            p.mmio_read32(pvinfo::PAGE + rel)
                .map(u64::from)
                .map_err(AttackError::Platform)
        };
        let magic = read(pvinfo::MAGIC_OFFSET)? | read(pvinfo::MAGIC_OFFSET + 4)? << 32;
        if magic != pvinfo::MAGIC {
            return Err(AttackError::NoPvinfo);
        }
        let layout = Layout::new(
            read(pvinfo::APERTURE_BASE)?,
            read(pvinfo::APERTURE_SIZE)?,
            read(pvinfo::HIDDEN_BASE)?,
            read(pvinfo::HIDDEN_SIZE)?,
            read(pvinfo::FENCE_NUM)? as u32,
            victim,
        );
        if !layout.fits() || ram_pages < PAGES {
            return Err(AttackError::TooSmall);
        }
        Ok(Attacker {
            layout,
            ram_first,
            ram_pages,
            control: 0,
            ring_at: [0; 3],
            victim_frame: 0,
        })
    }

    /// Aims the PPGTT attempts at the RAM frame holding physical address
    /// `address` (another guest's, as the monitor names it).
    pub fn aim_at_frame(&mut self, address: u64) {
        self.victim_frame = address / PAGE_U64;
    }

    fn write_entry<P: Platform>(
        &self,
        p: &mut P,
        table: u64,
        va: u64,
        shift: u32,
        entry: Entry,
    ) -> Result<(), AttackError<P::Error>> {
        let at = ((va >> shift) & 511) as usize * 8;
        p.ram_write(self.ram_first + table, at, &entry.raw().to_le_bytes())
            .map_err(AttackError::Platform)
    }

    /// The draw of PPGTT class `class` (its benign twin if `benign`) in a
    /// logical ring context of its own, on the render engine switched to
    /// execlist mode (after [`Attacker::fresh`]): its page tables map its
    /// heap and render target at their GM addresses, the class bends one
    /// pointer. Returns whether, as far as the guest can see, the draw did
    /// not reach its own render target or stopped its vGPU: for an attack
    /// the containment, for a twin a failure.
    pub fn ppgtt_draw<P: Arena>(
        &mut self,
        p: &mut P,
        class: Class,
        benign: bool,
    ) -> Result<bool, AttackError<P::Error>> {
        let e = AttackError::Platform;
        let l = self.layout;
        let own = |i: u64| Entry::new(self.ram_first + i, WRITABLE);
        let (heap, target) = (l.gm(HEAP), l.gm(TARGET));
        if (l.gm(LRC) >> 21) != (target >> 21) {
            return Err(AttackError::TooSmall);
        }
        for page in [PML4, PDP, PD, PT, TARGET, LRC, LRC + 1] {
            p.ram_write(self.ram_first + page, 0, &[0u8; PAGE])
                .map_err(e)?;
        }
        self.write_entry(p, PML4, heap, 39, own(PDP))?;
        self.write_entry(p, PDP, heap, 30, own(PD))?;
        self.write_entry(p, PD, heap, 21, own(PT))?;
        self.write_entry(p, PT, heap, 12, own(HEAP))?;
        self.write_entry(p, PT, target, 12, own(TARGET))?;
        // Where the surface state points, and the entry it goes through.
        let bent = l.aperture + LOW_PAGES * PAGE_U64;
        // The victim's frame, where that number is not one of its own
        // guest pages (guest page numbers are the guest's own: a shadow
        // maps its own page for it); else the first page past its RAM.
        let own_pages = self.ram_first..self.ram_first + self.ram_pages;
        let foreign = if self.victim_frame == 0 || own_pages.contains(&self.victim_frame) {
            own_pages.end
        } else {
            self.victim_frame
        };
        let (surface, table_entry) = match class {
            Class::SurfaceForeignFrame | Class::SurfaceMonitorFrame => {
                let page = if class == Class::SurfaceForeignFrame {
                    foreign
                } else {
                    MONITOR_PAGE
                };
                let entry = if benign {
                    own(TARGET)
                } else {
                    Entry::new(page, WRITABLE)
                };
                self.write_entry(p, PT, bent, 12, entry)?;
                (bent, 0)
            }
            Class::SurfaceGgttAddress => (if benign { target } else { l.victim }, 0),
            Class::TableForeignFrame => {
                // The neighbouring 2 MiB: its PT is the guest's own (the
                // twin: the target again) or another guest's frame.
                let neighbour = target ^ (1 << 21);
                let entry = if benign {
                    own(PT)
                } else {
                    Entry::new(foreign, WRITABLE)
                };
                self.write_entry(p, PD, neighbour, 21, entry)?;
                (neighbour, 0)
            }
            Class::SurfaceStateUnmapped => (target, if benign { 0 } else { 0x10_0000 }),
            _ => return Err(AttackError::TooSmall),
        };
        let colour = 0xc0de_0000 | class.code() as u32;
        let mut state = [0u32; 16];
        // 2D, R8G8B8A8_UNORM, linear, 64 x 16 pixels, pitch 256: a page.
        state[0] = 1 << 29 | 0xc7 << 18;
        state[2] = 63 | 15 << 16;
        state[3] = 255;
        state[8] = lo(surface);
        state[9] = hi(surface);
        for (c, dw) in state[12..16].iter_mut().enumerate() {
            *dw = (colour >> (8 * c)) & 0xff;
        }
        self.write_gm(p, heap, &state)?;
        self.write_gm(p, heap + u64::from(BINDING_TABLE), &[table_entry])?;
        // The ring: the surface state base (in GM, as the scanner audits
        // it; the PPGTT maps the heap there too), the binding table, the
        // draw.
        let mut sba = [0u32; 19];
        sba[0] = (0x6101 << 16) | 17;
        sba[4] = lo(heap) | 1;
        sba[5] = hi(heap);
        let ring_gm = l.gm(DRAW_RING);
        let Some(ring) = Words::<RING_WORDS>::of(&[
            &sba,
            &[0x782a << 16, BINDING_TABLE],
            &[(0x7b00 << 16) | 5, 4, 3, 0, 1, 0, 0],
        ]) else {
            return Err(AttackError::TooSmall);
        };
        self.write_gm(p, ring_gm, ring.words())?;
        let tail = 4 * ring.words().len() as u32;
        let mut regs = [0u32; lrc::READ_DWORDS];
        let base = Engine::Render.mmio_base();
        let pml4 = (self.ram_first + PML4) * PAGE_U64;
        for (index, reg, value) in [
            (lrc::RING_HEAD, ring::HEAD, 0),
            (lrc::RING_TAIL, ring::TAIL, tail),
            (lrc::RING_START, ring::START, ring_gm as u32),
            (lrc::RING_CTL, ring::CTL, ring::CTL_ENABLE),
            (lrc::PDP0_UDW, 0x274, (pml4 >> 32) as u32),
            (lrc::PDP0_LDW, 0x270, pml4 as u32),
        ] {
            regs[index] = base + reg;
            regs[index + 1] = value;
        }
        self.write_gm(p, l.gm(LRC + 1), &regs)?;
        let on = gpu::regs::masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE);
        p.mmio_write32(base + ring::MODE, on).map_err(e)?;
        let desc = 1u64 << 32
            | l.gm(LRC)
            | execlist::DESC_PRIVILEGE
            | execlist::ADDRESSING_4_LEVEL << execlist::DESC_ADDRESSING_SHIFT
            | execlist::DESC_VALID;
        for dword in [0, 0, (desc >> 32) as u32, desc as u32] {
            p.mmio_write32(base + ring::ELSP, dword).map_err(e)?;
        }
        let stopped = p.settle().map_err(e)?;
        let mut got = [0u8; 4];
        p.ram_read(self.ram_first + TARGET, 0, &mut got)
            .map_err(e)?;
        Ok(stopped || u32::from_le_bytes(got) != colour)
    }

    /// Its layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Full reset, its pages mapped, then a store on the render ring that
    /// must land: the vGPU is known to work before attempt `next`.
    pub fn fresh<P: Arena>(&mut self, p: &mut P, next: Class) -> Result<(), AttackError<P::Error>> {
        let e = AttackError::Platform;
        p.mmio_write32(gdrst::OFFSET.raw(), gdrst::FULL)
            .map_err(e)?;
        self.ring_at = [0; 3];
        for i in 0..PAGES {
            let page = GuestPage::new(self.ram_first + i).map_err(|_| AttackError::TooSmall)?;
            let pte = GuestPte::map(page, PteFlags::NONE).raw();
            p.mmio_write64(self.ggtt_slot(self.layout.gm(i)), pte)
                .map_err(e)?;
        }
        self.control = self.control.wrapping_add(1) | 1;
        let at = self.layout.status() + CONTROL_SLOT;
        let store = encode::sdi(at, self.control);
        let Some(check) = Stream::new(Engine::Render, &[&store], &[]) else {
            return Err(AttackError::TooSmall);
        };
        self.submit(p, &check)?;
        let failed = p.settle().map_err(e)?;
        let mut got = [0u8; 4];
        p.ram_read(self.ram_first + STATUS, CONTROL_SLOT as usize, &mut got)
            .map_err(e)?;
        if failed || u32::from_le_bytes(got) != self.control {
            return Err(AttackError::ControlFailed { before: next });
        }
        Ok(())
    }

    fn ggtt_slot(&self, gm: u64) -> u32 {
        // GM below 4 GiB: the slot is below 16 MiB.
        GGTT_BAR0_OFFSET + (gm / PAGE_U64 * 8) as u32
    }

    /// Writes `s` into its pages and ring, enables the ring and writes
    /// TAIL (the submission).
    fn submit<P: Arena>(&mut self, p: &mut P, s: &Stream) -> Result<(), AttackError<P::Error>> {
        let e = AttackError::Platform;
        for (at, words) in s.batches.iter().flatten() {
            self.write_gm(p, *at, words.words())?;
        }
        // Each submission's words follow the last one's in the ring (the
        // streams are short: a ring page holds those between two resets).
        let slot = ring_index(s.engine) as usize;
        let ring_gm = self.layout.gm(slot as u64);
        let head = self.ring_at[slot];
        self.write_gm(p, ring_gm + u64::from(head), s.ring.words())?;
        let tail = head + 4 * s.ring.words().len() as u32;
        if tail >= PAGE as u32 {
            return Err(AttackError::TooSmall);
        }
        self.ring_at[slot] = tail;
        let base = s.engine.mmio_base();
        p.mmio_write32(base + ring::START, ring_gm as u32)
            .map_err(e)?;
        p.mmio_write32(base + ring::CTL, ring::CTL_ENABLE)
            .map_err(e)?;
        p.mmio_write32(base + ring::TAIL, tail).map_err(e)
    }

    fn write_gm<P: Platform>(
        &self,
        p: &mut P,
        gm: u64,
        words: &[u32],
    ) -> Result<(), AttackError<P::Error>> {
        for (k, w) in words.iter().enumerate() {
            let Some((index, offset)) = self.layout.index_of(gm + 4 * k as u64) else {
                return Err(AttackError::TooSmall);
            };
            p.ram_write(self.ram_first + index, offset, &w.to_le_bytes())
                .map_err(AttackError::Platform)?;
        }
        Ok(())
    }

    /// Submits `s` (an attack or a benign twin, [`stream`]) and waits for
    /// its end; true if the vGPU stopped.
    pub fn run_stream<P: Arena>(
        &mut self,
        p: &mut P,
        s: &Stream,
    ) -> Result<bool, AttackError<P::Error>> {
        self.submit(p, s)?;
        p.settle().map_err(AttackError::Platform)
    }

    /// Makes the stream or device attempt `class` (after [`Attacker::fresh`]).
    /// `None` for the CPU classes, which are not the platform's.
    pub fn attempt<P: Arena>(
        &mut self,
        p: &mut P,
        class: Class,
    ) -> Result<Option<Outcome>, AttackError<P::Error>> {
        let e = AttackError::Platform;
        let l = self.layout;
        let own_pte = |i: u64| {
            GuestPage::new(self.ram_first + i)
                .map(|page| GuestPte::map(page, PteFlags::NONE).raw())
                .map_err(|_| AttackError::TooSmall)
        };
        let done = |refused| Ok(Some(Outcome { class, refused }));
        if class.refusal() == Refusal::Contained {
            p.declare(class).map_err(e)?;
            return done(self.ppgtt_draw(p, class, false)?);
        }
        if class.refusal() == Refusal::Scanner {
            let Some(s) = stream(class, &l, false) else {
                return Err(AttackError::TooSmall);
            };
            p.declare(class).map_err(e)?;
            return done(self.run_stream(p, &s)?);
        }
        match class {
            Class::GgttReadOutside => {
                p.declare(class).map_err(e)?;
                let got = p.mmio_read64(self.ggtt_slot(l.victim)).map_err(e)?;
                return done(got == gpu::vgpu::REFUSED_READ);
            }
            Class::TightLoop | Class::ForeignRam => return Ok(None),
            _ => {}
        }
        let pte = own_pte(SCRATCH)?;
        let victim32 = l.victim as u32;
        p.declare(class).map_err(e)?;
        match class {
            Class::GgttWriteOutside => p.mmio_write64(self.ggtt_slot(l.victim), pte),
            Class::GgttForeignPage => {
                // Guest page 1 lies below every guest's RAM.
                let foreign = GuestPage::new(1).map_err(|_| AttackError::TooSmall)?;
                let raw = GuestPte::map(foreign, PteFlags::NONE).raw();
                p.mmio_write64(self.ggtt_slot(l.gm(SCRATCH)), raw)
            }
            Class::RegisterNotGranted => p.mmio_write32(Engine::Render.mmio_base() + ring::ELSP, 0),
            Class::PvinfoWrite => {
                let grown = (l.aperture_size as u32).wrapping_mul(2);
                p.mmio_write32(pvinfo::PAGE + pvinfo::APERTURE_SIZE, grown)
            }
            Class::FenceNotOwned => {
                // The first fence past its own (the last there is if it
                // owns them all).
                let index = l.fences.min(fence::COUNT - 1);
                p.mmio_write32(fence::BASE + 8 * index, victim32 | fence::VALID)
            }
            Class::FenceOutside => p
                .mmio_write32(fence::hi(0).raw(), victim32)
                .and_then(|()| p.mmio_write32(fence::lo(0).raw(), victim32 | fence::VALID)),
            Class::RingOutside => {
                let base = Engine::Render.mmio_base();
                p.mmio_write32(base + ring::START, victim32)
                    .and_then(|()| p.mmio_write32(base + ring::CTL, ring::CTL_ENABLE))
                    .and_then(|()| p.mmio_write32(base + ring::TAIL, 8))
            }
            Class::MmioGap => p.mmio_write32(0x40_0000, 0),
            Class::MmioPastBar => {
                p.mmio_write64_unchecked(GGTT_BAR0_OFFSET + gpu::regs::GGTT_WINDOW_SIZE - 4, pte)
            }
            _ => return Err(AttackError::TooSmall),
        }
        .map_err(e)?;
        done(p.settle().map_err(e)?)
    }

    /// RAM pages it was given.
    pub fn ram_pages(&self) -> u64 {
        self.ram_pages
    }
}
