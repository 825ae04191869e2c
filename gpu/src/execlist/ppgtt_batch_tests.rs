//! PPGTT batches end to end: a guest context's ring starts batches in its
//! PPGTT (the Address Space Indicator, as i915 starts every user batch),
//! the scanner reads them through the context's shadow PPGTT, copies and
//! scans them non-privileged, and `SimGpu` runs the copy from the reserved
//! window, non-privileged, in the shadow PPGTT. Hostile batches are
//! refused with their reason, or fault their own context and reach no
//! other memory.

use super::vgpu_tests::*;
use crate::addr::{GuestPage, PhysFrame, PAGE_SIZE};
use crate::backend::{FaultKind, PhysMem};
use crate::encode::mesa_state_base;
use crate::engine::Engine;
use crate::execlist::lrc;
use crate::ppgtt::{window_batch_page, Entry, WINDOW_BASE, WINDOW_INDEX, WRITABLE};
use crate::regs::ring;
use crate::scan::regs::RegRefusal;
use crate::scan::scanner::{NonPrivileged, PpgttFault, Reason};
use crate::sim::ppgtt::tests::surface_state;
use crate::testutil::*;
use crate::vgpu::{FailReason, MmioEffect, VgpuError, VgpuState};

/// PPGTT addresses of this world (PT entry = VA >> 12, in PT page 13):
/// batches at 0x1_0000 (page 30), 0x1_1000 (31), 0x1_2000 (32); data at
/// 0x2_0000 (34), a surface state heap at 0x2_1000 (35), a render target
/// at 0x2_2000 (36), a copy source at 0x2_3000 (37); another vGPU's frame
/// at 0x3_0000, one of the monitor's (the vGPU's own shadow batch) at
/// 0x3_1000; nothing at 0x4_0000.
const BATCH: u64 = 0x1_0000;
const CALLEE: u64 = 0x1_1000;
const CHAINED: u64 = 0x1_2000;
const DATA: u64 = 0x2_0000;
const HEAP: u64 = 0x2_1000;
const TARGET: u64 = 0x2_2000;
const SOURCE: u64 = 0x2_3000;
const OTHERS: u64 = 0x3_0000;
const MONITORS: u64 = 0x3_1000;
const UNMAPPED: u64 = 0x4_0000;
const PT: u64 = 13;

fn page_of(va: u64) -> u64 {
    match va >> 12 {
        0x10 => 30,
        0x11 => 31,
        0x12 => 32,
        0x20 => 34,
        0x21 => 35,
        0x22 => 36,
        0x23 => 37,
        other => panic!("no guest page at {other:#x}"),
    }
}

fn ppgtt_world() -> World {
    let mut w = world();
    for va in [BATCH, CALLEE, CHAINED, DATA, HEAP, TARGET, SOURCE] {
        let e = Entry::new(page_of(va), WRITABLE);
        guest_write(&mut w, PT, (va >> 12) * 8, &e.raw().to_le_bytes());
    }
    let monitors = POOL + crate::ppgtt::shadow::SCRATCH_FRAMES + 3;
    for (va, page) in [(OTHERS, FOREIGN), (MONITORS, monitors)] {
        let e = Entry::new(page, WRITABLE);
        guest_write(&mut w, PT, (va >> 12) * 8, &e.raw().to_le_bytes());
    }
    // The other vGPU's frame holds its own data.
    let f = PhysFrame::new(FOREIGN).unwrap();
    w.gpu.mem_mut().write(f.at(0), &[0x5a; 4096]).unwrap();
    enable_on(&mut w, Engine::Render);
    w
}

fn mmio_on(w: &mut World, engine: Engine, rel: u32, value: u32) -> Result<MmioEffect, VgpuError> {
    let off = engine.mmio_base() + rel;
    w.vgpu.mmio_write(
        &mut w.gpu,
        &w.mem,
        off,
        crate::vgpu::AccessSize::Dword,
        u64::from(value),
    )
}

fn enable_on(w: &mut World, engine: Engine) {
    let on = crate::regs::masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE);
    assert_eq!(mmio_on(w, engine, ring::MODE, on), Ok(MmioEffect::Done));
}

fn batch(w: &mut World, va: u64, dwords: &[u32]) {
    guest_dwords(w, page_of(va), va & 0xfff, dwords);
}

/// Submits `ring` (in guest page 0, context image in pages 1-2) on
/// `engine` as one execlist element: Err if the ELSP write itself was
/// refused.
fn submit_on(w: &mut World, engine: Engine, ring: &[u32]) -> Result<MmioEffect, VgpuError> {
    let mut v = ring.to_vec();
    if v.len() % 2 == 1 {
        v.push(crate::encode::NOOP);
    }
    guest_dwords(w, 0, 0, &v);
    context(w, 1, 0, 0, (v.len() * 4) as u32);
    let d = descriptor(w, 1, 0x11);
    for dw in [0, 0, (d >> 32) as u32] {
        let _ = mmio_on(w, engine, ring::ELSP, dw)?;
    }
    mmio_on(w, engine, ring::ELSP, d as u32)
}

/// Submits and runs `ring` on `engine` to its end.
fn run_on(
    w: &mut World,
    gate: &mut crate::mediate::ScanGate,
    engine: Engine,
    ring: &[u32],
) -> Result<(), VgpuError> {
    assert_eq!(submit_on(w, engine, ring)?, MmioEffect::Queued(engine));
    run_all(w, gate);
    outcome(&w.vgpu)
}

fn run(w: &mut World, gate: &mut crate::mediate::ScanGate, ring: &[u32]) -> Result<(), VgpuError> {
    run_on(w, gate, Engine::Render, ring)
}

fn u32_at(w: &World, va: u64) -> u32 {
    frame_u32(w, GUEST + page_of(va), va & 0xfff)
}

fn window_frame(w: &World, engine: Engine, slot: usize) -> u64 {
    let t = w.vgpu.shadows().unwrap().tables();
    t.window_batch_frame(window_batch_page(engine, slot))
        .unwrap()
        .number()
}

/// The reason of the last rejection.
fn rejected(gate: &crate::mediate::ScanGate) -> Reason {
    gate.last_rejection().expect("a rejection").reason
}

/// A PPGTT MI command: its Use Global GTT bit (`bit`) cleared.
fn ppgtt(mut c: Vec<u32>, dword: usize, bit: u32) -> Vec<u32> {
    c[dword] &= !(1 << bit);
    c
}

#[test]
fn ppgtt_batches_run_non_privileged_from_the_window_and_their_writes_are_guest_pages() {
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    // What i915 submits: the ring starts the batch in the PPGTT; the
    // batch stores, counts in a GPR, calls a second-level batch and
    // chains to a third segment.
    let mut b = ppgtt_sdi(DATA, 0x1111).to_vec();
    b.extend(lri(0x2600, 0x2222));
    b.extend(ppgtt(srm(0x2600, DATA + 8).to_vec(), 0, 22));
    b.extend(ppgtt(pipe_control_imm(DATA + 0x10, 0x3333).to_vec(), 1, 24));
    b.extend(ppgtt_bb_start(CALLEE, true));
    b.extend(ppgtt_bb_start(CHAINED, false));
    batch(&mut w, BATCH, &b);
    let mut callee = ppgtt_sdi(DATA + 0x20, 0x4444).to_vec();
    callee.push(BB_END);
    batch(&mut w, CALLEE, &callee);
    let mut chained = ppgtt_sdi(DATA + 0x24, 0x5555).to_vec();
    chained.push(BB_END);
    batch(&mut w, CHAINED, &chained);
    run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false)).unwrap();
    for (off, v) in [
        (0, 0x1111),
        (8, 0x2222),
        (0x10, 0x3333),
        (0x20, 0x4444),
        (0x24, 0x5555),
    ] {
        assert_eq!(u32_at(&w, DATA + off), v, "{off:#x}");
    }
    // The engine ran the scanner's copy from the vGPU's window frames.
    assert_eq!(frame_u32(&w, window_frame(&w, Engine::Render, 0), 0), b[0]);
    assert_eq!(
        frame_u32(&w, window_frame(&w, Engine::Render, 1), 0),
        callee[0]
    );
    // The write set names the guest page written, through the shadow's
    // frames and the guest's memory map.
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    assert!(!set.untracked);
    let pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    assert_eq!(pages, [page_of(DATA)]);
    assert_eq!(set.pages().count(), 0);
}

#[test]
fn a_ppgtt_write_is_recorded_at_the_address_the_engine_takes() {
    // Bits 63:48 of an address are not part of it: a flush whose high
    // DWord sets bit 56 writes PPGTT TARGET (found by the fuzzer).
    let mut w = ppgtt_world();
    enable_on(&mut w, Engine::Blitter);
    let mut gate = scan_gate(&mut w.gpu);
    let mut b = ppgtt(flush_dw_imm(TARGET + 0x20, 0x77).to_vec(), 1, 2);
    b[2] = 1 << 24;
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    run_on(
        &mut w,
        &mut gate,
        Engine::Blitter,
        &ppgtt_bb_start(BATCH, false),
    )
    .unwrap();
    assert_eq!(u32_at(&w, TARGET + 0x20), 0x77);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    let pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    assert_eq!(pages, [page_of(TARGET)]);
}

#[test]
fn a_ppgtt_batch_rewritten_after_the_scan_changes_nothing() {
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let mut b = ppgtt_sdi(DATA, 0x600d).to_vec();
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    let queued = submit_on(&mut w, Engine::Render, &ppgtt_bb_start(BATCH, false));
    assert_eq!(queued, Ok(MmioEffect::Queued(Engine::Render)));
    // The scheduler dispatches it: the scan copies the batch.
    w.run
        .step(&mut w.gpu, &mut *gate, core::slice::from_mut(&mut w.vgpu));
    assert!(w.vgpu.in_flight(Engine::Render).is_some());
    // The guest rewrites the value and the address in its batch.
    let mut evil = ppgtt_sdi(OTHERS, 0xbad).to_vec();
    evil.push(BB_END);
    batch(&mut w, BATCH, &evil);
    run_all(&mut w, &mut *gate);
    assert_eq!(outcome(&w.vgpu), Ok(()));
    assert_eq!(u32_at(&w, DATA), 0x600d);
    assert_eq!(frame_u32(&w, FOREIGN, 0), 0x5a5a_5a5a);
}

#[test]
fn a_mesa_style_draw_in_a_ppgtt_batch_writes_its_render_target() {
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    // Binding table at heap + 0x100 -> surface state at heap + 0x200.
    guest_dwords(&mut w, page_of(HEAP), 0x100, &[0x200]);
    guest_dwords(
        &mut w,
        page_of(HEAP),
        0x200,
        &surface_state(TARGET, 4, 2, 64),
    );
    let mut b = mesa_state_base(HEAP).to_vec();
    b.extend([0x782a_0000, 0x100]); // 3DSTATE_BINDING_TABLE_POINTERS_PS
    b.extend([0x7b00_0005, 4, 3, 0, 1, 0, 0]); // 3DPRIMITIVE
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false)).unwrap();
    for y in 0..3u64 {
        for x in 0..16u64 {
            let want = if y < 2 && x < 4 { 0x4433_2211 } else { 0 };
            assert_eq!(u32_at(&w, TARGET + y * 64 + x * 4), want, "x {x} y {y}");
        }
    }
    // A draw writes through state: untracked.
    assert!(gate.take_write_set(w.vgpu.context()).unwrap().untracked);
    // Mesa's heaps lie anywhere in 48 bits: the same heap page mapped at
    // 4 GiB (PDP entry 4 -> PD in page 15 -> PT in page 16), the render
    // target moved, and the draw's state found there.
    for (page, index, child) in [(11, 4, 15), (15, 0, 16), (16, 0, page_of(HEAP))] {
        let e = Entry::new(child, WRITABLE);
        guest_write(&mut w, page, index * 8, &e.raw().to_le_bytes());
    }
    guest_dwords(&mut w, page_of(HEAP), 0x200, &surface_state(DATA, 4, 1, 16));
    let mut b = mesa_state_base(1 << 32).to_vec();
    b.extend([0x782a_0000, 0x100, 0x7b00_0005, 4, 3, 0, 1, 0, 0, BB_END]);
    batch(&mut w, BATCH, &b);
    guest_dwords(&mut w, 0, 0, &ppgtt_bb_start(BATCH, false));
    context(&mut w, 1, 0, 0, 16);
    let d = descriptor(&w, 1, 0x11);
    for dw in [0, 0, (d >> 32) as u32, d as u32] {
        let _ = mmio_on(&mut w, Engine::Render, ring::ELSP, dw).unwrap();
    }
    run_all(&mut w, &mut *gate);
    assert_eq!(outcome(&w.vgpu), Ok(()));
    assert_eq!(w.vgpu.state(), VgpuState::Running);
    assert_eq!(u32_at(&w, DATA + 12), 0x4433_2211);
}

#[test]
fn igt_style_fill_and_copy_in_a_ppgtt_batch_on_the_blitter() {
    let mut w = ppgtt_world();
    enable_on(&mut w, Engine::Blitter);
    let mut gate = scan_gate(&mut w.gpu);
    guest_dwords(&mut w, page_of(SOURCE), 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut b = color_blt(TARGET, 64, 0, 0, 16, 4, 0xc0ff_ee00).to_vec();
    b.extend(copy_blt(DATA, 16, 0, 0, 4, 2, SOURCE, 16, 0, 0));
    b.extend(ppgtt(flush_dw_imm(DATA + 0x100, 0xf1a5).to_vec(), 1, 2));
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    run_on(
        &mut w,
        &mut gate,
        Engine::Blitter,
        &ppgtt_bb_start(BATCH, false),
    )
    .unwrap();
    assert_eq!(u32_at(&w, TARGET + 3 * 64 + 60), 0xc0ff_ee00);
    assert_eq!(u32_at(&w, TARGET + 4 * 64), 0);
    for i in 0..8 {
        assert_eq!(u32_at(&w, DATA + 4 * i), i as u32 + 1);
    }
    assert_eq!(u32_at(&w, DATA + 0x100), 0xf1a5);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    let mut pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    pages.sort_unstable();
    // The heap page between them is listed too (runs join across small
    // gaps), never one it does not lie between.
    assert_eq!(pages, [page_of(DATA), page_of(HEAP), page_of(TARGET)]);
    assert!(!set.untracked);
}

#[test]
fn in_a_ppgtt_contexts_ring_blits_and_operands_without_ggtt_bit_are_ppgtt_addresses() {
    // The engine takes a blit's addresses, and an MI operand's without
    // its Use Global GTT bit, in the context's PPGTT, in the ring too: the
    // scanner leaves them alone and records the pages through the shadow.
    let mut w = ppgtt_world();
    enable_on(&mut w, Engine::Blitter);
    let mut gate = scan_gate(&mut w.gpu);
    let mut r = color_blt(TARGET, 64, 0, 0, 16, 4, 0xc0ff_ee00).to_vec();
    r.extend(ppgtt(flush_dw_imm(TARGET + 0x200, 0xf1a5).to_vec(), 1, 2));
    run_on(&mut w, &mut gate, Engine::Blitter, &r).unwrap();
    assert_eq!(u32_at(&w, TARGET + 3 * 64 + 60), 0xc0ff_ee00);
    assert_eq!(u32_at(&w, TARGET + 0x200), 0xf1a5);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    let pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    assert_eq!(pages, [page_of(TARGET)]);
    assert_eq!(set.pages().count(), 0);
    assert!(!set.untracked);
    // In a GGTT batch (privileged, started from the ring) too.
    let mut w = ppgtt_world();
    enable_on(&mut w, Engine::Blitter);
    let mut gate = scan_gate(&mut w.gpu);
    let mut b = color_blt(TARGET, 64, 0, 0, 16, 1, 0x0bad_f00d).to_vec();
    b.push(BB_END);
    guest_dwords(&mut w, 7, 0, &b);
    let r = bb_start(w.ap + 7 * PAGE_SIZE, false);
    run_on(&mut w, &mut gate, Engine::Blitter, &r).unwrap();
    assert_eq!(u32_at(&w, TARGET + 60), 0x0bad_f00d);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    let pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    assert_eq!(pages, [page_of(TARGET)]);
    // A PIPE_CONTROL without its GGTT bit in the render ring: the same.
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let r = ppgtt(pipe_control_imm(DATA + 0x10, 0x3333).to_vec(), 1, 24);
    run(&mut w, &mut gate, &r).unwrap();
    assert_eq!(u32_at(&w, DATA + 0x10), 0x3333);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    let pages: Vec<u64> = set.ram_pages(&w.mem).map(GuestPage::number).collect();
    assert_eq!(pages, [page_of(DATA)]);
}

#[test]
fn in_a_ppgtt_contexts_ring_an_operand_with_its_ggtt_bit_is_still_audited_and_remapped() {
    // Outside the vGPU's slices: refused.
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let r = run(&mut w, &mut gate, &pipe_control_imm(0x10, 1));
    assert!(matches!(r, Err(VgpuError::Rejected(_))), "{r:?}");
    assert!(
        matches!(rejected(&gate), Reason::Memory { addr: 0x10, .. }),
        "{:?}",
        rejected(&gate)
    );
    // Its own GM data page (aperture page 6): remapped, written there,
    // recorded as a GM page.
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let gm = w.ap + 6 * PAGE_SIZE;
    run(&mut w, &mut gate, &pipe_control_imm(gm + 0x20, 0x6767)).unwrap();
    assert_eq!(frame_u32(&w, GUEST + 6, 0x20), 0x6767);
    let set = gate.take_write_set(w.vgpu.context()).unwrap();
    assert_eq!(set.pages().collect::<Vec<_>>(), [gm / PAGE_SIZE]);
    assert_eq!(set.ram_pages(&w.mem).count(), 0);
}

/// Runs `b` as a PPGTT batch on `engine`; the vGPU must be refused with
/// the reason `want`, the other vGPU's frame and the guest's data
/// untouched.
fn refused_on(engine: Engine, b: &[u32], want: Reason) {
    let mut w = ppgtt_world();
    if engine != Engine::Render {
        enable_on(&mut w, engine);
    }
    let mut gate = scan_gate(&mut w.gpu);
    let mut b = b.to_vec();
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    let r = run_on(&mut w, &mut gate, engine, &ppgtt_bb_start(BATCH, false));
    assert!(matches!(r, Err(VgpuError::Rejected(_))), "{r:?}");
    assert_eq!(rejected(&gate), want);
    assert_eq!(frame_u32(&w, FOREIGN, 0), 0x5a5a_5a5a);
    assert_eq!(u32_at(&w, DATA), 0);
}

#[test]
fn hostile_ppgtt_batches_are_refused_with_their_reason() {
    use crate::scan::regs::RegAccess;
    // A privileged MI command (MI_ARB_ON_OFF).
    let r = Reason::Privileged("command reserved to the monitor");
    refused_on(Engine::Render, &[0x08 << 23, NOOP], r);
    // A store with its Use Global GTT bit set, into the guest's own GM.
    let ggtt = Reason::NonPrivileged(NonPrivileged::GgttAccess);
    let own_gm = 0x1000_0000;
    refused_on(Engine::Render, &sdi(own_gm, 1), ggtt);
    refused_on(Engine::Blitter, &flush_dw_imm(own_gm, 1), ggtt);
    refused_on(Engine::Render, &pipe_control_imm(own_gm, 1), ggtt);
    // A GGTT batch started from it.
    let r = Reason::NonPrivileged(NonPrivileged::GgttBatch);
    refused_on(Engine::Render, &bb_start(own_gm, false), r);
    // CS_DEBUG_MODE2, on the scanner's render list (bit 4 may be set)
    // but outside the hardware's non-privileged set: the engine would
    // stop the batch; refused first.
    let reg = |offset, access, refusal| Reason::Register {
        offset,
        access,
        refusal,
    };
    refused_on(
        Engine::Render,
        &lri(0x20d8, 0x0010_0010),
        reg(0x20d8, RegAccess::Write, RegRefusal::NotNonPrivileged),
    );
    refused_on(
        Engine::Render,
        &ppgtt(srm(0x2358, DATA).to_vec(), 0, 22),
        reg(0x2358, RegAccess::Read, RegRefusal::NotNonPrivileged),
    );
    // On the blitter the hardware checks no register
    // (`sim::ppgtt::tests::the_gen9_blitter_checks_no_register_in_a_non_privileged_batch`):
    // the scanner's lists are all there is.
    refused_on(
        Engine::Blitter,
        &lri(0x2_24d0, 0x2358),
        reg(0x2_24d0, RegAccess::Write, RegRefusal::NotListed),
    );
    refused_on(
        Engine::Blitter,
        &lri(0x2_2034, 0),
        reg(0x2_2034, RegAccess::Write, RegRefusal::NotListed),
    );
    // A batch the PPGTT does not map, and one in the monitor's window.
    let r = Reason::PpgttMemory {
        addr: UNMAPPED,
        fault: PpgttFault::NotPresent,
    };
    refused_on(Engine::Render, &ppgtt_bb_start(UNMAPPED, true), r);
    let r = Reason::NonPrivileged(NonPrivileged::WindowBatch);
    refused_on(Engine::Render, &ppgtt_bb_start(WINDOW_BASE, false), r);
}

#[test]
fn a_ppgtt_batch_start_is_read_through_the_shadow_not_the_guests_tables() {
    // The ring starts a batch at a VA the guest's PT names by another
    // vGPU's frame number: the shadow maps it to the scratch page, which
    // is what the scanner reads (zeros: an MI_NOOP run, then no end) and
    // refuses, never the other vGPU's frame (whose words are a valid
    // store into the guest's data).
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let mut other = ppgtt_sdi(DATA, 0xbad).to_vec();
    other.push(BB_END);
    let bytes: Vec<u8> = other.iter().flat_map(|d| d.to_le_bytes()).collect();
    w.gpu
        .mem_mut()
        .write(PhysFrame::new(FOREIGN).unwrap().at(0x800), &bytes)
        .unwrap();
    let r = run(&mut w, &mut gate, &ppgtt_bb_start(OTHERS + 0x800, false));
    assert!(matches!(r, Err(VgpuError::Rejected(_))), "{r:?}");
    assert_eq!(u32_at(&w, DATA), 0);
}

#[test]
fn an_i915_layout_guest_is_accepted_and_its_batches_run() {
    // i915 points every unused entry at present scratch tables: PDP 40,
    // PD 41, PT 42, all of whose entries are present, down to a scratch
    // page 43; PML4 entry 511 included, so its PDP entry 511 is present.
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    let (pdp, pd, pt, page) = (40, 41, 42, 43);
    let e = |p: u64| Entry::new(p, WRITABLE).raw().to_le_bytes();
    for i in 0..crate::ppgtt::ENTRIES as u64 {
        guest_write(&mut w, pdp, i * 8, &e(pd));
        guest_write(&mut w, pd, i * 8, &e(pt));
        guest_write(&mut w, pt, i * 8, &e(page));
        if i > 0 {
            guest_write(&mut w, PML4, i * 8, &e(pdp));
            guest_write(&mut w, 11, i * 8, &e(pd));
            guest_write(&mut w, 12, i * 8, &e(pt));
        }
        if !(1..=0x40).contains(&i) {
            guest_write(&mut w, PT, i * 8, &e(page));
        }
    }
    let mut b = ppgtt_sdi(DATA, 0x1915).to_vec();
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false)).unwrap();
    assert_eq!(u32_at(&w, DATA), 0x1915);
    assert_eq!(frame_u32(&w, window_frame(&w, Engine::Render, 0), 0), b[0]);
}

#[test]
fn a_guest_mapping_its_own_page_in_the_window_sees_the_window_and_faults_writing_it() {
    // PML4 entry 511 -> PDP 14, entry 511 -> PD 15 -> PT 16 -> the
    // guest's data page at the window's first page.
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    for (table, index, child) in [
        (PML4, WINDOW_INDEX, 14),
        (14, WINDOW_INDEX, 15),
        (15, 0, 16),
        (16, 0, page_of(DATA)),
    ] {
        let e = Entry::new(child, WRITABLE);
        guest_write(&mut w, table, index as u64 * 8, &e.raw().to_le_bytes());
    }
    guest_dwords(&mut w, page_of(DATA), 0, &[0x0add]);
    // A load from the window reads the running shadow batch, not the page.
    let mut b = ppgtt(lrm(0x2600, WINDOW_BASE).to_vec(), 0, 22);
    b.extend(ppgtt(srm(0x2600, DATA + 0x40).to_vec(), 0, 22));
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false)).unwrap();
    assert_eq!(u32_at(&w, DATA + 0x40), b[0]);
    // A store there faults the context alone: the window, the guest's
    // page and the other vGPU's frame are unchanged.
    let mut b = ppgtt_sdi(WINDOW_BASE, 0xbad).to_vec();
    b.push(BB_END);
    batch(&mut w, BATCH, &b);
    let _ = run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false));
    assert_eq!(gpu_fault(&w), FaultKind::PpgttReadOnly);
    assert_eq!(frame_u32(&w, window_frame(&w, Engine::Render, 0), 0), b[0]);
    assert_eq!(u32_at(&w, DATA), 0x0add);
    assert_eq!(frame_u32(&w, FOREIGN, 0), 0x5a5a_5a5a);
}

/// Runs a draw whose render target's surface state names `base`, with
/// shaders allowed (the default in a PPGTT context).
fn draw_at(base: u64) -> (World, Box<crate::mediate::ScanGate>) {
    let mut w = ppgtt_world();
    let mut gate = scan_gate(&mut w.gpu);
    guest_dwords(&mut w, page_of(HEAP), 0x100, &[0x200]);
    guest_dwords(&mut w, page_of(HEAP), 0x200, &surface_state(base, 4, 1, 16));
    let mut b = mesa_state_base(HEAP).to_vec();
    b.extend([0x782a_0000, 0x100, 0x7b00_0005, 4, 3, 0, 1, 0, 0, BB_END]);
    batch(&mut w, BATCH, &b);
    let r = run(&mut w, &mut gate, &ppgtt_bb_start(BATCH, false));
    assert_eq!(
        r,
        Ok(()),
        "the scanner accepts it: the address space contains it"
    );
    (w, gate)
}

fn gpu_fault(w: &World) -> FaultKind {
    match w.vgpu.state() {
        VgpuState::Failed(FailReason::Gpu(f)) => f.kind,
        other => panic!("expected a GPU fault, got {other:?}"),
    }
}

#[test]
fn surface_state_pointing_at_other_memory_stays_in_the_vgpus_frames_or_faults_its_context() {
    // Another vGPU's frame (named by its number in the guest's PT): the
    // pixels land on the vGPU's scratch page, the other's content stays.
    let (w, _) = draw_at(OTHERS);
    assert_eq!(frame_u32(&w, FOREIGN, 0), 0x5a5a_5a5a);
    let scratch = w.vgpu.shadows().unwrap().tables().scratch_page().number();
    assert_eq!(frame_u32(&w, scratch, 0), 0x4433_2211);
    assert_eq!(w.vgpu.state(), VgpuState::Running);
    // The monitor's memory (the frame of the running shadow batch, named
    // by its number): the scratch page again, the shadow batch intact.
    let (w, _) = draw_at(MONITORS);
    let pool = POOL + crate::ppgtt::shadow::SCRATCH_FRAMES + 3;
    assert_eq!(pool, window_frame(&w, Engine::Render, 0));
    assert_eq!(frame_u32(&w, pool, 0), mesa_state_base(HEAP)[0]);
    assert_eq!(frame_u32(&w, scratch, 0), 0x4433_2211);
    // The monitor's window (the running batch itself): read-only, the
    // context faults alone and the shadow batch is intact.
    let (w, _) = draw_at(WINDOW_BASE);
    assert_eq!(gpu_fault(&w), FaultKind::PpgttReadOnly);
    let copy = frame_u32(&w, window_frame(&w, Engine::Render, 0), 0);
    assert_eq!(copy, mesa_state_base(HEAP)[0]);
    // A GGTT address (the guest's own GM data page): not an address of
    // its PPGTT, the context faults; the GM page is untouched.
    let gm = w.ap + 6 * PAGE_SIZE;
    let (w, _) = draw_at(gm);
    assert_eq!(gpu_fault(&w), FaultKind::PpgttNotPresent);
    assert_eq!(frame_u32(&w, GUEST + 6, 0), 0);
    let _ = lrc::READ_DWORDS;
}
