//! Bring-up: everything the monitor learns and owns about the machine, in
//! the order it is set up.

use boot::{BootInfo, MemoryKind};

use crate::acpi::{self, AcpiInfo, FirmwareMap};
use crate::cmdline::Options;
use crate::mem::paging::{AddressSpace, MapError};
use crate::mem::{FrameAllocator, FRAME_SIZE};
use crate::pci::{self, ConfigAccess, PciBus};
use crate::time::Calibration;
use crate::vgpus::{SetupError, VgpuManager};

/// Physical memory and the monitor's address space.
#[derive(Debug)]
pub struct Memory {
    pub frames: FrameAllocator,
    pub space: AddressSpace,
    /// Address of the unmapped page below the boot stack.
    pub stack_guard: u64,
}

impl FirmwareMap for Memory {
    fn map_firmware(&mut self, phys: u64, len: u64) -> Result<(), MapError> {
        // Firmware tables are read rarely and may sit next to device memory
        // in "reserved" ranges: map them like MMIO, which is always safe.
        self.space.map_mmio(&mut self.frames, phys, len).map(|_| ())
    }
}

/// The machine as the monitor sees it after bring-up.
#[derive(Debug)]
pub struct Platform {
    pub boot: &'static BootInfo,
    pub options: Options,
    pub calibration: Calibration,
    pub memory: Memory,
    pub acpi: AcpiInfo,
    pub pci: PciBus,
    pub vgpus: VgpuManager,
    /// Which code hashes pages (SSE2 or portable), chosen at bring-up.
    pub digest: crate::digest::DigestChoice,
    /// The NIC and TCP/IP, when `ip=` asks for them.
    pub net: Option<crate::net::Net>,
}

/// Why bring-up stopped.
#[derive(Debug)]
pub enum BringUpError {
    Frames(crate::mem::frames::FrameError),
    Paging(MapError),
    Gpu(SetupError),
    Net(crate::net::NetError),
}

impl core::fmt::Display for BringUpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BringUpError::Frames(e) => write!(f, "frame allocator: {e}"),
            BringUpError::Paging(e) => write!(f, "page tables: {e}"),
            BringUpError::Gpu(e) => write!(f, "GPU: {e}"),
            BringUpError::Net(e) => write!(f, "network: {e}"),
        }
    }
}

/// Sets up memory, ACPI, PCI, the vGPUs, the page digest and the network.
pub fn bring_up(
    boot: &'static BootInfo,
    options: Options,
    calibration: Calibration,
) -> Result<Platform, BringUpError> {
    let image = boot::image_range();
    let (stack_top, stack_size) = boot::boot_stack();
    let stack_guard = stack_top - stack_size;
    let reserved = [image];
    // SAFETY: the memory map comes from the loader, the early tables map
    // 0..4 GiB, and the image is the only usable RAM in use (the loader's
    // structures were copied into BootInfo, which lives in the image).
    let mut frames = unsafe { FrameAllocator::new(boot.memory_map(), &reserved) }
        .map_err(BringUpError::Frames)?;
    // SAFETY: as above; `stack_guard` is the lowest page of the boot stack.
    let space =
        unsafe { AddressSpace::build_and_load(&mut frames, boot.memory_map(), image, stack_guard) }
            .map_err(BringUpError::Paging)?;
    crate::arch::idt::set_stack_guard(stack_guard);
    let mut memory = Memory {
        frames,
        space,
        stack_guard,
    };
    let acpi = acpi::discover(boot.rsdp, &mut memory);
    let access = match acpi.ecam {
        Some(window) => {
            let len = (u64::from(window.end_bus - window.start_bus) + 1) << 20;
            match memory.space.map_mmio(&mut memory.frames, window.base, len) {
                Ok(_) => ConfigAccess::Ecam(window),
                Err(e) => {
                    defmt::warn!("cannot map ECAM ({}), using port 0xCF8", e);
                    ConfigAccess::Legacy
                }
            }
        }
        None => ConfigAccess::Legacy,
    };
    let pci = pci::enumerate(access);
    // The migration roles and the ring-3 guests make their vGPUs themselves.
    let count = match (options.mode, options.roles.role) {
        (crate::cmdline::Mode::Ring3, _) => 0,
        (_, crate::cmdline::Role::Local) => options.vgpus,
        _ => 0,
    };
    let mut vgpus = VgpuManager::bring_up(
        &mut memory,
        &pci,
        count,
        options.vgpu_type,
        usize::from(options.ppgtt_budget),
    )
    .map_err(BringUpError::Gpu)?;
    vgpus.gate.set_shader_policy(options.shaders);
    vgpus.set_sim_slowdown(options.gpu_slowdown);
    defmt::info!("report shaders={=str}", options.shaders.name());
    let digest = crate::digest::choose();
    let net = crate::net::bring_up(&mut memory, &pci, options.net).map_err(BringUpError::Net)?;
    Ok(Platform {
        boot,
        options,
        calibration,
        memory,
        acpi,
        pci,
        vgpus,
        digest,
        net,
    })
}

impl Platform {
    /// Logs the memory map summary and the PCI device list.
    pub fn log_summary(&self) {
        let map = self.boot.memory_map();
        let usable: u64 = map
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
            .map(|r| r.length)
            .sum();
        defmt::info!(
            "memory: {=u64} MiB usable in {=usize} regions, top {=u64:#x}, {=u64} frames free",
            usable >> 20,
            map.iter().filter(|r| r.kind == MemoryKind::Usable).count(),
            self.memory.frames.top(),
            self.memory.frames.free_frames(),
        );
        for r in map {
            defmt::info!(
                "memory: {=u64:#012x}..{=u64:#012x} {=u64} KiB {=str}",
                r.base,
                r.end(),
                r.length / 1024,
                r.kind.name()
            );
        }
        defmt::info!(
            "report memory_bytes={=u64} usable_bytes={=u64} free_bytes={=u64}",
            map.iter()
                .filter(|r| r.kind != MemoryKind::Reserved)
                .map(|r| r.length)
                .sum::<u64>(),
            usable,
            self.memory.frames.free_frames() * FRAME_SIZE
        );
        match self.acpi.ecam {
            Some(w) => defmt::info!(
                "acpi: revision {=u8}, {=u32} tables, MCFG ECAM at {=u64:#x} buses {=u8}..{=u8}",
                self.acpi.revision,
                self.acpi.tables,
                w.base,
                w.start_bus,
                w.end_bus
            ),
            None => defmt::info!(
                "acpi: rsdp {=bool}, {=u32} tables, no MCFG",
                self.acpi.rsdp_found,
                self.acpi.tables
            ),
        }
        defmt::info!(
            "pci: {=usize} functions via {=str}{=str}",
            self.pci.devices.len(),
            self.pci.access.name(),
            if self.pci.dropped > 0 {
                " (list full, some dropped)"
            } else {
                ""
            }
        );
        for d in &self.pci.devices {
            defmt::info!(
                "pci {=u8:02x}:{=u8:02x}.{=u8} [{=u16:04x}:{=u16:04x}] class {=u8:02x}.{=u8:02x}.{=u8:02x} {=str} ({=str})",
                d.bdf.bus,
                d.bdf.device,
                d.bdf.function,
                d.vendor,
                d.device,
                d.class,
                d.subclass,
                d.prog_if,
                d.class_name(),
                d.vendor_name()
            );
            for (i, bar) in d.bars.iter().enumerate().filter(|(_, b)| b.size() > 0) {
                defmt::info!(
                    "pci {=u8:02x}:{=u8:02x}.{=u8}   bar{=usize} {=str} {=u64:#x} size {=u64:#x}",
                    d.bdf.bus,
                    d.bdf.device,
                    d.bdf.function,
                    i,
                    bar.kind(),
                    bar.address(),
                    bar.size()
                );
            }
        }
    }
}
