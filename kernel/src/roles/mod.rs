//! The monitor's roles: `role=local` (the default, [`local`]) shows
//! everything inside one machine, a live migration between two vGPUs of
//! it included. The migration roles between machines (ARCHITECTURE.md
//! "Migration roles"): `role=source` runs its ring-3 guests and migrates
//! guest 0 live, whole, to the monitor at `peer=`; `role=dest` listens on
//! `listen=`, takes the guest in on a vGPU of other slices and frames,
//! restores it with Dynamic Graphics Address Remapping and runs it on;
//! `role=guests` runs the guests only (the reference for QEMU's own
//! migration of the whole machine).
//!
//! Everything here is glue: the stream, the handshake and the handover are
//! `migrate`'s state machines ([`migrate::Source`], [`migrate::Receiver`]),
//! the guests are ring-3 guests of the guest runtime ([`crate::vm`]) on
//! its round-robin scheduler, what a migration takes of a guest is
//! [`crate::migration`]'s, the vGPU's state is `gpu`'s save and restore,
//! the wire is [`crate::net`]. One main loop per role alternates a slice
//! of the guests with a turn of the NIC (through the link) and the
//! migration. The workloads are paced at 60 frames a second of the TSC
//! clock (a display's refresh), so that the migration has the time in
//! between; the hostile guest is not (it never reports a frame). Log lines
//! and their fields are documented in the README (`report migration
//! ...`, `report migration_dest ...`, `report guest ...`, `report frame
//! ...`, `migration progress ...`).

mod dest;
mod local;
mod source;

use alloc::vec::Vec;

use gpu::partition::VgpuType;
use guest::abi::Program;
use guest::Kind;

use crate::cmdline::Role;
use crate::exit::{exit, ExitCode};
use crate::migration::vgpu_index;
use crate::platform::Platform;
use crate::vgpus::{SetupError, VgpuManager};
use crate::vm::guest::Blame;
use crate::vm::{CreateError, Guest, Kill, RunState, Runtime, Scheduler, Step};

/// vGPU type of every guest here (the stream names it; both sides agree).
const VGPU_TYPE: VgpuType = VgpuType::Small;
/// RAM of the side workload guests (desktop, video).
const SIDE_GUEST_MIB: u32 = 8;
/// RAM of the hostile guest (a probe needs little).
const HOSTILE_MIB: u32 = 2;
/// Frame period of every workload guest: 60 frames a second.
pub const FRAME_US: u64 = 16_667;
/// How long the source tries to reach the destination, unless
/// `connect_ms=` says (the destination waits ten times as long by default:
/// it starts first, and between migrations the source boots a guest).
const CONNECT_MS: u64 = 60_000;
/// Longest wait of the migration state machines for the peer, the same on
/// both sides: the source's wait for the answer to its commit is derived
/// from it (`migrate::handover::answer_wait_ns`), so that it outlasts the
/// destination's wait for the commit.
const TIMEOUT_NS: u64 = 10_000_000_000;
/// The migration's shortest turn in a role's main loop (see `source`).
const MIN_SLICE_US: u64 = 2_000;
/// Progress lines at most this often.
const PROGRESS_US: u64 = 200_000;
/// Longest the guests get to end once asked to finish (the hostile guest
/// spins until it is killed), before the rest are stopped.
const FINISH_LIMIT_US: u64 = 120_000_000;

/// Runs the role the command line names.
pub fn run(platform: &mut Platform) -> ! {
    match platform.options.roles.role {
        Role::Source => source::run(platform),
        Role::Dest => dest::run(platform),
        Role::Guests => run_guests(platform),
        Role::Local => local::run(platform),
    }
}

/// Why a guest could not be set up.
#[derive(Debug)]
pub enum GuestError {
    /// No vGPU for it.
    Setup(SetupError),
    /// The guest could not be made on it.
    Create(CreateError),
}

impl core::fmt::Display for GuestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuestError::Setup(e) => write!(f, "no vGPU: {e}"),
            GuestError::Create(e) => write!(f, "{e}"),
        }
    }
}

/// A role's ring-3 guests: the runtime and the scheduler, and the CPU time
/// of the guests that left (for shares).
pub struct Guests {
    pub rt: Runtime,
    pub sched: Scheduler,
    cycles_gone: u64,
}

impl Guests {
    /// The runtime up (APIC timer), no guests yet; exits on failure.
    pub fn new(p: &mut Platform) -> Guests {
        match Runtime::init(&mut p.memory, p.calibration.tsc_hz) {
            Ok(rt) => Guests {
                rt,
                sched: Scheduler::new(&rt),
                cycles_gone: 0,
            },
            Err(e) => {
                crate::println!("error: ring-3 guests cannot run: {e}");
                exit(ExitCode::Failure)
            }
        }
    }

    /// Guest `id` running `program` on a new vGPU with `mib` MiB of RAM,
    /// paced at [`FRAME_US`] if it is a workload.
    pub fn spawn(
        &mut self,
        p: &mut Platform,
        id: u32,
        program: Program,
        mib: u32,
    ) -> Result<(), GuestError> {
        let pages = u64::from(mib) * 256;
        let index = p
            .vgpus
            .add_vgpu(&mut p.memory.frames, VGPU_TYPE, pages)
            .map_err(GuestError::Setup)?;
        match Guest::create(
            &self.rt,
            &mut p.memory.frames,
            &mut p.vgpus,
            index,
            id,
            program,
        ) {
            Ok(g) => {
                self.add(g);
                Ok(())
            }
            Err(e) => {
                p.vgpus.remove_vgpu(&mut p.memory.frames, index);
                Err(GuestError::Create(e))
            }
        }
    }

    /// Adds a guest made elsewhere (one that arrived), paced if it is a
    /// workload.
    pub fn add(&mut self, mut g: Guest) {
        if matches!(g.program, Program::Workload { .. }) {
            g.pace(Some(FRAME_US));
        }
        self.sched.add(g);
    }

    /// One slice of the next guest that may run.
    pub fn step(&mut self, p: &mut Platform) -> Step {
        self.sched.step(&self.rt, &mut p.vgpus)
    }

    /// Guest `id`'s index in the scheduler.
    pub fn position(&self, id: u32) -> Option<usize> {
        self.sched.guests.iter().position(|g| g.id == id)
    }

    /// Guest `id`.
    pub fn get(&mut self, id: u32) -> Option<&mut Guest> {
        self.sched.guests.iter_mut().find(|g| g.id == id)
    }

    /// Guest `id`'s report line with `ended`, then it goes: page tables,
    /// vGPU and frames.
    pub fn remove(&mut self, p: &mut Platform, id: u32, ended: &str) {
        let Some(i) = self.position(id) else {
            return;
        };
        self.report(&p.vgpus, i, ended);
        let g = self.sched.guests.remove(i);
        self.cycles_gone += g.stats.cpu_cycles;
        if let Some(index) = vgpu_index(&p.vgpus, g.vgpu) {
            p.vgpus.remove_vgpu(&mut p.memory.frames, index);
        }
        g.destroy(&mut p.memory.frames);
    }

    /// Logs the checksum of every frame guest `id` reported on this
    /// monitor (README: `report frame ...`), for the comparison with a
    /// reference run of the same program (xtask's `reference`): its seed
    /// names the program, the frame number says where the guest's own
    /// count stood.
    pub fn report_frames(&self, id: u32) {
        let Some(g) = self.sched.guests.iter().find(|g| g.id == id) else {
            return;
        };
        let Program::Workload { seed, .. } = g.program else {
            return;
        };
        for &(frame, checksum) in &g.frames.all {
            defmt::info!(
                "report frame guest={=u32} kind={=str} seed={=u64:#x} mib={=u64} frame={=u64} checksum={=u64:#x}",
                id,
                g.program.name(),
                seed,
                g.ram_pages() / 256,
                frame,
                checksum
            );
        }
    }

    /// Logs guest `i`'s report line (README: `report guest ...`), with its
    /// vGPU's share of the GPU (the vGPU scheduler's accounts).
    pub fn report(&self, m: &VgpuManager, i: usize, ended: &str) {
        let g = &self.sched.guests[i];
        let gpu = m.gpu_use(g.vgpu);
        let total: u64 = self.cycles_gone
            + self
                .sched
                .guests
                .iter()
                .map(|g| g.stats.cpu_cycles)
                .sum::<u64>();
        let (frames, checksum) = g.frames.last.map_or((0, 0), |(f, c)| (f + 1, c));
        let exit_code = match g.state() {
            RunState::Exited(c) => c as i64,
            _ => -1,
        };
        let kill_vector = match g.state() {
            RunState::Killed(k) => k.vector().map_or(-1, |v| v as i64),
            _ => -1,
        };
        defmt::info!(
            "report guest id={=u32} kind={=str} mib={=u64} frames={=u64} checksum={=u64:#x} frames_here={=u64} frame_ms={=f64} mmio_exits={=u64} submissions={=u64} cpu_share_permille={=u64} gpu_busy_us={=u64} gpu_share_permille={=u32} ended={=str} exit_code={=i64} kill_vector={=i64} attempts={=u64} refused={=u64} vgpu={=u8}",
            g.id,
            g.program.name(),
            g.ram_pages() / 256,
            frames,
            checksum,
            g.stats.frames,
            g.frames.mean_interval_us().map_or(-1.0, |us| us as f64 / 1000.0),
            g.stats.mmio_exits,
            g.stats.submissions,
            g.stats.cpu_cycles * 1000 / total.max(1),
            gpu.busy_us,
            gpu.share_permille,
            ended,
            exit_code,
            kill_vector,
            g.attempts.declared,
            g.attempts.refused,
            g.vgpu.raw()
        );
        // Its vGPU's engine time, all engines and each (README).
        m.report_share(g.vgpu);
    }

    /// Whether guest `id` has ended as its program should: a workload
    /// exited 0 (its final check passed), a hostile guest was killed for
    /// its own fault.
    pub fn as_expected(&self, id: u32) -> bool {
        self.sched
            .guests
            .iter()
            .find(|g| g.id == id)
            .is_some_and(|g| match (g.program, g.state()) {
                (Program::Workload { .. } | Program::Busy { .. }, RunState::Exited(0)) => true,
                (Program::Probe(_), RunState::Killed(k)) => k.blame() == Some(Blame::Guest),
                _ => false,
            })
    }

    /// Asks every workload guest but `except` to finish and runs the
    /// guests until those and the hostile ones have ended (or the limit:
    /// then the rest are stopped).
    pub fn finish(&mut self, p: &mut Platform, except: Option<u32>) {
        for g in &mut self.sched.guests {
            if Some(g.id) != except {
                g.request_finish();
            }
        }
        let until = crate::time::micros_since_boot() + FINISH_LIMIT_US;
        let pending = |s: &Scheduler| {
            s.guests
                .iter()
                .any(|g| Some(g.id) != except && !g.state().ended())
        };
        while pending(&self.sched) && crate::time::micros_since_boot() < until {
            if self.step(p) == Step::Waiting {
                core::hint::spin_loop();
            }
        }
        for g in &mut self.sched.guests {
            if Some(g.id) != except {
                g.kill(Kill::Stopped {
                    reason: "it did not end in time after it was asked to finish",
                });
            }
        }
    }

    /// The word for guest `i`'s end on this side (`here`: `source` or
    /// `destination`) for its report line.
    pub fn ended_word(&self, i: usize, here: &'static str) -> &'static str {
        match self.sched.guests[i].state() {
            RunState::Exited(0) => here,
            RunState::Exited(_) => "failed",
            RunState::Killed(_) => "killed",
            RunState::Held => "held",
            _ => "running",
        }
    }
}

/// The hostile guest's program, aimed at guest `id` (its RAM and its
/// graphics memory: `vm::demo::victim_of`).
fn hostile_at(guests: &Guests, p: &Platform, id: u32) -> Program {
    let victim = guests
        .sched
        .guests
        .iter()
        .find(|g| g.id == id)
        .and_then(|g| vgpu_index(&p.vgpus, g.vgpu))
        .and_then(|index| crate::vm::demo::victim_of(&p.vgpus, index));
    crate::vm::demo::hostile(victim)
}

/// The side guests of a source (and of `role=guests`), ids 1.. after guest
/// 0, as many as `count`: a desktop and a video guest of
/// [`SIDE_GUEST_MIB`], the hostile guest (whose attempts aim at the
/// desktop), then the PPGTT renderer ([`Kind::Render3d`], its render
/// engine in execlist mode; it runs beside guest 0, which may be one too
/// with `workload=3d-ppgtt`). They run until asked to finish.
fn spawn_side_guests(p: &mut Platform, guests: &mut Guests, count: u8) -> Result<(), GuestError> {
    for id in 1..=u32::from(count) {
        let workload = |kind| Program::Workload {
            kind,
            seed: 0xde5c_0000 | u64::from(id),
            frames: 0,
        };
        let program = match id {
            1 => workload(Kind::Desktop2d),
            2 => workload(Kind::Video),
            3 => hostile_at(guests, p, 1),
            _ => workload(Kind::Render3d),
        };
        let mib = if id == 3 { HOSTILE_MIB } else { SIDE_GUEST_MIB };
        guests.spawn(p, id, program, mib)?;
    }
    Ok(())
}

/// Guest 0's program: the chosen workload, until asked to finish.
fn guest_zero(kind: Kind, seed: u64) -> Program {
    Program::Workload {
        kind,
        seed,
        frames: 0,
    }
}

/// `role=guests`: the guests run for `run_ms`, then report.
fn run_guests(p: &mut Platform) -> ! {
    let opts = p.options.roles;
    defmt::info!("report role=guests guests={=u8}", opts.guests);
    let mut guests = Guests::new(p);
    let booted = guests
        .spawn(p, 0, guest_zero(opts.workload, 0x0e5e_ed00), opts.guest_mib)
        .and_then(|()| spawn_side_guests(p, &mut guests, opts.guests - 1));
    if let Err(e) = booted {
        crate::println!("error: a guest does not boot: {e}");
        exit(ExitCode::Failure);
    }
    crate::println!(
        "gmig-rs: {} guests running ({} {} MiB and the others) for {} ms",
        guests.sched.guests.len(),
        opts.workload.name(),
        opts.guest_mib,
        opts.run_ms
    );
    defmt::info!("guests running");
    let end = crate::time::micros_since_boot() + u64::from(opts.run_ms) * 1000;
    while crate::time::micros_since_boot() < end {
        if guests.step(p) == Step::Waiting {
            core::hint::spin_loop();
        }
    }
    let ids: Vec<u32> = guests.sched.guests.iter().map(|g| g.id).collect();
    // A workload that failed, or a hostile guest that was not stopped for
    // its own fault by now, is a failure.
    let mut ok = true;
    for (i, &id) in ids.iter().enumerate() {
        let g = &guests.sched.guests[i];
        ok &= match g.program {
            Program::Workload { .. } | Program::Busy { .. } => !g.state().ended(),
            Program::Probe(_) => guests.as_expected(id),
        };
        guests.report(&p.vgpus, i, guests.ended_word(i, "source"));
    }
    exit(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
