//! Host-only simulator for the `migrate` policies (DESIGN.md "Workspace":
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
//! has applied the done record.
//!
//! Entry points for `cargo xtask bench`: [`run_bench`], [`write_markdown`],
//! [`write_svg`]; the report serializes with serde.

pub mod bench;
pub mod net;
pub mod run;
pub mod trace;
pub mod workload;

pub use bench::{
    downtime_floor_ms, hash_bench, run_bench, summary, write_markdown, write_svg, BenchOptions,
    BenchReport, HashBench,
};
pub use net::LinkSetting;
pub use run::{simulate, CostModel, RunResult, SimError};
pub use trace::{Trace, TraceError, WriteKind};
pub use workload::{Dirtier, WorkloadModel};

#[cfg(test)]
mod tests;
