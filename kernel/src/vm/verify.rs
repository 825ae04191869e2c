//! What the monitor checks of a ring-3 workload guest itself, not taking
//! the guest's word (its exit code, its own checks): the checksums the
//! same guest code gives when the monitor runs it through its stand-in
//! (`guests::StandIn`) on a vGPU of its own, and the content of every
//! data page of the guest's RAM against the bookkeeping the guest keeps
//! there (`guest::workload::verify`). Together: no other guest changed
//! what it computed or what it holds.

use alloc::vec::Vec;

use gpu::partition::VgpuType;
use guest::abi::{DRIVER_INDEX, RAM_FIRST_PAGE};
use guest::Kind;

use crate::guests::{CpuDirty, StandIn, WriteLog};
use crate::platform::Platform;
use crate::vgpus::VgpuManager;

/// The same workload through the monitor's stand-in on a fresh vGPU with
/// the same RAM range: the checksums a correct ring-3 run must give,
/// frame by frame.
pub fn reference_checksums(
    p: &mut Platform,
    kind: Kind,
    seed: u64,
    frames: u64,
    pages: u64,
) -> Result<Vec<u64>, &'static str> {
    let index = p
        .vgpus
        .add_vgpu(&mut p.memory.frames, VgpuType::Small, pages)
        .map_err(|_| "no room for the reference vGPU")?;
    let (first, count) = (RAM_FIRST_PAGE + DRIVER_INDEX, pages - DRIVER_INDEX);
    let (mut cpu, mut writes) = (CpuDirty::new(pages), WriteLog::default());
    let result = {
        let mut machine = StandIn {
            m: &mut p.vgpus,
            index,
            cpu: &mut cpu,
            writes: &mut writes,
        };
        guest::Driver::probe(&mut machine, first, count)
            .map_err(guest::WorkloadError::Driver)
            .and_then(|d| guest::Workload::boot(&mut machine, d, kind, seed))
            .and_then(|mut w| {
                (0..frames)
                    .map(|_| w.step(&mut machine).map(|r| r.checksum))
                    .collect::<Result<Vec<u64>, _>>()
            })
    };
    p.vgpus.remove_vgpu(&mut p.memory.frames, index);
    result.map_err(|_| "the reference run through the stand-in failed")
}

/// Checks every data page of the workload of `kind` and `seed` in the RAM
/// of vGPU `index` (`pages` from `RAM_FIRST_PAGE`, the driver's from
/// `DRIVER_INDEX`) against its bookkeeping, reading only; returns how
/// many pages were checked.
pub fn guest_pages(
    m: &mut VgpuManager,
    index: usize,
    kind: Kind,
    seed: u64,
    pages: u64,
) -> Result<u64, guest::WorkloadError<crate::guests::StandInError>> {
    let (mut cpu, mut writes) = (CpuDirty::new(pages), WriteLog::default());
    let mut machine = StandIn {
        m,
        index,
        cpu: &mut cpu,
        writes: &mut writes,
    };
    let first = RAM_FIRST_PAGE + DRIVER_INDEX;
    guest::workload::verify(&mut machine, first, pages - DRIVER_INDEX, kind, seed)
}
