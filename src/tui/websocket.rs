//! A WebSocket flow's messages as the text the Response tab shows: one line
//! per message, so scrolling and search work as for any body.
//!
//! ```text
//!     +12.345 ms  client → text      21 B  hello through ccproxy
//!     +12.401 ms  server ← binary   100 B  00 01 02 03 … (16 B shown)
//!     +13.002 ms  client → close      2 B  1000
//! ```

use std::fmt::Write as _;

use bytes::Bytes;

use crate::flow::{WsFrom, WsMessage, WsOpcode};

/// Bytes of a binary payload shown as hex.
const HEX_SHOWN: usize = 32;

/// The message list as text (terminal escapes are neutralised by the body view).
pub fn message_list(messages: &[WsMessage]) -> Bytes {
    let mut out = String::with_capacity(messages.len() * 64 + 64);
    let _ = writeln!(
        out,
        "{} WebSocket message{} (time since the request, sender, kind, size, payload)",
        messages.len(),
        if messages.len() == 1 { "" } else { "s" }
    );
    for m in messages {
        let arrow = match m.from {
            WsFrom::Client => "client →",
            WsFrom::Server => "server ←",
        };
        let _ = write!(
            out,
            "{:>12}  {arrow} {:<7}{:>9}  ",
            format!("+{:.3} ms", m.offset_ms),
            m.opcode.as_str(),
            size(m.size)
        );
        out.push_str(&payload(m));
        if (m.data.len() as u64) < m.size && m.opcode != WsOpcode::Close {
            out.push_str(" …");
        }
        out.push('\n');
    }
    Bytes::from(out)
}

fn size(n: u64) -> String {
    if n < 10_000 {
        format!("{n} B")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn payload(m: &WsMessage) -> String {
    if m.compressed {
        return format!("(permessage-deflate, {} B kept)", m.data.len());
    }
    match m.opcode {
        WsOpcode::Close => match m.close_code() {
            Some(code) => {
                let reason = String::from_utf8_lossy(&m.data[2..]);
                format!("{code} {}", one_line(&reason))
                    .trim_end()
                    .to_string()
            }
            None => String::new(),
        },
        WsOpcode::Binary => hex(&m.data),
        _ => match std::str::from_utf8(&m.data) {
            Ok(s) => one_line(s),
            // Cut inside a character at the capture cap, or not text at all.
            Err(e) if e.error_len().is_none() => {
                one_line(&String::from_utf8_lossy(&m.data[..e.valid_up_to()]))
            }
            Err(_) => hex(&m.data),
        },
    }
}

fn one_line(s: &str) -> String {
    s.replace('\r', "\\r").replace('\n', "\\n")
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(HEX_SHOWN * 3 + 24);
    for (i, byte) in b.iter().take(HEX_SHOWN).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{byte:02x}");
    }
    if b.len() > HEX_SHOWN {
        let _ = write!(s, " ({} B kept)", b.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: WsFrom, opcode: WsOpcode, size: u64, data: &[u8]) -> WsMessage {
        WsMessage {
            from,
            offset_ms: 12.5,
            opcode,
            size,
            data: Bytes::copy_from_slice(data),
            compressed: false,
        }
    }

    #[test]
    fn one_line_per_message() {
        let list = message_list(&[
            msg(WsFrom::Client, WsOpcode::Text, 11, b"hi\nthere\xe2\x82"),
            msg(WsFrom::Server, WsOpcode::Binary, 3, &[0, 1, 255]),
            msg(WsFrom::Client, WsOpcode::Close, 6, b"\x03\xe8done"),
            msg(WsFrom::Server, WsOpcode::Ping, 0, b""),
        ]);
        let text = String::from_utf8(list.to_vec()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("4 WebSocket messages"));
        assert!(
            lines[1].ends_with("client → text        11 B  hi\\nthere …"),
            "{}",
            lines[1]
        );
        assert!(lines[1].starts_with("  +12.500 ms"), "{}", lines[1]);
        assert!(
            lines[2].ends_with("server ← binary       3 B  00 01 ff"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].ends_with("close        6 B  1000 done"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("ping"), "{}", lines[4]);
    }
}
