//! Shared helpers for the QEMU integration tests in `tests/tests/`: build
//! the monitor once per test binary, boot it, and fail with the whole
//! transcript (console, decoded log, QEMU's stderr) when something is off.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use xtask::qemu::{Outcome, Qemu, RunResult};

/// The monitor image, built once per test binary.
pub fn kernel() -> PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        xtask::deps::ensure(xtask::deps::QEMU).expect("QEMU is needed for the integration tests");
        xtask::build::kernel().expect("building the monitor")
    })
    .clone()
}

/// Boots the monitor with `append` and `memory_mib` of RAM.
pub fn boot(append: &str, memory_mib: u32) -> RunResult {
    let mut qemu = Qemu::kernel(kernel(), append);
    qemu.memory_mib = memory_mib;
    qemu.timeout = Duration::from_secs(120);
    qemu.run().expect("running QEMU")
}

/// Asserts the outcome, printing the transcript when it differs.
pub fn expect_outcome(result: &RunResult, outcome: Outcome) {
    assert_eq!(
        result.outcome,
        outcome,
        "unexpected outcome\n{}",
        result.transcript()
    );
}

/// Asserts the console contains `needle`.
pub fn expect_console(result: &RunResult, needle: &str) {
    assert!(
        result.console.contains(needle),
        "console lacks {needle:?}\n{}",
        result.transcript()
    );
}

/// Asserts some log message contains `needle`.
pub fn expect_log(result: &RunResult, needle: &str) {
    assert!(
        result.log_contains(needle),
        "log lacks {needle:?}\n{}",
        result.transcript()
    );
}

/// Asserts every self-test passed and there were some.
pub fn expect_self_tests_pass(result: &RunResult) {
    expect_outcome(result, Outcome::Success);
    let summary = result
        .messages()
        .find(|m| m.starts_with("selftest summary: "))
        .unwrap_or_else(|| panic!("no self-test summary\n{}", result.transcript()));
    assert!(
        summary.ends_with(" 0 failed"),
        "self-tests failed: {summary}\n{}",
        result.transcript()
    );
    assert!(
        !summary.contains(": 0 passed"),
        "no self-test ran\n{}",
        result.transcript()
    );
}
