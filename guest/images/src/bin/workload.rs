//! The workload image: boots the guest's vGPU driver the GVT-g way
//! (PVINFO, ballooning, GGTT entries through the BAR0 window, rings) and
//! runs the boot block's workload, reporting each frame, until its frames
//! are done or the monitor asks it to finish, then checks every data page
//! it predicts; or (`Program::Busy`) keeps its blitter busy for the vGPU
//! scheduler's fairness run.
#![no_std]
#![no_main]

use core::arch::x86_64::_rdtsc;

use gpu::encode;
use gpu::engine::Engine;
use guest::abi::{busy_depth, exit_code, BootBlock, Image, Program, BUSY_DEPTH};
use guest::content::PAGE;
use guest::driver::DATA_FIRST;
use guest::{Driver, Platform, Workload};
use guest_images::{logf, sys, RingPlatform};

guest_images::entry!(Image::Workload, main);

fn main(boot: &BootBlock) -> u64 {
    if let Program::Busy { pages, until_tsc } = boot.program {
        return busy(boot, pages, until_tsc);
    }
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

/// The colour of fill `n` (never 0, which unwritten RAM reads as).
fn busy_colour(n: u64) -> u32 {
    0x8000_0000 | (n as u32 & 0x7fff_ffff)
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed in ring 3 (the monitor leaves CR4.TSD
    // clear) and has no memory effects.
    unsafe { _rdtsc() }
}

/// The fills queued and not yet seen done, oldest first: (fence, fill).
struct Outstanding {
    fills: [(u32, u64); BUSY_DEPTH],
    first: usize,
    len: usize,
}

impl Outstanding {
    fn push(&mut self, fill: (u32, u64)) {
        self.fills[(self.first + self.len) % BUSY_DEPTH] = fill;
        self.len += 1;
    }
    fn oldest(&self) -> Option<(u32, u64)> {
        (self.len > 0).then(|| self.fills[self.first])
    }
    fn pop(&mut self) {
        self.first = (self.first + 1) % BUSY_DEPTH;
        self.len -= 1;
    }
}

/// `Program::Busy`: fills of `fill_pages` pages from the first data page,
/// `busy_depth` of them queued at a time, until the TSC reads `until_tsc`.
fn busy(boot: &BootBlock, fill_pages: u64, until_tsc: u64) -> u64 {
    let (first, pages) = boot.driver_ram();
    let mut p = RingPlatform::new(first, pages);
    let booted = Driver::probe(&mut p, first, pages).and_then(|mut d| {
        d.boot(&mut p)?;
        Ok(d)
    });
    let mut d = match booted {
        Ok(d) => d,
        Err(e) => {
            logf!("busy did not boot: {e}");
            return exit_code::WORKLOAD_FAILED;
        }
    };
    // One blit of `fill_pages` rows of a page each (1024 pixels of 4
    // bytes): the pages must be contiguous in GM (all in the aperture).
    let dst = d.gm(DATA_FIRST);
    let last = DATA_FIRST + fill_pages.saturating_sub(1);
    let contiguous = d.gm(last) == dst + (last - DATA_FIRST) * PAGE as u64;
    if fill_pages == 0 || last >= pages || !contiguous {
        logf!("busy: {fill_pages} pages a fill do not fit");
        return exit_code::BAD_BOOT_BLOCK;
    }
    let rows = fill_pages as u32;
    let depth = busy_depth(fill_pages);
    let mut outstanding = Outstanding {
        fills: [(0, 0); BUSY_DEPTH],
        first: 0,
        len: 0,
    };
    let (mut queued, mut done, mut checksum) = (0u64, 0u64, 0u64);
    let mut complete = |n: u64, done: &mut u64| {
        checksum = checksum.rotate_left(5) ^ u64::from(busy_colour(n));
        *done += 1;
        sys::frame(n, checksum, 1);
    };
    while rdtsc() < until_tsc {
        while outstanding.len < depth {
            let fill = encode::color_blt(dst, PAGE as u32, 0, 0, 1024, rows, busy_colour(queued));
            match d.queue(&mut p, Engine::Blitter, &fill) {
                Ok(fence) => {
                    outstanding.push((fence, queued));
                    queued += 1;
                }
                Err(e) => {
                    logf!("busy: fill {queued}: {e}");
                    return exit_code::WORKLOAD_FAILED;
                }
            }
        }
        while let Some((fence, n)) = outstanding.oldest() {
            match d.fence_reached(&mut p, Engine::Blitter, fence) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    logf!("busy: {e}");
                    return exit_code::WORKLOAD_FAILED;
                }
            }
            outstanding.pop();
            complete(n, &mut done);
        }
        // The others run; the GPU works through the queue meanwhile.
        sys::yield_now();
    }
    if !sys::wait() {
        logf!("busy: the vGPU stopped after {done} of {queued} fills");
        return exit_code::WORKLOAD_FAILED;
    }
    while let Some((_, n)) = outstanding.oldest() {
        outstanding.pop();
        complete(n, &mut done);
    }
    // The last fill covered every page: its colour at both ends.
    let want = busy_colour(queued.wrapping_sub(1));
    for (page, offset) in [(DATA_FIRST, 0), (last, PAGE - 4)] {
        let mut b = [0u8; 4];
        let got = p
            .ram_read(d.page(page), offset, &mut b)
            .map(|()| u32::from_le_bytes(b));
        if got != Ok(want) {
            logf!("busy: page {page} holds {got:?}, not {want:#x}");
            return exit_code::WORKLOAD_FAILED;
        }
    }
    logf!("busy: {done} fills of {fill_pages} pages, checksum {checksum:#x}");
    exit_code::SUCCESS
}
