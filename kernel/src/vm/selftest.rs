//! Self-tests of the ring-3 guest runtime (`selftest=ring3-...`, all in
//! `selftest=all`). Each makes its guests on vGPUs of its own and gives
//! every frame back at the end (checked).

use alloc::vec::Vec;

use gpu::addr::GuestPage;
use gpu::partition::{VgpuId, VgpuType};
use guest::abi::{
    self, FaultKind, Measure, Probe, Program, BAR0_SIZE, BAR0_VA, BOOT_BLOCK_VA, DRIVER_INDEX,
    RAM_FIRST_PAGE,
};
use guest::Kind;

use super::cpu::CpuStateError;
use super::guest::{Blame, Guest, Kill, RunState, SliceEnd, SyscallFault};
use super::image::{self, ImageError};
use super::{Runtime, Scheduler, Step};
use crate::arch::cpu::rdtsc;
use crate::mem::region::Region;
use crate::platform::Platform;

type TestResult = Result<(), &'static str>;

fn check(cond: bool, msg: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg)
    }
}

/// RAM of a probe (the smallest a guest may have, and a few pages more).
const PROBE_PAGES: u64 = abi::MIN_RAM_PAGES + 16;
/// RAM of a test workload: 6 MiB, a working set of about 1250 pages.
const WORKLOAD_PAGES: u64 = 1536;
/// Longest any test lets its guests run (TSC seconds).
const LIMIT_S: u64 = 60;

/// A test's guests, torn down together.
struct Rig {
    rt: Runtime,
    sched: Scheduler,
    free_before: u64,
}

impl Rig {
    fn new(p: &mut Platform) -> Result<Rig, &'static str> {
        let rt = Runtime::init(&mut p.memory, p.calibration.tsc_hz)
            .map_err(|_| "the ring-3 runtime did not come up (APIC timer)")?;
        Ok(Rig {
            rt,
            sched: Scheduler::new(&rt),
            free_before: p.memory.frames.free_frames(),
        })
    }

    /// A guest of `program` on a new vGPU with `pages` of RAM.
    fn spawn(
        &mut self,
        p: &mut Platform,
        id: u32,
        program: Program,
        pages: u64,
    ) -> Result<usize, &'static str> {
        let index = p
            .vgpus
            .add_vgpu(&mut p.memory.frames, VgpuType::Small, pages)
            .map_err(|_| "no room for a guest's vGPU")?;
        match Guest::create(
            &self.rt,
            &mut p.memory.frames,
            &mut p.vgpus,
            index,
            id,
            program,
        ) {
            Ok(g) => Ok(self.sched.add(g)),
            Err(e) => {
                defmt::error!("guest {=u32}: {}", id, defmt::Display2Format(&e));
                p.vgpus.remove_vgpu(&mut p.memory.frames, index);
                Err("a guest could not be created")
            }
        }
    }

    /// Steps until `done` says so (or every guest ended, or the limit).
    fn run_until(
        &mut self,
        p: &mut Platform,
        mut done: impl FnMut(&Scheduler, Step) -> bool,
    ) -> TestResult {
        let start = rdtsc();
        while rdtsc() - start < LIMIT_S * self.rt.tsc_hz {
            let step = self.sched.step(&self.rt, &mut p.vgpus);
            if done(&self.sched, step) || step == Step::Done {
                return Ok(());
            }
        }
        Err("the guests did not finish in time")
    }

    /// Removes guest `i` (its page tables and its vGPU).
    fn remove(&mut self, p: &mut Platform, i: usize) {
        let g = self.sched.guests.remove(i);
        remove_vgpu(p, g.vgpu);
        g.destroy(&mut p.memory.frames);
    }

    /// Removes every guest and checks every frame came back.
    fn finish(mut self, p: &mut Platform) -> TestResult {
        while !self.sched.guests.is_empty() {
            self.remove(p, 0);
        }
        check(
            p.memory.frames.free_frames() == self.free_before,
            "guest frames or page tables did not all return",
        )
    }
}

fn remove_vgpu(p: &mut Platform, id: VgpuId) {
    if let Some(i) = p.vgpus.vgpus.iter().position(|h| h.partition.id() == id) {
        p.vgpus.remove_vgpu(&mut p.memory.frames, i);
    }
}

fn workload(kind: Kind, seed: u64, frames: u64) -> Program {
    Program::Workload { kind, seed, frames }
}

/// A ring-3 workload runs its frames and passes its whole check, with
/// the same checksums as the same program on another vGPU beside it
/// (other slices, other frames: a guest's results do not depend on where
/// the monitor put it).
pub fn workload_runs(p: &mut Platform) -> TestResult {
    const FRAMES: u64 = 4;
    let (kind, seed) = (Kind::Game3d, 0x3d);
    let mut rig = Rig::new(p)?;
    for id in 0..2 {
        rig.spawn(p, id, workload(kind, seed, FRAMES), WORKLOAD_PAGES)?;
    }
    rig.run_until(p, |_, _| false)?;
    let (g, twin) = (&rig.sched.guests[0], &rig.sched.guests[1]);
    let got: Vec<u64> = g.frames.all.iter().map(|f| f.1).collect();
    let want: Vec<u64> = twin.frames.all.iter().map(|f| f.1).collect();
    let frames_in_order = g.frames.all.iter().map(|f| f.0).eq(0..FRAMES);
    let result = check(
        g.state() == RunState::Exited(0) && twin.state() == RunState::Exited(0),
        "a workload guest did not exit 0",
    )
    .and(check(frames_in_order, "frames were not reported in order"))
    .and(check(
        got == want && got.len() == FRAMES as usize,
        "checksums differ between two vGPUs",
    ))
    .and(check(
        g.stats.mmio_exits > 1000,
        "too few BAR0 exits for a booted driver",
    ))
    .and(check(
        g.writes.untracked_submissions == 0,
        "blits and stores left an untracked write set",
    ));
    defmt::info!(
        "ring3 workload: {=u64} frames, last checksum {=u64:#x}, {=u64} BAR0 exits, {=u64} calls",
        g.stats.frames,
        g.frames.last.map_or(0, |f| f.1),
        g.stats.mmio_exits,
        g.stats.syscalls
    );
    rig.finish(p).and(result)
}

/// The PPGTT renderer (`3d-ppgtt`) in ring 3: its render engine in
/// execlist mode, its draws through surface states in its own PPGTT's
/// shadow (whose pool is the monitor's frames, none of them the guest's
/// RAM), its frames and checksums the same on two vGPUs, its whole check
/// passed, and the draws' write sets marked untracked (the migration's
/// evidence then hashes every page: the scanner cannot name what a draw
/// writes).
pub fn ppgtt_workload_runs(p: &mut Platform) -> TestResult {
    const FRAMES: u64 = 4;
    let (kind, seed) = (Kind::Render3d, 0x3dd);
    let mut rig = Rig::new(p)?;
    for id in 0..2 {
        rig.spawn(p, id, workload(kind, seed, FRAMES), WORKLOAD_PAGES)?;
    }
    rig.run_until(p, |_, _| false)?;
    let (g, twin) = (&rig.sched.guests[0], &rig.sched.guests[1]);
    let got: Vec<u64> = g.frames.all.iter().map(|f| f.1).collect();
    let want: Vec<u64> = twin.frames.all.iter().map(|f| f.1).collect();
    let hosted = p
        .vgpus
        .vgpus
        .iter()
        .find(|h| h.partition.id() == g.vgpu)
        .ok_or("the guest's vGPU is gone")?;
    let render = gpu::engine::Engine::Render;
    let tables = hosted
        .vgpu
        .shadows()
        .map_or(0, |s| s.tables().tables_in_use());
    let pool = hosted.ppgtt_pool.frame().number();
    let pool_in_ram = hosted.memory.runs().iter().any(|r| {
        let first = r.first_frame.number();
        pool + gpu::ppgtt::shadow::pool_frames(hosted.ppgtt_budget) > first
            && pool < first + r.count
    });
    let result = check(
        g.state() == RunState::Exited(0) && twin.state() == RunState::Exited(0),
        "a PPGTT workload guest did not exit 0",
    )
    .and(check(
        got == want && got.len() == FRAMES as usize,
        "checksums differ between two vGPUs",
    ))
    .and(check(
        hosted.vgpu.execlist(render).enabled,
        "its render engine is not in execlist mode",
    ))
    .and(check(
        tables == 6,
        "its shadow PPGTT does not hold its six tables",
    ))
    .and(check(
        !pool_in_ram,
        "the shadow pool overlaps the guest's RAM",
    ))
    .and(check(
        g.writes.untracked_submissions > 0,
        "its draws left no untracked write set",
    ));
    defmt::info!(
        "ring3 ppgtt workload: {=u64} frames, last checksum {=u64:#x}, {=u64} BAR0 exits, {=usize} shadow tables",
        g.stats.frames,
        g.frames.last.map_or(0, |f| f.1),
        g.stats.mmio_exits,
        tables
    );
    rig.finish(p).and(result)
}

/// BAR0 reads return PVINFO and a ring register reads back what was
/// written (32-bit), a GGTT entry too (64-bit); the writes reached the
/// guest's vGPU.
pub fn mmio_reaches_vgpu(p: &mut Platform) -> TestResult {
    let mut rig = Rig::new(p)?;
    // The partition the next vGPU gets is not known before; probe first.
    let index = p
        .vgpus
        .add_vgpu(&mut p.memory.frames, VgpuType::Small, PROBE_PAGES)
        .map_err(|_| "no room for a vGPU")?;
    let hosted = &p.vgpus.vgpus[index];
    let vgt_id = u32::from(hosted.partition.id().raw());
    let aperture = hosted.vgpu.pvinfo_dword(gpu::regs::pvinfo::APERTURE_BASE);
    let value = aperture + 0x3000;
    let program = Program::Probe(Probe::MmioEcho { vgt_id, value });
    let created = Guest::create(
        &rig.rt,
        &mut p.memory.frames,
        &mut p.vgpus,
        index,
        0,
        program,
    );
    let Ok(g) = created else {
        p.vgpus.remove_vgpu(&mut p.memory.frames, index);
        return Err("the probe could not be created");
    };
    rig.sched.add(g);
    rig.run_until(p, |_, _| false)?;
    let g = &rig.sched.guests[0];
    let hosted = p
        .vgpus
        .vgpus
        .iter()
        .find(|h| h.partition.id() == g.vgpu)
        .ok_or("the probe's vGPU is gone")?;
    let ring = hosted.vgpu.ring(gpu::engine::Engine::Render);
    let result = check(
        g.state() == RunState::Exited(0),
        "the probe saw wrong PVINFO or register values",
    )
    .and(check(
        ring.start == value,
        "RING_START did not reach the vGPU",
    ))
    // Four PVINFO reads, RING_START written and read, a GGTT entry too.
    .and(check(
        g.stats.mmio_exits == 8 && g.stats.mmio_writes == 2,
        "BAR0 exits do not match the probe's accesses",
    ));
    rig.finish(p).and(result)
}

/// What a misbehaving probe must be killed for.
#[derive(Clone, Copy)]
enum Expect {
    Vector(u64),
    Syscall,
}

/// Every class of misbehaviour kills the probe alone, with the guest to
/// blame, while a workload guest runs on beside it; the other guest's
/// memory is unchanged by the attempt to write it.
pub fn faults_kill_alone(p: &mut Platform) -> TestResult {
    let mut rig = Rig::new(p)?;
    rig.spawn(p, 0, workload(Kind::Desktop2d, 7, 0), WORKLOAD_PAGES)?;
    let hosted = p
        .vgpus
        .vgpus
        .iter()
        .find(|h| h.partition.id() == rig.sched.guests[0].vgpu)
        .ok_or("no vGPU")?;
    let victim = hosted
        .memory
        .runs()
        .first()
        .map(|r| r.first_frame.start().raw())
        .ok_or("no RAM")?;
    // The victim's boot block, reserved bytes (zero): what a write there
    // would change.
    let victim_word = victim + 56;
    static MONITOR_WORD: u64 = 0x6d6f_6e69_746f_7221;
    let monitor = core::ptr::addr_of!(MONITOR_WORD) as u64;
    let apic = 0xfee0_0000;
    let touch = |address, write| Program::Probe(Probe::Touch { address, write });
    let mut cases: Vec<(&'static str, Program, Expect)> = alloc::vec![
        (
            "read monitor memory",
            touch(monitor, false),
            Expect::Vector(14)
        ),
        (
            "write monitor memory",
            touch(monitor, true),
            Expect::Vector(14)
        ),
        (
            "read another guest's RAM",
            touch(victim_word, false),
            Expect::Vector(14)
        ),
        (
            "write another guest's RAM",
            touch(victim_word, true),
            Expect::Vector(14)
        ),
        (
            "MMIO past its BAR0",
            touch(BAR0_VA + BAR0_SIZE, false),
            Expect::Vector(14)
        ),
        ("the APIC's MMIO", touch(apic, true), Expect::Vector(14)),
        (
            "write its read-only boot block",
            touch(BOOT_BLOCK_VA, true),
            Expect::Vector(14)
        ),
        (
            "unmapped slot address",
            touch(abi::USER_BASE, false),
            Expect::Vector(14)
        ),
        (
            "wild system call",
            Program::Probe(Probe::BadSyscall { number: 0x1234 }),
            Expect::Syscall,
        ),
        (
            "log from monitor memory",
            Program::Probe(Probe::BadPointer { address: monitor }),
            Expect::Syscall,
        ),
    ];
    for kind in FaultKind::ALL {
        if kind == FaultKind::Sgdt && !rig.rt.umip {
            continue;
        }
        let vector = match kind {
            FaultKind::Ud2 | FaultKind::Syscall => 6,
            FaultKind::DivideByZero => 0,
            FaultKind::Int3 => 3,
            _ => 13,
        };
        cases.push((
            kind.name(),
            Program::Probe(Probe::Fault(kind)),
            Expect::Vector(vector),
        ));
    }
    let mut result = Ok(());
    for (i, (what, program, expect)) in cases.into_iter().enumerate() {
        let at = rig.spawn(p, 1 + i as u32, program, PROBE_PAGES)?;
        let frames_before = rig.sched.guests[0].stats.frames;
        rig.run_until(p, |s, _| s.guests[at].state().ended())?;
        // The workload goes on after the probe died.
        rig.run_until(p, |s, _| s.guests[0].stats.frames > frames_before)?;
        let probe = rig.sched.guests[at].state();
        let ok = match (probe, expect) {
            (RunState::Killed(k), Expect::Vector(v)) => {
                k.vector() == Some(v) && k.blame() == Some(Blame::Guest)
            }
            (RunState::Killed(Kill::Syscall { fault, .. }), Expect::Syscall) => {
                !matches!(fault, SyscallFault::BadArgument { .. })
            }
            _ => false,
        };
        if !ok {
            defmt::error!("ring3 fault case {=str}: ended {=str}", what, probe.name());
            result = Err("a misbehaving guest was not killed for its fault");
        }
        rig.remove(p, at);
        if !matches!(
            rig.sched.guests[0].state(),
            RunState::Runnable | RunState::Waiting
        ) {
            result = Err("the workload guest did not survive its neighbour's fault");
            break;
        }
    }
    // SAFETY: reads one word of the victim's boot block through the
    // monitor's identity map (the guest is not running).
    let word = unsafe { core::ptr::read_volatile(victim_word as *const u64) };
    let monitor_kept = MONITOR_WORD == 0x6d6f_6e69_746f_7221;
    rig.sched.guests[0].kill(Kill::Stopped {
        reason: "the test is over",
    });
    let frames = rig.sched.guests[0].stats.frames;
    rig.finish(p)
        .and(result)
        .and(check(word == 0, "another guest's RAM changed"))
        .and(check(monitor_kept, "monitor memory changed"))
        .and(check(frames >= 20, "the workload guest made no progress"))
}

/// The hostile guest's benign twins, each declared as its attack would
/// be, run through the real path (trapped BAR0, the vGPU scheduler, the
/// scanner, the GPU): the monitor finds none of them refused. So the
/// verdict "refused" on the attacks (`ring3=...,hostile`) is the
/// monitor's evidence, not a foregone conclusion of the mechanism.
pub fn benign_twins_not_refused(p: &mut Platform) -> TestResult {
    // Every stream's twin, and every PPGTT draw's.
    let streams = guest::attack::Class::ALL
        .iter()
        .filter(|c| {
            matches!(
                c.refusal(),
                guest::attack::Refusal::Scanner | guest::attack::Refusal::Contained
            )
        })
        .count() as u64;
    let mut rig = Rig::new(p)?;
    rig.spawn(p, 0, Program::Probe(Probe::Twins), PROBE_PAGES)?;
    rig.run_until(p, |s, _| s.guests[0].state().ended())?;
    let g = &rig.sched.guests[0];
    let a = g.attempts;
    defmt::info!(
        "ring3 twins: {=u64} declared, {=u64} refused, {=u64} BAR0 exits",
        a.declared,
        a.refused,
        g.stats.mmio_exits
    );
    let result = check(
        g.state() == RunState::Exited(0),
        "the twins probe did not exit 0",
    )
    .and(check(
        a.declared == streams && u64::from(a.class_count()) == streams,
        "not every stream's twin was declared",
    ))
    .and(check(a.refused == 0, "a benign twin was refused"))
    .and(check(
        g.stats.mmio_refused == 0,
        "a BAR0 access of the twins probe was refused",
    ));
    rig.finish(p).and(result)
}

/// A guest that spins without a system call is preempted by the timer
/// and the other guest runs its frames to the end.
pub fn tight_loop_preempted(p: &mut Platform) -> TestResult {
    let mut rig = Rig::new(p)?;
    let spinner = rig.spawn(
        p,
        0,
        Program::Probe(Probe::Spin { iterations: 0 }),
        PROBE_PAGES,
    )?;
    let worker = rig.spawn(p, 1, workload(Kind::Video, 9, 3), WORKLOAD_PAGES)?;
    rig.run_until(p, |s, _| s.guests[worker].state().ended())?;
    let (s, w) = (&rig.sched.guests[spinner], &rig.sched.guests[worker]);
    let result = check(
        w.state() == RunState::Exited(0),
        "the worker did not finish",
    )
    .and(check(
        s.state() == RunState::Runnable,
        "the spinner stopped",
    ))
    .and(check(
        s.stats.preemptions >= 2,
        "the spinner was not preempted",
    ))
    .and(check(
        s.stats.syscalls == 0,
        "the spinner made system calls",
    ));
    defmt::info!(
        "ring3 preemption: spinner {=u64} slices ({=u64} preempted), worker {=u64} slices ({=u64} preempted)",
        s.stats.slices,
        s.stats.preemptions,
        w.stats.slices,
        w.stats.preemptions
    );
    rig.finish(p).and(result)
}

/// Two guests hold different XMM, MXCSR and x87 control values across
/// yields to each other: each sees its own.
pub fn fpu_state_kept(p: &mut Platform) -> TestResult {
    let mut rig = Rig::new(p)?;
    for (id, seed) in [(0, 0x1111), (1, 0x2222)] {
        rig.spawn(
            p,
            id,
            Program::Probe(Probe::Fpu { seed, rounds: 20 }),
            PROBE_PAGES,
        )?;
    }
    rig.run_until(p, |_, _| false)?;
    let ok = rig
        .sched
        .guests
        .iter()
        .all(|g| g.state() == RunState::Exited(0));
    rig.finish(p).and(check(
        ok,
        "a guest's FPU/SSE state changed while the other ran",
    ))
}

/// A guest saved at a slice boundary, moved whole (RAM, vGPU state, CPU
/// state) onto another vGPU and frames, goes on with exactly the
/// checksums of a twin beside it that was never interrupted, and its
/// clock goes on too; its aperture window is rebuilt from its restored GGTT
/// entries.
pub fn save_restore_round_trip(p: &mut Platform) -> TestResult {
    // The 3D workload on short slices: the timer ends one in the middle
    // of a frame soon after frame 3.
    const FRAMES: u64 = 12;
    let program = workload(Kind::Game3d, 0x5a5e, FRAMES);
    let mut rig = Rig::new(p)?;
    rig.sched.slice /= 20;
    rig.spawn(p, 0, program, WORKLOAD_PAGES)?;
    // Until frame 3 is reported and a slice after it ends mid-frame.
    rig.run_until(p, |s, step| {
        s.guests[0].stats.frames >= 3
            && matches!(
                step,
                Step::Ran {
                    end: SliceEnd::Preempted,
                    ..
                }
            )
    })?;
    let source = &rig.sched.guests[0];
    check(
        !source.state().ended(),
        "the guest ended before it was saved",
    )?;
    let before: Vec<u64> = source.frames.all.iter().map(|f| f.1).collect();
    let cpu = source.save_cpu();
    let clock_at_save = source.clock_us();
    let saved_at = crate::time::micros_since_boot();
    let source_vgpu = source.vgpu;
    // The saved state is checked on the way in.
    let mut flipped = cpu;
    flipped[100] ^= 1;
    let mut old = cpu;
    old[8] = 1;
    let restore = |b: &[u8], image| super::cpu::CpuState::restore(b, image).err();
    check(
        source.image() == guest::abi::Image::Workload
            && restore(&flipped, guest::abi::Image::Workload) == Some(CpuStateError::Crc)
            && restore(&cpu, guest::abi::Image::Probe) == Some(CpuStateError::WrongImage)
            && restore(&old, guest::abi::Image::Workload)
                == Some(CpuStateError::Version { found: 1 }),
        "a corrupted, foreign or old CPU state was not refused",
    )?;
    let src = p
        .vgpus
        .vgpus
        .iter()
        .position(|h| h.partition.id() == source_vgpu)
        .ok_or("no source vGPU")?;
    // Its GPU work may still be running (the GPU's work takes time): a
    // save needs the vGPU idle, as the migration's stop waits for it.
    p.vgpus
        .wait_idle(src, 2_000_000)
        .map_err(|_| "the vGPU's work did not end")?;
    let bytes = gpu::persist::max_saved_size(VgpuType::Small);
    let mut blob = Region::allocate(&mut p.memory.frames, bytes).map_err(|_| "no memory")?;
    let mut ram = Region::allocate(&mut p.memory.frames, (WORKLOAD_PAGES * 4096) as usize)
        .map_err(|_| "no memory")?;
    let moved = (|| {
        let blob_bytes = blob.slice_mut::<u8>(bytes).ok_or("blob")?;
        let hosted = &p.vgpus.vgpus[src];
        let len = hosted
            .vgpu
            .save(p.vgpus.device.backend(), &hosted.memory, blob_bytes)
            .map_err(|_| "the vGPU did not save")?;
        let frame = hosted.memory.runs()[0].first_frame.start().raw();
        let ram_bytes = ram
            .slice_mut::<u8>((WORKLOAD_PAGES * 4096) as usize)
            .ok_or("ram")?;
        // SAFETY: the source guest's RAM, one run of WORKLOAD_PAGES frames
        // (identity-mapped), read while nothing runs.
        let source_ram =
            unsafe { core::slice::from_raw_parts(frame as *const u8, ram_bytes.len()) };
        ram_bytes.copy_from_slice(source_ram);
        // The source goes: guest, page tables, vGPU, frames.
        rig.remove(p, 0);
        let dst = p
            .vgpus
            .add_vgpu(&mut p.memory.frames, VgpuType::Small, WORKLOAD_PAGES)
            .map_err(|_| "no room for the destination vGPU")?;
        let hosted = &mut p.vgpus.vgpus[dst];
        let frame = hosted.memory.runs()[0].first_frame.start().raw();
        // SAFETY: the destination's fresh RAM, same size, not running.
        unsafe {
            core::ptr::copy_nonoverlapping(ram_bytes.as_ptr(), frame as *mut u8, ram_bytes.len())
        };
        let vgpu = gpu::vgpu::Vgpu::restore(
            &blob_bytes[..len],
            &hosted.partition,
            p.vgpus.device.backend(),
            &hosted.memory,
        )
        .map_err(|_| "the vGPU did not restore")?;
        hosted.vgpu = vgpu;
        hosted
            .enable_ppgtt(p.vgpus.device.backend())
            .map_err(|_| "the restored vGPU's shadow PPGTT pool")?;
        let g = Guest::attach(
            &rig.rt,
            &mut p.memory.frames,
            &mut p.vgpus,
            dst,
            0,
            program,
            &cpu,
            saved_at,
        )
        .map_err(|_| "the guest did not attach")?;
        let clock_kept = g.clock_us() >= clock_at_save;
        // Its aperture window rebuilt from the restored GGTT entries: its
        // driver maps its first RAM page at aperture page 0, its last at
        // its last.
        let last = WORKLOAD_PAGES - DRIVER_INDEX - 1;
        let window_kept = g.aperture_page(0) == GuestPage::new(RAM_FIRST_PAGE + DRIVER_INDEX).ok()
            && g.aperture_page(last) == GuestPage::new(RAM_FIRST_PAGE + DRIVER_INDEX + last).ok();
        rig.sched.add(g);
        check(clock_kept, "the restored guest's clock went back")?;
        check(
            window_kept,
            "the restored guest's aperture window does not map what its restored GGTT entries name",
        )
    })();
    blob.free(&mut p.memory.frames);
    ram.free(&mut p.memory.frames);
    moved?;
    // Its twin, never moved, on yet another vGPU.
    rig.spawn(p, 1, program, WORKLOAD_PAGES)?;
    rig.run_until(p, |_, _| false)?;
    let (g, twin) = (&rig.sched.guests[0], &rig.sched.guests[1]);
    let after = g.frames.all.iter().map(|f| f.1);
    let all: Vec<u64> = before.iter().copied().chain(after).collect();
    let want: Vec<u64> = twin.frames.all.iter().map(|f| f.1).collect();
    defmt::info!(
        "ring3 save-restore: {=usize} frames before the move, {=usize} in all, gap {=u64} us",
        before.len(),
        all.len(),
        g.frames.migration_gap_us.unwrap_or(0)
    );
    let result = check(
        g.state() == RunState::Exited(0) && twin.state() == RunState::Exited(0),
        "the restored guest or its twin did not finish",
    )
    .and(check(
        all == want && all.len() == FRAMES as usize,
        "the checksums did not go on as without the move",
    ))
    .and(check(
        before.len() < all.len() && g.frames.migration_gap_us.is_some(),
        "no frame after the move, or its gap was not seen",
    ));
    rig.finish(p).and(result)
}

/// The dirty bits show exactly the driver-region pages the guest wrote in
/// each round (so clearing them works), and nothing of its code or boot
/// block.
pub fn dirty_bits(p: &mut Platform) -> TestResult {
    const ROUNDS: u64 = 3;
    let (first, count, stride) = (3, 5, 7);
    let mut rig = Rig::new(p)?;
    let program = Program::Probe(Probe::Dirty {
        first,
        count,
        stride,
        rounds: ROUNDS,
    });
    rig.spawn(p, 0, program, PROBE_PAGES + 64)?;
    rig.sched.guests[0].clear_dirty();
    // Each round's pages (a round moves one page up), so a bit that was
    // not cleared shows as a page of the round before.
    let want = |round: u64| -> Vec<u64> {
        (0..count)
            .map(|k| RAM_FIRST_PAGE + DRIVER_INDEX + first + round + k * stride)
            .collect()
    };
    let driver = RAM_FIRST_PAGE + DRIVER_INDEX;
    let mut result = Ok(());
    let mut rounds = 0;
    loop {
        let end = rig.sched.guests[0].run(&rig.rt, &mut p.vgpus, rig.sched.slice);
        let mut got = Vec::new();
        let mut fixed = 0;
        rig.sched.guests[0].take_dirty(|page: GuestPage| {
            if page.number() >= driver {
                got.push(page.number());
            } else if page.number() < RAM_FIRST_PAGE + abi::STACK_INDEX {
                fixed += 1;
            }
        });
        got.sort_unstable();
        match end {
            SliceEnd::Yielded => {
                if got != want(rounds) || fixed != 0 {
                    result = Err("the dirty pages are not the ones the guest wrote");
                }
                rounds += 1;
            }
            SliceEnd::Preempted => {}
            SliceEnd::Exited(0) => break,
            _ => {
                result = Err("the dirty probe did not run through");
                break;
            }
        }
    }
    // The boot block was read at start-up, never written.
    let boot = GuestPage::new(RAM_FIRST_PAGE).map_err(|_| "page")?;
    let boot_bits = rig.sched.guests[0].page_bits(boot);
    rig.finish(p)
        .and(result)
        .and(check(
            rounds == ROUNDS,
            "the probe did not yield once per round",
        ))
        .and(check(
            boot_bits == Some((true, false)),
            "the boot block's accessed/dirty bits are wrong",
        ))
}

/// The aperture window (`vm::guest`'s docs) with the aperture probe
/// (`Probe::Aperture`): a write through aperture page `w` lands in the RAM
/// page its GGTT entry names, and the blitter copies it from the aperture
/// page's GM; the page shows in the dirty set though its RAM mapping was
/// never written; a GGTT rewrite moves the window's page, and a write
/// through a leaf rebound before the dirty bits were read still counts;
/// a read through an unbound entry kills the guest with a page fault on
/// its aperture window.
pub fn aperture_window(p: &mut Platform) -> TestResult {
    use gpu::backend::PhysMem;
    use gpu::vgpu::GuestMemoryMap;
    use guest::driver::APERTURE_PROBE_PAGES as A;
    let mut rig = Rig::new(p)?;
    rig.spawn(p, 0, Program::Probe(Probe::Aperture), PROBE_PAGES)?;
    let page = |i: u64| RAM_FIRST_PAGE + DRIVER_INDEX + i;
    let gpage = |i: u64| GuestPage::new(page(i)).map_err(|_| "page");
    let window = A[0];
    let ram = |p: &Platform, i: u64| -> Result<[u8; 4096], &'static str> {
        let mut out = [0u8; 4096];
        let hosted = p.vgpus.vgpus.last().ok_or("no vGPU")?;
        let frame = hosted.memory.frame_of(gpage(i)?).ok_or("not RAM")?;
        p.vgpus
            .device
            .memory()
            .read(frame.start(), &mut out)
            .map_err(|_| "RAM read")?;
        Ok(out)
    };
    let pattern = |round| {
        let mut out = [0u8; 4096];
        abi::aperture_pattern(round, &mut out);
        out
    };
    let slices = |rig: &mut Rig, p: &mut Platform| -> Result<(Vec<u64>, bool), &'static str> {
        // Until the probe yields, the dirty pages of the round, and whether
        // its RAM mapping of page A[0] was written.
        let mut dirty = Vec::new();
        let mut ram_written = false;
        loop {
            let g = &mut rig.sched.guests[0];
            let end = g.run(&rig.rt, &mut p.vgpus, rig.sched.slice);
            ram_written |= g.page_bits(gpage(window)?).is_some_and(|b| b.1);
            g.take_dirty(|pg: GuestPage| dirty.push(pg.number()));
            match end {
                SliceEnd::Yielded => return Ok((dirty, ram_written)),
                SliceEnd::Preempted => {}
                SliceEnd::Waiting => {
                    let index = p.vgpus.vgpus.len() - 1;
                    p.vgpus
                        .wait_idle(index, 2_000_000)
                        .map_err(|_| "the probe's GPU work did not end")?;
                    rig.sched.guests[0].wake_if_ready(&p.vgpus);
                }
                _ => return Err("the aperture probe ended before its rounds did"),
            }
        }
    };
    let result = (|| {
        let g = &rig.sched.guests[0];
        check(
            g.aperture_pages() == VgpuType::Small.resources().aperture / 4096,
            "the window is not the size of the aperture slice",
        )?;
        rig.sched.guests[0].clear_dirty();
        let (dirty, ram_written) = slices(&mut rig, p)?;
        check(
            ram(p, A[0])? == pattern(0) && ram(p, A[1])? == pattern(0),
            "the write through the aperture did not reach its RAM page, or the blit of it",
        )?;
        check(
            rig.sched.guests[0].aperture_page(window) == Some(gpage(A[0])?),
            "the window's page does not map the page its GGTT entry names",
        )?;
        check(
            dirty.contains(&page(A[0])) && !ram_written,
            "the write through the aperture is not in the dirty set",
        )?;
        let (dirty, _) = slices(&mut rig, p)?;
        check(
            rig.sched.guests[0].aperture_page(window) == Some(gpage(A[3])?),
            "a GGTT rewrite did not move the window's page",
        )?;
        check(
            ram(p, A[2])? == pattern(1) && ram(p, A[0])? == pattern(0),
            "the write after the rebinding did not land in the newly bound page",
        )?;
        check(
            dirty.contains(&page(A[2])) && !dirty.contains(&page(A[0])) && !dirty.contains(&page(A[3])),
            "a write through a leaf rebound since is not in the dirty set (or a page not written is)",
        )?;
        rig.run_until(p, |s, _| s.guests[0].state().ended())?;
        let state = rig.sched.guests[0].state();
        let RunState::Killed(kill) = state else {
            return Err("the read through an unbound aperture page did not kill the probe");
        };
        let words = alloc::format!("{kill}");
        check(
            kill.blame() == Some(Blame::Guest)
                && matches!(kill, Kill::Exception { vector: 14, address: Some(a), .. } if a == abi::aperture_va(window))
                && words.contains("aperture window")
                && rig.sched.guests[0].aperture_page(window).is_none(),
            "the unbound aperture page was not reported as a fault on its aperture window",
        )
    })();
    rig.finish(p).and(result)
}

/// What a trapped access and a system call cost (TSC cycles), seen from
/// the guest and from the monitor.
pub fn costs(p: &mut Platform) -> TestResult {
    const COUNT: u64 = 2000;
    let mut rig = Rig::new(p)?;
    rig.spawn(
        p,
        0,
        Program::Probe(Probe::Costs { count: COUNT }),
        PROBE_PAGES,
    )?;
    rig.run_until(p, |_, _| false)?;
    let g = &rig.sched.guests[0];
    let per = |m: Measure| g.stats.measures[m as usize].map(|(total, n)| total / n.max(1));
    let (Some(mmio), Some(call), Some(base)) = (
        per(Measure::MmioRead),
        per(Measure::Syscall),
        per(Measure::Baseline),
    ) else {
        return rig.finish(p).and(Err("the probe reported no timings"));
    };
    let s = g.stats;
    let handling = s.mmio_cycles / s.mmio_exits.max(1);
    let call_handling = s.syscall_cycles / s.syscalls.max(1);
    defmt::info!(
        "report ring3_costs mmio_round_trip_cycles={=u64} mmio_handling_cycles={=u64} syscall_round_trip_cycles={=u64} syscall_handling_cycles={=u64} baseline_cycles={=u64} smep={=bool} smap={=bool}",
        mmio.saturating_sub(base),
        handling,
        call.saturating_sub(base),
        call_handling,
        base,
        rig.rt.smep,
        rig.rt.smap
    );
    let ok = g.state() == RunState::Exited(0) && mmio > base && call > base;
    rig.finish(p).and(check(ok, "the timings make no sense"))
}

/// The ELF loader refuses images that are not static executables of the
/// window, or would have a writable and executable page.
pub fn loader_checks(_: &mut Platform) -> TestResult {
    let good = image::elf(abi::Image::Workload);
    check(
        image::parse(good).is_ok(),
        "the embedded workload image does not load",
    )?;
    let mut bad = good.to_vec();
    bad[16] = 3; // ET_DYN
    check(
        image::parse(&bad).err() == Some(ImageError::NotExecutable),
        "a PIE was accepted",
    )?;
    // The first program header: make it W+X, then move it out of the
    // window.
    let phoff = u64::from_le_bytes(good[32..40].try_into().map_err(|_| "phoff")?) as usize;
    let mut bad = good.to_vec();
    bad[phoff + 4] |= 2;
    check(
        matches!(image::parse(&bad), Err(ImageError::WriteAndExecute { .. })),
        "a writable code page was accepted",
    )?;
    let mut bad = good.to_vec();
    bad[phoff + 16..phoff + 24].copy_from_slice(&0x1000u64.to_le_bytes());
    check(
        matches!(image::parse(&bad), Err(ImageError::OutsideWindow { .. })),
        "a segment outside the window was accepted",
    )?;
    check(
        image::parse(&good[..100]).err() == Some(ImageError::Truncated),
        "a truncated image was accepted",
    )
}
