//! Target files: one TOML file per machine `cargo xtask hil` runs on, read
//! into a [`Target`] whose every field has been checked. Every error names
//! the file and the field (`console.text.tcp`), so a user fixes the right
//! line; the format is in the README ("Hardware-in-the-loop").
//!
//! The file is parsed in two steps, as the rest of the project treats
//! outside input: serde reads the raw shape ([`TargetFile`], unknown keys
//! refused), then [`Target::from_file`] applies the rules that need more
//! than one field (a `machine` needs a console, a netbooted machine fixed
//! ports its DHCP server can name, a passthrough target a device).

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::pair::Nic;

/// What plays the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// QEMU started by xtask: network boot through its NIC's iPXE ROM from
    /// xtask's servers, serial ports as TCP sockets. The stand-in for a
    /// machine that the tests use.
    Qemu,
    /// A real machine: xtask delivers the image, runs the power command and
    /// reads the console the file names.
    Machine,
    /// QEMU started by xtask with an Intel GPU passed through with VFIO: a
    /// GVT-g mediated device (`passthrough.mdev`) or the whole iGPU
    /// (`passthrough.host`).
    QemuPassthrough,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Qemu => "qemu",
            Kind::Machine => "machine",
            Kind::QemuPassthrough => "qemu-passthrough",
        }
    }

    /// Whether xtask starts a QEMU for it (and owns its console and power).
    pub fn is_qemu(self) -> bool {
        matches!(self, Kind::Qemu | Kind::QemuPassthrough)
    }
}

/// How the monitor reaches the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryKind {
    /// xtask serves iPXE and GRUB over TFTP and the monitor over HTTP.
    Netboot,
    /// xtask writes the GRUB ISO to a block device (a USB stick) or file.
    Iso,
}

/// The raw file, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    name: String,
    kind: Kind,
    delivery: DeliveryKind,
    /// More kernel command line for every run on this target.
    #[serde(default)]
    append: String,
    netboot: Option<NetbootFile>,
    iso: Option<IsoFile>,
    console: Option<ConsoleFile>,
    power: Option<PowerFile>,
    network: Option<NetworkFile>,
    #[serde(default)]
    timeouts: TimeoutsFile,
    qemu: Option<QemuFile>,
    passthrough: Option<PassthroughFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetbootFile {
    /// The address the machine reaches this host on.
    server: Option<Ipv4Addr>,
    /// The address xtask's servers bind to.
    listen: Option<Ipv4Addr>,
    tftp_port: Option<u16>,
    http_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IsoFile {
    device: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    text: EndpointFile,
    log: Option<EndpointFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    tcp: Option<String>,
    serial: Option<PathBuf>,
    baud: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerFile {
    cycle: Option<String>,
    off: Option<String>,
    timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    nic: String,
    ip: String,
    #[serde(default = "default_migration_port")]
    port: u16,
}

fn default_migration_port() -> u16 {
    crate::pair::TCP_PORT
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    boot_s: Option<u64>,
    run_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QemuFile {
    memory_mib: Option<u32>,
    boot_nic: Option<String>,
    accel: Option<String>,
    #[serde(default)]
    extra_args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PassthroughFile {
    mdev: Option<PathBuf>,
    host: Option<String>,
}

/// The speed the monitor programs both UARTs to (divisor 1, 8N1).
pub const MONITOR_BAUD: u32 = 115_200;

/// Where a serial stream of the machine comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP console server, serial-over-LAN proxy or QEMU's socket.
    Tcp { address: String },
    /// A local serial device (set to `baud` raw with `stty`), or a file
    /// that grows (`baud` absent).
    Serial { path: PathBuf, baud: Option<u32> },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { address } => write!(f, "tcp {address}"),
            Endpoint::Serial {
                path,
                baud: Some(b),
            } => {
                write!(f, "serial {} at {b} baud", path.display())
            }
            Endpoint::Serial { path, baud: None } => write!(f, "file {}", path.display()),
        }
    }
}

/// The machine's two serial streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    /// COM1: the monitor's text console.
    pub text: Endpoint,
    /// COM2: the defmt frames; without it the report has only what the
    /// text console says.
    pub log: Option<Endpoint>,
}

/// How the image reaches the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Netboot(Netboot),
    /// The GRUB ISO written to this device or file.
    Iso {
        device: PathBuf,
    },
}

/// xtask's boot servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Netboot {
    /// The address the machine reaches them on (QEMU's user network:
    /// 10.0.2.2, the host).
    pub server: Ipv4Addr,
    /// Where they listen.
    pub listen: Ipv4Addr,
    /// 0: a free port, chosen per run (QEMU kinds only).
    pub tftp_port: u16,
    pub http_port: u16,
}

/// How the machine is power-cycled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Power {
    /// A shell command; `None`: the user is asked on the terminal.
    pub cycle: Option<String>,
    /// Run after the run, whatever its outcome.
    pub off: Option<String>,
    /// How long each command may take.
    pub timeout: Duration,
}

/// The machine's side of a migration link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub nic: Nic,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The TCP port a destination listens on.
    pub port: u16,
}

/// QEMU's settings for the QEMU kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSettings {
    pub memory_mib: u32,
    /// The NIC whose iPXE ROM network-boots (QEMU's user network).
    pub boot_nic: Nic,
    /// `tcg` or `kvm`.
    pub accel: String,
    pub extra_args: Vec<String>,
}

/// The device a `qemu-passthrough` target hands to QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passthrough {
    /// A GVT-g vGPU: `/sys/bus/mdev/devices/<uuid>`.
    Mdev(PathBuf),
    /// The whole iGPU, bound to vfio-pci: `0000:00:02.0`.
    Host(String),
}

/// A checked target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub delivery: Delivery,
    pub append: String,
    /// `None` for QEMU kinds: xtask exposes their serial ports itself.
    pub console: Option<Console>,
    pub power: Power,
    pub network: Option<Network>,
    /// Power-cycle to the monitor's banner.
    pub boot_timeout: Duration,
    /// Banner to the monitor's end.
    pub run_timeout: Duration,
    pub qemu: Option<QemuSettings>,
    pub passthrough: Option<Passthrough>,
    /// The file it came from.
    pub file: PathBuf,
}

/// QEMU's user network puts the host here.
pub const QEMU_HOST_ALIAS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn field_error(field: &str, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("`{field}`: {message}")
}

impl Target {
    /// Reads and checks the target file at `path`.
    pub fn load(path: &Path) -> Result<Target> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the target file {}", path.display()))?;
        Target::parse(&text, path).with_context(|| format!("target file {}", path.display()))
    }

    /// Parses and checks a target file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Target> {
        let file: TargetFile = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|span| field_at(text, span.start, e.message()))
                .unwrap_or_default();
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(0);
            if field.is_empty() {
                anyhow!("line {line}: {}", e.message())
            } else {
                anyhow!("`{field}` (line {line}): {}", e.message())
            }
        })?;
        Target::from_file(file, path)
    }

    /// The rules across fields.
    fn from_file(f: TargetFile, path: &Path) -> Result<Target> {
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(field_error(
                "name",
                format!(
                    "{:?}: letters, digits, - and _ only (it names the log directory)",
                    f.name
                )
            ));
        }
        if f.kind.is_qemu() && f.console.is_some() {
            bail!(field_error(
                "console",
                format!("a {} target has no console section: xtask exposes QEMU's serial ports as TCP sockets itself", f.kind.name())
            ));
        }
        if !f.kind.is_qemu() && f.qemu.is_some() {
            bail!(field_error(
                "qemu",
                "only for the qemu and qemu-passthrough kinds"
            ));
        }
        let console = match f.console {
            Some(c) => Some(Console {
                text: endpoint(&c.text, "console.text")?,
                log: c
                    .log
                    .as_ref()
                    .map(|l| endpoint(l, "console.log"))
                    .transpose()?,
            }),
            None if f.kind == Kind::Machine => {
                bail!(field_error(
                    "console",
                    "missing: a machine needs `console.text` (and, for the report's figures, `console.log`)"
                ))
            }
            None => None,
        };
        let delivery = match f.delivery {
            DeliveryKind::Netboot => {
                if f.iso.is_some() {
                    bail!(field_error("iso", "given, but `delivery` is netboot"));
                }
                let n = f.netboot.unwrap_or(NetbootFile {
                    server: None,
                    listen: None,
                    tftp_port: None,
                    http_port: None,
                });
                let netboot = if f.kind.is_qemu() {
                    if let Some(server) = n.server.filter(|s| *s != QEMU_HOST_ALIAS) {
                        bail!(field_error(
                            "netboot.server",
                            format!("{server}: a QEMU target reaches xtask at {QEMU_HOST_ALIAS}, QEMU's address of the host")
                        ));
                    }
                    if let Some(listen) = n.listen.filter(|l| !l.is_loopback()) {
                        bail!(field_error(
                            "netboot.listen",
                            format!(
                                "{listen}: QEMU's user network reaches the host's loopback only"
                            )
                        ));
                    }
                    Netboot {
                        server: QEMU_HOST_ALIAS,
                        listen: Ipv4Addr::LOCALHOST,
                        tftp_port: n.tftp_port.unwrap_or(0),
                        http_port: n.http_port.unwrap_or(0),
                    }
                } else {
                    let server = n.server.ok_or_else(|| {
                        field_error(
                            "netboot.server",
                            "missing: the address the machine reaches this host on (it goes into the iPXE script and grub.cfg)",
                        )
                    })?;
                    let port = |p: Option<u16>, field: &str| {
                        match p {
                        Some(0) | None => Err(field_error(
                            field,
                            "missing or 0: a real machine's DHCP server names the boot file, so the port must be fixed",
                        )),
                        Some(p) => Ok(p),
                    }
                    };
                    Netboot {
                        server,
                        listen: n.listen.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        tftp_port: port(n.tftp_port, "netboot.tftp_port")?,
                        http_port: port(n.http_port, "netboot.http_port")?,
                    }
                };
                Delivery::Netboot(netboot)
            }
            DeliveryKind::Iso => {
                if f.netboot.is_some() {
                    bail!(field_error("netboot", "given, but `delivery` is iso"));
                }
                let iso = f.iso.ok_or_else(|| {
                    field_error(
                        "iso.device",
                        "missing: the block device (USB stick) or file the ISO is written to",
                    )
                })?;
                if iso.device.as_os_str().is_empty() {
                    bail!(field_error("iso.device", "empty"));
                }
                Delivery::Iso { device: iso.device }
            }
        };
        let power = match f.power {
            Some(p) => {
                if f.kind.is_qemu() && (p.cycle.is_some() || p.off.is_some()) {
                    bail!(field_error(
                        "power",
                        format!(
                            "a {} target is powered by xtask starting and stopping QEMU",
                            f.kind.name()
                        )
                    ));
                }
                for (cmd, field) in [(&p.cycle, "power.cycle"), (&p.off, "power.off")] {
                    if cmd.as_deref().is_some_and(|c| c.trim().is_empty()) {
                        bail!(field_error(
                            field,
                            "empty (leave it out to be asked on the terminal)"
                        ));
                    }
                }
                Power {
                    cycle: p.cycle,
                    off: p.off,
                    timeout: Duration::from_secs(positive(p.timeout_s, 60, "power.timeout_s")?),
                }
            }
            None => Power {
                cycle: None,
                off: None,
                timeout: Duration::from_secs(60),
            },
        };
        let network = f.network.map(|n| network(&n)).transpose()?;
        let qemu = if f.kind.is_qemu() {
            let q = f.qemu.unwrap_or_default();
            let boot_nic = match q.boot_nic.as_deref() {
                None => Nic::Virtio,
                Some(name) => Nic::from_name(name).ok_or_else(|| {
                    field_error(
                        "qemu.boot_nic",
                        format!("`{name}`: expected virtio or e1000e"),
                    )
                })?,
            };
            if network.is_some_and(|n| n.nic == boot_nic) {
                bail!(field_error(
                    "network.nic",
                    format!("{}: the same NIC as `qemu.boot_nic`; the monitor would drive the boot NIC instead of the link", boot_nic.name())
                ));
            }
            let accel = q.accel.unwrap_or_else(|| "tcg".into());
            if accel != "tcg" && accel != "kvm" {
                bail!(field_error(
                    "qemu.accel",
                    format!("`{accel}`: expected tcg or kvm")
                ));
            }
            let memory_mib = q.memory_mib.unwrap_or(256);
            if !(64..=65536).contains(&memory_mib) {
                bail!(field_error(
                    "qemu.memory_mib",
                    format!("{memory_mib}: expected 64..65536")
                ));
            }
            Some(QemuSettings {
                memory_mib,
                boot_nic,
                accel,
                extra_args: q.extra_args,
            })
        } else {
            None
        };
        let passthrough = match (f.kind, f.passthrough) {
            (Kind::QemuPassthrough, Some(p)) => Some(match (p.mdev, p.host) {
                (Some(mdev), None) => Passthrough::Mdev(mdev),
                (None, Some(host)) => {
                    if !is_pci_address(&host) {
                        bail!(field_error(
                            "passthrough.host",
                            format!("`{host}`: expected a PCI address such as 0000:00:02.0")
                        ));
                    }
                    Passthrough::Host(host)
                }
                _ => bail!(field_error(
                    "passthrough",
                    "give exactly one of mdev (a GVT-g vGPU's sysfs path) or host (the iGPU's PCI address)"
                )),
            }),
            (Kind::QemuPassthrough, None) => bail!(field_error(
                "passthrough",
                "missing: a qemu-passthrough target needs `passthrough.mdev` or `passthrough.host`"
            )),
            (_, Some(_)) => bail!(field_error("passthrough", "only for the qemu-passthrough kind")),
            (_, None) => None,
        };
        Ok(Target {
            name: f.name,
            kind: f.kind,
            delivery,
            append: f.append,
            console,
            power,
            network,
            boot_timeout: Duration::from_secs(positive(f.timeouts.boot_s, 120, "timeouts.boot_s")?),
            run_timeout: Duration::from_secs(positive(f.timeouts.run_s, 600, "timeouts.run_s")?),
            qemu,
            passthrough,
            file: path.to_path_buf(),
        })
    }
}

fn positive(value: Option<u64>, default: u64, field: &str) -> Result<u64> {
    match value {
        Some(0) => Err(field_error(field, "0: give a number of seconds above 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn endpoint(e: &EndpointFile, field: &str) -> Result<Endpoint> {
    match (&e.tcp, &e.serial) {
        (Some(address), None) => {
            if e.baud.is_some() {
                bail!(field_error(
                    &format!("{field}.baud"),
                    "only for a serial device"
                ));
            }
            // The name is resolved when the console is opened, not here.
            let well_formed = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !well_formed {
                bail!(field_error(
                    &format!("{field}.tcp"),
                    format!("`{address}`: expected host:port")
                ));
            }
            Ok(Endpoint::Tcp {
                address: address.clone(),
            })
        }
        (None, Some(path)) => {
            if let Some(baud) = e.baud.filter(|b| *b != MONITOR_BAUD) {
                bail!(field_error(
                    &format!("{field}.baud"),
                    format!("{baud}: the monitor programs its UARTs to {MONITOR_BAUD} baud 8N1")
                ));
            }
            Ok(Endpoint::Serial {
                path: path.clone(),
                baud: e.baud,
            })
        }
        _ => Err(field_error(
            field,
            "give exactly one of tcp = \"host:port\" or serial = \"/dev/ttyUSB0\"",
        )),
    }
}

fn network(n: &NetworkFile) -> Result<Network> {
    let nic = Nic::from_name(&n.nic).ok_or_else(|| {
        field_error(
            "network.nic",
            format!("`{}`: expected virtio or e1000e", n.nic),
        )
    })?;
    let bad_ip = || field_error("network.ip", format!("`{}`: expected A.B.C.D/N", n.ip));
    let (ip, prefix) = n.ip.split_once('/').ok_or_else(bad_ip)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad_ip())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad_ip())?;
    if !(1..=32).contains(&prefix) {
        return Err(bad_ip());
    }
    if n.port == 0 {
        bail!(field_error(
            "network.port",
            "0: a destination listens on a fixed port"
        ));
    }
    Ok(Network {
        nic,
        ip,
        prefix,
        port: n.port,
    })
}

/// `dddd:bb:dd.f` in hex.
fn is_pci_address(text: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = text.split([':', '.']).collect();
    matches!(parts.as_slice(), [d, b, s, f] if hex(d, 4) && hex(b, 2) && hex(s, 2) && hex(f, 1))
}

/// The dotted key a TOML error at byte `at` of `text` is about: the table
/// header in force there, the key on that line (and inside an inline
/// table, the inner key), and for "missing field" the missing one.
fn field_at(text: &str, at: usize, message: &str) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let mut table = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| header(l.trim()))
        .unwrap_or_default();
    let mut path: Vec<String> = Vec::new();
    if let Some(h) = header(line.trim()) {
        // The error is about the header itself (an unknown table) or
        // about the table it opens (a field missing from it).
        table = h;
        if message.starts_with("unknown field") {
            return table;
        }
    } else if let Some((key, _)) = line.split_once('=') {
        path.push(key.trim().trim_matches('"').to_string());
        // Inside an inline table: the key before the error's position.
        let before = &text[line_start..at];
        if let Some(open) = before.find('{') {
            let inner = &before[open + 1..];
            let piece = inner.rsplit(',').next().unwrap_or("");
            match piece.split_once('=') {
                Some((k, _)) => path.push(k.trim().to_string()),
                None if !piece.trim().is_empty() => path.push(piece.trim().to_string()),
                None => {}
            }
        }
    }
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(name) = message
            .strip_prefix(prefix)
            .and_then(|m| m.split('`').next())
        {
            if path.last().map(String::as_str) != Some(name) {
                path.push(name.to_string());
            }
        }
    }
    let mut all: Vec<String> = Vec::new();
    if !table.is_empty() {
        all.push(table);
    }
    all.extend(path);
    all.join(".")
}

fn header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_matches(|c| c == '[' || c == ' ').to_string())
}

/// Turns a `host:port` into one socket address.
pub fn resolve(address: &str) -> Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("resolving {address}"))?
        .next()
        .ok_or_else(|| anyhow!("{address} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Target> {
        Target::parse(text, Path::new("t.toml"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("accepted a bad target file"))
    }

    const MACHINE: &str = r#"
name = "nuc"
kind = "machine"
delivery = "netboot"
[netboot]
server = "192.168.1.10"
tftp_port = 6969
http_port = 8080
[console]
text = { serial = "/dev/ttyUSB0", baud = 115200 }
log = { tcp = "127.0.0.1:7002" }
[power]
cycle = "ipmitool chassis power cycle"
"#;

    #[test]
    fn a_machine_file_reads_into_checked_fields() {
        let t = parse(MACHINE).unwrap();
        assert_eq!(t.kind, Kind::Machine);
        let Delivery::Netboot(n) = t.delivery else {
            panic!("not netboot")
        };
        assert_eq!((n.tftp_port, n.http_port), (6969, 8080));
        assert_eq!(n.listen, Ipv4Addr::UNSPECIFIED);
        let console = t.console.unwrap();
        assert_eq!(
            console.text,
            Endpoint::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: Some(115_200)
            }
        );
        assert_eq!(
            t.power.cycle.as_deref(),
            Some("ipmitool chassis power cycle")
        );
        assert_eq!(t.boot_timeout, Duration::from_secs(120));
    }

    #[test]
    fn the_sample_targets_parse() {
        for name in [
            "qemu.toml",
            "nuc-gen9.toml",
            "gvtg-passthrough.toml",
            "igpu-passthrough.toml",
        ] {
            let path = crate::paths::root().join("tests/hil").join(name);
            Target::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn syntax_and_type_errors_name_the_field_and_line() {
        let e = error("name = \"a\"\nkind = \"qemux\"\ndelivery = \"netboot\"\n");
        assert!(
            e.contains("`kind` (line 2)") && e.contains("unknown variant `qemux`"),
            "{e}"
        );
        let e = error(&MACHINE.replace("baud = 115200", "baud = \"fast\""));
        assert!(
            e.contains("`console.text.baud`") && e.contains("invalid type"),
            "{e}"
        );
        let e = error(&MACHINE.replace("tftp_port = 6969", "tftp_port = 70000"));
        assert!(e.contains("`netboot.tftp_port`"), "{e}");
        let e = error(&MACHINE.replace("[power]", "[powr]"));
        assert!(e.contains("`powr`") && e.contains("unknown field"), "{e}");
        let e = error(&MACHINE.replace("log = { tcp", "log = { tpc"));
        assert!(
            e.contains("`console.log.tpc`") && e.contains("unknown field"),
            "{e}"
        );
        let e = error(&MACHINE.replace("delivery = \"netboot\"\n", ""));
        assert!(
            e.contains("`delivery`") && e.contains("missing field"),
            "{e}"
        );
        let e =
            error(&MACHINE.replace("text = { serial = \"/dev/ttyUSB0\", baud = 115200 }\n", ""));
        assert!(
            e.contains("`console.text`") && e.contains("missing field"),
            "{e}"
        );
        let e = error("name = \"a\nkind = \"qemu\"\n");
        assert!(e.contains("line 1"), "{e}");
        assert!(e.contains("t.toml") || !e.is_empty());
    }

    #[test]
    fn rules_across_fields_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("name = \"nuc\"", "name = \"a b\"", "`name`"),
            ("server = \"192.168.1.10\"\n", "", "`netboot.server`"),
            ("http_port = 8080", "http_port = 0", "`netboot.http_port`"),
            ("baud = 115200", "baud = 9600", "`console.text.baud`"),
            (
                "{ tcp = \"127.0.0.1:7002\" }",
                "{ tcp = \"nowhere\" }",
                "`console.log.tcp`",
            ),
            (
                "{ tcp = \"127.0.0.1:7002\" }",
                "{ tcp = \"127.0.0.1:1\", serial = \"/dev/ttyS1\" }",
                "`console.log`",
            ),
            (
                "cycle = \"ipmitool chassis power cycle\"",
                "cycle = \" \"",
                "`power.cycle`",
            ),
            ("kind = \"machine\"", "kind = \"qemu\"", "`console`"),
        ];
        for (from, to, field) in cases {
            let text = MACHINE.replace(from, to);
            assert_ne!(text, MACHINE, "{from} not in the sample");
            let e = error(&text);
            assert!(e.contains(field), "{field} not named for {to:?}: {e}");
        }
        let no_console = MACHINE.split("[console]").next().unwrap().to_string();
        assert!(error(&no_console).contains("`console`"));
        let qemu = "name = \"q\"\nkind = \"qemu\"\ndelivery = \"netboot\"\n";
        let t = parse(qemu).unwrap();
        assert_eq!(t.qemu.as_ref().unwrap().boot_nic, Nic::Virtio);
        let e = error(&format!(
            "{qemu}[network]\nnic = \"virtio\"\nip = \"10.1.0.1/24\"\n"
        ));
        assert!(e.contains("`network.nic`"), "{e}");
        let e = error(&format!(
            "{qemu}[network]\nnic = \"e1000e\"\nip = \"10.1.0.1\"\n"
        ));
        assert!(e.contains("`network.ip`"), "{e}");
        let e = error(&format!("{qemu}[qemu]\naccel = \"hvf\"\n"));
        assert!(e.contains("`qemu.accel`"), "{e}");
        let e = error(&format!("{qemu}[timeouts]\nboot_s = 0\n"));
        assert!(e.contains("`timeouts.boot_s`"), "{e}");
        let e = error(&qemu.replace("\"qemu\"", "\"qemu-passthrough\""));
        assert!(e.contains("`passthrough`"), "{e}");
        let e = error(&format!(
            "{}[passthrough]\nhost = \"00:02.0\"\n",
            qemu.replace("\"qemu\"", "\"qemu-passthrough\"")
        ));
        assert!(e.contains("`passthrough.host`"), "{e}");
        let e = error(&qemu.replace("netboot", "iso"));
        assert!(e.contains("`iso.device`"), "{e}");
    }
}
