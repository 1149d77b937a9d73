//! Text from the network is untrusted: before anything reaches a terminal,
//! control characters and escape sequences become visible placeholders.

use std::borrow::Cow;

/// Replace every C0/C1 control character (and DEL) with a visible stand-in:
/// U+2400 "control pictures" for C0 and DEL (`␛` for ESC), `�` for C1.
/// Tabs become a single space so column layout stays predictable.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(placeholder).collect())
}

/// Like [`sanitize`] but keeps `\n` (for multi-line body views).
pub fn sanitize_multiline(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if c == '\n' { c } else { placeholder(c) })
            .collect(),
    )
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
}

fn placeholder(c: char) -> char {
    match c {
        '\t' => ' ',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() => '\u{fffd}',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_visible() {
        assert_eq!(sanitize("a\x1b[31mred\x07"), "a␛[31mred␇");
        assert_eq!(sanitize("osc\x1b]52;c;ZZ\x1b\\"), "osc␛]52;c;ZZ␛\\");
        assert_eq!(sanitize("c1\u{9b}31m"), "c1\u{fffd}31m");
        assert_eq!(sanitize("del\x7f"), "del␡");
        assert_eq!(sanitize("line\r\nnext"), "line␍␊next");
        assert_eq!(sanitize_multiline("line\r\nnext"), "line␍\nnext");
        assert!(matches!(sanitize("plain ünïcode"), Cow::Borrowed(_)));
    }
}
