//! The terminal of a long run: whole lines scroll, and one progress line
//! stays under them. On a terminal the progress line is rewritten in place
//! (`\r`, erase line) and lines printed meanwhile go above it; elsewhere
//! (a pipe, a CI log) progress comes as plain lines, at most one a second
//! unless its key (e.g. policy and phase) changes, so a log file does not
//! fill with them.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often plain (non-terminal) progress lines may come with one key.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Erase the whole line and go to its start (VT100, every terminal since).
const ERASE_LINE: &str = "\r\x1b[2K";

/// The shared output of a run; every thread prints through it.
#[derive(Debug)]
pub struct StatusLine {
    terminal: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The progress line on screen (terminal only).
    shown: Option<String>,
    /// The last plain progress line's key and time.
    last_plain: Option<(String, Instant)>,
}

impl StatusLine {
    /// Prints to stdout, rewriting in place when it is a terminal.
    pub fn stdout() -> StatusLine {
        StatusLine::new(std::io::stdout().is_terminal())
    }

    pub fn new(terminal: bool) -> StatusLine {
        StatusLine {
            terminal,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints a whole line (above the progress line on a terminal).
    pub fn line(&self, text: &str) {
        let state = self.state();
        let mut out = std::io::stdout().lock();
        let _ = match &state.shown {
            Some(progress) => write!(out, "{ERASE_LINE}{text}\n{progress}"),
            None => writeln!(out, "{text}"),
        };
        let _ = out.flush();
    }

    /// Shows `text` as the progress line; `key` names what it is about
    /// (plain output prints a new key at once, the same key once a second).
    pub fn progress(&self, key: &str, text: &str) {
        let mut state = self.state();
        let mut out = std::io::stdout().lock();
        if self.terminal {
            let _ = write!(out, "{ERASE_LINE}{text}");
            state.shown = Some(text.to_string());
        } else {
            let due = match &state.last_plain {
                Some((last, at)) => last != key || at.elapsed() >= PLAIN_PROGRESS_EVERY,
                None => true,
            };
            if !due {
                return;
            }
            let _ = writeln!(out, "{text}");
            state.last_plain = Some((key.to_string(), Instant::now()));
        }
        let _ = out.flush();
    }

    /// Ends the progress line: it stays on screen as the last line printed.
    pub fn finish(&self) {
        let mut state = self.state();
        if state.shown.take().is_some() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out);
            let _ = out.flush();
        }
        state.last_plain = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_comes_once_a_second_per_key() {
        let status = StatusLine::new(false);
        status.progress("informed precopy", "a");
        assert!(status.state().last_plain.is_some());
        let first = status.state().last_plain.clone().unwrap().1;
        status.progress("informed precopy", "b");
        // Not printed: the time stayed that of the first line.
        assert_eq!(status.state().last_plain.clone().unwrap().1, first);
        status.progress("informed stopcopy", "c");
        assert_eq!(
            status.state().last_plain.clone().unwrap().0,
            "informed stopcopy"
        );
        status.finish();
        assert!(status.state().last_plain.is_none());
    }

    #[test]
    fn a_terminal_keeps_the_progress_line_until_finished() {
        let status = StatusLine::new(true);
        status.progress("k", "round 1");
        status.line("[source] report migration ...");
        assert_eq!(status.state().shown.as_deref(), Some("round 1"));
        status.finish();
        assert_eq!(status.state().shown, None);
    }
}
