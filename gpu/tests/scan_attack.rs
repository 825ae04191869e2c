//! Scanner attack and acceptance tests over a fake guest GM space: one
//! vGPU slice [0x10_0000, 0x20_0000) mapped at host GM + 0x4000_0000.

mod scan_support;

use std::cell::RefCell;

use gpu::addr::{GuestGm, GuestGmRange, HostGm};
use gpu::engine::Engine;
use gpu::scan::scanner::{BATCH_POOL, MAX_DEPTH};
use gpu::scan::{GmFault, GmSpace, Location, Reason, RingState, Shadow};

const BASE: u64 = 0x10_0000;
const SIZE: u64 = 0x10_0000;
const HOST_DELTA: u64 = 0x4000_0000;
const RING: u64 = BASE; // 4 KiB ring at the slice start

struct Fake {
    mem: RefCell<Vec<u32>>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            mem: RefCell::new(vec![0; (SIZE / 4) as usize]),
        }
    }
    fn write(&self, gm: u64, words: &[u32]) {
        let i = ((gm - BASE) / 4) as usize;
        self.mem.borrow_mut()[i..i + words.len()].copy_from_slice(words);
    }
}

fn gg(raw: u64) -> GuestGm {
    GuestGm::new(raw).unwrap()
}

impl GmSpace for Fake {
    fn read_guest(&self, at: GuestGm, out: &mut [u32]) -> Result<(), GmFault> {
        let gm = at.raw();
        let len = 4 * out.len() as u64;
        if gm < BASE || gm + len > BASE + SIZE || !gm.is_multiple_of(4) {
            return Err(GmFault::OutOfSlices);
        }
        let i = ((gm - BASE) / 4) as usize;
        out.copy_from_slice(&self.mem.borrow()[i..i + out.len()]);
        Ok(())
    }
    fn g2h(&self, range: GuestGmRange) -> Result<HostGm, GmFault> {
        let slice = GuestGmRange::new(gg(BASE), SIZE).unwrap();
        if !slice.contains_range(range) {
            return Err(GmFault::OutOfSlices);
        }
        Ok(HostGm::new(range.base().raw() + HOST_DELTA).unwrap())
    }
    fn slice_of(&self, at: GuestGm) -> Result<GuestGmRange, GmFault> {
        let slice = GuestGmRange::new(gg(BASE), SIZE).unwrap();
        if slice.contains(at) {
            Ok(slice)
        } else {
            Err(GmFault::OutOfSlices)
        }
    }
}

fn shadow(engine: Engine) -> Box<Shadow> {
    let mut hosts = [HostGm::new(0).unwrap(); BATCH_POOL];
    for (i, h) in hosts.iter_mut().enumerate() {
        *h = HostGm::new(0x8000_0000 + 0x1_0000 * i as u64).unwrap();
    }
    Box::new(Shadow::new(
        engine,
        HostGm::new(0x7000_0000).unwrap(),
        hosts,
    ))
}

/// Writes `cmds` into the ring at offset 0 and returns the ring state.
fn submit(g: &Fake, cmds: &[u32]) -> RingState {
    g.write(RING, cmds);
    RingState {
        start: gg(RING),
        size: 4096,
        head: 0,
        tail: 4 * cmds.len() as u32,
    }
}

const NOOP: u32 = 0;
const BB_END: u32 = 0x0a << 23;
const SDI: u32 = (0x20 << 23) | (1 << 22) | 2;
const fn bb_start(second: bool) -> u32 {
    (0x31 << 23) | ((second as u32) << 22) | 1
}
const PIPE_CONTROL: u32 = 0x7a00_0004;
const LRI: u32 = (0x22 << 23) | 1;

fn reject(engine: Engine, g: &Fake, cmds: &[u32]) -> Reason {
    let mut s = shadow(engine);
    let e = s.scan(g, submit(g, cmds)).unwrap_err();
    assert!(!e.to_string().is_empty());
    e.reason
}

#[test]
fn accepted_submission_is_remapped_and_records_writes() {
    let g = Fake::new();
    let batch = BASE + 0x8000;
    g.write(
        batch,
        &[
            PIPE_CONTROL,
            (1 << 24) | (1 << 14),
            0x15_0000,
            0,
            1,
            0,
            BB_END,
        ],
    );
    let cmds = [
        SDI,
        0x12_0008,
        0,
        42,
        bb_start(false),
        batch as u32,
        0,
        NOOP,
    ];
    let mut s = shadow(Engine::Render);
    let sub = s.scan(&g, submit(&g, &cmds)).unwrap();
    assert_eq!((sub.ring_dwords, sub.batches, sub.commands), (8, 1, 5));
    // SDI address remapped in the shadow, guest ring untouched.
    assert_eq!(s.ring[1], (0x12_0008 + HOST_DELTA) as u32);
    assert_eq!(g.mem.borrow()[1], 0x12_0008);
    // Batch start points at the shadow batch.
    assert_eq!(s.ring[5], 0x8000_0000);
    assert_eq!(s.batches[0].words[2], (0x15_0000 + HOST_DELTA) as u32);
    assert_eq!(s.batches[0].len, 7);
    let mut pages: Vec<u64> = sub.writes.pages().collect();
    pages.sort();
    assert_eq!(pages, [0x120, 0x150]);
}

#[test]
fn ring_modified_after_tail_changes_nothing() {
    let g = Fake::new();
    let cmds = [SDI, 0x12_0000, 0, 1];
    let mut s = shadow(Engine::Blitter);
    let rs = submit(&g, &cmds);
    s.scan(&g, rs).unwrap();
    // The guest now rewrites its ring to target memory outside its slice.
    g.write(RING + 4, &[0x90_0000]);
    assert_eq!(s.ring[1], (0x12_0000 + HOST_DELTA) as u32);
}

#[test]
fn out_of_slice_store_post_sync_blit_and_semaphore() {
    let g = Fake::new();
    let oos = |r: Reason| {
        matches!(
            r,
            Reason::Memory {
                fault: GmFault::OutOfSlices,
                ..
            }
        )
    };
    assert!(oos(reject(Engine::Render, &g, &[SDI, 0x30_0000, 0, 0])));
    assert!(oos(reject(
        Engine::Render,
        &g,
        &[PIPE_CONTROL, (1 << 24) | (1 << 14), 0x1000, 0, 0, 0]
    )));
    // XY_COLOR_BLT whose last rows leave the slice.
    let blt = (2 << 29) | (0x50 << 22) | 5;
    assert!(oos(reject(
        Engine::Blitter,
        &g,
        &[blt, 4096, 0, (300 << 16) | 16, 0x1f_0000, 0, 0]
    )));
    let sem = (0x1c << 23) | (1 << 22) | 2;
    assert!(oos(reject(Engine::Video, &g, &[sem, 0, 0x5000, 0])));
}

#[test]
fn register_writes_outside_whitelist() {
    let g = Fake::new();
    for reg in [0x10_0000u32, 0x2_2600, 0x4_4000, 0x2_0a0] {
        // fence, another engine's GPR, interrupts, ring control.
        assert!(
            matches!(
                reject(Engine::Render, &g, &[LRI, reg, 0]),
                Reason::Register { .. }
            ),
            "{reg:#x}"
        );
    }
    // The render engine's own GPR is fine.
    shadow(Engine::Render)
        .scan(&g, submit(&g, &[LRI, 0x2600, 7, NOOP]))
        .unwrap();
}

/// Listed registers with bit rules take only the values drivers write:
/// CS_DEBUG_MODE2 bit 4 (which keeps constant buffer 0 an audited
/// absolute address) may be set but never cleared, not even through an
/// MI_LOAD_REGISTER_MEM whose value the scan cannot see; a video status
/// register is only read after the submission's own codec work.
#[test]
fn register_values_and_status_reads() {
    use gpu::scan::regs::RegRefusal;
    let g = Fake::new();
    let refusal = |engine, cmds: &[u32]| match reject(engine, &g, cmds) {
        Reason::Register { refusal, .. } => refusal,
        r => panic!("{r:?}"),
    };
    // Mesa's write is accepted...
    shadow(Engine::Render)
        .scan(&g, submit(&g, &[LRI, 0x20d8, 0x0010_0010, NOOP]))
        .unwrap();
    // ...clearing bit 4 is not, in any pair of the list.
    assert_eq!(
        refusal(
            Engine::Render,
            &[LRI + 2, 0x2600, 0, 0x20d8, 0x0010_0000, NOOP]
        ),
        RegRefusal::Value(0x0010_0000)
    );
    // MI_LOAD_REGISTER_MEM (4 DWords, GGTT) into it.
    let lrm = (0x29 << 23) | (1 << 22) | 2;
    assert_eq!(
        refusal(Engine::Render, &[lrm, 0x20d8, 0x10_1000, 0]),
        RegRefusal::UnknownValue
    );
    // MI_STORE_REGISTER_MEM of MFX_ERROR_FLAG before any decode object.
    let srm = (0x24 << 23) | (1 << 22) | 2;
    assert_eq!(
        refusal(Engine::Video, &[srm, 0x1_2800, 0x10_1000, 0]),
        RegRefusal::BeforeOwnWork
    );
    // After an MFD_AVC_BSD_OBJECT (6 DWords, with the state it decodes
    // from) it is this vGPU's status.
    let bsd = (3 << 29) | (0x1128 << 16) | 4;
    let mut decode =
        scan_support::state_for_at(scan_support::consumer("MFD_AVC_BSD_OBJECT"), 0x18_0000);
    decode.extend([bsd, 0, 0, 0, 0, 0, srm, 0x1_2800, 0x10_1000, 0]);
    shadow(Engine::Video).scan(&g, submit(&g, &decode)).unwrap();
}

#[test]
fn privileged_batch_bits_and_commands() {
    let g = Fake::new();
    let ppgtt = bb_start(false) | (1 << 8);
    assert_eq!(
        reject(Engine::Render, &g, &[ppgtt, 0x18_0000, 0]),
        Reason::Ppgtt
    );
    let rs = bb_start(false) | (1 << 10);
    assert!(matches!(
        reject(Engine::Render, &g, &[rs, 0x18_0000, 0]),
        Reason::Privileged(_)
    ));
    // MI_DISPLAY_FLIP, MI_SET_CONTEXT
    assert!(matches!(
        reject(Engine::Render, &g, &[(0x14 << 23) | 1, 0, 0]),
        Reason::Privileged(_)
    ));
    assert!(matches!(
        reject(Engine::Render, &g, &[0x18 << 23, 0]),
        Reason::Privileged(_)
    ));
}

#[test]
fn batch_outside_slices_self_chain_cycle_and_depth() {
    let g = Fake::new();
    assert!(matches!(
        reject(Engine::Render, &g, &[bb_start(false), 0x50_0000, 0]),
        Reason::Memory { .. }
    ));
    let a = BASE + 0x9000;
    let b = BASE + 0xa000;
    // Self-chain.
    g.write(a, &[NOOP, bb_start(false), a as u32, 0]);
    assert_eq!(
        reject(Engine::Render, &g, &[bb_start(false), a as u32, 0]),
        Reason::BatchCycle
    );
    // Cycle a -> b -> a.
    g.write(a, &[bb_start(false), b as u32, 0]);
    g.write(b, &[bb_start(false), a as u32, 0]);
    assert_eq!(
        reject(Engine::Render, &g, &[bb_start(false), a as u32, 0]),
        Reason::BatchCycle
    );
    // Nesting: a calls b (second level), b calls c (third level).
    let c = BASE + 0xb000;
    g.write(a, &[bb_start(true), b as u32, 0, BB_END]);
    g.write(b, &[bb_start(true), c as u32, 0, BB_END]);
    g.write(c, &[BB_END]);
    assert_eq!(MAX_DEPTH, 2);
    assert_eq!(
        reject(Engine::Render, &g, &[bb_start(false), a as u32, 0]),
        Reason::DepthExceeded
    );
    // One level of call is fine, and the call is remapped to its shadow.
    g.write(b, &[NOOP, BB_END]);
    let mut s = shadow(Engine::Render);
    let sub = s
        .scan(&g, submit(&g, &[bb_start(false), a as u32, 0]))
        .unwrap();
    assert_eq!(sub.batches, 2);
    assert_eq!(s.batches[0].words[1], 0x8001_0000);
}

#[test]
fn unknown_opcode_and_length_past_the_end() {
    let g = Fake::new();
    assert!(matches!(
        reject(Engine::Render, &g, &[0x3f << 23]),
        Reason::Decode(_)
    ));
    // SDI needs 4 DWords, only 2 before TAIL.
    assert!(matches!(
        reject(Engine::Render, &g, &[SDI, 0x12_0000]),
        Reason::Decode(_)
    ));
    // A batch that never ends runs into the end of the slice.
    let a = BASE + SIZE - 8;
    g.write(a, &[NOOP, NOOP]);
    let e = shadow(Engine::Render)
        .scan(&g, submit(&g, &[bb_start(false), a as u32, 0]))
        .unwrap_err();
    assert!(matches!(e.location, Location::Batch { level: 1, .. }));
    assert!(matches!(e.reason, Reason::Memory { .. }));
}
