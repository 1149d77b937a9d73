//! The one host normaliser: every place that compares, caches or records a
//! host name goes through [`normalize`].

/// Lowercase, without port, IPv6 brackets or a trailing dot.
pub fn normalize(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]` or `[::1]:443`
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else if host.matches(':').count() == 1 {
        // `name:port`; a bare IPv6 address has several colons and no port.
        host.split_once(':').map_or(host, |(name, _)| name)
    } else {
        host
    };
    bare.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn forms_of_one_host_agree() {
        for (input, want) in [
            ("API.Anthropic.com", "api.anthropic.com"),
            ("api.anthropic.com.", "api.anthropic.com"),
            ("api.anthropic.com:443", "api.anthropic.com"),
            ("[::1]", "::1"),
            ("[::1]:8443", "::1"),
            ("::1", "::1"),
            (" host ", "host"),
        ] {
            assert_eq!(normalize(input), want, "{input}");
        }
    }
}
