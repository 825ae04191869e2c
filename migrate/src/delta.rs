//! Delta encoding of a page against the content last sent (XBZRLE-like),
//! and the fixed cache of last-sent pages it needs on the source.
//!
//! Encoding: a sequence of `(skip, len, bytes[len])` with `skip` and `len`
//! as ULEB128: skip `skip` unchanged bytes, then replace `len` bytes. A
//! differing run ends at the first 4 equal bytes, so isolated equal bytes do
//! not split runs. The decoder checks every bound and never panics.
//!
//! Memory cost of the cache: 4 KiB + 8 bytes per slot. It is two-way
//! set-associative by page number, so a vGPU whose hot set fits the cache
//! gets deltas for it; the kernel chooses the slot count from what memory it
//! can spare (e.g. 16 MiB = 4096 slots covers a 1080p triple-buffered frame
//! set). The `informed` policy stores only pages it sends a second time
//! (rewritten during pre-copy, so likely hot), never the bulk round, so cold
//! pages do not evict the hot set.

use core::fmt;

use crate::page::{GuestPage, PageBuf, PAGE_SIZE};

/// A malformed delta (part of a peer's bad stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// A length field runs past the end of the delta.
    Truncated,
    /// A run reaches past the end of the page.
    OutOfPage,
    /// A ULEB128 field is longer than 3 bytes or a run has length zero.
    BadField,
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("delta ends inside a run"),
            Self::OutOfPage => f.write_str("delta run reaches past the end of the page"),
            Self::BadField => f.write_str("delta has an oversized or zero-length field"),
        }
    }
}

fn put_uleb(out: &mut [u8], pos: &mut usize, mut v: usize) -> Option<()> {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        *out.get_mut(*pos)? = if v == 0 { b } else { b | 0x80 };
        *pos += 1;
        if v == 0 {
            return Some(());
        }
    }
}

fn get_uleb(input: &[u8], pos: &mut usize) -> Result<usize, DeltaError> {
    let mut v = 0usize;
    for i in 0..3 {
        let b = *input.get(*pos).ok_or(DeltaError::Truncated)?;
        *pos += 1;
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DeltaError::BadField)
}

/// Encode `new` against `old` into `out`; `None` when the delta would not
/// fit in `out` (send the full page then).
pub fn encode(old: &PageBuf, new: &PageBuf, out: &mut [u8]) -> Option<usize> {
    let mut pos = 0;
    let mut i = 0;
    while i < PAGE_SIZE {
        let start = i;
        while i < PAGE_SIZE && old[i] == new[i] {
            i += 1;
        }
        if i == PAGE_SIZE {
            break;
        }
        let skip = i - start;
        let run = i;
        // Extend the run until 4 equal bytes in a row (or the page end).
        let mut equal = 0;
        while i < PAGE_SIZE && equal < 4 {
            if old[i] == new[i] {
                equal += 1;
            } else {
                equal = 0;
            }
            i += 1;
        }
        let end = i - equal;
        put_uleb(out, &mut pos, skip)?;
        put_uleb(out, &mut pos, end - run)?;
        out.get_mut(pos..pos + (end - run))?
            .copy_from_slice(&new[run..end]);
        pos += end - run;
        i = end;
    }
    Some(pos)
}

/// Apply `delta` to `page` in place.
pub fn apply(page: &mut PageBuf, delta: &[u8]) -> Result<(), DeltaError> {
    let mut pos = 0;
    let mut at = 0usize;
    while pos < delta.len() {
        let skip = get_uleb(delta, &mut pos)?;
        let len = get_uleb(delta, &mut pos)?;
        if len == 0 {
            return Err(DeltaError::BadField);
        }
        at = at.checked_add(skip).ok_or(DeltaError::OutOfPage)?;
        let end = at.checked_add(len).ok_or(DeltaError::OutOfPage)?;
        if end > PAGE_SIZE {
            return Err(DeltaError::OutOfPage);
        }
        let bytes = delta.get(pos..pos + len).ok_or(DeltaError::Truncated)?;
        page[at..end].copy_from_slice(bytes);
        pos += len;
        at = end;
    }
    Ok(())
}

/// Two-way set-associative cache of the content last sent, in lent storage.
///
/// Two ways with least-recently-stored replacement, because a direct-mapped
/// cache loses hot pages to index conflicts: with a hot set of half the slot
/// count, about 40% of hot pages share a slot with another hot page and
/// evict each other every round. Way 0 of a set holds the most recently
/// stored page; storing a new page moves way 0 to way 1 (a 4 KiB copy, about
/// what reading the page cost). With an odd slot count the last slot is unused.
#[derive(Debug)]
pub struct DeltaCache<'a> {
    pages: &'a mut [PageBuf],
    owners: &'a mut [u64],
}

impl<'a> DeltaCache<'a> {
    /// A cache over `pages` and `owners` (same length; length 0 disables it).
    pub fn new(pages: &'a mut [PageBuf], owners: &'a mut [u64]) -> Self {
        let n = pages.len().min(owners.len());
        owners.fill(u64::MAX);
        let (pages, _) = pages.split_at_mut(n);
        let (owners, _) = owners.split_at_mut(n);
        Self { pages, owners }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.pages.len()
    }

    /// First slot of `page`'s set and the number of ways (0 when disabled).
    fn set(&self, page: GuestPage) -> (usize, usize) {
        let n = self.pages.len();
        let ways = n.min(2);
        if ways == 0 {
            return (0, 0);
        }
        let sets = n / ways;
        let h = (page.get().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize;
        ((h % sets) * ways, ways)
    }

    fn way_of(&self, page: GuestPage) -> Option<usize> {
        let (base, ways) = self.set(page);
        (base..base + ways).find(|&s| self.owners[s] == page.get())
    }

    /// The cached last-sent content of `page`, if present.
    pub fn get(&self, page: GuestPage) -> Option<&PageBuf> {
        self.way_of(page).map(|s| &self.pages[s])
    }

    /// Remember `content` as the last sent content of `page`.
    pub fn put(&mut self, page: GuestPage, content: &PageBuf) {
        let (base, ways) = self.set(page);
        if ways == 0 {
            return;
        }
        match self.way_of(page) {
            Some(s) if s == base => {}
            Some(s) => {
                // Hit in way 1: make it the most recent.
                self.pages.swap(base, s);
                self.owners.swap(base, s);
            }
            None if ways == 2 => {
                // Miss: way 0 ages into way 1, evicting way 1.
                self.pages[base + 1] = self.pages[base];
                self.owners[base + 1] = self.owners[base];
            }
            None => {}
        }
        self.owners[base] = page.get();
        self.pages[base] = *content;
    }

    /// Drop every entry.
    pub fn clear(&mut self) {
        self.owners.fill(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn roundtrip(seed in any::<u64>(), edits in proptest::collection::vec((0usize..PAGE_SIZE, any::<u8>()), 0..200)) {
            let mut old = [0u8; PAGE_SIZE];
            let mut x = seed | 1;
            for b in old.iter_mut() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *b = x as u8; }
            let mut new = old;
            for (i, v) in edits { new[i] = v; }
            let mut out = [0u8; PAGE_SIZE * 2];
            let n = encode(&old, &new, &mut out).unwrap();
            let mut page = old;
            apply(&mut page, &out[..n]).unwrap();
            prop_assert_eq!(page, new);
        }

        #[test]
        fn apply_never_panics(delta in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut page = [0u8; PAGE_SIZE];
            let _ = apply(&mut page, &delta);
        }
    }

    #[test]
    fn small_edit_small_delta_and_overflow() {
        let old = [1u8; PAGE_SIZE];
        let mut new = old;
        new[10] = 2;
        new[4000] = 3;
        let mut out = [0u8; 64];
        assert_eq!(encode(&old, &new, &mut out), Some(3 + 4));
        let all = [9u8; PAGE_SIZE];
        assert_eq!(encode(&old, &all, &mut out), None);
        assert_eq!(
            apply(&mut [0u8; PAGE_SIZE], &[0xff, 0xff, 0x7f, 1, 0]),
            Err(DeltaError::OutOfPage)
        );
        assert_eq!(
            apply(&mut [0u8; PAGE_SIZE], &[0, 0]),
            Err(DeltaError::BadField)
        );
        assert_eq!(
            apply(&mut [0u8; PAGE_SIZE], &[0, 5, 1]),
            Err(DeltaError::Truncated)
        );
    }

    #[test]
    fn cache_is_two_way_lru() {
        // Two slots: one set of two ways, so every page maps to it.
        let mut pages = vec![[0u8; PAGE_SIZE]; 2];
        let mut owners = vec![0u64; 2];
        let mut c = DeltaCache::new(&mut pages, &mut owners);
        let [a, b, d] = [7, 8, 9].map(|n| GuestPage::new(n).unwrap());
        assert!(c.get(a).is_none());
        c.put(a, &[5u8; PAGE_SIZE]);
        c.put(b, &[6u8; PAGE_SIZE]);
        assert_eq!(c.get(a).unwrap()[0], 5);
        assert_eq!(c.get(b).unwrap()[0], 6);
        // Re-storing `a` makes it the most recent, so `d` evicts `b`.
        c.put(a, &[1u8; PAGE_SIZE]);
        c.put(d, &[2u8; PAGE_SIZE]);
        assert_eq!(c.get(a).unwrap()[0], 1);
        assert_eq!(c.get(d).unwrap()[0], 2);
        assert!(c.get(b).is_none());
        c.clear();
        assert!(c.get(a).is_none());
        // One slot: direct-mapped; no slots: disabled.
        let mut one = vec![[0u8; PAGE_SIZE]; 1];
        let mut one_o = vec![0u64; 1];
        let mut c1 = DeltaCache::new(&mut one, &mut one_o);
        c1.put(a, &[3u8; PAGE_SIZE]);
        c1.put(b, &[4u8; PAGE_SIZE]);
        assert!(c1.get(a).is_none());
        assert_eq!(c1.get(b).unwrap()[0], 4);
        let mut c0 = DeltaCache::new(&mut [], &mut []);
        c0.put(a, &[3u8; PAGE_SIZE]);
        assert!(c0.get(a).is_none());
    }
}
