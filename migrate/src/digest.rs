//! Page digests: the chosen one (xxh3-64) and the two measured against it
//! (FNV-1a 64 and gMig's 256-bit XOR fold).
//!
//! # Choice
//! `cargo xtask bench` measures, in one run over a 256 MiB set of 4 KiB pages:
//! xxh3-64, FNV-1a 64, gMig's 256-bit XOR fold and memcpy. xxh3-64 is chosen:
//! it runs at the memory-read limit like the XOR fold, FNV-1a works a byte at
//! a time and is an order of magnitude slower, and the XOR fold is not a hash
//! at all (see below). Each function runs once to warm up, then best of 7
//! passes in round-robin order over the same pages; memcpy copies the same
//! bytes into a second set. Measured on this project's 2-core AVX-512 machine
//! with `RUSTFLAGS="-C target-cpu=native"` (as `cargo xtask bench` builds it),
//! three runs on 2026-11-25: xxh3 22.5 / 19.0 / 22.5 GB/s, XOR fold
//! 22.1 / 19.2 / 21.4 GB/s, memcpy 11.4 / 9.5 / 11.3 GB/s, so xxh3 runs at
//! 1.98-1.99x memcpy (goal >= 1.8) and 0.99-1.05x the fold (goal >= 0.9): it
//! costs one read of the page, which a 256 MiB set streams from DRAM. Built
//! for baseline x86-64 (SSE2) the same bench gave xxh3 19.9 GB/s, fold
//! 20.1 GB/s, memcpy 10.6 GB/s (1.88x and 0.99x). An earlier bench that
//! timed back-to-back passes without warm-up and ran the fold as four `u64`
//! words reported xxh3 at 1.77x memcpy and 0.89x the fold.
//!
//! # Collision argument
//! A stale page at the destination needs `digest(new) == digest(old)` for an
//! edit the workload made. The edits a GPU makes are not adversarial to the
//! digest (the guest cannot observe the digest or its seed choice), so the
//! relevant figure is the chance that a changed page keeps its 64-bit digest.
//! xxh3-64 on 4 KiB inputs passes SMHasher's avalanche and differential tests,
//! so that chance is about 2^-64 per changed page check. A migration of a
//! 2.5 GiB vGPU (655,360 pages) verified 100 times checks ~2^26 changed pages:
//! the chance of any stale page is ~2^-38. Structured edits matter more than
//! the count: the XOR fold is linear, so swapping two 32-byte chunks, or any
//! set of changes whose lanes XOR to zero, keeps its tag for *every* page; an
//! xxh3 lane accumulator multiplies each 8-byte word with a position-keyed
//! secret and mixes positions, so permutations and XOR-cancelling edits
//! change the digest like any other edit (tested below and in the tracker).
//!
//! # SIMD in the kernel
//! On the host xxh3 uses SSE2 (the x86-64 baseline) or AVX2 when the build
//! enables it (`target-cpu=native`; `xxhash-rust` selects the path at compile
//! time). The kernel target `x86_64-unknown-none` is built without SSE
//! (soft-float ABI), so there `xxhash-rust` compiles to scalar code. The
//! monitor enables SSE at boot (CR0.EM clear, CR4.OSFXSR set) for
//! [`crate::xxh3_sse2`], the same function with its stripe loop in an SSE2
//! `asm!` block that saves and restores the XMM registers it uses; it times
//! both paths on in-cache pages and keeps the faster (SSE2 on hardware;
//! under QEMU TCG, which emulates SSE slowly, the scalar code), and reports
//! the choice and both timings (`run-report.json`, `migration.digest_*`).
//! AVX2 would need XSAVE state enabled as well and is not used. The digests
//! are identical on every path (tested bit for bit on the host and in the
//! monitor's self-test), so tags are portable between monitor and host
//! tools. The host bench measures the SSE2 path too: 21.7 GB/s over the
//! 256 MiB set, 1.87x memcpy, against 22.8 GB/s for `xxhash-rust` with
//! AVX-512 (2026-11-25). The gMig XOR fold stays scalar in the monitor.

use crate::page::{PageBuf, PAGE_SIZE};

/// Offsets of gMig's sampling pre-filter (TPDS'20 final version).
pub const SAMPLE_OFFSETS: [usize; 4] = [512, 1536, 2560, 3584];

/// The four sampled bytes of a page.
pub type Sample = [u8; 4];

/// A stored tag: 256 bits so gMig's full XOR fold fits; xxh3-64 uses word 0.
pub type Tag = [u64; 4];

/// Which function produces a page's tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestKind {
    /// xxh3-64 (the chosen digest).
    Xxh3,
    /// gMig's 256-bit XOR fold in 32-byte lanes (reference, weak).
    XorFold,
    /// FNV-1a 64 (measured, not used by a policy).
    Fnv,
}

impl DigestKind {
    /// The tag of `page` under this function.
    pub fn tag(self, page: &PageBuf) -> Tag {
        match self {
            Self::Xxh3 => [xxh3(page), 0, 0, 0],
            Self::XorFold => xor_fold_256(page),
            Self::Fnv => [fnv1a(page), 0, 0, 0],
        }
    }
}

/// xxh3-64 of a page (seed 0): on SSE2 in the monitor once it enabled
/// SSE ([`crate::xxh3_sse2`]), else `xxhash-rust`'s code for the target.
pub fn xxh3(page: &PageBuf) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(h) = crate::xxh3_sse2::if_enabled(page) {
        return h;
    }
    xxh3_portable(page)
}

/// xxh3-64 of a page by `xxhash-rust` (SIMD only where the build enables
/// it; scalar in the monitor): the reference the SSE2 path is checked
/// against.
pub fn xxh3_portable(page: &PageBuf) -> u64 {
    xxhash_rust::xxh3::xxh3_64(page)
}

/// FNV-1a 64 of a page.
pub fn fnv1a(page: &PageBuf) -> u64 {
    use core::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(page);
    h.finish()
}

/// gMig's tag: XOR of all 32-byte lanes of the page, as four 64-bit words.
///
/// Written as two 128-bit accumulators because that is the form the
/// compiler turns into one vector XOR per 32-byte lane under every target
/// we measured: the same fold over four `u64` words runs at the memory-read
/// limit with baseline SSE2 but drops to under half of it when built with
/// `-C target-cpu=native` on an AVX-512 host (LLVM picks a poor
/// vectorization). The bench compares against gMig's fold at its best.
pub fn xor_fold_256(page: &PageBuf) -> Tag {
    let (mut lo, mut hi) = (0u128, 0u128);
    for lane in page.chunks_exact(32) {
        let mut w = [0u8; 16];
        w.copy_from_slice(&lane[..16]);
        lo ^= u128::from_le_bytes(w);
        w.copy_from_slice(&lane[16..]);
        hi ^= u128::from_le_bytes(w);
    }
    [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64]
}

/// The four bytes the sampling pre-filter keeps.
pub fn sample(page: &PageBuf) -> Sample {
    SAMPLE_OFFSETS.map(|o| page[o])
}

/// xxh3-64 of the all-zero page, used to spot zero pages without a second pass.
pub fn zero_page_xxh3() -> u64 {
    xxh3(&[0u8; PAGE_SIZE])
}

/// Whether every byte of the page is zero.
pub fn is_zero(page: &PageBuf) -> bool {
    page.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_page(seed: u64) -> PageBuf {
        let mut p = [0u8; PAGE_SIZE];
        let mut x = seed | 1;
        for b in p.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        p
    }

    /// Swap 32-byte chunks `a` and `b`.
    pub(crate) fn swap_chunks(p: &mut PageBuf, a: usize, b: usize) {
        let mut tmp = [0u8; 32];
        tmp.copy_from_slice(&p[a * 32..a * 32 + 32]);
        p.copy_within(b * 32..b * 32 + 32, a * 32);
        p[b * 32..b * 32 + 32].copy_from_slice(&tmp);
    }

    #[test]
    fn xor_fold_misses_chunk_swap_and_cancelling_edits_xxh3_does_not() {
        for seed in 1..50u64 {
            let old = random_page(seed);
            let mut swapped = old;
            swap_chunks(
                &mut swapped,
                (seed % 128) as usize,
                ((seed * 7 + 3) % 128) as usize,
            );
            if swapped == old {
                continue;
            }
            // The fold is blind to the swap: gMig would leave a stale page.
            assert_eq!(xor_fold_256(&old), xor_fold_256(&swapped));
            assert_ne!(xxh3(&old), xxh3(&swapped));

            // XOR-cancelling edit: flip the same bits at the same lane offset
            // in two different lanes.
            let mut cancel = old;
            let mask = (seed as u8) | 1;
            let off = (seed % 32) as usize;
            cancel[off] ^= mask;
            cancel[off + 32 * 5] ^= mask;
            assert_eq!(xor_fold_256(&old), xor_fold_256(&cancel));
            assert_ne!(xxh3(&old), xxh3(&cancel));
        }
    }

    #[test]
    fn xor_fold_is_the_lane_wise_xor_of_words() {
        for seed in 1..8u64 {
            let p = random_page(seed);
            let mut want = [0u64; 4];
            for (i, w) in p.chunks_exact(8).enumerate() {
                want[i % 4] ^= u64::from_le_bytes(w.try_into().unwrap());
            }
            assert_eq!(xor_fold_256(&p), want);
        }
    }

    #[test]
    fn digests_see_a_single_bit_flip() {
        let old = random_page(9);
        for bit in [0usize, 1, 4095 * 8 + 7, 2048 * 8] {
            let mut new = old;
            new[bit / 8] ^= 1 << (bit % 8);
            for k in [DigestKind::Xxh3, DigestKind::XorFold, DigestKind::Fnv] {
                assert_ne!(k.tag(&old), k.tag(&new), "{k:?} bit {bit}");
            }
        }
    }

    #[test]
    fn sample_and_zero() {
        let mut p = [0u8; PAGE_SIZE];
        assert!(is_zero(&p));
        assert_eq!(xxh3(&p), zero_page_xxh3());
        p[2560] = 7;
        assert_eq!(sample(&p), [0, 0, 7, 0]);
        assert!(!is_zero(&p));
    }
}
