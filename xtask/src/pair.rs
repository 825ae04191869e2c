//! Two monitors on one Ethernet link: two QEMU instances joined by QEMU's
//! socket networking on 127.0.0.1 (`-netdev socket,listen=` on one side,
//! `connect=` on the other), each with its own NIC and MAC, its own serial
//! logs and decoded defmt log, both outcomes collected.
//!
//! The *listener* is started first (its QEMU listens for the link, and its
//! monitor gets `listen=` for TCP: the destination of a migration); the
//! *connector* starts once the listener's monitor has printed its banner
//! (its QEMU connects to the link, its monitor gets `peer=`). If one of
//! them outlives its timeout, both are killed.
//!
//! The guests' addresses are link-local (169.254.0.0/16): the frames
//! never leave the two QEMU processes and the loopback socket between
//! them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::qemu::{Qemu, RunResult, Running};

/// The NIC both monitors get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// virtio-net, modern PCI only (`disable-legacy=on`).
    Virtio,
    /// Intel 82574L (QEMU's `e1000e`).
    E1000e,
}

impl Nic {
    /// The monitor's `nic=` value (and the CLI's `--nic`).
    pub fn name(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio",
            Nic::E1000e => "e1000e",
        }
    }

    /// Parses `virtio` or `e1000e`.
    pub fn from_name(name: &str) -> Option<Nic> {
        match name {
            "virtio" => Some(Nic::Virtio),
            "e1000e" => Some(Nic::E1000e),
            _ => None,
        }
    }

    fn device(self, mac: &str) -> String {
        match self {
            Nic::Virtio => format!("virtio-net-pci,netdev=n0,disable-legacy=on,mac={mac}"),
            Nic::E1000e => format!("e1000e,netdev=n0,mac={mac}"),
        }
    }
}

/// The listener's (destination's) IPv4 address.
pub const LISTENER_IP: &str = "169.254.0.1";
/// The connector's (source's) IPv4 address.
pub const CONNECTOR_IP: &str = "169.254.0.2";
/// Prefix length of the link's subnet.
pub const PREFIX: u8 = 16;
/// The TCP port the listener's monitor accepts on.
pub const TCP_PORT: u16 = 7000;
/// IP MTU both monitors get: jumbo frames, which QEMU's socket link
/// carries, and which more than double the throughput under TCG (the
/// monitor's default, 1500, is for real networks).
pub const LINK_MTU: u16 = 8000;
/// Locally administered MACs, one per side.
pub const LISTENER_MAC: &str = "52:54:00:67:6d:01";
pub const CONNECTOR_MAC: &str = "52:54:00:67:6d:02";

/// How long the listener may take to print its banner.
const LISTENER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at picking a free port (another process may take it first).
const PORT_TRIES: u32 = 3;

/// Two monitors to boot linked. Their `Qemu` settings (memory, timeout,
/// echo, labels, command lines) may be changed before [`Pair::run`];
/// the link arguments are added when they start.
#[derive(Debug, Clone)]
pub struct Pair {
    pub nic: Nic,
    /// `mtu=` for both monitors, added when they start.
    pub mtu: u16,
    /// The TCP port the listener's monitor accepts on (`listen=`, added
    /// when it starts); [`TCP_PORT`], where the connector's `peer=` points,
    /// unless a test wants nobody listening there.
    pub listen_port: u16,
    pub listener: Qemu,
    pub connector: Qemu,
}

/// What both runs produced.
#[derive(Debug, Clone)]
pub struct PairResult {
    pub listener: RunResult,
    pub connector: RunResult,
    /// The 127.0.0.1 port the link used.
    pub port: u16,
}

impl PairResult {
    /// Both transcripts, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "=== listener ===\n{}=== connector ===\n{}",
            self.listener.transcript(),
            self.connector.transcript()
        )
    }
}

/// Both QEMUs, running.
#[derive(Debug)]
pub struct RunningPair {
    pub listener: Running,
    pub connector: Running,
    pub port: u16,
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let socket = TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(socket.local_addr()?.port())
}

impl Pair {
    /// The monitor at `elf` twice, with `nic`, each command line given the
    /// network options of its side (`ip=`, `nic=`, and, when it starts,
    /// `listen=` or `peer=` and `mtu=`) after `listener_append` /
    /// `connector_append`.
    pub fn new(elf: PathBuf, nic: Nic, listener_append: &str, connector_append: &str) -> Pair {
        let options = |own_ip: &str, extra: &str| {
            let mut line = extra.trim().to_string();
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&format!("ip={own_ip}/{PREFIX} nic={}", nic.name()));
            line
        };
        let mut listener = Qemu::kernel(elf.clone(), &options(LISTENER_IP, listener_append));
        let mut connector = Qemu::kernel(elf, &options(CONNECTOR_IP, connector_append));
        listener.label = Some("listener".into());
        connector.label = Some("connector".into());
        Pair {
            nic,
            mtu: LINK_MTU,
            listen_port: TCP_PORT,
            listener,
            connector,
        }
    }

    /// `qemu` with its NIC on `netdev` and its monitor told `tcp` (its
    /// `listen=` or `peer=`) and the link's MTU.
    fn with_link(&self, qemu: &Qemu, netdev: String, mac: &str, tcp: &str) -> Qemu {
        let mut q = qemu.clone();
        if let crate::qemu::Boot::Kernel { append, .. } = &mut q.boot {
            append.push_str(&format!(" {tcp} mtu={}", self.mtu));
        }
        q.extra_args.extend([
            "-netdev".to_string(),
            netdev,
            "-device".to_string(),
            self.nic.device(mac),
        ]);
        q
    }

    /// Starts the listener, waits until it is up, starts the connector.
    pub fn spawn(&self) -> Result<RunningPair> {
        let mut last_error = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port()?;
            let listener = self.with_link(
                &self.listener,
                format!("socket,id=n0,listen=127.0.0.1:{port}"),
                LISTENER_MAC,
                &format!("listen={}", self.listen_port),
            );
            let mut listening = listener.spawn()?;
            let start = Instant::now();
            // The monitor's banner means QEMU set its netdev up before.
            while !listening.console_contains("gmig-rs") {
                if listening.finished()? || start.elapsed() > LISTENER_START_TIMEOUT {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if listening.finished()? {
                let result = listening.wait()?;
                if result.qemu_stderr.contains("Address already in use") {
                    last_error = result.qemu_stderr;
                    continue;
                }
                bail!(
                    "the listening QEMU ended before it was up\n{}",
                    result.transcript()
                );
            }
            if !listening.console_contains("gmig-rs") {
                listening.kill();
                bail!(
                    "the listening QEMU printed no banner within {LISTENER_START_TIMEOUT:?}\n{}",
                    listening.wait()?.transcript()
                );
            }
            let connector = self.with_link(
                &self.connector,
                format!("socket,id=n0,connect=127.0.0.1:{port}"),
                CONNECTOR_MAC,
                &format!("peer={LISTENER_IP}:{TCP_PORT}"),
            );
            let connecting = match connector.spawn() {
                Ok(c) => c,
                Err(e) => {
                    listening.kill();
                    return Err(e);
                }
            };
            return Ok(RunningPair {
                listener: listening,
                connector: connecting,
                port,
            });
        }
        bail!("no free port for the link after {PORT_TRIES} tries: {last_error}")
    }

    /// Runs both to the end (or kills both when either times out).
    pub fn run(&self) -> Result<PairResult> {
        self.spawn()?.wait()
    }
}

impl RunningPair {
    /// Waits for both; when one times out, the other is killed too.
    pub fn wait(mut self) -> Result<PairResult> {
        loop {
            let listener_done = self.listener.finished()?;
            let connector_done = self.connector.finished()?;
            if listener_done && connector_done {
                break;
            }
            if self.listener.timed_out() || self.connector.timed_out() {
                self.listener.kill();
                self.connector.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(PairResult {
            listener: self.listener.wait()?,
            connector: self.connector.wait()?,
            port: self.port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(qemu: &Qemu) -> String {
        crate::cmd::display(&qemu.command(std::path::Path::new("com2.bin")))
    }

    #[test]
    fn each_side_gets_its_address_nic_role_and_link() {
        let pair = Pair::new(PathBuf::from("gmig"), Nic::E1000e, "net_bench=8", "");
        let listener = shown(&pair.with_link(
            &pair.listener,
            "socket,id=n0,listen=127.0.0.1:4000".into(),
            LISTENER_MAC,
            "listen=7000",
        ));
        assert!(
            listener.contains(
                "-append 'net_bench=8 ip=169.254.0.1/16 nic=e1000e listen=7000 mtu=8000'"
            ),
            "{listener}"
        );
        assert!(
            listener.contains("-netdev socket,id=n0,listen=127.0.0.1:4000 -device e1000e,netdev=n0,mac=52:54:00:67:6d:01"),
            "{listener}"
        );
        // The explicit NIC replaces q35's default one.
        assert!(listener.contains("-nic none"), "{listener}");
        let connector = shown(&pair.with_link(
            &pair.connector,
            "socket,id=n0,connect=127.0.0.1:4000".into(),
            CONNECTOR_MAC,
            "peer=169.254.0.1:7000",
        ));
        assert!(
            connector
                .contains("-append 'ip=169.254.0.2/16 nic=e1000e peer=169.254.0.1:7000 mtu=8000'"),
            "{connector}"
        );
        assert!(connector.contains("connect=127.0.0.1:4000"), "{connector}");
        let virtio = Pair::new(PathBuf::from("gmig"), Nic::Virtio, "", "");
        let line = shown(&virtio.with_link(&virtio.listener, "x".into(), LISTENER_MAC, ""));
        assert!(
            line.contains("virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:67:6d:01"),
            "{line}"
        );
    }

    #[test]
    fn nic_names_round_trip() {
        for nic in [Nic::Virtio, Nic::E1000e] {
            assert_eq!(Nic::from_name(nic.name()), Some(nic));
        }
        assert_eq!(Nic::from_name("rtl8139"), None);
    }
}
