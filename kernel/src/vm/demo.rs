//! `ring3=3d,desktop,video,hostile`: ring-3 guests on vGPUs of their own,
//! run by the scheduler until they end, then a report line per guest.
//! Each workload guest must run its frames and pass its own final check
//! of every data page; the hostile guest (the probe image: it spins
//! without yielding, then reads another guest's RAM) must be killed for
//! its own fault while the others go on.
//!
//! Report lines (defmt, COM2):
//! * `report ring3_guest id=<n> program=<3d|desktop|video|hostile>
//!   image=<workload|probe> mib=<n> frames=<n> checksum=<0xhex>
//!   mmio_exits=<n> syscalls=<n> preemptions=<n> slices=<n>
//!   share_permille=<n> ended=<exited|failed|killed|runnable|waiting>
//!   exit_code=<n> kill_vector=<n>` (`exit_code` and `kill_vector` are
//!   `-` where they do not apply);
//! * `report ring3 guests=<n> ok=<bool> mmio_exits=<n>
//!   mmio_handling_cycles=<mean> syscall_handling_cycles=<mean>`.

use gpu::partition::VgpuType;
use guest::abi::{Probe, Program};

use super::guest::{Blame, RunState};
use super::{Guest, Runtime, Scheduler};
use crate::cmdline::{Ring3Guest, MAX_RING3_GUESTS};
use crate::exit::{exit, ExitCode};
use crate::platform::Platform;

/// The hostile guest's spin (loop turns): several slices under TCG.
pub const HOSTILE_SPIN: u64 = 30_000_000;
/// How long the run may take (TSC seconds) before the rest are stopped.
const LIMIT_S: u64 = 300;

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
    // The first workload guest's RAM, as the monitor maps it: what the
    // hostile guest tries to read.
    let mut victim: Option<u64> = None;
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
                    victim = p.vgpus.vgpus[index]
                        .memory
                        .runs()
                        .first()
                        .map(|r| r.first_frame.start().raw() + 0x800);
                }
                Program::Workload {
                    kind,
                    seed: 0x5eed_0000 + id as u64,
                    frames: u64::from(options.frames),
                }
            }
            Ring3Guest::Hostile => Program::Probe(Probe::Hostile {
                iterations: HOSTILE_SPIN,
                // Without a workload guest, the monitor's own image.
                address: victim.unwrap_or(0x10_0000),
                victim: 0,
            }),
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
    let mut ok = true;
    let (mut exits, mut mmio_cycles, mut calls, mut call_cycles) = (0u64, 0u64, 0u64, 0u64);
    for ((g, share), want) in sched.guests.iter().zip(&shares).zip(&wanted) {
        let s = &g.stats;
        exits += s.mmio_exits;
        mmio_cycles += s.mmio_cycles;
        calls += s.syscalls;
        call_cycles += s.syscall_cycles;
        let (frame, checksum) = g.frames.last.unwrap_or((0, 0));
        let good = match (want, g.state()) {
            (Ring3Guest::Workload(_), RunState::Exited(0)) => s.frames == u64::from(options.frames),
            (Ring3Guest::Hostile, RunState::Killed(k)) => k.blame() == Some(Blame::Guest),
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
        defmt::info!(
            "report ring3_guest id={=u32} program={=str} image={=str} mib={=u32} frames={=u64} last_frame={=u64} checksum={=u64:#x} mmio_exits={=u64} syscalls={=u64} preemptions={=u64} slices={=u64} share_permille={=u64} ended={=str} exit_code={=i64} kill_vector={=i64} as_expected={=bool}",
            g.id,
            g.program.name(),
            g.image().name(),
            (g.ram_pages() / 256) as u32,
            s.frames,
            frame,
            checksum,
            s.mmio_exits,
            s.syscalls,
            s.preemptions,
            s.slices,
            *share,
            g.state().name(),
            exit_code,
            vector,
            good
        );
    }
    let mean = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
    defmt::info!(
        "report ring3 guests={=usize} ok={=bool} mmio_exits={=u64} mmio_handling_cycles={=u64} syscall_handling_cycles={=u64}",
        sched.guests.len(),
        ok,
        exits,
        mean(mmio_cycles, exits),
        mean(call_cycles, calls)
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
