//! `cargo xtask hil` against its stand-ins: the `qemu` target network-boots
//! the monitor from xtask's own TFTP and HTTP servers and is judged by its
//! console alone (self-tests pass; a forced failure is a failure); a
//! machine that never answers times out with a clear message; and bad
//! input (an unreachable console, a failing power command, a malformed
//! target file) stops the run with an error naming the field or step.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use xtask::hil::{self, HilOptions, Mode};
use xtask::qemu::Outcome;

fn options(target: PathBuf, mode: Mode) -> HilOptions {
    HilOptions {
        target,
        peer: None,
        mode,
        append: String::new(),
        elf: Some(tests::kernel()),
        echo: false,
        verbose: false,
    }
}

fn qemu_target() -> PathBuf {
    xtask::paths::root().join("tests/hil/qemu.toml")
}

/// A target file written for one test.
fn target_file(name: &str, text: &str) -> PathBuf {
    let dir = xtask::paths::xtask_dir().join("tests/hil-targets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_qemu_target_netboots_from_xtask_and_its_self_tests_pass() {
    let run = hil::run(&options(qemu_target(), Mode::SelfTests("all".into()))).expect("hil run");
    let m = &run.machines[0];
    assert_eq!(
        (m.outcome(), run.exit_code),
        (Outcome::Success, 0),
        "{:?}\n{}",
        m.hil.problem,
        m.result.transcript()
    );
    let s = m.hil.selftests.as_ref().expect("self-test counts");
    assert!(s.passed > 0 && s.failed == 0, "{s:?}");
    // Booted over the network, every step from xtask's servers.
    let served = m.hil.served.join("\n");
    for step in [
        "tftp",
        "boot.ipxe: sent",
        "grub.pxe: sent",
        "http",
        "grub.cfg: sent",
        "gmig.elf: sent",
    ] {
        assert!(served.contains(step), "{step} missing from\n{served}");
    }
    assert!(
        m.result.console.contains("booted via multiboot2"),
        "{}",
        m.result.console
    );
    assert_eq!(m.hil.machine.backend.as_deref(), Some("software-gen9"));
    assert!(m.hil.machine.cpu.is_some() && !m.hil.machine.gpus.is_empty());
    // The report: `cargo xtask run`'s fields plus the hil section, in the run's directory.
    let report: serde_json::Value = serde_json::from_str(&read(&run.report_path)).unwrap();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["gpu"]["backend"], "software-gen9");
    assert!(report["pci"].as_array().is_some_and(|p| !p.is_empty()));
    assert_eq!(report["hil"]["delivery"], "netboot");
    assert!(run
        .report_path
        .starts_with(xtask::paths::xtask_dir().join("hil")));
    assert!(read(&run.dir.join("console.txt")).contains("gmig-rs: exit success"));
    assert!(read(&run.dir.join("log.txt")).contains("selftest summary"));
}

#[test]
fn a_forced_failure_on_the_qemu_target_is_reported_as_one() {
    let run = hil::run(&options(
        qemu_target(),
        Mode::SelfTests("fault-panic".into()),
    ))
    .expect("hil run");
    let m = &run.machines[0];
    assert_eq!(m.outcome(), Outcome::Panic, "{}", m.result.transcript());
    assert_ne!(run.exit_code, 0);
    assert!(
        m.result.console.contains("MONITOR PANIC"),
        "{}",
        m.result.console
    );
    let report: serde_json::Value = serde_json::from_str(&read(&run.report_path)).unwrap();
    assert_eq!(report["outcome"], "panic");
    assert!(report["hil"]["problem"]
        .as_str()
        .is_some_and(|p| p.contains("panic")));
}

/// A `machine` target on fixed free ports, its console at `console`.
fn machine(name: &str, console: &str, power: &str, boot_s: u64) -> PathBuf {
    let (tftp, http) = (
        xtask::pair::free_port().unwrap(),
        xtask::pair::free_port().unwrap(),
    );
    target_file(
        name,
        &format!(
            "name = \"{name}\"\nkind = \"machine\"\ndelivery = \"netboot\"\n\
             [netboot]\nserver = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\ntftp_port = {tftp}\nhttp_port = {http}\n\
             [console]\ntext = {{ tcp = \"{console}\" }}\n\
             [power]\ncycle = \"{power}\"\ntimeout_s = 10\n\
             [timeouts]\nboot_s = {boot_s}\n"
        ),
    )
}

#[test]
fn a_machine_that_never_answers_times_out_with_a_clear_message() {
    // A console server that accepts and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let target = machine("silent", &address, "true", 3);
    let run = hil::run(&options(target, Mode::SelfTests("all".into()))).expect("hil run");
    let m = &run.machines[0];
    assert_eq!((m.outcome(), run.exit_code), (Outcome::Timeout, 6));
    let problem = m.hil.problem.as_deref().unwrap_or("");
    assert!(
        problem.contains("no monitor banner on `console.text` within 3 s")
            && problem.contains("fetched nothing from the boot servers"),
        "{problem}"
    );
}

#[test]
fn an_unreachable_console_stops_the_run_before_the_machine_is_powered() {
    let port = xtask::pair::free_port().unwrap();
    let marker = xtask::paths::xtask_dir().join("tests/hil-targets/powered");
    let _ = std::fs::remove_file(&marker);
    let target = machine(
        "unreachable",
        &format!("127.0.0.1:{port}"),
        &format!("touch {}", marker.display()),
        30,
    );
    let e = hil::run(&options(target, Mode::SelfTests("all".into()))).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("`console.text`: console unreachable"), "{e}");
    assert!(
        !marker.exists(),
        "the power command ran although the console was unreachable"
    );
}

#[test]
fn a_failing_power_command_names_the_step() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let target = machine(
        "unpowered",
        &address,
        "echo relay board not found >&2; exit 4",
        30,
    );
    let e = hil::run(&options(target, Mode::SelfTests("all".into()))).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("`power.cycle`: power command"), "{e}");
    assert!(
        e.contains("exit status: 4") && e.contains("relay board not found"),
        "{e}"
    );
}

#[test]
fn a_malformed_target_file_names_the_field() {
    let target = target_file(
        "malformed",
        "name = \"m\"\nkind = \"machine\"\ndelivery = \"netboot\"\n[timeouts]\nboot_s = \"soon\"\n",
    );
    let e = hil::run(&options(target.clone(), Mode::SelfTests("all".into()))).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains(&target.display().to_string()), "{e}");
    assert!(
        e.contains("`timeouts.boot_s` (line 5)") && e.contains("invalid type"),
        "{e}"
    );
}
