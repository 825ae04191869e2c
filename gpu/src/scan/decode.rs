//! Zero-copy command view and stream decoder.
//!
//! [`decode`] reads the header at a DWord offset of a buffer, finds the
//! command in the [`table`](super::table) for the engine, computes its length
//! from the DWord Length field (with the length bias) or the fixed length,
//! checks it against the table's bounds and against the end of the buffer,
//! and returns a [`Command`]: a view of exactly that command's DWords.

use core::fmt;

use super::table::{lookup_any, lookup_len, CmdSpec, Opcode};
use crate::engine::Engine;

/// Why a command could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Header bits 31:29 hold a command type no Gen9 engine accepts.
    ReservedType,
    /// The table has no command with this opcode.
    UnknownOpcode,
    /// The command exists, but not on this engine.
    WrongEngine {
        /// Name of the command (as valid on some other engine).
        name: &'static str,
    },
    /// The DWord Length field gives a length the command cannot have.
    BadLength {
        /// Decoded length in DWords.
        len: usize,
        /// Smallest accepted length.
        min: u32,
        /// Largest accepted length.
        max: u32,
    },
    /// The command runs past the end of the buffer (ring or batch).
    Truncated {
        /// DWords the command needs.
        len: usize,
        /// DWords left in the buffer from the command's start.
        available: usize,
    },
}

/// A decode failure: where, what header, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Engine whose stream was decoded.
    pub engine: Engine,
    /// DWord offset of the offending header within the decoded buffer.
    pub offset: usize,
    /// The header DWord.
    pub header: u32,
    /// The reason.
    pub kind: DecodeErrorKind,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeErrorKind::ReservedType => f.write_str("reserved command type"),
            DecodeErrorKind::UnknownOpcode => f.write_str("unknown opcode"),
            DecodeErrorKind::WrongEngine { name } => {
                write!(f, "{name} is not valid on this engine")
            }
            DecodeErrorKind::BadLength { len, min, max } => {
                write!(f, "length {len} DWords outside {min}..={max}")
            }
            DecodeErrorKind::Truncated { len, available } => {
                write!(
                    f,
                    "command of {len} DWords runs past the buffer end ({available} left)"
                )
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: header {:#010x} at DWord {}: {}",
            self.engine, self.header, self.offset, self.kind
        )
    }
}

/// A decoded command: a view of exactly its DWords plus its table row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    words: &'a [u32],
    spec: &'static CmdSpec,
}

impl<'a> Command<'a> {
    /// The view of `words`, already decoded as `spec` (by [`head`]) and cut
    /// to the length `head` gave.
    #[inline]
    pub(crate) fn from_parts(words: &'a [u32], spec: &'static CmdSpec) -> Self {
        Command { words, spec }
    }
    /// The command's table row.
    pub fn spec(&self) -> &'static CmdSpec {
        self.spec
    }
    /// The command's name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }
    /// The header DWord.
    pub fn header(&self) -> u32 {
        // A decoded command has at least one DWord (checked in `decode`).
        self.words.first().copied().unwrap_or(0)
    }
    /// The opcode key.
    pub fn opcode(&self) -> Opcode {
        self.spec.opcode
    }
    /// Length in DWords (header included).
    #[allow(clippy::len_without_is_empty)] // reason: a command is never empty
    pub fn len(&self) -> usize {
        self.words.len()
    }
    /// All DWords of the command.
    pub fn words(&self) -> &'a [u32] {
        self.words
    }
    /// DWord `i` of the command, or 0 past its end (callers check the length
    /// through the validated [`CommandRepr`](super::CommandRepr)).
    pub fn dw(&self, i: usize) -> u32 {
        self.words.get(i).copied().unwrap_or(0)
    }
}

/// Looks up the command whose header is `header` on `engine` and computes
/// its length in DWords: the one table walk per command that both
/// [`decode`] and the scanner's hot loop use.
#[inline]
pub fn head(engine: Engine, header: u32) -> Result<(&'static CmdSpec, usize), DecodeErrorKind> {
    match lookup_len(engine, header) {
        Some((spec, Ok(len))) => Ok((spec, len)),
        Some((_, Err((len, min, max)))) => Err(DecodeErrorKind::BadLength { len, min, max }),
        None => Err(not_found(header)),
    }
}

/// Why `header` has no row on the engine it was decoded for.
#[cold]
fn not_found(header: u32) -> DecodeErrorKind {
    if Opcode::of(header).is_none() {
        DecodeErrorKind::ReservedType
    } else if let Some(other) = lookup_any(header) {
        DecodeErrorKind::WrongEngine { name: other.name }
    } else {
        DecodeErrorKind::UnknownOpcode
    }
}

/// Decodes the command at DWord `offset` of `buf` for `engine`.
pub fn decode(engine: Engine, buf: &[u32], offset: usize) -> Result<Command<'_>, DecodeError> {
    let rest = buf.get(offset..).unwrap_or(&[]);
    let header = match rest.first() {
        Some(&h) => h,
        None => {
            return Err(DecodeError {
                engine,
                offset,
                header: 0,
                kind: DecodeErrorKind::Truncated {
                    len: 1,
                    available: 0,
                },
            })
        }
    };
    let err = |kind| DecodeError {
        engine,
        offset,
        header,
        kind,
    };
    let (spec, len) = head(engine, header).map_err(err)?;
    match rest.get(..len) {
        Some(words) => Ok(Command { words, spec }),
        None => Err(err(DecodeErrorKind::Truncated {
            len,
            available: rest.len(),
        })),
    }
}

/// Iterator over the commands of a buffer, front to back. Stops after the
/// first error (which it yields).
#[derive(Clone, Debug)]
pub struct Commands<'a> {
    engine: Engine,
    buf: &'a [u32],
    offset: usize,
    failed: bool,
}

impl<'a> Commands<'a> {
    /// Iterates over `buf` as a command stream for `engine`.
    pub fn new(engine: Engine, buf: &'a [u32]) -> Self {
        Commands {
            engine,
            buf,
            offset: 0,
            failed: false,
        }
    }
    /// DWord offset of the next command.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for Commands<'a> {
    /// `(offset, command)` pairs.
    type Item = Result<(usize, Command<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        match decode(self.engine, self.buf, self.offset) {
            Ok(c) => {
                let at = self.offset;
                self.offset += c.len();
                Some(Ok((at, c)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
