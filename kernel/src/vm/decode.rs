//! Decoding the instruction that touched a guest's virtual BAR0.
//!
//! `iced-x86` decodes (no_std; ARCHITECTURE.md "External crates"): a
//! guest is hostile input, and a full decoder gives every byte sequence
//! one meaning, the CPU's, with the instruction's length and operands,
//! where a decoder of our own for "the few `mov` forms a guest compiles
//! to" would have to be right about prefixes, REX, ModRM/SIB, RIP-relative
//! and moffs forms to not misread a crafted one. What is *emulated* is
//! deliberately small: `MOV` between a general register (32 or 64 bits) or
//! an immediate and a 32- or 64-bit memory operand, the forms volatile
//! loads and stores compile to. Anything else that touches BAR0 (string
//! instructions, read-modify-write, SSE, 8/16-bit widths, FS/GS overrides)
//! is refused, and the guest dies with the instruction named.
//!
//! The memory operand's address is recomputed from the decoded operand
//! and the guest's registers and must be the faulting address: if the
//! bytes at RIP changed between the fault and the decode, the emulation
//! would otherwise act on an instruction the CPU never ran.

use core::fmt;

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

use crate::arch::idt::TrapFrame;

/// Longest x86 instruction.
pub const MAX_INSTRUCTION: usize = 15;

/// A general register, by its 64-bit name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr(Register);

/// Width of the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 32 bits.
    Dword,
    /// 64 bits.
    Qword,
}

/// What the instruction does to BAR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Loads into `dest` (a 32-bit load zero-extends, as the CPU does).
    Read {
        /// The destination register.
        dest: Gpr,
    },
    /// Stores `value`.
    Write {
        /// The value (the low 32 bits for a 32-bit store).
        value: u64,
    },
}

/// One decoded access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Load or store.
    pub op: Op,
    /// Its width.
    pub width: Width,
    /// Linear address of the memory operand.
    pub address: u64,
    /// Bytes of the instruction (RIP advances by this).
    pub len: usize,
}

/// Why an access is not emulated (each the guest's doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes at RIP are not a valid instruction (or run past what the
    /// guest can execute).
    Invalid,
    /// An instruction other than a plain `MOV` with memory.
    Unsupported(Mnemonic),
    /// A width other than 32 or 64 bits.
    Width {
        /// Bytes.
        bytes: usize,
    },
    /// An FS or GS segment override.
    Segment,
    /// The operand's address is not where the CPU faulted.
    Moved {
        /// Decoded address.
        decoded: u64,
        /// Faulting address.
        fault: u64,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Invalid => f.write_str("the bytes at RIP are not a whole instruction"),
            DecodeError::Unsupported(m) => write!(
                f,
                "{m:?} is not emulated on BAR0 (only MOV between a register or immediate and memory)"
            ),
            DecodeError::Width { bytes } => {
                write!(f, "a {bytes}-byte access (BAR0 takes 4 or 8 bytes)")
            }
            DecodeError::Segment => f.write_str("an FS/GS override on a BAR0 access"),
            DecodeError::Moved { decoded, fault } => write!(
                f,
                "the instruction addresses {decoded:#x}, the fault was at {fault:#x} (code changed under the fault)"
            ),
        }
    }
}

/// The 64-bit registers in the order the decoder and the frame share.
const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RBX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::RBP,
    Register::RSP,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

fn get(frame: &TrapFrame, full: Register) -> Option<u64> {
    let t = frame;
    let values = [
        t.rax, t.rbx, t.rcx, t.rdx, t.rsi, t.rdi, t.rbp, t.rsp, t.r8, t.r9, t.r10, t.r11, t.r12,
        t.r13, t.r14, t.r15,
    ];
    GPRS.iter().position(|&r| r == full).map(|i| values[i])
}

fn slot(frame: &mut TrapFrame, full: Register) -> Option<&mut u64> {
    Some(match full {
        Register::RAX => &mut frame.rax,
        Register::RBX => &mut frame.rbx,
        Register::RCX => &mut frame.rcx,
        Register::RDX => &mut frame.rdx,
        Register::RSI => &mut frame.rsi,
        Register::RDI => &mut frame.rdi,
        Register::RBP => &mut frame.rbp,
        Register::RSP => &mut frame.rsp,
        Register::R8 => &mut frame.r8,
        Register::R9 => &mut frame.r9,
        Register::R10 => &mut frame.r10,
        Register::R11 => &mut frame.r11,
        Register::R12 => &mut frame.r12,
        Register::R13 => &mut frame.r13,
        Register::R14 => &mut frame.r14,
        Register::R15 => &mut frame.r15,
        _ => return None,
    })
}

/// The value of a general register of any width as the instruction sees
/// it (AH..BH included); segment bases are 0 but FS and GS, which are
/// refused.
fn value(frame: &TrapFrame, reg: Register) -> Option<u64> {
    match reg {
        Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
        Register::AH | Register::CH | Register::DH | Register::BH => {
            return get(frame, reg.full_register()).map(|v| (v >> 8) & 0xff);
        }
        _ => {}
    }
    let full = get(frame, reg.full_register())?;
    Some(match reg.size() {
        8 => full,
        4 => full & 0xffff_ffff,
        2 => full & 0xffff,
        1 => full & 0xff,
        _ => return None,
    })
}

/// Writes a load's result into the guest's register (zero-extended to 64
/// bits, as a 32-bit `MOV` does).
pub fn write_register(frame: &mut TrapFrame, reg: Gpr, value: u64) {
    if let Some(slot) = slot(frame, reg.0) {
        *slot = value;
    }
}

/// Builds the decoder's tables (iced-x86 makes them on first use, which
/// under QEMU TCG takes tens of milliseconds), so that no guest's exit
/// pays for it.
pub fn warm_up() {
    let mov = [0x8b, 0x07]; // mov eax, [rdi]
    let insn = Decoder::with_ip(64, &mov, 0, DecoderOptions::NONE).decode();
    debug_assert_eq!(insn.mnemonic(), Mnemonic::Mov);
}

/// Decodes the instruction in `bytes` (read from the guest at `frame.rip`;
/// fewer than [`MAX_INSTRUCTION`] if the guest's code ends sooner) that
/// faulted at `fault`.
pub fn decode(bytes: &[u8], frame: &TrapFrame, fault: u64) -> Result<Access, DecodeError> {
    let mut decoder = Decoder::with_ip(64, bytes, frame.rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Err(DecodeError::Invalid);
    }
    if insn.mnemonic() != Mnemonic::Mov || insn.op_count() != 2 {
        return Err(DecodeError::Unsupported(insn.mnemonic()));
    }
    if matches!(insn.segment_prefix(), Register::FS | Register::GS) {
        return Err(DecodeError::Segment);
    }
    let width = match insn.memory_size().size() {
        4 => Width::Dword,
        8 => Width::Qword,
        bytes => return Err(DecodeError::Width { bytes }),
    };
    let op = match (insn.op0_kind(), insn.op1_kind()) {
        (OpKind::Register, OpKind::Memory) => {
            let reg = insn.op0_register();
            if !GPRS.contains(&reg.full_register()) {
                return Err(DecodeError::Unsupported(insn.mnemonic()));
            }
            Op::Read {
                dest: Gpr(reg.full_register()),
            }
        }
        (OpKind::Memory, OpKind::Register) => Op::Write {
            value: value(frame, insn.op1_register())
                .ok_or(DecodeError::Unsupported(insn.mnemonic()))?,
        },
        (OpKind::Memory, OpKind::Immediate32) => Op::Write {
            value: u64::from(insn.immediate32()),
        },
        (OpKind::Memory, OpKind::Immediate32to64) => Op::Write {
            value: insn.immediate32to64() as u64,
        },
        _ => return Err(DecodeError::Unsupported(insn.mnemonic())),
    };
    let memory_operand = match op {
        Op::Read { .. } => 1,
        Op::Write { .. } => 0,
    };
    let address = insn
        .virtual_address(memory_operand, 0, |reg, _, _| value(frame, reg))
        .ok_or(DecodeError::Segment)?;
    if address != fault {
        return Err(DecodeError::Moved {
            decoded: address,
            fault,
        });
    }
    let value_mask = |v: u64| match width {
        Width::Dword => v & 0xffff_ffff,
        Width::Qword => v,
    };
    let op = match op {
        Op::Write { value } => Op::Write {
            value: value_mask(value),
        },
        read => read,
    };
    Ok(Access {
        op,
        width,
        address,
        len: insn.len(),
    })
}
