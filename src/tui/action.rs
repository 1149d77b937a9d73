//! What can happen to the TUI state ([`Action`]) and what the state asks of
//! the outside world ([`Effect`]).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::engine::status::Feed;
use crate::flow::Flow;

/// Everything the user or the world can do to the state.
#[derive(Debug, Clone)]
pub enum Action {
    /// Something from the engine feed.
    Feed(Feed),
    /// Time passes (header rate, clock).
    Tick(DateTime<Utc>),
    /// Previous flow, or scroll the body up (past the top: load older flows).
    Up,
    /// Next flow, or scroll the body down.
    Down,
    /// First flow / top of the body.
    Top,
    /// Last flow / end of the body.
    Bottom,
    /// A screenful up.
    PageUp,
    /// A screenful down.
    PageDown,
    /// Open the selected flow's detail.
    Open,
    /// Close the overlay, the input or the detail.
    Back,
    /// Next detail tab.
    NextTab,
    /// Previous detail tab.
    PrevTab,
    /// `F`: follow the newest flow.
    ToggleFollow,
    /// `t`: show or hide the LLM columns (model, tokens, cost, TTFT).
    ToggleLlmColumns,
    /// Open the filter bar.
    StartFilter,
    /// A key typed into the filter bar.
    FilterKey(tui_textarea::Input),
    /// Keep the filter and close the bar.
    FilterSubmit,
    /// Restore the filter from before the bar opened.
    FilterCancel,
    /// Open the body search bar.
    StartSearch,
    /// A key typed into the body search bar.
    SearchKey(tui_textarea::Input),
    /// Run the search and jump to the first match below.
    SearchSubmit,
    /// Drop the search.
    SearchCancel,
    /// `n`: next match.
    NextHit,
    /// `N`: previous match.
    PrevHit,
    /// `?`.
    ToggleHelp,
    /// `y`: curl command to the clipboard and on screen.
    CopyCurl,
    /// `b`: save the body of the open tab (response in the list).
    SaveBody,
    /// `w`: the filtered flows as HAR.
    ExportHar,
    /// `c`: forget every flow shown.
    Clear,
    /// `m`: next body view.
    CycleMode,
    /// `s`: the Sessions view.
    OpenSessions,
    /// Space: mark (or unmark) the selected flow, or the selected turn's, for `d`.
    ToggleMark,
    /// `d`: diff the request bodies of the two marked flows (or the marked and the selected one).
    DiffMarked,
    /// `←` / `h`: scroll a diff left.
    ScrollLeft,
    /// `→` / `l`: scroll a diff right.
    ScrollRight,
    /// `Q`.
    Quit,
    /// A page of stored flows arrived (newest first, as `FlowHistory::page` returns them).
    History { flows: Vec<Flow>, exhausted: bool },
    /// Stored history became reachable: load the newest page.
    HistoryAvailable,
    /// One line to show in the footer (results of effects).
    Notice(String),
}

/// Work for the event loop: the outside world.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Put this text on the clipboard (OSC 52).
    Copy(String),
    /// Write a body to a file named `name` in the save directory.
    SaveBody { name: String, bytes: Bytes },
    /// Write these flows as HAR.
    ExportHar(Vec<Arc<Flow>>),
    /// Load a page of flows older than `before` (the newest when `None`).
    LoadOlder { before: Option<DateTime<Utc>> },
}
