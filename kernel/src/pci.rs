//! PCI enumeration: configuration access through ECAM (from ACPI MCFG) or,
//! without MCFG, the legacy 0xCF8/0xCFC ports; a walk from bus 0 through
//! PCI-to-PCI bridges; BAR sizing. The device list is fixed-size.

use core::fmt;

use x86_64::instructions::port::Port;

use crate::acpi::EcamWindow;

/// Most functions the monitor records.
pub const MAX_DEVICES: usize = 64;

/// Bus/device/function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// How configuration space is reached.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum ConfigAccess {
    /// Memory-mapped (PCIe ECAM), already mapped uncached.
    Ecam(EcamWindow),
    /// Port I/O through 0xCF8/0xCFC (first 256 bytes only).
    Legacy,
}

impl ConfigAccess {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigAccess::Ecam(_) => "ecam",
            ConfigAccess::Legacy => "port-cf8",
        }
    }

    fn ecam_address(w: &EcamWindow, bdf: Bdf, offset: u16) -> Option<u64> {
        if bdf.bus < w.start_bus || bdf.bus > w.end_bus {
            return None;
        }
        let bus = u64::from(bdf.bus - w.start_bus);
        Some(
            w.base
                + (bus << 20
                    | u64::from(bdf.device) << 15
                    | u64::from(bdf.function) << 12
                    | u64::from(offset)),
        )
    }

    fn legacy_address(bdf: Bdf, offset: u16) -> u32 {
        0x8000_0000
            | u32::from(bdf.bus) << 16
            | u32::from(bdf.device) << 11
            | u32::from(bdf.function) << 8
            | u32::from(offset & 0xfc)
    }

    /// Reads a dword of configuration space (`offset` dword aligned).
    pub fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self {
            ConfigAccess::Ecam(w) => match Self::ecam_address(w, bdf, offset) {
                // SAFETY: the ECAM window is mapped uncached; config reads
                // have no side effects on the devices we enumerate.
                Some(addr) => unsafe { core::ptr::read_volatile(addr as *const u32) },
                None => u32::MAX,
            },
            ConfigAccess::Legacy => {
                // SAFETY: 0xCF8/0xCFC are the PCI configuration mechanism #1
                // ports; only the monitor uses them, with interrupts off.
                x86_64::instructions::interrupts::without_interrupts(|| unsafe {
                    Port::<u32>::new(0xcf8).write(Self::legacy_address(bdf, offset));
                    Port::<u32>::new(0xcfc).read()
                })
            }
        }
    }

    /// Writes a dword of configuration space.
    pub fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        match self {
            ConfigAccess::Ecam(w) => {
                if let Some(addr) = Self::ecam_address(w, bdf, offset) {
                    // SAFETY: as in `read32`; callers write only registers
                    // they own (BARs during sizing, the command register).
                    unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
                }
            }
            ConfigAccess::Legacy => {
                // SAFETY: as in `read32`.
                x86_64::instructions::interrupts::without_interrupts(|| unsafe {
                    Port::<u32>::new(0xcf8).write(Self::legacy_address(bdf, offset));
                    Port::<u32>::new(0xcfc).write(value);
                })
            }
        }
    }
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Bar {
    /// Not implemented.
    None,
    /// I/O ports.
    Io { port: u32, size: u32 },
    /// Memory (32 or 64-bit decoder).
    Memory {
        address: u64,
        size: u64,
        is_64bit: bool,
        prefetchable: bool,
    },
}

impl Bar {
    /// Kind for logs: "io", "mem32", "mem64".
    pub fn kind(&self) -> &'static str {
        match self {
            Bar::None => "none",
            Bar::Io { .. } => "io",
            Bar::Memory {
                is_64bit: false, ..
            } => "mem32",
            Bar::Memory { is_64bit: true, .. } => "mem64",
        }
    }

    /// Base address (port or physical address).
    pub fn address(&self) -> u64 {
        match *self {
            Bar::None => 0,
            Bar::Io { port, .. } => u64::from(port),
            Bar::Memory { address, .. } => address,
        }
    }

    /// Decoded size in bytes.
    pub fn size(&self) -> u64 {
        match *self {
            Bar::None => 0,
            Bar::Io { size, .. } => u64::from(size),
            Bar::Memory { size, .. } => size,
        }
    }

    /// Base and size of a memory BAR the firmware assigned (address not 0).
    pub fn memory(&self) -> Option<(u64, u64)> {
        match *self {
            Bar::Memory { address, size, .. } if address != 0 => Some((address, size)),
            _ => None,
        }
    }
}

/// One PCI function.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct Device {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    /// BARs of a type-0 header (bridges have two, the rest read `None`).
    pub bars: [Bar; 6],
}

impl Device {
    /// Human name of the class.
    pub fn class_name(&self) -> &'static str {
        match (self.class, self.subclass) {
            (0x01, 0x06) => "SATA controller",
            (0x01, 0x08) => "NVMe controller",
            (0x01, _) => "storage controller",
            (0x02, 0x00) => "Ethernet controller",
            (0x02, _) => "network controller",
            (0x03, 0x00) => "VGA controller",
            (0x03, _) => "display controller",
            (0x04, _) => "multimedia controller",
            (0x06, 0x00) => "host bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x06, 0x04) => "PCI bridge",
            (0x06, _) => "bridge",
            (0x0c, 0x03) => "USB controller",
            (0x0c, 0x05) => "SMBus controller",
            (0x0c, _) => "serial bus controller",
            _ => "device",
        }
    }

    /// Short vendor name where well known.
    pub fn vendor_name(&self) -> &'static str {
        match self.vendor {
            0x8086 => "Intel",
            0x1af4 => "Red Hat (virtio)",
            0x1b36 => "Red Hat (QEMU)",
            0x1234 => "QEMU",
            0x10ec => "Realtek",
            _ => "unknown vendor",
        }
    }
}

/// The enumerated functions.
#[derive(Debug)]
pub struct PciBus {
    pub access: ConfigAccess,
    pub devices: heapless::Vec<Device, MAX_DEVICES>,
    /// Functions found beyond [`MAX_DEVICES`] (not recorded).
    pub dropped: usize,
}

const COMMAND: u16 = 0x04;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const COMMAND_INTX_DISABLE: u32 = 1 << 10;
const BAR0: u16 = 0x10;

impl ConfigAccess {
    /// Lets a polled DMA device work: memory decoding and bus mastering
    /// on, its legacy interrupt line off (the monitor polls, and an
    /// unhandled level interrupt must not reach the CPU).
    pub fn enable_polled_dma(&self, bdf: Bdf) {
        let command = self.read32(bdf, COMMAND) & 0xffff;
        self.write32(
            bdf,
            COMMAND,
            command | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE,
        );
    }
}

/// Sizes the BARs of a type-0 function, with decoding off meanwhile so
/// that the all-ones probe never claims addresses.
fn size_bars(access: &ConfigAccess, bdf: Bdf, count: usize) -> [Bar; 6] {
    let mut bars = [Bar::None; 6];
    let command = access.read32(bdf, COMMAND);
    access.write32(bdf, COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
    let mut i = 0;
    while i < count {
        let offset = BAR0 + 4 * i as u16;
        let original = access.read32(bdf, offset);
        access.write32(bdf, offset, u32::MAX);
        let probe = access.read32(bdf, offset);
        access.write32(bdf, offset, original);
        if original & 1 == 1 {
            let mask = probe & !0x3;
            if mask != 0 {
                bars[i] = Bar::Io {
                    port: original & !0x3,
                    size: (!mask).wrapping_add(1) & 0xffff,
                };
            }
            i += 1;
            continue;
        }
        let is_64bit = (original >> 1) & 0x3 == 0x2;
        let prefetchable = original & 0x8 != 0;
        let (address, mask) = if is_64bit && i + 1 < count {
            let high_offset = offset + 4;
            let high = access.read32(bdf, high_offset);
            access.write32(bdf, high_offset, u32::MAX);
            let high_probe = access.read32(bdf, high_offset);
            access.write32(bdf, high_offset, high);
            (
                u64::from(high) << 32 | u64::from(original & !0xf),
                u64::from(high_probe) << 32 | u64::from(probe & !0xf),
            )
        } else {
            (
                u64::from(original & !0xf),
                0xffff_ffff_0000_0000 | u64::from(probe & !0xf),
            )
        };
        if mask & 0xffff_ffff != 0 || (is_64bit && mask >> 32 != 0) {
            bars[i] = Bar::Memory {
                address,
                size: (!mask).wrapping_add(1),
                is_64bit,
                prefetchable,
            };
        }
        i += if is_64bit { 2 } else { 1 };
    }
    access.write32(bdf, COMMAND, command);
    bars
}

/// Walks the hierarchy from bus 0.
pub fn enumerate(access: ConfigAccess) -> PciBus {
    let mut bus = PciBus {
        access,
        devices: heapless::Vec::new(),
        dropped: 0,
    };
    let mut visited = [false; 256];
    scan_bus(&mut bus, 0, &mut visited);
    bus
}

fn scan_bus(pci: &mut PciBus, bus: u8, visited: &mut [bool; 256]) {
    if core::mem::replace(&mut visited[bus as usize], true) {
        return; // A bridge loop in broken firmware must not recurse forever.
    }
    for device in 0..32u8 {
        let first = Bdf {
            bus,
            device,
            function: 0,
        };
        if pci.access.read32(first, 0) & 0xffff == 0xffff {
            continue;
        }
        let multi = (pci.access.read32(first, 0x0c) >> 16) & 0x80 != 0;
        for function in 0..if multi { 8 } else { 1 } {
            let bdf = Bdf {
                bus,
                device,
                function,
            };
            let id = pci.access.read32(bdf, 0);
            if id & 0xffff == 0xffff {
                continue;
            }
            let class_reg = pci.access.read32(bdf, 0x08);
            let header_type = (pci.access.read32(bdf, 0x0c) >> 16) & 0x7f;
            let bar_count = match header_type {
                0 => 6,
                1 => 2,
                _ => 0,
            };
            let dev = Device {
                bdf,
                vendor: id as u16,
                device: (id >> 16) as u16,
                class: (class_reg >> 24) as u8,
                subclass: (class_reg >> 16) as u8,
                prog_if: (class_reg >> 8) as u8,
                revision: class_reg as u8,
                bars: size_bars(&pci.access, bdf, bar_count),
            };
            if pci.devices.push(dev).is_err() {
                pci.dropped += 1;
            }
            if header_type == 1 {
                let secondary = (pci.access.read32(bdf, 0x18) >> 8) as u8;
                if secondary != 0 {
                    scan_bus(pci, secondary, visited);
                }
            }
        }
    }
}
