//! Paths the engine may take: for every control-flow or predication
//! command, the scanner audits each path with the tracked state as it
//! stands on it, or refuses the command (`gpu::scan::scanner` module docs,
//! "Control flow and predication").
//!
//! Each attack below is a stream the scanner accepted before this rule;
//! each benign stream is one real drivers emit and must stay accepted.

mod scan_support;

use gpu::encode::{lri, srm};
use gpu::engine::Engine;
use gpu::scan::scanner::{sets_tracked_state, Submission, BATCH_POOL};
use gpu::scan::tracked::Tracked;
use gpu::scan::{ControlFlow, Reason, ScanError, COMMANDS};
use scan_support::*;

const GEN9: &str = include_str!("data/gen9.xml");
const BLT: u32 = 2 << 29;

// ---- streams ----

/// MI_CONDITIONAL_BATCH_BUFFER_END (GGTT, Compare Semaphore): ends the
/// batch unless the DWord at `at` is greater than `data`.
fn cond_end(at: u64, data: u32) -> [u32; 4] {
    [
        (0x36 << 23) | (1 << 22) | (1 << 21) | 2,
        data,
        lo(at),
        hi(at),
    ]
}
/// XY_SCANLINES_BLT of `rows` rows of `width` pixels from the setup's
/// destination.
fn scanlines(rows: u32, width: u32) -> [u32; 3] {
    [BLT | (0x25 << 22) | 1, 0, rows << 16 | width]
}
/// MI_SET_PREDICATE with PREDICATE ENABLE `v`.
fn set_predicate(v: u32) -> u32 {
    (0x01 << 23) | v
}
/// MI_LOAD_REGISTER_MEM (GGTT) of `reg` from `at`.
fn lrm(reg: u32, at: u64) -> [u32; 4] {
    [(0x29 << 23) | (1 << 22) | 2, reg, lo(at), hi(at)]
}
/// MI_LOAD_REGISTER_REG from `src` to `dst`.
fn lrr(src: u32, dst: u32) -> [u32; 3] {
    [(0x2a << 23) | 1, src, dst]
}
/// STATE_BASE_ADDRESS that changes only the sizes (to `size`), keeping
/// the bases the context holds.
fn sba_sizes_only(size: u32) -> [u32; 19] {
    let mut w = sba(0, 0, size);
    for dw in [1usize, 4, 6, 8, 10, 16] {
        w[dw] = 0;
        w[dw + 1] = 0;
    }
    w
}

/// A pattern for the blitter setups (read by PATCOPY).
const PATTERN: u64 = HIDDEN + 0x8000;
/// A blitter destination near the end of the hidden slice: a blit of
/// more than one row from it leaves the slice.
const EDGE: u64 = HIDDEN + HIDDEN_SIZE - 64;
/// A harmless blitter destination.
const SAFE: u64 = HIDDEN + 0x1_0000;
/// Guest GM of the batches the streams use.
const A: u64 = HIDDEN + 0x20_0000;
const B: u64 = HIDDEN + 0x21_0000;
const C: u64 = HIDDEN + 0x22_0000;
/// A status DWord a conditional end compares.
const STATUS: u64 = HIDDEN + 0x3_0000;

/// One stream: its engine, guest memory (batches written) and ring.
struct Case {
    engine: Engine,
    gm: FakeGm,
    ring: Vec<u32>,
}

fn case(engine: Engine, batches: &[(u64, Vec<u32>)], ring: Vec<u32>) -> Case {
    let mut gm = FakeGm::new();
    for (at, words) in batches {
        gm.write(*at, words);
    }
    Case { engine, gm, ring }
}

fn concat(parts: &[&[u32]]) -> Vec<u32> {
    parts.concat()
}

/// A chained batch start with Predication Enable: skipped, the engine
/// runs on past it.
fn predicated_chain() -> Case {
    let mut chain = bb_start(B, false);
    chain[0] |= 1 << 15;
    case(
        Engine::Render,
        &[(A, chain.to_vec()), (B, vec![BB_END])],
        bb_start(A, false).to_vec(),
    )
}

/// A blitter setup at the edge, a conditional end, then a harmless setup;
/// the ring's scanlines blit after the batch uses whichever holds.
fn blitter_setup_after_a_conditional_end() -> Case {
    let batch = concat(&[
        &patcopy_setup(EDGE, 4096, PATTERN),
        &cond_end(STATUS, 0),
        &patcopy_setup(SAFE, 4096, PATTERN),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &scanlines(16, 16), &[NOOP]]);
    case(Engine::Blitter, &[(A, batch)], ring)
}

/// STATE_BASE_ADDRESS with bases at the end of the slice, a conditional
/// end, then bases at its start; the ring then grows every size, audited
/// against the bases in effect.
fn base_address_after_a_conditional_end() -> Case {
    let batch = concat(&[
        &sba(HIDDEN + HIDDEN_SIZE - 0x1_0000, 0, 0x1000),
        &cond_end(STATUS, 0),
        &sba(HIDDEN, 0, 0x1000),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &sba_sizes_only(0x10_0000)]);
    case(Engine::Render, &[(A, batch)], ring)
}

/// A second-level batch that may end (taking its caller with it) before
/// it replaces the edge setup.
fn second_level_exit_continues_in_the_ring() -> Case {
    let callee = concat(&[
        &patcopy_setup(EDGE, 4096, PATTERN),
        &cond_end(STATUS, 0),
        &patcopy_setup(SAFE, 4096, PATTERN),
        &[BB_END],
    ]);
    let caller = concat(&[&bb_start(C, true), &[BB_END]]);
    let ring = concat(&[&bb_start(A, false), &scanlines(16, 16), &[NOOP]]);
    case(Engine::Blitter, &[(A, caller), (C, callee)], ring)
}

/// A second-level batch with a conditional end and no state of its own,
/// called twice: its shadow is reused, and the second call enters (and
/// may leave) it with the edge setup in effect.
fn reused_callee_exits_with_another_state() -> Case {
    let callee = concat(&[&cond_end(STATUS, 0), &[BB_END]]);
    let caller = concat(&[
        &patcopy_setup(SAFE, 4096, PATTERN),
        &bb_start(C, true),
        &patcopy_setup(EDGE, 4096, PATTERN),
        &bb_start(C, true),
        &patcopy_setup(SAFE, 4096, PATTERN),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &scanlines(16, 16), &[NOOP]]);
    case(Engine::Blitter, &[(A, caller), (C, callee)], ring)
}

/// A chained batch start inside a second-level batch.
fn chain_in_a_second_level_batch() -> Case {
    let caller = concat(&[&bb_start(C, true), &[BB_END]]);
    case(
        Engine::Render,
        &[
            (A, caller),
            (C, bb_start(B, false).to_vec()),
            (B, vec![BB_END]),
        ],
        bb_start(A, false).to_vec(),
    )
}

/// MI_BATCH_BUFFER_END, then MI_CONDITIONAL_BATCH_BUFFER_END, in the ring.
fn ends_in_the_ring() -> [Case; 2] {
    [
        case(Engine::Render, &[], vec![BB_END, NOOP]),
        case(Engine::Render, &[], cond_end(STATUS, 0).to_vec()),
    ]
}

/// MI_SET_PREDICATE `v` in a batch, around a store.
fn set_predicate_in_a_batch(v: u32) -> Case {
    let batch = concat(&[
        &[set_predicate(v)],
        &sdi(HIDDEN + 0x100, 1),
        &[set_predicate(0), BB_END],
    ]);
    case(Engine::Render, &[(A, batch)], bb_start(A, false).to_vec())
}

/// 3DSTATE_WM_HZ_OP clearing the depth buffer (it consumes the whole depth
/// packet, set in the submission: `gpu::scan::tracked`).
fn depth_clear() -> [u32; 5] {
    [gfx(0x1852, 5), 1 << 30, 0, 64 << 16 | 64, 0xffff]
}

/// The depth packet (`scan_support`'s 1 x 1 depth buffer, HiZ and stencil
/// buffers) with its depth buffer at `at`.
fn depth_packet(at: u64) -> Vec<u32> {
    let mut w = depth_buffer(at).to_vec();
    w.extend(tracked_command(Tracked::HierDepth));
    w.extend(tracked_command(Tracked::Stencil));
    w
}

/// A batch that may end before it sets the depth packet, then a depth
/// clear in the ring after it: on the early exit's path the engine clears
/// whatever packet the context held (another vGPU's, or host addresses of
/// before a migration).
fn depth_packet_after_a_conditional_end() -> Case {
    let batch = concat(&[&cond_end(STATUS, 0), &depth_packet(SAFE), &[BB_END]]);
    let ring = concat(&[&bb_start(A, false), &depth_clear()]);
    case(Engine::Render, &[(A, batch)], ring)
}

/// The video pipe's state of an AVC decode set after a conditional end,
/// the decode object in the ring after the batch.
fn video_state_after_a_conditional_end() -> Case {
    let decode = consumer("MFD_AVC_BSD_OBJECT");
    let batch = concat(&[&cond_end(STATUS, 0), &state_for(decode), &[BB_END]]);
    let ring = concat(&[&bb_start(A, false), &[gfx(0x1128, 6), 0, 0, 0, 0, 0]]);
    case(Engine::Video, &[(A, batch)], ring)
}

// ---- running them ----

fn scan(c: &mut Case) -> (Box<gpu::scan::Shadow>, Result<Submission, ScanError>) {
    let mut s = shadow(c.engine);
    let rs = ring(&mut c.gm, &c.ring);
    let r = s.scan(&c.gm, rs);
    (s, r)
}

fn refused(mut c: Case) -> Reason {
    let (_, r) = scan(&mut c);
    let e = r.expect_err("must be refused");
    assert!(!e.to_string().is_empty());
    e.reason
}

fn accepted(mut c: Case) -> (Box<gpu::scan::Shadow>, Submission) {
    let (s, r) = scan(&mut c);
    let sub = r.unwrap_or_else(|e| panic!("must be accepted: {e}"));
    check_buffer(c.engine, &s.ring[..sub.ring_dwords]);
    for b in &s.batches[..sub.batches] {
        check_buffer(c.engine, &b.words[..b.len]);
    }
    (s, sub)
}

fn unseen(r: Reason) -> bool {
    matches!(r, Reason::UnseenState(_))
}

// ---- attacks ----

#[test]
fn a_predicated_batch_start_is_refused_wherever_it_is() {
    let flow = Reason::ControlFlow(ControlFlow::PredicatedBatchStart);
    assert_eq!(refused(predicated_chain()), flow);
    // In the ring, and as a second-level call.
    let mut start = bb_start(B, false);
    start[0] |= 1 << 15;
    let c = case(Engine::Render, &[(B, vec![BB_END])], start.to_vec());
    assert_eq!(refused(c), flow);
    let mut call = bb_start(C, true);
    call[0] |= 1 << 15;
    let caller = concat(&[&call, &[BB_END]]);
    let c = case(
        Engine::Render,
        &[(A, caller), (C, vec![BB_END])],
        bb_start(A, false).to_vec(),
    );
    assert_eq!(refused(c), flow);
    // A predicated second call of a callee whose shadow is reused.
    let caller = concat(&[&bb_start(C, true), &call, &[BB_END]]);
    let c = case(
        Engine::Render,
        &[(A, caller), (C, vec![BB_END])],
        bb_start(A, false).to_vec(),
    );
    assert_eq!(refused(c), flow);
}

#[test]
fn state_set_after_a_conditional_end_is_not_trusted_after_the_batch() {
    assert!(unseen(refused(blitter_setup_after_a_conditional_end())));
    assert!(unseen(refused(base_address_after_a_conditional_end())));
}

/// The state later commands consume (`gpu::scan::tracked`: the depth
/// packet, the video pipes' state) is joined at every continuation as the
/// base addresses and the blitter setup are: set after a conditional end,
/// it is unknown after the batch; set before it, it holds.
#[test]
fn consumed_state_set_after_a_conditional_end_is_not_trusted_after_the_batch() {
    assert_eq!(
        refused(depth_packet_after_a_conditional_end()),
        Reason::UnseenState("3DSTATE_DEPTH_BUFFER")
    );
    assert_eq!(
        refused(video_state_after_a_conditional_end()),
        Reason::UnseenState("MFX_PIPE_MODE_SELECT")
    );
    let batch = concat(&[&depth_packet(SAFE), &cond_end(STATUS, 0), &[BB_END]]);
    let ring = concat(&[&bb_start(A, false), &depth_clear()]);
    accepted(case(Engine::Render, &[(A, batch)], ring));
    let decode = consumer("MFD_AVC_BSD_OBJECT");
    let batch = concat(&[&state_for(decode), &cond_end(STATUS, 0), &[BB_END]]);
    let ring = concat(&[&bb_start(A, false), &[gfx(0x1128, 6), 0, 0, 0, 0, 0]]);
    accepted(case(Engine::Video, &[(A, batch)], ring));
}

/// A depth packet an early exit leaves half set (depth buffer, exit, HiZ
/// and stencil) is half set after the batch: a draw there is refused, and
/// so is a submission that ends with it.
#[test]
fn a_packet_half_set_at_an_exit_is_half_set_after_the_batch() {
    let batch = concat(&[
        &depth_buffer(SAFE),
        &cond_end(STATUS, 0),
        &tracked_command(Tracked::HierDepth),
        &tracked_command(Tracked::Stencil),
        &[BB_END],
    ]);
    let half = |ring: Vec<u32>| case(Engine::Render, &[(A, batch.clone())], ring);
    let draw = concat(&[&bb_start(A, false), &primitive()]);
    assert!(unseen(refused(half(draw))));
    assert!(unseen(refused(half(bb_start(A, false).to_vec()))));
    // The ring sets the packet again: accepted.
    let again = concat(&[&bb_start(A, false), &depth_packet(SAFE), &primitive()]);
    accepted(half(again));
}

/// The depth packet reaches the second-level continuation and, through a
/// reused callee's exits, the ring, as the blitter setup does.
#[test]
fn a_depth_packet_is_joined_at_second_level_exits_and_reused_calls() {
    // Set after an exit of the callee, consumed in the caller after it.
    let callee = concat(&[&cond_end(STATUS, 0), &depth_packet(SAFE), &[BB_END]]);
    let caller = concat(&[&bb_start(C, true), &depth_clear(), &[BB_END]]);
    let c = case(
        Engine::Render,
        &[(A, caller), (C, callee)],
        bb_start(A, false).to_vec(),
    );
    assert!(unseen(refused(c)));
    // A reused callee with an exit, entered with two different packets;
    // the ring's clear after the batch may meet either.
    let callee = concat(&[&cond_end(STATUS, 0), &[BB_END]]);
    let caller = concat(&[
        &depth_packet(SAFE),
        &bb_start(C, true),
        &depth_packet(SAFE + 0x1_0000),
        &bb_start(C, true),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &depth_clear()]);
    let c = case(
        Engine::Render,
        &[(A, caller.clone()), (C, callee.clone())],
        ring,
    );
    assert!(unseen(refused(c)));
    // The same packet at both calls holds.
    let caller = concat(&[
        &depth_packet(SAFE),
        &bb_start(C, true),
        &bb_start(C, true),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &depth_clear()]);
    accepted(case(Engine::Render, &[(A, caller), (C, callee)], ring));
}

#[test]
fn an_exit_from_a_second_level_batch_reaches_the_ring() {
    assert!(unseen(refused(second_level_exit_continues_in_the_ring())));
}

#[test]
fn a_reused_callee_that_may_exit_joins_the_state_of_every_call() {
    assert!(unseen(refused(reused_callee_exits_with_another_state())));
}

#[test]
fn batch_ends_in_the_ring_are_refused() {
    let [end, cond] = ends_in_the_ring();
    assert_eq!(
        refused(end),
        Reason::ControlFlow(ControlFlow::BatchEndInRing)
    );
    assert_eq!(
        refused(cond),
        Reason::ControlFlow(ControlFlow::CondBatchEndInRing)
    );
}

#[test]
fn a_chain_inside_a_second_level_batch_is_refused() {
    assert_eq!(
        refused(chain_in_a_second_level_batch()),
        Reason::ControlFlow(ControlFlow::ChainInSecondLevel)
    );
}

#[test]
fn set_predicate_is_accepted_only_as_noop_never() {
    for v in 1..16 {
        assert_eq!(
            refused(set_predicate_in_a_batch(v)),
            Reason::ControlFlow(ControlFlow::SetPredicate),
            "PREDICATE ENABLE {v}"
        );
        let c = case(Engine::Render, &[], vec![set_predicate(v), NOOP]);
        assert_eq!(refused(c), Reason::ControlFlow(ControlFlow::SetPredicate));
    }
    accepted(set_predicate_in_a_batch(0));
}

/// No shadow slot holds guest words past its scanned length: the chunked
/// copy reads ahead, and a slot used before for a longer batch holds its
/// words; the image the monitor writes ends in MI_BATCH_BUFFER_END right
/// after the scanned words, and nothing follows it.
#[test]
fn a_shadow_batch_ends_in_a_terminator_and_zeros() {
    let mut long = Vec::new();
    for i in 0..300u64 {
        long.extend(sdi(HIDDEN + 8 * i, 1));
    }
    long.push(BB_END);
    let mut g = FakeGm::new();
    g.write(A, &long);
    // Guest words after the batch the copy reads ahead into.
    g.write(A + 4 * long.len() as u64, &[0xdead_beef; 64]);
    let mut s = shadow(Engine::Render);
    let rs = ring(&mut g, &bb_start(A, false));
    s.scan(&g, rs).unwrap();
    let check = |s: &gpu::scan::Shadow, len: usize| {
        let b = &s.batches[0];
        assert_eq!(b.len, len);
        assert_eq!(b.image().len(), len + 1);
        assert_eq!(b.image()[len], BB_END);
        assert!(
            b.words[len + 1..].iter().all(|&w| w == 0),
            "unscanned words"
        );
    };
    check(&s, long.len());
    // A short batch in the same slot.
    let short = concat(&[&sdi(HIDDEN, 2), &[BB_END]]);
    g.write(A, &short);
    s.scan(&g, rs).unwrap();
    check(&s, short.len());
    // A rejected scan that copied guest words far into the slot, then a
    // short batch: still nothing after the terminator.
    let mut bad = vec![NOOP; 3000];
    bad.push(0x3f << 23);
    bad.extend([0xdead_beef; 600]);
    g.write(A, &bad);
    s.scan(&g, rs).unwrap_err();
    g.write(A, &short);
    s.scan(&g, rs).unwrap();
    check(&s, short.len());
    // A batch that fills the slot but for the terminator is accepted; one
    // more DWord is not.
    let fill = gpu::scan::scanner::BATCH_SCAN_DWORDS;
    let mut full = vec![NOOP; fill - 1];
    full.push(BB_END);
    g.write(A, &full);
    s.scan(&g, rs).unwrap();
    check(&s, fill);
    let mut over = vec![NOOP; fill];
    over.push(BB_END);
    g.write(A, &over);
    assert_eq!(s.scan(&g, rs).unwrap_err().reason, Reason::BatchTooLarge);
}

/// The registers that steer the command streamer (where it fetches, what
/// it skips, which context it runs) are never loadable, on any engine,
/// by any load command. Offsets relative to the engine's MMIO base (PRM
/// vol 2c; i915 `intel_engine_regs.h`), MI_PREDICATE_RESULT_2 absolute.
#[test]
fn command_streamer_registers_stay_off_the_whitelist() {
    const STEERING: [(u32, &str); 22] = [
        (0x30, "RING_TAIL"),
        (0x34, "RING_HEAD"),
        (0x38, "RING_START"),
        (0x3c, "RING_CTL"),
        (0x50, "RING_PSMI_CTL"),
        (0x80, "RING_HWS_PGA"),
        (0x9c, "MI_MODE"),
        (0xc0, "INSTPM"),
        (0x110, "RING_BBSTATE"),
        (0x114, "RING_SBBADDR"),
        (0x118, "RING_SBBSTATE"),
        (0x11c, "RING_SBBADDR_UDW"),
        (0x140, "RING_BBADDR"),
        (0x158, "BB_OFFSET"),
        (0x168, "RING_BBADDR_UDW"),
        (0x1c0, "RING_BB_PER_CTX_PTR"),
        (0x1c4, "RING_INDIRECT_CTX"),
        (0x1c8, "RING_INDIRECT_CTX_OFFSET"),
        (0x230, "RING_ELSP"),
        (0x244, "RING_CONTEXT_CONTROL"),
        (0x29c, "RING_MODE_GEN7"),
        (0x550, "RING_EXECLIST_CONTROL"),
    ];
    const PREDICATE_RESULT_2: u32 = 0x23bc;
    for engine in Engine::ALL {
        let base = engine.mmio_base();
        let regs = STEERING
            .iter()
            .map(|&(r, n)| (base + r, n))
            .chain([(PREDICATE_RESULT_2, "MI_PREDICATE_RESULT_2")]);
        for (reg, name) in regs {
            let gpr = base + 0x600;
            let loads = [
                lri(reg, 0).to_vec(),
                concat(&[&lrm(reg, HIDDEN), &[NOOP, NOOP]]),
                concat(&[&lrr(gpr, reg), &[NOOP]]),
            ];
            for cmds in loads {
                let c = case(engine, &[], cmds);
                assert!(
                    matches!(refused(c), Reason::Register { offset, .. } if offset == reg),
                    "{engine}: {name} ({reg:#x}) loadable"
                );
            }
        }
    }
}

/// Every command genxml gives a Predicate Enable (or Predication Enable)
/// field is one the engine may skip under MI_PREDICATE's result. Either
/// skipping it changes no state the scanner tracks (so auditing it covers
/// both paths), or the scanner refuses it with the bit set.
#[test]
fn every_predicated_command_is_harmless_to_skip_or_refused() {
    let mut found = Vec::new();
    let mut instruction = None;
    for line in GEN9.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("<instruction name=\"") {
            instruction = rest.split('"').next();
        } else if line.starts_with("</instruction") {
            instruction = None;
        } else if let (Some(name), Some(rest)) = (instruction, line.strip_prefix("<field name=\""))
        {
            let field = rest.split('"').next().unwrap_or("");
            if field == "Predicate Enable" || field == "Predication Enable" {
                let start: u32 = rest
                    .split("start=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .and_then(|s| s.parse().ok())
                    .expect("field start");
                found.push((name, start));
            }
        }
    }
    let names: Vec<&str> = found.iter().map(|f| f.0).collect();
    for known in [
        "3DPRIMITIVE",
        "GPGPU_WALKER",
        "MI_BATCH_BUFFER_START",
        "MI_STORE_REGISTER_MEM",
    ] {
        assert!(
            names.contains(&known),
            "genxml parse lost {known}: {names:?}"
        );
    }
    for (name, start) in found {
        let spec = COMMANDS
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name}: no table row"));
        match spec.op {
            gpu::scan::Op::BatchStart => {
                // Built with genxml's bit: refused in the ring and in a
                // batch.
                assert!(start < 32, "{name}: predicate bit in the header");
                let mut start_cmd = bb_start(B, false);
                start_cmd[0] |= 1 << start;
                let flow = Reason::ControlFlow(ControlFlow::PredicatedBatchStart);
                let c = case(Engine::Render, &[(B, vec![BB_END])], start_cmd.to_vec());
                assert_eq!(refused(c), flow, "{name} in the ring");
                let c = case(
                    Engine::Render,
                    &[(A, start_cmd.to_vec()), (B, vec![BB_END])],
                    bb_start(A, false).to_vec(),
                );
                assert_eq!(refused(c), flow, "{name} in a batch");
            }
            _ => assert!(
                !sets_tracked_state(spec),
                "{name} may be skipped (Predicate Enable at bit {start}) but sets tracked state"
            ),
        }
    }
}

// ---- benign streams ----

/// The media driver's pattern: a conditional end on a status DWord,
/// then work, no state set after it.
#[test]
fn a_conditional_end_with_no_state_after_it_is_accepted() {
    let batch = concat(&[
        &sba(HIDDEN, 0, 0x1000),
        &cond_end(STATUS, 0),
        &pipe_control(HIDDEN + 0x3f_f000),
        &[BB_END],
    ]);
    // The ring then changes only the sizes: the bases are the same on
    // both paths.
    let ring = concat(&[&bb_start(A, false), &sba_sizes_only(0x2000)]);
    accepted(case(Engine::Render, &[(A, batch)], ring));
    // The blitter: the setup holds on both paths.
    let batch = concat(&[
        &patcopy_setup(SAFE, 4096, PATTERN),
        &cond_end(STATUS, 0),
        &flush_dw(HIDDEN + 0x100),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &scanlines(16, 16), &[NOOP]]);
    accepted(case(Engine::Blitter, &[(A, batch)], ring));
    // A second-level batch with a conditional end called twice with the
    // same state: its shadow is still reused.
    let callee = concat(&[&cond_end(STATUS, 0), &[BB_END]]);
    let caller = concat(&[
        &patcopy_setup(SAFE, 4096, PATTERN),
        &bb_start(C, true),
        &bb_start(C, true),
        &[BB_END],
    ]);
    let ring = concat(&[&bb_start(A, false), &scanlines(16, 16), &[NOOP]]);
    let (_, sub) = accepted(case(Engine::Blitter, &[(A, caller), (C, callee)], ring));
    assert_eq!(sub.batches, 2);
    // A mask-mode compare (a QWord: mask and data, QWord aligned).
    let mut end = cond_end(STATUS, 0);
    end[0] |= 1 << 19;
    let batch = concat(&[&end, &[BB_END]]);
    accepted(case(
        Engine::Video,
        &[(A, batch)],
        bb_start(A, false).to_vec(),
    ));
}

/// Mesa's conditional rendering (iris, i965, anv on Gen9): the query
/// result into MI_PREDICATE_SRC0, zero into SRC1, MI_PREDICATE (load
/// inverted, set, sources equal), then predicated draws and dispatches.
#[test]
fn mesa_conditional_rendering_is_accepted() {
    const SRC0: u32 = 0x2400;
    const SRC1: u32 = 0x2408;
    let mi_predicate = (0x0c << 23) | (3 << 6) | 2;
    let query = HIDDEN + 0x4_0000;
    let mut draw = primitive();
    draw[0] |= 1 << 8;
    let batch = concat(&[
        &sba(HIDDEN, 0x1_0000, 0x1_0000),
        &lrm(SRC0, query),
        &lrm(SRC0 + 4, query + 4),
        &lri(SRC1, 0),
        &lri(SRC1 + 4, 0),
        &[mi_predicate],
        &draw,
        &draw,
        &srm(SRC0, HIDDEN + 0x5_0000),
        &[set_predicate(0), BB_END],
    ]);
    accepted(case(
        Engine::Render,
        &[(A, batch)],
        bb_start(A, false).to_vec(),
    ));
}

/// Second-level calls without early exits are still reused (the fast
/// path takes the second), whatever comes between them.
#[test]
fn calls_without_exits_are_still_reused() {
    let callee = concat(&[&sdi(HIDDEN + 0x100, 1), &[BB_END]]);
    let mut caller = Vec::new();
    for _ in 0..BATCH_POOL + 2 {
        caller.extend(bb_start(C, true));
        caller.extend(cond_end(STATUS, 0));
    }
    caller.push(BB_END);
    let (_, sub) = accepted(case(
        Engine::Render,
        &[(A, caller), (C, callee)],
        bb_start(A, false).to_vec(),
    ));
    assert_eq!(sub.batches, 2);
}
