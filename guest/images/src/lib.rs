//! The runtime of the ring-3 guest images (ARCHITECTURE.md "Ring-3 guest
//! runtime"): start-up from the boot block, the system calls, and
//! [`RingPlatform`], the `guest::Platform` of a deprivileged guest.
//!
//! A ring-3 guest has what a virtual machine has and nothing more: its
//! RAM, which it reads and writes with plain loads and stores, and its
//! virtual BAR0 at [`guest::abi::BAR0_VA`], which is not mapped, so each
//! volatile load or store there faults into the monitor, which decodes the
//! instruction and emulates it through the guest's vGPU. Waiting for the
//! GPU, logging, frame reports and the end are system calls (`int 0x80`,
//! [`guest::abi::syscall`]). The layout of everything is `guest::abi`'s.
//!
//! Every image is a `no_std`, `no_main` binary of this crate that names
//! its image kind and main function with [`entry!`].
#![no_std]

pub mod platform;
pub mod sys;

pub use platform::{RingError, RingPlatform};

use guest::abi::{exit_code, BootBlock, Image, BOOT_BLOCK_BYTES, BOOT_BLOCK_VA};

/// Declares the image's entry point: `_start` (where the monitor starts
/// the guest) aligns the stack and calls [`start`] with `$image` and
/// `$main`, whose result is the guest's exit code.
#[macro_export]
macro_rules! entry {
    ($image:expr, $main:path) => {
        core::arch::global_asm!(
            ".section .text._start, \"ax\"",
            ".global _start",
            "_start:",
            "and rsp, -16",
            "call {entry}",
            "ud2",
            entry = sym gmig_guest_entry,
        );

        extern "C" fn gmig_guest_entry() -> ! {
            $crate::start($image, $main)
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::panicked(info)
        }
    };
}

/// Reads the boot block, runs `main` if it describes a program of `image`,
/// and exits with its result.
pub fn start(image: Image, main: fn(&BootBlock) -> u64) -> ! {
    let mut bytes = [0u8; BOOT_BLOCK_BYTES];
    // SAFETY: the monitor maps the boot block page read-only at
    // BOOT_BLOCK_VA for every guest (guest::abi); nothing writes it.
    unsafe {
        core::ptr::copy_nonoverlapping(
            BOOT_BLOCK_VA as *const u8,
            bytes.as_mut_ptr(),
            BOOT_BLOCK_BYTES,
        )
    };
    match BootBlock::from_bytes(&bytes, image) {
        Some(block) => sys::exit(main(&block)),
        None => {
            sys::log("the boot block does not describe a program of this image");
            sys::exit(exit_code::BAD_BOOT_BLOCK)
        }
    }
}

/// The panic path: the message on the monitor's log, then
/// [`exit_code::PANIC`].
pub fn panicked(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = sys::Line::new();
    let _ = core::fmt::write(&mut line, format_args!("panic: {}", info.message()));
    if let Some(at) = info.location() {
        let _ = core::fmt::write(&mut line, format_args!(" at {}:{}", at.file(), at.line()));
    }
    line.send();
    sys::exit(exit_code::PANIC)
}
