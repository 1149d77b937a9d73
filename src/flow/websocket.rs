//! The messages of a WebSocket flow (the handshake is the flow, status 101).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which peer sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WsFrom {
    /// The client (its frames are masked on the wire; stored unmasked).
    Client,
    /// The upstream server.
    Server,
}

impl WsFrom {
    /// `client` / `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Self::Client),
            "server" => Some(Self::Server),
            _ => None,
        }
    }
}

/// The kind of a WebSocket message (RFC 6455 §5.2 opcodes; fragments are
/// joined, so a continuation never appears here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WsOpcode {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl WsOpcode {
    /// The opcode for a frame's low nibble; `None` for continuation and reserved ones.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// Lowercase name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Text,
            Self::Binary,
            Self::Close,
            Self::Ping,
            Self::Pong,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// Ping, pong and close.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

impl fmt::Display for WsOpcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One WebSocket message as captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    pub from: WsFrom,
    /// Milliseconds from the start of the flow to the message's last byte.
    pub offset_ms: f64,
    pub opcode: WsOpcode,
    /// Full payload size (all fragments).
    pub size: u64,
    /// The first `max_body_size` bytes of the payload, unmasked.
    #[serde(with = "super::b64")]
    pub data: Bytes,
    /// Sent with `permessage-deflate` (RSV1): `data` is still compressed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compressed: bool,
}

impl WsMessage {
    /// The status code of a close message, when it carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == WsOpcode::Close && self.data.len() >= 2)
            .then(|| u16::from_be_bytes([self.data[0], self.data[1]]))
    }
}
