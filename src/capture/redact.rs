//! Secrets never reach storage, the TUI or an export in the clear: the headers
//! that carry credentials keep a short prefix and their last four characters,
//! enough to tell two keys apart, never enough to use one. What is forwarded
//! upstream is untouched; this only shapes the captured copy.

use crate::flow::Headers;

/// Header names that always carry credentials.
pub const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// Stand-in for the hidden middle of a secret.
const ELLIPSIS: char = '…';
/// What a secret too short to show any of becomes.
const MASK: &str = "****";
/// Characters kept at the start of a token (`sk-`).
const KEEP_PREFIX: usize = 3;
/// Characters kept at the end of a token.
const KEEP_SUFFIX: usize = 4;
/// Tokens shorter than this are masked entirely.
const MIN_PARTIAL: usize = 16;

/// Copy headers for a Flow: lowercase names, lossy UTF-8 values, in the map's
/// order (names in first-seen order, repeated values together), with the
/// credential headers and `extra_redacted` (names, any case) redacted.
pub fn capture_headers(headers: &http::HeaderMap, extra_redacted: &[String]) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = if is_redacted(&name, extra_redacted) {
                redact_value(&value)
            } else {
                value.into_owned()
            };
            (name, value)
        })
        .collect()
}

/// True when a (lowercase) header name is redacted in captures.
pub fn is_redacted(name: &str, extra_redacted: &[String]) -> bool {
    ALWAYS_REDACTED.contains(&name) || extra_redacted.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Redact one credential value: an auth scheme (`Bearer`, `Basic`, …) stays,
/// the token keeps its first 3 and last 4 characters (`Bearer sk-…abcd`);
/// a token under 16 characters is fully masked (`Basic ****`).
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
    let chars: Vec<char> = token.chars().collect();
    let hidden = if chars.len() < MIN_PARTIAL {
        MASK.to_string()
    } else {
        let mut s: String = chars[..KEEP_PREFIX].iter().collect();
        s.push(ELLIPSIS);
        s.extend(&chars[chars.len() - KEEP_SUFFIX..]);
        s
    };
    match scheme {
        Some(scheme) => format!("{scheme} {hidden}"),
        None => hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HeaderName, HeaderValue};

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
        let got = capture_headers(&h, &["X-Custom-Token".to_string()]);
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
        let got = capture_headers(&h, &[]);
        assert_eq!(got[1].1, "req_0123456789abcdefghijkl");
        assert!(is_redacted("x-api-key", &[]));
        assert!(is_redacted("x-goog-api-key", &["x-goog-api-key".into()]));
        assert!(!is_redacted("content-type", &[]));
    }
}
