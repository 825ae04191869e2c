//! Dirty traces recorded by the monitor, replayed by the simulator.
//!
//! Format (text, UTF-8, one item per line; `#` starts a comment):
//!
//! ```text
//! gmig-trace 1          first non-comment line: magic and version
//! pages 32768           size of the migrated set
//! 1000 42 g             <time ns> <page index> <kind>
//! ```
//!
//! Kinds: `g` GPU write changing the page, `s` GPU write changing a few
//! bytes, `u` GPU rewrite leaving the content unchanged, `c` CPU write.
//! Times are non-decreasing; page indices are below `pages`.

use std::fmt;

/// What a recorded write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// GPU write changing the page.
    Full,
    /// GPU write changing a few bytes.
    SmallEdit,
    /// GPU rewrite with identical content.
    Unchanged,
    /// CPU write (visible through the PTE dirty bit).
    Cpu,
}

impl WriteKind {
    fn letter(self) -> char {
        match self {
            Self::Full => 'g',
            Self::SmallEdit => 's',
            Self::Unchanged => 'u',
            Self::Cpu => 'c',
        }
    }
}

/// One recorded write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Time since the trace start.
    pub t_ns: u64,
    /// Page index.
    pub page: u64,
    /// Kind.
    pub kind: WriteKind,
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Size of the page set.
    pub pages: usize,
    /// Events in time order.
    pub events: Vec<TraceEvent>,
}

/// A malformed trace file (the file's fault), with its line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dirty trace line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// Parse the text format.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
            .filter(|(_, l)| !l.is_empty());
        let err = |line, what| TraceError { line, what };
        let (n, magic) = lines.next().ok_or(err(1, "empty trace"))?;
        if magic != "gmig-trace 1" {
            return Err(err(n, "expected `gmig-trace 1`"));
        }
        let (n, pages) = lines.next().ok_or(err(n, "missing `pages N`"))?;
        let pages: usize = pages
            .strip_prefix("pages ")
            .and_then(|p| p.trim().parse().ok())
            .filter(|&p| p > 0)
            .ok_or(err(n, "expected `pages N` with N > 0"))?;
        let mut events = Vec::new();
        let mut last = 0;
        for (n, l) in lines {
            let mut f = l.split_whitespace();
            let t_ns: u64 = f
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(err(n, "bad time"))?;
            let page: u64 = f
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(err(n, "bad page index"))?;
            let kind = match f.next() {
                Some("g") => WriteKind::Full,
                Some("s") => WriteKind::SmallEdit,
                Some("u") => WriteKind::Unchanged,
                Some("c") => WriteKind::Cpu,
                _ => return Err(err(n, "kind must be g, s, u or c")),
            };
            if f.next().is_some() {
                return Err(err(n, "extra fields"));
            }
            if t_ns < last {
                return Err(err(n, "time goes backwards"));
            }
            if page >= pages as u64 {
                return Err(err(n, "page index beyond `pages`"));
            }
            last = t_ns;
            events.push(TraceEvent { t_ns, page, kind });
        }
        Ok(Self { pages, events })
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gmig-trace 1")?;
        writeln!(f, "pages {}", self.pages)?;
        for e in &self.events {
            writeln!(f, "{} {} {}", e.t_ns, e.page, e.kind.letter())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let t =
            Trace::parse("# recorded\ngmig-trace 1\npages 4\n0 1 g\n5 3 u # note\n9 0 c\n10 2 s\n")
                .unwrap();
        assert_eq!(t.events.len(), 4);
        assert_eq!(Trace::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Trace::parse("gmig-trace 2\n").unwrap_err().line, 1);
        assert_eq!(
            Trace::parse("gmig-trace 1\npages 4\n5 1 g\n4 1 g")
                .unwrap_err()
                .what,
            "time goes backwards"
        );
        assert_eq!(
            Trace::parse("gmig-trace 1\npages 4\n5 4 g")
                .unwrap_err()
                .what,
            "page index beyond `pages`"
        );
        assert_eq!(
            Trace::parse("gmig-trace 1\npages 4\n5 1 x")
                .unwrap_err()
                .line,
            3
        );
    }
}
