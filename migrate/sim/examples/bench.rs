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
//! Each `--trace FILE` (a dirty trace in `migrate_sim::trace`'s format,
//! such as the one `cargo xtask run --append trace=on` records) is
//! replayed under every policy and link beside the models.
//! `target-cpu=native` matters for the digest figures: without it the host
//! build is baseline x86-64 (SSE2) and neither xxh3 nor the XOR fold can use
//! AVX2; the JSON records what the binary was compiled with (`hash.simd`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench --out DIR [--quick] [--trace FILE]...";

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
    let mut traces = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().ok_or(USAGE)?.into()),
            "--trace" => {
                let path = PathBuf::from(args.next().ok_or(USAGE)?);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let trace = migrate_sim::Trace::parse(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let name = path
                    .file_stem()
                    .map_or("trace".into(), |s| s.to_string_lossy().into_owned());
                traces.push((format!("recorded:{name}"), trace));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    let dir = out.ok_or(USAGE)?;
    std::fs::create_dir_all(&dir)?;
    let report = migrate_sim::run_bench(&migrate_sim::BenchOptions { quick, traces })?;
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
