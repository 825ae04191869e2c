//! Encoders for the commands the software GPU executes (header layouts
//! from Mesa's genxml and the PRM's blitter chapter, as in [`crate::sim`]):
//! what tests, benchmarks and the monitor's own workloads submit. Every
//! address is a GGTT address (the "use global GTT" bit is set).

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
