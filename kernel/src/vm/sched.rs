//! Round-robin scheduling of ring-3 guests on the one CPU: each runnable
//! guest in turn for a slice of [`Scheduler::slice`] TSC cycles, ended
//! early by a yield, a wait or its end, and otherwise by the APIC timer.
//! A guest that waits for its vGPU is skipped until its GPU work has
//! ended: each step first runs the GPU on to now ([`VgpuManager::poll`],
//! the vGPU scheduler of `gpu::sched`), so while guests wait the engines
//! go on with the work of every vGPU, in turns.
//! A paced guest is skipped until its next frame is due, a held one (a
//! migration's stop) until released.
//!
//! The scheduler does one slice per [`Scheduler::step`], so a main loop
//! can interleave its own work (the NIC, a migration) between slices.

use alloc::vec::Vec;

use super::guest::{RunState, SliceEnd};
use super::Guest;
use super::Runtime;
use crate::arch::cpu::rdtsc;
use crate::vgpus::VgpuManager;

/// A slice, in microseconds.
pub const SLICE_US: u64 = 2_000;

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Guest `index` ran a slice, which ended so.
    Ran {
        /// Its index in [`Scheduler::guests`].
        index: usize,
        /// How the slice ended.
        end: SliceEnd,
    },
    /// Nobody can run now; some guest waits for its vGPU, sleeps until
    /// its next frame or is held.
    Waiting,
    /// Every guest has ended.
    Done,
}

/// The guests and whose turn it is.
#[derive(Debug)]
pub struct Scheduler {
    /// The guests, in the order they were added.
    pub guests: Vec<Guest>,
    /// Slice length in TSC cycles.
    pub slice: u64,
    next: usize,
}

impl Scheduler {
    /// No guests yet; slices of [`SLICE_US`].
    pub fn new(rt: &Runtime) -> Self {
        Scheduler {
            guests: Vec::new(),
            slice: rt.tsc_hz * SLICE_US / 1_000_000,
            next: 0,
        }
    }

    /// Adds a guest (last in the round); returns its index.
    pub fn add(&mut self, guest: Guest) -> usize {
        self.guests.push(guest);
        self.guests.len() - 1
    }

    /// Runs the next runnable guest for one slice.
    pub fn step(&mut self, rt: &Runtime, m: &mut VgpuManager) -> Step {
        self.step_admitting(rt, m, |_| true)
    }

    /// Runs the next runnable guest that `admit` lets run for one slice;
    /// one it refuses loses its turn (a migration's convergence throttle
    /// defers the migrating guest so).
    pub fn step_admitting(
        &mut self,
        rt: &Runtime,
        m: &mut VgpuManager,
        mut admit: impl FnMut(&Guest) -> bool,
    ) -> Step {
        // The GPU runs on to now (its work takes model time): what ended
        // wakes its guest, idle engines take their next turn.
        m.poll(crate::time::nanos_since_boot());
        for g in &mut self.guests {
            g.collect_writes(m);
            g.wake_if_ready(m);
        }
        let n = self.guests.len();
        let pick = (0..n).map(|k| (self.next + k) % n).find(|&i| {
            let g = &self.guests[i];
            g.state() == RunState::Runnable && admit(g)
        });
        let Some(index) = pick else {
            return if self.guests.iter().any(|g| !g.state().ended()) {
                Step::Waiting
            } else {
                Step::Done
            };
        };
        self.next = index + 1;
        let end = self.guests[index].run(rt, m, self.slice);
        Step::Ran { index, end }
    }

    /// Steps until every guest has ended or `limit` TSC cycles passed;
    /// true if they all ended.
    pub fn run(&mut self, rt: &Runtime, m: &mut VgpuManager, limit: u64) -> bool {
        let start = rdtsc();
        while rdtsc() - start < limit {
            match self.step(rt, m) {
                Step::Done => return true,
                Step::Waiting => core::hint::spin_loop(),
                Step::Ran { .. } => {}
            }
        }
        false
    }

    /// Each guest's share of the CPU time all of them had, in thousandths.
    pub fn shares(&self) -> Vec<u64> {
        let total: u64 = self.guests.iter().map(|g| g.stats.cpu_cycles).sum();
        self.guests
            .iter()
            .map(|g| g.stats.cpu_cycles * 1000 / total.max(1))
            .collect()
    }
}

/// How evenly the guests that used the GPU shared it
/// ([`gpu_fairness`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuFairness {
    /// Guests whose vGPU used any engine time.
    pub guests: u32,
    /// The least of their GPU shares over an even split among them, in
    /// thousandths (1000: exactly even).
    pub min_permille: u32,
    /// The greatest.
    pub max_permille: u32,
}

/// Each guest's GPU share (of the engine time every vGPU used, all
/// engines: the vGPU scheduler's accounts) over the even split among the
/// guests that used the GPU: with every guest busy, the scheduler's
/// fairness (the goal is 800..=1200); with guests of different demand,
/// only how different it was.
pub fn gpu_fairness(guests: &[Guest], m: &VgpuManager) -> GpuFairness {
    let mut f = GpuFairness {
        min_permille: u32::MAX,
        ..GpuFairness::default()
    };
    let using = guests.iter().filter(|g| m.gpu_use(g.vgpu).busy_us > 0);
    let n = using.clone().count() as u32;
    for g in using {
        let ratio = m.gpu_use(g.vgpu).share_permille.saturating_mul(n);
        f.min_permille = f.min_permille.min(ratio);
        f.max_permille = f.max_permille.max(ratio);
    }
    f.guests = n;
    if n == 0 {
        f.min_permille = 0;
    }
    f
}
