//! The network: two monitors linked by QEMU socket networking move data
//! over TCP through each NIC driver and check every byte; NIC selection
//! follows `nic=`; a NIC that is not there stops boot with a message.

use std::time::Duration;

use tests::{expect_console, expect_log, expect_outcome};
use xtask::netbench::{figures, BenchFigures};
use xtask::pair::{Nic, Pair, PairResult};
use xtask::qemu::{Outcome, Qemu};

const MIB: u64 = 16;

fn transfer(nic: Nic, mtu: u16) -> (PairResult, BenchFigures, BenchFigures) {
    let bench = format!("net_bench={MIB}");
    let mut pair = Pair::new(tests::kernel(), nic, &bench, &bench);
    pair.mtu = mtu;
    for q in [&mut pair.listener, &mut pair.connector] {
        q.timeout = Duration::from_secs(180);
    }
    let result = pair.run().expect("running two QEMUs");
    for (side, run) in [
        ("listener", &result.listener),
        ("connector", &result.connector),
    ] {
        assert_eq!(
            run.outcome,
            Outcome::Success,
            "{side} did not succeed\n{}",
            result.transcript()
        );
    }
    let send = figures(&result.connector)
        .unwrap_or_else(|| panic!("no sender figures\n{}", result.transcript()));
    let receive = figures(&result.listener)
        .unwrap_or_else(|| panic!("no receiver figures\n{}", result.transcript()));
    (result, send, receive)
}

fn check_transfer(nic: Nic, mtu: u16) {
    let (result, send, receive) = transfer(nic, mtu);
    for (figures, role) in [(&send, "send"), (&receive, "receive")] {
        assert_eq!(figures.role, role, "{}", result.transcript());
        assert_eq!(figures.nic, nic.name(), "{}", result.transcript());
        assert_eq!(figures.bytes, MIB << 20, "{}", result.transcript());
        assert!(figures.verified, "{}", result.transcript());
        assert!(figures.mbps > 0.0, "{}", result.transcript());
    }
    // The NIC each side drove is the one asked for, with its own MAC.
    expect_log(&result.listener, &format!("report net nic={} ", nic.name()));
    expect_log(&result.listener, xtask::pair::LISTENER_MAC);
    expect_log(&result.connector, xtask::pair::CONNECTOR_MAC);
    expect_console(&result.listener, "every byte verified");
    // The stream ended in order: the receiver saw the sender's FIN as the
    // link's `Closed`, and neither side's close timed out.
    expect_log(&result.listener, "net: the peer closed the connection");
    for run in [&result.listener, &result.connector] {
        assert!(
            !run.log_contains("closing the connection"),
            "{}",
            result.transcript()
        );
    }
}

#[test]
fn raw_tcp_transfer_over_virtio_net_arrives_intact() {
    check_transfer(Nic::Virtio, xtask::pair::LINK_MTU);
}

#[test]
fn raw_tcp_transfer_over_e1000e_arrives_intact() {
    check_transfer(Nic::E1000e, xtask::pair::LINK_MTU);
}

#[test]
fn raw_tcp_transfer_with_standard_frames_arrives_intact() {
    check_transfer(Nic::Virtio, 1500);
    check_transfer(Nic::E1000e, 1500);
}

#[test]
fn a_receiver_killed_mid_transfer_resets_the_senders_link() {
    // Far more than moves before the kill.
    let bench = "net_bench=4096";
    let mut pair = Pair::new(tests::kernel(), Nic::Virtio, bench, bench);
    for q in [&mut pair.listener, &mut pair.connector] {
        q.timeout = Duration::from_secs(120);
    }
    let mut running = pair.spawn().expect("starting two QEMUs");
    let start = std::time::Instant::now();
    while !running.listener.log_contains("net: accepted a connection") {
        assert!(
            start.elapsed() < Duration::from_secs(90) && !running.listener.finished().unwrap(),
            "the listener never accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    running.listener.kill();
    let result = running.wait().expect("collecting both runs");
    assert_eq!(
        result.listener.outcome,
        Outcome::Killed,
        "{}",
        result.transcript()
    );
    expect_outcome(&result.connector, Outcome::Failure);
    // smoltcp gives up after 10 s without an acknowledgement: a reset.
    expect_console(
        &result.connector,
        "error: network benchmark (send) failed: migration link reset after",
    );
}

/// One QEMU with both NICs on a hub of their own (nothing leaves QEMU).
fn both_nics(append: &str) -> Qemu {
    let mut qemu = Qemu::kernel(tests::kernel(), append);
    qemu.timeout = Duration::from_secs(120);
    qemu.extra_args = [
        "-netdev",
        "hubport,id=n0,hubid=0",
        "-device",
        "e1000e,netdev=n0,mac=52:54:00:67:6d:10",
        "-netdev",
        "hubport,id=n1,hubid=0",
        "-device",
        "virtio-net-pci,netdev=n1,disable-legacy=on,mac=52:54:00:67:6d:11",
    ]
    .map(String::from)
    .to_vec();
    qemu
}

#[test]
fn nic_option_chooses_the_driver() {
    for (nic, expect) in [
        (
            "e1000e",
            "report net nic=e1000e bdf=00:02.0 mac=52:54:00:67:6d:10",
        ),
        (
            "virtio",
            "report net nic=virtio bdf=00:03.0 mac=52:54:00:67:6d:11",
        ),
        // The first supported function in bus order.
        ("auto", "report net nic=e1000e bdf=00:02.0"),
    ] {
        let result = both_nics(&format!("ip=169.254.0.9/16 nic={nic} selftest=pci"))
            .run()
            .expect("running QEMU");
        expect_outcome(&result, Outcome::Success);
        expect_log(&result, expect);
    }
}

#[test]
fn a_missing_nic_stops_boot_with_a_message() {
    let result = tests::boot("ip=169.254.0.9/16 nic=e1000e", 128);
    expect_outcome(&result, Outcome::Failure);
    expect_console(
        &result,
        "error: bring-up failed: network: nic=e1000e but no Intel 82574L on PCI",
    );
}

#[test]
fn bad_network_options_are_rejected() {
    let result = tests::boot("ip=169.254.0.9/16 peer=10.0.0.2:7000", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(
        &result,
        "peer `10.0.0.2:7000` is not on the subnet of ip `169.254.0.9/16`",
    );
    let result = tests::boot("listen=7000", 128);
    expect_outcome(&result, Outcome::BadCommandLine);
    expect_console(&result, "option `listen` needs `ip=A.B.C.D/N`");
}
