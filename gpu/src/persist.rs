//! vGPU device state save/restore (after firecracker's `Persist`)
//! and Dynamic Graphics Address Remapping on restore.
//!
//! [`Vgpu::save`] encodes into a caller-provided buffer (no allocation);
//! [`Vgpu::restore`] rebuilds a vGPU on a (possibly different) partition:
//! PVINFO keeps showing the source's guest view, the host GGTT is rebuilt by
//! replaying every present guest PTE through the new translation (and the
//! destination's guest memory map), and fences are re-programmed.
//!
//! Wire format, version 2, little endian:
//!
//! | offset | size | field                                          |
//! |--------|------|------------------------------------------------|
//! | 0      | 8    | magic `b"GMIGVGPU"`                            |
//! | 8      | 2    | format version (2)                             |
//! | 10     | 2    | flags (0)                                      |
//! | 12     | 4    | body length in bytes                           |
//! | 16     | 4    | CRC-32C (Castagnoli) of the body               |
//! | 20     | ...  | body                                           |
//!
//! Body: vGPU type code (u8), 3 reserved bytes; vgt_id (u32); guest view:
//! aperture base, aperture size, hidden base, hidden size, fence count (5 ×
//! u32); per engine in [`Engine::ALL`] order: RING_START, RING_CTL, HEAD,
//! TAIL (4 × u32); per guest fence (fence count of them): low, high (u32);
//! forcewake requests render/media/blitter (3 × u32); emulated registers:
//! count (u32) then (BAR0 offset u32, value u32) pairs; GGTT: count (u32)
//! then (guest GGTT index u32, guest PTE u64) for every present entry;
//! per engine in [`Engine::ALL`] order, its execlist port
//! ([`PORT_BYTES`] each): GFX_MODE's run-list enable (u8, 0 or 1), ELSP
//! dwords written of the next list (u8, 0..=3), the CSB write pointer
//! (u8, 0..=15) and read pointer (u8, 0..=7), the four ELSP dwords as
//! last written (4 × u32), the six CSB entries (status u32, context id
//! u32).
//!
//! Version 1 is version 2 without the execlist ports; it is still
//! restored, with every port at power-on (disabled, CSB empty): a version
//! 1 save refused a vGPU with an engine in execlist mode, so that is
//! exactly the state it saved.
//!
//! Only an idle, running vGPU is saved: in-flight work must complete first,
//! and a failed vGPU is not migrated.
//!
//! # Execlists and PPGTTs across a migration
//!
//! *Idle* includes the execlist ports: a list running or waiting, even
//! one none of whose work reached the engine yet, is work to finish, as
//! a legacy ring's queued TAIL is, and a save refuses it
//! ([`SaveError::Busy`]). The kernel's stop-and-copy holds the guest
//! (no new ELSP write) and polls the scheduler until the vGPU is idle
//! (`VgpuManager::wait_idle`), so queued execlist work is run to its end
//! on the source, never lost, and the save sees ports with nothing held:
//! each element that left wrote its RING_HEAD back into its context image
//! (a context preempted before its work ran keeps the head where it
//! stopped, and the guest resubmits it, as on hardware). So what an
//! execlist guest's device state is, beyond the rings and registers
//! above, is the port's guest-visible state ([`IdlePort`]): the run-list
//! enable, an ELSP list the guest was part-way through writing when it
//! was stopped (its remaining dwords complete it on the destination), and
//! the CSB with its pointers, so that the guest reads there the context
//! switches (element switch, preemption, lite restore, completion) it
//! had not consumed yet. The dwords of a part-written list are the
//! guest's writes, not a descriptor yet: the write that completes the
//! list on the destination checks it as any list (a context image or
//! ring outside the vGPU's slices is refused then). The execlist status
//! of an idle port reads 0 and is not stored. Everything else lives in
//! the guest's memory, which travels as RAM: its context images (ring
//! registers, PPGTT roots), its rings, its status pages and its 4-level
//! page tables.
//!
//! The shadow PPGTTs do not travel: they are monitor memory, built from
//! the guest's tables and the source's memory map, and with nothing held
//! none of their roots is pinned at a save. The destination rebuilds
//! them over its own frames from the guest's tables at the next
//! submission of each context (its ELSP write acquires and syncs the
//! root, [`crate::ppgtt::shadow::ContextShadows::acquire`]), so every
//! PPGTT address the guest wrote (surface states, batches, post-sync
//! targets) means the same guest page on the destination's frames; the
//! GGTT addresses in its descriptors and context images go through the
//! destination's translation of the same guest view. A restored vGPU has
//! no shadows yet: the caller gives it its pool with
//! [`Vgpu::enable_ppgtt`] after [`Vgpu::restore`] and before the guest
//! runs again (the order is free otherwise: nothing is acquired until
//! an ELSP write).
//!
//! Engine contexts do not travel. What a guest's submissions left in its
//! engine contexts (GPRs, predicate registers, 3D and video state) stays on
//! the source and is released with the source vGPU; the destination vGPU
//! runs on its own slot's contexts, fresh (the partition was scrubbed,
//! which releases them), as after an engine reset. This is sound because a
//! guest cannot depend on that state: the scanner refuses commands that
//! consume engine state not set in the same submission, and a context image
//! would hold host addresses of the source's slices (state base addresses,
//! surface pointers) that mean nothing on the destination.

use crate::addr::{GuestGgttIndex, GuestGm, GuestGmRange};
use crate::backend::Backend;
use crate::engine::Engine;
use crate::execlist::{Event, Execlist, IdlePort};
use crate::partition::{GmTranslation, GuestView, Partition, VgpuType, ViewError};
use crate::regs::{ring, MmioOffset};
use crate::vgpu::{
    GuestMemoryMap, RegPolicy, RingState, Vgpu, VgpuError, VgpuState, MAX_GUEST_FENCES,
};
use core::fmt;

/// Magic at the start of every blob.
pub const MAGIC: [u8; 8] = *b"GMIGVGPU";
/// Current format version.
pub const VERSION: u16 = 2;
/// The version before the execlist ports (still restored).
const VERSION_WITHOUT_EXECLISTS: u16 = 1;
/// Bytes of one engine's execlist port in the body.
pub const PORT_BYTES: usize = 4 + 4 * 4 + ring::CSB_ENTRIES as usize * 8;
/// Header bytes before the body.
pub const HEADER_LEN: usize = 20;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Bytes a blob of a vGPU of this type may need (every GGTT entry present).
pub const fn max_saved_size(vgpu_type: VgpuType) -> usize {
    let r = vgpu_type.resources();
    let entries = ((r.aperture + r.hidden) >> 12) as usize;
    HEADER_LEN
        + 4
        + 4
        + 20
        + Engine::COUNT * 16
        + MAX_GUEST_FENCES * 8
        + 12
        + 4
        + crate::vgpu::MAX_EMULATED_REGS * 8
        + 4
        + entries * 12
        + Engine::COUNT * PORT_BYTES
}

/// Why a save failed (monitor's problem).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// Work still queued or in flight (a legacy ring's TAIL, an execlist
    /// list running or waiting): the scheduler must finish it first (see
    /// the module docs).
    Busy,
    /// The vGPU is stopped.
    Failed,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Reading the guest's GGTT failed.
    Vgpu(VgpuError),
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveError::Busy => f.write_str("vGPU has submissions queued or in flight"),
            SaveError::Failed => f.write_str("a stopped vGPU is not saved"),
            SaveError::BufferTooSmall => f.write_str("save buffer too small"),
            SaveError::Vgpu(e) => write!(f, "reading guest GGTT: {e}"),
        }
    }
}

/// Why a restore failed: a bad blob (the peer's fault) or a mismatch with
/// the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Magic is not `GMIGVGPU`.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u16),
    /// Blob shorter than its header says, or body cut short.
    Truncated,
    /// Bytes after the body.
    TrailingBytes,
    /// CRC-32C mismatch.
    Checksum { expected: u32, actual: u32 },
    /// A field holds an impossible value.
    BadField(&'static str),
    /// The destination partition's type differs from the saved one.
    TypeMismatch,
    /// The guest view does not fit the destination partition.
    View(ViewError),
    /// Replaying a saved register or GGTT entry failed.
    Replay(VgpuError),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::BadMagic => f.write_str("not a vGPU state blob (bad magic)"),
            RestoreError::UnsupportedVersion(v) => write!(f, "unsupported vGPU state version {v}"),
            RestoreError::Truncated => f.write_str("vGPU state blob is truncated"),
            RestoreError::TrailingBytes => f.write_str("vGPU state blob has trailing bytes"),
            RestoreError::Checksum { expected, actual } => write!(
                f,
                "vGPU state checksum mismatch: header {expected:#010x}, body {actual:#010x}"
            ),
            RestoreError::BadField(what) => write!(f, "vGPU state field {what} is invalid"),
            RestoreError::TypeMismatch => {
                f.write_str("destination partition has a different vGPU type")
            }
            RestoreError::View(e) => write!(f, "guest view does not fit: {e}"),
            RestoreError::Replay(e) => write!(f, "replaying saved state: {e}"),
        }
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), SaveError> {
        let end = self
            .at
            .checked_add(b.len())
            .ok_or(SaveError::BufferTooSmall)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(SaveError::BufferTooSmall)?
            .copy_from_slice(b);
        self.at = end;
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<(), SaveError> {
        self.bytes(&v.to_le_bytes())
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RestoreError> {
        let end = self.at.checked_add(n).ok_or(RestoreError::Truncated)?;
        let s = self.data.get(self.at..end).ok_or(RestoreError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RestoreError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RestoreError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, RestoreError> {
        Ok(u64::from(self.u32()?) | (u64::from(self.u32()?) << 32))
    }
}

fn guest_range(base: u32, size: u32, what: &'static str) -> Result<GuestGmRange, RestoreError> {
    GuestGm::new(u64::from(base))
        .and_then(|b| GuestGmRange::new_pages(b, u64::from(size)))
        .map_err(|_| RestoreError::BadField(what))
}

impl Vgpu {
    /// Encodes the device state into `out`; returns the bytes written.
    pub fn save(
        &self,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
        out: &mut [u8],
    ) -> Result<usize, SaveError> {
        if !self.is_idle() {
            return Err(SaveError::Busy);
        }
        if self.state != VgpuState::Running {
            return Err(SaveError::Failed);
        }
        let mut w = Writer {
            out,
            at: HEADER_LEN,
        };
        let view = self.translation().guest_view();
        w.bytes(&[self.vgpu_type().code(), 0, 0, 0])?;
        w.u32(self.vgt_id)?;
        for v in [
            view.aperture.base().raw() as u32,
            view.aperture.len() as u32,
            view.hidden.base().raw() as u32,
            view.hidden.len() as u32,
            view.fences,
        ] {
            w.u32(v)?;
        }
        for r in &self.rings {
            for v in [r.start, r.ctl, r.head, r.tail] {
                w.u32(v)?;
            }
        }
        for &(lo, hi) in self.fences.iter().take(view.fences as usize) {
            w.u32(lo)?;
            w.u32(hi)?;
        }
        for v in self.forcewake {
            w.u32(v)?;
        }
        w.u32(self.emulated.len() as u32)?;
        for (&off, &val) in self.emulated.iter() {
            w.u32(off)?;
            w.u32(val)?;
        }
        let count_at = w.at;
        w.u32(0)?;
        let mut count = 0u32;
        for index in self.written_indices() {
            let pte = self
                .guest_pte(backend, mem, index)
                .map_err(SaveError::Vgpu)?;
            if pte.is_present() {
                w.u32(index.raw())?;
                w.bytes(&pte.raw().to_le_bytes())?;
                count += 1;
            }
        }
        for x in &self.execlists {
            // Idle: no port holds a list.
            write_port(&mut w, &x.idle_port().ok_or(SaveError::Busy)?)?;
        }
        let end = w.at;
        let out = w.out;
        out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        let body_len = end - HEADER_LEN;
        let crc = CRC32C.checksum(&out[HEADER_LEN..end]);
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&0u16.to_le_bytes());
        out[12..16].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        Ok(end)
    }

    /// Rebuilds a vGPU from `blob` on `partition`: same guest view, new host
    /// slices, host GGTT rebuilt from the saved guest PTEs through `mem`.
    /// `partition` must have been scrubbed ([`crate::vgpu::scrub_partition`]),
    /// which also leaves its slot's engine contexts fresh: the vGPU resumes
    /// on a fresh context (see the module docs). The restored vGPU has no
    /// shadow PPGTTs: a guest that submits through execlists needs
    /// [`Vgpu::enable_ppgtt`] with the destination's pool before it runs.
    pub fn restore(
        blob: &[u8],
        partition: &Partition,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
    ) -> Result<Vgpu, RestoreError> {
        let mut r = Reader { data: blob, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(RestoreError::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION && version != VERSION_WITHOUT_EXECLISTS {
            return Err(RestoreError::UnsupportedVersion(version));
        }
        if r.u16()? != 0 {
            return Err(RestoreError::BadField("flags"));
        }
        let body_len = r.u32()? as usize;
        let expected = r.u32()?;
        let body = r.take(body_len)?;
        if r.at != blob.len() {
            return Err(RestoreError::TrailingBytes);
        }
        let actual = CRC32C.checksum(body);
        if actual != expected {
            return Err(RestoreError::Checksum { expected, actual });
        }
        let mut r = Reader { data: body, at: 0 };
        let ty = VgpuType::from_code(r.u8()?).ok_or(RestoreError::BadField("vgpu type"))?;
        r.take(3)?;
        if ty != partition.vgpu_type() {
            return Err(RestoreError::TypeMismatch);
        }
        let vgt_id = r.u32()?;
        let (ab, asz, hb, hsz) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let view = GuestView {
            aperture: guest_range(ab, asz, "aperture")?,
            hidden: guest_range(hb, hsz, "hidden")?,
            fences: r.u32()?,
        };
        let translation = GmTranslation::with_view(partition, view).map_err(RestoreError::View)?;
        if view.fences as usize > MAX_GUEST_FENCES {
            return Err(RestoreError::BadField("fence count"));
        }
        let mut v = Vgpu::with_translation(partition, translation);
        v.vgt_id = vgt_id;
        // A blob that fails part-way (its checksum holds but a field does
        // not) may have written fences and GGTT entries of the partition
        // already: take them back, so nothing of it stays reachable.
        let ports = version != VERSION_WITHOUT_EXECLISTS;
        match v.restore_body(&mut r, view, ports, backend, mem) {
            Ok(()) if r.at == body.len() => Ok(v),
            result => {
                v.reset(backend);
                Err(result.err().unwrap_or(RestoreError::TrailingBytes))
            }
        }
    }

    /// The rings, fences, forcewake, emulated registers, GGTT entries and
    /// (with `ports`) execlist ports of a blob, replayed onto `self` (see
    /// [`Vgpu::restore`]).
    fn restore_body(
        &mut self,
        r: &mut Reader<'_>,
        view: GuestView,
        ports: bool,
        backend: &mut dyn Backend,
        mem: &dyn GuestMemoryMap,
    ) -> Result<(), RestoreError> {
        let v = self;
        for i in 0..Engine::COUNT {
            let ring = RingState {
                start: r.u32()?,
                ctl: r.u32()?,
                head: r.u32()?,
                tail: r.u32()?,
            };
            v.rings[i] = ring;
            v.dispatched[i] = ring.tail;
        }
        for i in 0..view.fences {
            let (lo, hi) = (r.u32()?, r.u32()?);
            v.write_fence(backend, i, true, hi)
                .map_err(RestoreError::Replay)?;
            v.write_fence(backend, i, false, lo)
                .map_err(RestoreError::Replay)?;
        }
        for slot in &mut v.forcewake {
            *slot = r.u32()?;
        }
        let emulated = r.u32()?;
        for _ in 0..emulated {
            let (off, val) = (r.u32()?, r.u32()?);
            let reg = MmioOffset::new(off).ok_or(RestoreError::BadField("register offset"))?;
            if Vgpu::policy(reg) != RegPolicy::Emulated || v.emulated.insert(off, val).is_err() {
                return Err(RestoreError::BadField("emulated register"));
            }
        }
        let entries = r.u32()?;
        for _ in 0..entries {
            let index = GuestGgttIndex::new(u64::from(r.u32()?))
                .map_err(|_| RestoreError::BadField("GGTT index"))?;
            let pte = r.u64()?;
            v.replay_pte(backend, mem, index, pte)
                .map_err(RestoreError::Replay)?;
        }
        if ports {
            for x in &mut v.execlists {
                *x = Execlist::from_idle_port(read_port(r)?).map_err(RestoreError::BadField)?;
            }
        }
        Ok(())
    }
}

/// One engine's execlist port ([`PORT_BYTES`]).
fn write_port(w: &mut Writer<'_>, p: &IdlePort) -> Result<(), SaveError> {
    // The pointers fit a byte: 4 and 3 bits wide.
    w.bytes(&[
        u8::from(p.enabled),
        p.port_len,
        p.csb_write as u8,
        p.csb_read as u8,
    ])?;
    for d in p.port {
        w.u32(d)?;
    }
    for e in p.csb {
        w.u32(e.status)?;
        w.u32(e.context_id)?;
    }
    Ok(())
}

/// One engine's execlist port, as [`write_port`] wrote it.
fn read_port(r: &mut Reader<'_>) -> Result<IdlePort, RestoreError> {
    let enabled = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(RestoreError::BadField("GFX_MODE run-list enable")),
    };
    let port_len = r.u8()?;
    let (csb_write, csb_read) = (u32::from(r.u8()?), u32::from(r.u8()?));
    let mut port = [0u32; 4];
    for d in &mut port {
        *d = r.u32()?;
    }
    let mut csb = [Event {
        status: 0,
        context_id: 0,
    }; ring::CSB_ENTRIES as usize];
    for e in &mut csb {
        *e = Event {
            status: r.u32()?,
            context_id: r.u32()?,
        };
    }
    Ok(IdlePort {
        enabled,
        port,
        port_len,
        csb,
        csb_write,
        csb_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{GuestPage, PhysFrame};
    use crate::backend::PhysMem;
    use crate::ggtt::{GuestPte, PteFlags};
    use crate::partition::{GmLayout, PartitionAllocator};
    use crate::regs::{pvinfo, ring, GGTT_BAR0_OFFSET};
    use crate::sim::SimGpu;
    use crate::testutil::*;
    use crate::vgpu::{AccessSize, FrameRuns, MmioEffect};

    const PAGES: u64 = 48;

    struct Side {
        gpu: SimGpu<SparseMem>,
        gate: Box<crate::mediate::ScanGate>,
        mem: FrameRuns<4>,
        vgpu: Vgpu,
        run: Runner,
    }

    fn mmio(s: &mut Side, off: u32, size: AccessSize, val: u64) {
        match s
            .vgpu
            .mmio_write(&mut s.gpu, &s.mem, off, size, val)
            .unwrap()
        {
            MmioEffect::Done => {}
            MmioEffect::Queued(_) => {
                let vgpus = core::slice::from_mut(&mut s.vgpu);
                s.run.run_idle(&mut s.gpu, &mut *s.gate, vgpus);
                outcome(&s.vgpu).unwrap();
            }
        }
    }

    /// Guest page (= aperture page) of each engine's ring.
    fn ring_page(engine: Engine) -> u64 {
        match engine {
            Engine::Blitter => 3,
            _ => 0,
        }
    }

    /// Guest writes commands into `engine`'s ring and bumps its TAIL.
    fn run(s: &mut Side, engine: Engine, cmds: &[u32]) {
        let mut c = cmds.to_vec();
        if c.len() % 2 == 1 {
            c.push(NOOP);
        }
        let head = s.vgpu.ring(engine).tail;
        let frame = s
            .mem
            .frame_of(GuestPage::new(ring_page(engine)).unwrap())
            .unwrap();
        for (i, d) in c.iter().enumerate() {
            let off = (u64::from(head) + 4 * i as u64) % 4096;
            s.gpu
                .mem_mut()
                .write(frame.at(off), &d.to_le_bytes())
                .unwrap();
        }
        let tail = (head + 4 * c.len() as u32) % 4096;
        mmio(
            s,
            engine.mmio_base() + ring::TAIL,
            AccessSize::Dword,
            u64::from(tail),
        );
    }

    /// Runs `stream` on both engines: MI and 3D work on render, blits on
    /// the blitter (the only engine that accepts them).
    fn run_stream(s: &mut Side, (render, blits): (Vec<u32>, Vec<u32>)) {
        run(s, Engine::Render, &render);
        run(s, Engine::Blitter, &blits);
    }

    fn guest_pages(s: &Side) -> Vec<u8> {
        let mut all = vec![0u8; (PAGES * 4096) as usize];
        for p in 0..PAGES {
            let f = s.mem.frame_of(GuestPage::new(p).unwrap()).unwrap();
            s.gpu
                .mem()
                .read(
                    f.start(),
                    &mut all[(p * 4096) as usize..((p + 1) * 4096) as usize],
                )
                .unwrap();
        }
        all
    }

    /// A stream using aperture and hidden guest addresses: stores and a
    /// PIPE_CONTROL for render, a fill and a copy for the blitter.
    fn stream(ap: u64, hid: u64, salt: u32) -> (Vec<u32>, Vec<u32>) {
        let mut v = Vec::new();
        v.extend(sdi(ap + 4096 + 4 * u64::from(salt), 0x1000 + salt));
        v.extend(sdi_qword(
            hid + 8 * u64::from(salt),
            0xabcd_0000_0000 + u64::from(salt),
        ));
        v.extend(pipe_control_imm(hid + 0x800, u64::from(salt) << 8));
        let mut b = Vec::new();
        b.extend(color_blt(
            ap + 2 * 4096,
            256,
            salt,
            1,
            salt + 7,
            5,
            0x0101_0101 * salt,
        ));
        b.extend(copy_blt(
            hid + 4096,
            128,
            0,
            0,
            16,
            4,
            ap + 2 * 4096,
            256,
            0,
            1,
        ));
        (v, b)
    }

    #[test]
    fn save_restore_onto_other_slices_keeps_guest_visible_memory_identical() {
        let layout = GmLayout::DEFAULT;
        let share = PartitionAllocator::GVT_MONITOR_SHARE;
        // Source.
        let mut sa = PartitionAllocator::new(layout, share).unwrap();
        let sp = sa.allocate(VgpuType::Small).unwrap();
        let mut src_gpu = sim();
        let src_gate = scan_gate(&mut src_gpu);
        let mut src = Side {
            gpu: src_gpu,
            gate: src_gate,
            mem: guest_mem(0, 0x1000, PAGES),
            vgpu: Vgpu::new(&sp),
            run: Runner::new(),
        };
        let ap = sp.aperture().base().raw();
        let hid = sp.hidden().base().raw();
        // GGTT: aperture pages 0..8 -> guest pages 0..8; hidden 0..8 -> 16..24.
        for i in 0..8u64 {
            for (gm, page) in [(ap + i * 4096, i), (hid + i * 4096, 16 + i)] {
                let pte = GuestPte::map(GuestPage::new(page).unwrap(), PteFlags::NONE);
                let off = GGTT_BAR0_OFFSET + (gm >> 12) as u32 * 8;
                mmio(&mut src, off, AccessSize::Qword, pte.raw());
            }
        }
        let base = Engine::Render.mmio_base();
        mmio(&mut src, base + ring::START, AccessSize::Dword, ap);
        mmio(&mut src, base + ring::CTL, AccessSize::Dword, 1);
        let blt = Engine::Blitter.mmio_base();
        let blt_ring = ap + ring_page(Engine::Blitter) * 4096;
        mmio(&mut src, blt + ring::START, AccessSize::Dword, blt_ring);
        mmio(&mut src, blt + ring::CTL, AccessSize::Dword, 1);
        mmio(&mut src, base + ring::IMR, AccessSize::Dword, 0xfffe);
        mmio(
            &mut src,
            crate::regs::fence::hi(0).raw(),
            AccessSize::Dword,
            ap + 0x3000,
        );
        mmio(
            &mut src,
            crate::regs::fence::lo(0).raw(),
            AccessSize::Dword,
            ap + 0x1001,
        );
        run_stream(&mut src, stream(ap, hid, 1));

        // Save.
        let mut blob = vec![0u8; max_saved_size(VgpuType::Small)];
        let n = src.vgpu.save(&mut src.gpu, &src.mem, &mut blob).unwrap();
        let blob = &blob[..n];

        // Destination: another vGPU takes the first slices, guest memory in
        // other frames; pages copied over (what migration does).
        let mut da = PartitionAllocator::new(layout, share).unwrap();
        let _squatter = da.allocate(VgpuType::Small).unwrap();
        let dp = da.allocate(VgpuType::Small).unwrap();
        assert_ne!(dp.aperture(), sp.aperture());
        assert_ne!(dp.hidden(), sp.hidden());
        let mut dst_gpu = sim();
        let dst_gate = scan_gate(&mut dst_gpu);
        let dst_mem = guest_mem(0, 0x5000, PAGES);
        for p in 0..PAGES {
            let mut page = [0u8; 4096];
            let sf = src.mem.frame_of(GuestPage::new(p).unwrap()).unwrap();
            src.gpu.mem().read(sf.start(), &mut page).unwrap();
            let df = dst_mem.frame_of(GuestPage::new(p).unwrap()).unwrap();
            dst_gpu.mem_mut().write(df.start(), &page).unwrap();
        }
        let dst_vgpu = Vgpu::restore(blob, &dp, &mut dst_gpu, &dst_mem).unwrap();
        let mut dst = Side {
            gpu: dst_gpu,
            gate: dst_gate,
            mem: dst_mem,
            vgpu: dst_vgpu,
            run: Runner::new(),
        };

        // The guest sees exactly the same device.
        for rel in (0..0x60).step_by(4) {
            assert_eq!(
                src.vgpu.pvinfo_dword(rel),
                dst.vgpu.pvinfo_dword(rel),
                "pvinfo {rel:#x}"
            );
        }
        for off in [
            base + ring::START,
            base + ring::CTL,
            base + ring::TAIL,
            base + ring::IMR,
            crate::regs::fence::lo(0).raw(),
            crate::regs::fence::hi(0).raw(),
            GGTT_BAR0_OFFSET + (hid >> 12) as u32 * 8 + 24,
        ] {
            let size = if off >= GGTT_BAR0_OFFSET {
                AccessSize::Qword
            } else {
                AccessSize::Dword
            };
            let a = src
                .vgpu
                .mmio_read(&mut src.gpu, &src.mem, off, size)
                .unwrap();
            let b = dst
                .vgpu
                .mmio_read(&mut dst.gpu, &dst.mem, off, size)
                .unwrap();
            assert_eq!(a, b, "register {off:#x}");
        }
        let hf = dp.fences().first();
        assert_eq!(
            dst.gpu.read_reg(crate::regs::fence::lo(hf)),
            dp.aperture().base().raw() as u32 + 0x1001
        );
        // The host GGTT of the destination maps the new slices to the new frames.
        let h = dp.hidden().base().ggtt_index();
        assert_eq!(
            dst.gpu.read_pte(h).frame(),
            Some(PhysFrame::new(0x5000 + 16).unwrap())
        );

        // Same stream on both: byte-identical guest memory.
        assert_eq!(guest_pages(&src), guest_pages(&dst));
        for salt in 2..6 {
            run_stream(&mut src, stream(ap, hid, salt));
            run_stream(&mut dst, stream(ap, hid, salt));
        }
        let (a, b) = (guest_pages(&src), guest_pages(&dst));
        assert!(a.iter().any(|&x| x != 0));
        assert_eq!(a, b);
        assert_eq!(dst.vgpu.state(), VgpuState::Running);
        let _ = pvinfo::PAGE;
    }

    #[test]
    fn corrupted_blobs_are_typed_errors() {
        let mut a =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        let p = a.allocate(VgpuType::Small).unwrap();
        let big = a.allocate(VgpuType::Medium).unwrap();
        let mut gpu = sim();
        let mem = guest_mem(0, 0x1000, 8);
        let v = Vgpu::new(&p);
        let mut buf = vec![0u8; 4096];
        let n = v.save(&mut gpu, &mem, &mut buf).unwrap();
        let good = buf[..n].to_vec();
        assert!(Vgpu::restore(&good, &p, &mut gpu, &mem).is_ok());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            Vgpu::restore(&bad, &p, &mut gpu, &mem).unwrap_err(),
            RestoreError::BadMagic
        );
        let mut bad = good.clone();
        bad[8] = 9;
        assert_eq!(
            Vgpu::restore(&bad, &p, &mut gpu, &mem).unwrap_err(),
            RestoreError::UnsupportedVersion(9)
        );
        let mut bad = good.clone();
        bad[HEADER_LEN + 10] ^= 1;
        assert!(matches!(
            Vgpu::restore(&bad, &p, &mut gpu, &mem),
            Err(RestoreError::Checksum { .. })
        ));
        assert_eq!(
            Vgpu::restore(&good[..n - 1], &p, &mut gpu, &mem).unwrap_err(),
            RestoreError::Truncated
        );
        assert_eq!(
            Vgpu::restore(&good, &big, &mut gpu, &mem).unwrap_err(),
            RestoreError::TypeMismatch
        );
        assert_eq!(
            v.save(&mut gpu, &mem, &mut buf[..10]),
            Err(SaveError::BufferTooSmall)
        );
        // A blob that fails after replaying some GGTT entries (its guest
        // pages 4..8 are missing on this destination) leaves none behind.
        let mut src = Vgpu::new(&p);
        for i in 0..8u64 {
            let gm = p.aperture().base().raw() + i * 4096;
            let pte = GuestPte::map(GuestPage::new(i).unwrap(), PteFlags::NONE);
            let off = GGTT_BAR0_OFFSET + (gm >> 12) as u32 * 8;
            let done = src.mmio_write(&mut gpu, &mem, off, AccessSize::Qword, pte.raw());
            assert!(matches!(done, Ok(MmioEffect::Done)));
        }
        let mapped = src.save(&mut gpu, &mem, &mut buf).unwrap();
        let dp = a.allocate(VgpuType::Small).unwrap();
        let short = guest_mem(0, 0x3000, 4);
        assert!(matches!(
            Vgpu::restore(&buf[..mapped], &dp, &mut gpu, &short),
            Err(RestoreError::Replay(_))
        ));
        let first = u64::from(dp.aperture().base().ggtt_index().raw());
        for i in 0..8 {
            let entry = crate::addr::HostGgttIndex::new(first + i).unwrap();
            assert_eq!(gpu.read_pte(entry).frame(), None, "entry {i}");
        }
        // Every truncation and every single-byte flip is an error, not a panic.
        for cut in 0..n {
            assert!(Vgpu::restore(&good[..cut], &p, &mut gpu, &mem).is_err());
        }
        for i in 0..n {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            assert!(
                Vgpu::restore(&b, &p, &mut gpu, &mem).is_err(),
                "flip at {i}"
            );
        }
    }

    // The execlist ports (format version 2).

    use crate::execlist::{
        Element, CTX_STATUS_ACTIVE_IDLE, CTX_STATUS_COMPLETE, CTX_STATUS_ELEMENT_SWITCH,
        CTX_STATUS_IDLE_ACTIVE, CTX_STATUS_LITE_RESTORE, CTX_STATUS_PREEMPTED,
    };
    use proptest::prelude::*;

    /// A port with every field away from power-on, different per `k`.
    fn port(k: u32) -> IdlePort {
        let statuses = [
            CTX_STATUS_IDLE_ACTIVE,
            CTX_STATUS_PREEMPTED | CTX_STATUS_LITE_RESTORE,
            CTX_STATUS_PREEMPTED,
            CTX_STATUS_ELEMENT_SWITCH | CTX_STATUS_COMPLETE,
            CTX_STATUS_COMPLETE | CTX_STATUS_ACTIVE_IDLE,
            CTX_STATUS_IDLE_ACTIVE,
        ];
        IdlePort {
            enabled: true,
            port: [0x1111 * k, 0x2222 * k, 0x3333 * k, 0x4444 * k].map(|d| d | 1),
            port_len: (k % 3 + 1) as u8,
            csb: core::array::from_fn(|i| Event {
                status: statuses[i],
                context_id: k << 8 | i as u32,
            }),
            csb_write: 10 + k,
            csb_read: 2 + k,
        }
    }

    /// `body` under the header a save writes, of format `version`.
    fn seal(version: u16, body: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.extend((body.len() as u32).to_le_bytes());
        b.extend(CRC32C.checksum(body).to_le_bytes());
        b.extend(body);
        b
    }

    /// A vGPU with a ring, an emulated register, a fence, GGTT entries and
    /// (with `ports`) every engine's port set, saved.
    fn saved(
        p: &Partition,
        gpu: &mut SimGpu<SparseMem>,
        mem: &FrameRuns<4>,
        ports: bool,
    ) -> Vec<u8> {
        let mut v = Vgpu::new(p);
        let ap = p.aperture().base().raw();
        for i in 0..4u64 {
            let pte = GuestPte::map(GuestPage::new(i).unwrap(), PteFlags::NONE);
            let off = GGTT_BAR0_OFFSET + (ap >> 12) as u32 * 8 + 8 * i as u32;
            let done = v.mmio_write(gpu, mem, off, AccessSize::Qword, pte.raw());
            assert_eq!(done, Ok(MmioEffect::Done));
        }
        let base = Engine::Render.mmio_base();
        for (off, val) in [
            (base + ring::START, ap),
            (base + ring::CTL, 1),
            (base + ring::IMR, 0xfffe),
            (crate::regs::fence::hi(0).raw(), ap + 0x3000),
            (crate::regs::fence::lo(0).raw(), ap + 0x1001),
        ] {
            let done = v.mmio_write(gpu, mem, off, AccessSize::Dword, val);
            assert_eq!(done, Ok(MmioEffect::Done));
        }
        if ports {
            for (k, x) in v.execlists.iter_mut().enumerate() {
                *x = Execlist::from_idle_port(port(k as u32)).unwrap();
            }
        }
        let mut blob = vec![0u8; max_saved_size(VgpuType::Small)];
        let n = v.save(gpu, mem, &mut blob).unwrap();
        blob.truncate(n);
        blob
    }

    fn two_partitions() -> (Partition, Partition) {
        let mut a =
            PartitionAllocator::new(GmLayout::DEFAULT, PartitionAllocator::GVT_MONITOR_SHARE)
                .unwrap();
        (
            a.allocate(VgpuType::Small).unwrap(),
            a.allocate(VgpuType::Small).unwrap(),
        )
    }

    #[test]
    fn every_field_of_the_execlist_ports_round_trips() {
        let (sp, dp) = two_partitions();
        let mut gpu = sim();
        let mem = guest_mem(0, 0x1000, 8);
        let blob = saved(&sp, &mut gpu, &mem, true);
        let mut dst = Vgpu::restore(&blob, &dp, &mut gpu, &mem).unwrap();
        for (k, e) in Engine::ALL.into_iter().enumerate() {
            assert_eq!(dst.execlist(e).idle_port(), Some(port(k as u32)), "{e}");
            // As the guest reads it: the mode, the pointers, the entries.
            let base = e.mmio_base();
            let mut read = |rel| {
                dst.mmio_read(&mut gpu, &mem, base + rel, AccessSize::Dword)
                    .unwrap() as u32
            };
            assert_eq!(read(ring::MODE), ring::MODE_RUN_LIST_ENABLE, "{e}");
            let csb = port(k as u32);
            assert_eq!(
                read(ring::CSB_PTR),
                csb.csb_read << 8 | csb.csb_write,
                "{e}"
            );
            assert_eq!(read(ring::CSB_BASE + 8 * 5 + 4), k as u32 * 256 + 5, "{e}");
            assert_eq!(read(ring::EXECLIST_STATUS_LO), 0, "{e}");
        }
        // And every other field: the destination saves the same blob.
        let mut again = vec![0u8; blob.len() + 1];
        let n = dst.save(&mut gpu, &mem, &mut again).unwrap();
        assert_eq!(&again[..n], &blob[..]);
        // A part-written list goes on where it stopped: the render port
        // holds one dword, three more submit.
        let render = Engine::Render;
        assert_eq!(port(0).port_len, 1);
        for d in [0, 0] {
            let off = render.mmio_base() + ring::ELSP;
            let done = dst.mmio_write(&mut gpu, &mem, off, AccessSize::Dword, d);
            assert_eq!(done, Ok(MmioEffect::Done));
        }
        // The fourth names a context whose image is not mapped: refused
        // at the submission, as on the source (the guest's doing).
        let off = render.mmio_base() + ring::ELSP;
        let done = dst.mmio_write(&mut gpu, &mem, off, AccessSize::Dword, 0x119);
        assert!(
            matches!(
                done,
                Err(VgpuError::Guest(
                    crate::vgpu::GuestFault::ContextOutsideSlices { .. }
                ))
            ),
            "{done:?}"
        );
    }

    #[test]
    fn a_version_1_blob_restores_with_every_port_at_power_on() {
        let (sp, dp) = two_partitions();
        let mut gpu = sim();
        let mem = guest_mem(0, 0x1000, 8);
        let v2 = saved(&sp, &mut gpu, &mem, false);
        let body = &v2[HEADER_LEN..];
        let v1_body = &body[..body.len() - Engine::COUNT * PORT_BYTES];
        let v1 = seal(1, v1_body);
        let dst = Vgpu::restore(&v1, &dp, &mut gpu, &mem).unwrap();
        for e in Engine::ALL {
            assert_eq!(dst.execlist(e), &Execlist::new(), "{e}");
        }
        let mut again = vec![0u8; v2.len()];
        assert_eq!(dst.save(&mut gpu, &mem, &mut again), Ok(v2.len()));
        assert_eq!(again, v2);
        // Each version's body under the other's header is refused.
        assert_eq!(
            Vgpu::restore(&seal(1, body), &dp, &mut gpu, &mem).unwrap_err(),
            RestoreError::TrailingBytes
        );
        assert_eq!(
            Vgpu::restore(&seal(2, v1_body), &dp, &mut gpu, &mem).unwrap_err(),
            RestoreError::Truncated
        );
        assert_eq!(
            Vgpu::restore(&seal(3, body), &dp, &mut gpu, &mem).unwrap_err(),
            RestoreError::UnsupportedVersion(3)
        );
    }

    #[test]
    fn corrupt_or_truncated_execlist_ports_are_typed_errors_and_leave_nothing() {
        let (sp, dp) = two_partitions();
        let mut gpu = sim();
        let mem = guest_mem(0, 0x1000, 8);
        let good = saved(&sp, &mut gpu, &mem, true);
        let ports = good.len() - HEADER_LEN - Engine::COUNT * PORT_BYTES;
        // Engine 1's port, a field at a time, the checksum made to hold (a
        // peer's bad blob, not damage).
        for (at, value, what) in [
            (0, 2, "GFX_MODE run-list enable"),
            (1, 4, "ELSP dwords written"),
            (2, 16, "CSB pointer"),
            (3, 8, "CSB pointer"),
            (20 + 3, 0x80, "CSB status"),
        ] {
            let mut body = good[HEADER_LEN..].to_vec();
            body[ports + PORT_BYTES + at] = value;
            assert_eq!(
                Vgpu::restore(&seal(VERSION, &body), &dp, &mut gpu, &mem).unwrap_err(),
                RestoreError::BadField(what),
                "byte {at}"
            );
            // The GGTT entries replayed before the ports are taken back.
            let first = u64::from(dp.aperture().base().ggtt_index().raw());
            for i in 0..4 {
                let entry = crate::addr::HostGgttIndex::new(first + i).unwrap();
                assert_eq!(gpu.read_pte(entry).frame(), None, "{what}: entry {i}");
            }
        }
        // Cut anywhere, or with any byte flipped: an error, never a panic.
        for cut in 0..good.len() {
            assert!(Vgpu::restore(&good[..cut], &dp, &mut gpu, &mem).is_err());
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xa5;
            assert!(
                Vgpu::restore(&b, &dp, &mut gpu, &mem).is_err(),
                "flip at {i}"
            );
        }
        // Resealed, cut inside the ports: truncated.
        let body = &good[HEADER_LEN..good.len() - 1];
        assert_eq!(
            Vgpu::restore(&seal(VERSION, body), &dp, &mut gpu, &mem).unwrap_err(),
            RestoreError::Truncated
        );
    }

    /// A step of a guest driver on one execlist port, the engine's side
    /// included: what random port states are made of.
    #[derive(Clone, Debug)]
    enum Step {
        Elsp(u32),
        CsbPtr(u32),
        Mode(u32),
        /// A list: element 0's context (0..3) and tail, element 1's, and
        /// whether the running element's span is on the engine.
        List((u8, u16), Option<(u8, u16)>, bool),
        /// The current element's work reaches the engine.
        Dispatch,
        /// The span on the engine ends.
        SpanDone,
    }

    fn step() -> impl Strategy<Value = Step> {
        let ctx = (0u8..3, 0u16..64);
        prop_oneof![
            any::<u32>().prop_map(Step::Elsp),
            any::<u32>().prop_map(Step::CsbPtr),
            any::<u32>().prop_map(Step::Mode),
            (ctx.clone(), proptest::option::of(ctx), any::<bool>())
                .prop_map(|(a, b, f)| Step::List(a, b, f)),
            Just(Step::Dispatch),
            Just(Step::SpanDone),
        ]
    }

    /// Runs `steps` on a fresh port, then its lists to their end (what a
    /// save waits for).
    fn drive(t: &GmTranslation, steps: &[Step]) -> Execlist {
        let ap = t.host_aperture().base().raw();
        let element = |(ctx, tail): (u8, u16)| {
            let lrca = ap + 0x2000 * u64::from(ctx);
            let desc = crate::execlist::Descriptor(
                u64::from(ctx) << 32 | lrca | crate::execlist::DESC_PRIVILEGE | 3 << 3 | 1,
            );
            Element {
                desc,
                state: t.claim(lrca + 4096, 4096).unwrap(),
                ring: t.claim(ap + 0x10_0000, 4096).unwrap(),
                head: 0,
                tail: 8 * u32::from(tail),
                pml4: GuestPage::new(u64::from(ctx)).unwrap(),
            }
        };
        let mut x = Execlist::new();
        let mut released = heapless::Vec::new();
        for s in steps {
            released.clear();
            match *s {
                Step::Elsp(d) => {
                    let _ = x.write_port(d);
                }
                Step::CsbPtr(d) => x.write_csb_ptr(d),
                Step::Mode(d) => {
                    let _ = x.write_mode(d);
                }
                Step::List(a, b, in_flight) => {
                    let in_flight = in_flight && x.current().is_some();
                    x.schedule_in([Some(element(a)), b.map(element)], in_flight, &mut released);
                    if !in_flight {
                        x.settle(&mut released);
                    }
                }
                Step::Dispatch => {
                    if let Some(e) = x.current_mut() {
                        e.head = e.tail;
                    }
                }
                Step::SpanDone => x.span_done(&mut released),
            }
        }
        for _ in 0..8 {
            if !x.busy() {
                break;
            }
            released.clear();
            if let Some(e) = x.current_mut() {
                e.head = e.tail;
            }
            x.span_done(&mut released);
        }
        x
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every port state a guest and the engine can reach is saved and
        /// restored exactly; any bytes in place of a port are restored
        /// exactly or refused, never a panic.
        #[test]
        fn random_execlist_states_round_trip(
            steps in proptest::collection::vec(proptest::collection::vec(step(), 0..24), 4),
            garbage in proptest::collection::vec(any::<u8>(), PORT_BYTES),
        ) {
            let (sp, dp) = two_partitions();
            let mut gpu = sim();
            let mem = guest_mem(0, 0x1000, 8);
            let mut v = Vgpu::new(&sp);
            let t = GmTranslation::identity(&sp);
            for (x, steps) in v.execlists.iter_mut().zip(&steps) {
                *x = drive(&t, steps);
                prop_assert!(!x.busy());
            }
            let mut blob = vec![0u8; 4096];
            let n = v.save(&mut gpu, &mem, &mut blob).unwrap();
            let dst = Vgpu::restore(&blob[..n], &dp, &mut gpu, &mem).unwrap();
            for e in Engine::ALL {
                prop_assert_eq!(dst.execlist(e), v.execlist(e));
            }
            let mut body = blob[HEADER_LEN..n].to_vec();
            let at = body.len() - PORT_BYTES;
            body[at..].copy_from_slice(&garbage);
            if let Ok(dst) = Vgpu::restore(&seal(VERSION, &body), &dp, &mut gpu, &mem) {
                let mut again = vec![0u8; n];
                prop_assert_eq!(dst.save(&mut gpu, &mem, &mut again), Ok(n));
                prop_assert_eq!(&again[HEADER_LEN..], &body[..]);
            }
        }
    }
}
