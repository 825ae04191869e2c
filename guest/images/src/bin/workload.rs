//! The workload image: boots the guest's vGPU driver the GVT-g way
//! (PVINFO, ballooning, GGTT entries through the BAR0 window, rings) and
//! runs the boot block's workload, reporting each frame, until its frames
//! are done or the monitor asks it to finish, then checks every data page
//! it predicts.
#![no_std]
#![no_main]

use guest::abi::{exit_code, BootBlock, Image, Program};
use guest::{Driver, Workload};
use guest_images::{logf, sys, RingPlatform};

guest_images::entry!(Image::Workload, main);

fn main(boot: &BootBlock) -> u64 {
    let Program::Workload { kind, seed, frames } = boot.program else {
        return exit_code::BAD_BOOT_BLOCK;
    };
    let (first, pages) = boot.driver_ram();
    let mut p = RingPlatform::new(first, pages);
    let booted = Driver::probe(&mut p, first, pages)
        .map_err(guest::WorkloadError::Driver)
        .and_then(|driver| Workload::boot(&mut p, driver, kind, seed));
    let mut w = match booted {
        Ok(w) => w,
        Err(e) => {
            logf!("{kind} did not boot: {e}");
            return exit_code::WORKLOAD_FAILED;
        }
    };
    logf!(
        "{kind} booted on {pages} pages, {} page writes a frame",
        w.writes_per_frame()
    );
    let mut done = 0;
    while frames == 0 || done < frames {
        let finish = match w.step(&mut p) {
            Ok(r) => sys::frame(r.frame, r.checksum, r.submissions),
            Err(e) => {
                logf!("{kind} frame {done}: {e}");
                return exit_code::WORKLOAD_FAILED;
            }
        };
        done += 1;
        if finish {
            break;
        }
    }
    match w.check_all(&mut p) {
        Ok(checked) => {
            logf!(
                "{kind}: {done} frames, {checked} data pages checked, checksum {:#x}",
                w.checksum()
            );
            exit_code::SUCCESS
        }
        Err(e) => {
            logf!("{kind} final check: {e}");
            exit_code::WORKLOAD_FAILED
        }
    }
}
