//! `IntelGen9`: the real-device backend over BAR0 MMIO (ARCHITECTURE.md
//! "GPU backends").
//!
//! The kernel implements [`Mmio`] over the mapped BAR0, the function's
//! PCI configuration space and the TSC (its only `unsafe` lives there) and
//! [`PhysMem`] over its frames, and gives every engine context a context
//! area ([`EngineContext`], a [`ContextTable`]): pages it owns,
//! [`context_pages`] per engine, mapped in the monitor's GM slice. One
//! logical ring context per ([`ContextId`], engine): the monitor's own and
//! one per vGPU slot, so what one vGPU's work leaves in an engine's context
//! (GPRs, predicates, pipeline state, all saved by the hardware in that
//! context's image) is restored only for that vGPU.
//!
//! The sequences follow i915 on Gen9 (facts from `intel_uncore.c`,
//! `gt/intel_reset.c`, `gt/intel_execlists_submission.c`, `gt/intel_lrc.c`,
//! `gt/intel_gtt.c`, `gt/intel_mocs.c`, `gt/intel_ggtt.c`; the code is our
//! own):
//! * init, in order: bus mastering and memory decoding on in the PCI
//!   command register (the engines fetch contexts, rings and batches by
//!   DMA); the GGTT size from GMCH_CTRL (a GGTT smaller than the 4 GiB of
//!   GM the partitioning assumes is refused); forcewake: every domain's
//!   requests cleared, then per domain wait for the ack to clear, request,
//!   wait for the ack, each wait bounded by time (i915's 50 ms), with the
//!   Gen9 fallback kick (toggle the fallback request bit, up to ten
//!   passes) when an ack does not come; a full GT reset, each engine first
//!   stopped (STOP_RING) and through the RING_RESET_CTL ready-to-reset
//!   handshake, since firmware leaves the GT in an unknown state; PAT and
//!   MOCS (i915's Gen9 tables); every GGTT entry pointed at a scratch page;
//!   per engine: execlists enabled (GFX_MODE), STOP_RING cleared, the
//!   status page, error reporting (EMR unmasks only the instruction
//!   error, EIR cleared), and the CSB pointers reset to the last entry;
//! * context images, Gen9 layout per engine ([`crate::regs::lrc`]): the
//!   monitor writes an image before its first use and before the first use
//!   after it was released or its work abandoned by a reset: every page
//!   zeroed, the LRI headers and register offsets of its engine, and
//!   CONTEXT_CONTROL with restore inhibit, since the hardware must not
//!   restore state it never saved; later submissions rewrite only the ring
//!   registers and keep what the hardware saved;
//! * submit: a memory barrier (the image's writes must reach memory before
//!   the engine reads it), then ELSP (element 1 = 0, element 0 high, low;
//!   the last write starts the engine). Descriptor: valid, force restore,
//!   legacy 32-bit addressing, privileged, LRCA; the upper dword is the
//!   context id, the submission id masked to its 21 bits;
//! * completion: the CSB from the read pointer to the write pointer (a
//!   write pointer outside the six entries means nothing was written since
//!   a reset), COMPLETE of our context id; the read pointer written back;
//! * errors: RING_EIR (a bad command: instruction error, header in
//!   IPEHR), RING_FAULT_REG whose engine field is the engine's hardware id
//!   ([`crate::regs::hw_engine_id`]), and a time limit per submission
//!   ([`SUBMISSION_TIME_LIMIT_NS`]) for a hang, which reports no error:
//!   each ends the submission as a [`GpuFault`];
//! * engine reset: STOP_RING (bounded wait for idle, not required: a hung
//!   engine may not stop), the RING_RESET_CTL handshake (700 us), GDRST of
//!   the engine (2 ms), the request cancelled; then the engine's MOCS,
//!   execlists, status page and error reporting again, and the CSB
//!   pointers reset;
//! * GGTT: PTEs are 64-bit writes at BAR0 + 8 MiB + 8 × index; an
//!   invalid PTE is written as the scratch page's (reads give it back as
//!   invalid); a flush writes GFX_FLSH_CNTL and reads it back;
//! * scheduling ([`crate::sched`]): one submission per engine at a time,
//!   in element 0 of the execlist port (element 1 stays empty).
//!
//! Missing before guest 3D work (i915 does these on Gen9; none is needed by
//! the MI and blitter work the monitor submits today):
//! * the Gen9 workarounds of `gt/intel_workarounds.c`: the engine and GT
//!   ones (`gen9_gt_workarounds_init`, `skl_gt_workarounds_init` /
//!   `kbl_gt_workarounds_init`: GAM_ECOCHK, GEN8_UCGCTL6, GEN9_GAMT_ECO_REG,
//!   the MMCD/L3 ones), the context ones written into every context
//!   (`gen9_ctx_workarounds_init`: COMMON_SLICE_CHICKEN2, HDC_CHICKEN0,
//!   CACHE_MODE_0/1, GEN8_ROW_CHICKEN, GEN9_HALF_SLICE_CHICKEN5/7...),
//!   the whitelist of non-privileged registers (RING_FORCE_TO_NONPRIV)
//!   and the per-context workaround batch (`gen9_init_indirectctx_bb`:
//!   WaFlushCoherentL3CacheLinesAtContextSwitch, WaClearSlmSpaceAtContextSwitch);
//! * the golden render context: i915 runs the render state batch
//!   (`gt/gen9_renderstate.c`, through `intel_renderstate`) once and keeps
//!   the image the hardware saved as every new render context's default
//!   state; our render contexts start from restore inhibit instead, so the
//!   3D state of a new context is whatever the hardware's defaults are;
//! * RPCS (R_PWR_CLK_STATE, slice / subslice / EU configuration) in the
//!   render image, and the OA registers;
//! * power management (RC6, RPS), interrupts, the HWSP copy of the CSB,
//!   the second execlist element and preemption.
//!
//! Nested, on a GVT-g vGPU ([`DeviceKind::Vgpu`]; GVT-g's `vgpu.c`,
//! `handlers.c`, i915's `i915_vgpu.c`, `gen8_ppgtt.c` for the facts):
//! * PVINFO (magic, version, the balloon) is read before any write, and
//!   execlists are enabled only after it (GVT-g puts a guest that enables
//!   them first into failsafe mode);
//! * left out, as a GVT-g guest i915 leaves them out: forcewake (its MMIO
//!   accessors on a vGPU take none; GVT-g emulates the acks), the GT reset,
//!   PAT and MOCS (GVT-g owns the real ones), GFX_FLSH_CNTL, EMR/EIR;
//! * the balloon ([`Balloon`], i915 `intel_vgt_balloon`): every GGTT
//!   write outside its aperture and hidden ranges is refused at
//!   [`Backend::write_pte`] and counted
//!   ([`IntelGen9::writes_outside_balloon`]), init points only its entries
//!   at the scratch page, and fence writes at or beyond its fence count
//!   are refused too; what the monitor places on the vGPU must pass
//!   [`Balloon::confines`];
//! * PPGTT: GVT-g runs only privileged, 4-level PPGTT contexts. The
//!   monitor's contexts use one PPGTT of its own
//!   ([`IntelGen9::set_ppgtt_root`], an empty PML4: its commands address
//!   GGTT), in the image's PDP0, descriptors with legacy-64-bit
//!   addressing; at init the root goes into PVINFO `pdp[0]` and
//!   `VGT_G2V_PPGTT_L4_PAGE_TABLE_CREATE` into g2v_notify (i915
//!   `gen8_ppgtt_notify_vgt`); it lives as long as the backend, so no
//!   DESTROY is sent. `VGT_G2V_EXECLIST_CONTEXT_CREATE`/`DESTROY` are not
//!   sent (GVT-g ignores them; i915 no longer sends them), nor
//!   display_ready (the monitor drives no display);
//! * errors: a vGPU shows neither EIR nor RING_FAULT_REG, so only the
//!   time limit ends a submission; it takes only a full GDRST (which
//!   resets all of it), so a faulted engine stays faulted.
//!
//! Tested on the executable device model [`crate::sim::device`] (the
//! rules it enforces are listed there), and nested on the project's own
//! [`crate::vgpu::Vgpu`] as the mdev stand-in. It has not been tried on
//! hardware yet.

use crate::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame};
use crate::backend::{
    for_each_gm_page, Backend, BackendError, ContextId, EngineStatus, FaultKind, GmAccessError,
    GpuFault, PhysMem, Submission, SubmissionId,
};
use crate::engine::Engine;
use crate::ggtt::{GgttFlush, HostPte, PteFlags};
use crate::regs::{
    caching, engine_ctl, forcewake, gdrst, gt, hw_engine_id, lrc, masked, pci, pvinfo, ring,
    MmioOffset, GGTT_BAR0_OFFSET, GGTT_WINDOW_SIZE,
};

mod selftest;
#[cfg(test)]
mod tests;

pub use selftest::{SelfTestArea, SelfTestError, SelfTestReport};

/// The device as the backend reaches it: BAR0, the function's PCI
/// configuration space, and the clock every wait on the hardware is
/// bounded by. The kernel implements it over the mapped BAR, its config
/// access and the TSC; tests over the device model.
pub trait Mmio {
    /// 32-bit read.
    fn read32(&mut self, offset: MmioOffset) -> u32;
    /// 32-bit write.
    fn write32(&mut self, offset: MmioOffset, value: u32);
    /// 64-bit read (GGTT entries).
    fn read64(&mut self, offset: MmioOffset) -> u64;
    /// 64-bit write (GGTT entries).
    fn write64(&mut self, offset: MmioOffset, value: u64);
    /// A dword of the function's PCI configuration space (`offset` dword
    /// aligned).
    fn config_read32(&mut self, offset: u16) -> u32;
    /// Writes a dword of the configuration space.
    fn config_write32(&mut self, offset: u16, value: u32);
    /// Monotonic nanoseconds.
    fn now_ns(&mut self) -> u64;
}

/// How long a forcewake ack may take (i915 `FORCEWAKE_ACK_TIMEOUT_MS`).
pub const FORCEWAKE_ACK_TIMEOUT_NS: u64 = 50_000_000;
/// Fallback kicks before a forcewake ack is declared lost (i915
/// `fw_domain_wait_ack_with_fallback`).
pub const FORCEWAKE_FALLBACK_PASSES: u64 = 10;
/// The request bit of the fallback kick (i915 `FORCEWAKE_KERNEL_FALLBACK`).
pub const FORCEWAKE_FALLBACK: u32 = 1 << 15;
/// How long an engine may take to report ready-to-reset (i915
/// `gen8_engine_reset_prepare`: 700 us).
pub const RESET_READY_TIMEOUT_NS: u64 = 700_000;
/// How long GDRST may take to clear (i915 `gen6_hw_domain_reset`: 2 ms).
pub const GDRST_TIMEOUT_NS: u64 = 2_000_000;
/// How long a stopping command streamer may take to go idle (i915's fast
/// timeout of `__intel_engine_stop_cs`, 1 ms).
pub const STOP_RING_TIMEOUT_NS: u64 = 1_000_000;
/// The default time a submission may run before it counts as hung
/// ([`IntelGen9::set_time_limit`]): i915's default preemption timeout is
/// 640 ms; the monitor's submissions are scanned, bounded streams.
pub const SUBMISSION_TIME_LIMIT_NS: u64 = 500_000_000;

/// Pages of one logical ring context of `engine`, physically contiguous
/// and mapped contiguously in GM: the per-process status page plus the
/// register state and the engine state the hardware saves (i915
/// `GEN9_LR_CONTEXT_RENDER_SIZE` is 22 pages for render,
/// `GEN8_LR_CONTEXT_OTHER_SIZE` 2 for the others; one more page for the
/// status page, rounded up).
pub const fn context_pages(engine: Engine) -> u64 {
    match engine {
        Engine::Render => 24,
        _ => 4,
    }
}

/// One engine's logical ring context: `lrca` is its GGTT address (page 0 is
/// the per-process HW status page, page 1 the register state), `image` the
/// CPU (physical) address of the same first page; [`context_pages`] pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineContext {
    /// GGTT address of the context (page aligned, in the monitor's slice).
    pub lrca: HostGm,
    /// Physical address of the context's first page.
    pub image: PhysAddr,
}

/// The context areas of every context on every engine:
/// `table[context.index()][engine.index()]`.
pub type ContextTable = [[EngineContext; Engine::COUNT]; ContextId::COUNT];

/// What the device is, as its PVINFO page says (i915 `intel_vgpu_detect`
/// reads the page on every device before it writes anything: a GVT-g
/// guest that enables execlists without having read it is put in
/// failsafe mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The physical function: the monitor owns the whole GT.
    Physical,
    /// A GVT-g vGPU: it owns only what its PVINFO balloon gives.
    Vgpu(Balloon),
}

/// The resources PVINFO gives a vGPU (`struct vgt_if` `avail_rs`): the
/// only GM and fences the backend uses on it (i915 `intel_vgt_balloon`
/// reserves the rest of GM so that nothing is ever placed there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balloon {
    /// The vGPU's id on its host.
    pub vgt_id: u32,
    /// Its slice of the aperture.
    pub aperture: HostGmRange,
    /// Its slice of hidden GM.
    pub hidden: HostGmRange,
    /// Fences `0..fences` are its own.
    pub fences: u32,
}

impl Balloon {
    /// Whether GGTT entry `index` maps GM of the balloon.
    pub fn holds(&self, index: HostGgttIndex) -> bool {
        let gm = index.gm();
        self.aperture.contains(gm) || self.hidden.contains(gm)
    }

    /// Whether all of `range` lies in one slice of the balloon: what the
    /// monitor places on the vGPU (its contexts, rings, shadows, its own
    /// vGPUs' partitions) must pass this.
    pub fn confines(&self, range: HostGmRange) -> bool {
        self.aperture.contains_range(range) || self.hidden.contains_range(range)
    }
}

/// A step of the sequences, which a test may leave out to show that the
/// device model catches its absence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // reason: only tests leave steps out
enum Step {
    Probe,
    Balloon,
    BusMaster,
    Forcewake,
    AckClearWait,
    FallbackKick,
    GtReset,
    ResetHandshake,
    Caching,
    RestoreInhibit,
    ExeclistsAfterReset,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    id: SubmissionId,
    context: ContextId,
    context_id: u32,
    started_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct EngineState {
    pending: Option<Pending>,
    last_completed: Option<SubmissionId>,
    fault: Option<GpuFault>,
    csb_read: u32,
}

/// The real Gen9 device.
#[derive(Debug)]
pub struct IntelGen9<M: Mmio, P: PhysMem> {
    mmio: M,
    mem: P,
    contexts: ContextTable,
    /// Where every GGTT entry without a mapping points.
    scratch: PhysFrame,
    /// Whether the monitor has written the image since its last release
    /// (`[context][engine]`); a submission writes it first if not.
    image_ready: [[bool; Engine::COUNT]; ContextId::COUNT],
    engines: [EngineState; Engine::COUNT],
    initialised: bool,
    /// What [`IntelGen9::init`] found.
    kind: DeviceKind,
    /// The PML4 of the monitor's own PPGTT on a vGPU (a zeroed frame the
    /// monitor owns: its commands address GGTT only).
    ppgtt_root: Option<PhysFrame>,
    /// GGTT writes refused because they fall outside the balloon.
    outside_balloon: u32,
    next_submission: u64,
    time_limit_ns: u64,
    #[cfg(test)]
    omit: Option<Step>,
}

impl<M: Mmio, P: PhysMem> IntelGen9<M, P> {
    /// A backend over `mmio` and `mem`, with one context area per context
    /// and engine, and `scratch` (a frame the monitor owns and never
    /// hands out) behind every unused GGTT entry.
    pub fn new(mmio: M, mem: P, contexts: ContextTable, scratch: PhysFrame) -> Self {
        IntelGen9 {
            mmio,
            mem,
            contexts,
            scratch,
            image_ready: [[false; Engine::COUNT]; ContextId::COUNT],
            engines: [EngineState {
                pending: None,
                last_completed: None,
                fault: None,
                csb_read: engine_ctl::CSB_RESET_VALUE,
            }; Engine::COUNT],
            initialised: false,
            kind: DeviceKind::Physical,
            ppgtt_root: None,
            outside_balloon: 0,
            next_submission: 1,
            time_limit_ns: SUBMISSION_TIME_LIMIT_NS,
            #[cfg(test)]
            omit: None,
        }
    }

    /// The device accessor.
    pub fn mmio(&self) -> &M {
        &self.mmio
    }

    /// Mutable access to the device (tests let model time pass).
    pub fn mmio_mut(&mut self) -> &mut M {
        &mut self.mmio
    }

    /// The memory.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// Mutable access to the memory (the kernel gives the GPU more frames).
    pub fn mem_mut(&mut self) -> &mut P {
        &mut self.mem
    }

    /// The frame of the PML4 the monitor's contexts use when the device is
    /// a GVT-g vGPU (GVT-g runs its guests' work in PPGTT contexts only);
    /// needed before [`IntelGen9::init`] there, unused on the physical
    /// device.
    pub fn set_ppgtt_root(&mut self, pml4: PhysFrame) {
        self.ppgtt_root = Some(pml4);
    }

    /// What [`IntelGen9::init`] found the device to be.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// GGTT and fence writes the backend refused because they fall outside
    /// the vGPU's balloon (each one a monitor bug: its GM placement must
    /// come from [`Balloon::confines`], its fences below
    /// [`Balloon::fences`]).
    pub fn writes_outside_balloon(&self) -> u32 {
        self.outside_balloon
    }

    fn balloon(&self) -> Option<Balloon> {
        match self.kind {
            DeviceKind::Vgpu(b) => Some(b),
            DeviceKind::Physical => None,
        }
    }

    /// From now on a submission that runs longer than `ns` is declared
    /// hung (its engine faulted until reset).
    pub fn set_time_limit(&mut self, ns: u64) {
        self.time_limit_ns = ns;
    }

    fn does(&self, step: Step) -> bool {
        #[cfg(test)]
        {
            self.omit != Some(step)
        }
        #[cfg(not(test))]
        {
            let _ = step;
            true
        }
    }

    /// Reads the PVINFO page (BAR0 + 0x78000) and nothing else: magic,
    /// version, and on a vGPU its balloon.
    pub fn probe(&mut self) -> Result<DeviceKind, BackendError> {
        let at = |rel: u32| MmioOffset::reg(pvinfo::PAGE + rel);
        if self.mmio.read64(at(pvinfo::MAGIC_OFFSET)) != pvinfo::MAGIC {
            return Ok(DeviceKind::Physical);
        }
        let version = self.mmio.read32(at(pvinfo::VERSION));
        if version & 0xffff != u32::from(pvinfo::VERSION_MAJOR) {
            return Err(BackendError::Unsupported(
                "a GVT-g vGPU whose PVINFO major version is not 1",
            ));
        }
        let mut range = |base: u32, size: u32| {
            let base = u64::from(self.mmio.read32(at(base)));
            let size = u64::from(self.mmio.read32(at(size)));
            HostGm::new(base)
                .and_then(|b| HostGmRange::new(b, size))
                .map_err(|_| BackendError::Unsupported("a GVT-g balloon outside GM"))
        };
        let aperture = range(pvinfo::APERTURE_BASE, pvinfo::APERTURE_SIZE)?;
        let hidden = range(pvinfo::HIDDEN_BASE, pvinfo::HIDDEN_SIZE)?;
        Ok(DeviceKind::Vgpu(Balloon {
            vgt_id: self.mmio.read32(at(pvinfo::VGT_ID)),
            aperture,
            hidden,
            fences: self.mmio.read32(at(pvinfo::FENCE_NUM)),
        }))
    }

    /// Brings the device up (see the module docs for the order and why).
    /// It reads PVINFO ([`IntelGen9::probe`]) before anything else; on a
    /// GVT-g vGPU it runs nested (see the module docs).
    pub fn init(&mut self) -> Result<(), BackendError> {
        self.kind = if self.does(Step::Probe) {
            self.probe()?
        } else {
            DeviceKind::Physical
        };
        if let DeviceKind::Vgpu(balloon) = self.kind {
            return self.init_nested(balloon);
        }
        if self.does(Step::BusMaster) {
            let command = self.mmio.config_read32(pci::COMMAND) & 0xffff;
            self.mmio.config_write32(
                pci::COMMAND,
                command | pci::COMMAND_MEMORY | pci::COMMAND_BUS_MASTER,
            );
        }
        let gmch = self.mmio.config_read32(pci::GMCH_CTRL) & 0xffff;
        if pci::ggtt_bytes(gmch) < GGTT_WINDOW_SIZE {
            return Err(BackendError::Unsupported(
                "a GGTT smaller than 4 GiB of GM (GMCH_CTRL GGMS below 8 MiB)",
            ));
        }
        if self.does(Step::Forcewake) {
            self.forcewake_all()?;
        }
        if self.does(Step::GtReset) {
            self.full_reset()?;
        }
        if self.does(Step::Caching) {
            self.mmio.write32(caching::PAT_LO, caching::PAT as u32);
            self.mmio
                .write32(caching::PAT_HI, (caching::PAT >> 32) as u32);
            for i in 0..caching::MOCS_ENTRIES / 2 {
                let (_, low) = caching::mocs_entry(2 * i);
                let (_, high) = caching::mocs_entry(2 * i + 1);
                self.mmio
                    .write32(caching::l3cc(i), u32::from(low) | u32::from(high) << 16);
            }
        }
        let scratch = self.scratch_pte().raw();
        for index in 0..GGTT_WINDOW_SIZE / 8 {
            self.mmio.write64(ggtt_entry(index), scratch);
        }
        self.flush();
        for engine in Engine::ALL {
            self.resume(engine);
        }
        self.initialised = true;
        Ok(())
    }

    /// Init on a GVT-g vGPU, as a GVT-g guest i915 does it: no forcewake
    /// (its MMIO accessors on a vGPU take none; GVT-g emulates the acks),
    /// no GT reset, PAT or MOCS (GVT-g emulates or refuses them and owns the
    /// real ones), no GFX_FLSH_CNTL; bus mastering; only the balloon's GGTT
    /// entries pointed at the scratch page; the monitor's PPGTT created and
    /// announced (pdp[0], then `VGT_G2V_PPGTT_L4_PAGE_TABLE_CREATE`, as
    /// i915's `gen8_ppgtt_notify_vgt` does); then, PVINFO having been read,
    /// execlists per engine. Nothing is written before the probe.
    fn init_nested(&mut self, balloon: Balloon) -> Result<(), BackendError> {
        let root = self.ppgtt_root.ok_or(BackendError::Unsupported(
            "a GVT-g vGPU without a PPGTT root frame (IntelGen9::set_ppgtt_root)",
        ))?;
        self.mem
            .write(root.at(0), &[0u8; 4096])
            .map_err(|_| BackendError::NotInitialised)?;
        let command = self.mmio.config_read32(pci::COMMAND) & 0xffff;
        self.mmio.config_write32(
            pci::COMMAND,
            command | pci::COMMAND_MEMORY | pci::COMMAND_BUS_MASTER,
        );
        let scratch = self.scratch_pte().raw();
        for index in 0..GGTT_WINDOW_SIZE / 8 {
            let ours = HostGgttIndex::new(u64::from(index)).is_ok_and(|i| balloon.holds(i));
            if ours || !self.does(Step::Balloon) {
                self.mmio.write64(ggtt_entry(index), scratch);
            }
        }
        let at = |rel: u32| MmioOffset::reg(pvinfo::PAGE + rel);
        let pml4 = root.at(0).raw();
        self.mmio.write32(at(pvinfo::PDP0_LO), pml4 as u32);
        self.mmio.write32(at(pvinfo::PDP0_HI), (pml4 >> 32) as u32);
        self.mmio
            .write32(at(pvinfo::G2V_NOTIFY), pvinfo::G2V_PPGTT_L4_CREATE);
        for engine in Engine::ALL {
            self.resume(engine);
        }
        self.initialised = true;
        Ok(())
    }

    /// Waits until `reg & mask == want`, for at most `timeout_ns`.
    fn wait_for(&mut self, reg: MmioOffset, mask: u32, want: u32, timeout_ns: u64) -> bool {
        let start = self.mmio.now_ns();
        loop {
            if self.mmio.read32(reg) & mask == want {
                return true;
            }
            if self.mmio.now_ns().saturating_sub(start) > timeout_ns {
                return false;
            }
        }
    }

    fn delay(&mut self, ns: u64) {
        let start = self.mmio.now_ns();
        while self.mmio.now_ns().saturating_sub(start) < ns {}
    }

    fn wait_ack(&mut self, d: forcewake::Domain, bit: u32, set: bool) -> bool {
        let want = if set { bit } else { 0 };
        self.wait_for(d.ack(), bit, want, FORCEWAKE_ACK_TIMEOUT_NS)
    }

    /// The Gen9 fallback kick: toggling the fallback request makes the
    /// power state machine deliver an ack it dropped (i915
    /// `WaRsForcewakeAddDelayForAck`). Whether the kernel ack reached
    /// `set` meanwhile.
    fn wait_ack_with_fallback(&mut self, d: forcewake::Domain, set: bool) -> bool {
        let want = if set { forcewake::KERNEL } else { 0 };
        for pass in 1..=FORCEWAKE_FALLBACK_PASSES {
            self.wait_ack(d, FORCEWAKE_FALLBACK, false);
            self.mmio
                .write32(d.request(), masked(FORCEWAKE_FALLBACK, FORCEWAKE_FALLBACK));
            self.delay(10_000 * pass);
            self.wait_ack(d, FORCEWAKE_FALLBACK, true);
            let detected = self.mmio.read32(d.ack()) & forcewake::KERNEL == want;
            self.mmio
                .write32(d.request(), masked(FORCEWAKE_FALLBACK, 0));
            if detected {
                return true;
            }
        }
        false
    }

    fn wait_kernel_ack(&mut self, d: forcewake::Domain, set: bool) -> bool {
        self.wait_ack(d, forcewake::KERNEL, set)
            || (self.does(Step::FallbackKick) && self.wait_ack_with_fallback(d, set))
    }

    /// Clears every request (what firmware or an earlier driver left),
    /// then wakes each domain: ack clear, request, ack set.
    fn forcewake_all(&mut self) -> Result<(), BackendError> {
        for d in forcewake::Domain::ALL {
            self.mmio.write32(d.request(), masked(0xffff, 0));
        }
        for d in forcewake::Domain::ALL {
            if self.does(Step::AckClearWait) && !self.wait_kernel_ack(d, false) {
                return Err(BackendError::Timeout {
                    what: "forcewake ack to clear",
                });
            }
            self.mmio
                .write32(d.request(), masked(forcewake::KERNEL, forcewake::KERNEL));
        }
        for d in forcewake::Domain::ALL {
            if !self.wait_kernel_ack(d, true) {
                return Err(BackendError::Timeout {
                    what: "forcewake ack",
                });
            }
        }
        Ok(())
    }

    /// Asks the command streamer to stop; a hung one may not, which the
    /// reset then handles (i915 goes on too).
    fn stop_engine(&mut self, engine: Engine) {
        let mi_mode = ring::reg(engine, ring::MI_MODE);
        self.mmio.write32(
            mi_mode,
            masked(engine_ctl::STOP_RING, engine_ctl::STOP_RING),
        );
        self.wait_for(
            mi_mode,
            engine_ctl::MODE_IDLE,
            engine_ctl::MODE_IDLE,
            STOP_RING_TIMEOUT_NS,
        );
    }

    /// The RING_RESET_CTL handshake: request, wait for ready-to-reset.
    fn prepare_reset(&mut self, engine: Engine) -> Result<(), BackendError> {
        if !self.does(Step::ResetHandshake) {
            return Ok(());
        }
        let reg = ring::reg(engine, engine_ctl::RESET_CTL);
        self.mmio.write32(
            reg,
            masked(engine_ctl::REQUEST_RESET, engine_ctl::REQUEST_RESET),
        );
        if self.wait_for(
            reg,
            engine_ctl::READY_TO_RESET,
            engine_ctl::READY_TO_RESET,
            RESET_READY_TIMEOUT_NS,
        ) {
            Ok(())
        } else {
            Err(BackendError::Timeout {
                what: "engine ready-to-reset",
            })
        }
    }

    fn cancel_reset(&mut self, engine: Engine) {
        self.mmio.write32(
            ring::reg(engine, engine_ctl::RESET_CTL),
            masked(engine_ctl::REQUEST_RESET, 0),
        );
    }

    /// GDRST `bits`, bounded.
    fn gdrst(&mut self, bits: u32) -> Result<(), BackendError> {
        self.mmio.write32(gdrst::OFFSET, bits);
        if self.wait_for(gdrst::OFFSET, bits, 0, GDRST_TIMEOUT_NS) {
            Ok(())
        } else {
            Err(BackendError::Timeout { what: "GDRST" })
        }
    }

    /// Resets the whole GT: every engine stopped and ready first.
    fn full_reset(&mut self) -> Result<(), BackendError> {
        for engine in Engine::ALL {
            self.stop_engine(engine);
            self.prepare_reset(engine)?;
        }
        let done = self.gdrst(gdrst::FULL);
        for engine in Engine::ALL {
            self.cancel_reset(engine);
        }
        done
    }

    /// What an engine needs after power-on or a reset: its MOCS, execlists,
    /// the status page, error reporting, the CSB pointers.
    fn resume(&mut self, engine: Engine) {
        let nested = self.balloon().is_some();
        if !nested && self.does(Step::Caching) {
            for i in 0..caching::MOCS_ENTRIES {
                let (control, _) = caching::mocs_entry(i);
                self.mmio.write32(caching::mocs(engine, i), control);
            }
        }
        let monitor = self.contexts[ContextId::MONITOR.index()][engine.index()];
        if !self.initialised || self.does(Step::ExeclistsAfterReset) {
            self.mmio.write32(
                ring::reg(engine, ring::MODE),
                masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE),
            );
        }
        self.mmio.write32(
            ring::reg(engine, ring::MI_MODE),
            masked(engine_ctl::STOP_RING, 0),
        );
        self.mmio
            .write32(ring::reg(engine, ring::HWS_PGA), monitor.lrca.raw() as u32);
        let _ = self.mmio.read32(ring::reg(engine, ring::HWS_PGA));
        // Errors: clear what is left, report only instruction errors. A
        // vGPU does not give its guest the error registers.
        if !nested {
            self.mmio
                .write32(ring::reg(engine, engine_ctl::EMR), u32::MAX);
            self.mmio.write32(ring::reg(engine, ring::EIR), u32::MAX);
            self.mmio.write32(
                ring::reg(engine, engine_ctl::EMR),
                !engine_ctl::ERROR_INSTRUCTION,
            );
        }
        let reset = engine_ctl::CSB_RESET_VALUE;
        let csb_ptr = ring::reg(engine, ring::CSB_PTR);
        self.mmio
            .write32(csb_ptr, 0xffff << 16 | reset << 8 | reset);
        let _ = self.mmio.read32(csb_ptr);
        self.engines[engine.index()].csb_read = reset;
    }

    fn area(&self, context: ContextId, engine: Engine) -> EngineContext {
        self.contexts[context.index()][engine.index()]
    }

    fn put(
        &mut self,
        (context, engine): (ContextId, Engine),
        dword: usize,
        value: u32,
    ) -> Result<(), BackendError> {
        let at = self
            .area(context, engine)
            .image
            .checked_add(4096 + 4 * dword as u64)
            .ok_or(BackendError::NotInitialised)?;
        self.mem
            .write(at, &value.to_le_bytes())
            .map_err(|_| BackendError::NotInitialised)
    }

    /// Writes the image of `context` on `engine` as a fresh context: every
    /// page zeroed, the Gen9 register state of the engine, restore
    /// inhibit (i915 `lrc_init_state` without a default state).
    fn write_fresh_image(
        &mut self,
        context: ContextId,
        engine: Engine,
    ) -> Result<(), BackendError> {
        let image = self.area(context, engine).image;
        let zero = [0u8; 4096];
        for page in 0..context_pages(engine) {
            let at = image
                .checked_add(page * 4096)
                .ok_or(BackendError::NotInitialised)?;
            self.mem
                .write(at, &zero)
                .map_err(|_| BackendError::NotInitialised)?;
        }
        let slot = (context, engine);
        for block in lrc::blocks(engine) {
            self.put(slot, block.at, lrc::lri(block.regs.len(), block.posted))?;
            for (i, rel) in block.regs.iter().enumerate() {
                self.put(slot, block.at + 1 + 2 * i, engine.mmio_base() + rel)?;
            }
        }
        let inhibit = if self.does(Step::RestoreInhibit) {
            lrc::CTX_CTRL_RESTORE_INHIBIT
        } else {
            0
        };
        let control = masked(
            lrc::CTX_CTRL_INHIBIT_SYN_CTX_SWITCH,
            lrc::CTX_CTRL_INHIBIT_SYN_CTX_SWITCH,
        ) | masked(lrc::CTX_CTRL_RESTORE_INHIBIT, inhibit)
            | masked(lrc::CTX_CTRL_SAVE_INHIBIT | lrc::CTX_CTRL_RS_CTX_ENABLE, 0);
        self.put(slot, lrc::CONTEXT_CONTROL, control)?;
        self.put(slot, lrc::MI_MODE, masked(engine_ctl::STOP_RING, 0))
    }

    fn scratch_pte(&self) -> HostPte {
        HostPte::map(self.scratch, PteFlags::NONE)
    }

    /// The PTE as the backend's users see it: the scratch page is no
    /// mapping.
    fn pte(&mut self, index: HostGgttIndex) -> HostPte {
        unscratched(
            HostPte::from_raw(self.mmio.read64(ggtt_offset(index))),
            self.scratch,
        )
    }

    fn flush(&mut self) {
        if self.balloon().is_some() {
            // The vGPU applies each GGTT write at once and refuses the
            // register.
            return;
        }
        self.mmio.write32(gt::GFX_FLSH_CNTL, 1);
        let _ = self.mmio.read32(gt::GFX_FLSH_CNTL);
    }

    fn fault(&mut self, engine: Engine, kind: FaultKind, address: Option<u64>) -> EngineStatus {
        let e = self.engines[engine.index()];
        let Some(p) = e.pending else {
            return EngineStatus::Idle {
                last_completed: e.last_completed,
            };
        };
        let f = GpuFault {
            engine,
            context: p.context,
            submission: p.id,
            kind,
            address,
            header: self.mmio.read32(ring::reg(engine, ring::IPEHR)),
        };
        let e = &mut self.engines[engine.index()];
        e.fault = Some(f);
        EngineStatus::Faulted(f)
    }
}

/// BAR0 offset of GGTT entry `index`.
fn ggtt_entry(index: u32) -> MmioOffset {
    // In range: index < 1 Mi, so the offset is < 16 MiB.
    MmioOffset::new(GGTT_BAR0_OFFSET + 8 * index).unwrap_or(MmioOffset::reg(0))
}

fn ggtt_offset(index: HostGgttIndex) -> MmioOffset {
    ggtt_entry(index.raw())
}

impl<M: Mmio, P: PhysMem> Backend for IntelGen9<M, P> {
    fn read_reg(&mut self, reg: MmioOffset) -> u32 {
        self.mmio.read32(reg)
    }
    fn write_reg(&mut self, reg: MmioOffset, value: u32) {
        let foreign_fence = crate::regs::fence::decode(reg.raw())
            .zip(self.balloon())
            .is_some_and(|((index, _), b)| index >= b.fences);
        if foreign_fence {
            // Fences beyond PVINFO's fence_num are not the vGPU's.
            self.outside_balloon = self.outside_balloon.saturating_add(1);
            return;
        }
        self.mmio.write32(reg, value);
    }
    fn read_pte(&mut self, index: HostGgttIndex) -> HostPte {
        self.pte(index)
    }
    fn write_pte(&mut self, index: HostGgttIndex, pte: HostPte) -> GgttFlush {
        // No entry is left without a page behind it (i915 points cleared
        // ranges at scratch), so a stray access never reaches memory the
        // monitor did not give the GPU.
        let pte = if pte.is_present() {
            pte
        } else {
            self.scratch_pte()
        };
        if self.balloon().is_some_and(|b| !b.holds(index)) {
            // Not the vGPU's GM: GVT-g would stop the vGPU. Refused here,
            // at the one place every GGTT write passes, and counted.
            self.outside_balloon = self.outside_balloon.saturating_add(1);
            return GgttFlush::new();
        }
        self.mmio.write64(ggtt_offset(index), pte.raw());
        GgttFlush::new()
    }
    fn flush_ggtt(&mut self, flush: GgttFlush) {
        flush.ignore();
        self.flush();
    }
    fn read_gm(&mut self, addr: HostGm, buf: &mut [u8]) -> Result<(), GmAccessError> {
        let scratch = self.scratch;
        let mmio = &mut self.mmio;
        let mem = &self.mem;
        for_each_gm_page(
            addr,
            buf.len(),
            |i| unscratched(HostPte::from_raw(mmio.read64(ggtt_offset(i))), scratch),
            |phys, at, len| mem.read(phys, &mut buf[at..at + len]),
        )
    }
    fn write_gm(&mut self, addr: HostGm, data: &[u8]) -> Result<(), GmAccessError> {
        let scratch = self.scratch;
        let mmio = &mut self.mmio;
        let mem = &mut self.mem;
        for_each_gm_page(
            addr,
            data.len(),
            |i| unscratched(HostPte::from_raw(mmio.read64(ggtt_offset(i))), scratch),
            |phys, at, len| mem.write(phys, &data[at..at + len]),
        )
    }

    fn phys_mem(&mut self) -> &mut dyn PhysMem {
        &mut self.mem
    }
    fn submit(&mut self, sub: &Submission) -> Result<SubmissionId, BackendError> {
        if !self.initialised {
            return Err(BackendError::NotInitialised);
        }
        if sub.ppgtt().is_some() {
            // The context image written here has no PDP block yet.
            return Err(BackendError::Unsupported("PPGTT contexts"));
        }
        let engine = sub.engine();
        let context = sub.context();
        let st = self.engines[engine.index()];
        if st.pending.is_some() || st.fault.is_some() {
            return Err(BackendError::EngineNotIdle(engine));
        }
        if !self.image_ready[context.index()][engine.index()] {
            self.write_fresh_image(context, engine)?;
            self.image_ready[context.index()][engine.index()] = true;
        }
        let id = SubmissionId(self.next_submission);
        self.next_submission += 1;
        let ring_ctl = (((sub.ring().len() / 4096 - 1) as u32) << 12) | ring::CTL_ENABLE;
        let slot = (context, engine);
        self.put(slot, lrc::RING_HEAD, sub.head())?;
        self.put(slot, lrc::RING_TAIL, sub.tail())?;
        self.put(slot, lrc::RING_START, sub.ring().base().raw() as u32)?;
        self.put(slot, lrc::RING_CTL, ring_ctl)?;
        // On a vGPU: the monitor's 4-level PPGTT (GVT-g refuses any other
        // addressing mode).
        let addressing = match (self.balloon(), self.ppgtt_root) {
            (Some(_), Some(root)) => {
                let pml4 = root.at(0).raw();
                self.put(slot, lrc::PDP0_UDW, (pml4 >> 32) as u32)?;
                self.put(slot, lrc::PDP0_LDW, pml4 as u32)?;
                lrc::DESC_LEGACY_64B
            }
            _ => lrc::DESC_LEGACY_32B,
        };
        let lrca = self.area(context, engine).lrca.raw() as u32;
        let lo =
            lrca | lrc::DESC_PRIVILEGE | addressing | lrc::DESC_FORCE_RESTORE | lrc::DESC_VALID;
        let context_id = id.0 as u32 & lrc::CONTEXT_ID_MASK;
        // The image must be in memory before the engine fetches it.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let elsp = ring::reg(engine, ring::ELSP);
        self.mmio.write32(elsp, 0);
        self.mmio.write32(elsp, 0);
        self.mmio.write32(elsp, context_id);
        self.mmio.write32(elsp, lo);
        let started_ns = self.mmio.now_ns();
        self.engines[engine.index()].pending = Some(Pending {
            id,
            context,
            context_id,
            started_ns,
        });
        Ok(id)
    }
    fn poll(&mut self, engine: Engine) -> EngineStatus {
        let st = self.engines[engine.index()];
        if let Some(f) = st.fault {
            return EngineStatus::Faulted(f);
        }
        let Some(pending) = st.pending else {
            return EngineStatus::Idle {
                last_completed: st.last_completed,
            };
        };
        // A vGPU shows its guest neither EIR nor the fault register: only
        // the time limit tells a hang there.
        let physical = self.balloon().is_none();
        if physical
            && self.mmio.read32(ring::reg(engine, ring::EIR)) & engine_ctl::ERROR_INSTRUCTION != 0
        {
            return self.fault(engine, FaultKind::InvalidCommand, None);
        }
        let fault = if physical {
            self.mmio.read32(gt::RING_FAULT)
        } else {
            0
        };
        if fault & gt::RING_FAULT_VALID != 0 && (fault >> 12) & 7 == hw_engine_id(engine) {
            let lo = self.mmio.read32(gt::FAULT_TLB_DATA0);
            let hi = self.mmio.read32(gt::FAULT_TLB_DATA1);
            let address = (u64::from(lo) << 12) | (u64::from(hi & 0xf) << 44);
            return self.fault(engine, FaultKind::InvalidPte, Some(address));
        }
        let write = self.mmio.read32(ring::reg(engine, ring::CSB_PTR)) & 0xf;
        let mut read = st.csb_read;
        let mut done = false;
        let mut steps = 0;
        // A write pointer outside the entries: nothing written since reset.
        while read != write && write < ring::CSB_ENTRIES && steps < ring::CSB_ENTRIES {
            read = (read + 1) % ring::CSB_ENTRIES;
            steps += 1;
            let status = self
                .mmio
                .read32(ring::reg(engine, ring::CSB_BASE + 8 * read));
            let ctx = self
                .mmio
                .read32(ring::reg(engine, ring::CSB_BASE + 8 * read + 4));
            if status & ring::CSB_STATUS_COMPLETE != 0 && ctx == pending.context_id {
                done = true;
            }
        }
        if steps > 0 {
            self.mmio
                .write32(ring::reg(engine, ring::CSB_PTR), masked(0xf00, read << 8));
            self.engines[engine.index()].csb_read = read;
        }
        if done {
            let e = &mut self.engines[engine.index()];
            e.pending = None;
            e.last_completed = Some(pending.id);
            return EngineStatus::Idle {
                last_completed: Some(pending.id),
            };
        }
        if self.mmio.now_ns().saturating_sub(pending.started_ns) > self.time_limit_ns {
            // Hung: a batch that never ends reports nothing.
            return self.fault(engine, FaultKind::Hang, None);
        }
        EngineStatus::Busy {
            running: pending.id,
        }
    }
    fn advance(&mut self, _now_ns: u64) {
        // The hardware runs by itself; its waits use the device's clock.
    }
    fn finished_at_ns(&mut self, _engine: Engine, _id: SubmissionId) -> Option<u64> {
        // The CSB carries no time; the scheduler charges up to its poll.
        None
    }
    fn reset_engine(&mut self, engine: Engine) {
        if self.balloon().is_some() {
            // The vGPU takes only a full GDRST, which resets all of it (its
            // GGTT too): the engine stays faulted and the monitor stops
            // using it.
            return;
        }
        self.stop_engine(engine);
        let reset = self
            .prepare_reset(engine)
            .and_then(|()| self.gdrst(gdrst::engine_bit(engine)));
        self.cancel_reset(engine);
        if reset.is_err() {
            // Bounded: a reset that never completes leaves the engine
            // faulted (the monitor stops using it).
            return;
        }
        let fault = self.mmio.read32(gt::RING_FAULT);
        if (fault >> 12) & 7 == hw_engine_id(engine) {
            self.mmio.write32(gt::RING_FAULT, 0);
        }
        self.resume(engine);
        let e = &mut self.engines[engine.index()];
        // The abandoned context's image was not saved: start it afresh.
        let abandoned = e.pending.map(|p| p.context).or(e.fault.map(|f| f.context));
        e.fault = None;
        e.pending = None;
        if let Some(context) = abandoned {
            self.image_ready[context.index()][engine.index()] = false;
        }
    }
    fn release_context(&mut self, context: ContextId) {
        for engine in Engine::ALL {
            let st = self.engines[engine.index()];
            let running = st.pending.is_some_and(|p| p.context == context)
                || st.fault.is_some_and(|f| f.context == context);
            if running {
                // The hardware must stop saving into the image before the
                // monitor rewrites it.
                self.reset_engine(engine);
            }
            self.image_ready[context.index()][engine.index()] = false;
        }
    }
}

fn unscratched(pte: HostPte, scratch: PhysFrame) -> HostPte {
    if pte.frame() == Some(scratch) {
        HostPte::INVALID
    } else {
        pte
    }
}
