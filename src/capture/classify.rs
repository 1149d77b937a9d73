//! Traffic classification and host exclusion, exactly as the seed's diagram:
//! llm → mcp → other (localhost) → web.
//!
//! Hosts are compared lowercase, without a port, trailing dot or IPv6
//! brackets, so `API.Anthropic.com:443` and `[::1]:8080` classify like
//! `api.anthropic.com` and `::1`.

use super::host::normalize as normalize_host;
use crate::flow::TrafficType;

/// LLM hosts recognised even when `llm_hosts` does not list them.
const BUILTIN_LLM_HOSTS: &[&str] = &["api.cohere.ai"];

/// Hosts that mean "this machine": their traffic is `other`.
const LOCAL_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Decide the traffic type of one exchange from its host and path.
///
/// `llm_hosts` comes from the config (already lowercase); it is matched
/// exactly, case-insensitively. Built in: `api.cohere.ai`, any host containing
/// `bedrock`, and an `azure.com` host whose path contains `/openai`.
pub fn classify(host: &str, path: &str, llm_hosts: &[String]) -> TrafficType {
    let host = normalize_host(host);
    if is_llm(&host, path, llm_hosts) {
        TrafficType::Llm
    } else if host.contains("mcp") || path.to_ascii_lowercase().contains("mcp") {
        TrafficType::Mcp
    } else if LOCAL_HOSTS.contains(&host.as_str()) {
        TrafficType::Other
    } else {
        TrafficType::Web
    }
}

fn is_llm(host: &str, path: &str, llm_hosts: &[String]) -> bool {
    llm_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        || BUILTIN_LLM_HOSTS.contains(&host)
        || host.contains("bedrock")
        || (is_azure(host) && path.to_ascii_lowercase().contains("/openai"))
        || is_llm_api_path(path)
}

/// The known LLM API paths: a request to one of them is `llm` whatever the
/// host, so a gateway's client-facing leg on localhost counts too.
pub fn is_llm_api_path(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or("").to_ascii_lowercase();
    const SUFFIXES: &[&str] = &[
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/embeddings",
    ];
    const BEDROCK: &[&str] = &[
        "/invoke",
        "/invoke-with-response-stream",
        "/converse",
        "/converse-stream",
    ];
    SUFFIXES.iter().any(|s| p.ends_with(s))
        || (p.contains("/model/") && BEDROCK.iter().any(|s| p.ends_with(s)))
        || p.contains(":generatecontent")
        || p.contains(":streamgeneratecontent")
}

fn is_azure(host: &str) -> bool {
    host == "azure.com" || host.ends_with(".azure.com")
}

/// True when `host` matches an `excluded_hosts` entry: such CONNECTs are
/// tunnelled blind and nothing about them is decrypted or stored.
///
/// Entries match exactly (case-insensitive, port ignored); an entry
/// `*.example.com` matches every subdomain of `example.com` (not the apex).
pub fn is_excluded(host: &str, excluded_hosts: &[String]) -> bool {
    if excluded_hosts.is_empty() {
        return false;
    }
    let host = normalize_host(host);
    excluded_hosts.iter().any(|pattern| {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == pattern,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_LLM_HOSTS;
    use TrafficType::{Llm, Mcp, Other, Web};

    fn defaults() -> Vec<String> {
        DEFAULT_LLM_HOSTS.iter().map(|s| (*s).to_string()).collect()
    }

    /// Every example in the seed's "Classification Types" section, plus the
    /// precedence of the diagram (llm before mcp before other before web).
    #[test]
    fn seed_examples() {
        let cases: &[(&str, &str, TrafficType)] = &[
            // llm
            ("api.anthropic.com", "/v1/messages", Llm),
            ("api.openai.com", "/v1/chat/completions", Llm),
            (
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini-pro:generateContent",
                Llm,
            ),
            ("api.cohere.ai", "/v1/chat", Llm),
            (
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/x/invoke",
                Llm,
            ),
            ("bedrock.us-west-2.amazonaws.com", "/", Llm),
            (
                "myres.openai.azure.com",
                "/openai/deployments/gpt4/chat/completions",
                Llm,
            ),
            ("azure.com", "/openai", Llm),
            // mcp: host or path contains "mcp"
            ("mcp.example.com", "/", Mcp),
            ("example.com", "/mcp/v1/tools", Mcp),
            ("localhost", "/mcp", Mcp),
            ("127.0.0.1", "/sse/mcp", Mcp),
            // web: any non-localhost traffic
            ("example.com", "/", Web),
            ("github.com", "/anthropics/claude-code", Web),
            // azure.com without /openai is not llm
            ("management.azure.com", "/subscriptions", Web),
            // other: localhost, 127.0.0.1, ::1
            ("127.0.0.1", "/health", Other),
            ("localhost", "/v1/models", Other),
            // known LLM API paths are llm on any host (a local gateway's client leg)
            ("localhost", "/v1/messages", Llm),
            ("127.0.0.1", "/v1/chat/completions?x=1", Llm),
            ("localhost:4000", "/v1/responses", Llm),
            ("127.0.0.1", "/chat/completions", Llm),
            (
                "localhost",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Llm,
            ),
            ("::1", "/", Other),
        ];
        let llm = defaults();
        for (host, path, want) in cases {
            assert_eq!(classify(host, path, &llm), *want, "{host} {path}");
        }
    }

    #[test]
    fn precedence_llm_before_mcp_before_other() {
        let llm = defaults();
        assert_eq!(classify("api.anthropic.com", "/mcp", &llm), Llm);
        assert_eq!(classify("bedrock.mcp.local", "/", &llm), Llm);
        let local_llm = vec!["localhost".to_string()];
        assert_eq!(classify("localhost", "/v1/messages", &local_llm), Llm);
    }

    #[test]
    fn host_forms_are_normalised() {
        let llm = defaults();
        assert_eq!(classify("API.Anthropic.COM", "/", &llm), Llm);
        assert_eq!(classify("api.anthropic.com:443", "/", &llm), Llm);
        assert_eq!(classify("api.anthropic.com.", "/", &llm), Llm);
        assert_eq!(classify("[::1]:8080", "/", &llm), Other);
        assert_eq!(classify("[::1]", "/", &llm), Other);
        assert_eq!(classify("localhost:4000", "/", &llm), Other);
        assert_eq!(classify("LOCALHOST", "/", &llm), Other);
        assert_eq!(classify("Example.com", "/MCP", &llm), Mcp);
    }

    #[test]
    fn llm_hosts_come_from_config() {
        let custom = vec!["llm.internal".to_string()];
        assert_eq!(classify("llm.internal", "/", &custom), Llm);
        // Without the defaults, anthropic is plain web traffic...
        assert_eq!(classify("api.anthropic.com", "/", &custom), Web);
        // ...but the built-in patterns stay.
        assert_eq!(classify("api.cohere.ai", "/", &custom), Llm);
        assert_eq!(classify("x.bedrock.aws", "/", &[]), Llm);
        // Exact match, not a suffix match.
        assert_eq!(
            classify("evil-api.openai.com.example", "/", &defaults()),
            Web
        );
    }

    #[test]
    fn exclusion() {
        let ex: Vec<String> = ["internal-api.company.com", "*.Metrics.Internal"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let cases: &[(&str, bool)] = &[
            ("internal-api.company.com", true),
            ("INTERNAL-API.company.com:443", true),
            ("x.internal-api.company.com", false),
            ("company.com", false),
            ("a.metrics.internal", true),
            ("a.b.metrics.internal:8443", true),
            ("metrics.internal", false),
            ("evilmetrics.internal", false),
            ("example.com", false),
        ];
        for (host, want) in cases {
            assert_eq!(is_excluded(host, &ex), *want, "{host}");
        }
        assert!(!is_excluded("anything", &[]));
    }
}
