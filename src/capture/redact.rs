//! TODO(proxy-engine): redact
