//! Recording a migration's dirty trace (`trace=on`): what the migrating
//! ring-3 guest wrote during pre-copy, in `migrate-sim`'s trace format, so
//! the simulator can replay what the monitor saw (`cargo xtask bench`
//! picks the file up).
//!
//! The recorder keeps a digest of every page of the guest's RAM. After
//! each of the guest's slices it is told what the migration's tracker is
//! told ([`crate::migration::report_evidence`]): the pages whose PTE dirty
//! bit the guest's CPU set, and the pages the scanner named as its
//! submissions' write targets. It hashes those pages only (all of them
//! after a submission whose writes the scanner could not name): a page
//! the CPU wrote is a CPU write (`c`), another whose digest changed a GPU
//! write (`g`), a write target that came out the same an unchanged rewrite
//! (`u`). Small edits are not told apart from full ones (that would need a
//! copy of every page). Each write is one log line, `trace <ns> <page>
//! <kind>` (page: index from the guest's first RAM page), which `cargo
//! xtask run` writes to `target/xtask/trace.txt` instead of showing.

use alloc::vec;
use alloc::vec::Vec;

use migrate::digest::xxh3;
use migrate::page::{PageBuf, PageSource, PAGE_SIZE};

/// A set of page indices, as a bitmap.
#[derive(Clone, Debug)]
pub struct PageSet {
    words: Vec<u64>,
}

impl PageSet {
    /// Room for `pages` pages, none marked.
    pub fn new(pages: usize) -> Self {
        PageSet {
            words: vec![0; pages.div_ceil(64)],
        }
    }
    /// Marks page `index` (indices past the set are ignored).
    pub fn mark(&mut self, index: u64) {
        if let Some(w) = self.words.get_mut((index / 64) as usize) {
            *w |= 1 << (index % 64);
        }
    }
    /// Whether page `index` is marked.
    pub fn marked(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|w| w >> (index % 64) & 1 == 1)
    }
    fn clear(&mut self) {
        self.words.fill(0);
    }
}

/// The digests of a guest's pages as of the last step, what the guest
/// wrote since, and when the trace started.
pub struct DirtyTrace {
    digests: Vec<u64>,
    cpu: PageSet,
    targets: PageSet,
    untracked: bool,
    start_us: u64,
    events: u32,
}

impl DirtyTrace {
    /// Starts a trace of the guest's pages (`src`, the migration's view of
    /// them): announces it and takes every page's digest.
    pub fn start(src: &mut impl PageSource) -> Self {
        let pages = src.page_count();
        defmt::info!("trace-start pages={=usize}", pages);
        let mut t = DirtyTrace {
            digests: vec![0; pages],
            cpu: PageSet::new(pages),
            targets: PageSet::new(pages),
            untracked: false,
            start_us: crate::time::micros_since_boot(),
            events: 0,
        };
        for i in 0..pages {
            if let Some(d) = digest(src, i) {
                t.digests[i] = d;
            }
        }
        t
    }

    /// The guest's CPU wrote page `index` (its PTE dirty bit).
    pub fn cpu_wrote(&mut self, index: u64) {
        self.cpu.mark(index);
    }

    /// The scanner named page `index` a write target of a submission.
    pub fn gpu_may_have_written(&mut self, index: u64) {
        self.targets.mark(index);
    }

    /// A submission wrote pages the scanner could not name.
    pub fn untracked(&mut self) {
        self.untracked = true;
    }

    /// Logs what the guest wrote since the last step (see the module docs).
    pub fn step(&mut self, src: &mut impl PageSource) {
        let t_ns = (crate::time::micros_since_boot() - self.start_us) * 1000;
        for i in 0..self.digests.len() {
            let (cpu, target) = (self.cpu.marked(i), self.targets.marked(i));
            if !(cpu || target || self.untracked) {
                continue;
            }
            let Some(d) = digest(src, i) else {
                continue;
            };
            let kind = if cpu {
                'c'
            } else if d != self.digests[i] {
                'g'
            } else if target {
                'u'
            } else {
                continue;
            };
            self.digests[i] = d;
            self.events += 1;
            defmt::info!("trace {=u64} {=usize} {=char}", t_ns, i, kind);
        }
        self.cpu.clear();
        self.targets.clear();
        self.untracked = false;
    }

    /// Writes recorded.
    pub fn events(&self) -> u32 {
        self.events
    }

    /// Ends the trace (the line xtask looks for).
    pub fn end(&self) {
        defmt::info!("trace-end events={=u32}", self.events);
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
