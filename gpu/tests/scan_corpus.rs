//! Conformance corpus: command streams written from what real Gen9
//! drivers emit, each named after its source, that the scanner must
//! accept (a refusal stops a benign vGPU). Sources: igt
//! (`lib/rendercopy_gen9.c`, `lib/gpgpu_fill.c`, `lib/media_fill.c`,
//! `lib/gpu_cmds.c`, `lib/intel_batchbuffer.c`), Mesa (iris
//! `iris_init_render_context`, anv `init_render_queue_state`, i965
//! `brw_upload_invariant_state`, blorp's HiZ clear, the query and
//! indirect-draw code), the
//! i915 context workarounds (`gt/intel_workarounds.c`) and the intel
//! media-driver's Gen9 picture set-up (`mhw_vdbox_*_g9_X.h`, the
//! `*_hwcmd_g9_skl.h` / `_kbl.h` command sizes).
//!
//! Commands, their order and lengths, register writes and field values are
//! the drivers'. Their buffers are moved into the test vGPU's slices (the
//! drivers address a flat PPGTT, the monitor mediates GGTT slices), and
//! STATE_BASE_ADDRESS bounds are the slice's rather than 4 GiB; a stream
//! the scanner still refuses is `#[ignore]`d with the reason (the README's
//! known limits).
//!
//! Every accepted stream is also checked with the fuzzer's checker: every
//! address the scanner rewrote lies in the vGPU's host slices.

mod scan_support;

use gpu::engine::Engine;
use gpu::scan::operands::{Extent, High};
use gpu::scan::{Len, Op, COMMANDS};
use scan_support::*;

/// Where each stream's batch lives (the hidden slice's last 64 KiB).
const BATCH: u64 = HIDDEN + HIDDEN_SIZE - 0x1_0000;
/// Buffers the streams point at (the first 3 MiB of the hidden slice).
const BUF: u64 = HIDDEN;

/// Runs `stream` as a first-level batch called from the ring on `engine`
/// and checks it is accepted and remapped into the slices.
fn accept(engine: Engine, stream: &[u32]) {
    let mut g = FakeGm::new();
    let mut batch = stream.to_vec();
    batch.push(BB_END);
    g.write(BATCH, &batch);
    let rs = ring(&mut g, &bb_start(BATCH, false));
    let mut s = shadow(engine);
    let sub = s
        .scan(&g, rs)
        .unwrap_or_else(|e| panic!("{engine}: refused: {e}"));
    check_buffer(engine, &s.ring[..sub.ring_dwords]);
    for b in &s.batches[..sub.batches] {
        check_buffer(engine, &b.words[..b.len]);
    }
}

/// The command `name` (a table row of `engine`) of `len` DWords: its
/// header with the DWord Length for `len`, the body zero.
fn cmd(engine: Engine, name: &str, len: usize) -> Vec<u32> {
    let spec = COMMANDS
        .iter()
        .find(|c| c.name == name && c.engines.contains(engine))
        .unwrap_or_else(|| panic!("{name} on {engine}"));
    let mut w = vec![0u32; len];
    w[0] = spec.opcode.header_bits()
        | match spec.len {
            Len::Fixed(_) => 0,
            Len::Field { bias, .. } => (len - usize::from(bias)) as u32,
        };
    w
}

/// [`cmd`] with every address field of its layout pointing into the
/// slice (at `BUF` + 64 KiB steps; an upper bound 4 KiB above its base),
/// as the media-driver's `AddResourceToCmd` fills them.
fn with_buffers(engine: Engine, name: &str, len: usize) -> Vec<u32> {
    let mut w = cmd(engine, name, len);
    let spec = COMMANDS
        .iter()
        .find(|c| c.name == name && c.engines.contains(engine))
        .unwrap();
    let Op::Gm(layout) = spec.op else {
        panic!("{name} has no layout")
    };
    let grouped = layout.group.into_iter().flat_map(|(g, fields)| {
        let n = if g.count == 0 {
            (len - usize::from(g.start)) / usize::from(g.stride)
        } else {
            usize::from(g.count)
        };
        (0..n).flat_map(move |e| {
            fields
                .iter()
                .map(move |f| (usize::from(g.start) + e * usize::from(g.stride), f))
        })
    });
    let fields = layout.fields.iter().map(|f| (0, f)).chain(grouped);
    for (i, (base, f)) in fields.enumerate() {
        let d = base + usize::from(f.dword);
        if d + 1 >= len {
            continue;
        }
        let a = BUF + 0x1_0000 * i as u64;
        w[d] = lo(a) & !((1u32 << f.shift) - 1);
        w[d + 1] = match f.high {
            High::None => w[d + 1],
            High::Bits16 | High::Bits32 => hi(a),
        };
        if let Extent::UpperBound { dword } = f.extent {
            let b = base + usize::from(dword);
            w[b] = lo(a + 0x1000);
            w[b + 1] = hi(a + 0x1000);
        }
    }
    w
}

/// MI_LOAD_REGISTER_IMM of `pairs` (one command, as drivers batch them).
fn lri(pairs: &[(u32, u32)]) -> Vec<u32> {
    let mut w = vec![(0x22 << 23) | (2 * pairs.len() as u32 - 1)];
    for &(r, v) in pairs {
        w.extend([r, v]);
    }
    w
}
/// MI_LOAD_REGISTER_MEM (GGTT) of `reg` from `addr`.
fn lrm(reg: u32, addr: u64) -> [u32; 4] {
    [(0x29 << 23) | (1 << 22) | 2, reg, lo(addr), hi(addr)]
}
/// MI_STORE_REGISTER_MEM (GGTT) of `reg` to `addr`.
fn srm(reg: u32, addr: u64) -> [u32; 4] {
    gpu::encode::srm(reg, addr)
}
/// MI_LOAD_REGISTER_REG from `src` to `dst`.
fn lrr(src: u32, dst: u32) -> [u32; 3] {
    [(0x2a << 23) | 1, src, dst]
}
/// A masked write setting `bits` (their mask bits and values).
fn set(bits: u32) -> u32 {
    bits << 16 | bits
}
/// A masked write clearing `bits`.
fn clear(bits: u32) -> u32 {
    bits << 16
}
/// PIPE_CONTROL without post-sync, with `flags` in DW1 (CS stall, caches).
fn pipe_control_flush(flags: u32) -> [u32; 6] {
    [gfx(0x1a00, 6), flags, 0, 0, 0, 0]
}
/// PIPELINE_SELECT with Gen9's mask bits (9:8) and `pipeline` (0 3D, 1
/// media, 2 GPGPU) plus `extra` Gen9 bits.
fn pipeline_select(pipeline: u32, extra: u32) -> u32 {
    (3 << 29) | (0x0904 << 16) | (3 << 8) | extra | pipeline
}
/// STATE_BASE_ADDRESS (19 DWords) with every base in the slice: general,
/// surface, dynamic, indirect and instruction heaps of 64 KiB each.
fn state_base_address() -> [u32; 19] {
    sba(BUF + 0x20_0000, 0x1_0000, 0x1_0000)
}
const CS_STALL: u32 = 1 << 20;
const RT_FLUSH: u32 = 1 << 12;

// ---- Mesa ----

/// Mesa iris `iris_init_render_context` (Gen9): pipeline select, L3
/// configuration (`iris_emit_l3_config`), STATE_BASE_ADDRESS, CS_DEBUG_MODE2
/// (constant buffer address offset disable), CACHE_MODE_1 (float blend
/// optimisation, MSC RAW hazard avoidance, partial resolve in VC), the
/// invariant 3D state (drawing rectangle, sample pattern, AA line, WM
/// chromakey, an all-zero WM_HZ_OP, stipple offset), push constant
/// allocation; then `iris_enable_obj_preemption` (CS_CHICKEN1 replay mode).
#[test]
fn iris_gen9_render_context() {
    let e = Engine::Render;
    let mut w = Vec::new();
    w.extend(pipe_control_flush(CS_STALL | RT_FLUSH));
    w.push(pipeline_select(0, 0));
    // Gen9 3D default: URB 32, all 96 ways (intel_l3_config).
    w.extend(lri(&[(0x7034, 32 << 1 | 96 << 25)]));
    w.extend(state_base_address());
    w.extend(lri(&[(0x20d8, set(1 << 4))]));
    w.extend(lri(&[(0x7004, set(1 << 4 | 1 << 9 | 1 << 1))]));
    let mut rect = cmd(e, "3DSTATE_DRAWING_RECTANGLE", 4);
    rect[2] = 0xffff_ffff;
    w.extend(rect);
    let mut pattern = cmd(e, "3DSTATE_SAMPLE_PATTERN", 9);
    pattern[5..9].copy_from_slice(&[0x8888_8888, 0x3d5b_a57f, 0xd377_b11f, 0x88]);
    w.extend(pattern);
    w.extend(cmd(e, "3DSTATE_AA_LINE_PARAMETERS", 3));
    w.extend(cmd(e, "3DSTATE_WM_CHROMAKEY", 2));
    w.extend(cmd(e, "3DSTATE_WM_HZ_OP", 5));
    w.extend(cmd(e, "3DSTATE_POLY_STIPPLE_OFFSET", 2));
    for (i, stage) in ["VS", "HS", "DS", "GS", "PS"].iter().enumerate() {
        let mut alloc = cmd(e, &format!("3DSTATE_PUSH_CONSTANT_ALLOC_{stage}"), 2);
        alloc[1] = (6 * i as u32) << 16 | 6;
        w.extend(alloc);
    }
    w.extend(pipe_control_flush(CS_STALL | RT_FLUSH));
    w.extend(lri(&[(0x2580, set(1))]));
    accept(e, &w);
}

/// Mesa anv `init_render_queue_state` (Gen9) and `genX(emit_l3_config)`.
#[test]
fn anv_gen9_render_queue_state() {
    let e = Engine::Render;
    let mut w = vec![pipeline_select(0, 0)];
    w.extend(lri(&[(0x7004, set(1 << 4 | 1 << 9 | 1 << 1))]));
    w.extend(cmd(e, "3DSTATE_AA_LINE_PARAMETERS", 3));
    let mut rect = cmd(e, "3DSTATE_DRAWING_RECTANGLE", 4);
    rect[2] = 0xffff_ffff;
    w.extend(rect);
    w.extend(cmd(e, "3DSTATE_WM_CHROMAKEY", 2));
    w.extend(cmd(e, "3DSTATE_RASTER", 5));
    w.extend(cmd(e, "3DSTATE_MULTISAMPLE", 2));
    w.extend(cmd(e, "3DSTATE_WM_HZ_OP", 5));
    w.extend(cmd(e, "3DSTATE_SAMPLE_PATTERN", 9));
    w.extend(lri(&[(0x20d8, set(1 << 4))]));
    // A compute L3 configuration with SLM (emit_l3_config, cmd buffer).
    w.extend(pipe_control_flush(CS_STALL));
    w.extend(lri(&[(0x7034, 1 | 16 << 1 | 32 << 11 | 32 << 18)]));
    accept(e, &w);
}

/// Mesa i965 `brw_upload_invariant_state` (Gen8+): pipeline select,
/// STATE_SIP of 3 DWords (SIP offset 0 from Instruction Base Address),
/// legacy AA line parameters, VF statistics.
#[test]
fn i965_gen9_invariant_state() {
    let e = Engine::Render;
    let mut w = vec![pipeline_select(0, 0)];
    w.extend(cmd(e, "STATE_SIP", 3));
    w.extend(cmd(e, "3DSTATE_AA_LINE_PARAMETERS", 3));
    w.extend(cmd(e, "3DSTATE_VF_STATISTICS", 1));
    accept(e, &w);
}

/// Mesa query, conditional rendering and indirect code on Gen9 (iris
/// `iris_query.c`, anv `genX_query.c` / `genX_cmd_buffer.c`, i965
/// `gen6_queryobj.c`): occlusion counts by PIPE_CONTROL, pipeline
/// statistics and timestamps by MI_STORE_REGISTER_MEM, transform feedback
/// counters, MI_PREDICATE operands loaded from memory, indirect draw and
/// dispatch parameters loaded from memory, MI_MATH on GPRs, the Gen9 PMA
/// fix (CACHE_MODE_0 STC PMA optimisation).
#[test]
fn mesa_gen9_queries_and_indirect_work() {
    let e = Engine::Render;
    let q = BUF + 0x10_0000;
    let mut w = Vec::new();
    // Occlusion: PS_DEPTH_COUNT by post-sync, depth stall.
    w.extend([
        gfx(0x1a00, 6),
        1 << 24 | 2 << 14 | 1 << 13,
        lo(q),
        hi(q),
        0,
        0,
    ]);
    // Pipeline statistics (both halves), CS invocations, timestamp.
    for (i, reg) in [
        0x2310, 0x2314, 0x2320, 0x2348, 0x2290, 0x2294, 0x2358, 0x235c,
    ]
    .into_iter()
    .enumerate()
    {
        w.extend(srm(reg, q + 0x100 + 8 * i as u64));
    }
    // Transform feedback: primitives written / storage needed, offsets.
    for reg in [0x5200, 0x5204, 0x5240, 0x5244, 0x5280] {
        w.extend(srm(reg, q + 0x200));
    }
    w.extend(lrm(0x5280, q + 0x200));
    // Conditional rendering: MI_PREDICATE_SRC0 from the query result,
    // SRC1 zero.
    w.extend(lrm(0x2400, q));
    w.extend(lrm(0x2404, q + 4));
    w.extend(lri(&[(0x2408, 0), (0x240c, 0)]));
    // Indirect draw (vkCmdDrawIndirect / glDrawArraysIndirect).
    for (i, reg) in [0x2434, 0x2438, 0x2430, 0x243c, 0x2440]
        .into_iter()
        .enumerate()
    {
        w.extend(lrm(reg, q + 0x300 + 4 * i as u64));
    }
    w.extend([gfx(0x1b00, 7) | 1 << 10, 4, 0, 0, 0, 0, 0]);
    // MI_MATH over GPR0/GPR1 (anv/iris gen_mi_builder), result stored.
    w.extend(lri(&[(0x2600, 1), (0x2604, 0)]));
    w.extend(lrr(0x2600, 0x2608));
    w.extend([(0x1a << 23) | 2, 0x0080_0000, 0x0080_4001, 0x0510_0000]);
    w.extend(srm(0x2600, q + 0x400));
    // Gen9 PMA fix: STC PMA optimisation on, then off.
    w.extend(pipe_control_flush(CS_STALL));
    w.extend(lri(&[(0x7000, set(1 << 5))]));
    w.extend(lri(&[(0x7000, clear(1 << 5))]));
    accept(e, &w);
    // Indirect dispatch (GPGPU pipeline): DISPATCHDIMX/Y/Z from memory.
    let mut c = vec![pipeline_select(2, 0)];
    for (i, reg) in [0x2500, 0x2504, 0x2508].into_iter().enumerate() {
        c.extend(lrm(reg, q + 0x500 + 4 * i as u64));
    }
    let mut walker = cmd(e, "GPGPU_WALKER", 15);
    walker[0] |= 1 << 10;
    c.extend(walker);
    accept(e, &c);
}

/// Mesa blorp `blorp_emit_gfx8_hiz_op` (`blorp_genX_exec.h`): a depth fast
/// clear of a 256 x 256 D32_FLOAT Y-tiled depth buffer with HiZ (isl:
/// pitch 1 KiB, HiZ pitch 128 bytes) and no stencil: multisample state, PS
/// and WM off, the depth/stencil/HiZ configuration
/// (`isl_emit_depth_stencil_hiz_s`), 3DSTATE_WM_HZ_OP with the clear
/// rectangle, the post-sync PIPE_CONTROL to blorp's workaround address,
/// and the closing all-zero 3DSTATE_WM_HZ_OP.
#[test]
fn blorp_gen9_hiz_depth_clear() {
    let e = Engine::Render;
    let (depth, hiz, wa) = (BUF + 0x4_0000, BUF + 0x18_0000, BUF + 0x2f_f000);
    let mut w = cmd(e, "3DSTATE_MULTISAMPLE", 2);
    w.extend(cmd(e, "3DSTATE_PS", 12));
    w.extend(cmd(e, "3DSTATE_PS_EXTRA", 2));
    w.extend(cmd(e, "3DSTATE_WM", 2));
    // 3DSTATE_DEPTH_BUFFER: 2D, depth write, HiZ, D32_FLOAT (1), pitch.
    w.extend([
        gfx(0x1805, 8),
        1 << 29 | 1 << 28 | 1 << 22 | 1 << 18 | (1024 - 1),
        lo(depth),
        hi(depth),
        (256 - 1) << 18 | (256 - 1) << 4,
        0,
        0,
        256 / 4,
    ]);
    w.extend([gfx(0x1807, 5), 128 - 1, lo(hiz), hi(hiz), 256 / 4]);
    w.extend(cmd(e, "3DSTATE_STENCIL_BUFFER", 5));
    w.extend([gfx(0x1804, 3), 0x3f80_0000, 1]);
    // WM_HZ_OP: depth clear, full surface, 1 sample, rectangle 256 x 256.
    w.extend([
        gfx(0x1852, 5),
        1 << 30 | 1 << 25,
        0,
        256 << 16 | 256,
        0xffff,
    ]);
    w.extend([gfx(0x1a00, 6), 1 << 24 | 1 << 14, lo(wa), hi(wa), 0, 0]);
    w.extend(cmd(e, "3DSTATE_WM_HZ_OP", 5));
    accept(e, &w);
}

// ---- i915 ----

/// i915 `intel_engine_emit_ctx_wa` on a Kaby Lake render context: one
/// MI_LOAD_REGISTER_IMM of every context workaround register
/// (`gen9_ctx_workarounds_init`, `kbl_ctx_workarounds_init`, masks merged
/// per register), between flushes.
#[test]
fn i915_kbl_context_workarounds() {
    let e = Engine::Render;
    let mut w = Vec::new();
    w.extend(pipe_control_flush(CS_STALL));
    w.extend(lri(&[
        // WaCompressedResourceSamplerPbeMediaNewHashMode,
        // WaToEnableHwFixForPushConstHWBug.
        (0x7014, set(1 << 13 | 1 << 8)),
        // WaCompressedResource..., WaEnableYV12BugFix...,
        // WaEnableSamplerGPGPUPreemptionSupport.
        (0xe194, set(1 << 8 | 1 << 4 | 1 << 2)),
        // WaClearFlowControlGpgpuContextSave, WaDisablePartialInstShootdown.
        (0xe4f0, set(1 << 15 | 1 << 8)),
        // Wa4x4STCOptimizationDisable, WaDisablePartialResolveInVc.
        (0x7004, set(1 << 6 | 1 << 1)),
        // WaCcsTlbPrefetchDisable.
        (0xe188, clear(1 << 3)),
        // WaForceContextSaveRestoreNonCoherent, WaForceEnableNonCoherent.
        (0x7300, set(1 << 5 | 1 << 15 | 1 << 4)),
        // WaDisableSamplerPowerBypassForSOPingPong.
        (0xe184, set(1 << 1)),
        // WaDisableSTUnitPowerOptimization.
        (0xe180, set(1 << 13)),
        // WaDisable3DMidCmdPreemption, WaDisableGPGPUMidCmdPreemption.
        (0x2580, 0x7 << 16 | 1 << 2),
        // WaDisableSbeCacheDispatchPortSharing.
        (0xe100, set(1 << 4)),
        // skl_tune_iz_hashing (a part with 7-EU subslices).
        (0x7008, 0x3f << 16 | 0x3),
    ]));
    w.extend(pipe_control_flush(CS_STALL));
    accept(e, &w);
}

// ---- igt ----

/// igt `__gen9_gpgpu_fillfunc` (`lib/gpgpu_fill.c`, `lib/gpu_cmds.c`):
/// GPGPU pipeline select, the 18-DWord STATE_BASE_ADDRESS of
/// `gen9_emit_state_base_address` (no bindless size), MEDIA_VFE_STATE,
/// MEDIA_CURBE_LOAD, MEDIA_INTERFACE_DESCRIPTOR_LOAD and GPGPU_WALKER.
#[test]
fn igt_gpgpu_fill_gen9() {
    let e = Engine::Render;
    let mut w = vec![pipeline_select(2, 0)];
    w.extend(igt_state_base_address());
    let mut vfe = cmd(e, "MEDIA_VFE_STATE", 9);
    vfe[3] = 1 << 16 | 2 << 8;
    vfe[5] = 2 << 16 | 2;
    w.extend(vfe);
    w.extend([gfx(0x1001, 4), 0, 64, 0x100]);
    w.extend([gfx(0x1002, 4), 0, 32, 0x200]);
    let mut walker = cmd(e, "GPGPU_WALKER", 15);
    walker[4] = 1 << 30;
    walker[7] = 1;
    walker[10] = 16;
    walker[12] = 1;
    walker[13] = 0xffff;
    walker[14] = 0xffff_ffff;
    w.extend(walker);
    accept(e, &w);
}

/// igt `gen9_emit_state_base_address`: 18 DWords (header length 16),
/// general, surface, dynamic and instruction bases with their sizes, no
/// bindless base.
fn igt_state_base_address() -> Vec<u32> {
    let mut w = state_base_address()[..18].to_vec();
    w[0] = gfx(0x0101, 18);
    w[16] = 0;
    w[17] = 0;
    w
}

/// igt `__gen9_media_fillfunc` (`lib/media_fill.c`): media pipeline
/// select with Gen9's force-media-awake and sampler DOP gate bits,
/// STATE_BASE_ADDRESS, VFE, CURBE and interface descriptor loads, one
/// MEDIA_OBJECT (8 DWords, 2 of inline data) per 16x16 block each
/// followed by MEDIA_STATE_FLUSH, and the closing pipeline select.
#[test]
fn igt_media_fill_gen9() {
    let e = Engine::Render;
    // GEN9_FORCE_MEDIA_AWAKE (5, mask 13), SAMPLER_DOP_GATE (4, mask 12).
    let mut w = vec![pipeline_select(1, 1 << 13 | 1 << 12 | 1 << 5)];
    w.extend(igt_state_base_address());
    w.extend(cmd(e, "MEDIA_VFE_STATE", 9));
    w.extend([gfx(0x1001, 4), 0, 64, 0x100]);
    w.extend([gfx(0x1002, 4), 0, 32, 0x200]);
    for block in 0..4u32 {
        w.extend([gfx(0x1100, 8), 0, 0, 0, 0, 0, 16 * block, 0]);
        w.extend([gfx(0x1004, 2), 0]);
    }
    w.push(pipeline_select(1, 1 << 13 | 1 << 12 | 1 << 4));
    accept(e, &w);
}

/// igt `_gen9_render_op` (`lib/rendercopy_gen9.c`): the whole render
/// copy, from `gen8_emit_sip` to the RECTLIST 3DPRIMITIVE, with its
/// all-zero 3DSTATE_WM_DEPTH_STENCIL, 3DSTATE_DEPTH_BUFFER and
/// 3DSTATE_HIER_DEPTH_BUFFER (`gen9_emit_depth`: no depth buffer; the
/// genxml version sets only the depth buffer's MOCS). The depth buffer is
/// SURFTYPE_1D of a reserved format at GM 0 with every write disabled: the
/// scanner makes it NULL in the shadow (see `surface::null_unsizable_depth`).
#[test]
fn igt_rendercopy_gen9() {
    let e = Engine::Render;
    let vb = BUF + 0x8_0000;
    let mut w = vec![pipeline_select(0, 0)];
    w.extend(cmd(e, "STATE_SIP", 3));
    for stage in ["VS", "HS", "DS", "GS", "PS"] {
        w.extend(cmd(e, &format!("3DSTATE_PUSH_CONSTANT_ALLOC_{stage}"), 2));
    }
    w.extend(igt_state_base_address());
    w.extend([gfx(0x1823, 2), 0x40, gfx(0x1821, 2), 0x80]);
    // gen7_emit_urb: VS 64 entries of 2, others empty.
    w.extend([gfx(0x1830, 2), 64 | 1 << 16 | 4 << 25]);
    for key in [0x1833, 0x1831, 0x1832] {
        w.extend([gfx(key, 2), 4 << 25]);
    }
    w.extend([gfx(0x1824, 2), 0xc1, gfx(0x180e, 2), 0x101]);
    w.extend([gfx(0x180d, 2), 0, gfx(0x1818, 2), 1]);
    // gen8_emit_null_state: WM_HZ_OP, HS, TE, GS, DS, VS (constants and
    // stages all zero) with their binding table and sampler pointers.
    w.extend(cmd(e, "3DSTATE_WM_HZ_OP", 5));
    for (constant, stage, len, bt, samp) in [
        ("HS", "3DSTATE_HS", 9, 0x1827, 0x182c),
        ("GS", "3DSTATE_GS", 10, 0x1829, 0x182e),
        ("DS", "3DSTATE_DS", 11, 0x1828, 0x182d),
        ("VS", "3DSTATE_VS", 9, 0x1826, 0x182b),
    ] {
        w.extend(cmd(e, &format!("3DSTATE_CONSTANT_{constant}"), 11));
        w.extend(cmd(e, stage, len));
        w.extend([gfx(bt, 2), 0, gfx(samp, 2), 0]);
        if constant == "HS" {
            w.extend(cmd(e, "3DSTATE_TE", 4));
        }
    }
    w.extend(cmd(e, "3DSTATE_STREAMOUT", 5));
    w.extend(cmd(e, "3DSTATE_CLIP", 4));
    w.extend(cmd(e, "3DSTATE_SBE", 6));
    w.extend(cmd(e, "3DSTATE_SBE_SWIZ", 11));
    w.extend(cmd(e, "3DSTATE_RASTER", 5));
    w.extend(cmd(e, "3DSTATE_SF", 4));
    w.extend([gfx(0x1814, 2), 1 << 11]);
    w.extend(cmd(e, "3DSTATE_CONSTANT_PS", 11));
    let mut ps = cmd(e, "3DSTATE_PS", 12);
    ps[1] = 0x400;
    ps[3] = 1 << 27 | 2 << 18;
    ps[6] = 62 << 23 | 1;
    ps[7] = 6 << 16;
    w.extend(ps);
    w.extend([gfx(0x184d, 2), 1 << 30, gfx(0x184f, 2), 1 << 31 | 1 << 8]);
    w.extend([
        gfx(0x182a, 2),
        0x300,
        gfx(0x182f, 2),
        0x340,
        gfx(0x180f, 2),
        0x380,
    ]);
    // gen9_emit_depth: WM_DEPTH_STENCIL, DEPTH, HIER_DEPTH, STENCIL, all 0.
    w.extend(cmd(e, "3DSTATE_WM_DEPTH_STENCIL", 4));
    w.extend(cmd(e, "3DSTATE_DEPTH_BUFFER", 8));
    w.extend(cmd(e, "3DSTATE_HIER_DEPTH_BUFFER", 5));
    w.extend(cmd(e, "3DSTATE_STENCIL_BUFFER", 5));
    w.extend([gfx(0x1804, 3), 0, 1]);
    w.extend([gfx(0x1900, 4), 0, 255 << 16 | 255, 0]);
    w.extend(vertex_buffers(&[(vb, 3 * 12)]));
    w.extend(cmd(e, "3DSTATE_VERTEX_ELEMENTS", 7));
    w.extend([gfx(0x184b, 2), 0x0f]);
    w.extend([gfx(0x180c, 2), 0, gfx(0x1849, 3), 0, 0]);
    w.extend([gfx(0x1b00, 7), 0, 3, 0, 1, 0, 0]);
    accept(e, &w);
}

/// igt `igt_blitter_src_copy` (`lib/intel_batchbuffer.c`) of a Y-tiled
/// 32-bpp surface: BCS_SWCTRL selects Y for source and destination,
/// XY_SRC_COPY_BLT with both tiled bits and pitches in DWords, MI_FLUSH_DW,
/// BCS_SWCTRL reset.
#[test]
fn igt_blitter_src_copy_y_tiled() {
    let (dst, src) = (BUF, BUF + 0x10_0000);
    let (width, height, stride) = (256u32, 64u32, 1024u32);
    let mut w = lri(&[(0x2_2200, set(0b11))]);
    w.extend([
        (2 << 29) | (0x53 << 22) | (3 << 20) | 1 << 15 | 1 << 11 | 8,
        3 << 24 | 0xcc << 16 | (stride / 4),
        0,
        height << 16 | width,
        lo(dst),
        hi(dst),
        0,
        stride / 4,
        lo(src),
        hi(src),
    ]);
    w.extend([(0x26 << 23) | 2, 0, 0, 0]);
    w.extend(lri(&[(0x2_2200, clear(0b11))]));
    accept(Engine::Blitter, &w);
}

/// igt `igt_blitter_fast_copy__raw` (`lib/intel_batchbuffer.c`:
/// `fast_copy_dword0/1`): XY_FAST_COPY_BLT of a 32-bpp surface from
/// linear to X, Y, Yf (DW1 bit 30) and Ys, pitches in DWords when tiled.
#[test]
fn igt_blitter_fast_copy() {
    let (dst, src) = (BUF, BUF + 0x10_0000);
    let (width, height, stride) = (256u32, 128u32, 1024u32);
    let mut w = Vec::new();
    for (tiling, yf) in [(1u32, 0u32), (2, 0), (2, 1 << 30), (3, 0)] {
        w.extend([
            (2 << 29) | (0x42 << 22) | tiling << 13 | 8,
            yf | 3 << 24 | (stride / 4),
            0,
            height << 16 | width,
            lo(dst),
            hi(dst),
            0,
            stride,
            lo(src),
            hi(src),
        ]);
    }
    accept(Engine::Blitter, &w);
}

// ---- intel media-driver ----

/// media-driver MPEG-2 decode (`codechal_decode_mpeg2.cpp`, Gen9 MFX):
/// pipe mode, surface, pipe buffer addresses (SKL: 65 DWords), indirect
/// object and BSP buffer bases, the 13-DWord MFX_MPEG2_PIC_STATE, two
/// 18-DWord MFX_QM_STATEs, a slice, a flush, and the status reads of
/// `EndStatusReport` (MFX_ERROR_FLAG, MFX_MB_COUNT) after the slice.
#[test]
fn media_driver_mpeg2_decode() {
    let e = Engine::Video;
    let status = BUF + 0x30_0000;
    let mut w = cmd(e, "MFX_PIPE_MODE_SELECT", 5);
    w.extend(cmd(e, "MFX_SURFACE_STATE", 6));
    w.extend(with_buffers(e, "MFX_PIPE_BUF_ADDR_STATE", 65));
    w.extend(with_buffers(e, "MFX_IND_OBJ_BASE_ADDR_STATE", 26));
    w.extend(with_buffers(e, "MFX_BSP_BUF_BASE_ADDR_STATE", 10));
    w.extend(cmd(e, "MFX_MPEG2_PIC_STATE", 13));
    w.extend(cmd(e, "MFX_QM_STATE", 18));
    w.extend(cmd(e, "MFX_QM_STATE", 18));
    w.extend(cmd(e, "MFD_MPEG2_BSD_OBJECT", 5));
    w.extend([(0x26 << 23) | 2, 0, 0, 0]);
    w.extend(srm(0x1_2800, status));
    w.extend(srm(0x1_2868, status + 4));
    accept(e, &w);
}

/// media-driver AVC decode on Kaby Lake (`codechal_decode_avc.cpp`,
/// `mhw_vdbox_mfx_hwcmd_g9_kbl.h`): the 68-DWord MFX_PIPE_BUF_ADDR_STATE,
/// DPB and picture-ID state, image state, QM, direct-mode buffers,
/// reference list, the 11-DWord slice state, the 7-DWord MFD_AVC_BSD_OBJECT
/// (and the 4-DWord MFD_AVC_SLICEADDR of the long format), then the
/// status reads (error flags, frame CRC).
#[test]
fn media_driver_avc_decode_kbl() {
    let e = Engine::Video;
    let status = BUF + 0x30_0000;
    let mut w = avc_decode_picture(68);
    w.extend(cmd(e, "MFX_AVC_REF_IDX_STATE", 10));
    w.extend(cmd(e, "MFX_AVC_SLICE_STATE", 11));
    w.extend(cmd(e, "MFD_AVC_SLICEADDR", 4));
    w.extend(cmd(e, "MFD_AVC_BSD_OBJECT", 7));
    w.extend([(0x26 << 23) | 2, 0, 0, 0]);
    w.extend(srm(0x1_2800, status));
    w.extend(srm(0x1_2850, status + 4));
    accept(e, &w);
    // The Skylake forms (`mhw_vdbox_mfx_hwcmd_g9_skl.h`): the 65-DWord
    // MFX_PIPE_BUF_ADDR_STATE, the slice commands of 3 and 6 DWords.
    let mut skl = avc_decode_picture(65);
    skl.extend(cmd(e, "MFX_AVC_REF_IDX_STATE", 10));
    skl.extend(cmd(e, "MFX_AVC_SLICE_STATE", 11));
    skl.extend(cmd(e, "MFD_AVC_SLICEADDR", 3));
    skl.extend(cmd(e, "MFD_AVC_BSD_OBJECT", 6));
    accept(e, &skl);
}

/// The picture-level commands of media-driver's AVC decode
/// (`CodechalDecodeAvc::DecodeStateLevel`), with an MFX_PIPE_BUF_ADDR_STATE
/// of `pipe_buf` DWords; the slice commands follow in the same submission.
fn avc_decode_picture(pipe_buf: usize) -> Vec<u32> {
    let e = Engine::Video;
    let mut w = cmd(e, "MFX_PIPE_MODE_SELECT", 5);
    w.extend(cmd(e, "MFX_SURFACE_STATE", 6));
    w.extend(with_buffers(e, "MFX_PIPE_BUF_ADDR_STATE", pipe_buf));
    w.extend(with_buffers(e, "MFX_IND_OBJ_BASE_ADDR_STATE", 26));
    w.extend(with_buffers(e, "MFX_BSP_BUF_BASE_ADDR_STATE", 10));
    w.extend(cmd(e, "MFD_AVC_DPB_STATE", 27));
    w.extend(cmd(e, "MFD_AVC_PICID_STATE", 10));
    w.extend(cmd(e, "MFX_AVC_IMG_STATE", 21));
    w.extend(cmd(e, "MFX_QM_STATE", 18));
    w.extend(with_buffers(e, "MFX_AVC_DIRECTMODE_STATE", 71));
    w
}

/// media-driver VP8 decode (`codechal_decode_vp8.cpp`,
/// `DecodeStateLevel`, `mhw_vdbox_mfx_g9_X.h` `AddMfxVp8PicCmd`): pipe
/// mode, surface, pipe buffer, indirect object and BSP buffer state, the
/// 38-DWord MFX_VP8_PIC_STATE with its coefficient probability table (and,
/// with segmentation, its segmentation ID stream-in), then the 22-DWord
/// MFD_VP8_BSD_OBJECT.
#[test]
fn media_driver_vp8_decode() {
    let e = Engine::Video;
    let mut w = cmd(e, "MFX_PIPE_MODE_SELECT", 5);
    w.extend(cmd(e, "MFX_SURFACE_STATE", 6));
    w.extend(with_buffers(e, "MFX_PIPE_BUF_ADDR_STATE", 65));
    w.extend(with_buffers(e, "MFX_IND_OBJ_BASE_ADDR_STATE", 26));
    w.extend(with_buffers(e, "MFX_BSP_BUF_BASE_ADDR_STATE", 10));
    // No segmentation: the segmentation ID stream address stays 0.
    let mut pic = with_buffers(e, "MFX_VP8_PIC_STATE", 38);
    pic[35] = 0;
    pic[36] = 0;
    w.extend(pic);
    // Segmentation with the map streamed in (DW2 bit 7, segment enable).
    let mut seg = with_buffers(e, "MFX_VP8_PIC_STATE", 38);
    seg[2] |= 1 << 7 | 1 << 8;
    w.extend(seg);
    w.extend(cmd(e, "MFD_VP8_BSD_OBJECT", 22));
    accept(e, &w);
}

/// media-driver HEVC and VP9 decode on Kaby Lake
/// (`codechal_decode_hevc.cpp`, `codechal_decode_vp9.cpp`,
/// `mhw_vdbox_hcp_hwcmd_g9_kbl.h`): HCP pipe mode (6 DWords), surface,
/// pipe buffer addresses (104), indirect objects, QM, picture state (32),
/// slice state (11), BSD object; VP9's segment state (7) and picture state
/// (19); then HCP_DEC_STATUS / HCP_CABAC_STATUS read after the work.
#[test]
fn media_driver_hevc_vp9_decode_kbl() {
    let e = Engine::Video;
    let status = BUF + 0x30_0000;
    let mut w = cmd(e, "HCP_PIPE_MODE_SELECT", 6);
    w.extend(cmd(e, "HCP_SURFACE_STATE", 3));
    w.extend(with_buffers(e, "HCP_PIPE_BUF_ADDR_STATE", 104));
    w.extend(with_buffers(e, "HCP_IND_OBJ_BASE_ADDR_STATE", 14));
    w.extend(cmd(e, "HCP_QM_STATE", 18));
    w.extend(cmd(e, "HCP_PIC_STATE", 32));
    w.extend(cmd(e, "HCP_SLICE_STATE", 11));
    w.extend(cmd(e, "HCP_BSD_OBJECT", 3));
    w.extend(cmd(e, "HCP_VP9_SEGMENT_STATE", 7));
    w.extend(cmd(e, "HCP_VP9_PIC_STATE", 19));
    w.extend(cmd(e, "HCP_BSD_OBJECT", 3));
    w.extend(cmd(e, "VD_PIPELINE_FLUSH", 2));
    w.extend([(0x26 << 23) | 2, 0, 0, 0]);
    w.extend(srm(0x1_e900, status));
    w.extend(srm(0x1_e904, status + 4));
    accept(e, &w);
}

/// The same HEVC decode with Skylake's command sizes
/// (`mhw_vdbox_hcp_hwcmd_g9_skl.h`: pipe mode 4, pipe buffers 95,
/// picture 19, slice 9, VP9 segment 8).
#[test]
fn media_driver_hevc_decode_skl() {
    let e = Engine::Video;
    let mut w = cmd(e, "HCP_PIPE_MODE_SELECT", 4);
    w.extend(cmd(e, "HCP_SURFACE_STATE", 3));
    w.extend(with_buffers(e, "HCP_PIPE_BUF_ADDR_STATE", 95));
    w.extend(with_buffers(e, "HCP_IND_OBJ_BASE_ADDR_STATE", 14));
    w.extend(cmd(e, "HCP_PIC_STATE", 19));
    w.extend(cmd(e, "HCP_SLICE_STATE", 9));
    w.extend(cmd(e, "HCP_VP9_SEGMENT_STATE", 8));
    w.extend(cmd(e, "HCP_BSD_OBJECT", 3));
    accept(e, &w);
}

/// media-driver VDEnc AVC encode on Kaby Lake (`codechal_vdenc_avc.cpp`
/// `ExecutePictureLevel`, `mhw_vdbox_vdenc_hwcmd_g9_kbl.h`): the MFX pipe
/// mode, the reconstructed, source and 4x downscaled MFX surfaces (IDs 0,
/// 4 and 5), the MFX pipe buffer, indirect object and BSP buffer state,
/// VDEnc pipe mode, source and reference surfaces, the 37-DWord pipe
/// buffer addresses, the 61-DWord constant QP table, the 35-DWord image
/// state, the 4-DWord walker, the pipeline flush, and the bitstream byte
/// count read after it.
#[test]
fn media_driver_vdenc_avc_encode_kbl() {
    let e = Engine::Video;
    let status = BUF + 0x30_0000;
    let mut w = cmd(e, "MFX_PIPE_MODE_SELECT", 5);
    for id in [0, 4, 5] {
        let mut surface = cmd(e, "MFX_SURFACE_STATE", 6);
        surface[1] = id;
        w.extend(surface);
    }
    w.extend(with_buffers(e, "MFX_PIPE_BUF_ADDR_STATE", 68));
    w.extend(with_buffers(e, "MFX_IND_OBJ_BASE_ADDR_STATE", 26));
    w.extend(with_buffers(e, "MFX_BSP_BUF_BASE_ADDR_STATE", 10));
    w.extend(cmd(e, "VDENC_PIPE_MODE_SELECT", 2));
    w.extend(cmd(e, "VDENC_SRC_SURFACE_STATE", 6));
    w.extend(cmd(e, "VDENC_REF_SURFACE_STATE", 6));
    w.extend(cmd(e, "VDENC_DS_REF_SURFACE_STATE", 6));
    w.extend(with_buffers(e, "VDENC_PIPE_BUF_ADDR_STATE", 37));
    w.extend(cmd(e, "VDENC_CONST_QPT_STATE", 61));
    w.extend(cmd(e, "MFX_AVC_IMG_STATE", 21));
    w.extend(cmd(e, "VDENC_IMG_STATE", 35));
    w.extend(cmd(e, "MFX_AVC_SLICE_STATE", 11));
    w.extend(cmd(e, "VDENC_WALKER_STATE", 4));
    w.extend(cmd(e, "VD_PIPELINE_FLUSH", 2));
    w.extend([(0x26 << 23) | 2, 0, 0, 0]);
    w.extend(srm(0x1_28a0, status));
    w.extend(srm(0x1_28b8, status + 4));
    accept(e, &w);
}

/// media-driver MPEG-2 decode as it really programs MFX_PIPE_BUF_ADDR_STATE:
/// the buffers a decode does not use (original picture, stream-out, MB
/// status, ILDB stream-outs, scaled reference, slice-size stream-out)
/// stay 0 (`MOS_ZeroMemory` of the command, no `AddResourceToCmd`); the
/// rest of the stream as in [`media_driver_mpeg2_decode`].
#[test]
fn media_driver_decode_with_unused_buffers() {
    let e = Engine::Video;
    let mut buffers = with_buffers(e, "MFX_PIPE_BUF_ADDR_STATE", 65);
    for d in [7, 10, 52, 55, 58, 62] {
        buffers[d] = 0;
        buffers[d + 1] = 0;
    }
    let mut w = cmd(e, "MFX_PIPE_MODE_SELECT", 5);
    w.extend(cmd(e, "MFX_SURFACE_STATE", 6));
    w.extend(buffers);
    w.extend(with_buffers(e, "MFX_IND_OBJ_BASE_ADDR_STATE", 26));
    w.extend(with_buffers(e, "MFX_BSP_BUF_BASE_ADDR_STATE", 10));
    w.extend(cmd(e, "MFX_MPEG2_PIC_STATE", 13));
    w.extend(cmd(e, "MFD_MPEG2_BSD_OBJECT", 5));
    accept(e, &w);
}
