//! The migration stream format (smoltcp `wire` style): zero-copy views over
//! bytes with the fields declared once, and validated representations with
//! `parse` and `emit`. The cryptography that fills the proof and tag fields
//! is in [`crate::auth`]; the handover the last records carry is in
//! [`crate::handover`].
//!
//! # Layout, version 2 (all integers little-endian)
//!
//! A migration is one connection: a handshake of three fixed-size messages,
//! then records in both directions. Every message and record ends in a
//! CRC32C (iSCSI polynomial) of everything before it, so that damage on the
//! wire is told apart from a wrong key or a forged record: a bad CRC is
//! corruption; a good CRC with a bad proof or tag is a peer (or someone in
//! between) without the key.
//!
//! **Hello**, source to destination, [`HELLO_LEN`] bytes:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `GMIG` |
//! | 4 | 2 | version, [`VERSION`] |
//! | 6 | 2 | vGPU type (index of the GVT-g type, agreed by both sides) |
//! | 8 | 4 | page size, 4096 |
//! | 12 | 4 | flags: bit 0, the source asks for encrypted records; others 0 |
//! | 16 | 8 | guest page count (the size of the migrated guest) |
//! | 24 | 32 | source nonce (fresh randomness) |
//! | 56 | 4 | CRC32C of bytes 0..56 |
//!
//! The destination reads magic and version first, so that a peer of another
//! version is named as such whatever the rest of its first bytes hold.
//!
//! **Challenge**, destination to source, [`CHALLENGE_LEN`] bytes:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `GMIG` |
//! | 4 | 2 | the destination's version |
//! | 6 | 1 | verdict: 0 accepted, else a [`Refusal`] code |
//! | 7 | 1 | flags: bit 0, records are encrypted (the session's mode); others 0 |
//! | 8 | 32 | destination nonce (zero when refused) |
//! | 40 | 32 | destination proof (zero when refused) |
//! | 72 | 4 | CRC32C of bytes 0..72 |
//!
//! **Proof**, source to destination, [`PROOF_LEN`] bytes:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 32 | source proof |
//! | 32 | 4 | CRC32C of bytes 0..32 |
//!
//! Then **records**, each `20 + len + 16 + 4` bytes, in both directions
//! (forward: source to destination; back channel: destination to source),
//! each direction with its own sequence numbers and session key:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 1 | kind ([`Kind`]) |
//! | 1 | 1 | flags: bit 0 ([`FLAG_FINAL`]) on the chunk that completes a state blob; otherwise 0 |
//! | 2 | 2 | reserved, must be 0 |
//! | 4 | 4 | sequence number: 0 for the direction's first record, +1 each |
//! | 8 | 8 | argument (per kind, below) |
//! | 16 | 4 | payload length `len` (at most [`MAX_PAYLOAD`]) |
//! | 20 | len | payload (ChaCha20-encrypted when the session encrypts) |
//! | 20+len | 16 | Poly1305 tag ([`crate::auth`]): over bytes 0..20+len, nonce = the sequence number, with the direction's session key |
//! | 36+len | 4 | CRC32C of bytes 0..36+len |
//!
//! | kind | dir | argument | payload |
//! |------|-----|----------|---------|
//! | 1 page | fwd | guest page number | exactly 4096 bytes |
//! | 2 zero page | fwd | guest page number | none |
//! | 3 delta | fwd | guest page number | xxh3 of base (8), xxh3 of result (8), delta ([`crate::delta`]) |
//! | 4 device state | fwd | `total << 32 \| offset` | chunk of the opaque blob from `gpu`; the final chunk ends with the blob's 32-byte BLAKE3 digest |
//! | 5 CPU state | fwd | `total << 32 \| offset` | chunk of the CPU state blob, final chunk as for kind 4 |
//! | 6 end of pre-copy | fwd | pre-copy rounds | none |
//! | 7 done | fwd | number of page records (kinds 1-3) in the stream | none |
//! | 8 ready | back | sequence number of the done record | none |
//! | 9 reject | back | [`RejectReason`] code | none |
//! | 10 commit | fwd | sequence number of the done record | none |
//! | 11 resumed | back | sequence number of the commit record | none |
//!
//! A state blob is sent as chunks of at most [`MAX_STATE_CHUNK`] bytes in
//! order; the chunk that completes it carries [`FLAG_FINAL`] and the digest,
//! which the destination checks against the chunks it received before
//! anything is restored. An empty blob is one final chunk with no data.
//!
//! # What the receiver checks, in order
//! 1. framing: the payload length is at most [`MAX_PAYLOAD`];
//! 2. the CRC (damage on the wire: [`WireError::RecordCrc`]);
//! 3. the sequence number field against its own count
//!    ([`WireError::Sequence`]: lost, duplicated or reordered);
//! 4. the tag, with the nonce from its own count ([`WireError::Authentication`]:
//!    forged, or a record from another session or position whose sequence
//!    field was rewritten); only then is the record decrypted and read;
//! 5. the fields ([`RecordRepr::parse`]) and the stream's rules
//!    ([`StreamState::accept`]): order, the guest's page range, state blob
//!    sizes, continuity and digests, the page count of the done record.
//!
//! Version 1 (a 16-byte header and CRC-only records, no handshake) is not
//! spoken any more: a version 1 peer is refused with its version named.

use core::fmt;

use crate::delta::DeltaError;
use crate::page::{GuestPage, PageBuf, PageRange, PAGE_SIZE};

/// Stream magic.
pub const MAGIC: [u8; 4] = *b"GMIG";
/// Stream format version this crate speaks.
pub const VERSION: u16 = 2;
/// Length of a nonce in the handshake.
pub const NONCE_LEN: usize = 32;
/// Length of a handshake proof.
pub const PROOF_MAC_LEN: usize = 32;
/// Length of the hello message.
pub const HELLO_LEN: usize = 60;
/// Length of the challenge message.
pub const CHALLENGE_LEN: usize = 76;
/// Bytes of the challenge the proofs cover (all but proof and CRC).
pub const CHALLENGE_SIGNED_LEN: usize = 40;
/// Length of the proof message.
pub const PROOF_LEN: usize = PROOF_MAC_LEN + 4;
/// Bytes before the first forward record: hello and proof.
pub const FORWARD_PRELUDE_LEN: usize = HELLO_LEN + PROOF_LEN;
/// Bytes before the first back-channel record: the challenge.
pub const BACK_PRELUDE_LEN: usize = CHALLENGE_LEN;
/// Record header length (before the payload).
pub const RECORD_HEAD_LEN: usize = 20;
/// Length of a record's authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes after a record's payload: tag and CRC.
pub const RECORD_TRAILER_LEN: usize = TAG_LEN + 4;
/// Largest payload of a record.
pub const MAX_PAYLOAD: usize = PAGE_SIZE;
/// Largest record on the wire.
pub const MAX_RECORD: usize = RECORD_HEAD_LEN + MAX_PAYLOAD + RECORD_TRAILER_LEN;
/// Length of a record without payload (every back-channel record).
pub const EMPTY_RECORD_LEN: usize = RECORD_HEAD_LEN + RECORD_TRAILER_LEN;
/// Bytes of a delta payload before the encoded delta.
pub const DELTA_PREFIX: usize = 16;
/// Length of a state blob's digest.
pub const STATE_DIGEST_LEN: usize = 32;
/// Largest chunk of a state blob in one record (room for the digest).
pub const MAX_STATE_CHUNK: usize = MAX_PAYLOAD - STATE_DIGEST_LEN;
/// Record flag: this chunk completes its state blob.
pub const FLAG_FINAL: u8 = 1;
/// Hello and challenge flag: records are encrypted.
pub const FLAG_ENCRYPT: u8 = 1;

/// A state blob's BLAKE3 digest.
pub type StateDigest = [u8; STATE_DIGEST_LEN];

const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    CRC.checksum(data)
}

/// Writes the CRC32C of `buf[..at]` into `buf[at..at + 4]`; returns `at + 4`.
pub fn put_crc(buf: &mut [u8], at: usize) -> usize {
    let c = crc32c(&buf[..at]);
    buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
    at + 4
}

/// Whether `buf[at..at + 4]` holds the CRC32C of `buf[..at]`.
pub fn crc_ok(buf: &[u8], at: usize) -> bool {
    crc32c(&buf[..at]) == le32(&buf[at..at + 4])
}

pub(crate) fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub(crate) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
pub(crate) fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}
fn array32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    a
}

/// Which state blob a record or an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blob {
    /// The vGPU's device state (from `gpu`).
    Device,
    /// The guest's CPU state.
    Cpu,
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Device => "device state",
            Self::Cpu => "CPU state",
        })
    }
}

/// What is wrong with a received stream. Every variant blames the peer
/// (or the wire): the local side did nothing wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the message or record announces (the peer closed).
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
    /// The source's guest has another number of pages than this side's.
    GuestSize {
        /// Pages this side was set up for.
        expected: u64,
        /// Pages the source announces.
        got: u64,
    },
    /// A handshake message's checksum does not match (damaged on the wire).
    HandshakeCrc,
    /// The destination answered without the encryption the source asked
    /// for (a tampered or broken handshake).
    Downgrade,
    /// Record checksum mismatch (damaged on the wire).
    RecordCrc {
        /// Sequence number field as received (itself unverified).
        seq: u32,
    },
    /// A record's tag does not verify: forged, or from another session or
    /// another position of this one.
    Authentication {
        /// Sequence number the record claims (and this side expected).
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
    /// A page outside the migrated guest's range.
    PageOutOfRange(GuestPage),
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
    /// A state blob is larger than this side accepts.
    StateTooLarge {
        /// Which blob.
        blob: Blob,
        /// Its announced length.
        total: u32,
        /// The largest this side accepts.
        max: u32,
    },
    /// A state blob's digest differs from the chunks that arrived.
    StateDigest(Blob),
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
    /// Bytes after the end of the stream.
    TrailingData,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("peer sent a bad migration stream: ")?;
        match self {
            Self::Truncated => f.write_str("it ends inside a message or record"),
            Self::BadMagic => f.write_str("bad magic (not a gmig stream)"),
            Self::UnsupportedVersion(v) => {
                write!(f, "format version {v}, this side speaks {VERSION}")
            }
            Self::PageSize(s) => write!(f, "page size {s}, expected {PAGE_SIZE}"),
            Self::VgpuType { expected, got } => {
                write!(f, "vGPU type {got}, this side was set up for {expected}")
            }
            Self::GuestSize { expected, got } => write!(
                f,
                "a guest of {got} pages, this side was set up for {expected}"
            ),
            Self::HandshakeCrc => f.write_str("handshake message checksum mismatch"),
            Self::Downgrade => f.write_str("the answer drops the encryption the source asked for"),
            Self::RecordCrc { seq } => write!(f, "checksum mismatch in record (seq field {seq})"),
            Self::Authentication { seq } => write!(
                f,
                "record {seq} fails authentication (forged, or from another session or position)"
            ),
            Self::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            Self::Reserved => f.write_str("nonzero flags or reserved bits"),
            Self::BadLength { kind, len } => {
                write!(f, "payload length {len} not allowed for record kind {kind}")
            }
            Self::BadPage => f.write_str("reserved page number"),
            Self::PageOutOfRange(p) => write!(f, "{p} is outside the migrated guest"),
            Self::Sequence { expected, got } => {
                write!(f, "record {got} where {expected} was expected")
            }
            Self::Order(what) => write!(f, "record out of order: {what}"),
            Self::StateChunk => f.write_str("state blob chunk does not continue the blob"),
            Self::StateTooLarge { blob, total, max } => write!(
                f,
                "{blob} of {total} bytes, this side accepts at most {max}"
            ),
            Self::StateDigest(blob) => {
                write!(f, "{blob} digest does not match the chunks received")
            }
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
            Self::TrailingData => f.write_str("bytes after the end of the stream"),
        }
    }
}

impl From<DeltaError> for WireError {
    fn from(e: DeltaError) -> Self {
        Self::Delta(e)
    }
}

/// Checks the first 6 bytes of a hello or challenge: magic and version.
pub fn check_prefix(b: &[u8]) -> Result<(), WireError> {
    if b.len() < 6 {
        return Err(WireError::Truncated);
    }
    if b[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    match le16(&b[4..6]) {
        VERSION => Ok(()),
        v => Err(WireError::UnsupportedVersion(v)),
    }
}

/// The validated hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloRepr {
    /// vGPU type index.
    pub vgpu_type: u16,
    /// Whether the source asks for encrypted records.
    pub encrypt: bool,
    /// Pages of the migrated guest.
    pub page_count: u64,
    /// The source's nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl HelloRepr {
    /// Parse and check a hello (magic, version, CRC, page size, flags).
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_prefix(b)?;
        if b.len() < HELLO_LEN {
            return Err(WireError::Truncated);
        }
        if !crc_ok(b, HELLO_LEN - 4) {
            return Err(WireError::HandshakeCrc);
        }
        let ps = le32(&b[8..12]);
        if ps as usize != PAGE_SIZE {
            return Err(WireError::PageSize(ps));
        }
        let flags = le32(&b[12..16]);
        if flags & !u32::from(FLAG_ENCRYPT) != 0 {
            return Err(WireError::Reserved);
        }
        Ok(Self {
            vgpu_type: le16(&b[6..8]),
            encrypt: flags & u32::from(FLAG_ENCRYPT) != 0,
            page_count: le64(&b[16..24]),
            nonce: array32(&b[24..56]),
        })
    }

    /// Write the hello into `b[..HELLO_LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.vgpu_type.to_le_bytes());
        b[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(u8::from(self.encrypt)).to_le_bytes());
        b[16..24].copy_from_slice(&self.page_count.to_le_bytes());
        b[24..56].copy_from_slice(&self.nonce);
        put_crc(b, HELLO_LEN - 4);
    }
}

/// Why a destination refused a hello (the challenge's verdict). Sent
/// before any key is agreed, so unauthenticated: it can only end a
/// migration, never start one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The hello's version is not the destination's.
    Version,
    /// Another vGPU type than the destination was set up for.
    VgpuType,
    /// Another page size.
    PageSize,
    /// Another guest size than the destination was set up for.
    GuestSize,
    /// The hello is damaged or malformed (magic, CRC, reserved flags).
    Malformed,
    /// A code this side does not know.
    Other(u8),
}

impl Refusal {
    /// Wire code (never 0: 0 means accepted).
    pub fn code(self) -> u8 {
        match self {
            Self::Version => 1,
            Self::VgpuType => 2,
            Self::PageSize => 3,
            Self::GuestSize => 4,
            Self::Malformed => 5,
            Self::Other(c) => c,
        }
    }
    /// From a nonzero wire code.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => Self::Version,
            2 => Self::VgpuType,
            3 => Self::PageSize,
            4 => Self::GuestSize,
            5 => Self::Malformed,
            c => Self::Other(c),
        }
    }
    /// The refusal a destination sends for a bad hello.
    pub fn for_hello_error(e: WireError) -> Self {
        match e {
            WireError::UnsupportedVersion(_) => Self::Version,
            WireError::VgpuType { .. } => Self::VgpuType,
            WireError::PageSize(_) => Self::PageSize,
            WireError::GuestSize { .. } => Self::GuestSize,
            _ => Self::Malformed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version => write!(f, "it does not speak stream version {VERSION}"),
            Self::VgpuType => f.write_str("it was set up for another vGPU type"),
            Self::PageSize => f.write_str("it uses another page size"),
            Self::GuestSize => f.write_str("it was set up for a guest of another size"),
            Self::Malformed => f.write_str("our hello arrived damaged or malformed"),
            Self::Other(c) => write!(f, "unknown refusal code {c}"),
        }
    }
}

/// The validated challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeRepr {
    /// `None`: accepted; else why the hello was refused.
    pub refusal: Option<Refusal>,
    /// Whether the session's records are encrypted.
    pub encrypt: bool,
    /// The destination's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The destination's proof.
    pub proof: [u8; PROOF_MAC_LEN],
}

impl ChallengeRepr {
    /// A refusal: no nonce, no proof.
    pub fn refused(r: Refusal) -> Self {
        Self {
            refusal: Some(r),
            encrypt: false,
            nonce: [0; NONCE_LEN],
            proof: [0; PROOF_MAC_LEN],
        }
    }

    /// Parse and check a challenge (magic, version, CRC, flags).
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_prefix(b)?;
        if b.len() < CHALLENGE_LEN {
            return Err(WireError::Truncated);
        }
        if !crc_ok(b, CHALLENGE_LEN - 4) {
            return Err(WireError::HandshakeCrc);
        }
        if b[7] & !FLAG_ENCRYPT != 0 {
            return Err(WireError::Reserved);
        }
        Ok(Self {
            refusal: (b[6] != 0).then(|| Refusal::from_code(b[6])),
            encrypt: b[7] & FLAG_ENCRYPT != 0,
            nonce: array32(&b[8..40]),
            proof: array32(&b[40..72]),
        })
    }

    /// Write the part the proofs cover into `b[..CHALLENGE_SIGNED_LEN]`.
    pub fn emit_signed(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6] = self.refusal.map_or(0, Refusal::code);
        b[7] = u8::from(self.encrypt);
        b[8..40].copy_from_slice(&self.nonce);
    }

    /// Write the challenge into `b[..CHALLENGE_LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        self.emit_signed(b);
        b[40..72].copy_from_slice(&self.proof);
        put_crc(b, CHALLENGE_LEN - 4);
    }
}

/// Parse a proof message: its CRC, then the proof.
pub fn parse_proof(b: &[u8]) -> Result<[u8; PROOF_MAC_LEN], WireError> {
    if b.len() < PROOF_LEN {
        return Err(WireError::Truncated);
    }
    if !crc_ok(b, PROOF_MAC_LEN) {
        return Err(WireError::HandshakeCrc);
    }
    Ok(array32(b))
}

/// Write a proof message into `b[..PROOF_LEN]`.
pub fn emit_proof(proof: &[u8; PROOF_MAC_LEN], b: &mut [u8]) {
    b[..PROOF_MAC_LEN].copy_from_slice(proof);
    put_crc(b, PROOF_MAC_LEN);
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
    /// Back channel: the destination applied and checked everything.
    Ready = 8,
    /// Back channel: the destination refuses (and will never resume).
    Reject = 9,
    /// The source hands the guest over and will never resume it.
    Commit = 10,
    /// Back channel: the destination resumed the guest.
    Resumed = 11,
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
            8 => Self::Ready,
            9 => Self::Reject,
            10 => Self::Commit,
            11 => Self::Resumed,
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
    /// Header and payload length (what the tag covers).
    pub fn body_len(&self) -> usize {
        RECORD_HEAD_LEN + self.payload_len() as usize
    }
    /// Whole record length implied by the header.
    pub fn total_len(&self) -> usize {
        self.body_len() + RECORD_TRAILER_LEN
    }
    /// Payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[RECORD_HEAD_LEN..self.body_len()]
    }
}

/// Why the destination refused an authenticated stream (the reject
/// record's code). A destination that sends one never resumes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The stream was malformed (the source's fault, or the wire's).
    BadStream,
    /// The destination could not store the vGPU (its own fault).
    DestinationMemory,
    /// The destination's link failed.
    Link,
    /// The destination waited too long for the source.
    Timeout,
    /// The destination could not restore or check the state it received.
    Restore,
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
            Self::Timeout => 4,
            Self::Restore => 5,
            Self::Other(c) => c,
        }
    }
    /// From a wire code.
    pub fn from_code(c: u64) -> Self {
        match c {
            1 => Self::BadStream,
            2 => Self::DestinationMemory,
            3 => Self::Link,
            4 => Self::Timeout,
            5 => Self::Restore,
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
            Self::Timeout => f.write_str("it waited too long for the source"),
            Self::Restore => f.write_str("it could not restore the state it received"),
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
        /// The whole blob's digest, on the chunk that completes it.
        digest: Option<&'a StateDigest>,
    },
    /// CPU state chunk.
    CpuState {
        /// Offset of the chunk in the blob.
        offset: u32,
        /// Blob length.
        total: u32,
        /// Chunk.
        data: &'a [u8],
        /// The whole blob's digest, on the chunk that completes it.
        digest: Option<&'a StateDigest>,
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
    /// Back channel: all applied and checked.
    Ready {
        /// Sequence number of the done record.
        done_seq: u32,
    },
    /// Back channel: refused.
    Reject {
        /// Why.
        reason: RejectReason,
    },
    /// The source commits the handover.
    Commit {
        /// Sequence number of the done record.
        done_seq: u32,
    },
    /// Back channel: resumed on the destination.
    Resumed {
        /// Sequence number of the commit record.
        commit_seq: u32,
    },
}

fn page_arg(arg: u64) -> Result<GuestPage, WireError> {
    GuestPage::new(arg).ok_or(WireError::BadPage)
}

fn u32_arg(arg: u64) -> Result<u32, WireError> {
    u32::try_from(arg).map_err(|_| WireError::Reserved)
}

impl<'a> RecordRepr<'a> {
    /// Parse an opened record (its CRC and tag already checked, its payload
    /// decrypted, see [`crate::auth::Opener`]): reserved fields, kind,
    /// lengths, state chunk bounds.
    pub fn parse(r: &Record<&'a [u8]>) -> Result<Self, WireError> {
        let kind = Kind::from_u8(r.kind()).ok_or(WireError::UnknownKind(r.kind()))?;
        let is_state = matches!(kind, Kind::DeviceState | Kind::CpuState);
        let allowed_flags = if is_state { FLAG_FINAL } else { 0 };
        if r.flags() & !allowed_flags != 0 || r.reserved() != 0 {
            return Err(WireError::Reserved);
        }
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
                let (data, digest) = if r.flags() & FLAG_FINAL != 0 {
                    let split = payload.len().checked_sub(STATE_DIGEST_LEN).ok_or(bad)?;
                    let (data, digest) = payload.split_at(split);
                    let digest: &'a StateDigest = digest.try_into().map_err(|_| bad)?;
                    (data, Some(digest))
                } else {
                    (payload, None)
                };
                let end = u64::from(offset) + data.len() as u64;
                // The final chunk ends the blob; any other ends before it.
                let fits = if digest.is_some() {
                    end == u64::from(total)
                } else {
                    end < u64::from(total) && !data.is_empty()
                };
                if !fits {
                    return Err(WireError::StateChunk);
                }
                Ok(if kind == Kind::DeviceState {
                    Self::DeviceState {
                        offset,
                        total,
                        data,
                        digest,
                    }
                } else {
                    Self::CpuState {
                        offset,
                        total,
                        data,
                        digest,
                    }
                })
            }
            Kind::EndOfPrecopy => empty(Self::EndOfPrecopy {
                rounds: u32_arg(arg)?,
            }),
            Kind::Done => empty(Self::Done {
                page_records: u32_arg(arg)?,
            }),
            Kind::Ready => empty(Self::Ready {
                done_seq: u32_arg(arg)?,
            }),
            Kind::Reject => empty(Self::Reject {
                reason: RejectReason::from_code(arg),
            }),
            Kind::Commit => empty(Self::Commit {
                done_seq: u32_arg(arg)?,
            }),
            Kind::Resumed => empty(Self::Resumed {
                commit_seq: u32_arg(arg)?,
            }),
        }
    }

    /// Whether the destination sends this kind (the back channel).
    pub fn is_back_channel(&self) -> bool {
        matches!(
            self,
            Self::Ready { .. } | Self::Reject { .. } | Self::Resumed { .. }
        )
    }

    /// (kind, flags, argument, payload parts, delta prefix)
    fn parts(&self) -> (Kind, u8, u64, [&'a [u8]; 2], [u8; DELTA_PREFIX]) {
        let none: &'a [u8] = &[];
        let state = |offset: u32, total: u32| (u64::from(total) << 32) | u64::from(offset);
        let digest_part = |d: Option<&'a StateDigest>| -> (&'a [u8], u8) {
            match d {
                Some(d) => (d, FLAG_FINAL),
                None => (none, 0),
            }
        };
        let simple = |kind, arg: u64| (kind, 0, arg, [none, none], [0; DELTA_PREFIX]);
        match *self {
            Self::Page { page, data } => (Kind::Page, 0, page.get(), [data, none], [0; 16]),
            Self::ZeroPage { page } => simple(Kind::ZeroPage, page.get()),
            Self::Delta {
                page,
                base,
                result,
                delta,
            } => {
                let mut pre = [0u8; DELTA_PREFIX];
                pre[..8].copy_from_slice(&base.to_le_bytes());
                pre[8..].copy_from_slice(&result.to_le_bytes());
                (Kind::Delta, 0, page.get(), [none, delta], pre)
            }
            Self::DeviceState {
                offset,
                total,
                data,
                digest,
            } => {
                let (d, flags) = digest_part(digest);
                (
                    Kind::DeviceState,
                    flags,
                    state(offset, total),
                    [data, d],
                    [0; 16],
                )
            }
            Self::CpuState {
                offset,
                total,
                data,
                digest,
            } => {
                let (d, flags) = digest_part(digest);
                (
                    Kind::CpuState,
                    flags,
                    state(offset, total),
                    [data, d],
                    [0; 16],
                )
            }
            Self::EndOfPrecopy { rounds } => simple(Kind::EndOfPrecopy, u64::from(rounds)),
            Self::Done { page_records } => simple(Kind::Done, u64::from(page_records)),
            Self::Ready { done_seq } => simple(Kind::Ready, u64::from(done_seq)),
            Self::Reject { reason } => simple(Kind::Reject, reason.code()),
            Self::Commit { done_seq } => simple(Kind::Commit, u64::from(done_seq)),
            Self::Resumed { commit_seq } => simple(Kind::Resumed, u64::from(commit_seq)),
        }
    }

    /// Bytes this record takes on the wire, tag and CRC included.
    pub fn wire_len(&self) -> usize {
        let (kind, _, _, [a, b], _) = self.parts();
        let pre = if kind == Kind::Delta { DELTA_PREFIX } else { 0 };
        RECORD_HEAD_LEN + pre + a.len() + b.len() + RECORD_TRAILER_LEN
    }

    /// Write the record's header (sequence number 0: the sealer writes it)
    /// and plaintext payload into `buf`, returning their length; seal it with
    /// [`crate::auth::Sealer::seal`]. `buf` must hold [`Self::wire_len`]
    /// bytes; a payload above [`MAX_PAYLOAD`] is a local bug and panics in
    /// debug builds only.
    pub fn emit_body(&self, buf: &mut [u8]) -> usize {
        let (kind, flags, arg, [a, b], pre) = self.parts();
        let pre: &[u8] = if kind == Kind::Delta { &pre } else { &[] };
        let len = pre.len() + a.len() + b.len();
        debug_assert!(len <= MAX_PAYLOAD);
        write_head(buf, kind, flags, arg, len);
        let mut at = RECORD_HEAD_LEN;
        for part in [pre, a, b] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        at
    }
}

fn write_head(buf: &mut [u8], kind: Kind, flags: u8, arg: u64, len: usize) {
    buf[0] = kind as u8;
    buf[1] = flags;
    buf[2..8].fill(0);
    buf[8..16].copy_from_slice(&arg.to_le_bytes());
    buf[16..20].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Write the body of a delta record whose delta bytes are already in place
/// at `buf[RECORD_HEAD_LEN + DELTA_PREFIX..][..delta_len]` (saves a copy);
/// returns the body length, to seal as [`RecordRepr::emit_body`]'s.
pub fn emit_delta_body_in_place(
    page: GuestPage,
    base: u64,
    result: u64,
    delta_len: usize,
    buf: &mut [u8],
) -> usize {
    let len = DELTA_PREFIX + delta_len;
    write_head(buf, Kind::Delta, 0, page.get(), len);
    buf[20..28].copy_from_slice(&base.to_le_bytes());
    buf[28..36].copy_from_slice(&result.to_le_bytes());
    RECORD_HEAD_LEN + len
}

/// What the destination accepts of a forward stream beyond its format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// The migrated guest's pages: every page record must name one.
    pub pages: PageRange,
    /// Largest device-state blob.
    pub max_device_state: u32,
    /// Largest CPU state blob.
    pub max_cpu_state: u32,
}

/// Order and content rules of a forward stream (records already opened).
#[derive(Clone, Debug)]
pub struct StreamState {
    limits: StreamLimits,
    page_records: u32,
    stopped: bool,
    done_seq: Option<u32>,
    commit_seq: Option<u32>,
    device: BlobProgress,
    cpu: BlobProgress,
}

#[derive(Clone, Debug, Default)]
struct BlobProgress {
    started: bool,
    complete: bool,
    total: u32,
    received: u32,
    hasher: blake3::Hasher,
}

impl BlobProgress {
    fn accept(
        &mut self,
        (offset, total, data, digest): (u32, u32, &[u8], Option<&StateDigest>),
        blob: Blob,
    ) -> Result<(), WireError> {
        let continues = if self.started {
            !self.complete && total == self.total && offset == self.received
        } else {
            offset == 0
        };
        if !continues {
            return Err(WireError::StateChunk);
        }
        self.started = true;
        self.total = total;
        self.received = offset + data.len() as u32;
        self.hasher.update(data);
        if let Some(d) = digest {
            // The digest is checked against what arrived, before the blob
            // counts as complete (and so before anything is restored).
            if self.hasher.finalize() != blake3::Hash::from_bytes(*d) {
                return Err(WireError::StateDigest(blob));
            }
            self.complete = true;
        }
        Ok(())
    }
}

impl StreamState {
    /// A stream to be checked against `limits`.
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            page_records: 0,
            stopped: false,
            done_seq: None,
            commit_seq: None,
            device: BlobProgress::default(),
            cpu: BlobProgress::default(),
        }
    }

    /// Whether the done record was accepted.
    pub fn is_done(&self) -> bool {
        self.done_seq.is_some()
    }

    /// Sequence number of the done record, once accepted.
    pub fn done_seq(&self) -> Option<u32> {
        self.done_seq
    }

    /// Sequence number of the commit record, once accepted.
    pub fn commit_seq(&self) -> Option<u32> {
        self.commit_seq
    }

    /// Whether the source announced the end of pre-copy.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Page records accepted so far.
    pub fn page_records(&self) -> u32 {
        self.page_records
    }

    fn check_page(&self, page: GuestPage) -> Result<(), WireError> {
        if self.limits.pages.contains(page) {
            Ok(())
        } else {
            Err(WireError::PageOutOfRange(page))
        }
    }

    /// Check `repr`, the opened record with sequence number `seq`, against
    /// the rules.
    pub fn accept(&mut self, seq: u32, repr: &RecordRepr<'_>) -> Result<(), WireError> {
        if self.commit_seq.is_some() {
            return Err(WireError::TrailingData);
        }
        if repr.is_back_channel() {
            return Err(WireError::Order(
                "back-channel record in the forward stream",
            ));
        }
        if let Some(done_seq) = self.done_seq {
            return match *repr {
                RecordRepr::Commit { done_seq: d } if d == done_seq => {
                    self.commit_seq = Some(seq);
                    Ok(())
                }
                RecordRepr::Commit { .. } => Err(WireError::Order("commit names another done")),
                _ => Err(WireError::TrailingData),
            };
        }
        match *repr {
            RecordRepr::Page { page, .. }
            | RecordRepr::ZeroPage { page }
            | RecordRepr::Delta { page, .. } => {
                self.check_page(page)?;
                self.page_records += 1;
            }
            RecordRepr::DeviceState {
                offset,
                total,
                data,
                digest,
            } => self.accept_state(Blob::Device, (offset, total, data, digest))?,
            RecordRepr::CpuState {
                offset,
                total,
                data,
                digest,
            } => self.accept_state(Blob::Cpu, (offset, total, data, digest))?,
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
                if !self.device.complete || !self.cpu.complete {
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
                self.done_seq = Some(seq);
            }
            RecordRepr::Commit { .. } => return Err(WireError::Order("commit before done")),
            RecordRepr::Ready { .. } | RecordRepr::Reject { .. } | RecordRepr::Resumed { .. } => {
                return Err(WireError::Order(
                    "back-channel record in the forward stream",
                ))
            }
        }
        Ok(())
    }

    fn accept_state(
        &mut self,
        blob: Blob,
        chunk: (u32, u32, &[u8], Option<&StateDigest>),
    ) -> Result<(), WireError> {
        if !self.stopped {
            return Err(WireError::Order("state before end of pre-copy"));
        }
        let (progress, max) = match blob {
            Blob::Device => (&mut self.device, self.limits.max_device_state),
            Blob::Cpu => (&mut self.cpu, self.limits.max_cpu_state),
        };
        let total = chunk.1;
        if total > max {
            return Err(WireError::StateTooLarge { blob, total, max });
        }
        progress.accept(chunk, blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrip_and_errors() {
        let mut b = [0u8; HELLO_LEN];
        let hello = HelloRepr {
            vgpu_type: 2,
            encrypt: true,
            page_count: 77,
            nonce: [9; NONCE_LEN],
        };
        hello.emit(&mut b);
        assert_eq!(HelloRepr::parse(&b), Ok(hello));
        assert_eq!(HelloRepr::parse(&b[..10]), Err(WireError::Truncated));
        // The version is named even when the rest does not check out.
        let mut v = b;
        v[4] = 1;
        assert_eq!(HelloRepr::parse(&v), Err(WireError::UnsupportedVersion(1)));
        assert_eq!(
            HelloRepr::parse(&v[..6]),
            Err(WireError::UnsupportedVersion(1))
        );
        b[7] ^= 1;
        assert_eq!(HelloRepr::parse(&b), Err(WireError::HandshakeCrc));
        b[7] ^= 1;
        b[13] = 1;
        put_crc(&mut b, HELLO_LEN - 4);
        assert_eq!(HelloRepr::parse(&b), Err(WireError::Reserved));
    }

    #[test]
    fn challenge_and_proof_roundtrip() {
        let c = ChallengeRepr {
            refusal: None,
            encrypt: true,
            nonce: [3; NONCE_LEN],
            proof: [4; PROOF_MAC_LEN],
        };
        let mut b = [0u8; CHALLENGE_LEN];
        c.emit(&mut b);
        assert_eq!(ChallengeRepr::parse(&b), Ok(c));
        let r = ChallengeRepr::refused(Refusal::GuestSize);
        r.emit(&mut b);
        assert_eq!(ChallengeRepr::parse(&b), Ok(r));
        b[50] ^= 1;
        assert_eq!(ChallengeRepr::parse(&b), Err(WireError::HandshakeCrc));
        let mut p = [0u8; PROOF_LEN];
        emit_proof(&[5; PROOF_MAC_LEN], &mut p);
        assert_eq!(parse_proof(&p), Ok([5; PROOF_MAC_LEN]));
        p[0] ^= 1;
        assert_eq!(parse_proof(&p), Err(WireError::HandshakeCrc));
    }

    #[test]
    fn record_body_roundtrip() {
        let data = [7u8; PAGE_SIZE];
        let page = GuestPage::new(42).unwrap();
        let digest = [1u8; STATE_DIGEST_LEN];
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
                digest: None,
            },
            RecordRepr::DeviceState {
                offset: 3,
                total: 5,
                data: &[1, 2],
                digest: Some(&digest),
            },
            RecordRepr::CpuState {
                offset: 0,
                total: 0,
                data: &[],
                digest: Some(&digest),
            },
            RecordRepr::EndOfPrecopy { rounds: 3 },
            RecordRepr::Done { page_records: 9 },
            RecordRepr::Ready { done_seq: 4 },
            RecordRepr::Reject {
                reason: RejectReason::BadStream,
            },
            RecordRepr::Commit { done_seq: 4 },
            RecordRepr::Resumed { commit_seq: 5 },
        ];
        for r in &reprs {
            let mut buf = [0u8; MAX_RECORD];
            let n = r.emit_body(&mut buf);
            assert_eq!(n + RECORD_TRAILER_LEN, r.wire_len());
            let view = Record::new_checked(&buf[..n + RECORD_TRAILER_LEN]).unwrap();
            assert_eq!(RecordRepr::parse(&view).unwrap(), *r);
        }
    }

    #[test]
    fn state_chunks_must_end_where_their_flag_says() {
        let mut buf = [0u8; MAX_RECORD];
        // A chunk that completes its blob without the final flag.
        let n = RecordRepr::DeviceState {
            offset: 0,
            total: 2,
            data: &[1, 2],
            digest: None,
        }
        .emit_body(&mut buf);
        let view = Record::new_checked(&buf[..n + RECORD_TRAILER_LEN]).unwrap();
        assert_eq!(RecordRepr::parse(&view), Err(WireError::StateChunk));
        // A final chunk that stops short of the end.
        let n = RecordRepr::DeviceState {
            offset: 0,
            total: 3,
            data: &[1, 2],
            digest: Some(&[0; STATE_DIGEST_LEN]),
        }
        .emit_body(&mut buf);
        let view = Record::new_checked(&buf[..n + RECORD_TRAILER_LEN]).unwrap();
        assert_eq!(RecordRepr::parse(&view), Err(WireError::StateChunk));
    }

    fn limits() -> StreamLimits {
        StreamLimits {
            pages: PageRange::new(GuestPage::new(16).unwrap(), 4).unwrap(),
            max_device_state: 8,
            max_cpu_state: 0,
        }
    }

    #[test]
    fn stream_rules_check_pages_sizes_and_digests() {
        let mut s = StreamState::new(limits());
        let outside = GuestPage::new(20).unwrap();
        assert_eq!(
            s.accept(0, &RecordRepr::ZeroPage { page: outside }),
            Err(WireError::PageOutOfRange(outside))
        );
        let mut s = StreamState::new(limits());
        s.accept(0, &RecordRepr::EndOfPrecopy { rounds: 1 })
            .unwrap();
        let big = RecordRepr::DeviceState {
            offset: 0,
            total: 9,
            data: &[0; 9],
            digest: Some(&[0; 32]),
        };
        assert_eq!(
            s.accept(1, &big),
            Err(WireError::StateTooLarge {
                blob: Blob::Device,
                total: 9,
                max: 8
            })
        );
        let (d13, d123, d) = (
            blake3::hash(&[1, 3]),
            blake3::hash(&[1, 2, 3]),
            blake3::hash(&[]),
        );
        let wrong = RecordRepr::DeviceState {
            offset: 0,
            total: 2,
            data: &[1, 2],
            digest: Some(d13.as_bytes()),
        };
        assert_eq!(
            s.accept(1, &wrong),
            Err(WireError::StateDigest(Blob::Device))
        );
        let mut s = StreamState::new(limits());
        s.accept(0, &RecordRepr::EndOfPrecopy { rounds: 1 })
            .unwrap();
        let first = RecordRepr::DeviceState {
            offset: 0,
            total: 3,
            data: &[1],
            digest: None,
        };
        let last = RecordRepr::DeviceState {
            offset: 1,
            total: 3,
            data: &[2, 3],
            digest: Some(d123.as_bytes()),
        };
        s.accept(1, &first).unwrap();
        s.accept(2, &last).unwrap();
        assert_eq!(s.accept(3, &last), Err(WireError::StateChunk));
        let cpu = RecordRepr::CpuState {
            offset: 0,
            total: 0,
            data: &[],
            digest: Some(d.as_bytes()),
        };
        s.accept(3, &cpu).unwrap();
        assert_eq!(
            s.accept(4, &RecordRepr::Commit { done_seq: 4 }),
            Err(WireError::Order("commit before done"))
        );
        s.accept(4, &RecordRepr::Done { page_records: 0 }).unwrap();
        assert_eq!(
            s.accept(5, &RecordRepr::Commit { done_seq: 3 }),
            Err(WireError::Order("commit names another done"))
        );
        s.accept(5, &RecordRepr::Commit { done_seq: 4 }).unwrap();
        assert_eq!(s.commit_seq(), Some(5));
        assert_eq!(
            s.accept(6, &RecordRepr::EndOfPrecopy { rounds: 1 }),
            Err(WireError::TrailingData)
        );
    }
}
