//! The holes of issue 9 that the operand layouts and the tracked state
//! close, each a stream the scanner accepted before:
//! - addresses the audit did not see (SFC_STATE's frame and line buffers,
//!   HCP's VP9 segment map, MFX_STATE_POINTER);
//! - extents that were guessed ("to the end of the slice"): the depth
//!   packet's surfaces and the video pipes' pictures and buffers, now
//!   computed from the state that defines them, so a surface near the end
//!   of a slice whose real extent crosses into the next vGPU's memory is
//!   refused;
//! - commands that consume state set earlier (3DSTATE_WM_HZ_OP, the video
//!   objects, HUC_START), refused unless that state was set in the same
//!   submission.

mod scan_support;

use gpu::engine::Engine;
use gpu::scan::operands::{self, AddrField, Layout, When};
use gpu::scan::tracked::{Tracked, CONSUMERS};
use gpu::scan::{GmFault, Reason, Submission};
use scan_support::*;

fn h(guest: u64) -> u64 {
    if guest >= HIDDEN {
        guest - HIDDEN + HIDDEN_HOST
    } else {
        guest - APERTURE + APERTURE_HOST
    }
}

/// The end of the hidden slice: the next vGPU's memory starts here.
const END: u64 = HIDDEN + HIDDEN_SIZE;

fn scan(engine: Engine, cmds: &[u32]) -> Result<(Submission, Vec<u32>), Reason> {
    let mut g = FakeGm::new();
    let rs = ring(&mut g, cmds);
    let mut s = shadow(engine);
    match s.scan(&g, rs) {
        Ok(sub) => Ok((sub, s.ring[..sub.ring_dwords].to_vec())),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            Err(e.reason)
        }
    }
}

fn accepted(engine: Engine, cmds: &[u32]) -> (Submission, Vec<u32>) {
    scan(engine, cmds).unwrap_or_else(|r| panic!("refused: {r}"))
}

fn refused(engine: Engine, cmds: &[u32]) -> Reason {
    match scan(engine, cmds) {
        Ok(_) => panic!("accepted"),
        Err(r) => r,
    }
}

fn out_of_slices(r: Reason) -> bool {
    matches!(
        r,
        Reason::Memory {
            fault: GmFault::OutOfSlices,
            ..
        }
    )
}

fn field(layout: &'static Layout, name: &str) -> &'static AddrField {
    layout
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name}"))
}

fn addr(w: &[u32], dword: usize) -> u64 {
    u64::from(w[dword + 1]) << 32 | u64::from(w[dword])
}

// ---- addresses the audit did not see ----

/// SFC_STATE (32 DWords): output frame of `width` x `rows` pixels, linear
/// 8-bit, `pitch` bytes, and the two line buffers, at the given addresses.
fn sfc_state(out: u64, avs: u64, ief: u64, pitch: u32, width: u32, rows: u32) -> Vec<u32> {
    let mut w = vec![0u32; 32];
    w[0] = gfx(0x1501, 32);
    w[2] = (rows - 1) << 16 | (width - 1);
    w[7] = (rows - 1) << 16 | (width - 1);
    // Output surface: linear, Y8_UNORM (format 12).
    w[29] = 12 << 28 | (pitch - 1) << 3;
    for (d, a) in [(17, out), (20, avs), (23, ief)] {
        w[d] = lo(a) & !0xfff;
        w[d + 1] = hi(a) & 0xffff;
    }
    w
}

/// Accepted before with the victim's addresses, unaudited and unremapped
/// (genxml types them `uint`): now each is audited over its extent and
/// remapped, the other bits of its high DWord kept.
#[test]
fn sfc_state_frames_are_audited_and_remapped() {
    let out = HIDDEN + 0x10_0000;
    let (avs, ief) = (HIDDEN + 0x20_0000, APERTURE + 0x2_0000);
    let mut cmd = sfc_state(out, avs, ief, 1024, 1000, 100);
    cmd[18] |= 0x00a5_0000;
    for engine in [Engine::Video, Engine::VideoEnhance] {
        let (sub, r) = accepted(engine, &cmd);
        assert_eq!(addr(&r, 17) & 0xffff_ffff_f000, h(out));
        assert_eq!(r[18] >> 16, 0xa5, "other fields of the high DWord kept");
        assert_eq!(u64::from(r[20]), h(avs) & 0xffff_ffff);
        assert_eq!(u64::from(r[23]), h(ief) & 0xffff_ffff);
        // The output frame is a write target over its 100 rows.
        assert!(sub.writes.contains((out + 99 * 1024) / 4096));
    }
    // Another vGPU's memory, for each of the three.
    for d in [17, 20, 23] {
        let mut bad = cmd.clone();
        bad[d] = 0x1000;
        bad[d + 1] = 0;
        assert!(out_of_slices(refused(Engine::Video, &bad)), "DWord {d}");
    }
    // A frame whose last rows cross the end of the slice.
    let near = sfc_state(END - 99 * 1024, avs, ief, 1024, 1000, 100);
    accepted(Engine::Video, &near);
    let over = sfc_state(END - 99 * 1024, avs, ief, 1024, 1000, 101);
    assert!(out_of_slices(refused(Engine::Video, &over)));
}

/// HCP_PIPE_BUF_ADDR_STATE's VP9 segment ID buffer (DWord 86, genxml
/// `uint`) went to the engine unaudited: now it is one of the layout's
/// fields.
#[test]
fn hcp_segment_id_buffer_is_audited() {
    let f = field(
        &operands::HCP_PIPE_BUF_ADDR,
        "VP9 Segment ID Buffer - Address",
    );
    let mut w = tracked_command(Tracked::HcpPipeBuf);
    let (_, r) = accepted(Engine::Video, &w);
    assert_eq!(addr(&r, usize::from(f.dword)), h(STATE_AT));
    put_field(&mut w, 0, f, 0x1000);
    assert!(out_of_slices(refused(Engine::Video, &w)));
}

/// MFX_STATE_POINTER points at memory-resident state (genxml types the
/// pointer `uint`) of a size no source gives: refused, with its reason.
#[test]
fn mfx_state_pointer_is_refused() {
    let cmd = [gfx(0x1006, 2), 0x1000_0000];
    assert!(matches!(
        refused(Engine::Video, &cmd),
        Reason::Unsupported(why) if why.contains("MFX_STATE_POINTER")
    ));
}

// ---- the depth packet ----

/// 3DSTATE_DEPTH_BUFFER: 2D D32_FLOAT of `w` x `h` pixels, `pitch` bytes,
/// at `a`, HiZ enabled if `hiz`.
fn depth(a: u64, pitch: u32, w: u32, rows: u32, hiz: bool) -> Vec<u32> {
    vec![
        gfx(0x1805, 8),
        1 << 29 | 1 << 28 | u32::from(hiz) << 22 | 1 << 18 | (pitch - 1),
        lo(a),
        hi(a),
        (rows - 1) << 18 | (w - 1) << 4,
        0,
        0,
        0,
    ]
}
fn hiz(a: u64, pitch: u32) -> Vec<u32> {
    vec![gfx(0x1807, 5), pitch - 1, lo(a), hi(a), 0]
}
fn stencil(a: u64, pitch: u32, enabled: bool) -> Vec<u32> {
    vec![
        gfx(0x1806, 5),
        u32::from(enabled) << 31 | (pitch - 1),
        lo(a),
        hi(a),
        0,
    ]
}
fn clear_params() -> [u32; 3] {
    [gfx(0x1804, 3), 0, 1]
}
fn cat(parts: &[&[u32]]) -> Vec<u32> {
    parts.concat()
}

/// The null depth packet Mesa and igt emit when no depth buffer is bound
/// (NULL depth buffer, all-zero HiZ and stencil state) was refused (its
/// HiZ address 0 lies outside the slices): every Mesa context was refused.
/// Now the HiZ buffer counts only when the depth buffer enables it.
#[test]
fn the_null_depth_packet_is_accepted() {
    let mut null = depth(0, 1, 1, 1, false);
    null[1] = 7 << 29 | 1 << 18;
    let cmds = cat(&[
        &null,
        &[gfx(0x1806, 5), 0, 0, 0, 0],
        &[gfx(0x1807, 5), 0, 0, 0, 0],
        &clear_params(),
        &primitive(),
    ]);
    let (_, r) = accepted(Engine::Render, &cmds);
    assert_eq!(r, cmds, "nothing rewritten");
    // A HiZ buffer the depth buffer enables is audited: address 0 is not
    // the vGPU's.
    let mut on = depth(HIDDEN, 1024, 64, 64, true);
    on.extend([gfx(0x1807, 5), 0, 0, 0, 0]);
    assert!(out_of_slices(refused(Engine::Render, &on)));
}

/// igt's all-zero depth buffer (SURFTYPE_1D, reserved format 0, GM 0,
/// every write disabled; its genxml version sets MOCS) was refused for its
/// format, stopping igt's render copy. The engine would read it wherever a
/// depth test is enabled later, so it is not left as it is: the shadow
/// makes it SURFTYPE_NULL, which the engine never reads or writes, and the
/// packet counts as a NULL one (its HiZ and stencil buffers unused). A
/// buffer of the same kind that enables a write is still refused.
#[test]
fn an_unusable_depth_buffer_is_made_null() {
    let mut igt = vec![gfx(0x1805, 8), 0, 0, 0, 0, 0, 0, 0];
    igt[5] = 2; // MOCS
    let cmds = cat(&[
        &[gfx(0x184e, 4), 0, 0, 0],
        &igt,
        &[gfx(0x1807, 5), 0, 0, 0, 0],
        &[gfx(0x1806, 5), 0, 0, 0, 0],
        &clear_params(),
        &primitive(),
    ]);
    let (sub, r) = accepted(Engine::Render, &cmds);
    assert_eq!(r[5], 7 << 29, "made SURFTYPE_NULL");
    assert_eq!(&r[6..12], &igt[2..], "nothing else rewritten");
    assert!(sub.writes.runs().is_empty());
    // A 1D or reserved-format buffer that enables a depth, stencil or HiZ
    // write is refused as before.
    for bit in [28, 27, 22] {
        let mut w = igt.clone();
        w[1] |= 1 << bit;
        let cmds = cat(&[&w, &[gfx(0x1807, 5), 0, 0, 0, 0], &stencil(0, 1, false)]);
        assert!(
            matches!(refused(Engine::Render, &cmds), Reason::Unsupported(_)),
            "bit {bit}"
        );
    }
    // A stencil buffer enabled beside it has no dimensions: refused.
    let enabled = cat(&[
        &igt,
        &[gfx(0x1807, 5), 0, 0, 0, 0],
        &stencil(HIDDEN, 128, true),
    ]);
    assert!(matches!(
        refused(Engine::Render, &enabled),
        Reason::Unsupported(_)
    ));
}

/// The depth buffer was audited as "to the end of its slice": a 256 x 256
/// D32 buffer (256 KiB) starting 64 KiB before the end reached into the
/// next vGPU's memory and was accepted. Now its extent is its surface.
#[test]
fn a_depth_buffer_near_the_slice_end_is_refused() {
    let ms = multisample(0);
    let packet = |a: u64| {
        cat(&[
            &ms,
            &depth(a, 1024, 256, 256, false),
            &stencil(0, 1, false),
            &hiz(0, 1),
            &clear_params(),
        ])
    };
    let fits = END - 256 * 1024;
    let (sub, r) = accepted(Engine::Render, &packet(fits));
    assert_eq!(addr(&r, 4), h(fits));
    // Its surface, and nothing past it, is a write target.
    assert!(sub.writes.contains((END - 1) / 4096));
    assert!(!sub.writes.untracked);
    let over = END - 64 * 1024;
    assert!(out_of_slices(refused(Engine::Render, &packet(over))));
    // One pixel more than fits: a 33rd tile row.
    let tall = cat(&[
        &ms,
        &depth(fits, 1024, 256, 257, false),
        &stencil(0, 1, false),
        &hiz(0, 1),
    ]);
    assert!(out_of_slices(refused(Engine::Render, &tall)));
    // Without a sample count in the submission, the buffer may be 16x
    // multisampled: 4 x 4 samples a pixel.
    let unknown = cat(&[&depth(END - 4 * 256 * 1024, 1024, 256, 256, false)]);
    assert!(out_of_slices(refused(Engine::Render, &unknown)));
    // Arrays: the render target view's last slice, QPitch x 4 rows apart.
    let mut array = depth(fits, 1024, 256, 64, false);
    array[5] = 3 << 10; // Minimum Array Element 3
    array[7] = 16; // QPitch: 64 rows
    let arrayed = cat(&[&ms, &array, &stencil(0, 1, false), &hiz(0, 1)]);
    accepted(Engine::Render, &arrayed);
    array[7] = 17;
    let past = cat(&[&ms, &array, &stencil(0, 1, false), &hiz(0, 1)]);
    assert!(out_of_slices(refused(Engine::Render, &past)));
}

/// Layouts the scanner does not model are refused, not guessed.
#[test]
fn unmodelled_depth_layouts_are_refused() {
    let ms = multisample(0);
    let mut one_d = depth(HIDDEN, 1024, 64, 1, false);
    one_d[1] &= !(7 << 29);
    let mut ys = depth(HIDDEN, 1024, 64, 64, false);
    ys[6] = 2 << 30;
    let mut format = depth(HIDDEN, 1024, 64, 64, false);
    format[1] &= !(7 << 18);
    for d in [one_d, ys, format] {
        assert!(matches!(
            refused(Engine::Render, &cat(&[&ms, &d])),
            Reason::Unsupported(_)
        ));
    }
}

/// The HiZ and stencil buffers' extents are the depth buffer's dimensions
/// at their own pitch (they were "to the end of the slice"), so they must
/// follow a depth buffer in the submission.
#[test]
fn hiz_and_stencil_extents_follow_the_depth_buffer() {
    let ms = multisample(0);
    let d = depth(HIDDEN, 1024, 256, 256, true);
    // HiZ: 16 bytes per 8 x 4 samples: 512 bytes x 64 rows, two Y tile
    // rows of a 512-byte pitch.
    let hiz_bytes = 2 * 32 * 512;
    let ok = cat(&[
        &ms,
        &d,
        &hiz(END - hiz_bytes, 512),
        &stencil(HIDDEN + 0x10_0000, 512, true),
    ]);
    let (_, r) = accepted(Engine::Render, &ok);
    assert_eq!(addr(&r, 2 + 8 + 2), h(END - hiz_bytes));
    let low = cat(&[
        &ms,
        &d,
        &hiz(END - hiz_bytes + 4096, 512),
        &stencil(HIDDEN + 0x10_0000, 512, true),
    ]);
    assert!(out_of_slices(refused(Engine::Render, &low)));
    // Stencil: W-tiled 8-bit, 256 rows = 4 tile rows of 32 x 512 bytes.
    let stencil_bytes = 4 * 32 * 512;
    let s_ok = cat(&[
        &ms,
        &d,
        &hiz(HIDDEN + 0x10_0000, 512),
        &stencil(END - stencil_bytes, 512, true),
    ]);
    accepted(Engine::Render, &s_ok);
    let s_low = cat(&[
        &ms,
        &d,
        &hiz(HIDDEN + 0x10_0000, 512),
        &stencil(END - stencil_bytes + 4096, 512, true),
    ]);
    assert!(out_of_slices(refused(Engine::Render, &s_low)));
    // A disabled stencil buffer is not audited.
    accepted(
        Engine::Render,
        &cat(&[&ms, &d, &hiz(HIDDEN, 512), &stencil(0x10, 1, false)]),
    );
    // Without a depth buffer before them, their dimensions are unknown.
    for alone in [hiz(HIDDEN, 512), stencil(HIDDEN, 512, true)] {
        assert!(matches!(
            refused(Engine::Render, &alone),
            Reason::UnseenState(_)
        ));
    }
}

/// A draw while the depth packet is half set would use the context's HiZ
/// and stencil buffers at the new depth buffer's dimensions; a submission
/// that ends so leaves them to the next one's draws.
#[test]
fn a_half_set_depth_packet_is_refused() {
    let ms = multisample(0);
    let d = depth(HIDDEN, 1024, 64, 64, false);
    let whole = cat(&[&ms, &d, &stencil(0, 1, false), &hiz(0, 1), &primitive()]);
    accepted(Engine::Render, &whole);
    let draw_first = cat(&[&ms, &d, &primitive(), &stencil(0, 1, false), &hiz(0, 1)]);
    assert!(matches!(
        refused(Engine::Render, &draw_first),
        Reason::UnseenState(_)
    ));
    let unfinished = cat(&[&ms, &d, &stencil(0, 1, false)]);
    assert!(matches!(
        refused(Engine::Render, &unfinished),
        Reason::UnseenState(_)
    ));
    // The same in a batch, whose draws the fast loop takes.
    let mut g = FakeGm::new();
    let batch = HIDDEN + 0x30_0000;
    let mut body = cat(&[&ms, &d, &plain_state(), &primitive()]);
    body.push(BB_END);
    g.write(batch, &body);
    let rs = ring(&mut g, &bb_start(batch, false));
    assert!(matches!(
        shadow(Engine::Render).scan(&g, rs).unwrap_err().reason,
        Reason::UnseenState(_)
    ));
    // Draws with no depth state in the submission use the context's
    // packet, audited where it was set: accepted.
    accepted(Engine::Render, &cat(&[&plain_state(), &primitive()]));
}

/// A sample count raised after the packet was audited scales its buffers:
/// re-audited if the submission set the packet, else the packet must be
/// set again before a draw.
#[test]
fn a_raised_sample_count_reaudits_the_depth_packet() {
    // 256 x 64 D32 at 1x: 64 KiB, ending at the slice end.
    let a = END - 64 * 1024;
    let packet = cat(&[
        &depth(a, 1024, 256, 64, false),
        &stencil(0, 1, false),
        &hiz(0, 1),
    ]);
    accepted(Engine::Render, &cat(&[&multisample(0), &packet]));
    let raised = cat(&[&multisample(0), &packet, &multisample(2), &primitive()]);
    assert!(out_of_slices(refused(Engine::Render, &raised)));
    // The context's packet, a raised count, a draw.
    let stale = cat(&[&multisample(2), &primitive()]);
    assert!(matches!(
        refused(Engine::Render, &stale),
        Reason::UnseenState(_)
    ));
    accepted(Engine::Render, &cat(&[&multisample(0), &primitive()]));
}

/// 3DSTATE_WM_HZ_OP clears and resolves the depth packet's surfaces: run
/// without the packet in the submission, it cleared whatever the engine
/// held. Now it needs the packet, audited at its own sample count.
#[test]
fn wm_hz_op_needs_the_depth_packet() {
    let hz = |samples: u32| {
        [
            gfx(0x1852, 5),
            1 << 30 | samples << 13,
            0,
            64 << 16 | 64,
            0xffff,
        ]
    };
    assert!(matches!(
        refused(Engine::Render, &hz(0)),
        Reason::UnseenState("3DSTATE_DEPTH_BUFFER")
    ));
    let a = END - 64 * 1024;
    let packet = cat(&[
        &multisample(0),
        &depth(a, 1024, 256, 64, false),
        &stencil(0, 1, false),
        &hiz(0, 1),
    ]);
    accepted(Engine::Render, &cat(&[&packet, &hz(0)]));
    assert!(out_of_slices(refused(
        Engine::Render,
        &cat(&[&packet, &hz(3)])
    )));
}

// ---- commands that consume state set earlier ----

/// The command of consumer row `name` with its own operands in the slice,
/// active (a 3DSTATE_WM_HZ_OP with an operation enabled).
fn consumer_command(name: &str) -> Vec<u32> {
    let r = row(name);
    let mut w = match r.tracks {
        Some(t) => tracked_command(t),
        None => shortest(r),
    };
    if let Some(When::AnySet(d, mask)) = r.consumer().map(|c| c.active) {
        w[usize::from(d)] |= 1 << mask.trailing_zeros();
    }
    w
}

/// A 3DSTATE_WM_HZ_OP with no clear or resolve enabled (Mesa's closing
/// and context-start one) touches no surface: it needs no depth packet,
/// even a half-set one; with an operation enabled it needs the packet.
#[test]
fn an_inactive_hz_op_consumes_nothing() {
    let idle = shortest(row("3DSTATE_WM_HZ_OP"));
    accepted(Engine::Render, &idle);
    let mut half = tracked_command(Tracked::DepthBuffer);
    half.extend(&idle);
    half.extend(tracked_command(Tracked::HierDepth));
    half.extend(tracked_command(Tracked::Stencil));
    accepted(Engine::Render, &half);
    let active = consumer_command("3DSTATE_WM_HZ_OP");
    assert!(matches!(
        refused(Engine::Render, &active),
        Reason::UnseenState("3DSTATE_DEPTH_BUFFER")
    ));
}

/// Every consuming command ran against whatever the engine context held
/// (another vGPU's buffers, or host addresses from before a migration):
/// each was accepted alone. Now each is refused without its state in the
/// submission, and accepted with it, unless no state bounds what it may
/// reach.
#[test]
fn every_consumer_needs_its_state_in_the_submission() {
    let mut with_state = 0;
    for c in CONSUMERS.iter().filter(|c| !c.only_settled_depth()) {
        let r = row(c.command);
        let engine = Engine::ALL
            .into_iter()
            .find(|&e| r.engines.contains(e))
            .unwrap();
        let cmd = consumer_command(c.command);
        match refused(engine, &cmd) {
            Reason::UnseenState(_) => {}
            other => panic!("{} alone: {other:?}", c.command),
        }
        let mut full = state_for(c);
        full.extend(&cmd);
        match scan(engine, &full) {
            Ok(_) => with_state += 1,
            Err(Reason::Unbounded(what)) => {
                // HuC regions, deblocking control data, and the VP8
                // encoder's buffers (MFX_VP8_BSP_BUF_BASE_ADDR_STATE at its
                // Gen9 length): no state sizes them.
                assert!(
                    ["HUC_START", "MFX_DBK_OBJECT", "MFX_VP8_PAK_OBJECT"].contains(&c.command),
                    "{}: {what}",
                    c.command
                )
            }
            Err(other) => panic!("{} with its state: {other:?}", c.command),
        }
    }
    assert!(with_state >= 17, "{with_state}");
}

/// A state set on the ring of another submission does not count: each
/// submission starts from nothing.
#[test]
fn consumed_state_does_not_outlive_its_submission() {
    let c = CONSUMERS
        .iter()
        .find(|c| c.command == "MFD_AVC_BSD_OBJECT")
        .unwrap();
    let mut g = FakeGm::new();
    let mut s = shadow(Engine::Video);
    let rs = ring(&mut g, &state_for(c));
    s.scan(&g, rs).unwrap();
    let rs = ring(&mut g, &consumer_command(c.command));
    assert!(matches!(
        s.scan(&g, rs).unwrap_err().reason,
        Reason::UnseenState(_)
    ));
}

/// MFX decode state of a `width` x `rows` NV12 picture (Y-tiled, `pitch`
/// bytes, chroma at row `cb`), post-deblocking output on, every buffer at
/// STATE_AT but the decoded picture at `out`; then an AVC slice. Returns
/// the stream and where each state command starts in it.
fn avc_decode(
    out: u64,
    pitch: u32,
    width: u32,
    rows: u32,
    cb: u32,
) -> (Vec<u32>, Vec<(Tracked, usize)>) {
    let c = CONSUMERS
        .iter()
        .find(|c| c.command == "MFD_AVC_BSD_OBJECT")
        .unwrap();
    let mut w = Vec::new();
    let mut at = Vec::new();
    for g in c.needs {
        let mut t = tracked_command(g[0]);
        match g[0] {
            Tracked::MfxPipeMode => t[1] = 1 << 9,
            Tracked::MfxSurface => {
                t[2] = (rows - 1) << 18 | (width - 1) << 4;
                t[3] = 4 << 28 | (pitch - 1) << 3 | 1 << 1 | 1;
                t[4] = cb;
            }
            Tracked::MfxPipeBuf => {
                let f = field(
                    &operands::MFX_PIPE_BUF_ADDR,
                    "Post Deblocking Destination - Address",
                );
                put_field(&mut t, 0, f, out);
            }
            Tracked::MfxAvcImg => t[2] = (rows / 16 - 1) << 16 | (width / 16 - 1),
            _ => {}
        }
        at.push((g[0], w.len()));
        w.extend(t);
    }
    w.extend(consumer_command(c.command));
    (w, at)
}

fn start(at: &[(Tracked, usize)], t: Tracked) -> usize {
    at.iter().find(|(x, _)| *x == t).unwrap().1
}

/// The decoded picture was audited "to the end of the slice": a 640 x 368
/// NV12 picture (pitch 640, 368 rows of luma and 184 of chroma, in 18 Y
/// tile rows: 360 KiB) starting 256 KiB before the end was accepted. Now
/// its extent comes from MFX_SURFACE_STATE (and the frame size of
/// MFX_AVC_IMG_STATE).
#[test]
fn a_video_picture_near_the_slice_end_is_refused() {
    let bytes = 18 * 32 * 640;
    let fits = END - bytes;
    let (cmds, at) = avc_decode(fits, 640, 640, 368, 368);
    let (_, r) = accepted(Engine::Video, &cmds);
    let f = field(
        &operands::MFX_PIPE_BUF_ADDR,
        "Post Deblocking Destination - Address",
    );
    // Remapped where it is set.
    let d = start(&at, Tracked::MfxPipeBuf) + usize::from(f.dword);
    assert_eq!(
        u64::from(r[d]) | u64::from(r[d + 1] & 0xffff) << 32,
        h(fits)
    );
    let (over, _) = avc_decode(END - 256 * 1024, 640, 640, 368, 368);
    assert!(out_of_slices(refused(Engine::Video, &over)));
    // The codec's frame size counts even where the surface state is
    // smaller.
    let (mut small, _) = avc_decode(fits, 640, 640, 368, 368);
    small[start(&at, Tracked::MfxSurface) + 2] = (64 - 1) << 18 | (64 - 1) << 4;
    accepted(Engine::Video, &small);
    let mut big_frame = small.clone();
    big_frame[start(&at, Tracked::MfxAvcImg) + 2] = (30 - 1) << 16 | (40 - 1);
    assert!(out_of_slices(refused(Engine::Video, &big_frame)));
}

/// A buffer used only in a mode the pipe's mode select turns on is left
/// alone (not remapped) while the mode is off, and refused when it is on.
#[test]
fn mode_dependent_buffers_follow_the_pipe_mode() {
    let (mut cmds, at) = avc_decode(HIDDEN + 0x20_0000, 128, 64, 64, 64);
    let f = field(
        &operands::MFX_PIPE_BUF_ADDR,
        "Pre Deblocking Destination - Address",
    );
    let buf = start(&at, Tracked::MfxPipeBuf);
    put_field(&mut cmds[buf..], 0, f, 0x1000);
    let (_, r) = accepted(Engine::Video, &cmds);
    assert_eq!(r[buf + usize::from(f.dword)], 0x1000, "left alone");
    cmds[1] |= 1 << 8;
    assert!(out_of_slices(refused(Engine::Video, &cmds)));
    // An encoder stream-out no state sizes: the mode is refused.
    let (mut ildb, _) = avc_decode(HIDDEN + 0x20_0000, 128, 64, 64, 64);
    ildb[1] |= 1 << 12;
    assert!(matches!(
        refused(Engine::Video, &ildb),
        Reason::Unbounded("MB ILDB Stream-Out Buffer - Address")
    ));
}

/// An indirect object whose upper bound is zero is not bounded by the
/// hardware: the state may set it (its base is remapped), but an object
/// that reads through it is refused.
#[test]
fn an_unbounded_indirect_object_is_refused_by_its_user() {
    let (mut cmds, at) = avc_decode(HIDDEN + 0x20_0000, 128, 64, 64, 64);
    let ind = start(&at, Tracked::MfxIndObj);
    cmds[ind + 4] = 0;
    cmds[ind + 5] = 0;
    assert!(matches!(
        refused(Engine::Video, &cmds),
        Reason::Unbounded("MFX Indirect Bitstream Object - Address")
    ));
    accepted(Engine::Video, &cmds[..cmds.len() - 6]);
}

/// HCP line buffers are sized by the frame width (HEVC and VP9 sizes of
/// the media driver): a deblocking line buffer in the last 8 KiB of the
/// slice fits a 64-pixel frame, not a 4K one.
#[test]
fn hcp_line_buffers_follow_the_frame_width() {
    let c = CONSUMERS
        .iter()
        .find(|c| c.command == "HCP_BSD_OBJECT")
        .unwrap();
    let build = |width_cb: u32| {
        let mut w = Vec::new();
        for g in c.needs {
            let mut t = tracked_command(g[0]);
            match g[0] {
                Tracked::HcpPipeBuf => {
                    let f = field(
                        &operands::HCP_PIPE_BUF_ADDR,
                        "Deblocking Filter Line Buffer - Address",
                    );
                    put_field(&mut t, 0, f, END - 8192);
                }
                // Frame width in 8-pixel minimum coding blocks.
                Tracked::HcpPic => t[1] = width_cb - 1,
                _ => {}
            }
            w.extend(t);
        }
        w.extend(consumer_command(c.command));
        w
    };
    accepted(Engine::Video, &build(8));
    assert!(out_of_slices(refused(Engine::Video, &build(480))));
}

/// HUC_START runs firmware that reaches its virtual address regions at
/// offsets no state bounds: refused even with every HuC state set.
#[test]
fn huc_start_is_refused() {
    let c = CONSUMERS.iter().find(|c| c.command == "HUC_START").unwrap();
    let mut cmds = state_for(c);
    cmds.extend(consumer_command("HUC_START"));
    assert!(matches!(
        refused(Engine::Video, &cmds),
        Reason::Unbounded("Address")
    ));
}

/// A second-level batch of draws may be reused unscanned only while the
/// depth packet is settled: called again after a half-set packet, it is
/// scanned again, and refused.
#[test]
fn a_reused_batch_of_draws_rechecks_the_depth_packet() {
    let mut g = FakeGm::new();
    let (a, b) = (HIDDEN + 0x30_0000, HIDDEN + 0x31_0000);
    g.write(b, &cat(&[&plain_state(), &primitive(), &[BB_END]]));
    let ms = multisample(0);
    let d = depth(HIDDEN, 1024, 64, 64, false);
    let settled = cat(&[&bb_start(b, true), &bb_start(b, true), &[BB_END]]);
    g.write(a, &settled);
    let rs = ring(&mut g, &bb_start(a, false));
    let sub = shadow(Engine::Render).scan(&g, rs).unwrap();
    assert_eq!(sub.batches, 2, "the callee's shadow is reused");
    let half = cat(&[
        &bb_start(b, true),
        &ms,
        &d,
        &bb_start(b, true),
        &stencil(0, 1, false),
        &hiz(0, 1),
        &[BB_END],
    ]);
    g.write(a, &half);
    let rs = ring(&mut g, &bb_start(a, false));
    assert!(matches!(
        shadow(Engine::Render).scan(&g, rs).unwrap_err().reason,
        Reason::UnseenState(_)
    ));
}
