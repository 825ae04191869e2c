//! Where a workload frame's time goes on the mediated path (host). The
//! software GPU's clock is the host's, as the monitor's is its TSC: a
//! frame takes at least its GPU work's model time.
use gpu::addr::{GuestPage, HostGgttIndex, HostGmRange, PhysAddr, PhysFrame};
use gpu::backend::{Backend, PhysMem, PhysMemError};
use gpu::engine::Engine;
use gpu::ggtt::{HostPte, PteFlags};
use gpu::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use gpu::partition::{GmLayout, PartitionAllocator, VgpuType};
use gpu::sched::Scheduler;
use gpu::sim::SimGpu;
use gpu::vgpu::{AccessSize, FrameRun, FrameRuns, MmioEffect, Vgpu, VgpuError};
use guest::{Driver, Kind, Platform, Workload};
use std::time::Instant;

struct Flat(Vec<u8>);
impl PhysMem for Flat {
    fn read(&self, a: PhysAddr, b: &mut [u8]) -> Result<(), PhysMemError> {
        let i = a.raw() as usize;
        if i + b.len() > self.0.len() {
            return Err(PhysMemError { addr: a });
        }
        b.copy_from_slice(&self.0[i..i + b.len()]);
        Ok(())
    }
    fn write(&mut self, a: PhysAddr, d: &[u8]) -> Result<(), PhysMemError> {
        let i = a.raw() as usize;
        if i + d.len() > self.0.len() {
            return Err(PhysMemError { addr: a });
        }
        self.0[i..i + d.len()].copy_from_slice(d);
        Ok(())
    }
}
struct G {
    gpu: SimGpu<Flat>,
    gate: Box<ScanGate>,
    v: Vgpu,
    ram: FrameRuns<4>,
    sched: Scheduler,
    start: Instant,
}
impl G {
    fn poll(&mut self) {
        let now = self.start.elapsed().as_nanos() as u64;
        let vgpus = core::slice::from_mut(&mut self.v);
        self.sched.poll(now, &mut self.gpu, &mut *self.gate, vgpus);
    }
}
const RAM_FRAME: u64 = 0x4000;
impl Platform for G {
    type Error = VgpuError;
    fn mmio_read32(&mut self, o: u32) -> Result<u32, VgpuError> {
        Ok(self
            .v
            .mmio_read(&mut self.gpu, &self.ram, o, AccessSize::Dword)? as u32)
    }
    fn mmio_write32(&mut self, o: u32, x: u32) -> Result<(), VgpuError> {
        if let MmioEffect::Queued(_) =
            self.v
                .mmio_write(&mut self.gpu, &self.ram, o, AccessSize::Dword, x.into())?
        {
            self.poll();
        }
        Ok(())
    }
    fn mmio_write64(&mut self, o: u32, x: u64) -> Result<(), VgpuError> {
        let _ = self
            .v
            .mmio_write(&mut self.gpu, &self.ram, o, AccessSize::Qword, x)?;
        Ok(())
    }
    fn ram_read(&mut self, p: u64, o: usize, out: &mut [u8]) -> Result<(), VgpuError> {
        self.gpu
            .mem()
            .read(
                PhysAddr::new((RAM_FRAME + p - 0x100) * 4096 + o as u64).unwrap(),
                out,
            )
            .unwrap();
        Ok(())
    }
    fn ram_write(&mut self, p: u64, o: usize, d: &[u8]) -> Result<(), VgpuError> {
        self.gpu
            .mem_mut()
            .write(
                PhysAddr::new((RAM_FRAME + p - 0x100) * 4096 + o as u64).unwrap(),
                d,
            )
            .unwrap();
        Ok(())
    }
    fn aperture_write(&mut self, index: u64, o: usize, d: &[u8]) -> Result<(), VgpuError> {
        self.v
            .aperture_write(&mut self.gpu, index, o, d)
            .unwrap_or_else(|e| panic!("aperture page {index}: {e}"));
        Ok(())
    }
    fn pause(&mut self) -> Result<(), VgpuError> {
        self.poll();
        match self.v.state() {
            gpu::vgpu::VgpuState::Failed(r) => Err(VgpuError::Stopped(r)),
            gpu::vgpu::VgpuState::Running => Ok(()),
        }
    }
}
fn main() {
    let pages = 16384u64;
    let table = 0x20_0000u64;
    let mem = Flat(vec![0u8; 256 << 20]);
    let mut gpu = SimGpu::new(mem, PhysAddr::new(table).unwrap()).unwrap();
    let mut alloc =
        PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE).unwrap();
    let hidden = alloc.monitor().hidden;
    let bytes = SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64;
    for i in 0..bytes / 4096 {
        let f = gpu.write_pte(
            HostGgttIndex::new((hidden.base().raw() >> 12) + i).unwrap(),
            HostPte::map(PhysFrame::new(0x1000 + i).unwrap(), PteFlags::NONE),
        );
        gpu.flush_ggtt(f);
    }
    let mut gate = Box::new(ScanGate::new());
    assert!(gate.place(HostGmRange::new(hidden.base(), bytes).unwrap()));
    let part = alloc.allocate(VgpuType::Small).unwrap();
    let mut ram = FrameRuns::new();
    ram.push(FrameRun {
        first_page: GuestPage::new(0x100).unwrap(),
        first_frame: PhysFrame::new(RAM_FRAME).unwrap(),
        count: pages,
    })
    .unwrap();
    let mut g = G {
        gpu,
        gate,
        v: Vgpu::new(&part),
        ram,
        sched: Scheduler::default(),
        start: Instant::now(),
    };
    let t = Instant::now();
    let d = Driver::probe(&mut g, 0x100, pages).unwrap();
    let mut w = Workload::boot(&mut g, d, Kind::Game3d, 1).unwrap();
    println!("boot {:?}", t.elapsed());
    let t = Instant::now();
    for _ in 0..100 {
        w.step(&mut g).unwrap();
    }
    println!(
        "100 frames {:?} ({} writes/frame, {} us of GPU time)",
        t.elapsed(),
        w.writes_per_frame(),
        g.sched.usage(g.v.id()).busy_ns / 1000
    );
}
