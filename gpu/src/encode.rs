//! Encoders for the commands the software GPU executes (header layouts
//! from Mesa's genxml and the PRM's blitter chapter, as in [`crate::sim`]):
//! what tests, benchmarks and the monitor's own workloads submit. Every
//! address is a GGTT address (the "use global GTT" bit is set) but for
//! the `ppgtt_` encoders, whose addresses are in the context's PPGTT.

/// STATE_BASE_ADDRESS as Mesa sets it on Gen9 in a PPGTT context: the
/// general, dynamic, indirect object and instruction bases 0 and the
/// surface state base at `surface`, each with its modify bit; every bound
/// 4 GiB (0xfffff pages) with its modify bit; the bindless surface state
/// base 0.
pub const fn mesa_state_base(surface: u64) -> [u32; 19] {
    let mut sba = [0u32; 19];
    sba[0] = (0x6101 << 16) | (19 - 2);
    sba[1] = 1;
    sba[6] = 1;
    sba[8] = 1;
    sba[10] = 1;
    sba[16] = 1;
    sba[4] = surface as u32 | 1;
    sba[5] = (surface >> 32) as u32;
    sba[12] = 0xfffff << 12 | 1;
    sba[13] = 0xfffff << 12 | 1;
    sba[14] = 0xfffff << 12 | 1;
    sba[15] = 0xfffff << 12 | 1;
    sba[18] = 0xfffff << 12;
    sba
}

/// MI_NOOP.
pub const NOOP: u32 = 0;
/// MI_USER_INTERRUPT.
pub const USER_INTERRUPT: u32 = 0x02 << 23;
/// MI_BATCH_BUFFER_END.
pub const BB_END: u32 = 0x0a << 23;
/// MI_STORE_DATA_IMM of one dword to GGTT address `addr`.
pub const fn sdi(addr: u64, v: u32) -> [u32; 4] {
    [
        (0x20 << 23) | (1 << 22) | 2,
        addr as u32,
        (addr >> 32) as u32,
        v,
    ]
}
/// MI_STORE_DATA_IMM of one qword to GGTT address `addr`.
pub const fn sdi_qword(addr: u64, v: u64) -> [u32; 5] {
    [
        (0x20 << 23) | (1 << 22) | (1 << 21) | 3,
        addr as u32,
        (addr >> 32) as u32,
        v as u32,
        (v >> 32) as u32,
    ]
}
/// MI_LOAD_REGISTER_IMM of one register.
pub const fn lri(reg: u32, v: u32) -> [u32; 3] {
    [(0x22 << 23) | 1, reg, v]
}
/// MI_STORE_REGISTER_MEM of `reg` to GGTT address `addr`.
pub const fn srm(reg: u32, addr: u64) -> [u32; 4] {
    [
        (0x24 << 23) | (1 << 22) | 2,
        reg,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_FLUSH_DW with a post-sync dword write to GGTT address `addr`.
pub const fn flush_dw_imm(addr: u64, v: u32) -> [u32; 4] {
    [
        (0x26 << 23) | (1 << 14) | 2,
        addr as u32 | 4,
        (addr >> 32) as u32,
        v,
    ]
}
/// MI_FLUSH_DW with a post-sync dword write to PPGTT address `addr`
/// (Destination Address Type clear).
pub const fn ppgtt_flush_dw_imm(addr: u64, v: u32) -> [u32; 4] {
    let mut c = flush_dw_imm(addr, v);
    c[1] &= !4;
    c
}
/// PIPE_CONTROL with a post-sync qword write to GGTT address `addr`.
pub const fn pipe_control_imm(addr: u64, v: u64) -> [u32; 6] {
    [
        0x7a00_0004,
        (1 << 24) | (1 << 14),
        addr as u32,
        (addr >> 32) as u32,
        v as u32,
        (v >> 32) as u32,
    ]
}
/// MI_BATCH_BUFFER_START of a GGTT batch (first or second level).
pub const fn bb_start(addr: u64, second_level: bool) -> [u32; 3] {
    [
        (0x31 << 23) | ((second_level as u32) << 22) | 1,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_BATCH_BUFFER_START of a PPGTT (non-privileged) batch at `addr`
/// (Address Space Indicator set).
pub const fn ppgtt_bb_start(addr: u64, second_level: bool) -> [u32; 3] {
    [
        (0x31 << 23) | ((second_level as u32) << 22) | (1 << 8) | 1,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_STORE_DATA_IMM of one dword to PPGTT address `addr`.
pub const fn ppgtt_sdi(addr: u64, v: u32) -> [u32; 4] {
    [(0x20 << 23) | 2, addr as u32, (addr >> 32) as u32, v]
}
/// PIPE_CONTROL with a post-sync qword write to PPGTT address `addr`
/// (Destination Address Type clear).
pub const fn ppgtt_pipe_control_imm(addr: u64, v: u64) -> [u32; 6] {
    let mut c = pipe_control_imm(addr, v);
    c[1] &= !(1 << 24);
    c
}
/// XY_COLOR_BLT, 32 bpp.
pub const fn color_blt(
    dst: u64,
    pitch: u32,
    x1: u32,
    y1: u32,
    x2: u32,
    y2: u32,
    color: u32,
) -> [u32; 7] {
    [
        (2 << 29) | (0x50 << 22) | (3 << 20) | 5,
        (3 << 24) | (0xf0 << 16) | pitch,
        (y1 << 16) | x1,
        (y2 << 16) | x2,
        dst as u32,
        (dst >> 32) as u32,
        color,
    ]
}
/// XY_SRC_COPY_BLT, 32 bpp.
#[allow(clippy::too_many_arguments)] // reason: mirrors the command's fields one to one
pub const fn copy_blt(
    dst: u64,
    dpitch: u32,
    x1: u32,
    y1: u32,
    x2: u32,
    y2: u32,
    src: u64,
    spitch: u32,
    sx: u32,
    sy: u32,
) -> [u32; 10] {
    [
        (2 << 29) | (0x53 << 22) | (3 << 20) | 8,
        (3 << 24) | (0xcc << 16) | dpitch,
        (y1 << 16) | x1,
        (y2 << 16) | x2,
        dst as u32,
        (dst >> 32) as u32,
        (sy << 16) | sx,
        spitch,
        src as u32,
        (src >> 32) as u32,
    ]
}
/// MI_BATCH_BUFFER_START of a GGTT first-level batch with Predication
/// Enable (render only: ignored while MI_PREDICATE_RESULT_1 bit 0 is clear).
pub const fn bb_start_predicated(addr: u64) -> [u32; 3] {
    [
        (0x31 << 23) | (1 << 15) | 1,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_LOAD_REGISTER_MEM: `reg` from the dword at GGTT address `addr`.
pub const fn lrm(reg: u32, addr: u64) -> [u32; 4] {
    [
        (0x29 << 23) | (1 << 22) | 2,
        reg,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_LOAD_REGISTER_REG: `dst` takes the value of `src`.
pub const fn lrr(src: u32, dst: u32) -> [u32; 3] {
    [(0x2a << 23) | 1, src, dst]
}
/// MI_COPY_MEM_MEM of one dword between GGTT addresses.
pub const fn copy_mem_mem(dst: u64, src: u64) -> [u32; 5] {
    [
        (0x2e << 23) | (1 << 22) | (1 << 21) | 3,
        dst as u32,
        (dst >> 32) as u32,
        src as u32,
        (src >> 32) as u32,
    ]
}
/// MI_PREDICATE fields (genxml `MI_PREDICATE`): load operation (bits 7:6),
/// combine operation (4:3), compare operation (1:0).
pub mod predicate {
    /// Load: keep the predicate.
    pub const LOAD_KEEP: u32 = 0;
    /// Load: the predicate takes the combined result.
    pub const LOAD_LOAD: u32 = 2;
    /// Load: the predicate takes the inverted combined result.
    pub const LOAD_LOADINV: u32 = 3;
    /// Combine: the compare result alone.
    pub const COMBINE_SET: u32 = 0;
    /// Combine: AND with the current predicate.
    pub const COMBINE_AND: u32 = 1;
    /// Combine: OR with the current predicate.
    pub const COMBINE_OR: u32 = 2;
    /// Combine: XOR with the current predicate.
    pub const COMBINE_XOR: u32 = 3;
    /// Compare: true.
    pub const COMPARE_TRUE: u32 = 0;
    /// Compare: false.
    pub const COMPARE_FALSE: u32 = 1;
    /// Compare: MI_PREDICATE_SRC0 == MI_PREDICATE_SRC1.
    pub const COMPARE_SRCS_EQUAL: u32 = 2;
    /// Compare: SRC0 - SRC1 == MI_PREDICATE_DATA.
    pub const COMPARE_DELTAS_EQUAL: u32 = 3;
}
/// MI_PREDICATE.
pub const fn mi_predicate(load: u32, combine: u32, compare: u32) -> u32 {
    (0x0c << 23) | ((load & 3) << 6) | ((combine & 3) << 3) | (compare & 3)
}
/// MI_SET_PREDICATE with Predicate Enable `enable` (bits 3:0).
pub const fn set_predicate(enable: u32) -> u32 {
    (0x01 << 23) | (enable & 0xf)
}
/// MI_CONDITIONAL_BATCH_BUFFER_END with Compare Semaphore set: the batch
/// ends unless the dword at GGTT `addr` (masked by the dword before it in
/// compare mask mode) is greater than `data`.
pub const fn cond_bb_end(addr: u64, data: u32, mask_mode: bool) -> [u32; 4] {
    [
        (0x36 << 23) | (1 << 22) | (1 << 21) | ((mask_mode as u32) << 19) | 2,
        data,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_SEMAPHORE_WAIT on the dword at GGTT `addr` against `data` with
/// compare operation `compare` (0 `>`, 1 `>=`, 2 `<`, 3 `<=`, 4 `==`,
/// 5 `!=`), in polling or signal mode.
pub const fn semaphore_wait(addr: u64, data: u32, compare: u32, poll: bool) -> [u32; 4] {
    [
        (0x1c << 23) | (1 << 22) | ((poll as u32) << 15) | ((compare & 7) << 12) | 2,
        data,
        addr as u32,
        (addr >> 32) as u32,
    ]
}
/// MI_SEMAPHORE_SIGNAL to context `context` of engine `target` (genxml
/// Target Engine Select: 0 RCS, 1 VCS0, 2 BCS, 3 VECS).
pub const fn semaphore_signal(target: u32, context: u32) -> [u32; 2] {
    [(0x1b << 23) | ((target & 7) << 15), context]
}
/// MI_ATOMIC opcodes (genxml `Atomic_OPCODE`): the dword forms; the qword
/// forms are these + [`atomic::QWORD`], and CMP_WR16B is the octword one.
pub mod atomic {
    /// AND.
    pub const AND: u32 = 0x01;
    /// OR.
    pub const OR: u32 = 0x02;
    /// XOR.
    pub const XOR: u32 = 0x03;
    /// MOVE (memory takes operand 1).
    pub const MOVE: u32 = 0x04;
    /// Increment.
    pub const INC: u32 = 0x05;
    /// Decrement.
    pub const DEC: u32 = 0x06;
    /// Add operand 1.
    pub const ADD: u32 = 0x07;
    /// Subtract operand 1.
    pub const SUB: u32 = 0x08;
    /// Operand 1 minus memory.
    pub const RSUB: u32 = 0x09;
    /// Signed maximum.
    pub const IMAX: u32 = 0x0a;
    /// Signed minimum.
    pub const IMIN: u32 = 0x0b;
    /// Unsigned maximum.
    pub const UMAX: u32 = 0x0c;
    /// Unsigned minimum.
    pub const UMIN: u32 = 0x0d;
    /// Compare with operand 1, write operand 2 if equal.
    pub const CMP_WR: u32 = 0x0e;
    /// Pre-decrement (returns the decremented value).
    pub const PREDEC: u32 = 0x0f;
    /// Added to a dword opcode: its qword form.
    pub const QWORD: u32 = 0x20;
    /// Compare-and-write of an octword.
    pub const CMP_WR16B: u32 = 0x4e;
}
/// MI_ATOMIC of dword `opcode` on GGTT `addr` with inline operands;
/// `return_data` puts the memory's old value in CS_GPR4. With Inline Data
/// the command is always 11 DWords (DWord Length 9, PRM vol 2a MI_ATOMIC),
/// the operands' DWords interleaved; those past the data size are zero.
pub const fn atomic_dword(
    addr: u64,
    opcode: u32,
    op1: u32,
    op2: u32,
    return_data: bool,
) -> [u32; 11] {
    [
        (0x2f << 23) | (1 << 22) | (1 << 18) | ((return_data as u32) << 16) | (opcode << 8) | 9,
        addr as u32,
        (addr >> 32) as u32,
        op1,
        op2,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}
/// MI_ATOMIC of qword `opcode` (a dword opcode; the qword form is used)
/// on GGTT `addr` with inline operands (11 DWords, as [`atomic_dword`]).
pub const fn atomic_qword(
    addr: u64,
    opcode: u32,
    op1: u64,
    op2: u64,
    return_data: bool,
) -> [u32; 11] {
    [
        (0x2f << 23)
            | (1 << 22)
            | (1 << 19)
            | (1 << 18)
            | ((return_data as u32) << 16)
            | ((opcode | atomic::QWORD) << 8)
            | 9,
        addr as u32,
        (addr >> 32) as u32,
        op1 as u32,
        op2 as u32,
        (op1 >> 32) as u32,
        (op2 >> 32) as u32,
        0,
        0,
        0,
        0,
    ]
}
/// The command streamer ALU (genxml `MI_MATH_ALU_INSTRUCTION`): opcodes
/// (bits 31:20) and operands (bits 19:10 and 9:0).
pub mod alu {
    /// No operation.
    pub const NOOP: u32 = 0x000;
    /// operand 1 (SRCA / SRCB) = operand 2.
    pub const LOAD: u32 = 0x080;
    /// operand 1 = !operand 2.
    pub const LOADINV: u32 = 0x480;
    /// operand 1 = 0.
    pub const LOAD0: u32 = 0x081;
    /// operand 1 = all ones.
    pub const LOAD1: u32 = 0x481;
    /// ACCU = SRCA + SRCB (CF: carry out).
    pub const ADD: u32 = 0x100;
    /// ACCU = SRCA - SRCB (CF: borrow).
    pub const SUB: u32 = 0x101;
    /// ACCU = SRCA & SRCB.
    pub const AND: u32 = 0x102;
    /// ACCU = SRCA | SRCB.
    pub const OR: u32 = 0x103;
    /// ACCU = SRCA ^ SRCB.
    pub const XOR: u32 = 0x104;
    /// operand 1 (a GPR) = operand 2.
    pub const STORE: u32 = 0x180;
    /// operand 1 (a GPR) = !operand 2.
    pub const STOREINV: u32 = 0x580;
    /// Operand: GPR `n` is `n` (0..=15).
    pub const SRCA: u32 = 0x20;
    /// Operand: the second source.
    pub const SRCB: u32 = 0x21;
    /// Operand: the accumulator.
    pub const ACCU: u32 = 0x31;
    /// Operand: the zero flag (all ones when set).
    pub const ZF: u32 = 0x32;
    /// Operand: the carry flag (all ones when set).
    pub const CF: u32 = 0x33;
    /// One ALU instruction.
    pub const fn op(opcode: u32, operand1: u32, operand2: u32) -> u32 {
        (opcode << 20) | ((operand1 & 0x3ff) << 10) | (operand2 & 0x3ff)
    }
}
/// MI_MATH header for `instructions` ALU instructions (1..=256).
pub const fn mi_math(instructions: u32) -> u32 {
    (0x1a << 23) | (instructions - 1)
}
