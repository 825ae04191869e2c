//! Software dirty tracking (ARCHITECTURE.md "Dirty tracking").
//!
//! One table per vGPU, from guest page number to the tag of the content last
//! sent, plus the evidence the kernel reports: pages the CPU wrote (PTE dirty
//! bits) and pages the command scanner saw as write targets. The table lives
//! in storage the caller lends (`&mut [Slot]`, a power-of-two length), so the
//! kernel can place it in a static and nothing allocates. It is an
//! open-addressed table with linear probing and Fibonacci hashing of the page
//! number; it is filled to at most 7/8 of its slots and never deletes (a
//! migration only adds pages; [`DirtyTracker::forget_all`] starts over).
//!
//! Memory cost: 48 bytes per slot (8 page + 32 tag + 4 sample + flags,
//! aligned). The tag is 256 bits wide so gMig's full XOR fold fits; xxh3-64
//! uses one word of it. The smallest GVT-g type (64 + 384 MiB, 114,688
//! pages) needs 131,072 slots = 6 MiB.

use core::fmt;

use crate::digest::{sample, DigestKind, Sample, Tag};
use crate::page::{GuestPage, PageBuf};

const EMPTY: u64 = u64::MAX;

/// A tag for this page's last-sent content is stored.
pub const SENT: u8 = 1 << 0;
/// The kernel reported a CPU write since the last send.
pub const CPU_DIRTY: u8 = 1 << 1;
/// The scanner reported the page as a GPU write target since the last send.
pub const WRITE_TARGET: u8 = 1 << 2;
/// Verification found the page dirty; it waits to be sent.
pub const PENDING: u8 = 1 << 3;
/// The page was sent again after the bulk round (rewritten during
/// pre-copy): the `informed` policy visits such pages last in each round.
/// Sending keeps it; only [`DirtyTracker::forget_all`] clears it.
pub const HOT: u8 = 1 << 4;

/// One slot of the table. Opaque; create storage with [`Slot::EMPTY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    page: u64,
    tag: Tag,
    sample: Sample,
    flags: u8,
}

impl Slot {
    /// An unused slot.
    pub const EMPTY: Slot = Slot {
        page: EMPTY,
        tag: [0; 4],
        sample: [0; 4],
        flags: 0,
    };
}

/// Errors of the dirty table: all local (sizing or a kernel bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackerError {
    /// The lent storage is empty or not a power of two long.
    BadStorage(usize),
    /// More distinct pages than 7/8 of the slots: the kernel sized the table
    /// too small for this vGPU.
    Full {
        /// Slots in the table.
        slots: usize,
    },
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadStorage(n) => {
                write!(
                    f,
                    "dirty table storage of {n} slots: need a nonzero power of two"
                )
            }
            Self::Full { slots } => write!(
                f,
                "dirty table of {slots} slots is full (7/8 load): size it for the vGPU's page count"
            ),
        }
    }
}

/// Outcome of verifying a page against its last-sent tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Content equals what was last sent (by tag).
    Clean,
    /// Content differs, or the page was never sent. `tag` is `None` when
    /// the sampling pre-filter decided without hashing.
    Dirty {
        /// The fresh tag, when one was computed.
        tag: Option<Tag>,
    },
}

/// Work counters, read by the simulator's cost model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Full digests computed.
    pub hashes: u64,
    /// Sampling pre-filter checks.
    pub sample_checks: u64,
    /// Pre-filter checks that found the page dirty without hashing.
    pub sample_hits: u64,
}

/// The per-vGPU dirty table.
#[derive(Debug)]
pub struct DirtyTracker<'a> {
    slots: &'a mut [Slot],
    used: usize,
    shift: u32,
    kind: DigestKind,
    stats: TrackerStats,
}

impl<'a> DirtyTracker<'a> {
    /// A table over `slots` (a nonzero power of two long), tagging with `kind`.
    pub fn new(slots: &'a mut [Slot], kind: DigestKind) -> Result<Self, TrackerError> {
        let n = slots.len();
        if n == 0 || !n.is_power_of_two() {
            return Err(TrackerError::BadStorage(n));
        }
        slots.fill(Slot::EMPTY);
        Ok(Self {
            slots,
            used: 0,
            shift: 64 - n.trailing_zeros(),
            kind,
            stats: TrackerStats::default(),
        })
    }

    /// The digest this table uses.
    pub fn kind(&self) -> DigestKind {
        self.kind
    }

    /// Work counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Number of distinct pages in the table.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no page is in the table.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    fn home(&self, page: u64) -> usize {
        if self.shift >= 64 {
            return 0;
        }
        // Fibonacci hashing: spreads dense page numbers over the table.
        (page.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn find(&self, page: GuestPage) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(page.get());
        loop {
            let s = &self.slots[i];
            if s.page == page.get() {
                return Some(i);
            }
            if s.page == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    fn entry(&mut self, page: GuestPage) -> Result<usize, TrackerError> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(page.get());
        loop {
            let p = self.slots[i].page;
            if p == page.get() {
                return Ok(i);
            }
            if p == EMPTY {
                if (self.used + 1) * 8 > self.slots.len() * 7 {
                    return Err(TrackerError::Full {
                        slots: self.slots.len(),
                    });
                }
                self.used += 1;
                self.slots[i] = Slot {
                    page: page.get(),
                    ..Slot::EMPTY
                };
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Flags of `page` (0 when unknown).
    pub fn flags(&self, page: GuestPage) -> u8 {
        self.find(page).map_or(0, |i| self.slots[i].flags)
    }

    /// The tag of the content last sent for `page`, if it was sent.
    pub fn sent_tag(&self, page: GuestPage) -> Option<Tag> {
        let s = &self.slots[self.find(page)?];
        (s.flags & SENT != 0).then_some(s.tag)
    }

    /// Set `flags` on `page`.
    pub fn set_flags(&mut self, page: GuestPage, flags: u8) -> Result<(), TrackerError> {
        let i = self.entry(page)?;
        self.slots[i].flags |= flags;
        Ok(())
    }

    /// Clear `flags` on `page` (no-op when unknown).
    pub fn clear_flags(&mut self, page: GuestPage, flags: u8) {
        if let Some(i) = self.find(page) {
            self.slots[i].flags &= !flags;
        }
    }

    /// The kernel saw the CPU write `page` (PTE dirty bit).
    pub fn report_cpu_dirty(&mut self, page: GuestPage) -> Result<(), TrackerError> {
        self.set_flags(page, CPU_DIRTY)
    }

    /// The scanner recorded `page` as the target of a GPU write.
    pub fn report_write_target(&mut self, page: GuestPage) -> Result<(), TrackerError> {
        self.set_flags(page, WRITE_TARGET)
    }

    /// Verify `content` of `page` against the last-sent tag. With `prefilter`
    /// the four sampled bytes are compared first and a difference decides
    /// "dirty" without hashing (gMig TPDS'20). A page never sent is dirty.
    pub fn verify(&mut self, page: GuestPage, content: &PageBuf, prefilter: bool) -> Verdict {
        let Some(i) = self.find(page) else {
            return Verdict::Dirty { tag: None };
        };
        let slot = self.slots[i];
        if slot.flags & SENT == 0 {
            return Verdict::Dirty { tag: None };
        }
        if prefilter {
            self.stats.sample_checks += 1;
            if sample(content) != slot.sample {
                self.stats.sample_hits += 1;
                return Verdict::Dirty { tag: None };
            }
        }
        self.stats.hashes += 1;
        let tag = self.kind.tag(content);
        if tag == slot.tag {
            Verdict::Clean
        } else {
            Verdict::Dirty { tag: Some(tag) }
        }
    }

    /// Compute the tag of `content` (counted as one hash).
    pub fn tag_of(&mut self, content: &PageBuf) -> Tag {
        self.stats.hashes += 1;
        self.kind.tag(content)
    }

    /// Record that `content` of `page` was sent with `tag`: stores tag and
    /// sample, clears the CPU, write-target and pending evidence.
    pub fn record_sent(
        &mut self,
        page: GuestPage,
        tag: Tag,
        content: &PageBuf,
    ) -> Result<(), TrackerError> {
        let i = self.entry(page)?;
        let s = &mut self.slots[i];
        s.tag = tag;
        s.sample = sample(content);
        s.flags = (s.flags | SENT) & !(CPU_DIRTY | WRITE_TARGET | PENDING);
        Ok(())
    }

    /// Forget every tag and all evidence (a new migration after an abort).
    pub fn forget_all(&mut self) {
        self.slots.fill(Slot::EMPTY);
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PAGE_SIZE;

    fn gp(n: u64) -> GuestPage {
        GuestPage::new(n).unwrap()
    }

    fn page_with(seed: u8) -> PageBuf {
        let mut p = [0u8; PAGE_SIZE];
        for (i, b) in p.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        p
    }

    #[test]
    fn never_sent_is_dirty_then_clean_then_dirty() {
        let mut store = vec![Slot::EMPTY; 64];
        let mut t = DirtyTracker::new(&mut store, DigestKind::Xxh3).unwrap();
        let mut p = page_with(1);
        assert_eq!(t.verify(gp(5), &p, false), Verdict::Dirty { tag: None });
        let tag = t.tag_of(&p);
        t.record_sent(gp(5), tag, &p).unwrap();
        assert_eq!(t.verify(gp(5), &p, false), Verdict::Clean);
        p[100] ^= 1;
        assert!(matches!(
            t.verify(gp(5), &p, false),
            Verdict::Dirty { tag: Some(_) }
        ));
    }

    #[test]
    fn xxh3_table_catches_what_the_xor_fold_table_misses() {
        let mut s1 = vec![Slot::EMPTY; 16];
        let mut s2 = vec![Slot::EMPTY; 16];
        let mut ours = DirtyTracker::new(&mut s1, DigestKind::Xxh3).unwrap();
        let mut gmig = DirtyTracker::new(&mut s2, DigestKind::XorFold).unwrap();
        let p = page_with(3);
        for t in [&mut ours, &mut gmig] {
            let tag = t.tag_of(&p);
            t.record_sent(gp(1), tag, &p).unwrap();
        }
        // Chunk swap of lanes 2 and 9.
        let mut swapped = p;
        swapped[64..96].copy_from_slice(&p[288..320]);
        swapped[288..320].copy_from_slice(&p[64..96]);
        assert_ne!(swapped, p);
        assert_eq!(
            gmig.verify(gp(1), &swapped, false),
            Verdict::Clean,
            "the fold misses a swap"
        );
        assert!(matches!(
            ours.verify(gp(1), &swapped, false),
            Verdict::Dirty { .. }
        ));
        // XOR-cancelling edit; sample bytes untouched so the pre-filter cannot help.
        let mut cancel = p;
        cancel[7] ^= 0x5a;
        cancel[7 + 32 * 40] ^= 0x5a;
        assert_eq!(
            gmig.verify(gp(1), &cancel, true),
            Verdict::Clean,
            "the fold misses XOR-cancelling edits"
        );
        assert!(matches!(
            ours.verify(gp(1), &cancel, true),
            Verdict::Dirty { .. }
        ));
    }

    #[test]
    fn prefilter_decides_without_hashing() {
        let mut store = vec![Slot::EMPTY; 16];
        let mut t = DirtyTracker::new(&mut store, DigestKind::XorFold).unwrap();
        let p = page_with(4);
        let tag = t.tag_of(&p);
        t.record_sent(gp(2), tag, &p).unwrap();
        let mut q = p;
        q[1536] ^= 0xff;
        let before = t.stats().hashes;
        assert_eq!(t.verify(gp(2), &q, true), Verdict::Dirty { tag: None });
        assert_eq!(t.stats().hashes, before);
        assert_eq!(t.stats().sample_hits, 1);
    }

    #[test]
    fn fills_to_seven_eighths_and_evidence_flags() {
        let mut store = vec![Slot::EMPTY; 16];
        assert_eq!(
            DirtyTracker::new(&mut store[..12], DigestKind::Xxh3).unwrap_err(),
            TrackerError::BadStorage(12)
        );
        let mut t = DirtyTracker::new(&mut store, DigestKind::Xxh3).unwrap();
        for n in 0..14 {
            t.report_cpu_dirty(gp(n * 4096)).unwrap();
        }
        assert_eq!(
            t.report_write_target(gp(99)),
            Err(TrackerError::Full { slots: 16 })
        );
        t.report_write_target(gp(0)).unwrap();
        assert_eq!(t.flags(gp(0)), CPU_DIRTY | WRITE_TARGET);
        let p = page_with(0);
        t.record_sent(gp(0), [1, 0, 0, 0], &p).unwrap();
        assert_eq!(t.flags(gp(0)), SENT);
        for n in 0..14 {
            assert_ne!(t.flags(gp(n * 4096)), 0);
        }
        t.forget_all();
        assert!(t.is_empty());
        assert_eq!(t.flags(gp(0)), 0);
    }
}
