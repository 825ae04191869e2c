//! The migration stream format (smoltcp `wire` style): zero-copy views over
//! bytes with the fields declared once, and validated representations with
//! `parse` and `emit`.
//!
//! # Layout (all integers little-endian)
//! Stream header, once, 16 bytes:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `GMIG` |
//! | 4 | 2 | version, [`VERSION`] |
//! | 6 | 2 | vGPU type (index of the GVT-g type, agreed by both sides) |
//! | 8 | 4 | page size, 4096 |
//! | 12 | 4 | CRC32C (iSCSI polynomial) of bytes 0..12 |
//!
//! Then records, each `20 + len + 4` bytes:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 1 | kind ([`Kind`]) |
//! | 1 | 1 | flags, must be 0 |
//! | 2 | 2 | reserved, must be 0 |
//! | 4 | 4 | sequence number: 0 for the first record, +1 each |
//! | 8 | 8 | argument (per kind, below) |
//! | 16 | 4 | payload length `len` (at most [`MAX_PAYLOAD`]) |
//! | 20 | len | payload |
//! | 20+len | 4 | CRC32C of bytes 0..20+len |
//!
//! | kind | argument | payload |
//! |------|----------|---------|
//! | 1 page | guest page number | exactly 4096 bytes |
//! | 2 zero page | guest page number | none |
//! | 3 delta | guest page number | xxh3 of base (8), xxh3 of result (8), delta ([`crate::delta`]) |
//! | 4 device state | `total << 32 \| offset` | chunk of the opaque blob from `gpu` |
//! | 5 CPU state | `total << 32 \| offset` | chunk of the CPU state blob |
//! | 6 end of pre-copy | pre-copy rounds | none |
//! | 7 done | number of page records (kinds 1-3) in the stream | none |
//! | 8 confirm (back channel) | sequence number of the done record | none |
//! | 9 reject (back channel) | [`RejectReason`] code | none |
//!
//! The back channel (destination to source) carries records only, no header,
//! with its own sequence numbers.

use core::fmt;

use crate::delta::DeltaError;
use crate::page::{GuestPage, PageBuf, PAGE_SIZE};

/// Stream magic.
pub const MAGIC: [u8; 4] = *b"GMIG";
/// Stream format version this crate speaks.
pub const VERSION: u16 = 1;
/// Stream header length.
pub const HEADER_LEN: usize = 16;
/// Record header length (before the payload).
pub const RECORD_HEAD_LEN: usize = 20;
/// Largest payload of a record.
pub const MAX_PAYLOAD: usize = PAGE_SIZE;
/// Largest record on the wire.
pub const MAX_RECORD: usize = RECORD_HEAD_LEN + MAX_PAYLOAD + 4;
/// Bytes of a delta payload before the encoded delta.
pub const DELTA_PREFIX: usize = 16;

const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    CRC.checksum(data)
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// What is wrong with a received stream. Every variant blames the peer
/// (or the wire): the local side did nothing wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header or record announces.
    Truncated,
    /// The stream does not start with `GMIG`.
    BadMagic,
    /// The peer speaks another format version.
    UnsupportedVersion(u16),
    /// The stream's page size is not 4096.
    PageSize(u32),
    /// The stream carries another vGPU type than this side was set up for.
    VgpuType {
        /// Type this side expects.
        expected: u16,
        /// Type in the stream.
        got: u16,
    },
    /// Header checksum mismatch.
    HeaderCrc,
    /// Record checksum mismatch.
    RecordCrc {
        /// Sequence number field as received (itself unverified).
        seq: u32,
    },
    /// Unknown record kind.
    UnknownKind(u8),
    /// Nonzero flags or reserved field.
    Reserved,
    /// Payload length not allowed for the kind.
    BadLength {
        /// Record kind.
        kind: u8,
        /// Announced payload length.
        len: u32,
    },
    /// Page number field is the reserved value.
    BadPage,
    /// A record arrived out of sequence (lost, duplicated or reordered).
    Sequence {
        /// Expected sequence number.
        expected: u32,
        /// Received one.
        got: u32,
    },
    /// A record is not allowed at this point of the stream.
    Order(&'static str),
    /// A state blob chunk does not continue the blob.
    StateChunk,
    /// The done record counts another number of page records.
    PageCount {
        /// Page records received.
        received: u32,
        /// Page records the done record announces.
        announced: u32,
    },
    /// A delta's base digest differs from the destination's page.
    DeltaBase(GuestPage),
    /// Applying a delta gave other content than the source had.
    DeltaResult(GuestPage),
    /// A malformed delta.
    Delta(DeltaError),
    /// Bytes after the done record.
    TrailingData,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("peer sent a bad migration stream: ")?;
        match self {
            Self::Truncated => f.write_str("it ends inside a header or record"),
            Self::BadMagic => f.write_str("bad magic (not a gmig stream)"),
            Self::UnsupportedVersion(v) => {
                write!(f, "format version {v}, this side speaks {VERSION}")
            }
            Self::PageSize(s) => write!(f, "page size {s}, expected {PAGE_SIZE}"),
            Self::VgpuType { expected, got } => {
                write!(f, "vGPU type {got}, this side was set up for {expected}")
            }
            Self::HeaderCrc => f.write_str("stream header checksum mismatch"),
            Self::RecordCrc { seq } => write!(f, "checksum mismatch in record (seq field {seq})"),
            Self::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            Self::Reserved => f.write_str("nonzero flags or reserved bits"),
            Self::BadLength { kind, len } => {
                write!(f, "payload length {len} not allowed for record kind {kind}")
            }
            Self::BadPage => f.write_str("reserved page number"),
            Self::Sequence { expected, got } => {
                write!(f, "record {got} where {expected} was expected")
            }
            Self::Order(what) => write!(f, "record out of order: {what}"),
            Self::StateChunk => f.write_str("state blob chunk does not continue the blob"),
            Self::PageCount {
                received,
                announced,
            } => {
                write!(
                    f,
                    "done announces {announced} page records, {received} arrived"
                )
            }
            Self::DeltaBase(p) => write!(f, "delta for {p} against a base this side does not hold"),
            Self::DeltaResult(p) => {
                write!(f, "delta for {p} does not produce the announced content")
            }
            Self::Delta(e) => write!(f, "{e}"),
            Self::TrailingData => f.write_str("bytes after the done record"),
        }
    }
}

impl From<DeltaError> for WireError {
    fn from(e: DeltaError) -> Self {
        Self::Delta(e)
    }
}

/// The validated stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRepr {
    /// vGPU type index.
    pub vgpu_type: u16,
}

impl HeaderRepr {
    /// Parse and check a stream header (magic, version, page size, CRC).
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if crc32c(&b[0..12]) != le32(&b[12..16]) {
            return Err(WireError::HeaderCrc);
        }
        let v = le16(&b[4..6]);
        if v != VERSION {
            return Err(WireError::UnsupportedVersion(v));
        }
        let ps = le32(&b[8..12]);
        if ps as usize != PAGE_SIZE {
            return Err(WireError::PageSize(ps));
        }
        Ok(Self {
            vgpu_type: le16(&b[6..8]),
        })
    }

    /// Write the header into `b[..HEADER_LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.vgpu_type.to_le_bytes());
        b[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        let c = crc32c(&b[0..12]);
        b[12..16].copy_from_slice(&c.to_le_bytes());
    }
}

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Full page.
    Page = 1,
    /// All-zero page.
    ZeroPage = 2,
    /// Delta against the last sent content.
    Delta = 3,
    /// Device-state blob chunk.
    DeviceState = 4,
    /// CPU state blob chunk.
    CpuState = 5,
    /// End of pre-copy: the source vGPU is stopped.
    EndOfPrecopy = 6,
    /// Stream complete.
    Done = 7,
    /// Back channel: destination applied everything.
    Confirm = 8,
    /// Back channel: destination refuses the stream.
    Reject = 9,
}

impl Kind {
    fn from_u8(k: u8) -> Option<Self> {
        Some(match k {
            1 => Self::Page,
            2 => Self::ZeroPage,
            3 => Self::Delta,
            4 => Self::DeviceState,
            5 => Self::CpuState,
            6 => Self::EndOfPrecopy,
            7 => Self::Done,
            8 => Self::Confirm,
            9 => Self::Reject,
            _ => return None,
        })
    }
}

/// Zero-copy view of one record.
#[derive(Debug, Clone, Copy)]
pub struct Record<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// Wrap without checks.
    pub const fn new_unchecked(buf: T) -> Self {
        Self { buf }
    }

    /// Wrap, checking that the buffer holds the whole announced record and
    /// that the length is within [`MAX_PAYLOAD`].
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let r = Self { buf };
        let b = r.buf.as_ref();
        if b.len() < RECORD_HEAD_LEN {
            return Err(WireError::Truncated);
        }
        let len = r.payload_len();
        if len as usize > MAX_PAYLOAD {
            return Err(WireError::BadLength { kind: b[0], len });
        }
        if b.len() < r.total_len() {
            return Err(WireError::Truncated);
        }
        Ok(r)
    }

    /// Raw kind byte.
    pub fn kind(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    /// Flags byte.
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    /// Reserved field.
    pub fn reserved(&self) -> u16 {
        le16(&self.buf.as_ref()[2..4])
    }
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        le32(&self.buf.as_ref()[4..8])
    }
    /// Argument.
    pub fn arg(&self) -> u64 {
        le64(&self.buf.as_ref()[8..16])
    }
    /// Payload length field.
    pub fn payload_len(&self) -> u32 {
        le32(&self.buf.as_ref()[16..20])
    }
    /// Whole record length implied by the header.
    pub fn total_len(&self) -> usize {
        RECORD_HEAD_LEN + self.payload_len() as usize + 4
    }
    /// Payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[RECORD_HEAD_LEN..RECORD_HEAD_LEN + self.payload_len() as usize]
    }
    /// Whether the CRC matches.
    pub fn check_crc(&self) -> bool {
        let end = RECORD_HEAD_LEN + self.payload_len() as usize;
        let b = self.buf.as_ref();
        crc32c(&b[..end]) == le32(&b[end..end + 4])
    }
}

/// Reasons a destination rejects a stream (carried on the back channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The stream was malformed ([`WireError`] on the destination).
    BadStream,
    /// The destination could not store what it received.
    DestinationMemory,
    /// The connection broke on the destination side.
    Link,
    /// A code this side does not know.
    Other(u64),
}

impl RejectReason {
    /// Wire code.
    pub fn code(self) -> u64 {
        match self {
            Self::BadStream => 1,
            Self::DestinationMemory => 2,
            Self::Link => 3,
            Self::Other(c) => c,
        }
    }
    /// From wire code.
    pub fn from_code(c: u64) -> Self {
        match c {
            1 => Self::BadStream,
            2 => Self::DestinationMemory,
            3 => Self::Link,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadStream => f.write_str("it received a malformed stream"),
            Self::DestinationMemory => f.write_str("it could not store the vGPU"),
            Self::Link => f.write_str("its link failed"),
            Self::Other(c) => write!(f, "unknown reason code {c}"),
        }
    }
}

/// A validated record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordRepr<'a> {
    /// Full page content.
    Page {
        /// Page.
        page: GuestPage,
        /// Content.
        data: &'a PageBuf,
    },
    /// All-zero page.
    ZeroPage {
        /// Page.
        page: GuestPage,
    },
    /// Delta against the content last sent for the page.
    Delta {
        /// Page.
        page: GuestPage,
        /// xxh3 of the base content.
        base: u64,
        /// xxh3 of the result.
        result: u64,
        /// Encoded delta.
        delta: &'a [u8],
    },
    /// Device-state chunk.
    DeviceState {
        /// Offset of the chunk in the blob.
        offset: u32,
        /// Blob length.
        total: u32,
        /// Chunk.
        data: &'a [u8],
    },
    /// CPU state chunk.
    CpuState {
        /// Offset of the chunk in the blob.
        offset: u32,
        /// Blob length.
        total: u32,
        /// Chunk.
        data: &'a [u8],
    },
    /// End of pre-copy.
    EndOfPrecopy {
        /// Pre-copy rounds the source ran.
        rounds: u32,
    },
    /// End of stream.
    Done {
        /// Page records in the stream.
        page_records: u32,
    },
    /// Back channel: all applied.
    Confirm {
        /// Sequence number of the done record.
        done_seq: u32,
    },
    /// Back channel: refused.
    Reject {
        /// Why.
        reason: RejectReason,
    },
}

fn page_arg(arg: u64) -> Result<GuestPage, WireError> {
    GuestPage::new(arg).ok_or(WireError::BadPage)
}

impl<'a> RecordRepr<'a> {
    /// Parse a checked view: CRC, reserved fields, kind, lengths.
    pub fn parse(r: &Record<&'a [u8]>) -> Result<Self, WireError> {
        if !r.check_crc() {
            return Err(WireError::RecordCrc { seq: r.seq() });
        }
        if r.flags() != 0 || r.reserved() != 0 {
            return Err(WireError::Reserved);
        }
        let kind = Kind::from_u8(r.kind()).ok_or(WireError::UnknownKind(r.kind()))?;
        let len = r.payload_len();
        let bad = WireError::BadLength {
            kind: r.kind(),
            len,
        };
        let arg = r.arg();
        let buf: &'a [u8] = r.buf;
        let payload: &'a [u8] = &buf[RECORD_HEAD_LEN..RECORD_HEAD_LEN + len as usize];
        let empty = |v: Self| if len == 0 { Ok(v) } else { Err(bad) };
        match kind {
            Kind::Page => {
                let data: &'a PageBuf = payload.try_into().map_err(|_| bad)?;
                Ok(Self::Page {
                    page: page_arg(arg)?,
                    data,
                })
            }
            Kind::ZeroPage => empty(Self::ZeroPage {
                page: page_arg(arg)?,
            }),
            Kind::Delta => {
                if payload.len() <= DELTA_PREFIX {
                    return Err(bad);
                }
                Ok(Self::Delta {
                    page: page_arg(arg)?,
                    base: le64(&payload[0..8]),
                    result: le64(&payload[8..16]),
                    delta: &payload[DELTA_PREFIX..],
                })
            }
            Kind::DeviceState | Kind::CpuState => {
                let offset = arg as u32;
                let total = (arg >> 32) as u32;
                if u64::from(offset) + u64::from(len) > u64::from(total) {
                    return Err(WireError::StateChunk);
                }
                Ok(if kind == Kind::DeviceState {
                    Self::DeviceState {
                        offset,
                        total,
                        data: payload,
                    }
                } else {
                    Self::CpuState {
                        offset,
                        total,
                        data: payload,
                    }
                })
            }
            Kind::EndOfPrecopy => empty(Self::EndOfPrecopy {
                rounds: u32::try_from(arg).map_err(|_| WireError::Reserved)?,
            }),
            Kind::Done => empty(Self::Done {
                page_records: u32::try_from(arg).map_err(|_| WireError::Reserved)?,
            }),
            Kind::Confirm => empty(Self::Confirm {
                done_seq: u32::try_from(arg).map_err(|_| WireError::Reserved)?,
            }),
            Kind::Reject => empty(Self::Reject {
                reason: RejectReason::from_code(arg),
            }),
        }
    }

    fn parts(&self) -> (Kind, u64, [&'a [u8]; 2], [u8; DELTA_PREFIX]) {
        let none: &'a [u8] = &[];
        match *self {
            Self::Page { page, data } => (Kind::Page, page.get(), [data, none], [0; 16]),
            Self::ZeroPage { page } => (Kind::ZeroPage, page.get(), [none, none], [0; 16]),
            Self::Delta {
                page,
                base,
                result,
                delta,
            } => {
                let mut pre = [0u8; DELTA_PREFIX];
                pre[..8].copy_from_slice(&base.to_le_bytes());
                pre[8..].copy_from_slice(&result.to_le_bytes());
                (Kind::Delta, page.get(), [none, delta], pre)
            }
            Self::DeviceState {
                offset,
                total,
                data,
            } => (
                Kind::DeviceState,
                (u64::from(total) << 32) | u64::from(offset),
                [data, none],
                [0; 16],
            ),
            Self::CpuState {
                offset,
                total,
                data,
            } => (
                Kind::CpuState,
                (u64::from(total) << 32) | u64::from(offset),
                [data, none],
                [0; 16],
            ),
            Self::EndOfPrecopy { rounds } => {
                (Kind::EndOfPrecopy, u64::from(rounds), [none, none], [0; 16])
            }
            Self::Done { page_records } => {
                (Kind::Done, u64::from(page_records), [none, none], [0; 16])
            }
            Self::Confirm { done_seq } => {
                (Kind::Confirm, u64::from(done_seq), [none, none], [0; 16])
            }
            Self::Reject { reason } => (Kind::Reject, reason.code(), [none, none], [0; 16]),
        }
    }

    /// Bytes this record takes on the wire.
    pub fn wire_len(&self) -> usize {
        let (kind, _, [a, b], _) = self.parts();
        let pre = if kind == Kind::Delta { DELTA_PREFIX } else { 0 };
        RECORD_HEAD_LEN + pre + a.len() + b.len() + 4
    }

    /// Write the record with sequence number `seq` into `buf`, returning its
    /// length. `buf` must hold [`Self::wire_len`] bytes; a payload above
    /// [`MAX_PAYLOAD`] is a local bug and panics in debug builds only.
    pub fn emit(&self, seq: u32, buf: &mut [u8]) -> usize {
        let (kind, arg, [a, b], pre) = self.parts();
        let pre: &[u8] = if kind == Kind::Delta { &pre } else { &[] };
        let len = pre.len() + a.len() + b.len();
        debug_assert!(len <= MAX_PAYLOAD);
        buf[0] = kind as u8;
        buf[1] = 0;
        buf[2..4].fill(0);
        buf[4..8].copy_from_slice(&seq.to_le_bytes());
        buf[8..16].copy_from_slice(&arg.to_le_bytes());
        buf[16..20].copy_from_slice(&(len as u32).to_le_bytes());
        let mut at = RECORD_HEAD_LEN;
        for part in [pre, a, b] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let c = crc32c(&buf[..at]);
        buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
        at + 4
    }
}

/// Emit a delta record whose delta bytes are already in place at
/// `buf[RECORD_HEAD_LEN + DELTA_PREFIX..][..delta_len]` (saves a copy).
pub fn emit_delta_in_place(
    seq: u32,
    page: GuestPage,
    base: u64,
    result: u64,
    delta_len: usize,
    buf: &mut [u8],
) -> usize {
    let len = DELTA_PREFIX + delta_len;
    buf[0] = Kind::Delta as u8;
    buf[1] = 0;
    buf[2..4].fill(0);
    buf[4..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&page.get().to_le_bytes());
    buf[16..20].copy_from_slice(&(len as u32).to_le_bytes());
    buf[20..28].copy_from_slice(&base.to_le_bytes());
    buf[28..36].copy_from_slice(&result.to_le_bytes());
    let at = RECORD_HEAD_LEN + len;
    let c = crc32c(&buf[..at]);
    buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
    at + 4
}

/// Order rules of a stream, shared by the receiver and the stream checker.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamState {
    next_seq: u32,
    page_records: u32,
    stopped: bool,
    done: bool,
    device: BlobProgress,
    cpu: BlobProgress,
}

#[derive(Clone, Copy, Debug, Default)]
struct BlobProgress {
    started: bool,
    total: u32,
    received: u32,
}

impl BlobProgress {
    fn accept(&mut self, offset: u32, total: u32, len: usize) -> Result<(), WireError> {
        if self.started && (total != self.total || offset != self.received) {
            return Err(WireError::StateChunk);
        }
        if !self.started && offset != 0 {
            return Err(WireError::StateChunk);
        }
        if len == 0 && total != 0 {
            return Err(WireError::StateChunk);
        }
        self.started = true;
        self.total = total;
        self.received = offset + len as u32;
        Ok(())
    }
    fn complete(&self) -> bool {
        self.started && self.received == self.total
    }
}

impl StreamState {
    /// Whether the done record was accepted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the source announced the end of pre-copy.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Page records accepted so far.
    pub fn page_records(&self) -> u32 {
        self.page_records
    }

    /// Check `repr` with sequence number `seq` against the order rules.
    pub fn accept(&mut self, seq: u32, repr: &RecordRepr<'_>) -> Result<(), WireError> {
        if self.done {
            return Err(WireError::TrailingData);
        }
        if seq != self.next_seq {
            return Err(WireError::Sequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        match *repr {
            RecordRepr::Page { .. } | RecordRepr::ZeroPage { .. } | RecordRepr::Delta { .. } => {
                self.page_records += 1;
            }
            RecordRepr::DeviceState {
                offset,
                total,
                data,
            } => {
                if !self.stopped {
                    return Err(WireError::Order("device state before end of pre-copy"));
                }
                self.device.accept(offset, total, data.len())?;
            }
            RecordRepr::CpuState {
                offset,
                total,
                data,
            } => {
                if !self.stopped {
                    return Err(WireError::Order("CPU state before end of pre-copy"));
                }
                self.cpu.accept(offset, total, data.len())?;
            }
            RecordRepr::EndOfPrecopy { .. } => {
                if self.stopped {
                    return Err(WireError::Order("second end of pre-copy"));
                }
                self.stopped = true;
            }
            RecordRepr::Done { page_records } => {
                if !self.stopped {
                    return Err(WireError::Order("done before end of pre-copy"));
                }
                if !self.device.complete() || !self.cpu.complete() {
                    return Err(WireError::Order(
                        "done before the whole device and CPU state",
                    ));
                }
                if page_records != self.page_records {
                    return Err(WireError::PageCount {
                        received: self.page_records,
                        announced: page_records,
                    });
                }
                self.done = true;
            }
            RecordRepr::Confirm { .. } | RecordRepr::Reject { .. } => {
                return Err(WireError::Order(
                    "back-channel record in the forward stream",
                ));
            }
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_errors() {
        let mut b = [0u8; HEADER_LEN];
        HeaderRepr { vgpu_type: 2 }.emit(&mut b);
        assert_eq!(HeaderRepr::parse(&b), Ok(HeaderRepr { vgpu_type: 2 }));
        assert_eq!(HeaderRepr::parse(&b[..10]), Err(WireError::Truncated));
        let mut v = b;
        v[4] = 2;
        let c = crc32c(&v[..12]);
        v[12..].copy_from_slice(&c.to_le_bytes());
        assert_eq!(HeaderRepr::parse(&v), Err(WireError::UnsupportedVersion(2)));
        b[7] ^= 1;
        assert_eq!(HeaderRepr::parse(&b), Err(WireError::HeaderCrc));
    }

    #[test]
    fn record_roundtrip() {
        let data = [7u8; PAGE_SIZE];
        let page = GuestPage::new(42).unwrap();
        let reprs = [
            RecordRepr::Page { page, data: &data },
            RecordRepr::ZeroPage { page },
            RecordRepr::Delta {
                page,
                base: 1,
                result: 2,
                delta: &[0, 1, 9],
            },
            RecordRepr::DeviceState {
                offset: 3,
                total: 10,
                data: &[1, 2],
            },
            RecordRepr::CpuState {
                offset: 0,
                total: 0,
                data: &[],
            },
            RecordRepr::EndOfPrecopy { rounds: 3 },
            RecordRepr::Done { page_records: 9 },
            RecordRepr::Confirm { done_seq: 4 },
            RecordRepr::Reject {
                reason: RejectReason::BadStream,
            },
        ];
        for (i, r) in reprs.iter().enumerate() {
            let mut buf = [0u8; MAX_RECORD];
            let n = r.emit(i as u32, &mut buf);
            assert_eq!(n, r.wire_len());
            let view = Record::new_checked(&buf[..n]).unwrap();
            assert_eq!(view.seq(), i as u32);
            assert_eq!(RecordRepr::parse(&view).unwrap(), *r);
            buf[n - 1] ^= 0x10;
            let view = Record::new_checked(&buf[..n]).unwrap();
            assert_eq!(
                RecordRepr::parse(&view),
                Err(WireError::RecordCrc { seq: i as u32 })
            );
        }
    }
}
