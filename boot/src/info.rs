//! [`BootInfo`]: what the loader told us, copied into fixed-size storage.

/// Most memory-map entries kept; firmware maps on real machines stay far below.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Longest kernel command line kept; longer lines are cut and flagged.
pub const MAX_CMDLINE: usize = 1024;

/// Which loader started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// QEMU `-kernel` (or another PVH loader) through the `.note.Xen` entry.
    Pvh,
    /// GRUB (or another Multiboot2 loader).
    Multiboot2,
}

impl BootProtocol {
    /// Short name for logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            BootProtocol::Pvh => "pvh",
            BootProtocol::Multiboot2 => "multiboot2",
        }
    }
}

/// Kind of a physical memory range, in E820 terms (which both PVH and
/// Multiboot2 use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM free for the monitor.
    Usable,
    /// Firmware or device memory; never touch.
    Reserved,
    /// ACPI tables; usable after they were read.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Known-bad RAM.
    Bad,
}

impl MemoryKind {
    /// Maps an E820 / Multiboot2 type number.
    pub const fn from_e820(kind: u32) -> Self {
        match kind {
            1 => MemoryKind::Usable,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Bad,
            _ => MemoryKind::Reserved,
        }
    }

    /// Short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            MemoryKind::Usable => "usable",
            MemoryKind::Reserved => "reserved",
            MemoryKind::AcpiReclaimable => "acpi",
            MemoryKind::AcpiNvs => "acpi-nvs",
            MemoryKind::Bad => "bad",
        }
    }
}

/// One physical memory range `[base, base + length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First physical byte.
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
    /// What the firmware says it is.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    const EMPTY: MemoryRegion = MemoryRegion {
        base: 0,
        length: 0,
        kind: MemoryKind::Reserved,
    };

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// A copy of the ACPI Root System Description Pointer (v1: 20 bytes, v2+: 36).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// The structure's bytes (the first `len` are valid).
    pub bytes: [u8; 36],
    /// Valid length: 20 or 36.
    pub len: usize,
}

impl Rsdp {
    /// Physical address of the RSDT (v1) table.
    pub fn rsdt_address(&self) -> u64 {
        u64::from(u32::from_le_bytes([
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        ]))
    }

    /// Physical address of the XSDT, when the RSDP is v2+ and gives one.
    pub fn xsdt_address(&self) -> Option<u64> {
        if self.len < 36 || self.bytes[15] < 2 {
            return None;
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.bytes[24..32]);
        match u64::from_le_bytes(raw) {
            0 => None,
            addr => Some(addr),
        }
    }

    /// Whether the signature and the v1 checksum are right.
    pub fn is_valid(&self) -> bool {
        &self.bytes[..8] == b"RSD PTR "
            && self.bytes[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }
}

/// Everything the kernel needs from the loader, owned by the monitor.
#[derive(Debug)]
pub struct BootInfo {
    /// Which loader started us.
    pub protocol: BootProtocol,
    memory: [MemoryRegion; MAX_MEMORY_REGIONS],
    memory_len: usize,
    /// Entries the loader gave beyond [`MAX_MEMORY_REGIONS`] (dropped).
    pub memory_dropped: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Whether the command line was longer than [`MAX_CMDLINE`] (cut).
    pub cmdline_truncated: bool,
    /// The ACPI RSDP, where the loader gave one.
    pub rsdp: Option<Rsdp>,
    /// Physical range of the loader's own structure (already copied from).
    pub loader_info: (u64, u64),
}

impl BootInfo {
    pub(crate) const fn new(protocol: BootProtocol) -> Self {
        BootInfo {
            protocol,
            memory: [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS],
            memory_len: 0,
            memory_dropped: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_truncated: false,
            rsdp: None,
            loader_info: (0, 0),
        }
    }

    pub(crate) fn push_region(&mut self, region: MemoryRegion) {
        if region.length == 0 {
            return;
        }
        if self.memory_len == MAX_MEMORY_REGIONS {
            self.memory_dropped += 1;
            return;
        }
        self.memory[self.memory_len] = region;
        self.memory_len += 1;
    }

    pub(crate) fn set_cmdline(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(MAX_CMDLINE);
        self.cmdline[..len].copy_from_slice(&bytes[..len]);
        self.cmdline_len = len;
        self.cmdline_truncated = bytes.len() > MAX_CMDLINE;
    }

    /// The memory map, in loader order.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.memory[..self.memory_len]
    }

    /// The kernel command line, as raw bytes (not necessarily UTF-8).
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }
}
