//! `y`: the selected flow as a curl command line, safe to paste.

use std::fmt::Write as _;

use crate::flow::Flow;

/// The flow as a curl command line (headers as captured: secrets stay redacted).
pub fn curl_command(f: &Flow) -> String {
    let mut parts = vec!["curl".to_string()];
    if f.method != "GET" {
        parts.push(format!("-X {}", shell_quote(&f.method)));
    }
    parts.push(shell_quote(&f.url));
    for (name, value) in &f.request_headers {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
    }
    if !f.request_body.is_empty() {
        match std::str::from_utf8(&f.request_body) {
            Ok(text) => parts.push(format!("--data-raw {}", shell_quote(text))),
            Err(_) => parts.push("--data-binary @body.bin".to_string()),
        }
    }
    parts.join(" ")
}

/// POSIX-shell quoting; control characters become `$'\xHH'` escapes so the
/// command is faithful yet safe to paste into a terminal.
fn shell_quote(s: &str) -> String {
    let escaped = |c: char| c.is_control() || crate::capture::sanitize::is_bidi_control(c);
    if s.chars().any(escaped) {
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c if escaped(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn curl_quotes_and_skips_hop_headers() {
        let mut f = Flow::new(
            crate::flow::Direction::Forward,
            "POST",
            "https://h/p?a=1&b='2'",
            "h",
            "/p",
        );
        f.request_headers = vec![
            ("host".into(), "h".into()),
            ("x-api-key".into(), "sk-…abcd".into()),
        ];
        f.request_body = Bytes::from_static(b"{\"it's\":1}");
        assert_eq!(
            curl_command(&f),
            r#"curl -X POST 'https://h/p?a=1&b='\''2'\''' -H 'x-api-key: sk-…abcd' --data-raw '{"it'\''s":1}'"#
        );
        assert_eq!(shell_quote("a\x1b[2J'b"), r"$'a\x1b[2J\'b'");
    }
}
