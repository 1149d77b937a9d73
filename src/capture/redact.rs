//! Secrets never reach storage, the logs, the TUI, an export, the control
//! socket or a span in the clear. [`Redactor::flow`] is the one entry point:
//! the proxy applies it to every flow before the flow leaves the proxy (each
//! `started`, `responded` and `completed` event, and each live chunk through
//! [`Redactor::body`]), so every reader downstream sees only the redacted
//! copy. What is forwarded upstream is untouched.
//!
//! What is redacted, everywhere in a flow:
//! - credential headers of every provider ([`ALWAYS_REDACTED`] plus
//!   `redact_headers`);
//! - credential query parameters ([`ALWAYS_REDACTED_QUERY`] plus
//!   `redact_query`, any case) and userinfo (`user:pass@`) in `url` and
//!   `path`; the same parameters in form-encoded bodies;
//! - JSON fields named like secrets ([`SECRET_FIELDS`]) in bodies, found by
//!   a scan that needs no complete document (bodies are cut at
//!   `max_body_size`, live chunks are slices) and keeps every other byte;
//! - as a last net, anything shaped like a known provider key
//!   (`sk-ant-…`, `sk-proj-…`, `sk-…`, `AIza…`, `AKIA…`, `ghp_…`, `xoxb-…`)
//!   in header values, URLs, bodies and error messages.
//!
//! A secret keeps a short prefix and its last four characters, enough to
//! tell two keys apart, never enough to use one. Redacting twice changes
//! nothing, so the entry point may run at every event of a flow.

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::Bytes;
use regex::bytes::{Captures, Regex};

use crate::flow::{Flow, Headers};

/// Header names that always carry credentials.
pub const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-amz-security-token",
    "anthropic-api-key",
    "openai-api-key",
    "x-auth-token",
    "x-access-token",
    "cookie",
    "set-cookie",
];

/// Query parameter names (compared ignoring case) that carry credentials.
pub const ALWAYS_REDACTED_QUERY: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "access_token",
    "token",
    "auth",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "client_secret",
    "refresh_token",
    "password",
];

/// JSON field names (any case; `_`/`-` optional) whose string values are
/// redacted in bodies.
pub const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "apiKey",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "password",
    "secret",
    "private_key",
];

/// Stand-in for the hidden middle of a secret.
const ELLIPSIS: char = '…';
/// Extra passes a redaction may take to reach its fixed point.
const FIXPOINT_PASSES: usize = 4;
/// What a secret too short to show any of becomes.
const MASK: &str = "****";
/// Characters kept at the start of a token (`sk-`).
const KEEP_PREFIX: usize = 3;
/// Characters kept at the end of a token.
const KEEP_SUFFIX: usize = 4;
/// Tokens shorter than this are masked entirely.
const MIN_PARTIAL: usize = 16;

/// The shapes of provider keys.
const KEY_SHAPES_PATTERN: &str = concat!(
    r"(?-u:\b)(?:",
    r"sk-(?:ant|proj|svcacct|admin)-[A-Za-z0-9_\-]{16,}",
    r"|sk-[A-Za-z0-9]{32,}",
    r"|AIza[0-9A-Za-z_\-]{35}",
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"|gh[pousr]_[A-Za-z0-9]{36,}",
    r"|github_pat_[A-Za-z0-9_]{22,}",
    r"|xox[bpoas]-[A-Za-z0-9\-]{10,}",
    r")"
);

/// The last net: [`KEY_SHAPES_PATTERN`], compiled once.
static KEY_SHAPES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(KEY_SHAPES_PATTERN).expect("key-shape pattern compiles"));

thread_local! {
    /// This thread's handle on [`KEY_SHAPES`] (the compiled program is
    /// shared). A regex keeps its search caches in a pool whose fast path
    /// serves only the thread that first used it; every other thread takes
    /// a cache from behind a lock. Asked several times per exchange on every
    /// proxy worker, each thread asks its own clone.
    static KEY_SHAPES_HERE: Regex = KEY_SHAPES.clone();
    /// This thread's handle on [`SECRET_FIELD`], for the same reason.
    static SECRET_FIELD_HERE: Regex = SECRET_FIELD.clone();
}

/// The fewest bytes a [`KEY_SHAPES`] match takes, from the pattern itself:
/// most header values are shorter and skip the scan (0, scanning all, if it
/// cannot be worked out).
static KEY_SHAPE_MIN: LazyLock<usize> = LazyLock::new(|| {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(KEY_SHAPES_PATTERN)
        .ok()
        .and_then(|hir| hir.properties().minimum_len())
        .unwrap_or(0)
});

/// Texts up to this long (header values, URLs) are checked with
/// [`has_key_run`] before the regex: for a short text the search's own
/// setup costs more than the scan.
const SHORT_TEXT: usize = 256;

/// Whether `hay` holds `min` bytes in a row of `[A-Za-z0-9_-]`, which every
/// key shape is made of (a test holds [`KEY_SHAPES_PATTERN`] to that): a
/// date, a content type or a host name has no such run and holds no key.
fn has_key_run(hay: &[u8], min: usize) -> bool {
    let mut run = 0;
    for &b in hay {
        if is_key_byte(b) {
            run += 1;
            if run >= min {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// A byte of `[A-Za-z0-9_-]`, what key shapes are made of.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `"name": "value"` for the secret-named JSON fields (the value with its
/// escapes, as it appears in the body).
static SECRET_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?i-u)"(api[_\-]?key|access[_\-]?token|refresh[_\-]?token|id[_\-]?token"#,
        r#"|client[_\-]?secret|password|secret|private[_\-]?key)"\s*:\s*"((?:[^"\\]|\\.)*)""#
    ))
    .expect("secret-field pattern compiles")
});

/// Every [`SECRET_FIELD`] match holds a field name ending in `key`, `token`,
/// `secret` or `password`, then its closing quote, so it holds one of these
/// 16 three-byte tails (`ey"`, `en"`, `et"`, `rd"` in each ASCII case).
/// Finding none answers for the whole regex, whose own prefilter is the `"`
/// it starts with: JSON holds one every few bytes. A SIMD searcher (Teddy);
/// `None` where the CPU has none, and the regex runs as before.
static SECRET_FIELD_TAILS: LazyLock<Option<aho_corasick::packed::Searcher>> = LazyLock::new(|| {
    let mut tails = Vec::with_capacity(16);
    for tail in [b"ey", b"en", b"et", b"rd"] {
        for case in 0..4u8 {
            let mut t = tail.to_vec();
            for (i, b) in t.iter_mut().enumerate() {
                if case & (1 << i) != 0 {
                    b.make_ascii_uppercase();
                }
            }
            t.push(b'"');
            tails.push(t);
        }
    }
    aho_corasick::packed::Searcher::new(tails)
});

/// False when `hay` holds no [`SECRET_FIELD`] match.
fn may_hold_secret_field(hay: &[u8]) -> bool {
    SECRET_FIELD_TAILS
        .as_ref()
        .is_none_or(|s| s.find(hay).is_some())
}

/// The redaction policy of one engine: the built-in lists plus the config's
/// `redact_headers` and `redact_query`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    headers: Vec<String>,
    query: Vec<String>,
}

impl Redactor {
    /// A policy with extra header names and query parameter names (any case).
    pub fn new(extra_headers: &[String], extra_query: &[String]) -> Self {
        Self {
            headers: extra_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            query: extra_query.iter().map(|q| q.to_ascii_lowercase()).collect(),
        }
    }

    /// Redact everything in a flow that can carry a secret: `url`, `path`,
    /// both header lists, both bodies, WebSocket messages and the error message. The entry
    /// point; idempotent.
    pub fn flow(&self, f: &mut Flow) {
        if let Cow::Owned(u) = self.url(&f.url) {
            f.url = u;
        }
        if let Cow::Owned(p) = self.url(&f.path) {
            f.path = p;
        }
        self.headers(&mut f.request_headers);
        self.response_head(f);
        self.ending(f);
    }

    /// What a flow gains when its response head arrives: the response headers.
    pub fn response_head(&self, f: &mut Flow) {
        self.headers(&mut f.response_headers);
    }

    /// What a flow gains when it ends: bodies, WebSocket messages, the error.
    /// With [`flow`](Self::flow) at its start and [`response_head`](Self::response_head)
    /// in between, every part is redacted once.
    pub fn ending(&self, f: &mut Flow) {
        let form = |ct: &Option<String>| {
            ct.as_deref()
                .is_some_and(|c| c.contains("x-www-form-urlencoded"))
        };
        f.request_body = self.body_as(&f.request_body, form(&f.request_content_type));
        f.response_body = self.body_as(&f.response_body, form(&f.response_content_type));
        self.ws_messages(&mut f.ws_messages);
        if let Some(m) = &f.error_message {
            if let Cow::Owned(m) = self.url(m) {
                f.error_message = Some(m);
            }
        }
    }

    /// WebSocket messages redacted like bodies (compressed payloads are
    /// opaque bytes and stay as they are).
    pub fn ws_messages(&self, messages: &mut [crate::flow::WsMessage]) {
        for m in messages.iter_mut().filter(|m| !m.compressed) {
            m.data = self.body(&m.data);
        }
    }

    /// True when a header (name in any case) is redacted as a whole.
    pub fn is_redacted_header(&self, name: &str) -> bool {
        ALWAYS_REDACTED.iter().any(|n| n.eq_ignore_ascii_case(name))
            || self.headers.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// True when a query parameter (name in any case) is redacted.
    pub fn is_redacted_query(&self, name: &str) -> bool {
        ALWAYS_REDACTED_QUERY
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            || self.query.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Redact captured headers in place: credential headers as a whole, key
    /// shapes in any other value.
    pub fn headers(&self, headers: &mut Headers) {
        for (name, value) in headers.iter_mut() {
            if self.is_redacted_header(name) {
                let r = redact_value(value);
                if r != *value {
                    *value = r;
                }
            } else if let Cow::Owned(v) = key_shapes_str(value) {
                *value = v;
            }
        }
    }

    /// A URL, or a path with its query: userinfo, credential query
    /// parameters and key shapes redacted.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        // One step can expose what another then redacts (a shortened query
        // value moves where userinfo is found): repeat to a fixed point, so
        // redacting twice changes nothing. A URL without secrets takes one pass.
        let Cow::Owned(mut out) = self.url_once(url) else {
            return Cow::Borrowed(url);
        };
        for _ in 0..FIXPOINT_PASSES {
            match self.url_once(&out) {
                Cow::Owned(next) if next != out => out = next,
                _ => break,
            }
        }
        Cow::Owned(out)
    }

    fn url_once<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(url);
        if let Some(u) = redact_userinfo(&out) {
            out = Cow::Owned(u);
        }
        if let Some(u) = self.redact_query_string(&out) {
            out = Cow::Owned(u);
        }
        match key_shapes_str(&out) {
            Cow::Owned(u) => Cow::Owned(u),
            Cow::Borrowed(_) => out,
        }
    }

    /// A captured body (or a live slice of one): secret-named JSON fields and
    /// key shapes redacted; the same `Bytes` back when nothing matched.
    pub fn body(&self, body: &Bytes) -> Bytes {
        self.body_as(body, false)
    }

    /// [`Redactor::body`], also treating the body as `k=v&…` form data.
    fn body_as(&self, body: &Bytes, form: bool) -> Bytes {
        let mut out = self.body_once(body, form);
        // As for URLs: to a fixed point (a body without secrets takes one pass).
        for _ in 0..FIXPOINT_PASSES {
            if out.as_ptr() == body.as_ptr() && out.len() == body.len() {
                break;
            }
            let next = self.body_once(&out, form);
            if next == out {
                break;
            }
            out = next;
        }
        out
    }

    fn body_once(&self, body: &Bytes, form: bool) -> Bytes {
        if body.is_empty() {
            return body.clone();
        }
        let mut out: Cow<'_, [u8]> = Cow::Borrowed(body);
        if may_hold_secret_field(&out) && SECRET_FIELD_HERE.with(|re| re.is_match(&out)) {
            if let Cow::Owned(b) = SECRET_FIELD.replace_all(&out, |c: &Captures<'_>| json_field(c))
            {
                out = Cow::Owned(b);
            }
        }
        if let Cow::Owned(b) = key_shapes(&out) {
            out = Cow::Owned(b);
        }
        // Last: the steps above can turn a body into valid UTF-8 (a masked
        // non-UTF-8 secret), and redacting twice must change nothing more.
        if form {
            if let Ok(text) = std::str::from_utf8(&out) {
                if let Some(t) = self.redact_pairs(text) {
                    out = Cow::Owned(t.into_bytes());
                }
            }
        }
        match out {
            Cow::Borrowed(_) => body.clone(),
            Cow::Owned(b) => Bytes::from(b),
        }
    }

    /// The query of a URL or path with the credential parameters redacted;
    /// `None` when there is nothing to change.
    fn redact_query_string(&self, url: &str) -> Option<String> {
        let start = url.find('?')? + 1;
        let end = url[start..].find('#').map_or(url.len(), |i| start + i);
        let redacted = self.redact_pairs(&url[start..end])?;
        Some(format!("{}{redacted}{}", &url[..start], &url[end..]))
    }

    /// `k=v&k=v` with the credential keys' values redacted.
    fn redact_pairs(&self, query: &str) -> Option<String> {
        let mut changed = false;
        let pairs: Vec<Cow<'_, str>> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if self.is_redacted_query(&percent_decoded(k)) => {
                    let r = redact_token(v);
                    if r == v {
                        Cow::Borrowed(pair)
                    } else {
                        changed = true;
                        Cow::Owned(format!("{k}={r}"))
                    }
                }
                _ => Cow::Borrowed(pair),
            })
            .collect();
        changed.then(|| pairs.join("&"))
    }
}

/// `scheme://user:pass@host…` with the userinfo redacted; `None` when there
/// is none.
fn redact_userinfo(url: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..auth_end].rfind('@')?;
    let userinfo = &rest[..at];
    let r = redact_token(userinfo);
    (r != userinfo).then(|| format!("{}{r}{}", &url[..scheme_end], &rest[at..]))
}

/// Decode `%XX` in a query key (for the comparison only).
fn percent_decoded(s: &str) -> Cow<'_, str> {
    if !s.contains('%') && !s.contains('+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A secret-named JSON field with its string value redacted (unescaped,
/// redacted, escaped again so the document stays valid JSON).
fn json_field(c: &Captures<'_>) -> Vec<u8> {
    let (Some(whole), Some(value)) = (c.get(0), c.get(2)) else {
        return c[0].to_vec();
    };
    let raw = value.as_bytes();
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    let redacted = match serde_json::from_slice::<String>(&quoted) {
        Ok(plain) => redact_token(&plain),
        Err(_) => MASK.to_string(),
    };
    let escaped = serde_json::to_string(&redacted).unwrap_or_else(|_| format!("\"{MASK}\""));
    // Everything up to the value's opening quote, then the redacted string.
    let mut out = whole.as_bytes()[..value.start() - whole.start() - 1].to_vec();
    out.extend_from_slice(escaped.as_bytes());
    out
}

/// Every key shape in `hay` redacted. A redacted form keeps the last 4
/// characters; when those and the text after the key would read as another
/// key (`ghp_…xoxb` before `-1234567890-abcdef`), they go too, so a second
/// pass finds nothing more to do.
fn key_shapes(hay: &[u8]) -> Cow<'_, [u8]> {
    let min = *KEY_SHAPE_MIN;
    if hay.len() < min || (hay.len() <= SHORT_TEXT && !has_key_run(hay, min)) {
        return Cow::Borrowed(hay);
    }
    // `is_match` first: nearly no text holds a key, and it answers without
    // the capture slots `replace_all` allocates on every call.
    let found = KEY_SHAPES_HERE.with(|re| re.is_match(hay));
    if !found {
        return Cow::Borrowed(hay);
    }
    KEY_SHAPES.replace_all(hay, |c: &Captures<'_>| {
        let whole = &c[0];
        let end = c.get(0).map_or(hay.len(), |m| m.end());
        let r = redact_token(&String::from_utf8_lossy(whole));
        if let Some(i) = r.rfind(ELLIPSIS) {
            let tail = i + ELLIPSIS.len_utf8();
            let mut probe = r.as_bytes()[tail..].to_vec();
            probe.extend_from_slice(&hay[end..(end + 96).min(hay.len())]);
            if KEY_SHAPES
                .find(&probe)
                .is_some_and(|m| m.start() < r.len() - tail)
            {
                return r.as_bytes()[..tail].to_vec();
            }
        }
        r.into_bytes()
    })
}

/// The key-shape net over text.
fn key_shapes_str(s: &str) -> Cow<'_, str> {
    match key_shapes(s.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Copy headers for a Flow, unredacted: names as in the map (lowercase),
/// lossy UTF-8 values, in the map's order (names in first-seen order,
/// repeated values together). The proxy's `Record` runs a [`Redactor`] over
/// the flow before anyone sees it, so each value is scanned once.
pub fn copy_headers(headers: &http::HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                crate::flow::lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// True when a (lowercase) header name is redacted in captures.
pub fn is_redacted(name: &str, extra_redacted: &[String]) -> bool {
    Redactor::new(extra_redacted, &[]).is_redacted_header(name)
}

/// True when a value is already in redacted form (so redacting is idempotent).
fn is_redacted_form(token: &str) -> bool {
    token == MASK || token.contains(ELLIPSIS)
}

/// Redact one credential value: an auth scheme (`Bearer`, `Basic`, …) stays,
/// the token keeps its first 3 and last 4 characters (`Bearer sk-…abcd`);
/// a token under 16 characters is fully masked (`Basic ****`). A value
/// already redacted comes back unchanged.
pub fn redact_value(value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        return String::new();
    }
    let (scheme, token) = match value.split_once(' ') {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (Some(scheme), rest.trim_start())
        }
        _ => (None, value),
    };
    if is_redacted_form(token) {
        return value.to_string();
    }
    let hidden = redact_token(token);
    match scheme {
        Some(scheme) => format!("{scheme} {hidden}"),
        None => hidden,
    }
}

/// Redact a bare secret (no auth scheme): its first 3 and last 4 characters
/// around `…`, or `****` under 16 characters; a redacted form stays as it is.
pub fn redact_token(token: &str) -> String {
    if token.is_empty() || is_redacted_form(token) {
        return token.to_string();
    }
    let chars: Vec<char> = token.chars().collect();
    if chars.len() < MIN_PARTIAL {
        return MASK.to_string();
    }
    let mut s: String = chars[..KEEP_PREFIX].iter().collect();
    s.push(ELLIPSIS);
    s.extend(&chars[chars.len() - KEEP_SUFFIX..]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail pre-check never hides a field the regex would redact.
    #[test]
    fn the_secret_field_precheck_finds_every_field_the_regex_does() {
        for name in SECRET_FIELDS {
            for variant in [
                name.to_string(),
                name.to_uppercase(),
                name.replace('_', "-"),
                name.replace('_', ""),
                format!("{}{}", name[..1].to_uppercase(), &name[1..]),
            ] {
                let body = format!(r#"{{"x": 1, "{variant}" : "hunter2"}}"#);
                assert!(SECRET_FIELD.is_match(body.as_bytes()), "regex: {body}");
                assert!(may_hold_secret_field(body.as_bytes()), "pre-check: {body}");
                // Short haystacks take the searcher's other path.
                let short = format!(r#""{variant}":"x""#);
                assert!(may_hold_secret_field(short.as_bytes()), "{short}");
            }
        }
        let plain = br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a key to the door"}}"#;
        assert!(!may_hold_secret_field(plain));
    }

    proptest::proptest! {
        #[test]
        fn no_regex_match_without_a_tail(s in r#"(?:[a-zA-Z_ :]|"|api_?key|token|secret|password|PassWord|KEY){0,24}"#) {
            let b = s.as_bytes();
            proptest::prop_assert!(!SECRET_FIELD.is_match(b) || may_hold_secret_field(b));
        }
    }

    /// Found by the redact fuzz target: the kept last 4 of a GitHub token
    /// and the text after it read as a Slack token on a second pass.
    #[test]
    fn text_shorter_than_any_key_shape_is_not_scanned_and_the_shortest_still_is() {
        // By hand from the pattern: `xox?-` and ten more is the shortest shape.
        assert_eq!(*KEY_SHAPE_MIN, 15);
        let shortest = "xoxb-0123456789";
        assert_eq!(shortest.len(), 15);
        assert!(matches!(key_shapes_str(shortest), Cow::Owned(_)));
        assert!(matches!(key_shapes_str(&shortest[..14]), Cow::Borrowed(_)));
        let mut h = HeaderMap::new();
        h.append("x-slack", HeaderValue::from_static("xoxb-0123456789"));
        h.append("accept", HeaderValue::from_static("*/*"));
        let got = captured(&h, &[]);
        assert_ne!(
            got[0].1, "xoxb-0123456789",
            "a 15-byte key in a header is redacted"
        );
        assert_eq!(got[1].1, "*/*");
    }

    #[test]
    fn every_key_shape_is_made_of_key_run_bytes() {
        use regex_syntax::hir::{Class, Hir, HirKind};
        // What `has_key_run` relies on: every byte a key shape can match is
        // a key byte (a new shape with a `.` in it fails here).
        fn bytes_ok(hir: &Hir, bad: &mut Vec<String>) {
            let ok = is_key_byte;
            match hir.kind() {
                HirKind::Empty | HirKind::Look(_) => {}
                HirKind::Literal(l) => {
                    if !l.0.iter().all(|b| ok(*b)) {
                        bad.push(format!("{l:?}"));
                    }
                }
                HirKind::Class(Class::Bytes(c)) => {
                    for r in c.ranges() {
                        if !(r.start()..=r.end()).all(ok) {
                            bad.push(format!("{r:?}"));
                        }
                    }
                }
                HirKind::Class(Class::Unicode(c)) => {
                    for r in c.ranges() {
                        if !(r.start()..=r.end()).all(|ch| u8::try_from(ch).is_ok_and(ok)) {
                            bad.push(format!("{r:?}"));
                        }
                    }
                }
                HirKind::Repetition(r) => bytes_ok(&r.sub, bad),
                HirKind::Capture(c) => bytes_ok(&c.sub, bad),
                HirKind::Concat(v) | HirKind::Alternation(v) => {
                    for h in v {
                        bytes_ok(h, bad);
                    }
                }
            }
        }
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(KEY_SHAPES_PATTERN)
            .expect("pattern parses");
        let mut bad = Vec::new();
        bytes_ok(&hir, &mut bad);
        assert!(bad.is_empty(), "outside [A-Za-z0-9_-]: {bad:?}");
        // And the scan itself: a key found in a short text, nothing in a date.
        assert!(has_key_run(b"Bearer sk-ant-api03-AAAAAAAAAAAAAAAA", 15));
        assert!(!has_key_run(b"Fri, 04 Dec 2026 19:31:21 GMT", 15));
        assert!(!has_key_run(b"01234567890123", 15));
        let in_header = format!("x {}", "ghp_".to_owned() + &"a".repeat(36));
        assert!(matches!(key_shapes_str(&in_header), Cow::Owned(_)));
    }

    #[test]
    fn a_kept_tail_never_starts_another_key() {
        let r = Redactor::new(&[], &[]);
        let body = Bytes::from_static(
            b"x ghp_EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEExoxb-1234567890-abcdef",
        );
        let once = r.body(&body);
        assert_eq!(r.body(&once), once);
        let text = String::from_utf8_lossy(&once);
        assert!(!text.contains("EEEE"), "{text}");
        assert!(text.contains("ghp\u{2026}"), "{text}");
    }
    use http::header::{HeaderMap, HeaderName, HeaderValue};

    // Real shapes of every provider's credentials (made-up values).
    const ANT: &str =
        "sk-ant-api03-Xq3Tz8Lm2Pw9Rk5Vn7Bc4Hd6Jf1Gs0Ya-Ue2Io8Op3As9Df4Gh7Jk1Lz5Xc6Vb0Nm-QwErTyAA";
    const ANT_OAUTH: &str =
        "sk-ant-oat01-Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8tZnJlZA-AbCdAA";
    const OAI_PROJ: &str =
        "sk-proj-4fGh8JkL2mNp6QrS0tUv3WxY7zAb1CdE5fGh9IjK-LmNo_PqRsTuVwXyZ0123456789abcdEF";
    const OAI_LEGACY: &str = "sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34";
    const AZURE: &str = "3f9c2a7b1e5d4c8a9b0f6e2d1c7a5b3e";
    const GEMINI: &str = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";
    const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SIG: &str = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";
    const AWS_STS: &str = "IQoJb3JpZ2luX2VjEBYaCXVzLWVhc3QtMSJHMEUCIQDnV2eYz8Jd7hEXAMPLETOKEN";
    const GH: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    const GHS: &str = "ghs_9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX";
    const SLACK: &str = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";

    /// Every secret of the table, for the "never survives" check.
    const SECRETS: &[&str] = &[
        ANT, ANT_OAUTH, OAI_PROJ, OAI_LEGACY, AZURE, GEMINI, AWS_ID, AWS_SIG, AWS_STS, GH, GHS,
        SLACK,
    ];

    /// The part of a secret that must not appear anywhere after redaction:
    /// all but its first 3 and last 4 characters.
    fn middle(secret: &str) -> &str {
        &secret[3..secret.len() - 4]
    }

    #[test]
    fn provider_headers_table() {
        let cases: Vec<(&str, String, String)> = vec![
            ("api-key", AZURE.into(), "3f9…5b3e".into()),
            ("x-goog-api-key", GEMINI.into(), "AIz…MBWY".into()),
            ("x-amz-security-token", AWS_STS.into(), "IQo…OKEN".into()),
            (
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential={AWS_ID}/20261202/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={AWS_SIG}"),
                "AWS…1024".into(),
            ),
            ("x-api-key", ANT.into(), "sk-…TyAA".into()),
            ("anthropic-api-key", ANT.into(), "sk-…TyAA".into()),
            ("authorization", format!("Bearer {ANT_OAUTH}"), "Bearer sk-…CdAA".into()),
            ("authorization", format!("Bearer {OAI_PROJ}"), "Bearer sk-…cdEF".into()),
            ("openai-api-key", OAI_LEGACY.into(), "sk-…Wx34".into()),
            ("authorization", format!("token {GH}"), "token ghp…8B4a".into()),
            ("x-auth-token", GHS.into(), "ghs…V8wX".into()),
            ("x-access-token", SLACK.into(), "xox…UvWx".into()),
            ("authorization", format!("Bearer {SLACK}"), "Bearer xox…UvWx".into()),
            // Not a credential header: only the key shape inside is redacted.
            ("x-debug", format!("upstream key {OAI_PROJ} used"), "upstream key sk-…cdEF used".into()),
            ("x-forwarded-key", format!("k={GEMINI}"), "k=AIz…MBWY".into()),
            ("user-agent", "claude-cli/1.0.0 (external, cli)".into(), "claude-cli/1.0.0 (external, cli)".into()),
        ];
        let r = Redactor::new(&[], &[]);
        for (name, value, want) in &cases {
            let mut h: Headers = vec![((*name).to_string(), value.clone())];
            r.headers(&mut h);
            assert_eq!(h[0].1, *want, "{name}: {value}");
            for s in SECRETS {
                assert!(!h[0].1.contains(middle(s)), "{name} leaks {s}");
            }
            let mut again = h.clone();
            r.headers(&mut again);
            assert_eq!(again, h, "idempotent for {name}");
        }
    }

    #[test]
    fn provider_urls_table() {
        let cases: Vec<(String, String)> = vec![
            // Gemini: ?key= beside harmless parameters.
            (
                format!("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={GEMINI}"),
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=AIz…MBWY".into(),
            ),
            (
                format!("/v1beta/models/gemini-pro:generateContent?KEY={GEMINI}"),
                "/v1beta/models/gemini-pro:generateContent?KEY=AIz…MBWY".into(),
            ),
            // AWS SigV4 presigned URL: credential, token and signature go, the rest stays.
            (
                format!("https://bucket.s3.amazonaws.com/o.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AWS_ID}%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261202T000000Z&X-Amz-Expires=900&X-Amz-Security-Token={AWS_STS}&X-Amz-SignedHeaders=host&X-Amz-Signature={AWS_SIG}"),
                "https://bucket.s3.amazonaws.com/o.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKI…uest&X-Amz-Date=20261202T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=IQo…OKEN&X-Amz-SignedHeaders=host&X-Amz-Signature=fe5…1024".into(),
            ),
            // Azure OpenAI: api-version stays; an api-key parameter would not.
            (
                format!("https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21&api_key={AZURE}"),
                "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21&api_key=3f9…5b3e".into(),
            ),
            // Slack and generic tokens; a fragment survives.
            (
                format!("https://slack.com/api/chat.postMessage?channel=C1&token={SLACK}#x"),
                "https://slack.com/api/chat.postMessage?channel=C1&token=xox…UvWx#x".into(),
            ),
            (
                "https://h/cb?code=abc&access_token=short&sig=0123456789abcdef0123&auth=x".into(),
                "https://h/cb?code=abc&access_token=****&sig=012…0123&auth=****".into(),
            ),
            // Userinfo: GitHub's x-access-token form and a plain password.
            (
                format!("https://x-access-token:{GHS}@github.com/o/r.git"),
                "https://x-a…V8wX@github.com/o/r.git".into(),
            ),
            (
                "http://admin:hunter2@10.0.0.1:8080/status?x=1".into(),
                "http://****@10.0.0.1:8080/status?x=1".into(),
            ),
            // A key in the path (no parameter name to go by): the net.
            (
                format!("https://api.example.com/keys/{OAI_LEGACY}/usage"),
                "https://api.example.com/keys/sk-…Wx34/usage".into(),
            ),
            ("https://api.anthropic.com/v1/messages?beta=true".into(), "https://api.anthropic.com/v1/messages?beta=true".into()),
        ];
        let r = Redactor::new(&[], &[]);
        for (url, want) in &cases {
            let got = r.url(url);
            assert_eq!(got, *want, "{url}");
            for s in SECRETS {
                assert!(!got.contains(middle(s)), "{url} leaks {s}");
            }
            assert_eq!(r.url(&got), got, "idempotent: {url}");
        }
        // `redact_query` adds names, any case.
        let r = Redactor::new(&[], &["Session".to_string()]);
        assert_eq!(
            r.url("/x?session=0123456789abcdefghij&a=1"),
            "/x?session=012…ghij&a=1"
        );
    }

    #[test]
    fn json_and_form_bodies() {
        let r = Redactor::new(&[], &[]);
        let body = format!(
            "{{\"model\":\"claude\",\"api_key\":\"{AZURE}\",\"auth\":{{\"apiKey\": \"{GEMINI}\",\"client_secret\" : \"s3cr\\\"et-with-escapes-long\"}},\"refresh_token\":\"{ANT_OAUTH}\",\"password\":\"hunter2\",\"messages\":[{{\"content\":\"my key is {OAI_PROJ}\"}}]}}"
        );
        let out = r.body(&Bytes::from(body.clone()));
        let text = std::str::from_utf8(&out).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(text).expect("still JSON");
        assert_eq!(v["model"], "claude");
        assert_eq!(v["api_key"], "3f9…5b3e");
        assert_eq!(v["auth"]["apiKey"], "AIz…MBWY");
        assert_eq!(v["auth"]["client_secret"], "s3c…long");
        assert_eq!(v["refresh_token"], "sk-…CdAA");
        assert_eq!(v["password"], "****");
        assert_eq!(v["messages"][0]["content"], "my key is sk-…cdEF");
        for s in SECRETS {
            assert!(!text.contains(middle(s)), "body leaks {s}");
        }
        assert_eq!(r.body(&out), out, "idempotent");
        // A body cut mid-way (max_body_size) is scanned all the same.
        let cut = &body.as_bytes()[..body.find("\"password\"").expect("field")];
        let out = r.body(&Bytes::copy_from_slice(cut));
        assert!(!String::from_utf8_lossy(&out).contains(middle(AZURE)));
        // Nothing to redact: the very same bytes come back.
        let plain = Bytes::from_static(b"{\"model\":\"gpt-4o\",\"stream\":true}");
        assert_eq!(r.body(&plain).as_ptr(), plain.as_ptr());
        // An OAuth token request, form-encoded.
        let mut f = crate::flow::Flow::new(
            crate::flow::Direction::Forward,
            "POST",
            "https://console.anthropic.com/v1/oauth/token",
            "console.anthropic.com",
            "/v1/oauth/token",
        );
        f.request_content_type = Some("application/x-www-form-urlencoded".into());
        f.request_body = Bytes::from(format!(
            "grant_type=refresh_token&refresh_token={ANT_OAUTH}&client_id=9d1c"
        ));
        f.response_body = Bytes::from(format!(
            "{{\"access_token\":\"{ANT}\",\"token_type\":\"bearer\",\"expires_in\":28800}}"
        ));
        r.flow(&mut f);
        assert_eq!(
            f.request_body,
            "grant_type=refresh_token&refresh_token=sk-…CdAA&client_id=9d1c"
        );
        assert_eq!(
            f.response_body,
            "{\"access_token\":\"sk-…TyAA\",\"token_type\":\"bearer\",\"expires_in\":28800}"
        );
    }

    #[test]
    fn redaction_table() {
        let cases: &[(&str, &str)] = &[
            (
                "Bearer sk-ant-api03-abcdefghijklmnopqrstuvwxyz-wxyz",
                "Bearer sk-…wxyz",
            ),
            ("sk-proj-0123456789abcdefABCD", "sk-…ABCD"),
            ("Basic dXNlcjpwYXNz", "Basic ****"),
            ("Bearer short", "Bearer ****"),
            ("tiny", "****"),
            ("", ""),
            ("   ", ""),
            ("session=0123456789abcdef; theme=dark", "ses…dark"),
            ("Bearer   spaced-out-token-0123456789", "Bearer spa…6789"),
            // Multibyte characters are counted as characters, never split.
            ("ééééééééééééééééééé€€€€", "ééé…€€€€"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_value(input), *want, "{input:?}");
        }
    }

    #[test]
    fn secret_never_survives() {
        let secret = "sk-ant-api03-SECRETSECRETSECRET-tail";
        let out = redact_value(&format!("Bearer {secret}"));
        assert!(!out.contains("SECRET"), "{out}");
        assert!(out.ends_with("tail"));
    }

    /// Headers as a flow holds them once redacted (with `extra` names).
    fn captured(h: &HeaderMap, extra: &[String]) -> crate::flow::Headers {
        let mut got = copy_headers(h);
        Redactor::new(extra, &[]).headers(&mut got);
        got
    }

    #[test]
    fn capture_keeps_order_and_redacts_credentials() {
        let mut h = HeaderMap::new();
        h.append("Host", HeaderValue::from_static("api.anthropic.com"));
        h.append(
            "X-Api-Key",
            HeaderValue::from_static("sk-ant-api03-0123456789abcdef-9876"),
        );
        h.append(
            "authorization",
            HeaderValue::from_static("Bearer 0123456789abcdefghij"),
        );
        h.append("cookie", HeaderValue::from_static("a=0123456789abcdefgh"));
        h.append("set-cookie", HeaderValue::from_static("x=1"));
        h.append(
            "set-cookie",
            HeaderValue::from_static("y=22222222222222222222"),
        );
        h.append(
            "proxy-authorization",
            HeaderValue::from_static("Basic Zm9vOmJhcmJhemJheg=="),
        );
        h.append(
            "x-custom-token",
            HeaderValue::from_static("0123456789abcdefXYZW"),
        );
        h.append("accept", HeaderValue::from_static("*/*"));
        h.append(
            HeaderName::from_static("x-bin"),
            HeaderValue::from_bytes(b"caf\xe9").expect("value"),
        );
        let got = captured(&h, &["X-Custom-Token".to_string()]);
        let want: Vec<(String, String)> = [
            ("host", "api.anthropic.com"),
            ("x-api-key", "sk-…9876"),
            ("authorization", "Bearer 012…ghij"),
            ("cookie", "a=0…efgh"),
            ("set-cookie", "****"),
            ("set-cookie", "y=2…2222"),
            ("proxy-authorization", "Basic Zm9…eg=="),
            ("x-custom-token", "012…XYZW"),
            ("accept", "*/*"),
            ("x-bin", "caf\u{fffd}"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_credential_headers_are_touched() {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append(
            "x-request-id",
            HeaderValue::from_static("req_0123456789abcdefghijkl"),
        );
        let got = captured(&h, &[]);
        assert_eq!(got[1].1, "req_0123456789abcdefghijkl");
        assert!(is_redacted("x-api-key", &[]));
        assert!(is_redacted("x-goog-api-key", &["x-goog-api-key".into()]));
        assert!(!is_redacted("content-type", &[]));
    }
}
