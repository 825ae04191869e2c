//! The command scanner: the only path from a guest's ring TAIL write to an
//! engine (ARCHITECTURE.md "Command scanner").
//!
//! Layers, smoltcp-style:
//! - [`table`]: the scanner's own static opcode table of every Gen9 command
//!   family, with per-engine validity and length rules;
//! - [`decode`](mod@decode): a zero-copy view ([`Command`]) over a DWord slice, checked
//!   against the table, and an iterator over a command stream;
//! - [`repr`]: validated representations of the commands whose operands the
//!   auditor inspects.
//!
//! Everything a guest feeds in ends in a typed error, never a panic, and in
//! time bounded by the input length. Nothing here allocates.

pub mod decode;
pub mod operands;
pub mod repr;
pub mod surface;
pub mod table;
pub mod tracked;

pub use decode::{decode, Command, Commands, DecodeError, DecodeErrorKind};
pub use repr::{CommandRepr, ReprError};
pub use table::{lookup, CmdSpec, CommandType, Engines, Len, Op, Opcode, COMMANDS};
pub mod regs;
pub mod scanner;

pub use scanner::{
    ControlFlow, GmFault, GmSpace, Location, PageRun, Reason, RingState, ScanError, Shadow,
    Submission, WriteSet,
};
