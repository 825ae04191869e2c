//! Which code hashes pages in the monitor.
//!
//! Two implementations give the same xxh3-64 digest: `xxhash-rust`'s
//! portable code, which this soft-float target compiles to scalar
//! instructions, and [`migrate::xxh3_sse2`], which runs the stripe loop on
//! SSE2 once the monitor has enabled SSE ([`crate::arch::cpu::enable_sse`]).
//! At boot the monitor times both over the same in-cache pages and keeps
//! the faster: SSE2 on hardware; under QEMU TCG, which emulates SSE
//! instructions far more slowly than plain integer ones, the portable code.
//! The choice and both timings go to the run report.

use migrate::digest::xxh3_portable;
use migrate::page::{PageBuf, PAGE_SIZE};

/// The boot-time choice and what it was based on.
#[derive(Clone, Copy, Debug)]
pub struct DigestChoice {
    /// The SSE2 path hashes pages from now on.
    pub sse2: bool,
    /// TSC cycles per 4 KiB page of each path.
    pub sse2_cycles: u64,
    pub portable_cycles: u64,
}

const PAGES: usize = 16;
const ROUNDS: u64 = 4;

/// Pages to time the two paths on (and for the self-test to compare them).
static SAMPLE: spin::Mutex<[PageBuf; PAGES]> = spin::Mutex::new([[0; PAGE_SIZE]; PAGES]);

/// Runs `f` on the sample pages: a fixed pseudo-random pattern, page 0 all
/// zero.
pub fn with_sample_pages<R>(f: impl FnOnce(&[PageBuf; PAGES]) -> R) -> R {
    let mut pages = SAMPLE.lock();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for page in pages.iter_mut().skip(1) {
        for b in page.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    f(&pages)
}

fn cycles_per_page(pages: &[PageBuf; PAGES], hash: impl Fn(&PageBuf) -> u64) -> u64 {
    let start = crate::arch::cpu::rdtsc();
    let mut acc = 0;
    for _ in 0..ROUNDS {
        for page in pages.iter() {
            acc ^= hash(core::hint::black_box(page));
        }
    }
    core::hint::black_box(acc);
    (crate::arch::cpu::rdtsc() - start) / (ROUNDS * PAGES as u64)
}

/// Enables SSE, times both paths and makes the faster the digest's.
pub fn choose() -> DigestChoice {
    crate::arch::cpu::enable_sse();
    // SAFETY: SSE was enabled just above on the monitor's only CPU.
    let sse2 = |p: &PageBuf| unsafe { migrate::xxh3_sse2::xxh3_page(p) };
    let (sse2_cycles, portable_cycles) = with_sample_pages(|pages| {
        // Warm both up, then time them.
        let _ = (
            cycles_per_page(pages, sse2),
            cycles_per_page(pages, xxh3_portable),
        );
        (
            cycles_per_page(pages, sse2),
            cycles_per_page(pages, xxh3_portable),
        )
    });
    let choice = DigestChoice {
        sse2: sse2_cycles < portable_cycles,
        sse2_cycles,
        portable_cycles,
    };
    if choice.sse2 {
        // SAFETY: SSE is enabled on the only CPU and the monitor keeps
        // nothing in XMM registers.
        unsafe { migrate::xxh3_sse2::enable() };
    }
    defmt::info!(
        "report digest_path={=str} digest_sse2_cycles_per_page={=u64} digest_portable_cycles_per_page={=u64}",
        if choice.sse2 { "sse2" } else { "portable" },
        choice.sse2_cycles,
        choice.portable_cycles
    );
    choice
}
