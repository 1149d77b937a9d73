//! The flow filter language, shared by the TUI's `/` bar and `export --filter`.
//!
//! mitmproxy-style: `~d host`, `~u url`, `~m method`, `~c code`, `~t content-type`,
//! `~h header`, `~b body`, `~e` (error), `~type llm|mcp|web|other`, `~host`
//! (the machine that captured it, `capture_host`); a bare word
//! matches the URL. Combine with `!`, `&`, `|` and parentheses; two expressions
//! side by side mean `&`. Regular expressions are case-insensitive.
//!
//! Grammar (lowest precedence first):
//! ```text
//! or   := and ('|' and)*
//! and  := not ('&'? not)*
//! not  := '!' not | atom
//! atom := '(' or ')' | '~' name [arg] | word
//! arg  := "quoted" | 'quoted' | word      word: up to blank (or an unmatched ')')
//! ```
//! [`parse`] is a pure function that never panics; errors carry the character
//! position where the expression went wrong.

use std::fmt;

use regex::bytes::{Regex as BytesRegex, RegexBuilder as BytesRegexBuilder};
use regex::{Regex, RegexBuilder};

use crate::flow::{Flow, TrafficType};

/// Why an expression did not parse, and where (character index, 0-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {}: {message}", pos + 1)]
pub struct FilterError {
    /// Character index (not byte) of the offending token.
    pub pos: usize,
    /// What is wrong and what would be right.
    pub message: String,
}

/// A parsed filter: apply it with [`Filter::matches`].
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    source: String,
}

#[derive(Debug, Clone)]
enum Node {
    All,
    Not(Box<Node>),
    /// Flat lists keep the tree shallow however long the chain (`a | b | c …`).
    And(Vec<Node>),
    Or(Vec<Node>),
    Domain(Regex),
    /// `~host`: the machine that captured it (`capture_host`).
    CaptureHost(Regex),
    Url(Regex),
    Method(Regex),
    Code(u16),
    ContentType(Regex),
    Header(Regex, Option<Literal>),
    Body(BytesRegex, Option<Literal>),
    Error,
    Type(TrafficType),
    /// `~model RE`: the model requested or answered.
    Model(Regex),
    /// `~api NAME`: `anthropic.messages`, `openai.chat`, … (a prefix such as `openai` too).
    Api(String),
    /// `~session RE`.
    Session(Regex),
    /// `~tool RE`: a tool the response called (or the MCP tool).
    Tool(Regex),
    /// `~agent RE`: the client program.
    Agent(Regex),
    /// `~stop RE`: the stop reason.
    Stop(Regex),
    /// `~cost OP N` (USD).
    Cost(Cmp, f64),
    /// `~tokens OP N`: input + output + cache read + cache creation.
    Tokens(Cmp, f64),
    /// `~ttft OP MS`.
    Ttft(Cmp, f64),
}

/// A comparison of the numeric predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Eq => (a - b).abs() < f64::EPSILON * a.abs().max(1.0),
        }
    }
}

impl Filter {
    /// The filter that lets everything through (an empty expression).
    pub fn all() -> Self {
        Self {
            root: Node::All,
            source: String::new(),
        }
    }

    /// True when this filter keeps every flow.
    pub fn is_all(&self) -> bool {
        matches!(self.root, Node::All)
    }

    /// The expression this filter was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Does `flow` pass the filter?
    pub fn matches(&self, flow: &Flow) -> bool {
        self.root.matches(flow)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Node {
    fn matches(&self, flow: &Flow) -> bool {
        match self {
            Self::All => true,
            Self::Not(n) => !n.matches(flow),
            Self::And(all) => all.iter().all(|n| n.matches(flow)),
            Self::Or(any) => any.iter().any(|n| n.matches(flow)),
            Self::Domain(re) => re.is_match(&flow.host),
            Self::CaptureHost(re) => flow.capture_host.as_deref().is_some_and(|h| re.is_match(h)),
            Self::Url(re) => re.is_match(&flow.url),
            Self::Method(re) => re.is_match(&flow.method),
            Self::Code(c) => flow.status_code == Some(*c),
            Self::ContentType(re) => [
                flow.request_content_type
                    .as_deref()
                    .or_else(|| flow.request_header("content-type")),
                flow.response_content_type
                    .as_deref()
                    .or_else(|| flow.response_header("content-type")),
            ]
            .into_iter()
            .flatten()
            .any(|ct| re.is_match(ct)),
            Self::Header(re, lit) => HEADER_BLOCK.with(|block| {
                // One search over the whole block, as mitmproxy does; `^`/`$` are per line.
                let mut block = block.borrow_mut();
                block.clear();
                for (n, v) in flow.request_headers.iter().chain(&flow.response_headers) {
                    block.push_str(n);
                    block.push_str(": ");
                    block.push_str(v);
                    block.push('\n');
                }
                // ASCII folding equals the regex's Unicode folding only on an ASCII haystack.
                match lit {
                    Some(lit) if block.is_ascii() => lit.is_match(block.as_bytes()),
                    _ => re.is_match(&block),
                }
            }),
            Self::Body(re, lit) => {
                [&flow.request_body, &flow.response_body]
                    .into_iter()
                    .any(|body| match lit {
                        // `~b` folds ASCII case only, so the literal search is exact on any bytes.
                        Some(lit) => lit.is_match(body),
                        None => re.is_match(body),
                    })
            }
            Self::Error => flow.error_type.is_some() || flow.error_message.is_some(),
            Self::Type(t) => flow.traffic_type == *t,
            Self::Model(re) => flow.llm.as_ref().is_some_and(|a| {
                [a.model.as_deref(), a.response_model.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|m| re.is_match(m))
            }),
            Self::Api(name) => flow.llm.as_ref().is_some_and(|a| {
                let s = a.api.as_str();
                s == name || s.starts_with(&format!("{name}."))
            }),
            Self::Session(re) => flow
                .llm
                .as_ref()
                .and_then(|a| a.session_id.as_deref())
                .or(flow.session_id.as_deref())
                .is_some_and(|s| re.is_match(s)),
            Self::Tool(re) => flow.llm.as_ref().is_some_and(|a| {
                a.tool_calls.iter().any(|t| re.is_match(&t.name))
                    || a.mcp
                        .as_ref()
                        .and_then(|m| m.tool.as_deref())
                        .is_some_and(|t| re.is_match(t))
            }),
            Self::Agent(re) => flow
                .llm
                .as_ref()
                .and_then(|a| a.agent.as_ref())
                .is_some_and(|g| re.is_match(&g.to_string())),
            Self::Stop(re) => flow
                .llm
                .as_ref()
                .and_then(|a| a.stop_reason.as_deref())
                .is_some_and(|s| re.is_match(s)),
            Self::Cost(op, n) => flow
                .llm
                .as_ref()
                .and_then(|a| a.cost_usd)
                .is_some_and(|c| op.holds(c, *n)),
            Self::Tokens(op, n) => flow.llm.as_ref().is_some_and(|a| {
                let u = &a.usage;
                let total = u.prompt_total() + u.output.unwrap_or(0);
                !u.is_empty() && op.holds(total as f64, *n)
            }),
            Self::Ttft(op, n) => flow
                .llm
                .as_ref()
                .and_then(|a| a.ttft_ms)
                .is_some_and(|t| op.holds(t, *n)),
        }
    }
}

/// A pattern that is a plain literal, searched without the regex engine.
///
/// A case-insensitive regex on a literal cannot use a fast prefilter (every letter
/// doubles the case variants), which made `~b`/`~h` over 100,000 flows take ~90 ms.
/// Here `memmem` finds the longest run of bytes that have no case, and the whole
/// needle is then compared with ASCII case folding around each hit.
#[derive(Debug, Clone)]
struct Literal {
    /// The needle, ASCII-lowercased.
    needle: Vec<u8>,
    /// Finds the caseless anchor run; `None` when every byte is a letter.
    anchor: Option<memchr::memmem::Finder<'static>>,
    /// Where the anchor starts inside the needle.
    offset: usize,
}

impl Literal {
    /// The literal in `pattern`, when it has no regex syntax at all.
    fn new(pattern: &str) -> Option<Self> {
        const LITERAL_PUNCT: &[u8] = b" -_:/=,;@%<>'\"!`";
        let bytes = pattern.as_bytes();
        if bytes.is_empty()
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || LITERAL_PUNCT.contains(b))
        {
            return None;
        }
        let mut best = (0, 0);
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if b.is_ascii_alphabetic() {
                start = i + 1;
            } else if i + 1 - start > best.1 - best.0 {
                best = (start, i + 1);
            }
        }
        let anchor = (best.1 > best.0)
            .then(|| memchr::memmem::Finder::new(&bytes[best.0..best.1]).into_owned());
        Some(Self {
            needle: bytes.to_ascii_lowercase(),
            anchor,
            offset: best.0,
        })
    }

    /// Does the needle occur in `hay`, ASCII case folded?
    fn is_match(&self, hay: &[u8]) -> bool {
        let n = self.needle.len();
        let at = |start: usize| {
            hay.get(start..start + n)
                .is_some_and(|w| w.eq_ignore_ascii_case(&self.needle))
        };
        if let Some(finder) = &self.anchor {
            // Step one byte past each hit: anchor occurrences may overlap.
            let mut from = self.offset;
            while let Some(hit) = hay.get(from..).and_then(|rest| finder.find(rest)) {
                if at(from + hit - self.offset) {
                    return true;
                }
                from += hit + 1;
            }
            false
        } else {
            let (lo, up) = (self.needle[0], self.needle[0].to_ascii_uppercase());
            memchr::memchr2_iter(lo, up, hay).any(at)
        }
    }
}

thread_local! {
    /// Reused buffer for `~h`, so re-filtering a long list allocates nothing per flow.
    static HEADER_BLOCK: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Every `~` operator, for the help overlay and error messages.
pub const OPERATORS: &[(&str, &str)] = &[
    ("~d REGEX", "host"),
    ("~u REGEX", "URL"),
    ("~m REGEX", "method"),
    ("~c CODE", "status code"),
    ("~t REGEX", "content type (request or response)"),
    ("~h REGEX", "a header line `name: value`"),
    ("~b REGEX", "request or response body"),
    ("~e", "exchange failed"),
    ("~type T", "llm, mcp, web or other"),
    ("~model REGEX", "LLM model (requested or answered)"),
    (
        "~api NAME",
        "anthropic.messages, openai.chat, openai.responses, gemini.generate, mcp, …",
    ),
    ("~session REGEX", "agent session id"),
    ("~tool REGEX", "a tool the model called"),
    ("~agent REGEX", "client program, e.g. claude-code"),
    (
        "~stop REGEX",
        "stop reason, e.g. end_turn, tool_use, length",
    ),
    ("~cost > N", "cost in USD (also <, >=, <=, =)"),
    ("~tokens > N", "all tokens of the exchange"),
    ("~ttft > MS", "time to first token in ms"),
    ("WORD", "URL matches WORD"),
    ("! & | ( )", "not, and, or, grouping"),
];

/// Parse a filter expression; blank means [`Filter::all`].
pub fn parse(expr: &str) -> Result<Filter, FilterError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut p = Parser {
        chars: &chars,
        pos: 0,
        depth: 0,
    };
    p.skip_blank();
    if p.at_end() {
        return Ok(Filter::all());
    }
    let root = p.or()?;
    p.skip_blank();
    if let Some(c) = p.peek() {
        let message = if c == ')' {
            "unmatched `)`: remove it or add a `(` before".to_string()
        } else {
            format!("unexpected `{c}`")
        };
        return Err(p.error_at(p.pos, message));
    }
    Ok(Filter {
        root,
        source: expr.trim().to_string(),
    })
}

/// Deepest nesting accepted, so a hostile expression cannot overflow the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_blank(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    #[allow(clippy::unused_self)]
    fn error_at(&self, pos: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            pos,
            message: message.into(),
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                self.pos,
                format!("nested deeper than {MAX_DEPTH} levels: simplify the expression"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, FilterError> {
        self.enter()?;
        let mut any = vec![self.and()?];
        loop {
            self.skip_blank();
            if self.peek() != Some('|') {
                break;
            }
            self.pos += 1;
            any.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if any.len() == 1 {
            any.swap_remove(0)
        } else {
            Node::Or(any)
        })
    }

    fn and(&mut self) -> Result<Node, FilterError> {
        let mut all = vec![self.not()?];
        loop {
            self.skip_blank();
            match self.peek() {
                Some('&') => self.pos += 1,
                None | Some('|' | ')') => break,
                Some(_) => {}
            }
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 {
            all.swap_remove(0)
        } else {
            Node::And(all)
        })
    }

    fn not(&mut self) -> Result<Node, FilterError> {
        self.skip_blank();
        if self.peek() == Some('!') {
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Node, FilterError> {
        self.skip_blank();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error_at(
                start,
                "expression ends too early: add a filter such as ~d example.com",
            )),
            Some('(') => {
                self.pos += 1;
                let inner = self.or()?;
                self.skip_blank();
                if self.peek() == Some(')') {
                    self.pos += 1;
                    Ok(inner)
                } else {
                    Err(self.error_at(
                        self.pos,
                        format!("missing `)` for the `(` at column {}", start + 1),
                    ))
                }
            }
            Some(c @ ('&' | '|' | ')')) => Err(self.error_at(
                start,
                format!("expected a filter before `{c}`, e.g. ~d example.com"),
            )),
            Some('~') => self.operator(),
            Some(_) => {
                let (word, pos) = self.argument("a word")?;
                Ok(Node::Url(text_regex(&word, pos)?))
            }
        }
    }

    fn operator(&mut self) -> Result<Node, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let name_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let name: String = self.chars[name_start..self.pos].iter().collect();
        match name.as_str() {
            "e" => Ok(Node::Error),
            "d" => Ok(Node::Domain(self.regex_arg("~d", "a host")?)),
            "host" => Ok(Node::CaptureHost(
                self.regex_arg("~host", "a machine name")?,
            )),
            "u" => Ok(Node::Url(self.regex_arg("~u", "a URL")?)),
            "m" => Ok(Node::Method(self.regex_arg("~m", "a method")?)),
            "t" => Ok(Node::ContentType(self.regex_arg("~t", "a content type")?)),
            "h" => {
                let (text, pos) = self.argument("~h needs a header pattern")?;
                RegexBuilder::new(&text)
                    .case_insensitive(true)
                    .multi_line(true)
                    .size_limit(1 << 20)
                    .build()
                    .map(|re| Node::Header(re, Literal::new(&text)))
                    .map_err(|e| regex_error(&e, pos))
            }
            "b" => {
                let (text, pos) = self.argument("~b needs a body pattern")?;
                // Bodies are bytes, often not UTF-8: ASCII case folding is enough and faster.
                BytesRegexBuilder::new(&text)
                    .case_insensitive(true)
                    .unicode(false)
                    .size_limit(1 << 20)
                    .build()
                    .map(|re| Node::Body(re, Literal::new(&text)))
                    .map_err(|e| regex_error(&e, pos))
            }
            "c" => {
                let (text, pos) = self.argument("~c needs a status code, e.g. ~c 404")?;
                text.parse::<u16>().map(Node::Code).map_err(|_| {
                    self.error_at(
                        pos,
                        format!("`{text}` is not a status code; use e.g. ~c 404"),
                    )
                })
            }
            "type" => {
                let (text, pos) = self.argument("~type needs llm, mcp, web or other")?;
                TrafficType::parse(&text.to_ascii_lowercase())
                    .map(Node::Type)
                    .ok_or_else(|| {
                        self.error_at(
                            pos,
                            format!("unknown type `{text}`: use llm, mcp, web or other"),
                        )
                    })
            }
            "model" => Ok(Node::Model(self.regex_arg("~model", "a model")?)),
            "session" => Ok(Node::Session(self.regex_arg("~session", "a session id")?)),
            "tool" => Ok(Node::Tool(self.regex_arg("~tool", "a tool name")?)),
            "agent" => Ok(Node::Agent(self.regex_arg("~agent", "an agent")?)),
            "stop" => Ok(Node::Stop(self.regex_arg("~stop", "a stop reason")?)),
            "api" => {
                let (text, pos) = self.argument("~api needs an API name, e.g. openai.chat")?;
                let name = text.to_ascii_lowercase();
                let known = super::analysis::Api::ALL
                    .iter()
                    .any(|a| a.as_str() == name || a.as_str().starts_with(&format!("{name}.")));
                if known {
                    Ok(Node::Api(name))
                } else {
                    Err(self.error_at(
                        pos,
                        format!("unknown API `{text}`: use anthropic.messages, openai.chat, openai.responses, gemini.generate, bedrock.invoke, mcp, …"),
                    ))
                }
            }
            "cost" => {
                let (op, n) = self.comparison("~cost")?;
                Ok(Node::Cost(op, n))
            }
            "tokens" => {
                let (op, n) = self.comparison("~tokens")?;
                Ok(Node::Tokens(op, n))
            }
            "ttft" => {
                let (op, n) = self.comparison("~ttft")?;
                Ok(Node::Ttft(op, n))
            }
            "" => Err(self.error_at(
                start,
                "`~` needs a filter name: ~d ~u ~m ~c ~t ~h ~b ~e ~type ~model ~api ~tool ~cost …",
            )),
            other => Err(self.error_at(
                start,
                format!("unknown filter `~{other}`: use ~d ~u ~m ~c ~t ~h ~b ~e ~type"),
            )),
        }
    }

    /// `> N`, `>= N`, `< N`, `<= N`, `= N` (or a bare `N`, meaning `>= N`), blanks optional.
    fn comparison(&mut self, op: &str) -> Result<(Cmp, f64), FilterError> {
        self.skip_blank();
        let at = self.pos;
        let mut sym = String::new();
        while let Some(c @ ('<' | '>' | '=')) = self.peek() {
            sym.push(c);
            self.pos += 1;
        }
        let cmp = match sym.as_str() {
            ">" => Cmp::Gt,
            ">=" | "" => Cmp::Ge,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            "=" | "==" => Cmp::Eq,
            other => {
                return Err(self.error_at(
                    at,
                    format!("`{other}` is not a comparison: use > >= < <= ="),
                ));
            }
        };
        let (text, pos) = self.argument(&format!("{op} needs a number, e.g. {op} > 100"))?;
        let n: f64 = text
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| {
                self.error_at(pos, format!("`{text}` is not a number (e.g. {op} > 100)"))
            })?;
        Ok((cmp, n))
    }

    fn regex_arg(&mut self, op: &str, what: &str) -> Result<Regex, FilterError> {
        let (text, pos) = self.argument(&format!("{op} needs {what} pattern"))?;
        text_regex(&text, pos)
    }

    /// One argument: a quoted string or a word. Returns the text and its position.
    fn argument(&mut self, missing: &str) -> Result<(String, usize), FilterError> {
        self.skip_blank();
        let start = self.pos;
        match self.peek() {
            None | Some('&' | '|' | ')') => Err(self.error_at(start, missing.to_string())),
            Some(q @ ('"' | '\'')) => {
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(self
                                .error_at(start, format!("unterminated quote: add a closing {q}")))
                        }
                        Some('\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some(c) if c == q || c == '\\' => {
                                    out.push(c);
                                    self.pos += 1;
                                }
                                _ => out.push('\\'),
                            }
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            return Ok((out, start + 1));
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(_) => {
                let mut parens = 0usize;
                while let Some(c) = self.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    if c == '(' {
                        parens += 1;
                    } else if c == ')' {
                        if parens == 0 {
                            break;
                        }
                        parens -= 1;
                    }
                    self.pos += 1;
                }
                Ok((self.chars[start..self.pos].iter().collect(), start))
            }
        }
    }
}

fn text_regex(text: &str, pos: usize) -> Result<Regex, FilterError> {
    RegexBuilder::new(text)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| regex_error(&e, pos))
}

fn regex_error(e: &regex::Error, pos: usize) -> FilterError {
    let detail = e
        .to_string()
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map_or_else(|| "invalid pattern".to_string(), |l| l.trim().to_string());
    FilterError {
        pos,
        message: format!("bad regular expression ({detail}); quote it or escape with \\"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, ErrorKind};

    #[test]
    fn host_matches_the_machine_that_captured_it() {
        let mut f = Flow::new(Direction::Forward, "GET", "http://x/", "x", "/");
        f.capture_host = Some("ana-laptop".into());
        let m = |e: &str| parse(e).expect("parse").matches(&f);
        assert!(m("~host ana"));
        assert!(m("~host ^ANA-laptop$"));
        assert!(!m("~host build-box"));
        f.capture_host = None;
        assert!(!parse("~host ana").expect("parse").matches(&f));
    }
    use bytes::Bytes;
    use proptest::prelude::*;

    fn flow() -> Flow {
        let mut f = Flow::new(
            Direction::Forward,
            "POST",
            "https://api.anthropic.com/v1/messages?beta=true",
            "api.anthropic.com",
            "/v1/messages?beta=true",
        );
        f.status_code = Some(200);
        f.traffic_type = TrafficType::Llm;
        f.request_headers = vec![("content-type".into(), "application/json".into())];
        f.request_content_type = Some("application/json".into());
        f.response_headers = vec![("content-type".into(), "text/event-stream".into())];
        f.response_content_type = Some("text/event-stream".into());
        f.request_body = Bytes::from_static(br#"{"model":"claude-sonnet"}"#);
        f.response_body = Bytes::from_static(b"event: message_start\ndata: {}\n\n");
        f
    }

    fn body_regex(text: &str) -> BytesRegex {
        BytesRegexBuilder::new(text)
            .case_insensitive(true)
            .unicode(false)
            .build()
            .expect("valid regex")
    }

    proptest! {
        /// The literal fast path finds exactly what the `~b` regex finds.
        #[test]
        fn literal_agrees_with_regex(
            needle in "[aA1-][aA1 -]{0,5}",
            hay in proptest::collection::vec(
                proptest::sample::select(b"aA1- \xc3\xa9".to_vec()), 0..40),
        ) {
            let lit = Literal::new(&needle).expect("plain literal");
            prop_assert_eq!(lit.is_match(&hay), body_regex(&needle).is_match(&hay));
        }
    }

    #[test]
    fn llm_predicates_read_the_analysis() {
        let mut f = flow();
        f.request_body = Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","metadata":{"user_id":"u_session_s-42"},"messages":[]}"#,
        );
        f.request_headers.push((
            "user-agent".into(),
            "claude-cli/1.0.83 (external, cli)".into(),
        ));
        f.response_body = Bytes::from_static(concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":1000,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Bash\",\"input\":{}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":500}}\n\n",
        ).as_bytes());
        let a = crate::llm::analyze(&f, &crate::llm::PriceTable::bundled()).expect("llm");
        f.llm = Some(std::sync::Arc::new(a));
        let yes = |e: &str| parse(e).expect(e).matches(&f);
        for e in [
            "~model sonnet-4-5",
            "~api anthropic.messages",
            "~api anthropic",
            "~session s-42",
            "~tool ^bash$",
            "~agent claude-code",
            "~stop tool_use",
            "~cost > 0.01",
            "~cost<1",
            "~tokens > 1499",
            "~tokens >= 1500",
        ] {
            assert!(yes(e), "{e}");
        }
        for e in [
            "~model gpt",
            "~api openai",
            "~tool Read",
            "~cost > 1",
            "~tokens > 1500",
            "~ttft > 0",
        ] {
            assert!(!yes(e), "{e}");
        }
        assert!(parse("~api nosuch").is_err());
        assert!(parse("~cost > abc")
            .expect_err("nan")
            .message
            .contains("not a number"));
        assert!(parse("~cost >< 1").is_err());
        let plain = flow();
        assert!(!parse("~model .").expect("re").matches(&plain));
    }

    #[test]
    fn literal_handles_overlapping_anchors_and_edges() {
        // The anchor `1-1` first hits at 0 (a miss), then again overlapping at 2.
        let lit = Literal::new("1-1A").expect("plain literal");
        assert!(lit.is_match(b"1-1-1a"));
        assert!(lit.is_match(b"x1-1a"));
        assert!(!lit.is_match(b"1-1"));
        assert!(!lit.is_match(b"-1a"));
        let letters = Literal::new("MeSsAgEs").expect("plain literal");
        assert!(letters.is_match(b"/v1/messages"));
        assert!(!letters.is_match(b"/v1/message"));
        assert!(Literal::new("a.b").is_none());
        assert!(Literal::new("(?-i)a").is_none());
        assert!(Literal::new("").is_none());
    }

    #[test]
    fn header_literal_keeps_unicode_case_folding() {
        // KELVIN SIGN folds to `k` under the regex's Unicode rules; ASCII folding alone would miss it.
        let mut f = flow();
        f.request_headers = vec![("x-\u{212A}ey".into(), "v".into())];
        assert!(parse("~h x-key").expect("valid filter").matches(&f));
        assert!(!parse("~h x-kez").expect("valid filter").matches(&f));
    }

    fn check(expr: &str) -> bool {
        parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(&flow())
    }

    #[test]
    fn operators_match() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("   ", true),
            ("~d anthropic", true),
            ("~d ^api\\.openai", false),
            ("~u /v1/messages", true),
            ("~m post", true),
            ("~m ^GET$", false),
            ("~c 200", true),
            ("~c 404", false),
            ("~t event-stream", true),
            ("~t json", true),
            ("~t html", false),
            ("~h 'content-type: application/json'", true),
            ("~h x-api-key", false),
            ("~h '^content-type: text/'", true),
            ("~h '^application'", false),
            ("~b 'é'", false),
            ("~b claude-sonnet", true),
            ("~b message_start", true),
            ("~b gpt", false),
            ("~e", false),
            ("!~e", true),
            ("~type llm", true),
            ("~type LLM", true),
            ("~type web", false),
            ("messages", true),
            ("beta=true", true),
            ("openai", false),
            ("~d anthropic & ~m POST", true),
            ("~d anthropic ~m GET", false),
            ("~d openai | ~c 200", true),
            ("!(~d openai | ~c 500)", true),
            ("!!~type llm", true),
            ("(~d openai | ~d anthropic) & !~e & ~c 200", true),
            ("~u (messages|chat)", true),
            ("~u \"v1/m\"", true),
            ("~d a|b", true),
        ];
        for (expr, want) in cases {
            assert_eq!(check(expr), *want, "{expr}");
        }
    }

    #[test]
    fn errors_match() {
        let mut f = flow();
        f.error_type = Some(ErrorKind::Timeout);
        assert!(parse("~e").expect("parse").matches(&f));
        f.error_type = None;
        f.error_message = Some("reset".into());
        assert!(parse("~e & ~d anthropic").expect("parse").matches(&f));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // a | b & c == a | (b & c): true | (false & false) = true
        assert!(check("~c 200 | ~d openai & ~m GET"));
        // (a | b) & c: (true | false) & false = false
        assert!(!check("(~c 200 | ~d openai) & ~m GET"));
        // ! binds tightest
        assert!(!check("!~c 200 & ~m POST"));
    }

    #[test]
    fn errors_have_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("~x foo", 0, "unknown filter `~x`"),
            ("~d", 2, "~d needs"),
            ("~d foo &", 8, "ends too early"),
            ("~c abc", 3, "not a status code"),
            ("~type bogus", 6, "unknown type"),
            ("(~d foo", 7, "missing `)`"),
            ("~d foo)", 6, "unmatched `)`"),
            ("~u 'abc", 3, "unterminated quote"),
            ("~u a(b", 3, "bad regular expression"),
            ("& ~d x", 0, "expected a filter before `&`"),
            ("~", 0, "needs a filter name"),
            ("~d x | | ~d y", 7, "expected a filter before `|`"),
            ("ü ~z", 2, "unknown filter"),
        ];
        for (expr, pos, needle) in cases {
            let err = parse(expr).expect_err(expr);
            assert_eq!(err.pos, *pos, "{expr}: {err}");
            assert!(err.message.contains(needle), "{expr}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let expr = format!("{}~e{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&expr).is_err());
        let expr = format!("{}~e", "!".repeat(10_000));
        assert!(parse(&expr).is_err());
        let long = vec!["~c 500"; 50_000].join(" | ");
        assert!(!parse(&long).expect("a long chain is fine").matches(&flow()));
    }

    proptest! {
        #[test]
        fn never_panics(expr in "[~!&|()\"' a-z0-9.*?\\[\\]\\\\^$éü]{0,40}") {
            if let Ok(f) = parse(&expr) {
                let _ = f.matches(&flow());
            }
        }

        #[test]
        fn never_panics_on_any_string(expr in any::<String>()) {
            if let Ok(f) = parse(&expr) {
                let _ = f.matches(&flow());
            }
        }

        #[test]
        fn error_positions_are_inside_the_expression(expr in "[~!&|() a-z]{0,30}") {
            if let Err(e) = parse(&expr) {
                prop_assert!(e.pos <= expr.chars().count());
            }
        }
    }
}
