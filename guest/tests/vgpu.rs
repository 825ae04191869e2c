//! The guest driver and workloads on the real mediated path, on the host:
//! a `gpu::Vgpu` (trapped BAR0, PVINFO, GGTT window), the command scanner
//! (`ScanGate`), the scheduler and the software GPU (`SimGpu`, whose work
//! takes model time: the guest waits for its fences) over a sparse memory,
//! and
//! a live migration of the guest onto other slices and frames (device
//! state saved and restored with remapping, RAM copied, the guest's state
//! blob carried over) in the middle of its run.

use std::collections::BTreeMap;

use gpu::addr::{GuestPage, HostGgttIndex, HostGmRange, PhysAddr, PhysFrame};
use gpu::backend::{Backend, FaultKind, PhysMem, PhysMemError};
use gpu::engine::Engine;
use gpu::ggtt::{HostPte, PteFlags};
use gpu::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use gpu::partition::{GmLayout, Partition, PartitionAllocator, VgpuType};
use gpu::sched::Scheduler;
use gpu::sim::SimGpu;
use gpu::vgpu::{
    AccessSize, FailReason, FrameRun, FrameRuns, MmioEffect, Vgpu, VgpuError, VgpuState,
    REFUSED_READ,
};
use guest::attack::{self, Arena, Attacker, Class, Refusal};
use guest::{Driver, FrameReport, Kind, Platform, Workload, WorkloadError};

#[derive(Default)]
struct Sparse {
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
}

impl PhysMem for Sparse {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            match self.pages.get(&(a >> 12)) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        let mut done = 0;
        while done < data.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(data.len() - done);
            let p = self
                .pages
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0; 4096]));
            p[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

const GGTT_TABLE: u64 = 16 << 30;
const SHADOW_FRAMES: u64 = 0x10_0000;
/// The guest names its RAM from this page on.
const RAM_FIRST: u64 = 0x100;

struct World {
    gpu: SimGpu<Sparse>,
    gate: Box<ScanGate>,
    alloc: PartitionAllocator,
    sched: Scheduler,
    /// The model's clock: each pause of the guest lets this much pass.
    now_ns: u64,
}

/// Model time a guest's pause lets pass.
const PAUSE_NS: u64 = 5_000;

fn map(gpu: &mut SimGpu<Sparse>, gm: u64, frame: u64, pages: u64) {
    for i in 0..pages {
        let pte = HostPte::map(PhysFrame::new(frame + i).unwrap(), PteFlags::NONE);
        let index = HostGgttIndex::new((gm >> 12) + i).unwrap();
        let flush = gpu.write_pte(index, pte);
        gpu.flush_ggtt(flush);
    }
}

fn world() -> World {
    let mut gpu = SimGpu::new(Sparse::default(), PhysAddr::new(GGTT_TABLE).unwrap()).unwrap();
    let alloc =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let hidden = alloc.monitor().hidden;
    let bytes = SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64;
    map(&mut gpu, hidden.base().raw(), SHADOW_FRAMES, bytes / 4096);
    let mut gate = Box::new(ScanGate::new());
    assert!(gate.place(HostGmRange::new(hidden.base(), bytes).unwrap()));
    World {
        gpu,
        gate,
        alloc,
        sched: Scheduler::default(),
        now_ns: 0,
    }
}

/// One guest: its vGPU and its RAM frames.
struct Guest<'w> {
    w: &'w mut World,
    vgpu: Vgpu,
    partition: Partition,
    ram: FrameRuns<4>,
    first_frame: u64,
}

impl Guest<'_> {
    fn frame(&self, page: u64) -> u64 {
        self.first_frame + (page - RAM_FIRST)
    }

    /// One scheduler poll at the model's time.
    fn poll(&mut self) {
        let w = &mut *self.w;
        let vgpus = core::slice::from_mut(&mut self.vgpu);
        let r = w.sched.poll(w.now_ns, &mut w.gpu, &mut *w.gate, vgpus);
        assert_eq!(r.monitor_fault, None);
    }
}

impl Platform for Guest<'_> {
    type Error = VgpuError;
    fn mmio_read32(&mut self, offset: u32) -> Result<u32, VgpuError> {
        let v = self
            .vgpu
            .mmio_read(&mut self.w.gpu, &self.ram, offset, AccessSize::Dword)?;
        Ok(v as u32)
    }
    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), VgpuError> {
        let e = self.vgpu.mmio_write(
            &mut self.w.gpu,
            &self.ram,
            offset,
            AccessSize::Dword,
            u64::from(value),
        )?;
        if let MmioEffect::Queued(_) = e {
            self.poll();
        }
        Ok(())
    }
    fn mmio_write64(&mut self, offset: u32, value: u64) -> Result<(), VgpuError> {
        let _ =
            self.vgpu
                .mmio_write(&mut self.w.gpu, &self.ram, offset, AccessSize::Qword, value)?;
        Ok(())
    }
    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), VgpuError> {
        let at = PhysAddr::new(self.frame(page) * 4096 + offset as u64).unwrap();
        self.w.gpu.mem().read(at, out).unwrap();
        Ok(())
    }
    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        let at = PhysAddr::new(self.frame(page) * 4096 + offset as u64).unwrap();
        self.w.gpu.mem_mut().write(at, data).unwrap();
        Ok(())
    }
    fn aperture_write(&mut self, index: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        self.vgpu
            .aperture_write(&mut self.w.gpu, index, offset, data)
            .unwrap_or_else(|e| panic!("aperture page {index}: {e}"));
        Ok(())
    }
    fn pause(&mut self) -> Result<(), VgpuError> {
        self.w.now_ns += PAUSE_NS;
        self.poll();
        match self.vgpu.state() {
            gpu::vgpu::VgpuState::Failed(r) => Err(VgpuError::Stopped(r)),
            gpu::vgpu::VgpuState::Running => Ok(()),
        }
    }
}

fn ram(first_frame: u64, pages: u64) -> FrameRuns<4> {
    let mut r = FrameRuns::new();
    r.push(FrameRun {
        first_page: GuestPage::new(RAM_FIRST).unwrap(),
        first_frame: PhysFrame::new(first_frame).unwrap(),
        count: pages,
    })
    .unwrap();
    r
}

/// A vGPU's shadow PPGTT pool, as the kernel gives one (its own frames,
/// apart from every guest's RAM).
fn with_ppgtt(mut vgpu: Vgpu, gpu: &mut SimGpu<Sparse>, first_frame: u64) -> Vgpu {
    let pool = PhysFrame::new(0x100_0000 + first_frame).unwrap();
    vgpu.enable_ppgtt(pool, gpu::vgpu::SHADOW_TABLES, gpu)
        .unwrap();
    vgpu
}

fn guest(w: &mut World, first_frame: u64, pages: u64) -> Guest<'_> {
    let partition = w.alloc.allocate(VgpuType::Small).unwrap();
    gpu::vgpu::scrub_partition(&mut w.gpu, &partition);
    Guest {
        vgpu: with_ppgtt(Vgpu::new(&partition), &mut w.gpu, first_frame),
        partition,
        ram: ram(first_frame, pages),
        first_frame,
        w,
    }
}

fn run(g: &mut Guest<'_>, wl: &mut Workload, frames: u64) -> Vec<FrameReport> {
    (0..frames)
        .map(|_| wl.step(g).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn every_kind_runs_and_checks_itself_on_the_mediated_path() {
    for kind in Kind::ALL {
        let mut w = world();
        let mut g = guest(&mut w, 0x1_0000, 2048);
        let d = Driver::probe(&mut g, RAM_FIRST, 2048).unwrap();
        let mut wl = Workload::boot(&mut g, d, kind, 7).unwrap();
        let reports = run(&mut g, &mut wl, 20);
        assert!(
            reports.iter().all(|r| r.gpu_writes > 0 && r.checked >= 2),
            "{kind}"
        );
        assert_eq!(wl.frame(), 20);
        assert!(wl.check_all(&mut g).unwrap() > 1900, "{kind}");
    }
}

#[test]
fn a_working_set_larger_than_the_aperture_spills_into_the_hidden_slice() {
    let mut w = world();
    // 96 MiB: more than a small vGPU's 64 MiB aperture.
    let pages = 96 * 256;
    let mut g = guest(&mut w, 0x20_0000, pages);
    let d = Driver::probe(&mut g, RAM_FIRST, pages).unwrap();
    assert!(d.gm(pages - 1) >= g.vgpu.translation().guest_view().hidden.base().raw());
    let mut wl = Workload::boot(&mut g, d, Kind::Video, 3).unwrap();
    run(&mut g, &mut wl, 3);
    wl.check_all(&mut g).unwrap();
}

#[test]
fn a_page_changed_behind_the_guests_back_is_found() {
    let mut w = world();
    let mut g = guest(&mut w, 0x1_0000, 2048);
    let d = Driver::probe(&mut g, RAM_FIRST, 2048).unwrap();
    let mut wl = Workload::boot(&mut g, d, Kind::Desktop2d, 5).unwrap();
    run(&mut g, &mut wl, 2);
    // One byte of some cold page flips.
    let page = RAM_FIRST + 1500;
    let mut b = [0u8; 1];
    g.ram_read(page, 100, &mut b).unwrap();
    g.ram_write(page, 100, &[b[0] ^ 1]).unwrap();
    match wl.check_all(&mut g) {
        Err(WorkloadError::Corrupt {
            page: p, offset, ..
        }) => {
            assert_eq!((p, offset), (page, 100));
        }
        other => panic!("{other:?}"),
    }
}

/// Moves the guest to a new vGPU on other slices and other frames, as a
/// live migration's destination sees it at the stop: RAM copied, device
/// state restored with remapping, the workload itself carried (in a ring-3
/// guest it is the guest's memory and registers, which migrate whole).
fn migrate<'w>(g: Guest<'w>, wl: &Workload, new_frame: u64) -> (Guest<'w>, Workload) {
    let pages = wl.driver().ram_pages();
    // The source stops its guest and lets the scheduler finish what it
    // queued (save refuses a busy vGPU).
    let mut g = g;
    while !g.vgpu.is_idle() {
        g.w.now_ns += PAUSE_NS;
        g.poll();
    }
    let mut blob = vec![0u8; 4 << 20];
    let len = g.vgpu.save(&mut g.w.gpu, &g.ram, &mut blob).unwrap();
    let Guest { w, first_frame, .. } = g;
    let partition = w.alloc.allocate(VgpuType::Small).unwrap();
    gpu::vgpu::scrub_partition(&mut w.gpu, &partition);
    let mut page = [0u8; 4096];
    for i in 0..pages {
        let from = PhysAddr::new((first_frame + i) * 4096).unwrap();
        let to = PhysAddr::new((new_frame + i) * 4096).unwrap();
        w.gpu.mem().read(from, &mut page).unwrap();
        w.gpu.mem_mut().write(to, &page).unwrap();
    }
    let ram = ram(new_frame, pages);
    let vgpu = Vgpu::restore(&blob[..len], &partition, &mut w.gpu, &ram).unwrap();
    let vgpu = with_ppgtt(vgpu, &mut w.gpu, new_frame);
    let g = Guest {
        w,
        vgpu,
        partition,
        ram,
        first_frame: new_frame,
    };
    (g, wl.clone())
}

#[test]
fn a_migrated_guest_goes_on_with_the_same_frames_and_checksums() {
    // The PPGTT renderer too: its draws are in PPGTT batches whose
    // addresses (state base, surfaces, fence) are PPGTT addresses, which
    // the move to other slices leaves alone; its PPGTT maps guest RAM,
    // which moved to other frames under a fresh shadow.
    for kind in Kind::ALL {
        let reference: Vec<FrameReport> = {
            let mut w = world();
            let mut g = guest(&mut w, 0x1_0000, 4096);
            let d = Driver::probe(&mut g, RAM_FIRST, 4096).unwrap();
            let mut wl = Workload::boot(&mut g, d, kind, 11).unwrap();
            run(&mut g, &mut wl, 30)
        };
        let mut w = world();
        let mut g = guest(&mut w, 0x1_0000, 4096);
        let d = Driver::probe(&mut g, RAM_FIRST, 4096).unwrap();
        let mut wl = Workload::boot(&mut g, d, kind, 11).unwrap();
        let mut got = run(&mut g, &mut wl, 12);
        let old = g.partition.aperture();
        let (mut g, mut wl) = migrate(g, &wl, 0x8_0000);
        assert_ne!(
            g.partition.aperture(),
            old,
            "the destination has other slices"
        );
        got.extend(run(&mut g, &mut wl, 18));
        assert_eq!(got, reference, "{kind}");
        wl.check_all(&mut g).unwrap();
    }
}

/// The hostile guest's machine: its refused BAR0 accesses complete as the
/// monitor completes them for a ring-3 guest (`kernel/src/vm/guest.rs`):
/// a store is dropped (the vGPU has stopped), a load reads
/// `REFUSED_READ`; `settle` lets model time pass until the vGPU is idle
/// or stopped.
struct Hostile<'g, 'w> {
    g: &'g mut Guest<'w>,
    declared: Vec<Class>,
}

impl Hostile<'_, '_> {
    fn complete<T>(r: Result<T, VgpuError>, refused: T) -> Result<T, VgpuError> {
        match r {
            Err(e) if e.is_guest_fault() => Ok(refused),
            other => other,
        }
    }
}

impl Platform for Hostile<'_, '_> {
    type Error = VgpuError;
    fn mmio_read32(&mut self, offset: u32) -> Result<u32, VgpuError> {
        Self::complete(self.g.mmio_read32(offset), REFUSED_READ as u32)
    }
    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), VgpuError> {
        Self::complete(self.g.mmio_write32(offset, value), ())
    }
    fn mmio_write64(&mut self, offset: u32, value: u64) -> Result<(), VgpuError> {
        Self::complete(self.g.mmio_write64(offset, value), ())
    }
    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), VgpuError> {
        self.g.ram_read(page, offset, out)
    }
    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        self.g.ram_write(page, offset, data)
    }
    fn aperture_write(&mut self, index: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        self.g.aperture_write(index, offset, data)
    }
    fn pause(&mut self) -> Result<(), VgpuError> {
        self.g.pause()
    }
}

impl Arena for Hostile<'_, '_> {
    fn declare(&mut self, class: Class) -> Result<(), VgpuError> {
        self.declared.push(class);
        Ok(())
    }
    fn settle(&mut self) -> Result<bool, VgpuError> {
        loop {
            self.g.w.now_ns += PAUSE_NS;
            self.g.poll();
            if let gpu::vgpu::VgpuState::Failed(_) = self.g.vgpu.state() {
                return Ok(true);
            }
            if self.g.vgpu.is_idle() {
                return Ok(false);
            }
        }
    }
    fn mmio_read64(&mut self, offset: u32) -> Result<u64, VgpuError> {
        let g = &mut *self.g;
        let r = g
            .vgpu
            .mmio_read(&mut g.w.gpu, &g.ram, offset, AccessSize::Qword);
        Self::complete(r, REFUSED_READ)
    }
    fn mmio_write64_unchecked(&mut self, offset: u32, value: u64) -> Result<(), VgpuError> {
        self.mmio_write64(offset, value)
    }
}

/// Every stream and device attempt of the hostile guest, on the mediated
/// path (vGPU, scheduler, scanner, software GPU), aimed at a workload
/// guest's bookkeeping page: each is refused by the party its class
/// names (the scanner's rejection, or the vGPU's refusal of the access),
/// each stream's benign twin passes the scanner (and runs, where the
/// software GPU models its commands), the attacker's vGPU works
/// again after each reset, and the workload guest beside it finds every
/// page as its bookkeeping says, and runs on.
#[test]
fn the_hostile_guests_attempts_are_refused_and_its_neighbour_keeps_its_pages() {
    let mut w = world();
    let mut victim = guest(&mut w, 0x1_0000, 2048);
    let d = Driver::probe(&mut victim, RAM_FIRST, 2048).unwrap();
    let book = d.gm(guest::driver::DATA_FIRST);
    let mut wl = Workload::boot(&mut victim, d, Kind::Desktop2d, 5).unwrap();
    run(&mut victim, &mut wl, 2);
    let Guest {
        vgpu,
        partition,
        ram,
        first_frame,
        ..
    } = victim;
    let mut g = guest(&mut w, 0x2_0000, 64);
    let mut h = Hostile {
        g: &mut g,
        declared: Vec::new(),
    };
    let mut a = Attacker::probe(&mut h, RAM_FIRST, 64, book).unwrap();
    assert_eq!(a.layout().victim, book);
    // The PPGTT attempts name the victim's first RAM frame.
    a.aim_at_frame(first_frame * 4096);
    let scratch = |h: &Hostile<'_, '_>| {
        let frame = h.g.vgpu.shadows().unwrap().tables().scratch_page();
        let mut b = [0u8; 4];
        h.g.w.gpu.mem().read(frame.start(), &mut b).unwrap();
        u32::from_le_bytes(b)
    };
    let victim_frame = |h: &Hostile<'_, '_>| {
        let mut b = vec![0u8; 4096];
        let at = PhysAddr::new(first_frame * 4096).unwrap();
        h.g.w.gpu.mem().read(at, &mut b).unwrap();
        b
    };
    let victim_before = victim_frame(&h);
    let mut made = 0;
    for class in Class::ALL {
        a.fresh(&mut h, class).unwrap();
        let zero = [0u8; 4];
        let pool = h.g.vgpu.shadows().unwrap().tables().scratch_page();
        h.g.w.gpu.mem_mut().write(pool.start(), &zero).unwrap();
        let Some(outcome) = a.attempt(&mut h, class).unwrap() else {
            continue;
        };
        made += 1;
        assert!(outcome.refused, "{class} was not refused");
        let state = h.g.vgpu.state();
        let own_context = gpu::backend::ContextId::of_vgpu(h.g.vgpu.id());
        match (class.refusal(), state) {
            (Refusal::Scanner, VgpuState::Failed(FailReason::Rejected(_))) => {}
            (Refusal::Device, VgpuState::Failed(FailReason::Guest(_))) => {}
            // A refused read stops nothing.
            (Refusal::Device, VgpuState::Running) if class == Class::GgttReadOutside => {}
            // Contained: on its scratch page, or a fault of its own context.
            (Refusal::Contained, VgpuState::Running) => {
                assert_eq!(scratch(&h), 0xc0de_0000 | class.code() as u32, "{class}");
            }
            (Refusal::Contained, VgpuState::Failed(FailReason::Gpu(f))) => {
                assert_eq!(f.context, own_context, "{class}");
                assert_eq!(scratch(&h), 0, "{class}");
            }
            _ => panic!("{class}: refused, but the vGPU is {state:?}"),
        }
        if class.refusal() == Refusal::Contained {
            // The twin lands on its own render target.
            a.fresh(&mut h, class).unwrap();
            assert!(!a.ppgtt_draw(&mut h, class, true).unwrap(), "{class} twin");
            assert_eq!(h.g.vgpu.state(), VgpuState::Running, "{class} twin");
        }
        if let Some(twin) = attack::stream(class, a.layout(), true) {
            a.fresh(&mut h, class).unwrap();
            a.run_stream(&mut h, &twin).unwrap();
            // The scanner let it through: it ran, or the software GPU
            // says it does not model it (a loud fault, never a silent
            // NOOP: XY_SETUP_BLT, XY_FAST_COPY_BLT, a depth clear).
            let state = h.g.vgpu.state();
            let unmodelled = |f: &gpu::backend::GpuFault| matches!(f.kind, FaultKind::Unmodeled(_));
            match state {
                VgpuState::Running => {}
                VgpuState::Failed(FailReason::Gpu(f)) if unmodelled(&f) => {}
                _ => panic!("{class}: the twin stopped the vGPU: {state:?}"),
            }
        }
    }
    assert_eq!(made, Class::ALL.len() - 2, "all but the CPU classes");
    assert_eq!(h.declared.len(), made);
    assert_eq!(
        victim_frame(&h),
        victim_before,
        "the victim's frame changed"
    );
    drop(h);
    drop(g);
    let mut victim = Guest {
        w: &mut w,
        vgpu,
        partition,
        ram,
        first_frame,
    };
    run(&mut victim, &mut wl, 2);
    assert!(wl.check_all(&mut victim).unwrap() > 1900);
    let checked = guest::workload::verify(&mut victim, RAM_FIRST, 2048, Kind::Desktop2d, 5);
    assert_eq!(checked, Ok(wl.check_all(&mut victim).unwrap()));
}

/// The monitor's own check of a guest's pages (`guest::workload::verify`)
/// passes on an untouched guest and names a page changed behind its back.
#[test]
fn verify_checks_every_data_page_against_the_bookkeeping() {
    let mut w = world();
    let mut g = guest(&mut w, 0x1_0000, 2048);
    let d = Driver::probe(&mut g, RAM_FIRST, 2048).unwrap();
    let mut wl = Workload::boot(&mut g, d, Kind::Video, 9).unwrap();
    run(&mut g, &mut wl, 3);
    let all = wl.check_all(&mut g).unwrap();
    assert_eq!(
        guest::workload::verify(&mut g, RAM_FIRST, 2048, Kind::Video, 9),
        Ok(all)
    );
    let page = RAM_FIRST + 1000;
    g.ram_write(page, 7, &[0xa5]).unwrap();
    match guest::workload::verify(&mut g, RAM_FIRST, 2048, Kind::Video, 9) {
        Err(WorkloadError::Corrupt {
            page: p, offset, ..
        }) => assert_eq!((p, offset), (page, 7)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_ppgtt_renderer_draws_through_surface_states_in_its_own_ppgtt() {
    let mut w = world();
    let mut g = guest(&mut w, 0x1_0000, 2048);
    let d = Driver::probe(&mut g, RAM_FIRST, 2048).unwrap();
    let mut wl = Workload::boot(&mut g, d, Kind::Render3d, 9).unwrap();
    run(&mut g, &mut wl, 8);
    assert!(wl.driver().uses_execlists(Engine::Render));
    assert!(g.vgpu.execlist(Engine::Render).enabled);
    assert!(!g.vgpu.execlist(Engine::Blitter).enabled);
    // Its PPGTT is shadowed: PML4, PDP, and a PD and PT on each side of
    // 4 GiB (the driver's pages and the state page below, the render
    // targets above).
    let tables = g.vgpu.shadows().unwrap().tables().tables_in_use();
    assert_eq!(tables, 6);
    // Draws cleared render targets to solid colours, each the one its
    // bookkeeping names (check_all), at least 16 distinct pages.
    let hot_start = (0..2048)
        .map(|i| RAM_FIRST + guest::driver::DATA_FIRST + i)
        .collect::<Vec<_>>();
    let solid = hot_start
        .iter()
        .filter(|&&page| {
            let mut b = [0u8; 4096];
            g.ram_read(page, 0, &mut b).unwrap();
            let first = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            first >= guest::content::SOLID_FIRST
                && first != u32::MAX
                && b.chunks_exact(4).all(|c| c == first.to_le_bytes())
        })
        .count();
    assert!(solid >= 8, "{solid} solid pages");
    assert!(wl.check_all(&mut g).unwrap() > 1900);
    // Without its shadow pool the vGPU refuses the context: the same
    // guest's first frame fails.
    let mut w = world();
    let mut g = guest(&mut w, 0x1_0000, 2048);
    let partition = g.partition;
    g.vgpu = Vgpu::new(&partition);
    let d = Driver::probe(&mut g, RAM_FIRST, 2048).unwrap();
    let mut wl = Workload::boot(&mut g, d, Kind::Render3d, 9).unwrap();
    assert!(wl.step(&mut g).is_err());
}
