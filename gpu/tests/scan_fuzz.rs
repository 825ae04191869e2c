//! Proptest: random and mutated command streams through the scanner never
//! panic, end within the budget, and every address the scanner rewrote in
//! an accepted submission lies in the vGPU's host slices (or, for batch
//! starts, in the monitor's shadow batches).

mod scan_support;

use gpu::engine::Engine;
use gpu::scan::scanner::{MAX_COMMANDS, MAX_DWORDS};
use gpu::scan::Shadow;
use proptest::prelude::*;
use scan_support::*;

fn run(engine: Engine, g: &FakeGm, cmds: &[u32], s: &mut Shadow) {
    let mut g2 = FakeGm {
        aperture: g.aperture.clone(),
        hidden: g.hidden.clone(),
    };
    let rs = ring(&mut g2, cmds);
    s.engine = engine;
    if let Ok(sub) = s.scan(&g2, rs) {
        assert!(sub.commands <= MAX_COMMANDS && sub.dwords <= MAX_DWORDS);
        check_buffer(engine, &s.ring[..sub.ring_dwords]);
        for b in &s.batches[..sub.batches] {
            check_buffer(engine, &b.words[..b.len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_streams(words in prop::collection::vec(any::<u32>(), 0..200), e in 0usize..4) {
        let g = fixture();
        let mut s = shadow(Engine::ALL[e]);
        run(Engine::ALL[e], &g, &words, &mut s);
    }

    #[test]
    fn mutated_streams(
        seed in any::<usize>(),
        flips in prop::collection::vec((any::<usize>(), 0u32..32), 1..6),
        sets in prop::collection::vec((any::<usize>(), any::<u32>()), 0..3),
    ) {
        let g = fixture();
        let mut all = seeds();
        let n = all.len();
        let (engine, mut cmds) = all.swap_remove(seed % n);
        for (i, b) in flips {
            let n = cmds.len();
            cmds[i % n] ^= 1 << b;
        }
        for (i, v) in sets {
            let n = cmds.len();
            cmds[i % n] = v;
        }
        let mut s = shadow(engine);
        run(engine, &g, &cmds, &mut s);
    }
}

#[test]
fn seeds_are_accepted() {
    let g = fixture();
    for (i, (engine, cmds)) in seeds().into_iter().enumerate() {
        let mut g2 = FakeGm {
            aperture: g.aperture.clone(),
            hidden: g.hidden.clone(),
        };
        let rs = ring(&mut g2, &cmds);
        let mut s = shadow(engine);
        let sub = s
            .scan(&g2, rs)
            .unwrap_or_else(|e| panic!("seed {i} ({engine}): {e}"));
        check_buffer(engine, &s.ring[..sub.ring_dwords]);
        for b in &s.batches[..sub.batches] {
            check_buffer(engine, &b.words[..b.len]);
        }
    }
}

/// The cargo-fuzz target's seed files (`gpu/fuzz/seeds`): `seed_N` is the
/// one byte `0x80 | N` that makes the target start from seed stream N, one
/// file for every stream of [`seeds`], so that a run starts from each.
/// `GMIG_WRITE_FUZZ_SEEDS=1` rewrites them after the seeds change.
#[test]
fn fuzz_seed_files_select_every_seed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let n = seeds().len();
    assert!(
        n <= 0x80,
        "the target's mode byte selects at most 128 seeds"
    );
    for i in 0..n {
        let path = dir.join(format!("seed_{i}"));
        let want = [0x80 | i as u8];
        if std::env::var_os("GMIG_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(&path, want).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == want,
            "{} is missing or stale: GMIG_WRITE_FUZZ_SEEDS=1 cargo test -p gpu --test scan_fuzz",
            path.display()
        );
    }
    // No file selects a seed that no longer exists (the mode byte wraps).
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(i) = name.strip_prefix("seed_") {
            let i: usize = i.parse().unwrap();
            assert!(i < n, "{name} names no seed ({n} seeds)");
        }
    }
}
