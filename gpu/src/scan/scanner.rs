//! Copy-then-scan of one submission: shadow ring, shadow batch pool, audit,
//! remap, batch following, budget and write-target recording.
//!
//! The guest's ring and batches are copied into monitor-owned fixed buffers
//! (a [`Shadow`]) before a single DWord is decoded; audit and remap operate
//! on the copy, and only the copy is submitted, so a guest that rewrites its
//! memory after TAIL changes nothing (TOCTOU). Batch buffers are copied
//! command by command: each command's DWords are copied, then decoded from
//! the copy.
//!
//! The scanner reaches guest memory and translates guest GM to host GM only
//! through [`GmSpace`], which the vGPU implements with its one translation
//! function.
//!
//! Decisions:
//! - Cycles are per chain: a chained MI_BATCH_BUFFER_START back to a segment
//!   of the same chain is rejected. A second-level batch called again is
//!   not a cycle: its shadow is reused when its scan neither set nor read
//!   tracked state (its audit then does not depend on the state it is
//!   entered with, and the state after it is the state before it; its
//!   draws need only a settled depth packet, which each reuse checks),
//!   else it is scanned again into a new shadow. The pool, the depth limit
//!   and the command/DWord budget bound the work either way.
//! - Tracked state: the context state later commands are audited against
//!   (STATE_BASE_ADDRESS bases and sizes, the last blitter setup, and the
//!   state commands later commands consume: the depth packet, the video
//!   pipes' state, SFC_STATE) is one per-submission value
//!   ([`TrackedState`], in [`super::tracked`]), unknown at the start of
//!   every submission, and met as a whole by its one `join` wherever paths
//!   meet (below). STATE_BASE_ADDRESS: each base/size pair is audited
//!   whenever either half changes; a half set by an earlier submission is
//!   unseen state and rejected. Size 0 allows no access, but a modified
//!   base must still translate so it can be remapped.
//! - Control flow and predication. Rule: for every command that decides
//!   which commands run, each path the engine may take is audited with
//!   the tracked state as it stands on that path, or the command is
//!   refused ([`Reason::ControlFlow`]).
//!   - MI_BATCH_BUFFER_END continues after the batch's start (the ring,
//!     or the first-level batch after a second-level call), where the scan
//!     goes on with the state at the end. In the ring it is refused.
//!   - MI_CONDITIONAL_BATCH_BUFFER_END may end the batch, whatever its
//!     compare fields say. On Gen9 the end takes every level with it and
//!     the engine continues in the ring after the first-level start (PRM
//!     vol 2a, as Intel's media driver transcribes it); the reading in
//!     which it ends only a second-level batch is allowed for as well.
//!     The state after a batch start is the join (field-wise meet) of the
//!     state at the batch's end and at every exit that may continue there:
//!     what differs between them becomes unknown, and a command that
//!     depends on it is refused as [`Reason::UnseenState`]. A reused
//!     second-level shadow that may exit early adds its entry state to the
//!     exits at every call. With Compare Mask Mode it reads a QWord. In
//!     the ring it is refused.
//!   - MI_BATCH_BUFFER_START with Predication Enable is refused (skipped,
//!     it falls through; no Gen9 driver sets the bit), as are a chain from
//!     a second-level batch (the PRM has chaining replace the first-level
//!     address, so its return is not defined), a second-level start from
//!     the ring, add-offset and resource-streamer forms.
//!   - MI_SET_PREDICATE is accepted only as NOOP Never: other values skip
//!     later state commands and LRIs by a result the scanner does not know,
//!     and stay set past the batch (MI_MODE is context state).
//!   - MI_PREDICATE (and the MI_PREDICATE_RESULT registers LRI/LRM may
//!     load) decides only whether commands with a Predicate Enable bit run:
//!     3DPRIMITIVE, GPGPU_WALKER and MI_STORE_REGISTER_MEM (genxml; a test
//!     checks the list); MI_TOPOLOGY_FILTER only whether 3DPRIMITIVEs run.
//!     None of them changes tracked state ([`sets_tracked_state`]), so
//!     auditing them covers the path that skips them too; a skipped write
//!     leaves a listed write page unwritten, which a write set allows.
//!   - Registers that steer the command streamer (ring and batch address
//!     and state registers, MI_MODE, MI_PREDICATE_RESULT_2, context
//!     control, execlist ports) stay off the register whitelist
//!     ([`super::regs`]; a test keeps them off).
//!   - MI_ARB_CHECK and the other preemption points change when the
//!     engine runs the rest, not what: a context resumes the same shadow
//!     words, so those must not change under a submission that may still
//!     run: the vGPU hands the gate (which rewrites the shadow) a
//!     submission only while its engine is not busy.
//! - Batches are copied into the shadow in chunks as decoding needs them;
//!   only the copy is decoded, audited and run. A shadow batch ends at its
//!   scanned length: MI_BATCH_BUFFER_END right after the scanned words
//!   (room for it is reserved: [`BATCH_SCAN_DWORDS`]) and zeros after it,
//!   and the monitor writes that whole image ([`ShadowBatch::image`]) to
//!   GM, so no path can run into unscanned guest words or into the stale
//!   words of an earlier, longer batch the slot's GM still holds. The ring
//!   ends at TAIL.
//! - Write targets: every audited operand the hardware may write (post-sync
//!   and store addresses, blit destinations, stream-out and other written
//!   buffers) is recorded as guest pages in the submission's [`WriteSet`].
//!   What a command writes through memory-resident state (render targets
//!   and UAVs of a draw or dispatch, the pictures of a video or VEBOX
//!   object, set up by state that may come from an earlier submission) is
//!   not in its operands; such a command marks the set untracked (see
//!   [`super::table::STATE_WRITERS`]), and so does an extent that runs to
//!   the end of its slice or more pages than the set holds. Migration then
//!   treats all of the vGPU's memory as possibly written by it.
//! - Operand extents of GFXPIPE and video commands: see [`super::operands`].
//! - State that later commands consume (the depth packet, the video pipes'
//!   state, SFC_STATE) is kept in the tracked state as the guest set it,
//!   and a command that consumes it is accepted only when it was set in
//!   the same submission, alike on every path: see [`super::tracked`]. A
//!   submission may not end with the depth packet half set (on any path:
//!   a join keeps it half set if one side left it so). A second-level
//!   batch that sets or consumes such state is scanned per call, and one
//!   of draws is reused only while the depth packet is settled.
//! - Hot path: a fast loop (`State::fast_run`) walks the copied commands
//!   through a flat per-engine table of packed entries
//!   ([`super::table`]'s fast entries: length rule, row, plain/audit
//!   class, and for the hottest audited classes a "fast kind" code).
//!   Plain commands cost a header load, a table load and a bounds check;
//!   a command whose entry has a fast kind (PIPE_CONTROL,
//!   MI_STORE_DATA_IMM, MI_FLUSH_DW, the XY_COLOR/SRC_COPY/FAST_COPY
//!   blits, the index/vertex buffer, constant, depth packet and MFX
//!   base-address layouts, the state writers with nothing to audit) is
//!   audited by the straight-code arm of its kind without loading its row
//!   (the row is read only to name a rejection); other commands with
//!   operands, and tracked state commands without any, are audited or
//!   kept in place by the same code as the full path.
//!   The straight-code forms of PIPE_CONTROL, MI_STORE_DATA_IMM,
//!   MI_FLUSH_DW and the blits (whose surface extents come from the full
//!   parse's own `xy_blit_bytes`) fall back, unchanged, when an operand
//!   is outside the slices already translated in this scan or an extent
//!   is rejected; the hot layouts run the generic field audit inlined
//!   against their static descriptions. A second-level call to a reused
//!   shadow is rewritten in place. Everything else (batch ends and chains,
//!   first calls, rejected classes, commands crossing the copied part,
//!   the budget's edge) goes to the full decode path, which counts,
//!   reports and follows exactly as before.
//! - Blitter surfaces (PRM vol 2a BCS commands, Gen8+ 64-bit layouts, exact
//!   lengths): a surface spans its rows above the last one touched in full
//!   and the last one up to the rectangle's right edge times the bytes per
//!   pixel (or the pitch, if further); tiled surfaces count whole rows of
//!   tiles of their tiling's geometry ([`super::repr::Tiling`]: X, Y, and
//!   for XY_FAST_COPY_BLT Yf and Ys by its colour depth; the legacy XY_
//!   blits' "tiled" bit the worse of X and Y, as BCS_SWCTRL may pick
//!   either) and must not be wider than their pitch; negative pitches are
//!   rejected. XY_SETUP_BLT and XY_SETUP_MONO_PATTERN_SL_BLT set a
//!   per-submission destination; XY_PIXEL_BLT, XY_SCANLINES_BLT and
//!   XY_TEXT_IMMEDIATE_BLT are audited against it, and rejected (unseen
//!   state) when no setup precedes them in the submission. A pattern
//!   address (XY_SETUP_BLT, XY_PAT_BLT: 8x8 pixels) is audited only when
//!   the raster operation reads the pattern; else it is left alone.
//! - The other XY blits are audited by shape ([`super::repr::BlitShape`],
//!   one static per command, built from i915 GVT-g's operand DWords with
//!   every Gen8+ address widened to two DWords): the destination as
//!   XY_COLOR_BLT's (or, for XY_TEXT_BLT, the setup's, as
//!   XY_TEXT_IMMEDIATE_BLT's) and written; a colour source as
//!   XY_SRC_COPY_BLT's; a packed 1-bpp source (XY_MONO_SRC_COPY_BLT,
//!   XY_FULL_MONO_SRC_BLT, XY_FULL_MONO_PATTERN_MONO_SRC_BLT,
//!   XY_FULL_MONO_SRC_IMMEDIATE_PATTERN_BLT) as one row per destination
//!   row of `ceil((width + 7) / 8)` bytes rounded to a 16-bit word, the
//!   total to a quadword; XY_TEXT_BLT's text data as byte-packed rows of
//!   `ceil(width / 8)` bytes, the total to a quadword; a colour pattern
//!   in memory (XY_FULL_BLT, XY_FULL_MONO_SRC_BLT, XY_PAT_CHROMA_BLT) as
//!   8x8 pixels, whatever the raster operation. Fixed-format commands
//!   have exact lengths; inline 8x8 colour patterns must be exactly their
//!   depth's size. Inline data (immediate sources, mono patterns, colours,
//!   chroma keys) is left alone. Each operand is audited (at least one
//!   byte) before any is rewritten; the destination's extent is recorded
//!   as written.
//! - HCP_PAK_INSERT_OBJECT with Indirect Payload Enable: its payload is a
//!   whole number of 4-DWord descriptors (genxml
//!   HCP_PAK_INSERT_OBJECT_INDIRECT_PAYLOAD: size in bits, 64-bit base,
//!   attributes); each base is audited over `ceil(bits / 8)` bytes as a
//!   read and remapped (a zero size is not read and is left alone); a
//!   compressed or tiled-resource payload is refused as not linear.
//! - Still rejected, fail closed, with [`Reason::Unsupported`]:
//!   COLOR_BLT and SRC_COPY_BLT (pre-Gen8 32-bit-address forms: i915
//!   GVT-g's Gen8+ blitter table lists only the XY_ forms and i915's Gen9
//!   blitter parser does not list them either, while its Gen7 table
//!   does; a guest driver uses XY_COLOR_BLT / XY_SRC_COPY_BLT), and the
//!   VEBOX commands (VEBOX_STATE, VEBOX_SURFACE_STATE, VEB_DI_IECP; Gen9
//!   has no VEBOX_TILING_CONVERT): their frame, STMM, statistics and
//!   state-table extents follow from VEBOX_SURFACE_STATE and VEBOX_STATE
//!   layouts that neither genxml nor i915 describe and whose PRM tables
//!   the scanner does not model yet; VEB_DI_IECP also depends on surface
//!   state that may come from an earlier submission; HCP_TILE_CODING (not
//!   a Gen9 command; genxml's length rule for it disagrees with every
//!   other GFXPIPE command's) and MFX_VP8_ENCODER_CFG (its frame-header
//!   update pointers are offsets nothing bounds).
//! - Register accesses (MI_LOAD_REGISTER_IMM/MEM/REG,
//!   MI_STORE_REGISTER_MEM) follow the one register table of
//!   [`super::regs`], with its value rules; a codec status register is
//!   read only after this submission's own work on the engine
//!   (`State::own_work`).
//!
//! # PPGTT batches
//!
//! In a PPGTT context (an execlist element's: [`GmSpace::ppgtt`] is its
//! shadow PPGTT), the ring may start a batch with MI_BATCH_BUFFER_START's
//! Address Space Indicator (bit 8), as i915 starts every user batch, and
//! such a batch may chain and call (second level) further PPGTT batches.
//! A PPGTT batch is *non-privileged*: the engine runs it with the
//! hardware's restrictions, in the context's address space. The scanner:
//! - reads it through the context's shadow PPGTT ([`PpgttSpace`], the
//!   walk of the tables the engine itself walks, which name only the
//!   vGPU's frames, its scratch page and its window): what the engine
//!   would read. A page the shadow does not map is refused
//!   ([`Reason::PpgttMemory`]), and so is a start into the reserved
//!   window ([`NonPrivileged::WindowBatch`]);
//! - copies it, command by command as a GGTT batch, into a shadow batch
//!   (TOCTOU), which the engine runs instead: the monitor writes it into
//!   the vGPU's own shadow batch frames, which its shadow PPGTT maps
//!   read-only at the reserved window ([`crate::ppgtt::WINDOW_BASE`], the
//!   top GiB of the 48-bit space, which Mesa leaves unused; the window
//!   overrides whatever the guest's tables map there, see
//!   [`crate::ppgtt::shadow`]), and the start
//!   is rewritten to the slot's window address
//!   ([`crate::ppgtt::window_batch_va`]) with bit 8 kept. Read-only, so
//!   no engine of the vGPU rewrites a batch another runs; the vGPU's own,
//!   so no other vGPU reads it;
//! - refuses, fail early, what the hardware would stop in a non-privileged
//!   batch and what it would not stop but the monitor must: the table's
//!   privileged rows ([`Reason::Privileged`], as in any batch), any memory
//!   access with its Use Global GTT bit set (MI stores, flushes,
//!   PIPE_CONTROL post-syncs, register loads and stores, atomics,
//!   semaphores, conditional batch ends: [`NonPrivileged::GgttAccess`]), a
//!   GGTT batch start ([`NonPrivileged::GgttBatch`]), and a register
//!   access (LRI, LRM, LRR, SRM) outside either the scanner's register
//!   list or the hardware's non-privileged set
//!   ([`super::regs::NONPRIVILEGED_REGISTERS`];
//!   [`super::regs::RegRefusal::NotNonPrivileged`]). The Gen9 blitter
//!   checks no register in a non-privileged batch (i915's command parser
//!   exists on Gen9 for exactly that): there the two lists are the only
//!   check;
//! - audits no address and remaps none: every address a PPGTT batch names
//!   (its operands, and what its draws read from memory-resident state)
//!   is an address of the context's PPGTT, and the shadow PPGTT maps only
//!   the vGPU's frames there, so the address space contains it whatever
//!   its value; an unmapped one faults the context alone. Everything
//!   else holds as in a GGTT batch: the control-flow and predication
//!   rules, the budgets, the depth limit and chain cycles, the shadow
//!   slot's termination, the tracked-state rules (a PPGTT batch starts
//!   from unknown state, and the ring after it goes on from unknown
//!   state: neither side's state means anything in the other's space);
//! - records what it writes (every operand the GGTT path records as a
//!   write) as the frames its shadow PPGTT maps writable there
//!   ([`WriteSet::frame_runs`], guest RAM by
//!   [`crate::vgpu::GuestMemoryMap::page_of`]); a page mapped read-only or
//!   not at all faults before it is written, and an extent of more pages
//!   than the set holds leaves it untracked, as do draws and dispatches.
//!
//! The same address rule holds in the whole of a PPGTT context, ring and
//! GGTT batches included (the engine resolves blits, 3D and media state,
//! and MI operands without a Use Global GTT bit through the context's
//! PPGTT wherever the command is): those addresses are recorded through
//! the shadow, never audited as GM nor remapped; an operand with its GGTT
//! bit set there (and a GGTT batch start) is audited and remapped as in a
//! GGTT context.
//!
//! The GGTT path's hot loop is unchanged: a PPGTT context caches no
//! translated slice, so every fast arm finds none and hands its operands
//! to the full path, where `State::audit_slow` records them (and
//! `State::audit_ggtt` audits those with a GGTT bit).

use core::fmt;

use super::decode::{head, Command, DecodeErrorKind};
use super::operands::{Access, AddrField, Extent, High, Layout, Pictures, PipeSize, Surface, When};
use super::regs::{check_read, check_write, nonprivileged_register, RegAccess, RegRefusal};
use super::repr::{
    pak_insert_descriptors, pak_payload_bytes, pak_payload_linear, setup_draw_bytes, xy_blit_bytes,
    CommandRepr, MemOperand, PostSync, ReprError, StateBaseAddress, PAK_DESCRIPTOR, PAK_PAYLOAD,
};
use super::surface::{self as geom, Picture};
use super::table::{
    fast_entry, fast_kind_code, fast_len, fast_spec, CmdSpec, Op, FAST_AUDIT, FAST_GUESS,
};
use super::tracked::{BltSetup, Consumer, Pipe, Tracked, TrackedState};
use crate::addr::{GuestGm, GuestGmRange, HostGm, PhysFrame};
use crate::engine::Engine;
use crate::ppgtt::{in_window, window_batch_va, PpgttAddr, PPGTT_SIZE};

/// Shadow ring capacity in DWords (64 KiB).
pub const RING_DWORDS: usize = 16 * 1024;
/// Shadow batch buffers per engine.
pub const BATCH_POOL: usize = 8;
/// Capacity of one shadow batch in DWords (32 KiB).
pub const BATCH_DWORDS: usize = 8 * 1024;
/// DWords of one guest batch (or chained segment) a shadow batch holds:
/// its capacity less the MI_BATCH_BUFFER_END the scanner puts right after
/// the scanned words ([`ShadowBatch::image`]).
pub const BATCH_SCAN_DWORDS: usize = BATCH_DWORDS - 1;
/// Batch nesting limit: 1 = first level, 2 = second level.
pub const MAX_DEPTH: u8 = 2;
/// Runs of guest pages recorded as write targets per submission.
pub const MAX_WRITE_RANGES: usize = 32;
/// Runs of frames of guest RAM recorded as the write targets of PPGTT
/// batches per submission (guest buffers are mostly contiguous runs of
/// frames, as the kernel gives a guest its memory).
pub const MAX_FRAME_RANGES: usize = 16;
/// Guest pages those runs may cover in all (16 MiB: a 1080p framebuffer
/// and more); a submission that writes more is untracked.
pub const MAX_WRITE_PAGES: u64 = 4096;
/// Per-submission budget: commands decoded.
pub const MAX_COMMANDS: u32 = 64 * 1024;
/// Per-submission budget: DWords decoded (ring + batches).
pub const MAX_DWORDS: u32 = (RING_DWORDS + BATCH_POOL * BATCH_DWORDS) as u32;

const PAGE: u64 = 4096;

/// Why a guest memory access or translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmFault {
    /// Some byte of the range lies outside the vGPU's slices (or outside
    /// the 4 GiB graphics space altogether).
    OutOfSlices,
    /// The range is inside the slices but not backed (no valid PTE).
    Unmapped,
}

impl fmt::Display for GmFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GmFault::OutOfSlices => "outside the vGPU's slices",
            GmFault::Unmapped => "not mapped",
        })
    }
}

/// The vGPU's view of graphics memory, as the scanner needs it. The vGPU
/// implements this with its ONE guest->host translation
/// ([`crate::partition::GmTranslation`]): `g2h` is `GmTranslation::g2h`,
/// `slice_of` reads its guest view.
pub trait GmSpace {
    /// Copies `out.len()` DWords from guest GM `at` (the guest's view).
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault>;
    /// Translates `range`, which must lie wholly inside one of the vGPU's
    /// slices, to the host GM address of its first byte. The engine then
    /// touches the host bytes from that address on, so the translation must
    /// be linear over any range it accepts; the scanner relies on this to
    /// translate a whole slice once per scan and every operand inside it by
    /// offset.
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault>;
    /// The guest slice (aperture or hidden) holding `at`: bounds operands
    /// whose extent the command does not state.
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault>;
    /// The context's PPGTT, when the submission runs in one (an execlist
    /// context); `None`: a GGTT context, whose PPGTT batches are refused.
    fn ppgtt(&self) -> Option<&dyn PpgttSpace> {
        None
    }
}

/// Why a PPGTT page could not be reached, as the engine would find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpgttFault {
    /// Not mapped (a not-present entry on the walk, or beyond 48 bits):
    /// the engine would fault the context.
    NotPresent,
    /// Mapped read-only, for a write.
    ReadOnly,
    /// Inside the monitor's reserved window ([`crate::ppgtt::WINDOW_BASE`]).
    Window,
    /// The shadow tables or the page could not be read (a monitor fault).
    Unreadable,
}

impl fmt::Display for PpgttFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PpgttFault::NotPresent => "not mapped in the context's PPGTT",
            PpgttFault::ReadOnly => "mapped read-only",
            PpgttFault::Window => "inside the monitor's reserved window of the PPGTT",
            PpgttFault::Unreadable => "shadow PPGTT unreadable (monitor fault)",
        })
    }
}

/// A context's PPGTT as its engine walks it: the shadow tables, which
/// name only the vGPU's frames (and its scratch page and window). The one
/// translation of PPGTT addresses the scanner uses: the words of a PPGTT
/// batch are read through it, and the pages a PPGTT batch writes are
/// named by the frames it gives.
pub trait PpgttSpace {
    /// The frame the page holding `va` is mapped to, for a read or a
    /// write (`write`).
    fn frame_of(&self, va: PpgttAddr, write: bool) -> Result<PhysFrame, PpgttFault>;
    /// Copies `out.len()` DWords from `frame` at byte `offset` (the words
    /// lie in that frame).
    fn read_frame(&self, frame: PhysFrame, offset: u64, out: &mut [u32]) -> Result<(), PpgttFault>;
}

/// Copies `out.len()` DWords from PPGTT address `at` through `space`,
/// page by page; the reserved window is refused (the guest's batches are
/// never there). On failure, the address that failed.
fn read_ppgtt(space: &dyn PpgttSpace, at: u64, out: &mut [u32]) -> Result<(), (u64, PpgttFault)> {
    let mut done = 0usize;
    while done < out.len() {
        let va = at.saturating_add(done as u64 * 4);
        if in_window(va, 4) {
            return Err((va, PpgttFault::Window));
        }
        let addr = PpgttAddr::new(va).ok_or((va, PpgttFault::NotPresent))?;
        let offset = va % PAGE;
        let n = (((PAGE - offset) / 4) as usize).min(out.len() - done);
        let frame = space.frame_of(addr, false).map_err(|f| (va, f))?;
        let chunk = out.get_mut(done..done + n).unwrap_or(&mut []);
        space
            .read_frame(frame, offset, chunk)
            .map_err(|f| (va, f))?;
        done += n;
    }
    Ok(())
}

/// Where a batch is: in graphics memory (a GGTT batch, privileged, its
/// addresses audited) or in the context's PPGTT (a PPGTT batch,
/// non-privileged: MI_BATCH_BUFFER_START's Address Space Indicator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchAddr {
    /// Guest GM.
    Ggtt(GuestGm),
    /// An address of the context's PPGTT.
    Ppgtt(PpgttAddr),
}

impl BatchAddr {
    /// The raw address.
    pub const fn raw(self) -> u64 {
        match self {
            BatchAddr::Ggtt(g) => g.raw(),
            BatchAddr::Ppgtt(p) => p.raw(),
        }
    }
    /// Whether it is a PPGTT batch.
    pub const fn is_ppgtt(self) -> bool {
        matches!(self, BatchAddr::Ppgtt(_))
    }
}

impl fmt::Display for BatchAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchAddr::Ggtt(g) => write!(f, "{g}"),
            BatchAddr::Ppgtt(p) => write!(f, "{p}"),
        }
    }
}

/// Where the guest's ring is, as its ring registers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Guest GM of the ring (RING_START).
    pub start: GuestGm,
    /// Ring size in bytes (from RING_CTL).
    pub size: u32,
    /// RING_HEAD offset in bytes.
    pub head: u32,
    /// RING_TAIL offset in bytes (the value just written).
    pub tail: u32,
}

/// Which buffer a rejected command was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The shadow ring; offset counts from HEAD.
    Ring,
    /// A batch at `level` (1 or 2) starting at `start`.
    Batch {
        /// Nesting level.
        level: u8,
        /// Where the batch (or chained segment) starts.
        start: BatchAddr,
    },
}

/// Why a submission was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The command could not be decoded.
    Decode(DecodeErrorKind),
    /// Its operands are malformed.
    Repr(ReprError),
    /// A privileged command or form.
    Privileged(&'static str),
    /// A command whose operands the scanner does not audit (fail closed).
    Unaudited,
    /// A command the scanner refuses, and why: not a Gen9 form, or an
    /// operand whose extent cannot be bounded from the submission (see the
    /// table's [`Op::Unsupported`] rows).
    Unsupported(&'static str),
    /// A shader dispatch while the shadow denies them
    /// ([`Shadow::deny_shaders`]).
    ShadersDenied,
    /// A per-process GTT address in a GGTT context, or a PPGTT batch
    /// started from a GGTT batch.
    Ppgtt,
    /// In a PPGTT (non-privileged) batch, what the hardware would stop or
    /// the monitor refuses there (see [`NonPrivileged`]).
    NonPrivileged(NonPrivileged),
    /// A PPGTT batch's words could not be read as the engine would read
    /// them.
    PpgttMemory {
        /// The PPGTT address.
        addr: u64,
        /// Why.
        fault: PpgttFault,
    },
    /// A memory operand outside the vGPU's slices or unmapped. `addr` is
    /// the raw guest value (it may not even be a GM address).
    Memory {
        /// Guest address.
        addr: u64,
        /// Bytes touched.
        size: u64,
        /// The failure.
        fault: GmFault,
    },
    /// An upper-bound address below its base.
    BadBound {
        /// Guest base.
        base: u64,
        /// Guest upper bound.
        bound: u64,
    },
    /// An operand whose meaning depends on state the scanner has not seen
    /// in this submission, or not alike on every path that reaches it
    /// (e.g. a STATE_BASE_ADDRESS base whose size was set earlier, a
    /// vertex buffer without Address Modify Enable, a video object without
    /// its pipe's state: [`super::tracked::CONSUMERS`]).
    UnseenState(&'static str),
    /// A memory operand that no state bounds (an indirect object without
    /// an upper bound, a buffer whose size no state gives): the engine
    /// might reach past the vGPU's slices.
    Unbounded(&'static str),
    /// A register access the engine's register list ([`super::regs`])
    /// does not allow.
    Register {
        /// Register offset.
        offset: u32,
        /// The access.
        access: RegAccess,
        /// Why it is refused.
        refusal: RegRefusal,
    },
    /// RING_HEAD/TAIL/size inconsistent, or the ring outside the slices.
    BadRing,
    /// The submission holds more DWords than the shadow ring.
    RingTooLarge,
    /// A batch longer than one shadow batch buffer.
    BatchTooLarge,
    /// All shadow batch buffers in use.
    PoolExhausted,
    /// Batch nesting beyond [`MAX_DEPTH`].
    DepthExceeded,
    /// A batch chains to itself or to a segment of the same chain.
    BatchCycle,
    /// More commands or DWords than the per-submission budget.
    BudgetExceeded,
    /// A control-flow or predication form whose paths the scanner does
    /// not follow (see [`ControlFlow`]).
    ControlFlow(ControlFlow),
}

/// What a PPGTT batch may not do beyond what any batch may not (the
/// privileged rows of the table, registers: [`Reason::Privileged`],
/// [`Reason::Register`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonPrivileged {
    /// A memory access with its Use Global GTT bit set: the hardware
    /// stops a non-privileged batch that makes one.
    GgttAccess,
    /// A batch start without the Address Space Indicator (a GGTT batch)
    /// from a PPGTT batch: the hardware stops it.
    GgttBatch,
    /// A PPGTT batch start into the monitor's reserved window.
    WindowBatch,
}

impl NonPrivileged {
    /// The reason, for logs and rejections.
    pub const fn why(self) -> &'static str {
        match self {
            NonPrivileged::GgttAccess => "a GGTT access from a non-privileged (PPGTT) batch",
            NonPrivileged::GgttBatch => "a GGTT batch started from a non-privileged (PPGTT) batch",
            NonPrivileged::WindowBatch => "a PPGTT batch start into the monitor's reserved window",
        }
    }
}

/// The control-flow and predication forms the scanner refuses, because
/// the engine may take a path through them that the scanner cannot audit
/// (the rule: every path audited, with the state on it, or refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlFlow {
    /// MI_BATCH_BUFFER_START with Predication Enable (DWord 0 bit 15): when
    /// the predicate skips it the engine falls through past it, into words
    /// the scanner did not scan. No Gen9 driver sets it (Mesa predicates
    /// a batch start only in its Gfx12.5+ `mi_goto`; the media driver's
    /// Gen9 command layout has no such bit).
    PredicatedBatchStart,
    /// MI_SET_PREDICATE other than NOOP Never: it makes the engine skip
    /// later commands (state and LRI among them) by a result the scanner
    /// does not know, and its enable outlives the batch into the ring and
    /// the next submission (MI_MODE is context state). Gen9 drivers emit
    /// it only in the media driver's null-hardware debug mode.
    SetPredicate,
    /// MI_BATCH_BUFFER_END in the ring: it ends no batch, and where the
    /// engine goes next is not defined (i915 GVT-g returns to the last
    /// ring address a batch start left); no driver puts one there.
    BatchEndInRing,
    /// MI_CONDITIONAL_BATCH_BUFFER_END in the ring: as above, with a
    /// condition.
    CondBatchEndInRing,
    /// A chaining MI_BATCH_BUFFER_START inside a second-level batch: the
    /// PRM has chaining update the first-level batch address, so where the
    /// chained batch returns to is not the second-level return; i915
    /// GVT-g refuses any batch start in a second-level batch.
    ChainInSecondLevel,
}

impl ControlFlow {
    /// The reason, for logs and rejections.
    pub const fn why(self) -> &'static str {
        match self {
            ControlFlow::PredicatedBatchStart => {
                "predicated MI_BATCH_BUFFER_START (the engine may fall through past it)"
            }
            ControlFlow::SetPredicate => {
                "MI_SET_PREDICATE other than NOOP Never (later commands may be skipped)"
            }
            ControlFlow::BatchEndInRing => "MI_BATCH_BUFFER_END in the ring",
            ControlFlow::CondBatchEndInRing => "MI_CONDITIONAL_BATCH_BUFFER_END in the ring",
            ControlFlow::ChainInSecondLevel => {
                "chained MI_BATCH_BUFFER_START in a second-level batch (return path undefined)"
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Decode(k) => write!(f, "{k}"),
            Reason::Repr(r) => write!(f, "{r}"),
            Reason::Privileged(what) => write!(f, "privileged: {what}"),
            Reason::Unaudited => f.write_str("graphics-memory operands not audited"),
            Reason::Unsupported(why) => write!(f, "not accepted: {why}"),
            Reason::ShadersDenied => f.write_str(
                "shader dispatch refused (shaders=deny: the surfaces it reaches are not audited)",
            ),
            Reason::Ppgtt => {
                f.write_str("per-process GTT address in a GGTT context, or PPGTT batch started from a GGTT batch")
            }
            Reason::NonPrivileged(n) => write!(f, "non-privileged batch: {}", n.why()),
            Reason::PpgttMemory { addr, fault } => {
                write!(f, "PPGTT batch word at {addr:#x} {fault}")
            }
            Reason::Memory { addr, size, fault } => {
                write!(f, "memory {addr:#x}+{size:#x} {fault}")
            }
            Reason::BadBound { base, bound } => {
                write!(f, "upper bound {bound:#x} below base {base:#x}")
            }
            Reason::UnseenState(what) => write!(f, "depends on unseen state: {what}"),
            Reason::Unbounded(what) => write!(f, "no state bounds the extent of {what}"),
            Reason::Register {
                offset,
                access,
                refusal,
            } => {
                write!(f, "register {offset:#x} {access}: {refusal}")
            }
            Reason::BadRing => f.write_str("inconsistent ring registers"),
            Reason::RingTooLarge => f.write_str("submission larger than the shadow ring"),
            Reason::BatchTooLarge => f.write_str("batch larger than a shadow batch"),
            Reason::PoolExhausted => f.write_str("shadow batch pool exhausted"),
            Reason::DepthExceeded => f.write_str("batch nesting too deep"),
            Reason::BatchCycle => f.write_str("batch chains to itself or a visited segment"),
            Reason::BudgetExceeded => f.write_str("scan budget exceeded"),
            Reason::ControlFlow(c) => write!(f, "control flow not followed: {}", c.why()),
        }
    }
}

/// A rejected submission: engine, where, which command, why. The caller
/// drops the submission and puts the vGPU into its failure state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanError {
    /// Engine of the submission.
    pub engine: Engine,
    /// Buffer holding the command.
    pub location: Location,
    /// DWord offset of the command in that buffer.
    pub offset: usize,
    /// Its header DWord (0 when none was read).
    pub header: u32,
    /// Its name, when it decoded.
    pub name: Option<&'static str>,
    /// The reason.
    pub reason: Reason,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.engine)?;
        match self.location {
            Location::Ring => f.write_str("ring")?,
            Location::Batch { level, start } => write!(f, "batch L{level} @{start}")?,
        }
        write!(f, " DWord {} header {:#010x}", self.offset, self.header)?;
        if let Some(n) = self.name {
            write!(f, " ({n})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Guest pages a submission may write, as up to [`MAX_WRITE_RANGES`]
/// runs of guest GM pages (what its ring and GGTT batches write) and up
/// to [`MAX_FRAME_RANGES`] runs of frames (what its PPGTT batches write,
/// named by the frames the context's shadow PPGTT maps: guest RAM, which
/// a consumer turns into guest pages with
/// [`crate::vgpu::GuestMemoryMap::page_of`], [`WriteSet::ram_pages`]; a
/// frame that is no guest page, the vGPU's scratch page, holds nothing a
/// migration carries), of at most [`MAX_WRITE_PAGES`] pages in all: a
/// blit into a framebuffer is one run, however many pages it covers. It
/// never misses a written page; it may list a few unwritten ones
/// ([`RUN_JOIN_GAP`]). `untracked` means the submission may also write
/// pages the set does not list, so a consumer must treat the vGPU's whole
/// memory as possibly written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSet {
    runs: [PageRun; MAX_WRITE_RANGES],
    len: usize,
    pages: u64,
    frames: [PageRun; MAX_FRAME_RANGES],
    frames_len: usize,
    /// It may write pages not listed: more runs or pages than the set
    /// holds, a surface whose extent runs to the end of its slice, or a
    /// command that writes through memory-resident state the scanner does
    /// not parse ([`crate::scan::CmdSpec::writes_through_state`]: draws,
    /// dispatches, video and VEBOX objects).
    pub untracked: bool,
}

/// Runs less than this many pages apart are joined, gap included: the set
/// may then list up to this many unwritten pages between two written ones
/// (migration hashes them and finds them clean), and a submission that
/// writes many nearby surfaces (blits into tiles of one framebuffer) keeps
/// one run that the next write finds at once.
pub const RUN_JOIN_GAP: u64 = 16;

/// Pages `first..=last`: guest GM page numbers (guest GM / 4096), or
/// frame numbers ([`WriteSet::frame_runs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// First page.
    pub first: u64,
    /// Last page (inclusive).
    pub last: u64,
}

impl PageRun {
    const EMPTY: PageRun = PageRun { first: 1, last: 0 };
    /// Pages in the run.
    pub const fn pages(self) -> u64 {
        self.last + 1 - self.first
    }
    /// Overlaps `other` or lies within [`RUN_JOIN_GAP`] pages of it: the
    /// two are kept as one run.
    const fn joins(self, other: PageRun) -> bool {
        let reach = RUN_JOIN_GAP + 1;
        self.first <= other.last.saturating_add(reach)
            && other.first <= self.last.saturating_add(reach)
    }
}

impl WriteSet {
    const EMPTY: WriteSet = WriteSet {
        runs: [PageRun::EMPTY; MAX_WRITE_RANGES],
        len: 0,
        pages: 0,
        frames: [PageRun::EMPTY; MAX_FRAME_RANGES],
        frames_len: 0,
        untracked: false,
    };
    /// The runs of frames its PPGTT batches may write, disjoint and more
    /// than [`RUN_JOIN_GAP`] apart, in no particular order.
    pub fn frame_runs(&self) -> &[PageRun] {
        self.frames.get(..self.frames_len).unwrap_or(&[])
    }
    /// Every listed frame its PPGTT batches may write.
    pub fn frames(&self) -> impl Iterator<Item = PhysFrame> + '_ {
        self.frame_runs()
            .iter()
            .flat_map(|r| r.first..=r.last)
            .filter_map(|f| PhysFrame::new(f).ok())
    }
    /// The guest pages of [`Self::frames`] in `map`, the guest's memory
    /// (frames that are no guest page, its scratch page, left out).
    pub fn ram_pages<'a>(
        &'a self,
        map: &'a dyn crate::vgpu::GuestMemoryMap,
    ) -> impl Iterator<Item = crate::addr::GuestPage> + 'a {
        self.frames().filter_map(|f| map.page_of(f))
    }
    /// Whether the set lists frame `frame`.
    pub fn contains_frame(&self, frame: PhysFrame) -> bool {
        let f = frame.number();
        self.frame_runs()
            .iter()
            .any(|r| r.first <= f && f <= r.last)
    }
    /// Records frame `frame` (written by a PPGTT batch).
    fn add_frame(&mut self, frame: PhysFrame) {
        if self.untracked {
            return;
        }
        let f = frame.number();
        let run = PageRun { first: f, last: f };
        if self
            .frame_runs()
            .iter()
            .any(|r| r.first <= f && f <= r.last)
        {
            return;
        }
        if !join_run(&mut self.frames, &mut self.frames_len, &mut self.pages, run) {
            self.untracked = true;
        }
    }
    /// The runs, disjoint and more than [`RUN_JOIN_GAP`] pages apart, in no
    /// particular order.
    pub fn runs(&self) -> &[PageRun] {
        self.runs.get(..self.len).unwrap_or(&[])
    }
    /// Every listed guest page number (guest GM / 4096), run by run.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs().iter().flat_map(|r| r.first..=r.last)
    }
    /// Whether the set lists guest page `page`.
    pub fn contains(&self, page: u64) -> bool {
        self.runs()
            .iter()
            .any(|r| r.first <= page && page <= r.last)
    }
    fn add_range(&mut self, range: GuestGmRange) {
        self.add_raw(range.base().raw(), range.end_raw());
    }
    /// Records guest bytes `addr .. end` (`end > addr`).
    #[inline(always)]
    fn add_raw(&mut self, addr: u64, end: u64) {
        if self.untracked {
            return;
        }
        let run = PageRun {
            first: addr / PAGE,
            last: (end - 1) / PAGE,
        };
        // Inside a run already (a fence or counter written again, another
        // blit into the same framebuffer): nothing new. Few runs, usually.
        if self.holds(run) {
            return;
        }
        self.add_run(run);
    }

    /// Whether a run already holds all of `run` (then nothing changes).
    #[inline(always)]
    fn holds(&self, run: PageRun) -> bool {
        self.runs()
            .iter()
            .any(|r| r.first <= run.first && run.last <= r.last)
    }

    #[inline(never)]
    fn add_run(&mut self, run: PageRun) {
        if !join_run(&mut self.runs, &mut self.len, &mut self.pages, run) {
            self.untracked = true;
        }
    }
}

/// Adds `run` to the first `*len` of `runs`, whose pages count towards
/// `*pages` (of every list of a set): absorbs every run it joins (each
/// absorbed run is taken out, so the runs stay disjoint and apart), then
/// appends the union. False when there is no room (or too many pages).
fn join_run(runs: &mut [PageRun], len: &mut usize, pages: &mut u64, mut run: PageRun) -> bool {
    let mut i = 0;
    while i < *len {
        match runs.get(i).copied() {
            Some(r) if r.joins(run) => {
                run.first = run.first.min(r.first);
                run.last = run.last.max(r.last);
                *pages -= r.pages();
                *len -= 1;
                let last = runs.get(*len).copied().unwrap_or(PageRun::EMPTY);
                if let Some(slot) = runs.get_mut(i) {
                    *slot = last;
                }
            }
            _ => i += 1,
        }
    }
    let total = *pages + run.pages();
    match runs.get_mut(*len) {
        Some(slot) if total <= MAX_WRITE_PAGES => {
            *slot = run;
            *len += 1;
            *pages = total;
            true
        }
        _ => false,
    }
}

/// What an accepted submission produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// DWords of the shadow ring to execute (from index 0).
    pub ring_dwords: usize,
    /// Shadow batches used (indices `0..batches`).
    pub batches: usize,
    /// Commands scanned.
    pub commands: u32,
    /// DWords scanned (ring and batches).
    pub dwords: u32,
    /// Guest pages the submission may write.
    pub writes: WriteSet,
}

/// One shadow batch buffer.
///
/// After an accepted scan, `words[..len]` are the scanned, audited and
/// remapped commands (ending in MI_BATCH_BUFFER_END or a chaining
/// MI_BATCH_BUFFER_START), `words[len]` is an MI_BATCH_BUFFER_END the
/// scanner put there, and every word after it is zero: no guest word that
/// was copied but not scanned stays in the slot. [`ShadowBatch::image`]
/// is what the engine may run; the monitor writes all of it to GM, so a
/// path that ran past the scanned words (none is accepted) would end at
/// the terminator, not in the stale words of an earlier, longer batch
/// that the slot's GM still holds beyond it.
#[derive(Clone, Debug)]
pub struct ShadowBatch {
    /// Where the guest's batch was copied from (a PPGTT batch's shadow
    /// runs from the reserved window, a GGTT batch's from the monitor's
    /// GM).
    pub guest: BatchAddr,
    /// DWords scanned (at most [`BATCH_SCAN_DWORDS`]).
    pub len: usize,
    /// The copy (audited and remapped), then the terminator.
    pub words: [u32; BATCH_DWORDS],
}

impl ShadowBatch {
    /// An unused slot.
    pub const EMPTY: ShadowBatch = ShadowBatch {
        guest: BatchAddr::Ggtt(GUEST_ZERO),
        len: 0,
        words: [0; BATCH_DWORDS],
    };

    /// The words the engine may execute: the scanned commands and the
    /// terminating MI_BATCH_BUFFER_END after them.
    pub fn image(&self) -> &[u32] {
        self.words.get(..self.len + 1).unwrap_or(&self.words)
    }

    /// Ends the slot at its scanned length: MI_BATCH_BUFFER_END right
    /// after the scanned words (there is room: at most
    /// [`BATCH_SCAN_DWORDS`] are scanned), zeros after it up to what this
    /// scan `copied` or `filled` says (the slot's words from there on
    /// were zero), and `filled` then says where its zeros start.
    #[inline(never)]
    fn terminate(&mut self, filled: &mut usize, copied: usize) {
        let end = self.len + 1;
        if let Some(t) = self.words.get_mut(self.len) {
            *t = BATCH_END;
        }
        if let Some(rest) = self.words.get_mut(end..(*filled).max(copied).max(end)) {
            rest.fill(0);
        }
        *filled = end;
    }
}

/// MI_BATCH_BUFFER_END (PRM vol 2a; the crate's one encoding).
const BATCH_END: u32 = crate::encode::BB_END;

/// The monitor-owned buffers of one engine, and their host GM addresses
/// (the kernel maps them into the monitor's GGTT slice).
#[derive(Clone, Debug)]
pub struct Shadow {
    /// Engine.
    pub engine: Engine,
    /// Host GM of `ring`.
    pub ring_host: HostGm,
    /// Host GM of each batch buffer.
    pub batch_host: [HostGm; BATCH_POOL],
    /// Shadow ring.
    pub ring: [u32; RING_DWORDS],
    /// Shadow batch pool.
    pub batches: [ShadowBatch; BATCH_POOL],
    /// Refuse every command that starts shader threads
    /// ([`super::table::SHADER_DISPATCHES`]): their surfaces come from
    /// memory-resident state the scanner cannot audit; refusing them leaves
    /// guests that blit, run video and MI work reaching memory only through
    /// addresses the scanner audits.
    pub deny_shaders: bool,
    /// Per shadow batch: its words from this index on are zero (after a
    /// rejected scan, which may have copied anywhere: the whole slot).
    filled: [usize; BATCH_POOL],
}

/// DWords copied from a guest batch at a time (the copy grows on demand,
/// so a short batch costs a short copy).
const CHUNK: usize = 512;

impl Shadow {
    /// Empty shadow buffers at the given host GM addresses.
    pub const fn new(engine: Engine, ring_host: HostGm, batch_host: [HostGm; BATCH_POOL]) -> Self {
        Shadow {
            engine,
            ring_host,
            batch_host,
            ring: [0; RING_DWORDS],
            batches: [ShadowBatch::EMPTY; BATCH_POOL],
            deny_shaders: false,
            filled: [0; BATCH_POOL],
        }
    }

    /// Copies, scans, audits and remaps the commands between HEAD and TAIL.
    /// On success the shadow ring (`ring[..ring_dwords]`) and the used
    /// shadow batches are ready to submit; nothing else may be.
    pub fn scan(&mut self, gm: &dyn GmSpace, rs: RingState) -> Result<Submission, ScanError> {
        let r = self.scan_all(gm, rs);
        if r.is_err() {
            // Guest words may have been copied anywhere in any slot.
            self.filled = [BATCH_DWORDS; BATCH_POOL];
        }
        r
    }

    fn scan_all(&mut self, gm: &dyn GmSpace, rs: RingState) -> Result<Submission, ScanError> {
        let mut st = State::new(self.engine, self.deny_shaders);
        st.ppgtt_space = gm.ppgtt().is_some();
        let ring_err = |reason| ScanError {
            engine: self.engine,
            location: Location::Ring,
            offset: 0,
            header: 0,
            name: None,
            reason,
        };
        let n = copy_ring(gm, rs, &mut self.ring).map_err(ring_err)?;
        let mut off = 0;
        while off < n {
            let ring = self.ring.get_mut(..n).unwrap_or(&mut []);
            off = st.fast_run(gm, ring, off, Location::Ring, 0, &self.batch_host)?;
            if off >= n {
                break;
            }
            let ring = self.ring.get_mut(..n).unwrap_or(&mut []);
            let header = ring.get(off).copied().unwrap_or(0);
            let (spec, len) = match head(st.engine, header) {
                Ok((spec, len)) if len <= n - off => (spec, len),
                Ok((_, len)) => {
                    let kind = DecodeErrorKind::Truncated {
                        len,
                        available: n - off,
                    };
                    return Err(st.fail(Location::Ring, off, header, None, Reason::Decode(kind)));
                }
                Err(k) => {
                    return Err(st.fail(Location::Ring, off, header, None, Reason::Decode(k)))
                }
            };
            if matches!(spec.op, Op::BatchEnd) {
                // It ends no batch here (see `ControlFlow::BatchEndInRing`).
                let r = Reason::ControlFlow(ControlFlow::BatchEndInRing);
                return Err(st.fail(Location::Ring, off, header, Some(spec.name), r));
            }
            let follow = st.command(gm, ring, off, spec, len, Location::Ring, 0)?;
            if let Some(target) = follow {
                let ppgtt = target.is_ppgtt();
                if ppgtt {
                    st.enter_ppgtt();
                }
                let slot = self.follow(gm, &mut st, target, 1, Location::Ring, off)?;
                st.returned(1);
                if ppgtt {
                    st.leave_ppgtt(Location::Ring, off)?;
                }
                let at = self.slot_addr(slot, ppgtt);
                patch(&mut self.ring[..], off + 1, 2, High::Bits32, at);
            }
            off += len;
        }
        if st.tracked.depth_open() {
            // The engine would keep the half-set packet for the next
            // submission's draws.
            return Err(st.fail(Location::Ring, n, 0, None, depth_half_set()));
        }
        Ok(Submission {
            ring_dwords: n,
            batches: st.used,
            commands: st.commands,
            dwords: st.dwords,
            writes: st.writes,
        })
    }

    fn batch_host_of(&self, slot: usize) -> HostGm {
        self.batch_host.get(slot).copied().unwrap_or(HOST_ZERO)
    }

    /// Where the engine runs shadow batch `slot` from: the monitor's GM
    /// for a GGTT batch, the reserved window of the context's PPGTT for a
    /// PPGTT batch (the start keeps its Address Space Indicator).
    fn slot_addr(&self, slot: usize, ppgtt: bool) -> u64 {
        if ppgtt {
            window_batch_va(self.engine, slot)
        } else {
            self.batch_host_of(slot).raw()
        }
    }

    /// Copies and scans the batch at `target` (level `level`), following
    /// chained segments and second-level calls. Returns the slot of its
    /// first segment.
    fn follow(
        &mut self,
        gm: &dyn GmSpace,
        st: &mut State,
        target: BatchAddr,
        level: u8,
        from: Location,
        from_off: usize,
    ) -> Result<usize, ScanError> {
        let engine = st.engine;
        let mut start = target;
        let first = st.alloc(from, from_off, level)?;
        let mut slot = first;
        // Segments of this chain: chaining back to one is a cycle.
        let mut chain = [BatchAddr::Ggtt(GUEST_ZERO); BATCH_POOL];
        let mut chain_len = 0;
        loop {
            if chain.get(..chain_len).unwrap_or(&[]).contains(&start) {
                return Err(st.batch_err(from, from_off, Reason::BatchCycle));
            }
            if let Some(c) = chain.get_mut(chain_len) {
                *c = start;
                chain_len += 1;
            }
            let loc = Location::Batch { level, start };
            let err = |off: usize, header: u32, reason| ScanError {
                engine,
                location: loc,
                offset: off,
                header,
                name: None,
                reason,
            };
            let mut off = 0;
            let mut copied = 0;
            let chained = loop {
                let b = self
                    .batches
                    .get_mut(slot)
                    .ok_or(err(off, 0, Reason::PoolExhausted))?;
                b.guest = start;
                // Plain commands already copied: length, budget, advance.
                let avail = b.words.get_mut(..copied).unwrap_or(&mut []);
                off = st.fast_run(gm, avail, off, loc, level, &self.batch_host)?;
                // Copy at least the header, then the whole command; decode
                // only the copy, once.
                copy_more(gm, start, &mut b.words, &mut copied, off + 1)
                    .map_err(|r| err(off, 0, r))?;
                let header = b.words.get(off).copied().unwrap_or(0);
                let (spec, len) = match head(engine, header) {
                    Ok(x) => x,
                    Err(k) => return Err(err(off, header, Reason::Decode(k))),
                };
                copy_more(gm, start, &mut b.words, &mut copied, off + len)
                    .map_err(|r| err(off, header, r))?;
                if spec.inert() {
                    // Nothing to audit or track: count it and move on.
                    if !st.count(len) {
                        let r = Reason::BudgetExceeded;
                        return Err(st.fail(loc, off, header, Some(spec.name), r));
                    }
                    off += len;
                    continue;
                }
                b.len = off + len;
                let words = b.words.get_mut(..off + len).unwrap_or(&mut []);
                let follow = st.command(gm, words, off, spec, len, loc, level)?;
                if matches!(spec.op, Op::BatchEnd) {
                    break None;
                }
                if let Some(t) = follow {
                    if header >> 22 & 1 == 1 {
                        // Second-level call: scan the callee (or reuse its
                        // shadow), point the call at it, continue after it.
                        if level >= MAX_DEPTH {
                            return Err(err(off, header, Reason::DepthExceeded));
                        }
                        let callee = self.call(gm, st, t, level + 1, loc, off)?;
                        let at = self.slot_addr(callee, t.is_ppgtt());
                        if let Some(b) = self.batches.get_mut(slot) {
                            patch(&mut b.words[..], off + 1, 2, High::Bits32, at);
                        }
                    } else {
                        break Some((t, off));
                    }
                }
                off += len;
            };
            // The segment ends here: nothing unscanned stays after it.
            if let (Some(b), Some(filled)) = (self.batches.get_mut(slot), self.filled.get_mut(slot))
            {
                b.terminate(filled, copied);
            }
            let Some((t, at)) = chained else {
                return Ok(first);
            };
            // Chain: this segment ends; the next one gets its own shadow.
            let next = st.alloc(loc, at, level)?;
            let to = self.slot_addr(next, t.is_ppgtt());
            if let Some(b) = self.batches.get_mut(slot) {
                patch(&mut b.words[..], at + 1, 2, High::Bits32, to);
            }
            start = t;
            slot = next;
        }
    }

    /// A second-level call of `target` (a batch at `level`) from the
    /// batch at `from`, `from_off`: the slot of its shadow, scanned now or
    /// reused (see [`Call`]); the state after the call is joined with the
    /// callee's early exits that continue there.
    #[inline(never)]
    fn call(
        &mut self,
        gm: &dyn GmSpace,
        st: &mut State,
        target: BatchAddr,
        level: u8,
        from: Location,
        from_off: usize,
    ) -> Result<usize, ScanError> {
        if let Some(call) = st.reusable(target) {
            st.call_reused(call, level);
            return Ok(call.slot);
        }
        let before = core::mem::take(&mut st.effects);
        let slot = self.follow(gm, st, target, level, from, from_off)?;
        st.returned(level);
        st.remember(target, slot, st.effects);
        st.effects = st.effects | before;
        Ok(slot)
    }
}

const GUEST_ZERO: GuestGm = match GuestGm::new(0) {
    Ok(g) => g,
    Err(_) => panic!("0 is a GM address"),
};
const HOST_ZERO: HostGm = match HostGm::new(0) {
    Ok(h) => h,
    Err(_) => panic!("0 is a GM address"),
};

/// Grows the copy of the guest batch at `start` in `words` to at least
/// `need` DWords (by [`CHUNK`]s while the slice allows, else exactly),
/// never past [`BATCH_SCAN_DWORDS`].
#[inline]
fn copy_more(
    gm: &dyn GmSpace,
    start: BatchAddr,
    words: &mut [u32; BATCH_DWORDS],
    copied: &mut usize,
    need: usize,
) -> Result<(), Reason> {
    if need <= *copied {
        return Ok(());
    }
    copy_chunk(gm, start, words, copied, need)
}

fn copy_chunk(
    gm: &dyn GmSpace,
    start: BatchAddr,
    words: &mut [u32; BATCH_DWORDS],
    copied: &mut usize,
    need: usize,
) -> Result<(), Reason> {
    if need > BATCH_SCAN_DWORDS {
        return Err(Reason::BatchTooLarge);
    }
    let start = match start {
        BatchAddr::Ggtt(g) => g,
        BatchAddr::Ppgtt(p) => return copy_ppgtt_chunk(gm, p, words, copied, need),
    };
    let from = *copied;
    let at = start.checked_add(4 * from as u64).ok_or(Reason::Memory {
        addr: start.raw() + 4 * from as u64,
        size: 4,
        fault: GmFault::OutOfSlices,
    })?;
    let want = need.max(from + CHUNK).min(BATCH_SCAN_DWORDS);
    let big = words.get_mut(from..want).unwrap_or(&mut []);
    if gm.read_guest(at, big).is_err() {
        let exact = words.get_mut(from..need).unwrap_or(&mut []);
        gm.read_guest(at, exact).map_err(|fault| Reason::Memory {
            addr: at.raw(),
            size: 4 * (need - from) as u64,
            fault,
        })?;
        *copied = need;
    } else {
        *copied = want;
    }
    Ok(())
}

/// [`copy_chunk`] of a PPGTT batch: read as the engine would read it,
/// through the context's shadow PPGTT, by chunks while the pages map and
/// then exactly.
fn copy_ppgtt_chunk(
    gm: &dyn GmSpace,
    start: PpgttAddr,
    words: &mut [u32; BATCH_DWORDS],
    copied: &mut usize,
    need: usize,
) -> Result<(), Reason> {
    let Some(space) = gm.ppgtt() else {
        return Err(Reason::Ppgtt);
    };
    let from = *copied;
    let at = start.raw() + 4 * from as u64;
    let want = need.max(from + CHUNK).min(BATCH_SCAN_DWORDS);
    let big = words.get_mut(from..want).unwrap_or(&mut []);
    if read_ppgtt(space, at, big).is_err() {
        let exact = words.get_mut(from..need).unwrap_or(&mut []);
        read_ppgtt(space, at, exact).map_err(|(addr, fault)| match fault {
            PpgttFault::Window => Reason::NonPrivileged(NonPrivileged::WindowBatch),
            fault => Reason::PpgttMemory { addr, fault },
        })?;
        *copied = need;
    } else {
        *copied = want;
    }
    Ok(())
}

/// Writes `host` into the address at DWord `i` of `buf` whose address bits
/// start at bit `shift`, keeping the flag bits below and, for a 48-bit
/// address, the other fields of the high DWord.
#[inline]
fn patch(buf: &mut [u32], i: usize, shift: u32, high: High, host: u64) {
    let keep = (1u32 << shift) - 1;
    if let Some(lo) = buf.get_mut(i) {
        // g2h keeps the page offset, so the host address has the same
        // (zero) bits below `shift` as the audited guest one.
        *lo = (*lo & keep) | (host as u32 & !keep);
    }
    let hi = (host >> 32) as u32;
    match high {
        High::None => {}
        High::Bits16 => {
            if let Some(w) = buf.get_mut(i + 1) {
                *w = (*w & 0xffff_0000) | (hi & 0xffff);
            }
        }
        High::Bits32 => {
            if let Some(w) = buf.get_mut(i + 1) {
                *w = hi;
            }
        }
    }
}

/// Copies the guest ring between HEAD and TAIL into `out`; returns DWords.
fn copy_ring(gm: &dyn GmSpace, rs: RingState, out: &mut [u32]) -> Result<usize, Reason> {
    if rs.size == 0
        || !rs.size.is_multiple_of(4096)
        || rs.head >= rs.size
        || rs.tail >= rs.size
        || !rs.head.is_multiple_of(4)
        || !rs.tail.is_multiple_of(4)
    {
        return Err(Reason::BadRing);
    }
    let ring = GuestGmRange::new(rs.start, u64::from(rs.size)).map_err(|_| Reason::BadRing)?;
    gm.g2h(ring).map_err(|_| Reason::BadRing)?;
    let bytes = (rs.tail + rs.size - rs.head) % rs.size;
    let n = (bytes / 4) as usize;
    if n > out.len() {
        return Err(Reason::RingTooLarge);
    }
    let first = ((rs.size - rs.head) / 4) as usize;
    let first = first.min(n);
    let (a, b) = out.split_at_mut(first);
    let fault = |fault| Reason::Memory {
        addr: rs.start.raw(),
        size: u64::from(rs.size),
        fault,
    };
    // Inside the ring range checked above.
    let head = ring.at(u64::from(rs.head)).ok_or(Reason::BadRing)?;
    if !a.is_empty() {
        gm.read_guest(head, a).map_err(fault)?;
    }
    if let Some(b) = b.get_mut(..n - first) {
        if !b.is_empty() {
            gm.read_guest(rs.start, b).map_err(fault)?;
        }
    }
    Ok(n)
}

/// Whether the command `spec` may change the state later commands are
/// audited against ([`TrackedState`]): STATE_BASE_ADDRESS, the blitter
/// setups, the state commands of [`super::tracked`] ([`CmdSpec::tracks`])
/// and the consumers that re-audit the depth packet at their own sample
/// count ([`Consumer::reaudits_depth`]). The predication rule rests on it:
/// a command the engine may skip (one with a Predicate Enable bit, under
/// MI_PREDICATE's result) either changes no tracked state, so that
/// auditing it covers both the path that runs it and the one that skips
/// it, or is refused when predicated (MI_BATCH_BUFFER_START). A command
/// that comes to set tracked state is listed here; debug builds check
/// every audited command against the list.
pub fn sets_tracked_state(spec: &CmdSpec) -> bool {
    matches!(spec.op, Op::StateBaseAddress | Op::BltSetup)
        || spec.tracks.is_some()
        || spec.consumer().is_some_and(Consumer::reaudits_depth)
}

/// The early exits of the batches being scanned: `at[i]` is the join of
/// the tracked states at every MI_CONDITIONAL_BATCH_BUFFER_END, seen since
/// the batch start that entered level `i + 1`, that may continue right
/// after that start (`None`: none yet). When that batch returns, the state
/// after its start is joined with it.
///
/// Where an early exit continues (PRM vol 2a MI_CONDITIONAL_BATCH_BUFFER_END,
/// as Intel's media driver transcribes it for Gen9: "Termination of second
/// level batch buffer due to this command will also terminate the
/// parent/first level batch buffer"): after the ring's batch start, from
/// any level. An exit from a second-level batch is also taken to continue
/// after the second-level call (the other reading, in case the hardware
/// ends one level only), so both continuations are joined with it.
#[derive(Clone, Debug)]
struct Exits {
    at: [Option<TrackedState>; MAX_DEPTH as usize],
}

impl Exits {
    const NONE: Exits = Exits {
        at: [const { None }; MAX_DEPTH as usize],
    };
}

/// What a stretch of the scan did that decides whether a second-level
/// batch's shadow may be run again for another call.
#[derive(Clone, Copy, Debug, Default)]
struct Effects {
    /// Tracked state was set or read: its audit depends on the state it
    /// was entered with, or it changes the state after it.
    touched_state: bool,
    /// It may end early (an MI_CONDITIONAL_BATCH_BUFFER_END).
    exits_early: bool,
}

impl core::ops::BitOr for Effects {
    type Output = Effects;
    fn bitor(self, other: Effects) -> Effects {
        Effects {
            touched_state: self.touched_state | other.touched_state,
            exits_early: self.exits_early | other.exits_early,
        }
    }
}

/// A second-level batch already scanned in this submission.
#[derive(Clone, Copy, Debug)]
struct Call {
    target: BatchAddr,
    slot: usize,
    /// What its scan did: its shadow is run again for another call only
    /// when it did not touch tracked state (so its audit holds whatever
    /// state it is entered with, and the state after it is the state
    /// before it); if it may exit early, each further call adds its entry
    /// state to the exits ([`State::call_reused`]).
    effects: Effects,
}

impl Call {
    fn reusable(&self) -> bool {
        !self.effects.touched_state
    }
}

/// Per-submission scan state. `repr(C)`: the fields the fast loop reads
/// first, the tracked state's DWords and the early exits last.
#[repr(C)]
struct State {
    engine: Engine,
    /// See [`Shadow::deny_shaders`].
    deny_shaders: bool,
    /// The commands being scanned are in a PPGTT batch: non-privileged
    /// ([`State::enter_ppgtt`]). Implies [`Self::ppgtt_space`].
    ppgtt: bool,
    /// The submission runs in a PPGTT context: every address the engine
    /// resolves through the context's PPGTT (an MI operand without its
    /// Use Global GTT bit, blits, 3D and media state), wherever the
    /// command is, ring and GGTT batches included, is a PPGTT address:
    /// recorded through the shadow ([`Self::record_ppgtt`]), neither
    /// audited nor remapped. Only addresses with a GGTT bit (and GGTT
    /// batch starts) are audited as GM ([`Self::audit_ggtt`]), and no
    /// slice is cached ([`Self::learn`]), so that no fast arm remaps a
    /// PPGTT address as GM.
    ppgtt_space: bool,
    /// The fast loop leaves the state writers with nothing to audit to the
    /// full path: shader dispatches are denied, or the depth packet is
    /// half set (a draw is then refused). `deny_shaders ||
    /// tracked.depth_open()`, kept in one flag beside `deny_shaders`:
    /// [`State::refresh_writers_checked`] after anything changes `tracked`
    /// other than [`State::track_after`] (a join of two paths' state).
    writers_checked: bool,
    /// A command that starts work on the engine itself (a draw, dispatch,
    /// codec or VEBOX object: [`CmdSpec::writes_through_state`]) was
    /// scanned: status registers now report this submission's work
    /// ([`super::regs::Reads::AfterOwnWork`]). Never cleared within a
    /// submission, so a reused second-level batch's audit still holds.
    own_work: bool,
    /// What the scan did since [`Self::effects`] was last cleared.
    effects: Effects,
    commands: u32,
    dwords: u32,
    used: usize,
    writes: WriteSet,
    /// Slices translated in this scan (aperture, hidden); unused slots
    /// are [`Linear::NONE`].
    linear: [Linear; 2],
    calls: [Option<Call>; BATCH_POOL],
    /// The tracked state at the command being scanned.
    tracked: TrackedState,
    /// Early exits of the batches being scanned.
    exits: Exits,
}

/// A guest slice `[base, end)` that [`GmSpace::g2h`] translated as a whole
/// to `host` in this scan. A range translation yields one host base, so the
/// translation is linear over any range it accepts: every range inside the
/// slice translates to `host + (addr - base)`. Cached per scan only, so a
/// vGPU moved to new slices between submissions is translated afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Linear {
    base: u64,
    end: u64,
    host: u64,
}

impl Linear {
    /// An unused slot: holds no address (`base > end`; a translated
    /// slice has `end > base`).
    const NONE: Linear = Linear {
        base: u64::MAX,
        end: 0,
        host: 0,
    };
}

/// Result of an operand check.
type Check<T> = Result<T, Reason>;

/// A tracked layout of fixed fields (`$l` of [`super::operands`], the
/// fields at the listed indexes) in the fast loop, unrolled field by field:
/// the same calls in the same order as `State::with_effects` makes.
macro_rules! tracked_fixed {
    ($st:ident, $gm:ident, $w:ident, $t:expr, $l:ident: [$($k:literal),*]) => {{
        use super::operands as o;
        $st.track_before($t, $w)?;
        if o::$l.group.is_some() || o::$l.fields.len() != [$($k),*].len() {
            $st.layout($gm, &o::$l, $w)?;
        } else {
            $(if let Some(f) = o::$l.fields.get($k) {
                $st.field($gm, f, $w, 0)?;
            })*
        }
        $st.track_after($gm, $t)
    }};
}

/// A submission (or a PPGTT batch) that ends with the depth packet half
/// set.
fn depth_half_set() -> Reason {
    Reason::UnseenState(
        "3DSTATE_HIER_DEPTH_BUFFER and 3DSTATE_STENCIL_BUFFER after 3DSTATE_DEPTH_BUFFER or \
         3DSTATE_MULTISAMPLE (the submission ends with the depth packet half set)",
    )
}

fn memory_fault(addr: u64, size: u64) -> impl Fn(GmFault) -> Reason {
    move |fault| Reason::Memory { addr, size, fault }
}

impl State {
    /// A fresh submission's state: nothing counted, no state commands seen.
    fn new(engine: Engine, deny_shaders: bool) -> Self {
        State {
            engine,
            deny_shaders,
            ppgtt: false,
            ppgtt_space: false,
            writers_checked: deny_shaders,
            commands: 0,
            dwords: 0,
            used: 0,
            calls: [None; BATCH_POOL],
            tracked: TrackedState::UNKNOWN,
            exits: Exits::NONE,
            effects: Effects::default(),
            own_work: false,
            writes: WriteSet::EMPTY,
            linear: [Linear::NONE; 2],
        }
    }

    /// A PPGTT batch starts (from the ring of a PPGTT context, where no
    /// GGTT slice is cached: [`Self::ppgtt_space`]): its commands are
    /// scanned non-privileged, and from unknown tracked state (the ring's
    /// state is not carried into a batch the engine runs non-privileged).
    #[inline(never)]
    fn enter_ppgtt(&mut self) {
        self.ppgtt = true;
        self.tracked = TrackedState::UNKNOWN;
        self.refresh_writers_checked();
    }

    /// The PPGTT batch entered at the ring's DWord `off` returned: the
    /// ring's GGTT rules again, from unknown tracked state (what the
    /// batch set holds PPGTT addresses, which no GGTT audit may use). A
    /// depth packet it left half set is refused as at a submission's end.
    #[inline(never)]
    fn leave_ppgtt(&mut self, loc: Location, off: usize) -> Result<(), ScanError> {
        if self.tracked.depth_open() {
            return Err(self.fail(loc, off, 0, Some("MI_BATCH_BUFFER_START"), depth_half_set()));
        }
        self.ppgtt = false;
        self.tracked = TrackedState::UNKNOWN;
        self.refresh_writers_checked();
        Ok(())
    }

    /// The tracked state, for a command audited against it.
    #[inline]
    fn state(&mut self) -> &TrackedState {
        self.effects.touched_state = true;
        &self.tracked
    }

    /// The tracked state, for a command that sets it.
    #[inline]
    fn state_mut(&mut self) -> &mut TrackedState {
        self.effects.touched_state = true;
        &mut self.tracked
    }

    /// An MI_CONDITIONAL_BATCH_BUFFER_END in a batch at `level`: the
    /// current state may continue after the start of every level up to
    /// it (see [`Exits`]).
    #[inline(never)]
    fn exit_early(&mut self, level: u8) {
        for e in self.exits.at.iter_mut().take(usize::from(level)) {
            *e = Some(match e {
                Some(s) => s.join(&self.tracked),
                None => self.tracked.clone(),
            });
        }
        self.effects.exits_early = true;
    }

    /// The batch entered at `level` returned to the command after its
    /// start: the state there is the join of the state at its end and at
    /// every early exit that continues there.
    #[inline(never)]
    fn returned(&mut self, level: u8) {
        let exit = usize::from(level)
            .checked_sub(1)
            .and_then(|i| self.exits.at.get_mut(i))
            .and_then(Option::take);
        if let Some(e) = exit {
            self.tracked = self.tracked.join(&e);
            self.refresh_writers_checked();
        }
    }

    /// A second-level call at `level` (the callee's) of the reused shadow
    /// of `call`: the callee touches no tracked state, so every state in
    /// it is the entry state; when it may exit early, that is the state at
    /// its exits.
    #[inline(never)]
    fn call_reused(&mut self, call: Call, level: u8) {
        if call.effects.exits_early {
            self.exit_early(level);
            self.returned(level);
        }
    }

    fn batch_err(&self, loc: Location, off: usize, reason: Reason) -> ScanError {
        ScanError {
            engine: self.engine,
            location: loc,
            offset: off,
            header: 0,
            name: Some("MI_BATCH_BUFFER_START"),
            reason,
        }
    }

    fn alloc(&mut self, loc: Location, off: usize, level: u8) -> Result<usize, ScanError> {
        if level > MAX_DEPTH {
            return Err(self.batch_err(loc, off, Reason::DepthExceeded));
        }
        if self.used >= BATCH_POOL {
            return Err(self.batch_err(loc, off, Reason::PoolExhausted));
        }
        self.used += 1;
        Ok(self.used - 1)
    }

    /// The second-level batch at `target` scanned earlier in this
    /// submission, when its shadow may be run again: it set and read no
    /// tracked state (see [`Call`]), other than draws' use of a settled
    /// depth packet, and the packet is settled now as it was then.
    #[inline(always)]
    fn reusable(&self, target: BatchAddr) -> Option<Call> {
        if self.tracked.depth_open() {
            return None;
        }
        self.calls
            .iter()
            .flatten()
            .find(|c| c.target == target && c.reusable())
            .copied()
    }

    fn remember(&mut self, target: BatchAddr, slot: usize, effects: Effects) {
        if let Some(free) = self.calls.iter_mut().find(|c| c.is_none()) {
            *free = Some(Call {
                target,
                slot,
                effects,
            });
        }
    }

    /// Audits the guest range `addr .. addr + size` (size >= 1) and returns
    /// its host address; records it as a write target if `write`.
    ///
    /// A range inside a slice already translated in this scan is translated
    /// from the cached slice (see [`Linear`]); anything else goes through
    /// [`GmSpace::g2h`] itself, which gives the answer and the fault.
    #[inline(always)]
    fn audit(&mut self, gm: &dyn GmSpace, addr: u64, size: u64, write: bool) -> Check<u64> {
        match self.cached_audit(addr, size, write) {
            Some(host) => Ok(host),
            None => self.audit_slow(gm, addr, size, write),
        }
    }

    /// [`Self::audit`] of an address the command puts in the GGTT (its
    /// Use Global GTT bit set, a GGTT batch start): audited and remapped
    /// as GM in a PPGTT context too. The same as [`Self::audit`] in a GGTT
    /// context.
    #[inline(always)]
    fn audit_ggtt(&mut self, gm: &dyn GmSpace, addr: u64, size: u64, write: bool) -> Check<u64> {
        match self.cached_audit(addr, size, write) {
            Some(host) => Ok(host),
            None => self.audit_gm(gm, addr, size, write),
        }
    }

    /// The host address from a cached slice (recorded if `write`), if one
    /// holds the range.
    #[inline(always)]
    fn cached_audit(&mut self, addr: u64, size: u64, write: bool) -> Option<u64> {
        let host = self.cached(addr, size)?;
        if write {
            self.writes.add_raw(addr, addr + size);
        }
        Some(host)
    }

    /// The host address of `addr .. addr + size` when a slice translated
    /// in this scan holds it wholly (see [`Linear`]); `None` otherwise
    /// (then [`GmSpace::g2h`] decides).
    #[inline(always)]
    fn cached(&self, addr: u64, size: u64) -> Option<u64> {
        let end = addr.wrapping_add(size);
        for l in &self.linear {
            if addr >= l.base && end <= l.end && end > addr {
                return Some(l.host + (addr - l.base));
            }
        }
        None
    }

    #[cold]
    #[inline(never)]
    fn audit_slow(&mut self, gm: &dyn GmSpace, addr: u64, size: u64, write: bool) -> Check<u64> {
        if self.ppgtt_space {
            self.record_ppgtt(gm, addr, size, write);
            return Ok(addr);
        }
        self.audit_gm(gm, addr, size, write)
    }

    /// Audits `addr .. addr + size` as guest GM through [`GmSpace::g2h`].
    #[cold]
    #[inline(never)]
    fn audit_gm(&mut self, gm: &dyn GmSpace, addr: u64, size: u64, write: bool) -> Check<u64> {
        let fault = memory_fault(addr, size);
        let base = GuestGm::new(addr).map_err(|_| fault(GmFault::OutOfSlices))?;
        let range = GuestGmRange::new(base, size).map_err(|_| fault(GmFault::OutOfSlices))?;
        let host = gm.g2h(range).map_err(&fault)?;
        self.learn(gm, base);
        if write {
            self.writes.add_range(range);
        }
        Ok(host.raw())
    }

    /// A PPGTT address ([`Self::ppgtt_space`]): no audit and no remap (the address is
    /// the context's, and its shadow PPGTT maps only the vGPU's frames);
    /// if written, each page the shadow maps writable is recorded by its
    /// frame. A page it does not map (or maps read-only) faults the
    /// context before anything there is written, so leaving it out misses
    /// nothing; an extent of more pages than the set holds leaves the set
    /// untracked without walking it.
    fn record_ppgtt(&mut self, gm: &dyn GmSpace, addr: u64, size: u64, write: bool) {
        if !write || self.writes.untracked {
            return;
        }
        let Some(space) = gm.ppgtt() else {
            self.writes.untracked = true;
            return;
        };
        // The engine takes a PPGTT address from bits 47:0 and ignores
        // the bits above (`SimGpu` too): so must the record.
        let addr = addr & (PPGTT_SIZE - 1);
        let end = addr.saturating_add(size.max(1)).min(PPGTT_SIZE);
        if end <= addr {
            return;
        }
        let (first, last) = (addr / PAGE, (end - 1) / PAGE);
        if last - first >= MAX_WRITE_PAGES {
            self.writes.untracked = true;
            return;
        }
        for page in first..=last {
            let frame = PpgttAddr::new(page * PAGE).and_then(|va| space.frame_of(va, true).ok());
            if let Some(f) = frame {
                self.writes.add_frame(f);
            }
        }
    }

    /// Caches the translation of the slice holding `at`, when the whole
    /// slice translates (so every range inside it does, linearly).
    fn learn(&mut self, gm: &dyn GmSpace, at: GuestGm) {
        if self.ppgtt_space {
            // A cached slice would let a fast arm remap a PPGTT address.
            return;
        }
        let Ok(slice) = gm.slice_of(at) else { return };
        let Ok(host) = gm.g2h(slice) else { return };
        let l = Linear {
            base: slice.base().raw(),
            end: slice.end_raw(),
            host: host.raw(),
        };
        if l.end <= l.base || self.linear.contains(&l) {
            return;
        }
        if let Some(free) = self.linear.iter_mut().find(|s| **s == Linear::NONE) {
            *free = l;
        }
    }

    /// Bytes from `addr` to the end of the slice holding it.
    #[inline(always)]
    fn rest_of_slice(&mut self, gm: &dyn GmSpace, addr: u64) -> Check<u64> {
        for l in &self.linear {
            if addr >= l.base && addr < l.end {
                return Ok(l.end - addr);
            }
        }
        self.rest_of_slice_slow(gm, addr)
    }

    #[cold]
    #[inline(never)]
    fn rest_of_slice_slow(&mut self, gm: &dyn GmSpace, addr: u64) -> Check<u64> {
        if self.ppgtt_space {
            // The context's whole address space is its own.
            return Ok(PPGTT_SIZE.saturating_sub(addr).max(1));
        }
        let fault = memory_fault(addr, 1);
        let at = GuestGm::new(addr).map_err(|_| fault(GmFault::OutOfSlices))?;
        let slice = gm.slice_of(at).map_err(&fault)?;
        self.learn(gm, at);
        Ok(slice.end_raw().saturating_sub(addr))
    }

    /// A rejection at DWord `off` of the buffer at `loc` (built only on the
    /// error path).
    #[cold]
    fn fail(
        &self,
        loc: Location,
        off: usize,
        header: u32,
        name: Option<&'static str>,
        reason: Reason,
    ) -> ScanError {
        ScanError {
            engine: self.engine,
            location: loc,
            offset: off,
            header,
            name,
            reason,
        }
    }

    /// The fast loop over the commands of `buf` (a shadow copy) from DWord
    /// `off`: counts the plain ones (see [`fast_entry`]) and counts, audits
    /// and remaps in place the ones with operands other than the batch
    /// commands, exactly as [`Self::command`] does, for every command that
    /// lies wholly inside `buf` and fits the budget. Returns the offset of
    /// the first command it leaves to the full path (which decodes, counts
    /// and reports it as before), or the error of a rejected command.
    #[inline(always)]
    fn fast_run(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        loc: Location,
        level: u8,
        batch_host: &[HostGm; BATCH_POOL],
    ) -> Result<usize, ScanError> {
        let e = self.engine.index();
        // Every command the run takes is counted with its whole length and
        // the run is contiguous, so the DWord budget is a bound on the
        // offset: DWords counted in this run = `o - off`.
        let room = MAX_DWORDS.saturating_sub(self.dwords) as usize;
        let end = buf.len().min(off.saturating_add(room));
        let mut c = self.commands;
        let mut o = off;
        let r = loop {
            let Some(&h) = buf.get(..end).and_then(|b| b.get(o)) else {
                break Ok(());
            };
            let entry = fast_entry(e, h);
            let len = if entry & FAST_GUESS != 0 {
                // Most commands encode their length as an 8-bit (or wider,
                // with the upper bits clear) DWord Length with bias 2: the
                // length comes from the header alone, before the table
                // load, which keeps that load off the loop's dependency
                // chain (the table entry only checks it).
                let low = (h & 0xff) as usize;
                if u64::from(h) & entry & 0xffff != 0
                    || (low as u64) < (entry >> 16 & 0xff)
                    || (low as u64) > (entry >> 24 & 0xff)
                {
                    break Ok(());
                }
                low + 2
            } else {
                if entry == 0 {
                    break Ok(());
                }
                match fast_len(entry, h) {
                    Some(len) => len,
                    None => break Ok(()),
                }
            };
            if len > end - o || c >= MAX_COMMANDS {
                break Ok(());
            }
            if entry & FAST_AUDIT == 0 {
                c += 1;
                o += len;
                continue;
            }
            let kind = fast_kind_code(entry);
            if kind != 0 {
                // A hot class named by the entry itself: audited in
                // straight code without the row load (the row only names
                // a rejected command). What the straight code leaves (it
                // then changed nothing) goes on below as any other
                // audited command.
                let fast = match buf.get_mut(o..o + len) {
                    Some(w) => self.fast_kind_audit(gm, kind, entry, w),
                    None => None,
                };
                match fast {
                    Some(Ok(())) => {
                        c += 1;
                        o += len;
                        continue;
                    }
                    Some(Err(r)) => {
                        c += 1;
                        let header = buf.get(o).copied().unwrap_or(0);
                        let name = fast_spec(entry).map(|s| s.name);
                        break Err(self.fail(loc, o, header, name, r));
                    }
                    None => {}
                }
            }
            let Some(spec) = fast_spec(entry) else {
                break Ok(());
            };
            if matches!(spec.op, Op::BatchStart) {
                // Only a reused second-level call; anything else is the
                // full path's (before it is counted).
                let slot = match buf.get(o..o + len) {
                    Some(w) => self.reused_call(w, loc, level),
                    None => None,
                };
                let Some(slot) = slot else {
                    break Ok(());
                };
                c += 1;
                let host = batch_host.get(slot).copied().unwrap_or(HOST_ZERO);
                patch(buf, o + 1, 2, High::Bits32, host.raw());
                o += len;
                continue;
            }
            c += 1;
            let fast = match buf.get_mut(o..o + len) {
                Some(w) => self.fast_audit(gm, spec.op, w),
                None => None,
            };
            match fast {
                Some(Ok(())) => {}
                Some(Err(r)) => {
                    let header = buf.get(o).copied().unwrap_or(0);
                    break Err(self.fail(loc, o, header, Some(spec.name), r));
                }
                None => {
                    if let Err(err) = self.audited(gm, buf, o, spec, len, loc, level) {
                        break Err(err);
                    }
                }
            }
            o += len;
        };
        self.commands = c;
        self.dwords += (o - off) as u32;
        r.map(|()| o)
    }

    /// The audit and remap of the most frequent commands with operands, in
    /// straight code. `None`: not done, nothing changed, and the command
    /// goes to [`Self::audited`]. `Some(result)`: done, with the same
    /// effect and result as [`Self::audited`] (whose error the caller
    /// wraps the same way). The single-operand MI commands and
    /// PIPE_CONTROL take this path only when their operand lies in a slice
    /// already translated in this scan; the hot layouts run
    /// [`Self::layout`] itself, inlined against their static description.
    #[inline(always)]
    fn fast_audit(&mut self, gm: &dyn GmSpace, op: Op, w: &mut [u32]) -> Option<Check<()>> {
        let h = w.first().copied().unwrap_or(0);
        let bit = |v: u32, b: u32| v >> b & 1 == 1;
        let done = |ok: bool| ok.then_some(Ok(()));
        match op {
            Op::PipeControl => {
                // See repr: DW1 post-sync (15:14), store index (21), LRI
                // post-sync (23), GGTT (24); address DW2-3 bits 47:3.
                let d1 = w.get(1).copied().unwrap_or(0);
                if w.len() < 6 || bit(d1, 23) {
                    return None;
                }
                if d1 >> 14 & 3 == 0 {
                    return Some(Ok(()));
                }
                if bit(d1, 21) || !bit(d1, 24) {
                    return None;
                }
                done(self.fast_write(w, 2, 3, 8))
            }
            Op::StoreDataImm => {
                // Header GGTT (22), Store Qword (21); address DW1-2 bits 47:2.
                if w.len() < 4 || !bit(h, 22) {
                    return None;
                }
                let size = if bit(h, 21) || w.len() >= 5 { 8 } else { 4 };
                done(self.fast_write(w, 1, 2, size))
            }
            Op::FlushDw => {
                // Header post-sync (15:14), store index (21); DW1 bit 2
                // GGTT; address DW1-2 bits 47:3.
                if w.len() < 4 {
                    return None;
                }
                if h >> 14 & 3 == 0 {
                    return Some(Ok(()));
                }
                let d1 = w.get(1).copied().unwrap_or(0);
                if bit(h, 21) || !bit(d1, 2) {
                    return None;
                }
                let size = if w.len() >= 5 { 8 } else { 4 };
                done(self.fast_write(w, 1, 3, size))
            }
            Op::XyColorBlt | Op::XySrcCopyBlt | Op::XyFastCopyBlt => self.fast_blit(op, w),
            Op::Gm(layout) => {
                use super::operands as o;
                macro_rules! hot {
                    ($($l:ident),*) => {
                        $(if core::ptr::eq(layout, &o::$l) {
                            return Some(self.layout(gm, &o::$l, w));
                        })*
                    };
                }
                // Layouts of fixed fields only, unrolled field by field
                // (the same calls in the same order as `layout`).
                macro_rules! fixed {
                    ($($l:ident: [$($k:literal),*]),*) => {
                        $(if core::ptr::eq(layout, &o::$l)
                            && o::$l.group.is_none()
                            && o::$l.fields.len() == [$($k),*].len()
                        {
                            let r: Check<()> = 'fields: {
                                $(if let Some(f) = o::$l.fields.get($k) {
                                    if let Err(e) = self.field(gm, f, w, 0) {
                                        break 'fields Err(e);
                                    }
                                })*
                                Ok(())
                            };
                            return Some(r);
                        })*
                    };
                }
                fixed!(INDEX_BUFFER: [0], CONSTANT: [0, 1, 2, 3]);
                hot!(VERTEX_BUFFERS);
                None
            }
            _ => None,
        }
    }

    /// [`Self::fast_audit`] of the hot class with code `kind` (see
    /// [`fast_kind_code`]; the same classes as `fast_kind`), each arm
    /// specialised to its class.
    #[inline(always)]
    fn fast_kind_audit(
        &mut self,
        gm: &dyn GmSpace,
        kind: u32,
        entry: u64,
        w: &mut [u32],
    ) -> Option<Check<()>> {
        use super::operands as o;
        match kind {
            1 => self.fast_audit(gm, Op::PipeControl, w),
            2 => self.fast_audit(gm, Op::StoreDataImm, w),
            3 => self.fast_audit(gm, Op::FlushDw, w),
            4 => self.fast_blit(Op::XyColorBlt, w),
            5 => self.fast_blit(Op::XySrcCopyBlt, w),
            6 => self.fast_blit(Op::XyFastCopyBlt, w),
            7 => self.fast_audit(gm, Op::Gm(&o::INDEX_BUFFER), w),
            8 => self.fast_audit(gm, Op::Gm(&o::CONSTANT), w),
            10 => self.fast_audit(gm, Op::Gm(&o::VERTEX_BUFFERS), w),
            // A state writer with nothing to audit. A shader dispatch that
            // may be refused, or a draw while the depth packet is half
            // set, goes to the full path.
            13 if self.writers_checked => None,
            13 => {
                self.writes.untracked = true;
                Some(Ok(()))
            }
            // Tracked state, out of the loop's line: kept in line, it costs
            // every other stream registers (callgrind, scan_bench). The
            // tracked commands without operands take the general path
            // below (`audited`), as the full path does, but those only kept
            // (class 15).
            11 => Some(self.tracked_fixed_mfx_ind(gm, w)),
            12 => Some(self.tracked_fixed_mfx_bsp(gm, w)),
            9 => Some(self.fast_depth(gm, w)),
            14 => Some(self.fast_packet(gm, entry, w)),
            15 => {
                self.fast_record(entry, w);
                Some(Ok(()))
            }
            _ => None,
        }
    }

    /// 3DSTATE_HIER_DEPTH_BUFFER and 3DSTATE_STENCIL_BUFFER (class 14, row
    /// in `entry`): kept, audited, the packet advanced, as
    /// [`Self::with_effects`] does; out of the fast loop's line.
    #[inline(never)]
    fn fast_packet(&mut self, gm: &dyn GmSpace, entry: u64, w: &mut [u32]) -> Check<()> {
        match fast_spec(entry).and_then(|s| s.tracks) {
            Some(Tracked::HierDepth) => {
                tracked_fixed!(self, gm, w, Tracked::HierDepth, HIER_DEPTH_BUFFER: [0])
            }
            _ => tracked_fixed!(self, gm, w, Tracked::Stencil, STENCIL_BUFFER: [0]),
        }
    }

    /// A command of the fast class 15 ([`CmdSpec::fast_recorded`]: tracked
    /// state outside the render pipe, nothing else), row in `entry`: kept,
    /// which is all [`Self::with_effects`] does with it
    /// ([`Self::track_before`] and [`Self::track_after`] check and advance
    /// only the depth packet). Out of the fast loop's line; it cannot fail,
    /// so it returns nothing for the loop to copy.
    #[inline(never)]
    fn fast_record(&mut self, entry: u64, w: &[u32]) {
        if let Some(t) = fast_spec(entry).and_then(|s| s.tracks) {
            self.state_mut().record_any(t, w);
        }
    }

    /// 3DSTATE_DEPTH_BUFFER in the fast loop, as `with_effects`; out of
    /// its line.
    #[inline(never)]
    fn fast_depth(&mut self, gm: &dyn GmSpace, w: &mut [u32]) -> Check<()> {
        tracked_fixed!(self, gm, w, Tracked::DepthBuffer, DEPTH_BUFFER: [0])
    }

    /// MFX_IND_OBJ_BASE_ADDR_STATE in the fast loop, as `with_effects`;
    /// out of its line.
    #[inline(never)]
    fn tracked_fixed_mfx_ind(&mut self, gm: &dyn GmSpace, w: &mut [u32]) -> Check<()> {
        tracked_fixed!(self, gm, w, Tracked::MfxIndObj, MFX_IND_OBJ_BASE_ADDR: [0, 1, 2, 3, 4])
    }

    /// MFX_BSP_BUF_BASE_ADDR_STATE in the fast loop, as `with_effects`;
    /// out of its line.
    #[inline(never)]
    fn tracked_fixed_mfx_bsp(&mut self, gm: &dyn GmSpace, w: &mut [u32]) -> Check<()> {
        tracked_fixed!(self, gm, w, Tracked::MfxBsp, MFX_BSP_BUF_BASE_ADDR: [0, 1, 2])
    }

    /// XY_COLOR_BLT, XY_SRC_COPY_BLT and XY_FAST_COPY_BLT (`op`, exact
    /// lengths) in straight code: the surface extents from the same
    /// [`xy_blit_bytes`] the full parse uses, audited and remapped as
    /// [`Self::check_operands`] does (destination written, at least one
    /// byte each, both checked before either is rewritten) when a slice
    /// already translated in this scan holds each surface. Anything else
    /// (a rejected extent, a surface outside the cached slices, a short
    /// command) is `None`: nothing changed, the full path decides.
    #[inline(always)]
    fn fast_blit(&mut self, op: Op, w: &mut [u32]) -> Option<Check<()>> {
        let copy = !matches!(op, Op::XyColorBlt);
        if w.len() < if copy { 10 } else { 7 } {
            return None;
        }
        let dw = |i: usize| w.get(i).copied().unwrap_or(0);
        let (d, s) = xy_blit_bytes(op, dw)?.ok()?;
        let at = |lo: usize| u64::from(dw(lo + 1)) << 32 | u64::from(dw(lo));
        let (dst, src) = (at(4), at(8));
        let (d, s) = (d.max(1), s.max(1));
        let dst_host = self.cached(dst, d)?;
        let src_host = if copy {
            Some(self.cached(src, s)?)
        } else {
            None
        };
        self.writes.add_raw(dst, dst + d);
        patch(w, 4, 0, High::Bits32, dst_host);
        if let Some(h) = src_host {
            patch(w, 8, 0, High::Bits32, h);
        }
        Some(Ok(()))
    }

    /// For the MI_BATCH_BUFFER_START `w` in a batch at `loc`, `level`: the
    /// shadow slot of its target when it is a plain GGTT second-level call
    /// (no resource streamer, no add-offset, not predicated) allowed at
    /// this level, whose target lies in a cached slice and is a
    /// second-level batch already scanned in this submission, reusable,
    /// and without early exits. Then the full path would accept it and
    /// point it at that slot, and nothing else; `None` leaves it to the
    /// full path. Changes nothing.
    #[inline(always)]
    fn reused_call(&self, w: &[u32], loc: Location, level: u8) -> Option<usize> {
        let &[h, a, b] = w else { return None };
        let bit = |v: u32, b: u32| v >> b & 1 == 1;
        if loc == Location::Ring
            || self.ppgtt
            || !bit(h, 22)
            || bit(h, 10)
            || bit(h, 15)
            || bit(h, 16)
            || bit(h, 8)
            || level >= MAX_DEPTH
        {
            return None;
        }
        let addr = u64::from(b) << 32 | u64::from(a & !3);
        self.cached(addr, 4)?;
        let t = GuestGm::new(addr).ok()?;
        self.reusable_without_exits(BatchAddr::Ggtt(t))
    }

    /// The slot of the reusable shadow of the second-level batch at
    /// `target` (see [`Self::reusable`]), when it has no early exits.
    #[inline(never)]
    fn reusable_without_exits(&self, target: BatchAddr) -> Option<usize> {
        self.reusable(target)
            .filter(|c| !c.effects.exits_early)
            .map(|c| c.slot)
    }

    /// The write operand at DWords `lo`, `lo + 1` of `w` (address bits from
    /// `shift`) of `size` bytes, when a cached slice holds it: recorded,
    /// remapped, `true`. Else nothing changes and it returns `false`.
    #[inline(always)]
    fn fast_write(&mut self, w: &mut [u32], lo: usize, shift: u32, size: u64) -> bool {
        let (Some(&a), Some(&b)) = (w.get(lo), w.get(lo + 1)) else {
            return false;
        };
        let addr = u64::from(b) << 32 | u64::from(a & !((1u32 << shift) - 1));
        let Some(host) = self.cached(addr, size) else {
            return false;
        };
        self.writes.add_raw(addr, addr + size);
        patch(w, lo, shift, High::Bits32, host);
        true
    }

    /// Counts a decoded command of `len` DWords against the budget.
    #[inline(always)]
    fn count(&mut self, len: usize) -> bool {
        self.commands += 1;
        self.dwords = self.dwords.saturating_add(len as u32);
        self.commands <= MAX_COMMANDS && self.dwords <= MAX_DWORDS
    }

    /// Counts, audits and remaps the command at `off` of `buf` (already a
    /// shadow copy), decoded by [`head`] as `spec` of `len` DWords (inside
    /// `buf`). Returns, for a batch start, its audited guest target.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // reason: the hot loop's state, passed in registers
    fn command(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        spec: &'static CmdSpec,
        len: usize,
        loc: Location,
        level: u8,
    ) -> Result<Option<BatchAddr>, ScanError> {
        if !self.count(len) {
            let header = buf.get(off).copied().unwrap_or(0);
            return Err(self.fail(loc, off, header, Some(spec.name), Reason::BudgetExceeded));
        }
        // Fast path: most of a 3D stream is state without addresses.
        match spec.op {
            Op::Noop | Op::Plain | Op::BatchEnd
                if spec.tracks.is_none() && spec.consumer().is_none() =>
            {
                self.state_writer(buf, off, spec, loc)?;
                Ok(None)
            }
            _ => self.audited(gm, buf, off, spec, len, loc, level),
        }
    }

    /// What a command writing through memory-resident state does to the
    /// scan: a shader dispatch is refused when the shadow denies them; any
    /// such command leaves the write set untracked (its targets are in
    /// state the scanner does not parse).
    #[inline(always)]
    fn state_writer(
        &mut self,
        buf: &[u32],
        off: usize,
        spec: &'static CmdSpec,
        loc: Location,
    ) -> Result<(), ScanError> {
        if spec.dispatches_shaders && self.deny_shaders {
            let header = buf.get(off).copied().unwrap_or(0);
            return Err(self.fail(loc, off, header, Some(spec.name), Reason::ShadersDenied));
        }
        self.writes.untracked |= spec.writes_through_state;
        self.own_work |= spec.writes_through_state;
        Ok(())
    }

    /// [`Self::command`] for a command with operands.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)] // reason: as `command`
    fn audited(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        spec: &'static CmdSpec,
        len: usize,
        loc: Location,
        level: u8,
    ) -> Result<Option<BatchAddr>, ScanError> {
        self.state_writer(buf, off, spec, loc)?;
        #[cfg(debug_assertions)]
        let before = self.tracked.clone();
        let r = self.with_effects(gm, buf, off, spec, len, loc, level);
        #[cfg(debug_assertions)]
        debug_assert!(
            self.tracked == before || sets_tracked_state(spec) || r.is_err(),
            "{} changed the tracked state but `sets_tracked_state` does not list it",
            spec.name
        );
        r.map_err(|r| {
            let header = buf.get(off).copied().unwrap_or(0);
            self.fail(loc, off, header, Some(spec.name), r)
        })
    }

    /// The operand audit of [`Self::audited`] with the command's effects on
    /// the tracked state ([`super::tracked`]) around it: the guest DWords
    /// of a state it sets are kept before they are remapped, and what it
    /// consumes is audited after its own operands.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // reason: as `command`
    fn with_effects(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        spec: &'static CmdSpec,
        len: usize,
        loc: Location,
        level: u8,
    ) -> Check<Option<BatchAddr>> {
        if let Some(t) = spec.tracks {
            self.track_before(t, buf.get_mut(off..off + len).unwrap_or(&mut []))?;
        }
        let follow = match spec.op {
            Op::Noop | Op::Plain => None,
            Op::Gm(layout) => {
                let words = buf.get_mut(off..off + len).unwrap_or(&mut []);
                self.layout_dispatch(gm, layout, words).map(|()| None)?
            }
            _ => self.check_operands(gm, buf, off, spec, len, loc, level)?,
        };
        if let Some(t) = spec.tracks {
            self.track_after(gm, t)?;
        }
        if let Some(c) = spec.consumer() {
            self.consume(gm, c, buf.get(off..off + len).unwrap_or(&[]))?;
        }
        Ok(follow)
    }

    /// Before the operands of the command setting `t` (guest DWords `w`)
    /// are audited and remapped: keeps its DWords. A HiZ or stencil buffer
    /// takes its dimensions from the depth buffer before it; a depth
    /// buffer the engine cannot use is made NULL first
    /// ([`geom::null_unsizable_depth`]), and kept as NULL.
    #[inline(always)]
    fn track_before(&mut self, t: Tracked, w: &mut [u32]) -> Check<()> {
        if t == Tracked::DepthBuffer {
            geom::null_unsizable_depth(w);
        }
        if matches!(t, Tracked::HierDepth | Tracked::Stencil)
            && !self.tracked.is_set(Tracked::DepthBuffer)
        {
            return Err(Reason::UnseenState(
                "3DSTATE_DEPTH_BUFFER earlier in the submission (it gives the HiZ and stencil \
                 buffers' dimensions)",
            ));
        }
        // Its audit depends on the state the batch is entered with: a
        // second-level batch that sets it is scanned per call.
        self.state_mut().record_any(t, w);
        Ok(())
    }

    /// After the command setting `t` was audited: the depth packet's
    /// progress.
    #[inline(always)]
    fn track_after(&mut self, gm: &dyn GmSpace, t: Tracked) -> Check<()> {
        if t.pipe() != Pipe::Render {
            return Ok(());
        }
        let r = self.advance_packet(gm, t);
        self.refresh_writers_checked();
        r
    }

    /// Recomputes [`State::writers_checked`] from the tracked state.
    #[inline(always)]
    fn refresh_writers_checked(&mut self) {
        self.writers_checked = self.deny_shaders || self.tracked.depth_open();
    }

    /// [`Self::track_after`]'s changes to the depth packet.
    #[inline(always)]
    fn advance_packet(&mut self, gm: &dyn GmSpace, t: Tracked) -> Check<()> {
        match t {
            Tracked::DepthBuffer => {
                let samples = self.tracked.packet_samples();
                self.tracked.open_packet(samples);
            }
            Tracked::HierDepth | Tracked::Stencil => self.tracked.close_packet(),
            Tracked::Multisample => {
                let samples = self.tracked.dw(Tracked::Multisample, 1) >> 1 & 7;
                if self.tracked.is_set(Tracked::DepthBuffer) {
                    if samples > self.tracked.depth_samples() {
                        self.reaudit_depth_packet(gm, samples)?;
                    }
                } else if samples > 0 {
                    // The context's packet may have been audited for
                    // fewer samples: it must be set again.
                    self.tracked.stale_packet();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The 64-bit guest address at DWord `d` of tracked state `t`.
    fn tracked_addr(&self, t: Tracked, d: usize) -> u64 {
        u64::from(self.tracked.dw(t, d + 1)) << 32 | u64::from(self.tracked.dw(t, d))
    }

    /// Audits the submission's depth packet again at `samples` (log2):
    /// the depth buffer and the HiZ and stencil buffers set after it, as
    /// their layouts use them.
    #[inline(never)]
    fn reaudit_depth_packet(&mut self, gm: &dyn GmSpace, samples: u32) -> Check<()> {
        let Some(Ok(Some(d))) = self.tracked.depth() else {
            self.tracked.packet_audited(samples);
            return Ok(());
        };
        let mut ranges = [(0u64, 0u64); 3];
        ranges[0] = (self.tracked_addr(Tracked::DepthBuffer, 2), d.bytes(samples));
        if d.hiz {
            if let Some(w) = self.tracked.get(Tracked::HierDepth) {
                ranges[1] = (
                    self.tracked_addr(Tracked::HierDepth, 2),
                    d.hiz_bytes(w, samples),
                );
            }
        }
        if self.tracked.dw(Tracked::Stencil, 1) >> 31 == 1 {
            if let Some(w) = self.tracked.get(Tracked::Stencil) {
                let bytes = d.stencil_bytes(w, samples);
                ranges[2] = (self.tracked_addr(Tracked::Stencil, 2), bytes);
            }
        }
        for (addr, size) in ranges {
            if size > 0 {
                self.audit(gm, addr, size, true)?;
            }
        }
        self.tracked.packet_audited(samples);
        Ok(())
    }

    /// The command `w` consumes state set earlier ([`Consumer`]), when it
    /// is active ([`Consumer::active`]): accepted only when that state was
    /// set in this submission (on every path: the
    /// tracked state is joined), with a settled depth packet if it uses it,
    /// bounded indirect objects, and every buffer of the state it consumes
    /// inside the slices at the extent that state gives.
    #[inline(never)]
    fn consume(&mut self, gm: &dyn GmSpace, c: &'static Consumer, w: &[u32]) -> Check<()> {
        if !self.used(c.active, w) {
            return Ok(());
        }
        if !c.only_settled_depth() {
            // Audited against the tracked state: a second-level batch
            // holding it is scanned per call. A draw needs only a settled
            // packet, which reuse checks at every call ([`Self::reusable`]).
            self.effects.touched_state = true;
        }
        if c.settled_depth && self.tracked.depth_open() {
            return Err(Reason::UnseenState(
                "3DSTATE_HIER_DEPTH_BUFFER and 3DSTATE_STENCIL_BUFFER after 3DSTATE_DEPTH_BUFFER \
                 or 3DSTATE_MULTISAMPLE (the depth packet is half set)",
            ));
        }
        if let Some(state) = self.tracked.missing(c) {
            return Err(Reason::UnseenState(state));
        }
        if c.reaudits_depth() {
            // 3DSTATE_WM_HZ_OP clears and resolves at its own sample count
            // (DWord 1 bits 15:13).
            let samples = w.get(1).copied().unwrap_or(0) >> 13 & 7;
            if samples > self.tracked.depth_samples() {
                self.reaudit_depth_packet(gm, samples)?;
            }
        }
        if let Some((t, mask)) = c.bounded {
            if !self.tracked.is_set(t) {
                return Err(Reason::UnseenState(t.command()));
            }
            let fields = t.layout().map_or(&[][..], |l| l.fields);
            for (i, f) in fields.iter().enumerate() {
                let Extent::UpperBound { dword } = f.extent else {
                    continue;
                };
                if mask >> i & 1 == 1 && self.tracked_addr(t, usize::from(dword)) == 0 {
                    return Err(Reason::Unbounded(f.name));
                }
            }
        }
        for group in c.needs {
            for &t in group.iter() {
                if self.tracked.is_set(t) {
                    if let Some(layout) = t.layout() {
                        self.consume_layout(gm, t, layout)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Audits the [`Extent::Pipe`] fields of tracked state `t` (its guest
    /// DWords, with layout `layout`) at the extents its pipe's state gives.
    fn consume_layout(&mut self, gm: &dyn GmSpace, t: Tracked, layout: &Layout) -> Check<()> {
        let mut w = [0u32; 128];
        let n = match self.tracked.get(t) {
            Some(src) => {
                let n = src.len().min(w.len());
                if let (Some(d), Some(s)) = (w.get_mut(..n), src.get(..n)) {
                    d.copy_from_slice(s);
                }
                n
            }
            None => return Ok(()),
        };
        let w = w.get(..n).unwrap_or(&[]);
        let frame = self.frame(t.pipe());
        let mode = match t.pipe() {
            Pipe::Mfx => self.tracked.dw(Tracked::MfxPipeMode, 1),
            Pipe::Hcp => self.tracked.dw(Tracked::HcpPipeMode, 1),
            Pipe::Vdenc => self.tracked.dw(Tracked::VdencPipeMode, 1),
            // No mode select: every mode-dependent field counts as used.
            _ => u32::MAX,
        };
        let fields = layout.fields.iter().map(|f| (0usize, f));
        let grouped = layout.group.into_iter().flat_map(|(g, fs)| {
            let count = if g.count == 0 {
                n.saturating_sub(usize::from(g.start)) / usize::from(g.stride).max(1)
            } else {
                usize::from(g.count)
            };
            (0..count).flat_map(move |e| {
                fs.iter()
                    .map(move |f| (usize::from(g.start) + e * usize::from(g.stride), f))
            })
        });
        for (eb, fld) in fields.chain(grouped) {
            let Extent::Pipe(size) = fld.extent else {
                continue;
            };
            let e = w.get(eb..).unwrap_or(&[]);
            let hi_len = usize::from(fld.high != High::None);
            if usize::from(fld.dword) + hi_len >= e.len() {
                continue;
            }
            let used = match fld.when {
                When::PipeMode(b) => mode >> b & 1 == 1,
                other => self.used(other, e),
            };
            if !used {
                continue;
            }
            let bytes = match size {
                PipeSize::Unknown => return Err(Reason::Unbounded(fld.name)),
                PipeSize::Size(sz) => sz.bytes(frame.0, frame.1),
                PipeSize::Picture(p) => self.picture_bytes(p, frame),
            };
            if bytes > 0 {
                let addr = field_addr(fld, e);
                self.audit(gm, addr, bytes, fld.access == Access::Write)?;
            }
        }
        Ok(())
    }

    /// The frame size, in pixels, the `pipe`'s state of this submission
    /// gives: the largest of its surface and picture states (every "minus
    /// one" count plus one).
    fn frame(&self, pipe: Pipe) -> (u64, u64) {
        let tr = &self.tracked;
        let mut f = (0u64, 0u64);
        let mut grow = |w: u64, h: u64| f = (f.0.max(w), f.1.max(h));
        let mbs = |d: u32| (u64::from(d & 0xff) + 1, u64::from(d >> 16 & 0xff) + 1);
        // A "minus one" count present in the stored DWords.
        let at = |t: Tracked, i: usize| tr.get(t).and_then(|w| w.get(i)).copied();
        match pipe {
            Pipe::Mfx | Pipe::Vdenc => {
                for s in tr.instances(Tracked::MfxSurface) {
                    let p = Picture::mfx(s.get(2).copied(), 0, 0, 0);
                    grow(p.own.0, p.own.1);
                }
                for (t, d) in [
                    (Tracked::MfxAvcImg, 2),
                    (Tracked::MfxMpeg2Pic, 3),
                    (Tracked::MfxVc1Pic, 1),
                    (Tracked::MfxVp8Pic, 1),
                ] {
                    if let Some(v) = at(t, d) {
                        let (w, h) = mbs(v);
                        grow(16 * w, 16 * h);
                    }
                }
                if let Some(v) = at(Tracked::MfxJpegPic, 2) {
                    grow(
                        8 * (u64::from(v & 0x1fff) + 1),
                        8 * (u64::from(v >> 16 & 0x1fff) + 1),
                    );
                }
                if pipe == Pipe::Vdenc {
                    if let (Some(w), Some(h)) = (at(Tracked::VdencImg, 3), at(Tracked::VdencImg, 5))
                    {
                        grow(
                            16 * (u64::from(w >> 16) + 1),
                            16 * (u64::from(h & 0xffff) + 1),
                        );
                    }
                }
            }
            Pipe::Hcp => {
                if let (Some(d1), Some(d2)) = (at(Tracked::HcpPic, 1), at(Tracked::HcpPic, 2)) {
                    let cb = 8u64 << (d2 & 3);
                    grow(
                        cb * (u64::from(d1 & 0x3ff) + 1),
                        cb * (u64::from(d1 >> 16 & 0x3ff) + 1),
                    );
                }
                for d in [1, 7, 8, 9] {
                    if let Some(v) = at(Tracked::HcpVp9Pic, d) {
                        grow(u64::from(v & 0x3fff) + 1, u64::from(v >> 16 & 0x3fff) + 1);
                    }
                }
                // Whole 64-pixel coding tree blocks and superblocks.
                f = (f.0.div_ceil(64) * 64, f.1.div_ceil(64) * 64);
            }
            _ => {}
        }
        f
    }

    /// Bytes of a picture of `frame` size described by the surface states
    /// `p` names: the largest any of them gives.
    fn picture_bytes(&self, p: Pictures, frame: (u64, u64)) -> u64 {
        let tr = &self.tracked;
        let mfx_style = |s: &[u32]| {
            let dw = |i: usize| s.get(i).copied().unwrap_or(0);
            Picture::mfx(Some(dw(2)), dw(3), dw(4), dw(5))
        };
        let (w, h) = frame;
        match p {
            Pictures::Pipe => {
                let mfx = tr.instances(Tracked::MfxSurface).map(mfx_style);
                let hcp = tr.instances(Tracked::HcpSurface).map(|s| {
                    let dw = |i: usize| s.get(i).copied().unwrap_or(0);
                    Picture::hcp(dw(1), dw(2))
                });
                mfx.chain(hcp).map(|p| p.bytes(w, h)).max().unwrap_or(0)
            }
            Pictures::VdencSource => tr
                .get(Tracked::VdencSource)
                .map_or(0, |s| mfx_style(s).bytes(w, h)),
            Pictures::VdencReference => tr
                .get(Tracked::VdencReference)
                .map_or(0, |s| mfx_style(s).bytes(w, h)),
            Pictures::VdencDownscaled => tr
                .get(Tracked::VdencDownscaled)
                .map_or(0, |s| mfx_style(s).bytes(w.div_ceil(4), h.div_ceil(4))),
        }
    }

    /// Whether a field with condition `when` is used, for the condition
    /// on the command's own DWords `e` (group-element relative) and the
    /// depth packet; [`When::PipeMode`] fields count as used here (the
    /// consumer decides).
    #[inline(always)]
    fn used(&self, when: When, e: &[u32]) -> bool {
        let dw = |i: u8| e.get(usize::from(i)).copied().unwrap_or(0);
        let bit = |d: u8, b: u8| dw(d) >> b & 1 == 1;
        match when {
            When::Always | When::PipeMode(_) => true,
            When::Set(d, b) => bit(d, b),
            When::Clear(d, b) => !bit(d, b),
            When::NotNullSurface(d) => dw(d) >> 29 != 7,
            When::AnySet(d, mask) => dw(d) & mask != 0,
            When::HizEnabled => self.tracked.hiz_enabled(),
        }
    }

    /// Bytes of the surface `s` whose address is in the command `e`
    /// ([`Extent::Surface`]).
    #[inline(always)]
    fn surface_bytes(&self, s: Surface, e: &[u32]) -> Check<u64> {
        let depth = || match self.tracked.depth() {
            Some(Ok(Some(d))) => Ok(d),
            Some(Ok(None)) => Err(Reason::Unsupported(
                "stencil buffer enabled with a NULL depth buffer (no dimensions)",
            )),
            Some(Err(e)) => Err(Reason::Unsupported(e.why())),
            None => Err(Reason::UnseenState("3DSTATE_DEPTH_BUFFER")),
        };
        Ok(match s {
            Surface::Depth => match geom::depth(e) {
                Ok(Some(d)) => d.bytes(self.tracked.packet_samples()),
                Ok(None) => 0,
                Err(err) => return Err(Reason::Unsupported(err.why())),
            },
            Surface::Hiz => depth()?.hiz_bytes(e, self.tracked.depth_samples()),
            Surface::Stencil => depth()?.stencil_bytes(e, self.tracked.depth_samples()),
            Surface::SfcOutput => geom::sfc_output_bytes(e),
            Surface::SfcLine => geom::sfc_line_bytes(e),
        })
    }

    /// The commands with operands other than a [`Layout`]: parsed into
    /// their [`CommandRepr`], checked, audited and remapped.
    #[allow(clippy::too_many_arguments)] // reason: as `command`
    fn check_operands(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        spec: &'static CmdSpec,
        len: usize,
        loc: Location,
        level: u8,
    ) -> Check<Option<BatchAddr>> {
        let engine = self.engine;
        let c = Command::from_parts(buf.get(off..off + len).unwrap_or(&[]), spec);
        if matches!(spec.op, Op::PakInsert) {
            let n = pak_insert_descriptors(c.len(), c.dw(1)).map_err(Reason::Repr)?;
            self.pak_insert(gm, buf.get_mut(off..off + len).unwrap_or(&mut []), n)?;
            return Ok(None);
        }
        let repr = CommandRepr::parse(&c).map_err(Reason::Repr)?;
        let own_work = self.own_work;
        // In a PPGTT batch a register must also be in the hardware's
        // non-privileged set: outside it the engine would stop the batch
        // (refused now, with its reason), except on the blitter, whose
        // Gen9 hardware does not check (the set's blitter rows are i915's
        // parser's, enforced here alone).
        let in_ppgtt = self.ppgtt;
        let nonpriv = move |offset: u32, access| {
            if in_ppgtt && !nonprivileged_register(engine, offset) {
                return Err(Reason::Register {
                    offset,
                    access,
                    refusal: RegRefusal::NotNonPrivileged,
                });
            }
            Ok(())
        };
        let read = |offset: u32| {
            check_read(engine, offset, own_work).map_err(|refusal| Reason::Register {
                offset,
                access: RegAccess::Read,
                refusal,
            })?;
            nonpriv(offset, RegAccess::Read)
        };
        let write = |offset: u32, value: Option<u32>, byte_disables: bool| {
            check_write(engine, offset, value, byte_disables).map_err(|refusal| {
                Reason::Register {
                    offset,
                    access: RegAccess::Write,
                    refusal,
                }
            })?;
            nonpriv(offset, RegAccess::Write)
        };
        // Memory operands to remap (at most two; STATE_BASE_ADDRESS is
        // handled on its own).
        let (a, b) = match repr {
            CommandRepr::Plain | CommandRepr::BatchEnd => return Ok(None),
            CommandRepr::BatchStart {
                target,
                second_level,
                resource_streamer,
                predicated,
                add_offset,
            } => {
                if predicated {
                    return Err(Reason::ControlFlow(ControlFlow::PredicatedBatchStart));
                }
                if !second_level && level >= 2 {
                    return Err(Reason::ControlFlow(ControlFlow::ChainInSecondLevel));
                }
                if resource_streamer {
                    return Err(Reason::Privileged("resource streamer batch"));
                }
                if add_offset {
                    return Err(Reason::Privileged("batch start with add-offset"));
                }
                if second_level && loc == Location::Ring {
                    return Err(Reason::Privileged("second-level batch from the ring"));
                }
                if level >= MAX_DEPTH && second_level {
                    return Err(Reason::DepthExceeded);
                }
                match (target.ggtt, self.ppgtt) {
                    // A PPGTT batch: from the ring of a PPGTT context, or
                    // chained or called from a PPGTT batch. Read through
                    // the context's shadow PPGTT as the engine would, run
                    // from the reserved window (where no guest batch is).
                    (false, _) if gm.ppgtt().is_some() && (self.ppgtt || loc == Location::Ring) => {
                        if in_window(target.addr, 4) {
                            return Err(Reason::NonPrivileged(NonPrivileged::WindowBatch));
                        }
                        let va = PpgttAddr::new(target.addr).ok_or(Reason::PpgttMemory {
                            addr: target.addr,
                            fault: PpgttFault::NotPresent,
                        })?;
                        return Ok(Some(BatchAddr::Ppgtt(va)));
                    }
                    // In a GGTT context, or from a GGTT batch.
                    (false, _) => return Err(Reason::Ppgtt),
                    (true, true) => return Err(Reason::NonPrivileged(NonPrivileged::GgttBatch)),
                    (true, false) => {}
                }
                // The target must translate; it is rewritten to a shadow
                // batch by the caller, and the batch is read through
                // `read_guest`, which checks every chunk.
                self.audit_ggtt(gm, target.addr, 4, false)?;
                let fault = memory_fault(target.addr, 4);
                let t = GuestGm::new(target.addr).map_err(|_| fault(GmFault::OutOfSlices))?;
                return Ok(Some(BatchAddr::Ggtt(t)));
            }
            CommandRepr::CondBatchEnd { mem } => {
                if loc == Location::Ring {
                    return Err(Reason::ControlFlow(ControlFlow::CondBatchEndInRing));
                }
                // Whatever it compares, the batch may end here (see
                // `Exits`); the operand is audited below, and the exit is
                // recorded only once the command is accepted.
                let r = self.mem_operands(gm, buf, off, mem, None);
                if r.is_ok() {
                    self.exit_early(level);
                }
                return r.map(|()| None);
            }
            CommandRepr::SetPredicate { enable } => {
                if enable != 0 {
                    return Err(Reason::ControlFlow(ControlFlow::SetPredicate));
                }
                return Ok(None);
            }
            CommandRepr::StoreDataImm { mem } | CommandRepr::Atomic { mem } => (mem, None),
            CommandRepr::CopyMemMem { dst, src } => (dst, Some(src)),
            CommandRepr::StoreRegMem { reg, mem } => {
                read(reg)?;
                (mem, None)
            }
            CommandRepr::LoadRegMem { reg, mem } => {
                // The value comes from memory: unknown here.
                write(reg, None, false)?;
                (mem, None)
            }
            CommandRepr::LoadRegImm {
                pairs,
                byte_disables,
            } => {
                for p in pairs.chunks_exact(2) {
                    write(p[0] & 0x007f_fffc, Some(p[1]), byte_disables != 0)?;
                }
                return Ok(None);
            }
            CommandRepr::LoadRegReg { src, dst } => {
                read(src)?;
                write(dst, None, false)?;
                return Ok(None);
            }
            CommandRepr::FlushDw {
                post_sync,
                store_index,
                mem,
            } => {
                if post_sync == PostSync::None {
                    return Ok(None);
                }
                if store_index {
                    return Err(Reason::Privileged("hardware status page write"));
                }
                (mem, None)
            }
            CommandRepr::PipeControl {
                post_sync,
                store_index,
                lri_post_sync,
                mem,
            } => {
                if lri_post_sync {
                    return Err(Reason::Privileged("PIPE_CONTROL register post-sync"));
                }
                if post_sync == PostSync::None {
                    return Ok(None);
                }
                if store_index {
                    return Err(Reason::Privileged("hardware status page write"));
                }
                (mem, None)
            }
            CommandRepr::SemaphoreWait { register_poll, mem } => {
                if register_poll {
                    return Err(Reason::Privileged("semaphore register poll"));
                }
                (mem, None)
            }
            CommandRepr::StateBaseAddress(view) => {
                let sba = view.bases();
                let words = buf.get_mut(off..off + len).unwrap_or(&mut []);
                self.state_base_address(gm, &sba, words)?;
                return Ok(None);
            }
            // Blits name no address space: the context's PPGTT in a
            // PPGTT context.
            CommandRepr::Blit { dst, src } if self.ppgtt_space => (
                MemOperand { ggtt: false, ..dst },
                src.map(|m| MemOperand { ggtt: false, ..m }),
            ),
            CommandRepr::Blit { dst, src } => (dst, src),
            CommandRepr::BltSetup {
                dst,
                pitch,
                tiled,
                bpp,
                pattern,
            } => {
                // The destination's extent comes from each blit that uses
                // it; here it must translate (one byte) to be remapped.
                let host = self.audit(gm, dst.addr, 1, false)?;
                let pat = match pattern {
                    Some(p) => Some((p, self.audit(gm, p.addr, p.size, false)?)),
                    None => None,
                };
                patch(buf, off + dst.dword, 0, High::Bits32, host);
                if let Some((p, h)) = pat {
                    patch(buf, off + p.dword, 0, High::Bits32, h);
                }
                self.state_mut().blt = Some(BltSetup {
                    base: dst.addr,
                    pitch,
                    tiled,
                    bpp,
                });
                return Ok(None);
            }
            CommandRepr::BltSetupDraw { rect } => {
                let s = self
                    .state()
                    .blt
                    .ok_or(Reason::UnseenState("blitter setup (XY_SETUP_BLT)"))?;
                let bytes =
                    setup_draw_bytes(s.pitch, s.tiled, s.bpp, rect).map_err(Reason::Repr)?;
                if bytes > 0 {
                    self.audit(gm, s.base, bytes, true)?;
                }
                return Ok(None);
            }
            CommandRepr::ShapedBlit {
                dst,
                rect,
                src,
                pattern,
            } => {
                // Every operand is checked before any is rewritten.
                let dst_host = match dst {
                    Some(d) => Some((d, self.audit(gm, d.addr, d.size.max(1), true)?)),
                    None => {
                        let s = self
                            .state()
                            .blt
                            .ok_or(Reason::UnseenState("blitter setup (XY_SETUP_BLT)"))?;
                        let bytes = setup_draw_bytes(s.pitch, s.tiled, s.bpp, rect)
                            .map_err(Reason::Repr)?;
                        if bytes > 0 {
                            self.audit(gm, s.base, bytes, true)?;
                        }
                        None
                    }
                };
                let mut reads = [None; 2];
                for (slot, m) in reads.iter_mut().zip([src, pattern]) {
                    if let Some(m) = m {
                        *slot = Some((m, self.audit(gm, m.addr, m.size.max(1), false)?));
                    }
                }
                for (m, host) in dst_host.into_iter().chain(reads.into_iter().flatten()) {
                    patch(buf, off + m.dword, m.shift, High::Bits32, host);
                }
                return Ok(None);
            }
            CommandRepr::Other(Op::Unsupported(r)) => return Err(Reason::Unsupported(r.why())),
            CommandRepr::Other(Op::Privileged) => {
                return Err(Reason::Privileged("command reserved to the monitor"))
            }
            CommandRepr::Other(Op::SemaphoreSignal) => {
                return Err(Reason::Privileged("cross-engine semaphore signal"))
            }
            CommandRepr::Other(_) => return Err(Reason::Unaudited),
        };
        self.mem_operands(gm, buf, off, a, b).map(|()| None)
    }

    /// Audits and remaps the memory operands `a` and `b` of the command at
    /// `off` of `buf`, both checked before either is rewritten: in a GGTT
    /// context GGTT only; in a PPGTT batch PPGTT only (recorded, not
    /// remapped); elsewhere in a PPGTT context each in the space its GGTT
    /// bit names.
    fn mem_operands(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        a: MemOperand,
        b: Option<MemOperand>,
    ) -> Check<()> {
        if self.ppgtt && (a.ggtt || b.is_some_and(|m| m.ggtt)) {
            return Err(Reason::NonPrivileged(NonPrivileged::GgttAccess));
        }
        if !self.ppgtt_space && (!a.ggtt || b.is_some_and(|m| !m.ggtt)) {
            return Err(Reason::Ppgtt);
        }
        let ha = self.mem_operand(gm, a)?;
        let hb = match b {
            Some(m) => Some(self.mem_operand(gm, m)?),
            None => None,
        };
        patch(buf, off + a.dword, a.shift, High::Bits32, ha);
        if let (Some(m), Some(h)) = (b, hb) {
            patch(buf, off + m.dword, m.shift, High::Bits32, h);
        }
        Ok(())
    }

    /// One operand of [`Self::mem_operands`], in the space it names.
    #[inline(always)]
    fn mem_operand(&mut self, gm: &dyn GmSpace, m: MemOperand) -> Check<u64> {
        if m.ggtt {
            self.audit_ggtt(gm, m.addr, m.size.max(1), m.write)
        } else {
            self.audit(gm, m.addr, m.size.max(1), m.write)
        }
    }

    /// HCP_PAK_INSERT_OBJECT `w` with `n` indirect payload descriptors
    /// (see [`pak_insert_descriptors`]): each base address (descriptor
    /// DW1-2) is audited over the payload's size in bytes (descriptor DW0
    /// counts bits) as a read and remapped, and must be linear (descriptor
    /// DW3: no compression, no tiled-resource mode); a zero-size payload is
    /// not read and left alone.
    fn pak_insert(&mut self, gm: &dyn GmSpace, w: &mut [u32], n: usize) -> Check<()> {
        for i in 0..n {
            let at = PAK_PAYLOAD + i * PAK_DESCRIPTOR;
            let dw = |k: usize| w.get(at + k).copied().unwrap_or(0);
            let size = pak_payload_bytes(dw(0));
            if size == 0 {
                continue;
            }
            pak_payload_linear(dw(3)).map_err(Reason::Repr)?;
            let addr = u64::from(dw(2)) << 32 | u64::from(dw(1));
            let host = self.audit(gm, addr, size, false)?;
            patch(w, at + 1, 0, High::Bits32, host);
        }
        Ok(())
    }

    /// STATE_BASE_ADDRESS: every base the command modifies is remapped (it
    /// must lie in a slice even with size 0, so that a later size change
    /// cannot expose an unremapped base); every base whose base or size
    /// changes is audited over its effective size. A size change without
    /// the base, or a base change without a size, set in this submission is
    /// rejected: the other half is context state the scanner has not seen.
    fn state_base_address(
        &mut self,
        gm: &dyn GmSpace,
        sba: &StateBaseAddress,
        words: &mut [u32],
    ) -> Check<()> {
        if self.ppgtt_space {
            // A PPGTT context's bases are its PPGTT's addresses (48-bit,
            // anywhere): neither audited nor remapped, and kept nowhere
            // (only audits read them). What a written base lets the
            // engine write is recorded over the bound this command sets,
            // or, without one, left untracked.
            self.effects.touched_state = true;
            for b in sba
                .bases
                .iter()
                .filter(|b| b.mem.write && (b.modify || b.size_modify))
            {
                match b.bytes.filter(|_| b.size_modify) {
                    Some(size) => self.record_ppgtt(gm, b.mem.addr, size, size > 0),
                    None => self.writes.untracked = true,
                }
            }
            return Ok(());
        }
        for (i, b) in sba.bases.iter().enumerate() {
            if b.modify {
                let fault = memory_fault(b.mem.addr, 1);
                let base = GuestGm::new(b.mem.addr).map_err(|_| fault(GmFault::OutOfSlices))?;
                if let Some(slot) = self.state_mut().sba.base.get_mut(i) {
                    *slot = Some(base);
                }
            }
            if b.size_modify {
                if let Some(slot) = self.state_mut().sba.size.get_mut(i) {
                    *slot = b.bytes;
                }
            }
            if !b.modify && !b.size_modify {
                continue;
            }
            let base =
                self.state()
                    .sba
                    .base
                    .get(i)
                    .copied()
                    .flatten()
                    .ok_or(Reason::UnseenState(
                        "STATE_BASE_ADDRESS size without its base",
                    ))?;
            let size =
                match b.bytes {
                    // No size field: the hardware does not bound the base.
                    None => self.rest_of_slice(gm, base.raw())?,
                    Some(_) => self.state().sba.size.get(i).copied().flatten().ok_or(
                        Reason::UnseenState("STATE_BASE_ADDRESS base without its size"),
                    )?,
                };
            // Size 0: no access is in bounds; the base still has to
            // translate (1 byte).
            let host = self.audit(gm, base.raw(), size.max(1), b.mem.write && size > 0)?;
            if b.modify {
                patch(words, b.mem.dword, b.mem.shift, High::Bits32, host);
            }
        }
        Ok(())
    }

    /// [`Self::layout`], with the most frequent layouts inlined against
    /// their static descriptions (so their field rules fold into straight
    /// code); the others go through the generic walk.
    #[inline(always)]
    fn layout_dispatch(
        &mut self,
        gm: &dyn GmSpace,
        layout: &'static Layout,
        w: &mut [u32],
    ) -> Check<()> {
        use super::operands as o;
        macro_rules! hot {
            ($($l:ident),*) => {
                $(if core::ptr::eq(layout, &o::$l) {
                    return self.layout(gm, &o::$l, w);
                })*
            };
        }
        hot!(
            VERTEX_BUFFERS,
            INDEX_BUFFER,
            CONSTANT,
            DEPTH_BUFFER,
            MFX_IND_OBJ_BASE_ADDR,
            MFX_BSP_BUF_BASE_ADDR
        );
        self.layout_generic(gm, layout, w)
    }

    #[inline(never)]
    fn layout_generic(&mut self, gm: &dyn GmSpace, layout: &Layout, w: &mut [u32]) -> Check<()> {
        self.layout(gm, layout, w)
    }

    /// Audits and remaps the fields of `layout` in the command `w`.
    #[inline(always)]
    fn layout(&mut self, gm: &dyn GmSpace, layout: &Layout, w: &mut [u32]) -> Check<()> {
        for fld in layout.fields {
            self.field(gm, fld, w, 0)?;
        }
        if let Some((g, fields)) = layout.group {
            let start = usize::from(g.start);
            let stride = usize::from(g.stride);
            let body = w.len().saturating_sub(start);
            let count = if g.count == 0 {
                if body % stride != 0 {
                    return Err(Reason::Repr(ReprError::PartialGroup));
                }
                body / stride
            } else {
                usize::from(g.count)
            };
            for e in 0..count {
                for fld in fields {
                    self.field(gm, fld, w, start + e * stride)?;
                }
            }
        }
        Ok(())
    }

    /// One field at element base `eb` (0 for fixed fields). Fields past
    /// the command's end are absent.
    #[inline(always)]
    fn field(&mut self, gm: &dyn GmSpace, fld: &AddrField, w: &mut [u32], eb: usize) -> Check<()> {
        let Some(e) = w.get_mut(eb..) else {
            return Ok(());
        };
        let lo_at = usize::from(fld.dword);
        let hi_len = usize::from(fld.high != High::None);
        if lo_at + hi_len >= e.len() {
            return Ok(());
        }
        if !self.used(fld.when, e) {
            return Ok(());
        }
        let dw = |e: &[u32], i: u8| e.get(usize::from(i)).copied().unwrap_or(0);
        if let Some((d, b)) = fld.must {
            if dw(e, d) >> b & 1 == 0 {
                return Err(Reason::UnseenState(fld.name));
            }
        }
        let addr = field_addr(fld, e);
        // Whether the range audited here is what the engine may write.
        let mut written = fld.access == Access::Write;
        let size = match fld.extent {
            Extent::Bytes(n) => u64::from(n),
            Extent::Field {
                dword,
                shift,
                bits,
                unit,
                plus,
            } => {
                let mask = if bits >= 32 {
                    u32::MAX
                } else {
                    (1 << bits) - 1
                };
                let v = u64::from(dw(e, dword) >> shift & mask);
                (v + u64::from(plus)) * u64::from(unit)
            }
            Extent::Pages { dword } => match u64::from(dw(e, dword) >> 12) {
                0 => {
                    // No valid data: nothing is accessed; the base must
                    // translate so that it is remapped.
                    written = false;
                    1
                }
                pages => pages * PAGE,
            },
            Extent::UpperBound { dword } => {
                let bound = u64::from(dw(e, dword + 1)) << 32 | u64::from(dw(e, dword));
                if bound == 0 {
                    // The hardware does not check: the base must translate,
                    // and the commands that use the object refuse it.
                    written = false;
                    1
                } else if bound <= addr {
                    return Err(Reason::BadBound { base: addr, bound });
                } else {
                    bound - addr
                }
            }
            Extent::Surface(s) => self.surface_bytes(s, e)?,
            Extent::Pipe(_) => {
                // Sized when consumed; here it must translate (one byte).
                written = false;
                1
            }
        };
        if size == 0 {
            // Not accessed (zero read length, empty buffer).
            return Ok(());
        }
        let host = match self.audit(gm, addr, size, written) {
            Ok(h) => h,
            // Used only in a mode the consumer checks: left alone, and
            // refused by it if the mode is on.
            Err(_) if matches!(fld.when, When::PipeMode(_)) => return Ok(()),
            Err(r) => return Err(r),
        };
        patch(e, lo_at, u32::from(fld.shift), fld.high, host);
        if let Extent::UpperBound { dword } = fld.extent {
            let b = usize::from(dword);
            if e.get(b).is_some_and(|&v| v != 0) || e.get(b + 1).is_some_and(|&v| v != 0) {
                patch(e, b, 0, High::Bits32, host + size);
            }
        }
        Ok(())
    }
}

/// The guest address of field `fld` in the command (or group element) `e`.
#[inline(always)]
fn field_addr(fld: &AddrField, e: &[u32]) -> u64 {
    let dw = |i: u8| e.get(usize::from(i)).copied().unwrap_or(0);
    let shift = u32::from(fld.shift);
    let lo = u64::from(dw(fld.dword) & !((1u32 << shift) - 1));
    let hi = match fld.high {
        High::None => 0,
        High::Bits16 => u64::from(dw(fld.dword + 1) & 0xffff),
        High::Bits32 => u64::from(dw(fld.dword + 1)),
    };
    hi << 32 | lo
}

#[cfg(test)]
mod tracked_state_tests {
    use super::*;

    // `TrackedState::join` itself is tested in `super::super::tracked`.

    /// The exits: a second-level exit reaches both continuations, a
    /// first-level one only the ring's; each is joined in once, when its
    /// batch returns.
    #[test]
    fn exits_join_where_they_continue() {
        let mut st = State::new(Engine::Blitter, false);
        let setup = |base| {
            Some(BltSetup {
                base,
                pitch: 64,
                tiled: false,
                bpp: 4,
            })
        };
        st.tracked.blt = setup(0x1000);
        st.exit_early(2);
        assert!(st.effects.exits_early);
        assert_eq!(st.exits.at[0].as_ref().map(|s| s.blt), Some(setup(0x1000)));
        assert_eq!(st.exits.at[1].as_ref().map(|s| s.blt), Some(setup(0x1000)));
        // The callee then sets another destination and returns: unknown.
        st.tracked.blt = setup(0x2000);
        st.returned(2);
        assert_eq!(st.tracked.blt, None);
        assert!(st.exits.at[1].is_none());
        // Level 1 sets it again; the ring's continuation still meets the
        // second-level exit.
        st.tracked.blt = setup(0x3000);
        st.returned(1);
        assert_eq!(st.tracked.blt, None);
        // A first-level exit with the state that then holds at the end
        // changes nothing.
        st.tracked.blt = setup(0x3000);
        st.exit_early(1);
        assert!(st.exits.at[1].is_none());
        st.returned(1);
        assert_eq!(st.tracked.blt, setup(0x3000));
        // No exit: nothing to join.
        st.returned(1);
        assert_eq!(st.tracked.blt, setup(0x3000));
    }

    /// A reused callee that may exit early adds its entry state (the state
    /// at its call) to the ring's continuation at every call.
    #[test]
    fn a_reused_callee_exits_with_its_entry_state() {
        let mut st = State::new(Engine::Blitter, false);
        let call = Call {
            target: BatchAddr::Ggtt(GUEST_ZERO),
            slot: 1,
            effects: Effects {
                touched_state: false,
                exits_early: true,
            },
        };
        let setup = |base| {
            Some(BltSetup {
                base,
                pitch: 64,
                tiled: false,
                bpp: 4,
            })
        };
        st.tracked.blt = setup(0x1000);
        st.call_reused(call, 2);
        assert_eq!(st.tracked.blt, setup(0x1000));
        st.tracked.blt = setup(0x2000);
        st.returned(1);
        assert_eq!(st.tracked.blt, None);
        // Without exits a reused call changes nothing.
        st.tracked.blt = setup(0x1000);
        let quiet = Call {
            effects: Effects::default(),
            ..call
        };
        st.call_reused(quiet, 2);
        st.tracked.blt = setup(0x2000);
        st.returned(1);
        assert_eq!(st.tracked.blt, setup(0x2000));
    }

    /// A join that opens the depth packet (an exit with it half set) makes
    /// the fast loop leave draws to the full path, which refuses them.
    #[test]
    fn a_join_that_opens_the_packet_checks_the_writers() {
        let mut st = State::new(Engine::Render, false);
        st.tracked.record(Tracked::DepthBuffer, &[0; 8]);
        st.tracked.open_packet(0);
        st.exit_early(1);
        st.tracked = TrackedState::UNKNOWN;
        st.refresh_writers_checked();
        assert!(!st.writers_checked);
        st.returned(1);
        assert!(st.tracked.depth_open());
        assert!(st.writers_checked);
    }
}

#[cfg(test)]
mod fast_blit_tests {
    use super::*;
    use crate::scan::table::lookup;

    /// Two guest slices, each translated linearly to its own host base.
    struct Slices;

    const SLICES: [(u64, u64, u64); 2] = [
        (0x0100_0000, 0x0040_0000, 0x2000_0000),
        (0x8000_0000, 0x0100_0000, 0x3100_0000),
    ];

    impl GmSpace for Slices {
        fn read_guest(&self, _at: GuestGm, _out: &mut [u32]) -> Result<(), GmFault> {
            Err(GmFault::Unmapped)
        }
        fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
            let (a, e) = (range.base().raw(), range.end_raw());
            for (base, len, host) in SLICES {
                if a >= base && e <= base + len {
                    return HostGm::new(host + (a - base)).map_err(|_| GmFault::Unmapped);
                }
            }
            Err(GmFault::OutOfSlices)
        }
        fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
            for (base, len, _) in SLICES {
                if at.raw() >= base && at.raw() < base + len {
                    let b = GuestGm::new(base).map_err(|_| GmFault::OutOfSlices)?;
                    return GuestGmRange::new(b, len).map_err(|_| GmFault::OutOfSlices);
                }
            }
            Err(GmFault::OutOfSlices)
        }
    }

    fn state(gm: &Slices, learned: bool) -> State {
        let mut st = State::new(Engine::Blitter, false);
        if learned {
            for (base, _, _) in SLICES {
                if let Ok(b) = GuestGm::new(base) {
                    st.learn(gm, b);
                }
            }
        }
        st
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// A 16-bit coordinate or pitch, mostly small.
        fn small(&mut self) -> u32 {
            match self.below(4) {
                0 => self.below(0x1_0000) as u32,
                1 => self.below(64) as u32,
                _ => self.below(2048) as u32,
            }
        }
        /// A guest address near, inside or outside a slice.
        fn addr(&mut self) -> u64 {
            let (base, len, _) = SLICES[self.below(2) as usize];
            match self.below(8) {
                0 => self.next(),
                1 => self.next() & 0xffff_ffff,
                2 => base + len - self.below(0x1_0000),
                3 => base.wrapping_sub(self.below(64)),
                _ => base + self.below(len),
            }
        }
    }

    /// The fast blit and the full path agree on random XY_COLOR_BLT,
    /// XY_SRC_COPY_BLT and XY_FAST_COPY_BLT: whenever the fast path
    /// decides, it accepts or rejects as the full path does, rewrites the
    /// same words and records the same write pages; when it does not,
    /// it changes nothing.
    #[test]
    fn fast_blit_agrees_with_full_path() {
        let gm = Slices;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut taken, mut accepted, mut rejected) = (0u32, 0u32, 0u32);
        for n in 0..200_000u32 {
            let (opcode, len) = match n % 3 {
                0 => (0x50u32, 7usize),
                1 => (0x53, 10),
                _ => (0x42, 10),
            };
            let mut w = [0u32; 10];
            let flags = (rng.next() as u32) & 0x003f_f800;
            w[0] = 2 << 29 | opcode << 22 | flags | (len as u32 - 2);
            let rop = rng.below(256) as u32;
            let depth = rng.below(4) as u32;
            let pitch = rng.small() | if rng.below(16) == 0 { 0x8000 } else { 0 };
            w[1] = depth << 24 | rop << 16 | (pitch & 0xffff);
            w[2] = rng.small() << 16 | rng.small();
            w[3] = rng.small() << 16 | rng.small();
            if rng.below(3) != 0 {
                // Mostly a proper rectangle.
                let (x1, y1) = (rng.below(512) as u32, rng.below(512) as u32);
                w[2] = y1 << 16 | x1;
                w[3] = (y1 + rng.below(300) as u32) << 16 | (x1 + rng.below(300) as u32);
            }
            let d = rng.addr();
            w[4] = d as u32;
            w[5] = (d >> 32) as u32;
            if len == 10 {
                w[6] = rng.small() << 16 | rng.small();
                w[7] = rng.small() | if rng.below(16) == 0 { 0x8000 } else { 0 };
                let s = rng.addr();
                w[8] = s as u32;
                w[9] = (s >> 32) as u32;
            }
            let spec = lookup(Engine::Blitter, w[0]).expect("a blit");
            let learned = rng.below(8) != 0;
            let mut fast_st = state(&gm, learned);
            let mut full_st = state(&gm, learned);
            let mut fw = w;
            let mut sw = w;
            let fast = fast_st.fast_audit(&gm, spec.op, &mut fw[..len]);
            let full = full_st.audited(&gm, &mut sw[..len], 0, spec, len, Location::Ring, 0);
            match fast {
                None => assert_eq!(fw, w, "fast path changed an undecided blit {w:08x?}"),
                Some(r) => {
                    taken += 1;
                    assert_eq!(r.is_ok(), full.is_ok(), "{w:08x?}: {r:?} vs {full:?}");
                    if let (Err(a), Err(b)) = (&r, &full) {
                        assert_eq!(a, &b.reason, "{w:08x?}");
                    }
                    assert_eq!(fw, sw, "rewritten words differ for {w:08x?}");
                    assert_eq!(fast_st.writes, full_st.writes, "{w:08x?}");
                }
            }
            match full {
                Ok(_) => accepted += 1,
                Err(_) => rejected += 1,
            }
        }
        // The sample exercises both paths and both outcomes.
        assert!(taken > 20_000, "fast path taken {taken} times");
        assert!(
            accepted > 20_000 && rejected > 20_000,
            "{accepted} / {rejected}"
        );
    }
}

#[cfg(test)]
mod write_set_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Against a plain set of pages: a tracked set lists exactly the
        /// pages written, as disjoint, non-touching runs within capacity;
        /// whatever it cannot hold makes it untracked, never lost.
        #[test]
        fn lists_exactly_what_was_written_or_is_untracked(
            writes in prop::collection::vec((0u64..400, 1u64..40), 0..60),
            scale in prop::sample::select(vec![1u64, 8]),
        ) {
            let mut set = WriteSet::EMPTY;
            let mut model = BTreeSet::new();
            let mut most_runs = 0;
            for (page, len) in writes {
                let (page, len) = (page * scale, len * scale);
                // Byte ranges starting and ending mid-page.
                set.add_raw(page * PAGE + 8, (page + len) * PAGE - 8);
                model.extend(page..page + len);
                let runs = model
                    .iter()
                    .zip(model.iter().skip(1))
                    .filter(|(a, b)| **b > **a + 1 + RUN_JOIN_GAP)
                    .count()
                    + 1;
                most_runs = most_runs.max(runs);
            }
            if set.untracked {
                // Only when the pages or runs really did not fit.
                prop_assert!(
                    model.len() as u64 + RUN_JOIN_GAP * MAX_WRITE_RANGES as u64 > MAX_WRITE_PAGES
                        || most_runs > MAX_WRITE_RANGES
                );
                return Ok(());
            }
            let listed: BTreeSet<u64> = set.pages().collect();
            prop_assert!(listed.is_superset(&model));
            // What it adds are gaps of at most RUN_JOIN_GAP pages between
            // written pages.
            let mut gap = 0;
            for p in set.pages() {
                if model.contains(&p) {
                    gap = 0;
                } else {
                    gap += 1;
                    prop_assert!(gap <= RUN_JOIN_GAP, "gap at {}", p);
                    prop_assert!(model.range(p..).next().is_some_and(|&n| n <= p + RUN_JOIN_GAP));
                }
            }
            prop_assert_eq!(set.pages, listed.len() as u64);
            prop_assert!(set.pages <= MAX_WRITE_PAGES);
            let runs = set.runs();
            for (i, a) in runs.iter().enumerate() {
                prop_assert!(a.first <= a.last);
                for b in &runs[i + 1..] {
                    prop_assert!(!a.joins(*b), "{:?} {:?}", a, b);
                }
            }
        }
    }

    #[test]
    fn a_framebuffer_blit_is_one_run_and_too_much_is_untracked() {
        let mut set = WriteSet::EMPTY;
        // 1920 x 1080 x 4 bytes: 2025 pages, one run.
        set.add_raw(0x10_0000, 0x10_0000 + 1920 * 1080 * 4);
        assert_eq!(set.runs().len(), 1);
        assert!(!set.untracked);
        // A fence written again and again: one more run, once.
        for _ in 0..3 {
            set.add_raw(0x4000_0000, 0x4000_0008);
        }
        assert_eq!(set.runs().len(), 2);
        // Two more framebuffers: past MAX_WRITE_PAGES, so untracked.
        set.add_raw(0x2000_0000, 0x2000_0000 + 2 * 1920 * 1080 * 4);
        assert!(set.untracked);
        // Pages a few apart are one run; thirty-three far apart do not fit
        // 32 runs.
        let mut set = WriteSet::EMPTY;
        for i in 0..4 {
            set.add_raw(i * 8 * PAGE, i * 8 * PAGE + 4);
        }
        assert_eq!(set.runs(), [PageRun { first: 0, last: 24 }]);
        let mut set = WriteSet::EMPTY;
        for i in 0..MAX_WRITE_RANGES as u64 + 1 {
            set.add_raw(i * 64 * PAGE, i * 64 * PAGE + 4);
        }
        assert!(set.untracked);
    }
}
