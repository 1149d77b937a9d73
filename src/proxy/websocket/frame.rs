//! A passive WebSocket frame reader (RFC 6455 §5): fed the bytes one side
//! sends, in whatever slices they arrive, it yields whole messages (fragments
//! joined, control frames on their own) without ever holding more than a
//! 14-byte header and the first `cap` bytes of the current message.
//!
//! It only watches: the bytes are relayed untouched by the caller. On a
//! protocol violation it stops reading (counting nothing more) rather than
//! guessing where the next frame starts.

use bytes::{Bytes, BytesMut};

use crate::flow::WsOpcode;

/// A whole message seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: WsOpcode,
    /// Payload bytes of all its frames.
    pub size: u64,
    /// The first `cap` bytes of the payload, unmasked.
    pub data: Bytes,
    /// RSV1 on the first frame (permessage-deflate).
    pub compressed: bool,
}

/// Why the reader gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Opcode 3–7 or 11–15.
    ReservedOpcode(u8),
    /// A control frame longer than 125 bytes or fragmented.
    BadControlFrame,
    /// A continuation frame with no message to continue.
    StrayContinuation,
    /// A new text/binary frame while a fragmented message is open.
    UnfinishedMessage,
    /// A 64-bit length with its top bit set.
    LengthOverflow,
}

#[derive(Debug)]
struct Partial {
    opcode: WsOpcode,
    size: u64,
    data: BytesMut,
    compressed: bool,
}

#[derive(Debug)]
enum State {
    /// Collecting the header; `need` is how many header bytes are known to be needed.
    Header { need: usize },
    /// Reading a payload.
    Payload {
        remaining: u64,
        mask: Option<[u8; 4]>,
        /// Payload bytes of this frame already read (mask key position).
        pos: u64,
        fin: bool,
        control: bool,
    },
    /// After a violation: ignore everything.
    Broken(Violation),
}

/// The reader for one direction of one connection.
#[derive(Debug)]
pub struct FrameReader {
    cap: usize,
    head: [u8; 14],
    head_len: usize,
    state: State,
    /// The text/binary message being assembled.
    message: Option<Partial>,
    /// The control frame being read (may interleave with a fragmented message).
    control: Option<Partial>,
}

impl FrameReader {
    /// A reader keeping at most `cap` payload bytes per message.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            head: [0; 14],
            head_len: 0,
            state: State::Header { need: 2 },
            message: None,
            control: None,
        }
    }

    /// The violation that stopped the reader, if any.
    pub fn violation(&self) -> Option<Violation> {
        match self.state {
            State::Broken(v) => Some(v),
            _ => None,
        }
    }

    /// Feed the next bytes; `out` gets every message they complete.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Message)) {
        while !bytes.is_empty() {
            match self.state {
                State::Broken(_) => return,
                State::Header { need } => {
                    let take = (need - self.head_len).min(bytes.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
                    self.head_len += take;
                    bytes = &bytes[take..];
                    if self.head_len < need {
                        continue;
                    }
                    let full = header_len(&self.head[..2]);
                    if self.head_len < full {
                        self.state = State::Header { need: full };
                        continue;
                    }
                    self.start_frame(out);
                }
                State::Payload {
                    remaining,
                    mask,
                    pos,
                    fin,
                    control,
                } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    let (chunk, rest) = bytes.split_at(take);
                    bytes = rest;
                    self.payload(chunk, mask, pos, control);
                    let remaining = remaining - take as u64;
                    if remaining == 0 {
                        self.end_frame(fin, control, out);
                    } else {
                        self.state = State::Payload {
                            remaining,
                            mask,
                            pos: pos + take as u64,
                            fin,
                            control,
                        };
                    }
                }
            }
        }
    }

    /// The header is complete: check it and start the payload.
    fn start_frame(&mut self, out: &mut impl FnMut(Message)) {
        let h = &self.head;
        let fin = h[0] & 0x80 != 0;
        let rsv1 = h[0] & 0x40 != 0;
        let code = h[0] & 0x0F;
        let masked = h[1] & 0x80 != 0;
        let (len, at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        self.head_len = 0;
        if len >> 63 != 0 {
            self.state = State::Broken(Violation::LengthOverflow);
            return;
        }
        let control = code >= 0x8;
        if control {
            let Some(opcode) = WsOpcode::from_code(code) else {
                self.state = State::Broken(Violation::ReservedOpcode(code));
                return;
            };
            if !fin || len > 125 {
                self.state = State::Broken(Violation::BadControlFrame);
                return;
            }
            self.control = Some(Partial {
                opcode,
                size: 0,
                data: BytesMut::new(),
                compressed: false,
            });
        } else if code == 0 {
            if self.message.is_none() {
                self.state = State::Broken(Violation::StrayContinuation);
                return;
            }
        } else {
            let Some(opcode) = WsOpcode::from_code(code) else {
                self.state = State::Broken(Violation::ReservedOpcode(code));
                return;
            };
            if self.message.is_some() {
                self.state = State::Broken(Violation::UnfinishedMessage);
                return;
            }
            self.message = Some(Partial {
                opcode,
                size: 0,
                data: BytesMut::new(),
                compressed: rsv1,
            });
        }
        if len == 0 {
            self.end_frame(fin, control, out);
        } else {
            self.state = State::Payload {
                remaining: len,
                mask,
                pos: 0,
                fin,
                control,
            };
        }
    }

    fn payload(&mut self, chunk: &[u8], mask: Option<[u8; 4]>, pos: u64, control: bool) {
        let cap = self.cap;
        let target = if control {
            self.control.as_mut()
        } else {
            self.message.as_mut()
        };
        let Some(p) = target else { return };
        p.size += chunk.len() as u64;
        let room = cap.saturating_sub(p.data.len()).min(chunk.len());
        if room == 0 {
            return;
        }
        let start = p.data.len();
        p.data.extend_from_slice(&chunk[..room]);
        if let Some(key) = mask {
            for (i, b) in p.data[start..].iter_mut().enumerate() {
                *b ^= key[((pos + i as u64) % 4) as usize];
            }
        }
    }

    fn end_frame(&mut self, fin: bool, control: bool, out: &mut impl FnMut(Message)) {
        self.state = State::Header { need: 2 };
        let done = if control {
            self.control.take()
        } else if fin {
            self.message.take()
        } else {
            None
        };
        if let Some(p) = done {
            out(Message {
                opcode: p.opcode,
                size: p.size,
                data: p.data.freeze(),
                compressed: p.compressed,
            });
        }
    }
}

/// The full header length implied by its first two bytes.
fn header_len(first: &[u8]) -> usize {
    let ext = match first[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if first[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encode one frame (the test's own writer, independent of the reader).
    fn frame(fin: bool, code: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | code];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xFFFF => {
                out.push(m | 0x7E);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 0x7F);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn read_all(cap: usize, wire: &[u8], slice: usize) -> (Vec<Message>, Option<Violation>) {
        let mut r = FrameReader::new(cap);
        let mut got = Vec::new();
        for chunk in wire.chunks(slice.max(1)) {
            r.feed(chunk, &mut |m| got.push(m));
        }
        (got, r.violation())
    }

    #[test]
    fn unmasked_and_masked_text_in_any_slicing() {
        let mut wire = frame(true, 0x1, b"hello", None);
        wire.extend(frame(true, 0x1, b"masked hi", Some([1, 2, 3, 4])));
        for slice in [1, 2, 3, 7, 64] {
            let (got, v) = read_all(1024, &wire, slice);
            assert_eq!(v, None);
            let texts: Vec<&[u8]> = got.iter().map(|m| &m.data[..]).collect();
            assert_eq!(texts, [&b"hello"[..], b"masked hi"], "slice {slice}");
            assert!(got.iter().all(|m| m.opcode == WsOpcode::Text));
        }
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths_are_capped_not_buffered() {
        let mid: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let mut wire = frame(true, 0x2, &mid, Some([9, 8, 7, 6]));
        wire.extend(frame(true, 0x2, &big, None));
        let (got, v) = read_all(100, &wire, 1000);
        assert_eq!(v, None);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].size, &got[0].data[..]), (300, &mid[..100]));
        assert_eq!((got[1].size, &got[1].data[..]), (70_000, &big[..100]));
    }

    #[test]
    fn fragments_join_and_control_frames_interleave() {
        let key = Some([0xAA, 0x55, 0x0F, 0xF0]);
        let mut wire = frame(false, 0x1, b"frag", key);
        wire.extend(frame(true, 0x9, b"ping!", key));
        wire.extend(frame(false, 0x0, b"men", key));
        wire.extend(frame(true, 0x0, b"ted", key));
        wire.extend(frame(true, 0x8, &[0x03, 0xE8, b'b', b'y', b'e'], None));
        let (got, v) = read_all(6, &wire, 5);
        assert_eq!(v, None);
        let seen: Vec<(WsOpcode, u64, &[u8])> = got
            .iter()
            .map(|m| (m.opcode, m.size, &m.data[..]))
            .collect();
        assert_eq!(
            seen,
            [
                (WsOpcode::Ping, 5, &b"ping!"[..]),
                (WsOpcode::Text, 10, b"fragme"),
                (WsOpcode::Close, 5, &[0x03, 0xE8, b'b', b'y', b'e'][..]),
            ]
        );
    }

    #[test]
    fn empty_frames_and_rsv1() {
        let mut wire = frame(true, 0xA, b"", None);
        let mut compressed = frame(true, 0x1, b"\x01\x02", None);
        compressed[0] |= 0x40;
        wire.extend(compressed);
        let (got, _) = read_all(10, &wire, 1);
        assert_eq!(got[0].opcode, WsOpcode::Pong);
        assert_eq!(got[0].size, 0);
        assert!(!got[0].compressed && got[1].compressed);
    }

    #[test]
    fn violations_stop_the_reader() {
        let cases: [(Vec<u8>, Violation); 4] = [
            (frame(true, 0x3, b"x", None), Violation::ReservedOpcode(3)),
            (frame(false, 0x9, b"x", None), Violation::BadControlFrame),
            (frame(true, 0x0, b"x", None), Violation::StrayContinuation),
            (
                [frame(false, 0x1, b"a", None), frame(true, 0x2, b"b", None)].concat(),
                Violation::UnfinishedMessage,
            ),
        ];
        for (wire, want) in cases {
            let mut w = wire.clone();
            w.extend(frame(true, 0x1, b"after", None));
            let (got, v) = read_all(64, &w, 3);
            assert_eq!(v, Some(want));
            assert!(got.is_empty(), "{want:?}: nothing read after a violation");
        }
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(read_all(64, &long, 4).1, Some(Violation::LengthOverflow));
        let control_too_long = frame(true, 0x9, &[0u8; 126], None);
        assert_eq!(
            read_all(64, &control_too_long, 50).1,
            Some(Violation::BadControlFrame)
        );
    }
}
