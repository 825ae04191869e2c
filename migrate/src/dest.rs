//! The destination side: a polled receiver that validates the stream and
//! applies it to a [`PageSink`], then confirms (or rejects) on the back
//! channel.

use core::fmt;

use crate::delta;
use crate::digest::xxh3;
use crate::link::{Link, LinkError};
use crate::page::{MemoryError, PageBuf, PageSink, PAGE_SIZE};
use crate::wire::{
    HeaderRepr, Record, RecordRepr, RejectReason, StreamState, WireError, HEADER_LEN, MAX_PAYLOAD,
    MAX_RECORD, RECORD_HEAD_LEN,
};

/// Why the destination gave up. The source learns it as a reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveError {
    /// The source's stream is bad (peer's fault).
    Stream(WireError),
    /// The local sink failed (this side's fault).
    Memory(MemoryError),
    /// The link broke before the stream was complete.
    Link(LinkError),
    /// Polled after completion or failure (monitor bug).
    Misuse(&'static str),
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(e) => write!(f, "{e}"),
            Self::Memory(e) => write!(f, "destination: {e}"),
            Self::Link(e) => write!(f, "{e} before the stream was complete"),
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

/// Receiver progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverStatus {
    /// Pre-copy records arriving (the source guest still runs).
    Precopy,
    /// The source stopped; stop-and-copy records arriving.
    StopCopy,
    /// Done applied and confirmed: the vGPU may resume here.
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    Records,
    Confirming,
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

/// The destination side of one migration.
#[derive(Debug)]
pub struct Receiver {
    vgpu_type: u16,
    phase: Phase,
    state: StreamState,
    buf: [u8; MAX_RECORD],
    fill: usize,
    page: PageBuf,
    reply: [u8; RECORD_HEAD_LEN + 4],
    reply_len: usize,
    reply_pos: usize,
    stats: ReceiverStats,
    done_seq: u32,
}

impl Receiver {
    /// A receiver expecting a stream for vGPU type `vgpu_type`.
    pub fn new(vgpu_type: u16) -> Self {
        Self {
            vgpu_type,
            phase: Phase::Header,
            state: StreamState::default(),
            buf: [0; MAX_RECORD],
            fill: 0,
            page: [0; PAGE_SIZE],
            reply: [0; RECORD_HEAD_LEN + 4],
            reply_len: 0,
            reply_pos: 0,
            stats: ReceiverStats::default(),
            done_seq: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    fn status(&self) -> ReceiverStatus {
        if self.state.is_stopped() {
            ReceiverStatus::StopCopy
        } else {
            ReceiverStatus::Precopy
        }
    }

    /// Receive and apply what has arrived; at most `max_records` records.
    pub fn poll<K: PageSink, L: Link>(
        &mut self,
        sink: &mut K,
        link: &mut L,
        max_records: u32,
    ) -> Result<ReceiverStatus, ReceiveError> {
        match self.phase {
            Phase::Failed(e) => {
                // Keep pushing the reject out; report the original error.
                let _ = self.flush_reply(link);
                return Err(e);
            }
            Phase::Completed => return Ok(ReceiverStatus::Completed),
            Phase::Confirming => return self.confirm(link),
            _ => {}
        }
        match self.poll_inner(sink, link, max_records) {
            Ok(s) => Ok(s),
            Err(e) => {
                let reason = match e {
                    ReceiveError::Stream(_) => RejectReason::BadStream,
                    ReceiveError::Memory(_) => RejectReason::DestinationMemory,
                    ReceiveError::Link(_) | ReceiveError::Misuse(_) => RejectReason::Link,
                };
                self.reply_len = RecordRepr::Reject { reason }.emit(0, &mut self.reply);
                self.reply_pos = 0;
                self.phase = Phase::Failed(e);
                let _ = self.flush_reply(link);
                Err(e)
            }
        }
    }

    fn confirm<L: Link>(&mut self, link: &mut L) -> Result<ReceiverStatus, ReceiveError> {
        if self.flush_reply(link).map_err(ReceiveError::Link)? {
            self.phase = Phase::Completed;
            Ok(ReceiverStatus::Completed)
        } else {
            Ok(ReceiverStatus::StopCopy)
        }
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

    /// Fill `buf` up to `need` bytes; true when complete.
    fn fill_to<L: Link>(&mut self, link: &mut L, need: usize) -> Result<bool, ReceiveError> {
        while self.fill < need {
            match link.recv(&mut self.buf[self.fill..need]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.fill += n;
                    self.stats.bytes += n as u64;
                }
                Err(LinkError::Closed) => return Err(ReceiveError::Stream(WireError::Truncated)),
                Err(e) => return Err(ReceiveError::Link(e)),
            }
        }
        Ok(true)
    }

    fn poll_inner<K: PageSink, L: Link>(
        &mut self,
        sink: &mut K,
        link: &mut L,
        max_records: u32,
    ) -> Result<ReceiverStatus, ReceiveError> {
        if self.phase == Phase::Header {
            if !self.fill_to(link, HEADER_LEN)? {
                return Ok(ReceiverStatus::Precopy);
            }
            let h = HeaderRepr::parse(&self.buf[..HEADER_LEN])?;
            if h.vgpu_type != self.vgpu_type {
                return Err(WireError::VgpuType {
                    expected: self.vgpu_type,
                    got: h.vgpu_type,
                }
                .into());
            }
            self.fill = 0;
            self.phase = Phase::Records;
        }
        for _ in 0..max_records {
            if !self.fill_to(link, RECORD_HEAD_LEN)? {
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
            if !self.fill_to(link, total)? {
                return Ok(self.status());
            }
            self.fill = 0;
            self.apply(sink, total)?;
            self.stats.records += 1;
            if self.state.is_done() {
                self.reply_len = RecordRepr::Confirm {
                    done_seq: self.done_seq,
                }
                .emit(0, &mut self.reply);
                self.phase = Phase::Confirming;
                return self.confirm(link);
            }
        }
        Ok(self.status())
    }

    fn apply<K: PageSink>(&mut self, sink: &mut K, total: usize) -> Result<(), ReceiveError> {
        let view = Record::new_checked(&self.buf[..total])?;
        let seq = view.seq();
        let repr = RecordRepr::parse(&view)?;
        self.state.accept(seq, &repr)?;
        if let RecordRepr::Done { .. } = repr {
            // The confirm names the done record's sequence number.
            self.done_seq = seq;
        }
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
            } => sink.write_device_state(offset as usize, total as usize, data)?,
            RecordRepr::CpuState {
                offset,
                total,
                data,
            } => sink.write_cpu_state(offset as usize, total as usize, data)?,
            RecordRepr::EndOfPrecopy { .. } | RecordRepr::Done { .. } => {}
            RecordRepr::Confirm { .. } | RecordRepr::Reject { .. } => {
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

/// Decode and apply a complete recorded stream (tests, fuzzing, replay).
/// Errors on anything but exactly one well-formed stream.
pub fn decode_stream<K: PageSink>(
    bytes: &[u8],
    vgpu_type: u16,
    sink: &mut K,
) -> Result<StreamSummary, ReceiveError> {
    let mut link = crate::link::SliceLink::new(bytes);
    let mut rx = Receiver::new(vgpu_type);
    loop {
        match rx.poll(sink, &mut link, u32::MAX)? {
            ReceiverStatus::Completed => break,
            _ => continue,
        }
    }
    if link.remaining() != 0 {
        return Err(WireError::TrailingData.into());
    }
    Ok(StreamSummary {
        records: rx.stats.records,
    })
}
