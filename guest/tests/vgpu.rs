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
use gpu::backend::{Backend, PhysMem, PhysMemError};
use gpu::engine::Engine;
use gpu::ggtt::{HostPte, PteFlags};
use gpu::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use gpu::partition::{GmLayout, Partition, PartitionAllocator, VgpuType};
use gpu::sched::Scheduler;
use gpu::sim::SimGpu;
use gpu::vgpu::{AccessSize, FrameRun, FrameRuns, MmioEffect, Vgpu, VgpuError};
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

fn guest(w: &mut World, first_frame: u64, pages: u64) -> Guest<'_> {
    let partition = w.alloc.allocate(VgpuType::Small).unwrap();
    gpu::vgpu::scrub_partition(&mut w.gpu, &partition);
    Guest {
        vgpu: Vgpu::new(&partition),
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
