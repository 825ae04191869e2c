//! The destination side: a polled receiver that runs the handshake,
//! validates the stream and applies it to a [`PageSink`], then takes part
//! in the handover ([`crate::handover`]).
//!
//! The kernel drives it from its main loop:
//!
//! 1. calls [`Receiver::poll`] with the current time while records arrive;
//! 2. on [`ReceiverStatus::Received`] everything arrived and passed every
//!    check (the state blobs' digests included): it restores the vGPU
//!    without running it, then calls [`Receiver::ready`], or
//!    [`Receiver::abort`] if the restore failed;
//! 3. on [`ReceiverStatus::Resume`] the source has committed: it runs the
//!    guest, then calls [`Receiver::resumed`];
//! 4. on any error it frees everything it allocated; the source learns why
//!    from a reject record where the session allows one.
//!
//! A destination needs a [`MigrationKey`] to be built at all: it does not
//! listen without one.

use core::fmt;

use crate::auth::{
    fresh_nonce, AwaitProof, Entropy, Expectation, Initiator, MigrationKey, Opener, ProofError,
    Responder, Sealer,
};
use crate::delta;
use crate::digest::xxh3;
use crate::handover::{Wait, DEFAULT_TIMEOUT_NS};
use crate::link::{Link, LinkError};
use crate::page::{MemoryError, PageBuf, PageRange, PageSink, PAGE_SIZE};
use crate::wire::{
    check_prefix, HelloRepr, Record, RecordRepr, RejectReason, StreamLimits, StreamState,
    WireError, CHALLENGE_LEN, EMPTY_RECORD_LEN, HELLO_LEN, MAX_PAYLOAD, MAX_RECORD, PROOF_LEN,
    RECORD_HEAD_LEN,
};

/// Why the destination gave up. In every case it never resumes the guest
/// and frees what it allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveError {
    /// The source's stream is bad (peer's fault, or the wire's).
    Stream(WireError),
    /// The source's handshake proof does not match: it does not know the
    /// migration key (or the handshake was tampered with).
    KeyMismatch,
    /// The local sink failed (this side's fault).
    Memory(MemoryError),
    /// The link broke.
    Link(LinkError),
    /// The source did not send in time.
    Timeout(Wait),
    /// The kernel gave up ([`Receiver::abort`]), for this reason.
    Aborted(RejectReason),
    /// The API was used out of order (monitor bug).
    Misuse(&'static str),
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(e) => write!(f, "{e}"),
            Self::KeyMismatch => f.write_str(
                "peer does not know the migration key: the source's handshake proof does not \
                 match (a different migrate_key= on the two sides, or a tampered handshake)",
            ),
            Self::Memory(e) => write!(f, "destination: {e}"),
            Self::Link(e) => write!(f, "{e} before the migration was complete"),
            Self::Timeout(w) => write!(f, "timed out waiting for {w}"),
            Self::Aborted(r) => write!(f, "destination gave up: {r}"),
            Self::Misuse(w) => write!(f, "receiver misused (monitor bug): {w}"),
        }
    }
}

impl From<WireError> for ReceiveError {
    fn from(e: WireError) -> Self {
        Self::Stream(e)
    }
}
impl From<MemoryError> for ReceiveError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

impl ReceiveError {
    /// The reason a reject record gives the source.
    fn reject_reason(self) -> RejectReason {
        match self {
            Self::Stream(_) | Self::KeyMismatch => RejectReason::BadStream,
            Self::Memory(_) => RejectReason::DestinationMemory,
            Self::Link(_) | Self::Misuse(_) => RejectReason::Link,
            Self::Timeout(_) => RejectReason::Timeout,
            Self::Aborted(r) => r,
        }
    }
}

/// What the destination was set up for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// vGPU type index the stream must carry.
    pub vgpu_type: u16,
    /// The guest's own pages: every page record must name one, and the
    /// source's guest must have as many.
    pub pages: PageRange,
    /// Largest device-state blob accepted.
    pub max_device_state: u32,
    /// Largest CPU state blob accepted.
    pub max_cpu_state: u32,
    /// Want encrypted records (`migrate_encrypt=on`); the session encrypts
    /// if either side asks.
    pub encrypt: bool,
    /// Longest wait for the source without progress, see
    /// [`crate::handover`].
    pub timeout_ns: u64,
}

impl ReceiverConfig {
    /// A destination for a guest of `pages` and vGPU type `vgpu_type`:
    /// state blobs up to 4 MiB, authenticated records, 5 s timeout.
    pub fn new(vgpu_type: u16, pages: PageRange) -> Self {
        Self {
            vgpu_type,
            pages,
            max_device_state: 4 << 20,
            max_cpu_state: 4 << 20,
            encrypt: false,
            timeout_ns: DEFAULT_TIMEOUT_NS,
        }
    }

    fn limits(&self) -> StreamLimits {
        StreamLimits {
            pages: self.pages,
            max_device_state: self.max_device_state,
            max_cpu_state: self.max_cpu_state,
        }
    }
}

/// Receiver progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverStatus {
    /// The handshake runs.
    Handshake,
    /// Pre-copy records arriving (the source guest still runs).
    Precopy,
    /// The source stopped; stop-and-copy records arriving.
    StopCopy,
    /// Everything arrived and checked out: restore the vGPU (without
    /// running it), then call [`Receiver::ready`] or [`Receiver::abort`].
    Received,
    /// Ready sent; waiting for the source's commit.
    AwaitingCommit,
    /// The source committed: run the guest here, then call
    /// [`Receiver::resumed`].
    Resume,
    /// The guest runs here; the resumed acknowledgement is going out: poll
    /// on until [`ReceiverStatus::Completed`].
    Acknowledging,
    /// Resumed and acknowledged: the migration is complete here.
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Hello,
    Proof,
    Records,
    Received,
    AwaitCommit,
    Resume,
    Acknowledging,
    Completed,
    Failed(ReceiveError),
}

/// Counters of the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Records applied.
    pub records: u64,
    /// Bytes received.
    pub bytes: u64,
}

/// Room for what the destination may have to send at once: a challenge,
/// or a back-channel record still going out plus a reject behind it.
const REPLY_ROOM: usize = CHALLENGE_LEN + 2 * EMPTY_RECORD_LEN;

/// The destination side of one migration.
#[derive(Debug)]
pub struct Receiver {
    cfg: ReceiverConfig,
    phase: Phase,
    responder: Responder,
    pending: Option<AwaitProof>,
    tx: Option<Sealer>,
    rx: Option<Opener>,
    encrypted: bool,
    state: StreamState,
    buf: [u8; MAX_RECORD],
    fill: usize,
    page: PageBuf,
    reply: [u8; REPLY_ROOM],
    reply_len: usize,
    reply_pos: usize,
    acknowledged: bool,
    last_progress_ns: Option<u64>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A destination set up by `cfg`, authenticating with `key`; `entropy`
    /// gives the handshake's nonce.
    pub fn new(cfg: ReceiverConfig, key: &MigrationKey, entropy: &mut impl Entropy) -> Self {
        let expect = Expectation {
            vgpu_type: cfg.vgpu_type,
            page_count: cfg.pages.count(),
            encrypt: cfg.encrypt,
        };
        Self {
            cfg,
            phase: Phase::Hello,
            responder: Responder::new(key, fresh_nonce(entropy), expect),
            pending: None,
            tx: None,
            rx: None,
            encrypted: false,
            state: StreamState::new(cfg.limits()),
            buf: [0; MAX_RECORD],
            fill: 0,
            page: [0; PAGE_SIZE],
            reply: [0; REPLY_ROOM],
            reply_len: 0,
            reply_pos: 0,
            acknowledged: false,
            last_progress_ns: None,
            stats: ReceiverStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Whether the handshake succeeded (the source knows the key).
    pub fn authenticated(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether the session encrypts its records.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Whether the resumed acknowledgement was handed to the link (the
    /// source completes when it arrives).
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    fn status(&self) -> ReceiverStatus {
        match self.phase {
            Phase::Hello | Phase::Proof => ReceiverStatus::Handshake,
            Phase::Records if self.state.is_stopped() => ReceiverStatus::StopCopy,
            Phase::Records => ReceiverStatus::Precopy,
            Phase::Received => ReceiverStatus::Received,
            Phase::AwaitCommit => ReceiverStatus::AwaitingCommit,
            Phase::Resume => ReceiverStatus::Resume,
            Phase::Acknowledging => ReceiverStatus::Acknowledging,
            Phase::Completed | Phase::Failed(_) => ReceiverStatus::Completed,
        }
    }

    /// Receive and apply what has arrived; at most `max_records` records.
    /// `now_ns` is a monotonic clock.
    pub fn poll<K: PageSink, L: Link>(
        &mut self,
        now_ns: u64,
        sink: &mut K,
        link: &mut L,
        max_records: u32,
    ) -> Result<ReceiverStatus, ReceiveError> {
        match self.phase {
            Phase::Failed(e) => {
                // Keep pushing the refusal or reject out; report the error.
                let _ = self.flush_reply(link);
                return Err(e);
            }
            Phase::Completed | Phase::Received | Phase::Resume => return Ok(self.status()),
            Phase::Acknowledging => {
                // The guest runs here whatever becomes of the acknowledgement.
                match self.flush_reply(link) {
                    Ok(true) => {
                        self.acknowledged = true;
                        self.phase = Phase::Completed;
                    }
                    Ok(false) => return Ok(ReceiverStatus::Acknowledging),
                    Err(_) => self.phase = Phase::Completed,
                }
                return Ok(ReceiverStatus::Completed);
            }
            _ => {}
        }
        self.last_progress_ns.get_or_insert(now_ns);
        match self.poll_inner(now_ns, sink, link, max_records) {
            Ok(s) => Ok(s),
            Err(e) => Err(self.fail(e, link)),
        }
    }

    /// Everything is restored here: send ready and wait for the commit.
    pub fn ready<L: Link>(&mut self, now_ns: u64, link: &mut L) -> Result<(), ReceiveError> {
        if self.phase != Phase::Received {
            return Err(ReceiveError::Misuse("ready before the stream was received"));
        }
        let done_seq = self
            .state
            .done_seq()
            .ok_or(ReceiveError::Misuse("ready without a done record"))?;
        self.send_record(&RecordRepr::Ready { done_seq })?;
        self.last_progress_ns = Some(now_ns);
        self.phase = Phase::AwaitCommit;
        if let Err(e) = self.flush_reply(link) {
            return Err(self.fail(ReceiveError::Link(e), link));
        }
        Ok(())
    }

    /// The guest runs here now: acknowledge the commit (poll on until
    /// [`ReceiverStatus::Completed`] to push the acknowledgement out).
    pub fn resumed<L: Link>(&mut self, link: &mut L) -> Result<(), ReceiveError> {
        if self.phase != Phase::Resume {
            return Err(ReceiveError::Misuse("resumed without a commit"));
        }
        let commit_seq = self
            .state
            .commit_seq()
            .ok_or(ReceiveError::Misuse("resumed without a commit record"))?;
        self.send_record(&RecordRepr::Resumed { commit_seq })?;
        self.phase = Phase::Acknowledging;
        if let Ok(true) = self.flush_reply(link) {
            self.acknowledged = true;
            self.phase = Phase::Completed;
        }
        Ok(())
    }

    /// Give up (before the commit): the source is told `reason` and this
    /// side never resumes. After the commit the guest is this side's to
    /// run: that is a misuse.
    pub fn abort<L: Link>(&mut self, reason: RejectReason, link: &mut L) -> ReceiveError {
        match self.phase {
            Phase::Resume | Phase::Acknowledging | Phase::Completed => {
                ReceiveError::Misuse("abort after the source committed")
            }
            Phase::Failed(e) => e,
            _ => self.fail(ReceiveError::Aborted(reason), link),
        }
    }

    /// Enter the failed state (never to resume), queueing a reject for the
    /// source where the session allows an authentic one.
    fn fail<L: Link>(&mut self, e: ReceiveError, link: &mut L) -> ReceiveError {
        if self.tx.is_some() {
            let _ = self.send_record(&RecordRepr::Reject {
                reason: e.reject_reason(),
            });
        }
        self.phase = Phase::Failed(e);
        let _ = self.flush_reply(link);
        e
    }

    /// Seal `repr` into the reply queue.
    fn send_record(&mut self, repr: &RecordRepr<'_>) -> Result<(), ReceiveError> {
        let tx = self
            .tx
            .as_mut()
            .ok_or(ReceiveError::Misuse("record before the handshake"))?;
        if self.reply_pos == self.reply_len {
            (self.reply_pos, self.reply_len) = (0, 0);
        }
        let at = self.reply_len;
        if at + repr.wire_len() > REPLY_ROOM {
            return Err(ReceiveError::Misuse("reply queue full"));
        }
        let body = repr.emit_body(&mut self.reply[at..]);
        let len = tx
            .seal(&mut self.reply[at..], body)
            .map_err(|_| ReceiveError::Misuse("back channel out of sequence numbers"))?;
        self.reply_len += len;
        Ok(())
    }

    fn flush_reply<L: Link>(&mut self, link: &mut L) -> Result<bool, LinkError> {
        while self.reply_pos < self.reply_len {
            let n = link.send(&self.reply[self.reply_pos..self.reply_len])?;
            if n == 0 {
                return Ok(false);
            }
            self.reply_pos += n;
        }
        Ok(true)
    }

    /// Fill `buf` up to `need` bytes; true when complete. Silence longer
    /// than the timeout fails with what was awaited.
    fn fill_to<L: Link>(
        &mut self,
        now_ns: u64,
        link: &mut L,
        need: usize,
        waiting_for: Wait,
    ) -> Result<bool, ReceiveError> {
        while self.fill < need {
            match link.recv(&mut self.buf[self.fill..need]) {
                Ok(0) => {
                    let since = self.last_progress_ns.unwrap_or(now_ns);
                    if now_ns.saturating_sub(since) > self.cfg.timeout_ns {
                        return Err(ReceiveError::Timeout(waiting_for));
                    }
                    return Ok(false);
                }
                Ok(n) => {
                    self.fill += n;
                    self.stats.bytes += n as u64;
                    self.last_progress_ns = Some(now_ns);
                }
                // The source ended the stream before the migration did.
                Err(LinkError::Closed) => return Err(WireError::Truncated.into()),
                Err(e) => return Err(ReceiveError::Link(e)),
            }
        }
        Ok(true)
    }

    fn poll_inner<K: PageSink, L: Link>(
        &mut self,
        now_ns: u64,
        sink: &mut K,
        link: &mut L,
        max_records: u32,
    ) -> Result<ReceiverStatus, ReceiveError> {
        self.flush_reply(link).map_err(ReceiveError::Link)?;
        if self.phase == Phase::Hello {
            // Magic and version first: a peer of another version is named
            // as such, whatever else its first bytes hold.
            if !self.fill_to(now_ns, link, 6, Wait::Hello)? {
                return Ok(self.status());
            }
            if let Err(e) = check_prefix(&self.buf[..6]) {
                return Err(self.refuse(e));
            }
            if !self.fill_to(now_ns, link, HELLO_LEN, Wait::Hello)? {
                return Ok(self.status());
            }
            let answer = self.responder.answer(&self.buf[..HELLO_LEN]);
            self.reply[..CHALLENGE_LEN].copy_from_slice(&answer.challenge);
            (self.reply_pos, self.reply_len) = (0, CHALLENGE_LEN);
            self.pending = Some(answer.outcome?);
            self.fill = 0;
            self.phase = Phase::Proof;
            self.flush_reply(link).map_err(ReceiveError::Link)?;
        }
        if self.phase == Phase::Proof {
            if !self.fill_to(now_ns, link, PROOF_LEN, Wait::Proof)? {
                return Ok(self.status());
            }
            self.fill = 0;
            let pending = self
                .pending
                .take()
                .ok_or(ReceiveError::Misuse("proof without a challenge"))?;
            let session = pending.check(&self.buf[..PROOF_LEN]).map_err(|e| match e {
                ProofError::Wire(w) => ReceiveError::Stream(w),
                ProofError::KeyMismatch => ReceiveError::KeyMismatch,
            })?;
            self.tx = Some(session.tx);
            self.rx = Some(session.rx);
            self.encrypted = session.encrypt;
            self.phase = Phase::Records;
        }
        let waiting_for = if self.phase == Phase::AwaitCommit {
            Wait::Commit
        } else {
            Wait::Stream
        };
        for _ in 0..max_records {
            if !self.fill_to(now_ns, link, RECORD_HEAD_LEN, waiting_for)? {
                return Ok(self.status());
            }
            let head = Record::new_unchecked(&self.buf[..RECORD_HEAD_LEN]);
            let len = head.payload_len();
            if len as usize > MAX_PAYLOAD {
                return Err(WireError::BadLength {
                    kind: head.kind(),
                    len,
                }
                .into());
            }
            let total = head.total_len();
            if !self.fill_to(now_ns, link, total, waiting_for)? {
                return Ok(self.status());
            }
            self.fill = 0;
            self.apply(sink, total)?;
            self.stats.records += 1;
            if self.state.commit_seq().is_some() {
                self.phase = Phase::Resume;
                return Ok(ReceiverStatus::Resume);
            }
            if self.state.is_done() {
                // Nothing more is read until the kernel restored the vGPU.
                self.phase = Phase::Received;
                return Ok(ReceiverStatus::Received);
            }
        }
        Ok(self.status())
    }

    /// A hello this side cannot take: answer with a refusal (the source's
    /// reason) and fail.
    fn refuse(&mut self, e: WireError) -> ReceiveError {
        let mut c = [0u8; CHALLENGE_LEN];
        crate::wire::ChallengeRepr::refused(crate::wire::Refusal::for_hello_error(e)).emit(&mut c);
        self.reply[..CHALLENGE_LEN].copy_from_slice(&c);
        (self.reply_pos, self.reply_len) = (0, CHALLENGE_LEN);
        ReceiveError::Stream(e)
    }

    fn apply<K: PageSink>(&mut self, sink: &mut K, total: usize) -> Result<(), ReceiveError> {
        let rx = self
            .rx
            .as_mut()
            .ok_or(ReceiveError::Misuse("record before the handshake"))?;
        let seq = rx.next_seq();
        rx.open(&mut self.buf[..total])?;
        let view = Record::new_unchecked(&self.buf[..total]);
        let repr = RecordRepr::parse(&view)?;
        // Every rule about the peer's stream is checked here, before the
        // sink sees anything: what the sink refuses is this side's fault.
        self.state.accept(seq, &repr)?;
        match repr {
            RecordRepr::Page { page, data } => sink.write_page(page, data)?,
            RecordRepr::ZeroPage { page } => sink.write_page(page, &[0; PAGE_SIZE])?,
            RecordRepr::Delta {
                page,
                base,
                result,
                delta,
            } => {
                sink.read_page(page, &mut self.page)?;
                if xxh3(&self.page) != base {
                    return Err(WireError::DeltaBase(page).into());
                }
                delta::apply(&mut self.page, delta).map_err(WireError::from)?;
                if xxh3(&self.page) != result {
                    return Err(WireError::DeltaResult(page).into());
                }
                sink.write_page(page, &self.page)?;
            }
            RecordRepr::DeviceState {
                offset,
                total,
                data,
                ..
            } => sink.write_device_state(offset as usize, total as usize, data)?,
            RecordRepr::CpuState {
                offset,
                total,
                data,
                ..
            } => sink.write_cpu_state(offset as usize, total as usize, data)?,
            RecordRepr::EndOfPrecopy { .. }
            | RecordRepr::Done { .. }
            | RecordRepr::Commit { .. } => {}
            // `accept` refuses these in the forward stream.
            RecordRepr::Ready { .. } | RecordRepr::Reject { .. } | RecordRepr::Resumed { .. } => {
                return Err(WireError::Order("back-channel record in the forward stream").into())
            }
        }
        Ok(())
    }
}

/// Summary of a fully decoded stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// Records applied.
    pub records: u64,
}

/// Decode and apply a complete recorded forward stream (tests, fuzzing,
/// replay) as a destination set up by `cfg`, with `key` and `entropy`,
/// would: it must have been recorded against a destination whose nonce
/// `entropy` gives again. Errors on anything but exactly one well-formed
/// stream, handover included.
pub fn decode_stream<K: PageSink>(
    bytes: &[u8],
    cfg: &ReceiverConfig,
    key: &MigrationKey,
    entropy: &mut impl Entropy,
    sink: &mut K,
) -> Result<StreamSummary, ReceiveError> {
    let mut link = crate::link::SliceLink::new(bytes);
    let mut rx = Receiver::new(*cfg, key, entropy);
    loop {
        match rx.poll(0, sink, &mut link, u32::MAX)? {
            ReceiverStatus::Received => rx.ready(0, &mut link)?,
            ReceiverStatus::Resume => rx.resumed(&mut link)?,
            ReceiverStatus::Completed => break,
            _ => {}
        }
    }
    if link.remaining() != 0 {
        return Err(WireError::TrailingData.into());
    }
    Ok(StreamSummary {
        records: rx.stats.records,
    })
}

/// Re-sign a recorded (and perhaps edited) forward stream in place for a
/// destination set up by `cfg`, with `key` and the nonce `entropy` gives:
/// the hello's CRC, the proof, and every record's sequence number (its
/// position), tag and CRC are recomputed along the announced lengths, so
/// that edits reach the record parser and the stream rules. Stops where the
/// lengths run past the end, or at a hello the destination would refuse.
/// The payloads must be plaintext (a stream recorded without encryption).
/// For tests and fuzzing; it needs the key, as a forger would.
pub fn reseal_stream(
    bytes: &mut [u8],
    cfg: &ReceiverConfig,
    key: &MigrationKey,
    entropy: &mut impl Entropy,
) {
    if bytes.len() < HELLO_LEN {
        return;
    }
    crate::wire::put_crc(bytes, HELLO_LEN - 4);
    let Ok(hello) = HelloRepr::parse(&bytes[..HELLO_LEN]) else {
        return;
    };
    let expect = Expectation {
        vgpu_type: cfg.vgpu_type,
        page_count: cfg.pages.count(),
        encrypt: cfg.encrypt,
    };
    let answer = Responder::new(key, fresh_nonce(entropy), expect).answer(&bytes[..HELLO_LEN]);
    let Ok(est) = Initiator::new(key, &hello).finish(&answer.challenge) else {
        return;
    };
    let mut session = est.session;
    let Some(proof) = bytes.get_mut(HELLO_LEN..HELLO_LEN + PROOF_LEN) else {
        return;
    };
    proof.copy_from_slice(&est.proof);
    let mut pos = HELLO_LEN + PROOF_LEN;
    while let Ok(view) = Record::new_checked(&bytes[pos..]) {
        let (body, total) = (view.body_len(), view.total_len());
        if session.tx.seal(&mut bytes[pos..pos + total], body).is_err() {
            return;
        }
        pos += total;
    }
}
