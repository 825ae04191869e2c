//! Randomness for the migration handshake's nonces and the local role's
//! key ([`migrate::Entropy`]): RDSEED where the CPU has it, else RDRAND,
//! and always timer jitter (the TSC read around memory traffic, whose low
//! bits vary with caches, the bus and, in a VM, the host), all conditioned
//! through BLAKE3 ([`migrate::EntropyPool`]). Without RDSEED or RDRAND
//! (QEMU's default CPU models) the jitter is all there is: enough to make
//! nonces unique, a weaker secret than a hardware generator gives, which is
//! why an operator's `migrate_key=` is preferred to a generated one.

use migrate::{Entropy, EntropyPool};

use crate::arch::cpu::{rdrand64, rdseed64, rdtsc};

/// Where the monitor's randomness comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntropySource {
    /// RDSEED (and jitter).
    Rdseed,
    /// RDRAND (and jitter).
    Rdrand,
    /// TSC jitter only.
    TscJitter,
}

impl EntropySource {
    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rdseed => "rdseed",
            Self::Rdrand => "rdrand",
            Self::TscJitter => "tsc-jitter",
        }
    }
}

/// The monitor's entropy.
#[derive(Debug)]
pub struct MonitorEntropy {
    source: EntropySource,
    draws: u64,
}

/// Jitter samples mixed into every draw.
const JITTER_SAMPLES: usize = 512;

impl MonitorEntropy {
    /// Probes the CPU for a hardware generator.
    pub fn new() -> Self {
        let source = if rdseed64().is_some() {
            EntropySource::Rdseed
        } else if rdrand64().is_some() {
            EntropySource::Rdrand
        } else {
            EntropySource::TscJitter
        };
        Self { source, draws: 0 }
    }

    /// The generator in use.
    pub fn source(&self) -> EntropySource {
        self.source
    }
}

impl Entropy for MonitorEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        let mut pool = EntropyPool::new();
        self.draws += 1;
        pool.add(&self.draws.to_le_bytes());
        // 512 bits from the hardware generator, more than any output needs.
        for _ in 0..8 {
            let word = match self.source {
                EntropySource::Rdseed => rdseed64().or_else(rdrand64),
                EntropySource::Rdrand => rdrand64(),
                EntropySource::TscJitter => None,
            };
            if let Some(w) = word {
                pool.add(&w.to_le_bytes());
            }
        }
        // Timer jitter: the time a few dependent memory accesses take.
        let mut scratch = [0u64; 64];
        let mut last = rdtsc();
        for i in 0..JITTER_SAMPLES {
            let slot = (last as usize ^ i.wrapping_mul(31)) % scratch.len();
            scratch[slot] = scratch[slot].wrapping_add(last);
            let now = rdtsc();
            pool.add(&now.wrapping_sub(last).to_le_bytes());
            last = now;
        }
        pool.add(&core::hint::black_box(scratch)[0].to_le_bytes());
        pool.extract(out);
    }
}
