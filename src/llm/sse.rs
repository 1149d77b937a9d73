//! Server-sent events: an incremental parser fed slice by slice, in any slicing.

/// One dispatched event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed bytes in any slicing, read complete events.
#[derive(Debug, Default, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Events dispatched so far.
    pub events: Vec<SseEvent>,
    /// Bytes fed so far.
    pub consumed: usize,
}

impl SseParser {
    /// Feed the next slice of the stream; returns how many events it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let before = self.events.len();
        self.consumed += bytes.len();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        self.events.len() - before
    }

    /// The event still being received (no blank line yet), if it has data.
    pub fn pending(&self) -> Option<SseEvent> {
        let mut data = self.data.clone();
        if !self.line.is_empty() {
            if let Some((field, value)) = split_field(&self.line) {
                if field == "data" {
                    let d = data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    d.push_str(&value);
                }
            }
        }
        data.map(|data| SseEvent {
            event: self.event.clone(),
            data,
        })
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.events.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return;
        }
        let Some((field, value)) = split_field(line) else {
            return;
        };
        match field.as_str() {
            "event" => self.event = Some(value),
            "data" => {
                let d = self.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(&value);
            }
            _ => {}
        }
    }
}

fn split_field(line: &[u8]) -> Option<(String, String)> {
    if line.first() == Some(&b':') {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    let (field, value) = text.split_once(':').unwrap_or((&text, ""));
    let value = value.strip_prefix(' ').unwrap_or(value);
    Some((field.to_string(), value.to_string()))
}
