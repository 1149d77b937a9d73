//! The TUI's state, in pure pieces with their own tests: the flows held
//! ([`flows::FlowList`]), the detail pane ([`detail::Detail`]), the Sessions
//! view ([`sessions::Sessions`]), the request diff ([`diff::DiffDoc`]) and
//! the request rate shown in the header.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

pub mod detail;
pub mod diff;
pub mod flows;
pub mod sessions;

/// Which pane has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The flow table.
    List,
    /// The detail pane of the selected flow.
    Detail,
    /// `s`: the sessions table.
    Sessions,
    /// One session: conversations, turns, timeline, rate limits.
    Session,
    /// Two request bodies side by side.
    Diff,
}

/// What floats above the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// Nothing.
    None,
    /// `?`: every binding.
    Help,
    /// The curl command just copied.
    Curl(String),
}

/// Which bar is taking text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Keys are commands.
    None,
    /// The `/` filter bar.
    Filter,
    /// The body search bar.
    Search,
}

/// History loading state.
#[derive(Debug, Clone, Copy, Default)]
pub struct History {
    /// A history source is connected.
    pub available: bool,
    /// A page request is out.
    pub loading: bool,
    /// No older flows remain (or the list was cleared).
    pub exhausted: bool,
}

/// The sizes the last layout gave the panes, computed before the frame is
/// drawn (`ui::viewport`) and used by paging and scrolling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// Flow rows the table shows (below its header row).
    pub table_rows: usize,
    /// Rows of the detail pane's content.
    pub body_rows: usize,
    /// Columns of the detail pane's content.
    pub body_width: usize,
    /// Columns of the whole screen (picks the table's columns).
    pub width: u16,
    /// Session rows the sessions table shows.
    pub sessions_rows: usize,
    /// Rows of an open session's turns pane.
    pub turn_rows: usize,
    /// Rows of the diff view.
    pub diff_rows: usize,
    /// Columns of each side of the diff view's text.
    pub diff_width: usize,
    /// Lines of the help overlay below the screen (how far it scrolls).
    pub help_overflow: usize,
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            table_rows: 10,
            body_rows: 10,
            body_width: 100,
            width: 120,
            sessions_rows: 10,
            turn_rows: 10,
            diff_rows: 10,
            diff_width: 50,
            help_overflow: 0,
        }
    }
}

/// Requests started per second over the last five seconds.
#[derive(Debug, Default)]
pub struct Rate {
    started: u64,
    samples: VecDeque<(DateTime<Utc>, u64)>,
    /// The latest figure.
    pub per_sec: f64,
}

impl Rate {
    /// One more request started.
    pub fn started(&mut self) {
        self.started += 1;
    }

    /// Take a sample at `now` and recompute the figure.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.samples.push_back((now, self.started));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| (now - *t).num_milliseconds() > 5_000)
        {
            self.samples.pop_front();
        }
        self.per_sec = match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / ((*t1 - *t0).num_milliseconds() as f64 / 1000.0)
            }
            _ => 0.0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut r = Rate::default();
        r.tick(t0);
        for _ in 0..10 {
            r.started();
        }
        r.tick(t0 + chrono::Duration::seconds(2));
        assert!((r.per_sec - 5.0).abs() < 1e-9, "{}", r.per_sec);
        r.tick(t0 + chrono::Duration::seconds(10));
        assert!(r.per_sec.abs() < 1e-9);
    }
}
