//! The `IntelGen9` self-test the monitor runs on real hardware
//! (`selftest=gpu-intel-gen9`): identity, a forcewake round trip on every
//! domain, an MI_STORE_DATA_IMM on every engine through a GGTT slice the
//! monitor owns and its readback, and a context switch between two vGPU
//! contexts that must keep each one's GPR apart. Each step ends in a typed
//! error naming what the device did not do.

use super::{IntelGen9, Mmio};
use crate::addr::{HostGm, HostGmRange};
use crate::backend::{Backend, BackendError, ContextId, EngineStatus, PhysMem, Submission};
use crate::encode::{lri, sdi, srm, NOOP};
use crate::engine::Engine;
use crate::partition::VgpuId;
use crate::regs::{forcewake, masked, pci, ring};
use core::fmt;

/// Where the self-test works: two pages of GM the monitor owns, mapped
/// (a ring page, then a data page).
#[derive(Clone, Copy, Debug)]
pub struct SelfTestArea {
    /// First of the two pages.
    pub gm: HostGm,
}

/// What the self-test measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfTestReport {
    /// PCI device id.
    pub device: u16,
    /// "Skylake GT2" or "Kaby Lake GT2".
    pub family: &'static str,
    /// The slowest forcewake round trip (release, ack clear, request, ack).
    pub forcewake_round_trip_ns: u64,
    /// Per engine, from the ELSP write to the completion seen in the CSB.
    pub submission_ns: [u64; Engine::COUNT],
}

/// Why the self-test failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTestError {
    /// The function is not a supported Gen9 GT2 part.
    NotSupported { vendor: u16, device: u16, class: u8 },
    /// A forcewake ack did not come (or clear) in time.
    Forcewake(forcewake::Domain),
    /// The backend refused or failed a step.
    Backend(BackendError),
    /// A submission did not complete.
    Submission {
        engine: Engine,
        status: EngineStatus,
    },
    /// What the engine stored is not what it was told to store.
    Readback {
        engine: Engine,
        want: u32,
        found: u32,
    },
    /// One vGPU context saw another's register.
    ContextLeak { want: u32, found: u32 },
    /// The self-test's GM area is not mapped.
    Area,
}

impl fmt::Display for SelfTestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelfTestError::NotSupported {
                vendor,
                device,
                class,
            } => write!(
                f,
                "{vendor:04x}:{device:04x} (class {class:#04x}) is not a supported Gen9 GT2 part"
            ),
            SelfTestError::Forcewake(d) => write!(f, "forcewake ack of the {d:?} domain timed out"),
            SelfTestError::Backend(e) => write!(f, "{e}"),
            SelfTestError::Submission { engine, status } => {
                write!(f, "MI_STORE_DATA_IMM on {engine} did not complete: {status:?}")
            }
            SelfTestError::Readback {
                engine,
                want,
                found,
            } => write!(f, "{engine} stored {found:#x}, not {want:#x}"),
            SelfTestError::ContextLeak { want, found } => write!(
                f,
                "a vGPU context read GPR0 {found:#x}, not its own {want:#x}: contexts not kept apart"
            ),
            SelfTestError::Area => f.write_str("the self-test's GM pages are not mapped"),
        }
    }
}

const MAGIC: u32 = 0x5e1f_7e57;

impl<M: Mmio, P: PhysMem> IntelGen9<M, P> {
    /// Runs the self-test on an initialised backend whose engines are idle.
    pub fn self_test(&mut self, area: SelfTestArea) -> Result<SelfTestReport, SelfTestError> {
        let id = self.mmio.config_read32(pci::ID);
        let class = (self.mmio.config_read32(0x08) >> 24) as u8;
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        let supported =
            crate::device::supported(vendor, class, device).ok_or(SelfTestError::NotSupported {
                vendor,
                device,
                class,
            })?;
        let mut forcewake_round_trip_ns = 0;
        for d in forcewake::Domain::ALL {
            let start = self.mmio.now_ns();
            self.mmio.write32(d.request(), masked(forcewake::KERNEL, 0));
            let cleared = self.wait_kernel_ack(d, false);
            self.mmio
                .write32(d.request(), masked(forcewake::KERNEL, forcewake::KERNEL));
            if !cleared || !self.wait_kernel_ack(d, true) {
                return Err(SelfTestError::Forcewake(d));
            }
            forcewake_round_trip_ns = forcewake_round_trip_ns.max(self.mmio.now_ns() - start);
        }
        let ring_gm = area.gm;
        let data = area.gm.checked_add(4096).ok_or(SelfTestError::Area)?;
        let mut submission_ns = [0; Engine::COUNT];
        for engine in Engine::ALL {
            let want = MAGIC ^ engine.index() as u32;
            let at = data.raw() + 4 * engine.index() as u64;
            self.write_gm(at_gm(at)?, &[0; 4])
                .map_err(|_| SelfTestError::Area)?;
            let start = self.mmio.now_ns();
            self.run(ring_gm, engine, ContextId::MONITOR, &sdi(at, want))?;
            submission_ns[engine.index()] = self.mmio.now_ns() - start;
            let found = self.read_u32(at)?;
            if found != want {
                return Err(SelfTestError::Readback {
                    engine,
                    want,
                    found,
                });
            }
        }
        // Two vGPU contexts on the render engine, each its own GPR0.
        let render = Engine::Render;
        let gpr0 = render.mmio_base() + ring::GPR_BASE;
        let contexts = [VgpuId::new(0), VgpuId::new(1)].map(|v| v.map(ContextId::of_vgpu));
        let [Some(a), Some(b)] = contexts else {
            return Err(SelfTestError::Area);
        };
        let out = data.raw() + 0x100;
        self.run(ring_gm, render, a, &lri(gpr0, MAGIC))?;
        self.run(ring_gm, render, b, &lri(gpr0, !MAGIC))?;
        self.run(ring_gm, render, a, &srm(gpr0, out))?;
        let found = self.read_u32(out)?;
        self.release_context(a);
        self.release_context(b);
        if found != MAGIC {
            return Err(SelfTestError::ContextLeak { want: MAGIC, found });
        }
        Ok(SelfTestReport {
            device,
            family: supported.family,
            forcewake_round_trip_ns,
            submission_ns,
        })
    }

    /// Submits `cmds` from the ring page on `context` and waits (bounded by
    /// the backend's time limit) for the end.
    fn run(
        &mut self,
        ring_gm: HostGm,
        engine: Engine,
        context: ContextId,
        cmds: &[u32],
    ) -> Result<(), SelfTestError> {
        let mut bytes = [0u8; 64];
        let mut len = 0;
        for w in cmds
            .iter()
            .chain(core::iter::repeat(&NOOP))
            .take(cmds.len().div_ceil(2) * 2)
        {
            bytes[len..len + 4].copy_from_slice(&w.to_le_bytes());
            len += 4;
        }
        self.write_gm(ring_gm, &bytes[..len])
            .map_err(|_| SelfTestError::Area)?;
        let ring = HostGmRange::new(ring_gm, 4096).map_err(|_| SelfTestError::Area)?;
        let sub = Submission::new(engine, context, ring, 0, len as u32)
            .map_err(|_| SelfTestError::Area)?;
        let id = self.submit(&sub).map_err(SelfTestError::Backend)?;
        loop {
            match self.poll(engine) {
                EngineStatus::Busy { .. } => {}
                EngineStatus::Idle {
                    last_completed: Some(done),
                } if done == id => return Ok(()),
                status => {
                    if let EngineStatus::Faulted(_) = status {
                        self.reset_engine(engine);
                    }
                    return Err(SelfTestError::Submission { engine, status });
                }
            }
        }
    }

    fn read_u32(&mut self, at: u64) -> Result<u32, SelfTestError> {
        let mut b = [0u8; 4];
        self.read_gm(at_gm(at)?, &mut b)
            .map_err(|_| SelfTestError::Area)?;
        Ok(u32::from_le_bytes(b))
    }
}

fn at_gm(at: u64) -> Result<HostGm, SelfTestError> {
    HostGm::new(at).map_err(|_| SelfTestError::Area)
}
