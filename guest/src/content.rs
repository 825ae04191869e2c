//! Deterministic page contents and the per-page bookkeeping that names them.
//!
//! Every data page of a workload holds either zeros or the bytes of one
//! *content id* (a pure function of the workload's seed and the id), with
//! at most one 4-byte *edit* at a position fixed per page. So 8 bytes of
//! bookkeeping per page ([`PageState`], kept in guest RAM) say exactly
//! what the page must hold, and the guest can check any page at any time,
//! including pages written long before a live migration.

/// Bytes in a page.
pub const PAGE: usize = 4096;

/// Content id of a page that was never written (all zeros).
pub const ZERO: u32 = u32::MAX;
/// Content ids from here up to [`ZERO`] are *solid* pages: the id's four
/// little-endian bytes repeated, what a draw that clears a 32-bit surface
/// to a colour leaves (the colour's channels are the id's bytes).
pub const SOLID_FIRST: u32 = 0xc000_0000;

/// The solid content id of number `n` (wrapping within the solid ids).
pub const fn solid(n: u64) -> u32 {
    SOLID_FIRST + (n % (ZERO - SOLID_FIRST) as u64) as u32
}

/// What one data page must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageState {
    /// Content id ([`ZERO`] for zeros).
    pub content: u32,
    /// The 4-byte edit at [`edit_offset`], or 0 for none (edits are never 0).
    pub edit: u32,
}

impl PageState {
    /// A zero page.
    pub const ZEROS: PageState = PageState {
        content: ZERO,
        edit: 0,
    };
    /// Its 8-byte bookkeeping form.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.content.to_le_bytes());
        b[4..].copy_from_slice(&self.edit.to_le_bytes());
        b
    }
    /// From its bookkeeping form.
    pub fn from_bytes(b: [u8; 8]) -> PageState {
        PageState {
            content: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            edit: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// One step of splitmix64: the generator behind every content and every
/// decision a workload takes.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes of content `id` under `seed`.
pub fn fill(seed: u64, id: u32, out: &mut [u8; PAGE]) {
    if id == ZERO {
        out.fill(0);
        return;
    }
    if id >= SOLID_FIRST {
        for chunk in out.chunks_exact_mut(4) {
            chunk.copy_from_slice(&id.to_le_bytes());
        }
        return;
    }
    let mut s = seed ^ (u64::from(id) << 32 | u64::from(id));
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut s).to_le_bytes());
    }
}

/// Where page `index`'s edit goes (a DWord-aligned byte offset, fixed per
/// page so that a new edit replaces the old one).
pub fn edit_offset(index: u32) -> usize {
    let mut s = u64::from(index) ^ 0x5eed_0ff5;
    (splitmix(&mut s) % (PAGE as u64 / 4)) as usize * 4
}

/// The bytes page `index` must hold in `state`.
pub fn expected(seed: u64, index: u32, state: PageState, out: &mut [u8; PAGE]) {
    fill(seed, state.content, out);
    if state.edit != 0 {
        let at = edit_offset(index);
        out[at..at + 4].copy_from_slice(&state.edit.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_differ_by_id_and_seed_and_repeat_exactly() {
        let (mut a, mut b, mut c) = ([0; PAGE], [0; PAGE], [0; PAGE]);
        fill(1, 7, &mut a);
        fill(1, 7, &mut b);
        assert_eq!(a, b);
        fill(1, 8, &mut c);
        assert_ne!(a, c);
        fill(2, 7, &mut c);
        assert_ne!(a, c);
        fill(1, ZERO, &mut c);
        assert!(c.iter().all(|&x| x == 0));
    }

    #[test]
    fn an_edit_changes_four_bytes_at_its_page_offset() {
        let (mut plain, mut edited) = ([0; PAGE], [0; PAGE]);
        let s = PageState {
            content: 3,
            edit: 0xdead_beef,
        };
        expected(9, 42, PageState { edit: 0, ..s }, &mut plain);
        expected(9, 42, s, &mut edited);
        let at = edit_offset(42);
        assert_eq!(&edited[at..at + 4], &0xdead_beef_u32.to_le_bytes());
        let differing = plain.iter().zip(&edited).filter(|(x, y)| x != y).count();
        assert!((1..=4).contains(&differing));
        assert_eq!(PageState::from_bytes(s.to_bytes()), s);
    }
}
