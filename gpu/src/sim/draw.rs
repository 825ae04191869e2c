//! `SimGpu`'s minimal draw: 3DPRIMITIVE writes its render target through
//! the memory-resident state a real draw reads, so that where that state
//! points is tested, not argued.
//!
//! The model runs no shader. A draw finds render target 0 as the pixel
//! shader would (PRM vol 2d, vol 7 "Binding Table" / "Surface State"):
//! the binding table at 3DSTATE_BINDING_TABLE_POINTERS_PS's offset from
//! the binding table pool (3DSTATE_BINDING_TABLE_POOL_ALLOC, when enabled)
//! or else from STATE_BASE_ADDRESS's Surface State Base Address; its entry
//! 0 (BINDING_TABLE_STATE, bits 31:6) the offset of a RENDER_SURFACE_STATE
//! from the Surface State Base Address; and that state's Surface Base
//! Address (DWords 8-9), width, height and pitch (DWords 2-3, minus-one
//! encoded). It then writes every pixel of the surface with the surface's
//! clear colour (DWords 12-15, the low byte of each channel packed in the
//! surface's format): the effect of a full-surface clear, and enough to
//! see every byte the draw reaches. Every read of state and every write
//! of pixels goes through the context's address space (its PPGTT when it
//! has one), as the hardware's would.
//!
//! Modelled: 2D linear surfaces of R8G8B8A8_UNORM or B8G8R8A8_UNORM.
//! Anything else (another surface type, tiling, format, a missing state)
//! stops the engine with [`FaultKind::Unmodeled`]. The pixels count
//! against the submission's blit byte budget.

use super::exec::addr48;
use super::ppgtt::{Space, Va};
use super::{SimGpu, Stop};
use crate::backend::{ContextId, FaultKind, PhysMem};
use crate::engine::Engine;

/// RENDER_SURFACE_STATE's length in DWords (Gen9).
const SURFACE_STATE_DWORDS: usize = 16;
/// Surface Type 2D (DWord 0 bits 31:29).
const SURFTYPE_2D: u32 = 1;
/// Surface Format (DWord 0 bits 27:18): R8G8B8A8_UNORM and
/// B8G8R8A8_UNORM (genxml `SURFACE_FORMAT`).
const R8G8B8A8_UNORM: u32 = 0xc7;
const B8G8R8A8_UNORM: u32 = 0xc0;

fn unmodeled(what: &'static str) -> Stop {
    Stop::kind(FaultKind::Unmodeled(what))
}

impl<M: PhysMem> SimGpu<M> {
    fn read_dword(&self, va: Va) -> Result<u32, Stop> {
        let mut b = [0u8; 4];
        self.va_read(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// 3DPRIMITIVE in `context` on `engine`, its state's addresses in
    /// `space`; `budget` the submission's blit bytes so far.
    pub(super) fn draw(
        &mut self,
        engine: Engine,
        context: ContextId,
        space: Space,
        budget: &mut u64,
    ) -> Result<(), Stop> {
        let state = &self.contexts[context.index()][engine.index()].pipeline;
        let surface_base = state
            .surface_base
            .ok_or(unmodeled("a draw before STATE_BASE_ADDRESS"))?;
        let table_base = state.binding_table_pool.unwrap_or(surface_base);
        let table = Va::new(space, table_base)?.add(u64::from(state.binding_table_ps))?;
        let entry = self.read_dword(table)?;
        let at = Va::new(space, surface_base)?.add(u64::from(entry & !0x3f))?;
        let mut rss = [0u32; SURFACE_STATE_DWORDS];
        for (i, dw) in rss.iter_mut().enumerate() {
            *dw = self.read_dword(at.add(4 * i as u64)?)?;
        }
        if rss[0] >> 29 != SURFTYPE_2D {
            return Err(unmodeled("a render target other than a 2D surface"));
        }
        if (rss[0] >> 12) & 3 != 0 {
            return Err(unmodeled("a tiled render target"));
        }
        let [r, g, b, a] = [rss[12], rss[13], rss[14], rss[15]].map(|c| c & 0xff);
        let pixel = match (rss[0] >> 18) & 0x3ff {
            R8G8B8A8_UNORM => r | g << 8 | b << 16 | a << 24,
            B8G8R8A8_UNORM => b | g << 8 | r << 16 | a << 24,
            _ => return Err(unmodeled("a render target format other than 8-bit RGBA")),
        };
        let width = u64::from(rss[2] & 0x3fff) + 1;
        let height = u64::from((rss[2] >> 16) & 0x3fff) + 1;
        let pitch = u64::from(rss[3] & 0x3_ffff) + 1;
        let row_bytes = width * 4;
        if pitch < row_bytes {
            return Err(unmodeled("a render target pitch below its row"));
        }
        *budget += row_bytes * height;
        if *budget > super::BLIT_BYTE_BUDGET {
            return Err(Stop::kind(FaultKind::Hang));
        }
        let target = Va::new(space, addr48(rss[8], rss[9]))?;
        let mut row = [0u8; 4096];
        for (i, b) in row.iter_mut().enumerate() {
            *b = pixel.to_le_bytes()[i % 4];
        }
        for y in 0..height {
            let start = target.add(y * pitch)?;
            let mut done = 0;
            while done < row_bytes {
                let n = (row_bytes - done).min(row.len() as u64);
                self.va_write(start.add(done)?, &row[..n as usize])?;
                done += n;
            }
        }
        Ok(())
    }
}
