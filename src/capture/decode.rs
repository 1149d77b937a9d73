//! TODO(proxy-engine): decode
