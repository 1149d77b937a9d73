//! Byte spans of the prompt parts of a JSON request body (the messages array's
//! elements, the system prompt, the tools), found by one structural pass that
//! builds no values, and found again for the next request of a conversation
//! by resuming after the bytes it shares with the previous one.
//!
//! A coding agent resends its whole conversation every turn, so a session of
//! 10,000 requests is hundreds of megabytes of mostly repeated JSON. Parsing
//! each body into a `serde_json::Value` took over a second; comparing bytes
//! and scanning only what is new takes a few milliseconds.
//!
//! The scanner trusts the body to be JSON: on malformed input it returns
//! `None`, never a wrong span of well-formed input.

use std::hash::Hasher;
use std::ops::Range;

/// Which object keys hold the parts.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub list: &'static [&'static [u8]],
    pub system: &'static [&'static [u8]],
    pub tools: &'static [&'static [u8]],
}

/// A request body: Anthropic / OpenAI chat `messages`, Responses `input`,
/// Gemini `contents`; `system` / `instructions` / `systemInstruction`;
/// `tools` / `functions`.
pub const REQUEST: Keys = Keys {
    list: &[b"messages", b"input", b"contents"],
    system: &[b"system", b"instructions", b"systemInstruction"],
    tools: &[b"tools", b"functions"],
};

/// A message: its content blocks (`content`, Gemini `parts`).
pub const MESSAGE: Keys = Keys {
    list: &[b"content", b"parts"],
    system: &[],
    tools: &[],
};

/// Where the parts of one JSON object are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans {
    /// The list's `[`, when the list key holds an array.
    pub open: Option<usize>,
    /// The list's `]`.
    pub close: usize,
    /// The list's elements.
    pub elements: Vec<Range<usize>>,
    pub system: Option<Range<usize>>,
    pub tools: Option<Range<usize>>,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    keys: Keys,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// At a `"`: past the string; returns its contents' range.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.i + 1;
        let mut j = start;
        loop {
            j += memchr::memchr2(b'"', b'\\', self.b.get(j..)?)?;
            if self.b[j] == b'\\' {
                j += 2;
            } else {
                self.i = j + 1;
                return Some(start..j);
            }
        }
    }

    /// Past one value of any kind.
    fn value(&mut self) -> Option<Range<usize>> {
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        Some(start..self.i)
    }

    /// The list's elements from just after `[` (`first`) or after an element.
    fn elements(&mut self, out: &mut Spans, first: bool) -> Option<()> {
        if first {
            self.ws();
            if self.peek()? == b']' {
                out.close = self.i;
                self.i += 1;
                return Some(());
            }
            out.elements.push(self.value()?);
        }
        loop {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    out.elements.push(self.value()?);
                }
                b']' => {
                    out.close = self.i;
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// One `"key": value` member.
    fn member(&mut self, out: &mut Spans) -> Option<()> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        let key = &self.b[key];
        self.eat(b':')?;
        self.ws();
        let is = |set: &[&[u8]]| set.contains(&key);
        if is(self.keys.list) && out.open.is_none() && self.peek()? == b'[' {
            out.open = Some(self.i);
            self.i += 1;
            return self.elements(out, true);
        }
        let span = self.value()?;
        if is(self.keys.system) && out.system.is_none() {
            out.system = Some(span);
        } else if is(self.keys.tools) && out.tools.is_none() {
            out.tools = Some(span);
        }
        Some(())
    }

    /// The object's remaining members, after a member.
    fn rest(&mut self, out: &mut Spans) -> Option<()> {
        loop {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.member(out)?;
                }
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn object(&mut self, out: &mut Spans) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            return Some(());
        }
        self.member(out)?;
        self.rest(out)
    }
}

/// The spans of a JSON object's parts; `None` when it is not an object.
pub fn scan(b: &[u8], keys: Keys) -> Option<Spans> {
    let mut out = Spans::default();
    Scan { b, i: 0, keys }.object(&mut out)?;
    Some(out)
}

/// The length of the longest common prefix of two byte strings.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i + 64 <= n && a[i..i + 64] == b[i..i + 64] {
        i += 64;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// What [`rescan`] took unchanged from the previous body: its first
/// `elements`, and whether the system prompt and the tools are the same bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    pub elements: usize,
    pub system: bool,
    pub tools: bool,
}

/// The spans of `b` (a body of the same [`REQUEST`] shape as `prev_body`,
/// with spans `prev`), reusing every element `b` shares byte for byte with
/// the previous body and scanning only the rest. The spans equal
/// `scan(b, REQUEST)`.
pub fn rescan(prev_body: &[u8], prev: &Spans, b: &[u8]) -> Option<(Spans, Reuse)> {
    let common = common_prefix(prev_body, b);
    let Some(open) = prev.open.filter(|&o| o < common) else {
        return scan(b, REQUEST).map(|s| (s, Reuse::default()));
    };
    // Parts before the list lie inside the shared prefix: same offsets.
    let before = |s: &Option<Range<usize>>| s.clone().filter(|r| r.end <= open);
    let mut out = Spans {
        open: Some(open),
        close: 0,
        elements: Vec::with_capacity(prev.elements.len() + 2),
        system: before(&prev.system),
        tools: before(&prev.tools),
    };
    // An element ending before the first differing byte is the same element
    // (a closing `}`, `]` or `"` ends it whatever follows).
    let kept = prev.elements.partition_point(|r| {
        r.end < common || (r.end == common && matches!(prev_body[r.end - 1], b'}' | b']' | b'"'))
    });
    out.elements.extend_from_slice(&prev.elements[..kept]);
    let mut s = Scan {
        b,
        i: prev.elements[..kept].last().map_or(open + 1, |r| r.end),
        keys: REQUEST,
    };
    s.elements(&mut out, kept == 0)?;
    let mut reuse = Reuse {
        elements: kept,
        system: out.system.is_some(),
        tools: out.tools.is_some(),
    };
    // After the list: when it ends the same as before, the parts there only moved.
    let (pc, c) = (prev.close, out.close);
    if prev_body.len() - pc == b.len() - c && prev_body[pc..] == b[c..] {
        let moved = |r: &Option<Range<usize>>| {
            r.clone()
                .filter(|r| r.start > pc)
                .map(|r| r.start - pc + c..r.end - pc + c)
        };
        if out.system.is_none() {
            out.system = moved(&prev.system);
            reuse.system = true;
        }
        if out.tools.is_none() {
            out.tools = moved(&prev.tools);
            reuse.tools = true;
        }
        return Some((out, reuse));
    }
    s.rest(&mut out)?;
    Some((out, reuse))
}

/// Whether `b[i]` is escaped: preceded by an odd run of backslashes.
pub fn escaped(b: &[u8], i: usize) -> bool {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// The parts of `b` to compare, without its `"cache_control"` members (a
/// client moves its cache breakpoints every turn; they are not part of the
/// cached prefix): calls `emit` on each kept piece in order. Returns whether
/// a breakpoint asks for the 1-hour TTL.
pub fn canonical(b: &[u8], mut emit: impl FnMut(&[u8])) -> bool {
    const KEY: &[u8] = b"\"cache_control\"";
    let finder = memchr::memmem::Finder::new(KEY);
    let mut extended = false;
    let mut from = 0;
    let mut at = 0;
    while let Some(k) = finder.find(&b[at..]).map(|k| k + at) {
        at = k + 1;
        if escaped(b, k) {
            continue;
        }
        let mut s = Scan {
            b,
            i: k + KEY.len(),
            keys: MESSAGE,
        };
        if s.eat(b':').is_none() {
            continue; // a string value, not a member
        }
        let Some(value) = s.value() else { continue };
        extended |= memchr::memmem::find(&b[value.clone()], b"\"1h\"").is_some();
        // Drop the member with the comma that joined it to its neighbours.
        let mut cut = k;
        while cut > from && b[cut - 1].is_ascii_whitespace() {
            cut -= 1;
        }
        let mut end = s.i;
        if cut > from && b[cut - 1] == b',' {
            cut -= 1;
        } else {
            s.ws();
            if s.peek() == Some(b',') {
                s.i += 1;
                s.ws();
                end = s.i;
            }
        }
        emit(&b[from..cut]);
        from = end;
        at = end;
    }
    emit(&b[from..]);
    extended
}

/// The hash of [`canonical`] `b`, and whether it asks for the 1-hour TTL.
pub fn canonical_hash(b: &[u8]) -> (u64, bool) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let extended = if memchr::memmem::find(b, b"\"cache_control\"").is_some() {
        let mut bytes = Vec::with_capacity(b.len());
        let extended = canonical(b, |piece| bytes.extend_from_slice(piece));
        h.write(&bytes);
        extended
    } else {
        h.write(b);
        false
    };
    (h.finish(), extended)
}

/// [`canonical`] `b` as one byte string.
pub fn canonical_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    canonical(b, |piece| out.extend_from_slice(piece));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn parts(b: &[u8], s: &Spans) -> (Vec<Value>, Option<Value>, Option<Value>) {
        let v =
            |r: &Range<usize>| serde_json::from_slice::<Value>(&b[r.clone()]).expect("test input");
        (
            s.elements.iter().map(v).collect(),
            s.system.as_ref().map(v),
            s.tools.as_ref().map(v),
        )
    }

    #[test]
    fn finds_the_parts_whatever_the_order_and_spacing() {
        let body = br#" { "model" : "m", "tools":[{"name":"a\"]}"}] ,
            "messages" : [ {"role":"user","content":"x]"} , {"role":"assistant","content":[{"type":"text","text":"{"}]} ],
            "system": "be brief", "n": -1.5e3, "ok": true }"#;
        let s = scan(body, REQUEST).expect("test input");
        let (msgs, system, tools) = parts(body, &s);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0], json!({"role":"user","content":"x]"}));
        assert_eq!(system, Some(json!("be brief")));
        assert_eq!(tools, Some(json!([{"name":"a\"]}"}])));
        assert_eq!(body[s.close], b']');
    }

    #[test]
    fn malformed_bodies_have_no_spans() {
        for b in [
            &b""[..],
            b"[1]",
            b"{\"messages\":[1,",
            b"{\"a\":\"unterminated}",
            b"{\"a\" 1}",
        ] {
            assert_eq!(scan(b, REQUEST), None, "{}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn rescan_equals_a_fresh_scan_as_a_conversation_grows() {
        let mut msgs =
            vec![json!({"role":"user","content":"hi","cache_control":{"type":"ephemeral"}})];
        let body = |m: &Vec<Value>| {
            serde_json::to_vec(&json!({"messages": m, "system": "s", "tools": [{"name": "Read"}]}))
                .expect("test input")
        };
        let mut prev = body(&msgs);
        let mut prev_spans = scan(&prev, REQUEST).expect("test input");
        for i in 0..20 {
            msgs.push(json!({"role":"assistant","content":format!("answer {i}")}));
            msgs.push(json!({"role":"user","content":[{"type":"text","text":format!("q {i}")}]}));
            if i == 7 {
                msgs[1] = json!({"role":"assistant","content":"rewritten"});
            }
            let cur = body(&msgs);
            let (s, reuse) = rescan(&prev, &prev_spans, &cur).expect("test input");
            assert!(reuse.system && reuse.tools, "turn {i}");
            let expect = if i == 7 { 1 } else { msgs.len() - 2 };
            assert_eq!(reuse.elements, expect, "turn {i}");
            assert_eq!(s, scan(&cur, REQUEST).expect("test input"), "turn {i}");
            prev = cur;
            prev_spans = s;
        }
    }

    #[test]
    fn cache_control_does_not_change_the_hash() {
        let marked = br#"{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}"#;
        let plain = br#"{"type":"text","text":"x"}"#;
        let first =
            br#"{"cache_control": {"type":"ephemeral","ttl":"1h"} , "type":"text","text":"x"}"#;
        let other = br#"{"type":"text","text":"y"}"#;
        let quoted = br#"{"type":"text","text":"the \"cache_control\": {} key"}"#;
        assert_eq!(canonical_hash(marked), (canonical_hash(plain).0, false));
        assert_eq!(canonical_hash(first), (canonical_hash(plain).0, true));
        assert_ne!(canonical_hash(plain).0, canonical_hash(other).0);
        assert_eq!(canonical_bytes(quoted), quoted.to_vec());
        assert_eq!(canonical_bytes(first), plain.to_vec());
    }

    proptest! {
        #[test]
        fn rescan_matches_scan(
            texts in proptest::collection::vec("[a-z\\]\\[{}\" ,]{0,12}", 1..8),
            edit in 0usize..8,
            extra in "[a-z]{0,5}",
        ) {
            let msgs: Vec<Value> = texts.iter().map(|t| json!({"role":"user","content":t})).collect();
            let mut next = msgs.clone();
            let e = edit % next.len();
            next[e] = json!({"role":"user","content": format!("{}{extra}", texts[e])});
            next.push(json!({"role":"assistant","content":extra}));
            let a = serde_json::to_vec(&json!({"system":"s","messages":msgs,"tools":[]})).expect("test input");
            let b = serde_json::to_vec(&json!({"system":"s","messages":next,"tools":[]})).expect("test input");
            let sa = scan(&a, REQUEST).expect("test input");
            let (sb, reuse) = rescan(&a, &sa, &b).expect("test input");
            if !extra.is_empty() {
                prop_assert!(reuse.elements <= e);
            }
            prop_assert_eq!(&sb, &scan(&b, REQUEST).expect("test input"));
            let (m, _, _) = parts(&b, &sb);
            prop_assert_eq!(m, next);
        }
    }
}
