//! `ring3=3d,desktop,video,hostile`: ring-3 guests on vGPUs of their own,
//! run by the scheduler until they end, then a report line per guest.
//!
//! Each workload guest must run its frames, exit 0, and then pass the
//! monitor's own checks (`vm::verify`): its checksums equal those of the
//! same program run alone afterwards on a vGPU of its own, and every data
//! page of its RAM holds what its bookkeeping says. The
//! hostile guest (the probe image, `guest::attack`) aims its attempts at
//! the first workload guest: its graphics memory (the bookkeeping page,
//! through the GPU and the GGTT) and its RAM (through the CPU, last). It
//! must declare every class of attempt, each must be refused by the party
//! its class names (`vm::attempts`), and it must end killed for its own
//! fault, while the others go on.
//!
//! Report lines (defmt, COM2):
//! * `report ring3_guest id=<n> program=<3d|desktop|video|hostile>
//!   image=<workload|probe> mib=<n> frames=<n> last_frame=<n>
//!   checksum=<0xhex> checksum_ok=<bool> pages_verified=<n>
//!   mmio_exits=<n> mmio_refused=<n> syscalls=<n> preemptions=<n>
//!   slices=<n> share_permille=<n> gpu_busy_us=<n> gpu_submissions=<n>
//!   gpu_share_permille=<n> {rcs,bcs,vcs,vecs}_busy_us=<n>
//!   {rcs,bcs,vcs,vecs}_share_permille=<n> attempts=<n> refused=<n>
//!   classes=<n> ended=<exited|failed|killed|runnable|waiting>
//!   exit_code=<n> kill_vector=<n> as_expected=<bool>` (`exit_code` and
//!   `kill_vector` are -1 where they do not apply; `share_permille` is of
//!   the CPU, the `gpu_` and engine fields of the GPU: the vGPU
//!   scheduler's accounts; `checksum_ok` and `pages_verified` are the
//!   monitor's checks of a workload that exited 0, false and 0
//!   otherwise);
//! * `report ring3 guests=<n> ok=<bool> mmio_exits=<n>
//!   mmio_handling_cycles=<mean> syscall_handling_cycles=<mean>
//!   gpu_guests=<n> gpu_fair_min_permille=<n> gpu_fair_max_permille=<n>`
//!   (the fairness figure, [`super::sched::gpu_fairness`]).

use alloc::vec::Vec;

use gpu::partition::VgpuType;
use gpu::regs::pvinfo;
use guest::abi::{self, Probe, Program};

use super::guest::{Blame, RunState};
use super::{Guest, Runtime, Scheduler};
use crate::cmdline::{Ring3Guest, MAX_RING3_GUESTS};
use crate::exit::{exit, ExitCode};
use crate::platform::Platform;

/// The hostile guest's spin (loop turns): several slices under TCG.
pub const HOSTILE_SPIN: u64 = 30_000_000;
/// How long the run may take (TSC seconds) before the rest are stopped.
const LIMIT_S: u64 = 300;
/// How long `busy` guests keep their blitter busy, from their creation
/// (TSC milliseconds): long next to a guest's boot, so that they all
/// compete for most of it.
pub const BUSY_MS: u64 = 3_000;
/// Pages of each fill of the first, second, ... `busy` guest: submissions
/// of 66 us to 0.5 ms of engine time, so that sharing by submissions
/// would be far from fair and only sharing by engine time is fair.
pub const BUSY_PAGES: [u64; 4] = [64, 128, 256, 512];

/// What the hostile guest aims at in the workload guest on vGPU `index`
/// (before that guest has booted: where its bookkeeping will be): its RAM
/// as the monitor maps it, for the CPU attempt, and the graphics memory
/// of its bookkeeping page, for the GPU and GGTT ones.
pub fn victim_of(m: &crate::vgpus::VgpuManager, index: usize) -> Option<(u64, u64)> {
    let hosted = m.vgpus.get(index)?;
    let aperture = hosted.vgpu.pvinfo_dword(pvinfo::APERTURE_BASE);
    let book = u64::from(aperture) + guest::driver::DATA_FIRST * abi::PAGE;
    hosted
        .memory
        .runs()
        .first()
        .map(|r| (r.first_frame.start().raw() + 0x800, book))
}

/// The hostile guest's program, aimed at `victim` ([`victim_of`]).
pub fn hostile(victim: Option<(u64, u64)>) -> Program {
    Program::Probe(Probe::Hostile {
        iterations: HOSTILE_SPIN,
        // Without a workload guest, the monitor's own image, and graphics
        // memory of the guest's own choosing.
        address: victim.map_or(0x10_0000, |v| v.0),
        victim: victim.map_or(0, |v| v.1),
    })
}

/// Runs the `ring3=` guests and exits.
pub fn run(p: &mut Platform) -> ! {
    let rt = match Runtime::init(&mut p.memory, p.calibration.tsc_hz) {
        Ok(rt) => rt,
        Err(e) => {
            crate::println!("error: ring-3 guests cannot run: {e}");
            exit(ExitCode::Failure)
        }
    };
    let options = p.options.ring3;
    let pages = u64::from(options.mib) * 256;
    let mut sched = Scheduler::new(&rt);
    let mut wanted: heapless::Vec<Ring3Guest, MAX_RING3_GUESTS> = heapless::Vec::new();
    // The first workload guest's RAM as the monitor maps it (what the
    // hostile guest reads last) and its bookkeeping page's graphics
    // address (what it aims its GPU and GGTT attempts at).
    let mut victim: Option<(u64, u64)> = None;
    let busy_until = crate::arch::cpu::rdtsc() + BUSY_MS * rt.tsc_hz / 1000;
    let mut busy = 0;
    for (id, g) in options.guests.iter().flatten().enumerate() {
        let index = match p
            .vgpus
            .add_vgpu(&mut p.memory.frames, VgpuType::Small, pages)
        {
            Ok(i) => i,
            Err(e) => {
                crate::println!("error: no vGPU for ring-3 guest {id}: {e}");
                exit(ExitCode::Failure)
            }
        };
        let program = match *g {
            Ring3Guest::Workload(kind) => {
                if victim.is_none() {
                    victim = victim_of(&p.vgpus, index);
                }
                Program::Workload {
                    kind,
                    seed: 0x5eed_0000 + id as u64,
                    frames: u64::from(options.frames),
                }
            }
            Ring3Guest::Busy => {
                busy += 1;
                Program::Busy {
                    pages: BUSY_PAGES[(busy - 1) % BUSY_PAGES.len()],
                    until_tsc: busy_until,
                }
            }
            Ring3Guest::Hostile => hostile(victim),
        };
        let guest = Guest::create(
            &rt,
            &mut p.memory.frames,
            &mut p.vgpus,
            index,
            id as u32,
            program,
        );
        match guest {
            Ok(g) => {
                sched.add(g);
            }
            Err(e) => {
                crate::println!("error: ring-3 guest {id}: {e}");
                exit(ExitCode::Failure)
            }
        }
        let _ = wanted.push(*g);
    }
    crate::println!(
        "gmig-rs: {} ring-3 guests on {}",
        sched.guests.len(),
        p.vgpus.device.name()
    );
    let ended = sched.run(&rt, &mut p.vgpus, LIMIT_S * rt.tsc_hz);
    if !ended {
        for g in &mut sched.guests {
            g.kill(super::Kill::Stopped {
                reason: "the run's time limit",
            });
        }
    }
    let shares = sched.shares();
    let fair = super::sched::gpu_fairness(&sched.guests, &p.vgpus);
    let checks = monitor_checks(p, &sched, options.frames);
    let mut ok = true;
    let (mut exits, mut mmio_cycles, mut calls, mut call_cycles) = (0u64, 0u64, 0u64, 0u64);
    for (((g, share), want), check) in sched.guests.iter().zip(&shares).zip(&wanted).zip(&checks) {
        let s = &g.stats;
        exits += s.mmio_exits;
        mmio_cycles += s.mmio_cycles;
        calls += s.syscalls;
        call_cycles += s.syscall_cycles;
        let (frame, checksum) = g.frames.last.unwrap_or((0, 0));
        let a = &g.attempts;
        let good = match (want, g.state()) {
            (Ring3Guest::Workload(_), RunState::Exited(0)) => {
                s.frames == u64::from(options.frames)
                    && check.checksum_ok
                    && check.pages > 0
                    && a.declared == 0
            }
            (Ring3Guest::Hostile, RunState::Killed(k)) => {
                k.blame() == Some(Blame::Guest) && a.all_refused()
            }
            (Ring3Guest::Busy, RunState::Exited(0)) => s.frames > 0 && a.declared == 0,
            _ => false,
        };
        ok &= good;
        let exit_code = match g.state() {
            RunState::Exited(c) => c as i64,
            _ => -1,
        };
        let vector = match g.state() {
            RunState::Killed(k) => k.vector().map_or(-1, |v| v as i64),
            _ => -1,
        };
        let gpu = p.vgpus.gpu_use(g.vgpu);
        let [rcs, bcs, vcs, vecs] = gpu.engines;
        defmt::info!(
            "report ring3_guest id={=u32} program={=str} image={=str} mib={=u32} frames={=u64} last_frame={=u64} checksum={=u64:#x} checksum_ok={=bool} pages_verified={=u64} mmio_exits={=u64} mmio_refused={=u64} syscalls={=u64} preemptions={=u64} slices={=u64} share_permille={=u64} gpu_busy_us={=u64} gpu_submissions={=u64} gpu_share_permille={=u32} rcs_busy_us={=u64} rcs_share_permille={=u32} bcs_busy_us={=u64} bcs_share_permille={=u32} vcs_busy_us={=u64} vcs_share_permille={=u32} vecs_busy_us={=u64} vecs_share_permille={=u32} attempts={=u64} refused={=u64} classes={=u32} ended={=str} exit_code={=i64} kill_vector={=i64} as_expected={=bool}",
            g.id,
            g.program.name(),
            g.image().name(),
            (g.ram_pages() / 256) as u32,
            s.frames,
            frame,
            checksum,
            check.checksum_ok,
            check.pages,
            s.mmio_exits,
            s.mmio_refused,
            s.syscalls,
            s.preemptions,
            s.slices,
            *share,
            gpu.busy_us,
            gpu.submissions,
            gpu.share_permille,
            rcs.0,
            rcs.1,
            bcs.0,
            bcs.1,
            vcs.0,
            vcs.1,
            vecs.0,
            vecs.1,
            a.declared,
            a.refused,
            a.class_count(),
            g.state().name(),
            exit_code,
            vector,
            good
        );
    }
    let mean = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
    defmt::info!(
        "report ring3 guests={=usize} ok={=bool} mmio_exits={=u64} mmio_handling_cycles={=u64} syscall_handling_cycles={=u64} gpu_guests={=u32} gpu_fair_min_permille={=u32} gpu_fair_max_permille={=u32}",
        sched.guests.len(),
        ok,
        exits,
        mean(mmio_cycles, exits),
        mean(call_cycles, calls),
        fair.guests,
        fair.min_permille,
        fair.max_permille
    );
    crate::println!(
        "gmig-rs: ring-3 guests {}",
        if ok {
            "ended as expected"
        } else {
            "did not all end as expected"
        }
    );
    exit(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// The monitor's own checks of one guest (`vm::verify`).
#[derive(Clone, Copy, Debug, Default)]
struct Checked {
    /// Its frames came in order with the checksum of the same program's
    /// run alone, each.
    checksum_ok: bool,
    /// Data pages found holding what its bookkeeping says (0: not
    /// checked, or a page was wrong).
    pages: u64,
}

/// For each workload guest that exited 0: its RAM checked by content,
/// then its checksums against those of the same program run alone (after
/// every guest's RAM was checked, so the reference run's vGPU comes and
/// goes after).
fn monitor_checks(p: &mut Platform, sched: &Scheduler, frames: u32) -> Vec<Checked> {
    let mut checks: Vec<Checked> = sched.guests.iter().map(|_| Checked::default()).collect();
    for (g, check) in sched.guests.iter().zip(&mut checks) {
        let Program::Workload { kind, seed, .. } = g.program else {
            continue;
        };
        if g.state() != RunState::Exited(0) {
            continue;
        }
        let Some(index) = p
            .vgpus
            .vgpus
            .iter()
            .position(|h| h.partition.id() == g.vgpu)
        else {
            continue;
        };
        match super::verify::guest_pages(&p.vgpus, index, kind, seed, g.ram_pages()) {
            Ok(n) => check.pages = n,
            Err(e) => {
                crate::println!(
                    "gmig-rs: guest {} ({}): its RAM: {e}",
                    g.id,
                    g.program.name()
                );
                defmt::error!(
                    "guest {=u32} ({=str}): the monitor's check of its RAM: {}",
                    g.id,
                    g.program.name(),
                    defmt::Display2Format(&e)
                );
            }
        }
    }
    for (g, check) in sched.guests.iter().zip(&mut checks) {
        let Program::Workload { kind, seed, .. } = g.program else {
            continue;
        };
        if check.pages == 0 {
            continue;
        }
        match super::verify::reference_checksums(p, kind, seed, u64::from(frames), g.ram_pages()) {
            Ok(want) => {
                let in_order = g.frames.all.iter().map(|f| f.0).eq(0..u64::from(frames));
                check.checksum_ok = in_order && g.frames.all.iter().map(|f| f.1).eq(want);
            }
            Err(e) => defmt::error!(
                "guest {=u32} ({=str}): no reference checksums: {=str}",
                g.id,
                g.program.name(),
                e
            ),
        }
        if !check.checksum_ok {
            crate::println!(
                "gmig-rs: guest {} ({}): its checksums are not those of its program run alone",
                g.id,
                g.program.name()
            );
        }
    }
    checks
}
