//! xxh3-64 of a 4 KiB page with SSE2, for the monitor.
//!
//! The kernel target (`x86_64-unknown-none`) is built without SSE, so
//! `xxhash-rust` runs its scalar path there. SSE2 is part of every x86-64
//! CPU; once the monitor has enabled it (CR0.EM clear, CR4.OSFXSR set) code
//! may use the XMM registers. The compiler cannot generate that code for
//! this target: LLVM fails on `pmuludq` (`_mm_mul_epu32`) under the
//! soft-float ABI, and vector operands of `asm!` cannot be allocated. So the
//! stripe loop and the scramble are one `asm!` block over plain pointers
//! that saves the XMM registers it uses and restores them before it ends:
//! nothing outside sees them change, and no other monitor code (built
//! soft-float, trap stubs included) uses them, so no vector state needs
//! saving elsewhere.
//!
//! The function is xxh3-64 with seed 0 and the default secret, specialised
//! to one input length (4096 bytes, the long-input path): three blocks of
//! 16 stripes, each followed by a scramble, the 15 whole stripes of the last
//! block, the final stripe, and the merge of the eight accumulators. Each
//! 64-byte stripe is four 16-byte lanes: key the data, multiply the low and
//! high 32-bit halves of each keyed word (`pmuludq`), and add the data
//! word-swapped. The tests check it against `xxhash-rust` bit for bit, so
//! tags from the monitor and from host tools agree.

#![allow(unsafe_code)] // reason: SSE2 loads, stores and a target-feature entry point

use core::sync::atomic::{AtomicBool, Ordering};

use crate::page::{PageBuf, PAGE_SIZE};

/// The default 192-byte secret of XXH3 (its specification's kSecret).
const SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

const PRIME32_1: u64 = 0x9E37_79B1;
const PRIME32_2: u64 = 0x85EB_CA77;
const PRIME32_3: u64 = 0xC2B2_AE3D;
const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME64_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME64_5: u64 = 0x27D4_EB2F_1656_67C5;

const STRIPE: usize = 64;
/// Stripes per block: (secret length - stripe) / 8 secret bytes per stripe.
const STRIPES_PER_BLOCK: usize = (SECRET.len() - STRIPE) / 8;
const BLOCK: usize = STRIPE * STRIPES_PER_BLOCK;
/// Whole blocks before the last, partial one: (len - 1) / block.
const BLOCKS: usize = (PAGE_SIZE - 1) / BLOCK;
/// Whole stripes of the last block (the final stripe is taken separately).
const LAST_STRIPES: usize = ((PAGE_SIZE - 1) - BLOCKS * BLOCK) / STRIPE;
/// Where the scramble's and the final stripe's keys start.
const SCRAMBLE_KEY: usize = SECRET.len() - STRIPE;
const LAST_STRIPE_KEY: usize = SECRET.len() - STRIPE - 7;
const MERGE_KEY: usize = 11;

/// Set once the monitor has enabled SSE ([`enable`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes [`crate::digest::xxh3`] hash with SSE2 from now on (the monitor
/// calls it when SSE2 measured faster than the portable code).
///
/// # Safety
/// SSE must be enabled (CR0.EM clear, CR4.OSFXSR set) on every CPU that
/// hashes from now on, and nothing may rely on the XMM registers keeping
/// their contents across a digest.
pub unsafe fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// xxh3-64 of `page` with SSE2 if the monitor enabled it, else `None`
/// (the caller then hashes with the portable code).
#[inline]
pub fn if_enabled(page: &PageBuf) -> Option<u64> {
    if !enabled() {
        return None;
    }
    // SAFETY: `enable`'s caller promised SSE is on for every hashing CPU.
    Some(unsafe { xxh3_page(page) })
}

/// xxh3-64 (seed 0) of `page`, equal to `xxhash_rust::xxh3::xxh3_64(page)`.
///
/// # Safety
/// SSE must be enabled on this CPU (CR0.EM clear, CR4.OSFXSR set): true
/// under every x86-64 operating system, and in the monitor once it has set
/// those bits.
pub unsafe fn xxh3_page(page: &PageBuf) -> u64 {
    let mut acc = [
        PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1,
    ];
    let scramble_key = SECRET.get(SCRAMBLE_KEY..).unwrap_or(&[]);
    for block in page.chunks_exact(BLOCK).take(BLOCKS) {
        // SAFETY: the caller promised SSE is enabled.
        unsafe { stripes(&mut acc, block, &SECRET, STRIPES_PER_BLOCK, scramble_key) };
    }
    let rest = page.get(BLOCKS * BLOCK..).unwrap_or(&[]);
    let last = page.get(PAGE_SIZE - STRIPE..).unwrap_or(&[]);
    let last_key = SECRET.get(LAST_STRIPE_KEY..).unwrap_or(&[]);
    // SAFETY: as above.
    unsafe {
        stripes(&mut acc, rest, &SECRET, LAST_STRIPES, &[]);
        stripes(&mut acc, last, last_key, 1, &[]);
    }
    merge(&acc, (PAGE_SIZE as u64).wrapping_mul(PRIME64_1))
}

/// PRIME32_1 in each 32-bit lane: the scramble's multiplier.
const PRIME_LANES: [u32; 4] = [PRIME32_1 as u32; 4];

/// Runs `count` 64-byte stripes of `data` into the accumulators `acc`, the
/// n-th keyed by `key[8n..8n + 64]`; then, if `scramble` holds 64 bytes,
/// the end-of-block scramble keyed by them (xorshift 47, key, times
/// PRIME32_1). Does nothing when a slice is too short for `count`.
///
/// # Safety
/// SSE must be enabled on this CPU.
unsafe fn stripes(acc: &mut [u64; 8], data: &[u8], key: &[u8], count: usize, scramble: &[u8]) {
    let fits =
        count == 0 || (data.len() >= count * STRIPE && key.len() >= 8 * (count - 1) + STRIPE);
    if !fits {
        return;
    }
    let scramble = if scramble.len() >= STRIPE {
        scramble.as_ptr()
    } else {
        core::ptr::null()
    };
    let mut save = [0u8; 16 * 8];
    // A build for AVX (a host bench with `target-cpu=native`) may leave
    // the upper halves of the YMM registers in use, and mixing legacy SSE
    // with that state costs a penalty per instruction; clear them first.
    // The monitor's build has no AVX and needs nothing.
    #[cfg(target_feature = "avx")]
    // SAFETY: this build requires AVX (the feature is on for the whole
    // build), so VZEROUPPER exists; the compiler knows the intrinsic
    // clobbers the upper halves and keeps no value there across it.
    unsafe {
        core::arch::x86_64::_mm256_zeroupper()
    };
    // SAFETY: SSE is enabled (the caller's promise). The block reads
    // `count` stripes of `data` and the keys `key[8n..8n + 64]` (checked
    // above to lie in the slices), the 64 bytes at `scramble` when it is
    // not null, and `PRIME_LANES`; it reads and writes the 64 bytes of
    // `acc` and the 128 bytes of `save`. XMM0-7 are saved into `save` first
    // and restored last, so they are unchanged when the block ends; the
    // general registers it changes are declared.
    unsafe {
        core::arch::asm!(
            "movdqu [{save}], xmm0",
            "movdqu [{save} + 16], xmm1",
            "movdqu [{save} + 32], xmm2",
            "movdqu [{save} + 48], xmm3",
            "movdqu [{save} + 64], xmm4",
            "movdqu [{save} + 80], xmm5",
            "movdqu [{save} + 96], xmm6",
            "movdqu [{save} + 112], xmm7",
            "movdqu xmm0, [{acc}]",
            "movdqu xmm1, [{acc} + 16]",
            "movdqu xmm2, [{acc} + 32]",
            "movdqu xmm3, [{acc} + 48]",
            "test {n}, {n}",
            "jz 3f",
            "2:",
            // Lane 0: keyed = data ^ key; acc += lo32(keyed) * hi32(keyed)
            // per 64-bit word, plus the data with its two words swapped.
            "movdqu xmm4, [{d}]",
            "movdqu xmm5, [{k}]",
            "pxor xmm5, xmm4",
            "pshufd xmm6, xmm5, 0xf5",
            "pmuludq xmm5, xmm6",
            "pshufd xmm4, xmm4, 0x4e",
            "paddq xmm0, xmm4",
            "paddq xmm0, xmm5",
            // Lane 1.
            "movdqu xmm4, [{d} + 16]",
            "movdqu xmm5, [{k} + 16]",
            "pxor xmm5, xmm4",
            "pshufd xmm6, xmm5, 0xf5",
            "pmuludq xmm5, xmm6",
            "pshufd xmm4, xmm4, 0x4e",
            "paddq xmm1, xmm4",
            "paddq xmm1, xmm5",
            // Lane 2.
            "movdqu xmm4, [{d} + 32]",
            "movdqu xmm5, [{k} + 32]",
            "pxor xmm5, xmm4",
            "pshufd xmm6, xmm5, 0xf5",
            "pmuludq xmm5, xmm6",
            "pshufd xmm4, xmm4, 0x4e",
            "paddq xmm2, xmm4",
            "paddq xmm2, xmm5",
            // Lane 3.
            "movdqu xmm4, [{d} + 48]",
            "movdqu xmm5, [{k} + 48]",
            "pxor xmm5, xmm4",
            "pshufd xmm6, xmm5, 0xf5",
            "pmuludq xmm5, xmm6",
            "pshufd xmm4, xmm4, 0x4e",
            "paddq xmm3, xmm4",
            "paddq xmm3, xmm5",
            "add {d}, 64",
            "add {k}, 8",
            "dec {n}",
            "jnz 2b",
            "3:",
            "test {s}, {s}",
            "jz 4f",
            // Scramble: acc ^= acc >> 47; acc ^= key; acc *= PRIME32_1 as
            // lo32 * p + (hi32 * p) << 32.
            "movdqu xmm7, [{prime}]",
            "movdqa xmm4, xmm0",
            "psrlq xmm4, 47",
            "pxor xmm4, xmm0",
            "movdqu xmm5, [{s}]",
            "pxor xmm4, xmm5",
            "pshufd xmm5, xmm4, 0xf5",
            "pmuludq xmm4, xmm7",
            "pmuludq xmm5, xmm7",
            "psllq xmm5, 32",
            "paddq xmm4, xmm5",
            "movdqa xmm0, xmm4",
            "movdqa xmm4, xmm1",
            "psrlq xmm4, 47",
            "pxor xmm4, xmm1",
            "movdqu xmm5, [{s} + 16]",
            "pxor xmm4, xmm5",
            "pshufd xmm5, xmm4, 0xf5",
            "pmuludq xmm4, xmm7",
            "pmuludq xmm5, xmm7",
            "psllq xmm5, 32",
            "paddq xmm4, xmm5",
            "movdqa xmm1, xmm4",
            "movdqa xmm4, xmm2",
            "psrlq xmm4, 47",
            "pxor xmm4, xmm2",
            "movdqu xmm5, [{s} + 32]",
            "pxor xmm4, xmm5",
            "pshufd xmm5, xmm4, 0xf5",
            "pmuludq xmm4, xmm7",
            "pmuludq xmm5, xmm7",
            "psllq xmm5, 32",
            "paddq xmm4, xmm5",
            "movdqa xmm2, xmm4",
            "movdqa xmm4, xmm3",
            "psrlq xmm4, 47",
            "pxor xmm4, xmm3",
            "movdqu xmm5, [{s} + 48]",
            "pxor xmm4, xmm5",
            "pshufd xmm5, xmm4, 0xf5",
            "pmuludq xmm4, xmm7",
            "pmuludq xmm5, xmm7",
            "psllq xmm5, 32",
            "paddq xmm4, xmm5",
            "movdqa xmm3, xmm4",
            "4:",
            "movdqu [{acc}], xmm0",
            "movdqu [{acc} + 16], xmm1",
            "movdqu [{acc} + 32], xmm2",
            "movdqu [{acc} + 48], xmm3",
            "movdqu xmm0, [{save}]",
            "movdqu xmm1, [{save} + 16]",
            "movdqu xmm2, [{save} + 32]",
            "movdqu xmm3, [{save} + 48]",
            "movdqu xmm4, [{save} + 64]",
            "movdqu xmm5, [{save} + 80]",
            "movdqu xmm6, [{save} + 96]",
            "movdqu xmm7, [{save} + 112]",
            acc = in(reg) acc.as_mut_ptr(),
            save = in(reg) save.as_mut_ptr(),
            d = inout(reg) data.as_ptr() => _,
            k = inout(reg) key.as_ptr() => _,
            n = inout(reg) count => _,
            s = in(reg) scramble,
            prime = in(reg) PRIME_LANES.as_ptr(),
            options(nostack),
        );
    }
}

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(b) = bytes.get(at..at + 8) {
        w.copy_from_slice(b);
    }
    u64::from_le_bytes(w)
}

/// Folds the eight accumulators into the digest.
fn merge(acc: &[u64; 8], start: u64) -> u64 {
    let mut h = start;
    for (i, pair) in acc.chunks_exact(2).enumerate() {
        let key = MERGE_KEY + 16 * i;
        let a = pair[0] ^ word(&SECRET, key);
        let b = pair[1] ^ word(&SECRET, key + 8);
        let product = u128::from(a) * u128::from(b);
        h = h.wrapping_add(product as u64 ^ (product >> 64) as u64);
    }
    h ^= h >> 37;
    h = h.wrapping_mul(0x1656_6791_9E37_79F9);
    h ^ h >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(page: &PageBuf) {
        // SAFETY: the host's OS enables SSE on every x86-64 CPU.
        let ours = unsafe { xxh3_page(page) };
        assert_eq!(ours, xxhash_rust::xxh3::xxh3_64(page));
    }

    #[test]
    fn equals_xxh3_on_fixed_pages() {
        check(&[0u8; PAGE_SIZE]);
        check(&[0xffu8; PAGE_SIZE]);
        let mut p = [0u8; PAGE_SIZE];
        for (i, b) in p.iter_mut().enumerate() {
            *b = (i * 131 % 251) as u8;
        }
        check(&p);
    }

    proptest! {
        #[test]
        fn equals_xxh3_on_random_pages(seed in any::<u64>(), edits in prop::collection::vec((0usize..PAGE_SIZE, any::<u8>()), 0..64)) {
            let mut p = [0u8; PAGE_SIZE];
            let mut x = seed | 1;
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            for (at, v) in edits {
                p[at] = v;
            }
            check(&p);
        }
    }
}
