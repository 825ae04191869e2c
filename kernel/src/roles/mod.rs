//! The migration roles between machines (ARCHITECTURE.md "Migration
//! roles"): `role=source` runs its guests and migrates guest 0 live to
//! the monitor at `peer=`; `role=dest` listens on `listen=`, takes the
//! guest in on a vGPU of other slices and frames, restores it with Dynamic
//! Graphics Address Remapping and runs it on; `role=guests` runs the guests
//! only (the reference for QEMU's own migration of the whole machine).
//!
//! Everything here is glue: the stream, the handshake and the handover are
//! `migrate`'s state machines ([`migrate::Source`], [`migrate::Receiver`]),
//! the guests are the `guest` crate's driver and workloads played by the
//! monitor ([`crate::guests::StandIn`]), the vGPU's state is `gpu`'s save and
//! restore, the wire is [`crate::net`]. One main loop per role polls the
//! NIC (through the link), the migration and the guests, which run at 60
//! frames a second of the TSC clock so that the migration has the time in
//! between. Log lines and their fields are documented in the README
//! (`report migration ...`, `report migration_dest ...`, `report guest
//! ...`, `migration progress ...`).

mod dest;
mod pages;
mod source;

use gpu::partition::{VgpuId, VgpuType};
use guest::{FrameReport, Kind, Workload};

use crate::cmdline::Role;
use crate::exit::{exit, ExitCode};
use crate::guests::{CpuDirty, StandIn, StandInError, WriteLog};
use crate::platform::Platform;
use crate::vgpus::{SetupError, VgpuManager, GUEST_MEMORY_FIRST_PAGE};

/// vGPU type of every guest here (the stream names it; both sides agree).
const VGPU_TYPE: VgpuType = VgpuType::Small;
/// RAM of the guests other than guest 0 (2D desktops).
const SIDE_GUEST_MIB: u32 = 8;
/// Frame period of every guest: 60 frames a second.
const FRAME_US: u64 = 16_667;
/// How long the source tries to reach the destination, unless
/// `connect_ms=` says (the destination waits ten times as long by default:
/// it starts first, and between migrations the source boots a guest).
const CONNECT_MS: u64 = 60_000;
/// Longest wait of the migration state machines for the peer.
const TIMEOUT_NS: u64 = 10_000_000_000;
/// The migration's shortest turn in a role's main loop (see `source`).
const MIN_SLICE_US: u64 = 2_000;
/// Progress lines at most this often.
const PROGRESS_US: u64 = 200_000;

/// Runs the role the command line names (not `local`, which `main` runs).
pub fn run(platform: &mut Platform) -> ! {
    match platform.options.roles.role {
        Role::Source => source::run(platform),
        Role::Dest => dest::run(platform),
        Role::Guests => run_guests(platform),
        Role::Local => {
            crate::println!("error: role=local is not a migration role (monitor bug)");
            exit(ExitCode::Failure)
        }
    }
}

/// Why a guest could not be set up or stopped working.
#[derive(Debug)]
pub enum GuestError {
    /// No vGPU for it.
    Setup(SetupError),
    /// Its workload failed (a wrong result is a bug somewhere below it).
    Workload(guest::WorkloadError<StandInError>),
    /// Its vGPU is gone (a monitor bug).
    Lost,
}

impl core::fmt::Display for GuestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuestError::Setup(e) => write!(f, "no vGPU: {e}"),
            GuestError::Workload(e) => write!(f, "{e}"),
            GuestError::Lost => f.write_str("its vGPU is gone (monitor bug)"),
        }
    }
}

/// A guest of the `guest` crate on one of the manager's vGPUs.
pub struct Hosted {
    /// Its number in reports (guest 0 is the one that migrates).
    pub id: u8,
    /// The partition of its vGPU (indices in the manager shift when a vGPU
    /// goes away; the partition does not).
    pub vgpu: VgpuId,
    pub workload: Workload,
    pub cpu: CpuDirty,
    pub writes: WriteLog,
    pub mib: u32,
    /// When its next frame is due (TSC microseconds).
    pub next_frame_us: u64,
    pub last: FrameReport,
}

impl Hosted {
    /// A new vGPU with `mib` MiB of RAM, and the guest's driver and
    /// workload booted on it.
    pub fn boot(
        p: &mut Platform,
        id: u8,
        kind: Kind,
        mib: u32,
        seed: u64,
    ) -> Result<Hosted, GuestError> {
        let pages = u64::from(mib) * 256;
        let index = p
            .vgpus
            .add_vgpu(&mut p.memory.frames, VGPU_TYPE, pages)
            .map_err(GuestError::Setup)?;
        let vgpu = p.vgpus.vgpus[index].partition.id();
        let (mut cpu, mut writes) = (CpuDirty::new(pages), WriteLog::default());
        let booted = {
            let mut machine = StandIn {
                m: &mut p.vgpus,
                index,
                cpu: &mut cpu,
                writes: &mut writes,
            };
            guest::Driver::probe(&mut machine, GUEST_MEMORY_FIRST_PAGE, pages)
                .map_err(guest::WorkloadError::Driver)
                .and_then(|d| Workload::boot(&mut machine, d, kind, seed))
        };
        match booted {
            Ok(workload) => {
                // What boot wrote is no migration's business.
                cpu.take(|_| {});
                let _ = writes.drain().count();
                Ok(Hosted {
                    id,
                    vgpu,
                    workload,
                    cpu,
                    writes,
                    mib,
                    next_frame_us: crate::time::micros_since_boot(),
                    last: FrameReport::default(),
                })
            }
            Err(e) => {
                p.vgpus.remove_vgpu(&mut p.memory.frames, index);
                Err(GuestError::Workload(e))
            }
        }
    }

    /// The guest's vGPU's index in the manager now.
    pub fn index(&self, m: &VgpuManager) -> Result<usize, GuestError> {
        m.vgpus
            .iter()
            .position(|h| h.partition.id() == self.vgpu)
            .ok_or(GuestError::Lost)
    }

    /// Whether a frame is due.
    pub fn due(&self, now_us: u64) -> bool {
        now_us >= self.next_frame_us
    }

    /// Runs one frame.
    pub fn step(&mut self, m: &mut VgpuManager) -> Result<FrameReport, GuestError> {
        let index = self.index(m)?;
        let mut machine = StandIn {
            m,
            index,
            cpu: &mut self.cpu,
            writes: &mut self.writes,
        };
        let r = self
            .workload
            .step(&mut machine)
            .map_err(GuestError::Workload)?;
        self.last = r;
        // Keep the rate; a guest that fell behind does not try to catch up.
        let now = crate::time::micros_since_boot();
        self.next_frame_us = (self.next_frame_us + FRAME_US).max(now);
        Ok(r)
    }

    /// Logs the guest's report line.
    pub fn report(&self, ended: &str) {
        defmt::info!(
            "report guest id={=u8} kind={=str} mib={=u32} frames={=u64} checksum={=u64:#x} ended={=str}",
            self.id,
            self.workload.kind().name(),
            self.mib,
            self.workload.frame(),
            self.workload.checksum(),
            ended
        );
    }
}

/// Steps every due guest in `guests` (except the one `skip` names) once.
/// A guest whose workload fails is reported, torn down and dropped: the
/// others go on.
fn step_due(p: &mut Platform, guests: &mut alloc::vec::Vec<Hosted>, skip: Option<u8>) {
    let now = crate::time::micros_since_boot();
    let mut i = 0;
    while i < guests.len() {
        let g = &mut guests[i];
        if Some(g.id) == skip || !g.due(now) {
            i += 1;
            continue;
        }
        match g.step(&mut p.vgpus) {
            Ok(_) => i += 1,
            Err(e) => {
                let g = guests.remove(i);
                crate::println!("guest {}: {e}; its vGPU is torn down", g.id);
                defmt::error!("guest {=u8}: {}", g.id, defmt::Display2Format(&e));
                g.report("failed");
                if let Ok(index) = g.index(&p.vgpus) {
                    p.vgpus.remove_vgpu(&mut p.memory.frames, index);
                }
            }
        }
    }
}

/// The side guests: 2D desktops of [`SIDE_GUEST_MIB`], ids from `first`.
fn boot_side_guests(
    p: &mut Platform,
    first: u8,
    count: u8,
    guests: &mut alloc::vec::Vec<Hosted>,
) -> Result<(), GuestError> {
    for id in first..first + count {
        let g = Hosted::boot(
            p,
            id,
            Kind::Desktop2d,
            SIDE_GUEST_MIB,
            0xde5c_0000 | u64::from(id),
        )?;
        guests.push(g);
    }
    Ok(())
}

/// `role=guests`: the guests run for `run_ms`, then report.
fn run_guests(p: &mut Platform) -> ! {
    let opts = p.options.roles;
    defmt::info!("report role=guests guests={=u8}", opts.guests);
    let mut guests = alloc::vec::Vec::new();
    let booted = Hosted::boot(p, 0, opts.workload, opts.guest_mib, 0x0e5e_ed00)
        .map(|g| guests.push(g))
        .and_then(|()| boot_side_guests(p, 1, opts.guests - 1, &mut guests));
    if let Err(e) = booted {
        crate::println!("error: a guest does not boot: {e}");
        exit(ExitCode::Failure);
    }
    crate::println!(
        "gmig-rs: {} guests running ({} {} MiB and desktops) for {} ms",
        guests.len(),
        opts.workload.name(),
        opts.guest_mib,
        opts.run_ms
    );
    defmt::info!("guests running");
    let end = crate::time::micros_since_boot() + u64::from(opts.run_ms) * 1000;
    while crate::time::micros_since_boot() < end && !guests.is_empty() {
        step_due(p, &mut guests, None);
        core::hint::spin_loop();
    }
    for g in &guests {
        g.report("running");
    }
    exit(if guests.len() == usize::from(opts.guests) {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
