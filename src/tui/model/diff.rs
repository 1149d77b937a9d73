//! The side-by-side diff of two request bodies: both pretty-printed one JSON
//! value per line (long strings split at their newlines, each element of
//! `messages` marked with its index), diffed line by line with `similar`, and
//! laid out as rows pairing a left line with a right line. Pure: built once
//! when the view opens; each frame draws only the rows on screen.

use std::time::{Duration, Instant};

use serde_json::Value;
use similar::{Algorithm, DiffTag};

/// Rows of unchanged context kept above a change when jumping to it.
pub const CONTEXT: usize = 3;
/// Most lines shown per side (a body beyond it is cut, and said so).
pub const MAX_LINES: usize = 200_000;
/// Longest the line diff may run before it settles for a coarser answer.
const DEADLINE: Duration = Duration::from_millis(500);

/// One side of the diff: what it is and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Which request this is (turn, time, trace id).
    pub title: String,
    /// The pretty-printed body, one line each.
    pub lines: Vec<String>,
}

impl Side {
    /// A side from a request body (see [`pretty_lines`]).
    pub fn of(title: impl Into<String>, body: &[u8]) -> Self {
        Self {
            title: title.into(),
            lines: pretty_lines(body),
        }
    }
}

/// How the two lines of a row relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// The same line on both sides.
    Same,
    /// A line replaced by another.
    Changed,
    /// Only on the left (the earlier request).
    Removed,
    /// Only on the right (the later request).
    Added,
}

/// One row: a line of each side, or of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Line index on the left.
    pub left: Option<usize>,
    /// Line index on the right.
    pub right: Option<usize>,
    /// How they relate.
    pub kind: RowKind,
}

/// The diff view's document and position.
#[derive(Debug, Clone)]
pub struct DiffDoc {
    /// The earlier request.
    pub left: Side,
    /// The later request.
    pub right: Side,
    /// What the diff is about (the cache verdict, where it diverged).
    pub note: Option<String>,
    /// Every row, top to bottom.
    pub rows: Vec<Row>,
    /// The first row of each run of changes.
    pub hunks: Vec<usize>,
    /// The current run of changes (index into `hunks`).
    pub hunk: usize,
    /// First row shown.
    pub scroll: usize,
    /// First column shown of each side's text.
    pub hscroll: usize,
    placed: bool,
}

impl DiffDoc {
    /// Diff `left` (earlier) against `right` (later).
    pub fn build(left: Side, right: Side, note: Option<String>) -> Self {
        let before: Vec<&str> = left.lines.iter().map(String::as_str).collect();
        let after: Vec<&str> = right.lines.iter().map(String::as_str).collect();
        let ops = similar::capture_diff_slices_deadline(
            Algorithm::Patience,
            &before,
            &after,
            Some(Instant::now() + DEADLINE),
        );
        let mut rows = Vec::with_capacity(before.len().max(after.len()));
        for op in ops {
            let (tag, old, new) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal => rows.extend(old.zip(new).map(|(l, r)| Row {
                    left: Some(l),
                    right: Some(r),
                    kind: RowKind::Same,
                })),
                DiffTag::Delete => rows.extend(old.map(|l| Row {
                    left: Some(l),
                    right: None,
                    kind: RowKind::Removed,
                })),
                DiffTag::Insert => rows.extend(new.map(|r| Row {
                    left: None,
                    right: Some(r),
                    kind: RowKind::Added,
                })),
                DiffTag::Replace => {
                    let span = old.len().max(new.len());
                    rows.extend((0..span).map(|k| {
                        let left = (k < old.len()).then(|| old.start + k);
                        let right = (k < new.len()).then(|| new.start + k);
                        let kind = match (left, right) {
                            (Some(_), Some(_)) => RowKind::Changed,
                            (Some(_), None) => RowKind::Removed,
                            _ => RowKind::Added,
                        };
                        Row { left, right, kind }
                    }));
                }
            }
        }
        let hunks = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.kind != RowKind::Same && (*i == 0 || rows[*i - 1].kind == RowKind::Same)
            })
            .map(|(i, _)| i)
            .collect();
        Self {
            left,
            right,
            note,
            rows,
            hunks,
            hunk: 0,
            scroll: 0,
            hscroll: 0,
            placed: false,
        }
    }

    /// The text of a row's left and right lines.
    pub fn texts(&self, row: &Row) -> (Option<&str>, Option<&str>) {
        fn get(s: &Side, i: Option<usize>) -> Option<&str> {
            i.and_then(|i| s.lines.get(i)).map(String::as_str)
        }
        (get(&self.left, row.left), get(&self.right, row.right))
    }

    /// Rows that differ.
    pub fn changed_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.kind != RowKind::Same).count()
    }

    /// Before a frame of `height` rows and `width` columns per side: on the
    /// first one, go to the first change (and far enough right to see where
    /// its lines part); always keep the scroll in range.
    pub fn prepare(&mut self, height: usize, width: usize) {
        if !self.placed {
            self.placed = true;
            if !self.hunks.is_empty() {
                self.go_to_hunk(0, height);
                let at = self.hunks[0];
                let first = self.rows.get(at).copied();
                if let Some(col) = first.and_then(|r| self.parting_column(&r)) {
                    if col + 8 > width {
                        self.hscroll = col.saturating_sub(width / 3);
                    }
                }
            }
        }
        self.scroll = self.scroll.min(self.max_scroll(height));
    }

    /// Where a changed row's two lines first differ (in characters).
    pub fn parting_column(&self, row: &Row) -> Option<usize> {
        match self.texts(row) {
            (Some(a), Some(b)) => {
                Some(a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count())
            }
            _ => None,
        }
    }

    fn max_scroll(&self, height: usize) -> usize {
        self.rows.len().saturating_sub(height.max(1))
    }

    /// Scroll by `delta` rows in a view `height` rows high.
    pub fn scroll_by(&mut self, delta: isize, height: usize) {
        self.scroll = self
            .scroll
            .saturating_add_signed(delta)
            .min(self.max_scroll(height));
    }

    /// Scroll sideways by `delta` columns.
    pub fn hscroll_by(&mut self, delta: isize) {
        self.hscroll = self.hscroll.saturating_add_signed(delta);
    }

    /// `n` / `N`: the next or previous run of changes, wrapping; false when there is none.
    pub fn cycle_hunk(&mut self, forward: bool, height: usize) -> bool {
        let n = self.hunks.len();
        if n == 0 {
            return false;
        }
        let next = if forward {
            (self.hunk + 1) % n
        } else {
            (self.hunk + n - 1) % n
        };
        self.go_to_hunk(next, height);
        true
    }

    fn go_to_hunk(&mut self, i: usize, height: usize) {
        self.hunk = i;
        if let Some(&row) = self.hunks.get(i) {
            self.scroll = row.saturating_sub(CONTEXT).min(self.max_scroll(height));
        }
    }
}

/// A body as lines to diff: JSON pretty-printed, anything else as its text
/// lines. The top-level keys come in the order the prompt cache reads them
/// (`tools`, `system`, `messages`, then the rest), so the first change shown
/// is where the cached prefix broke; long strings are split at their `\n`,
/// each element of the message list is marked `// messages[i] role`, and
/// there are no commas (growing a list changes no line above it).
pub fn pretty_lines(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => {
            let rank = |k: &str| {
                PROMPT_ORDER
                    .iter()
                    .position(|p| *p == k)
                    .unwrap_or(PROMPT_ORDER.len())
            };
            let mut keys: Vec<(&String, &Value)> = o.iter().collect();
            keys.sort_by_key(|(k, _)| rank(k));
            out.push("{".to_string());
            for (k, x) in keys {
                let listed = matches!(k.as_str(), "messages" | "input" | "contents");
                emit(
                    x,
                    1,
                    &format!("\"{}\": ", escaped(k)),
                    &mut out,
                    listed.then_some(k),
                );
            }
            out.push("}".to_string());
        }
        Ok(v) => emit(&v, 0, "", &mut out, None),
        Err(_) => out.extend(String::from_utf8_lossy(body).lines().map(str::to_string)),
    }
    if out.len() > MAX_LINES {
        out.truncate(MAX_LINES);
        out.push(format!("… cut at {MAX_LINES} lines"));
    }
    out
}

/// The prompt's parts in the order the cache reads them (every API's spelling).
const PROMPT_ORDER: &[&str] = &[
    "tools",
    "functions",
    "system",
    "instructions",
    "systemInstruction",
    "messages",
    "input",
    "contents",
];

fn pad(depth: usize) -> String {
    "  ".repeat(depth)
}

/// A JSON string's escaped text without its quotes.
fn escaped(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    q.get(1..q.len().saturating_sub(1))
        .unwrap_or("")
        .to_string()
}

/// Write `v` at `depth`, its first line after `key` (`"name": ` or empty).
/// Elements of a message list (`marks` is its key) get a
/// `// messages[i] role` line each.
fn emit(v: &Value, depth: usize, key: &str, out: &mut Vec<String>, marks: Option<&String>) {
    let ind = pad(depth);
    match v {
        Value::Object(o) if !o.is_empty() => {
            out.push(format!("{ind}{key}{{"));
            for (k, x) in o {
                emit(x, depth + 1, &format!("\"{}\": ", escaped(k)), out, None);
            }
            out.push(format!("{ind}}}"));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push(format!("{ind}{key}["));
            for (i, x) in a.iter().enumerate() {
                if let Some(name) = marks {
                    let role = x.get("role").and_then(Value::as_str).unwrap_or("");
                    out.push(format!("{}// {name}[{i}] {role}", pad(depth + 1)));
                }
                emit(x, depth + 1, "", out, None);
            }
            out.push(format!("{ind}]"));
        }
        Value::String(s) if s.contains('\n') => {
            let parts: Vec<&str> = s.split('\n').collect();
            let last = parts.len() - 1;
            let cont = pad(depth + 1);
            for (i, part) in parts.iter().enumerate() {
                let text = escaped(part);
                out.push(match (i == 0, i == last) {
                    (true, _) => format!("{ind}{key}\"{text}\\n"),
                    (false, false) => format!("{cont}{text}\\n"),
                    (false, true) => format!("{cont}{text}\""),
                });
            }
        }
        other => out.push(format!("{ind}{key}{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(system: &str, messages: &[&str]) -> Vec<u8> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|t| serde_json::json!({"role": "user", "content": t}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": msgs,
        }))
        .unwrap_or_default()
    }

    #[test]
    fn pretty_lines_split_strings_and_mark_messages() {
        let lines = pretty_lines(&body("You are Claude Code.\nToday is Monday.", &["hi"]));
        let text = lines.join("\n");
        assert!(text.contains("// messages[0] user"), "{text}");
        assert!(
            text.contains("\"text\": \"You are Claude Code.\\n\n"),
            "{text}"
        );
        assert!(text.contains("Today is Monday.\""), "{text}");
        // Not JSON: the text lines as they are.
        assert_eq!(pretty_lines(b"a\nb"), ["a", "b"]);
        // Escapes stay escaped: no raw control character reaches a line.
        let evil = pretty_lines(br#"{"x":"\u001b[2J"}"#);
        assert!(evil.iter().all(|l| !l.contains('\u{1b}')), "{evil:?}");
    }

    #[test]
    fn rows_pair_changes_and_the_view_opens_at_the_first() {
        let prev = Side::of(
            "prev",
            &body("You are Claude Code.\nToday is Monday.", &["one"]),
        );
        let this = Side::of(
            "this",
            &body("You are Claude Code.\nToday is Tuesday.", &["one", "two"]),
        );
        let mut d = DiffDoc::build(prev, this, None);
        let changed: Vec<RowKind> = d
            .rows
            .iter()
            .map(|r| r.kind)
            .filter(|k| *k != RowKind::Same)
            .collect();
        assert!(changed.contains(&RowKind::Changed), "{changed:?}");
        assert!(changed.contains(&RowKind::Added), "{changed:?}");
        assert!(!changed.contains(&RowKind::Removed), "{changed:?}");
        assert!(d.hunks.len() >= 2, "{:?}", d.hunks);
        let first = d.rows[d.hunks[0]];
        let (old, new) = d.texts(&first);
        assert!(old.is_some_and(|l| l.contains("Monday")), "{old:?}");
        assert!(new.is_some_and(|r| r.contains("Tuesday")), "{new:?}");
        assert_eq!(
            d.parting_column(&first),
            Some(old.map_or(0, |l| l.find("Mon").unwrap_or(0)))
        );
        d.prepare(5, 200);
        assert_eq!(d.scroll, d.hunks[0].saturating_sub(CONTEXT));
        assert_eq!(d.hscroll, 0, "wide enough: no sideways scroll");
        assert!(d.cycle_hunk(true, 5));
        assert_eq!(d.hunk, 1);
        assert!(d.cycle_hunk(true, 5));
        assert_eq!(d.hunk, 0, "wraps");
    }

    #[test]
    fn a_narrow_view_scrolls_right_to_the_parting() {
        let long = "x".repeat(150);
        let a = Side::of("a", format!("{long}A").as_bytes());
        let b = Side::of("b", format!("{long}B").as_bytes());
        let mut d = DiffDoc::build(a, b, None);
        d.prepare(10, 60);
        assert!(d.hscroll > 0 && d.hscroll <= 150, "{}", d.hscroll);
    }

    #[test]
    fn identical_bodies_have_no_hunk() {
        let a = Side::of("a", &body("S", &["x"]));
        let b = a.clone();
        let mut d = DiffDoc::build(a, b, None);
        assert!(d.hunks.is_empty());
        assert_eq!(d.changed_rows(), 0);
        assert!(!d.cycle_hunk(true, 10));
        d.prepare(3, 80);
        d.scroll_by(1000, 3);
        assert_eq!(d.scroll, d.rows.len() - 3);
    }
}
