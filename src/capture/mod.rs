//! What happens to a captured exchange on its way into a Flow: classification,
//! secret redaction and bounded content decoding.

pub mod classify;
pub mod decode;
pub mod host;
pub mod redact;
pub mod sanitize;
