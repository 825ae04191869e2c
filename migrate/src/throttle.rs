//! The convergence throttle: what a policy does when pre-copy cannot
//! converge because the guest dirties pages faster than the link re-sends
//! them (ARCHITECTURE.md "Policies", "Submission path": the monitor decides
//! when a guest's ring submissions reach the GPU, so it can pace them).
//!
//! Production hypervisors meet the same wall with CPU guests: QEMU's
//! auto-converge takes CPU time away from the vCPUs in steps
//! (`cpu-throttle-initial` 20%, `cpu-throttle-increment` 10%) while dirtying
//! outruns the transfer, and its dirty-limit caps the dirty rate directly.
//! Here the lever is the vGPU's share of GPU time: the kernel lets only that
//! share of the guest's submissions (ring TAIL writes) through while the
//! throttle holds ([`Share`], [`Pacer`]). The guest's work is slowed, not
//! changed: fewer frames per second, the same content.
//!
//! # Why steps and not a rate derived from the measured bandwidth
//! A dirty-rate limit needs the guest's dirty rate, and pre-copy cannot
//! measure it when it matters: once the hot set is rewritten faster than
//! the link carries it, a page rewritten twice before it is re-sent counts
//! once, so the observed rate saturates at the link's rate whatever the
//! guest does. (That saturated rate is still the right one for what the
//! stop will carry, which is how the rule below uses it; it just cannot say
//! how far to slow the guest.) Steps need only the signal the policy
//! already has (rounds stopped shrinking), and each step is checked against
//! the next rounds before the next one is taken.
//!
//! # The rule ([`Throttle::round_end`])
//! At the end of each pre-copy round the policy reports whether its own
//! convergence test failed (rounds stopped shrinking) and what the stop
//! would cost on the link: what the guest dirties from the start of the
//! round until the stop, which waits for the send buffer to drain, at the
//! rate recent rounds show ([`RoundWindow`]), at the measured bandwidth.
//! Where the link paces the rounds, that is about the round's bytes plus
//! the buffer's fill. The throttle
//! - stays out of the way while that cost fits [`ThrottleConfig::target_ns`]
//!   or rounds still shrink: a migration whose rounds shrink, or whose stop
//!   already fits the target, is never throttled;
//! - otherwise cuts the share, first by [`ThrottleConfig::first_cut`], then
//!   by [`ThrottleConfig::step_cut`] per further stall, never below
//!   [`ThrottleConfig::floor`], and asks for more rounds;
//! - once engaged, asks for the stop as soon as the cost fits the target:
//!   every further round would slow the guest for a smaller gain;
//! - at the floor, leaves the decision to the policy (which stops when
//!   stalled, as without the throttle).
//!
//! The share goes back to full at the stop ([`Throttle::release`]; the
//! guest is paused anyway, and runs at full speed on the destination),
//! and whenever a migration fails (the source's `submission_share` reports
//! full after an error). Writes the scanner cannot bound change nothing
//! here: every page is then a candidate, and a round, which hashes them
//! all, still measures what changed.

use core::fmt;

/// A vGPU's share of GPU time (and of its submission rate), in thousandths.
/// Never zero: a throttled guest still makes progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Share(u16);

impl Share {
    /// All of it (not throttled).
    pub const FULL: Share = Share(1000);

    /// `permille` thousandths, if in `1..=1000`.
    pub const fn from_permille(permille: u16) -> Option<Share> {
        if permille >= 1 && permille <= 1000 {
            Some(Share(permille))
        } else {
            None
        }
    }

    /// Thousandths of the full rate.
    pub const fn permille(self) -> u16 {
        self.0
    }

    /// Whether this is the full rate.
    pub const fn is_full(self) -> bool {
        self.0 == 1000
    }

    /// As a fraction in `(0, 1]` (host-side reports).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// This share less `cut` (a fraction of the full rate), not below `floor`.
    fn less(self, cut: Share, floor: Share) -> Share {
        Share(self.0.saturating_sub(cut.0).max(floor.0))
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::FULL
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
    }
}

/// Settings of the throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Downtime the throttle aims for: it engages while the pages dirty at
    /// a round's end would take longer than this on the link.
    pub target_ns: u64,
    /// Share taken away at the first step.
    pub first_cut: Share,
    /// Share taken away at each further step.
    pub step_cut: Share,
    /// Lowest share the throttle grants.
    pub floor: Share,
}

impl ThrottleConfig {
    /// Defaults: aim for 30 ms (under two frames at 60 Hz: a pause a user
    /// of a graphical guest sees as a dropped frame or two, not a stall);
    /// QEMU's auto-converge steps (20% first, 10% more per step); never
    /// below a quarter of the guest's GPU time (QEMU lets auto-converge
    /// take 99% of a vCPU, which freezes an interactive guest; a GPU guest
    /// at a quarter of its rate still presents frames).
    pub const fn new() -> Self {
        Self {
            target_ns: 30_000_000,
            first_cut: Share(200),
            step_cut: Share(100),
            floor: Share(250),
        }
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What the throttle asks of the policy at a round's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleAdvice {
    /// Not engaged, or at its floor: the policy's own rule decides.
    Defer,
    /// Engaged and rounds still shrink: run another round at this share.
    Hold,
    /// The share was just lowered: run more rounds and judge progress from
    /// this round on (the policy restarts its convergence test).
    Lowered,
    /// Engaged, and what is dirty now fits the target: stop now.
    Stop,
}

/// Counters of the throttle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Times the share was lowered.
    pub steps: u32,
    /// Lowest share granted (full if never throttled).
    pub min_share: Share,
}

/// The throttle of one migration.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    share: Share,
    stats: ThrottleStats,
}

impl Throttle {
    /// Not engaged.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            share: Share::FULL,
            stats: ThrottleStats::default(),
        }
    }

    /// The share granted now.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Whether it holds the guest below its full rate.
    pub fn engaged(&self) -> bool {
        !self.share.is_full()
    }

    /// Counters.
    pub fn stats(&self) -> ThrottleStats {
        self.stats
    }

    /// A round ended. `stalled`: the policy's convergence test failed
    /// (rounds stopped shrinking). `dirty_cost_ns`: what the pages dirty
    /// now would take at the stop, on the measured bandwidth.
    pub fn round_end(&mut self, stalled: bool, dirty_cost_ns: u64) -> ThrottleAdvice {
        let fits = dirty_cost_ns <= self.cfg.target_ns;
        if fits {
            return if self.engaged() {
                ThrottleAdvice::Stop
            } else {
                ThrottleAdvice::Defer
            };
        }
        if !stalled {
            return if self.engaged() {
                ThrottleAdvice::Hold
            } else {
                ThrottleAdvice::Defer
            };
        }
        let cut = if self.engaged() {
            self.cfg.step_cut
        } else {
            self.cfg.first_cut
        };
        let next = self.share.less(cut, self.cfg.floor);
        if next == self.share {
            return ThrottleAdvice::Defer;
        }
        self.share = next;
        self.stats.steps += 1;
        self.stats.min_share = self.stats.min_share.min(next);
        ThrottleAdvice::Lowered
    }

    /// Give the guest its full rate back (stop, failure).
    pub fn release(&mut self) {
        self.share = Share::FULL;
    }
}

/// Rounds remembered by [`RoundWindow`].
const WINDOW: usize = 8;

/// The last few pre-copy rounds (bytes re-sent, duration), to estimate how
/// many bytes the guest dirties over a stretch of time ahead: a round
/// re-sends what was dirtied in about a round's time (the hot pages, visited
/// last, were last sent at the end of the round before), so bytes over
/// time across recent rounds is the rate at which pages turn dirty. One
/// short round says little (a round that took no time re-sends nothing), so
/// the estimate takes as many recent rounds as it needs to cover the
/// stretch it predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundWindow {
    rounds: [(u64, u64); WINDOW],
    next: usize,
    len: usize,
}

impl RoundWindow {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            rounds: [(0, 0); WINDOW],
            next: 0,
            len: 0,
        }
    }

    /// A round re-sent `bytes` in `ns`.
    pub fn push(&mut self, bytes: u64, ns: u64) {
        self.rounds[self.next] = (bytes, ns);
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    /// Bytes the guest dirties over the next `horizon_ns` at the rate of the
    /// most recent rounds that together last at least `horizon_ns` (or of
    /// all remembered ones); `None` while they add up to no time at all.
    pub fn bytes_over(&self, horizon_ns: u64) -> Option<u64> {
        let (mut bytes, mut ns) = (0u128, 0u128);
        for k in 1..=self.len {
            let (b, t) = self.rounds[(self.next + WINDOW - k) % WINDOW];
            bytes += u128::from(b);
            ns += u128::from(t);
            if ns >= u128::from(horizon_ns) && ns > 0 {
                break;
            }
        }
        if ns == 0 {
            return None;
        }
        let est = bytes.saturating_mul(u128::from(horizon_ns)) / ns;
        Some(u64::try_from(est).unwrap_or(u64::MAX))
    }
}

/// Lets a [`Share`] of a guest's submission steps through, evenly spaced:
/// each step adds the share to a credit, and a step goes through when a
/// whole step's worth of credit has built up. At full share every step
/// goes through; at 250 thousandths every fourth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pacer {
    credit: u16,
}

impl Pacer {
    /// No credit yet.
    pub const fn new() -> Self {
        Self { credit: 0 }
    }

    /// Whether the next submission step may go through at `share`.
    pub fn admit(&mut self, share: Share) -> bool {
        // credit < 1000 and share <= 1000, so no overflow.
        self.credit += share.permille();
        if self.credit >= 1000 {
            self.credit -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 1_000_000_000;

    #[test]
    fn share_is_never_zero_nor_above_full() {
        assert_eq!(Share::from_permille(0), None);
        assert_eq!(Share::from_permille(1001), None);
        assert_eq!(Share::from_permille(1000), Some(Share::FULL));
        assert_eq!(Share::FULL.to_string(), "100.0%");
        assert_eq!(Share(625).to_string(), "62.5%");
        assert_eq!(Share::default(), Share::FULL);
    }

    #[test]
    fn engages_only_when_stalled_above_the_target() {
        let mut t = Throttle::new(ThrottleConfig::new());
        // Shrinking rounds, however large, are left alone.
        assert_eq!(t.round_end(false, BIG), ThrottleAdvice::Defer);
        // A stall that already fits the target is left alone.
        assert_eq!(t.round_end(true, 1_000_000), ThrottleAdvice::Defer);
        assert!(!t.engaged());
        assert_eq!(t.stats().steps, 0);
        // A stall above the target engages it at QEMU's first step.
        assert_eq!(t.round_end(true, BIG), ThrottleAdvice::Lowered);
        assert_eq!(t.share().permille(), 800);
        // Progress holds the share; a further stall takes another step.
        assert_eq!(t.round_end(false, BIG), ThrottleAdvice::Hold);
        assert_eq!(t.share().permille(), 800);
        assert_eq!(t.round_end(true, BIG), ThrottleAdvice::Lowered);
        assert_eq!(t.share().permille(), 700);
        // Once engaged, fitting the target means stop.
        assert_eq!(t.round_end(false, 1_000_000), ThrottleAdvice::Stop);
    }

    #[test]
    fn never_below_the_floor() {
        let cfg = ThrottleConfig::new();
        let mut t = Throttle::new(cfg);
        let mut lowered = 0;
        for _ in 0..100 {
            match t.round_end(true, BIG) {
                ThrottleAdvice::Lowered => lowered += 1,
                a => assert_eq!(a, ThrottleAdvice::Defer),
            }
            assert!(t.share() >= cfg.floor);
        }
        assert_eq!(t.share(), cfg.floor);
        // 100 -> 80 -> 70 -> ... -> 30 -> 25.
        assert_eq!(lowered, 7);
        assert_eq!(t.stats().min_share, cfg.floor);
        t.release();
        assert_eq!(t.share(), Share::FULL);
        assert!(!t.engaged());
        assert_eq!(t.stats().min_share, cfg.floor);
    }

    #[test]
    fn round_window_covers_the_horizon() {
        let mut w = RoundWindow::new();
        assert_eq!(w.bytes_over(100), None);
        // 1000 bytes in 100 ns, then a round that took no time.
        w.push(1000, 100);
        w.push(0, 0);
        assert_eq!(w.bytes_over(0), Some(0));
        assert_eq!(w.bytes_over(100), Some(1000));
        assert_eq!(w.bytes_over(250), Some(2500));
        // A recent, faster round counts alone when it covers the horizon.
        w.push(3000, 100);
        assert_eq!(w.bytes_over(100), Some(3000));
        assert_eq!(w.bytes_over(200), Some(4000));
        // Old rounds fall out of the window.
        for _ in 0..WINDOW {
            w.push(10, 10);
        }
        assert_eq!(w.bytes_over(1_000_000), Some(1_000_000));
        w.push(u64::MAX, 1);
        assert_eq!(w.bytes_over(u64::MAX), Some(u64::MAX));
    }

    #[test]
    fn pacer_lets_the_share_through_evenly() {
        for (permille, want) in [(1000u16, 400), (500, 200), (250, 100), (700, 280), (1, 0)] {
            let share = Share::from_permille(permille).unwrap();
            let mut p = Pacer::new();
            let admitted: Vec<bool> = (0..400).map(|_| p.admit(share)).collect();
            assert_eq!(admitted.iter().filter(|a| **a).count(), want, "{share}");
            if permille == 500 {
                // Every other step, never two in a row.
                assert!(admitted.windows(2).all(|w| w[0] != w[1]));
            }
        }
    }
}
