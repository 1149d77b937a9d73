//! `proxy_auth: true`: both listeners serve only clients that hold the token
//! kept in `<home>/proxy.token` (0600), so other local users can neither reach
//! hosts through the proxy nor spend the owner's provider keys.
//!
//! - CONNECT and absolute-form requests (a client using the forward listener
//!   as its proxy): `Proxy-Authorization: Basic` whose password is the token
//!   (any user name); otherwise 407 with `Proxy-Authenticate`.
//! - Origin-form requests (a client using a listener as its base URL): the
//!   token as the first path segment (`/<token>/v1/messages`) or an
//!   `x-ccproxy-token` header; otherwise 401.
//!
//! Requests inside an authenticated tunnel are not checked again. The token
//! is removed (header, path segment) before the request is forwarded or
//! captured, so it is never stored.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};

use super::body::ProxyBody;

/// The token file's name in `<home>`.
pub const TOKEN_FILE: &str = "proxy.token";
/// The header a base-URL client may carry the token in instead of the path.
pub const TOKEN_HEADER: &str = "x-ccproxy-token";

/// Read the token, making it (0600, never through a symlink) on first use.
pub fn load_or_create(path: &Path) -> io::Result<String> {
    for _ in 0..2 {
        match read_token(path) {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(format!("{token}\n").as_bytes())?;
                f.sync_all()?;
                return Ok(token);
            }
            // Another process made it first: read theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{} is empty or unreadable; remove it and start again",
        path.display()
    )))
}

/// The token when the file exists (tightening its mode to 0600).
pub fn read_token(path: &Path) -> io::Result<Option<String>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file; remove it and start again",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let mut text = String::new();
    fs::File::open(path)?.read_to_string(&mut text)?;
    let token = text.trim();
    Ok(
        (token.len() >= 16 && token.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| token.to_string()),
    )
}

/// Equal without an early exit (the time does not tell how much matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn basic_password_matches(value: Option<&HeaderValue>, token: &str) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, cred)) = v.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(cred.trim()) else {
        return false;
    };
    decoded
        .iter()
        .position(|b| *b == b':')
        .is_some_and(|i| same(&decoded[i + 1..], token.as_bytes()))
}

fn deny(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(text.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        h.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ccproxy\""),
        );
    }
    resp
}

/// Admit a request that is not inside a tunnel, with its credentials removed,
/// or the 407/401 answer.
pub fn admit<B>(token: &str, mut req: Request<B>) -> Result<Request<B>, Box<Response<ProxyBody>>> {
    let proxied = req.method() == http::Method::CONNECT
        || (req.uri().scheme().is_some() && req.uri().authority().is_some());
    let by_proxy_auth =
        basic_password_matches(req.headers().get(header::PROXY_AUTHORIZATION), token);
    req.headers_mut().remove(header::PROXY_AUTHORIZATION);
    if proxied {
        return if by_proxy_auth {
            Ok(req)
        } else {
            Err(Box::new(deny(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "ccproxy: this proxy requires its token (proxy_auth): use `ccproxy run`, or \
                 http://ccproxy:<token>@host:port with the token in <home>/proxy.token\n",
            )))
        };
    }
    let by_header = req
        .headers()
        .get(TOKEN_HEADER)
        .is_some_and(|v| same(v.as_bytes(), token.as_bytes()));
    req.headers_mut().remove(TOKEN_HEADER);
    if let Some(stripped) = strip_token_segment(req.uri(), token) {
        *req.uri_mut() = stripped;
        return Ok(req);
    }
    if by_header || by_proxy_auth {
        return Ok(req);
    }
    Err(Box::new(deny(
        StatusCode::UNAUTHORIZED,
        "ccproxy: this listener requires its token (proxy_auth): use `ccproxy run`, or put \
         the token from <home>/proxy.token first in the path (/<token>/v1/...) or in an \
         x-ccproxy-token header\n",
    )))
}

/// `/<token>/rest?q` → `/rest?q`, when the first segment is the token.
fn strip_token_segment(uri: &Uri, token: &str) -> Option<Uri> {
    let pq = uri.path_and_query()?.as_str();
    let rest = pq.strip_prefix('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    if !same(&rest.as_bytes()[..end], token.as_bytes()) {
        return None;
    }
    let tail = &rest[end..];
    let new = if tail.is_empty() || tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = new.parse().ok();
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef0123456789abcdef";

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn proxied_requests_need_proxy_authorization() {
        let ok = basic("ccproxy", T);
        for (m, u) in [("CONNECT", "api.example.com:443"), ("GET", "http://h/x")] {
            let r = admit(T, req(m, u, &[("proxy-authorization", &ok)])).expect("admitted");
            assert!(r.headers().get("proxy-authorization").is_none(), "consumed");
            for bad in [
                vec![],
                vec![("proxy-authorization", basic("ccproxy", "nope"))],
            ] {
                let hs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let resp = admit(T, req(m, u, &hs)).expect_err("denied");
                assert_eq!(resp.status(), 407);
                assert!(resp.headers().contains_key("proxy-authenticate"));
            }
        }
        // The token in the path does not open the proxy.
        let r = admit(T, req("GET", &format!("http://h/{T}/x"), &[]));
        assert_eq!(r.expect_err("denied").status(), 407);
    }

    #[test]
    fn base_url_requests_need_the_token_in_the_path_or_a_header() {
        let r = admit(T, req("POST", &format!("/{T}/v1/messages?beta=1"), &[])).expect("path");
        assert_eq!(r.uri(), "/v1/messages?beta=1");
        let r = admit(T, req("GET", &format!("/{T}"), &[])).expect("bare");
        assert_eq!(r.uri(), "/");
        let r = admit(T, req("POST", "/v1/messages", &[(TOKEN_HEADER, T)])).expect("header");
        assert!(r.headers().get(TOKEN_HEADER).is_none(), "stripped");
        for bad in [
            req("POST", "/v1/messages", &[]),
            req("POST", &format!("/{T}x/v1/messages"), &[]),
            req("POST", "/v1/messages", &[(TOKEN_HEADER, "nope")]),
        ] {
            assert_eq!(admit(T, bad).expect_err("denied").status(), 401);
        }
    }

    #[test]
    fn the_token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(TOKEN_FILE);
        let t = load_or_create(&path).expect("create");
        assert!(t.len() >= 32);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).expect("again"), t);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(read_token(&path).expect("read"), Some(t));
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(
            read_token(&link).is_err(),
            "a symlinked token file is refused"
        );
    }
}
