//! Body documents: one body seen as pretty JSON, SSE (events + reassembled
//! message), plain text or hex, addressed by line so that only the visible
//! window is ever formatted.
//!
//! Building a document is one linear pass (re-indent, find line starts); each
//! frame then formats only the lines on screen, sanitised on the way. A body
//! of tens of megabytes is built once and scrolls at the cost of a screenful.

use std::fmt::Write as _;

use bytes::Bytes;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::capture::sanitize::sanitize;
use crate::llm::stream::{BlockKind, Stream};

/// How a body is shown; `m` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyMode {
    /// Re-indented JSON with colour.
    Json,
    /// Server-sent events and the reassembled LLM message.
    Sse,
    /// UTF-8 (lossy) text.
    Text,
    /// Offset, hex bytes and ASCII.
    Hex,
}

impl BodyMode {
    /// The next mode for `m`.
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            Self::Json => Self::Sse,
            Self::Sse => Self::Text,
            Self::Text => Self::Hex,
            Self::Hex => Self::Json,
        }
    }

    /// Label for the tab bar.
    pub fn label(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Sse => "sse",
            Self::Text => "text",
            Self::Hex => "hex",
        }
    }

    /// The natural mode for a body with this content type.
    pub fn detect(content_type: Option<&str>, body: &[u8]) -> Self {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("event-stream") {
            return Self::Sse;
        }
        if ct.contains("json") {
            return Self::Json;
        }
        let head = &body[..body.len().min(4096)];
        let first = head.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{' | b'[')) && ct.is_empty() {
            return Self::Json;
        }
        if head.starts_with(b"event:") || head.starts_with(b"data:") {
            return Self::Sse;
        }
        let valid = match std::str::from_utf8(head) {
            Ok(_) => true,
            // A multi-byte character cut by the 4 KiB window is still text.
            Err(e) => e.error_len().is_none(),
        };
        if ct.starts_with("text/") || (valid && !head.contains(&0)) {
            Self::Text
        } else {
            Self::Hex
        }
    }
}

/// The style class of a prepared line (SSE view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Title,
    Label,
    Thinking,
    Text,
    Tool,
    Dim,
    Event,
}

impl Tone {
    fn style(self) -> Style {
        match self {
            Self::Title => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Self::Label => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Self::Thinking => Style::new().fg(Color::Gray).add_modifier(Modifier::ITALIC),
            Self::Text => Style::new(),
            Self::Tool => Style::new().fg(Color::Magenta),
            Self::Dim => Style::new().fg(Color::DarkGray),
            Self::Event => Style::new().fg(Color::Green),
        }
    }
}

#[derive(Debug, Clone)]
enum Content {
    /// Text (JSON re-indented or plain) with the byte offset of each line.
    Lines { text: String, starts: Vec<usize> },
    /// Raw bytes shown 16 per line.
    Hex { bytes: Bytes },
    /// SSE: prepared message lines, then one line per event.
    Sse {
        stream: Box<Stream>,
        head: Vec<(Tone, String)>,
        width: usize,
    },
}

/// One body, prepared for display in one mode.
#[derive(Debug, Clone)]
pub struct BodyDoc {
    /// The mode this document shows.
    pub mode: BodyMode,
    /// Bytes of the body this document was built from.
    pub source_len: usize,
    content: Content,
}

/// Bytes per hex line.
const HEX_WIDTH: usize = 16;
/// Deepest indentation drawn for JSON; deeper nesting stays at this level.
const MAX_INDENT: usize = 40;

impl BodyDoc {
    /// Build the document for `body` in `mode`. `width` is used to wrap the
    /// reassembled message in the SSE view.
    pub fn build(body: &Bytes, mode: BodyMode, width: usize) -> Self {
        let content = match mode {
            BodyMode::Json => lines(reindent_json(body)),
            BodyMode::Text => lines(String::from_utf8_lossy(body).into_owned()),
            BodyMode::Hex => Content::Hex {
                bytes: body.clone(),
            },
            BodyMode::Sse => {
                let mut stream = Box::<Stream>::default();
                stream.feed(body);
                let head = message_lines(&stream, width);
                Content::Sse {
                    stream,
                    head,
                    width,
                }
            }
        };
        Self {
            mode,
            source_len: body.len(),
            content,
        }
    }

    /// Bring the document up to date with a body that grew (a live stream).
    /// Only the SSE view is incremental; the others rebuild.
    pub fn update(&mut self, body: &Bytes, width: usize) {
        if body.len() == self.source_len && !self.needs_rewrap(width) {
            return;
        }
        match &mut self.content {
            Content::Sse {
                stream,
                head,
                width: w,
            } if body.len() >= stream.parser.consumed => {
                let consumed = stream.parser.consumed;
                stream.feed(&body[consumed..]);
                *head = message_lines(stream, width);
                *w = width;
                self.source_len = body.len();
            }
            _ => *self = Self::build(body, self.mode, width),
        }
    }

    fn needs_rewrap(&self, width: usize) -> bool {
        matches!(&self.content, Content::Sse { width: w, .. } if *w != width)
    }

    /// Number of lines in the document.
    pub fn line_count(&self) -> usize {
        match &self.content {
            Content::Lines { starts, .. } => starts.len(),
            Content::Hex { bytes } => bytes.len().div_ceil(HEX_WIDTH).max(1),
            Content::Sse { stream, head, .. } => {
                head.len()
                    + stream.parser.events.len()
                    + usize::from(stream.parser.pending().is_some())
            }
        }
    }

    /// Line `i`, sanitised, styled, cut to `width` columns.
    pub fn line(&self, i: usize, width: usize) -> Line<'static> {
        match &self.content {
            Content::Lines { text, starts } => {
                let raw = line_slice(text, starts, i);
                let shown = clip(raw, width);
                let clean = sanitize(shown).into_owned();
                if self.mode == BodyMode::Json {
                    json_line(&clean)
                } else {
                    Line::raw(clean)
                }
            }
            Content::Hex { bytes } => hex_line(bytes, i),
            Content::Sse { stream, head, .. } => {
                if let Some((tone, text)) = head.get(i) {
                    return Line::styled(sanitize(clip(text, width)).into_owned(), tone.style());
                }
                let n = i - head.len();
                let pending;
                let ev = match stream.parser.events.get(n) {
                    Some(ev) => ev,
                    None => match stream.parser.pending() {
                        Some(p) => {
                            pending = p;
                            &pending
                        }
                        None => return Line::default(),
                    },
                };
                let name = ev.event.as_deref().unwrap_or("message");
                let label = format!("{:>4} {:<22} ", n + 1, clip(name, 22));
                let data = clip(&ev.data, width.saturating_sub(label.chars().count()));
                Line::from(vec![
                    Span::styled(sanitize(&label).into_owned(), Tone::Event.style()),
                    Span::raw(sanitize(data).into_owned()),
                ])
            }
        }
    }

    /// The lines containing `query` (case-insensitive), in order.
    pub fn search(&self, query: &str) -> Vec<usize> {
        if query.is_empty() {
            return Vec::new();
        }
        let mut hits = Vec::new();
        match &self.content {
            Content::Lines { text, starts } => {
                let Ok(re) = regex::RegexBuilder::new(&regex::escape(query))
                    .case_insensitive(true)
                    .build()
                else {
                    return hits;
                };
                for m in re.find_iter(text) {
                    let line = starts
                        .partition_point(|&s| s <= m.start())
                        .saturating_sub(1);
                    if hits.last() != Some(&line) {
                        hits.push(line);
                    }
                }
            }
            Content::Hex { bytes } => {
                let Ok(re) = regex::bytes::RegexBuilder::new(&regex::escape(query))
                    .case_insensitive(true)
                    .unicode(false)
                    .build()
                else {
                    return hits;
                };
                for m in re.find_iter(bytes) {
                    let line = m.start() / HEX_WIDTH;
                    if hits.last() != Some(&line) {
                        hits.push(line);
                    }
                }
            }
            Content::Sse { stream, head, .. } => {
                let q = query.to_lowercase();
                for (i, (_, text)) in head.iter().enumerate() {
                    if text.to_lowercase().contains(&q) {
                        hits.push(i);
                    }
                }
                for (i, ev) in stream.parser.events.iter().enumerate() {
                    let name = ev.event.as_deref().unwrap_or("");
                    if ev.data.to_lowercase().contains(&q) || name.to_lowercase().contains(&q) {
                        hits.push(head.len() + i);
                    }
                }
            }
        }
        hits
    }
}

fn lines(text: String) -> Content {
    let mut starts = vec![0];
    starts.extend(
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1),
    );
    if starts.len() > 1 && starts.last() == Some(&text.len()) {
        starts.pop();
    }
    Content::Lines { text, starts }
}

fn line_slice<'a>(text: &'a str, starts: &[usize], i: usize) -> &'a str {
    let Some(&start) = starts.get(i) else {
        return "";
    };
    let end = starts.get(i + 1).map_or(text.len(), |e| e - 1);
    let line = text.get(start..end.max(start)).unwrap_or("");
    line.strip_suffix('\n').unwrap_or(line)
}

/// At most `width` characters of `s` (never more work than that).
fn clip(s: &str, width: usize) -> &str {
    match s.char_indices().nth(width) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Re-indent JSON without parsing it into a tree: one pass over the bytes,
/// tolerant of invalid input, keeps key order and number spelling.
pub fn reindent_json(src: &[u8]) -> String {
    let mut out = Vec::with_capacity(src.len() + src.len() / 4);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', 2 * depth.min(MAX_INDENT)));
    };
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        i += 1;
        if in_str {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_str = true;
                out.push(b);
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                let mut j = i;
                while j < src.len() && src[j].is_ascii_whitespace() {
                    j += 1;
                }
                if src.get(j) == Some(&close) {
                    out.push(b);
                    out.push(close);
                    i = j + 1;
                } else {
                    out.push(b);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => out.push(b),
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Colour one line of re-indented JSON: keys, strings, numbers, literals.
fn json_line(line: &str) -> Line<'static> {
    let key = Style::new().fg(Color::Cyan);
    let string = Style::new().fg(Color::Green);
    let number = Style::new().fg(Color::Yellow);
    let literal = Style::new().fg(Color::Magenta);
    let punct = Style::new().fg(Color::DarkGray);
    let mut spans = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut plain_start = 0;
    let flush = |spans: &mut Vec<Span<'static>>, from: usize, to: usize| {
        if to > from {
            spans.push(Span::raw(line[from..to].to_string()));
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            flush(&mut spans, plain_start, i);
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
            let is_key = line[i..].starts_with(':');
            let text = line.get(start..i).unwrap_or("").to_string();
            spans.push(Span::styled(text, if is_key { key } else { string }));
            plain_start = i;
        } else if b == b'-' || b.is_ascii_digit() {
            flush(&mut spans, plain_start, i);
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            spans.push(Span::styled(line[start..i].to_string(), number));
            plain_start = i;
        } else if let Some(word) = ["true", "false", "null"]
            .into_iter()
            .find(|w| line[i..].starts_with(w))
        {
            flush(&mut spans, plain_start, i);
            spans.push(Span::styled(word, literal));
            i += word.len();
            plain_start = i;
        } else if matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':') {
            flush(&mut spans, plain_start, i);
            spans.push(Span::styled(line[i..=i].to_string(), punct));
            i += 1;
            plain_start = i;
        } else {
            i += 1;
            while i < bytes.len() && !line.is_char_boundary(i) {
                i += 1;
            }
        }
    }
    flush(&mut spans, plain_start, bytes.len().min(line.len()));
    Line::from(spans)
}

fn hex_line(bytes: &[u8], i: usize) -> Line<'static> {
    let start = i * HEX_WIDTH;
    let chunk = bytes
        .get(start..(start + HEX_WIDTH).min(bytes.len()))
        .unwrap_or(&[]);
    let mut hex = String::with_capacity(HEX_WIDTH * 3 + 1);
    for (k, b) in chunk.iter().enumerate() {
        if k == 8 {
            hex.push(' ');
        }
        let _ = write!(hex, "{b:02x} ");
    }
    let ascii: String = chunk
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    Line::from(vec![
        Span::styled(format!("{start:08x}  "), Style::new().fg(Color::DarkGray)),
        Span::raw(format!("{hex:<49} ")),
        Span::styled(format!("|{ascii}|"), Style::new().fg(Color::Cyan)),
    ])
}

/// The reassembled message as prepared lines, wrapped at `width`.
fn message_lines(stream: &Stream, width: usize) -> Vec<(Tone, String)> {
    let m = &stream.message;
    let mut out = Vec::new();
    let events = stream.parser.events.len();
    let Some(api) = m.api else {
        out.push((Tone::Title, format!("── {events} events ──")));
        return out;
    };
    let state = if m.done { "complete" } else { "streaming…" };
    out.push((
        Tone::Title,
        format!(
            "── {} · {} · {state} ──",
            api.label(),
            m.model.as_deref().unwrap_or("model ?")
        ),
    ));
    let wrap_width = width.saturating_sub(2).max(20);
    for b in &m.blocks {
        let (tone, label, body) = match &b.kind {
            BlockKind::Thinking => (Tone::Thinking, "[thinking]".to_string(), b.text.clone()),
            BlockKind::Text => (Tone::Text, "[text]".to_string(), b.text.clone()),
            BlockKind::ToolCall { name, id } => (
                Tone::Tool,
                format!("[tool call] {name} {id}").trim_end().to_string(),
                serde_json::from_str::<serde_json::Value>(&b.text)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| b.text.clone()),
            ),
        };
        out.push((Tone::Label, label));
        for raw in body.split('\n') {
            for piece in wrap(raw, wrap_width) {
                out.push((tone, format!("  {piece}")));
            }
        }
    }
    let mut tail = Vec::new();
    if let Some(s) = &m.stop {
        tail.push(format!("stop: {s}"));
    }
    if let Some(u) = m.usage_label() {
        tail.push(format!("usage: {u}"));
    }
    if !tail.is_empty() {
        out.push((Tone::Dim, tail.join(" · ")));
    }
    if let Some(e) = &m.error {
        out.push((Tone::Label, format!("error: {e}")));
    }
    out.push((Tone::Title, format!("── {events} events ──")));
    out
}

fn wrap(s: &str, width: usize) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let cut = match rest.char_indices().nth(width) {
            None => rest.len(),
            Some((hard, _)) => rest[..hard]
                .rfind(' ')
                .filter(|&sp| sp > 0)
                .map_or(hard, |sp| sp + 1),
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reindent_keeps_strings_and_empties() {
        let src = br#"{"a":[1,2,{}],"b":"x, {y}: \"z\"","c":[ ],"d":null}"#;
        let out = reindent_json(src);
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    2,\n    {}\n  ],\n  \"b\": \"x, {y}: \\\"z\\\"\",\n  \"c\": [],\n  \"d\": null\n}"
        );
        // Invalid input never panics and keeps its bytes.
        assert!(reindent_json(b"}}]]{\"\xff").contains('\u{fffd}'));
    }

    #[test]
    fn detect_modes() {
        assert_eq!(
            BodyMode::detect(Some("text/event-stream"), b""),
            BodyMode::Sse
        );
        assert_eq!(
            BodyMode::detect(Some("application/json; charset=utf-8"), b"{}"),
            BodyMode::Json
        );
        assert_eq!(BodyMode::detect(None, b" [1]"), BodyMode::Json);
        assert_eq!(BodyMode::detect(Some("text/html"), b"<p>"), BodyMode::Text);
        assert_eq!(BodyMode::detect(None, b"\x89PNG\x00\x01"), BodyMode::Hex);
        assert_eq!(BodyMode::detect(None, b"hello"), BodyMode::Text);
    }

    #[test]
    fn lines_and_search() {
        let body = Bytes::from_static(b"one\ntwo Two\n\nthree\n");
        let doc = BodyDoc::build(&body, BodyMode::Text, 80);
        assert_eq!(doc.line_count(), 4);
        assert_eq!(doc.line(1, 80).to_string(), "two Two");
        assert_eq!(doc.line(1, 3).to_string(), "two");
        assert_eq!(doc.line(9, 80).to_string(), "");
        assert_eq!(doc.search("TWO"), vec![1]);
        assert_eq!(doc.search("e"), vec![0, 3]);
        let hex = BodyDoc::build(&body, BodyMode::Hex, 80);
        assert_eq!(hex.line_count(), 2);
        assert!(hex
            .line(0, 80)
            .to_string()
            .starts_with("00000000  6f 6e 65 0a"));
        assert_eq!(hex.search("three"), vec![0]);
    }

    #[test]
    fn escapes_are_neutralised_in_every_mode() {
        let body = Bytes::from_static(b"{\"a\":\"\x1b[31mred\x1b]52;c;eA==\x07\"}\n\x1b[2J");
        for mode in [BodyMode::Json, BodyMode::Text, BodyMode::Hex, BodyMode::Sse] {
            let doc = BodyDoc::build(&body, mode, 80);
            for i in 0..doc.line_count() {
                let line = doc.line(i, 200).to_string();
                assert!(!line.chars().any(char::is_control), "{mode:?}: {line:?}");
            }
        }
    }

    #[test]
    fn sse_updates_incrementally() {
        let full = Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
        );
        let mut doc = BodyDoc::build(&full.slice(..40), BodyMode::Sse, 80);
        doc.update(&full, 80);
        let text: Vec<String> = (0..doc.line_count())
            .map(|i| doc.line(i, 80).to_string())
            .collect();
        assert!(text.iter().any(|l| l == "  hi"), "{text:?}");
        assert!(text[0].contains("streaming"), "{text:?}");
    }

    #[test]
    fn wrap_prefers_spaces() {
        assert_eq!(wrap("aaa bbb ccc", 5), vec!["aaa ", "bbb ", "ccc"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
    }
}
