//! Pre-copy policies, selectable by name (`policy=` on the kernel command
//! line).
//!
//! | name | what it does |
//! |------|--------------|
//! | `stop-and-copy` | Intel XenGT baseline: stop at once, send every referenced page |
//! | `precopy` | QEMU iterative pre-copy; GPU writes are invisible to a dirty log, so every GPU page counts dirty each round; stop when the remaining bytes fit the downtime budget at the measured bandwidth, or at the round cap |
//! | `gmig-oneshot` | gMig VEE'18: bulk round sends every page once with a 256-bit XOR-fold tag; later rounds send CPU-dirty pages only; at stop, CPU-dirty pages are sent and every other page is re-tagged first (a whole verification pass) and the changed ones sent after it |
//! | `gmig-tpds` | gMig TPDS'20: as `gmig-oneshot`, plus the sampling pre-filter (bytes 512, 1536, 2560, 3584) and verification interleaved with transmission (a state machine, no threads) |
//! | `informed` | ours: xxh3-64 tags; after the bulk round only pages the scanner reported as write targets or the kernel as CPU-dirty are candidates (read and hashed; unchanged rewrites cost a hash, not a send), every page once the scanner reports writes it cannot bound (draws, video objects); rounds repeat until they stop shrinking (2% better than the best round, patience two rounds), each round visiting pages never re-sent first and re-sent (hot) pages last; zero pages elided; changed pages delta-encoded against a two-way cache of re-sent pages; at stop only candidates are verified, interleaved with sending |
//! | `informed-throttle` | `informed`, plus the convergence throttle ([`crate::throttle`]): where `informed` would stop because its rounds stopped shrinking while the stop would still take longer than the throttle's target (30 ms) on the link (the round's bytes plus the send-buffer backlog: what the guest dirties while it drains), it lowers the vGPU's share of GPU time (80%, then 10% less per further stall, never below 25%) and goes on; once the round fits the target it stops, and the guest gets its full share back. It costs the guest time: the simulator reports how long and at what share |
//!
//! `informed-throttle` is a policy of its own rather than `informed`'s
//! behaviour because it changes what the guest gets: an operator who picks
//! it accepts a slower guest for a shorter pause, and the benches show both
//! (the cost-free result and the throttled one with its cost) side by side.
//! Where pre-copy converges by itself, it is `informed`, run for run.
//!
//! # Where `informed`'s downtime goes, and its floor
//! After the bulk round, each round re-sends what changed during the one
//! before, so round length converges to the point where the link just keeps
//! up with the hot set. The downtime is then the wire time of the pages
//! changed during the last round, plus the send-buffer backlog and the
//! device and CPU state; the CPU work at stop (hashing candidates only) is
//! small and overlaps the link. When a link cannot re-send the hot set
//! faster than it is rewritten, no policy escapes a floor: with `B` full
//! pages per second on the link and full rewrites at `lambda` per hot page
//! per second, at most `B / lambda` hot pages are clean on average (Little's
//! law), so at least `H - B / lambda` of the `H` hot pages wait for the
//! stop. `migrate-sim` prints this floor next to each result
//! (`downtime_floor_ms`). The floor takes the guest's write rate as given:
//! it binds every policy that leaves the guest alone, and
//! `informed-throttle` gets below it only by slowing the guest.
//!
//! Measured with `migrate-sim` (2026-11-25, `target-cpu=native`, measured
//! CPU costs; downtime in ms, floor as a ratio to gmig-oneshot; workload and
//! link parameters and their sources are in `migrate-sim`'s docs; the
//! throttle's cost as time throttled / mean share granted meanwhile /
//! guest work held back in ms of full-speed work):
//!
//! | workload | link | gmig-oneshot | gmig-tpds | informed | informed / one-shot | floor / one-shot | informed-throttle | its ratio | throttle cost |
//! |---|---|---:|---:|---:|---:|---:|---:|---:|---|
//! | 3d-game | 32 MiB/s | 411.4 | 411.3 | 98.6 | 0.240 | 0.153 | 18.7 | 0.045 | 1131 ms / 0.76 / 268 ms |
//! | 2d-desktop | 32 MiB/s | 107.4 | 107.4 | 3.4 | 0.032 | 0.019 | 3.4 | 0.032 | none |
//! | video | 32 MiB/s | 304.4 | 304.3 | 76.6 | 0.252 | 0.178 | 17.8 | 0.058 | 791 ms / 0.79 / 166 ms |
//! | qemu-anchor | 32 MiB/s | 403.2 | 402.2 | 2.9 | 0.007 | 0.005 | 2.9 | 0.007 | none |
//! | 3d-game | 1GbE | 84.9 | 82.8 | 5.1 | 0.060 | 0.007 | 5.1 | 0.060 | none |
//! | 2d-desktop | 1GbE | 16.5 | 16.5 | 0.8 | 0.048 | 0.034 | 0.8 | 0.048 | none |
//! | video | 1GbE | 73.6 | 72.6 | 4.0 | 0.054 | 0.008 | 4.0 | 0.054 | none |
//! | qemu-anchor | 1GbE | 43.5 | 41.6 | 0.9 | 0.021 | 0.013 | 0.9 | 0.021 | none |
//!
//! In the 3D game and the video the GPU writes through state the scanner
//! does not parse (draws, decode objects), so their submissions' writes
//! are untracked and `informed` hashes every page each round and at the
//! stop; the desktop's blits name their targets. gMig's rounds end, as in
//! QEMU, when the CPU dirty log's pending pages fit the downtime budget: on
//! the game and video models that is right after the bulk round, so the
//! GPU pages rewritten since then all wait for its stop.
//! Without throttling, `informed` stays at about 0.24-0.25x one-shot on the
//! game and video at 32 MiB/s; `informed-throttle` reaches 0.045x and
//! 0.058x by slowing the guest, and is never throttled elsewhere.
//! There the link re-sends about 8,100 pages/s while the ~2,000-page hot set
//! takes 5.5 (game) or 5.3 (video) full rewrites per page per second, so
//! about 500 (game) or 420 (video) hot pages are dirty at any moment
//! whatever the policy (the floor: 0.15x and 0.18x one-shot); cold writes
//! and hashing every page at the stop put `informed` above it. Short of
//! slowing the guest, only sending rewritten
//! pages in fewer bytes than a page would help, and the models' full
//! rewrites are random bytes (no source tells us how compressible real
//! render targets and decoded frames are, so the models do not assume it).
//! At a share `s` of its GPU time the guest rewrites the hot set `s` times
//! as fast, and pre-copy converges once `s` is below about the link's
//! page rate over the hot set's full-rewrite rate (0.75 for the game);
//! the throttle got there in two steps on the video (80%, 70%) and three
//! on the game (down to 60%).

use core::fmt;

use crate::digest::DigestKind;

/// Names accepted by [`Policy::from_name`], in [`Policy::ALL`] order.
pub const POLICY_NAMES: [&str; 6] = [
    "stop-and-copy",
    "precopy",
    "gmig-oneshot",
    "gmig-tpds",
    "informed",
    "informed-throttle",
];

/// A migration policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Stop, then send everything.
    StopAndCopy,
    /// QEMU-style iterative pre-copy.
    Precopy,
    /// gMig One-Shot Pre-Copy with hash-verified stop-and-copy.
    GmigOneShot,
    /// gMig plus TPDS'20 sampling pre-filter and overlapped verification.
    GmigTpds,
    /// Command-informed candidates, zero elision, delta encoding.
    Informed,
    /// `informed` plus the convergence throttle: slows the guest's GPU
    /// work when rounds stop shrinking above the throttle's target.
    InformedThrottle,
}

/// A `policy=` value that names no policy (the operator's mistake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPolicy {
    name: [u8; 32],
    len: usize,
}

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = core::str::from_utf8(&self.name[..self.len]).unwrap_or("<not UTF-8>");
        write!(f, "unknown migration policy `{name}`; known: ")?;
        for (i, n) in POLICY_NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl Policy {
    /// Every policy, in [`POLICY_NAMES`] order.
    pub const ALL: [Policy; 6] = [
        Self::StopAndCopy,
        Self::Precopy,
        Self::GmigOneShot,
        Self::GmigTpds,
        Self::Informed,
        Self::InformedThrottle,
    ];

    /// The policy's name.
    pub fn name(self) -> &'static str {
        POLICY_NAMES[self as usize]
    }

    /// The policy called `name`.
    pub fn from_name(name: &str) -> Result<Self, UnknownPolicy> {
        if let Some(i) = POLICY_NAMES.iter().position(|n| *n == name) {
            return Ok(Self::ALL[i]);
        }
        let mut e = UnknownPolicy {
            name: [0; 32],
            len: 0,
        };
        // Keep a prefix that ends on a character boundary.
        let mut len = name.len().min(32);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        e.name[..len].copy_from_slice(&name.as_bytes()[..len]);
        e.len = len;
        Err(e)
    }

    /// The digest its tracker uses.
    pub fn digest(self) -> DigestKind {
        match self {
            Self::GmigOneShot | Self::GmigTpds => DigestKind::XorFold,
            _ => DigestKind::Xxh3,
        }
    }

    /// Whether it sends only pages verified dirty at stop.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            Self::GmigOneShot | Self::GmigTpds | Self::Informed | Self::InformedThrottle
        )
    }

    /// Whether it is `informed` or builds on it (same candidates, rounds,
    /// zero elision and delta cache).
    pub fn is_informed(self) -> bool {
        matches!(self, Self::Informed | Self::InformedThrottle)
    }

    /// Whether it may slow the guest down (the convergence throttle,
    /// [`crate::throttle`]).
    pub fn throttles(self) -> bool {
        self == Self::InformedThrottle
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_unknown_is_typed() {
        for p in Policy::ALL {
            assert_eq!(Policy::from_name(p.name()), Ok(p));
        }
        let e = Policy::from_name("gmig-twoshot").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("gmig-twoshot") && msg.contains("informed"),
            "{msg}"
        );
        let long = "é".repeat(40);
        assert!(Policy::from_name(&long).is_err());
    }
}
