//! The vGPU scheduler (ARCHITECTURE.md "Submission path"): time-sliced
//! round-robin of the vGPUs on each engine, each vGPU on its own engine
//! context, fair under load, with the engine time each vGPU used.
//!
//! The monitor calls [`Scheduler::poll`] from its main loops and whenever
//! a guest waits for its GPU. One poll tells the backend the time
//! ([`Backend::advance`]), collects the submissions that ended (HEAD
//! advances, a fault stops its vGPU), and gives every idle engine its next
//! submission. The vGPUs hold their queued work themselves (a TAIL write
//! queues a span, [`crate::vgpu`]); the scheduler decides whose turn it is.
//!
//! Rules:
//! * One submission per engine at a time, so the engine's one shadow is
//!   rewritten only while the engine is idle, and one per vGPU and engine,
//!   so a vGPU's submissions end in the order it made them.
//! * Turns per engine, in slot order. A turn lasts [`Scheduler::slice_ns`]
//!   of engine time (default [`DEFAULT_SLICE_NS`]): its vGPU's submissions
//!   run one after another while it has work queued and time left, and the
//!   turn passes at the first submission boundary after its time is spent
//!   or its queue is empty. Preemption is at submission boundaries only, so
//!   a submission that runs past the turn's end puts its vGPU in debt, paid
//!   from its next turns (deficit round-robin: each turn adds one slice; a
//!   vGPU still in debt sits the round out). Unspent time is not banked:
//!   a vGPU that runs out of work ends its turn with no credit. So every
//!   vGPU with work gets the same engine time per round whatever the size
//!   of its submissions, and a vGPU with little work gets the engine within
//!   a round of asking (at most one turn of each other vGPU before it).
//! * Work-conserving: an engine never idles while a vGPU has work for it.
//!   On the software model a poll ends what ran to its end before now and
//!   starts the next submission back to back from the moment the engine
//!   went idle ([`Backend::submit_ready_since`], as hardware starts the
//!   context in its second execlist port), if it was queued by then (the
//!   poll that first saw its TAIL), and repeats up to now; so how seldom
//!   the monitor polls (a guest's CPU slice, the model's own cost of
//!   executing blits under emulation) does not leave the engine idle in
//!   model time, and busy vGPUs really compete for it.
//! * Engine time is charged from the submission's start to its end, as the
//!   backend reports it ([`Backend::finished_at_ns`]); where it cannot
//!   (hardware) from dispatch up to the poll that saw the end, because the
//!   engine was the vGPU's until then.
//! * A dispatch the scanner rejects stops that vGPU (its queue is dropped)
//!   and the turn goes on to the next; a monitor fault (the backend refused)
//!   leaves the work queued for the next poll and is reported.
//!
//! On `IntelGen9` a dispatch is one ELSP write of the vGPU's own context
//! descriptor on that engine ([`crate::intel`]); a turn's end is a
//! context switch at the next dispatch.
//!
//! The monitor's report lines (README: `report vgpu_share ...`, the
//! `gpu_*` fields of `report ring3_guest ...`) give each vGPU's engine
//! time and its share, in thousandths of the engine time all vGPUs used,
//! over all engines ([`Scheduler::share_permille`]) and per engine
//! ([`Scheduler::engine_share_permille`]).

use crate::backend::{Backend, SubmissionId};
use crate::engine::Engine;
use crate::partition::{VgpuId, MAX_VGPUS};
use crate::vgpu::{MonitorFault, SubmissionGate, Vgpu, VgpuError, MAX_QUEUED_TAILS};

/// Engine time one turn lasts: 1 ms, short next to a 60 Hz frame, long
/// next to a submission of a few page copies (about 1 us each on the
/// software model).
pub const DEFAULT_SLICE_NS: u64 = 1_000_000;

/// What a vGPU used of an engine (or of all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Engine time its submissions took, dispatch to end, in nanoseconds.
    pub busy_ns: u64,
    /// Its submissions that ended (completed, faulted, or abandoned by a
    /// reset).
    pub submissions: u64,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.submissions = self.submissions.saturating_add(other.submissions);
    }
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Submissions handed to the backend.
    pub dispatched: u32,
    /// Submissions that ended.
    pub ended: u32,
    /// The first monitor fault a dispatch met (that work stays queued).
    pub monitor_fault: Option<(VgpuId, MonitorFault)>,
}

/// The submission an engine runs for a vGPU slot.
#[derive(Clone, Copy, Debug)]
struct Running {
    slot: usize,
    id: SubmissionId,
    since_ns: u64,
}

/// One engine's turn-taking.
#[derive(Clone, Copy, Debug)]
struct Lane {
    /// The slot whose turn it is (or was last).
    turn: Option<usize>,
    running: Option<Running>,
    /// When the engine's last submission ended, where the backend says
    /// (the software model); the next may start from then.
    idle_since_ns: Option<u64>,
}

/// One vGPU slot's accounts.
#[derive(Clone, Copy, Debug)]
struct Account {
    usage: [Usage; Engine::COUNT],
    /// Engine time left in its turn on each engine; negative: a submission
    /// ran past the turn's end, and the debt is paid from later turns.
    credit_ns: [i64; Engine::COUNT],
    /// Per engine the ring TAIL the vGPU had at the last poll, and the
    /// poll that first saw it: everything it has queued there was queued
    /// by then.
    seen_tail: [(u32, u64); Engine::COUNT],
}

impl Account {
    const NEW: Account = Account {
        usage: [Usage {
            busy_ns: 0,
            submissions: 0,
        }; Engine::COUNT],
        credit_ns: [0; Engine::COUNT],
        seen_tail: [(0, 0); Engine::COUNT],
    };
}

/// The scheduler of every engine.
#[derive(Clone, Debug)]
pub struct Scheduler {
    slice_ns: u64,
    lanes: [Lane; Engine::COUNT],
    accounts: [Account; MAX_VGPUS],
}

fn slot(id: VgpuId) -> usize {
    usize::from(id.raw())
}

/// The vGPU of `slot` among `vgpus`.
fn find<V: AsMut<Vgpu>>(vgpus: &mut [V], slot_index: usize) -> Option<&mut Vgpu> {
    vgpus
        .iter_mut()
        .map(AsMut::as_mut)
        .find(|v| slot(v.id()) == slot_index)
}

/// Turns of one slice that credit `credit` needs before it is positive.
fn rounds_to_credit(credit: i64, slice: i64) -> i64 {
    if credit > 0 {
        1
    } else {
        credit.saturating_neg() / slice + 1
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new(DEFAULT_SLICE_NS)
    }
}

impl Scheduler {
    /// A scheduler whose turns last `slice_ns` of engine time (at least 1).
    pub const fn new(slice_ns: u64) -> Self {
        Scheduler {
            slice_ns: if slice_ns == 0 { 1 } else { slice_ns },
            lanes: [Lane {
                turn: None,
                running: None,
                idle_since_ns: None,
            }; Engine::COUNT],
            accounts: [Account::NEW; MAX_VGPUS],
        }
    }

    /// Engine time one turn lasts.
    pub const fn slice_ns(&self) -> u64 {
        self.slice_ns
    }

    /// Runs the GPU on to `now_ns` (the monitor's clock, monotonic): ends,
    /// then dispatches, on every engine, for `vgpus` (in any order; each
    /// known by its slot).
    pub fn poll<V: AsMut<Vgpu>>(
        &mut self,
        now_ns: u64,
        backend: &mut dyn Backend,
        gate: &mut dyn SubmissionGate,
        vgpus: &mut [V],
    ) -> PollReport {
        for v in vgpus.iter_mut().map(AsMut::as_mut) {
            if let Some(account) = self.accounts.get_mut(slot(v.id())) {
                for engine in Engine::ALL {
                    let tail = v.ring(engine).tail;
                    let seen = &mut account.seen_tail[engine.index()];
                    if seen.0 != tail {
                        *seen = (tail, now_ns);
                    }
                }
            }
        }
        backend.advance(now_ns);
        let mut report = PollReport::default();
        // Each pass ends what ran to its end before now and starts what
        // follows it back to back, from when the engine went idle; a pass
        // that starts nothing is the last. Every pass but the last takes a
        // span off a queue, so the passes are bounded.
        for _ in 0..=MAX_VGPUS * MAX_QUEUED_TAILS * Engine::COUNT {
            let before = report.dispatched;
            for engine in Engine::ALL {
                self.retire(engine, now_ns, backend, vgpus, &mut report);
                self.dispatch(engine, now_ns, backend, gate, vgpus, &mut report);
            }
            if report.dispatched == before {
                break;
            }
            // What was dispatched runs up to now.
            backend.advance(now_ns);
        }
        report
    }

    /// Collects the end of the engine's running submission, and charges it.
    fn retire<V: AsMut<Vgpu>>(
        &mut self,
        engine: Engine,
        now_ns: u64,
        backend: &mut dyn Backend,
        vgpus: &mut [V],
        report: &mut PollReport,
    ) {
        let e = engine.index();
        let Some(run) = self.lanes[e].running else {
            return;
        };
        // A vGPU gone (torn down) or reset took its work off the engine.
        let still = find(vgpus, run.slot).and_then(|v| v.collect(engine, backend));
        if still == Some(run.id) {
            return;
        }
        let finished = backend.finished_at_ns(engine, run.id);
        let end = finished
            .unwrap_or(now_ns)
            .clamp(run.since_ns, now_ns.max(run.since_ns));
        self.lanes[e].idle_since_ns = finished.map(|_| end);
        let busy = end - run.since_ns;
        if let Some(account) = self.accounts.get_mut(run.slot) {
            account.usage[e].add(Usage {
                busy_ns: busy,
                submissions: 1,
            });
            let busy = i64::try_from(busy).unwrap_or(i64::MAX);
            account.credit_ns[e] = account.credit_ns[e].saturating_sub(busy);
        }
        self.lanes[e].running = None;
        report.ended += 1;
    }

    /// Gives an idle engine the next submission of the vGPU whose turn it
    /// is.
    fn dispatch<V: AsMut<Vgpu>>(
        &mut self,
        engine: Engine,
        now_ns: u64,
        backend: &mut dyn Backend,
        gate: &mut dyn SubmissionGate,
        vgpus: &mut [V],
        report: &mut PollReport,
    ) {
        let e = engine.index();
        if self.lanes[e].running.is_some() {
            return;
        }
        let mut queued = [false; MAX_VGPUS];
        for v in vgpus.iter_mut().map(AsMut::as_mut) {
            if let Some(q) = queued.get_mut(slot(v.id())) {
                *q = v.ready(engine);
            }
        }
        // Each pass dispatches, or takes one vGPU out of `queued`.
        while let Some(turn) = self.next_turn(e, &queued) {
            let Some(v) = find(vgpus, turn) else {
                queued[turn] = false;
                continue;
            };
            // Back to back after the engine's last work if the span was
            // queued by then (the model's engine never idles while work
            // waits for a poll); otherwise from now.
            let queued_at = self.accounts[turn].seen_tail[e].1;
            let since_ns = self.lanes[e]
                .idle_since_ns
                .map_or(now_ns, |idle| queued_at.max(idle).min(now_ns));
            match v.dispatch(engine, backend, gate, since_ns) {
                Ok(Some(id)) => {
                    self.lanes[e].running = Some(Running {
                        slot: turn,
                        id,
                        since_ns,
                    });
                    report.dispatched += 1;
                    return;
                }
                Err(VgpuError::Monitor(fault)) => {
                    report.monitor_fault.get_or_insert((v.id(), fault));
                    return;
                }
                // Nothing queued after all, or the guest's fault (the vGPU
                // stopped and dropped its queue): the turn goes on.
                Ok(None) | Err(_) => queued[turn] = false,
            }
        }
    }

    /// Whose turn it is on engine `e`, among the slots with work
    /// `queued`: the current turn while it has credit, otherwise the next
    /// in slot order once the rounds of slices have paid its debt.
    fn next_turn(&mut self, e: usize, queued: &[bool; MAX_VGPUS]) -> Option<usize> {
        if !queued.iter().any(|&q| q) {
            return None;
        }
        let lane = &mut self.lanes[e];
        if let Some(t) = lane.turn {
            let credit = &mut self.accounts[t].credit_ns[e];
            if queued[t] && *credit > 0 {
                return Some(t);
            }
            // Its turn ends: unspent time is not banked, debt is kept.
            *credit = (*credit).min(0);
        }
        let slice = i64::try_from(self.slice_ns).unwrap_or(i64::MAX);
        let start = lane.turn.map_or(0, |t| t + 1);
        let order = (0..MAX_VGPUS)
            .map(|k| (start + k) % MAX_VGPUS)
            .filter(|&s| queued[s]);
        // Round by round each of them gets a slice; the first whose credit
        // turns positive takes the turn.
        let rounds = order
            .clone()
            .map(|s| rounds_to_credit(self.accounts[s].credit_ns[e], slice))
            .min()?;
        let winner = order
            .clone()
            .find(|&s| rounds_to_credit(self.accounts[s].credit_ns[e], slice) == rounds)?;
        let mut before = true;
        for s in order {
            let turns = if before { rounds } else { rounds - 1 };
            let credit = &mut self.accounts[s].credit_ns[e];
            *credit = credit.saturating_add(slice.saturating_mul(turns));
            if s == winner {
                before = false;
            }
        }
        lane.turn = Some(winner);
        Some(winner)
    }

    /// What vGPU `id` used of `engine`.
    pub fn engine_usage(&self, id: VgpuId, engine: Engine) -> Usage {
        self.accounts
            .get(slot(id))
            .map_or(Usage::default(), |a| a.usage[engine.index()])
    }

    /// What vGPU `id` used of every engine together.
    pub fn usage(&self, id: VgpuId) -> Usage {
        let mut total = Usage::default();
        for engine in Engine::ALL {
            total.add(self.engine_usage(id, engine));
        }
        total
    }

    /// vGPU `id`'s share of the engine time every vGPU used, in
    /// thousandths (0 when none was used).
    pub fn share_permille(&self, id: VgpuId) -> u32 {
        let all: u128 = self
            .accounts
            .iter()
            .flat_map(|a| a.usage.iter())
            .map(|u| u128::from(u.busy_ns))
            .sum();
        if all == 0 {
            return 0;
        }
        let own = u128::from(self.usage(id).busy_ns);
        u32::try_from(own * 1000 / all).unwrap_or(1000)
    }

    /// vGPU `id`'s share of the engine time every vGPU used on `engine`,
    /// in thousandths (0 when none was used).
    pub fn engine_share_permille(&self, id: VgpuId, engine: Engine) -> u32 {
        let e = engine.index();
        let all: u128 = self
            .accounts
            .iter()
            .map(|a| u128::from(a.usage[e].busy_ns))
            .sum();
        if all == 0 {
            return 0;
        }
        let own = u128::from(self.engine_usage(id, engine).busy_ns);
        u32::try_from(own * 1000 / all).unwrap_or(1000)
    }

    /// Forgets slot `id`'s accounts (a vGPU torn down, or a new one on the
    /// slot): its usage and credit start from zero.
    pub fn forget(&mut self, id: VgpuId) {
        if let Some(a) = self.accounts.get_mut(slot(id)) {
            *a = Account::NEW;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::GuestPage;
    use crate::backend::PhysMem;
    use crate::ggtt::{GuestPte, PteFlags};
    use crate::mediate::ScanGate;
    use crate::partition::{GmLayout, PartitionAllocator, VgpuType};
    use crate::regs::{ring, GGTT_BAR0_OFFSET};
    use crate::sim::SimGpu;
    use crate::testutil::*;
    use crate::vgpu::{AccessSize, FrameRuns, GuestMemoryMap, MmioEffect, MAX_QUEUED_TAILS};

    /// Guest pages mapped at the bottom of each aperture: the blitter ring
    /// in page 0, the render ring in page 1, data from page 2.
    const PAGES: u64 = 16;
    const DATA: u64 = 2;
    /// First page no fill reaches (fills cover at most 8 pages from
    /// `DATA`).
    const FREE: u64 = 12;

    struct Guest {
        vgpu: Vgpu,
        mem: FrameRuns<4>,
    }

    impl AsMut<Vgpu> for Guest {
        fn as_mut(&mut self) -> &mut Vgpu {
            &mut self.vgpu
        }
    }

    struct World {
        gpu: SimGpu<SparseMem>,
        gate: Box<ScanGate>,
        guests: Vec<Guest>,
        sched: Scheduler,
        now_ns: u64,
    }

    /// Model time between two polls: short next to the submissions here
    /// (the engine idles from a submission's end to the next poll).
    const STEP_NS: u64 = 1_000;

    fn ring_page(engine: Engine) -> u64 {
        match engine {
            Engine::Blitter => 0,
            _ => 1,
        }
    }

    fn world(count: usize) -> World {
        let mut gpu = sim();
        let gate = scan_gate(&mut gpu);
        let mut alloc =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let mut guests = Vec::new();
        for g in 0..count as u64 {
            let partition = alloc.allocate(VgpuType::Small).unwrap();
            let mut vgpu = Vgpu::new(&partition);
            let mem = guest_mem(0, 0x4000 + 0x100 * g, PAGES);
            let ap = vgpu.translation().guest_view().aperture.base().raw();
            let mut w = |off: u32, size, value| {
                let e = vgpu.mmio_write(&mut gpu, &mem, off, size, value).unwrap();
                assert_eq!(e, MmioEffect::Done);
            };
            for i in 0..PAGES {
                let pte = GuestPte::map(GuestPage::new(i).unwrap(), PteFlags::NONE);
                let slot = GGTT_BAR0_OFFSET + ((ap >> 12) + i) as u32 * 8;
                w(slot, AccessSize::Qword, pte.raw());
            }
            for engine in [Engine::Blitter, Engine::Render] {
                let base = engine.mmio_base();
                let start = ap + ring_page(engine) * 4096;
                w(base + ring::START, AccessSize::Dword, start);
                w(base + ring::CTL, AccessSize::Dword, 1);
            }
            guests.push(Guest { vgpu, mem });
        }
        World {
            gpu,
            gate,
            guests,
            sched: Scheduler::default(),
            now_ns: 0,
        }
    }

    impl World {
        fn aperture(&self, g: usize) -> u64 {
            let v = &self.guests[g].vgpu;
            v.translation().guest_view().aperture.base().raw()
        }

        /// Guest `g` writes `cmds` into `engine`'s ring and bumps TAIL.
        fn queue(&mut self, g: usize, engine: Engine, cmds: &[u32]) -> u32 {
            let mut cmds = cmds.to_vec();
            if cmds.len() % 2 == 1 {
                cmds.push(NOOP);
            }
            let guest = &mut self.guests[g];
            let head = guest.vgpu.ring(engine).tail;
            let frame = guest
                .mem
                .frame_of(GuestPage::new(ring_page(engine)).unwrap())
                .unwrap();
            for (i, d) in cmds.iter().enumerate() {
                let at = frame.at((u64::from(head) + 4 * i as u64) % 4096);
                self.gpu.mem_mut().write(at, &d.to_le_bytes()).unwrap();
            }
            let tail = (head + 4 * cmds.len() as u32) % 4096;
            let reg = engine.mmio_base() + ring::TAIL;
            let e = guest
                .vgpu
                .mmio_write(
                    &mut self.gpu,
                    &guest.mem,
                    reg,
                    AccessSize::Dword,
                    u64::from(tail),
                )
                .unwrap();
            assert_eq!(e, MmioEffect::Queued(engine));
            tail
        }

        fn step(&mut self) -> PollReport {
            let r = self.sched.poll(
                self.now_ns,
                &mut self.gpu,
                &mut *self.gate,
                &mut self.guests,
            );
            assert_eq!(r.monitor_fault, None);
            self.now_ns += STEP_NS;
            r
        }

        fn read(&self, g: usize, page: u64, offset: u64) -> u32 {
            let frame = self.guests[g]
                .mem
                .frame_of(GuestPage::new(page).unwrap())
                .unwrap();
            let mut b = [0u8; 4];
            self.gpu.mem().read(frame.at(offset), &mut b).unwrap();
            u32::from_le_bytes(b)
        }

        fn id(&self, g: usize) -> VgpuId {
            self.guests[g].vgpu.id()
        }
    }

    /// Fills of `rows` pages (4 KiB each) of guest `g`'s data pages, in
    /// blits of at most 8 pages: `rows` microseconds of engine time.
    fn fills(w: &World, g: usize, rows: u32) -> Vec<u32> {
        let dst = w.aperture(g) + DATA * 4096;
        let mut cmds = Vec::new();
        let mut left = rows;
        while left > 0 {
            let n = left.min(8);
            cmds.extend(color_blt(dst, 4096, 0, 0, 1024, n, 0x7000_0000 | left));
            left -= n;
        }
        cmds
    }

    /// Four vGPUs keep the blitter busy with submissions of very different
    /// sizes (8 to 512 page fills each, 8 to 512 us): each gets its fair
    /// share of the engine's time, not of its submissions.
    #[test]
    fn four_busy_vgpus_each_get_a_fair_share() {
        let mut w = world(4);
        let rows = [8, 32, 128, 512];
        let run_ns = 60_000_000;
        while w.now_ns < run_ns {
            for (g, &r) in rows.iter().enumerate() {
                if w.guests[g].vgpu.queued(Engine::Blitter) == 0 {
                    let cmds = fills(&w, g, r);
                    w.queue(g, Engine::Blitter, &cmds);
                }
            }
            w.step();
        }
        let busy: Vec<u64> = (0..4).map(|g| w.sched.usage(w.id(g)).busy_ns).collect();
        let total: u64 = busy.iter().sum();
        assert!(total > run_ns * 9 / 10, "the engine idled: {busy:?}");
        for (g, r) in rows.iter().enumerate() {
            let share = w.sched.share_permille(w.id(g));
            assert!(
                (200..=300).contains(&share),
                "vGPU {g} ({r} pages a submission) got {share} permille: {busy:?}"
            );
            assert!(w.sched.usage(w.id(g)).submissions > 0);
        }
    }

    /// A vGPU that submits now and then, next to one that always has work:
    /// its submissions start within one turn of the busy one, and the busy
    /// one keeps the engine the rest of the time.
    #[test]
    fn a_vgpu_with_little_work_does_not_lose_its_turn_to_a_busy_one() {
        let mut w = world(2);
        let fence = w.aperture(1) + DATA * 4096;
        let mut asked: Option<(u64, u32)> = None;
        let mut served = 0;
        let mut worst_ns = 0;
        let mut seq = 0u32;
        while w.now_ns < 30_000_000 {
            if w.guests[0].vgpu.queued(Engine::Blitter) == 0 {
                let cmds = fills(&w, 0, 64);
                w.queue(0, Engine::Blitter, &cmds);
            }
            match asked {
                None if w.now_ns.is_multiple_of(3_000_000) => {
                    seq += 1;
                    w.queue(1, Engine::Blitter, &flush_dw_imm(fence, seq));
                    asked = Some((w.now_ns, seq));
                }
                Some((at, want)) if w.read(1, DATA, 0) == want => {
                    worst_ns = worst_ns.max(w.now_ns - at);
                    served += 1;
                    asked = None;
                }
                _ => {}
            }
            w.step();
        }
        assert!(served >= 9, "the light vGPU was served {served} times");
        // One turn of the busy vGPU: its slice, the submission that runs
        // past it (64 us), the engine's idle time up to each poll (one step
        // a submission), and its own submission.
        let bound = DEFAULT_SLICE_NS + 64_000 + 20 * STEP_NS + 10_000;
        assert!(worst_ns <= bound, "waited {worst_ns} ns (bound {bound})");
        let busy = w.sched.usage(w.id(0)).busy_ns;
        assert!(busy > 25_000_000, "the busy vGPU got {busy} ns");
        assert!(w.sched.share_permille(w.id(1)) < 10);
    }

    /// A vGPU's submissions end in the order it made them, one at a time,
    /// while another vGPU's interleave; TAIL writes past the queue's room
    /// join the newest span instead of being refused.
    #[test]
    fn completion_order_per_vgpu_is_submission_order() {
        let mut w = world(2);
        let mut tails = [Vec::new(), Vec::new()];
        // Five more than the queue's room.
        let spans = MAX_QUEUED_TAILS as u32 + 4;
        for i in 0..spans {
            for (g, tails) in tails.iter_mut().enumerate() {
                // The store comes after a fill of 8 us, so the span that
                // starts back to back after one that ended shows no store
                // before the next poll (1 us later).
                let at = w.aperture(g) + FREE * 4096;
                let mut cmds = fills(&w, g, 8);
                cmds.extend(sdi(at, i));
                tails.push(w.queue(g, Engine::Blitter, &cmds));
            }
        }
        let mut heads = [Vec::new(), Vec::new()];
        while w.guests.iter().any(|g| !g.vgpu.is_idle()) {
            w.step();
            for g in 0..2 {
                let head = w.guests[g].vgpu.ring(Engine::Blitter).head;
                if heads[g].last().copied().unwrap_or(0) != head {
                    // Completed up to here: its store, and no later one.
                    let done = tails[g].iter().position(|&t| t == head).unwrap();
                    assert_eq!(w.read(g, FREE, 0) as usize, done, "vGPU {g}");
                    heads[g].push(head);
                }
            }
        }
        for g in 0..2 {
            // The queue's room less one span one by one, the last five as
            // one.
            let mut want = tails[g][..MAX_QUEUED_TAILS - 1].to_vec();
            want.push(tails[g][spans as usize - 1]);
            assert_eq!(heads[g], want, "vGPU {g}");
            assert_eq!(w.read(g, FREE, 0), spans - 1);
        }
    }

    /// A rejected dispatch stops only its vGPU; the turn goes on to the
    /// next vGPU in the same poll.
    #[test]
    fn a_rejection_passes_the_turn_on() {
        let mut w = world(2);
        let victim = w.aperture(1) + DATA * 4096;
        w.queue(0, Engine::Blitter, &flush_dw_imm(victim, 0xbad));
        let own = w.aperture(1) + (DATA + 1) * 4096;
        w.queue(1, Engine::Blitter, &flush_dw_imm(own, 1));
        let r = w.step();
        assert_eq!(r.dispatched, 1);
        assert!(matches!(
            w.guests[0].vgpu.state(),
            crate::vgpu::VgpuState::Failed(crate::vgpu::FailReason::Rejected(_))
        ));
        assert!(w.guests[0].vgpu.is_idle());
        while !w.guests[1].vgpu.is_idle() {
            w.step();
        }
        assert_eq!(w.read(1, DATA + 1, 0), 1);
        assert_eq!(w.read(1, DATA, 0), 0);
    }

    /// The charge is the engine time the submission took (from the model's
    /// end, not the poll that saw it), and `forget` clears a slot.
    #[test]
    fn usage_is_the_engine_time_and_forget_clears_it() {
        let mut w = world(1);
        let cmds = fills(&w, 0, 8);
        w.queue(0, Engine::Blitter, &cmds);
        w.step();
        // Seen ended a while later.
        w.now_ns += 5_000_000;
        w.step();
        let usage = w.sched.usage(w.id(0));
        assert_eq!(usage.submissions, 1);
        assert_eq!(usage.busy_ns, crate::sim::cost_ns(2, 8 * 4096));
        assert_eq!(w.sched.share_permille(w.id(0)), 1000);
        assert_eq!(
            w.sched.engine_share_permille(w.id(0), Engine::Blitter),
            1000
        );
        assert_eq!(w.sched.engine_share_permille(w.id(0), Engine::Render), 0);
        w.sched.forget(w.id(0));
        assert_eq!(w.sched.usage(w.id(0)), Usage::default());
        assert_eq!(w.sched.share_permille(w.id(0)), 0);
    }

    /// A TAIL write only queues; the poll that dispatches runs nothing of
    /// it at once, and its end (HEAD, idle, the charge) arrives in a later
    /// poll, once the model time of its commands has passed, not before.
    #[test]
    fn completion_arrives_in_a_later_poll_once_its_model_time_passed() {
        let mut w = world(1);
        let fence = w.aperture(0) + FREE * 4096;
        let mut cmds = fills(&w, 0, 8);
        cmds.extend(flush_dw_imm(fence, 5));
        let tail = w.queue(0, Engine::Blitter, &cmds);
        let t0 = 1_000_000;
        // The fill, the fence, the NOOP that pads the span.
        let end = t0 + crate::sim::cost_ns(3, 8 * 4096);
        let poll = |w: &mut World, at: u64| {
            let r = w.sched.poll(at, &mut w.gpu, &mut *w.gate, &mut w.guests);
            assert_eq!(r.monitor_fault, None);
            r
        };
        // Queued, not started: nothing before the first poll.
        assert_eq!(w.guests[0].vgpu.queued(Engine::Blitter), 1);
        let r = poll(&mut w, t0);
        assert_eq!((r.dispatched, r.ended), (1, 0));
        assert!(w.guests[0].vgpu.in_flight(Engine::Blitter).is_some());
        assert_eq!(w.read(0, FREE, 0), 0, "the fence came with the dispatch");
        for at in [t0 + 1, end - 1] {
            let r = poll(&mut w, at);
            assert_eq!(r.ended, 0, "ended at {at} ns, before its cost ({end} ns)");
            assert!(!w.guests[0].vgpu.is_idle());
            assert_eq!(w.guests[0].vgpu.ring(Engine::Blitter).head, 0);
            assert_eq!(w.sched.usage(w.id(0)).submissions, 0);
        }
        let r = poll(&mut w, end);
        assert_eq!(r.ended, 1);
        assert!(w.guests[0].vgpu.is_idle());
        assert_eq!(w.guests[0].vgpu.ring(Engine::Blitter).head, tail);
        assert_eq!(w.read(0, FREE, 0), 5);
        assert_eq!(w.sched.usage(w.id(0)).busy_ns, end - t0);
    }

    /// Bytes of the blitter's shadow ring in GM (where `scan_gate` placed
    /// it: the engine's area at the bottom of the monitor's hidden slice).
    fn blitter_shadow(w: &mut World) -> Vec<u8> {
        let hidden =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap()
                .monitor()
                .hidden;
        let at = hidden.base().raw()
            + Engine::Blitter.index() as u64 * crate::mediate::SHADOW_BYTES_PER_ENGINE;
        let mut bytes = vec![0u8; crate::mediate::SHADOW_RING_BYTES as usize];
        let at = crate::addr::HostGm::new(at).unwrap();
        w.gpu.read_gm(at, &mut bytes).unwrap();
        bytes
    }

    /// Four vGPUs keep work queued on the one blitter: while a submission
    /// runs, the shadow ring the engine reads stays as it was dispatched,
    /// whoever queues what meanwhile; only the dispatch after its end
    /// rewrites it.
    #[test]
    fn queued_work_never_rewrites_the_shadow_the_engine_reads() {
        let mut w = world(4);
        let mut running: Option<(SubmissionId, Vec<u8>)> = None;
        let mut dispatches = 0;
        let mut checked = 0;
        while w.now_ns < 5_000_000 {
            for g in 0..4 {
                if w.guests[g].vgpu.queued(Engine::Blitter) < 2 {
                    // 4 to 28 pages: several polls each.
                    let cmds = fills(&w, g, 4 + 8 * g as u32);
                    w.queue(g, Engine::Blitter, &cmds);
                }
            }
            // The shadow is compared before anything else is checked.
            let r = w
                .sched
                .poll(w.now_ns, &mut w.gpu, &mut *w.gate, &mut w.guests);
            w.now_ns += STEP_NS;
            let now = w
                .guests
                .iter()
                .find_map(|g| g.vgpu.in_flight(Engine::Blitter));
            let shadow = blitter_shadow(&mut w);
            match (&running, now) {
                (Some((before, bytes)), Some(id)) if *before == id => {
                    assert!(
                        *bytes == shadow,
                        "the shadow changed under submission {id:?}"
                    );
                    checked += 1;
                }
                (_, Some(id)) => {
                    dispatches += 1;
                    running = Some((id, shadow));
                }
                (_, None) => running = None,
            }
            assert_eq!(r.monitor_fault, None);
        }
        assert!(dispatches > 100 && checked > 1000, "{dispatches} {checked}");
        for g in 0..4 {
            assert!(w.sched.usage(w.id(g)).submissions > 10, "vGPU {g}");
        }
    }

    /// A vGPU that fails with work queued (its next span is rejected at
    /// dispatch) drops the rest of its queue: what it queued after never
    /// runs, it is idle at once, and the other vGPUs' work goes on, taking
    /// the engine time it would have had.
    #[test]
    fn a_failed_vgpus_queue_is_dropped_while_the_others_go_on() {
        let mut w = world(2);
        let own = w.aperture(0) + FREE * 4096;
        let victim = w.aperture(1) + (FREE + 1) * 4096;
        let first = fills(&w, 0, 64);
        w.queue(0, Engine::Blitter, &first);
        w.queue(0, Engine::Blitter, &flush_dw_imm(victim, 0xbad));
        w.queue(0, Engine::Blitter, &flush_dw_imm(own, 0x600d));
        assert_eq!(w.guests[0].vgpu.queued(Engine::Blitter), 3);
        let mut seq = 0u32;
        let fence = w.aperture(1) + FREE * 4096;
        let mut failed_at = None;
        while w.now_ns < 20_000_000 {
            if w.guests[1].vgpu.queued(Engine::Blitter) == 0 {
                seq += 1;
                let mut cmds = fills(&w, 1, 16);
                cmds.extend(flush_dw_imm(fence, seq));
                w.queue(1, Engine::Blitter, &cmds);
            }
            w.step();
            if failed_at.is_none() {
                if let crate::vgpu::VgpuState::Failed(reason) = w.guests[0].vgpu.state() {
                    assert!(
                        matches!(reason, crate::vgpu::FailReason::Rejected(_)),
                        "{reason}"
                    );
                    failed_at = Some(w.sched.usage(w.id(1)).busy_ns);
                }
            }
            if failed_at.is_some() {
                let v = &w.guests[0].vgpu;
                assert_eq!(v.queued(Engine::Blitter), 0, "its queue was kept");
                assert!(v.is_idle() || v.in_flight(Engine::Blitter).is_some());
            }
        }
        let busy_before = failed_at.expect("vGPU 0 never failed");
        // Its first span ran (64 pages), the rejected one and the one after
        // it never did.
        assert_eq!(w.read(0, DATA, 4092), 0x7000_0000 | 8);
        assert_eq!(w.read(1, FREE + 1, 0), 0, "the rejected store ran");
        assert_eq!(w.read(0, FREE, 0), 0, "work queued after the rejection ran");
        assert!(w.guests[0].vgpu.is_idle());
        assert_eq!(w.sched.usage(w.id(0)).submissions, 1);
        // vGPU 1 had the engine from then on.
        assert!(w.read(1, FREE, 0) > 500, "vGPU 1 stalled at {seq}");
        let busy = w.sched.usage(w.id(1)).busy_ns;
        assert!(busy - busy_before > 15_000_000, "{busy_before} -> {busy}");
    }

    /// Under the scheduler each vGPU's submissions run on its own engine
    /// context, whatever interleaves with them: a register one vGPU loads
    /// is what it reads back in its next submission, after another vGPU
    /// loaded the same register in between, and the other reads its own.
    #[test]
    fn interleaved_vgpus_each_keep_their_own_engine_registers() {
        let mut w = world(2);
        // Turns pass after every submission: the spans interleave.
        w.sched = Scheduler::new(1);
        let gpr = Engine::Render.mmio_base() + ring::GPR_BASE;
        // Each span takes 4 us (40 NOOPs first), so that each poll sees
        // which runs.
        let span = |cmd: &[u32]| [vec![NOOP; 40].as_slice(), cmd].concat();
        for g in 0..2 {
            w.queue(g, Engine::Render, &span(&lri(gpr, 0x1000 + g as u32)));
        }
        for g in 0..2 {
            let out = w.aperture(g) + FREE * 4096;
            w.queue(g, Engine::Render, &span(&srm(gpr, out)));
        }
        let mut order = Vec::new();
        while w.guests.iter().any(|g| !g.vgpu.is_idle()) {
            w.step();
            for g in 0..2 {
                if w.guests[g].vgpu.in_flight(Engine::Render).is_some() && order.last() != Some(&g)
                {
                    order.push(g);
                }
            }
        }
        assert_eq!(order, [0, 1, 0, 1], "the spans did not interleave");
        for g in 0..2 {
            assert_eq!(w.read(g, FREE, 0), 0x1000 + g as u32, "vGPU {g}");
        }
    }

    /// Work queued before the engine went idle starts the moment it did,
    /// however late the next poll comes (as hardware starts the context in
    /// its second execlist port): the engine does not idle while work
    /// waits. Work queued later starts no earlier than the poll that first
    /// saw it.
    #[test]
    fn queued_work_runs_back_to_back_between_polls() {
        let mut w = world(2);
        let cost = crate::sim::cost_ns(2, 8 * 4096);
        let first = fills(&w, 0, 8);
        w.queue(0, Engine::Blitter, &first);
        let second = fills(&w, 1, 8);
        w.queue(1, Engine::Blitter, &second);
        w.queue(0, Engine::Blitter, &first);
        let t0 = 1_000_000;
        let poll = |w: &mut World, at: u64| {
            let r = w.sched.poll(at, &mut w.gpu, &mut *w.gate, &mut w.guests);
            assert_eq!(r.monitor_fault, None);
            r
        };
        assert_eq!(poll(&mut w, t0).dispatched, 1);
        // One poll long after: all three ran, one after the other.
        let r = poll(&mut w, t0 + 100 * cost);
        assert_eq!((r.ended, r.dispatched), (3, 2));
        assert!(w.guests.iter().all(|g| g.vgpu.is_idle()));
        assert_eq!(w.sched.usage(w.id(0)).busy_ns, 2 * cost);
        assert_eq!(w.sched.usage(w.id(1)).busy_ns, cost);
        let last = w.gpu.finished_at_ns(Engine::Blitter, SubmissionId(3));
        assert_eq!(last, Some(t0 + 3 * cost), "the engine idled between them");
        // Queued after the engine went idle: from the poll that saw it.
        let t1 = t0 + 200 * cost;
        w.queue(1, Engine::Blitter, &second);
        poll(&mut w, t1);
        poll(&mut w, t1 + 100 * cost);
        let late = w.gpu.finished_at_ns(Engine::Blitter, SubmissionId(4));
        assert_eq!(late, Some(t1 + cost), "it started before it was seen");
    }
}
