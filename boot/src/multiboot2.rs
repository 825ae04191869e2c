//! Multiboot2 information structure (Multiboot2 spec 1.0, section 3.6).

use crate::info::{BootInfo, BootProtocol, MemoryKind, MemoryRegion, Rsdp};

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;
/// Bigger than any structure GRUB builds; bounds the walk if the size is junk.
const MAX_INFO_SIZE: u64 = 1 << 20;

/// Reads a little-endian u32 at a physical address.
///
/// # Safety
/// `addr..addr + 4` must be mapped, readable memory.
unsafe fn read_u32(addr: u64) -> u32 {
    // SAFETY: the caller guarantees the 4 bytes are readable; unaligned read.
    unsafe { core::ptr::read_unaligned(addr as *const u32) }
}

/// # Safety
/// `addr..addr + 8` must be mapped, readable memory.
unsafe fn read_u64(addr: u64) -> u64 {
    // SAFETY: as for `read_u32`.
    unsafe { core::ptr::read_unaligned(addr as *const u64) }
}

/// Copies what the kernel needs out of the Multiboot2 information at `addr`.
///
/// # Safety
/// `addr` must be the identity-mapped address of a Multiboot2 information
/// structure, as the loader passes it in `ebx`.
pub(crate) unsafe fn parse(addr: u64) -> BootInfo {
    let mut info = BootInfo::new(BootProtocol::Multiboot2);
    // SAFETY: the structure starts with its u32 total size.
    let total = u64::from(unsafe { read_u32(addr) }).min(MAX_INFO_SIZE);
    info.loader_info = (addr, addr + total);
    let end = addr + total;
    let mut tag = addr + 8;
    while tag + 8 <= end {
        // SAFETY: `tag + 8 <= end`, inside the structure.
        let (kind, size) = unsafe { (read_u32(tag), u64::from(read_u32(tag + 4))) };
        if kind == TAG_END || size < 8 || tag + size > end {
            break;
        }
        let body = tag + 8;
        let body_len = size - 8;
        match kind {
            TAG_CMDLINE => {
                // SAFETY: the body lies inside the structure (checked above).
                let bytes =
                    unsafe { core::slice::from_raw_parts(body as *const u8, body_len as usize) };
                let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                info.set_cmdline(&bytes[..len]);
            }
            TAG_MEMORY_MAP if body_len >= 8 => {
                // SAFETY: inside the structure.
                let entry_size = u64::from(unsafe { read_u32(body) });
                if entry_size >= 24 {
                    let mut entry = body + 8;
                    while entry + 24 <= tag + size {
                        // SAFETY: `entry + 24` is inside this tag.
                        let (base, length, kind) =
                            unsafe { (read_u64(entry), read_u64(entry + 8), read_u32(entry + 16)) };
                        info.push_region(MemoryRegion {
                            base,
                            length,
                            kind: MemoryKind::from_e820(kind),
                        });
                        entry += entry_size;
                    }
                }
            }
            TAG_ACPI_OLD | TAG_ACPI_NEW => {
                let len = if kind == TAG_ACPI_NEW { 36 } else { 20 };
                if body_len >= len as u64 {
                    let mut rsdp = Rsdp {
                        bytes: [0; 36],
                        len,
                    };
                    // SAFETY: `len` bytes of the body are inside the structure.
                    let src = unsafe { core::slice::from_raw_parts(body as *const u8, len) };
                    rsdp.bytes[..len].copy_from_slice(src);
                    // Prefer the v2 copy when GRUB gives both.
                    if info.rsdp.is_none_or(|old| old.len < len) {
                        info.rsdp = Some(rsdp);
                    }
                }
            }
            _ => {}
        }
        tag += (size + 7) & !7;
    }
    info
}
