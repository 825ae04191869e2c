//! Bad things end the monitor with a readable report and a failure code:
//! a CPU exception, a kernel stack overflow, a panic, a bad command line.

use tests::{boot, expect_console, expect_outcome};
use xtask::qemu::Outcome;

#[test]
fn page_fault_is_reported() {
    let result = boot("selftest=fault-pagefault", 128);
    expect_outcome(&result, Outcome::CpuException);
    expect_console(&result, "FATAL CPU EXCEPTION: vector 14 page fault (#PF)");
    expect_console(
        &result,
        "CR2=0x00007fffdead0000: not-present page on read in supervisor mode",
    );
    expect_console(&result, "RIP=0x");
    expect_console(&result, "RAX=0x00007fffdead0000");
}

#[test]
fn stack_overflow_hits_the_guard_page_and_is_reported() {
    let result = boot("selftest=fault-stack-overflow", 128);
    expect_outcome(&result, Outcome::CpuException);
    expect_console(&result, "vector 8 double fault (#DF)");
    expect_console(&result, "kernel stack overflow");
}

#[test]
fn panic_is_reported_with_location() {
    let result = boot("selftest=fault-panic", 128);
    expect_outcome(&result, Outcome::Panic);
    expect_console(&result, "MONITOR PANIC at kernel/src/selftest.rs:");
    expect_console(&result, "index out of bounds");
}

#[test]
fn unknown_option_stops_boot() {
    let result = boot("bogus=1", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(
        &result,
        "error: bad kernel command line: unknown option `bogus`",
    );
    expect_console(&result, "known options:");
}

#[test]
fn malformed_option_stops_boot() {
    let result = boot("selftest", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "`selftest` is not of the form key=value");
}

#[test]
fn unknown_self_test_fails() {
    let result = boot("selftest=no-such-test", 128);
    expect_outcome(&result, Outcome::Failure);
    assert!(
        result.log_contains("no test matches"),
        "{}",
        result.transcript()
    );
}
