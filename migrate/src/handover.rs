//! The handover: one owner of the guest at every moment, whatever message
//! is lost (ARCHITECTURE.md "Handover and ownership").
//!
//! # Protocol
//! After the done record the guest is stopped on the source and fully
//! received on the destination. Then:
//!
//! 1. the destination checks and applies everything, and the kernel
//!    restores the vGPU without running it; then it sends **ready**
//!    ([`crate::Receiver::ready`]), or **reject** if anything failed;
//! 2. the source, on ready, sends **commit**. The source is *committed* once
//!    the commit record's last byte is taken by its link
//!    ([`crate::Source::committed`]): before that the destination can never
//!    hold a whole, authentic commit. From then on the source never resumes
//!    the guest, unless the destination says it never will (a reject);
//! 3. the destination resumes the guest only on commit
//!    ([`crate::ReceiverStatus::Resume`]), then sends **resumed**
//!    ([`crate::Receiver::resumed`]). Once it holds the commit it never
//!    rejects; once it has rejected it ignores a commit;
//! 4. the source, on resumed, frees the guest ([`crate::SourceStatus::Completed`]).
//!
//! Every record is authenticated ([`crate::auth`]), so none of these can be
//! forged or replayed. Every wait has a timeout: the caller passes the time
//! in, the state machines hold no clock; [`crate::SourceConfig::timeout_ns`]
//! and [`crate::ReceiverConfig::timeout_ns`] bound how long a side waits
//! for the peer without progress (a message, or room on the link). A side
//! that gives up before the commit point falls back to the safe outcome:
//! the source runs the guest, the destination frees everything. A source
//! that gives up after it committed cannot know whether the guest runs on
//! the destination: it keeps the guest stopped, not freed, and says so
//! ([`crate::SourceStatus::Unconfirmed`]); the operator decides.
//!
//! # What each side does when a message is lost or the link dies
//! "Resumes" means the source resumes its guest (it had stopped it, or
//! never did); "frees" means the destination frees what it allocated. The
//! tests in `tests.rs` (`handover_*`, `failure_*`) cover each row with the
//! in-memory pipe and the fault injector.
//!
//! | lost, or link dead | source | destination | guest runs on |
//! |---|---|---|---|
//! | hello, challenge or proof (handshake) | times out waiting for the challenge, or its link fails: fails, resumes | times out waiting for the hello or proof, or sees the stream end: frees | source |
//! | a record during pre-copy (peer gone) | link error, or no room to send for `timeout_ns`: fails, its guest never stopped | stream ends or stays silent for `timeout_ns`: frees | source |
//! | a record during stop-and-copy, or done | link error, no room, or no ready within `timeout_ns`: fails, resumes | stream ends or stays silent: frees | source |
//! | a record damaged, forged, replayed or reordered | the reject arrives: fails, resumes | rejects (CRC, sequence or tag), frees | source |
//! | the destination cannot restore | the reject arrives: fails, resumes | rejects (`Restore`), frees | source |
//! | ready | no ready within `timeout_ns`: fails, resumes | no commit within `timeout_ns`: rejects, frees | source |
//! | commit, only partly taken by the source's link | link error: not committed, fails, resumes | never holds the whole commit; times out or sees the stream end: frees | source |
//! | commit, back channel still up | committed; then the destination's reject arrives (it is due within `timeout_ns` of ready, and the source listens for `answer_wait_ns(timeout_ns)` after its commit): it will never resume, so the source fails and resumes | no commit within `timeout_ns`: rejects, frees | source |
//! | commit, back channel dead too | committed; no resumed within `answer_wait_ns(timeout_ns)`: `Unconfirmed`, keeps the guest stopped | no commit within `timeout_ns`: frees | nowhere (the source keeps it stopped, intact, and reports it cannot know) |
//! | resumed | committed; no resumed within `answer_wait_ns(timeout_ns)`: `Unconfirmed`, keeps the guest stopped (a resumed that arrives later still completes it) | resumed: runs | destination |
//! | nothing | on resumed: completes, frees the guest | runs | destination |
//!
//! The guest never runs on both sides: the destination runs it only with
//! an authentic commit, which exists only once the source is committed, and
//! a committed source resumes only on an authentic reject, which the
//! destination sends only while it has not accepted a commit.

use core::fmt;

/// What a side was waiting for when it timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Source: the destination's challenge.
    Challenge,
    /// Destination: the source's hello.
    Hello,
    /// Destination: the source's proof.
    Proof,
    /// Destination: the next record of the stream.
    Stream,
    /// Either side: room on the link to send.
    SendRoom,
    /// Source: the destination's ready.
    Ready,
    /// Destination: the source's commit.
    Commit,
    /// Source: the destination's resumed.
    Resumed,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Challenge => "the destination's answer to the hello",
            Self::Hello => "the source's hello",
            Self::Proof => "the source's handshake proof",
            Self::Stream => "the next record of the stream",
            Self::SendRoom => "room on the link to send",
            Self::Ready => "the destination's ready",
            Self::Commit => "the source's commit",
            Self::Resumed => "the destination's resumed",
        })
    }
}

/// Default bound on any wait for the peer: 5 s. Generous next to a TCP
/// round trip and a restore, short next to an operator's patience.
pub const DEFAULT_TIMEOUT_NS: u64 = 5_000_000_000;

/// How long a committed source waits for the destination's answer (its
/// resumed, or its reject) before it reports the handover unconfirmed,
/// when both sides wait `timeout_ns` for each other.
///
/// The destination's wait for the commit began when it sent ready, before
/// the source could commit, and its reject goes out when that wait ends
/// by its own clock, at the next time its loop polls. The source's wait
/// must outlast that by construction, not by racing two clocks: it
/// listens twice as long, so the reject still counts when it comes as
/// late again as the whole timeout (a destination polled late, or a
/// clock that runs slow next to the source's).
pub const fn answer_wait_ns(timeout_ns: u64) -> u64 {
    timeout_ns.saturating_mul(2)
}
