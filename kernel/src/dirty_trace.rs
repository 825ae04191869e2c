//! Recording a migration's dirty trace (`trace=on`): what the guest wrote
//! during pre-copy, in `migrate-sim`'s trace format, so the simulator can
//! replay what the monitor saw (`cargo xtask bench` picks the file up).
//!
//! After each guest step the recorder hashes every guest page and compares
//! it with the digest it kept: a changed page is a GPU write (`g`), or a
//! CPU write (`c`) when it is a ring the guest's CPU filled; a page the
//! scanner named as a write target whose content came out the same is an
//! unchanged rewrite (`u`). Small edits are not told apart from full ones
//! (that would need a copy of every page). Each write is one log line,
//! `trace <ns> <page> <kind>`, which `cargo xtask run` writes to
//! `target/xtask/trace.txt` instead of showing.

use migrate::digest::xxh3;
use migrate::page::{PageBuf, PageSource, PAGE_SIZE};

/// Guest pages a recorder follows (a built-in guest's memory).
pub const PAGES: usize = crate::vgpus::GUEST_MEMORY_PAGES as usize;

/// Guest pages, by index from the guest's first page, as a bitmap.
pub type PageSet = [u64; PAGES.div_ceil(64)];

/// Marks page `index` in `set` (indices past the guest's pages are ignored).
pub fn mark(set: &mut PageSet, index: u64) {
    if let Some(w) = set.get_mut((index / 64) as usize) {
        *w |= 1 << (index % 64);
    }
}

fn marked(set: &PageSet, index: usize) -> bool {
    set.get(index / 64)
        .is_some_and(|w| w >> (index % 64) & 1 == 1)
}

/// The digests of a guest's pages at the last step, and when it started.
pub struct DirtyTrace {
    digests: [u64; PAGES],
    start_us: u64,
    events: u32,
}

impl DirtyTrace {
    /// Starts a trace of the guest's pages (`src`, the migration's view of
    /// them): announces it and takes every page's digest.
    pub fn start(src: &mut impl PageSource) -> Self {
        defmt::info!("trace-start pages={=usize}", PAGES);
        let mut t = DirtyTrace {
            digests: [0; PAGES],
            start_us: crate::time::micros_since_boot(),
            events: 0,
        };
        for i in 0..PAGES {
            if let Some(d) = digest(src, i) {
                t.digests[i] = d;
            }
        }
        t
    }

    /// Logs what one guest step wrote: `targets` are the pages the scanner
    /// named, `cpu` the pages the guest's CPU wrote.
    pub fn step(&mut self, src: &mut impl PageSource, targets: &PageSet, cpu: &PageSet) {
        let t_ns = (crate::time::micros_since_boot() - self.start_us) * 1000;
        for i in 0..PAGES {
            let Some(d) = digest(src, i) else {
                continue;
            };
            let kind = if d != self.digests[i] {
                if marked(cpu, i) {
                    'c'
                } else {
                    'g'
                }
            } else if marked(targets, i) {
                'u'
            } else {
                continue;
            };
            self.digests[i] = d;
            self.events += 1;
            defmt::info!("trace {=u64} {=usize} {=char}", t_ns, i, kind);
        }
    }

    /// Writes recorded.
    pub fn events(&self) -> u32 {
        self.events
    }
}

/// The digest of the guest's `index`-th page.
fn digest(src: &mut impl PageSource, index: usize) -> Option<u64> {
    if index >= src.page_count() {
        return None;
    }
    let mut buf: PageBuf = [0; PAGE_SIZE];
    src.read_page(src.page_at(index), &mut buf).ok()?;
    Some(xxh3(&buf))
}
