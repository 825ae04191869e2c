//! The execlist interface end to end: a guest driver's ELSP writes
//! through the vGPU, the scanner and the scheduler to `SimGpu`, the CSB
//! and the context images as the guest reads them, and its contexts'
//! PPGTTs contained by the shadow.

use super::*;
use crate::addr::{PhysFrame, PAGE_SIZE};
use crate::backend::{Backend, ContextId, PhysMem, Submission};
use crate::engine::Engine;
use crate::ggtt::{GuestPte, PteFlags};
use crate::partition::{GmLayout, GmTranslation, PartitionAllocator, VgpuType};
use crate::ppgtt::{Entry, WRITABLE};
use crate::regs::GGTT_BAR0_OFFSET;
use crate::sim::SimGpu;
use crate::testutil::*;
use crate::vgpu::{
    AccessSize, FrameRuns, GateRejection, GuestFault, GuestMemoryMap, MmioEffect, RingSubmission,
    SubmissionGate, Vgpu, VgpuError,
};

pub(super) const RENDER: Engine = Engine::Render;
/// Guest pages, and their frames (another guest's from FOREIGN).
pub(super) const PAGES: u64 = 48;
pub(super) const GUEST: u64 = 0x1000;
pub(super) const FOREIGN: u64 = 0x3000;
pub(super) const POOL: u64 = 0x8000;
/// Aperture pages the guest maps to its pages 0..APERTURE_PAGES: ring A
/// in page 0, context A in 1-2, ring B in 3, context B in 4-5, GGTT data
/// in 6.
pub(super) const APERTURE_PAGES: u64 = 8;
/// Its PPGTT: PML4 in page 10, PDP 11, PD 12, PT 13; PPGTT 0 maps page
/// 20, 0x1000 page 21 (a batch), 0x2000 another guest's frame number.
pub(super) const PML4: u64 = 10;

pub(super) struct World {
    pub(super) gpu: SimGpu<SparseMem>,
    pub(super) vgpu: Vgpu,
    pub(super) mem: FrameRuns<4>,
    pub(super) ap: u64,
    pub(super) run: Runner,
}

pub(super) fn guest_write(w: &mut World, page: u64, off: u64, bytes: &[u8]) {
    let frame = w.mem.frame_of(GuestPage::new(page).unwrap()).unwrap();
    w.gpu.mem_mut().write(frame.at(off), bytes).unwrap();
}

pub(super) fn guest_dwords(w: &mut World, page: u64, off: u64, dwords: &[u32]) {
    let b: Vec<u8> = dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
    guest_write(w, page, off, &b);
}

pub(super) fn frame_u32(w: &World, frame: u64, off: u64) -> u32 {
    let mut b = [0u8; 4];
    w.gpu
        .mem()
        .read(PhysFrame::new(frame).unwrap().at(off), &mut b)
        .unwrap();
    u32::from_le_bytes(b)
}

pub(super) fn mmio(w: &mut World, rel: u32, value: u32) -> Result<MmioEffect, VgpuError> {
    let off = RENDER.mmio_base() + rel;
    w.vgpu
        .mmio_write(&mut w.gpu, &w.mem, off, AccessSize::Dword, u64::from(value))
}

pub(super) fn read(w: &mut World, rel: u32) -> u32 {
    let off = RENDER.mmio_base() + rel;
    w.vgpu
        .mmio_read(&mut w.gpu, &w.mem, off, AccessSize::Dword)
        .unwrap() as u32
}

pub(super) fn world() -> World {
    let mut gpu = sim();
    let mut a =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let p = a.allocate(VgpuType::Small).unwrap();
    let mut vgpu = Vgpu::new(&p);
    let mem = guest_mem(0, GUEST, PAGES);
    let ap = vgpu.translation().guest_view().aperture.base().raw();
    for i in 0..APERTURE_PAGES {
        let pte = GuestPte::map(GuestPage::new(i).unwrap(), PteFlags::NONE);
        let off = GGTT_BAR0_OFFSET + ((ap >> 12) + i) as u32 * 8;
        let _ = vgpu
            .mmio_write(&mut gpu, &mem, off, AccessSize::Qword, pte.raw())
            .unwrap();
    }
    vgpu.enable_ppgtt(PhysFrame::new(POOL).unwrap(), 16, &mut gpu)
        .unwrap();
    let mut w = World {
        gpu,
        vgpu,
        mem,
        ap,
        run: Runner::new(),
    };
    let t = |p| Entry::new(p, WRITABLE);
    for (page, index, e) in [
        (PML4, 0, t(11)),
        (11, 0, t(12)),
        (12, 0, t(13)),
        (13, 0, t(20)),
        (13, 1, t(21)),
        (13, 2, t(FOREIGN)),
    ] {
        guest_write(&mut w, page, index * 8, &e.raw().to_le_bytes());
    }
    w
}

/// Writes context `lrc_page`'s image: its ring in aperture page
/// `ring_page`, one page, head and tail, the PPGTT root.
pub(super) fn context(w: &mut World, lrc_page: u64, ring_page: u64, head: u32, tail: u32) {
    let mut s = [0u32; lrc::READ_DWORDS];
    s[lrc::RING_HEAD + 1] = head;
    s[lrc::RING_TAIL + 1] = tail;
    s[lrc::RING_START + 1] = (w.ap + ring_page * PAGE_SIZE) as u32;
    s[lrc::RING_CTL + 1] = 1;
    s[lrc::PDP0_LDW + 1] = (PML4 * PAGE_SIZE) as u32;
    guest_dwords(w, lrc_page + 1, 0, &s);
}

pub(super) fn descriptor(w: &World, lrc_page: u64, id: u32) -> u64 {
    u64::from(id) << 32
        | (w.ap + lrc_page * PAGE_SIZE)
        | DESC_PRIVILEGE
        | ADDRESSING_4_LEVEL << DESC_ADDRESSING_SHIFT
        | DESC_VALID
}

/// The ELSP writes of a list, element 1 first.
pub(super) fn elsp(w: &mut World, e0: u64, e1: u64) -> Result<MmioEffect, VgpuError> {
    for d in [(e1 >> 32) as u32, e1 as u32, (e0 >> 32) as u32] {
        assert_eq!(mmio(w, ring::ELSP, d)?, MmioEffect::Done);
    }
    mmio(w, ring::ELSP, e0 as u32)
}

pub(super) fn enable(w: &mut World) {
    let on = crate::regs::masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE);
    assert_eq!(mmio(w, ring::MODE, on), Ok(MmioEffect::Done));
}

/// The CSB entries the guest has not read yet, and it reads them.
pub(super) fn take_csb(w: &mut World) -> Vec<(u32, u32)> {
    let ptr = read(w, ring::CSB_PTR);
    let (mut at, write) = ((ptr >> 8) & 7, ptr & 0xf);
    let mut out = Vec::new();
    while at != write {
        at = if at == 7 {
            0
        } else {
            (at + 1) % ring::CSB_ENTRIES
        };
        let status = read(w, ring::CSB_BASE + 8 * at);
        let id = read(w, ring::CSB_BASE + 8 * at + 4);
        out.push((status, id));
    }
    let _ = mmio(w, ring::CSB_PTR, crate::regs::masked(0x7 << 8, write << 8));
    out
}

pub(super) fn run_all(w: &mut World, gate: &mut dyn SubmissionGate) {
    w.run
        .run_idle(&mut w.gpu, gate, core::slice::from_mut(&mut w.vgpu));
}

#[test]
fn a_two_element_list_runs_through_the_scanner_and_reports_in_the_csb() {
    let mut w = world();
    let mut gate = scan_gate(&mut w.gpu);
    let data = w.ap + 6 * PAGE_SIZE;
    guest_dwords(&mut w, 0, 0, &sdi(data, 0xa));
    guest_dwords(&mut w, 3, 0, &sdi(data + 4, 0xb));
    context(&mut w, 1, 0, 0, 16);
    context(&mut w, 4, 3, 0, 16);
    // ELSP before execlists are on is the guest's mistake.
    let (a, b) = (descriptor(&w, 1, 0x11), descriptor(&w, 4, 0x22));
    enable(&mut w);
    assert_eq!(elsp(&mut w, a, b), Ok(MmioEffect::Queued(RENDER)));
    assert_eq!(read(&mut w, ring::EXECLIST_STATUS_HI), 0x11);
    run_all(&mut w, &mut *gate);
    assert_eq!(frame_u32(&w, GUEST + 6, 0), 0xa);
    assert_eq!(frame_u32(&w, GUEST + 6, 4), 0xb);
    assert_eq!(
        take_csb(&mut w),
        vec![
            (CTX_STATUS_IDLE_ACTIVE, 0),
            (CTX_STATUS_ELEMENT_SWITCH | CTX_STATUS_COMPLETE, 0x11),
            (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, 0x22),
        ]
    );
    // Each context image now holds its new head.
    assert_eq!(
        frame_u32(&w, GUEST + 2, 4 * (lrc::RING_HEAD as u64 + 1)),
        16
    );
    assert_eq!(
        frame_u32(&w, GUEST + 5, 4 * (lrc::RING_HEAD as u64 + 1)),
        16
    );
    assert!(w.vgpu.is_idle());
    // The legacy TAIL is not for an engine in execlist mode.
    assert_eq!(
        mmio(&mut w, ring::TAIL, 8),
        Err(VgpuError::Guest(GuestFault::WrongMode { engine: RENDER }))
    );
}

#[test]
fn resubmitting_the_running_context_appends_and_another_preempts() {
    let mut w = world();
    let mut gate = scan_gate(&mut w.gpu);
    let data = w.ap + 6 * PAGE_SIZE;
    let mut ring_a = sdi(data, 1).to_vec();
    ring_a.extend(sdi(data + 8, 2));
    guest_dwords(&mut w, 0, 0, &ring_a);
    guest_dwords(&mut w, 3, 0, &sdi(data + 4, 3));
    enable(&mut w);
    let (a, b) = (descriptor(&w, 1, 1), descriptor(&w, 4, 2));
    context(&mut w, 1, 0, 0, 16);
    assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
    // Before any of A's work reached the engine, B preempts it: A's head
    // stays 0 in its image.
    context(&mut w, 4, 3, 0, 16);
    assert_eq!(elsp(&mut w, b, 0), Ok(MmioEffect::Queued(RENDER)));
    run_all(&mut w, &mut *gate);
    assert_eq!(
        frame_u32(&w, GUEST + 6, 0),
        0,
        "A was preempted before it ran"
    );
    assert_eq!(frame_u32(&w, GUEST + 6, 4), 3);
    assert_eq!(frame_u32(&w, GUEST + 2, 4 * (lrc::RING_HEAD as u64 + 1)), 0);
    assert_eq!(
        take_csb(&mut w),
        vec![
            (CTX_STATUS_IDLE_ACTIVE, 0),
            (CTX_STATUS_PREEMPTED, 1),
            (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, 2),
        ]
    );
    // A again, half its work; then the rest by a lite restore.
    assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
    context(&mut w, 1, 0, 0, 32);
    assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
    run_all(&mut w, &mut *gate);
    assert_eq!(frame_u32(&w, GUEST + 6, 0), 1);
    assert_eq!(frame_u32(&w, GUEST + 6, 8), 2);
    assert_eq!(
        take_csb(&mut w)[1..],
        [
            (CTX_STATUS_PREEMPTED | CTX_STATUS_LITE_RESTORE, 1),
            (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, 1),
        ]
    );
    assert_eq!(
        frame_u32(&w, GUEST + 2, 4 * (lrc::RING_HEAD as u64 + 1)),
        32
    );
}

#[test]
fn bad_lists_are_typed_guest_faults() {
    type Case = (&'static str, fn(&mut World) -> u64);
    let cases: [Case; 4] = [
        ("element 0 not valid", |w| descriptor(w, 1, 1) & !DESC_VALID),
        ("no privilege bit", |w| {
            descriptor(w, 1, 1) & !DESC_PRIVILEGE
        }),
        ("3-level addressing", |w| {
            descriptor(w, 1, 1) & !(3 << DESC_ADDRESSING_SHIFT) | 1 << DESC_ADDRESSING_SHIFT
        }),
        ("context outside the slices", |w| {
            descriptor(w, 1, 1) + (1 << 31)
        }),
    ];
    for (what, desc) in cases {
        let mut w = world();
        context(&mut w, 1, 0, 0, 16);
        enable(&mut w);
        let d = desc(&mut w);
        let err = elsp(&mut w, d, 0).unwrap_err();
        assert!(
            matches!(
                err,
                VgpuError::Guest(
                    GuestFault::BadSubmission { .. } | GuestFault::ContextOutsideSlices { .. }
                )
            ),
            "{what}: {err:?}"
        );
    }
    // A root that is not the guest's page.
    let mut w = world();
    context(&mut w, 1, 0, 0, 16);
    guest_dwords(
        &mut w,
        2,
        4 * (lrc::PDP0_LDW as u64 + 1),
        &[(PAGES * PAGE_SIZE) as u32],
    );
    enable(&mut w);
    let d = descriptor(&w, 1, 1);
    assert!(matches!(
        elsp(&mut w, d, 0),
        Err(VgpuError::Guest(GuestFault::Ppgtt(_)))
    ));
}

/// Hands the guest's ring to the engine as it is: the scanner does not
/// follow PPGTT batches yet (issue 12), so this is how the containment of
/// a PPGTT batch by the shadow is tested through the vGPU.
struct Unscanned;

impl SubmissionGate for Unscanned {
    fn admit(
        &mut self,
        _translation: &GmTranslation,
        request: &RingSubmission,
        _backend: &mut dyn Backend,
    ) -> Result<Submission, GateRejection> {
        Ok(Submission::new(
            request.engine(),
            request.context(),
            request.ring().host(),
            request.head(),
            request.tail(),
        )
        .unwrap())
    }
}

#[test]
fn a_contexts_ppgtt_batch_reaches_only_its_own_frames() {
    let mut w = world();
    // The batch at PPGTT 0x1000: a store to PPGTT 0x10 (guest page 20),
    // one to a page named by another guest's frame number (lands on the
    // scratch page), then a guest rewrite of its PT is seen at the next
    // submission.
    let mut batch = ppgtt_sdi(0x10, 0x1234).to_vec();
    batch.extend(ppgtt_sdi(0x2010, 0x5678));
    batch.push(BB_END);
    guest_dwords(&mut w, 21, 0, &batch);
    let mut ring = ppgtt_bb_start(0x1000, false).to_vec();
    ring.push(NOOP);
    guest_dwords(&mut w, 0, 0, &ring);
    context(&mut w, 1, 0, 0, 16);
    enable(&mut w);
    let a = descriptor(&w, 1, 1);
    assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
    run_all(&mut w, &mut Unscanned);
    assert_eq!(frame_u32(&w, GUEST + 20, 0x10), 0x1234);
    assert_eq!(frame_u32(&w, FOREIGN, 0x10), 0);
    let scratch = w.vgpu.shadows().unwrap().tables().scratch_page().number();
    assert_eq!(frame_u32(&w, scratch, 0x10), 0x5678);
    // PPGTT 0 now maps guest page 22: the next submission sees it.
    guest_write(&mut w, 13, 0, &Entry::new(22, WRITABLE).raw().to_le_bytes());
    guest_dwords(&mut w, 0, 16, &ring);
    context(&mut w, 1, 0, 16, 32);
    assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
    run_all(&mut w, &mut Unscanned);
    assert_eq!(frame_u32(&w, GUEST + 22, 0x10), 0x1234);
    assert_eq!(w.vgpu.shadows().unwrap().tables().tables_in_use(), 4);
    // A reset releases every shadow table.
    w.vgpu.reset(&mut w.gpu);
    assert_eq!(w.vgpu.shadows().unwrap().tables().tables_in_use(), 0);
    let _ = ContextId::MONITOR;
}

/// A draw predicated off: it dispatches no shader on the model, but the
/// scanner's policy on shader work applies to it all the same.
fn predicated_draw() -> Vec<u32> {
    let mut v = lri(0x2418, 0).to_vec(); // MI_PREDICATE_RESULT = 0
    v.extend([0x7b00_0005 | 1 << 8, 4, 3, 0, 1, 0, 0]);
    v
}

#[test]
fn shader_work_is_refused_in_ggtt_contexts_unless_allow_ggtt() {
    use crate::mediate::ShaderPolicy;
    for policy in [
        ShaderPolicy::PpgttOnly,
        ShaderPolicy::AllowGgtt,
        ShaderPolicy::Deny,
    ] {
        // A legacy ring: a GGTT context.
        let mut w = world();
        let mut gate = scan_gate(&mut w.gpu);
        gate.set_shader_policy(policy);
        let draw = predicated_draw();
        guest_dwords(&mut w, 0, 0, &draw);
        let ap = w.ap as u32;
        assert_eq!(mmio(&mut w, ring::START, ap), Ok(MmioEffect::Done));
        assert_eq!(mmio(&mut w, ring::CTL, 1), Ok(MmioEffect::Done));
        let tail = 4 * draw.len() as u32;
        assert_eq!(
            mmio(&mut w, ring::TAIL, tail),
            Ok(MmioEffect::Queued(RENDER))
        );
        run_all(&mut w, &mut *gate);
        let legacy_ok = outcome(&w.vgpu).is_ok();
        assert_eq!(legacy_ok, policy == ShaderPolicy::AllowGgtt, "{policy:?}");
        // The same commands in an execlist context: a PPGTT context.
        let mut w = world();
        let mut gate = scan_gate(&mut w.gpu);
        gate.set_shader_policy(policy);
        guest_dwords(&mut w, 0, 0, &draw);
        context(&mut w, 1, 0, 0, tail);
        enable(&mut w);
        let a = descriptor(&w, 1, 1);
        assert_eq!(elsp(&mut w, a, 0), Ok(MmioEffect::Queued(RENDER)));
        run_all(&mut w, &mut *gate);
        let ppgtt_ok = outcome(&w.vgpu).is_ok();
        assert_eq!(ppgtt_ok, policy != ShaderPolicy::Deny, "{policy:?}");
    }
}

// Migration of an execlist guest (`crate::persist`, "Execlists and PPGTTs
// across a migration"): two contexts, each in its own PPGTT, draw through
// their surface states and write post-sync fences; the vGPU is saved
// between submissions, restored on another GPU with other slices, other
// frames and another shadow pool, and goes on as the source does.

/// Guest frames and shadow pool of the destination.
const DEST_GUEST: u64 = 0x5000;
const DEST_POOL: u64 = 0x9000;
/// PPGTT addresses both contexts use: batches, the surface state heap,
/// the render target, the fences.
const VA_BATCH: u64 = 0x4000;
const VA_HEAP: u64 = 0x5000;
const VA_TARGET: u64 = 0x6000;
const VA_FENCE: u64 = 0x7000;

/// A context of the migrated guest: its image and ring (aperture pages),
/// its PML4 and the guest pages its PPGTT maps at `VA_BATCH..`.
#[derive(Clone, Copy)]
struct Ctx {
    lrc: u64,
    ring: u64,
    id: u32,
    pml4: u64,
    /// Guest pages of batch, heap, target, fences.
    pages: u64,
}

const A: Ctx = Ctx {
    lrc: 1,
    ring: 0,
    id: 0xa,
    pml4: PML4,
    pages: 36,
};
/// B's tables: PML4 30, PDP 31, PD 32, PT 33.
const B: Ctx = Ctx {
    lrc: 4,
    ring: 3,
    id: 0xb,
    pml4: 30,
    pages: 40,
};

/// A's PPGTT (the world's) gains the pages at `VA_BATCH..`; B gets its own
/// tables; both context images, empty rings.
fn two_contexts(w: &mut World) {
    let t = |p| Entry::new(p, WRITABLE);
    for (page, index, e) in [(30, 0, t(31)), (31, 0, t(32)), (32, 0, t(33))] {
        guest_write(w, page, index * 8, &e.raw().to_le_bytes());
    }
    for (pt, c) in [(13, A), (33, B)] {
        for i in 0..4 {
            let e = t(c.pages + i);
            guest_write(
                w,
                pt,
                (VA_BATCH / PAGE_SIZE + i) * 8,
                &e.raw().to_le_bytes(),
            );
        }
        context(w, c.lrc, c.ring, 0, 0);
        let root = (c.pml4 * PAGE_SIZE) as u32;
        guest_dwords(w, c.lrc + 1, 4 * (lrc::PDP0_LDW as u64 + 1), &[root]);
    }
}

/// Draw `n` of context `c`: a render target of 4 x 2 pixels at `VA_TARGET
/// + 0x100 n` in a colour of its own, through the binding table at heap
/// `0x20 n` and the surface state at heap `0x400 + 0x40 n`, then the
/// fence `n` by a PIPE_CONTROL post-sync write to `VA_FENCE + 8 n`. The
/// guest writes the batch at `VA_BATCH + 0x100 n`, a batch start at ring
/// offset `16 n` and the new RING_TAIL into the context image.
fn draw(w: &mut World, c: Ctx, n: u32) {
    let (batch, heap) = (c.pages, c.pages + 1);
    let table = 0x20 * u64::from(n);
    let state = 0x400 + 0x40 * u64::from(n);
    guest_dwords(w, heap, table, &[state as u32]);
    let target = VA_TARGET + 0x100 * u64::from(n);
    let mut rss = [0u32; 16];
    rss[0] = 1 << 29 | 0xc7 << 18; // 2D, R8G8B8A8_UNORM, linear
    rss[2] = 3 | 1 << 16; // 4 x 2
    rss[3] = 63; // pitch 64
    rss[8] = target as u32;
    rss[12..16].copy_from_slice(&[c.id, n, 0x5a, 0xff]);
    guest_dwords(w, heap, state, &rss);
    let mut sba = [0u32; 19];
    sba[0] = 0x6101_0000 | 17;
    sba[4] = VA_HEAP as u32 | 1; // surface state base, modify enable
    let mut b = sba.to_vec();
    b.extend([0x782a_0000, table as u32]); // 3DSTATE_BINDING_TABLE_POINTERS_PS
    b.extend([0x7b00_0005, 4, 3, 0, 1, 0, 0]); // 3DPRIMITIVE
    let mut fence = pipe_control_imm(VA_FENCE + 8 * u64::from(n), fence_value(c, n));
    fence[1] &= !(1 << 24); // the address is in the PPGTT
    b.extend(fence);
    b.push(BB_END);
    guest_dwords(w, batch, 0x100 * u64::from(n), &b);
    let mut ring = ppgtt_bb_start(VA_BATCH + 0x100 * u64::from(n), false).to_vec();
    ring.push(NOOP);
    guest_dwords(w, c.ring, 16 * u64::from(n), &ring);
    let tail = 16 * (n + 1);
    guest_dwords(w, c.lrc + 1, 4 * (lrc::RING_TAIL as u64 + 1), &[tail]);
}

fn fence_value(c: Ctx, n: u32) -> u64 {
    u64::from(c.id) << 32 | u64::from(n)
}

/// What draw `n` of `c` left: its pixels and its fence, read in the
/// guest's pages through `w`'s memory map.
fn drawn(w: &World, c: Ctx, n: u32) -> (u32, u64) {
    let frame = |p: u64| w.mem.frame_of(GuestPage::new(p).unwrap()).unwrap();
    let mut px = [0u8; 4];
    let at = frame(c.pages + 2).at(0x100 * u64::from(n) + 64 + 12); // row 1, pixel 3
    w.gpu.mem().read(at, &mut px).unwrap();
    let mut f = [0u8; 8];
    let at = frame(c.pages + 3).at(8 * u64::from(n));
    w.gpu.mem().read(at, &mut f).unwrap();
    (u32::from_le_bytes(px), u64::from_le_bytes(f))
}

fn all_guest_pages(w: &World) -> Vec<u8> {
    let mut all = vec![0u8; (PAGES * PAGE_SIZE) as usize];
    for (p, page) in all.chunks_exact_mut(PAGE_SIZE as usize).enumerate() {
        let f = w.mem.frame_of(GuestPage::new(p as u64).unwrap()).unwrap();
        w.gpu.mem().read(f.start(), page).unwrap();
    }
    all
}

/// Every execlist register of every engine, as the guest reads them.
fn execlist_registers(w: &mut World) -> Vec<u32> {
    let mut out = Vec::new();
    for e in Engine::ALL {
        let rels = [
            ring::MODE,
            ring::CSB_PTR,
            ring::EXECLIST_STATUS_LO,
            ring::EXECLIST_STATUS_HI,
        ];
        let csb = (0..2 * ring::CSB_ENTRIES).map(|i| ring::CSB_BASE + 4 * i);
        for rel in rels.into_iter().chain(csb) {
            let off = e.mmio_base() + rel;
            let v = w.vgpu.mmio_read(&mut w.gpu, &w.mem, off, AccessSize::Dword);
            out.push(v.unwrap() as u32);
        }
    }
    out
}

/// The vGPU restored from `blob` on another GPU: a partition after
/// another vGPU's (other slices), the guest's pages copied onto other
/// frames (what the migration stream does), its own shadow pool.
fn destination(src: &World, blob: &[u8]) -> World {
    let mut a =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let _squatter = a.allocate(VgpuType::Small).unwrap();
    let p = a.allocate(VgpuType::Small).unwrap();
    let mut gpu = sim();
    let mem = guest_mem(0, DEST_GUEST, PAGES);
    let pages = all_guest_pages(src);
    for (i, page) in pages.chunks_exact(PAGE_SIZE as usize).enumerate() {
        let f = mem.frame_of(GuestPage::new(i as u64).unwrap()).unwrap();
        gpu.mem_mut().write(f.start(), page).unwrap();
    }
    let mut vgpu = Vgpu::restore(blob, &p, &mut gpu, &mem).unwrap();
    vgpu.enable_ppgtt(PhysFrame::new(DEST_POOL).unwrap(), 16, &mut gpu)
        .unwrap();
    assert_ne!(
        vgpu.translation().host_aperture(),
        src.vgpu.translation().host_aperture()
    );
    assert_eq!(
        vgpu.translation().guest_view(),
        src.vgpu.translation().guest_view()
    );
    World {
        gpu,
        vgpu,
        mem,
        ap: src.ap,
        run: Runner::new(),
    }
}

/// Draws `na` of A and `nb` of B as one two-element list, run to its end.
fn draw_both(w: &mut World, na: u32, nb: u32) {
    draw(w, A, na);
    draw(w, B, nb);
    let (a, b) = (descriptor(w, A.lrc, A.id), descriptor(w, B.lrc, B.id));
    assert_eq!(elsp(w, a, b), Ok(MmioEffect::Queued(RENDER)));
    run_all(w, &mut Unscanned);
    assert_eq!(outcome(&w.vgpu), Ok(()));
}

#[test]
fn an_execlist_guest_drawing_in_two_ppgtts_migrates_to_other_slices_and_frames_and_goes_on() {
    let mut src = world();
    two_contexts(&mut src);
    enable(&mut src);
    draw_both(&mut src, 0, 0);
    assert_eq!(take_csb(&mut src).len(), 3);
    // Mid-way: A submitted, then resubmitted with more work (a lite
    // restore), then preempted by B before any of it ran; B runs. The
    // guest has not read these switches yet, and has written half of
    // the list that resubmits A when it is stopped.
    draw(&mut src, A, 1);
    let (a, b) = (descriptor(&src, A.lrc, A.id), descriptor(&src, B.lrc, B.id));
    assert_eq!(elsp(&mut src, a, 0), Ok(MmioEffect::Queued(RENDER)));
    draw(&mut src, A, 2);
    assert_eq!(elsp(&mut src, a, 0), Ok(MmioEffect::Queued(RENDER)));
    draw(&mut src, B, 1);
    assert_eq!(elsp(&mut src, b, 0), Ok(MmioEffect::Queued(RENDER)));
    // Queued work is not saved: it runs to its end first.
    let mut blob = vec![0u8; crate::persist::max_saved_size(VgpuType::Small)];
    assert_eq!(
        src.vgpu.save(&mut src.gpu, &src.mem, &mut blob),
        Err(crate::persist::SaveError::Busy)
    );
    run_all(&mut src, &mut Unscanned);
    assert_eq!(drawn(&src, A, 1).1, 0, "A was preempted before it ran");
    assert_eq!(drawn(&src, B, 1).1, fence_value(B, 1));
    assert_eq!(mmio(&mut src, ring::ELSP, 0), Ok(MmioEffect::Done));
    assert_eq!(mmio(&mut src, ring::ELSP, 0), Ok(MmioEffect::Done));
    let n = src.vgpu.save(&mut src.gpu, &src.mem, &mut blob).unwrap();
    let mut dst = destination(&src, &blob[..n]);

    // The guest reads the same execlist registers and CSB on both, and
    // finds the switches it had not read.
    assert_eq!(execlist_registers(&mut src), execlist_registers(&mut dst));
    let switches = vec![
        (CTX_STATUS_IDLE_ACTIVE, 0),
        (CTX_STATUS_PREEMPTED | CTX_STATUS_LITE_RESTORE, A.id),
        (CTX_STATUS_PREEMPTED, A.id),
        (CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE, B.id),
    ];
    assert_eq!(take_csb(&mut src), switches);
    assert_eq!(take_csb(&mut dst), switches);
    assert_eq!(dst.vgpu.shadows().unwrap().tables().tables_in_use(), 0);
    // The rest of the list resubmits A, from where it stopped: draws 1
    // and 2. Then both draw on; the reference is the source going on.
    for w in [&mut src, &mut dst] {
        assert_eq!(mmio(w, ring::ELSP, (a >> 32) as u32), Ok(MmioEffect::Done));
        assert_eq!(
            mmio(w, ring::ELSP, a as u32),
            Ok(MmioEffect::Queued(RENDER))
        );
        run_all(w, &mut Unscanned);
        assert_eq!(outcome(&w.vgpu), Ok(()));
    }
    assert_eq!(all_guest_pages(&src), all_guest_pages(&dst));
    for n in 2..6 {
        draw_both(&mut src, n + 1, n);
        draw_both(&mut dst, n + 1, n);
        assert_eq!(take_csb(&mut src), take_csb(&mut dst));
        assert_eq!(
            all_guest_pages(&src),
            all_guest_pages(&dst),
            "after draw {n}"
        );
    }
    // Every draw and fence is there, on the destination's frames.
    for (c, draws) in [(A, 7), (B, 6)] {
        for n in 0..draws {
            let pixel = 0xff5a_0000 | n << 8 | c.id;
            assert_eq!(
                drawn(&dst, c, n),
                (pixel, fence_value(c, n)),
                "{} {n}",
                c.id
            );
        }
    }
    // Its shadows are the destination's own, rebuilt from the guest's
    // tables: two roots in its pool.
    let shadows = dst.vgpu.shadows().unwrap();
    for c in [A, B] {
        let root = shadows.frame_of(GuestPage::new(c.pml4).unwrap()).unwrap();
        assert!(shadows.tables().owns_frame(root), "{}", c.id);
        let pool = DEST_POOL..DEST_POOL + crate::ppgtt::shadow::pool_frames(16);
        assert!(pool.contains(&root.number()), "{}", c.id);
    }
}
