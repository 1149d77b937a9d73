//! The flow table's columns, one registry entry each (in trippy's manner):
//! an id, a header, a width and a cell function. The table renders whatever
//! [`crate::tui::app::App::columns`] lists, in that order, so a new column is
//! one entry in [`COLUMNS`] and, to show it by default, one id in [`DEFAULT`].

use ratatui::layout::Constraint;
use ratatui::style::{Color, Modifier, Style};

use crate::capture::sanitize::sanitize;
use crate::flow::{Flow, TrafficType};
use crate::tui::model::flows::Entry;
use crate::tui::ui::{human_ms, human_size};

/// Names a column (stable: key toggles and settings refer to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnId {
    /// Start time, UTC, to the millisecond.
    Time,
    /// Traffic type (llm, mcp, web, other).
    Type,
    /// Request method.
    Method,
    /// Status code, pending or error.
    Status,
    /// Host.
    Host,
    /// Path and query.
    Path,
    /// Total duration.
    Duration,
    /// Response body size (live bytes while streaming).
    Size,
}

/// One column of the flow table.
pub struct Column {
    /// Which column this is.
    pub id: ColumnId,
    /// Header text.
    pub header: &'static str,
    /// Width constraint (`Fill` takes what the others leave).
    pub width: Constraint,
    /// The cell's text (sanitised) and style for one row.
    pub cell: fn(&Entry) -> (String, Style),
}

/// Every column the table knows.
pub const COLUMNS: &[Column] = &[
    Column {
        id: ColumnId::Time,
        header: "time UTC",
        width: Constraint::Length(12),
        cell: |e| plain(e.flow.start_time.format("%H:%M:%S%.3f").to_string()),
    },
    Column {
        id: ColumnId::Type,
        header: "type",
        width: Constraint::Length(5),
        cell: |e| {
            let t = e.flow.traffic_type;
            (t.as_str().to_string(), Style::new().fg(type_color(t)))
        },
    },
    Column {
        id: ColumnId::Method,
        header: "method",
        width: Constraint::Length(7),
        cell: |e| plain(clean(&e.flow.method)),
    },
    Column {
        id: ColumnId::Status,
        header: "status",
        width: Constraint::Length(6),
        cell: |e| status_cell(&e.flow),
    },
    Column {
        id: ColumnId::Host,
        header: "host",
        width: Constraint::Length(24),
        cell: |e| plain(clean(&e.flow.host)),
    },
    Column {
        id: ColumnId::Path,
        header: "path",
        width: Constraint::Fill(1),
        cell: |e| plain(clean(&e.flow.path)),
    },
    Column {
        id: ColumnId::Duration,
        header: "duration",
        width: Constraint::Length(8),
        cell: |e| plain(e.flow.duration_ms.map_or_else(|| "…".to_string(), human_ms)),
    },
    Column {
        id: ColumnId::Size,
        header: "size",
        width: Constraint::Length(9),
        cell: |e| {
            plain(if e.flow.is_complete() {
                human_size(e.flow.response_body_size)
            } else if e.live.is_empty() {
                String::new()
            } else {
                format!("{}…", human_size(e.live.len() as u64))
            })
        },
    },
];

/// The columns shown at start, in order.
pub const DEFAULT: &[ColumnId] = &[
    ColumnId::Time,
    ColumnId::Type,
    ColumnId::Method,
    ColumnId::Status,
    ColumnId::Host,
    ColumnId::Path,
    ColumnId::Duration,
    ColumnId::Size,
];

/// The registry entry of `id`.
pub fn column(id: ColumnId) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.id == id)
}

fn plain(text: String) -> (String, Style) {
    (text, Style::new())
}

fn clean(s: &str) -> String {
    sanitize(s).into_owned()
}

/// Colour of a traffic type, shared with the header.
pub fn type_color(t: TrafficType) -> Color {
    match t {
        TrafficType::Llm => Color::Magenta,
        TrafficType::Mcp => Color::Cyan,
        TrafficType::Web => Color::Blue,
        TrafficType::Other => Color::Gray,
    }
}

/// Status text and colour: pending, error, or the code coloured by class.
pub fn status_cell(flow: &Flow) -> (String, Style) {
    if flow.error_type.is_some() {
        let text = flow
            .status_code
            .map_or_else(|| "ERR".to_string(), |c| c.to_string());
        return (
            text,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        );
    }
    match flow.status_code {
        None => ("…".to_string(), Style::new().fg(Color::Yellow)),
        Some(c) => {
            let color = match c {
                200..=299 => Color::Green,
                300..=399 => Color::Cyan,
                400..=499 => Color::Yellow,
                _ => Color::Red,
            };
            let pending = if flow.is_complete() { "" } else { "…" };
            (format!("{c}{pending}"), Style::new().fg(color))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_column_is_registered_once() {
        for id in DEFAULT {
            assert_eq!(COLUMNS.iter().filter(|c| c.id == *id).count(), 1, "{id:?}");
        }
        assert!(column(ColumnId::Path).is_some_and(|c| c.header == "path"));
    }
}
