//! The source side: one polled state machine per migration that runs the
//! chosen [`Policy`] (ARCHITECTURE.md "Policies").
//!
//! The kernel drives it from its main loop:
//!
//! 1. reports evidence as it appears ([`Source::report_cpu_dirty`],
//!    [`Source::report_write_target`], [`Source::report_untracked_writes`]);
//! 2. calls [`Source::poll`] with the current time; each call does a bounded
//!    amount of work ([`SourceConfig::work_per_poll`] pages) and returns.
//!    The first polls run the handshake ([`crate::auth`]): nothing of the
//!    guest leaves before the destination has proved it knows the key;
//! 3. lets only [`Source::submission_share`] of the guest's submissions
//!    through while pre-copy runs (full unless the policy throttles, see
//!    [`crate::throttle`]);
//! 4. on [`SourceStatus::StopGuest`] stops the vGPU and calls
//!    [`Source::guest_stopped`];
//! 5. on [`SourceStatus::Completed`] the destination has resumed the guest:
//!    the source vGPU may be destroyed. On any error the source has not
//!    committed the handover ([`crate::handover`]): the vGPU is intact and
//!    the kernel resumes it; a retry starts a new `Source`. On
//!    [`SourceStatus::Unconfirmed`] it had committed and cannot know whether
//!    the destination runs the guest: the kernel keeps the vGPU stopped
//!    (neither resumed nor freed) and reports it.
//!
//! Overlap without threads: the link takes bytes into its own buffer and
//! transmits them while the next poll hashes, so interleaving verification
//! and sending page by page (gmig-tpds, informed) overlaps the two; the
//! gmig-oneshot policy verifies every page before sending any, as gMig's
//! VEE'18 stop-and-copy did.

use core::fmt;

use crate::auth::{fresh_nonce, Entropy, Initiator, InitiatorError, MigrationKey, Opener, Sealer};
use crate::delta::{self, DeltaCache};
use crate::digest::{is_zero, zero_page_xxh3, Tag};
use crate::handover::{answer_wait_ns, Wait, DEFAULT_TIMEOUT_NS};
use crate::link::{Link, LinkError};
use crate::page::{GuestPage, MemoryError, PageBuf, PageSource, PAGE_SIZE};
use crate::policy::Policy;
use crate::throttle::{
    RoundWindow, Share, Throttle, ThrottleAdvice, ThrottleConfig, ThrottleStats,
};
use crate::tracker::{
    DirtyTracker, Slot, TrackerError, TrackerStats, Verdict, CPU_DIRTY, HOT, PENDING, WRITE_TARGET,
};
use crate::wire::{
    emit_delta_body_in_place, HelloRepr, Record, RecordRepr, Refusal, RejectReason, WireError,
    CHALLENGE_LEN, DELTA_PREFIX, EMPTY_RECORD_LEN, HELLO_LEN, MAX_RECORD, MAX_STATE_CHUNK,
    NONCE_LEN, PROOF_LEN, RECORD_HEAD_LEN,
};

/// Largest delta sent instead of a full page.
pub const DELTA_LIMIT: usize = PAGE_SIZE / 2;

/// Settings of one migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// Policy.
    pub policy: Policy,
    /// vGPU type index written into the hello.
    pub vgpu_type: u16,
    /// Downtime budget (QEMU default 300 ms).
    pub downtime_budget_ns: u64,
    /// Pre-copy round cap (iteration cap).
    pub max_rounds: u32,
    /// Pages processed per [`Source::poll`] at most.
    pub work_per_poll: u32,
    /// The convergence throttle (policies that [`Policy::throttles`]).
    pub throttle: ThrottleConfig,
    /// Ask for encrypted records (`migrate_encrypt=on`); records are
    /// authenticated either way.
    pub encrypt: bool,
    /// Longest wait for the destination without progress (a reply, or room
    /// on the link), see [`crate::handover`]; the answer to the commit is
    /// awaited [`answer_wait_ns`] of it. The destination's
    /// [`crate::ReceiverConfig::timeout_ns`] must be the same.
    pub timeout_ns: u64,
}

impl SourceConfig {
    /// Defaults: 300 ms budget (QEMU's), 10 rounds, 64 pages per poll,
    /// authenticated records, 5 s timeout.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            vgpu_type: 0,
            downtime_budget_ns: 300_000_000,
            max_rounds: 10,
            work_per_poll: 64,
            throttle: ThrottleConfig::new(),
            encrypt: false,
            timeout_ns: DEFAULT_TIMEOUT_NS,
        }
    }
}

/// Why a migration failed on the source. Returned as an error only before
/// the source committed the handover (or after, when the destination said
/// it never resumes): the source vGPU is intact and must be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceError {
    /// The destination refused the stream.
    Rejected(RejectReason),
    /// The destination refused the handshake.
    Refused(Refusal),
    /// The destination's handshake proof does not match: it does not know
    /// the migration key (or the handshake was tampered with).
    KeyMismatch,
    /// The destination's back channel is malformed (peer's fault).
    BadReply(WireError),
    /// The link broke.
    Link(LinkError),
    /// The destination did not answer (or take bytes) in time.
    Timeout(Wait),
    /// The local memory provider failed (kernel's fault).
    Memory(MemoryError),
    /// The dirty table is too small (kernel sizing).
    Tracker(TrackerError),
    /// A state blob is larger than the stream can describe (4 GiB).
    StateTooLarge(usize),
    /// The stream used every record sequence number (4 Gi records).
    StreamTooLong,
    /// The API was used out of order (kernel bug), e.g. polling after failure.
    Misuse(&'static str),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "destination rejected the migration: {r}"),
            Self::Refused(r) => write!(f, "destination refused the handshake: {r}"),
            Self::KeyMismatch => f.write_str(
                "peer does not know the migration key: the destination's handshake proof does not \
                 match (a different migrate_key= on the two sides, or a tampered handshake)",
            ),
            Self::BadReply(e) => write!(f, "destination's reply: {e}"),
            Self::Link(e) => write!(f, "{e}"),
            Self::Timeout(w) => write!(f, "timed out waiting for {w}"),
            Self::Memory(e) => write!(f, "source: {e}"),
            Self::Tracker(e) => write!(f, "source: {e}"),
            Self::StateTooLarge(n) => write!(
                f,
                "source: state blob of {n} bytes exceeds the stream limit"
            ),
            Self::StreamTooLong => f.write_str("source: the stream ran out of sequence numbers"),
            Self::Misuse(what) => write!(f, "source state machine misused (monitor bug): {what}"),
        }
    }
}

impl From<MemoryError> for SourceError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}
impl From<LinkError> for SourceError {
    fn from(e: LinkError) -> Self {
        Self::Link(e)
    }
}
impl From<TrackerError> for SourceError {
    fn from(e: TrackerError) -> Self {
        Self::Tracker(e)
    }
}

/// What the kernel should do after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// The handshake runs; the guest keeps running.
    Handshake,
    /// Pre-copy runs; the guest keeps running.
    Precopy,
    /// Stop the vGPU (and its guest), then call [`Source::guest_stopped`].
    StopGuest,
    /// Stop-and-copy runs; the guest stays stopped.
    StopCopy,
    /// Everything sent; waiting for the destination's ready (not committed:
    /// a failure from here still resumes the guest).
    AwaitingReady,
    /// Committed: the guest stays stopped; waiting for the destination's
    /// resumed.
    Committed,
    /// The destination resumed the guest: the migration is complete.
    Completed,
    /// Committed, and then this went wrong: the destination may or may not
    /// run the guest. Keep it stopped, neither resumed nor freed, and
    /// report it. Polling on may still complete (a late resumed) or fail
    /// (a late reject, and then the guest may be resumed).
    Unconfirmed(SourceError),
}

/// Counters of one migration (the simulator's cost model reads them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Page records sent before the stop.
    pub precopy_pages: u64,
    /// Bytes sent before the stop.
    pub precopy_bytes: u64,
    /// Page records sent after the stop.
    pub stop_pages: u64,
    /// Bytes sent after the stop (including state and done).
    pub stop_bytes: u64,
    /// Pages read from the source memory.
    pub pages_read: u64,
    /// Zero-page records.
    pub zero_pages: u64,
    /// Delta records.
    pub delta_pages: u64,
    /// Delta encodings attempted.
    pub delta_tries: u64,
    /// Pages whose candidacy check skipped reading them.
    pub skipped: u64,
    /// Time of the stop, when it happened.
    pub stopped_at_ns: Option<u64>,
    /// The convergence throttle's steps and lowest share.
    pub throttle: ThrottleStats,
}

/// Where a migration stands ([`Source::progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `handshake`, `precopy`, `stopcopy`, `handover`, `completed`,
    /// `unconfirmed` or `failed`.
    pub phase: &'static str,
    /// Pre-copy rounds run.
    pub round: u32,
    /// Page records sent.
    pub pages_sent: u64,
    /// Pages the current pass has yet to visit.
    pub pages_left: u64,
    /// Stream bytes sent.
    pub bytes: u64,
    /// What the last round said the stop would take at the link's rate so
    /// far (none before a round that measured it).
    pub expected_stop_ns: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Hello,
    AwaitChallenge { since_ns: u64 },
    Round { cursor: usize },
    Drain { since_ns: u64 },
    WaitStop,
    EndMark,
    Verify { cursor: usize },
    Final { cursor: usize },
    Device { offset: usize },
    Cpu { offset: usize },
    Done,
    AwaitReady { since_ns: Option<u64> },
    Commit,
    Committing,
    AwaitResumed { since_ns: u64 },
    Completed,
    Unconfirmed(SourceError),
    Failed,
}

/// Storage a [`Source`] borrows (statics in the kernel).
#[derive(Debug)]
pub struct SourceStorage<'a> {
    /// Dirty table slots (power of two).
    pub slots: &'a mut [Slot],
    /// Delta cache pages (may be empty).
    pub cache_pages: &'a mut [PageBuf],
    /// Delta cache owners (same length as `cache_pages`).
    pub cache_owners: &'a mut [u64],
}

/// The source side of one migration.
#[derive(Debug)]
pub struct Source<'a> {
    cfg: SourceConfig,
    tracker: DirtyTracker<'a>,
    cache: DeltaCache<'a>,
    phase: Phase,
    untracked: bool,
    key: MigrationKey,
    nonce: [u8; NONCE_LEN],
    handshake: Option<Initiator>,
    tx: Option<Sealer>,
    rx: Option<Opener>,
    encrypted: bool,
    committed: bool,
    page_records: u32,
    done_seq: u32,
    commit_seq: u32,
    out: [u8; MAX_RECORD],
    out_len: usize,
    out_pos: usize,
    stalled_since_ns: Option<u64>,
    page: PageBuf,
    state_digest: blake3::Hasher,
    back: [u8; CHALLENGE_LEN],
    back_fill: usize,
    started_ns: Option<u64>,
    bytes_sent: u64,
    round_bytes: u64,
    best_round_bytes: u64,
    stale_rounds: u32,
    round_new_cpu_dirty: u64,
    round_started_ns: Option<u64>,
    recent_rounds: RoundWindow,
    throttle: Throttle,
    stats: SourceStats,
    /// What the last round said the stop would take on the link.
    expected_stop_ns: Option<u64>,
}

impl<'a> Source<'a> {
    /// A migration with `cfg` over lent `storage`, authenticated with `key`;
    /// `entropy` gives the handshake's nonce.
    pub fn new(
        cfg: SourceConfig,
        storage: SourceStorage<'a>,
        key: &MigrationKey,
        entropy: &mut impl Entropy,
    ) -> Result<Self, SourceError> {
        let tracker = DirtyTracker::new(storage.slots, cfg.policy.digest())?;
        let cache = if cfg.policy.is_informed() {
            DeltaCache::new(storage.cache_pages, storage.cache_owners)
        } else {
            DeltaCache::new(&mut [], &mut [])
        };
        Ok(Self {
            cfg,
            tracker,
            cache,
            phase: Phase::Hello,
            untracked: false,
            key: *key,
            nonce: fresh_nonce(entropy),
            handshake: None,
            tx: None,
            rx: None,
            encrypted: false,
            committed: false,
            page_records: 0,
            done_seq: 0,
            commit_seq: 0,
            out: [0; MAX_RECORD],
            out_len: 0,
            out_pos: 0,
            stalled_since_ns: None,
            page: [0; PAGE_SIZE],
            state_digest: blake3::Hasher::new(),
            back: [0; CHALLENGE_LEN],
            back_fill: 0,
            started_ns: None,
            bytes_sent: 0,
            round_bytes: 0,
            best_round_bytes: u64::MAX,
            stale_rounds: 0,
            round_new_cpu_dirty: 0,
            round_started_ns: None,
            recent_rounds: RoundWindow::new(),
            throttle: Throttle::new(cfg.throttle),
            stats: SourceStats::default(),
            expected_stop_ns: None,
        })
    }

    /// Settings.
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// Hashing counters so far.
    pub fn tracker_stats(&self) -> TrackerStats {
        self.tracker.stats()
    }

    /// Bytes handed to the link so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn note(&mut self, page: GuestPage, flag: u8) -> Result<(), SourceError> {
        let before = self.tracker.flags(page);
        // gMig sees only the CPU's dirty log: its rounds
        // count nothing else.
        if flag == CPU_DIRTY && before & CPU_DIRTY == 0 {
            self.round_new_cpu_dirty += 1;
        }
        self.tracker.set_flags(page, flag)?;
        Ok(())
    }

    /// The CPU wrote `page` (its PTE dirty bit was set; the kernel clears it).
    pub fn report_cpu_dirty(&mut self, page: GuestPage) -> Result<(), SourceError> {
        self.note(page, CPU_DIRTY)
    }

    /// The scanner saw a GPU command that may write `page`.
    pub fn report_write_target(&mut self, page: GuestPage) -> Result<(), SourceError> {
        self.note(page, WRITE_TARGET)
    }

    /// The scanner could not bound what a command writes: from now on every
    /// page is a candidate (the `informed` policy falls back to hashing all).
    pub fn report_untracked_writes(&mut self) {
        self.untracked = true;
    }

    /// The share of GPU time the kernel should grant the guest's vGPU now:
    /// let only this share of its submissions through (see
    /// [`crate::throttle::Pacer`]). Full unless a throttling policy is in
    /// pre-copy and rounds stopped converging; full again from the stop on
    /// and after any failure.
    pub fn submission_share(&self) -> Share {
        match self.phase {
            Phase::Hello
            | Phase::AwaitChallenge { .. }
            | Phase::Round { .. }
            | Phase::Drain { .. }
            | Phase::WaitStop => self.throttle.share(),
            _ => Share::FULL,
        }
    }

    /// Whether the handshake succeeded (the destination knows the key).
    pub fn authenticated(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether the session encrypts its records.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Whether the source committed the handover: from then on the kernel
    /// must never resume the guest on its own (see [`crate::handover`]).
    pub fn committed(&self) -> bool {
        self.committed
    }

    /// The kernel stopped the vGPU after [`SourceStatus::StopGuest`].
    pub fn guest_stopped(&mut self, now_ns: u64) -> Result<(), SourceError> {
        if self.phase != Phase::WaitStop {
            return Err(SourceError::Misuse(
                "guest_stopped without a StopGuest request",
            ));
        }
        self.stats.stopped_at_ns = Some(now_ns);
        self.throttle.release();
        self.phase = Phase::EndMark;
        Ok(())
    }

    fn status(&self) -> SourceStatus {
        match self.phase {
            Phase::Hello | Phase::AwaitChallenge { .. } => SourceStatus::Handshake,
            Phase::Round { .. } | Phase::Drain { .. } => SourceStatus::Precopy,
            Phase::WaitStop => SourceStatus::StopGuest,
            Phase::AwaitReady { .. } | Phase::Commit | Phase::Committing => {
                SourceStatus::AwaitingReady
            }
            Phase::AwaitResumed { .. } => SourceStatus::Committed,
            Phase::Completed => SourceStatus::Completed,
            Phase::Unconfirmed(e) => SourceStatus::Unconfirmed(e),
            _ => SourceStatus::StopCopy,
        }
    }

    /// Where the migration stands, for a progress line: `page_count` is
    /// the [`PageSource`]'s.
    pub fn progress(&self, page_count: usize) -> Progress {
        let n = page_count as u64;
        let passes = if self.hot_last() { 2 } else { 1 };
        let (phase, left) = match self.phase {
            Phase::Hello | Phase::AwaitChallenge { .. } => ("handshake", n),
            Phase::Round { cursor } => (
                "precopy",
                (n * passes).saturating_sub(cursor as u64) / passes,
            ),
            Phase::Drain { .. } | Phase::WaitStop => ("precopy", 0),
            Phase::Verify { cursor } | Phase::Final { cursor } => {
                ("stopcopy", n.saturating_sub(cursor as u64))
            }
            Phase::EndMark | Phase::Device { .. } | Phase::Cpu { .. } | Phase::Done => {
                ("stopcopy", 0)
            }
            Phase::AwaitReady { .. }
            | Phase::Commit
            | Phase::Committing
            | Phase::AwaitResumed { .. } => ("handover", 0),
            Phase::Completed => ("completed", 0),
            Phase::Unconfirmed(_) => ("unconfirmed", 0),
            Phase::Failed => ("failed", 0),
        };
        Progress {
            phase,
            round: self.stats.rounds,
            pages_sent: self.stats.precopy_pages + self.stats.stop_pages,
            pages_left: left,
            bytes: self.bytes_sent,
            expected_stop_ns: self.expected_stop_ns,
        }
    }

    /// Do a bounded amount of work. `now_ns` is a monotonic clock.
    pub fn poll<S: PageSource, L: Link>(
        &mut self,
        now_ns: u64,
        src: &mut S,
        link: &mut L,
    ) -> Result<SourceStatus, SourceError> {
        match self.phase {
            Phase::Failed => return Err(SourceError::Misuse("poll after the migration failed")),
            Phase::Completed => return Ok(SourceStatus::Completed),
            Phase::Unconfirmed(why) => return self.poll_unconfirmed(why, link),
            _ => {}
        }
        let r = self.poll_inner(now_ns, src, link);
        match r {
            // After the commit only the destination's own word that it
            // never resumes (a reject) lets the guest resume here.
            Err(e) if self.committed && !matches!(e, SourceError::Rejected(_)) => {
                self.phase = Phase::Unconfirmed(e);
                Ok(SourceStatus::Unconfirmed(e))
            }
            Err(e) => {
                self.phase = Phase::Failed;
                Err(e)
            }
            ok => ok,
        }
    }

    /// A late resumed still completes an unconfirmed handover, a late
    /// reject still fails it; other trouble changes nothing.
    fn poll_unconfirmed<L: Link>(
        &mut self,
        why: SourceError,
        link: &mut L,
    ) -> Result<SourceStatus, SourceError> {
        if let SourceError::Timeout(_) = why {
            match self.read_back(link) {
                Err(e @ SourceError::Rejected(_)) => {
                    self.phase = Phase::Failed;
                    return Err(e);
                }
                Err(e) => self.phase = Phase::Unconfirmed(e),
                Ok(()) => {}
            }
        }
        Ok(self.status())
    }

    fn poll_inner<S: PageSource, L: Link>(
        &mut self,
        now_ns: u64,
        src: &mut S,
        link: &mut L,
    ) -> Result<SourceStatus, SourceError> {
        self.started_ns.get_or_insert(now_ns);
        self.read_back(link)?;
        let mut work = 0u32;
        loop {
            if !self.flush(now_ns, link)? {
                return Ok(self.status());
            }
            if work >= self.cfg.work_per_poll {
                return Ok(self.status());
            }
            match self.phase {
                Phase::Hello => {
                    let init = Initiator::new(
                        &self.key,
                        &HelloRepr {
                            vgpu_type: self.cfg.vgpu_type,
                            encrypt: self.cfg.encrypt,
                            page_count: src.page_count() as u64,
                            nonce: self.nonce,
                        },
                    );
                    self.out[..HELLO_LEN].copy_from_slice(init.hello());
                    self.handshake = Some(init);
                    self.queue(HELLO_LEN);
                    self.phase = Phase::AwaitChallenge { since_ns: now_ns };
                }
                Phase::AwaitChallenge { since_ns } => {
                    return self.waiting(now_ns, since_ns, Wait::Challenge);
                }
                Phase::Round { cursor } => {
                    let n = src.page_count();
                    // `informed` walks its later rounds twice: first the
                    // pages it never had to re-send, then the hot ones (see
                    // `HOT`), so the round, and with it pre-copy, ends on
                    // the pages most likely to be dirtied again.
                    let passes = if self.hot_last() { 2 } else { 1 };
                    if cursor >= n * passes {
                        self.end_round(now_ns, n, link.unsent().unwrap_or(0));
                        continue;
                    }
                    work += 1;
                    self.phase = Phase::Round { cursor: cursor + 1 };
                    let page = src.page_at(cursor % n);
                    if passes == 2 && (self.tracker.flags(page) & HOT != 0) != (cursor >= n) {
                        // Not this pass's page: one flag lookup.
                        self.stats.skipped += 1;
                        continue;
                    }
                    self.round_page(page, src)?;
                }
                Phase::Drain { since_ns } => {
                    // Stop with an empty send buffer: draining pre-copy
                    // bytes after the stop would count as downtime. The
                    // guest keeps running meanwhile, and what it dirties is
                    // picked up at the stop. Bounded by the downtime budget
                    // in case the transport never reports empty.
                    let waited = now_ns.saturating_sub(since_ns);
                    if link.unsent().is_some_and(|n| n > 0) && waited < self.cfg.downtime_budget_ns
                    {
                        return Ok(SourceStatus::Precopy);
                    }
                    self.phase = Phase::WaitStop;
                }
                Phase::WaitStop => return Ok(SourceStatus::StopGuest),
                Phase::EndMark => {
                    self.emit(&RecordRepr::EndOfPrecopy {
                        rounds: self.stats.rounds,
                    })?;
                    self.phase = if self.cfg.policy == Policy::GmigOneShot {
                        Phase::Verify { cursor: 0 }
                    } else {
                        Phase::Final { cursor: 0 }
                    };
                }
                Phase::Verify { cursor } => {
                    if cursor >= src.page_count() {
                        self.phase = Phase::Final { cursor: 0 };
                        continue;
                    }
                    work += 1;
                    self.phase = Phase::Verify { cursor: cursor + 1 };
                    self.verify_page(src.page_at(cursor), src)?;
                }
                Phase::Final { cursor } => {
                    if cursor >= src.page_count() {
                        self.phase = Phase::Device { offset: 0 };
                        continue;
                    }
                    work += 1;
                    self.phase = Phase::Final { cursor: cursor + 1 };
                    self.final_page(src.page_at(cursor), src)?;
                }
                Phase::Device { offset } => {
                    let total = src.device_state_len();
                    let next = self.state_chunk(true, offset, total, src)?;
                    self.phase = if next >= total {
                        Phase::Cpu { offset: 0 }
                    } else {
                        Phase::Device { offset: next }
                    };
                }
                Phase::Cpu { offset } => {
                    let total = src.cpu_state_len();
                    let next = self.state_chunk(false, offset, total, src)?;
                    self.phase = if next >= total {
                        Phase::Done
                    } else {
                        Phase::Cpu { offset: next }
                    };
                }
                Phase::Done => {
                    self.done_seq = self.emit(&RecordRepr::Done {
                        page_records: self.page_records,
                    })?;
                    self.phase = Phase::AwaitReady { since_ns: None };
                }
                Phase::AwaitReady { since_ns } => {
                    // The wait starts once the whole stream is on the link.
                    let since_ns = since_ns.unwrap_or(now_ns);
                    self.phase = Phase::AwaitReady {
                        since_ns: Some(since_ns),
                    };
                    return self.waiting(now_ns, since_ns, Wait::Ready);
                }
                Phase::Commit => {
                    self.commit_seq = self.emit(&RecordRepr::Commit {
                        done_seq: self.done_seq,
                    })?;
                    self.phase = Phase::Committing;
                }
                Phase::Committing => {
                    // The commit's last byte is on the link: the commit
                    // point (see `crate::handover`).
                    self.committed = true;
                    self.phase = Phase::AwaitResumed { since_ns: now_ns };
                }
                Phase::AwaitResumed { since_ns } => {
                    return self.waiting(now_ns, since_ns, Wait::Resumed);
                }
                Phase::Completed | Phase::Unconfirmed(_) | Phase::Failed => {
                    return Ok(self.status())
                }
            }
        }
    }

    /// Still waiting since `since_ns` for `what`: the status, or a timeout.
    /// The answer to the commit is awaited longer than the destination
    /// awaits the commit ([`answer_wait_ns`]), so that its reject is heard.
    fn waiting(&self, now_ns: u64, since_ns: u64, what: Wait) -> Result<SourceStatus, SourceError> {
        let limit_ns = match what {
            Wait::Resumed => answer_wait_ns(self.cfg.timeout_ns),
            _ => self.cfg.timeout_ns,
        };
        if now_ns.saturating_sub(since_ns) > limit_ns {
            return Err(SourceError::Timeout(what));
        }
        Ok(self.status())
    }

    fn state_chunk<S: PageSource>(
        &mut self,
        device: bool,
        offset: usize,
        total: usize,
        src: &mut S,
    ) -> Result<usize, SourceError> {
        let total32 = u32::try_from(total).map_err(|_| SourceError::StateTooLarge(total))?;
        let n = (total - offset.min(total)).min(MAX_STATE_CHUNK);
        let chunk = &mut self.page[..n];
        if device {
            src.read_device_state(offset, chunk)?;
        } else {
            src.read_cpu_state(offset, chunk)?;
        }
        if offset == 0 {
            self.state_digest.reset();
        }
        self.state_digest.update(&self.page[..n]);
        let digest = (offset + n == total).then(|| *self.state_digest.finalize().as_bytes());
        let (data, offset32) = (&self.page[..n], offset as u32);
        let repr = if device {
            RecordRepr::DeviceState {
                offset: offset32,
                total: total32,
                data,
                digest: digest.as_ref(),
            }
        } else {
            RecordRepr::CpuState {
                offset: offset32,
                total: total32,
                data,
                digest: digest.as_ref(),
            }
        };
        let body = repr.emit_body(&mut self.out);
        let (_, len) = seal(&mut self.tx, &mut self.out, body)?;
        self.queue(len);
        Ok(offset + n)
    }

    /// Measured bandwidth in bytes/s (bytes handed to the link over time).
    fn bandwidth(&self, now_ns: u64) -> u64 {
        let elapsed = now_ns
            .saturating_sub(self.started_ns.unwrap_or(now_ns))
            .max(1);
        (u128::from(self.bytes_sent) * 1_000_000_000 / u128::from(elapsed)) as u64
    }

    /// A round ended; `unsent`: bytes the link still holds in its send
    /// buffer.
    fn end_round(&mut self, now_ns: u64, page_count: usize, unsent: usize) {
        // Past the bulk round an `informed` round sends what changed since
        // the round before: the candidates it hashed are every page the
        // guest may have written (all pages once writes are untracked), so
        // its bytes measure the dirty rate either way.
        let measured = self.cfg.policy.is_informed() && self.stats.rounds >= 2;
        let pending = match self.cfg.policy {
            Policy::StopAndCopy | Policy::Precopy => (page_count * PAGE_SIZE) as u64,
            Policy::GmigOneShot | Policy::GmigTpds => self.round_new_cpu_dirty * PAGE_SIZE as u64,
            Policy::Informed | Policy::InformedThrottle if measured => self.round_bytes,
            Policy::Informed | Policy::InformedThrottle => u64::MAX,
        };
        let bandwidth = self.bandwidth(now_ns);
        let round_ns = now_ns.saturating_sub(self.round_started_ns.unwrap_or(now_ns));
        self.round_started_ns = Some(now_ns);
        let fits = u128::from(pending) * 1_000_000_000
            <= u128::from(bandwidth) * u128::from(self.cfg.downtime_budget_ns);
        self.expected_stop_ns = (pending != u64::MAX && bandwidth > 0).then(|| {
            let ns = u128::from(pending) * 1_000_000_000 / u128::from(bandwidth);
            u64::try_from(ns).unwrap_or(u64::MAX)
        });
        // `informed` keeps iterating until its rounds stop shrinking. A
        // round re-sends what was dirtied during the one before, so round
        // length converges to a fixed point where the link just keeps up
        // with the hot set; the pages dirty at the stop are those dirtied
        // during the last round, fewest once rounds are shortest. The bulk
        // round leaves a long round 2 (everything dirtied during the bulk),
        // and convergence from there is geometric but slow (each round
        // about 0.6-0.8 of the previous one's excess on the presets), so
        // a round counts as progress when it beats the best so far by 2%,
        // and the policy stops after two rounds without progress.
        let shrinking = if self.cfg.policy.is_informed() && self.stats.rounds >= 2 {
            if u128::from(self.round_bytes) * 50 < u128::from(self.best_round_bytes) * 49 {
                self.best_round_bytes = self.round_bytes;
                self.stale_rounds = 0;
            } else {
                self.stale_rounds += 1;
            }
            self.stale_rounds < 2
        } else {
            false
        };
        let mut stop = (fits && !shrinking) || self.stats.rounds >= self.cfg.max_rounds;
        // `informed-throttle`: where `informed` would stop with more dirty
        // than the throttle's target, slow the guest and go on (see
        // `crate::throttle`). The round cap still bounds pre-copy.
        if self.cfg.policy.throttles() && measured && self.stats.rounds < self.cfg.max_rounds {
            // What the stop would send: what the guest dirties from the
            // start of this round (the hot pages, visited last, were last
            // sent at the end of the round before) until the stop, which
            // waits for the send buffer to drain (see `Phase::Drain`), at
            // the rate recent rounds show. Where the link paces the rounds,
            // that is about this round's bytes plus the buffer's fill.
            self.recent_rounds.push(self.round_bytes, round_ns);
            let cost_ns = if bandwidth == 0 {
                u64::MAX
            } else {
                let bw = u128::from(bandwidth);
                let drain_ns = u128::from(unsent as u64) * 1_000_000_000 / bw;
                let horizon = u64::try_from(drain_ns)
                    .unwrap_or(u64::MAX)
                    .saturating_add(round_ns);
                let bytes = self
                    .recent_rounds
                    .bytes_over(horizon)
                    .unwrap_or(self.round_bytes.saturating_add(unsent as u64));
                let ns = u128::from(bytes) * 1_000_000_000 / bw;
                u64::try_from(ns).unwrap_or(u64::MAX)
            };
            match self.throttle.round_end(!shrinking, cost_ns) {
                ThrottleAdvice::Defer => {}
                ThrottleAdvice::Hold => stop = false,
                ThrottleAdvice::Lowered => {
                    // Judge the new share by the rounds that follow.
                    stop = false;
                    self.best_round_bytes = self.round_bytes;
                    self.stale_rounds = 0;
                }
                ThrottleAdvice::Stop => stop = true,
            }
            self.stats.throttle = self.throttle.stats();
        }
        if stop {
            self.phase = if self.cfg.policy.is_informed() {
                Phase::Drain { since_ns: now_ns }
            } else {
                Phase::WaitStop
            };
        } else {
            self.stats.rounds += 1;
            self.phase = Phase::Round { cursor: 0 };
        }
        self.round_bytes = 0;
        self.round_new_cpu_dirty = 0;
    }

    /// Whether this round walks cold pages first and hot pages last.
    fn hot_last(&self) -> bool {
        self.cfg.policy.is_informed() && self.stats.rounds >= 2
    }

    fn read<S: PageSource>(&mut self, page: GuestPage, src: &mut S) -> Result<(), SourceError> {
        self.stats.pages_read += 1;
        src.read_page(page, &mut self.page)?;
        Ok(())
    }

    fn is_candidate(&self, page: GuestPage) -> bool {
        self.untracked || self.tracker.flags(page) & (CPU_DIRTY | WRITE_TARGET) != 0
    }

    fn round_page<S: PageSource>(
        &mut self,
        page: GuestPage,
        src: &mut S,
    ) -> Result<(), SourceError> {
        let first = self.stats.rounds == 1;
        match self.cfg.policy {
            Policy::StopAndCopy | Policy::Precopy => {
                self.read(page, src)?;
                self.send_full(page)?;
            }
            Policy::GmigOneShot | Policy::GmigTpds => {
                if first || self.tracker.flags(page) & CPU_DIRTY != 0 {
                    self.read(page, src)?;
                    let tag = self.tracker.tag_of(&self.page);
                    self.send_full(page)?;
                    self.tracker.record_sent(page, tag, &self.page)?;
                } else {
                    self.stats.skipped += 1;
                }
            }
            Policy::Informed | Policy::InformedThrottle => {
                if first {
                    self.read(page, src)?;
                    let tag = self.tracker.tag_of(&self.page);
                    self.send_informed(page, tag)?;
                } else {
                    self.recheck_informed(page, src)?;
                }
            }
        }
        Ok(())
    }

    fn verify_page<S: PageSource>(
        &mut self,
        page: GuestPage,
        src: &mut S,
    ) -> Result<(), SourceError> {
        if self.tracker.flags(page) & CPU_DIRTY != 0 {
            return Ok(self.tracker.set_flags(page, PENDING)?);
        }
        self.read(page, src)?;
        if self.tracker.verify(page, &self.page, false) != Verdict::Clean {
            self.tracker.set_flags(page, PENDING)?;
        }
        Ok(())
    }

    fn final_page<S: PageSource>(
        &mut self,
        page: GuestPage,
        src: &mut S,
    ) -> Result<(), SourceError> {
        match self.cfg.policy {
            Policy::StopAndCopy | Policy::Precopy => {
                self.read(page, src)?;
                self.send_full(page)?;
            }
            Policy::GmigOneShot => {
                if self.tracker.flags(page) & PENDING != 0 {
                    self.read(page, src)?;
                    self.send_full(page)?;
                    self.tracker.clear_flags(page, PENDING | CPU_DIRTY);
                } else {
                    self.stats.skipped += 1;
                }
            }
            Policy::GmigTpds => {
                self.read(page, src)?;
                let dirty = self.tracker.flags(page) & CPU_DIRTY != 0
                    || self.tracker.verify(page, &self.page, true) != Verdict::Clean;
                if dirty {
                    self.send_full(page)?;
                }
            }
            Policy::Informed | Policy::InformedThrottle => self.recheck_informed(page, src)?,
        }
        Ok(())
    }

    fn recheck_informed<S: PageSource>(
        &mut self,
        page: GuestPage,
        src: &mut S,
    ) -> Result<(), SourceError> {
        if !self.is_candidate(page) {
            self.stats.skipped += 1;
            return Ok(());
        }
        self.read(page, src)?;
        match self.tracker.verify(page, &self.page, false) {
            Verdict::Clean => {
                self.tracker.clear_flags(page, CPU_DIRTY | WRITE_TARGET);
                Ok(())
            }
            Verdict::Dirty { tag } => {
                let tag = match tag {
                    Some(t) => t,
                    None => self.tracker.tag_of(&self.page),
                };
                self.send_informed(page, tag)
            }
        }
    }

    /// Send `self.page` as a zero, delta or full record (informed policy).
    /// Send `self.page` as a zero, delta or full record (informed policy).
    fn send_informed(&mut self, page: GuestPage, tag: Tag) -> Result<(), SourceError> {
        let base = self.tracker.sent_tag(page);
        if tag[0] == zero_page_xxh3() && is_zero(&self.page) {
            self.stats.zero_pages += 1;
            self.emit_page(&RecordRepr::ZeroPage { page })?;
        } else if let (Some(old), Some(base)) = (self.cache.get(page), base) {
            self.stats.delta_tries += 1;
            let at = RECORD_HEAD_LEN + DELTA_PREFIX;
            match delta::encode(old, &self.page, &mut self.out[at..at + DELTA_LIMIT]) {
                Some(n) if n > 0 => {
                    self.stats.delta_pages += 1;
                    let body = emit_delta_body_in_place(page, base[0], tag[0], n, &mut self.out);
                    let (_, len) = seal(&mut self.tx, &mut self.out, body)?;
                    self.page_records += 1;
                    self.count_page();
                    self.queue(len);
                }
                _ => self.send_full(page)?,
            }
        } else {
            self.send_full(page)?;
        }
        // Only pages sent again (rewritten since the bulk round, so likely
        // hot) enter the cache: caching the bulk round would let cold pages
        // evict the hot set.
        if self.stats.rounds >= 2 || self.stats.stopped_at_ns.is_some() {
            self.cache.put(page, &self.page);
            self.tracker.set_flags(page, HOT)?;
        }
        self.tracker.record_sent(page, tag, &self.page)?;
        Ok(())
    }

    fn send_full(&mut self, page: GuestPage) -> Result<(), SourceError> {
        let body = RecordRepr::Page {
            page,
            data: &self.page,
        }
        .emit_body(&mut self.out);
        let (_, len) = seal(&mut self.tx, &mut self.out, body)?;
        self.page_records += 1;
        self.count_page();
        self.queue(len);
        Ok(())
    }

    fn emit_page(&mut self, repr: &RecordRepr<'_>) -> Result<(), SourceError> {
        self.page_records += 1;
        self.count_page();
        self.emit(repr)?;
        Ok(())
    }

    fn count_page(&mut self) {
        if self.stats.stopped_at_ns.is_some() {
            self.stats.stop_pages += 1;
        } else {
            self.stats.precopy_pages += 1;
        }
    }

    /// Seal and queue `repr`; returns its sequence number.
    fn emit(&mut self, repr: &RecordRepr<'_>) -> Result<u32, SourceError> {
        let body = repr.emit_body(&mut self.out);
        let (seq, len) = seal(&mut self.tx, &mut self.out, body)?;
        self.queue(len);
        Ok(seq)
    }

    fn queue(&mut self, len: usize) {
        self.out_len = len;
        self.out_pos = 0;
        let len = len as u64;
        self.round_bytes += len;
        if self.stats.stopped_at_ns.is_some() {
            self.stats.stop_bytes += len;
        } else {
            self.stats.precopy_bytes += len;
        }
    }

    /// Push the queued bytes; true when nothing is left queued. A link that
    /// takes nothing for the timeout fails the migration.
    fn flush<L: Link>(&mut self, now_ns: u64, link: &mut L) -> Result<bool, SourceError> {
        while self.out_pos < self.out_len {
            let n = link.send(&self.out[self.out_pos..self.out_len])?;
            if n == 0 {
                let since = *self.stalled_since_ns.get_or_insert(now_ns);
                if now_ns.saturating_sub(since) > self.cfg.timeout_ns {
                    return Err(SourceError::Timeout(Wait::SendRoom));
                }
                return Ok(false);
            }
            self.stalled_since_ns = None;
            self.out_pos += n;
            self.bytes_sent += n as u64;
        }
        Ok(true)
    }

    /// Read the back channel: the challenge during the handshake, then
    /// records (ready, resumed, reject).
    fn read_back<L: Link>(&mut self, link: &mut L) -> Result<(), SourceError> {
        loop {
            let need = match self.phase {
                // Nothing more is expected after the resumed: a close that
                // follows it (the destination is done) is no failure.
                Phase::Hello | Phase::Completed => return Ok(()),
                Phase::AwaitChallenge { .. } => CHALLENGE_LEN,
                _ => EMPTY_RECORD_LEN,
            };
            while self.back_fill < need {
                match link.recv(&mut self.back[self.back_fill..need])? {
                    0 => return Ok(()),
                    n => self.back_fill += n,
                }
            }
            self.back_fill = 0;
            if need == CHALLENGE_LEN {
                self.challenge(link)?;
            } else {
                self.back_record()?;
            }
        }
    }

    fn challenge<L: Link>(&mut self, link: &mut L) -> Result<(), SourceError> {
        let init = self
            .handshake
            .as_ref()
            .ok_or(SourceError::Misuse("challenge without a hello"))?;
        if self.out_pos < self.out_len {
            return Err(SourceError::BadReply(WireError::Order(
                "challenge before the whole hello was sent",
            )));
        }
        let (proof, result) = match init.finish(&self.back[..CHALLENGE_LEN]) {
            Ok(est) => (est.proof, Ok(est.session)),
            Err(InitiatorError::KeyMismatch { proof }) => (proof, Err(SourceError::KeyMismatch)),
            Err(InitiatorError::Refused(r)) => return Err(SourceError::Refused(r)),
            Err(InitiatorError::Wire(e)) => return Err(SourceError::BadReply(e)),
        };
        self.out[..PROOF_LEN].copy_from_slice(&proof);
        self.queue(PROOF_LEN);
        let session = match result {
            Ok(s) => s,
            Err(e) => {
                // Our proof lets the destination find the mismatch itself.
                let _ = link.send(&self.out[..PROOF_LEN]);
                return Err(e);
            }
        };
        self.tx = Some(session.tx);
        self.rx = Some(session.rx);
        self.encrypted = session.encrypt;
        self.handshake = None;
        self.phase = if self.cfg.policy == Policy::StopAndCopy {
            Phase::WaitStop
        } else {
            self.stats.rounds = 1;
            Phase::Round { cursor: 0 }
        };
        Ok(())
    }

    /// A back-channel record: a reject fails, a ready lets the source
    /// commit, a resumed completes.
    fn back_record(&mut self) -> Result<(), SourceError> {
        let rx = self.rx.as_mut().ok_or(SourceError::Misuse(
            "back-channel record before the handshake",
        ))?;
        let rec = &mut self.back[..EMPTY_RECORD_LEN];
        let view = Record::new_checked(&rec[..]).map_err(SourceError::BadReply)?;
        if view.total_len() != EMPTY_RECORD_LEN {
            return Err(SourceError::BadReply(WireError::BadLength {
                kind: view.kind(),
                len: view.payload_len(),
            }));
        }
        rx.open(rec).map_err(SourceError::BadReply)?;
        let repr =
            RecordRepr::parse(&Record::new_unchecked(&rec[..])).map_err(SourceError::BadReply)?;
        match (repr, self.phase) {
            (RecordRepr::Reject { reason }, _) => Err(SourceError::Rejected(reason)),
            (RecordRepr::Ready { done_seq }, Phase::AwaitReady { .. })
                if done_seq == self.done_seq =>
            {
                self.phase = Phase::Commit;
                Ok(())
            }
            (
                RecordRepr::Resumed { commit_seq },
                Phase::AwaitResumed { .. } | Phase::Unconfirmed(_),
            ) if commit_seq == self.commit_seq && self.committed => {
                self.phase = Phase::Completed;
                Ok(())
            }
            _ => Err(SourceError::BadReply(WireError::Order(
                "back-channel record out of turn",
            ))),
        }
    }
}

/// Seal the record body in `out[..body]` with the session's sealer; returns
/// (sequence number, record length).
fn seal(tx: &mut Option<Sealer>, out: &mut [u8], body: usize) -> Result<(u32, usize), SourceError> {
    let tx = tx
        .as_mut()
        .ok_or(SourceError::Misuse("record before the handshake"))?;
    let seq = tx.next_seq();
    let len = tx.seal(out, body).map_err(|_| SourceError::StreamTooLong)?;
    Ok((seq, len))
}
