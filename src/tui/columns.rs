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
    /// The model the LLM exchange asked for (else the one it answered with).
    Model,
    /// Tokens: fresh input (with cache writes) + cache reads ↺ / output.
    Tokens,
    /// Cost in USD from the price table.
    Cost,
    /// Time to the first content delta.
    Ttft,
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
    Column {
        id: ColumnId::Model,
        header: "model",
        width: Constraint::Length(18),
        cell: |e| {
            let model = e
                .llm
                .as_ref()
                .and_then(|a| a.model.as_deref().or(a.response_model.as_deref()))
                .unwrap_or("");
            (clean(model), Style::new().fg(Color::Magenta))
        },
    },
    Column {
        id: ColumnId::Tokens,
        header: "tokens",
        width: Constraint::Length(14),
        cell: |e| {
            plain(
                e.llm
                    .as_ref()
                    .map_or_else(String::new, |a| tokens_label(&a.usage)),
            )
        },
    },
    Column {
        id: ColumnId::Cost,
        header: "cost",
        width: Constraint::Length(8),
        cell: |e| {
            plain(match e.llm.as_ref() {
                Some(a) => a.cost_usd.map_or_else(
                    || {
                        if a.usage.is_empty() {
                            String::new()
                        } else {
                            "?".to_string()
                        }
                    },
                    usd,
                ),
                None => String::new(),
            })
        },
    },
    Column {
        id: ColumnId::Ttft,
        header: "TTFT",
        width: Constraint::Length(8),
        cell: |e| {
            plain(
                e.llm
                    .as_ref()
                    .and_then(|a| a.ttft_ms)
                    .map_or_else(String::new, human_ms),
            )
        },
    },
];

/// The LLM columns, in the order they join the table (after `status`:
/// model; before `duration`: tokens, cost, TTFT).
pub const LLM: &[ColumnId] = &[
    ColumnId::Model,
    ColumnId::Tokens,
    ColumnId::Cost,
    ColumnId::Ttft,
];

/// Terminal width from which the LLM columns show without being asked (`t`).
pub const LLM_MIN_WIDTH: u16 = 150;

/// The columns to draw: `base` with the LLM columns added when `llm` is set.
pub fn with_llm(base: &[ColumnId], llm: bool) -> Vec<ColumnId> {
    if !llm {
        return base.to_vec();
    }
    let mut out = Vec::with_capacity(base.len() + LLM.len());
    for id in base {
        if *id == ColumnId::Duration {
            out.extend_from_slice(&LLM[1..]);
        }
        out.push(*id);
        if *id == ColumnId::Status {
            out.push(ColumnId::Model);
        }
    }
    for id in LLM {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

/// A token count in 4 characters or so: `950`, `1.2k`, `88k`, `3.4M`.
pub fn count(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    match n {
        0..=999 => n.to_string(),
        1_000..=9_999 => format!("{:.1}k", v / 1e3),
        10_000..=999_999 => format!("{:.0}k", v / 1e3),
        _ => format!("{:.1}M", v / 1e6),
    }
}

/// `in+cached↺/out`: fresh input and cache writes, then the cache reads
/// (left out when none), then the output, e.g. `12+88k↺/1.2k`.
pub fn tokens_label(u: &crate::llm::Usage) -> String {
    if u.is_empty() {
        return String::new();
    }
    let fresh = u.input.unwrap_or(0) + u.cache_creation.unwrap_or(0);
    let out = count(u.output.unwrap_or(0));
    match u.cache_read {
        Some(r) if r > 0 => format!("{}+{}↺/{out}", count(fresh), count(r)),
        _ => format!("{}/{out}", count(fresh)),
    }
}

/// A cost in USD: four decimals under a cent, else two.
pub fn usd(c: f64) -> String {
    if c < 0.01 {
        format!("${c:.4}")
    } else {
        format!("${c:.2}")
    }
}

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
        for id in LLM {
            assert_eq!(COLUMNS.iter().filter(|c| c.id == *id).count(), 1, "{id:?}");
        }
    }

    #[test]
    fn llm_columns_join_around_status_and_duration() {
        let cols = with_llm(DEFAULT, true);
        let at = |id| cols.iter().position(|c| *c == id).unwrap_or(usize::MAX);
        assert_eq!(at(ColumnId::Model), at(ColumnId::Status) + 1);
        assert_eq!(at(ColumnId::Ttft) + 1, at(ColumnId::Duration));
        assert_eq!(cols.len(), DEFAULT.len() + LLM.len());
        assert_eq!(with_llm(DEFAULT, false), DEFAULT.to_vec());
    }

    #[test]
    fn token_labels_show_the_cached_part() {
        let u = crate::llm::Usage {
            input: Some(12),
            output: Some(1200),
            cache_read: Some(88_000),
            ..Default::default()
        };
        assert_eq!(tokens_label(&u), "12+88k↺/1.2k");
        let plain = crate::llm::Usage {
            input: Some(950),
            output: Some(42),
            ..Default::default()
        };
        assert_eq!(tokens_label(&plain), "950/42");
        assert_eq!(tokens_label(&crate::llm::Usage::default()), "");
        assert_eq!(count(3_400_000), "3.4M");
        assert_eq!(usd(0.0042), "$0.0042");
        assert_eq!(usd(1.234), "$1.23");
    }
}
