//! Host-only simulator for the `migrate` policies (ARCHITECTURE.md "Crates":
//! workload dirty patterns + link model, for benches).
//!
//! It runs the real `migrate` state machines (source policies, stream
//! encoder, receiver) over simulated guest memory, a simulated link
//! (bandwidth, latency, send buffer) and a virtual clock. CPU work the
//! source does (page copies, digests, sampling, delta encoding, CRC) is
//! charged to the clock from a [`CostModel`] measured on this machine
//! ([`bench::measure_costs`]) or fixed ([`CostModel::nominal`], tests), so
//! results are deterministic for a given cost model. The guest writes only
//! while it runs; downtime runs from the stop request until the destination
//! resumes the guest (the source's commit arrived, [`migrate::handover`]).
//! Records are authenticated as on the wire (fixed key, deterministic
//! nonces), and the tag's CPU cost is charged like the CRC's.
//!
//! Each result also says where its downtime went: the send-buffer backlog
//! at the stop, the wire time of what was sent after it, and the CPU time
//! the source spent after it; and each workload x link gets an analytic
//! floor ([`downtime_floor_ms`]) that no policy sending rewritten pages
//! uncompressed, and leaving the guest its write rate, beats on average, so
//! a missed goal can be told apart from a weak policy.
//!
//! The guest has its own clock, which runs at the share of GPU time the
//! source grants ([`migrate::Source::submission_share`]): a throttled guest
//! makes the same writes (the model's, or the trace's), later. Each result
//! reports what the throttle cost the guest: how long it ran throttled, the
//! mean share it got meanwhile, and the work it was held back by, in ms of
//! full-speed work (`throttled_ms`, `throttle_mean_share`,
//! `guest_work_lost_ms`). Model parameters and their sources: [`workload`] (dirtying),
//! [`net`] (links), [`run`] (delta cache budget), [`mod@bench`] (round caps,
//! measured costs).
//!
//! Entry points for `cargo xtask bench`: [`run_bench`], [`write_markdown`],
//! [`write_svg`], [`summary`]; the report serializes with serde. The
//! `bench` example wraps them (`--out DIR [--quick]`).

pub mod bench;
pub mod net;
pub mod run;
pub mod trace;
pub mod workload;

pub use bench::{
    auth_bench, downtime_floor_ms, hash_bench, run_bench, summary, write_markdown, write_svg,
    AuthBench, BenchOptions, BenchReport, HashBench,
};
pub use net::LinkSetting;
pub use run::{simulate, CostModel, RunResult, SimError};
pub use trace::{Trace, TraceError, WriteKind};
pub use workload::{Dirtier, WorkloadModel};

#[cfg(test)]
mod tests;
