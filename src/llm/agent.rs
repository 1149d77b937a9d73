//! The client program behind an exchange, from its `user-agent` (and the
//! Stainless SDK headers when the user-agent says nothing useful).

use super::Agent;

/// Known user-agent products: (product token, lowercase; agent name).
const PRODUCTS: &[(&str, &str)] = &[
    ("claude-cli", "claude-code"),
    ("claude-code", "claude-code"),
    ("claude-vscode", "claude-code-vscode"),
    ("codex_cli_rs", "codex"),
    ("codex-cli", "codex"),
    ("geminicli", "gemini-cli"),
    ("gemini-cli", "gemini-cli"),
    ("opencode", "opencode"),
    ("aider", "aider"),
    ("cline", "cline"),
    ("roocode", "roo-code"),
    ("kilo-code", "kilo-code"),
    ("cursor", "cursor"),
    ("zed", "zed"),
    ("goose", "goose"),
    ("litellm", "litellm"),
    ("langchain", "langchain"),
    ("llamaindex", "llamaindex"),
    ("google-genai-sdk", "google-genai-sdk"),
    ("google-api-python-client", "google-api-python-client"),
    ("anthropic-sdk-go", "anthropic-sdk-go"),
    ("openai-go", "openai-sdk-go"),
    ("async-openai", "async-openai"),
    ("curl", "curl"),
    ("wget", "wget"),
    ("httpie", "httpie"),
    ("python-urllib", "python-urllib"),
    ("python-requests", "python-requests"),
    ("python-httpx", "python-httpx"),
    ("aiohttp", "python-aiohttp"),
    ("go-http-client", "go-http-client"),
    ("reqwest", "reqwest"),
    ("undici", "node"),
    ("node-fetch", "node"),
    ("node", "node"),
    ("axios", "node-axios"),
    ("bun", "bun"),
    ("deno", "deno"),
    ("okhttp", "okhttp"),
    ("mcp-remote", "mcp-remote"),
    ("postmanruntime", "postman"),
    ("insomnia", "insomnia"),
    ("mozilla", "browser"),
];

/// The agent of an exchange: from `user-agent`, else from `x-stainless-lang`
/// and `x-stainless-package-version` (set by the Anthropic and OpenAI SDKs).
pub fn agent(
    user_agent: Option<&str>,
    stainless_lang: Option<&str>,
    stainless_version: Option<&str>,
    sdk_family: &str,
) -> Option<Agent> {
    if let Some(a) = user_agent.and_then(from_user_agent) {
        return Some(a);
    }
    let lang = stainless_lang?.trim().to_ascii_lowercase();
    Some(Agent {
        name: format!("{sdk_family}-sdk-{}", lang_name(&lang)),
        version: stainless_version.map(|v| v.trim().to_string()),
    })
}

fn lang_name(lang: &str) -> &str {
    match lang {
        "js" | "javascript" | "typescript" | "node" => "js",
        other => other,
    }
}

/// Parse one `user-agent`.
pub fn from_user_agent(ua: &str) -> Option<Agent> {
    let ua = ua.trim();
    if ua.is_empty() {
        return None;
    }
    let lower = ua.to_ascii_lowercase();
    // SDKs: `Anthropic/Python 0.40.0`, `OpenAI/JS 4.73.0`, `AsyncOpenAI/Python 1.54`.
    for (prefix, family) in [
        ("anthropic/", "anthropic"),
        ("asyncanthropic/", "anthropic"),
        ("openai/", "openai"),
        ("asyncopenai/", "openai"),
    ] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let mut parts = rest.split_whitespace();
            let lang = parts.next().unwrap_or("unknown");
            return Some(Agent {
                name: format!("{family}-sdk-{}", lang_name(lang)),
                version: parts.next().map(clean_version),
            });
        }
    }
    // The first product token that names a known program wins, so
    // `claude-cli/1.0.83 (external, cli)` is Claude Code, and
    // `litellm/1.50 python-httpx/0.27` is LiteLLM.
    for token in ua.split_whitespace() {
        let (product, version) = match token.split_once('/') {
            Some((p, v)) => (p, Some(v)),
            None => (token, None),
        };
        let product =
            product.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        let p = product.to_ascii_lowercase();
        if let Some((_, name)) = PRODUCTS.iter().find(|(k, _)| *k == p) {
            return Some(Agent {
                name: (*name).to_string(),
                version: version.filter(|v| !v.is_empty()).map(clean_version),
            });
        }
    }
    // Unknown: the first product token, so it can still be grouped by.
    let first = ua.split_whitespace().next()?;
    let (product, version) = match first.split_once('/') {
        Some((p, v)) => (p, Some(v)),
        None => (first, None),
    };
    let name: String = product
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect::<String>()
        .to_ascii_lowercase();
    (!name.is_empty()).then(|| Agent {
        name,
        version: version.filter(|v| !v.is_empty()).map(clean_version),
    })
}

fn clean_version(v: &str) -> String {
    v.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(ua: &str) -> String {
        from_user_agent(ua)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn known_agents() {
        for (ua, want) in [
            ("claude-cli/1.0.83 (external, cli)", "claude-code 1.0.83"),
            ("claude-cli/2.0.14 (external, sdk-ts)", "claude-code 2.0.14"),
            ("Anthropic/Python 0.40.0", "anthropic-sdk-python 0.40.0"),
            ("Anthropic/JS 0.32.1", "anthropic-sdk-js 0.32.1"),
            ("OpenAI/Python 1.54.3", "openai-sdk-python 1.54.3"),
            ("AsyncOpenAI/Python 1.54.3", "openai-sdk-python 1.54.3"),
            ("OpenAI/JS 4.73.0", "openai-sdk-js 4.73.0"),
            ("litellm/1.50.2", "litellm 1.50.2"),
            ("curl/8.5.0", "curl 8.5.0"),
            ("Python-urllib/3.12", "python-urllib 3.12"),
            ("python-httpx/0.27.2", "python-httpx 0.27.2"),
            ("undici", "node"),
            ("node", "node"),
            (
                "codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm",
                "codex 0.46.0",
            ),
            ("GeminiCLI/0.1.5 (linux; x64)", "gemini-cli 0.1.5"),
            ("SomeTool/2.1 (x)", "sometool 2.1"),
        ] {
            assert_eq!(show(ua), want, "{ua}");
        }
        assert_eq!(from_user_agent("  "), None);
    }

    #[test]
    fn stainless_headers_name_the_sdk_when_the_user_agent_is_silent() {
        let a = agent(None, Some("python"), Some("0.49.0"), "anthropic").expect("agent");
        assert_eq!(a.to_string(), "anthropic-sdk-python 0.49.0");
        assert_eq!(agent(None, None, None, "openai"), None);
    }
}
