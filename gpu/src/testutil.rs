//! Host-test helpers: a sparse physical memory and command encoders.

use crate::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame};
use crate::backend::{Backend, EngineStatus, PhysMem, PhysMemError};
use crate::ggtt::{HostPte, PteFlags};
use crate::sim::SimGpu;
use std::collections::BTreeMap;

/// Physical memory backed by pages allocated on first touch, below `limit`.
#[derive(Debug, Default)]
pub struct SparseMem {
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
    pub limit: u64,
    /// When set, the frame of every byte written is appended.
    pub written: Option<Vec<u64>>,
}

impl SparseMem {
    pub fn new(limit: u64) -> Self {
        SparseMem {
            pages: BTreeMap::new(),
            limit,
            written: None,
        }
    }
}

impl PhysMem for SparseMem {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if addr.raw() + buf.len() as u64 > self.limit {
            return Err(PhysMemError { addr });
        }
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
        if addr.raw() + data.len() as u64 > self.limit {
            return Err(PhysMemError { addr });
        }
        if let (Some(log), Some(last)) = (&mut self.written, data.len().checked_sub(1)) {
            log.extend(addr.raw() >> 12..=(addr.raw() + last as u64) >> 12);
        }
        let mut done = 0;
        while done < data.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(data.len() - done);
            let chunk = &data[done..done + n];
            if let Some(p) = self.pages.get_mut(&(a >> 12)) {
                p[off..off + n].copy_from_slice(chunk);
            } else if chunk.iter().any(|&b| b != 0) {
                let mut p = Box::new([0u8; 4096]);
                p[off..off + n].copy_from_slice(chunk);
                self.pages.insert(a >> 12, p);
            }
            done += n;
        }
        Ok(())
    }
}

/// Where test GGTT tables live: 16 GiB, above every test frame.
pub const GGTT_TABLE: u64 = 16 << 30;

pub fn sim() -> SimGpu<SparseMem> {
    SimGpu::new(SparseMem::new(32 << 30), PhysAddr::new(GGTT_TABLE).unwrap()).unwrap()
}

/// Advances `g`'s clock a millisecond at a time until `engine` is no
/// longer busy (a bounded number of steps), and returns its state.
pub fn finish(g: &mut SimGpu<SparseMem>, engine: crate::engine::Engine) -> EngineStatus {
    for _ in 0..100_000 {
        match g.poll(engine) {
            EngineStatus::Busy { .. } => g.advance(g.now_ns() + 1_000_000),
            done => return done,
        }
    }
    panic!("{engine} still busy after 100 s of model time")
}

/// A scheduler over `vgpus` with its own model clock.
pub struct Runner {
    pub sched: crate::sched::Scheduler,
    pub now_ns: u64,
}

impl Runner {
    /// Model time one [`Runner::step`] lets pass.
    pub const STEP_NS: u64 = 10_000;

    pub fn new() -> Self {
        Runner {
            sched: crate::sched::Scheduler::default(),
            now_ns: 0,
        }
    }

    /// One scheduler poll at the current time, then time moves on.
    pub fn step<V: AsMut<Vgpu>>(
        &mut self,
        gpu: &mut dyn Backend,
        gate: &mut dyn SubmissionGate,
        vgpus: &mut [V],
    ) -> crate::sched::PollReport {
        let r = self.sched.poll(self.now_ns, gpu, gate, vgpus);
        self.now_ns += Self::STEP_NS;
        r
    }

    /// Polls until every vGPU of `vgpus` is idle (a bounded number of
    /// steps).
    pub fn run_idle<V: AsMut<Vgpu>>(
        &mut self,
        gpu: &mut dyn Backend,
        gate: &mut dyn SubmissionGate,
        vgpus: &mut [V],
    ) {
        for _ in 0..1_000_000 {
            if vgpus.iter_mut().all(|v| v.as_mut().is_idle()) {
                return;
            }
            let r = self.step(gpu, gate, vgpus);
            assert_eq!(r.monitor_fault, None);
        }
        panic!("vGPUs still busy after 10 s of model time");
    }
}

/// How a vGPU's work ended, as a synchronous submission would say it: a
/// rejection, or a guest fault met at dispatch, as the error; a GPU fault
/// (the vGPU stopped after running) is not an error of the submission.
pub fn outcome(v: &Vgpu) -> Result<(), crate::vgpu::VgpuError> {
    use crate::vgpu::{FailReason, VgpuError, VgpuState};
    match v.state() {
        VgpuState::Failed(FailReason::Rejected(r)) => Err(VgpuError::Rejected(r)),
        VgpuState::Failed(FailReason::Guest(g)) => Err(VgpuError::Guest(g)),
        _ => Ok(()),
    }
}

pub fn gm(raw: u64) -> HostGm {
    HostGm::new(raw).unwrap()
}

/// Maps `pages` pages of host GM at `gm_base` to frames starting at `frame`.
pub fn map(b: &mut dyn Backend, gm_base: u64, frame: u64, pages: u64) {
    for i in 0..pages {
        let idx = HostGgttIndex::new((gm_base >> 12) + i).unwrap();
        let f = b.write_pte(
            idx,
            HostPte::map(PhysFrame::new(frame + i).unwrap(), PteFlags::NONE),
        );
        b.flush_ggtt(f);
    }
}

pub fn range(base: u64, len: u64) -> HostGmRange {
    HostGmRange::new(gm(base), len).unwrap()
}

pub fn write_dwords(b: &mut dyn Backend, at: u64, dwords: &[u32]) {
    let bytes: Vec<u8> = dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
    b.write_gm(gm(at), &bytes).unwrap();
}

pub fn read_u32(b: &mut dyn Backend, at: u64) -> u32 {
    let mut x = [0u8; 4];
    b.read_gm(gm(at), &mut x).unwrap();
    u32::from_le_bytes(x)
}

pub fn read_u64(b: &mut dyn Backend, at: u64) -> u64 {
    let mut x = [0u8; 8];
    b.read_gm(gm(at), &mut x).unwrap();
    u64::from_le_bytes(x)
}

pub use crate::encode::*;

use crate::addr::GuestPage;
use crate::engine::Engine;
use crate::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use crate::partition::{GmLayout, PartitionAllocator};
use crate::vgpu::{FrameRun, FrameRuns, SubmissionGate, Vgpu};

pub fn guest_mem(first_page: u64, first_frame: u64, count: u64) -> FrameRuns<4> {
    let mut m = FrameRuns::new();
    m.push(FrameRun {
        first_page: GuestPage::new(first_page).unwrap(),
        first_frame: PhysFrame::new(first_frame).unwrap(),
        count,
    })
    .unwrap();
    m
}

/// Frames backing the scanner's shadow area in tests (4 GiB up, clear of
/// every other test frame and below the GGTT table).
const SHADOW_FRAMES: u64 = 0x10_0000;

/// The real scanner gate, its shadows mapped at the bottom of the monitor's
/// hidden slice of the default layout (as the kernel places them).
pub fn scan_gate(b: &mut dyn Backend) -> Box<ScanGate> {
    let hidden = PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
        .unwrap()
        .monitor()
        .hidden;
    let bytes = SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64;
    map(b, hidden.base().raw(), SHADOW_FRAMES, bytes / 4096);
    let mut gate = Box::new(ScanGate::new());
    assert!(gate.place(HostGmRange::new(hidden.base(), bytes).unwrap()));
    gate
}

/// One physical memory seen by two owners (a device model and the backend
/// driving it, as the GPU and the CPU share RAM).
#[derive(Debug, Clone, Default)]
pub struct SharedMem(pub std::rc::Rc<std::cell::RefCell<SparseMem>>);

impl SharedMem {
    pub fn new(limit: u64) -> Self {
        SharedMem(std::rc::Rc::new(std::cell::RefCell::new(SparseMem::new(
            limit,
        ))))
    }
}

impl PhysMem for SharedMem {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        self.0.borrow().read(addr, buf)
    }
    fn write(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysMemError> {
        self.0.borrow_mut().write(addr, data)
    }
}
