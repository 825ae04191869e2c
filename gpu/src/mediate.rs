//! The command scanner in its seat: [`ScanGate`] is the
//! [`SubmissionGate`] every vGPU submission passes (ARCHITECTURE.md
//! "Command scanner", "Submission path").
//!
//! When the scheduler dispatches a vGPU's queued span of a guest ring
//! ([`crate::sched`]), the vGPU hands it to the gate. The gate lets the
//! engine's [`Shadow`] copy and scan it through the vGPU's one translation
//! ([`GmTranslation`]), then writes the audited, remapped shadow ring and
//! shadow batches into the monitor's slice of graphics memory (where the
//! kernel mapped them) and returns the [`Submission`] of the shadow ring.
//! The guest's own ring and batches never reach a backend, so rewriting
//! them after the dispatch changes nothing. In a PPGTT context the scan
//! reads PPGTT batches through the context's shadow PPGTT (the same walk
//! as the engine's, over the memory the backend reaches), and the gate
//! writes their shadows into the vGPU's own shadow batch frames, which
//! its shadow PPGTT maps read-only at the reserved window
//! ([`crate::ppgtt::WINDOW_BASE`]; see [`crate::scan::scanner`], "PPGTT
//! batches").
//!
//! One shadow per engine, shared by every vGPU: a dispatch happens only on
//! an idle engine (one submission per engine at a time, and
//! [`crate::vgpu::Vgpu`] refuses to dispatch onto a busy one), so the
//! shadow the gate rewrites is never one the engine may still read. Work
//! submitted while the engine runs another vGPU's (or its own) waits in its
//! vGPU's queue unscanned, not in a shadow of its own.
//!
//! The gate keeps what the migration code needs from each accepted
//! submission (the guest pages it may write), per vGPU until taken
//! ([`ScanGate::take_write_set`]), since submissions of several vGPUs
//! interleave, and the full [`ScanError`] of the last rejection, for the
//! monitor's log.

use core::cell::RefCell;

use crate::addr::{GuestGm, GuestGmRange, HostGm, HostGmRange, PhysFrame, PAGE_SIZE};
use crate::backend::{Backend, ContextId, Submission};
use crate::engine::Engine;
use crate::partition::GmTranslation;
use crate::ppgtt::{walk, window_batch_page, HostTables, PpgttAddr, WalkError};
use crate::scan::scanner::{
    GmFault, GmSpace, PpgttFault, PpgttSpace, Reason, RingState, ScanError, Shadow, WriteSet,
    BATCH_DWORDS, BATCH_POOL, RING_DWORDS,
};
use crate::vgpu::{GateRejection, RingSubmission, SubmissionGate};

/// Room before the shadow ring's commands for the monitor's prologue (one
/// page keeps the ring page aligned and the tail below the ring's end even
/// when a submission fills the whole shadow ring).
const PROLOGUE_BYTES: u64 = 4096;
/// Bytes of the shadow ring's GM area: prologue room, then the commands.
pub const SHADOW_RING_BYTES: u64 = PROLOGUE_BYTES + RING_DWORDS as u64 * 4;
/// Bytes of one shadow batch's GM area.
pub const SHADOW_BATCH_BYTES: u64 = BATCH_DWORDS as u64 * 4;
/// GM bytes one engine's shadow needs (ring, then the batch pool).
pub const SHADOW_BYTES_PER_ENGINE: u64 = SHADOW_RING_BYTES + BATCH_POOL as u64 * SHADOW_BATCH_BYTES;

/// The guest's graphics memory as the scanner sees it: reads go through the
/// vGPU's translation and the backend's GGTT, so they see exactly what the
/// engine would.
struct GuestSpace<'a> {
    translation: &'a GmTranslation,
    backend: RefCell<&'a mut dyn Backend>,
}

/// A PPGTT context's address space as its engine reaches it: the walk of
/// the shadow tables (the same [`walk`] `SimGpu` makes), over the memory
/// the backend reaches.
struct ShadowSpace<'s, 'a> {
    space: &'s GuestSpace<'a>,
    root: PhysFrame,
}

impl PpgttSpace for ShadowSpace<'_, '_> {
    fn frame_of(&self, va: PpgttAddr, write: bool) -> Result<PhysFrame, PpgttFault> {
        let mut backend = self.space.backend.borrow_mut();
        let tables = HostTables {
            mem: &*backend.phys_mem(),
        };
        let t = walk(&tables, self.root.number(), va).map_err(|e| match e {
            WalkError::NotPresent { .. } => PpgttFault::NotPresent,
            WalkError::Read { .. } => PpgttFault::Unreadable,
        })?;
        if write && !t.writable {
            return Err(PpgttFault::ReadOnly);
        }
        PhysFrame::new(t.page).map_err(|_| PpgttFault::Unreadable)
    }

    fn read_frame(&self, frame: PhysFrame, offset: u64, out: &mut [u32]) -> Result<(), PpgttFault> {
        let mut backend = self.space.backend.borrow_mut();
        let mem = backend.phys_mem();
        let mut bytes = [0u8; 256];
        for (i, chunk) in out.chunks_mut(bytes.len() / 4).enumerate() {
            let at = offset + (i * bytes.len()) as u64;
            let buf = &mut bytes[..chunk.len() * 4];
            if at + buf.len() as u64 > PAGE_SIZE {
                return Err(PpgttFault::Unreadable);
            }
            mem.read(frame.at(at), buf)
                .map_err(|_| PpgttFault::Unreadable)?;
            for (word, raw) in chunk.iter_mut().zip(buf.chunks_exact(4)) {
                *word = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            }
        }
        Ok(())
    }
}

impl GmSpace for GuestSpace<'_> {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        let len = out.len() as u64 * 4;
        let range = GuestGmRange::new(at, len.max(1)).map_err(|_| GmFault::OutOfSlices)?;
        let host = self
            .translation
            .g2h(range)
            .map_err(|_| GmFault::OutOfSlices)?;
        let mut backend = self.backend.borrow_mut();
        let mut bytes = [0u8; 256];
        for (i, chunk) in out.chunks_mut(bytes.len() / 4).enumerate() {
            let at = host
                .base()
                .checked_add(i as u64 * bytes.len() as u64)
                .ok_or(GmFault::OutOfSlices)?;
            let buf = &mut bytes[..chunk.len() * 4];
            backend.read_gm(at, buf).map_err(|_| GmFault::Unmapped)?;
            for (word, raw) in chunk.iter_mut().zip(buf.chunks_exact(4)) {
                *word = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            }
        }
        Ok(())
    }

    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        self.translation
            .g2h(range)
            .map(|host| host.base())
            .map_err(|_| GmFault::OutOfSlices)
    }

    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        let view = self.translation.guest_view();
        [view.aperture, view.hidden]
            .into_iter()
            .find(|slice| slice.contains(at))
            .ok_or(GmFault::OutOfSlices)
    }
}

/// [`GuestSpace`] with the PPGTT of its context: built per scan, so that
/// the PPGTT view borrows the space it reads through.
struct ContextSpace<'s, 'a> {
    space: &'s GuestSpace<'a>,
    shadow: Option<ShadowSpace<'s, 'a>>,
}

impl GmSpace for ContextSpace<'_, '_> {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        self.space.read_guest(at, out)
    }
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        self.space.g2h(range)
    }
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        self.space.slice_of(at)
    }
    fn ppgtt(&self) -> Option<&dyn PpgttSpace> {
        self.shadow.as_ref().map(|s| s as &dyn PpgttSpace)
    }
}

/// Writes a PPGTT shadow batch's image into the vGPU's shadow batch
/// frames for `engine`'s `slot` (what the reserved window maps there).
fn write_window_batch(
    backend: &mut dyn Backend,
    window: PhysFrame,
    engine: Engine,
    slot: usize,
    words: &[u32],
) -> Result<(), ()> {
    let first = window.number() + window_batch_page(engine, slot);
    let mut bytes = [0u8; 256];
    for (i, chunk) in words.chunks(bytes.len() / 4).enumerate() {
        let at = (i * bytes.len()) as u64;
        let frame = PhysFrame::new(first + at / PAGE_SIZE).map_err(|_| ())?;
        for (raw, word) in bytes.chunks_exact_mut(4).zip(chunk) {
            raw.copy_from_slice(&word.to_le_bytes());
        }
        backend
            .phys_mem()
            .write(frame.at(at % PAGE_SIZE), &bytes[..chunk.len() * 4])
            .map_err(|_| ())?;
    }
    Ok(())
}

/// CS_DEBUG_MODE2 (RCS + 0xd8, Gen9+; a masked register), bit 4 "Constant
/// Buffer Address Offset Disable" (Mesa `CSDBG2_CONSTANT_BUFFER_ADDRESS_OFFSET_DISABLE`).
const CS_DEBUG_MODE2: u32 = 0x20d8;
const CONSTANT_BUFFER_ADDRESS_OFFSET_DISABLE: u32 = 1 << 4;

/// What the monitor runs before a guest's commands on each engine. On
/// render: constant buffer 0 pointers are graphics addresses, which is how
/// the scanner audits and remaps them; the register is context state, and
/// guests may write it only in ways that keep the bit set (the register
/// list's rule, [`crate::scan::regs`]), so setting it at the head of every
/// submission makes the audit hold whatever context runs.
fn prologue(engine: Engine) -> &'static [u32] {
    const LRI: [u32; 3] = crate::encode::lri(
        CS_DEBUG_MODE2,
        (CONSTANT_BUFFER_ADDRESS_OFFSET_DISABLE << 16) | CONSTANT_BUFFER_ADDRESS_OFFSET_DISABLE,
    );
    const RENDER: [u32; 4] = [LRI[0], LRI[1], LRI[2], crate::encode::NOOP];
    match engine {
        Engine::Render => &RENDER,
        _ => &[],
    }
}

/// Writes DWords to GM through the backend, in bounded byte chunks.
fn write_dwords(backend: &mut dyn Backend, at: HostGm, words: &[u32]) -> Result<(), ()> {
    let mut bytes = [0u8; 256];
    for (i, chunk) in words.chunks(bytes.len() / 4).enumerate() {
        let at = at.checked_add(i as u64 * bytes.len() as u64).ok_or(())?;
        for (raw, word) in bytes.chunks_exact_mut(4).zip(chunk) {
            raw.copy_from_slice(&word.to_le_bytes());
        }
        backend
            .write_gm(at, &bytes[..chunk.len() * 4])
            .map_err(|_| ())?;
    }
    Ok(())
}

/// A shadow before [`ScanGate::place`] gives it an engine and GM: built
/// at compile time, and all zeros so that a static gate lands in `.bss`,
/// not in the image.
const fn unplaced() -> Shadow {
    const ZERO_HOST: HostGm = match HostGm::new(0) {
        Ok(gm) => gm,
        Err(_) => panic!("GM address 0 is valid"),
    };
    Shadow::new(Engine::Render, ZERO_HOST, [ZERO_HOST; BATCH_POOL])
}

/// Write sets of one context's accepted submissions the gate keeps until
/// taken; beyond that the newest is marked untracked (its vGPU's memory
/// then counts as all written).
pub const WRITE_LOG: usize = 8;

/// Which submissions may dispatch shaders (draws, GPGPU and media
/// dispatches). A shader reads and writes through memory-resident state
/// (surface states, interface descriptors, sampler border colours) that no
/// command scanner sees: in a PPGTT context the shadow PPGTT contains
/// every address it may hold ([`crate::ppgtt::shadow`]); in a GGTT context
/// (a legacy ring) nothing does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShaderPolicy {
    /// No shader work anywhere (`shaders=deny`).
    Deny,
    /// Shader work only in PPGTT contexts (the default, `shaders=ppgtt`).
    #[default]
    PpgttOnly,
    /// Shader work in GGTT contexts too (`shaders=allow-ggtt`): a hostile
    /// guest's draw can then reach any memory the GGTT maps, other vGPUs'
    /// and the monitor's included.
    AllowGgtt,
}

impl ShaderPolicy {
    /// Whether a submission in a PPGTT context (`ppgtt`) or a GGTT one has
    /// its shader work refused.
    pub const fn denies(self, ppgtt: bool) -> bool {
        match self {
            ShaderPolicy::Deny => true,
            ShaderPolicy::PpgttOnly => !ppgtt,
            ShaderPolicy::AllowGgtt => false,
        }
    }
    /// The option's value: `deny`, `ppgtt` or `allow-ggtt`.
    pub const fn name(self) -> &'static str {
        match self {
            ShaderPolicy::Deny => "deny",
            ShaderPolicy::PpgttOnly => "ppgtt",
            ShaderPolicy::AllowGgtt => "allow-ggtt",
        }
    }
    /// Parses [`ShaderPolicy::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ShaderPolicy::Deny,
            ShaderPolicy::PpgttOnly,
            ShaderPolicy::AllowGgtt,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// One shadow per engine, plus what the last submissions produced.
#[derive(Debug)]
pub struct ScanGate {
    shadows: [Shadow; Engine::COUNT],
    shaders: ShaderPolicy,
    placed: bool,
    /// Per context: write sets of accepted submissions, oldest first.
    writes: [heapless::Deque<WriteSet, WRITE_LOG>; ContextId::COUNT],
    last_rejection: Option<ScanError>,
    accepted: u64,
    rejected: u64,
}

/// Coarse reason for [`GateRejection`]; the full one is in
/// [`ScanGate::last_rejection`].
fn reason_summary(reason: &Reason) -> &'static str {
    match reason {
        Reason::Decode(_) => "undecodable or engine-invalid command",
        Reason::Repr(_) => "malformed operands",
        Reason::Privileged(what) => what,
        Reason::Unaudited => "command with unaudited memory operands",
        Reason::Unsupported(why) => why,
        Reason::ShadersDenied => "shader dispatch refused",
        Reason::Ppgtt => "per-process GTT address outside a PPGTT batch",
        Reason::NonPrivileged(n) => n.why(),
        Reason::PpgttMemory { .. } => "PPGTT batch not mapped",
        Reason::Memory { .. } => "memory operand outside the vGPU's slices",
        Reason::BadBound { .. } => "upper bound below base",
        Reason::UnseenState(what) => what,
        Reason::Unbounded(what) => what,
        Reason::Register { .. } => "register not whitelisted",
        Reason::BadRing => "inconsistent ring registers",
        Reason::RingTooLarge => "submission larger than the shadow ring",
        Reason::BatchTooLarge => "batch larger than a shadow batch",
        Reason::PoolExhausted => "shadow batch pool exhausted",
        Reason::DepthExceeded => "batch nesting too deep",
        Reason::BatchCycle => "batch cycle",
        Reason::BudgetExceeded => "scan budget exceeded",
        Reason::ControlFlow(c) => c.why(),
    }
}

impl ScanGate {
    /// Shadows not yet placed in GM (all at host GM 0); call
    /// [`ScanGate::place`] before the first submission. `const` so that
    /// the kernel can keep the gate (about 1.3 MiB) in a static.
    pub const fn new() -> Self {
        ScanGate {
            shadows: [unplaced(), unplaced(), unplaced(), unplaced()],
            shaders: ShaderPolicy::PpgttOnly,
            placed: false,
            writes: [const { heapless::Deque::new() }; ContextId::COUNT],
            last_rejection: None,
            accepted: 0,
            rejected: 0,
        }
    }

    /// Sets which submissions may dispatch shaders; each scan applies it
    /// ([`Shadow::deny_shaders`]) by its request's context.
    pub fn set_shader_policy(&mut self, policy: ShaderPolicy) {
        self.shaders = policy;
    }

    /// Places the shadows in the monitor's GM: `area` must hold
    /// [`SHADOW_BYTES_PER_ENGINE`] per engine, mapped in the host GGTT.
    /// Returns false if it is too small.
    pub fn place(&mut self, area: HostGmRange) -> bool {
        if area.len() < SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64 {
            return false;
        }
        for (e, shadow) in self.shadows.iter_mut().enumerate() {
            shadow.engine = Engine::ALL[e];
            let base = e as u64 * SHADOW_BYTES_PER_ENGINE;
            let Some(ring) = area.at(base) else {
                return false;
            };
            shadow.ring_host = ring;
            for (b, host) in shadow.batch_host.iter_mut().enumerate() {
                let Some(at) = area.at(base + SHADOW_RING_BYTES + b as u64 * SHADOW_BATCH_BYTES)
                else {
                    return false;
                };
                *host = at;
            }
        }
        self.placed = true;
        true
    }

    /// The oldest write set not yet taken of the submissions accepted on
    /// `context` (guest pages each may write), in acceptance order. A set
    /// marked untracked may stand for several, the log having overflowed.
    pub fn take_write_set(&mut self, context: ContextId) -> Option<WriteSet> {
        self.writes.get_mut(context.index())?.pop_front()
    }

    /// Drops every write set kept for `context` (a new vGPU on its slot).
    pub fn forget_writes(&mut self, context: ContextId) {
        if let Some(log) = self.writes.get_mut(context.index()) {
            log.clear();
        }
    }

    fn log_writes(&mut self, context: ContextId, set: WriteSet) {
        let Some(log) = self.writes.get_mut(context.index()) else {
            return;
        };
        if let Err(mut set) = log.push_back(set) {
            // Full: the newest stands for itself and this one, untracked.
            set.untracked = true;
            if let Some(newest) = log.back_mut() {
                *newest = set;
            }
        }
    }

    /// Why the last rejected submission was rejected, in full.
    pub fn last_rejection(&self) -> Option<&ScanError> {
        self.last_rejection.as_ref()
    }

    /// Submissions accepted and rejected so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.accepted, self.rejected)
    }
}

impl Default for ScanGate {
    fn default() -> Self {
        Self::new()
    }
}

impl SubmissionGate for ScanGate {
    fn admit(
        &mut self,
        translation: &GmTranslation,
        request: &RingSubmission,
        backend: &mut dyn Backend,
    ) -> Result<Submission, GateRejection> {
        let engine = request.engine();
        let monitor_fault = |reason| GateRejection {
            engine,
            offset: 0,
            header: 0,
            reason,
        };
        if !self.placed {
            return Err(monitor_fault("shadow buffers not placed (monitor bug)"));
        }
        let ring = request.ring().guest();
        let state = RingState {
            start: ring.base(),
            size: ring.len() as u32,
            head: request.head(),
            tail: request.tail(),
        };
        let shadow = &mut self.shadows[engine.index()];
        shadow.deny_shaders = self.shaders.denies(request.ppgtt());
        let context_ppgtt = request.context_ppgtt();
        let scanned = {
            let space = GuestSpace {
                translation,
                backend: RefCell::new(&mut *backend),
            };
            let view = ContextSpace {
                space: &space,
                shadow: context_ppgtt.map(|p| ShadowSpace {
                    space: &space,
                    root: p.root,
                }),
            };
            shadow.scan(&view, state)
        };
        let scanned = match scanned {
            Ok(s) => s,
            Err(e) => {
                self.rejected += 1;
                self.last_rejection = Some(e);
                return Err(GateRejection {
                    engine,
                    offset: (e.offset * 4) as u32,
                    header: e.header,
                    reason: reason_summary(&e.reason),
                });
            }
        };
        for (slot, (batch, host)) in shadow.batches[..scanned.batches]
            .iter()
            .zip(shadow.batch_host)
            .enumerate()
        {
            // The scanned words and the terminator after them: a GGTT
            // batch's into the monitor's GM, a PPGTT batch's into the
            // vGPU's frames the reserved window of its PPGTT maps.
            let written = match (batch.guest.is_ppgtt(), context_ppgtt) {
                (false, _) => write_dwords(backend, host, batch.image()),
                (true, Some(p)) => {
                    write_window_batch(backend, p.window, engine, slot, batch.image())
                }
                (true, None) => Err(()),
            };
            written.map_err(|()| monitor_fault("shadow batch not mapped (monitor bug)"))?;
        }
        let prologue = prologue(engine);
        let commands_at = shadow
            .ring_host
            .checked_add(prologue.len() as u64 * 4)
            .ok_or(monitor_fault("shadow ring outside GM (monitor bug)"))?;
        write_dwords(backend, shadow.ring_host, prologue)
            .and_then(|()| write_dwords(backend, commands_at, &shadow.ring[..scanned.ring_dwords]))
            .map_err(|()| monitor_fault("shadow ring not mapped (monitor bug)"))?;
        let ring_range = HostGmRange::new(shadow.ring_host, SHADOW_RING_BYTES)
            .map_err(|_| monitor_fault("shadow ring outside GM (monitor bug)"))?;
        let tail = (prologue.len() + scanned.ring_dwords) * 4;
        let submission = Submission::new(engine, request.context(), ring_range, 0, tail as u32)
            .map_err(|_| monitor_fault("shadow ring not a valid ring (monitor bug)"))?;
        self.accepted += 1;
        self.log_writes(request.context(), scanned.writes);
        Ok(submission)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::addr::GuestPage;
    use crate::backend::PhysMem;
    use crate::ggtt::{GuestPte, PteFlags};
    use crate::partition::{GmLayout, Partition, PartitionAllocator, VgpuType};
    use crate::regs::{ring, GGTT_BAR0_OFFSET};
    use crate::sim::SimGpu;
    use crate::testutil::*;
    use crate::vgpu::{
        AccessSize, FrameRuns, GuestMemoryMap, MmioEffect, Vgpu, VgpuError, VgpuState,
    };

    /// Host frames of the guest memories.
    const GUEST_FRAMES: [u64; 2] = [0x4000, 0x5000];
    pub(crate) const GUEST_PAGES: u64 = 16;

    pub(crate) struct World {
        pub(crate) gpu: SimGpu<SparseMem>,
        pub(crate) gate: Box<ScanGate>,
        pub(crate) vgpus: Vec<(Vgpu, FrameRuns<4>)>,
        pub(crate) run: Runner,
    }

    /// The scheduler serves the world's (vGPU, memory) pairs.
    impl AsMut<Vgpu> for (Vgpu, FrameRuns<4>) {
        fn as_mut(&mut self) -> &mut Vgpu {
            &mut self.0
        }
    }

    /// Two small vGPUs, each with 16 guest pages mapped at the bottom of its
    /// aperture and a one-page render ring in its first page.
    /// Guest page (and aperture page) of each engine's ring.
    pub(crate) fn ring_page(engine: Engine) -> u64 {
        match engine {
            Engine::Render => 0,
            Engine::Blitter => 4,
            _ => 5,
        }
    }

    /// Guest page mapped at the last page of the aperture slice.
    pub(crate) const EDGE_PAGE: u64 = GUEST_PAGES - 1;

    pub(crate) fn world() -> World {
        let mut gpu = sim();
        let mut alloc =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let gate = scan_gate(&mut gpu);
        let mut vgpus = Vec::new();
        for frame in GUEST_FRAMES {
            let partition: Partition = alloc.allocate(VgpuType::Small).unwrap();
            let mut v = Vgpu::new(&partition);
            let mem = guest_mem(0, frame, GUEST_PAGES);
            let view = v.translation().guest_view().aperture;
            let ap = view.base().raw();
            for i in 0..GUEST_PAGES {
                let gm = if i == EDGE_PAGE {
                    view.end_raw() - 4096
                } else {
                    ap + i * 4096
                };
                let pte = GuestPte::map(GuestPage::new(i).unwrap(), PteFlags::NONE);
                let offset = GGTT_BAR0_OFFSET + (gm >> 12) as u32 * 8;
                let e = v
                    .mmio_write(&mut gpu, &mem, offset, AccessSize::Qword, pte.raw())
                    .unwrap();
                assert_eq!(e, MmioEffect::Done);
            }
            for engine in [Engine::Render, Engine::Blitter, Engine::Video] {
                let base = engine.mmio_base();
                let start = ap + ring_page(engine) * 4096;
                let _ = v
                    .mmio_write(&mut gpu, &mem, base + ring::START, AccessSize::Dword, start)
                    .unwrap();
                let _ = v
                    .mmio_write(&mut gpu, &mem, base + ring::CTL, AccessSize::Dword, 1)
                    .unwrap();
            }
            vgpus.push((v, mem));
        }
        World {
            gpu,
            gate,
            vgpus,
            run: Runner::new(),
        }
    }

    pub(crate) fn aperture(w: &World, which: usize) -> u64 {
        w.vgpus[which]
            .0
            .translation()
            .guest_view()
            .aperture
            .base()
            .raw()
    }

    /// Guest CPU writes `words` into its own page `page` at `offset`.
    pub(crate) fn write_guest(w: &mut World, which: usize, page: u64, offset: u64, words: &[u32]) {
        let frame = w.vgpus[which]
            .1
            .frame_of(GuestPage::new(page).unwrap())
            .unwrap();
        for (i, d) in words.iter().enumerate() {
            let at = frame.at((offset + 4 * i as u64) % 4096);
            w.gpu.mem_mut().write(at, &d.to_le_bytes()).unwrap();
        }
    }

    /// Guest CPU writes `cmds` into `engine`'s ring at the current TAIL.
    pub(crate) fn write_ring(w: &mut World, which: usize, engine: Engine, cmds: &[u32]) -> u32 {
        let head = w.vgpus[which].0.ring(engine).tail;
        write_guest(w, which, ring_page(engine), u64::from(head), cmds);
        (head + 4 * cmds.len() as u32) % 4096
    }

    /// Guest `which` bumps `engine`'s TAIL to `tail`: its work is queued.
    pub(crate) fn ring_tail(
        w: &mut World,
        which: usize,
        engine: Engine,
        tail: u32,
    ) -> Result<(), VgpuError> {
        let (v, mem) = &mut w.vgpus[which];
        let tail_reg = engine.mmio_base() + ring::TAIL;
        match v.mmio_write(
            &mut w.gpu,
            &*mem,
            tail_reg,
            AccessSize::Dword,
            u64::from(tail),
        )? {
            MmioEffect::Queued(e) if e == engine => Ok(()),
            other => panic!("a TAIL write must queue, not {other:?}"),
        }
    }

    /// Guest `which` submits `cmds` on `engine`; the scheduler runs every
    /// vGPU's work to its end. Err: how the submission was refused.
    pub(crate) fn submit_on(
        w: &mut World,
        which: usize,
        engine: Engine,
        cmds: &[u32],
    ) -> Result<(), VgpuError> {
        let tail = write_ring(w, which, engine, cmds);
        ring_tail(w, which, engine, tail)?;
        w.run.run_idle(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        outcome(&w.vgpus[which].0)
    }

    pub(crate) fn submit(w: &mut World, which: usize, cmds: &[u32]) -> Result<(), VgpuError> {
        submit_on(w, which, Engine::Render, cmds)
    }

    pub(crate) fn guest_u32(w: &World, which: usize, page: u64, offset: u64) -> u32 {
        let frame = w.vgpus[which]
            .1
            .frame_of(GuestPage::new(page).unwrap())
            .unwrap();
        let mut b = [0u8; 4];
        w.gpu.mem().read(frame.at(offset), &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    /// One random command of `engine` writing into vGPU 0's pages 1..=3
    /// or 6..=13 (not a ring page nor the edge page), from `r`; blits may
    /// span two pages.
    fn writer(engine: Engine, ap: u64, r: [u32; 4]) -> Vec<u32> {
        use crate::encode::*;
        let page = [1u64, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13][r[0] as usize % 11];
        let at = ap + page * 4096 + u64::from(r[1] % 4000) / 8 * 8;
        let (pitch, rows) = (4 * (1 + r[2] % 256), 1 + r[3] % 16);
        match (engine, r[0] / 11 % 3) {
            (_, 0) => sdi(at, r[3]).to_vec(),
            (Engine::Render, _) => pipe_control_imm(at, u64::from(r[2])).to_vec(),
            (_, 1) => flush_dw_imm(at, r[3]).to_vec(),
            _ => {
                // Up to 8 KiB from a page whose next page is the guest's too.
                let page = [1u64, 2, 6, 7, 8, 9, 10, 11, 12][r[0] as usize % 9];
                let dst = ap + page * 4096;
                let rows = rows.min(8192 / pitch).max(1);
                if r[1].is_multiple_of(2) {
                    color_blt(dst, pitch, 0, 0, pitch / 4, rows, r[3]).to_vec()
                } else {
                    let src = ap + 14 * 4096;
                    copy_blt(dst, pitch, 0, 0, pitch / 4, rows, src, pitch, 0, 0).to_vec()
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 96, ..proptest::prelude::ProptestConfig::default()
        })]

        /// Migration trusts the write set: every guest page the GPU wrote
        /// while running an accepted, tracked submission is listed in it.
        #[test]
        fn the_write_set_lists_every_page_the_gpu_wrote(
            blitter in proptest::prelude::any::<bool>(),
            cmds in proptest::collection::vec(proptest::prelude::any::<[u32; 4]>(), 1..8),
        ) {
            let engine = if blitter { Engine::Blitter } else { Engine::Render };
            let mut w = world();
            let ap = aperture(&w, 0);
            let mut stream: Vec<u32> = cmds.into_iter().flat_map(|r| writer(engine, ap, r)).collect();
            if !stream.len().is_multiple_of(2) {
                stream.push(crate::encode::NOOP); // TAIL is QWord aligned
            }
            let tail = write_ring(&mut w, 0, engine, &stream);
            w.gpu.mem_mut().written = Some(Vec::new());
            ring_tail(&mut w, 0, engine, tail).unwrap();
            w.run.run_idle(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
            proptest::prop_assert_eq!(outcome(&w.vgpus[0].0), Ok(()));
            let context = w.vgpus[0].0.context();
            let writes = w.gate.take_write_set(context).unwrap();
            proptest::prop_assert_eq!(w.gate.take_write_set(context), None);
            proptest::prop_assert!(!writes.untracked);
            let log = w.gpu.mem_mut().written.take().unwrap();
            let mut seen = 0;
            for frame in log {
                let frame = crate::addr::PhysFrame::new(frame).unwrap();
                // Guest memory only (the monitor writes its shadow too).
                let Some(page) = w.vgpus[0].1.page_of(frame) else { continue };
                let gm_page = ap / 4096 + page.number();
                proptest::prop_assert!(
                    writes.contains(gm_page),
                    "page {:#x} written, set {:?}", gm_page, writes.runs()
                );
                seen += 1;
            }
            proptest::prop_assert!(seen > 0, "the stream wrote nothing");
        }
    }

    #[test]
    fn accepted_submission_runs_remapped_and_records_writes() {
        let mut w = world();
        let target = aperture(&w, 0) + 2 * 4096 + 0x40;
        let mut cmds = sdi(target, 0xfeed_beef).to_vec();
        cmds.extend(pipe_control_imm(target + 8, 0x1234));
        submit(&mut w, 0, &cmds).unwrap();
        assert_eq!(guest_u32(&w, 0, 2, 0x40), 0xfeed_beef);
        assert_eq!(guest_u32(&w, 0, 2, 0x48), 0x1234);
        let page = target >> 12;
        let context = w.vgpus[0].0.context();
        assert_eq!(
            w.gate
                .take_write_set(context)
                .unwrap()
                .pages()
                .collect::<Vec<_>>(),
            [page]
        );
        assert_eq!(w.gate.take_write_set(context), None);
        assert_eq!(w.gate.take_write_set(w.vgpus[1].0.context()), None);
        assert_eq!(w.gate.counts(), (1, 0));
        // The other vGPU's memory is untouched.
        assert_eq!(guest_u32(&w, 1, 2, 0x40), 0);
    }

    #[test]
    fn rejected_submission_fails_only_its_vgpu() {
        let mut w = world();
        // A store into the other vGPU's aperture.
        let foreign = aperture(&w, 1) + 4096;
        let err = submit(&mut w, 0, &sdi(foreign, 1)).unwrap_err();
        assert!(matches!(err, VgpuError::Rejected(_)), "{err}");
        assert!(matches!(w.vgpus[0].0.state(), VgpuState::Failed(_)));
        assert!(w.gate.last_rejection().is_some());
        assert_eq!(guest_u32(&w, 1, 1, 0), 0);
        // The failed vGPU refuses more work; the other goes on.
        let own = aperture(&w, 0);
        assert!(matches!(
            submit(&mut w, 0, &sdi(own, 1)),
            Err(VgpuError::Stopped(_))
        ));
        let mine = aperture(&w, 1) + 4096;
        submit(&mut w, 1, &sdi(mine, 7)).unwrap();
        assert_eq!(guest_u32(&w, 1, 1, 0), 7);
    }

    #[test]
    fn rewriting_the_guest_ring_after_the_scan_changes_nothing() {
        let mut w = world();
        let target = aperture(&w, 0) + 3 * 4096;
        let tail = write_ring(&mut w, 0, Engine::Render, &sdi(target, 0x600d));
        ring_tail(&mut w, 0, Engine::Render, tail).unwrap();
        // The scheduler dispatches it: the scan copies the ring.
        w.run.step(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert!(w.vgpus[0].0.in_flight(Engine::Render).is_some());
        // The guest now rewrites the store's value (dword 3) in its ring.
        let frame = w.vgpus[0].1.frame_of(GuestPage::new(0).unwrap()).unwrap();
        w.gpu
            .mem_mut()
            .write(frame.at(12), &0xbadu32.to_le_bytes())
            .unwrap();
        w.run.run_idle(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert_eq!(guest_u32(&w, 0, 3, 0), 0x600d);
    }

    /// The model, except that every engine reports busy.
    struct BusyGpu<'a>(&'a mut SimGpu<SparseMem>);

    impl Backend for BusyGpu<'_> {
        fn read_reg(&mut self, reg: crate::regs::MmioOffset) -> u32 {
            self.0.read_reg(reg)
        }
        fn write_reg(&mut self, reg: crate::regs::MmioOffset, value: u32) {
            self.0.write_reg(reg, value)
        }
        fn read_pte(&mut self, index: crate::addr::HostGgttIndex) -> crate::ggtt::HostPte {
            self.0.read_pte(index)
        }
        fn write_pte(
            &mut self,
            index: crate::addr::HostGgttIndex,
            pte: crate::ggtt::HostPte,
        ) -> crate::ggtt::GgttFlush {
            self.0.write_pte(index, pte)
        }
        fn flush_ggtt(&mut self, flush: crate::ggtt::GgttFlush) {
            self.0.flush_ggtt(flush)
        }
        fn read_gm(
            &mut self,
            addr: HostGm,
            buf: &mut [u8],
        ) -> Result<(), crate::backend::GmAccessError> {
            self.0.read_gm(addr, buf)
        }
        fn write_gm(
            &mut self,
            addr: HostGm,
            data: &[u8],
        ) -> Result<(), crate::backend::GmAccessError> {
            self.0.write_gm(addr, data)
        }
        fn phys_mem(&mut self) -> &mut dyn crate::backend::PhysMem {
            self.0.phys_mem()
        }
        fn submit(
            &mut self,
            submission: &Submission,
        ) -> Result<crate::backend::SubmissionId, crate::backend::BackendError> {
            self.0.submit(submission)
        }
        fn poll(&mut self, _engine: Engine) -> crate::backend::EngineStatus {
            crate::backend::EngineStatus::Busy {
                running: crate::backend::SubmissionId(0),
            }
        }
        fn advance(&mut self, now_ns: u64) {
            self.0.advance(now_ns)
        }
        fn finished_at_ns(
            &mut self,
            engine: Engine,
            id: crate::backend::SubmissionId,
        ) -> Option<u64> {
            self.0.finished_at_ns(engine, id)
        }
        fn reset_engine(&mut self, engine: Engine) {
            self.0.reset_engine(engine)
        }
        fn release_context(&mut self, context: crate::backend::ContextId) {
            self.0.release_context(context)
        }
    }

    /// A shadow is rewritten only for an idle engine: a busy one (running
    /// an earlier submission, or holding one preempted at an MI_ARB_CHECK)
    /// may still fetch the shadow's words, which must stay the ones it was
    /// handed. A dispatch onto a busy engine (a monitor bug: the scheduler
    /// dispatches onto idle engines only) is refused as the monitor's
    /// fault, and the work stays queued.
    #[test]
    fn a_busy_engine_keeps_its_shadow() {
        let mut w = world();
        let target = aperture(&w, 0) + 4096;
        submit(&mut w, 0, &sdi(target, 1)).unwrap();
        let ring_host = w.gate.shadows[Engine::Render.index()].ring_host;
        let mut before = [0u8; 64];
        w.gpu.read_gm(ring_host, &mut before).unwrap();
        let tail = write_ring(&mut w, 0, Engine::Render, &sdi(target + 8, 2));
        ring_tail(&mut w, 0, Engine::Render, tail).unwrap();
        let v = &mut w.vgpus[0].0;
        let err = v
            .dispatch(
                Engine::Render,
                &mut BusyGpu(&mut w.gpu),
                &mut *w.gate,
                u64::MAX,
            )
            .unwrap_err();
        assert!(matches!(err, VgpuError::Monitor(_)), "{err}");
        assert!(!matches!(v.state(), VgpuState::Failed(_)));
        assert_eq!(v.queued(Engine::Render), 1);
        let mut after = [0u8; 64];
        w.gpu.read_gm(ring_host, &mut after).unwrap();
        assert_eq!(before, after, "the shadow ring changed under a busy engine");
        w.run.run_idle(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert_eq!(guest_u32(&w, 0, 1, 8), 2);
    }

    /// Another vGPU's submission while one runs on the engine: the guest
    /// sees no error, its work waits unscanned, the shadow the engine reads
    /// is not rewritten under it, and both run to their results.
    #[test]
    fn a_submission_while_another_vgpus_work_runs_waits_for_the_engine() {
        let mut w = world();
        // vGPU 0: long blits (three fills of eight pages, 25 us of model
        // time, longer than a scheduler step), then a fence.
        let dst = aperture(&w, 0) + 6 * 4096;
        let mut long = Vec::new();
        for color in [0x1111_1111, 0x3333_3333, 0x5555_5555] {
            long.extend(color_blt(dst, 4096, 0, 0, 1024, 8, color));
        }
        long.extend(flush_dw_imm(aperture(&w, 0) + 4096, 1));
        long.push(NOOP);
        let tail = write_ring(&mut w, 0, Engine::Blitter, &long);
        ring_tail(&mut w, 0, Engine::Blitter, tail).unwrap();
        w.run.step(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert!(w.vgpus[0].0.in_flight(Engine::Blitter).is_some());
        let shadow = w.gate.shadows[Engine::Blitter.index()].ring_host;
        let mut before = [0u8; 128];
        w.gpu.read_gm(shadow, &mut before).unwrap();
        // vGPU 1 submits on the busy blitter.
        let fence = aperture(&w, 1) + 2 * 4096;
        let tail = write_ring(&mut w, 1, Engine::Blitter, &flush_dw_imm(fence, 7));
        ring_tail(&mut w, 1, Engine::Blitter, tail).unwrap();
        w.run.step(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert_eq!(w.vgpus[1].0.queued(Engine::Blitter), 1);
        let mut during = [0u8; 128];
        w.gpu.read_gm(shadow, &mut during).unwrap();
        assert_eq!(before, during, "the shadow changed under the running blit");
        assert_eq!(w.gate.counts(), (1, 0), "vGPU 1's work was scanned early");
        w.run.run_idle(&mut w.gpu, &mut *w.gate, &mut w.vgpus);
        assert_eq!(outcome(&w.vgpus[1].0), Ok(()));
        assert_eq!(guest_u32(&w, 1, 2, 0), 7);
        assert_eq!(guest_u32(&w, 0, 1, 0), 1);
        assert_eq!(guest_u32(&w, 0, 6, 4092), 0x5555_5555);
    }

    /// What the gate writes to GM for a shadow batch ends in
    /// MI_BATCH_BUFFER_END right after the scanned words, so a shorter
    /// batch in a slot that held a longer one does not leave the longer
    /// one's words reachable after it.
    #[test]
    fn a_shadow_batch_in_gm_ends_at_its_scanned_length() {
        let mut w = world();
        let ap = aperture(&w, 0);
        let batch = ap + 6 * 4096;
        let mut long = Vec::new();
        for i in 0..64 {
            long.extend(sdi(ap + 4096 + 8 * i, i as u32));
        }
        long.push(BB_END);
        write_guest(&mut w, 0, 6, 0, &long);
        let mut call = bb_start(batch, false).to_vec();
        call.push(NOOP);
        submit(&mut w, 0, &call).unwrap();
        let short = [sdi(ap + 2 * 4096, 9).as_slice(), &[BB_END]].concat();
        write_guest(&mut w, 0, 6, 0, &short);
        submit(&mut w, 0, &call).unwrap();
        let slot = w.gate.shadows[Engine::Render.index()].batch_host[0];
        let mut gm = [0u8; 4 * 12];
        w.gpu.read_gm(slot, &mut gm).unwrap();
        let words: Vec<u32> = gm
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // The SDI, the guest's end, the scanner's terminator; then the
        // stale words of the longer batch, which nothing reaches.
        assert_eq!(words[4], BB_END);
        assert_eq!(words[5], BB_END);
        assert_eq!(words[8] >> 23, 0x20, "stale words are past the terminator");
        assert_eq!(guest_u32(&w, 0, 2, 0), 9);
    }

    #[test]
    fn unplaced_gate_refuses_instead_of_writing_gm_zero() {
        let mut w = world();
        *w.gate = ScanGate::new();
        let target = aperture(&w, 0) + 4096;
        let err = submit(&mut w, 0, &sdi(target, 1)).unwrap_err();
        assert!(matches!(err, VgpuError::Rejected(r) if r.reason.contains("not placed")));
        assert_eq!(guest_u32(&w, 0, 1, 0), 0);
    }
}

/// One test per attack class of issue 4, through the whole path (trapped
/// TAIL write, vGPU, scanner gate, software GPU): the submission is
/// rejected, the attacking vGPU is stopped, nothing it aimed at changed,
/// and a second vGPU keeps working.
#[cfg(test)]
mod attacks {
    use super::tests::*;
    use crate::encode::*;
    use crate::engine::Engine;
    use crate::scan::scanner::{ControlFlow, GmFault, Reason};
    use crate::vgpu::{VgpuError, VgpuState};

    /// Header of MI_SEMAPHORE_WAIT (Gen8+: GGTT, 4 DWords).
    const SEMAPHORE_WAIT: u32 = (0x1c << 23) | (1 << 22) | 2;

    /// Runs `attack` as vGPU 0 (it may stage batches first) and checks the
    /// outcome; `victim` is a guest page of vGPU 1 that must stay zero.
    fn contained(name: &str, engine: Engine, stage: impl FnOnce(&mut World) -> Vec<u32>) {
        contained_because(name, engine, stage, |_, _| true);
    }

    /// [`contained`], and the gate's full rejection reason must satisfy
    /// `why` (given the world, to name the attacked addresses).
    fn contained_because(
        name: &str,
        engine: Engine,
        stage: impl FnOnce(&mut World) -> Vec<u32>,
        why: impl FnOnce(&World, &Reason) -> bool,
    ) {
        let mut w = world();
        let cmds = stage(&mut w);
        let err = submit_on(&mut w, 0, engine, &cmds).expect_err(name);
        assert!(matches!(err, VgpuError::Rejected(_)), "{name}: {err}");
        assert!(
            matches!(w.vgpus[0].0.state(), VgpuState::Failed(_)),
            "{name}: attacker still running"
        );
        let reason = w.gate.last_rejection().expect("a rejection").reason;
        assert!(why(&w, &reason), "{name}: rejected for {reason}");
        for page in 0..GUEST_PAGES {
            if page != ring_page(Engine::Render) {
                assert_eq!(
                    guest_u32(&w, 1, page, 0),
                    0,
                    "{name}: victim page {page} changed"
                );
            }
        }
        let own = aperture(&w, 1) + 2 * 4096;
        submit(&mut w, 1, &sdi(own, 0x5afe))
            .unwrap_or_else(|e| panic!("{name}: victim stopped: {e}"));
        assert_eq!(guest_u32(&w, 1, 2, 0), 0x5afe, "{name}");
    }

    fn pad(mut v: Vec<u32>) -> Vec<u32> {
        if v.len() % 2 == 1 {
            v.push(NOOP);
        }
        v
    }

    #[test]
    fn out_of_slice_store() {
        contained("store", Engine::Render, |w| sdi(aperture(w, 1), 1).to_vec());
    }

    #[test]
    fn out_of_slice_post_sync_writes() {
        contained("pipe control", Engine::Render, |w| {
            pipe_control_imm(aperture(w, 1), 1).to_vec()
        });
        contained("flush dw", Engine::Blitter, |w| {
            flush_dw_imm(aperture(w, 1), 1).to_vec()
        });
    }

    #[test]
    fn blit_running_past_the_slice_end() {
        // Starts in the attacker's last aperture page, its second row lands
        // in the next slice (the victim's aperture).
        contained("blit", Engine::Blitter, |w| {
            let edge = aperture(w, 0) + 64 * 1024 * 1024 - 4096;
            pad(color_blt(edge, 4096, 0, 0, 16, 2, 0xffff_ffff).to_vec())
        });
    }

    #[test]
    fn out_of_slice_semaphore() {
        contained("semaphore", Engine::Video, |w| {
            let victim = aperture(w, 1);
            vec![SEMAPHORE_WAIT, 0, victim as u32, (victim >> 32) as u32]
        });
    }

    #[test]
    fn register_loads_outside_the_whitelist() {
        // A fence, the GGTT window, another engine's register, interrupts.
        for reg in [0x10_0000u32, 0x80_0000, 0x2_2030, 0x4_4000] {
            contained("lri", Engine::Render, |_| pad(lri(reg, 0).to_vec()));
        }
        contained("srm to other vgpu", Engine::Render, |w| {
            srm(0x2600, aperture(w, 1)).to_vec()
        });
    }

    #[test]
    fn privileged_batch_start_bits() {
        for bit in [8, 10] {
            // PPGTT address space, resource streamer.
            contained("privileged batch", Engine::Render, |w| {
                let batch = aperture(w, 0) + 6 * 4096;
                write_guest(w, 0, 6, 0, &[BB_END, NOOP]);
                let mut start = bb_start(batch, false);
                start[0] |= 1 << bit;
                pad(start.to_vec())
            });
        }
    }

    #[test]
    fn batch_chaining_to_itself_and_cycles() {
        contained("self chain", Engine::Render, |w| {
            let a = aperture(w, 0) + 6 * 4096;
            let mut batch = vec![NOOP];
            batch.extend(bb_start(a, false));
            write_guest(w, 0, 6, 0, &batch);
            pad(bb_start(a, false).to_vec())
        });
        contained("cycle", Engine::Render, |w| {
            let (a, b) = (aperture(w, 0) + 6 * 4096, aperture(w, 0) + 7 * 4096);
            write_guest(w, 0, 6, 0, &bb_start(a + 4096, false));
            write_guest(w, 0, 7, 0, &bb_start(b - 4096, false));
            pad(bb_start(a, false).to_vec())
        });
    }

    #[test]
    fn nesting_beyond_the_limit() {
        contained("depth", Engine::Render, |w| {
            let base = aperture(w, 0);
            let (a, b, c) = (base + 6 * 4096, base + 7 * 4096, base + 8 * 4096);
            let mut call_b = bb_start(b, true).to_vec();
            call_b.push(BB_END);
            let mut call_c = bb_start(c, true).to_vec();
            call_c.push(BB_END);
            write_guest(w, 0, 6, 0, &call_b);
            write_guest(w, 0, 7, 0, &call_c);
            write_guest(w, 0, 8, 0, &[BB_END]);
            pad(bb_start(a, false).to_vec())
        });
    }

    #[test]
    fn batch_outside_the_slices() {
        contained("foreign batch", Engine::Render, |w| {
            pad(bb_start(aperture(w, 1) + 6 * 4096, false).to_vec())
        });
    }

    #[test]
    fn unknown_opcode() {
        contained("unknown opcode", Engine::Render, |_| vec![0x3f << 23, NOOP]);
        // A blit on the render engine is a valid command on the wrong engine.
        contained("wrong engine", Engine::Render, |w| {
            pad(color_blt(aperture(w, 0), 64, 0, 0, 1, 1, 0).to_vec())
        });
    }

    #[test]
    fn lengths_running_past_the_ring_or_the_batch() {
        // MI_STORE_DATA_IMM needs 4 DWords; TAIL leaves 2.
        contained("past tail", Engine::Render, |w| {
            sdi(aperture(w, 0) + 4096, 1)[..2].to_vec()
        });
        // A batch in the last aperture page that never ends runs off the slice.
        contained("past batch", Engine::Render, |w| {
            let edge = aperture(w, 0) + 64 * 1024 * 1024 - 4096;
            write_guest(w, 0, EDGE_PAGE, 0, &[NOOP; 1024]);
            pad(bb_start(edge, false).to_vec())
        });
    }

    /// Rejected because the operand at guest `addr` (or its extent) lies
    /// outside the attacker's slices.
    fn outside(addr: u64) -> impl FnOnce(&World, &Reason) -> bool {
        move |_, r| matches!(r, Reason::Memory { addr: a, fault: GmFault::OutOfSlices, .. } if *a == addr)
    }

    const BLT: u32 = 2 << 29;
    const fn lo(a: u64) -> u32 {
        a as u32
    }
    const fn hi(a: u64) -> u32 {
        (a >> 32) as u32
    }

    #[test]
    fn mono_source_running_past_the_slice_end() {
        // XY_MONO_SRC_COPY_BLT, 8 bpp: 8000 x 5 pixels drawn into the
        // attacker's own pages; its packed source starts in the attacker's
        // last aperture page and needs 5 rows of 1002 bytes, so its end
        // lies in the next slice (the victim's aperture).
        contained_because(
            "mono source",
            Engine::Blitter,
            |w| {
                let dst = aperture(w, 0) + 2 * 4096;
                let src = aperture(w, 0) + 64 * 1024 * 1024 - 4096;
                vec![
                    BLT | (0x54 << 22) | 8,
                    (0xcc << 16) | 8000,
                    0,
                    5 << 16 | 8000,
                    lo(dst),
                    hi(dst),
                    lo(src),
                    hi(src),
                    0,
                    0xff,
                ]
            },
            |w, r| {
                let src = aperture(w, 0) + 64 * 1024 * 1024 - 4096;
                outside(src)(w, r)
            },
        );
    }

    #[test]
    fn text_blit_reading_the_other_vgpu() {
        // A setup in the attacker's memory, then XY_TEXT_BLT whose text
        // data is the victim's first aperture page.
        contained_because(
            "text source",
            Engine::Blitter,
            |w| {
                let dst = aperture(w, 0) + 2 * 4096;
                let victim = aperture(w, 1);
                let mut v = vec![
                    BLT | (0x01 << 22) | 8,
                    (3 << 24) | (0xcc << 16) | 1024,
                    0,
                    0,
                    lo(dst),
                    hi(dst),
                    0,
                    !0,
                    0,
                    0,
                ];
                v.extend([
                    BLT | (0x26 << 22) | 3,
                    0,
                    8 << 16 | 64,
                    lo(victim),
                    hi(victim),
                ]);
                pad(v)
            },
            |w, r| outside(aperture(w, 1))(w, r),
        );
    }

    #[test]
    fn full_blit_pattern_in_the_other_vgpu() {
        // XY_FULL_BLT with PATCOPY: destination and source are the
        // attacker's, the 8x8 pattern is the victim's.
        contained_because(
            "full blit pattern",
            Engine::Blitter,
            |w| {
                let own = aperture(w, 0) + 2 * 4096;
                let victim = aperture(w, 1) + 4096;
                vec![
                    BLT | (0x55 << 22) | 10,
                    (3 << 24) | (0xf0 << 16) | 256,
                    0,
                    4 << 16 | 16,
                    lo(own),
                    hi(own),
                    0,
                    256,
                    lo(own + 4096),
                    hi(own + 4096),
                    lo(victim),
                    hi(victim),
                ]
            },
            |w, r| outside(aperture(w, 1) + 4096)(w, r),
        );
    }

    #[test]
    fn pak_insert_payload_in_the_other_vgpu() {
        // HCP_PAK_INSERT_OBJECT with an indirect payload: the first
        // descriptor is the attacker's, the second reads the victim.
        contained_because(
            "pak insert payload",
            Engine::Video,
            |w| {
                let own = aperture(w, 0) + 2 * 4096;
                let victim = aperture(w, 1) + 2 * 4096;
                pad(vec![
                    (3 << 29) | (0x13a2 << 16) | 8,
                    1 << 31,
                    64,
                    lo(own),
                    hi(own),
                    0,
                    64,
                    lo(victim),
                    hi(victim),
                    0,
                ])
            },
            |w, r| outside(aperture(w, 1) + 2 * 4096)(w, r),
        );
    }

    #[test]
    fn pre_gen8_blit_is_refused() {
        // COLOR_BLT (32-bit form) aimed at the victim: refused as a
        // command, before any address is read.
        contained_because(
            "COLOR_BLT",
            Engine::Blitter,
            |w| {
                let victim = aperture(w, 1);
                pad(vec![
                    BLT | (0x40 << 22) | 3,
                    (3 << 24) | (0xf0 << 16) | 256,
                    4 << 16 | 256,
                    lo(victim),
                    0,
                ])
            },
            |_, r| matches!(r, Reason::Unsupported(_)),
        );
    }

    /// MI_CONDITIONAL_BATCH_BUFFER_END (GGTT, compare semaphore) ending the
    /// batch when the DWord at `at` is not above `data`.
    fn cond_end(at: u64, data: u32) -> [u32; 4] {
        [
            (0x36 << 23) | (1 << 22) | (1 << 21) | 2,
            data,
            lo(at),
            hi(at),
        ]
    }

    /// XY_SETUP_BLT, 32 bpp, SRCCOPY (no pattern read): destination `dst`.
    fn setup_blt(dst: u64, pitch: u32) -> [u32; 10] {
        [
            BLT | (0x01 << 22) | 8,
            (3 << 24) | (0xcc << 16) | pitch,
            0,
            0,
            lo(dst),
            hi(dst),
            0,
            !0,
            0,
            0,
        ]
    }

    #[test]
    fn predicated_batch_start_that_may_fall_through() {
        // If the predicate skips the chain, the engine runs on past it
        // into whatever the shadow slot holds after the scanned words.
        contained_because(
            "predicated BB_START",
            Engine::Render,
            |w| {
                let (a, b) = (aperture(w, 0) + 6 * 4096, aperture(w, 0) + 7 * 4096);
                let mut chain = bb_start(b, false);
                chain[0] |= 1 << 15;
                write_guest(w, 0, 6, 0, &chain);
                write_guest(w, 0, 7, 0, &[BB_END]);
                pad(bb_start(a, false).to_vec())
            },
            |_, r| *r == Reason::ControlFlow(ControlFlow::PredicatedBatchStart),
        );
    }

    #[test]
    fn state_after_a_conditional_end_may_not_take_effect() {
        // The batch sets up a destination at the edge of vGPU 0's slice,
        // may end at the MI_CONDITIONAL_BATCH_BUFFER_END, and only then
        // sets a harmless one; the ring's scanlines blit after the batch
        // draws into whichever is in effect.
        contained_because(
            "conditional end",
            Engine::Blitter,
            |w| {
                let ap = aperture(w, 0);
                let edge = ap + EDGE_PAGE * 4096 + 4096 - 64;
                let batch = ap + 6 * 4096;
                let mut b = setup_blt(edge, 4096).to_vec();
                b.extend(cond_end(ap + 2 * 4096, 0));
                b.extend(setup_blt(ap + 8 * 4096, 64));
                b.push(BB_END);
                write_guest(w, 0, 6, 0, &b);
                let mut ring = bb_start(batch, false).to_vec();
                // XY_SCANLINES_BLT: 16 rows of 64 pixels.
                ring.extend([BLT | (0x25 << 22) | 1, 0, 16 << 16 | 64]);
                pad(ring)
            },
            |_, r| matches!(r, Reason::UnseenState(_)),
        );
    }
}
