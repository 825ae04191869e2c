//! Copy-then-scan of one submission: shadow ring, shadow batch pool, audit,
//! remap, batch following, budget and write-target recording.
//!
//! The guest's ring and batches are copied into monitor-owned fixed buffers
//! (a [`Shadow`]) before a single DWord is decoded; audit and remap operate
//! on the copy, and only the copy is submitted, so a guest that rewrites its
//! memory after TAIL changes nothing (TOCTOU). Batch buffers are copied
//! command by command: each command's DWords are copied, then decoded from
//! the copy.
//!
//! The scanner reaches guest memory and translates guest GM to host GM only
//! through [`GmSpace`], which the vGPU implements with its one translation
//! function.

use core::fmt;

use super::decode::{decode, Command, DecodeError, DecodeErrorKind};
use super::regs::{allowed, RegAccess};
use super::repr::{CommandRepr, MemOperand, PostSync, ReprError};
use super::table::Op;
use crate::engine::Engine;

/// Shadow ring capacity in DWords (64 KiB).
pub const RING_DWORDS: usize = 16 * 1024;
/// Shadow batch buffers per engine.
pub const BATCH_POOL: usize = 8;
/// Capacity of one shadow batch in DWords (32 KiB).
pub const BATCH_DWORDS: usize = 8 * 1024;
/// Batch nesting limit: 1 = first level, 2 = second level.
pub const MAX_DEPTH: u8 = 2;
/// Guest pages recorded as write targets per submission.
pub const MAX_WRITE_PAGES: usize = 32;
/// Per-submission budget: commands decoded.
pub const MAX_COMMANDS: u32 = 64 * 1024;
/// Per-submission budget: DWords decoded (ring + batches).
pub const MAX_DWORDS: u32 = (RING_DWORDS + BATCH_POOL * BATCH_DWORDS) as u32;

const PAGE: u64 = 4096;

/// Why a guest memory access or translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmFault {
    /// Some byte of the range lies outside the vGPU's slices.
    OutOfSlices,
    /// The range is inside the slices but not backed (no valid PTE).
    Unmapped,
}

impl fmt::Display for GmFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GmFault::OutOfSlices => "outside the vGPU's slices",
            GmFault::Unmapped => "not mapped",
        })
    }
}

/// The vGPU's view of graphics memory, as the scanner needs it. The vGPU
/// implements this with its ONE guest<->host translation.
pub trait GmSpace {
    /// Copies `out.len()` DWords from guest GM `gm` (the guest's view).
    fn read_guest(&self, gm: u64, out: &mut [u32]) -> Result<(), GmFault>;
    /// Translates the guest range `gm .. gm + len` (len >= 1), which must lie
    /// wholly inside one of the vGPU's slices, to its host GM address.
    fn g2h(&self, gm: u64, len: u64) -> Result<u64, GmFault>;
}

/// Where the guest's ring is, as its ring registers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Guest GM of the ring (RING_START).
    pub start: u64,
    /// Ring size in bytes (from RING_CTL).
    pub size: u32,
    /// RING_HEAD offset in bytes.
    pub head: u32,
    /// RING_TAIL offset in bytes (the value just written).
    pub tail: u32,
}

/// Which buffer a rejected command was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The shadow ring; offset counts from HEAD.
    Ring,
    /// A batch at `level` (1 or 2) starting at guest GM `start`.
    Batch {
        /// Nesting level.
        level: u8,
        /// Guest GM of the batch (or chained segment) start.
        start: u64,
    },
}

/// Why a submission was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The command could not be decoded.
    Decode(DecodeErrorKind),
    /// Its operands are malformed.
    Repr(ReprError),
    /// A privileged command or form.
    Privileged(&'static str),
    /// A command whose operands the scanner does not audit (fail closed).
    Unaudited,
    /// A memory operand with a per-process GTT address (not mediated).
    Ppgtt,
    /// A memory operand outside the vGPU's slices or unmapped.
    Memory {
        /// Guest address.
        addr: u64,
        /// Bytes touched.
        size: u64,
        /// The failure.
        fault: GmFault,
    },
    /// A register outside the engine's whitelist.
    Register {
        /// Register offset.
        offset: u32,
        /// The access.
        access: RegAccess,
    },
    /// RING_HEAD/TAIL/size inconsistent, or the ring outside the slices.
    BadRing,
    /// The submission holds more DWords than the shadow ring.
    RingTooLarge,
    /// A batch longer than one shadow batch buffer.
    BatchTooLarge,
    /// All shadow batch buffers in use.
    PoolExhausted,
    /// Batch nesting beyond [`MAX_DEPTH`].
    DepthExceeded,
    /// A batch chains or calls itself, or one already visited.
    BatchCycle,
    /// More commands or DWords than the per-submission budget.
    BudgetExceeded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Decode(k) => write!(f, "{k}"),
            Reason::Repr(r) => write!(f, "{r}"),
            Reason::Privileged(what) => write!(f, "privileged: {what}"),
            Reason::Unaudited => f.write_str("graphics-memory operands not audited"),
            Reason::Ppgtt => f.write_str("per-process GTT address not mediated"),
            Reason::Memory { addr, size, fault } => {
                write!(f, "memory {addr:#x}+{size:#x} {fault}")
            }
            Reason::Register { offset, access } => {
                write!(f, "register {offset:#x} not whitelisted for {access:?}")
            }
            Reason::BadRing => f.write_str("inconsistent ring registers"),
            Reason::RingTooLarge => f.write_str("submission larger than the shadow ring"),
            Reason::BatchTooLarge => f.write_str("batch larger than a shadow batch"),
            Reason::PoolExhausted => f.write_str("shadow batch pool exhausted"),
            Reason::DepthExceeded => f.write_str("batch nesting too deep"),
            Reason::BatchCycle => f.write_str("batch chains to itself or a visited batch"),
            Reason::BudgetExceeded => f.write_str("scan budget exceeded"),
        }
    }
}

/// A rejected submission: engine, where, which command, why. The caller
/// drops the submission and puts the vGPU into its failure state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanError {
    /// Engine of the submission.
    pub engine: Engine,
    /// Buffer holding the command.
    pub location: Location,
    /// DWord offset of the command in that buffer.
    pub offset: usize,
    /// Its header DWord (0 when none was read).
    pub header: u32,
    /// Its name, when it decoded.
    pub name: Option<&'static str>,
    /// The reason.
    pub reason: Reason,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.engine)?;
        match self.location {
            Location::Ring => f.write_str("ring")?,
            Location::Batch { level, start } => write!(f, "batch L{level} @{start:#x}")?,
        }
        write!(f, " DWord {} header {:#010x}", self.offset, self.header)?;
        if let Some(n) = self.name {
            write!(f, " ({n})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Guest pages a submission may write (fixed capacity; `overflow` means
/// more were touched than recorded, so a consumer must treat the vGPU's
/// whole memory as possibly written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSet {
    pages: [u64; MAX_WRITE_PAGES],
    len: usize,
    /// More pages than [`MAX_WRITE_PAGES`] were written.
    pub overflow: bool,
}

impl WriteSet {
    const EMPTY: WriteSet = WriteSet {
        pages: [0; MAX_WRITE_PAGES],
        len: 0,
        overflow: false,
    };
    /// Guest page numbers (guest GM / 4096), in first-seen order.
    pub fn pages(&self) -> &[u64] {
        self.pages.get(..self.len).unwrap_or(&[])
    }
    fn add_range(&mut self, addr: u64, size: u64) {
        let first = addr / PAGE;
        let last = addr.saturating_add(size.max(1) - 1) / PAGE;
        if last - first >= MAX_WRITE_PAGES as u64 {
            self.overflow = true;
            return;
        }
        for p in first..=last {
            if self.pages().contains(&p) {
                continue;
            }
            match self.pages.get_mut(self.len) {
                Some(slot) => {
                    *slot = p;
                    self.len += 1;
                }
                None => self.overflow = true,
            }
        }
    }
}

/// What an accepted submission produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// DWords of the shadow ring to execute (from index 0).
    pub ring_dwords: usize,
    /// Shadow batches used (indices `0..batches`).
    pub batches: usize,
    /// Commands scanned.
    pub commands: u32,
    /// Guest pages the submission may write.
    pub writes: WriteSet,
}

/// One shadow batch buffer.
#[derive(Clone, Debug)]
pub struct ShadowBatch {
    /// Guest GM the batch was copied from.
    pub guest: u64,
    /// DWords used.
    pub len: usize,
    /// The copy (audited and remapped).
    pub words: [u32; BATCH_DWORDS],
}

/// The monitor-owned buffers of one engine, and their host GM addresses
/// (the kernel maps them into the monitor's GGTT slice).
#[derive(Clone, Debug)]
pub struct Shadow {
    /// Engine.
    pub engine: Engine,
    /// Host GM of `ring`.
    pub ring_host: u64,
    /// Host GM of each batch buffer.
    pub batch_host: [u64; BATCH_POOL],
    /// Shadow ring.
    pub ring: [u32; RING_DWORDS],
    /// Shadow batch pool.
    pub batches: [ShadowBatch; BATCH_POOL],
}

impl Shadow {
    /// Empty shadow buffers at the given host GM addresses.
    pub fn new(engine: Engine, ring_host: u64, batch_host: [u64; BATCH_POOL]) -> Self {
        const B: ShadowBatch = ShadowBatch {
            guest: 0,
            len: 0,
            words: [0; BATCH_DWORDS],
        };
        Shadow {
            engine,
            ring_host,
            batch_host,
            ring: [0; RING_DWORDS],
            batches: [B; BATCH_POOL],
        }
    }

    /// Copies, scans, audits and remaps the commands between HEAD and TAIL.
    /// On success the shadow ring (`ring[..ring_dwords]`) and the used
    /// shadow batches are ready to submit; nothing else may be.
    pub fn scan(&mut self, gm: &dyn GmSpace, rs: RingState) -> Result<Submission, ScanError> {
        let mut st = State {
            engine: self.engine,
            commands: 0,
            dwords: 0,
            used: 0,
            visited: [0; BATCH_POOL],
            writes: WriteSet::EMPTY,
        };
        let ring_err = |reason| ScanError {
            engine: self.engine,
            location: Location::Ring,
            offset: 0,
            header: 0,
            name: None,
            reason,
        };
        let n = copy_ring(gm, rs, &mut self.ring).map_err(ring_err)?;
        let mut off = 0;
        while off < n {
            let (len, follow) = st.command(gm, &mut self.ring[..n], off, Location::Ring, 0)?;
            if let Some(target) = follow {
                let slot = self.follow(gm, &mut st, target, 1, Location::Ring, off)?;
                let host = self.batch_host_of(slot);
                patch_addr(&mut self.ring[..n], off + 1, target, host);
            }
            off += len;
        }
        Ok(Submission {
            ring_dwords: n,
            batches: st.used,
            commands: st.commands,
            writes: st.writes,
        })
    }

    fn batch_host_of(&self, slot: usize) -> u64 {
        self.batch_host.get(slot).copied().unwrap_or(0)
    }

    /// Copies and scans the batch at `target` (level `level`), following
    /// chained segments and second-level calls. Returns the slot of its first
    /// segment.
    fn follow(
        &mut self,
        gm: &dyn GmSpace,
        st: &mut State,
        target: u64,
        level: u8,
        from: Location,
        from_off: usize,
    ) -> Result<usize, ScanError> {
        let engine = st.engine;
        let mut start = target;
        let first = st.alloc(start, from, from_off, level)?;
        let mut slot = first;
        loop {
            let loc = Location::Batch { level, start };
            let err = |off: usize, header: u32, reason| ScanError {
                engine,
                location: loc,
                offset: off,
                header,
                name: None,
                reason,
            };
            let mut off = 0;
            let chained = loop {
                let b = self
                    .batches
                    .get_mut(slot)
                    .ok_or(err(off, 0, Reason::PoolExhausted))?;
                b.guest = start;
                // Copy this command's header, then its remaining DWords;
                // decode only the copy.
                let addr = start + 4 * off as u64;
                let hdr =
                    b.words
                        .get_mut(off..off + 1)
                        .ok_or(err(off, 0, Reason::BatchTooLarge))?;
                gm.read_guest(addr, hdr).map_err(|fault| {
                    err(
                        off,
                        0,
                        Reason::Memory {
                            addr,
                            size: 4,
                            fault,
                        },
                    )
                })?;
                let header = hdr.first().copied().unwrap_or(0);
                let len = match decode(engine, &b.words[..off + 1], off) {
                    Ok(c) => c.len(),
                    Err(DecodeError {
                        kind: DecodeErrorKind::Truncated { len, .. },
                        ..
                    }) => len,
                    Err(e) => return Err(err(off, header, Reason::Decode(e.kind))),
                };
                let rest = b.words.get_mut(off + 1..off + len).ok_or(err(
                    off,
                    header,
                    Reason::BatchTooLarge,
                ))?;
                let size = 4 * (len as u64 - 1);
                gm.read_guest(addr + 4, rest).map_err(|fault| {
                    err(
                        off,
                        header,
                        Reason::Memory {
                            addr: addr + 4,
                            size,
                            fault,
                        },
                    )
                })?;
                b.len = off + len;
                let (len, follow) = st.command(gm, &mut b.words[..off + len], off, loc, level)?;
                if lookup_op(engine, header) == Some(Op::BatchEnd) {
                    break None;
                }
                if let Some(t) = follow {
                    if header >> 22 & 1 == 1 {
                        // Second-level call: scan the callee, point the call
                        // at its shadow, continue after the call.
                        if level >= MAX_DEPTH {
                            return Err(err(off, header, Reason::DepthExceeded));
                        }
                        let callee = self.follow(gm, st, t, level + 1, loc, off)?;
                        let host = self.batch_host_of(callee);
                        if let Some(b) = self.batches.get_mut(slot) {
                            patch_addr(&mut b.words[..], off + 1, t, host);
                        }
                    } else {
                        break Some((t, off));
                    }
                }
                off += len;
            };
            let Some((t, at)) = chained else {
                return Ok(first);
            };
            // Chain: this segment ends; the next one gets its own shadow.
            let next = st.alloc(t, loc, at, level)?;
            let host = self.batch_host_of(next);
            if let Some(b) = self.batches.get_mut(slot) {
                patch_addr(&mut b.words[..], at + 1, t, host);
            }
            start = t;
            slot = next;
        }
    }
}

fn lookup_op(engine: Engine, header: u32) -> Option<Op> {
    super::table::lookup(engine, header).map(|s| s.op)
}

/// Writes host GM `host` into the address DWords `i`, `i + 1` of `buf`,
/// keeping the flag bits below the address in DWord `i`.
fn patch_addr(buf: &mut [u32], i: usize, guest: u64, host: u64) {
    patch_mem(buf, i, guest, host);
}

/// Rewrites an audited operand from guest `guest` to host `host`.
fn patch_mem(buf: &mut [u32], i: usize, guest: u64, host: u64) {
    if let Some(lo) = buf.get_mut(i) {
        // The flag bits and the address bits of the low DWord are disjoint;
        // g2h keeps the page offset, so the host address has the same low
        // bits as the guest one.
        let flags = *lo & !(guest as u32) & 0xfff & !(host as u32);
        *lo = (host as u32) | flags;
    }
    if let Some(hi) = buf.get_mut(i + 1) {
        *hi = (host >> 32) as u32;
    }
}

/// Copies the guest ring between HEAD and TAIL into `out`; returns DWords.
fn copy_ring(gm: &dyn GmSpace, rs: RingState, out: &mut [u32]) -> Result<usize, Reason> {
    if rs.size == 0
        || !rs.size.is_multiple_of(4096)
        || rs.head >= rs.size
        || rs.tail >= rs.size
        || !rs.head.is_multiple_of(4)
        || !rs.tail.is_multiple_of(4)
    {
        return Err(Reason::BadRing);
    }
    gm.g2h(rs.start, u64::from(rs.size))
        .map_err(|_| Reason::BadRing)?;
    let bytes = (rs.tail + rs.size - rs.head) % rs.size;
    let n = (bytes / 4) as usize;
    if n > out.len() {
        return Err(Reason::RingTooLarge);
    }
    let first = ((rs.size - rs.head) / 4) as usize;
    let first = first.min(n);
    let (a, b) = out.split_at_mut(first);
    let fault = |fault| Reason::Memory {
        addr: rs.start,
        size: u64::from(rs.size),
        fault,
    };
    gm.read_guest(rs.start + u64::from(rs.head), a)
        .map_err(fault)?;
    if let Some(b) = b.get_mut(..n - first) {
        if !b.is_empty() {
            gm.read_guest(rs.start, b).map_err(fault)?;
        }
    }
    Ok(n)
}

/// Per-submission scan state.
struct State {
    engine: Engine,
    commands: u32,
    dwords: u32,
    used: usize,
    visited: [u64; BATCH_POOL],
    writes: WriteSet,
}

impl State {
    fn alloc(
        &mut self,
        target: u64,
        loc: Location,
        off: usize,
        level: u8,
    ) -> Result<usize, ScanError> {
        let err = |reason| ScanError {
            engine: self.engine,
            location: loc,
            offset: off,
            header: 0,
            name: Some("MI_BATCH_BUFFER_START"),
            reason,
        };
        if level > MAX_DEPTH {
            return Err(err(Reason::DepthExceeded));
        }
        if self
            .visited
            .get(..self.used)
            .unwrap_or(&[])
            .contains(&target)
        {
            return Err(err(Reason::BatchCycle));
        }
        let slot = self.used;
        match self.visited.get_mut(slot) {
            Some(v) => *v = target,
            None => return Err(err(Reason::PoolExhausted)),
        }
        self.used += 1;
        Ok(slot)
    }

    /// Decodes, audits and remaps the command at `off` of `buf` (already a
    /// shadow copy). Returns its length and, for a batch start, its audited
    /// guest target.
    fn command(
        &mut self,
        gm: &dyn GmSpace,
        buf: &mut [u32],
        off: usize,
        loc: Location,
        level: u8,
    ) -> Result<(usize, Option<u64>), ScanError> {
        let engine = self.engine;
        let header = buf.get(off).copied().unwrap_or(0);
        let fail = |name: Option<&'static str>, reason| ScanError {
            engine,
            location: loc,
            offset: off,
            header,
            name,
            reason,
        };
        let c: Command<'_> =
            decode(engine, buf, off).map_err(|e| fail(None, Reason::Decode(e.kind)))?;
        let name = Some(c.name());
        let len = c.len();
        self.commands += 1;
        self.dwords = self.dwords.saturating_add(len as u32);
        if self.commands > MAX_COMMANDS || self.dwords > MAX_DWORDS {
            return Err(fail(name, Reason::BudgetExceeded));
        }
        let repr = CommandRepr::parse(&c).map_err(|r| fail(name, Reason::Repr(r)))?;
        // Memory operands to remap: (operand) up to 6 (STATE_BASE_ADDRESS).
        let mut mems: [Option<MemOperand>; 6] = [None; 6];
        let mut follow = None;
        let reg = |offset: u32, access| {
            if allowed(engine, offset, access) {
                Ok(())
            } else {
                Err(Reason::Register { offset, access })
            }
        };
        let check: Result<(), Reason> = (|| {
            match repr {
                CommandRepr::Plain | CommandRepr::BatchEnd => {}
                CommandRepr::BatchStart {
                    target,
                    second_level,
                    resource_streamer,
                    add_offset,
                    ..
                } => {
                    if resource_streamer {
                        return Err(Reason::Privileged("resource streamer batch"));
                    }
                    if add_offset {
                        return Err(Reason::Privileged("batch start with add-offset"));
                    }
                    if !target.ggtt {
                        return Err(Reason::Ppgtt);
                    }
                    if second_level && loc == Location::Ring {
                        return Err(Reason::Privileged("second-level batch from the ring"));
                    }
                    if level >= MAX_DEPTH && second_level {
                        return Err(Reason::DepthExceeded);
                    }
                    gm.g2h(target.addr, 4).map_err(|fault| Reason::Memory {
                        addr: target.addr,
                        size: 4,
                        fault,
                    })?;
                    follow = Some(target.addr);
                }
                CommandRepr::CondBatchEnd { mem }
                | CommandRepr::StoreDataImm { mem }
                | CommandRepr::CopyMemMem { dst: mem, .. }
                | CommandRepr::Atomic { mem } => {
                    mems[0] = Some(mem);
                    if let CommandRepr::CopyMemMem { src, .. } = repr {
                        mems[1] = Some(src);
                    }
                }
                CommandRepr::StoreRegMem { reg: r, mem } => {
                    reg(r, RegAccess::Read)?;
                    mems[0] = Some(mem);
                }
                CommandRepr::LoadRegMem { reg: r, mem } => {
                    reg(r, RegAccess::Write)?;
                    mems[0] = Some(mem);
                }
                CommandRepr::LoadRegImm { pairs } => {
                    for p in pairs.chunks_exact(2) {
                        reg(p[0] & 0x007f_fffc, RegAccess::Write)?;
                    }
                }
                CommandRepr::LoadRegReg { src, dst } => {
                    reg(src, RegAccess::Read)?;
                    reg(dst, RegAccess::Write)?;
                }
                CommandRepr::FlushDw {
                    post_sync,
                    store_index,
                    mem,
                } => {
                    if post_sync != PostSync::None {
                        if store_index {
                            return Err(Reason::Privileged("hardware status page write"));
                        }
                        mems[0] = Some(mem);
                    }
                }
                CommandRepr::PipeControl {
                    post_sync,
                    store_index,
                    lri_post_sync,
                    mem,
                } => {
                    if lri_post_sync {
                        return Err(Reason::Privileged("PIPE_CONTROL register post-sync"));
                    }
                    if post_sync != PostSync::None {
                        if store_index {
                            return Err(Reason::Privileged("hardware status page write"));
                        }
                        mems[0] = Some(mem);
                    }
                }
                CommandRepr::SemaphoreWait { register_poll, mem } => {
                    if register_poll {
                        return Err(Reason::Privileged("semaphore register poll"));
                    }
                    mems[0] = Some(mem);
                }
                CommandRepr::StateBaseAddress(sba) => {
                    for (slot, b) in mems.iter_mut().zip(sba.bases.iter()) {
                        if b.modify {
                            *slot = Some(b.mem);
                        }
                    }
                }
                CommandRepr::Blit { dst, src } => {
                    mems[0] = Some(dst);
                    mems[1] = src;
                }
                CommandRepr::Other(Op::Privileged) => {
                    return Err(Reason::Privileged("command reserved to the monitor"))
                }
                CommandRepr::Other(Op::SemaphoreSignal) => {
                    return Err(Reason::Privileged("cross-engine semaphore signal"))
                }
                CommandRepr::Other(_) => return Err(Reason::Unaudited),
            }
            Ok(())
        })();
        check.map_err(|r| fail(name, r))?;
        for m in mems.iter().flatten() {
            if !m.ggtt {
                return Err(fail(name, Reason::Ppgtt));
            }
            let size = m.size.max(1);
            let host = gm.g2h(m.addr, size).map_err(|fault| {
                fail(
                    name,
                    Reason::Memory {
                        addr: m.addr,
                        size,
                        fault,
                    },
                )
            })?;
            patch_mem(buf, off + m.dword, m.addr, host);
            if m.write {
                self.writes.add_range(m.addr, size);
            }
        }
        Ok((len, follow))
    }
}
