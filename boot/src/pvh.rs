//! PVH boot: `hvm_start_info` (Xen public header `arch-x86/hvm/start_info.h`).

use crate::info::{BootInfo, BootProtocol, MemoryKind, MemoryRegion, Rsdp};

const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Offsets in `hvm_start_info`.
const OFF_VERSION: u64 = 4;
const OFF_CMDLINE: u64 = 24;
const OFF_RSDP: u64 = 32;
const OFF_MEMMAP: u64 = 40;
const OFF_MEMMAP_ENTRIES: u64 = 48;
const MEMMAP_ENTRY_SIZE: u64 = 24;

/// # Safety
/// `addr..addr + size_of::<T>()` must be mapped, readable memory.
unsafe fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the caller guarantees readability; unaligned read.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// Copies what the kernel needs out of the PVH start info at `addr`.
///
/// # Safety
/// `addr` must be the identity-mapped address the PVH loader put in `ebx`.
pub(crate) unsafe fn parse(addr: u64) -> BootInfo {
    let mut info = BootInfo::new(BootProtocol::Pvh);
    // SAFETY: the start info is at least 56 bytes (version 1).
    let magic: u32 = unsafe { read(addr) };
    if magic != START_INFO_MAGIC {
        // Unknown loader: an empty map makes the kernel stop with a message.
        return info;
    }
    info.loader_info = (addr, addr + 56);
    // SAFETY: fields of the start info, version 0 part.
    let (version, cmdline, rsdp): (u32, u64, u64) = unsafe {
        (
            read(addr + OFF_VERSION),
            read(addr + OFF_CMDLINE),
            read(addr + OFF_RSDP),
        )
    };
    if cmdline != 0 {
        // SAFETY: the loader gives a NUL-terminated string; the walk is bounded.
        let bytes =
            unsafe { core::slice::from_raw_parts(cmdline as *const u8, crate::MAX_CMDLINE + 1) };
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        info.set_cmdline(&bytes[..len]);
    }
    if rsdp != 0 {
        // SAFETY: the loader gives the physical address of an RSDP; v1 is 20 bytes.
        let revision: u8 = unsafe { read(rsdp + 15) };
        let len = if revision >= 2 { 36 } else { 20 };
        let mut copy = Rsdp {
            bytes: [0; 36],
            len,
        };
        // SAFETY: `len` bytes of the RSDP are readable.
        let src = unsafe { core::slice::from_raw_parts(rsdp as *const u8, len) };
        copy.bytes[..len].copy_from_slice(src);
        info.rsdp = Some(copy);
    }
    if version >= 1 {
        // SAFETY: version 1 adds the memory map fields.
        let (map, entries): (u64, u32) =
            unsafe { (read(addr + OFF_MEMMAP), read(addr + OFF_MEMMAP_ENTRIES)) };
        for i in 0..u64::from(entries) {
            let entry = map + i * MEMMAP_ENTRY_SIZE;
            // SAFETY: each entry is 24 bytes: addr, size, type, reserved.
            let (base, length, kind): (u64, u64, u32) =
                unsafe { (read(entry), read(entry + 8), read(entry + 16)) };
            info.push_region(MemoryRegion {
                base,
                length,
                kind: MemoryKind::from_e820(kind),
            });
        }
    }
    info
}
