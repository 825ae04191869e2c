//! Boot entry of the gmig-rs monitor (ARCHITECTURE.md "Boot").
//!
//! One ELF image boots two ways:
//! - QEMU `-kernel` finds the PVH note (`.note.Xen`, type PHYS32_ENTRY) and
//!   enters [`entry`]'s 32-bit code with `ebx` pointing at an `hvm_start_info`;
//! - GRUB finds the Multiboot2 header and enters the same code with
//!   `eax = 0x36d76289` and `ebx` pointing at the Multiboot2 information.
//!
//! The 32-bit code builds identity page tables for the low 4 GiB (2 MiB
//! pages), switches to long mode and calls [`boot_rust_entry`], which copies
//! everything the kernel needs out of the loader's structures into a
//! [`BootInfo`] (fixed-size, no allocation) before anything can reuse that
//! memory, then jumps to the kernel's entry declared with [`entry_point!`].
//!
//! This crate owns no hardware after the jump: the kernel replaces the early
//! page tables and GDT with its own.
#![no_std]

mod entry;
mod info;
mod multiboot2;
mod pvh;

pub use info::{
    BootInfo, BootProtocol, MemoryKind, MemoryRegion, Rsdp, MAX_CMDLINE, MAX_MEMORY_REGIONS,
};

/// Physical address range of the monitor's image (from the linker script).
pub fn image_range() -> (u64, u64) {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    // Only the addresses of the linker symbols are taken; nothing is read.
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    (start, end)
}

/// Top and size of the boot stack the kernel keeps running on.
pub fn boot_stack() -> (u64, u64) {
    extern "C" {
        static boot_stack_bottom: u8;
        static boot_stack_top: u8;
    }
    let bottom = core::ptr::addr_of!(boot_stack_bottom) as u64;
    let top = core::ptr::addr_of!(boot_stack_top) as u64;
    (top, top - bottom)
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// Multiboot2 magic the loader leaves in `eax`.
const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;

/// First Rust code: called by the 64-bit stub with the loader's `eax`
/// and `ebx` (zero-extended).
#[no_mangle]
extern "C" fn boot_rust_entry(magic: u32, info_addr: u32) -> ! {
    let info = BOOT_INFO.call_once(|| {
        if magic == MULTIBOOT2_MAGIC {
            // SAFETY: the Multiboot2 loader put a valid information structure
            // at `info_addr`, identity mapped by the early page tables, and
            // nothing has written memory outside the image since.
            unsafe { multiboot2::parse(u64::from(info_addr)) }
        } else {
            // SAFETY: the only other way in is the PVH note, where `ebx`
            // holds the hvm_start_info address (checked by its magic).
            unsafe { pvh::parse(u64::from(info_addr)) }
        }
    });
    extern "Rust" {
        fn gmig_kernel_entry(info: &'static BootInfo) -> !;
    }
    // SAFETY: `gmig_kernel_entry` is defined by `entry_point!` in the kernel,
    // which type-checks the function it forwards to against this signature.
    unsafe { gmig_kernel_entry(info) }
}

/// Declares the kernel's entry function: `entry_point!(kernel_main)` where
/// `fn kernel_main(info: &'static BootInfo) -> !`.
#[macro_export]
macro_rules! entry_point {
    ($path:path) => {
        #[export_name = "gmig_kernel_entry"]
        fn __gmig_kernel_entry(info: &'static $crate::BootInfo) -> ! {
            let f: fn(&'static $crate::BootInfo) -> ! = $path;
            f(info)
        }
    };
}
