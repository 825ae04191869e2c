//! A guest's CPU state: the general registers, RIP, RFLAGS and RSP of its
//! last exit (a [`TrapFrame`]), its FPU/SSE state (an FXSAVE area) and its
//! clock ([`Clock`], what a virtual machine's TSC is). Together with its
//! RAM this is the whole guest: the runtime keeps no other per-guest CPU
//! state (a blocked `wait` is re-executed on resume, see `vm::syscall`),
//! so a guest saved at any exit and restored elsewhere goes on as if
//! nothing happened. It is the CPU-state blob of a live migration's
//! stream (`migrate::wire` kind 5), which checks its BLAKE3 digest before
//! the blob reaches [`CpuState::restore`]; the CRC here catches a blob
//! damaged before the stream took it (and the monitor's own bugs).
//!
//! Wire format, version 2, little endian:
//!
//! | offset | size | field                                               |
//! |--------|------|-----------------------------------------------------|
//! | 0      | 8    | magic `b"GMIGGCPU"`                                 |
//! | 8      | 2    | format version (2)                                  |
//! | 10     | 2    | flags (0)                                           |
//! | 12     | 4    | body length in bytes ([`BODY_BYTES`])               |
//! | 16     | 4    | CRC-32C (Castagnoli) of the body                    |
//! | 20     | ...  | body                                                |
//!
//! Body: image code (u32: 1 workload, 2 probe), 4 reserved bytes (zero);
//! RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8..R15 (16 × u64); RIP, RFLAGS
//! (u64 each); the guest's clock at the save and at its last frame report
//! (µs, u64 each; `u64::MAX`: no frame yet); the 512-byte FXSAVE area.
//! Version 1 (the same without the clock) is refused by version: no saved
//! guest of it is kept anywhere, and a guest restored without its clock
//! would see time jump.
//!
//! A restore checks what would hurt the monitor rather than the guest: RIP
//! inside the guest's address slot (an `iretq` to a non-canonical RIP
//! faults in ring 0; RSP is not checked by `iretq`, and a guest may hold
//! anything there), RFLAGS without system bits (IOPL, NT, VM...), MXCSR
//! without bits the CPU lacks (FXRSTOR would fault in ring 0).

use core::fmt;

use guest::abi::{Image, USER_BASE, USER_SLOT_SIZE};

use crate::arch::idt::TrapFrame;
use crate::arch::ring3::{mxcsr_mask, FxArea, FXSAVE_BYTES};

/// Magic at the start of every blob.
pub const MAGIC: [u8; 8] = *b"GMIGGCPU";
/// Current format version.
pub const VERSION: u16 = 2;
/// Header bytes.
pub const HEADER_BYTES: usize = 20;
/// Registers in the body.
const REGISTERS: usize = 18;
/// Where the clock starts in the body.
const CLOCK_AT: usize = 8 + REGISTERS * 8;
/// Where the FXSAVE area starts in the body.
const FPU_AT: usize = CLOCK_AT + 16;
/// Body bytes.
pub const BODY_BYTES: usize = FPU_AT + FXSAVE_BYTES;
/// Bytes of a saved CPU state.
pub const SAVED_BYTES: usize = HEADER_BYTES + BODY_BYTES;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// RFLAGS bits a guest may hold: CF, PF, AF, ZF, SF, TF, DF, OF, AC, ID
/// (what `popf` can change in ring 3 with IOPL 0), besides IF and the
/// always-one bit 1, which entry sets.
pub const USER_FLAGS: u64 = 0x0024_0dd5;
/// RFLAGS.IF.
pub const IF: u64 = 1 << 9;
/// RFLAGS bit 1, always one.
const RESERVED_ONE: u64 = 1 << 1;

/// A guest's clock as saved: microseconds, carried over so that it goes
/// on where it stood (see `Guest::clock_us`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// At the save.
    pub now_us: u64,
    /// At its last frame report, if it made one.
    pub last_frame_us: Option<u64>,
}

/// Why a saved state does not restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStateError {
    /// Wrong length, magic or flags.
    Format,
    /// Another format version.
    Version {
        /// The version the blob names.
        found: u16,
    },
    /// The body's CRC does not match.
    Crc,
    /// The state is of another image than the guest it is restored into.
    WrongImage,
    /// RIP is outside the guest's address slot.
    BadPointer,
    /// RFLAGS has system bits set.
    BadFlags,
    /// MXCSR has bits set this CPU does not have.
    BadMxcsr,
}

impl fmt::Display for CpuStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let CpuStateError::Version { found } = self {
            return write!(
                f,
                "the guest CPU state is of format version {found}, this monitor reads {VERSION}"
            );
        }
        f.write_str(match self {
            CpuStateError::Format => "not a guest CPU state (length, magic or flags)",
            CpuStateError::Version { .. } => "",
            CpuStateError::Crc => "the guest CPU state's CRC does not match",
            CpuStateError::WrongImage => "the guest CPU state is of another guest image",
            CpuStateError::BadPointer => "RIP lies outside the guest's address space",
            CpuStateError::BadFlags => "RFLAGS has system bits set",
            CpuStateError::BadMxcsr => "MXCSR has bits this CPU does not support",
        })
    }
}

/// The CPU state of one guest.
#[derive(Clone, Debug)]
pub struct CpuState {
    /// Registers as of the last exit (vector and error code of that exit;
    /// CS and SS are set at every entry).
    pub frame: TrapFrame,
    /// FPU/SSE registers.
    pub fpu: FxArea,
}

fn in_slot(va: u64) -> bool {
    (USER_BASE..=USER_BASE + USER_SLOT_SIZE).contains(&va)
}

fn image_code(image: Image) -> u32 {
    match image {
        Image::Workload => 1,
        Image::Probe => 2,
    }
}

impl CpuState {
    /// The state at start-up: RIP at `entry`, RSP at `stack_top`, RDI =
    /// `arg`, everything else zero, interrupts on, FPU reset.
    pub fn initial(entry: u64, stack_top: u64, arg: u64) -> Self {
        CpuState {
            frame: TrapFrame {
                r15: 0,
                r14: 0,
                r13: 0,
                r12: 0,
                r11: 0,
                r10: 0,
                r9: 0,
                r8: 0,
                rbp: 0,
                rdi: arg,
                rsi: 0,
                rdx: 0,
                rcx: 0,
                rbx: 0,
                rax: 0,
                vector: 0,
                error_code: 0,
                rip: entry,
                cs: 0,
                rflags: IF | RESERVED_ONE,
                rsp: stack_top,
                ss: 0,
            },
            fpu: FxArea::reset(),
        }
    }

    fn registers(&self) -> [u64; REGISTERS] {
        let t = &self.frame;
        [
            t.rax, t.rbx, t.rcx, t.rdx, t.rsi, t.rdi, t.rbp, t.rsp, t.r8, t.r9, t.r10, t.r11,
            t.r12, t.r13, t.r14, t.r15, t.rip, t.rflags,
        ]
    }

    /// The state and `clock` in the wire format.
    pub fn save(&self, image: Image, clock: Clock) -> [u8; SAVED_BYTES] {
        let mut b = [0u8; SAVED_BYTES];
        let body = &mut b[HEADER_BYTES..];
        body[..4].copy_from_slice(&image_code(image).to_le_bytes());
        for (chunk, r) in body[8..CLOCK_AT].chunks_exact_mut(8).zip(self.registers()) {
            chunk.copy_from_slice(&r.to_le_bytes());
        }
        body[CLOCK_AT..CLOCK_AT + 8].copy_from_slice(&clock.now_us.to_le_bytes());
        let last = clock.last_frame_us.unwrap_or(u64::MAX);
        body[CLOCK_AT + 8..FPU_AT].copy_from_slice(&last.to_le_bytes());
        body[FPU_AT..].copy_from_slice(&self.fpu.0);
        let crc = CRC32C.checksum(&b[HEADER_BYTES..]);
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BODY_BYTES as u32).to_le_bytes());
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A state and its clock from [`CpuState::save`]'s bytes, for a guest
    /// of `image`.
    pub fn restore(b: &[u8], image: Image) -> Result<(CpuState, Clock), CpuStateError> {
        if b.len() < HEADER_BYTES || b[..8] != MAGIC {
            return Err(CpuStateError::Format);
        }
        let found = u16::from_le_bytes([b[8], b[9]]);
        if found != VERSION {
            return Err(CpuStateError::Version { found });
        }
        if b.len() != SAVED_BYTES
            || b[10..12] != [0, 0]
            || b[12..16] != (BODY_BYTES as u32).to_le_bytes()
        {
            return Err(CpuStateError::Format);
        }
        let body = &b[HEADER_BYTES..];
        if b[16..20] != CRC32C.checksum(body).to_le_bytes() {
            return Err(CpuStateError::Crc);
        }
        if body[..4] != image_code(image).to_le_bytes() || body[4..8] != [0; 4] {
            return Err(CpuStateError::WrongImage);
        }
        let quad = |chunk: &[u8]| {
            let mut q = [0u8; 8];
            q.copy_from_slice(chunk);
            u64::from_le_bytes(q)
        };
        let mut r = [0u64; REGISTERS];
        for (v, chunk) in r.iter_mut().zip(body[8..CLOCK_AT].chunks_exact(8)) {
            *v = quad(chunk);
        }
        let last = quad(&body[CLOCK_AT + 8..FPU_AT]);
        let clock = Clock {
            now_us: quad(&body[CLOCK_AT..CLOCK_AT + 8]),
            last_frame_us: (last != u64::MAX).then_some(last),
        };
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] =
            r;
        if !in_slot(rip) {
            return Err(CpuStateError::BadPointer);
        }
        if rflags & !(USER_FLAGS | IF | RESERVED_ONE) != 0 {
            return Err(CpuStateError::BadFlags);
        }
        let mut fpu = FxArea([0; FXSAVE_BYTES]);
        fpu.0.copy_from_slice(&body[FPU_AT..]);
        if fpu.mxcsr() & !mxcsr_mask() != 0 {
            return Err(CpuStateError::BadMxcsr);
        }
        let state = CpuState {
            frame: TrapFrame {
                r15,
                r14,
                r13,
                r12,
                r11,
                r10,
                r9,
                r8,
                rbp,
                rdi,
                rsi,
                rdx,
                rcx,
                rbx,
                rax,
                vector: 0,
                error_code: 0,
                rip,
                cs: 0,
                rflags,
                rsp,
                ss: 0,
            },
            fpu,
        };
        Ok((state, clock))
    }
}
