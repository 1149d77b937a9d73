//! Text from the network is untrusted: before anything reaches a terminal,
//! control characters and escape sequences become visible placeholders, and
//! bidirectional controls (which can make `evil.com/moc.doog` read as
//! something else, U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C)
//! become `�`.

use std::borrow::Cow;

/// Replace every C0/C1 control character (and DEL) with a visible stand-in:
/// U+2400 "control pictures" for C0 and DEL (`␛` for ESC), `�` for C1 and
/// for the bidirectional controls.
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

/// For log text shown by `ccproxy logs`: like [`sanitize_multiline`] but
/// tabs stay tabs.
pub fn sanitize_log(s: &str) -> Cow<'_, str> {
    let keep = |c: char| c == '\n' || c == '\t';
    if !s.chars().any(|c| !keep(c) && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if keep(c) { c } else { placeholder(c) })
            .collect(),
    )
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// The characters that reorder text on screen (embeddings, overrides,
/// isolates and the implicit marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

fn placeholder(c: char) -> char {
    match c {
        '\t' => ' ',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() || is_bidi_control(c) => '\u{fffd}',
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

    #[test]
    fn bidi_controls_are_neutralised() {
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            let s = format!("/files/{c}txt.exe");
            assert_eq!(sanitize(&s), "/files/\u{fffd}txt.exe", "U+{:04X}", c as u32);
            assert_eq!(sanitize_multiline(&s), "/files/\u{fffd}txt.exe");
        }
        assert_eq!(sanitize("a\u{200f}b\u{200e}c"), "a\u{fffd}b\u{fffd}c");
        assert_eq!(
            sanitize_log("t\tx\u{202e}gpj.exe\x1b[2J\n"),
            "t\tx\u{fffd}gpj.exe␛[2J\n"
        );
        // Right-to-left text itself is left alone.
        assert!(matches!(sanitize("שלום مرحبا"), Cow::Borrowed(_)));
    }
}
