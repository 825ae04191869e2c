//! The reference run of a migrated guest's program: the same workload
//! code (`guest`, compiled for the host) with the same kind, seed and RAM,
//! run here, without a migration, on a model of the machine a ring-3
//! guest has (a `gpu::Vgpu` behind its BAR0, the command scanner, the
//! vGPU scheduler and the software GPU over a sparse memory), frame by
//! frame. Its checksums are what the migrated guest's must be.
//!
//! Why here and not in a monitor: the reference then shares nothing with
//! the run it checks but the guest's own program and the GPU model. No
//! monitor code (ring-3 runtime, page tables, aperture window, migration,
//! network) is on its path, so a deterministic fault of the monitor
//! cannot give both runs the same wrong checksums, and it costs the QEMU
//! runs no time: a few seconds of the host's CPU, where a second run
//! inside the destination would take TCG's.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use gpu::addr::{GuestPage, HostGgttIndex, HostGmRange, PhysAddr, PhysFrame};
use gpu::backend::{Backend, PhysMem, PhysMemError};
use gpu::engine::Engine;
use gpu::ggtt::{HostPte, PteFlags};
use gpu::mediate::{ScanGate, SHADOW_BYTES_PER_ENGINE};
use gpu::partition::{GmLayout, PartitionAllocator, VgpuType};
use gpu::sched::Scheduler;
use gpu::sim::SimGpu;
use gpu::vgpu::{AccessSize, FrameRun, FrameRuns, MmioEffect, Vgpu, VgpuError, VgpuState};
use guest::abi::{BootBlock, Program, RAM_FIRST_PAGE};
use guest::{Driver, Kind, Platform, Workload};
use serde::Serialize;

use crate::qemu::RunResult;

/// Pages of memory, those written so far.
#[derive(Default)]
struct Sparse(BTreeMap<u64, Box<[u8; 4096]>>);

impl PhysMem for Sparse {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let mut done = 0;
        while done < buf.len() {
            let a = addr.raw() + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            match self.0.get(&(a >> 12)) {
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
            let p = self.0.entry(a >> 12).or_insert_with(|| Box::new([0; 4096]));
            p[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// Where the model keeps the GGTT, the monitor's shadow area and the
/// guest's RAM (frame numbers; nothing else lives in the sparse memory).
const GGTT_TABLE: u64 = 16 << 30;
const SHADOW_FRAME: u64 = 0x10_0000;
/// The vGPU's shadow PPGTT pool (the PPGTT renderer's contexts need it).
const PPGTT_POOL_FRAME: u64 = 0x18_0000;
const RAM_FRAME: u64 = 0x20_0000;
/// Model time each of the guest's pauses lets pass.
const PAUSE_NS: u64 = 5_000;

/// The guest's machine: its vGPU, the scanner and the software GPU.
struct Machine {
    gpu: SimGpu<Sparse>,
    gate: Box<ScanGate>,
    sched: Scheduler,
    vgpu: Vgpu,
    ram: FrameRuns<4>,
    now_ns: u64,
}

impl Machine {
    fn new(ram_pages: u64) -> Result<Machine> {
        let table = PhysAddr::new(GGTT_TABLE).map_err(|e| anyhow!("{e:?}"))?;
        let mut gpu = SimGpu::new(Sparse::default(), table).map_err(|e| anyhow!("{e:?}"))?;
        let mut alloc =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .map_err(|e| anyhow!("{e:?}"))?;
        let hidden = alloc.monitor().hidden;
        let bytes = SHADOW_BYTES_PER_ENGINE * Engine::COUNT as u64;
        for i in 0..bytes / 4096 {
            let frame = PhysFrame::new(SHADOW_FRAME + i).map_err(|e| anyhow!("{e:?}"))?;
            let index = HostGgttIndex::new((hidden.base().raw() >> 12) + i)
                .map_err(|e| anyhow!("{e:?}"))?;
            let flush = gpu.write_pte(index, HostPte::map(frame, PteFlags::NONE));
            gpu.flush_ggtt(flush);
        }
        let mut gate = Box::new(ScanGate::new());
        let shadow = HostGmRange::new(hidden.base(), bytes).map_err(|e| anyhow!("{e:?}"))?;
        if !gate.place(shadow) {
            bail!("the scanner's shadow area does not fit the model's monitor slice");
        }
        // The roles' vGPU type (`kernel/src/roles/mod.rs`).
        let partition = alloc
            .allocate(VgpuType::Small)
            .map_err(|e| anyhow!("{e:?}"))?;
        gpu::vgpu::scrub_partition(&mut gpu, &partition);
        let mut ram = FrameRuns::new();
        ram.push(FrameRun {
            first_page: GuestPage::new(RAM_FIRST_PAGE).map_err(|e| anyhow!("{e:?}"))?,
            first_frame: PhysFrame::new(RAM_FRAME).map_err(|e| anyhow!("{e:?}"))?,
            count: ram_pages,
        })
        .map_err(|_| anyhow!("guest RAM"))?;
        let mut vgpu = Vgpu::new(&partition);
        let pool = PhysFrame::new(PPGTT_POOL_FRAME).map_err(|e| anyhow!("{e:?}"))?;
        vgpu.enable_ppgtt(pool, gpu::vgpu::SHADOW_TABLES, &mut gpu)
            .map_err(|e| anyhow!("shadow PPGTT pool: {e:?}"))?;
        Ok(Machine {
            gpu,
            gate,
            sched: Scheduler::default(),
            vgpu,
            ram,
            now_ns: 0,
        })
    }

    fn poll(&mut self) {
        let vgpus = core::slice::from_mut(&mut self.vgpu);
        self.sched
            .poll(self.now_ns, &mut self.gpu, &mut *self.gate, vgpus);
    }

    fn at(&self, page: u64, offset: usize) -> Result<PhysAddr, VgpuError> {
        let frame = page
            .checked_sub(RAM_FIRST_PAGE)
            .map(|i| RAM_FRAME + i)
            .unwrap_or(0);
        PhysAddr::new(frame * 4096 + offset as u64)
            .map_err(|_| VgpuError::Guest(gpu::vgpu::GuestFault::ForeignPage { page }))
    }
}

impl Platform for Machine {
    type Error = VgpuError;
    fn mmio_read32(&mut self, offset: u32) -> Result<u32, VgpuError> {
        let v = self
            .vgpu
            .mmio_read(&mut self.gpu, &self.ram, offset, AccessSize::Dword)?;
        Ok(v as u32)
    }
    fn mmio_write32(&mut self, offset: u32, value: u32) -> Result<(), VgpuError> {
        let e = self.vgpu.mmio_write(
            &mut self.gpu,
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
        self.vgpu
            .mmio_write(&mut self.gpu, &self.ram, offset, AccessSize::Qword, value)
            .map(|_| ())
    }
    fn ram_read(&mut self, page: u64, offset: usize, out: &mut [u8]) -> Result<(), VgpuError> {
        let at = self.at(page, offset)?;
        self.gpu
            .mem()
            .read(at, out)
            .map_err(|_| VgpuError::Guest(gpu::vgpu::GuestFault::ForeignPage { page }))
    }
    fn ram_write(&mut self, page: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        let at = self.at(page, offset)?;
        self.gpu
            .mem_mut()
            .write(at, data)
            .map_err(|_| VgpuError::Guest(gpu::vgpu::GuestFault::ForeignPage { page }))
    }
    fn aperture_write(&mut self, index: u64, offset: usize, data: &[u8]) -> Result<(), VgpuError> {
        self.vgpu
            .aperture_write(&mut self.gpu, index, offset, data)
            .map_err(|_| VgpuError::Guest(gpu::vgpu::GuestFault::ForeignPage { page: index }))
    }
    fn pause(&mut self) -> Result<(), VgpuError> {
        self.now_ns += PAUSE_NS;
        self.poll();
        match self.vgpu.state() {
            VgpuState::Failed(r) => Err(VgpuError::Stopped(r)),
            VgpuState::Running => Ok(()),
        }
    }
}

/// The checksums of frames `0..frames` of workload `kind` (its report
/// name) with `seed` on a guest of `mib` MiB of RAM, as the workload image
/// runs it (`guest/images/src/bin/workload.rs`: the driver on the boot
/// block's driver RAM, one `step` per frame).
pub fn checksums(kind: &str, seed: u64, mib: u64, frames: u64) -> Result<Vec<u64>> {
    let kind = Kind::from_name(kind).ok_or_else(|| anyhow!("no workload kind {kind:?}"))?;
    let ram_pages = mib * 256;
    let boot = BootBlock {
        guest: 0,
        ram_pages,
        program: Program::Workload { kind, seed, frames },
    };
    let (first, pages) = boot.driver_ram();
    let mut m = Machine::new(ram_pages)?;
    let driver = Driver::probe(&mut m, first, pages).map_err(|e| anyhow!("driver: {e}"))?;
    let mut w = Workload::boot(&mut m, driver, kind, seed).map_err(|e| anyhow!("boot: {e}"))?;
    (0..frames)
        .map(|n| {
            w.step(&mut m)
                .map(|r| r.checksum)
                .map_err(|e| anyhow!("frame {n}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same program gives the same numbers; each frame moves the
    /// checksum on, and the seed decides them.
    #[test]
    fn the_reference_is_deterministic_and_moves_each_frame() {
        let a = checksums("3d", 0x0e5e_ed00, 4, 6).unwrap();
        let b = checksums("3d", 0x0e5e_ed00, 4, 6).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 6);
        assert!(a.windows(2).all(|w| w[0] != w[1]), "{a:x?}");
        let other = checksums("3d", 0x0e5e_ed01, 4, 6).unwrap();
        assert_ne!(a, other, "the seed decides");
    }

    /// The PPGTT renderer runs in the model too (its vGPU has a shadow
    /// PPGTT pool, as the kernel gives one), with its own numbers.
    #[test]
    fn the_reference_runs_the_ppgtt_renderer() {
        let a = checksums("3d-ppgtt", 0x0e5e_ed00, 8, 4).unwrap();
        assert_eq!(a, checksums("3d-ppgtt", 0x0e5e_ed00, 8, 4).unwrap());
        assert!(a.windows(2).all(|w| w[0] != w[1]), "{a:x?}");
        assert_ne!(a, checksums("3d", 0x0e5e_ed00, 8, 4).unwrap());
    }

    fn frames(values: &[(u64, u64)]) -> Vec<String> {
        values
            .iter()
            .map(|(frame, checksum)| {
                format!("report frame guest=0 kind=3d seed=0x7 mib=4 frame={frame} checksum={checksum:#x}")
            })
            .collect()
    }

    fn side(lines: &[String]) -> RunResult {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        crate::migration_report::tests::run(crate::qemu::Outcome::Success, "", &lines)
    }

    /// Frames on both sides equal to the reference match; one changed
    /// checksum, a skipped frame, or no frame on the destination do not.
    #[test]
    fn a_differing_or_missing_frame_fails_the_comparison() {
        let want = checksums("3d", 7, 4, 5).unwrap();
        let all: Vec<(u64, u64)> = want
            .iter()
            .copied()
            .enumerate()
            .map(|(i, c)| (i as u64, c))
            .collect();
        let check = |before: &[(u64, u64)], after: &[(u64, u64)]| {
            compare(&side(&frames(before)), &side(&frames(after)))
        };
        let good = check(&all[..2], &all[2..]);
        assert_eq!(good.len(), 1);
        assert!(good[0].matches, "{}", table(&good));
        assert_eq!((good[0].destination_frames, good[0].frames.len()), (3, 5));
        let mut changed = all.clone();
        changed[3].1 ^= 1;
        let bad = check(&changed[..2], &changed[2..]);
        assert!(!bad[0].matches && bad[0].mismatches == 1, "{}", table(&bad));
        assert!(table(&bad).contains("DIFFERS"));
        let gap = check(&all[..2], &all[3..]);
        assert!(!gap[0].matches && !gap[0].continuous, "{}", table(&gap));
        assert!(
            check(&all, &[]).is_empty(),
            "nothing arrived: nothing to compare"
        );
    }
}

/// One frame of a migrated guest, as a monitor reported it, beside the
/// reference run's checksum of the same frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameCheck {
    pub frame: u64,
    /// `source` (before the migration) or `destination` (after it).
    pub side: String,
    /// `0x...`, the guest's own checksum of the frame.
    pub checksum: String,
    /// `0x...`, the reference run's; `None` if it has no such frame.
    pub reference: Option<String>,
    pub equal: bool,
}

/// A migrated guest's checksums against the reference run of its program
/// (`run-report.json`'s `reference[]`, one per guest that arrived).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceCheck {
    pub guest: u64,
    pub kind: String,
    /// `0x...`, the program's seed.
    pub seed: String,
    pub mib: u64,
    /// Every frame either side reported, in frame order.
    pub frames: Vec<FrameCheck>,
    /// Of which the destination's.
    pub destination_frames: u64,
    /// Frames whose checksum differs from the reference's.
    pub mismatches: u64,
    /// The frame numbers run on without a gap or a repeat from the
    /// source's first to the destination's last.
    pub continuous: bool,
    /// The destination reported frames, each equal to the reference's,
    /// the source's too, without a gap: the guest went on as if never
    /// moved.
    pub matches: bool,
    /// Why the reference run could not be made.
    pub failure: Option<String>,
}

/// The `report frame ...` lines of a run: (guest, kind, seed, mib, frame,
/// checksum).
fn frame_lines(result: &RunResult) -> Vec<(u64, String, u64, u64, u64, u64)> {
    let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok();
    crate::report::report_records(result, "frame")
        .filter_map(|fields| {
            let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            Some((
                get("guest")?.parse().ok()?,
                get("kind")?.to_string(),
                hex(get("seed")?)?,
                get("mib")?.parse().ok()?,
                get("frame")?.parse().ok()?,
                hex(get("checksum")?)?,
            ))
        })
        .collect()
}

/// Compares every guest whose frames the destination reported (a guest
/// that arrived by migration) with the reference run of its program:
/// each frame it reported, on the source before and on the destination
/// after, against the same frame of [`checksums`].
pub fn compare(source: &RunResult, destination: &RunResult) -> Vec<ReferenceCheck> {
    let before = frame_lines(source);
    let after = frame_lines(destination);
    let mut programs: Vec<(u64, String, u64, u64)> = Vec::new();
    for (guest, kind, seed, mib, _, _) in &after {
        let program = (*guest, kind.clone(), *seed, *mib);
        if !programs.contains(&program) {
            programs.push(program);
        }
    }
    programs
        .into_iter()
        .map(|(guest, kind, seed, mib)| {
            let same = |l: &&(u64, String, u64, u64, u64, u64)| {
                l.0 == guest && l.1 == kind && l.2 == seed && l.3 == mib
            };
            let mut rows: Vec<(u64, &str, u64)> = before
                .iter()
                .filter(same)
                .map(|l| (l.4, "source", l.5))
                .chain(after.iter().filter(same).map(|l| (l.4, "destination", l.5)))
                .collect();
            rows.sort_by_key(|r| r.0);
            let last = rows.last().map_or(0, |r| r.0);
            let reference = checksums(&kind, seed, mib, last + 1);
            let failure = reference.as_ref().err().map(|e| format!("{e:#}"));
            let reference = reference.unwrap_or_default();
            let frames: Vec<FrameCheck> = rows
                .iter()
                .map(|&(frame, side, checksum)| {
                    let want = reference.get(frame as usize).copied();
                    FrameCheck {
                        frame,
                        side: side.to_string(),
                        checksum: format!("{checksum:#x}"),
                        reference: want.map(|v| format!("{v:#x}")),
                        equal: want == Some(checksum),
                    }
                })
                .collect();
            let destination_frames =
                frames.iter().filter(|f| f.side == "destination").count() as u64;
            let mismatches = frames.iter().filter(|f| !f.equal).count() as u64;
            let first = rows.first().map_or(0, |r| r.0);
            let continuous = rows
                .iter()
                .enumerate()
                .all(|(i, r)| r.0 == first + i as u64);
            ReferenceCheck {
                guest,
                kind,
                seed: format!("{seed:#x}"),
                mib,
                matches: failure.is_none()
                    && destination_frames > 0
                    && mismatches == 0
                    && continuous,
                frames,
                destination_frames,
                mismatches,
                continuous,
                failure,
            }
        })
        .collect()
}

/// The comparison as a table for `cargo xtask run`: a row per frame on
/// the destination (and per frame that differs), the source's summed up.
pub fn table(checks: &[ReferenceCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "guest {} ({} {} MiB, seed {}) against its reference run (the same program on the host, never migrated): {}\n",
            c.guest,
            c.kind,
            c.mib,
            c.seed,
            if c.matches {
                "every frame equal".to_string()
            } else if let Some(f) = &c.failure {
                format!("no reference: {f}")
            } else {
                format!(
                    "{} of {} frames differ{}",
                    c.mismatches,
                    c.frames.len(),
                    if c.continuous { "" } else { ", frame numbers not continuous" }
                )
            }
        ));
        // The source's frames in one line when they all match; every
        // destination frame, and every frame that differs, in full.
        let source: Vec<&FrameCheck> = c.frames.iter().filter(|f| f.side == "source").collect();
        if let (Some(first), Some(last)) = (source.first(), source.last()) {
            let equal = source.iter().filter(|f| f.equal).count();
            out.push_str(&format!(
                "  source frames {}..={}: {equal} of {} equal to the reference\n",
                first.frame,
                last.frame,
                source.len()
            ));
        }
        out.push_str("  frame  side         checksum             reference\n");
        for f in c.frames.iter().filter(|f| f.side != "source" || !f.equal) {
            out.push_str(&format!(
                "  {:>5}  {:<11}  {:<19}  {:<19}{}\n",
                f.frame,
                f.side,
                f.checksum,
                f.reference.as_deref().unwrap_or("-"),
                if f.equal { "" } else { "  DIFFERS" }
            ));
        }
    }
    out
}
