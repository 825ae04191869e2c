//! The migration bench, as `cargo xtask bench` runs it:
//!
//! ```text
//! RUSTFLAGS="-C target-cpu=native" cargo run --release -p migrate-sim \
//!     --example bench -- --out DIR [--quick]
//! ```
//!
//! Writes `DIR/migration.json` (the serialized `BenchReport`),
//! `DIR/migration.md` and `DIR/migration-downtime.svg`, and prints a short
//! summary with the goal ratios. `--quick` runs the small, fast variant
//! (16 MiB digest set, workloads and links scaled down 16x, nominal costs).
//! `target-cpu=native` matters for the digest figures: without it the host
//! build is baseline x86-64 (SSE2) and neither xxh3 nor the XOR fold can use
//! AVX2; the JSON records what the binary was compiled with (`hash.simd`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench --out DIR [--quick]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().ok_or(USAGE)?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    let dir = out.ok_or(USAGE)?;
    std::fs::create_dir_all(&dir)?;
    let report = migrate_sim::run_bench(&migrate_sim::BenchOptions {
        quick,
        traces: Vec::new(),
    })?;
    let json = dir.join("migration.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    let md = migrate_sim::write_markdown(&report, &dir)?;
    let svg = migrate_sim::write_svg(&report, &dir)?;
    print!("{}", migrate_sim::summary(&report));
    println!(
        "wrote {}, {}, {}",
        json.display(),
        md.display(),
        svg.display()
    );
    Ok(())
}
