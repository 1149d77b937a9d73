//! Server-sent events: an incremental parser fed slice by slice, in any
//! slicing and with any line ending (`\n`, `\r\n`, `\r`). Each event records
//! the byte offsets where it began and where it was dispatched, so the
//! analysis can tell when it arrived.

/// One dispatched event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// Offset of the event's first line in the stream.
    pub start: u64,
    /// Offset just past the blank line that dispatched it.
    pub end: u64,
}

/// Incremental SSE parser: feed bytes, read complete events.
#[derive(Debug, Default, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Offset where the event being received began.
    start: Option<u64>,
    /// Events dispatched so far (only by [`SseParser::feed`]).
    pub events: Vec<SseEvent>,
    /// Bytes fed so far.
    pub consumed: usize,
}

impl SseParser {
    /// Feed the next slice and keep the events it completes; returns how many.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut done = Vec::new();
        self.feed_with(bytes, |ev| done.push(ev));
        let n = done.len();
        self.events.append(&mut done);
        n
    }

    /// Feed the next slice and hand each completed event to `on_event`
    /// without keeping it (the analysis path: nothing accumulates).
    #[allow(clippy::single_match_else)]
    pub fn feed_with(&mut self, bytes: &[u8], mut on_event: impl FnMut(SseEvent)) {
        let base = self.consumed as u64;
        self.consumed += bytes.len();
        let mut rest = bytes;
        let mut pos = 0usize;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    pos += 1;
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', rest) {
                Some(i) => {
                    if self.start.is_none() && (i > 0 || !self.line.is_empty()) {
                        self.start = Some(base + pos as u64 - self.line.len() as u64);
                    }
                    self.line.extend_from_slice(&rest[..i]);
                    self.after_cr = rest[i] == b'\r';
                    let end = base + (pos + i + 1) as u64;
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line, end) {
                        on_event(ev);
                    }
                    self.line = line;
                    self.line.clear();
                    rest = &rest[i + 1..];
                    pos += i + 1;
                }
                None => {
                    if self.start.is_none() && self.line.is_empty() {
                        self.start = Some(base + pos as u64);
                    }
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }

    /// The event still being received (no blank line yet), if it has data.
    pub fn pending(&self) -> Option<SseEvent> {
        let mut data = self.data.clone();
        if let Some(("data", value)) = split_field(&self.line) {
            let d = data.get_or_insert_with(String::new);
            if !d.is_empty() {
                d.push('\n');
            }
            d.push_str(&value);
        }
        data.map(|data| SseEvent {
            event: self.event.clone(),
            data,
            start: self.start.unwrap_or(self.consumed as u64),
            end: self.consumed as u64,
        })
    }

    fn line_done(&mut self, line: &[u8], end: u64) -> Option<SseEvent> {
        if line.is_empty() {
            let start = self.start.take().unwrap_or(end);
            let event = self.event.take();
            return self.data.take().map(|data| SseEvent {
                event,
                data,
                start,
                end,
            });
        }
        match split_field(line) {
            Some(("event", value)) => self.event = Some(value.into_owned()),
            Some(("data", value)) => {
                let d = self.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(&value);
            }
            _ => {}
        }
        None
    }
}

/// `field: value` of one line; `None` for a comment (`:` first).
fn split_field(line: &[u8]) -> Option<(&'static str, std::borrow::Cow<'_, str>)> {
    if line.is_empty() || line[0] == b':' {
        return None;
    }
    let (field, value) = match memchr::memchr(b':', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let value = value.strip_prefix(b" ").unwrap_or(value);
    let field = match field {
        b"data" => "data",
        b"event" => "event",
        _ => return Some(("", std::borrow::Cow::Borrowed(""))),
    };
    Some((field, crate::flow::lossy(value)))
}

/// True when a body looks like an event stream (for bodies stored without a content type).
pub fn looks_like_sse(body: &[u8]) -> bool {
    let b = body.trim_ascii_start();
    b.starts_with(b"event:") || b.starts_with(b"data:") || b.starts_with(b": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> (Option<String>, String) {
        (event.map(str::to_string), data.to_string())
    }

    fn names(p: &SseParser) -> Vec<(Option<String>, String)> {
        p.events
            .iter()
            .map(|e| (e.event.clone(), e.data.clone()))
            .collect()
    }

    #[test]
    fn parser_handles_any_slicing_and_line_endings() {
        let text = "event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\n\ndata:x\n\ndata: tail";
        let whole = {
            let mut p = SseParser::default();
            p.feed(text.as_bytes());
            p
        };
        assert_eq!(names(&whole), vec![ev(Some("a"), "1\n2"), ev(None, "x")]);
        assert_eq!(whole.pending().map(|e| e.data), Some("tail".into()));
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            p.feed(&text.as_bytes()[..cut]);
            p.feed(&text.as_bytes()[cut..]);
            assert_eq!(p.events, whole.events, "cut at {cut}");
        }
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            for b in text.as_bytes()[..cut].chunks(1) {
                p.feed(b);
            }
            p.feed(&text.as_bytes()[cut..]);
            assert_eq!(p.events, whole.events, "bytewise to {cut}");
        }
    }

    #[test]
    fn events_know_their_offsets() {
        let text = "data: a\n\n: ping\n\nevent: e\ndata: b\n\n";
        let mut p = SseParser::default();
        p.feed(text.as_bytes());
        assert_eq!(p.events.len(), 2);
        assert_eq!((p.events[0].start, p.events[0].end), (0, 9));
        let second = text.find("event:").expect("second") as u64;
        assert_eq!(p.events[1].start, second);
        assert_eq!(p.events[1].end, text.len() as u64);
    }

    #[test]
    fn a_lone_cr_ends_a_line() {
        let mut p = SseParser::default();
        p.feed(b"data: a\r\rdata: b\r");
        p.feed(b"\r");
        assert_eq!(names(&p), vec![ev(None, "a"), ev(None, "b")]);
    }
}
