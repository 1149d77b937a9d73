//! TODO(proxy-engine): classify
