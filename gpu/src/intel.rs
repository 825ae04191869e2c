//! `IntelGen9`: the real-device backend over BAR0 MMIO (ARCHITECTURE.md
//! "GPU backends").
//!
//! The kernel implements [`Mmio`] over the mapped BAR0 (its only `unsafe`
//! lives there) and [`PhysMem`] over its frames, and gives every engine
//! context a context area ([`EngineContext`], a [`ContextTable`]): pages it
//! owns, [`context_pages`] per engine, mapped in the monitor's GM slice.
//! One logical ring context per ([`ContextId`], engine): the monitor's own
//! and one per vGPU slot, so what one vGPU's work leaves in an engine's
//! context (GPRs, predicates, pipeline state, all saved by the hardware in
//! that context's image) is restored only for that vGPU. This module holds
//! the decisions:
//! * init: forcewake every domain (masked request, poll the ack, bounded),
//!   then per engine enable execlists (GFX_MODE run-list enable, masked) and
//!   point RING_HWS_PGA at the per-process status page of the monitor's
//!   context of that engine;
//! * context images: the monitor writes each image before its first use
//!   and again before the first use after [`Backend::release_context`]:
//!   every page zeroed (nothing the hardware saved for an earlier owner
//!   survives), then the register state header. A release itself only
//!   marks the images (and resets an engine still running the context), so
//!   it costs nothing on a migration's stop path;
//! * submit: write the ring registers into the register state page of the
//!   submission's context on that engine (i915 Gen8 layout: LRI of 11
//!   registers at dword 1: context control, head, tail, start, ctl, batch
//!   state), then write that context's descriptor to ELSP (element 1
//!   high/low = 0, element 0 high, element 0 low; the last write starts the
//!   engine). Descriptor: valid (bit 0), legacy 32-bit addressing (bits 4:3
//!   = 1), privileged (bit 8), LRCA in 31:12, context id in the high dword
//!   (i915 `GEN8_CTX_*`);
//! * completion: poll the context status buffer (CSB) from the read pointer
//!   to the write pointer for COMPLETE / ACTIVE_IDLE of our context id, then
//!   advance the read pointer (masked, bits 11:8); RING_FAULT_REG valid means
//!   a fault;
//! * GGTT: PTEs are 64-bit writes at BAR0 + 8 MiB + 8 × index; a flush writes
//!   GFX_FLSH_CNTL and reads it back (posting read);
//! * scheduling ([`crate::sched`]): one submission per engine at a time,
//!   in element 0 of the execlist port (element 1 stays empty). A vGPU's
//!   turn on an engine is a sequence of ELSP writes of its own context's
//!   descriptor, each after the CSB reported the previous one complete; a
//!   turn ends at a submission boundary, so the switch to the next vGPU's
//!   context is the context switch the hardware does on the next ELSP
//!   write (it saves the old image, loads the new one). Keeping element 1
//!   filled with the next submission (no idle gap between two) and
//!   preempting a long submission through ELSP are later work.
//!
//! This cannot run here: the tests check the exact MMIO sequence against a
//! recording register model. It has not been tried on hardware yet.

use crate::addr::{HostGgttIndex, HostGm, PhysAddr};
use crate::backend::{
    for_each_gm_page, Backend, BackendError, ContextId, EngineStatus, FaultKind, GmAccessError,
    GpuFault, PhysMem, Submission, SubmissionId,
};
use crate::engine::Engine;
use crate::ggtt::{GgttFlush, HostPte};
use crate::regs::{forcewake, gt, masked, ring, MmioOffset, GGTT_BAR0_OFFSET};

/// BAR0 access, implemented by the kernel over the mapped BAR.
pub trait Mmio {
    /// 32-bit read.
    fn read32(&mut self, offset: MmioOffset) -> u32;
    /// 32-bit write.
    fn write32(&mut self, offset: MmioOffset, value: u32);
    /// 64-bit read (GGTT entries).
    fn read64(&mut self, offset: MmioOffset) -> u64;
    /// 64-bit write (GGTT entries).
    fn write64(&mut self, offset: MmioOffset, value: u64);
}

/// Ack polls before a forcewake or reset is declared timed out.
pub const POLL_LIMIT: u32 = 10_000;

/// GEN6_GDRST ([`crate::regs::gdrst`]).
pub const GDRST: MmioOffset = crate::regs::gdrst::OFFSET;

const fn gdrst_bit(engine: Engine) -> u32 {
    crate::regs::gdrst::engine_bit(engine)
}

/// Context descriptor bits (i915 `GEN8_CTX_VALID`, `GEN8_CTX_PRIVILEGE`,
/// `INTEL_LEGACY_32B_CONTEXT << GEN8_CTX_ADDRESSING_MODE_SHIFT`).
pub const CTX_DESC_VALID: u32 = 1 << 0;
/// Legacy 32-bit addressing mode.
pub const CTX_DESC_LEGACY_32B: u32 = 1 << 3;
/// Privileged context (GGTT access allowed).
pub const CTX_DESC_PRIVILEGE: u32 = 1 << 8;

/// Dword offsets in the register state page (i915 `CTX_*`, Gen8 layout).
pub mod lrc {
    /// MI_LOAD_REGISTER_IMM header of the first block.
    pub const LRI_HEADER: usize = 0x01;
    /// (RING_CONTEXT_CONTROL, value).
    pub const CONTEXT_CONTROL: usize = 0x02;
    /// (RING_HEAD, value).
    pub const RING_HEAD: usize = 0x04;
    /// (RING_TAIL, value).
    pub const RING_TAIL: usize = 0x06;
    /// (RING_START, value).
    pub const RING_START: usize = 0x08;
    /// (RING_CTL, value).
    pub const RING_CTL: usize = 0x0a;
    /// Registers in the first LRI block.
    pub const REGS: u32 = 11;
    /// `CTX_CTRL_INHIBIT_SYN_CTX_SWITCH`.
    pub const CTX_CTRL_INHIBIT_SYN_CTX_SWITCH: u32 = 1 << 3;
    /// `MI_LRI_FORCE_POSTED`.
    pub const LRI_FORCE_POSTED: u32 = 1 << 12;
}

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

#[derive(Clone, Copy, Debug)]
struct EngineState {
    pending: Option<(SubmissionId, ContextId)>,
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
    /// Whether the monitor has written the image since its last release
    /// (`[context][engine]`); a submission writes it first if not.
    image_ready: [[bool; Engine::COUNT]; ContextId::COUNT],
    engines: [EngineState; Engine::COUNT],
    initialised: bool,
    next_submission: u64,
}

impl<M: Mmio, P: PhysMem> IntelGen9<M, P> {
    /// A backend over `mmio` and `mem`, with one context area per context
    /// and engine.
    pub fn new(mmio: M, mem: P, contexts: ContextTable) -> Self {
        IntelGen9 {
            mmio,
            mem,
            contexts,
            image_ready: [[false; Engine::COUNT]; ContextId::COUNT],
            engines: [EngineState {
                pending: None,
                last_completed: None,
                fault: None,
                csb_read: ring::CSB_ENTRIES - 1,
            }; Engine::COUNT],
            initialised: false,
            next_submission: 1,
        }
    }

    /// The MMIO accessor (tests inspect their recorder through it).
    pub fn mmio(&self) -> &M {
        &self.mmio
    }

    /// The memory.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// Mutable access to the memory (the kernel gives the GPU more frames).
    pub fn mem_mut(&mut self) -> &mut P {
        &mut self.mem
    }

    /// Wakes the GT and puts every engine in execlist mode.
    pub fn init(&mut self) -> Result<(), BackendError> {
        for d in forcewake::Domain::ALL {
            self.mmio
                .write32(d.request(), masked(forcewake::KERNEL, forcewake::KERNEL));
            self.poll_until(
                d.ack(),
                forcewake::KERNEL,
                forcewake::KERNEL,
                "forcewake ack",
            )?;
        }
        for engine in Engine::ALL {
            let ctx = self.contexts[ContextId::MONITOR.index()][engine.index()];
            self.mmio.write32(
                ring::reg(engine, ring::MODE),
                masked(ring::MODE_RUN_LIST_ENABLE, ring::MODE_RUN_LIST_ENABLE),
            );
            self.mmio
                .write32(ring::reg(engine, ring::HWS_PGA), ctx.lrca.raw() as u32);
            // Posting read.
            let _ = self.mmio.read32(ring::reg(engine, ring::HWS_PGA));
        }
        self.initialised = true;
        Ok(())
    }

    fn poll_until(
        &mut self,
        reg: MmioOffset,
        mask: u32,
        want: u32,
        what: &'static str,
    ) -> Result<(), BackendError> {
        for _ in 0..POLL_LIMIT {
            if self.mmio.read32(reg) & mask == want {
                return Ok(());
            }
        }
        Err(BackendError::Timeout { what })
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
    /// page zeroed, then the register state header.
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
        let lri = (0x22 << 23) | lrc::LRI_FORCE_POSTED | (2 * lrc::REGS - 1);
        self.put(slot, lrc::LRI_HEADER, lri)?;
        let regs = [
            ring::CONTEXT_CONTROL,
            ring::HEAD,
            ring::TAIL,
            ring::START,
            ring::CTL,
            0x168, // RING_BBADDR_UDW
            ring::BB_ADDR,
            0x110, // RING_BBSTATE
            0x11c, // RING_SBBADDR_UDW
            0x114, // RING_SBBADDR
            0x118, // RING_SBBSTATE
        ];
        for (i, rel) in regs.into_iter().enumerate() {
            self.put(slot, 2 + 2 * i, ring::reg(engine, rel).raw())?;
            self.put(slot, 3 + 2 * i, 0)?;
        }
        self.put(
            slot,
            lrc::CONTEXT_CONTROL + 1,
            masked(
                lrc::CTX_CTRL_INHIBIT_SYN_CTX_SWITCH,
                lrc::CTX_CTRL_INHIBIT_SYN_CTX_SWITCH,
            ),
        )
    }

    fn pte(&mut self, index: HostGgttIndex) -> HostPte {
        HostPte::from_raw(self.mmio.read64(ggtt_offset(index)))
    }
}

fn ggtt_offset(index: HostGgttIndex) -> MmioOffset {
    // In range: index < 1 Mi, so the offset is < 16 MiB.
    MmioOffset::new(GGTT_BAR0_OFFSET + 8 * index.raw()).unwrap_or(MmioOffset::reg(0))
}

impl<M: Mmio, P: PhysMem> Backend for IntelGen9<M, P> {
    fn read_reg(&mut self, reg: MmioOffset) -> u32 {
        self.mmio.read32(reg)
    }
    fn write_reg(&mut self, reg: MmioOffset, value: u32) {
        self.mmio.write32(reg, value);
    }
    fn read_pte(&mut self, index: HostGgttIndex) -> HostPte {
        self.pte(index)
    }
    fn write_pte(&mut self, index: HostGgttIndex, pte: HostPte) -> GgttFlush {
        self.mmio.write64(ggtt_offset(index), pte.raw());
        GgttFlush::new()
    }
    fn flush_ggtt(&mut self, flush: GgttFlush) {
        flush.ignore();
        self.mmio.write32(gt::GFX_FLSH_CNTL, 1);
        let _ = self.mmio.read32(gt::GFX_FLSH_CNTL);
    }
    fn read_gm(&mut self, addr: HostGm, buf: &mut [u8]) -> Result<(), GmAccessError> {
        let mmio = &mut self.mmio;
        let mem = &self.mem;
        for_each_gm_page(
            addr,
            buf.len(),
            |i| HostPte::from_raw(mmio.read64(ggtt_offset(i))),
            |phys, at, len| mem.read(phys, &mut buf[at..at + len]),
        )
    }
    fn write_gm(&mut self, addr: HostGm, data: &[u8]) -> Result<(), GmAccessError> {
        let mmio = &mut self.mmio;
        let mem = &mut self.mem;
        for_each_gm_page(
            addr,
            data.len(),
            |i| HostPte::from_raw(mmio.read64(ggtt_offset(i))),
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
        self.put(slot, lrc::RING_HEAD + 1, sub.head())?;
        self.put(slot, lrc::RING_TAIL + 1, sub.tail())?;
        self.put(slot, lrc::RING_START + 1, sub.ring().base().raw() as u32)?;
        self.put(slot, lrc::RING_CTL + 1, ring_ctl)?;
        let lrca = self.area(context, engine).lrca.raw() as u32;
        let lo = lrca | CTX_DESC_PRIVILEGE | CTX_DESC_LEGACY_32B | CTX_DESC_VALID;
        let hi = id.0 as u32;
        let elsp = ring::reg(engine, ring::ELSP);
        self.mmio.write32(elsp, 0);
        self.mmio.write32(elsp, 0);
        self.mmio.write32(elsp, hi);
        self.mmio.write32(elsp, lo);
        self.engines[engine.index()].pending = Some((id, context));
        Ok(id)
    }
    fn poll(&mut self, engine: Engine) -> EngineStatus {
        let st = self.engines[engine.index()];
        if let Some(f) = st.fault {
            return EngineStatus::Faulted(f);
        }
        let Some((pending, context)) = st.pending else {
            return EngineStatus::Idle {
                last_completed: st.last_completed,
            };
        };
        let fault = self.mmio.read32(gt::RING_FAULT);
        if fault & gt::RING_FAULT_VALID != 0 && (fault >> 12) & 7 == engine.index() as u32 {
            let lo = self.mmio.read32(gt::FAULT_TLB_DATA0);
            let hi = self.mmio.read32(gt::FAULT_TLB_DATA1);
            let f = GpuFault {
                engine,
                context,
                submission: pending,
                kind: FaultKind::InvalidPte,
                address: Some((u64::from(lo) << 12) | (u64::from(hi & 0xf) << 44)),
                header: self.mmio.read32(ring::reg(engine, ring::IPEHR)),
            };
            let e = &mut self.engines[engine.index()];
            e.fault = Some(f);
            e.pending = None;
            return EngineStatus::Faulted(f);
        }
        let write = self.mmio.read32(ring::reg(engine, ring::CSB_PTR)) & 0xf;
        let mut read = st.csb_read;
        let mut done = false;
        let mut steps = 0;
        while read != write && write < ring::CSB_ENTRIES && steps < ring::CSB_ENTRIES {
            read = (read + 1) % ring::CSB_ENTRIES;
            steps += 1;
            let status = self
                .mmio
                .read32(ring::reg(engine, ring::CSB_BASE + 8 * read));
            let ctx = self
                .mmio
                .read32(ring::reg(engine, ring::CSB_BASE + 8 * read + 4));
            if status & (ring::CSB_STATUS_COMPLETE | ring::CSB_STATUS_ACTIVE_IDLE) != 0
                && ctx == pending.0 as u32
            {
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
            e.last_completed = Some(pending);
            EngineStatus::Idle {
                last_completed: Some(pending),
            }
        } else {
            EngineStatus::Busy { running: pending }
        }
    }
    fn advance(&mut self, _now_ns: u64) {
        // The hardware runs by itself.
    }
    fn finished_at_ns(&mut self, _engine: Engine, _id: SubmissionId) -> Option<u64> {
        // The CSB carries no time; the scheduler charges up to its poll.
        None
    }
    fn reset_engine(&mut self, engine: Engine) {
        let bit = gdrst_bit(engine);
        self.mmio.write32(GDRST, bit);
        // Bounded: a reset that never clears leaves the engine faulted.
        if self.poll_until(GDRST, bit, 0, "engine reset").is_ok() {
            let e = &mut self.engines[engine.index()];
            e.fault = None;
            e.pending = None;
            e.csb_read = ring::CSB_ENTRIES - 1;
            self.mmio.write32(gt::RING_FAULT, 0);
        }
    }
    fn release_context(&mut self, context: ContextId) {
        for engine in Engine::ALL {
            let st = self.engines[engine.index()];
            let running = st.pending.is_some_and(|(_, c)| c == context)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::HostGmRange;
    use crate::testutil::SparseMem;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        R32(u32),
        R64(u32),
        W32(u32, u32),
        W64(u32, u64),
    }

    /// Records every access; answers forcewake acks from the requests,
    /// GDRST as self-clearing, and the CSB from `csb`.
    #[derive(Debug, Default)]
    struct Recorder {
        log: Vec<Op>,
        regs: std::collections::HashMap<u32, u32>,
        ggtt: std::collections::HashMap<u32, u64>,
    }

    impl Mmio for Recorder {
        fn read32(&mut self, o: MmioOffset) -> u32 {
            self.log.push(Op::R32(o.raw()));
            for d in forcewake::Domain::ALL {
                if d.ack() == o {
                    return self.regs.get(&d.request().raw()).copied().unwrap_or(0) & 0xffff;
                }
            }
            if o == GDRST {
                return 0;
            }
            self.regs.get(&o.raw()).copied().unwrap_or(0)
        }
        fn write32(&mut self, o: MmioOffset, v: u32) {
            self.log.push(Op::W32(o.raw(), v));
            let old = self.regs.get(&o.raw()).copied().unwrap_or(0);
            let is_masked = forcewake::Domain::ALL.iter().any(|d| d.request() == o);
            let nv = if is_masked {
                (old & !(v >> 16)) | (v & (v >> 16))
            } else {
                v
            };
            self.regs.insert(o.raw(), nv);
        }
        fn read64(&mut self, o: MmioOffset) -> u64 {
            self.log.push(Op::R64(o.raw()));
            self.ggtt.get(&o.raw()).copied().unwrap_or(0)
        }
        fn write64(&mut self, o: MmioOffset, v: u64) {
            self.log.push(Op::W64(o.raw(), v));
            self.ggtt.insert(o.raw(), v);
        }
    }

    /// GM address of the context of `c` on engine `e` (0x20000 apart per
    /// engine, 1 MiB per context).
    fn lrca(c: usize, e: usize) -> u64 {
        0x10_0000 * (c as u64 + 1) + 0x2_0000 * e as u64
    }

    /// Physical address of its image (16 MiB up, same spacing).
    fn image(c: usize, e: usize) -> u64 {
        0x100_0000 + 0x10_0000 * c as u64 + 0x2_0000 * e as u64
    }

    fn contexts() -> ContextTable {
        core::array::from_fn(|c| {
            core::array::from_fn(|e| EngineContext {
                lrca: HostGm::new(lrca(c, e)).unwrap(),
                image: PhysAddr::new(image(c, e)).unwrap(),
            })
        })
    }

    fn device() -> IntelGen9<Recorder, SparseMem> {
        IntelGen9::new(Recorder::default(), SparseMem::new(1 << 32), contexts())
    }

    #[test]
    fn init_wakes_every_domain_then_enables_execlists() {
        let mut d = device();
        d.init().unwrap();
        let mut want = Vec::new();
        for dom in forcewake::Domain::ALL {
            want.push(Op::W32(dom.request().raw(), 0x0001_0001));
            want.push(Op::R32(dom.ack().raw()));
        }
        for (i, e) in Engine::ALL.into_iter().enumerate() {
            want.push(Op::W32(e.mmio_base() + 0x29c, 0x8000_8000));
            want.push(Op::W32(e.mmio_base() + 0x80, lrca(0, i) as u32));
            want.push(Op::R32(e.mmio_base() + 0x80));
        }
        assert_eq!(d.mmio().log, want);
    }

    #[test]
    fn forcewake_without_ack_times_out() {
        struct Deaf;
        impl Mmio for Deaf {
            fn read32(&mut self, _: MmioOffset) -> u32 {
                0
            }
            fn write32(&mut self, _: MmioOffset, _: u32) {}
            fn read64(&mut self, _: MmioOffset) -> u64 {
                0
            }
            fn write64(&mut self, _: MmioOffset, _: u64) {}
        }
        let mut d = IntelGen9::new(Deaf, SparseMem::new(1 << 32), contexts());
        assert_eq!(
            d.init(),
            Err(BackendError::Timeout {
                what: "forcewake ack"
            })
        );
        let sub = Submission::new(
            Engine::Render,
            ContextId::MONITOR,
            HostGmRange::new(HostGm::new(0).unwrap(), 4096).unwrap(),
            0,
            8,
        )
        .unwrap();
        assert_eq!(d.submit(&sub), Err(BackendError::NotInitialised));
    }

    #[test]
    fn submit_fills_the_context_and_writes_elsp_in_order_then_polls_the_csb() {
        let mut d = device();
        d.init().unwrap();
        // After reset the CSB write pointer sits at the last entry.
        let base = Engine::Blitter.mmio_base();
        d.mmio.regs.insert(base + 0x3a0, 5);
        d.mmio.log.clear();
        let ring = HostGmRange::new(HostGm::new(0x20_0000).unwrap(), 2 * 4096).unwrap();
        let sub = Submission::new(Engine::Blitter, ContextId::MONITOR, ring, 0x10, 0x40).unwrap();
        let id = d.submit(&sub).unwrap();
        let elsp = Engine::Blitter.mmio_base() + 0x230;
        let lo = lrca(0, 1) as u32 | (1 << 8) | (1 << 3) | 1;
        assert_eq!(
            d.mmio().log,
            vec![
                Op::W32(elsp, 0),
                Op::W32(elsp, 0),
                Op::W32(elsp, id.0 as u32),
                Op::W32(elsp, lo)
            ]
        );
        let state = image(0, 1) + 4096;
        let dword = |i: u64| {
            let mut b = [0u8; 4];
            d.mem()
                .read(PhysAddr::new(state + 4 * i).unwrap(), &mut b)
                .unwrap();
            u32::from_le_bytes(b)
        };
        assert_eq!(dword(1), (0x22 << 23) | (1 << 12) | 21);
        assert_eq!(dword(6), Engine::Blitter.mmio_base() + 0x30);
        assert_eq!(dword(5), 0x10);
        assert_eq!(dword(7), 0x40);
        assert_eq!(dword(9), 0x20_0000);
        assert_eq!(dword(11), (1 << 12) | 1);
        assert_eq!(d.poll(Engine::Blitter), EngineStatus::Busy { running: id });
        assert!(matches!(
            d.submit(&sub),
            Err(BackendError::EngineNotIdle(_))
        ));
        // Hardware reports completion in CSB entry 0.
        d.mmio.regs.insert(base + 0x370, ring::CSB_STATUS_COMPLETE);
        d.mmio.regs.insert(base + 0x374, id.0 as u32);
        d.mmio.regs.insert(base + 0x3a0, 0);
        d.mmio.log.clear();
        assert_eq!(
            d.poll(Engine::Blitter),
            EngineStatus::Idle {
                last_completed: Some(id)
            }
        );
        assert_eq!(
            d.mmio().log,
            vec![
                Op::R32(gt::RING_FAULT.raw()),
                Op::R32(base + 0x3a0),
                Op::R32(base + 0x370),
                Op::R32(base + 0x374),
                Op::W32(base + 0x3a0, 0x0f00_0000),
            ]
        );
    }

    fn vgpu_context(slot: u8) -> ContextId {
        ContextId::of_vgpu(crate::partition::VgpuId::new(slot).unwrap())
    }

    fn image_dword(d: &IntelGen9<Recorder, SparseMem>, c: ContextId, e: Engine, at: u64) -> u32 {
        let mut b = [0u8; 4];
        d.mem()
            .read(
                PhysAddr::new(image(c.index(), e.index()) + at).unwrap(),
                &mut b,
            )
            .unwrap();
        u32::from_le_bytes(b)
    }

    /// Submits `[head, tail)` of a one-page ring on `context`.
    fn submit_on(
        d: &mut IntelGen9<Recorder, SparseMem>,
        engine: Engine,
        context: ContextId,
        head: u32,
        tail: u32,
    ) -> SubmissionId {
        let ring = HostGmRange::new(HostGm::new(0x20_0000).unwrap(), 4096).unwrap();
        d.submit(&Submission::new(engine, context, ring, head, tail).unwrap())
            .unwrap()
    }

    /// The hardware reports `id` complete in CSB entry `entry`.
    fn complete(
        d: &mut IntelGen9<Recorder, SparseMem>,
        engine: Engine,
        id: SubmissionId,
        entry: u32,
    ) {
        let base = engine.mmio_base();
        d.mmio
            .regs
            .insert(base + 0x370 + 8 * entry, ring::CSB_STATUS_COMPLETE);
        d.mmio.regs.insert(base + 0x374 + 8 * entry, id.0 as u32);
        d.mmio.regs.insert(base + 0x3a0, entry);
        assert_eq!(
            d.poll(engine),
            EngineStatus::Idle {
                last_completed: Some(id)
            }
        );
    }

    #[test]
    fn each_context_runs_from_its_own_image_and_descriptor() {
        let mut d = device();
        d.init().unwrap();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        let render = Engine::Render;
        let elsp = render.mmio_base() + 0x230;
        let desc = |c: ContextId| lrca(c.index(), 0) as u32 | (1 << 8) | (1 << 3) | 1;
        // RING_HEAD / RING_TAIL values of the register state page.
        let (head, tail) = (4096 + 4 * 5, 4096 + 4 * 7);
        d.mmio.log.clear();
        let first = submit_on(&mut d, render, a, 0x10, 0x40);
        assert_eq!(d.mmio().log.last(), Some(&Op::W32(elsp, desc(a))));
        assert_eq!(image_dword(&d, a, render, head), 0x10);
        assert_eq!(image_dword(&d, b, render, head), 0);
        complete(&mut d, render, first, 0);
        d.mmio.log.clear();
        let second = submit_on(&mut d, render, b, 0x80, 0x100);
        assert_eq!(d.mmio().log.last(), Some(&Op::W32(elsp, desc(b))));
        assert_eq!(image_dword(&d, b, render, tail), 0x100);
        // The first context's image keeps its own registers.
        assert_eq!(image_dword(&d, a, render, tail), 0x40);
        complete(&mut d, render, second, 1);
    }

    #[test]
    fn a_released_context_is_rewritten_fresh_before_its_next_use() {
        let mut d = device();
        d.init().unwrap();
        let a = vgpu_context(2);
        let render = Engine::Render;
        let id = submit_on(&mut d, render, a, 0, 0x20);
        complete(&mut d, render, id, 0);
        // What the hardware saved for the context: say, a GPR in the
        // engine state pages.
        let saved = 5 * 4096 + 0x40;
        let at = PhysAddr::new(image(a.index(), 0) + saved).unwrap();
        d.mem.write(at, &0xdead_u32.to_le_bytes()).unwrap();
        d.mmio.log.clear();
        d.release_context(a);
        // Nothing was running it: no register access at all.
        assert_eq!(d.mmio().log, vec![]);
        assert_eq!(image_dword(&d, a, render, saved), 0xdead);
        let id = submit_on(&mut d, render, a, 0x20, 0x28);
        assert_eq!(image_dword(&d, a, render, saved), 0);
        assert_eq!(
            image_dword(&d, a, render, 4096 + 4),
            (0x22 << 23) | (1 << 12) | 21
        );
        assert_eq!(image_dword(&d, a, render, 4096 + 4 * 5), 0x20);
        complete(&mut d, render, id, 1);
    }

    #[test]
    fn releasing_a_context_still_running_resets_its_engine_only() {
        let mut d = device();
        d.init().unwrap();
        let (a, b) = (vgpu_context(0), vgpu_context(1));
        submit_on(&mut d, Engine::Video, a, 0, 8);
        submit_on(&mut d, Engine::Blitter, b, 0, 8);
        d.mmio.log.clear();
        d.release_context(a);
        assert_eq!(
            d.mmio().log.first(),
            Some(&Op::W32(GDRST.raw(), gdrst_bit(Engine::Video)))
        );
        assert!(!d
            .mmio()
            .log
            .contains(&Op::W32(GDRST.raw(), gdrst_bit(Engine::Blitter))));
        // The video engine takes new work; the blitter still runs b's.
        submit_on(&mut d, Engine::Video, b, 0, 8);
        assert!(matches!(d.poll(Engine::Blitter), EngineStatus::Busy { .. }));
    }

    #[test]
    fn pte_writes_go_to_bar0_plus_8mib_and_flush_is_posted() {
        let mut d = device();
        let pte = HostPte::map(
            crate::addr::PhysFrame::new(0x1234).unwrap(),
            crate::ggtt::PteFlags::NONE,
        );
        let f = d.write_pte(HostGgttIndex::new(5).unwrap(), pte);
        d.flush_ggtt(f);
        assert_eq!(
            d.mmio().log,
            vec![
                Op::W64(0x80_0000 + 40, 0x123_4001),
                Op::W32(0x10_1008, 1),
                Op::R32(0x10_1008)
            ]
        );
        assert_eq!(d.read_pte(HostGgttIndex::new(5).unwrap()), pte);
        d.write_gm(HostGm::new(5 * 4096 + 8).unwrap(), &[1, 2, 3])
            .unwrap();
        let mut b = [0u8; 3];
        d.mem()
            .read(PhysAddr::new(0x123_4008).unwrap(), &mut b)
            .unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(d.read_gm(HostGm::new(0).unwrap(), &mut b).is_err());
    }

    /// Over MMIO, save reads back only the GGTT blocks the guest wrote an
    /// entry of (a bus round trip each), not all of the vGPU's entries; a
    /// restore onto other slices rebuilds the same mappings.
    #[test]
    fn save_reads_only_the_ggtt_blocks_the_guest_wrote() {
        use crate::addr::{GuestPage, PhysFrame};
        use crate::ggtt::{GuestPte, PteFlags};
        use crate::partition::{GmLayout, PartitionAllocator, VgpuType};
        use crate::regs::GGTT_BAR0_OFFSET;
        use crate::testutil::guest_mem;
        use crate::vgpu::{scrub_partition, AccessSize, Vgpu};
        let mut d = device();
        let mut a =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let p = a.allocate(VgpuType::Small).unwrap();
        scrub_partition(&mut d, &p);
        let mem = guest_mem(0, 0x2000, 16);
        let mut v = Vgpu::new(&p);
        // Three entries: two in the first aperture block, one in the hidden.
        let gms = [
            p.aperture().base().raw(),
            p.aperture().base().raw() + 5 * 4096,
            p.hidden().base().raw() + 0x40_0000,
        ];
        for (i, gm) in gms.into_iter().enumerate() {
            let pte = GuestPte::map(GuestPage::new(i as u64).unwrap(), PteFlags::NONE);
            let off = GGTT_BAR0_OFFSET + (gm >> 12) as u32 * 8;
            let done = v.mmio_write(&mut d, &mem, off, AccessSize::Qword, pte.raw());
            assert_eq!(done, Ok(crate::vgpu::MmioEffect::Done));
        }
        d.mmio.log.clear();
        let mut blob = vec![0u8; 1 << 16];
        let n = v.save(&mut d, &mem, &mut blob).unwrap();
        let reads = d
            .mmio()
            .log
            .iter()
            .filter(|o| matches!(o, Op::R64(_)))
            .count();
        // Two blocks of 512 entries, out of the 112 Ki of a small vGPU.
        assert_eq!(reads, 2 * 512);
        let q = a.allocate(VgpuType::Small).unwrap();
        scrub_partition(&mut d, &q);
        let other = guest_mem(0, 0x3000, 16);
        let w = Vgpu::restore(&blob[..n], &q, &mut d, &other).unwrap();
        for (i, gm) in gms.into_iter().enumerate() {
            let guest = crate::addr::GuestGgttIndex::new(gm >> 12).unwrap();
            let host = w.translation().g2h_index(guest).unwrap();
            assert_eq!(
                d.read_pte(host).frame(),
                Some(PhysFrame::new(0x3000 + i as u64).unwrap())
            );
        }
    }
}
