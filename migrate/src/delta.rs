//! Delta encoding of a page against the content last sent (XBZRLE-like),
//! and the fixed cache of last-sent pages it needs on the source.
//!
//! Encoding: a sequence of `(skip, len, bytes[len])` with `skip` and `len`
//! as ULEB128: skip `skip` unchanged bytes, then replace `len` bytes. A
//! differing run ends at the first 4 equal bytes, so isolated equal bytes do
//! not split runs. The decoder checks every bound and never panics.
//!
//! Memory cost of the cache: 4 KiB + 8 bytes per slot. It is direct-mapped
//! by page number, so a vGPU whose hot set fits the cache gets deltas for it;
//! the kernel chooses the slot count from what memory it can spare (e.g. 16 MiB
//! = 4096 slots covers a 1080p triple-buffered frame set).

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

/// Direct-mapped cache of the content last sent, in lent storage.
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

    fn slot(&self, page: GuestPage) -> Option<usize> {
        let n = self.pages.len();
        if n == 0 {
            return None;
        }
        Some((page.get().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % n)
    }

    /// The cached last-sent content of `page`, if the page owns its slot.
    pub fn get(&self, page: GuestPage) -> Option<&PageBuf> {
        let s = self.slot(page)?;
        (self.owners[s] == page.get()).then(|| &self.pages[s])
    }

    /// Remember `content` as the last sent content of `page`.
    pub fn put(&mut self, page: GuestPage, content: &PageBuf) {
        if let Some(s) = self.slot(page) {
            self.owners[s] = page.get();
            self.pages[s] = *content;
        }
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
    fn cache_is_direct_mapped() {
        let mut pages = vec![[0u8; PAGE_SIZE]; 4];
        let mut owners = vec![0u64; 4];
        let mut c = DeltaCache::new(&mut pages, &mut owners);
        let p = GuestPage::new(7).unwrap();
        assert!(c.get(p).is_none());
        c.put(p, &[5u8; PAGE_SIZE]);
        assert_eq!(c.get(p).unwrap()[0], 5);
        c.clear();
        assert!(c.get(p).is_none());
    }
}
