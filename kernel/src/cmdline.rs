//! The kernel command line: whitespace-separated `key=value` options. Every
//! option is known and checked here; anything else stops boot with a message
//! naming the offending option and what was expected, because a monitor that
//! silently ignores `vgpus=` typos would run something other than what the
//! operator asked for.

use core::fmt;

use gpu::partition::{VgpuType, MAX_VGPUS};
use migrate::policy::Policy;
use migrate::MigrationKey;

/// What the monitor runs after bring-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The monitor itself (the default).
    Run,
    /// In-kernel self-tests: all of them, or the one named.
    SelfTest(TestSelection),
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
    /// `shaders=deny`: the scanner refuses every shader dispatch.
    pub deny_shaders: bool,
    /// `trace=on`: record the migration's dirty trace on the log.
    pub trace: bool,
    /// `migrate_key=`: the pre-shared key that authenticates the migration
    /// stream (hex).
    pub migrate_key: Option<MigrationKey>,
    /// `migrate_encrypt=on`: encrypt the migration stream too.
    pub migrate_encrypt: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Run,
            vgpus: crate::vgpus::DEFAULT_VGPUS,
            vgpu_type: crate::vgpus::DEFAULT_TYPE,
            policy: Policy::Informed,
            deny_shaders: false,
            trace: false,
            migrate_key: None,
            migrate_encrypt: false,
        }
    }
}

/// Known options and what they take, printed with every error.
pub const KNOWN_OPTIONS: &[(&str, &str)] = &[
    (
        "selftest",
        "all | <test name>  run the in-kernel self-tests instead of the monitor",
    ),
    ("vgpus", "0..8  how many vGPUs to create (default 2)"),
    (
        "policy",
        "stop-and-copy | precopy | gmig-oneshot | gmig-tpds | informed | informed-throttle  migration policy (default informed)",
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
        "shaders",
        "allow | deny  deny: refuse draws and GPGPU/media dispatches, whose surfaces the scanner cannot audit (default allow)",
    ),
    (
        "migrate_key",
        "32 to 128 hex digits  pre-shared key that authenticates the migration stream (both sides; a destination refuses to listen without one)",
    ),
    (
        "migrate_encrypt",
        "on | off  also encrypt the migration stream (default off: authenticated only)",
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
            "policy" => {
                options.policy = Policy::from_name(value).map_err(|_| {
                    bad("stop-and-copy, precopy, gmig-oneshot, gmig-tpds, informed or informed-throttle")
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
            "shaders" => {
                options.deny_shaders = match value {
                    "allow" => false,
                    "deny" => true,
                    _ => return Err(bad("allow or deny")),
                };
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
            // Every name in KNOWN_OPTIONS has an arm above.
            _ => return Err(CmdlineError::Unknown { key }),
        }
    }
    Ok(options)
}
