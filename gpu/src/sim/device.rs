//! `SimDevice`: an executable Gen9 device model behind the BAR0 interface
//! the real-device backend drives ([`crate::intel::Mmio`]: registers, the
//! GGTT window at BAR0 + 8 MiB, PCI configuration space, a clock), with
//! [`SimGpu`] as its engines. Host tests run the real
//! [`crate::intel::IntelGen9`] on it: unlike a recording register model it
//! does what the hardware does with the sequence it is given, and refuses
//! what the hardware would punish, recording each refusal as a
//! [`Violation`] (the tests require none) and acting as the hardware
//! would (a read returns 0, a write is lost, an engine never starts or a
//! reset never completes).
//!
//! Rules it enforces (facts from i915 and the PRM, as `regs` cites them):
//! * forcewake: a register in a forcewake range (`regs::fw_ranges`) is
//!   reached only while its domains are awake. A request wakes its domain
//!   [`FORCEWAKE_NS`] later, when the ack sets; a release puts it to
//!   sleep at once while the ack clears only [`FORCEWAKE_NS`] later, so a
//!   driver that requests again without waiting for the ack to clear sees
//!   a stale ack on a sleeping domain. [`DeviceOptions::stuck_ack`] makes
//!   a domain drop the kernel request's ack until the fallback bit is
//!   toggled (the Gen9 erratum behind i915's fallback kick);
//! * bus mastering (PCI command bit 2) before the engines read or write
//!   memory: an ELSP write without it never starts;
//! * a full GT reset (GDRST bit 0) before the first submission (firmware
//!   leaves the GT in an unknown state), PAT and MOCS programmed before an
//!   engine runs, execlists enabled (GFX_MODE), one element in flight;
//! * ELSP and CSB: four dword writes per submission (element 1, element
//!   0; the last starts the engine); the descriptor is valid, names its
//!   addressing mode, keeps the context id to 21 bits; the context's
//!   register state page has the Gen9 layout of its engine
//!   (`regs::lrc::blocks`); a context the hardware never saved must be
//!   loaded with restore inhibit; loading restores the engine state the
//!   model kept for that image, restore inhibit starts it fresh. The CSB
//!   gets an idle-to-active entry at the start and a complete / active-
//!   to-idle entry at the end, with the descriptor's context id; after a
//!   reset both CSB pointers read 7 until software resets them;
//! * completion later: the engines run as the model's clock passes, and
//!   every access takes [`ACCESS_NS`] of it (reading the clock
//!   [`CLOCK_READ_NS`]), so a driver polling the CSB sees its work end;
//! * errors: a memory fault fills RING_FAULT_REG (hardware engine id) and
//!   FAULT_TLB_DATA0/1; a bad command sets RING_EIR / RING_ESR
//!   (instruction error) and IPEHR; the engine stops there. A hang (a
//!   batch that never ends, a semaphore that never passes) reports
//!   nothing: the engine just stays busy until reset;
//! * reset: an engine is reset (GDRST) only after its RING_RESET_CTL
//!   ready-to-reset handshake; otherwise the GDRST bit never clears. A
//!   reset abandons the work, disables execlists, clears the engine's
//!   MOCS and error registers and leaves the CSB pointers at 7;
//! * the GGTT window holds as many entries as GMCH_CTRL says; an access
//!   beyond is refused.
//!
//! Not modelled: the second execlist element (refused), preemption, the
//! status-page copy of the CSB, the GGTT TLB (PTEs are seen at once),
//! interrupts, display.

use super::SimGpu;
use crate::addr::{HostGgttIndex, HostGm, HostGmRange, PhysAddr, PhysFrame};
use crate::backend::{
    Backend, ContextId, EngineStatus, FaultKind, PhysMem, Submission, SubmissionId,
};
use crate::engine::Engine;
use crate::ggtt::HostPte;
use crate::intel::Mmio;
use crate::regs::{
    caching, engine_ctl, forcewake, fw_ranges, gdrst, gt, hw_engine_id, lrc, pci, ring, MmioOffset,
    GGTT_BAR0_OFFSET,
};
use std::collections::{HashMap, HashSet};

/// Model time one uncached MMIO or config access takes.
pub const ACCESS_NS: u64 = 100;
/// Model time one clock read takes.
pub const CLOCK_READ_NS: u64 = 20;
/// From a forcewake request (or release) to its ack.
pub const FORCEWAKE_NS: u64 = 5_000;
/// From RESET_CTL's request to ready-to-reset, and from STOP_RING to
/// MODE_IDLE.
pub const HANDSHAKE_NS: u64 = 1_000;
/// From a GDRST write to the reset's end.
pub const GDRST_NS: u64 = 5_000;

/// What a driver did that the hardware would punish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A register access while a domain it needs is asleep.
    Asleep { offset: u32, write: bool },
    /// A submission while bus mastering is off.
    NoBusMaster(Engine),
    /// A submission before the first full GT reset.
    NotReset(Engine),
    /// A submission before PAT and the engine's MOCS were programmed.
    CachingNotSetUp(Engine),
    /// A submission while execlists are disabled.
    ExeclistsDisabled(Engine),
    /// A submission while the engine still runs one.
    SubmitWhileBusy(Engine),
    /// A second element in the execlist (not modelled).
    SecondElement(Engine),
    /// A malformed descriptor (invalid, bad addressing, context id wider
    /// than 21 bits).
    BadDescriptor { engine: Engine, hi: u32, lo: u32 },
    /// The context image is not reachable through the GGTT.
    ContextUnreadable { engine: Engine, lrca: u32 },
    /// The register state page does not have the Gen9 layout of the engine.
    BadContextLayout {
        engine: Engine,
        dword: usize,
        found: u32,
        want: u32,
    },
    /// A context the hardware never saved, loaded without restore inhibit.
    RestoreOfUnsavedContext { engine: Engine, lrca: u32 },
    /// The image's ring registers describe no ring.
    BadRingState(Engine),
    /// More distinct contexts than the model keeps.
    TooManyContexts(Engine),
    /// GDRST of an engine that did not report ready-to-reset.
    ResetWithoutHandshake(Engine),
    /// A GGTT access beyond the size GMCH_CTRL declares.
    GgttBeyondSize { index: u32 },
}

/// How the device starts.
#[derive(Clone, Copy, Debug)]
pub struct DeviceOptions {
    /// PCI device id (0x1912: Skylake GT2).
    pub device_id: u16,
    /// GMCH_CTRL's GGMS field (3: 8 MiB of PTEs, a 4 GiB GGTT).
    pub ggms: u32,
    /// Firmware left every forcewake request and ack set.
    pub forcewake_left_on: bool,
    /// This domain loses the ack of the kernel's request until the
    /// fallback bit is toggled.
    pub stuck_ack: Option<forcewake::Domain>,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            device_id: 0x1912,
            ggms: 3,
            forcewake_left_on: false,
            stuck_ack: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Domain {
    request: u32,
    ack: u32,
    awake: bool,
    /// Ack changes still to come: (due, bits, value), in order.
    pending: [Option<(u64, u32, u32)>; 4],
    /// The stuck ack still swallows the kernel request.
    stuck: bool,
}

#[derive(Clone, Copy, Debug)]
struct Element {
    lrca: u32,
    context_id: u32,
    sim: SubmissionId,
    /// CONTEXT_CONTROL as loaded.
    control: u32,
    tail: u32,
}

#[derive(Debug)]
struct EngineModel {
    elsp: [u32; 4],
    elsp_count: usize,
    running: Option<Element>,
    /// The engine runs a batch that never ends (reported nothing).
    hung: bool,
    /// The engine stopped on an error or fault until reset.
    stopped: bool,
    csb: [(u32, u32); ring::CSB_ENTRIES as usize],
    csb_ptr: u32,
    /// Image GM addresses seen, in order: index = the model's context.
    slots: Vec<u32>,
    /// Images the hardware saved at least once.
    saved: HashSet<u32>,
    reset_requested_at: Option<u64>,
    stop_requested_at: Option<u64>,
    mocs_written: u64,
}

impl EngineModel {
    fn new() -> Self {
        EngineModel {
            elsp: [0; 4],
            elsp_count: 0,
            running: None,
            hung: false,
            stopped: false,
            csb: [(0, 0); ring::CSB_ENTRIES as usize],
            csb_ptr: engine_ctl::CSB_PTR_AFTER_RESET,
            slots: Vec::new(),
            saved: HashSet::new(),
            reset_requested_at: None,
            stop_requested_at: None,
            mocs_written: 0,
        }
    }

    fn push_csb(&mut self, status: u32, context_id: u32) {
        let write = self.csb_ptr & 0xf;
        let next = if write >= ring::CSB_ENTRIES {
            0
        } else {
            (write + 1) % ring::CSB_ENTRIES
        };
        self.csb[next as usize] = (status, context_id);
        self.csb_ptr = (self.csb_ptr & !0xf) | next;
    }
}

/// The device model over memory `M`.
#[derive(Debug)]
pub struct SimDevice<M: PhysMem> {
    sim: SimGpu<M>,
    options: DeviceOptions,
    now: u64,
    pci_command: u32,
    domains: [Domain; 3],
    regs: HashMap<u32, u32>,
    engines: [EngineModel; Engine::COUNT],
    /// GDRST bits in progress and when they end.
    gdrst: Option<(u32, u64)>,
    /// GDRST bits that will never clear (reset refused).
    gdrst_stuck: u32,
    full_reset_done: bool,
    pat_written: (bool, bool),
    l3cc_written: u32,
    violations: Vec<Violation>,
    ggtt_reads: u64,
}

impl<M: PhysMem> SimDevice<M> {
    /// A device whose engines reach `mem`, its GGTT table in `mem` at
    /// `stolen` (8 MiB, page aligned).
    pub fn new(mem: M, stolen: PhysAddr, options: DeviceOptions) -> Self {
        let sim = match SimGpu::new(mem, stolen) {
            Ok(s) => s,
            Err(e) => panic!("device model set-up: {e}"),
        };
        let on = options.forcewake_left_on;
        let domain = |d: forcewake::Domain| Domain {
            request: if on { forcewake::KERNEL } else { 0 },
            ack: if on { forcewake::KERNEL } else { 0 },
            awake: on,
            pending: [None; 4],
            stuck: options.stuck_ack == Some(d),
        };
        SimDevice {
            sim,
            options,
            now: 0,
            pci_command: 0,
            domains: forcewake::Domain::ALL.map(domain),
            regs: HashMap::new(),
            engines: core::array::from_fn(|_| EngineModel::new()),
            gdrst: None,
            gdrst_stuck: 0,
            full_reset_done: false,
            pat_written: (false, false),
            l3cc_written: 0,
            violations: Vec::new(),
            ggtt_reads: 0,
        }
    }

    /// What the driver did that the hardware would punish, in order.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// GGTT entries read through the window so far (each a bus round trip).
    pub fn ggtt_reads(&self) -> u64 {
        self.ggtt_reads
    }

    /// The engines (tests read results through their GGTT).
    pub fn gpu(&mut self) -> &mut SimGpu<M> {
        &mut self.sim
    }

    /// Whether the engine is running work that will never end.
    pub fn is_hung(&self, engine: Engine) -> bool {
        self.engines[engine.index()].hung
    }

    fn violate(&mut self, v: Violation) {
        self.violations.push(v);
    }

    fn domain_index(d: forcewake::Domain) -> usize {
        match d {
            forcewake::Domain::Render => 0,
            forcewake::Domain::Media => 1,
            forcewake::Domain::Blitter => 2,
        }
    }

    fn tick(&mut self, ns: u64) {
        self.now += ns;
        let now = self.now;
        for d in &mut self.domains {
            if d.pending.iter().all(Option::is_none) {
                continue;
            }
            for slot in 0..d.pending.len() {
                if let Some((due, bits, value)) = d.pending[slot] {
                    if due <= now {
                        d.ack = (d.ack & !bits) | (value & bits);
                        if bits & forcewake::KERNEL != 0 {
                            d.awake = value & forcewake::KERNEL != 0;
                        }
                        d.pending[slot] = None;
                    }
                }
            }
        }
        if let Some((bits, due)) = self.gdrst {
            if due <= now {
                self.gdrst = None;
                self.complete_reset(bits);
            }
        }
        if self.engines.iter().any(|e| e.running.is_some()) {
            self.sim.advance(now);
            for engine in Engine::ALL {
                self.update(engine);
            }
        }
    }

    /// Collects what the engine did: completion (context save, CSB), a
    /// fault or error (records), a hang (nothing).
    fn update(&mut self, engine: Engine) {
        let e = &self.engines[engine.index()];
        let Some(el) = e.running else { return };
        if e.hung || e.stopped {
            return;
        }
        match self.sim.poll(engine) {
            EngineStatus::Busy { .. } => {}
            EngineStatus::Idle { last_completed } => {
                if last_completed != Some(el.sim) {
                    return;
                }
                // Context save: the ring head, and CONTEXT_CONTROL without
                // restore inhibit (the image now holds saved state).
                let control = el.control & !lrc::CTX_CTRL_RESTORE_INHIBIT;
                let state = u64::from(el.lrca) + 4096;
                self.put_image(state, lrc::CONTEXT_CONTROL, control);
                self.put_image(state, lrc::RING_HEAD, el.tail);
                let e = &mut self.engines[engine.index()];
                e.saved.insert(el.lrca);
                e.running = None;
                e.push_csb(
                    ring::CSB_STATUS_COMPLETE | ring::CSB_STATUS_ACTIVE_IDLE,
                    el.context_id,
                );
            }
            EngineStatus::Faulted(f) => {
                let base = engine.mmio_base();
                if f.kind == FaultKind::Hang {
                    self.engines[engine.index()].hung = true;
                    return;
                }
                match f.address {
                    Some(addr) => {
                        let ggtt = !matches!(
                            f.kind,
                            FaultKind::PpgttNotPresent | FaultKind::PpgttReadOnly
                        );
                        self.regs.insert(
                            gt::RING_FAULT.raw(),
                            gt::RING_FAULT_VALID | (hw_engine_id(engine) << 12),
                        );
                        self.regs
                            .insert(gt::FAULT_TLB_DATA0.raw(), (addr >> 12) as u32);
                        let space = if ggtt { gt::FAULT_GGTT } else { 0 };
                        self.regs.insert(
                            gt::FAULT_TLB_DATA1.raw(),
                            space | ((addr >> 44) & 0xf) as u32,
                        );
                    }
                    None => {
                        for rel in [ring::EIR, engine_ctl::ESR] {
                            *self.regs.entry(base + rel).or_insert(0) |=
                                engine_ctl::ERROR_INSTRUCTION;
                        }
                        self.regs.insert(base + ring::IPEHR, f.header);
                    }
                }
                self.engines[engine.index()].stopped = true;
            }
        }
    }

    fn put_image(&mut self, state: u64, dword: usize, value: u32) {
        if let Ok(at) = HostGm::new(state + 4 * dword as u64) {
            // The image was readable at load; a remap since is the driver's
            // own doing and loses the save.
            let _ = self.sim.write_gm(at, &value.to_le_bytes());
        }
    }

    fn reachable(&mut self, offset: u32, write: bool) -> bool {
        let exempt =
            offset == gdrst::OFFSET.raw() || forcewake::BLOCK.iter().any(|r| r.offset == offset);
        let need = if exempt {
            0
        } else {
            fw_ranges::domains_of(offset)
        };
        let awake = forcewake::Domain::ALL
            .iter()
            .filter(|d| need & fw_ranges::bit(**d) != 0)
            .all(|d| self.domains[Self::domain_index(*d)].awake);
        if !awake {
            self.violate(Violation::Asleep { offset, write });
        }
        awake
    }

    fn ggtt_entries(&self) -> u32 {
        pci::ggtt_bytes(self.options.ggms << pci::GMCH_GGMS_SHIFT) / 8
    }

    fn ggtt_index(&mut self, offset: u32) -> Option<HostGgttIndex> {
        self.ggtt_reads += 1;
        let index = (offset - GGTT_BAR0_OFFSET) / 8;
        if index >= self.ggtt_entries() {
            self.violate(Violation::GgttBeyondSize { index });
            return None;
        }
        HostGgttIndex::new(u64::from(index)).ok()
    }

    fn read_reg(&mut self, offset: u32) -> u32 {
        if let Some(d) = forcewake::Domain::ALL
            .iter()
            .find(|d| d.ack().raw() == offset)
        {
            return self.domains[Self::domain_index(*d)].ack;
        }
        if let Some(d) = forcewake::Domain::ALL
            .iter()
            .find(|d| d.request().raw() == offset)
        {
            return self.domains[Self::domain_index(*d)].request;
        }
        if offset == gdrst::OFFSET.raw() {
            return self.gdrst.map_or(0, |(bits, _)| bits) | self.gdrst_stuck;
        }
        if !self.reachable(offset, false) {
            return 0;
        }
        if let Some((engine, rel)) = crate::regs::ring_register_of(MmioOffset::reg(offset)) {
            let now = self.now;
            let e = &self.engines[engine.index()];
            let csb = ring::CSB_BASE..ring::CSB_BASE + 8 * ring::CSB_ENTRIES;
            if csb.contains(&rel) {
                let (status, id) = e.csb[((rel - ring::CSB_BASE) / 8) as usize];
                return if rel % 8 == 0 { status } else { id };
            }
            match rel {
                ring::CSB_PTR => return e.csb_ptr,
                ring::ELSP => return 0,
                engine_ctl::RESET_CTL => {
                    return match e.reset_requested_at {
                        Some(at) if now >= at + HANDSHAKE_NS => {
                            engine_ctl::REQUEST_RESET | engine_ctl::READY_TO_RESET
                        }
                        Some(_) => engine_ctl::REQUEST_RESET,
                        None => 0,
                    }
                }
                ring::MI_MODE => {
                    let stored = self.regs.get(&offset).copied().unwrap_or(0) & 0xffff;
                    let idle = match e.stop_requested_at {
                        Some(at) => !e.hung && now >= at + HANDSHAKE_NS,
                        None => e.running.is_none(),
                    };
                    let idle = if idle { engine_ctl::MODE_IDLE } else { 0 };
                    return (stored & !engine_ctl::MODE_IDLE) | idle;
                }
                _ => {}
            }
        }
        self.regs.get(&offset).copied().unwrap_or(0)
    }

    fn write_reg(&mut self, offset: u32, value: u32) {
        if let Some(d) = forcewake::Domain::ALL
            .iter()
            .find(|d| d.request().raw() == offset)
        {
            self.forcewake_write(Self::domain_index(*d), value);
            return;
        }
        if offset == gdrst::OFFSET.raw() {
            self.gdrst_write(value);
            return;
        }
        if !self.reachable(offset, true) {
            return;
        }
        let masked_write = |old: u32| (old & !(value >> 16)) | (value & (value >> 16));
        if let Some((engine, rel)) = crate::regs::ring_register_of(MmioOffset::reg(offset)) {
            let now = self.now;
            let e = &mut self.engines[engine.index()];
            match rel {
                ring::ELSP => {
                    e.elsp[e.elsp_count] = value;
                    e.elsp_count += 1;
                    if e.elsp_count == 4 {
                        e.elsp_count = 0;
                        self.submit(engine);
                    }
                    return;
                }
                ring::CSB_PTR => {
                    e.csb_ptr = masked_write(e.csb_ptr) & 0x0f0f;
                    return;
                }
                engine_ctl::RESET_CTL => {
                    let request = masked_write(0) & engine_ctl::REQUEST_RESET != 0;
                    if value >> 16 & engine_ctl::REQUEST_RESET != 0 {
                        e.reset_requested_at = request.then_some(now);
                    }
                    return;
                }
                ring::EIR => {
                    let old = self.regs.get(&offset).copied().unwrap_or(0);
                    self.regs.insert(offset, old & !value);
                    return;
                }
                ring::MI_MODE => {
                    let old = self.regs.get(&offset).copied().unwrap_or(0);
                    let new = masked_write(old);
                    if value >> 16 & engine_ctl::STOP_RING != 0 {
                        e.stop_requested_at = (new & engine_ctl::STOP_RING != 0).then_some(now);
                    }
                    self.regs.insert(offset, new);
                    return;
                }
                ring::MODE | ring::CONTEXT_CONTROL => {
                    let old = self.regs.get(&offset).copied().unwrap_or(0);
                    self.regs.insert(offset, masked_write(old));
                    return;
                }
                _ => {}
            }
        }
        if offset == caching::PAT_LO.raw() {
            self.pat_written.0 = true;
        } else if offset == caching::PAT_HI.raw() {
            self.pat_written.1 = true;
        }
        for i in 0..caching::MOCS_ENTRIES / 2 {
            if offset == caching::l3cc(i).raw() {
                self.l3cc_written |= 1 << i;
            }
        }
        for engine in Engine::ALL {
            for i in 0..caching::MOCS_ENTRIES {
                if offset == caching::mocs(engine, i).raw() {
                    self.engines[engine.index()].mocs_written |= 1 << i;
                }
            }
        }
        self.regs.insert(offset, value);
    }

    fn forcewake_write(&mut self, index: usize, value: u32) {
        let now = self.now;
        let d = &mut self.domains[index];
        let old = d.request;
        d.request = ((old & !(value >> 16)) | (value & (value >> 16))) & 0xffff;
        let changed = old ^ d.request;
        if changed & forcewake::KERNEL != 0 && d.request & forcewake::KERNEL == 0 {
            // Release: asleep at once, the ack clears later.
            d.awake = false;
        }
        for bit in [forcewake::KERNEL, 1 << 15] {
            if changed & bit == 0 {
                continue;
            }
            if bit == forcewake::KERNEL && d.stuck && d.request & bit != 0 {
                // The ack of this request is lost until a fallback kick.
                continue;
            }
            if bit != forcewake::KERNEL && d.stuck && d.request & bit != 0 {
                d.stuck = false;
                if d.request & forcewake::KERNEL != 0 {
                    push_pending(d, now + FORCEWAKE_NS, forcewake::KERNEL, forcewake::KERNEL);
                }
            }
            push_pending(d, now + FORCEWAKE_NS, bit, d.request & bit);
        }
    }

    fn gdrst_write(&mut self, value: u32) {
        let engines: Vec<Engine> = if value & gdrst::FULL != 0 {
            Engine::ALL.to_vec()
        } else {
            Engine::ALL
                .into_iter()
                .filter(|&e| value & gdrst::engine_bit(e) != 0)
                .collect()
        };
        let now = self.now;
        let mut refused = false;
        for engine in engines {
            let ready = self.engines[engine.index()]
                .reset_requested_at
                .is_some_and(|at| now >= at + HANDSHAKE_NS);
            if !ready {
                self.violate(Violation::ResetWithoutHandshake(engine));
                refused = true;
            }
        }
        if refused {
            // The reset never completes: the bits stay set.
            self.gdrst_stuck |= value;
        } else {
            self.gdrst = Some((value, now + GDRST_NS));
        }
    }

    fn complete_reset(&mut self, bits: u32) {
        let full = bits & gdrst::FULL != 0;
        for engine in Engine::ALL {
            if !full && bits & gdrst::engine_bit(engine) == 0 {
                continue;
            }
            self.sim.reset_engine(engine);
            let base = engine.mmio_base();
            for rel in [
                ring::MODE,
                ring::MI_MODE,
                ring::HWS_PGA,
                ring::EIR,
                engine_ctl::ESR,
                ring::IPEHR,
                engine_ctl::HWSTAM,
            ] {
                self.regs.remove(&(base + rel));
            }
            for i in 0..caching::MOCS_ENTRIES {
                self.regs.remove(&caching::mocs(engine, i).raw());
            }
            let e = &mut self.engines[engine.index()];
            e.running = None;
            e.hung = false;
            e.stopped = false;
            e.elsp_count = 0;
            e.csb_ptr = engine_ctl::CSB_PTR_AFTER_RESET;
            e.stop_requested_at = None;
            e.mocs_written = 0;
            let fault = self.regs.get(&gt::RING_FAULT.raw()).copied().unwrap_or(0);
            if (fault >> 12) & 7 == hw_engine_id(engine) {
                self.regs.remove(&gt::RING_FAULT.raw());
            }
        }
        if full {
            self.full_reset_done = true;
        }
    }

    /// The ELSP write that starts element 0.
    fn submit(&mut self, engine: Engine) {
        let [hi1, lo1, hi, lo] = self.engines[engine.index()].elsp;
        let refuse = if self.pci_command & pci::COMMAND_BUS_MASTER == 0 {
            Some(Violation::NoBusMaster(engine))
        } else if !self.full_reset_done {
            Some(Violation::NotReset(engine))
        } else if self.pat_written != (true, true)
            || self.l3cc_written != u32::MAX
            || self.engines[engine.index()].mocs_written != u64::MAX
        {
            Some(Violation::CachingNotSetUp(engine))
        } else if self
            .regs
            .get(&(engine.mmio_base() + ring::MODE))
            .is_none_or(|m| m & ring::MODE_RUN_LIST_ENABLE == 0)
        {
            Some(Violation::ExeclistsDisabled(engine))
        } else if self.engines[engine.index()].running.is_some() {
            Some(Violation::SubmitWhileBusy(engine))
        } else if hi1 != 0 || lo1 != 0 {
            Some(Violation::SecondElement(engine))
        } else {
            let addressing = lo & (3 << lrc::DESC_ADDRESSING_SHIFT);
            let valid = lo & lrc::DESC_VALID != 0
                && (addressing == lrc::DESC_LEGACY_32B || addressing == lrc::DESC_LEGACY_64B)
                && hi & !lrc::CONTEXT_ID_MASK == 0;
            (!valid).then_some(Violation::BadDescriptor { engine, hi, lo })
        };
        if let Some(v) = refuse {
            self.violate(v);
            return;
        }
        if let Err(v) = self.load(engine, hi, lo) {
            self.violate(v);
        }
    }

    fn load(&mut self, engine: Engine, hi: u32, lo: u32) -> Result<(), Violation> {
        let lrca = lo & !0xfff;
        let unreadable = Violation::ContextUnreadable { engine, lrca };
        let state_gm = HostGm::new(u64::from(lrca) + 4096).map_err(|_| unreadable)?;
        let mut bytes = [0u8; 4 * lrc::DWORDS];
        self.sim
            .read_gm(state_gm, &mut bytes)
            .map_err(|_| unreadable)?;
        let dw = |i: usize| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        };
        for block in lrc::blocks(engine) {
            let want = lrc::lri(block.regs.len(), block.posted);
            if dw(block.at) != want {
                return Err(Violation::BadContextLayout {
                    engine,
                    dword: block.at,
                    found: dw(block.at),
                    want,
                });
            }
            for (i, rel) in block.regs.iter().enumerate() {
                let at = block.at + 1 + 2 * i;
                let want = engine.mmio_base() + rel;
                if dw(at) != want {
                    return Err(Violation::BadContextLayout {
                        engine,
                        dword: at,
                        found: dw(at),
                        want,
                    });
                }
            }
        }
        let control = dw(lrc::CONTEXT_CONTROL);
        let inhibit = control & (lrc::CTX_CTRL_RESTORE_INHIBIT << 16) != 0
            && control & lrc::CTX_CTRL_RESTORE_INHIBIT != 0;
        let e = &self.engines[engine.index()];
        if !inhibit && !e.saved.contains(&lrca) {
            return Err(Violation::RestoreOfUnsavedContext { engine, lrca });
        }
        let slot = match e.slots.iter().position(|&l| l == lrca) {
            Some(i) => i,
            None if e.slots.len() < ContextId::COUNT => {
                self.engines[engine.index()].slots.push(lrca);
                self.engines[engine.index()].slots.len() - 1
            }
            None => return Err(Violation::TooManyContexts(engine)),
        };
        let context = ContextId::new(slot as u8).ok_or(Violation::TooManyContexts(engine))?;
        let ctl = dw(lrc::RING_CTL);
        let pages = u64::from((ctl & ring::CTL_SIZE_MASK) >> 12) + 1;
        let head = dw(lrc::RING_HEAD) & ring::OFFSET_MASK;
        let tail = dw(lrc::RING_TAIL) & ring::OFFSET_MASK;
        let sub = HostGm::new(u64::from(dw(lrc::RING_START) & !0xfff))
            .and_then(|start| HostGmRange::new(start, pages * 4096))
            .ok()
            .filter(|_| ctl & ring::CTL_ENABLE != 0)
            .and_then(|r| Submission::new(engine, context, r, head, tail).ok())
            .ok_or(Violation::BadRingState(engine))?;
        let sub = if lo & (3 << lrc::DESC_ADDRESSING_SHIFT) == lrc::DESC_LEGACY_64B {
            let pml4 = u64::from(dw(lrc::PDP0_UDW)) << 32 | u64::from(dw(lrc::PDP0_LDW));
            let frame = PhysFrame::new(pml4 >> 12).map_err(|_| Violation::BadRingState(engine))?;
            sub.with_ppgtt(frame)
        } else {
            sub
        };
        if inhibit {
            self.sim.reset_context_on(context, engine);
        }
        // The engines' clock is moved only while one runs: bring it to now.
        self.sim.advance(self.now);
        let id = self
            .sim
            .submit_ready_since(&sub, self.now)
            .map_err(|_| Violation::SubmitWhileBusy(engine))?;
        let e = &mut self.engines[engine.index()];
        e.running = Some(Element {
            lrca,
            context_id: hi,
            sim: id,
            control,
            tail,
        });
        e.push_csb(engine_ctl::CSB_STATUS_IDLE_ACTIVE, hi);
        Ok(())
    }
}

fn push_pending(d: &mut Domain, due: u64, bits: u32, value: u32) {
    // Four changes in flight per domain at most; an older one is applied
    // early rather than lost.
    let slot = match d.pending.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            if let Some((_, b, v)) = d.pending[0] {
                d.ack = (d.ack & !b) | (v & b);
            }
            d.pending.rotate_left(1);
            d.pending.len() - 1
        }
    };
    d.pending[slot] = Some((due, bits, value));
}

impl<M: PhysMem> Mmio for SimDevice<M> {
    fn read32(&mut self, offset: MmioOffset) -> u32 {
        self.tick(ACCESS_NS);
        let o = offset.raw();
        if o >= GGTT_BAR0_OFFSET {
            let Some(index) = self.ggtt_index(o & !7) else {
                return 0;
            };
            let pte = self.sim.read_pte(index).raw();
            return if o.is_multiple_of(8) {
                pte as u32
            } else {
                (pte >> 32) as u32
            };
        }
        self.read_reg(o)
    }
    fn write32(&mut self, offset: MmioOffset, value: u32) {
        self.tick(ACCESS_NS);
        let o = offset.raw();
        if o >= GGTT_BAR0_OFFSET {
            let Some(index) = self.ggtt_index(o & !7) else {
                return;
            };
            let old = self.sim.read_pte(index).raw();
            let new = if o.is_multiple_of(8) {
                (old & !0xffff_ffff) | u64::from(value)
            } else {
                (old & 0xffff_ffff) | u64::from(value) << 32
            };
            self.sim.write_pte(index, HostPte::from_raw(new)).ignore();
            return;
        }
        self.write_reg(o, value);
    }
    fn read64(&mut self, offset: MmioOffset) -> u64 {
        self.tick(ACCESS_NS);
        let o = offset.raw();
        if o >= GGTT_BAR0_OFFSET {
            return match self.ggtt_index(o) {
                Some(index) => self.sim.read_pte(index).raw(),
                None => 0,
            };
        }
        u64::from(self.read_reg(o)) | u64::from(self.read_reg(o + 4)) << 32
    }
    fn write64(&mut self, offset: MmioOffset, value: u64) {
        self.tick(ACCESS_NS);
        let o = offset.raw();
        if o >= GGTT_BAR0_OFFSET {
            if let Some(index) = self.ggtt_index(o) {
                self.sim.write_pte(index, HostPte::from_raw(value)).ignore();
            }
            return;
        }
        self.write_reg(o, value as u32);
        self.write_reg(o + 4, (value >> 32) as u32);
    }
    fn config_read32(&mut self, offset: u16) -> u32 {
        self.tick(ACCESS_NS);
        match offset & !3 {
            pci::ID => u32::from(self.options.device_id) << 16 | 0x8086,
            pci::COMMAND => self.pci_command,
            0x08 => 0x0300_0000, // display controller class
            pci::GMCH_CTRL => self.options.ggms << pci::GMCH_GGMS_SHIFT,
            _ => 0,
        }
    }
    fn config_write32(&mut self, offset: u16, value: u32) {
        self.tick(ACCESS_NS);
        if offset & !3 == pci::COMMAND {
            self.pci_command = value & 0xffff;
        }
    }
    fn now_ns(&mut self) -> u64 {
        self.tick(CLOCK_READ_NS);
        self.now
    }
}
