//! The one log-tail helper: the last lines of a log, for `ccproxy logs` and
//! for error messages that quote what a child process said.

use std::path::Path;

/// The last `n` lines of `text` (with their newlines).
pub fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    match trimmed.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// The last `n` lines a file gained after byte `offset`, without the final
/// newline; empty when the file cannot be read.
pub fn tail_file(path: &Path, offset: u64, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    last_lines(&text, n).trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_cases() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn tail_of_a_file_after_an_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old\nnew1\nnew2\nnew3\n").expect("write");
        assert_eq!(tail_file(&path, 4, 2), "new2\nnew3");
        assert_eq!(tail_file(&path, 4, 9), "new1\nnew2\nnew3");
        assert_eq!(tail_file(&dir.path().join("none"), 0, 3), "");
    }
}
