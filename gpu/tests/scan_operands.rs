//! Address operands of 3D, media and video commands, STATE_BASE_ADDRESS
//! state, and batch calls: accepted streams are remapped field by field,
//! out-of-slice operands are rejected with typed errors.

mod scan_support;

use gpu::engine::Engine;
use gpu::scan::{ControlFlow, GmFault, Reason, ReprError};
use scan_support::*;

fn h(guest: u64) -> u64 {
    if guest >= HIDDEN {
        guest - HIDDEN + HIDDEN_HOST
    } else {
        guest - APERTURE + APERTURE_HOST
    }
}

fn reject(engine: Engine, g: &mut FakeGm, cmds: &[u32]) -> Reason {
    let rs = ring(g, cmds);
    let e = shadow(engine).scan(g, rs).unwrap_err();
    assert!(!e.to_string().is_empty());
    e.reason
}

fn oos(r: Reason) -> bool {
    matches!(
        r,
        Reason::Memory {
            fault: GmFault::OutOfSlices,
            ..
        }
    )
}

#[test]
fn draw_stream_is_remapped_field_by_field() {
    let mut g = FakeGm::new();
    let cmds = draw_batch(2, false);
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Render);
    let sub = s.scan(&g, rs).unwrap();
    let r = &s.ring[..sub.ring_dwords];
    // STATE_BASE_ADDRESS general base keeps its modify bit.
    assert_eq!(r[1], h(HIDDEN) as u32 | 1);
    assert_eq!(r[2], (h(HIDDEN) >> 32) as u32);
    // Binding table pool: flag bit 11 kept.
    assert_eq!(r[20], h(HIDDEN + 0x8_0000) as u32 | (1 << 11));
    // First vertex buffer address (after the sample count and 6 plain
    // states of 2 DWords).
    let vb = 19 + 4 + 2 + 12;
    assert_eq!(r[vb + 2], h(HIDDEN + 0x10_0000) as u32);
    assert_eq!(r[vb + 6], h(HIDDEN + 0x11_0000) as u32);
    // Index buffer, constant buffer (bits 4:0 kept), depth buffer.
    let ib = vb + 9;
    assert_eq!(r[ib + 2], h(HIDDEN + 0x12_0000) as u32);
    assert_eq!(r[ib + 5 + 3], h(HIDDEN + 0x13_0000) as u32);
    assert_eq!(r[ib + 5 + 11 + 2], h(HIDDEN + 0x20_0000) as u32);
    // The depth buffer is a write target over its surface (256 rows of 1
    // KiB); the draws make the set untracked (render targets).
    assert!(sub
        .writes
        .contains((HIDDEN + 0x20_0000 + 255 * 1024) / 4096));
    assert!(sub.writes.untracked);
}

#[test]
fn out_of_slice_3d_operands_are_rejected() {
    let mut g = FakeGm::new();
    let end = HIDDEN + HIDDEN_SIZE;
    // A vertex buffer whose size runs past the slice.
    let vb = vertex_buffers(&[(end - 0x100, 0x200)]);
    assert!(oos(reject(Engine::Render, &mut g, &vb)));
    // An index buffer in another vGPU's memory.
    assert!(oos(reject(
        Engine::Render,
        &mut g,
        &index_buffer(0x9000_0000, 16)
    )));
    // A depth buffer at 0.
    assert!(oos(reject(Engine::Render, &mut g, &depth_buffer(0))));
    // A constant buffer past 4 GiB.
    assert!(oos(reject(
        Engine::Render,
        &mut g,
        &constant_vs(1 << 40, 1)
    )));
    // Vertex buffer list cut in the middle of an element.
    let mut cut = vertex_buffers(&[(HIDDEN, 16), (HIDDEN, 16)]);
    cut.pop();
    cut[0] -= 1;
    assert_eq!(
        reject(Engine::Render, &mut g, &cut),
        Reason::Repr(ReprError::PartialGroup)
    );
    // A vertex buffer without Address Modify Enable keeps unaudited state.
    let mut stale = vertex_buffers(&[(HIDDEN, 16)]);
    stale[1] &= !(1 << 14);
    assert!(matches!(
        reject(Engine::Render, &mut g, &stale),
        Reason::UnseenState(_)
    ));
}

#[test]
fn disabled_operands_are_left_alone() {
    let mut g = FakeGm::new();
    // Null vertex buffer, zero-length constant buffer, NULL depth surface,
    // disabled binding table pool: none is audited or rewritten.
    let mut vb = vertex_buffers(&[(0xdead_0000, 16)]);
    vb[1] |= 1 << 13;
    // The null depth packet Mesa emits when no depth buffer is bound: a
    // NULL depth buffer, all-zero HiZ and stencil state.
    let mut depth = depth_buffer(0xdead_0000).to_vec();
    depth[1] = 7 << 29;
    depth.extend([gfx(0x1807, 5), 0, 0, 0, 0]);
    depth.extend([gfx(0x1806, 5), 0, 0, 0, 0]);
    let mut pool = binding_table_pool(0xdead_0000, 0x1000);
    pool[1] &= !(1 << 11);
    let mut cmds = vb.clone();
    cmds.extend(constant_vs(0xdead_0000, 0));
    cmds.extend(depth);
    cmds.extend(pool);
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Render);
    let sub = s.scan(&g, rs).unwrap();
    assert_eq!(&s.ring[..sub.ring_dwords], &cmds[..]);
}

#[test]
fn state_base_address_state_across_commands() {
    let mut g = FakeGm::new();
    // Size-only change: the base was set by an earlier submission.
    let mut size_only = sba(HIDDEN, 0x1000, 0x1000);
    for dw in [1, 4, 6, 8, 10, 16] {
        size_only[dw] &= !1;
    }
    assert!(matches!(
        reject(Engine::Render, &mut g, &size_only),
        Reason::UnseenState(_)
    ));
    // Base-only change: the size was set earlier.
    let mut base_only = sba(HIDDEN, 0x1000, 0x1000);
    for dw in &mut base_only[12..=15] {
        *dw &= !1;
    }
    assert!(matches!(
        reject(Engine::Render, &mut g, &base_only),
        Reason::UnseenState(_)
    ));
    // Both in one submission: accepted, and a later size-only growth past
    // the slice end is caught against the remembered base.
    let mut cmds = sba(HIDDEN + HIDDEN_SIZE - 0x10_0000, 0x1000, 0x1000).to_vec();
    let mut grow = sba(0, 0, 0x20_0000);
    for dw in [1, 4, 6, 8, 10, 16] {
        grow[dw] = 0;
    }
    cmds.extend(grow);
    assert!(oos(reject(Engine::Render, &mut g, &cmds)));
    // Size 0: no access is in bounds; the base is still remapped.
    let zero = sba(HIDDEN, 0x1000, 0);
    let rs = ring(&mut g, &zero);
    let mut s = shadow(Engine::Render);
    s.scan(&g, rs).unwrap();
    assert_eq!(s.ring[1], h(HIDDEN) as u32 | 1);
    // A base outside the slices is refused even with size 0.
    let bad = sba(0x10, 0, 0);
    assert!(oos(reject(Engine::Render, &mut g, &bad)));
}

#[test]
fn second_level_batch_called_twice_is_not_a_cycle() {
    let mut g = FakeGm::new();
    let a = HIDDEN + 0x1000;
    let b = HIDDEN + 0x2000;
    let mut first = Vec::new();
    first.extend(bb_start(b, true));
    first.extend(sdi(HIDDEN + 0x3000, 1));
    first.extend(bb_start(b, true));
    first.push(BB_END);
    g.write(a, &first);
    g.write(b, &[NOOP, NOOP, BB_END]);
    let rs = ring(&mut g, &bb_start(a, false));
    let mut s = shadow(Engine::Render);
    let sub = s.scan(&g, rs).unwrap();
    // One shadow for `a`, one for `b`, shared by both calls.
    assert_eq!(sub.batches, 2);
    let callee = (SHADOW_BATCH_HOST + SHADOW_BATCH_STRIDE) as u32;
    assert_eq!(s.batches[0].words[1], callee);
    assert_eq!(s.batches[0].words[8], callee);
    // A callee that sets STATE_BASE_ADDRESS is scanned per call.
    let mut stateful = sba(HIDDEN, 0x1000, 0x1000).to_vec();
    stateful.push(BB_END);
    g.write(b, &stateful);
    let sub = s.scan(&g, rs).unwrap();
    assert_eq!(sub.batches, 3);
    // A chain inside a second-level batch (here back to itself) is
    // refused: where it returns to is not defined.
    g.write(b, &[NOOP, bb_start(b, false)[0], lo(b), 0]);
    assert_eq!(
        s.scan(&g, rs).unwrap_err().reason,
        Reason::ControlFlow(ControlFlow::ChainInSecondLevel)
    );
}

#[test]
fn video_base_and_bound_pairs() {
    let mut g = FakeGm::new();
    let base = HIDDEN + 0x1_0000;
    let pairs = [
        (base, base + 0x1000),
        (base + 0x2000, 0),
        (base + 0x3000, base + 0x4000),
        (base + 0x5000, base + 0x6000),
        (base + 0x7000, base + 0x8000),
    ];
    let cmds = mfx_ind_obj(pairs);
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Video);
    s.scan(&g, rs).unwrap();
    assert_eq!(s.ring[1], h(base) as u32);
    // The bound moves with its base; a zero bound stays zero.
    assert_eq!(s.ring[4], h(base + 0x1000) as u32);
    assert_eq!(s.ring[9], 0);
    // A bound below its base, and a bound past the slice.
    let mut bad = pairs;
    bad[0] = (base + 0x1000, base);
    assert!(matches!(
        reject(Engine::Video, &mut g, &mfx_ind_obj(bad)),
        Reason::BadBound { .. }
    ));
    bad[0] = (base, HIDDEN + HIDDEN_SIZE + 0x1000);
    assert!(oos(reject(Engine::Video, &mut g, &mfx_ind_obj(bad))));
    // 48-bit buffer addresses keep the high DWord's other bits.
    let mut bsp = mfx_bsp([base, base + 0x1000, base + 0x2000]);
    bsp[2] |= 0xabcd_0000;
    let rs = ring(&mut g, &bsp);
    s.scan(&g, rs).unwrap();
    assert_eq!(s.ring[1], h(base) as u32);
    assert_eq!(s.ring[2], 0xabcd_0000 | (h(base) >> 32) as u32);
    // A row store outside the slices.
    assert!(oos(reject(
        Engine::Video,
        &mut g,
        &mfx_bsp([0x10_0000, base, base])
    )));
}

#[test]
fn media_object_indirect_data_is_relative() {
    let mut g = FakeGm::new();
    let cmds = media_object(8);
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Render);
    let sub = s.scan(&g, rs).unwrap();
    // An offset from Indirect Object Base: nothing to rewrite.
    assert_eq!(&s.ring[..sub.ring_dwords], &cmds[..]);
}

/// The blit extent counts the rectangle's x end, bytes per pixel and
/// tiling, not only pitch x rows (found by the cargo-fuzz target: a copy
/// whose source x1 lay far beyond its pitch read the next vGPU's memory).
#[test]
fn blit_extent_counts_x_bpp_and_tiling() {
    let end = HIDDEN + HIDDEN_SIZE;
    let ok = |g: &mut FakeGm, cmds: &[u32]| {
        let rs = ring(g, cmds);
        shadow(Engine::Blitter)
            .scan(g, rs)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    // One row of 32-bpp pixels, pitch 256, 4 KiB before the slice end: x2
    // = 64 (256 bytes) fits.
    let mut g = FakeGm::new();
    let mut blt = copy_blt(HIDDEN, end - 0x1000, 256, 1);
    blt[3] = 1 << 16 | 64;
    ok(&mut g, &blt);
    // x2 = 0x800 pixels = 8 KiB: the row runs past the slice.
    let mut wide = blt;
    wide[3] = 1 << 16 | 0x800;
    assert!(oos(reject(Engine::Blitter, &mut g, &wide)));
    // The source origin far right of its pitch: same.
    let mut far = blt;
    far[6] = 0x7f0;
    assert!(oos(reject(Engine::Blitter, &mut g, &far)));
    // Negative destination pitch.
    let mut neg = color_blt(HIDDEN, 256, 4);
    neg[1] |= 0x8000;
    assert_eq!(
        reject(Engine::Blitter, &mut g, &neg),
        Reason::Repr(ReprError::NegativePitch)
    );
    // Tiled destination (header bit 11, pitch in DWords): X tiles, or Y
    // tiles if BCS_SWCTRL says so, a register the guest may write. One
    // row of 512 bytes at a 512-byte pitch spans one X tile (4 KiB) or a
    // row of four Y tiles (16 KiB): the worst is audited.
    let mut tiled = color_blt(end - 0x4000, 128, 1);
    tiled[0] |= 1 << 11;
    tiled[3] = 1 << 16 | 128; // 512 bytes of a 512-byte pitch
    ok(&mut g, &tiled);
    let mut low = tiled;
    low[4] = (end - 0x1000) as u32; // fits an X tile, not a row of Y tiles
    assert!(oos(reject(Engine::Blitter, &mut g, &low)));
    let mut over = tiled;
    over[3] = 1 << 16 | 129;
    assert_eq!(
        reject(Engine::Blitter, &mut g, &over),
        Reason::Repr(ReprError::TiledOverrun)
    );
}

/// XY_FAST_COPY_BLT (10 DWords): destination tiling `dt` and source
/// tiling `st` (2-bit fields: linear, X, Y, Ys), DW1 `dw1` (colour depth,
/// Yf bits, destination pitch), `width` x 1 pixels from (0, 0) to (0, 0).
fn fast_copy(
    dt: u32,
    st: u32,
    dw1: u32,
    dst: u64,
    src: u64,
    src_pitch: u32,
    width: u32,
) -> Vec<u32> {
    vec![
        (2 << 29) | (0x42 << 22) | (st << 20) | (dt << 13) | 8,
        dw1,
        0,
        1 << 16 | width,
        lo(dst),
        hi(dst),
        0,
        src_pitch,
        lo(src),
        hi(src),
    ]
}

/// XY_FAST_COPY_BLT takes its bytes per pixel from the colour depth field
/// (DW1 26:24) and each surface's tile geometry from its tiling fields:
/// X 512 x 8, Y 128 x 32, Yf and Ys by bytes per pixel (Ys at 8 bytes a
/// pixel: 1 KiB x 64 rows, one 64 KiB tile for a single row). Before, it
/// assumed 16 bytes a pixel and 32-row tiles: an 8-bpp copy the size of
/// its slice was refused, and a 64-bpp Ys copy 32 KiB before the slice end
/// was accepted though its tile reaches 32 KiB into the next vGPU's
/// memory.
#[test]
fn fast_copy_extent_follows_depth_and_tiling() {
    let end = HIDDEN + HIDDEN_SIZE;
    let src = HIDDEN;
    let ok = |cmds: &[u32]| {
        let mut g = FakeGm::new();
        let rs = ring(&mut g, cmds);
        shadow(Engine::Blitter)
            .scan(&g, rs)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let no = |cmds: &[u32]| oos(reject(Engine::Blitter, &mut FakeGm::new(), cmds));
    // Linear, 8 bpp (depth 0): one row of 4096 pixels is 4 KiB.
    ok(&fast_copy(0, 0, 4096, end - 0x1000, src, 4096, 4096));
    assert!(no(&fast_copy(0, 0, 4096, end - 0xfff, src, 4096, 4096)));
    // Ys, 64 bpp (depth 4), pitch 1 KiB (256 DWords): 16 pixels in one
    // row touch one 64 KiB tile.
    let ys64 = 4 << 24 | 256;
    ok(&fast_copy(3, 0, ys64, end - 0x1_0000, src, 4096, 16));
    assert!(no(&fast_copy(3, 0, ys64, end - 0x8000, src, 4096, 16)));
    // The same as a source (Ys, pitch 256 DWords).
    ok(&fast_copy(0, 3, ys64, src, end - 0x1_0000, 256, 16));
    assert!(no(&fast_copy(0, 3, ys64, src, end - 0x8000, 256, 16)));
    // Ys at 8 bpp: 256 x 256 tiles, 64 KiB for one row too.
    let ys8 = 64; // depth 0, pitch 256 bytes
    ok(&fast_copy(3, 0, ys8, end - 0x1_0000, src, 4096, 256));
    assert!(no(&fast_copy(3, 0, ys8, end - 0xc000, src, 4096, 256)));
    // Yf (Y field with DW1 bit 30), 16 bpp (depth 1): 128 x 32 tiles of
    // 4 KiB; pitch 128 bytes (32 DWords).
    let yf16 = 1 << 30 | 1 << 24 | 32;
    ok(&fast_copy(2, 0, yf16, end - 0x1000, src, 4096, 64));
    assert!(no(&fast_copy(2, 0, yf16, end - 0x800, src, 4096, 64)));
    // X, 32 bpp (depth 3), pitch 512 bytes: one 4 KiB tile (before: 16
    // bytes a pixel made 128 pixels wider than the pitch).
    let x32 = 3 << 24 | 128;
    ok(&fast_copy(1, 0, x32, end - 0x1000, src, 4096, 128));
    assert!(no(&fast_copy(1, 0, x32, end - 0x800, src, 4096, 128)));
}

// ---- blitter setup, setup-relative blits, pattern blits (Gen8+ layouts,
// 64-bit addresses: PRM vol 2a BCS commands; i915 GVT-g cmd_parser.c gives
// the same DWords for the 32-bit forms) ----

const BLT: u32 = 2 << 29;
const ROP_PATCOPY: u32 = 0xf0;
const ROP_SRCCOPY: u32 = 0xcc;

/// XY_SETUP_BLT (10 DWords), 32 bpp: destination `dst` of `pitch`, 8x8
/// pattern at `pat`.
fn setup_blt(rop: u32, dst: u64, pitch: u32, pat: u64) -> [u32; 10] {
    [
        BLT | (0x01 << 22) | 8,
        (3 << 24) | (rop << 16) | pitch,
        0,
        0,
        lo(dst),
        hi(dst),
        0,
        0xffff_ffff,
        lo(pat),
        hi(pat),
    ]
}
fn scanlines(x1: u32, y1: u32, x2: u32, y2: u32) -> [u32; 3] {
    [BLT | (0x25 << 22) | 1, y1 << 16 | x1, y2 << 16 | x2]
}

#[test]
fn blitter_setup_and_setup_relative_blits() {
    let mut g = FakeGm::new();
    let dst = HIDDEN + 0x10_0000;
    let pat = HIDDEN + 0x20_0000;
    let mut cmds = setup_blt(ROP_PATCOPY, dst, 1024, pat).to_vec();
    cmds.extend(scanlines(0, 0, 256, 16));
    cmds.extend([BLT | (0x24 << 22), 3 << 16 | 5]); // XY_PIXEL_BLT
    cmds.extend([BLT | (0x31 << 22) | 3, 0, 8 << 16 | 8, 0xff, 0xff]); // text
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Blitter);
    let sub = s.scan(&g, rs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sub.ring_dwords, cmds.len());
    let r = &s.ring;
    assert_eq!(u64::from(r[5]) << 32 | u64::from(r[4]), h(dst));
    assert_eq!(u64::from(r[9]) << 32 | u64::from(r[8]), h(pat));
    // The drawn rows are write targets (16 rows of 1 KiB from `dst`).
    assert!(sub.writes.contains(dst / 4096));
    assert!(sub.writes.contains((dst + 15 * 1024) / 4096));

    // A raster operation without the pattern leaves an unused (zero)
    // pattern address alone.
    let mut src_only = setup_blt(ROP_SRCCOPY, dst, 1024, 0).to_vec();
    src_only.extend(scanlines(0, 0, 8, 8));
    let rs = ring(&mut g, &src_only);
    let mut s = shadow(Engine::Blitter);
    s.scan(&g, rs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.ring[8], s.ring[9]), (0, 0));
    // A used pattern outside the slices is rejected.
    assert!(oos(reject(
        Engine::Blitter,
        &mut g,
        &setup_blt(ROP_PATCOPY, dst, 1024, 0)
    )));
    // Drawing with no setup in this submission depends on unseen state.
    assert!(matches!(
        reject(Engine::Blitter, &mut g, &scanlines(0, 0, 8, 8)),
        Reason::UnseenState(_)
    ));
    // Rows past the slice end, relative to the setup's destination.
    let end = HIDDEN + HIDDEN_SIZE;
    let mut past = setup_blt(ROP_PATCOPY, end - 0x1000, 1024, pat).to_vec();
    past.extend(scanlines(0, 0, 16, 4)); // 4 KiB: fits exactly
    let rs = ring(&mut g, &past);
    shadow(Engine::Blitter)
        .scan(&g, rs)
        .unwrap_or_else(|e| panic!("{e}"));
    past.extend(scanlines(0, 4, 16, 5)); // a fifth row: past the end
    assert!(oos(reject(Engine::Blitter, &mut g, &past)));
    // A setup with the pre-Gen8 (32-bit address) length is malformed.
    let mut short = setup_blt(ROP_PATCOPY, dst, 1024, pat);
    short[0] -= 2;
    assert!(matches!(
        reject(Engine::Blitter, &mut g, &short[..8]),
        Reason::Decode(_)
    ));
}

#[test]
fn pattern_blits() {
    let mut g = FakeGm::new();
    let dst = HIDDEN + 0x10_0000;
    let pat = HIDDEN + 0x20_0000;
    // XY_PAT_BLT (8 DWords): 32 bpp, 64 x 4 pixels, pattern read.
    let pat_blt = |d: u64, p: u64| {
        [
            BLT | (0x51 << 22) | 6,
            (3 << 24) | (ROP_PATCOPY << 16) | 256,
            0,
            4 << 16 | 64,
            lo(d),
            hi(d),
            lo(p),
            hi(p),
        ]
    };
    // XY_MONO_PAT_BLT (10 DWords): destination only.
    let mono = |d: u64, rows: u32| {
        [
            BLT | (0x52 << 22) | 8,
            (3 << 24) | (ROP_PATCOPY << 16) | 256,
            0,
            rows << 16 | 64,
            lo(d),
            hi(d),
            0,
            !0,
            0xaaaa_aaaa,
            0x5555_5555,
        ]
    };
    let mut cmds = pat_blt(dst, pat).to_vec();
    cmds.extend(mono(dst, 4));
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Blitter);
    s.scan(&g, rs).unwrap_or_else(|e| panic!("{e}"));
    let a = |i: usize| u64::from(s.ring[i + 1]) << 32 | u64::from(s.ring[i]);
    assert_eq!((a(4), a(6), a(12)), (h(dst), h(pat), h(dst)));
    // Inline mono pattern DWords are not addresses: untouched.
    assert_eq!((s.ring[16], s.ring[17]), (0xaaaa_aaaa, 0x5555_5555));
    // Out-of-slice pattern; destination rows past the slice end.
    assert!(oos(reject(Engine::Blitter, &mut g, &pat_blt(dst, 0x10))));
    let end = HIDDEN + HIDDEN_SIZE;
    assert!(oos(reject(
        Engine::Blitter,
        &mut g,
        &mono(end - 256 * 3, 4)
    )));
}

/// The 64-bit address at DWords `i`, `i + 1` of `w`.
fn addr_at(w: &[u32], i: usize) -> u64 {
    u64::from(w[i + 1]) << 32 | u64::from(w[i])
}

/// Every shaped blit of the table, built from its row: accepted with
/// in-slice operands, each address remapped, the destination's rows
/// recorded as write targets; inline data untouched.
#[test]
fn shaped_blits_are_remapped_and_record_writes() {
    use gpu::scan::repr::{BlitDst, BlitSrc};
    use gpu::scan::Op;
    let mut g = FakeGm::new();
    let o = BlitOps {
        dst: HIDDEN + 0x10_0000,
        src: APERTURE + 0x2_0000,
        pat: HIDDEN + 0x20_0000,
        pitch: 1024,
        width: 64,
        rows: 16,
    };
    let rows: Vec<_> = shaped_rows().collect();
    assert_eq!(rows.len(), 14, "shaped blit rows");
    for spec in rows {
        let Op::XyBlit(shape) = spec.op else {
            unreachable!()
        };
        let mut cmds = patcopy_setup(o.dst, o.pitch, o.pat).to_vec();
        let blit = shaped_blit(spec, o);
        cmds.extend(&blit);
        let rs = ring(&mut g, &cmds);
        let mut s = shadow(Engine::Blitter);
        let sub = s
            .scan(&g, rs)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        let out = &s.ring[10..10 + blit.len()];
        if shape.dst == BlitDst::Rect {
            assert_eq!(addr_at(out, 4), h(o.dst), "{}", spec.name);
        }
        match shape.src {
            BlitSrc::None => {}
            BlitSrc::Color(d) | BlitSrc::Mono(d) | BlitSrc::Text(d) => {
                assert_eq!(addr_at(out, usize::from(d)), h(o.src), "{}", spec.name)
            }
        }
        if let Some(p) = shape.pattern {
            assert_eq!(addr_at(out, usize::from(p)), h(o.pat), "{}", spec.name);
        }
        // Inline data and colours are not addresses.
        for (i, (&a, &b)) in blit.iter().zip(out).enumerate() {
            if a == 0x5a5a_5a5a {
                assert_eq!(b, a, "{} DWord {i}", spec.name);
            }
        }
        // 16 rows of 1 KiB from the destination: its first and last page.
        let pages = &sub.writes;
        assert!(pages.contains(o.dst / 4096), "{}", spec.name);
        assert!(pages.contains((o.dst + 15 * 1024) / 4096), "{}", spec.name);
        // Sources are only read.
        assert!(!pages.contains(o.src / 4096), "{}", spec.name);
    }
}

/// Every shaped blit with one operand outside the slices, or an extent
/// running past a slice's end, is rejected.
#[test]
fn shaped_blits_out_of_slice_are_rejected() {
    use gpu::scan::repr::{BlitDst, BlitSrc};
    use gpu::scan::Op;
    let mut g = FakeGm::new();
    let ok = BlitOps {
        dst: HIDDEN + 0x10_0000,
        src: APERTURE + 0x2_0000,
        pat: HIDDEN + 0x20_0000,
        pitch: 1024,
        width: 64,
        rows: 16,
    };
    let end = HIDDEN + HIDDEN_SIZE;
    for spec in shaped_rows() {
        let Op::XyBlit(shape) = spec.op else {
            unreachable!()
        };
        let run = |g: &mut FakeGm, o: BlitOps| {
            let mut cmds = patcopy_setup(o.dst, o.pitch, ok.pat).to_vec();
            cmds.extend(shaped_blit(spec, o));
            reject(Engine::Blitter, g, &cmds)
        };
        // Destination rows past the slice end (the setup's for XY_TEXT_BLT).
        let r = run(
            &mut g,
            BlitOps {
                dst: end - 15 * 1024,
                ..ok
            },
        );
        assert!(oos(r), "{}: {r:?}", spec.name);
        if shape.dst == BlitDst::Rect {
            // In the other guest's memory (below the aperture).
            let r = run(&mut g, BlitOps { dst: 0x1000, ..ok });
            assert!(oos(r), "{}: {r:?}", spec.name);
        }
        match shape.src {
            BlitSrc::None => {}
            BlitSrc::Color(_) | BlitSrc::Mono(_) | BlitSrc::Text(_) => {
                let r = run(&mut g, BlitOps { src: 0x1000, ..ok });
                assert!(oos(r), "{}: {r:?}", spec.name);
                // The source's last bytes run past the slice end.
                let r = run(
                    &mut g,
                    BlitOps {
                        src: end - 16,
                        ..ok
                    },
                );
                assert!(oos(r), "{}: {r:?}", spec.name);
            }
        }
        if shape.pattern.is_some() {
            let r = run(&mut g, BlitOps { pat: 0x1000, ..ok });
            assert!(oos(r), "{}: {r:?}", spec.name);
        }
    }
}

/// A packed 1-bpp source is read row by row without a pitch: its extent
/// is exactly the PRM's rows of word-aligned bytes, rounded to a
/// quadword, so a source ending at the slice end fits and one more row
/// does not.
#[test]
fn mono_source_extent_at_the_slice_end() {
    let mut g = FakeGm::new();
    let end = APERTURE + APERTURE_SIZE;
    let mono = gpu::scan::COMMANDS
        .iter()
        .find(|s| s.name == "XY_MONO_SRC_COPY_BLT")
        .unwrap();
    // 100 pixels wide: ceil(107 / 8) = 14 bytes a row (already a word);
    // 8 rows = 112 bytes (already a quadword).
    let o = |rows: u32| BlitOps {
        dst: HIDDEN,
        src: end - 112,
        pat: 0,
        pitch: 512,
        width: 100,
        rows,
    };
    let rs = ring(&mut g, &shaped_blit(mono, o(8)));
    shadow(Engine::Blitter)
        .scan(&g, rs)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(oos(reject(
        Engine::Blitter,
        &mut g,
        &shaped_blit(mono, o(9))
    )));
    // An empty rectangle reads nothing; its source must still translate.
    let rs = ring(&mut g, &shaped_blit(mono, o(0)));
    shadow(Engine::Blitter)
        .scan(&g, rs)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// COLOR_BLT / SRC_COPY_BLT (pre-Gen8) and the VEBOX commands are refused
/// with their typed reason.
#[test]
fn unsupported_commands_say_why() {
    let mut g = FakeGm::new();
    for (engine, header) in [
        (Engine::Blitter, (2 << 29) | (0x40 << 22) | 3),
        (Engine::Blitter, (2 << 29) | (0x43 << 22) | 4),
        (Engine::VideoEnhance, gfx(0x1402, 4)),
        (Engine::VideoEnhance, gfx(0x1400, 4)),
        (Engine::VideoEnhance, gfx(0x1403, 4)),
    ] {
        let len = (header & 0xff) as usize + 2;
        let mut cmds = vec![header];
        cmds.resize(len, 0);
        match reject(engine, &mut g, &cmds) {
            Reason::Unsupported(why) => assert!(!why.is_empty()),
            r => panic!("{header:#x}: {r:?}"),
        }
    }
}

/// HCP_PAK_INSERT_OBJECT: each indirect payload is audited over its size
/// (bits rounded up to bytes), remapped, and not a write target; an
/// inline payload is left alone; a cut descriptor is malformed.
#[test]
fn pak_insert_indirect_payloads() {
    let mut g = FakeGm::new();
    let a = HIDDEN + 0x1_0000;
    let b = APERTURE + 0x3_0000;
    // The PAK-BSE object it writes to, bounded.
    let mut state = hcp_pipe_mode(1).to_vec();
    state.extend(hcp_ind_obj((a, a + 0x1000), a, (a + 0x2000, a + 0x3000)));
    let with_state = |cmds: &[u32]| {
        let mut w = state.clone();
        w.extend(cmds);
        w
    };
    let cmds = with_state(&pak_insert(&[(8 * 64, a), (9, b), (0, 0)]));
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Video);
    let sub = s.scan(&g, rs).unwrap_or_else(|e| panic!("{e}"));
    let r = &s.ring[state.len()..];
    assert_eq!(addr_at(r, 3), h(a));
    assert_eq!(addr_at(r, 7), h(b));
    // A zero-size payload is not read: its address is left alone.
    assert_eq!(addr_at(r, 11), 0);
    // Sizes and attributes are untouched.
    assert_eq!((r[2], r[6], r[5], r[9]), (8 * 64, 9, 0, 0));
    // Not written by the payload read (the indirect objects' ranges are);
    // the PAK writes through state, so the writes are untracked.
    assert!(!sub.writes.contains(b / 4096) && sub.writes.untracked);

    // The payload's last byte past the slice end: 9 bits are 2 bytes.
    let end = HIDDEN + HIDDEN_SIZE;
    let rs = ring(&mut g, &with_state(&pak_insert(&[(9, end - 2)])));
    shadow(Engine::Video)
        .scan(&g, rs)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(oos(reject(
        Engine::Video,
        &mut g,
        &pak_insert(&[(9, end - 1)])
    )));
    // Another guest's memory.
    assert!(oos(reject(
        Engine::Video,
        &mut g,
        &pak_insert(&[(8, a), (8, 0x1000)])
    )));
    // Indirect enabled without a whole descriptor.
    let mut cut = pak_insert(&[(8, a)]);
    cut.pop();
    cut[0] -= 1;
    assert!(matches!(
        reject(Engine::Video, &mut g, &cut),
        Reason::Repr(ReprError::PartialPayload)
    ));
    // A compressed payload is not a linear run of bytes.
    let mut compressed = pak_insert(&[(8, a)]);
    compressed[5] = 1 << 9;
    assert!(matches!(
        reject(Engine::Video, &mut g, &compressed),
        Reason::Repr(ReprError::PayloadNotLinear)
    ));
    // Inline payload: DWords are data, untouched.
    let inline = [gfx(0x13a2, 4), 0, 0x1000, 0x2000];
    let rs = ring(&mut g, &with_state(&inline));
    let mut s = shadow(Engine::Video);
    s.scan(&g, rs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&s.ring[state.len()..state.len() + 4], &inline);
    // Without the PAK-BSE object it writes to in the submission, the
    // object is refused: the engine's would be another vGPU's, or unbounded.
    assert_eq!(
        reject(Engine::Video, &mut g, &inline),
        Reason::UnseenState("HCP_PIPE_MODE_SELECT")
    );
    let mut unbounded = hcp_pipe_mode(1).to_vec();
    unbounded.extend(hcp_ind_obj((a, a + 0x1000), a, (a + 0x2000, 0)));
    unbounded.extend(inline);
    assert!(matches!(
        reject(Engine::Video, &mut g, &unbounded),
        Reason::Unbounded(_)
    ));
}

/// A command that writes through memory-resident state (a draw, a
/// dispatch, a video or VEBOX object) makes its submission's writes
/// untracked, in the ring and in a batch, on every engine that takes it:
/// the scanner cannot name its targets, so migration must not trust the
/// listed pages alone. Address-free state alone leaves the set tracked.
#[test]
fn state_writers_make_writes_untracked() {
    use gpu::scan::COMMANDS;
    let mut g = FakeGm::new();
    let rs = ring(&mut g, &plain_state());
    let sub = shadow(Engine::Render).scan(&g, rs).unwrap();
    assert!(!sub.writes.untracked);
    let mut checked = 0;
    for c in COMMANDS.iter().filter(|c| c.writes_through_state) {
        // With the state it consumes, if any.
        let mut cmd = c.consumer().map(state_for).unwrap_or_default();
        cmd.extend(shortest(c));
        for e in Engine::ALL.into_iter().filter(|&e| c.engines.contains(e)) {
            let mut g = FakeGm::new();
            let rs = ring(&mut g, &cmd);
            // All-zero operands may be rejected; an accepted one is untracked.
            if let Ok(sub) = shadow(e).scan(&g, rs) {
                assert!(sub.writes.untracked, "{} in the ring of {e:?}", c.name);
                checked += 1;
            }
            let batch = HIDDEN + 0x30_0000;
            let mut body = cmd.clone();
            body.push(BB_END);
            g.write(batch, &body);
            let rs = ring(&mut g, &bb_start(batch, false));
            if let Ok(sub) = shadow(e).scan(&g, rs) {
                assert!(sub.writes.untracked, "{} in a batch of {e:?}", c.name);
                checked += 1;
            }
        }
    }
    // The draws, dispatches and most video objects carry no address.
    assert!(checked >= 30, "{checked}");
    // The 3D stream of the benchmarks: draws, so untracked.
    let mut g = FakeGm::new();
    let mut cmds = plain_state().to_vec();
    cmds.extend(primitive());
    let rs = ring(&mut g, &cmds);
    let sub = shadow(Engine::Render).scan(&g, rs).unwrap();
    assert!(sub.writes.untracked);
}

/// With shaders denied, every shader dispatch is refused, in the ring and
/// in a batch, fast path or not, on every engine that takes it; the same
/// streams pass when shaders are allowed, and video objects (which write
/// only where audited state commands point) pass either way.
#[test]
fn denied_shader_dispatches_are_refused() {
    use gpu::scan::COMMANDS;
    let mut refused = 0;
    for c in COMMANDS.iter().filter(|c| c.dispatches_shaders) {
        let mut cmd = plain_state().to_vec();
        cmd.extend(shortest(c));
        for e in Engine::ALL.into_iter().filter(|&e| c.engines.contains(e)) {
            for in_batch in [false, true] {
                let mut g = FakeGm::new();
                let rs = if in_batch {
                    let mut body = cmd.clone();
                    body.push(BB_END);
                    g.write(HIDDEN + 0x30_0000, &body);
                    ring(&mut g, &bb_start(HIDDEN + 0x30_0000, false))
                } else {
                    ring(&mut g, &cmd)
                };
                let mut s = shadow(e);
                let allowed = s.scan(&g, rs).is_ok();
                s.deny_shaders = true;
                let err = s.scan(&g, rs).unwrap_err();
                if allowed {
                    assert_eq!(err.reason, Reason::ShadersDenied, "{} on {e:?}", c.name);
                    assert_eq!(err.name, Some(c.name));
                    refused += 1;
                }
            }
        }
    }
    assert!(refused >= 10, "{refused}");
    // Video objects are not shader dispatches.
    let mut g = FakeGm::new();
    let mfd = COMMANDS
        .iter()
        .find(|c| c.name == "MFD_AVC_BSD_OBJECT")
        .unwrap();
    let mut cmds = state_for(mfd.consumer().unwrap());
    cmds.extend(shortest(mfd));
    let rs = ring(&mut g, &cmds);
    let mut s = shadow(Engine::Video);
    s.deny_shaders = true;
    assert!(s.scan(&g, rs).is_ok());
}
