//! Validated representations of the commands whose operands the auditor
//! inspects (smoltcp `Repr` style): each variant holds the decoded operand
//! values, with the bit layouts declared once here.
//!
//! Field positions: PRM vol 2a and genxml `gen9.xml` (DWord n, bits hi:lo).

use core::fmt;

use super::decode::Command;
use super::table::Op;

/// Why a command's operands are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprError {
    /// The command is shorter than its operand layout needs.
    TooShort {
        /// Name of the command.
        name: &'static str,
        /// DWords present.
        len: usize,
    },
    /// MI_LOAD_REGISTER_IMM without whole (register, value) pairs.
    OddRegisterList,
    /// MI_ATOMIC with an inline-data length other than 3 or 11.
    BadAtomicLength,
    /// A repeated structure (e.g. VERTEX_BUFFER_STATE) cut short.
    PartialGroup,
}

impl fmt::Display for ReprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReprError::TooShort { name, len } => write!(f, "{name} too short ({len} DWords)"),
            ReprError::OddRegisterList => {
                f.write_str("MI_LOAD_REGISTER_IMM without whole register/value pairs")
            }
            ReprError::BadAtomicLength => f.write_str("MI_ATOMIC length must be 3 or 11"),
            ReprError::PartialGroup => f.write_str("repeated structure cut short"),
        }
    }
}

/// Post-sync operation of PIPE_CONTROL / MI_FLUSH_DW (2-bit field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostSync {
    /// No write.
    None,
    /// Write the immediate data (PIPE_CONTROL: 8 bytes; MI_FLUSH_DW: 4 or 8).
    WriteImmediate,
    /// Write the PS_DEPTH_COUNT (8 bytes).
    WriteDepthCount,
    /// Write the timestamp (8 bytes).
    WriteTimestamp,
}

impl PostSync {
    const fn from_bits(b: u32) -> PostSync {
        match b & 3 {
            0 => PostSync::None,
            1 => PostSync::WriteImmediate,
            2 => PostSync::WriteDepthCount,
            _ => PostSync::WriteTimestamp,
        }
    }
}

/// A memory operand: address, whether it is a GGTT (not PPGTT) address, and
/// the bytes the command touches there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    /// DWord index of the operand's low address DWord within the command
    /// (the high DWord follows); the remapper rewrites these two DWords.
    pub dword: usize,
    /// Lowest address bit in the low DWord; the bits below are flags and
    /// survive the rewrite.
    pub shift: u32,
    /// Graphics address.
    pub addr: u64,
    /// Bytes accessed from `addr`.
    pub size: u64,
    /// True for a global-GTT address; false means per-process GTT.
    pub ggtt: bool,
    /// True if the command may write there.
    pub write: bool,
}

/// The checked form of a command.
#[allow(clippy::large_enum_variant)] // reason: no_std, no Box; a parse result lives briefly on the stack
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandRepr<'a> {
    /// No operand the auditor needs (including MI_NOOP).
    Plain,
    /// MI_BATCH_BUFFER_START.
    BatchStart {
        /// Target of the batch (DWord 1-2).
        target: MemOperand,
        /// Bit 22: second-level batch (returns to the caller on END).
        second_level: bool,
        /// Bit 10: resource streamer enable (privileged).
        resource_streamer: bool,
        /// Bit 15: predication enable.
        predicated: bool,
        /// Bit 16: add offset enable (adds a register to the address).
        add_offset: bool,
    },
    /// MI_BATCH_BUFFER_END.
    BatchEnd,
    /// MI_CONDITIONAL_BATCH_BUFFER_END (reads 4 bytes, DWord 2-3).
    CondBatchEnd {
        /// The compared memory.
        mem: MemOperand,
    },
    /// MI_STORE_DATA_IMM (DWord 1-2 address; bit 21 store qword).
    StoreDataImm {
        /// Destination.
        mem: MemOperand,
    },
    /// MI_STORE_REGISTER_MEM (DWord 1 register, DWord 2-3 address).
    StoreRegMem {
        /// Register offset read.
        reg: u32,
        /// Destination (4 bytes).
        mem: MemOperand,
    },
    /// MI_LOAD_REGISTER_MEM (DWord 1 register, DWord 2-3 address).
    LoadRegMem {
        /// Register offset written.
        reg: u32,
        /// Source (4 bytes).
        mem: MemOperand,
    },
    /// MI_LOAD_REGISTER_IMM: (register, value) pairs from DWord 1.
    LoadRegImm {
        /// The pairs, flattened.
        pairs: &'a [u32],
    },
    /// MI_LOAD_REGISTER_REG (DWord 1 source, DWord 2 destination register).
    LoadRegReg {
        /// Source register offset.
        src: u32,
        /// Destination register offset.
        dst: u32,
    },
    /// MI_COPY_MEM_MEM (4 bytes from DWord 3-4 to DWord 1-2).
    CopyMemMem {
        /// Destination.
        dst: MemOperand,
        /// Source.
        src: MemOperand,
    },
    /// MI_ATOMIC (DWord 1-2 address; data size bits 20:19).
    Atomic {
        /// The memory operated on.
        mem: MemOperand,
    },
    /// MI_FLUSH_DW with its post-sync write.
    FlushDw {
        /// Post-sync operation (bits 15:14).
        post_sync: PostSync,
        /// Bit 21: the address is an index into the hardware status page.
        store_index: bool,
        /// Destination of the post-sync write (DWord 1-2).
        mem: MemOperand,
    },
    /// PIPE_CONTROL with its post-sync write.
    PipeControl {
        /// Post-sync operation (DWord 1 bits 15:14).
        post_sync: PostSync,
        /// DWord 1 bit 21: the address indexes the hardware status page.
        store_index: bool,
        /// DWord 1 bit 23: the post-sync write goes to a register.
        lri_post_sync: bool,
        /// Destination of the post-sync write (DWord 2-3).
        mem: MemOperand,
    },
    /// MI_SEMAPHORE_WAIT (DWord 2-3 address, 4 bytes read).
    SemaphoreWait {
        /// Bit 16: polls a register instead of memory.
        register_poll: bool,
        /// The polled memory.
        mem: MemOperand,
    },
    /// STATE_BASE_ADDRESS: base/size pairs, parsed on demand
    /// ([`SbaView::bases`]) so that the common variants stay small.
    StateBaseAddress(SbaView<'a>),
    /// XY_COLOR_BLT / XY_SRC_COPY_BLT / XY_FAST_COPY_BLT surfaces.
    Blit {
        /// Destination surface (pitch x height from its top row).
        dst: MemOperand,
        /// Source surface, for copies.
        src: Option<MemOperand>,
    },
    /// Any other class: the auditor decides from [`Op`] alone.
    Other(Op),
}

/// One STATE_BASE_ADDRESS base with its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseRange {
    /// Name of the base (genxml).
    pub name: &'static str,
    /// Base Address Modify Enable: this command changes the base.
    pub modify: bool,
    /// The base (`size` unused: see `bytes`).
    pub mem: MemOperand,
    /// This command changes the size (Buffer Size Modify Enable; for the
    /// bindless heap, whose size has no enable of its own, the base's).
    pub size_modify: bool,
    /// The size the command sets, in bytes (`None`: the base has no size
    /// field, the hardware does not bound it).
    pub bytes: Option<u64>,
}

/// The bases STATE_BASE_ADDRESS (19 DWords on Gen9) sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateBaseAddress {
    /// General, surface, dynamic, indirect object, instruction, bindless.
    pub bases: [BaseRange; 6],
}

/// A STATE_BASE_ADDRESS of at least 19 DWords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbaView<'a> {
    c: Command<'a>,
}

impl SbaView<'_> {
    /// The bases the command sets, with their sizes.
    pub fn bases(&self) -> StateBaseAddress {
        let c = &self.c;
        let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
        // Sizes: 4 KiB pages in bits 31:12 with a modify enable in bit 0
        // (DWords 12-15); the bindless heap: (n + 1) surface states of 64
        // bytes in DWord 18 bits 31:12, set with its base (genxml, Mesa
        // anv).
        let pages = |dw: usize| u64::from(c.dw(dw) >> 12) * 4096;
        let base = |name, lo: usize, size_dw: Option<usize>| {
            let modify = bit(c.dw(lo), 0);
            BaseRange {
                name,
                modify,
                mem: mem(c, lo, 12, 0, true, true),
                size_modify: size_dw.is_some_and(|d| bit(c.dw(d), 0)),
                bytes: size_dw.map(pages),
            }
        };
        let mut bindless = base("Bindless Surface State Base Address", 16, None);
        bindless.size_modify = bindless.modify;
        bindless.bytes = Some((u64::from(c.dw(18) >> 12) + 1) * 64);
        StateBaseAddress {
            bases: [
                base("General State Base Address", 1, Some(12)),
                base("Surface State Base Address", 4, None),
                base("Dynamic State Base Address", 6, Some(13)),
                base("Indirect Object Base Address", 8, Some(14)),
                base("Instruction Base Address", 10, Some(15)),
                bindless,
            ],
        }
    }
}

/// Address in DWord `lo` (bits 31:`align`) and `lo + 1` (bits 31:0).
fn addr(c: &Command<'_>, lo: usize, align: u32) -> u64 {
    let low = c.dw(lo) & !((1u32 << align) - 1);
    (u64::from(c.dw(lo + 1)) << 32) | u64::from(low)
}

fn mem(c: &Command<'_>, lo: usize, align: u32, size: u64, ggtt: bool, write: bool) -> MemOperand {
    MemOperand {
        dword: lo,
        shift: align,
        addr: addr(c, lo, align),
        size,
        ggtt,
        write,
    }
}

/// Blit surface bytes: `pitch` bytes per row over rows `y1..y2`, starting at
/// row 0 of the surface (the addressed surface spans from its base to the
/// end of the last row touched). Pitch and rows are 16-bit fields, so the
/// product fits easily in u64.
fn surface_bytes(pitch: u32, y2: u32) -> u64 {
    u64::from(pitch) * u64::from(y2)
}

impl<'a> CommandRepr<'a> {
    /// Parses the operands of a decoded command.
    #[inline]
    pub fn parse(c: &Command<'a>) -> Result<CommandRepr<'a>, ReprError> {
        let spec = c.spec();
        let h = c.header();
        let need = |n: usize| {
            if c.len() < n {
                Err(ReprError::TooShort {
                    name: spec.name,
                    len: c.len(),
                })
            } else {
                Ok(())
            }
        };
        let bit = |w: u32, b: u32| (w >> b) & 1 == 1;
        Ok(match spec.op {
            Op::Noop | Op::Plain => CommandRepr::Plain,
            Op::BatchStart => {
                need(3)?;
                CommandRepr::BatchStart {
                    // The batch's length is found by scanning it; `size` is
                    // the minimum (one DWord).
                    target: mem(c, 1, 2, 4, !bit(h, 8), false),
                    second_level: bit(h, 22),
                    resource_streamer: bit(h, 10),
                    predicated: bit(h, 15),
                    add_offset: bit(h, 16),
                }
            }
            Op::BatchEnd => CommandRepr::BatchEnd,
            Op::CondBatchEnd => {
                need(4)?;
                CommandRepr::CondBatchEnd {
                    mem: mem(c, 2, 3, 4, bit(h, 22), false),
                }
            }
            Op::StoreDataImm => {
                need(4)?;
                // Store Qword (bit 21) or a 5-DWord form writes 8 bytes.
                let size = if bit(h, 21) || c.len() >= 5 { 8 } else { 4 };
                CommandRepr::StoreDataImm {
                    mem: mem(c, 1, 2, size, bit(h, 22), true),
                }
            }
            Op::StoreRegMem => {
                need(4)?;
                CommandRepr::StoreRegMem {
                    reg: c.dw(1) & 0x007f_fffc,
                    mem: mem(c, 2, 2, 4, bit(h, 22), true),
                }
            }
            Op::LoadRegMem => {
                need(4)?;
                CommandRepr::LoadRegMem {
                    reg: c.dw(1) & 0x007f_fffc,
                    mem: mem(c, 2, 2, 4, bit(h, 22), false),
                }
            }
            Op::LoadRegImm => {
                let pairs = c.words().get(1..).unwrap_or(&[]);
                if pairs.is_empty() || pairs.len() % 2 != 0 {
                    return Err(ReprError::OddRegisterList);
                }
                CommandRepr::LoadRegImm { pairs }
            }
            Op::LoadRegReg => {
                need(3)?;
                CommandRepr::LoadRegReg {
                    src: c.dw(1) & 0x007f_fffc,
                    dst: c.dw(2) & 0x007f_fffc,
                }
            }
            Op::CopyMemMem => {
                need(5)?;
                CommandRepr::CopyMemMem {
                    dst: mem(c, 1, 2, 4, bit(h, 21), true),
                    src: mem(c, 3, 2, 4, bit(h, 22), false),
                }
            }
            Op::Atomic => {
                if c.len() != 3 && c.len() != 11 {
                    return Err(ReprError::BadAtomicLength);
                }
                let size = match (h >> 19) & 3 {
                    0 => 4,
                    1 => 8,
                    _ => 16,
                };
                CommandRepr::Atomic {
                    mem: mem(c, 1, 2, size, bit(h, 22), true),
                }
            }
            Op::FlushDw => {
                need(4)?;
                let size = if c.len() >= 5 { 8 } else { 4 };
                CommandRepr::FlushDw {
                    post_sync: PostSync::from_bits(h >> 14),
                    store_index: bit(h, 21),
                    mem: mem(c, 1, 3, size, bit(c.dw(1), 2), true),
                }
            }
            Op::PipeControl => {
                need(6)?;
                let d1 = c.dw(1);
                CommandRepr::PipeControl {
                    post_sync: PostSync::from_bits(d1 >> 14),
                    store_index: bit(d1, 21),
                    lri_post_sync: bit(d1, 23),
                    mem: mem(c, 2, 3, 8, bit(d1, 24), true),
                }
            }
            Op::SemaphoreWait => {
                need(4)?;
                CommandRepr::SemaphoreWait {
                    register_poll: bit(h, 16),
                    mem: mem(c, 2, 2, 4, bit(h, 22), false),
                }
            }
            Op::StateBaseAddress => {
                need(19)?;
                CommandRepr::StateBaseAddress(SbaView { c: *c })
            }
            Op::XyColorBlt => {
                need(7)?;
                // DW1 bits 15:0 destination pitch (bytes), DW3 bits 31:16 y2.
                let bytes = surface_bytes(c.dw(1) & 0xffff, c.dw(3) >> 16);
                CommandRepr::Blit {
                    dst: mem(c, 4, 0, bytes, true, true),
                    src: None,
                }
            }
            Op::XySrcCopyBlt | Op::XyFastCopyBlt => {
                need(10)?;
                // DW1 15:0 destination pitch, DW3 31:16 destination y2,
                // DW6 31:16 source y1, DW7 15:0 source pitch. The source rows
                // are y1 .. y1 + (dst y2 - dst y1) at most; take y1 + dst y2.
                let dst_bytes = surface_bytes(c.dw(1) & 0xffff, c.dw(3) >> 16);
                let src_rows = (c.dw(6) >> 16) + (c.dw(3) >> 16);
                let src_bytes = surface_bytes(c.dw(7) & 0xffff, src_rows);
                CommandRepr::Blit {
                    dst: mem(c, 4, 0, dst_bytes, true, true),
                    src: Some(mem(c, 8, 0, src_bytes, true, false)),
                }
            }
            other => CommandRepr::Other(other),
        })
    }
}
