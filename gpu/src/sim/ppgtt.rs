//! Address spaces of [`SimGpu`]'s command streamer: the GGTT, and the
//! 4-level PPGTT of a context that has one ([`Submission::ppgtt`]), walked
//! with the Gen9 entry format ([`crate::ppgtt::walk`]) over the tables in
//! memory; and what a non-privileged batch may not do.
//!
//! Which space an address is in (PRM vol 2a, the MI commands' "Use Global
//! GTT" / "Address Space Indicator" fields; vol 7 "Execlists"):
//! * an MI memory command names it: its GGTT bit set, the GGTT; clear, the
//!   context's PPGTT (a context without one faults, [`FaultKind::Ppgtt`]);
//! * MI_BATCH_BUFFER_START's Address Space Indicator: a batch started with
//!   it set runs from the PPGTT and is *non-privileged*;
//! * every other address (blits, and the state a draw reads) is in the
//!   context's PPGTT when it has one, else in the GGTT.
//!
//! A non-privileged batch may not (the hardware drops the command and
//! flags a command privilege violation; the model stops the engine with
//! [`FaultKind::PrivilegeViolation`], which keeps the command from taking
//! effect just the same): issue a command only a privileged batch may (the
//! scanner table's privileged rows: display, context, power, GTT and
//! resource-streamer commands), reach the GGTT (a GGTT bit set, a GGTT
//! batch start), or read or write a register outside the hardware's
//! non-privileged set ([`NONPRIVILEGED_REGISTERS`]; on the blitter the Gen9
//! hardware does not check registers, see there).
//!
//! [`NONPRIVILEGED_REGISTERS`]: crate::scan::regs::NONPRIVILEGED_REGISTERS
//!
//! [`Submission::ppgtt`]: crate::backend::Submission::ppgtt

use super::{SimGpu, Stop};
use crate::addr::{HostGm, PhysFrame, GM_SIZE, PAGE_SIZE};
use crate::backend::{FaultKind, PhysMem};
use crate::ppgtt::{walk, HostTables, PpgttAddr, WalkError, PPGTT_SIZE};

/// The address space of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Space {
    /// The global GTT.
    Ggtt,
    /// The context's PPGTT, by its PML4 frame.
    Ppgtt(PhysFrame),
}

/// An address in a space (checked against the space's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Va {
    pub(super) space: Space,
    pub(super) raw: u64,
}

impl Va {
    pub(super) fn new(space: Space, raw: u64) -> Result<Va, Stop> {
        let size = match space {
            Space::Ggtt => GM_SIZE,
            Space::Ppgtt(_) => PPGTT_SIZE,
        };
        if raw >= size {
            return Err(Stop {
                kind: match space {
                    Space::Ggtt => FaultKind::OutsideGgtt,
                    Space::Ppgtt(_) => FaultKind::PpgttNotPresent,
                },
                address: Some(raw),
            });
        }
        Ok(Va { space, raw })
    }

    /// The address `bytes` further on, in the same space.
    pub(super) fn add(self, bytes: u64) -> Result<Va, Stop> {
        Va::new(self.space, self.raw.saturating_add(bytes))
    }
}

impl<M: PhysMem> SimGpu<M> {
    /// Reads `buf.len()` bytes at `va`.
    pub(super) fn va_read(&self, va: Va, buf: &mut [u8]) -> Result<(), Stop> {
        match va.space {
            Space::Ggtt => Ok(self.gm_read(ggtt_addr(va.raw)?, buf)?),
            Space::Ppgtt(root) => {
                let mut done = 0usize;
                while done < buf.len() {
                    let at = va.raw + done as u64;
                    let n = ((PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize).min(buf.len() - done);
                    let frame = self.ppgtt_frame(root, at, false)?;
                    self.mem
                        .read(frame.at(at), &mut buf[done..done + n])
                        .map_err(|_| no_memory(at))?;
                    done += n;
                }
                Ok(())
            }
        }
    }

    /// Writes `data` at `va`.
    pub(super) fn va_write(&mut self, va: Va, data: &[u8]) -> Result<(), Stop> {
        match va.space {
            Space::Ggtt => Ok(self.gm_write(ggtt_addr(va.raw)?, data)?),
            Space::Ppgtt(root) => {
                let mut done = 0usize;
                while done < data.len() {
                    let at = va.raw + done as u64;
                    let n = ((PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize).min(data.len() - done);
                    let frame = self.ppgtt_frame(root, at, true)?;
                    self.mem
                        .write(frame.at(at), &data[done..done + n])
                        .map_err(|_| no_memory(at))?;
                    done += n;
                }
                Ok(())
            }
        }
    }

    /// The frame the PPGTT rooted at `root` maps `addr` to, for a read or
    /// a write.
    fn ppgtt_frame(&self, root: PhysFrame, addr: u64, write: bool) -> Result<PhysFrame, Stop> {
        let fault = |kind| Stop {
            kind,
            address: Some(addr),
        };
        let a = PpgttAddr::new(addr).ok_or(fault(FaultKind::PpgttNotPresent))?;
        let t = walk(&HostTables { mem: &self.mem }, root.number(), a).map_err(|e| match e {
            WalkError::NotPresent { .. } => fault(FaultKind::PpgttNotPresent),
            WalkError::Read { .. } => fault(FaultKind::NoMemory),
        })?;
        if write && !t.writable {
            return Err(fault(FaultKind::PpgttReadOnly));
        }
        PhysFrame::new(t.page).map_err(|_| fault(FaultKind::NoMemory))
    }
}

fn ggtt_addr(raw: u64) -> Result<HostGm, Stop> {
    HostGm::new(raw).map_err(|_| Stop {
        kind: FaultKind::OutsideGgtt,
        address: Some(raw),
    })
}

fn no_memory(addr: u64) -> Stop {
    Stop {
        kind: FaultKind::NoMemory,
        address: Some(addr),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{idle, setup, DATA, RING};
    use super::*;
    use crate::addr::{GuestPage, PhysAddr};
    use crate::backend::{Backend, ContextId, EngineStatus, GpuFault, Submission};
    use crate::engine::Engine;
    use crate::ppgtt::shadow::{ShadowPpgtt, ShadowRoot};
    use crate::ppgtt::{Entry, WRITABLE};
    use crate::regs::gt;
    use crate::scan::regs::nonprivileged_register;
    use crate::testutil::*;
    use crate::vgpu::FrameRuns;

    /// Guest pages 0..64 in frames from GUEST; the tables: PML4 page 1,
    /// PDP 2, PD 3, PT 4. PPGTT 0x0000 maps page 10, 0x1000 page 11
    /// read-only, 0x2000 a foreign frame's number, 0x8000.. pages 20..
    /// (the batch).
    const GUEST: u64 = 0x1000;
    const FOREIGN: u64 = 0x2000;
    const POOL: u64 = 0x8000;
    const BATCH_VA: u64 = 0x8000;

    struct Ctx {
        g: SimGpu<crate::testutil::SparseMem>,
        map: FrameRuns<4>,
        shadow: ShadowPpgtt<16>,
        root: ShadowRoot,
    }

    fn guest_write(g: &mut SimGpu<crate::testutil::SparseMem>, page: u64, off: u64, b: &[u8]) {
        let at = PhysFrame::new(GUEST + page).unwrap().at(off);
        g.mem_mut().write(at, b).unwrap();
    }

    fn guest_u32(g: &SimGpu<crate::testutil::SparseMem>, frame: u64, off: u64) -> u32 {
        let mut b = [0u8; 4];
        g.mem()
            .read(PhysAddr::new(frame * 4096 + off).unwrap(), &mut b)
            .unwrap();
        u32::from_le_bytes(b)
    }

    fn ctx() -> Ctx {
        let mut g = setup();
        let map = guest_mem(0, GUEST, 64);
        let entry = |g: &mut SimGpu<_>, page, i: u64, e: Entry| {
            guest_write(g, page, i * 8, &e.raw().to_le_bytes())
        };
        entry(&mut g, 1, 0, Entry::new(2, WRITABLE));
        entry(&mut g, 2, 0, Entry::new(3, WRITABLE));
        entry(&mut g, 3, 0, Entry::new(4, WRITABLE));
        entry(&mut g, 4, 0, Entry::new(10, WRITABLE));
        entry(&mut g, 4, 1, Entry::new(11, 0));
        entry(&mut g, 4, 2, Entry::new(FOREIGN, WRITABLE));
        for i in 0..4 {
            entry(&mut g, 4, 8 + i, Entry::new(20 + i, WRITABLE));
        }
        // 0x10000: surface state heap (page 30); 0x11000: a render target
        // (page 31).
        entry(&mut g, 4, 16, Entry::new(30, WRITABLE));
        entry(&mut g, 4, 17, Entry::new(31, WRITABLE));
        let pool = PhysFrame::new(POOL).unwrap();
        let mut shadow = ShadowPpgtt::new(pool, 16, g.mem_mut()).unwrap();
        let (root, _) = shadow
            .pin(GuestPage::new(1).unwrap(), &map, g.mem_mut())
            .unwrap();
        Ctx {
            g,
            map,
            shadow,
            root,
        }
    }

    impl Ctx {
        /// Writes `batch` at PPGTT BATCH_VA (guest page 20) and runs `ring`
        /// in the PPGTT context.
        fn run(&mut self, ring: &[u32], batch: &[u32]) -> EngineStatus {
            let bytes: Vec<u8> = batch.iter().flat_map(|d| d.to_le_bytes()).collect();
            guest_write(&mut self.g, 20, 0, &bytes);
            let mut v = ring.to_vec();
            if v.len() % 2 == 1 {
                v.push(NOOP);
            }
            write_dwords(&mut self.g, RING, &v);
            let sub = Submission::new(
                Engine::Render,
                ContextId::MONITOR,
                range(RING, 4096),
                0,
                (v.len() * 4) as u32,
            )
            .unwrap()
            .with_ppgtt(self.root.frame());
            self.g.submit(&sub).unwrap();
            finish(&mut self.g, Engine::Render)
        }
        fn run_batch(&mut self, batch: &[u32]) -> EngineStatus {
            self.run(&ppgtt_bb_start(BATCH_VA, false), batch)
        }
        /// [`Self::run`] of the PPGTT batch start on `engine`.
        fn run_batch_on(&mut self, engine: Engine, batch: &[u32]) -> EngineStatus {
            let bytes: Vec<u8> = batch.iter().flat_map(|d| d.to_le_bytes()).collect();
            guest_write(&mut self.g, 20, 0, &bytes);
            let mut v = ppgtt_bb_start(BATCH_VA, false).to_vec();
            v.push(NOOP);
            write_dwords(&mut self.g, RING, &v);
            let sub = Submission::new(engine, ContextId::MONITOR, range(RING, 4096), 0, 16)
                .unwrap()
                .with_ppgtt(self.root.frame());
            self.g.submit(&sub).unwrap();
            finish(&mut self.g, engine)
        }
    }

    fn fault(st: EngineStatus) -> GpuFault {
        match st {
            EngineStatus::Faulted(f) => f,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn a_ppgtt_batch_writes_through_the_shadow_to_the_guests_frames() {
        let mut c = ctx();
        let mut b = ppgtt_sdi(0x10, 0x1234).to_vec();
        b.push(BB_END);
        idle(c.run_batch(&b));
        assert_eq!(guest_u32(&c.g, GUEST + 10, 0x10), 0x1234);
        // A guest page that is not the guest's lands on its scratch page.
        let mut b = ppgtt_sdi(0x2010, 0x5678).to_vec();
        b.push(BB_END);
        idle(c.run_batch(&b));
        assert_eq!(guest_u32(&c.g, FOREIGN, 0x10), 0);
        assert_eq!(
            guest_u32(&c.g, c.shadow.scratch_page().number(), 0x10),
            0x5678
        );
        let _ = &c.map;
    }

    #[test]
    fn a_ppgtt_page_fault_and_a_read_only_write_stop_the_engine() {
        let mut c = ctx();
        let mut b = ppgtt_sdi(0x4_0000, 1).to_vec();
        b.push(BB_END);
        let f = fault(c.run_batch(&b));
        assert_eq!(f.kind, FaultKind::PpgttNotPresent);
        assert_eq!(f.address, Some(0x4_0000));
        assert_eq!(c.g.read_reg(gt::FAULT_TLB_DATA1) & gt::FAULT_GGTT, 0);
        c.g.reset_engine(Engine::Render);
        let mut b = ppgtt_sdi(0x1000, 1).to_vec();
        b.push(BB_END);
        assert_eq!(fault(c.run_batch(&b)).kind, FaultKind::PpgttReadOnly);
        assert_eq!(guest_u32(&c.g, GUEST + 11, 0), 0);
    }

    #[test]
    fn a_non_privileged_batch_may_not_reach_the_ggtt() {
        let mut c = ctx();
        // The same GGTT store runs from the ring (privileged) ...
        idle(c.run(&sdi(DATA, 7), &[BB_END]));
        assert_eq!(read_u32(&mut c.g, DATA), 7);
        // ... but not from the PPGTT batch, nor a GGTT batch started there.
        let mut b = sdi(DATA, 8).to_vec();
        b.push(BB_END);
        let f = fault(c.run_batch(&b));
        assert!(matches!(f.kind, FaultKind::PrivilegeViolation(_)), "{f:?}");
        assert_eq!(read_u32(&mut c.g, DATA), 7);
        c.g.reset_engine(Engine::Render);
        let f = fault(c.run_batch(&bb_start(DATA, false)));
        assert!(matches!(f.kind, FaultKind::PrivilegeViolation(_)), "{f:?}");
    }

    #[test]
    fn a_non_privileged_batch_writes_only_non_privileged_registers() {
        let mut c = ctx();
        let gpr0 = 0x2600;
        // RING_FORCE_TO_NONPRIV(0): privileged.
        let privileged = 0x24d0;
        let mut b = lri(gpr0, 5).to_vec();
        b.extend(lri(0x7034, 6)); // L3CNTLREG
        b.push(BB_END);
        idle(c.run_batch(&b));
        let mut b = lri(privileged, 0x2358).to_vec();
        b.push(BB_END);
        let f = fault(c.run_batch(&b));
        assert!(matches!(f.kind, FaultKind::PrivilegeViolation(_)), "{f:?}");
        c.g.reset_engine(Engine::Render);
        // From the ring it is the monitor's to write.
        idle(c.run(&lri(privileged, 0x2358), &[BB_END]));
        for nonpriv in [0x2094, 0x2300, 0x2344, 0x2600 + 31 * 4, 0x7304] {
            assert!(
                nonprivileged_register(Engine::Render, nonpriv),
                "{nonpriv:#x}"
            );
        }
        for privileged in [0x2348, 0x24d0, 0x2030, 0xa188] {
            assert!(
                !nonprivileged_register(Engine::Render, privileged),
                "{privileged:#x}"
            );
        }
        assert!(!nonprivileged_register(Engine::Blitter, 0x2600));
    }

    #[test]
    fn the_gen9_blitter_checks_no_register_in_a_non_privileged_batch() {
        // i915's cmd parser note: on Gen9 only the blitter's register
        // accesses go unchecked. RING_FORCE_TO_NONPRIV(0) of the blitter
        // and its RING_MI_MODE: written and read back from a PPGTT batch.
        let mut c = ctx();
        let mut b = lri(0x2_24d0, 0x2358).to_vec();
        let mut store = srm(0x2_24d0, 0x20).to_vec();
        store[0] &= !(1 << 22);
        b.extend(store);
        b.push(BB_END);
        idle(c.run_batch_on(Engine::Blitter, &b));
        assert_eq!(guest_u32(&c.g, GUEST + 10, 0x20), 0x2358);
        // The same on render stops the engine.
        let mut b = lri(0x24d0, 0x2358).to_vec();
        b.push(BB_END);
        let f = fault(c.run_batch_on(Engine::Render, &b));
        assert!(matches!(f.kind, FaultKind::PrivilegeViolation(_)), "{f:?}");
    }

    #[test]
    fn privileged_commands_stop_a_non_privileged_batch() {
        let mut c = ctx();
        // MI_ARB_ON_OFF, a privileged MI command.
        let f = fault(c.run_batch(&[0x08 << 23, BB_END]));
        assert_eq!(f.kind, FaultKind::PrivilegeViolation("MI_ARB_ON_OFF"));
    }

    #[test]
    fn ppgtt_batches_need_a_ppgtt_context_and_blits_use_its_addresses() {
        let mut g = setup();
        let st = super::super::tests::run(&mut g, Engine::Render, &ppgtt_bb_start(0, false));
        assert_eq!(fault(st).kind, FaultKind::Ppgtt);
        let mut c = ctx();
        // From the ring of a PPGTT context, a blit's address is a PPGTT one.
        let blit = color_blt(0, 64, 0, 0, 4, 1, 0xabcd_0123);
        let mut ring = blit.to_vec();
        ring.push(NOOP);
        let sub = {
            write_dwords(&mut c.g, RING, &ring);
            Submission::new(
                Engine::Blitter,
                ContextId::MONITOR,
                range(RING, 4096),
                0,
                (ring.len() * 4) as u32,
            )
            .unwrap()
            .with_ppgtt(c.root.frame())
        };
        c.g.submit(&sub).unwrap();
        idle(finish(&mut c.g, Engine::Blitter));
        assert_eq!(guest_u32(&c.g, GUEST + 10, 12), 0xabcd_0123);
    }

    /// RENDER_SURFACE_STATE of a linear 2D R8G8B8A8 surface at `base`,
    /// `w` x `h` pixels, `pitch` bytes, clear colour 0x44332211.
    pub(crate) fn surface_state(base: u64, w: u32, h: u32, pitch: u32) -> [u32; 16] {
        let mut s = [0u32; 16];
        s[0] = 1 << 29 | 0xc7 << 18;
        s[2] = (w - 1) | (h - 1) << 16;
        s[3] = pitch - 1;
        s[8] = base as u32;
        s[9] = (base >> 32) as u32;
        s[12..16].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        s
    }

    /// STATE_BASE_ADDRESS with only the surface state base set, the PS
    /// binding table at `table` from it, and a draw.
    pub(crate) fn draw_commands(surface_base: u64, table: u32) -> Vec<u32> {
        let mut sba = [0u32; 19];
        sba[0] = 0x6101_0000 | 17;
        sba[4] = surface_base as u32 | 1;
        sba[5] = (surface_base >> 32) as u32;
        let mut v = sba.to_vec();
        v.extend([0x782a_0000, table]); // 3DSTATE_BINDING_TABLE_POINTERS_PS
        v.extend([0x7b00_0005, 4, 3, 0, 1, 0, 0]); // 3DPRIMITIVE
        v
    }

    fn words(d: &[u32]) -> Vec<u8> {
        d.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_draw_writes_its_render_target_through_the_binding_table_and_surface_state() {
        let mut c = ctx();
        // Binding table at heap + 0x100, entry 0 -> surface state at +0x200.
        guest_write(&mut c.g, 30, 0x100, &words(&[0x200]));
        guest_write(
            &mut c.g,
            30,
            0x200,
            &words(&surface_state(0x11000, 4, 2, 64)),
        );
        let mut b = draw_commands(0x10000, 0x100);
        b.push(BB_END);
        idle(c.run_batch(&b));
        for y in 0..3u64 {
            for x in 0..16u64 {
                let got = guest_u32(&c.g, GUEST + 31, y * 64 + x * 4);
                let want = if y < 2 && x < 4 { 0x4433_2211 } else { 0 };
                assert_eq!(got, want, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn surface_state_pointing_outside_the_guest_stays_in_its_own_frames_or_faults() {
        let mut c = ctx();
        guest_write(&mut c.g, 30, 0x100, &words(&[0x200, 0x240]));
        // Render target at PPGTT 0x2000, a page the guest named by another
        // guest's frame number: the pixels land on its scratch page.
        guest_write(
            &mut c.g,
            30,
            0x200,
            &words(&surface_state(0x2000, 4, 1, 16)),
        );
        let mut b = draw_commands(0x10000, 0x100);
        b.push(BB_END);
        idle(c.run_batch(&b));
        assert_eq!(guest_u32(&c.g, FOREIGN, 0), 0);
        let scratch = c.shadow.scratch_page().number();
        assert_eq!(guest_u32(&c.g, scratch, 0), 0x4433_2211);
        // A render target, or a surface state heap, the PPGTT does not map:
        // the draw faults its own context.
        guest_write(
            &mut c.g,
            30,
            0x200,
            &words(&surface_state(0x40_0000, 4, 1, 16)),
        );
        let f = fault(c.run_batch(&b));
        assert_eq!(
            (f.kind, f.address),
            (FaultKind::PpgttNotPresent, Some(0x40_0000))
        );
        c.g.reset_engine(Engine::Render);
        let mut b = draw_commands(0x80_0000, 0x100);
        b.push(BB_END);
        let f = fault(c.run_batch(&b));
        assert_eq!(f.kind, FaultKind::PpgttNotPresent);
    }

    #[test]
    fn in_a_ggtt_context_a_draw_goes_wherever_its_surface_state_says() {
        // What shaders=allow-ggtt risks: the GGTT context's surface state
        // is memory the scanner does not audit, and the draw follows it.
        let mut g = setup();
        let mut heap = vec![0u32; 0x200 / 4];
        heap[0x100 / 4] = 0x200;
        heap.extend(surface_state(DATA + 0x2000, 2, 1, 8));
        write_dwords(&mut g, DATA, &heap);
        let st = super::super::tests::run(&mut g, Engine::Render, &draw_commands(DATA, 0x100));
        idle(st);
        assert_eq!(read_u32(&mut g, DATA + 0x2000), 0x4433_2211);
        assert_eq!(read_u32(&mut g, DATA + 0x2004), 0x4433_2211);
        assert_eq!(read_u32(&mut g, DATA + 0x2008), 0);
    }
}
