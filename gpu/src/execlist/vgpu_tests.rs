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

#[test]
fn a_vgpu_in_execlist_mode_is_not_saved_until_the_format_carries_it() {
    let mut w = world();
    let mut buf = vec![0u8; 1 << 16];
    assert!(w.vgpu.save(&mut w.gpu, &w.mem, &mut buf).is_ok());
    enable(&mut w);
    assert_eq!(
        w.vgpu.save(&mut w.gpu, &w.mem, &mut buf).unwrap_err(),
        crate::persist::SaveError::Execlists
    );
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
