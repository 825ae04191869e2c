//! Run the bench without xtask: `cargo run --release -p migrate-sim --example bench [--quick] [DIR]`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "target/migrate-bench".into());
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let report = migrate_sim::run_bench(&migrate_sim::BenchOptions {
        quick,
        traces: Vec::new(),
    })?;
    std::fs::write(
        dir.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = migrate_sim::write_markdown(&report, &dir)?;
    migrate_sim::write_svg(&report, &dir)?;
    println!("{}", std::fs::read_to_string(md)?);
    Ok(())
}
