//! Just enough ACPI to find PCI Express configuration space: RSDP (from the
//! loader or the BIOS areas), RSDT/XSDT, and the MCFG table (PCI Firmware
//! Specification 3.0, table 4-3). Tables are checksummed before use.

use boot::Rsdp;

use crate::mem::paging::MapError;

/// Maps firmware tables before they are read.
pub trait FirmwareMap {
    /// Makes `[phys, phys + len)` readable.
    fn map_firmware(&mut self, phys: u64, len: u64) -> Result<(), MapError>;
}

/// One ECAM window from MCFG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct EcamWindow {
    /// Physical base of the window (bus `start_bus` at offset 0).
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

/// What ACPI told us.
#[derive(Clone, Copy, Debug, Default, defmt::Format)]
pub struct AcpiInfo {
    /// Physical address of the RSDP found, if any.
    pub rsdp_found: bool,
    /// ACPI revision of the RSDP (0 = 1.0, 2 = 2.0+).
    pub revision: u8,
    /// The segment-0 ECAM window, if MCFG has one.
    pub ecam: Option<EcamWindow>,
    /// Tables seen in the RSDT/XSDT.
    pub tables: u32,
}

const SDT_HEADER_LEN: u64 = 36;

/// # Safety
/// `[addr, addr + N)` must be mapped and readable.
unsafe fn read_bytes<const N: usize>(addr: u64) -> [u8; N] {
    // SAFETY: the caller guarantees the bytes are mapped.
    unsafe { core::ptr::read_unaligned(addr as *const [u8; N]) }
}

fn checksum_ok(addr: u64, len: u64) -> bool {
    // SAFETY: callers map `[addr, addr + len)` before asking.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

/// Looks for "RSD PTR " on 16-byte boundaries in the EBDA's first KiB and in
/// 0xE0000..0x100000 (ACPI 6.4, 5.2.5.1). Low memory is always mapped.
fn scan_for_rsdp() -> Option<Rsdp> {
    // SAFETY: 0x40E (the EBDA segment in the BIOS data area) lies in low
    // memory, which the monitor maps.
    let ebda = u64::from(u16::from_le_bytes(unsafe { read_bytes::<2>(0x40e) })) << 4;
    let ranges = [(ebda, ebda + 1024), (0xe0000, 0x100000)];
    for (start, end) in ranges {
        if start == 0 || end > 0x100000 {
            continue;
        }
        let mut addr = start;
        while addr + 36 <= end {
            // SAFETY: inside low memory, mapped.
            let bytes: [u8; 36] = unsafe { read_bytes(addr) };
            let candidate = Rsdp {
                bytes,
                len: if bytes[15] >= 2 { 36 } else { 20 },
            };
            if candidate.is_valid() {
                return Some(candidate);
            }
            addr += 16;
        }
    }
    None
}

/// Finds the ECAM window, mapping tables through `map`.
pub fn discover(loader_rsdp: Option<Rsdp>, map: &mut dyn FirmwareMap) -> AcpiInfo {
    let mut info = AcpiInfo::default();
    let Some(rsdp) = loader_rsdp.filter(Rsdp::is_valid).or_else(scan_for_rsdp) else {
        return info;
    };
    info.rsdp_found = true;
    info.revision = rsdp.bytes[15];
    let (root, entry_size) = match rsdp.xsdt_address() {
        Some(xsdt) => (xsdt, 8u64),
        None => (rsdp.rsdt_address(), 4u64),
    };
    let Some(root_len) = table_length(root, map) else {
        return info;
    };
    let entries = (root_len - SDT_HEADER_LEN) / entry_size;
    info.tables = entries as u32;
    for i in 0..entries {
        let slot = root + SDT_HEADER_LEN + i * entry_size;
        // SAFETY: `table_length` mapped and checksummed the whole root table.
        let table = unsafe {
            if entry_size == 8 {
                u64::from_le_bytes(read_bytes::<8>(slot))
            } else {
                u64::from(u32::from_le_bytes(read_bytes::<4>(slot)))
            }
        };
        if map.map_firmware(table, SDT_HEADER_LEN).is_err() {
            continue;
        }
        // SAFETY: the header was just mapped.
        let signature: [u8; 4] = unsafe { read_bytes(table) };
        if &signature == b"MCFG" {
            info.ecam = parse_mcfg(table, map);
        }
    }
    info
}

/// Maps a table, checks its checksum, returns its length.
fn table_length(addr: u64, map: &mut dyn FirmwareMap) -> Option<u64> {
    map.map_firmware(addr, SDT_HEADER_LEN).ok()?;
    // SAFETY: the header was just mapped.
    let len = u64::from(u32::from_le_bytes(unsafe { read_bytes::<4>(addr + 4) }));
    if !(SDT_HEADER_LEN..=(1 << 20)).contains(&len) {
        return None;
    }
    map.map_firmware(addr, len).ok()?;
    checksum_ok(addr, len).then_some(len)
}

fn parse_mcfg(addr: u64, map: &mut dyn FirmwareMap) -> Option<EcamWindow> {
    let len = table_length(addr, map)?;
    // Header, 8 reserved bytes, then 16-byte allocation entries.
    let mut entry = addr + SDT_HEADER_LEN + 8;
    while entry + 16 <= addr + len {
        // SAFETY: inside the mapped, checksummed table.
        let raw: [u8; 16] = unsafe { read_bytes(entry) };
        let window = EcamWindow {
            base: u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]),
            segment: u16::from_le_bytes([raw[8], raw[9]]),
            start_bus: raw[10],
            end_bus: raw[11],
        };
        if window.segment == 0 && window.end_bus >= window.start_bus {
            return Some(window);
        }
        entry += 16;
    }
    None
}
