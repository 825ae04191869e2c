//! Host side of the monitor's defmt log: the frames on COM2 are decoded
//! with the `.defmt` table of the very ELF that produced them.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use defmt_decoder::{DecodeError, StreamDecoder, Table};

/// One decoded log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Microseconds since boot, as the monitor stamped it.
    pub micros: Option<u64>,
    /// "INFO", "WARN", ...
    pub level: String,
    /// The formatted message.
    pub message: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.micros {
            Some(us) => write!(
                f,
                "{:>4}.{:06} {:<5} {}",
                us / 1_000_000,
                us % 1_000_000,
                self.level,
                self.message
            ),
            None => write!(f, "{:<5} {}", self.level, self.message),
        }
    }
}

/// The decoding table of one monitor image.
#[derive(Debug)]
pub struct LogTable {
    table: Table,
}

impl LogTable {
    /// Reads the `.defmt` table from the ELF at `elf`.
    pub fn load(elf: &Path) -> Result<Self> {
        let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
        let table = Table::parse(&bytes)
            .map_err(|e| anyhow!("parsing the defmt table of {}: {e}", elf.display()))?
            .ok_or_else(|| anyhow!("{} has no .defmt section", elf.display()))?;
        Ok(LogTable { table })
    }

    /// A decoder for one byte stream.
    pub fn stream(&self) -> LogStream<'_> {
        LogStream {
            decoder: self.table.new_stream_decoder(),
            malformed: 0,
        }
    }
}

/// The monitor stamps `{=u64:us}`, which defmt shows as seconds with a
/// fraction ("1.000250"); older decoders show the bare integer.
fn parse_micros(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.split_once('.') {
        Some((secs, frac)) => {
            let secs: u64 = secs.parse().ok()?;
            let frac = format!("{frac:0<6}");
            let micros: u64 = frac.get(..6)?.parse().ok()?;
            Some(secs * 1_000_000 + micros)
        }
        None => text.parse().ok(),
    }
}

/// Incremental decoder: feed bytes as they arrive, take whole lines out.
pub struct LogStream<'t> {
    decoder: Box<dyn StreamDecoder + Send + Sync + 't>,
    /// Frames that could not be decoded (corruption on the serial line).
    pub malformed: usize,
}

impl std::fmt::Debug for LogStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream")
            .field("malformed", &self.malformed)
            .finish()
    }
}

impl LogStream<'_> {
    /// Adds bytes and returns every line now complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.decoder.received(bytes);
        let mut lines = Vec::new();
        loop {
            match self.decoder.decode() {
                Ok(frame) => {
                    let micros = frame
                        .display_timestamp()
                        .and_then(|t| parse_micros(&t.to_string()));
                    lines.push(LogLine {
                        micros,
                        level: frame
                            .level()
                            .map(|l| l.as_str().to_uppercase())
                            .unwrap_or_else(|| "PRINT".into()),
                        message: frame.display_message().to_string(),
                    });
                }
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => self.malformed += 1,
            }
        }
        lines
    }
}

/// Prints the log in `file` (raw COM2 bytes), decoded with the table of
/// `elf` (default: the monitor `cargo xtask build` makes, built if needed).
pub fn print_file(file: &Path, elf: Option<&Path>) -> Result<()> {
    let elf = match elf {
        Some(e) => e.to_path_buf(),
        None => crate::build::kernel()?,
    };
    let table = LogTable::load(&elf)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut stream = table.stream();
    for line in stream.feed(&bytes) {
        println!("{line}");
    }
    if stream.malformed > 0 {
        eprintln!("{} frames could not be decoded", stream.malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_micros;

    #[test]
    fn timestamps_parse_in_both_forms() {
        assert_eq!(parse_micros("1.000250"), Some(1_000_250));
        assert_eq!(parse_micros(" 0.5 "), Some(500_000));
        assert_eq!(parse_micros("1234"), Some(1234));
        assert_eq!(parse_micros("x.1"), None);
    }
}
