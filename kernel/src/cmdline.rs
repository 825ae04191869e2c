//! The kernel command line: whitespace-separated `key=value` options. Every
//! option is known and checked here; anything else stops boot with a message
//! naming the offending option and what was expected, because a monitor that
//! silently ignores `vgpus=` typos would run something other than what the
//! operator asked for.

use core::fmt;

use gpu::partition::{VgpuType, MAX_VGPUS};
use migrate::policy::Policy;
use migrate::MigrationKey;

use crate::net::config::{self as netcfg, Ipv4Cidr, NetConfig, NicChoice};

/// What the monitor runs after bring-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The monitor itself (the default).
    Run,
    /// In-kernel self-tests: all of them, or the one named.
    SelfTest(TestSelection),
    /// `net_bench=MIB`: a raw TCP transfer of MIB MiB to (`peer=`) or from
    /// (`listen=`) another monitor, then exit.
    NetBench { mib: u32 },
    /// `ring3=...`: ring-3 guests ([`Ring3Options`]) on the scheduler,
    /// then a report and exit.
    Ring3,
}

/// One ring-3 guest of `ring3=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring3Guest {
    /// The workload image running this workload.
    Workload(guest::Kind),
    /// The probe image misbehaving (spins, then reads another guest's RAM).
    Hostile,
    /// The workload image keeping its blitter busy (`guest::abi::Program::Busy`).
    Busy,
}

/// What `ring3=` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring3Options {
    /// The guests, in order (`ring3=`).
    pub guests: [Option<Ring3Guest>; MAX_RING3_GUESTS],
    /// Frames each workload runs (`ring3_frames=`).
    pub frames: u32,
    /// RAM of each guest in MiB (`ring3_mib=`).
    pub mib: u32,
}

/// Most guests `ring3=` takes.
pub const MAX_RING3_GUESTS: usize = 4;

impl Default for Ring3Options {
    fn default() -> Self {
        Ring3Options {
            guests: [None; MAX_RING3_GUESTS],
            frames: 20,
            mib: 16,
        }
    }
}

/// Which side of a migration this monitor plays (`role=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Guests and a live migration between two vGPUs of this monitor.
    Local,
    /// Runs its guests and migrates guest 0 to `peer=`.
    Source,
    /// Listens on `listen=` and takes migrated guests in.
    Dest,
    /// Runs its guests only, for `run_ms=` (QEMU's own migration of the
    /// whole machine is the reference then).
    Guests,
}

/// A deliberate failure of the migration stream (`migrate_fault=`), for
/// the failure-atomicity tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateFault {
    /// No fault.
    None,
    /// Source: invert the stream byte at this offset.
    Flip(u64),
    /// Source: the link closes after this many stream bytes.
    Truncate(u64),
    /// Source: the hello names another stream version.
    Version,
    /// Source: the link dies right after the commit record.
    LoseCommit,
    /// Destination: the link dies before the resumed record.
    LoseResumed,
    /// Source: the guest's saved CPU state is damaged before the stream
    /// takes it (its own CRC must catch it on the destination).
    CpuState,
}

/// What the migration roles run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleOptions {
    /// `role=`.
    pub role: Role,
    /// `workload=`: guest 0's workload.
    pub workload: guest::Kind,
    /// `guest_mib=`: guest 0's RAM.
    pub guest_mib: u32,
    /// `guests=`: guests on the source (guest 0, then a desktop, a video,
    /// the hostile guest and a PPGTT renderer).
    pub guests: u8,
    /// `migrate_after_frames=`.
    pub migrate_after_frames: u32,
    /// `migrate_mbps=`: MiB/s cap on the stream (0: none).
    pub migrate_mbps: u32,
    /// `policy=all`: one migration per policy.
    pub all_policies: bool,
    /// `migrations=`: streams a destination takes.
    pub migrations: u32,
    /// `frames_after=`.
    pub frames_after: u32,
    /// `raw_tcp_mib=`.
    pub raw_tcp_mib: u32,
    /// `run_ms=`.
    pub run_ms: u32,
    /// `connect_ms=`: how long the source tries to reach the destination,
    /// and the destination waits for each source (the role's default if
    /// None).
    pub connect_ms: Option<u32>,
    /// `migrate_fault=`.
    pub fault: MigrateFault,
}

impl Default for RoleOptions {
    fn default() -> Self {
        RoleOptions {
            role: Role::Local,
            workload: guest::Kind::Game3d,
            guest_mib: 64,
            guests: 4,
            migrate_after_frames: 10,
            migrate_mbps: 0,
            all_policies: false,
            migrations: 1,
            frames_after: 20,
            raw_tcp_mib: 16,
            run_ms: 10_000,
            connect_ms: None,
            fault: MigrateFault::None,
        }
    }
}

/// Which self-tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestSelection {
    /// Every test in the normal suite.
    All,
    /// One test (including the deliberate-fault ones) by name.
    Named(&'static str),
}

/// Parsed options with their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `selftest=`.
    pub mode: Mode,
    /// `vgpus=`: how many vGPUs to create.
    pub vgpus: u8,
    /// `vgpu_type=`: their size.
    pub vgpu_type: VgpuType,
    /// `policy=`: the migration policy.
    pub policy: Policy,
    /// `shaders=`: which submissions may dispatch shaders.
    pub shaders: gpu::mediate::ShaderPolicy,
    /// `gpu_slowdown=`: the software GPU's work takes this many times its
    /// model cost (`gpu::sim::SimGpu::set_slowdown`).
    pub gpu_slowdown: u32,
    /// `ppgtt_budget=`: shadow PPGTT table pages each vGPU may use (its
    /// pool, the monitor's frames, is that many pages plus the scratch
    /// page and tables).
    pub ppgtt_budget: u16,
    /// `trace=on`: record the migration's dirty trace on the log.
    pub trace: bool,
    /// `nic=`, `ip=`, `peer=`, `listen=`.
    pub net: NetConfig,
    /// `migrate_key=`: the pre-shared key that authenticates the migration
    /// stream (hex).
    pub migrate_key: Option<MigrationKey>,
    /// `migrate_encrypt=on`: encrypt the migration stream too.
    pub migrate_encrypt: bool,
    /// `role=` and what the roles run with.
    pub roles: RoleOptions,
    /// `ring3=`, `ring3_frames=`, `ring3_mib=`.
    pub ring3: Ring3Options,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Run,
            vgpus: crate::vgpus::DEFAULT_VGPUS,
            vgpu_type: crate::vgpus::DEFAULT_TYPE,
            policy: Policy::Informed,
            shaders: gpu::mediate::ShaderPolicy::PpgttOnly,
            gpu_slowdown: 1,
            ppgtt_budget: gpu::vgpu::SHADOW_TABLES as u16,
            trace: false,
            net: NetConfig::default(),
            migrate_key: None,
            migrate_encrypt: false,
            roles: RoleOptions::default(),
            ring3: Ring3Options::default(),
        }
    }
}

/// Largest `net_bench=` transfer, in MiB.
pub const MAX_NET_BENCH_MIB: u32 = 4096;

/// Known options and what they take, printed with every error.
pub const KNOWN_OPTIONS: &[(&str, &str)] = &[
    (
        "selftest",
        "all | <test name>  run the in-kernel self-tests instead of the monitor",
    ),
    ("vgpus", "0..8  how many vGPUs to create (default 2)"),
    (
        "policy",
        "stop-and-copy | precopy | gmig-oneshot | gmig-tpds | informed | informed-throttle | all  migration policy (default informed; all: one migration per policy, source only)",
    ),
    (
        "vgpu_type",
        "small | medium | large | huge  GVT-g sizes: 64+384, 128+512, 256+1024, 512+2048 MiB (default small)",
    ),
    (
        "trace",
        "on | off  record the live migration's dirty trace (target/xtask/trace.txt; default off)",
    ),
    (
        "gpu_slowdown",
        "1..1000  the software GPU's work takes N times its model cost, so that emulated guests can keep its engines busy (default 1)",
    ),
    (
        "ppgtt_budget",
        "1..64  shadow PPGTT table pages each vGPU's contexts may use, about 2 MiB mapped each; a guest whose page tables need more gets a typed error (default 64)",
    ),
    (
        "shaders",
        "ppgtt | allow-ggtt | deny  draws and GPGPU/media dispatches, whose surfaces the scanner cannot audit: only in PPGTT contexts (default), in GGTT contexts too (a hostile guest's draw can then reach any memory), or nowhere",
    ),
    (
        "ip",
        "A.B.C.D/N  this machine's IPv4 address and prefix; brings the NIC and TCP/IP up (default: no network)",
    ),
    (
        "nic",
        "auto | virtio | e1000e  which NIC to drive (default auto: the first supported on PCI)",
    ),
    (
        "peer",
        "A.B.C.D:PORT  the machine to connect to, on ip's subnet",
    ),
    ("listen", "PORT  accept one connection on this TCP port"),
    (
        "mtu",
        "576..8000  the largest IP packet; above 1500 (jumbo frames) only where every hop takes them (default 1500)",
    ),
    (
        "tcp_buffer_kib",
        "4..65536  KiB of each TCP socket buffer; the receive buffer is the window the peer sees (default 4096)",
    ),
    (
        "net_bench",
        "1..4096  raw TCP transfer of this many MiB: send to peer= or receive on listen=, print the throughput, exit",
    ),
    (
        "migrate_key",
        "32 to 128 hex digits  pre-shared key that authenticates the migration stream (both sides; a destination refuses to listen without one)",
    ),
    (
        "migrate_encrypt",
        "on | off  also encrypt the migration stream (default off: authenticated only)",
    ),
    (
        "role",
        "local | source | dest | guests  local: migrate within this monitor; source: migrate guest 0 to peer=; dest: take guests in on listen=; guests: run the guests only (default local)",
    ),
    ("workload", "3d | 3d-ppgtt | desktop | video  guest 0's workload (default 3d)"),
    (
        "guest_mib",
        "4..256  guest 0's RAM, which is its vGPU's guest memory (default 64)",
    ),
    (
        "guests",
        "1..5  ring-3 guests on the source: guest 0, then an 8 MiB desktop, an 8 MiB video, the hostile guest and an 8 MiB 3d-ppgtt (default 4; cargo xtask run gives 5)",
    ),
    (
        "migrate_after_frames",
        "N  source: migrate once guest 0 completed N frames (default 10)",
    ),
    (
        "migrate_mbps",
        "N  source: cap the migration stream at N MiB/s, as QEMU's max-bandwidth (default 0: no cap)",
    ),
    (
        "migrations",
        "1..16  dest: migrations to take in, one after another (default 1)",
    ),
    (
        "frames_after",
        "1..100000  frames a migrated guest runs on the destination, and the source's other guests after the last migration (default 20)",
    ),
    (
        "raw_tcp_mib",
        "0..1024  raw TCP transfer before the first migration, for the link's rate (default 16)",
    ),
    ("run_ms", "ms  role=guests: how long the guests run (default 10000)"),
    (
        "connect_ms",
        "ms  source: how long it tries to reach peer= (default 60000); dest: how long it waits for each source (default 600000)",
    ),
    (
        "ring3",
        "LIST  up to 4 ring-3 guests, comma-separated, each 3d | 3d-ppgtt | desktop | video | hostile | busy: run them on the scheduler, report, exit",
    ),
    (
        "ring3_frames",
        "1..100000  frames each ring3= workload runs (default 20)",
    ),
    ("ring3_mib", "2..256  RAM of each ring3= guest (default 16)"),
    (
        "migrate_fault",
        "flip@N | truncate@N | version | lose-commit | lose-resumed | cpu-state  a deliberate stream failure, for tests",
    ),
];

/// A rejected command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// The loader cut the line (longer than the monitor keeps).
    Truncated,
    /// Not UTF-8.
    NotUtf8,
    /// A word without `=`.
    MissingValue { word: &'a str },
    /// An option the monitor does not know.
    Unknown { key: &'a str },
    /// A known option with a value it cannot take.
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
    /// The same option twice.
    Repeated { key: &'a str },
    /// An option that only works with another one.
    Needs { key: &'a str, needs: &'static str },
    /// Two options that cannot be given together.
    Conflict { key: &'a str, with: &'static str },
    /// `peer=` outside `ip=`'s subnet (the monitor has no router).
    NotOnSubnet { peer: &'a str, ip: &'a str },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::Truncated => write!(
                f,
                "the command line is longer than {} bytes",
                boot::MAX_CMDLINE
            ),
            CmdlineError::NotUtf8 => f.write_str("the command line is not UTF-8"),
            CmdlineError::MissingValue { word } => {
                write!(f, "`{word}` is not of the form key=value")
            }
            CmdlineError::Unknown { key } => write!(f, "unknown option `{key}`"),
            CmdlineError::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "option `{key}` cannot be `{value}`: expected {expected}")
            }
            CmdlineError::Repeated { key } => write!(f, "option `{key}` is given twice"),
            CmdlineError::Needs { key, needs } => {
                write!(f, "option `{key}` needs {needs}")
            }
            CmdlineError::Conflict { key, with } => {
                write!(f, "option `{key}` cannot be given with `{with}`")
            }
            CmdlineError::NotOnSubnet { peer, ip } => write!(
                f,
                "peer `{peer}` is not on the subnet of ip `{ip}` (the monitor has no router)"
            ),
        }
    }
}

/// The command line as the log may show it: the migration key's value is
/// replaced (the log leaves the machine on a serial line).
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.0.split_ascii_whitespace().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match word.split_once('=') {
                Some(("migrate_key", _)) => f.write_str("migrate_key=(hidden)")?,
                _ => f.write_str(word)?,
            }
        }
        Ok(())
    }
}

/// `value` as a number in `min..=max`.
fn number(value: &str, min: u32, max: u32) -> Option<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

fn is_test_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses the command line.
pub fn parse(line: &'static [u8], truncated: bool) -> Result<Options, CmdlineError<'static>> {
    if truncated {
        return Err(CmdlineError::Truncated);
    }
    let text = core::str::from_utf8(line).map_err(|_| CmdlineError::NotUtf8)?;
    let mut options = Options::default();
    let mut seen = [false; KNOWN_OPTIONS.len()];
    // The words of the options that are checked against each other.
    let (mut ip_word, mut peer_word) = ("", "");
    for word in text.split_ascii_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or(CmdlineError::MissingValue { word })?;
        let slot = KNOWN_OPTIONS
            .iter()
            .position(|(name, _)| *name == key)
            .ok_or(CmdlineError::Unknown { key })?;
        if core::mem::replace(&mut seen[slot], true) {
            return Err(CmdlineError::Repeated { key });
        }
        let bad = |expected| CmdlineError::BadValue {
            key,
            value,
            expected,
        };
        match key {
            "selftest" => {
                options.mode = Mode::SelfTest(match value {
                    "all" => TestSelection::All,
                    name if is_test_name(name) => TestSelection::Named(name),
                    _ => return Err(bad("`all` or a test name")),
                });
            }
            "vgpus" => {
                options.vgpus = value
                    .parse::<u8>()
                    .ok()
                    .filter(|n| usize::from(*n) <= MAX_VGPUS)
                    .ok_or(bad("a number from 0 to 8"))?;
            }
            "policy" if value == "all" => options.roles.all_policies = true,
            "policy" => {
                options.policy = Policy::from_name(value).map_err(|_| {
                    bad("stop-and-copy, precopy, gmig-oneshot, gmig-tpds, informed, informed-throttle or all")
                })?;
            }
            "vgpu_type" => {
                options.vgpu_type =
                    VgpuType::from_name(value).ok_or(bad("small, medium, large or huge"))?;
            }
            "trace" => {
                options.trace = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("on or off")),
                };
            }
            "ppgtt_budget" => {
                options.ppgtt_budget =
                    number(value, 1, gpu::vgpu::SHADOW_TABLES as u32).ok_or(bad("1 to 64"))? as u16
            }
            "gpu_slowdown" => {
                options.gpu_slowdown = number(value, 1, 1000).ok_or(bad("1 to 1000"))?
            }
            "shaders" => {
                options.shaders = gpu::mediate::ShaderPolicy::from_name(value)
                    .ok_or(bad("ppgtt, allow-ggtt or deny"))?;
            }
            "ip" => {
                options.net.ip = Some(Ipv4Cidr::parse(value).ok_or(bad(
                    "A.B.C.D/N: a host address (not the subnet's network or broadcast address) and a prefix length from 1 to 32",
                ))?);
                ip_word = value;
            }
            "nic" => {
                options.net.nic =
                    NicChoice::from_name(value).ok_or(bad("auto, virtio or e1000e"))?;
            }
            "peer" => {
                options.net.peer = Some(netcfg::parse_endpoint(value).ok_or(bad(
                    "A.B.C.D:PORT with a unicast address and a port from 1 to 65535",
                ))?);
                peer_word = value;
            }
            "listen" => {
                options.net.listen =
                    Some(netcfg::parse_port(value).ok_or(bad("a TCP port from 1 to 65535"))?);
            }
            "mtu" => {
                options.net.mtu = value
                    .parse::<u16>()
                    .ok()
                    .filter(|m| netcfg::MTU_RANGE.contains(m))
                    .ok_or(bad("a number of bytes from 576 to 8000"))?;
            }
            "tcp_buffer_kib" => {
                options.net.tcp_buffer_kib = value
                    .parse::<u32>()
                    .ok()
                    .filter(|k| crate::net::stack::SOCKET_BUFFER_KIB_RANGE.contains(k))
                    .ok_or(bad("a number of KiB from 4 to 65536"))?;
            }
            "net_bench" => {
                let mib = value
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=MAX_NET_BENCH_MIB).contains(m))
                    .ok_or(bad("a number of MiB from 1 to 4096"))?;
                options.mode = Mode::NetBench { mib };
            }
            "migrate_key" => {
                // A malformed key may still be most of a secret: not echoed.
                options.migrate_key =
                    Some(
                        MigrationKey::from_hex(value).map_err(|_| CmdlineError::BadValue {
                            key,
                            value: "(not shown)",
                            expected: "an even number of hex digits, 32 to 128",
                        })?,
                    );
            }
            "migrate_encrypt" => {
                options.migrate_encrypt = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("on or off")),
                };
            }
            "role" => {
                options.roles.role = match value {
                    "local" => Role::Local,
                    "source" => Role::Source,
                    "dest" => Role::Dest,
                    "guests" => Role::Guests,
                    _ => return Err(bad("local, source, dest or guests")),
                };
            }
            "workload" => {
                options.roles.workload =
                    guest::Kind::from_name(value).ok_or(bad("3d, 3d-ppgtt, desktop or video"))?;
            }
            "guest_mib" => {
                options.roles.guest_mib = number(value, 4, 256).ok_or(bad("4 to 256"))?
            }
            "guests" => {
                options.roles.guests = number(value, 1, 5).ok_or(bad("1 to 5"))? as u8;
            }
            "migrate_after_frames" => {
                options.roles.migrate_after_frames =
                    number(value, 0, 1_000_000).ok_or(bad("0 to 1000000"))?;
            }
            "migrate_mbps" => {
                options.roles.migrate_mbps = number(value, 0, 100_000).ok_or(bad("0 to 100000"))?;
            }
            "migrations" => {
                options.roles.migrations = number(value, 1, 16).ok_or(bad("1 to 16"))?
            }
            "frames_after" => {
                options.roles.frames_after = number(value, 1, 100_000).ok_or(bad("1 to 100000"))?;
            }
            "raw_tcp_mib" => {
                options.roles.raw_tcp_mib = number(value, 0, 1024).ok_or(bad("0 to 1024"))?
            }
            "ring3" => {
                let expected =
                    "up to 4 of 3d, 3d-ppgtt, desktop, video, hostile, busy, comma-separated";
                let mut guests = [None; MAX_RING3_GUESTS];
                for (i, name) in value.split(',').enumerate() {
                    let g = match name {
                        "hostile" => Ring3Guest::Hostile,
                        "busy" => Ring3Guest::Busy,
                        kind => {
                            Ring3Guest::Workload(guest::Kind::from_name(kind).ok_or(bad(expected))?)
                        }
                    };
                    *guests.get_mut(i).ok_or(bad(expected))? = Some(g);
                }
                options.ring3.guests = guests;
                options.mode = Mode::Ring3;
            }
            "ring3_frames" => {
                options.ring3.frames = number(value, 1, 100_000).ok_or(bad("1 to 100000"))?
            }
            "ring3_mib" => options.ring3.mib = number(value, 2, 256).ok_or(bad("2 to 256"))?,
            "run_ms" => {
                options.roles.run_ms = number(value, 1, 3_600_000).ok_or(bad("1 to 3600000"))?;
            }
            "connect_ms" => {
                options.roles.connect_ms =
                    Some(number(value, 1, 3_600_000).ok_or(bad("1 to 3600000"))?);
            }
            "migrate_fault" => {
                let expected =
                    "flip@N, truncate@N, version, lose-commit, lose-resumed or cpu-state";
                let at = |v: &str| v.parse::<u64>().ok();
                options.roles.fault = match value.split_once('@') {
                    Some(("flip", n)) => MigrateFault::Flip(at(n).ok_or(bad(expected))?),
                    Some(("truncate", n)) => MigrateFault::Truncate(at(n).ok_or(bad(expected))?),
                    None if value == "version" => MigrateFault::Version,
                    None if value == "lose-commit" => MigrateFault::LoseCommit,
                    None if value == "lose-resumed" => MigrateFault::LoseResumed,
                    None if value == "cpu-state" => MigrateFault::CpuState,
                    _ => return Err(bad(expected)),
                };
            }
            // Every name in KNOWN_OPTIONS has an arm above.
            _ => return Err(CmdlineError::Unknown { key }),
        }
    }
    check_combinations(&options, &seen, ip_word, peer_word)?;
    Ok(options)
}

/// Whether option `name` was given.
fn given(seen: &[bool; KNOWN_OPTIONS.len()], name: &str) -> bool {
    KNOWN_OPTIONS
        .iter()
        .position(|(n, _)| *n == name)
        .is_some_and(|i| seen[i])
}

/// The rules that span options: the network options need `ip=`, `peer=`
/// must be on its subnet, and a benchmark needs exactly one direction.
fn check_combinations<'a>(
    options: &Options,
    seen: &[bool; KNOWN_OPTIONS.len()],
    ip_word: &'a str,
    peer_word: &'a str,
) -> Result<(), CmdlineError<'a>> {
    let net = &options.net;
    for key in [
        "nic",
        "peer",
        "listen",
        "mtu",
        "tcp_buffer_kib",
        "net_bench",
    ] {
        if given(seen, key) && net.ip.is_none() {
            return Err(CmdlineError::Needs {
                key,
                needs: "`ip=A.B.C.D/N`",
            });
        }
    }
    if let (Some(ip), Some(peer)) = (net.ip, net.peer) {
        if !ip.contains(*peer.ip()) {
            return Err(CmdlineError::NotOnSubnet {
                peer: peer_word,
                ip: ip_word,
            });
        }
        if ip.address == *peer.ip() {
            return Err(CmdlineError::Conflict {
                key: "peer",
                with: "ip (the peer is this machine)",
            });
        }
    }
    match options.roles.role {
        Role::Source => {
            if net.peer.is_none() {
                return Err(CmdlineError::Needs {
                    key: "role",
                    needs: "`peer=A.B.C.D:PORT` (role=source migrates to it)",
                });
            }
            if options.migrate_key.is_none() {
                return Err(CmdlineError::Needs {
                    key: "role",
                    needs: "`migrate_key=` (role=source proves it to the destination)",
                });
            }
        }
        Role::Dest => {
            if net.listen.is_none() {
                return Err(CmdlineError::Needs {
                    key: "role",
                    needs: "`listen=PORT` (role=dest takes guests in there)",
                });
            }
            if options.migrate_key.is_none() {
                return Err(CmdlineError::Needs {
                    key: "role",
                    needs: "`migrate_key=`: a destination without a key refuses to listen",
                });
            }
        }
        Role::Local | Role::Guests => {}
    }
    if options.roles.all_policies && options.roles.role != Role::Source {
        return Err(CmdlineError::Conflict {
            key: "policy",
            with: "a role other than source (policy=all runs one migration per policy)",
        });
    }
    for key in ["ring3_frames", "ring3_mib"] {
        if given(seen, key) && !given(seen, "ring3") {
            return Err(CmdlineError::Needs {
                key,
                needs: "`ring3=` (the guests it is for)",
            });
        }
    }
    for with in ["selftest", "net_bench", "role"] {
        if given(seen, "ring3") && given(seen, with) {
            return Err(CmdlineError::Conflict { key: "ring3", with });
        }
    }
    if given(seen, "net_bench") && given(seen, "selftest") {
        return Err(CmdlineError::Conflict {
            key: "net_bench",
            with: "selftest",
        });
    }
    if let Mode::NetBench { .. } = options.mode {
        match (net.peer, net.listen) {
            (Some(_), Some(_)) => {
                return Err(CmdlineError::Conflict {
                    key: "net_bench",
                    with: "both peer and listen (send or receive, not both)",
                })
            }
            (None, None) => {
                return Err(CmdlineError::Needs {
                    key: "net_bench",
                    needs: "`peer=` (to send) or `listen=` (to receive)",
                })
            }
            _ => {}
        }
    }
    Ok(())
}
