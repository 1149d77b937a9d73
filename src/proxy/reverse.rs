//! Where the reverse listener sends an origin-form request.

use http::{HeaderMap, StatusCode, Uri};

use super::body::ProxyBody;
use super::exchange::{join_url, local_response};
use super::ReverseRoute;

/// The upstream URL for a request to the reverse listener, or the answer to
/// give when there is none.
pub fn target(
    route: &ReverseRoute,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Uri, Box<http::Response<ProxyBody>>> {
    let pq = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let base =
        match route {
            ReverseRoute::Fixed(base) => base.as_str(),
            ReverseRoute::Providers { anthropic, openai } => {
                match provider_for(uri.path(), headers) {
                Some(Provider::Anthropic) => anthropic.as_str(),
                Some(Provider::OpenAi) => openai.as_str(),
                None => {
                    return Err(Box::new(local_response(
                        StatusCode::NOT_FOUND,
                        format!(
                            "ccproxy: no provider serves {}: use /v1/messages (Anthropic), \
                             /v1/chat/completions or /v1/responses (OpenAI), or set ccproxy.upstream\n",
                            uri.path()
                        ),
                    )))
                }
            }
            }
        };
    join_url(base, pq).map_err(|e| {
        Box::new(local_response(
            StatusCode::BAD_GATEWAY,
            format!("ccproxy: cannot build the upstream URL from {base}: {e}\n"),
        ))
    })
}

/// A direct-mode provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `api.anthropic.com`.
    Anthropic,
    /// `api.openai.com`.
    OpenAi,
}

/// Which provider a path belongs to; an `anthropic-version` header decides
/// the other paths (model listings and the like).
pub fn provider_for(path: &str, headers: &HeaderMap) -> Option<Provider> {
    if path.starts_with("/v1/messages") {
        return Some(Provider::Anthropic);
    }
    let openai = [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
    ];
    if openai.iter().any(|p| path.starts_with(p)) {
        return Some(Provider::OpenAi);
    }
    if path.starts_with("/v1/") {
        return Some(if headers.contains_key("anthropic-version") {
            Provider::Anthropic
        } else {
            Provider::OpenAi
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_routes() {
        let mut anth = HeaderMap::new();
        anth.insert(
            "anthropic-version",
            http::HeaderValue::from_static("2023-06-01"),
        );
        let none = HeaderMap::new();
        let cases = [
            ("/v1/messages", &none, Some(Provider::Anthropic)),
            (
                "/v1/messages/count_tokens",
                &none,
                Some(Provider::Anthropic),
            ),
            ("/v1/chat/completions", &none, Some(Provider::OpenAi)),
            ("/v1/responses", &anth, Some(Provider::OpenAi)),
            ("/v1/models", &anth, Some(Provider::Anthropic)),
            ("/v1/models", &none, Some(Provider::OpenAi)),
            ("/health", &none, None),
        ];
        for (path, h, want) in cases {
            assert_eq!(provider_for(path, h), want, "{path}");
        }
    }

    #[test]
    fn fixed_route_keeps_prefix_and_query() {
        let route = ReverseRoute::Fixed("http://127.0.0.1:9/gw".into());
        let uri: Uri = "/v1/messages?x=1".parse().expect("uri");
        let t = target(&route, &uri, &HeaderMap::new()).expect("target");
        assert_eq!(t.to_string(), "http://127.0.0.1:9/gw/v1/messages?x=1");
    }
}
