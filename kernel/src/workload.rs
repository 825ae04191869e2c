//! Built-in guest stand-ins. Until the guest runtime runs real guests, the
//! monitor plays each vGPU's guest driver itself, exactly as a guest would
//! and through the same interfaces: it learns its slices from PVINFO
//! (ballooning), maps its own pages into its aperture through the trapped
//! GGTT window, programs ring START/CTL, writes commands into its own memory
//! and writes TAIL. Everything after that is the real mediated path: the
//! vGPU's register policies, the scheduler, the scanner (copy, audit, remap
//! into the shadow), the backend, and memory reached through the host
//! GGTT. The GPU's work takes time: [`GuestDriver::submit`] waits until its
//! vGPU is idle again.

use gpu::addr::{GuestPage, PhysAddr};
use gpu::backend::PhysMem;
use gpu::encode;
use gpu::engine::Engine;
use gpu::ggtt::{GuestPte, PteFlags};
use gpu::regs::{pvinfo, ring, GGTT_BAR0_OFFSET};
use gpu::vgpu::{AccessSize, FailReason, GuestMemoryMap, MmioEffect, VgpuError, VgpuState};

use crate::vgpus::{VgpuManager, WaitError, GUEST_MEMORY_FIRST_PAGE, GUEST_MEMORY_PAGES};

/// Where each ring lives: aperture page index (one page per ring).
pub fn ring_page(engine: Engine) -> u64 {
    engine.index() as u64
}
/// Aperture page the workload's results land in.
const RESULT_PAGE: u64 = 8;
/// Aperture pages of the blit target (64 x 16 pixels at 32 bpp = 1 page).
const SURFACE_PAGE: u64 = 12;
const SURFACE_PITCH: u32 = 256;
const SURFACE_ROWS: u32 = 16;

/// A guest's view of its vGPU, driven from the monitor. It holds no
/// borrow of the manager, so several guests can take turns.
#[derive(Debug, Clone, Copy)]
pub struct GuestDriver {
    index: usize,
    aperture_base: u64,
}

/// How long [`GuestDriver::submit`] waits for its work (the smoke work
/// takes microseconds of GPU time).
const SUBMIT_TIMEOUT_US: u64 = 5_000_000;

/// What went wrong, by who is to blame.
#[derive(Debug)]
pub enum DriverError {
    /// The vGPU refused (the workload itself was bad, or the vGPU stopped).
    Vgpu(VgpuError),
    /// The vGPU's work did not end in time (the GPU or the monitor).
    Timeout,
    /// PVINFO did not look like a GVT-g vGPU.
    NoPvinfo,
    /// The guest's memory is not where the monitor put it (monitor bug).
    Memory,
    /// A result differs from what the commands must produce.
    Wrong {
        what: &'static str,
        want: u64,
        got: u64,
    },
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::Vgpu(e) => write!(f, "{e}"),
            DriverError::Timeout => {
                write!(f, "GPU work did not end within {SUBMIT_TIMEOUT_US} us")
            }
            DriverError::NoPvinfo => f.write_str("PVINFO magic missing"),
            DriverError::Memory => f.write_str("guest memory not found"),
            DriverError::Wrong { what, want, got } => {
                write!(f, "{what}: want {want:#x}, got {got:#x}")
            }
        }
    }
}

impl From<VgpuError> for DriverError {
    fn from(e: VgpuError) -> Self {
        DriverError::Vgpu(e)
    }
}

impl GuestDriver {
    fn read(&self, m: &mut VgpuManager, offset: u32, size: AccessSize) -> Result<u64, DriverError> {
        let hosted = &mut m.vgpus[self.index];
        Ok(hosted
            .vgpu
            .mmio_read(m.device.backend(), &hosted.memory, offset, size)?)
    }

    fn write(
        &self,
        m: &mut VgpuManager,
        offset: u32,
        size: AccessSize,
        value: u64,
    ) -> Result<MmioEffect, DriverError> {
        let hosted = &mut m.vgpus[self.index];
        Ok(hosted
            .vgpu
            .mmio_write(m.device.backend(), &hosted.memory, offset, size, value)?)
    }

    /// Boots the guest side: reads PVINFO, maps all guest pages at the bottom
    /// of the aperture, and enables a one-page ring on every engine.
    pub fn boot(m: &mut VgpuManager, index: usize) -> Result<Self, DriverError> {
        let driver = Self::resume(m, index)?;
        for i in 0..GUEST_MEMORY_PAGES {
            let page =
                GuestPage::new(GUEST_MEMORY_FIRST_PAGE + i).map_err(|_| DriverError::Memory)?;
            let pte = GuestPte::map(page, PteFlags::NONE);
            let slot = GGTT_BAR0_OFFSET + ((driver.aperture_base >> 12) + i) as u32 * 8;
            let _ = driver.write(m, slot, AccessSize::Qword, pte.raw())?;
        }
        for engine in [Engine::Render, Engine::Blitter] {
            let base = engine.mmio_base();
            let start = driver.gm(ring_page(engine), 0);
            let _ = driver.write(m, base + ring::START, AccessSize::Dword, start)?;
            let _ = driver.write(
                m,
                base + ring::CTL,
                AccessSize::Dword,
                u64::from(ring::CTL_ENABLE),
            )?;
        }
        Ok(driver)
    }

    /// Takes over driving vGPU `index` whose guest side is already set up
    /// (after [`GuestDriver::boot`], or after a migration restored it: the
    /// guest keeps its view, PVINFO showing the source's slices, and its GGTT
    /// entries and rings). Only reads PVINFO.
    pub fn resume(m: &mut VgpuManager, index: usize) -> Result<Self, DriverError> {
        let mut driver = GuestDriver {
            index,
            aperture_base: 0,
        };
        let magic = driver.read(m, pvinfo::PAGE + pvinfo::MAGIC_OFFSET, AccessSize::Qword)?;
        if magic != pvinfo::MAGIC {
            return Err(DriverError::NoPvinfo);
        }
        driver.aperture_base =
            driver.read(m, pvinfo::PAGE + pvinfo::APERTURE_BASE, AccessSize::Dword)?;
        Ok(driver)
    }

    /// Work that keeps changing memory while a migration runs: stores and a
    /// post-sync write on render, a fill on the blitter. `tag` varies what
    /// is written and where.
    pub fn churn(&self, tag: u32) -> [(Engine, [u32; 12]); 2] {
        let slot = u64::from(tag % 64) * 4;
        let mut render = [encode::NOOP; 12];
        render[..4].copy_from_slice(&encode::sdi(self.gm(RESULT_PAGE + 1, slot), tag));
        render[4..10].copy_from_slice(&encode::pipe_control_imm(
            self.gm(RESULT_PAGE + 2, slot * 2),
            u64::from(tag),
        ));
        let mut blit = [encode::NOOP; 12];
        let row = tag % SURFACE_ROWS;
        blit[..7].copy_from_slice(&encode::color_blt(
            self.gm(SURFACE_PAGE, 0),
            SURFACE_PITCH,
            0,
            row,
            64,
            row + 1,
            tag,
        ));
        [(Engine::Render, render), (Engine::Blitter, blit)]
    }

    /// Guest GM of `offset` in aperture page `page`.
    fn gm(&self, page: u64, offset: u64) -> u64 {
        self.aperture_base + page * 4096 + offset
    }

    /// The host frame behind aperture page `page` (the guest's own RAM).
    fn phys(&self, m: &VgpuManager, page: u64, offset: u64) -> Result<PhysAddr, DriverError> {
        let hosted = &m.vgpus[self.index];
        let guest_page =
            GuestPage::new(GUEST_MEMORY_FIRST_PAGE + page).map_err(|_| DriverError::Memory)?;
        let frame = hosted
            .memory
            .frame_of(guest_page)
            .ok_or(DriverError::Memory)?;
        Ok(frame.at(offset))
    }

    fn read_u32(&self, m: &VgpuManager, page: u64, offset: u64) -> Result<u32, DriverError> {
        let at = self.phys(m, page, offset)?;
        let mut b = [0u8; 4];
        m.device
            .memory()
            .read(at, &mut b)
            .map_err(|_| DriverError::Memory)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes `cmds` into `engine`'s ring, rings TAIL, and waits for the
    /// vGPU to finish them (the scheduler runs them when its turn comes).
    /// A rejection, or a GPU fault, is the vGPU's stop reason.
    pub fn submit(
        &self,
        m: &mut VgpuManager,
        engine: Engine,
        cmds: &[u32],
    ) -> Result<(), DriverError> {
        let head = m.vgpus[self.index].vgpu.ring(engine).tail;
        for (i, word) in cmds.iter().enumerate() {
            let offset = (u64::from(head) + 4 * i as u64) % 4096;
            let at = self.phys(m, ring_page(engine), offset)?;
            m.device
                .memory_mut()
                .write(at, &word.to_le_bytes())
                .map_err(|_| DriverError::Memory)?;
        }
        let tail = (head + 4 * cmds.len() as u32) % 4096;
        let effect = self.write(
            m,
            engine.mmio_base() + ring::TAIL,
            AccessSize::Dword,
            u64::from(tail),
        )?;
        if let MmioEffect::Done = effect {
            return Ok(());
        }
        match m.wait_idle(self.index, SUBMIT_TIMEOUT_US) {
            Ok(()) => Ok(()),
            Err(WaitError::Failed(reason)) => Err(DriverError::Vgpu(VgpuError::Stopped(reason))),
            Err(WaitError::NoVgpu) => Err(DriverError::Memory),
            Err(WaitError::Timeout { .. }) => Err(DriverError::Timeout),
        }
    }

    fn expect(
        &self,
        m: &VgpuManager,
        what: &'static str,
        page: u64,
        offset: u64,
        want: u32,
    ) -> Result<(), DriverError> {
        let got = self.read_u32(m, page, offset)?;
        if got != want {
            return Err(DriverError::Wrong {
                what,
                want: u64::from(want),
                got: u64::from(got),
            });
        }
        Ok(())
    }

    /// Render and blitter work with known results: a store, a PIPE_CONTROL
    /// post-sync write, a color fill and an MI_FLUSH_DW post-sync write.
    /// Returns the number of submissions.
    pub fn smoke(&self, m: &mut VgpuManager) -> Result<u32, DriverError> {
        let tag = 0xc0de_0000 | self.index as u32;
        let store = self.gm(RESULT_PAGE, 0);
        let post_sync = self.gm(RESULT_PAGE, 8);
        let mut render = [encode::NOOP; 10];
        render[..4].copy_from_slice(&encode::sdi(store, tag));
        render[4..].copy_from_slice(&encode::pipe_control_imm(post_sync, u64::from(tag) + 1));
        self.submit(m, Engine::Render, &render)?;
        self.expect(m, "render store", RESULT_PAGE, 0, tag)?;
        self.expect(m, "PIPE_CONTROL post-sync", RESULT_PAGE, 8, tag + 1)?;

        let surface = self.gm(SURFACE_PAGE, 0);
        let color = 0x00ff_0000 | self.index as u32;
        let fence = self.gm(RESULT_PAGE, 16);
        let mut blit = [encode::NOOP; 12];
        blit[..7].copy_from_slice(&encode::color_blt(
            surface,
            SURFACE_PITCH,
            0,
            0,
            64,
            SURFACE_ROWS,
            color,
        ));
        blit[7..11].copy_from_slice(&encode::flush_dw_imm(fence, tag + 2));
        self.submit(m, Engine::Blitter, &blit)?;
        for (row, col) in [(0, 0), (SURFACE_ROWS - 1, 63), (7, 31)] {
            let offset = u64::from(row * SURFACE_PITCH + col * 4);
            self.expect(m, "blit fill", SURFACE_PAGE, offset, color)?;
        }
        self.expect(m, "MI_FLUSH_DW post-sync", RESULT_PAGE, 16, tag + 2)?;
        Ok(2)
    }

    /// A store aimed at another vGPU's aperture: must be refused.
    pub fn attack(&self, m: &mut VgpuManager, victim_gm: u64) -> Result<(), DriverError> {
        let mut cmds = [encode::NOOP; 4];
        cmds.copy_from_slice(&encode::sdi(victim_gm, 0xdead_beef));
        self.submit(m, Engine::Render, &cmds)
    }

    /// Guest GM of this guest's result page (for another guest to attack).
    pub fn result_gm(&self) -> u64 {
        self.gm(RESULT_PAGE, 0)
    }

    /// Reads this guest's result word (to show an attack changed nothing).
    pub fn result_word(&self, m: &VgpuManager) -> Result<u32, DriverError> {
        self.read_u32(m, RESULT_PAGE, 0)
    }

    /// Index of the vGPU this guest drives.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// What the built-in scenario showed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScenarioReport {
    /// Guests whose workload ran with the exact expected results.
    pub guests_ok: usize,
    /// Submissions verified.
    pub submissions: u32,
    /// Whether a hostile submission was refused with the others unharmed.
    pub isolation_shown: bool,
}

/// Where the scenario went wrong.
#[derive(Debug)]
pub struct ScenarioError {
    /// vGPU index.
    pub vgpu: usize,
    /// What happened.
    pub error: DriverError,
}

impl core::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "vgpu{}: {}", self.vgpu, self.error)
    }
}

/// Every vGPU's guest boots and runs its smoke workload; then, with two or
/// more vGPUs, the last guest submits a store into the first guest's
/// memory, which must be rejected (that vGPU stops), leave the first
/// guest's memory untouched, and leave the first vGPU working.
pub fn scenario(m: &mut VgpuManager) -> Result<ScenarioReport, ScenarioError> {
    let mut report = ScenarioReport::default();
    let mut drivers: heapless::Vec<GuestDriver, { gpu::partition::MAX_VGPUS }> =
        heapless::Vec::new();
    for vgpu in 0..m.vgpus.len() {
        let fail = |error| ScenarioError { vgpu, error };
        let driver = GuestDriver::boot(m, vgpu).map_err(fail)?;
        report.submissions += driver.smoke(m).map_err(fail)?;
        report.guests_ok += 1;
        defmt::info!(
            "workload vgpu{=usize}: render store, PIPE_CONTROL, color blit, MI_FLUSH_DW verified",
            vgpu
        );
        // Capacity is MAX_VGPUS, the most vGPUs there can be.
        let _ = drivers.push(driver);
    }
    let (Some(&victim), Some(&attacker)) = (drivers.first(), drivers.last()) else {
        return Ok(report);
    };
    if victim.index() == attacker.index() {
        return Ok(report);
    }
    let fail_attacker = |error| ScenarioError {
        vgpu: attacker.index(),
        error,
    };
    let fail_victim = |error| ScenarioError {
        vgpu: victim.index(),
        error,
    };
    let before = victim.result_word(m).map_err(fail_victim)?;
    match attacker.attack(m, victim.result_gm()) {
        // The scanner refuses it at dispatch: the vGPU stops with it.
        Err(DriverError::Vgpu(VgpuError::Stopped(FailReason::Rejected(rejection)))) => {
            defmt::info!(
                "isolation: vgpu{=usize} store into vgpu{=usize}'s memory rejected ({}); vgpu{=usize} stopped",
                attacker.index(),
                victim.index(),
                defmt::Display2Format(&rejection),
                attacker.index()
            );
            if let Some(full) = m.gate.last_rejection() {
                defmt::info!("isolation: scanner said: {}", defmt::Display2Format(full));
            }
        }
        Err(other) => return Err(fail_attacker(other)),
        Ok(()) => {
            return Err(fail_attacker(DriverError::Wrong {
                what: "hostile store was not rejected",
                want: 0,
                got: 1,
            }))
        }
    }
    if !matches!(m.vgpus[attacker.index()].vgpu.state(), VgpuState::Failed(_)) {
        return Err(fail_attacker(DriverError::Wrong {
            what: "attacker vGPU still running",
            want: 0,
            got: 1,
        }));
    }
    let after = victim.result_word(m).map_err(fail_victim)?;
    if after != before {
        return Err(fail_victim(DriverError::Wrong {
            what: "victim memory changed by the attack",
            want: u64::from(before),
            got: u64::from(after),
        }));
    }
    report.submissions += victim.smoke(m).map_err(fail_victim)?;
    defmt::info!(
        "isolation: vgpu{=usize} memory untouched and its workload still runs",
        victim.index()
    );
    report.isolation_shown = true;
    Ok(report)
}
